"""benchmarks/bench_fit.py keeps finished fits in a cache and summarises earlier runs' fits without refitting."""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "benchmarks") not in sys.path:
    sys.path.insert(0, str(REPO / "benchmarks"))

import bench_fit  # noqa: E402


def record(model, i, chosen, z):
    return {"row": {"model": model, "index": i, "chosen": chosen, "delta_aic": 5.0, "within_misfit": False,
                    "r2_true": 0.9, "reduced_chi2_true": 1.0, "error_scale_true": 1.0, "z_true": {"J": z}},
            "seconds": [10.0, 30.0], "fit": {"J": [z * 0.1, 0.1]}, "network": {"J": [0.3, 0.1]}}


def test_records_round_trip_and_are_filed_by_settings(tmp_path):
    a = bench_fit.FitCache(tmp_path, {"seed": 1}, [])
    a.put("dimer", 3, record("dimer", 3, "dimer", 0.5))
    assert a.get("dimer", 3) == record("dimer", 3, "dimer", 0.5)
    assert a.get("dimer", 4) is None
    assert not list(a.folder.glob("*.tmp*"))  # written whole, then renamed
    b = bench_fit.FitCache(tmp_path, {"seed": 2}, [])
    assert b.folder != a.folder and b.get("dimer", 3) is None
    assert bench_fit.FitCache(tmp_path, {"seed": 1}, []).get("dimer", 3) is not None


def test_model_selection_summarises_cached_fits_without_fitting(tmp_path, monkeypatch):
    cache = bench_fit.FitCache(tmp_path, {"seed": 1}, [])
    cache.put("goodenough", 0, record("goodenough", 0, "goodenough", 0.5))
    cache.put("dimer", 0, record("dimer", 0, "goodenough", 2.0))

    def no_fit(*_a, **_k):
        raise AssertionError("a cached spectrum was fitted again")

    monkeypatch.setattr(bench_fit, "fit_spin_models", no_fit)
    monkeypatch.setattr(bench_fit, "simulate_mosaic", no_fit)
    out = bench_fit.model_selection(None, 1, 0, "kinematic", None, {}, 1, True, cache=cache)
    assert out["n_fitted_per_model"] == {"goodenough": 1, "dimer": 1} and out["n_reused_from_cache"] == 2
    assert out["model_selection_accuracy"] == 0.5
    assert out["coverage_1sigma"] == {"goodenough": {"J": 1.0}, "dimer": {"J": 0.0}}
    assert out["coverage_1sigma_all"] == 0.5
    assert out["seconds_per_fit"] == 20.0
    # past the deadline no new spectrum is fitted, and the run says it stopped
    with pytest.raises(AssertionError, match="fitted again"):
        bench_fit.model_selection(None, 2, 0, "kinematic", None, {}, 1, True, cache=cache)
    out = bench_fit.model_selection(None, 2, 0, "kinematic", None, {}, 1, True, cache=cache, deadline=0.0)
    assert out["stopped_at_max_minutes"] and out["n_fitted_per_model"] == {"goodenough": 1, "dimer": 1}


def test_first_leaves_earlier_uncached_spectra_to_another_process(tmp_path, monkeypatch):
    cache = bench_fit.FitCache(tmp_path, {"seed": 1}, [])
    cache.put("goodenough", 1, record("goodenough", 1, "goodenough", 0.5))
    cache.put("dimer", 1, record("dimer", 1, "dimer", 0.5))
    monkeypatch.setattr(bench_fit, "simulate_mosaic", lambda *a, **k: (_ for _ in ()).throw(AssertionError("fitted")))
    out = bench_fit.model_selection(None, 2, 0, "kinematic", None, {}, 1, True, cache=cache, first=1)
    assert out["n_fitted_per_model"] == {"goodenough": 1, "dimer": 1} and out["n_reused_from_cache"] == 2
