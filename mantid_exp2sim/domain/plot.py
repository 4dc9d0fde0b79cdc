"""Plot several data sets' distance distributions side by side with the zone bands.

Needs matplotlib (the ``plot`` extra); imported only when a plot is asked for.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..errors import InputDataError, format_error, require
from .score import ZONES, DomainScore

__all__ = ["plot_distance_distributions", "ZONE_COLOURS"]

ZONE_COLOURS = {"trustworthy": "#b7e4c7", "expert opinion": "#ffe8a3", "untrustworthy": "#f4b6b6"}


def _as_distances(value: DomainScore | np.ndarray) -> np.ndarray:
    if isinstance(value, DomainScore):
        return np.asarray(value.distances, dtype=float)
    return np.asarray(value, dtype=float).ravel()


def plot_distance_distributions(
    distributions: Mapping[str, DomainScore | np.ndarray],
    thresholds: Mapping[str, float] | None = None,
    *,
    calibration: Mapping[str, Any] | None = None,
    set_size: int | None = None,
    ax: Any = None,
    title: str | None = None,
):
    """Violin plots of distance distributions, one per data set, over the zone bands.

    Parameters
    ----------
    distributions
        Data-set label -> :class:`DomainScore` or an array of costs, plotted left to right.
    thresholds
        ``{"trustworthy": t1, "untrustworthy": t2}``; default: the thresholds of the first
        :class:`DomainScore` given, or ``calibration["thresholds"][str(set_size)]``.
    calibration
        Calibration dict of the reference bank (used when ``thresholds`` is None).
    set_size
        Which calibrated set size to take the thresholds from (default: the smallest).
    ax
        Matplotlib axes to draw into; a new figure is made when None.
    title
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not distributions:
        raise InputDataError(format_error("Nothing to plot", reason="no distributions given"))
    require("matplotlib", extra="plot", feature="Plotting distance distributions")
    import matplotlib

    own_figure = ax is None
    if own_figure:
        import matplotlib.figure

        fig = matplotlib.figure.Figure(figsize=(1.2 + 1.1 * len(distributions), 4.0))
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    if thresholds is None:
        scored = [v for v in distributions.values() if isinstance(v, DomainScore) and v.thresholds]
        if scored:
            thresholds = scored[0].thresholds
        elif calibration is not None and calibration.get("thresholds"):
            table = calibration["thresholds"]
            key = str(set_size) if set_size is not None else min(table, key=int)
            thresholds = table[key]
    labels = list(distributions)
    data = [_as_distances(distributions[k]) for k in labels]
    lo = min(float(d.min()) for d in data)
    hi = max(float(d.max()) for d in data)
    if thresholds is not None:
        hi = max(hi, float(thresholds["untrustworthy"]))
    top = hi * 1.1 if hi > 0 else 1.0
    bottom = min(0.0, lo)
    if thresholds is not None:
        t1, t2 = float(thresholds["trustworthy"]), float(thresholds["untrustworthy"])
        for (a, b), zone in zip(((bottom, t1), (t1, t2), (t2, top)), ZONES):
            if b > a:
                ax.axhspan(a, b, color=ZONE_COLOURS[zone], alpha=0.8, zorder=0, label=zone)
    positions = np.arange(1, len(labels) + 1)
    parts = ax.violinplot(data, positions=positions, showmeans=True, showextrema=False)
    for body in parts["bodies"]:
        body.set_zorder(2)
    ax.set_xticks(positions)
    ax.set_xticklabels(labels, rotation=30, ha="right")
    ax.set_ylim(bottom, top)
    ax.set_ylabel("optimal-transport cost to the training set")
    if thresholds is not None:
        ax.legend(loc="upper left", fontsize="small")
    if title:
        ax.set_title(title)
    del matplotlib
    if own_figure:  # a caller's figure keeps its own layout engine
        fig.tight_layout()
    return fig
