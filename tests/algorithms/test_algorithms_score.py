"""ScoreDomainApplicability on MDHistoWorkspaces (real Mantid when importable, else the test double).

Uses a tiny generator bundle with an encoder graph and a reference bank built by
build_reference_bank from its own encoder features; results are compared with the
Mantid-free score task (mantid_exp2sim.tasks.score).
"""

from __future__ import annotations

import numpy as np
import pytest

from mantid_exp2sim import score_histograms  # importing the package registers the algorithms
from mantid_exp2sim.domain import zone_of
from mantid_exp2sim.histogram import Axis, MDHisto
from workspace_helpers import make_ws

pytestmark = [pytest.mark.mantid, pytest.mark.torch]

DIMS2 = (("[H,0,0]", "r.l.u.", "HKL", -1.0, 1.0), ("DeltaE", "meV", "General Frame", 0.0, 40.0))
DIMS3 = (("[H,0,0]", "r.l.u.", "HKL", -1.0, 1.0), ("[0,K,0]", "r.l.u.", "HKL", -1.0, 1.0),
         ("DeltaE", "meV", "General Frame", 0.0, 40.0))


def histo(signal, dims):
    return MDHisto(signal, tuple(Axis(d[0], d[1], d[3], d[4], n, frame=d[2]) for d, n in zip(dims, signal.shape)))


def sample(rng, shape=(16, 16)):
    x = rng.gamma(2.0, 1.0, shape)
    x[4:6] += 5.0
    return x


@pytest.fixture(scope="module")
def score_bundle(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from scored_bundles import write_scored_generator

    rng = np.random.default_rng(0)
    train = [histo(sample(rng), DIMS2) for _ in range(60)]
    holdout = [histo(sample(rng), DIMS2) for _ in range(20)]
    return write_scored_generator(tmp_path_factory.mktemp("score_bundle"), train, holdout, seed=7, repeats=200)


def test_score_table_and_distribution(mantid, score_bundle):
    api, simpleapi = mantid
    rng = np.random.default_rng(11)
    a = sample(rng)
    b = np.zeros((16, 16))
    b[::3, ::2] = 50.0  # unlike the training samples
    make_ws(simpleapi, a, DIMS2, "in_a")
    make_ws(simpleapi, b, DIMS2, "in_b")
    alg = api.AlgorithmManager.create("ScoreDomainApplicability")
    alg.setRethrows(True)
    alg.setProperty("InputWorkspaces", ["in_a", "in_b"])
    alg.setProperty("ModelFile", str(score_bundle))
    alg.setProperty("Repeats", 150)
    alg.setProperty("Seed", 3)
    alg.setProperty("OutputWorkspace", "score_t")
    alg.setProperty("OutputDistribution", "score_d")
    alg.execute()
    t, d = api.mtd["score_t"], api.mtd["score_d"]
    assert t.getColumnNames() == ["Input", "Mean", "Std", "P5", "P50", "P95", "Zone"]
    assert t.column("Input") == ["in_a", "in_b"]
    direct = score_histograms([histo(a, DIMS2), histo(b, DIMS2)], str(score_bundle), repeats=150, seed=3)
    for i, r in enumerate(direct):
        row = t.row(i)
        assert row["Mean"] == pytest.approx(r.mean, rel=1e-9)
        assert row["Std"] == pytest.approx(r.std, rel=1e-9)
        assert row["P5"] <= row["P50"] <= row["P95"]
        assert row["Zone"] == zone_of(r.mean, r.thresholds)
    assert d.getColumnNames() == ["in_a", "in_b"] and d.rowCount() == 150
    np.testing.assert_allclose(d.column("in_b"), direct[1].distances, rtol=1e-12)
    assert t.row(1)["Mean"] > t.row(0)["Mean"]
    assert t.row(0)["Zone"] == "trustworthy"


def test_seed_and_defaults(mantid, score_bundle, monkeypatch):
    api, simpleapi = mantid
    monkeypatch.setenv("EXP2SIM_BUNDLE_DIR", str(score_bundle.parent))
    make_ws(simpleapi, sample(np.random.default_rng(1)), DIMS2, "s_in")
    t1 = simpleapi.ScoreDomainApplicability(InputWorkspaces=["s_in"], Repeats=50, OutputWorkspace="t1")
    t2 = simpleapi.ScoreDomainApplicability(InputWorkspaces=["s_in"], Repeats=50, OutputWorkspace="t2")
    t3 = simpleapi.ScoreDomainApplicability(InputWorkspaces=["s_in"], Repeats=50, Seed=9, OutputWorkspace="t3")
    assert t1.row(0)["Mean"] == t2.row(0)["Mean"]
    assert t1.row(0)["Mean"] != t3.row(0)["Mean"]


def _issues(**props):
    from mantid_exp2sim.algorithms.ScoreDomainApplicability import ScoreDomainApplicability

    alg = ScoreDomainApplicability()
    alg.initialize()
    alg.setProperty("OutputWorkspace", "checked")
    for k, v in props.items():
        alg.setProperty(k, v)
    return alg.validateInputs()


def test_validate_inputs_messages(mantid, score_bundle, tiny_bundle, tmp_path, monkeypatch):
    api, simpleapi = mantid
    make_ws(simpleapi, np.random.default_rng(0).random((6, 6, 6)), DIMS3, "vol")
    make_ws(simpleapi, np.random.default_rng(0).random((8, 8)), DIMS2, "img")
    msg = _issues(InputWorkspaces=["vol"], ModelFile=str(score_bundle))["ModelFile"]
    assert "2D model" in msg and "3 dimensions" in msg
    assert "dimensionality" in _issues(InputWorkspaces=["vol", "img"])["InputWorkspaces"]
    assert "No workspace" in _issues(InputWorkspaces=["missing_ws"])["InputWorkspaces"]
    assert "reference bank" in _issues(InputWorkspaces=["img"], ModelFile=str(tiny_bundle("deconvolve", 2)))["ModelFile"]
    monkeypatch.setenv("EXP2SIM_BUNDLE_DIR", str(tmp_path))
    assert "missing" in _issues(InputWorkspaces=["img"])["ModelFile"]
    make_ws(simpleapi, np.full((8, 8), np.nan), DIMS2, "masked")
    assert "masked" in _issues(InputWorkspaces=["masked"], ModelFile=str(score_bundle))["InputWorkspaces"]
    assert _issues(InputWorkspaces=["img"], ModelFile=str(score_bundle)) == {}
    with pytest.raises(RuntimeError):
        simpleapi.ScoreDomainApplicability(InputWorkspaces=["vol"], ModelFile=str(score_bundle), OutputWorkspace="no")
    assert "no" not in api.mtd
