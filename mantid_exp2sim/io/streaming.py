"""Lazy, slab-wise access to large histogram files (SaveMD ``.nxs`` and ``.h5``).

Both readers and writers index in the data model's order, **dimension 0 first**,
whatever the layout on disk (SaveMD files store the transpose). A writer fills a
temporary file in the target directory and moves it into place only when it is
committed, so an interrupted run never leaves a partial output.

Example
-------
>>> with open_md_signal("big.nxs") as src, create_md_output("out.nxs", src.axes) as dst:
...     for k in range(0, src.shape[0], 16):
...         sl = (slice(k, k + 16),)
...         dst.write(sl, 2.0 * src.read_signal(sl), src.read_errors(sl))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import InputDataError, format_error
from ..histogram import Axis, MDHisto
from ._atomic import check_writable, commit_temp, reserve_temp
from .arrays import create_h5_layout, read_h5_axes, set_h5_metadata
from .savemd import create_savemd_layout, read_savemd_axes, set_savemd_metadata

__all__ = ["HistogramReader", "HistogramWriter", "open_md_signal", "create_md_output", "STREAMABLE_EXTENSIONS"]

#: Extensions of the formats that can be streamed.
STREAMABLE_EXTENSIONS = (".nxs", ".h5", ".hdf5")

Index = Sequence[slice | int] | slice | int | None


def _normalise_index(index: Index, ndim: int) -> tuple[slice | int, ...]:
    if index is None:
        return (slice(None),) * ndim
    if not isinstance(index, (tuple, list)):
        index = (index,)
    index = tuple(index)
    if len(index) > ndim:
        raise IndexError(f"{len(index)} indices given for a {ndim}-dimensional histogram")
    return index + (slice(None),) * (ndim - len(index))


def _h5py():
    import h5py

    return h5py


def _open_h5(path: Path):
    h5py = _h5py()
    if not path.is_file():
        raise FileNotFoundError(
            format_error(f"Input file '{path}' does not exist", fix="check the path and the file name")
        )
    if not h5py.is_hdf5(path):
        raise InputDataError(
            format_error(
                f"Cannot read '{path}'",
                reason="it is not an HDF5 file (SaveMD writes HDF5 NeXus; old HDF4 NeXus files are not supported)",
                fix="save the workspace again with Mantid's SaveMD",
            )
        )
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise InputDataError(format_error(f"Cannot open '{path}'", reason=str(exc))) from exc


class HistogramReader:
    """An open histogram file whose arrays are read on demand.

    Attributes
    ----------
    path
        The file.
    axes
        One Axis per dimension, dimension 0 first.
    metadata
        The stored metadata (``{}`` for Mantid-written files).
    layout
        ``"savemd"`` or ``"exp2sim-h5"``.
    signal_dataset
        The raw h5py dataset. For ``"savemd"`` its axes are **reversed**
        (shape ``(n_{N-1}, ..., n0)``); prefer :meth:`read_signal`.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = _open_h5(self.path)
        try:
            if "MDHistoWorkspace" in self._file or "MDEventWorkspace" in self._file:
                self.layout = "savemd"
                self.axes, self._datasets, self.metadata = read_savemd_axes(self._file, str(self.path))
            else:
                self.layout = "exp2sim-h5"
                self.axes, self._datasets, self.metadata = read_h5_axes(self._file, str(self.path))
        except BaseException:
            self._file.close()
            raise
        self.signal_dataset = self._datasets["signal"]

    # ----------------------------------------------------------------- basics
    @property
    def shape(self) -> tuple[int, ...]:
        """Bins per dimension, dimension 0 first."""
        return tuple(ax.bins for ax in self.axes)

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.axes)

    @property
    def has_errors(self) -> bool:
        """True if the file stores errors."""
        return "errors_squared" in self._datasets or "errors" in self._datasets

    def _read(self, name: str, index: Index) -> np.ndarray:
        idx = _normalise_index(index, self.ndim)
        dset = self._datasets[name]
        if self.layout == "savemd":
            return np.ascontiguousarray(np.asarray(dset[tuple(reversed(idx))]).T)
        return np.asarray(dset[idx])

    def _masked(self, index: Index) -> np.ndarray | None:
        if "mask" not in self._datasets:
            return None
        return self._read("mask", index).astype(bool)

    def read_signal(self, index: Index = None) -> np.ndarray:
        """Signal of a slab, dimension 0 first, float64, NaN where masked.

        Parameters
        ----------
        index
            Slices (or ints) per dimension, dimension 0 first; ``None`` reads all.
        """
        sig = self._read("signal", index).astype(np.float64, copy=True)
        mask = self._masked(index)
        if mask is not None:
            sig[mask] = np.nan
        return sig

    def read_errors(self, index: Index = None) -> np.ndarray | None:
        """Sigma of a slab (``sqrt(errors_squared)`` for SaveMD), NaN where masked; None if absent."""
        if "errors_squared" in self._datasets:
            err2 = self._read("errors_squared", index).astype(np.float64, copy=True)
            with np.errstate(invalid="ignore"):
                err = np.sqrt(np.where(err2 < 0, np.nan, err2))
            mask = self._masked(index)
            if mask is not None:
                err[mask] = np.nan
            return err
        if "errors" in self._datasets:
            return self._read("errors", index).astype(np.float64, copy=True)
        return None

    def read(self) -> MDHisto:
        """The whole file as an :class:`MDHisto`."""
        return MDHisto(signal=self.read_signal(), axes=self.axes, errors=self.read_errors(), metadata=dict(self.metadata))

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> "HistogramReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class HistogramWriter:
    """A histogram file being written slab by slab; it appears at ``path`` on :meth:`commit`.

    Parameters
    ----------
    path
        Final file; ``.nxs`` writes a SaveMD file, ``.h5``/``.hdf5`` the exp2sim layout.
    axes
        One Axis per dimension, dimension 0 first.
    metadata
        Stored with the data (JSON-safe).
    with_errors
        Whether the file has errors (SaveMD files always do: zeros if never given).
    compression
        h5py compression filter.

    Notes
    -----
    Used as a context manager, it commits on a normal exit and discards the temporary
    file on an exception (KeyboardInterrupt included). Bins never written stay masked.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        axes: Sequence[Axis],
        *,
        metadata: Mapping[str, Any] | None = None,
        with_errors: bool = True,
        compression: str | None = "gzip",
    ):
        self.path = check_writable(path)
        self.axes = tuple(axes)
        ext = self.path.suffix.lower()
        if ext not in STREAMABLE_EXTENSIONS:
            raise InputDataError(
                format_error(
                    f"Cannot stream-write '{self.path}'",
                    reason=f"extension '{ext}' is not one of {', '.join(STREAMABLE_EXTENSIONS)}",
                )
            )
        self.layout = "savemd" if ext == ".nxs" else "exp2sim-h5"
        self._tmp = reserve_temp(self.path)
        self._closed = False
        try:
            self._file = _h5py().File(self._tmp, "w")
            if self.layout == "savemd":
                self._datasets = create_savemd_layout(self._file, self.axes, metadata, compression=compression)
            else:
                self._datasets = create_h5_layout(
                    self._file, self.axes, metadata, with_errors=with_errors, compression=compression
                )
        except BaseException:
            self.abort()
            raise

    @property
    def shape(self) -> tuple[int, ...]:
        """Bins per dimension, dimension 0 first."""
        return tuple(ax.bins for ax in self.axes)

    def write(self, index: Index, signal: np.ndarray, errors: np.ndarray | None = None) -> None:
        """Write one slab.

        Parameters
        ----------
        index
            Slices per dimension, dimension 0 first, selecting the slab.
        signal
            The slab's signal, dimension 0 first; NaN marks masked bins.
        errors
            Sigma, same shape; None writes zeros (SaveMD) or leaves NaN (``.h5``).
        """
        if self._closed:
            raise ValueError(f"the output '{self.path}' is already committed or aborted")
        idx = _normalise_index(index, len(self.axes))
        sig = np.asarray(signal, dtype=np.float64)
        masked = np.isnan(sig)
        err = None if errors is None else np.asarray(errors, dtype=np.float64)
        if err is not None and err.shape != sig.shape:
            raise InputDataError(
                format_error("Error slab does not match the signal slab", reason=f"{err.shape} vs {sig.shape}")
            )
        if self.layout == "savemd":
            fidx = tuple(reversed(idx))
            err2 = np.zeros_like(sig) if err is None else err**2
            err2 = np.where(masked, np.nan, err2)
            self._datasets["signal"][fidx] = sig.T
            self._datasets["errors_squared"][fidx] = err2.T
            self._datasets["mask"][fidx] = masked.astype(np.int8).T
            self._datasets["num_events"][fidx] = np.ones(sig.shape[::-1])
        else:
            self._datasets["signal"][idx] = sig
            if err is not None and "errors" in self._datasets:
                self._datasets["errors"][idx] = np.where(masked, np.nan, err)

    def scale_signal(self, factor: float, *, slab_elements: int = 1 << 22) -> None:
        """Multiply every written signal bin by ``factor`` (slab by slab; NaN stays NaN).

        Errors are left alone: the translation writes none.
        """
        if self._closed:
            raise ValueError(f"the output '{self.path}' is already committed or aborted")
        ds = self._datasets["signal"]
        row = int(np.prod(ds.shape[1:])) if ds.ndim > 1 else 1
        step = max(1, slab_elements // max(1, row))
        for start in range(0, ds.shape[0], step):
            ds[start : start + step] = ds[start : start + step] * float(factor)

    def update_metadata(self, metadata: Mapping[str, Any]) -> None:
        """Replace the metadata stored with the data."""
        if self._closed:
            raise ValueError(f"the output '{self.path}' is already committed or aborted")
        (set_savemd_metadata if self.layout == "savemd" else set_h5_metadata)(self._file, metadata)

    def write_histo(self, histo: MDHisto) -> None:
        """Write a whole histogram (its axes must match)."""
        if histo.shape != self.shape:
            raise InputDataError(
                format_error("Histogram does not match the output file", reason=f"{histo.shape} vs {self.shape}")
            )
        self.write(None, histo.signal, histo.errors)

    def commit(self) -> Path:
        """Close the file and move it to its final path; returns that path."""
        if self._closed:
            raise ValueError(f"the output '{self.path}' is already committed or aborted")
        self._closed = True
        try:
            self._file.close()
            commit_temp(self._tmp, self.path)
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise
        return self.path

    def abort(self) -> None:
        """Discard the temporary file (nothing appears at ``path``)."""
        self._closed = True
        file = getattr(self, "_file", None)
        if file is not None:
            try:
                file.close()
            except Exception:  # noqa: BLE001 - closing a broken file must not hide the real error
                pass
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "HistogramWriter":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            if not self._closed:
                self.commit()
        elif not self._closed:
            self.abort()


def open_md_signal(path: str | os.PathLike) -> HistogramReader:
    """Open a SaveMD ``.nxs`` or exp2sim ``.h5`` histogram for slab-wise reading.

    Parameters
    ----------
    path
        The file; close the returned reader (or use it in a ``with`` block).

    Returns
    -------
    HistogramReader
        With ``.axes``, ``.shape``, ``.read_signal(index)``, ``.read_errors(index)`` and the
        raw ``.signal_dataset``.
    """
    p = Path(path)
    if p.suffix.lower() not in STREAMABLE_EXTENSIONS:
        raise InputDataError(
            format_error(
                f"Cannot stream '{p}'",
                reason=f"only {', '.join(STREAMABLE_EXTENSIONS)} files can be read lazily",
                fix="use mantid_exp2sim.io.load_histogram for .npy/.npz files",
            )
        )
    return HistogramReader(p)


def create_md_output(
    path: str | os.PathLike,
    axes: Sequence[Axis],
    *,
    metadata: Mapping[str, Any] | None = None,
    with_errors: bool = True,
) -> HistogramWriter:
    """Pre-create an output histogram file to be filled slab by slab (see :class:`HistogramWriter`)."""
    return HistogramWriter(path, axes, metadata=metadata, with_errors=with_errors)
