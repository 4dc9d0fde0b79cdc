"""The factor that conserves integrated intensity, and when it is refused."""

from __future__ import annotations

import numpy as np
import pytest

from mantid_exp2sim.inference.conservation import (
    NET_FRACTION,
    IntensitySums,
    SummingSink,
    conservation_factor,
)


def test_sums_skip_masked_bins():
    s = IntensitySums.of(np.array([1.0, -2.0, np.nan, 4.0]))
    assert (s.total, s.absolute) == (3.0, 7.0)
    assert (s + s).total == 6.0


def test_factor_is_the_ratio_of_integrals():
    r = conservation_factor(IntensitySums(10.0, 11.0), IntensitySums(8.0, 8.0))
    assert r.factor == pytest.approx(1.25)
    assert r.metadata() == {"intensity_factor": 1.25, "intensity_conservation": "applied"}


@pytest.mark.parametrize("source,output,word", [
    (IntensitySums(-1.0, 5.0), IntensitySums(2.0, 2.0), "input's integral is -1"),
    (IntensitySums(3.0, 3.0), IntensitySums(0.0, 4.0), "output's integral is 0"),
    (IntensitySums(1.0, 10.0), IntensitySums(2.0, 2.0), "cancel most of the input's"),
    (IntensitySums(5.0, 5.0), IntensitySums(1.0, 2.5), "cancel most of the output's"),
])
def test_factor_is_refused_when_the_integral_means_little(source, output, word):
    r = conservation_factor(source, output)
    assert r.factor is None
    assert word in r.reason


def test_threshold_is_inclusive_at_net_fraction():
    assert conservation_factor(IntensitySums(NET_FRACTION, 1.0), IntensitySums(1.0, 1.0)).factor == pytest.approx(0.5)


def test_summing_sink_forwards_and_sums():
    out = np.zeros((4, 3))
    sink = SummingSink(out)
    sink[0:2] = np.ones((2, 3))
    sink[2:4] = np.array([[np.nan, -1.0, 2.0]] * 2)
    np.testing.assert_array_equal(out[0], 1.0)
    assert np.isnan(out[3, 0])
    assert (sink.sums.total, sink.sums.absolute) == (8.0, 12.0)
