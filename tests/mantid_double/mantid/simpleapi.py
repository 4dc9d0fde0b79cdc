"""Test double of ``mantid.simpleapi``: one function per registered algorithm.

As in Mantid: functions are generated on import for every registered algorithm and
never rescanned; ``_create_algorithm_function(name, version, algm_object)`` adds one
later. Calls made inside a ``PyExec`` become child algorithms. Failures raise
``RuntimeError("Name-vN: msg")``; a missing mandatory argument raises ``TypeError``.

Unlike Mantid, the double cannot read the name on the left of ``ws = Alg(...)``:
pass ``OutputWorkspace=...`` (or ``StoreInADS=False``).
"""

from __future__ import annotations

import inspect
from collections import OrderedDict, namedtuple
from typing import Any

from mantid.api import (  # noqa: F401  (simpleapi re-exports the API)
    AlgorithmFactory,
    AlgorithmManager,
    AnalysisDataService,
    FileAction,
    FileProperty,
    IMDHistoWorkspace,
    ITableWorkspace,
    Progress,
    PythonAlgorithm,
    WorkspaceFactory,
    mtd,
)
from mantid.api._properties import IWorkspaceProperty
from mantid.kernel import DataItem, Direction, config, logger  # noqa: F401

_STORE_KEYWORD = "StoreInADS"
_LOGGING_KEYWORD = "EnableLogging"


def _find_parent_pythonalgorithm(frame: Any):
    """The ``self`` of the nearest ``PyExec`` frame on the stack, or None."""
    while frame is not None:
        if frame.f_code.co_name == "PyExec":
            return frame.f_locals.get("self")
        frame = frame.f_back
    return None


def _create_algorithm_object(name: str, version: int = -1, startProgress=None, endProgress=None):
    parent = _find_parent_pythonalgorithm(inspect.currentframe())
    if parent is not None:
        kwargs: dict[str, Any] = {"version": version}
        if startProgress is not None and endProgress is not None:
            kwargs["startProgress"], kwargs["endProgress"] = float(startProgress), float(endProgress)
        alg = parent.createChildAlgorithm(name, **kwargs)
    else:
        alg = AlgorithmManager.create(name, version)
    alg.setRethrows(True)
    return alg


def set_properties(alg: Any, *args: Any, **kwargs: Any) -> None:
    """Set keyword properties, then positional ones in mandatory-property order."""

    def do_set(key: str, value: Any) -> None:
        if value is None:
            return
        try:
            if isinstance(value, DataItem) and value.name():
                alg.setPropertyValue(key, value.name())
            else:
                alg.setProperty(key, value)
        except (RuntimeError, TypeError, ValueError) as exc:
            raise exc.__class__(f'Problem setting "{key}" in {alg.name()}-v{alg.version()}: {exc}') from exc

    mandatory = alg.mandatoryProperties() if args else []
    for key, value in kwargs.items():
        if key in mandatory:
            mandatory.remove(key)
        do_set(key, value)
    for key, value in zip(mandatory, args):
        do_set(key, value)


def _gather_returns(func_name: str, alg: Any):
    retvals: "OrderedDict[str, Any]" = OrderedDict()
    for name in alg.outputProperties():
        prop = alg.getProperty(name)
        if isinstance(prop, IWorkspaceProperty):
            value = prop.value
            if value is None and prop.valueAsStr in AnalysisDataService:
                value = AnalysisDataService[prop.valueAsStr]
            if value is not None:
                retvals[name] = value
        else:
            retvals[name] = prop.value
    if not retvals:
        return None
    ret = namedtuple(func_name + "_returns", retvals.keys())(**retvals)
    return ret[0] if len(retvals) == 1 else ret


def _create_algorithm_function(name: str, version: int, algm_object: Any):
    """Make ``name`` callable from this module; returns the function."""

    def algorithm_function(*args: Any, **kwargs: Any):
        _version = kwargs.pop("Version", version)
        start = kwargs.pop("startProgress", None)
        end = kwargs.pop("endProgress", None)
        alg = _create_algorithm_object(name, _version, start, end)
        parent = _find_parent_pythonalgorithm(inspect.currentframe())
        alg.setLogging(kwargs.pop(_LOGGING_KEYWORD, parent.isLogging() if parent is not None else True))
        alg.setAlwaysStoreInADS(kwargs.pop(_STORE_KEYWORD, True))
        set_properties(alg, *args, **kwargs)
        try:
            alg.execute()
        except RuntimeError as exc:
            if exc.args and exc.args[0] == "Some invalid Properties found":
                _check_mandatory_args(name, alg, exc, *args, **kwargs)
            raise RuntimeError(f"{alg.name()}-v{alg.version()}: {exc}") from exc
        return _gather_returns(name, alg)

    algorithm_function.__name__ = name
    algorithm_function.__qualname__ = name
    try:
        algorithm_function.__doc__ = algm_object.summary()
    except Exception:  # noqa: BLE001 - docs are best effort, as in Mantid
        algorithm_function.__doc__ = None
    globals()[name] = algorithm_function
    return algorithm_function


def _check_mandatory_args(name: str, alg: Any, error: Exception, *args: Any, **kwargs: Any) -> None:
    missing = [p for p in alg.mandatoryProperties() if p not in kwargs][len(args):]
    missing += [
        p for p in alg.outputProperties()
        if isinstance(alg.getProperty(p), IWorkspaceProperty) and alg.getProperty(p).isValid
    ]
    if missing:
        raise TypeError(
            f"{missing} argument(s) not supplied to {name} (the Mantid test double cannot take the "
            "output name from the left-hand side: pass OutputWorkspace=...)"
        )
    raise RuntimeError(str(error))


def _translate() -> None:
    for alg_name, versions in AlgorithmFactory.getRegisteredAlgorithms(True).items():
        highest = max(versions)
        _create_algorithm_function(alg_name, highest, AlgorithmManager.createUnmanaged(alg_name, highest))


_translate()
