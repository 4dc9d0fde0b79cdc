"""``exp2sim-train classifier`` (mantid_exp2sim.train.classifier) on a tiny synthetic data set."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mantid_exp2sim.train.augment import augment_batch  # noqa: E402
from mantid_exp2sim.train.classifier import main  # noqa: E402
from mantid_exp2sim.train.data import LabelledSpectra  # noqa: E402

pytestmark = pytest.mark.torch

SHAPE = (240, 400)


def write_dataset(path, n=(24, 24), complete=None, seed=0, names=("goodenough", "dimer"), labels=(1, 0)):
    """A data set in the exp2sim-simulate layout: class 'dimer' has a bright block on the right,
    'goodenough' on the left, each at a random global scale."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(SHAPE, np.uint8)
    mask[:20, :60] = 1
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "exp2sim-dataset"
        f.attrs["format_version"] = 1
        f.attrs["representation"] = "mosaic"
        f.create_dataset("mask", data=mask)
        for name, label, count in zip(names, labels, n):
            g = f.create_group(name)
            g.attrs["label"] = label
            x = rng.gamma(2.0, 1.0, (count, *SHAPE)).astype(np.float32)
            cols = slice(40, 120) if name == "goodenough" else slice(240, 320)
            x[:, 100:140, cols] += 8.0
            x *= rng.uniform(0.1, 100, (count, 1, 1)).astype(np.float32)
            for kind in ("unconvolved", "convolved"):
                g.create_dataset(kind, data=x if kind == "unconvolved" else 2 * x, chunks=(1, *SHAPE))
            g.attrs["complete"] = count if complete is None else complete
    return path


def test_labelled_spectra_reads_labels_masks_and_complete(tmp_path):
    p = write_dataset(tmp_path / "d.h5", n=(5, 7), complete=4)
    d = LabelledSpectra([str(p)], "unconvolved")
    assert d.classes == ["dimer", "goodenough"]  # label order
    assert len(d) == 8  # only the complete rows
    assert sorted(np.bincount(d.labels).tolist()) == [4, 4]
    x = d.read(0)
    assert x.shape == SHAPE and np.isnan(x[:20, :60]).all() and np.isfinite(x[20:]).all()
    conv = LabelledSpectra([str(p)], "convolved")
    np.testing.assert_allclose(conv.read(3), 2 * d.read(3), rtol=1e-6)
    with pytest.raises(ValueError, match="kind"):
        LabelledSpectra([str(p)], "other")
    with pytest.raises(ValueError, match="two spin models"):
        LabelledSpectra([str(p)], "unconvolved", models=["dimer"])
    d.close()


def test_augmentation_keeps_scale_free_input_and_only_adds_masking():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 2, 48, 80) + 0.5
    x[:, 1] = 1.0
    x[:, 1, :5] = 0.0
    x[:, 0, :5] = 0.0
    y = augment_batch(x, g, noise=0.2, blur=1.0, mask_prob=1.0, tile=8)
    assert y.shape == x.shape
    valid = y[:, 1]
    assert torch.all(valid <= x[:, 1])  # masking only grows
    assert torch.all(y[:, 0][valid == 0] == 0)
    rms = ((y[:, 0] ** 2).flatten(1).sum(1) / valid.flatten(1).sum(1)).sqrt()
    torch.testing.assert_close(rms, torch.ones(4), rtol=1e-5, atol=1e-5)
    y2 = augment_batch(x, torch.Generator().manual_seed(0), noise=0.2, blur=1.0, mask_prob=1.0, tile=8)
    torch.testing.assert_close(y, y2)
    # Flip only: each sample is itself or its Q -> -Q inversion inside every 8x8 tile.
    f = augment_batch(x, torch.Generator().manual_seed(1), noise=0.0, blur=0.0, mask_prob=0.0, flip=True, tile=8)
    base = augment_batch(x, g, noise=0.0, blur=0.0, mask_prob=0.0, flip=False)
    inv = base.reshape(4, 2, 6, 8, 10, 8).flip(3).flip(5).reshape(4, 2, 48, 80)
    kinds = []
    for i in range(4):
        if torch.allclose(f[i], base[i]):
            kinds.append("same")
        else:
            torch.testing.assert_close(f[i], inv[i])
            kinds.append("inverted")
    assert set(kinds) == {"same", "inverted"}
    # No augmentation: only the renormalisation.
    z = augment_batch(x, g, noise=0.0, blur=0.0, mask_prob=0.0, flip=False)
    ref = x[:, 0] / ((x[:, 0] ** 2).flatten(1).sum(1) / x[:, 1].flatten(1).sum(1)).sqrt()[:, None, None]
    torch.testing.assert_close(z[:, 0], ref)


def test_energy_blur_mixes_energy_windows_only_and_respects_the_mask():
    tile, h, w = 8, 16, 80  # 2 Ei row blocks x 10 energy windows of 8 x 8 bins
    x = torch.zeros(1, 2, h, w)
    x[:, 1] = 1.0
    x[0, 0, 3, 4 * tile + 5] = 1.0  # one bright bin in window 4
    x[0, 1, :, 6 * tile : 7 * tile] = 0.0  # window 6 is masked
    y = augment_batch(x, torch.Generator().manual_seed(0), noise=0.0, blur=0.0, energy_blur=1.5, mask_prob=0.0,
                      flip=False, tile=tile)
    sig = y[0, 0]
    rows, cols = torch.nonzero(sig).T
    assert set(rows.tolist()) == {3}  # never across Q rows or Ei blocks
    assert set((cols % tile).tolist()) == {5}  # same bin inside each window
    windows = sorted(set((cols // tile).tolist()))
    assert 4 in windows and len(windows) > 1 and 6 not in windows  # spread, but not into the masked window
    assert torch.equal(y[:, 1], x[:, 1])  # energy blur adds no masking
    off = augment_batch(x, torch.Generator().manual_seed(0), noise=0.0, blur=0.0, energy_blur=0.0, mask_prob=0.0,
                        flip=False, tile=tile)
    assert torch.count_nonzero(off[0, 0]) == 1


@pytest.mark.slow
def test_train_and_export_end_to_end(tmp_path, capsys):
    from mantid_exp2sim.bundle import load_bundle
    from mantid_exp2sim import classify
    from mantid_exp2sim.histogram import MDHisto
    from mantid_exp2sim.mosaic import mosaic_axes

    data = write_dataset(tmp_path / "train.h5", n=(24, 24))
    out = tmp_path / "clf.exp2sim.h5"
    argv = ["--train", str(data), "--out", str(out), "--epochs", "6", "--batch-size", "8", "--lr", "5e-3",
            "--gamma", "0.9", "--widths", "4,8,8,8", "--feature-dim", "8", "--embedding-dim", "8",
            "--val-fraction", "0.25", "--noise", "0.05", "--blur", "0.5", "--mask-prob", "0.2",
            "--threads", "1", "--exporter", "torchscript", "--seed", "3"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["holdout_accuracy"] >= 0.9
    b = load_bundle(out, kind="classifier", task="classify", ndim=2)
    m = b.manifest
    assert m["classes"] == ["dimer", "goodenough"]
    assert m["layout"] == "pcsmo-mosaic-v1"
    assert m["provenance"]["command"] == ["exp2sim-train", "classifier", *argv]
    assert m["provenance"]["seed"] == 3
    th = m["thresholds"]
    assert 0 < th["out_of_distribution"] <= th["confident"] <= 1
    assert m["training"]["kind"] == "unconvolved" and m["training"]["n_holdout"] == 12
    assert m["validation"]["onnx_max_abs_diff"] < 1e-4
    # the exported classifier separates the two classes on fresh samples
    fresh = write_dataset(tmp_path / "fresh.h5", n=(3, 3), seed=9)
    d = LabelledSpectra([str(fresh)])
    for i in range(len(d)):
        res = classify(MDHisto(d.read(i), mosaic_axes()), b)
        assert res.prediction == d.classes[d.labels[i]]


def test_bad_inputs(tmp_path, capsys):
    assert main(["--train", str(tmp_path / "missing.h5"), "--out", str(tmp_path / "x.h5")]) == 1
    assert "not found" in capsys.readouterr().err
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    assert main(["--train", str(tmp_path / "plain.h5"), "--out", str(tmp_path / "x.h5")]) == 1
    assert "not an exp2sim-simulate data set" in capsys.readouterr().err


def test_cycled_spectra_go_through_both_generators(tmp_path, tiny_bundle):
    from mantid_exp2sim.bundle import load_bundle
    from mantid_exp2sim.histogram import MDHisto
    from mantid_exp2sim.inference import translate
    from mantid_exp2sim.train.augment import cycled_spectra

    d = LabelledSpectra([str(write_dataset(tmp_path / "d.h5", n=(2, 2)))])
    conv, dec = tiny_bundle("convolve", 2), tiny_bundle("deconvolve", 2)
    out = cycled_spectra(d, [0, 3], [str(conv), str(dec)])
    assert sorted(out) == [0, 3]
    x = d.read(3).astype(np.float64)
    expected = translate(translate(MDHisto.from_array(x), load_bundle(conv)), load_bundle(dec)).signal
    np.testing.assert_allclose(out[3], expected, rtol=1e-5)
    assert np.isnan(out[3][:20, :60]).all()  # the coverage mask survives the cycle
    with pytest.raises(ValueError, match="not a 2D convolve bundle"):
        cycled_spectra(d, [0], [str(dec), str(conv)])
    with pytest.raises(ValueError, match="needs two bundles"):
        cycled_spectra(d, [0], [str(conv)])


def test_cycle_augmentation_replaces_training_spectra(tmp_path, tiny_bundle, monkeypatch, capsys):
    """With --cycle-augment 1 every training batch is made of the cycled copies."""
    import mantid_exp2sim.train.classifier as clf

    data = write_dataset(tmp_path / "train.h5", n=(6, 6))
    calls = {}

    def fake_cycled(d, indices, models, log=None):
        calls["indices"], calls["models"] = sorted(int(i) for i in indices), models
        return {int(i): np.full(SHAPE, 7.0 + i, np.float32) for i in indices}

    seen = []
    real_normalise = clf.normalised_batch
    monkeypatch.setattr(clf, "cycled_spectra", fake_cycled)
    monkeypatch.setattr(clf, "normalised_batch", lambda b: (seen.append(np.array(b)), real_normalise(b))[1])
    conv, dec = str(tiny_bundle("convolve", 2)), str(tiny_bundle("deconvolve", 2))
    argv = ["--train", str(data), "--out", str(tmp_path / "c.exp2sim.h5"), "--epochs", "1", "--batch-size", "4",
            "--widths", "4,4,4,4", "--feature-dim", "4", "--embedding-dim", "4", "--val-fraction", "0.34",
            "--threads", "1", "--exporter", "torchscript", "--cycle-augment", "1", "--cycle-models", conv, dec]
    assert main(argv) == 0
    assert len(calls["indices"]) == 8 and calls["models"] == [conv, dec]  # the training split only
    train_batches = seen[:2]  # two batches of 4, then the held-out evaluation
    assert all(np.all(np.nanstd(b.reshape(len(b), -1), axis=1) == 0) for b in train_batches)
    assert np.nanstd(seen[-1][0]) > 0  # held-out spectra are never replaced


def test_alignment_spectra_are_deconvolved_convolved_spectra(tmp_path, tiny_bundle):
    from mantid_exp2sim.bundle import load_bundle
    from mantid_exp2sim.histogram import MDHisto
    from mantid_exp2sim.inference import translate
    from mantid_exp2sim.train.augment import alignment_spectra

    p = str(write_dataset(tmp_path / "d.h5", n=(3, 3)))
    conv = LabelledSpectra([p], "convolved")
    raw = alignment_spectra([p], "none")
    assert raw.shape == (6, *SHAPE) and raw.dtype == np.float32
    np.testing.assert_allclose(raw[4], conv.read(4), rtol=1e-6)
    dec = tiny_bundle("deconvolve", 2)
    out = alignment_spectra([p], str(dec), max_samples=4, seed=1)
    assert out.shape == (4, *SHAPE)
    chosen = [i for i in range(6) if any(np.allclose(translate(MDHisto.from_array(conv.read(i).astype(np.float64)),
                                                               load_bundle(dec)).signal, o, rtol=1e-5, equal_nan=True)
                                         for o in out)]
    assert len(chosen) == 4  # each output is one convolved spectrum taken through the generator
    assert np.isnan(out[:, :20, :60]).all()  # the mask survives
    with pytest.raises(ValueError, match="not a 2D deconvolve bundle"):
        alignment_spectra([p], str(tiny_bundle("convolve", 2)))


def test_alignment_trains_on_both_batches_and_is_recorded(tmp_path, capsys):
    from mantid_exp2sim.bundle import load_bundle

    train = write_dataset(tmp_path / "train.h5", n=(6, 6))
    other = write_dataset(tmp_path / "other.h5", n=(4, 4), seed=5)
    out = tmp_path / "c.exp2sim.h5"
    argv = ["--train", str(train), "--out", str(out), "--epochs", "1", "--batch-size", "4",
            "--widths", "4,4,4,4", "--feature-dim", "4", "--embedding-dim", "4", "--val-fraction", "0.34",
            "--threads", "1", "--exporter", "torchscript", "--align", str(other), "--align-generator", "none",
            "--align-weight", "0.5"]
    assert main(argv) == 0
    log = capsys.readouterr().out
    assert "aligning features to 8 unlabelled spectra (weight 0.5)" in log and ", align " in log
    m = load_bundle(out, kind="classifier").manifest
    aligned = m["training"]["aligned_to"]
    assert aligned["files"] == [str(other)] and aligned["n_samples"] == 8 and aligned["weight"] == 0.5
    assert m["validation"]["history"][0]["align"] > 0
    # a data set of another layout is refused, naming the option
    small = tmp_path / "small.h5"
    with h5py.File(small, "w") as f:
        f.attrs["format"] = "exp2sim-dataset"
        f.attrs["format_version"] = 1
        f.attrs["representation"] = "mosaic"
        f.create_dataset("mask", data=np.zeros((24, 40), np.uint8))
        for name, label in (("goodenough", 1), ("dimer", 0)):
            g = f.create_group(name)
            g.attrs["label"], g.attrs["complete"] = label, 2
            g.create_dataset("convolved", data=np.ones((2, 24, 40), np.float32))
            g.create_dataset("unconvolved", data=np.ones((2, 24, 40), np.float32))
    argv[argv.index(str(other))] = str(small)
    assert main(argv) == 1
    assert "--align spectra do not match" in capsys.readouterr().err
    argv[argv.index(str(small))] = str(other)
    for option, value, message in (("--align-weight", "-1", "--align-weight must not be negative"),
                                   ("--align-samples", "0", "--align-samples must be at least 1")):
        bad = list(argv)
        if option in bad:
            bad[bad.index(option) + 1] = value
        else:
            bad += [option, value]
        assert main(bad) == 1
        assert message in capsys.readouterr().err


def test_energy_stack_on_measured_like_spectra_end_to_end(tmp_path, capsys, monkeypatch):
    from mantid_exp2sim import classify
    from mantid_exp2sim.bundle import load_bundle
    from mantid_exp2sim.histogram import MDHisto
    from mantid_exp2sim.mosaic import mosaic_axes

    monkeypatch.setenv("EXP2SIM_BUNDLE_DIR", str(tmp_path))  # no generator bundles: the classifier's own bank
    data = write_dataset(tmp_path / "train.h5", n=(24, 24))
    out = tmp_path / "clf.exp2sim.h5"
    argv = ["--train", str(data), "--kind", "convolved", "--architecture", "energy-stack", "--measured-like", "0.5",
            "--val-draws", "1", "--out", str(out), "--epochs", "4", "--batch-size", "8", "--lr", "5e-3",
            "--gamma", "0.9", "--widths", "2,4,8,8", "--feature-dim", "8", "--embedding-dim", "8",
            "--val-fraction", "0.25", "--noise", "0", "--blur", "0", "--mask-prob", "0.2", "--fit-length-scale",
            "--max-confident-wrong", "0.05", "--bank-samples", "48", "--threads", "1", "--exporter", "torchscript", "--seed", "3"]
    assert main(argv) == 0
    out_lines = capsys.readouterr().out
    assert "measured-like" in out_lines
    b = load_bundle(out, kind="classifier", task="classify", ndim=2)
    m = b.manifest
    assert m["architecture"]["name"] == "EnergyStackDUQ"
    assert m["provenance"]["command"] == ["exp2sim-train", "classifier", *argv]
    tr = m["training"]
    assert tr["kind"] == "convolved" and tr["measured_like"]["probability"] == 0.5
    assert tr["measured_like"]["masks"]["measured"]  # a source is recorded (measured or kinematic fallback)
    cal = tr["calibration"]
    # 12 held-out spectra, read clean and as one measured-like draw each
    assert cal["n_holdout_inputs"] == 24 and m["thresholds"]["n_holdout"] == 24
    assert cal["length_scale"] == pytest.approx(cal["length_scale_trained"] / np.sqrt(cal["kernel_power"]))
    assert m["architecture"]["config"]["length_scale"] == pytest.approx(cal["length_scale"])
    assert "holdout_accuracy_measured_like" in cal and "max_confident_wrong" in m["thresholds"]
    hist = m["validation"]["history"]
    assert {"val_accuracy_clean", "val_accuracy_measured_like"} <= set(hist[-1])
    # the bundle carries a domain bank in the classifier's feature space, used by default
    assert m["domain"]["features"].startswith("pooled")
    x = LabelledSpectra([str(data)], "convolved").read(0)
    res = classify(MDHisto(x, mosaic_axes()), b, domain_repeats=50, activation_map=True)
    assert res.domain is not None and res.domain["features"] == "classifier"
    assert res.domain["zone"] in ("trustworthy", "expert opinion", "untrustworthy")
    assert res.tile_importance.shape == (6, 10)
    assert res.activation_map.metadata["attribution"] == "input_gradient"
    from mantid_exp2sim.bundle.resolve import reference_bank
    from mantid_exp2sim.domain import score
    from mantid_exp2sim.inference.features import classifier_features

    arrays, calibration = reference_bank(b)
    direct = score(classifier_features([MDHisto(x, mosaic_axes())], b), arrays, calibration, repeats=50, seed=0)
    assert res.domain["mean"] == pytest.approx(direct.mean) and res.domain["zone"] == direct.zone


def test_measured_like_needs_convolved_spectra(tmp_path, capsys):
    data = write_dataset(tmp_path / "train.h5", n=(4, 4))
    argv = ["--train", str(data), "--measured-like", "0.5", "--out", str(tmp_path / "x.h5")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "--measured-like needs noise-free convolved spectra" in err and "--kind convolved" in err
    assert main([*argv[:-2], "--kind", "convolved", "--measured-like", "1.5", "--out", str(tmp_path / "x.h5")]) == 1
    assert "--measured-like must be a probability" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*argv[:-2], "--kind", "convolved", "--architecture", "resnet", "--out", str(tmp_path / "x.h5")])


def test_init_from_starts_at_a_bundles_weights_and_refuses_another_network(tmp_path, capsys, tiny_bundle):
    from mantid_exp2sim.bundle import load_bundle

    data = write_dataset(tmp_path / "train.h5", n=(6, 6))
    first = tmp_path / "first.exp2sim.h5"
    base = ["--train", str(data), "--epochs", "1", "--batch-size", "4", "--widths", "4,4,4,4",
            "--feature-dim", "4", "--embedding-dim", "4", "--val-fraction", "0.34", "--threads", "1",
            "--exporter", "torchscript", "--bank-samples", "0", "--fit-length-scale"]
    assert main([*base, "--out", str(first)]) == 0
    a = load_bundle(first, kind="classifier")
    assert a.manifest["architecture"]["config"]["length_scale"] != 0.1  # refitted: the restart must undo it
    # learning rate 0: the fine-tuned network keeps every trained parameter of the first
    second = tmp_path / "second.exp2sim.h5"
    assert main([*base, "--out", str(second), "--init-from", str(first), "--lr", "0", "--no-fit-length-scale"]) == 0
    assert "starting from the weights of" in capsys.readouterr().out
    b = load_bundle(second, kind="classifier")
    assert b.manifest["training"]["initial_weights"]["sha256"] == a.sha256
    assert b.manifest["architecture"]["config"]["length_scale"] == 0.1
    pa = dict(a.build_torch_model().named_parameters())
    pb = dict(b.build_torch_model().named_parameters())
    assert sorted(pa) == sorted(pb)
    for name in pa:
        assert torch.equal(pa[name], pb[name]), name
    # another network, or a bundle that is not a classifier, is refused naming the option
    assert main([*base, "--out", str(tmp_path / "x.h5"), "--init-from", str(first), "--widths", "4,4,4,8"]) == 1
    assert "--init-from bundle has another network" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "x.h5"), "--init-from", str(tiny_bundle("deconvolve", 2))]) == 1
    assert "--init-from needs a classifier bundle" in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists()


def test_holdout_from_draws_the_held_out_samples_from_the_named_files_only(tmp_path, capsys):
    from mantid_exp2sim.bundle import load_bundle
    from mantid_exp2sim.train.classifier import _split_from_files

    old = write_dataset(tmp_path / "old.h5", n=(6, 6), seed=1)
    new = write_dataset(tmp_path / "new.h5", n=(10, 10), seed=2)
    d = LabelledSpectra([str(old), str(new)], "unconvolved")
    pool = np.arange(len(d))
    tr, va = _split_from_files(pool, d.labels, d.file_index, [1], 0.3, np.random.default_rng(0))
    assert set(d.file_index[va]) == {1}
    assert np.bincount(d.labels[va]).tolist() == [3, 3]  # 30 % of each class of the new file
    assert sorted(np.concatenate([tr, va]).tolist()) == pool.tolist()  # disjoint, nothing dropped
    d.close()

    base = ["--epochs", "1", "--batch-size", "4", "--widths", "4,4,4,4", "--feature-dim", "4",
            "--embedding-dim", "4", "--val-fraction", "0.3", "--threads", "1", "--exporter", "torchscript",
            "--bank-samples", "0"]
    first = tmp_path / "first.exp2sim.h5"
    assert main(["--train", str(old), *base, "--out", str(first)]) == 0
    second = tmp_path / "second.exp2sim.h5"
    assert main(["--train", str(old), str(new), "--holdout-from", str(new), "--init-from", str(first),
                 *base, "--out", str(second)]) == 0
    t = load_bundle(second, kind="classifier").manifest["training"]
    assert (t["n_train"], t["n_holdout"]) == (26, 6)
    capsys.readouterr()
    # a held-out file that is not a training file, or that trained the initial weights, is refused
    assert main(["--train", str(old), "--holdout-from", str(new), *base, "--out", str(tmp_path / "x.h5")]) == 1
    assert "--holdout-from names a file that is not a training file" in capsys.readouterr().err
    assert main(["--train", str(old), str(new), "--holdout-from", str(old), "--init-from", str(first),
                 *base, "--out", str(tmp_path / "x.h5")]) == 1
    assert "--holdout-from file trained the --init-from weights" in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists()
