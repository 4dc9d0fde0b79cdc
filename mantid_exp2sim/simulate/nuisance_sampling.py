"""Random nuisance parameters of a measured-like spectrum, around the calibrated PCSMO values.

A measured-like spectrum has two kinds of nuisance parameters:

* the **processing chain** (:class:`~.measured_like.MeasuredLike`): per-Ei scale, count level,
  background, residual background and the mask; applied to a noise-free convolved mosaic, so
  cheap enough to redraw on the fly while training (:func:`draw_measured_like`);
* the **measurement model** around the spin-wave model (:class:`~.measurement_model.MeasurementModel`):
  twin fraction, resolution width scale and mosaic spread; they change the convolved
  spectrum itself, so they are drawn once per simulated sample (:func:`draw_measurement_model`).

Ranges (:class:`NuisanceRanges`, :data:`DEFAULT_RANGES`) are factors on (or offsets from)
the calibrated values (``PCSMO_MEASUREMENT_MODEL`` and its chain, :func:`default_chain`),
chosen to cover the shifts of the classifier's robustness tests (``acc_under_shift`` of the
classifier issue) only partially, so those stay tests of extrapolation:

============================  ======================  =====================  ====================
nuisance                      default range           distribution           shift test
============================  ======================  =====================  ====================
scale (each Ei independently) x0.7 .. x1.4            log-uniform            x0.5 / x2
count level (all Ei)          x0.5 .. x2              log-uniform            x0.25 / x4
background (all Ei)           x0.6 .. x1.5            log-uniform            x2
residual background (all Ei)  x0.5 .. x1.5            log-uniform            -
mask                          measured with p = 0.9,  Bernoulli              kinematic
                              else kinematic
twin fraction                 calibrated -0.1 .. +0.1 uniform, within [0,1]  calibrated +-0.2
                              (None: 0.5)
resolution width scale        x0.88 .. x1.12          log-uniform            x0.75 / x1.25
mosaic spread (FWHM)          x0.5 .. x1.5            uniform                x2
============================  ======================  =====================  ====================

A draw consumes the same random numbers whatever their values, so a generator seeded per
sample (:func:`~.samples.sample_rng`) gives the same draw on every run, and fixing one value
(:class:`MeasuredLikeSettings`, the options of ``exp2sim-simulate --measured-like``) leaves
the other draws of that generator unchanged. Every ``describe()`` here is JSON-safe.
"""

from __future__ import annotations

import math
from pathlib import Path
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping, NamedTuple

import numpy as np

from ..errors import InputDataError, format_error
from ..mosaic import EI_LIST
from .measured_like import PCSMO_MEASURED_LIKE, MeasuredLike

__all__ = [
    "NuisanceRanges",
    "DEFAULT_RANGES",
    "draw_measured_like",
    "draw_measurement_model",
    "describe_measurement_model",
    "MeasuredLikeSettings",
    "NuisanceDraw",
    "nuisance_names",
    "default_chain",
]

#: Ranges that are positive factors on a calibrated value.
_FACTORS = ("scale", "count_level", "background", "residual_background", "resolution_scale", "mosaic")


def _pair(name: str, value: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise InputDataError(format_error(
            f"NuisanceRanges.{name} is invalid", reason=f"got {value!r}",
            fix="give two numbers (low, high)")) from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise InputDataError(format_error(
            f"NuisanceRanges.{name} is invalid", reason=f"got {value!r}; need finite low <= high",
            fix="give two numbers (low, high), low first"))
    return lo, hi


@dataclass(frozen=True)
class NuisanceRanges:
    """Ranges of the nuisance parameters of a measured-like spectrum (see the module notes).

    Parameters
    ----------
    scale
        ``(low, high)`` factor on the calibrated per-Ei scale, drawn log-uniformly and
        independently for each incident energy (> 0).
    count_level
        Factor on the calibrated count levels, one log-uniform draw for all incident energies.
    background
        Factor on the calibrated backgrounds, one log-uniform draw for all incident energies.
    residual_background
        Factor on the calibrated residual backgrounds, one log-uniform draw.
    measured_mask_probability
        Probability of the measured detector mask (else the kinematic mask), in [0, 1].
    twin_fraction
        ``(low, high)`` offset added to the calibrated twin fraction, drawn uniformly; the
        result is kept in [0, 1]. With a calibrated value of None (equal domains) the offsets
        are taken around 0.5.
    resolution_scale
        Factor on the calibrated resolution width scale, log-uniform (> 0).
    mosaic
        Factor on the calibrated mosaic spread (FWHM), uniform (>= 0).

    Raises
    ------
    InputDataError
        A range that is not two finite numbers with low <= high, a factor <= 0 (mosaic:
        < 0), a probability outside [0, 1] or twin-fraction offsets outside [-1, 1].
    """

    scale: tuple[float, float] = (0.7, 1.4)
    count_level: tuple[float, float] = (0.5, 2.0)
    background: tuple[float, float] = (0.6, 1.5)
    residual_background: tuple[float, float] = (0.5, 1.5)
    measured_mask_probability: float = 0.9
    twin_fraction: tuple[float, float] = (-0.1, 0.1)
    resolution_scale: tuple[float, float] = (0.88, 1.12)
    mosaic: tuple[float, float] = (0.5, 1.5)

    def __post_init__(self) -> None:
        for name in (*_FACTORS, "twin_fraction"):
            lo, hi = _pair(name, getattr(self, name))
            object.__setattr__(self, name, (lo, hi))
            if name == "twin_fraction":
                ok = -1.0 <= lo and hi <= 1.0
                need = "offsets within [-1, 1]"
            elif name == "mosaic":
                ok, need = lo >= 0, "factors >= 0"
            else:
                ok, need = lo > 0, "factors > 0"
            if not ok:
                raise InputDataError(format_error(
                    f"NuisanceRanges.{name} is invalid", reason=f"got {(lo, hi)!r}; need {need}",
                    fix="e.g. the defaults (DEFAULT_RANGES)"))
        p = self.measured_mask_probability
        try:
            pf = float(p)
        except (TypeError, ValueError):
            pf = float("nan")
        if not 0.0 <= pf <= 1.0:
            raise InputDataError(format_error(
                "NuisanceRanges.measured_mask_probability is invalid", reason=f"got {p!r}",
                fix="give a probability in [0, 1]"))
        object.__setattr__(self, "measured_mask_probability", pf)

    def describe(self) -> dict[str, Any]:
        """JSON-safe description (lists for ranges)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_description(cls, d: dict[str, Any]) -> "NuisanceRanges":
        """Inverse of :meth:`describe`."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names})


#: The default ranges (module notes).
DEFAULT_RANGES = NuisanceRanges()


def _log_uniform(rng: np.random.Generator, lo: float, hi: float, size: int | None = None) -> Any:
    u = rng.random(size)
    return np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo)))


def draw_measured_like(rng: np.random.Generator, ranges: NuisanceRanges = DEFAULT_RANGES,
                       base: MeasuredLike | None = None) -> MeasuredLike:
    """One random processing chain around ``base``.

    Parameters
    ----------
    rng
        Random generator; exactly ``n_ei + 4`` uniforms are taken from it.
    ranges
        The ranges (factors on ``base``; the module notes).
    base
        The calibrated chain (default: that of ``PCSMO_MEASUREMENT_MODEL``, else
        :data:`~.measured_like.PCSMO_MEASURED_LIKE`); its background ratio, clip, ``shared``
        folder and number of incident energies are kept, and its mask is the "measured" choice.

    Returns
    -------
    MeasuredLike
        The drawn chain; its :meth:`~.measured_like.MeasuredLike.describe` is JSON-safe.
    """
    if not isinstance(ranges, NuisanceRanges):
        raise InputDataError(format_error("ranges is invalid", reason=f"got {type(ranges).__name__}",
                                          fix="pass a NuisanceRanges"))
    base = default_chain() if base is None else base
    n = int(base.n_ei)
    scale = np.asarray(base.scale) * _log_uniform(rng, *ranges.scale, size=n)
    count = np.asarray(base.count_level) * _log_uniform(rng, *ranges.count_level)
    background = np.asarray(base.background) * _log_uniform(rng, *ranges.background)
    residual = np.asarray(base.residual_background) * _log_uniform(rng, *ranges.residual_background)
    measured = rng.random() < ranges.measured_mask_probability
    return replace(base, scale=tuple(scale), count_level=tuple(count), background=tuple(background),
                   residual_background=tuple(residual), mask=base.mask if measured else "kinematic")


def _default_measurement_model() -> Any:
    from .measurement_model import PCSMO_MEASUREMENT_MODEL

    return PCSMO_MEASUREMENT_MODEL


def default_chain() -> MeasuredLike:
    """The calibrated processing chain: ``PCSMO_MEASUREMENT_MODEL.measured_like``, else
    :data:`~.measured_like.PCSMO_MEASURED_LIKE`."""
    chain = getattr(_default_measurement_model(), "measured_like", None)
    return PCSMO_MEASURED_LIKE if chain is None else chain


def draw_measurement_model(rng: np.random.Generator, ranges: NuisanceRanges = DEFAULT_RANGES,
                           base: Any = None) -> Any:
    """One random measurement model (twin fraction, resolution width, mosaic) around ``base``.

    Parameters
    ----------
    rng
        Random generator; exactly 3 uniforms are taken from it.
    ranges
        The ranges (module notes).
    base
        A ``measurement_model.MeasurementModel`` (default ``PCSMO_MEASUREMENT_MODEL``, the
        calibrated one); its other settings (e.g. resolution sampling) are kept.

    Returns
    -------
    MeasurementModel
        With the drawn ``twin_fraction`` (in [0, 1]; around 0.5 when ``base`` has None, the
        model's own equal volumes), ``resolution_scale`` and ``mosaic``.
    """
    if not isinstance(ranges, NuisanceRanges):
        raise InputDataError(format_error("ranges is invalid", reason=f"got {type(ranges).__name__}",
                                          fix="pass a NuisanceRanges"))
    base = _default_measurement_model() if base is None else base
    u = rng.random(3)
    t0 = 0.5 if base.twin_fraction is None else float(base.twin_fraction)
    lo, hi = ranges.twin_fraction
    twin = float(np.clip(t0 + lo + u[0] * (hi - lo), 0.0, 1.0))
    rlo, rhi = ranges.resolution_scale
    res_scale = float(base.resolution_scale) * float(np.exp(np.log(rlo) + u[1] * (np.log(rhi) - np.log(rlo))))
    mlo, mhi = ranges.mosaic
    mosaic = float(base.mosaic) * float(mlo + u[2] * (mhi - mlo))
    return replace(base, twin_fraction=twin, resolution_scale=res_scale, mosaic=mosaic)


def describe_measurement_model(model: Any) -> dict[str, Any]:
    """JSON-safe description of a measurement model (its ``describe()`` when it has one)."""
    if hasattr(model, "describe"):
        return dict(model.describe())
    out: dict[str, Any] = {}
    for f in fields(model):
        v = getattr(model, f.name)
        out[f.name] = v if isinstance(v, (bool, int, float, str, type(None))) else repr(v)
    return out


# ============================================================================ data-set settings
#: The settings of :class:`MeasuredLikeSettings` and their command-line options.
_OPTIONS = {
    "scale": "--scale",
    "count_level": "--count-level",
    "background": "--subtracted-background",
    "residual_background": "--residual-background",
    "measured_mask_probability": "--measured-mask-probability",
    "twin_fraction": "--twin-fraction",
    "resolution_scale": "--resolution-scale",
    "mosaic": "--mosaic",
    "resolution_sampling": "--resolution-sampling",
    "measured_mask": "--measured-mask",
}


def _bad(name: str, value: Any, need: str, fix: str) -> InputDataError:
    return InputDataError(format_error(
        f"The {name.replace('_', ' ')} ({_OPTIONS[name]}) is invalid", reason=f"got {value!r}; need {need}",
        fix=fix))


def nuisance_names(ei_list: Any = EI_LIST) -> list[str]:
    """Names of the columns of a nuisance vector (:meth:`NuisanceDraw.vector`).

    Per incident energy ``e``: ``scale_ei<e>``, ``count_level_ei<e>``, ``background_ei<e>``,
    ``residual_background_ei<e>``; then ``measured_mask`` (1: the measured detector mask,
    0: the kinematic one), ``twin_fraction``, ``resolution_scale``, ``mosaic`` (FWHM, degrees).
    """
    per = [f"{k}_ei{float(e):g}" for k in ("scale", "count_level", "background", "residual_background")
           for e in ei_list]
    return per + ["measured_mask", "twin_fraction", "resolution_scale", "mosaic"]


class NuisanceDraw(NamedTuple):
    """The nuisance parameters of one measured-like sample."""

    #: Applied by the simulation (twin fraction, resolution, mosaic).
    measurement_model: Any
    #: Applied to the noise-free convolved spectrum (scale, counts, backgrounds, mask).
    chain: MeasuredLike

    def with_measured_like(self) -> Any:
        """The measurement model with the drawn chain as its ``measured_like``."""
        return replace(self.measurement_model, measured_like=self.chain)

    def vector(self) -> np.ndarray:
        """float64 values in :func:`nuisance_names` order."""
        mm, ch = self.measurement_model, self.chain
        twin = np.nan if getattr(mm, "twin_fraction", None) is None else float(mm.twin_fraction)
        return np.array([*ch.scale, *ch.count_level, *ch.background, *ch.residual_background,
                         0.0 if isinstance(ch.mask, str) and ch.mask == "kinematic" else 1.0, twin,
                         float(getattr(mm, "resolution_scale", np.nan)), float(getattr(mm, "mosaic", np.nan))],
                        dtype=np.float64)

    def describe(self) -> dict[str, Any]:
        """JSON-safe description of both parts."""
        return {"measurement_model": describe_measurement_model(self.measurement_model),
                "chain": self.chain.describe()}


@dataclass(frozen=True)
class MeasuredLikeSettings:
    """How the nuisance parameters of a measured-like data set are drawn: fixed values instead of draws.

    Every setting left None is drawn from :data:`DEFAULT_RANGES` around the calibrated PCSMO
    values (``PCSMO_MEASURED_LIKE``, ``PCSMO_MEASUREMENT_MODEL``); a fixed value replaces that
    draw only (the draw's random numbers are still taken, so the other nuisances and the
    exchange parameters of sample ``i`` are those of the same seed without it).

    Parameters
    ----------
    scale, count_level, background, residual_background
        Factors (> 0; backgrounds >= 0) on the calibrated per-Ei values of the processing
        chain, the same for every incident energy (options ``--scale``, ``--count-level``,
        ``--subtracted-background``, ``--residual-background``).
    measured_mask_probability
        Probability in [0, 1] of the measured detector mask, else the kinematic one
        (``--measured-mask-probability``; 0 = always kinematic).
    twin_fraction
        Twin (domain) fraction in [0, 1] (``--twin-fraction``).
    resolution_scale
        Factor (> 0) on the resolution widths (``--resolution-scale``; 1 = the resolution
        model's own widths).
    mosaic
        Sample mosaic spread, FWHM in degrees (>= 0; ``--mosaic``).
    resolution_sampling
        Resolution sampling points (whole number >= 0; ``--resolution-sampling``; 0 = the
        linearised widths).
    measured_mask
        The measured detector mask file (``--measured-mask``; default
        ``$EXP2SIM_SHARED/data/pcsmo/nanmask.mat``, see
        :func:`~.measured_like.measured_mask_path`).

    Raises
    ------
    InputDataError
        A value out of its range, one line naming the option.
    """

    scale: float | None = None
    count_level: float | None = None
    background: float | None = None
    residual_background: float | None = None
    measured_mask_probability: float | None = None
    twin_fraction: float | None = None
    resolution_scale: float | None = None
    mosaic: float | None = None
    resolution_sampling: int | None = None
    measured_mask: str | None = None

    def __post_init__(self) -> None:
        for name in _OPTIONS:
            v = getattr(self, name)
            if v is None:
                continue
            if name == "measured_mask":
                object.__setattr__(self, name, str(Path(v).expanduser().resolve()))
                continue
            if name == "resolution_sampling":
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                    raise _bad(name, v, "a whole number >= 0", "e.g. 0 (linearised widths)")
                object.__setattr__(self, name, int(v))
                continue
            try:
                f = float(v)
            except (TypeError, ValueError):
                f = float("nan")
            if name in ("twin_fraction", "measured_mask_probability"):
                ok, need, fix = 0.0 <= f <= 1.0, "a value in [0, 1]", "e.g. 0.5"
            elif name in ("mosaic", "background", "residual_background"):
                ok, need = math.isfinite(f) and f >= 0, "a finite value >= 0"
                fix = "e.g. 0.5 (degrees FWHM)" if name == "mosaic" else "e.g. 1 (the calibrated value)"
            else:
                ok, need, fix = math.isfinite(f) and f > 0, "a finite value > 0", "e.g. 1 (the calibrated value)"
            if not ok:
                raise _bad(name, v, need, fix)
            object.__setattr__(self, name, f)

    def settings(self) -> dict[str, Any]:
        """JSON-safe settings (None where drawn)."""
        return asdict(self)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> "MeasuredLikeSettings":
        """Inverse of :meth:`settings`."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - names)
        if unknown:
            raise InputDataError(format_error("Unknown measured-like settings", reason=f"{unknown}",
                                              fix=f"use {sorted(names)}"))
        return cls(**dict(settings))

    def ranges(self, base: NuisanceRanges = DEFAULT_RANGES) -> NuisanceRanges:
        """``base`` with the fixed processing-chain factors and mask choice put in."""
        kw: dict[str, Any] = {}
        for name in ("scale", "count_level", "background", "residual_background"):
            v = getattr(self, name)
            if v is not None:
                kw[name] = (v, v)
        if self.measured_mask_probability is not None:
            kw["measured_mask_probability"] = self.measured_mask_probability
        if self.twin_fraction is not None:
            kw["twin_fraction"] = (0.0, 0.0)
        if self.resolution_scale is not None:
            kw["resolution_scale"] = (1.0, 1.0)
        if self.mosaic is not None:
            kw["mosaic"] = (1.0, 1.0)
        return replace(base, **kw)

    def measurement_base(self, base: Any = None) -> Any:
        """The calibrated measurement model with the fixed values put in."""
        base = _default_measurement_model() if base is None else base
        kw: dict[str, Any] = {}
        for name in ("twin_fraction", "resolution_scale", "mosaic", "resolution_sampling"):
            if getattr(self, name) is not None:
                kw[name] = getattr(self, name)
        return replace(base, **kw) if kw else base

    def draw(self, rng: np.random.Generator, *, ranges: NuisanceRanges = DEFAULT_RANGES,
             chain: MeasuredLike | None = None, measurement_model: Any = None) -> NuisanceDraw:
        """The nuisance parameters of one sample: measurement model first, then the chain.

        Parameters
        ----------
        rng
            The sample's generator (3 + ``n_ei`` + 4 uniforms are taken).
        ranges, chain, measurement_model
            Ranges and calibrated bases (defaults: :data:`DEFAULT_RANGES`,
            :func:`default_chain`, ``PCSMO_MEASUREMENT_MODEL``).
        """
        r = self.ranges(ranges)
        mm = draw_measurement_model(rng, r, self.measurement_base(measurement_model))
        return NuisanceDraw(mm, draw_measured_like(rng, r, chain))

    def measured_mask_path(self) -> Path:
        """The measured detector mask file these settings use."""
        from .measured_like import measured_mask_path

        return Path(self.measured_mask) if self.measured_mask is not None else measured_mask_path()

    def needs_measured_mask(self) -> bool:
        """Whether any sample can use the measured mask (its probability is not fixed at 0)."""
        p = self.measured_mask_probability
        return DEFAULT_RANGES.measured_mask_probability > 0 if p is None else p > 0
