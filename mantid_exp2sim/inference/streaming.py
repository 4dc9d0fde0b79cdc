"""translate_file(): file-to-file translation in bounded memory.

The input (SaveMD ``.nxs`` or exp2sim ``.h5``) is never loaded whole: the intensity scale is
accumulated over slabs, then every tile is read as one hyperslab and every kept core written
as one slab of the output, which :mod:`mantid_exp2sim.io` fills in a temporary file and moves
into place only when complete. Peak memory is the tile batch plus the network's activations,
independent of the input size.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..bundle.resolve import resolve_bundle
from ..errors import InputDataError, format_error
from .backends import InferenceBackend, OOMBackoff
from .engine import (
    Progress,
    _prepare_run,
    conserve_intensity_metadata,
    model_spec,
    network_dims,
    resolve_patch,
    run_metadata,
    translate_array,
)
from .conservation import SummingSink

__all__ = ["translate_file", "streamed_intensity_scale", "streamed_statistics", "ReaderSource", "WriterSink", "return_freed_memory_promptly"]

#: Elements per slab read while accumulating the intensity scale (32 MB of float64).
SLAB_ELEMENTS = 1 << 22


_MALLOC_TUNED = False


def return_freed_memory_promptly() -> bool:
    """Make glibc serve blocks >= 128 KiB with mmap, so that freed tile buffers go back to the OS.

    glibc raises its mmap threshold after large blocks are freed, so later tile-sized
    buffers come from the heap, which fragments: over many tiles the peak RSS grows by
    20-30% above a single tile's. Fixing the threshold (``mallopt(M_MMAP_THRESHOLD)``, as the
    ``MALLOC_MMAP_THRESHOLD_`` environment variable does) keeps the peak at one tile's.
    Process-wide and only done by :func:`translate_file`, the out-of-core path. Returns
    whether it was applied (False off glibc).
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return True
    try:
        import ctypes
        import ctypes.util

        name = ctypes.util.find_library("c")
        if not name or "MALLOC_MMAP_THRESHOLD_" in os.environ:
            return False
        libc = ctypes.CDLL(name)
        m_mmap_threshold = -3
        _MALLOC_TUNED = bool(libc.mallopt(m_mmap_threshold, 1 << 17))
    except (OSError, AttributeError):
        return False
    return _MALLOC_TUNED


def _full_index(key: Any, keep: Sequence[int], ndim: int) -> tuple[Any, ...]:
    """Index of the file's dimensions for a key over the network's dimensions ``keep``."""
    if not isinstance(key, tuple):
        key = (key,)
    key = tuple(key) + (slice(None),) * (len(keep) - len(key))
    full: list[Any] = [0] * ndim  # dropped dimensions have one bin
    for j, i in enumerate(keep):
        full[i] = key[j]
    return tuple(full)


class ReaderSource:
    """Array-like view (``.shape``, ``[slices]``) of a :class:`~mantid_exp2sim.io.HistogramReader`
    over the dimensions ``keep``; reads return float64 with NaN where masked.

    Attributes
    ----------
    reads
        Number of slab reads so far (each tile is one).
    """

    def __init__(self, reader: Any, keep: Sequence[int]) -> None:
        self.reader = reader
        self.keep = list(keep)
        self.shape = tuple(reader.shape[i] for i in self.keep)
        self.ndim = len(self.shape)
        self.reads = 0

    def __getitem__(self, key: Any) -> np.ndarray:
        self.reads += 1
        return self.reader.read_signal(_full_index(key, self.keep, self.reader.ndim))


class WriterSink:
    """Writable array-like over a :class:`~mantid_exp2sim.io.HistogramWriter` (signal only)."""

    def __init__(self, writer: Any, keep: Sequence[int]) -> None:
        self.writer = writer
        self.keep = list(keep)
        self.shape = tuple(writer.shape[i] for i in self.keep)

    def __setitem__(self, key: Any, value: np.ndarray) -> None:
        self.writer.write(_full_index(key, self.keep, len(self.writer.shape)), np.asarray(value), None)


def streamed_statistics(source: Any, *, slab_elements: int | None = None) -> Any:
    """Intensity statistics over the unmasked bins of an array-like, read in slabs along dimension 0.

    The same values as :func:`mantid_exp2sim.inference.engine.checked_statistics`, with
    memory bounded by ``slab_elements`` (default :data:`SLAB_ELEMENTS`).

    Returns
    -------
    IntensityScaleAccumulator
        With ``scale``, ``total`` and ``total_abs``.

    Raises
    ------
    InputDataError
        When a bin is +-inf or every bin is masked.
    """
    from ..models.normalisation import IntensityScaleAccumulator

    shape = tuple(source.shape)
    row = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    budget = SLAB_ELEMENTS if slab_elements is None else int(slab_elements)
    step = max(1, budget // max(1, row))
    acc = IntensityScaleAccumulator()
    for start in range(0, shape[0], step):
        acc.update(source[start : start + step])
    acc.scale  # raises when every bin is masked
    return acc


def streamed_intensity_scale(source: Any, *, slab_elements: int | None = None) -> float:
    """RMS over the unmasked bins of an array-like (see :func:`streamed_statistics`)."""
    return float(streamed_statistics(source, slab_elements=slab_elements).scale)


def translate_file(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    bundle: Any,
    *,
    backend: str | InferenceBackend = "auto",
    device: str = "auto",
    batch_size: int | None = None,
    patch_size: int | Sequence[int] | None = None,
    progress: Progress | None = None,
    half: bool = False,
    conserve_intensity: bool = True,
) -> Path:
    """Translate a histogram file into another, streaming tiles from and to disk.

    Parameters
    ----------
    input_path
        SaveMD ``.nxs`` (as Mantid's SaveMD writes) or exp2sim ``.h5`` histogram.
    output_path
        ``.nxs`` (SaveMD layout, loadable with LoadMD) or ``.h5``; written atomically (a
        temporary file in the same folder, moved into place when complete; nothing is left
        behind on an error or a cancel). Must differ from ``input_path``.
    bundle, backend, device, batch_size, patch_size, progress, half, conserve_intensity
        As in :func:`mantid_exp2sim.inference.translate`. Conserving the intensity rescales
        the written output in a second pass over the output file.

    Returns
    -------
    pathlib.Path
        The output path. The output has the input's axes and mask, no errors (SaveMD stores
        zeros) and the input's metadata plus the provenance keys of ``translate``.
    """
    from ..io import create_md_output, open_md_signal

    src_path = Path(input_path).expanduser()
    dst_path = Path(output_path).expanduser()
    if src_path.exists() and dst_path.exists() and os.path.samefile(src_path, dst_path):
        raise InputDataError(
            format_error(
                "The output file is the input file",
                reason=f"both are '{src_path}'",
                fix="write the translation to a new file",
            )
        )
    return_freed_memory_promptly()
    b = resolve_bundle(bundle)
    spec = model_spec(b)
    resolve_patch(patch_size, spec)  # argument errors before any file is opened
    with open_md_signal(src_path) as reader:
        keep = network_dims(reader.axes, spec, spec.bundle_id)
        source = ReaderSource(reader, keep)
        stats = streamed_statistics(source)
        scale = float(stats.scale)
        engine, patch, plan, batch = _prepare_run(
            b, spec, source.shape, backend=backend, device=device, half=half, patch_size=patch_size,
            batch_size=batch_size,
        )
        meta = dict(reader.metadata)
        meta.update(run_metadata(spec, engine, scale, plan, bundle=b))
        with create_md_output(dst_path, reader.axes, metadata=meta, with_errors=False) as writer:
            sink = SummingSink(WriterSink(writer, keep))
            translate_array(
                source,
                sink,
                OOMBackoff(engine),
                spec,
                scale=scale,
                patch=patch,
                batch_size=batch,
                progress=progress,
            )
            factor, conservation = conserve_intensity_metadata(stats, sink.sums, conserve_intensity)
            if factor is not None:
                writer.scale_signal(factor)
            writer.update_metadata({**meta, **conservation})
    return dst_path
