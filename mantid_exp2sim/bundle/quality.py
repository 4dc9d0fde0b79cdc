"""Warnings from a generator bundle's own validation record.

A bundle carries the PSNR of its translation and of doing nothing (``psnr_identity``) on
held-out simulated pairs (``manifest["validation"]``). When the translation scored below doing
nothing, users must be told every time the model runs, not only in the release notes.
"""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["validation_warning"]


def validation_warning(manifest: Mapping[str, Any]) -> str | None:
    """A one-line warning when the bundle's validation shows it is worse than doing nothing.

    Parameters
    ----------
    manifest
        A bundle manifest.

    Returns
    -------
    str or None
        The warning, or None when the validation record is absent or shows no problem.
    """
    task = manifest.get("task")
    validation = manifest.get("validation") or {}
    try:
        model = float(validation[f"psnr_{task}"])
        identity = float(validation["psnr_identity"])
    except (KeyError, TypeError, ValueError):
        return None
    if model >= identity:
        return None
    return (
        f"model bundle '{manifest.get('bundle_id', '?')}' scored below doing nothing on its own "
        f"held-out validation (PSNR {model:.2f} dB vs {identity:.2f} dB for the untranslated input): "
        "treat its output with caution or pass a better ModelFile"
    )
