"""Inference: exact overlap-tile translation with ONNX Runtime or PyTorch backends.

Importing this package imports neither torch nor onnxruntime; a backend imports its
package when it is first asked for. See docs/inference.md.
"""

from .backends import (
    BACKENDS,
    DEVICES,
    InferenceBackend,
    OnnxBackend,
    OOMBackoff,
    TorchBackend,
    clear_backend_cache,
    get_backend,
)
from .engine import model_spec, translate
from .features import encode_features, encoder_feature_maps
from .streaming import translate_file
from .tiler import TilePlan, plan_tiles, run_tiled

__all__ = [
    "BACKENDS",
    "DEVICES",
    "InferenceBackend",
    "OnnxBackend",
    "OOMBackoff",
    "TorchBackend",
    "TilePlan",
    "clear_backend_cache",
    "encode_features",
    "encoder_feature_maps",
    "get_backend",
    "model_spec",
    "plan_tiles",
    "run_tiled",
    "translate",
    "translate_file",
]
