"""Test double of ``mantid.api`` (see tests/mantid_double/README.md)."""

import enum as _enum

from ._algorithm import Algorithm, DataProcessorAlgorithm, Progress, PythonAlgorithm
from ._properties import (
    FileAction,
    FileProperty,
    IMDHistoWorkspaceProperty,
    IMDWorkspaceProperty,
    ITableWorkspaceProperty,
    IWorkspaceProperty,
    LockMode,
    MatrixWorkspaceProperty,
    PropertyMode,
    WorkspaceProperty,
)
from ._services import AlgorithmFactory, AlgorithmManager, AnalysisDataService, WorkspaceFactory, mtd
from ._workspaces import (
    ExperimentInfo,
    IMDHistoWorkspace,
    IMDWorkspace,
    ITableWorkspace,
    MatrixWorkspace,
    Run,
    Workspace,
)


class MDNormalization:
    NoNormalization = 0
    VolumeNormalization = 1
    NumEventsNormalization = 2


SpecialCoordinateSystem = _enum.Enum(
    "SpecialCoordinateSystem", [("NONE", 0), ("QLab", 1), ("QSample", 2), ("HKL", 3)]
)


def _subscribe_builtins() -> None:
    from ._builtin import BUILTIN_ALGORITHMS

    for cls in BUILTIN_ALGORITHMS:
        AlgorithmFactory.subscribe(cls)


_subscribe_builtins()

__all__ = [
    "Algorithm",
    "AlgorithmFactory",
    "AlgorithmManager",
    "AnalysisDataService",
    "DataProcessorAlgorithm",
    "ExperimentInfo",
    "FileAction",
    "FileProperty",
    "IMDHistoWorkspace",
    "IMDHistoWorkspaceProperty",
    "IMDWorkspace",
    "IMDWorkspaceProperty",
    "ITableWorkspace",
    "ITableWorkspaceProperty",
    "IWorkspaceProperty",
    "LockMode",
    "MDNormalization",
    "MatrixWorkspace",
    "MatrixWorkspaceProperty",
    "Progress",
    "PropertyMode",
    "PythonAlgorithm",
    "Run",
    "SpecialCoordinateSystem",
    "Workspace",
    "WorkspaceFactory",
    "WorkspaceProperty",
    "mtd",
]
