"""Dispatch by extension, atomic writes, output-path errors and the streaming writer."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import mantid_exp2sim.io.arrays as arrays_module
from mantid_exp2sim.errors import InputDataError
from mantid_exp2sim.histogram import Axis, MDHisto
from mantid_exp2sim.io import (
    OutputPathError,
    create_md_output,
    load_histogram,
    open_md_signal,
    save_histogram,
)


def _histo(shape=(3, 4, 5)) -> MDHisto:
    signal = np.arange(np.prod(shape), dtype=float).reshape(shape) + 1.0
    return MDHisto.from_array(signal, errors=np.sqrt(signal))


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_unsupported_extension_and_missing_file(tmp_path):
    with pytest.raises(InputDataError, match=r"'\.txt' is not one of"):
        save_histogram(_histo(), tmp_path / "a.txt")
    with pytest.raises(InputDataError, match="extension"):
        load_histogram(tmp_path / "a.csv")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_histogram(tmp_path / "missing.nxs")


@pytest.mark.parametrize("ext", [".nxs", ".h5", ".npz", ".npy"])
def test_unwritable_path_names_the_path(tmp_path, ext):
    target = tmp_path / "no_such_dir" / f"out{ext}"
    with pytest.raises(OutputPathError, match="no_such_dir.*does not exist"):
        save_histogram(_histo(), target)
    (tmp_path / f"adir{ext}").mkdir()
    with pytest.raises(OutputPathError, match="a directory with that name exists"):
        save_histogram(_histo(), tmp_path / f"adir{ext}")
    a_file = tmp_path / "plainfile"
    a_file.write_text("x")
    with pytest.raises(OSError, match="plainfile"):
        save_histogram(_histo(), a_file / f"out{ext}")


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "out.npz"
    save_histogram(_histo(), target)
    before = target.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(arrays_module.np, "savez_compressed", boom)
    with pytest.raises(OSError, match="disk full"):
        save_histogram(_histo((2, 2)), target)
    assert target.read_bytes() == before
    assert _leftovers(tmp_path) == ["out.npz"]


def test_written_files_get_normal_permissions(tmp_path):
    path = save_histogram(_histo(), tmp_path / "perm.nxs")
    umask = os.umask(0)
    os.umask(umask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~umask)


@pytest.mark.parametrize("ext", [".nxs", ".h5"])
def test_streaming_writer_commits_only_when_complete(tmp_path, ext):
    histo = _histo()
    target = tmp_path / f"stream{ext}"
    with create_md_output(target, histo.axes, metadata={"k": 1}) as writer:
        for i in range(histo.shape[0]):
            assert not target.exists()  # nothing visible until committed
            writer.write((slice(i, i + 1),), histo.signal[i : i + 1], histo.errors[i : i + 1])
    back = load_histogram(target)
    np.testing.assert_array_equal(back.signal, histo.signal)
    np.testing.assert_allclose(back.errors, histo.errors)
    assert back.metadata == {"k": 1}
    assert _leftovers(tmp_path) == [target.name]


@pytest.mark.parametrize("exc_type", [RuntimeError, KeyboardInterrupt])
def test_streaming_writer_discards_on_error_or_interrupt(tmp_path, exc_type):
    histo = _histo()
    target = tmp_path / "partial.nxs"
    with pytest.raises(exc_type):
        with create_md_output(target, histo.axes) as writer:
            writer.write((slice(0, 1),), histo.signal[:1])
            raise exc_type()
    assert _leftovers(tmp_path) == []


def test_unwritten_bins_stay_masked_in_savemd(tmp_path):
    axes = (Axis("A", "", 0, 1, 2), Axis("B", "", 0, 1, 3))
    target = tmp_path / "half.nxs"
    with create_md_output(target, axes) as writer:
        writer.write((slice(0, 1),), np.ones((1, 3)))
    back = load_histogram(target)
    np.testing.assert_array_equal(back.signal[0], 1.0)
    assert np.isnan(back.signal[1]).all()
    np.testing.assert_array_equal(back.errors[0], 0.0)  # errors never given: zero


def test_open_md_signal_refuses_in_memory_formats(tmp_path):
    path = save_histogram(_histo(), tmp_path / "a.npy")
    with pytest.raises(InputDataError, match="load_histogram"):
        open_md_signal(path)
