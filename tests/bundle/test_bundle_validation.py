"""Bundles are data: ONNX parts must be ONNX with every tensor inside, manifests must hold values
this version understands (issue 12, item 4). Every rejection names the part or the field."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest

from mantid_exp2sim._version import __version__
from mantid_exp2sim.bundle import default_bundle_path, load_bundle, make_manifest, write_bundle
from mantid_exp2sim.bundle.manifest import PAD_MODES, validate_manifest
from mantid_exp2sim.bundle.onnx_check import check_onnx_part, summarise_onnx
from mantid_exp2sim.errors import BundleError
from minimal_onnx import EXTERNAL_PLACES, minimal_onnx

WEIGHTS = {"w": np.ones((2, 2), dtype=np.float32)}


def _generator_manifest(**kw):
    args = dict(kind="generator", task="deconvolve", direction="exp2sim", ndim=2,
                architecture={"name": "ResnetGenerator", "config": {"ndim": 2, "in_channels": 2, "out_channels": 1}},
                halo=5, multiple=4, min_size=8, patch_size=[32, 32], command=["pytest"], seed=0)
    args.update(kw)
    return make_manifest(**args)


def _classifier_manifest(**kw):
    args = dict(kind="classifier", task="classify", ndim=2,
                architecture={"name": "DUQClassifier", "config": {"in_channels": 2, "n_classes": 2}},
                halo=0, multiple=1, in_channels=2, out_channels=2, layout="pcsmo-mosaic-v1",
                classes=["goodenough", "dimer"], thresholds={"confident": 0.6, "out_of_distribution": 0.3, "rule": "..."},
                command=["pytest"])
    args.update(kw)
    return make_manifest(**args)


def _raw_bundle(path: Path, manifest: dict, parts: dict[str, bytes | np.ndarray]) -> Path:
    """A bundle file with valid checksums written without any validation (as an attacker or a
    buggy writer would)."""
    m = json.loads(json.dumps(manifest))
    m["schema_version"] = 1
    listed = {}
    with h5py.File(path, "w") as f:
        f.attrs["schema"] = "mantid-exp2sim-bundle"
        f.attrs["schema_version"] = np.int64(1)
        for name, value in parts.items():
            a = np.frombuffer(value, dtype=np.uint8) if isinstance(value, bytes) else np.asarray(value)
            f.create_dataset(f"parts/{name}", data=a)
            listed[name] = {"sha256": hashlib.sha256(a.tobytes()).hexdigest(), "shape": list(a.shape),
                            "dtype": str(a.dtype)}
        m["parts"] = listed
        f.attrs["manifest"] = json.dumps(m)
    return path


# ---------------------------------------------------------------- ONNX parts
def test_minimal_onnx_is_accepted_and_summarised():
    s = check_onnx_part(minimal_onnx(), part="onnx", where="x.h5")
    assert (s.ir_version, s.has_opset_import, s.graph_nodes, s.graph_inputs, s.graph_outputs) == (8, True, 1, 1, 1)
    assert s.external == []


@pytest.mark.parametrize("place", EXTERNAL_PLACES)
def test_external_data_is_refused_at_write_and_at_load(tmp_path, place):
    blob = minimal_onnx(external=place)
    assert summarise_onnx(blob).external, place
    (tmp_path / "w.bin").write_bytes(struct.pack("<f", 41.0))
    with pytest.raises(BundleError, match=r"part 'onnx' stores tensors in external files.*'w\.bin'"):
        write_bundle(tmp_path / "a.exp2sim.h5", _generator_manifest(), onnx=blob, weights=WEIGHTS)
    assert not (tmp_path / "a.exp2sim.h5").exists()
    path = _raw_bundle(tmp_path / "b.exp2sim.h5", _generator_manifest(),
                       {"onnx": minimal_onnx(), "onnx_encoder": blob, "weights/w": WEIGHTS["w"]})
    with pytest.raises(BundleError) as err:
        load_bundle(path)
    msg = str(err.value)
    assert "part 'onnx_encoder'" in msg and "external" in msg and str(path) in msg and "\n" not in msg


def test_external_data_is_refused_in_a_real_exported_graph(tmp_path):
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    from onnx.external_data_helper import set_external_data

    w = numpy_helper.from_array(np.full((1, 2, 3, 3), 0.5, np.float32), "weight")
    graph = helper.make_graph([helper.make_node("Conv", ["input", "weight"], ["output"], pads=[1, 1, 1, 1])], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 2, 8, 8])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, 8, 8])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    check_onnx_part(model.SerializeToString(), part="onnx", where="x")
    (tmp_path / "w.bin").write_bytes(numpy_helper.to_array(w).tobytes())
    tensor = model.graph.initializer[0]
    set_external_data(tensor, "w.bin", offset=0, length=72)
    tensor.data_location = TensorProto.EXTERNAL
    tensor.ClearField("raw_data")
    with pytest.raises(BundleError, match="'weight' -> 'w.bin' \\(in the main graph\\)"):
        check_onnx_part(model.SerializeToString(), part="onnx", where="x")


@pytest.mark.parametrize(
    "blob, reason",
    [
        (b"this is not an ONNX model\n" * 20, "do not parse"),
        (b"PK\x03\x04" + bytes(range(200)), "do not parse"),
        (b"\x08\x07", "no operator set imported; no graph"),
        (minimal_onnx()[:-7], "do not parse"),  # truncated
        (b"\x08\x08\x3a\x00\x42\x04\x0a\x00\x10\x12", "an empty graph"),  # ir 8, empty graph, opset 18
    ],
)
def test_a_part_that_is_not_onnx_is_named(tmp_path, blob, reason):
    path = _raw_bundle(tmp_path / "b.exp2sim.h5", _generator_manifest(), {"onnx": blob, "weights/w": WEIGHTS["w"]})
    with pytest.raises(BundleError) as err:
        load_bundle(path)
    msg = str(err.value)
    assert f"{path} is damaged: part 'onnx' is not an ONNX model" in msg and reason in msg
    assert "re-export" in msg and "\n" not in msg
    with pytest.raises(BundleError, match="part 'onnx' is not an ONNX model"):
        write_bundle(tmp_path / "c.exp2sim.h5", _generator_manifest(), onnx=blob, weights=WEIGHTS)


@pytest.mark.parametrize("how", ["external_storage", "virtual", "external_link_part", "external_link_parts",
                                 "soft_link_part"])
def test_hdf5_parts_stored_in_other_files_are_refused_before_reading(tmp_path, how, monkeypatch):
    """HDF5 can keep a dataset's bytes in a raw file (external storage), map it to datasets of
    other files (virtual datasets) or link to another file: a bundle must do none of these."""
    monkeypatch.chdir(tmp_path)
    w = WEIGHTS["w"]
    w.tofile(tmp_path / "w.raw")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["parts/weights/w"] = w
        f["parts/onnx"] = np.frombuffer(minimal_onnx(), dtype=np.uint8)
    path = _raw_bundle(tmp_path / "b.exp2sim.h5", _generator_manifest(), {"onnx": minimal_onnx(), "weights/w": w})
    with h5py.File(path, "r+") as f:
        if how == "external_link_parts":
            del f["parts"]
            f["parts"] = h5py.ExternalLink("other.h5", "/parts")
        else:
            del f["parts/weights/w"]
            g = f["parts/weights"]
            if how == "external_storage":
                g.create_dataset("w", shape=w.shape, dtype=w.dtype, external=[("w.raw", 0, w.nbytes)])
            elif how == "virtual":
                layout = h5py.VirtualLayout(shape=w.shape, dtype=w.dtype)
                layout[:] = h5py.VirtualSource("other.h5", "parts/weights/w", shape=w.shape)
                g.create_virtual_dataset("w", layout)
            elif how == "external_link_part":
                g["w"] = h5py.ExternalLink("other.h5", "/parts/weights/w")
            else:
                f["elsewhere"] = w
                g["w"] = h5py.SoftLink("/elsewhere")
    with pytest.raises(BundleError) as err:
        load_bundle(path)
    msg = str(err.value)
    assert "is stored outside the bundle file" in msg and "never reads other files" in msg and "\n" not in msg
    assert ("'/parts'" if how == "external_link_parts" else "weights/w") in msg
    if how in ("external_storage", "external_link_part", "external_link_parts"):
        assert ("w.raw" if how == "external_storage" else "other.h5") in msg


def test_valid_bundles_still_load(tmp_path):
    path = write_bundle(tmp_path / "g.exp2sim.h5", _generator_manifest(), onnx=minimal_onnx(),
                        onnx_encoder=minimal_onnx("e"), weights=WEIGHTS)
    assert load_bundle(path, kind="generator", task="deconvolve", ndim=2).onnx_bytes() == minimal_onnx()
    path = write_bundle(tmp_path / "c.exp2sim.h5", _classifier_manifest(), onnx=minimal_onnx(), weights=WEIGHTS)
    assert load_bundle(path, kind="classifier").manifest["classes"] == ["goodenough", "dimer"]


def test_shipped_bundles_pass_every_check():
    found = 0
    for task, ndim in (("deconvolve", 2), ("convolve", 2), ("deconvolve", 3), ("convolve", 3), ("classify", 2)):
        path = default_bundle_path(task, ndim, must_exist=False)
        if path.is_file():
            b = load_bundle(path, task=task, ndim=ndim)
            found += 1
            for part in ("onnx", "onnx_encoder"):
                if f"{part}" in b.manifest["parts"]:
                    assert summarise_onnx(b.onnx_bytes(part)).external == []
    if not found:
        pytest.skip("no shipped bundles installed")


# ------------------------------------------------------------------ manifest
def _set(m: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        m = m[k]
    if value is _DELETE:
        m.pop(keys[-1])
    else:
        m[keys[-1]] = value


_DELETE = object()

GENERATOR_CASES = [
    ("normalisation.method", "bogus", "'rms'"),
    ("normalisation.version", 2, "1"),
    ("normalisation.version", _DELETE, "1"),
    ("normalisation.pad_mode", "wrap", "'replicate', 'reflect'"),
    ("normalisation.clip", 5.0, "method, version"),
    ("normalisation", "rms", "an object"),
    ("patch.halo", -1, "a whole number >= 0"),
    ("patch.halo", 4.5, "a whole number >= 0"),
    ("patch.multiple", 0, "a whole number >= 1"),
    ("patch.min_size", "8", "a whole number >= 1"),
    ("patch.size", [32], "a list of 2 whole numbers"),
    ("patch.size", "big", "null, a whole number"),
    ("patch.overlap", 3, "size, halo, multiple, min_size"),
    ("kind", "discriminator", "'generator', 'classifier'"),
    ("task", "classify", "'deconvolve', 'convolve' for a generator bundle"),
    ("task", "denoise", "'deconvolve', 'convolve', 'classify'"),
    ("direction", "sim2exp", "null, 'exp2sim'"),
    ("ndim", 2.0, "2, 3"),
    ("ndim", 4, "2, 3"),
    ("in_channels", 1, "2"),
    ("out_channels", 2, "1"),
    ("architecture.config.ndim", 3, "2"),
    ("bundle_id", "", "a non-empty string"),
    ("schema_version", "1", "a whole number >= 1"),
    ("layout", 7, "null or a layout name"),
    ("domain", [1, 2], "null or an object"),
    ("domain", {"metric": "cosine"}, "'sqeuclidean', 'euclidean'"),
    ("domain", {"n_reference": 0}, "a whole number >= 1"),
    ("domain", {"thresholds": {"one": {}}}, "input-set sizes"),
    ("domain", {"thresholds": {"1": {"trustworthy": 5.0, "untrustworthy": 2.0}}}, "a value >= domain.thresholds.1"),
    ("domain", {"thresholds": {"1": {"trustworthy": "low", "untrustworthy": 2.0}}}, "a finite number >= 0"),
    ("training", "a string", "null or an object"),
    ("expected_axes", {"a": 1}, "null or a list of axis objects"),
]
CLASSIFIER_CASES = [
    ("thresholds.confident", "high", "a number from 0 to 1"),
    ("thresholds.confident", 1.5, "a number from 0 to 1"),
    ("thresholds.out_of_distribution", 0.9, "a value <= thresholds.confident"),
    ("thresholds", None, "an object with the numbers"),
    ("layout", "pcsmo-mosaic-v2", "null, 'pcsmo-mosaic-v1'"),
    ("classes", ["dimer"], "at least 2 distinct"),
    ("classes", ["dimer", "dimer"], "at least 2 distinct"),
    ("out_channels", 3, "2"),
    ("direction", "exp2sim", "null"),
    ("architecture.config.n_classes", 3, "2"),
]


def _field_name(dotted: str, value) -> str:
    if dotted == "domain" and isinstance(value, dict):
        inner = next(iter(value))
        if inner == "thresholds":
            return "domain.thresholds"
        return f"domain.{inner}"
    return dotted


@pytest.mark.parametrize("kind, dotted, value, accepted",
                         [("generator", *c) for c in GENERATOR_CASES] + [("classifier", *c) for c in CLASSIFIER_CASES])
def test_every_behaviour_field_is_checked_at_load(tmp_path, kind, dotted, value, accepted):
    m = _generator_manifest() if kind == "generator" else _classifier_manifest()
    m["schema_version"] = 1
    m["parts"] = {}
    validate_manifest(m, where="ok")  # the unchanged manifest is valid
    _set(m, dotted, value)
    path = _raw_bundle(tmp_path / "b.exp2sim.h5", m, {"onnx": minimal_onnx(), "weights/w": WEIGHTS["w"]})
    if dotted == "schema_version":
        with h5py.File(path, "r+") as f:
            raw = json.loads(f.attrs["manifest"])
            raw["schema_version"] = value
            f.attrs["manifest"] = json.dumps(raw)
    with pytest.raises(BundleError) as err:
        load_bundle(path)
    msg = str(err.value)
    field = _field_name(dotted, value)
    assert field in msg, msg
    assert "\n" not in msg and str(path) in msg
    if dotted != "normalisation.version" or value is not _DELETE:
        assert f"mantid-exp2sim {__version__} accepts" in msg or "does not understand" in msg, msg
        assert accepted in msg, msg
    assert "re-export the bundle" in msg


def test_the_issue_example_message():
    m = _generator_manifest()
    m.update(schema_version=1, parts={})
    m["normalisation"]["method"] = "bogus"
    with pytest.raises(BundleError) as err:
        validate_manifest(m, where="model.exp2sim.h5")
    assert str(err.value) == (
        "Bundle manifest has an invalid 'normalisation.method' in model.exp2sim.h5: normalisation.method = "
        f"'bogus'; mantid-exp2sim {__version__} accepts 'rms'. re-export the bundle with exp2sim-train (or, if a "
        "newer mantid-exp2sim wrote it, upgrade: pip install --upgrade mantid-exp2sim)."
    )


def test_invalid_manifests_are_not_written(tmp_path):
    m = _generator_manifest()
    m["patch"]["halo"] = -3
    with pytest.raises(BundleError, match="patch.halo"):
        write_bundle(tmp_path / "x.exp2sim.h5", m, onnx=minimal_onnx(), weights=WEIGHTS)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(BundleError, match="direction"):
        _generator_manifest(task="convolve", direction="exp2sim")


def test_unknown_top_level_keys_and_null_direction_are_accepted():
    m = _generator_manifest(direction=None)
    m.update(schema_version=1, parts={}, notes="free text from a newer writer")
    validate_manifest(m, where="x")


def test_pad_modes_match_the_inference_engine():
    engine = pytest.importorskip("mantid_exp2sim.inference.engine")
    assert set(PAD_MODES) == set(engine._PAD_MODE_TO_NUMPY)


def test_write_refuses_folders_and_files_that_are_not_bundles(tmp_path):
    (tmp_path / "folder.exp2sim.h5").mkdir()
    with pytest.raises(BundleError, match="a folder with that name exists"):
        write_bundle(tmp_path / "folder.exp2sim.h5", _generator_manifest(), onnx=minimal_onnx(), weights=WEIGHTS)
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(b"PK\x03\x04 a training checkpoint")
    data = tmp_path / "data.h5"
    with h5py.File(data, "w") as f:
        f["x"] = np.ones(3)
    for target in (checkpoint, data):
        before = target.read_bytes()
        with pytest.raises(BundleError, match="is not a model bundle"):
            write_bundle(target, _generator_manifest(), onnx=minimal_onnx(), weights=WEIGHTS)
        assert target.read_bytes() == before
    ok = write_bundle(tmp_path / "m.exp2sim.h5", _generator_manifest(), onnx=minimal_onnx(), weights=WEIGHTS)
    write_bundle(ok, _generator_manifest(bundle_id="second"), onnx=minimal_onnx(), weights=WEIGHTS)  # bundle -> bundle
    assert load_bundle(ok).bundle_id == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "data.h5", "folder.exp2sim.h5",
                                                          "m.exp2sim.h5"]


def test_write_errors_of_the_file_system_are_one_line_bundle_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    with pytest.raises(BundleError) as err:
        write_bundle(tmp_path / "notes.txt" / "m.exp2sim.h5", _generator_manifest(), onnx=minimal_onnx(),
                     weights=WEIGHTS)
    msg = str(err.value)
    assert msg.startswith("Cannot write the model bundle") and "notes.txt" in msg and "\n" not in msg
    assert isinstance(err.value.__cause__, OSError)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
