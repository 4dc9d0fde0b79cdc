"""Scale-free network inputs and outputs (numpy only; no torch needed).

Measured intensities come in arbitrary units, so every network sees the input divided by one
number per input, its root-mean-square over the unmasked bins::

    scale = sqrt(mean(x ** 2))            over the non-NaN bins of the *whole* input
    input = [x / scale with NaN -> 0,     channel 0: the scaled signal
             valid mask]                  channel 1: 1.0 where x was a number, 0.0 where NaN
    output = y * scale                    NaN again at the bins that were masked

The scale is fixed per input (never per tile or per batch), so tiled inference equals
whole-input inference and every network is exactly scale-equivariant: ``G(c x) = c G(x)``
for any ``c > 0`` (the network sees the same numbers for ``x`` and ``c x``).

Negative bins are allowed (background-subtracted data); they enter the RMS squared.

A zero signal (every unmasked bin exactly 0) has ``scale = 0``. :func:`to_network_input` then
feeds zeros (no division by zero) and :func:`from_network_output` multiplies by 0, so the
output is zero at every unmasked bin, which is the only answer consistent with
``G(c x) = c G(x)``.

Spatial padding helpers (:func:`pad_to_multiple`, :func:`crop_padding`) define what
"whole-input inference" means for sizes that are not a multiple of a generator's
``spatial_multiple``: pad at the *end* of each spatial axis (the origin stays put, so tile
offsets that are multiples of ``spatial_multiple`` keep their alignment), run the network,
crop back. They work on numpy arrays and torch tensors alike.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import InputDataError, format_error

__all__ = [
    "intensity_scale",
    "IntensityScaleAccumulator",
    "valid_mask",
    "to_network_input",
    "from_network_output",
    "pad_to_multiple",
    "crop_padding",
    "PAD_MODES",
]

PAD_MODES = ("replicate", "reflect")

# Rows of the first axis processed at once when streaming a large or on-disk (h5py) array.
_CHUNK_ELEMENTS = 1 << 22
#: Largest |value| whose square, summed over ~1e8 bins, stays finite in float64.
_MAX_SAFE = 1e150


class IntensityScaleAccumulator:
    """Streamed RMS over the unmasked bins of an input given in pieces.

    Feed every piece of one input to :meth:`update` (any shapes, any order), then read
    :attr:`scale`. Used by :func:`intensity_scale` for inputs too large to square at once.
    The same pass also sums the unmasked bins (``total``) and their absolute values
    (``total_abs``), which intensity conservation needs.
    """

    def __init__(self) -> None:
        self.sum_sq = 0.0
        self.count = 0
        self.total = 0.0
        self.total_abs = 0.0

    def update(self, chunk: Any) -> None:
        """Add one piece of the input (NaN = masked; +-inf and overflowing values are errors)."""
        a = np.asarray(chunk, dtype=np.float64)
        finite = np.isfinite(a)
        n_inf = int(np.count_nonzero(np.isinf(a)))
        if n_inf:
            raise InputDataError(
                format_error(
                    "The signal contains infinite values",
                    reason=f"{n_inf} bin(s) are +-inf; only numbers and NaN (masked) are allowed",
                    fix="mask those bins (set them to NaN) or remove them before translating",
                )
            )
        vals = a[finite]
        with np.errstate(over="ignore", invalid="ignore"):
            # einsum, not np.dot: a BLAS call leaves OpenBLAS threads spinning on the cores the
            # network needs next (measured: the following ONNX call ran ~50% slower)
            self.sum_sq += float(np.einsum("i,i->", vals, vals))
            self.total += float(vals.sum())
            self.total_abs += float(np.abs(vals).sum())
        self.count += int(vals.size)
        if not (np.isfinite(self.sum_sq) and np.isfinite(self.total_abs)):
            largest = float(np.abs(vals).max()) if vals.size else float("nan")
            raise InputDataError(
                format_error(
                    "The signal's values are too large to process",
                    reason=f"the largest |value| is {largest:.3g}, and the sum of their squares overflows "
                    f"double precision (about {_MAX_SAFE:.0e} is the safe limit)",
                    fix="check the units, or rescale the data (multiply the signal and errors by a constant "
                    f"such as 1e{-int(np.ceil(np.log10(largest))) if largest > 0 else 0}) and scale any result back",
                )
            )

    @property
    def scale(self) -> float:
        """sqrt(mean(x**2)) over every unmasked bin seen so far (0.0 for a zero signal)."""
        if self.count == 0:
            raise InputDataError(
                format_error(
                    "Cannot normalise the signal intensity",
                    reason="the signal has no unmasked bins (every bin is NaN or the array is empty)",
                    fix="check the input's masking and binning; at least one bin must hold a number",
                )
            )
        return float(np.sqrt(self.sum_sq / self.count))


def intensity_scale(signal: Any) -> float:
    """Root-mean-square of the unmasked bins of one whole input.

    Parameters
    ----------
    signal
        Array of any shape (a numpy array or anything sliceable along axis 0 with a
        ``shape``, such as an h5py dataset; large inputs are read in pieces). NaN marks a
        masked bin. Negative values are allowed.

    Returns
    -------
    float
        ``sqrt(mean(x**2))`` over the non-NaN bins, computed in float64. Exactly 0.0 when every
        unmasked bin is 0 (see the module docstring for how a zero scale is handled).

    Raises
    ------
    InputDataError
        When there is no unmasked bin, or when a bin is +-inf.
    """
    acc = IntensityScaleAccumulator()
    shape = tuple(getattr(signal, "shape", np.shape(signal)))
    size = int(np.prod(shape)) if shape else 1
    if len(shape) >= 1 and size > _CHUNK_ELEMENTS and shape[0] > 1:
        rows = max(1, _CHUNK_ELEMENTS // max(1, size // shape[0]))
        for start in range(0, shape[0], rows):
            acc.update(signal[start : start + rows])
    else:
        acc.update(signal)
    return acc.scale


def valid_mask(signal: Any) -> np.ndarray:
    """Boolean array, True where ``signal`` holds a number (not NaN)."""
    return ~np.isnan(np.asarray(signal, dtype=np.float64))


def _check_scale(scale: Any, n: int) -> np.ndarray:
    s = np.asarray(scale, dtype=np.float64).reshape(-1)
    if s.size == 1:
        s = np.repeat(s, n)
    if s.size != n or not np.all(np.isfinite(s)) or np.any(s < 0):
        raise InputDataError(
            format_error(
                "Invalid intensity scale",
                reason=f"scale={scale!r}; expected one finite number >= 0 (or one per sample, {n})",
                fix="compute it with intensity_scale(signal) on the whole input",
            )
        )
    return s


def to_network_input(signal: Any, scale: Any, *, batched: bool = False) -> np.ndarray:
    """Two-channel, scale-free network input.

    Parameters
    ----------
    signal
        One input of shape ``spatial`` (``batched=False``), or ``(N, *spatial)`` samples
        (``batched=True``). NaN = masked. Not modified.
    scale
        The input's :func:`intensity_scale` (one number, or one per sample when batched).
        0 gives an all-zero signal channel (see the module docstring).
    batched
        Whether axis 0 of ``signal`` indexes samples.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(N, 2, *spatial)`` (N = 1 when not batched): channel 0 is
        ``signal / scale`` with NaN replaced by 0, channel 1 the valid mask (1.0 = unmasked,
        0.0 = masked).
    """
    x = np.asarray(signal, dtype=np.float64)
    if not batched:
        x = x[None]
    if x.ndim < 2:
        raise InputDataError(
            format_error(
                "The signal has no spatial axes",
                reason=f"shape {np.shape(signal)} with batched={batched}",
                fix="pass an array with at least one spatial axis",
            )
        )
    if np.any(np.isinf(x)):
        raise InputDataError(
            format_error(
                "The signal contains infinite values",
                reason=f"{int(np.count_nonzero(np.isinf(x)))} bin(s) are +-inf",
                fix="mask those bins (set them to NaN) before translating",
            )
        )
    s = _check_scale(scale, x.shape[0])
    valid = ~np.isnan(x)
    inv = np.where(s > 0, 1.0 / np.where(s > 0, s, 1.0), 0.0)
    inv = inv.reshape((-1,) + (1,) * (x.ndim - 1))
    sig = np.where(valid, x, 0.0) * inv
    out = np.empty((x.shape[0], 2) + x.shape[1:], dtype=np.float32)
    out[:, 0] = sig
    out[:, 1] = valid
    return out


def from_network_output(y: Any, scale: Any, mask: Any, *, batched: bool = False) -> np.ndarray:
    """Undo :func:`to_network_input` on a generator's output.

    Parameters
    ----------
    y
        Network output, shape ``(N, C, *spatial)`` (numpy array or CPU torch tensor).
    scale
        The same scale given to :func:`to_network_input` (one, or one per sample).
    mask
        Valid mask of the input (True / 1 = unmasked), broadcastable to ``(N, *spatial)``;
        typically ``valid_mask(signal)`` or channel 1 of the network input.
    batched
        False: ``y`` must hold one sample, returned without the sample axis.

    Returns
    -------
    numpy.ndarray
        float64 ``y * scale`` with NaN where ``mask`` is 0. The channel axis is dropped when
        C == 1 (generators), so a single 1-channel output comes back with shape ``spatial``.
    """
    if hasattr(y, "detach"):
        y = y.detach().cpu().numpy()
    a = np.asarray(y, dtype=np.float64)
    if a.ndim < 3:
        raise InputDataError(
            format_error(
                "Network output has the wrong number of axes",
                reason=f"shape {a.shape}; expected (N, C, *spatial)",
                fix="pass the raw output of the network",
            )
        )
    if not batched and a.shape[0] != 1:
        raise InputDataError(
            format_error(
                "Network output holds several samples",
                reason=f"N = {a.shape[0]} with batched=False",
                fix="pass batched=True to keep the sample axis",
            )
        )
    s = _check_scale(scale, a.shape[0]).reshape((-1,) + (1,) * (a.ndim - 1))
    out = a * s
    m = np.asarray(mask)
    if hasattr(mask, "detach"):
        m = mask.detach().cpu().numpy()
    m = m.astype(bool)
    # the mask has no channel axis: (spatial), (N, spatial) or (N, 1, spatial)
    if m.ndim == a.ndim:
        if m.shape[1] != 1:
            raise InputDataError(
                format_error(
                    "The mask has several channels",
                    reason=f"mask shape {m.shape}; expected (*spatial), (N, *spatial) or (N, 1, *spatial)",
                    fix="pass the valid mask (channel 1 of the network input), not the whole input",
                )
            )
        m = m[:, 0]
    if m.ndim == a.ndim - 2:
        m = m[None]
    try:
        m = np.broadcast_to(m[:, None], a.shape)
    except ValueError:
        raise InputDataError(
            format_error(
                "The mask does not match the network output",
                reason=f"mask shape {np.shape(mask)}, output shape {a.shape}",
                fix="pass the valid mask of the same input (crop any padding first)",
            )
        ) from None
    out = np.where(m, out, np.nan)
    if out.shape[1] == 1:
        out = out[:, 0]
    if not batched:
        out = out[0]
    return out


def _pad_index(n: int, after: int, mode: str) -> np.ndarray:
    idx = np.arange(n + after)
    if mode == "replicate" or n == 1:
        return np.minimum(idx, n - 1)
    # reflect without repeating the edge, folding as often as needed (period 2n - 2)
    period = 2 * n - 2
    r = idx % period
    return np.where(r < n, r, period - r)


def pad_to_multiple(
    x: Any, multiple: int, *, spatial_ndim: int | None = None, mode: str = "replicate"
) -> tuple[Any, tuple[int, ...]]:
    """Pad the trailing spatial axes at their end up to a multiple of ``multiple``.

    Parameters
    ----------
    x
        numpy array or torch tensor, ``(..., *spatial)``; e.g. a network input ``(N, C, *spatial)``.
    multiple
        Target multiple (a generator's ``spatial_multiple``, 2**n_down).
    spatial_ndim
        Number of trailing spatial axes (default: ``x.ndim - 2``, the network layout).
    mode
        ``"replicate"`` (copy the last bin) or ``"reflect"`` (mirror without repeating the
        last bin). Both keep the mask channel consistent with the signal channel.

    Returns
    -------
    padded, pads
        The padded array (same type as ``x``; ``x`` itself when no padding is needed) and the
        number of bins added at the end of each spatial axis, for :func:`crop_padding`.
    """
    if mode not in PAD_MODES:
        raise ValueError(
            format_error(
                "Unknown padding mode",
                reason=f"mode={mode!r}; allowed: {', '.join(PAD_MODES)}",
                fix="pick one of the allowed modes",
            )
        )
    if int(multiple) != multiple or multiple < 1:
        raise ValueError(
            format_error("Invalid padding multiple", reason=f"multiple={multiple!r}; expected an integer >= 1")
        )
    nd = x.ndim - 2 if spatial_ndim is None else int(spatial_ndim)
    if nd < 1 or nd > x.ndim:
        raise ValueError(
            format_error(
                "Invalid number of spatial axes",
                reason=f"spatial_ndim={nd} for an array with {x.ndim} axes",
            )
        )
    shape = tuple(x.shape[x.ndim - nd :])
    pads = tuple((-n) % int(multiple) for n in shape)
    out = x
    for k, (n, after) in enumerate(zip(shape, pads)):
        if after == 0:
            continue
        axis = x.ndim - nd + k
        idx = _pad_index(int(n), after, mode)
        if hasattr(out, "index_select"):  # torch tensor: keep it on its device
            import torch

            out = out.index_select(axis, torch.as_tensor(idx, device=out.device))
        else:
            out = np.take(out, idx, axis=axis)
    return out, pads


def crop_padding(y: Any, pads: Sequence[int]) -> Any:
    """Remove what :func:`pad_to_multiple` added: crop the trailing spatial axes of ``y``.

    ``y`` may have a different number of leading axes than the padded input, as long as its
    last ``len(pads)`` axes are the spatial ones.
    """
    nd = len(pads)
    sl = [slice(None)] * (y.ndim - nd) + [slice(0, n - p) for n, p in zip(y.shape[y.ndim - nd :], pads)]
    return y[tuple(sl)]
