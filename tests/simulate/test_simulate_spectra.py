"""Spectra: resolution binning, intensity conservation, representations' axes and layout."""

import numpy as np
import pytest
from scipy.special import ndtr

from mantid_exp2sim.histogram import MDHisto
from mantid_exp2sim.mosaic import EI_LIST, LAYOUT, WINDOW_FRACTIONS
from mantid_exp2sim.simulate import (
    IntrinsicResolution,
    simulate_e_slice_pair,
    simulate_mosaic,
    simulate_mosaic_pair,
    simulate_qe_slice_pair,
    simulate_volume,
    simulate_volume_pair,
)
from mantid_exp2sim.simulate.binning import ModeEvaluator, bin_modes, evaluate_modes, mode_variance
from mantid_exp2sim.mosaic import mosaic_tiles, tiles_to_mosaic
from mantid_exp2sim.simulate.representations import qe_line
from resolution_doubles import WIDE


# ----------------------------------------------------------------------------- binning
def test_bin_modes_is_the_cdf_difference_and_conserves_intensity():
    rng = np.random.default_rng(0)
    e = rng.uniform(10, 30, (50, 4))
    i = rng.uniform(0, 2, (50, 4))
    var = rng.uniform(0.01, 3.0, (50, 4))
    edges = np.linspace(0, 40, 33)
    out = bin_modes(e, i, var, edges)
    w = np.diff(edges)
    np.testing.assert_allclose((out * w).sum(axis=1), i.sum(axis=1), rtol=1e-9)
    # One element by hand.
    s = np.sqrt(var[7, 2])
    by_hand = sum(
        i[7, m] * (ndtr((edges[12] - e[7, m]) / np.sqrt(var[7, m])) - ndtr((edges[11] - e[7, m]) / np.sqrt(var[7, m])))
        for m in range(4)
    ) / w[11]
    assert s > 0 and out[7, 11] == pytest.approx(by_hand, rel=1e-12)


def test_mode_variance_formula():
    cov = np.array([[4e-4, 1e-5, 0.004], [1e-5, 3e-4, -0.003], [0.004, -0.003, 1.5]])
    v = np.array([30.0, -20.0])
    var = mode_variance(cov[None, None], v[None, None], intrinsic_variance=0.002,
                        bin_vectors=np.array([[0.05, 0.0], [0.0, 0.05]]))
    s_qq = cov[:2, :2]
    expected = (1.5 - 2 * v @ cov[:2, 2] + v @ s_qq @ v + (30 * 0.05) ** 2 / 12 + (20 * 0.05) ** 2 / 12 + 0.002)
    assert var[0, 0] == pytest.approx(expected, rel=1e-12)
    # No instrument: intrinsic only (a scalar).
    assert mode_variance(None, None, intrinsic_variance=0.002) == 0.002


def test_finite_difference_velocities_match_the_analytic_dispersion(analytic_model):
    qh = np.array([0.1, -0.35, 0.6])
    qk = np.array([0.2, 0.45, -0.8])
    modes = evaluate_modes(analytic_model, analytic_model.defaults, qh, qk, 70.0)
    J = 2.0
    np.testing.assert_allclose(modes.velocity[:, 0, 0], 2 * J * np.pi * np.sin(np.pi * qh), rtol=1e-5)
    np.testing.assert_allclose(modes.velocity[:, 0, 1], J * np.pi * np.sin(np.pi * qk), rtol=1e-5)
    np.testing.assert_allclose(modes.velocity[:, 1, 0], J * np.pi * np.sin(np.pi * qh), rtol=1e-5)
    np.testing.assert_allclose(modes.velocity[:, 1, 1], 2 * J * np.pi * np.sin(np.pi * qk), rtol=1e-5)


def test_evaluator_uses_a_models_diagonalisation_when_offered(analytic_model):
    class Modes:
        def __init__(self, e):
            self.energies = e
            self.calls = 0

        def intensities_kinematic(self, ei):
            self.calls += 1
            return np.full(self.energies.shape, ei)

        def velocities_rlu(self):
            return np.ones(self.energies.shape + (2,))

    class WithModes(type(analytic_model)):
        def modes(self, params, qh, qk, l=0.0):
            self.made = Modes(self.energies(params, qh, qk))
            return self.made

    m = WithModes()
    ev = ModeEvaluator(m, m.defaults, np.array([0.1, 0.2]), np.array([0.0, 0.3]))
    assert ev.analytic
    a = ev.at(25.0)
    b = ev.at(70.0, np.array([1]))
    assert np.all(a.intensities == 25.0) and np.all(b.intensities == 70.0) and b.energies.shape == (1, 2)
    assert np.all(b.velocity == 1.0) and m.made.calls == 2
    assert not ModeEvaluator(analytic_model, analytic_model.defaults, np.zeros(2), np.zeros(2)).analytic


# ----------------------------------------------------------------------------- conservation
@pytest.mark.parametrize("resolution", [WIDE, "unconvolved"])
def test_volume_conserves_integrated_intensity(analytic_model, resolution):
    params = {"J": 2.0, "gap": 6.0}  # modes between 6 and 18 meV, well inside 0..45
    bins = (6, 5, 90)
    conv, unconv = simulate_volume_pair(analytic_model, params, ei=50.0, bins=bins, energy_range=(0.0, 45.0),
                                        resolution=resolution, mask="none")
    de = 45.0 / bins[2]
    qh = np.repeat(conv.axes[0].centres(), bins[1])
    qk = np.tile(conv.axes[1].centres(), bins[0])
    _, inten = analytic_model.spectrum_kinematic(params, qh, qk, 50.0)
    total = inten.sum(axis=1).reshape(bins[:2])
    assert np.all(total > 0.3)
    np.testing.assert_allclose(conv.signal.sum(axis=2) * de, total, rtol=1e-3)
    np.testing.assert_allclose(unconv.signal.sum(axis=2) * de, total, rtol=1e-3)
    assert not np.isnan(conv.signal).any()


def test_convolution_broadens_and_unconvolved_is_sharp(analytic_model):
    conv, unconv = simulate_volume_pair(analytic_model, {"J": 2.0, "gap": 6.0}, ei=50.0, bins=(4, 4, 200),
                                        energy_range=(0.0, 40.0), resolution=WIDE, mask="none")
    c = conv.signal[1, 2]
    u = unconv.signal[1, 2]
    # The intrinsic width (0.1 meV FWHM) puts each mode in one or two 0.2 meV bins.
    assert (u > 1e-6 * u.max()).sum() <= 4
    assert (c > 0.01 * c.max()).sum() > 10


# ----------------------------------------------------------------------------- mosaic
def test_mosaic_axes_metadata_and_point_feature_layout(mosaic_spot_model):
    conv, unconv = simulate_mosaic_pair(mosaic_spot_model, None, resolution="unconvolved", mask="none")
    for h in (conv, unconv):
        assert isinstance(h, MDHisto) and h.shape == (240, 400)
        assert [a.name for a in h.axes] == ["MosaicRow", "MosaicColumn"]
        assert [(a.minimum, a.maximum, a.bins, a.unit) for a in h.axes] == [(0, 240, 240, ""), (0, 400, 400, "")]
        assert h.metadata["layout"] == LAYOUT
        assert h.metadata["ei_list"] == list(EI_LIST)
        np.testing.assert_allclose(h.metadata["window_fractions"], WINDOW_FRACTIONS)
        # the measurement's Horace cut [-1, 2/39, 1]: bin centres -1 ... +1
        np.testing.assert_allclose(h.metadata["q_range"], [-1 - 1 / 39, 1 + 1 / 39])
        assert h.metadata["model"] == "spot" and h.metadata["parameters"] == {"J": 2.0, "gap": 3.0}
    assert conv.metadata["kind"] == "convolved" and unconv.metadata["kind"] == "unconvolved"
    # The spot (Qh, Qk) = (-1 + 60/39, -1 + 28/39) is bin (ih, ik) = (30, 14); rows run Qh from +1 down,
    # so its row in block b is 40 b + 39 - 30. Its energy 15.5 meV lands in window
    # j = floor((15.5/Ei - 0.10)/0.06) (0.1 meV FWHM: tails reach neighbouring windows).
    sig = unconv.signal
    s = 0.1 / (2 * np.sqrt(2 * np.log(2)))
    for b, ei in enumerate(EI_LIST):
        expected = np.zeros((40, 400))
        for j, (lo, hi) in enumerate(WINDOW_FRACTIONS):
            w = (hi - lo) * ei
            expected[9, 40 * j + 14] = (ndtr((hi * ei - 15.5) / s) - ndtr((lo * ei - 15.5) / s)) / w
        np.testing.assert_allclose(sig[40 * b:40 * (b + 1)], expected, rtol=1e-9, atol=1e-14)
        j = int((15.5 / ei - 0.10) // 0.06)
        if 0 <= j < 10:
            assert np.argmax(sig[40 * b:40 * (b + 1)]) == 9 * 400 + 40 * j + 14


def test_tiles_roundtrip_and_orientation():
    tiles = np.random.default_rng(0).random((6, 40, 40, 10))
    mosaic = tiles_to_mosaic(tiles)
    np.testing.assert_array_equal(mosaic_tiles(mosaic), tiles)
    # tile [b=2, ih=0 (Qh=-0.975), ik=5, j=3] sits at the bottom row of its block.
    assert mosaic[2 * 40 + 39, 3 * 40 + 5] == tiles[2, 0, 5, 3]


def test_single_mosaic_equals_the_pair(analytic_model):
    conv, unconv = simulate_mosaic_pair(analytic_model, None, resolution=WIDE)
    single = simulate_mosaic(analytic_model, None, resolution=WIDE, convolved=False)
    np.testing.assert_array_equal(single.signal, unconv.signal)
    c_single = simulate_mosaic(analytic_model, None, resolution=WIDE)
    np.testing.assert_array_equal(c_single.signal, conv.signal)
    assert not np.array_equal(np.nan_to_num(conv.signal), np.nan_to_num(unconv.signal))


# ----------------------------------------------------------------------------- volumes, slices
def test_volume_axes_and_orientation(spot_model):
    conv, unconv = simulate_volume_pair(spot_model, None, ei=50.0, bins=(40, 40, 30), resolution="unconvolved",
                                        mask="none")
    ax = unconv.axes
    assert [a.name for a in ax] == ["[H,0,0]", "[0,K,0]", "DeltaE"]
    assert [a.unit for a in ax] == ["r.l.u.", "r.l.u.", "meV"]
    assert [a.frame for a in ax] == ["HKL", "HKL", "General Frame"]
    assert (ax[2].minimum, ax[2].maximum) == pytest.approx((5.0, 35.0))
    assert unconv.shape == (40, 40, 30) and unconv.metadata["ei"] == 50.0
    ih, ik, ie = np.unravel_index(np.argmax(unconv.signal), unconv.shape)
    assert (ih, ik, ie) == (30, 14, 10)  # E bin [15, 16] holds 15.5 meV


def test_volume_default_bins_and_energy_range(analytic_model):
    h = simulate_volume(analytic_model, None, bins=8, resolution="unconvolved", convolved=False)
    assert h.shape == (8, 8, 8)
    assert (h.axes[2].minimum, h.axes[2].maximum) == pytest.approx((7.0, 49.0))


def test_e_slice_axes_and_window(spot_model):
    conv, unconv = simulate_e_slice_pair(spot_model, None, ei=50.0, energy_window=(15.0, 16.0),
                                         resolution="unconvolved", mask="none")
    assert unconv.shape == (40, 40)
    assert [a.name for a in unconv.axes] == ["[H,0,0]", "[0,K,0]"]
    assert unconv.metadata["energy_window"] == [15.0, 16.0]
    assert np.unravel_index(np.argmax(unconv.signal), unconv.shape) == (30, 14)
    assert unconv.signal.max() == pytest.approx(1.0)


@pytest.mark.parametrize(
    "start, end, name, lo, hi",
    [((-1, 0), (1, 0), "[H,0,0]", -1, 1), ((0, 0), (1, 1), "[H,H,0]", 0, 1),
     ((-1, 0.5), (1, 0.5), "[H,0.5,0]", -1, 1), ((0.5, 1), (0, -1), "[0.25+0.25K,K,0]", -1, 1),
     ((1, -1), (-1, 1), "[H,-H,0]", -1, 1)],
)
def test_qe_line_axis_names(start, end, name, lo, hi):
    axis, qh, qk, step, normal = qe_line(start, end, 20)
    assert axis.name == name and (axis.minimum, axis.maximum) == (lo, hi) and axis.unit == "r.l.u."
    # Every bin centre lies on the line.
    d = np.subtract(end, start)
    cross = (qh - start[0]) * d[1] - (qk - start[1]) * d[0]
    np.testing.assert_allclose(cross, 0, atol=1e-12)
    assert abs(normal @ d) < 1e-12


def test_qe_slice_pair(analytic_model):
    conv, unconv = simulate_qe_slice_pair(analytic_model, None, ei=50.0, start=(0, 0), end=(1, 1), bins=(30, 40),
                                          resolution=WIDE)
    assert conv.shape == (30, 40)
    assert [a.name for a in conv.axes] == ["[H,H,0]", "DeltaE"]
    assert conv.metadata["line_start"] == [0.0, 0.0] and conv.metadata["line_end"] == [1.0, 1.0]
    assert np.nanmax(conv.signal) > 0


# ----------------------------------------------------------------------------- noise
def test_noise_and_background_are_seeded_and_only_on_the_convolved(analytic_model):
    kw = dict(ei=50.0, bins=(6, 6, 10), resolution=WIDE, mask="none")
    clean, _ = simulate_volume_pair(analytic_model, None, **kw)
    a, ua = simulate_volume_pair(analytic_model, None, noise=50.0, background=0.2,
                                 rng=np.random.default_rng(5), **kw)
    b, _ = simulate_volume_pair(analytic_model, None, noise=50.0, background=0.2,
                                rng=np.random.default_rng(5), **kw)
    np.testing.assert_array_equal(a.signal, b.signal)
    assert a.errors is not None and np.all(a.errors >= 0)
    assert ua.errors is None
    assert not np.array_equal(a.signal, clean.signal)
    # Values are whole counts times a fixed scale; the mean grows by the background.
    scale = np.mean(np.abs(clean.signal)) / 50.0
    counts = a.signal / scale
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-6)
    assert a.signal.mean() > clean.signal.mean()
    assert a.metadata["noise"] == {"flux": 50.0}


# ----------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_value_errors(analytic_model):
    with pytest.raises(ValueError, match="out of range"):
        simulate_volume_pair(analytic_model, {"J": 9.0, "gap": 3.0}, bins=4)
    with pytest.raises(ValueError, match=r"window fractions \[0.9, 1.1\].*need 0 <= low < high < 1"):
        simulate_mosaic_pair(analytic_model, window_fractions=[(0.9, 1.1)])
    with pytest.raises(ValueError, match=r"energy_range = 10..80 meV with Ei = 70 meV"):
        simulate_volume_pair(analytic_model, energy_range=(10, 80), bins=4)
    with pytest.raises(ValueError, match=r"energy_window = 30..40 meV with Ei = 35 meV"):
        simulate_e_slice_pair(analytic_model, ei=35.0, energy_window=(30, 40))
    for bins in (0, (4, 4), (4, 4, -1), (4, 4, 2.5), "x", (4, 4, 10**6)):
        with pytest.raises(ValueError, match="bins is invalid"):
            simulate_volume_pair(analytic_model, bins=bins)
    with pytest.raises(ValueError, match="ei is invalid"):
        simulate_volume_pair(analytic_model, ei=-5.0, bins=4)
    with pytest.raises(ValueError, match="model is not a spin model"):
        simulate_volume_pair(object(), bins=4)
    with pytest.raises(ValueError):
        simulate_volume_pair("no-such-model", bins=4)
    with pytest.raises(ValueError, match="cannot be imported"):
        simulate_volume_pair("no_such_module_xyz:Model", bins=4)
    with pytest.raises(ValueError, match="Parameters do not match"):
        simulate_volume_pair(analytic_model, [1.0, 2.0, 3.0], bins=4)
    with pytest.raises(ValueError, match="Unknown mask"):
        simulate_volume_pair(analytic_model, bins=4, mask="circle")


def test_intrinsic_resolution_convolved_equals_unconvolved_without_dispersion(spot_model):
    conv, unconv = simulate_volume_pair(spot_model, None, ei=50.0, bins=(40, 40, 30),
                                        resolution=IntrinsicResolution(), mask="none")
    np.testing.assert_allclose(conv.signal, unconv.signal, rtol=1e-12)


@pytest.mark.shared
@pytest.mark.slow
def test_published_mosaic_matches_the_reference_layout(pcsmo_dir):
    pytest.importorskip("mantid_exp2sim.simulate.spin_models")
    conv, _ = simulate_mosaic_pair("goodenough", None, resolution=f"tables:{pcsmo_dir}",
                                   mask=str(pcsmo_dir / "nanmask.mat"))
    ref = np.load(pcsmo_dir / "simulated_fitpars_goodenough.npy").reshape(240, 400)
    ok = np.isfinite(conv.signal)
    assert np.all(ref[~ok] == 0)
    r = np.corrcoef(conv.signal[ok], ref[ok])[0, 1]
    assert r > 0.6
    # The faithful spectrum is nearly symmetric under Qh <-> Qk and Qh -> -Qh (two equal a/b
    # twins), so the tile orientation is tested with SpotModel; here the Ei blocks and the
    # energy windows must be in the right order.
    tiles = mosaic_tiles(conv.signal)
    for wrong in (tiles[::-1], tiles[..., ::-1]):
        w = tiles_to_mosaic(wrong)
        ok_w = ok & np.isfinite(w)
        assert np.corrcoef(w[ok_w], ref[ok_w])[0, 1] < r - 0.1


def test_lswt_velocities_agree_with_finite_differences():
    spin_models = pytest.importorskip("mantid_exp2sim.simulate.spin_models")
    m = spin_models.get_model("goodenough")
    p = m.validate(m.defaults)
    rng = np.random.default_rng(3)
    qh, qk = rng.uniform(-1, 1, 6), rng.uniform(-1, 1, 6)
    ev = ModeEvaluator(m, p, qh, qk)
    assert ev.analytic
    a = ev.at(70.0)
    b = evaluate_modes(m, p, qh, qk, 70.0, step=1e-4)
    np.testing.assert_allclose(a.energies, b.energies)
    np.testing.assert_allclose(a.intensities, b.intensities)
    # Compare modes separated from their neighbours (within a twin block) by > 0.05 meV.
    e = a.energies
    half = e.shape[1] // 2
    ok = np.zeros(e.shape, dtype=bool)
    for blk in (slice(0, half), slice(half, None)):
        eb = e[:, blk]
        d = np.diff(eb, axis=1)
        inf = np.full((e.shape[0], 1), np.inf)
        ok[:, blk] = (np.minimum(np.hstack([inf, d]), np.hstack([d, inf])) > 0.05) & (eb > 0.5)
    assert ok.sum() >= 10
    np.testing.assert_allclose(a.velocity[ok], b.velocity[ok], atol=1e-3)
