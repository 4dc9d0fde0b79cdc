"""Linear spin-wave theory (LSWT) for commensurate ordered magnets, vectorised over Q.

Hamiltonian and conventions
---------------------------
For a magnetic cell with lattice vectors ``a1, a2, a3`` (rows of ``lattice``, Angstrom)
and ``N`` sites at fractional positions ``x_i`` (Cartesian ``r_i = x_i @ lattice``)::

    H = sum_bonds  S_i . J_b . S_j   +   sum_i  S_i . A_i . S_i

* every bond ``(i, j, n)`` joins site ``i`` in cell ``R`` to site ``j`` in cell
  ``R + n`` (``n`` integer) and is listed **once**; ``J_b`` is a 3x3 real matrix
  (``J * identity`` for Heisenberg). **J > 0 is antiferromagnetic** (SpinW's sign).
* ``A_i`` is a 3x3 real symmetric single-ion anisotropy, e.g. ``D diag(0, 0, 1)``: a
  hard c axis for ``D > 0``.
* Spins are classical vectors ``S_i e_i`` of length ``S_i`` in the ordered state;
  every site gets a local frame ``(x_i, y_i, e_i)`` and Holstein-Primakoff bosons to
  quadratic order (Toth & Lake, J. Phys.: Condens. Matter 27, 166002 (2015)). Any
  commensurate structure given in its magnetic cell works, collinear or not, as
  long as it is a classical energy minimum (otherwise the quadratic form is not
  positive and :class:`UnstableGroundStateError` is raised).

Fourier convention: bosons are transformed with the **cell translations only**,
``a_{i,R} = N_c^{-1/2} sum_k exp(i k.R) a_{i,k}``, so the 2N x 2N Hamiltonian
``h(k)`` depends on ``k`` only through ``k . (n @ lattice)`` for the bond offsets
``n``. It is therefore periodic in the reciprocal lattice of the magnetic cell and
independent of ``k`` along any direction perpendicular to all bond vectors (e.g.
``L`` for a bilayer without couplings between bilayers). The site positions enter
only the neutron structure factor, so the eigenvectors of one ``k`` serve every
``Q = k + delta`` with ``delta . (n @ lattice) in 2 pi Z`` for all bonds
(:meth:`Modes.intensities`).

Diagonalisation: Colpa's method (J. H. P. Colpa, Physica A 93, 327 (1978)):
``h = K^H K`` (Cholesky), eigen-decomposition of ``K g K^H``,
``T = K^-1 U sqrt(g L)``. Where ``h`` is only positive semi-definite (Goldstone
modes) the Cholesky factorisation fails and, like SpinW's ``omega_tol``, a shift
``goldstone_shift * max(1, max|h|)`` (default 1e-9 relative) is added to the
diagonal of that Q point only; the Goldstone energies then come out at about
``sqrt(2 * shift * h_ii)`` instead of 0 (of order 1e-4 of the band width). Modes
below ``zero_mode_tol * max|h(k)|`` (default 1e-4) are reported as exact zero modes:
energy 0 and intensity 0 (at the exact zone centre their weight is elastic).

Neutron intensity (T = 0, one-magnon creation, per magnetic site)::

    I_n(Q) = (1/N) sum_ab (delta_ab - Qa Qb / Q^2) conj(Z_n^a) Z_n^b
    Z_n^a  = sum_i F_i(|Q|) sqrt(S_i / 2) exp(-i Q.r_i)
                   (conj(u_i^a) T_{i,n} + u_i^a T_{N+i,n}),   u_i = x_i + i y_i

i.e. the weight of the delta function ``delta(E - E_n(Q))`` in
``S_perp(Q, E) = (1/N) sum_ab (delta_ab - Q^_a Q^_b) S^ab(Q, E)`` (spin units,
hbar = 1), including ``|F(Q)|^2`` (each site's own ion) and nothing else: no
``(gamma r0 / 2)^2``, no ``g^2/4``, no ``k_f/k_i``, no Debye-Waller or Bose factor.
With this normalisation a ferromagnet of spin S has ``sum_n I_n = S`` for ``Q``
along the moments and ``S/2`` for ``Q`` perpendicular to them, and equivalent
choices of the magnetic cell give identical intensities. At ``|Q| = 0`` the
polarisation factor is taken as ``delta_ab``.

Group velocities follow from Hellmann-Feynman for the bosonic problem,
``dE_n/dk = T_n^H (dh/dk) T_n`` (see :func:`group_velocities`); within exactly
degenerate modes they are the diagonal of the perturbation in the basis the
eigensolver returned.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputDataError, format_error
from .formfactor import form_factor
from .spin_system import Coupling, MagneticSite, SingleIonAnisotropy, SpinSystem

__all__ = [
    "MagneticSite",
    "Coupling",
    "SingleIonAnisotropy",
    "SpinSystem",
    "Modes",
    "UnstableGroundStateError",
    "diagonalise",
    "spectrum",
    "group_velocities",
    "DEFAULT_GOLDSTONE_SHIFT",
    "DEFAULT_ZERO_MODE_TOL",
]

#: Relative diagonal shift added where Cholesky fails on a semi-definite ``h(k)``.
DEFAULT_GOLDSTONE_SHIFT = 1e-9

#: Relative energy below which a mode counts as a zero (Goldstone) mode.
DEFAULT_ZERO_MODE_TOL = 1e-4

_BATCH = 1024


class UnstableGroundStateError(InputDataError):
    """The assumed ordered state is not a (local) classical energy minimum."""


# --------------------------------------------------------------------------- solver
def _local_frames(directions: np.ndarray, anisotropy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """u = x' + i y' and e for each site: a right-handed frame (x', y', e).

    For collinear structures every site gets the same x' (chosen along a principal
    axis of the summed anisotropy in the plane perpendicular to the moments), so
    that for symmetric exchange all Hamiltonian coefficients are real and the fast
    N x N diagonalisation applies.
    """
    e = directions
    e0 = e[0]
    if np.all(np.abs(np.abs(e @ e0) - 1.0) < 1e-10):
        proj = np.eye(3) - np.outer(e0, e0)
        m = proj @ anisotropy @ proj
        w, v = np.linalg.eigh(m)
        # eigenvectors of m perpendicular to e0 (one of the three is e0 itself)
        cand = [v[:, k] for k in np.argsort(-np.abs(w)) if abs(v[:, k] @ e0) < 0.5]
        if np.max(np.abs(m)) > 0 and cand:
            x0 = cand[0]
        else:
            ref = np.eye(3)[np.argmin(np.abs(e0))]
            x0 = np.cross(ref, e0)
        x0 = x0 - (x0 @ e0) * e0
        x = np.broadcast_to(x0 / np.linalg.norm(x0), e.shape)
    else:
        ref = np.eye(3)[np.argmin(np.abs(e), axis=1)]
        x = np.cross(ref, e)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.cross(e, x)
    return x + 1j * y, e


@dataclass(frozen=True)
class _Compiled:
    offsets: np.ndarray  # (n_d, 3) Cartesian translation vectors, Angstrom
    coeffs: np.ndarray  # (n_d, 2N, 2N) complex: h(k) = sum_d coeffs[d] exp(i k.offsets[d])
    u: np.ndarray  # (N, 3) complex
    spins: np.ndarray  # (N,)
    positions: np.ndarray  # (N, 3) Cartesian
    ions: tuple[str | None, ...]
    cell_translations: np.ndarray  # (n_t, 3) Cartesian translations h depends on
    lattice: np.ndarray  # (3, 3) magnetic cell vectors as rows
    offset_index: np.ndarray  # (n_d, 3) integer cell offsets of coeffs
    real: bool  # all coefficients real: h = [[A, B], [B, A]] with A, B Hermitian
    blocks: np.ndarray  # (n_d, 2, N, N) real coefficients of A and B (fast path)


def _compile(system: SpinSystem) -> _Compiled:
    n = system.n_sites
    dirs = np.array([s.direction for s in system.sites])
    aniso_sum = np.zeros((3, 3))
    for a in system.anisotropies:
        aniso_sum += np.abs(0.5 * (np.asarray(a.matrix, float) + np.asarray(a.matrix, float).T))
    u, e = _local_frames(dirs, aniso_sum)
    S = np.array([s.spin for s in system.sites])
    terms: dict[tuple[int, int, int], np.ndarray] = {}

    def block(off) -> np.ndarray:
        key = tuple(int(v) for v in off)
        if key not in terms:
            terms[key] = np.zeros((2 * n, 2 * n), dtype=complex)
        return terms[key]

    zero = block((0, 0, 0))
    for c in system.couplings:
        i, j, J = c.i, c.j, c.matrix()
        d = np.asarray(c.offset, dtype=int)
        pref = 0.5 * np.sqrt(S[i] * S[j])
        c1 = pref * (u[i] @ J @ u[j].conj())
        c3 = pref * (u[i] @ J @ u[j])
        zz = e[i] @ J @ e[j]
        plus, minus = block(d), block(-d)
        plus[i, j] += c1
        minus[j, i] += np.conj(c1)
        minus[n + j, n + i] += c1
        plus[n + i, n + j] += np.conj(c1)
        plus[i, n + j] += c3
        minus[j, n + i] += c3
        minus[n + j, i] += np.conj(c3)
        plus[n + i, j] += np.conj(c3)
        zero[i, i] -= S[j] * zz
        zero[n + i, n + i] -= S[j] * zz
        zero[j, j] -= S[i] * zz
        zero[n + j, n + j] -= S[i] * zz
    for a in system.anisotropies:
        i = a.site
        M = np.asarray(a.matrix, dtype=float)
        M = 0.5 * (M + M.T)
        x, y = u[i].real, u[i].imag
        diag = S[i] * (x @ M @ x + y @ M @ y) - 2.0 * S[i] * (e[i] @ M @ e[i])
        anom = S[i] * (u[i] @ M @ u[i])
        zero[i, i] += diag
        zero[n + i, n + i] += diag
        zero[i, n + i] += anom
        zero[n + i, i] += np.conj(anom)
    keys = sorted(terms)
    offs = np.array(keys, dtype=float) @ system.lattice
    coeffs = np.stack([terms[k] for k in keys])
    nonzero = [k for k in keys if any(k)]
    trans = np.array(nonzero, dtype=float).reshape(-1, 3) @ system.lattice
    scale = max(1.0, float(np.max(np.abs(coeffs))))
    real = bool(np.max(np.abs(coeffs.imag)) <= 1e-12 * scale)
    blocks = np.stack([coeffs[:, :n, :n].real, coeffs[:, :n, n:].real], axis=1)
    return _Compiled(offs, coeffs, u, S, system.positions_cartesian(),
                     tuple(s.ion for s in system.sites), trans, system.lattice,
                     np.array(keys, dtype=int).reshape(-1, 3), real, blocks)


def _as_q(q, name="q") -> np.ndarray:
    q = np.asarray(q, dtype=float)
    if q.ndim == 1 and q.shape == (3,):
        q = q[None, :]
    if q.ndim != 2 or q.shape[1] != 3 or not np.all(np.isfinite(q)):
        raise InputDataError(format_error(
            f"{name} must be an (n, 3) array of finite Cartesian wave vectors",
            reason=f"got shape {np.shape(q)}", fix="pass Q in 1/Angstrom as an (n, 3) array"))
    return q


def _hamiltonian(comp: _Compiled, k: np.ndarray) -> np.ndarray:
    phase = np.exp(1j * (k @ comp.offsets.T))  # (n, n_d)
    m = comp.coeffs.shape[1]
    h = (phase @ comp.coeffs.reshape(len(comp.offsets), m * m)).reshape(-1, m, m)
    return 0.5 * (h + np.conj(np.swapaxes(h, 1, 2)))


# --------------------------------------------------------------- diagonalisation


@dataclass
class Modes:
    """Spin-wave modes at a set of wave vectors (one diagonalisation, many intensities).

    Attributes
    ----------
    q
        (n, 3) Cartesian wave vectors (1/Angstrom) at which ``h`` was diagonalised.
    energies
        (n, N) mode energies in meV, ascending per row.
    vectors
        (n, 2N, N) columns of the paraunitary Colpa matrix ``T`` for the N
        positive-energy modes (normalised ``T_n^H g T_n = 1``).
    zero_modes
        (n, N) bool: Goldstone modes at the exact zone centre (energy set to 0,
        intensity 0).
    """

    q: np.ndarray
    energies: np.ndarray
    vectors: np.ndarray
    zero_modes: np.ndarray
    _comp: _Compiled = field(repr=False)

    @property
    def n_modes(self) -> int:
        return self.energies.shape[1]

    def intensities(self, q_eval: np.ndarray | None = None, *, check: bool = True) -> np.ndarray:
        """Neutron intensities ``I_n(Q)`` of the modes (see the module docstring).

        Parameters
        ----------
        q_eval
            Cartesian Q (1/Angstrom) at which to evaluate the structure factor:
            None (the diagonalisation ``q``), shape (n, 3) (one Q per point) or
            (n, N, 3) (one Q per point and mode, e.g. a kinematic L per mode). Each
            must differ from ``q`` only by a vector ``delta`` with
            ``delta . t in 2 pi Z`` for every bond translation ``t`` (e.g. any
            ``L`` for a bilayer, or a reciprocal-lattice vector).
        check
            Verify that condition (cheap); raise :class:`InputDataError` if violated.

        Returns
        -------
        numpy.ndarray
            (n, N) intensities, spin units per magnetic site (with ``|F|^2``).
        """
        n, nm = self.energies.shape
        if q_eval is None:
            qe = np.broadcast_to(self.q[:, None, :], (n, nm, 3))
        else:
            qe = np.asarray(q_eval, dtype=float)
            if qe.shape == (n, 3):
                qe = np.broadcast_to(qe[:, None, :], (n, nm, 3))
            if qe.shape != (n, nm, 3) or not np.all(np.isfinite(qe)):
                raise InputDataError(format_error(
                    "q_eval has the wrong shape or is not finite",
                    reason=f"got {np.shape(q_eval)}, expected ({n}, 3) or ({n}, {nm}, 3)",
                    fix="give one Cartesian Q per diagonalised point (or per point and mode)"))
            if check and len(self._comp.cell_translations):
                delta = qe - self.q[:, None, :]
                ph = delta @ self._comp.cell_translations.T / (2 * np.pi)
                bad = np.abs(ph - np.round(ph)) > 1e-6
                if np.any(bad):
                    idx = np.argwhere(bad)[0]
                    raise InputDataError(format_error(
                        "q_eval is not equivalent to the diagonalised q for this Hamiltonian",
                        reason=(f"point {idx[0]}: Q - q = {delta[idx[0], idx[1]]} changes the bond "
                                "phases; h(k) depends on that component"),
                        fix="diagonalise at the new q instead (only components along which no "
                            "bond has a translation may differ)"))
        out = _intensities(self._comp, self.vectors, qe)
        return np.where(self.zero_modes, 0.0, out)

    def velocities(self, axes: tuple[int, ...] = (0, 1, 2)) -> np.ndarray:
        """(n, N, 3) group velocities ``dE_n/dk`` in meV Angstrom (Cartesian).

        ``axes``: the Cartesian components to compute (the others are returned as 0), e.g.
        ``(0, 1)`` when only the in-plane velocity is needed.
        """
        return _velocities(self._comp, self.vectors, self.q, axes)


def _intensities(comp: _Compiled, T: np.ndarray, qe: np.ndarray) -> np.ndarray:
    n, nm, _ = qe.shape
    N = comp.u.shape[0]
    qn = np.linalg.norm(qe, axis=-1)  # (n, nm)
    amp = np.exp(-1j * (qe @ comp.positions.T))  # (n, nm, N)
    amp *= np.sqrt(comp.spins / 2.0)
    for ion in set(i for i in comp.ions if i is not None):
        cols = np.array([k for k, i in enumerate(comp.ions) if i == ion])
        amp[..., cols] *= form_factor(ion, qn)[..., None]
    # Z[q, m, a] = sum_i amp[q, m, i] (conj(u_i^a) T[q, i, m] + u_i^a T[q, N + i, m])
    Ta = np.swapaxes(T[:, :N, :], 1, 2)  # (n, nm, N)
    Tb = np.swapaxes(T[:, N:, :], 1, 2)
    Z = (amp * Ta) @ comp.u.conj() + (amp * Tb) @ comp.u  # (n, nm, 3)
    tot = np.sum(Z.real ** 2 + Z.imag ** 2, axis=-1)
    safe = np.where(qn > 0, qn, 1.0)
    qz = np.sum(qe * Z, axis=-1) / safe  # Q^ . Z (0 where |Q| = 0)
    par = qz.real ** 2 + qz.imag ** 2
    return np.maximum(tot - par, 0.0) / N


def _velocities(comp: _Compiled, T: np.ndarray, q: np.ndarray, axes: tuple[int, ...] = (0, 1, 2)) -> np.ndarray:
    """Hellmann-Feynman ``dE_n/dk_a = T_n^H (dh/dk_a) T_n`` in meV Angstrom (components ``axes``)."""
    n, _, nm = T.shape
    N = comp.u.shape[0]
    out = np.zeros((n, nm, 3))
    phase = np.exp(1j * (q @ comp.offsets.T))  # (n, n_d)
    if comp.real:
        y1 = (T[:, :N] + T[:, N:]) / np.sqrt(2.0)  # P T, see _diag_real
        y2 = (T[:, :N] - T[:, N:]) / np.sqrt(2.0)
        flat = comp.blocks.reshape(len(comp.offsets), 2 * N * N)
    else:
        flat = comp.coeffs.reshape(len(comp.offsets), 4 * N * N)
    for a in axes:
        da = comp.offsets[:, a]
        if not np.any(da):
            continue
        d = ((1j * da)[None, :] * phase) @ flat
        if comp.real:
            d = d.reshape(n, 2, N, N)
            # dh/dk is Hermitian by construction; the real part drops roundoff
            v = (np.sum(y1.conj() * ((d[:, 0] + d[:, 1]) @ y1), axis=1)
                 + np.sum(y2.conj() * ((d[:, 0] - d[:, 1]) @ y2), axis=1))
        else:
            d = d.reshape(n, 2 * N, 2 * N)
            v = np.sum(T.conj() * (d @ T), axis=1)
        out[..., a] = v.real
    return out


def _cholesky_with_shift(h: np.ndarray, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower Cholesky factors; shift the diagonal only where plain Cholesky fails.

    Returns the factors and a bool array marking points that failed even with the
    shift (not positive semi-definite: unstable ground state).
    """
    try:
        return np.linalg.cholesky(h), np.zeros(len(h), dtype=bool)
    except np.linalg.LinAlgError:
        pass
    L = np.zeros_like(h)
    failed = np.zeros(len(h), dtype=bool)
    eye = np.eye(h.shape[1])
    for k in range(len(h)):
        try:
            L[k] = np.linalg.cholesky(h[k])
            continue
        except np.linalg.LinAlgError:
            if shift <= 0:
                failed[k] = True
                L[k] = eye
                continue
        scale = max(1.0, float(np.max(np.abs(h[k]))))
        try:
            L[k] = np.linalg.cholesky(h[k] + shift * scale * eye)
        except np.linalg.LinAlgError:
            failed[k] = True
            L[k] = eye
    return L, failed


def _diag_colpa(comp: _Compiled, q: np.ndarray, shift: float):
    """General path: Colpa on the full 2N x 2N matrix."""
    N = comp.u.shape[0]
    g = np.concatenate([np.ones(N), -np.ones(N)])
    h = _hamiltonian(comp, q)
    L, failed = _cholesky_with_shift(h, shift)
    K = np.conj(np.swapaxes(L, 1, 2))  # upper, h = K^H K
    W = (K * g[None, None, :]) @ L  # K g K^H
    W = 0.5 * (W + np.conj(np.swapaxes(W, 1, 2)))
    lam, U = np.linalg.eigh(W)  # ascending: N negative, then N positive
    lam_p = lam[:, N:]
    failed |= lam_p[:, 0] < 0
    rhs = U[:, :, N:] * np.sqrt(np.maximum(lam_p, 0.0))[:, None, :]
    T = np.linalg.solve(K, rhs)
    return lam_p, T, failed, np.max(np.abs(h), axis=(1, 2))


def _diag_real(comp: _Compiled, q: np.ndarray, shift: float):
    """Fast path for real coefficients, h = [[A, B], [B, A]] with A, B Hermitian.

    With P = [[I, I], [I, -I]] / sqrt(2), ``P h P = diag(A + B, A - B)`` and the
    bosonic eigenproblem reduces to ``(A - B)(A + B) y = w^2 y``. With
    ``A + B = L L^H`` the energies are the square roots of the eigenvalues of the
    N x N Hermitian ``L^H (A - B) L`` (eigenvectors z), and the Colpa vectors are
    ``T = P [y1; y2]``, ``y1 = sqrt(w/2) L^-H z``, ``y2 = L z / sqrt(2 w)``.
    """
    N = comp.u.shape[0]
    phase = np.exp(1j * (q @ comp.offsets.T))  # (n, n_d)
    ab = (phase @ comp.blocks.reshape(len(comp.offsets), 2 * N * N)).reshape(-1, 2, N, N)
    A, B = ab[:, 0], ab[:, 1]
    # only the lower triangles are read by cholesky / eigh: no explicit symmetrisation
    Ap = A + B
    Am = A - B
    w, T, bad = _real_core(Ap, Am)
    if np.any(bad):
        # semi-definite (Goldstone) points: h -> h + eps I, i.e. both blocks shifted,
        # consistently with the Colpa path
        idx = np.flatnonzero(bad)
        scale = np.maximum(1.0, np.max(np.abs(ab[idx]), axis=(1, 2, 3)))
        eps = (shift * scale)[:, None, None] * np.eye(N)
        w2, T2, bad2 = _real_core(Ap[idx] + eps, Am[idx] + eps)
        w[idx], T[idx] = w2, T2
        bad[idx] = bad2
    return w, T, bad, np.max(np.abs(ab), axis=(1, 2, 3))


def _real_core(Ap: np.ndarray, Am: np.ndarray):
    L, bad = _cholesky_with_shift(Ap, 0.0)
    M = np.conj(np.swapaxes(L, 1, 2)) @ (Am @ L)
    lam, Z = np.linalg.eigh(M)  # ascending w^2
    bad = bad | (lam[:, 0] <= 0)
    w = np.sqrt(np.where(bad[:, None], 1.0, lam))
    # y2 = L z / sqrt(2 w); y1 = (A - B) y2 / w (= sqrt(w/2) L^-H z, without a solve)
    y2 = (L @ Z) / np.sqrt(2.0 * w)[:, None, :]
    y1 = (Am @ y2) / w[:, None, :]
    n, N = w.shape
    T = np.empty((n, 2 * N, N), dtype=complex)
    r2 = np.sqrt(0.5)
    np.multiply(y1 + y2, r2, out=T[:, :N])
    np.multiply(y1 - y2, r2, out=T[:, N:])
    return w, T, bad


def diagonalise(system: SpinSystem | _Compiled, q: np.ndarray, *,
                goldstone_shift: float = DEFAULT_GOLDSTONE_SHIFT,
                on_unstable: str = "raise", batch_size: int = _BATCH,
                method: str = "auto", reduce: bool = True,
                zero_mode_tol: float = DEFAULT_ZERO_MODE_TOL) -> Modes:
    """Diagonalise the spin-wave Hamiltonian at many wave vectors.

    Parameters
    ----------
    system
        The :class:`SpinSystem`.
    q
        (n, 3) Cartesian wave vectors in 1/Angstrom.
    goldstone_shift
        Relative diagonal shift used only where ``h`` is semi-definite.
    on_unstable
        ``"raise"`` (:class:`UnstableGroundStateError`) or ``"nan"`` (NaN energies,
        vectors and hence intensities at those points) when ``h(k)`` is not positive
        semi-definite, i.e. the ordered state is not a classical minimum.
    batch_size
        Number of Q points diagonalised together (memory ~ 2N*2N*16 B each).
    method
        ``"auto"`` (N x N reduction when all Hamiltonian coefficients are real, as
        for collinear structures with symmetric exchange and anisotropy along the
        frame axes; else Colpa), ``"colpa"`` (always the full 2N x 2N Colpa method)
        or ``"real"`` (force the reduction; raises if not applicable).
    zero_mode_tol
        Modes with ``E < zero_mode_tol * max|h(k)|`` are Goldstone modes at the
        exact magnetic zone centre: they are returned with energy 0 and intensity 0
        (their weight belongs to the elastic Bragg peak; the regularised 1/E
        intensity would otherwise be an arbitrary huge number).
    reduce
        Diagonalise only once per class of equivalent wave vectors (``k + G`` and,
        with real coefficients, ``-k``); results are identical, just faster on
        symmetric grids.

    Returns
    -------
    Modes
        Energies (n, N) ascending, eigenvectors and the compiled system.
    """
    if on_unstable not in ("raise", "nan"):
        raise InputDataError(format_error(
            "on_unstable must be 'raise' or 'nan'", reason=f"got {on_unstable!r}",
            fix="choose one of those"))
    if method not in ("auto", "colpa", "real"):
        raise InputDataError(format_error(
            "method must be 'auto', 'colpa' or 'real'", reason=f"got {method!r}",
            fix="choose one of those"))
    comp = system if isinstance(system, _Compiled) else _compile(system)
    if method == "real" and not comp.real:
        raise InputDataError(format_error(
            "method='real' needs real Hamiltonian coefficients",
            reason="this structure/anisotropy gives complex coefficients (non-collinear "
                   "order or anisotropy axes not along the local frame)",
            fix="use method='auto' or 'colpa'"))
    use_real = comp.real and method != "colpa"
    solver = _diag_real if use_real else _diag_colpa
    q_all = _as_q(q)
    rep, sign, inverse = _equivalent_points(comp, q_all, use_real) if reduce else (
        None, None, None)
    q = q_all if rep is None else sign[rep, None] * q_all[rep]
    N = comp.u.shape[0]
    n = len(q)
    energies = np.empty((n, N))
    vectors = np.empty((n, 2 * N, N), dtype=complex)
    zero_modes = np.zeros((n, N), dtype=bool)
    for start in range(0, n, batch_size):
        sl = slice(start, min(n, start + batch_size))
        w, T, failed, scale = solver(comp, q[sl], goldstone_shift)
        if np.any(failed) and on_unstable == "raise":
            k = start + int(np.argmax(failed))
            lowest = np.linalg.eigvalsh(_hamiltonian(comp, q[k:k + 1]))[0, 0]
            raise UnstableGroundStateError(format_error(
                "The spin-wave Hamiltonian is not positive semi-definite",
                reason=(f"at Q = {np.round(q[k], 6).tolist()} 1/A its lowest eigenvalue is "
                        f"{lowest:.4g} meV: the assumed ordered structure is not a classical "
                        "energy minimum for these exchange parameters"),
                fix="choose stable parameters (see SpinModel.is_stable / sample(rng, "
                    "stable_only=True)) or call with on_unstable='nan'"))
        if np.any(failed):
            w[failed] = np.nan
            T[failed] = np.nan
        zero = ((w < zero_mode_tol * scale[:, None])
                | (w <= 10 * goldstone_shift * np.maximum(1.0, scale)[:, None]))
        w = np.where(zero, 0.0, w)
        zero_modes[sl] = zero
        energies[sl] = w
        vectors[sl] = T
    if rep is not None:
        energies = energies[inverse]
        vectors = vectors[inverse]
        zero_modes = zero_modes[inverse]
        # rows were diagonalised at the canonical orientation sign * k; points mapped
        # with sign -1 need T(-k) = conj T(k)
        flip = sign < 0
        if np.any(flip):
            vectors[flip] = np.conj(vectors[flip])
    return Modes(q=q_all, energies=energies, vectors=vectors, zero_modes=zero_modes, _comp=comp)


def _equivalent_points(comp: _Compiled, q: np.ndarray, use_inversion: bool):
    """Group wave vectors with identical ``h(k)`` (up to complex conjugation).

    ``h`` depends on ``k`` only through ``k . t`` for the bond translations ``t``, so
    ``k`` and ``k + G`` are equivalent, and with real coefficients
    ``h(-k) = conj(h(k))``. Returns ``(rep, sign, inverse)``: indices of one
    representative per class, the sign (+1/-1) with which each point maps to its
    canonical key, and for every point the index of its class; or Nones when no two
    points are equivalent.
    """
    if len(q) < 2:
        return None, None, None
    ltr = comp.lattice
    f = q @ ltr.T / (2 * np.pi)  # fractional coordinates in the magnetic reciprocal cell
    used = np.array([np.any(comp.offset_index[:, k] != 0) for k in range(3)])
    f = np.where(used[None, :], f, 0.0)

    def canon(x):
        r = np.round(np.mod(x, 1.0), 8)
        return np.where(r >= 1.0, 0.0, r)

    kp = canon(f)
    sign = np.ones(len(q))
    if use_inversion:
        km = canon(-f)
        # lexicographic min of the two keys
        swap = np.zeros(len(q), dtype=bool)
        undecided = np.ones(len(q), dtype=bool)
        for k in range(3):
            lt = undecided & (km[:, k] < kp[:, k])
            gt = undecided & (km[:, k] > kp[:, k])
            swap |= lt
            undecided &= ~(lt | gt)
        kp = np.where(swap[:, None], km, kp)
        sign = np.where(swap, -1.0, 1.0)
    _, rep, inverse = np.unique(kp, axis=0, return_index=True, return_inverse=True)
    if len(rep) == len(q):
        return None, None, None
    return rep, sign, inverse.reshape(-1)


def spectrum(system: SpinSystem, q: np.ndarray, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Energies (n, N) in meV and intensities (n, N) at Cartesian ``q`` (n, 3).

    Convenience wrapper of :func:`diagonalise` + :meth:`Modes.intensities`;
    keyword arguments go to :func:`diagonalise`.
    """
    modes = diagonalise(system, q, **kwargs)
    return modes.energies, modes.intensities()


def group_velocities(modes: Modes) -> np.ndarray:
    """(n, N, 3) group velocities ``dE_n/dQ`` in meV Angstrom for ``modes``."""
    return modes.velocities()
