"""Benchmark the shipped Exp2SimGAN bundles on a fresh held-out simulated test set.

For each dimensionality (2D: the 240x400 ``pcsmo-mosaic-v1`` mosaic; 3D: (Qh, Qk, E) volumes)
it simulates ``--n-pairs`` (convolved, unconvolved) pairs of both PCSMO models with the
package's simulator, in this process, with a seed never used for training data, in the same
representation and settings as the bundle's training data (read from its manifest), and
compares with the true counterpart:

* ``psnr/ssim_identity``: the convolved input itself (doing nothing);
* ``psnr/ssim_deconvolve``: the deconvolve bundle (G_A) applied to the convolved input;
* ``psnr/ssim_richardson_lucy``: scikit-image ``restoration.richardson_lucy`` given the true
  resolution kernel of every column (see :func:`energy_kernel`);
* ``psnr_convolve``: the convolve bundle (G_B) applied to the unconvolved spectrum;
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

The Richardson-Lucy kernel: the simulator broadens each mode in energy by a Gaussian of the
instrument's energy width sigma(E, Ei) (from the same resolution model as the data set) and
both spectra are bin means, so along energy a bin receives from a bin ``d`` away the fraction
``k[d] = mean over u in [0, 1) of Phi((d + 1 - u) / s) - Phi((d - u) / s)``, ``s = sigma / bin
width``. Each column along energy gets the kernel of its own energy: in the mosaic one kernel
per (Ei, energy window), acting along the 10 windows of that Ei; in a volume one kernel per
energy bin. As scikit-image takes one kernel per call, the columns are deconvolved once per
distinct kernel and each keeps its own part. The Q resolution (a fraction of a bin here) and
the Q-E correlation are not modelled; masked bins enter as zeros and are masked again.

Usage::

    python benchmarks/bench_translate.py                  # both 2D and 3D, 200 pairs each
    python benchmarks/bench_translate.py --quick          # 16 pairs, for a smoke test
    python benchmarks/bench_translate.py --ndim 2 --n-pairs 400 --workers 2

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
from scipy.stats import norm

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from mantid_exp2sim.errors import BundleError  # noqa: E402
from mantid_exp2sim.histogram import Axis, MDHisto  # noqa: E402

MODELS = ("goodenough", "dimer")
TEST_SEED = 917_000_313  # never used by exp2sim-simulate defaults (0) or the documented runs


def energy_kernel(sigma_bins: float, radius: int | None = None) -> np.ndarray:
    """Discrete bin-to-bin kernel of a Gaussian energy broadening (see the module docstring).

    Parameters
    ----------
    sigma_bins
        Gaussian sigma in units of the bin width.
    radius
        Half-width in bins (default ``ceil(4 sigma) + 1``).

    Returns
    -------
    numpy.ndarray
        ``(2 radius + 1,)`` weights summing to 1.
    """
    s = max(float(sigma_bins), 1e-6)
    r = int(np.ceil(4 * s)) + 1 if radius is None else int(radius)
    u = (np.arange(256) + 0.5) / 256.0
    d = np.arange(-r, r + 1)[:, None]
    k = (norm.cdf((d + 1 - u) / s) - norm.cdf((d - u) / s)).mean(axis=1)
    return k / k.sum()


def _rl(image: np.ndarray, kernel: np.ndarray, axis: int, iterations: int) -> np.ndarray:
    from skimage.restoration import richardson_lucy

    shape = [1] * image.ndim
    shape[axis] = kernel.size
    return richardson_lucy(image, kernel.reshape(shape), num_iter=iterations, clip=False, filter_epsilon=1e-12)


def richardson_lucy_mosaic(x: np.ndarray, resolution: Any, meta: dict, iterations: int) -> np.ndarray:
    """Per-(Ei, window) kernels along the window axis of each Ei block of the mosaic."""
    ei_list = [float(e) for e in meta.get("ei_list", [25, 35, 50, 70, 100, 140])]
    windows = np.asarray(meta.get("window_fractions", [[0.10 + 0.06 * j, 0.16 + 0.06 * j] for j in range(10)]))
    q = x.shape[0] // len(ei_list)
    nw = windows.shape[0]
    valid = np.isfinite(x)
    src = np.clip(np.where(valid, x, 0.0), 0.0, None)
    out = np.empty_like(src)
    for b, ei in enumerate(ei_list):
        block = src[b * q:(b + 1) * q].reshape(q, nw, q)  # (Qh, window, Qk)
        width = (windows[:, 1] - windows[:, 0]) * ei
        centres = windows.mean(axis=1) * ei
        sigma = np.asarray(resolution.energy_sigma(centres, ei), dtype=float)
        res = np.empty_like(block)
        cache: dict[tuple, np.ndarray] = {}
        for j in range(nw):
            kern = energy_kernel(sigma[j] / width[j], radius=2)
            key = tuple(np.round(kern, 6))
            if key not in cache:
                cache[key] = _rl(block, kern, axis=1, iterations=iterations)
            res[:, j] = cache[key][:, j]
        out[b * q:(b + 1) * q] = res.reshape(q, nw * q)
    return np.where(valid, out, np.nan)


def richardson_lucy_volume(x: np.ndarray, resolution: Any, e_axis: Axis, ei: float, iterations: int) -> np.ndarray:
    """Per-energy-bin kernels along the energy axis (last) of a (Qh, Qk, E) volume."""
    valid = np.isfinite(x)
    src = np.clip(np.where(valid, x, 0.0), 0.0, None)
    sigma = np.asarray(resolution.energy_sigma(e_axis.centres(), ei), dtype=float) / e_axis.width
    out = np.empty_like(src)
    # kernels of neighbouring energies are nearly equal: one deconvolution per 0.05-bin step
    groups: dict[float, list[int]] = {}
    for i, s in enumerate(sigma):
        groups.setdefault(round(float(s) / 0.05) * 0.05, []).append(i)
    for s, idx in groups.items():
        full = _rl(src, energy_kernel(s), axis=2, iterations=iterations)
        out[..., idx] = full[..., idx]
    return np.where(valid, out, np.nan)


def _bundles(ndim: int) -> tuple[Any, Any]:
    from mantid_exp2sim.bundle import default_bundle_path, load_bundle

    return tuple(load_bundle(default_bundle_path(task, ndim), task=task, ndim=ndim) for task in ("deconvolve", "convolve"))


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


def evaluate(ndim: int, n_pairs: int, *, seed: int, workers: int, rl_iterations: int, timing_repeats: int,
             data_dir: Path, log: Any) -> dict[str, float]:
    """All metrics of one dimensionality (keys without suffix)."""
    from mantid_exp2sim.inference import encode_features, translate
    from mantid_exp2sim.simulate import get_resolution
    from mantid_exp2sim.train.data import SimulatorSource
    from mantid_exp2sim.train.metrics import frechet_distance, intensity_ratio, masked_psnr, masked_ssim, summarise

    dec, conv = _bundles(ndim)
    spec = _spec_of(dec, ndim)
    path = data_dir / f"test_{ndim}d.h5"
    if not path.exists():
        log(f"{ndim}D: simulating {n_pairs} test pairs ({spec.get('representation')}, seed {seed})")
        _simulate(path, spec, n_pairs, seed, workers)
    a, b = SimulatorSource(path, "convolved"), SimulatorSource(path, "unconvolved")
    axes = tuple(Axis.from_dict(d) for d in a.axes())
    meta = a.metadata()
    resolution = get_resolution(spec.get("resolution", "builtin"))
    ei = float(spec.get("ei") or meta.get("ei") or 70.0)
    n = min(n_pairs, len(a))
    res: dict[str, list[float]] = {k: [] for k in (
        "psnr_identity", "psnr_deconvolve", "psnr_richardson_lucy", "ssim_identity", "ssim_deconvolve",
        "ssim_richardson_lucy", "psnr_convolve", "intensity_ratio_deconvolve", "intensity_ratio_convolve",
        "intensity_ratio_deconvolve_raw", "intensity_ratio_convolve_raw", "intensity_ratio_physics")}
    t_dec, t_conv = [], []
    h_in, h_out, h_true = [], [], []
    log(f"{ndim}D: translating {n} pairs")
    for i in range(n):
        xa, xb = a.read(i).astype(np.float64), b.read(i).astype(np.float64)
        ha, hb = MDHisto(xa, axes), MDHisto(xb, axes)
        t0 = time.perf_counter()
        out_a = translate(ha, dec, device="cpu")
        t_dec.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        out_b = translate(hb, conv, device="cpu")
        t_conv.append(time.perf_counter() - t0)
        ya, yb = out_a.signal, out_b.signal
        if ndim == 2:
            rl = richardson_lucy_mosaic(xa, resolution, meta, rl_iterations)
        else:
            rl = richardson_lucy_volume(xa, resolution, axes[2], ei, rl_iterations)
        for name, pred in (("identity", xa), ("deconvolve", ya), ("richardson_lucy", rl)):
            res[f"psnr_{name}"].append(masked_psnr(pred, xb))
            res[f"ssim_{name}"].append(masked_ssim(pred, xb))
        res["psnr_convolve"].append(masked_psnr(yb, xa))
        res["intensity_ratio_deconvolve"].append(intensity_ratio(ya, xb))
        res["intensity_ratio_convolve"].append(intensity_ratio(yb, xa))
        for key, y, target, factor in (("deconvolve", ya, xb, out_a.metadata["intensity_factor"]),
                                       ("convolve", yb, xa, out_b.metadata["intensity_factor"])):
            res[f"intensity_ratio_{key}_raw"].append(intensity_ratio(y / (factor or 1.0), target))
        res["intensity_ratio_physics"].append(intensity_ratio(xa, xb))
        h_in.append(ha)
        h_out.append(MDHisto(ya, axes))
        h_true.append(hb)
    out = {k: summarise(v, "median" if k.startswith("intensity") else "mean") for k, v in res.items()}
    log(f"{ndim}D: encoder features")
    f_true = encode_features(h_true, dec, device="cpu")
    out["fid_identity"] = frechet_distance(encode_features(h_in, dec, device="cpu"), f_true)
    out["fid_deconvolve"] = frechet_distance(encode_features(h_out, dec, device="cpu"), f_true)
    # timings after a warm-up (the first call builds the session)
    out["seconds_per_mosaic_cpu"] = float(np.median(t_dec[1:] if len(t_dec) > 1 else t_dec))
    t_sim_conv, t_sim_unconv = _time_simulator(path, spec, timing_repeats)
    t_fast = t_sim_unconv + float(np.median(t_conv[1:] if len(t_conv) > 1 else t_conv))
    out["speedup_vs_simulator"] = t_sim_conv / t_fast
    out["n_pairs"] = n
    return out


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-pairs", type=int, default=200, help="test pairs per dimensionality (both models)")
    p.add_argument("--quick", action="store_true", help="16 pairs, 10 Richardson-Lucy iterations")
    p.add_argument("--ndim", type=int, nargs="+", choices=[2, 3], default=[2, 3])
    p.add_argument("--seed", type=int, default=TEST_SEED, help="test-set seed (fresh; not a training seed)")
    p.add_argument("--workers", type=int, default=1, help="simulator worker processes")
    p.add_argument("--rl-iterations", type=int, default=30)
    p.add_argument("--data-dir", default=None, help="keep (and reuse) the simulated test sets here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    n_pairs = 16 if args.quick else args.n_pairs
    rl_iter = 10 if args.quick else args.rl_iterations
    repeats = 1 if args.quick else 3

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    missing = []
    for ndim in args.ndim:
        try:
            _bundles(ndim)
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
            metrics = evaluate(ndim, n_pairs, seed=args.seed, workers=args.workers, rl_iterations=rl_iter,
                               timing_repeats=repeats, data_dir=data_dir, log=log)
            results.update({f"{k}{suffix}": v for k, v in metrics.items()})
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
