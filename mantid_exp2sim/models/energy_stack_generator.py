"""Energy-aware generator for the ``pcsmo-mosaic-v1`` mosaic: each Ei as a stack of energy windows.

The 240x400 mosaic places the 10 energy windows of one incident energy side by side, so the
neighbours of a (Qh, Qk) point along energy, the axis along which the resolution blurs most,
are 40 columns apart and a 2D convolution hardly sees them. :class:`EnergyStackGenerator`
reads the mosaic as ``n_ei`` volumes of shape ``(window, Qh, Qk)`` (one per incident energy,
batched) and runs a normalisation-free ResNet of 3D convolutions on them:

* convolutions see the energy axis directly (3 windows per convolution, no downsampling
  along it: 10 windows are too few to halve), and downsample only (Qh, Qk) by 2 per stage;
* incident energies are independent (different energy grids): they never mix;
* the rest follows :class:`~mantid_exp2sim.models.generator.ResnetGenerator`: ReZero blocks,
  parameter-free long skips, zero-initialised head, output = input signal + residual (so an
  untrained generator is the identity), two input channels (scaled signal, valid mask), the
  same RMS normalisation and masks at inference.

Exact tiling. Input and output are mosaics ``(N, C, n_ei * tile, n_windows * tile)``.
Tile starts and sizes are multiples of ``tile`` (:attr:`spatial_multiple`), so a tiler never
cuts inside a (Qh, Qk) tile; along the rows (incident energies) outputs depend on their own
block only, and along the columns (windows) an output depends on at most
``receptive_windows()`` windows on each side, i.e. :meth:`receptive_field_radius` =
``receptive_windows() * tile`` bins, with stride 1 along energy so every window shift is a
symmetry. Whole-input and tiled inference therefore agree to float rounding (tested).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..errors import format_error
from .layers import PADDING_MODES, Geometry, NceFeatureLayout, make_activation, receptive_interval

__all__ = ["EnergyStackGenerator", "build_energy_stack_generator", "ARCHITECTURE_NAME"]

ARCHITECTURE_NAME = "EnergyStackGenerator"


def _conv(cin: int, cout: int, k_e: int, k_q: int, *, stride_q: int = 1, padding_mode: str) -> nn.Conv3d:
    return nn.Conv3d(cin, cout, (k_e, k_q, k_q), stride=(1, stride_q, stride_q),
                     padding=(k_e // 2, k_q // 2, k_q // 2), padding_mode=padding_mode)


class _Block(nn.Module):
    """``x + alpha * conv(act(conv(x)))`` with ``alpha`` initialised at 0 (ReZero)."""

    def __init__(self, channels: int, padding_mode: str, activation: str) -> None:
        super().__init__()
        self.conv1 = _conv(channels, channels, 3, 3, padding_mode=padding_mode)
        self.act = make_activation(activation)
        self.conv2 = _conv(channels, channels, 3, 3, padding_mode=padding_mode)
        self.alpha = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.alpha * self.conv2(self.act(self.conv1(x)))


class EnergyStackGenerator(NceFeatureLayout, nn.Module):
    """Mosaic-to-mosaic generator whose convolutions run over (energy window, Qh, Qk).

    Parameters
    ----------
    tile
        Bins per (Qh, Qk) tile edge of the mosaic (40 in ``pcsmo-mosaic-v1``); a multiple of
        ``2**n_down``.
    in_channels, out_channels
        Network channels (2 in: scaled signal and valid mask; 1 out).
    ngf
        Channels after the stem; doubled by each (Qh, Qk) downsampling stage.
    n_blocks
        Residual blocks at the bottleneck.
    n_down
        Stride-2 stages over (Qh, Qk) (energy is never downsampled).
    stem_kernel
        (Qh, Qk) kernel of the stem and head convolutions (odd).
    energy_kernel
        Energy kernel of the stem and head (odd; the other convolutions use 3).
    padding_mode
        ``"reflect"`` (default), ``"zeros"`` or ``"replicate"``, at the edges of each tile
        and of each incident energy's window range.
    activation
        ``"leaky_relu"`` (default), ``"relu"`` or ``"silu"``.
    """

    def __init__(
        self,
        tile: int = 40,
        in_channels: int = 2,
        out_channels: int = 1,
        ngf: int = 16,
        n_blocks: int = 4,
        n_down: int = 2,
        *,
        stem_kernel: int = 5,
        energy_kernel: int = 3,
        padding_mode: str = "reflect",
        activation: str = "leaky_relu",
    ) -> None:
        super().__init__()
        for name, value, lo in (("tile", tile, 1), ("in_channels", in_channels, 1), ("out_channels", out_channels, 1),
                                ("ngf", ngf, 1), ("n_blocks", n_blocks, 0), ("n_down", n_down, 0),
                                ("stem_kernel", stem_kernel, 1), ("energy_kernel", energy_kernel, 1)):
            if int(value) != value or value < lo:
                raise ValueError(format_error(f"Invalid generator setting '{name}'",
                                              reason=f"{name}={value!r}; expected an integer >= {lo}"))
        for name, value in (("stem_kernel", stem_kernel), ("energy_kernel", energy_kernel)):
            if value % 2 != 1:
                raise ValueError(format_error(f"Invalid generator setting '{name}'",
                                              reason=f"{name}={value}; must be odd so the output is centred"))
        if tile % 2**n_down or tile // 2**n_down < 2:
            raise ValueError(format_error(
                "Invalid generator setting 'tile'",
                reason=f"tile={tile} with n_down={n_down}; the tile must be a multiple of 2**n_down "
                f"= {2**n_down} and keep >= 2 bins at the bottleneck",
                fix="use fewer downsampling stages"))
        if padding_mode not in PADDING_MODES:
            raise ValueError(format_error("Invalid generator setting 'padding_mode'",
                                          reason=f"padding_mode={padding_mode!r}; allowed: {', '.join(PADDING_MODES)}"))
        if out_channels > in_channels:
            raise ValueError(format_error("The global skip needs out_channels <= in_channels",
                                          reason=f"in_channels={in_channels}, out_channels={out_channels}"))
        self.tile, self.in_channels, self.out_channels = int(tile), int(in_channels), int(out_channels)
        self.ngf, self.n_blocks, self.n_down = int(ngf), int(n_blocks), int(n_down)
        self.stem_kernel, self.energy_kernel = int(stem_kernel), int(energy_kernel)
        self.padding_mode, self.activation = padding_mode, activation
        self.ndim = 2  # the network's input and output are 2D mosaics

        pm = padding_mode
        self.stem = nn.Sequential(_conv(in_channels, ngf, energy_kernel, stem_kernel, padding_mode=pm),
                                  make_activation(activation))
        self.down = nn.ModuleList(
            nn.Sequential(_conv(ngf * 2**i, ngf * 2 ** (i + 1), 3, 3, stride_q=2, padding_mode=pm),
                          make_activation(activation))
            for i in range(n_down))
        width = ngf * 2**n_down
        self.blocks = nn.ModuleList(_Block(width, pm, activation) for _ in range(n_blocks))
        self.up = nn.ModuleList(
            nn.Sequential(nn.Upsample(scale_factor=(1, 2, 2), mode="nearest"),
                          _conv(ngf * 2 ** (i + 1), ngf * 2**i, 3, 3, padding_mode=pm), make_activation(activation))
            for i in reversed(range(n_down)))
        self.head = _conv(ngf, out_channels, energy_kernel, stem_kernel, padding_mode=pm)
        self.reset_parameters()

    # ------------------------------------------------------------------ set-up
    def reset_parameters(self) -> None:
        """Kaiming init, zero biases, zero ReZero gains and a zero head: the identity at start."""
        slope = 0.2 if self.activation == "leaky_relu" else 0.0
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, a=slope, nonlinearity="leaky_relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, _Block):
                nn.init.zeros_(m.alpha)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def config(self) -> dict[str, Any]:
        """Constructor arguments; ``build_energy_stack_generator(g.config())`` rebuilds it."""
        return {"tile": self.tile, "in_channels": self.in_channels, "out_channels": self.out_channels,
                "ngf": self.ngf, "n_blocks": self.n_blocks, "n_down": self.n_down, "stem_kernel": self.stem_kernel,
                "energy_kernel": self.energy_kernel, "padding_mode": self.padding_mode,
                "activation": self.activation, "ndim": 2}

    def architecture(self) -> dict[str, Any]:
        """``{"name": "EnergyStackGenerator", "config": config()}`` for the bundle manifest."""
        return {"name": ARCHITECTURE_NAME, "config": self.config()}

    # --------------------------------------------------------------- geometry
    @property
    def spatial_multiple(self) -> int:
        """Mosaic sizes and tile offsets must be multiples of the tile edge."""
        return self.tile

    def min_spatial_size(self) -> int:
        """Two tiles (the one size for both axes of a manifest): reflect padding along energy
        needs >= 2 windows; one incident energy (one tile of rows) would do."""
        return 2 * self.tile

    def _energy_geometry(self) -> list[Geometry]:
        geo = [Geometry("conv", self.energy_kernel, 1, self.energy_kernel // 2)]
        geo += [Geometry("conv", 3, 1, 1)] * (self.n_down + 2 * self.n_blocks + self.n_down)
        return geo + [Geometry("conv", self.energy_kernel, 1, self.energy_kernel // 2)]

    def receptive_windows(self) -> int:
        """Energy windows on each side an output depends on."""
        lo, hi = receptive_interval(self._energy_geometry(), 0)
        return int(max(-lo, hi))

    def receptive_field_radius(self) -> int:
        """The mosaic halo in bins: ``receptive_windows() * tile`` (tiles are never cut)."""
        return self.receptive_windows() * self.tile

    def flops_per_bin(self) -> float:
        """Forward FLOPs per output bin (2 per multiply-add, convolutions only)."""
        total = 0.0
        res = {id(self.stem[0]): 1, id(self.head): 1}
        for i, d in enumerate(self.down):
            res[id(d[0])] = 2 ** (i + 1)
        for i, u in enumerate(self.up):
            res[id(u[1])] = 2 ** (self.n_down - i - 1)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                r = res.get(id(m), 2**self.n_down)
                total += 2.0 * m.in_channels * m.out_channels * math.prod(m.kernel_size) / r**2
        return total

    # ----------------------------------------------------------------- layout
    def _check_input(self, x: torch.Tensor) -> None:
        if torch.jit.is_tracing() or torch.compiler.is_compiling():
            return
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(format_error(
                "Generator input has the wrong shape",
                reason=f"shape {tuple(x.shape)}; expected (N, {self.in_channels}, rows, columns) of a mosaic",
                fix="build inputs with models.normalisation.to_network_input"))
        t = self.tile
        rows, cols = int(x.shape[2]), int(x.shape[3])
        if rows % t or cols % t or rows < t or cols < 2 * t:
            raise ValueError(format_error(
                "Generator input has an unsupported spatial size",
                reason=f"spatial shape {(rows, cols)}; both axes must be multiples of {t}, with at least one "
                f"incident energy ({t} rows) and two energy windows ({2 * t} columns)",
                fix="pad with models.normalisation.pad_to_multiple (and crop the output back)"))

    def _to_stacks(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        t = self.tile
        v = x.reshape(n, c, h // t, t, w // t, t).permute(0, 2, 1, 4, 3, 5)
        return v.reshape(n * (h // t), c, w // t, t, t)

    @staticmethod
    def _to_mosaic(v: torch.Tensor, n: int) -> torch.Tensor:
        b, c, nw, th, tw = v.shape
        m = v.reshape(n, b // n, c, nw, th, tw).permute(0, 2, 1, 4, 3, 5)
        return m.reshape(n, c, (b // n) * th, nw * tw)

    def _trunk(self, v: torch.Tensor, keep: set[int] | None, stop: int) -> tuple[torch.Tensor, dict]:
        feats: dict[int, torch.Tensor] = {}
        h = self.stem(v)
        if keep is not None and 0 in keep:
            feats[0] = h
        for i, layer in enumerate([*self.down, *self.blocks], start=1):
            if i > stop:
                break
            h = layer(h)
            if keep is not None and i in keep:
                feats[i] = h
        return h, feats

    def encode(self, x: torch.Tensor, *, after: str = "blocks") -> torch.Tensor:
        """Bottleneck features as a mosaic at ``1 / 2**n_down`` of the (Qh, Qk) resolution.

        ``(N, ngf * 2**n_down, n_ei * tile / 2**n_down, n_windows * tile / 2**n_down)``;
        ``after="down"`` stops before the residual blocks.
        """
        self._check_input(x)
        if after not in ("blocks", "down"):
            raise ValueError(format_error("Invalid encode stage", reason=f"after={after!r}; allowed: blocks, down"))
        h, _ = self._trunk(self._to_stacks(x), None, self.n_down + (self.n_blocks if after == "blocks" else 0))
        return self._to_mosaic(h, x.shape[0])

    def nce_features(self, x: torch.Tensor, layer_ids: Sequence[int]) -> list[torch.Tensor]:
        """Intermediate feature maps for PatchNCE, each laid out as a mosaic."""
        self._check_input(x)
        self._check_layer_ids(layer_ids)
        ids = [int(i) for i in layer_ids]
        _, feats = self._trunk(self._to_stacks(x), set(ids), max(ids))
        return [self._to_mosaic(feats[i], x.shape[0]) for i in ids]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translate a mosaic ``(N, in_channels, rows, columns)`` to ``(N, out_channels, rows, columns)``."""
        self._check_input(x)
        v = self._to_stacks(x)
        keep = set(range(self.n_down))
        h, feats = self._trunk(v, keep, self.n_down + self.n_blocks)
        for i, u in enumerate(self.up):
            h = u(h) + feats[self.n_down - 1 - i]
        y = self.head(h) + v[:, : self.out_channels]
        return self._to_mosaic(y, x.shape[0])


def build_energy_stack_generator(config: Mapping[str, Any]) -> EnergyStackGenerator:
    """Rebuild from :meth:`EnergyStackGenerator.config` (unknown keys are an error)."""
    cfg = dict(config)
    if cfg.pop("ndim", 2) != 2:
        raise ValueError(format_error("EnergyStackGenerator works on 2D mosaics", reason=f"ndim={config.get('ndim')}"))
    try:
        return EnergyStackGenerator(**cfg)
    except TypeError as exc:
        raise ValueError(format_error("Invalid generator config", reason=str(exc),
                                      fix="use EnergyStackGenerator.config()")) from exc
