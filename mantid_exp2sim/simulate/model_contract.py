"""The contract every spin model meets, and the check of an object against it.

Used by :mod:`.spin_models` (entry-point models) and :mod:`.modelref` (model arguments);
it imports neither, so the two do not import each other.
"""

from __future__ import annotations

from typing import Any

from ..errors import InputDataError, format_error

__all__ = ["HOW_TO", "MODEL_CONTRACT", "check_model", "describe", "missing_contract"]

#: What every spin model has: attributes, then methods (which must be callable).
MODEL_CONTRACT = ("parameter_names", "validate", "spectrum_kinematic")
_METHODS = ("validate", "spectrum_kinematic")

HOW_TO = (
    "give a registered model name, a model object or a model class ('package.module:ModelClass'), "
    "or register a model factory under the entry-point group 'mantid_exp2sim.spin_models'"
)


def missing_contract(obj: Any, *, cls: bool = False) -> list[str]:
    """The parts of :data:`MODEL_CONTRACT` that ``obj`` lacks (empty: it is a spin model).

    Parameters
    ----------
    obj
        A model object, or a class when ``cls`` is True (only the methods are checked then,
        since attributes may be set by ``__init__``).
    """
    names = _METHODS if cls else MODEL_CONTRACT
    return [a for a in names if not hasattr(obj, a) or (a in _METHODS and not callable(getattr(obj, a)))]


def describe(obj: Any) -> str:
    """How a message names ``obj``: a class, a callable or another object."""
    if isinstance(obj, type):
        return f"the class {obj.__module__}.{obj.__qualname__}"
    if callable(obj):
        return f"the callable {getattr(obj, '__qualname__', type(obj).__name__)!s} ({type(obj).__name__})"
    return f"a {type(obj).__name__} object"


def check_model(obj: Any, where: str) -> Any:
    """Return ``obj`` if it is a spin model, else raise naming ``where`` it came from.

    Raises
    ------
    InputDataError
        ``obj`` lacks part of :data:`MODEL_CONTRACT`.
    """
    missing = missing_contract(obj)
    if missing:
        raise InputDataError(
            format_error(
                f"{where} is not a spin model",
                reason=f"{describe(obj)} lacks {', '.join(missing)}",
                fix=HOW_TO,
            )
        )
    return obj
