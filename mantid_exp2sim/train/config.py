"""Settings of training runs: one dataclass per training, and their command-line options.

:class:`GanConfig` (``exp2sim-train gan``) with named presets and JSON files, and
:class:`ClassifierConfig` (``exp2sim-train classifier``). Every field is one command-line
option, generated from the dataclass by :func:`add_config_options` (``--batch-size`` for
``batch_size``; the type, list-ness and on/off switches come from the annotations).

Precedence when the command line builds a GAN configuration (lowest first): the dataclass
defaults, a preset (``--config pcsmo-2d``) or a JSON file (``--config my.json``), then every
option given explicitly on the command line.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Collection, Mapping, get_args, get_origin, get_type_hints

from ..errors import InputDataError, format_error

__all__ = [
    "GanConfig",
    "ClassifierConfig",
    "CLASSIFIER_HELP",
    "PRESETS",
    "LEGACY_DEFAULTS",
    "add_classifier_options",
    "add_config_options",
    "config_from_checkpoint",
    "load_config",
    "preset_names",
]


@dataclass
class GanConfig:
    """Every setting of one Exp2SimGAN training run (JSON-safe values only).

    Domain A is the measured or resolution-convolved side, domain B the simulated,
    unconvolved side; ``G_A`` maps A -> B (deconvolve, exp2sim), ``G_B`` maps B -> A
    (convolve, sim2exp). Spatial sizes are in bins, dimension 0 first.
    """

    # --- data
    domain_a: list[str] = field(default_factory=list)
    domain_b: list[str] = field(default_factory=list)
    kind_a: str = "convolved"
    kind_b: str = "unconvolved"
    models: list[str] | None = None
    paired: bool = False
    val_data: str | None = None
    val_fraction: float = 0.05
    val_samples: int = 16
    max_samples: int | None = None
    ndim: int = 2
    patch_size: list[int] = field(default_factory=lambda: [64, 64])
    flip_axes: list[int] = field(default_factory=list)
    batch_size: int = 4
    # --- networks
    generator: str = "resnet"
    ngf: int = 16
    n_blocks: int = 4
    n_down: int = 2
    stem_kernel: int = 7
    ndf: int = 16
    n_layers: int = 3
    nce_layers: list[int] | None = None
    num_patches: int = 64
    nce_t: float = 0.07
    netf_nc: int = 64
    # --- losses
    gan_mode: str = "hinge"
    lambda_gan: float = 1.0
    lambda_nce: float = 4.0
    lambda_idt: float = 2.0
    lambda_aux: float = 1.0
    lambda_int: float = 5.0
    lambda_cyc: float = 0.0
    lambda_pair: float = 0.0
    cycle_detach: bool = True
    common_d_mask: bool = True
    d_input_norm: bool = True
    # --- optimisation
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lr_f: float = 2e-4
    max_steps: int = 20000
    n_steps_constant: int | None = None
    max_minutes: float | None = None
    stop_at_step: int | None = None
    # --- run
    seed: int = 0
    threads: int | None = None
    device: str = "auto"
    amp: str = "auto"
    deterministic: bool = True
    checkpoint_every: int = 500
    validate_every: int = 500
    log_every: int = 10
    plot: bool = True
    preset: str | None = None

    # ----------------------------------------------------------------- helpers
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "GanConfig":
        """Build from a dict, rejecting unknown keys (typos must not pass silently)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputDataError(
                format_error(
                    "Unknown training setting(s)",
                    reason=f"{unknown} are not settings; allowed: {sorted(known)}",
                    fix="check the spelling in the JSON file (use underscores, e.g. 'batch_size')",
                )
            )
        cfg = cls(**{k: v for k, v in data.items()})
        cfg.validate()
        return cfg

    def n_constant(self) -> int:
        """Steps at constant learning rate before the linear decay to zero."""
        return self.max_steps // 2 if self.n_steps_constant is None else int(self.n_steps_constant)

    def spatial_patch(self) -> tuple[int, ...]:
        """Patch size per spatial dimension."""
        return tuple(int(p) for p in self.patch_size)

    def resolved_nce_layers(self) -> list[int]:
        """Layer indices for PatchNCE (``None`` means the generator's own default)."""
        return [] if self.nce_layers is None else list(self.nce_layers)

    def validate(self) -> None:
        """Check every value; raise :class:`InputDataError` naming the offending setting."""

        def bad(name: str, value: Any, allowed: str, fix: str | None = None) -> None:
            raise InputDataError(
                format_error(f"Invalid training setting '{name}'", reason=f"got {value!r}; {allowed}", fix=fix)
            )

        if self.ndim not in (2, 3):
            bad("ndim", self.ndim, "allowed: 2 or 3")
        if len(self.patch_size) == 1:
            self.patch_size = [int(self.patch_size[0])] * self.ndim
        if len(self.patch_size) != self.ndim:
            bad("patch_size", self.patch_size, f"need one size or {self.ndim} sizes (one per dimension)")
        multiple = 2 ** int(self.n_down)
        for p in self.patch_size:
            if int(p) < 4 * multiple or int(p) % multiple:
                bad(
                    "patch_size",
                    self.patch_size,
                    f"each size must be a multiple of {multiple} (2**n_down) and >= {4 * multiple}",
                    "e.g. 64 in 2D or 32 in 3D",
                )
        self.patch_size = [int(p) for p in self.patch_size]
        for a in self.flip_axes:
            if not 0 <= int(a) < self.ndim:
                bad("flip_axes", self.flip_axes, f"axes must be in 0..{self.ndim - 1}")
        if self.kind_a not in DOMAIN_KINDS or self.kind_b not in DOMAIN_KINDS:
            bad("kind_a/kind_b", (self.kind_a, self.kind_b), f"allowed: {', '.join(map(repr, DOMAIN_KINDS))}")
        if self.gan_mode not in ("hinge", "lsgan"):
            bad("gan_mode", self.gan_mode, "allowed: 'hinge' or 'lsgan'")
        if self.amp not in ("auto", "on", "off"):
            bad("amp", self.amp, "allowed: 'auto', 'on', 'off'")
        if self.device not in ("auto", "cpu", "gpu", "cuda"):
            bad("device", self.device, "allowed: 'auto', 'cpu', 'gpu'")
        for name in ("batch_size", "max_steps", "ngf", "n_blocks", "ndf", "n_layers", "num_patches",
                     "netf_nc", "checkpoint_every", "validate_every", "log_every", "val_samples"):
            if int(getattr(self, name)) < 1:
                bad(name, getattr(self, name), "must be >= 1")
        if self.n_down < 1:
            bad("n_down", self.n_down, "must be >= 1")
        if self.stem_kernel < 1 or self.stem_kernel % 2 == 0:
            bad("stem_kernel", self.stem_kernel, "must be an odd number >= 1")
        if self.generator not in GENERATORS:
            bad("generator", self.generator, f"allowed: {', '.join(GENERATORS)}")
        if self.generator == "energy-stack":
            from ..mosaic import TILE

            if self.ndim != 2:
                bad("generator", self.generator, "the energy-stack generator reads 2D mosaics (ndim 2)",
                    "use generator 'resnet' for volumes")
            if any(int(p) % TILE or int(p) < 2 * TILE for p in self.patch_size):
                bad("patch_size", self.patch_size,
                    f"the energy-stack generator needs whole mosaic tiles: multiples of {TILE}, >= {2 * TILE}",
                    "e.g. 80 400 (two incident energies, all windows)")
        for name in ("lambda_gan", "lambda_nce", "lambda_idt", "lambda_aux", "lambda_int", "lambda_cyc",
                     "lambda_pair"):
            if float(getattr(self, name)) < 0:
                bad(name, getattr(self, name), "loss weights must be >= 0", f"pass --{name.replace('_', '-')} 0 or more")
        if self.lambda_pair > 0 and not self.paired:
            bad("lambda_pair", self.lambda_pair, "the paired term needs paired samples",
                "add --paired (one exp2sim-simulate file as domain A and B) or set --lambda-pair 0")
        if not 0 < self.lr < 1 or not 0 < self.lr_f < 1:
            bad("lr/lr_f", (self.lr, self.lr_f), "learning rates must lie in (0, 1)")
        if not 0 <= self.val_fraction < 1:
            bad("val_fraction", self.val_fraction, "must lie in [0, 1)")
        if self.n_steps_constant is not None and not 0 <= self.n_steps_constant <= self.max_steps:
            bad("n_steps_constant", self.n_steps_constant, f"must lie in [0, max_steps={self.max_steps}]")
        if self.stop_at_step is not None and not 0 < self.stop_at_step <= self.max_steps:
            bad("stop_at_step", self.stop_at_step, f"must lie in [1, max_steps={self.max_steps}]")
        if self.max_minutes is not None and self.max_minutes <= 0:
            bad("max_minutes", self.max_minutes, "must be > 0")


#: Sides of an exp2sim-simulate file a domain may read (``measured_like``: --measured-like files).
DOMAIN_KINDS = ("convolved", "unconvolved", "measured_like")

#: Generator architectures: ``resnet`` (models.generator.ResnetGenerator on the image) or
#: ``energy-stack`` (models.energy_stack_generator.EnergyStackGenerator: each Ei of the mosaic as a
#: stack of energy windows over (Qh, Qk)).
GENERATORS = ("resnet", "energy-stack")

#: Named presets. The PCSMO ones are sized for training on a 2-core CPU in a few hours; the
#: networks are small on purpose (see docs/training.md for the reasoning and timings).
PRESETS: dict[str, dict[str, Any]] = {
    "pcsmo-2d": {
        "ndim": 2,
        "patch_size": [64, 64],
        # The 240x400 mosaic is a patchwork of (Ei, energy-window) tiles whose order is fixed,
        # and the resolution ellipsoid tilts with Qh, Qk: no flip is physically neutral.
        "flip_axes": [],
        "batch_size": 4,
        "ngf": 16,
        "n_blocks": 4,
        "n_down": 2,
        "stem_kernel": 7,
        "ndf": 16,
        "n_layers": 3,
        "num_patches": 64,
        "netf_nc": 64,
        "max_steps": 12000,
        "checkpoint_every": 500,
        "validate_every": 500,
        "log_every": 10,
        "val_samples": 16,
    },
    # Energy-aware 2D generator (prepared, not shipped): patches of whole incident energies
    # (2 of the 6 Ei rows, all 10 windows), so every patch holds complete energy stacks.
    "pcsmo-2d-energy": {
        "ndim": 2,
        "generator": "energy-stack",
        "patch_size": [80, 400],
        "flip_axes": [],
        "batch_size": 2,
        "ngf": 16,
        "n_blocks": 4,
        "n_down": 2,
        "stem_kernel": 5,
        "ndf": 16,
        "n_layers": 3,
        "num_patches": 64,
        "netf_nc": 64,
        "max_steps": 12000,
        "checkpoint_every": 500,
        "validate_every": 500,
        "log_every": 10,
        "val_samples": 16,
    },
    "pcsmo-3d": {
        "ndim": 3,
        "patch_size": [32, 32, 32],
        # Volumes are [H,0,0] x [0,K,0] x DeltaE: the twinned PCSMO spectrum and MAPS coverage
        # with c along the beam are symmetric under Qh -> -Qh and Qk -> -Qk; energy is never
        # flipped (the resolution width grows with energy transfer).
        "flip_axes": [0, 1],
        "batch_size": 2,
        # 3D convolutions at full resolution dominate the cost (a 7^3 stem and head alone are
        # 60% of it at ngf 12): a narrower network with a 5^3 stem/head is 2.6x cheaper.
        "ngf": 8,
        "n_blocks": 4,
        "n_down": 2,
        "stem_kernel": 5,
        "ndf": 12,
        "n_layers": 2,
        "num_patches": 64,
        "netf_nc": 64,
        "max_steps": 4000,
        "checkpoint_every": 250,
        "validate_every": 250,
        "log_every": 10,
        "val_samples": 8,
    },
}


#: Values that reproduce the behaviour of versions written before a setting existed; a
#: checkpoint's configuration lacking a key gets these, not today's defaults.
LEGACY_DEFAULTS: dict[str, Any] = {"lambda_int": 0.0, "d_input_norm": False, "stem_kernel": 7, "lambda_cyc": 0.0,
                                  "cycle_detach": False}


def config_from_checkpoint(data: Mapping[str, Any]) -> GanConfig:
    """The configuration stored in a checkpoint, completed with :data:`LEGACY_DEFAULTS`."""
    return GanConfig.from_dict({**LEGACY_DEFAULTS, **dict(data)})


def preset_names() -> list[str]:
    """Names accepted by ``--config`` besides JSON file paths."""
    return sorted(PRESETS)


def load_config(spec: str | os.PathLike | None) -> dict[str, Any]:
    """Settings from a preset name or a JSON file (a dict, possibly partial).

    Parameters
    ----------
    spec
        A name from :data:`PRESETS`, the path of a JSON object file, or ``None``.

    Returns
    -------
    dict
        The settings; a preset also records its name under ``"preset"``.
    """
    if spec is None:
        return {}
    name = str(spec)
    if name in PRESETS:
        return {**PRESETS[name], "preset": name}
    path = Path(name)
    if not path.is_file():
        raise InputDataError(
            format_error(
                f"--config '{name}' is neither a preset nor a JSON file",
                reason=f"presets: {preset_names()}; no file at {path.resolve()}",
                fix="pass a preset name or the path of a JSON object of settings",
            )
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputDataError(
            format_error(f"--config file '{name}' is not valid JSON", reason=str(exc), fix="fix the file")
        ) from exc
    if not isinstance(data, dict):
        raise InputDataError(
            format_error(f"--config file '{name}' must hold a JSON object", reason=f"got {type(data).__name__}")
        )
    base = data.pop("preset", None)
    if base is not None:
        return {**load_config(base), **data}
    return data


@dataclass
class ClassifierConfig:
    """Settings of a classifier training run (every field has a command-line option)."""

    train: list[str] = field(default_factory=list)
    kind: str = "unconvolved"
    models: list[str] | None = None
    architecture: str = "mosaic"
    measured_like: float = 0.0
    val_draws: int = 2
    out: str = "runs/classifier/classify_2d.exp2sim.h5"
    epochs: int = 15
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.15
    max_samples: int | None = None
    seed: int = 0
    gamma: float = 0.99
    length_scale: float = 0.1
    gp_weight: float = 0.5
    widths: list[int] | None = None
    feature_dim: int = 64
    embedding_dim: int = 64
    noise: float = 0.1
    blur: float = 1.0
    energy_blur: float = 0.0
    cycle_augment: float = 0.0
    cycle_models: list[str] | None = None
    align: list[str] | None = None
    align_generator: str | None = None
    align_weight: float = 1.0
    align_samples: int = 1000
    mask_prob: float = 0.5
    flip: bool = True
    batch_norm: bool = True
    confident_coverage: float = 0.95
    max_confident_wrong: float | None = None
    max_minutes: float | None = None
    fit_length_scale: bool = False
    bank_samples: int = 600
    ood_quantile: float = 0.01
    threads: int | None = None
    exporter: str = "auto"
    init_from: str | None = None
    holdout_from: list[str] | None = None

    def resolved_widths(self) -> list[int]:
        """``widths``, or the architecture's default (mosaic 16,32,32,32; energy-stack 8,16,64,64)."""
        if self.widths:
            return [int(w) for w in self.widths]
        return list(CLASSIFIER_WIDTHS.get(self.architecture, CLASSIFIER_WIDTHS["mosaic"]))


#: Default channel widths per classifier architecture.
CLASSIFIER_WIDTHS: dict[str, tuple[int, ...]] = {"mosaic": (16, 32, 32, 32), "energy-stack": (8, 16, 64, 64)}


#: Help text of every :class:`ClassifierConfig` option.
CLASSIFIER_HELP: dict[str, str] = {
    "train": "exp2sim-simulate mosaic data set(s); every model group is a class",
    "kind": "which spectra to learn from (default unconvolved, as in seed 000; convolved for --measured-like)",
    "models": "model groups to use (default all)",
    "architecture": "network: 'mosaic' (the mosaic read as a picture) or 'energy-stack' (each Ei as a stack "
                    "of energy windows over (Qh, Qk); models/energy_stack.py)",
    "measured_like": "probability of replacing a (convolved) training spectrum by a fresh measured-like draw "
                     "(counting noise, background subtraction, zeros, clip, measured mask; nuisances around "
                     "the calibrated PCSMO values); held-out spectra are then also read measured-like (0: off)",
    "val_draws": "measured-like draws per held-out spectrum for model selection and calibration "
                 "(with --measured-like)",
    "out": f"bundle to write (default {ClassifierConfig.out})",
    "epochs": "training epochs",
    "batch_size": "samples per step",
    "lr": "Adam learning rate (cosine decay to 0)",
    "weight_decay": "Adam weight decay",
    "val_fraction": "fraction of each class held out for model selection and threshold calibration",
    "max_samples": "use at most this many samples (balanced)",
    "seed": "seed of the split, initialisation and augmentation",
    "gamma": "centroid EMA factor (1 freezes them)",
    "length_scale": "RBF length scale sigma",
    "gp_weight": "gradient-penalty weight lambda",
    "widths": "channels of the 4 convolutions, e.g. 16,32,32,32 (default per --architecture: mosaic "
              "16,32,32,32; energy-stack 8,16,64,64, the first two per Ei branch)",
    "feature_dim": "feature vector size",
    "embedding_dim": "DUQ embedding size",
    "noise": "largest augmentation noise amplitude (0: off)",
    "blur": "largest augmentation blur sigma in bins (0: off)",
    "energy_blur": "largest augmentation blur sigma along the mosaic's energy-window axis, in windows (0: off)",
    "cycle_augment": "probability of replacing a training spectrum by deconvolve(convolve(spectrum)) "
                     "through the 2D generators (0: off)",
    "cycle_models": "generator bundles for --cycle-augment (default: the shipped 2D ones)",
    "align": "unsupervised domain alignment: match the features of the training spectra to "
             "those of these data sets' convolved spectra (labels unused), deconvolved by "
             "--align-generator (default: off)",
    "align_generator": "2D deconvolve bundle for the --align spectra (default: the shipped one; "
                       "'none': align to the convolved spectra themselves)",
    "align_weight": "weight of the alignment (MMD) term",
    "align_samples": "use at most this many --align spectra",
    "mask_prob": "probability of extra random masking",
    "flip": "random Q -> -Q inversion inside the tiles (an exact symmetry; default on)",
    "batch_norm": "batch normalisation in the feature extractor (default on)",
    "confident_coverage": "fraction of correct held-out predictions that must be 'confident' (unless "
                          "--max-confident-wrong is given)",
    "max_confident_wrong": "set the 'confident' threshold so that at most this fraction of the held-out "
                           "answers above it are wrong (e.g. 0.005)",
    "bank_samples": "training inputs encoded for the domain-score reference bank in the classifier's own "
                    "feature space (0: no bank; classification then scores the domain with the generators)",
    "max_minutes": "stop after the first epoch that ends past this wall-clock budget (the best held-out "
                   "epoch so far is kept)",
    "fit_length_scale": "after training, refit the RBF length scale on the held-out spectra so that the "
                        "top-class K matches the held-out accuracy (calibration)",
    "ood_quantile": "quantile of held-out max K below which inputs are 'out of distribution'",
    "threads": "torch CPU threads",
    "exporter": "ONNX exporter",
    "init_from": "start from the weights and centroids of this classify_2d bundle (fine-tuning; it must have "
                 "the same architecture, input shape and classes; the length scale restarts at --length-scale). "
                 "Keep --train and --seed of its training run so that the held-out split stays unseen, "
                 "or hold out from new files only (--holdout-from)",
    "holdout_from": "draw the held-out samples (--val-fraction of each class) from these --train files only; "
                    "every sample of the other files trains. With --init-from: files the initial weights never "
                    "saw, so that model selection and calibration stay on unseen spectra",
}


def _int_list(text: str) -> list[int]:
    """``"16,32,32,32"`` (or space-separated) -> ``[16, 32, 32, 32]``."""
    return [int(t) for t in text.replace(",", " ").split()]


#: argparse keywords of the classifier options that differ from the generated ones.
_CLASSIFIER_OPTIONS: dict[str, dict[str, Any]] = {
    "train": {"required": True, "metavar": "FILE.h5"},
    "kind": {"choices": ["unconvolved", "convolved"]},
    "architecture": {"choices": ["mosaic", "energy-stack"]},
    "measured_like": {"metavar": "P"},
    "models": {"metavar": "NAME"},
    "widths": {"type": _int_list, "nargs": None, "metavar": "W0,W1,W2,W3"},
    "cycle_augment": {"metavar": "P"},
    "cycle_models": {"nargs": 2, "metavar": ("CONVOLVE", "DECONVOLVE")},
    "align": {"metavar": "FILE.h5"},
    "align_generator": {"metavar": "BUNDLE"},
    "init_from": {"metavar": "BUNDLE"},
    "holdout_from": {"metavar": "FILE.h5"},
    "exporter": {"choices": ["auto", "dynamo", "torchscript"]},
}


def add_config_options(
    parser: argparse.ArgumentParser,
    config: type,
    help: Mapping[str, str],
    *,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    skip: Collection[str] = (),
    defaults: bool = False,
) -> None:
    """Add one option per field of the dataclass ``config`` (``--batch-size`` for ``batch_size``).

    From each field's annotation (``X | None`` counts as ``X``): ``bool`` -> an on/off switch
    (``--flip``/``--no-flip``), ``list[T]`` -> one or more values of type ``T``, anything else
    -> one value of that type.

    Parameters
    ----------
    parser
        Where the options go.
    config
        The dataclass.
    help
        Help text per field name (the field name when absent).
    options
        argparse keywords per field that replace the generated ones (``choices``,
        ``metavar``, ``required``, a ``type`` with ``nargs=None``, ...).
    skip
        Fields without an option.
    defaults
        True: absent options take the dataclass defaults. False: absent options are left out
        of the namespace (``argparse.SUPPRESS``), so that a preset or a checkpoint can fill them.
    """
    hints = get_type_hints(config)
    base = config() if defaults else None
    for f in fields(config):
        if f.name in skip:
            continue
        kw: dict[str, Any] = {"dest": f.name, "help": help.get(f.name, f.name)}
        kw["default"] = getattr(base, f.name) if defaults else argparse.SUPPRESS
        t = hints[f.name]
        if get_origin(t) is not None and type(None) in get_args(t):
            t = next(a for a in get_args(t) if a is not type(None))
        if t is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif get_origin(t) is list:
            inner = get_args(t)[0]
            kw.update(nargs="+", type=inner, metavar="N" if inner is int else "SPEC")
        else:
            kw["type"] = t
        kw.update((options or {}).get(f.name, {}))
        parser.add_argument("--" + f.name.replace("_", "-"), **kw)


def add_classifier_options(parser: argparse.ArgumentParser) -> None:
    """Add the ``exp2sim-train classifier`` options (one per :class:`ClassifierConfig` field)."""
    add_config_options(parser, ClassifierConfig, CLASSIFIER_HELP, options=_CLASSIFIER_OPTIONS, defaults=True)
