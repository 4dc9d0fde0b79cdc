"""Benchmark of the fitting engine and the parameter-estimation networks: model selection, calibrated errors, identifiability, speed, real data.

Run from the repository root::

    python benchmarks/bench_fit.py [--n N] [--n-network M] [--source FILE.h5] [--networks DIR]
                                   [--measured DIR] [--pcsmo-data DIR] [--seed S] [--workers 2]
                                   [--no-refine] [--skip-measured] [--skip-identifiability]
                                   [--cache DIR] [--first I] [--max-minutes M] [--json-out FILE]
                                   [--latent-comparison | --latent-only] [--latent-k K] [--latent-evals E]

What it does (Goodenough and Dimer, built-in resolution, the full 240x400 mosaic):

* **Measured-like spectra drawn across the sampling ranges**: noise-free convolved spectra
  with their true parameters from ``--source`` (an ``exp2sim-simulate`` mosaic file; default
  ``/work/data/test_mosaic.h5``, seed 202, parameters uniform over each model's ranges; the
  first spectra of each model are used), or, when that file is absent, simulated here
  (``sample_rng(seed, model, i)``). Each is made measured-like with the calibrated PCSMO chain
  (``simulate.measured_like.PCSMO_MEASURED_LIKE``: per-Ei scale, counting noise at the
  released data's level, background added and subtracted, negative values set to 0, clipped
  at 120, the measured detector mask from ``--pcsmo-data``), one draw per spectrum seeded by
  ``(seed, model, i)``.
* **Networks alone** on the first ``--n-network`` spectra per model: each model's network
  (``--networks`` folder of ``regress_<model>.exp2sim.h5``, default the shipped ones) estimates
  its parameters; ``network_model_selection_accuracy``: the model of lowest AIC with the
  parameters held at the networks' estimates (only the per-Ei scale and background solved,
  :func:`mantid_exp2sim.tasks.fit.network_model_choice`); per parameter ``median_abs_error``
  and ``coverage_1sigma`` of the network's calibrated errors (true model).
* **Full fits** on the first ``--n`` spectra per model (a fit is ~1 min): both models fitted
  (:func:`mantid_exp2sim.tasks.fit.fit_spin_models`: errors estimated from the counts,
  starts from the network, the published values and the Sobol design; then, as by default,
  the errors refined from the best fit's residuals and every model refitted, unless
  ``--no-refine``); ``model_selection_accuracy`` (lowest AIC);
  ``coverage_1sigma`` and ``median_abs_error`` per parameter from the true model's fits.
* **Long runs in parts** (``--cache DIR``, :class:`FitCache`): each finished full fit is kept
  as one file and reused by later runs with the same settings and code, so ``--n 100`` (about
  six CPU-hours) can be run a part at a time (``--max-minutes``) and summarised at the end;
  ``n_fitted_per_model`` says how many spectra the figures rest on and ``n_reused_from_cache``
  how many came from earlier runs. The spectra are taken index by index, both models at each
  index, so a part stopped early stays balanced.
* ``identifiability_max_rel_error``: noise-free spectra at the published parameters (measured
  mask; errors 1 % of the mean), fitted from the network's estimate of that spectrum (no
  published or Sobol start), the largest relative error over the parameters.
* ``seconds_per_fit``: median wall time of one model's complete fit (all starts, and the
  refit with refined errors) with ``--workers`` threads; ``load_average`` says how busy the
  machine was.
* ``measured_released``: both models fitted to the released rows (``--measured``, Ei = 25, 35,
  50 meV; errors estimated from the counts): parameters, errors, chi2, R^2, AIC, BIC, the
  preferred model and the plain-language comparison, and the networks' estimates. Skipped
  (null) when the folder is absent.

* ``latent_objective`` (only with ``--latent-comparison``, or alone with ``--latent-only``;
  null otherwise): issue 14's item 4, chi-square against a latent-space distance on spectra
  with artefacts. For the first ``--latent-k`` measured-like spectra per model and each
  artefact of :mod:`mantid_exp2sim.simulate.artefacts` (and ``none``), the two largest
  couplings (:data:`LATENT_FREE`; the other parameters held at their true values, to fit the
  CPU budget) are estimated by minimising (a) chi-square after the engine's per-Ei scale and
  flat background and (b) the Euclidean distance between the shipped ``classify_2d``
  classifier's pooled features of the data and of the same prediction, both with bounded
  Nelder-Mead (``--latent-evals`` evaluations at most) from the same start. Median relative
  errors per objective and artefact, whether the latent objective wins, CPU seconds per
  evaluation, every case.

The released measurement is used for reporting only: nothing here is tuned on it (and the
latent comparison does not read it).

The last line printed is one JSON object with the keys above and ``n_per_model``,
``n_network_per_model``, ``note``, ``settings`` (with ``--latent-only``: ``latent_objective``
and ``settings`` only).
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

from mantid_exp2sim.fitting import (  # noqa: E402
    CENSORED_ZERO_FRACTION, DEFAULTS, NuisanceModel, PlanEvaluator, fit_model, prepare_data)
from mantid_exp2sim.fitting.symmetry import canonical_values  # noqa: E402
from mantid_exp2sim.histogram import MDHisto  # noqa: E402
from mantid_exp2sim.mosaic import mosaic_axes  # noqa: E402
from mantid_exp2sim.simulate import get_model, sample_rng, simulate_mosaic  # noqa: E402
from mantid_exp2sim.simulate.artefacts import ARTEFACTS, apply_artefact  # noqa: E402
from mantid_exp2sim.simulate.measured_like import PCSMO_MEASURED_LIKE  # noqa: E402
from mantid_exp2sim.tasks.fit import estimate_parameters, fit_spin_models, network_model_choice  # noqa: E402

MODELS = ("goodenough", "dimer")


def shared_dir() -> Path:
    root = os.environ.get("EXP2SIM_SHARED")
    return Path(root) if root else REPO.parent / "shared"


def _r(x: float, n: int = 5) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), n)


def spectra(source: Path | None, n: int, seed: int, mask: Any, skip: Any = None):
    """Yield ``(model, i, clean, true parameters)``: the first ``n`` of each model (see the notes),
    ``i`` by ``i``, leaving out those for which ``skip(model, i)`` is true."""
    ds = None
    if source is not None and source.is_file():
        from mantid_exp2sim.simulate.dataset import SpectraDataset

        ds = SpectraDataset(source, kind="convolved")
    views = {m: ds.select([m]) if ds is not None else None for m in MODELS}
    for m, view in views.items():
        if view is not None and len(view) < n:
            raise SystemExit(f"--source {source} holds only {len(view)} {m} spectra (< {n})")
    for i in range(n):  # models interleaved: a run stopped early has both in equal numbers
        for m in MODELS:
            if skip is not None and skip(m, i):
                continue
            model, view = get_model(m), views[m]
            names = list(model.parameter_names)
            if view is not None:
                p = view.parameters(i)
                yield m, i, view.read(i).astype(float), canonical_values(m, names, p)
            else:
                p = model.sample(sample_rng(seed, m, i), stable_only=True)
                yield m, i, simulate_mosaic(model, p, mask=mask).signal, canonical_values(m, names, p)


def measured_like(clean: np.ndarray, seed: int, m: str, i: int, mask_array: np.ndarray | None) -> np.ndarray:
    from dataclasses import replace

    chain = PCSMO_MEASURED_LIKE if mask_array is None else replace(PCSMO_MEASURED_LIKE, mask=mask_array)
    return chain.apply(clean, np.random.default_rng([seed, MODELS.index(m), i, 7]))


class FitCache:
    """Finished full fits kept between runs (``--cache DIR``), one JSON file per spectrum.

    A run of 100 spectra per model takes hours; the cache lets it be done in parts (on spare
    cores, in several sessions) and summarised once. Records are filed under a fingerprint of
    everything that decides them: the settings (seed, source file and size, refinement, fit
    defaults, chain, mask, networks) and the SHA-256 of the package code that fits (``fitting``,
    ``simulate``, ``tasks``, ``models``, ``bundle``, ``inference``, the top-level modules) and
    of the regression bundles used. Any change gives a new folder: old records are never mixed
    with new code. Each record is written to a temporary name and renamed, so a run stopped
    mid-write leaves no half record, and runs on different machines may share the folder.
    """

    CODE = ("fitting", "simulate", "tasks", "models", "bundle", "inference")

    def __init__(self, root: Path, settings: dict[str, Any], network_files: list[Path]) -> None:
        import hashlib

        h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
        pkg = REPO / "mantid_exp2sim"
        files = sorted(pkg.glob("*.py")) + sorted(f for d in self.CODE for f in (pkg / d).rglob("*.py"))
        for f in [*files, *sorted(network_files)]:
            h.update(f.relative_to(REPO).as_posix().encode() if f.is_relative_to(REPO) else f.name.encode())
            h.update(hashlib.sha256(f.read_bytes()).digest())
        self.fingerprint = h.hexdigest()[:16]
        self.folder = root / self.fingerprint
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "settings.json").write_text(json.dumps(settings, sort_keys=True, default=str, indent=1))

    def _path(self, model: str, i: int) -> Path:
        return self.folder / f"{model}_{i:04d}.json"

    def get(self, model: str, i: int) -> dict[str, Any] | None:
        f = self._path(model, i)
        return json.loads(f.read_text()) if f.is_file() else None

    def put(self, model: str, i: int, record: dict[str, Any]) -> None:
        f = self._path(model, i)
        tmp = f.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(record))
        tmp.replace(f)


def _summary(per_param: dict[str, dict[str, list]]) -> tuple[dict, dict]:
    coverage = {m: {k: _r(np.mean([abs(d) <= e for d, e in v]), 3) for k, v in per_param[m].items()} for m in MODELS}
    mae = {m: {k: _r(np.median([abs(d) for d, _ in v]), 4) for k, v in per_param[m].items()} for m in MODELS}
    return coverage, mae


def network_only(source: Path | None, n: int, seed: int, mask: Any, mask_array: Any, networks: dict,
                 workers: int) -> dict[str, Any]:
    rows, per_param = [], {m: {} for m in MODELS}
    t0 = time.perf_counter()
    for m, i, clean, p in spectra(source, n, seed, mask):
        y = measured_like(clean, seed, m, i, mask_array)
        est = estimate_parameters(y, MODELS, networks=networks)
        _, comp = network_model_choice(y, est, workers=workers)
        names = list(get_model(m).parameter_names)
        vals = dict(zip(names, canonical_values(m, names, est[m].values)))
        from mantid_exp2sim.fitting.symmetry import canonical_permutation

        perm = canonical_permutation(m, names, est[m].values) or list(range(len(names)))
        errs = {n: est[m].errors[names[j]] for n, j in zip(names, perm)}
        for k, t in zip(names, p):
            per_param[m].setdefault(k, []).append((vals[k] - t, errs[k]))
        rows.append(comp.preferred == m)
        if i % 10 == 0:
            print(f"[network] {m} #{i}: chose {comp.preferred}; running accuracy {np.mean(rows):.3f}", flush=True)
    coverage, mae = _summary(per_param)
    return {"network_model_selection_accuracy": _r(float(np.mean(rows)), 3) if rows else None,
            "network_coverage_1sigma": coverage,
            "network_median_abs_error": mae, "network_seconds": _r(time.perf_counter() - t0, 1)}


def model_selection(source: Path | None, n: int, seed: int, mask: Any, mask_array: Any, networks: dict,
                    workers: int, refine: bool, cache: FitCache | None = None,
                    deadline: float | None = None, first: int = 0) -> dict[str, Any]:
    rows = []
    per_param: dict[str, dict[str, list]] = {m: {} for m in MODELS}
    net_param: dict[str, dict[str, list]] = {m: {} for m in MODELS}
    seconds: list[float] = []
    reused = 0

    def add(rec: dict[str, Any]) -> None:
        rows.append(rec["row"])
        seconds.extend(rec["seconds"])
        for name, pairs in rec["fit"].items():
            per_param[rec["row"]["model"]].setdefault(name, []).append(tuple(pairs))
        for name, pairs in rec["network"].items():
            net_param[rec["row"]["model"]].setdefault(name, []).append(tuple(pairs))

    stopped = False

    def done(m: str, i: int) -> bool:
        """Cached (then summarised as it is), or past the deadline: not fitted now."""
        nonlocal reused, stopped
        rec = cache.get(m, i) if cache is not None else None
        if rec is not None:
            add(rec)
            reused += 1
            return True
        if i < first:
            return True
        if deadline is not None and time.perf_counter() > deadline:
            stopped = True
            return True
        return False

    for m, i, clean, p in spectra(source, n, seed, mask, skip=done):
        y = measured_like(clean, seed, m, i, mask_array)
        out = fit_spin_models(MDHisto(y, mosaic_axes()), MODELS, networks=networks, workers=workers,
                              seed=seed + i, refine_errors=refine)
        by = {r.model: r for r in out.results}
        comp = out.comparison
        truth = by[m]
        seconds.extend(r.seconds for r in out.results)
        e = out.estimates.get(m)
        rec = {"row": {"model": m, "index": i, "chosen": comp.preferred, "delta_aic": comp.table[1]["delta_aic"],
                       "within_misfit": comp.within_misfit, "r2_true": truth.r2,
                       "reduced_chi2_true": truth.reduced_chi2, "error_scale_true": truth.error_scale,
                       "z_true": {k: _r((truth.values[k] - t) / truth.errors[k], 3) if truth.errors[k] > 0 else None
                                  for k, t in zip(truth.parameter_names, p)}},
               "seconds": [float(r.seconds) for r in out.results],
               "fit": {k: [float(truth.values[k] - t), float(truth.errors[k])]
                       for k, t in zip(truth.parameter_names, p)},
               "network": {} if e is None else {k: [float(e.values[k] - t), float(e.errors[k])]
                                                for k, t in zip(truth.parameter_names, p)}}
        if cache is not None:
            cache.put(m, i, rec)
        add(rec)
        print(f"[selection] {m} #{i}: chose {comp.preferred} (delta AIC {comp.table[1]['delta_aic']:.1f}), "
              f"true-model R^2 {truth.r2:.3f}, reduced chi2 {truth.reduced_chi2:.3f}, z "
              f"{[rows[-1]['z_true'][k] for k in truth.parameter_names]}, fits "
              f"{out.results[0].seconds:.1f} s + {out.results[1].seconds:.1f} s", flush=True)
    acc = float(np.mean([r["chosen"] == r["model"] for r in rows])) if rows else float("nan")
    coverage, mae = _summary(per_param)
    _, net_mae = _summary(net_param)
    rows.sort(key=lambda r: (r["index"], MODELS.index(r["model"])))
    return {"model_selection_accuracy": _r(acc, 3), "coverage_1sigma": coverage, "median_abs_error": mae,
            "coverage_1sigma_all": _r(float(np.mean([abs(d) <= e for v in per_param.values()
                                                      for pairs in v.values() for d, e in pairs])), 3)
            if rows else None,
            "n_fitted_per_model": {m: sum(r["model"] == m for r in rows) for m in MODELS},
            "n_reused_from_cache": reused, "stopped_at_max_minutes": stopped,
            "network_median_abs_error_on_fit_set": net_mae,
            "seconds_per_fit": _r(float(np.median(seconds)), 1) if seconds else None,
            "seconds_per_fit_range": [_r(min(seconds), 1), _r(max(seconds), 1)] if seconds else None,
            "selection_details": rows}


def identifiability(mask: Any, workers: int, networks: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in MODELS:
        model = get_model(m)
        true = np.array([model.defaults[k] for k in model.parameter_names])
        clean = simulate_mosaic(model, true, mask=mask).signal
        err = np.where(np.isfinite(clean), 0.01 * np.nanmean(clean), np.nan)
        start = estimate_parameters(clean, [m], networks={k: v for k, v in networks.items() if k == m})[m]
        r = fit_model(clean, model, errors=err, extra_starts=[start.values], include_published=False, n_sobol=0,
                      n_local=1, workers=workers)
        names = list(model.parameter_names)
        rel = np.abs(canonical_values(m, names, r.vector()) - true) / np.abs(true)
        srel = np.abs(canonical_values(m, names, start.vector()) - true) / np.abs(true)
        out[m] = float(f"{rel.max():.3e}")
        print(f"[identifiability] {m}: network start max relative error {srel.max():.2e}, fit {rel.max():.2e} "
              f"in {r.seconds:.1f} s", flush=True)
    return out


def measured_released(path: Path, workers: int, seed: int, networks: dict, refine: bool) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    y = np.load(path)
    fit = fit_spin_models(MDHisto(y, mosaic_axes()), MODELS, networks=networks, workers=workers, seed=seed,
                          refine_errors=refine)
    results, comp = fit.results, fit.comparison
    out: dict[str, Any] = {"file": str(path), "error_source": results[0].error_source}
    for r in results:
        out[r.model] = {
            "parameters": {k: _r(v, 4) for k, v in r.values.items()},
            "errors": {k: _r(v, 4) for k, v in r.errors.items()},
            "chi2": _r(r.chi2, 1), "reduced_chi2": _r(r.reduced_chi2, 4), "r2": _r(r.r2, 4),
            "aic": _r(r.aic, 1), "bic": _r(r.bic, 1), "n_data": r.n_data,
            "nuisance": {k: _r(v, 4) for k, v in r.nuisance.items()},
            "errors_inflated": r.errors_inflated, "at_bounds": list(r.at_bounds), "seconds": _r(r.seconds, 1),
            "network": {k: [_r(v, 4), _r(fit.estimates[r.model].errors[k], 4)]
                        for k, v in fit.estimates[r.model].values.items()} if r.model in fit.estimates else None,
        }
        print(f"[released] {r.summary()}", flush=True)
    out["preferred_model"] = comp.preferred
    out["strength"] = comp.strength
    out["within_misfit"] = comp.within_misfit
    out["statement"] = comp.statement
    return out


#: The two parameters fitted per model in the latent comparison (the largest couplings: they set the band
#: widths); the others are held at their true values.
LATENT_FREE = {"goodenough": ("JF1", "JA"), "dimer": ("JFW", "JFS")}
LATENT_KINDS = ("none",) + ARTEFACTS


class _LatentCase:
    """One (artefacted) measured-like spectrum and the two objectives over the free parameters.

    The model spectrum at a point goes through the engine's per-Ei scale and flat background
    (:class:`~mantid_exp2sim.fitting.NuisanceModel`, solved by weighted least squares,
    censored like :func:`~mantid_exp2sim.fitting.fit_model` decides); ``chi2`` is the weighted
    sum of squares of that prediction, ``latent`` the Euclidean distance between the
    classifier features (``classifier_features`` of the shipped ``classify_2d``) of the data
    and of that prediction. Both use errors estimated from the counts.
    """

    def __init__(self, y: np.ndarray, spectrum: Any, encode: Any, clock: dict[str, list[float]]) -> None:
        fd = prepare_data(y)
        self.fitted, self.shape = fd.fitted, y.shape
        self.yv, self.sw = fd.signal[fd.fitted], 1.0 / fd.sigma[fd.fitted]
        censored = bool(self.yv.min() >= 0 and np.mean(self.yv == 0) >= CENSORED_ZERO_FRACTION)
        self.nuis = NuisanceModel(fd.groups[fd.fitted], fd.group_names, censored=censored,
                                  clip_sigma=None if fd.clip_sigma is None else fd.clip_sigma[fd.fitted])
        self.spectrum, self.encode, self.clock = spectrum, encode, clock
        self.target = encode(y)

    def _prediction(self, u: np.ndarray) -> np.ndarray:
        f = self.spectrum(u)
        t = time.process_time()
        pred = self.nuis.solve(f[self.fitted], self.yv, self.sw)[1]
        self.clock["nuisance"].append(time.process_time() - t)
        return pred

    def chi2(self, u: np.ndarray) -> float:
        return float(np.sum((self.sw * (self.yv - self._prediction(u))) ** 2))

    def latent(self, u: np.ndarray) -> float:
        full = np.full(self.shape, np.nan)
        full[self.fitted] = self._prediction(u)
        return float(np.linalg.norm(self.encode(full) - self.target))


def latent_comparison(source: Path | None, k: int, seed: int, mask: Any, mask_array: Any,
                      max_evals: int) -> dict[str, Any]:
    """Chi-square against a latent-space distance on spectra with artefacts (see ``--latent-comparison``)."""
    from scipy.optimize import minimize

    from mantid_exp2sim.bundle.resolve import classifier_bundle
    from mantid_exp2sim.inference.backends import OnnxBackend
    from mantid_exp2sim.inference.features import classifier_features

    bundle = classifier_bundle(None)
    backend = OnnxBackend(bundle.onnx_bytes("onnx_encoder"), device="cpu", threads=1)
    clock: dict[str, list[float]] = {"spectrum": [], "nuisance": [], "encoder": []}

    def encode(arr: np.ndarray) -> np.ndarray:
        t = time.process_time()
        out = classifier_features(MDHisto(arr, mosaic_axes()), bundle, backend=backend)[0]
        clock["encoder"].append(time.process_time() - t)
        return out

    errors: dict[str, dict[str, dict[str, list[float]]]] = {o: {a: {} for a in LATENT_KINDS} for o in ("chi2", "latent")}
    rows = []
    for m, i, clean, truth in spectra(source, k, seed, mask):
        model = get_model(m)
        names = list(model.parameter_names)
        free = [names.index(n) for n in LATENT_FREE[m]]
        lo = np.array([model.ranges[names[j]][0] for j in free])
        width = np.array([model.ranges[names[j]][1] for j in free]) - lo
        u_true = (truth[free] - lo) / width
        signs = np.where(np.random.default_rng([seed, MODELS.index(m), i, 11]).random(2) < 0.5, -1.0, 1.0)
        u0 = np.clip(u_true + 0.1 * signs, 0.02, 0.98)
        y0 = measured_like(clean, seed, m, i, mask_array)
        evaluator = PlanEvaluator(model, prepare_data(y0).plan)
        cache: dict[bytes, np.ndarray] = {}

        def spectrum(u: np.ndarray) -> np.ndarray:
            key = np.round(u, 12).tobytes()
            if key not in cache:
                theta = truth.copy()
                theta[free] = lo + width * np.clip(u, 0.0, 1.0)
                t = time.process_time()
                cache[key] = evaluator(theta)
                clock["spectrum"].append(time.process_time() - t)
            return cache[key]

        simplex = np.array([u0, u0 + [0.05, 0.0], u0 + [0.0, 0.05]])
        simplex[simplex > 1.0] -= 0.1
        for kind in LATENT_KINDS:
            y = apply_artefact(y0, kind, np.random.default_rng([seed, MODELS.index(m), i, LATENT_KINDS.index(kind)]))
            case = _LatentCase(y, spectrum, encode, clock)
            row = {"model": m, "index": i, "artefact": kind, "truth": [_r(truth[j], 4) for j in free],
                   "start": [_r(v, 4) for v in lo + width * u0]}
            for name in ("chi2", "latent"):
                res = minimize(getattr(case, name), u0, method="Nelder-Mead", bounds=[(0.0, 1.0)] * 2,
                               options={"initial_simplex": simplex, "maxfev": max_evals, "xatol": 1e-3,
                                        "fatol": 1e-12})
                est = lo + width * np.clip(res.x, 0.0, 1.0)
                rel = np.abs(est - truth[free]) / np.abs(truth[free])
                for n, v in zip(LATENT_FREE[m], rel):
                    errors[name][kind].setdefault(f"{m}.{n}", []).append(float(v))
                row[name] = {"estimate": [_r(v, 4) for v in est], "rel_error": [_r(v, 4) for v in rel],
                             "n_eval": int(res.nfev)}
            rows.append(row)
            print(f"[latent] {m} #{i} {kind}: truth {row['truth']}, start {row['start']}, chi2 -> "
                  f"{row['chi2']['estimate']} (rel {row['chi2']['rel_error']}), latent -> {row['latent']['estimate']} "
                  f"(rel {row['latent']['rel_error']}); {len(cache)} spectra so far", flush=True)

    def stat(fn: Any, obj: str, kinds: tuple[str, ...]) -> float | None:
        vals = [v for a in kinds for lst in errors[obj][a].values() for v in lst]
        return _r(float(fn(vals)), 4) if vals else None

    arte = tuple(a for a in LATENT_KINDS if a != "none")
    median, worst = ({o: {a: stat(fn, o, (a,)) for a in LATENT_KINDS} | {"all_artefacts": stat(fn, o, arte)}
                      for o in errors} for fn in (np.median, np.max))
    per_param = {o: {a: {p: _r(float(np.median(v)), 4) for p, v in errors[o][a].items()} for a in LATENT_KINDS}
                 for o in errors}
    clean_ok = median["latent"]["none"] <= 1.1 * median["chi2"]["none"]
    wins = bool(median["latent"]["all_artefacts"] < median["chi2"]["all_artefacts"] and clean_ok)
    spectrum_s = float(np.mean(clock["spectrum"]))
    nuisance_s = float(np.mean(clock["nuisance"]))
    return {
        "latent_wins": wins,
        "median_rel_error": median,
        "median_rel_error_per_parameter": per_param,
        "max_rel_error": worst,
        "latent_better_per_artefact": {a: bool(median["latent"][a] < median["chi2"][a]) for a in LATENT_KINDS},
        "latent_not_worse_on_clean": bool(clean_ok),
        "cpu_seconds_per_eval": {"chi2": _r(spectrum_s + nuisance_s, 4),
                                 "latent": _r(spectrum_s + nuisance_s + float(np.mean(clock["encoder"])), 4),
                                 "spectrum": _r(spectrum_s, 4), "nuisance": _r(nuisance_s, 4),
                                 "encoder": _r(float(np.mean(clock["encoder"])), 4)},
        "n_spectrum_evaluations": len(clock["spectrum"]),
        "k_per_model": k,
        "free_parameters": {m: list(v) for m, v in LATENT_FREE.items()},
        "method": ("per model the first k measured-like spectra of the fit set; each artefact (simulate/artefacts.py "
                   "defaults, seeded) on top; only the free_parameters fitted, the others held at their true values; "
                   f"both objectives minimised by bounded Nelder-Mead (at most {max_evals} evaluations) from the same "
                   "start (the truth shifted by 10 % of each range) with the same initial simplex; chi2: weighted sum of "
                   "squares after the engine's per-Ei scale + flat background (censored as fit_model decides), errors "
                   "from the counts; latent: Euclidean distance of classifier_features (shipped classify_2d, 128 pooled "
                   "last-layer features) between the data and the same nuisance-adjusted prediction; rel_error = "
                   "|estimate - truth| / |truth|; latent wins if its median over all artefacted spectra is lower and "
                   "its median on clean spectra is at most 1.1 x chi2's"),
        "encoder": bundle.bundle_id,
        "cases": rows,
    }


def main(argv: list[str] | None = None) -> int:
    sd = shared_dir()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=3, help="measured-like spectra per model for the full fits (default 3)")
    p.add_argument("--n-network", type=int, default=100,
                   help="measured-like spectra per model for the networks alone (default 100)")
    p.add_argument("--source", type=Path, default=Path("/work/data/test_mosaic.h5"),
                   help="exp2sim-simulate mosaic file of noise-free spectra with true parameters "
                   "(default /work/data/test_mosaic.h5; simulated here when absent)")
    p.add_argument("--networks", type=Path, default=None,
                   help="folder of regress_<model>.exp2sim.h5 networks (default: the shipped ones)")
    p.add_argument("--measured", type=Path, default=sd / "data" / "pcsmo-measured",
                   help="folder of measured_ei25_35_50.npy (default $EXP2SIM_SHARED/data/pcsmo-measured)")
    p.add_argument("--pcsmo-data", type=Path, default=sd / "data" / "pcsmo",
                   help="folder of nanmask.mat (default $EXP2SIM_SHARED/data/pcsmo)")
    p.add_argument("--seed", type=int, default=20260714)
    p.add_argument("--workers", type=int, default=2, help="threads per fit (default 2)")
    p.add_argument("--refine", action=argparse.BooleanOptionalAction, default=True,
                   help="refine the estimated errors from the best fit's residuals (fit_spin_models' default; "
                   "--no-refine keeps the errors from the counts)")
    p.add_argument("--skip-measured", action="store_true", help="do not fit the released rows")
    p.add_argument("--skip-identifiability", action="store_true",
                   help="leave out the identifiability fits (for runs that only add full fits to --cache)")
    p.add_argument("--cache", type=Path, default=None,
                   help="keep each finished full fit in this folder and reuse those of earlier runs with the same "
                   "settings and code (a long --n run done in parts; see FitCache)")
    p.add_argument("--first", type=int, default=0,
                   help="full fits from this spectrum index on (a second process on another core takes a later "
                   "range of the same --cache; the summary reads every cached index below --n)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="start no new full fit after this many minutes (with --cache: continue later)")
    p.add_argument("--json-out", type=Path, help="also write the JSON object here")
    p.add_argument("--latent-comparison", action="store_true",
                   help="also compare chi-square with a latent-space distance on spectra with artefacts")
    p.add_argument("--latent-only", action="store_true",
                   help="run only the latent comparison (the other keys are left out)")
    p.add_argument("--latent-k", type=int, default=3, help="spectra per model in the latent comparison (default 3)")
    p.add_argument("--latent-evals", type=int, default=30,
                   help="evaluations per minimisation in the latent comparison (default 30)")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    mask_file = a.pcsmo_data / "nanmask.mat"
    mask = str(mask_file) if mask_file.is_file() else "kinematic"
    from dataclasses import replace

    mask_array = replace(PCSMO_MEASURED_LIKE, shared=a.pcsmo_data.parent.parent).mask_array((240, 400))[0] \
        if mask_file.is_file() else None
    networks = {m: str(a.networks / f"regress_{m}.exp2sim.h5") for m in MODELS} if a.networks else {}
    source = a.source if a.source.is_file() else None
    out: dict[str, Any] = {}
    if not a.latent_only:
        _fit_sections(out, a, source, mask, mask_array, networks)
    out["latent_objective"] = latent_comparison(source, a.latent_k, a.seed, mask, mask_array, a.latent_evals) \
        if a.latent_comparison or a.latent_only else None
    out["settings"] = {"mask": mask, "resolution": "builtin", "workers": a.workers, "source": str(source),
                       "refine_errors": a.refine, "networks": networks or "shipped",
                       "fit_defaults": dict(DEFAULTS), "measured_like": PCSMO_MEASURED_LIKE.describe(),
                       "cpu_count": os.cpu_count(), "load_average_at_start": None if load is None else round(load, 2),
                       "total_seconds": round(time.perf_counter() - t0, 1)}
    line = json.dumps(out)
    if a.json_out:
        a.json_out.write_text(line + "\n")
    print(line)
    return 0


def _fit_sections(out: dict[str, Any], a: argparse.Namespace, source: Path | None, mask: Any, mask_array: Any,
                  networks: dict) -> None:
    """The networks alone, the full fits, identifiability and the released rows (all but the latent comparison)."""
    out.update(network_only(source, a.n_network, a.seed, mask, mask_array, networks, a.workers))
    cache = None
    if a.cache is not None:
        net_files = [Path(f) for f in networks.values()] or sorted((REPO / "mantid_exp2sim" / "data" / "bundles")
                                                                   .glob("regress_*.exp2sim.h5"))
        settings = {"seed": a.seed, "source": None if source is None else [str(source.resolve()), source.stat().st_size],
                    "refine": a.refine, "fit_defaults": dict(DEFAULTS), "chain": PCSMO_MEASURED_LIKE.describe(),
                    "mask": mask, "networks": sorted(str(f) for f in networks.values())}
        cache = FitCache(a.cache, settings, net_files)
        out["cache"] = str(cache.folder)
    deadline = None if a.max_minutes is None else time.perf_counter() + 60.0 * a.max_minutes
    out.update(model_selection(source, a.n, a.seed, mask, mask_array, networks, a.workers, a.refine,
                               cache=cache, deadline=deadline, first=a.first))
    out["identifiability_max_rel_error"] = None if a.skip_identifiability else identifiability(mask, a.workers,
                                                                                               networks)
    out["start"] = "the network's estimate of the noise-free published spectrum (no other start)"
    out["symmetry"] = ("dimer parameters are compared on the canonical branch JFS <= JFW: the spectrum is invariant "
                       "under (JFW, JA1, JA2, JFS) -> (JFS, JA2, JA1, JFW) (fitting/symmetry.py); fits and truths "
                       "are both mapped onto it")
    out["measured_released"] = None if a.skip_measured else measured_released(
        a.measured / "measured_ei25_35_50.npy", a.workers, a.seed, networks, a.refine)
    out["n_per_model"] = a.n
    out["n_network_per_model"] = a.n_network
    out["note"] = ("full fits on n_per_model spectra per model (a fit takes about a minute on 2 shared cores), the "
                   "networks alone on n_network_per_model; selection by lowest AIC with errors estimated from the "
                   "counts and refined from the best fit's residuals (unless --no-refine); measured-like defaults for "
                   "Ei = 70-140 meV are extrapolated (not released)")


if __name__ == "__main__":
    raise SystemExit(main())
