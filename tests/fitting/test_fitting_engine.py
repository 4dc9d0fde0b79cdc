"""The fitting engine on toy models with known answers (no simulator, a few seconds in all)."""

from __future__ import annotations

import numpy as np
import pytest

from mantid_exp2sim.errors import InputDataError
from mantid_exp2sim.fitting import FunctionForward, compare_models, fit_model, fit_models

X, Y = np.meshgrid(np.linspace(-1, 1, 24), np.linspace(-1, 1, 24), indexing="ij")
GROUPS = np.repeat([0, 1], 24)[:, None] * np.ones((1, 24), dtype=int)


def _peak(t: np.ndarray) -> np.ndarray:
    return np.exp(-((X - t[0]) ** 2 + (Y - t[1]) ** 2) / (2 * t[2] ** 2))


def peak_model(defaults=(0.1, -0.1, 0.3)) -> FunctionForward:
    """A Gaussian peak at (x0, y0) of width w, the same in two groups (stacked along rows)."""
    return FunctionForward(
        "peak", ["x0", "y0", "w"], dict(zip(["x0", "y0", "w"], defaults)),
        {"x0": (-0.5, 0.5), "y0": (-0.5, 0.5), "w": (0.05, 1.0)}, lambda t: np.tile(_peak(t), (2, 1)))


def ring_model() -> FunctionForward:
    """A ring of radius r and width w: a wrong model for peak data."""
    def f(t: np.ndarray) -> np.ndarray:
        R = np.hypot(X, Y)
        return np.tile(np.exp(-((R - t[0]) ** 2) / (2 * t[1] ** 2)), (2, 1))

    return FunctionForward("ring", ["r", "w"], {"r": 0.3, "w": 0.2}, {"r": (0.0, 0.9), "w": (0.05, 1.0)}, f)


TRUE = np.array([0.2, -0.25, 0.2])


def peak_data(scales=(3.0, 2.0), backgrounds=(0.5, 0.1)) -> np.ndarray:
    p = _peak(TRUE)
    return np.concatenate([scales[0] * p + backgrounds[0], scales[1] * p + backgrounds[1]])


def test_exact_recovery_with_nuisances():
    data = peak_data()
    r = fit_model(data, peak_model(), errors=np.full(data.shape, 0.01), groups=GROUPS, workers=1, n_sobol=4)
    np.testing.assert_allclose(r.vector(), TRUE, rtol=1e-7, atol=1e-9)
    assert r.nuisance["scale[group0]"] == pytest.approx(3.0, rel=1e-8)
    assert r.nuisance["background[group0]"] == pytest.approx(0.5, abs=1e-8)
    assert r.nuisance["scale[group1]"] == pytest.approx(2.0, rel=1e-8)
    assert r.nuisance["background[group1]"] == pytest.approx(0.1, abs=1e-8)
    assert r.chi2 < 1e-10 and r.r2 == pytest.approx(1.0)
    assert not r.errors_inflated and r.error_scale == 1.0
    assert r.n_free == 3 + 4 and r.dof == data.size - 7
    assert r.aic == pytest.approx(r.chi2 + 2 * 7) and r.bic == pytest.approx(r.chi2 + 7 * np.log(data.size))
    np.testing.assert_allclose(r.best_fit, data, atol=1e-8)
    np.testing.assert_allclose(r.residual, 0.0, atol=1e-8)
    assert r.correlation.shape == (3, 3) and np.allclose(np.diag(r.correlation), 1.0)
    assert any(s.local for s in r.starts)


def _linear_setup(noise: float = 0.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    g = [np.cos(np.pi * X), np.sin(np.pi * Y) * X, X * Y]
    theta = np.array([1.5, -0.7, 0.4])
    bg = 0.3
    sigma = 0.05 + 0.05 * (X + 1)
    clean = sum(t * gi for t, gi in zip(theta, g)) + bg
    data = clean + noise * sigma * rng.standard_normal(X.shape)
    model = FunctionForward("linear", ["a", "b", "c"], {"a": 1.0, "b": 0.0, "c": 0.0},
                            {"a": (-5, 5), "b": (-5, 5), "c": (-5, 5)},
                            lambda t: t[0] * g[0] + t[1] * g[1] + t[2] * g[2])
    # analytic covariance of (a, b, c, background) for the linear model with weights 1/sigma^2
    A = np.stack([gi.ravel() for gi in g] + [np.ones(X.size)], axis=1) / sigma.ravel()[:, None]
    cov = np.linalg.inv(A.T @ A)
    return data, sigma, model, theta, cov


def test_linear_model_errors_equal_analytic_covariance():
    data, sigma, model, theta, cov = _linear_setup(noise=0.0)
    r = fit_model(data, model, errors=sigma, scale=False, workers=1, n_sobol=2)
    np.testing.assert_allclose(r.vector(), theta, atol=1e-7)
    assert not r.errors_inflated
    err = np.sqrt(np.diag(cov))
    np.testing.assert_allclose([r.errors[n] for n in "abc"], err[:3], rtol=1e-4)
    assert r.nuisance_errors["background[group0]"] == pytest.approx(err[3], rel=1e-4)
    corr = cov[:3, :3] / np.outer(err[:3], err[:3])
    np.testing.assert_allclose(r.correlation, corr, atol=1e-4)


def test_errors_inflated_by_reduced_chi2_and_said_so():
    data, sigma, model, theta, cov = _linear_setup(noise=3.0, seed=1)
    r = fit_model(data, model, errors=sigma, scale=False, workers=1, n_sobol=0)
    assert r.reduced_chi2 > 4
    assert r.errors_inflated and r.error_scale == pytest.approx(np.sqrt(r.reduced_chi2))
    np.testing.assert_allclose([r.errors[n] for n in "abc"], np.sqrt(np.diag(cov))[:3] * r.error_scale, rtol=1e-4)
    assert any("sqrt(reduced chi2)" in n for n in r.notes)


def test_one_sigma_coverage_of_a_linear_model():
    hits = []
    for seed in range(40):
        data, sigma, model, theta, _ = _linear_setup(noise=1.0, seed=seed)
        r = fit_model(data, model, errors=sigma, scale=False, workers=1, n_sobol=0)
        hits.extend(abs(r.values[n] - t) <= r.errors[n] for n, t in zip("abc", theta))
    assert 0.55 <= np.mean(hits) <= 0.85  # 0.68 expected (binomial sd 0.04 for 120 draws)


def test_fixed_parameter_is_held_and_has_no_error():
    data = peak_data()
    r = fit_model(data, peak_model(), errors=np.full(data.shape, 0.01), groups=GROUPS, workers=1, n_sobol=2,
                  fixed={"w": 0.2})
    assert r.values["w"] == 0.2 and r.errors["w"] == 0.0 and r.fixed == ("w",) and r.free == ("x0", "y0")
    np.testing.assert_allclose(r.vector(), TRUE, atol=1e-7)
    assert r.correlation.shape == (2, 2)
    # a wrong fixed value moves the others and the fit gets worse
    r2 = fit_model(data, peak_model(), errors=np.full(data.shape, 0.01), groups=GROUPS, workers=1, n_sobol=2,
                   fixed={"w": 0.3})
    assert r2.chi2 > 1.0


@pytest.mark.parametrize("fixed, match", [({"w": 2.0}, "outside its range"), ({"nope": 0.1}, "no such parameter"),
                                          ({"w": float("nan")}, "not a finite number")])
def test_bad_fixed_values(fixed, match):
    data = peak_data()
    with pytest.raises(InputDataError, match=match):
        fit_model(data, peak_model(), errors=np.full(data.shape, 0.01), groups=GROUPS, workers=1, fixed=fixed)


def test_bounds_hold_and_are_reported():
    # the true centre x0 = 0.7 lies outside the model's range [-0.5, 0.5]
    p = np.exp(-((X - 0.7) ** 2 + (Y + 0.25) ** 2) / (2 * 0.2 ** 2))
    data = np.concatenate([p, p])
    r = fit_model(data, peak_model(), errors=np.full(data.shape, 0.01), groups=GROUPS, workers=1, n_sobol=2)
    assert r.values["x0"] == pytest.approx(0.5, abs=1e-6)
    assert "x0" in r.at_bounds and any("bound" in n for n in r.notes)


def test_starts_design_and_extra_start_hook():
    data = peak_data()
    extra = {"x0": 0.19, "y0": -0.2}
    r = fit_model(data, peak_model(), errors=np.full(data.shape, 0.01), groups=GROUPS, workers=1, n_sobol=4,
                  n_local=2, extra_starts=[extra], seed=3)
    sources = [s.source for s in r.starts]
    assert sources.count("published") == 1 and sources.count("extra") == 1 and sources.count("sobol") == 4
    local = [s.source for s in r.starts if s.local and s.source != "scan"]
    assert "extra" in local and len(local) == 2  # every extra start, and the best-screened other one
    other = min((s for s in r.starts if s.source != "extra" and s.source != "scan"), key=lambda s: s.screened_chi2)
    assert other.local
    ex = next(s for s in r.starts if s.source == "extra")
    assert ex.start["x0"] == 0.19 and ex.start["w"] == 0.3  # missing names: the published value
    # the Sobol design is reproducible and inside the ranges
    r2 = fit_model(data, peak_model(), errors=np.full(data.shape, 0.01), groups=GROUPS, workers=1, n_sobol=4,
                   n_local=2, extra_starts=[extra], seed=3)
    a = [s.start for s in r.starts if s.source == "sobol"]
    assert a == [s.start for s in r2.starts if s.source == "sobol"]
    assert all(-0.5 <= s["x0"] <= 0.5 and 0.05 <= s["w"] <= 1.0 for s in a)


def test_parameter_scans_rescue_a_wrong_basin():
    # the published start puts the peak far away, where the landscape is flat in x0
    data = peak_data()
    far = peak_model(defaults=(-0.45, -0.25, 0.05))
    kw = dict(errors=np.full(data.shape, 0.01), groups=GROUPS, workers=1, n_sobol=0)
    stuck = fit_model(data, far, scan_rounds=0, **kw)
    assert stuck.chi2 > 1e3
    r = fit_model(data, far, **kw)
    np.testing.assert_allclose(r.vector(), TRUE, atol=1e-6)
    scans = [s for s in r.starts if s.source == "scan"]
    assert scans and scans[0].local and scans[0].screened_chi2 < stuck.chi2


def test_unstable_sobol_points_are_skipped():
    m = peak_model()
    m._stable = lambda t: t[2] > 0.5
    data = peak_data()
    r = fit_model(data, m, errors=np.full(data.shape, 0.01), groups=GROUPS, workers=1, n_sobol=4, n_local=1)
    sob = [s.start for s in r.starts if s.source == "sobol"]
    assert len(sob) == 4 and all(s["w"] > 0.5 for s in sob)


def test_parallel_workers_give_the_same_fit():
    data = peak_data()
    kw = dict(errors=np.full(data.shape, 0.01), groups=GROUPS, n_sobol=2, n_local=1)
    a = fit_model(data, peak_model(), workers=1, **kw)
    b = fit_model(data, peak_model(), workers=2, **kw)
    np.testing.assert_allclose(a.vector(), b.vector(), rtol=1e-12)
    assert a.chi2 == pytest.approx(b.chi2, abs=1e-12)


def test_negative_scale_is_forced_to_zero():
    data = np.concatenate([3 * _peak(TRUE) + 0.5, -2 * _peak(TRUE) + 1.0])  # group 1 is a dip
    r = fit_model(data, peak_model(), errors=np.full(data.shape, 0.01), groups=GROUPS, workers=1, n_sobol=0)
    assert r.nuisance["scale[group1]"] == 0.0
    assert any("scale forced to 0" in n for n in r.notes)


def test_linear_background_option():
    e = np.linspace(0, 1, 24)[None, :] * np.ones((48, 1))
    data = peak_data() + 0.3 * e
    from mantid_exp2sim.fitting import FitData, prepare_data

    fd = prepare_data(data, errors=np.full(data.shape, 0.01), groups=GROUPS, spin_model=False)
    fd.energy = e
    r = fit_model(fd, peak_model(), background="linear", workers=1, n_sobol=0)
    assert r.nuisance["slope[group0]"] == pytest.approx(0.3, rel=1e-6)
    np.testing.assert_allclose(r.vector(), TRUE, atol=1e-7)
    assert isinstance(fd, FitData)


def test_model_comparison_prefers_the_true_model():
    rng = np.random.default_rng(0)
    clean = peak_data()
    data = clean + 0.05 * rng.standard_normal(clean.shape)
    results, comp = fit_models(data, [ring_model(), peak_model()], errors=np.full(data.shape, 0.05),
                               groups=GROUPS, workers=1, n_sobol=4)
    assert comp.preferred == "peak" and comp.models[0] == "peak"
    assert comp.strength == "very strong" and not comp.within_misfit
    assert "evidence for peak is very strong" in comp.statement
    row = comp.table[1]
    assert row["model"] == "ring" and row["delta_chi2"] > 100
    assert sum(r["akaike_weight"] for r in comp.table) == pytest.approx(1.0)
    assert comp.to_dict()["preferred"] == "peak"


def test_comparison_within_systematic_misfit():
    # data with a feature neither model has: two peaks; the one-peak and ring fits differ by
    # less than what both leave unexplained
    p2 = _peak(TRUE) + 0.9 * _peak(np.array([-0.3, 0.35, 0.15]))
    data = np.concatenate([p2, p2]) + 0.01 * np.random.default_rng(1).standard_normal((48, 24))
    wide = FunctionForward("peak_wide", ["x0", "y0", "w"], {"x0": 0.0, "y0": 0.0, "w": 0.4},
                           {"x0": (-0.5, 0.5), "y0": (-0.5, 0.5), "w": (0.05, 1.0)},
                           lambda t: np.tile(_peak(t) + 0.02 * _peak(np.array([t[0], t[1], 2 * t[2]])), (2, 1)))
    results, comp = fit_models(data, [peak_model(), wide], errors=np.full(data.shape, 0.01), groups=GROUPS,
                               workers=1, n_sobol=4)
    assert comp.misfit_significant and comp.within_misfit
    assert "differ by less than the fit's systematic misfit" in comp.statement
    assert comp.excess_chi2 == pytest.approx(results[0].chi2 - results[0].dof) or comp.excess_chi2 == pytest.approx(
        results[1].chi2 - results[1].dof)


def test_comparison_needs_the_same_data():
    data = peak_data()
    a = fit_model(data, peak_model(), errors=np.full(data.shape, 0.01), groups=GROUPS, workers=1, n_sobol=0)
    b = fit_model(data, peak_model(), errors=np.full(data.shape, 0.02), groups=GROUPS, workers=1, n_sobol=0)
    with pytest.raises(InputDataError, match="different data"):
        compare_models([a, b])


def test_bad_input():
    data = peak_data()
    err = np.full(data.shape, 0.01)
    with pytest.raises(InputDataError, match="no unmasked bin"):
        fit_model(np.full(data.shape, np.nan), peak_model(), errors=err, groups=GROUPS, workers=1)
    with pytest.raises(InputDataError, match="no unmasked bin"):
        fit_model(data, peak_model(), errors=err, groups=GROUPS, mask=np.ones(data.shape, bool), workers=1)
    with pytest.raises(InputDataError, match="wrong shape"):
        fit_model(data[:40], peak_model(), errors=err[:40], groups=GROUPS[:40], workers=1)
    with pytest.raises(InputDataError, match="errors do not match"):
        fit_model(data, peak_model(), errors=err[:10], groups=GROUPS, workers=1)
    with pytest.raises(InputDataError, match="background is invalid"):
        fit_model(data, peak_model(), errors=err, groups=GROUPS, background="cubic", workers=1)
    with pytest.raises(InputDataError, match="n_sobol is invalid"):
        fit_model(data, peak_model(), errors=err, groups=GROUPS, n_sobol=-1, workers=1)
    with pytest.raises(InputDataError, match="NaN"):
        bad = FunctionForward("nan", ["a"], {"a": 0.5}, {"a": (0, 1)}, lambda t: np.full(data.shape, np.nan))
        fit_model(data, bad, errors=err, groups=GROUPS, workers=1, n_sobol=0)


def test_result_to_json_and_progress_and_cancel():
    import json

    data = peak_data()
    data[0, 0] = np.nan
    seen = []
    r = fit_model(data, peak_model(), errors=np.full(data.shape, 0.01), groups=GROUPS, workers=1, n_sobol=2,
                  progress=lambda f, msg: seen.append((f, msg)))
    d = json.loads(json.dumps(r.to_dict(arrays=True)))
    assert d["model"] == "peak" and d["best_fit"][0][0] is None and len(d["residual"]) == 48
    assert set(d["parameters"]) == {"x0", "y0", "w"} and d["starts"][0]["stage"] == "full"
    assert seen and all(0 <= f <= 1 for f, _ in seen) and "peak" in seen[-1][1]
    assert "x0 = " in r.summary()

    class Cancelled(Exception):
        pass

    def cancel(f, msg):
        raise Cancelled

    with pytest.raises(Cancelled):
        fit_model(data, peak_model(), errors=np.full(data.shape, 0.01), groups=GROUPS, workers=1, progress=cancel)


def test_clipped_data_fit_the_clipped_expectation():
    from scipy.special import ndtr

    # noise-free "clipped" data: the expectation of max(0, a f + b + e), e ~ N(0, s^2)
    s = 0.5
    mu = np.concatenate([3 * _peak(TRUE) - 0.4, 2 * _peak(TRUE) - 0.3])
    z = mu / s
    data = mu * ndtr(z) + s * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
    kw = dict(errors=np.full(data.shape, s), groups=GROUPS, workers=1, n_sobol=2)
    r = fit_model(data, peak_model(), censored=True, **kw)
    np.testing.assert_allclose(r.vector(), TRUE, rtol=1e-6, atol=1e-7)
    assert r.nuisance["scale[group0]"] == pytest.approx(3.0, rel=1e-6)
    assert r.nuisance["background[group1]"] == pytest.approx(-0.3, abs=1e-6)
    assert any("clipped" in n for n in r.notes)
    # fitting the plain model to the same data is biased
    plain = fit_model(data, peak_model(), censored=False, **kw)
    assert abs(plain.values["w"] - TRUE[2]) > 1e-3 and plain.chi2 > 1e-3
    # clip_sigma is checked
    with pytest.raises(InputDataError, match="clip_sigma is invalid"):
        fit_model(data, peak_model(), clip_sigma=np.zeros(data.shape), **kw)
