"""``exp2sim-simulate``: write HDF5 data sets of simulated (convolved, unconvolved) spectra.

Examples::

    exp2sim-simulate --models goodenough dimer --n 1000 --representation mosaic \\
        --seed 0 --workers 2 --output pcsmo_mosaic.h5
    exp2sim-simulate --models goodenough --n 200 --representation volume --ei 70 \\
        --bins 64 64 64 --resolution tables:/data/pcsmo --output vol.h5
    exp2sim-simulate --models goodenough dimer --output pcsmo_mosaic.h5 --resume
    exp2sim-simulate --models goodenough dimer --n 500 --measured-like --seed 1 \\
        --workers 2 --output pcsmo_measured_like.h5
    exp2sim-simulate --models goodenough dimer --n 200 --measured-like --count-level 0.25 \\
        --seed 9 --output shift_counts_x0.25.h5

Running again on an existing file appends ``--n`` more samples per model (the settings must
match); ``--resume`` finishes an interrupted run instead.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .._console import add_version_option, console_script, failure_line
from .dataset import REPRESENTATIONS, DatasetSpec, write_dataset
from .nuisance_sampling import MeasuredLikeSettings

__all__ = ["get_parser", "main"]

#: argparse names of the options that fix a nuisance of --measured-like.
_MEASURED_LIKE_OPTIONS = ("scale", "count_level", "subtracted_background", "residual_background",
                          "measured_mask_probability", "measured_mask", "twin_fraction", "mosaic",
                          "resolution_scale", "resolution_sampling")


def get_parser() -> argparse.ArgumentParser:
    """The argument parser of ``exp2sim-simulate``."""
    p = argparse.ArgumentParser(
        prog="exp2sim-simulate",
        description="Simulate spin-wave spectra with and without instrument resolution and write "
        "them to an HDF5 data set (one group per model).",
        epilog="Models: registered names (see --list-models; packages register more under the "
        "entry-point group mantid_exp2sim.spin_models) or 'package.module:ModelClass' naming a model "
        "class or object. Rerunning on an existing file appends --n samples per model with the same "
        "settings. The output's directory must exist; it is never created.",
    )
    p.add_argument("--models", nargs="+", default=None, metavar="MODEL", help="models to simulate (required)")
    p.add_argument("--n", type=int, default=None, help="samples to add per model (required unless --resume)")
    p.add_argument("--representation", choices=REPRESENTATIONS, default="mosaic", help="default: mosaic")
    p.add_argument("--output", default=None, help="output HDF5 file (required)")
    p.add_argument("--ei", type=float, default=None, help="incident energy in meV (not for the mosaic; default 70)")
    p.add_argument("--bins", type=int, nargs="+", default=None,
                   help="bins per dimension: volume 3 (default 64 64 64), slices 2")
    p.add_argument("--energy-range", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                   help="energy transfer range in meV of volumes and Q-E slices (default 0.1-0.7 Ei)")
    p.add_argument("--energy-window", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                   help="energy window in meV of a constant-energy slice (default 0.28-0.34 Ei)")
    p.add_argument("--line", type=float, nargs=4, default=None, metavar=("H0", "K0", "H1", "K1"),
                   help="Q-E slice from (H0, K0) to (H1, K1) in r.l.u. (default -1 0 1 0)")
    p.add_argument("--resolution", default="builtin", help="builtin (default), tables:DIR or unconvolved")
    p.add_argument("--mask", default="kinematic", help="kinematic (default), none, or a .mat/.npy file")
    p.add_argument("--noise-flux", type=float, default=None,
                   help="add Poisson noise: expected counts in a bin of mean intensity (default: no noise)")
    p.add_argument("--background", type=float, default=None,
                   help="add a smooth background of this level relative to the mean signal (default: none)")
    ml = p.add_argument_group(
        "measured-like mode (mosaic only)",
        "Per sample, draw the nuisance parameters around the calibrated PCSMO values (ranges: "
        "mantid_exp2sim.simulate.nuisance_sampling.DEFAULT_RANGES), simulate with the drawn measurement "
        "model and write the measured-like spectrum, the noise-free convolved one (model units) and the "
        "unconvolved one, with the draws. The options below fix one nuisance instead of drawing it.",
    )
    ml.add_argument("--measured-like", action="store_true", help="write a measured-like data set")
    ml.add_argument("--scale", type=float, default=None, metavar="F",
                    help="per-Ei scale: factor (> 0) on the calibrated values, the same for every Ei")
    ml.add_argument("--count-level", type=float, default=None, metavar="F",
                    help="count level: factor (> 0) on the calibrated per-Ei count levels (0.25 = 4x the noise variance)")
    ml.add_argument("--subtracted-background", type=float, default=None, metavar="F",
                    help="subtracted flat background: factor (>= 0) on the calibrated values")
    ml.add_argument("--residual-background", type=float, default=None, metavar="F",
                    help="background left after the subtraction: factor (>= 0) on the calibrated values")
    ml.add_argument("--measured-mask-probability", type=float, default=None, metavar="P",
                    help="probability of the measured detector mask, else the kinematic one (default 0.9)")
    ml.add_argument("--measured-mask", default=None, metavar="FILE",
                    help="measured detector mask (default $EXP2SIM_SHARED/data/pcsmo/nanmask.mat)")
    ml.add_argument("--twin-fraction", type=float, default=None, metavar="T",
                    help="twin (domain) fraction in [0, 1]")
    ml.add_argument("--mosaic", type=float, default=None, metavar="DEG",
                    help="sample mosaic spread, FWHM in degrees (>= 0)")
    ml.add_argument("--resolution-scale", type=float, default=None, metavar="F",
                    help="factor (> 0) on the resolution widths")
    ml.add_argument("--resolution-sampling", type=int, default=None, metavar="N",
                    help="resolution sampling points (>= 0; 0 = linearised widths)")
    p.add_argument("--seed", type=int, default=0, help="base random seed (default 0)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--resume", action="store_true", help="finish an interrupted run instead of appending")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--list-models", action="store_true", help="print the registered model names and exit")
    add_version_option(p)
    return p


@console_script("exp2sim-simulate")  # usage errors return 2 (mantid_exp2sim._console)
def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (0 success, 1 bad input, 130 interrupted)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = get_parser()
    args = parser.parse_args(args_list)
    if args.list_models:
        from .spin_models import list_models

        print("\n".join(list_models()))
        return 0
    missing = [flag for flag, v in (("--models", args.models), ("--output", args.output)) if v is None]
    if args.n is None and not args.resume:
        missing.append("--n")
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    fixed = {name: getattr(args, name) for name in _MEASURED_LIKE_OPTIONS if getattr(args, name) is not None}
    if fixed and not args.measured_like:
        flags = ", ".join("--" + name.replace("_", "-") for name in fixed)
        parser.error(f"{flags} only apply with --measured-like (add it, or leave them out)")
    try:
        measured_like = None
        if args.measured_like:
            fixed["background"] = fixed.pop("subtracted_background", None)
            measured_like = MeasuredLikeSettings(**fixed)
        spec = DatasetSpec(
            representation=args.representation,
            resolution=args.resolution,
            mask=args.mask,
            ei=args.ei,
            bins=None if args.bins is None else tuple(args.bins),
            energy_range=None if args.energy_range is None else tuple(args.energy_range),
            energy_window=None if args.energy_window is None else tuple(args.energy_window),
            line=None if args.line is None else tuple(args.line),
            noise_flux=args.noise_flux,
            background=args.background,
            measured_like=measured_like,
        )
        done = write_dataset(
            args.output,
            args.models,
            0 if args.n is None else args.n,
            spec,
            seed=args.seed,
            workers=args.workers,
            resume=args.resume,
            progress=not args.quiet,
            command=["exp2sim-simulate", *args_list],
        )
    except KeyboardInterrupt:
        print("exp2sim-simulate: interrupted; rerun with --resume to finish", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line, no traceback (bad input, unwritable paths)
        print(f"exp2sim-simulate: error: {failure_line(exc)}", file=sys.stderr)
        return 1
    if not args.quiet:
        summary = ", ".join(f"{k}: {v}" for k, v in done.items())
        print(f"{args.output}: {summary} samples complete", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
