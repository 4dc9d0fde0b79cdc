"""The measurement model: twin fraction, resolution scale, mosaic, sampled resolution, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from mantid_exp2sim.errors import InputDataError
from mantid_exp2sim.simulate import get_model, plan_mosaic, simulate_plan
from mantid_exp2sim.simulate.measurement_model import PCSMO_MEASUREMENT_MODEL, MeasurementModel
from mantid_exp2sim.simulate.resolution import MeasurementResolution, get_resolution, mosaic_covariance
from mantid_exp2sim.simulate.spin_models import with_twin_fraction


@pytest.fixture(scope="module")
def small():
    return plan_mosaic(ei_list=(25.0, 70.0), q_bins=12)


def _sim(plan, model="goodenough", **kw):
    return simulate_plan(plan, model, None, **kw)


def test_defaults_and_half_twins_reproduce_todays_spectra(small):
    conv, unconv = _sim(small)
    for kw in ({}, MeasurementModel().simulate_kwargs(), {"twin_fraction": 0.5}):
        c, u = _sim(small, **kw)
        np.testing.assert_array_equal(c.signal, conv.signal)
        np.testing.assert_array_equal(u.signal, unconv.signal)


def test_twin_fraction_one_is_one_domain(small):
    m = get_model("goodenough")
    only1 = with_twin_fraction(m, 1.0)
    assert only1.twins[1].volume == 0.0 and m.twins[1].volume == 0.5  # the original is untouched
    c1, _ = _sim(small, twin_fraction=1.0)
    c0, _ = _sim(small, twin_fraction=0.0)
    half, _ = _sim(small)
    # Each domain alone; the 50:50 spectrum is their mean (intensities are linear in the volumes).
    np.testing.assert_allclose(0.5 * (c1.signal + c0.signal), half.signal, rtol=1e-10, atol=1e-14)
    assert np.nanmax(np.abs(c1.signal - c0.signal)) > 0.1 * np.nanmax(half.signal)
    # Twin 1 alone with volume 1 = twice the twin-1 block of the model's own modes.
    e, i = only1.spectrum_kinematic(only1.defaults, np.array([0.3]), np.array([-0.2]), 25.0)
    e2, i2 = m.spectrum_kinematic(m.defaults, np.array([0.3]), np.array([-0.2]), 25.0)
    n = i.shape[1] // 2
    np.testing.assert_allclose(i[:, :n], 2 * i2[:, :n])
    assert np.all(i[:, n:] == 0)


def test_resolution_scale_multiplies_covariance():
    base = get_resolution("builtin")
    wide = MeasurementResolution(base, scale=1.5)
    q, e = np.array([0.3, -0.5]), np.array([5.0, 12.0])
    np.testing.assert_allclose(wide.covariance(q, q, e, 35.0), 2.25 * base.covariance(q, q, e, 35.0))
    assert wide.intrinsic_variance == base.intrinsic_variance


def test_mosaic_covariance_known_answer():
    # Q along a at E = 0 (elastic, Q_c = k_i - sqrt(k_i^2 - Q^2)); 1 degree FWHM.
    from mantid_exp2sim.simulate.kinematics import E_TO_K2, PCSMO_LATTICE

    s = np.deg2rad(1.0) / 2.3548200450309493
    cov = mosaic_covariance(np.array(1.0), np.array(0.0), np.array(0.0), 25.0, s)
    qx = PCSMO_LATTICE.astar
    ki = np.sqrt(25.0 / E_TO_K2)
    qc = ki - np.sqrt(ki**2 - qx**2)
    # along Q: only the tilt (Q_c) term; across: tangential |Q| plus Q_c
    np.testing.assert_allclose(cov[0, 0], s**2 * qc**2 / PCSMO_LATTICE.astar**2, rtol=1e-12)
    np.testing.assert_allclose(cov[1, 1], s**2 * (qc**2 + qx**2) / PCSMO_LATTICE.bstar**2, rtol=1e-12)
    np.testing.assert_allclose(cov[0, 1], 0.0, atol=1e-20)


def test_mosaic_and_scale_only_broaden(small):
    conv, unconv = _sim(small)
    c, u = _sim(small, mosaic=2.0, resolution_scale=1.3)
    np.testing.assert_array_equal(u.signal, unconv.signal)  # widths act on the convolved one only
    ok = np.isfinite(conv.signal)
    assert np.nanmax(c.signal) < np.nanmax(conv.signal)  # broader peaks are lower
    # intensity is conserved over the whole energy range up to what leaves the windows
    assert abs(np.nansum(c.signal) / np.nansum(conv.signal) - 1) < 0.1
    assert np.all(np.isfinite(c.signal[ok]))


@pytest.mark.parametrize(
    "kw",
    [{"twin_fraction": 1.2}, {"twin_fraction": -0.1}, {"twin_fraction": float("nan")}, {"mosaic": -1.0},
     {"resolution_scale": 0.0}, {"resolution_scale": -2.0}, {"resolution_sampling": -1},
     {"resolution_sampling": 1.5}, {"resolution_sampling": 99}],
)
def test_bad_input(kw, small):
    with pytest.raises(InputDataError) as err:
        MeasurementModel(**kw)
    assert next(iter(kw)) in str(err.value)
    with pytest.raises(InputDataError):
        _sim(small, **kw)


def test_twin_fraction_needs_two_twins():
    with pytest.raises(InputDataError, match="two twin"):
        with_twin_fraction(object(), 0.3)


def test_pcsmo_default_has_processing_chain():
    kw = PCSMO_MEASUREMENT_MODEL.simulate_kwargs()
    assert set(kw) == {"twin_fraction", "resolution_scale", "mosaic", "resolution_sampling", "kf_ki", "damping"}
    assert PCSMO_MEASUREMENT_MODEL.measured_like is not None


def test_resolution_sampling_one_point_equals_linearised(small):
    # n = 1: the shared resolution moves from the covariance into the bin term, same variance.
    for kw in ({}, {"mosaic": 1.5}):
        ref, _ = _sim(small, want=(True, False), **kw)
        one, _ = _sim(small, want=(True, False), resolution_sampling=1, **kw)
        np.testing.assert_allclose(one.signal, ref.signal, rtol=1e-9, atol=1e-12)


def test_resolution_sampling_grid_keeps_intensity(small):
    ref, _ = _sim(small, want=(True, False))
    s3, _ = _sim(small, want=(True, False), resolution_sampling=3)
    ok = np.isfinite(ref.signal)
    # not exact: the intensity itself varies across the sampled Q (structure factor, kinematic L)
    assert abs(np.sum(s3.signal[ok]) / np.sum(ref.signal[ok]) - 1) < 0.05
    assert np.corrcoef(s3.signal[ok], ref.signal[ok])[0, 1] > 0.9  # coarse 1/6 r.l.u. bins: curvature shows
    assert s3.metadata["measurement"]["resolution_sampling"] == 3


def test_kf_ki_multiplies_each_mode_by_its_factor(small):
    from mantid_exp2sim.simulate.binning import ModeSet
    from mantid_exp2sim.simulate.resolution import IntrinsicResolution
    from mantid_exp2sim.simulate.spectra import _convolved_bin_means

    blk = small.blocks[0]
    e = np.array([[6.0, 12.0]])
    modes = ModeSet(e, np.array([[1.0, 2.0]]), np.zeros((1, 2, 2)))
    res = IntrinsicResolution()
    args = (res, np.array([0.2]), np.array([0.1]), modes, blk, small.bin_vectors)
    plain = _convolved_bin_means(*args)
    kf = _convolved_bin_means(*args, kf_ki=True)
    one = ModeSet(e, np.array([[1.0 * np.sqrt(1 - 6 / blk.ei), 2.0 * np.sqrt(1 - 12 / blk.ei)]]), modes.velocity)
    np.testing.assert_allclose(kf, _convolved_bin_means(res, *args[1:3], one, blk, small.bin_vectors), rtol=1e-12)
    assert np.sum(kf) < np.sum(plain)
    ref, u0 = _sim(small)
    c1, u1 = _sim(small, kf_ki=True)
    np.testing.assert_array_equal(u0.signal, u1.signal)  # the unconvolved spectrum is S(Q, w)
    assert np.nanmax(c1.signal / ref.signal) <= 1.0
