"""exp2sim-train export: checkpoint -> generator bundle that load_bundle accepts and ONNX matches torch."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
h5py = pytest.importorskip("h5py")
ort = pytest.importorskip("onnxruntime")

from mantid_exp2sim.bundle import load_bundle  # noqa: E402
from mantid_exp2sim.errors import InputDataError  # noqa: E402
from mantid_exp2sim.train import cli  # noqa: E402
from mantid_exp2sim.train.checkpoint import load_checkpoint  # noqa: E402
from mantid_exp2sim.train.config import GanConfig  # noqa: E402
from mantid_exp2sim.train.data import data_from_config  # noqa: E402
from mantid_exp2sim.train.export import export_bundle  # noqa: E402
from mantid_exp2sim.train.gan import GanTrainer  # noqa: E402

pytestmark = pytest.mark.torch


def write_sim(path, n=100, shape=(16, 16), seed=0):
    """Tiny exp2sim-simulate file with axes: B = sparse peaks, A = B blurred, a masked corner."""
    import json

    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, dtype=np.uint8)
    mask[:2, :3] = 1
    with h5py.File(path, "w") as f:
        f.attrs.update(format="exp2sim-dataset", format_version=1, representation="qe_slice", seed=seed)
        f.attrs["axes"] = json.dumps([
            {"name": "|Q|", "unit": "Angstrom^-1", "minimum": 0.0, "maximum": 3.2, "bins": shape[0], "id": "|Q|",
             "frame": "General Frame"},
            {"name": "DeltaE", "unit": "meV", "minimum": 0.0, "maximum": 48.0, "bins": shape[1], "id": "DeltaE",
             "frame": "General Frame"},
        ])
        f["mask"] = mask
        g = f.create_group("dimer")
        b = rng.random((n,) + shape).astype(np.float32) * 0.1
        for i in range(n):
            b[i][tuple(rng.integers(0, s) for s in shape)] += 3.0
        a = np.stack([gaussian_filter(x, 1.0) for x in b]).astype(np.float32)
        a[:, mask.astype(bool)] = np.nan
        b[:, mask.astype(bool)] = np.nan
        g["convolved"], g["unconvolved"] = a, b
        g.attrs["complete"] = n
    return str(path)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("export")
    sim = write_sim(tmp / "sim.h5")
    cfg = GanConfig(domain_a=[sim], domain_b=[sim], patch_size=[16, 16], batch_size=2, ngf=4, n_blocks=1, ndf=4,
                    n_layers=2, num_patches=8, netf_nc=8, max_steps=3, val_samples=2, plot=False, seed=4)
    trainer = GanTrainer(cfg, data_from_config(cfg), tmp / "run")
    trainer.fit()
    return tmp, sim


@pytest.mark.slow
def test_export_writes_a_valid_bundle_matching_torch(run):
    tmp, sim = run
    # TorchScript export is fast; the CLI test below uses the default (dynamo) exporter
    out = export_bundle(tmp / "run", tmp / "dec.exp2sim.h5", task="deconvolve", val_pairs=4,
                        command=["exp2sim-train", "export", "run"], onnx_exporter="torchscript")
    b = load_bundle(out, kind="generator", task="deconvolve", ndim=2)
    m = b.manifest
    ckpt = load_checkpoint(tmp / "run")

    # the torch model is G_A of the checkpoint
    model = b.build_torch_model()
    for k, v in ckpt["models"]["G_A"].items():
        torch.testing.assert_close(model.state_dict()[k], v)
    assert m["direction"] == "exp2sim"
    assert m["patch"]["halo"] == model.receptive_field_radius() and m["patch"]["multiple"] == 4
    assert m["patch"]["size"] == [1024, 1024]
    assert [ax["name"] for ax in m["expected_axes"]] == ["|Q|", "DeltaE"]

    # ONNX (generator and encoder) against torch on a size never used in training
    rng = np.random.default_rng(0)
    x = np.zeros((1, 2, 28, 20), dtype=np.float32)
    x[0, 1] = rng.random((28, 20)) > 0.2
    x[0, 0] = rng.standard_normal((28, 20)) * x[0, 1]
    for part, fn in (("onnx", model), ("onnx_encoder", model.encode)):
        sess = ort.InferenceSession(b.onnx_bytes(part), providers=["CPUExecutionProvider"])
        y = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        with torch.no_grad():
            ref = fn(torch.from_numpy(x)).numpy()
        assert y.shape == ref.shape
        assert np.abs(y - ref).max() < 1e-4
    assert m["validation"]["onnx_max_abs_diff"] < 1e-3 and m["validation"]["onnx_exporter"] == "torchscript"
    assert all(s[2:] != [16, 16] for s in m["validation"]["onnx_check_shapes"])

    # validation metrics of this direction on held-out pairs, and provenance
    v = m["validation"]
    assert v["n_pairs"] == 4 and np.isfinite(v["psnr_deconvolve"]) and np.isfinite(v["psnr_identity"])
    assert 0.5 < v["intensity_ratio_deconvolve"] < 2.0
    assert m["provenance"]["command"] == ["exp2sim-train", "export", "run"]
    assert m["provenance"]["seed"] == 4 and m["provenance"]["package_version"]
    assert m["training"]["steps"] == 3 and m["training"]["loss_weights"]["nce"] == 4.0

    # domain-score reference bank: every training sample of domain A (48 of 100 here) + held-out ones
    ref = b.reference()
    c = 2 * model.ngf * 2**model.n_down
    n_train = ckpt["split"]["a_train"].numel()
    assert n_train == 48
    assert ref["features"].shape == (n_train, c) and ref["holdout_features"].shape == (5, c)
    assert m["domain"]["train_samples_encoded"] == n_train and "thresholds" in m["domain"]
    assert set(m["domain"]["thresholds"]) == {"1", "5"}


@pytest.mark.slow
def test_export_convolve_and_errors(run):
    tmp, sim = run
    with pytest.raises(InputDataError, match="task"):
        export_bundle(tmp / "run", tmp / "x.exp2sim.h5", task="classify")
    other = write_sim(tmp / "other.h5", seed=9)
    with pytest.raises(InputDataError, match="differ"):
        export_bundle(tmp / "run", tmp / "x.exp2sim.h5", task="convolve", domain_a=[other], domain_b=[other])
    assert not (tmp / "x.exp2sim.h5").exists()
    rc = cli.main(["export", str(tmp / "run" / "checkpoint.pt"), "--task", "convolve", "-o",
                   str(tmp / "conv.exp2sim.h5"), "--val-pairs", "2", "--quiet"])
    assert rc == 0
    b = load_bundle(tmp / "conv.exp2sim.h5", task="convolve")
    ckpt = load_checkpoint(tmp / "run")
    for k, v in ckpt["models"]["G_B"].items():
        np.testing.assert_array_equal(b.weights()[k], v.numpy())
    assert b.manifest["direction"] == "sim2exp"
    assert b.manifest["provenance"]["command"][:2] == ["exp2sim-train", "export"]
    assert "psnr_convolve" in b.manifest["validation"]


def _listing(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_export_checks_its_output_and_the_data_size_before_any_export_work(run, monkeypatch, capsys):
    import mantid_exp2sim.onnx as onnx_module

    tmp, sim = run

    def must_not_run(*args, **kwargs):
        raise AssertionError("the ONNX export started")

    monkeypatch.setattr(onnx_module, "export_onnx", must_not_run)
    (tmp / "old.exp2sim.h5").write_bytes(b"old bundle")
    (tmp / "adir.h5").mkdir(exist_ok=True)
    before = _listing(tmp)
    ckpt = str(tmp / "run" / "checkpoint.pt")
    for output, extra, words in (
        (tmp / "old.exp2sim.h5", [], "the file exists. pass --overwrite"),
        (tmp / "sim.h5", ["--overwrite"], "is the input"),  # the training data
        (tmp / "run" / "checkpoint.pt", ["--overwrite"], "is the input"),
        (tmp / "adir.h5", [], "a directory with that name exists"),
        (tmp / "b.onnx", [], "'.onnx' is not one of .h5"),
        (tmp / "missing" / "b.exp2sim.h5", [], f"'{tmp / 'missing'}' does not exist"),
    ):
        rc = cli.main(["export", ckpt, "--task", "deconvolve", "-o", str(output), "--quiet", *extra])
        err = capsys.readouterr().err
        assert rc == 1 and words in err and len(err.splitlines()) == 1 and "Traceback" not in err, output
    # 48 training samples of domain A: too few for a bank when only 40 may be encoded, none held out when 0
    for extra, words in ((["--n-train-features", "40"], "40 training samples of the input domain"),
                         (["--n-holdout-features", "0"], "no held-out samples")):
        rc = cli.main(["export", ckpt, "--task", "deconvolve", "-o", str(tmp / "small.exp2sim.h5"), "--quiet", *extra])
        err = capsys.readouterr().err
        assert rc == 1 and "Too few samples for the domain-score reference bank" in err and words in err
        assert len(err.splitlines()) == 1
    assert _listing(tmp) == before
