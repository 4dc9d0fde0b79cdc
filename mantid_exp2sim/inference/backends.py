"""Inference backends: ONNX Runtime and PyTorch, on CPU or a CUDA GPU.

A backend is a callable mapping a float32 batch ``(B, C_in, *spatial)`` to a float32 array
``(B, C_out, *spatial)``. Choice is three-state for both the backend and the device:

* ``backend="auto"`` uses ONNX Runtime if it is importable, else PyTorch; with
  ``device="gpu"`` it takes ONNX Runtime only if its CUDA provider really works and otherwise
  falls back to PyTorch on CUDA. ``"onnx"`` or ``"torch"`` must be importable or a
  :class:`~mantid_exp2sim.errors.MissingDependencyError` with the install hint is raised.
* ``device="auto"`` uses the GPU if it really works (for ONNX Runtime: the session's
  providers after creation, because ``onnxruntime-gpu`` silently falls back to CPU), else
  the CPU, and logs why; ``"gpu"`` raises a ``ValueError`` if no working GPU is there.

Neither torch nor onnxruntime is imported before a backend of that kind is asked for.
:class:`OOMBackoff` wraps a backend so that a CUDA out-of-memory error halves the batch and
retries instead of failing.
"""

from __future__ import annotations

import importlib.util
import logging
from collections import OrderedDict
from typing import Any, Callable

import numpy as np

from ..errors import BundleError, MissingDependencyError, format_error, require

__all__ = [
    "BACKENDS",
    "DEVICES",
    "InferenceBackend",
    "OnnxBackend",
    "TorchBackend",
    "OOMBackoff",
    "clear_backend_cache",
    "get_backend",
    "import_onnxruntime",
    "is_out_of_memory",
    "resolve_backend_name",
    "validate_choice",
]

log = logging.getLogger("mantid_exp2sim.inference")

BACKENDS = ("auto", "onnx", "torch")
DEVICES = ("auto", "cpu", "gpu")

_ORT_OOM_MARKERS = (
    "out of memory",
    "failed to allocate memory",
    "cudnn_status_alloc_failed",
    "cublas_status_alloc_failed",
    "cudaerrormemoryallocation",
    "bfcarena",
)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def validate_choice(backend: str, device: str) -> None:
    """Raise ``ValueError`` unless ``backend`` is in :data:`BACKENDS` and ``device`` in :data:`DEVICES`."""
    if backend not in BACKENDS:
        raise ValueError(
            format_error(
                "Unknown inference backend",
                reason=f"backend={backend!r}; allowed: {', '.join(map(repr, BACKENDS))}",
                fix="use 'auto' (ONNX Runtime if installed, else PyTorch), 'onnx' or 'torch'",
            )
        )
    if device not in DEVICES:
        raise ValueError(
            format_error(
                "Unknown inference device",
                reason=f"device={device!r}; allowed: {', '.join(map(repr, DEVICES))}",
                fix="use 'auto' (a GPU if one really works, else the CPU), 'cpu' or 'gpu'",
            )
        )


def import_onnxruntime(feature: str = "backend='onnx'") -> Any:
    """Import onnxruntime or raise :class:`MissingDependencyError` with the install hint."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError(
            format_error(
                f"{feature} needs the Python package 'onnxruntime'",
                reason=f"importing it failed ({exc})",
                fix="install it with: pip install onnxruntime (CPU) or pip install onnxruntime-gpu "
                "(CUDA; never both)",
            )
        ) from exc
    return onnxruntime


def _ort_lists_cuda() -> bool:
    ort = import_onnxruntime()
    return "CUDAExecutionProvider" in ort.get_available_providers()


def _torch_cuda_available() -> bool:
    if not _importable("torch"):
        return False
    import torch

    return bool(torch.cuda.is_available())


def resolve_backend_name(backend: str, device: str) -> str:
    """Turn the three-state backend choice into ``"onnx"`` or ``"torch"``.

    Parameters
    ----------
    backend
        ``"auto"``, ``"onnx"`` or ``"torch"``.
    device
        ``"auto"``, ``"cpu"`` or ``"gpu"`` (only consulted for ``backend="auto"`` with
        ``device="gpu"``).

    Returns
    -------
    str
        ``"onnx"`` or ``"torch"``; the package is importable.
    """
    validate_choice(backend, device)
    if backend == "onnx":
        import_onnxruntime()
        return "onnx"
    if backend == "torch":
        require("torch", extra="torch", feature="backend='torch'")
        return "torch"
    has_ort = _importable("onnxruntime")
    has_torch = _importable("torch")
    if not (has_ort or has_torch):
        raise MissingDependencyError(
            format_error(
                "No inference backend is installed",
                reason="neither 'onnxruntime' nor 'torch' can be imported",
                fix="install one: pip install onnxruntime (CPU), onnxruntime-gpu (CUDA) or "
                "'mantid-exp2sim[torch]'",
            )
        )
    if device == "gpu" and has_ort and has_torch and not _ort_lists_cuda() and _torch_cuda_available():
        log.info("backend='auto', device='gpu': ONNX Runtime has no CUDA provider; using PyTorch on CUDA")
        return "torch"
    return "onnx" if has_ort else "torch"


def is_out_of_memory(exc: BaseException) -> bool:
    """True if ``exc`` is a (CUDA) out-of-memory error from PyTorch or ONNX Runtime."""
    if isinstance(exc, MemoryError):
        return False  # host memory: halving the batch rarely helps, and numpy raises it
    name = type(exc).__name__
    if name == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError (and torch.OutOfMemoryError)
        return True
    module = type(exc).__module__ or ""
    if "onnxruntime" in module or name in ("RuntimeError", "RuntimeException", "Fail"):
        text = str(exc).lower()
        return any(marker in text for marker in _ORT_OOM_MARKERS)
    return False


class InferenceBackend:
    """A network ready to run: ``backend(x) -> y`` on float32 numpy batches.

    Attributes
    ----------
    name
        ``"onnx"`` or ``"torch"``.
    device
        ``"cpu"`` or ``"gpu"``: where it really runs.
    precision
        ``"fp32"`` or ``"fp16"``.
    """

    name: str = ""
    device: str = "cpu"
    precision: str = "fp32"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Run one batch ``(B, C_in, *spatial)`` and return ``(B, C_out, *spatial)`` float32."""
        raise NotImplementedError

    def release_memory(self) -> None:
        """Free cached device memory after an out-of-memory error (no-op on CPU)."""

    def describe(self) -> dict[str, Any]:
        """JSON-safe description for provenance metadata."""
        return {"backend": self.name, "device": self.device, "precision": self.precision}


class OnnxBackend(InferenceBackend):
    """ONNX Runtime session on CPU or CUDA.

    Parameters
    ----------
    onnx_bytes
        Serialized ONNX graph with one input ``(N, C_in, *spatial)`` and the generator output
        (or the encoder feature map) as its first output.
    device
        ``"auto"``, ``"cpu"`` or ``"gpu"``. The session's providers are checked after it is
        created: a GPU session that came up on CPU only raises for ``"gpu"`` and is used,
        with a logged reason, for ``"auto"``.
    threads
        ``intra_op_num_threads`` of the session (None: ONNX Runtime's default, all cores).
    """

    name = "onnx"

    def __init__(self, onnx_bytes: bytes, *, device: str = "auto", threads: int | None = None) -> None:
        validate_choice("onnx", device)
        ort = import_onnxruntime()
        self._ort = ort
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Without the CPU arena and the recorded memory pattern, tile-sized buffers are
        # allocated as needed and go back to the OS after each run: the peak over repeated
        # tiles drops by 10-20% and nothing stays allocated after a translation.
        options.enable_cpu_mem_arena = False
        options.enable_mem_pattern = False
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        available = list(ort.get_available_providers())
        session = None
        reason = ""
        if device in ("auto", "gpu"):
            if "CUDAExecutionProvider" not in available:
                reason = f"ONNX Runtime lists no CUDAExecutionProvider (available: {available})"
            else:
                session = ort.InferenceSession(
                    onnx_bytes,
                    sess_options=options,
                    providers=["CUDAExecutionProvider", "CPUExecutionProvider"],
                )
                # onnxruntime-gpu falls back to CPU without raising when CUDA/cuDNN cannot load.
                if session.get_providers()[0] != "CUDAExecutionProvider":
                    reason = (
                        "the CUDA provider failed to start (the session came up with "
                        f"{session.get_providers()}; CUDA or cuDNN libraries missing or no GPU)"
                    )
            if reason:
                if device == "gpu":
                    raise ValueError(
                        format_error(
                            "device='gpu' was requested but ONNX Runtime cannot use a GPU",
                            reason=reason,
                            fix="install onnxruntime-gpu (instead of onnxruntime) with a matching "
                            "CUDA/cuDNN, or use backend='torch' with a CUDA build of PyTorch, or "
                            "device='cpu'",
                        )
                    )
                log.info("device='auto': running ONNX Runtime on the CPU because %s", reason)
        if session is None or reason:
            session = ort.InferenceSession(
                onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"]
            )
        self.session = session
        self.providers = list(session.get_providers())
        self.device = "gpu" if self.providers[0] == "CUDAExecutionProvider" else "cpu"
        self._input = session.get_inputs()[0].name
        self._output = session.get_outputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        (y,) = self.session.run([self._output], {self._input: x})
        return np.asarray(y, dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["providers"] = self.providers
        return out


class TorchBackend(InferenceBackend):
    """A PyTorch module on CPU or CUDA, optionally in half precision on the GPU.

    Parameters
    ----------
    module
        A ``torch.nn.Module`` (put into eval mode here; moved, not copied, to the device).
    device
        ``"auto"``, ``"cpu"`` or ``"gpu"`` (``"gpu"`` needs ``torch.cuda.is_available()``).
    half
        Run in float16 (GPU only; inputs and outputs stay float32 numpy arrays).
    method
        Name of the module method to call (``"forward"``, or ``"encode"`` for features).
    """

    name = "torch"

    def __init__(self, module: Any, *, device: str = "auto", half: bool = False, method: str = "forward") -> None:
        validate_choice("torch", device)
        torch = require("torch", extra="torch", feature="backend='torch'")
        self._torch = torch
        cuda = bool(torch.cuda.is_available())
        if device == "gpu" and not cuda:
            raise ValueError(
                format_error(
                    "device='gpu' was requested but PyTorch sees no CUDA GPU",
                    reason=f"torch {torch.__version__} reports torch.cuda.is_available() == False",
                    fix="install a CUDA build of PyTorch on a machine with an NVIDIA GPU, or use device='cpu'",
                )
            )
        if device == "auto" and not cuda:
            log.info("device='auto': running PyTorch on the CPU because no CUDA GPU is available")
        self.device = "gpu" if (device in ("auto", "gpu") and cuda) else "cpu"
        if half and self.device != "gpu":
            raise ValueError(
                format_error(
                    "Half precision needs a GPU",
                    reason=f"half=True with the model running on {self.device}",
                    fix="use half=False on the CPU",
                )
            )
        self._dev = torch.device("cuda" if self.device == "gpu" else "cpu")
        self._dtype = torch.float16 if half else torch.float32
        self.precision = "fp16" if half else "fp32"
        self.module = module.eval().to(device=self._dev, dtype=self._dtype)
        self._fn: Callable[[Any], Any] = getattr(self.module, method)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
            t = t.to(device=self._dev, dtype=self._dtype, non_blocking=True)
            y = self._fn(t)
            return y.float().cpu().numpy()

    def release_memory(self) -> None:
        if self.device == "gpu":
            self._torch.cuda.empty_cache()


class OOMBackoff:
    """Run batches through ``backend``, halving the batch on out-of-memory errors.

    Parameters
    ----------
    backend
        The callable to protect; if it has ``release_memory()`` that is called after an
        out-of-memory error, before the retry.
    is_oom
        Decides whether an exception is an out-of-memory error (default
        :func:`is_out_of_memory`).

    Attributes
    ----------
    limit
        Current largest batch (None until the first out-of-memory error); it only shrinks,
        so later calls do not hit the same error again.
    """

    def __init__(self, backend: Callable[[np.ndarray], np.ndarray], *, is_oom: Callable[[BaseException], bool] = is_out_of_memory) -> None:
        self.backend = backend
        self.is_oom = is_oom
        self.limit: int | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        outs: list[np.ndarray] = []
        i = 0
        while i < n:
            size = min(n - i, self.limit or n)
            try:
                outs.append(np.asarray(self.backend(x[i : i + size])))
            except Exception as exc:  # noqa: BLE001 - filtered by is_oom, re-raised otherwise
                if not self.is_oom(exc):
                    raise
                release = getattr(self.backend, "release_memory", None)
                if release is not None:
                    release()
                if size == 1:
                    raise MemoryError(
                        format_error(
                            "The GPU ran out of memory on a single patch",
                            reason=f"input patch of shape {tuple(x.shape[1:])} does not fit ({exc})",
                            fix="use a smaller PatchSize / patch_size, or device='cpu'",
                        )
                    ) from exc
                self.limit = max(1, size // 2)
                log.warning("Out of memory with a batch of %d patches; retrying with %d", size, self.limit)
                continue
            i += size
        return outs[0] if len(outs) == 1 else np.concatenate(outs, axis=0)


# ------------------------------------------------------- a bundle's network, cached
_CACHE: "OrderedDict[tuple, InferenceBackend]" = OrderedDict()
_CACHE_SIZE = 4


def clear_backend_cache() -> None:
    """Forget the ONNX Runtime sessions and torch models kept for repeated calls."""
    _CACHE.clear()


def get_backend(
    bundle: Any,
    *,
    backend: str | InferenceBackend = "auto",
    device: str = "auto",
    half: bool = False,
    graph: str = "onnx",
) -> InferenceBackend:
    """A ready backend for a bundle's network, cached per bundle checksum and choice.

    Parameters
    ----------
    bundle
        A loaded bundle (``.manifest``, ``.onnx_bytes(name)``, ``.build_torch_model()``).
    backend
        ``"auto"``, ``"onnx"``, ``"torch"``, or an already built backend (returned as is).
    device
        ``"auto"``, ``"cpu"`` or ``"gpu"``.
    half
        Half precision (torch on GPU only).
    graph
        ``"onnx"`` for the generator, ``"onnx_encoder"`` for the feature encoder (torch:
        the module's ``encode`` method).
    """
    if isinstance(backend, InferenceBackend):
        return backend
    validate_choice(backend, device)
    name = resolve_backend_name(backend, device)
    if half and name != "torch":
        if backend == "auto":
            name = "torch"
            resolve_backend_name("torch", device)
        else:
            raise ValueError(
                format_error(
                    "Half precision is only available with the PyTorch backend",
                    reason=f"backend={backend!r}, half=True",
                    fix="use backend='torch' with device='gpu', or half=False",
                )
            )
    sha = str(getattr(bundle, "sha256", "") or id(bundle))
    key = (sha, name, device, bool(half), graph)
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    if name == "onnx":
        try:
            data = bundle.onnx_bytes(graph)
        except (KeyError, BundleError) as exc:
            raise BundleError(
                format_error(
                    f"The bundle has no '{graph}' graph",
                    reason=str(exc),
                    fix="use backend='torch' (rebuilds the network from the weights) or re-export the bundle",
                )
            ) from exc
        made: InferenceBackend = OnnxBackend(data, device=device)
    else:
        module = bundle.build_torch_model()
        method = "encode" if graph == "onnx_encoder" else "forward"
        made = TorchBackend(module, device=device, half=half, method=method)
    _CACHE[key] = made
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return made
