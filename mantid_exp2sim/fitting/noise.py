"""Errors of data without errors, refined from a fit: a noise law fitted to the fit's residuals.

Errors estimated from the counts alone (:mod:`.weights`) rest on neighbour residuals, which
also count the signal's structure at the bin scale as noise (sharp bands inflate them), and
on a local level that is itself noisy. Once a model fits, its expectation ``E_i`` separates
signal from noise. :func:`refine_noise` then, per group (incident energy):

1. the model before clipping, ``mu_i``: ``E_i`` itself, or for data clipped at zero the
   ``mu_i`` whose clipped expectation ``mu Phi(mu/s) + s phi(mu/s)`` is ``E_i`` (``s`` the
   current noise before clipping);
2. the squared residuals ``(y_i - E_i)^2``, those beyond 5 standard deviations left out
   (spikes; 7 in the first round, with the current errors), in up to 10 quantile classes of
   ``mu``;
3. the law ``s^2 = alpha + beta max(mu, 0)`` (counting noise growing with the level, a
   subtracted background's noise at zero signal), chosen so that the predicted variance of
   the data (for clipped data the clipped normal's, :func:`~.weights.censored_moments`)
   averaged over each class matches the class's mean squared residual (relative least
   squares weighted by class size);
   Steps 1-3 are repeated 4 times with the new law (``mu_i`` of clipped data depends on
   ``s``, the spike cut on the standard deviations);
4. new weights ``sigma_i`` (the data's standard deviation at ``mu_i``) and, for clipped
   data, the noise before clipping ``s_i``.

:func:`refit` then fits again from the previous optimum with those errors (one local fit,
no new starts). A fit that misses real structure leaves it in the residuals, so the law
absorbs part of a misfit; the reduced chi-square of the refit then stays near 1 and the
comparison between models still sees the misfit through the chi-square difference. The
refined errors are a property of the data, fixed for every model compared (the best-fitting
model's expectation sets them).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputDataError, format_error
from .data import FitData, prepare_data
from .weights import censored_moments

__all__ = ["refine_noise", "refit"]

_MIN_CLASS = 30
_MAX_CLASSES = 10
_ITERATIONS = 4
#: Residuals beyond this many standard deviations are spikes, left out of the law (a Gaussian
#: loses 6e-7 of its variance to such a cut; a trimmed quantile would bias skewed clipped data).
_SPIKE_CUT = 5.0


def _uncensor(expected: np.ndarray, s: np.ndarray, iterations: int = 48) -> np.ndarray:
    """``mu`` with ``mu Phi(mu/s) + s phi(mu/s) = expected`` (bisection; ``expected`` > 0)."""
    e = np.maximum(expected, 1e-12 * s)
    lo = -8.0 * s
    hi = np.maximum(e, lo + 1e-12)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        below = censored_moments(mid, s)[0] < e
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return 0.5 * (lo + hi)


def _law(mu: np.ndarray, r2: np.ndarray, censored: bool, start: tuple[float, float]) -> dict[str, Any]:
    from scipy.optimize import least_squares

    k = int(max(1, min(_MAX_CLASSES, r2.size // _MIN_CLASS)))
    edges = np.quantile(mu, np.linspace(0.0, 1.0, k + 1))
    cls = np.clip(np.searchsorted(edges, mu, side="right") - 1, 0, k - 1)
    present = np.unique(cls)
    V = np.array([r2[cls == c].mean() for c in present])
    w = np.sqrt(np.array([(cls == c).sum() for c in present], dtype=float))
    v_mean = float(np.average(V, weights=w ** 2))

    def predicted(p: np.ndarray) -> np.ndarray:
        alpha, beta = np.exp(p)
        s = np.sqrt(alpha + beta * np.maximum(mu, 0.0))
        var = censored_moments(mu, s)[1] if censored else s * s
        return np.array([var[cls == c].mean() for c in present])

    def resid(p: np.ndarray) -> np.ndarray:
        return w * (predicted(p) / V - 1.0)

    a0 = max(float(start[0]), 0.05 * v_mean)
    b0 = max(float(start[1]), 1e-3 * v_mean / max(float(np.max(np.abs(mu))), 1e-12))
    sol = least_squares(resid, np.log([a0, b0]), method="trf", max_nfev=60)
    alpha, beta = (float(v) for v in np.exp(sol.x))
    return {"alpha": alpha, "beta": beta, "classes": int(present.size), "bins": int(r2.size),
            "censored": bool(censored), "misfit_rms": float(np.sqrt(np.mean((resid(sol.x) / w) ** 2))),
            "source": "fit residuals"}


def refine_noise(fd: FitData, result: Any, *, censored: bool | None = None) -> FitData:
    """Data with errors re-estimated from a fit's residuals (see the module notes).

    Parameters
    ----------
    fd
        The prepared data the fit used.
    result
        Its :class:`~.result.FitResult` (``best_fit``: the expectation of the data).
    censored
        Whether the data are clipped at zero (default: the fit's notes say so, i.e. the
        engine's rule).

    Returns
    -------
    FitData
        Same values, bins and plan; ``sigma`` and ``clip_sigma`` refined, ``error_source``
        ``"estimated (refined from the fit of <model>)"``, ``error_laws`` the new laws.
    """
    best = np.asarray(result.best_fit, dtype=float)
    if best.shape != fd.shape:
        raise InputDataError(format_error("The fit does not belong to these data",
                                          reason=f"best fit {best.shape}, data {fd.shape}"))
    if censored is None:
        yv = fd.signal[fd.fitted]
        censored = bool(yv.min() >= 0 and np.mean(yv == 0) >= 0.05)
    s_now = fd.clip_sigma if fd.clip_sigma is not None else fd.sigma
    sigma = np.full(fd.shape, np.nan)
    clip = np.full(fd.shape, np.nan) if censored else None
    laws = []
    old = {law.get("group"): law for law in fd.error_laws}
    for g, name in enumerate(fd.group_names):
        sel = fd.fitted & (fd.groups == g)
        e, y, s = best[sel], fd.signal[sel], s_now[sel]
        prev = old.get(g, {})
        start = (prev.get("alpha", 0.0), prev.get("beta", 0.0))
        r2 = (y - e) ** 2
        sd = fd.sigma[sel]
        # mu depends on the noise before clipping, the spike cut on the law: iterate them together
        law: dict[str, Any] | None = None
        for it in range(_ITERATIONS):
            mu_try = _uncensor(e, s) if censored else e
            keep = r2 <= (_SPIKE_CUT + (2.0 if it == 0 else 0.0)) ** 2 * sd ** 2
            if keep.sum() < _MIN_CLASS:
                break  # too few residuals for a law (e.g. noise-free data): keep the last one
            mu = mu_try
            law = _law(mu[keep], r2[keep], censored, start)
            law["spikes_left_out"] = int((~keep).sum())
            start = (law["alpha"], law["beta"])
            s = np.sqrt(law["alpha"] + law["beta"] * np.maximum(mu, 0.0))
            sd = np.sqrt(censored_moments(mu, s)[1]) if censored else s
        if law is None:
            # no law could be fitted: this group keeps the errors it had
            laws.append({**prev, "group": g, "refined": False,
                         "reason": f"fewer than {_MIN_CLASS} residuals within {_SPIKE_CUT + 2:g} sigma"})
            sigma[sel] = fd.sigma[sel]
            if clip is not None:
                clip[sel] = s_now[sel]
            continue
        law["group"] = g
        laws.append(law)
        sigma[sel] = np.sqrt(censored_moments(mu, s)[1]) if censored else s
        if clip is not None:
            clip[sel] = s
    new = prepare_data(np.where(fd.fitted, fd.signal, np.nan), errors=sigma, plan=fd.plan,
                       groups=None if fd.plan is not None else np.where(fd.fitted, fd.groups, 0),
                       spin_model=fd.plan is not None, clip_sigma=clip)
    new.error_source = f"estimated (refined from the fit of {result.model})"
    new.error_laws = laws
    new.notes = [n for n in fd.notes if "errors estimated" not in n] + [
        f"errors refined from the residuals of the fit of {result.model} (noise law per Ei)"]
    return new


def refit(fd: FitData, model: Any, result: Any, **kwargs: Any) -> Any:
    """One local fit of ``model`` to ``fd`` from ``result``'s optimum (no new starts, no scans).

    Keywords go to :func:`~.engine.fit_model` (``fixed``, ``workers``, ``resolution``, ...).
    """
    from .engine import fit_model

    fixed = {k: result.values[k] for k in result.fixed}
    fixed.update(kwargs.pop("fixed", None) or {})
    free_start = {k: v for k, v in result.values.items()}
    r = fit_model(fd, model, fixed=fixed, extra_starts=[free_start], include_published=False, n_sobol=0, n_local=1,
                  scan_rounds=0, coarse=1, **kwargs)
    r.seconds += result.seconds
    r.nfev += result.nfev
    return r
