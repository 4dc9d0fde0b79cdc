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

    for key in ("measured", "simulated_clean", "deconvolved", "simulated_unconvolved", "convolved", "figure"):
        assert (out / report["files"][key].split("/")[-1]).is_file()
    measured = load_histogram(out / "measured.nxs")
    # the simulated measurement looks like the released one: zeros, the clip, its mask; the clean
    # simulation beside it has the same mask and no zeros from noise
    clean = load_histogram(out / "simulated_clean.nxs")
    np.testing.assert_array_equal(np.isnan(clean.signal), np.isnan(measured.signal))
    finite = np.isfinite(measured.signal)
    assert 0.1 < np.mean(measured.signal[finite] == 0) < 0.6 and np.nanmax(measured.signal) <= 120.0
    assert np.mean(clean.signal[finite] == 0) < 0.5 * np.mean(measured.signal[finite] == 0)
    m = report["measurement"]
    assert m["zero_fraction"] == pytest.approx(np.mean(measured.signal[finite] == 0))
    assert m["count_level_factor"] == 1.0 and m["mask"].split(":")[0] in ("measured", "kinematic")
    assert report["psnr_clean_vs_truth"] > report["psnr_measured_vs_truth"]
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

    for stage in ("classification_clean", "classification_before", "classification_after"):
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


@pytest.mark.parametrize("case", ["file", "nested", "earlier", "read-only"])
def test_demo_checks_its_folder_before_any_work(tmp_path, capsys, monkeypatch, case):
    import mantid_exp2sim.cli.demo as demo
    import mantid_exp2sim.io.output_paths as output_paths

    def must_not_run(*args, **kwargs):
        raise AssertionError("the demo started")

    monkeypatch.setattr(demo, "_simulate", must_not_run)
    target = tmp_path / "results"
    if case == "file":
        target.write_bytes(b"a file")
        words = "a file with that name exists"
    elif case == "nested":
        target = tmp_path / "missing" / "results"
        words = f"the directory '{tmp_path / 'missing'}' does not exist"
    elif case == "earlier":
        target.mkdir()
        (target / "measured.nxs").write_bytes(b"earlier")
        words = "holds the results of an earlier demo: measured.nxs exist"
    else:
        target.mkdir()
        monkeypatch.setattr(output_paths, "_writable", lambda folder: False)
        words = "no write permission"
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(["demo", "--output-dir", str(target), "--no-plot"]) == 1
    err = capsys.readouterr().err
    assert words in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    if case == "earlier":
        assert (target / "measured.nxs").read_bytes() == b"earlier"


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_demo_refuses_a_bad_count_level_before_any_work(tmp_path, capsys, monkeypatch, value):
    import mantid_exp2sim.cli.demo as demo

    monkeypatch.setattr(demo, "_simulate", lambda *a, **k: pytest.fail("the demo started"))
    assert main(["demo", "--output-dir", str(tmp_path / "d"), "--no-plot", "--count-level", value]) == 1
    err = capsys.readouterr().err
    assert "--count-level is invalid" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists()


def test_a_failed_demo_removes_what_it_wrote(tmp_path, capsys, monkeypatch):
    import mantid_exp2sim.bundle as bundle
    import mantid_exp2sim.cli.demo as demo
    from mantid_exp2sim.errors import Exp2SimError
    from mantid_exp2sim.histogram import MDHisto

    monkeypatch.setattr(bundle, "default_bundle_path", lambda task, ndim: tmp_path / f"{task}.h5")
    monkeypatch.setattr(demo, "_simulate", lambda *a, **k: (None, None, MDHisto.from_array(np.ones((4, 5))),
                                                            MDHisto.from_array(np.ones((4, 5))),
                                                            MDHisto.from_array(np.ones((4, 5))), None))

    def fails(task, source, target):
        assert source.is_file()  # the simulated files were written
        raise Exp2SimError(f"the 'exp2sim {task}' step failed")

    monkeypatch.setattr(demo, "_run_pipeline_command", fails)
    out = tmp_path / "new"
    assert main(["demo", "--output-dir", str(out), "--no-plot"]) == 1
    assert "exp2sim deconvolve' step failed" in capsys.readouterr().err
    assert not out.exists()
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "measured.nxs").write_bytes(b"earlier")
    assert main(["demo", "--output-dir", str(out), "--no-plot", "--overwrite"]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["measured.nxs", "notes.txt"]  # only what it wrote is gone
