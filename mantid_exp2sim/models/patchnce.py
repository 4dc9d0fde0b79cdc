"""PatchNCE: mask-aware patch sampling, projection heads and the InfoNCE loss (2D and 3D).

DCLGAN/Exp2SimGAN compare a generator's encoder features of an input (keys) with those of its
translation (queries) at the same locations: a query should match the key at its own
location (positive) and not the keys at the other sampled locations of the same sample
(negatives). Masked bins carry no data, so locations are drawn only where the input is
valid: :func:`feature_masks` turns the full-resolution valid mask into one mask per
feature map, and :class:`PatchSampleMLP` samples among the valid locations.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import format_error

__all__ = ["PatchSampleMLP", "PatchNCELoss", "feature_masks", "sample_patch_ids"]


def feature_masks(mask: torch.Tensor, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Valid mask of every feature map, from the input's valid mask.

    Parameters
    ----------
    mask
        ``(N, *S)`` or ``(N, 1, *S)`` (e.g. channel 1 of the network input); nonzero = valid.
    features
        Feature maps ``(N, C_l, *S_l)`` with ``S`` an integer multiple of ``S_l``.

    Returns
    -------
    list of torch.Tensor
        Boolean ``(N, *S_l)``: a location is valid when every input bin of its
        ``stride**ndim`` block is valid. A sample with no such location at some layer falls
        back to "any bin of the block valid" there, so it stays usable.
    """
    m = mask if mask.dim() == features[0].dim() else mask.unsqueeze(1)
    m = (m != 0).to(torch.float32)
    ndim = m.dim() - 2
    pool = {2: F.max_pool2d, 3: F.max_pool3d}[ndim]
    out = []
    for f in features:
        if f.dim() != m.dim() or f.shape[0] != m.shape[0]:
            raise ValueError(
                format_error(
                    "Feature map does not match the mask",
                    reason=f"feature shape {tuple(f.shape)}, mask shape {tuple(mask.shape)}",
                )
            )
        strides = [s // t for s, t in zip(m.shape[2:], f.shape[2:])]
        if any(s * t != n for s, t, n in zip(strides, f.shape[2:], m.shape[2:])) or len(set(strides)) != 1:
            raise ValueError(
                format_error(
                    "Feature map size is not an integer fraction of the mask size",
                    reason=f"feature spatial {tuple(f.shape[2:])}, mask spatial {tuple(m.shape[2:])}",
                )
            )
        k = strides[0]
        if k == 1:
            all_valid = any_valid = m
        else:
            all_valid = -pool(-m, k, k)
            any_valid = pool(m, k, k)
        all_valid, any_valid = all_valid[:, 0] > 0, any_valid[:, 0] > 0
        empty = ~all_valid.flatten(1).any(dim=1)
        valid = torch.where(empty.view(-1, *[1] * ndim), any_valid, all_valid)
        out.append(valid)
    return out


def sample_patch_ids(
    valid: torch.Tensor, num_patches: int, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw locations without replacement among the valid ones, independently per sample.

    Parameters
    ----------
    valid
        Boolean ``(N, *S_l)``.
    num_patches
        Locations per sample; reduced to the smallest number of valid locations in the batch
        so that every sample gets the same count.
    generator
        Optional torch random generator (reproducible sampling).

    Returns
    -------
    torch.Tensor
        int64 ``(N, n)`` flat indices into ``S_l``.
    """
    flat = valid.flatten(1)
    n_valid = int(flat.sum(dim=1).min())
    if n_valid == 0:
        raise ValueError(
            format_error(
                "No valid location to sample PatchNCE patches from",
                reason="a sample is fully masked at this feature resolution",
                fix="drop fully masked samples from the training data",
            )
        )
    n = min(int(num_patches), n_valid)
    dev = flat.device if generator is None else generator.device
    scores = torch.rand(flat.shape, generator=generator, device=dev).to(flat.device)
    scores = torch.where(flat, scores, torch.full_like(scores, -1.0))
    return scores.topk(n, dim=1).indices


class PatchSampleMLP(nn.Module):
    """Per-layer projection heads: sample feature vectors, project ``C -> nc -> nc``, L2-normalise.

    Parameters
    ----------
    channels
        Channels of each feature map the heads will see (e.g.
        ``generator.feature_channels(layer_ids)``); the heads are created here, so optimisers
        can be built before the first batch.
    nc
        Projection width (256 in the prior art).
    use_mlp
        False: no projection, only sampling and L2 normalisation.
    """

    def __init__(self, channels: Sequence[int], nc: int = 256, *, use_mlp: bool = True) -> None:
        super().__init__()
        if not channels or any(int(c) != c or c < 1 for c in channels):
            raise ValueError(
                format_error("Invalid PatchSampleMLP channels", reason=f"channels={list(channels)!r}; "
                             "expected one positive integer per feature layer")
            )
        self.channels = [int(c) for c in channels]
        self.nc = int(nc)
        self.use_mlp = bool(use_mlp)
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(c, nc), nn.ReLU(), nn.Linear(nc, nc)) if use_mlp else nn.Identity()
            for c in self.channels
        )

    def forward(
        self,
        features: Sequence[torch.Tensor],
        num_patches: int = 256,
        patch_ids: Sequence[torch.Tensor] | None = None,
        masks: Sequence[torch.Tensor] | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Sample and project.

        Parameters
        ----------
        features
            One map ``(N, C_l, *S_l)`` per head.
        num_patches
            Locations per sample and layer (when ``patch_ids`` is None).
        patch_ids
            Reuse these ``(N, n)`` flat indices (the keys' ids for the queries).
        masks
            Boolean ``(N, *S_l)`` per layer (from :func:`feature_masks`); None: all valid.

        Returns
        -------
        samples, patch_ids
            ``(N, n, nc)`` L2-normalised vectors per layer, and the indices used.
        """
        if len(features) != len(self.mlps):
            raise ValueError(
                format_error("Wrong number of feature maps for PatchSampleMLP",
                             reason=f"got {len(features)}, the heads were built for {len(self.mlps)}")
            )
        samples, ids_out = [], []
        for i, (f, mlp) in enumerate(zip(features, self.mlps)):
            if f.shape[1] != self.channels[i]:
                raise ValueError(
                    format_error(f"Feature map {i} has the wrong number of channels",
                                 reason=f"{f.shape[1]} channels, head built for {self.channels[i]}")
                )
            flat = f.flatten(2)  # (N, C, L)
            if patch_ids is not None:
                ids = patch_ids[i]
            else:
                valid = masks[i] if masks is not None else torch.ones(
                    (f.shape[0], *f.shape[2:]), dtype=torch.bool, device=f.device)
                ids = sample_patch_ids(valid, num_patches, generator=generator)
            picked = torch.gather(flat, 2, ids.unsqueeze(1).expand(-1, flat.shape[1], -1))
            v = mlp(picked.transpose(1, 2))  # (N, n, nc)
            samples.append(F.normalize(v, dim=-1))
            ids_out.append(ids)
        return samples, ids_out


class PatchNCELoss(nn.Module):
    """InfoNCE over patches: negatives are the other sampled locations of the same sample.

    ``loss = CE(q_i . k_j / T over j, target i)``, averaged over samples and locations.
    Keys are detached (as in the prior art): the loss trains the query side.
    """

    def __init__(self, temperature: float = 0.07, *, detach_keys: bool = True) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(format_error("Invalid PatchNCE temperature", reason=f"{temperature!r}; must be > 0"))
        self.temperature = float(temperature)
        self.detach_keys = bool(detach_keys)

    def forward(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """``query``, ``key``: ``(N, n, C)`` (rows L2-normalised) -> scalar loss."""
        if query.shape != key.shape or query.dim() != 3:
            raise ValueError(
                format_error("PatchNCE query and key must have the same (N, n, C) shape",
                             reason=f"query {tuple(query.shape)}, key {tuple(key.shape)}")
            )
        if self.detach_keys:
            key = key.detach()
        logits = torch.bmm(query, key.transpose(1, 2)) / self.temperature  # (N, n, n)
        n = logits.shape[1]
        target = torch.arange(n, device=logits.device).expand(logits.shape[0], n)
        return F.cross_entropy(logits.reshape(-1, n), target.reshape(-1))
