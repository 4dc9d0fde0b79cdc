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

__all__ = ["estimate_noise", "estimate_sigma", "sigma_from_errors", "censored_moments", "SPIKE_TRIM"]

#: Fraction of the largest squared neighbour residuals left out per group.
SPIKE_TRIM = 0.01
#: Share of a Gaussian variance kept when the largest ``SPIKE_TRIM`` of the squares are left
#: out (``1 - 2 (z phi(z) + Q(z))`` at ``z = Q^-1(SPIKE_TRIM / 2)``): trimmed means of squared
#: residuals are divided by it (the noise laws fitted to them would otherwise be 8 % low).
TRIM_KEPT = 0.915
_MIN_CLASS = 30
_MAX_CLASSES = 10
_ALPHA_FLOOR = 0.05
#: As the engine's ``CENSORED_ZERO_FRACTION``: data with no negative value and at least this
#: fraction of exact zeros count as clipped at zero.
_CENSORED_ZEROS = 0.05


def _level_classes(r2: np.ndarray, level: np.ndarray, *, trim_kept: float
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Steps 2-3 of the module notes: the largest ``SPIKE_TRIM`` of ``r2`` left out, the rest
    sorted into quantile classes of ``level``.

    Returns the classes' mean levels ``L_k``, noise variances ``mean(r2) / 1.25 / trim_kept``
    and sizes, and the number of bins kept.
    """
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
        V.append(float(np.mean(r2[sel]) / 1.25 / trim_kept))
        N.append(float(sel.sum()))
    return np.array(L), np.array(V), np.array(N), int(r2.size)


def _group_law(r2: np.ndarray, level: np.ndarray) -> dict[str, Any]:
    from scipy.optimize import nnls

    L_, V_, N_, kept = _level_classes(r2, level, trim_kept=1.0)
    w = np.sqrt(N_)
    if L_.size >= 2 and np.ptp(L_) > 0:
        (alpha, beta), _ = nnls(np.stack([np.ones_like(L_), L_], axis=1) * w[:, None], V_ * w)
    else:
        alpha, beta = float(np.average(V_, weights=N_)), 0.0
    floor = _ALPHA_FLOOR * float(np.average(V_, weights=N_))
    alpha = max(float(alpha), floor)
    return {"alpha": alpha, "beta": float(beta), "classes": int(L_.size), "bins": kept}


def censored_moments(mu: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of ``max(0, X)`` for ``X ~ N(mu, s^2)`` (elementwise).

    ``E = mu Phi(a) + s phi(a)``, ``E[Y^2] = (mu^2 + s^2) Phi(a) + mu s phi(a)``, ``a = mu / s``.
    """
    from scipy.special import ndtr

    mu = np.asarray(mu, dtype=float)
    s = np.asarray(s, dtype=float)
    a = mu / s
    Phi = ndtr(a)
    phi = np.exp(-0.5 * a * a) / np.sqrt(2.0 * np.pi)
    m1 = mu * Phi + s * phi
    m2 = (mu * mu + s * s) * Phi + mu * s * phi
    return m1, np.maximum(m2 - m1 * m1, 1e-12 * s * s)


def _pre_clip(level: np.ndarray, alpha: float, beta: float, iterations: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """The mean ``mu`` and noise ``s = sqrt(alpha + beta max(mu, 0))`` before clipping whose clipped mean is ``level``.

    Bisection on ``mu`` in ``[-8 sqrt(alpha), level]`` (the clipped mean is increasing in
    ``mu`` and never below it); a level at or below the lower end's clipped mean gives that end.
    """
    L = np.maximum(np.asarray(level, dtype=float), 0.0)
    lo = np.full(L.shape, -8.0 * np.sqrt(alpha))
    hi = np.maximum(L, lo + 1e-12)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        m1, _ = censored_moments(mid, np.sqrt(alpha + beta * np.maximum(mid, 0.0)))
        below = m1 < L
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    mu = 0.5 * (lo + hi)
    return mu, np.sqrt(alpha + beta * np.maximum(mu, 0.0))


def _ring_level(x: np.ndarray, size: int = 5) -> np.ndarray:
    """Mean of the finite values in each bin's ``size`` x ``size`` neighbourhood **without the
    bin itself** (NaN where there are none), per image.

    The bin is left out because a level that includes it sorts bins by their own noise (the
    low classes would hold the bins that happened to come out low), which biases the class
    variances of clipped data; 5 x 5 rather than 3 x 3 because the level sets each bin's
    weight, and a level from 8 clipped neighbours is so noisy that some bins get almost no
    variance (measured on a clipped toy: reduced chi-square 1.7-4.3 with 3 x 3, 1.1-1.3 with
    5 x 5).
    """
    from scipy.ndimage import uniform_filter

    fin = np.isfinite(x)
    v = np.where(fin, x, 0.0)
    n = float(size * size)
    tot = uniform_filter(v, size=(1, size, size), mode="constant") * n - v
    cnt = uniform_filter(fin.astype(float), size=(1, size, size), mode="constant") * n - fin
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0.5, tot / np.maximum(cnt, 1.0), np.nan)


def _censored_law(r2: np.ndarray, level: np.ndarray, start: dict[str, Any]) -> dict[str, Any]:
    """The noise law before clipping, ``s^2 = alpha + beta max(mu, 0)``, from the clipped data's scatter.

    Per quantile class of the local level: the clipped data's variance ``V_k`` (neighbour
    residuals) at clipped mean ``L_k``; ``(alpha, beta)`` are chosen so that the clipped
    normal's variance at the ``mu_k`` whose clipped mean is ``L_k`` matches ``V_k`` (relative
    least squares weighted by class size).
    """
    from scipy.optimize import least_squares

    L_, V_, N_, kept = _level_classes(r2, level, trim_kept=TRIM_KEPT)
    w = np.sqrt(N_)
    v_mean = float(np.average(V_, weights=w ** 2))

    def resid(p: np.ndarray) -> np.ndarray:
        alpha, beta = np.exp(p[0]), np.exp(p[1])
        mu, sd = _pre_clip(L_, alpha, beta, iterations=40)
        _, var = censored_moments(mu, sd)
        return w * (var / V_ - 1.0)

    a0 = max(float(start["alpha"]), _ALPHA_FLOOR * v_mean)
    b0 = max(float(start["beta"]), 1e-3 * v_mean / max(float(np.max(L_)), 1e-12))
    sol = least_squares(resid, np.log([a0, b0]), method="trf", x_scale=1.0, max_nfev=60)
    alpha, beta = float(np.exp(sol.x[0])), float(np.exp(sol.x[1]))
    return {"alpha": alpha, "beta": beta, "classes": int(L_.size), "bins": kept, "censored": True,
            "level_floor": float(L_.min()), "misfit_rms": float(np.sqrt(np.mean((resid(sol.x) / w) ** 2)))}


def estimate_noise(images: np.ndarray, groups: np.ndarray, *, censored: bool | None = None
                   ) -> tuple[np.ndarray, np.ndarray | None, list[dict[str, Any]]]:
    """Errors estimated from the counts, aware of clipping at zero (see the module notes).

    Parameters
    ----------
    images, groups
        As :func:`estimate_sigma`.
    censored
        Whether the data were clipped at zero; None: when no finite value is negative and at
        least 5 % are exactly 0 (the engine's rule).

    Returns
    -------
    sigma
        One standard deviation of each bin **as measured** (after clipping): the fit's weights.
    clip_sigma
        Clipped data: the noise of each bin **before** clipping (the clipped-expectation link's
        ``s``); None otherwise.
    laws
        Per group: ``group``, ``alpha``, ``beta`` (before clipping when ``censored``),
        ``classes``, ``bins``, ``censored``.
    """
    x = np.asarray(images, dtype=float)
    sigma, laws = estimate_sigma(x, groups)
    fin = np.isfinite(x)
    if censored is None:
        vals = x[fin]
        censored = bool(vals.size and vals.min() >= 0 and np.mean(vals == 0) >= _CENSORED_ZEROS)
    if not censored:
        for law in laws:
            law["censored"] = False
        return sigma, None, laws
    g = np.asarray(groups).reshape(-1)
    r, _, four = neighbour_residuals(x)
    level = _ring_level(x)
    four = four & np.isfinite(level)
    clip = np.full(x.shape, np.nan)
    post = np.full(x.shape, np.nan)
    out_laws = []
    for law0 in laws:
        sel = g == law0["group"]
        law = _censored_law(r[sel][four[sel]] ** 2, level[sel][four[sel]], law0)
        law["group"] = law0["group"]
        out_laws.append(law)
        # levels below the lowest class's mean (e.g. a neighbourhood of zeros) get that class's
        # noise: a local level of 0 would claim a clipped variance of 0, i.e. infinite weight
        lv = np.maximum(np.where(np.isfinite(level[sel]), level[sel], 0.0), law["level_floor"])
        mu, sd = _pre_clip(lv, law["alpha"], law["beta"])
        _, var = censored_moments(mu, sd)
        ok = fin[sel]
        clip[sel] = np.where(ok, sd, np.nan)
        post[sel] = np.where(ok, np.sqrt(var), np.nan)
    return post, clip, out_laws


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
