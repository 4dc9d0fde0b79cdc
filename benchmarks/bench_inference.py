"""Benchmark of the inference engine: exactness of tiling, backend agreement, speed, memory.

Run from the repository root::

    python benchmarks/bench_inference.py            # full run (the 256^3 memory check takes minutes)
    python benchmarks/bench_inference.py --quick    # CI-sized inputs

The last line printed is one JSON object (keys described in docs/inference.md):
``tile_vs_whole_max_abs_diff_2d``/``_3d`` (relative to the output range; the network's output,
before the one intensity-conservation factor, which whole-input inference would apply too),
``onnx_vs_torch_max_abs_diff``, ``kpx_per_s_onnx_cpu``, ``kpx_per_s_torch_cpu``,
``model_only_kpx_per_s_cpu``, ``pipeline_overhead``, ``peak_rss_mb_256cubed``,
``mpx_per_s_gpu_fp32``/``_fp16`` (null without a GPU), ``bundle_source`` and the settings used.

It uses the shipped default bundles when they exist (``bundle.default_bundle_path``), else
random-weight bundles of the training presets' architecture (every residual branch and the
head switched on, so the network is not the identity an untrained generator is).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from mantid_exp2sim.histogram import MDHisto  # noqa: E402


# ----------------------------------------------------------------------------- inputs
def spectrum_like(shape: tuple[int, ...], seed: int = 0, masked: float = 0.05) -> MDHisto:
    """A synthetic INS-like histogram: dispersive modes on a background, noise, a masked band."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(0.0, 1.0, n) for n in shape], indexing="ij")
    energy = grids[-1]
    q = sum(np.sin(3.0 * math.pi * g) ** 2 for g in grids[:-1]) / max(1, len(grids) - 1)
    signal = np.exp(-0.5 * ((energy - 0.2 - 0.6 * q) / 0.03) ** 2) + 0.4 * np.exp(
        -0.5 * ((energy - 0.7 + 0.2 * q) / 0.05) ** 2
    )
    signal = 100.0 * signal + 5.0 + rng.normal(scale=2.0, size=shape)
    signal[rng.random(shape) < masked] = np.nan
    band = tuple(slice(n // 3, n // 3 + max(1, n // 20)) for n in shape[:1]) + (slice(None),) * (len(shape) - 1)
    signal[band] = np.nan
    return MDHisto.from_array(signal)


# ---------------------------------------------------------------------------- bundles
def _architecture(ndim: int) -> dict[str, Any]:
    """Generator settings of the training preset (what the shipped bundles use)."""
    try:
        from mantid_exp2sim.train.config import PRESETS

        preset = PRESETS[f"pcsmo-{ndim}d"]
        return {"ndim": ndim, "ngf": preset["ngf"], "n_blocks": preset["n_blocks"], "n_down": preset["n_down"]}
    except (ImportError, KeyError):
        return {"ndim": ndim}


def random_generator(config: dict[str, Any], seed: int):
    """A generator with random weights and every layer switched on."""
    import torch

    from mantid_exp2sim.models.generator import ResnetGenerator

    torch.manual_seed(seed)
    g = ResnetGenerator(**config)
    with torch.no_grad():
        for block in g.blocks:
            block.alpha.uniform_(0.3, 0.7)
        torch.nn.init.normal_(g.head.weight, std=0.05)
    return g.eval()


def write_random_bundle(path: Path, config: dict[str, Any], seed: int, task: str = "deconvolve"):
    import torch

    from mantid_exp2sim.bundle import load_bundle, make_manifest, write_bundle
    from mantid_exp2sim.onnx import EncoderWrapper, export_onnx

    g = random_generator(config, seed)
    example = torch.zeros((1, 2) + (32,) * g.ndim)
    manifest = make_manifest(kind="generator", task=task, direction="exp2sim", model=g, patch_size=None,
                             command=["benchmarks/bench_inference.py"], seed=seed)
    write_bundle(path, manifest, onnx=export_onnx(g, example), onnx_encoder=export_onnx(EncoderWrapper(g), example),
                 weights=g.state_dict())
    return load_bundle(path)


def get_bundles(folder: Path) -> tuple[dict[int, Any], str]:
    from mantid_exp2sim.bundle import default_bundle_path, load_bundle

    paths = {nd: default_bundle_path("deconvolve", nd, must_exist=False) for nd in (2, 3)}
    if all(p.is_file() for p in paths.values()):
        return {nd: load_bundle(p) for nd, p in paths.items()}, "shipped"
    return {nd: write_random_bundle(folder / f"random_{nd}d.exp2sim.h5", _architecture(nd), seed=nd)
            for nd in (2, 3)}, "random-weights"


# ---------------------------------------------------------------------------- measures
def whole_input(histo: MDHisto, bundle: Any, net: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Whole-input inference as models.normalisation defines it: pad, run once, crop."""
    from mantid_exp2sim.models.normalisation import (
        crop_padding,
        from_network_output,
        intensity_scale,
        pad_to_multiple,
        to_network_input,
        valid_mask,
    )

    s = intensity_scale(histo.signal)
    x, pads = pad_to_multiple(to_network_input(histo.signal, s), bundle.multiple)
    return from_network_output(crop_padding(net(x), pads), s, valid_mask(histo.signal))


def rel_diff(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.nanmax(np.abs(a - ref)) / (np.nanmax(ref) - np.nanmin(ref)))


def small_patch(bundle: Any, shape: tuple[int, ...]) -> int:
    """A patch smaller than the input that still leaves cores (several tiles per axis)."""
    m, h = bundle.multiple, bundle.halo
    return int(m * math.ceil((2 * h + max(m, min(shape) // 3)) / m))


def interleaved(fns: list[Callable[[], Any]], repeats: int) -> tuple[list[float], list[float]]:
    """Fastest and median seconds of each function, run in turns after one warm-up call each.

    The fastest run is the one least disturbed by other processes (this machine's cores are
    shared), so rates are computed from it; medians are reported alongside.
    """
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return [float(np.min(t)) for t in times], [float(np.median(t)) for t in times]


def timed(fn: Callable[[], Any], repeats: int) -> float:
    """Fastest of ``repeats`` runs after one warm-up run, in seconds."""
    fn()  # warm-up (session creation, first-shape allocations)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.min(times))


def tile_check_3d(bundle3: Any, shape: tuple[int, ...], folder: Path) -> dict[str, Any]:
    """Tiled vs whole on a 3D input; with a reduced-depth variant if the halo is too wide."""
    from mantid_exp2sim.inference import OnnxBackend, translate

    bundle, note = bundle3, "bundle"
    if small_patch(bundle, shape) >= min(shape):
        config = dict(bundle.manifest["architecture"]["config"])
        while small_patch(bundle, shape) >= min(shape) and config.get("n_blocks", 6) > 0:
            config["n_blocks"] = config.get("n_blocks", 6) - 1
            bundle = write_random_bundle(folder / f"tilecheck3d_{config['n_blocks']}.exp2sim.h5", config, seed=33)
        note = f"reduced variant (n_blocks={config['n_blocks']}): the bundle's halo {bundle3.halo} leaves no core in {shape}"
    net = OnnxBackend(bundle.onnx_bytes(), device="cpu")
    h = spectrum_like(shape, seed=3)
    patch = small_patch(bundle, shape)
    out = translate(h, bundle, backend=net, patch_size=patch, conserve_intensity=False)
    return {"diff": rel_diff(out.signal, whole_input(h, bundle, net)), "patch": patch,
            "n_tiles": out.metadata["n_tiles"], "halo": bundle.halo, "architecture": note}


_LAUNCHER = """
import json, os, subprocess, sys
proc = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdout=subprocess.PIPE, text=True)
out = proc.stdout.read()
_, status, usage = os.wait4(proc.pid, 0)
print(json.dumps({"status": os.waitstatus_to_exitcode(status), "ru_maxrss_kib": usage.ru_maxrss, "out": out}))
"""


def rss_child(bundle_path: Path, src: Path, dst: Path, threads: int | None) -> dict[str, Any]:
    """translate_file in a fresh process (ONNX Runtime only, no torch) and its peak RSS.

    The peak is ``ru_maxrss`` of that process from ``os.wait4``. Linux carries ``ru_maxrss``
    over ``exec`` from the forking process, so the worker is started by a small launcher
    process rather than by this one (which holds torch and large arrays); the worker's own
    ``VmHWM`` (/proc/self/status) is reported as a cross-check.
    """
    code = (
        "import json, sys, time\n"
        "from mantid_exp2sim.inference import OnnxBackend, translate_file\n"
        "from mantid_exp2sim.bundle import load_bundle\n"
        f"b = load_bundle({str(bundle_path)!r})\n"
        f"net = OnnxBackend(b.onnx_bytes(), device='cpu', threads={threads!r})\n"
        "t = time.perf_counter()\n"
        "tiles = []\n"
        f"translate_file({str(src)!r}, {str(dst)!r}, b, backend=net, progress=lambda d, n: tiles.append(n))\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')]\n"
        "print(json.dumps({'seconds': time.perf_counter() - t, 'n_tiles': tiles[-1], 'torch': 'torch' in sys.modules,\n"
        "                  'vmhwm_kib': int(hwm[0].split()[1]) if hwm else None}))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    res = subprocess.run([sys.executable, "-c", _LAUNCHER, code], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"launcher failed:\n{res.stderr}")
    report = json.loads(res.stdout.strip().splitlines()[-1])
    if report["status"] != 0:
        raise RuntimeError(f"translate_file child failed (exit {report['status']}):\n{res.stderr}")
    info = json.loads(report["out"].strip().splitlines()[-1])
    info["peak_rss_mb"] = report["ru_maxrss_kib"] / 1024.0
    info["vmhwm_mb"] = None if info["vmhwm_kib"] is None else info.pop("vmhwm_kib") / 1024.0
    return info


def gpu_rates(bundle2: Any, quick: bool) -> dict[str, float | None]:
    out: dict[str, float | None] = {"mpx_per_s_gpu_fp32": None, "mpx_per_s_gpu_fp16": None}
    try:
        import torch
    except ImportError:
        return out
    if not torch.cuda.is_available():
        return out
    from mantid_exp2sim.inference import TorchBackend, translate

    h = spectrum_like((2048, 2048) if quick else (4096, 4096), seed=7)
    for key, half in (("mpx_per_s_gpu_fp32", False), ("mpx_per_s_gpu_fp16", True)):
        net = TorchBackend(bundle2.build_torch_model(), device="gpu", half=half)

        def run():
            translate(h, bundle2, backend=net)
            torch.cuda.synchronize()

        out[key] = h.signal.size / timed(run, 3) / 1e6
    return out


# -------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized inputs (the memory check uses 128^3)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for both backends (default: all)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repetitions (the fastest gives the rates; medians are reported too)")
    parser.add_argument("--skip-rss", action="store_true", help="skip the streamed-volume memory check")
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 7)

    import torch

    from mantid_exp2sim.inference import InferenceBackend, OnnxBackend, TorchBackend, translate
    from mantid_exp2sim.inference.engine import model_spec, resolve_patch, plan_for
    from mantid_exp2sim.io import save_histogram
    from mantid_exp2sim.models.normalisation import intensity_scale, to_network_input

    if args.threads:
        torch.set_num_threads(args.threads)
    result: dict[str, Any] = {"quick": bool(args.quick), "machine": platform.processor() or platform.machine(),
                              "cpu_count": os.cpu_count(), "threads": args.threads}
    with tempfile.TemporaryDirectory(prefix="bench_inference_") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        bundles, source = get_bundles(folder)
        result["bundle_source"] = source
        result["architecture_2d"] = bundles[2].manifest["architecture"]["config"]
        result["architecture_3d"] = bundles[3].manifest["architecture"]["config"]
        result["halo_2d"], result["halo_3d"] = bundles[2].halo, bundles[3].halo
        print(f"bundles: {source} ({time.perf_counter() - t0:.1f} s)", flush=True)

        onnx2 = OnnxBackend(bundles[2].onnx_bytes(), device="cpu", threads=args.threads)
        torch2 = TorchBackend(bundles[2].build_torch_model(), device="cpu")

        # ---- exactness of tiling
        h2 = spectrum_like((300, 500), seed=2)
        patch2 = small_patch(bundles[2], h2.shape)
        tiled = translate(h2, bundles[2], backend=onnx2, patch_size=patch2, conserve_intensity=False)
        result["tile_vs_whole_max_abs_diff_2d"] = rel_diff(tiled.signal, whole_input(h2, bundles[2], onnx2))
        result["tile_check_2d"] = {"shape": list(h2.shape), "patch": patch2, "n_tiles": tiled.metadata["n_tiles"],
                                   # the network is far from the identity, so equality is not trivial
                                   "output_vs_input_change": rel_diff(tiled.signal, h2.signal)}
        check3 = tile_check_3d(bundles[3], (96, 80, 72), folder)
        result["tile_vs_whole_max_abs_diff_3d"] = check3.pop("diff")
        result["tile_check_3d"] = {"shape": [96, 80, 72], **check3}
        print(f"tiled vs whole: 2D {result['tile_vs_whole_max_abs_diff_2d']:.2e}, "
              f"3D {result['tile_vs_whole_max_abs_diff_3d']:.2e} of the output range", flush=True)

        # ---- backends agree
        a = translate(h2, bundles[2], backend=onnx2)
        b = translate(h2, bundles[2], backend=torch2)
        result["onnx_vs_torch_max_abs_diff"] = rel_diff(a.signal, b.signal)
        result["onnx_vs_torch_max_abs_diff_absolute"] = float(np.nanmax(np.abs(a.signal - b.signal)))
        print(f"ONNX vs torch: {result['onnx_vs_torch_max_abs_diff']:.2e} of the output range", flush=True)

        # ---- CPU speed: whole pipeline vs the bare network on the tile the pipeline used
        spec = model_spec(bundles[2])
        patch = resolve_patch(None, spec, "cpu")
        plan = plan_for(h2.shape, spec, patch)
        result["default_patch_cpu"] = {"2d": list(patch), "3d": list(resolve_patch(None, model_spec(bundles[3]), "cpu"))}
        npx = h2.signal.size
        # the bare network on the pipeline's tile, fed the same data the pipeline feeds it
        x = to_network_input(h2.signal, intensity_scale(h2.signal))
        x = np.pad(x, [(0, 0), (0, 0)] + [(0, max(0, t - n)) for t, n in zip(plan.tile_shape, h2.shape)], mode="edge")
        x = np.ascontiguousarray(x[(slice(None), slice(None)) + tuple(slice(0, t) for t in plan.tile_shape)])
        # interleaved runs, so that load from other processes hits all three alike
        (t_onnx, t_torch, t_model), medians = interleaved(
            [lambda: translate(h2, bundles[2], backend=onnx2), lambda: translate(h2, bundles[2], backend=torch2),
             lambda: onnx2(x)], repeats)
        result["timing"] = {"statistic": f"fastest of {repeats} interleaved runs",
                            "median_seconds": dict(zip(("pipeline_onnx", "pipeline_torch", "model_only"), medians)),
                            "fastest_seconds": {"pipeline_onnx": t_onnx, "pipeline_torch": t_torch, "model_only": t_model},
                            "pipeline_overhead_from_medians": 1.0 - medians[2] / medians[0]
                            * (float(np.prod(h2.shape)) / float(np.prod(plan.tile_shape)))}
        # the pipeline's own work, measured with a network that returns at once
        class Instant(InferenceBackend):
            name, device, precision = "onnx", "cpu", "fp32"

            def __call__(self, batch: np.ndarray) -> np.ndarray:
                return np.ascontiguousarray(batch[:, :1])

        t_rest = timed(lambda: translate(h2, bundles[2], backend=Instant()), repeats)
        result["timing"]["pipeline_without_network_seconds"] = t_rest
        result["timing"]["share_outside_network"] = t_rest / t_onnx
        result["kpx_per_s_onnx_cpu"] = npx / t_onnx / 1e3
        result["kpx_per_s_torch_cpu"] = npx / t_torch / 1e3
        result["model_only_kpx_per_s_cpu"] = float(np.prod(plan.tile_shape)) / t_model / 1e3
        result["pipeline_overhead"] = 1.0 - result["kpx_per_s_onnx_cpu"] / result["model_only_kpx_per_s_cpu"]
        result["pipeline_input_2d"] = {"shape": list(h2.shape), "tile": list(plan.tile_shape), "n_tiles": plan.n_tiles}
        print(f"CPU: pipeline ONNX {result['kpx_per_s_onnx_cpu']:.0f} kpx/s, torch {result['kpx_per_s_torch_cpu']:.0f} "
              f"kpx/s, network alone {result['model_only_kpx_per_s_cpu']:.0f} kpx/s "
              f"(overhead {100 * result['pipeline_overhead']:.1f}%)", flush=True)

        # a 2D input larger than the default tile: the halo overhead of several tiles
        big = spectrum_like((1200, 1600) if args.quick else (2000, 2400), seed=4)
        plan_big = plan_for(big.shape, spec, patch)
        t_big = timed(lambda: translate(big, bundles[2], backend=onnx2), 1 if args.quick else 2)
        rate_big = big.signal.size / t_big / 1e3
        result["large_2d"] = {"shape": list(big.shape), "tile": list(plan_big.tile_shape), "n_tiles": plan_big.n_tiles,
                              "tile_efficiency": plan_big.efficiency, "kpx_per_s_onnx_cpu": rate_big,
                              "pipeline_overhead": 1.0 - rate_big / result["model_only_kpx_per_s_cpu"]}
        print(f"CPU, {big.shape}: {rate_big:.0f} kpx/s over {plan_big.n_tiles} tiles "
              f"(tile efficiency {plan_big.efficiency:.2f})", flush=True)

        # ---- memory of a streamed volume
        result["peak_rss_mb_256cubed"] = None
        if not args.skip_rss:
            n = 128 if args.quick else 256
            vol = spectrum_like((n, n, n), seed=5, masked=0.02)
            src = save_histogram(vol, folder / "volume_in.h5")
            del vol
            info = rss_child(bundles[3].path, src, folder / "volume_out.h5", args.threads)
            key = "peak_rss_mb_256cubed" if n == 256 else "peak_rss_mb_128cubed"
            result[key] = info["peak_rss_mb"]
            result["streamed_volume"] = {"shape": [n] * 3, "seconds": info["seconds"], "n_tiles": info["n_tiles"],
                                         "torch_imported": info["torch"], "vmhwm_mb": info["vmhwm_mb"],
                                         "kvox_per_s": n**3 / info["seconds"] / 1e3}
            print(f"streamed {n}^3: peak RSS {info['peak_rss_mb']:.0f} MB, {info['seconds']:.0f} s, "
                  f"{info['n_tiles']} tiles", flush=True)

        # ---- GPU
        result.update(gpu_rates(bundles[2], args.quick))
        result["peak_rss_mb_parent"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps(result, sort_keys=True))
    return result


if __name__ == "__main__":
    main()
