"""Patches for Exp2SimGAN training: whole-sample normalisation, random crops, a shardable sampler.

Every sample is normalised by the RMS of the *whole* sample (as at inference), then a random
patch is cut (padded with masked bins where the sample is smaller than the patch) and
optionally flipped along the allowed axes. The order of samples and all patch randomness come
from numpy generators seeded by ``(seed, domain, epoch)`` and ``(seed, domain, rank, draw)``, so
a sampler's state is three integers and resuming a run reproduces the same batches.

*Partner* sources (paired training, ``lambda_pair``) are read at the same sample index and cut
with the same crop and flips as the main patch, then scaled by the *main* sample's intensity
scale, so a partner patch is the paired target in the units of the network's output for the
main patch (see :meth:`PatchSampler.next_batch_with_partners`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..errors import InputDataError, format_error

if TYPE_CHECKING:
    from .data import Source

__all__ = ["PatchSampler", "normalised_input"]


def normalised_input(sample: np.ndarray) -> tuple[np.ndarray, float]:
    """Whole-sample network input ``(2, *shape)`` and its intensity scale (RMS of unmasked bins)."""
    from ..models.normalisation import intensity_scale, to_network_input

    scale = intensity_scale(sample)
    return to_network_input(sample, scale)[0], scale


def _crop(x: np.ndarray, starts: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """Cut ``size`` bins from ``starts``; bins beyond the array become NaN (masked)."""
    out = np.full(tuple(size), np.nan, dtype=np.float32)
    src, dst = [], []
    for s, n, full in zip(starts, size, x.shape):
        lo, hi = max(s, 0), min(s + n, full)
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[tuple(dst)] = x[tuple(src)]
    return out


class PatchSampler:
    """Endless, seeded, shardable stream of patch batches from one domain.

    Parameters
    ----------
    source, indices
        The domain's samples and the training indices to draw from.
    patch_size
        Patch size per spatial dimension (bins).
    batch_size
        Patches per batch (per rank).
    seed, stream
        Seed and a stream id (0 for domain A, 1 for B) so the domains draw independently.
    rank, world_size
        Shard: each epoch's permutation is split ``perm[rank::world_size]`` (padded by
        wrapping so every rank has the same count), like ``DistributedSampler``.
    flip_axes
        Spatial axes that may be flipped (each with probability 1/2).
    align
        Patch starts are multiples of this (1: any bin; the mosaic tile for generators that
        read whole tiles).
    partners
        Sources indexed like ``source`` (the same samples in other forms, e.g. the unconvolved
        twin of a convolved sample) whose patches :meth:`next_batch_with_partners` cuts along.
        They change neither the main batches nor the random stream.
    """

    def __init__(
        self,
        source: Source,
        indices: np.ndarray,
        patch_size: Sequence[int],
        batch_size: int,
        *,
        seed: int,
        stream: int,
        rank: int = 0,
        world_size: int = 1,
        flip_axes: Sequence[int] = (),
        align: int = 1,
        partners: Sequence[Source] = (),
    ):
        self.source = source
        self.partners = list(partners)
        for other in self.partners:
            if len(other) != len(source):
                raise InputDataError(
                    format_error(
                        f"The paired source '{other.name}' does not match '{source.name}'",
                        reason=f"{len(other)} samples against {len(source)}",
                        fix="pair sides of the same exp2sim-simulate file (--paired with one file for A and B)",
                    )
                )
        self.indices = np.asarray(indices, dtype=np.int64)
        if self.indices.size == 0:
            raise InputDataError(
                format_error(
                    f"No training samples in '{source.name}'",
                    reason="the split left no sample for training",
                    fix="add samples or lower --val-fraction",
                )
            )
        self.patch_size = tuple(int(p) for p in patch_size)
        self.batch_size = int(batch_size)
        self.seed, self.stream = int(seed), int(stream)
        self.rank, self.world_size = int(rank), int(world_size)
        self.flip_axes = tuple(int(a) for a in flip_axes)
        self.align = max(1, int(align))
        self.epoch = 0
        self.cursor = 0
        self.draws = 0
        self._order = self._epoch_order(0)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        perm = self.indices[np.random.default_rng([self.seed, self.stream, 7, epoch]).permutation(self.indices.size)]
        per_rank = -(-perm.size // self.world_size)
        total = per_rank * self.world_size
        if total > perm.size:
            perm = np.concatenate([perm, np.resize(perm, total - perm.size)])
        return perm[self.rank :: self.world_size]

    def state_dict(self) -> dict[str, int]:
        """Position in the stream (all that is needed to resume it)."""
        return {"epoch": self.epoch, "cursor": self.cursor, "draws": self.draws}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from :meth:`state_dict`."""
        self.epoch, self.cursor, self.draws = int(state["epoch"]), int(state["cursor"]), int(state["draws"])
        self._order = self._epoch_order(self.epoch)

    def _next_index(self) -> int:
        if self.cursor >= self._order.size:
            self.epoch += 1
            self.cursor = 0
            self._order = self._epoch_order(self.epoch)
        i = int(self._order[self.cursor])
        self.cursor += 1
        return i

    def next_batch(self) -> np.ndarray:
        """The next batch, float32 ``(batch, 2, *patch)``: scaled signal and valid mask."""
        return self._draw(with_partners=False)[0]

    def next_batch_with_partners(self) -> list[np.ndarray]:
        """The next batch followed by one ``(batch, 2, *patch)`` batch per partner source.

        The main batch is the one :meth:`next_batch` would have returned. Partner patch ``k``
        comes from the same sample index, crop and flips, divided by the *main* sample's
        intensity scale (channel 1: the partner's own valid mask).
        """
        return self._draw(with_partners=True)

    def _draw(self, with_partners: bool) -> list[np.ndarray]:
        from ..models.normalisation import intensity_scale, to_network_input

        rng = np.random.default_rng([self.seed, self.stream, 11, self.rank, self.draws])
        self.draws += 1
        shape = (self.batch_size, 2) + self.patch_size
        n_out = 1 + (len(self.partners) if with_partners else 0)
        out = [np.empty(shape, dtype=np.float32) for _ in range(n_out)]
        for b in range(self.batch_size):
            index = self._next_index()
            sample = self.source.read(index)
            if sample.ndim != len(self.patch_size):
                raise InputDataError(
                    format_error(
                        f"A sample of '{self.source.name}' has {sample.ndim} dimensions",
                        reason=f"the patch size {list(self.patch_size)} has {len(self.patch_size)}",
                        fix="set --patch-size (and --ndim) to match the data",
                    )
                )
            scale = intensity_scale(sample)
            starts = [self.align * int(rng.integers(0, max(n - p, 0) // self.align + 1))
                      for n, p in zip(sample.shape, self.patch_size)]
            flips = [ax for ax in self.flip_axes if rng.random() < 0.5]
            samples = [sample] + [p.read(index) for p in self.partners[: n_out - 1]]
            for k, x in enumerate(samples):
                patch = _crop(x, starts, self.patch_size)
                for ax in flips:
                    patch = np.flip(patch, axis=ax)
                out[k][b] = to_network_input(patch, scale)[0]
        return out
