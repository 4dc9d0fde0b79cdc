"""Data-set files: layout, lazy reader, determinism, append, resume after a killed writer."""

import hashlib
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

from mantid_exp2sim.simulate import DatasetSpec, SpectraDataset, sample_rng, write_dataset

SPEC = DatasetSpec(representation="volume", ei=50.0, bins=(6, 5, 8), resolution="unconvolved")


def _refs(mod, *names):
    return [f"{mod}:{n}" for n in names]


def _arrays(path):
    out = {}
    with h5py.File(path, "r") as f:
        for g in json.loads(f.attrs["models"]):
            n = int(f[g].attrs["complete"])
            for k in ("convolved", "unconvolved", "parameters", "sample_index"):
                out[(g, k)] = f[g][k][:n]
    return out


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_file_layout(tmp_path, double_module):
    path = tmp_path / "d.h5"
    done = write_dataset(path, _refs(double_module, "AnalyticModel", "SpotModel"), 3, SPEC, seed=7,
                         progress=False, command=["exp2sim-simulate", "--n", "3"])
    assert done == {"analytic": 3, "spot": 3}
    plan = SPEC.plan()
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "exp2sim-dataset" and int(f.attrs["format_version"]) == 1
        assert f.attrs["representation"] == "volume"
        assert json.loads(f.attrs["axes"]) == [a.to_dict() for a in plan.axes]
        assert int(f.attrs["seed"]) == 7 and json.loads(f.attrs["command"]) == ["exp2sim-simulate", "--n", "3"]
        assert json.loads(f.attrs["models"]) == ["analytic", "spot"]
        assert float(f.attrs["ei"]) == 50.0
        assert json.loads(f.attrs["settings"])["bins"] == [6, 5, 8]
        assert json.loads(f.attrs["resolution"])["kind"] == "unconvolved"
        assert "package_version" in f.attrs
        mask = f["mask"][()]
        assert mask.dtype == np.uint8 and mask.shape == (6, 5, 8)
        np.testing.assert_array_equal(mask.astype(bool), plan.mask)
        for label, g in enumerate(("analytic", "spot")):
            grp = f[g]
            assert int(grp.attrs["label"]) == label and int(grp.attrs["complete"]) == 3
            assert json.loads(grp.attrs["parameter_names"]) == ["J", "gap"]
            for k in ("convolved", "unconvolved"):
                d = grp[k]
                assert d.dtype == np.float32 and d.shape == (3, 6, 5, 8)
                assert d.chunks == (1, 6, 5, 8) and d.maxshape == (None, 6, 5, 8)
                np.testing.assert_array_equal(np.isnan(d[()]), np.broadcast_to(mask.astype(bool), d.shape))
            assert grp["parameters"].dtype == np.float64 and grp["parameters"].shape == (3, 2)
            np.testing.assert_array_equal(grp["sample_index"][()], [0, 1, 2])
        # Sample 1 of 'analytic' used the generator of (seed, model, index).
        expected = np.array([0.5, 1.0]) + np.array([4.5, 5.0]) * sample_rng(7, "analytic", 1).random(2)
        np.testing.assert_allclose(f["analytic"]["parameters"][1], expected)


def test_reader_is_lazy_picklable_and_labelled(tmp_path, double_module):
    path = tmp_path / "d.h5"
    write_dataset(path, _refs(double_module, "AnalyticModel", "SpotModel"), 2, SPEC, progress=False)
    ds = SpectraDataset(path)
    assert ds._h5 is None  # nothing opened yet
    assert len(ds) == 4 and ds.class_names == ["analytic", "spot"] and ds.shape == (6, 5, 8)
    assert [a.name for a in ds.axes] == ["[H,0,0]", "[0,K,0]", "DeltaE"]
    x, y = ds[3]
    assert x.dtype == np.float32 and x.shape == (6, 5, 8) and y == 1
    assert ds[0][1] == 0 and ds[-1][1] == 1
    p = ds.parameters(0)
    assert set(p) == {"J", "gap"} and 0.5 <= p["J"] <= 5.0
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._h5 is None
    np.testing.assert_array_equal(clone[3][0], x)
    unconv = SpectraDataset(path, kind="unconvolved", models=["spot"])
    assert len(unconv) == 2 and unconv[0][1] == 1 and unconv.class_names == ["analytic", "spot"]
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(unconv[1][0], f["spot"]["unconvolved"][1])
    with pytest.raises(IndexError):
        ds[4]
    with pytest.raises(ValueError, match="kind is invalid"):
        SpectraDataset(path, kind="both")
    with pytest.raises(ValueError, match=r"\['dimer'\] not in the data set"):
        SpectraDataset(path, models=["dimer"])
    ds.close()


def test_append_equals_one_run_and_mismatch_is_refused(tmp_path, double_module):
    spec = DatasetSpec(representation="volume", ei=50.0, bins=(6, 5, 8), resolution="unconvolved", noise_flux=20.0)
    refs = _refs(double_module, "AnalyticModel")
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    write_dataset(a, refs, 2, spec, seed=1, progress=False)
    assert write_dataset(a, refs, 3, spec, seed=1, progress=False) == {"analytic": 5}
    write_dataset(b, refs, 5, spec, seed=1, progress=False)
    ra, rb = _arrays(a), _arrays(b)
    for k in rb:
        np.testing.assert_array_equal(ra[k], rb[k])
    # Noise made the convolved spectra differ from the clean unconvolved ones.
    assert not np.allclose(np.nan_to_num(rb[("analytic", "convolved")]), np.nan_to_num(rb[("analytic", "unconvolved")]))
    before = _digest(a)
    other = DatasetSpec(representation="volume", ei=60.0, bins=(6, 5, 8), resolution="unconvolved", noise_flux=20.0)
    with pytest.raises(ValueError, match=r"different settings.*ei: file 50.0, requested 60.0"):
        write_dataset(a, refs, 1, other, seed=1, progress=False)
    with pytest.raises(ValueError, match=r"seed: file 1, requested 2"):
        write_dataset(a, refs, 1, spec, seed=2, progress=False)
    with pytest.raises(ValueError, match=r"models: file \['analytic'\]"):
        write_dataset(a, _refs(double_module, "SpotModel"), 1, spec, seed=1, progress=False)
    assert _digest(a) == before


def test_bad_input_writes_nothing(tmp_path, double_module):
    path = tmp_path / "x.h5"
    with pytest.raises(ValueError):
        write_dataset(path, ["no_such_module_xyz:M"], 1, SPEC, progress=False)
    with pytest.raises(ValueError, match="Settings \\['ei'\\] do not apply"):
        write_dataset(path, _refs(double_module, "AnalyticModel"), 1, DatasetSpec(ei=70.0), progress=False)
    with pytest.raises(ValueError, match="n is invalid"):
        write_dataset(path, _refs(double_module, "AnalyticModel"), -1, SPEC, progress=False)
    with pytest.raises(ValueError, match="Nothing to resume"):
        write_dataset(path, _refs(double_module, "AnalyticModel"), 1, SPEC, resume=True, progress=False)
    with pytest.raises(ValueError, match="does not exist"):
        write_dataset(path, _refs(double_module, "AnalyticModel"), 1,
                      DatasetSpec(representation="volume", resolution=f"tables:{tmp_path}/none"), progress=False)
    assert not path.exists() and not list(tmp_path.glob(".*tmp*"))


@pytest.mark.slow
def test_worker_count_does_not_change_the_data(tmp_path, double_module):
    refs = _refs(double_module, "AnalyticModel", "SpotModel")
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    write_dataset(one, refs, 3, SPEC, seed=5, workers=1, progress=False)
    write_dataset(two, refs, 3, SPEC, seed=5, workers=2, progress=False)
    r1, r2 = _arrays(one), _arrays(two)
    assert set(r1) == set(r2)
    for k in r1:
        np.testing.assert_array_equal(r1[k], r2[k])


_WRITER = textwrap.dedent(
    """
    import sys
    from mantid_exp2sim.simulate import DatasetSpec, write_dataset
    spec = DatasetSpec(representation="volume", ei=50.0, bins=(6, 5, 8), resolution="unconvolved")
    write_dataset(sys.argv[1], ["{mod}:SlowModel"], 8, spec, seed=11, progress=False,
                  on_sample=lambda m, k: print("done", m, k, flush=True))
    """
)


@pytest.mark.slow
def test_killed_writer_resumes_to_the_uninterrupted_result(tmp_path, double_module):
    path = tmp_path / "killed.h5"
    with subprocess.Popen([sys.executable, "-c", _WRITER.format(mod=double_module), str(path)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy()) as proc:
        try:
            deadline = time.time() + 60
            seen = 0
            while seen < 2 and time.time() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                if line.startswith("done"):
                    seen = int(line.split()[-1])
            assert seen >= 2, proc.stderr.read()
            os.kill(proc.pid, signal.SIGKILL)  # mid-run: the next sample is being computed or written
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    with h5py.File(path, "r") as f:
        complete = int(f["analytic"].attrs["complete"])
        assert 2 <= complete < 8 and int(f["analytic"].attrs["target"]) == 8
    assert len(SpectraDataset(path)) == complete
    ref = _refs(double_module, "AnalyticModel")
    spec = DatasetSpec(representation="volume", ei=50.0, bins=(6, 5, 8), resolution="unconvolved")
    assert write_dataset(path, ref, 0, spec, seed=11, resume=True, progress=False) == {"analytic": 8}
    full = tmp_path / "full.h5"
    write_dataset(full, ref, 8, spec, seed=11, progress=False)
    r1, r2 = _arrays(path), _arrays(full)
    for k in r2:
        np.testing.assert_array_equal(r1[k], r2[k])


def test_unstable_draws_are_redrawn(tmp_path, double_module, monkeypatch):
    spin_models = pytest.importorskip("mantid_exp2sim.simulate.spin_models")
    mod = __import__(double_module)

    class Fragile(mod.AnalyticModel):
        name = "fragile"

        def spectrum_kinematic(self, params, qh, qk, ei):
            if self.validate(params)[1] < 3.0:
                raise spin_models.UnstableGroundStateError("unstable")
            return super().spectrum_kinematic(params, qh, qk, ei)

    mod.Fragile = Fragile
    path = tmp_path / "f.h5"
    write_dataset(path, [f"{double_module}:Fragile"], 6, SPEC, seed=0, progress=False)
    with h5py.File(path, "r") as f:
        gaps = f["fragile"]["parameters"][:, 1]
    assert np.all(gaps >= 3.0)
