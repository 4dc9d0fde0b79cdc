"""One-line reports of failures, shared by the command-line tools.

A per-file failure is reported in one line and the batch goes on; nothing here prints a
traceback. Errors the package expects (its own, and ``ValueError``/``OSError``/``RuntimeError``
from the libraries it calls) are shown as they are; anything else is named as unexpected,
with a request to report it.
"""

from __future__ import annotations

from ..errors import Exp2SimError

__all__ = ["EXPECTED_ERRORS", "failure_line", "one_line"]

#: Exceptions that carry a message meant for the user.
EXPECTED_ERRORS = (Exp2SimError, ValueError, OSError, RuntimeError)


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (its type name when it has none)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def failure_line(exc: BaseException) -> str:
    """One line describing why a file (or a run) failed, for ``stderr``.

    Parameters
    ----------
    exc
        The exception caught.

    Returns
    -------
    str
        The message of an expected error; for ``MemoryError`` what ran out and what to do;
        otherwise ``"unexpected <Type>: <message>"`` with a request to report it.
    """
    if isinstance(exc, MemoryError):
        return (
            f"not enough memory ({one_line(exc)}). Use --stream for large .nxs/.h5 files, "
            "rebin the data to fewer bins, or run on a machine with more memory."
        )
    if isinstance(exc, EXPECTED_ERRORS):
        return one_line(exc)
    return f"unexpected {type(exc).__name__}: {one_line(exc)} (please report this, with the command line)"
