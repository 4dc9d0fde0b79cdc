"""Export torch networks to single-file ONNX graphs and check them against PyTorch.

Needs torch, onnx and onnxscript (the ``train`` extra) for export; verification needs
onnxruntime. Export uses the dynamo exporter (opset 18, weights inside the graph) with a
dynamic batch axis and, by default, dynamic spatial axes, and falls back to the TorchScript
exporter when dynamo cannot handle a module.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Any, Sequence

import numpy as np

from ..errors import format_error, require

__all__ = ["export_onnx", "verify_onnx", "EncoderWrapper", "OPSET", "INPUT_NAME"]

OPSET = 18
INPUT_NAME = "input"
EXPORTERS = ("auto", "dynamo", "torchscript")

_log = logging.getLogger(__name__)


def _torch():
    return require("torch", extra="train", feature="ONNX export")


def EncoderWrapper(generator: Any):  # noqa: N802 - factory returning an nn.Module
    """An ``nn.Module`` whose forward is ``generator.encode(x)``, for exporting the encoder."""
    torch = _torch()

    class _Encoder(torch.nn.Module):
        def __init__(self, g: Any) -> None:
            super().__init__()
            self.generator = g

        def forward(self, x):
            return self.generator.encode(x)

    return _Encoder(generator)


def _dynamo_export(module, x, dynamic_spatial: bool, output_names: list[str], optimize: bool) -> bytes:
    torch = _torch()
    from torch.export import Dim

    dims = {0: Dim.DYNAMIC}
    if dynamic_spatial:
        dims.update({i: Dim.DYNAMIC for i in range(2, x.dim())})
    # the exporter reports progress on stdout; keep library output quiet
    with contextlib.redirect_stdout(io.StringIO()):
        program = torch.onnx.export(
            module,
            (x,),
            dynamo=True,
            external_data=False,
            opset_version=OPSET,
            dynamic_shapes=({**dims},),
            input_names=[INPUT_NAME],
            output_names=output_names,
            verbose=False,
            optimize=optimize,
        )
    return program.model_proto.SerializeToString()


def _torchscript_export(module, x, dynamic_spatial: bool, output_names: list[str]) -> bytes:
    torch = _torch()
    axes = {0: "batch"}
    if dynamic_spatial:
        axes.update({i: f"s{i - 2}" for i in range(2, x.dim())})
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # harmless: strided slices (the reflect padding) are left to ONNX Runtime to fold
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
        torch.onnx.export(
            module,
            (x,),
            buf,
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=output_names,
            dynamic_axes={INPUT_NAME: axes, **{n: dict(axes) for n in output_names}},
        )
    return buf.getvalue()


def export_onnx(
    module: Any,
    example_input: Any,
    *,
    dynamic_spatial: bool = True,
    output_names: Sequence[str] | None = None,
    exporter: str = "auto",
    optimize: bool = True,
) -> bytes:
    """Serialise ``module`` to one self-contained ONNX graph (opset 18).

    Parameters
    ----------
    module
        A torch ``nn.Module`` taking one tensor ``(N, C, *spatial)``; exported in eval mode (its
        training flag is restored afterwards).
    example_input
        Tensor or array of a valid input shape (for a generator: spatial sizes multiples of
        ``spatial_multiple``). Its batch and spatial sizes are not baked in.
    dynamic_spatial
        Keep the spatial axes dynamic (default); the batch axis is always dynamic.
    output_names
        Names of the graph outputs (default ``["output"]``; the discriminator has two).
    exporter
        ``"auto"`` (dynamo, falling back to TorchScript on failure), ``"dynamo"`` or
        ``"torchscript"``.
    optimize
        Run the ONNX graph optimiser after a dynamo export (default; folds the padding and
        shape arithmetic into fewer nodes). ONNX Runtime optimises the graph again when it
        loads it, so False gives the same results and halves the export time.

    Returns
    -------
    bytes
        The ONNX model; input name ``"input"``.
    """
    torch = _torch()
    require("onnx", extra="train", feature="ONNX export")
    if exporter not in EXPORTERS:
        raise ValueError(
            format_error("Unknown ONNX exporter", reason=f"exporter={exporter!r}; allowed: {', '.join(EXPORTERS)}")
        )
    x = torch.as_tensor(np.asarray(example_input) if not torch.is_tensor(example_input) else example_input)
    x = x.to(torch.float32)
    if x.dim() < 3:
        raise ValueError(
            format_error("Invalid example input for ONNX export",
                         reason=f"shape {tuple(x.shape)}; expected (N, C, *spatial)")
        )
    names = list(output_names) if output_names is not None else ["output"]
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            if exporter in ("auto", "dynamo"):
                try:
                    return _dynamo_export(module, x, dynamic_spatial, names, optimize)
                except Exception as exc:  # dynamo failures come as many exception types
                    if exporter == "dynamo":
                        raise
                    _log.warning("dynamo ONNX export failed (%s); using the TorchScript exporter", exc)
            return _torchscript_export(module, x, dynamic_spatial, names)
    finally:
        module.train(was_training)


def verify_onnx(onnx_bytes: bytes, module: Any, inputs: Any) -> float:
    """Largest absolute difference between ONNX Runtime (CPU) and PyTorch outputs.

    Parameters
    ----------
    onnx_bytes
        From :func:`export_onnx`.
    module
        The torch module it was exported from (run in eval mode, without gradients).
    inputs
        One input (tensor or array) or a sequence of them, e.g. of sizes not used at export.

    Returns
    -------
    float
        max |ORT - torch| over every input and every output.
    """
    torch = _torch()
    ort = require("onnxruntime", extra="all", feature="ONNX verification")
    session = ort.InferenceSession(bytes(onnx_bytes), providers=["CPUExecutionProvider"])
    in_name = session.get_inputs()[0].name
    batch = [inputs] if (torch.is_tensor(inputs) or isinstance(inputs, np.ndarray)) else list(inputs)
    was_training = module.training
    module.eval()
    worst = 0.0
    try:
        for item in batch:
            x = np.ascontiguousarray(
                item.detach().cpu().numpy() if torch.is_tensor(item) else np.asarray(item), dtype=np.float32
            )
            got = session.run(None, {in_name: x})
            with torch.no_grad():
                ref = module(torch.from_numpy(x))
            refs = list(ref) if isinstance(ref, (tuple, list)) else [ref]
            if len(refs) != len(got):
                raise ValueError(
                    format_error("ONNX graph and module disagree on the number of outputs",
                                 reason=f"ONNX {len(got)}, torch {len(refs)}")
                )
            for a, b in zip(got, refs):
                b = b.detach().cpu().numpy()
                if a.shape != b.shape:
                    raise ValueError(
                        format_error("ONNX output shape differs from PyTorch",
                                     reason=f"input {x.shape}: ONNX {a.shape}, torch {b.shape}")
                    )
                worst = max(worst, float(np.max(np.abs(a.astype(np.float64) - b))) if a.size else 0.0)
    finally:
        module.train(was_training)
    return worst
