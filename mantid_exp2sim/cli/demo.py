"""``exp2sim demo``: the end-to-end main job on the shipped default models.

Simulates a PCSMO measurement that looks like the real one: the 240x400 mosaic with the
built-in MAPS resolution and the calibrated measurement model
(``simulate.measurement_model.PCSMO_MEASUREMENT_MODEL``), passed through the calibrated
processing chain of the released data (``simulate.measured_like``: per-Ei scale, counting
noise at the calibrated count level, background subtraction, negative values set to zero,
clip at 120, the measured detector mask when ``$EXP2SIM_SHARED`` holds it, else the
kinematic mask). It writes that "measurement", the clean (noise-free) simulation in the same
units and the unconvolved counterpart as SaveMD ``.nxs`` files, and runs the pipeline
commands on them, as a reduction pipeline would: ``exp2sim deconvolve`` on the measured-like
file and ``exp2sim convolve`` on the unconvolved one (the shipped generators). It then
classifies the measurement before and after deconvolution with the shipped DUQ classifier,
scores its domain of applicability, writes a PNG figure and prints a short report.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import Exp2SimError
from .._console import failure_line
from .translate import get_parser as translate_parser

__all__ = ["DEMO_FILES", "get_parser", "main", "plan_demo", "run_demo"]


def get_parser() -> argparse.ArgumentParser:
    """Parser of ``exp2sim demo``."""
    p = argparse.ArgumentParser(
        prog="exp2sim demo",
        description=(
            "Simulate a PCSMO measurement that looks like the real one (counting noise, background "
            "subtraction, zeros, detector mask) next to the clean simulation and its unconvolved "
            "counterpart, run "
            "'exp2sim deconvolve' and 'exp2sim convolve' on their files, classify the spectrum "
            "before and after deconvolution, score its domain, and write a PNG figure and a report."
        ),
    )
    p.add_argument(
        "--output-dir",
        default="exp2sim-demo",
        help="folder for the results, created if missing (its parent must exist; default: %(default)s)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier demo in that folder")
    p.add_argument(
        "--model",
        default="goodenough",
        choices=["goodenough", "dimer"],
        help="spin-wave model of the simulated 'measurement' (default: %(default)s, the model the PCSMO data favour)",
    )
    p.add_argument("--seed", type=int, default=7, help="seed of the parameter draw and the noise (default: %(default)s)")
    p.add_argument(
        "--published",
        action="store_true",
        help="use the published exchange parameters instead of a random draw from the model's ranges",
    )
    p.add_argument(
        "--count-level",
        type=float,
        default=1.0,
        help="counting statistics: factor (> 0) on the calibrated count levels of the released data "
        "(default: %(default)s; 4 = four times the counts, half the relative noise)",
    )
    p.add_argument(
        "--mask",
        default="measured",
        choices=["measured", "kinematic"],
        help="detector mask of the measurement: the measured one ($EXP2SIM_SHARED/data/pcsmo/nanmask.mat; "
        "the kinematic mask when it is absent) or the kinematic one (default: %(default)s)",
    )
    p.add_argument("--repeats", type=int, default=1000, help="domain-score repeats (default: %(default)s)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG figure (no matplotlib needed)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    return p


def _check_count_level(count_level: float) -> float:
    from ..errors import InputDataError, format_error

    try:
        c = float(count_level)
    except (TypeError, ValueError):
        c = float("nan")
    if not (np.isfinite(c) and c > 0):
        raise InputDataError(format_error(
            "--count-level is invalid", reason=f"got {count_level!r}; need a factor > 0 on the calibrated count levels",
            fix="use 1 (the released data's counting statistics) or e.g. 4 (four times the counts)"))
    return c


def _simulate(model_name: str, *, seed: int, published: bool, count_level: float = 1.0, mask: str = "measured"):
    """``(model, params, measured, clean, truth, chain)``: the measured-like "measurement", the
    clean simulation in the same units (NaN where the measurement is), the unconvolved one
    (model units) and the processing chain used."""
    from dataclasses import replace

    from ..histogram import MDHisto
    from ..simulate import get_model, simulate_mosaic_pair
    from ..simulate.measurement_model import PCSMO_MEASUREMENT_MODEL
    from ..simulate.nuisance_sampling import default_chain

    model = get_model(model_name)
    rng = np.random.default_rng(seed)
    params = np.asarray(model.defaults, dtype=float) if published else model.sample(rng, stable_only=True)
    base = default_chain()
    chain = replace(base, count_level=tuple(count_level * np.asarray(base.count_level)), mask=mask)
    convolved, truth = simulate_mosaic_pair(model, params, rng=rng, **PCSMO_MEASUREMENT_MODEL.simulate_kwargs())
    measured = chain.apply(convolved, rng)
    expected = chain.expected(convolved.signal)
    expected[np.isnan(measured.signal)] = np.nan
    clean = MDHisto(expected, convolved.axes, errors=None,
                    metadata={**convolved.metadata, "kind": "clean", "units": "measured (scale applied, no noise)"})
    return model, params, measured, clean, truth, chain


def _has_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


#: The files of a demo run, by report key.
DEMO_FILES = {
    "measured": "measured.nxs",
    "simulated_clean": "simulated_clean.nxs",
    "simulated_unconvolved": "simulated_unconvolved.nxs",
    "deconvolved": "deconvolved.nxs",
    "convolved": "convolved.nxs",
    "activation_map": "activation_map.nxs",
    "figure": "demo.png",
}


def plan_demo(output_dir: str | Path, *, plot: bool = True, overwrite: bool = False) -> Path:
    """Check, before any work, that the demo can write its folder and files and find its models.

    Parameters
    ----------
    output_dir
        The results folder: created if missing (its parent must exist), never a file.
    plot
        Whether ``demo.png`` (and so matplotlib) is needed.
    overwrite
        Whether the files of an earlier demo in that folder may be replaced.

    Returns
    -------
    Path
        The absolute folder.

    Raises
    ------
    OutputPathError
        A path cannot be written (one line naming every problem and its fix).
    BundleError, MissingDependencyError
        A shipped model, or matplotlib for the figure, is missing.
    """
    from ..bundle import default_bundle_path
    from ..errors import format_error, require
    from ..io import OutputPathError
    from ..io.output_paths import PlannedOutput, check_output_paths

    out = Path(output_dir).expanduser()
    names = [name for key, name in DEMO_FILES.items() if plot or key != "figure"]
    planned = [PlannedOutput(out, "the --output-dir folder", directory=True)]
    planned += [PlannedOutput(out / name, f"the demo's {name}") for name in names]
    check_output_paths(planned, [], overwrite=True)
    earlier = [name for name in names if (out / name).is_file()]
    if earlier and not overwrite:
        raise OutputPathError(
            format_error(
                f"The folder '{out.absolute()}' holds the results of an earlier demo",
                reason=f"{', '.join(earlier)} exist",
                fix="pass --overwrite to replace them, or choose another --output-dir",
            )
        )
    for task, step in (("deconvolve", "exp2sim deconvolve"), ("convolve", "exp2sim convolve"),
                       ("classify", "classification")):
        try:
            default_bundle_path(task, 2)
        except Exp2SimError as exc:
            raise type(exc)(f"the '{step}' step of the demo cannot run: {exc}") from exc
    if plot:
        require("matplotlib", extra="plot", feature="The demo figure (or pass --no-plot)")
    return out.absolute()


def run_demo(
    output_dir: str | Path,
    *,
    model: str = "goodenough",
    seed: int = 7,
    published: bool = False,
    count_level: float = 1.0,
    mask: str = "measured",
    repeats: int = 1000,
    plot: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run the main job and return its report (JSON-safe).

    Parameters
    ----------
    output_dir
        Folder for the ``.nxs`` files and the figure; created if missing (its parent must
        exist). Checked with :func:`plan_demo` before any work.
    model, seed, published, count_level, mask
        The simulated measurement: spin model, seed of the parameter draw and noise,
        published instead of random parameters, factor (> 0) on the calibrated count levels,
        ``"measured"`` or ``"kinematic"`` detector mask.
    repeats
        Repeats of the domain score.
    plot
        Write ``demo.png``.
    overwrite
        Replace the files of an earlier demo in ``output_dir`` (otherwise they are refused).

    Notes
    -----
    When a step fails, the files this run wrote are removed again (and the folder, if this
    run created it), so a failed demo leaves nothing half-done behind.
    """
    count_level = _check_count_level(count_level)
    out = plan_demo(output_dir, plot=plot, overwrite=overwrite)
    created_dir = not out.exists()
    out.mkdir(exist_ok=True)
    before = {p.name for p in out.iterdir()}
    try:
        return _run_demo(out, model=model, seed=seed, published=published, count_level=count_level, mask=mask,
                         repeats=repeats, plot=plot)
    except BaseException:
        for name in DEMO_FILES.values():
            if name not in before:
                (out / name).unlink(missing_ok=True)
        if created_dir and not any(out.iterdir()):
            out.rmdir()
        raise


def _run_demo(
    out: Path, *, model: str, seed: int, published: bool, count_level: float, mask: str, repeats: int, plot: bool
) -> dict[str, Any]:
    from ..tasks.classify import classify
    from ..tasks.score import score_histograms
    from ..io import load_histogram, save_histogram
    from ..train.metrics import masked_psnr

    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    spin_model, params, measured, clean, truth, chain = _simulate(
        model, seed=seed, published=published, count_level=count_level, mask=mask)
    timings["simulate"] = time.perf_counter() - t0

    files = {
        "measured": save_histogram(measured, out / "measured.nxs"),
        "simulated_clean": save_histogram(clean, out / "simulated_clean.nxs"),
        "simulated_unconvolved": save_histogram(truth, out / "simulated_unconvolved.nxs"),
    }
    for task, source, name in (("deconvolve", "measured", "deconvolved"), ("convolve", "simulated_unconvolved", "convolved")):
        t0 = time.perf_counter()
        files[name] = _run_pipeline_command(task, files[source], out / f"{name}.nxs")
        timings[task] = time.perf_counter() - t0
    deconvolved = load_histogram(files["deconvolved"])
    convolved = load_histogram(files["convolved"])

    t0 = time.perf_counter()
    clean_verdict = classify(clean)
    before = classify(measured)
    after = classify(deconvolved, activation_map=_has_torch())
    timings["classify"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    (domain,) = score_histograms([measured], repeats=repeats, seed=seed)
    timings["score"] = time.perf_counter() - t0

    if after.activation_map is not None:
        files["activation_map"] = save_histogram(after.activation_map, out / "activation_map.nxs")
    # the truth in the measurement's units (per-Ei scale), to compare with the deconvolved spectrum
    truth_units = chain.expected(truth.signal)
    if plot:
        from ._demo_figure import demo_figure
        from ..histogram import MDHisto

        files["figure"] = demo_figure(measured, deconvolved, after, domain, out / "demo.png", clean=clean,
                                      truth=MDHisto(truth_units, truth.axes, metadata=truth.metadata))
    finite = np.isfinite(measured.signal)
    report = {
        "model": spin_model.name,
        "parameters": dict(zip(spin_model.parameter_names, map(float, params))),
        "measurement": {
            "count_level_factor": count_level,
            "mask": measured.metadata.get("mask"),
            "chain": chain.describe(),
            "zero_fraction": float(np.mean(measured.signal[finite] == 0.0)) if finite.any() else float("nan"),
            "masked_fraction": float(np.mean(~finite)),
        },
        "classification_clean": clean_verdict.to_dict(),
        "classification_before": before.to_dict(),
        "classification_after": after.to_dict(),
        "domain": domain.to_dict(),
        "psnr_measured_vs_truth": masked_psnr(measured.signal, truth_units),
        "psnr_clean_vs_truth": masked_psnr(clean.signal, truth_units),
        "psnr_deconvolved_vs_truth": masked_psnr(deconvolved.signal, truth_units),
        "integrated_intensity_ratio": float(np.nansum(deconvolved.signal) / np.nansum(measured.signal)),
        # the factor that conserved it (None when not applied); 1 / factor is the network's own ratio
        "deconvolution_intensity_factor": deconvolved.metadata.get("intensity_factor"),
        "deconvolution_bundle": deconvolved.metadata.get("bundle_id"),
        # the network's convolution against the simulator's, both in the measurement's units
        "psnr_convolved_vs_clean": masked_psnr(chain.expected(convolved.signal), clean.signal),
        "convolution_intensity_ratio": float(np.nansum(convolved.signal) / np.nansum(truth.signal)),
        "convolution_intensity_factor": convolved.metadata.get("intensity_factor"),
        "convolution_bundle": convolved.metadata.get("bundle_id"),
        "seconds": {k: round(v, 3) for k, v in timings.items()},
        "files": {k: str(v) for k, v in files.items()},
    }
    return report


def _run_pipeline_command(task: str, source: Path, target: Path) -> Path:
    """``exp2sim TASK SOURCE --output TARGET --overwrite --quiet`` in this process."""
    from .translate import run as run_translate

    args = translate_parser(task).parse_args([str(source), "--output", str(target), "--overwrite", "--quiet"])
    if run_translate(task, args) != 0:
        raise Exp2SimError(f"the 'exp2sim {task}' step failed on {source} (its message is above)")
    return target.absolute()


def _print_report(r: dict[str, Any]) -> None:
    c0, b, a, d = r["classification_clean"], r["classification_before"], r["classification_after"], r["domain"]
    params = ", ".join(f"{k}={v:.3g}" for k, v in r["parameters"].items())
    m = r["measurement"]
    print(f"Simulated measurement: PCSMO {r['model']} model ({params})")
    print(f"  measured-like: count level x{m['count_level_factor']:g} of the released data's, "
          f"{100 * m['zero_fraction']:.0f} % zeros, {100 * m['masked_fraction']:.0f} % masked "
          f"(mask: {str(m['mask']).split(':')[0]})")

    def line(name: str, c: dict[str, Any]) -> str:
        ks = ", ".join(f"K_{k}={v:.3f}" for k, v in c["K"].items())
        zone = f"; input domain {c['domain']['zone']}" if c.get("domain") else ""
        return f"  {name:<22} {c['prediction']:<11} {c['verdict']:<20} ({ks}{zone})"

    def kept(ratio: float, factor: float | None) -> str:
        own = "" if factor is None else f" (conserved; the network alone: {1.0 / factor:.3f})"
        return f"integrated intensity ratio {ratio:.3f}{own}"

    print("Classification:")
    print(line("clean simulation", c0))
    print(line("before deconvolution", b))
    print(line("after deconvolution", a))
    print(
        f"Deconvolution ({r['deconvolution_bundle']}): PSNR vs true unconvolved "
        f"{r['psnr_measured_vs_truth']:.2f} dB -> {r['psnr_deconvolved_vs_truth']:.2f} dB "
        f"(the clean simulation: {r['psnr_clean_vs_truth']:.2f} dB); "
        + kept(r["integrated_intensity_ratio"], r["deconvolution_intensity_factor"])
    )
    print(
        f"Convolution ({r['convolution_bundle']}): PSNR vs the clean simulation "
        f"{r['psnr_convolved_vs_clean']:.2f} dB; "
        + kept(r["convolution_intensity_ratio"], r["convolution_intensity_factor"])
    )
    print(f"Domain of applicability: mean {d['mean']:.4g} +- {d['std']:.3g} -> {d['zone']}")
    print("Time: " + ", ".join(f"{k} {v:.2f} s" for k, v in r["seconds"].items()))
    print("Files:")
    for k, v in r["files"].items():
        print(f"  {k:<22} {v}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``exp2sim demo``; returns the exit status."""
    args = get_parser().parse_args(argv)
    try:
        report = run_demo(
            args.output_dir,
            model=args.model,
            seed=args.seed,
            published=args.published,
            count_level=args.count_level,
            mask=args.mask,
            repeats=args.repeats,
            plot=not args.no_plot,
            overwrite=args.overwrite,
        )
    except Exception as exc:  # noqa: BLE001 - one line, no traceback
        print(f"exp2sim demo: error: {failure_line(exc)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report))
    else:
        _print_report(report)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
