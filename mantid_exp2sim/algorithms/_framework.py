"""What every algorithm of the package shares: the framework methods, the Backend and Device properties.

Mantid calls ``PyInit``, ``PyExec``, ``validateInputs``, ``category``, ``summary``,
``seeAlso`` and ``version`` only when they are in the algorithm's own class body (its
``typeHasAttribute`` looks in ``type(self).__dict__``): inherited from a shared base class they
would be silently ignored. :func:`mantid_algorithm` therefore writes the descriptive ones into
each class's own ``__dict__``. Mantid is imported inside the functions.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Callable, Sequence, TypeVar

from ..errors import format_error

__all__ = [
    "BACKENDS",
    "CATEGORY",
    "DEVICES",
    "declare_engine_properties",
    "engine_issues",
    "engine_options",
    "mantid_algorithm",
]

#: Mantid category of every algorithm (``\\`` separates sub-categories).
CATEGORY = "Inelastic\\MachineLearning"
#: Algorithm property value -> the tasks' ``backend`` / ``device`` argument.
BACKENDS = {"Auto": "auto", "ONNX": "onnx", "PyTorch": "torch"}
DEVICES = {"Auto": "auto", "CPU": "cpu", "GPU": "gpu"}

_Class = TypeVar("_Class", bound=type)


def mantid_algorithm(*, summary: str, see_also: Sequence[str], version: int = 1) -> Callable[[_Class], _Class]:
    """Class decorator: define ``category``, ``summary``, ``seeAlso`` and ``version`` in the class itself.

    Parameters
    ----------
    summary
        One or two sentences for Mantid's algorithm dialog and documentation.
    see_also
        Names of related algorithms.
    version
        The algorithm's version.
    """
    see_also = list(see_also)

    def decorate(cls: _Class) -> _Class:
        def category(self) -> str:
            return CATEGORY

        def summary_(self) -> str:
            return summary

        def seeAlso(self) -> list[str]:  # noqa: N802 - Mantid's name
            return list(see_also)

        def version_(self) -> int:
            return version

        for name, method in (("category", category), ("summary", summary_), ("seeAlso", seeAlso),
                             ("version", version_)):
            method.__name__ = method.__qualname__ = name
            setattr(cls, name, method)
        return cls

    return decorate


def declare_engine_properties(
    alg: Any, backend_doc: str = "Inference engine: Auto (ONNX Runtime if installed, else PyTorch), ONNX or PyTorch."
) -> None:
    """Declare ``Backend`` and ``Device``: where the networks run (the same choices in every algorithm)."""
    from mantid.kernel import StringListValidator

    alg.declareProperty("Backend", "Auto", StringListValidator(list(BACKENDS)), doc=backend_doc)
    alg.declareProperty(
        "Device",
        "Auto",
        StringListValidator(list(DEVICES)),
        doc="Auto (a working GPU if there is one, else the CPU), CPU or GPU.",
    )


def engine_options(alg: Any) -> dict[str, str]:
    """The tasks' ``backend`` and ``device`` arguments from the ``Backend`` and ``Device`` properties."""
    return {
        "backend": BACKENDS[alg.getProperty("Backend").value],
        "device": DEVICES[alg.getProperty("Device").value],
    }


def engine_issues(alg: Any) -> dict[str, str]:
    """``{"Backend": message}`` when the chosen engine's package is not installed, else empty."""
    problem = _backend_problem(engine_options(alg)["backend"])
    return {"Backend": problem} if problem else {}


def _backend_problem(backend: str) -> str:
    """Why the engine ``backend`` (``"auto"``, ``"onnx"``, ``"torch"``) cannot run here, or ""."""
    if backend == "torch" and importlib.util.find_spec("torch") is None:
        return format_error(
            "Backend PyTorch needs the Python package 'torch'",
            reason="it is not installed in Mantid's Python",
            fix="install it with: pip install 'mantid-exp2sim[torch]', or choose ONNX",
        )
    if backend == "onnx" and importlib.util.find_spec("onnxruntime") is None:
        return format_error(
            "Backend ONNX needs the Python package 'onnxruntime'",
            reason="it is not installed in Mantid's Python",
            fix="install it with: pip install onnxruntime (or onnxruntime-gpu), or choose PyTorch",
        )
    return ""
