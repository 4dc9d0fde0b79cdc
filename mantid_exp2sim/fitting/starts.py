"""Where the local fits start: the published values, a space-filling design, and given starts.

The candidates are

1. ``"published"``: the model's defaults (fixed parameters at their fixed values);
2. ``"extra"``: starts given by the caller (``extra_starts``: e.g. a parameter-estimation
   network's answer, or a previous fit), clipped into the ranges;
3. ``"sobol"``: ``n_sobol`` points of a scrambled Sobol sequence
   (``scipy.stats.qmc.Sobol``, seeded) spread over the box of the free parameters' ranges;
   points whose ordered state is unstable (``forward.is_stable``) are skipped and replaced
   by the next points of the sequence.

Every candidate is **screened**: chi-square after solving the nuisances, one model
evaluation each (in parallel). Local fits then run from every extra start and from the
``n_local`` best-screened of the others (published and Sobol); the engine's scans
(:func:`~.engine.fit_model`, ``n_scan``) then look for better basins one parameter at a time.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import InputDataError, format_error

__all__ = ["Candidate", "design_starts"]


class Candidate:
    """A start: its source and full parameter vector."""

    def __init__(self, source: str, theta: np.ndarray) -> None:
        self.source = source
        self.theta = np.asarray(theta, dtype=float)


def _clip(theta: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.minimum(np.maximum(theta, lo), hi)


def design_starts(forward: Any, fixed: Mapping[str, float], *, n_sobol: int = 8, seed: int = 0,
                  extra_starts: Sequence[Any] | None = None, include_published: bool = True,
                  max_draws: int = 256) -> list[Candidate]:
    """The candidate starts of the module notes.

    Parameters
    ----------
    forward
        The forward model (``parameter_names``, ``defaults``, ``ranges``, optional
        ``is_stable``).
    fixed
        ``{name: value}`` held fixed (already validated).
    n_sobol
        Number of Sobol points (0 for none).
    seed
        Seed of the scrambled Sobol sequence.
    extra_starts
        Starts as mappings ``{name: value}`` (missing names: the published values) or
        vectors in ``parameter_names`` order.
    include_published
        Whether the published values are a start.
    max_draws
        Sobol points drawn at most while skipping unstable ones.
    """
    names = list(forward.parameter_names)
    lo = np.array([forward.ranges[n][0] for n in names])
    hi = np.array([forward.ranges[n][1] for n in names])
    base = np.array([float(forward.defaults.get(n, 0.5 * (forward.ranges[n][0] + forward.ranges[n][1])))
                     for n in names])
    base = _clip(base, lo, hi)
    fix_idx = [names.index(n) for n in fixed]
    for n, v in fixed.items():
        base[names.index(n)] = v
    free = [i for i in range(len(names)) if i not in fix_idx]
    stable = getattr(forward, "is_stable", None)
    out: list[Candidate] = []
    if include_published:
        out.append(Candidate("published", base.copy()))
    for k, s in enumerate(extra_starts or []):
        theta = base.copy()
        if isinstance(s, Mapping):
            unknown = sorted(set(s) - set(names))
            if unknown:
                raise InputDataError(format_error(
                    f"Start {k} names unknown parameters", reason=f"{unknown}; the model has {names}",
                    fix="use the model's parameter names"))
            for n, v in s.items():
                theta[names.index(n)] = float(v)
        else:
            vec = np.asarray(s, dtype=float).reshape(-1)
            if vec.size != len(names):
                raise InputDataError(format_error(
                    f"Start {k} has the wrong length", reason=f"{vec.size} values for {len(names)} parameters"))
            theta = vec.copy()
        if not np.all(np.isfinite(theta)):
            raise InputDataError(format_error(f"Start {k} is not finite", reason=f"{theta.tolist()}"))
        theta = _clip(theta, lo, hi)
        for n, v in fixed.items():
            theta[names.index(n)] = v
        out.append(Candidate("extra", theta))
    if n_sobol > 0 and free:
        from scipy.stats import qmc

        sampler = qmc.Sobol(d=len(free), scramble=True, seed=seed)
        found = 0
        drawn = 0
        while found < n_sobol and drawn < max_draws:
            m = int(np.ceil(np.log2(max(2, n_sobol))))
            pts = sampler.random_base2(m) if drawn == 0 else sampler.random(2 ** m)
            drawn += len(pts)
            for u in pts:
                theta = base.copy()
                theta[free] = lo[free] + u * (hi[free] - lo[free])
                if callable(stable) and not stable(theta):
                    continue
                out.append(Candidate("sobol", theta))
                found += 1
                if found >= n_sobol:
                    break
    return out
