"""Spin models: registry, parameters, sampling, PCSMO bond sets, twins, kinematic L,
published-parameter spectra, the square-lattice family."""

import numpy as np
import pytest
from numerics import EIGEN_CROSS_PATH_RTOL

from mantid_exp2sim.errors import InputDataError
from mantid_exp2sim.simulate import _pcsmo
from mantid_exp2sim.simulate.lswt import UnstableGroundStateError
from mantid_exp2sim.simulate.spin_models import (
    AB_TWIN,
    E_TO_K2,
    get_model,
    kinematic_qc,
    list_models,
)

G = np.linspace(-1.0, 1.0, 21)
QH, QK = (x.ravel() for x in np.meshgrid(G, G, indexing="ij"))


def spectral_function(E, I, grid, sigma=0.1):
    return np.sum(I[:, :, None] * np.exp(-0.5 * ((grid[None, None, :] - E[:, :, None]) / sigma) ** 2),
                  axis=1)


# ----------------------------------------------------------------- registry
def test_registry_and_metadata():
    assert list_models() == ["goodenough", "dimer", "square_j1j2"]
    gd = get_model("goodenough")
    assert get_model("Goodenough") is gd
    assert gd.parameter_names == ("JF1", "JA", "JF2", "JF3", "Jperp", "D")
    assert gd.defaults == {"JF1": -11.39, "JA": 1.5, "JF2": -1.35, "JF3": 1.5, "Jperp": 0.88, "D": 0.074}
    assert gd.ranges["JF1"] == (-20.0, 0.0) and gd.ranges["D"] == (0.0, 0.2)
    dm = get_model("dimer")
    assert dm.parameter_names == ("JFW", "JA1", "JA2", "JFS", "Jperp", "D")
    assert dm.defaults == {"JFW": -8.43, "JA1": 1.52, "JA2": 1.52, "JFS": -14.2, "Jperp": 0.92, "D": 0.073}
    assert dm.ranges["JA1"] == (-3.0, 3.0) and dm.ranges["Jperp"] == (0.0, 3.0)
    sq = get_model("square_j1j2")
    assert sq.defaults == {"J1": 0.65, "J2": 0.0}
    assert sq.ranges == {"J1": (0.0, 1.0), "J2": (-0.2, 0.2)}
    for m in (gd, dm, sq):
        m.validate(m.defaults)
        assert "References" in m.__doc__
    assert (gd.lattice.a, gd.lattice.b, gd.lattice.c) == (5.408, 5.4599, 19.266)
    assert gd.n_modes == 32 and sq.n_modes == 2
    np.testing.assert_allclose(np.linalg.det(AB_TWIN), 1.0)
    np.testing.assert_allclose(sum(t.volume for t in gd.twins), 1.0)


def test_unknown_model_lists_allowed():
    with pytest.raises(ValueError, match="goodenough, dimer, square_j1j2") as err:
        get_model("zener")
    assert isinstance(err.value, InputDataError) and "'zener'" in str(err.value)


# --------------------------------------------------------------- parameters
def test_validate_accepts_mapping_and_sequence():
    m = get_model("goodenough")
    p = m.validate(m.defaults)
    np.testing.assert_array_equal(p, [-11.39, 1.5, -1.35, 1.5, 0.88, 0.074])
    np.testing.assert_array_equal(m.validate(list(p)), p)
    np.testing.assert_array_equal(m.validate(tuple(p)), p)


@pytest.mark.parametrize("change,pattern", [
    ({"JA": 3.5}, r"'JA'.*3\.5.*\[0\.0, 3\.0\]"),
    ({"JF1": float("nan")}, r"'JF1'.*not a finite"),
    ({"D": float("inf")}, r"'D'.*not a finite"),
    ({"Jperp": -0.1}, r"'Jperp'.*-0\.1.*\[0\.0, 3\.0\]"),
])
def test_validate_rejects_bad_values(change, pattern):
    m = get_model("goodenough")
    with pytest.raises(InputDataError, match=pattern):
        m.validate({**m.defaults, **change})


def test_validate_rejects_bad_structure():
    m = get_model("dimer")
    with pytest.raises(ValueError, match="missing"):
        m.validate({k: v for k, v in m.defaults.items() if k != "JFS"})
    with pytest.raises(ValueError, match="unknown"):
        m.validate({**m.defaults, "JF1": -1.0})
    with pytest.raises(ValueError, match="6 numbers"):
        m.validate([1.0, 2.0])
    with pytest.raises(ValueError, match="6 numbers"):
        m.validate("abc")


def test_sample_is_deterministic_uniform_and_in_range():
    m = get_model("dimer")
    a = np.array([m.sample(np.random.default_rng(7)) for _ in range(3)])
    b = np.array([m.sample(np.random.default_rng(7)) for _ in range(3)])
    np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(1)
    draws = np.array([m.sample(rng) for _ in range(400)])
    lo = np.array([m.ranges[k][0] for k in m.parameter_names])
    hi = np.array([m.ranges[k][1] for k in m.parameter_names])
    assert np.all(draws >= lo) and np.all(draws <= hi)
    # uniform: the mean of each column is near the middle of its range
    assert np.all(np.abs(draws.mean(0) - (lo + hi) / 2) < 0.1 * (hi - lo))
    assert len({tuple(r) for r in draws}) == 400
    with pytest.raises(InputDataError, match="Generator"):
        m.sample(42)


def test_sample_stable_only_and_stability_check():
    m = get_model("square_j1j2")
    assert m.is_stable(m.defaults)
    assert not m.is_stable({"J1": 0.2, "J2": 0.2})  # J2 > J1 / 2: Neel unstable
    rng = np.random.default_rng(3)
    for _ in range(5):
        p = m.sample(rng, stable_only=True)
        assert m.is_stable(p)
    with pytest.raises(UnstableGroundStateError):
        m.spectrum({"J1": 0.2, "J2": 0.2}, [0.1, 0.2], [0.0, 0.3], 0.0)


# ---------------------------------------------------------------- PCSMO bonds
def test_pcsmo_structure_and_bond_counts():
    sites = _pcsmo.pcsmo_sites()
    assert len(sites) == 16
    assert all(s.spin == 1.75 for s in sites)
    assert sum(s.ion == "Mn3+" for s in sites) == 8
    assert all(abs(abs(s.direction[1]) - 1) < 1e-12 for s in sites)  # spins along +-b
    assert sum(s.direction[1] for s in sites) == 0
    bonds = _pcsmo.pcsmo_bonds()
    counts = {k: len(v) for k, v in bonds.items()}
    assert counts == {"nn_fm": 16, "nn_afm": 16, "perp": 8, "mn3_a": 8, "mn4_chain": 8,
                      "fs": 8, "fw": 8, "a1": 8, "a2": 8}
    nn = {frozenset([(i, j, o)]) for k in ("nn_fm", "nn_afm") for i, j, o in bonds[k]}
    split = {frozenset([(i, j, o)]) for k in ("fs", "fw", "a1", "a2") for i, j, o in bonds[k]}
    assert len(nn) == 32 and nn == split
    lattice = _pcsmo.supercell_lattice()
    frac = np.array([s.position for s in sites])
    spin = np.array([s.direction[1] for s in sites])

    def lengths(name):
        return np.array([np.linalg.norm((frac[j] + o - frac[i]) @ lattice) for i, j, o in bonds[name]])

    np.testing.assert_allclose(lengths("nn_fm"), 3.8425, atol=1e-3)
    np.testing.assert_allclose(lengths("perp"), 3.853, atol=1e-3)
    np.testing.assert_allclose(lengths("mn3_a"), 5.408, atol=1e-6)
    np.testing.assert_allclose(lengths("mn4_chain"), 7.685, atol=1e-3)
    assert all(spin[i] != spin[j] for i, j, _ in bonds["perp"])
    # every site has exactly one strong and one weak FM dimer bond
    for name in ("fs", "fw"):
        ends = np.bincount([k for i, j, _ in bonds[name] for k in (i, j)], minlength=16)
        np.testing.assert_array_equal(ends, 1)
    # SpinW's JF2 selection: from the Mn4 at supercell x = 1/2 towards +b
    for i, j, o in bonds["mn4_chain"]:
        d = frac[j] + o - frac[i]
        start, d = (i, d) if abs(frac[i, 0] - 0.5) < 1e-9 else (j, -d)
        assert abs(frac[start, 0] - 0.5) < 1e-9 and d[1] > 0


def test_dimer_reduces_to_goodenough_without_dimerisation():
    gd, dm = get_model("goodenough"), get_model("dimer")
    pg = {"JF1": -10.0, "JA": 1.4, "JF2": 0.0, "JF3": 0.0, "Jperp": 0.9, "D": 0.07}
    pd = {"JFW": -10.0, "JA1": 1.4, "JA2": 1.4, "JFS": -10.0, "Jperp": 0.9, "D": 0.07}
    Eg, Ig = gd.spectrum(pg, QH[::7], QK[::7], 0.4)
    Ed, Id = dm.spectrum(pd, QH[::7], QK[::7], 0.4)
    # (rtol: at zone centres the Goldstone regularisation shifts other modes by ~1e-7)
    np.testing.assert_allclose(Eg, Ed, rtol=1e-6, atol=1e-9)
    grid = np.linspace(0, 90, 181)
    np.testing.assert_allclose(spectral_function(Eg, Ig, grid), spectral_function(Ed, Id, grid),
                               rtol=1e-5, atol=1e-9)


# -------------------------------------------------------------- PCSMO spectra
@pytest.mark.parametrize("name", ["goodenough", "dimer"])
def test_published_parameters_give_stable_spectrum(name):
    m = get_model(name)
    g = np.linspace(-1, 1, 41)
    qh, qk = np.meshgrid(g, g, indexing="ij")
    E, I = m.spectrum(m.defaults, qh, qk, 0.0)
    assert E.shape == I.shape == (41 * 41, 32)
    assert np.all(np.isfinite(E)) and np.all(E >= 0) and np.all(I >= 0)
    # upper band top ~ 86 meV (4 |JF1| S = 80 meV plus JA), lower band top ~ 36 meV
    assert 80 < E.max() < 95
    lower = np.sort(E[:, :16], axis=1)[:, :8]
    assert 30 < lower.max() < 42
    assert m.is_stable(m.defaults)


def test_twin_symmetry_proper_rotation():
    """Spectrum at Q equals the spectrum at R Q (R = x<->y, z -> -z) with the twin
    blocks swapped; in r.l.u. R Q = (qk a/b, qh b/a, -l)."""
    m = get_model("goodenough")
    lat = m.lattice
    rng = np.random.default_rng(0)
    qh, qk, l = rng.uniform(-1, 1, 30), rng.uniform(-1, 1, 30), rng.uniform(-4, 4, 30)
    E1, I1 = m.spectrum(m.defaults, qh, qk, l)
    E2, I2 = m.spectrum(m.defaults, qk * lat.a / lat.b, qh * lat.b / lat.a, -l)
    np.testing.assert_allclose(E1[:, :16], E2[:, 16:], rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(E1[:, 16:], E2[:, :16], rtol=1e-9, atol=1e-6)
    grid = np.linspace(0, 90, 181)
    np.testing.assert_allclose(spectral_function(E1[:, :16], I1[:, :16], grid),
                               spectral_function(E2[:, 16:], I2[:, 16:], grid), rtol=1e-6, atol=1e-9)
    # the twins really differ (a != b and the CE order is not a <-> b symmetric)
    assert np.max(np.abs(E1[:, :16] - E1[:, 16:])) > 1.0


def test_twin_weights_and_l_dependence_of_bilayer():
    m = get_model("goodenough")
    modes = m.modes(m.defaults, [0.3, 0.55], [0.1, -0.2])
    I0 = modes.intensities(0.0)
    I1 = modes.intensities(2.5)
    e = modes.energies
    np.testing.assert_allclose(m.spectrum(m.defaults, [0.3, 0.55], [0.1, -0.2], 2.5)[0], e)
    # bilayer structure factor: intensities change with l, energies do not
    assert np.max(np.abs(I0 - I1)) > 1e-3 * I0.max()
    # volume weighting: a single-twin model would give twice the per-twin intensity
    single = m.modes(m.defaults, [0.3, 0.55], [0.1, -0.2]).per_twin[0].intensities()
    np.testing.assert_allclose(I0[:, :16], 0.5 * single, rtol=EIGEN_CROSS_PATH_RTOL)


def test_kinematic_l_and_accessibility():
    m = get_model("goodenough")
    ei = 35.0
    qh, qk = QH[::5], QK[::5]
    E, I = m.spectrum_kinematic(m.defaults, qh, qk, ei)
    modes = m.modes(m.defaults, qh, qk)
    lk = modes.kinematic_l(ei)
    qperp = np.hypot(2 * np.pi * qh / m.lattice.a, 2 * np.pi * qk / m.lattice.b)
    ki = np.sqrt(ei / E_TO_K2)
    kf2 = (ei - E) / E_TO_K2
    ok = kf2 >= qperp[:, None] ** 2
    assert np.any(ok) and np.any(~ok)  # the upper band (> 35 meV) is out of reach
    arg = np.where(ok, kf2 - qperp[:, None] ** 2, 0.0)
    np.testing.assert_allclose(lk[ok], (m.lattice.c / (2 * np.pi) * (ki - np.sqrt(arg)))[ok], rtol=1e-12)
    assert np.all(np.isnan(lk[~ok])) and np.all(I[~ok] == 0)
    assert np.all(I[ok] >= 0) and np.any(I[ok] > 0)
    # each accessible mode carries the intensity of spectrum() at its own l
    for n in np.flatnonzero(ok.any(axis=1))[:4]:
        for mode in np.flatnonzero(ok[n])[:6]:
            _, Il = m.spectrum(m.defaults, qh[n], qk[n], lk[n, mode])
            # two solver calls: see numerics.py for why 1e-9 is more than LAPACK promises
            np.testing.assert_allclose(I[n, mode], Il[0, mode], rtol=EIGEN_CROSS_PATH_RTOL, atol=1e-12)
    # energies are those of the l = 0 spectrum
    np.testing.assert_allclose(E, m.spectrum(m.defaults, qh, qk, 0.0)[0])


def test_kinematic_qc_function():
    qc = kinematic_qc(np.array([10.0, 40.0]), np.array([1.0, 1.0]), 35.0)
    ki, kf = np.sqrt(35 / E_TO_K2), np.sqrt(25 / E_TO_K2)
    np.testing.assert_allclose(qc[0], ki - np.sqrt(kf ** 2 - 1))
    assert np.isnan(qc[1])
    with pytest.raises(InputDataError, match="ei"):
        kinematic_qc(np.array([1.0]), np.array([0.0]), -5.0)


def test_velocities_in_rlu_match_finite_differences():
    m = get_model("dimer")
    qh, qk = np.array([0.23, -0.61]), np.array([0.37, 0.12])
    modes = m.modes(m.defaults, qh, qk)
    v = modes.velocities_rlu()
    h = 1e-6
    fd_h = (m.spectrum(m.defaults, qh + h, qk, 0)[0] - m.spectrum(m.defaults, qh - h, qk, 0)[0]) / (2 * h)
    fd_k = (m.spectrum(m.defaults, qh, qk + h, 0)[0] - m.spectrum(m.defaults, qh, qk - h, 0)[0]) / (2 * h)
    np.testing.assert_allclose(v[..., 0], fd_h, atol=2e-3)
    np.testing.assert_allclose(v[..., 1], fd_k, atol=2e-3)


def test_spectrum_rejects_bad_q_and_ei():
    m = get_model("goodenough")
    with pytest.raises(InputDataError, match="finite"):
        m.spectrum(m.defaults, [np.nan], [0.0], 0.0)
    with pytest.raises(InputDataError, match="ei"):
        m.spectrum_kinematic(m.defaults, [0.1], [0.0], 0.0)
    with pytest.raises(InputDataError, match="out of range"):
        m.spectrum({**m.defaults, "JF1": 5.0}, [0.1], [0.0], 0.0)


# ----------------------------------------------------------- square lattice
def test_square_j1j2_model_dispersion_and_form_factor():
    from mantid_exp2sim.simulate.formfactor import form_factor

    m = get_model("square_j1j2")
    J1, J2, S = 0.8, 0.15, 2.5
    rng = np.random.default_rng(2)
    qh, qk, l = rng.uniform(-1, 1, 50), rng.uniform(-1, 1, 50), rng.uniform(-3, 3, 50)
    E, I = m.spectrum({"J1": J1, "J2": J2}, qh, qk, l)
    kx, ky = 2 * np.pi * qh, 2 * np.pi * qk  # k . a with a the square-lattice constant
    gam = 0.5 * (np.cos(kx) + np.cos(ky))
    a_k = 4 * J1 * S - 4 * J2 * S * (1 - np.cos(kx) * np.cos(ky))
    expected = np.sqrt(a_k ** 2 - (4 * J1 * S * gam) ** 2)
    np.testing.assert_allclose(E[:, 0], expected, rtol=1e-8)
    # spins along c: S^xx = S^yy = S/2 (A_k - B_k) / w_k per site, B_k = 4 J1 S gamma_k
    # (sqrt((1 - g)/(1 + g)) for J2 = 0); times the polarisation factor and F^2
    q = m.q_cartesian(qh, qk, l)
    qhat = q / np.linalg.norm(q, axis=1, keepdims=True)
    f2 = form_factor("Mn2+", np.linalg.norm(q, axis=1)) ** 2
    np.testing.assert_allclose(I.sum(1), S / 2 * (a_k - 4 * J1 * S * gam) / expected
                               * (2 - qhat[:, 0] ** 2 - qhat[:, 1] ** 2) * f2, rtol=1e-8)
