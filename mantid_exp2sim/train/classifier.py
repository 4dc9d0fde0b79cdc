"""``exp2sim-train classifier``: train the DUQ spin-wave model classifier and export its bundle.

Data: one or more ``exp2sim-simulate`` mosaic data sets, read as
:class:`~mantid_exp2sim.train.data.LabelledSpectra`: each model group is a class, labelled by
its ``label`` attribute, and the class names are the group names in label order. By default
the classifier learns from the **unconvolved** spectra (as in seed 000: measured data are
deconvolved by the Exp2SimGAN generator before classification); ``--kind convolved`` trains on
resolution-convolved spectra instead.

Training: a seeded split into training and held-out samples (``--val-fraction``; with
``--holdout-from`` the held-out samples come from the named files only, so that new data can be
added to a fine-tuning run without moving seen spectra into the held-out set), Adam, the
DUQ loss (BCE + two-sided gradient penalty), the centroid EMA after every step, and each
epoch a held-out evaluation; the weights of the best held-out epoch are kept. Every sample is
normalised by the RMS of its unmasked bins, exactly as at inference, then augmented
(:mod:`mantid_exp2sim.train.augment`: blur, noise, extra masking, Q inversion and, with
``--cycle-augment``, spectra taken through the generators).

Domain alignment (``--align FILE.h5``, off by default): the classifier will read deconvolved
measured spectra, which keep some of the instrument's broadening. Their labels are unknown,
but the spectra themselves are at hand; with ``--align`` every training step also draws a
batch of unlabelled convolved spectra from FILE.h5, deconvolved by ``--align-generator``
(prepared once, before training), sends it through the network together with the labelled
batch (so batch normalisation sees both), and adds ``--align-weight`` times the maximum mean
discrepancy between the two batches' feature vectors (:func:`mantid_exp2sim.models.duq.feature_mmd`):
unsupervised domain alignment. Labels, BCE, gradient penalty and centroids use the labelled
unconvolved spectra only.

Export: :func:`mantid_exp2sim.train.export.export_classifier` (calibrated thresholds, the ONNX
graph checked against PyTorch, weights, classes, layout and the exact command). The options
are generated from :class:`~mantid_exp2sim.train.config.ClassifierConfig`
(:func:`~mantid_exp2sim.train.config.add_classifier_options`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import InputDataError, format_error
from .augment import MeasuredLikeAugmenter, alignment_spectra, augment_batch, cycled_spectra
from .config import ClassifierConfig, add_classifier_options
from .data import LabelledSpectra, normalised_batch, stratified_split
from .export import export_classifier

__all__ = ["train_classifier", "build_classifier_model", "calibrate_classifier", "get_parser", "main"]


# ----------------------------------------------------------------------------- training
def _evaluate(model: Any, data: LabelledSpectra, idx: np.ndarray, batch: int,
              draws: "HeldOutDraws | None" = None) -> np.ndarray:
    """Kernel values of held-out samples ``idx`` (clean), or of their fixed measured-like ``draws``."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(idx), batch):
            part = idx[s : s + batch]
            raw = data.read_batch(part) if draws is None else draws.batch(data, part)
            x = torch.from_numpy(normalised_batch(raw))
            out.append(model(x).numpy().astype(np.float64))
    return np.concatenate(out) if out else np.zeros((0, len(data.classes)))


class HeldOutDraws:
    """Fixed measured-like draws of held-out samples: draw ``d`` of sample ``i`` is seeded by ``(seed, i, d)``."""

    def __init__(self, augmenter: MeasuredLikeAugmenter, seed: int, draw: int) -> None:
        self.augmenter, self.seed, self.draw = augmenter, int(seed), int(draw)

    def batch(self, data: LabelledSpectra, idx: Sequence[int]) -> np.ndarray:
        return np.stack([
            self.augmenter.draw(data.read(int(i)), np.random.default_rng([self.seed, 17, int(i), self.draw]))
            for i in idx
        ])


def _held_out_k(model: Any, data: LabelledSpectra, va: np.ndarray, batch: int,
                augmenter: MeasuredLikeAugmenter | None, seed: int, n_draws: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """K, labels and a "measured-like" flag for the held-out set: clean spectra, plus ``n_draws``
    measured-like draws of each with ``augmenter``."""
    ks = [_evaluate(model, data, va, batch)]
    flags = [np.zeros(len(va), bool)]
    if augmenter is not None:
        for d in range(n_draws):
            ks.append(_evaluate(model, data, va, batch, HeldOutDraws(augmenter, seed, d)))
            flags.append(np.ones(len(va), bool))
    labels = np.concatenate([data.labels[va]] * len(ks))
    return np.concatenate(ks), labels, np.concatenate(flags)


def build_classifier_model(cfg: ClassifierConfig, n_classes: int, shape: Sequence[int]) -> Any:
    """The untrained network of ``cfg.architecture`` (``mosaic`` or ``energy-stack``)."""
    common = dict(n_classes=n_classes, input_shape=tuple(shape), widths=cfg.resolved_widths(),
                  feature_dim=cfg.feature_dim, embedding_dim=cfg.embedding_dim, length_scale=cfg.length_scale,
                  gamma=cfg.gamma, batch_norm=cfg.batch_norm)
    if cfg.architecture == "mosaic":
        from ..models.duq import DUQClassifier

        return DUQClassifier(**common)
    if cfg.architecture == "energy-stack":
        from ..models.energy_stack import EnergyStackDUQ

        return EnergyStackDUQ(**common)
    raise InputDataError(
        format_error("Unknown --architecture", reason=f"got {cfg.architecture!r}",
                     fix="choose 'mosaic' or 'energy-stack'")
    )


def _same_file(a: str, b: str) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _holdout_files(cfg: ClassifierConfig) -> list[int]:
    """Positions in ``cfg.train`` of the ``--holdout-from`` files (each must be a ``--train`` file)."""
    positions = []
    for h in cfg.holdout_from or ():
        hits = [i for i, t in enumerate(cfg.train) if _same_file(t, h)]
        if not hits:
            raise InputDataError(format_error(
                "--holdout-from names a file that is not a training file", reason=f"{h} is not in --train",
                fix="give it to --train as well (its other samples train)"))
        positions.extend(hits)
    return sorted(set(positions))


def _split_from_files(pool: np.ndarray, labels: np.ndarray, file_index: np.ndarray, files: Sequence[int],
                      val_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(training, held-out) indices of ``pool``: the held-out ones drawn from ``files`` only."""
    from_files = np.isin(file_index[pool], files)
    candidates = pool[from_files]
    tr_local, va_local = stratified_split(labels[candidates], val_fraction, rng)
    tr = np.concatenate([pool[~from_files], candidates[tr_local]])
    return rng.permutation(tr), np.sort(candidates[va_local])


def _refuse_seen_holdout(manifest: dict[str, Any], cfg: ClassifierConfig, path: str) -> None:
    """With ``--holdout-from``, refuse held-out files that trained the ``--init-from`` weights."""
    seen = [str(f) for f in manifest.get("training", {}).get("files", [])]
    clash = [h for h in cfg.holdout_from or () if any(_same_file(h, f) for f in seen)]
    if clash:
        raise InputDataError(format_error(
            "--holdout-from file trained the --init-from weights", reason=f"{path} was trained on {clash}",
            fix="hold out from a data set the initial weights never saw (a new seed)"))


def load_initial_weights(model: Any, path: str, classes: Sequence[str], cfg: ClassifierConfig) -> dict[str, Any]:
    """Load the weights and centroids of the classify bundle ``path`` into ``model`` (``--init-from``).

    The bundle must hold the same architecture (name and configuration, the length scale aside)
    and the same classes in the same order. The length scale restarts at ``cfg.length_scale``
    because a calibrated bundle carries the refitted one.

    Returns
    -------
    dict
        A JSON-safe record for the bundle's training description (path, bundle id, checksum).

    Raises
    ------
    InputDataError
        The bundle is not a classifier, or its network or classes differ from this run's.
    """
    import torch

    from ..bundle.format import load_bundle

    bundle = load_bundle(path)
    m = bundle.manifest
    if m.get("task") != "classify":
        raise InputDataError(format_error(
            "--init-from needs a classifier bundle", reason=f"{path} is a {m.get('task')!r} bundle",
            fix="give a classify_2d bundle written by exp2sim-train classifier"))
    _refuse_seen_holdout(m, cfg, path)
    ours = model.architecture()

    def comparable(arch: dict[str, Any]) -> dict[str, Any]:
        config = json.loads(json.dumps(arch["config"]))  # tuples as the manifest holds them (lists)
        return {"name": arch["name"], **{k: v for k, v in config.items() if k != "length_scale"}}

    if comparable(m["architecture"]) != comparable(ours):
        theirs, mine = comparable(m["architecture"]), comparable(ours)
        diff = sorted(k for k in set(theirs) | set(mine) if theirs.get(k) != mine.get(k))
        raise InputDataError(format_error(
            "--init-from bundle has another network", reason=f"{path} differs in {', '.join(diff)}",
            fix="give the --architecture, --widths, --feature-dim and --embedding-dim it was trained with"))
    if list(m.get("classes", [])) != list(classes):
        raise InputDataError(format_error(
            "--init-from bundle has other classes", reason=f"bundle {m.get('classes')}, data {list(classes)}",
            fix="train on data sets with the bundle's model groups (or pass --models in its order)"))
    model.load_state_dict({k: torch.from_numpy(v) for k, v in bundle.weights().items()}, strict=True)
    model.length_scale = float(cfg.length_scale)
    return {"path": str(path), "bundle_id": m.get("bundle_id"), "sha256": bundle.sha256}


def train_classifier(
    cfg: ClassifierConfig,
    *,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Train a DUQ classifier on simulator data.

    Returns
    -------
    dict
        ``model`` (eval mode, best held-out epoch), ``classes``, ``history`` (per-epoch
        losses and held-out metrics), ``holdout_k`` ``(n_val, n_classes)``, ``holdout_labels``,
        ``thresholds``, ``data`` (a description), ``seconds``.
    """
    import torch

    from ..models.duq import duq_loss

    say = log or (lambda _msg: None)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    data = LabelledSpectra(cfg.train, cfg.kind, cfg.models)
    labels = data.labels
    pool = np.arange(len(data))
    if cfg.max_samples is not None and cfg.max_samples < len(data):
        keep = []
        per = max(1, cfg.max_samples // len(data.classes))
        for c in range(len(data.classes)):
            keep.append(rng.permutation(np.flatnonzero(labels == c))[:per])
        pool = np.sort(np.concatenate(keep))
    if cfg.holdout_from:
        tr, va = _split_from_files(pool, labels, data.file_index, _holdout_files(cfg), cfg.val_fraction, rng)
    else:
        tr_local, va_local = stratified_split(labels[pool], cfg.val_fraction, rng)
        tr, va = pool[tr_local], pool[va_local]
    if data.shape is None or len(data.shape) != 2:
        raise InputDataError(
            format_error("The classifier trains on 2D mosaics", reason=f"sample shape {data.shape}")
        )
    measured: MeasuredLikeAugmenter | None = None
    if cfg.measured_like > 0:
        if cfg.kind != "convolved":
            raise InputDataError(
                format_error("--measured-like needs noise-free convolved spectra",
                             reason=f"--kind is {cfg.kind!r}", fix="add --kind convolved")
            )
        measured = MeasuredLikeAugmenter(cfg.measured_like, shape=data.shape)
        if cfg.val_draws < 1:
            raise InputDataError(
                format_error("--val-draws must be at least 1", reason=f"got {cfg.val_draws}",
                             fix="give the number of measured-like draws per held-out spectrum")
            )
    if data.preload(np.concatenate([tr, va])):
        say(f"classifier: {len(tr) + len(va)} samples held in memory")
    cycled: dict[int, np.ndarray] = {}
    if cfg.cycle_augment > 0:
        cycled = cycled_spectra(data, tr, cfg.cycle_models, log=say)
    target: np.ndarray | None = None
    if cfg.align:
        if not cfg.align_weight >= 0:
            raise InputDataError(
                format_error("--align-weight must not be negative", reason=f"got {cfg.align_weight}",
                             fix="give a weight >= 0 (0 still lets batch normalisation see both domains)")
            )
        target = alignment_spectra(cfg.align, cfg.align_generator, max_samples=cfg.align_samples,
                                   seed=cfg.seed, shape=data.shape, log=say)
        say(f"classifier: aligning features to {len(target)} unlabelled spectra "
            f"(weight {cfg.align_weight:g})")
    model = build_classifier_model(cfg, len(data.classes), data.shape)
    initial = None
    if cfg.init_from:
        initial = load_initial_weights(model, cfg.init_from, data.classes, cfg)
        say(f"classifier: starting from the weights of {cfg.init_from}")
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(tr) / cfg.batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps_per_epoch)
    say(
        f"classifier: {len(tr)} training / {len(va)} held-out {cfg.kind} samples, classes "
        f"{data.classes}, {sum(p.numel() for p in model.parameters())} parameters"
    )
    def augment(x: Any) -> Any:
        return augment_batch(x, gen, noise=cfg.noise, blur=cfg.blur, energy_blur=cfg.energy_blur,
                             mask_prob=cfg.mask_prob, flip=cfg.flip)

    history: list[dict[str, float]] = []
    best: tuple[float, float] | None = None
    best_state = None
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        order = tr[rng.permutation(len(tr))]
        sums = {"loss": 0.0, "bce": 0.0, "gp": 0.0, "accuracy": 0.0}
        if target is not None:
            sums["align"] = 0.0
        for s in range(0, len(order), cfg.batch_size):
            idx = order[s : s + cfg.batch_size]
            batch = data.read_batch(idx)
            if measured is not None:
                batch = measured(batch, rng)
            if cycled:
                swap = rng.random(len(idx)) < cfg.cycle_augment
                for j in np.flatnonzero(swap):
                    batch[j] = cycled[int(idx[j])]
            x = torch.from_numpy(normalised_batch(batch))
            x = augment(x)
            y = torch.nn.functional.one_hot(torch.from_numpy(labels[idx]), len(data.classes)).float()
            xt = None
            if target is not None:
                pick = rng.choice(len(target), len(idx), replace=len(target) < len(idx))
                xt = augment(torch.from_numpy(normalised_batch(target[pick])))
            loss, parts = duq_loss(model, x, y, gp_weight=cfg.gp_weight, x_target=xt,
                                   align_weight=cfg.align_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            model.update_centroids(x, y)
            sums["loss"] += float(loss.detach()) * len(idx)
            for k in parts:
                sums[k] += parts[k] * len(idx)
        k_val, y_val, ml_flag = _held_out_k(model, data, va, cfg.batch_size, measured, cfg.seed,
                                            min(1, cfg.val_draws))
        val_acc = float((k_val.argmax(1) == y_val).mean())
        onehot = np.eye(len(data.classes))[y_val]
        kc = np.clip(k_val, 1e-7, 1 - 1e-7)
        val_bce = float(-(onehot * np.log(kc) + (1 - onehot) * np.log(1 - kc)).mean())
        row = {k: v / len(tr) for k, v in sums.items()}
        row.update(epoch=epoch + 1, val_accuracy=val_acc, val_bce=val_bce, seconds=time.perf_counter() - t0)
        if measured is not None:
            row["val_accuracy_clean"] = float((k_val[~ml_flag].argmax(1) == y_val[~ml_flag]).mean())
            row["val_accuracy_measured_like"] = float((k_val[ml_flag].argmax(1) == y_val[ml_flag]).mean())
        history.append(row)
        extra = f", align {row['align']:.4f}" if "align" in row else ""
        if "val_accuracy_measured_like" in row:
            extra += (f"; held-out clean {row['val_accuracy_clean']:.3f}, measured-like "
                      f"{row['val_accuracy_measured_like']:.3f}")
        say(
            f"epoch {epoch + 1}/{cfg.epochs}: loss {row['loss']:.4f} (bce {row['bce']:.4f}, gp "
            f"{row['gp']:.4f}{extra}), train acc {row['accuracy']:.3f}, held-out acc {val_acc:.3f}, "
            f"held-out bce {val_bce:.4f}, {row['seconds']:.0f} s"
        )
        key = (val_acc, -val_bce)
        if best is None or key > best:
            best = key
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if cfg.max_minutes is not None and row["seconds"] > 60.0 * cfg.max_minutes and epoch + 1 < cfg.epochs:
            say(f"classifier: stopping after epoch {epoch + 1}: past --max-minutes {cfg.max_minutes:g}")
            break
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    k_val, y_val, ml_flag = _held_out_k(model, data, va, cfg.batch_size, measured, cfg.seed, cfg.val_draws)
    thresholds, calibration = calibrate_classifier(model, k_val, y_val, cfg)
    if measured is not None:
        k_cal = k_val ** calibration["kernel_power"]
        calibration["holdout_accuracy_measured_like"] = float((k_cal[ml_flag].argmax(1) == y_val[ml_flag]).mean())
        calibration["holdout_accuracy_clean"] = float((k_cal[~ml_flag].argmax(1) == y_val[~ml_flag]).mean())
    desc = {
        "files": [str(p) for p in cfg.train],
        "kind": cfg.kind,
        "classes": data.classes,
        "n_train": int(len(tr)),
        "n_holdout": int(len(va)),
        "per_class_train": {c: int((labels[tr] == i).sum()) for i, c in enumerate(data.classes)},
        "sample_shape": list(data.shape),
        "architecture": cfg.architecture,
        "calibration": calibration,
    }
    if initial is not None:
        desc["initial_weights"] = initial
    if measured is not None:
        desc["measured_like"] = {**measured.describe(), "holdout_draws_per_spectrum": int(cfg.val_draws),
                                 "holdout": "clean held-out spectra plus fixed measured-like draws of them"}
    if target is not None:
        desc["aligned_to"] = {
            "files": [str(p) for p in cfg.align],
            "kind": "convolved, unlabelled",
            "generator": cfg.align_generator or "shipped deconvolve_2d",
            "n_samples": int(len(target)),
            "weight": float(cfg.align_weight),
        }
    bank = classifier_domain_bank(model, data, tr, va, measured, cfg)
    if bank is not None:
        say(f"classifier: domain-score reference bank of {bank[1]['train_samples_encoded']} training inputs "
            "in the classifier's feature space")
    data.close()
    return {
        "model": model,
        "domain_bank": bank,
        "classes": data.classes,
        "history": history,
        "holdout_k": k_val ** calibration["kernel_power"],
        "holdout_labels": y_val,
        "thresholds": thresholds,
        "data": desc,
        "seconds": time.perf_counter() - t0,
    }


def pooled_classifier_features(model: Any, x: np.ndarray, batch: int = 32) -> np.ndarray:
    """Pooled (mean, std per channel over valid positions) last feature maps of network inputs ``x``."""
    import torch

    from ..domain.features import pooled_features

    model.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(x), batch):
            part = x[s : s + batch]
            fmap = model.encode(torch.from_numpy(part)).numpy()
            out.append(pooled_features(fmap, part[:, 1] > 0.5))
    return np.concatenate(out)


def classifier_domain_bank(model: Any, data: LabelledSpectra, tr: np.ndarray, va: np.ndarray,
                           measured: MeasuredLikeAugmenter | None,
                           cfg: ClassifierConfig) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """Domain-of-applicability reference bank in the classifier's own feature space.

    Training inputs as the classifier saw them (a seeded choice of ``cfg.bank_samples``
    training spectra, each measured-like with the training probability; with measured-like
    draws a spectrum may be drawn more than once when there are fewer) against the held-out
    inputs (clean and ``cfg.val_draws`` fixed measured-like draws), through
    :func:`mantid_exp2sim.domain.build_reference_bank`. None (no bank) when ``bank_samples``
    is 0 or there are too few distinct training inputs for one.
    """
    from ..domain import build_reference_bank
    from ..train.export import REFERENCE_SET

    n = int(cfg.bank_samples)
    if n <= 0 or (measured is None and len(tr) <= 2 * REFERENCE_SET):
        return None
    n = max(n, 2 * REFERENCE_SET + 1)
    rng = np.random.default_rng([cfg.seed, 23])
    pick = np.sort(rng.choice(tr, n, replace=len(tr) < n))
    raw = data.read_batch(pick)
    if measured is not None:
        raw = measured(raw, rng)
    f_train = pooled_classifier_features(model, normalised_batch(raw))
    parts = [data.read_batch(va)]
    if measured is not None:
        parts += [HeldOutDraws(measured, cfg.seed, d).batch(data, va) for d in range(cfg.val_draws)]
    f_hold = pooled_classifier_features(model, normalised_batch(np.concatenate(parts)))
    arrays, calibration = build_reference_bank(f_train, f_hold, seed=cfg.seed)
    calibration = {**calibration, "features": "pooled (mean, std per channel) last feature map of the classifier "
                   "(its onnx_encoder graph)", "train_samples_encoded": int(len(pick)),
                   "holdout_samples_encoded": int(len(f_hold))}
    return arrays, calibration


def calibrate_classifier(model: Any, k: np.ndarray, labels: np.ndarray,
                         cfg: ClassifierConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit the length scale (``cfg.fit_length_scale``) and the verdict thresholds on held-out K.

    The model's ``length_scale`` is changed in place to ``sigma / sqrt(a)``
    (:func:`~mantid_exp2sim.tasks.classify.fit_kernel_power`), which turns every K into
    ``K ** a``; the thresholds are then calibrated on those K.

    Returns
    -------
    thresholds, calibration
        The bundle's thresholds and a JSON-safe record (power, length scales, ECE before and after).
    """
    from ..tasks.classify import calibrate_thresholds, expected_calibration_error, fit_kernel_power

    before = expected_calibration_error(k, labels)
    a = fit_kernel_power(k, labels) if cfg.fit_length_scale else 1.0
    old = float(model.length_scale)
    model.length_scale = old / math.sqrt(a)
    kc = k ** a
    thresholds = calibrate_thresholds(kc, labels, confident_coverage=cfg.confident_coverage,
                                      ood_quantile=cfg.ood_quantile, max_confident_wrong=cfg.max_confident_wrong)
    calibration = {"kernel_power": float(a), "length_scale_trained": old, "length_scale": float(model.length_scale),
                   "holdout_ece_before": before, "holdout_ece": expected_calibration_error(kc, labels),
                   "n_holdout_inputs": int(len(labels)),
                   "method": "length scale refitted on held-out K (NLL of 'the prediction is right' under "
                             "max K); thresholds calibrate_thresholds" if cfg.fit_length_scale else
                             "trained length scale; thresholds calibrate_thresholds"}
    return thresholds, calibration


# ---------------------------------------------------------------------------------- CLI
def get_parser() -> argparse.ArgumentParser:
    """The ``exp2sim-train classifier`` argument parser."""
    p = argparse.ArgumentParser(
        prog="exp2sim-train classifier",
        description="Train the DUQ classifier (Goodenough vs Dimer) on exp2sim-simulate mosaic "
        "data sets and export a classify_2d bundle.",
    )
    add_classifier_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``exp2sim-train classifier``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    ns = get_parser().parse_args(argv)
    cfg = ClassifierConfig(**{k: v for k, v in vars(ns).items() if k != "quiet"})
    log = None if ns.quiet else (lambda msg: print(msg, flush=True))
    try:
        from ..errors import require

        require("torch", extra="train", feature="exp2sim-train classifier")
        res = train_classifier(cfg, log=log)
        last = res["history"][-1]
        best = max(res["history"], key=lambda r: (r["val_accuracy"], -r["val_bce"]))
        path = export_classifier(
            res["model"],
            cfg.out,
            classes=res["classes"],
            thresholds=res["thresholds"],
            training={**res["data"], "config": asdict(cfg), "epochs_run": last["epoch"],
                      "seconds": round(res["seconds"], 1)},
            validation={"holdout_accuracy": res["thresholds"]["holdout_accuracy"], "best_epoch": best["epoch"],
                        "history": res["history"]},
            seed=cfg.seed,
            command=["exp2sim-train", "classifier", *argv],
            exporter=cfg.exporter,
            reference=res.get("domain_bank"),
        )
    except Exception as exc:  # noqa: BLE001 - one line, no traceback (bad input, unwritable paths)
        from .._console import failure_line

        print(f"exp2sim-train classifier: error: {failure_line(exc)}", file=sys.stderr)
        return 1
    if log:
        th = res["thresholds"]
        log(
            f"wrote {path}: held-out accuracy {th['holdout_accuracy']:.3f}, thresholds confident "
            f">= {th['confident']:.3f}, out of distribution < {th['out_of_distribution']:.3f}"
        )
        log(json.dumps({"bundle": str(path), "holdout_accuracy": th["holdout_accuracy"]}))
    return 0
