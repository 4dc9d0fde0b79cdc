"""Random nuisance parameters of measured-like spectra (simulate.nuisance_sampling)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mantid_exp2sim.errors import InputDataError
from mantid_exp2sim.simulate.measured_like import PCSMO_MEASURED_LIKE, MeasuredLike
from mantid_exp2sim.simulate.nuisance_sampling import (
    DEFAULT_RANGES,
    NuisanceRanges,
    draw_measured_like,
)


def _draws(n: int, seed: int = 0, ranges: NuisanceRanges = DEFAULT_RANGES) -> list[MeasuredLike]:
    rng = np.random.default_rng(seed)
    return [draw_measured_like(rng, ranges) for _ in range(n)]


def test_draws_stay_inside_the_ranges_and_fill_them():
    base = PCSMO_MEASURED_LIKE
    draws = _draws(400)
    for name in ("scale", "count_level", "background", "residual_background"):
        ratio = np.array([np.asarray(getattr(d, name)) / np.asarray(getattr(base, name)) for d in draws])
        lo, hi = getattr(DEFAULT_RANGES, name)
        assert np.all(ratio >= lo - 1e-12) and np.all(ratio <= hi + 1e-12), name
        # log-uniform: the log-mean sits in the middle, and both ends are reached
        assert abs(np.mean(np.log(ratio)) - 0.5 * (np.log(lo) + np.log(hi))) < 0.05 * np.log(hi / lo), name
        assert ratio.min() < lo * (hi / lo) ** 0.05 and ratio.max() > hi / (hi / lo) ** 0.05, name
    # scale is drawn per Ei, the count level with one factor for all Ei
    scale = np.array([np.asarray(d.scale) / np.asarray(base.scale) for d in draws])
    assert abs(np.corrcoef(scale[:, 0], scale[:, 1])[0, 1]) < 0.2
    counts = np.array([np.asarray(d.count_level) / np.asarray(base.count_level) for d in draws])
    np.testing.assert_allclose(counts, counts[:, :1] * np.ones_like(counts))
    measured = np.mean([d.mask == base.mask for d in draws])
    assert 0.83 < measured < 0.96
    assert {d.mask for d in draws} == {base.mask, "kinematic"}
    for d in draws[:5]:
        assert d.clip_max == base.clip_max and d.background_ratio == base.background_ratio
        json.dumps(d.describe())


def test_draws_reproducible_by_seed_and_differ_between_seeds():
    a, b, c = _draws(5, 3), _draws(5, 3), _draws(5, 4)
    assert [d.describe() for d in a] == [d.describe() for d in b]
    assert a[0].describe() != c[0].describe()


def test_fixed_range_gives_the_base_values():
    ranges = NuisanceRanges(scale=(1, 1), count_level=(2, 2), background=(1, 1), residual_background=(1, 1),
                            measured_mask_probability=1.0)
    d = draw_measured_like(np.random.default_rng(0), ranges)
    np.testing.assert_allclose(d.scale, PCSMO_MEASURED_LIKE.scale)
    np.testing.assert_allclose(d.count_level, 2 * np.asarray(PCSMO_MEASURED_LIKE.count_level))
    assert d.mask == PCSMO_MEASURED_LIKE.mask


def test_a_drawn_chain_processes_a_mosaic():
    clean = np.full((240, 400), 0.01)
    out = draw_measured_like(np.random.default_rng(1), NuisanceRanges(measured_mask_probability=0.0)).apply(
        clean, np.random.default_rng(2))
    assert out.shape == clean.shape and np.isnan(out).any()
    assert np.nanmin(out) == 0.0 and np.nanmax(out) <= 120.0


@pytest.mark.parametrize("kw", [
    {"scale": (1.4, 0.7)}, {"count_level": (0.0, 2.0)}, {"background": (-1.0, 2.0)},
    {"resolution_scale": (0.0, 1.0)}, {"mosaic": (-0.5, 1.0)}, {"twin_fraction": (-1.5, 0.1)},
    {"measured_mask_probability": 1.2}, {"scale": (float("nan"), 1.0)}, {"count_level": "x"},
])
def test_bad_ranges_refused_naming_the_field(kw):
    with pytest.raises(InputDataError) as err:
        NuisanceRanges(**kw)
    assert next(iter(kw)) in str(err.value)
    assert "\n" not in str(err.value)


def test_describe_round_trip():
    r = NuisanceRanges(count_level=(0.3, 3.0), measured_mask_probability=0.5)
    d = json.loads(json.dumps(r.describe()))
    assert NuisanceRanges.from_description(d) == r


def test_ranges_type_checked():
    with pytest.raises(InputDataError, match="ranges"):
        draw_measured_like(np.random.default_rng(0), {"scale": (1, 2)})  # type: ignore[arg-type]
