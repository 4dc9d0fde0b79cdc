"""benchmarks/bench_translate.py measures candidate bundles given by --deconvolve / --convolve."""

import json
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "benchmarks") not in sys.path:
    sys.path.insert(0, str(REPO / "benchmarks"))

pytest.importorskip("onnxruntime")

import bench_translate  # noqa: E402
from mantid_exp2sim.bundle import default_bundle_path  # noqa: E402


def test_a_candidate_replaces_only_its_own_task(tmp_path):
    shipped = default_bundle_path("deconvolve", 2)
    if not Path(shipped).is_file():
        pytest.skip("the shipped 2D deconvolve bundle is not installed")
    candidate = tmp_path / "candidate_deconvolve.exp2sim.h5"
    shutil.copy(shipped, candidate)
    dec, conv = bench_translate._bundles(2, {"deconvolve": str(candidate), "convolve": None})
    assert Path(dec.path) == candidate
    assert Path(conv.path) == Path(default_bundle_path("convolve", 2))
    dec0, _ = bench_translate._bundles(2)
    assert Path(dec0.path) == Path(shipped)


def test_a_missing_candidate_is_reported_with_exit_status_2(tmp_path, capsys):
    missing = tmp_path / "nope.exp2sim.h5"
    rc = bench_translate.main(["--ndim", "2", "--convolve", str(missing)])
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert rc == 2
    report = json.loads(out)
    assert report["error"].startswith("missing") and str(missing) in report["details"][0]
