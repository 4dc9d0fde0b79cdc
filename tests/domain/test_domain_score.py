"""Tests of the POT-based domain score (mantid_exp2sim.domain.score)."""

import json
import time

import numpy as np
import ot
import pytest
from scipy.optimize import linear_sum_assignment

from mantid_exp2sim.domain import (
    ZONES,
    build_reference_bank,
    calibrate_zones,
    distance_distribution,
    score,
    wasserstein_distance,
    zone_of,
)
from mantid_exp2sim.errors import InputDataError


def test_two_by_two_known_assignment():
    # x0 -> y1 and x1 -> y0 cost 1 each; the crossed assignment costs 101 each.
    x = np.array([[0.0, 0.0], [10.0, 0.0]])
    y = np.array([[10.0, 1.0], [0.0, 1.0]])
    assert wasserstein_distance(x, y) == pytest.approx(1.0)
    assert wasserstein_distance(x, y, metric="euclidean") == pytest.approx(1.0)
    # Moving one target changes the optimum in a way computable by hand:
    y2 = np.array([[10.0, 3.0], [0.0, 1.0]])
    assert wasserstein_distance(x, y2) == pytest.approx((1.0 + 9.0) / 2)


def test_single_sample_closed_form_is_the_mean_cost():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1, 8))
    y = rng.normal(size=(20, 8))
    costs = ((x - y) ** 2).sum(axis=1)
    expected = costs.mean()
    assert wasserstein_distance(x, y) == pytest.approx(expected)
    assert wasserstein_distance(x[0], y) == pytest.approx(expected)
    # and it agrees with the general exact solver
    m = ot.dist(x, y)
    assert float(ot.emd2(np.ones(1), np.full(20, 0.05), m)) == pytest.approx(expected)


def test_exact_at_large_cost_scale_matches_assignment():
    # Costs ~1e5 as in the paper: exact OT between equal-size uniform clouds is the optimal
    # assignment's mean cost (Birkhoff), computed independently with scipy.
    rng = np.random.default_rng(0)
    x = rng.normal(scale=10.0, size=(20, 512))
    y = rng.normal(loc=2.0, scale=10.0, size=(20, 512))
    c = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    assert 5e4 < np.median(c) < 5e5
    r, col = linear_sum_assignment(c)
    expected = c[r, col].mean()
    got = wasserstein_distance(x, y)
    assert got == pytest.approx(expected, rel=1e-9)
    assert got > 1e4  # not the silent 0 of plain Sinkhorn at this scale


def test_distance_distribution_uses_all_inputs_when_few_and_is_seeded():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(200, 4))
    x = rng.normal(size=(5, 4))
    a = distance_distribution(x, ref, repeats=50, rng=7)
    b = distance_distribution(x, ref, repeats=50, rng=7)
    c = distance_distribution(x, ref, repeats=50, rng=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # Recompute repeat 0 by hand with the same generator stream.
    g = np.random.default_rng(7)
    idx = g.choice(200, 20, replace=False)
    assert a[0] == pytest.approx(wasserstein_distance(x, ref[idx]))


def test_calibrate_zones_rule():
    d = np.arange(1.0, 101.0)
    t = calibrate_zones(d, trust_percentile=99.0, untrust_sigma=5.0)
    assert t["trustworthy"] == pytest.approx(np.percentile(d, 99))
    logs = np.log(d)
    assert t["untrustworthy"] == pytest.approx(np.exp(logs.mean() + 5 * logs.std()))
    assert t["holdout_mean"] == pytest.approx(d.mean())
    assert zone_of(50.0, t) == "trustworthy"
    assert zone_of(150.0, t) == "expert opinion"
    assert zone_of(t["untrustworthy"] * 1.01, t) == "untrustworthy"
    # A right-skewed (log-normal) distribution still gets an expert-opinion zone.
    skewed = np.random.default_rng(0).lognormal(5.0, 0.5, 1000)
    t3 = calibrate_zones(skewed)
    assert t3["untrustworthy"] > t3["trustworthy"] * 1.5
    # Degenerate spread: the untrustworthy bound never falls below the trustworthy one.
    t2 = calibrate_zones(np.ones(10), untrust_sigma=0.0)
    assert t2["untrustworthy"] >= t2["trustworthy"]
    assert calibrate_zones(np.zeros(5))["untrustworthy"] == 0.0


@pytest.fixture(scope="module")
def bank():
    rng = np.random.default_rng(5)
    train = rng.normal(size=(600, 16))
    hold = rng.normal(size=(100, 16))
    return build_reference_bank(train, hold, seed=11, repeats=300)


def test_bank_contents_and_json_calibration(bank):
    arrays, cal = bank
    assert arrays["features"].shape == (600, 16)
    for key in ("train_distances", "holdout_distances", "train_distances_single", "holdout_distances_single"):
        assert arrays[key].shape == (300,)
        assert np.isfinite(arrays[key]).all()
    json.dumps(cal)
    assert set(cal["thresholds"]) == {"1", "20"}
    # In distribution: train-vs-train and held-out-vs-train costs agree closely.
    assert cal["summary"]["holdout_mean"] == pytest.approx(cal["summary"]["train_mean"], rel=0.1)
    # Deterministic for a seed
    a2, c2 = build_reference_bank(arrays["features"], arrays["holdout_features"], seed=11, repeats=300)
    np.testing.assert_array_equal(a2["holdout_distances"], arrays["holdout_distances"])


def test_zones_in_and_out_of_distribution(bank):
    arrays, cal = bank
    rng = np.random.default_rng(9)
    inside = score(rng.normal(size=16), arrays, cal, repeats=200)
    near = score(rng.normal(size=16) + 1.2, arrays, cal, repeats=200)
    far = score(rng.normal(size=16) * 8 + 20, arrays, cal, repeats=200)
    assert inside.zone == "trustworthy"
    assert far.zone == "untrustworthy"
    assert inside.mean < near.mean < far.mean
    assert inside.zone in ZONES and near.zone in ZONES
    # a set of 20 in-distribution samples is also trustworthy, at its own set size
    s = score(rng.normal(size=(30, 16)), arrays, cal, repeats=200)
    assert s.set_size == 20 and s.zone == "trustworthy"
    d = s.to_dict()
    assert set(d) >= {"mean", "std", "p5", "p50", "p95", "zone"}
    assert d["p5"] <= d["p50"] <= d["p95"]


def test_score_seeded_and_uncalibrated_set_size(bank):
    arrays, cal = bank
    x = np.random.default_rng(2).normal(size=(5, 16))
    a = score(x, arrays, cal, repeats=100, seed=4)
    b = score(x, arrays, cal, repeats=100, seed=4)
    np.testing.assert_array_equal(a.distances, b.distances)
    assert a.set_size == 5
    # thresholds for m = 5 are recomputed from the held-out features
    assert a.thresholds != cal["thresholds"]["1"] and a.thresholds != cal["thresholds"]["20"]
    assert a.zone == "trustworthy"


def test_errors():
    with pytest.raises(InputDataError, match="Too few"):
        build_reference_bank(np.zeros((10, 3)), np.zeros((5, 3)), seed=0)
    with pytest.raises(InputDataError, match="NaN"):
        distance_distribution(np.full((1, 3), np.nan), np.zeros((30, 3)), repeats=2)
    with pytest.raises(InputDataError, match="metric"):
        wasserstein_distance(np.zeros((2, 2)), np.zeros((2, 2)), metric="cosine")
    arrays, cal = build_reference_bank(
        np.random.default_rng(0).normal(size=(60, 3)), np.zeros((4, 3)), seed=0, repeats=10
    )
    with pytest.raises(InputDataError, match="do not match"):
        score(np.zeros(4), arrays, cal, repeats=10)


def test_speed_1000_repeats():
    rng = np.random.default_rng(0)
    arrays, cal = build_reference_bank(rng.normal(size=(600, 256)), rng.normal(size=(50, 256)), seed=0, repeats=20)
    x = rng.normal(size=(20, 256))
    t0 = time.perf_counter()
    s = score(x, arrays, cal, repeats=1000)
    elapsed = time.perf_counter() - t0
    assert s.distances.shape == (1000,)
    # Target 1 s on this 2-core machine; allow head-room for a loaded CI runner.
    assert elapsed < 3.0
