"""Sub-bin Q sampling of the convolved spectra (``q_subsamples``)."""

import numpy as np
import pytest

from mantid_exp2sim.simulate import (
    simulate_e_slice_pair,
    simulate_mosaic,
    simulate_mosaic_pair,
    simulate_qe_slice_pair,
    simulate_volume,
    simulate_volume_pair,
)
from mantid_exp2sim.simulate.binning import ModeEvaluator, bin_modes, mode_variance, subsample_offsets
from mantid_exp2sim.simulate.representations import plan_volume
from mantid_exp2sim.simulate.spectra import MAX_Q_SUBSAMPLES
from resolution_doubles import WIDE


class LinearModel:
    """One mode ``w = 30 + 12 qh - 8 qk`` meV of intensity 1 (a linear dispersion)."""

    name = "linear"
    parameter_names = ("w0",)
    defaults = {"w0": 30.0}
    ranges = {"w0": (10.0, 40.0)}

    def validate(self, params):
        v = float(params["w0"] if isinstance(params, dict) else np.ravel(params)[0])
        return np.array([v])

    def sample(self, rng):
        return np.array([10.0 + 30.0 * rng.random()])

    def spectrum_kinematic(self, params, qh, qk, ei):
        (w0,) = self.validate(params)
        qh = np.asarray(qh, float)
        qk = np.asarray(qk, float)
        return (w0 + 12.0 * qh - 8.0 * qk)[:, None], np.ones((qh.size, 1))


def _sub_grid(axis, n):
    """Sub-bin centres of every bin of ``axis``: shape (bins, n)."""
    c = axis.centres()
    return c[:, None] + ((np.arange(n) + 0.5) / n - 0.5)[None, :] * axis.width


# ----------------------------------------------------------------------------- offsets
def test_subsample_offsets_are_sub_bin_centres():
    off, res = subsample_offsets(np.array([[0.3, 0.0], [0.0, 0.2]]), 3)
    assert off.shape == (9, 2)
    np.testing.assert_allclose(np.unique(off[:, 0]), [-0.1, 0.0, 0.1], atol=1e-15)
    np.testing.assert_allclose(np.unique(off[:, 1]), [-0.2 / 3, 0.0, 0.2 / 3], atol=1e-15)
    np.testing.assert_allclose(off.mean(axis=0), 0.0, atol=1e-15)
    np.testing.assert_allclose(res, [[0.1, 0.0], [0.0, 0.2 / 3]])
    one, res1 = subsample_offsets(np.array([[0.3, 0.0], [0.0, 0.2]]), 1)
    np.testing.assert_array_equal(one, [[0.0, 0.0]])
    np.testing.assert_array_equal(res1, [[0.3, 0.0], [0.0, 0.2]])
    # A Q-E slice of zero thickness: no subdivision across the (zero) normal.
    line, _ = subsample_offsets(np.array([[0.04, 0.02], [0.0, 0.0]]), 4)
    assert line.shape == (4, 2)
    np.testing.assert_allclose(line[:, 1], 0.5 * line[:, 0])


# ----------------------------------------------------------------------------- n = 1
def test_one_subsample_is_the_centre_formula_exactly(analytic_model):
    """q_subsamples=1 is the bin-centre evaluation with the full bin-width variance term."""
    params = {"J": 2.0, "gap": 4.0}
    kw = dict(ei=50.0, bins=(5, 4, 30), energy_range=(2.0, 30.0), resolution=WIDE, mask="none")
    conv, unconv = simulate_volume_pair(analytic_model, params, q_subsamples=1, **kw)
    default, default_u = simulate_volume_pair(analytic_model, params, **kw)
    plan = plan_volume(ei=50.0, bins=(5, 4, 30), energy_range=(2.0, 30.0), mask="none")
    modes = ModeEvaluator(analytic_model, params, plan.qh, plan.qk).at(50.0)
    cov = WIDE.covariance(plan.qh[:, None], plan.qk[:, None], modes.energies, 50.0)
    var = mode_variance(cov, modes.velocity, intrinsic_variance=WIDE.intrinsic_variance, bin_vectors=plan.bin_vectors)
    expected = bin_modes(modes.energies, modes.intensities, var, plan.blocks[0].edges).reshape(5, 4, 30)
    np.testing.assert_array_equal(conv.signal, expected)
    np.testing.assert_array_equal(default.signal, conv.signal)
    np.testing.assert_array_equal(default_u.signal, unconv.signal)
    assert conv.metadata["q_subsamples"] == 1


# ----------------------------------------------------------------------------- conservation
@pytest.mark.parametrize("n", [2, 3])
def test_subsampled_volume_conserves_the_mean_intensity_over_the_bin(analytic_model, n):
    params = {"J": 2.0, "gap": 6.0}  # modes between 6 and 18 meV, well inside 0..45
    bins = (6, 5, 90)
    conv, unconv = simulate_volume_pair(analytic_model, params, ei=50.0, bins=bins, energy_range=(0.0, 45.0),
                                        resolution=WIDE, mask="none", q_subsamples=n)
    de = 45.0 / bins[2]
    hs = _sub_grid(conv.axes[0], n)  # (6, n)
    ks = _sub_grid(conv.axes[1], n)  # (5, n)
    QH = np.broadcast_to(hs[:, None, :, None], (6, 5, n, n)).ravel()
    QK = np.broadcast_to(ks[None, :, None, :], (6, 5, n, n)).ravel()
    _, inten = analytic_model.spectrum_kinematic(params, QH, QK, 50.0)
    total = inten.sum(axis=1).reshape(6, 5, n * n).mean(axis=2)
    np.testing.assert_allclose(conv.signal.sum(axis=2) * de, total, rtol=1e-3)
    # The unconvolved spectrum stays the bin-centre model (intensity at the centres).
    qh = np.repeat(conv.axes[0].centres(), bins[1])
    qk = np.tile(conv.axes[1].centres(), bins[0])
    _, centre = analytic_model.spectrum_kinematic(params, qh, qk, 50.0)
    np.testing.assert_allclose(unconv.signal.sum(axis=2) * de, centre.sum(axis=1).reshape(6, 5), rtol=1e-3)
    assert conv.metadata["q_subsamples"] == n and unconv.metadata["q_subsamples"] == n


def test_point_feature_is_diluted_over_the_sub_points(mosaic_spot_model):
    """A feature seen by one of the 3x3 sub-points keeps 1/9 of its one-point weight."""
    kw = dict(resolution="unconvolved", mask="none")
    one = simulate_mosaic(mosaic_spot_model, None, **kw)
    three, unconv = simulate_mosaic_pair(mosaic_spot_model, None, q_subsamples=3, **kw)
    assert np.nansum(one.signal) > 0
    np.testing.assert_allclose(np.nansum(three.signal), np.nansum(one.signal) / 9, rtol=1e-9)
    np.testing.assert_array_equal(np.flatnonzero(three.signal > 0), np.flatnonzero(one.signal > 0))
    np.testing.assert_allclose(np.nansum(unconv.signal), np.nansum(one.signal), rtol=1e-9)


def test_linear_dispersion_keeps_the_total_energy_variance():
    """Explicit sub-point spread + residual sub-bin term = the one-point bin-width term."""
    model = LinearModel()
    kw = dict(ei=80.0, bins=(4, 4, 1200), q_range=(-1.0, 1.0), energy_range=(0.0, 60.0),
              resolution="unconvolved", mask="none")
    e = np.linspace(0.0, 60.0, 1201)
    e = 0.5 * (e[:-1] + e[1:])
    moments = {}
    for n in (1, 3, 4):
        conv = simulate_volume(model, None, q_subsamples=n, **kw).signal
        w = conv / conv.sum(axis=2, keepdims=True)
        mean = (w * e).sum(axis=2)
        moments[n] = (mean, (w * (e - mean[..., None]) ** 2).sum(axis=2))
    centres = np.linspace(-0.75, 0.75, 4)
    np.testing.assert_allclose(moments[1][0], 30 + 12 * centres[:, None] - 8 * centres[None, :], atol=1e-3)
    # One-point bin term (12^2 + 8^2) * 0.5^2 / 12 = 4.33 meV^2 (plus the intrinsic width).
    assert np.all(moments[1][1] > 4.33) and np.all(moments[1][1] < 4.4)
    for n in (3, 4):
        np.testing.assert_allclose(moments[n][0], moments[1][0], atol=1e-3)
        # Dropping the residual term would lower the variance by 4.33 / n^2 (>= 6%).
        np.testing.assert_allclose(moments[n][1], moments[1][1], rtol=5e-3)


# ----------------------------------------------------------------------------- convergence
def test_subsampling_converges(analytic_model):
    params = {"J": 3.0, "gap": 4.0}
    kw = dict(ei=60.0, bins=(6, 6, 60), energy_range=(2.0, 32.0), resolution=WIDE, mask="none")
    sig = {n: simulate_volume(analytic_model, params, q_subsamples=n, **kw).signal for n in (1, 3, 5)}
    d13 = np.linalg.norm(sig[1] - sig[3])
    d35 = np.linalg.norm(sig[3] - sig[5])
    assert d13 > 1e-3 * np.linalg.norm(sig[1])  # curvature across the coarse bins matters
    assert d35 < 0.5 * d13


def test_slices_and_mosaic_accept_subsamples(analytic_model):
    params = {"J": 2.0, "gap": 4.0}
    c1, u1 = simulate_e_slice_pair(analytic_model, params, ei=50.0, bins=(8, 8), resolution=WIDE, mask="none")
    c3, u3 = simulate_e_slice_pair(analytic_model, params, ei=50.0, bins=(8, 8), resolution=WIDE, mask="none",
                                   q_subsamples=3)
    assert c3.signal.shape == (8, 8) and np.isfinite(c3.signal).all()
    assert not np.array_equal(c1.signal, c3.signal)
    np.testing.assert_array_equal(u1.signal, u3.signal)
    for thickness in (0.0, 0.1):
        q1, _ = simulate_qe_slice_pair(analytic_model, params, ei=50.0, bins=(10, 20), thickness=thickness,
                                       resolution=WIDE, mask="none")
        q2, _ = simulate_qe_slice_pair(analytic_model, params, ei=50.0, bins=(10, 20), thickness=thickness,
                                       resolution=WIDE, mask="none", q_subsamples=2)
        assert q2.signal.shape == (10, 20) and np.isfinite(q2.signal).all()
        assert not np.array_equal(q1.signal, q2.signal)
    m1 = simulate_mosaic(analytic_model, params, resolution=WIDE, q_subsamples=2)
    mp, _ = simulate_mosaic_pair(analytic_model, params, resolution=WIDE, q_subsamples=2)
    np.testing.assert_array_equal(m1.signal, mp.signal)
    np.testing.assert_array_equal(np.isnan(m1.signal), np.isnan(simulate_mosaic(analytic_model, params).signal))


# ----------------------------------------------------------------------------- bad values
@pytest.mark.parametrize("bad", [0, -2, 2.5, 3.0, "3", None, True, MAX_Q_SUBSAMPLES + 1])
def test_bad_subsamples_raise_value_error_naming_the_argument(analytic_model, bad):
    with pytest.raises(ValueError, match="q_subsamples") as info:
        simulate_volume_pair(analytic_model, None, bins=(4, 4, 4), mask="none", q_subsamples=bad)
    assert repr(bad) in str(info.value)
    with pytest.raises(ValueError, match="q_subsamples"):
        simulate_e_slice_pair(analytic_model, None, bins=(4, 4), mask="none", q_subsamples=bad)
