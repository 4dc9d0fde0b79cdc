"""The one way to a model bundle: a path, a loaded :class:`Bundle` or None (the shipped default).

:func:`resolve_bundle` loads (or takes) the bundle and checks that it is of the kind, task and
dimensionality the caller needs, and that it holds what that use reads: class names and
thresholds for a classifier, the reference bank for the domain score. Every task, both front
ends and the inference engine get their bundles here; :func:`generator_bundle`,
:func:`score_bundle` and :func:`classifier_bundle` name the three uses. Mantid- and torch-free.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Union

import numpy as np

from ..errors import BundleError, format_error
from .defaults import default_bundle_path, default_regressor_path
from .format import Bundle, load_bundle
from .manifest import check_expected

__all__ = [
    "BundleSource",
    "classifier_bundle",
    "generator_bundle",
    "reference_bank",
    "regressor_bundle",
    "resolve_bundle",
    "score_bundle",
]

#: What a caller may pass for a model: a ``*.exp2sim.h5`` path, a loaded bundle, or
#: None / "" for the shipped default.
BundleSource = Union[str, "os.PathLike[str]", Bundle, None]


def resolve_bundle(
    source: BundleSource,
    *,
    kind: str | None = None,
    task: str | None = None,
    ndim: int | None = None,
    default_task: str | None = None,
    needs_reference_bank: bool = False,
) -> Bundle:
    """A checked bundle from a path, a loaded bundle, or None (the shipped default).

    Parameters
    ----------
    source
        A ``.exp2sim.h5`` path, a loaded :class:`Bundle` (checked as a file would be), or
        None/"" for ``default_bundle_path(default_task or task, ndim)``.
    kind, task
        What the bundle must be (None: any).
    ndim
        Dimensions with more than one bin of the data the bundle is for (None: any).
    default_task
        Task of the shipped default when it differs from ``task`` (e.g. any generator may
        score data, the shipped scorer is the deconvolution generator).
    needs_reference_bank
        The bundle must hold a domain-score reference bank (see :func:`reference_bank`).

    Returns
    -------
    Bundle
        Its ``path`` is the file it was read from.

    Raises
    ------
    BundleError
        Unreadable or corrupted file, no shipped default, wrong kind, task or
        dimensionality, or missing parts the use needs; the message names the file.
    """
    if source is None or (isinstance(source, str) and not source):
        source = _default_path(default_task or task, ndim)
    if isinstance(source, (str, os.PathLike)):
        bundle = load_bundle(Path(source).expanduser(), kind=kind, task=task)
    else:
        bundle = source
        if kind is not None or task is not None:
            check_expected(bundle.manifest, where=str(bundle.path), kind=kind, task=task)
    if ndim is not None:
        bundle_ndim = int(bundle.manifest.get("ndim", 0))
        if bundle_ndim != ndim:
            raise BundleError(
                format_error(
                    f"The model '{bundle.path}' does not fit the data",
                    reason=f"it is a {bundle_ndim}D model, made for {bundle_ndim}D data; the input has "
                    f"{ndim} dimensions with more than one bin",
                    fix=f"use a {ndim}D {task or kind or 'model'} bundle (or none, for the shipped one)",
                )
            )
    if kind == "classifier":
        _check_classifier(bundle)
    if needs_reference_bank:
        reference_bank(bundle)
    return bundle


def generator_bundle(task: str, ndim: int, source: BundleSource = None) -> Bundle:
    """The generator that translates ``ndim``-D data for ``task`` (``"deconvolve"`` or ``"convolve"``)."""
    return resolve_bundle(source, kind="generator", task=task, ndim=ndim)


def score_bundle(ndim: int, source: BundleSource = None, *, default_task: str = "deconvolve") -> Bundle:
    """The generator whose encoder and reference bank score ``ndim``-D data.

    Any generator with a reference bank may score; the shipped default is the
    ``default_task`` generator for ``ndim``.
    """
    return resolve_bundle(
        source, kind="generator", ndim=ndim, default_task=default_task, needs_reference_bank=True
    )


#: The shipped classifier of the paper's route (trained on unconvolved spectra, read behind the
#: deconvolution generator); the default classifier when ``deconvolved`` is asked for.
DECONVOLVED_CLASSIFIER = "classify_deconvolved_2d.exp2sim.h5"


def classifier_bundle(source: BundleSource = None, *, deconvolved: bool = False) -> Bundle:
    """The 2D ``classify`` classifier.

    When ``source`` is None: the shipped ``classify_2d`` (it reads raw, measured-like
    spectra), or with ``deconvolved`` the shipped :data:`DECONVOLVED_CLASSIFIER` (for spectra
    deconvolved by the generator) when it is installed.
    """
    if (source is None or (isinstance(source, str) and not source)) and deconvolved:
        from .defaults import default_bundle_dir

        path = default_bundle_dir() / DECONVOLVED_CLASSIFIER
        if path.is_file():
            source = path
    return resolve_bundle(source, kind="classifier", task="classify", ndim=2)


def regressor_bundle(model: str, source: BundleSource = None) -> Bundle:
    """The parameter-estimation network of spin model ``model`` (the shipped one when ``source`` is None).

    Raises
    ------
    BundleError
        Not a regressor bundle, or one made for another model (the message names both).
    """
    if source is None or (isinstance(source, str) and not source):
        source = default_regressor_path(model)
    bundle = resolve_bundle(source, kind="regressor", task="regress", ndim=2)
    made_for = (bundle.manifest.get("regression") or {}).get("model")
    if made_for != model:
        raise BundleError(
            format_error(
                f"The parameter-estimation network '{bundle.path}' is for another model",
                reason=f"it estimates the parameters of {made_for!r}, the fit is of {model!r}",
                fix=f"pass the network trained for {model!r} (exp2sim-train regressor --model {model})",
            )
        )
    return bundle


def reference_bank(bundle: Bundle) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
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


def _default_path(task: str | None, ndim: int | None) -> Path:
    """The shipped bundle for ``task`` in ``ndim`` dimensions."""
    if task is None or ndim is None:
        raise BundleError(
            format_error("No model bundle given", fix="pass the path of a *.exp2sim.h5 bundle")
        )
    if ndim not in (2, 3):
        raise BundleError(
            format_error(
                f"No model for {ndim}D data",
                reason="the shipped models work on 2D and 3D histograms",
                fix="bin the data to 2 or 3 dimensions with more than one bin each",
            )
        )
    return default_bundle_path(task, ndim)


def _check_classifier(bundle: Bundle) -> None:
    """A classifier must name its classes and carry calibrated thresholds."""
    man = bundle.manifest
    if not man.get("classes") or not man.get("thresholds"):
        raise BundleError(
            format_error(
                f"Classifier bundle {getattr(bundle, 'path', '')} lacks class names or thresholds",
                fix="re-export it with exp2sim-train classifier",
            )
        )
