"""Reading and writing histograms without Mantid.

Formats, chosen by extension:

============  ==============================================================
``.nxs``      SaveMD (version 2) NeXus file of an MDHistoWorkspace: what Mantid's
              SaveMD writes and LoadMD reads (see :mod:`.savemd`)
``.npy``      a bare array, the signal; read with index axes (see :mod:`.arrays`)
``.npz``      signal, errors, axes and metadata (numpy archive, no pickles)
``.h5``       signal, errors, axes and metadata (HDF5, streamable); ``.hdf5`` too.
              An ``.h5`` that is a SaveMD file is read as one.
============  ==============================================================

Every writer is atomic (temporary file in the target directory, then ``os.replace``).
Large ``.nxs``/``.h5`` files can be streamed with :func:`open_md_signal` and
:func:`create_md_output`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from ..errors import InputDataError, format_error
from ..histogram import MDHisto
from ._atomic import OutputPathError, check_writable
from .arrays import read_npy, read_npz, write_npy, write_npz
from .streaming import (
    STREAMABLE_EXTENSIONS,
    HistogramReader,
    HistogramWriter,
    create_md_output,
    open_md_signal,
)

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "STREAMABLE_EXTENSIONS",
    "HistogramReader",
    "HistogramWriter",
    "OutputPathError",
    "check_output_path",
    "create_md_output",
    "load_histogram",
    "open_md_signal",
    "save_histogram",
]

#: File extensions understood by :func:`load_histogram` and :func:`save_histogram`.
SUPPORTED_EXTENSIONS = (".nxs", ".npy", ".npz", ".h5", ".hdf5")


def _extension(path: Path, role: str) -> str:
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise InputDataError(
            format_error(
                f"Unsupported {role} file type '{path}'",
                reason=f"extension '{ext or '(none)'}' is not one of {', '.join(SUPPORTED_EXTENSIONS)}",
                fix="use a SaveMD .nxs file, a .npy/.npz array or an .h5 histogram",
            )
        )
    return ext


def check_output_path(path: str | os.PathLike) -> Path:
    """Check, before any work, that ``path`` has a supported extension and can be written.

    Returns
    -------
    Path
        The absolute path. Raises :class:`OutputPathError` (an ``OSError``) naming
        the path, or :class:`~mantid_exp2sim.errors.InputDataError` for a bad extension.
    """
    p = Path(path)
    _extension(p, "output")
    return check_writable(p)


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def _check_fits_in_memory(path: Path, shape: tuple[int, ...], arrays: int) -> None:
    """Refuse, before allocating, a file whose declared shape needs more than the free memory."""
    need = 8 * arrays * math.prod(int(n) for n in shape)
    free = available_memory()
    if free is None or need <= free:
        return
    dims = " x ".join(str(int(n)) for n in shape)
    raise InputDataError(
        format_error(
            f"'{path}' is too large to read into memory",
            reason=f"it declares {dims} bins ({need / 2**30:.3g} GiB as float64), more than the "
            f"{free / 2**30:.3g} GiB of memory available",
            fix="translate it with 'exp2sim deconvolve/convolve --stream' (slab by slab from and to disk), "
            "or rebin it to fewer bins (e.g. BinMD)",
        )
    )


def load_histogram(path: str | os.PathLike) -> MDHisto:
    """Read a histogram file (format from the extension).

    Parameters
    ----------
    path
        A ``.nxs`` (SaveMD), ``.npy``, ``.npz`` or ``.h5`` file.

    Returns
    -------
    MDHisto
        Dimension 0 first, NaN where masked, errors as sigma (None if the file has none).

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    InputDataError
        A directory; unsupported, empty, truncated or corrupted content, or an ``.nxs``/``.h5`` whose
        declared size exceeds the available memory; the message names the file and the fix.
    """
    p = Path(path).expanduser()
    ext = _extension(p, "input")
    if p.is_dir():
        raise InputDataError(
            format_error(f"Input '{p}' is a directory", reason="a histogram file was expected",
                         fix="give the files in it (e.g. DIR/*.nxs), not the directory")
        )
    if not p.is_file():
        raise FileNotFoundError(
            format_error(f"Input file '{p}' does not exist", fix="check the path and the file name")
        )
    try:
        if ext == ".npy":
            return read_npy(p)
        if ext == ".npz":
            return read_npz(p)
        with HistogramReader(p) as reader:
            if ext == ".nxs" and reader.layout != "savemd":
                raise InputDataError(
                    format_error(f"'{p}' is not a SaveMD file", fix="a .nxs input must be written by Mantid's SaveMD")
                )
            _check_fits_in_memory(p, reader.shape, 1 + reader.has_errors)
            try:
                histo = reader.read()
            except OSError as exc:
                raise InputDataError(
                    format_error(
                        f"Cannot read the data of '{p}'",
                        reason=f"the file is truncated or damaged ({' '.join(str(exc).split())})",
                        fix="write it again; it may have been cut off while it was written or copied",
                    )
                ) from exc
    except InputDataError as exc:
        if str(p) in str(exc):
            raise
        raise InputDataError(f"'{p}': {exc}") from exc
    return histo


def save_histogram(histo: MDHisto, path: str | os.PathLike) -> Path:
    """Write a histogram atomically (format from the extension).

    Parameters
    ----------
    histo
        The histogram. ``.npy`` keeps only the signal; ``.nxs`` writes errors of zero
        when ``histo.errors`` is None.
    path
        Output file; its directory must exist.

    Returns
    -------
    Path
        The absolute path written.

    Raises
    ------
    OutputPathError
        The path cannot be written (the message names it).
    """
    p = check_output_path(path)
    ext = p.suffix.lower()
    if ext == ".npy":
        write_npy(histo, p)
    elif ext == ".npz":
        write_npz(histo, p)
    else:
        with HistogramWriter(p, histo.axes, metadata=histo.metadata, with_errors=histo.errors is not None) as writer:
            writer.write_histo(histo)
    return p
