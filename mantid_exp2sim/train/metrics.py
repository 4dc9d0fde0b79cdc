"""Validation metrics for translated spectra: masked PSNR, masked SSIM, Frechet distance.

All functions take plain numpy arrays (one sample, any number of spatial dimensions) in which
NaN marks a masked bin, or an explicit boolean ``mask`` (True = masked). Only unmasked bins
enter any number. They are numpy/scipy only (no torch), so benchmarks and the package share them.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from ..errors import InputDataError, format_error

__all__ = [
    "valid_mask",
    "masked_psnr",
    "masked_ssim",
    "frechet_distance",
    "intensity_ratio",
    "summarise",
]


def valid_mask(*arrays: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Boolean array, True where every array is finite and ``mask`` (True = masked) is False."""
    first = np.asarray(arrays[0])
    valid = np.ones(first.shape, dtype=bool)
    for a in arrays:
        a = np.asarray(a)
        if a.shape != first.shape:
            raise InputDataError(
                format_error(
                    "Arrays compared by a metric differ in shape",
                    reason=f"{a.shape} vs {first.shape}",
                    fix="compare an output with the target of the same sample",
                )
            )
        valid &= np.isfinite(a)
    if mask is not None:
        valid &= ~np.asarray(mask, dtype=bool)
    return valid


def masked_psnr(
    prediction: np.ndarray,
    target: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    data_range: float | None = None,
) -> float:
    """Peak signal-to-noise ratio over unmasked bins, in dB.

    Parameters
    ----------
    prediction, target
        Same shape; NaN bins are ignored.
    mask
        Optional extra mask, True = masked.
    data_range
        Peak-to-peak range of the target; default ``max - min`` of the target's unmasked bins.

    Returns
    -------
    float
        ``10 log10(range^2 / MSE)``; ``inf`` for a perfect match, NaN when no bin is unmasked.
    """
    v = valid_mask(prediction, target, mask=mask)
    if not v.any():
        return float("nan")
    p = np.asarray(prediction, dtype=np.float64)[v]
    t = np.asarray(target, dtype=np.float64)[v]
    rng = float(t.max() - t.min()) if data_range is None else float(data_range)
    mse = float(np.mean((p - t) ** 2))
    if mse == 0.0:
        return float("inf")
    if rng <= 0.0:
        return float("nan")
    return float(10.0 * np.log10(rng * rng / mse))


def masked_ssim(
    prediction: np.ndarray,
    target: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    data_range: float | None = None,
    sigma: float = 1.5,
) -> float:
    """Structural similarity (Wang et al. 2004, Gaussian window) over unmasked bins.

    Local means, variances and the covariance are normalised convolutions: each Gaussian
    window averages only the unmasked bins it covers, so masked bins carry no weight and their
    values (whatever they are) cannot change the result. The SSIM map is averaged over the
    unmasked bins. With no mask this equals the usual Gaussian-window SSIM (K1 = 0.01,
    K2 = 0.03) up to the treatment of the array border (here: renormalised, not reflected).

    Parameters
    ----------
    prediction, target
        Same shape, any number of dimensions; NaN bins are ignored.
    mask
        Optional extra mask, True = masked.
    data_range
        Dynamic range of the target; default ``max - min`` of its unmasked bins.
    sigma
        Gaussian window width in bins along every axis.

    Returns
    -------
    float
        Mean SSIM in [-1, 1]; NaN when no bin is unmasked.
    """
    from scipy.ndimage import gaussian_filter

    v = valid_mask(prediction, target, mask=mask)
    if not v.any():
        return float("nan")
    w = v.astype(np.float64)
    x = np.where(v, np.asarray(prediction, dtype=np.float64), 0.0)
    y = np.where(v, np.asarray(target, dtype=np.float64), 0.0)
    rng = float(y[v].max() - y[v].min()) if data_range is None else float(data_range)
    if rng <= 0.0:
        rng = 1.0
    c1 = (0.01 * rng) ** 2
    c2 = (0.03 * rng) ** 2

    def smooth(a: np.ndarray) -> np.ndarray:
        return gaussian_filter(a, sigma=sigma, mode="constant", cval=0.0, truncate=3.5)

    norm = smooth(w)
    safe = np.where(norm > 1e-12, norm, 1.0)
    mx = smooth(x) / safe
    my = smooth(y) / safe
    sxx = np.maximum(smooth(x * x) / safe - mx * mx, 0.0)
    syy = np.maximum(smooth(y * y) / safe - my * my, 0.0)
    sxy = smooth(x * y) / safe - mx * my
    ssim_map = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(ssim_map[v].mean())


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray, *, eps: float = 1e-6) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (the FID formula).

    ``|mu_a - mu_b|^2 + tr(C_a + C_b - 2 sqrt(C_a C_b))``, with ``eps`` added to the
    diagonals when the product is singular (fewer samples than features).

    Parameters
    ----------
    features_a, features_b
        Shapes ``(n_a, F)`` and ``(n_b, F)`` with n >= 2.

    Returns
    -------
    float
        Non-negative distance in squared feature units.
    """
    from scipy import linalg

    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise InputDataError(
            format_error(
                "Frechet distance needs two feature matrices (n, F) with n >= 2 and equal F",
                reason=f"got shapes {a.shape} and {b.shape}",
                fix="pool encoder features of at least two samples per set",
            )
        )
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca = np.atleast_2d(np.cov(a, rowvar=False))
    cb = np.atleast_2d(np.cov(b, rowvar=False))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(ca @ cb)
    if caught or not np.isfinite(covmean).all():
        # singular product (fewer samples than features): regularise, as pytorch-fid does
        off = np.eye(ca.shape[0]) * eps
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", linalg.LinAlgWarning)
            covmean = linalg.sqrtm((ca + off) @ (cb + off))
    covmean = np.real(covmean)
    diff = mu_a - mu_b
    value = float(diff @ diff + np.trace(ca) + np.trace(cb) - 2.0 * np.trace(covmean))
    return max(value, 0.0)


def intensity_ratio(prediction: np.ndarray, target: np.ndarray, *, mask: np.ndarray | None = None) -> float:
    """Integrated intensity of ``prediction`` over that of ``target``, over unmasked bins."""
    v = valid_mask(prediction, target, mask=mask)
    t = float(np.asarray(target, dtype=np.float64)[v].sum())
    if not v.any() or t == 0.0:
        return float("nan")
    return float(np.asarray(prediction, dtype=np.float64)[v].sum() / t)


def summarise(values: Sequence[float], how: str = "mean") -> float:
    """Mean (or median) of the finite values; NaN when there are none."""
    arr = np.asarray(list(values), dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return float("nan")
    return float(np.median(arr) if how == "median" else arr.mean())
