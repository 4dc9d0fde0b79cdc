"""Validation metrics of exp2sim-train: masked PSNR/SSIM, Frechet distance, intensity ratio."""

import numpy as np
import pytest

from mantid_exp2sim.errors import InputDataError
from mantid_exp2sim.train.metrics import (
    frechet_distance,
    intensity_ratio,
    masked_psnr,
    masked_ssim,
    summarise,
)


def test_psnr_known_value_and_mask():
    t = np.array([[0.0, 1.0], [2.0, 4.0]])
    p = t + np.array([[0.1, -0.1, ], [0.1, -0.1]])
    # range 4, MSE 0.01 -> 10 log10(16 / 0.01)
    assert masked_psnr(p, t) == pytest.approx(10 * np.log10(1600.0))
    # a NaN bin in the prediction is ignored, as is a masked one
    p2 = p.copy()
    p2[1, 1] = np.nan
    # (the range is then that of the remaining target bins, 0..2)
    assert masked_psnr(p2, t) == pytest.approx(10 * np.log10(2.0**2 / 0.01))
    m = np.zeros_like(t, dtype=bool)
    m[1, 1] = True
    p3 = p.copy()
    p3[1, 1] = 1e6
    assert masked_psnr(p3, t, mask=m) == pytest.approx(masked_psnr(p2, t))
    assert masked_psnr(t, t) == np.inf


def test_ssim_matches_scikit_image_without_mask():
    skimage_metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(1)
    t = rng.random((48, 40))
    p = t + 0.1 * rng.standard_normal(t.shape)
    ours = masked_ssim(p, t, data_range=1.0)
    ref = skimage_metrics.structural_similarity(p, t, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                                use_sample_covariance=False)
    # the border is handled differently (renormalised window vs reflection)
    assert ours == pytest.approx(ref, abs=0.02)
    assert masked_ssim(t, t) == pytest.approx(1.0)
    assert masked_ssim(p, t) < 0.99


def test_ssim_ignores_masked_values():
    rng = np.random.default_rng(2)
    t = rng.random((20, 20))
    p = t + 0.05 * rng.standard_normal(t.shape)
    mask = np.zeros(t.shape, dtype=bool)
    mask[5:9, 3:12] = True
    p_other = p.copy()
    p_other[mask] = 100.0
    t_other = t.copy()
    t_other[mask] = -7.0
    a = masked_ssim(p, t, mask=mask, data_range=1.0)
    b = masked_ssim(p_other, t_other, mask=mask, data_range=1.0)
    assert a == pytest.approx(b, abs=1e-12)
    assert masked_ssim(np.where(mask, np.nan, p), t, data_range=1.0) == pytest.approx(a, abs=1e-12)


def test_frechet_distance_of_gaussians():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((4000, 3))
    b = rng.standard_normal((4000, 3)) + np.array([2.0, 0.0, 0.0])
    # identical covariances: the distance is |mu_a - mu_b|^2 = 4
    assert frechet_distance(a, b) == pytest.approx(4.0, abs=0.25)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # scaled covariance: tr(C1 + C2 - 2 sqrt(C1 C2)) = 3 (1 + 4 - 4) = 3
    assert frechet_distance(a, 2 * a) == pytest.approx(3.0, rel=0.05)
    # few samples (singular covariance) still give a finite value
    assert np.isfinite(frechet_distance(a[:3], b[:3]))
    with pytest.raises(InputDataError, match="Frechet"):
        frechet_distance(a[:1], b)


def test_intensity_ratio_and_summarise():
    t = np.array([1.0, 2.0, np.nan, 3.0])
    p = np.array([2.0, 4.0, 5.0, 6.0])
    assert intensity_ratio(p, t) == pytest.approx(2.0)
    assert summarise([1.0, np.nan, 3.0]) == 2.0
    assert summarise([1.0, 2.0, 10.0], "median") == 2.0
    assert np.isnan(summarise([np.nan]))
