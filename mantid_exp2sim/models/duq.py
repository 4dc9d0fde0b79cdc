"""DUQ classifier (Deterministic Uncertainty Quantification, van Amersfoort et al. 2020).

Input: the scale-free two-channel mosaic ``(N, 2, 240, 400)`` of
:func:`mantid_exp2sim.models.normalisation.to_network_input` (signal / RMS with NaN -> 0, and
the valid mask), so the classifier is invariant to the global intensity scale by construction.

Feature extractor (small, CPU-trainable; about 0.16 M parameters, not the prior art's 22 M)::

    conv4x4 stride 2, 2->w0, BN, ReLU       (120 x 200)
    conv4x4 stride 2, w0->w1, BN, ReLU      (60 x 100)
    conv3x3 w1->w2, BN, ReLU, maxpool 2     (30 x 50)
    conv3x3 w2->w3, BN, ReLU                (30 x 50)   <- Grad-CAM layer
    average pool to the 6 x 10 tile grid    (one cell per (Ei, energy window) tile)
    flatten, linear -> feature_dim          (f, the DUQ feature vector; no final ReLU: with
                                             few features, dead units stalled training)

Batch normalisation (running statistics at inference, so a sample's output does not depend
on the rest of the batch) makes the small network train several times faster on the subtle
Goodenough/Dimer differences. Strided convolutions at full resolution (instead of 3x3 convolutions followed by max
pooling) make a training step with the gradient penalty about 6x cheaper on a CPU. Pooling to
exactly one cell per mosaic tile keeps *which* tile a pattern came from (the
classification depends on where in (Ei, energy) a feature sits) while averaging over Q within
the tile.

DUQ head: per class c a weight matrix ``W_c`` (embedding_dim x feature_dim) and a centroid
``e_c = m_c / N_c`` kept as an exponential moving average of the class members' embeddings
(``N_c <- gamma N_c + (1 - gamma) n_c``, ``m_c <- gamma m_c + (1 - gamma) sum W_c f``,
updated after each optimiser step by :meth:`DUQClassifier.update_centroids`). The kernel is

    K_c = exp(-||W_c f - e_c||^2 / (2 n sigma^2)),    n = embedding_dim,

eq. 3 of Butler et al. (2021), i.e. the mean squared difference over the embedding. The
length scale sigma is fixed at 0.1, the value the DUQ paper uses: a learned sigma can shrink
to make every K small or grow to make every K near 1, trading calibration for the loss. The
default ``gamma = 0.99`` (time constant 100 steps) lets the centroids follow the features
during a short CPU training run; the prior art's ``gamma = 1`` froze them at their random
initialisation.

Loss (:func:`duq_loss`): binary cross-entropy of every K_c against the one-hot label plus a
two-sided gradient penalty ``lambda * (||d sum_c K_c / dx||_2 - 1)^2`` that keeps the feature
map sensitive to input changes (so out-of-distribution inputs move away from the centroids).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputDataError, format_error

__all__ = [
    "ARCHITECTURE_NAME",
    "DUQHead",
    "DUQClassifier",
    "build_duq_classifier",
    "gradient_penalty",
    "feature_mmd",
    "duq_loss",
]

ARCHITECTURE_NAME = "DUQClassifier"


class DUQHead:
    """The DUQ (RBF-centroid) head shared by the classifiers: ``W``, centroids and kernel.

    A subclass (also an ``nn.Module``) calls :meth:`_init_head` in its constructor and
    provides :meth:`features`; ``forward`` is then ``kernel(embed(features(x)))``.
    """

    #: The bundle manifest's architecture name (set by each subclass).
    architecture_name: str
    n_classes: int
    feature_dim: int
    embedding_dim: int
    length_scale: float
    gamma: float
    in_channels: int
    input_shape: tuple[int, int]
    batch_norm: bool
    cam_activation: nn.Module

    def _init_head(self, n_classes: int, feature_dim: int, embedding_dim: int, length_scale: float,
                   gamma: float) -> None:
        if not (0.0 < gamma <= 1.0) or length_scale <= 0 or n_classes < 2:
            raise ValueError(
                format_error(
                    "Invalid DUQ head settings",
                    reason=f"gamma={gamma}, length_scale={length_scale}, n_classes={n_classes}; "
                    "need 0 < gamma <= 1, length_scale > 0 and at least 2 classes",
                )
            )
        self.n_classes = int(n_classes)
        self.feature_dim = int(feature_dim)
        self.embedding_dim = int(embedding_dim)
        self.length_scale = float(length_scale)
        self.gamma = float(gamma)
        self.W = nn.Parameter(torch.normal(torch.zeros(embedding_dim, n_classes, feature_dim), 0.05))
        self.register_buffer("N", torch.full((n_classes,), 13.0))  # type: ignore[attr-defined]
        self.register_buffer("m", torch.normal(torch.zeros(embedding_dim, n_classes), 0.05) * 13.0)  # type: ignore[attr-defined]

    def _body_config(self) -> dict[str, Any]:  # pragma: no cover - interface
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-safe); the subclass's ``build_*`` function rebuilds it."""
        return {
            "n_classes": self.n_classes,
            "in_channels": self.in_channels,
            "input_shape": list(self.input_shape),
            **self._body_config(),
            "feature_dim": self.feature_dim,
            "embedding_dim": self.embedding_dim,
            "length_scale": self.length_scale,
            "gamma": self.gamma,
            "batch_norm": self.batch_norm,
        }

    def architecture(self) -> dict[str, Any]:
        """``{"name": architecture_name, "config": config()}``, the bundle manifest entry."""
        return {"name": self.architecture_name, "config": self.config()}

    @property
    def cam_layer(self) -> nn.Module:
        """The module whose output is the last convolutional feature map (for Grad-CAM)."""
        return self.cam_activation

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The last convolutional feature map (the ``onnx_encoder`` graph of a classifier
        bundle, whose pooled channels place an input in the classifier's domain)."""
        return self.feature_map(x)

    def embed(self, f: torch.Tensor) -> torch.Tensor:
        """Per-class embeddings ``W_c f``: ``(N, embedding_dim, n_classes)``."""
        return torch.einsum("ij,mnj->imn", f, self.W)

    @property
    def centroids(self) -> torch.Tensor:
        """Class centroids ``e_c = m_c / N_c``: ``(embedding_dim, n_classes)``."""
        return self.m / self.N.unsqueeze(0)

    def sq_distances(self, z: torch.Tensor) -> torch.Tensor:
        """Mean squared distances ``||z_c - e_c||^2 / n`` of embeddings to the centroids ``(N, n_classes)``."""
        diff = z - self.centroids.unsqueeze(0)
        return (diff * diff).mean(1)

    def kernel(self, z: torch.Tensor) -> torch.Tensor:
        """RBF kernel values ``(N, n_classes)`` of embeddings ``z`` to the centroids."""
        return torch.exp(-self.sq_distances(z) / (2.0 * self.length_scale**2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Kernel values ``K`` of shape ``(N, n_classes)``, each in (0, 1]."""
        return self.kernel(self.embed(self.features(x)))

    @torch.no_grad()
    def update_centroids(self, x: torch.Tensor, y_onehot: torch.Tensor) -> None:
        """EMA update of the class centroids from a labelled batch (call after each step).

        Parameters
        ----------
        x
            Inputs ``(N, C, H, W)``.
        y_onehot
            One-hot labels ``(N, n_classes)``.
        """
        # Eval mode: batch-norm running statistics are neither used from nor updated by this
        # extra pass (as in the DUQ reference training loop).
        was_training = self.training  # type: ignore[attr-defined]
        self.eval()  # type: ignore[attr-defined]
        z = self.embed(self.features(x))
        self.train(was_training)  # type: ignore[attr-defined]
        y = y_onehot.to(z.dtype)
        self.N.mul_(self.gamma).add_((1.0 - self.gamma) * y.sum(0))
        self.m.mul_(self.gamma).add_((1.0 - self.gamma) * torch.einsum("ijk,ik->jk", z, y))

    def check_input(self, x: torch.Tensor) -> None:
        """Raise InputDataError unless ``x`` is ``(N, in_channels, *input_shape)``."""
        want = (self.in_channels, *self.input_shape)
        if x.dim() != 4 or tuple(x.shape[1:]) != want:
            raise InputDataError(
                format_error(
                    "Classifier input has the wrong shape",
                    reason=f"got {tuple(x.shape)}, expected (N, {', '.join(map(str, want))})",
                    fix="pass the 240x400 mosaic (see mantid_exp2sim.mosaic)",
                )
            )


class DUQClassifier(DUQHead, nn.Module):
    """Small CNN feature extractor with a DUQ (RBF-centroid) head.

    Parameters
    ----------
    n_classes
        Number of classes.
    in_channels
        Input channels (2: scaled signal and valid mask).
    input_shape
        Spatial input size ``(H, W)``; must be divisible by ``8 * tile_grid``.
    tile_grid
        ``(rows, columns)`` of tiles the last feature map is pooled to (6 x 10 for the mosaic).
    widths
        Channels of the four convolutions.
    feature_dim
        Size of the feature vector f.
    embedding_dim
        Size of the per-class embeddings ``W_c f`` (n in the kernel).
    length_scale
        sigma of the RBF kernel.
    gamma
        Centroid EMA factor (0 < gamma <= 1; 1 freezes the centroids).
    """

    architecture_name = ARCHITECTURE_NAME

    def __init__(
        self,
        n_classes: int = 2,
        in_channels: int = 2,
        input_shape: Sequence[int] = (240, 400),
        tile_grid: Sequence[int] = (6, 10),
        widths: Sequence[int] = (16, 32, 32, 32),
        feature_dim: int = 64,
        embedding_dim: int = 64,
        length_scale: float = 0.1,
        gamma: float = 0.99,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        h, w = (int(s) for s in input_shape)
        gh, gw = (int(s) for s in tile_grid)
        if h % (8 * gh) or w % (8 * gw) or len(widths) != 4:
            raise ValueError(
                format_error(
                    "Invalid DUQ classifier geometry",
                    reason=f"input_shape={tuple(input_shape)}, tile_grid={tuple(tile_grid)}, "
                    f"{len(widths)} widths; the input must be divisible by 8 x the tile grid and "
                    "there must be 4 widths",
                )
            )
        self.in_channels = int(in_channels)
        self.input_shape = (h, w)
        self.tile_grid = (gh, gw)
        self.widths = tuple(int(c) for c in widths)
        self.batch_norm = bool(batch_norm)

        c0, c1, c2, c3 = self.widths
        self.conv1 = nn.Conv2d(in_channels, c0, 4, stride=2, padding=1)
        self.conv2 = nn.Conv2d(c0, c1, 4, stride=2, padding=1)
        self.conv3 = nn.Conv2d(c1, c2, 3, padding=1)
        self.conv4 = nn.Conv2d(c2, c3, 3, padding=1)
        self.norms = nn.ModuleList(
            [nn.BatchNorm2d(c) if self.batch_norm else nn.Identity() for c in self.widths]
        )
        # A separate (non in-place) module so Grad-CAM can hook the last conv activations.
        self.cam_activation = nn.ReLU()
        self.tile_pool = nn.AvgPool2d((h // 8 // gh, w // 8 // gw))
        self.fc = nn.Linear(c3 * gh * gw, feature_dim)
        self._init_head(n_classes, feature_dim, embedding_dim, length_scale, gamma)

    # ------------------------------------------------------------ description
    def _body_config(self) -> dict[str, Any]:
        return {"tile_grid": list(self.tile_grid), "widths": list(self.widths)}

    # ---------------------------------------------------------------- forward
    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Last convolutional activations ``(N, widths[3], H/8, W/8)``."""
        n1, n2, n3, n4 = self.norms
        y = F.relu(n1(self.conv1(x)))
        y = F.relu(n2(self.conv2(y)))
        y = F.max_pool2d(F.relu(n3(self.conv3(y))), 2)
        return self.cam_activation(n4(self.conv4(y)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """DUQ feature vectors ``(N, feature_dim)``."""
        y = self.tile_pool(self.feature_map(x))
        return self.fc(torch.flatten(y, 1))


def build_duq_classifier(config: Mapping[str, Any]) -> DUQClassifier:
    """Rebuild a classifier from :meth:`DUQClassifier.config` (the bundle registry's builder)."""
    cfg = dict(config)
    try:
        return DUQClassifier(**cfg)
    except TypeError as exc:
        raise ValueError(
            format_error(
                "Invalid DUQ classifier config",
                reason=str(exc),
                fix="use DUQClassifier.config() to produce configs",
            )
        ) from None


def gradient_penalty(x: torch.Tensor, k: torch.Tensor, rows: int | None = None) -> torch.Tensor:
    """Two-sided gradient penalty ``mean_i (||d sum_c K_ic / d x_i||_2 - 1)^2``.

    Parameters
    ----------
    x
        The input batch, with ``requires_grad`` set before the forward pass.
    k
        Kernel values computed from ``x``, ``(N, n_classes)``.
    rows
        Penalise only the first ``rows`` inputs (the labelled part of a batch that also holds
        unlabelled inputs); None: all.
    """
    (grad,) = torch.autograd.grad(k.sum(), x, create_graph=True)
    if rows is not None:
        grad = grad[:rows]
    norm = grad.flatten(1).norm(2, dim=1)
    return ((norm - 1.0) ** 2).mean()


def feature_mmd(a: torch.Tensor, b: torch.Tensor, bandwidths: Sequence[float] = (0.5, 1.0, 2.0)) -> torch.Tensor:
    """Squared maximum mean discrepancy between two sets of feature vectors.

    A sum of Gaussian kernels ``exp(-||u - v||^2 / (s * m))``, with ``m`` the median squared
    distance between all pairs of the two sets (detached, so the loss cannot shrink by
    rescaling the features) and ``s`` each of ``bandwidths``; the biased estimator, which is
    never negative and is 0 when the two sets are the same.

    Parameters
    ----------
    a, b
        ``(Na, d)`` and ``(Nb, d)`` feature vectors (at least one row each).
    """
    x = torch.cat([a, b], 0)
    d2 = torch.cdist(x, x).pow(2)
    n = x.shape[0]
    off = d2.detach()[~torch.eye(n, dtype=torch.bool, device=x.device)]
    scale = off.median().clamp_min(1e-12) if off.numel() else torch.ones((), dtype=x.dtype)
    k = sum(torch.exp(-d2 / (float(s) * scale)) for s in bandwidths)
    na = a.shape[0]
    return k[:na, :na].mean() + k[na:, na:].mean() - 2.0 * k[:na, na:].mean()


def duq_loss(
    model: DUQClassifier,
    x: torch.Tensor,
    y_onehot: torch.Tensor,
    *,
    gp_weight: float = 0.5,
    x_target: torch.Tensor | None = None,
    align_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """DUQ training loss: BCE(K, one-hot) + gp_weight * gradient penalty [+ alignment].

    With ``x_target`` (unlabelled inputs from the domain the classifier will read, e.g.
    deconvolved measured-like spectra), both batches go through the network together, so
    batch normalisation sees both domains, and ``align_weight *`` :func:`feature_mmd` between
    the two batches' feature vectors is added: unsupervised domain alignment. The labels,
    the BCE and the gradient penalty use the labelled batch only.

    Returns
    -------
    loss
        Scalar tensor to back-propagate.
    parts
        ``{"bce": ..., "gp": ..., "accuracy": ...}`` as floats for logging, plus ``"align"``
        when ``x_target`` is given.
    """
    n = x.shape[0]
    inputs = x if x_target is None else torch.cat([x, x_target], 0)
    inputs = inputs.detach().requires_grad_(gp_weight > 0)
    f = model.features(inputs)
    k_all = model.kernel(model.embed(f))
    k = k_all[:n]
    bce = F.binary_cross_entropy(k.clamp(1e-7, 1.0 - 1e-7), y_onehot.to(k.dtype))
    gp = gradient_penalty(inputs, k, rows=n) if gp_weight > 0 else torch.zeros((), dtype=k.dtype)
    acc = (k.argmax(1) == y_onehot.argmax(1)).float().mean()
    loss = bce + gp_weight * gp
    parts = {"bce": float(bce.detach()), "gp": float(gp.detach()), "accuracy": float(acc)}
    if x_target is not None:
        align = feature_mmd(f[:n], f[n:])
        loss = loss + align_weight * align
        parts["align"] = float(align.detach())
    return loss, parts
