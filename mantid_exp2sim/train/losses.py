"""Exp2SimGAN loss terms, every one of them masked.

Masked bins reach no loss: the networks see them as 0 in the signal channel (with 0 in the
mask channel), generator outputs are multiplied by the valid mask before a discriminator or an
encoder sees them, and every reduction below is a weighted mean with weight 0 on masked bins
(for a discriminator's patch map: the fraction of unmasked input bins under each map cell).

Terms (Exp2SimGAN, Digital Discovery 2023, Methods; DCLGAN for PatchNCE):

* GAN: ``hinge`` (the DCLGAN default: D minimises ``relu(1 - D(real)) + relu(1 + D(fake))``,
  G minimises ``relu(1 - D(fake))``) or ``lsgan`` (``(D(real) - 1)^2 + D(fake)^2``, G
  ``(D(fake) - 1)^2``), on the discriminator's first output map;
* auxiliary: MSE of the discriminator's second output map towards 0 for real and 1 for
  generated patches (for D), and towards 0 on generated patches (for G);
* identity: masked L1 between ``G(x)`` and ``x`` for ``x`` already in the target domain;
* intensity (not in the paper; see docs/training.md): relative change of the integrated
  intensity of each translated patch, which resolution (de)convolution conserves;
* paired (not in the paper; off by default): masked L1 between a translation and the true
  counterpart of its source patch (:func:`paired_l1`), for simulator files where every sample
  of A has its twin in B;
* PatchNCE: InfoNCE between query patches of the translated image and key patches of its
  source at the same positions, negatives from other positions of the same image, sampled
  only where the feature position covers unmasked bins (``models.patchnce.feature_masks``
  and ``PatchSampleMLP``; assembled in :mod:`mantid_exp2sim.train.gan`).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "mask_weights",
    "masked_mean",
    "gan_loss_d",
    "gan_loss_g",
    "aux_loss",
    "masked_l1",
    "intensity_loss",
    "paired_l1",
    "patch_rms_normalise",
]


def mask_weights(valid: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Fraction of unmasked bins under each cell of a coarser map.

    Parameters
    ----------
    valid
        ``(N, 1, *S)`` valid mask (1 = unmasked).
    size
        Spatial size of the coarse map (e.g. a discriminator output).

    Returns
    -------
    torch.Tensor
        ``(N, 1, *size)`` weights in [0, 1] (adaptive average pooling of the mask).
    """
    size = tuple(int(s) for s in size)
    v = valid.float()
    if tuple(v.shape[2:]) == size:
        return v
    pool = F.adaptive_avg_pool2d if v.dim() == 4 else F.adaptive_avg_pool3d
    return pool(v, size)


def masked_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum(values * weights) / sum(weights)`` (0 when every weight is 0); float32 result."""
    v = values.float()
    w = weights.float().expand_as(v)
    total = w.sum()
    return (v * w).sum() / total.clamp_min(1e-12)


def gan_loss_d(pred_real: torch.Tensor, pred_fake: torch.Tensor, w_real: torch.Tensor, w_fake: torch.Tensor,
               mode: str) -> torch.Tensor:
    """Discriminator GAN loss: mean of the real and the fake terms (masked)."""
    if mode == "hinge":
        real = masked_mean(F.relu(1.0 - pred_real.float()), w_real)
        fake = masked_mean(F.relu(1.0 + pred_fake.float()), w_fake)
    elif mode == "lsgan":
        real = masked_mean((pred_real.float() - 1.0) ** 2, w_real)
        fake = masked_mean(pred_fake.float() ** 2, w_fake)
    else:
        raise ValueError(f"gan_mode={mode!r}; allowed: 'hinge', 'lsgan'")
    return 0.5 * (real + fake)


def gan_loss_g(pred_fake: torch.Tensor, w_fake: torch.Tensor, mode: str) -> torch.Tensor:
    """Generator GAN loss on the discriminator's map of generated patches (masked)."""
    if mode == "hinge":
        return masked_mean(F.relu(1.0 - pred_fake.float()), w_fake)
    if mode == "lsgan":
        return masked_mean((pred_fake.float() - 1.0) ** 2, w_fake)
    raise ValueError(f"gan_mode={mode!r}; allowed: 'hinge', 'lsgan'")


def aux_loss(aux_map: torch.Tensor, target: float, weights: torch.Tensor) -> torch.Tensor:
    """Masked MSE of the auxiliary class map towards ``target`` (0 = real, 1 = generated)."""
    return masked_mean((aux_map.float() - float(target)) ** 2, weights)


def masked_l1(prediction: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference over unmasked bins; all of shape ``(N, 1, *S)``."""
    return masked_mean((prediction.float() - target.float()).abs(), valid)


def paired_l1(prediction: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Masked L1 between a translation and its paired target.

    Parameters
    ----------
    prediction
        ``(N, 1, *S)``: the generator's output for a source patch.
    target
        ``(N, 2, *S)``: the source's true counterpart in the units of the prediction (divided by
        the *source* sample's intensity scale, as
        :meth:`~mantid_exp2sim.train.patches.PatchSampler.next_batch_with_partners` cuts it) and
        the counterpart's valid mask.
    valid
        ``(N, 1, *S)``: the source's valid mask; a bin counts where both masks are 1.
    """
    return masked_l1(prediction, target[:, :1], valid * target[:, 1:2])


def cycle_loss(
    back: torch.nn.Module, translated: torch.Tensor, source: torch.Tensor, valid: torch.Tensor, *, detach: bool = True
) -> torch.Tensor:
    """Cycle consistency ``|back(translated) - source|`` over unmasked bins.

    Parameters
    ----------
    back
        The generator that translates back to ``source``'s domain.
    translated
        ``(N, 2, *S)``: the other generator's output (signal masked) and ``source``'s valid mask.
    source, valid
        ``(N, 1, *S)``: the original signal channel and its valid mask.
    detach
        Cut the gradient to ``translated``: ``back`` then learns to invert the other
        generator's current output (a pseudo-pair), and the other generator is not rewarded for
        hiding detail in its output that only ``back`` can read (CycleGAN's steganography).
    """
    x = translated.detach() if detach else translated
    return masked_l1(back(x).float() * valid, source, valid)


def intensity_loss(
    output: torch.Tensor, source: torch.Tensor, valid: torch.Tensor, *, floor: float = 0.1
) -> torch.Tensor:
    """Relative change of the integrated intensity of each patch, averaged over the batch.

    ``|sum(valid * (output - source))| / sum(valid * (|source| + floor))`` per sample:
    resolution (de)convolution moves intensity between nearby bins but conserves its integral.
    ``floor`` (in the units of the RMS-normalised input, whose whole-sample RMS is 1) keeps the
    ratio bounded for patches with almost no intensity.

    Parameters
    ----------
    output, source, valid
        ``(N, 1, *S)``: a translation, its input's signal channel and the valid mask.
    """
    dims = tuple(range(1, output.dim()))
    v = valid.float()
    diff = ((output.float() - source.float()) * v).sum(dim=dims).abs()
    norm = ((source.float().abs() + float(floor)) * v).sum(dim=dims).clamp_min(1e-6)
    return (diff / norm).mean()


def patch_rms_normalise(x: torch.Tensor, floor: float = 0.05) -> torch.Tensor:
    """Divide the signal channel of ``(N, 2, *S)`` [signal, valid] by its RMS over valid bins.

    Used on discriminator inputs only, so that a discriminator judges the shape of a patch,
    not its intensity level (which intensity conservation, not the GAN, must set). The RMS is
    floored at ``floor`` (units of the RMS-normalised input) so that nearly empty patches are
    not amplified, and their gradients stay bounded.
    """
    sig, valid = x[:, :1], x[:, 1:2]
    dims = tuple(range(1, sig.dim()))
    v = valid.float()
    ms = (sig.float() ** 2 * v).sum(dim=dims, keepdim=True) / v.sum(dim=dims, keepdim=True).clamp_min(1.0)
    return torch.cat([sig / ms.sqrt().clamp_min(float(floor)).to(sig.dtype), valid], 1)
