"""Trained networks -> model bundles: a generator of a GAN checkpoint, or a classifier.

:func:`export_bundle` writes one generator of a checkpoint (deconvolve = G_A, convolve = G_B).
The bundle holds the ONNX graph of the generator (checked against PyTorch on input sizes not
used in training), the ONNX graph of its encoder, the float32 weights, tiling settings, the
normalisation, the training-data description, validation metrics on held-out simulated pairs,
provenance, and the reference bank of the domain-of-applicability score: pooled encoder
features of training samples of the generator's input domain plus held-out ones, calibrated
with :func:`mantid_exp2sim.domain.build_reference_bank`. The features are computed with
:func:`mantid_exp2sim.inference.encode_features` on the bundle itself (written first without
the bank), so scoring at inference time uses exactly the same encoder, padding and pooling.

:func:`export_classifier` writes a trained DUQ classifier: thresholds calibrated on held-out
data (:func:`mantid_exp2sim.tasks.classify.calibrate_thresholds`), the ONNX graph (checked against
PyTorch), the weights, class names, the mosaic layout and the exact command.
"""

from __future__ import annotations

import glob
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import BundleError, InputDataError, format_error
from ..histogram import Axis, MDHisto
from ..io._atomic import discard_temp, reserve_temp

__all__ = ["export_bundle", "export_classifier", "repack_bundle", "TASK_GENERATOR", "DEFAULT_TILE", "REFERENCE_SET"]

#: Which generator of a run each task exports, and its manifest direction.
TASK_GENERATOR = {"deconvolve": ("G_A", "exp2sim", "a"), "convolve": ("G_B", "sim2exp", "b")}
#: Suggested inference tile size per dimensionality (the halo is added on each side): large
#: enough that the kept core dominates the halo (47 bins for the presets); the inference engine
#: still shrinks tiles to the input and to its memory budget.
DEFAULT_TILE = {2: 1024, 3: 192}
#: ONNX Runtime and PyTorch must agree to this (absolute, on RMS-normalised inputs).
ONNX_TOLERANCE = 1e-3


def _histo(sample: np.ndarray, axes: list[dict] | None) -> MDHisto:
    if axes and len(axes) == sample.ndim and all(int(a["bins"]) == n for a, n in zip(axes, sample.shape)):
        return MDHisto(sample, tuple(Axis.from_dict(a) for a in axes))
    return MDHisto.from_array(sample)


def _check_inputs(generator: Any, ndim: int, patch: Sequence[int], rng: np.random.Generator) -> list[np.ndarray]:
    """Random network inputs with spatial sizes not used in training (and one rectangular)."""
    m = generator.spatial_multiple
    lo = generator.min_spatial_size()
    p = [int(s) for s in patch]
    shapes = [
        tuple(max(lo, s + (k + 1) * m) for k, s in enumerate(p)),  # larger and non-square
        tuple(max(lo, s - m) if s - m >= lo else s + 2 * m * (k + 2) for k, s in enumerate(p)),
    ]
    out = []
    for shape in shapes:
        x = np.empty((1, 2) + shape, dtype=np.float32)
        valid = (rng.random(shape) > 0.1).astype(np.float32)
        x[0, 0] = rng.standard_normal(shape).astype(np.float32) * valid
        x[0, 1] = valid
        out.append(x)
    return out


def _direction_metrics(generator: Any, pairs: Sequence[tuple[np.ndarray, np.ndarray]], side: str) -> dict[str, Any]:
    """PSNR, SSIM, intensity ratio and Frechet distance of one direction on held-out pairs."""
    from .gan import encode_sample, translate_sample
    from .metrics import frechet_distance, intensity_ratio, masked_psnr, masked_ssim, summarise

    task = "deconvolve" if side == "a" else "convolve"
    res: dict[str, list[float]] = {k: [] for k in ("psnr_identity", f"psnr_{task}", "ssim_identity", f"ssim_{task}",
                                                   f"intensity_ratio_{task}")}
    f_true, f_out, f_in = [], [], []
    for a, b in pairs:
        x, target = (a, b) if side == "a" else (b, a)
        y = translate_sample(generator, x)
        res["psnr_identity"].append(masked_psnr(x, target))
        res[f"psnr_{task}"].append(masked_psnr(y, target))
        res["ssim_identity"].append(masked_ssim(x, target))
        res[f"ssim_{task}"].append(masked_ssim(y, target))
        res[f"intensity_ratio_{task}"].append(intensity_ratio(y, target))
        f_true.append(encode_sample(generator, target))
        f_out.append(encode_sample(generator, y))
        f_in.append(encode_sample(generator, x))
    out: dict[str, Any] = {k: summarise(v, "median" if k.startswith("intensity") else "mean") for k, v in res.items()}
    if len(pairs) >= 2:
        out[f"fid_{task}"] = frechet_distance(np.stack(f_out), np.stack(f_true))
        out["fid_identity"] = frechet_distance(np.stack(f_in), np.stack(f_true))
    out["n_pairs"] = len(pairs)
    out["psnr_definition"] = "10 log10(range^2 / MSE) over unmasked bins, range = max - min of the target"
    out["ssim_definition"] = "masked Gaussian-window SSIM (sigma 1.5 bins), mean over unmasked bins"
    out["fid_definition"] = "Frechet distance of pooled (mean, std per channel) bottleneck features of this generator"
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in out.items()}


#: Reference samples per repeat of the domain score's calibration (``build_reference_bank``).
REFERENCE_SET = 20


def _data_paths(specs: Sequence[str] | str | None) -> list[str]:
    """The files a data specification reads (``file.h5:/dataset``, globs and plain paths)."""
    out: list[str] = []
    for spec in [specs] if isinstance(specs, str) else list(specs or []):
        for sep in (".hdf5:", ".h5:"):
            if sep in spec:
                spec = spec.partition(sep)[0] + sep[:-1]
                break
        out.append(spec)
        out.extend(glob.glob(spec))
    return out


def _check_output(output: Path, checkpoint: str | os.PathLike, cfg: Any, overwrite: bool) -> None:
    """Refuse, before any export work, a bundle path that is an input or cannot be written."""
    from ..io.output_paths import PlannedOutput, check_output_paths
    from .checkpoint import CHECKPOINT_NAME

    inputs = [checkpoint, Path(checkpoint).expanduser() / CHECKPOINT_NAME]
    inputs += _data_paths(cfg.domain_a) + _data_paths(cfg.domain_b) + _data_paths(cfg.val_data)
    check_output_paths([PlannedOutput(output, "the bundle", (".h5",))], inputs, overwrite=overwrite)


def _check_bank_size(dom: Any, n_train_features: int, n_holdout_features: int) -> None:
    """Refuse, before the ONNX export, a data set too small for the domain-score reference bank."""
    n_train = min(int(n_train_features), int(dom.train.size))
    n_hold = min(int(n_holdout_features), int(dom.holdout.size))
    if n_train > 2 * REFERENCE_SET and n_hold >= 1:
        return
    problems = []
    if n_train <= 2 * REFERENCE_SET:
        problems.append(
            f"{n_train} training samples of the input domain would be encoded (the run has {dom.train.size}, "
            f"--n-train-features is {n_train_features}; more than {2 * REFERENCE_SET} are needed)"
        )
    if n_hold < 1:
        problems.append(
            f"no held-out samples (the run holds out {dom.holdout.size}, --n-holdout-features is "
            f"{n_holdout_features}; at least 1 is needed)"
        )
    raise InputDataError(
        format_error(
            "Too few samples for the domain-score reference bank of the bundle",
            reason="; ".join(problems),
            fix="export a run trained on more data (500 or more training samples recommended, with "
            "--val-fraction > 0), or raise --n-train-features / --n-holdout-features",
        )
    )


def export_bundle(
    checkpoint: str | os.PathLike,
    output: str | os.PathLike,
    *,
    task: str,
    n_train_features: int = 500,
    n_holdout_features: int = 200,
    val_pairs: int = 32,
    tile_size: int | Sequence[int] | None = None,
    domain_a: Sequence[str] | None = None,
    domain_b: Sequence[str] | None = None,
    val_data: str | None = None,
    seed: int | None = None,
    command: Sequence[str] | None = None,
    onnx_exporter: str = "auto",
    log: Callable[[str], None] | None = None,
    overwrite: bool = True,
) -> Path:
    """Write the bundle of one generator of a training checkpoint.

    Parameters
    ----------
    checkpoint
        Checkpoint file or run folder of ``exp2sim-train gan``.
    output
        Bundle path (``*.exp2sim.h5``); written atomically.
    task
        ``"deconvolve"`` (``G_A``, measured/convolved -> simulated) or ``"convolve"`` (``G_B``).
    n_train_features
        Training samples of the input domain encoded for the reference bank (at least 500
        recommended; all available when fewer).
    n_holdout_features
        Held-out samples encoded for the calibration (all available when fewer).
    val_pairs
        Held-out simulated pairs used for the validation metrics in the manifest.
    tile_size
        Suggested inference tile (default 256 in 2D, 64 in 3D).
    domain_a, domain_b, val_data
        Override the data paths recorded in the checkpoint (e.g. after moving the files); the
        files must hold the same samples.
    seed
        Seed of the reference-bank calibration (default: the training seed).
    command
        Command line recorded in the provenance (default ``sys.argv``).
    onnx_exporter
        ``"auto"`` (torch.export/dynamo, falling back to TorchScript), ``"dynamo"`` or
        ``"torchscript"`` (much faster to export; the graph is checked the same way).
    log
        Progress messages.
    overwrite
        Whether an existing file at ``output`` may be replaced (``exp2sim-train export``
        passes its ``--overwrite``).

    Returns
    -------
    pathlib.Path
        The bundle path.

    Raises
    ------
    OutputPathError
        Before any export work: ``output`` is the checkpoint or a data file, a directory, not
        ``.h5``, in a missing or unwritable directory, or exists without ``overwrite``.
    InputDataError
        Bad task, unreadable checkpoint, data that differ from the training run's, or too few
        samples for the domain-score reference bank (checked before the ONNX export).
    """
    import torch

    from ..bundle import RMS_NORMALISATION, get_builder, load_bundle, make_manifest, write_bundle
    from ..domain import build_reference_bank
    from ..inference import encode_features
    from ..onnx import EncoderWrapper, export_onnx, verify_onnx
    from .checkpoint import load_checkpoint
    from .config import config_from_checkpoint
    from .data import data_from_config
    from .gan import check_split

    say = log or (lambda msg: None)
    if task not in TASK_GENERATOR:
        raise InputDataError(
            format_error("Invalid export task", reason=f"task={task!r}; allowed: deconvolve, convolve",
                         fix="deconvolve exports G_A (A -> B), convolve exports G_B (B -> A)")
        )
    gen_key, direction, side = TASK_GENERATOR[task]
    ckpt = load_checkpoint(checkpoint)
    cfg = config_from_checkpoint(ckpt["config"])
    if domain_a:
        cfg.domain_a = list(domain_a)
    if domain_b:
        cfg.domain_b = list(domain_b)
    if val_data:
        cfg.val_data = val_data
    seed = cfg.seed if seed is None else int(seed)
    output = Path(output).expanduser()
    _check_output(output, checkpoint, cfg, overwrite)

    arch = ckpt["architecture"]["generator"]
    g = get_builder(arch.get("name", "ResnetGenerator"))(arch["config"])
    g.load_state_dict(ckpt["models"][gen_key])
    g.eval()
    ndim = cfg.ndim
    tile = tile_size if tile_size is not None else DEFAULT_TILE[ndim]
    tile = [int(tile)] * ndim if np.ndim(tile) == 0 else [int(t) for t in tile]

    # ---- data first (fail fast): the same split as in training
    say("opening the training data")
    data = data_from_config(cfg, val_samples=val_pairs)
    check_split(ckpt, data)
    dom = data.a if side == "a" else data.b
    _check_bank_size(dom, n_train_features, n_holdout_features)
    axes = None
    src = dom.source
    if hasattr(src, "axes"):
        axes = src.axes() or None

    # ---- ONNX graphs, checked on input sizes not used in training
    say(f"exporting {gen_key} ({task}) to ONNX")
    rng = np.random.default_rng([seed, 5])
    checks = _check_inputs(g, ndim, cfg.spatial_patch(), rng)
    example = torch.from_numpy(np.ascontiguousarray(checks[0]))
    onnx_bytes = export_onnx(g, example, exporter=onnx_exporter)
    diff = float(verify_onnx(onnx_bytes, g, checks))
    enc = EncoderWrapper(g).eval()
    enc_bytes = export_onnx(enc, example, exporter=onnx_exporter)
    diff_enc = float(verify_onnx(enc_bytes, enc, checks))
    if not (diff <= ONNX_TOLERANCE and diff_enc <= ONNX_TOLERANCE):
        raise BundleError(
            format_error(
                "The ONNX export does not reproduce the PyTorch model",
                reason=f"max |ONNX - torch| = {diff:.3g} (generator), {diff_enc:.3g} (encoder); "
                f"allowed {ONNX_TOLERANCE}",
                fix="report this with the checkpoint; try another torch/onnx version",
            )
        )
    weights = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in g.state_dict().items()}

    # ---- validation metrics of this direction
    say(f"validating on {min(val_pairs, len(data.val_pairs))} held-out pairs")
    validation = _direction_metrics(g, data.val_pairs[:val_pairs], side) if data.val_pairs else {"n_pairs": 0}
    validation["onnx_max_abs_diff"] = diff
    validation["onnx_encoder_max_abs_diff"] = diff_enc
    validation["onnx_check_shapes"] = [list(c.shape) for c in checks]
    validation["onnx_exporter"] = onnx_exporter
    validation["training_validation"] = ckpt.get("validation") or None

    # ---- manifest (without the reference bank first)
    tr = json.loads(ckpt["data"]) if isinstance(ckpt.get("data"), str) else {}
    training = {
        "data": tr,
        "input_domain": "A (measured / resolution-convolved)" if side == "a" else "B (simulated, unconvolved)",
        "output_domain": "B (simulated, unconvolved)" if side == "a" else "A (measured / resolution-convolved)",
        "steps": int(ckpt["step"]),
        "seconds": float(ckpt.get("elapsed_seconds", 0.0)),
        "world_size": int(ckpt.get("world_size", 1)),
        "patch_size": cfg.spatial_patch(),
        "batch_size": cfg.batch_size,
        "flip_axes": list(cfg.flip_axes),
        "loss_weights": {"gan": cfg.lambda_gan, "nce": cfg.lambda_nce, "idt": cfg.lambda_idt, "aux": cfg.lambda_aux,
                         "int": cfg.lambda_int, "cyc": cfg.lambda_cyc, "pair": cfg.lambda_pair},
        "gan_mode": cfg.gan_mode,
        "preset": cfg.preset,
        "config": cfg.to_dict(),
        "command": list(ckpt.get("command") or []),
        "package_version": ckpt.get("package_version"),
    }
    layout = None
    if hasattr(src, "layout"):
        layout = src.layout()
    manifest = make_manifest(
        kind="generator",
        task=task,
        ndim=ndim,
        architecture=g.architecture(),
        halo=int(g.receptive_field_radius()),
        multiple=int(g.spatial_multiple),
        min_size=int(g.min_spatial_size()),
        patch_size=tile,
        in_channels=2,
        out_channels=1,
        direction=direction,
        normalisation={**RMS_NORMALISATION, "pad_mode": "replicate"},
        expected_axes=axes,
        layout=layout,
        training=training,
        validation=validation,
        seed=seed,
        command=list(command) if command is not None else list(sys.argv),
    )

    # ---- reference bank: features through the bundle's own encoder graph
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = reserve_temp(output, suffix=".prelim.h5")  # removed like any stale temp if killed
    try:
        write_bundle(tmp, manifest, onnx=onnx_bytes, onnx_encoder=enc_bytes, weights=weights)
        prelim = load_bundle(tmp)
        r = np.random.default_rng([seed, 6])
        train_idx = dom.train[np.sort(r.permutation(dom.train.size)[: int(n_train_features)])]
        hold_idx = dom.holdout[: int(n_holdout_features)]
        say(f"encoding {train_idx.size} training and {hold_idx.size} held-out samples for the reference bank")
        if train_idx.size < 500:
            say(f"warning: only {train_idx.size} training samples for the reference bank (500 recommended)")

        def feats(indices: np.ndarray) -> np.ndarray:
            return np.concatenate([
                encode_features([_histo(src.read(int(i)), axes) for i in indices[k : k + 16]], prelim,
                                backend="auto", device="cpu")
                for k in range(0, indices.size, 16)
            ])

        f_train, f_hold = feats(train_idx), feats(hold_idx)
    finally:
        discard_temp(tmp)
    arrays, calibration = build_reference_bank(f_train, f_hold, seed=seed, n_reference=REFERENCE_SET)
    calibration = {**calibration, "features": "inference.encode_features: pooled (mean, std) bottleneck features",
                   "train_samples_encoded": int(train_idx.size), "holdout_samples_encoded": int(hold_idx.size)}
    manifest["domain"] = calibration
    path = write_bundle(output, manifest, onnx=onnx_bytes, onnx_encoder=enc_bytes, weights=weights, reference=arrays)
    load_bundle(path, kind="generator", task=task, ndim=ndim)  # the file must read back
    say(f"wrote {path}")
    return path


def export_classifier(
    model: Any,
    path: str | Path,
    *,
    classes: Sequence[str],
    thresholds: dict[str, Any],
    training: dict[str, Any] | None = None,
    validation: dict[str, Any] | None = None,
    seed: int | None = None,
    command: Sequence[str] | None = None,
    exporter: str = "auto",
    tolerance: float = 1e-4,
    reference: tuple[dict[str, np.ndarray], dict[str, Any]] | None = None,
) -> Path:
    """Write a classifier bundle (ONNX graph, weights, classes, thresholds, provenance).

    Parameters
    ----------
    model
        A trained :class:`~mantid_exp2sim.models.duq.DUQClassifier`.
    path
        Bundle file to write (atomically).
    classes
        Class names in output order.
    thresholds
        From :func:`mantid_exp2sim.tasks.classify.calibrate_thresholds`.
    training, validation
        Free-form descriptions stored in the manifest.
    seed, command
        Provenance.
    exporter
        ONNX exporter (see :func:`mantid_exp2sim.onnx.export_onnx`).
    tolerance
        Largest allowed ONNX-vs-PyTorch difference of the kernel values.
    reference
        ``(arrays, calibration)`` of a domain-score reference bank in the classifier's own
        feature space (``train.classifier.classifier_domain_bank``); the bundle then also holds
        the ``onnx_encoder`` graph (``model.encode``) that computes those features.

    Returns
    -------
    pathlib.Path
    """
    import torch

    from ..bundle import make_manifest, write_bundle
    from ..mosaic import LAYOUT, mosaic_axes
    from ..onnx import export_onnx, verify_onnx

    if len(classes) != model.n_classes:
        raise BundleError(
            format_error("Class names do not match the model", reason=f"{len(classes)} names, {model.n_classes} outputs")
        )
    model = model.eval()
    shape = (2, 2, *model.input_shape)
    gen = torch.Generator().manual_seed(0)
    example = torch.rand(shape, generator=gen)
    example[:, 1] = 1.0
    blob = export_onnx(model, example, dynamic_spatial=False, output_names=["K"], exporter=exporter)
    check = torch.rand((3, 2, *model.input_shape), generator=gen)
    check[:, 1] = (check[:, 1] > 0.2).float()
    diff = verify_onnx(blob, model, [check])
    if not diff <= tolerance:
        raise BundleError(
            format_error(
                "The exported ONNX classifier disagrees with PyTorch",
                reason=f"max |K_onnx - K_torch| = {diff:.3g} > {tolerance:g}",
                fix="report this; try --exporter torchscript",
            )
        )
    enc_blob = None
    if reference is not None:
        from ..onnx import EncoderWrapper

        enc = EncoderWrapper(model).eval()
        enc_blob = export_onnx(enc, example, dynamic_spatial=False, exporter=exporter)
        diff_enc = float(verify_onnx(enc_blob, enc, [check]))
        if not diff_enc <= 1e-3:
            raise BundleError(
                format_error(
                    "The exported ONNX classifier encoder disagrees with PyTorch",
                    reason=f"max |onnx - torch| = {diff_enc:.3g} > 1e-3",
                    fix="report this; try --exporter torchscript",
                )
            )
    axes = [a.to_dict() for a in mosaic_axes(tuple(model.input_shape))]
    manifest = make_manifest(
        kind="classifier",
        task="classify",
        ndim=2,
        architecture=model.architecture(),
        halo=0,
        multiple=1,
        patch_size=None,
        in_channels=model.in_channels,
        out_channels=model.n_classes,
        expected_axes=axes,
        layout=LAYOUT,
        classes=list(classes),
        thresholds=thresholds,
        training=training,
        validation={**(validation or {}), "onnx_max_abs_diff": float(diff)},
        seed=seed,
        command=list(command) if command is not None else None,
    )
    if reference is None:
        return write_bundle(path, manifest, onnx=blob, weights=model.state_dict())
    arrays, calibration = reference
    manifest["domain"] = dict(calibration)
    return write_bundle(path, manifest, onnx=blob, onnx_encoder=enc_blob, weights=model.state_dict(),
                        reference=arrays)


def repack_bundle(
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    command: Sequence[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Rewrite a bundle in the current schema, with the same content (no retraining).

    The network graphs, weights, reference arrays and manifest are carried over unchanged;
    :func:`~mantid_exp2sim.bundle.write_bundle` stores each weight once (schema 2). The
    manifest's ``provenance.repacked`` records the command, the source file's SHA-256 and
    schema version and the date; the original provenance (training and export commands) stays.
    The result is read back and must give byte-identical ONNX graphs and weights.

    Parameters
    ----------
    source
        A bundle of any schema this package reads.
    output
        The new bundle (``.h5``, not ``source``, in an existing folder; written atomically).
    command
        Command line recorded in ``provenance.repacked`` (default ``sys.argv``).
    overwrite
        Whether an existing file at ``output`` may be replaced.

    Returns
    -------
    pathlib.Path
        ``output``.

    Raises
    ------
    OutputPathError
        ``output`` is the source, not ``.h5``, in a missing folder, or exists without
        ``overwrite`` (checked before anything is written).
    BundleError
        The source cannot be read, or the rewritten bundle does not reproduce the source's
        graphs and weights.
    """
    import datetime as dt

    from ..bundle import load_bundle, write_bundle

    from ..io.output_paths import PlannedOutput, check_output_paths

    src = load_bundle(source)
    output = Path(output).expanduser()
    # like every command: never the input, an existing file only with overwrite, no new folders
    check_output_paths([PlannedOutput(output, "the bundle", (".h5",))], [source], overwrite=overwrite)
    m = json.loads(json.dumps(src.manifest))
    m.pop("parts", None)
    m.pop("schema_version", None)
    m["provenance"] = {**(m.get("provenance") or {}), "repacked": {
        "command": list(command) if command is not None else list(sys.argv),
        "from_sha256": src.sha256,
        "from_schema_version": int(src.manifest["schema_version"]),
        "date": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
    }}
    graphs = {name: src.onnx_bytes(name) for name in ("onnx", "onnx_encoder") if f"{name}" in src.manifest["parts"]}
    weights = src.weights()
    path = write_bundle(output, m, onnx=graphs["onnx"], onnx_encoder=graphs.get("onnx_encoder"),
                        weights=weights, reference=src.reference() or None)
    new = load_bundle(path)
    same = all(new.onnx_bytes(k) == v for k, v in graphs.items()) and new.weights().keys() == weights.keys() and all(
        np.array_equal(new.weights()[k], v) and new.weights()[k].dtype == v.dtype for k, v in weights.items())
    if not same:
        raise BundleError(format_error(f"The repacked bundle {path} differs from {source}",
                                       reason="its ONNX graphs or weights are not byte-identical",
                                       fix="report this with the source bundle"))
    return path
