"""The measurement model around a spin-wave model: what turns S(Q, w) into a MAPS measurement.

:class:`MeasurementModel` collects the effects of the sample and the instrument that the
spin-wave model itself does not contain, each a documented field with a physical default and
a value that switches it off:

* ``twin_fraction``: volume of twin domain 1 (a <-> b twins; the twin operation is a proper
  rotation that keeps the kinematic L). ``None`` keeps the model's own volumes (50:50 for
  PCSMO); ``1`` is twin 1 alone.
* ``resolution_scale``: factor on the instrument resolution widths (the covariance is
  multiplied by its square); 1 = the resolution model as it is.
* ``mosaic``: sample mosaic spread, FWHM in degrees (isotropic crystallite rotations; an
  extra in-plane Q broadening, :func:`~.resolution.mosaic_covariance`); 0 = off.
* ``resolution_sampling``: 0 = the dispersion linearised across the resolution ellipsoid and
  the Q bin (the fast default); ``n > 0`` samples each bin and the in-plane part of the
  resolution on an ``n x n`` grid of Q points, each with its own modes, so band extrema and
  crossings get their true widths (see :mod:`.spectra`); the cost grows about as ``n^2``.
* ``measured_like``: the processing chain (scale, counting noise, background subtraction,
  clipping, mask) of :class:`~.measured_like.MeasuredLike`; None = none (noise-free).

:meth:`MeasurementModel.simulate_kwargs` gives the keywords that ``simulate_plan``,
``simulate_pair`` and ``simulate_mosaic_pair`` accept (``twin_fraction``,
``resolution_scale``, ``mosaic``, ``resolution_sampling``); the defaults reproduce the
simulator without a measurement model exactly.

:data:`PCSMO_MEASUREMENT_MODEL` holds the calibrated PCSMO values (see its notes for how
they were obtained).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputDataError, format_error
from .measured_like import PCSMO_MEASURED_LIKE, MeasuredLike

__all__ = [
    "MeasurementModel",
    "PCSMO_MEASUREMENT_MODEL",
    "MAX_RESOLUTION_SAMPLING",
    "check_measurement",
]

#: Largest ``resolution_sampling`` (points per bin edge).
MAX_RESOLUTION_SAMPLING = 8


def _finite(name: str, value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = float("nan")
    if isinstance(value, bool) or not np.isfinite(x):
        raise InputDataError(format_error(f"{name} is invalid", reason=f"got {value!r}; need a finite number"))
    return x


def check_measurement(twin_fraction: Any = None, resolution_scale: Any = 1.0, mosaic: Any = 0.0,
                      resolution_sampling: Any = 0) -> tuple[float | None, float, float, int]:
    """Validated measurement-model settings.

    Parameters
    ----------
    twin_fraction, resolution_scale, mosaic, resolution_sampling
        As the fields of :class:`MeasurementModel`.

    Returns
    -------
    tuple
        ``(twin_fraction or None, resolution_scale, mosaic, resolution_sampling)`` as float,
        float, float, int.

    Raises
    ------
    InputDataError
        Naming the setting, its value and the allowed range.
    """
    tf = None
    if twin_fraction is not None:
        tf = _finite("twin_fraction", twin_fraction)
        if not 0.0 <= tf <= 1.0:
            raise InputDataError(format_error(
                "twin_fraction is invalid", reason=f"got {twin_fraction!r}; need the volume of twin 1 in [0, 1]",
                fix="use e.g. 0.5 (equal twins) or None (the model's own volumes)"))
    scale = _finite("resolution_scale", resolution_scale)
    if scale <= 0:
        raise InputDataError(format_error(
            "resolution_scale is invalid", reason=f"got {resolution_scale!r}; need a factor > 0",
            fix="use 1 for the resolution model as it is"))
    mos = _finite("mosaic", mosaic)
    if mos < 0 or mos > 30:
        raise InputDataError(format_error(
            "mosaic is invalid", reason=f"got {mosaic!r}; need a mosaic FWHM in degrees between 0 and 30",
            fix="use 0 (no mosaic) or e.g. 1.5"))
    n = resolution_sampling
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or not (
            0 <= n <= MAX_RESOLUTION_SAMPLING):
        raise InputDataError(format_error(
            "resolution_sampling is invalid",
            reason=f"got {resolution_sampling!r}; need a whole number from 0 to {MAX_RESOLUTION_SAMPLING}",
            fix="use 0 (linearised widths, fastest) or e.g. 2 (a 2 x 2 grid per bin)"))
    return tf, scale, mos, int(n)


@dataclass(frozen=True)
class MeasurementModel:
    """Sample and instrument effects around a spin-wave model (see the module notes).

    Parameters
    ----------
    twin_fraction
        Volume of twin 1 in [0, 1]; None = the model's own volumes (50:50).
    resolution_scale
        Factor (> 0) on the instrument resolution widths.
    mosaic
        Sample mosaic FWHM in degrees (>= 0; 0 = off).
    resolution_sampling
        0 = linearised widths; n > 0 = an n x n sampled grid per bin (<= 8).
    measured_like
        The processing chain to a measured-like spectrum, or None.
    """

    twin_fraction: float | None = None
    resolution_scale: float = 1.0
    mosaic: float = 0.0
    resolution_sampling: int = 0
    measured_like: MeasuredLike | None = None

    def __post_init__(self) -> None:
        tf, scale, mos, n = check_measurement(self.twin_fraction, self.resolution_scale, self.mosaic,
                                              self.resolution_sampling)
        object.__setattr__(self, "twin_fraction", tf)
        object.__setattr__(self, "resolution_scale", scale)
        object.__setattr__(self, "mosaic", mos)
        object.__setattr__(self, "resolution_sampling", n)
        if self.measured_like is not None and not isinstance(self.measured_like, MeasuredLike):
            raise InputDataError(format_error(
                "measured_like is invalid", reason=f"got {type(self.measured_like).__name__}",
                fix="pass a simulate.measured_like.MeasuredLike or None"))

    def simulate_kwargs(self) -> dict[str, Any]:
        """Keywords for ``simulate_plan``, ``simulate_pair`` and ``simulate_mosaic_pair``."""
        return {
            "twin_fraction": self.twin_fraction,
            "resolution_scale": self.resolution_scale,
            "mosaic": self.mosaic,
            "resolution_sampling": self.resolution_sampling,
        }

    def describe(self) -> dict[str, Any]:
        """JSON-safe description (for metadata and data-set attributes)."""
        d: dict[str, Any] = dict(self.simulate_kwargs())
        d["measured_like"] = None if self.measured_like is None else self.measured_like.describe()
        return d


#: The calibrated PCSMO measurement model (until calibrated: the simulator as it was, with the
#: calibrated processing chain of :data:`~.measured_like.PCSMO_MEASURED_LIKE`).
PCSMO_MEASUREMENT_MODEL = MeasurementModel(measured_like=PCSMO_MEASURED_LIKE)
