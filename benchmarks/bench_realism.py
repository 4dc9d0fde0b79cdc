"""Benchmark of the measurement model against the released PCSMO measurement (Ei = 25, 35, 50 meV).

Run from the repository root::

    python benchmarks/bench_realism.py [--measured DIR] [--save-dir DIR] [--overwrite]
                                       [--n-sobol 8] [--workers 2] [--no-ablation]
                                       [--max-nfev 40] [--ablation-refit]

What it does, for Goodenough and Dimer (built-in MAPS resolution, the measured mask):

* **Calibration fit**: the spin model inside the PCSMO measurement model
  (``simulate.measurement_model.PCSMO_MEASUREMENT_MODEL``: ``kf_ki`` as calibrated) with the
  exchange constants, the twin fraction, the mosaic and the resolution scale free, and per
  incident energy a scale and a linear background (flat + slope in E/Ei), fitted by the
  fitting engine (``fit_model``: errors from the counts, the clipped-at-zero expectation) to
  the released rows. Starts: the published values, ``--n-sobol`` Sobol points and the
  calibrated point of ``PCSMO_MEASUREMENT_MODEL`` (the result of an earlier run of this
  benchmark); one local fit, one scan round (fewer than ``fit_model``'s defaults, to keep the
  run near 15 minutes on 2 busy cores).
* ``corr_released_*``: Pearson r between the best fit (the expected clipped value the fit
  compares with the data) and the released bins it fitted; ``one_minus_r2_*`` the engine's
  1 - R^2; ``corr_per_ei`` the same r per incident energy.
* ``noise_ceiling``: the r a perfect noise-free simulation would reach,
  ``sqrt(1 - var_noise / var_data)``, with ``var_noise`` from the 4-neighbour residuals
  (``y - mean of its 4 neighbours``; ``E[r^2] = 1.25 var`` for white noise), per Ei block and
  overall: ``all_bins`` uses every residual (spikes are noise too); ``trimmed`` leaves out the
  largest 1 % of squared residuals. Structure at the bin scale counts as noise here, so both
  are lower bounds of the true ceiling's noise share (upper bounds of nothing).
* ``nuisance``: the calibrated values with their errors (the engine's, inflated by
  sqrt(reduced chi2)).
* ``ablation``: r with each effect switched off in turn (twin fraction held at 0.5, mosaic 0,
  resolution scale 1, no k_f/k_i, flat background; ``none`` = all of them off): ``fixed``
  keeps every other parameter at the best fit and re-solves the per-Ei scale and background
  (the effect's share of this fit); with ``--ablation-refit`` also ``refit``, a local refit
  from the best point with the effect held off (what the other parameters can make up).
* ``zero_fraction_per_ei_measured`` / ``_simulated``: exact zeros among the covered bins of
  the released rows, and of 4 measured-like draws (``PCSMO_MEASURED_LIKE``) of each best fit.
* ``seconds_per_mosaic_pair``: ``simulate_mosaic_pair`` with the full PCSMO measurement model
  (median of 3 after one warm-up).
* ``--save-dir DIR``: ``goodenough_bestfit.npy`` and ``dimer_bestfit.npy``, float (240, 400):
  the expected measured value under each best fit at all six Ei, NaN where the measured mask
  has no coverage. Rows 0-119: the fit's clipped expectation. Rows 120-239 (Ei = 70, 100,
  140 meV, not released): the same spin model and measurement model, scale = the geometric
  mean of the three fitted per-Ei scales, background = the Ei = 50 meV background (and
  slope), and the clipped expectation ``mu Phi(mu/s) + s phi(mu/s)`` with the noise ``s``
  before clipping of ``PCSMO_MEASURED_LIKE`` at those Ei. Existing files are kept unless
  ``--overwrite``.

Skips cleanly (a JSON line with ``skipped``, exit 0) when the released file is absent. The
last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from mantid_exp2sim.fitting import PlanEvaluator, WithMeasurement, fit_model  # noqa: E402
from mantid_exp2sim.mosaic import EI_LIST, TILE  # noqa: E402
from mantid_exp2sim.simulate import plan_mosaic, simulate_mosaic_pair  # noqa: E402
from mantid_exp2sim.simulate.measured_like import PCSMO_MEASURED_LIKE, measured_mask_path, neighbour_residuals  # noqa: E402
from mantid_exp2sim.simulate.measurement_model import (  # noqa: E402
    PCSMO_BEST_FIT,
    PCSMO_MEASUREMENT_MODEL,
    MeasurementModel,
)

MODELS = ("goodenough", "dimer")
FREE = ("twin_fraction", "mosaic", "resolution_scale")
N_RELEASED = 3


def shared_dir() -> Path:
    root = os.environ.get("EXP2SIM_SHARED")
    return Path(root) if root else REPO.parent / "shared"


def _r(x: Any, n: int = 4) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), n)


def noise_ceiling(y: np.ndarray) -> dict[str, Any]:
    """r of a perfect simulation given the neighbour-noise variance (see the module notes)."""
    tiles = y[:N_RELEASED * TILE].reshape(N_RELEASED, TILE, -1, TILE).transpose(0, 2, 1, 3)
    res, _, _ = neighbour_residuals(tiles)
    out: dict[str, Any] = {"method": "sqrt(1 - var_noise/var_data), var_noise = mean(4-neighbour residual^2)/1.25"}
    for key, trim in (("all_bins", 0.0), ("trimmed", 0.01)):
        per = []
        noise_all, n_all = 0.0, 0
        for g in range(N_RELEASED):
            r2 = np.sort(res[g][np.isfinite(res[g])] ** 2)
            r2 = r2[:int(round((1 - trim) * r2.size))]
            v = float(np.mean(r2)) / 1.25
            yy = y[g * TILE:(g + 1) * TILE]
            yy = yy[np.isfinite(yy)]
            per.append(_r(np.sqrt(max(0.0, 1 - v / yy.var()))))
            noise_all += v * yy.size
            n_all += yy.size
        yy = y[np.isfinite(y)]
        out[key] = _r(np.sqrt(max(0.0, 1 - noise_all / n_all / yy.var())))
        out[f"{key}_per_ei"] = per
    return out


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def _spec(model: str, kf_ki: bool) -> WithMeasurement:
    return WithMeasurement(model, MeasurementModel(twin_fraction=0.5, kf_ki=kf_ki), free=FREE)


def calibrate(y: np.ndarray, model: str, a: argparse.Namespace) -> Any:
    spec = _spec(model, PCSMO_MEASUREMENT_MODEL.kf_ki)
    extra = [dict(PCSMO_BEST_FIT[model])] if model in PCSMO_BEST_FIT else None
    return fit_model(y, spec, background="linear", n_sobol=a.n_sobol, extra_starts=extra, n_local=1,
                     scan_rounds=1 if a.max_nfev >= 10 else 0, n_scan=6, workers=a.workers, seed=0,
                     max_nfev=a.max_nfev)


_ABLATION: dict[str, tuple[bool | None, str, dict[str, float]]] = {
    # effect switched off: (kf_ki, or None = as calibrated; background; measurement values held)
    "twin_fraction": (None, "linear", {"twin_fraction": 0.5}),
    "mosaic": (None, "linear", {"mosaic": 0.0}),
    "resolution_scale": (None, "linear", {"resolution_scale": 1.0}),
    "kf_ki": (False, "linear", {}),
    "background_slope": (None, "flat", {}),
    "none": (False, "flat", {"twin_fraction": 0.5, "mosaic": 0.0, "resolution_scale": 1.0}),
}


def ablation(y: np.ndarray, model: str, best: Any, a: argparse.Namespace) -> dict[str, Any]:
    """r with each effect switched off in turn (module notes).

    ``fixed``: every other parameter at the best fit, the per-Ei scale and background
    re-solved (cheap); with ``--ablation-refit`` also ``refit``: a local refit from the best
    point with the effect held off.
    """
    from mantid_exp2sim.fitting import SpinWaveForward, prepare_data
    from mantid_exp2sim.fitting.nuisance import NuisanceModel

    kf = PCSMO_MEASUREMENT_MODEL.kf_ki
    fd = prepare_data(y)
    yv, sw = fd.signal[fd.fitted], 1.0 / fd.sigma[fd.fitted]
    out: dict[str, Any] = {"fixed": {}, "refit": {} if a.ablation_refit else None}
    for name, (kf_off, bg, held) in _ABLATION.items():
        kf_case = kf if kf_off is None else kf_off
        fw = SpinWaveForward(_spec(model, kf_case), fd.plan)
        theta = np.array([held.get(n_, best.values[n_]) for n_ in fw.parameter_names])
        f = fw.evaluate(theta)[fd.fitted]
        nuis = NuisanceModel(fd.groups[fd.fitted], fd.group_names, background=bg, censored=True,
                             energy=None if fd.energy is None else fd.energy[fd.fitted])
        _, pred = nuis.solve(f, yv, sw)
        out["fixed"][name] = _r(float(np.corrcoef(pred, yv)[0, 1]))
        if a.ablation_refit:
            t0 = time.perf_counter()
            r = fit_model(y, _spec(model, kf_case), background=bg, fixed=held, n_sobol=0, include_published=False,
                          extra_starts=[dict(best.values, **held)], n_local=1, scan_rounds=0, workers=a.workers,
                          seed=0, max_nfev=max(1, a.max_nfev // 2))
            out["refit"][name] = _r(_corr(r.best_fit, y))
            print(f"[ablation] {model} without {name}: refit r = {out['refit'][name]} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
        print(f"[ablation] {model} without {name}: r = {out['fixed'][name]} (parameters held)", flush=True)
    return out


def six_ei_expectation(model: str, best: Any, path: Path) -> np.ndarray:
    """Expected measured value at all six Ei under a best fit (module notes, ``--save-dir``)."""
    from scipy.special import ndtr

    plan = plan_mosaic(mask=str(path))
    ev = PlanEvaluator(model, plan)
    names = list(ev.model.parameter_names)
    kw = {k: best.values[k] for k in FREE}
    f = ev([best.values[k] for k in names], kf_ki=PCSMO_MEASUREMENT_MODEL.kf_ki, **kw)
    out = np.full(f.shape, np.nan)
    out[:N_RELEASED * TILE] = best.best_fit[:N_RELEASED * TILE]
    released = [f"Ei={e:g}" for e in EI_LIST[:N_RELEASED]]
    scales = np.array([best.nuisance[f"scale[{g}]"] for g in released])
    scale = float(np.exp(np.mean(np.log(np.maximum(scales, 1e-12)))))
    bg = best.nuisance[f"background[{released[-1]}]"]
    slope = best.nuisance.get(f"slope[{released[-1]}]", 0.0)
    ml = PCSMO_MEASURED_LIKE
    frac_centres = np.repeat(0.13 + 0.06 * np.arange(f.shape[1] // TILE), TILE)
    for g in range(N_RELEASED, len(EI_LIST)):
        rows = slice(g * TILE, (g + 1) * TILE)
        e = frac_centres[None, :] - frac_centres.mean()
        mu = scale * f[rows] + bg + slope * e
        c, b, rho = ml.count_level[g], ml.background[g], ml.background_ratio
        s = np.sqrt(np.maximum(mu, 0.0) / c + b / c + b / (c * rho))
        z = mu / s
        out[rows] = mu * ndtr(z) + s * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
    out[~np.isfinite(f)] = np.nan
    return out


def zero_fractions_simulated(clean_full: np.ndarray, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    fr = np.zeros(N_RELEASED)
    for _ in range(4):
        d = PCSMO_MEASURED_LIKE.apply(clean_full, rng)
        for g in range(N_RELEASED):
            blk = d[g * TILE:(g + 1) * TILE]
            fr[g] += np.mean(blk[np.isfinite(blk)] == 0) / 4
    return [_r(v, 3) for v in fr]


def main(argv: list[str] | None = None) -> int:
    sd = shared_dir()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--measured", type=Path, default=sd / "data" / "pcsmo-measured",
                   help="folder of measured_ei25_35_50.npy (default $EXP2SIM_SHARED/data/pcsmo-measured)")
    p.add_argument("--save-dir", type=Path, default=None, help="write goodenough_bestfit.npy and dimer_bestfit.npy")
    p.add_argument("--overwrite", action="store_true", help="replace existing files in --save-dir")
    p.add_argument("--n-sobol", type=int, default=8, help="Sobol starts per calibration fit (default 8)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-ablation", action="store_true", help="skip the ablation refits")
    p.add_argument("--ablation-refit", action="store_true",
                   help="also refit (local) with each effect off (about 1-2 min per case and model)")
    p.add_argument("--max-nfev", type=int, default=40,
                   help="residual evaluations per local fit (default 40; ablation refits half; a smoke test: 1)")
    a = p.parse_args(argv)
    path = a.measured / "measured_ei25_35_50.npy"
    if not path.is_file():
        print(json.dumps({"skipped": True, "reason": f"released measurement not found at {path}"}))
        return 0
    targets = []
    if a.save_dir is not None:
        targets = [a.save_dir / f"{m}_bestfit.npy" for m in MODELS]
        existing = [str(t) for t in targets if t.exists()]
        if existing and not a.overwrite:
            print(f"error: {', '.join(existing)} exist(s); pass --overwrite to replace", file=sys.stderr)
            return 2
    t_start = time.perf_counter()
    y = np.load(path)
    mask_path = measured_mask_path(sd)
    out: dict[str, Any] = {"measured": str(path), "noise_ceiling": noise_ceiling(y)}
    zero_meas = []
    for g in range(N_RELEASED):
        blk = y[g * TILE:(g + 1) * TILE]
        zero_meas.append(_r(np.mean(blk[np.isfinite(blk)] == 0), 3))
    out["zero_fraction_per_ei_measured"] = zero_meas
    out["corr_per_ei"], out["nuisance"], out["ablation"], out["zero_fraction_per_ei_simulated"] = {}, {}, {}, {}
    out["parameters"] = {}
    saved = {}
    for m in MODELS:
        t0 = time.perf_counter()
        best = calibrate(y, m, a)
        print(f"[calibration] {best.summary()}", flush=True)
        r = _corr(best.best_fit, y)
        out[f"corr_released_{m}"] = _r(r)
        out[f"one_minus_r2_{m}"] = _r(1 - best.r2)
        out["corr_per_ei"][m] = [_r(_corr(best.best_fit[g * TILE:(g + 1) * TILE], y[g * TILE:(g + 1) * TILE]))
                                 for g in range(N_RELEASED)]
        nuis = {k: {"value": _r(best.values[k]), "error": _r(best.errors[k])} for k in FREE}
        nuis["kf_ki"] = PCSMO_MEASUREMENT_MODEL.kf_ki
        nuis.update({k: {"value": _r(v), "error": _r(best.nuisance_errors.get(k))} for k, v in best.nuisance.items()})
        out["nuisance"][m] = nuis
        out["parameters"][m] = {k: [_r(v), _r(best.errors[k])] for k, v in best.values.items() if k not in FREE}
        out[f"seconds_fit_{m}"] = _r(time.perf_counter() - t0, 1)
        if not a.no_ablation:
            out["ablation"][m] = ablation(y, m, best, a)
        full = six_ei_expectation(m, best, mask_path) if mask_path.is_file() else None
        if full is not None:
            saved[m] = full
            ev = PlanEvaluator(m, plan_mosaic(mask=str(mask_path)))
            clean = ev([best.values[k] for k in ev.model.parameter_names], kf_ki=PCSMO_MEASUREMENT_MODEL.kf_ki,
                       **{k: best.values[k] for k in FREE})
            out["zero_fraction_per_ei_simulated"][m] = zero_fractions_simulated(clean)
    kw = PCSMO_MEASUREMENT_MODEL.simulate_kwargs()
    simulate_mosaic_pair("goodenough", **kw)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        simulate_mosaic_pair("goodenough", **kw)
        times.append(time.perf_counter() - t0)
    out["seconds_per_mosaic_pair"] = _r(float(np.median(times)), 2)
    out["measurement_model"] = {k: v for k, v in PCSMO_MEASUREMENT_MODEL.describe().items()}
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    if targets and saved:
        a.save_dir.mkdir(parents=True, exist_ok=True)
        for m, t in zip(MODELS, targets):
            tmp = t.with_suffix(".tmp.npy")
            np.save(tmp, saved[m].astype(np.float64))
            os.replace(tmp, t)
        out["saved"] = [str(t) for t in targets]
    out["seconds_total"] = _r(time.perf_counter() - t_start, 1)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
