"""A fast, repeated evaluation of one simulator plan at many parameter sets.

:class:`PlanEvaluator` computes exactly what
``simulate_plan(plan, model, params, resolution=..., want=(True, False))`` returns for the
convolved spectrum (``q_subsamples = 1``), but keeps everything that does not depend on the
model's parameters between calls:

* the plan (axes, mask, energy sub-bins, which Q points each incident energy needs), the
  union of the needed Q points and each block's indices into it;
* the resolution model, its coverage checks (done once), the intrinsic variance;
* the Cartesian in-plane Q of every point, ``|Q_perp|``, and — for models that expose their
  spin system (the LSWT models of :mod:`~mantid_exp2sim.simulate.spin_models`) — the
  in-plane structure-factor phases of every site in every twin.

The last item is what makes it fast. The kinematic intensities of the simulator take each
mode's structure factor at its own ``L`` (``Q_c`` along the beam), so the site phases
``exp(-i Q.r_i)`` are recomputed per mode and per incident energy. Writing
``Q = Q_in + Q_c z`` (twin frame: ``R^T Q``), the phase factorises into
``exp(-i (R^T Q_in).r_i)`` (parameter- and Ei-independent, cached) times
``exp(-i Q_c s_i)`` with ``s_i = (R^T z).r_i``, which takes only a few distinct values (two
layers of a bilayer). Sites are grouped by ``(s_i, ion)``; per parameter set the amplitude
of every mode is summed within each group once (``D[q, mode, group, xyz]``), and per
incident energy only the group phases and form factors remain: a few multiplications per
mode instead of a sum over 16 sites. The result equals the simulator's to rounding
(tested).

Models without a spin system (only the ``spectrum_kinematic`` contract) go through the
simulator's generic :class:`~mantid_exp2sim.simulate.binning.ModeEvaluator` with the same
cached geometry.

Unstable parameter sets (the ordered state is not a classical minimum somewhere in Q) do
not raise here: the unstable Q points get no intensity, as the simulator treats undefined
modes, and :attr:`PlanEvaluator.last_unstable_fraction` reports the share of such points,
so that a fit can see and report it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..simulate.binning import ModeEvaluator, bin_modes, mode_variance
from ..simulate.formfactor import form_factor
from ..simulate.modelref import resolve_model
from ..simulate.measurement_model import check_damping, check_measurement
from ..simulate.resolution import get_resolution
from ..simulate.spectra import damping_variance, measurement_resolution
from ..simulate.spin_models import with_twin_fraction
from ..simulate.spin_models import kinematic_qc

__all__ = ["PlanEvaluator"]


def _aggregate(values: np.ndarray, edges: np.ndarray, members: list[np.ndarray] | None) -> np.ndarray:
    """Sub-bin means -> output-bin means (width-weighted), as the simulator aggregates."""
    if members is None:
        return values
    w = np.diff(edges)
    return np.stack([(values[:, m] * w[m]).sum(axis=1) / w[m].sum() for m in members], axis=1)


class _TwinGeometry:
    """Parameter-independent structure-factor geometry of one twin at the plan's Q points."""

    def __init__(self, rotation: np.ndarray, volume: float, q_in: np.ndarray, positions: np.ndarray,
                 spins: np.ndarray, ions: tuple[Any, ...]) -> None:
        R = np.asarray(rotation, dtype=float)
        self.rotation = R
        self.volume = float(volume)
        self.q_in_twin = q_in @ R  # (n, 3): R^T Q_in as rows
        self.z_twin = np.array([0.0, 0.0, 1.0]) @ R  # R^T z
        s = positions @ self.z_twin  # (N,)
        keys: list[tuple[float, Any]] = []
        group = np.empty(len(s), dtype=int)
        for i, (si, ion) in enumerate(zip(np.round(s, 9), ions)):
            key = (float(si), ion)
            if key not in keys:
                keys.append(key)
            group[i] = keys.index(key)
        self.group = group
        self.group_s = np.array([k[0] for k in keys])
        self.group_ion = [k[1] for k in keys]
        # sqrt(S/2) exp(-i (R^T Q_in).r_i): (n, N)
        self.phase = np.exp(-1j * (self.q_in_twin @ positions.T)) * np.sqrt(spins / 2.0)[None, :]
        self.positions = positions


class PlanEvaluator:
    """The convolved spectrum of a plan for many parameter sets of one model.

    Parameters
    ----------
    model
        Spin model, registered name or ``module:attribute`` reference.
    plan
        A :class:`~mantid_exp2sim.simulate.spectra.Plan` (``plan_mosaic``, ``plan_volume``,
        ``plan_e_slice``, ``plan_qe_slice``).
    resolution
        As :func:`~mantid_exp2sim.simulate.simulate_plan` (``"builtin"``, ``"tables:DIR"``,
        ``"unconvolved"`` or a ResolutionModel).
    fast
        Use the cached structure-factor path for models that expose their spin system
        (default True); False always uses the generic mode evaluator (for checks).

    Notes
    -----
    Calling the evaluator returns the signal array of ``plan.shape`` with NaN where the plan
    is masked: the same numbers as ``simulate_plan(plan, model, params,
    resolution=resolution, want=(True, False))[0].signal`` with ``q_subsamples = 1``.
    """

    def __init__(self, model: Any, plan: Any, *, resolution: Any = "builtin", fast: bool = True) -> None:
        self.model = resolve_model(model)
        self.plan = plan
        self.resolution = get_resolution(resolution)
        for blk in plan.blocks:
            self.resolution.check_coverage(blk.ei, plan.q_range, blk.e_range)
        needs = [blk.need for blk in plan.blocks]
        n = plan.qh.size
        self.union = np.ones(n, dtype=bool) if any(x is None for x in needs) else np.any(needs, axis=0)
        self.qh = np.asarray(plan.qh, dtype=float)[self.union]
        self.qk = np.asarray(plan.qk, dtype=float)[self.union]
        self.block_index = [
            np.arange(self.qh.size) if blk.need is None else np.flatnonzero(np.asarray(blk.need)[self.union])
            for blk in plan.blocks
        ]
        self._unstable_fraction = 0.0
        self._res = self.resolution
        self._kf_ki = False
        self._damping = 0.0
        self._twins: list[_TwinGeometry] | None = None
        if fast and self.qh.size and self._has_spin_system(self.model):
            self._setup_fast()

    # ------------------------------------------------------------------ set-up
    @staticmethod
    def _has_spin_system(model: Any) -> bool:
        return all(callable(getattr(model, a, None)) for a in ("build_system", "q_cartesian")) and hasattr(
            model, "twins"
        )

    def _setup_fast(self) -> None:
        from ..simulate.lswt import _compile

        m = self.model
        comp = _compile(m.build_system(m.defaults))
        self.q_in = m.q_cartesian(self.qh, self.qk, 0.0)  # (n, 3), z = 0
        self.q_perp = np.hypot(self.q_in[:, 0], self.q_in[:, 1])
        self._twins = [
            _TwinGeometry(np.asarray(t.rotation), t.volume, self.q_in, np.asarray(comp.positions),
                          np.asarray(comp.spins, dtype=float), tuple(comp.ions))
            for t in m.twins
        ]
        self._n_sites = comp.u.shape[0]

    @property
    def fast(self) -> bool:
        """True when the cached structure-factor path is used."""
        return self._twins is not None

    @property
    def last_unstable_fraction(self) -> float:
        """Share of the Q points (all twins) whose ordered state was unstable in the last call."""
        return self._unstable_fraction

    @property
    def shape(self) -> tuple[int, ...]:
        """The plan's shape."""
        return tuple(self.plan.shape)

    # ------------------------------------------------------------------ evaluation
    def __call__(self, params: Any, *, twin_fraction: float | None = None, resolution_scale: float = 1.0,
                 mosaic: float = 0.0, kf_ki: bool = False, damping: float = 0.0) -> np.ndarray:
        """Convolved spectrum (plan shape, NaN where masked) at ``params`` (vector or mapping).

        ``twin_fraction``, ``resolution_scale``, ``mosaic``, ``kf_ki`` and ``damping`` are the measurement-model
        settings of :func:`~mantid_exp2sim.simulate.simulate_plan` (same meaning, same
        result); the sampled resolution (``resolution_sampling``) is not available here.
        """
        p = self.model.validate(params)
        tf, r_scale, mos, _ = check_measurement(twin_fraction, resolution_scale, mosaic, 0)
        self._res = measurement_resolution(self.resolution, self.model, r_scale, mos)
        self._kf_ki = bool(kf_ki)
        self._damping = check_damping(damping)
        if self.qh.size == 0:
            per_block = [np.zeros((0, blk.edges.size - 1)) for blk in self.plan.blocks]
        elif self._twins is not None:
            if tf is not None and len(self._twins) != 2:
                with_twin_fraction(self.model, tf)  # raises the one-line error
            volumes = [tw.volume for tw in self._twins] if tf is None else [tf, 1.0 - tf]
            per_block = self._fast_blocks(p, volumes)
        else:
            per_block = self._generic_blocks(p, with_twin_fraction(self.model, tf))
        results = []
        for blk, vals in zip(self.plan.blocks, per_block):
            full = np.full((self.union.size, blk.edges.size - 1), np.nan)
            full[self.union] = vals
            results.append(_aggregate(full, blk.edges, blk.members))
        sig = np.array(self.plan.assemble(results), dtype=float)
        if self.plan.mask is not None:
            sig[self.plan.mask] = np.nan
        return sig

    def _binned(self, blk: Any, idx: np.ndarray, energies: np.ndarray, intens: np.ndarray,
                vel: np.ndarray) -> np.ndarray:
        res = self._res
        cov = res.covariance(self.qh[idx][:, None], self.qk[idx][:, None], energies, blk.ei)
        var = mode_variance(cov, vel, intrinsic_variance=res.intrinsic_variance, bin_vectors=self.plan.bin_vectors)
        if self._damping > 0.0:
            var = var + damping_variance(energies, self._damping)
        if self._kf_ki:
            intens = intens * np.sqrt(np.clip(1.0 - energies / blk.ei, 0.0, None))
        return bin_modes(energies, intens, var, blk.edges)

    def _generic_blocks(self, p: np.ndarray, model: Any) -> list[np.ndarray]:
        evaluator = ModeEvaluator(model, p, self.qh, self.qk, velocity=True)
        out = []
        for blk, idx in zip(self.plan.blocks, self.block_index):
            vals = np.full((self.qh.size, blk.edges.size - 1), np.nan)
            if idx.size:
                modes = evaluator.at(blk.ei, idx)
                vals[idx] = self._binned(blk, idx, modes.energies, modes.intensities, modes.velocity)
            out.append(vals)
        return out

    def _fast_blocks(self, p: np.ndarray, volumes: list[float]) -> list[np.ndarray]:
        from ..simulate.lswt import _compile, diagonalise

        m = self.model
        comp = _compile(m.build_system(p))
        N = self._n_sites
        per_twin = []
        amps = []
        for tw in self._twins:
            modes = diagonalise(comp, self.q_in @ tw.rotation, on_unstable="nan")
            per_twin.append(modes)
            T = modes.vectors  # (n, 2N, N)
            a = np.swapaxes(T[:, :N, :], 1, 2) * tw.phase[:, None, :]  # (n, modes, sites)
            b = np.swapaxes(T[:, N:, :], 1, 2) * tw.phase[:, None, :]
            G = tw.group_s.size
            uc = np.zeros((N, G, 3), dtype=complex)
            uu = np.zeros((N, G, 3), dtype=complex)
            uc[np.arange(N), tw.group] = np.conj(comp.u)
            uu[np.arange(N), tw.group] = comp.u
            D = (a @ uc.reshape(N, G * 3) + b @ uu.reshape(N, G * 3)).reshape(a.shape[0], N, G, 3)
            amps.append((D, modes.zero_modes))
        energies_all = np.concatenate([md.energies for md in per_twin], axis=1)  # (n, n_twins * N)
        vel_all = np.concatenate([self._velocities_rlu(tw, md) for tw, md in zip(self._twins, per_twin)], axis=1)
        vel_all = np.where(np.isfinite(vel_all), vel_all, 0.0)
        self._unstable_fraction = float(np.mean(~np.isfinite(energies_all).all(axis=1)))
        out = []
        for blk, idx in zip(self.plan.blocks, self.block_index):
            vals = np.full((self.qh.size, blk.edges.size - 1), np.nan)
            if idx.size:
                intens = np.concatenate(
                    [volumes[t] * self._twin_intensities(tw, D[idx], zero[idx], energies_all[idx, t * N:(t + 1) * N],
                                                         self.q_perp[idx], tw.q_in_twin[idx], blk.ei)
                     for t, (tw, (D, zero)) in enumerate(zip(self._twins, amps))],
                    axis=1,
                )
                energies = energies_all[idx]
                good = np.isfinite(energies) & np.isfinite(intens)
                energies = np.where(good, energies, 0.0)
                intens = np.where(good, np.maximum(intens, 0.0), 0.0)
                vel = np.where(good[..., None], vel_all[idx], 0.0)
                vals[idx] = self._binned(blk, idx, energies, intens, vel)
            out.append(vals)
        return out

    def _velocities_rlu(self, tw: _TwinGeometry, modes: Any) -> np.ndarray:
        """In-plane lab velocities ``(dE/dqh, dE/dqk)`` in meV per r.l.u. (as ``TwinModes.velocities_rlu``).

        Only the twin-frame components that reach the lab's in-plane axes are computed
        (``v_lab = R v_twin``; for the a<->b twin these are the twin's in-plane ones).
        """
        axes = tuple(int(a) for a in np.flatnonzero(np.any(tw.rotation[:2] != 0.0, axis=0)))
        with np.errstate(invalid="ignore"):
            v = modes.velocities(axes=axes) @ tw.rotation.T  # (n, N, 3) lab
        lat = self.model.lattice
        return np.stack([v[..., 0] * 2 * np.pi / lat.a, v[..., 1] * 2 * np.pi / lat.b], axis=-1)

    def _twin_intensities(self, tw: _TwinGeometry, D: np.ndarray, zero: np.ndarray, energies: np.ndarray,
                          q_perp: np.ndarray, q_in_twin: np.ndarray, ei: float) -> np.ndarray:
        """Kinematic intensities of one twin's modes per unit volume (``TwinModes.intensities_kinematic``
        divided by the twin's volume)."""
        with np.errstate(invalid="ignore"):
            qc = kinematic_qc(energies, q_perp[:, None], ei)  # (n, N) lab Q_c, NaN if inaccessible
        ok = np.isfinite(qc)
        qc = np.where(ok, qc, 0.0)
        qn = np.sqrt(q_perp[:, None] ** 2 + qc ** 2)
        # group factors exp(-i Q_c s_g) F_g(|Q|), each distinct s and ion computed once
        phase = {s_: np.exp(-1j * s_ * qc) for s_ in set(tw.group_s.tolist())}
        ff = {ion: (form_factor(ion, qn) if ion is not None else None) for ion in set(tw.group_ion)}
        Z = np.zeros(D.shape[:2] + (3,), dtype=complex)
        for g, (s_, ion) in enumerate(zip(tw.group_s.tolist(), tw.group_ion)):
            fac = phase[s_] if ff[ion] is None else phase[s_] * ff[ion]
            Z += fac[..., None] * D[:, :, g, :]
        tot = np.sum(Z.real ** 2 + Z.imag ** 2, axis=-1)
        # Q in the twin frame: R^T Q_in + Q_c R^T z
        qvec = q_in_twin[:, None, :] + qc[..., None] * tw.z_twin[None, None, :]
        qz = np.sum(qvec * Z, axis=-1)
        safe = np.where(qn > 0, qn, 1.0)
        qz = qz / safe
        par = qz.real ** 2 + qz.imag ** 2
        inten = np.maximum(tot - par, 0.0) / self._n_sites
        inten = np.where(zero, 0.0, inten)
        return np.where(ok, inten, 0.0)
