"""The Exp2SimGAN training loop: two generators, two discriminators, two PatchNCE heads.

Naming: domain A is measured / resolution-convolved data, domain B simulated unconvolved data.
``G_A`` translates A -> B (deconvolve, exp2sim), ``G_B`` translates B -> A (convolve, sim2exp).
``D_A`` judges domain-A patches (real A against ``G_B(B)``), ``D_B`` domain-B patches (real B
against ``G_A(A)``). ``F_A`` projects ``G_A``'s encoder features, ``F_B`` ``G_B``'s.

One iteration (as DCLGAN): translate both batches; update both discriminators on the detached
translations; then update both generators and both heads on

``lambda_gan * (GAN_A + GAN_B) / 2 + lambda_nce * (NCE_A + NCE_B) / 2
+ lambda_idt * (IDT_A + IDT_B) / 2 + lambda_aux * (AUX_A + AUX_B) / 2
+ lambda_int * (INT_A + INT_B) / 2 + lambda_cyc * (CYC_A + CYC_B) / 2
+ lambda_pair * (PAIR_A + PAIR_B) / 2``

where ``NCE_A`` compares keys ``F_A(G_A.nce_features(a))`` with queries
``F_B(G_B.nce_features(G_A(a)))`` at the same positions (DCLGAN's dual contrastive loss) and
``IDT_A = |G_A(b) - b|``. ``CYC_A = |G_B(G_A(a)) - a|`` is CycleGAN's cycle consistency
(off by default as in DCLGAN); with ``cycle_detach`` (default) ``G_A(a)`` is detached, so
``CYC_A`` trains only ``G_B``, on pseudo-pairs ``(G_A(a), a)``. Every term is masked (see
:mod:`mantid_exp2sim.train.losses`).
With ``common_d_mask`` a discriminator sees real and generated patches under the same mask
(the union of both batches' masked bins), so the coverage pattern cannot tell them apart.
With ``d_input_norm`` every discriminator input is divided by its own RMS: each domain is
normalised by its own whole-sample RMS, and a sharp (unconvolved) spectrum has a larger RMS
than the same spectrum convolved, so a level-sensitive discriminator would push ``G_A`` to
lose (and ``G_B`` to gain) integrated intensity by that RMS ratio. ``INT`` (the relative change
of each patch's integrated intensity) then sets the level.

Paired term (``lambda_pair`` > 0; default 0, the paper's unpaired objective): only with
``paired`` on one simulator file (both domains then train on the same sample indices). Each
domain's sampler cuts, at the same index, crop and flips as its patch, the true counterpart:
``PAIR_A = |G_A(a) - b|`` with ``b`` the domain-B (unconvolved) twin of ``a``, and ``PAIR_B =
|G_B(b) - c|`` with ``c`` the file's noise-free ``convolved`` twin of ``b`` (for ``kind_a =
convolved`` that is domain A itself; for ``kind_a = measured_like`` it is the measured-like
sample's expectation in model units, without noise, background residue or clipping, so
``G_B`` is taught the expectation while ``D_A`` still sees noisy measured-like patches). A
target is divided by its *source* sample's intensity scale, so it is in the units of the
output (see :func:`~mantid_exp2sim.train.losses.paired_l1`); bins masked in the source or the
target do not count. The GAN, PatchNCE, identity and intensity terms are unchanged, so the
objective is the unpaired one plus a supervised pull towards the true twins.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from .._version import __version__
from ..errors import InputDataError, format_error
from . import losses as L
from .checkpoint import (
    BEST_TASKS,
    CHECKPOINT_NAME,
    atomic_torch_save,
    best_checkpoint_name,
    capture_rng_state,
    restore_rng_state,
)
from .config import GanConfig
from .data import TrainingData
from .patches import PatchSampler, normalised_input
from .distributed import DistInfo, average_gradients, broadcast_flag, broadcast_module
from .logging_utils import CsvTable, atomic_write_text, plot_table
from .metrics import frechet_distance, intensity_ratio, masked_psnr, masked_ssim, summarise

__all__ = [
    "GanTrainer",
    "build_networks",
    "check_split",
    "lr_factor",
    "select_device",
    "translate_sample",
    "encode_sample",
    "LOSS_COLUMNS",
    "VALIDATION_COLUMNS",
    "CHECKPOINT_FORMAT",
    "STOP_FILE",
]

CHECKPOINT_FORMAT = "exp2sim-gan-checkpoint"
#: Creating this file in the run folder stops training after the current step, with a checkpoint.
STOP_FILE = "STOP"

LOSS_COLUMNS = [
    "step", "lr", "d_total", "d_a_gan", "d_a_aux", "d_b_gan", "d_b_aux",
    "g_total", "g_a_gan", "g_a_nce", "g_a_idt", "g_a_aux", "g_a_int", "g_a_cyc",
    "g_b_gan", "g_b_nce", "g_b_idt", "g_b_aux", "g_b_int", "g_b_cyc",
    "g_a_pair", "g_b_pair", "seconds_per_step",
]
VALIDATION_COLUMNS = [
    "step",
    "psnr_identity", "psnr_deconvolve", "psnr_convolve",
    "ssim_identity", "ssim_deconvolve", "ssim_convolve",
    "intensity_ratio_deconvolve", "intensity_ratio_convolve",
    "fid_identity", "fid_deconvolve", "fid_convolve",
]


def lr_factor(step: int, n_constant: int, max_steps: int) -> float:
    """Learning-rate multiplier after ``step`` completed steps: 1, then linear to 0 at ``max_steps``."""
    if step < n_constant:
        return 1.0
    n_decay = max(1, max_steps - n_constant)
    return max(0.0, 1.0 - (step - n_constant) / n_decay)


def select_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` (a GPU when present), ``cpu`` or ``gpu``/``cuda`` (error without one)."""
    if name in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise InputDataError(
                format_error("--device gpu was requested", reason="torch sees no CUDA GPU", fix="use --device cpu")
            )
        return torch.device("cuda", local_rank)
    if name == "auto" and torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def build_networks(cfg: GanConfig) -> tuple[dict[str, torch.nn.Module], list[int]]:
    """The six modules of a run (freshly initialised) and the PatchNCE layer ids."""
    from ..models import PatchDiscriminator, PatchSampleMLP, ResnetGenerator

    def gen() -> torch.nn.Module:
        if cfg.generator == "energy-stack":
            from ..models.energy_stack_generator import EnergyStackGenerator
            from ..mosaic import TILE

            return EnergyStackGenerator(TILE, 2, 1, ngf=cfg.ngf, n_blocks=cfg.n_blocks, n_down=cfg.n_down,
                                        stem_kernel=cfg.stem_kernel)
        return ResnetGenerator(cfg.ndim, 2, 1, ngf=cfg.ngf, n_blocks=cfg.n_blocks, n_down=cfg.n_down,
                               stem_kernel=cfg.stem_kernel)

    def disc() -> torch.nn.Module:
        return PatchDiscriminator(cfg.ndim, 2, ndf=cfg.ndf, n_layers=cfg.n_layers)

    g_a, g_b = gen(), gen()
    layers = list(cfg.nce_layers) if cfg.nce_layers else list(g_a.default_nce_layers())
    channels = g_a.feature_channels(layers)
    nets = {
        "G_A": g_a,
        "G_B": g_b,
        "D_A": disc(),
        "D_B": disc(),
        "F_A": PatchSampleMLP(channels, nc=cfg.netf_nc),
        "F_B": PatchSampleMLP(channels, nc=cfg.netf_nc),
    }
    return nets, layers


def check_split(ckpt: Mapping[str, Any], data: TrainingData) -> None:
    """Raise :class:`InputDataError` unless ``data`` has the checkpoint's split and samples."""
    split = ckpt["split"]
    problems = [
        f"the {key.replace('_', ' ')} indices differ"
        for key, arr in (("a_train", data.a.train), ("b_train", data.b.train))
        if not np.array_equal(split[key].numpy(), np.asarray(arr))
    ]
    if not problems:
        for tag, dom in (("a", data.a), ("b", data.b)):
            if split.get(f"{tag}_fingerprint") not in (None, dom.fingerprint()):
                problems.append(f"the domain-{tag.upper()} samples differ (checksum of the first training samples)")
    if problems:
        raise InputDataError(
            format_error(
                "The training data differ from those of the checkpoint",
                reason="; ".join(problems),
                fix="use the same data files, seed and split settings as the training run",
            )
        )


def _step_generator(seed: int, rank: int, step: int) -> torch.Generator:
    # A fresh generator per step and rank: PatchNCE sampling needs no state in checkpoints.
    s = int(np.random.SeedSequence([int(seed), 17, int(rank), int(step)]).generate_state(1, np.uint64)[0] >> 1)
    return torch.Generator().manual_seed(s)


def _pad_input(x: torch.Tensor, g: torch.nn.Module) -> tuple[torch.Tensor, tuple[int, ...]]:
    from ..models.normalisation import pad_to_multiple

    xp, pads = pad_to_multiple(x, g.spatial_multiple)
    lo = g.min_spatial_size()
    extra = [max(0, lo - s) for s in xp.shape[2:]]
    if any(extra):
        idx = [torch.arange(s + e).clamp(max=s - 1) for s, e in zip(xp.shape[2:], extra)]
        for k, ix in enumerate(idx):
            xp = xp.index_select(2 + k, ix.to(xp.device))
        pads = tuple(p + e for p, e in zip(pads, extra))
    return xp, pads


@torch.no_grad()
def translate_sample(generator: torch.nn.Module, sample: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
    """Run a generator on one whole sample (NaN = masked) and return it in the input's units.

    The sample is normalised by its own RMS, padded at the end to the generator's multiple
    (replicate), translated, cropped and scaled back; masked bins stay NaN.
    """
    from ..models.normalisation import crop_padding, from_network_output

    x, scale = normalised_input(sample)
    t = torch.from_numpy(x[None]).to(device)
    tp, pads = _pad_input(t, generator)
    y = crop_padding(generator(tp).float().cpu(), pads)
    return from_network_output(y, scale, x[1])


@torch.no_grad()
def encode_sample(generator: torch.nn.Module, sample: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
    """Pooled bottleneck features ``(2 C,)`` of one whole sample (masked and padded bins excluded)."""
    from ..domain import pooled_features

    x, _ = normalised_input(sample)
    t = torch.from_numpy(x[None]).to(device)
    tp, pads = _pad_input(t, generator)
    fmap = generator.encode(tp).float().cpu().numpy()
    valid = np.zeros(tp.shape[2:], dtype=bool)
    valid[tuple(slice(0, n) for n in x.shape[1:])] = x[1] > 0
    return pooled_features(fmap, valid[None])[0]


class GanTrainer:
    """One Exp2SimGAN training run.

    Parameters
    ----------
    cfg
        Settings (validated).
    data
        Both domains, their split and the paired validation samples.
    run_dir
        Folder for checkpoints, CSV logs and plots (written by rank 0 only); None: no files.
    dist
        Place in a ``torchrun`` job.
    command
        The command line, recorded in checkpoints.
    log
        Called with progress messages (rank 0 only).
    """

    def __init__(
        self,
        cfg: GanConfig,
        data: TrainingData,
        run_dir: str | Path | None = None,
        *,
        dist: DistInfo = DistInfo(),
        command: list[str] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        cfg.validate()
        self.cfg = cfg
        self.data = data
        self.dist = dist
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.command = list(command or [])
        #: Best validation PSNR so far per task, kept with ``best_<task>.pt`` (see _keep_best).
        self.best_validation: dict[str, float] = {}
        self._log = log if (log is not None and dist.is_main) else (lambda msg: None)
        self.device = select_device(cfg.device, dist.local_rank)
        self.use_amp = self.device.type == "cuda" and cfg.amp in ("auto", "on")
        if cfg.amp == "on" and self.device.type != "cuda":
            self._log("note: mixed precision needs a GPU; training in float32 on the CPU")

        from ..models import PatchNCELoss

        torch.manual_seed(cfg.seed)
        nets, self.nce_layers = build_networks(cfg)
        self.nets = {k: v.to(self.device) for k, v in nets.items()}
        for net in self.nets.values():
            broadcast_module(net, dist)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(self._params("G_A", "G_B"), lr=cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self._params("D_A", "D_B"), lr=cfg.lr, betas=betas)
        self.opt_f = torch.optim.Adam(self._params("F_A", "F_B"), lr=cfg.lr_f, betas=betas)
        n_const = cfg.n_constant()

        def factor(s: int) -> float:
            return lr_factor(s, n_const, cfg.max_steps)

        self.optimizers = {"G": self.opt_g, "D": self.opt_d, "F": self.opt_f}
        self.schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, factor) for k, o in self.optimizers.items()}
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.nce_loss = PatchNCELoss(cfg.nce_t)

        patch = cfg.spatial_patch()
        # the energy-stack generator reads whole mosaic tiles: patches start on tile borders
        align = int(self.nets["G_A"].spatial_multiple) if cfg.generator == "energy-stack" else 1
        common = dict(seed=cfg.seed, rank=dist.rank, world_size=dist.world_size, flip_axes=cfg.flip_axes,
                      align=align)
        partners_a, partners_b = self._paired_targets(data) if cfg.lambda_pair > 0 else ((), ())
        self.sampler_a = PatchSampler(data.a.source, data.a.train, patch, cfg.batch_size, stream=0,
                                      partners=partners_a, **common)
        self.sampler_b = PatchSampler(data.b.source, data.b.train, patch, cfg.batch_size, stream=1,
                                      partners=partners_b, **common)
        for name, net in (("D_A", self.nets["D_A"]), ("G_A", self.nets["G_A"])):
            lo = net.min_spatial_size()
            if min(patch) < lo:
                raise InputDataError(
                    format_error(
                        "--patch-size is too small for the networks",
                        reason=f"patch {list(patch)}; {name} needs >= {lo} bins per axis",
                        fix="use larger patches or fewer discriminator layers (--n-layers)",
                    )
                )
        self._fingerprints = (data.a.fingerprint(), data.b.fingerprint())
        self.step = 0
        self.elapsed = 0.0
        #: Set (e.g. by a signal handler) to stop after the current step with a checkpoint.
        self.stop_requested = False
        self.last_validation: dict[str, float] = {}
        self.loss_table: CsvTable | None = None
        self.val_table: CsvTable | None = None
        if self.run_dir is not None and dist.is_main:
            self.loss_table = CsvTable(self.run_dir / "losses.csv", LOSS_COLUMNS)
            self.val_table = CsvTable(self.run_dir / "validation.csv", VALIDATION_COLUMNS, min_flush_seconds=0.0)

    @staticmethod
    def _paired_targets(data: TrainingData) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """The sources of the paired targets of domain A (its B twins) and B (noise-free convolved)."""
        from .data import SimulatorSource

        src_a = data.a.source
        if data.split != "paired-file" or not isinstance(src_a, SimulatorSource):
            raise InputDataError(
                format_error(
                    "--lambda-pair needs both domains from one exp2sim-simulate file with --paired",
                    reason=f"the domains were split as '{data.split}'",
                    fix="pass the same simulator file as --domain-a and --domain-b with --paired, or --lambda-pair 0",
                )
            )
        return (data.b.source,), (src_a.with_kind("convolved"),)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly (tensors, numbers, strings only)."""
        d = self.data
        return {
            "format": CHECKPOINT_FORMAT,
            "version": 1,
            "step": int(self.step),
            "elapsed_seconds": float(self.elapsed),
            "config": self.cfg.to_dict(),
            "nce_layers": [int(i) for i in self.nce_layers],
            "architecture": {
                "generator": self.nets["G_A"].architecture(),
                "discriminator": {"name": "PatchDiscriminator", "config": self.nets["D_A"].config()},
                "receptive_field_radius": int(self.nets["G_A"].receptive_field_radius()),
            },
            "models": {k: v.state_dict() for k, v in self.nets.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng_state(),
            "samplers": {"a": self.sampler_a.state_dict(), "b": self.sampler_b.state_dict()},
            "split": {
                "a_train": torch.from_numpy(np.asarray(d.a.train, dtype=np.int64)),
                "a_holdout": torch.from_numpy(np.asarray(d.a.holdout, dtype=np.int64)),
                "b_train": torch.from_numpy(np.asarray(d.b.train, dtype=np.int64)),
                "b_holdout": torch.from_numpy(np.asarray(d.b.holdout, dtype=np.int64)),
                "a_fingerprint": self._fingerprints[0],
                "b_fingerprint": self._fingerprints[1],
            },
            "data": json.dumps(d.describe()),
            "validation": dict(self.last_validation),
            "best_validation": dict(self.best_validation),
            "world_size": int(self.dist.world_size),
            "package_version": __version__,
            "command": list(self.command),
        }

    def load_state_dict(self, ckpt: Mapping[str, Any]) -> None:
        """Continue from a checkpoint of the same run (same data split and networks)."""
        check_split(ckpt, self.data)
        for k, net in self.nets.items():
            net.load_state_dict(ckpt["models"][k])
        for k, o in self.optimizers.items():
            o.load_state_dict(ckpt["optimizers"][k])
        for k, s in self.schedulers.items():
            s.load_state_dict(ckpt["schedulers"][k])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        restore_rng_state(ckpt["rng"])
        self.sampler_a.load_state_dict(ckpt["samplers"]["a"])
        self.sampler_b.load_state_dict(ckpt["samplers"]["b"])
        self.step = int(ckpt["step"])
        self.elapsed = float(ckpt.get("elapsed_seconds", 0.0))
        self.last_validation = dict(ckpt.get("validation") or {})
        self.best_validation = {k: float(v) for k, v in (ckpt.get("best_validation") or {}).items()}
        if self.loss_table is not None:
            self.loss_table.resume(self.step)
        if self.val_table is not None:
            self.val_table.resume(self.step)

    def save_checkpoint(self) -> Path | None:
        """Write the rolling checkpoint atomically (rank 0 only)."""
        if self.run_dir is None or not self.dist.is_main:
            return None
        path = atomic_torch_save(self.state_dict(), self.run_dir / CHECKPOINT_NAME)
        if self.loss_table is not None:
            self.loss_table.flush()
        if self.val_table is not None:
            self.val_table.flush()
        return path

    def _keep_best(self, metrics: Mapping[str, float]) -> list[Path]:
        """Save the whole state as ``best_<task>.pt`` when the held-out PSNR of that task's
        generator beats every earlier validation of the run (rank 0 only).

        GAN losses say little about the translation's fidelity, and the held-out PSNR of an
        unpaired GAN can peak long before the last step; ``exp2sim-train export
        RUN/best_deconvolve.pt --task deconvolve`` then exports the selected state.
        """
        written: list[Path] = []
        if self.run_dir is None or not self.dist.is_main:
            return written
        for task in BEST_TASKS:
            value = metrics.get(f"psnr_{task}")
            if value is None or not np.isfinite(value) or value <= self.best_validation.get(task, -np.inf):
                continue
            self.best_validation[task] = float(value)
            written.append(atomic_torch_save(self.state_dict(), self.run_dir / best_checkpoint_name(task)))
        return written

    # ------------------------------------------------------------------ steps
    def _params(self, *names: str) -> list[torch.nn.Parameter]:
        return list(itertools.chain.from_iterable(self.nets[n].parameters() for n in names))

    def _set_requires_grad(self, names: tuple[str, ...], flag: bool) -> None:
        for n in names:
            for p in self.nets[n].parameters():
                p.requires_grad_(flag)

    def _autocast(self):
        return torch.autocast(device_type="cuda", dtype=torch.float16, enabled=self.use_amp)

    def _nce(self, src: torch.Tensor, fake_in: torch.Tensor, key_g: str, query_g: str, key_f: str, query_f: str,
             gen: torch.Generator) -> torch.Tensor:
        from ..models import feature_masks

        with torch.no_grad():
            feat_k = self.nets[key_g].nce_features(src, self.nce_layers)
        masks = feature_masks(src[:, 1:2], feat_k)
        keys, ids = self.nets[key_f](feat_k, self.cfg.num_patches, None, masks, generator=gen)
        feat_q = self.nets[query_g].nce_features(fake_in, self.nce_layers)
        queries, _ = self.nets[query_f](feat_q, self.cfg.num_patches, ids)
        total = sum(self.nce_loss(q.float(), k.float()) for q, k in zip(queries, keys))
        return total / len(keys)

    def train_step(self) -> dict[str, float]:
        """One iteration (D step, then G and F step); returns the loss terms as floats."""
        cfg, nets, dev = self.cfg, self.nets, self.device
        t0 = time.perf_counter()
        paired = cfg.lambda_pair > 0
        if paired:
            real_a, pair_a = (torch.from_numpy(x).to(dev) for x in self.sampler_a.next_batch_with_partners())
            real_b, pair_b = (torch.from_numpy(x).to(dev) for x in self.sampler_b.next_batch_with_partners())
        else:
            real_a = torch.from_numpy(self.sampler_a.next_batch()).to(dev)
            real_b = torch.from_numpy(self.sampler_b.next_batch()).to(dev)
        va, vb = real_a[:, 1:2], real_b[:, 1:2]
        vab = va * vb if cfg.common_d_mask else None
        gen = _step_generator(cfg.seed, self.dist.rank, self.step)
        mode = cfg.gan_mode
        for n in ("G_A", "G_B", "D_A", "D_B", "F_A", "F_B"):
            nets[n].train()

        with self._autocast():
            fake_b = nets["G_A"](real_a).float() * va  # A -> B, masked like its source
            fake_a = nets["G_B"](real_b).float() * vb
        fake_b_in = torch.cat([fake_b, va], 1)
        fake_a_in = torch.cat([fake_a, vb], 1)
        # what the discriminators see
        if vab is not None:
            d_real_b, d_fake_b = torch.cat([real_b[:, :1] * vab, vab], 1), torch.cat([fake_b * vab, vab], 1)
            d_real_a, d_fake_a = torch.cat([real_a[:, :1] * vab, vab], 1), torch.cat([fake_a * vab, vab], 1)
            m_real_b = m_fake_b = m_real_a = m_fake_a = vab
        else:
            d_real_b, d_fake_b, d_real_a, d_fake_a = real_b, fake_b_in, real_a, fake_a_in
            m_real_b, m_fake_b, m_real_a, m_fake_a = vb, va, va, vb
        if cfg.d_input_norm:
            d_real_b, d_fake_b, d_real_a, d_fake_a = (
                L.patch_rms_normalise(t) for t in (d_real_b, d_fake_b, d_real_a, d_fake_a))

        # ---- discriminators
        self._set_requires_grad(("D_A", "D_B"), True)
        self.opt_d.zero_grad(set_to_none=True)
        with self._autocast():
            out = {}
            for tag, dname, real, fake, mr, mf in (
                ("b", "D_B", d_real_b, d_fake_b, m_real_b, m_fake_b),
                ("a", "D_A", d_real_a, d_fake_a, m_real_a, m_fake_a),
            ):
                pr, ar = nets[dname](real)
                pf, af = nets[dname](fake.detach())
                wr, wf = L.mask_weights(mr, pr.shape[2:]), L.mask_weights(mf, pf.shape[2:])
                out[f"d_{tag}_gan"] = L.gan_loss_d(pr, pf, wr, wf, mode)
                out[f"d_{tag}_aux"] = 0.5 * (L.aux_loss(ar, 0.0, wr) + L.aux_loss(af, 1.0, wf))
            loss_d = sum(cfg.lambda_gan * out[f"d_{t}_gan"] + cfg.lambda_aux * out[f"d_{t}_aux"] for t in "ab")
        self.scaler.scale(loss_d).backward()
        average_gradients(self._params("D_A", "D_B"), self.dist)
        self.scaler.step(self.opt_d)

        # ---- generators and heads
        self._set_requires_grad(("D_A", "D_B"), False)
        self.opt_g.zero_grad(set_to_none=True)
        self.opt_f.zero_grad(set_to_none=True)
        with self._autocast():
            for tag, dname, fake, mf in (("a", "D_B", d_fake_b, m_fake_b), ("b", "D_A", d_fake_a, m_fake_a)):
                pf, af = nets[dname](fake)
                wf = L.mask_weights(mf, pf.shape[2:])
                out[f"g_{tag}_gan"] = L.gan_loss_g(pf, wf, mode)
                out[f"g_{tag}_aux"] = L.aux_loss(af, 0.0, wf)
            out["g_a_nce"] = self._nce(real_a, fake_b_in, "G_A", "G_B", "F_A", "F_B", gen)
            out["g_b_nce"] = self._nce(real_b, fake_a_in, "G_B", "G_A", "F_B", "F_A", gen)
            if cfg.lambda_idt > 0:
                out["g_a_idt"] = L.masked_l1(nets["G_A"](real_b), real_b[:, :1], vb)
                out["g_b_idt"] = L.masked_l1(nets["G_B"](real_a), real_a[:, :1], va)
            else:
                out["g_a_idt"] = out["g_b_idt"] = torch.zeros((), device=dev)
            if cfg.lambda_cyc > 0:
                det = cfg.cycle_detach
                out["g_a_cyc"] = L.cycle_loss(nets["G_B"], fake_b_in, real_a[:, :1], va, detach=det)
                out["g_b_cyc"] = L.cycle_loss(nets["G_A"], fake_a_in, real_b[:, :1], vb, detach=det)
            else:
                out["g_a_cyc"] = out["g_b_cyc"] = torch.zeros((), device=dev)
            out["g_a_int"] = L.intensity_loss(fake_b, real_a[:, :1], va)
            out["g_b_int"] = L.intensity_loss(fake_a, real_b[:, :1], vb)
            if paired:
                out["g_a_pair"] = L.paired_l1(fake_b, pair_a, va)
                out["g_b_pair"] = L.paired_l1(fake_a, pair_b, vb)
            else:
                out["g_a_pair"] = out["g_b_pair"] = torch.zeros((), device=dev)
            loss_g = 0.5 * sum(
                cfg.lambda_gan * out[f"g_{t}_gan"] + cfg.lambda_nce * out[f"g_{t}_nce"]
                + cfg.lambda_idt * out[f"g_{t}_idt"] + cfg.lambda_aux * out[f"g_{t}_aux"]
                + cfg.lambda_int * out[f"g_{t}_int"] + cfg.lambda_cyc * out[f"g_{t}_cyc"]
                + cfg.lambda_pair * out[f"g_{t}_pair"]
                for t in "ab"
            )
        self.scaler.scale(loss_g).backward()
        average_gradients(self._params("G_A", "G_B"), self.dist)
        average_gradients(self._params("F_A", "F_B"), self.dist)
        self.scaler.step(self.opt_g)
        self.scaler.step(self.opt_f)
        self.scaler.update()
        lr = self.opt_g.param_groups[0]["lr"]
        for s in self.schedulers.values():
            s.step()
        self.step += 1
        row = {k: float(v.detach()) for k, v in out.items()}
        row["d_total"] = float(loss_d.detach())
        row["g_total"] = float(loss_g.detach())
        row["lr"] = float(lr)
        row["seconds_per_step"] = time.perf_counter() - t0
        if not all(math.isfinite(v) for v in row.values()):
            raise FloatingPointError(
                format_error(
                    f"Training diverged at step {self.step}",
                    reason=f"non-finite loss terms: {[k for k, v in row.items() if not math.isfinite(v)]}",
                    fix="lower --lr, check the data for extreme values, or resume from the last checkpoint",
                )
            )
        return row

    # ------------------------------------------------------------- validation
    def validate(self) -> dict[str, float]:
        """Metrics on the paired held-out samples (empty dict when there are none)."""
        pairs = self.data.val_pairs
        if not pairs:
            return {}
        g_a, g_b = self.nets["G_A"], self.nets["G_B"]
        g_a.eval()
        g_b.eval()
        res: dict[str, list[float]] = {k: [] for k in VALIDATION_COLUMNS if k != "step"}
        feats: dict[str, list[np.ndarray]] = {"real_b": [], "fake_b": [], "ident_b": [], "real_a": [], "fake_a": []}
        try:
            for a, b in pairs:
                fake_b = translate_sample(g_a, a, self.device)
                fake_a = translate_sample(g_b, b, self.device)
                for name, pred, target in (("identity", a, b), ("deconvolve", fake_b, b), ("convolve", fake_a, a)):
                    res[f"psnr_{name}"].append(masked_psnr(pred, target))
                    res[f"ssim_{name}"].append(masked_ssim(pred, target))
                res["intensity_ratio_deconvolve"].append(intensity_ratio(fake_b, b))
                res["intensity_ratio_convolve"].append(intensity_ratio(fake_a, a))
                feats["real_b"].append(encode_sample(g_a, b, self.device))
                feats["fake_b"].append(encode_sample(g_a, fake_b, self.device))
                feats["ident_b"].append(encode_sample(g_a, a, self.device))
                feats["real_a"].append(encode_sample(g_b, a, self.device))
                feats["fake_a"].append(encode_sample(g_b, fake_a, self.device))
        finally:
            g_a.train()
            g_b.train()
        out = {k: summarise(v, "median" if k.startswith("intensity") else "mean") for k, v in res.items()
               if not k.startswith("fid")}
        if len(pairs) >= 2:
            fb = [np.stack(feats[k]) for k in ("real_b", "fake_b", "ident_b", "real_a", "fake_a")]
            out["fid_deconvolve"] = frechet_distance(fb[1], fb[0])
            out["fid_identity"] = frechet_distance(fb[2], fb[0])
            out["fid_convolve"] = frechet_distance(fb[4], fb[3])
        return out

    # ------------------------------------------------------------------- loop
    def fit(self) -> dict[str, Any]:
        """Train until ``max_steps``, ``stop_at_step`` or ``max_minutes``; return a summary.

        A checkpoint is written every ``checkpoint_every`` steps and when the loop ends for any
        reason other than an exception.
        """
        cfg = self.cfg
        end = cfg.max_steps if cfg.stop_at_step is None else min(cfg.stop_at_step, cfg.max_steps)
        if self.run_dir is not None and self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2))
        start_wall = time.monotonic()
        reason = "max_steps" if end == cfg.max_steps else "stop_at_step"
        self._log(f"training from step {self.step} to {end} on {self.device} "
                  f"(world size {self.dist.world_size}, amp {'on' if self.use_amp else 'off'})")
        while self.step < end:
            t0 = time.monotonic()
            row = self.train_step()
            self.elapsed += time.monotonic() - t0
            logged = False
            if self.loss_table is not None and (self.step % cfg.log_every == 0 or self.step == end):
                self.loss_table.add({"step": self.step, **row})
                logged = True
            if self.step % cfg.validate_every == 0 or self.step == end:
                if self.dist.is_main:
                    self.last_validation = self.validate()
                    if self.val_table is not None and self.last_validation:
                        self.val_table.add({"step": self.step, **self.last_validation})
                    self._keep_best(self.last_validation)
                    self._log(self._progress(row))
            if self.step % cfg.checkpoint_every == 0 and self.step < end:
                self.save_checkpoint()
                self._plots()
            over = cfg.max_minutes is not None and (time.monotonic() - start_wall) / 60.0 >= cfg.max_minutes
            over = over or self.stop_requested or self._stop_file()
            if broadcast_flag(over, self.dist, "cuda" if self.device.type == "cuda" else "cpu") and self.step < end:
                reason = "stop requested" if (self.stop_requested or self._stop_file(remove=True)) else "max_minutes"
                if self.loss_table is not None and not logged:
                    self.loss_table.add({"step": self.step, **row})
                if self.dist.is_main and self.val_table is not None:
                    self.last_validation = self.validate()
                    if self.last_validation:
                        self.val_table.add({"step": self.step, **self.last_validation})
                    self._keep_best(self.last_validation)
                break
        self.save_checkpoint()
        self._plots()
        self._log(f"stopped at step {self.step} ({reason}); {self.elapsed / max(self.step, 1):.3f} s/step")
        return {"step": self.step, "reason": reason, "validation": dict(self.last_validation),
                "seconds": self.elapsed}

    def _stop_file(self, remove: bool = False) -> bool:
        """True when ``RUN_DIR/STOP`` exists (rank 0; ``touch RUN_DIR/STOP`` stops a run cleanly)."""
        if self.run_dir is None or not self.dist.is_main:
            return False
        path = self.run_dir / STOP_FILE
        found = path.exists()
        if found and remove:
            path.unlink(missing_ok=True)
        return found

    def _progress(self, row: Mapping[str, float]) -> str:
        v = self.last_validation
        msg = f"step {self.step}/{self.cfg.max_steps}: D {row['d_total']:.4f} G {row['g_total']:.4f}"
        if v:
            msg += (f" | val PSNR deconv {v.get('psnr_deconvolve', float('nan')):.2f} dB"
                    f" (identity {v.get('psnr_identity', float('nan')):.2f}),"
                    f" conv {v.get('psnr_convolve', float('nan')):.2f} dB")
        return msg

    def _plots(self) -> None:
        if not self.cfg.plot or self.run_dir is None or not self.dist.is_main:
            return
        if self.loss_table is not None:
            plot_table(self.loss_table, self.run_dir / "losses.png", columns=LOSS_COLUMNS[2:-1], title="losses")
        if self.val_table is not None:
            plot_table(self.val_table, self.run_dir / "validation.png", title="validation (held-out pairs)")
