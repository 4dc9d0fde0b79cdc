"""Domain-of-applicability score of histograms against a generator bundle's reference bank.

The bundle (written by ``exp2sim-train export``) holds the reference bank in its reference
parts and the calibration in ``manifest["domain"]``; the features of an input are its pooled
bottleneck features from the same generator's encoder
(:func:`mantid_exp2sim.inference.encode_features`). Each input histogram is scored on its own
(a set of one sample, compared with ``n_reference`` bank samples per repeat).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import BundleError, InputDataError, format_error
from ..histogram import MDHisto
from .score import DomainScore, score

__all__ = ["network_ndim", "resolve_score_bundle", "reference_bank", "score_histograms"]


def network_ndim(histo: MDHisto) -> int:
    """Dimensions with more than one bin."""
    return len(histo.non_integrated_dims())


def resolve_score_bundle(ndim: int, model_file: str | os.PathLike | None = None) -> tuple[Any, Path]:
    """The generator bundle whose encoder and reference bank score ``ndim``-D data.

    Parameters
    ----------
    ndim
        Dimensions (with more than one bin) of the data.
    model_file
        A generator bundle; None or "": the shipped deconvolution generator for ``ndim``.

    Raises
    ------
    BundleError
        Missing or unreadable file, not a generator, a bundle for another dimensionality, or
        no reference bank.
    """
    from ..bundle.resolve import resolve_generator_bundle

    bundle, path = resolve_generator_bundle(
        ndim,
        model_file,
        default_task="deconvolve",
        task=None,
        purpose="score",
        describe_ndim="it is a {bundle_ndim}D model",
        fix=f"use a {ndim}D generator bundle (or leave ModelFile empty for the shipped one)",
    )
    reference_bank(bundle)
    return bundle, path


def reference_bank(bundle: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The reference-bank arrays and calibration stored in a generator bundle.

    Raises
    ------
    BundleError
        When the bundle has no reference features or no calibration.
    """
    arrays = bundle.reference()
    calibration = bundle.manifest.get("domain")
    if "features" not in arrays or not isinstance(calibration, Mapping) or not calibration.get("thresholds"):
        raise BundleError(
            format_error(
                f"Model bundle {getattr(bundle, 'path', '')} has no domain-score reference bank",
                reason="its reference parts lack 'features' or its manifest lacks 'domain' thresholds",
                fix="export the generator with exp2sim-train export (it builds the bank), or pick "
                "another ModelFile",
            )
        )
    return arrays, dict(calibration)


def score_histograms(
    histos: Sequence[MDHisto],
    bundle: Any = None,
    *,
    n_reference: int = 20,
    repeats: int = 1000,
    seed: int = 0,
    backend: str = "auto",
    device: str = "auto",
    progress: Callable[[int, int], Any] | None = None,
) -> list[DomainScore]:
    """Score each histogram against the bundle's reference bank.

    Parameters
    ----------
    histos
        Inputs, all with the bundle's dimensionality.
    bundle
        A loaded generator bundle or a path; None: the shipped deconvolution generator for
        the inputs' dimensionality.
    n_reference, repeats, seed
        As for :func:`mantid_exp2sim.domain.score` (each input uses the same seed, so equal
        inputs get equal results).
    backend, device
        Encoder backend (see :func:`mantid_exp2sim.inference.encode_features`).
    progress
        ``progress(done, total)`` after each input.

    Returns
    -------
    list of DomainScore
        One per input, in order.
    """
    from ..inference import encode_features

    items = list(histos)
    if not items:
        raise InputDataError(format_error("No inputs to score", fix="pass at least one histogram"))
    dims = {network_ndim(h) for h in items}
    if len(dims) != 1:
        raise InputDataError(
            format_error(
                "The inputs differ in dimensionality",
                reason=f"dimensions with more than one bin: {sorted(dims)}",
                fix="score 2D and 3D data in separate calls (they use different models)",
            )
        )
    ndim = dims.pop()
    if bundle is None or isinstance(bundle, (str, os.PathLike)):
        bundle, _ = resolve_score_bundle(ndim, bundle)
    elif int(bundle.manifest.get("ndim", 0)) != ndim:
        raise BundleError(
            format_error(
                "The model does not fit the data",
                reason=f"{bundle.manifest.get('ndim')}D model, {ndim}D input",
            )
        )
    arrays, calibration = reference_bank(bundle)
    out = []
    for i, h in enumerate(items):
        f = encode_features([h], bundle, backend=backend, device=device)
        out.append(score(f, arrays, calibration, n_reference=n_reference, repeats=repeats, seed=seed))
        if progress is not None:
            progress(i + 1, len(items))
    return out
