"""Atomic file writing: a temporary file next to the target, then ``os.replace``.

Every writer of the package goes through this module (histograms, streamed outputs, model
bundles, simulator data sets, training checkpoints, logs and plots). A reader never sees a
half-written file, and a failed or interrupted write leaves no file behind and does not touch
an existing one.

Temporary files
    ``.<target name>.<pid>-<host>.<8 random characters>.tmp<suffix>`` in the target's folder
    (hidden; ``<host>`` is 8 hex digits of a hash of the host name, ``<suffix>`` by default
    the target's, so libraries that choose a format by extension behave the same). They are
    created with ``os.open(..., 0o666)``, so the file gets exactly the permissions the umask
    (and a default ACL) give any new file; nothing is changed with ``chmod``.

Failures
    An exception in the caller's code (``KeyboardInterrupt`` included) deletes the temporary
    file. A process killed outright (``SIGKILL``, power loss) cannot clean up after itself;
    its temporary file stays until the next successful write of the same target.

Stale temporary files (:func:`remove_stale_temps`)
    After every successful write of a target, temporary files *of that target only* and *of
    this naming pattern only* are removed when they are stale:

    * written on this host by a process that no longer runs (its pid is gone), at once;
    * otherwise (another host sharing the folder, a live pid that may have been reused, or a
      name from an older version without pid and host) once unmodified for
      :data:`STALE_AGE_S` (one day): no write of this package leaves a file untouched for that
      long while it is in progress.

    Cleaning is best effort: a file that cannot be removed is left alone and never fails the
    write that triggered the cleaning.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import format_error

__all__ = [
    "STALE_AGE_S",
    "OutputPathError",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_writable",
    "commit_temp",
    "default_file_mode",
    "discard_temp",
    "remove_stale_temps",
    "reserve_temp",
]

#: Age (seconds since the last modification) after which a temporary file whose owner cannot
#: be checked is taken as abandoned.
STALE_AGE_S = 24 * 3600.0

_RANDOM_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"
_HOST = hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


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


def _temp_pattern(target: Path) -> re.Pattern[str]:
    """Names of this module's temporary files of ``target`` (and of older versions' ones)."""
    return re.compile(
        r"^\." + re.escape(target.name) + r"\.(?:(?P<pid>\d+)-(?P<host>[0-9a-f]{8})\.)?[a-z0-9_]{8}\.tmp(?:\..*)?$"
    )


def reserve_temp(target: Path, *, suffix: str | None = None) -> Path:
    """Create an empty temporary file next to ``target`` and return its path.

    Parameters
    ----------
    target
        Final path (its folder must exist; see :func:`check_writable`).
    suffix
        Suffix of the temporary name; default that of ``target``, so that libraries
        choosing a format by extension (``numpy.save``, ``savefig``) behave the same.

    Returns
    -------
    Path
        The new, empty file, with the permissions the umask gives.

    Raises
    ------
    OutputPathError
        When the file cannot be created.
    """
    target = Path(target)
    sfx = target.suffix if suffix is None else suffix
    stem = f".{target.name}.{os.getpid()}-{_HOST}."
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        name = stem + "".join(secrets.choice(_RANDOM_CHARS) for _ in range(8)) + f".tmp{sfx}"
        tmp = target.parent / name
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise OutputPathError(
                format_error(
                    f"Cannot write the output file '{target}'",
                    reason=f"creating a temporary file in '{target.parent}' failed ({exc.strerror or exc})",
                    fix="check the permissions and free space of that directory",
                )
            ) from exc
        os.close(fd)
        return tmp
    raise OutputPathError(  # pragma: no cover - 100 collisions of 37**8 names
        format_error(f"Cannot write the output file '{target}'", reason="no free temporary file name")
    )


def discard_temp(tmp: Path) -> None:
    """Delete a temporary file (no error when it is already gone)."""
    Path(tmp).unlink(missing_ok=True)


def commit_temp(tmp: Path, target: Path, *, durable: bool = False) -> None:
    """Move ``tmp`` onto ``target`` atomically, then remove stale temporary files of ``target``.

    Parameters
    ----------
    tmp
        A complete, closed file from :func:`reserve_temp`.
    target
        Final path.
    durable
        ``fsync`` the file before the move (for files a crash must not lose, such as
        checkpoints).
    """
    if durable:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    os.replace(tmp, target)
    remove_stale_temps(target)


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:  # pragma: no cover - e.g. pid out of range
        return False
    return True


def remove_stale_temps(
    target: str | os.PathLike, *, max_age: float = STALE_AGE_S, now: float | None = None
) -> list[Path]:
    """Remove abandoned temporary files of ``target`` (see the module notes for the policy).

    Parameters
    ----------
    target
        The final path whose temporary files are examined (only files matching this
        module's naming pattern for exactly this name, in its folder).
    max_age
        Seconds without modification after which a file whose owner cannot be checked is
        stale.
    now
        Current time (``time.time()``); for tests.

    Returns
    -------
    list of Path
        The files removed.
    """
    target = Path(target)
    pattern = _temp_pattern(target)
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            old = now - entry.stat(follow_symlinks=False).st_mtime > max_age
            pid, host = match.group("pid"), match.group("host")
            orphan = pid is not None and host == _HOST and not _pid_running(int(pid))
            if orphan or old:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


@contextmanager
def atomic_path(
    path: str | os.PathLike, *, suffix: str | None = None, parents: bool = False, durable: bool = False
) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` on success.

    Parameters
    ----------
    path
        Final file path.
    suffix
        Suffix of the temporary file (default: that of ``path``).
    parents
        Create missing parent folders first (otherwise a missing folder is an
        :class:`OutputPathError`).
    durable
        ``fsync`` the file before moving it into place.

    Yields
    ------
    Path
        Where the caller writes (an empty file exists there; writers may replace or
        truncate it). On an exception (including KeyboardInterrupt) the temporary file is
        deleted and ``path`` is left as it was.
    """
    if parents:
        Path(path).expanduser().absolute().parent.mkdir(parents=True, exist_ok=True)
    target = check_writable(path)
    tmp = reserve_temp(target, suffix=suffix)
    try:
        yield tmp
        commit_temp(tmp, target, durable=durable)
    except BaseException:
        discard_temp(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, parents: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically; returns the absolute path."""
    with atomic_path(path, parents=parents) as tmp:
        tmp.write_bytes(data)
    return Path(path).expanduser().absolute()


def atomic_write_text(path: str | os.PathLike, text: str, *, parents: bool = True) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (newlines as given); returns the absolute path."""
    return atomic_write_bytes(path, text.encode("utf-8"), parents=parents)


def default_file_mode() -> int:
    """``0o666`` less the process umask: the mode a new file gets (and so an atomic write's)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc: read the umask by setting it (not thread-safe)
    os.umask(mask)
    return 0o666 & ~mask
