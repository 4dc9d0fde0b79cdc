"""ONNX export (torch, onnx, onnxscript) and verification (onnxruntime).

Importing this package imports neither torch nor onnx; they are loaded by the functions.
"""

from .export import INPUT_NAME, OPSET, EncoderWrapper, export_onnx, verify_onnx

__all__ = ["INPUT_NAME", "OPSET", "EncoderWrapper", "export_onnx", "verify_onnx"]
