"""Grad-CAM for a chosen class's score, at input resolution, with per-tile importance.

Grad-CAM (Selvaraju et al. 2017): with ``A_k`` the activations of a convolutional layer and
``Y_c`` the score of the chosen class, the channel weights are the spatially averaged
gradients ``alpha_k = mean_xy dY_c / dA_k,xy`` and the map is
``ReLU(sum_k alpha_k A_k)``. For the DUQ classifier the score is the class's kernel value
``K_c`` (the network's output), not a hidden unit (the prior art's dense-model CAM took the
argmax over the 64 hidden units). The map is upsampled bilinearly to the input's spatial size
and, by default, scaled so its maximum is 1; :attr:`GradCAMResult.tiles` averages it over
the mosaic's 40 x 40 (Ei, energy window) tiles.

Networks whose last feature map has lost the input's layout (the energy-stack classifier
folds the energy windows into channels) declare ``attribution = "input_gradient"``; for them
:func:`attribution_map` returns :func:`input_gradient_map`, the input-times-gradient
attribution ``ReLU(x * dK_c / dx)`` of the signal channel (Simonyan et al. 2014; Shrikumar
et al. 2017), which lives on the input grid itself, so every tile keeps its own evidence.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputDataError, format_error

__all__ = ["GradCAMResult", "grad_cam", "input_gradient_map", "attribution_map", "tile_importance"]


@dataclass
class GradCAMResult:
    """Output of :func:`grad_cam`.

    Attributes
    ----------
    cam
        ``(N, H, W)`` class activation maps at input resolution (>= 0; max 1 when normalised).
    tiles
        ``(N, H // tile, W // tile)`` mean of the map over each tile.
    class_index
        ``(N,)`` the class each map explains.
    scores
        ``(N, n_classes)`` the model's outputs.
    """

    cam: np.ndarray
    tiles: np.ndarray
    class_index: np.ndarray
    scores: np.ndarray


def tile_importance(cam: np.ndarray, tile: int = 40) -> np.ndarray:
    """Mean of ``cam`` ``(N, H, W)`` over ``tile x tile`` blocks: ``(N, H // tile, W // tile)``."""
    c = np.asarray(cam, dtype=np.float64)
    n, h, w = c.shape
    if h % tile or w % tile:
        raise InputDataError(
            format_error(
                "The map is not a whole number of tiles",
                reason=f"shape {(h, w)}, tile {tile}",
            )
        )
    return c.reshape(n, h // tile, tile, w // tile, tile).mean(axis=(2, 4))


def grad_cam(
    model: nn.Module,
    x: torch.Tensor | np.ndarray,
    class_index: int | Sequence[int] | None = None,
    *,
    layer: nn.Module | None = None,
    normalise: bool = True,
    tile: int = 40,
) -> GradCAMResult:
    """Grad-CAM of ``model``'s output for a chosen class.

    Parameters
    ----------
    model
        Module mapping ``(N, C_in, H, W)`` to scores ``(N, n_classes)`` (for DUQ: the kernel
        values). Put into eval mode for the call (and restored afterwards).
    x
        Input batch ``(N, C_in, H, W)``.
    class_index
        Class explained: one int for all samples, one per sample, or None for each
        sample's highest score.
    layer
        Module whose output is the feature map; default ``model.cam_layer``.
    normalise
        Scale each map so its maximum is 1 (a map that is zero everywhere stays zero).
    tile
        Tile size for :attr:`GradCAMResult.tiles`; 0 or a size that does not divide the input
        leaves ``tiles`` empty.

    Returns
    -------
    GradCAMResult
    """
    if layer is None:
        layer = getattr(model, "cam_layer", None)
        if layer is None:
            raise ValueError(
                format_error(
                    "grad_cam() needs the layer to explain",
                    reason=f"{type(model).__name__} has no 'cam_layer'",
                    fix="pass layer=<the last convolutional module>",
                )
            )
    xt = _as_batch(x, "grad_cam")
    store: dict[str, torch.Tensor] = {}

    def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        store["a"] = output

    handle = layer.register_forward_hook(hook)
    try:
        with _eval_with_grad(model):
            # The input takes part in the graph so the map exists even when no parameter
            # precedes the layer.
            xt = xt.detach().clone().requires_grad_(True)
            scores = model(xt)
            if "a" not in store:
                raise ValueError(
                    format_error("The Grad-CAM layer was not used by the forward pass",
                                 fix="pass a layer that the model calls")
                )
            idx = _chosen_classes(scores, class_index)
            chosen = scores.gather(1, idx[:, None]).sum()
            (grad,) = torch.autograd.grad(chosen, store["a"])
    finally:
        handle.remove()
    a = store["a"].detach()
    spatial_dims = tuple(range(2, a.dim()))
    alpha = grad.mean(dim=spatial_dims, keepdim=True)
    cam = F.relu((alpha * a).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=tuple(xt.shape[2:]), mode="bilinear", align_corners=False)[:, 0]
    return _result(cam, idx, scores, normalise=normalise, tile=tile)


def input_gradient_map(
    model: nn.Module,
    x: torch.Tensor | np.ndarray,
    class_index: int | Sequence[int] | None = None,
    *,
    normalise: bool = True,
    tile: int = 40,
) -> GradCAMResult:
    """Input-times-gradient map ``ReLU(x_signal * dK_c / dx_signal)`` of a chosen class.

    The positive part: bins whose (scaled) intensity raises the class's kernel value. Same
    arguments and result as :func:`grad_cam` (without ``layer``).
    """
    xt = _as_batch(x, "input_gradient_map")
    with _eval_with_grad(model):
        xt = xt.detach().clone().requires_grad_(True)
        scores = model(xt)
        idx = _chosen_classes(scores, class_index)
        (grad,) = torch.autograd.grad(scores.gather(1, idx[:, None]).sum(), xt)
    cam = F.relu(xt.detach()[:, 0] * grad[:, 0])
    return _result(cam, idx, scores, normalise=normalise, tile=tile)


def attribution_map(
    model: nn.Module,
    x: torch.Tensor | np.ndarray,
    class_index: int | Sequence[int] | None = None,
    *,
    normalise: bool = True,
    tile: int = 40,
) -> GradCAMResult:
    """The model's own activation map: :func:`grad_cam`, or :func:`input_gradient_map` for
    models with ``attribution = "input_gradient"``."""
    if getattr(model, "attribution", "grad_cam") == "input_gradient":
        return input_gradient_map(model, x, class_index, normalise=normalise, tile=tile)
    return grad_cam(model, x, class_index, normalise=normalise, tile=tile)


def _as_batch(x: torch.Tensor | np.ndarray, caller: str) -> torch.Tensor:
    """``x`` as a float32 batch ``(N, C, H, W)``; anything else is refused naming ``caller``."""
    xt = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float32)
    if xt.dim() != 4:
        raise InputDataError(
            format_error(f"{caller}() needs a batch (N, C, H, W)", reason=f"got shape {tuple(xt.shape)}")
        )
    return xt


def _chosen_classes(scores: torch.Tensor, class_index: int | Sequence[int] | None) -> torch.Tensor:
    """The class explained per sample: ``class_index`` broadcast over the batch, or the top class."""
    if class_index is None:
        return scores.detach().argmax(1)
    n = scores.shape[0]
    idx = torch.as_tensor(np.broadcast_to(np.asarray(class_index), (n,)).copy(), dtype=torch.long)
    if idx.min() < 0 or idx.max() >= scores.shape[1]:
        raise InputDataError(
            format_error(
                "class_index out of range",
                reason=f"got {idx.tolist()}, the model has {scores.shape[1]} classes",
            )
        )
    return idx


def _result(cam: torch.Tensor, idx: torch.Tensor, scores: torch.Tensor, *, normalise: bool,
            tile: int) -> GradCAMResult:
    """A map ``(N, H, W)`` (peak-normalised on request) with its per-tile importance."""
    if normalise:
        peak = cam.flatten(1).amax(1).clamp_min(torch.finfo(cam.dtype).tiny)
        cam = cam / peak[:, None, None]
    cam_np = cam.numpy().astype(np.float64)
    n, h, w = cam_np.shape
    tiles = tile_importance(cam_np, tile) if tile and h % tile == 0 and w % tile == 0 else np.zeros((n, 0, 0))
    return GradCAMResult(
        cam=cam_np, tiles=tiles, class_index=idx.numpy(), scores=scores.detach().numpy().astype(np.float64)
    )


@contextlib.contextmanager
def _eval_with_grad(model: nn.Module) -> Iterator[None]:
    """The model in eval mode with gradients on; its training mode restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            yield
    finally:
        model.train(was_training)
