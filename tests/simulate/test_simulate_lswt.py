"""Linear spin-wave engine: analytic dispersions, Goldstone modes, cell equivalence,
intensities and polarisation factor, eigenvector reuse, velocities, errors."""

from itertools import product

import numpy as np
import pytest
from numerics import EIGEN_CROSS_PATH_RTOL

from mantid_exp2sim.errors import InputDataError
from mantid_exp2sim.simulate.lswt import (
    Coupling,
    MagneticSite,
    SingleIonAnisotropy,
    SpinSystem,
    UnstableGroundStateError,
    diagonalise,
    group_velocities,
    spectrum,
)

A = 3.0  # square / chain lattice constant, Angstrom
S = 2.5
J = 1.3


# ----------------------------------------------------------------- builders
def _bonds(lattice, frac, lengths, max_off=2):
    """Bonds (i, j, offset, length_index) of the given lengths, each listed once."""
    pos = np.asarray(frac) @ lattice
    out = []
    rng = range(-max_off, max_off + 1)
    for i, j in product(range(len(frac)), repeat=2):
        if j < i:
            continue
        for off in product(rng, rng, (0,)):
            if i == j and not off > (0, 0, 0):
                continue
            d = np.linalg.norm(pos[j] + np.array(off) @ lattice - pos[i])
            for k, length in enumerate(lengths):
                if abs(d - length) < 1e-9:
                    out.append((i, j, off, k))
    return out


def neel_square(cell, J1=J, J2=0.0, aniso=None, ion=None, spin_axis=(0, 0, 1)):
    """Neel square lattice (constant A, one layer, c = 10 A) in the supercell whose
    in-plane vectors are the integer rows of ``cell`` (units of A)."""
    cell = np.asarray(cell, dtype=float)
    lattice = np.zeros((3, 3))
    lattice[:2, :2] = cell * A
    lattice[2, 2] = 10.0
    inv = np.linalg.inv(lattice)
    sites, seen = [], set()
    span = int(np.abs(cell).sum()) + 1
    for x, y in product(range(-span, span + 1), repeat=2):
        f = np.array([x * A, y * A, 0.0]) @ inv
        f = np.round(np.mod(f, 1.0), 10) % 1.0
        key = tuple(f)
        if key in seen:
            continue
        seen.add(key)
        sign = 1.0 if (x + y) % 2 == 0 else -1.0
        sites.append(MagneticSite(tuple(f), S, tuple(sign * np.asarray(spin_axis, float)), ion))
    frac = [s.position for s in sites]
    bonds = _bonds(lattice, frac, [A, A * np.sqrt(2)])
    couplings = [Coupling(i, j, off, (J1, J2)[k]) for i, j, off, k in bonds]
    anis = [SingleIonAnisotropy(k, aniso) for k in range(len(sites))] if aniso is not None else []
    return SpinSystem(lattice, sites, couplings, anis)


def fm_chain(n_cell=1, Jc=-2.0, spin=1.5, aniso=None, direction=(0, 0, 1)):
    lattice = np.diag([n_cell * A, 10.0, 10.0])
    sites = [MagneticSite((k / n_cell, 0, 0), spin, direction) for k in range(n_cell)]
    couplings = [Coupling(k, (k + 1) % n_cell, (1 if k == n_cell - 1 else 0, 0, 0), Jc)
                 for k in range(n_cell)]
    anis = [SingleIonAnisotropy(k, aniso) for k in range(n_cell)] if aniso is not None else []
    return SpinSystem(lattice, sites, couplings, anis)


def spectral_function(E, I, grid, sigma=0.05):
    """Cell-choice-invariant view: sum_n I_n G(E - E_n) per Q."""
    return np.sum(I[:, :, None] * np.exp(-0.5 * ((grid[None, None, :] - E[:, :, None]) / sigma) ** 2),
                  axis=1)


def random_q(n, seed=0, scale=2.0):
    rng = np.random.default_rng(seed)
    q = rng.uniform(-scale, scale, (n, 3))
    return q


SQRT2_CELL = [[1, 1], [1, -1]]


# ------------------------------------------------------- analytic dispersions
def test_square_afm_dispersion_matches_analytic():
    q = random_q(200, 1)
    E, _ = spectrum(neel_square(SQRT2_CELL), q)
    gam = 0.5 * (np.cos(q[:, 0] * A) + np.cos(q[:, 1] * A))
    expected = 4 * J * S * np.sqrt(1 - gam ** 2)
    keep = expected > 1e-2
    assert E.shape == (200, 2)
    np.testing.assert_allclose(E[keep], np.repeat(expected[keep, None], 2, 1), rtol=1e-8)


def test_square_j1j2_dispersion_matches_analytic():
    J2 = 0.2
    q = random_q(100, 2)
    E, _ = spectrum(neel_square(SQRT2_CELL, J2=J2), q)
    cx, cy = np.cos(q[:, 0] * A), np.cos(q[:, 1] * A)
    gam = 0.5 * (cx + cy)
    a_k = 4 * J * S - 4 * J2 * S * (1 - cx * cy)
    expected = np.sqrt(a_k ** 2 - (4 * J * S * gam) ** 2)
    keep = expected > 1e-2
    np.testing.assert_allclose(E[keep, 0], expected[keep], rtol=1e-8)


def test_fm_chain_dispersion_matches_analytic():
    k = np.linspace(-np.pi / A, np.pi / A, 41)[1:]
    q = np.stack([k, 0.3 * k, np.zeros_like(k)], axis=1)
    q = q[np.abs(k) > 1e-6]
    E, _ = spectrum(fm_chain(), q)
    np.testing.assert_allclose(E[:, 0], 2 * 2.0 * 1.5 * (1 - np.cos(q[:, 0] * A)), rtol=1e-8)


def test_triangular_120_degree_structure_noncollinear():
    """3-sublattice 120-degree order: the modes at k are the single-k LSWT branch
    w(k) = 3JS sqrt((1 - g_k)(1 + 2 g_k)) at k and k -+ K (folding)."""
    a1 = np.array([A, 0, 0])
    a2 = np.array([A / 2, A * np.sqrt(3) / 2, 0])
    lattice = np.array([a1 + a2, 2 * a2 - a1 + a1, [0, 0, 10.0]])  # sqrt3 x sqrt3
    lattice[1] = -a1 + 2 * a2
    inv = np.linalg.inv(lattice)
    sites = []
    for m, ang in enumerate((0.0, 2 * np.pi / 3, 4 * np.pi / 3)):
        cart = m * a1
        f = tuple(np.round(np.mod(cart @ inv, 1.0), 12) % 1.0)
        sites.append(MagneticSite(f, S, (np.cos(ang), np.sin(ang), 0.0)))
    bonds = _bonds(lattice, [s.position for s in sites], [A])
    assert len(bonds) == 9
    system = SpinSystem(lattice, sites, [Coupling(i, j, off, J) for i, j, off, _ in bonds])
    q = random_q(40, 3)
    q[:, 2] = 0
    E, I = spectrum(system, q)
    deltas = [a1, a2, a2 - a1]

    def w(k):
        g = sum(np.cos(k @ d) for d in deltas) / 3
        return 3 * J * S * np.sqrt(np.clip((1 - g) * (1 + 2 * g), 0, None))

    K = np.array([4 * np.pi / (3 * A), 0, 0])
    expected = np.sort(np.stack([w(q), w(q + K), w(q - K)], axis=1), axis=1)
    keep = expected.min(axis=1) > 1e-2
    np.testing.assert_allclose(E[keep], expected[keep], rtol=1e-7)
    assert np.all(I >= 0)


# ------------------------------------------------------------ Goldstone, gaps
def test_goldstone_mode_isotropic_afm_and_fm():
    """Zero modes at the exact zone centre: energy 0 and (elastic) intensity 0;
    just off the centre the mode is finite and linear (AFM) / quadratic (FM)."""
    q = np.array([[0.0, 0, 0], [np.pi / A, np.pi / A, 0], [1e-3, 0, 0]])
    modes = diagonalise(neel_square(SQRT2_CELL), q)
    np.testing.assert_array_equal(modes.energies[:2], 0.0)
    np.testing.assert_array_equal(modes.intensities()[:2], 0.0)
    assert modes.zero_modes[:2].all() and not modes.zero_modes[2].any()
    np.testing.assert_allclose(modes.energies[2], 4 * J * S * 1e-3 * A / np.sqrt(2), rtol=1e-5)
    modes = diagonalise(fm_chain(), np.array([[0.0, 0, 0], [2 * np.pi / A, 0, 0], [0.01, 0, 0]]))
    np.testing.assert_array_equal(modes.energies[:2, 0], 0.0)
    np.testing.assert_allclose(modes.intensities()[2, 0], 1.5 / 2, rtol=1e-8)


def test_easy_axis_gaps_are_analytic():
    K = 0.07
    easy = np.diag([0.0, 0.0, -K])  # S.A.S = -K Sz^2: easy axis along the moments (z)
    E, _ = spectrum(neel_square(SQRT2_CELL, aniso=easy), np.zeros((1, 3)))
    gap = 2 * S * np.sqrt(K * (4 * J + K))
    np.testing.assert_allclose(E[0], [gap, gap], rtol=1e-8)
    E, _ = spectrum(fm_chain(aniso=easy), np.zeros((1, 3)))
    np.testing.assert_allclose(E[0, 0], 2 * K * 1.5, rtol=1e-8)


def test_hard_axis_anisotropy_gaps_one_of_two_modes():
    D = 0.1
    hard = np.diag([0.0, 0.0, D])
    sysd = neel_square(SQRT2_CELL, aniso=hard, spin_axis=(0, 1, 0))
    E, _ = spectrum(sysd, np.zeros((1, 3)))
    assert E[0, 0] < 1e-3
    # in-plane order, hard axis c: the out-of-plane mode gap 2 S sqrt(D zJ) (LSWT)
    np.testing.assert_allclose(E[0, 1], 2 * S * np.sqrt(D * 4 * J), rtol=1e-6)


# -------------------------------------------------------- cell equivalence
@pytest.mark.parametrize("cell", [[[2, 0], [0, 2]], [[2, 2], [2, -2]], [[2, 0], [0, 4]]])
def test_square_afm_same_spectrum_in_larger_cells(cell):
    q = random_q(60, 4)
    grid = np.linspace(0, 12, 241)
    E2, I2 = spectrum(neel_square(SQRT2_CELL, J2=0.1, ion="Mn2+"), q)
    big = neel_square(cell, J2=0.1, ion="Mn2+")
    En, In = spectrum(big, q)
    assert En.shape[1] == big.n_sites > 2
    np.testing.assert_allclose(spectral_function(En, In, grid), spectral_function(E2, I2, grid),
                               rtol=1e-7, atol=1e-9)


def test_fm_chain_same_spectrum_in_two_site_cell():
    q = random_q(50, 5, 3.0)
    grid = np.linspace(0, 13, 261)
    E1, I1 = spectrum(fm_chain(1), q)
    E2, I2 = spectrum(fm_chain(2), q)
    np.testing.assert_allclose(spectral_function(E2, I2, grid), spectral_function(E1, I1, grid),
                               rtol=1e-7, atol=1e-9)


# ------------------------------------------------------ intensities, sum rules
def test_ferromagnet_polarisation_factor_and_sum_rule():
    spin = 1.5
    system = fm_chain(spin=spin)
    q_par = np.array([[0.4, 0.0, 0.0], [0.4, 0, 5.0]])  # second one almost along the moment (z)
    _, I = spectrum(system, q_par)
    qhat = q_par / np.linalg.norm(q_par, axis=1, keepdims=True)
    # S^xx = S^yy = S/2, S^zz = 0 (one magnon), per site
    np.testing.assert_allclose(I[:, 0], spin / 2 * (2 - qhat[:, 0] ** 2 - qhat[:, 1] ** 2), rtol=1e-10)
    # Q || moment (moments along the chain): both transverse components count
    _, I = spectrum(fm_chain(spin=spin, direction=(1, 0, 0)), np.array([[0.4, 0.0, 0.0]]))
    np.testing.assert_allclose(I[0, 0], spin, rtol=1e-8)


def test_antiferromagnet_intensity_analytic():
    """S^xx + S^yy summed over the two degenerate modes = S sqrt((1 - g)/(1 + g))."""
    q = random_q(80, 6)
    E, I = spectrum(neel_square(SQRT2_CELL), q)
    gam = 0.5 * (np.cos(q[:, 0] * A) + np.cos(q[:, 1] * A))
    qhat = q / np.linalg.norm(q, axis=1, keepdims=True)
    expected = (S / 2) * np.sqrt((1 - gam) / (1 + gam)) * (2 - qhat[:, 0] ** 2 - qhat[:, 1] ** 2)
    keep = np.abs(1 + gam) > 1e-2
    np.testing.assert_allclose(I.sum(axis=1)[keep], expected[keep], rtol=1e-8)


def test_form_factor_multiplies_intensity():
    from mantid_exp2sim.simulate.formfactor import form_factor

    q = random_q(30, 7)
    _, I0 = spectrum(neel_square(SQRT2_CELL), q)
    _, I1 = spectrum(neel_square(SQRT2_CELL, ion="Mn2+"), q)
    f2 = form_factor("Mn2+", np.linalg.norm(q, axis=1)) ** 2
    np.testing.assert_allclose(I1.sum(1), I0.sum(1) * f2, rtol=1e-10)


# -------------------------------------------- methods, reuse, velocities
def test_real_reduction_equals_full_colpa_and_reduce_flag():
    system = neel_square(SQRT2_CELL, J2=0.1, aniso=np.diag([0, 0, 0.05]), spin_axis=(1, 0, 0))
    g = np.linspace(-1.0, 1.0, 9)
    q = np.stack(np.meshgrid(g, g, [0.3], indexing="ij"), -1).reshape(-1, 3)
    a = diagonalise(system, q, method="colpa", reduce=False)
    b = diagonalise(system, q, method="real", reduce=True)
    grid = np.linspace(0, 12, 121)
    np.testing.assert_allclose(a.energies, b.energies, rtol=1e-9, atol=1e-5)  # Goldstone at q = 0
    np.testing.assert_allclose(spectral_function(a.energies, a.intensities(), grid),
                               spectral_function(b.energies, b.intensities(), grid), rtol=1e-7, atol=1e-9)


def test_eigenvectors_reused_for_other_l():
    """No couplings along c: h(k) does not depend on k_z; intensities at any k_z from
    one diagonalisation equal fresh diagonalisations."""
    system = neel_square(SQRT2_CELL, ion="Mn2+")
    q0 = random_q(20, 8)
    q0[:, 2] = 0
    modes = diagonalise(system, q0)
    rng = np.random.default_rng(0)
    qz = rng.uniform(-3, 3, (20, 2))  # one k_z per mode
    q_eval = np.repeat(q0[:, None, :], 2, axis=1)
    q_eval[..., 2] = qz
    reused = modes.intensities(q_eval)
    for m in range(2):
        fresh = diagonalise(system, q_eval[:, m, :])
        np.testing.assert_allclose(fresh.energies, modes.energies, rtol=EIGEN_CROSS_PATH_RTOL)
        # degenerate pair: compare the pair sum for the mode-m L
        qq = q_eval[:, m, :]
        np.testing.assert_allclose(fresh.intensities().sum(1),
                                   modes.intensities(np.repeat(qq[:, None], 2, 1)).sum(1),
                                   rtol=EIGEN_CROSS_PATH_RTOL)
    assert reused.shape == (20, 2)


def test_reuse_rejected_when_hamiltonian_depends_on_component():
    system = fm_chain()
    modes = diagonalise(system, np.array([[0.3, 0, 0]]))
    with pytest.raises(InputDataError, match="not equivalent"):
        modes.intensities(np.array([[0.5, 0, 0]]))
    # a reciprocal-lattice vector along the chain is fine
    same = modes.intensities(np.array([[0.3 + 2 * np.pi / A, 0, 0]]))
    assert same.shape == (1, 1)


def test_group_velocities_match_finite_differences():
    system = neel_square(SQRT2_CELL, J2=0.1, aniso=np.diag([0, 0, 0.05]), spin_axis=(0, 1, 0))
    q = np.array([[0.21, 0.47, 0.0], [0.9, -0.3, 0.0]])
    v = group_velocities(diagonalise(system, q))
    v_colpa = diagonalise(system, q, method="colpa").velocities()
    h = 1e-6
    for ax in range(2):
        dq = np.zeros(3)
        dq[ax] = h
        fd = (diagonalise(system, q + dq).energies - diagonalise(system, q - dq).energies) / (2 * h)
        np.testing.assert_allclose(v[..., ax], fd, atol=1e-5)
        np.testing.assert_allclose(v_colpa[..., ax], fd, atol=1e-5)
    np.testing.assert_array_equal(v[..., 2], 0.0)


# --------------------------------------------------------------- errors
def test_bad_inputs_raise():
    with pytest.raises(InputDataError, match="spin length"):
        MagneticSite((0, 0, 0), 0.0, (0, 0, 1))
    with pytest.raises(ValueError, match="spin length"):
        MagneticSite((0, 0, 0), -1.0, (0, 0, 1))
    with pytest.raises(InputDataError, match="direction"):
        MagneticSite((0, 0, 0), 1.0, (0, 0, 0))
    site = MagneticSite((0, 0, 0), 1.0, (0, 0, 1))
    with pytest.raises(InputDataError, match="couplings is empty"):
        SpinSystem(np.eye(3), [site], [])
    with pytest.raises(InputDataError, match="does not exist"):
        SpinSystem(np.eye(3), [site], [Coupling(0, 1, (1, 0, 0), 1.0)])
    with pytest.raises(InputDataError, match="itself"):
        SpinSystem(np.eye(3), [site], [Coupling(0, 0, (0, 0, 0), 1.0)])
    system = fm_chain()
    with pytest.raises(InputDataError, match=r"\(n, 3\)"):
        spectrum(system, np.zeros((4, 2)))
    with pytest.raises(InputDataError, match="finite"):
        spectrum(system, np.array([[np.nan, 0, 0]]))
    with pytest.raises(InputDataError, match="on_unstable"):
        diagonalise(system, np.zeros((1, 3)), on_unstable="ignore")


def test_unstable_structure_detected():
    # Neel order with J2 > J1/2 is not a classical minimum: imaginary modes near (pi, 0)
    system = neel_square(SQRT2_CELL, J1=1.0, J2=0.8)
    q = np.array([[np.pi / A, 0.0, 0.0]])
    with pytest.raises(UnstableGroundStateError, match="not positive semi-definite"):
        spectrum(system, q)
    with pytest.raises(ValueError):
        spectrum(system, q, method="colpa")
    stable_q = [[np.pi / (2 * A), np.pi / (2 * A), 0.0]]  # gamma_k = 0: A_k > 0
    modes = diagonalise(system, np.vstack([q, stable_q]), on_unstable="nan")
    assert np.all(np.isnan(modes.energies[0])) and np.all(np.isfinite(modes.energies[1]))
