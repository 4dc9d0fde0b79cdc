"""Kinematics with c along k_i, and the detector-coverage geometry."""

import numpy as np
import pytest

from mantid_exp2sim.simulate.kinematics import (
    E_TO_K2,
    MAPS_COVERAGE,
    PCSMO_LATTICE,
    DetectorCoverage,
    final_wavevector,
    kinematic_l,
    q_perp,
    wavevector,
)


def test_wavevectors_and_q_perp():
    assert wavevector(E_TO_K2 * 9.0) == pytest.approx(3.0)
    assert final_wavevector(50.0, 50.0 - E_TO_K2 * 4.0) == pytest.approx(2.0)
    assert np.isnan(final_wavevector(50.0, 60.0))
    assert q_perp(1.0, 0.0) == pytest.approx(2 * np.pi / 5.408)
    assert q_perp(0.0, 1.0) == pytest.approx(2 * np.pi / 5.4599)


def test_kinematic_l_matches_the_formula_and_is_nan_out_of_reach():
    ei, e, qh, qk = 70.0, 20.0, 0.3, -0.4
    ki = np.sqrt(ei / E_TO_K2)
    kf = np.sqrt((ei - e) / E_TO_K2)
    qp = np.hypot(qh * 2 * np.pi / 5.408, qk * 2 * np.pi / 5.4599)
    expected = 19.266 / (2 * np.pi) * (ki - np.sqrt(kf**2 - qp**2))
    assert kinematic_l(qh, qk, e, ei) == pytest.approx(expected)
    # Elastic forward scattering at Q = 0 has L = 0; inelastic scattering has L > 0.
    assert kinematic_l(0.0, 0.0, 0.0, ei) == pytest.approx(0.0)
    assert kinematic_l(0.0, 0.0, 10.0, ei) > 0
    # k_f = 0.9 1/A cannot reach Q_perp = 1.16 1/A.
    assert np.isnan(kinematic_l(1.0, 0.0, 25.0 - E_TO_K2 * 0.81, 25.0))


def _point_at(two_theta_deg, azimuth_deg, ei, e):
    """(qh, qk) of a detector direction for energy transfer e."""
    kf = float(final_wavevector(ei, e))
    qp = kf * np.sin(np.radians(two_theta_deg))
    qx, qy = qp * np.cos(np.radians(azimuth_deg)), qp * np.sin(np.radians(azimuth_deg))
    return qx / PCSMO_LATTICE.astar, qy / PCSMO_LATTICE.bstar


@pytest.mark.parametrize(
    "two_theta, azimuth, covered",
    [(10.0, 0.0, True), (1.0, 30.0, False), (19.0, 0.0, True), (21.0, 0.0, False),
     (26.0, 45.0, True), (28.0, 45.0, False), (2.0, 90.0, True)],
)
def test_maps_coverage_beam_hole_and_square_bank(two_theta, azimuth, covered):
    qh, qk = _point_at(two_theta, azimuth, 70.0, 20.0)
    assert bool(MAPS_COVERAGE.covered(qh, qk, 20.0, 70.0)) is covered


def test_coverage_angle_range_without_bank_limit_and_energy_limit():
    cov = DetectorCoverage(two_theta_range=(3.0, 60.0), projected_half_angle=None)
    for tth, expected in ((2.0, False), (4.0, True), (45.0, True), (59.0, True)):
        qh, qk = _point_at(tth, 30.0, 100.0, 10.0)
        assert bool(cov.covered(qh, qk, 10.0, 100.0)) is expected
    # Energy transfer at or beyond Ei is never covered.
    assert not cov.covered(0.1, 0.1, 100.0, 100.0)
    assert not cov.covered(0.1, 0.1, 120.0, 100.0)
    # Broadcasting over arrays.
    out = cov.covered(np.zeros((3, 1)), np.linspace(0.2, 0.6, 4)[None, :], 10.0, 100.0)
    assert out.shape == (3, 4)


@pytest.mark.parametrize("kw", [dict(two_theta_range=(10, 5)), dict(two_theta_range=(-1, 20)),
                                dict(projected_half_angle=95.0)])
def test_invalid_coverage_raises(kw):
    with pytest.raises(ValueError, match="invalid"):
        DetectorCoverage(**kw)
