"""Measured-like data sets: exp2sim-simulate --measured-like, its file arrays, reader, seeds, resume."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from mantid_exp2sim.errors import InputDataError
from mantid_exp2sim.simulate import DatasetSpec, SpectraDataset, write_dataset
from mantid_exp2sim.simulate.cli import main
from mantid_exp2sim.simulate.nuisance_sampling import DEFAULT_RANGES, MeasuredLikeSettings, default_chain
from mantid_exp2sim.simulate.samples import simulate_measured_like_sample


@pytest.fixture
def measured_mask(tmp_path):
    """A synthetic 'measured' detector mask: the right 3 windows of every Ei block (1 = masked)."""
    m = np.zeros((240, 400), dtype=bool)
    m[:, 280:] = True
    path = tmp_path / "measured_mask.npy"
    np.save(path, m)
    return path, m


def _spec(mask_path, **fixed):
    return DatasetSpec(representation="mosaic", measured_like=MeasuredLikeSettings(measured_mask=str(mask_path),
                                                                                  **fixed))


def _write(path, module, spec, n=2, seed=3, **kw):
    return write_dataset(path, [f"{module}:AnalyticModel"], n, spec, seed=seed, progress=False, **kw)


def _rows(path, group="analytic"):
    with h5py.File(path, "r") as f:
        g = f[group]
        n = int(g.attrs["complete"])
        return {k: g[k][:n] for k in ("measured_like", "convolved", "unconvolved", "parameters", "nuisance")}


def test_round_trip_of_the_measured_like_arrays(tmp_path, double_module, measured_mask):
    mask_path, mask = measured_mask
    path = tmp_path / "ml.h5"
    assert _write(path, double_module, _spec(mask_path, measured_mask_probability=1.0)) == {"analytic": 2}
    ds = SpectraDataset(path, kind="measured_like")
    assert ds.is_measured_like and len(ds) == 2 and ds.shape == (240, 400)
    np.testing.assert_array_equal(ds.measured_like_mask, mask)
    conv_ds = SpectraDataset(path)  # the plain kinds keep working
    for i in range(2):
        y, label = ds[i]
        conv, unconv, _ = conv_ds.pair(i)
        assert y.dtype == np.float32 and label == 0
        # NaN where the clean spectrum is NaN or the measured mask is set, finite elsewhere
        np.testing.assert_array_equal(np.isnan(y), np.isnan(conv) | mask)
        assert np.nanmin(y) == 0.0 and np.nanmax(y) <= 120.0 and np.nanmean(y == 0.0) > 0.01
        nu = ds.nuisance(i)
        assert nu["measured_mask"] == 1.0 and np.isnan(nu["twin_fraction"])  # the double has no twins
        base = default_chain()
        ratio = np.array([nu[f"count_level_ei{e:g}"] for e in (25, 35, 50, 70, 100, 140)]) / base.count_level
        assert DEFAULT_RANGES.count_level[0] <= ratio[0] <= DEFAULT_RANGES.count_level[1]
        np.testing.assert_allclose(ratio, ratio[0])
        scale = np.array([nu[f"scale_ei{e:g}"] for e in (25, 35, 50, 70, 100, 140)])
        np.testing.assert_allclose(ds.expected(i), conv * np.repeat(scale, 40)[:, None], rtol=1e-6, atol=1e-30)
        # the stored sample is the one simulate_measured_like_sample computes
        s = simulate_measured_like_sample(DatasetSpec.from_settings(ds.settings), f"{double_module}:AnalyticModel",
                                          i, 3)
        np.testing.assert_array_equal(s.measured_like, y)
        np.testing.assert_array_equal(s.nuisance.vector(), list(nu.values()))
    assert (np.nanmean(ds.read(0)) > 0) and (ds.read(0) != ds.read(1))[np.isfinite(ds.read(0))].any()


def test_measured_like_is_reproducible_by_seed(tmp_path, double_module, measured_mask):
    mask_path, _ = measured_mask
    spec = _spec(mask_path)
    a, b, c = (tmp_path / f"{x}.h5" for x in "abc")
    _write(a, double_module, spec)
    _write(b, double_module, spec)
    _write(c, double_module, spec, seed=4)
    ra, rb, rc = _rows(a), _rows(b), _rows(c)
    for k in ra:
        np.testing.assert_array_equal(ra[k], rb[k])
    assert not np.array_equal(ra["nuisance"], rc["nuisance"])


def test_a_fixed_value_replaces_only_its_own_draw(tmp_path, double_module, measured_mask):
    mask_path, _ = measured_mask
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    _write(a, double_module, _spec(mask_path))
    _write(b, double_module, _spec(mask_path, count_level=0.25, mosaic=0.0, measured_mask_probability=0.0))
    ra, rb = _rows(a), _rows(b)
    ds = SpectraDataset(b, kind="measured_like")
    cols = list(ds.nuisance(0))
    counts = [i for i, n in enumerate(cols) if n.startswith("count_level")]
    np.testing.assert_allclose(rb["nuisance"][:, counts], 0.25 * np.asarray(default_chain().count_level)[None, :]
                               * np.ones((2, 1)))
    same = [i for i, n in enumerate(cols) if n.startswith(("scale", "background", "residual"))] + [
        cols.index("resolution_scale")]
    np.testing.assert_array_equal(ra["nuisance"][:, same], rb["nuisance"][:, same])
    np.testing.assert_array_equal(ra["parameters"], rb["parameters"])
    assert (rb["nuisance"][:, cols.index("measured_mask")] == 0).all() and ds.measured_like_mask is None


def test_resume_after_an_interruption_equals_one_run(tmp_path, double_module, measured_mask):
    mask_path, _ = measured_mask
    spec = _spec(mask_path)
    whole, part = tmp_path / "whole.h5", tmp_path / "part.h5"
    _write(whole, double_module, spec, n=3)

    def stop(model, complete):
        if complete == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _write(part, double_module, spec, n=3, on_sample=stop)
    assert SpectraDataset(part, kind="measured_like").counts == {"analytic": 1}
    assert _write(part, double_module, spec, n=0, resume=True) == {"analytic": 3}
    rw, rp = _rows(whole), _rows(part)
    for k in rw:
        np.testing.assert_array_equal(rw[k], rp[k])
    # other nuisance settings cannot extend this file, nor other calibrated values
    with pytest.raises(InputDataError, match="different settings.*measured_like"):
        _write(part, double_module, _spec(mask_path, count_level=2.0), n=1)
    with h5py.File(part, "r+") as f:
        base = json.loads(f.attrs["measured_like_base"])
        assert base["chain"]["count_level"] == list(default_chain().count_level)
        base["chain"]["count_level"][0] *= 2
        f.attrs["measured_like_base"] = json.dumps(base)
    with pytest.raises(InputDataError, match="measured_like_base"):
        _write(part, double_module, spec, n=1)


def test_plain_files_have_no_measured_like_kind(tmp_path, double_module):
    path = tmp_path / "plain.h5"
    write_dataset(path, [f"{double_module}:AnalyticModel"], 1, DatasetSpec(resolution="unconvolved"),
                  progress=False)
    ds = SpectraDataset(path)
    assert not ds.is_measured_like and "measured_like" not in ds.settings
    with pytest.raises(InputDataError, match="no measured-like samples"):
        SpectraDataset(path, kind="measured_like")
    with pytest.raises(InputDataError, match="no nuisance"):
        ds.nuisance(0)


def test_cli_writes_a_measured_like_set_with_fixed_values(tmp_path, double_module, measured_mask, capsys):
    mask_path, _ = measured_mask
    out = tmp_path / "cli.h5"
    assert main(["--models", f"{double_module}:AnalyticModel", "--n", "1", "--measured-like", "--count-level", "4",
                 "--mosaic", "0.5", "--resolution-scale", "1.25", "--measured-mask", str(mask_path),
                 "--output", str(out), "--quiet", "--seed", "2"]) == 0
    ds = SpectraDataset(out, kind="measured_like")
    nu = ds.nuisance(0)
    assert nu["mosaic"] == 0.5 and nu["resolution_scale"] == 1.25
    assert nu["count_level_ei25"] == pytest.approx(4 * default_chain().count_level[0])
    assert ds.settings["measured_like"]["count_level"] == 4.0


@pytest.mark.parametrize("args, words", [
    (["--twin-fraction", "1.5"], "twin fraction (--twin-fraction) is invalid"),
    (["--twin-fraction", "-0.1"], "--twin-fraction"),
    (["--mosaic", "-1"], "mosaic (--mosaic) is invalid"),
    (["--count-level", "0"], "count level (--count-level) is invalid"),
    (["--count-level", "-2"], "--count-level"),
    (["--scale", "nan"], "--scale"),
    (["--measured-mask-probability", "2"], "--measured-mask-probability"),
    (["--resolution-sampling", "-1"], "--resolution-sampling"),
    (["--noise-flux", "100"], "--noise-flux do not apply with --measured-like"),
    (["--representation", "volume"], "--measured-like does not apply to the volume"),
    (["--measured-mask", "/no/such/mask.mat"], "(--measured-mask) does not exist"),
])
def test_cli_refuses_bad_measured_like_input_in_one_line(tmp_path, double_module, capsys, args, words):
    out = tmp_path / "bad.h5"
    assert main(["--models", f"{double_module}:AnalyticModel", "--n", "1", "--measured-like", *args,
                 "--output", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_cli_nuisance_options_need_measured_like(tmp_path, capsys):
    assert main(["--models", "goodenough", "--n", "1", "--count-level", "2", "--output",
                 str(tmp_path / "x.h5")]) == 2
    assert "--count-level only apply with --measured-like" in capsys.readouterr().err
