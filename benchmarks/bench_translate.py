"""Benchmark the shipped (or candidate) Exp2SimGAN bundles on a fresh held-out simulated test set.

For each dimensionality (2D: the 240x400 ``pcsmo-mosaic-v1`` mosaic; 3D: (Qh, Qk, E) volumes)
it simulates ``--n-pairs`` (convolved, unconvolved) pairs of both PCSMO models with the
package's simulator, in this process, with a seed never used for training data, in the same
representation and settings as the bundle's training data (read from its manifest), and
compares with the true counterpart:

* ``psnr/ssim_identity``: the convolved input itself (doing nothing);
* ``psnr/ssim_deconvolve``: the deconvolve bundle (G_A) applied to the convolved input;
* ``psnr/ssim_richardson_lucy``: scikit-image ``restoration.richardson_lucy`` given the true
  resolution kernel of every column (see :func:`energy_kernel`);
* ``psnr_convolve``: the convolve bundle (G_B) applied to the unconvolved spectrum, against the
  noise-free convolved one; ``psnr_convolve_identity``: the unconvolved spectrum itself (doing
  nothing); ``psnr_convolve_measured_like`` and ``psnr_convolve_identity_measured_like``: the same
  against the measured-like target's expectation (mean of 16 draws of that pair's chain, in the
  truth's units);
* ``psnr/ssim_tv_rl``, ``psnr/ssim_classical_best``: the noise-aware classical peer and the
  better of the two classical peers (``benchmarks/classical_peers.py``);
* every figure of the deconvolution again with ``_measured_like``: the input is a measured-like
  draw of the convolved spectrum (:func:`measured_like_mosaic`, :func:`measured_like_volume`);
* ``psnr/ssim_deconvolve_raw``: the deconvolve bundle's output before the conservation factor
  (``translate(..., conserve_intensity=False)``): on measured-like inputs the input's integral
  carries the background residue and the clipped noise (about 1.4 times the truth's), so
  conserving it scales a good deconvolution away from the truth;
* ``intensity_ratio_*``: median over samples of sum(output) / sum(target), unmasked bins, as
  the package delivers them (``conserve_intensity`` on: the output has the input's integral);
  ``intensity_ratio_*_raw``: the same for the network's own output (before the conservation
  factor), and ``intensity_ratio_physics``: sum(convolved) / sum(unconvolved) of the
  simulator, the ratio that conservation reproduces exactly;
* ``fid_identity/deconvolve``: Frechet distance between pooled encoder features (the
  deconvolve bundle's own encoder, :func:`mantid_exp2sim.inference.encode_features`) of the
  inputs / outputs and of the true unconvolved spectra;
* ``seconds_per_mosaic_cpu``: wall time of one deconvolution with ``translate`` on the CPU
  (per volume for ``_3d``);
* ``speedup_vs_simulator``: time to simulate a resolution-convolved spectrum divided by the
  time of the fast path that replaces it: simulate without resolution, then run the convolve
  bundle.

Metrics are per sample over unmasked bins, then averaged (PSNR, SSIM) or the median taken
(intensity ratios). The last line printed is one JSON object; the 3D keys carry ``_3d``.

The classical peers (kernels, the Richardson-Lucy iteration, the TV + early-stopping variant and
how its parameters are chosen on held-out pairs) are described in ``classical_peers.py``. The
Q resolution (a fraction of a bin here) and the Q-E correlation are not modelled; masked bins
enter as zeros and are masked again.

The test file's pairs are split once (seeded): ``--n-tune`` pairs choose the noise-aware peer's
parameters, the next ``--n-pairs`` (``--n-pairs-3d``) are the test pairs.

Usage::

    python benchmarks/bench_translate.py                  # both 2D and 3D, 200 pairs each
    python benchmarks/bench_translate.py --quick          # 16 pairs (3D: 4), for a smoke test
    python benchmarks/bench_translate.py --ndim 2 --n-pairs 200 --test-data-2d test_mosaic.h5
    python benchmarks/bench_translate.py --ndim 3 --n-pairs-3d 24 --n-tune 8 --data-dir DIR

Candidate generators are measured without shipping them with ``--deconvolve BUNDLE`` and
``--convolve BUNDLE`` (default: the shipped bundle of each task and dimensionality; a
candidate is used for every ``--ndim`` given, so pass the one dimensionality it was trained
for)::

    python benchmarks/bench_translate.py --ndim 2 --deconvolve RUN/deconvolve_2d.exp2sim.h5 \
        --convolve RUN/convolve_2d.exp2sim.h5 --data-dir DIR

The keys stay the same; ``bundle_paths`` records which bundles were measured. With
``--compare-shipped`` the shipped bundles are measured on the same pairs in the same pass (the
classical peers, the costly part, run once): their generator figures (``psnr/ssim_deconvolve*``,
``psnr_convolve*``, intensity ratios, ``fid_deconvolve`` in the candidate's encoder space,
``seconds_per_mosaic_cpu``, ``bundle_bytes``) go under the key ``shipped``.

Exit status: 0 on success, 2 when a bundle is missing (the last line is then a JSON object
with an ``error`` entry).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO, REPO / "benchmarks"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from classical_peers import (  # noqa: E402
    ITERATIONS,
    TV_WEIGHTS,
    choose_parameters,
    mosaic_family,
    volume_family,
)

from mantid_exp2sim.errors import BundleError  # noqa: E402
from mantid_exp2sim.histogram import Axis, MDHisto  # noqa: E402

MODELS = ("goodenough", "dimer")
TEST_SEED = 917_000_313
#: Measured-like draws averaged into the expectation the convolution direction is judged against.
EXPECTATION_DRAWS = 16  # never used by exp2sim-simulate defaults (0) or the documented runs


def richardson_lucy_mosaic(x: np.ndarray, resolution: Any, meta: dict, iterations: int) -> np.ndarray:
    """Richardson-Lucy of a mosaic with per-(Ei, window) kernels (``classical_peers``)."""
    return mosaic_family(x, resolution, meta, iterations=(iterations,))[(0.0, int(iterations))]


def richardson_lucy_volume(x: np.ndarray, resolution: Any, e_axis: Axis, ei: float, iterations: int) -> np.ndarray:
    """Richardson-Lucy of a (Qh, Qk, E) volume with per-energy kernels (``classical_peers``)."""
    return volume_family(x, resolution, e_axis.centres(), e_axis.width, ei, iterations=(iterations,))[
        (0.0, int(iterations))]


def measured_like_mosaic(clean: np.ndarray, chain: Any, rng: np.random.Generator) -> np.ndarray:
    """A measured-like draw of a noise-free convolved mosaic, back in simulator units.

    ``chain`` (:class:`~mantid_exp2sim.simulate.measured_like.MeasuredLike`) adds the per-Ei
    scale, counting noise with a background, its subtraction (with the residual background),
    clipping and its mask; the result is divided by the chain's own per-Ei scale so that every
    method is judged against the unconvolved truth in the truth's units.
    """
    from mantid_exp2sim.mosaic import TILE

    y = chain.apply(clean, rng)
    return y / np.repeat(np.asarray(chain.scale, dtype=float), TILE)[:, None]


def measured_like_volume(clean: np.ndarray, chain: Any, ei: float, rng: np.random.Generator) -> np.ndarray:
    """The measured-like chain on a (Qh, Qk, E) volume, back in simulator units.

    The chain's parameters of the incident energy nearest ``ei`` apply to the whole volume:
    ``mu = scale * S``; sample counts ``Poisson(c (mu + R + B))``, background counts
    ``Poisson(c rho B)``; ``y = N / c - M / (c rho)``, clipped to ``[0, clip_max]``, divided by
    ``scale``. The volume keeps its own (kinematic) mask: the measured detector mask is a
    mosaic.
    """
    from mantid_exp2sim.mosaic import EI_LIST

    g = int(np.argmin(np.abs(np.asarray(EI_LIST[: chain.n_ei], dtype=float) - float(ei))))
    scale, c = float(chain.scale[g]), float(chain.count_level[g])
    b, r, rho = float(chain.background[g]), float(chain.residual_background[g]), float(chain.background_ratio)
    ok = np.isfinite(clean)
    mu = scale * np.clip(clean[ok], 0.0, None)
    n = rng.poisson(c * (mu + r + b))
    m = rng.poisson(c * rho * b)
    out = np.full(clean.shape, np.nan)
    out[ok] = np.clip(n / c - m / (c * rho), 0.0, float(chain.clip_max)) / scale
    return out


def _bundles(ndim: int, paths: dict[str, str | None] | None = None) -> tuple[Any, Any]:
    """The (deconvolve, convolve) bundles: ``paths[task]`` when given, else the shipped one."""
    from mantid_exp2sim.bundle import default_bundle_path, load_bundle

    paths = paths or {}
    return tuple(load_bundle(paths.get(task) or default_bundle_path(task, ndim), task=task, ndim=ndim)
                 for task in ("deconvolve", "convolve"))


def _spec_of(bundle: Any, ndim: int) -> dict[str, Any]:
    """Data-set settings of the bundle's training data (falls back to the package defaults)."""
    training = bundle.manifest.get("training") or {}
    dom = ((training.get("data") or {}).get("domain_a") or {})
    settings = dom.get("settings") if isinstance(dom, dict) else None
    if not isinstance(settings, dict):
        parts = dom.get("parts") if isinstance(dom, dict) else None
        settings = next((p.get("settings") for p in parts or [] if isinstance(p.get("settings"), dict)), None)
    if isinstance(settings, dict):
        keep = ("representation", "resolution", "mask", "ei", "bins", "energy_range", "energy_window", "line")
        return {k: settings[k] for k in keep if k in settings}
    return {"representation": "mosaic"} if ndim == 2 else {"representation": "volume"}


def _simulate(path: Path, spec: dict, n_pairs: int, seed: int, workers: int) -> None:
    from mantid_exp2sim.simulate import DatasetSpec, write_dataset

    per_model = max(1, (n_pairs + len(MODELS) - 1) // len(MODELS))
    write_dataset(path, list(MODELS), per_model, DatasetSpec.from_settings(spec), seed=seed, workers=workers,
                  progress=False, command=["bench_translate.py"])


def _time_simulator(path: Path, spec: dict, repeats: int) -> tuple[float, float]:
    """Seconds per spectrum with and without resolution, at test-set parameters."""
    import h5py

    from mantid_exp2sim.simulate import spectra

    with h5py.File(path, "r") as f:
        params = np.asarray(f[MODELS[0]]["parameters"][:repeats])
    rep = spec.get("representation", "mosaic")
    kw: dict[str, Any] = {"mask": spec.get("mask", "kinematic")}
    if rep == "volume":
        kw.update(ei=spec.get("ei") or 70.0, bins=tuple(spec.get("bins") or (64, 64, 64)),
                  energy_range=spec.get("energy_range"))
        fn = spectra.simulate_volume
    else:
        fn = spectra.simulate_mosaic
    res = spec.get("resolution", "builtin")
    times = {True: [], False: []}
    for p in params:
        for conv in (True, False):
            t0 = time.perf_counter()
            fn(MODELS[0], p, convolved=conv, resolution=res if conv else "unconvolved", **kw)
            times[conv].append(time.perf_counter() - t0)
    return float(np.median(times[True])), float(np.median(times[False]))


def _scores(pred: dict[str, np.ndarray], target: np.ndarray, res: dict[str, list[float]], suffix: str) -> None:
    from mantid_exp2sim.train.metrics import masked_psnr, masked_ssim

    for name, y in pred.items():
        res.setdefault(f"psnr_{name}{suffix}", []).append(masked_psnr(y, target))
        res.setdefault(f"ssim_{name}{suffix}", []).append(masked_ssim(y, target))


def _median_after_warmup(times: list[float]) -> float:
    """Median of call times without the first (which builds the session)."""
    return float(np.median(times[1:] if len(times) > 1 else times))


def _generator_scores(dec: Any, conv: Any, inputs: dict[str, np.ndarray], xa: np.ndarray, xb: np.ndarray,
                      target: np.ndarray | None, axes: tuple, acc: dict[str, Any]) -> None:
    """Translate one test pair with a (deconvolve, convolve) bundle pair and append its figures.

    ``inputs`` maps the key suffix (``""``: noise-free, ``"_measured_like"``) to the
    deconvolution input; ``target`` is the measured-like expectation (None: not measured).
    ``acc`` holds ``res`` (figure lists), ``t_dec``/``t_conv`` (seconds) and ``h_out``.
    """
    from mantid_exp2sim.inference import translate
    from mantid_exp2sim.train.metrics import intensity_ratio, masked_psnr

    res = acc["res"]
    t0 = time.perf_counter()
    out_a = translate(MDHisto(xa, axes), dec, device="cpu")
    acc["t_dec"].append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    out_b = translate(MDHisto(xb, axes), conv, device="cpu")
    acc["t_conv"].append(time.perf_counter() - t0)
    ya, yb = out_a.signal, out_b.signal
    for kind, x in inputs.items():
        out_k = out_a if not kind else translate(MDHisto(x, axes), dec, device="cpu")
        y = out_k.signal
        if kind:
            res.setdefault(f"intensity_ratio_deconvolve{kind}", []).append(intensity_ratio(y, xb))
        raw = y / (out_k.metadata["intensity_factor"] or 1.0)
        _scores({"deconvolve": y, "deconvolve_raw": raw}, xb, res, kind)
    res.setdefault("psnr_convolve", []).append(masked_psnr(yb, xa))
    if target is not None:
        res.setdefault("psnr_convolve_measured_like", []).append(masked_psnr(yb, target))
    res.setdefault("intensity_ratio_deconvolve", []).append(intensity_ratio(ya, xb))
    res.setdefault("intensity_ratio_convolve", []).append(intensity_ratio(yb, xa))
    for key, y, tgt, factor in (("deconvolve", ya, xb, out_a.metadata["intensity_factor"]),
                                ("convolve", yb, xa, out_b.metadata["intensity_factor"])):
        res.setdefault(f"intensity_ratio_{key}_raw", []).append(intensity_ratio(y / (factor or 1.0), tgt))
    acc["h_out"].append(MDHisto(ya, axes))


def evaluate(ndim: int, n_pairs: int, *, seed: int, workers: int, rl_iterations: int, timing_repeats: int,
             data_dir: Path, log: Any, test_data: str | None = None, n_tune: int = 16,
             measured_like: bool = True, bundles: dict[str, str | None] | None = None,
             compare_shipped: bool = False) -> dict[str, Any]:
    """All metrics of one dimensionality (keys without the ``_3d`` suffix).

    The pairs of the test file are split once (seeded): ``n_tune`` held-out pairs choose the
    noise-aware classical peer's parameters, separately for noise-free and measured-like
    inputs, and the next ``n_pairs`` are the test pairs. ``bundles`` maps ``deconvolve`` /
    ``convolve`` to candidate bundle paths (absent or None: the shipped bundle); with
    ``compare_shipped`` the shipped bundles are measured on the same pairs in the same pass,
    their generator figures under the key ``shipped`` (identity and classical figures are shared).
    """
    from mantid_exp2sim.inference import encode_features
    from mantid_exp2sim.simulate import get_resolution
    from mantid_exp2sim.simulate.nuisance_sampling import draw_measured_like
    from mantid_exp2sim.train.data import SimulatorSource
    from mantid_exp2sim.train.metrics import frechet_distance, intensity_ratio, masked_psnr, summarise

    dec, conv = _bundles(ndim, bundles)
    spec = _spec_of(dec, ndim)
    if test_data:
        path = Path(test_data)
        log(f"{ndim}D: test pairs from {path}")
    else:
        path = data_dir / f"test_{ndim}d.h5"
        if not path.exists():
            log(f"{ndim}D: simulating {n_pairs + n_tune} test pairs ({spec.get('representation')}, seed {seed})")
            _simulate(path, spec, n_pairs + n_tune, seed, workers)
    a, b = SimulatorSource(path, "convolved"), SimulatorSource(path, "unconvolved")
    axes = tuple(Axis.from_dict(d) for d in a.axes())
    meta = a.metadata()
    resolution = get_resolution(spec.get("resolution", "builtin"))
    ei = float(spec.get("ei") or meta.get("ei") or 70.0)
    order = np.random.default_rng([seed, ndim, 1]).permutation(len(a))
    tune_idx, test_idx = order[:n_tune], order[n_tune:n_tune + n_pairs]

    def family(x: np.ndarray, weights, iterations) -> dict:
        if ndim == 2:
            return mosaic_family(x, resolution, meta, weights=weights, iterations=iterations)
        return volume_family(x, resolution, axes[2].centres(), axes[2].width, ei, weights=weights,
                             iterations=iterations)

    def ml(i: int, clean: np.ndarray, draw: int = 0) -> np.ndarray:
        chain = draw_measured_like(np.random.default_rng([seed, 7, int(i)]))
        rng = np.random.default_rng([seed, 8, int(i), draw])
        return measured_like_mosaic(clean, chain, rng) if ndim == 2 else measured_like_volume(clean, chain, ei, rng)

    def ml_expectation(i: int, clean: np.ndarray) -> np.ndarray:
        """Mean of EXPECTATION_DRAWS measured-like draws of pair i's chain (noise, clipping and
        residual background included), the target of the convolution direction."""
        return np.mean([ml(i, clean, d) for d in range(1, EXPECTATION_DRAWS + 1)], axis=0)

    kinds = ("", "_measured_like") if measured_like else ("",)
    chosen: dict[str, tuple[float, int]] = {}
    for kind in kinds:
        scores: dict[tuple[float, int], list[float]] = {}
        log(f"{ndim}D{kind}: choosing the TV + early-stopped Richardson-Lucy parameters on {tune_idx.size} held-out pairs")
        for i in tune_idx:
            xa, xb = a.read(int(i)).astype(np.float64), b.read(int(i)).astype(np.float64)
            x = ml(i, xa) if kind else xa
            for key, y in family(x, TV_WEIGHTS, ITERATIONS).items():
                scores.setdefault(key, []).append(masked_psnr(y, xb))
        chosen[kind] = choose_parameters(scores)[0] if scores else (0.0, rl_iterations)

    sets = {"": (dec, conv)}
    if compare_shipped:
        sets["shipped"] = _bundles(ndim)
    t_start = time.perf_counter()
    res: dict[str, list[float]] = {}
    per_set: dict[str, dict[str, Any]] = {name: {"res": {}, "t_dec": [], "t_conv": [], "h_out": []} for name in sets}
    h_in, h_true = [], []
    log(f"{ndim}D: translating {test_idx.size} pairs" + (" (candidate and shipped)" if compare_shipped else ""))
    for k, i in enumerate(test_idx):
        if k and k % 20 == 0:
            log(f"{ndim}D: {k}/{test_idx.size} pairs in {time.perf_counter() - t_start:.0f} s")
        xa, xb = a.read(int(i)).astype(np.float64), b.read(int(i)).astype(np.float64)
        inputs = {kind: (ml(i, xa) if kind else xa) for kind in kinds}
        for kind, x in inputs.items():
            w, n = chosen[kind]
            fam = family(x, (0.0,), (rl_iterations,))
            fam.update(family(x, (w,), (n,)))
            _scores({"identity": x, "richardson_lucy": fam[(0.0, rl_iterations)], "tv_rl": fam[(w, n)]}, xb, res, kind)
        target = ml_expectation(i, xa) if measured_like else None
        res.setdefault("psnr_convolve_identity", []).append(masked_psnr(xb, xa))
        if target is not None:
            res.setdefault("psnr_convolve_identity_measured_like", []).append(masked_psnr(xb, target))
        res.setdefault("intensity_ratio_physics", []).append(intensity_ratio(xa, xb))
        for name, (d, c) in sets.items():
            _generator_scores(d, c, inputs, xa, xb, target, axes, per_set[name])
        h_in.append(MDHisto(xa, axes))
        h_true.append(MDHisto(xb, axes))
    log(f"{ndim}D: {test_idx.size} pairs in {time.perf_counter() - t_start:.0f} s")

    def summary(values: dict[str, list[float]]) -> dict[str, Any]:
        return {k: summarise(v, "median" if k.startswith("intensity") else "mean") for k, v in values.items()}

    out: dict[str, Any] = summary({**res, **per_set[""]["res"]})
    for kind in kinds:
        w, n = chosen[kind]
        out[f"tv_rl_parameters{kind}"] = {"tv_weight": w, "iterations": n}
        best = "tv_rl" if out[f"psnr_tv_rl{kind}"] > out[f"psnr_richardson_lucy{kind}"] else "richardson_lucy"
        out[f"classical_best{kind}"] = best
        out[f"psnr_classical_best{kind}"] = out[f"psnr_{best}{kind}"]
        out[f"ssim_classical_best{kind}"] = out[f"ssim_{best}{kind}"]
    log(f"{ndim}D: encoder features")
    f_true = encode_features(h_true, dec, device="cpu")
    out["fid_identity"] = frechet_distance(encode_features(h_in, dec, device="cpu"), f_true)
    for name, (d, c) in sets.items():
        st = per_set[name]
        extra = out if not name else summary(st["res"])
        # the FID is measured in the candidate's encoder space for every set, so the figures compare
        extra["fid_deconvolve"] = frechet_distance(encode_features(st["h_out"], dec, device="cpu"), f_true)
        # timings after a warm-up (the first call builds the session)
        extra["seconds_per_mosaic_cpu"] = _median_after_warmup(st["t_dec"])
        if name:
            extra["bundle_bytes"] = {t: int(bd.path.stat().st_size) for t, bd in (("deconvolve", d), ("convolve", c))}
            extra["bundle_paths"] = {t: str(bd.path) for t, bd in (("deconvolve", d), ("convolve", c))}
            out[name] = extra
    t_sim_conv, t_sim_unconv = _time_simulator(path, spec, timing_repeats)
    t_fast = t_sim_unconv + _median_after_warmup(per_set[""]["t_conv"])
    out["speedup_vs_simulator"] = t_sim_conv / t_fast
    out["n_pairs"] = int(test_idx.size)
    out["n_tune_pairs"] = int(tune_idx.size)
    out["bundle_bytes"] = {t: int(bd.path.stat().st_size) for t, bd in (("deconvolve", dec), ("convolve", conv))}
    out["bundle_paths"] = {t: str(bd.path) for t, bd in (("deconvolve", dec), ("convolve", conv))}
    return out


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-pairs", type=int, default=200, help="2D test pairs (both models)")
    p.add_argument("--n-pairs-3d", type=int, default=None, help="3D test pairs (default: --n-pairs)")
    p.add_argument("--n-tune", type=int, default=16,
                   help="held-out pairs (not test pairs) that choose the noise-aware classical peer's parameters")
    p.add_argument("--test-data-2d", default=None,
                   help="exp2sim-simulate file of 2D test pairs (default: simulate them with --seed)")
    p.add_argument("--test-data-3d", default=None, help="the same for 3D volumes")
    p.add_argument("--no-measured-like", action="store_true", help="noise-free inputs only")
    p.add_argument("--quick", action="store_true", help="16 pairs (3D: 4, tuning: 4), 10 Richardson-Lucy iterations")
    p.add_argument("--ndim", type=int, nargs="+", choices=[2, 3], default=[2, 3])
    p.add_argument("--seed", type=int, default=TEST_SEED, help="test-set seed (fresh; not a training seed)")
    p.add_argument("--workers", type=int, default=1, help="simulator worker processes")
    p.add_argument("--rl-iterations", type=int, default=30)
    p.add_argument("--data-dir", default=None, help="keep (and reuse) the simulated test sets here")
    p.add_argument("--deconvolve", default=None, metavar="BUNDLE",
                   help="deconvolve (G_A) bundle to measure (default: the shipped one)")
    p.add_argument("--convolve", default=None, metavar="BUNDLE",
                   help="convolve (G_B) bundle to measure (default: the shipped one)")
    p.add_argument("--compare-shipped", action="store_true",
                   help="also measure the shipped bundles on the same pairs in the same pass (key 'shipped')")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    n_pairs = 16 if args.quick else args.n_pairs
    n_pairs_3d = 4 if args.quick else (args.n_pairs_3d or args.n_pairs)
    n_tune = 4 if args.quick else args.n_tune
    rl_iter = 10 if args.quick else args.rl_iterations
    repeats = 1 if args.quick else 3

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    chosen = {"deconvolve": args.deconvolve, "convolve": args.convolve}
    missing = []
    for ndim in args.ndim:
        try:
            _bundles(ndim, chosen)
        except BundleError as exc:
            missing.append(str(exc))
    if missing:
        for m in missing:
            log(f"error: {m}")
        print(json.dumps({"error": "missing or invalid bundle(s)", "details": missing}))
        return 2
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench_translate_") as tmp:
        data_dir = Path(args.data_dir) if args.data_dir else Path(tmp)
        data_dir.mkdir(parents=True, exist_ok=True)
        for ndim in args.ndim:
            suffix = "" if ndim == 2 else "_3d"
            metrics = evaluate(ndim, n_pairs if ndim == 2 else n_pairs_3d, seed=args.seed, workers=args.workers,
                               rl_iterations=rl_iter, timing_repeats=repeats, data_dir=data_dir, log=log,
                               test_data=args.test_data_2d if ndim == 2 else args.test_data_3d, n_tune=n_tune,
                               measured_like=not args.no_measured_like, bundles=chosen,
                               compare_shipped=args.compare_shipped)
            results.update({f"{k}{suffix}": v for k, v in metrics.items()})
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
