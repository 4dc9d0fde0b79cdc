"""``exp2sim-train classifier``: train the DUQ spin-wave model classifier and export its bundle.

Data: one or more ``exp2sim-simulate`` mosaic data sets (HDF5, see
docs/developer/architecture.md); each model group is a class, labelled by its ``label``
attribute, and the class names are the group names in label order. By default the classifier
learns from the **unconvolved** spectra (as in seed 000: measured data are deconvolved by the
Exp2SimGAN generator before classification); ``--kind convolved`` trains on resolution-
convolved spectra instead.

Training: a seeded split into training and held-out samples (``--val-fraction``), Adam, the
DUQ loss (BCE + two-sided gradient penalty), the centroid EMA after every step, and each
epoch a held-out evaluation; the weights of the best held-out epoch are kept. Every sample is
normalised by the RMS of its unmasked bins, exactly as at inference.

Augmentation (the input is scale-free, so a random global intensity factor would change
nothing): a mild Gaussian blur (sigma up to ``--blur`` bins, normalised over the unmasked bins
so the mask does not bleed), a blur along the mosaic's energy-window axis (sigma up to
``--energy-blur`` windows; the in-plane blur never mixes two windows), signal-dependent noise ``x + N(0, 1) (a sqrt(|x|) + b)`` with
``a, b`` up to ``--noise`` (count-statistics-like plus a flat background), and random extra
masking (with probability ``--mask-prob`` a random rectangle of up to a quarter of a tile row
block and 0-5 % random bins), and with ``--flip`` the inversion Q -> -Q inside every tile (an
exact symmetry of the simulated spectra; single mirror flips are not, so they are not used),
after which the sample is renormalised. They make the classifier
robust to the noise, residual resolution and coverage differences of measured data.

Domain alignment (``--align FILE.h5``, off by default): the classifier will read deconvolved
measured spectra, which keep some of the instrument's broadening. Their labels are unknown,
but the spectra themselves are at hand; with ``--align`` every training step also draws a
batch of unlabelled convolved spectra from FILE.h5, deconvolved by ``--align-generator``
(prepared once, before training), sends it through the network together with the labelled
batch (so batch normalisation sees both), and adds ``--align-weight`` times the maximum mean
discrepancy between the two batches' feature vectors (:func:`mantid_exp2sim.models.duq.feature_mmd`):
unsupervised domain alignment. Labels, BCE, gradient penalty and centroids use the labelled
unconvolved spectra only.

Export: thresholds calibrated on the held-out data
(:func:`mantid_exp2sim.classify.calibrate_thresholds`), the ONNX graph (checked against
PyTorch), the weights, class names, the mosaic layout and the exact command, via
:func:`mantid_exp2sim.bundle.make_manifest` and :func:`mantid_exp2sim.bundle.write_bundle`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import BundleError, InputDataError, format_error

__all__ = [
    "ClassifierConfig",
    "LabelledSpectra",
    "augment_batch",
    "train_classifier",
    "export_classifier",
    "get_parser",
    "main",
]


@dataclass
class ClassifierConfig:
    """Settings of a classifier training run (every field has a command-line option)."""

    train: list[str] = field(default_factory=list)
    kind: str = "unconvolved"
    models: list[str] | None = None
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
    widths: list[int] = field(default_factory=lambda: [16, 32, 32, 32])
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
    ood_quantile: float = 0.01
    threads: int | None = None
    exporter: str = "auto"


# ------------------------------------------------------------------------------ data
class LabelledSpectra:
    """Labelled samples of one kind from ``exp2sim-simulate`` data sets (lazy reads).

    Parameters
    ----------
    paths
        Data-set files.
    kind
        ``"unconvolved"`` or ``"convolved"``.
    models
        Model groups to use (default: all groups holding ``kind``).

    Attributes
    ----------
    classes
        Class names in label order (label i -> ``classes[i]``).
    labels
        ``(n,)`` class index of every sample.
    """

    def __init__(self, paths: Sequence[str], kind: str = "unconvolved", models: Sequence[str] | None = None):
        import h5py

        if kind not in ("convolved", "unconvolved"):
            raise InputDataError(
                format_error("Invalid --kind", reason=f"{kind!r}; allowed: convolved, unconvolved")
            )
        if not paths:
            raise InputDataError(format_error("No training data given", fix="pass --train FILE.h5"))
        self.kind = kind
        self._files = []
        label_of: dict[str, int] = {}
        entries: list[tuple[int, str, int]] = []
        shape = None
        self.masks: list[np.ndarray | None] = []
        for fi, p in enumerate(paths):
            path = Path(p)
            if not path.is_file():
                raise InputDataError(format_error(f"Training data file not found: {path}", fix="check --train"))
            f = h5py.File(path, "r")
            self._files.append(f)
            if f.attrs.get("format") != "exp2sim-dataset":
                raise InputDataError(
                    format_error(
                        f"'{path}' is not an exp2sim-simulate data set",
                        reason=f"root attribute format={f.attrs.get('format')!r}",
                        fix="make one with exp2sim-simulate (representation mosaic)",
                    )
                )
            groups = [g for g, v in f.items() if isinstance(v, h5py.Group) and kind in v]
            if models:
                groups = [g for g in groups if g in models]
            for g in groups:
                lab = int(f[g].attrs.get("label", -1))
                if g in label_of and label_of[g] != lab:
                    raise InputDataError(
                        format_error(
                            f"Model '{g}' has different labels in different files",
                            reason=f"{label_of[g]} and {lab}",
                        )
                    )
                label_of[g] = lab
                ds = f[g][kind]
                if shape is None:
                    shape = tuple(ds.shape[1:])
                elif tuple(ds.shape[1:]) != shape:
                    raise InputDataError(
                        format_error(
                            "Training samples differ in shape",
                            reason=f"{shape} and {tuple(ds.shape[1:])} ({path}:{g})",
                        )
                    )
                n = int(f[g].attrs.get("complete", ds.shape[0]))
                entries.extend((fi, g, r) for r in range(n))
            self.masks.append(np.asarray(f["mask"][...], dtype=bool) if "mask" in f else None)
        if len(label_of) < 2:
            raise InputDataError(
                format_error(
                    "The classifier needs at least two spin models",
                    reason=f"found {sorted(label_of)} with '{kind}' samples",
                    fix="simulate both models (e.g. dimer and goodenough) or check --models",
                )
            )
        self.classes = sorted(label_of, key=lambda g: (label_of[g], g))
        index = {g: i for i, g in enumerate(self.classes)}
        self.shape = shape
        self._entries = entries
        self.labels = np.array([index[g] for _, g, _ in entries], dtype=np.int64)

    def __len__(self) -> int:
        return len(self._entries)

    def preload(self, indices: Sequence[int], *, max_bytes: float = 4e9) -> bool:
        """Keep samples ``indices`` in memory (float32) when they fit in ``max_bytes``.

        Returns
        -------
        bool
            Whether they were loaded (later reads of them come from memory).
        """
        idx = np.unique(np.asarray(indices, dtype=np.int64))
        size = idx.size * int(np.prod(self.shape or (0,))) * 4
        if size > max_bytes:
            return False
        self._cache = {int(i): self._read_file(int(i)) for i in idx}
        return True

    def read(self, i: int) -> np.ndarray:
        """Sample ``i`` as float32 with NaN at masked bins (the file's coverage mask applied)."""
        cached = getattr(self, "_cache", {}).get(int(i))
        if cached is not None:
            return cached.copy()
        return self._read_file(int(i))

    def _read_file(self, i: int) -> np.ndarray:
        fi, g, r = self._entries[int(i)]
        x = np.array(self._files[fi][g][self.kind][r], dtype=np.float32)
        m = self.masks[fi]
        if m is not None and m.shape == x.shape:
            x[m] = np.nan
        return x

    def read_batch(self, idx: Sequence[int]) -> np.ndarray:
        """``(len(idx), *shape)`` samples."""
        return np.stack([self.read(i) for i in idx])

    def close(self) -> None:
        """Close the files."""
        for f in self._files:
            f.close()


def _split(labels: np.ndarray, val_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split: the same held-out fraction of every class (at least one each)."""
    train, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = max(1, int(round(val_fraction * idx.size)))
        if idx.size - n_val < 1:
            raise InputDataError(
                format_error(
                    f"Too few samples of class {c} to hold some out",
                    reason=f"{idx.size} samples",
                    fix="simulate more samples",
                )
            )
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return rng.permutation(np.concatenate(train)), np.sort(np.concatenate(val))


# ------------------------------------------------------------------------- augmentation
def cycled_spectra(
    data: LabelledSpectra,
    indices: Sequence[int],
    models: Sequence[str] | None = None,
    *,
    log: Callable[[str], None] | None = None,
) -> dict[int, np.ndarray]:
    """``deconvolve(convolve(x))`` of every sample in ``indices``, with the 2D generator bundles.

    What a spectrum looks like after the paper's pipeline has taken it through the instrument
    (the convolution generator) and back (the deconvolution generator), with the label of
    the unconvolved spectrum it came from: training on such copies teaches the classifier to
    ignore what deconvolution cannot restore, with no convolved simulation needed.

    Parameters
    ----------
    data
        The labelled unconvolved spectra.
    indices
        Samples to cycle (the training split).
    models
        ``[convolve_bundle, deconvolve_bundle]`` paths; None: the shipped 2D defaults.
    """
    from ..histogram import MDHisto
    from ..inference import translate

    if models is not None and len(models) != 2:
        raise InputDataError(
            format_error(
                "--cycle-models needs two bundles",
                reason=f"got {len(models)}: {list(models)}",
                fix="give the convolve bundle, then the deconvolve bundle",
            )
        )
    paths = list(models) if models else [None, None]
    loaded = [
        _generator_2d(path, task, "--cycle-models", "give the convolve bundle, then the deconvolve bundle, both 2D")
        for path, task in zip(paths, ("convolve", "deconvolve"))
    ]
    conv, dec = loaded
    out: dict[int, np.ndarray] = {}
    t0 = time.perf_counter()
    for n, i in enumerate(indices):
        h = MDHisto.from_array(data.read(int(i)).astype(np.float64))
        y = translate(translate(h, conv, device="cpu"), dec, device="cpu").signal
        out[int(i)] = y.astype(np.float32)
        if log and (n + 1) % 200 == 0:
            log(f"classifier: cycled {n + 1}/{len(indices)} spectra through the generators "
                f"({time.perf_counter() - t0:.0f} s)")
    return out


def _generator_2d(path: str | None, task: str, option: str, fix: str) -> Any:
    """Load a 2D generator bundle for ``task`` (None: the shipped default), naming ``option``."""
    from ..bundle import load_bundle
    from ..bundle.defaults import default_bundle_path

    where = default_bundle_path(task, 2) if path is None else path
    try:
        return load_bundle(where, kind="generator", task=task, ndim=2)
    except BundleError as exc:
        raise InputDataError(
            format_error(f"{option}: '{where}' is not a 2D {task} bundle", reason=str(exc), fix=fix)
        ) from None


def alignment_spectra(
    paths: Sequence[str],
    generator: str | None = None,
    *,
    max_samples: int | None = None,
    seed: int = 0,
    shape: Sequence[int] | None = None,
    log: Callable[[str], None] | None = None,
) -> np.ndarray:
    """Unlabelled spectra of the domain the classifier will read, for domain alignment.

    The **convolved** spectra of ``paths`` (their labels are never read), each taken through
    the deconvolution generator, as ClassifySpinWaveModel's ``Deconvolve`` option does with
    measured data.

    Parameters
    ----------
    paths
        Data-set files holding convolved spectra.
    generator
        The deconvolution bundle; None: the shipped 2D default; ``"none"``: use the
        convolved spectra as they are.
    max_samples
        Use at most this many spectra (a seeded random choice).
    seed
        Seed of that choice.
    shape
        The training spectra's shape; the data sets must match it (checked before any work).

    Returns
    -------
    numpy.ndarray
        ``(n, H, W)`` float32 spectra, NaN where masked.
    """
    from ..histogram import MDHisto
    from ..inference import translate

    data = LabelledSpectra(paths, "convolved")
    if shape is not None and tuple(data.shape or ()) != tuple(shape):
        data.close()
        raise InputDataError(
            format_error(
                "--align spectra do not match the training spectra",
                reason=f"shape {tuple(data.shape or ())} against {tuple(shape)}",
                fix="align to data sets with the same mosaic layout as --train",
            )
        )
    if max_samples is not None and max_samples < 1:
        data.close()
        raise InputDataError(
            format_error("--align-samples must be at least 1", reason=f"got {max_samples}",
                         fix="give a positive number of spectra")
        )
    idx = np.arange(len(data))
    if max_samples is not None and max_samples < len(idx):
        idx = np.sort(np.random.default_rng(seed).choice(idx, int(max_samples), replace=False))
    dec = None
    if generator is None or str(generator).lower() != "none":
        dec = _generator_2d(generator, "deconvolve", "--align-generator",
                            "give a 2D deconvolve bundle, or 'none' to align to the convolved spectra")
    out = []
    t0 = time.perf_counter()
    for n, i in enumerate(idx):
        x = data.read(int(i)).astype(np.float64)
        if dec is not None:
            x = translate(MDHisto.from_array(x), dec, device="cpu").signal
        out.append(x.astype(np.float32))
        if log and (n + 1) % 200 == 0:
            log(f"classifier: prepared {n + 1}/{len(idx)} alignment spectra ({time.perf_counter() - t0:.0f} s)")
    data.close()
    return np.stack(out)


def _normalise(signal: np.ndarray) -> np.ndarray:
    """Per-sample scale-free input ``(N, 2, H, W)`` (RMS of each sample's unmasked bins)."""
    from ..models.normalisation import to_network_input

    x = np.asarray(signal, dtype=np.float64)
    valid = ~np.isnan(x)
    sq = np.where(valid, x, 0.0) ** 2
    n = valid.reshape(x.shape[0], -1).sum(1)
    scale = np.sqrt(sq.reshape(x.shape[0], -1).sum(1) / np.maximum(n, 1))
    return to_network_input(x, scale, batched=True)


def _blur_windows(sig: "Any", valid: "Any", sigma: "Any", largest: float, tile: int) -> "Any":
    """Gaussian blur of ``(N, H, W)`` mosaics along the window axis (column blocks of ``tile``).

    One sigma per sample (in windows); normalised over the unmasked bins so the mask does not
    bleed, with the windows beyond the first and last one treated as masked.
    """
    import torch
    import torch.nn.functional as F

    n, h, w = sig.shape
    nw = w // tile
    r = max(1, int(math.ceil(3 * largest)))
    t = torch.arange(-r, r + 1, dtype=sig.dtype)
    kern = torch.exp(-0.5 * (t[None, :] / sigma.clamp_min(1e-3)[:, None]) ** 2)
    kern = kern / kern.sum(1, keepdim=True)  # (n, 2r+1)
    # (n, 2, h, nw, tile) -> windows last: (1, n*2*h*tile channels, nw)
    sv = torch.stack([sig * valid, valid], 1).reshape(n, 2, h, nw, tile).permute(0, 1, 2, 4, 3)
    sv = F.pad(sv.reshape(1, -1, nw), (r, r))
    k = kern.repeat_interleave(2 * h * tile, 0)[:, None, :]
    sv = F.conv1d(sv, k, groups=k.shape[0]).reshape(n, 2, h, tile, nw).permute(0, 1, 2, 4, 3).reshape(n, 2, h, w)
    blurred = sv[:, 0] / sv[:, 1].clamp_min(1e-6)
    return torch.where(valid > 0, blurred, torch.zeros_like(sig))


def augment_batch(
    x: "Any",
    generator: "Any",
    *,
    noise: float = 0.1,
    blur: float = 1.0,
    energy_blur: float = 0.0,
    mask_prob: float = 0.5,
    flip: bool = True,
    tile: int = 40,
) -> "Any":
    """Random blur, noise and extra masking of a normalised batch, then renormalisation.

    Parameters
    ----------
    x
        torch tensor ``(N, 2, H, W)``: scaled signal and valid mask.
    generator
        ``torch.Generator`` (seeded by the caller).
    noise
        Largest noise amplitudes ``a`` and ``b`` (see the module docstring).
    blur
        Largest Gaussian sigma in bins (0: no blur).
    energy_blur
        Largest Gaussian sigma, in energy windows, of a blur along the mosaic's energy-window
        axis (between the ``tile``-wide column blocks of each Ei row block; 0: none). The
        in-plane ``blur`` mixes neighbouring bins of one tile only, never two energy windows.
    mask_prob
        Probability of extra masking per sample.
    flip
        With probability 1/2 per sample, invert Q (flip both axes) inside every tile.

    Returns
    -------
    torch.Tensor
        A new ``(N, 2, H, W)`` batch with RMS 1 over each sample's unmasked bins.
    """
    import torch
    import torch.nn.functional as F

    n, _, h, w = x.shape
    sig = x[:, 0].clone()
    valid = x[:, 1].clone()

    def u(*shape):
        return torch.rand(*shape, generator=generator)

    if blur > 0:
        sigma = u(n) * blur
        r = max(1, int(math.ceil(3 * blur)))
        t = torch.arange(-r, r + 1, dtype=sig.dtype)
        kern = torch.exp(-0.5 * (t[None, :] / sigma.clamp_min(1e-3)[:, None]) ** 2)
        kern = kern / kern.sum(1, keepdim=True)  # (n, 2r+1)
        sv = torch.stack([sig * valid, valid], 1)  # (n, 2, h, w)
        # depthwise separable blur, one kernel per sample
        sv = sv.reshape(1, 2 * n, h, w)
        kx = kern.repeat_interleave(2, 0)[:, None, None, :]
        ky = kern.repeat_interleave(2, 0)[:, None, :, None]
        sv = F.conv2d(F.pad(sv, (r, r, 0, 0), mode="replicate"), kx, groups=2 * n)
        sv = F.conv2d(F.pad(sv, (0, 0, r, r), mode="replicate"), ky, groups=2 * n)
        sv = sv.reshape(n, 2, h, w)
        blurred = sv[:, 0] / sv[:, 1].clamp_min(1e-6)
        sig = torch.where(valid > 0, blurred, torch.zeros_like(sig))
    if energy_blur > 0 and w % tile == 0:
        sig = _blur_windows(sig, valid, u(n) * energy_blur, energy_blur, tile)
    if noise > 0:
        a = (u(n) * noise)[:, None, None]
        b = (u(n) * noise)[:, None, None]
        eps = torch.randn(sig.shape, generator=generator, dtype=sig.dtype)
        sig = (sig + eps * (a * sig.abs().sqrt() + b)) * valid
    if flip and h % tile == 0 and w % tile == 0:
        # Q -> -Q inside every (Ei, energy window) tile: an exact symmetry of the spectra
        # (inversion), applied to signal and mask together.
        inv = u(n) < 0.5
        if inv.any():
            sv = torch.stack([sig, valid], 1)[inv].reshape(-1, 2, h // tile, tile, w // tile, tile)
            sv = sv.flip(3).flip(5).reshape(-1, 2, h, w)
            sig = sig.clone()
            valid = valid.clone()
            sig[inv], valid[inv] = sv[:, 0], sv[:, 1]
    if mask_prob > 0:
        drop = u(n) < mask_prob
        for i in torch.nonzero(drop).flatten().tolist():
            rh = int(u(1).item() * tile) + 1
            rw = int(u(1).item() * w / 4) + 1
            r0 = int(u(1).item() * (h - rh + 1))
            c0 = int(u(1).item() * (w - rw + 1))
            valid[i, r0 : r0 + rh, c0 : c0 + rw] = 0.0
            frac = u(1).item() * 0.05
            valid[i] = valid[i] * (u(h, w) >= frac).to(valid.dtype)
        sig = sig * valid
    cnt = valid.flatten(1).sum(1).clamp_min(1.0)
    rms = ((sig * sig).flatten(1).sum(1) / cnt).sqrt()
    sig = torch.where(rms[:, None, None] > 0, sig / rms.clamp_min(1e-12)[:, None, None], sig)
    return torch.stack([sig, valid], 1)


# ----------------------------------------------------------------------------- training
def _evaluate(model: Any, data: LabelledSpectra, idx: np.ndarray, batch: int) -> np.ndarray:
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(idx), batch):
            x = torch.from_numpy(_normalise(data.read_batch(idx[s : s + batch])))
            out.append(model(x).numpy().astype(np.float64))
    return np.concatenate(out) if out else np.zeros((0, len(data.classes)))


def train_classifier(
    cfg: ClassifierConfig,
    *,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Train a DUQ classifier on simulator data.

    Returns
    -------
    dict
        ``model`` (eval mode, best held-out epoch), ``classes``, ``history`` (per-epoch
        losses and held-out metrics), ``holdout_k`` ``(n_val, n_classes)``, ``holdout_labels``,
        ``thresholds``, ``data`` (a description), ``seconds``.
    """
    import torch

    from ..classify import calibrate_thresholds
    from ..models.duq import DUQClassifier, duq_loss

    say = log or (lambda _msg: None)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    data = LabelledSpectra(cfg.train, cfg.kind, cfg.models)
    labels = data.labels
    pool = np.arange(len(data))
    if cfg.max_samples is not None and cfg.max_samples < len(data):
        keep = []
        per = max(1, cfg.max_samples // len(data.classes))
        for c in range(len(data.classes)):
            keep.append(rng.permutation(np.flatnonzero(labels == c))[:per])
        pool = np.sort(np.concatenate(keep))
    tr_local, va_local = _split(labels[pool], cfg.val_fraction, rng)
    tr, va = pool[tr_local], pool[va_local]
    if data.shape is None or len(data.shape) != 2:
        raise InputDataError(
            format_error("The classifier trains on 2D mosaics", reason=f"sample shape {data.shape}")
        )
    if data.preload(np.concatenate([tr, va])):
        say(f"classifier: {len(tr) + len(va)} samples held in memory")
    cycled: dict[int, np.ndarray] = {}
    if cfg.cycle_augment > 0:
        cycled = cycled_spectra(data, tr, cfg.cycle_models, log=say)
    target: np.ndarray | None = None
    if cfg.align:
        if not cfg.align_weight >= 0:
            raise InputDataError(
                format_error("--align-weight must not be negative", reason=f"got {cfg.align_weight}",
                             fix="give a weight >= 0 (0 still lets batch normalisation see both domains)")
            )
        target = alignment_spectra(cfg.align, cfg.align_generator, max_samples=cfg.align_samples,
                                   seed=cfg.seed, shape=data.shape, log=say)
        say(f"classifier: aligning features to {len(target)} unlabelled spectra "
            f"(weight {cfg.align_weight:g})")
    model = DUQClassifier(
        n_classes=len(data.classes),
        input_shape=data.shape,
        widths=cfg.widths,
        feature_dim=cfg.feature_dim,
        embedding_dim=cfg.embedding_dim,
        length_scale=cfg.length_scale,
        gamma=cfg.gamma,
        batch_norm=cfg.batch_norm,
    )
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(tr) / cfg.batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps_per_epoch)
    say(
        f"classifier: {len(tr)} training / {len(va)} held-out {cfg.kind} samples, classes "
        f"{data.classes}, {sum(p.numel() for p in model.parameters())} parameters"
    )
    def augment(x: Any) -> Any:
        return augment_batch(x, gen, noise=cfg.noise, blur=cfg.blur, energy_blur=cfg.energy_blur,
                             mask_prob=cfg.mask_prob, flip=cfg.flip)

    history: list[dict[str, float]] = []
    best: tuple[float, float] | None = None
    best_state = None
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        order = tr[rng.permutation(len(tr))]
        sums = {"loss": 0.0, "bce": 0.0, "gp": 0.0, "accuracy": 0.0}
        if target is not None:
            sums["align"] = 0.0
        for s in range(0, len(order), cfg.batch_size):
            idx = order[s : s + cfg.batch_size]
            batch = data.read_batch(idx)
            if cycled:
                swap = rng.random(len(idx)) < cfg.cycle_augment
                for j in np.flatnonzero(swap):
                    batch[j] = cycled[int(idx[j])]
            x = torch.from_numpy(_normalise(batch))
            x = augment(x)
            y = torch.nn.functional.one_hot(torch.from_numpy(labels[idx]), len(data.classes)).float()
            xt = None
            if target is not None:
                pick = rng.choice(len(target), len(idx), replace=len(target) < len(idx))
                xt = augment(torch.from_numpy(_normalise(target[pick])))
            loss, parts = duq_loss(model, x, y, gp_weight=cfg.gp_weight, x_target=xt,
                                   align_weight=cfg.align_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            model.update_centroids(x, y)
            sums["loss"] += float(loss.detach()) * len(idx)
            for k in parts:
                sums[k] += parts[k] * len(idx)
        k_val = _evaluate(model, data, va, cfg.batch_size)
        y_val = labels[va]
        val_acc = float((k_val.argmax(1) == y_val).mean())
        onehot = np.eye(len(data.classes))[y_val]
        kc = np.clip(k_val, 1e-7, 1 - 1e-7)
        val_bce = float(-(onehot * np.log(kc) + (1 - onehot) * np.log(1 - kc)).mean())
        row = {k: v / len(tr) for k, v in sums.items()}
        row.update(epoch=epoch + 1, val_accuracy=val_acc, val_bce=val_bce, seconds=time.perf_counter() - t0)
        history.append(row)
        extra = f", align {row['align']:.4f}" if "align" in row else ""
        say(
            f"epoch {epoch + 1}/{cfg.epochs}: loss {row['loss']:.4f} (bce {row['bce']:.4f}, gp "
            f"{row['gp']:.4f}{extra}), train acc {row['accuracy']:.3f}, held-out acc {val_acc:.3f}, "
            f"held-out bce {val_bce:.4f}, {row['seconds']:.0f} s"
        )
        key = (val_acc, -val_bce)
        if best is None or key > best:
            best = key
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    k_val = _evaluate(model, data, va, cfg.batch_size)
    thresholds = calibrate_thresholds(
        k_val, labels[va], confident_coverage=cfg.confident_coverage, ood_quantile=cfg.ood_quantile
    )
    desc = {
        "files": [str(p) for p in cfg.train],
        "kind": cfg.kind,
        "classes": data.classes,
        "n_train": int(len(tr)),
        "n_holdout": int(len(va)),
        "per_class_train": {c: int((labels[tr] == i).sum()) for i, c in enumerate(data.classes)},
        "sample_shape": list(data.shape),
    }
    if target is not None:
        desc["aligned_to"] = {
            "files": [str(p) for p in cfg.align],
            "kind": "convolved, unlabelled",
            "generator": cfg.align_generator or "shipped deconvolve_2d",
            "n_samples": int(len(target)),
            "weight": float(cfg.align_weight),
        }
    data.close()
    return {
        "model": model,
        "classes": data.classes,
        "history": history,
        "holdout_k": k_val,
        "holdout_labels": labels[va],
        "thresholds": thresholds,
        "data": desc,
        "seconds": time.perf_counter() - t0,
    }


# ------------------------------------------------------------------------------- export
def export_classifier(
    model: Any,
    path: str | Path,
    *,
    classes: Sequence[str],
    thresholds: dict[str, Any],
    training: dict[str, Any] | None = None,
    validation: dict[str, Any] | None = None,
    seed: int | None = None,
    command: Sequence[str] | None = None,
    exporter: str = "auto",
    tolerance: float = 1e-4,
) -> Path:
    """Write a classifier bundle (ONNX graph, weights, classes, thresholds, provenance).

    Parameters
    ----------
    model
        A trained :class:`~mantid_exp2sim.models.duq.DUQClassifier`.
    path
        Bundle file to write (atomically).
    classes
        Class names in output order.
    thresholds
        From :func:`mantid_exp2sim.classify.calibrate_thresholds`.
    training, validation
        Free-form descriptions stored in the manifest.
    seed, command
        Provenance.
    exporter
        ONNX exporter (see :func:`mantid_exp2sim.onnx.export_onnx`).
    tolerance
        Largest allowed ONNX-vs-PyTorch difference of the kernel values.

    Returns
    -------
    pathlib.Path
    """
    import torch

    from ..bundle import make_manifest, write_bundle
    from ..mosaic import LAYOUT, mosaic_axes
    from ..onnx import export_onnx, verify_onnx

    if len(classes) != model.n_classes:
        raise BundleError(
            format_error("Class names do not match the model", reason=f"{len(classes)} names, {model.n_classes} outputs")
        )
    model = model.eval()
    shape = (2, 2, *model.input_shape)
    gen = torch.Generator().manual_seed(0)
    example = torch.rand(shape, generator=gen)
    example[:, 1] = 1.0
    blob = export_onnx(model, example, dynamic_spatial=False, output_names=["K"], exporter=exporter)
    check = torch.rand((3, 2, *model.input_shape), generator=gen)
    check[:, 1] = (check[:, 1] > 0.2).float()
    diff = verify_onnx(blob, model, [check])
    if not diff <= tolerance:
        raise BundleError(
            format_error(
                "The exported ONNX classifier disagrees with PyTorch",
                reason=f"max |K_onnx - K_torch| = {diff:.3g} > {tolerance:g}",
                fix="report this; try --exporter torchscript",
            )
        )
    axes = [a.to_dict() for a in mosaic_axes(tuple(model.input_shape))]
    manifest = make_manifest(
        kind="classifier",
        task="classify",
        ndim=2,
        architecture=model.architecture(),
        halo=0,
        multiple=1,
        patch_size=None,
        in_channels=model.in_channels,
        out_channels=model.n_classes,
        expected_axes=axes,
        layout=LAYOUT,
        classes=list(classes),
        thresholds=thresholds,
        training=training,
        validation={**(validation or {}), "onnx_max_abs_diff": float(diff)},
        seed=seed,
        command=list(command) if command is not None else None,
    )
    return write_bundle(path, manifest, onnx=blob, weights=model.state_dict())


# ---------------------------------------------------------------------------------- CLI
def _int_list(text: str) -> list[int]:
    return [int(t) for t in text.replace(",", " ").split()]


def get_parser() -> argparse.ArgumentParser:
    """The ``exp2sim-train classifier`` argument parser."""
    d = ClassifierConfig()
    p = argparse.ArgumentParser(
        prog="exp2sim-train classifier",
        description="Train the DUQ classifier (Goodenough vs Dimer) on exp2sim-simulate mosaic "
        "data sets and export a classify_2d bundle.",
    )
    p.add_argument("--train", nargs="+", required=True, metavar="FILE.h5",
                   help="exp2sim-simulate mosaic data set(s); every model group is a class")
    p.add_argument("--kind", choices=["unconvolved", "convolved"], default=d.kind,
                   help="which spectra to learn from (default unconvolved, as in seed 000)")
    p.add_argument("--models", nargs="+", default=None, metavar="NAME", help="model groups to use (default all)")
    p.add_argument("--out", default=d.out, help=f"bundle to write (default {d.out})")
    p.add_argument("--epochs", type=int, default=d.epochs, help="training epochs")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="samples per step")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate (cosine decay to 0)")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help="Adam weight decay")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help="fraction of each class held out for model selection and threshold calibration")
    p.add_argument("--max-samples", type=int, default=None, help="use at most this many samples (balanced)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the split, initialisation and augmentation")
    p.add_argument("--gamma", type=float, default=d.gamma, help="centroid EMA factor (1 freezes them)")
    p.add_argument("--length-scale", type=float, default=d.length_scale, help="RBF length scale sigma")
    p.add_argument("--gp-weight", type=float, default=d.gp_weight, help="gradient-penalty weight lambda")
    p.add_argument("--widths", type=_int_list, default=d.widths, help="channels of the 4 convolutions, e.g. 16,32,32,32")
    p.add_argument("--feature-dim", type=int, default=d.feature_dim, help="feature vector size")
    p.add_argument("--embedding-dim", type=int, default=d.embedding_dim, help="DUQ embedding size")
    p.add_argument("--noise", type=float, default=d.noise, help="largest augmentation noise amplitude (0: off)")
    p.add_argument("--blur", type=float, default=d.blur, help="largest augmentation blur sigma in bins (0: off)")
    p.add_argument("--energy-blur", type=float, default=d.energy_blur,
                   help="largest augmentation blur sigma along the mosaic's energy-window axis, in windows (0: off)")
    p.add_argument("--cycle-augment", type=float, default=d.cycle_augment, metavar="P",
                   help="probability of replacing a training spectrum by deconvolve(convolve(spectrum)) "
                   "through the 2D generators (0: off)")
    p.add_argument("--cycle-models", nargs=2, default=None, metavar=("CONVOLVE", "DECONVOLVE"),
                   help="generator bundles for --cycle-augment (default: the shipped 2D ones)")
    p.add_argument("--align", nargs="+", default=d.align, metavar="FILE.h5",
                   help="unsupervised domain alignment: match the features of the training spectra to "
                        "those of these data sets' convolved spectra (labels unused), deconvolved by "
                        "--align-generator (default: off)")
    p.add_argument("--align-generator", default=d.align_generator, metavar="BUNDLE",
                   help="2D deconvolve bundle for the --align spectra (default: the shipped one; "
                        "'none': align to the convolved spectra themselves)")
    p.add_argument("--align-weight", type=float, default=d.align_weight, help="weight of the alignment (MMD) term")
    p.add_argument("--align-samples", type=int, default=d.align_samples,
                   help="use at most this many --align spectra")
    p.add_argument("--mask-prob", type=float, default=d.mask_prob, help="probability of extra random masking")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=d.flip,
                   help="random Q -> -Q inversion inside the tiles (an exact symmetry; default on)")
    p.add_argument("--batch-norm", action=argparse.BooleanOptionalAction, default=d.batch_norm,
                   help="batch normalisation in the feature extractor (default on)")
    p.add_argument("--confident-coverage", type=float, default=d.confident_coverage,
                   help="fraction of correct held-out predictions that must be 'confident'")
    p.add_argument("--ood-quantile", type=float, default=d.ood_quantile,
                   help="quantile of held-out max K below which inputs are 'out of distribution'")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--exporter", choices=["auto", "dynamo", "torchscript"], default=d.exporter,
                   help="ONNX exporter")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``exp2sim-train classifier``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    ns = get_parser().parse_args(argv)
    cfg = ClassifierConfig(**{k: v for k, v in vars(ns).items() if k != "quiet"})
    log = None if ns.quiet else (lambda msg: print(msg, flush=True))
    try:
        from ..errors import require

        require("torch", extra="train", feature="exp2sim-train classifier")
        res = train_classifier(cfg, log=log)
        last = res["history"][-1]
        best = max(res["history"], key=lambda r: (r["val_accuracy"], -r["val_bce"]))
        path = export_classifier(
            res["model"],
            cfg.out,
            classes=res["classes"],
            thresholds=res["thresholds"],
            training={**res["data"], "config": asdict(cfg), "epochs_run": last["epoch"],
                      "seconds": round(res["seconds"], 1)},
            validation={"holdout_accuracy": res["thresholds"]["holdout_accuracy"], "best_epoch": best["epoch"],
                        "history": res["history"]},
            seed=cfg.seed,
            command=["exp2sim-train", "classifier", *argv],
            exporter=cfg.exporter,
        )
    except Exception as exc:  # noqa: BLE001 - one line, no traceback (bad input, unwritable paths)
        from ..cli._report import failure_line

        print(f"exp2sim-train classifier: error: {failure_line(exc)}", file=sys.stderr)
        return 1
    if log:
        th = res["thresholds"]
        log(
            f"wrote {path}: held-out accuracy {th['holdout_accuracy']:.3f}, thresholds confident "
            f">= {th['confident']:.3f}, out of distribution < {th['out_of_distribution']:.3f}"
        )
        log(json.dumps({"bundle": str(path), "holdout_accuracy": th["holdout_accuracy"]}))
    return 0
