"""Stand-ins for the C++ algorithms the package and its tests call.

CreateMDHistoWorkspace, AddSampleLog, CreateEmptyTableWorkspace, DeleteWorkspace,
SaveMD and LoadMD, with the properties, layouts and error messages of the fact sheet.
"""

from __future__ import annotations

import numpy as np

from ..geometry import IMDDimension
from ..kernel import (
    Direction,
    FloatArrayMandatoryValidator,
    FloatArrayProperty,
    IntArrayProperty,
    IntBoundedValidator,
    StringArrayProperty,
    StringListValidator,
    StringMandatoryValidator,
)
from ._algorithm import Algorithm
from ._properties import (
    FileAction,
    FileProperty,
    IMDHistoWorkspaceProperty,
    IMDWorkspaceProperty,
    ITableWorkspaceProperty,
    WorkspaceProperty,
)
from ._workspaces import ExperimentInfo, MDHistoWorkspace, TableWorkspace

__all__ = ["BUILTIN_ALGORITHMS"]

_FRAMES = ("General Frame", "HKL", "QSample", "QLab")


def _hkl_unit_ok(unit: str) -> bool:
    u = unit.strip()
    return u == "r.l.u." or "Angstrom^-1" in u or "A^-1" in u


class CreateMDHistoWorkspace(Algorithm):
    def category(self):
        return "MDAlgorithms\\Creation"

    def summary(self):
        return "Creates an MDHistoWorkspace from supplied lists of signal and error values."

    def PyInit(self):
        self.declareProperty(FloatArrayProperty("SignalInput", [], FloatArrayMandatoryValidator()), "Signal array")
        self.declareProperty(FloatArrayProperty("ErrorInput", [], FloatArrayMandatoryValidator()), "Error (sigma) array")
        self.declareProperty(FloatArrayProperty("NumberOfEvents", []), "Number of events per bin (default 1)")
        self.declareProperty("Dimensionality", -1, IntBoundedValidator(lower=1, upper=9), "Number of dimensions")
        self.declareProperty(FloatArrayProperty("Extents", []), "min0,max0,min1,max1,...")
        self.declareProperty(IntArrayProperty("NumberOfBins", []), "Bins per dimension")
        self.declareProperty(StringArrayProperty("Names", []), "Dimension names (also the ids)")
        self.declareProperty(StringArrayProperty("Units", []), "Dimension units")
        self.declareProperty(StringArrayProperty("Frames", []), "MDFrame per dimension")
        self.declareProperty(IMDHistoWorkspaceProperty("OutputWorkspace", "", Direction.Output), "Output")

    def validateInputs(self):
        n_sig = len(self.getProperty("SignalInput").value)
        n_err = len(self.getProperty("ErrorInput").value)
        n_ev = len(self.getProperty("NumberOfEvents").value)
        if n_sig != n_err or (n_ev and n_ev != n_sig):
            msg = f"All inputs must match size: {n_sig}"
            return {"SignalInput": msg, "ErrorInput": msg}
        return {}

    def PyExec(self):
        ndim = self.getProperty("Dimensionality").value
        extents = self.getProperty("Extents").value
        nbins = self.getProperty("NumberOfBins").value
        names = self.getProperty("Names").value
        units = self.getProperty("Units").value
        frames = self.getProperty("Frames").value
        if len(extents) != 2 * ndim:
            raise ValueError("You must specify twice as many extents (min,max) as there are dimensions.")
        if len(nbins) != ndim:
            raise ValueError("You must specify as number of bins as there are dimensions.")
        if len(names) != ndim:
            raise ValueError("You must specify as many names as there are dimensions.")
        if len(units) != ndim:
            raise ValueError("You must specify as many units as there are dimensions.")
        if not frames:
            frames = ["General Frame"] * ndim
        if len(frames) != ndim:
            raise ValueError("You must specify as many frames as there are dimensions.")
        for frame, unit in zip(frames, units):
            if frame not in _FRAMES:
                raise ValueError(f"'{frame}' is not a valid MDFrame (allowed: {', '.join(_FRAMES)})")
            if frame == "HKL" and not _hkl_unit_ok(unit):
                raise ValueError(f"HKL frame needs units of r.l.u. or inverse Angstroms, got '{unit}'")
        dims = [
            IMDDimension(names[i], names[i], units[i], extents[2 * i], extents[2 * i + 1], nbins[i], frames[i])
            for i in range(ndim)
        ]
        ws = MDHistoWorkspace(dims)
        signal = self.getProperty("SignalInput").value
        errors = self.getProperty("ErrorInput").value
        if signal.size != ws.getNPoints():
            raise ValueError(f"All inputs must match size: {ws.getNPoints()}")
        events = self.getProperty("NumberOfEvents").value
        # The flat input is copied into the linear buffer: dimension 0 varies fastest.
        ws._flat(ws._signal)[:] = signal
        ws._flat(ws._error_sq)[:] = errors**2
        ws._flat(ws._num_events)[:] = events if events.size else 1.0
        self.setProperty("OutputWorkspace", ws)


class CreateEmptyTableWorkspace(Algorithm):
    def category(self):
        return "Utility\\Workspaces"

    def PyInit(self):
        self.declareProperty(ITableWorkspaceProperty("OutputWorkspace", "", Direction.Output), "The table")

    def PyExec(self):
        self.setProperty("OutputWorkspace", TableWorkspace())


class AddSampleLog(Algorithm):
    def category(self):
        return "DataHandling\\Logs"

    def PyInit(self):
        self.declareProperty(WorkspaceProperty("Workspace", "", Direction.InOut), "Workspace to add the log to")
        self.declareProperty("LogName", "", StringMandatoryValidator(), "Log name")
        self.declareProperty("LogText", "", "Value, as text")
        self.declareProperty("LogUnit", "", "Unit")
        self.declareProperty("LogType", "String", StringListValidator(["String", "Number", "Number Series"]), "Type")
        self.declareProperty("NumberType", "AutoDetect", StringListValidator(["Int", "Double", "AutoDetect"]), "Number type")

    def PyExec(self):
        ws = self.getProperty("Workspace").value
        text = self.getProperty("LogText").value
        kind = self.getProperty("LogType").value
        value: object = text
        if kind != "String":
            number_type = self.getProperty("NumberType").value
            try:
                if number_type == "Int" or (number_type == "AutoDetect" and text.strip().lstrip("+-").isdigit()):
                    value = int(text)
                else:
                    value = float(text)
            except ValueError as exc:
                raise RuntimeError(f"Error interpreting string '{text}' as {number_type}.") from exc
            if kind == "Number Series":
                value = [value]
        if isinstance(ws, MDHistoWorkspace):
            if ws.getNumExperimentInfo() == 0:
                ws._infos.append(ExperimentInfo())
            run = ws.getExperimentInfo(0).mutableRun()
        elif isinstance(ws, ExperimentInfo):
            run = ws.mutableRun()
        else:
            raise ValueError("Workspace must be an ExperimentInfo or an MD workspace")
        run.addProperty(self.getProperty("LogName").value, value, self.getProperty("LogUnit").value, True)
        self.setProperty("Workspace", ws)


class DeleteWorkspace(Algorithm):
    def category(self):
        return "Utility\\Workspaces"

    def PyInit(self):
        self.declareProperty(WorkspaceProperty("Workspace", "", Direction.Input), "Workspace to delete")

    def PyExec(self):
        from ._services import AnalysisDataService

        AnalysisDataService.remove(self.getPropertyValue("Workspace"))


class SaveMD(Algorithm):
    """Writes the SaveMD version 2 layout (arrays and dimensions; no history or logs)."""

    def category(self):
        return "MDAlgorithms\\DataHandling"

    def PyInit(self):
        self.declareProperty(IMDWorkspaceProperty("InputWorkspace", "", Direction.Input), "Workspace to save")
        self.declareProperty(FileProperty("Filename", "", FileAction.Save, [".nxs"]), "Output file")

    def PyExec(self):
        import h5py

        from mantid_exp2sim.histogram import Axis
        from mantid_exp2sim.io.savemd import create_savemd_layout

        ws = self.getProperty("InputWorkspace").value
        axes = [
            Axis(d.name, d.getUnits(), d.getMinimum(), d.getMaximum(), d.getNBins(), id=d.getDimensionId(),
                 frame=d.getMDFrame().name())
            for d in (ws.getDimension(i) for i in range(ws.getNumDims()))
        ]
        with h5py.File(self.getProperty("Filename").value, "w") as f:
            dsets = create_savemd_layout(f, axes)
            # The C-ordered file arrays are the transposes of the F-ordered buffers.
            dsets["signal"][...] = ws._signal.T
            dsets["errors_squared"][...] = ws._error_sq.T
            dsets["num_events"][...] = ws._num_events.T
            dsets["mask"][...] = ws._mask.T.astype(np.int8)
            # SaveMD writes the boundaries as Mantid computes them (single precision).
            for i in range(ws.getNumDims()):
                d = ws.getDimension(i)
                f[f"MDHistoWorkspace/data/D{i}"][...] = [d.getX(b) for b in range(d.getNBoundaries())]


class LoadMD(Algorithm):
    """Reads a SaveMD MDHistoWorkspace file as LoadMD does (min/max/n from the boundaries)."""

    def category(self):
        return "MDAlgorithms\\DataHandling"

    def PyInit(self):
        self.declareProperty(FileProperty("Filename", "", FileAction.Load, [".nxs"]), "File to load")
        self.declareProperty("FileBackEnd", False, "Ignored by the double")
        self.declareProperty("LoadHistory", True, "Ignored by the double")
        self.declareProperty(WorkspaceProperty("OutputWorkspace", "", Direction.Output), "Output")

    def PyExec(self):
        import h5py

        with h5py.File(self.getProperty("Filename").value, "r") as f:
            if "MDHistoWorkspace" not in f:
                raise RuntimeError("LoadMD: the file has no MDHistoWorkspace entry")
            entry = f["MDHistoWorkspace"]
            data = entry["data"]
            tokens = [t for t in _text(data["signal"].attrs["axes"]).split(":") if t]
            dims = []
            for tok in reversed(tokens):
                dset = data[tok]
                edges = dset[()]
                name = _text(dset.attrs["long_name"])
                frame = _text(dset.attrs["frame"]) if "frame" in dset.attrs else "Unknown frame"
                dims.append(IMDDimension(name, name, _text(dset.attrs.get("units", b"")), edges[0], edges[-1],
                                         len(edges) - 1, frame))
            ws = MDHistoWorkspace(dims)
            for key, buf in (("signal", ws._signal), ("errors_squared", ws._error_sq),
                             ("num_events", ws._num_events)):
                arr = data[key][()]
                if arr.dtype != np.float64 or arr.size != buf.size:
                    raise RuntimeError(f"LoadMD: '{key}' has the wrong type or size")
                ws._flat(buf)[:] = arr.ravel(order="C")
            mask = data["mask"][()]
            if mask.dtype != np.int8 or mask.size != ws._mask.size:
                raise RuntimeError("LoadMD: 'mask' has the wrong type or size")
            ws._flat(ws._mask)[:] = mask.ravel(order="C").astype(bool)
        self.setProperty("OutputWorkspace", ws)


def _text(value) -> str:
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0]
    return value.decode("utf-8") if isinstance(value, (bytes, np.bytes_)) else str(value)


BUILTIN_ALGORITHMS = (
    CreateMDHistoWorkspace,
    CreateEmptyTableWorkspace,
    AddSampleLog,
    DeleteWorkspace,
    SaveMD,
    LoadMD,
)
