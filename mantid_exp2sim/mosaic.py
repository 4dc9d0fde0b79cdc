"""The 240x400 PCSMO mosaic: build it from per-Ei 3D volumes, and read its tiles.

Layout ``pcsmo-mosaic-v1`` (the layout of the published PCSMO data, see
``docs/developer/architecture.md``):

* 6 row blocks of 40 rows, one per incident energy Ei = 25, 35, 50, 70, 100, 140 meV, row
  block 0 = Ei 25 meV. Within a block, increasing row index runs Qh from +1 to -1 r.l.u.
* Qh and Qk bins are those of the measurement's Horace cut ``[-1, 2/39, 1]``: 40 bins of
  width 2/39 r.l.u. *centred* on -1 ... +1, so their edges are -(1 + 1/39) ... 1 + 1/39
  (:data:`MOSAIC_Q_RANGE`). Edges at -1 ... 1 instead shrink every dispersion by 2.5% and
  lower the agreement with the published simulations (Pearson r 0.69 -> 0.66).
* 10 column blocks of 40 columns, one per energy-transfer window
  ``[0.10 + 0.06 j, 0.16 + 0.06 j] * Ei`` (j = 0..9). Within a block, increasing column
  index runs Qk from -1 to +1 r.l.u.
* A tile value is the mean of the input bins it covers (a Horace-style bin mean): each input
  bin is weighted by the volume it shares with the tile, masked (NaN) input bins are left
  out, and a tile that covers no unmasked input is masked.

The module is numpy-only.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .errors import InputDataError, format_error
from .histogram import Axis, MDHisto

__all__ = [
    "LAYOUT",
    "EI_LIST",
    "WINDOW_FRACTIONS",
    "Q_RANGE",
    "MOSAIC_Q_RANGE",
    "TILE",
    "MOSAIC_SHAPE",
    "energy_windows",
    "mosaic_axes",
    "rebin_volume",
    "build_mosaic",
    "mosaic_tiles",
    "tiles_to_mosaic",
    "tile_means",
    "mosaic_to_stacks",
    "stacks_to_mosaic",
    "validate_mosaic",
    "find_volume_axes",
    "as_mosaic_array",
    "mosaic_metadata",
]

LAYOUT = "pcsmo-mosaic-v1"
EI_LIST: tuple[float, ...] = (25.0, 35.0, 50.0, 70.0, 100.0, 140.0)
#: ``(low, high)`` fractions of Ei of the 10 energy-transfer windows.
WINDOW_FRACTIONS: tuple[tuple[float, float], ...] = tuple(
    (round(0.10 + 0.06 * j, 10), round(0.16 + 0.06 * j, 10)) for j in range(10)
)
#: Default in-plane range (bin edges, r.l.u.) of volumes and slices.
Q_RANGE = (-1.0, 1.0)
TILE = 40
#: Bin edges (r.l.u.) of the mosaic's Qh and Qk: 40 bins centred on -1 ... +1 (step 2/39).
MOSAIC_Q_RANGE = (-1.0 - 1.0 / (TILE - 1), 1.0 + 1.0 / (TILE - 1))
MOSAIC_SHAPE = (TILE * len(EI_LIST), TILE * len(WINDOW_FRACTIONS))

_EI_KEYS = ("Ei", "ei", "EI", "incident_energy")
_E_NAMES = {"deltae", "e", "energy", "energytransfer", "energy_transfer", "de"}
_H_NAMES = {"[h,0,0]", "h", "qh", "q_h", "[h,0,0]_rlu"}
_K_NAMES = {"[0,k,0]", "k", "qk", "q_k", "[0,k,0]_rlu"}


def energy_windows(ei: float, fractions: Sequence[tuple[float, float]] = WINDOW_FRACTIONS) -> np.ndarray:
    """Energy-transfer window edges for one incident energy.

    Parameters
    ----------
    ei
        Incident energy in meV.
    fractions
        ``(low, high)`` fractions of ``ei``, one pair per window.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_windows, 2)``: lower and upper window edge in meV.
    """
    return np.asarray(fractions, dtype=float) * float(ei)


def mosaic_axes(shape: tuple[int, int] = MOSAIC_SHAPE) -> tuple[Axis, Axis]:
    """The two index axes of a mosaic: ``MosaicRow`` (dimension 0) and ``MosaicColumn``."""
    return (
        Axis("MosaicRow", "", 0.0, float(shape[0]), shape[0]),
        Axis("MosaicColumn", "", 0.0, float(shape[1]), shape[1]),
    )


def _overlap_matrix(src_edges: np.ndarray, dst_edges: np.ndarray) -> np.ndarray:
    """Length shared by each destination bin and each source bin.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_dst, n_src)``; entry ``[i, j]`` is the length of
        ``[dst_i, dst_i+1] & [src_j, src_j+1]`` (0 when disjoint).
    """
    lo = np.maximum(dst_edges[:-1, None], src_edges[None, :-1])
    hi = np.minimum(dst_edges[1:, None], src_edges[None, 1:])
    return np.clip(hi - lo, 0.0, None)


def _norm_name(name: str) -> str:
    return name.strip().lower().replace(" ", "")


def find_volume_axes(histo: MDHisto, *, argument: str = "histo") -> tuple[int, int, int]:
    """Locate the Qh, Qk and energy-transfer dimensions of a 3D volume.

    The energy dimension is the one whose unit is meV (or whose name is ``DeltaE``, ``E`` or
    ``Energy``). Qh and Qk are recognised by name (``[H,0,0]``/``Qh``/``H`` and
    ``[0,K,0]``/``Qk``/``K``); unnamed Q dimensions are taken in their order.

    Parameters
    ----------
    histo
        The volume; it must have exactly three non-trivial dimensions.
    argument
        Name used in error messages.

    Returns
    -------
    tuple of int
        Dimension indices ``(qh, qk, energy)``.
    """
    dims = histo.non_integrated_dims()
    names = [ax.name for ax in histo.axes]
    if histo.ndim != 3 or len(dims) != 3:
        raise InputDataError(
            format_error(
                f"{argument} is not a 3D (Qh, Qk, E) volume",
                reason=f"it has {histo.ndim} dimensions {names} with bins {list(histo.shape)}; "
                "need three dimensions with more than one bin each",
                fix="bin the data to (Qh, Qk, DeltaE) with BinMD or CutMD first",
            )
        )
    e_dims = [
        i
        for i, ax in enumerate(histo.axes)
        if ax.unit.strip().lower() == "mev" or _norm_name(ax.name) in _E_NAMES
    ]
    if len(e_dims) != 1:
        raise InputDataError(
            format_error(
                f"{argument}: cannot tell which dimension is the energy transfer",
                reason=f"dimensions {names} with units {[ax.unit for ax in histo.axes]}; "
                f"need exactly one in meV (found {len(e_dims)})",
                fix="give the energy-transfer dimension the unit 'meV' (e.g. DeltaE)",
            )
        )
    e = e_dims[0]
    rest = [i for i in range(3) if i != e]
    h_dims = [i for i in rest if _norm_name(histo.axes[i].name) in _H_NAMES]
    k_dims = [i for i in rest if _norm_name(histo.axes[i].name) in _K_NAMES]
    if len(h_dims) == 1 and len(k_dims) == 1:
        qh, qk = h_dims[0], k_dims[0]
    elif not h_dims and not k_dims:
        qh, qk = rest
    elif len(h_dims) == 1:
        qh = h_dims[0]
        qk = [i for i in rest if i != qh][0]
    elif len(k_dims) == 1:
        qk = k_dims[0]
        qh = [i for i in rest if i != qk][0]
    else:
        raise InputDataError(
            format_error(
                f"{argument}: ambiguous Q dimensions",
                reason=f"dimension names {names}",
                fix="name the in-plane dimensions [H,0,0] and [0,K,0]",
            )
        )
    for i, label in ((qh, "Qh"), (qk, "Qk")):
        ax = histo.axes[i]
        if ax.minimum > Q_RANGE[0] + 1e-9 or ax.maximum < Q_RANGE[1] - 1e-9:
            # Partial coverage is allowed (tiles outside become masked), but a volume that
            # does not even overlap -1..1 is a sign of wrong units or axes.
            if ax.maximum <= Q_RANGE[0] or ax.minimum >= Q_RANGE[1]:
                raise InputDataError(
                    format_error(
                        f"{argument}: the {label} dimension '{ax.name}' does not overlap -1..1 r.l.u.",
                        reason=f"it spans {ax.minimum:g}..{ax.maximum:g} {ax.unit}",
                        fix="bin Qh and Qk in r.l.u. of the high-temperature cell over at least -1..1",
                    )
                )
    return qh, qk, e


def rebin_volume(
    histo: MDHisto,
    ei: float,
    *,
    q_bins: int = TILE,
    q_range: tuple[float, float] = MOSAIC_Q_RANGE,
    fractions: Sequence[tuple[float, float]] = WINDOW_FRACTIONS,
    argument: str = "histo",
) -> np.ndarray:
    """Rebin one (Qh, Qk, E) volume onto the mosaic grid of one incident energy.

    Parameters
    ----------
    histo
        3D volume (any dimension order; see :func:`find_volume_axes`), NaN = masked.
    ei
        Incident energy in meV, which sets the energy windows.
    q_bins, q_range
        Output Qh and Qk binning: bin count and edge range (r.l.u.; default the mosaic's).
    fractions
        Energy windows as fractions of ``ei``.
    argument
        Name used in error messages.

    Returns
    -------
    numpy.ndarray
        Shape ``(q_bins, q_bins, n_windows)`` indexed ``[iqh, iqk, j]`` with Qh and Qk
        ascending; bin means weighted by overlap, NaN where no unmasked input overlaps.
    """
    qh, qk, e = find_volume_axes(histo, argument=argument)
    sig = np.moveaxis(histo.signal, (qh, qk, e), (0, 1, 2))
    valid = np.isfinite(sig)
    filled = np.where(valid, sig, 0.0)
    q_edges = np.linspace(q_range[0], q_range[1], q_bins + 1)
    oh = _overlap_matrix(histo.axes[qh].edges(), q_edges)
    ok = _overlap_matrix(histo.axes[qk].edges(), q_edges)
    win = energy_windows(ei, fractions)
    e_edges = histo.axes[e].edges()
    # Windows are contiguous but handle arbitrary (possibly gapped) windows generally.
    oe = np.stack(
        [_overlap_matrix(e_edges, np.array([lo, hi]))[0] for lo, hi in win], axis=0
    )

    def contract(a: np.ndarray) -> np.ndarray:
        a = np.tensordot(oh, a, axes=([1], [0]))  # (H, nk, ne)
        a = np.tensordot(ok, a, axes=([1], [1]))  # (K, H, ne)
        a = np.tensordot(a, oe, axes=([2], [1]))  # (K, H, W)
        return np.transpose(a, (1, 0, 2))

    num = contract(filled)
    den = contract(valid.astype(float))
    out = np.full(num.shape, np.nan)
    # Relative tolerance: overlaps are products of bin-width fractions, so a tiny positive
    # denominator from round-off must not turn into a spurious value.
    ok_mask = den > 1e-12 * max(float(den.max(initial=0.0)), 1e-300)
    out[ok_mask] = num[ok_mask] / den[ok_mask]
    return out


def _ei_of(histo: MDHisto, index: int) -> float | None:
    for key in _EI_KEYS:
        if key in histo.metadata and histo.metadata[key] is not None:
            try:
                return float(histo.metadata[key])
            except (TypeError, ValueError):
                raise InputDataError(
                    format_error(
                        f"volume {index}: metadata['{key}'] is not a number",
                        reason=f"got {histo.metadata[key]!r}",
                        fix="give the incident energy in meV",
                    )
                ) from None
    return None


def build_mosaic(
    volumes: Sequence[MDHisto],
    ei: Sequence[float] | None = None,
    *,
    ei_list: Sequence[float] = EI_LIST,
    fractions: Sequence[tuple[float, float]] = WINDOW_FRACTIONS,
    allow_missing: bool = False,
    tolerance: float = 0.5,
) -> MDHisto:
    """Build the 240x400 mosaic from one (Qh, Qk, E) volume per incident energy.

    Parameters
    ----------
    volumes
        3D volumes, one per incident energy (any order).
    ei
        Incident energy of each volume in meV; when None each volume's
        ``metadata["Ei"]`` (or ``"ei"``) is used.
    ei_list
        The incident energies of the row blocks, top block first (the layout's 25 ... 140 meV).
    fractions
        Energy windows as fractions of Ei.
    allow_missing
        If True, row blocks with no volume are masked (NaN) instead of raising.
    tolerance
        Largest difference in meV between a volume's Ei and a row block's Ei.

    Returns
    -------
    MDHisto
        Shape ``(6 * 40, 10 * 40)`` on the axes of :func:`mosaic_axes`, with metadata
        ``layout``, ``ei_list``, ``window_fractions`` and ``source_ei``.
    """
    volumes = list(volumes)
    if not volumes:
        raise InputDataError(
            format_error("No volumes given", fix="pass one (Qh, Qk, E) volume per incident energy")
        )
    if ei is not None:
        ei = [float(v) for v in np.atleast_1d(np.asarray(ei, dtype=float))]
        if len(ei) != len(volumes):
            raise InputDataError(
                format_error(
                    "ei does not match the volumes",
                    reason=f"{len(ei)} incident energies for {len(volumes)} volumes",
                    fix="give one Ei per volume, in the same order",
                )
            )
    else:
        ei = []
        for i, v in enumerate(volumes):
            value = _ei_of(v, i)
            if value is None:
                raise InputDataError(
                    format_error(
                        f"volume {i} has no incident energy",
                        reason="no Ei argument and no metadata['Ei'] (or sample log 'Ei')",
                        fix="pass the incident energies explicitly (one per volume)",
                    )
                )
            ei.append(value)
    ei_list = [float(x) for x in ei_list]
    n_w = len(fractions)
    tiles = np.full((len(ei_list), TILE, TILE, n_w), np.nan)
    filled_blocks: dict[int, int] = {}
    for i, (vol, e_i) in enumerate(zip(volumes, ei)):
        diffs = np.abs(np.asarray(ei_list) - e_i)
        b = int(np.argmin(diffs))
        if diffs[b] > tolerance:
            raise InputDataError(
                format_error(
                    f"volume {i} has an incident energy the mosaic does not use",
                    reason=f"Ei = {e_i:g} meV; the layout has {ei_list} meV",
                    fix="pass only the PCSMO incident energies (or check the Ei value)",
                )
            )
        if b in filled_blocks:
            raise InputDataError(
                format_error(
                    f"volumes {filled_blocks[b]} and {i} have the same incident energy",
                    reason=f"both Ei = {ei_list[b]:g} meV",
                    fix="pass one volume per incident energy",
                )
            )
        filled_blocks[b] = i
        tiles[b] = rebin_volume(vol, ei_list[b], fractions=fractions, argument=f"volume {i}")
    missing = [ei_list[b] for b in range(len(ei_list)) if b not in filled_blocks]
    if missing and not allow_missing:
        raise InputDataError(
            format_error(
                "The mosaic needs one volume per incident energy",
                reason=f"missing Ei = {missing} meV (got {sorted(ei)})",
                fix="add the missing volumes, or allow missing blocks (they are then masked)",
            )
        )
    mosaic = tiles_to_mosaic(tiles)
    return MDHisto(
        signal=mosaic,
        axes=mosaic_axes(mosaic.shape),
        metadata={
            "layout": LAYOUT,
            "ei_list": list(ei_list),
            "window_fractions": [list(f) for f in fractions],
            "source_ei": [float(x) for x in ei],
        },
    )


def mosaic_tiles(signal: np.ndarray, tile: int = TILE) -> np.ndarray:
    """The mosaic as tiles on physical axes: ``tiles[..., b, ih, ik, j]``.

    The one tile view of the layout (the simulator's planner, :func:`build_mosaic` and
    :func:`tile_means` use it): ``b`` is the row block (incident energy), ``ih`` and ``ik``
    index Qh and Qk **ascending** (within a tile the mosaic runs Qh from +1 down to -1, so the
    rows are reversed) and ``j`` is the energy window.

    Parameters
    ----------
    signal
        Shape ``(..., n_ei * tile, n_windows * tile)``.
    tile
        Bins per tile side.

    Returns
    -------
    numpy.ndarray
        Shape ``(..., n_ei, tile, tile, n_windows)``; a view of ``signal`` (copy it before
        writing). :func:`tiles_to_mosaic` inverts it.
    """
    a = np.asarray(signal)
    *lead, h, w = a.shape
    if h % tile or w % tile:
        raise InputDataError(
            format_error(
                "Mosaic size is not a whole number of tiles",
                reason=f"shape {(h, w)} with {tile}x{tile} tiles",
            )
        )
    a = a.reshape(*lead, h // tile, tile, w // tile, tile)  # [..., b, r, j, c]
    return np.moveaxis(a, -2, -1)[..., ::-1, :, :]  # [..., b, r, c, j], Qh ascending


def tiles_to_mosaic(tiles: np.ndarray) -> np.ndarray:
    """Inverse of :func:`mosaic_tiles`: ``(..., n_ei, q, q, n_windows)`` -> ``(..., n_ei*q, n_windows*q)``."""
    t = np.asarray(tiles)
    *lead, b, q, q2, nw = t.shape
    t = np.moveaxis(t[..., ::-1, :, :], -1, -2)  # [..., b, r, j, c]
    return np.ascontiguousarray(t.reshape(*lead, b * q, nw * q2))


def mosaic_to_stacks(signal: np.ndarray, tile: int = TILE) -> np.ndarray:
    """The mosaic as one stack of energy windows over (Qh, Qk) per incident energy.

    In the mosaic, neighbouring energy windows of one (Qh, Qk) point are ``tile`` columns
    apart; in a stack they are neighbouring channels of the same pixel, which is what a
    convolution over (Qh, Qk) with the windows as channels needs.

    Parameters
    ----------
    signal
        Shape ``(..., n_ei * tile, n_windows * tile)``, NaN = masked (masks travel with the
        values).
    tile
        Bins per tile side.

    Returns
    -------
    numpy.ndarray
        Shape ``(..., n_ei, n_windows, tile, tile)`` indexed ``[..., b, j, ih, ik]`` with Qh
        and Qk ascending (the axes of :func:`mosaic_tiles`); a new array.
        :func:`stacks_to_mosaic` inverts it exactly.
    """
    return np.ascontiguousarray(np.moveaxis(mosaic_tiles(signal, tile), -1, -3))


def stacks_to_mosaic(stacks: np.ndarray) -> np.ndarray:
    """Inverse of :func:`mosaic_to_stacks`: ``(..., n_ei, n_windows, q, q)`` -> ``(..., n_ei*q, n_windows*q)``."""
    s = np.asarray(stacks)
    if s.ndim < 4 or s.shape[-1] != s.shape[-2]:
        raise InputDataError(
            format_error(
                "Energy stacks have the wrong shape",
                reason=f"shape {s.shape}; need (..., n_ei, n_windows, q, q)",
                fix="pass the output of mosaic_to_stacks",
            )
        )
    return tiles_to_mosaic(np.moveaxis(s, -3, -1))


def tile_means(signal: np.ndarray, tile: int = TILE) -> np.ndarray:
    """Mean of each tile over its finite bins (NaN for fully masked tiles).

    Returns
    -------
    numpy.ndarray
        Shape ``(..., n_ei, n_windows)``.
    """
    t = mosaic_tiles(signal, tile)
    finite = np.isfinite(t)
    n = finite.sum(axis=(-3, -2))
    s = np.where(finite, t, 0.0).sum(axis=(-3, -2))
    out = np.full(n.shape, np.nan)
    np.divide(s, n, out=out, where=n > 0)
    return out


def validate_mosaic(histo: MDHisto, *, argument: str = "InputWorkspace") -> None:
    """Check that a histogram is a 240x400 mosaic in the expected layout.

    Raises
    ------
    InputDataError
        Wrong number of non-trivial dimensions, wrong shape, a different ``layout`` in the
        metadata, or no finite bin at all.
    """
    dims = histo.non_integrated_dims()
    shape = tuple(histo.shape[i] for i in dims)
    if shape != MOSAIC_SHAPE:
        raise InputDataError(
            format_error(
                f"{argument} is not a {MOSAIC_SHAPE[0]}x{MOSAIC_SHAPE[1]} mosaic",
                reason=f"its non-integrated dimensions have {list(shape)} bins",
                fix="build the mosaic from per-Ei (Qh, Qk, E) volumes (pass the volumes with "
                "their Ei instead)",
            )
        )
    layout = histo.metadata.get("layout")
    if layout is not None and layout != LAYOUT:
        raise InputDataError(
            format_error(
                f"{argument} has a different layout",
                reason=f"metadata layout = {layout!r}, the classifier expects {LAYOUT!r}",
                fix="rebuild the mosaic in the pcsmo-mosaic-v1 layout",
            )
        )
    if not np.isfinite(histo.signal).any():
        raise InputDataError(
            format_error(f"{argument} is fully masked", reason="no finite bin")
        )


def as_mosaic_array(histo: MDHisto) -> np.ndarray:
    """The mosaic signal as a ``(240, 400)`` array (integrated dimensions squeezed)."""
    validate_mosaic(histo)
    return histo.signal.reshape(MOSAIC_SHAPE)


def mosaic_metadata(extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The standard mosaic metadata, merged with ``extra``."""
    meta: dict[str, Any] = {
        "layout": LAYOUT,
        "ei_list": list(EI_LIST),
        "window_fractions": [list(f) for f in WINDOW_FRACTIONS],
    }
    if extra:
        meta.update(extra)
    return meta

