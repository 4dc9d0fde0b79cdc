"""The core of every representation: modes at in-plane Q -> mean intensity in energy bins.

A mode of energy ``w`` and intensity ``I`` at in-plane Q adds to an energy bin
``[e0, e1]`` (width ``W = e1 - e0``) the bin mean::

    I * (Phi((e1 - w) / s) - Phi((e0 - w) / s)) / W

with ``Phi`` the standard normal CDF. Summed over bins times their widths, this returns
``I`` for every mode inside the binned range: the convolution conserves integrated
intensity. The energy variance ``s^2`` of a mode is that of ``E - v.Q`` under the resolution
Gaussian, ``v`` being the mode's group velocity (the dispersion linearised across the
resolution ellipsoid)::

    s^2 = s_EE - 2 v.s_QE + v^T S_QQ v + (v_h^2 dh^2 + v_k^2 dk^2) / 12 + s_intrinsic^2

The ``/12`` term is the spread of the mode energy across a Q bin of widths (dh, dk) when one
Q point per bin is evaluated (a uniform distribution over the bin). When each bin is
sampled at the centres of n x n sub-bins (:func:`subsample_offsets`), the term covers one
sub-bin (edges divided by n): the sub-point energies themselves spread by
``(v.a)^2 (n^2 - 1) / (12 n^2)`` and the two add up to the one-point ``(v.a)^2 / 12`` for a
linear dispersion, while the sub-points also follow its curvature.

Group velocities: models that expose the diagonalisation (a ``modes(params, qh, qk, l)``
method whose result has ``energies``, ``intensities_kinematic(ei)`` and
``velocities_rlu()``, as the LSWT models of :mod:`.spin_models` do) give exact
Hellmann-Feynman velocities, and one diagonalisation serves every incident energy. For any
other model (only the ``spectrum_kinematic`` contract), velocities are central finite
differences of the mode energies at Q +/- step along Qh and Qk, mode by mode as the model
orders them. Near a crossing of two modes that ordering can swap, and the difference then
mixes the two slopes; the error is confined to a few bins around the crossing and only
changes a width there. Either way the dispersion is linearised across the resolution
ellipsoid and the Q bin, which misses the curvature at band extrema (there the width is
slightly underestimated).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import ndtr

__all__ = ["ModeSet", "ModeEvaluator", "evaluate_modes", "mode_variance", "bin_modes", "subsample_offsets"]

#: Elements per chunk of the (points, modes, edges) CDF array; bounds peak memory (~64 MB).
_CHUNK_ELEMENTS = 8_000_000


class ModeSet:
    """Modes at a set of in-plane Q points.

    Attributes
    ----------
    energies, intensities
        Shape ``(n, n_modes)``; meV and the model's intensity units. Unreachable or
        undefined modes have intensity 0.
    velocity
        Shape ``(n, n_modes, 2)``: dE/dQh and dE/dQk in meV per r.l.u., or None.
    """

    def __init__(self, energies: np.ndarray, intensities: np.ndarray, velocity: np.ndarray | None):
        self.energies = energies
        self.intensities = intensities
        self.velocity = velocity


def _call(model: Any, params: Any, qh: np.ndarray, qk: np.ndarray, ei: float) -> tuple[np.ndarray, np.ndarray]:
    e, i = model.spectrum_kinematic(params, qh, qk, ei)
    e = np.asarray(e, dtype=float)
    i = np.asarray(i, dtype=float)
    if e.ndim == 1:
        e, i = e[:, None], i[:, None]
    if e.shape != i.shape or e.shape[0] != qh.shape[0]:
        raise ValueError(
            f"model {getattr(model, 'name', model)!r} returned energies {e.shape} and intensities "
            f"{i.shape} for {qh.shape[0]} Q points; the contract is two (n, n_modes) arrays"
        )
    return e, i


def evaluate_modes(
    model: Any,
    params: Any,
    qh: np.ndarray,
    qk: np.ndarray,
    ei: float,
    *,
    velocity: bool = True,
    step: float = 1e-3,
) -> ModeSet:
    """Mode energies, intensities and (optionally) group velocities at in-plane Q.

    Parameters
    ----------
    model
        Object with ``spectrum_kinematic(params, qh, qk, ei) -> (energies, intensities)``.
    params
        Model parameters, passed through.
    qh, qk
        Shape ``(n,)``, r.l.u.
    ei
        Incident energy in meV (sets the kinematic L of every mode).
    velocity
        Whether to compute group velocities (4 more model calls).
    step
        Finite-difference step in r.l.u.

    Returns
    -------
    ModeSet
    """
    qh = np.asarray(qh, dtype=float).ravel()
    qk = np.asarray(qk, dtype=float).ravel()
    n = qh.shape[0]
    energies, intens = _call(model, params, qh, qk, ei)
    good = np.isfinite(energies) & np.isfinite(intens)
    energies = np.where(good, energies, 0.0)
    intens = np.where(good, np.maximum(intens, 0.0), 0.0)
    vel = None
    if velocity and n:
        # One call for all four displaced grids keeps the per-call overhead of the model low.
        d = np.array([[step, 0.0], [-step, 0.0], [0.0, step], [0.0, -step]])
        qhs = (qh[None, :] + d[:, :1]).ravel()
        qks = (qk[None, :] + d[:, 1:]).ravel()
        es, _ = _call(model, params, qhs, qks, ei)
        es = es.reshape(4, n, -1)
        vel = np.zeros((n,) + energies.shape[1:] + (2,))
        for axis, (ip, im) in enumerate(((0, 1), (2, 3))):
            ep, em = es[ip], es[im]
            okp, okm = np.isfinite(ep), np.isfinite(em)
            central = (ep - em) / (2 * step)
            fwd = (ep - energies) / step
            bwd = (energies - em) / step
            v = np.where(okp & okm, central, np.where(okp, fwd, np.where(okm, bwd, 0.0)))
            vel[..., axis] = np.where(good, v, 0.0)
    return ModeSet(energies, intens, vel)


class ModeEvaluator:
    """Modes at a fixed set of in-plane Q points, reusable for several incident energies.

    Parameters
    ----------
    model, params
        The model and its (validated) parameters.
    qh, qk
        Shape ``(n,)``, r.l.u.
    velocity
        Whether velocities will be needed.
    step
        Finite-difference step (r.l.u.) for models without analytic velocities.
    """

    def __init__(self, model: Any, params: Any, qh: np.ndarray, qk: np.ndarray, *, velocity: bool = True,
                 step: float = 1e-3) -> None:
        self.model, self.params = model, params
        self.qh = np.asarray(qh, dtype=float).ravel()
        self.qk = np.asarray(qk, dtype=float).ravel()
        self.velocity, self.step = velocity, step
        self._fast = None
        self._fast_velocity: np.ndarray | None = None
        modes = getattr(model, "modes", None)
        if callable(modes) and callable(getattr(model, "spectrum_kinematic", None)) and self.qh.size:
            tm = modes(params, self.qh, self.qk, 0.0)
            e = getattr(tm, "energies", None)
            if (
                isinstance(e, np.ndarray) and e.ndim == 2 and e.shape[0] == self.qh.size
                and callable(getattr(tm, "intensities_kinematic", None))
            ):
                self._fast = tm

    @property
    def analytic(self) -> bool:
        """True when the model's own diagonalisation (and velocities, if any) is used."""
        return self._fast is not None

    def at(self, ei: float, index: np.ndarray | None = None) -> ModeSet:
        """Modes at incident energy ``ei`` for the points ``index`` (all if None)."""
        idx = np.arange(self.qh.size) if index is None else np.asarray(index)
        if self._fast is None:
            return evaluate_modes(
                self.model, self.params, self.qh[idx], self.qk[idx], ei, velocity=self.velocity, step=self.step
            )
        tm = self._fast
        energies = np.asarray(tm.energies, dtype=float)[idx]
        intens = np.asarray(tm.intensities_kinematic(ei), dtype=float)[idx]
        good = np.isfinite(energies) & np.isfinite(intens)
        energies = np.where(good, energies, 0.0)
        intens = np.where(good, np.maximum(intens, 0.0), 0.0)
        vel = None
        if self.velocity:
            if self._fast_velocity is None:
                if callable(getattr(tm, "velocities_rlu", None)):
                    v = np.asarray(tm.velocities_rlu(), dtype=float)
                else:
                    v = evaluate_modes(
                        self.model, self.params, self.qh, self.qk, ei, velocity=True, step=self.step
                    ).velocity
                self._fast_velocity = np.where(np.isfinite(v), v, 0.0)
            vel = np.where(good[..., None], self._fast_velocity[idx], 0.0)
        return ModeSet(energies, intens, vel)


def mode_variance(
    cov: np.ndarray | None,
    velocity: np.ndarray | None,
    *,
    intrinsic_variance: float,
    bin_vectors: np.ndarray | None = None,
) -> np.ndarray | float:
    """Energy variance of each mode (see the module notes).

    Parameters
    ----------
    cov
        Shape ``(n, n_modes, 3, 3)``: resolution covariance at each mode's (Q, w); None for
        no instrument resolution.
    velocity
        Shape ``(n, n_modes, 2)`` or None (treated as zero).
    intrinsic_variance
        meV^2, added to every mode.
    bin_vectors
        Shape ``(J, 2)``: the Q displacements (r.l.u.) spanning the bin that is sampled at one
        point (``[[dh, 0], [0, dk]]`` for a rectangular (Qh, Qk) bin), or None for no bin
        term. Each adds ``(v . a_j)^2 / 12``, the variance of a uniform spread.

    Returns
    -------
    numpy.ndarray or float
        Shape ``(n, n_modes)`` (or the scalar intrinsic variance if nothing else applies).
    """
    var: Any = float(intrinsic_variance)
    if cov is not None:
        if velocity is None:
            var = var + cov[..., 2, 2]
        else:
            # [-v_h, -v_k, 1] S [-v_h, -v_k, 1]^T: the variance of E - v.Q.
            u = np.concatenate([-velocity, np.ones(velocity.shape[:-1] + (1,))], axis=-1)
            var = var + np.einsum("...i,...ij,...j->...", u, cov, u)
    if bin_vectors is not None and velocity is not None:
        for a in np.asarray(bin_vectors, dtype=float).reshape(-1, 2):
            var = var + (velocity[..., 0] * a[0] + velocity[..., 1] * a[1]) ** 2 / 12.0
    if isinstance(var, np.ndarray):
        var = np.maximum(var, intrinsic_variance)
    return var


def subsample_offsets(bin_vectors: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Q offsets of the sub-bin centres of a bin, and the edge vectors of one sub-bin.

    Parameters
    ----------
    bin_vectors
        Shape ``(J, 2)``: the Q displacements (r.l.u.) spanning the bin (see
        :func:`mode_variance`). A zero vector (e.g. a Q-E slice of zero thickness) is not
        subdivided.
    n
        Sub-bins along each non-zero vector (>= 1).

    Returns
    -------
    offsets
        Shape ``(S, 2)``, r.l.u. from the bin centre, ``S = n ** (number of non-zero
        vectors)``: ``sum_j ((i_j + 1/2) / n - 1/2) a_j`` for ``i_j = 0 ... n - 1``, the
        centres of equal sub-bins, in C order over j. ``[[0, 0]]`` for ``n = 1``.
    residual
        Shape ``(J, 2)``: ``bin_vectors / n``, the sub-bin edge vectors for the remaining
        in-bin variance term of :func:`mode_variance`.
    """
    a = np.asarray(bin_vectors, dtype=float).reshape(-1, 2)
    offsets = np.zeros((1, 2))
    for vec in a:
        count = n if np.any(vec != 0.0) else 1
        frac = (np.arange(count) + 0.5) / count - 0.5
        offsets = (offsets[:, None, :] + frac[None, :, None] * vec[None, None, :]).reshape(-1, 2)
    return offsets, a / n


def bin_modes(
    energies: np.ndarray,
    intensities: np.ndarray,
    variance: np.ndarray | float,
    edges: np.ndarray,
) -> np.ndarray:
    """Bin-mean intensity of Gaussian-broadened modes in contiguous energy bins.

    Parameters
    ----------
    energies, intensities
        Shape ``(n, n_modes)``.
    variance
        Shape ``(n, n_modes)`` or a scalar, meV^2 (> 0).
    edges
        Shape ``(n_bins + 1,)``, ascending bin edges in meV.

    Returns
    -------
    numpy.ndarray
        Shape ``(n, n_bins)``: the mean over each bin of the broadened spectrum.
    """
    edges = np.asarray(edges, dtype=float)
    widths = np.diff(edges)
    n, m = energies.shape
    sigma = np.sqrt(np.broadcast_to(np.asarray(variance, dtype=float), (n, m)))
    out = np.empty((n, widths.size))
    chunk = max(1, _CHUNK_ELEMENTS // max(1, m * edges.size))
    for s in range(0, n, chunk):
        sl = slice(s, s + chunk)
        z = (edges[None, None, :] - energies[sl, :, None]) / sigma[sl, :, None]
        # Intensity below each edge, summed over modes; bin contents are its differences.
        below = np.einsum("cm,cme->ce", intensities[sl], ndtr(z, out=z))
        out[sl] = np.diff(below, axis=-1)
    return out / widths[None, :]
