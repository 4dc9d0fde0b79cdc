"""The one atomic writer (mantid_exp2sim.io._atomic): permissions, failure cleanup, stale temporary files."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from mantid_exp2sim.io import _atomic
from mantid_exp2sim.io._atomic import (
    OutputPathError,
    atomic_path,
    atomic_write_text,
    default_file_mode,
    remove_stale_temps,
    reserve_temp,
)

REPO = Path(__file__).resolve().parents[2]


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(proc.stdout)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077, 0o002])
def test_files_get_the_permissions_the_umask_gives(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = atomic_write_text(tmp_path / "a.txt", "x")
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask == default_file_mode()
        with atomic_path(tmp_path / "b.npy") as tmp:
            np.save(tmp, np.zeros(2))
        assert (tmp_path / "b.npy").stat().st_mode & 0o777 == 0o666 & ~umask
    finally:
        os.umask(old)


@pytest.mark.parametrize("exc_type", [RuntimeError, KeyboardInterrupt])
def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, exc_type):
    target = tmp_path / "out.h5"
    atomic_write_text(target, "old")
    with pytest.raises(exc_type):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(".out.h5.") and tmp.name.endswith(".tmp.h5")
            tmp.write_text("half")
            raise exc_type()
    assert target.read_text() == "old" and _names(tmp_path) == ["out.h5"]


def test_missing_folder_is_refused_unless_parents_are_made(tmp_path):
    with pytest.raises(OutputPathError, match="does not exist"):
        atomic_write_text(tmp_path / "a" / "b.txt", "x", parents=False)
    assert atomic_write_text(tmp_path / "a" / "b.txt", "x").read_text() == "x"


def _fake_temp(folder: Path, target: str, tag: str | None, age: float = 0.0, rand: str = "abcd1234",
               sfx: str = ".h5") -> Path:
    name = f".{target}.{tag + '.' if tag else ''}{rand}.tmp{sfx}"
    p = folder / name
    p.write_bytes(b"partial")
    t = time.time() - age
    os.utime(p, (t, t))
    return p


def test_stale_temporaries_of_the_same_target_only_are_removed(tmp_path):
    host, day = _atomic._HOST, _atomic.STALE_AGE_S
    dead, alive = _dead_pid(), os.getpid()
    stale = [
        _fake_temp(tmp_path, "out.h5", f"{dead}-{host}"),  # its process is gone
        _fake_temp(tmp_path, "out.h5", f"{alive}-{host}", age=day + 60, rand="zzzz0000"),  # a reused pid, old
        _fake_temp(tmp_path, "out.h5", f"{dead}-0123abcd", age=day + 60, rand="yyyy0000"),  # another host, old
        _fake_temp(tmp_path, "out.h5", None, age=day + 60, rand="x_x_0000"),  # an older version's name, old
    ]
    kept = [
        _fake_temp(tmp_path, "out.h5", f"{alive}-{host}", rand="wwww0000"),  # being written now
        _fake_temp(tmp_path, "out.h5", f"{dead}-0123abcd", rand="vvvv0000"),  # another host: pid unknown
        _fake_temp(tmp_path, "out.h5", None, rand="uuuu0000"),  # old-style name, recent
        _fake_temp(tmp_path, "other.h5", f"{dead}-{host}"),  # another target
        _fake_temp(tmp_path, "out.h5.bak", f"{dead}-{host}"),  # another target sharing a prefix
        _fake_temp(tmp_path, "out.h5", f"{dead}-{host}", rand="toolong123"),  # not this pattern
    ]
    (tmp_path / "notes.tmp").write_text("mine")
    atomic_write_text(tmp_path / "out.h5", "new")
    left = set(_names(tmp_path))
    assert not left & {p.name for p in stale}
    assert left == {p.name for p in kept} | {"out.h5", "notes.tmp"}
    assert remove_stale_temps(tmp_path / "out.h5") == []


def test_a_reserved_temporary_is_not_stale_for_its_own_writer(tmp_path):
    target = tmp_path / "t.nxs"
    tmp = reserve_temp(target)
    assert tmp.name.startswith(f".t.nxs.{os.getpid()}-{_atomic._HOST}.")
    assert remove_stale_temps(target) == [] and tmp.exists()
    assert remove_stale_temps(target, now=time.time() + 2 * _atomic.STALE_AGE_S) == [tmp]


KILLED = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from mantid_exp2sim.histogram import MDHisto
    from mantid_exp2sim.io import create_md_output

    histo = MDHisto.from_array(np.ones((4, 5)))
    writer = create_md_output(sys.argv[1], histo.axes)
    writer.write((slice(0, 2),), histo.signal[:2])
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.mark.skipif(not hasattr(os, "kill") or sys.platform == "win32", reason="needs SIGKILL")
@pytest.mark.parametrize("ext", [".h5", ".nxs"])
def test_a_killed_streaming_write_leaves_a_temporary_that_the_next_write_removes(tmp_path, ext):
    """Issue 12: ``exp2sim deconvolve --stream`` killed with SIGKILL left a hidden temporary."""
    from mantid_exp2sim.histogram import MDHisto
    from mantid_exp2sim.io import create_md_output

    target = tmp_path / f"out{ext}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", KILLED, str(target)], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()
    (leftover,) = _names(tmp_path)
    assert leftover.startswith(f".out{ext}.") and leftover.endswith(f".tmp{ext}")
    histo = MDHisto.from_array(np.full((4, 5), 2.0))
    with create_md_output(target, histo.axes) as writer:
        writer.write_histo(histo)
    assert _names(tmp_path) == [target.name]
