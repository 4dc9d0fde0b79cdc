"""Simulated spectra in the package's representations, with and without resolution.

Every function returns :class:`~mantid_exp2sim.histogram.MDHisto` objects with complete axes
(names, units, extents, bins), NaN in masked bins, and metadata naming the model, its
parameters, the resolution and the mask. The ``*_pair`` functions return
``(convolved, unconvolved)`` and share the spin-wave calculation between the two:

* convolved: each mode broadened by the instrument resolution at its (Q, w), by its energy
  spread across the Q bin and by the intrinsic width (see :mod:`.binning`);
* unconvolved: the model at the bin centres with only the intrinsic width (0.1 meV FWHM).

``q_subsamples = n`` (default 1) makes the convolved spectrum the mean over an n x n grid of
Q points spanning each bin (the centres of n x n equal sub-bins; along a Q-E slice, n along
the line times n across the thickness, or 1 across a zero thickness), each with its own modes,
resolution and group velocity; the bin-width term of the energy variance then only covers the
spread inside one sub-bin (bin vectors divided by n). The mean of the sub-point energies spreads
by ``(v.a)^2 (n^2 - 1) / (12 n^2)`` and the residual term adds ``(v.a)^2 / (12 n^2)``, so for a
linear dispersion the total stays the ``(v.a)^2 / 12`` of one point per bin, while curvature,
band extrema, intensity variations and the kinematic L across the bin are now sampled
explicitly. The unconvolved spectrum stays the model at the bin centres. The cost of the
convolved spectrum grows about as n^2; data sets use 1.

Both are bin means over the energy bins, so they conserve integrated intensity. Each
in-plane Q is diagonalised once for all incident energies and energy bins. Optional
counting noise and a smooth background (:mod:`.noise`) are added to the convolved spectrum.

Representations:

* :func:`simulate_mosaic_pair`: the 240x400 ``pcsmo-mosaic-v1`` mosaic (6 Ei x 10 energy
  windows x 40x40 (Qh, Qk)), axes ``MosaicRow``/``MosaicColumn``;
* :func:`simulate_volume_pair`: a (Qh, Qk, E) volume for one Ei, dims ``[H,0,0]``,
  ``[0,K,0]`` (r.l.u., frame HKL) and ``DeltaE`` (meV), ``signal[ih, ik, ie]``;
* :func:`simulate_e_slice_pair`: one constant-energy (Qh, Qk) slice;
* :func:`simulate_qe_slice_pair`: a Q-E slice along a straight line in (Qh, Qk).

The ``plan_*`` functions give a representation's geometry (axes, mask, bin coordinates)
without simulating anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import InputDataError, format_error
from ..histogram import Axis, MDHisto
from ..mosaic import EI_LIST, LAYOUT, MOSAIC_Q_RANGE, Q_RANGE, TILE, WINDOW_FRACTIONS, mosaic_axes
from .binning import ModeEvaluator, bin_modes, mode_variance, subsample_offsets
from .coverage import kinematic_mask, resolve_mask
from .kinematics import MAPS_COVERAGE, DetectorCoverage
from .modelref import model_name, param_dict, resolve_model, resolve_params
from .noise import PoissonNoise, SmoothBackground, apply_noise
from .resolution import get_resolution

__all__ = [
    "DEFAULT_VOLUME_EI",
    "DEFAULT_ENERGY_FRACTIONS",
    "MAX_BINS",
    "MAX_Q_SUBSAMPLES",
    "Plan",
    "plan_mosaic",
    "plan_volume",
    "plan_e_slice",
    "plan_qe_slice",
    "simulate_plan",
    "simulate_mosaic_pair",
    "simulate_mosaic",
    "simulate_volume_pair",
    "simulate_volume",
    "simulate_e_slice_pair",
    "simulate_e_slice",
    "simulate_qe_slice_pair",
    "simulate_qe_slice",
    "mosaic_to_tiles",
    "tiles_to_mosaic",
    "volume_axes",
    "qe_line",
]

DEFAULT_VOLUME_EI = 70.0
#: Default energy range of volumes and Q-E slices, as fractions of Ei (that of the mosaic).
DEFAULT_ENERGY_FRACTIONS = (0.1, 0.7)
#: Default constant-energy window of an E slice, as fractions of Ei (mosaic window 3).
DEFAULT_E_SLICE_FRACTIONS = (0.28, 0.34)
#: Largest number of bins allowed along one dimension (guards against typos eating memory).
MAX_BINS = 4096
#: Largest ``q_subsamples`` accepted (each bin costs about its square in model evaluations).
MAX_Q_SUBSAMPLES = 16
#: Sub-bin Q points diagonalised together (bounds the eigenvector memory, ~16 kB per point).
_SUBSAMPLE_BATCH = 16384
_H_AXIS, _K_AXIS, _E_AXIS = "[H,0,0]", "[0,K,0]", "DeltaE"


# ============================================================================ checks
def _check_ei(ei: Any, argument: str = "ei") -> float:
    try:
        v = float(ei)
    except (TypeError, ValueError):
        v = float("nan")
    if not (np.isfinite(v) and v > 0):
        raise InputDataError(
            format_error(f"{argument} is invalid", reason=f"got {ei!r}; need an incident energy > 0 meV")
        )
    return v


def _check_bins(bins: Any, n: int, argument: str = "bins") -> tuple[int, ...]:
    try:
        vals = [bins] if np.ndim(bins) == 0 else list(bins)
    except TypeError:
        vals = [bins]
    if len(vals) == 1 and n > 1:
        vals = vals * n
    out: list[int] = []
    ok = len(vals) == n
    for b in vals if ok else []:
        try:
            f = float(b)
        except (TypeError, ValueError):
            ok = False
            break
        if isinstance(b, bool) or not (np.isfinite(f) and f == int(f) and 1 <= f <= MAX_BINS):
            ok = False
            break
        out.append(int(f))
    if not ok:
        raise InputDataError(
            format_error(
                f"{argument} is invalid",
                reason=f"got {bins!r}; need {n} whole number(s) of bins between 1 and {MAX_BINS}",
            )
        )
    return tuple(out)


def _check_q_subsamples(n: Any) -> int:
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_Q_SUBSAMPLES:
        raise InputDataError(
            format_error(
                "q_subsamples is invalid",
                reason=f"got {n!r}; need a whole number (int) of Q points per bin edge between 1 and "
                f"{MAX_Q_SUBSAMPLES}",
                fix="use 1 (one Q point per bin, the fast default) or e.g. 3 (a 3 x 3 grid per bin)",
            )
        )
    return int(n)


def _check_range(rng: Any, argument: str, unit: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in rng)
    except (TypeError, ValueError):
        lo = hi = float("nan")
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise InputDataError(
            format_error(
                f"{argument} is invalid",
                reason=f"got {rng!r}; need (minimum, maximum) in {unit} with maximum > minimum",
            )
        )
    return lo, hi


def _check_energy_range(e_range: tuple[float, float], ei: float, argument: str) -> None:
    lo, hi = e_range
    if lo < 0 or hi >= ei:
        raise InputDataError(
            format_error(
                f"{argument} does not fit the incident energy",
                reason=f"{argument} = {lo:g}..{hi:g} meV with Ei = {ei:g} meV; energy transfers "
                "must lie in 0 <= E < Ei",
                fix="choose energies below Ei (or a larger Ei)",
            )
        )


def _check_fractions(fractions: Any) -> np.ndarray:
    try:
        f = np.asarray(fractions, dtype=float)
    except (TypeError, ValueError):
        f = np.zeros((0,))
    if f.ndim != 2 or f.shape[1] != 2 or f.shape[0] < 1 or not np.isfinite(f).all():
        raise InputDataError(
            format_error("window_fractions is invalid", reason=f"got {fractions!r}; need (low, high) pairs")
        )
    bad = (f[:, 0] < 0) | (f[:, 1] <= f[:, 0]) | (f[:, 1] >= 1)
    if bad.any():
        raise InputDataError(
            format_error(
                "An energy window does not fit below Ei",
                reason=f"window fractions {f[bad][0].tolist()} of Ei; need 0 <= low < high < 1 "
                "(windows reaching Ei or beyond are unreachable)",
                fix="use windows inside 0..Ei, e.g. the published [0.10+0.06j, 0.16+0.06j]*Ei",
            )
        )
    return f


def _energy_range(energy_range: Any, ei: float) -> tuple[float, float]:
    if energy_range is None:
        energy_range = (DEFAULT_ENERGY_FRACTIONS[0] * ei, DEFAULT_ENERGY_FRACTIONS[1] * ei)
    er = _check_range(energy_range, "energy_range", "meV")
    _check_energy_range(er, ei, "energy_range")
    return er


def _q_grid(q_range: tuple[float, float], n: int) -> tuple[np.ndarray, float]:
    edges = np.linspace(q_range[0], q_range[1], n + 1)
    return 0.5 * (edges[:-1] + edges[1:]), (q_range[1] - q_range[0]) / n


def _mask_description(mask: Any) -> str:
    if mask is None or (isinstance(mask, str) and mask == "none"):
        return "none"
    if isinstance(mask, str) and mask == "kinematic":
        return "kinematic"
    if isinstance(mask, str) or hasattr(mask, "__fspath__"):
        return f"file:{mask}"
    return "array"


# ============================================================================ plans
@dataclass
class _Block:
    """One incident energy's share of a representation: contiguous energy sub-bins."""

    ei: float
    edges: np.ndarray  # (n_sub + 1,) contiguous sub-bin edges in meV
    members: list[np.ndarray] | None  # sub-bins of each output bin, None = one each
    need: np.ndarray | None  # (n_points,) which Q points have any unmasked bin
    e_range: tuple[float, float]


@dataclass
class Plan:
    """The geometry of a representation and how to compute it.

    Attributes
    ----------
    axes
        The output axes; ``shape`` their bins.
    mask
        Boolean array of ``shape`` (True = masked) or None.
    coords
        ``(qh, qk, e, ei)`` bin-centre coordinates, each of ``shape``.
    metadata
        Representation metadata (layout, Ei, ...).
    qh, qk
        The in-plane Q points evaluated (r.l.u.), shape ``(n,)``.
    bin_vectors
        Q displacements spanning one bin (see :func:`.binning.mode_variance`).
    q_range
        The Qh/Qk range the resolution must cover.
    """

    axes: tuple[Axis, ...]
    mask: np.ndarray | None
    coords: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    metadata: dict[str, Any]
    qh: np.ndarray
    qk: np.ndarray
    bin_vectors: np.ndarray
    q_range: tuple[float, float]
    blocks: list[_Block] = field(default_factory=list)
    assemble: Callable[[list[np.ndarray]], np.ndarray] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """Bins per dimension."""
        return tuple(ax.bins for ax in self.axes)


def _window_edges(windows: np.ndarray) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """Contiguous sub-bin edges covering all windows, and each window's sub-bins."""
    edges = np.unique(np.round(windows.ravel(), 12))
    members = [np.flatnonzero((edges[:-1] >= lo - 1e-9) & (edges[1:] <= hi + 1e-9)) for lo, hi in windows]
    simple = len(members) == edges.size - 1 and all(m.size == 1 and m[0] == i for i, m in enumerate(members))
    return edges, (None if simple else members)


def mosaic_to_tiles(mosaic: np.ndarray, n_ei: int, n_windows: int, q_bins: int = TILE) -> np.ndarray:
    """Mosaic ``(n_ei*q, n_windows*q)`` -> tiles ``(n_ei, q, q, n_windows)`` as ``[b, ih, ik, j]``.

    ``ih``, ``ik`` index Qh and Qk ascending (within a tile the mosaic runs Qh from +1 down to
    -1, so the row order is reversed).
    """
    t = np.asarray(mosaic).reshape(n_ei, q_bins, n_windows, q_bins)  # [b, r, j, c]
    return np.ascontiguousarray(np.transpose(t, (0, 1, 3, 2))[:, ::-1, :, :])


def tiles_to_mosaic(tiles: np.ndarray) -> np.ndarray:
    """Inverse of :func:`mosaic_to_tiles`: ``(n_ei, q, q, n_windows)`` -> 2D mosaic."""
    b, q, q2, nw = tiles.shape
    t = np.transpose(np.asarray(tiles)[:, ::-1, :, :], (0, 1, 3, 2))  # [b, r, j, c]
    return np.ascontiguousarray(t.reshape(b * q, nw * q2))


def plan_mosaic(
    *,
    mask: Any = "kinematic",
    ei_list: Sequence[float] = EI_LIST,
    window_fractions: Any = WINDOW_FRACTIONS,
    q_bins: int = TILE,
    q_range: tuple[float, float] = MOSAIC_Q_RANGE,
    coverage: DetectorCoverage = MAPS_COVERAGE,
) -> Plan:
    """Geometry of the mosaic (arguments as :func:`simulate_mosaic_pair`)."""
    try:
        eis = [_check_ei(e, "ei_list entry") for e in np.atleast_1d(np.asarray(ei_list, dtype=float))]
    except (TypeError, ValueError):
        raise InputDataError(format_error("ei_list is invalid", reason=f"got {ei_list!r}; need incident energies in meV")) from None
    fr = _check_fractions(window_fractions)
    (q_bins,) = _check_bins(q_bins, 1, "q_bins")
    q_range = _check_range(q_range, "q_range", "r.l.u.")
    nb, nw = len(eis), fr.shape[0]
    shape = (nb * q_bins, nw * q_bins)
    qc, dq = _q_grid(q_range, q_bins)
    t4 = (nb, q_bins, q_bins, nw)
    ei_arr = np.asarray(eis)
    coords4 = {
        "qh": np.broadcast_to(qc[None, :, None, None], t4),
        "qk": np.broadcast_to(qc[None, None, :, None], t4),
        "e_lo": np.broadcast_to(ei_arr[:, None, None, None] * fr[None, None, None, :, 0], t4),
        "e_hi": np.broadcast_to(ei_arr[:, None, None, None] * fr[None, None, None, :, 1], t4),
        "ei": np.broadcast_to(ei_arr[:, None, None, None], t4),
    }

    def kin() -> np.ndarray:
        tiles = np.stack([
            kinematic_mask(coords4["qh"][b], coords4["qk"][b], coords4["e_lo"][b], coords4["e_hi"][b], ei, coverage)
            for b, ei in enumerate(eis)
        ])
        return tiles_to_mosaic(tiles)

    mask_arr = resolve_mask(mask, shape, kin)
    mask_tiles = None if mask_arr is None else mosaic_to_tiles(mask_arr, nb, nw, q_bins)
    blocks = []
    for b, ei in enumerate(eis):
        edges, members = _window_edges(fr * ei)
        need = None if mask_tiles is None else ~mask_tiles[b].reshape(q_bins * q_bins, nw).all(axis=1)
        blocks.append(_Block(ei, edges, members, need, (float(fr[:, 0].min() * ei), float(fr[:, 1].max() * ei))))

    def assemble(results: list[np.ndarray]) -> np.ndarray:
        return tiles_to_mosaic(np.stack([r.reshape(q_bins, q_bins, nw) for r in results]))

    coords = tuple(tiles_to_mosaic(np.ascontiguousarray(coords4[k])) for k in ("qh", "qk", "e_lo", "e_hi", "ei"))
    return Plan(
        axes=mosaic_axes(shape),
        mask=mask_arr,
        coords=(coords[0], coords[1], 0.5 * (coords[2] + coords[3]), coords[4]),
        metadata={
            "layout": LAYOUT,
            "ei_list": [float(e) for e in eis],
            "window_fractions": fr.tolist(),
            "q_range": [float(q_range[0]), float(q_range[1])],
            "q_bins": int(q_bins),
        },
        qh=np.repeat(qc, q_bins),
        qk=np.tile(qc, q_bins),
        bin_vectors=np.array([[dq, 0.0], [0.0, dq]]),
        q_range=q_range,
        blocks=blocks,
        assemble=assemble,
    )


def volume_axes(
    bins: Sequence[int], q_range: tuple[float, float], energy_range: tuple[float, float]
) -> tuple[Axis, Axis, Axis]:
    """Axes of a (Qh, Qk, E) volume: ``[H,0,0]``, ``[0,K,0]`` (r.l.u., HKL) and ``DeltaE`` (meV)."""
    return (
        Axis(_H_AXIS, "r.l.u.", q_range[0], q_range[1], int(bins[0]), frame="HKL"),
        Axis(_K_AXIS, "r.l.u.", q_range[0], q_range[1], int(bins[1]), frame="HKL"),
        Axis(_E_AXIS, "meV", energy_range[0], energy_range[1], int(bins[2])),
    )


def _plan_grid(
    ei: float,
    nh: int,
    nk: int,
    e_edges: np.ndarray,
    q_range: tuple[float, float],
    mask: Any,
    mask_shape: tuple[int, ...],
    coverage: DetectorCoverage,
) -> tuple[np.ndarray | None, tuple, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Common geometry of volumes and E slices on a (nh, nk, ne) grid."""
    ne = e_edges.size - 1
    hc, dh = _q_grid(q_range, nh)
    kc, dk = _q_grid(q_range, nk)
    shape = (nh, nk, ne)
    QH = np.broadcast_to(hc[:, None, None], shape)
    QK = np.broadcast_to(kc[None, :, None], shape)
    ELO = np.broadcast_to(e_edges[None, None, :-1], shape)
    EHI = np.broadcast_to(e_edges[None, None, 1:], shape)
    mask_arr = resolve_mask(
        mask, mask_shape, lambda: kinematic_mask(QH, QK, ELO, EHI, ei, coverage).reshape(mask_shape)
    )
    need = None if mask_arr is None else ~mask_arr.reshape(nh * nk, ne).all(axis=1)
    coords = (QH, QK, 0.5 * (ELO + EHI), np.full(shape, ei))
    return mask_arr, coords, np.repeat(hc, nk), np.tile(kc, nh), np.array([[dh, 0.0], [0.0, dk]]), need


def plan_volume(
    *,
    ei: float = DEFAULT_VOLUME_EI,
    bins: Any = (64, 64, 64),
    q_range: tuple[float, float] = Q_RANGE,
    energy_range: tuple[float, float] | None = None,
    mask: Any = "kinematic",
    coverage: DetectorCoverage = MAPS_COVERAGE,
) -> Plan:
    """Geometry of a (Qh, Qk, E) volume (arguments as :func:`simulate_volume_pair`)."""
    ei = _check_ei(ei)
    bins = _check_bins(bins, 3)
    q_range = _check_range(q_range, "q_range", "r.l.u.")
    er = _energy_range(energy_range, ei)
    e_edges = np.linspace(er[0], er[1], bins[2] + 1)
    mask_arr, coords, qh, qk, bv, need = _plan_grid(ei, bins[0], bins[1], e_edges, q_range, mask, bins, coverage)
    return Plan(
        axes=volume_axes(bins, q_range, er),
        mask=mask_arr,
        coords=coords,
        metadata={"ei": ei, "Ei": ei},
        qh=qh,
        qk=qk,
        bin_vectors=bv,
        q_range=q_range,
        blocks=[_Block(ei, e_edges, None, need, er)],
        assemble=lambda results: results[0].reshape(bins),
    )


def plan_e_slice(
    *,
    ei: float = DEFAULT_VOLUME_EI,
    energy_window: tuple[float, float] | None = None,
    bins: Any = (TILE, TILE),
    q_range: tuple[float, float] = Q_RANGE,
    mask: Any = "kinematic",
    coverage: DetectorCoverage = MAPS_COVERAGE,
) -> Plan:
    """Geometry of a constant-energy slice (arguments as :func:`simulate_e_slice_pair`)."""
    ei = _check_ei(ei)
    bins = _check_bins(bins, 2)
    q_range = _check_range(q_range, "q_range", "r.l.u.")
    if energy_window is None:
        energy_window = (DEFAULT_E_SLICE_FRACTIONS[0] * ei, DEFAULT_E_SLICE_FRACTIONS[1] * ei)
    win = _check_range(energy_window, "energy_window", "meV")
    _check_energy_range(win, ei, "energy_window")
    e_edges = np.array(win)
    mask_arr, coords, qh, qk, bv, need = _plan_grid(ei, bins[0], bins[1], e_edges, q_range, mask, bins, coverage)
    return Plan(
        axes=volume_axes((bins[0], bins[1], 1), q_range, win)[:2],
        mask=mask_arr,
        coords=tuple(c[..., 0] for c in coords),
        metadata={"ei": ei, "Ei": ei, "energy_window": [win[0], win[1]]},
        qh=qh,
        qk=qk,
        bin_vectors=bv,
        q_range=q_range,
        blocks=[_Block(ei, e_edges, None, need, win)],
        assemble=lambda results: results[0].reshape(bins),
    )


def _fmt(x: float) -> str:
    s = f"{x:.6g}"
    return "0" if s in ("-0", "0") else s


def _line_term(offset: float, slope: float, var: str) -> str:
    """Mantid-style component such as ``0.5``, ``H``, ``-H``, ``0.5+2H``."""
    if abs(slope) < 1e-12:
        return _fmt(offset)
    coef = var if abs(slope - 1) < 1e-12 else ("-" + var if abs(slope + 1) < 1e-12 else f"{_fmt(slope)}{var}")
    if abs(offset) < 1e-12:
        return coef
    return f"{_fmt(offset)}{coef}" if coef.startswith("-") else f"{_fmt(offset)}+{coef}"


def qe_line(
    start: Sequence[float], end: Sequence[float], n_q: int
) -> tuple[Axis, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The Q axis of a Q-E slice along the line from ``start`` to ``end`` (r.l.u.).

    The axis coordinate is the Qh of the point when the line runs more along Qh than Qk (the
    other component then follows as ``k0 + slope*H``) and Qk otherwise, so the axis is named
    the way Mantid names projections (e.g. ``[H,0,0]``, ``[H,H,0]``, ``[H,0.5,0]``,
    ``[0.5-K,K,0]``) and its values are r.l.u.

    Returns
    -------
    axis, qh, qk, step, normal
        The Axis; bin-centre Q, shape ``(n_q,)``; the Q displacement across one bin
        (r.l.u., shape (2,)); a unit vector perpendicular to the line.
    """
    try:
        s = np.asarray(start, dtype=float).reshape(-1)
        e = np.asarray(end, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        s = e = np.zeros(0)
    if s.size != 2 or e.size != 2 or not (np.isfinite(s).all() and np.isfinite(e).all()):
        raise InputDataError(
            format_error("start/end are invalid", reason=f"got {start!r}, {end!r}; need (Qh, Qk) points in r.l.u.")
        )
    d = e - s
    if np.hypot(*d) < 1e-9:
        raise InputDataError(format_error("The Q-E line has zero length", reason=f"start = end = {s.tolist()}"))
    along_h = abs(d[0]) >= abs(d[1])
    i, j = (0, 1) if along_h else (1, 0)
    slope = d[j] / d[i]
    offset = s[j] - slope * s[i]
    lo, hi = sorted((s[i], e[i]))
    name = f"[H,{_line_term(offset, slope, 'H')},0]" if along_h else f"[{_line_term(offset, slope, 'K')},K,0]"
    axis = Axis(name, "r.l.u.", lo, hi, n_q, frame="HKL")
    x = axis.centres()
    other = offset + slope * x
    qh, qk = (x, other) if along_h else (other, x)
    step = np.zeros(2)
    step[i] = axis.width
    step[j] = slope * axis.width
    normal = np.array([-d[1], d[0]]) / np.hypot(*d)
    return axis, qh, qk, step, normal


def plan_qe_slice(
    *,
    ei: float = DEFAULT_VOLUME_EI,
    start: Sequence[float] = (-1.0, 0.0),
    end: Sequence[float] = (1.0, 0.0),
    bins: Any = (100, 100),
    energy_range: tuple[float, float] | None = None,
    thickness: float = 2.0 / TILE,
    mask: Any = "kinematic",
    coverage: DetectorCoverage = MAPS_COVERAGE,
) -> Plan:
    """Geometry of a Q-E slice (arguments as :func:`simulate_qe_slice_pair`)."""
    ei = _check_ei(ei)
    nq, ne = _check_bins(bins, 2)
    try:
        th = float(thickness)
    except (TypeError, ValueError):
        th = float("nan")
    if not (np.isfinite(th) and th >= 0):
        raise InputDataError(format_error("thickness is invalid", reason=f"got {thickness!r}; need >= 0 r.l.u."))
    axis, qh, qk, step, normal = qe_line(start, end, nq)
    er = _energy_range(energy_range, ei)
    e_edges = np.linspace(er[0], er[1], ne + 1)
    shape = (nq, ne)
    QH = np.broadcast_to(qh[:, None], shape)
    QK = np.broadcast_to(qk[:, None], shape)
    ELO = np.broadcast_to(e_edges[None, :-1], shape)
    EHI = np.broadcast_to(e_edges[None, 1:], shape)
    mask_arr = resolve_mask(mask, shape, lambda: kinematic_mask(QH, QK, ELO, EHI, ei, coverage))
    need = None if mask_arr is None else ~mask_arr.all(axis=1)
    half = np.abs(step) / 2 + np.abs(normal) * th / 2
    q_lo = float(min(qh.min() - half[0], qk.min() - half[1]))
    q_hi = float(max(qh.max() + half[0], qk.max() + half[1]))
    return Plan(
        axes=(axis, Axis(_E_AXIS, "meV", er[0], er[1], ne)),
        mask=mask_arr,
        coords=(QH, QK, 0.5 * (ELO + EHI), np.full(shape, ei)),
        metadata={
            "ei": ei,
            "Ei": ei,
            "line_start": [float(x) for x in np.ravel(start)],
            "line_end": [float(x) for x in np.ravel(end)],
            "thickness": th,
        },
        qh=qh,
        qk=qk,
        bin_vectors=np.array([step, normal * th]),
        q_range=(q_lo, q_hi),
        blocks=[_Block(ei, e_edges, None, need, er)],
        assemble=lambda results: results[0].reshape(shape),
    )


# ============================================================================ simulation
def _scatter(values: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Rows of ``values`` placed at the True entries of ``where``; NaN elsewhere."""
    out = np.full((where.size,) + values.shape[1:], np.nan)
    out[where] = values
    return out


def _aggregate(values: np.ndarray, edges: np.ndarray, members: list[np.ndarray] | None) -> np.ndarray:
    """Sub-bin means -> output-bin means (width-weighted)."""
    if members is None:
        return values
    w = np.diff(edges)
    return np.stack([(values[:, m] * w[m]).sum(axis=1) / w[m].sum() for m in members], axis=1)


def _convolved_bin_means(
    res: Any, qh: np.ndarray, qk: np.ndarray, modes: Any, blk: _Block, bin_vectors: np.ndarray
) -> np.ndarray:
    """Resolution-broadened sub-bin means of ``modes`` at the Q points ``(qh, qk)`` of one block."""
    cov = res.covariance(qh[:, None], qk[:, None], modes.energies, blk.ei)
    var = mode_variance(cov, modes.velocity, intrinsic_variance=res.intrinsic_variance, bin_vectors=bin_vectors)
    return bin_modes(modes.energies, modes.intensities, var, blk.edges)


def _convolved_subsampled(
    model: Any, params: Any, res: Any, plan: Plan, union: np.ndarray, n_sub: int
) -> list[np.ndarray]:
    """Convolved sub-bin means of each block, averaged over ``n_sub`` x ``n_sub`` Q points per bin.

    Returns one array per block, shape ``(union.sum(), n_energy_sub_bins)``, NaN for the points
    the block does not need. Each batch of bins is diagonalised once for all blocks.
    """
    offsets, residual = subsample_offsets(plan.bin_vectors, n_sub)
    n_off = offsets.shape[0]
    qh, qk = plan.qh[union], plan.qk[union]
    needs = [np.ones(qh.size, dtype=bool) if blk.need is None else blk.need[union] for blk in plan.blocks]
    out = [np.full((qh.size, blk.edges.size - 1), np.nan) for blk in plan.blocks]
    centres = np.flatnonzero(np.any(needs, axis=0)) if needs else np.zeros(0, dtype=int)
    per = max(1, _SUBSAMPLE_BATCH // n_off)
    for start in range(0, centres.size, per):
        c = centres[start:start + per]
        sh = (qh[c, None] + offsets[None, :, 0]).ravel()
        sk = (qk[c, None] + offsets[None, :, 1]).ravel()
        evaluator = ModeEvaluator(model, params, sh, sk, velocity=True)
        for b, blk in enumerate(plan.blocks):
            sel = np.flatnonzero(needs[b][c])
            if not sel.size:
                continue
            sidx = (sel[:, None] * n_off + np.arange(n_off)[None, :]).ravel()
            modes = evaluator.at(blk.ei, sidx)
            vals = _convolved_bin_means(res, sh[sidx], sk[sidx], modes, blk, residual)
            out[b][c[sel]] = vals.reshape(sel.size, n_off, -1).mean(axis=1)
    return out


def simulate_plan(
    plan: Plan,
    model: Any,
    params: Any = None,
    *,
    resolution: Any = "builtin",
    rng: np.random.Generator | None = None,
    noise: Any = None,
    background: Any = None,
    want: tuple[bool, bool] = (True, True),
    q_subsamples: int = 1,
) -> tuple[MDHisto | None, MDHisto | None]:
    """Simulate a planned representation.

    Parameters
    ----------
    plan
        From one of the ``plan_*`` functions.
    model, params, resolution, rng, noise, background, q_subsamples
        As :func:`simulate_mosaic_pair`.
    want
        Which of (convolved, unconvolved) to compute; the other is returned as None.

    Returns
    -------
    (MDHisto or None, MDHisto or None)
    """
    n_sub = _check_q_subsamples(q_subsamples)
    m = resolve_model(model)
    p = resolve_params(m, params)
    res = get_resolution(resolution)
    for blk in plan.blocks:
        res.check_coverage(blk.ei, plan.q_range, blk.e_range)
    if isinstance(noise, (int, float)) and not isinstance(noise, bool):
        noise = PoissonNoise(float(noise))
    if isinstance(background, (int, float)) and not isinstance(background, bool):
        background = SmoothBackground(level=float(background))
    n = plan.qh.size
    needs = [blk.need for blk in plan.blocks]
    union = np.ones(n, dtype=bool) if any(x is None for x in needs) else np.any(needs, axis=0)
    # With sub-sampling the convolved spectrum has its own sub-bin points; the bin centres
    # then only serve the unconvolved one.
    sub = n_sub > 1 and want[0]
    subsampled = _convolved_subsampled(m, p, res, plan, union, n_sub) if sub else None
    centre_want = (want[0] and not sub, want[1])
    evaluator = ModeEvaluator(m, p, plan.qh[union], plan.qk[union], velocity=centre_want[0])
    results: list[list[np.ndarray]] = [[], []]
    for b, blk in enumerate(plan.blocks):
        idx = np.arange(evaluator.qh.size) if blk.need is None else np.flatnonzero(blk.need[union])
        modes = evaluator.at(blk.ei, idx) if idx.size and any(centre_want) else None
        for k in (0, 1):
            if not want[k]:
                continue
            nsub = blk.edges.size - 1
            if k == 0 and subsampled is not None:
                results[k].append(_aggregate(_scatter(subsampled[b], union), blk.edges, blk.members))
                continue
            vals = np.full((evaluator.qh.size, nsub), np.nan)
            if modes is not None:
                if k == 1:
                    vals[idx] = bin_modes(modes.energies, modes.intensities, res.intrinsic_variance, blk.edges)
                else:
                    vals[idx] = _convolved_bin_means(
                        res, evaluator.qh[idx], evaluator.qk[idx], modes, blk, plan.bin_vectors
                    )
            results[k].append(_aggregate(_scatter(vals, union), blk.edges, blk.members))
    meta = dict(plan.metadata)
    meta.update(
        model=model_name(m),
        parameters=param_dict(m, p),
        resolution=res.describe(),
        mask=plan.metadata.get("mask", "none" if plan.mask is None else "array"),
        q_subsamples=n_sub,
    )
    out: list[MDHisto | None] = []
    for k, kind in enumerate(("convolved", "unconvolved")):
        if not want[k]:
            out.append(None)
            continue
        sig = np.array(plan.assemble(results[k]), dtype=float)
        if plan.mask is not None:
            sig[plan.mask] = np.nan
        errors = None
        kmeta = dict(meta, kind=kind)
        if kind == "convolved" and (noise is not None or background is not None):
            sig, errors = apply_noise(sig, plan.coords, noise=noise, background=background, rng=rng)
            kmeta["noise"] = None if noise is None else noise.describe()
            kmeta["background"] = None if background is None else background.describe()
        out.append(MDHisto(sig, plan.axes, errors=errors, metadata=kmeta))
    return out[0], out[1]


def _with_mask_meta(plan: Plan, mask: Any) -> Plan:
    plan.metadata["mask"] = _mask_description(mask)
    return plan


def simulate_mosaic_pair(
    model: Any,
    params: Any = None,
    *,
    resolution: Any = "builtin",
    mask: Any = "kinematic",
    rng: np.random.Generator | None = None,
    noise: Any = None,
    background: Any = None,
    ei_list: Sequence[float] = EI_LIST,
    window_fractions: Any = WINDOW_FRACTIONS,
    q_bins: int = TILE,
    q_range: tuple[float, float] = MOSAIC_Q_RANGE,
    coverage: DetectorCoverage = MAPS_COVERAGE,
    q_subsamples: int = 1,
) -> tuple[MDHisto, MDHisto]:
    """The 240x400 mosaic with and without resolution.

    Parameters
    ----------
    model
        Spin model, registered name or ``module:attribute`` reference.
    params
        Parameters (mapping or vector in ``parameter_names`` order); None = published values.
    resolution
        ``"builtin"``, ``"tables:DIR"``, ``"unconvolved"`` or a ResolutionModel.
    mask
        ``"kinematic"`` (default), ``"none"``/None, a ``.mat``/``.npy`` file or an array of
        the mosaic's shape (True/nonzero = masked).
    rng
        Random generator for the noise.
    noise
        Poisson flux (float or :class:`~.noise.PoissonNoise`) or None.
    background
        Relative level (float or :class:`~.noise.SmoothBackground`) or None.
    ei_list, window_fractions, q_bins, q_range
        Layout; the defaults are ``pcsmo-mosaic-v1``: Ei 25 ... 140 meV, windows
        ``[0.10+0.06j, 0.16+0.06j]*Ei``, Qh and Qk in 40 bins centred on -1 ... +1 r.l.u.
        (``q_range`` gives the bin edges: :data:`~mantid_exp2sim.mosaic.MOSAIC_Q_RANGE`).
    coverage
        Detector coverage for the kinematic mask.
    q_subsamples
        Q points per bin edge of the convolved spectrum: 1 (default, fastest) evaluates the
        bin centre and accounts for the bin width through the energy variance; n > 1 averages
        over the n x n sub-bin centres (see the module notes; about n^2 times the cost).
        A whole number 1 ... ``MAX_Q_SUBSAMPLES``, otherwise ``InputDataError``
        (a ``ValueError``).

    Returns
    -------
    (MDHisto, MDHisto)
        Convolved and unconvolved mosaics, shape ``(len(ei_list)*q_bins,
        len(window_fractions)*q_bins)``, axes ``MosaicRow``/``MosaicColumn``, metadata
        ``layout``, ``ei_list``, ``window_fractions``, ``q_range``, ``q_bins``, ``model``,
        ``parameters``, ``resolution``, ``mask``, ``q_subsamples``, ``kind``.
    """
    plan = plan_mosaic(mask=mask, ei_list=ei_list, window_fractions=window_fractions, q_bins=q_bins,
                       q_range=q_range, coverage=coverage)
    return simulate_plan(_with_mask_meta(plan, mask), model, params, resolution=resolution, rng=rng,
                         noise=noise, background=background, q_subsamples=q_subsamples)


def simulate_volume_pair(
    model: Any,
    params: Any = None,
    *,
    ei: float = DEFAULT_VOLUME_EI,
    bins: Any = (64, 64, 64),
    q_range: tuple[float, float] = Q_RANGE,
    energy_range: tuple[float, float] | None = None,
    resolution: Any = "builtin",
    mask: Any = "kinematic",
    rng: np.random.Generator | None = None,
    noise: Any = None,
    background: Any = None,
    coverage: DetectorCoverage = MAPS_COVERAGE,
    q_subsamples: int = 1,
) -> tuple[MDHisto, MDHisto]:
    """A (Qh, Qk, E) volume for one incident energy, with and without resolution.

    Parameters
    ----------
    model, params, resolution, rng, noise, background, coverage, q_subsamples
        As :func:`simulate_mosaic_pair`.
    ei
        Incident energy in meV (default 70).
    bins
        Bins along Qh, Qk and E (one number = the same for all three).
    q_range
        Qh and Qk extents in r.l.u. (default -1..1).
    energy_range
        Energy-transfer extents in meV (default 0.1*Ei..0.7*Ei); must lie in 0..Ei.
    mask
        ``"kinematic"``, ``"none"``/None, a ``.npy`` file or an array of shape ``bins``.

    Returns
    -------
    (MDHisto, MDHisto)
        Convolved and unconvolved, dims ``[H,0,0]``, ``[0,K,0]``, ``DeltaE``,
        ``signal[ih, ik, ie]``; metadata ``ei`` (and ``Ei``), ``model``, ``parameters``,
        ``resolution``, ``mask``, ``kind``.
    """
    plan = plan_volume(ei=ei, bins=bins, q_range=q_range, energy_range=energy_range, mask=mask, coverage=coverage)
    return simulate_plan(_with_mask_meta(plan, mask), model, params, resolution=resolution, rng=rng,
                         noise=noise, background=background, q_subsamples=q_subsamples)


def simulate_e_slice_pair(
    model: Any,
    params: Any = None,
    *,
    ei: float = DEFAULT_VOLUME_EI,
    energy_window: tuple[float, float] | None = None,
    bins: Any = (TILE, TILE),
    q_range: tuple[float, float] = Q_RANGE,
    resolution: Any = "builtin",
    mask: Any = "kinematic",
    rng: np.random.Generator | None = None,
    noise: Any = None,
    background: Any = None,
    coverage: DetectorCoverage = MAPS_COVERAGE,
    q_subsamples: int = 1,
) -> tuple[MDHisto, MDHisto]:
    """A constant-energy (Qh, Qk) slice: the mean over one energy window.

    Parameters
    ----------
    energy_window
        (low, high) energy transfer in meV; default ``(0.28, 0.34) * ei`` (mosaic window 3).
    bins
        Bins along Qh and Qk.
    mask
        ``"kinematic"``, ``"none"``/None, a ``.npy`` file or an array of shape ``bins``.
    others
        As :func:`simulate_volume_pair`.

    Returns
    -------
    (MDHisto, MDHisto)
        Dims ``[H,0,0]``, ``[0,K,0]``, ``signal[ih, ik]``; metadata ``energy_window``, ``ei``.
    """
    plan = plan_e_slice(ei=ei, energy_window=energy_window, bins=bins, q_range=q_range, mask=mask, coverage=coverage)
    return simulate_plan(_with_mask_meta(plan, mask), model, params, resolution=resolution, rng=rng,
                         noise=noise, background=background, q_subsamples=q_subsamples)


def simulate_qe_slice_pair(
    model: Any,
    params: Any = None,
    *,
    ei: float = DEFAULT_VOLUME_EI,
    start: Sequence[float] = (-1.0, 0.0),
    end: Sequence[float] = (1.0, 0.0),
    bins: Any = (100, 100),
    energy_range: tuple[float, float] | None = None,
    thickness: float = 2.0 / TILE,
    resolution: Any = "builtin",
    mask: Any = "kinematic",
    rng: np.random.Generator | None = None,
    noise: Any = None,
    background: Any = None,
    coverage: DetectorCoverage = MAPS_COVERAGE,
    q_subsamples: int = 1,
) -> tuple[MDHisto, MDHisto]:
    """A Q-E slice along the straight line from ``start`` to ``end`` in (Qh, Qk).

    Parameters
    ----------
    start, end
        End points (Qh, Qk) in r.l.u.
    bins
        (bins along the line, energy bins).
    energy_range
        meV, default 0.1*Ei..0.7*Ei.
    thickness
        Width of the cut perpendicular to the line in r.l.u. (it enters the bin-width term
        of the convolved spectrum; with ``q_subsamples`` = 1 the model is evaluated on the
        line itself, with n > 1 also at n points across the thickness when it is > 0).
    mask
        ``"kinematic"``, ``"none"``/None, a ``.npy`` file or an array of shape ``bins``.
    others
        As :func:`simulate_volume_pair`.

    Returns
    -------
    (MDHisto, MDHisto)
        Dims: the line (see :func:`qe_line`; r.l.u., HKL) and ``DeltaE`` (meV),
        ``signal[iq, ie]``; metadata ``line_start``, ``line_end``, ``thickness``, ``ei``.
    """
    plan = plan_qe_slice(ei=ei, start=start, end=end, bins=bins, energy_range=energy_range, thickness=thickness,
                         mask=mask, coverage=coverage)
    return simulate_plan(_with_mask_meta(plan, mask), model, params, resolution=resolution, rng=rng,
                         noise=noise, background=background, q_subsamples=q_subsamples)


_SIM_KEYS = ("resolution", "rng", "noise", "background", "q_subsamples")


def _single(planner: Callable[..., Plan], model: Any, params: Any, convolved: bool, kw: dict[str, Any]) -> MDHisto:
    sim = {k: kw.pop(k) for k in _SIM_KEYS if k in kw}
    plan = planner(**kw)
    _with_mask_meta(plan, kw.get("mask", "kinematic"))
    pair = simulate_plan(plan, model, params, **sim, want=(convolved, not convolved))
    return pair[0] if convolved else pair[1]


def simulate_mosaic(model: Any, params: Any = None, *, convolved: bool = True, **kw: Any) -> MDHisto:
    """One mosaic, convolved (default) or unconvolved; keywords as :func:`simulate_mosaic_pair`."""
    return _single(plan_mosaic, model, params, convolved, kw)


def simulate_volume(model: Any, params: Any = None, *, convolved: bool = True, **kw: Any) -> MDHisto:
    """One volume, convolved (default) or unconvolved; keywords as :func:`simulate_volume_pair`."""
    return _single(plan_volume, model, params, convolved, kw)


def simulate_e_slice(model: Any, params: Any = None, *, convolved: bool = True, **kw: Any) -> MDHisto:
    """One constant-energy slice; keywords as :func:`simulate_e_slice_pair`."""
    return _single(plan_e_slice, model, params, convolved, kw)


def simulate_qe_slice(model: Any, params: Any = None, *, convolved: bool = True, **kw: Any) -> MDHisto:
    """One Q-E slice; keywords as :func:`simulate_qe_slice_pair`."""
    return _single(plan_qe_slice, model, params, convolved, kw)
