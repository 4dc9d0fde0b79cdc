"""Fit task: spin-wave models fitted to a measured 240x400 mosaic, with a model comparison.

Wraps the Mantid-free engine (:func:`mantid_exp2sim.fitting.fit_model`,
:func:`~mantid_exp2sim.fitting.compare_models`): checks the input (a mosaic in the
``pcsmo-mosaic-v1`` layout with at least one finite bin), splits the fixed parameters among
the models (a name no model has, or a value outside its range, is an ``InputDataError``),
fits every model on the same prepared data and returns the per-model results, the
comparison and the best fit and residual of each model as :class:`MDHisto` on the input's
axes (NaN where not fitted). See docs/fitting.md.

**Parameter-estimation networks** (``exp2sim-train regressor``; shipped as
``data/bundles/regress_<model>.exp2sim.h5``): :func:`estimate_parameters` runs a model's
network alone on a mosaic (values and calibrated 1-sigma errors, no fit);
:func:`fit_spin_models` starts every model's fit from its network's estimate too (besides the
published values and the Sobol design) when the model has a network (``networks``), and
records the estimate. A bundle for another model is refused. :func:`network_model_choice`
compares the models at their networks' estimates (nuisances solved, no fit): the network
route to a model choice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import BundleError, InputDataError, format_error
from ..histogram import MDHisto
from ..mosaic import MOSAIC_SHAPE, validate_mosaic

__all__ = ["DEFAULT_MODELS", "NetworkEstimate", "SpinWaveFit", "check_fit_options", "estimate_parameters",
           "fit_spin_models", "network_model_choice", "networks_by_model", "parse_fixed"]

#: Models fitted by default (the two PCSMO models).
DEFAULT_MODELS: tuple[str, ...] = ("goodenough", "dimer")


@dataclass
class NetworkEstimate:
    """A parameter-estimation network's answer for one model.

    Attributes
    ----------
    model
        Spin-model name.
    values, errors
        ``{parameter: value}`` and calibrated 1-sigma errors (the network's sigma times the
        bundle's ``sigma_scale``), in the model's units; values clipped into the ranges.
    bundle_id, bundle_path
        The network used.
    """

    model: str
    values: dict[str, float]
    errors: dict[str, float]
    bundle_id: str
    bundle_path: str

    def vector(self) -> np.ndarray:
        """The values in the model's parameter order."""
        return np.array(list(self.values.values()), dtype=float)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe."""
        return {"model": self.model, "parameters": dict(self.values), "errors": dict(self.errors),
                "bundle_id": self.bundle_id, "bundle": self.bundle_path}


@dataclass
class SpinWaveFit:
    """What :func:`fit_spin_models` returns.

    Attributes
    ----------
    results
        One :class:`~mantid_exp2sim.fitting.FitResult` per model, in the order asked.
    comparison
        :class:`~mantid_exp2sim.fitting.ModelComparison` of the results.
    fits, residuals
        ``{model: MDHisto}``: best fit (scale and background included) and data minus best
        fit, on the input's axes; NaN where not fitted.
    """

    results: list[Any]
    comparison: Any
    fits: dict[str, MDHisto] = field(default_factory=dict)
    residuals: dict[str, MDHisto] = field(default_factory=dict)
    estimates: dict[str, NetworkEstimate] = field(default_factory=dict)

    @property
    def preferred(self) -> Any:
        """The :class:`FitResult` of the preferred model."""
        return next(r for r in self.results if r.model == self.comparison.preferred)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: ``models`` (each ``FitResult.to_dict()``), ``comparison``, ``preferred``."""
        return {
            "models": [r.to_dict() for r in self.results],
            "comparison": self.comparison.to_dict(),
            "preferred": self.comparison.preferred,
            "statement": self.comparison.statement,
            "network": {m: e.to_dict() for m, e in self.estimates.items()},
        }


def parse_fixed(items: Sequence[str] | str | None) -> dict[str, float]:
    """``["NAME=VALUE", ...]`` or ``"NAME=VALUE,NAME=VALUE"`` -> ``{name: value}``.

    Raises
    ------
    InputDataError
        An item without ``=``, an empty name, a value that is not a finite number, or a
        name given twice.
    """
    if items is None:
        return {}
    if isinstance(items, str):
        items = [items]
    out: dict[str, float] = {}
    for chunk in items:
        for item in str(chunk).split(","):
            item = item.strip()
            if not item:
                continue
            name, sep, text = item.partition("=")
            name = name.strip()
            try:
                value = float(text)
            except ValueError:
                value = float("nan")
            if not sep or not name or not np.isfinite(value):
                raise InputDataError(format_error(
                    f"Fixed parameter {item!r} is invalid", reason="expected NAME=VALUE with a finite number",
                    fix="e.g. D=0.073"))
            if name in out:
                raise InputDataError(format_error(f"Fixed parameter {name!r} is given twice"))
            out[name] = value
    return out


def check_fit_options(models: Sequence[str], fixed: Mapping[str, float]) -> list[dict[str, float]]:
    """The fixed parameters of each model; raises ``InputDataError`` for an unknown model, a
    fixed name that no model has or a fixed value outside a model's range."""
    from ..simulate import get_model, list_models

    per_model = []
    known: set[str] = set()
    for name in models:
        try:
            m = get_model(name)
        except Exception as exc:  # noqa: BLE001 - one clear error for every kind of unknown model
            raise InputDataError(format_error(
                f"Unknown model {name!r}", reason=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                fix=f"choose from {', '.join(list_models())}")) from None
        names = tuple(m.parameter_names)
        known.update(names)
        fix = {k: float(v) for k, v in fixed.items() if k in names}
        for k, v in fix.items():
            lo, hi = (float(b) for b in m.ranges[k])
            if not (np.isfinite(v) and lo <= v <= hi):
                raise InputDataError(format_error(
                    f"Fixed value {k}={v:g} is outside the range of model {name!r}", reason=f"range [{lo:g}, {hi:g}]",
                    fix="give a value inside the model's range"))
        per_model.append(fix)
    unknown = sorted(set(fixed) - known)
    if unknown:
        raise InputDataError(format_error(
            f"Fixed parameter(s) {unknown} belong to none of the models", reason=f"models: {list(models)}",
            fix=f"use parameter names of the models: {sorted(known)}"))
    return per_model


def networks_by_model(files: Sequence[str], models: Sequence[str]) -> dict[str, str]:
    """``{model: file}`` of regressor bundles, each filed under the model its manifest names.

    Raises
    ------
    BundleError
        A file that is not a regressor bundle.
    InputDataError
        A bundle for a model not in ``models``, or two bundles for one model.
    """
    from ..bundle import load_bundle

    out: dict[str, str] = {}
    for f in files:
        b = load_bundle(f, kind="regressor", task="regress")
        model = b.manifest["regression"]["model"]
        if model not in models:
            raise InputDataError(format_error(
                f"The parameter-estimation network '{f}' is for another model",
                reason=f"it estimates the parameters of {model!r}; the models fitted are {list(models)}",
                fix=f"pass networks trained for {', '.join(models)} (or fit {model!r} too)"))
        if model in out:
            raise InputDataError(format_error(f"Two networks for model {model!r}", reason=f"{out[model]} and {f}",
                                              fix="give one network per model"))
        out[model] = str(f)
    return out


def _mosaic_signal(mosaic: Any) -> np.ndarray:
    if isinstance(mosaic, MDHisto):
        validate_mosaic(mosaic, argument="the input")
        return np.asarray(mosaic.signal, dtype=float).reshape(MOSAIC_SHAPE)
    sig = np.asarray(mosaic, dtype=float)
    if sig.shape != MOSAIC_SHAPE:
        raise InputDataError(format_error("The input is not a 240x400 mosaic", reason=f"shape {sig.shape}",
                                          fix="pass a pcsmo-mosaic-v1 mosaic"))
    if not np.isfinite(sig).any():
        raise InputDataError(format_error("The input is fully masked", reason="no finite bin"))
    return sig


def estimate_parameters(
    mosaic: Any,
    models: Sequence[str] = DEFAULT_MODELS,
    *,
    networks: Mapping[str, Any] | None = None,
    backend: str = "auto",
    device: str = "cpu",
) -> dict[str, NetworkEstimate]:
    """The parameter-estimation networks alone: each model's parameters from a mosaic, no fit.

    Parameters
    ----------
    mosaic
        A 240x400 mosaic (MDHisto or array; NaN = masked), any intensity scale.
    models
        Spin models whose networks to run.
    networks
        ``{model: bundle path or loaded bundle}``; a model not named uses its shipped network
        (``regress_<model>.exp2sim.h5``).
    backend, device
        Inference backend (``"auto"``, ``"onnx"``, ``"torch"``) and device.

    Returns
    -------
    dict
        ``{model: NetworkEstimate}``.

    Raises
    ------
    BundleError
        No network for a model, or a bundle made for another model.
    InputDataError
        Not a mosaic, or ``networks`` names a model not in ``models``.
    """
    from ..bundle.resolve import regressor_bundle
    from ..inference import get_backend
    from ..models.normalisation import intensity_scale, to_network_input

    sig = _mosaic_signal(mosaic)
    networks = dict(networks or {})
    stray = sorted(set(networks) - set(models))
    if stray:
        raise InputDataError(format_error(f"Networks given for models not fitted: {stray}",
                                          reason=f"models: {list(models)}", fix="name each network by its model"))
    x = np.ascontiguousarray(to_network_input(sig, intensity_scale(sig)), dtype=np.float32)
    out: dict[str, NetworkEstimate] = {}
    for model in models:
        bundle = regressor_bundle(model, networks.get(model))
        reg = bundle.manifest["regression"]
        names = list(reg["parameters"])
        lo, hi = (np.array(v, dtype=float) for v in zip(*reg["ranges"]))
        y = np.asarray(get_backend(bundle, backend=backend, device=device)(x), dtype=float)
        if y.shape != (1, 2, len(names)):
            raise BundleError(format_error("The network's output does not match its parameter list",
                                           reason=f"output shape {y.shape}, {len(names)} parameters",
                                           fix="re-export the bundle"))
        scale = np.asarray(reg.get("sigma_scale") or np.ones(len(names)), dtype=float)
        values = np.clip(lo + y[0, 0] * (hi - lo), lo, hi)
        errors = np.exp(y[0, 1]) * scale * (hi - lo)
        out[model] = NetworkEstimate(model, dict(zip(names, values.tolist())), dict(zip(names, errors.tolist())),
                                     bundle.bundle_id, str(bundle.path))
    return out


def network_model_choice(mosaic: Any, estimates: Mapping[str, NetworkEstimate], *, resolution: Any = "builtin",
                         workers: int = 2) -> tuple[list[Any], Any]:
    """The models compared at their networks' estimates (no fit of the spin parameters).

    Every model's parameters are held at its network's estimate; only the per-Ei scale and
    background are solved (one model evaluation per model); the comparison is
    :func:`~mantid_exp2sim.fitting.compare_models` (lowest AIC preferred).

    Returns
    -------
    results, comparison
        One :class:`~mantid_exp2sim.fitting.FitResult` per model (all parameters fixed), and
        the :class:`~mantid_exp2sim.fitting.ModelComparison`.
    """
    from ..fitting import compare_models, fit_model, prepare_data

    sig = _mosaic_signal(mosaic)
    errors = None
    if isinstance(mosaic, MDHisto) and mosaic.errors is not None:
        errors = np.asarray(mosaic.errors, dtype=float).reshape(MOSAIC_SHAPE)
        if not np.any(np.isfinite(errors) & (errors > 0)):
            errors = None
    fd = prepare_data(sig, errors=errors)
    results = [fit_model(fd, m, fixed=e.values, n_sobol=0, coarse=1, workers=workers, resolution=resolution)
               for m, e in estimates.items()]
    return results, compare_models(results)


#: Options of the start design and global search: not used by the refit with refined errors.
_START_OPTIONS = frozenset({"n_sobol", "n_local", "n_scan", "scan_rounds", "coarse", "include_published", "seed"})


def _stage(progress: Callable[[float, str], Any] | None, i: int, n: int, name: str) -> Callable[[float, str], None]:
    def report(fraction: float, message: str) -> None:
        if progress is not None:
            progress((i + min(max(float(fraction), 0.0), 1.0)) / n, f"{name}: {message}")
    return report


def fit_spin_models(
    mosaic: MDHisto,
    models: Sequence[str] = DEFAULT_MODELS,
    *,
    fixed: Mapping[str, float] | None = None,
    n_sobol: int | None = None,
    seed: int = 0,
    resolution: Any = "builtin",
    progress: Callable[[float, str], Any] | None = None,
    networks: Mapping[str, Any] | None = None,
    use_network: bool = True,
    refine_errors: bool = True,
    **engine: Any,
) -> SpinWaveFit:
    """Fit spin models to a measured mosaic and compare them.

    Parameters
    ----------
    mosaic
        A 240x400 mosaic (integrated dimensions allowed; NaN = masked); its ``errors``
        (standard deviations) are used when present, else estimated from the counts.
    models
        Spin-model names (default both PCSMO models).
    fixed
        ``{name: value}`` held fixed in every model that has the parameter.
    n_sobol
        Sobol starts per model (default the engine's).
    seed
        Seed of the start design.
    resolution
        Resolution of the simulator.
    progress
        ``progress(fraction, message)`` over all models; raise from it to cancel.
    networks
        ``{model: regressor bundle}``: parameter-estimation networks whose estimates start
        the fits (a model not named uses its shipped network when there is one; a bundle for
        another model is a ``BundleError``).
    use_network
        False: no network starts (published values and Sobol design only).
    refine_errors
        When the errors are estimated from the counts (the input has none): re-estimate them
        from the residuals of the best-fitting model and refit every model from its optimum
        (:func:`mantid_exp2sim.fitting.noise.refine_noise`; default on: weights from the counts
        alone follow the data's own fluctuations and bias the fit, see docs/fitting.md). No
        effect when the input carries errors.
    engine
        Further keywords of :func:`mantid_exp2sim.fitting.fit_model` (``n_local``,
        ``workers``, ``background``, ...).
    """
    from ..fitting import compare_models, fit_model, prepare_data
    from ..fitting.noise import refine_noise, refit
    from ..fitting.symmetry import canonical_permutation, canonical_values, canonicalise_result

    validate_mosaic(mosaic, argument="the input")
    models = [str(m).strip() for m in models if str(m).strip()]
    if not models:
        raise InputDataError(format_error("No model to fit", fix="give e.g. goodenough dimer"))
    if len(set(models)) != len(models):
        raise InputDataError(format_error("A model is given twice", reason=f"models: {models}"))
    per_model = check_fit_options(models, dict(fixed or {}))
    signal = np.asarray(mosaic.signal, dtype=float).reshape(MOSAIC_SHAPE)
    errors = None if mosaic.errors is None else np.asarray(mosaic.errors, dtype=float).reshape(MOSAIC_SHAPE)
    if errors is not None and not np.any(np.isfinite(errors[np.isfinite(signal)]) & (errors[np.isfinite(signal)] > 0)):
        errors = None  # no usable errors (e.g. a workspace without errors): estimate them
    estimates: dict[str, NetworkEstimate] = {}
    if use_network:
        from ..bundle.defaults import default_regressor_path

        given = dict(networks or {})
        with_net = [m for m in models if m in given or default_regressor_path(m, must_exist=False).is_file()]
        stray = sorted(set(given) - set(models))
        if stray:
            raise InputDataError(format_error(f"Networks given for models not fitted: {stray}",
                                              reason=f"models: {models}", fix="name each network by its model"))
        if with_net:
            estimates = estimate_parameters(mosaic, with_net, networks=given)
    elif networks:
        raise InputDataError(format_error("Networks given with use_network=False", fix="drop one of them"))
    fd = prepare_data(signal, errors=errors)
    if n_sobol is not None:
        engine["n_sobol"] = n_sobol
    extra = list(engine.pop("extra_starts", None) or [])
    refine = bool(refine_errors and errors is None)
    stages = len(models) * (2 if refine else 1)
    results = []
    for i, (name, fix) in enumerate(zip(models, per_model)):
        starts = extra + ([estimates[name].values] if name in estimates else [])
        results.append(fit_model(fd, name, fixed=fix, seed=seed, resolution=resolution,
                                 progress=_stage(progress, i, stages, name), extra_starts=starts, **engine))
    if refine:
        # errors from the counts alone count sharp structure as noise: re-estimate them from the
        # residuals of the best-fitting model and fit every model again from its optimum
        best = min(results, key=lambda r: r.chi2)
        fd = refine_noise(fd, best)
        local = {k: v for k, v in engine.items() if k not in _START_OPTIONS}
        results = [refit(fd, name, r, fixed=fix, resolution=resolution,
                         progress=_stage(progress, len(models) + i, stages, f"{name} (refined errors)"), **local)
                   for i, (name, fix, r) in enumerate(zip(models, per_model, results))]
    for r in results:
        canonicalise_result(r)
    for name, e in estimates.items():
        names = list(e.values)
        vec = canonical_values(name, names, e.values)
        perm = canonical_permutation(name, names, e.values)
        if perm is not None:
            e.values = dict(zip(names, vec.tolist()))
            e.errors = {n: e.errors[names[j]] for n, j in zip(names, perm)}
    comparison = compare_models(results)

    def on_axes(a: np.ndarray, kind: str, model: str) -> MDHisto:
        meta = dict(mosaic.metadata, kind=kind, model=model)
        return MDHisto(np.asarray(a, dtype=float).reshape(mosaic.shape), mosaic.axes, errors=None, metadata=meta)

    out = SpinWaveFit(results, comparison, estimates=estimates)
    for r in results:
        out.fits[r.model] = on_axes(r.best_fit, "best_fit", r.model)
        out.residuals[r.model] = on_axes(r.residual, "residual", r.model)
    if progress is not None:
        progress(1.0, "done")
    return out
