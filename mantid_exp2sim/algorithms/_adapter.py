"""Conversion between Mantid MDHistoWorkspaces and :class:`~mantid_exp2sim.histogram.MDHisto`.

Mantid's ``getSignalArray()`` is a read-only, Fortran-ordered view with dimension 0
first; ``MDHisto`` holds a C-contiguous copy with the **same index order**. The
workspace stores sigma squared, ``MDHisto`` sigma. New workspaces are made with a child
``CreateMDHistoWorkspace`` (flat Fortran-order input, sigma errors), so no workspace
given to these functions is ever modified.

Mantid is imported only by the algorithms calling these functions; nothing here
imports it at module level.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..histogram import Axis, MDHisto

__all__ = ["histo_from_workspace", "workspace_from_histo", "add_provenance", "CREATE_FRAMES"]

#: MDFrames that CreateMDHistoWorkspace accepts; any other frame is written as "General Frame".
CREATE_FRAMES = ("General Frame", "HKL", "QSample", "QLab")


def _text(value: Any) -> str:
    """Unit labels are str in most Mantid versions and UnitLabel objects in some."""
    ascii_method = getattr(value, "ascii", None)
    if callable(ascii_method):
        return str(ascii_method())
    return str(value)


def _dimension_name(dim: Any) -> str:
    name = getattr(dim, "name", None)
    if isinstance(name, str):
        return name
    return str(dim.getName())


def histo_from_workspace(ws: Any) -> MDHisto:
    """Copy an IMDHistoWorkspace into an :class:`MDHisto`.

    Parameters
    ----------
    ws
        The workspace; it is only read.

    Returns
    -------
    MDHisto
        ``signal[i0, i1, ...]`` (dimension 0 first, C-contiguous copy), ``errors`` =
        sqrt(error squared), NaN where the workspace has NaN (masked bins), axes with
        each dimension's name, id, unit, extents, bins and MDFrame name, and metadata
        ``{"workspace": name}``.
    """
    axes = []
    for i in range(ws.getNumDims()):
        dim = ws.getDimension(i)
        axes.append(
            Axis(
                name=_dimension_name(dim),
                unit=_text(dim.getUnits()),
                minimum=float(dim.getMinimum()),
                maximum=float(dim.getMaximum()),
                bins=int(dim.getNBins()),
                id=str(dim.getDimensionId()),
                frame=str(dim.getMDFrame().name()),
            )
        )
    signal = np.array(ws.getSignalArray(), dtype=np.float64, order="C", copy=True)
    err2 = np.array(ws.getErrorSquaredArray(), dtype=np.float64, order="C", copy=True)
    with np.errstate(invalid="ignore"):
        errors = np.sqrt(np.where(err2 < 0, np.nan, err2))
    name = ws.name() if callable(getattr(ws, "name", None)) else ""
    return MDHisto(signal=signal, axes=tuple(axes), errors=errors, metadata={"workspace": name})


def workspace_from_histo(histo: MDHisto, algorithm: Any) -> Any:
    """Create a new MDHistoWorkspace from ``histo`` with a child CreateMDHistoWorkspace.

    Parameters
    ----------
    histo
        The data; ``errors`` None gives errors of zero. NaN bins stay NaN (signal and
        error), which is how Python sees masked bins.
    algorithm
        The running algorithm that owns the child algorithm.

    Returns
    -------
    IMDHistoWorkspace
        Not stored in the ADS. Dimension ids equal the names (CreateMDHistoWorkspace
        sets both from ``Names``); frames other than General Frame, HKL, QSample and
        QLab are written as General Frame.
    """
    errors = histo.errors if histo.errors is not None else np.zeros_like(histo.signal)
    extents: list[float] = []
    for ax in histo.axes:
        extents += [ax.minimum, ax.maximum]
    child = algorithm.createChildAlgorithm("CreateMDHistoWorkspace", enableLogging=False)
    # Mantid's linear index runs dimension 0 fastest: the Fortran-order flattening.
    child.setProperty("SignalInput", np.ravel(histo.signal, order="F"))
    child.setProperty("ErrorInput", np.ravel(errors, order="F"))
    child.setProperty("Dimensionality", histo.ndim)
    child.setProperty("Extents", extents)
    child.setProperty("NumberOfBins", [ax.bins for ax in histo.axes])
    child.setProperty("Names", [ax.name for ax in histo.axes])
    child.setProperty("Units", [ax.unit for ax in histo.axes])
    if child.existsProperty("Frames"):
        child.setProperty("Frames", [ax.frame if ax.frame in CREATE_FRAMES else "General Frame" for ax in histo.axes])
    child.execute()
    return child.getProperty("OutputWorkspace").value


def add_provenance(ws: Any, mapping: Mapping[str, Any], algorithm: Any) -> None:
    """Record ``mapping`` as sample logs of ``ws`` (child AddSampleLog per entry).

    Parameters
    ----------
    ws
        An MD workspace (AddSampleLog adds an empty ExperimentInfo if it has none).
    mapping
        Log name -> value. Ints and floats become number logs, everything else a
        string log; None values are skipped.
    algorithm
        The running algorithm owning the child algorithms.
    """
    for name, value in mapping.items():
        if value is None:
            continue
        child = algorithm.createChildAlgorithm("AddSampleLog", enableLogging=False)
        child.setProperty("Workspace", ws)
        child.setProperty("LogName", str(name))
        is_number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
        if not is_number or not np.isfinite(value):
            child.setProperty("LogText", str(value))
            child.setProperty("LogType", "String")
        else:
            child.setProperty("LogText", repr(value.item() if isinstance(value, np.generic) else value))
            child.setProperty("LogType", "Number")
            child.setProperty("NumberType", "Int" if isinstance(value, (int, np.integer)) else "Double")
        child.execute()
