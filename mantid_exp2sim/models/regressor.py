"""Parameter-estimation network (seed 002): a spectrum -> a spin model's parameters with errors.

Input: the scale-free two-channel mosaic ``(N, 2, 240, 400)`` of
:func:`mantid_exp2sim.models.normalisation.to_network_input` (signal / RMS of the unmasked
bins with NaN -> 0, and the valid mask), as the classifier's. Output ``(N, 2, P)``: row 0 the
parameters normalised to their sampling ranges (``(theta - lo) / (hi - lo)``, about 0..1),
row 1 ``log sigma`` of each, in the same normalised units (a Gaussian likelihood head).

Network (about 0.1 M parameters; CPU-trainable in minutes on 1 thread)::

    average pool 2                          (120 x 200; counting noise averaged first)
    conv4x4 stride 2, 2->w0, BN, ReLU       (60 x 100)
    conv3x3 stride 2, w0->w1, BN, ReLU      (30 x 50)
    conv3x3 w1->w2, BN, ReLU                (30 x 50)
    average pool to the 6 x 10 tile grid    (one cell per (Ei, energy window) tile)
    flatten, linear -> hidden, ReLU, linear -> 2P

Pooling to one cell per mosaic tile keeps *where* in (Ei, energy) a band sits, which is what
sets the exchange constants. ``log sigma`` is clamped to [-7, 2] so the likelihood cannot
diverge on a sample it fits exactly.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..errors import InputDataError, format_error

__all__ = ["ARCHITECTURE_NAME", "ParameterRegressor", "build_regressor", "gaussian_nll"]

#: Name under which the bundle registry finds :func:`build_regressor`.
ARCHITECTURE_NAME = "ParameterRegressor"
LOG_SIGMA_MIN, LOG_SIGMA_MAX = -7.0, 2.0
#: The mosaic's tile grid (Ei blocks x energy windows) the features are pooled to.
TILE_GRID = (6, 10)


class ParameterRegressor(nn.Module):
    """CNN with a Gaussian likelihood head (see the module notes).

    Parameters
    ----------
    n_params
        Number of model parameters ``P``.
    input_shape
        Spatial shape of the mosaic (default 240 x 400).
    widths
        Channels of the three convolutions.
    hidden
        Width of the hidden linear layer.
    """

    ndim = 2
    in_channels = 2

    def __init__(self, n_params: int, input_shape: Sequence[int] = (240, 400), widths: Sequence[int] = (16, 32, 32),
                 hidden: int = 128) -> None:
        super().__init__()
        if int(n_params) < 1 or len(widths) != 3 or len(input_shape) != 2:
            raise InputDataError(format_error(
                "Invalid regressor settings", reason=f"n_params={n_params}, widths={list(widths)}, "
                f"input_shape={list(input_shape)}", fix="one or more parameters, three widths, a 2D input"))
        self.n_params = int(n_params)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.widths = tuple(int(w) for w in widths)
        self.hidden = int(hidden)
        w0, w1, w2 = self.widths
        self.features = nn.Sequential(
            nn.AvgPool2d(2),
            nn.Conv2d(2, w0, 4, stride=2, padding=1), nn.BatchNorm2d(w0), nn.ReLU(inplace=True),
            nn.Conv2d(w0, w1, 3, stride=2, padding=1), nn.BatchNorm2d(w1), nn.ReLU(inplace=True),
            nn.Conv2d(w1, w2, 3, padding=1), nn.BatchNorm2d(w2), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(TILE_GRID),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(w2 * TILE_GRID[0] * TILE_GRID[1], self.hidden), nn.ReLU(inplace=True),
            nn.Linear(self.hidden, 2 * self.n_params),
        )

    @property
    def out_channels(self) -> int:
        """Parameters estimated (the manifest's ``out_channels``)."""
        return self.n_params

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 2, H, W)`` -> ``(N, 2, P)``: normalised estimates and their ``log sigma``."""
        out = self.head(self.features(x)).view(-1, 2, self.n_params)
        mean = out[:, 0]
        log_sigma = torch.clamp(out[:, 1], LOG_SIGMA_MIN, LOG_SIGMA_MAX)
        return torch.stack([mean, log_sigma], dim=1)

    def architecture(self) -> dict[str, Any]:
        """``{"name", "config"}`` for the bundle manifest (:func:`build_regressor` rebuilds it)."""
        return {"name": ARCHITECTURE_NAME, "config": {
            "n_params": self.n_params, "input_shape": list(self.input_shape), "widths": list(self.widths),
            "hidden": self.hidden, "ndim": 2, "in_channels": 2}}


def build_regressor(config: Mapping[str, Any]) -> ParameterRegressor:
    """Rebuild a :class:`ParameterRegressor` from its ``architecture()["config"]``."""
    cfg = {k: v for k, v in dict(config).items() if k not in ("ndim", "in_channels")}
    return ParameterRegressor(**cfg)


def gaussian_nll(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean Gaussian negative log-likelihood of ``target`` ``(N, P)`` under ``out`` ``(N, 2, P)``.

    ``0.5 ((t - mu) / sigma)^2 + log sigma`` per parameter (constant dropped).
    """
    mu, log_sigma = out[:, 0], out[:, 1]
    z = (target - mu) * torch.exp(-log_sigma)
    return (0.5 * z ** 2 + log_sigma).mean()
