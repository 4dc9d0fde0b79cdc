"""DUQ classifier that reads the mosaic as energy stacks: one branch per incident energy.

In the 240x400 mosaic, neighbouring energy windows of one (Qh, Qk) point are 40 columns
apart, so a network reading it as a picture hardly sees dispersion along energy. This network
takes the same input as :class:`~mantid_exp2sim.models.duq.DUQClassifier` (the scale-free
two-channel mosaic ``(N, 2, 240, 400)``, so bundles, ONNX inference and the task code are
unchanged) and rearranges it inside the graph (reshape and permute only, exact) into one
stack per incident energy: the 10 energy windows and their 10 valid masks as 20 channels
over the 40 x 40 (Qh, Qk) grid (:func:`mosaic_to_stack_channels`; the same values as
:func:`mantid_exp2sim.mosaic.mosaic_to_stacks`, with Qh in the mosaic's row order)::

    stacks (N, 6 x 20, 40, 40)
    conv3x3, groups 6 (one branch per Ei: 20 -> w0 each), BN, ReLU        (40 x 40)
    conv3x3 stride 2, groups 6 (w0 -> w1 each), BN, ReLU                  (20 x 20)
    conv3x3, 6 w1 -> w2 (the Ei branches meet), BN, ReLU, maxpool 2       (10 x 10)
    conv3x3, w2 -> w3, BN, ReLU                                           (10 x 10)
    average pool to 5 x 5 (where in the zone a feature sits matters)
    flatten, linear -> feature_dim, the DUQ head of duq.DUQHead

With ``per_ei_norm`` (default) each Ei stack's signal is divided, inside the graph, by its
own RMS over its unmasked bins (``sqrt(mean square + 1e-6)``, so an empty block stays 0): measured
spectra are normalised per incident energy in arbitrary units, so the ratio between Ei blocks
carries no physics, and this makes the classifier exactly invariant to it.

The first convolution sees every energy window of a (Qh, Qk) neighbourhood at once: a band's
dispersion through the windows is a local pattern across channels. The two first layers are
per-Ei branches (grouped convolutions: each Ei has its own filters, as the energy windows
are fractions of a different Ei); the branches meet in the third layer.

The feature maps have no energy axis left, so the activation map is not Grad-CAM but the
input-times-gradient attribution at mosaic resolution (``attribution = "input_gradient"``,
see :func:`mantid_exp2sim.models.gradcam.attribution_map`), which keeps the (Ei, window)
tile each piece of evidence came from.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import format_error
from ..mosaic import TILE
from .duq import DUQHead

__all__ = ["ENERGY_STACK_NAME", "EnergyStackDUQ", "build_energy_stack_duq", "mosaic_to_stack_channels"]

ENERGY_STACK_NAME = "EnergyStackDUQ"


def mosaic_to_stack_channels(x: torch.Tensor, n_ei: int, n_windows: int, tile: int = TILE) -> torch.Tensor:
    """``(N, C, n_ei*tile, n_windows*tile)`` -> ``(N, n_ei*C*n_windows, tile, tile)``.

    Channel ``(b * C + c) * n_windows + j`` holds input channel ``c`` of energy window ``j``
    at incident energy ``b``; rows keep the mosaic's order (Qh descending), columns are Qk
    ascending. Reshape and permute only.
    """
    n, c = x.shape[0], x.shape[1]
    y = x.reshape(n, c, n_ei, tile, n_windows, tile)  # [n, c, b, r, j, col]
    y = y.permute(0, 2, 1, 4, 3, 5)  # [n, b, c, j, r, col]
    return y.reshape(n, n_ei * c * n_windows, tile, tile)


class EnergyStackDUQ(DUQHead, nn.Module):
    """DUQ classifier on per-Ei energy stacks (see the module notes).

    Parameters
    ----------
    n_classes
        Number of classes.
    in_channels
        Input channels (2: scaled signal and valid mask).
    input_shape
        ``(H, W)`` of the mosaic; multiples of ``tile``.
    tile
        Bins per tile side (40).
    widths
        ``(w0, w1, w2, w3)``: channels per Ei branch of the first two convolutions, then of
        the two joint ones.
    pool
        Side of the pooled grid before the linear layer (5: 2 x 2 cells of the 10 x 10 map).
    feature_dim, embedding_dim, length_scale, gamma, batch_norm
        As for :class:`~mantid_exp2sim.models.duq.DUQClassifier`.
    per_ei_norm
        Divide each Ei stack by its own RMS (see the module notes).
    """

    architecture_name = ENERGY_STACK_NAME
    attribution = "input_gradient"

    def __init__(
        self,
        n_classes: int = 2,
        in_channels: int = 2,
        input_shape: Sequence[int] = (240, 400),
        tile: int = TILE,
        widths: Sequence[int] = (8, 16, 64, 64),
        pool: int = 5,
        feature_dim: int = 64,
        embedding_dim: int = 64,
        length_scale: float = 0.1,
        gamma: float = 0.99,
        batch_norm: bool = True,
        per_ei_norm: bool = True,
    ) -> None:
        super().__init__()
        h, w = (int(s) for s in input_shape)
        tile = int(tile)
        if h % tile or w % tile or len(widths) != 4 or tile % 4 or (tile // 4) % int(pool):
            raise ValueError(
                format_error(
                    "Invalid energy-stack classifier geometry",
                    reason=f"input_shape={tuple(input_shape)}, tile={tile}, pool={pool}, {len(widths)} widths; "
                    "the input must be whole tiles, tile/4 a multiple of pool, and there must be 4 widths",
                )
            )
        self.in_channels = int(in_channels)
        self.input_shape = (h, w)
        self.tile = tile
        self.n_ei, self.n_windows = h // tile, w // tile
        self.widths = tuple(int(c) for c in widths)
        self.pool = int(pool)
        self.batch_norm = bool(batch_norm)
        self.per_ei_norm = bool(per_ei_norm)
        g = self.n_ei
        w0, w1, w2, w3 = self.widths
        self.conv1 = nn.Conv2d(g * self.in_channels * self.n_windows, g * w0, 3, padding=1, groups=g)
        self.conv2 = nn.Conv2d(g * w0, g * w1, 3, stride=2, padding=1, groups=g)
        self.conv3 = nn.Conv2d(g * w1, w2, 3, padding=1)
        self.conv4 = nn.Conv2d(w2, w3, 3, padding=1)
        self.norms = nn.ModuleList(
            [nn.BatchNorm2d(c) if self.batch_norm else nn.Identity() for c in (g * w0, g * w1, w2, w3)]
        )
        self.cam_activation = nn.ReLU()
        self.fc = nn.Linear(w3 * self.pool * self.pool, feature_dim)
        self._init_head(n_classes, feature_dim, embedding_dim, length_scale, gamma)

    # ------------------------------------------------------------ description
    def _body_config(self) -> dict[str, Any]:
        return {"tile": self.tile, "widths": list(self.widths), "pool": self.pool, "per_ei_norm": self.per_ei_norm}

    # ---------------------------------------------------------------- forward
    def stacks(self, x: torch.Tensor) -> torch.Tensor:
        """The input as per-Ei energy stacks ``(N, n_ei * C * n_windows, tile, tile)``."""
        y = mosaic_to_stack_channels(x, self.n_ei, self.n_windows, self.tile)
        if not self.per_ei_norm:
            return y
        n, t = y.shape[0], self.tile
        y = y.reshape(n, self.n_ei, self.in_channels, self.n_windows * t * t)
        sig, rest = y[:, :, :1], y[:, :, 1:]
        count = rest[:, :, :1].sum(-1, keepdim=True).clamp_min(1.0)  # channel 1: the valid mask
        # sqrt(ms + 1e-6): a floor near 1e-3 that keeps the gradient finite for an empty block
        rms = ((sig * sig).sum(-1, keepdim=True) / count + 1e-6).sqrt()
        y = torch.cat([sig / rms, rest], 2)
        return y.reshape(n, -1, t, t)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Last convolutional activations ``(N, w3, tile/4, tile/4)``."""
        n1, n2, n3, n4 = self.norms
        y = F.relu(n1(self.conv1(self.stacks(x))))
        y = F.relu(n2(self.conv2(y)))
        y = F.max_pool2d(F.relu(n3(self.conv3(y))), 2)
        return self.cam_activation(n4(self.conv4(y)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """DUQ feature vectors ``(N, feature_dim)``."""
        y = self.feature_map(x)
        k = y.shape[-1] // self.pool
        y = F.avg_pool2d(y, k)
        return self.fc(torch.flatten(y, 1))


def build_energy_stack_duq(config: Mapping[str, Any]) -> EnergyStackDUQ:
    """Rebuild the classifier from :meth:`EnergyStackDUQ.config` (the bundle registry's builder)."""
    try:
        return EnergyStackDUQ(**dict(config))
    except TypeError as exc:
        raise ValueError(
            format_error(
                "Invalid energy-stack classifier config",
                reason=str(exc),
                fix="use EnergyStackDUQ.config() to produce configs",
            )
        ) from None
