"""The result of fitting one model: parameters, errors, goodness of fit, best-fit spectrum.

Definitions (``n`` fitted bins, ``k`` free parameters = free model parameters + nuisance
parameters, ``r_i = (y_i - m_i) / sigma_i``):

* ``chi2 = sum r_i^2``; ``dof = n - k``; ``reduced_chi2 = chi2 / dof``;
* ``r2 = 1 - sum (y - m)^2 / sum (y - mean(y))^2`` over the fitted bins, unweighted (the
  share of the data's variance the model explains, comparable between weightings);
* ``aic = chi2 + 2 k`` and ``bic = chi2 + k ln n``: ``-2 ln L`` of the Gaussian likelihood
  plus the penalties, up to a constant that is the same for every model fitted to the same
  data with the same errors (so only differences between models mean anything);
* errors: square roots of the diagonal of ``(J^T J)^-1`` (``J`` the Jacobian of ``r`` in
  all free parameters at the optimum), multiplied by ``error_scale = sqrt(reduced_chi2)``
  when ``reduced_chi2 > 1`` (the fit is worse than the errors allow: the model or the errors
  miss something, and the scatter of the residuals is taken as the noise); never scaled down.
  ``errors_inflated`` and ``notes`` say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["FitResult", "StartRecord"]


def _json_float(x: Any) -> Any:
    v = float(x)
    return v if np.isfinite(v) else None


def _nested(a: np.ndarray) -> Any:
    """Array -> nested lists with NaN as None."""
    arr = np.asarray(a, dtype=float)
    obj = arr.astype(object)
    obj[~np.isfinite(arr)] = None
    return obj.tolist()


@dataclass
class StartRecord:
    """One start of a fit: where it came from, where it went."""

    source: str  # "published", "extra", "sobol", "scan", "polish"
    start: dict[str, float]
    screened_chi2: float
    local: bool = False  # a local fit was run from it
    chi2: float = float("nan")
    values: dict[str, float] | None = None
    nfev: int = 0
    message: str = ""
    stage: str = "full"  # "coarse": chi2 of the coarse-binned data; "full": of the data

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "start": self.start, "screened_chi2": _json_float(self.screened_chi2),
                "local": self.local, "chi2": _json_float(self.chi2), "values": self.values, "nfev": self.nfev,
                "message": self.message, "stage": self.stage}


@dataclass
class FitResult:
    """What :func:`~.engine.fit_model` returns (see the module notes for the definitions).

    Attributes
    ----------
    model
        Model name.
    parameter_names
        All model parameters, in order.
    values, errors
        ``{name: value}`` and ``{name: one-sigma error}`` of every model parameter (error
        0 for fixed ones).
    fixed
        Names held fixed.
    correlation
        Correlation matrix of the free model parameters (order ``free``).
    covariance
        Their covariance (after the inflation, if any).
    nuisance, nuisance_errors
        ``{name: value}`` and errors of the per-group scale and background.
    chi2, reduced_chi2, dof, n_data, n_free, r2, aic, bic
        Goodness of fit.
    error_scale, errors_inflated
        ``sqrt(reduced_chi2)`` when > 1 (then ``errors_inflated`` is True), else 1.
    best_fit, residual
        Arrays of the data's shape: the best-fit model (scale and background included; NaN
        where not fitted) and data minus best fit.
    starts
        Every start, screened and local (:class:`StartRecord`).
    at_bounds
        Free parameters that ended within 1e-6 of the range width of a bound (their errors
        are not meaningful).
    unstable_fraction
        Share of Q points with an unstable ordered state at the best fit (0 for a usable fit).
    error_source
        How the weights were obtained (``"given"`` or ``"estimated"``).
    notes
        Plain-language remarks (inflated errors, bounds, unstable points, ...).
    seconds, nfev, nfev_coarse
        Wall time; model evaluations on the data and on the coarse-binned data.
    data_key
        Fingerprint of the data and weights; results can be compared only if equal.
    """

    model: str
    parameter_names: tuple[str, ...]
    values: dict[str, float]
    errors: dict[str, float]
    fixed: tuple[str, ...]
    free: tuple[str, ...]
    correlation: np.ndarray
    covariance: np.ndarray
    nuisance: dict[str, float]
    nuisance_errors: dict[str, float]
    chi2: float
    reduced_chi2: float
    dof: int
    n_data: int
    n_free: int
    r2: float
    aic: float
    bic: float
    error_scale: float
    errors_inflated: bool
    best_fit: np.ndarray
    residual: np.ndarray
    starts: list[StartRecord] = field(default_factory=list)
    at_bounds: tuple[str, ...] = ()
    unstable_fraction: float = 0.0
    error_source: str = "given"
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    nfev: int = 0
    data_key: str = ""
    nfev_coarse: int = 0

    def vector(self) -> np.ndarray:
        """Parameter values in ``parameter_names`` order."""
        return np.array([self.values[n] for n in self.parameter_names])

    def to_dict(self, *, arrays: bool = False) -> dict[str, Any]:
        """JSON-safe dictionary; ``arrays=True`` adds ``best_fit`` and ``residual`` (NaN -> None)."""
        out: dict[str, Any] = {
            "model": self.model,
            "parameters": {n: _json_float(self.values[n]) for n in self.parameter_names},
            "errors": {n: _json_float(self.errors[n]) for n in self.parameter_names},
            "fixed": list(self.fixed),
            "free": list(self.free),
            "correlation": [[_json_float(v) for v in row] for row in np.asarray(self.correlation)],
            "nuisance": {k: _json_float(v) for k, v in self.nuisance.items()},
            "nuisance_errors": {k: _json_float(v) for k, v in self.nuisance_errors.items()},
            "chi2": _json_float(self.chi2),
            "reduced_chi2": _json_float(self.reduced_chi2),
            "dof": int(self.dof),
            "n_data": int(self.n_data),
            "n_free": int(self.n_free),
            "r2": _json_float(self.r2),
            "aic": _json_float(self.aic),
            "bic": _json_float(self.bic),
            "error_scale": _json_float(self.error_scale),
            "errors_inflated": bool(self.errors_inflated),
            "at_bounds": list(self.at_bounds),
            "unstable_fraction": _json_float(self.unstable_fraction),
            "error_source": self.error_source,
            "notes": list(self.notes),
            "seconds": _json_float(self.seconds),
            "nfev": int(self.nfev),
            "nfev_coarse": int(self.nfev_coarse),
            "starts": [s.to_dict() for s in self.starts],
        }
        if arrays:
            out["best_fit"] = _nested(self.best_fit)
            out["residual"] = _nested(self.residual)
        return out

    def summary(self) -> str:
        """A few lines for people: parameters with errors, fit quality, notes."""
        lines = [f"{self.model}: chi2 = {self.chi2:.6g} for {self.dof} dof (reduced {self.reduced_chi2:.4g}), "
                 f"R^2 = {self.r2:.4f}, AIC = {self.aic:.6g}, BIC = {self.bic:.6g}"]
        for n in self.parameter_names:
            tag = " (fixed)" if n in self.fixed else (" (at bound)" if n in self.at_bounds else "")
            lines.append(f"  {n} = {self.values[n]:.6g} +/- {self.errors[n]:.3g}{tag}")
        lines.extend(f"  note: {s}" for s in self.notes)
        return "\n".join(lines)
