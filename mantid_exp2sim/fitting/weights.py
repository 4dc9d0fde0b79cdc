"""Weights of the least-squares fit: the data's errors, or an estimate from the counts.

The fit minimises ``chi^2 = sum_i ((y_i - m_i) / sigma_i)^2``. ``sigma`` comes from:

* **given errors** (a histogram's ``errors``, one standard deviation): used as they are,
  except that a zero, negative or non-finite error on a finite value (e.g. ``sqrt(N)`` of
  a bin with 0 counts) is replaced by the smallest positive error of its group (one count's
  worth): a zero error would give the bin infinite weight;
* **an estimate** (:func:`estimate_sigma`) when the data carry no errors, as the released
  background-subtracted and clipped measurement does.

Estimator (per group, i.e. per incident energy; images are the 2D (Qh, Qk) planes of the
data: mosaic tiles, or the energy slices of a volume):

1. ``r_i = y_i - (mean of the 4 nearest neighbours)`` for bins whose 4 neighbours are
   finite, and the local level ``L_i`` = mean of the finite 3x3 neighbourhood
   (:func:`~mantid_exp2sim.simulate.measured_like.neighbour_residuals`). For white noise on a
   locally linear signal ``E[r^2] = 1.25 sigma^2``.
2. The largest 1 % of ``r^2`` in the group are left out (spikes that are not counting
   noise: in the released data the top 0.5 % hold 40-54 % of the sum).
3. The rest are sorted into up to 10 quantile classes of ``L`` (>= 30 bins each); per class
   ``v_k = mean(r^2) / 1.25`` at the class's mean level ``L_k``.
4. ``v = alpha + beta L`` is fitted to the classes by non-negative least squares weighted by
   the class sizes: Poisson counting noise grows linearly with the level (``beta``), and the
   noise of a subtracted background is there at zero signal (``alpha``).
5. ``sigma_i = sqrt(alpha + beta L_i)``, with ``alpha`` at least 5 % of the mean class
   variance.

**The zeros of background-subtracted, clipped data.** A bin set to 0 is not a measurement
of zero with zero error: its unclipped value was anywhere below 0. Using the bin's own value
for a Poisson error (``sigma^2 proportional to y``) would give it infinite weight, and would
bias every fit towards low intensities (Neyman's chi-square); the level ``L`` is a local
average instead, and the classes measure the scatter the clipped data really have (smaller
than before clipping where zeros dominate). The clipping also lifts the mean of the data
above the physical signal where the signal is near zero; the fit's flat background per
incident energy absorbs that to first order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputDataError, format_error
from ..simulate.measured_like import neighbour_residuals

__all__ = ["estimate_sigma", "sigma_from_errors", "SPIKE_TRIM"]

#: Fraction of the largest squared neighbour residuals left out per group.
SPIKE_TRIM = 0.01
_MIN_CLASS = 30
_MAX_CLASSES = 10
_ALPHA_FLOOR = 0.05


def _group_law(r2: np.ndarray, level: np.ndarray) -> dict[str, Any]:
    from scipy.optimize import nnls

    order = np.argsort(r2)
    keep = order[: max(1, int(np.floor(r2.size * (1.0 - SPIKE_TRIM))))]
    r2, level = r2[keep], level[keep]
    k = int(max(1, min(_MAX_CLASSES, r2.size // _MIN_CLASS)))
    edges = np.quantile(level, np.linspace(0.0, 1.0, k + 1))
    L, V, N = [], [], []
    for c in range(k):
        sel = (level >= edges[c]) & ((level < edges[c + 1]) if c < k - 1 else (level <= edges[c + 1]))
        if sel.sum() == 0:
            continue
        L.append(float(np.mean(level[sel])))
        V.append(float(np.mean(r2[sel]) / 1.25))
        N.append(float(sel.sum()))
    L_, V_, N_ = np.array(L), np.array(V), np.array(N)
    w = np.sqrt(N_)
    if L_.size >= 2 and np.ptp(L_) > 0:
        (alpha, beta), _ = nnls(np.stack([np.ones_like(L_), L_], axis=1) * w[:, None], V_ * w)
    else:
        alpha, beta = float(np.average(V_, weights=N_)), 0.0
    floor = _ALPHA_FLOOR * float(np.average(V_, weights=N_))
    alpha = max(float(alpha), floor)
    return {"alpha": alpha, "beta": float(beta), "classes": int(L_.size), "bins": int(r2.size)}


def estimate_sigma(images: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Errors estimated from the data themselves (see the module notes).

    Parameters
    ----------
    images
        Shape ``(n_images, H, W)``: the data as 2D (Qh, Qk) images, NaN where masked or
        unused.
    groups
        Shape ``(n_images,)`` integers: the group (incident energy) of each image.

    Returns
    -------
    sigma
        Shape of ``images``: one standard deviation per bin, NaN where ``images`` is NaN.
    laws
        Per group (in ascending group order): ``group``, ``alpha``, ``beta``, ``classes``,
        ``bins`` (residuals used).

    Raises
    ------
    InputDataError
        A group has too few bins with four finite neighbours to estimate its noise (fewer
        than 30).
    """
    x = np.asarray(images, dtype=float)
    g = np.asarray(groups).reshape(-1)
    if x.ndim != 3 or g.size != x.shape[0]:
        raise InputDataError(format_error("estimate_sigma needs (n_images, H, W) images and one group per image",
                                          reason=f"got images {x.shape} and {g.size} groups"))
    r, level, four = neighbour_residuals(x)
    sigma = np.full(x.shape, np.nan)
    laws = []
    for grp in np.unique(g):
        sel = g == grp
        fin = np.isfinite(x[sel])
        if not fin.any():
            continue
        rr = r[sel][four[sel]]
        if rr.size < _MIN_CLASS:
            raise InputDataError(format_error(
                f"Cannot estimate the errors of group {grp}",
                reason=f"only {rr.size} bins have four unmasked neighbours (need {_MIN_CLASS})",
                fix="pass the data's errors (sigma) explicitly"))
        law = _group_law(rr ** 2, level[sel][four[sel]])
        law["group"] = int(grp)
        laws.append(law)
        lv = np.where(np.isfinite(level[sel]), level[sel], 0.0)
        sig = np.sqrt(law["alpha"] + law["beta"] * np.clip(lv, 0.0, None))
        sigma[sel] = np.where(fin, sig, np.nan)
    return sigma, laws


def sigma_from_errors(errors: np.ndarray, signal: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, int]:
    """Given errors made usable (see the module notes).

    Parameters
    ----------
    errors, signal
        Same shape; ``errors`` one standard deviation.
    groups
        Same shape, integer group of every bin.

    Returns
    -------
    sigma
        Positive where ``signal`` is finite (NaN elsewhere).
    n_replaced
        How many bins got their group's smallest positive error.
    """
    e = np.asarray(errors, dtype=float)
    y = np.asarray(signal, dtype=float)
    if e.shape != y.shape:
        raise InputDataError(format_error("errors do not match the signal", reason=f"shapes {e.shape} and {y.shape}",
                                          fix="give one error per bin"))
    fin = np.isfinite(y)
    bad = fin & ~(np.isfinite(e) & (e > 0))
    out = np.where(fin, e, np.nan)
    for grp in np.unique(groups[bad]) if bad.any() else []:
        in_g = (groups == grp) & fin & ~bad
        if not in_g.any():
            raise InputDataError(format_error(
                f"The errors of group {grp} are all zero or missing",
                reason="no positive error to stand for a bin with zero error",
                fix="pass positive errors, or none to have them estimated from the data"))
        out[(groups == grp) & bad] = float(np.min(e[in_g]))
    return out, int(bad.sum())
