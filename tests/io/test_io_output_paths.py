"""The shared output-path check: every output against every input, before any work."""

from __future__ import annotations

import os

import pytest

import mantid_exp2sim.io.output_paths as output_paths
from mantid_exp2sim.io import OutputPathError
from mantid_exp2sim.io.output_paths import (
    PlannedOutput,
    check_output_paths,
    output_path_problems,
    resolved_path,
    same_file,
)


def test_an_output_that_is_an_input_is_refused_even_through_links_and_with_overwrite(tmp_path):
    src = tmp_path / "data.nxs"
    src.write_bytes(b"input")
    (tmp_path / "link.nxs").symlink_to(src)
    os.link(src, tmp_path / "hard.nxs")
    (tmp_path / "sub").mkdir()
    for alias in ("data.nxs", "link.nxs", "hard.nxs", "sub/../data.nxs"):
        problems = output_path_problems(
            [PlannedOutput(tmp_path / alias, "the --activation-map")], [str(src)], overwrite=True
        )
        assert len(problems) == 1, alias
        assert "is the input" in problems[0] and "not even with --overwrite" in problems[0]
    # and the other way round: the input given through a link
    problems = output_path_problems([PlannedOutput(src, "the --plot")], [tmp_path / "link.nxs"], overwrite=True)
    assert len(problems) == 1 and "link.nxs" in problems[0]
    assert src.read_bytes() == b"input"


def test_two_outputs_of_one_run_may_not_be_the_same_file(tmp_path):
    outs = [PlannedOutput(tmp_path / "x.png", "the --plot"), PlannedOutput(tmp_path / "." / "x.png", "the report")]
    (problem,) = output_path_problems(outs, [])
    assert "the --plot is written to the same file" in problem and problem.startswith("Cannot write the report")


def test_missing_parent_is_named_with_the_fix_and_never_created(tmp_path):
    target = tmp_path / "missing" / "deeper" / "m.nxs"
    (problem,) = output_path_problems([PlannedOutput(target, "the --activation-map")], [])
    assert f"the directory '{target.parent}' does not exist" in problem
    assert f"mkdir -p '{target.parent}'" in problem
    assert not (tmp_path / "missing").exists()
    (tmp_path / "afile").write_text("x")
    (problem,) = output_path_problems([PlannedOutput(tmp_path / "afile" / "m.nxs", "the output")], [])
    assert "is a file, not a directory" in problem


def test_existing_files_and_directories(tmp_path):
    existing = tmp_path / "old.png"
    existing.write_bytes(b"old")
    (problem,) = output_path_problems([PlannedOutput(existing, "the --plot")], [])
    assert "the file exists" in problem and "--overwrite" in problem
    assert output_path_problems([PlannedOutput(existing, "the --plot")], [], overwrite=True) == []
    (tmp_path / "adir.png").mkdir()
    (problem,) = output_path_problems([PlannedOutput(tmp_path / "adir.png", "the --plot")], [], overwrite=True)
    assert "a directory with that name exists" in problem


def test_extension_is_checked(tmp_path):
    (problem,) = output_path_problems([PlannedOutput(tmp_path / "x.txt", "the --plot", (".png", ".pdf"))], [])
    assert "'.txt' is not one of .png, .pdf" in problem
    assert output_path_problems([PlannedOutput(tmp_path / "x.PNG", "the --plot", (".png",))], []) == []


def test_folders_to_create(tmp_path):
    folder = tmp_path / "new"
    outs = [PlannedOutput(folder, "the --output-dir folder", directory=True),
            PlannedOutput(folder / "a.nxs", "the measured spectrum")]
    assert output_path_problems(outs, []) == []  # the folder will be created, so its files are fine
    assert not folder.exists()
    (tmp_path / "file").write_text("x")
    outs = [PlannedOutput(tmp_path / "file", "the --output-dir folder", directory=True),
            PlannedOutput(tmp_path / "file" / "a.nxs", "the measured spectrum")]
    (problem,) = output_path_problems(outs, [])  # one line, not one per file inside
    assert problem.startswith(f"Cannot use '{tmp_path / 'file'}' as the --output-dir folder: a file with that name")
    (problem,) = output_path_problems([PlannedOutput(tmp_path / "no" / "new", "the folder", directory=True)], [])
    assert f"'{tmp_path / 'no'}' does not exist" in problem


def test_unwritable_directories(tmp_path, monkeypatch):
    monkeypatch.setattr(output_paths, "_writable", lambda folder: False)
    (problem,) = output_path_problems([PlannedOutput(tmp_path / "x.h5", "the --output")], [])
    assert f"no write permission in the directory '{tmp_path}'" in problem
    (problem,) = output_path_problems([PlannedOutput(tmp_path, "the --output-dir folder", directory=True)], [])
    assert "no write permission in it" in problem


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_read_only_directory_for_real(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        (problem,) = output_path_problems([PlannedOutput(ro / "s.h5", "the --output")], [])
        assert "no write permission" in problem
    finally:
        ro.chmod(0o755)


def test_check_output_paths_raises_one_line(tmp_path):
    existing = tmp_path / "a.nxs"
    existing.write_text("x")
    outs = [PlannedOutput(existing, "the first"), PlannedOutput(tmp_path / "nope" / "b.nxs", "the second")]
    with pytest.raises(OutputPathError) as info:
        check_output_paths(outs, [])
    text = str(info.value)
    assert "\n" not in text and "the first" in text and "the second" in text
    ok = [PlannedOutput(tmp_path / "c.nxs", "c")]
    assert check_output_paths(ok, [existing]) == [tmp_path / "c.nxs"]


def test_same_file_and_resolved_path(tmp_path):
    a = tmp_path / "a"
    a.write_text("x")
    (tmp_path / "l").symlink_to(a)
    assert same_file(tmp_path / "l", a) and not same_file(a, tmp_path / "b")
    assert resolved_path(tmp_path / "l") == a.resolve()
