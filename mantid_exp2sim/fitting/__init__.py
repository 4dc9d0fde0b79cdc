"""Fitting spin-wave models to measured spectra (Mantid-free core).

Public API:

* :func:`fit_model` / :func:`fit_models`: weighted least squares of a spectrum (mosaic,
  volume or slice) against one or several models through the simulator, with per-Ei
  nuisances solved by variable projection, several starts and errors from the Jacobian
  (:mod:`.engine`); :class:`FitResult` (:mod:`.result`);
* :func:`compare_models` and :class:`ModelComparison` (:mod:`.compare`): chi-square, AIC,
  BIC and a plain statement, including when the models differ by less than the systematic
  misfit;
* :func:`prepare_data` and :class:`FitData` (:mod:`.data`), :func:`estimate_sigma`
  (:mod:`.weights`): the data, their errors (given or estimated from the counts);
* forward models (:mod:`.forward`): :class:`SpinWaveForward`, :class:`FunctionForward`;
  :class:`PlanEvaluator` (:mod:`.evaluator`): one simulator plan evaluated fast for many
  parameter sets;
* :class:`NuisanceModel` (:mod:`.nuisance`), :func:`design_starts` (:mod:`.starts`).

See docs/fitting.md.
"""

from .compare import ModelComparison, compare_models
from .data import FitData, coarsen, prepare_data
from .engine import CENSORED_ZERO_FRACTION, DEFAULTS, fit_model, fit_models
from .evaluator import PlanEvaluator
from .forward import MEASUREMENT_RANGES, ForwardModel, FunctionForward, SpinWaveForward, WithMeasurement
from .nuisance import NuisanceModel
from .result import FitResult, StartRecord
from .starts import Candidate, design_starts
from .weights import estimate_sigma, sigma_from_errors

__all__ = [
    "fit_model",
    "fit_models",
    "DEFAULTS",
    "CENSORED_ZERO_FRACTION",
    "FitResult",
    "StartRecord",
    "compare_models",
    "ModelComparison",
    "prepare_data",
    "FitData",
    "coarsen",
    "estimate_sigma",
    "sigma_from_errors",
    "ForwardModel",
    "SpinWaveForward",
    "WithMeasurement",
    "MEASUREMENT_RANGES",
    "FunctionForward",
    "PlanEvaluator",
    "NuisanceModel",
    "design_starts",
    "Candidate",
]
