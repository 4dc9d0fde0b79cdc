"""Normalisation-free ResNet generator of Exp2SimGAN, one implementation for 2D and 3D.

Layout (``n_down = 2``, ``n_blocks = 6``, channels for ``ngf = 32``)::

    input (N, 2, *S)         channel 0 = scaled signal, channel 1 = valid mask
    stem      kxk conv 2->32, act                                    feature id 0
    down 1    3x3 conv stride 2, 32->64, act            (S/2)        feature id 1
    down 2    3x3 conv stride 2, 64->128, act           (S/4)        feature id 2
    block b   x + alpha_b * conv3(act(conv3(x))), 128   (S/4)        feature id 2 + b
    up 1, 2   nearest x2, 3x3 conv, act (128->64->32), + down-1 / stem output (long skips)
    head      kxk conv 32->1, linear
    output    input[:, :1] + head(...)                  (N, 1, *S)

Design choices (see docs/bundle-format.md for how they reach the bundles):

* **No normalisation layer.** Instance norm (prior art) computes statistics over the whole
  spatial extent, so a tile would see different statistics than the whole input and tiled
  inference would not be exact. Instead every residual branch is scaled by a learnable
  scalar initialised at 0 (ReZero/SkipInit): the network starts as a well-conditioned
  shallow net whose depth is switched on gradually, which trains stably without
  normalisation. Convolutions use Kaiming init for the leaky ReLU.
* **Global skip, linear output.** Resolution (de)convolution is close to the identity, so the
  output is the input's signal channel plus a learned residual; the head is zero-initialised,
  so the untrained generator is exactly the identity. No tanh: intensities are unbounded
  and may be negative.
* **Long skips.** Each decoder stage adds the encoder map of the same resolution
  (parameter-free, U-Net-like but additive): resolution effects are local, full-resolution
  detail, which a plain ResNet generator must squeeze through the bottleneck. In a
  regression test (learn a blur of white noise, 60 Adam steps) the plain ResNet made no
  progress while the skips cut the loss 5x. They do not change the receptive field.
* **Exact tiling.** Every layer is a convolution, a pointwise activation or a nearest
  upsampling, so the network is translation-equivariant for shifts that are multiples of
  ``spatial_multiple = 2**n_down``, and an output bin depends only on inputs within
  :meth:`ResnetGenerator.receptive_field_radius` bins. Inputs must have spatial sizes that are
  multiples of ``spatial_multiple`` (pad with
  :func:`mantid_exp2sim.models.normalisation.pad_to_multiple` first) and at least
  :meth:`ResnetGenerator.min_spatial_size`.
* Cost (:meth:`ResnetGenerator.flops_per_bin`, 2 FLOP per multiply-add): the default 2D
  config (ngf 32, 6 blocks, 2 down) has 1.96 M parameters and 323 kFLOP per output bin
  (21 GFLOP for 256x256), halo 63; ngf 16 with 4 blocks: 0.34 M parameters, 65 kFLOP per
  bin, halo 47. 3D defaults: 5.9 M parameters, 418 kFLOP per voxel.
* :meth:`ResnetGenerator.encode` returns the bottleneck after the residual blocks
  (``ngf * 2**n_down`` channels at ``S / 2**n_down``): the most processed, widest-context
  features, used for the domain score and FID-style model selection.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..errors import format_error
from .layers import (
    PADDING_MODES,
    ConvAct,
    Geometry,
    NceFeatureLayout,
    ReZeroBlock,
    UpConvAct,
    check_ndim,
    make_conv,
    receptive_interval,
)

__all__ = ["ResnetGenerator", "build_generator", "ARCHITECTURE_NAME"]

ARCHITECTURE_NAME = "ResnetGenerator"


def _is_tracing() -> bool:
    return bool(torch.jit.is_tracing() or torch.compiler.is_compiling())


class ResnetGenerator(NceFeatureLayout, nn.Module):
    """ResNet-style image-to-image generator for 2D images or 3D volumes.

    Parameters
    ----------
    ndim
        Number of spatial dimensions, 2 or 3.
    in_channels
        Input channels; the first ``out_channels`` of them are the signal (the global skip adds
        them to the output), the rest auxiliary (the valid mask).
    out_channels
        Output channels (1 for a generator translating one signal).
    ngf
        Channels after the stem; doubled by each downsampling stage.
    n_blocks
        Number of residual blocks at the bottleneck.
    n_down
        Number of stride-2 downsampling (and of x2 upsampling) stages.
    stem_kernel
        Kernel size of the stem and head convolutions (odd).
    padding_mode
        ``"reflect"`` (default, as the prior art), ``"zeros"`` or ``"replicate"``.
    activation
        ``"leaky_relu"`` (default), ``"relu"`` or ``"silu"``.
    global_skip
        Add the input's signal channels to the output (default True).
    long_skips
        Add each encoder feature map (stem, down stages) to the decoder map of the same
        resolution (default True): the parameter-free skips give fine detail a
        full-resolution path instead of forcing it through the bottleneck; in a test
        learning a blur on white noise they cut the loss 5x in 60 steps where the plain
        ResNet made no progress. They do not change the receptive field.
    """

    def __init__(
        self,
        ndim: int,
        in_channels: int = 2,
        out_channels: int = 1,
        ngf: int = 32,
        n_blocks: int = 6,
        n_down: int = 2,
        *,
        stem_kernel: int = 7,
        padding_mode: str = "reflect",
        activation: str = "leaky_relu",
        global_skip: bool = True,
        long_skips: bool = True,
    ) -> None:
        super().__init__()
        self.ndim = check_ndim(ndim)
        for name, value, lo in (
            ("in_channels", in_channels, 1),
            ("out_channels", out_channels, 1),
            ("ngf", ngf, 1),
            ("n_blocks", n_blocks, 0),
            ("n_down", n_down, 0),
            ("stem_kernel", stem_kernel, 1),
        ):
            if int(value) != value or value < lo:
                raise ValueError(
                    format_error(
                        f"Invalid generator setting '{name}'",
                        reason=f"{name}={value!r}; expected an integer >= {lo}",
                    )
                )
        if stem_kernel % 2 != 1:
            raise ValueError(
                format_error(
                    "Invalid generator setting 'stem_kernel'",
                    reason=f"stem_kernel={stem_kernel}; must be odd so the output is centred",
                )
            )
        if padding_mode not in PADDING_MODES:
            raise ValueError(
                format_error(
                    "Invalid generator setting 'padding_mode'",
                    reason=f"padding_mode={padding_mode!r}; allowed: {', '.join(PADDING_MODES)}",
                )
            )
        if global_skip and out_channels > in_channels:
            raise ValueError(
                format_error(
                    "The global skip needs out_channels <= in_channels",
                    reason=f"in_channels={in_channels}, out_channels={out_channels}",
                    fix="use global_skip=False or more input channels",
                )
            )
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.ngf = int(ngf)
        self.n_blocks = int(n_blocks)
        self.n_down = int(n_down)
        self.stem_kernel = int(stem_kernel)
        self.padding_mode = padding_mode
        self.activation = activation
        self.global_skip = bool(global_skip)
        self.long_skips = bool(long_skips)

        kw = dict(padding_mode=padding_mode, activation=activation)
        self.stem = ConvAct(ndim, in_channels, ngf, stem_kernel, **kw)
        self.down = nn.ModuleList(
            ConvAct(ndim, ngf * 2**i, ngf * 2 ** (i + 1), 3, stride=2, **kw) for i in range(n_down)
        )
        width = ngf * 2**n_down
        self.blocks = nn.ModuleList(ReZeroBlock(ndim, width, 3, **kw) for _ in range(n_blocks))
        self.up = nn.ModuleList(
            UpConvAct(ndim, ngf * 2 ** (i + 1), ngf * 2**i, 3, **kw)
            for i in reversed(range(n_down))
        )
        self.head = make_conv(ndim, ngf, out_channels, stem_kernel, padding_mode=padding_mode)
        self.reset_parameters()

    # ------------------------------------------------------------------ set-up
    def reset_parameters(self) -> None:
        """Kaiming init of every convolution, zero biases, zero ReZero gains, zero head.

        The untrained generator is therefore exactly the identity on its signal channel
        (with ``global_skip``).
        """
        slope = 0.2 if self.activation == "leaky_relu" else 0.0
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(m.weight, a=slope, nonlinearity="leaky_relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, ReZeroBlock):
                nn.init.zeros_(m.alpha)
        nn.init.zeros_(self.head.weight)
        if self.head.bias is not None:
            nn.init.zeros_(self.head.bias)

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-serialisable); ``build_generator(g.config())`` rebuilds it."""
        return {
            "ndim": self.ndim,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "ngf": self.ngf,
            "n_blocks": self.n_blocks,
            "n_down": self.n_down,
            "stem_kernel": self.stem_kernel,
            "padding_mode": self.padding_mode,
            "activation": self.activation,
            "global_skip": self.global_skip,
            "long_skips": self.long_skips,
        }

    def architecture(self) -> dict[str, Any]:
        """``{"name": "ResnetGenerator", "config": config()}``, the bundle manifest entry."""
        return {"name": ARCHITECTURE_NAME, "config": self.config()}

    # --------------------------------------------------------------- geometry
    @property
    def spatial_multiple(self) -> int:
        """Spatial sizes must be multiples of this (``2**n_down``); so must tile offsets."""
        return 2**self.n_down

    def min_spatial_size(self) -> int:
        """Smallest allowed size of each spatial axis (a multiple of :attr:`spatial_multiple`).

        Reflect padding needs an axis longer than the pad: the stem/head need
        ``> stem_kernel // 2`` bins at full resolution and the 3x3 convolutions at least 2
        bins at the bottleneck. Zero padding only needs 1 bin at the bottleneck.
        """
        m = self.spatial_multiple
        if self.padding_mode == "zeros":
            need = m
        else:
            need = max(self.stem_kernel // 2 + 1, 2 * m if self.n_down else 2)
        return int(math.ceil(need / m) * m)

    def geometry(self) -> list[Geometry]:
        """Per-axis geometry of every layer on the input-to-output path, in order."""
        geo: list[Geometry] = list(self.stem.geometry)
        for d in self.down:
            geo += d.geometry
        for b in self.blocks:
            geo += b.geometry
        for u in self.up:
            geo += u.geometry
        geo.append(Geometry("conv", self.stem_kernel, 1, self.stem_kernel // 2))
        return geo

    def receptive_field_radius(self) -> int:
        """Halo in bins: an output bin depends on inputs at most this far away along each axis.

        Computed from :meth:`geometry` for every output position modulo
        :attr:`spatial_multiple` (the dependence pattern is periodic with that period). A
        tile must extend this far beyond the region it keeps (away from the input border).
        """
        geo = self.geometry()
        radius = 0
        for j in range(self.spatial_multiple):
            lo, hi = receptive_interval(geo, j)
            radius = max(radius, j - lo, hi - j)
        return int(radius)

    def flops_per_bin(self) -> float:
        """Forward FLOPs per output bin (2 per multiply-add, convolutions only).

        Each convolution costs ``2 * c_in * c_out * kernel**ndim`` per bin of its output, whose
        resolution is ``1 / stride_total**ndim`` of the input's.
        """
        total = 0.0
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                total += 2.0 * m.in_channels * m.out_channels * math.prod(m.kernel_size) / (
                    self._resolution_of(m) ** self.ndim
                )
        return total

    def _resolution_of(self, conv: nn.Module) -> int:
        if conv is self.stem[0] or conv is self.head:
            return 1
        for i, d in enumerate(self.down):
            if conv is d[0]:
                return 2 ** (i + 1)
        for i, u in enumerate(self.up):
            if conv is u[1]:
                return 2 ** (self.n_down - i - 1)
        return 2**self.n_down  # residual blocks

    def _check_input(self, x: torch.Tensor) -> None:
        if _is_tracing():
            return
        spatial = tuple(x.shape[2:])
        if x.dim() != self.ndim + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                format_error(
                    "Generator input has the wrong shape",
                    reason=(
                        f"shape {tuple(x.shape)}; expected (N, {self.in_channels}, "
                        f"{', '.join(['size'] * self.ndim)})"
                    ),
                    fix="build inputs with models.normalisation.to_network_input",
                )
            )
        m, lo = self.spatial_multiple, self.min_spatial_size()
        if any(s % m or s < lo for s in spatial):
            raise ValueError(
                format_error(
                    "Generator input has an unsupported spatial size",
                    reason=f"spatial shape {spatial}; every axis must be a multiple of {m} and >= {lo}",
                    fix="pad with models.normalisation.pad_to_multiple (and crop the output back)",
                )
            )

    def _trunk(self, x: torch.Tensor, keep: set[int] | None, stop: int) -> tuple[torch.Tensor, dict]:
        feats: dict[int, torch.Tensor] = {}
        h = self.stem(x)
        if keep is not None and 0 in keep:
            feats[0] = h
        i = 0
        for i, layer in enumerate([*self.down, *self.blocks], start=1):
            if i > stop:
                break
            h = layer(h)
            if keep is not None and i in keep:
                feats[i] = h
        return h, feats

    def encode(self, x: torch.Tensor, *, after: str = "blocks") -> torch.Tensor:
        """Bottleneck feature map, ``(N, ngf * 2**n_down, *S / 2**n_down)``.

        Parameters
        ----------
        x
            Network input ``(N, in_channels, *S)``.
        after
            ``"blocks"`` (default): after the residual blocks; ``"down"``: after the last
            down stage (the prior art's encoder features).
        """
        self._check_input(x)
        if after not in ("blocks", "down"):
            raise ValueError(
                format_error("Invalid encode stage", reason=f"after={after!r}; allowed: blocks, down")
            )
        stop = self.n_down + (self.n_blocks if after == "blocks" else 0)
        h, _ = self._trunk(x, None, stop)
        return h

    def nce_features(self, x: torch.Tensor, layer_ids: Sequence[int]) -> list[torch.Tensor]:
        """Intermediate feature maps for PatchNCE, in the order of ``layer_ids``.

        Ids: 0 = stem output (``ngf`` channels, full resolution); ``1..n_down`` = output of
        down stage i (``ngf * 2**i`` channels at ``S / 2**i``); ``n_down + b`` = output of
        residual block b (1-based; bottleneck width and resolution). Only the layers up to
        the largest id are run.
        """
        self._check_input(x)
        self._check_layer_ids(layer_ids)
        ids = [int(i) for i in layer_ids]
        _, feats = self._trunk(x, set(ids), max(ids))
        return [feats[i] for i in ids]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translate ``(N, in_channels, *S)`` to ``(N, out_channels, *S)``."""
        self._check_input(x)
        keep = set(range(self.n_down)) if self.long_skips else None
        h, feats = self._trunk(x, keep, self.n_down + self.n_blocks)
        for i, u in enumerate(self.up):
            h = u(h)
            if keep is not None:
                h = h + feats[self.n_down - 1 - i]
        y = self.head(h)
        if self.global_skip:
            y = y + x[:, : self.out_channels]
        return y


def build_generator(config: Mapping[str, Any]) -> ResnetGenerator:
    """Rebuild a generator from :meth:`ResnetGenerator.config` (unknown keys are an error)."""
    cfg = dict(config)
    if "ndim" not in cfg:
        raise ValueError(
            format_error(
                "Generator config lacks 'ndim'",
                reason=f"keys: {sorted(cfg)}",
                fix="use ResnetGenerator.config() to produce configs",
            )
        )
    try:
        return ResnetGenerator(**cfg)
    except TypeError as exc:
        raise ValueError(
            format_error("Invalid generator config", reason=str(exc), fix="use ResnetGenerator.config()")
        ) from exc
