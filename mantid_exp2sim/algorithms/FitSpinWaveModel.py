"""FitSpinWaveModel: fit spin-wave models to a measured PCSMO mosaic and compare them."""

from __future__ import annotations

from typing import Any

from mantid.api import PythonAlgorithm

from ._framework import mantid_algorithm

__all__ = ["FitSpinWaveModel", "TABLE_COLUMNS"]

#: Columns of the output table: one row per model and parameter.
TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("str", "Model"),
    ("str", "Parameter"),
    ("double", "Value"),
    ("double", "Error"),
    ("str", "Status"),
    ("double", "Chi2"),
    ("double", "ReducedChi2"),
    ("double", "R2"),
    ("double", "AIC"),
    ("double", "BIC"),
    ("str", "Preferred"),
    ("str", "Statement"),
)


def _models(alg: Any) -> list[str]:
    return [str(m).strip() for m in alg.getProperty("Models").value if str(m).strip()]


def _network_files(alg: Any) -> list[str]:
    return [str(f).strip() for f in alg.getProperty("NetworkFiles").value if str(f).strip()]


@mantid_algorithm(
    summary="Fits spin-wave models (weighted least squares through the simulator, per-Ei scale and background) "
    "to a measured 240x400 PCSMO mosaic, with errors, and compares them by chi-square, AIC and BIC.",
    see_also=["ClassifySpinWaveModel", "ResolutionDeconvolveGAN"],
)
class FitSpinWaveModel(PythonAlgorithm):
    """Fit each model of ``Models`` to the mosaic and say which fits better.

    Every framework method is in the class's own body (the descriptive ones written there by
    ``mantid_algorithm``): Mantid only calls those.
    """

    def PyInit(self):
        from mantid.api import IMDHistoWorkspaceProperty, ITableWorkspaceProperty, PropertyMode
        from mantid.kernel import Direction, IntBoundedValidator, StringArrayMandatoryValidator, StringArrayProperty

        from ..tasks.fit import DEFAULT_MODELS

        self.declareProperty(
            IMDHistoWorkspaceProperty("InputWorkspace", "", Direction.Input),
            doc="The measured spectrum: a 240x400 mosaic (pcsmo-mosaic-v1; NaN bins are masked). Its errors "
            "are used when any is positive, else they are estimated from the counts.",
        )
        self.declareProperty(
            StringArrayProperty("Models", list(DEFAULT_MODELS), StringArrayMandatoryValidator(), Direction.Input),
            doc="Spin models to fit (default: goodenough, dimer).",
        )
        self.declareProperty(
            "FixedParameters", "", direction=Direction.Input,
            doc="Parameters held fixed, as NAME=VALUE,NAME=VALUE (in every model that has them).",
        )
        self.declareProperty(
            "Starts", 24, IntBoundedValidator(lower=0), doc="Sobol starts per model (besides the published values)."
        )
        self.declareProperty("Seed", 0, IntBoundedValidator(lower=0), doc="Seed of the start design.")
        self.declareProperty(
            "UseNetwork", True,
            doc="Start each model's fit from its parameter-estimation network's estimate too (the shipped "
            "regress_<model> network, or one of NetworkFiles).",
        )
        self.declareProperty(
            "RefineErrors", True,
            doc="For an input without errors: re-estimate the errors from the best fit's residuals and refit "
            "(weights from the counts alone follow the data's own fluctuations and bias the fit). No effect "
            "when the input has errors.",
        )
        self.declareProperty(
            StringArrayProperty("NetworkFiles", [], direction=Direction.Input),
            doc="Optional regressor bundles (*.exp2sim.h5, from exp2sim-train regressor), each for one of the "
            "Models; a bundle for another model is refused.",
        )
        self.declareProperty(
            ITableWorkspaceProperty("OutputWorkspace", "", Direction.Output),
            doc="One row per model and parameter: " + ", ".join(c for _, c in TABLE_COLUMNS) + ".",
        )
        self.declareProperty(
            IMDHistoWorkspaceProperty("OutputFitWorkspace", "", Direction.Output, PropertyMode.Optional),
            doc="Optional: the best fit of the preferred model on the input's axes (NaN where not fitted).",
        )
        self.declareProperty(
            IMDHistoWorkspaceProperty("OutputResidualWorkspace", "", Direction.Output, PropertyMode.Optional),
            doc="Optional: data minus the preferred model's best fit on the input's axes (NaN where not fitted).",
        )

    def validateInputs(self):
        from ..errors import Exp2SimError
        from ..mosaic import validate_mosaic
        from ..tasks.fit import check_fit_options, networks_by_model, parse_fixed
        from ._adapter import histo_from_workspace

        issues: dict[str, str] = {}
        ws = self.getProperty("InputWorkspace").value
        if ws is not None:
            try:
                validate_mosaic(histo_from_workspace(ws), argument="InputWorkspace")
            except Exp2SimError as exc:
                issues["InputWorkspace"] = str(exc)
        models = _models(self)
        if not models:
            issues["Models"] = "Give at least one model (e.g. goodenough, dimer)."
            return issues
        if len(set(models)) != len(models):
            issues["Models"] = f"A model is given twice: {models}."
            return issues
        try:
            fixed = parse_fixed(self.getProperty("FixedParameters").value)
        except Exp2SimError as exc:
            issues["FixedParameters"] = str(exc)
            return issues
        try:
            check_fit_options(models, fixed)
        except Exp2SimError as exc:
            key = "Models" if str(exc).startswith("Unknown model") else "FixedParameters"
            issues[key] = str(exc)
        files = _network_files(self)
        if files and not bool(self.getProperty("UseNetwork").value):
            issues["NetworkFiles"] = "NetworkFiles are given but UseNetwork is off: clear one of them."
        elif files:
            try:
                networks_by_model(files, models)
            except Exp2SimError as exc:
                issues["NetworkFiles"] = str(exc)
        return issues

    def PyExec(self):
        from mantid.api import Progress, WorkspaceFactory

        from ..tasks.fit import fit_spin_models, networks_by_model, parse_fixed
        from ._adapter import histo_from_workspace, workspace_from_histo

        histo = histo_from_workspace(self.getProperty("InputWorkspace").value)
        steps = 1000
        progress = Progress(self, 0.0, 1.0, steps)

        def report(fraction: float, message: str) -> None:
            progress.report(int(round(fraction * steps)), message)  # a cancellation point

        out = fit_spin_models(
            histo,
            _models(self),
            fixed=parse_fixed(self.getProperty("FixedParameters").value),
            n_sobol=int(self.getProperty("Starts").value),
            seed=int(self.getProperty("Seed").value),
            progress=report,
            networks=networks_by_model(_network_files(self), _models(self)),
            use_network=bool(self.getProperty("UseNetwork").value),
            refine_errors=bool(self.getProperty("RefineErrors").value),
        )
        comp = out.comparison
        table = WorkspaceFactory.createTable()
        for kind, name in TABLE_COLUMNS:
            table.addColumn(kind, name)
        for r in out.results:
            preferred = "yes" if r.model == comp.preferred else "no"
            for p in r.parameter_names:
                status = "fixed" if p in r.fixed else ("at bound" if p in r.at_bounds else "free")
                table.addRow([r.model, p, float(r.values[p]), float(r.errors[p]), status, float(r.chi2),
                              float(r.reduced_chi2), float(r.r2), float(r.aic), float(r.bic), preferred,
                              comp.statement])
            self.log().notice(r.summary())
        self.log().notice(comp.statement)
        self.setProperty("OutputWorkspace", table)
        for prop, arrays in (("OutputFitWorkspace", out.fits), ("OutputResidualWorkspace", out.residuals)):
            if self.getPropertyValue(prop):
                self.setProperty(prop, workspace_from_histo(arrays[comp.preferred], self))
