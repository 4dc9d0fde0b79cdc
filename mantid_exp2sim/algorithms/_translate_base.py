"""The ResolutionDeconvolveGAN / ResolutionConvolveGAN algorithms: one class factory for both.

The work itself is Mantid-free and lives in :mod:`mantid_exp2sim.tasks.translate` (the
command line uses it too); this module declares, validates and executes the two
algorithms, which differ only in their task. Mantid is imported here, inside the functions.
"""

from __future__ import annotations

import types
from typing import Any, Sequence

import numpy as np

from ..bundle.resolve import generator_bundle
from ..errors import BundleError, InputDataError, format_error
from ..histogram import network_ndim
from ..tasks.translate import check_signal, provenance_logs, translate_histo
from ._framework import declare_engine_properties, engine_issues, engine_options, mantid_algorithm

__all__ = [
    "ALGORITHM_NAMES",
    "translation_algorithm",
    "declare_properties",
    "validate_inputs",
    "execute",
]

#: Mantid algorithm of each task.
ALGORITHM_NAMES = {"deconvolve": "ResolutionDeconvolveGAN", "convolve": "ResolutionConvolveGAN"}
#: What each algorithm does: its class docstring and its summary.
_DESCRIPTIONS = {
    "deconvolve": (
        "Exp2SimGAN generator, measured -> simulation-like (resolution removed).",
        "Removes the instrument resolution from an inelastic neutron scattering spectrum "
        "(2D or 3D MDHistoWorkspace) with an Exp2SimGAN generator.",
    ),
    "convolve": (
        "Exp2SimGAN generator, simulated -> measurement-like (resolution added).",
        "Adds the instrument resolution to a simulated inelastic neutron scattering spectrum "
        "(2D or 3D MDHistoWorkspace) with an Exp2SimGAN generator.",
    ),
}


def translation_algorithm(task: str) -> type:
    """The algorithm class of ``task``: ResolutionDeconvolveGAN or ResolutionConvolveGAN.

    ``PyInit``, ``validateInputs`` and ``PyExec`` (:func:`declare_properties`,
    :func:`validate_inputs`, :func:`execute` for ``task``) and the descriptive methods
    (:func:`~mantid_exp2sim.algorithms._framework.mantid_algorithm`) are written into the new
    class's own body, where Mantid looks for them.
    """
    from mantid.api import PythonAlgorithm

    name = ALGORITHM_NAMES[task]
    doc, summary = _DESCRIPTIONS[task]

    def PyInit(self) -> None:  # noqa: N802 - Mantid's names
        declare_properties(self, task)

    def validateInputs(self) -> dict[str, str]:  # noqa: N802
        return validate_inputs(self, task)

    def PyExec(self) -> None:  # noqa: N802
        execute(self, task)

    def body(namespace: dict[str, Any]) -> None:
        namespace.update(__module__=f"{__package__}.{name}", __qualname__=name, __doc__=doc,
                         PyInit=PyInit, validateInputs=validateInputs, PyExec=PyExec)

    cls = types.new_class(name, (PythonAlgorithm,), exec_body=body)
    others = [n for t, n in ALGORITHM_NAMES.items() if t != task]
    return mantid_algorithm(summary=summary, see_also=others)(cls)


def declare_properties(alg: Any, task: str) -> None:
    """Declare the properties shared by both algorithms."""
    from mantid.api import FileAction, FileProperty, IMDHistoWorkspaceProperty
    from mantid.kernel import Direction, IntArrayProperty, IntBoundedValidator, Property

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
    declare_engine_properties(alg)
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
        **engine_options(alg),
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

    issues.update(engine_issues(alg))

    if ndim in (2, 3):
        try:
            bundle = generator_bundle(task, ndim, opts["model_file"])
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
