"""The representations of simulated spectra: their geometry (plans) and the table of them.

A :class:`Plan` is a representation's geometry and how to compute it: the output axes, the
coverage mask, the bin coordinates, the in-plane Q points to diagonalise and, per incident
energy, the energy sub-bins (:mod:`.spectra` evaluates it). One planner per representation:

* :func:`plan_mosaic`: the 240x400 ``pcsmo-mosaic-v1`` mosaic (6 Ei x 10 energy windows x
  40x40 (Qh, Qk)), axes ``MosaicRow``/``MosaicColumn``;
* :func:`plan_volume`: a (Qh, Qk, E) volume for one Ei, dims ``[H,0,0]``, ``[0,K,0]``
  (r.l.u., frame HKL) and ``DeltaE`` (meV), ``signal[ih, ik, ie]``;
* :func:`plan_e_slice`: one constant-energy (Qh, Qk) slice;
* :func:`plan_qe_slice`: a Q-E slice along a straight line in (Qh, Qk).

:data:`REPRESENTATIONS` maps each name to its :class:`Representation` (planner, the geometry
defaults, the data-set settings that apply); data sets (:class:`~.dataset.DatasetSpec`) and the
``simulate_*`` functions of :mod:`.spectra` go through it. Every default is written once, in
the planner's signature (Ei 70 meV, 64^3, 40^2 and 100^2 bins, the mosaic layout of
:mod:`mantid_exp2sim.mosaic`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import InputDataError, format_error
from ..histogram import Axis
from ..mosaic import (
    EI_LIST,
    LAYOUT,
    MOSAIC_Q_RANGE,
    Q_RANGE,
    TILE,
    WINDOW_FRACTIONS,
    mosaic_axes,
    mosaic_tiles,
    tiles_to_mosaic,
)
from .coverage import kinematic_mask, resolve_mask
from .kinematics import MAPS_COVERAGE, DetectorCoverage

__all__ = [
    "DEFAULT_VOLUME_EI",
    "DEFAULT_ENERGY_FRACTIONS",
    "DEFAULT_E_SLICE_FRACTIONS",
    "MAX_BINS",
    "Block",
    "Plan",
    "Representation",
    "REPRESENTATIONS",
    "representation",
    "plan_mosaic",
    "plan_volume",
    "plan_e_slice",
    "plan_qe_slice",
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
class Block:
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
    blocks: list[Block] = field(default_factory=list)
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


def plan_mosaic(
    *,
    mask: Any = "kinematic",
    ei_list: Sequence[float] = EI_LIST,
    window_fractions: Any = WINDOW_FRACTIONS,
    q_bins: int = TILE,
    q_range: tuple[float, float] = MOSAIC_Q_RANGE,
    coverage: DetectorCoverage = MAPS_COVERAGE,
) -> Plan:
    """Geometry of the mosaic (``pcsmo-mosaic-v1`` by default).

    Parameters
    ----------
    mask
        ``"kinematic"`` (default: the detector coverage), ``"none"``/None, a ``.mat``/``.npy``
        file or an array of the mosaic's shape (True/nonzero = masked).
    ei_list, window_fractions, q_bins, q_range
        Layout; the defaults are ``pcsmo-mosaic-v1``: Ei 25 ... 140 meV, windows
        ``[0.10+0.06j, 0.16+0.06j]*Ei``, Qh and Qk in 40 bins centred on -1 ... +1 r.l.u.
        (``q_range`` gives the bin edges: :data:`~mantid_exp2sim.mosaic.MOSAIC_Q_RANGE`).
    coverage
        Detector coverage for the kinematic mask.

    Returns
    -------
    Plan
        Shape ``(len(ei_list)*q_bins, len(window_fractions)*q_bins)``, axes
        ``MosaicRow``/``MosaicColumn``, metadata ``layout``, ``ei_list``,
        ``window_fractions``, ``q_range``, ``q_bins``.
    """
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
    mask_tiles = None if mask_arr is None else mosaic_tiles(mask_arr, q_bins)
    blocks = []
    for b, ei in enumerate(eis):
        edges, members = _window_edges(fr * ei)
        need = None if mask_tiles is None else ~mask_tiles[b].reshape(q_bins * q_bins, nw).all(axis=1)
        blocks.append(Block(ei, edges, members, need, (float(fr[:, 0].min() * ei), float(fr[:, 1].max() * ei))))

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
    bins: tuple[int, ...],
    e_edges: np.ndarray,
    e_range: tuple[float, float],
    q_range: tuple[float, float],
    mask: Any,
    coverage: DetectorCoverage,
    metadata: dict[str, Any],
) -> Plan:
    """The plan of a volume (``bins`` = (nh, nk, ne)) or an E slice (``bins`` = (nh, nk), one
    energy bin ``e_edges``) on a regular (Qh, Qk, E) grid."""
    nh, nk = bins[0], bins[1]
    ne = e_edges.size - 1
    hc, dh = _q_grid(q_range, nh)
    kc, dk = _q_grid(q_range, nk)
    shape = (nh, nk, ne)
    QH = np.broadcast_to(hc[:, None, None], shape)
    QK = np.broadcast_to(kc[None, :, None], shape)
    ELO = np.broadcast_to(e_edges[None, None, :-1], shape)
    EHI = np.broadcast_to(e_edges[None, None, 1:], shape)
    mask_arr = resolve_mask(mask, bins, lambda: kinematic_mask(QH, QK, ELO, EHI, ei, coverage).reshape(bins))
    need = None if mask_arr is None else ~mask_arr.reshape(nh * nk, ne).all(axis=1)
    coords = (QH, QK, 0.5 * (ELO + EHI), np.full(shape, ei))
    return Plan(
        axes=volume_axes((nh, nk, ne), q_range, e_range)[: len(bins)],
        mask=mask_arr,
        coords=coords if len(bins) == 3 else tuple(c[..., 0] for c in coords),
        metadata={"ei": ei, "Ei": ei, **metadata},
        qh=np.repeat(hc, nk),
        qk=np.tile(kc, nh),
        bin_vectors=np.array([[dh, 0.0], [0.0, dk]]),
        q_range=q_range,
        blocks=[Block(ei, e_edges, None, need, e_range)],
        assemble=lambda results: results[0].reshape(bins),
    )


def plan_volume(
    *,
    ei: float = DEFAULT_VOLUME_EI,
    bins: Any = (64, 64, 64),
    q_range: tuple[float, float] = Q_RANGE,
    energy_range: tuple[float, float] | None = None,
    mask: Any = "kinematic",
    coverage: DetectorCoverage = MAPS_COVERAGE,
) -> Plan:
    """Geometry of a (Qh, Qk, E) volume for one incident energy.

    Parameters
    ----------
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
    coverage
        Detector coverage for the kinematic mask.

    Returns
    -------
    Plan
        Dims ``[H,0,0]``, ``[0,K,0]``, ``DeltaE``, ``signal[ih, ik, ie]``; metadata ``ei``
        (and ``Ei``).
    """
    ei = _check_ei(ei)
    bins = _check_bins(bins, 3)
    q_range = _check_range(q_range, "q_range", "r.l.u.")
    er = _energy_range(energy_range, ei)
    return _plan_grid(ei, bins, np.linspace(er[0], er[1], bins[2] + 1), er, q_range, mask, coverage, {})


def plan_e_slice(
    *,
    ei: float = DEFAULT_VOLUME_EI,
    energy_window: tuple[float, float] | None = None,
    bins: Any = (TILE, TILE),
    q_range: tuple[float, float] = Q_RANGE,
    mask: Any = "kinematic",
    coverage: DetectorCoverage = MAPS_COVERAGE,
) -> Plan:
    """Geometry of a constant-energy (Qh, Qk) slice: the mean over one energy window.

    Parameters
    ----------
    energy_window
        (low, high) energy transfer in meV; default ``(0.28, 0.34) * ei`` (mosaic window 3).
    bins
        Bins along Qh and Qk.
    ei, q_range, mask, coverage
        As :func:`plan_volume` (the mask has the shape ``bins``).

    Returns
    -------
    Plan
        Dims ``[H,0,0]``, ``[0,K,0]``, ``signal[ih, ik]``; metadata ``energy_window``, ``ei``.
    """
    ei = _check_ei(ei)
    bins = _check_bins(bins, 2)
    q_range = _check_range(q_range, "q_range", "r.l.u.")
    if energy_window is None:
        energy_window = (DEFAULT_E_SLICE_FRACTIONS[0] * ei, DEFAULT_E_SLICE_FRACTIONS[1] * ei)
    win = _check_range(energy_window, "energy_window", "meV")
    _check_energy_range(win, ei, "energy_window")
    return _plan_grid(ei, bins, np.array(win), win, q_range, mask, coverage, {"energy_window": [win[0], win[1]]})


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
    """Geometry of a Q-E slice along the straight line from ``start`` to ``end`` in (Qh, Qk).

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
    ei, mask, coverage
        As :func:`plan_volume` (the mask has the shape ``bins``).

    Returns
    -------
    Plan
        Dims: the line (see :func:`qe_line`; r.l.u., HKL) and ``DeltaE`` (meV),
        ``signal[iq, ie]``; metadata ``line_start``, ``line_end``, ``thickness``, ``ei``.
    """
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
        blocks=[Block(ei, e_edges, None, need, er)],
        assemble=lambda results: results[0].reshape(shape),
    )


# ============================================================================ the table
@dataclass(frozen=True)
class Representation:
    """One representation: its name, its planner and the data-set settings that apply to it.

    Attributes
    ----------
    name
        ``"mosaic"``, ``"volume"``, ``"e_slice"`` or ``"qe_slice"``.
    planner
        The ``plan_*`` function (geometry keywords only).
    settings
        The :class:`~.dataset.DatasetSpec` geometry settings it accepts (``line`` stands for
        the planner's ``start`` and ``end``).
    """

    name: str
    planner: Callable[..., Plan]
    settings: tuple[str, ...]

    @property
    def defaults(self) -> dict[str, Any]:
        """The planner's keyword defaults (the one place they are written)."""
        return {
            k: p.default for k, p in inspect.signature(self.planner).parameters.items() if p.default is not p.empty
        }

    def plan(self, **geometry: Any) -> Plan:
        """The planner's plan, with ``metadata["mask"]`` describing the mask argument."""
        plan = self.planner(**geometry)
        plan.metadata["mask"] = _mask_description(geometry.get("mask", self.defaults["mask"]))
        return plan


#: Every representation by name, in the order the command line lists them.
REPRESENTATIONS: Mapping[str, Representation] = {
    r.name: r
    for r in (
        Representation("mosaic", plan_mosaic, ()),
        Representation("volume", plan_volume, ("ei", "bins", "energy_range")),
        Representation("e_slice", plan_e_slice, ("ei", "bins", "energy_window")),
        Representation("qe_slice", plan_qe_slice, ("ei", "bins", "energy_range", "line")),
    )
}


def representation(name: str) -> Representation:
    """The representation called ``name`` (``InputDataError`` naming the allowed ones otherwise)."""
    try:
        return REPRESENTATIONS[name]
    except (KeyError, TypeError):
        raise InputDataError(
            format_error("Unknown representation", reason=f"got {name!r}; allowed: {', '.join(REPRESENTATIONS)}")
        ) from None
