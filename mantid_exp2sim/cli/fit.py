"""``exp2sim fit``: fit spin-wave models to a measured mosaic and say which fits better.

The input file (SaveMD ``.nxs``, ``.npy``, ``.npz``, ``.h5``) holds a 240x400 mosaic (NaN =
masked); its errors are used when present, else estimated from the counts. Every model of
``--models`` (default both PCSMO models) is fitted (:func:`mantid_exp2sim.tasks.fit.fit_spin_models`)
with the parameters of ``--fix NAME=VALUE`` held in every model that has them. Prints each
model's parameters with errors and the comparison, or with ``--json`` one JSON object
(``input``, ``models``: each ``FitResult.to_dict()``, ``comparison``, ``preferred``,
``statement``, ``network``). A failure is one line on stderr. Exit status: 0 on success, 1
when the fit failed, 2 for invalid arguments.

Parameter-estimation networks: every fit also starts from the model's network estimate
(the shipped ``regress_<model>`` bundle, or ``--network MODEL=BUNDLE``; ``--no-network`` turns
this off). ``--network-only`` runs the networks alone, no fit: each model's estimated
parameters with calibrated 1-sigma errors and the model choice at those estimates (only
the per-Ei scale and background solved).

``--plot FILE`` (``.png``, ``.pdf``, ``.svg``, ...; needs matplotlib) draws the data, each
model's best fit and residual per Ei and the parameter correlations; the path, its extension
and matplotlib are checked before any work, and an existing file is replaced only with
``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from .._console import failure_line
from ._plot_option import PLOT_EXTENSIONS, plot_problems

__all__ = ["PLOT_EXTENSIONS", "get_parser", "main"]


def get_parser() -> argparse.ArgumentParser:
    """The ``exp2sim fit`` argument parser."""
    p = argparse.ArgumentParser(
        prog="exp2sim fit",
        description="Fit spin-wave models (weighted least squares through the simulator, per-Ei scale and "
        "background) to a measured 240x400 mosaic, with errors, and compare them by chi-square, AIC and BIC.",
    )
    p.add_argument("input", metavar="FILE", help="a 240x400 mosaic (.nxs, .npy, .npz, .h5)")
    p.add_argument("--models", nargs="+", default=["goodenough", "dimer"], metavar="MODEL",
                   help="spin models to fit (default: goodenough dimer)")
    p.add_argument("--fix", nargs="+", action="extend", default=[], metavar="NAME=VALUE",
                   help="hold parameters fixed (in every model that has them)")
    p.add_argument("--starts", type=int, default=None, metavar="N",
                   help="Sobol starts per model (default: the engine's, 24)")
    p.add_argument("--seed", type=int, default=0, help="seed of the start design (default 0)")
    p.add_argument("--network", nargs="+", action="extend", default=[], metavar="MODEL=BUNDLE",
                   help="parameter-estimation network of a model (default: the shipped regress_<model> bundle)")
    p.add_argument("--no-network", action="store_true", help="do not start the fits from the networks' estimates")
    p.add_argument("--no-refine-errors", action="store_true",
                   help="keep the errors estimated from the counts (default: for an input without errors, "
                   "re-estimate them from the best fit's residuals and refit; docs/fitting.md)")
    p.add_argument("--network-only", action="store_true",
                   help="no fit: the networks' estimates with errors, and the model choice at them")
    p.add_argument("--plot", metavar="FILE",
                   help="save data, best fit and residual per Ei and the parameter correlations ("
                   + ", ".join(PLOT_EXTENSIONS) + ")")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --plot file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def _networks(items: Sequence[str]) -> dict[str, str]:
    from ..errors import InputDataError, format_error

    out: dict[str, str] = {}
    for item in items:
        model, sep, path = item.partition("=")
        if not sep or not model.strip() or not path.strip():
            raise InputDataError(format_error(f"--network {item!r} is invalid", reason="expected MODEL=BUNDLE",
                                              fix="e.g. --network dimer=regress_dimer.exp2sim.h5"))
        out[model.strip()] = path.strip()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``exp2sim fit``; returns the exit status."""
    args = get_parser().parse_args(argv)
    prefix = "exp2sim fit"
    if (args.starts is not None and args.starts < 0) or args.seed < 0:
        print(f"{prefix}: error: --starts and --seed must be >= 0", file=sys.stderr)
        return 2
    if args.no_network and (args.network or args.network_only):
        print(f"{prefix}: error: --no-network cannot be combined with --network or --network-only", file=sys.stderr)
        return 2
    if args.plot:
        problems = plot_problems(args.plot, [args.input, *[t.partition("=")[2] for t in args.network]],
                                 overwrite=args.overwrite)
        if problems:
            for line in problems:
                print(f"{prefix}: error: {line}", file=sys.stderr)
            return 1
    from ..io import load_histogram
    from ..tasks.fit import estimate_parameters, fit_spin_models, network_model_choice, parse_fixed

    path = Path(args.input).expanduser()
    try:
        networks = _networks(args.network)
        fixed = parse_fixed(args.fix)
        histo = load_histogram(path)
        if args.network_only:
            estimates = estimate_parameters(histo, args.models, networks=networks)
            results, comparison = network_model_choice(histo, estimates)
            payload = {"input": str(path), "network": {m: e.to_dict() for m, e in estimates.items()},
                       "models": [r.to_dict() for r in results], "comparison": comparison.to_dict(),
                       "preferred": comparison.preferred, "statement": comparison.statement}
        else:
            out = fit_spin_models(histo, args.models, fixed=fixed, n_sobol=args.starts, seed=args.seed,
                                  networks=networks, use_network=not args.no_network,
                                  refine_errors=not args.no_refine_errors)
            results, comparison = out.results, out.comparison
            payload = {"input": str(path), **out.to_dict()}
        if args.plot:
            _save_plot(histo, results, Path(args.plot).expanduser(), title=f"{path.name}: {comparison.statement}")
    except Exception as exc:  # noqa: BLE001 - one line, no traceback
        print(f"{prefix}: {path}: {failure_line(exc)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(payload), flush=True)
    else:
        if args.network_only:
            for m, e in payload["network"].items():
                print(f"{m} (network {e['bundle_id']}): " + ", ".join(
                    f"{k} = {v:.4g} +/- {e['errors'][k]:.2g}" for k, v in e["parameters"].items()))
        else:
            for r in results:
                print(r.summary())
        print(comparison.statement, flush=True)
    return 0


def _save_plot(histo: object, results: Sequence[object], path: Path, *, title: str) -> None:
    """Draw the fit figure (:func:`mantid_exp2sim.fitting.plot.plot_fit`) and write it atomically."""
    import numpy as np

    from ..fitting.plot import plot_fit
    from ..io._atomic import atomic_path
    from ..mosaic import EI_LIST

    fig = plot_fit(np.asarray(histo.signal, dtype=float), results, ei_list=EI_LIST, title=title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lower().lstrip("."), dpi=110)
