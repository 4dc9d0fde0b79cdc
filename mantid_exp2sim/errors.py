"""Error types and the one helper that formats every user-facing message.

Every message has three parts, in this order: what went wrong, why (the
offending value and what is allowed), and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "Exp2SimError",
    "BundleError",
    "InputDataError",
    "MissingDependencyError",
    "format_error",
    "require",
]


class Exp2SimError(Exception):
    """Base class of the package's own errors."""


class BundleError(Exp2SimError, ValueError):
    """A model bundle is missing, corrupted, of the wrong version or the wrong kind."""


class InputDataError(Exp2SimError, ValueError):
    """Input data are unusable: wrong shape or dimensionality, non-finite, empty."""


class MissingDependencyError(Exp2SimError, ImportError):
    """An optional dependency needed for the requested feature is not installed."""


def format_error(summary: str, *, reason: str | None = None, fix: str | None = None) -> str:
    """Build a three-part error message.

    Parameters
    ----------
    summary
        What went wrong, naming the property, argument or file concerned.
    reason
        Why: the offending value and what is allowed.
    fix
        What the user can do about it.

    Returns
    -------
    str
        ``"summary: reason. fix"`` with empty parts left out.
    """
    msg = summary.rstrip(".")
    if reason:
        msg += f": {reason.rstrip('.')}"
    msg += "."
    if fix:
        msg += f" {fix.rstrip('.')}."
    return msg


def require(module: str, *, extra: str, feature: str):
    """Import an optional dependency or raise an install hint.

    Parameters
    ----------
    module
        Importable module name, e.g. ``"torch"``.
    extra
        The ``pip install mantid-exp2sim[extra]`` extra that provides it.
    feature
        What the user asked for that needs it.

    Returns
    -------
    module
        The imported module.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised by environment
        raise MissingDependencyError(
            format_error(
                f"{feature} needs the Python package '{module}'",
                reason=f"importing it failed ({exc})",
                fix=f"install it with: pip install 'mantid-exp2sim[{extra}]'",
            )
        ) from exc
