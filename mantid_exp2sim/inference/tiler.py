"""Exact N-dimensional overlap-tile inference for fully convolutional networks.

Whole-input inference of a generator means: pad the input to a multiple of ``multiple``
(``2**n_down``) with a fixed padding rule, run the network once, crop. This module gives
the same result tile by tile, in bounded memory:

* the padded frame (input plus padding) is covered by equally sized tiles whose starts are
  multiples of ``multiple``, so every tile sees the same down-sampling grid as the whole
  input;
* tiles that touch the padded frame's border start or end exactly on it, so the network's
  own padding (reflection at the border) sees what it sees in whole-input inference;
* only each tile's *core* is kept; cores are at least ``halo`` (>= the receptive-field
  radius) away from every tile edge that is not a frame border, so a core depends only on
  input the tile contains;
* cores partition the padded frame, so each output bin is written exactly once.

Tiles are read from any array-like that supports basic slicing (a numpy array or an h5py
dataset: one hyperslab read per tile) and cores are written into any writable array-like,
so memory is bounded by the tile size times the batch size, whatever the input size.
Nothing here imports torch or onnxruntime: the network is any callable mapping a float32
batch ``(B, C_in, *tile)`` to ``(B, C_out, *tile)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import InputDataError, format_error

__all__ = [
    "PAD_MODES",
    "SLAB_ELEMENTS",
    "Tile",
    "TilePlan",
    "plan_tiles",
    "padded_index_map",
    "read_tile",
    "run_tiled",
]

#: Bins per slab when preparing network inputs and writing outputs: bounds the temporary
#: arrays of ``prepare``/``finish`` (and of the writer) independently of the tile size.
SLAB_ELEMENTS = 1 << 20

#: Padding rules understood by the tiler (numpy ``np.pad`` names).
PAD_MODES = ("constant", "reflect", "symmetric", "edge", "wrap")

# ``prepare(raw_block) -> (C_in, *block)`` float32; ``finish(y_core, raw_core) -> block``.
Prepare = Callable[[np.ndarray], np.ndarray]
Finish = Callable[[np.ndarray, np.ndarray], np.ndarray]
Network = Callable[[np.ndarray], np.ndarray]
Progress = Callable[[int, int], Any]


def _as_tuple(value: int | Sequence[int], ndim: int, name: str) -> tuple[int, ...]:
    if np.ndim(value) == 0:
        out = (int(value),) * ndim
    else:
        out = tuple(int(v) for v in value)  # type: ignore[union-attr]
    if len(out) != ndim:
        raise InputDataError(
            format_error(
                f"'{name}' has the wrong length",
                reason=f"got {len(out)} values {out} for a {ndim}-dimensional input",
                fix=f"give one integer or {ndim} integers, dimension 0 first",
            )
        )
    return out


@dataclass(frozen=True)
class Tile:
    """One tile of a :class:`TilePlan`.

    Parameters
    ----------
    start
        First index of the tile in the padded frame, per dimension (a multiple of the
        plan's ``multiple``).
    core_start, core_stop
        The core (the part of the tile's output that is kept), in padded-frame indices.
    """

    start: tuple[int, ...]
    core_start: tuple[int, ...]
    core_stop: tuple[int, ...]


@dataclass(frozen=True)
class TilePlan:
    """How an input of ``shape`` is cut into tiles.

    Parameters
    ----------
    shape
        Input spatial shape, dimension 0 first.
    pad_before, pad_after
        Padding added on each side of each dimension to form the padded frame.
    mode
        Padding rule (one of :data:`PAD_MODES`); ``"constant"`` pads the *network input*
        with ``pad_value`` in every channel.
    pad_value
        Value of constant padding.
    multiple
        Every tile start and the tile shape are multiples of this.
    halo
        Minimum distance, per dimension, between a core and a tile edge that is not a
        border of the padded frame.
    tile_shape
        Shape of every tile (identical for all tiles, so tiles can be batched).
    tiles
        The tiles, in C order of their grid.
    """

    shape: tuple[int, ...]
    pad_before: tuple[int, ...]
    pad_after: tuple[int, ...]
    mode: str
    pad_value: float
    multiple: int
    halo: tuple[int, ...]
    tile_shape: tuple[int, ...]
    tiles: tuple[Tile, ...]

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions."""
        return len(self.shape)

    @property
    def padded_shape(self) -> tuple[int, ...]:
        """Shape of the padded frame."""
        return tuple(s + b + a for s, b, a in zip(self.shape, self.pad_before, self.pad_after))

    @property
    def n_tiles(self) -> int:
        """Number of tiles."""
        return len(self.tiles)

    @property
    def efficiency(self) -> float:
        """Input bins per bin the network computes (1.0 means no halo or padding overhead)."""
        return float(np.prod(self.shape)) / (self.n_tiles * float(np.prod(self.tile_shape)))

    def tile_window(self, tile: Tile) -> tuple[slice, ...]:
        """The tile's extent in the padded frame."""
        return tuple(slice(s, s + t) for s, t in zip(tile.start, self.tile_shape))

    def _core_slices(self, tile: Tile, origin: Sequence[int]) -> tuple[slice, ...] | None:
        """The part of the tile's core inside the input, relative to ``origin`` (None if empty)."""
        out = []
        for d in range(self.ndim):
            lo = max(tile.core_start[d], self.pad_before[d])
            hi = min(tile.core_stop[d], self.pad_before[d] + self.shape[d])
            if hi <= lo:
                return None
            out.append(slice(lo - origin[d], hi - origin[d]))
        return tuple(out)

    def core_in_tile(self, tile: Tile) -> tuple[slice, ...] | None:
        """Slices of the tile's output that land inside the input (None if none do)."""
        return self._core_slices(tile, tile.start)

    def core_in_input(self, tile: Tile) -> tuple[slice, ...] | None:
        """Where the tile's kept output goes in the (unpadded) output (None if nowhere)."""
        return self._core_slices(tile, self.pad_before)


def _plan_axis(P: int, T: int, h: int, m: int) -> tuple[int, list[int], list[int]]:
    """Tile length, tile starts and core boundaries along one padded axis of length P."""
    if P <= T:
        return P, [0], [0, P]
    if T - 2 * h < m:
        raise InputDataError(
            format_error(
                "The patch size is too small for the network's halo",
                reason=f"patch {T} with halo {h} on each side leaves a core of {T - 2 * h} bins "
                f"(need at least {m})",
                fix=f"Use a patch size of at least {2 * h + m} (or leave PatchSize empty for the default)",
            )
        )
    n = max(2, math.ceil((P - 2 * h) / (T - 2 * h)))
    while True:
        # The smallest tile (a multiple of m, <= T) that n tiles with halo h can spread over P.
        ta = m * math.ceil(math.ceil((P + 2 * h * (n - 1)) / n) / m)
        for length in range(min(ta, T), T + 1, m):
            starts = [(i * (P - length)) // ((n - 1) * m) * m for i in range(n)]
            if all(b - a <= length - 2 * h for a, b in zip(starts, starts[1:])):
                # Any boundary in [next start + h, previous end - h] is exact; take the middle.
                bounds = [0]
                for a, b in zip(starts, starts[1:]):
                    bounds.append(((b + h) + (a + length - h)) // 2)
                bounds.append(P)
                return length, starts, bounds
        n += 1


def plan_tiles(
    shape: Sequence[int],
    *,
    tile: int | Sequence[int],
    halo: int | Sequence[int],
    multiple: int,
    pad_before: Sequence[int],
    pad_after: Sequence[int],
    mode: str = "constant",
    pad_value: float = 0.0,
) -> TilePlan:
    """Plan the overlap tiles of an input.

    Parameters
    ----------
    shape
        Input spatial shape, dimension 0 first.
    tile
        Largest tile edge (network input size per dimension, halo included), one value or
        one per dimension; each must be a multiple of ``multiple``. An axis shorter than
        this (after padding) is covered by one tile spanning the whole padded axis.
    halo
        Bins discarded at each inner tile edge, at least the network's receptive-field
        radius (one value or one per dimension).
    multiple
        The network's size divisor ``2**n_down``; tile starts and sizes are multiples of it.
    pad_before, pad_after
        Padding of each dimension that forms the padded frame (whose size must be a multiple
        of ``multiple``), as the whole-input padding rule gives it.
    mode, pad_value
        The padding rule (:data:`PAD_MODES`) and, for ``"constant"``, the value.

    Returns
    -------
    TilePlan
        Tiles of equal shape. Along each axis the number of tiles is the smallest that
        ``tile`` allows and the tile length is then shrunk to the smallest multiple of
        ``multiple`` that still covers the axis, which keeps the halo overhead low.
    """
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    tile_t = _as_tuple(tile, ndim, "patch_size")
    halo_t = _as_tuple(halo, ndim, "halo")
    before = _as_tuple(pad_before, ndim, "pad_before")
    after = _as_tuple(pad_after, ndim, "pad_after")
    m = int(multiple)
    if m < 1:
        raise ValueError(format_error("'multiple' must be >= 1", reason=f"got {multiple}"))
    if mode not in PAD_MODES:
        raise ValueError(
            format_error("Unknown padding mode", reason=f"got {mode!r}, allowed {PAD_MODES}")
        )
    for d in range(ndim):
        P = shape[d] + before[d] + after[d]
        if shape[d] < 1 or before[d] < 0 or after[d] < 0 or P % m:
            raise InputDataError(
                format_error(
                    f"Invalid padded frame along dimension {d}",
                    reason=f"size {shape[d]} padded by ({before[d]}, {after[d]}) gives {P}, "
                    f"which must be a positive multiple of {m}",
                )
            )
        if tile_t[d] < m or tile_t[d] % m:
            raise InputDataError(
                format_error(
                    "Invalid patch size",
                    reason=f"patch size {tile_t[d]} along dimension {d} is not a positive "
                    f"multiple of {m} (the network halves each axis {int(math.log2(m))} times)",
                    fix=f"Use a multiple of {m}",
                )
            )
        if halo_t[d] < 0:
            raise ValueError(format_error("'halo' must be >= 0", reason=f"got {halo_t[d]}"))
    axes = [
        _plan_axis(s + b + a, t, h, m)
        for s, b, a, t, h in zip(shape, before, after, tile_t, halo_t)
    ]
    tile_shape = tuple(ax[0] for ax in axes)
    tiles = []
    for idx in product(*[range(len(ax[1])) for ax in axes]):
        tiles.append(
            Tile(
                start=tuple(axes[d][1][i] for d, i in enumerate(idx)),
                core_start=tuple(axes[d][2][i] for d, i in enumerate(idx)),
                core_stop=tuple(axes[d][2][i + 1] for d, i in enumerate(idx)),
            )
        )
    return TilePlan(
        shape=shape,
        pad_before=before,
        pad_after=after,
        mode=mode,
        pad_value=float(pad_value),
        multiple=m,
        halo=halo_t,
        tile_shape=tile_shape,
        tiles=tuple(tiles),
    )


def padded_index_map(length: int, before: int, after: int, mode: str) -> np.ndarray:
    """Input index of every position of a padded axis (-1 where constant padding is).

    Parameters
    ----------
    length
        Input length along the axis.
    before, after
        Padding on each side.
    mode
        Padding rule, as in ``np.pad``.

    Returns
    -------
    numpy.ndarray
        Shape ``(before + length + after,)``, int64.
    """
    idx = np.arange(length, dtype=np.int64)
    if mode == "constant":
        return np.pad(idx, (before, after), mode="constant", constant_values=-1)
    return np.pad(idx, (before, after), mode=mode)  # type: ignore[call-overload]


def read_tile(
    source: Any, plan: TilePlan, tile: Tile, index_maps: Sequence[np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read the raw input under one tile, padded by the plan's rule.

    One hyperslab is read from ``source`` (the bounding box of the input bins the tile
    needs); reflected or repeated border bins are then gathered from it in memory.

    Returns
    -------
    block
        Shape ``plan.tile_shape``: the input values under the tile (constant-padded
        positions hold an arbitrary input value and are flagged in ``outside``).
    outside
        Boolean array of ``plan.tile_shape``, True where constant padding applies, or
        None when there is none in this tile.
    """
    if index_maps is None:
        index_maps = [
            padded_index_map(s, b, a, plan.mode)
            for s, b, a in zip(plan.shape, plan.pad_before, plan.pad_after)
        ]
    local = []
    read = []
    pads = []
    for d, window in enumerate(plan.tile_window(tile)):
        idx = index_maps[d][window]
        inside = idx >= 0
        lo = int(idx[inside].min())
        hi = int(idx[inside].max()) + 1
        read.append(slice(lo, hi))
        local.append(np.where(inside, idx - lo, 0))
        pads.append(~inside)
    raw = np.asarray(source[tuple(read)])
    if all(loc.size == r.stop - r.start and np.array_equal(loc, np.arange(loc.size)) for loc, r in zip(local, read)):
        block = raw
    else:
        block = raw[np.ix_(*local)]
    outside = None
    if any(p.any() for p in pads):
        outside = np.zeros(plan.tile_shape, dtype=bool)
        for d, p in enumerate(pads):
            shape = [1] * plan.ndim
            shape[d] = p.size
            outside |= p.reshape(shape)
    return block, outside


def run_tiled(
    source: Any,
    sink: Any,
    network: Network,
    plan: TilePlan,
    *,
    prepare: Prepare,
    finish: Finish,
    batch_size: int = 1,
    progress: Progress | None = None,
) -> None:
    """Run ``network`` over all tiles of ``plan`` and write the cores into ``sink``.

    Parameters
    ----------
    source
        Array-like of the input, shape ``plan.shape``, read with basic slicing (numpy
        array, h5py dataset, memory map).
    sink
        Writable array-like with the output's leading spatial shape ``plan.shape``
        (numpy array or h5py dataset); every bin is written exactly once, by slabs of
        about :data:`SLAB_ELEMENTS` bins of each kept core (``sink[...] = ``).
    network
        Maps a float32 batch ``(B, C_in, *plan.tile_shape)`` to ``(B, C_out,
        *plan.tile_shape)``.
    prepare
        Turns a raw block (any shape) into the network input ``(C_in, *block)``;
        element-wise, so it commutes with the padding and may be applied slab by slab.
    finish
        ``finish(y_core, raw_core)`` turns kept network output ``(C_out, *slab)`` and the
        raw input under it into what is written to ``sink``; element-wise too.
    batch_size
        Tiles per network call (>= 1).
    progress
        Called as ``progress(tiles_done, tiles_total)`` after every batch; whatever it
        raises (e.g. KeyboardInterrupt for a cancel) propagates at once.
    """
    if int(batch_size) < 1:
        raise ValueError(format_error("'batch_size' must be >= 1", reason=f"got {batch_size!r}"))
    batch_size = int(batch_size)
    maps = [
        padded_index_map(s, b, a, plan.mode)
        for s, b, a in zip(plan.shape, plan.pad_before, plan.pad_after)
    ]
    jobs = [t for t in plan.tiles if plan.core_in_tile(t) is not None]
    total = len(jobs)
    done = 0
    for first in range(0, total, batch_size):
        group = jobs[first : first + batch_size]
        raws: list[np.ndarray | None] = []
        batch: np.ndarray | None = None
        for k, tile in enumerate(group):
            raw, outside = read_tile(source, plan, tile, maps)
            # prepare slab by slab straight into the batch: no full-tile float64 temporaries
            step = _slab_rows(raw)
            for s in range(0, raw.shape[0], step):
                part = np.asarray(prepare(raw[s : s + step]), dtype=np.float32)
                if batch is None:
                    batch = np.empty((len(group), part.shape[0]) + plan.tile_shape, dtype=np.float32)
                batch[k, :, s : s + step] = part
            if outside is not None:
                batch[k][:, outside] = plan.pad_value  # type: ignore[index]
            raws.append(raw)
        y = np.asarray(network(batch))
        del batch
        for k, tile in enumerate(group):
            core_t = plan.core_in_tile(tile)
            core_i = plan.core_in_input(tile)
            assert core_t is not None and core_i is not None
            y_core = y[k][(slice(None),) + core_t]
            raw_core = raws[k][core_t]  # type: ignore[index]
            step = _slab_rows(raw_core)
            lo, hi = core_i[0].start, core_i[0].stop
            for s in range(0, hi - lo, step):
                key = (slice(lo + s, min(lo + s + step, hi)),) + core_i[1:]
                sink[key] = finish(y_core[:, s : s + step], raw_core[s : s + step])
            raws[k] = None
        del y
        done += len(group)
        if progress is not None:
            progress(done, total)


def _slab_rows(block: np.ndarray) -> int:
    """Rows of axis 0 per slab so that a slab holds about :data:`SLAB_ELEMENTS` bins."""
    row = int(np.prod(block.shape[1:])) if block.ndim > 1 else 1
    return max(1, SLAB_ELEMENTS // max(1, row))
