"""The figure of ``exp2sim demo``: clean simulation, measured-like input, deconvolved, activation map,
domain distances."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import require
from ..histogram import MDHisto

__all__ = ["demo_figure"]


def _limits(*arrays: np.ndarray) -> tuple[float, float]:
    values = np.concatenate([a[np.isfinite(a)].ravel() for a in arrays])
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, [1.0, 99.5])
    return float(min(lo, 0.0)), float(hi if hi > lo else lo + 1.0)


def _mosaic_panel(ax: Any, histo: MDHisto, title: str, vmin: float, vmax: float, cmap: str = "viridis"):
    img = np.ma.masked_invalid(histo.signal)
    im = ax.imshow(img, origin="upper", aspect="equal", vmin=vmin, vmax=vmax, cmap=cmap, interpolation="nearest")
    ei = histo.metadata.get("ei_list") or []
    ax.set_yticks([20 + 40 * i for i in range(len(ei))], [f"{e:g}" for e in ei])
    ax.set_xticks([20 + 40 * j for j in range(10)], [str(j) for j in range(10)])
    ax.set_ylabel("Ei (meV)")
    ax.set_xlabel("energy window (0.10 + 0.06 j) Ei")
    ax.set_title(title, fontsize=10)
    return im


def demo_figure(measured: MDHisto, deconvolved: MDHisto, classification: Any, domain: Any, path: Path,
                clean: MDHisto | None = None, truth: MDHisto | None = None) -> Path:
    """Write the demo figure to ``path`` (PNG) and return the path.

    Panels: the clean simulation (when given) next to the measured-like one, the deconvolved
    spectrum, the activation map of ``classification``, the domain distances and the true
    unconvolved spectrum (when given). The spectra share one colour scale (give them all in
    the measurement's units).
    """
    require("matplotlib", extra="plot", feature="The demo figure")
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from ..domain.plot import plot_distance_distributions
    from ..io._atomic import atomic_path

    fig = Figure(figsize=(13, 13), constrained_layout=True)
    axes = fig.subplots(3, 2)
    spectra = [s.signal for s in (clean, measured, deconvolved) if s is not None]
    vmin, vmax = _limits(*spectra)
    if clean is not None:
        im = _mosaic_panel(axes[0, 0], clean, "clean simulation (resolution, no noise)", vmin, vmax)
        fig.colorbar(im, ax=axes[0, 0], shrink=0.8)
    else:
        axes[0, 0].set_axis_off()
    im = _mosaic_panel(axes[0, 1], measured, "simulated measurement (noise, background subtracted, zeros, mask)",
                       vmin, vmax)
    fig.colorbar(im, ax=axes[0, 1], shrink=0.8)
    im = _mosaic_panel(axes[1, 0], deconvolved, "measurement after ResolutionDeconvolveGAN", vmin, vmax)
    fig.colorbar(im, ax=axes[1, 0], shrink=0.8)
    cam = classification.activation_map
    if cam is not None:
        im = _mosaic_panel(axes[1, 1], cam, f"Grad-CAM for '{classification.prediction}'", 0.0, 1.0, cmap="magma")
        fig.colorbar(im, ax=axes[1, 1], shrink=0.8)
    else:
        axes[1, 1].text(0.5, 0.5, "activation map needs PyTorch", ha="center", va="center")
        axes[1, 1].set_axis_off()
    plot_distance_distributions({"this spectrum": domain}, ax=axes[2, 0], title="domain of applicability")
    if truth is not None:
        im = _mosaic_panel(axes[2, 1], truth, "true unconvolved spectrum (the deconvolution's target)", vmin, vmax)
        fig.colorbar(im, ax=axes[2, 1], shrink=0.8)
    else:
        axes[2, 1].set_axis_off()
    k = ", ".join(f"K_{c}={v:.2f}" for c, v in classification.K.items())
    fig.suptitle(f"Deconvolved spectrum classified as {classification.prediction} ({classification.verdict}; {k})")
    path = Path(path).absolute()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    return path
