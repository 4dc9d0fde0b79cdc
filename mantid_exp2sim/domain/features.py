"""Pooled feature vectors for the domain-of-applicability score.

The generator's encoder maps an input to a feature map ``(C, *spatial)``. Comparing whole
maps (the prior art flattened 256 x 64 x 64 maps into 1M-dimensional vectors) ties the score
to one input size and position; here each channel is summarised by its mean and standard
deviation over the (valid) spatial positions, giving a ``2 C`` vector that does not depend
on the input size. numpy only.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputDataError, format_error

__all__ = ["pooled_features", "downsample_mask"]


def downsample_mask(mask: np.ndarray, spatial: tuple[int, ...], *, min_fraction: float = 0.5) -> np.ndarray:
    """Bring a validity mask from input resolution to a feature map's resolution.

    Parameters
    ----------
    mask
        Boolean validity mask ``(N, *input_spatial)`` (True = valid).
    spatial
        Target spatial shape of the feature map.
    min_fraction
        A feature position is valid if at least this fraction of the input bins it covers is
        valid. Input sizes need not be whole multiples of the target (the blocks are the
        nearest-integer partition of each axis).

    Returns
    -------
    numpy.ndarray
        Boolean ``(N, *spatial)``.
    """
    m = np.asarray(mask, dtype=float)
    nd = len(spatial)
    if m.ndim != nd + 1:
        raise InputDataError(
            format_error(
                "mask has the wrong number of dimensions",
                reason=f"mask shape {m.shape}, feature map spatial shape {spatial}",
            )
        )
    out = m
    for ax, n_out in enumerate(spatial):
        n_in = out.shape[ax + 1]
        if n_in == n_out:
            continue
        edges = np.round(np.linspace(0, n_in, n_out + 1)).astype(int)
        edges[1:] = np.maximum(edges[1:], edges[:-1] + 1)
        edges = np.minimum(edges, n_in)
        csum = np.concatenate(
            [np.zeros_like(np.take(out, [0], axis=ax + 1)), np.cumsum(out, axis=ax + 1)], axis=ax + 1
        )
        hi = np.take(csum, edges[1:], axis=ax + 1)
        lo = np.take(csum, edges[:-1], axis=ax + 1)
        width = (edges[1:] - edges[:-1]).reshape([-1 if i == ax + 1 else 1 for i in range(out.ndim)])
        out = (hi - lo) / np.maximum(width, 1)
    return out >= min_fraction


def pooled_features(feature_maps: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Mean and standard deviation of each channel over the spatial positions.

    Parameters
    ----------
    feature_maps
        Encoder feature maps ``(N, C, *spatial)``.
    mask
        Optional validity mask, True = valid: ``(N, *spatial)``, ``(*spatial)`` (shared), or
        at input resolution ``(N, *input_spatial)`` (then reduced with
        :func:`downsample_mask`). Only valid positions are pooled.

    Returns
    -------
    numpy.ndarray
        ``(N, 2 C)`` float64: the C channel means, then the C channel standard deviations.
        A sample with no valid position gets NaN features.
    """
    f = np.asarray(feature_maps, dtype=np.float64)
    if f.ndim < 3:
        raise InputDataError(
            format_error(
                "feature_maps must have shape (N, C, *spatial)",
                reason=f"got shape {f.shape}",
                fix="pass a batch of encoder feature maps",
            )
        )
    n, c = f.shape[:2]
    spatial = f.shape[2:]
    flat = f.reshape(n, c, -1)
    if mask is None:
        w = np.ones((n, flat.shape[-1]))
    else:
        m = np.asarray(mask).astype(bool)
        if m.shape == spatial:
            m = np.broadcast_to(m, (n, *spatial))
        elif m.ndim == len(spatial) + 1 and m.shape[0] == n and m.shape[1:] != spatial:
            m = downsample_mask(m, spatial)
        if m.shape != (n, *spatial):
            raise InputDataError(
                format_error(
                    "mask does not match the feature maps",
                    reason=f"mask shape {np.shape(mask)}, feature maps {f.shape}",
                    fix="give a mask of shape (N, *spatial) or (*spatial)",
                )
            )
        w = m.reshape(n, -1).astype(float)
    count = w.sum(axis=1)  # (N,)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.einsum("ncp,np->nc", flat, w) / count[:, None]
        dev = flat - mean[:, :, None]
        var = np.einsum("ncp,np->nc", dev * dev, w) / count[:, None]
    std = np.sqrt(np.maximum(var, 0.0))
    out = np.concatenate([mean, std], axis=1)
    out[count == 0] = np.nan
    return out
