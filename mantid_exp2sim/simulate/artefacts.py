"""Measurement artefacts added to a (measured-like) mosaic: spurious peaks, a badly subtracted background, dead patches.

Used to test how robust a fitting objective is to what a real measurement carries beyond
counting noise (``benchmarks/bench_fit.py --latent-comparison``). Every function takes a 2D
spectrum (NaN = masked), returns a **new** array (the input is never modified), keeps every
NaN bin NaN, and draws what it is not given from a seeded ``numpy.random.Generator``:

* :func:`spurious_peaks`: a few bright compact spots (truncated 2D Gaussians, radius
  ``3 * width`` bins) added at unmasked positions: only positive intensity, only around
  the spots (e.g. a powder ring of the sample holder, an aluminium Bragg tail).
* :func:`background_residual`: a smooth, linear-in-energy residual per incident energy
  (what a badly scaled background run leaves, over- or under-subtracted), added to the
  unmasked bins, the result clipped at 0 like the published processing. Needs the
  ``pcsmo-mosaic-v1`` layout (row blocks of 40 per Ei, 10 energy windows of 40 columns).
* :func:`dead_patches`: rectangles of unmasked bins set to 0 (dead or switched-off
  detector tubes that the mask does not know about).

:func:`apply_artefact` applies one of them by name (:data:`ARTEFACTS`). numpy only.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import InputDataError, format_error
from ..mosaic import TILE

__all__ = ["ARTEFACTS", "spurious_peaks", "background_residual", "dead_patches", "apply_artefact"]

#: Artefact kinds known to :func:`apply_artefact`.
ARTEFACTS: tuple[str, ...] = ("spurious_peaks", "background_residual", "dead_patches")


def _spectrum(spectrum: Any) -> np.ndarray:
    arr = np.array(spectrum, dtype=float)  # a copy: the input is never modified
    if arr.ndim != 2:
        raise InputDataError(format_error(
            "spectrum must be a 2D array", reason=f"got shape {arr.shape}", fix="pass a mosaic (rows, columns)"))
    if not np.isfinite(arr).any():
        raise InputDataError(format_error(
            "spectrum has no unmasked bins", reason="every value is NaN", fix="pass a spectrum with data"))
    return arr


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _count(name: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise InputDataError(format_error(f"{name} is invalid", reason=f"got {value!r}; need a whole number >= {low}"))
    return int(value)


def _positive(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not (np.isfinite(v) and v > 0):
        raise InputDataError(format_error(f"{name} is invalid", reason=f"got {value!r}; need a finite value > 0"))
    return v


def spurious_peaks(spectrum: Any, *, n_peaks: int = 4, amplitude: float | None = None, width: float = 1.0,
                   centres: Sequence[tuple[int, int]] | None = None,
                   rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Add bright compact spots at unmasked positions.

    Parameters
    ----------
    spectrum
        2D array, NaN where masked.
    n_peaks
        Number of spots drawn at random unmasked bins (ignored when ``centres`` is given).
    amplitude
        Peak height of each spot (> 0, the spectrum's units); default: the largest unmasked
        value (as bright as the brightest feature).
    width
        Gaussian standard deviation of a spot in bins (> 0); a spot reaches ``ceil(3 width)``
        bins from its centre and no further.
    centres
        ``[(row, column), ...]`` of the spots (inside the array, on unmasked bins); default:
        drawn with ``rng``.
    rng
        Generator or seed for the drawn centres.

    Returns
    -------
    numpy.ndarray
        A new array: the input plus the spots at its unmasked bins (NaN bins stay NaN).
    """
    out = _spectrum(spectrum)
    finite = np.isfinite(out)
    w = _positive("width", width)
    amp = float(np.nanmax(out)) if amplitude is None else _positive("amplitude", amplitude)
    if amplitude is None and not amp > 0:
        raise InputDataError(format_error(
            "amplitude is needed", reason="the spectrum has no positive value to take it from",
            fix="pass amplitude > 0"))
    if centres is None:
        ok = np.flatnonzero(finite)
        n = _count("n_peaks", n_peaks)
        picked = _rng(rng).choice(ok, size=min(n, ok.size), replace=False)
        spots = [tuple(int(v) for v in np.unravel_index(k, out.shape)) for k in picked]
    else:
        spots = [tuple(int(v) for v in c) for c in centres]
        for r, c in spots:
            if not (0 <= r < out.shape[0] and 0 <= c < out.shape[1]) or not finite[r, c]:
                raise InputDataError(format_error(
                    "centres is invalid", reason=f"({r}, {c}) is outside the array {out.shape} or on a masked bin",
                    fix="give (row, column) of unmasked bins"))
    reach = int(np.ceil(3.0 * w))
    rows, cols = np.arange(out.shape[0])[:, None], np.arange(out.shape[1])[None, :]
    add = np.zeros_like(out)
    for r, c in spots:
        d2 = (rows - r) ** 2 + (cols - c) ** 2
        near = (np.abs(rows - r) <= reach) & (np.abs(cols - c) <= reach)
        add += np.where(near, amp * np.exp(-0.5 * d2 / (w * w)), 0.0)
    out[finite] += add[finite]
    return out


def _per_ei_values(name: str, value: Any, n_ei: int) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(value, dtype=float)).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, n_ei)
    if arr.size != n_ei or not np.isfinite(arr).all():
        raise InputDataError(format_error(
            f"{name} is invalid", reason=f"got {np.asarray(value).tolist()!r}",
            fix=f"give one finite value or {n_ei} (one per incident energy)"))
    return arr


def background_residual(spectrum: Any, *, offset: Any = None, slope: Any = None, strength: float = 0.5,
                        rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Add a badly subtracted background: linear in energy per incident energy, then clip at 0.

    For the incident-energy row block ``g`` and the energy window ``j`` (0 .. n_windows - 1,
    equally spaced in E / Ei), the residual is ``offset_g + slope_g * (j / (n_windows - 1) -
    1/2)``: ``slope_g`` is its change from the lowest to the highest energy window. Negative
    residuals (over-subtraction) make zeros after the clip, positive ones a sloping floor.

    Parameters
    ----------
    spectrum
        ``pcsmo-mosaic-v1`` array (row blocks of 40 per Ei, column blocks of 40 per energy
        window), NaN where masked.
    offset, slope
        One value or one per incident energy, the spectrum's units; default: drawn uniformly
        in ``+- strength * m`` (``m``: the mean unmasked value).
    strength
        Size of the drawn values relative to the mean unmasked value (> 0).
    rng
        Generator or seed for the drawn values.

    Returns
    -------
    numpy.ndarray
        A new array: ``max(spectrum + residual, 0)`` at the unmasked bins, NaN elsewhere.
    """
    out = _spectrum(spectrum)
    if out.shape[0] % TILE or out.shape[1] % TILE or out.shape[1] < 2 * TILE:
        raise InputDataError(format_error(
            "spectrum is not a pcsmo-mosaic-v1 mosaic", reason=f"shape {out.shape}",
            fix=f"pass a mosaic of row and column blocks of {TILE} (at least 2 energy windows)"))
    n_ei, n_win = out.shape[0] // TILE, out.shape[1] // TILE
    size = _positive("strength", strength) * float(np.nanmean(out))
    gen = _rng(rng)
    off = gen.uniform(-size, size, n_ei) if offset is None else _per_ei_values("offset", offset, n_ei)
    slp = gen.uniform(-size, size, n_ei) if slope is None else _per_ei_values("slope", slope, n_ei)
    window = np.repeat(np.arange(n_win) / (n_win - 1) - 0.5, TILE)[None, :]
    residual = np.repeat(off, TILE)[:, None] + np.repeat(slp, TILE)[:, None] * window
    finite = np.isfinite(out)
    out[finite] = np.clip(out[finite] + residual[finite], 0.0, None)
    return out


def dead_patches(spectrum: Any, *, n_patches: int = 3, size: tuple[int, int] = (8, 12),
                 patches: Sequence[tuple[int, int, int, int]] | None = None,
                 rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Set rectangular patches of unmasked bins to 0 (dead detectors the mask does not know about).

    Parameters
    ----------
    spectrum
        2D array, NaN where masked.
    n_patches
        Number of patches drawn (ignored when ``patches`` is given); each drawn patch lies
        inside the array and covers at least one unmasked bin.
    size
        ``(rows, columns)`` of a drawn patch (positive, at most the array's shape).
    patches
        ``[(row, column, n_rows, n_columns), ...]``: top-left corner and size of each patch,
        inside the array; default: drawn with ``rng``.
    rng
        Generator or seed for the drawn patches.

    Returns
    -------
    numpy.ndarray
        A new array: 0 at the unmasked bins of the patches, the input elsewhere (NaN stays
        NaN).
    """
    out = _spectrum(spectrum)
    finite = np.isfinite(out)
    if patches is None:
        n = _count("n_patches", n_patches)
        try:
            h, w = size
        except (TypeError, ValueError):
            raise InputDataError(format_error(
                "size is invalid", reason=f"got {size!r}", fix="give (rows, columns) of a patch")) from None
        h, w = _count("size", h), _count("size", w)
        if h > out.shape[0] or w > out.shape[1]:
            raise InputDataError(format_error(
                "size is invalid", reason=f"{(h, w)} is larger than the array {out.shape}",
                fix="use a smaller patch"))
        gen = _rng(rng)
        rects = []
        for _ in range(100 * n):
            if len(rects) == n:
                break
            r, c = int(gen.integers(0, out.shape[0] - h + 1)), int(gen.integers(0, out.shape[1] - w + 1))
            if finite[r:r + h, c:c + w].any():
                rects.append((r, c, h, w))
    else:
        rects = [tuple(int(v) for v in p) for p in patches]
        for r, c, h, w in rects:
            if h < 1 or w < 1 or r < 0 or c < 0 or r + h > out.shape[0] or c + w > out.shape[1]:
                raise InputDataError(format_error(
                    "patches is invalid", reason=f"{(r, c, h, w)} is not a rectangle inside the array {out.shape}",
                    fix="give (row, column, n_rows, n_columns) with positive sizes inside the array"))
    dead = np.zeros(out.shape, dtype=bool)
    for r, c, h, w in rects:
        dead[r:r + h, c:c + w] = True
    out[dead & finite] = 0.0
    return out


def apply_artefact(spectrum: Any, kind: str, rng: np.random.Generator | int | None = None,
                   **kwargs: Any) -> np.ndarray:
    """Apply the artefact ``kind`` (one of :data:`ARTEFACTS`, or ``"none"`` for a copy) with its defaults.

    ``kwargs`` go to the artefact's function.
    """
    funcs = {"spurious_peaks": spurious_peaks, "background_residual": background_residual,
             "dead_patches": dead_patches}
    if kind == "none":
        return _spectrum(spectrum)
    if kind not in funcs:
        raise InputDataError(format_error(
            "kind is invalid", reason=f"got {kind!r}; allowed: none, {', '.join(ARTEFACTS)}",
            fix="use one of the listed artefact kinds"))
    return funcs[kind](spectrum, rng=rng, **kwargs)
