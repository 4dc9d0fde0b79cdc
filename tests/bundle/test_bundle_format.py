"""Model bundles: round trip, checksums, and every rejection the loader promises."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from mantid_exp2sim._version import __version__
from mantid_exp2sim.bundle import (
    SCHEMA_VERSION,
    default_bundle_path,
    load_bundle,
    make_manifest,
    register_architecture,
    write_bundle,
)
from mantid_exp2sim.errors import BundleError
from minimal_onnx import minimal_onnx

ONNX = minimal_onnx("network")
ENCODER = minimal_onnx("encoder", value=2.0)


class _FakeNet:
    """Duck-typed stand-in for a generator, for make_manifest(model=...)."""

    ndim = 2
    in_channels = 2
    out_channels = 1
    spatial_multiple = 4

    def architecture(self):
        return {"name": "TestDouble", "config": {"width": 3}}

    def receptive_field_radius(self):
        return 17

    def min_spatial_size(self):
        return 8


def _manifest(**kw):
    args = dict(kind="generator", task="deconvolve", model=_FakeNet(), direction="exp2sim", patch_size=64, seed=5)
    args.update(kw)
    return make_manifest(**args)


def _weights():
    rng = np.random.default_rng(0)
    return {"conv.weight": rng.normal(size=(3, 2, 3, 3)), "conv.bias": np.zeros(3), "steps": np.array(7)}


@pytest.fixture
def bundle_path(tmp_path):
    ref = {"features": np.arange(12.0).reshape(4, 3), "calibration": np.array([1.5, 2.5])}
    return write_bundle(tmp_path / "m.exp2sim.h5", _manifest(), onnx=ONNX, onnx_encoder=ENCODER,
                        weights=_weights(), reference=ref)


def test_round_trip(bundle_path):
    b = load_bundle(bundle_path, kind="generator", task="deconvolve", ndim=2)
    m = b.manifest
    assert m["schema_version"] == SCHEMA_VERSION and b.bundle_id == m["bundle_id"]
    assert b.path == bundle_path
    assert b.sha256 == hashlib.sha256(bundle_path.read_bytes()).hexdigest()
    assert b.onnx_bytes() == ONNX and b.onnx_bytes("onnx_encoder") == ENCODER
    w = b.weights()
    assert w["conv.weight"].dtype == np.float32 and w["steps"].dtype.kind == "i"
    np.testing.assert_allclose(w["conv.weight"], _weights()["conv.weight"].astype(np.float32))
    np.testing.assert_array_equal(b.reference()["features"], np.arange(12.0).reshape(4, 3))
    assert b.reference()["features"].dtype == np.float64
    assert (b.halo, b.multiple, b.min_size, b.patch_size) == (17, 4, 8, 64)
    assert m["architecture"] == {"name": "TestDouble", "config": {"width": 3}}
    assert m["in_channels"] == 2 and m["out_channels"] == 1 and m["direction"] == "exp2sim"
    assert m["layout"] is None and m["classes"] is None
    assert set(m["parts"]) == {"onnx", "onnx_encoder", "weights/conv.weight", "weights/conv.bias",
                               "weights/steps", "reference/features", "reference/calibration"}
    assert m["parts"]["onnx"]["sha256"] == hashlib.sha256(ONNX).hexdigest()
    assert m["parts"]["weights/conv.weight"]["shape"] == [3, 2, 3, 3]
    # returned arrays are copies: the bundle cannot be changed through them
    w["conv.bias"][:] = 5
    assert np.all(b.weights()["conv.bias"] == 0)


def test_provenance_is_filled_in():
    m = _manifest(command=["exp2sim-train", "--epochs", "3"])
    prov = m["provenance"]
    assert prov["package_version"] == __version__ and prov["seed"] == 5
    assert prov["command"] == ["exp2sim-train", "--epochs", "3"]
    assert prov["date"].endswith("+00:00")
    assert prov["git_commit"] is None or (len(prov["git_commit"]) == 40 and int(prov["git_commit"], 16) >= 0)
    assert m["bundle_id"].startswith("deconvolve-2d-")
    assert m["normalisation"]["method"] == "rms" and m["normalisation"]["pad_mode"] == "replicate"
    with pytest.raises(BundleError, match="invalid 'task'"):
        _manifest(task="denoise")
    with pytest.raises(BundleError, match="architecture and ndim"):
        make_manifest(kind="generator", task="convolve")


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path, bundle_path):
    before = bundle_path.read_bytes()
    with pytest.raises(BundleError, match="dtype"):
        write_bundle(bundle_path, _manifest(), onnx=ONNX, weights={"w": np.array(["text"])})
    with pytest.raises(BundleError, match="onnx"):
        write_bundle(bundle_path, _manifest(), onnx=b"", weights=_weights())
    assert bundle_path.read_bytes() == before
    write_bundle(bundle_path, _manifest(), onnx=ONNX, weights=_weights())  # overwrite
    assert [p.name for p in tmp_path.iterdir()] == ["m.exp2sim.h5"]
    assert load_bundle(bundle_path).reference() == {}
    with pytest.raises(BundleError, match="no part 'onnx_encoder'"):
        load_bundle(bundle_path).onnx_bytes("onnx_encoder")


def _edit(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)


def _edit_manifest(path, change):
    def fn(f):
        m = json.loads(f.attrs["manifest"])
        change(m)
        f.attrs["manifest"] = json.dumps(m)

    _edit(path, fn)


def test_corrupted_part_is_named(bundle_path):
    def flip(f):
        d = f["parts/weights/conv.weight"]
        d[0, 0, 0, 0] = d[0, 0, 0, 0] + 1.0

    _edit(bundle_path, flip)
    with pytest.raises(BundleError, match=r"corrupted: part 'weights/conv.weight'"):
        load_bundle(bundle_path)


def test_corrupted_onnx_is_named(bundle_path):
    def flip(f):
        d = f["parts/onnx"]
        d[3] = (int(d[3]) + 1) % 256

    _edit(bundle_path, flip)
    with pytest.raises(BundleError, match=r"part 'onnx' does not match its checksum"):
        load_bundle(bundle_path)


def test_truncated_file(bundle_path):
    data = bundle_path.read_bytes()
    bundle_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="m.exp2sim.h5") as err:
        load_bundle(bundle_path)
    assert "truncated" in str(err.value) and "re-export" in str(err.value)


def test_not_a_bundle(tmp_path):
    text = tmp_path / "notes.exp2sim.h5"
    text.write_text("hello")
    with pytest.raises(BundleError, match="not a readable HDF5 bundle"):
        load_bundle(text)
    other = tmp_path / "data.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(BundleError, match="is not a mantid-exp2sim model bundle"):
        load_bundle(other)
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "missing.exp2sim.h5")


def test_newer_schema_version_asks_for_an_upgrade(bundle_path):
    _edit(bundle_path, lambda f: f.attrs.__setitem__("schema_version", SCHEMA_VERSION + 1))
    with pytest.raises(BundleError) as err:
        load_bundle(bundle_path)
    msg = str(err.value)
    assert f"schema version {SCHEMA_VERSION + 1}" in msg and f"supports schema version {SCHEMA_VERSION}" in msg
    assert "upgrade" in msg


@pytest.mark.parametrize(
    "request_kw,pattern",
    [
        (dict(kind="classifier"), "expected kind='classifier', the file holds kind='generator'"),
        (dict(task="convolve"), "expected task='convolve', the file holds task='deconvolve'"),
        (dict(ndim=3), "expected ndim=3, the file holds ndim=2"),
    ],
)
def test_wrong_kind_task_or_ndim(bundle_path, request_kw, pattern):
    with pytest.raises(BundleError, match=pattern):
        load_bundle(bundle_path, **request_kw)


def test_missing_manifest_key(bundle_path):
    _edit_manifest(bundle_path, lambda m: m.pop("patch"))
    with pytest.raises(BundleError, match="lacks required keys in .*m.exp2sim.h5: missing or null: patch"):
        load_bundle(bundle_path)


def test_unlisted_or_missing_parts(bundle_path):
    _edit(bundle_path, lambda f: f["parts/weights"].create_dataset("extra", data=np.zeros(2)))
    with pytest.raises(BundleError, match="present but not listed: weights/extra"):
        load_bundle(bundle_path)
    _edit(bundle_path, lambda f: (f["parts/weights"].__delitem__("extra"), f["parts"].__delitem__("onnx_encoder")))
    with pytest.raises(BundleError, match="listed but absent: onnx_encoder"):
        load_bundle(bundle_path)


def test_build_torch_model_uses_the_registry_and_strict_loading(tmp_path):
    torch = pytest.importorskip("torch")
    from mantid_exp2sim.models import ResnetGenerator

    g = ResnetGenerator(2, ngf=4, n_blocks=1)
    with torch.no_grad():
        g.head.weight.normal_(0, 0.1)
        g.blocks[0].alpha.fill_(0.5)
    path = write_bundle(tmp_path / "g.exp2sim.h5", make_manifest(kind="generator", task="convolve", model=g),
                        onnx=ONNX, weights=g.state_dict())
    b = load_bundle(path, task="convolve")
    assert b.halo == g.receptive_field_radius() and b.min_size == g.min_spatial_size()
    g2 = b.build_torch_model()
    assert not g2.training
    x = torch.randn(1, 2, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(g2(x), g(x))
    # weights that do not fit the architecture are a BundleError, not a silent partial load
    w = {k: v for k, v in g.state_dict().items() if k != "head.bias"}
    bad = write_bundle(tmp_path / "bad.exp2sim.h5", make_manifest(kind="generator", task="convolve", model=g),
                       onnx=ONNX, weights=w)
    with pytest.raises(BundleError, match="do not fit its architecture"):
        load_bundle(bad).build_torch_model()


def test_unknown_and_custom_architectures(bundle_path):
    with pytest.raises(BundleError, match="Unknown architecture 'TestDouble'"):
        load_bundle(bundle_path).build_torch_model()

    class Tiny:
        def __init__(self, width):
            self.state = None

        def load_state_dict(self, state, strict):
            assert strict
            self.state = state

        def eval(self):
            return self

    pytest.importorskip("torch")
    register_architecture("TestDouble", lambda cfg: Tiny(**cfg), overwrite=True)
    model = load_bundle(bundle_path).build_torch_model()
    assert sorted(model.state) == ["conv.bias", "conv.weight", "steps"]
    with pytest.raises(ValueError, match="already registered"):
        register_architecture("TestDouble", "somewhere:else")


def test_default_bundle_path(tmp_path, monkeypatch):
    monkeypatch.setenv("EXP2SIM_BUNDLE_DIR", str(tmp_path))
    with pytest.raises(BundleError) as err:
        default_bundle_path("deconvolve", 3)
    msg = str(err.value)
    assert "deconvolve_3d.exp2sim.h5" in msg and str(tmp_path) in msg and "exp2sim-train" in msg
    (tmp_path / "deconvolve_3d.exp2sim.h5").write_bytes(b"x")
    assert default_bundle_path("deconvolve", 3) == tmp_path / "deconvolve_3d.exp2sim.h5"
    with pytest.raises(BundleError, match="task='sharpen'"):
        default_bundle_path("sharpen", 2)
    monkeypatch.delenv("EXP2SIM_BUNDLE_DIR")
    p = default_bundle_path("classify", 2, must_exist=False)
    assert p.parts[-3:] == ("data", "bundles", "classify_2d.exp2sim.h5")
    assert p.parent.parent.parent.name == "mantid_exp2sim"


def test_bundles_load_without_torch(tmp_path, bundle_path):
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['onnx'] = None\n"
        "from mantid_exp2sim.bundle import load_bundle\n"
        f"b = load_bundle({str(bundle_path)!r})\n"
        "assert b.weights()['conv.weight'].shape == (3, 2, 3, 3)\n"
        "try:\n    b.build_torch_model()\nexcept ImportError as e:\n    print('NEEDS-TORCH', e)\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    res = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "NEEDS-TORCH" in res.stdout and "pip install" in res.stdout
