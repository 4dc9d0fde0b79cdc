"""ClassifySpinWaveModel: tell the Goodenough and Dimer spin-wave models of PCSMO apart (DUQ)."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
from mantid.api import PythonAlgorithm

from ..histogram import network_dims, network_ndim
from ..mosaic import MOSAIC_SHAPE
from ..tasks.translate import LOG_PREFIX
from ._framework import declare_engine_properties, engine_issues, engine_options, mantid_algorithm

__all__ = ["ClassifySpinWaveModel"]


def _ws_from_ads(name: str) -> Any:
    from mantid.api import AnalysisDataService

    return AnalysisDataService.retrieve(name)


def _shape(ws: Any) -> list[int]:
    return [int(ws.getDimension(i).getNBins()) for i in range(ws.getNumDims())]


def _sample_log_ei(ws: Any) -> float | None:
    """The ``Ei`` sample log of an MD workspace (first experiment info), or None."""
    try:
        if ws.getNumExperimentInfo() < 1:
            return None
        run = ws.getExperimentInfo(0).run()
        for key in ("Ei", "ei", "EI"):
            if run.hasProperty(key):
                return float(np.asarray(run.getProperty(key).value).ravel()[-1])
    except (AttributeError, ValueError, RuntimeError, TypeError):
        return None
    return None


def _collect(alg: Any) -> tuple[list[Any], list[str]]:
    """The input workspaces and their names (InputWorkspace or InputWorkspaces)."""
    single = alg.getProperty("InputWorkspace").value
    names = [str(n) for n in alg.getProperty("InputWorkspaces").value if str(n).strip()]
    if single is not None:
        return [single], [alg.getPropertyValue("InputWorkspace") or single.name()]
    return [_ws_from_ads(n) for n in names], names


@mantid_algorithm(
    summary="Classifies a PCSMO spectrum (the 240x400 mosaic, or per-Ei (Qh, Qk, E) volumes) as "
    "Goodenough or Dimer spin-wave model with a DUQ classifier, with a calibrated "
    "confident / uncertain / out-of-distribution verdict and an optional class activation map.",
    see_also=["ScoreDomainApplicability", "ResolutionDeconvolveGAN"],
)
class ClassifySpinWaveModel(PythonAlgorithm):
    """DUQ classifier on the 240x400 PCSMO mosaic, with calibrated uncertainty and Grad-CAM.

    Every framework method is in the class's own body (the descriptive ones written there by
    ``mantid_algorithm``): Mantid only calls those.
    """

    def PyInit(self):
        from mantid.api import (
            FileAction,
            FileProperty,
            IMDHistoWorkspaceProperty,
            ITableWorkspaceProperty,
            PropertyMode,
        )
        from mantid.kernel import Direction, FloatArrayProperty, StringArrayProperty

        self.declareProperty(
            IMDHistoWorkspaceProperty("InputWorkspace", "", Direction.Input, PropertyMode.Optional),
            doc="A 240x400 mosaic MDHistoWorkspace in the pcsmo-mosaic-v1 layout (row block 0 = "
            "Ei 25 meV, Qh from +1 to -1 within a tile; column blocks = energy windows "
            "[0.10+0.06j, 0.16+0.06j]*Ei, Qk from -1 to +1). Give this or InputWorkspaces.",
        )
        self.declareProperty(
            StringArrayProperty("InputWorkspaces", Direction.Input),
            doc="Names of 3D (Qh, Qk, DeltaE) MDHistoWorkspaces, one per incident energy (25, 35, "
            "50, 70, 100, 140 meV), combined into one mosaic; or names of several mosaics, each "
            "classified on its own.",
        )
        self.declareProperty(
            FloatArrayProperty("Ei", Direction.Input),
            doc="Incident energy (meV) of each of InputWorkspaces' volumes, in the same order. "
            "Empty: each volume's sample log 'Ei'.",
        )
        self.declareProperty(
            "Deconvolve",
            False,
            doc="Remove the instrument resolution with the 2D deconvolution generator before "
            "classifying (for measured or resolution-convolved data when the classifier was "
            "trained on resolution-free spectra).",
        )
        self.declareProperty(
            FileProperty("ModelFile", "", FileAction.OptionalLoad, [".h5"]),
            doc="A classifier bundle (*.exp2sim.h5). Empty: the classifier shipped with mantid-exp2sim.",
        )
        self.declareProperty(
            FileProperty("DeconvolutionModelFile", "", FileAction.OptionalLoad, [".h5"]),
            doc="A 2D deconvolution generator bundle used when Deconvolve is set. Empty: the shipped one.",
        )
        self.declareProperty(
            "CheckDomain",
            True,
            doc="Score the input's domain of applicability (as ScoreDomainApplicability) and fold "
            "its zone into the verdict: untrustworthy makes it 'out of distribution', expert "
            "opinion turns 'confident' into 'uncertain'.",
        )
        self.declareProperty(
            FileProperty("DomainModelFile", "", FileAction.OptionalLoad, [".h5"]),
            doc="2D generator bundle whose reference bank the input is compared with when "
            "CheckDomain is set. Empty: the shipped convolution generator (trained on "
            "resolution-free spectra like the classifier), or with Deconvolve the shipped "
            "deconvolution generator (trained on measured-like spectra).",
        )
        declare_engine_properties(self)
        self.declareProperty(
            ITableWorkspaceProperty("OutputWorkspace", "", Direction.Output),
            doc="One row per classified mosaic: Input, K_<class> for every class (the DUQ kernel "
            "value, 1 = at the class centroid), Prediction, Verdict (confident, uncertain or "
            "out of distribution), ClassifierVerdict (the classifier's own, before the domain "
            "check), DomainZone and DomainMean (empty and NaN without CheckDomain).",
        )
        self.declareProperty(
            IMDHistoWorkspaceProperty("OutputActivationMap", "", Direction.Output, PropertyMode.Optional),
            doc="Grad-CAM class activation map of the predicted class on the mosaic's axes (0..1, "
            "NaN at masked bins); needs PyTorch and a single mosaic.",
        )

    def validateInputs(self):
        from ..bundle.resolve import classifier_bundle, generator_bundle, score_bundle
        from ..errors import BundleError, format_error

        issues: dict[str, str] = {}
        single = self.getProperty("InputWorkspace").value
        names = [str(n) for n in self.getProperty("InputWorkspaces").value if str(n).strip()]
        ei = list(np.asarray(self.getProperty("Ei").value, dtype=float).ravel())
        if single is None and not names:
            return {"InputWorkspace": "Give a mosaic (InputWorkspace) or per-Ei volumes (InputWorkspaces)."}
        if single is not None and names:
            return {"InputWorkspaces": "Give either InputWorkspace or InputWorkspaces, not both."}
        workspaces = []
        if single is not None:
            workspaces = [single]
        else:
            from mantid.api import AnalysisDataService

            missing = [n for n in names if not AnalysisDataService.doesExist(n)]
            if missing:
                return {"InputWorkspaces": f"No workspace named {missing} in the analysis data service."}
            workspaces = [_ws_from_ads(n) for n in names]
            not_md = [n for n, w in zip(names, workspaces) if not hasattr(w, "getSignalArray")]
            if not_md:
                return {"InputWorkspaces": f"Not MDHistoWorkspaces: {not_md}."}
        dims = [network_ndim(_shape(w)) for w in workspaces]
        n_mosaics = 1
        key = "InputWorkspace" if single is not None else "InputWorkspaces"
        if all(d == 2 for d in dims):
            n_mosaics = len(workspaces)
            for w in workspaces:
                shape = [_shape(w)[i] for i in network_dims(_shape(w))]
                if tuple(shape) != MOSAIC_SHAPE:
                    issues[key] = format_error(
                        "The mosaic has the wrong shape",
                        reason=f"{w.name() or 'input'} has {shape} bins; the classifier needs the "
                        "240x400 mosaic (6 incident energies x 40 Qh rows, 10 energy windows x 40 Qk columns)",
                        fix="pass the per-Ei (Qh, Qk, DeltaE) volumes in InputWorkspaces instead",
                    )
                    break
            if ei:
                issues["Ei"] = "Ei applies to 3D volumes only; leave it empty for mosaics."
        elif all(d == 3 for d in dims) and single is None:
            if ei and len(ei) != len(workspaces):
                issues["Ei"] = format_error(
                    "Ei does not match InputWorkspaces",
                    reason=f"{len(ei)} values for {len(workspaces)} volumes",
                    fix="give one incident energy per volume, in the same order",
                )
            elif not ei:
                lacking = [n for n, w in zip(names, workspaces) if _sample_log_ei(w) is None]
                if lacking:
                    issues["Ei"] = format_error(
                        "The incident energy is missing",
                        reason=f"no Ei given and no sample log 'Ei' on {lacking}",
                        fix="give Ei (one value per volume) or add the sample log 'Ei' (meV)",
                    )
        else:
            issues[key] = format_error(
                "Cannot make a mosaic from the input",
                reason=f"dimensions with more than one bin per workspace: {dims}",
                fix="give one 240x400 mosaic, several mosaics, or 3D (Qh, Qk, DeltaE) volumes (one per Ei)",
            )
        model = self.getProperty("ModelFile").value or None
        try:
            classifier_bundle(model, deconvolved=bool(self.getProperty("Deconvolve").value))
        except (BundleError, OSError) as exc:
            issues["ModelFile"] = str(exc)
        if self.getProperty("Deconvolve").value:
            try:
                generator_bundle("deconvolve", 2, self.getProperty("DeconvolutionModelFile").value or None)
            except (BundleError, OSError) as exc:
                issues["DeconvolutionModelFile"] = str(exc)
        domain_model = self.getProperty("DomainModelFile").value
        if domain_model and self.getProperty("CheckDomain").value:
            try:
                score_bundle(2, domain_model)
            except (BundleError, OSError) as exc:
                issues["DomainModelFile"] = str(exc)
        if self.getPropertyValue("OutputActivationMap"):
            if importlib.util.find_spec("torch") is None:
                issues["OutputActivationMap"] = format_error(
                    "The class activation map needs the Python package 'torch'",
                    reason="it is not installed in Mantid's Python",
                    fix="install it with: pip install 'mantid-exp2sim[torch]', or leave OutputActivationMap empty",
                )
            elif n_mosaics != 1:
                issues["OutputActivationMap"] = "An activation map can be made for one mosaic at a time."
        issues.update(engine_issues(self))
        return issues

    def PyExec(self):
        from mantid.api import Progress, WorkspaceFactory

        from ..bundle.resolve import classifier_bundle, generator_bundle, score_bundle
        from ..tasks.classify import classify
        from ._adapter import add_provenance, histo_from_workspace, workspace_from_histo

        workspaces, names = _collect(self)
        histos = [histo_from_workspace(w) for w in workspaces]
        three_d = all(network_ndim(h.shape) == 3 for h in histos)
        if three_d:
            ei = list(np.asarray(self.getProperty("Ei").value, dtype=float).ravel())
            if not ei:
                ei = [_sample_log_ei(w) for w in workspaces]
            groups = [(",".join(names), histos, ei)]
        else:
            groups = [(n, [h], None) for n, h in zip(names, histos)]
        deconvolve = bool(self.getProperty("Deconvolve").value)
        bundle = classifier_bundle(self.getProperty("ModelFile").value or None, deconvolved=deconvolve)
        deconv = None
        if deconvolve:
            deconv = generator_bundle("deconvolve", 2, self.getProperty("DeconvolutionModelFile").value or None)
        check_domain = bool(self.getProperty("CheckDomain").value)
        domain_model = None
        if check_domain and self.getProperty("DomainModelFile").value:
            domain_model = score_bundle(2, self.getProperty("DomainModelFile").value)
        want_map = bool(self.getPropertyValue("OutputActivationMap"))
        engine = engine_options(self)
        progress = Progress(self, 0.0, 1.0, len(groups) + 1)
        classes = [str(c) for c in bundle.manifest["classes"]]
        table = WorkspaceFactory.createTable()
        table.addColumn("str", "Input")
        for c in classes:
            table.addColumn("double", f"K_{c}")
        table.addColumn("str", "Prediction")
        table.addColumn("str", "Verdict")
        table.addColumn("str", "ClassifierVerdict")
        table.addColumn("str", "DomainZone")
        table.addColumn("double", "DomainMean")
        last = None
        for label, items, ei in groups:
            progress.report(f"Classifying {label}")
            res = classify(items, bundle, ei=ei, deconvolve=deconvolve, deconvolution_bundle=deconv,
                           activation_map=want_map, domain_check=check_domain, domain_bundle=domain_model, **engine)
            dom = res.domain or {}
            if check_domain and not dom:
                self.log().warning(f"{label}: domain check skipped: no shipped 2D generator bundle found "
                                   "(set DomainModelFile, or CheckDomain=False)")
            table.addRow([label, *[float(res.K[c]) for c in classes], res.prediction, res.verdict,
                          res.classifier_verdict or res.verdict, str(dom.get("zone", "")),
                          float(dom.get("mean", np.nan))])
            self.log().notice(
                f"{label}: {res.prediction} ({res.verdict}); K = "
                + ", ".join(f"{c} {res.K[c]:.4f}" for c in classes)
                + f"; bundle {res.provenance['bundle_id']}"
                + (f"; domain {dom['zone']} (mean {dom['mean']:.4g})" if dom else "")
            )
            last = res
        progress.report("Done")
        self.setProperty("OutputWorkspace", table)
        if want_map and last is not None and last.activation_map is not None:
            out = workspace_from_histo(last.activation_map, self)
            logs = {f"{LOG_PREFIX}{k}": v for k, v in last.provenance.items() if not isinstance(v, bool)}
            logs[f"{LOG_PREFIX}grad_cam_class"] = last.prediction
            logs[f"{LOG_PREFIX}verdict"] = last.verdict
            add_provenance(out, logs, self)
            self.setProperty("OutputActivationMap", out)
