"""Plan and check every output path of a run against every input, before any work.

Each command lists what it will write (:class:`PlannedOutput`) and what it reads, and calls
:func:`output_path_problems` (a list of one-line messages) or :func:`check_output_paths`
(raises) before it computes anything. The rules, the same for every command:

* an output is never one of the run's inputs (compared by resolved path, symlinks and hard
  links included), not even with ``--overwrite``;
* no two outputs of a run are the same file;
* an output file's directory must exist and be writable; it is never created, except a
  folder that the command itself is told to create (``exp2sim deconvolve -o DIR/``,
  ``exp2sim demo --output-dir DIR``), whose own parent must then exist;
* an existing directory is never taken for an output file, nor an existing file for an
  output folder;
* the extension must be one the writer understands;
* an existing file is replaced only with ``overwrite=True`` (``--overwrite``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import format_error
from ._atomic import OutputPathError

__all__ = [
    "PlannedOutput",
    "check_output_paths",
    "output_path_problems",
    "resolved_path",
    "same_file",
]


@dataclass(frozen=True)
class PlannedOutput:
    """One path a run will write.

    Attributes
    ----------
    path
        The file (or folder) as the user gave it; ``~`` is expanded.
    label
        How messages name it: ``"Cannot write {label} to '{path}'"`` for a file (e.g.
        ``"the --activation-map"``, ``"the output of 'a.nxs'"``), ``"Cannot use '{path}' as
        {label}"`` for a folder (``"the --output-dir folder"``).
    extensions
        Allowed lower-case suffixes with the dot (``(".png", ".pdf")``); empty: any.
    directory
        True for a folder the run creates if missing (its parent must exist) and fills.
    """

    path: str | os.PathLike
    label: str
    extensions: tuple[str, ...] = ()
    directory: bool = False

    @property
    def absolute(self) -> Path:
        """The path made absolute (``~`` expanded, symlinks kept)."""
        return Path(self.path).expanduser().absolute()


def resolved_path(path: str | os.PathLike) -> Path:
    """``path`` with ``~`` expanded and every symlink resolved (the file need not exist)."""
    return Path(os.path.realpath(Path(path).expanduser()))


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when ``a`` and ``b`` name the same file: same resolved path, or the same inode."""
    if resolved_path(a) == resolved_path(b):
        return True
    try:
        return os.path.samefile(Path(a).expanduser(), Path(b).expanduser())
    except OSError:  # one of them does not exist
        return False


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def _message(out: PlannedOutput, reason: str, fix: str) -> str:
    if out.directory:
        return format_error(f"Cannot use '{out.absolute}' as {out.label}", reason=reason, fix=fix)
    return format_error(f"Cannot write {out.label} to '{out.absolute}'", reason=reason, fix=fix)


def _folder_problem(folder: Path) -> tuple[str, str] | None:
    """(reason, fix) when files cannot be created in the existing-or-not ``folder``."""
    if not folder.exists():
        return (
            f"the directory '{folder}' does not exist",
            f"create it first (mkdir -p '{folder}') or choose another path",
        )
    if not folder.is_dir():
        return f"'{folder}' is a file, not a directory", "choose a path inside a directory"
    if not _writable(folder):
        return f"no write permission in the directory '{folder}'", "choose a directory you can write to"
    return None


def _problem(out: PlannedOutput, inputs: Sequence[str | os.PathLike], created: set[Path], overwrite: bool) -> str:
    """The first problem of one output, or ""."""
    target = out.absolute
    for src in inputs:
        if same_file(target, src):
            return _message(
                out,
                f"that is the input '{src}' of this run",
                "choose another output path; inputs are never overwritten, not even with --overwrite",
            )
    if not out.directory and target.is_dir():
        return _message(out, "a directory with that name exists", "give a file name, not a directory")
    if out.extensions and not out.directory and target.suffix.lower() not in out.extensions:
        return _message(
            out,
            f"the extension '{target.suffix or '(none)'}' is not one of {', '.join(out.extensions)}",
            "give a file name ending in one of those",
        )
    if out.directory:
        if target.exists():
            if not target.is_dir():
                return _message(out, "a file with that name exists", "choose a folder name that is not a file")
            if not _writable(target):
                return _message(out, "no write permission in it", "choose a folder you can write to")
            return ""
        folder_problem = _folder_problem(target.parent)
        return _message(out, *folder_problem) if folder_problem else ""
    if target.parent not in created:
        folder_problem = _folder_problem(target.parent)
        if folder_problem:
            return _message(out, *folder_problem)
    if target.exists() and not overwrite:
        return _message(out, "the file exists", "pass --overwrite to replace it, or choose another path")
    return ""


def output_path_problems(
    outputs: Iterable[PlannedOutput],
    inputs: Iterable[str | os.PathLike],
    *,
    overwrite: bool = False,
) -> list[str]:
    """Check the output paths of a run before it does any work.

    Parameters
    ----------
    outputs
        Everything the run will write (files and folders to create).
    inputs
        Everything the run reads (data files, model bundles, ...); missing ones are fine.
    overwrite
        Whether existing output files may be replaced.

    Returns
    -------
    list of str
        One self-contained message per output that cannot be written (what, why and the
        fix); empty when the run may start.
    """
    outs = list(outputs)
    ins = [p for p in inputs if p is not None and str(p) != ""]
    problems: list[str] = []
    created: set[Path] = set()  # folders the run will create
    refused: set[Path] = set()  # folders already reported
    for out in outs:
        if out.directory:
            problem = _problem(out, ins, set(), overwrite)
            if problem:
                problems.append(problem)
                refused.add(out.absolute)
            elif not out.absolute.exists():
                created.add(out.absolute)
    seen: list[PlannedOutput] = []
    for out in outs:
        if out.directory or out.absolute.parent in refused:
            continue
        problem = _problem(out, ins, created, overwrite)
        if not problem:
            twin = next((o for o in seen if same_file(o.absolute, out.absolute)), None)
            if twin is not None:
                problem = _message(
                    out,
                    f"{twin.label} is written to the same file",
                    "give every output its own path",
                )
        if problem:
            problems.append(problem)
        seen.append(out)
    return problems


def check_output_paths(
    outputs: Iterable[PlannedOutput],
    inputs: Iterable[str | os.PathLike],
    *,
    overwrite: bool = False,
) -> list[Path]:
    """Like :func:`output_path_problems`, but raise on the first run of problems.

    Returns
    -------
    list of Path
        The absolute output paths, in the order given.

    Raises
    ------
    OutputPathError
        (an ``OSError``) whose one-line message joins every problem found.
    """
    outs = list(outputs)
    problems = output_path_problems(outs, inputs, overwrite=overwrite)
    if problems:
        raise OutputPathError(" ".join(problems))
    return [o.absolute for o in outs]
