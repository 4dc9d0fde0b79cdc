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

Representations (their geometry, defaults and planners: :mod:`.representations`), each
simulated by :func:`simulate_pair` or its named forms:

* :func:`simulate_mosaic_pair`: the 240x400 ``pcsmo-mosaic-v1`` mosaic;
* :func:`simulate_volume_pair`: a (Qh, Qk, E) volume for one Ei;
* :func:`simulate_e_slice_pair`: one constant-energy (Qh, Qk) slice;
* :func:`simulate_qe_slice_pair`: a Q-E slice along a straight line in (Qh, Qk);

and ``simulate_mosaic``, ``simulate_volume``, ... for one spectrum. :func:`simulate_plan`
simulates any :class:`~.representations.Plan`.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from ..errors import InputDataError, format_error
from ..histogram import MDHisto
from .kinematics import PCSMO_LATTICE, Lattice
from .binning import ModeEvaluator, bin_modes, mode_variance, subsample_offsets
from .modelref import model_name, param_dict, resolve_model, resolve_params
from .noise import PoissonNoise, SmoothBackground, apply_noise
from .representations import Block, Plan, representation
from .measurement_model import check_measurement
from .resolution import MeasurementResolution, ResolutionModel, get_resolution
from .spin_models import with_twin_fraction

__all__ = [
    "MAX_Q_SUBSAMPLES",
    "simulate_plan",
    "simulate_pair",
    "simulate_mosaic_pair",
    "simulate_mosaic",
    "simulate_volume_pair",
    "simulate_volume",
    "simulate_e_slice_pair",
    "simulate_e_slice",
    "simulate_qe_slice_pair",
    "simulate_qe_slice",
]

#: Largest ``q_subsamples`` accepted (each bin costs about its square in model evaluations).
MAX_Q_SUBSAMPLES = 16
#: Sub-bin Q points diagonalised together (bounds the eigenvector memory, ~16 kB per point).
_SUBSAMPLE_BATCH = 16384


# ============================================================================ checks
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


def measurement_resolution(res: ResolutionModel, model: Any, scale: float, mosaic: float) -> ResolutionModel:
    """``res`` widened by a resolution scale and a sample mosaic (``res`` itself when both are off)."""
    if scale == 1.0 and mosaic == 0.0:
        return res
    lat = getattr(model, "lattice", None)
    lattice = PCSMO_LATTICE if lat is None else Lattice(a=float(lat.a), b=float(lat.b), c=float(lat.c))
    return MeasurementResolution(res, scale=scale, mosaic_deg=mosaic, lattice=lattice)


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
    res: Any, qh: np.ndarray, qk: np.ndarray, modes: Any, blk: Block, bin_vectors: np.ndarray
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
    twin_fraction: float | None = None,
    resolution_scale: float = 1.0,
    mosaic: float = 0.0,
    resolution_sampling: int = 0,
) -> tuple[MDHisto | None, MDHisto | None]:
    """Simulate a planned representation.

    Parameters
    ----------
    plan
        From one of the planners of :mod:`.representations`.
    model
        Spin model, registered name or ``module:attribute`` reference.
    params
        Parameters (mapping or vector in ``parameter_names`` order); None = published values.
    resolution
        ``"builtin"``, ``"tables:DIR"``, ``"unconvolved"`` or a ResolutionModel.
    rng
        Random generator for the noise.
    noise
        Poisson flux (float or :class:`~.noise.PoissonNoise`) or None.
    background
        Relative level (float or :class:`~.noise.SmoothBackground`) or None.
    want
        Which of (convolved, unconvolved) to compute; the other is returned as None.
    q_subsamples
        Q points per bin edge of the convolved spectrum: 1 (default, fastest) evaluates the
        bin centre and accounts for the bin width through the energy variance; n > 1 averages
        over the n x n sub-bin centres (see the module notes; about n^2 times the cost).
        A whole number 1 ... ``MAX_Q_SUBSAMPLES``, otherwise ``InputDataError``
        (a ``ValueError``).
    twin_fraction, resolution_scale, mosaic, resolution_sampling
        The measurement model (:class:`~.measurement_model.MeasurementModel`, whose
        ``simulate_kwargs()`` gives them): volume of twin 1 (None = the model's own),
        factor on the resolution widths, sample mosaic FWHM in degrees, and the sampled
        treatment of the bin and the in-plane resolution (``n x n`` points per bin, 0 = the
        linearised widths). The defaults reproduce the simulator without them exactly.
        ``twin_fraction`` and ``resolution_scale``/``mosaic`` act on both spectra where they
        apply: twins on both, widths on the convolved one.

    Returns
    -------
    (MDHisto or None, MDHisto or None)
        Convolved and unconvolved, on the plan's axes; metadata: the plan's, plus ``model``,
        ``parameters``, ``resolution``, ``mask``, ``q_subsamples``, ``measurement``,
        ``kind`` (and ``noise``, ``background`` of the convolved one when given).
    """
    n_sub = _check_q_subsamples(q_subsamples)
    tf, r_scale, mos, n_rs = check_measurement(twin_fraction, resolution_scale, mosaic, resolution_sampling)
    m = with_twin_fraction(resolve_model(model), tf)
    p = resolve_params(m, params)
    res = measurement_resolution(get_resolution(resolution), m, r_scale, mos)
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
    sub = (n_sub > 1 or n_rs > 0) and want[0]
    subsampled = _convolved_subsampled(m, p, res, plan, union, max(n_sub, n_rs)) if sub else None
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
        measurement={"twin_fraction": tf, "resolution_scale": r_scale, "mosaic": mos, "resolution_sampling": n_rs},
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


#: The keywords of :func:`simulate_plan` that :func:`simulate_pair` passes on (the rest go to the planner).
_SIMULATION_KEYS = tuple(inspect.signature(simulate_plan).parameters)[3:]


def simulate_pair(name: str, model: Any, params: Any = None, **kw: Any) -> tuple[MDHisto | None, MDHisto | None]:
    """A representation's spectrum with and without resolution.

    Parameters
    ----------
    name
        The representation (a key of :data:`~.representations.REPRESENTATIONS`).
    model, params
        As :func:`simulate_plan`.
    **kw
        The simulation settings of :func:`simulate_plan` (``resolution``, ``rng``,
        ``noise``, ``background``, ``want``, ``q_subsamples``) and the representation's
        planner keywords (``mask``, ``ei``, ``bins``, ...; see ``plan_mosaic``,
        ``plan_volume``, ``plan_e_slice``, ``plan_qe_slice`` in :mod:`.representations`);
        absent ones take their defaults.

    Returns
    -------
    (MDHisto, MDHisto)
        As :func:`simulate_plan`.
    """
    simulation = {k: kw.pop(k) for k in _SIMULATION_KEYS if k in kw}
    return simulate_plan(representation(name).plan(**kw), model, params, **simulation)


def _single(name: str, model: Any, params: Any, convolved: bool, kw: dict[str, Any]) -> MDHisto:
    pair = simulate_pair(name, model, params, want=(convolved, not convolved), **kw)
    out = pair[0] if convolved else pair[1]
    assert out is not None
    return out


def simulate_mosaic_pair(model: Any, params: Any = None, **kw: Any) -> tuple[MDHisto, MDHisto]:
    """The 240x400 mosaic with and without resolution.

    Keywords: the simulation settings of :func:`simulate_plan` and the layout of
    :func:`~.representations.plan_mosaic` (``mask``, ``ei_list``, ``window_fractions``,
    ``q_bins``, ``q_range``, ``coverage``; default ``pcsmo-mosaic-v1`` with the kinematic mask).
    """
    return simulate_pair("mosaic", model, params, **kw)


def simulate_volume_pair(model: Any, params: Any = None, **kw: Any) -> tuple[MDHisto, MDHisto]:
    """A (Qh, Qk, E) volume for one incident energy, with and without resolution.

    Keywords: the simulation settings of :func:`simulate_plan` and the geometry of
    :func:`~.representations.plan_volume` (``ei``, ``bins``, ``q_range``, ``energy_range``,
    ``mask``, ``coverage``).
    """
    return simulate_pair("volume", model, params, **kw)


def simulate_e_slice_pair(model: Any, params: Any = None, **kw: Any) -> tuple[MDHisto, MDHisto]:
    """A constant-energy (Qh, Qk) slice (the mean over one energy window), with and without resolution.

    Keywords: the simulation settings of :func:`simulate_plan` and the geometry of
    :func:`~.representations.plan_e_slice` (``ei``, ``energy_window``, ``bins``, ``q_range``,
    ``mask``, ``coverage``).
    """
    return simulate_pair("e_slice", model, params, **kw)


def simulate_qe_slice_pair(model: Any, params: Any = None, **kw: Any) -> tuple[MDHisto, MDHisto]:
    """A Q-E slice along a straight line in (Qh, Qk), with and without resolution.

    Keywords: the simulation settings of :func:`simulate_plan` and the geometry of
    :func:`~.representations.plan_qe_slice` (``ei``, ``start``, ``end``, ``bins``,
    ``energy_range``, ``thickness``, ``mask``, ``coverage``).
    """
    return simulate_pair("qe_slice", model, params, **kw)


def simulate_mosaic(model: Any, params: Any = None, *, convolved: bool = True, **kw: Any) -> MDHisto:
    """One mosaic, convolved (default) or unconvolved; keywords as :func:`simulate_mosaic_pair`."""
    return _single("mosaic", model, params, convolved, kw)


def simulate_volume(model: Any, params: Any = None, *, convolved: bool = True, **kw: Any) -> MDHisto:
    """One volume, convolved (default) or unconvolved; keywords as :func:`simulate_volume_pair`."""
    return _single("volume", model, params, convolved, kw)


def simulate_e_slice(model: Any, params: Any = None, *, convolved: bool = True, **kw: Any) -> MDHisto:
    """One constant-energy slice; keywords as :func:`simulate_e_slice_pair`."""
    return _single("e_slice", model, params, convolved, kw)


def simulate_qe_slice(model: Any, params: Any = None, *, convolved: bool = True, **kw: Any) -> MDHisto:
    """One Q-E slice; keywords as :func:`simulate_qe_slice_pair`."""
    return _single("qe_slice", model, params, convolved, kw)
