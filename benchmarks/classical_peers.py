"""Classical peers of the deconvolution generator for ``bench_translate.py``.

Two peers, both given the **true** energy-resolution kernel of every column
(:func:`energy_kernel`, from the simulator's resolution model):

* ``richardson_lucy``: Richardson-Lucy, a fixed number of iterations (30), as scikit-image's
  ``restoration.richardson_lucy`` computes it (:func:`rl_snapshots` reproduces it exactly and
  also returns the intermediate iterates);
* ``tv_rl``: a noise-aware variant: total-variation denoising (scikit-image's
  ``denoise_tv_chambolle``, over (Qh, energy, Qk) of each incident energy in the mosaic, over
  the whole (Qh, Qk, E) volume) with weight ``w`` times the RMS of the input, then
  Richardson-Lucy stopped early after ``n`` iterations. ``(w, n)`` is chosen on held-out
  simulated pairs of the same kind of input (:func:`choose_parameters`), never on the test
  pairs; ``w = 0`` is plain early-stopped Richardson-Lucy and ``n = 0`` denoising alone.

Kernels: along energy a bin receives from a bin ``d`` away the fraction ``k[d] = mean over u in
[0, 1) of Phi((d + 1 - u) / s) - Phi((d - u) / s)``, ``s = sigma / bin width``. Each column
along energy gets the kernel of its own energy: in the mosaic one kernel per (Ei, energy
window), acting along the 10 windows of that Ei; in a volume one kernel per energy bin
(grouped in steps of 0.05 bins of sigma). The columns are deconvolved once per distinct kernel
and each keeps its own part. Masked bins enter as zeros and are masked again; inputs are
clipped at 0 (Richardson-Lucy needs non-negative data).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy.ndimage import convolve1d
from scipy.stats import norm

__all__ = [
    "ITERATIONS",
    "TV_WEIGHTS",
    "energy_kernel",
    "rl_snapshots",
    "mosaic_family",
    "volume_family",
    "choose_parameters",
]

#: Early-stopping iterations and TV weights (times the input's RMS) tried by :func:`choose_parameters`.
ITERATIONS = (0, 1, 2, 3, 5, 8, 12, 20, 30)
TV_WEIGHTS = (0.0, 0.03, 0.1, 0.3, 1.0)
#: Iterations of the fixed Richardson-Lucy peer.
RL_ITERATIONS = 30


def energy_kernel(sigma_bins: float, radius: int | None = None) -> np.ndarray:
    """Discrete bin-to-bin kernel of a Gaussian energy broadening (see the module notes).

    Parameters
    ----------
    sigma_bins
        Gaussian sigma in units of the bin width.
    radius
        Half-width in bins (default ``ceil(4 sigma) + 1``).

    Returns
    -------
    numpy.ndarray
        ``(2 radius + 1,)`` weights summing to 1.
    """
    s = max(float(sigma_bins), 1e-6)
    r = int(np.ceil(4 * s)) + 1 if radius is None else int(radius)
    u = (np.arange(256) + 0.5) / 256.0
    d = np.arange(-r, r + 1)[:, None]
    k = (norm.cdf((d + 1 - u) / s) - norm.cdf((d - u) / s)).mean(axis=1)
    return k / k.sum()


def rl_snapshots(image: np.ndarray, kernel: np.ndarray, axis: int, iterations: Sequence[int]) -> dict[int, np.ndarray]:
    """Richardson-Lucy along one axis, the iterate after each count in ``iterations``.

    Same arithmetic as scikit-image's ``richardson_lucy(image, psf, num_iter=n, clip=False,
    filter_epsilon=1e-12)`` with ``psf`` the 1D ``kernel`` along ``axis`` (start 0.5
    everywhere, zero-padded 'same' convolutions); count 0 is the input itself.
    """
    image = np.asarray(image, dtype=float)
    k = np.asarray(kernel, dtype=float)
    wanted = sorted({int(n) for n in iterations})
    out: dict[int, np.ndarray] = {}
    if 0 in wanted:
        out[0] = image.copy()
    u = np.full(image.shape, 0.5)
    # convolve1d centres odd kernels like scipy.signal.convolve(mode='same'); flipping gives the mirror
    for it in range(1, (wanted[-1] if wanted else 0) + 1):
        conv = convolve1d(u, k, axis=axis, mode="constant", cval=0.0) + 1e-12
        rel = np.where(conv < 1e-12, 0.0, image / conv)
        u = u * convolve1d(rel, k[::-1], axis=axis, mode="constant", cval=0.0)
        if it in wanted:
            out[it] = u.copy()
    return out


def _tv(block: np.ndarray, weight: float) -> np.ndarray:
    if weight <= 0:
        return block
    from skimage.restoration import denoise_tv_chambolle

    rms = float(np.sqrt(np.mean(block**2)))
    if rms == 0:
        return block
    return np.clip(denoise_tv_chambolle(block / rms, weight=weight), 0.0, None) * rms


def _family(src: np.ndarray, kernels: list[np.ndarray], axis: int, weights: Sequence[float],
            iterations: Sequence[int]) -> dict[tuple[float, int], np.ndarray]:
    """Denoise + RL of one block whose columns along ``axis`` each have their own kernel."""
    out: dict[tuple[float, int], np.ndarray] = {}
    groups: dict[tuple, list[int]] = {}
    for j, kern in enumerate(kernels):
        groups.setdefault(tuple(np.round(kern, 6)), []).append(j)
    for w in weights:
        den = _tv(src, float(w))
        res = {n: np.empty_like(src) for n in iterations}
        for key, cols in groups.items():
            snaps = rl_snapshots(den, np.asarray(key), axis, iterations)
            for n in iterations:
                index = [slice(None)] * src.ndim
                index[axis] = cols
                res[n][tuple(index)] = snaps[n][tuple(index)]
        for n in iterations:
            out[(float(w), int(n))] = res[n]
    return out


def mosaic_family(x: np.ndarray, resolution: Any, meta: dict, *, weights: Sequence[float] = (0.0,),
                  iterations: Sequence[int] = (RL_ITERATIONS,)) -> dict[tuple[float, int], np.ndarray]:
    """Every ``(tv weight, iterations)`` result for a ``pcsmo-mosaic-v1`` mosaic.

    Each incident-energy block is handled as a (Qh, window, Qk) stack: TV over all three axes,
    Richardson-Lucy along the windows with the kernel of each (Ei, window).
    """
    ei_list = [float(e) for e in meta.get("ei_list", [25, 35, 50, 70, 100, 140])]
    windows = np.asarray(meta.get("window_fractions", [[0.10 + 0.06 * j, 0.16 + 0.06 * j] for j in range(10)]))
    q = x.shape[0] // len(ei_list)
    nw = windows.shape[0]
    valid = np.isfinite(x)
    src = np.clip(np.where(valid, x, 0.0), 0.0, None)
    out = {(float(w), int(n)): np.empty_like(src) for w in weights for n in iterations}
    for b, ei in enumerate(ei_list):
        block = src[b * q:(b + 1) * q].reshape(q, nw, q)  # (Qh, window, Qk)
        width = (windows[:, 1] - windows[:, 0]) * ei
        sigma = np.asarray(resolution.energy_sigma(windows.mean(axis=1) * ei, ei), dtype=float)
        kernels = [energy_kernel(sigma[j] / width[j], radius=2) for j in range(nw)]
        for key, res in _family(block, kernels, 1, weights, iterations).items():
            out[key][b * q:(b + 1) * q] = res.reshape(q, nw * q)
    return {k: np.where(valid, v, np.nan) for k, v in out.items()}


def volume_family(x: np.ndarray, resolution: Any, e_centres: np.ndarray, e_width: float, ei: float, *,
                  weights: Sequence[float] = (0.0,),
                  iterations: Sequence[int] = (RL_ITERATIONS,)) -> dict[tuple[float, int], np.ndarray]:
    """Every ``(tv weight, iterations)`` result for a (Qh, Qk, E) volume (energy last)."""
    valid = np.isfinite(x)
    src = np.clip(np.where(valid, x, 0.0), 0.0, None)
    sigma = np.asarray(resolution.energy_sigma(np.asarray(e_centres), ei), dtype=float) / float(e_width)
    # kernels of neighbouring energies are nearly equal: one per 0.05-bin step of sigma
    kernels = [energy_kernel(round(float(s) / 0.05) * 0.05) for s in sigma]
    fam = _family(src, kernels, 2, weights, iterations)
    return {k: np.where(valid, v, np.nan) for k, v in fam.items()}


def choose_parameters(scores: dict[tuple[float, int], list[float]]) -> tuple[tuple[float, int], float]:
    """The ``(tv weight, iterations)`` with the best mean score (PSNR) on the held-out pairs."""
    means = {k: float(np.mean(v)) for k, v in scores.items() if v}
    best = max(means, key=lambda k: (means[k], -k[1], -k[0]))
    return best, means[best]
