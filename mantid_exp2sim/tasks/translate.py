"""Translate task: add (``convolve``) or remove (``deconvolve``) the instrument resolution (Mantid-free).

Used by ``exp2sim deconvolve|convolve`` and by the ResolutionDeconvolveGAN /
ResolutionConvolveGAN algorithms: checking the input, choosing the model bundle
(:func:`mantid_exp2sim.bundle.resolve.generator_bundle`), running
:func:`mantid_exp2sim.inference.translate` and giving the output its errors and provenance.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..bundle.format import Bundle
from ..bundle.resolve import generator_bundle
from ..errors import InputDataError, format_error
from ..histogram import MDHisto, network_ndim

__all__ = [
    "DIRECTIONS",
    "ERRORS_DESCRIPTION",
    "LOG_PREFIX",
    "check_signal",
    "propagate_errors",
    "provenance_logs",
    "translate_histo",
]

#: Exp2SimGAN direction of each task.
DIRECTIONS = {"deconvolve": "exp2sim", "convolve": "sim2exp"}
#: Prefix of the provenance sample logs.
LOG_PREFIX = "exp2sim_"
#: What the output errors are (recorded in the output and in the docs).
ERRORS_DESCRIPTION = (
    "input errors scaled by the ratio of output to input RMS intensity; "
    "not propagated through the network, no model uncertainty"
)


def check_signal(signal: np.ndarray) -> str:
    """Empty string if the signal can be translated, else the problem.

    Refuses +-inf, inputs with no unmasked bin and inputs whose unmasked bins are all zero.
    """
    arr = np.asarray(signal)
    n_inf = int(np.count_nonzero(np.isinf(arr)))
    if n_inf:
        return (
            f"{n_inf} bin(s) are infinite; only numbers and NaN (masked bins) are allowed. "
            "Mask them (set them to NaN) first"
        )
    finite = np.isfinite(arr)
    if not finite.any():
        return f"all {arr.size} bins are masked (NaN): there is nothing to translate"
    if not np.any(arr[finite]):
        return "every unmasked bin is zero: there is nothing to translate"
    return ""


def _rms(values: np.ndarray) -> float:
    v = values[np.isfinite(values)]
    return float(np.sqrt(np.mean(v * v))) if v.size else 0.0


def propagate_errors(source: MDHisto, result: MDHisto) -> np.ndarray | None:
    """Output errors: the input's sigma times ``rms(output) / rms(input)`` (unmasked bins).

    The generator gives no uncertainty and its output at one bin depends on many input
    bins, so no exact propagation exists; this keeps the measurement's relative noise level
    on the output's intensity scale (see :data:`ERRORS_DESCRIPTION`). NaN where masked;
    None when the input has no errors.
    """
    if source.errors is None:
        return None
    rms_in = _rms(source.signal)
    ratio = _rms(result.signal) / rms_in if rms_in > 0 else 0.0
    errors = source.errors * ratio
    return np.where(np.isnan(result.signal), np.nan, errors)


def translate_histo(
    histo: MDHisto,
    task: str,
    *,
    model_file: str | os.PathLike | None = None,
    bundle: Bundle | None = None,
    backend: str = "auto",
    device: str = "auto",
    batch_size: int | None = None,
    patch_size: Sequence[int] | int | None = None,
    progress: Callable[[int, int], Any] | None = None,
    conserve_intensity: bool = True,
) -> MDHisto:
    """Add (``"convolve"``) or remove (``"deconvolve"``) the instrument resolution.

    Parameters
    ----------
    histo
        Input, 2 or 3 dimensions with more than one bin (size-1 dimensions are carried
        through).
    task
        ``"deconvolve"`` (Exp2Sim) or ``"convolve"`` (Sim2Exp).
    model_file, bundle
        A bundle path, or an already loaded bundle; neither: the shipped default.
    backend, device, batch_size, patch_size, progress, conserve_intensity
        As in :func:`mantid_exp2sim.inference.translate`.

    Returns
    -------
    MDHisto
        Same axes and masked bins; errors from :func:`propagate_errors`; metadata of
        ``translate`` plus ``model_file`` and ``errors``.
    """
    from ..inference import translate

    if task not in DIRECTIONS:
        raise ValueError(f"task must be one of {sorted(DIRECTIONS)}, got {task!r}")
    problem = check_signal(histo.signal)
    if problem:
        raise InputDataError(format_error("The input cannot be translated", reason=problem))
    path: Path | None = None
    if bundle is None:
        bundle = generator_bundle(task, network_ndim(histo.shape), model_file)
        path = bundle.path
    result = translate(
        histo,
        bundle,
        backend=backend,
        device=device,
        batch_size=batch_size,
        patch_size=patch_size,
        progress=progress,
        conserve_intensity=conserve_intensity,
    )
    extra = {"errors": ERRORS_DESCRIPTION}
    if path is not None:
        extra["model_file"] = str(path)
    return result.with_signal(result.signal, propagate_errors(histo, result), metadata=extra)


_PROVENANCE_KEYS = (
    "bundle_id",
    "bundle_sha256",
    "task",
    "direction",
    "backend",
    "device",
    "precision",
    "package_version",
    "model_file",
    "errors",
    "model_warning",
    "intensity_factor",
    "intensity_conservation",
)


def provenance_logs(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The sample logs recorded on an output workspace: ``exp2sim_<key>`` for the provenance keys."""
    return {LOG_PREFIX + k: metadata[k] for k in _PROVENANCE_KEYS if metadata.get(k) is not None}
