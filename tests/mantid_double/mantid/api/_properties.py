"""Workspace and file properties of the double."""

from __future__ import annotations

import os
from typing import Any

from ..kernel import Direction, IValidator, Property
from ._workspaces import IMDHistoWorkspace, IMDWorkspace, ITableWorkspace, MatrixWorkspace, Workspace

__all__ = [
    "FileAction",
    "FileProperty",
    "IMDHistoWorkspaceProperty",
    "IMDWorkspaceProperty",
    "ITableWorkspaceProperty",
    "IWorkspaceProperty",
    "LockMode",
    "MatrixWorkspaceProperty",
    "PropertyMode",
    "WorkspaceProperty",
]


class PropertyMode:
    Mandatory = 0
    Optional = 1


class LockMode:
    Lock = 0
    NoLock = 1


class FileAction:
    Save = 0
    OptionalSave = 1
    Load = 2
    OptionalLoad = 3
    Directory = 4
    OptionalDirectory = 5


class IWorkspaceProperty:
    """Marker base of all workspace properties (simpleapi tests ``isinstance`` on it)."""


class WorkspaceProperty(Property, IWorkspaceProperty):
    """A workspace, given as an object or as a name in the ADS."""

    _ws_type: type = Workspace
    _type_name = "Workspace"

    def __init__(
        self,
        name: str,
        defaultValue: str,
        direction: int,
        optional: int = PropertyMode.Mandatory,
        locking: int = LockMode.Lock,
        validator: IValidator | None = None,
    ):
        super().__init__(name, direction, validator)
        self._ws_name = str(defaultValue)
        self._ws: Workspace | None = None
        self._optional = optional == PropertyMode.Optional

    def isOptional(self) -> bool:
        return self._optional

    def isLocking(self) -> bool:
        return True

    def _ads(self):
        from ._services import AnalysisDataService

        return AnalysisDataService

    def _get(self) -> Any:
        if self._ws is not None:
            return self._ws
        if self._ws_name and self._direction != Direction.Output:
            ads = self._ads()
            if ads.doesExist(self._ws_name):
                return ads.retrieve(self._ws_name)
        return None

    def _set(self, value: Any) -> None:
        if value is None:
            self._ws, self._ws_name = None, ""
            return
        if not isinstance(value, Workspace):
            raise ValueError(f"Attempt to assign to property ({self._name}) of incorrect type")
        if not isinstance(value, self._ws_type):
            raise ValueError(f"Workspace {value.name() or '(unnamed)'} is not of the correct type ({self._type_name})")
        self._ws = value
        # Mantid keeps the name an output property was given; an input takes the
        # workspace's ADS name when it has one.
        if self._direction == Direction.Input and value.name():
            self._ws_name = value.name()

    def _set_str(self, text: str) -> None:
        self._ws = None
        self._ws_name = str(text).strip()

    def _as_str(self) -> str:
        return self._ws_name

    def _is_default(self) -> bool:
        return self._ws is None and not self._ws_name

    def _is_valid(self) -> str:
        if self._direction == Direction.Output:
            if not self._ws_name and self._ws is None and not self._optional:
                return "Enter a name for the Output workspace"
            return ""
        if self._ws is None and not self._ws_name:
            return "" if self._optional else f"Enter a name for the {'InOut' if self._direction == Direction.InOut else 'Input'} workspace"
        ws = self._get()
        if ws is None:
            return f'Workspace "{self._ws_name}" was not found in the Analysis Data Service'
        if not isinstance(ws, self._ws_type):
            return f"Workspace {self._ws_name} is not of the correct type ({self._type_name})"
        if self._validator is not None:
            return self._validator._check(ws)
        return ""


class MatrixWorkspaceProperty(WorkspaceProperty):
    _ws_type = MatrixWorkspace
    _type_name = "MatrixWorkspace"


class IMDWorkspaceProperty(WorkspaceProperty):
    _ws_type = IMDWorkspace
    _type_name = "IMDWorkspace"


class IMDHistoWorkspaceProperty(WorkspaceProperty):
    _ws_type = IMDHistoWorkspace
    _type_name = "IMDHistoWorkspace"


class ITableWorkspaceProperty(WorkspaceProperty):
    _ws_type = ITableWorkspace
    _type_name = "TableWorkspace"


class FileProperty(Property):
    """A file name; ``.value`` is the absolute path (the double resolves against the cwd)."""

    def __init__(self, name: str, defaultValue: str, action: int, extensions: Any = None, direction: int = Direction.Input):
        super().__init__(name, direction)
        self._action = int(action)
        if extensions is None:
            extensions = []
        elif isinstance(extensions, str):
            extensions = [extensions]
        self._extensions = [str(e) for e in extensions]
        self._default = str(defaultValue)
        self._path = self._resolve(self._default)

    @staticmethod
    def _resolve(text: str) -> str:
        return os.path.abspath(os.path.expanduser(text)) if text.strip() else ""

    def _get(self) -> str:
        return self._path

    def _set(self, value: Any) -> None:
        if not isinstance(value, (str, os.PathLike)):
            raise ValueError(f"Attempt to assign to property ({self._name}) of incorrect type")
        self._path = self._resolve(os.fspath(value))

    def _set_str(self, text: str) -> None:
        self._path = self._resolve(text)

    def _as_str(self) -> str:
        return self._path

    def _is_default(self) -> bool:
        return self._path == self._resolve(self._default)

    def getExtensions(self) -> list[str]:
        return list(self._extensions)

    def _is_valid(self) -> str:
        path = self._path
        optional = self._action in (FileAction.OptionalLoad, FileAction.OptionalSave, FileAction.OptionalDirectory)
        if not path:
            return "" if optional else "No file specified."
        if self._action in (FileAction.Load, FileAction.OptionalLoad):
            return "" if os.path.isfile(path) else f'File "{path}" not found'
        if self._action in (FileAction.Directory, FileAction.OptionalDirectory):
            return "" if os.path.isdir(path) else f'Directory "{path}" not found'
        parent = os.path.dirname(path) or "."
        return "" if os.path.isdir(parent) and os.access(parent, os.W_OK) else f'Cannot write to "{path}"'
