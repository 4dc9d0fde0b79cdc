"""Dimension-agnostic building blocks: one code path for 2D and 3D networks.

Every block records its geometry (kernel, stride, padding, upsampling factor) as
:class:`Geometry` entries, so receptive fields are computed from the layer list rather than
written down by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..errors import format_error

__all__ = [
    "SUPPORTED_NDIM",
    "PADDING_MODES",
    "check_ndim",
    "conv_cls",
    "instance_norm_cls",
    "make_conv",
    "make_activation",
    "Geometry",
    "receptive_interval",
    "ConvAct",
    "UpConvAct",
    "ReZeroBlock",
    "NceFeatureLayout",
]

SUPPORTED_NDIM = (2, 3)
PADDING_MODES = ("reflect", "zeros", "replicate")


def check_ndim(ndim: int) -> int:
    """Return ``ndim`` if it is 2 or 3, else raise ValueError naming the value."""
    if ndim not in SUPPORTED_NDIM:
        raise ValueError(
            format_error(
                "Unsupported number of spatial dimensions",
                reason=f"ndim={ndim!r}; allowed: 2 or 3",
                fix="pass ndim=2 for images (mosaics, slices) or ndim=3 for volumes",
            )
        )
    return int(ndim)


def conv_cls(ndim: int) -> type[nn.Module]:
    """``nn.Conv2d`` or ``nn.Conv3d``."""
    return {2: nn.Conv2d, 3: nn.Conv3d}[check_ndim(ndim)]


def instance_norm_cls(ndim: int) -> type[nn.Module]:
    """``nn.InstanceNorm2d`` or ``nn.InstanceNorm3d``."""
    return {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}[check_ndim(ndim)]


def make_conv(
    ndim: int,
    cin: int,
    cout: int,
    kernel: int,
    *,
    stride: int = 1,
    padding: int | None = None,
    padding_mode: str = "reflect",
    bias: bool = True,
) -> nn.Module:
    """A 2D/3D convolution; ``padding`` defaults to ``kernel // 2`` ("same" for odd kernels)."""
    if padding_mode not in PADDING_MODES:
        raise ValueError(
            format_error(
                "Unknown padding mode",
                reason=f"padding_mode={padding_mode!r}; allowed: {', '.join(PADDING_MODES)}",
            )
        )
    pad = kernel // 2 if padding is None else padding
    return conv_cls(ndim)(
        cin, cout, kernel, stride=stride, padding=pad, padding_mode=padding_mode, bias=bias
    )


def make_activation(name: str) -> nn.Module:
    """``"leaky_relu"`` (slope 0.2), ``"relu"`` or ``"silu"``."""
    if name == "leaky_relu":
        return nn.LeakyReLU(0.2)
    if name == "relu":
        return nn.ReLU()
    if name == "silu":
        return nn.SiLU()
    raise ValueError(
        format_error(
            "Unknown activation", reason=f"activation={name!r}; allowed: leaky_relu, relu, silu"
        )
    )


@dataclass(frozen=True)
class Geometry:
    """How one layer maps input positions to output positions along each spatial axis.

    ``kind="conv"``: output ``j`` reads inputs ``stride*j - padding ... stride*j - padding +
    kernel - 1``. ``kind="up"``: nearest-neighbour upsampling, output ``j`` reads input
    ``j // factor``.
    """

    kind: str
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    factor: int = 1


def receptive_interval(geometry: Sequence[Geometry], j: int) -> tuple[int, int]:
    """Input interval ``[lo, hi]`` that output position ``j`` of a layer chain depends on.

    Walks the chain backwards from the output. Padding bins are attributed to the nearest
    real bin, which never widens the interval for inputs larger than the field itself.
    """
    lo = hi = j
    for g in reversed(geometry):
        if g.kind == "conv":
            lo = g.stride * lo - g.padding
            hi = g.stride * hi - g.padding + g.kernel - 1
        elif g.kind == "up":
            lo = lo // g.factor
            hi = hi // g.factor
        else:  # pragma: no cover - programming error
            raise ValueError(f"unknown geometry kind {g.kind!r}")
    return lo, hi


class ConvAct(nn.Sequential):
    """Convolution followed by an activation."""

    def __init__(
        self,
        ndim: int,
        cin: int,
        cout: int,
        kernel: int,
        *,
        stride: int = 1,
        padding_mode: str = "reflect",
        activation: str = "leaky_relu",
    ) -> None:
        super().__init__(
            make_conv(ndim, cin, cout, kernel, stride=stride, padding_mode=padding_mode),
            make_activation(activation),
        )
        self.geometry = [Geometry("conv", kernel, stride, kernel // 2)]


class UpConvAct(nn.Sequential):
    """Nearest-neighbour x2 upsampling, convolution, activation.

    Chosen over a transposed convolution because it has no checkerboard artefacts and keeps
    the network translation-equivariant for even shifts in a simple way.
    """

    def __init__(
        self,
        ndim: int,
        cin: int,
        cout: int,
        kernel: int = 3,
        *,
        padding_mode: str = "reflect",
        activation: str = "leaky_relu",
    ) -> None:
        super().__init__(
            nn.Upsample(scale_factor=2, mode="nearest"),
            make_conv(ndim, cin, cout, kernel, padding_mode=padding_mode),
            make_activation(activation),
        )
        self.geometry = [Geometry("up", factor=2), Geometry("conv", kernel, 1, kernel // 2)]


class ReZeroBlock(nn.Module):
    """Normalisation-free residual block ``x + alpha * conv(act(conv(x)))``.

    ``alpha`` is one learnable scalar initialised at 0 (ReZero, Bachlechner et al. 2020;
    SkipInit, De & Smith 2020), so at initialisation the block is the identity and the signal
    variance cannot grow with depth; this replaces the instance norm of the prior art, whose
    per-input statistics would make tiled inference differ from whole-input inference.
    """

    def __init__(
        self,
        ndim: int,
        channels: int,
        kernel: int = 3,
        *,
        padding_mode: str = "reflect",
        activation: str = "leaky_relu",
    ) -> None:
        super().__init__()
        self.conv1 = make_conv(ndim, channels, channels, kernel, padding_mode=padding_mode)
        self.act = make_activation(activation)
        self.conv2 = make_conv(ndim, channels, channels, kernel, padding_mode=padding_mode)
        self.alpha = nn.Parameter(torch.zeros(()))
        self.geometry = [Geometry("conv", kernel, 1, kernel // 2)] * 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.alpha * self.conv2(self.act(self.conv1(x)))


class NceFeatureLayout:
    """PatchNCE feature ids of a ResNet-style generator: stem (0), each down stage
    (1..n_down), each residual block (n_down + 1 ..).

    Shared by :class:`~mantid_exp2sim.models.generator.ResnetGenerator` and
    :class:`~mantid_exp2sim.models.energy_stack_generator.EnergyStackGenerator`, which set
    ``ngf``, ``n_down`` and ``n_blocks``; stage ``i`` has ``ngf * 2**i`` channels and is
    downsampled ``2**i`` times (in (Qh, Qk) only for the energy-stack generator).
    """

    ngf: int
    n_down: int
    n_blocks: int

    @property
    def n_features(self) -> int:
        """Number of feature ids: stem, each down stage, each residual block."""
        return 1 + self.n_down + self.n_blocks

    def feature_channels(self, layer_ids: Sequence[int]) -> list[int]:
        """Channels of the feature maps ``nce_features`` returns for ``layer_ids``."""
        self._check_layer_ids(layer_ids)
        return [self.ngf * 2 ** min(i, self.n_down) for i in layer_ids]

    def feature_strides(self, layer_ids: Sequence[int]) -> list[int]:
        """Downsampling factor of each feature map relative to the input."""
        self._check_layer_ids(layer_ids)
        return [2 ** min(i, self.n_down) for i in layer_ids]

    def default_nce_layers(self) -> tuple[int, ...]:
        """The prior art's choice: each down stage, the first and the last-but-one block.

        For ``n_down=2, n_blocks=6``: ``(1, 2, 3, 7)``.
        """
        ids = list(range(1, self.n_down + 1))
        if self.n_blocks:
            ids += [self.n_down + 1, self.n_down + max(1, self.n_blocks - 1)]
        return tuple(sorted(set(ids or [0])))

    def _check_layer_ids(self, layer_ids: Sequence[int]) -> None:
        bad = [i for i in layer_ids if int(i) != i or not 0 <= i < self.n_features]
        if bad or len(layer_ids) == 0:
            raise ValueError(
                format_error(
                    "Invalid PatchNCE layer ids",
                    reason=(
                        f"layer_ids={list(layer_ids)!r}; allowed: 0 (stem), 1..{self.n_down} "
                        f"(down stages), {self.n_down + 1}..{self.n_features - 1} (residual blocks)"
                    ),
                    fix="pick ids from that range, e.g. default_nce_layers()",
                )
            )
