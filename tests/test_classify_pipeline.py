"""Tests of the Mantid-free classification task (mantid_exp2sim.tasks.classify)."""

import json

import numpy as np
import pytest

from mantid_exp2sim import VERDICTS, classify, score_histograms
from mantid_exp2sim.bundle import resolve
from mantid_exp2sim.errors import BundleError, InputDataError
from mantid_exp2sim.histogram import Axis, MDHisto
from mantid_exp2sim.mosaic import EI_LIST, MOSAIC_SHAPE, build_mosaic, mosaic_axes
from mantid_exp2sim.tasks.classify import calibrate_thresholds, combine_verdict, network_input, prepare_mosaic, verdict_of


def test_verdict_rule():
    th = {"confident": 0.8, "out_of_distribution": 0.3}
    assert verdict_of(np.array([0.05, 0.95]), th) == "confident"
    assert verdict_of(np.array([0.85, 0.9]), th) == "uncertain"  # both classes claim it
    assert verdict_of(np.array([0.6, 0.5]), th) == "uncertain"
    assert verdict_of(np.array([0.2, 0.1]), th) == "out of distribution"
    assert set(VERDICTS) == {"confident", "uncertain", "out of distribution"}


def test_calibrate_thresholds_rule():
    rng = np.random.default_rng(0)
    n = 400
    y = rng.integers(0, 2, n)
    kmax = rng.uniform(0.5, 1.0, n)
    k = np.zeros((n, 2))
    k[np.arange(n), y] = kmax
    k[np.arange(n), 1 - y] = 0.05
    k[:20] = k[:20, ::-1]  # 20 wrong predictions
    th = calibrate_thresholds(k, y, confident_coverage=0.95, ood_quantile=0.01)
    correct = k.argmax(1) == y
    assert th["confident"] == pytest.approx(np.quantile(k.max(1)[correct], 0.05))
    assert th["out_of_distribution"] == pytest.approx(min(np.quantile(k.max(1), 0.01), th["confident"]))
    assert th["holdout_accuracy"] == pytest.approx(correct.mean())
    conf = np.mean([verdict_of(r, th) == "confident" for r in k[correct]])
    assert conf >= 0.95
    json.dumps(th)
    with pytest.raises(InputDataError):
        calibrate_thresholds(np.array([[0.1, 0.9]]), np.array([0]))


def test_prepare_mosaic_from_mosaic_and_volumes():
    m = MDHisto(np.random.default_rng(0).random(MOSAIC_SHAPE), mosaic_axes())
    out = prepare_mosaic(m)
    assert out.shape == MOSAIC_SHAPE and out.metadata["layout"] == "pcsmo-mosaic-v1"
    # a mosaic with an extra integrated dimension is accepted
    m3 = MDHisto(m.signal[:, :, None], (*mosaic_axes(), Axis("L", "r.l.u.", -10, 10, 1)))
    np.testing.assert_array_equal(prepare_mosaic(m3).signal, m.signal)
    vols = [
        MDHisto(
            np.full((4, 4, 10), float(i + 1)),
            (Axis("[H,0,0]", "r.l.u.", -1, 1, 4), Axis("[0,K,0]", "r.l.u.", -1, 1, 4), Axis("DeltaE", "meV", 0, ei, 10)),
        )
        for i, ei in enumerate(EI_LIST)
    ]
    built = prepare_mosaic(vols, list(EI_LIST))
    np.testing.assert_array_equal(built.signal, build_mosaic(vols, list(EI_LIST)).signal)
    with pytest.raises(InputDataError, match="240x400"):
        prepare_mosaic(MDHisto.from_array(np.ones((10, 10))))
    with pytest.raises(InputDataError, match="mosaic"):
        prepare_mosaic([m, vols[0]])


def test_network_input_is_scale_free():
    rng = np.random.default_rng(1)
    sig = rng.gamma(2.0, 1.0, MOSAIC_SHAPE)
    sig[:5, :5] = np.nan
    a = network_input(MDHisto(sig, mosaic_axes()))
    b = network_input(MDHisto(sig * 1234.5, mosaic_axes()))
    assert a.shape == (1, 2, 240, 400)
    np.testing.assert_allclose(a, b, rtol=1e-5)
    assert a[0, 1, 0, 0] == 0.0 and a[0, 0, 0, 0] == 0.0


@pytest.fixture(scope="module")
def classifier_bundle(tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from mantid_exp2sim.models.duq import DUQClassifier
    from mantid_exp2sim.train.export import export_classifier

    torch.manual_seed(0)
    model = DUQClassifier(widths=(4, 8, 8, 8), feature_dim=8, embedding_dim=8, length_scale=1.0)
    path = tmp_path_factory.mktemp("clf") / "classify_2d.exp2sim.h5"
    th = {"confident": 0.5, "out_of_distribution": 0.2, "rule": "test"}
    return export_classifier(
        model, path, classes=["dimer", "goodenough"], thresholds=th, exporter="torchscript", command=["pytest"]
    )


@pytest.mark.torch
def test_classify_matches_the_torch_model_and_is_scale_invariant(classifier_bundle):
    import torch

    from mantid_exp2sim.bundle import load_bundle

    rng = np.random.default_rng(2)
    sig = rng.gamma(2.0, 1.0, MOSAIC_SHAPE)
    sig[rng.random(MOSAIC_SHAPE) < 0.1] = np.nan
    mosaic = MDHisto(sig, mosaic_axes())
    res = classify(mosaic, classifier_bundle, backend="onnx", domain_check=False)
    b = load_bundle(classifier_bundle)
    model = b.build_torch_model()
    with torch.no_grad():
        k = model(torch.from_numpy(network_input(mosaic))).numpy()[0]
    np.testing.assert_allclose([res.K["dimer"], res.K["goodenough"]], k, rtol=1e-4)
    assert res.prediction == ["dimer", "goodenough"][int(np.argmax(k))]
    assert res.verdict == res.classifier_verdict == verdict_of(k, b.manifest["thresholds"])
    assert res.domain is None
    scaled = classify(MDHisto(sig * 0.01, mosaic_axes()), classifier_bundle, backend="torch")
    np.testing.assert_allclose(list(scaled.K.values()), list(res.K.values()), rtol=1e-4)
    d = res.to_dict()
    json.dumps(d)
    assert set(d) >= {"K", "prediction", "verdict"} and d["provenance"]["bundle_id"] == b.bundle_id
    assert d["provenance"]["backend"] == "onnx"


@pytest.mark.torch
def test_activation_map_on_the_mosaic_axes(classifier_bundle):
    rng = np.random.default_rng(3)
    sig = rng.gamma(2.0, 1.0, MOSAIC_SHAPE)
    sig[:40, :40] = np.nan
    res = classify(MDHisto(sig, mosaic_axes()), classifier_bundle, activation_map=True)
    cam = res.activation_map
    assert cam.shape == MOSAIC_SHAPE and cam.axes[0].name == "MosaicRow"
    assert np.isnan(cam.signal[:40, :40]).all()
    finite = cam.signal[np.isfinite(cam.signal)]
    assert finite.min() >= 0 and finite.max() <= 1.0
    assert cam.metadata["grad_cam_class"] == res.prediction
    assert res.tile_importance.shape == (6, 10)


@pytest.mark.torch
def test_classify_with_deconvolution(classifier_bundle, tiny_bundle):
    rng = np.random.default_rng(4)
    sig = rng.gamma(2.0, 1.0, MOSAIC_SHAPE)
    res = classify(
        MDHisto(sig, mosaic_axes()), classifier_bundle, deconvolve=True,
        deconvolution_bundle=tiny_bundle("deconvolve", 2),
    )
    assert res.provenance["deconvolved"] is True
    assert res.provenance["deconvolution_bundle_id"]
    from mantid_exp2sim.inference import translate

    deconv = translate(MDHisto(sig, mosaic_axes()), str(tiny_bundle("deconvolve", 2)))
    direct = classify(deconv, classifier_bundle)
    np.testing.assert_allclose(list(res.K.values()), list(direct.K.values()), rtol=1e-5)


def test_classifier_bundle_rejects_other_bundles(tiny_bundle):
    with pytest.raises(BundleError):
        resolve.classifier_bundle(tiny_bundle("deconvolve", 2))
    with pytest.raises(BundleError):
        resolve.classifier_bundle("/nonexistent/classify.exp2sim.h5")


def test_domain_zone_folds_into_the_verdict():
    assert combine_verdict("confident", None) == "confident"
    assert combine_verdict("confident", "trustworthy") == "confident"
    assert combine_verdict("confident", "expert opinion") == "uncertain"
    assert combine_verdict("uncertain", "expert opinion") == "uncertain"
    assert combine_verdict("out of distribution", "expert opinion") == "out of distribution"
    for v in VERDICTS:
        assert combine_verdict(v, "untrustworthy") == "out of distribution"
    with pytest.raises(ValueError):
        combine_verdict("confident", "unknown zone")


@pytest.fixture(scope="module")
def mosaic_scorer(tmp_path_factory):
    """Generator bundles whose reference banks hold gamma-noise mosaics."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from scored_bundles import write_scored_generator

    rng = np.random.default_rng(5)
    folder = tmp_path_factory.mktemp("mosaic_scorer")

    def mosaics(n):
        return [MDHisto(rng.gamma(2.0, 1.0, MOSAIC_SHAPE), mosaic_axes()) for _ in range(n)]

    return {task: write_scored_generator(folder, mosaics(45), mosaics(10), task=task, repeats=100)
            for task in ("convolve", "deconvolve")}


@pytest.mark.torch
def test_classify_reports_the_inputs_domain(classifier_bundle, mosaic_scorer, tiny_bundle, monkeypatch):
    rng = np.random.default_rng(6)
    like_training = MDHisto(rng.gamma(2.0, 1.0, MOSAIC_SHAPE), mosaic_axes())
    ramp = np.add.outer(np.linspace(0, 50, MOSAIC_SHAPE[0]), np.linspace(0, 80, MOSAIC_SHAPE[1]))
    unlike = MDHisto(ramp, mosaic_axes())
    results = {}
    for name, m in (("like", like_training), ("unlike", unlike)):
        res = classify(m, classifier_bundle, domain_bundle=mosaic_scorer["convolve"], domain_repeats=100)
        (direct,) = score_histograms([m], mosaic_scorer["convolve"], repeats=100, seed=0)
        assert res.domain["zone"] == direct.zone and res.domain["mean"] == pytest.approx(direct.mean)
        assert res.verdict == combine_verdict(res.classifier_verdict, direct.zone)
        assert res.to_dict()["domain"]["zone"] == direct.zone
        results[name] = res
    assert results["like"].domain["zone"] != "untrustworthy", results["like"].domain
    assert results["unlike"].domain["zone"] == "untrustworthy", results["unlike"].domain
    assert results["unlike"].domain["mean"] > 3 * results["like"].domain["mean"]
    assert results["unlike"].verdict == "out of distribution"
    # defaults: the convolution generator for simulation-like input, the deconvolution
    # generator (scoring the raw input) with deconvolve
    folder = mosaic_scorer["convolve"].parent
    monkeypatch.setenv("EXP2SIM_BUNDLE_DIR", str(folder))
    plain = classify(unlike, classifier_bundle, domain_repeats=100)
    assert plain.domain["bundle_id"] == results["unlike"].domain["bundle_id"]
    deconv = classify(unlike, classifier_bundle, deconvolve=True, deconvolution_bundle=tiny_bundle("deconvolve", 2),
                      domain_repeats=100)
    (raw,) = score_histograms([unlike], mosaic_scorer["deconvolve"], repeats=100, seed=0)
    assert deconv.domain["mean"] == pytest.approx(raw.mean)


@pytest.mark.torch
def test_domain_check_is_skipped_without_its_default_bundle(classifier_bundle, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("EXP2SIM_BUNDLE_DIR", str(tmp_path))
    m = MDHisto(np.random.default_rng(7).gamma(2.0, 1.0, MOSAIC_SHAPE), mosaic_axes())
    with caplog.at_level("WARNING", logger="mantid_exp2sim.classify"):
        res = classify(m, classifier_bundle)
    assert res.domain is None and res.verdict == res.classifier_verdict
    assert "domain check skipped" in caplog.text


def test_fit_kernel_power_recovers_a_known_miscalibration():
    from mantid_exp2sim.tasks.classify import expected_calibration_error, fit_kernel_power

    rng = np.random.default_rng(3)
    n, a_true = 20000, 2.5
    p = rng.uniform(0.5, 1.0, n)  # the true probability that the prediction is right
    y_pred = rng.integers(0, 2, n)
    right = rng.random(n) < p
    y = np.where(right, y_pred, 1 - y_pred)
    k = np.full((n, 2), 0.01)
    k[np.arange(n), y_pred] = p ** (1.0 / a_true)  # over-confident K: K ** a_true is calibrated
    assert expected_calibration_error(k, y) > 0.05
    a = fit_kernel_power(k, y)
    assert a == pytest.approx(a_true, rel=0.05)
    assert expected_calibration_error(k ** a, y) < 0.01
    # a perfectly calibrated K needs no change
    k_cal = k ** a_true
    assert fit_kernel_power(k_cal, y) == pytest.approx(1.0, rel=0.05)


def test_expected_calibration_error_of_a_known_case():
    from mantid_exp2sim.tasks.classify import expected_calibration_error

    # 10 answers with max K 0.95 (bin 9), 8 right; 10 with 0.55 (bin 5), 5 right
    k = np.array([[0.95, 0.0]] * 10 + [[0.55, 0.0]] * 10)
    y = np.array([0] * 8 + [1] * 2 + [0] * 5 + [1] * 5)
    assert expected_calibration_error(k, y) == pytest.approx(0.5 * 0.15 + 0.5 * 0.05)


def test_thresholds_bound_the_confident_wrong_rate():
    from mantid_exp2sim.tasks.classify import confident_wrong_rate

    n = 1000
    kmax = np.linspace(0.3, 0.999, n)
    y_pred = np.zeros(n, int)
    y = y_pred.copy()
    rng = np.random.default_rng(0)
    wrong_low = rng.choice(np.arange(0, 600), 120, replace=False)  # errors below K = 0.72
    y[wrong_low] = 1
    y[[700, 900]] = 1  # two errors above
    k = np.stack([kmax, np.full(n, 0.01)], 1)
    th = calibrate_thresholds(k, y, max_confident_wrong=0.01)
    rate = confident_wrong_rate(k, y, th)
    assert rate["confident_wrong_rate"] <= 0.01
    above = kmax >= th["confident"]
    assert (y[above] != 0).mean() <= 0.01
    # the lowest such threshold: one step lower breaks the bound or reaches the low errors
    assert th["confident"] <= kmax[600] and th["holdout_confident_wrong_rate"] == rate["confident_wrong_rate"]
    assert 0 < th["out_of_distribution"] <= th["confident"]
    assert "at most 0.01" in th["rule"]
    json.dumps(th)
