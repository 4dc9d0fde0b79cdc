"""Plain array files: bare ``.npy``, and ``.npz`` / ``.h5`` "arrays with axes".

``.npy``
    One bare numeric array, the signal, dimension 0 first (NaN = masked). It carries
    no axes, so reading gives index axes ``Dim0, Dim1, ...`` with unit ``""`` and
    extents ``0 .. n`` (one unit per bin), no errors and no metadata. Writing keeps
    only the signal.
``.npz`` (``numpy.savez_compressed``, no pickles)
    ``signal`` (dimension 0 first), optional ``errors`` (sigma), and JSON strings
    ``axes`` (a list of :meth:`Axis.to_dict`), ``metadata``, ``format`` =
    ``"exp2sim-histogram"`` and ``format_version``. A ``.npz`` holding only a ``signal``
    array, or exactly one array of any name, is read with index axes.
``.h5`` (HDF5)
    Root attributes ``format = "exp2sim-histogram"``, ``format_version``, ``axes`` and
    ``metadata`` (JSON); datasets ``signal`` and optional ``errors`` (float64, dimension
    0 first, C order, chunked so that large volumes can be streamed).
"""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import InputDataError, format_error
from ..histogram import Axis, MDHisto
from ._atomic import atomic_path
from .savemd import metadata_from_json, metadata_to_json

__all__ = [
    "HISTOGRAM_FORMAT",
    "HISTOGRAM_FORMAT_VERSION",
    "read_npy",
    "write_npy",
    "read_npz",
    "write_npz",
    "create_h5_layout",
    "read_h5_axes",
    "axes_to_json",
    "axes_from_json",
]

HISTOGRAM_FORMAT = "exp2sim-histogram"
HISTOGRAM_FORMAT_VERSION = 1


def axes_to_json(axes: Sequence[Axis]) -> str:
    """JSON list of the axes' dicts."""
    return json.dumps([ax.to_dict() for ax in axes])


def axes_from_json(text: str, where: str) -> tuple[Axis, ...]:
    """Inverse of :func:`axes_to_json`; ``where`` names the file in errors."""
    try:
        items = json.loads(text)
        return tuple(Axis.from_dict(d) for d in items)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InputDataError(
            format_error(f"The axes stored in '{where}' are corrupted", reason=str(exc))
        ) from exc


def _numeric(array: np.ndarray, where: str, name: str) -> np.ndarray:
    if array.dtype.kind not in "fiub" or array.ndim == 0:
        raise InputDataError(
            format_error(
                f"Array '{name}' in '{where}' cannot be used as a histogram",
                reason=f"dtype {array.dtype}, {array.ndim} dimensions; need a real-valued array with >= 1 dimension",
            )
        )
    return array.astype(np.float64, copy=False)


# ---------------------------------------------------------------------- .npy
#: First bytes of a .npy file, and of a zip archive (.npz): local file header, empty archive.
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def _check_signature(path: Path, kind: str) -> None:
    """Raise a clear error when ``path`` is empty or does not start like a ``kind`` file."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    what = "a numpy .npy array (numpy.save)" if kind == "npy" else "a numpy .npz archive (numpy.savez)"
    if not head:
        raise InputDataError(
            format_error(
                f"Cannot read '{path}'",
                reason="the file is empty (0 bytes)",
                fix=f"give {what}; the file may have been cut off while it was written",
            )
        )
    ok = head.startswith(_NPY_MAGIC) if kind == "npy" else head.startswith(_ZIP_MAGIC)
    if not ok:
        raise InputDataError(
            format_error(
                f"Cannot read '{path}'",
                reason=f"it is not {what}: it starts with {head!r}",
                fix=f"give {what}, or rename the file to the extension of its real format",
            )
        )


def _load_problem(path: Path, exc: BaseException, kind: str) -> InputDataError:
    """An :class:`InputDataError` for a failure of ``numpy.load`` on a file that looked right."""
    text = " ".join(str(exc).split())
    if "pickle" in text.lower() or "object arrays" in text.lower():
        reason = "it holds Python objects (an object array), which are never loaded because that could run code"
        fix = "save plain numeric arrays (float or int)"
    elif isinstance(exc, (EOFError, zipfile.BadZipFile, zlib.error)) or any(
        word in text.lower() for word in ("eof", "read all data", "truncat", "not fully written")
    ):
        reason = f"the file is truncated or damaged ({text or type(exc).__name__})"
        fix = "write it again; it may have been cut off while it was written or copied"
    else:
        reason = f"it is not a valid {kind} file ({text or type(exc).__name__})"
        fix = f"give a file written by numpy.{'save' if kind == '.npy' else 'savez'} or mantid-exp2sim"
    return InputDataError(format_error(f"Cannot read '{path}'", reason=reason, fix=fix))


def read_npy(path: Path) -> MDHisto:
    """Read a bare ``.npy`` array as a histogram with index axes.

    Raises
    ------
    InputDataError
        Empty, truncated or not a ``.npy`` file, an object (pickled) array, or an array that
        is not real-valued with at least one dimension; the message names the file.
    """
    _check_signature(path, "npy")
    try:
        with open(path, "rb") as fh:
            array = np.load(fh, allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        raise _load_problem(path, exc, ".npy") from exc
    signal = _numeric(np.asarray(array), str(path), "array")
    return MDHisto.from_array(signal, metadata={"source": str(path)})


def write_npy(histo: MDHisto, path: Path) -> None:
    """Write only the signal (dimension 0 first, NaN = masked) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        np.save(tmp, histo.signal, allow_pickle=False)


# ---------------------------------------------------------------------- .npz
def read_npz(path: Path) -> MDHisto:
    """Read an ``.npz`` written by :func:`write_npz`, or one holding a single array.

    Raises
    ------
    InputDataError
        Empty, truncated or not a zip archive, object (pickled) arrays, no signal, corrupted
        axes or metadata; the message names the file.
    """
    where = str(path)
    _check_signature(path, "npz")
    try:
        # numpy leaves its own file handle open when the archive is damaged: pass ours
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as npz:
            contents = {key: npz[key] for key in npz.files}
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error) as exc:
        raise _load_problem(path, exc, ".npz") from exc
    arrays = {k: v for k, v in contents.items() if k not in ("axes", "metadata", "format", "format_version")}
    if "signal" in arrays:
        signal = _numeric(arrays["signal"], where, "signal")
    elif len(arrays) == 1:
        (key, value), = arrays.items()
        signal = _numeric(value, where, key)
    else:
        raise InputDataError(
            format_error(
                f"Cannot find the signal in '{path}'",
                reason=f"it holds the arrays {sorted(arrays)} and none is called 'signal'",
                fix="name the signal array 'signal' (numpy.savez(path, signal=..., errors=...))",
            )
        )
    errors = _numeric(arrays["errors"], where, "errors") if "errors" in arrays else None
    meta = metadata_from_json(str(contents["metadata"]), where) if "metadata" in contents else {}
    if "axes" in contents:
        axes = axes_from_json(str(contents["axes"]), where)
        return MDHisto(signal=signal, axes=axes, errors=errors, metadata=meta)
    meta.setdefault("source", where)
    return MDHisto.from_array(signal, errors=errors, metadata=meta)


def write_npz(histo: MDHisto, path: Path) -> None:
    """Write signal, errors, axes and metadata to a compressed ``.npz`` atomically."""
    payload: dict[str, Any] = {
        "signal": histo.signal,
        "axes": np.array(axes_to_json(histo.axes)),
        "metadata": np.array(metadata_to_json(histo.metadata)),
        "format": np.array(HISTOGRAM_FORMAT),
        "format_version": np.array(HISTOGRAM_FORMAT_VERSION),
    }
    if histo.errors is not None:
        payload["errors"] = histo.errors
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **payload)


# ----------------------------------------------------------------------- .h5
def set_h5_metadata(h5file: Any, metadata: Mapping[str, Any]) -> None:
    """Replace the metadata of an exp2sim ``.h5`` histogram open for writing."""
    h5file.attrs["metadata"] = metadata_to_json(dict(metadata))


def create_h5_layout(
    h5file: Any,
    axes: Sequence[Axis],
    metadata: Mapping[str, Any] | None = None,
    *,
    with_errors: bool = True,
    compression: str | None = "gzip",
) -> dict[str, Any]:
    """Create the attributes and (empty, NaN-filled) datasets of an ``.h5`` histogram.

    Returns
    -------
    dict
        The h5py datasets ``signal`` and, if ``with_errors``, ``errors``; shape
        ``(n0, n1, ...)``, dimension 0 first.
    """
    h5file.attrs["format"] = HISTOGRAM_FORMAT
    h5file.attrs["format_version"] = np.int32(HISTOGRAM_FORMAT_VERSION)
    h5file.attrs["axes"] = axes_to_json(axes)
    set_h5_metadata(h5file, dict(metadata or {}))
    shape = tuple(ax.bins for ax in axes)
    chunks = (1,) + shape[1:] if len(shape) > 1 else None
    out = {
        "signal": h5file.create_dataset(
            "signal", shape=shape, dtype=np.float64, chunks=chunks, compression=compression, fillvalue=np.nan
        )
    }
    if with_errors:
        out["errors"] = h5file.create_dataset(
            "errors", shape=shape, dtype=np.float64, chunks=chunks, compression=compression, fillvalue=np.nan
        )
    return out


def read_h5_axes(h5file: Any, where: str) -> tuple[tuple[Axis, ...], dict[str, Any], dict[str, Any]]:
    """Axes, datasets (``signal``, optional ``errors``) and metadata of an ``.h5`` histogram.

    Raises
    ------
    InputDataError
        The file is another kind of HDF5 file (a model bundle, a simulator data set, ...)
        or is inconsistent.
    """
    fmt = h5file.attrs.get("format")
    fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
    if fmt != HISTOGRAM_FORMAT:
        schema = h5file.attrs.get("schema")
        schema = schema.decode() if isinstance(schema, bytes) else schema
        if schema == "mantid-exp2sim-bundle":
            what = "a model bundle, not data"
        elif fmt == "exp2sim-dataset":
            what = "a simulator data set (many samples), not one histogram"
        else:
            what = f"an HDF5 file without the attribute format='{HISTOGRAM_FORMAT}' (top-level entries: {sorted(h5file.keys())})"
        raise InputDataError(
            format_error(
                f"'{where}' is not a histogram file",
                reason=f"it is {what}",
                fix="give a SaveMD .nxs file, a .npy/.npz array or an .h5 written by mantid-exp2sim",
            )
        )
    version = int(h5file.attrs.get("format_version", 0))
    if version > HISTOGRAM_FORMAT_VERSION:
        raise InputDataError(
            format_error(
                f"'{where}' was written by a newer mantid-exp2sim",
                reason=f"format_version {version}, this version reads up to {HISTOGRAM_FORMAT_VERSION}",
                fix="upgrade mantid-exp2sim",
            )
        )
    if "signal" not in h5file or "axes" not in h5file.attrs:
        raise InputDataError(format_error(f"'{where}' is an incomplete histogram file", reason="no 'signal' or 'axes'"))
    axes = axes_from_json(str(h5file.attrs["axes"]), where)
    datasets = {"signal": h5file["signal"]}
    if "errors" in h5file:
        datasets["errors"] = h5file["errors"]
    expected = tuple(ax.bins for ax in axes)
    for name, dset in datasets.items():
        if tuple(dset.shape) != expected:
            raise InputDataError(
                format_error(
                    f"'{where}' is an inconsistent histogram file",
                    reason=f"'{name}' has shape {tuple(dset.shape)}, the axes give {expected}",
                )
            )
    meta = metadata_from_json(str(h5file.attrs["metadata"]), where) if "metadata" in h5file.attrs else {}
    return axes, datasets, meta
