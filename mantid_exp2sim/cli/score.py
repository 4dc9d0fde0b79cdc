"""``exp2sim score``: domain-of-applicability score of spectra against a generator's training data.

Each input file (SaveMD ``.nxs``, ``.npy``, ``.npz``, ``.h5``; 2D or 3D) is scored on its own
against the reference bank of the deconvolution generator for its dimensionality (or
``--model``). Prints one line per input, or with ``--json`` one JSON object per line with
``input``, ``mean``, ``std``, ``p5``, ``p50``, ``p95``, ``zone``, ``thresholds`` and
``bundle_id``; a file that fails is one line on stderr and the others still run. ``--plot FILE``
draws the distance distributions with the zone bands (needs matplotlib); the path, its
extension and matplotlib are checked before any work, and an existing file is replaced only
with ``--overwrite``. Exit status: 0 when every input was scored, 1 when any failed, 2 for
invalid arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from ._plot_option import PLOT_EXTENSIONS, plot_problems
from .._console import failure_line

__all__ = ["PLOT_EXTENSIONS", "get_parser", "main"]


def get_parser() -> argparse.ArgumentParser:
    """The ``exp2sim score`` argument parser."""
    p = argparse.ArgumentParser(
        prog="exp2sim score",
        description="How close is each spectrum to the training data of the Exp2SimGAN generator? "
        "Exact optimal-transport distances between encoder features and a reference bank, with a "
        "trustworthy / expert opinion / untrustworthy zone.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="histogram files (2D or 3D)")
    p.add_argument("--model", metavar="BUNDLE",
                   help="generator bundle with a reference bank (default: the shipped deconvolution model "
                   "for each input's dimensionality)")
    p.add_argument("--reference-samples", type=int, default=20, metavar="N",
                   help="reference samples per repeat (default 20)")
    p.add_argument("--repeats", type=int, default=1000, metavar="N", help="random draws (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    p.add_argument("--backend", choices=["auto", "onnx", "torch"], default="auto", help="inference engine")
    p.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto", help="where to run")
    p.add_argument("--plot", metavar="FILE",
                   help="save the distance distributions with the zone bands (" + ", ".join(PLOT_EXTENSIONS) + ")")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --plot file")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    return p


def _bundle(cache: dict, ndim: int, model: str | None) -> Any:
    from ..bundle.resolve import score_bundle

    if ndim not in cache:
        try:
            cache[ndim] = score_bundle(ndim, model)
        except Exception as exc:  # noqa: BLE001 - re-raised for every file of this ndim
            cache[ndim] = exc
    if isinstance(cache[ndim], Exception):
        raise cache[ndim]
    return cache[ndim]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``exp2sim score``; returns the exit status."""
    args = get_parser().parse_args(argv)
    prefix = "exp2sim score"
    if args.reference_samples < 1 or args.repeats < 1 or args.seed < 0:
        print(f"{prefix}: error: --reference-samples and --repeats must be >= 1, --seed >= 0", file=sys.stderr)
        return 2
    if args.plot:
        problems = plot_problems(args.plot, [*args.inputs, args.model], overwrite=args.overwrite)
        if problems:
            for line in problems:
                print(f"{prefix}: error: {line}", file=sys.stderr)
            return 1
    from ..histogram import network_ndim
    from ..io import load_histogram
    from ..tasks.score import score_histograms

    cache: dict = {}
    failed = 0
    scored: dict[str, Any] = {}
    for text in args.inputs:
        path = Path(text).expanduser()
        try:
            histo = load_histogram(path)
            bundle = _bundle(cache, network_ndim(histo.shape), args.model)
            (res,) = score_histograms(
                [histo], bundle, n_reference=args.reference_samples, repeats=args.repeats, seed=args.seed,
                backend=args.backend, device=args.device,
            )
        except Exception as exc:  # noqa: BLE001 - one line per failed file, the others go on
            print(f"{prefix}: {path}: {failure_line(exc)}", file=sys.stderr)
            failed += 1
            continue
        scored[path.name] = res
        if args.json:
            print(json.dumps({"input": str(path), **res.to_dict(), "bundle_id": bundle.bundle_id}), flush=True)
        else:
            print(f"{path}: mean {res.mean:.4g} +- {res.std:.3g} -> {res.zone}", flush=True)
    if args.plot and scored:
        try:
            _save_plot(scored, Path(args.plot).expanduser())
        except Exception as exc:  # noqa: BLE001 - one line, no traceback
            print(f"{prefix}: --plot: {failure_line(exc)}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def _save_plot(scored: dict[str, Any], path: Path) -> None:
    """Draw the distance distributions and write them atomically to ``path``."""
    from ..domain.plot import plot_distance_distributions
    from ..io._atomic import atomic_path

    fig = plot_distance_distributions(scored, title="Distance to the training data")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lower().lstrip("."))
