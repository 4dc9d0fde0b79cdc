"""Measured-like spectra: the processing chain, its statistics, the calibration, bad input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from mantid_exp2sim.errors import InputDataError
from mantid_exp2sim.histogram import MDHisto
from mantid_exp2sim.mosaic import mosaic_axes
from mantid_exp2sim.simulate.measured_like import (
    CALIBRATION_TARGETS,
    PCSMO_MEASURED_LIKE,
    MeasuredLike,
    calibrate_measured_like,
    neighbour_residuals,
    spectrum_statistics,
)

SHARED = Path(os.environ.get("EXP2SIM_SHARED", Path(__file__).resolve().parents[3] / "shared"))


def chain(**kw) -> MeasuredLike:
    base = dict(scale=1.0, count_level=2.0, background=1.5, mask=None)
    base.update(kw)
    return MeasuredLike(**base)


@pytest.mark.parametrize("kw, match", [
    ({"count_level": 0.0}, "count_level is invalid"),
    ({"count_level": -1.0}, "count_level is invalid"),
    ({"scale": float("nan")}, "scale is invalid"),
    ({"background": -0.1}, "background is invalid"),
    ({"residual_background": -1.0}, "residual_background is invalid"),
    ({"count_level": [1.0, 2.0]}, "wrong number of values"),
    ({"background_ratio": 0.0}, "background_ratio is invalid"),
    ({"clip_max": -5.0}, "clip_max is invalid"),
    ({"mask": "sometimes"}, "mask is invalid"),
])
def test_bad_parameters(kw, match):
    with pytest.raises(InputDataError, match=match):
        chain(**kw)


def test_wrong_mosaic_shape():
    with pytest.raises(InputDataError, match="not a mosaic"):
        chain().apply(np.ones((100, 400)), np.random.default_rng(0))


def test_clipping_statistics_of_a_known_poisson_level():
    from scipy.stats import skellam

    mu, c, b = 1.2, 2.0, 1.5
    y = chain(count_level=c, background=b).apply(np.full((240, 400), mu), np.random.default_rng(1))
    # y = (N - M) / c with N ~ Poisson(c (mu + b)), M ~ Poisson(c b): a Skellam difference
    lam1, lam2 = c * (mu + b), c * b
    p_zero = skellam.cdf(0, lam1, lam2)
    k = np.arange(1, 80)
    mean = np.sum(k / c * skellam.pmf(k, lam1, lam2))
    assert np.mean(y == 0) == pytest.approx(p_zero, abs=0.006)
    assert np.mean(y) == pytest.approx(mean, rel=0.01)
    assert y.min() == 0.0
    # the expectation before clipping is the scaled signal: without background nothing is negative
    y0 = chain(count_level=c, background=0.0).apply(np.full((240, 400), mu), np.random.default_rng(2))
    assert np.mean(y0) == pytest.approx(mu, rel=0.01)


def test_scale_residual_background_and_top_clip():
    clean = np.zeros((240, 400))
    clean[:40] = 10.0
    ml = chain(scale=[2.0, 1, 1, 1, 1, 1], count_level=50.0, background=0.0, residual_background=[0, 3, 0, 0, 0, 0])
    np.testing.assert_allclose(ml.expected(clean)[:40], 20.0)
    y = ml.apply(clean, np.random.default_rng(3))
    assert np.mean(y[:40]) == pytest.approx(20.0, rel=0.01)
    assert np.mean(y[40:80]) == pytest.approx(3.0, rel=0.02)
    assert np.all(y[80:] == 0.0)
    top = chain(count_level=10.0, background=0.0).apply(np.full((240, 400), 500.0), np.random.default_rng(0))
    assert np.all(top == 120.0)


def test_mask_kinematic_when_measured_file_absent(tmp_path):
    from mantid_exp2sim.simulate import plan_mosaic

    ml = chain(mask="measured", shared=tmp_path)
    mask, source = ml.mask_array((240, 400))
    assert source == "kinematic"
    np.testing.assert_array_equal(mask, plan_mosaic(mask="kinematic").mask)
    clean = np.ones((240, 400))
    clean[5, 5] = np.nan
    y = ml.apply(clean, np.random.default_rng(0))
    assert np.array_equal(np.isnan(y), mask | np.isnan(clean))


@pytest.mark.shared
@pytest.mark.skipif(not (SHARED / "data" / "pcsmo" / "nanmask.mat").is_file(), reason="nanmask.mat not available")
def test_measured_mask_is_the_flipped_nanmask():
    from mantid_exp2sim.simulate import load_mask

    mask, source = chain(mask="measured", shared=SHARED).mask_array((240, 400))
    assert source.startswith("measured:")
    np.testing.assert_array_equal(mask, load_mask(SHARED / "data" / "pcsmo" / "nanmask.mat", (240, 400)))
    assert mask.mean() == pytest.approx(19311 / 96000)


def test_mdhisto_in_mdhisto_out():
    h = MDHisto(np.ones((240, 400)), mosaic_axes((240, 400)), metadata={"model": "x"})
    out = chain().apply(h, np.random.default_rng(0))
    assert isinstance(out, MDHisto) and out.errors is None
    assert out.metadata["model"] == "x" and out.metadata["measured_like"]["count_level"][0] == 2.0
    assert out.metadata["mask"] == "none"


def test_neighbour_statistics_of_white_noise():
    rng = np.random.default_rng(0)
    img = 5.0 + 2.0 * rng.standard_normal((60, 40, 40))
    r, level, four = neighbour_residuals(img)
    assert four.sum() == 60 * 38 * 38
    assert np.var(r[four]) / 1.25 == pytest.approx(4.0, rel=0.02)
    assert np.nanmean(level) == pytest.approx(5.0, rel=0.01)
    mosaic = np.full((240, 400), np.nan)
    mosaic[:40] = 5.0 + 2.0 * rng.standard_normal((40, 400))
    st = spectrum_statistics(mosaic)
    assert st[0]["noise_variance"] == pytest.approx(4.0 * 0.93, rel=0.05)  # 1 % trimmed: ~7 % below
    assert st[1]["n_bins"] == 0 and np.isnan(st[1]["mean"])


def test_calibration_recovers_a_synthetic_measurement():
    x = np.linspace(-1, 1, 40)
    tile = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / 0.5)
    clean = np.full((240, 400), np.nan)
    clean[:40, :80] = np.tile(tile, (1, 2)) * 0.01  # two tiles keep it quick (about 10 s)
    truth = MeasuredLike(scale=300.0, count_level=1.5, background=1.0, mask=None)
    measured = truth.apply(clean, np.random.default_rng(5))
    cal = calibrate_measured_like(measured, clean, residual_fractions=(0.0,), max_iterations=80)
    assert cal["blocks"] == [0]
    sim, meas = cal["simulated"][0], cal["measured"][0]
    assert sim["mean"] == pytest.approx(meas["mean"], rel=0.03)
    assert sim["zero_fraction"] == pytest.approx(meas["zero_fraction"], abs=0.02)
    assert sim["noise_variance"] == pytest.approx(meas["noise_variance"], rel=0.1)
    assert cal["scale"][0] == pytest.approx(300.0, rel=0.1)
    assert cal["count_level"][0] == pytest.approx(1.5, rel=0.35)


def test_defaults_are_calibrated_values():
    d = PCSMO_MEASURED_LIKE.describe()
    assert len(d["scale"]) == 6 and all(v > 0 for v in d["scale"] + d["count_level"])
    assert all(v >= 0 for v in d["background"] + d["residual_background"])
    assert set(CALIBRATION_TARGETS) == {25.0, 35.0, 50.0}


@pytest.mark.shared
@pytest.mark.skipif(not (SHARED / "data" / "pcsmo-measured" / "measured_ei25_35_50.npy").is_file(),
                    reason="released measurement not available")
def test_calibration_targets_are_the_released_statistics():
    st = spectrum_statistics(np.load(SHARED / "data" / "pcsmo-measured" / "measured_ei25_35_50.npy"))
    for b, ei in enumerate((25.0, 35.0, 50.0)):
        for key in ("mean", "zero_fraction", "noise_variance"):
            assert st[b][key] == pytest.approx(CALIBRATION_TARGETS[ei][key], rel=1e-3)
