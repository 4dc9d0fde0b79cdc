"""SaveMD (version 2) / LoadMD NeXus files of MDHistoWorkspaces, read and written with h5py.

Layout (Mantid's ``SaveMD2.cpp`` / ``LoadMD.cpp``)::

    /MDHistoWorkspace                NX_class="NXentry", SaveMDVersion=int32 2, QConvention
        coordinate_system            uint32 (0 None, 1 QLab, 2 QSample, 3 HKL)
        visual_normalization         uint32
        data/                        NX_class="NXdata"
            D0 ... D{N-1}            float64 bin boundaries (nbins+1), attributes
                                     units, long_name (dimension name), frame (MDFrame)
            signal                   float64, shape (n_{N-1}, ..., n0), attributes
                                     signal=1, axes="D{N-1}:...:D1:D0"
            errors_squared           float64, same shape
            num_events               float64, same shape
            mask                     int8, same shape (1 = masked)

The HDF5 arrays are C-ordered with the **last** axis being dimension 0, i.e. the
transpose of :attr:`MDHisto.signal`. Attributes are fixed-length byte strings
(``numpy.bytes_``), the form Mantid's NeXus layer reads for certain.

What survives the round trip: signal, errors (sigma <-> sigma^2), the NaN mask, each
dimension's name, unit, frame and uniform binning. Dimension ids become the names (as in
LoadMD). ``MDHisto.metadata`` is kept in the extra entry attribute ``exp2sim_metadata``
(JSON), which Mantid ignores; logs, history and instrument of a Mantid-written file are
not read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import InputDataError, format_error
from ..histogram import Axis

__all__ = [
    "SAVEMD_ENTRY",
    "COORDINATE_SYSTEMS",
    "create_savemd_layout",
    "read_savemd_axes",
    "is_savemd",
]

SAVEMD_ENTRY = "MDHistoWorkspace"
#: ``coordinate_system`` codes of Mantid's SpecialCoordinateSystem.
COORDINATE_SYSTEMS = {"None": 0, "QLab": 1, "QSample": 2, "HKL": 3}
_METADATA_ATTR = "exp2sim_metadata"


def _bytes(text: str) -> np.bytes_:
    """A fixed-length byte-string attribute value (UTF-8 encoded)."""
    return np.bytes_(str(text).encode("utf-8"))


def _text(value: Any) -> str:
    """Decode an HDF5 attribute (bytes, numpy bytes, str or 1-element array) to str."""
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else b""
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _coordinate_system(axes: Sequence[Axis]) -> int:
    """Derive the special coordinate system from the frames, as MDHistoWorkspace does."""
    frames = {ax.frame for ax in axes}
    for name in ("HKL", "QSample", "QLab"):
        if name in frames:
            return COORDINATE_SYSTEMS[name]
    return COORDINATE_SYSTEMS["None"]


def metadata_to_json(metadata: Mapping[str, Any]) -> str:
    """Serialise metadata to JSON (numpy scalars and arrays, paths allowed)."""

    def default(obj: Any) -> Any:
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        if isinstance(obj, Path):
            return str(obj)
        raise TypeError(f"value of type {type(obj).__name__} is not JSON-serialisable")

    try:
        return json.dumps(dict(metadata), default=default, ensure_ascii=True, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise InputDataError(
            format_error(
                "Histogram metadata cannot be stored",
                reason=str(exc),
                fix="keep metadata to numbers, strings, lists and dicts",
            )
        ) from exc


def metadata_from_json(text: str, where: str) -> dict[str, Any]:
    """Inverse of :func:`metadata_to_json`; ``where`` names the file in errors."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputDataError(
            format_error(f"Metadata in '{where}' is corrupted", reason=f"invalid JSON ({exc})")
        ) from exc
    if not isinstance(value, dict):
        raise InputDataError(format_error(f"Metadata in '{where}' is corrupted", reason="not a JSON object"))
    return value


def is_savemd(h5file: Any) -> bool:
    """True if an open h5py File holds a SaveMD MDHistoWorkspace entry."""
    return SAVEMD_ENTRY in h5file


def set_savemd_metadata(h5file: Any, metadata: Mapping[str, Any]) -> None:
    """Replace the metadata of a SaveMD file open for writing."""
    h5file[SAVEMD_ENTRY].attrs[_METADATA_ATTR] = _bytes(metadata_to_json(metadata))


def create_savemd_layout(
    h5file: Any,
    axes: Sequence[Axis],
    metadata: Mapping[str, Any] | None = None,
    *,
    compression: str | None = "gzip",
) -> dict[str, Any]:
    """Create the groups, attributes and (empty) arrays of a SaveMD file.

    Parameters
    ----------
    h5file
        An h5py File opened for writing.
    axes
        One Axis per dimension, dimension 0 first.
    metadata
        Stored as JSON in the entry attribute ``exp2sim_metadata``; the key
        ``"q_convention"`` sets the QConvention attribute (default ``"Inelastic"``).
    compression
        h5py compression filter of the arrays (SaveMD compresses too).

    Returns
    -------
    dict
        The h5py datasets ``signal``, ``errors_squared``, ``num_events``, ``mask``, each
        of shape ``(n_{N-1}, ..., n0)``.
    """
    meta = dict(metadata or {})
    entry = h5file.create_group(SAVEMD_ENTRY)
    entry.attrs["NX_class"] = _bytes("NXentry")
    entry.attrs["SaveMDVersion"] = np.int32(2)
    entry.attrs["QConvention"] = _bytes(str(meta.get("q_convention", "Inelastic")))
    set_savemd_metadata(h5file, meta)
    entry.create_dataset("coordinate_system", data=np.array([_coordinate_system(axes)], dtype=np.uint32))
    entry.create_dataset("visual_normalization", data=np.array([0], dtype=np.uint32))

    data = entry.create_group("data")
    data.attrs["NX_class"] = _bytes("NXdata")
    for i, ax in enumerate(axes):
        dset = data.create_dataset(f"D{i}", data=ax.edges().astype(np.float64))
        dset.attrs["units"] = _bytes(ax.unit)
        dset.attrs["long_name"] = _bytes(ax.name)
        dset.attrs["frame"] = _bytes(ax.frame)

    file_shape = tuple(ax.bins for ax in reversed(axes))
    # SaveMD chunks with size 1 on the first (slowest) axis.
    chunks = (1,) + file_shape[1:] if len(file_shape) > 1 else None
    out: dict[str, Any] = {}
    for name, dtype, fill in (
        ("signal", np.float64, np.nan),
        ("errors_squared", np.float64, np.nan),
        ("num_events", np.float64, 1.0),
        ("mask", np.int8, 0),
    ):
        out[name] = data.create_dataset(
            name, shape=file_shape, dtype=dtype, chunks=chunks, compression=compression, fillvalue=fill
        )
    out["signal"].attrs["signal"] = np.int32(1)
    out["signal"].attrs["axes"] = _bytes(":".join(f"D{i}" for i in reversed(range(len(axes)))))
    return out


def _axis_from_edges(name: str, unit: str, frame: str, edges: np.ndarray, index: int, where: str) -> Axis:
    """An Axis from bin boundaries, which must be uniform (LoadMD keeps only min, max, n).

    Mantid stores boundaries in single precision (``coord_t``), so steps may differ by a
    few float32 ulps of the largest boundary; anything beyond that is non-uniform.
    """
    problem = ""
    if edges.size < 2 or not np.all(np.isfinite(edges)):
        problem = f"it has {edges.size} boundaries (need >= 2 finite values)"
    else:
        steps = np.diff(edges)
        tol = max(1e-6 * abs(float(steps[0])), 8 * float(np.finfo(np.float32).eps) * float(np.abs(edges).max()))
        if steps[0] <= 0:
            problem = "the boundaries are not increasing"
        elif np.abs(steps - steps[0]).max() > tol:
            problem = f"the bins are not uniform (widths from {steps.min():.6g} to {steps.max():.6g})"
    if problem:
        raise InputDataError(
            format_error(
                f"Dimension {index} ('{name}') of '{where}' cannot be used",
                reason=problem,
                fix="LoadMD keeps only uniform binning: rebin uniformly (e.g. BinMD) and save again",
            )
        )
    return Axis(name=name, unit=unit, minimum=float(edges[0]), maximum=float(edges[-1]), bins=edges.size - 1, frame=frame)


def read_savemd_axes(h5file: Any, where: str) -> tuple[tuple[Axis, ...], dict[str, Any], dict[str, Any]]:
    """Read the dimensions of a SaveMD file the way LoadMD does.

    Parameters
    ----------
    h5file
        An open h5py File.
    where
        The file name, for error messages.

    Returns
    -------
    axes, datasets, metadata
        The axes (dimension 0 first), the h5py datasets ``signal``, ``errors_squared``
        and (if present) ``mask``, and the metadata.

    Raises
    ------
    InputDataError
        Not an MDHistoWorkspace file, missing arrays, non-uniform binning, shape mismatch.
    """
    if "MDEventWorkspace" in h5file and SAVEMD_ENTRY not in h5file:
        raise InputDataError(
            format_error(
                f"'{where}' holds an MDEventWorkspace, not an MDHistoWorkspace",
                reason="the algorithms and command-line tools work on binned (histogram) data",
                fix="bin it first, e.g. with BinMD(AxisAligned=True, ...), and save the result with SaveMD",
            )
        )
    if SAVEMD_ENTRY not in h5file:
        raise InputDataError(
            format_error(
                f"'{where}' is not a SaveMD file of an MDHistoWorkspace",
                reason=f"it has no '/{SAVEMD_ENTRY}' entry (top-level entries: {sorted(h5file.keys())})",
                fix="save the workspace with Mantid's SaveMD, or use .npy/.npz/.h5 arrays",
            )
        )
    entry = h5file[SAVEMD_ENTRY]
    if "data" not in entry or "signal" not in entry["data"]:
        raise InputDataError(
            format_error(f"'{where}' is an incomplete SaveMD file", reason="'/MDHistoWorkspace/data/signal' is missing")
        )
    data = entry["data"]
    signal = data["signal"]
    axes_attr = signal.attrs.get("axes")
    if axes_attr is not None:
        # LoadMD walks the tokens backwards: the last token is dimension 0.
        names = [tok for tok in _text(axes_attr).split(":") if tok][::-1]
    else:
        names = [f"D{i}" for i in range(signal.ndim)]
    if len(names) != signal.ndim:
        raise InputDataError(
            format_error(
                f"'{where}' is an inconsistent SaveMD file",
                reason=f"the signal has {signal.ndim} dimensions but its 'axes' attribute names {len(names)}",
            )
        )
    axes = []
    for i, dname in enumerate(names):
        if dname not in data:
            raise InputDataError(
                format_error(f"'{where}' is an incomplete SaveMD file", reason=f"dimension dataset '{dname}' is missing")
            )
        dset = data[dname]
        edges = np.asarray(dset[()], dtype=np.float64).reshape(-1)
        name = _text(dset.attrs["long_name"]) if "long_name" in dset.attrs else dname
        unit = _text(dset.attrs["units"]) if "units" in dset.attrs else ""
        frame = _text(dset.attrs["frame"]) if "frame" in dset.attrs else "Unknown frame"
        axes.append(_axis_from_edges(name, unit, frame, edges, i, where))
    expected = tuple(ax.bins for ax in reversed(axes))
    datasets: dict[str, Any] = {"signal": signal}
    for name in ("errors_squared", "mask"):
        if name in data:
            datasets[name] = data[name]
    for name, dset in datasets.items():
        if tuple(dset.shape) != expected:
            raise InputDataError(
                format_error(
                    f"'{where}' is an inconsistent SaveMD file",
                    reason=f"'{name}' has shape {tuple(dset.shape)}, the dimensions give {expected} "
                    "(last HDF5 axis = dimension 0)",
                )
            )
    meta: dict[str, Any] = {}
    if _METADATA_ATTR in entry.attrs:
        meta = metadata_from_json(_text(entry.attrs[_METADATA_ATTR]), where)
    if "QConvention" in entry.attrs:
        qc = _text(entry.attrs["QConvention"])
        if qc != "Inelastic":
            meta["q_convention"] = qc
    return tuple(axes), datasets, meta
