"""Comparing models fitted to the same data: chi-square, AIC, BIC and a plain statement.

For the models' results (same data, same weights: :attr:`FitResult.data_key` must agree),
with ``best`` the model of lowest AIC and ``second`` the next one:

* ``delta_chi2``, ``delta_aic``, ``delta_bic``: each model's value minus the lowest;
* ``akaike_weight``: ``exp(-delta_aic / 2)`` normalised over the models (the relative
  likelihood of each model being the better approximation);
* **strength** of the preference, from ``delta_bic`` of the second model (Kass & Raftery
  1995): < 2 "not worth more than a bare mention", 2-6 "positive", 6-10 "strong", > 10 "very
  strong";
* **systematic misfit** of the best fit: ``excess = chi2_best - dof_best``, the chi-square
  above what noise alone gives on average (the expectation of chi-square for a correct
  model with correct errors is its ``dof``, with standard deviation ``sqrt(2 dof)``). The fit
  has a significant systematic misfit when ``excess > 2 sqrt(2 dof_best)``.
* **"The models differ by less than the fit's systematic misfit"** is stated when the misfit
  is significant and ``chi2_second - chi2_best < excess``: the part of the data that neither
  model explains is larger than what separates them, so the preference depends on what the
  models leave out (resolution, background, artefacts) as much as on their physics, and is
  not reliable however large ``delta_bic`` is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import InputDataError, format_error
from .result import FitResult

__all__ = ["ModelComparison", "compare_models"]


def _strength(delta_bic: float) -> str:
    if delta_bic < 2:
        return "not worth more than a bare mention"
    if delta_bic < 6:
        return "positive"
    if delta_bic < 10:
        return "strong"
    return "very strong"


@dataclass
class ModelComparison:
    """The comparison of the module notes.

    Attributes
    ----------
    models
        Model names, best (lowest AIC) first.
    table
        One dict per model (same order): ``model``, ``chi2``, ``reduced_chi2``, ``r2``,
        ``aic``, ``bic``, ``delta_chi2``, ``delta_aic``, ``delta_bic``, ``akaike_weight``.
    preferred
        The best model (lowest AIC).
    strength
        Words for ``delta_bic`` of the second model.
    excess_chi2, misfit_significant, within_misfit
        ``chi2_best - dof_best``; whether it exceeds ``2 sqrt(2 dof_best)``; whether the
        second model's ``delta_chi2`` is smaller than the excess (with a significant misfit).
    criteria_agree
        Whether chi-square, AIC and BIC all rank the same model first.
    statement
        The plain-language conclusion.
    """

    models: list[str]
    table: list[dict[str, Any]]
    preferred: str
    strength: str
    excess_chi2: float
    misfit_significant: bool
    within_misfit: bool
    criteria_agree: bool
    statement: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary."""
        def f(v: Any) -> Any:
            return float(v) if isinstance(v, (float, np.floating)) and np.isfinite(v) else (
                None if isinstance(v, (float, np.floating)) else v)

        return {"models": list(self.models), "table": [{k: f(v) for k, v in row.items()} for row in self.table],
                "preferred": self.preferred, "strength": self.strength, "excess_chi2": f(self.excess_chi2),
                "misfit_significant": self.misfit_significant, "within_misfit": self.within_misfit,
                "criteria_agree": self.criteria_agree, "statement": self.statement}


def compare_models(results: Sequence[FitResult]) -> ModelComparison:
    """Compare fits of several models to the same data (see the module notes).

    Raises
    ------
    InputDataError
        Fewer than one result, or results of different data or weights.
    """
    res = list(results)
    if not res:
        raise InputDataError(format_error("Nothing to compare", reason="no fit results",
                                          fix="fit at least one model"))
    keys = {r.data_key for r in res}
    if len(keys) > 1:
        raise InputDataError(format_error(
            "The fits were made to different data or with different weights",
            reason=f"{len(keys)} different data fingerprints among {[r.model for r in res]}",
            fix="fit every model to the same spectrum with the same errors"))
    order = sorted(range(len(res)), key=lambda i: res[i].aic)
    res = [res[i] for i in order]
    chi2 = np.array([r.chi2 for r in res])
    aic = np.array([r.aic for r in res])
    bic = np.array([r.bic for r in res])
    d_aic = aic - aic.min()
    w = np.exp(-0.5 * d_aic)
    w = w / w.sum()
    table = [{"model": r.model, "chi2": r.chi2, "reduced_chi2": r.reduced_chi2, "r2": r.r2, "aic": r.aic,
              "bic": r.bic, "delta_chi2": float(r.chi2 - chi2.min()), "delta_aic": float(r.aic - aic.min()),
              "delta_bic": float(r.bic - bic.min()), "akaike_weight": float(wi)} for r, wi in zip(res, w)]
    best = res[0]
    excess = float(best.chi2 - best.dof)
    significant = bool(excess > 2.0 * np.sqrt(2.0 * max(best.dof, 1)))
    agree = int(np.argmin(chi2)) == 0 and int(np.argmin(bic)) == 0
    if len(res) == 1:
        statement = (f"Only {best.model} was fitted: chi2 = {best.chi2:.6g} for {best.dof} degrees of freedom"
                     + (f", a systematic misfit of {excess:.4g} above the noise expectation." if significant
                        else ", consistent with the noise."))
        return ModelComparison([best.model], table, best.model, "n/a", excess, significant, False, True, statement)
    second = res[1]
    d_chi2 = float(second.chi2 - best.chi2)
    d_bic = float(second.bic - best.bic)
    strength = _strength(d_bic)
    within = bool(significant and d_chi2 < excess)
    lead = (f"{best.model} fits better than {second.model}: delta chi2 = {d_chi2:.4g}, delta AIC = "
            f"{float(second.aic - best.aic):.4g}, delta BIC = {d_bic:.4g}")
    if within:
        statement = (f"{lead}; but the models differ by less than the fit's systematic misfit (chi2 exceeds "
                     f"its noise expectation of {best.dof} by {excess:.4g}, more than the {d_chi2:.4g} between "
                     "the models), so the preference is not reliable: what neither model describes matters "
                     "more than what separates them.")
    elif d_bic < 2:
        statement = f"{lead}; the data do not distinguish the models (evidence {strength})."
    else:
        statement = f"{lead}; evidence for {best.model} is {strength}" + (
            f" (the best fit has a systematic misfit of {excess:.4g} above the noise expectation, smaller than "
            "the difference between the models)." if significant
            else ", and the best fit is consistent with the noise.")
    if not agree:
        statement += " Chi-square, AIC and BIC do not rank the same model first."
    return ModelComparison([r.model for r in res], table, best.model, strength, excess, significant, within, agree,
                           statement)
