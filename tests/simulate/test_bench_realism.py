"""benchmarks/bench_realism.py: clean skip without the released data, no silent overwrite."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_realism.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_realism", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_skips_cleanly_without_the_measurement(bench, tmp_path, capsys):
    assert bench.main(["--measured", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["skipped"] is True and str(tmp_path) in out["reason"]


def test_refuses_to_overwrite(bench, tmp_path, capsys):
    np.save(tmp_path / "measured_ei25_35_50.npy", np.zeros((240, 400)))
    save = tmp_path / "out"
    save.mkdir()
    (save / "goodenough_bestfit.npy").write_bytes(b"keep")
    assert bench.main(["--measured", str(tmp_path), "--save-dir", str(save)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (save / "goodenough_bestfit.npy").read_bytes() == b"keep"


def test_noise_ceiling_of_pure_noise_is_zero_and_of_smooth_signal_near_one(bench):
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(240, 400))
    assert bench.noise_ceiling(noise)["all_bins"] < 0.1
    q = np.linspace(-1, 1, 40)
    smooth = np.tile(np.add.outer(q, q) ** 2, (6, 10)) + 0.01 * noise
    assert bench.noise_ceiling(smooth)["all_bins"] > 0.99
