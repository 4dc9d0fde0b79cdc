"""Workspaces of the double: MDHistoWorkspace (F-ordered buffers), table workspaces, runs."""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np

from ..geometry import IMDDimension
from ..kernel import DataItem

__all__ = [
    "ExperimentInfo",
    "IMDHistoWorkspace",
    "IMDWorkspace",
    "ITableWorkspace",
    "MDHistoWorkspace",
    "MatrixWorkspace",
    "Run",
    "TableWorkspace",
    "Workspace",
]


class Workspace(DataItem):
    """Base workspace: ADS name, title, comment."""

    def __init__(self) -> None:
        self._ads_name = ""
        self._title = ""
        self._comment = ""

    def name(self) -> str:
        return self._ads_name

    def getName(self) -> str:
        return self._ads_name

    def id(self) -> str:  # pragma: no cover - overridden
        return "Workspace"

    def getTitle(self) -> str:
        return self._title

    def setTitle(self, title: str) -> None:
        self._title = str(title)

    def getComment(self) -> str:
        return self._comment

    def setComment(self, comment: str) -> None:
        self._comment = str(comment)


# --------------------------------------------------------------------------- logs
class _LogProperty:
    def __init__(self, name: str, value: Any, units: str = ""):
        self.name = name
        self.value = value
        self.units = units

    @property
    def valueAsStr(self) -> str:
        return str(self.value)


class Run:
    """Sample logs of an ExperimentInfo."""

    def __init__(self) -> None:
        self._logs: "OrderedDict[str, _LogProperty]" = OrderedDict()

    def addProperty(self, name: str, value: Any, *args: Any) -> None:
        """``addProperty(name, value, replace)`` or ``addProperty(name, value, units, replace)``."""
        if len(args) == 1:
            units, replace = "", args[0]
        elif len(args) == 2:
            units, replace = args
        else:
            raise TypeError("addProperty(name, value, replace) or addProperty(name, value, units, replace)")
        if name in self._logs and not replace:
            raise RuntimeError(f"Property {name} already exists")
        self._logs[name] = _LogProperty(name, value, str(units))

    def __setitem__(self, name: str, value: Any) -> None:
        self._logs[name] = _LogProperty(name, value)

    def __getitem__(self, name: str) -> _LogProperty:
        if name not in self._logs:
            raise KeyError(f"'{name}' not found in the run's logs")
        return self._logs[name]

    def __contains__(self, name: str) -> bool:
        return name in self._logs

    def hasProperty(self, name: str) -> bool:
        return name in self._logs

    def getProperty(self, name: str) -> _LogProperty:
        return self[name]

    def getLogData(self, name: str | None = None):
        return list(self._logs.values()) if name is None else self[name]

    def getProperties(self) -> list:
        return list(self._logs.values())

    def keys(self) -> list[str]:
        return list(self._logs)


class ExperimentInfo:
    """Holds a Run (sample logs)."""

    def __init__(self) -> None:
        self._run = Run()

    def run(self) -> Run:
        return self._run

    def getRun(self) -> Run:
        return self._run

    def mutableRun(self) -> Run:
        return self._run


class MultipleExperimentInfos:
    def _init_infos(self) -> None:
        self._infos: list[ExperimentInfo] = []

    def getNumExperimentInfo(self) -> int:
        return len(self._infos)

    def getExperimentInfo(self, index: int) -> ExperimentInfo:
        if not 0 <= index < len(self._infos):
            raise ValueError("expInfoIndex is out of range.")
        return self._infos[index]

    def addExperimentInfo(self, ws: Any) -> int:
        if not isinstance(ws, ExperimentInfo):
            raise ValueError("addExperimentInfo needs a workspace that is also an ExperimentInfo")
        self._infos.append(copy.deepcopy(ws) if not isinstance(ws, Workspace) else _copy_info(ws))
        return len(self._infos) - 1

    def copyExperimentInfos(self, other: "MultipleExperimentInfos") -> None:
        self._infos = [_copy_info(info) for info in other._infos]


def _copy_info(info: ExperimentInfo) -> ExperimentInfo:
    new = ExperimentInfo()
    new._run = copy.deepcopy(info._run)
    return new


class MatrixWorkspace(Workspace, ExperimentInfo):
    """Placeholder type (the package does not use matrix workspaces)."""

    def __init__(self) -> None:
        Workspace.__init__(self)
        ExperimentInfo.__init__(self)

    def id(self) -> str:
        return "Workspace2D"


# --------------------------------------------------------------------- MD histos
class IMDWorkspace(Workspace):
    """Geometry part of MD workspaces."""

    def _init_dims(self, dims: Sequence[IMDDimension]) -> None:
        self._dims = list(dims)

    def getNumDims(self) -> int:
        return len(self._dims)

    def getDimension(self, index: int) -> IMDDimension:
        if not 0 <= index < len(self._dims):
            raise RuntimeError(f"Workspace does not have a dimension at index {index}")
        return self._dims[index]

    def getDimensionWithId(self, dim_id: str) -> IMDDimension:
        for d in self._dims:
            if d.getDimensionId() == dim_id:
                return d
        raise RuntimeError(f"Dimension with id {dim_id} not found")

    def getDimensionIndexByName(self, name: str) -> int:
        for i, d in enumerate(self._dims):
            if d.name == name:
                return i
        raise RuntimeError(f"Dimension named {name} not found")

    def getDimensionIndexById(self, dim_id: str) -> int:
        for i, d in enumerate(self._dims):
            if d.getDimensionId() == dim_id:
                return i
        raise RuntimeError(f"Dimension with id {dim_id} not found")

    def getNonIntegratedDimensions(self) -> list[IMDDimension]:
        return [d for d in self._dims if d.getNBins() > 1]

    def _dim(self, index: int, axis: str) -> IMDDimension:
        if index >= len(self._dims):
            raise RuntimeError(f"Workspace does not have a {axis} dimension.")
        return self._dims[index]

    def getXDimension(self) -> IMDDimension:
        return self._dim(0, "X")

    def getYDimension(self) -> IMDDimension:
        return self._dim(1, "Y")

    def getZDimension(self) -> IMDDimension:
        return self._dim(2, "Z")

    def getTDimension(self) -> IMDDimension:
        return self._dim(3, "T")

    def isMDHistoWorkspace(self) -> bool:
        return False


class IMDHistoWorkspace(IMDWorkspace, MultipleExperimentInfos):
    """Interface type of MD histogram workspaces (used for property type checks)."""


class MDHistoWorkspace(IMDHistoWorkspace):
    """An MD histogram: float64 buffers in Mantid's linear order (dimension 0 fastest).

    Created NaN-filled with no mask flags, as Mantid creates them.
    """

    def __init__(self, dims: Sequence[IMDDimension]):
        Workspace.__init__(self)
        self._init_dims(dims)
        self._init_infos()
        shape = self._shape()
        self._signal = np.full(shape, np.nan, order="F")
        self._error_sq = np.full(shape, np.nan, order="F")
        self._num_events = np.full(shape, np.nan, order="F")
        self._mask = np.zeros(shape, dtype=bool, order="F")

    def _shape(self) -> tuple[int, ...]:
        return tuple(d.getNBins() for d in self._dims)

    def id(self) -> str:
        return "MDHistoWorkspace"

    def isMDHistoWorkspace(self) -> bool:
        return True

    def getNPoints(self) -> int:
        return int(np.prod(self._shape()))

    def getNEvents(self) -> int:
        return int(np.nansum(self._num_events))

    # --- arrays: read-only F-ordered views of the buffers (no copy)
    @staticmethod
    def _view(buffer: np.ndarray) -> np.ndarray:
        view = buffer.view()
        view.flags.writeable = False
        return view

    def getSignalArray(self) -> np.ndarray:
        return self._view(self._signal)

    def getErrorSquaredArray(self) -> np.ndarray:
        return self._view(self._error_sq)

    def getNumEventsArray(self) -> np.ndarray:
        return self._view(self._num_events)

    def _check_shape(self, array: np.ndarray, what: str) -> np.ndarray:
        arr = np.asarray(array, dtype=np.float64)
        shape = self._shape()
        if arr.ndim != len(shape):
            raise ValueError(f"{what}: The number of  dimensions doe not match the current workspace size.")
        for i, (a, b) in enumerate(zip(arr.shape, shape)):
            if a != b:
                raise ValueError(f"{what}: The dimension size for the {i}th dimension do not match the current dimension size.")
        return arr

    def setSignalArray(self, array: np.ndarray) -> None:
        arr = self._check_shape(array, "setSignalArray")
        self._signal.reshape(-1, order="F")[:] = arr.ravel(order="F")

    def setErrorSquaredArray(self, array: np.ndarray) -> None:
        arr = self._check_shape(array, "setErrorSquaredArray")
        self._error_sq.reshape(-1, order="F")[:] = arr.ravel(order="F")

    # --- per bin (linear index, dimension 0 fastest)
    def _flat(self, buffer: np.ndarray) -> np.ndarray:
        return buffer.reshape(-1, order="F")  # a view, since the buffer is F-contiguous

    def _check_index(self, index: int) -> int:
        if not 0 <= index < self.getNPoints():
            raise ValueError(f"index {index} out of range 0..{self.getNPoints() - 1}")
        return index

    def signalAt(self, index: int) -> float:
        return float(self._flat(self._signal)[self._check_index(index)])

    def errorSquaredAt(self, index: int) -> float:
        return float(self._flat(self._error_sq)[self._check_index(index)])

    def setSignalAt(self, index: int, value: float) -> None:
        self._flat(self._signal)[self._check_index(index)] = value

    def setErrorSquaredAt(self, index: int, value: float) -> None:
        self._flat(self._error_sq)[self._check_index(index)] = value

    def setTo(self, signal: float, error_squared: float, num_events: float) -> None:
        self._signal[...] = signal
        self._error_sq[...] = error_squared
        self._num_events[...] = num_events

    def setMDMaskAt(self, index: int, mask: bool) -> None:
        i = self._check_index(index)
        self._flat(self._mask)[i] = bool(mask)
        if mask:
            self._flat(self._signal)[i] = np.nan
            self._flat(self._error_sq)[i] = np.nan

    def getLinearIndex(self, *indices: int) -> int:
        if len(indices) not in (2, 3, 4):
            raise TypeError("getLinearIndex takes 2, 3 or 4 indices")
        return int(np.ravel_multi_index(indices, self._shape(), order="F"))

    def getSpecialCoordinateSystem(self):
        from . import SpecialCoordinateSystem

        frames = {d.getMDFrame().name() for d in self._dims}
        for name in ("HKL", "QSample", "QLab"):
            if name in frames:
                return getattr(SpecialCoordinateSystem, name)
        return getattr(SpecialCoordinateSystem, "NONE")

    def clone(self) -> "MDHistoWorkspace":
        new = copy.deepcopy(self)
        new._ads_name = ""
        return new


# -------------------------------------------------------------------------- tables
_COLUMN_TYPES = {"int": int, "long64": int, "double": float, "float": float, "str": str, "bool": bool}


class ITableWorkspace(Workspace):
    """A table with typed, named columns."""

    def __init__(self) -> None:
        super().__init__()
        self._names: list[str] = []
        self._types: list[type] = []
        self._columns: list[list] = []

    def id(self) -> str:
        return "TableWorkspace"

    def addColumn(self, type: str, name: str, plottype: int = -1000) -> bool:  # noqa: A002 - Mantid's keyword
        if type not in _COLUMN_TYPES:
            raise ValueError(f"Unknown column type '{type}'")
        if name in self._names:
            return False
        self._names.append(name)
        self._types.append(_COLUMN_TYPES[type])
        self._columns.append([_COLUMN_TYPES[type]()] * self.rowCount())
        return True

    def columnCount(self) -> int:
        return len(self._names)

    def rowCount(self) -> int:
        return len(self._columns[0]) if self._columns else 0

    def getColumnNames(self) -> list[str]:
        return list(self._names)

    def keys(self) -> list[str]:
        return list(self._names)

    def addRow(self, row: Any) -> None:
        if isinstance(row, dict):
            if set(row) != set(self._names):
                raise ValueError(f"Row keys {sorted(row)} do not match the columns {self._names}")
            values = [row[n] for n in self._names]
        else:
            values = list(row)
            if len(values) != len(self._names):
                raise ValueError(f"Row has {len(values)} values, the table has {len(self._names)} columns")
        for col, typ, value in zip(self._columns, self._types, values):
            col.append(typ(value))

    def _col_index(self, key: int | str) -> int:
        if isinstance(key, str):
            if key not in self._names:
                raise ValueError(f"Column '{key}' does not exist")
            return self._names.index(key)
        return int(key)

    def column(self, key: int | str) -> list:
        return list(self._columns[self._col_index(key)])

    def row(self, index: int) -> dict:
        if not 0 <= index < self.rowCount():
            raise ValueError(f"Row index {index} out of range")
        return {n: c[index] for n, c in zip(self._names, self._columns)}

    def cell(self, col: int | str, row: int) -> Any:
        # Mantid accepts (column name, row) and (row, column index); the double takes the first.
        return self._columns[self._col_index(col)][row]

    def setCell(self, col: int | str, row: int, value: Any) -> None:
        i = self._col_index(col)
        self._columns[i][row] = self._types[i](value)

    def toDict(self) -> "OrderedDict[str, list]":
        return OrderedDict((n, list(c)) for n, c in zip(self._names, self._columns))


class TableWorkspace(ITableWorkspace):
    """Concrete table."""
