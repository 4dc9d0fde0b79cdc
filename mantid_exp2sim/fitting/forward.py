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

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import InputDataError, format_error
from ..simulate.measurement_model import MeasurementModel
from ..simulate.modelref import model_name, resolve_model
from .evaluator import PlanEvaluator

__all__ = ["ForwardModel", "SpinWaveForward", "FunctionForward", "WithMeasurement", "MEASUREMENT_RANGES",
           "check_ranges"]

#: Fit ranges of the measurement-model parameters that a fit may free (see :class:`WithMeasurement`).
MEASUREMENT_RANGES: dict[str, tuple[float, float]] = {
    "twin_fraction": (0.0, 1.0),
    "resolution_scale": (0.5, 3.0),
    "mosaic": (0.0, 6.0),
    "damping": (0.0, 0.6),
}


@dataclass(frozen=True)
class WithMeasurement:
    """A spin model inside a measurement model, some of whose settings are fitted.

    Pass it wherever the fitting engine takes a model (``fit_model(data,
    WithMeasurement("goodenough", free=("twin_fraction", "mosaic")))``): the fitted parameters
    are the spin model's followed by ``free`` (in that order), with the ranges of
    :data:`MEASUREMENT_RANGES` (or ``ranges``), starting from the ``measurement``'s values
    (``twin_fraction`` None starts at 0.5). The settings not in ``free`` are held at the
    ``measurement``'s values.

    Parameters
    ----------
    model
        Spin model, registered name or ``module:attribute`` reference.
    measurement
        The :class:`~mantid_exp2sim.simulate.measurement_model.MeasurementModel` (default:
        no effect).
    free
        Names among ``twin_fraction``, ``resolution_scale``, ``mosaic``, ``damping``.
    ranges
        Optional ``{name: (low, high)}`` replacing the default ranges of ``free`` names.
    """

    model: Any
    measurement: MeasurementModel = field(default_factory=MeasurementModel)
    free: tuple[str, ...] = ()
    ranges: Mapping[str, tuple[float, float]] | None = None

    def __post_init__(self) -> None:
        bad = [n for n in self.free if n not in MEASUREMENT_RANGES]
        if bad or len(set(self.free)) != len(self.free):
            raise InputDataError(format_error(
                "free measurement parameters are invalid",
                reason=f"got {list(self.free)}; allowed (each once): {', '.join(MEASUREMENT_RANGES)}",
                fix="e.g. free=('twin_fraction', 'mosaic')"))
        object.__setattr__(self, "free", tuple(self.free))

    def start(self, name: str) -> float:
        """The start value of a measurement parameter (its value in ``measurement``)."""
        v = getattr(self.measurement, name)
        return 0.5 if v is None else float(v)

    def range(self, name: str) -> tuple[float, float]:
        """The fit range of a measurement parameter."""
        r = (self.ranges or {}).get(name, MEASUREMENT_RANGES[name])
        return float(r[0]), float(r[1])


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
        spec = model if isinstance(model, WithMeasurement) else None
        self.spin_model = resolve_model(spec.model if spec is not None else model)
        #: What rebuilds this forward model on another plan (the engine's coarse stage).
        self.model = spec if spec is not None else self.spin_model
        self.measurement = spec.measurement if spec is not None else MeasurementModel()
        self.free_measurement = spec.free if spec is not None else ()
        self.name = model_name(self.spin_model)
        self.n_model = len(self.spin_model.parameter_names)
        self.parameter_names = tuple(self.spin_model.parameter_names) + self.free_measurement
        self.defaults = {k: float(self.spin_model.defaults[k]) for k in self.spin_model.parameter_names}
        ranges = dict(self.spin_model.ranges)
        for n_ in self.free_measurement:
            self.defaults[n_] = spec.start(n_)
            ranges[n_] = spec.range(n_)
        self.ranges = check_ranges(self.name, self.parameter_names, self.defaults, ranges)
        self.plan = plan
        self.evaluator = PlanEvaluator(self.spin_model, plan, resolution=resolution)

    def settings(self, theta: np.ndarray) -> dict[str, Any]:
        """The measurement settings at ``theta`` (held values, with the free ones from ``theta``)."""
        kw = self.measurement.simulate_kwargs()
        kw.pop("resolution_sampling")
        for j, n_ in enumerate(self.free_measurement):
            kw[n_] = float(theta[self.n_model + j])
        return kw

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the spectra (the plan's)."""
        return self.evaluator.shape

    def evaluate(self, theta: np.ndarray) -> np.ndarray:
        """Convolved spectrum at ``theta`` (plan shape, NaN where masked)."""
        theta = np.asarray(theta, dtype=float)
        return self.evaluator(theta[:self.n_model], **self.settings(theta))

    def is_stable(self, theta: np.ndarray) -> bool:
        """True when the ordered state is stable at ``theta`` (models without the test: True)."""
        test = getattr(self.spin_model, "is_stable", None)
        return bool(test(np.asarray(theta, dtype=float)[:self.n_model])) if callable(test) else True


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
