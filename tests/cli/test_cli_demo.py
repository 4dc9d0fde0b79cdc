"""The README's main job, ``exp2sim demo``, on the shipped bundles."""

import json

import numpy as np
import pytest

from mantid_exp2sim.bundle import default_bundle_path
from mantid_exp2sim.cli.main import main
from mantid_exp2sim.domain import ZONES
from mantid_exp2sim.io import load_histogram

pytest.importorskip("onnxruntime")


def _shipped() -> bool:
    try:
        for task in ("deconvolve", "classify"):
            default_bundle_path(task, 2)
    except Exception:
        return False
    return True


pytestmark = pytest.mark.skipif(not _shipped(), reason="the shipped 2D bundles are not installed")


def test_demo_writes_workspaces_figure_and_json_report(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("EXP2SIM_BUNDLE_DIR", raising=False)
    out = tmp_path / "demo"
    assert main(["demo", "--output-dir", str(out), "--repeats", "100", "--json", "--seed", "3"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    for key in ("measured", "deconvolved", "simulated_unconvolved", "convolved", "figure"):
        assert (out / report["files"][key].split("/")[-1]).is_file()
    measured = load_histogram(out / "measured.nxs")
    deconvolved = load_histogram(out / "deconvolved.nxs")
    assert measured.shape == deconvolved.shape == (240, 400)
    assert [a.name for a in deconvolved.axes] == [a.name for a in measured.axes]
    np.testing.assert_array_equal(np.isnan(measured.signal), np.isnan(deconvolved.signal))
    # both pipeline commands ran on the simulator's files with the shipped bundles
    unconvolved = load_histogram(out / "simulated_unconvolved.nxs")
    convolved = load_histogram(out / "convolved.nxs")
    np.testing.assert_array_equal(np.isnan(unconvolved.signal), np.isnan(convolved.signal))
    assert deconvolved.metadata["task"] == "deconvolve" and convolved.metadata["task"] == "convolve"
    assert deconvolved.metadata["source"].endswith("measured.nxs")
    assert not np.allclose(convolved.signal, unconvolved.signal, equal_nan=True)
    assert 0.9 < report["convolution_intensity_ratio"] < 1.1
    assert (out / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    for stage in ("classification_before", "classification_after"):
        c = report[stage]
        assert set(c["K"]) == {"goodenough", "dimer"}
        assert all(0.0 <= k <= 1.0 for k in c["K"].values())
        assert c["prediction"] in c["K"]
    assert report["domain"]["zone"] in ZONES
    assert np.isfinite(report["domain"]["mean"]) and report["domain"]["std"] >= 0
    # both translations conserve the integrated intensity (one factor each, recorded)
    assert report["integrated_intensity_ratio"] == pytest.approx(1.0, abs=1e-6)
    assert report["deconvolution_intensity_factor"] == pytest.approx(deconvolved.metadata["intensity_factor"])
    assert 0.8 < report["deconvolution_intensity_factor"] < 1.25
    assert 0.8 < report["convolution_intensity_factor"] < 1.25


def test_demo_reports_a_clear_error_for_a_missing_default_model(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EXP2SIM_BUNDLE_DIR", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    assert main(["demo", "--output-dir", str(tmp_path / "d"), "--no-plot"]) == 1
    err = capsys.readouterr().err
    assert "exp2sim demo:" in err and "exp2sim deconvolve" in err
    assert "EXP2SIM_BUNDLE_DIR" in err or "deconvolve_2d" in err
