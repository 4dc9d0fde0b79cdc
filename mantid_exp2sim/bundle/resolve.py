"""Choosing and checking a generator bundle for ``ndim``-D data (Mantid-free).

Shared by the resolution algorithms / ``exp2sim deconvolve|convolve``
(:func:`mantid_exp2sim.algorithms._translate_base.resolve_model`) and the domain score
(:func:`mantid_exp2sim.domain.applicability.resolve_score_bundle`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import BundleError, format_error
from .defaults import default_bundle_path
from .format import load_bundle

__all__ = ["resolve_generator_bundle"]


def resolve_generator_bundle(
    ndim: int,
    model_file: str | os.PathLike | None,
    *,
    default_task: str,
    task: str | None,
    purpose: str,
    describe_ndim: str,
    fix: str,
) -> tuple[Any, Path]:
    """Load ``model_file`` (or the shipped ``default_task`` bundle) and check its ``ndim``.

    Parameters
    ----------
    ndim
        Dimensions (with more than one bin) of the data.
    model_file
        A ``.exp2sim.h5`` bundle, or None/"" for ``default_bundle_path(default_task, ndim)``.
    default_task
        Task of the shipped default bundle.
    task
        Task the loaded bundle must have (None: any).
    purpose
        What the shipped models do, for the "no model" message (e.g. ``"translate"``).
    describe_ndim
        Reason text for a dimensionality mismatch, formatted with ``bundle_ndim``.
    fix
        Fix text for a dimensionality mismatch.

    Raises
    ------
    BundleError
        Unreadable file, wrong kind or task, wrong dimensionality, or no shipped default.
    """
    if model_file:
        path = Path(model_file).expanduser()
    else:
        if ndim not in (2, 3):
            raise BundleError(
                format_error(
                    f"No model for {ndim}D data",
                    reason=f"the shipped models {purpose} 2D and 3D histograms",
                    fix="bin the data to 2 or 3 dimensions with more than one bin each",
                )
            )
        path = default_bundle_path(default_task, ndim)
    bundle = load_bundle(path, kind="generator", task=task)
    bundle_ndim = int(bundle.manifest.get("ndim", 0))
    if bundle_ndim != ndim:
        raise BundleError(
            format_error(
                f"The model '{path}' does not fit the data",
                reason=describe_ndim.format(bundle_ndim=bundle_ndim)
                + f"; the input has {ndim} dimensions with more than one bin",
                fix=fix,
            )
        )
    return bundle, path
