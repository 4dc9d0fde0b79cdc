"""Tests of pooled features (mantid_exp2sim.domain.features)."""

import numpy as np
import pytest

from mantid_exp2sim.domain import downsample_mask, pooled_features
from mantid_exp2sim.errors import InputDataError


def test_pooled_mean_and_std_without_mask():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(3, 4, 5, 6))
    out = pooled_features(f)
    assert out.shape == (3, 8)
    np.testing.assert_allclose(out[:, :4], f.mean(axis=(2, 3)))
    np.testing.assert_allclose(out[:, 4:], f.std(axis=(2, 3)))


def test_pooled_with_mask_ignores_invalid_positions():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(2, 3, 4, 4))
    mask = np.ones((2, 4, 4), bool)
    mask[0, :2] = False
    f_bad = f.copy()
    f_bad[0, :, :2] = 1e6  # garbage under the mask must not matter
    out = pooled_features(f_bad, mask)
    np.testing.assert_allclose(out[0, :3], f[0, :, 2:].mean(axis=(1, 2)))
    np.testing.assert_allclose(out[0, 3:], f[0, :, 2:].std(axis=(1, 2)))
    np.testing.assert_allclose(out[1, :3], f[1].mean(axis=(1, 2)))
    # shared mask of shape (*spatial)
    out2 = pooled_features(f, mask[1])
    np.testing.assert_allclose(out2, pooled_features(f))
    # fully masked sample -> NaN features
    mask[1] = False
    assert np.isnan(pooled_features(f, mask)[1]).all()


def test_mask_at_input_resolution_is_downsampled():
    m = np.ones((1, 8, 8), bool)
    m[0, :4, :4] = False  # top-left quarter invalid
    d = downsample_mask(m, (2, 2))
    np.testing.assert_array_equal(d[0], [[False, True], [True, True]])
    f = np.arange(2 * 4, dtype=float).reshape(1, 2, 2, 2)
    out = pooled_features(f, m)
    np.testing.assert_allclose(out[0, :2], f[0][:, [0, 1, 1], [1, 0, 1]].mean(axis=1))


def test_3d_feature_maps_and_errors():
    f = np.ones((2, 3, 2, 2, 2))
    assert pooled_features(f).shape == (2, 6)
    with pytest.raises(InputDataError, match="shape"):
        pooled_features(np.ones((3, 4)))
    with pytest.raises(InputDataError, match="does not match"):
        pooled_features(np.ones((2, 3, 4, 4)), np.ones((3, 4, 4), bool))
