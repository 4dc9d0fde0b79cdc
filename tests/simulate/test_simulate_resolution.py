"""Resolution models: built-in MAPS (vs resins), covariance tables, intrinsic only."""

from pathlib import Path

import numpy as np
import pytest

from mantid_exp2sim.simulate.kinematics import PCSMO_LATTICE, wavevector
from mantid_exp2sim.simulate.resolution import (
    FWHM_PER_SIGMA,
    BuiltinMAPSResolution,
    IntrinsicResolution,
    TableResolution,
    get_resolution,
    load_resolution_table,
)


# ----------------------------------------------------------------------------- tables
def _linear_cov(qh, qk, e):
    """A smooth covariance that is linear in (qh, qk, e) (so linear interpolation is exact)."""
    shh = 1e-4 + 2e-5 * qh + 1e-6 * e
    skk = 2e-4 - 1e-5 * qk + 2e-6 * e
    shk = 1e-5 * (qh + qk)
    she = 1e-3 * qh
    ske = -2e-3 * qk
    see = 1.0 + 0.05 * e + 0.1 * qh
    return np.array([[shh, shk, she], [shk, skk, ske], [she, ske, see]])


def write_table(path: Path, qh=np.linspace(-1.2, 1.2, 7), qk=np.linspace(-1.2, 1.2, 5),
                e=np.linspace(0, 40, 9), shuffle=False, drop=0, columns=12):
    rows = []
    for ee in e:
        for kk in qk:
            for hh in qh:
                c = _linear_cov(hh, kk, ee)
                rows.append([hh, kk, ee, *c.ravel()])
    rows = np.array(rows)
    if shuffle:
        rows = rows[np.random.default_rng(0).permutation(len(rows))]
    if drop:
        rows = rows[:-drop]
    rows = rows[:, :columns]
    np.savetxt(path, rows, fmt="%.9e")
    return path


def test_table_loads_and_interpolates_linear_covariance_exactly(tmp_path):
    t = load_resolution_table(write_table(tmp_path / "t_ei50.txt", shuffle=True))
    assert t.qh.size == 7 and t.qk.size == 5 and t.e.size == 9
    qh = np.array([0.13, -0.71, 0.99])
    qk = np.array([-0.05, 0.66, -1.1])
    e = np.array([3.3, 17.9, 38.2])
    cov = t.covariance(qh, qk, e)
    assert cov.shape == (3, 3, 3)
    for i in range(3):
        np.testing.assert_allclose(cov[i], _linear_cov(qh[i], qk[i], e[i]), rtol=1e-7, atol=1e-12)
    # Broadcasting (n, 1) x (n, m) as the spectra use it, and clamping outside the grid.
    e2 = np.array([[5.0, 60.0]])
    c2 = t.covariance(np.array([[0.1]]), np.array([[0.2]]), e2)
    assert c2.shape == (1, 2, 3, 3)
    np.testing.assert_allclose(c2[0, 1], _linear_cov(0.1, 0.2, 40.0), rtol=1e-7)


def test_table_with_missing_columns_names_file_and_count(tmp_path):
    p = write_table(tmp_path / "bad_ei25.txt", columns=11)
    with pytest.raises(ValueError, match=r"bad_ei25\.txt.*11 columns; need 12"):
        load_resolution_table(p)


def test_ragged_table_names_the_line(tmp_path):
    p = write_table(tmp_path / "r_ei25.txt")
    lines = p.read_text().splitlines()
    lines[3] = " ".join(lines[3].split()[:9])
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"line 4 has 9 columns"):
        load_resolution_table(p)


def test_incomplete_grid_is_rejected(tmp_path):
    p = write_table(tmp_path / "g_ei25.txt", drop=3)
    with pytest.raises(ValueError, match="not a regular grid.*3 missing"):
        load_resolution_table(p)


def test_negative_variance_is_rejected(tmp_path):
    p = write_table(tmp_path / "n_ei25.txt")
    data = np.loadtxt(p)
    data[5, 11] = -1.0
    np.savetxt(p, data)
    with pytest.raises(ValueError, match="negative variance"):
        load_resolution_table(p)


def test_coverage_error_names_the_range(tmp_path):
    t = load_resolution_table(write_table(tmp_path / "c_ei50.txt", qh=np.linspace(-0.5, 0.5, 5)))
    t.check_coverage((-0.5, 0.5), (0.0, 30.0))
    with pytest.raises(ValueError, match=r"Qh = -1\.\.1 r\.l\.u\., the table's grid spans -0\.5\.\.0\.5"):
        t.check_coverage((-1.0, 1.0), (0.0, 30.0))
    with pytest.raises(ValueError, match=r"E = 5\.\.45 meV"):
        t.check_coverage((-0.5, 0.5), (5.0, 45.0))


def test_table_resolution_from_directory(tmp_path):
    write_table(tmp_path / "X_ei50_resolution.txt")
    write_table(tmp_path / "X_ei70_resolution.txt", e=np.linspace(0, 60, 7))
    (tmp_path / "notes.txt").write_text("not a table")
    res = get_resolution(f"tables:{tmp_path}")
    assert isinstance(res, TableResolution)
    assert res.incident_energies == [50.0, 70.0]
    assert res.spec == f"tables:{tmp_path.resolve()}"
    cov = res.covariance(np.array([0.2]), np.array([0.1]), np.array([10.0]), 70.0)
    np.testing.assert_allclose(cov[0], _linear_cov(0.2, 0.1, 10.0), rtol=1e-7)
    res.check_coverage(50.0, (-1, 1), (5.0, 35.0))
    with pytest.raises(ValueError, match=r"No resolution table for Ei = 100 meV.*\[50.0, 70.0\]"):
        res.covariance(np.array([0.0]), np.array([0.0]), np.array([1.0]), 100.0)
    with pytest.raises(ValueError, match="has no tables"):
        TableResolution.from_directory(_empty_dir(tmp_path))
    with pytest.raises(ValueError, match="does not exist"):
        TableResolution.from_directory(tmp_path / "missing")


def _empty_dir(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d


# ----------------------------------------------------------------------------- builtin
def test_builtin_energy_width_is_resins_plus_the_documented_term():
    resins = pytest.importorskip("resins")
    res = BuiltinMAPSResolution()
    e = np.array([5.0, 10.0, 20.0, 35.0, 48.0])
    model = resins.Instrument.from_default("MAPS", "MAPS").get_resolution_function(
        "PyChop_fit", chopper_package="S", e_init=70.0, chopper_frequency=250
    )
    sig_resins = np.asarray(model.get_characteristics(e[:, None])["sigma"]).ravel()
    extra = 0.008 * 70.0 + 0.004 * (70.0 - e)
    np.testing.assert_allclose(res.energy_sigma(e, 70.0), np.sqrt(sig_resins**2 + extra**2), rtol=2e-3)
    # Widths fall with energy transfer and grow with Ei (chopper settings of the PCSMO runs).
    s = res.energy_sigma(e, 70.0)
    assert np.all(np.diff(s) < 0)
    assert res.energy_sigma(np.array([10.0]), 140.0)[0] > res.energy_sigma(np.array([10.0]), 70.0)[0]
    assert res.frequency(70.0) == 250 and res.frequency(140.0) == 400 and res.frequency(65.0) == 250


def test_builtin_q_width_and_covariance_structure():
    pytest.importorskip("resins")
    res = BuiltinMAPSResolution()
    ei, e = 70.0, 20.0
    cov = res.covariance(np.array([0.3, -0.8]), np.array([0.1, 0.5]), np.array([e, e]), ei)
    assert cov.shape == (2, 3, 3)
    np.testing.assert_allclose(cov, np.swapaxes(cov, -1, -2))
    ki, kf = float(wavevector(ei)), float(wavevector(ei - e))
    sq2 = (ki * 2.4e-3) ** 2 + (kf * 2.2e-3) ** 2
    np.testing.assert_allclose(cov[:, 0, 0], sq2 / PCSMO_LATTICE.astar**2, rtol=1e-12)
    np.testing.assert_allclose(cov[:, 1, 1], sq2 / PCSMO_LATTICE.bstar**2, rtol=1e-12)
    assert np.all(cov[:, 0, 2] == 0) and np.all(cov[:, 0, 1] == 0)
    # sqrt(s_hh) within the 0.008-0.022 r.l.u. range of the MAPS tables.
    assert 0.008 < np.sqrt(cov[0, 0, 0]) < 0.022
    with pytest.raises(ValueError, match="energy range reaches the incident energy"):
        res.check_coverage(70.0, (-1, 1), (7.0, 75.0))


def test_builtin_bad_settings_raise():
    with pytest.raises(ValueError, match="chopper_package"):
        BuiltinMAPSResolution(chopper_package="X")
    with pytest.raises(ValueError, match="incident_divergence"):
        BuiltinMAPSResolution(incident_divergence=-1.0)
    pytest.importorskip("resins")
    with pytest.raises(ValueError, match="275 Hz"):
        BuiltinMAPSResolution(frequencies={70.0: 275}).check_coverage(70.0, (-1, 1), (7, 49))


def test_intrinsic_resolution_and_get_resolution_specs():
    r = get_resolution("unconvolved")
    assert isinstance(r, IntrinsicResolution)
    assert r.intrinsic_variance == pytest.approx((0.1 / FWHM_PER_SIGMA) ** 2)
    assert np.all(r.covariance(np.zeros(4), np.zeros(4), np.ones(4), 50.0) == 0)
    assert isinstance(get_resolution(None), IntrinsicResolution)
    assert isinstance(get_resolution("builtin"), BuiltinMAPSResolution)
    assert get_resolution(r) is r
    with pytest.raises(ValueError, match=r"Unknown resolution.*'gauss'.*'builtin', 'tables:DIR'"):
        get_resolution("gauss")
    with pytest.raises(ValueError, match="intrinsic_fwhm"):
        IntrinsicResolution(intrinsic_fwhm=0.0)


@pytest.mark.shared
@pytest.mark.parametrize("axis,tolerance", [(2, 0.2), (0, 0.05), (1, 0.05)], ids=["energy", "Qh", "Qk"])
def test_builtin_widths_agree_with_maps_tables(pcsmo_dir, axis, tolerance):
    """Energy widths within 20% and in-plane Q widths (which broaden constant-energy contours)
    within 5% of the MAPS tables, at every incident energy of the mosaic."""
    pytest.importorskip("resins")
    builtin = BuiltinMAPSResolution()
    tables = TableResolution.from_directory(pcsmo_dir)
    for ei in (25.0, 35.0, 50.0, 70.0, 100.0, 140.0):
        e = np.linspace(0.1, 0.7, 7) * ei
        qh, qk = np.full_like(e, 0.5), np.full_like(e, -0.3)
        b, t = builtin.covariance(qh, qk, e, ei), tables.covariance(qh, qk, e, ei)
        ratio = np.sqrt(b[:, axis, axis] / t[:, axis, axis])
        assert np.all(np.abs(ratio - 1) < tolerance), (ei, ratio)
