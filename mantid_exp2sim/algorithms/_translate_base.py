"""Shared logic of ResolutionDeconvolveGAN / ResolutionConvolveGAN and ``exp2sim deconvolve|convolve``.

The first half is Mantid-free (the command-line tools use it too): choosing and checking
the model bundle, checking the input, running :func:`mantid_exp2sim.inference.translate`
and giving the output its errors. The second half declares, validates and executes the
two algorithms; Mantid is imported there, inside the functions.

Mantid calls ``PyInit``, ``PyExec``, ``validateInputs``, ``category``, ``summary`` and
``seeAlso`` only when they are defined in the algorithm's own class body (it looks in
``type(self).__dict__``), so each algorithm class defines them and delegates here;
inheriting them from a shared base class would silently break the algorithms.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import BundleError, InputDataError, format_error
from ..histogram import MDHisto

__all__ = [
    "ALGORITHM_NAMES",
    "BACKENDS",
    "CATEGORY",
    "DEVICES",
    "DIRECTIONS",
    "ERRORS_DESCRIPTION",
    "LOG_PREFIX",
    "check_signal",
    "network_ndim",
    "propagate_errors",
    "provenance_logs",
    "resolve_model",
    "translate_histo",
    "declare_properties",
    "validate_inputs",
    "execute",
]

#: Mantid algorithm of each task.
ALGORITHM_NAMES = {"deconvolve": "ResolutionDeconvolveGAN", "convolve": "ResolutionConvolveGAN"}
#: Exp2SimGAN direction of each task.
DIRECTIONS = {"deconvolve": "exp2sim", "convolve": "sim2exp"}
#: Algorithm property value -> translate() argument.
BACKENDS = {"Auto": "auto", "ONNX": "onnx", "PyTorch": "torch"}
DEVICES = {"Auto": "auto", "CPU": "cpu", "GPU": "gpu"}
#: Mantid category of both algorithms (``\\`` separates sub-categories).
CATEGORY = "Inelastic\\MachineLearning"
#: Prefix of the provenance sample logs.
LOG_PREFIX = "exp2sim_"
#: What the output errors are (recorded in the output and in the docs).
ERRORS_DESCRIPTION = (
    "input errors scaled by the ratio of output to input RMS intensity; "
    "not propagated through the network, no model uncertainty"
)


# ===================================================================== Mantid-free
def network_ndim(shape: Sequence[int]) -> int:
    """Number of dimensions the network runs over: those with more than one bin."""
    return sum(1 for n in shape if int(n) > 1)


def resolve_model(task: str, ndim: int, model_file: str | os.PathLike | None = None) -> tuple[Any, Path]:
    """Load the generator bundle for ``task``: ``model_file`` or the shipped default.

    Parameters
    ----------
    task
        ``"deconvolve"`` or ``"convolve"``.
    ndim
        Dimensions of the data the model must translate (2 or 3).
    model_file
        A ``.exp2sim.h5`` bundle, or None/"" for ``default_bundle_path(task, ndim)``.

    Returns
    -------
    bundle, path

    Raises
    ------
    BundleError
        Unreadable or corrupted file, wrong kind or task, wrong dimensionality, or no
        shipped default; the message names the file.
    """
    from ..bundle.resolve import resolve_generator_bundle

    return resolve_generator_bundle(
        ndim,
        model_file,
        default_task=task,
        task=task,
        purpose="translate",
        describe_ndim="it translates {bundle_ndim}D data",
        fix=f"use a {ndim}D {task} bundle (or leave the model unset for the shipped one)",
    )


def check_signal(signal: np.ndarray) -> str:
    """Empty string if the signal can be translated, else the problem.

    Refuses +-inf, inputs with no unmasked bin and inputs whose unmasked bins are all zero.
    """
    arr = np.asarray(signal)
    n_inf = int(np.count_nonzero(np.isinf(arr)))
    if n_inf:
        return (
            f"{n_inf} bin(s) are infinite; only numbers and NaN (masked bins) are allowed. "
            "Mask them (set them to NaN) first"
        )
    finite = np.isfinite(arr)
    if not finite.any():
        return f"all {arr.size} bins are masked (NaN): there is nothing to translate"
    if not np.any(arr[finite]):
        return "every unmasked bin is zero: there is nothing to translate"
    return ""


def _rms(values: np.ndarray) -> float:
    v = values[np.isfinite(values)]
    return float(np.sqrt(np.mean(v * v))) if v.size else 0.0


def propagate_errors(source: MDHisto, result: MDHisto) -> np.ndarray | None:
    """Output errors: the input's sigma times ``rms(output) / rms(input)`` (unmasked bins).

    The generator gives no uncertainty and its output at one bin depends on many input
    bins, so no exact propagation exists; this keeps the measurement's relative noise level
    on the output's intensity scale (see :data:`ERRORS_DESCRIPTION`). NaN where masked;
    None when the input has no errors.
    """
    if source.errors is None:
        return None
    rms_in = _rms(source.signal)
    ratio = _rms(result.signal) / rms_in if rms_in > 0 else 0.0
    errors = source.errors * ratio
    return np.where(np.isnan(result.signal), np.nan, errors)


def translate_histo(
    histo: MDHisto,
    task: str,
    *,
    model_file: str | os.PathLike | None = None,
    bundle: Any = None,
    backend: str = "auto",
    device: str = "auto",
    batch_size: int | None = None,
    patch_size: Sequence[int] | int | None = None,
    progress: Callable[[int, int], Any] | None = None,
    conserve_intensity: bool = True,
) -> MDHisto:
    """Add (``"convolve"``) or remove (``"deconvolve"``) the instrument resolution.

    Parameters
    ----------
    histo
        Input, 2 or 3 dimensions with more than one bin (size-1 dimensions are carried
        through).
    task
        ``"deconvolve"`` (Exp2Sim) or ``"convolve"`` (Sim2Exp).
    model_file, bundle
        A bundle path, or an already loaded bundle; neither: the shipped default.
    backend, device, batch_size, patch_size, progress, conserve_intensity
        As in :func:`mantid_exp2sim.inference.translate`.

    Returns
    -------
    MDHisto
        Same axes and masked bins; errors from :func:`propagate_errors`; metadata of
        ``translate`` plus ``model_file`` and ``errors``.
    """
    from ..inference import translate

    if task not in ALGORITHM_NAMES:
        raise ValueError(f"task must be one of {sorted(ALGORITHM_NAMES)}, got {task!r}")
    problem = check_signal(histo.signal)
    if problem:
        raise InputDataError(format_error("The input cannot be translated", reason=problem))
    path: Path | None = None
    if bundle is None:
        bundle, path = resolve_model(task, network_ndim(histo.shape), model_file)
    result = translate(
        histo,
        bundle,
        backend=backend,
        device=device,
        batch_size=batch_size,
        patch_size=patch_size,
        progress=progress,
        conserve_intensity=conserve_intensity,
    )
    extra = {"errors": ERRORS_DESCRIPTION}
    if path is not None:
        extra["model_file"] = str(path)
    return result.with_signal(result.signal, propagate_errors(histo, result), metadata=extra)


_PROVENANCE_KEYS = (
    "bundle_id",
    "bundle_sha256",
    "task",
    "direction",
    "backend",
    "device",
    "precision",
    "package_version",
    "model_file",
    "errors",
    "model_warning",
    "intensity_factor",
    "intensity_conservation",
)


def provenance_logs(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The sample logs recorded on an output workspace: ``exp2sim_<key>`` for the provenance keys."""
    return {LOG_PREFIX + k: metadata[k] for k in _PROVENANCE_KEYS if metadata.get(k) is not None}


# ========================================================== the Mantid algorithms
def declare_properties(alg: Any, task: str) -> None:
    """Declare the properties shared by both algorithms."""
    from mantid.api import FileAction, FileProperty, IMDHistoWorkspaceProperty
    from mantid.kernel import Direction, IntArrayProperty, IntBoundedValidator, Property, StringListValidator

    what = "measured (resolution-broadened)" if task == "deconvolve" else "simulated (resolution-free)"
    alg.declareProperty(
        IMDHistoWorkspaceProperty("InputWorkspace", "", Direction.Input),
        doc=f"The {what} spectrum: an MDHistoWorkspace with 2 or 3 dimensions of more than one bin "
        "(extra dimensions with a single bin are carried through). NaN bins are treated as masked.",
    )
    alg.declareProperty(
        IMDHistoWorkspaceProperty("OutputWorkspace", "", Direction.Output),
        doc="The translated spectrum, on the same dimensions, with the same masked bins.",
    )
    alg.declareProperty(
        FileProperty("ModelFile", "", FileAction.OptionalLoad, [".h5"]),
        doc=f"A {task} model bundle (*.exp2sim.h5). Empty: the model shipped with mantid-exp2sim "
        "for the input's dimensionality.",
    )
    alg.declareProperty(
        "Backend",
        "Auto",
        StringListValidator(list(BACKENDS)),
        doc="Inference engine: Auto (ONNX Runtime if installed, else PyTorch), ONNX or PyTorch.",
    )
    alg.declareProperty(
        "Device",
        "Auto",
        StringListValidator(list(DEVICES)),
        doc="Auto (a working GPU if there is one, else the CPU), CPU or GPU.",
    )
    alg.declareProperty(
        "BatchSize",
        Property.EMPTY_INT,
        IntBoundedValidator(lower=1),
        doc="Tiles per network call. Empty: 1 on the CPU, as many as fit comfortably on a GPU.",
    )
    alg.declareProperty(
        IntArrayProperty("PatchSize", []),
        doc="Tile size in bins, one value or one per translated dimension (dimension 0 first), "
        "rounded up to what the network needs. Empty: the model's default. Changes speed and "
        "memory use, not the result.",
    )
    alg.declareProperty(
        "ConserveIntensity",
        True,
        doc="Rescale the output so that its integrated intensity over the unmasked bins equals the "
        "input's, as resolution (de)convolution does. Skipped, with the reason in the sample log "
        "exp2sim_intensity_conservation, when negative bins cancel most of the integral.",
    )


def _options(alg: Any) -> dict[str, Any]:
    from mantid.kernel import Property

    batch = int(alg.getProperty("BatchSize").value)
    patch = [int(v) for v in np.asarray(alg.getProperty("PatchSize").value).reshape(-1)]
    return {
        "model_file": alg.getProperty("ModelFile").value or None,
        "backend": BACKENDS[alg.getProperty("Backend").value],
        "device": DEVICES[alg.getProperty("Device").value],
        "batch_size": None if batch == Property.EMPTY_INT else batch,
        "patch_size": patch or None,
        "conserve_intensity": bool(alg.getProperty("ConserveIntensity").value),
    }


def _dimension_summary(ws: Any) -> str:
    parts = []
    for i in range(ws.getNumDims()):
        d = ws.getDimension(i)
        name = d.name if isinstance(getattr(d, "name", None), str) else d.getName()
        parts.append(f"'{name}' ({d.getNBins()} bins)")
    return ", ".join(parts)


def validate_inputs(alg: Any, task: str) -> dict[str, str]:
    """``validateInputs``: {property: message} for every problem found before running."""
    issues: dict[str, str] = {}
    ws = alg.getProperty("InputWorkspace").value
    if ws is None:
        return {"InputWorkspace": "An MDHistoWorkspace is required."}
    shape = [ws.getDimension(i).getNBins() for i in range(ws.getNumDims())]
    ndim = network_ndim(shape)
    if ndim not in (2, 3):
        integrated = sum(1 for n in shape if n == 1)
        issues["InputWorkspace"] = format_error(
            f"The workspace has {ndim} dimension(s) with more than one bin",
            reason=f"dimensions {_dimension_summary(ws)}"
            + (f"; {integrated} of them integrated (one bin)" if integrated else "")
            + "; the models translate 2D or 3D data",
            fix="bin the data to 2 or 3 dimensions with more than one bin each (e.g. with BinMD)",
        )
    else:
        problem = check_signal(ws.getSignalArray())
        if problem:
            issues["InputWorkspace"] = format_error("The workspace cannot be translated", reason=problem)

    opts = _options(alg)
    patch = opts["patch_size"]
    if patch is not None:
        if any(v < 1 for v in patch):
            issues["PatchSize"] = format_error(
                "Invalid PatchSize", reason=f"got {patch}; every value must be >= 1", fix="leave it empty for the default"
            )
        elif ndim in (2, 3) and len(patch) not in (1, ndim):
            issues["PatchSize"] = format_error(
                "PatchSize has the wrong length",
                reason=f"got {len(patch)} values {patch} for data with {ndim} dimensions of more than one bin",
                fix=f"give one value (used for every dimension) or {ndim} values, dimension 0 first",
            )

    backend = opts["backend"]
    if backend == "torch" and importlib.util.find_spec("torch") is None:
        issues["Backend"] = format_error(
            "Backend PyTorch needs the Python package 'torch'",
            reason="it is not installed in Mantid's Python",
            fix="install it with: pip install 'mantid-exp2sim[torch]', or choose ONNX",
        )
    if backend == "onnx" and importlib.util.find_spec("onnxruntime") is None:
        issues["Backend"] = format_error(
            "Backend ONNX needs the Python package 'onnxruntime'",
            reason="it is not installed in Mantid's Python",
            fix="install it with: pip install onnxruntime (or onnxruntime-gpu), or choose PyTorch",
        )

    if ndim in (2, 3):
        try:
            bundle, _ = resolve_model(task, ndim, opts["model_file"])
        except (BundleError, OSError, ImportError) as exc:
            issues["ModelFile"] = str(exc)
        else:
            if "PatchSize" not in issues:
                problem = _tiling_problem(bundle, shape, patch)
                if problem:
                    issues["PatchSize"] = problem
    return issues


def _tiling_problem(bundle: Any, shape: Sequence[int], patch: Sequence[int] | None) -> str:
    """Message if the tiles (PatchSize, the model's halo) cannot cover the input, else ""."""
    from ..inference.engine import model_spec, network_dims, plan_for, resolve_patch
    from ..histogram import Axis

    axes = [Axis(name=f"d{i}", unit="", minimum=0.0, maximum=float(n), bins=int(n)) for i, n in enumerate(shape)]
    try:
        spec = model_spec(bundle)
        keep = network_dims(axes, spec, spec.bundle_id)
        plan_for([shape[i] for i in keep], spec, resolve_patch(patch, spec))
    except (InputDataError, BundleError) as exc:
        return str(exc)
    return ""


def execute(alg: Any, task: str) -> None:
    """``PyExec``: workspace -> MDHisto -> translate -> new workspace with provenance logs.

    Progress is reported after every batch of tiles (``translate`` calls back with tiles
    done and total); a cancel request surfaces as
    KeyboardInterrupt from ``Progress.report`` and is never caught, so no output is set.
    """
    from mantid.api import Progress

    from ..inference.conservation import conservation_warning
    from ._adapter import add_provenance, histo_from_workspace, workspace_from_histo

    ws = alg.getProperty("InputWorkspace").value
    opts = _options(alg)
    histo = histo_from_workspace(ws)
    state: dict[str, Any] = {"progress": None, "done": 0}

    def report(done: int, total: int) -> None:
        if state["progress"] is None:
            state["progress"] = Progress(alg, 0.05, 0.95, max(int(total), 1))
        step = int(done) - state["done"]
        state["done"] = int(done)
        state["progress"].reportIncrement(max(step, 0), f"Translating: {done}/{total} tiles")

    result = translate_histo(histo, task, progress=report, **opts)
    if result.metadata.get("model_warning"):
        alg.log().warning(str(result.metadata["model_warning"]))
    skipped = conservation_warning(result.metadata)
    if skipped:
        alg.log().warning(skipped[0].upper() + skipped[1:])
    out = workspace_from_histo(result, alg)
    if ws.getNumExperimentInfo() > 0:
        out.copyExperimentInfos(ws)
    add_provenance(out, provenance_logs(result.metadata), alg)
    alg.setProperty("OutputWorkspace", out)
