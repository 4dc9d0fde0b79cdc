"""Conservation of integrated intensity by a translation.

Resolution convolution with a normalised kernel moves intensity between nearby bins but keeps
its integral, and so does its inverse. The generators learn this only approximately (an
intensity loss during training, docs/training.md); the shipped 3D convolution generator, for
one, adds about a third. So after the tiles are stitched, the whole output is multiplied by
one number,

    factor = sum(input) / sum(output)         over the unmasked bins,

which makes the two integrals equal. One factor per input keeps tiled inference equal to
whole-input inference and keeps ``G(c x) = c G(x)``.

The integral is only a meaningful quantity to conserve when the data are mostly positive. The
factor is not applied (and the reason is recorded) when either integral is not positive, or
when negative bins cancel more than half of it, as in strongly background-subtracted data:
``sum(x) < NET_FRACTION * sum(|x|)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

__all__ = [
    "IntensitySums",
    "ConservationResult",
    "conservation_factor",
    "conservation_warning",
    "NET_FRACTION",
    "SummingSink",
]

#: Smallest ``sum(x) / sum(|x|)`` of input and output for which the integral is conserved.
NET_FRACTION = 0.5


@dataclass(frozen=True)
class IntensitySums:
    """Integral and integrated absolute value over the unmasked (non-NaN) bins."""

    total: float = 0.0
    absolute: float = 0.0

    @classmethod
    def of(cls, values: Any) -> "IntensitySums":
        """Sums of one array (NaN bins are masked and skipped)."""
        a = np.asarray(values, dtype=np.float64)
        return cls(float(np.nansum(a)), float(np.nansum(np.abs(a))))

    def __add__(self, other: "IntensitySums") -> "IntensitySums":
        return IntensitySums(self.total + other.total, self.absolute + other.absolute)


@dataclass(frozen=True)
class ConservationResult:
    """Outcome of :func:`conservation_factor`: the factor, or None and why not."""

    factor: float | None
    reason: str

    def metadata(self) -> dict[str, Any]:
        """Keys recorded in a translation's metadata."""
        return {"intensity_factor": self.factor, "intensity_conservation": self.reason}


def _net_fraction(s: IntensitySums) -> float:
    return s.total / s.absolute if s.absolute > 0 else 0.0


def conservation_factor(source: IntensitySums, output: IntensitySums) -> ConservationResult:
    """The factor that gives ``output`` the integral of ``source``, when that is meaningful.

    Parameters
    ----------
    source, output
        Sums over the unmasked bins of the input and of the raw (unscaled) translation.

    Returns
    -------
    ConservationResult
        ``factor = source.total / output.total``; None (reason given) when either integral is
        not positive or is less than :data:`NET_FRACTION` of its integrated absolute value.
    """
    for name, s in (("input", source), ("output", output)):
        if not s.total > 0:
            return ConservationResult(None, f"not applied: the {name}'s integral is {s.total:.6g} (not positive)")
        if _net_fraction(s) < NET_FRACTION:
            return ConservationResult(
                None,
                f"not applied: negative bins cancel most of the {name}'s integral "
                f"(sum {s.total:.6g}, sum of |x| {s.absolute:.6g})",
            )
    return ConservationResult(source.total / output.total, "applied")


def conservation_warning(metadata: Mapping[str, Any]) -> str | None:
    """The warning to show when intensity conservation was asked for but skipped.

    Parameters
    ----------
    metadata
        A translation's metadata (``intensity_conservation`` as recorded by
        :meth:`ConservationResult.metadata`).

    Returns
    -------
    str or None
        One line naming the reason and the consequence; None when conservation was applied
        or switched off on purpose.
    """
    reason = str(metadata.get("intensity_conservation") or "")
    if not reason.startswith("not applied"):
        return None
    why = reason.partition(":")[2].strip() or reason
    return (
        f"the integrated intensity was not conserved: {why}; the output keeps the network's own "
        "intensity (check the input: are most of its bins negative, e.g. after background subtraction?)"
    )


class SummingSink:
    """Array-like sink that forwards writes and accumulates :class:`IntensitySums` of them.

    Every output bin must be written exactly once (the tiler writes disjoint cores).
    """

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self.shape = tuple(sink.shape)
        self.sums = IntensitySums()

    def __setitem__(self, key: Any, value: np.ndarray) -> None:
        self.sums = self.sums + IntensitySums.of(value)
        self.sink[key] = value
