"""Test double of ``mantid.geometry``: MD dimensions and frames.

Extents are held in single precision, as Mantid's ``coord_t`` is a float.
"""

from __future__ import annotations

import numpy as np

__all__ = ["IMDDimension", "MDFrame", "KNOWN_FRAMES"]

KNOWN_FRAMES = ("General Frame", "HKL", "QSample", "QLab", "Unknown frame")


class MDFrame:
    """An MD frame; ``name()`` is a method."""

    def __init__(self, name: str):
        self._name = name

    def name(self) -> str:
        return self._name

    def getUnitLabel(self) -> str:  # pragma: no cover - not used by the package
        return ""


class IMDDimension:
    """One dimension of an MD workspace. ``name`` is a property (``getName()`` is deprecated)."""

    def __init__(self, name: str, dim_id: str, units: str, minimum: float, maximum: float, nbins: int, frame: str):
        self._name = str(name)
        self._id = str(dim_id)
        self._units = str(units)
        self._min = np.float32(minimum)
        self._max = np.float32(maximum)
        self._nbins = int(nbins)
        self._frame = str(frame)

    @property
    def name(self) -> str:
        return self._name

    def getName(self) -> str:
        return self._name

    def getDimensionId(self) -> str:
        return self._id

    def getUnits(self) -> str:
        return self._units

    def getMinimum(self) -> float:
        return float(self._min)

    def getMaximum(self) -> float:
        return float(self._max)

    def getNBins(self) -> int:
        return self._nbins

    def getNBoundaries(self) -> int:
        return self._nbins + 1

    def getBinWidth(self) -> float:
        return float(np.float32((self._max - self._min) / np.float32(self._nbins)))

    def getX(self, index: int) -> float:
        if not 0 <= index <= self._nbins:
            raise IndexError(f"boundary index {index} out of range 0..{self._nbins}")
        width = np.float32((self._max - self._min) / np.float32(self._nbins))
        return float(np.float32(self._min + np.float32(index) * width))

    def getIsIntegrated(self) -> bool:
        return self._nbins == 1

    def getMDFrame(self) -> MDFrame:
        return MDFrame(self._frame)
