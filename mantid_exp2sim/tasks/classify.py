"""Classify task: spin-wave model classification of PCSMO mosaics with a DUQ classifier bundle (Mantid-free).

Pipeline: a 240x400 mosaic (given, or built from per-Ei (Qh, Qk, E) volumes by
:func:`mantid_exp2sim.mosaic.build_mosaic`) -> optionally the 2D deconvolution generator
(:func:`mantid_exp2sim.inference.translate`) -> the scale-free two-channel input
(:mod:`mantid_exp2sim.models.normalisation`) -> the classifier (ONNX Runtime, or PyTorch) ->
kernel values ``K_c`` per class -> a verdict from the bundle's calibrated thresholds ->
optionally a Grad-CAM map for the predicted class (needs PyTorch).

Verdicts (thresholds calibrated on held-out in-distribution data, see
:func:`calibrate_thresholds`):

* ``out of distribution``: ``max K < t_ood``;
* ``confident``: ``max K >= t_conf`` and no other class reaches ``t_conf``;
* ``uncertain``: otherwise.

The final verdict also asks whether the input lies in the domain the models were trained on
(:func:`combine_verdict`): the Wasserstein domain-applicability score of the input against the
reference bank of the generator that was trained on inputs like it (the convolution generator,
trained on unconvolved spectra like the classifier, or with ``deconvolve`` the deconvolution
generator, trained on measured-like spectra). DUQ's kernel values alone let some spectra of
other spin models through as confident.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .._version import __version__
from ..bundle.format import Bundle
from ..bundle.resolve import BundleSource, classifier_bundle, generator_bundle, score_bundle
from ..errors import BundleError, InputDataError, format_error
from ..histogram import MDHisto, network_ndim
from ..mosaic import LAYOUT, MOSAIC_SHAPE, build_mosaic, mosaic_axes, validate_mosaic
from .score import score_histograms

_log = logging.getLogger("mantid_exp2sim.classify")

__all__ = [
    "VERDICTS",
    "Classification",
    "calibrate_thresholds",
    "fit_kernel_power",
    "expected_calibration_error",
    "confident_wrong_rate",
    "combine_verdict",
    "verdict_of",
    "prepare_mosaic",
    "network_input",
    "run_classifier",
    "classify",
]

VERDICTS = ("confident", "uncertain", "out of distribution")


def _checked_k(k: np.ndarray, labels: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    k = np.asarray(k, dtype=np.float64)
    y = np.asarray(labels).astype(int)
    if k.ndim != 2 or k.shape[0] != y.shape[0] or k.shape[0] == 0:
        raise InputDataError(
            format_error(
                f"Cannot {what}",
                reason=f"kernel values of shape {k.shape} for {y.shape[0]} labels",
            )
        )
    return k, y


def expected_calibration_error(k: np.ndarray, labels: np.ndarray, *, bins: int = 10) -> float:
    """Expected calibration error of the top-class kernel value.

    ``sum_b (n_b / n) |accuracy_b - mean max K_b|`` over ``bins`` equal-width bins of max K
    in [0, 1]: how far "K = 0.9" is from "right 90 % of the time".

    Parameters
    ----------
    k
        ``(n, n_classes)`` kernel values.
    labels
        ``(n,)`` true class indices.
    bins
        Number of bins.
    """
    k, y = _checked_k(k, labels, "compute the calibration error")
    top = k.max(1)
    correct = (k.argmax(1) == y).astype(float)
    which = np.minimum((top * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - top[sel].mean())
    return float(ece)


def fit_kernel_power(k: np.ndarray, labels: np.ndarray, *, bounds: tuple[float, float] = (0.01, 100.0)) -> float:
    """The power ``a`` that calibrates the top-class kernel value ``max K ** a``.

    DUQ's ``K_c = exp(-d_c / (2 sigma^2))``, so a new length scale ``sigma / sqrt(a)`` turns
    every K into ``K ** a`` (the ranking of the classes and the verdict order are kept). ``a``
    minimises the negative log-likelihood of "the prediction is right" under the probability
    ``max K ** a`` (a proper scoring rule, so the fitted K match the held-out accuracy).

    Parameters
    ----------
    k
        ``(n, n_classes)`` held-out kernel values.
    labels
        ``(n,)`` true class indices.
    bounds
        Search interval of ``a``.

    Returns
    -------
    float
        ``a``; the calibrated length scale is ``sigma / sqrt(a)``.
    """
    from scipy.optimize import minimize_scalar

    k, y = _checked_k(k, labels, "fit the length scale")
    log_top = np.log(np.clip(k.max(1), 1e-300, 1.0))
    correct = k.argmax(1) == y

    def nll(log_a: float) -> float:
        lp = np.exp(log_a) * log_top  # log p
        p = np.exp(lp)
        return float(-(lp[correct].sum() + np.log(np.clip(1.0 - p[~correct], 1e-12, None)).sum()) / len(y))

    res = minimize_scalar(nll, bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded",
                          options={"xatol": 1e-4})
    return float(np.exp(res.x))


def confident_wrong_rate(k: np.ndarray, labels: np.ndarray, thresholds: Mapping[str, Any]) -> dict[str, float]:
    """How often a ``confident`` verdict is wrong (DUQ verdict alone, :func:`verdict_of`).

    Returns
    -------
    dict
        ``confident_fraction`` (of all inputs), ``confident_wrong_rate`` (wrong among the
        confident answers; 0 when there is none) and ``confident_wrong_fraction`` (confident
        and wrong among all inputs).
    """
    k, y = _checked_k(k, labels, "count confident errors")
    conf = np.array([verdict_of(row, thresholds) == VERDICTS[0] for row in k])
    wrong = k.argmax(1) != y
    n_conf = int(conf.sum())
    return {
        "confident_fraction": float(conf.mean()),
        "confident_wrong_rate": float((conf & wrong).sum() / n_conf) if n_conf else 0.0,
        "confident_wrong_fraction": float((conf & wrong).mean()),
    }


def calibrate_thresholds(
    k: np.ndarray,
    labels: np.ndarray,
    *,
    confident_coverage: float = 0.95,
    ood_quantile: float = 0.01,
    max_confident_wrong: float | None = None,
) -> dict[str, Any]:
    """Calibrate the verdict thresholds on held-out in-distribution data.

    Parameters
    ----------
    k
        ``(n, n_classes)`` kernel values of held-out samples.
    labels
        ``(n,)`` true class indices.
    confident_coverage
        Fraction of the correctly classified held-out samples that must be ``confident``:
        ``t_conf`` is the ``1 - confident_coverage`` quantile of their max K.
    ood_quantile
        ``t_ood`` is this quantile of the max K of all held-out samples (so about this
        fraction of in-distribution data is flagged), capped at ``t_conf``.
    max_confident_wrong
        If given, ``t_conf`` is instead the smallest threshold at which at most this fraction
        of the held-out answers with ``max K >= t_conf`` is wrong ("confident" means it;
        ``confident_coverage`` is then ignored and the coverage reached is reported).

    Returns
    -------
    dict
        JSON-safe: ``confident`` (t_conf), ``out_of_distribution`` (t_ood), the rule, its
        parameters, and the held-out accuracy and verdict fractions.
    """
    k, y = _checked_k(k, labels, "calibrate thresholds")
    pred = k.argmax(1)
    kmax = k.max(1)
    correct = pred == y
    if not correct.any():
        raise InputDataError(
            format_error(
                "Cannot calibrate thresholds: no held-out sample is classified correctly",
                fix="train the classifier longer or check the labels",
            )
        )
    if max_confident_wrong is None:
        t_conf = float(np.quantile(kmax[correct], 1.0 - confident_coverage))
        how = (f"confident = the {1 - confident_coverage:g} quantile of max K over correctly classified "
               "held-out samples")
    else:
        order = np.argsort(-kmax)
        wrong_above = np.cumsum(~correct[order]) / np.arange(1, len(order) + 1)
        ok = np.flatnonzero(wrong_above <= float(max_confident_wrong))
        # The longest run of top-K answers whose error rate stays within the bound; ties
        # share a threshold, so step back to the first of equal values.
        if ok.size == 0:
            t_conf = float(np.nextafter(kmax.max(), np.inf))
        else:
            t_conf = float(kmax[order][ok.max()])
        how = (f"confident = the smallest max K above which at most {float(max_confident_wrong):g} of the "
               "held-out answers are wrong")
    t_ood = min(float(np.quantile(kmax, ood_quantile)), t_conf)
    th: dict[str, Any] = {
        "confident": t_conf,
        "out_of_distribution": t_ood,
        "rule": (
            "out of distribution if max K < out_of_distribution; confident if max K >= "
            f"confident and no other class reaches it; uncertain otherwise. {how}; "
            f"out_of_distribution = the {ood_quantile:g} quantile of max K over all "
            "held-out samples (capped at confident)"
        ),
        "confident_coverage": float(confident_coverage) if max_confident_wrong is None
        else float(np.mean(kmax[correct] >= t_conf)),
        "ood_quantile": float(ood_quantile),
        "n_holdout": int(k.shape[0]),
        "holdout_accuracy": float(correct.mean()),
    }
    if max_confident_wrong is not None:
        th["max_confident_wrong"] = float(max_confident_wrong)
    verdicts = [verdict_of(row, th) for row in k]
    for v in VERDICTS:
        th[f"holdout_fraction_{v.replace(' ', '_')}"] = float(np.mean([x == v for x in verdicts]))
    th["holdout_ece"] = expected_calibration_error(k, y)
    th.update({f"holdout_{key}": val for key, val in confident_wrong_rate(k, y, th).items()})
    return th


def combine_verdict(verdict: str, zone: str | None) -> str:
    """The final verdict from the classifier's verdict and the input's domain zone.

    ``untrustworthy`` makes any verdict ``out of distribution``; ``expert opinion`` turns
    ``confident`` into ``uncertain``; ``trustworthy`` or no zone (no check) keeps the verdict.
    """
    from ..domain import ZONES

    if zone is None or zone == ZONES[0]:
        return verdict
    if zone == ZONES[2]:
        return VERDICTS[2]
    if zone == ZONES[1]:
        return VERDICTS[1] if verdict == VERDICTS[0] else verdict
    raise ValueError(f"unknown domain zone {zone!r}; expected one of {ZONES}")


def verdict_of(k: np.ndarray, thresholds: Mapping[str, Any]) -> str:
    """Verdict for one sample's kernel values ``(n_classes,)``: one of :data:`VERDICTS`."""
    k = np.asarray(k, dtype=np.float64).ravel()
    t_conf = float(thresholds["confident"])
    t_ood = float(thresholds["out_of_distribution"])
    kmax = float(k.max())
    if kmax < t_ood:
        return VERDICTS[2]
    if kmax >= t_conf and int(np.sum(k >= t_conf)) == 1:
        return VERDICTS[0]
    return VERDICTS[1]


@dataclass
class Classification:
    """The classification of one mosaic.

    Attributes
    ----------
    K
        Kernel value per class name (each in (0, 1]; 1 = at the class centroid).
    prediction
        Class with the largest K.
    verdict
        One of :data:`VERDICTS`: ``classifier_verdict`` combined with the domain zone
        (:func:`combine_verdict`).
    classifier_verdict
        The DUQ classifier's own verdict from its calibrated thresholds.
    domain
        The input's domain-applicability check (``mean``, ``std``, ``zone``, ``bundle_id``),
        or None when it was not run.
    thresholds
        The bundle's calibrated thresholds used for the verdict.
    provenance
        Bundle ids and checksums, backend, device, package version, deconvolution details.
    activation_map
        Grad-CAM for the predicted class on the mosaic's axes (NaN at masked bins), or None.
    tile_importance
        ``(6, 10)`` mean of the map per (Ei, energy window) tile, or None.
    mosaic
        The mosaic classified (after deconvolution when asked for).
    """

    K: dict[str, float]
    prediction: str
    verdict: str
    thresholds: dict[str, Any]
    provenance: dict[str, Any] = field(default_factory=dict)
    classifier_verdict: str | None = None
    domain: dict[str, Any] | None = None
    activation_map: MDHisto | None = None
    tile_importance: np.ndarray | None = None
    mosaic: MDHisto | None = None

    @property
    def max_k(self) -> float:
        """Largest kernel value."""
        return max(self.K.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary: ``K``, ``prediction``, ``verdict``, thresholds and provenance."""
        d: dict[str, Any] = {
            "K": {k: float(v) for k, v in self.K.items()},
            "prediction": self.prediction,
            "verdict": self.verdict,
            "thresholds": {
                "confident": float(self.thresholds["confident"]),
                "out_of_distribution": float(self.thresholds["out_of_distribution"]),
            },
            "provenance": dict(self.provenance),
            "classifier_verdict": self.classifier_verdict or self.verdict,
            "domain": dict(self.domain) if self.domain is not None else None,
        }
        if self.tile_importance is not None:
            d["tile_importance"] = np.asarray(self.tile_importance).round(6).tolist()
        return d


def prepare_mosaic(
    inputs: MDHisto | Sequence[MDHisto],
    ei: Sequence[float] | None = None,
    *,
    argument: str = "input",
) -> MDHisto:
    """One mosaic from a 2D mosaic or from 3D (Qh, Qk, E) volumes (one per Ei).

    Parameters
    ----------
    inputs
        A mosaic (``(240, 400)`` non-integrated dimensions) or a list of 3D volumes.
    ei
        Incident energies of the volumes (else their metadata ``Ei``).
    """
    items = [inputs] if isinstance(inputs, MDHisto) else list(inputs)
    if not items:
        raise InputDataError(format_error(f"No {argument} given", fix="pass a mosaic or per-Ei volumes"))
    dims = [network_ndim(h.shape) for h in items]
    if len(items) == 1 and dims[0] == 2:
        h = items[0]
        validate_mosaic(h, argument=argument)
        sig = h.signal.reshape(MOSAIC_SHAPE)
        meta = dict(h.metadata)
        meta.setdefault("layout", LAYOUT)
        return MDHisto(sig, mosaic_axes(), errors=None, metadata=meta)
    if all(d == 3 for d in dims):
        return build_mosaic(items, ei)
    raise InputDataError(
        format_error(
            f"Cannot make a mosaic from the {argument}",
            reason=f"non-integrated dimensions per input: {dims}; need one 2D mosaic or "
            "3D (Qh, Qk, E) volumes",
            fix="pass one 240x400 mosaic, or one (Qh, Qk, E) volume per incident energy",
        )
    )


def network_input(mosaic: MDHisto) -> np.ndarray:
    """The classifier's input ``(1, 2, 240, 400)`` float32 (scaled signal, valid mask)."""
    from ..models.normalisation import intensity_scale, to_network_input

    sig = mosaic.signal.reshape(MOSAIC_SHAPE)
    return to_network_input(sig, intensity_scale(sig))


def run_classifier(
    x: np.ndarray, bundle: Bundle, *, backend: str = "auto", device: str = "auto"
) -> tuple[np.ndarray, dict[str, Any]]:
    """Kernel values ``(N, n_classes)`` for network inputs ``(N, 2, 240, 400)``.

    Returns
    -------
    k
        Kernel values.
    info
        ``backend`` and ``device`` actually used.
    """
    from ..inference import get_backend

    engine = get_backend(bundle, backend=backend, device=device)
    k = np.asarray(engine(np.ascontiguousarray(x, dtype=np.float32)), dtype=np.float64)
    classes = bundle.manifest["classes"]
    if k.ndim != 2 or k.shape[1] != len(classes):
        raise BundleError(
            format_error(
                "The classifier's output does not match its class list",
                reason=f"output shape {k.shape}, classes {classes}",
                fix="re-export the bundle",
            )
        )
    return k, {"backend": engine.name, "device": engine.device}


def _activation_map(bundle: Bundle, x: np.ndarray, class_index: int, mosaic: MDHisto) -> tuple[MDHisto, np.ndarray]:
    from ..errors import require

    require("torch", extra="torch", feature="The class activation map (Grad-CAM)")
    from ..models.gradcam import attribution_map

    model = bundle.build_torch_model()
    res = attribution_map(model, x, class_index)
    cam = res.cam[0].copy()
    cam[np.isnan(mosaic.signal.reshape(MOSAIC_SHAPE))] = np.nan
    meta = {
        "layout": LAYOUT,
        "ei_list": mosaic.metadata.get("ei_list"),
        "window_fractions": mosaic.metadata.get("window_fractions"),
        "grad_cam_class": bundle.manifest["classes"][class_index],
        "attribution": getattr(model, "attribution", "grad_cam"),
        "bundle_id": bundle.bundle_id,
        "package_version": __version__,
    }
    return MDHisto(cam, mosaic_axes(), metadata={k: v for k, v in meta.items() if v is not None}), res.tiles[0]


def classify(
    inputs: MDHisto | Sequence[MDHisto],
    bundle: BundleSource = None,
    *,
    ei: Sequence[float] | None = None,
    deconvolve: bool = False,
    deconvolution_bundle: BundleSource = None,
    backend: str = "auto",
    device: str = "auto",
    activation_map: bool = False,
    progress: Callable[[int, int], None] | None = None,
    domain_check: bool = True,
    domain_bundle: BundleSource = None,
    domain_repeats: int = 1000,
    domain_seed: int = 0,
) -> Classification:
    """Classify one mosaic (or the mosaic built from per-Ei volumes).

    Parameters
    ----------
    inputs
        A 240x400 mosaic, or 3D (Qh, Qk, E) volumes, one per incident energy.
    bundle
        Classifier bundle (path or Bundle); default: the shipped ``classify_2d`` bundle
        (trained on measured-like spectra), or with ``deconvolve`` the shipped
        ``classify_deconvolved_2d`` (trained on unconvolved spectra, the paper's route).
    ei
        Incident energies of the volumes (else their metadata ``Ei``).
    deconvolve
        Remove the resolution with the 2D deconvolution generator first.
    deconvolution_bundle
        Generator bundle for ``deconvolve``; default: the shipped ``deconvolve_2d`` bundle.
    backend, device
        As for :func:`mantid_exp2sim.inference.translate`.
    activation_map
        Also compute the Grad-CAM map of the predicted class (needs PyTorch).
    progress
        ``progress(done, total)`` forwarded to the deconvolution.
    domain_check
        Score the input's domain of applicability and fold its zone into the verdict
        (:func:`combine_verdict`). Skipped, with a logged warning, when the default bundle
        for it is not installed.
    domain_bundle
        Generator bundle whose reference bank the input is compared with; default: the
        classifier bundle's own reference bank (its training inputs in its own feature
        space) when it has one and ``deconvolve`` is off, else the shipped ``convolve_2d``
        bundle (trained on unconvolved spectra), or ``deconvolve_2d`` with ``deconvolve``
        (the raw measured-like input is scored).
    domain_repeats, domain_seed
        Repeats and seed of the domain score (see :func:`mantid_exp2sim.domain.score`).

    Returns
    -------
    Classification
    """
    b = classifier_bundle(bundle, deconvolved=deconvolve)
    mosaic = prepare_mosaic(inputs, ei)
    domain = None
    if domain_check:
        domain = _domain_of(mosaic, domain_bundle, deconvolve, domain_repeats, domain_seed, backend, device, b)
    prov: dict[str, Any] = {
        "bundle_id": b.bundle_id,
        "bundle_sha256": getattr(b, "sha256", ""),
        "package_version": __version__,
        "deconvolved": bool(deconvolve),
    }
    if deconvolve:
        from ..inference import translate

        deconvolution_bundle = generator_bundle("deconvolve", 2, deconvolution_bundle)
        mosaic = translate(mosaic, deconvolution_bundle, backend=backend, device=device, progress=progress)
        prov["deconvolution_bundle_id"] = deconvolution_bundle.bundle_id
        prov["deconvolution_bundle_sha256"] = getattr(deconvolution_bundle, "sha256", "")
    x = network_input(mosaic)
    k, info = run_classifier(x, b, backend=backend, device=device)
    prov.update(info)
    classes = [str(c) for c in b.manifest["classes"]]
    row = k[0]
    idx = int(row.argmax())
    thresholds = dict(b.manifest["thresholds"])
    own = verdict_of(row, thresholds)
    result = Classification(
        K={c: float(v) for c, v in zip(classes, row)},
        prediction=classes[idx],
        verdict=combine_verdict(own, domain["zone"] if domain else None),
        thresholds=thresholds,
        provenance=prov,
        mosaic=mosaic,
        classifier_verdict=own,
        domain=domain,
    )
    if activation_map:
        result.activation_map, result.tile_importance = _activation_map(b, x, idx, mosaic)
    return result


def _domain_of(
    mosaic: MDHisto, bundle: BundleSource, deconvolve: bool, repeats: int, seed: int, backend: str, device: str,
    classifier: Bundle | None = None,
) -> dict[str, Any] | None:
    """Domain-applicability summary of the classifier's input (see :func:`classify`)."""
    from ..bundle import default_bundle_path
    from ..errors import Exp2SimError

    if bundle is None and not deconvolve and classifier is not None and classifier.manifest.get("domain"):
        # The classifier carries a reference bank of its own training inputs, in its own
        # feature space: the domain that matters for its answer.
        from ..bundle.resolve import reference_bank
        from ..domain import score
        from ..inference.features import classifier_features

        arrays, calibration = reference_bank(classifier)
        f = classifier_features([mosaic], classifier, backend=backend, device=device)
        res = score(f, arrays, calibration, repeats=repeats, seed=seed)
        return {
            "mean": float(res.mean),
            "std": float(res.std),
            "zone": res.zone,
            "bundle_id": classifier.bundle_id,
            "repeats": int(repeats),
            "features": "classifier",
        }
    task = "deconvolve" if deconvolve else "convolve"
    if bundle is None:
        try:
            default_bundle_path(task, 2)
        except Exp2SimError as exc:
            _log.warning("domain check skipped: %s", exc)
            return None
    bundle = score_bundle(2, bundle, default_task=task)
    (score_,) = score_histograms([mosaic], bundle, repeats=repeats, seed=seed, backend=backend, device=device)
    return {
        "mean": float(score_.mean),
        "std": float(score_.std),
        "zone": score_.zone,
        "bundle_id": bundle.bundle_id,
        "repeats": int(repeats),
        "features": "generator encoder",
    }
