"""``exp2sim fit``: fit spin-wave models to a measured mosaic and say which fits better.

The input file (SaveMD ``.nxs``, ``.npy``, ``.npz``, ``.h5``) holds a 240x400 mosaic (NaN =
masked); its errors are used when present, else estimated from the counts. Every model of
``--models`` (default both PCSMO models) is fitted (:func:`mantid_exp2sim.tasks.fit.fit_spin_models`)
with the parameters of ``--fix NAME=VALUE`` held in every model that has them. Prints each
model's parameters with errors and the comparison, or with ``--json`` one JSON object
(``input``, ``models``: each ``FitResult.to_dict()``, ``comparison``, ``preferred``,
``statement``). A failure is one line on stderr. Exit status: 0 on success, 1 when the fit
failed, 2 for invalid arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from .._console import failure_line

__all__ = ["get_parser", "main"]


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
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``exp2sim fit``; returns the exit status."""
    args = get_parser().parse_args(argv)
    prefix = "exp2sim fit"
    if (args.starts is not None and args.starts < 0) or args.seed < 0:
        print(f"{prefix}: error: --starts and --seed must be >= 0", file=sys.stderr)
        return 2
    from ..io import load_histogram
    from ..tasks.fit import fit_spin_models, parse_fixed

    path = Path(args.input).expanduser()
    try:
        fixed = parse_fixed(args.fix)
        histo = load_histogram(path)
        out = fit_spin_models(histo, args.models, fixed=fixed, n_sobol=args.starts, seed=args.seed)
    except Exception as exc:  # noqa: BLE001 - one line, no traceback
        print(f"{prefix}: {path}: {failure_line(exc)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"input": str(path), **out.to_dict()}), flush=True)
    else:
        for r in out.results:
            print(r.summary())
        print(out.comparison.statement, flush=True)
    return 0
