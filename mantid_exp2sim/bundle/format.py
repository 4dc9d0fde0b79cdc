"""Write and load ``*.exp2sim.h5`` model bundles (h5py + numpy only; no torch, no onnx).

Layout (see docs/bundle-format.md)::

    /                    attrs: schema, schema_version, manifest (JSON)
    /parts/onnx          uint8 (n,)  ONNX graph of the network
    /parts/onnx_encoder  uint8 (n,)  optional ONNX graph of the encoder
    /parts/weights/<k>   state_dict tensor <k> (floats stored as float32)
    /parts/reference/<k> reference arrays (domain-score bank, calibration)

``manifest["parts"]`` maps each part path (``"onnx"``, ``"weights/<k>"``, ...) to its
``sha256`` (of the little-endian C-order bytes), ``shape`` and ``dtype``. The loader reads
every part into memory, so a bundle that passed :func:`load_bundle` cannot change underneath.

Schema 2 stores each weight once: an ONNX part's initializers whose bytes equal a weights part
are stored without those bytes, listed in the part's ``initializers_in_weights`` and rebuilt
on load (:mod:`.onnx_share`), checked against the whole graph's ``graph_sha256``. Schema 1
files (whole graphs) are read as before.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .._version import __version__
from ..errors import BundleError, format_error
from ..io._atomic import atomic_path
from .manifest import (
    OPTIONAL_KEYS,
    SCHEMA_NAME,
    SCHEMA_VERSION,
    check_expected,
    validate_manifest,
)
from .onnx_check import check_onnx_part
from .onnx_share import (
    SharedInitializerError,
    graph_sha256,
    restore_shared_initializers,
    strip_shared_initializers,
)
from .registry import get_builder

__all__ = ["Bundle", "write_bundle", "load_bundle", "array_sha256"]

_BYTE_PARTS = ("onnx", "onnx_encoder")
_ARRAY_GROUPS = ("weights", "reference")
_REPAIR = "re-export the bundle (exp2sim-train writes bundles) or copy it again from its source"


def _h5py():
    from ..errors import require

    return require("h5py", extra="all", feature="Reading and writing model bundles")


def array_sha256(a: np.ndarray) -> str:
    """sha256 of an array's little-endian, C-order bytes."""
    a = np.asarray(a)
    le = a.astype(a.dtype.newbyteorder("<"), copy=False) if a.dtype.byteorder == ">" else a
    return hashlib.sha256(np.ascontiguousarray(le).tobytes()).hexdigest()


def _as_array(name: str, value: Any, *, float32: bool) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor; no torch import needed
        value = value.detach().cpu().numpy()
    a = np.array(value, copy=True)
    if a.dtype.kind == "f" and float32:
        a = a.astype(np.float32)
    elif a.dtype.kind == "b":
        a = a.astype(np.uint8)
    if a.dtype.kind not in "fiu":
        raise BundleError(
            format_error(
                f"Bundle part '{name}' has an unsupported dtype",
                reason=f"dtype {a.dtype}; allowed: floating point, integer, bool",
                fix="convert it to a numeric array",
            )
        )
    return a


def _check_name(group: str, name: str) -> None:
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise BundleError(
            format_error(
                f"Invalid {group} name for a bundle part",
                reason=f"{name!r}; names must be non-empty strings without '/'",
            )
        )


def _is_bundle_file(path: Path) -> bool:
    """Whether ``path`` is an HDF5 file with the bundle ``schema`` attribute."""
    h5py = _h5py()
    try:
        if not h5py.is_hdf5(path):
            return False
        with h5py.File(path, "r") as f:
            schema = f.attrs.get("schema")
    except OSError:
        return False
    return (schema.decode() if isinstance(schema, bytes) else schema) == SCHEMA_NAME


def _check_target(path: Path) -> None:
    """Refuse, before writing anything, a target that is a folder or an existing file that is
    not a model bundle (a checkpoint, a data set...): a bundle only ever replaces a bundle (or
    an empty file, such as a temporary name reserved by :func:`~mantid_exp2sim.io._atomic.reserve_temp`)."""
    if path.is_dir():
        raise BundleError(
            format_error(
                f"Cannot write the model bundle {path}",
                reason="a folder with that name exists",
                fix="give a file name such as model.exp2sim.h5",
            )
        )
    if path.exists() and path.stat().st_size > 0 and not _is_bundle_file(path):  # empty: a reserved name
        raise BundleError(
            format_error(
                f"Refusing to replace {path} with a model bundle",
                reason="the file exists and is not a model bundle (a bundle only replaces a bundle)",
                fix="choose another output path, or move the file away first",
            )
        )


def write_bundle(
    path: str | os.PathLike,
    manifest: Mapping[str, Any],
    *,
    onnx: bytes,
    onnx_encoder: bytes | None = None,
    weights: Mapping[str, Any],
    reference: Mapping[str, Any] | None = None,
) -> Path:
    """Write a bundle atomically (:func:`mantid_exp2sim.io._atomic.atomic_path`).

    Parameters
    ----------
    path
        Target file, conventionally ``*.exp2sim.h5``; parent folders are created. An existing
        bundle there is replaced; a folder or any other existing file is refused.
    manifest
        From :func:`make_manifest`; ``schema_version`` and ``parts`` are (re)computed here,
        absent optional keys are stored as null. Not modified.
    onnx, onnx_encoder
        Serialised ONNX models (e.g. from ``mantid_exp2sim.onnx.export_onnx``), every tensor
        stored inside (a graph with external data is refused, as the loader would).
    weights
        ``state_dict``: name -> array or tensor (floats stored as float32).
    reference
        Optional reference arrays (domain-score bank, calibration), dtype kept.

    Returns
    -------
    pathlib.Path
        The written path.

    Raises
    ------
    BundleError
        Invalid manifest or parts, a target that is a folder or a file other than a bundle,
        or a target that cannot be written (the OS error in one line); nothing is left behind.
    """
    h5py = _h5py()
    path = Path(path)
    m = json.loads(json.dumps(dict(manifest)))  # deep copy; fails early on non-JSON values
    for key in OPTIONAL_KEYS:
        m.setdefault(key, None)
    m["schema_version"] = SCHEMA_VERSION

    byte_parts: dict[str, np.ndarray] = {}
    for name, blob in (("onnx", onnx), ("onnx_encoder", onnx_encoder)):
        if blob is None:
            continue
        if not isinstance(blob, (bytes, bytearray, memoryview)) or len(blob) == 0:
            raise BundleError(
                format_error(
                    f"Bundle part '{name}' must be non-empty bytes",
                    reason=f"got {type(blob).__name__}",
                    fix="pass the bytes returned by mantid_exp2sim.onnx.export_onnx",
                )
            )
        check_onnx_part(bytes(blob), part=name, where=str(path))
        byte_parts[name] = np.frombuffer(bytes(blob), dtype=np.uint8)
    arrays: dict[str, dict[str, np.ndarray]] = {"weights": {}, "reference": {}}
    for group, src, f32 in (("weights", weights, True), ("reference", reference or {}, False)):
        for name, value in src.items():
            _check_name(group, name)
            arrays[group][name] = _as_array(f"{group}/{name}", value, float32=f32)
    if not arrays["weights"]:
        raise BundleError(format_error("A bundle needs weights", reason="weights is empty",
                                       fix="pass the model's state_dict()"))

    parts: dict[str, dict[str, Any]] = {}
    for name in list(byte_parts):
        # schema 2: initializers equal to a weights part are stored once, in /parts/weights
        whole = byte_parts[name].tobytes()
        skeleton, shared = strip_shared_initializers(whole, arrays["weights"])
        byte_parts[name] = np.frombuffer(skeleton, dtype=np.uint8)
        a = byte_parts[name]
        parts[name] = {"sha256": array_sha256(a), "shape": list(a.shape), "dtype": "uint8"}
        if shared:
            parts[name]["graph_sha256"] = graph_sha256(whole)
            parts[name]["initializers_in_weights"] = {k: f"weights/{v}" for k, v in sorted(shared.items())}
    for group, items in arrays.items():
        for name, a in items.items():
            parts[f"{group}/{name}"] = {"sha256": array_sha256(a), "shape": list(a.shape), "dtype": str(a.dtype)}
    m["parts"] = parts
    validate_manifest(m, where=str(path))

    _check_target(path)
    try:
        with atomic_path(path, parents=True) as tmp:
            with h5py.File(tmp, "w", libver=("v110", "v110")) as f:
                f.attrs["schema"] = SCHEMA_NAME
                f.attrs["schema_version"] = np.int64(SCHEMA_VERSION)
                f.attrs["manifest"] = json.dumps(m, sort_keys=True)
                g = f.create_group("parts")
                for name, a in byte_parts.items():
                    g.create_dataset(name, data=a)
                for group, items in arrays.items():
                    if items or group == "weights":
                        sub = g.create_group(group)
                        for name, a in items.items():
                            sub.create_dataset(name, data=a)
    except OSError as exc:
        raise BundleError(
            format_error(
                f"Cannot write the model bundle {path}",
                reason=f"{type(exc).__name__}: {' '.join(str(exc).split())}",
                fix="choose an output path in a folder you can write to",
            )
        ) from exc
    return path


class Bundle:
    """A validated model bundle held in memory. Create it with :func:`load_bundle`."""

    def __init__(
        self,
        path: Path,
        manifest: dict[str, Any],
        sha256: str,
        byte_parts: dict[str, bytes],
        arrays: dict[str, dict[str, np.ndarray]],
    ) -> None:
        self.path = path
        self.manifest = manifest
        self.sha256 = sha256
        self._bytes = byte_parts
        self._arrays = arrays

    def __repr__(self) -> str:
        m = self.manifest
        return f"Bundle({self.bundle_id!r}, kind={m['kind']!r}, task={m['task']!r}, ndim={m['ndim']}, path='{self.path}')"

    @property
    def bundle_id(self) -> str:
        """``manifest["bundle_id"]``."""
        return self.manifest["bundle_id"]

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def task(self) -> str:
        return self.manifest["task"]

    @property
    def ndim(self) -> int:
        return int(self.manifest["ndim"])

    @property
    def halo(self) -> int:
        """Receptive-field radius in bins (``manifest["patch"]["halo"]``)."""
        return int(self.manifest["patch"]["halo"])

    @property
    def multiple(self) -> int:
        """Spatial sizes and tile offsets must be multiples of this."""
        return int(self.manifest["patch"]["multiple"])

    @property
    def min_size(self) -> int:
        """Smallest spatial axis length the network accepts (``patch.min_size``)."""
        return int(self.manifest["patch"].get("min_size") or self.multiple)

    @property
    def patch_size(self) -> int | list[int] | None:
        """Suggested tile size (``manifest["patch"]["size"]``; None: whole input)."""
        return self.manifest["patch"]["size"]

    def part_names(self) -> list[str]:
        """Every part listed in the manifest."""
        return sorted(self.manifest["parts"])

    def onnx_bytes(self, name: str = "onnx") -> bytes:
        """The serialised ONNX model ``"onnx"`` or ``"onnx_encoder"``."""
        if name not in self._bytes:
            raise BundleError(
                format_error(
                    f"Model bundle {self.path} has no part '{name}'",
                    reason=f"byte parts present: {', '.join(sorted(self._bytes)) or 'none'}",
                    fix="re-export the bundle with that part (write_bundle(onnx_encoder=...))"
                    if name == "onnx_encoder"
                    else None,
                )
            )
        return self._bytes[name]

    def weights(self) -> dict[str, np.ndarray]:
        """``state_dict`` arrays (copies)."""
        return {k: v.copy() for k, v in self._arrays["weights"].items()}

    def reference(self) -> dict[str, np.ndarray]:
        """Reference arrays (copies; empty when the bundle has none)."""
        return {k: v.copy() for k, v in self._arrays["reference"].items()}

    def build_torch_model(self):
        """Rebuild the torch module from ``manifest["architecture"]`` and load the weights.

        Uses the builder registered under ``architecture["name"]``, loads with
        ``strict=True`` and returns the module in eval mode on the CPU. Needs torch.
        """
        from ..errors import require

        torch = require("torch", extra="torch", feature="Building the PyTorch model of a bundle")
        arch = self.manifest["architecture"]
        model = get_builder(arch["name"])(arch["config"])
        state = {k: torch.from_numpy(v) for k, v in self.weights().items()}
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise BundleError(
                format_error(
                    f"The weights in model bundle {self.path} do not fit its architecture "
                    f"'{arch['name']}'",
                    reason=str(exc).splitlines()[0] if str(exc) else repr(exc),
                    fix=_REPAIR,
                )
            ) from exc
        return model.eval()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_bundle(
    path: str | os.PathLike,
    *,
    kind: str | None = None,
    task: str | None = None,
    ndim: int | None = None,
) -> Bundle:
    """Open, validate and read a bundle.

    Checks the schema name and version, the manifest (every field that changes behaviour,
    see :func:`~mantid_exp2sim.bundle.manifest.validate_manifest`), ``kind``/``task``/``ndim``
    when given, that the file holds exactly the parts the manifest lists, every checksum, and
    that nothing is read from another file: no HDF5 external link, external storage or
    virtual dataset under ``/parts`` (checked before any part is read), and each ONNX part a
    serialised ONNX model that keeps all its tensors inside (no external data).

    Raises
    ------
    BundleError
        Naming the file, what is wrong and how to fix it.
    """
    h5py = _h5py()
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise BundleError(
            format_error(
                f"Model bundle not found: {path}",
                reason="no such file" if not path.exists() else "not a regular file",
                fix="check the path, or use default_bundle_path(task, ndim) for a shipped bundle",
            )
        )
    try:
        with h5py.File(path, "r") as f:
            schema = f.attrs.get("schema")
            if isinstance(schema, bytes):
                schema = schema.decode()
            if schema != SCHEMA_NAME:
                raise BundleError(
                    format_error(
                        f"{path} is not a mantid-exp2sim model bundle",
                        reason=f"HDF5 attribute 'schema' is {schema!r}, expected {SCHEMA_NAME!r}",
                        fix="pass a *.exp2sim.h5 file written by mantid_exp2sim.bundle.write_bundle",
                    )
                )
            version = f.attrs.get("schema_version")
            try:
                version = int(version)
            except (TypeError, ValueError):
                raise BundleError(
                    format_error(f"Model bundle {path} has no valid schema_version",
                                 reason=f"schema_version={version!r}", fix=_REPAIR)
                ) from None
            if version > SCHEMA_VERSION:
                raise BundleError(
                    format_error(
                        f"Model bundle {path} was written by a newer mantid-exp2sim",
                        reason=(
                            f"bundle schema version {version}; mantid-exp2sim {__version__} "
                            f"supports schema version {SCHEMA_VERSION} and older"
                        ),
                        fix="upgrade: pip install --upgrade mantid-exp2sim",
                    )
                )
            if version < 1:
                raise BundleError(
                    format_error(f"Model bundle {path} has an unsupported schema_version",
                                 reason=f"schema_version={version}; supported: 1..{SCHEMA_VERSION}",
                                 fix=_REPAIR)
                )
            try:
                manifest = json.loads(f.attrs["manifest"])
            except (KeyError, TypeError, ValueError) as exc:
                raise BundleError(
                    format_error(f"Model bundle {path} has no readable manifest",
                                 reason=f"{type(exc).__name__}: {exc}", fix=_REPAIR)
                ) from None
            validate_manifest(manifest, where=where)
            if manifest["schema_version"] != version:
                raise BundleError(
                    format_error(
                        f"Model bundle {path} is inconsistent",
                        reason=(f"file schema_version {version} but manifest schema_version "
                                f"{manifest['schema_version']!r}"),
                        fix=_REPAIR,
                    )
                )
            for key in OPTIONAL_KEYS:
                manifest.setdefault(key, None)
            check_expected(manifest, where=where, kind=kind, task=task, ndim=ndim)
            byte_parts, arrays = _read_parts(f, manifest, path)
    except BundleError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise BundleError(
            format_error(
                f"Cannot read model bundle {path}",
                reason=f"the file is not a readable HDF5 bundle, probably truncated or not a bundle "
                f"({type(exc).__name__}: {exc})",
                fix=_REPAIR,
            )
        ) from exc
    return Bundle(path, manifest, _file_sha256(path), byte_parts, arrays)


def _outside(path: Path, what: str, reason: str) -> BundleError:
    return BundleError(
        format_error(
            f"Model bundle {path} is refused: {what} is stored outside the bundle file",
            reason=f"{reason}; a bundle must carry all its data inside, so that loading it never reads other files",
            fix=_REPAIR,
        )
    )


def _contained_datasets(f: Any, path: Path) -> dict[str, Any]:
    """The datasets under ``/parts`` (name relative to it -> dataset), read nothing yet.

    Raises
    ------
    BundleError
        When ``/parts`` or anything under it is a link (external or soft) rather than a group
        or dataset of this file, or a dataset keeps its data in other files (HDF5 external
        storage or a virtual dataset): reading it would read another file.
    """
    h5py = _h5py()
    present: dict[str, Any] = {}
    if "parts" not in f:
        return present

    def walk(group: Any, prefix: str) -> None:
        for name in group:
            where = f"{prefix}{name}"
            link = group.get(name, getlink=True)
            if not isinstance(link, h5py.HardLink):
                target = getattr(link, "filename", None)
                kind = f"an external link to '{target}'" if target else f"a {type(link).__name__}"
                raise _outside(path, f"'{where}'", f"it is {kind}")
            obj = group[name]
            if isinstance(obj, h5py.Group):
                walk(obj, f"{where}/")
                continue
            plist = obj.id.get_create_plist()
            if plist.get_layout() == h5py.h5d.VIRTUAL:
                raise _outside(path, f"part '{where[len('parts/'):]}'", "it is an HDF5 virtual dataset mapping other files")
            if plist.get_external_count() > 0:
                files = ", ".join(repr(plist.get_external(i)[0].decode(errors="replace"))
                                  for i in range(plist.get_external_count()))
                raise _outside(path, f"part '{where[len('parts/'):]}'", f"its data are in the external file(s) {files}")
            present[where[len("parts/"):]] = obj

    link = f.get("parts", getlink=True)
    if not isinstance(link, h5py.HardLink):
        target = getattr(link, "filename", None)
        raise _outside(path, "'/parts'", f"it is an external link to '{target}'" if target else "it is a link")
    walk(f["parts"], "parts/")
    return present


def _read_parts(f: Any, manifest: dict[str, Any], path: Path) -> tuple[dict[str, bytes], dict[str, dict[str, np.ndarray]]]:
    present = _contained_datasets(f, path)
    listed = manifest["parts"]
    missing = sorted(set(listed) - set(present))
    extra = sorted(set(present) - set(listed))
    if missing or extra or "onnx" not in listed:
        reason = []
        if missing:
            reason.append(f"listed but absent: {', '.join(missing)}")
        if extra:
            reason.append(f"present but not listed: {', '.join(extra)}")
        if "onnx" not in listed:
            reason.append("the required part 'onnx' is not listed")
        raise BundleError(format_error(f"Model bundle {path} has missing or unexpected parts",
                                       reason="; ".join(reason), fix=_REPAIR))
    byte_parts: dict[str, bytes] = {}
    arrays: dict[str, dict[str, np.ndarray]] = {g: {} for g in _ARRAY_GROUPS}
    for name in sorted(listed):
        info = listed[name]
        a = present[name][()]
        a = np.asarray(a)
        if not isinstance(info, dict) or array_sha256(a) != info.get("sha256") or list(a.shape) != list(
            info.get("shape", [])
        ) or str(a.dtype) != info.get("dtype"):
            raise BundleError(
                format_error(
                    f"Model bundle {path} is corrupted: part '{name}' does not match its checksum",
                    reason=f"manifest: {info!r}; file: sha256 {array_sha256(a)}, shape {list(a.shape)}, dtype {a.dtype}",
                    fix=_REPAIR,
                )
            )
        group, _, key = name.partition("/")
        if name in _BYTE_PARTS:
            byte_parts[name] = a.tobytes()
        elif group in _ARRAY_GROUPS and key:
            arrays[group][key] = a
        else:
            raise BundleError(format_error(f"Model bundle {path} has an unknown part '{name}'",
                                           reason=f"known: {', '.join(_BYTE_PARTS)}, weights/*, reference/*",
                                           fix="upgrade mantid-exp2sim or re-export the bundle"))
    if not arrays["weights"]:
        raise BundleError(format_error(f"Model bundle {path} holds no weights", reason="parts/weights is empty",
                                       fix=_REPAIR))
    for name in list(byte_parts):
        byte_parts[name] = _whole_graph(byte_parts[name], name, listed[name], arrays["weights"], path)
        check_onnx_part(byte_parts[name], part=name, where=str(path))
    return byte_parts, arrays


def _whole_graph(stored: bytes, name: str, info: dict[str, Any], weights: dict[str, np.ndarray], path: Path) -> bytes:
    """The serialised graph of byte part ``name``, its shared initializers filled from the weights.

    Schema 1 parts (and schema 2 parts that share nothing) are whole as stored; otherwise the
    part lists ``initializers_in_weights`` (initializer name -> ``weights/<key>``) and the
    SHA-256 of the whole graph, checked here.
    """
    shared = info.get("initializers_in_weights")
    if shared is None:
        return stored
    ok = isinstance(shared, dict) and shared and all(
        isinstance(k, str) and isinstance(v, str) and v.startswith("weights/") for k, v in shared.items())
    if not ok or not isinstance(info.get("graph_sha256"), str):
        raise BundleError(format_error(
            f"Model bundle {path} is damaged: part '{name}' has an invalid list of shared initializers",
            reason="manifest parts entry needs 'initializers_in_weights' (initializer -> 'weights/<key>') "
            "and 'graph_sha256'", fix=_REPAIR))
    try:
        whole = restore_shared_initializers(stored, {k: v[len("weights/"):] for k, v in shared.items()}, weights)
    except (SharedInitializerError, ValueError) as exc:
        raise BundleError(format_error(
            f"Model bundle {path} is damaged: part '{name}' cannot be rebuilt from its weights",
            reason=str(exc), fix=_REPAIR)) from None
    if graph_sha256(whole) != info["graph_sha256"]:
        raise BundleError(format_error(
            f"Model bundle {path} is corrupted: part '{name}' rebuilt from the weights does not match "
            "its checksum", reason=f"graph_sha256 {info['graph_sha256']}, rebuilt {graph_sha256(whole)}",
            fix=_REPAIR))
    return whole
