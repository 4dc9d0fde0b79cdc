"""Augmentation of the classifier's training spectra.

Random transforms of normalised batches (:func:`augment_batch`; the input is scale-free, so a
random global intensity factor would change nothing):

* a mild Gaussian blur (sigma up to ``--blur`` bins, normalised over the unmasked bins so the
  mask does not bleed);
* a blur along the mosaic's energy-window axis (sigma up to ``--energy-blur`` windows; the
  in-plane blur never mixes two windows);
* signal-dependent noise ``x + N(0, 1) (a sqrt(|x|) + b)`` with ``a, b`` up to ``--noise``
  (count-statistics-like plus a flat background);
* random extra masking (with probability ``--mask-prob`` a random rectangle of up to a quarter
  of a tile row block and 0-5 % random bins);
* with ``--flip`` the inversion Q -> -Q inside every tile (an exact symmetry of the simulated
  spectra; single mirror flips are not, so they are not used),

after which the sample is renormalised. They make the classifier robust to the noise, residual
resolution and coverage differences of measured data.

Measured-like inputs (:class:`MeasuredLikeAugmenter`, ``--measured-like P``): with probability
``P`` a noise-free convolved training spectrum is replaced, before normalisation, by a fresh
draw of the measured-like processing chain (:mod:`mantid_exp2sim.simulate.measured_like`:
per-Ei scale, Poisson counting noise with a background run, background subtraction, zeros,
clip at 120, the measured detector mask) with nuisance values drawn around the calibrated
PCSMO ones (:func:`mantid_exp2sim.simulate.nuisance_sampling.draw_measured_like`). Every
epoch sees new draws; the held-out draws are fixed by the seed and the sample index.

Spectra taken through the 2D generator bundles, prepared once before training:
:func:`cycled_spectra` (``--cycle-augment``: ``deconvolve(convolve(x))`` copies of the labelled
spectra) and :func:`alignment_spectra` (``--align``: the unlabelled, deconvolved target domain of
the domain alignment).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ..errors import BundleError, InputDataError, format_error
from .data import LabelledSpectra

if TYPE_CHECKING:
    from ..bundle import Bundle

__all__ = ["augment_batch", "MeasuredLikeAugmenter", "cycled_spectra", "alignment_spectra"]


class MeasuredLikeAugmenter:
    """Measured-like draws of noise-free convolved mosaics (see the module notes).

    Parameters
    ----------
    probability
        Probability that a spectrum is replaced by a measured-like draw (else kept clean).
    ranges
        :class:`~mantid_exp2sim.simulate.nuisance_sampling.NuisanceRanges` (default: its
        ``DEFAULT_RANGES``).
    base
        The calibrated chain (default ``PCSMO_MEASURED_LIKE``).
    shape
        Mosaic shape; the measured and kinematic masks are prepared once for it.
    """

    def __init__(self, probability: float, *, ranges: Any = None, base: Any = None,
                 shape: Sequence[int] = (240, 400)) -> None:
        from ..simulate.measured_like import PCSMO_MEASURED_LIKE
        from ..simulate.nuisance_sampling import DEFAULT_RANGES

        p = float(probability)
        if not 0.0 <= p <= 1.0:
            raise InputDataError(
                format_error("--measured-like must be a probability", reason=f"got {probability!r}",
                             fix="give a value in [0, 1] (0: off)")
            )
        self.probability = p
        self.ranges = DEFAULT_RANGES if ranges is None else ranges
        self.base = PCSMO_MEASURED_LIKE if base is None else base
        self.shape = tuple(int(v) for v in shape)
        # Loading nanmask.mat or planning the kinematic mask per draw would dominate the cost.
        self.masks: dict[str, Any] = {}
        for name in ("measured", "kinematic"):
            arr, source = _with_mask(self.base, name).mask_array(self.shape)
            self.masks[name] = (arr, source)

    def describe(self) -> dict[str, Any]:
        """JSON-safe description (probability, ranges, calibrated chain, mask sources)."""
        return {"probability": self.probability, "ranges": self.ranges.describe(),
                "base": self.base.describe(), "masks": {k: v[1] for k, v in self.masks.items()}}

    def draw(self, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One measured-like draw of one noise-free mosaic (NaN where masked)."""
        from dataclasses import replace

        from ..simulate.nuisance_sampling import draw_measured_like

        chain = draw_measured_like(rng, self.ranges, self.base)
        key = "kinematic" if chain.mask == "kinematic" else "measured"
        arr = self.masks[key][0]
        chain = replace(chain, mask=arr if arr is not None else "none")
        return chain.apply(np.asarray(clean, dtype=np.float64), rng).astype(np.float32)

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``batch`` ``(n, H, W)`` with each spectrum replaced by a draw with the probability."""
        out = np.array(batch, dtype=np.float32, copy=True)
        for i in range(out.shape[0]):
            if rng.random() < self.probability:
                out[i] = self.draw(out[i], rng)
        return out


def _with_mask(chain: Any, mask: str) -> Any:
    from dataclasses import replace

    return replace(chain, mask=mask)


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


def _generator_2d(path: str | None, task: str, option: str, fix: str) -> "Bundle":
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
