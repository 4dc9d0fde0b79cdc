"""Atomic file writing: a temporary file in the target directory, then ``os.replace``.

A reader never sees a half-written file, and a failed or interrupted write leaves
no file behind (nor replaces an existing one).
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import format_error

__all__ = ["OutputPathError", "atomic_path", "check_writable", "commit_temp", "reserve_temp"]


class OutputPathError(OSError):
    """The output path cannot be written (missing directory, no permission, ...)."""


def check_writable(path: str | os.PathLike) -> Path:
    """Check that ``path`` can be created or replaced, before any work is done.

    Parameters
    ----------
    path
        Output file path. Its directory must exist and be writable; an existing
        directory at ``path`` itself is refused.

    Returns
    -------
    Path
        The absolute path.

    Raises
    ------
    OutputPathError
        With the path and the reason in the message.
    """
    target = Path(path).expanduser().absolute()
    parent = target.parent
    if target.is_dir():
        raise OutputPathError(
            format_error(
                f"Cannot write the output file '{target}'",
                reason="a directory with that name exists",
                fix="give a file name, not a directory",
            )
        )
    if not parent.is_dir():
        raise OutputPathError(
            format_error(
                f"Cannot write the output file '{target}'",
                reason=f"the directory '{parent}' does not exist",
                fix="create the directory first or choose another output path",
            )
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(
            format_error(
                f"Cannot write the output file '{target}'",
                reason=f"no write permission in the directory '{parent}'",
                fix="choose a directory you can write to",
            )
        )
    return target


def reserve_temp(target: Path, *, suffix: str | None = None) -> Path:
    """Create an empty temporary file next to ``target`` and return its path.

    Parameters
    ----------
    target
        Final path (already checked with :func:`check_writable`).
    suffix
        Suffix of the temporary name; default that of ``target``, so that libraries
        choosing a format by extension (``numpy.save``) behave the same.
    """
    sfx = target.suffix if suffix is None else suffix
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{sfx}", dir=target.parent)
    except OSError as exc:
        raise OutputPathError(
            format_error(
                f"Cannot write the output file '{target}'",
                reason=f"creating a temporary file in '{target.parent}' failed ({exc.strerror or exc})",
                fix="check the permissions and free space of that directory",
            )
        ) from exc
    os.close(fd)
    return Path(tmp_name)


def commit_temp(tmp: Path, target: Path) -> None:
    """Give ``tmp`` the usual permissions and move it onto ``target`` atomically."""
    os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp creates 0600 files
    os.replace(tmp, target)


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` on success.

    Parameters
    ----------
    path
        Final file path.
    suffix
        Suffix of the temporary file (default: that of ``path``).

    Yields
    ------
    Path
        Where the caller writes. On an exception (including KeyboardInterrupt) the
        temporary file is deleted and ``path`` is left as it was.
    """
    target = check_writable(path)
    tmp = reserve_temp(target, suffix=suffix)
    try:
        yield tmp
        commit_temp(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
