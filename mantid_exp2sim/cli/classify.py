"""``exp2sim classify``: Goodenough or Dimer? DUQ classification of PCSMO spectra from files.

Inputs are histogram files (SaveMD ``.nxs``, ``.npy``, ``.npz``, ``.h5``): either 240x400
mosaics (each classified on its own) or 3D (Qh, Qk, DeltaE) volumes, one per incident energy,
which together make one mosaic (their Ei from ``--ei`` or from the files' metadata ``Ei``).
Prints one line per classified mosaic, or with ``--json`` one JSON object per line with
``input``, ``K`` (kernel value per class), ``prediction``, ``verdict``, ``thresholds`` and
``provenance``. A file that cannot be read or classified is reported in one line and the
others still run. ``--activation-map`` is checked before any work: it must not be an input,
its directory must exist, and an existing file is replaced only with ``--overwrite``. Exit
status: 0 when every input was classified, 1 when any failed, 2 for invalid arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from ..errors import Exp2SimError
from ..io.output_paths import PlannedOutput, output_path_problems
from .._console import failure_line

__all__ = ["get_parser", "main"]


def get_parser() -> argparse.ArgumentParser:
    """The ``exp2sim classify`` argument parser."""
    p = argparse.ArgumentParser(
        prog="exp2sim classify",
        description="Classify PCSMO spectra as Goodenough or Dimer spin-wave model (DUQ classifier with "
        "calibrated confident / uncertain / out-of-distribution verdicts).",
        epilog="Inputs: 240x400 mosaics in the pcsmo-mosaic-v1 layout (one result each), or 3D "
        "(Qh, Qk, DeltaE) volumes, one per incident energy 25, 35, 50, 70, 100, 140 meV (one result "
        "for all of them).",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="mosaic files, or one volume file per Ei")
    p.add_argument("--ei", type=float, nargs="+", metavar="MEV",
                   help="incident energy of each volume, in input order (default: the files' metadata Ei)")
    p.add_argument("--deconvolve", action="store_true",
                   help="remove the instrument resolution with the 2D deconvolution generator first")
    p.add_argument("--model", metavar="BUNDLE", help="classifier bundle (default: the shipped classify_2d; with --deconvolve "
                   "classify_deconvolved_2d)")
    p.add_argument("--deconvolution-model", metavar="BUNDLE",
                   help="2D deconvolution bundle for --deconvolve (default: the shipped deconvolve_2d)")
    p.add_argument("--backend", choices=["auto", "onnx", "torch"], default="auto", help="inference engine")
    p.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto", help="where to run")
    p.add_argument("--activation-map", metavar="FILE",
                   help="write the Grad-CAM map of the predicted class to FILE (.nxs/.npz/.h5/.npy; "
                   "one mosaic only; needs PyTorch)")
    p.add_argument("--no-domain-check", dest="domain_check", action="store_false",
                   help="do not fold the input's domain-applicability zone into the verdict")
    p.add_argument("--domain-model", metavar="BUNDLE",
                   help="generator bundle for the domain check (default: the shipped convolve_2d, or "
                   "deconvolve_2d with --deconvolve)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --activation-map file")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    return p


def _groups(loaded: list[tuple[Path, Any]], ei: list[float] | None, n_inputs: int):
    """Group the loaded inputs: one group per mosaic, or one group of all volumes.

    Returns ``(groups, incomplete)``: ``incomplete`` is a message when volumes were given but
    some of the files could not be read (the mosaic needs them all), else "".
    """
    dims = [len(h.non_integrated_dims()) for _, h in loaded]
    if not loaded:
        return [], ""
    if all(d == 3 for d in dims):
        label = ",".join(str(p) for p, _ in loaded)
        if len(loaded) < n_inputs:
            return [], (
                f"{label}: not classified: {n_inputs - len(loaded)} of the {n_inputs} volume file(s) could not "
                "be read (see above), and the volumes of all incident energies make one mosaic together"
            )
        return [(label, [h for _, h in loaded], ei)], ""
    if all(d == 2 for d in dims):
        if ei:
            raise ValueError("--ei applies to 3D volumes only; the inputs are 2D mosaics")
        return [(str(p), [h], None) for p, h in loaded], ""
    raise ValueError(
        f"the inputs have {dims} dimensions with more than one bin; give 2D mosaics or 3D "
        "(Qh, Qk, DeltaE) volumes, not a mix"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``exp2sim classify``; returns the exit status."""
    args = get_parser().parse_args(argv)
    prefix = "exp2sim classify"
    from ..bundle.resolve import classifier_bundle, generator_bundle, resolve_bundle, score_bundle
    from ..tasks.classify import classify
    from ..io import SUPPORTED_EXTENSIONS, load_histogram

    paths = [Path(p).expanduser() for p in args.inputs]
    if args.activation_map:
        problems = output_path_problems(
            [PlannedOutput(args.activation_map, "the --activation-map", SUPPORTED_EXTENSIONS)],
            [*paths, args.model, args.deconvolution_model, args.domain_model],
            overwrite=args.overwrite,
        )
        if problems:
            for line in problems:
                print(f"{prefix}: error: {line}", file=sys.stderr)
            return 1
    failed = 0
    loaded: list[tuple[Path, Any]] = []
    for path in paths:  # a file that cannot be read is one line; the others still run
        try:
            loaded.append((path, load_histogram(path)))
        except Exception as exc:  # noqa: BLE001 - reported in one line, the batch goes on
            print(f"{prefix}: {path}: {failure_line(exc)}", file=sys.stderr)
            failed += 1
    try:
        groups, incomplete = _groups(loaded, args.ei, len(paths))
        if incomplete:
            print(f"{prefix}: {incomplete}", file=sys.stderr)
            failed += 1
        if args.activation_map and len(groups) + failed != 1:
            raise ValueError("--activation-map needs exactly one mosaic")
        if not groups:
            return 1
        bundle = classifier_bundle(args.model, deconvolved=args.deconvolve)
        deconv = None
        if args.deconvolve:
            deconv = generator_bundle("deconvolve", 2, args.deconvolution_model)
        elif args.deconvolution_model:
            deconv = resolve_bundle(args.deconvolution_model)
        domain_model = None
        if args.domain_check and args.domain_model:
            domain_model = score_bundle(2, args.domain_model)
    except Exception as exc:  # noqa: BLE001 - one line, no traceback
        print(f"{prefix}: error: {failure_line(exc)}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) and not isinstance(exc, Exp2SimError) else 1
    for label, items, ei in groups:
        try:
            res = classify(
                items, bundle, ei=ei, deconvolve=args.deconvolve, deconvolution_bundle=deconv,
                backend=args.backend, device=args.device, activation_map=bool(args.activation_map),
                domain_check=args.domain_check, domain_bundle=domain_model,
            )
            if args.activation_map:
                from ..io import save_histogram

                save_histogram(res.activation_map, Path(args.activation_map).expanduser())
        except Exception as exc:  # noqa: BLE001 - one line per failed mosaic, the others go on
            print(f"{prefix}: {label}: {failure_line(exc)}", file=sys.stderr)
            failed += 1
            continue
        if args.json:
            print(json.dumps({"input": label, **res.to_dict()}), flush=True)
        else:
            ks = ", ".join(f"{c} {v:.4f}" for c, v in res.K.items())
            zone = f"; domain {res.domain['zone']} (mean {res.domain['mean']:.4g})" if res.domain else ""
            print(f"{label}: {res.prediction} ({res.verdict}); K: {ks}{zone}", flush=True)
    return 1 if failed else 0
