"""encode_features(): the generator encoder's pooled features of an input (domain score).

classifier_features(): the same pooling of a classifier bundle's last feature map (its
``onnx_encoder`` graph), for the domain score in the classifier's own feature space.

The bottleneck feature map of the whole input (untiled, padded as the engine pads) comes
from the bundle's ``onnx_encoder`` graph or the torch module's ``encode``, and is pooled
over its valid positions by :func:`mantid_exp2sim.domain.features.pooled_features`.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..bundle.resolve import BundleSource, resolve_bundle
from ..errors import InputDataError, format_error
from ..histogram import MDHisto
from .backends import InferenceBackend, OOMBackoff, get_backend
from .engine import checked_scale, model_spec, network_dims

__all__ = ["encoder_feature_maps", "encode_features", "classifier_features"]


def encoder_feature_maps(
    histo: MDHisto,
    bundle: BundleSource,
    *,
    backend: str | InferenceBackend = "auto",
    device: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """The generator encoder's bottleneck feature map of one input (whole input, untiled).

    Returns
    -------
    feature_map
        ``(1, C, *padded_spatial / 2**n_down)`` float32, from the bundle's ``onnx_encoder``
        graph (ONNX Runtime) or the torch module's ``encode``.
    valid
        Boolean ``(1, *padded_spatial)`` at input resolution: True at unmasked input bins,
        False at masked bins and at the end padding.
    """
    from ..models.normalisation import to_network_input

    b = resolve_bundle(bundle)
    spec = model_spec(b)
    keep = network_dims(histo.axes, spec, spec.bundle_id)
    signal = histo.signal.reshape([histo.shape[i] for i in keep])
    scale = checked_scale(signal)
    m = spec.multiple
    after = [max(int(math.ceil(s / m) * m), spec.min_size) - s for s in signal.shape]
    x = to_network_input(signal, scale)
    x = np.pad(x, [(0, 0), (0, 0)] + [(0, a) for a in after], mode=spec.pad_mode)  # type: ignore[call-overload]
    valid = np.pad(~np.isnan(signal), [(0, a) for a in after], mode="constant", constant_values=False)
    engine = get_backend(b, backend=backend, device=device, graph="onnx_encoder")
    fmap = OOMBackoff(engine)(x)
    return fmap, valid[None]


def encode_features(
    histos: Sequence[MDHisto] | MDHisto,
    bundle: BundleSource,
    *,
    backend: str | InferenceBackend = "auto",
    device: str = "auto",
) -> np.ndarray:
    """Pooled encoder features for the domain-of-applicability score.

    Each input's bottleneck feature map (:func:`encoder_feature_maps`) is pooled over its
    valid positions by :func:`mantid_exp2sim.domain.features.pooled_features` (per-channel
    mean, then standard deviation), so the vector does not depend on the input size.

    Returns
    -------
    numpy.ndarray
        ``(n, 2 C)`` float64, one row per input.
    """
    from ..domain.features import pooled_features

    items = [histos] if isinstance(histos, MDHisto) else list(histos)
    if not items:
        raise InputDataError(format_error("encode_features() got no inputs", fix="pass at least one MDHisto"))
    b = resolve_bundle(bundle)
    rows = []
    for h in items:
        fmap, valid = encoder_feature_maps(h, b, backend=backend, device=device)
        rows.append(pooled_features(fmap, valid)[0])
    return np.stack(rows)


def classifier_features(
    histos: Sequence[MDHisto] | MDHisto,
    bundle: BundleSource,
    *,
    backend: str | InferenceBackend = "auto",
    device: str = "auto",
) -> np.ndarray:
    """Pooled last feature maps of a classifier bundle for mosaics (the classifier's domain score).

    Each input is the classifier's own scale-free input (signal over the RMS of its unmasked
    bins, and the valid mask); the ``onnx_encoder`` graph gives its last feature map, pooled
    over the valid positions by :func:`mantid_exp2sim.domain.features.pooled_features`.

    Returns
    -------
    numpy.ndarray
        ``(n, 2 C)`` float64, one row per input.
    """
    from ..domain.features import pooled_features
    from ..models.normalisation import intensity_scale, to_network_input

    items = [histos] if isinstance(histos, MDHisto) else list(histos)
    if not items:
        raise InputDataError(format_error("classifier_features() got no inputs", fix="pass at least one mosaic"))
    b = resolve_bundle(bundle)
    shape = tuple(int(v) for v in b.manifest["architecture"]["config"]["input_shape"])
    engine = get_backend(b, backend=backend, device=device, graph="onnx_encoder")
    rows = []
    for h in items:
        sig = h.signal.reshape(shape)
        x = to_network_input(sig, intensity_scale(sig))
        fmap = np.asarray(engine(np.ascontiguousarray(x, dtype=np.float32)))
        rows.append(pooled_features(fmap, ~np.isnan(sig)[None])[0])
    return np.stack(rows)
