"""A Mantid-free multi-dimensional histogram: the data model of the core.

Conventions
-----------
* ``signal[i0, i1, ..., iN-1]``: **dimension 0 first**, exactly the shape Mantid's
  ``IMDHistoWorkspace.getSignalArray()`` reports. The arrays held here are ordinary
  C-ordered numpy arrays; the Mantid adapter and the SaveMD reader/writer do the
  Fortran/C reordering at the boundary, nowhere else.
* ``errors`` holds one standard deviation (sigma), not sigma squared.
* A masked bin is a NaN in ``signal`` (Mantid's MDMaskValue); :attr:`MDHisto.mask`
  is derived from it, so there is one source of truth.
* Axes are uniform: ``bins`` bins between ``minimum`` and ``maximum``.
* The networks see the dimensions with more than one bin (:func:`network_dims`); a
  dimension with a single bin is integrated and carried through.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .errors import InputDataError, format_error

__all__ = ["Axis", "MDHisto", "network_dims", "network_ndim"]


def network_dims(shape: Sequence[int]) -> list[int]:
    """Indices of the dimensions a network sees: those with more than one bin.

    The one definition used by the tasks, both front ends and the inference engine;
    dimensions with a single bin are integrated and carried through untouched.
    """
    return [i for i, n in enumerate(shape) if int(n) > 1]


def network_ndim(shape: Sequence[int]) -> int:
    """Number of dimensions a network sees (see :func:`network_dims`)."""
    return len(network_dims(shape))


@dataclass(frozen=True)
class Axis:
    """One uniformly binned dimension.

    Parameters
    ----------
    name
        Dimension name as Mantid shows it, e.g. ``"[H,0,0]"`` or ``"DeltaE"``.
    unit
        Unit string, e.g. ``"r.l.u."`` or ``"meV"``.
    minimum, maximum
        Outer bin edges.
    bins
        Number of bins (>= 1).
    id
        Dimension id; defaults to ``name`` (as CreateMDHistoWorkspace does).
    frame
        Mantid MDFrame name: ``"HKL"``, ``"QSample"``, ``"QLab"`` or ``"General Frame"``.
    """

    name: str
    unit: str
    minimum: float
    maximum: float
    bins: int
    id: str = ""
    frame: str = "General Frame"

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", self.name)
        if int(self.bins) != self.bins or self.bins < 1:
            raise InputDataError(
                format_error(
                    f"Axis '{self.name}' has an invalid number of bins",
                    reason=f"got {self.bins!r}, need a whole number >= 1",
                    fix="give at least one bin per dimension",
                )
            )
        object.__setattr__(self, "bins", int(self.bins))
        lo, hi = float(self.minimum), float(self.maximum)
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            raise InputDataError(
                format_error(
                    f"Axis '{self.name}' has invalid extents",
                    reason=f"minimum={self.minimum!r}, maximum={self.maximum!r}; need finite values with maximum > minimum",
                    fix="check the binning of the input",
                )
            )
        object.__setattr__(self, "minimum", lo)
        object.__setattr__(self, "maximum", hi)

    @property
    def width(self) -> float:
        """Bin width."""
        return (self.maximum - self.minimum) / self.bins

    def edges(self) -> np.ndarray:
        """Bin boundaries, shape ``(bins + 1,)``."""
        return np.linspace(self.minimum, self.maximum, self.bins + 1)

    def centres(self) -> np.ndarray:
        """Bin centres, shape ``(bins,)``."""
        e = self.edges()
        return 0.5 * (e[:-1] + e[1:])

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (JSON-safe)."""
        return {
            "name": self.name,
            "id": self.id,
            "unit": self.unit,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "bins": self.bins,
            "frame": self.frame,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Axis":
        """Inverse of :meth:`to_dict`."""
        return cls(
            name=str(d["name"]),
            unit=str(d.get("unit", "")),
            minimum=float(d["minimum"]),
            maximum=float(d["maximum"]),
            bins=int(d["bins"]),
            id=str(d.get("id", "")),
            frame=str(d.get("frame", "General Frame")),
        )

    @classmethod
    def from_edges(cls, name: str, unit: str, edges: Sequence[float], **kw: Any) -> "Axis":
        """Build from bin boundaries, which must be uniform (as LoadMD assumes)."""
        e = np.asarray(edges, dtype=float)
        if e.ndim != 1 or e.size < 2:
            raise InputDataError(
                format_error(f"Axis '{name}' needs at least two bin edges", reason=f"got {e.size}")
            )
        step = np.diff(e)
        # Mantid stores boundaries in single precision, so allow float32 rounding of the edges.
        tol = 1e-4 * abs(step[0]) + 4 * np.finfo(np.float32).eps * max(1.0, float(abs(e).max()))
        if not np.all(abs(step - step[0]) <= tol):
            raise InputDataError(
                format_error(
                    f"Axis '{name}' is not uniformly binned",
                    reason="bin widths differ",
                    fix="rebin the data uniformly (e.g. with BinMD) before using it",
                )
            )
        return cls(name=name, unit=unit, minimum=e[0], maximum=e[-1], bins=e.size - 1, **kw)


@dataclass
class MDHisto:
    """An N-dimensional histogram with axes, errors and a NaN mask.

    Parameters
    ----------
    signal
        Shape ``(axes[0].bins, ..., axes[N-1].bins)``; NaN marks masked bins.
    axes
        One :class:`Axis` per dimension, dimension 0 first.
    errors
        Standard deviations, same shape as ``signal``, or ``None`` if unknown.
    metadata
        Free-form JSON-safe provenance and sample information (e.g. ``{"Ei": 70.0}``).
    """

    signal: np.ndarray
    axes: tuple[Axis, ...]
    errors: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.axes = tuple(self.axes)
        sig = np.asarray(self.signal, dtype=np.float64)
        expected = tuple(ax.bins for ax in self.axes)
        if sig.shape != expected:
            raise InputDataError(
                format_error(
                    "Signal array does not match the axes",
                    reason=f"signal shape {sig.shape}, axes give {expected} (dimension 0 first)",
                    fix="pass one Axis per array dimension, in the same order",
                )
            )
        if len(self.axes) == 0:
            raise InputDataError(format_error("An MDHisto needs at least one dimension"))
        if np.isinf(sig).any():
            raise InputDataError(
                format_error(
                    "Signal contains infinite values",
                    reason=f"{int(np.isinf(sig).sum())} bins are +/-inf",
                    fix="mask them (set to NaN) or remove them before translation",
                )
            )
        self.signal = np.ascontiguousarray(sig)
        if self.errors is not None:
            err = np.ascontiguousarray(np.asarray(self.errors, dtype=np.float64))
            if err.shape != expected:
                raise InputDataError(
                    format_error(
                        "Error array does not match the signal",
                        reason=f"errors shape {err.shape}, signal shape {expected}",
                    )
                )
            self.errors = err
        self.metadata = dict(self.metadata)

    # ------------------------------------------------------------------ views
    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.axes)

    @property
    def shape(self) -> tuple[int, ...]:
        """Bins per dimension, dimension 0 first."""
        return tuple(ax.bins for ax in self.axes)

    @property
    def mask(self) -> np.ndarray:
        """Boolean array, True where the bin is masked (NaN signal)."""
        return np.isnan(self.signal)

    def non_integrated_dims(self) -> list[int]:
        """Indices of dimensions with more than one bin (:func:`network_dims` of the shape)."""
        return network_dims(self.shape)

    # ------------------------------------------------------------ constructors
    def copy(self) -> "MDHisto":
        """Deep copy."""
        return MDHisto(
            signal=self.signal.copy(),
            axes=self.axes,
            errors=None if self.errors is None else self.errors.copy(),
            metadata=dict(self.metadata),
        )

    def with_signal(
        self,
        signal: np.ndarray,
        errors: np.ndarray | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        keep_mask: bool = True,
    ) -> "MDHisto":
        """A new histogram on the same axes with a new signal.

        Parameters
        ----------
        signal
            Same shape as this histogram's signal.
        errors
            Optional sigma array, same shape.
        metadata
            Entries merged over a copy of this histogram's metadata.
        keep_mask
            If True, bins masked here are NaN in the result too (signal and errors).
        """
        sig = np.array(signal, dtype=np.float64, copy=True)
        err = None if errors is None else np.array(errors, dtype=np.float64, copy=True)
        if keep_mask:
            m = self.mask
            if sig.shape == m.shape:
                sig[m] = np.nan
                if err is not None and err.shape == m.shape:
                    err[m] = np.nan
        meta = dict(self.metadata)
        if metadata:
            meta.update(metadata)
        return MDHisto(signal=sig, axes=self.axes, errors=err, metadata=meta)

    @classmethod
    def from_array(
        cls,
        signal: np.ndarray,
        *,
        names: Iterable[str] | None = None,
        units: Iterable[str] | None = None,
        extents: Iterable[tuple[float, float]] | None = None,
        errors: np.ndarray | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> "MDHisto":
        """Wrap a bare array, with index axes unless names, units and extents are given."""
        sig = np.asarray(signal, dtype=np.float64)
        n = sig.ndim
        names = list(names) if names is not None else [f"Dim{i}" for i in range(n)]
        units = list(units) if units is not None else [""] * n
        extents = list(extents) if extents is not None else [(0.0, float(s)) for s in sig.shape]
        if not (len(names) == len(units) == len(extents) == n):
            raise InputDataError(
                format_error(
                    "Axis description does not match the array",
                    reason=f"array has {n} dimensions; got {len(names)} names, {len(units)} units, {len(extents)} extents",
                )
            )
        axes = tuple(
            Axis(name=nm, unit=un, minimum=lo, maximum=hi, bins=s)
            for nm, un, (lo, hi), s in zip(names, units, extents, sig.shape)
        )
        return cls(signal=sig, axes=axes, errors=errors, metadata=dict(metadata or {}))

    def replace_axes(self, axes: Sequence[Axis]) -> "MDHisto":
        """Same data, new axis descriptions (bin counts must agree)."""
        return replace(self, axes=tuple(axes))
