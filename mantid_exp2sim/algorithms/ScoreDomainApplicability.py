"""ScoreDomainApplicability: how far a spectrum lies from a generator's training data (Wasserstein)."""

from __future__ import annotations

from typing import Any

from mantid.api import PythonAlgorithm

from ..histogram import network_ndim
from ..tasks.translate import check_signal
from ._framework import declare_engine_properties, engine_issues, engine_options, mantid_algorithm

__all__ = ["ScoreDomainApplicability"]


def _network_ndim(ws: Any) -> int:
    return network_ndim([ws.getDimension(i).getNBins() for i in range(ws.getNumDims())])


@mantid_algorithm(
    summary="Scores how close each spectrum is to the training data of an Exp2SimGAN generator "
    "(exact optimal-transport distances between encoder features and a reference bank), "
    "with a trustworthy / expert opinion / untrustworthy zone.",
    see_also=["ResolutionDeconvolveGAN", "ResolutionConvolveGAN", "ClassifySpinWaveModel"],
)
class ScoreDomainApplicability(PythonAlgorithm):
    """Optimal-transport distance of each input's encoder features to a reference bank.

    Every framework method is in the class's own body (the descriptive ones written there by
    ``mantid_algorithm``): Mantid only calls those.
    """

    def PyInit(self):
        from mantid.api import FileAction, FileProperty, ITableWorkspaceProperty, PropertyMode
        from mantid.kernel import Direction, IntBoundedValidator, StringArrayMandatoryValidator, StringArrayProperty

        self.declareProperty(
            StringArrayProperty("InputWorkspaces", [], StringArrayMandatoryValidator(), Direction.Input),
            doc="Names of the MDHistoWorkspaces to score (2D or 3D, all of the same dimensionality); "
            "each is scored on its own. NaN bins are treated as masked.",
        )
        self.declareProperty(
            FileProperty("ModelFile", "", FileAction.OptionalLoad, [".h5"]),
            doc="A generator bundle (*.exp2sim.h5) with a reference bank. Empty: the shipped "
            "deconvolution generator for the inputs' dimensionality.",
        )
        self.declareProperty(
            "NumberOfReferenceSamples",
            20,
            IntBoundedValidator(lower=1),
            doc="Reference-bank samples drawn (without replacement) per repeat.",
        )
        self.declareProperty(
            "Repeats", 1000, IntBoundedValidator(lower=1), doc="Number of random draws of the reference samples."
        )
        self.declareProperty("Seed", 0, IntBoundedValidator(lower=0), doc="Seed of the random draws.")
        declare_engine_properties(self, backend_doc="Inference engine of the encoder: Auto, ONNX or PyTorch.")
        self.declareProperty(
            ITableWorkspaceProperty("OutputWorkspace", "", Direction.Output),
            doc="One row per input: Input, Mean, Std, P5, P50, P95 of the distance distribution and "
            "Zone (trustworthy, expert opinion or untrustworthy).",
        )
        self.declareProperty(
            ITableWorkspaceProperty("OutputDistribution", "", Direction.Output, PropertyMode.Optional),
            doc="Optional: every distance, one column per input and one row per repeat.",
        )

    def validateInputs(self):
        from mantid.api import AnalysisDataService

        from ..bundle.resolve import score_bundle
        from ..errors import BundleError, format_error

        names = [str(n) for n in self.getProperty("InputWorkspaces").value if str(n).strip()]
        if not names:
            return {"InputWorkspaces": "Give at least one MDHistoWorkspace."}
        missing = [n for n in names if not AnalysisDataService.doesExist(n)]
        if missing:
            return {"InputWorkspaces": f"No workspace named {missing} in the analysis data service."}
        workspaces = [AnalysisDataService.retrieve(n) for n in names]
        not_md = [n for n, w in zip(names, workspaces) if not hasattr(w, "getSignalArray")]
        if not_md:
            return {"InputWorkspaces": f"Not MDHistoWorkspaces: {not_md}."}
        issues: dict[str, str] = {}
        dims = sorted({_network_ndim(w) for w in workspaces})
        if len(dims) != 1:
            return {
                "InputWorkspaces": format_error(
                    "The inputs differ in dimensionality",
                    reason=f"dimensions with more than one bin: {dims}",
                    fix="score 2D and 3D data in separate runs (they use different models)",
                )
            }
        ndim = dims[0]
        if ndim not in (2, 3):
            return {
                "InputWorkspaces": format_error(
                    f"The workspaces have {ndim} dimension(s) with more than one bin",
                    reason="the generators score 2D or 3D data",
                    fix="bin the data to 2 or 3 dimensions (e.g. with BinMD)",
                )
            }
        for n, w in zip(names, workspaces):
            problem = check_signal(w.getSignalArray())
            if problem:
                issues["InputWorkspaces"] = format_error(f"'{n}' cannot be scored", reason=problem)
                break
        try:
            score_bundle(ndim, self.getProperty("ModelFile").value or None)
        except (BundleError, OSError) as exc:
            issues["ModelFile"] = str(exc)
        issues.update(engine_issues(self))
        return issues

    def PyExec(self):
        from mantid.api import AnalysisDataService, Progress, WorkspaceFactory

        from ..bundle.resolve import score_bundle
        from ..tasks.score import score_histograms
        from ._adapter import histo_from_workspace

        names = [str(n) for n in self.getProperty("InputWorkspaces").value if str(n).strip()]
        histos = [histo_from_workspace(AnalysisDataService.retrieve(n)) for n in names]
        bundle = score_bundle(network_ndim(histos[0].shape), self.getProperty("ModelFile").value or None)
        progress = Progress(self, 0.0, 1.0, len(histos))
        state = {"done": 0}

        def report(done: int, total: int) -> None:
            progress.reportIncrement(done - state["done"], f"Scored {done}/{total}")
            state["done"] = done

        results = score_histograms(
            histos,
            bundle,
            n_reference=int(self.getProperty("NumberOfReferenceSamples").value),
            repeats=int(self.getProperty("Repeats").value),
            seed=int(self.getProperty("Seed").value),
            **engine_options(self),
            progress=report,
        )
        table = WorkspaceFactory.createTable()
        table.addColumn("str", "Input")
        for col in ("Mean", "Std", "P5", "P50", "P95"):
            table.addColumn("double", col)
        table.addColumn("str", "Zone")
        for name, r in zip(names, results):
            table.addRow([name, r.mean, r.std, r.percentiles[5], r.percentiles[50], r.percentiles[95], r.zone])
            self.log().notice(
                f"{name}: mean distance {r.mean:.4g} +- {r.std:.3g} -> {r.zone} "
                f"(trustworthy <= {r.thresholds['trustworthy']:.4g}, untrustworthy > "
                f"{r.thresholds['untrustworthy']:.4g}; model {bundle.bundle_id})"
            )
        self.setProperty("OutputWorkspace", table)
        if self.getPropertyValue("OutputDistribution"):
            dist = WorkspaceFactory.createTable()
            seen: dict[str, int] = {}
            for name in names:
                seen[name] = seen.get(name, 0) + 1
                dist.addColumn("double", name if seen[name] == 1 else f"{name}_{seen[name]}")
            for row in zip(*[r.distances for r in results]):
                dist.addRow([float(v) for v in row])
            self.setProperty("OutputDistribution", dist)
