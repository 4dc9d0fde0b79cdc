"""Figure of a fit: data, best fit and residual per incident energy, and the parameter correlations.

One row of panels per fitted model: the data, the model's best fit (scale and background
included) and the residual (data - fit) as images of the mosaic with the incident-energy
blocks marked, and the correlation matrix of the model's free parameters. matplotlib only
(its object API and the Agg canvas: no pyplot state, no display needed).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["plot_fit"]


def plot_fit(signal: np.ndarray, results: Sequence[Any], *, ei_list: Sequence[float] | None = None,
             block: int = 40, title: str | None = None) -> Any:
    """The figure of the module notes.

    Parameters
    ----------
    signal
        The fitted spectrum, 2D (a mosaic; NaN = masked).
    results
        :class:`~mantid_exp2sim.fitting.FitResult` objects (``best_fit``, ``residual``,
        ``correlation``, ``free``, ``model``, ``chi2``, ``reduced_chi2``, ``r2``).
    ei_list
        Incident energies of the row blocks (labels), default none.
    block
        Rows per incident-energy block.
    title
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        Not saved; ``fig.savefig(path)`` writes it.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    y = np.asarray(signal, dtype=float)
    y2 = y.reshape(y.shape[-2:]) if y.ndim > 2 else y
    n = max(1, len(results))
    fig = Figure(figsize=(17, 3.2 * n + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, 4, squeeze=False, width_ratios=[1, 1, 1, 0.55])
    finite = y2[np.isfinite(y2)]
    vmax = float(np.percentile(finite, 99.5)) if finite.size else 1.0
    vmin = float(min(0.0, np.percentile(finite, 0.5))) if finite.size else 0.0
    for row, r in zip(axes, results):
        fit = np.asarray(r.best_fit, dtype=float).reshape(y2.shape)
        res = np.asarray(r.residual, dtype=float).reshape(y2.shape)
        rfin = np.abs(res[np.isfinite(res)])
        rmax = float(np.percentile(rfin, 99.0)) if rfin.size else 1.0
        panels = ((y2, "data", "viridis", vmin, vmax), (fit, f"{r.model}: best fit", "viridis", vmin, vmax),
                  (res, f"{r.model}: residual (data - fit)", "RdBu_r", -rmax, rmax))
        for ax, (img, label, cmap, lo, hi) in zip(row[:3], panels):
            im = ax.imshow(np.ma.masked_invalid(img), origin="lower", aspect="auto", cmap=cmap, vmin=lo, vmax=hi,
                           interpolation="nearest")
            for b in range(block, img.shape[0], block):
                ax.axhline(b - 0.5, color="k", lw=0.6)
            if ei_list is not None:
                ticks = [block * (k + 0.5) for k in range(min(len(ei_list), img.shape[0] // block))]
                ax.set_yticks(ticks, [f"Ei {e:g}" for e in ei_list[:len(ticks)]])
            ax.set_title(label, fontsize=9)
            ax.set_xlabel("energy windows (mosaic columns)", fontsize=8)
            fig.colorbar(im, ax=ax, shrink=0.85)
        row[0].set_ylabel("(Qh, Qk) per Ei block", fontsize=8)
        ax = row[3]
        corr = np.asarray(r.correlation, dtype=float)
        names = list(r.free)
        if corr.size and names:
            im = ax.imshow(corr, cmap="RdBu_r", vmin=-1, vmax=1)
            ax.set_xticks(range(len(names)), names, rotation=90, fontsize=8)
            ax.set_yticks(range(len(names)), names, fontsize=8)
            for i in range(len(names)):
                for j in range(len(names)):
                    ax.text(j, i, f"{corr[i, j]:.2f}", ha="center", va="center", fontsize=6)
            fig.colorbar(im, ax=ax, shrink=0.85)
        else:
            ax.text(0.5, 0.5, "no free parameter", ha="center", va="center")
            ax.set_axis_off()
        ax.set_title(f"correlations; chi2/dof {r.reduced_chi2:.3g}, R^2 {r.r2:.3f}", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig
