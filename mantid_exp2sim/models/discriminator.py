"""PatchGAN discriminator with the Exp2SimGAN auxiliary output, for 2D and 3D inputs.

Layout (``n_layers = 3``, ``ndf = 32``; kernel 4, zero padding 1)::

    conv stride 2, in->32, leaky ReLU(0.2)
    conv stride 2, 32->64, norm, leaky ReLU      (repeated n_layers - 1 times, width x2, max 8 ndf)
    conv stride 1, 64->128 (x2), norm, leaky ReLU
    conv stride 1, ->2                            channel 0: real/fake map, channel 1: aux map

A 256x256 input gives 30x30 patch maps, a 64^3 input 6^3. The auxiliary map is trained by the
prior art with an MSE towards 0 (real) and 1 (fake); it regularises D and is never used by
the generator. The discriminator is not used at inference, so instance norm is allowed here;
with very small inputs an instance norm would see a single bin, which
:meth:`PatchDiscriminator.min_spatial_size` rules out.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from ..errors import format_error
from .layers import check_ndim, conv_cls, instance_norm_cls

__all__ = ["PatchDiscriminator", "build_discriminator", "NORMS"]

NORMS = ("instance", "none")


class PatchDiscriminator(nn.Module):
    """PatchGAN returning ``(gan_map, aux_map)``, each ``(N, 1, *patch_grid)``.

    Parameters
    ----------
    ndim
        2 or 3 spatial dimensions.
    in_channels
        Input channels (2: scaled signal and valid mask).
    ndf
        Channels of the first layer (doubled per layer, capped at ``8 * ndf``).
    n_layers
        Number of stride-2 layers (>= 1).
    norm
        ``"instance"`` (affine-free instance norm, as the prior art) or ``"none"``.
    """

    def __init__(
        self, ndim: int, in_channels: int = 2, ndf: int = 32, n_layers: int = 3, *, norm: str = "instance"
    ) -> None:
        super().__init__()
        self.ndim = check_ndim(ndim)
        for name, value, lo in (("in_channels", in_channels, 1), ("ndf", ndf, 1), ("n_layers", n_layers, 1)):
            if int(value) != value or value < lo:
                raise ValueError(
                    format_error(f"Invalid discriminator setting '{name}'",
                                 reason=f"{name}={value!r}; expected an integer >= {lo}")
                )
        if norm not in NORMS:
            raise ValueError(
                format_error("Invalid discriminator setting 'norm'",
                             reason=f"norm={norm!r}; allowed: {', '.join(NORMS)}")
            )
        self.in_channels, self.ndf, self.n_layers, self.norm = int(in_channels), int(ndf), int(n_layers), norm
        conv = conv_cls(ndim)

        def norm_layer(c: int) -> nn.Module:
            return instance_norm_cls(ndim)(c) if norm == "instance" else nn.Identity()

        layers: list[nn.Module] = [conv(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        cin = ndf
        for n in range(1, n_layers):
            cout = ndf * min(2**n, 8)
            layers += [conv(cin, cout, 4, stride=2, padding=1, bias=norm == "none"), norm_layer(cout),
                       nn.LeakyReLU(0.2)]
            cin = cout
        cout = ndf * min(2**n_layers, 8)
        layers += [conv(cin, cout, 4, stride=1, padding=1, bias=norm == "none"), norm_layer(cout),
                   nn.LeakyReLU(0.2)]
        layers.append(conv(cout, 2, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def config(self) -> dict[str, Any]:
        """Constructor arguments; ``build_discriminator(d.config())`` rebuilds it."""
        return {"ndim": self.ndim, "in_channels": self.in_channels, "ndf": self.ndf,
                "n_layers": self.n_layers, "norm": self.norm}

    def architecture(self) -> dict[str, Any]:
        """``{"name": "PatchDiscriminator", "config": config()}`` (bundle manifest entry)."""
        return {"name": "PatchDiscriminator", "config": self.config()}

    def output_size(self, n: int) -> int:
        """Patch-map length along an axis of ``n`` input bins."""
        for _ in range(self.n_layers):
            n = (n + 2 - 4) // 2 + 1
        return n - 2

    def min_spatial_size(self) -> int:
        """Smallest axis length giving a patch map of at least 2 bins along the axis.

        (With instance norm a 1-bin map in every axis would leave the last norm a single value.)
        """
        n = 1
        while self.output_size(n) < 2:
            n += 1
        return n

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``(N, in_channels, *S)`` -> ``(gan_map, aux_map)``, each ``(N, 1, *grid)``."""
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
            lo = self.min_spatial_size()
            if x.dim() != self.ndim + 2 or x.shape[1] != self.in_channels or any(s < lo for s in x.shape[2:]):
                raise ValueError(
                    format_error(
                        "Discriminator input has the wrong shape",
                        reason=(f"shape {tuple(x.shape)}; expected (N, {self.in_channels}, *spatial) with "
                                f"{self.ndim} spatial axes of at least {lo} bins"),
                        fix="use larger crops or fewer layers (n_layers)",
                    )
                )
        out = self.model(x)
        return out[:, :1], out[:, 1:]


def build_discriminator(config: Mapping[str, Any]) -> PatchDiscriminator:
    """Rebuild a discriminator from :meth:`PatchDiscriminator.config`."""
    try:
        return PatchDiscriminator(**dict(config))
    except TypeError as exc:
        raise ValueError(format_error("Invalid discriminator config", reason=str(exc))) from exc
