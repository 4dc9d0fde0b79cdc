"""Resolve model arguments (names or objects) and their parameters.

A model argument is one of

* a spin-model object: anything with the ``SpinModel`` interface of
  :mod:`mantid_exp2sim.simulate.spin_models` (at least ``parameter_names`` and the methods
  ``validate`` and ``spectrum_kinematic``; see :data:`MODEL_CONTRACT`);
* a registered model name: the built-in ones (``"goodenough"``, ``"dimer"``,
  ``"square_j1j2"``) and those other installed packages register under the entry-point group
  ``mantid_exp2sim.spin_models`` (see ``spin_models.list_models()``);
* an import reference ``"package.module:attribute"`` naming a model object or a model class
  (instantiated without arguments). Import references let users simulate their own models with
  every tool here, the command line and worker processes included.

Nothing named by an import reference is called unless it is a class with the model's
methods: a reference to a plain function (``os:getcwd``) or any other object is refused
before anything is called. A function that builds a model (a factory) is accepted only when
a package registers it under the entry-point group, which is an explicit act of its author.
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping

import numpy as np

from ..errors import InputDataError, format_error
from .model_contract import HOW_TO, MODEL_CONTRACT, check_model, describe, missing_contract

__all__ = [
    "MODEL_CONTRACT",
    "check_model",
    "missing_contract",
    "resolve_model",
    "resolve_params",
    "param_dict",
    "param_vector",
    "model_name",
]

def _load_reference(spec: str) -> Any:
    """The model a ``module:attribute`` reference names; only a model class is ever called."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError) as exc:
        raise InputDataError(
            format_error(
                f"Model reference {spec!r} cannot be imported",
                reason=f"{type(exc).__name__}: {exc}",
                fix="give 'package.module:attribute' of an importable model object or model class",
            )
        ) from exc
    if isinstance(obj, type):
        missing = missing_contract(obj, cls=True)
        if missing:
            raise InputDataError(
                format_error(
                    f"Model reference {spec!r} is not a spin model",
                    reason=f"{describe(obj)} lacks {', '.join(missing)}, so it is not instantiated",
                    fix=HOW_TO,
                )
            )
        try:
            obj = obj()
        except Exception as exc:  # noqa: BLE001 - a user class: report whatever it raised
            raise InputDataError(
                format_error(
                    f"Model class {spec!r} cannot be instantiated without arguments",
                    reason=f"{type(exc).__name__}: {exc}",
                    fix="give it defaults for every constructor argument, or name a model object",
                )
            ) from exc
        return check_model(obj, f"Model reference {spec!r}")
    if missing_contract(obj):
        raise InputDataError(
            format_error(
                f"Model reference {spec!r} is not a spin model",
                reason=f"it names {describe(obj)}, which lacks {', '.join(missing_contract(obj))}; "
                "import references are never called unless they name a model class",
                fix=HOW_TO,
            )
        )
    return obj


def resolve_model(model: Any) -> Any:
    """A model object from a model, a registered name or a ``module:attribute`` reference.

    Raises
    ------
    InputDataError
        Unknown name, unimportable reference, or an object that is not a spin model (checked
        before anything it names is called).
    """
    if not isinstance(model, str):
        return check_model(model, "model")
    if ":" in model:
        return _load_reference(model)
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
