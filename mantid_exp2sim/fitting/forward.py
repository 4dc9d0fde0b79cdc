"""Forward models: what a fit compares with the data, as a function of the parameters.

A forward model has ``name``, ``parameter_names``, ``defaults`` (the published values, the
first start), ``ranges`` (``{name: (low, high)}``: the fit's bounds) and
``evaluate(theta) -> array`` giving the noise-free model spectrum (any intensity unit: the
fit's per-group scale absorbs it) for a parameter vector ``theta`` in ``parameter_names``
order, NaN where the model has no value. Two implementations:

* :class:`SpinWaveForward`: a spin model of the simulator on a plan (mosaic, volume or
  slice), through the cached :class:`~.evaluator.PlanEvaluator`;
* :class:`FunctionForward`: any Python function, for toy models and tests.

``is_stable(theta)`` (optional) tells the start design whether a parameter set is usable.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import InputDataError, format_error
from ..simulate.modelref import model_name, resolve_model
from .evaluator import PlanEvaluator

__all__ = ["ForwardModel", "SpinWaveForward", "FunctionForward", "check_ranges"]


@runtime_checkable
class ForwardModel(Protocol):
    """What the fitting engine needs from a model (see the module notes)."""

    name: str
    parameter_names: tuple[str, ...]
    defaults: Mapping[str, float]
    ranges: Mapping[str, tuple[float, float]]

    def evaluate(self, theta: np.ndarray) -> np.ndarray:  # pragma: no cover - protocol
        ...


def check_ranges(name: str, names: Sequence[str], defaults: Mapping[str, float],
                 ranges: Mapping[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """Validated ``{parameter: (low, high)}`` of a model: finite, low < high, every name present."""
    out: dict[str, tuple[float, float]] = {}
    for p in names:
        if p not in ranges or p not in defaults:
            raise InputDataError(format_error(
                f"Model {name!r} has no range or default for parameter {p!r}",
                reason=f"ranges {sorted(ranges)}, defaults {sorted(defaults)}",
                fix="give every parameter a (low, high) range and a default value"))
        lo, hi = (float(v) for v in ranges[p])
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            raise InputDataError(format_error(
                f"Range of parameter {p!r} of model {name!r} is invalid",
                reason=f"got ({lo}, {hi}); need finite low < high", fix="fix the model's ranges"))
        out[p] = (lo, hi)
    return out


class SpinWaveForward:
    """A spin model of the simulator on one plan: the convolved spectrum for parameters.

    Parameters
    ----------
    model
        Spin model, registered name (``"goodenough"``, ``"dimer"``, ...) or
        ``module:attribute`` reference.
    plan
        The simulator plan of the measured spectrum's representation (e.g.
        ``plan_mosaic(mask=...)``); only its unmasked bins are computed.
    resolution
        As :func:`~mantid_exp2sim.simulate.simulate_plan`.
    """

    def __init__(self, model: Any, plan: Any, *, resolution: Any = "builtin") -> None:
        self.model = resolve_model(model)
        self.name = model_name(self.model)
        self.parameter_names = tuple(self.model.parameter_names)
        self.defaults = {k: float(self.model.defaults[k]) for k in self.parameter_names}
        self.ranges = check_ranges(self.name, self.parameter_names, self.defaults, self.model.ranges)
        self.plan = plan
        self.evaluator = PlanEvaluator(self.model, plan, resolution=resolution)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the spectra (the plan's)."""
        return self.evaluator.shape

    def evaluate(self, theta: np.ndarray) -> np.ndarray:
        """Convolved spectrum at ``theta`` (plan shape, NaN where masked)."""
        return self.evaluator(np.asarray(theta, dtype=float))

    def is_stable(self, theta: np.ndarray) -> bool:
        """True when the ordered state is stable at ``theta`` (models without the test: True)."""
        test = getattr(self.model, "is_stable", None)
        return bool(test(np.asarray(theta, dtype=float))) if callable(test) else True


class FunctionForward:
    """A forward model from a plain function (toy models, tests, user models).

    Parameters
    ----------
    name
        Model name.
    parameter_names
        Ordered names.
    defaults
        ``{name: value}``: the first start of a fit.
    ranges
        ``{name: (low, high)}``: the fit's bounds.
    function
        ``function(theta) -> array`` of the data's shape.
    stable
        Optional ``stable(theta) -> bool`` for the start design.
    """

    def __init__(self, name: str, parameter_names: Sequence[str], defaults: Mapping[str, float],
                 ranges: Mapping[str, tuple[float, float]], function: Callable[[np.ndarray], np.ndarray],
                 stable: Callable[[np.ndarray], bool] | None = None) -> None:
        self.name = str(name)
        self.parameter_names = tuple(parameter_names)
        self.defaults = {k: float(defaults[k]) for k in self.parameter_names if k in defaults}
        self.ranges = check_ranges(self.name, self.parameter_names, defaults, ranges)
        self._function = function
        self._stable = stable

    def evaluate(self, theta: np.ndarray) -> np.ndarray:
        """The function's value at ``theta`` as a float array."""
        return np.asarray(self._function(np.asarray(theta, dtype=float)), dtype=float)

    def is_stable(self, theta: np.ndarray) -> bool:
        """``stable(theta)`` if given, else True."""
        return True if self._stable is None else bool(self._stable(np.asarray(theta, dtype=float)))
