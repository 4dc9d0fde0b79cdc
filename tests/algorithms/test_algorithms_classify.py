"""ClassifySpinWaveModel on MDHistoWorkspaces (real Mantid when importable, else the test double).

Uses a tiny randomly initialised DUQ classifier bundle written by the real exporter, and
compares every result with the Mantid-free classify task (mantid_exp2sim.tasks.classify).
"""

from __future__ import annotations

import numpy as np
import pytest

from mantid_exp2sim import classify, score_histograms  # importing the package registers the algorithms
from mantid_exp2sim.tasks.classify import combine_verdict, verdict_of
from mantid_exp2sim.histogram import Axis, MDHisto
from mantid_exp2sim.mosaic import EI_LIST, MOSAIC_SHAPE, build_mosaic, mosaic_axes
from workspace_helpers import make_ws

pytestmark = [pytest.mark.mantid, pytest.mark.torch]

CLASSES = ["dimer", "goodenough"]


@pytest.fixture(scope="module")
def clf(tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from mantid_exp2sim.models.duq import DUQClassifier
    from mantid_exp2sim.train.export import export_classifier

    torch.manual_seed(1)
    model = DUQClassifier(widths=(4, 8, 8, 8), feature_dim=8, embedding_dim=8, length_scale=1.0)
    folder = tmp_path_factory.mktemp("clf_alg")
    th = {"confident": 0.6, "out_of_distribution": 0.3}
    return export_classifier(model, folder / "classify_2d.exp2sim.h5", classes=CLASSES, thresholds=th,
                             exporter="torchscript", command=["pytest"])


MOSAIC_DIMS = (("MosaicRow", "", "General Frame", 0.0, 240.0), ("MosaicColumn", "", "General Frame", 0.0, 400.0))


def mosaic_signal(seed=0):
    rng = np.random.default_rng(seed)
    s = rng.gamma(2.0, 1.0, MOSAIC_SHAPE)
    s[rng.random(MOSAIC_SHAPE) < 0.05] = np.nan
    return s


def volume_dims(ei):
    return (("[H,0,0]", "r.l.u.", "HKL", -1.0, 1.0), ("[0,K,0]", "r.l.u.", "HKL", -1.0, 1.0),
            ("DeltaE", "meV", "General Frame", 0.0, float(ei)))


def volumes(simpleapi, log_ei=False, seed=0):
    rng = np.random.default_rng(seed)
    names, arrays = [], []
    for ei in EI_LIST:
        sig = rng.gamma(2.0, 1.0, (8, 8, 12))
        name = f"vol_{int(ei)}"
        ws = make_ws(simpleapi, sig, volume_dims(ei), name)
        if log_ei:
            simpleapi.AddSampleLog(Workspace=ws, LogName="Ei", LogText=str(ei), LogType="Number")
        names.append(name)
        arrays.append(sig)
    return names, arrays


def direct_volumes(arrays):
    hs = [MDHisto(a, tuple(Axis(d[0], d[1], d[3], d[4], n, frame=d[2]) for d, n in zip(volume_dims(ei), a.shape)))
          for a, ei in zip(arrays, EI_LIST)]
    return build_mosaic(hs, list(EI_LIST))


def row_k(table, i=0):
    row = table.row(i)
    return np.array([row[f"K_{c}"] for c in CLASSES])


def test_mosaic_through_simpleapi(mantid, clf):
    api, simpleapi = mantid
    sig = mosaic_signal()
    ws = make_ws(simpleapi, sig, MOSAIC_DIMS, "mosaic_ws")
    before = np.array(ws.getSignalArray(), copy=True)
    table = simpleapi.ClassifySpinWaveModel(InputWorkspace=ws, ModelFile=str(clf), OutputWorkspace="clf_table")
    assert table.getColumnNames() == ["Input", "K_dimer", "K_goodenough", "Prediction", "Verdict",
                                      "ClassifierVerdict", "DomainZone", "DomainMean"]
    assert table.rowCount() == 1
    expected = classify(MDHisto(sig, mosaic_axes()), str(clf))
    np.testing.assert_allclose(row_k(table), [expected.K[c] for c in CLASSES], rtol=1e-5)
    row = table.row(0)
    assert row["Input"] == "mosaic_ws"
    assert row["Prediction"] == CLASSES[int(np.argmax(row_k(table)))]
    own = verdict_of(row_k(table), {"confident": 0.6, "out_of_distribution": 0.3})
    assert row["ClassifierVerdict"] == own
    # the shipped convolution generator scores the input's domain
    assert row["DomainZone"] == expected.domain["zone"]
    assert row["DomainMean"] == pytest.approx(expected.domain["mean"], rel=1e-6)
    assert row["Verdict"] == combine_verdict(own, row["DomainZone"])
    np.testing.assert_array_equal(ws.getSignalArray(), before)  # input untouched


def test_volumes_with_ei_property_and_with_sample_logs(mantid, clf):
    api, simpleapi = mantid
    names, arrays = volumes(simpleapi, log_ei=True)
    expected = classify(direct_volumes(arrays), str(clf))
    t1 = simpleapi.ClassifySpinWaveModel(InputWorkspaces=names, Ei=list(EI_LIST), ModelFile=str(clf),
                                         OutputWorkspace="t_prop")
    t2 = simpleapi.ClassifySpinWaveModel(InputWorkspaces=names[::-1], ModelFile=str(clf), OutputWorkspace="t_log")
    for t in (t1, t2):
        assert t.rowCount() == 1
        np.testing.assert_allclose(row_k(t), [expected.K[c] for c in CLASSES], rtol=1e-5)
    assert t1.row(0)["Input"] == ",".join(names)


def test_several_mosaics_one_row_each(mantid, clf):
    api, simpleapi = mantid
    make_ws(simpleapi, mosaic_signal(1), MOSAIC_DIMS, "m1")
    make_ws(simpleapi, mosaic_signal(2), MOSAIC_DIMS, "m2")
    t = simpleapi.ClassifySpinWaveModel(InputWorkspaces=["m1", "m2"], ModelFile=str(clf), OutputWorkspace="t2")
    assert t.rowCount() == 2 and t.column("Input") == ["m1", "m2"]
    e2 = classify(MDHisto(mosaic_signal(2), mosaic_axes()), str(clf))
    np.testing.assert_allclose(row_k(t, 1), [e2.K[c] for c in CLASSES], rtol=1e-5)


def test_activation_map_output(mantid, clf):
    api, simpleapi = mantid
    sig = mosaic_signal(3)
    ws = make_ws(simpleapi, sig, MOSAIC_DIMS, "cam_in")
    alg = api.AlgorithmManager.create("ClassifySpinWaveModel")
    alg.setRethrows(True)
    alg.setProperty("InputWorkspace", ws)
    alg.setProperty("ModelFile", str(clf))
    alg.setProperty("OutputWorkspace", "cam_table")
    alg.setProperty("OutputActivationMap", "cam_map")
    alg.execute()
    cam = api.mtd["cam_map"]
    arr = cam.getSignalArray()
    assert arr.shape == MOSAIC_SHAPE
    assert cam.getDimension(0).name == "MosaicRow" and cam.getDimension(1).name == "MosaicColumn"
    np.testing.assert_array_equal(np.isnan(arr), np.isnan(sig))
    direct = classify(MDHisto(sig, mosaic_axes()), str(clf), activation_map=True)
    np.testing.assert_allclose(arr, direct.activation_map.signal, atol=1e-6)
    run = cam.getExperimentInfo(0).run()
    assert run["exp2sim_grad_cam_class"].value == api.mtd["cam_table"].row(0)["Prediction"]
    assert run["exp2sim_bundle_id"].value == direct.provenance["bundle_id"]


def test_deconvolve_first(mantid, clf, tiny_bundle):
    api, simpleapi = mantid
    sig = mosaic_signal(4)
    ws = make_ws(simpleapi, sig, MOSAIC_DIMS, "dec_in")
    deconv = tiny_bundle("deconvolve", 2)
    t = simpleapi.ClassifySpinWaveModel(InputWorkspace=ws, ModelFile=str(clf), Deconvolve=True,
                                        DeconvolutionModelFile=str(deconv), OutputWorkspace="dec_t")
    e = classify(MDHisto(sig, mosaic_axes()), str(clf), deconvolve=True, deconvolution_bundle=str(deconv))
    np.testing.assert_allclose(row_k(t), [e.K[c] for c in CLASSES], rtol=1e-5)


def test_domain_check_options(mantid, clf, tmp_path_factory):
    api, simpleapi = mantid
    from scored_bundles import write_scored_generator


    rng = np.random.default_rng(9)
    bank = [MDHisto(rng.gamma(2.0, 1.0, MOSAIC_SHAPE), mosaic_axes()) for _ in range(50)]
    scorer = write_scored_generator(tmp_path_factory.mktemp("alg_dom"), bank[:42], bank[42:], task="convolve",
                                    repeats=100)
    sig = mosaic_signal(6)
    ws = make_ws(simpleapi, sig, MOSAIC_DIMS, "dom_in")
    off = simpleapi.ClassifySpinWaveModel(InputWorkspace=ws, ModelFile=str(clf), CheckDomain=False,
                                          OutputWorkspace="dom_off").row(0)
    assert off["DomainZone"] == "" and np.isnan(off["DomainMean"]) and off["Verdict"] == off["ClassifierVerdict"]
    on = simpleapi.ClassifySpinWaveModel(InputWorkspace=ws, ModelFile=str(clf), DomainModelFile=str(scorer),
                                         OutputWorkspace="dom_on").row(0)
    (direct,) = score_histograms([MDHisto(sig, mosaic_axes())], scorer, repeats=1000, seed=0)
    assert on["DomainZone"] == direct.zone and on["DomainMean"] == pytest.approx(direct.mean, rel=1e-6)
    assert on["Verdict"] == combine_verdict(on["ClassifierVerdict"], direct.zone)


def test_default_model_from_the_bundle_folder(mantid, clf, monkeypatch):
    api, simpleapi = mantid
    monkeypatch.setenv("EXP2SIM_BUNDLE_DIR", str(clf.parent))
    ws = make_ws(simpleapi, mosaic_signal(5), MOSAIC_DIMS, "def_in")
    t = simpleapi.ClassifySpinWaveModel(InputWorkspace=ws, OutputWorkspace="def_t")
    assert t.rowCount() == 1


# ---------------------------------------------------------------------- checks
def _issues(**props):
    from mantid_exp2sim.algorithms.ClassifySpinWaveModel import ClassifySpinWaveModel

    alg = ClassifySpinWaveModel()
    alg.initialize()
    alg.setProperty("OutputWorkspace", "checked")
    for k, v in props.items():
        alg.setProperty(k, v)
    return alg.validateInputs()


def test_validate_inputs_messages(mantid, clf, tiny_bundle, monkeypatch):
    api, simpleapi = mantid
    monkeypatch.setenv("EXP2SIM_BUNDLE_DIR", str(clf.parent))
    small = make_ws(simpleapi, np.ones((200, 400)), (("a", "", "General Frame", 0, 1), ("b", "", "General Frame", 0, 1)),
                    "small")
    assert "wrong shape" in _issues(InputWorkspace=small)["InputWorkspace"]
    assert "InputWorkspace" in _issues()
    names, _ = volumes(simpleapi, log_ei=False)
    msg = _issues(InputWorkspaces=names)["Ei"]
    assert "missing" in msg and "vol_25" in msg
    assert "6 volumes" in _issues(InputWorkspaces=names, Ei=[25.0, 35.0])["Ei"]
    mosaic = make_ws(simpleapi, mosaic_signal(), MOSAIC_DIMS, "mos")
    assert "not both" in _issues(InputWorkspace=mosaic, InputWorkspaces=names)["InputWorkspaces"]
    assert "No workspace" in _issues(InputWorkspaces=["nope"])["InputWorkspaces"]
    assert "Wrong kind" in _issues(InputWorkspace=mosaic, ModelFile=str(tiny_bundle("deconvolve", 2)))["ModelFile"]
    bad_dec = _issues(InputWorkspace=mosaic, Deconvolve=True, DeconvolutionModelFile=str(tiny_bundle("deconvolve", 3)))
    assert "3D data" in bad_dec["DeconvolutionModelFile"]
    assert "3D" in _issues(InputWorkspace=mosaic, DomainModelFile=str(tiny_bundle("convolve", 3)))["DomainModelFile"]
    assert "DomainModelFile" in _issues(InputWorkspace=mosaic, DomainModelFile=str(clf))
    assert "DomainModelFile" not in _issues(InputWorkspace=mosaic, DomainModelFile=str(clf), CheckDomain=False)
    make_ws(simpleapi, mosaic_signal(1), MOSAIC_DIMS, "mos2")
    assert "one mosaic" in _issues(InputWorkspaces=["mos", "mos2"], OutputActivationMap="m")["OutputActivationMap"]
    assert _issues(InputWorkspace=mosaic) == {}
    with pytest.raises(RuntimeError, match="wrong shape|invalid"):
        simpleapi.ClassifySpinWaveModel(InputWorkspace=small, OutputWorkspace="never")
    assert "never" not in api.mtd
