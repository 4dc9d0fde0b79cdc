"""Schema 2: ONNX initializers equal to a weights part are stored once and rebuilt on load."""

import hashlib
import json

import h5py
import numpy as np
import pytest

from mantid_exp2sim.bundle import SCHEMA_VERSION, default_bundle_path, load_bundle, make_manifest, write_bundle
from mantid_exp2sim.bundle.format import array_sha256
from mantid_exp2sim.bundle.onnx_share import restore_shared_initializers, strip_shared_initializers
from mantid_exp2sim.errors import BundleError
from minimal_onnx import minimal_onnx

# output = input + W with W = 1.5; the encoder's W = 1.5 too, so both share one weight
ONNX = minimal_onnx("network", value=1.5)
ENCODER = minimal_onnx("encoder", value=1.5)


class _Net:
    ndim, in_channels, out_channels, spatial_multiple = 2, 2, 1, 4

    def architecture(self):
        return {"name": "TestDouble", "config": {}}

    def receptive_field_radius(self):
        return 3

    def min_spatial_size(self):
        return 4


def _manifest():
    return make_manifest(kind="generator", task="deconvolve", model=_Net(), direction="exp2sim", seed=1)


def _weights():
    return {"w": np.array([1.5], dtype=np.float32), "other": np.arange(6.0).reshape(2, 3)}


def _write(path, **kw):
    return write_bundle(path, _manifest(), onnx=ONNX, onnx_encoder=ENCODER, weights=_weights(), **kw)


def test_strip_and_restore_are_byte_exact():
    skeleton, shared = strip_shared_initializers(ONNX, {"w": np.array([1.5], np.float32)})
    assert shared == {"W": "w"} and len(skeleton) == len(ONNX) - 6  # tag, length and 4 bytes
    assert restore_shared_initializers(skeleton, shared, {"w": np.array([1.5], np.float32)}) == ONNX
    # nothing equal: the graph is kept whole
    assert strip_shared_initializers(ONNX, {"w": np.array([2.5], np.float32)}) == (ONNX, {})


def test_each_weight_is_stored_once_and_graphs_read_back_identical(tmp_path):
    path = _write(tmp_path / "m.exp2sim.h5")
    b = load_bundle(path)
    assert b.manifest["schema_version"] == SCHEMA_VERSION == 2
    for name, whole in (("onnx", ONNX), ("onnx_encoder", ENCODER)):
        info = b.manifest["parts"][name]
        assert info["initializers_in_weights"] == {"W": "weights/w"}
        assert info["graph_sha256"] == hashlib.sha256(whole).hexdigest()
        assert info["shape"] == [len(whole) - 6]
        assert b.onnx_bytes(name) == whole
    with h5py.File(path, "r") as f:
        assert f["parts/onnx"].shape == (len(ONNX) - 6,)


def test_rebuilt_graph_runs_in_onnx_runtime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    b = load_bundle(_write(tmp_path / "m.exp2sim.h5"))
    s = ort.InferenceSession(b.onnx_bytes(), providers=["CPUExecutionProvider"])
    (y,) = s.run(None, {"input": np.array([2.0], np.float32)})
    assert y.tolist() == [3.5]


def _rewrite_manifest(path, change):
    with h5py.File(path, "r+") as f:
        m = json.loads(f.attrs["manifest"])
        change(f, m)
        f.attrs["manifest"] = json.dumps(m)


def test_a_changed_weight_is_caught_as_a_corrupted_graph(tmp_path):
    path = _write(tmp_path / "m.exp2sim.h5")

    def change(f, m):  # a consistent edit of the weight and its checksum: the graph checksum still catches it
        f["parts/weights/w"][0] = 2.5
        m["parts"]["weights/w"]["sha256"] = array_sha256(f["parts/weights/w"][()])

    _rewrite_manifest(path, change)
    with pytest.raises(BundleError, match=r"part 'onnx' rebuilt from the weights does not match its checksum"):
        load_bundle(path)


def test_a_damaged_sharing_list_is_named(tmp_path):
    path = _write(tmp_path / "m.exp2sim.h5")
    _rewrite_manifest(path, lambda f, m: m["parts"]["onnx"].__setitem__("initializers_in_weights", {"X": "weights/w"}))
    with pytest.raises(BundleError, match=r"part 'onnx' cannot be rebuilt from its weights.*'X'"):
        load_bundle(path)
    _rewrite_manifest(path, lambda f, m: m["parts"]["onnx"].__setitem__("initializers_in_weights", ["W"]))
    with pytest.raises(BundleError, match=r"part 'onnx' has an invalid list of shared initializers"):
        load_bundle(path)


def test_schema_1_bundles_are_still_read_and_repack_to_schema_2(tmp_path):
    from mantid_exp2sim.train.export import repack_bundle

    # a schema-1 file: graphs whole, no sharing entries
    old = tmp_path / "old.exp2sim.h5"
    m = json.loads(json.dumps(_manifest()))
    m["schema_version"] = 1
    w = {k: np.asarray(v, np.float32) for k, v in _weights().items()}
    parts = {"onnx": ONNX, "onnx_encoder": ENCODER}
    m["parts"] = {k: {"sha256": hashlib.sha256(v).hexdigest(), "shape": [len(v)], "dtype": "uint8"} for k, v in parts.items()}
    m["parts"].update({f"weights/{k}": {"sha256": array_sha256(v), "shape": list(v.shape), "dtype": "float32"}
                       for k, v in w.items()})
    for key in ("direction", "expected_axes", "layout", "classes", "thresholds", "domain", "training", "validation"):
        m.setdefault(key, None)
    with h5py.File(old, "w") as f:
        f.attrs.update(schema="mantid-exp2sim-bundle", schema_version=np.int64(1), manifest=json.dumps(m))
        for k, v in parts.items():
            f.create_dataset(f"parts/{k}", data=np.frombuffer(v, np.uint8))
        for k, v in w.items():
            f.create_dataset(f"parts/weights/{k}", data=v)
    b1 = load_bundle(old)
    assert b1.onnx_bytes() == ONNX and b1.manifest["schema_version"] == 1

    new = repack_bundle(old, tmp_path / "new.exp2sim.h5", command=["exp2sim-train", "repack", "old"])
    b2 = load_bundle(new)
    assert b2.manifest["schema_version"] == 2 and b2.onnx_bytes() == ONNX and b2.onnx_bytes("onnx_encoder") == ENCODER
    rep = b2.manifest["provenance"]["repacked"]
    assert rep["from_sha256"] == b1.sha256 and rep["from_schema_version"] == 1
    assert rep["command"] == ["exp2sim-train", "repack", "old"]
    assert b2.manifest["provenance"]["command"] == b1.manifest["provenance"]["command"]
    from mantid_exp2sim.io import OutputPathError

    with pytest.raises(OutputPathError, match="exists"):
        repack_bundle(old, new)
    with pytest.raises(OutputPathError):
        repack_bundle(old, old, overwrite=True)  # never over its own input


@pytest.mark.parametrize("task,ndim", [("deconvolve", 2), ("convolve", 2), ("deconvolve", 3), ("convolve", 3)])
def test_shipped_generators_store_their_weights_once(task, ndim):
    path = default_bundle_path(task, ndim)
    if not path.is_file():
        pytest.skip("shipped bundle absent")
    b = load_bundle(path, kind="generator", task=task, ndim=ndim)
    weights = b.weights()
    stored = {name: b.manifest["parts"][name]["shape"][0] for name in ("onnx", "onnx_encoder")}
    for name in ("onnx", "onnx_encoder"):
        info = b.manifest["parts"][name]
        assert set(info["initializers_in_weights"].values()) <= {f"weights/{k}" for k in weights}
        # what stays in the graph part is structure: far smaller than the weights it uses
        assert stored[name] < 0.1 * sum(weights[k[len("weights/"):]].nbytes for k in info["initializers_in_weights"].values())
    assert "repacked" in b.manifest["provenance"] and path.stat().st_size < 8 * 2**20
