"""Training data of exp2sim-train: sources, the unpaired split, the patch sampler."""

import json

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

from mantid_exp2sim.errors import InputDataError  # noqa: E402
from mantid_exp2sim.train.data import (  # noqa: E402
    ArraySource,
    SimulatorSource,
    data_from_config,
    open_source,
    prepare_data,
)
from mantid_exp2sim.train.patches import PatchSampler  # noqa: E402


def write_sim(path, n_per_model=(30, 20), shape=(16, 16), seed=0, garbage_in_mask=False, complete=None):
    """A tiny exp2sim-simulate data set (architecture.md layout): B = sparse peaks, A = B blurred."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, dtype=np.uint8)
    mask[:2, :3] = 1
    with h5py.File(path, "w") as f:
        f.attrs.update(format="exp2sim-dataset", format_version=1, representation="qe_slice", seed=seed,
                       command=json.dumps(["test"]), package_version="0")
        f.attrs["axes"] = json.dumps([{"name": f"D{i}", "unit": "", "minimum": 0.0, "maximum": float(n),
                                       "bins": n, "id": f"D{i}", "frame": "General Frame"} for i, n in enumerate(shape)])
        f["mask"] = mask
        for label, (name, n) in enumerate(zip(["dimer", "goodenough"], n_per_model)):
            g = f.create_group(name)
            g.attrs["label"] = label
            b = rng.random((n,) + shape).astype(np.float32) * 0.1
            for i in range(n):
                b[i][tuple(rng.integers(0, s) for s in shape)] += 3.0
            a = np.stack([gaussian_filter(x, 1.0) for x in b]).astype(np.float32)
            fill = rng.random(a[:, mask.astype(bool)].shape) * 1e3 if garbage_in_mask else np.nan
            a[:, mask.astype(bool)] = fill
            b[:, mask.astype(bool)] = fill
            g.create_dataset("convolved", data=a, chunks=(1,) + shape, maxshape=(None,) + shape)
            g.create_dataset("unconvolved", data=b, chunks=(1,) + shape, maxshape=(None,) + shape)
            g["parameters"] = rng.random((n, 1))
            g["sample_index"] = np.arange(n)
            g.attrs["complete"] = n if complete is None else complete
    return path


def test_simulator_source_reads_both_models_applies_mask_and_trusts_complete(tmp_path):
    p = write_sim(tmp_path / "sim.h5", garbage_in_mask=True)
    a = open_source(str(p), "convolved")
    assert isinstance(a, SimulatorSource) and len(a) == 50
    assert a.models == ["dimer", "goodenough"]
    x = a.read(31)
    assert x.dtype == np.float32 and np.isnan(x[:2, :3]).all() and np.isfinite(x[2:]).all()
    with h5py.File(p, "r") as f:
        np.testing.assert_array_equal(x[2:], f["goodenough"]["convolved"][1][2:])
    assert a.locate(31) == ("goodenough", 1)
    only = SimulatorSource(p, "unconvolved", ["goodenough"])
    assert len(only) == 20
    partial = open_source(str(write_sim(tmp_path / "partial.h5", complete=5)), "convolved")
    assert len(partial) == 10
    with pytest.raises(IndexError):
        partial.read(10)
    with pytest.raises(InputDataError, match="not in"):
        SimulatorSource(p, "convolved", ["square"])


def test_array_npy_and_savemd_sources(tmp_path):
    arr = np.arange(3 * 8 * 8, dtype=np.float32).reshape(3, 8, 8)
    arr[0, 0, 0] = np.nan
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["grp/data"] = arr
        f["other"] = np.zeros(3)
        f["more"] = np.zeros(3)
    s = open_source(f"{tmp_path / 'x.h5'}:/grp/data", "convolved")
    assert len(s) == 3 and np.isnan(s.read(0)[0, 0]) and s.read(2)[1, 1] == arr[2, 1, 1]
    with pytest.raises(InputDataError, match="not found"):
        open_source(f"{tmp_path / 'x.h5'}:/nope", "convolved")
    with pytest.raises(InputDataError, match="one dataset"):
        open_source(str(tmp_path / "x.h5"), "convolved")
    np.save(tmp_path / "x.npy", arr)
    assert open_source(str(tmp_path / "x.npy"), "convolved").read(1)[3, 4] == arr[1, 3, 4]
    with pytest.raises(InputDataError, match="not found"):
        open_source(str(tmp_path / "missing.npy"), "convolved")

    from mantid_exp2sim.histogram import MDHisto
    from mantid_exp2sim.io import save_histogram

    for i in range(2):
        save_histogram(MDHisto.from_array(arr[i].astype(float)), tmp_path / f"ws{i}.nxs")
    nxs = open_source(str(tmp_path), "convolved")
    assert len(nxs) == 2
    np.testing.assert_array_equal(nxs.read(1), arr[1])
    assert len(open_source(str(tmp_path / "ws*.nxs"), "convolved")) == 2


def test_split_is_unpaired_and_holds_out_true_pairs(tmp_path):
    p = write_sim(tmp_path / "sim.h5")
    a, b = SimulatorSource(p, "convolved"), SimulatorSource(p, "unconvolved")
    data = prepare_data(a, b, seed=3, val_fraction=0.1, val_samples=3)
    assert data.split == "disjoint-halves"
    assert data.a.holdout.size == 5 and np.array_equal(data.a.holdout, data.b.holdout)
    sets = [set(data.a.train), set(data.b.train), set(data.a.holdout)]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert len(sets[0] | sets[1] | sets[2]) == 50
    assert len(data.val_pairs) == 3
    i = data.a.holdout[1]
    np.testing.assert_array_equal(data.val_pairs[1][0], a.read(i))
    np.testing.assert_array_equal(data.val_pairs[1][1], b.read(i))
    paired = prepare_data(a, b, seed=3, val_fraction=0.1, paired=True)
    assert np.array_equal(paired.a.train, paired.b.train) and paired.a.train.size == 45
    # the split depends on the seed, not on how many validation pairs are kept
    again = prepare_data(a, b, seed=3, val_fraction=0.1, val_samples=5)
    assert np.array_equal(again.a.train, data.a.train)
    assert not np.array_equal(prepare_data(a, b, seed=4, val_fraction=0.1).a.train, data.a.train)


def test_data_from_config_needs_both_domains(tmp_path):
    from mantid_exp2sim.train.config import GanConfig

    p = write_sim(tmp_path / "sim.h5")
    cfg = GanConfig(domain_a=[str(p)], domain_b=[])
    with pytest.raises(InputDataError, match="Both training domains"):
        data_from_config(cfg)
    cfg.domain_b = [str(p)]
    assert data_from_config(cfg).split == "disjoint-halves"


def _sampler(src, **kw):
    args = dict(patch_size=(8, 8), batch_size=3, seed=5, stream=0)
    args.update(kw)
    return PatchSampler(src, np.arange(len(src)), **args)


def test_patches_are_scaled_by_the_whole_sample_rms_and_keep_the_mask():
    rng = np.random.default_rng(0)
    arr = rng.random((1, 12, 20)).astype(np.float32)
    arr[0, :, :4] = np.nan
    src = ArraySource(arr)
    batch = _sampler(src, batch_size=4).next_batch()
    assert batch.shape == (4, 2, 8, 8) and batch.dtype == np.float32
    scale = np.sqrt(np.nanmean(arr[0].astype(np.float64) ** 2))
    x = arr[0] / scale
    for sig, valid in batch:
        assert set(np.unique(valid)) <= {0.0, 1.0}
        assert np.all(sig[valid == 0] == 0)
        # the patch is a crop of the whole-sample-normalised array
        found = any(
            np.allclose(np.nan_to_num(x[i:i + 8, j:j + 8]), sig, atol=1e-6)
            and np.array_equal(np.isfinite(x[i:i + 8, j:j + 8]), valid == 1)
            for i in range(5) for j in range(13)
        )
        assert found


def test_small_samples_are_padded_with_masked_bins():
    src = ArraySource(np.ones((2, 6, 8), dtype=np.float32))
    batch = _sampler(src, patch_size=(8, 8)).next_batch()
    assert batch[:, 1].sum(axis=(1, 2)).tolist() == [48.0] * 3


def test_flips_only_along_allowed_axes():
    arr = np.arange(8 * 8, dtype=np.float32).reshape(1, 8, 8) + 1
    src = ArraySource(arr)
    x = arr[0] / np.sqrt(np.mean(arr[0].astype(np.float64) ** 2))
    seen = set()
    s = _sampler(src, batch_size=1, flip_axes=(1,))
    for _ in range(20):
        p = s.next_batch()[0, 0]
        if np.allclose(p, x):
            seen.add("none")
        elif np.allclose(p, x[:, ::-1]):
            seen.add("axis1")
        else:
            raise AssertionError("a patch was flipped along a forbidden axis")
    assert seen == {"none", "axis1"}
    fixed = _sampler(src, batch_size=1)
    assert all(np.allclose(fixed.next_batch()[0, 0], x) for _ in range(5))


def test_sampler_is_seeded_resumable_and_sharded():
    arr = np.random.default_rng(1).random((10, 12, 12)).astype(np.float32)
    src = ArraySource(arr)
    s1, s2 = _sampler(src), _sampler(src)
    for _ in range(3):
        np.testing.assert_array_equal(s1.next_batch(), s2.next_batch())
    state = s1.state_dict()
    expected = [s1.next_batch() for _ in range(4)]
    s3 = _sampler(src)
    s3.load_state_dict(state)
    for e in expected:
        np.testing.assert_array_equal(s3.next_batch(), e)
    assert not np.array_equal(_sampler(src, seed=6).next_batch(), _sampler(src).next_batch())

    # DistributedSampler-like sharding: one epoch of both ranks covers every index once
    r0 = PatchSampler(src, np.arange(10), (8, 8), 1, seed=5, stream=0, rank=0, world_size=2)
    r1 = PatchSampler(src, np.arange(10), (8, 8), 1, seed=5, stream=0, rank=1, world_size=2)
    order = list(r0._order) + list(r1._order)
    assert sorted(order) == list(range(10))
    odd = PatchSampler(src, np.arange(9), (8, 8), 1, seed=5, stream=0, rank=1, world_size=2)
    assert odd._order.size == 5  # padded by wrapping, like DistributedSampler


def test_one_reader_for_the_gan_and_the_classifier(tmp_path):
    """SpectraDataset reads the format; SimulatorSource and LabelledSpectra give the same samples."""
    from mantid_exp2sim.simulate.dataset import SpectraDataset
    from mantid_exp2sim.train.data import LabelledSpectra

    p = write_sim(tmp_path / "sim.h5", garbage_in_mask=True)
    ds, src, lab = SpectraDataset(p, "convolved"), SimulatorSource(p, "convolved"), LabelledSpectra([str(p)], "convolved")
    assert ds.models == src.models == lab.classes == ["dimer", "goodenough"] and len(ds) == len(src) == len(lab) == 50
    for i in (0, 29, 30, 49):
        x = ds.read(i)
        assert np.isnan(x[:2, :3]).all() and np.isfinite(x[2:]).all()  # the mask applies everywhere
        np.testing.assert_array_equal(src.read(i), x)
        np.testing.assert_array_equal(lab.read(i), x)
        assert ds.label(i) == lab.labels[i] == (i >= 30)
    np.testing.assert_array_equal(ds.pair(31)[0], ds.read(31))


def test_reader_rules_for_versions_labels_and_models(tmp_path):
    from mantid_exp2sim.simulate.dataset import FORMAT_VERSION, SpectraDataset
    from mantid_exp2sim.train.data import LabelledSpectra

    newer = write_sim(tmp_path / "newer.h5")
    with h5py.File(newer, "r+") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    for read in (lambda: SpectraDataset(newer), lambda: open_source(str(newer), "convolved"),
                 lambda: LabelledSpectra([str(newer)])):
        with pytest.raises(InputDataError, match="format version"):
            read()
    unlabelled = write_sim(tmp_path / "unlabelled.h5")
    with h5py.File(unlabelled, "r+") as f:
        del f["goodenough"].attrs["label"]
        del f.attrs["format_version"]  # hand-made files without a version read as version 1
    ds = SpectraDataset(unlabelled)
    assert ds.models == ["goodenough", "dimer"] and ds.model_labels == {"goodenough": -1, "dimer": 0}
    assert ds.select(["dimer"]).counts == {"dimer": 30}
    # the classifier takes each model from the files that hold it; a model in none is an error
    a, b = write_sim(tmp_path / "a.h5"), write_sim(tmp_path / "b.h5", seed=1)
    with h5py.File(a, "r+") as f:
        del f["goodenough"]
    with h5py.File(b, "r+") as f:
        del f["dimer"]
    both = LabelledSpectra([str(a), str(b)], "unconvolved", models=["goodenough", "dimer"])
    assert both.classes == ["dimer", "goodenough"] and np.bincount(both.labels).tolist() == [30, 20]
    with pytest.raises(InputDataError, match=r"\['square'\] are in none of the data sets"):
        LabelledSpectra([str(a), str(b)], "unconvolved", models=["goodenough", "dimer", "square"])
