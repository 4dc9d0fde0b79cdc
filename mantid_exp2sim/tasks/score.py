"""Score task: domain-of-applicability score of histograms against a generator bundle's reference bank.

The bundle (written by ``exp2sim-train export``) holds the reference bank in its reference
parts and the calibration in ``manifest["domain"]`` (:func:`~mantid_exp2sim.bundle.resolve.score_bundle`
checks both); the features of an input are its pooled bottleneck features from the same
generator's encoder (:func:`mantid_exp2sim.inference.encode_features`). Each input histogram
is scored on its own (a set of one sample, compared with ``n_reference`` bank samples per
repeat) by the distance maths of :mod:`mantid_exp2sim.domain`. Mantid-free.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from ..bundle.resolve import BundleSource, reference_bank, score_bundle
from ..domain.score import DomainScore, score
from ..errors import InputDataError, format_error
from ..histogram import MDHisto, network_ndim

__all__ = ["score_histograms"]


def score_histograms(
    histos: Sequence[MDHisto],
    bundle: BundleSource = None,
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
    dims = {network_ndim(h.shape) for h in items}
    if len(dims) != 1:
        raise InputDataError(
            format_error(
                "The inputs differ in dimensionality",
                reason=f"dimensions with more than one bin: {sorted(dims)}",
                fix="score 2D and 3D data in separate calls (they use different models)",
            )
        )
    bundle = score_bundle(dims.pop(), bundle)
    arrays, calibration = reference_bank(bundle)
    out = []
    for i, h in enumerate(items):
        f = encode_features([h], bundle, backend=backend, device=device)
        out.append(score(f, arrays, calibration, n_reference=n_reference, repeats=repeats, seed=seed))
        if progress is not None:
            progress(i + 1, len(items))
    return out
