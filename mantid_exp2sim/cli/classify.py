"""``exp2sim classify``: Goodenough or Dimer? DUQ classification of PCSMO spectra from files.

Inputs are histogram files (SaveMD ``.nxs``, ``.npy``, ``.npz``, ``.h5``): either 240x400
mosaics (each classified on its own) or 3D (Qh, Qk, DeltaE) volumes, one per incident energy,
which together make one mosaic (their Ei from ``--ei`` or from the files' metadata ``Ei``).
Prints one line per classified mosaic, or with ``--json`` one JSON object per line with
``input``, ``K`` (kernel value per class), ``prediction``, ``verdict``, ``thresholds`` and
``provenance``. Exit status: 0 when every input was classified, 1 when any failed, 2 for
invalid arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from ..errors import Exp2SimError

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
    p.add_argument("--model", metavar="BUNDLE", help="classifier bundle (default: the shipped classify_2d)")
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
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    return p


def _groups(paths: list[Path], ei: list[float] | None):
    """Load the inputs and group them: one group per mosaic, or one group of all volumes."""
    from ..io import load_histogram

    histos = [load_histogram(p) for p in paths]
    dims = [len(h.non_integrated_dims()) for h in histos]
    if all(d == 3 for d in dims):
        return [(",".join(str(p) for p in paths), histos, ei)]
    if all(d == 2 for d in dims):
        if ei:
            raise ValueError("--ei applies to 3D volumes only; the inputs are 2D mosaics")
        return [(str(p), [h], None) for p, h in zip(paths, histos)]
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

    try:
        groups = _groups([Path(p).expanduser() for p in args.inputs], args.ei)
        if args.activation_map and len(groups) != 1:
            raise ValueError("--activation-map needs exactly one mosaic")
        bundle = classifier_bundle(args.model)
        deconv = None
        if args.deconvolve:
            deconv = generator_bundle("deconvolve", 2, args.deconvolution_model)
        elif args.deconvolution_model:
            deconv = resolve_bundle(args.deconvolution_model)
        domain_model = None
        if args.domain_check and args.domain_model:
            domain_model = score_bundle(2, args.domain_model)
    except (Exp2SimError, ValueError, OSError) as exc:
        print(f"{prefix}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) and not isinstance(exc, Exp2SimError) else 1
    failed = 0
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
        except (Exp2SimError, ValueError, OSError, RuntimeError) as exc:
            print(f"{prefix}: {label}: {' '.join(str(exc).split())}", file=sys.stderr)
            failed += 1
            continue
        if args.json:
            print(json.dumps({"input": label, **res.to_dict()}), flush=True)
        else:
            ks = ", ".join(f"{c} {v:.4f}" for c, v in res.K.items())
            zone = f"; domain {res.domain['zone']} (mean {res.domain['mean']:.4g})" if res.domain else ""
            print(f"{label}: {res.prediction} ({res.verdict}); K: {ks}{zone}", flush=True)
    return 1 if failed else 0
