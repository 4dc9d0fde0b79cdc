"""Network starts in fit_spin_models, exp2sim fit --plot / --network-only, and errors refined from a fit.

Spin-model fits are kept small (every parameter fixed but the dimer's JFW, no Sobol start);
the noise refinement is checked on toy linear and clipped models with known answers.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fit_helpers import TRUE_JFW, dimer_mosaic, fixed_all_but_jfw
from mantid_exp2sim.errors import BundleError, InputDataError
from mantid_exp2sim.fitting import FunctionForward, fit_model, prepare_data
from mantid_exp2sim.fitting.noise import refine_noise, refit
from mantid_exp2sim.fitting.weights import censored_moments, estimate_noise

X, Y = np.meshgrid(np.linspace(-1, 1, 40), np.linspace(-1, 1, 40), indexing="ij")
G = [np.cos(np.pi * X), np.sin(np.pi * Y) * X, X * Y]
THETA = np.array([1.5, -0.7, 0.4])


def linear_model() -> FunctionForward:
    return FunctionForward("linear", ["a", "b", "c"], {"a": 1.0, "b": 0.0, "c": 0.0},
                           {"a": (-5, 5), "b": (-5, 5), "c": (-5, 5)},
                           lambda t: t[0] * G[0] + t[1] * G[1] + t[2] * G[2])


def test_errors_refined_from_the_fit_match_the_analytic_covariance_and_cover():
    """Noise sigma^2 = 0.04 + 0.02 mu, unknown to the first fit (all errors 1): after refine_noise
    and refit the errors equal the linear model's analytic ones and 1-sigma intervals hold ~68 %."""
    clean = sum(t * g for t, g in zip(THETA, G)) + 3.0
    sigma_true = np.sqrt(0.04 + 0.02 * clean)
    A = np.stack([g.ravel() for g in G] + [np.ones(X.size)], axis=1) / sigma_true.ravel()[:, None]
    err_true = np.sqrt(np.diag(np.linalg.inv(A.T @ A)))[:3]
    groups = np.zeros(X.shape, dtype=int)
    hits, ratios, laws = [], [], []
    for seed in range(30):
        data = clean + sigma_true * np.random.default_rng(seed).standard_normal(X.shape)
        kw = dict(scale=False, workers=1, n_sobol=0, censored=False)
        fd = prepare_data(data, errors=np.ones(X.shape), groups=groups, spin_model=False)
        first = fit_model(fd, linear_model(), **kw)
        fd2 = refine_noise(fd, first, censored=False)
        r = refit(fd2, linear_model(), first, scale=False, workers=1, censored=False)
        err = np.array([r.errors[n] for n in "abc"])
        ratios.append(err / err_true)
        hits.extend(np.abs(r.vector() - THETA) <= err)
        laws.append((fd2.error_laws[0]["alpha"], fd2.error_laws[0]["beta"]))
        assert "refined from the fit of linear" in fd2.error_source
    np.testing.assert_allclose(np.median(ratios, axis=0), 1.0, atol=0.06)
    assert 0.55 <= np.mean(hits) <= 0.82  # 0.68 expected; binomial sd 0.05 for 90 draws
    # the law's variance at the mean level (alpha and beta alone are weakly separated here)
    assert np.median([a + b * clean.mean() for a, b in laws]) == pytest.approx(0.04 + 0.02 * clean.mean(), rel=0.1)


def test_refinement_keeps_a_groups_errors_when_too_few_residuals_are_left():
    """A fit whose residuals are all beyond the spike cut leaves no law to fit: the group keeps
    its errors (no crash), and the law says why."""
    from types import SimpleNamespace

    rng = np.random.default_rng(1)
    data = 3.0 + 0.1 * rng.standard_normal(X.shape)
    fd = prepare_data(data, errors=np.full(X.shape, 0.1), groups=np.zeros(X.shape, dtype=int), spin_model=False)
    far = SimpleNamespace(best_fit=data + 50.0, model="far")  # every residual 500 sigma
    fd2 = refine_noise(fd, far, censored=False)
    np.testing.assert_array_equal(fd2.sigma[fd2.fitted], fd.sigma[fd.fitted])
    assert fd2.error_laws[0]["refined"] is False and "fewer than" in fd2.error_laws[0]["reason"]


def test_noise_before_clipping_estimated_from_the_counts_gives_calibrated_fits():
    """Data max(0, mu + e), e ~ N(0, 0.5^2), a third of them zeros, no errors given: the
    estimate from the counts finds the noise before clipping, and the fits' 1-sigma intervals
    hold the truth about as often as they should."""
    model = FunctionForward("bump", ["w"], {"w": 0.25}, {"w": (0.05, 1.0)},
                            lambda t: np.exp(-(X ** 2 + Y ** 2) / t[0]))
    mu = 2.0 * np.exp(-(X ** 2 + Y ** 2) / 0.3) - 0.4
    groups = np.zeros(X.shape, dtype=int)
    z, clips, reds = [], [], []
    for seed in range(10):
        data = np.maximum(0.0, mu + 0.5 * np.random.default_rng(seed).standard_normal(X.shape))
        assert np.mean(data == 0) > 0.3
        sigma, clip, laws = estimate_noise(data[None], np.array([0]))
        assert clip is not None and laws[0]["censored"]
        fd = prepare_data(data, errors=sigma[0], clip_sigma=clip[0], groups=groups, spin_model=False)
        r = fit_model(fd, model, workers=1, n_sobol=0, censored=True)
        z.append((r.values["w"] - 0.3) / r.errors["w"])
        clips.append(np.nanmedian(clip))
        reds.append(r.reduced_chi2)
    assert np.median(clips) == pytest.approx(0.5, rel=0.15)
    assert 0.9 < np.median(reds) < 1.4
    assert 0.4 <= np.mean(np.abs(z) <= 1) <= 0.95 and np.sqrt(np.mean(np.square(z))) < 2.2


def test_clipped_moments_and_the_count_based_estimate():
    m1, v = censored_moments(np.array([0.0, 10.0, -10.0]), np.ones(3))
    np.testing.assert_allclose(m1, [1 / np.sqrt(2 * np.pi), 10.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(v[1], 1.0, rtol=1e-6)
    assert v[0] == pytest.approx(0.5 - 1 / (2 * np.pi), rel=1e-6) and v[2] < 1e-6
    # estimate from counts: clipped images get the noise before clipping too, and no zero error
    rng = np.random.default_rng(0)
    img = np.maximum(0.0, 0.3 + 1.0 * rng.standard_normal((2, 40, 40)))
    img[1] = 5.0 + rng.standard_normal((40, 40))  # a second, unclipped-looking group
    sigma, clip, laws = estimate_noise(img, np.array([0, 1]))
    assert clip is not None and laws[0]["censored"]
    assert np.all(sigma[np.isfinite(img)] > 0) and np.all(clip >= sigma * 0.999)
    assert np.median(clip[0]) == pytest.approx(1.0, rel=0.2)
    # unclipped data: no noise before clipping, errors as the plain estimate
    s2, c2, laws2 = estimate_noise(img[1:], np.array([0]))
    assert c2 is None and not laws2[0]["censored"] and np.median(s2) == pytest.approx(1.0, rel=0.15)


# ------------------------------------------------------------------ spin models and the command
torch = pytest.importorskip("torch")
pytest.importorskip("resins")


@pytest.fixture(scope="module")
def dimer_network(tmp_path_factory):
    """An untrained (seeded) dimer network: its estimate is some point inside the ranges."""
    from mantid_exp2sim.models.regressor import ParameterRegressor
    from mantid_exp2sim.simulate import get_model
    from mantid_exp2sim.train.regressor import export_regressor

    torch.manual_seed(0)
    m = get_model("dimer")
    names = list(m.parameter_names)
    d = tmp_path_factory.mktemp("net")
    path = export_regressor(ParameterRegressor(6, widths=(4, 8, 8), hidden=16), d / "regress_dimer.exp2sim.h5",
                            model="dimer", names=names, ranges=[m.ranges[k] for k in names], exporter="torchscript")
    return path


def dimer_fixed() -> dict[str, float]:
    from mantid_exp2sim.simulate import get_model

    names = get_model("dimer").parameter_names
    return {k: v for k, v in fixed_all_but_jfw().items() if k in names}


def _mosaic_histo():
    from mantid_exp2sim.histogram import MDHisto
    from mantid_exp2sim.mosaic import mosaic_axes

    signal, errors = dimer_mosaic()
    return MDHisto(signal, mosaic_axes(), errors=errors)


def test_fit_starts_include_the_network_estimate(dimer_network):
    from mantid_exp2sim.tasks.fit import fit_spin_models

    fixed = dimer_fixed()
    out = fit_spin_models(_mosaic_histo(), ["dimer"], fixed=fixed, n_sobol=0, networks={"dimer": dimer_network},
                          workers=1, n_scan=0, n_local=1)
    est = out.estimates["dimer"]
    r = out.results[0]
    extra = [s for s in r.starts if s.source == "extra"]
    assert len(extra) == 1 and extra[0].local
    assert extra[0].start["JFW"] == pytest.approx(est.values["JFW"])
    assert r.values["JFW"] == pytest.approx(TRUE_JFW, abs=0.05)
    d = out.to_dict()["network"]["dimer"]
    assert d["parameters"]["JFW"] == pytest.approx(est.values["JFW"]) and d["errors"]["JFW"] > 0
    # a network for another model is refused before any fit
    with pytest.raises(BundleError, match="another model"):
        fit_spin_models(_mosaic_histo(), ["goodenough"], networks={"goodenough": dimer_network})
    with pytest.raises(InputDataError, match="not fitted"):
        fit_spin_models(_mosaic_histo(), ["goodenough"], networks={"dimer": dimer_network})


def test_cli_plot_and_network_only(dimer_network, tmp_path, capsys):
    from mantid_exp2sim.cli import fit as cli_fit

    src = tmp_path / "m.npy"
    np.save(src, dimer_mosaic()[0])
    png = tmp_path / "fit.png"
    fix = ["--fix", *[f"{k}={v}" for k, v in dimer_fixed().items()]]
    rc = cli_fit.main([str(src), "--models", "dimer", *fix, "--starts", "0", "--network",
                       f"dimer={dimer_network}", "--plot", str(png), "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    d = json.loads(out.strip().splitlines()[-1])
    assert d["preferred"] == "dimer" and "dimer" in d["network"]
    # the figure is not overwritten without --overwrite, and a bad extension fails before any fit
    for extra, needle in (([], "exists"), (["--plot", str(tmp_path / "x.txt")], "x.txt")):
        rc = cli_fit.main([str(src), "--models", "dimer", "--starts", "0", "--plot", str(png), *extra])
        err = capsys.readouterr().err
        assert rc == 1 and needle in err and "Traceback" not in err
    rc = cli_fit.main([str(src), "--models", "dimer", "--network", f"dimer={dimer_network}", "--network-only",
                       "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    d = json.loads(out)
    assert set(d["network"]["dimer"]["parameters"]) == {"JFW", "JA1", "JA2", "JFS", "Jperp", "D"}
    assert d["preferred"] == "dimer" and d["models"][0]["free"] == []
    rc = cli_fit.main([str(src), "--models", "goodenough", "--network", f"goodenough={dimer_network}",
                       "--network-only"])
    err = capsys.readouterr().err
    assert rc == 1 and "another model" in err and len(err.strip().splitlines()) == 1
    assert cli_fit.main([str(src), "--no-network", "--network-only"]) == 2


def test_dimer_relabelling_moves_fits_onto_the_canonical_branch():
    from types import SimpleNamespace

    from mantid_exp2sim.fitting.symmetry import canonical_values, canonicalise_result

    names = ["JFW", "JA1", "JA2", "JFS", "Jperp", "D"]
    swapped = [-14.2, 2.0, 1.0, -8.4, 0.9, 0.07]
    np.testing.assert_allclose(canonical_values("dimer", names, swapped), [-8.4, 1.0, 2.0, -14.2, 0.9, 0.07])
    np.testing.assert_allclose(canonical_values("dimer", names, [-8.4, 1.0, 2.0, -14.2, 0.9, 0.07]),
                               [-8.4, 1.0, 2.0, -14.2, 0.9, 0.07])
    np.testing.assert_allclose(canonical_values("goodenough", ["JF1"], [-3.0]), [-3.0])
    corr = np.eye(6)
    corr[0, 1] = corr[1, 0] = 0.5  # JFW-JA1 correlated: becomes JFS-JA2 after the swap
    r = SimpleNamespace(model="dimer", parameter_names=tuple(names), values=dict(zip(names, swapped)),
                        errors=dict(zip(names, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])), fixed=(), free=tuple(names),
                        covariance=corr.copy(), correlation=corr.copy(), notes=[])
    canonicalise_result(r)
    assert r.values["JFW"] == -8.4 and r.values["JFS"] == -14.2 and r.values["JA1"] == 1.0
    assert r.errors["JFW"] == 0.4 and r.errors["JFS"] == 0.1 and r.errors["JA2"] == 0.2
    assert r.correlation[3, 2] == 0.5 and r.correlation[0, 1] == 0.0 and "canonical branch" in r.notes[-1]
