"""Intensity normalisation and padding helpers (numpy only)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mantid_exp2sim.errors import InputDataError
from mantid_exp2sim.models.normalisation import (
    IntensityScaleAccumulator,
    crop_padding,
    from_network_output,
    intensity_scale,
    pad_to_multiple,
    to_network_input,
    valid_mask,
)


def _signal(rng, shape=(12, 10)):
    x = rng.normal(size=shape) * 3.0 - 0.5  # negative bins included
    x[2, 3] = np.nan
    x[5, :4] = np.nan
    return x


def test_normalisation_and_bundle_import_without_torch():
    code = (
        "import sys; import mantid_exp2sim.models.normalisation, mantid_exp2sim.bundle, mantid_exp2sim.onnx; "
        "bad = [m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules]; "
        "assert not bad, bad"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    res = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_intensity_scale_is_rms_over_unmasked_bins():
    x = np.array([[3.0, -4.0], [np.nan, 0.0]])
    assert intensity_scale(x) == pytest.approx(np.sqrt((9 + 16 + 0) / 3))


def test_intensity_scale_streams_large_arrays_in_chunks(monkeypatch):
    import mantid_exp2sim.models.normalisation as norm

    rng = np.random.default_rng(1)
    x = _signal(rng, (40, 7, 5))
    whole = intensity_scale(x)
    monkeypatch.setattr(norm, "_CHUNK_ELEMENTS", 50)
    assert intensity_scale(x) == pytest.approx(whole, rel=1e-12)
    acc = IntensityScaleAccumulator()
    for part in np.array_split(x.ravel(), 9):
        acc.update(part)
    assert acc.scale == pytest.approx(whole, rel=1e-12)


def test_intensity_scale_rejects_fully_masked_and_inf():
    with pytest.raises(InputDataError, match="no unmasked bins"):
        intensity_scale(np.full((3, 3), np.nan))
    with pytest.raises(InputDataError, match="infinite"):
        intensity_scale(np.array([1.0, np.inf]))


def test_network_input_layout_and_values():
    rng = np.random.default_rng(2)
    x = _signal(rng)
    x_in = x.copy()
    s = intensity_scale(x)
    net = to_network_input(x, s)
    np.testing.assert_array_equal(x, x_in)  # input not modified
    assert net.shape == (1, 2) + x.shape and net.dtype == np.float32
    valid = valid_mask(x)
    np.testing.assert_array_equal(net[0, 1], valid.astype(np.float32))
    np.testing.assert_allclose(net[0, 0][valid], (x / s)[valid], rtol=1e-6)
    assert np.all(net[0, 0][~valid] == 0)
    assert np.sqrt(np.mean(net[0, 0][valid].astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-6)


def test_round_trip_restores_signal_and_mask():
    rng = np.random.default_rng(3)
    x = _signal(rng)
    s = intensity_scale(x)
    net = to_network_input(x, s)
    back = from_network_output(net[:, :1], s, valid_mask(x))
    assert back.shape == x.shape and back.dtype == np.float64
    np.testing.assert_array_equal(np.isnan(back), np.isnan(x))
    np.testing.assert_allclose(back[~np.isnan(x)], x[~np.isnan(x)], rtol=1e-6)


@pytest.mark.parametrize("c", [10.0, 0.01])
def test_scale_equivariance_of_a_nonlinear_map(c):
    """G(c x) = c G(x) for any map applied between to_network_input and from_network_output."""
    rng = np.random.default_rng(4)
    x = _signal(rng)

    def pipeline(sig):
        s = intensity_scale(sig)
        net = to_network_input(sig, s)
        y = np.tanh(net[:, :1]) + net[:, :1] ** 2 - 0.3  # a non-homogeneous "network"
        return from_network_output(y, s, valid_mask(sig))

    np.testing.assert_allclose(pipeline(c * x), c * pipeline(x), rtol=1e-5, equal_nan=True)


def test_zero_signal_gives_zero_output_without_division_by_zero():
    x = np.zeros((4, 6))
    x[0, 0] = np.nan
    s = intensity_scale(x)
    assert s == 0.0
    with np.errstate(all="raise"):
        net = to_network_input(x, s)
        out = from_network_output(net[:, :1] + 5.0, s, valid_mask(x))
    assert np.all(net[0, 0] == 0)
    assert np.isnan(out[0, 0]) and np.all(out[~np.isnan(x)] == 0)


def test_batched_inputs_with_per_sample_scales():
    rng = np.random.default_rng(5)
    xs = np.stack([_signal(rng), 7 * _signal(rng)])
    scales = [intensity_scale(v) for v in xs]
    net = to_network_input(xs, scales, batched=True)
    assert net.shape == (2, 2, 12, 10)
    for i in range(2):
        np.testing.assert_array_equal(net[i], to_network_input(xs[i], scales[i])[0])
    back = from_network_output(net[:, :1], scales, valid_mask(xs), batched=True)
    np.testing.assert_allclose(back, xs, rtol=1e-6, equal_nan=True)


def test_invalid_scale_and_multi_sample_output_are_rejected():
    with pytest.raises(InputDataError, match="scale"):
        to_network_input(np.ones((3, 3)), -1.0)
    with pytest.raises(InputDataError, match="several samples"):
        from_network_output(np.ones((2, 1, 3, 3)), 1.0, np.ones((3, 3)))
    net = to_network_input(np.ones((3, 3)), 1.0)
    with pytest.raises(InputDataError, match="several channels"):
        from_network_output(net[:, :1], 1.0, net)
    np.testing.assert_array_equal(from_network_output(net[:, :1], 2.0, net[:, 1:]), np.full((3, 3), 2.0))


@pytest.mark.parametrize("mode", ["replicate", "reflect"])
def test_pad_to_multiple_and_crop(mode):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(1, 2, 9, 5, 8))
    padded, pads = pad_to_multiple(x, 4, mode=mode)
    assert padded.shape == (1, 2, 12, 8, 8) and pads == (3, 3, 0)
    np.testing.assert_array_equal(padded[..., :9, :5, :], x)  # origin untouched
    expected = np.pad(x, [(0, 0), (0, 0), (0, 3), (0, 3), (0, 0)], mode="edge" if mode == "replicate" else "reflect")
    np.testing.assert_array_equal(padded, expected)
    np.testing.assert_array_equal(crop_padding(padded, pads), x)


def test_pad_reflect_folds_short_axes_and_rejects_bad_mode():
    x = np.arange(2.0).reshape(1, 1, 2)
    padded, _ = pad_to_multiple(x, 8, mode="reflect")
    np.testing.assert_array_equal(padded[0, 0], [0, 1, 0, 1, 0, 1, 0, 1])
    with pytest.raises(ValueError, match="mode"):
        pad_to_multiple(x, 4, mode="wrap")


@pytest.mark.parametrize("value", [1e300, -1e200, 1e155])
def test_values_whose_squares_overflow_give_a_clear_error(value):
    x = np.full((30, 30), value)
    x[0, 0] = np.nan
    with pytest.raises(InputDataError) as info:
        intensity_scale(x)
    text = str(info.value)
    assert "too large" in text and f"{abs(value):.3g}" in text and "rescale" in text
    assert "intensity_scale(" not in text  # no internal function names
    assert intensity_scale(np.full((30, 30), 1e100)) == pytest.approx(1e100)
