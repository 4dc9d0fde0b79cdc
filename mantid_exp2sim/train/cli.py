"""``exp2sim-train``: train the Exp2SimGAN generators, export them to bundles, train the classifier.

Subcommands::

    exp2sim-train gan --config pcsmo-2d --domain-a sim.h5 --domain-b sim.h5 --out runs/gan2d
    exp2sim-train gan --out runs/gan2d --resume            # continue (same data, same settings)
    exp2sim-train export runs/gan2d --task deconvolve --output deconvolve_2d.exp2sim.h5
    exp2sim-train classifier ...                          # mantid_exp2sim.train.classifier
    exp2sim-train regressor --train sim.h5 --model dimer --out regress_dimer.exp2sim.h5

Multi-process training: ``torchrun --nproc_per_node 2 -m mantid_exp2sim.train gan ...``.
See docs/training.md. The subcommands are a :data:`COMMANDS` table run by the convention of
every console script of the package (:mod:`mantid_exp2sim._console`).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence

from .._console import dispatch
from ..errors import InputDataError, format_error
from .config import DOMAIN_KINDS, GanConfig, add_config_options, config_from_checkpoint, load_config, preset_names

__all__ = [
    "COMMANDS",
    "RESUME_OVERRIDABLE",
    "config_from_args",
    "export_command",
    "export_main",
    "repack_command",
    "gan_command",
    "gan_main",
    "get_parser",
    "main",
]

DESCRIPTION = (
    "Train Exp2SimGAN generators (gan), export them to model bundles (export), "
    "train the DUQ classifier (classifier)."
)
#: command name -> ("module[:function]", one-line help), as in ``exp2sim``'s table.
COMMANDS: dict[str, tuple[str, str]] = {
    "gan": ("mantid_exp2sim.train.cli:gan_command", "train the two generators on unpaired domains A and B"),
    "export": ("mantid_exp2sim.train.cli:export_command", "write the bundle of one generator of a checkpoint"),
    "repack": ("mantid_exp2sim.train.cli:repack_command",
               "rewrite a bundle in the current schema (weights stored once), same content"),
    "classifier": ("mantid_exp2sim.train.classifier", "train the DUQ classifier (see exp2sim-train classifier --help)"),
    "regressor": ("mantid_exp2sim.train.regressor",
                  "train a parameter-estimation network (see exp2sim-train regressor --help)"),
}

#: Settings that may differ when a run is resumed (they do not change what is trained).
RESUME_OVERRIDABLE = frozenset({
    "max_minutes", "stop_at_step", "checkpoint_every", "validate_every", "log_every", "plot", "threads",
    "device", "domain_a", "domain_b", "val_data",
})

_HELP: dict[str, str] = {
    "domain_a": "domain A: measured or resolution-convolved data. exp2sim-simulate .h5 files, "
                "file.h5:/dataset or file.npy arrays (N, *shape), SaveMD .nxs files, folders or globs of them",
    "domain_b": "domain B: simulated data without resolution (same kinds of sources)",
    "kind_a": "which side of an exp2sim-simulate file domain A reads (default convolved; measured_like: "
              "the processing chain's output of a --measured-like file, per-Ei scale divided out)",
    "kind_b": "which side of an exp2sim-simulate file domain B reads (default unconvolved)",
    "models": "spin models (groups) to use from exp2sim-simulate files (default all)",
    "paired": "same simulator file on both sides: let A and B use the same sample indices "
              "(default: disjoint halves, so nothing is paired)",
    "val_data": "exp2sim-simulate file for paired validation when the domains do not share one",
    "val_fraction": "fraction of the samples held out for validation and domain-score calibration",
    "val_samples": "held-out pairs evaluated at each validation",
    "max_samples": "use at most this many training samples per domain",
    "ndim": "2 (images) or 3 (volumes)",
    "patch_size": "training patch size in bins, one value or one per dimension (multiple of 2**n_down)",
    "flip_axes": "spatial axes that may be flipped at random (never energy; default none)",
    "batch_size": "patches per domain per step (per process)",
    "generator": "generator architecture: resnet (2D/3D convolutions on the image) or energy-stack "
                 "(2D mosaics: each Ei as a stack of energy windows over (Qh, Qk), 3D convolutions)",
    "ngf": "generator width (channels after the stem)",
    "n_blocks": "residual blocks in each generator",
    "n_down": "downsampling stages in each generator",
    "stem_kernel": "kernel size of the generators' first and last convolution (odd)",
    "ndf": "discriminator width",
    "n_layers": "stride-2 layers in each discriminator",
    "nce_layers": "generator feature ids for PatchNCE (default: the generator's default_nce_layers)",
    "num_patches": "PatchNCE locations per sample and layer",
    "nce_t": "PatchNCE temperature",
    "netf_nc": "PatchNCE projection width",
    "gan_mode": "hinge or lsgan",
    "lambda_gan": "weight of the GAN loss (paper: 1)",
    "lambda_nce": "weight of the PatchNCE loss (paper: 4)",
    "lambda_idt": "weight of the identity L1 loss (paper: 2)",
    "lambda_aux": "weight of the auxiliary loss (paper: 1)",
    "lambda_int": "weight of the intensity-conservation loss (not in the paper; 0 turns it off)",
    "lambda_cyc": "weight of the cycle-consistency L1 loss, |G_B(G_A(a)) - a| and |G_A(G_B(b)) - b| "
                  "(not in DCLGAN; 0 turns it off)",
    "lambda_pair": "weight of the paired L1 term |G_A(a) - b| + |G_B(b) - convolved| on samples of one "
                   "simulator file (needs --paired; default 0: the paper's unpaired objective)",
    "cycle_detach": "cycle term on detached translations: G_B learns to undo G_A's output but cannot hide "
                    "information in it for G_A (and vice versa); --no-cycle-detach is CycleGAN's coupled cycle",
    "common_d_mask": "show the discriminators real and generated patches under one common mask",
    "d_input_norm": "divide every discriminator input patch by its own RMS (D judges shape, not level)",
    "lr": "Adam learning rate of generators and discriminators",
    "beta1": "Adam beta1", "beta2": "Adam beta2",
    "lr_f": "Adam learning rate of the PatchNCE heads",
    "max_steps": "training length in steps (sets the learning-rate schedule)",
    "n_steps_constant": "steps at constant learning rate before the linear decay to 0 (default max_steps/2)",
    "max_minutes": "stop (with a checkpoint) after this many minutes; resume later with --resume",
    "stop_at_step": "stop (with a checkpoint) at this step without changing the schedule",
    "seed": "seed of every random choice (split, sampling, initialisation)",
    "threads": "torch CPU threads per process (default: all cores / processes)",
    "device": "auto, cpu or gpu",
    "amp": "mixed precision on the GPU: auto (on), on, off; always off on the CPU",
    "deterministic": "use torch's deterministic algorithms on the CPU",
    "checkpoint_every": "steps between checkpoints",
    "validate_every": "steps between validations on the held-out pairs",
    "log_every": "steps between rows of losses.csv",
    "plot": "write losses.png and validation.png",
}


#: argparse keywords of the GAN options that differ from the generated ones.
_OPTIONS: dict[str, dict[str, Any]] = {
    "models": {"metavar": "NAME"},
    "gan_mode": {"choices": ["hinge", "lsgan"]},
    "kind_a": {"choices": list(DOMAIN_KINDS)},
    "kind_b": {"choices": list(DOMAIN_KINDS)},
    "amp": {"choices": ["auto", "on", "off"]},
    "device": {"choices": ["auto", "cpu", "gpu"]},
    "ndim": {"choices": [2, 3]},
    "generator": {"choices": ["resnet", "energy-stack"]},
}


def _add_config_options(p: argparse.ArgumentParser) -> None:
    """One option per :class:`GanConfig` field; absent options keep their earlier value."""
    add_config_options(p, GanConfig, _HELP, options=_OPTIONS, skip={"preset"})


def get_parser() -> argparse.ArgumentParser:
    """The ``exp2sim-train`` argument parser (also used to build the docs)."""
    parser = argparse.ArgumentParser(prog="exp2sim-train", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", metavar="{gan,export,repack,classifier,regressor}")
    g = sub.add_parser("gan", help=COMMANDS["gan"][1],
                       description="Train Exp2SimGAN: G_A (A -> B, deconvolve) and G_B (B -> A, convolve).")
    g.add_argument("--config", metavar="PRESET|JSON",
                   help=f"preset ({', '.join(preset_names())}) or JSON file of settings; "
                        "options given here override it")
    g.add_argument("--out", "-o", required=True, metavar="RUN_DIR",
                   help="run folder: checkpoint.pt, losses.csv, validation.csv, plots, config.json")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint (starts it when there is none)")
    g.add_argument("--quiet", action="store_true", help="no progress messages")
    _add_config_options(g)

    e = sub.add_parser("export", help=COMMANDS["export"][1],
                       description="Checkpoint -> *.exp2sim.h5 bundle (ONNX, weights, reference bank, manifest).")
    e.add_argument("checkpoint", help="checkpoint file or run folder")
    e.add_argument("--task", required=True, choices=["deconvolve", "convolve"],
                   help="deconvolve exports G_A (A -> B), convolve exports G_B (B -> A)")
    e.add_argument("--output", "-o", required=True, help="bundle path (*.exp2sim.h5)")
    e.add_argument("--n-train-features", type=int, default=500,
                   help="training samples encoded for the domain-score reference bank (>= 500 recommended)")
    e.add_argument("--n-holdout-features", type=int, default=200,
                   help="held-out samples encoded for the domain-score calibration")
    e.add_argument("--val-pairs", type=int, default=32, help="held-out pairs for the manifest's validation metrics")
    e.add_argument("--tile-size", type=int, nargs="+", default=None,
                   help="suggested inference tile size (default 256 in 2D, 64 in 3D)")
    e.add_argument("--domain-a", nargs="+", default=None, help="override the domain-A files of the checkpoint")
    e.add_argument("--domain-b", nargs="+", default=None, help="override the domain-B files of the checkpoint")
    e.add_argument("--val-data", default=None, help="override the validation file of the checkpoint")
    e.add_argument("--seed", type=int, default=None, help="calibration seed (default: the training seed)")
    e.add_argument("--onnx-exporter", choices=["auto", "dynamo", "torchscript"], default="auto",
                   help="torch ONNX exporter (auto: dynamo, falling back to TorchScript)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing bundle file at --output")
    e.add_argument("--quiet", action="store_true", help="no progress messages")

    r = sub.add_parser("repack", help=COMMANDS["repack"][1],
                       description="Rewrite a bundle in the current schema (each weight stored once); the "
                       "graphs, weights, reference arrays and manifest are unchanged, the command is recorded "
                       "in provenance.repacked.")
    r.add_argument("bundle", help="the bundle to rewrite (*.exp2sim.h5)")
    r.add_argument("--output", "-o", required=True, help="new bundle path (*.exp2sim.h5; not the input)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing file at --output")

    sub.add_parser("classifier", help=COMMANDS["classifier"][1], add_help=False)
    sub.add_parser("regressor", help=COMMANDS["regressor"][1], add_help=False)
    return parser


def config_from_args(ns: argparse.Namespace) -> tuple[GanConfig, set[str]]:
    """Merge defaults < preset/JSON < explicit options; return the config and the explicit names."""
    explicit = {f.name for f in fields(GanConfig) if hasattr(ns, f.name) and f.name != "preset"}
    data: dict[str, Any] = GanConfig().to_dict()
    data.update(load_config(getattr(ns, "config", None)))
    for name in explicit:
        data[name] = getattr(ns, name)
    if "ndim" in explicit and "patch_size" not in explicit and len(data["patch_size"]) != data["ndim"]:
        data["patch_size"] = [data["patch_size"][0]] * int(data["ndim"])
    return GanConfig.from_dict(data), explicit


class _StopRequest:
    """SIGTERM/SIGINT -> finish the current step, write a checkpoint, exit."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopRequest":
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self.previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.trainer.stop_requested:  # second signal: stop now
            raise KeyboardInterrupt
        self.trainer.stop_requested = True

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def gan_main(ns: argparse.Namespace, argv: Sequence[str]) -> int:
    """Run ``exp2sim-train gan``."""
    import torch

    from .checkpoint import latest_checkpoint, load_checkpoint
    from .data import data_from_config
    from .distributed import init_distributed, shutdown_distributed
    from .gan import GanTrainer

    run_dir = Path(ns.out)
    cfg, explicit = config_from_args(ns)
    ckpt_path = latest_checkpoint(run_dir)
    ckpt = None
    if ckpt_path is not None and not ns.resume:
        raise InputDataError(
            format_error(
                f"Run folder '{run_dir}' already holds a checkpoint",
                reason="starting again would overwrite that run",
                fix="pass --resume to continue it, or choose another --out",
            )
        )
    if ckpt_path is not None:
        ckpt = load_checkpoint(ckpt_path)
        saved = config_from_checkpoint(ckpt["config"])
        clash = sorted(n for n in explicit - RESUME_OVERRIDABLE if getattr(cfg, n) != getattr(saved, n))
        if ns.config is not None:
            clash += ["config"]
        if clash:
            raise InputDataError(
                format_error(
                    "--resume continues a run with its own settings",
                    reason=f"these options differ from the checkpoint's: {', '.join(clash)}",
                    fix=f"drop them (only {', '.join(sorted(RESUME_OVERRIDABLE))} may change) "
                        "or start a new run in another --out",
                )
            )
        # stop conditions belong to one invocation: a resumed run runs to max_steps unless told
        saved.stop_at_step = None
        saved.max_minutes = None
        for name in explicit & RESUME_OVERRIDABLE:
            setattr(saved, name, getattr(cfg, name))
        cfg = saved
        cfg.validate()
    use_cuda = torch.cuda.is_available() and cfg.device != "cpu"
    dist = init_distributed(use_cuda)
    # process-wide torch settings, restored afterwards (main() may be called in-process)
    saved_threads, saved_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        threads = cfg.threads or max(1, (os.cpu_count() or 1) // dist.world_size)
        torch.set_num_threads(int(threads))
        if cfg.deterministic and not use_cuda:
            torch.use_deterministic_algorithms(True)
        if use_cuda:
            torch.backends.cudnn.benchmark = True
        log = None if ns.quiet else (lambda msg: print(msg, flush=True))
        data = data_from_config(cfg)
        trainer = GanTrainer(cfg, data, run_dir, dist=dist, command=["exp2sim-train", *argv], log=log)
        if ckpt is not None:
            trainer.load_state_dict(ckpt)
            if log:
                log(f"resumed {ckpt_path} at step {trainer.step}")
        with _StopRequest(trainer):
            summary = trainer.fit()
        if log:
            log(f"run folder: {run_dir}  (stopped at step {summary['step']}: {summary['reason']})")
    finally:
        shutdown_distributed(dist)
        torch.set_num_threads(saved_threads)
        torch.use_deterministic_algorithms(saved_det)
    return 0


def export_main(ns: argparse.Namespace, argv: Sequence[str]) -> int:
    """Run ``exp2sim-train export``."""
    from .export import export_bundle

    tile = None
    if ns.tile_size:
        tile = ns.tile_size[0] if len(ns.tile_size) == 1 else ns.tile_size
    export_bundle(
        ns.checkpoint,
        ns.output,
        task=ns.task,
        n_train_features=ns.n_train_features,
        n_holdout_features=ns.n_holdout_features,
        val_pairs=ns.val_pairs,
        tile_size=tile,
        domain_a=ns.domain_a,
        domain_b=ns.domain_b,
        val_data=ns.val_data,
        seed=ns.seed,
        onnx_exporter=ns.onnx_exporter,
        command=["exp2sim-train", *argv],
        log=None if ns.quiet else (lambda msg: print(msg, flush=True)),
        overwrite=ns.overwrite,
    )
    return 0


def gan_command(argv: Sequence[str]) -> int:
    """``exp2sim-train gan ARGS``."""
    argv = ["gan", *argv]
    return gan_main(get_parser().parse_args(argv), argv)


def export_command(argv: Sequence[str]) -> int:
    """``exp2sim-train export ARGS``."""
    argv = ["export", *argv]
    return export_main(get_parser().parse_args(argv), argv)


def repack_command(argv: Sequence[str]) -> int:
    """``exp2sim-train repack BUNDLE -o OUT``."""
    from .export import repack_bundle

    ns = get_parser().parse_args(["repack", *argv])
    path = repack_bundle(ns.bundle, ns.output, command=["exp2sim-train", "repack", *argv], overwrite=ns.overwrite)
    print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``exp2sim-train`` (and ``python -m mantid_exp2sim.train``)."""
    return dispatch("exp2sim-train", DESCRIPTION, COMMANDS, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
