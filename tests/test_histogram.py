"""Tests of the Mantid-free data model (Axis, MDHisto)."""

import numpy as np
import pytest

from mantid_exp2sim.errors import InputDataError, format_error
from mantid_exp2sim.histogram import Axis, MDHisto


def test_axis_edges_centres_and_id_default():
    ax = Axis("DeltaE", "meV", 0.0, 10.0, 5)
    assert ax.id == "DeltaE"
    np.testing.assert_allclose(ax.edges(), [0, 2, 4, 6, 8, 10])
    np.testing.assert_allclose(ax.centres(), [1, 3, 5, 7, 9])
    assert ax.width == pytest.approx(2.0)
    assert Axis.from_dict(ax.to_dict()) == ax


@pytest.mark.parametrize(
    "kwargs",
    [dict(bins=0), dict(bins=2.5), dict(minimum=1.0, maximum=1.0), dict(maximum=np.inf)],
)
def test_axis_rejects_bad_binning(kwargs):
    base = dict(name="[H,0,0]", unit="r.l.u.", minimum=-1.0, maximum=1.0, bins=4)
    base.update(kwargs)
    with pytest.raises(InputDataError, match=r"\[H,0,0\]"):
        Axis(**base)


def test_axis_from_edges_accepts_float32_rounding_and_rejects_nonuniform():
    edges = np.linspace(-1.0, 1.0, 41).astype(np.float32).astype(np.float64)
    ax = Axis.from_edges("[0,K,0]", "r.l.u.", edges)
    assert ax.bins == 40 and ax.minimum == pytest.approx(-1.0)
    with pytest.raises(InputDataError, match="uniformly"):
        Axis.from_edges("E", "meV", [0.0, 1.0, 3.0])


def test_mdhisto_shape_mask_and_with_signal_keeps_mask():
    sig = np.arange(12.0).reshape(3, 4)
    sig[1, 2] = np.nan
    h = MDHisto.from_array(sig, names=["A", "B"], units=["u", "v"], extents=[(0, 3), (0, 4)])
    assert h.shape == (3, 4) and h.ndim == 2
    assert h.mask.sum() == 1 and h.mask[1, 2]
    out = h.with_signal(np.ones((3, 4)), errors=np.ones((3, 4)), metadata={"k": 1})
    assert np.isnan(out.signal[1, 2]) and np.isnan(out.errors[1, 2])
    assert np.nansum(out.signal) == 11
    assert out.metadata["k"] == 1 and "k" not in h.metadata
    assert out.axes == h.axes


def test_mdhisto_never_aliases_its_input():
    sig = np.zeros((2, 2))
    h = MDHisto.from_array(sig)
    h.with_signal(np.ones((2, 2)))
    c = h.copy()
    c.signal[0, 0] = 5.0
    assert h.signal[0, 0] == 0.0


def test_mdhisto_rejects_mismatch_and_inf():
    ax = (Axis("A", "", 0, 1, 2), Axis("B", "", 0, 1, 3))
    with pytest.raises(InputDataError, match="does not match the axes"):
        MDHisto(np.zeros((3, 2)), ax)
    with pytest.raises(InputDataError, match="infinite"):
        MDHisto(np.full((2, 3), np.inf), ax)
    with pytest.raises(InputDataError, match="Error array"):
        MDHisto(np.zeros((2, 3)), ax, errors=np.zeros((3, 2)))


def test_format_error_has_three_parts():
    msg = format_error("Property 'BatchSize' is invalid", reason="got 0, need >= 1", fix="use 1 or more")
    assert msg == "Property 'BatchSize' is invalid: got 0, need >= 1. use 1 or more."
