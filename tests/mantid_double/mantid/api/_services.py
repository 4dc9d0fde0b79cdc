"""Singletons of the double: AnalysisDataService, AlgorithmFactory, AlgorithmManager, WorkspaceFactory."""

from __future__ import annotations

from typing import Any

from ._workspaces import TableWorkspace, Workspace

__all__ = ["AlgorithmFactory", "AlgorithmManager", "AnalysisDataService", "WorkspaceFactory", "mtd"]


class AnalysisDataServiceImpl:
    """Named workspaces (``mtd``)."""

    def __init__(self) -> None:
        self._items: dict[str, Workspace] = {}

    @staticmethod
    def _check_name(name: str) -> str:
        if not isinstance(name, str) or not name.strip():
            raise ValueError("Invalid object name ''. Names cannot be empty")
        return name

    def add(self, name: str, ws: Workspace) -> None:
        self._check_name(name)
        if name in self._items:
            raise RuntimeError(f"AnalysisDataService::add - A workspace called {name} already exists")
        self.addOrReplace(name, ws)

    def addOrReplace(self, name: str, ws: Workspace) -> None:
        self._check_name(name)
        if not isinstance(ws, Workspace):
            raise TypeError("only workspaces can be stored")
        old = self._items.get(name)
        if old is not None and old is not ws:
            old._ads_name = ""
        ws._ads_name = name
        self._items[name] = ws

    def retrieve(self, name: str) -> Workspace:
        if name not in self._items:
            raise KeyError(f"'{name}' does not exist.")
        return self._items[name]

    def __getitem__(self, name: str) -> Workspace:
        return self.retrieve(name)

    def doesExist(self, name: str) -> bool:
        return name in self._items

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def remove(self, name: str) -> None:
        ws = self._items.pop(name, None)
        if ws is not None:
            ws._ads_name = ""

    def clear(self) -> None:
        for name in list(self._items):
            self.remove(name)

    def getObjectNames(self) -> list[str]:
        return sorted(self._items)

    def size(self) -> int:
        return len(self._items)

    def __len__(self) -> int:
        return len(self._items)


AnalysisDataService = AnalysisDataServiceImpl()
mtd = AnalysisDataService


class AlgorithmFactoryImpl:
    """Registry of algorithm classes by (name, version)."""

    def __init__(self) -> None:
        self._classes: dict[tuple[str, int], type] = {}

    def subscribe(self, cls_or_instance: Any) -> None:
        from ._algorithm import Algorithm, cpp_call

        cls = cls_or_instance if isinstance(cls_or_instance, type) else type(cls_or_instance)
        if not (isinstance(cls, type) and issubclass(cls, Algorithm)):
            raise ValueError("Can only subscribe classes derived from Algorithm (PythonAlgorithm)")
        probe = cls()
        version = int(cpp_call(probe, "version", 1))
        # An existing registration with the same name and version is overwritten.
        self._classes[(cls.__name__, version)] = cls

    def exists(self, name: str, version: int = -1) -> bool:
        if version == -1:
            return any(n == name for n, _ in self._classes)
        return (name, version) in self._classes

    def highestVersion(self, name: str) -> int:
        versions = [v for n, v in self._classes if n == name]
        if not versions:
            raise RuntimeError(f"Algorithm not registered {name}")
        return max(versions)

    def unsubscribe(self, name: str, version: int) -> None:
        if (name, version) not in self._classes:
            raise RuntimeError(f"Algorithm {name} version {version} is not registered")
        del self._classes[(name, version)]

    def getRegisteredAlgorithms(self, include_hidden: bool = False) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for n, v in sorted(self._classes):
            out.setdefault(n, []).append(v)
        return out

    def _class(self, name: str, version: int = -1) -> type:
        if version == -1:
            version = self.highestVersion(name)
        if (name, version) not in self._classes:
            raise RuntimeError(f"Algorithm not registered {name} version {version}")
        return self._classes[(name, version)]


AlgorithmFactory = AlgorithmFactoryImpl()


class AlgorithmManagerImpl:
    """Creates algorithm instances by name."""

    def create(self, name: str, version: int = -1):
        alg = self.createUnmanaged(name, version)
        alg.initialize()
        return alg

    def createUnmanaged(self, name: str, version: int = -1):
        return AlgorithmFactory._class(name, version)()


AlgorithmManager = AlgorithmManagerImpl()


class WorkspaceFactoryImpl:
    def createTable(self, tableType: str = "TableWorkspace") -> TableWorkspace:
        if tableType != "TableWorkspace":
            raise ValueError(f"the test double only creates TableWorkspace, not {tableType}")
        return TableWorkspace()


WorkspaceFactory = WorkspaceFactoryImpl()
