"""Counting noise and a smooth background for "measured-like" simulated spectra.

Both are off by default and are applied to the convolved spectrum only: the unconvolved
spectrum is the clean target of a translation.

* :class:`SmoothBackground`: ``B(Q, E) = level * m * (1 + q_curvature |Q|^2) *
  exp(-E / (energy_scale * Ei))``, with ``m`` the mean of the clean convolved signal over the
  unmasked bins (so ``level`` is relative and the model's arbitrary intensity unit does not
  matter), ``|Q|`` in r.l.u. of the in-plane cell and ``E`` the bin's energy transfer.
* :class:`PoissonNoise`: ``flux`` is the expected number of counts in a bin whose intensity
  equals that mean ``m``; a bin of intensity ``x`` gets ``N ~ Poisson(flux * x / m)`` counts
  and the value ``N * m / flux``, with error (sigma) ``sqrt(N) * m / flux``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputDataError, format_error

__all__ = ["SmoothBackground", "PoissonNoise", "apply_noise"]


def _positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    v = float(value)
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise InputDataError(
            format_error(
                f"{name} is invalid",
                reason=f"got {value!r}; need a finite value {'>=' if allow_zero else '>'} 0",
            )
        )
    return v


@dataclass(frozen=True)
class SmoothBackground:
    """A smooth, positive background (see the module notes for the formula).

    Parameters
    ----------
    level
        Amplitude relative to the mean clean signal.
    energy_scale
        Decay energy as a fraction of Ei.
    q_curvature
        Growth with |Q|^2 (r.l.u.^-2).
    """

    level: float = 0.1
    energy_scale: float = 0.3
    q_curvature: float = 0.5

    def __post_init__(self) -> None:
        _positive("background level", self.level, allow_zero=True)
        _positive("background energy_scale", self.energy_scale)
        _positive("background q_curvature", self.q_curvature, allow_zero=True)

    def evaluate(self, qh: np.ndarray, qk: np.ndarray, e: np.ndarray, ei: np.ndarray, mean: float) -> np.ndarray:
        """Background at bin coordinates (all broadcastable); ``mean`` is the clean signal's mean."""
        q2 = np.asarray(qh, float) ** 2 + np.asarray(qk, float) ** 2
        return self.level * mean * (1.0 + self.q_curvature * q2) * np.exp(
            -np.asarray(e, float) / (self.energy_scale * np.asarray(ei, float))
        )

    def describe(self) -> dict:
        """JSON-safe description."""
        return {"level": self.level, "energy_scale": self.energy_scale, "q_curvature": self.q_curvature}


@dataclass(frozen=True)
class PoissonNoise:
    """Poisson counting noise; ``flux`` = expected counts in a bin of mean intensity."""

    flux: float

    def __post_init__(self) -> None:
        _positive("noise flux", self.flux)

    def describe(self) -> dict:
        """JSON-safe description."""
        return {"flux": self.flux}


def apply_noise(
    signal: np.ndarray,
    coords: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    *,
    noise: PoissonNoise | float | None,
    background: SmoothBackground | float | None,
    rng: np.random.Generator | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Add a background and counting noise to a clean signal.

    Parameters
    ----------
    signal
        Clean signal, NaN where masked (left NaN).
    coords
        ``(qh, qk, e, ei)`` of every bin, each broadcastable to ``signal``.
    noise
        :class:`PoissonNoise`, a flux, or None.
    background
        :class:`SmoothBackground`, a relative level, or None.
    rng
        Random generator for the noise (a fresh unseeded one if None).

    Returns
    -------
    (signal, errors)
        New arrays; ``errors`` (sigma) is None without noise.
    """
    if isinstance(noise, (int, float)) and not isinstance(noise, bool):
        noise = PoissonNoise(float(noise))
    if isinstance(background, (int, float)) and not isinstance(background, bool):
        background = SmoothBackground(level=float(background))
    out = np.array(signal, dtype=float, copy=True)
    finite = np.isfinite(out)
    if not finite.any() or (noise is None and background is None):
        return out, None
    mean = float(np.mean(np.abs(out[finite])))
    if mean <= 0:
        mean = 1.0
    if background is not None:
        qh, qk, e, ei = coords
        bg = np.broadcast_to(background.evaluate(qh, qk, e, ei, mean), out.shape)
        out[finite] += bg[finite]
    if noise is None:
        return out, None
    rng = rng if rng is not None else np.random.default_rng()
    lam = np.clip(out[finite], 0.0, None) * (noise.flux / mean)
    counts = rng.poisson(lam).astype(float)
    errors = np.full(out.shape, np.nan)
    out[finite] = counts * (mean / noise.flux)
    errors[finite] = np.sqrt(counts) * (mean / noise.flux)
    return out, errors
