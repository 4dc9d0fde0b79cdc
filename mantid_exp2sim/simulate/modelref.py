"""Resolve model arguments (names or objects) and their parameters.

A model argument is a spin-model object (anything with the ``SpinModel`` interface of
:mod:`mantid_exp2sim.simulate.spin_models`), a registered model name (``"goodenough"``,
``"dimer"``, see ``spin_models.list_models()``) or an import reference
``"package.module:attribute"`` naming a model object, a model class (instantiated without
arguments) or a function returning a model. Import references let users simulate their own
models with every tool here, the command line and worker processes included.
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping

import numpy as np

from ..errors import InputDataError, format_error

__all__ = ["resolve_model", "resolve_params", "param_dict", "param_vector", "model_name"]


def _load_reference(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise InputDataError(
            format_error(
                f"Model reference {spec!r} cannot be imported",
                reason=f"{type(exc).__name__}: {exc}",
                fix="give 'package.module:attribute' of an importable model, class or factory",
            )
        ) from exc
    if callable(obj) and not hasattr(obj, "spectrum_kinematic"):
        obj = obj()
    elif isinstance(obj, type):
        obj = obj()
    return obj


def resolve_model(model: Any) -> Any:
    """A model object from a model, a registered name or a ``module:attribute`` reference."""
    if not isinstance(model, str):
        missing = [a for a in ("parameter_names", "spectrum_kinematic", "validate") if not hasattr(model, a)]
        if missing:
            raise InputDataError(
                format_error(
                    "model is not a spin model",
                    reason=f"{type(model).__name__} lacks {missing}",
                    fix="pass a model name (e.g. 'goodenough', 'dimer') or a SpinModel",
                )
            )
        return model
    if ":" in model:
        return resolve_model(_load_reference(model))
    try:
        from .spin_models import get_model
    except ImportError as exc:  # pragma: no cover - only before the spin models exist
        raise InputDataError(
            format_error(
                f"Model {model!r} cannot be looked up",
                reason=f"the spin-model registry is not importable ({exc})",
                fix="pass a model object or a 'module:attribute' reference",
            )
        ) from exc
    return get_model(model)


def model_name(model: Any) -> str:
    """The model's name (``.name``, else its class name)."""
    return str(getattr(model, "name", type(model).__name__))


def param_dict(model: Any, params: Any) -> dict[str, float]:
    """Parameters as ``{name: value}`` in the model's ``parameter_names`` order."""
    names = list(model.parameter_names)
    if isinstance(params, Mapping):
        unknown = sorted(set(params) - set(names))
        missing = [n for n in names if n not in params]
        if unknown or missing:
            raise InputDataError(
                format_error(
                    f"Parameters do not match model {model_name(model)!r}",
                    reason=f"unknown {unknown}, missing {missing}; the model has {names}",
                )
            )
        return {n: float(params[n]) for n in names}
    vec = np.asarray(params, dtype=float).reshape(-1)
    if vec.size != len(names):
        raise InputDataError(
            format_error(
                f"Parameters do not match model {model_name(model)!r}",
                reason=f"{vec.size} values for {len(names)} parameters {names}",
            )
        )
    return {n: float(v) for n, v in zip(names, vec)}


def param_vector(model: Any, params: Any) -> np.ndarray:
    """Parameters as a float64 vector in ``parameter_names`` order."""
    return np.array(list(param_dict(model, params).values()), dtype=np.float64)


def resolve_params(model: Any, params: Any) -> Any:
    """The parameters to pass to the model: ``model.defaults`` when None, validated.

    ``model.validate`` raises ``ValueError`` for out-of-range values; if it returns a
    normalised copy (a mapping or an array), that copy is used.
    """
    if params is None:
        params = model.defaults
    param_dict(model, params)  # shape / names check with a clear message
    checked = model.validate(params)
    if isinstance(checked, (Mapping, np.ndarray)):
        return checked
    return params
