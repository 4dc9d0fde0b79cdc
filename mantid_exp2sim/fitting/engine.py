"""The fitting engine: weighted least squares of a spectrum against spin models.

``fit_model(data, model, ...)`` fits one model, ``fit_models(data, models, ...)`` several and
compares them (:mod:`.compare`). Steps:

1. **Data** (:func:`~.data.prepare_data`): values, errors (given, or estimated from the
   counts: :mod:`.weights`), the bins to fit, one group per incident energy, and the
   simulator plan of the representation (mosaic, volume, slice).
2. **Model** (:mod:`.forward`): a spin model through the simulator
   (:class:`~.evaluator.PlanEvaluator`: everything that does not depend on the parameters
   is computed once), or any function.
3. **Nuisances** (:mod:`.nuisance`): per-group scale (>= 0) and flat (or linear) background,
   solved by weighted linear least squares inside the residual (variable projection), so the
   optimiser sees only the model's own free parameters.
4. **Starts** (:mod:`.starts`): published values, extra starts (e.g. a network's), a
   scrambled Sobol design; all screened with one evaluation each, local fits from the best
   ``n_local``.
5. **Local fits**: ``lmfit.Minimizer(...).minimize(method="least_squares")`` (scipy's trust
   region reflective with the ranges as bounds), ``x_scale`` = range widths; the Jacobian is
   forward differences of the projected residual with steps ``fd_step`` x range width,
   columns evaluated in parallel threads (``workers``; numpy releases the GIL in the heavy
   parts: 1.9x on 2 cores, measured).
6. **Errors** at the best optimum: the full Jacobian (model parameters by forward
   differences, nuisances analytically), covariance ``(J^T J)^-1``, inflated by
   ``sqrt(reduced chi2)`` when that exceeds 1 (stated in the result).

Fixed parameters are held at their given values (which must lie inside the model's ranges).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import InputDataError, format_error
from .compare import ModelComparison, compare_models
from .data import FitData, coarsen, prepare_data
from .forward import SpinWaveForward
from .nuisance import NuisanceModel
from .result import FitResult, StartRecord
from .starts import design_starts

__all__ = ["fit_model", "fit_models", "DEFAULTS", "CENSORED_ZERO_FRACTION"]

#: Fraction of exact zeros (and no negative value) from which data count as clipped at zero.
CENSORED_ZERO_FRACTION = 0.05

#: Default options of :func:`fit_model`.
DEFAULTS: dict[str, Any] = {
    "n_sobol": 24,
    "n_local": 3,
    "n_scan": 8,
    "scan_rounds": 2,
    "fd_step": 1e-4,
    "ftol": 1e-6,
    "xtol": 1e-6,
    "gtol": 1e-8,
    "max_nfev": 40,
    "broyden": 3,
    "coarse": 2,
    "workers": 2,
}


def _is_forward(model: Any) -> bool:
    return callable(getattr(model, "evaluate", None)) and hasattr(model, "parameter_names") and hasattr(model, "ranges")


class _Objective:
    """Residuals, Jacobians and screening of one forward model on one data set."""

    def __init__(self, forward: Any, data: FitData, nuisance: NuisanceModel, free: list[int], base: np.ndarray,
                 pool: ThreadPoolExecutor | None, fd_step: float) -> None:
        self.forward = forward
        self.data = data
        self.nuis = nuisance
        self.free = free
        self.base = base
        self.pool = pool
        names = list(forward.parameter_names)
        self.lo = np.array([forward.ranges[n][0] for n in names])
        self.hi = np.array([forward.ranges[n][1] for n in names])
        self.step = fd_step * (self.hi - self.lo)
        self.y = data.signal[data.fitted]
        self.sw = 1.0 / data.sigma[data.fitted]
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self.nfev = 0
        self.broyden_refresh = 0  # exact Jacobian every (refresh + 1) calls; 0 = always exact
        self.reset_jacobian()
        self.progress: Callable[[], None] | None = None

    # --------------------------------------------------------------- model values
    def theta(self, x: np.ndarray) -> np.ndarray:
        t = self.base.copy()
        t[self.free] = x
        return t

    def _eval(self, theta: np.ndarray) -> np.ndarray:
        out = np.asarray(self.forward.evaluate(theta), dtype=float)
        if out.shape != self.data.shape:
            raise InputDataError(format_error(
                f"Model {self.forward.name!r} returned the wrong shape",
                reason=f"{out.shape}, the data are {self.data.shape}",
                fix="build the model on the data's plan/axes"))
        return out[self.data.fitted]

    def values(self, thetas: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Model values at the fitted bins for several parameter sets (parallel, cached)."""
        keys = [np.asarray(t, dtype=float).tobytes() for t in thetas]
        found = {k: self._cache[k] for k in keys if k in self._cache}
        uniq = list(OrderedDict((k, t) for k, t in zip(keys, thetas) if k not in found).items())
        if uniq:
            if self.pool is not None and len(uniq) > 1:
                vals = list(self.pool.map(self._eval, [t for _, t in uniq]))
            else:
                vals = [self._eval(t) for _, t in uniq]
            self.nfev += len(uniq)
            for (k, _), v in zip(uniq, vals):
                bad = ~np.isfinite(v)
                if bad.any():
                    raise InputDataError(format_error(
                        f"Model {self.forward.name!r} has no value at {int(bad.sum())} fitted bins",
                        reason="it returned NaN or infinity where the data are finite",
                        fix="mask those bins or fix the model"))
                found[k] = v
                self._cache[k] = v
                while len(self._cache) > 16:
                    self._cache.popitem(last=False)
            if self.progress is not None:
                self.progress()
        return [found[k] for k in keys]

    # --------------------------------------------------------------- residuals
    def project(self, f: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Nuisances, model and weighted residual for the spectrum ``f``."""
        vals, model = self.nuis.solve(f, self.y, self.sw)
        return vals, model, (self.y - model) * self.sw

    def residual(self, x: np.ndarray) -> np.ndarray:
        r = self.project(self.values([self.theta(x)])[0])[2]
        c2 = float(np.dot(r, r))
        if c2 < self.best_chi2:
            self.best_chi2, self.best_x = c2, np.array(x, dtype=float)
        return r

    def chi2(self, thetas: Sequence[np.ndarray]) -> list[float]:
        return [float(np.sum(self.project(f)[2] ** 2)) for f in self.values(thetas)]

    def _steps(self, x: np.ndarray) -> np.ndarray:
        h = self.step[self.free].copy()
        up = x + h > self.hi[self.free]
        h[up] = -h[up]
        return h

    def reset_jacobian(self) -> None:
        """Forget the Broyden state and the best point (at the start of every local fit)."""
        self.best_chi2, self.best_x = np.inf, None
        self._jx: np.ndarray | None = None
        self._jr: np.ndarray | None = None
        self._J: np.ndarray | None = None
        self._since = 0

    def exact_jacobian(self, x: np.ndarray) -> np.ndarray:
        """Forward-difference Jacobian of the projected residual in the free parameters."""
        h = self._steps(x)
        pts = [self.theta(x)] + [self.theta(x + np.eye(x.size)[j] * h[j]) for j in range(x.size)]
        fs = self.values(pts)
        r0 = self.project(fs[0])[2]
        return np.stack([(self.project(fs[j + 1])[2] - r0) / h[j] for j in range(x.size)], axis=1)

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        """The Jacobian the optimiser uses: exact, or Broyden-updated between exact ones.

        With ``broyden_refresh = k > 0``, an exact forward-difference Jacobian is followed by
        up to ``k`` Broyden rank-one updates (in range-width-scaled variables, so that
        parameters of different sizes count alike) from the residual change along each step:
        one model evaluation per iteration instead of ``1 + n_free``.
        """
        r = self.residual(x)
        if self.broyden_refresh > 0 and self._J is not None and self._since < self.broyden_refresh:
            w = (self.hi - self.lo)[self.free]
            dz = (x - self._jx) / w
            if np.dot(dz, dz) > 0:
                Jz = self._J * w[None, :]
                Jz = Jz + np.outer(r - self._jr - Jz @ dz, dz) / np.dot(dz, dz)
                J = Jz / w[None, :]
            else:
                J = self._J
            self._since += 1
        else:
            J = self.exact_jacobian(x)
            self._since = 0
        self._jx, self._jr, self._J = x.copy(), r, J
        return J

    def model_jacobian(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``d f / d x`` at the fitted bins (forward differences) and ``f`` itself."""
        h = self._steps(x)
        pts = [self.theta(x)] + [self.theta(x + np.eye(x.size)[j] * h[j]) for j in range(x.size)]
        fs = self.values(pts)
        if x.size == 0:
            return np.zeros((fs[0].size, 0)), fs[0]
        return np.stack([(fs[j + 1] - fs[0]) / h[j] for j in range(x.size)], axis=1), fs[0]


def _check_fixed(forward: Any, fixed: Mapping[str, Any] | None) -> dict[str, float]:
    names = list(forward.parameter_names)
    out: dict[str, float] = {}
    for n, v in (fixed or {}).items():
        if n not in names:
            raise InputDataError(format_error(
                f"Cannot fix parameter {n!r}: model {forward.name!r} has no such parameter",
                reason=f"its parameters are {names}", fix="use one of those names"))
        try:
            x = float(v)
        except (TypeError, ValueError):
            x = float("nan")
        lo, hi = forward.ranges[n]
        if not np.isfinite(x):
            raise InputDataError(format_error(f"Fixed value of {n!r} is not a finite number", reason=f"got {v!r}"))
        if not lo <= x <= hi:
            raise InputDataError(format_error(
                f"Fixed value of {n!r} is outside its range",
                reason=f"got {x:g}; model {forward.name!r} allows [{lo:g}, {hi:g}]",
                fix="fix it at a value inside the range"))
        out[n] = x
    return out


def _lmfit_local(obj: _Objective, x0: np.ndarray, *, ftol: float, xtol: float, gtol: float,
                 max_nfev: int) -> tuple[np.ndarray, str, int, bool]:
    import lmfit

    lo, hi = obj.lo[obj.free], obj.hi[obj.free]
    params = lmfit.Parameters()
    for j in range(x0.size):
        params.add(f"p{j}", value=float(np.clip(x0[j], lo[j], hi[j])), min=float(lo[j]), max=float(hi[j]))

    def vec(p: Any) -> np.ndarray:
        return np.array([p[f"p{j}"].value for j in range(x0.size)], dtype=float)

    def residual(p: Any) -> np.ndarray:
        return obj.residual(vec(p))

    def jac(p: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        return obj.jacobian(vec(p))

    obj.reset_jacobian()
    mini = lmfit.Minimizer(residual, params)
    out = mini.minimize(method="least_squares", jac=jac, x_scale=hi - lo, ftol=ftol, xtol=xtol, gtol=gtol,
                        max_nfev=max_nfev)
    # lmfit stops at max_nfev residual calls; the best point seen is kept either way
    x = obj.best_x if obj.best_x is not None else vec(out.params)
    msg = str(out.message) if not out.aborted else f"stopped after max_nfev = {max_nfev} residual evaluations"
    return x, msg, int(out.nfev), bool(out.success)


def fit_model(
    data: Any,
    model: Any,
    *,
    plan: Any = None,
    resolution: Any = "builtin",
    errors: Any = None,
    mask: Any = None,
    groups: Any = None,
    fixed: Mapping[str, Any] | None = None,
    background: str = "flat",
    scale: bool = True,
    censored: bool | None = None,
    clip_sigma: Any = None,
    n_sobol: int = DEFAULTS["n_sobol"],
    n_local: int = DEFAULTS["n_local"],
    n_scan: int = DEFAULTS["n_scan"],
    scan_rounds: int = DEFAULTS["scan_rounds"],
    extra_starts: Sequence[Any] | None = None,
    include_published: bool = True,
    seed: int = 0,
    workers: int = DEFAULTS["workers"],
    fd_step: float = DEFAULTS["fd_step"],
    ftol: float = DEFAULTS["ftol"],
    xtol: float = DEFAULTS["xtol"],
    gtol: float = DEFAULTS["gtol"],
    max_nfev: int = DEFAULTS["max_nfev"],
    broyden: int = DEFAULTS["broyden"],
    coarse: int = DEFAULTS["coarse"],
    progress: Callable[[float, str], None] | None = None,
) -> FitResult:
    """Fit one model to a measured spectrum.

    Parameters
    ----------
    data
        The spectrum: array or MDHisto (NaN = masked), or :class:`~.data.FitData`.
    model
        A spin-model name (``"goodenough"``, ``"dimer"``, ...), a ``SpinModel``, a
        ``module:attribute`` reference, or a forward model (:mod:`.forward`: anything with
        ``evaluate``).
    plan
        The simulator plan for non-mosaic spectra (see :func:`~.data.prepare_data`).
    resolution
        Resolution of the simulator (``"builtin"``, ``"tables:DIR"``, ...).
    errors, mask, groups
        As :func:`~.data.prepare_data`.
    fixed
        ``{name: value}`` held fixed; a value outside the model's range is an
        ``InputDataError``.
    background
        ``"flat"`` (per incident energy), ``"linear"`` (flat + slope in E/Ei) or ``"none"``.
    scale
        Fit a scale per incident energy (default); False for a model in the data's units.
    censored
        The data were clipped at zero (negative values set to 0): fit the clipped
        expectation (:mod:`.nuisance`). None (default): True when no fitted value is negative
        and at least 5 % are exactly 0.
    clip_sigma
        Noise of each bin before clipping, if known (default: the errors); see
        :func:`~.data.prepare_data`.
    n_sobol, n_local, extra_starts, include_published, seed
        The start design (:mod:`.starts`).
    n_scan, scan_rounds
        Global refinement: after the local fits, each free parameter in turn is scanned over
        ``n_scan`` points across its range (the others at the best fit, one evaluation each,
        in parallel); if the best scan point beats the best fit, a local fit starts there;
        up to ``scan_rounds`` times (0 to switch off). It rescues fits with one parameter in
        a wrong basin (a band placed in the wrong energy window).
    workers
        Threads evaluating the model in parallel (Jacobian columns, screening).
    fd_step
        Forward-difference step as a fraction of each parameter's range width.
    ftol, xtol, gtol, max_nfev
        Stopping rules of each local fit (scipy ``least_squares``; ``max_nfev`` counts
        residual evaluations per local fit; the best point seen is kept when it stops).
    broyden
        Broyden rank-one Jacobian updates between exact forward-difference Jacobians (0 for
        exact ones at every iteration; errors always use an exact Jacobian).
    coarse
        For mosaics of spin models: the screening, local fits and scans run on
        ``coarse`` x ``coarse`` merged (Qh, Qk) bins (:func:`~.data.coarsen`; about
        ``coarse^2`` times cheaper), then one local fit polishes the best point on the
        full data; 1 switches the coarse stage off.
    progress
        Called as ``progress(fraction, message)`` after every batch of model evaluations
        (raise from it to cancel).

    Returns
    -------
    FitResult
    """
    t0 = time.perf_counter()
    forward_given = _is_forward(model)
    fd = prepare_data(data, errors=errors, mask=mask, plan=plan, groups=groups, spin_model=not forward_given,
                      clip_sigma=clip_sigma)
    if not forward_given and fd.plan is None:
        raise InputDataError(format_error(
            "The data have no simulator plan for a spin model",
            reason="they were prepared for function models only",
            fix="pass the spectrum itself (or prepare_data(..., spin_model=True))"))
    forward = model if forward_given else SpinWaveForward(model, fd.plan, resolution=resolution)
    fix = _check_fixed(forward, fixed)
    names = list(forward.parameter_names)
    free = [i for i, n in enumerate(names) if n not in fix]
    for name, v in (("n_sobol", n_sobol), ("n_local", n_local), ("workers", workers), ("max_nfev", max_nfev),
                    ("broyden", broyden), ("n_scan", n_scan), ("scan_rounds", scan_rounds), ("coarse", coarse)):
        low = 0 if name in ("n_sobol", "broyden", "n_scan", "scan_rounds") else 1
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise InputDataError(format_error(f"{name} is invalid", reason=f"got {v!r}; need a whole number >= {low}"))
    if not (np.isfinite(fd_step) and 0 < fd_step < 0.1):
        raise InputDataError(format_error("fd_step is invalid", reason=f"got {fd_step!r}; need 0 < fd_step < 0.1"))
    energy = None if fd.energy is None else fd.energy[fd.fitted]
    if censored is None:
        yv = fd.signal[fd.fitted]
        censored = bool(yv.min() >= 0 and np.mean(yv == 0) >= CENSORED_ZERO_FRACTION)
    nuis = NuisanceModel(fd.groups[fd.fitted], fd.group_names, background=background, energy=energy, scale=scale,
                         censored=censored, clip_sigma=None if fd.clip_sigma is None else fd.clip_sigma[fd.fitted])
    k = len(free) + nuis.n_parameters
    if fd.n <= k:
        raise InputDataError(format_error(
            "Too few bins to fit", reason=f"{fd.n} fitted bins for {k} free parameters",
            fix="unmask more bins or fix parameters"))
    candidates = design_starts(forward, fix, n_sobol=n_sobol, seed=seed, extra_starts=extra_starts,
                               include_published=include_published)
    if not candidates:
        raise InputDataError(format_error("No start to fit from", reason="no published start, no extra start and "
                                          "no Sobol point", fix="allow the published start or n_sobol > 0"))
    base = candidates[0].theta.copy()
    pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
    local_kw = dict(ftol=ftol, xtol=xtol, gtol=gtol, max_nfev=max_nfev)
    try:
        obj = _Objective(forward, fd, nuis, free, base, pool, fd_step)
        obj.broyden_refresh = int(broyden)
        cfd = coarsen(fd, coarse) if (coarse > 1 and isinstance(forward, SpinWaveForward) and free) else None
        search = obj
        if cfd is not None:
            cforward = SpinWaveForward(forward.model, cfd.plan, resolution=resolution)
            cenergy = None if cfd.energy is None else cfd.energy[cfd.fitted]
            cnuis = NuisanceModel(cfd.groups[cfd.fitted], cfd.group_names, background=background, energy=cenergy,
                                  scale=scale, censored=censored, clip_sigma=cfd.clip_sigma[cfd.fitted])
            search = _Objective(cforward, cfd, cnuis, free, base, pool, fd_step)
            search.broyden_refresh = int(broyden)
        if progress is not None:
            budget = (len(candidates) + (n_local + scan_rounds) * 2 * max_nfev + scan_rounds * n_scan * len(free))
            budget = budget / (coarse ** 2 if cfd is not None else 1) + (2 * max_nfev if cfd is not None else 0)
            for o in {id(obj): obj, id(search): search}.values():
                o.progress = lambda: progress(
                    min(0.99, (obj.nfev + (search.nfev / coarse ** 2 if search is not obj else 0)) / max(budget, 1)),
                    f"{forward.name}: {obj.nfev + (search.nfev if search is not obj else 0)} evaluations")
        stage = "coarse" if cfd is not None else "full"
        best_x, records = _search(search, candidates, names, free, n_local=n_local, n_scan=n_scan,
                                  scan_rounds=scan_rounds, stage=stage, **local_kw)
        if cfd is not None:
            start_chi2 = obj.chi2([obj.theta(best_x)])[0]
            x, msg, nfev, _ = _lmfit_local(obj, best_x, **local_kw)
            c2 = obj.chi2([obj.theta(x)])[0]
            if not c2 <= start_chi2:
                x, c2 = best_x, start_chi2
            records.append(StartRecord("polish", dict(zip(names, obj.theta(best_x).tolist())), start_chi2, True, c2,
                                       dict(zip(names, obj.theta(x).tolist())), nfev, msg, "full"))
            best_x = x
        result = _finish(obj, fd, forward, fix, best_x, records, t0)
        result.nfev_coarse = search.nfev if search is not obj else 0
        return result
    finally:
        if pool is not None:
            pool.shutdown(wait=True)


def _search(obj: _Objective, candidates: list[Any], names: list[str], free: list[int], *, n_local: int,
            n_scan: int, scan_rounds: int, stage: str, **local_kw: Any) -> tuple[np.ndarray, list[StartRecord]]:
    """Screen the starts, fit locally from the best, then scan each parameter for better basins."""
    screened = obj.chi2([c.theta for c in candidates])
    records = [StartRecord(c.source, dict(zip(names, c.theta.tolist())), s, stage=stage)
               for c, s in zip(candidates, screened)]
    extra = [i for i, c in enumerate(candidates) if c.source == "extra"]
    others = sorted((i for i, c in enumerate(candidates) if c.source != "extra"), key=lambda i: screened[i])
    chosen = extra + others[:max(0, n_local - len(extra))]
    best_x, best_chi2 = None, np.inf
    for i in chosen:
        x0 = candidates[i].theta[free]
        if free:
            x, msg, nfev, _ = _lmfit_local(obj, x0, **local_kw)
        else:
            x, msg, nfev = x0, "no free parameter", 0
        c2 = obj.chi2([obj.theta(x)])[0]
        rec = records[i]
        rec.local, rec.chi2, rec.nfev, rec.message = True, c2, nfev, msg
        rec.values = dict(zip(names, obj.theta(x).tolist()))
        if c2 < best_chi2:
            best_x, best_chi2 = x, c2
    for _ in range(scan_rounds if free and n_scan > 0 else 0):
        pts, moves = [], []
        for j, i in enumerate(free):
            for v in obj.lo[i] + (np.arange(n_scan) + 0.5) / n_scan * (obj.hi[i] - obj.lo[i]):
                x = best_x.copy()
                x[j] = v
                pts.append(obj.theta(x))
                moves.append(x)
        c2s = obj.chi2(pts)
        k = int(np.argmin(c2s))
        if not c2s[k] < best_chi2 - max(1.0, 1e-6 * best_chi2):
            break
        x, msg, nfev, _ = _lmfit_local(obj, moves[k], **local_kw)
        c2 = obj.chi2([obj.theta(x)])[0]
        records.append(StartRecord("scan", dict(zip(names, obj.theta(moves[k]).tolist())), c2s[k], True, c2,
                                   dict(zip(names, obj.theta(x).tolist())), nfev, msg, stage))
        if not c2 < best_chi2:
            break
        best_x, best_chi2 = x, c2
    return best_x, records


def _finish(obj: _Objective, fd: FitData, forward: Any, fix: dict[str, float], x: np.ndarray,
            records: list[StartRecord], t0: float) -> FitResult:
    names = list(forward.parameter_names)
    free = obj.free
    theta = obj.theta(x)
    dfdx, f = obj.model_jacobian(x)
    vals, model, r = obj.project(f)
    nuis = obj.nuis
    scale = nuis.scales(vals)
    dlink = nuis.link_derivative(f, vals, obj.sw)
    J_theta = -(scale * obj.sw * dlink)[:, None] * dfdx
    J_nuis = -(obj.sw * dlink)[:, None] * nuis.design(f)
    # groups whose scale was forced to 0 have no scale column in the solution: drop it
    drop = [g * nuis.per_group for g in range(nuis.n_groups) if nuis.fit_scale and vals[g, 0] == 0.0]
    keep_n = [j for j in range(nuis.n_parameters) if j not in drop]
    J = np.concatenate([J_theta, J_nuis[:, keep_n]], axis=1)
    chi2 = float(np.sum(r ** 2))
    n = r.size
    k = J.shape[1]
    dof = n - k
    red = chi2 / dof if dof > 0 else float("nan")
    notes: list[str] = list(fd.notes)
    if nuis.censored:
        notes.append("the data are clipped at zero: the model fitted is the clipped expectation "
                     "mu Phi(mu/s) + s phi(mu/s) with s the bins' errors")
    JTJ = J.T @ J
    try:
        cov = np.linalg.inv(JTJ)
        if not np.all(np.isfinite(cov)) or np.any(np.diag(cov) < 0):
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:
        cov = np.linalg.pinv(JTJ)
        notes.append("the Jacobian is singular: some parameters are not determined by the data (pseudo-inverse)")
    inflate = bool(np.isfinite(red) and red > 1.0)
    error_scale = float(np.sqrt(red)) if inflate else 1.0
    cov = cov * error_scale ** 2
    if inflate:
        notes.append(f"errors multiplied by sqrt(reduced chi2) = {error_scale:.4g}: the fit is worse than the "
                     "errors allow (model or errors miss something)")
    err = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    nf = len(free)
    cov_t = cov[:nf, :nf]
    d = np.sqrt(np.clip(np.diag(cov_t), 0.0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov_t / np.outer(d, d)
    corr[~np.isfinite(corr)] = 0.0
    np.fill_diagonal(corr, 1.0)
    errors = {n_: 0.0 for n_ in names}
    for j, i in enumerate(free):
        errors[names[i]] = float(err[j])
    nuis_names = nuis.names
    nuisance = {nm: float(v) for nm, v in zip(nuis_names, vals.reshape(-1))}
    nuis_err = {nm: 0.0 for nm in nuis_names}
    for col, j in enumerate(keep_n):
        nuis_err[nuis_names[j]] = float(err[nf + col])
    width = obj.hi - obj.lo
    at_bounds = tuple(names[i] for i in free if min(theta[i] - obj.lo[i], obj.hi[i] - theta[i]) <= 1e-6 * width[i])
    if at_bounds:
        notes.append(f"{', '.join(at_bounds)} ended at a bound of the model's range: their errors are not meaningful")
    unstable = float(getattr(getattr(forward, "evaluator", None), "last_unstable_fraction", 0.0))
    if unstable > 0:
        notes.append(f"{unstable:.1%} of the Q points have an unstable ordered state at the best fit")
    if drop:
        notes.append("scale forced to 0 (no positive correlation with the data) for "
                     + ", ".join(fd.group_names[g // nuis.per_group] for g in drop))
    y = obj.y
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum((y - model) ** 2)) / ss_tot if ss_tot > 0 else float("nan")
    best = np.full(fd.shape, np.nan)
    best[fd.fitted] = model
    return FitResult(
        model=forward.name,
        parameter_names=tuple(names),
        values=dict(zip(names, theta.tolist())),
        errors=errors,
        fixed=tuple(n_ for n_ in names if n_ in fix),
        free=tuple(names[i] for i in free),
        correlation=corr,
        covariance=cov_t,
        nuisance=nuisance,
        nuisance_errors=nuis_err,
        chi2=chi2,
        reduced_chi2=float(red),
        dof=int(dof),
        n_data=int(n),
        n_free=int(k),
        r2=float(r2),
        aic=chi2 + 2.0 * k,
        bic=chi2 + k * float(np.log(n)),
        error_scale=error_scale,
        errors_inflated=inflate,
        best_fit=best,
        residual=fd.signal - best,
        starts=records,
        at_bounds=at_bounds,
        unstable_fraction=unstable,
        error_source=fd.error_source,
        notes=notes,
        seconds=time.perf_counter() - t0,
        nfev=obj.nfev,
        data_key=fd.key(),
    )


def fit_models(data: Any, models: Sequence[Any] = ("goodenough", "dimer"), **kwargs: Any
               ) -> tuple[list[FitResult], ModelComparison]:
    """Fit several models to the same spectrum and compare them (:func:`~.compare.compare_models`).

    The data are prepared once (same errors for every model). Keywords as :func:`fit_model`.
    """
    if not models:
        raise InputDataError(format_error("No model to fit", reason="models is empty",
                                          fix="give e.g. ('goodenough', 'dimer')"))
    all_forward = all(_is_forward(m) for m in models)
    fd = prepare_data(data, errors=kwargs.pop("errors", None), mask=kwargs.pop("mask", None),
                      plan=kwargs.pop("plan", None), groups=kwargs.pop("groups", None), spin_model=not all_forward,
                      clip_sigma=kwargs.pop("clip_sigma", None))
    results = [fit_model(fd, m, **kwargs) for m in models]
    return results, compare_models(results)
