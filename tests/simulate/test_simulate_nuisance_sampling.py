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
    default_chain,
    draw_measured_like,
)


def _draws(n: int, seed: int = 0, ranges: NuisanceRanges = DEFAULT_RANGES) -> list[MeasuredLike]:
    rng = np.random.default_rng(seed)
    return [draw_measured_like(rng, ranges) for _ in range(n)]


def test_draws_stay_inside_the_ranges_and_fill_them():
    base = default_chain()
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
    d = draw_measured_like(np.random.default_rng(0), ranges, PCSMO_MEASURED_LIKE)
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


def test_measurement_model_draws_inside_the_ranges_and_reproducible():
    from mantid_exp2sim.simulate.measurement_model import MeasurementModel
    from mantid_exp2sim.simulate.nuisance_sampling import draw_measurement_model

    base = MeasurementModel(twin_fraction=0.6, resolution_scale=1.1, mosaic=2.0, resolution_sampling=2)
    rng = np.random.default_rng(5)
    draws = [draw_measurement_model(rng, base=base) for _ in range(300)]
    twin = np.array([d.twin_fraction for d in draws])
    res = np.array([d.resolution_scale for d in draws]) / 1.1
    mos = np.array([d.mosaic for d in draws]) / 2.0
    assert 0.5 - 1e-12 <= twin.min() < 0.52 and 0.68 < twin.max() <= 0.7 + 1e-12
    assert 0.88 - 1e-12 <= res.min() and res.max() <= 1.12 + 1e-12
    assert 0.5 - 1e-12 <= mos.min() < 0.55 and 1.45 < mos.max() <= 1.5 + 1e-12
    assert all(d.resolution_sampling == 2 for d in draws)
    again = draw_measurement_model(np.random.default_rng(5), base=base)
    assert again == draws[0]
    # near the ends of [0, 1] the twin fraction stays inside
    edge = draw_measurement_model(np.random.default_rng(0), NuisanceRanges(twin_fraction=(0.2, 0.5)),
                                  base=MeasurementModel(twin_fraction=0.9))
    assert edge.twin_fraction == 1.0
    json.dumps(again.describe())


def test_measured_like_settings_fix_values_and_keep_the_other_draws():
    from mantid_exp2sim.simulate.nuisance_sampling import MeasuredLikeSettings

    free = MeasuredLikeSettings().draw(np.random.default_rng(8))
    fixed = MeasuredLikeSettings(count_level=0.25, twin_fraction=0.3, mosaic=1.0, resolution_scale=1.25,
                                 measured_mask_probability=0.0).draw(np.random.default_rng(8))
    mm = fixed.measurement_model
    assert (mm.twin_fraction, mm.mosaic, mm.resolution_scale) == (0.3, 1.0, 1.25)
    np.testing.assert_allclose(fixed.chain.count_level, 0.25 * np.asarray(default_chain().count_level))
    assert fixed.chain.scale == free.chain.scale and fixed.chain.background == free.chain.background
    assert fixed.chain.mask == "kinematic"
    v = fixed.vector()
    assert v.shape == (28,) and v[24] == 0.0 and v[25] == 0.3
    assert fixed.with_measured_like().measured_like == fixed.chain
    json.dumps(fixed.describe())
    s = MeasuredLikeSettings(count_level=2, resolution_sampling=1)
    assert MeasuredLikeSettings.from_settings(json.loads(json.dumps(s.settings()))) == s


@pytest.mark.parametrize("kw, option", [
    ({"twin_fraction": 1.5}, "--twin-fraction"), ({"mosaic": -0.1}, "--mosaic"),
    ({"count_level": 0}, "--count-level"), ({"background": -1}, "--subtracted-background"),
    ({"resolution_sampling": 1.5}, "--resolution-sampling"),
])
def test_measured_like_settings_refuse_bad_values_naming_the_option(kw, option):
    from mantid_exp2sim.simulate.nuisance_sampling import MeasuredLikeSettings

    with pytest.raises(InputDataError) as err:
        MeasuredLikeSettings(**kw)
    assert option in str(err.value) and "\n" not in str(err.value)
