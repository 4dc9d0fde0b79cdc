"""Algorithm base class, child algorithms and Progress of the double.

The framework sees a Python method only if it is defined in the algorithm's **own**
class body (Mantid's ``typeHasAttribute`` looks in ``type(self).__dict__``), so
``PyInit``/``PyExec``/``validateInputs``/``category``/``summary``/``version``/``seeAlso``
inherited from a Python base class are ignored, as in real Mantid.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from ..kernel import Direction, IValidator, Logger, Property, property_from_default
from ._properties import IWorkspaceProperty, WorkspaceProperty

__all__ = ["Algorithm", "DataProcessorAlgorithm", "Progress", "PythonAlgorithm", "cpp_call"]

_MISSING = object()


def cpp_call(alg: "Algorithm", method: str, default: Any = _MISSING) -> Any:
    """Call ``method`` the way Mantid's C++ AlgorithmAdapter does (own class dict only)."""
    fn = type(alg).__dict__.get(method)
    if fn is None:
        if default is _MISSING:
            raise RuntimeError(f"{type(alg).__name__} has no function named {method}")
        return default
    return fn(alg)


class Algorithm:
    """Base of Python algorithms (``PythonAlgorithm`` is an alias)."""

    def __init__(self) -> None:
        self._props: "OrderedDict[str, Property]" = OrderedDict()
        self._initialized = False
        self._executed = False
        self._child = False
        self._rethrows = False
        self._logging = True
        self._always_store = True
        self._cancel_requested = False
        self._running = False
        self._logger = Logger(type(self).__name__)
        self._progress_fraction = 0.0
        #: (fraction, message) of every progress notification (a test-double convenience).
        self.progress_reports: list[tuple[float, str]] = []
        self._parent: Algorithm | None = None
        self._parent_range = (0.0, 1.0)

    # ------------------------------------------------------------- identity
    def name(self) -> str:
        return type(self).__name__

    def version(self) -> int:
        return int(cpp_call(self, "version", 1))

    def category(self) -> str:
        value = cpp_call(self, "category", "PythonAlgorithms")
        if value == "PythonAlgorithms":
            self._logger.warning(f"Python Algorithm {self.name()} v{self.version()} does not have a category defined.")
        return value

    def categories(self) -> list[str]:
        return self.category().split(";")

    def summary(self) -> str:
        return cpp_call(self, "summary", "")

    def seeAlso(self) -> list[str]:
        value = cpp_call(self, "seeAlso", [])
        if not isinstance(value, list):
            raise TypeError("seeAlso() must return a list of strings")
        return value

    def alias(self) -> str:
        return ""

    def aliasDeprecated(self) -> str:
        return ""

    def helpURL(self) -> str:
        return ""

    def docString(self) -> str:
        lines = [self.summary(), "", "Property descriptions: ", ""]
        for p in self._props.values():
            lines.append(f"{p.name}({'Input' if p.direction == Direction.Input else 'Output'}) {p.documentation}")
        return "\n".join(lines)

    def validateInputs(self) -> dict:
        return {}

    # --------------------------------------------------------------- modes
    def initialize(self) -> None:
        if self._initialized:
            return
        cpp_call(self, "PyInit")
        self._initialized = True

    def isInitialized(self) -> bool:
        return self._initialized

    def isExecuted(self) -> bool:
        return self._executed

    def isRunning(self) -> bool:
        return self._running

    def setChild(self, child: bool) -> None:
        self._child = bool(child)
        self._always_store = not child

    def isChild(self) -> bool:
        return self._child

    def setRethrows(self, rethrows: bool) -> None:
        self._rethrows = bool(rethrows)

    def setAlwaysStoreInADS(self, store: bool) -> None:
        self._always_store = bool(store)

    def setLogging(self, value: bool) -> None:
        self._logging = bool(value)

    def isLogging(self) -> bool:
        return self._logging

    def cancel(self) -> None:
        self._cancel_requested = True

    def log(self) -> Logger:
        return self._logger

    def getLogger(self) -> Logger:
        return self._logger

    # ---------------------------------------------------------- properties
    def declareProperty(self, *args: Any, **kwargs: Any) -> None:
        """Overloads: ``(prop, doc="")``; ``(name, defaultValue, validator=None, doc="",
        direction=Input)``; ``(name, defaultValue, doc="", direction=...)``;
        ``(name, defaultValue, direction=...)``."""
        if args and isinstance(args[0], Property):
            prop = args[0]._clone()
            doc = args[1] if len(args) > 1 else kwargs.pop("doc", "")
            if kwargs:
                raise TypeError(f"declareProperty(prop, doc) got unexpected arguments {sorted(kwargs)}")
        else:
            params = dict(zip(("name", "defaultValue"), args))
            rest = list(args[2:])
            validator, doc, direction = kwargs.pop("validator", None), kwargs.pop("doc", ""), kwargs.pop("direction", Direction.Input)
            for value in rest:
                if isinstance(value, IValidator):
                    validator = value
                elif isinstance(value, str):
                    doc = value
                elif isinstance(value, int):
                    direction = value
                else:
                    raise TypeError(f"declareProperty: unexpected positional argument {value!r}")
            params.update(kwargs)
            if "name" not in params or "defaultValue" not in params:
                raise TypeError("declareProperty needs a name and a defaultValue")
            prop = property_from_default(params["name"], params["defaultValue"], validator, direction)
        if prop.name in self._props:
            raise RuntimeError(f"Property with given name already exists: {prop.name}")
        prop._doc = str(doc)
        self._props[prop.name] = prop

    def _prop(self, name: str) -> Property:
        if name not in self._props:
            raise RuntimeError(f"Unknown property search object {name}")
        return self._props[name]

    def getProperty(self, name: str) -> Property:
        return self._prop(name)

    def getPropertyValue(self, name: str) -> str:
        return self._prop(name).valueAsStr

    def setProperty(self, name: str, value: Any) -> None:
        if isinstance(value, str):
            self.setPropertyValue(name, value)
            return
        prop = self._prop(name)
        prop._assign(prop._set, value)

    def setPropertyValue(self, name: str, value: str) -> None:
        prop = self._prop(name)
        prop._assign(prop._set_str, str(value))

    def existsProperty(self, name: str) -> bool:
        return name in self._props

    def __contains__(self, name: str) -> bool:
        return name in self._props

    def getProperties(self) -> list[Property]:
        return list(self._props.values())

    def propertyCount(self) -> int:
        return len(self._props)

    def orderedProperties(self) -> list[str]:
        return list(self._props)

    def mandatoryProperties(self) -> list[str]:
        return [n for n, p in self._props.items() if p.direction != Direction.Output and p.isValid]

    def outputProperties(self) -> list[str]:
        return [n for n, p in self._props.items() if p.direction == Direction.Output]

    def inoutProperties(self) -> list[str]:
        return [n for n, p in self._props.items() if p.direction == Direction.InOut]

    def setPropertySettings(self, name: str, settings: Any) -> None:
        self._prop(name)._settings.append(settings)

    def setPropertyGroup(self, name: str, group: str) -> None:
        self._prop(name)._group = str(group)

    # ------------------------------------------------------------ children
    def createChildAlgorithm(
        self,
        name: str,
        startProgress: float = -1.0,
        endProgress: float = -1.0,
        enableLogging: bool = True,
        version: int = -1,
        **props: Any,
    ) -> "Algorithm":
        from ._services import AlgorithmManager

        child = AlgorithmManager.createUnmanaged(name, version)
        child.initialize()
        child.setChild(True)
        child.setLogging(enableLogging)
        if 0 <= startProgress < endProgress <= 1:
            child._parent, child._parent_range = self, (float(startProgress), float(endProgress))
        for key, value in props.items():
            if value is not None:
                child.setProperty(key, value)
        return child

    # ----------------------------------------------------------- execution
    def _progress(self, fraction: float, message: str) -> None:
        self._progress_fraction = fraction
        self.progress_reports.append((fraction, message))
        if self._parent is not None:
            lo, hi = self._parent_range
            self._parent._progress(lo + (hi - lo) * fraction, message)

    def _interruption_point(self) -> None:
        if self._cancel_requested or (self._parent is not None and self._parent._cancel_requested):
            # Mantid throws CancelException; inside PyExec it surfaces as KeyboardInterrupt.
            raise KeyboardInterrupt()

    def _output_ws_props(self) -> list[WorkspaceProperty]:
        return [
            p for p in self._props.values()
            if isinstance(p, IWorkspaceProperty) and p.direction in (Direction.Output, Direction.InOut)
        ]

    def execute(self) -> bool:
        if not self._initialized:
            raise RuntimeError(f"Algorithm is not initialised:{self.name()}")
        self._executed = False
        self._cancel_requested = False
        if not self._always_store:
            for p in self._output_ws_props():
                if p.direction == Direction.Output and not p.valueAsStr and not p.isOptional():
                    p._set_str(f"__TMP{id(p):x}")
        invalid = {n: p.isValid for n, p in self._props.items() if p.isValid}
        if invalid:
            for n, msg in invalid.items():
                self._logger.error(f"Invalid value for {n}: {msg}")
            raise RuntimeError("Some invalid Properties found")
        try:
            raw = cpp_call(self, "validateInputs", {})
        except Exception as exc:  # noqa: BLE001 - Mantid turns any Python error into RuntimeError
            raise RuntimeError(str(exc)) from exc
        issues = {}
        for key, msg in dict(raw or {}).items():
            if not isinstance(key, str) or not isinstance(msg, str):
                self._logger.error("In validateInputs(self): Invalid type for key/value pair detected in dict.")
                continue
            if key not in self._props:
                self._logger.warning(f"validateInputs() references non-existant property \"{key}\"")
                continue
            issues[key] = msg
        if issues:
            for key, msg in issues.items():
                self._logger.error(f"Invalid value for {key}: {msg}")
            lines = "".join(f"\n {k}: {v}" for k, v in issues.items())
            raise RuntimeError(f"Some invalid Properties found: {lines}")
        self._running = True
        try:
            cpp_call(self, "PyExec")
            self._interruption_point()
        except KeyboardInterrupt:
            self._logger.error(f"{self.name()}: Execution cancelled by user.")
            raise
        except Exception as exc:  # noqa: BLE001
            if self._child or self._rethrows:
                raise RuntimeError(f"{exc}") from exc
            self._logger.error(f"Error in execution of algorithm {self.name()}:\n{exc}")
            return False
        finally:
            self._running = False
        if self._always_store:
            from ._services import AnalysisDataService

            for p in self._output_ws_props():
                ws = p.value
                if ws is not None and p.valueAsStr:
                    AnalysisDataService.addOrReplace(p.valueAsStr, ws)
        self._executed = True
        return True


PythonAlgorithm = Algorithm


class DataProcessorAlgorithm(Algorithm):
    """Algorithm with data-reduction helpers (only the base behaviour is modelled)."""


class Progress:
    """Progress reporting; every report is a cancellation point (raises KeyboardInterrupt)."""

    def __init__(self, alg: Algorithm, start: float, end: float, nreports: int):
        if not (0.0 <= start < end <= 1.0):
            raise ValueError(f"Progress range must satisfy 0 <= start < end <= 1, got start={start}, end={end}")
        self._alg = alg
        self._start, self._end = float(start), float(end)
        self._numSteps = max(int(nreports), 1)
        self._i = 0
        self._last_reported = 0
        self._notify_pct = 1.0
        self._update_notify()

    def _update_notify(self) -> None:
        self._notify = int(self._numSteps * self._notify_pct / 100.0 / (self._end - self._start))

    def _do_report(self, message: str) -> None:
        frac = self._start + (self._end - self._start) * min(self._i, self._numSteps) / self._numSteps
        self._alg._progress(frac, message)
        self._alg._interruption_point()

    def report(self, *args: Any) -> None:
        """``report()``, ``report(msg)`` advance one step; ``report(i, msg)`` sets the position."""
        if len(args) == 2:
            self._i, message = int(args[0]), str(args[1])
        elif len(args) == 1:
            self._i, message = self._i + 1, str(args[0])
        elif not args:
            self._i, message = self._i + 1, ""
        else:
            raise TypeError("report(), report(msg) or report(i, msg)")
        if self._i - self._last_reported < self._notify:
            return
        self._last_reported = self._i
        self._do_report(message)

    def reportIncrement(self, inc: int, msg: str = "") -> None:
        self._i += int(inc)
        if self._i - self._last_reported < self._notify:
            return
        self._last_reported = self._i
        self._do_report(str(msg))

    def setNumSteps(self, nsteps: int) -> None:
        self._numSteps = max(int(nsteps), 1)
        self._update_notify()

    def resetNumSteps(self, nsteps: int, start: float, end: float) -> None:
        self._start, self._end = float(start), float(end)
        self._i = self._last_reported = 0
        self.setNumSteps(nsteps)

    def setNotifyStep(self, notifyStepPct: float) -> None:
        self._notify_pct = float(notifyStepPct)
        self._update_notify()
