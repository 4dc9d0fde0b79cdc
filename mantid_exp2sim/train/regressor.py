"""``exp2sim-train regressor``: train a parameter-estimation network for one spin model, export its bundle.

Data: ``exp2sim-simulate`` mosaic data sets (``--train``), the group of ``--model`` only: its
noise-free **convolved** spectra and their parameters. Every time a training spectrum is
used it is made measured-like afresh (:func:`mantid_exp2sim.simulate.nuisance_sampling.draw_measured_like`:
per-Ei scale, count level, background, residual background and mask drawn around the
calibrated PCSMO chain, then counting noise, background subtraction, clipping at 0 and 120),
so the network never sees the same noisy input twice and learns to read through the
nuisances. The held-out spectra (``--val-fraction``) get one fixed draw each (seeded).

Inputs are scale-free (each spectrum over the RMS of its unmasked bins, the classifier's
normalisation); targets are the parameters normalised to the model's sampling ranges.
Loss: Gaussian negative log-likelihood of a mean and ``log sigma`` head per parameter
(:class:`mantid_exp2sim.models.regressor.ParameterRegressor`). Adam with a cosine schedule;
the weights of the best held-out epoch (lowest held-out NLL) are kept.

Calibration: after training, per parameter ``sigma_scale = sqrt(mean(z^2))`` of the held-out
standardised errors ``z = (t - mu) / sigma``; the bundle's ``regression.sigma_scale`` then
multiplies the network's sigma, so its 1-sigma intervals hold about 68 % of held-out truths.

Export: kind ``regressor``, task ``regress``; the ONNX graph checked against PyTorch, the
weights, ``regression`` (model, parameter names, ranges, sigma_scale), the held-out
metrics, and the exact command.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import InputDataError, format_error

__all__ = ["get_parser", "main", "train_regressor", "export_regressor", "MeasuredLikeInputs"]


class MeasuredLikeInputs:
    """Measured-like, scale-free network inputs of noise-free convolved mosaics, drawn on the fly.

    Parameters
    ----------
    shape
        The mosaic shape (the measured mask is loaded once for it).
    """

    def __init__(self, shape: tuple[int, int]) -> None:
        from ..simulate.measured_like import PCSMO_MEASURED_LIKE

        mask, source = PCSMO_MEASURED_LIKE.mask_array(shape)
        # the mask array is loaded once; "kinematic" draws use the data's own NaN (kinematic) mask
        self.base = replace(PCSMO_MEASURED_LIKE, mask=mask) if mask is not None else PCSMO_MEASURED_LIKE
        self.mask_source = source

    def draw(self, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One measured-like draw of every mosaic of ``clean`` ``(N, H, W)``, as network input ``(N, 2, H, W)``."""
        from ..simulate.nuisance_sampling import draw_measured_like
        from .data import normalised_batch

        out = np.empty(clean.shape, dtype=np.float64)
        for j, s in enumerate(clean):
            chain = draw_measured_like(rng, base=self.base)
            if isinstance(chain.mask, str) and chain.mask == "kinematic":
                chain = replace(chain, mask="none")
            out[j] = chain.apply(s, rng)
        return normalised_batch(out)


def _load(paths: Sequence[str], model: str, max_samples: int | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from ..simulate.dataset import SpectraDataset

    clean, params, names = [], [], None
    for path in paths:
        try:
            ds = SpectraDataset(path, kind="convolved", models=[model])
        except InputDataError:
            raise
        except Exception as exc:  # noqa: BLE001 - one clear line for any unreadable file
            raise InputDataError(format_error(f"Cannot read --train {path}", reason=str(exc).splitlines()[0],
                                              fix="pass exp2sim-simulate mosaic data sets")) from None
        with ds:
            for i in range(len(ds)):
                p = ds.parameters(i)
                if names is None:
                    names = list(p)
                clean.append(ds.read(i).astype(np.float32))
                params.append([p[n] for n in names])
                if max_samples is not None and len(clean) >= max_samples:
                    break
        if max_samples is not None and len(clean) >= max_samples:
            break
    if not clean or names is None:
        raise InputDataError(format_error(f"No {model!r} spectra in --train", reason=f"files: {list(paths)}",
                                          fix=f"simulate some with exp2sim-simulate --models {model}"))
    return np.stack(clean), np.asarray(params, dtype=float), names


def train_regressor(train: Sequence[str], model: str, *, epochs: int = 40, batch_size: int = 16, lr: float = 2e-3,
                    weight_decay: float = 1e-4, val_fraction: float = 0.1, seed: int = 0, widths: Sequence[int] = (16, 32, 32),
                    hidden: int = 128, max_samples: int | None = None, max_minutes: float | None = None,
                    threads: int | None = 1, log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Train a :class:`~mantid_exp2sim.models.regressor.ParameterRegressor` for ``model``.

    Parameters
    ----------
    train
        ``exp2sim-simulate`` mosaic files holding a group for ``model``.
    model
        Spin-model name.
    epochs, batch_size, lr, weight_decay
        Optimisation (Adam, cosine schedule over ``epochs``).
    val_fraction
        Held-out fraction (at least 2 samples).
    seed
        Seed of the split, the initialisation and every measured-like draw.
    widths, hidden
        Network size.
    max_samples
        Use at most this many spectra.
    max_minutes
        Stop after the epoch that passes this wall time.
    threads
        Torch CPU threads.
    log
        Progress messages (None: quiet).

    Returns
    -------
    dict
        ``model`` (the network, eval mode, best held-out epoch), ``names``, ``ranges``,
        ``sigma_scale``, ``history``, ``holdout`` (metrics), ``data``, ``seconds``.
    """
    import torch

    from ..models.regressor import ParameterRegressor, gaussian_nll
    from ..simulate import get_model

    say = log or (lambda _m: None)
    try:
        spin = get_model(model)
    except Exception as exc:  # noqa: BLE001
        raise InputDataError(format_error(f"Unknown model {model!r}", reason=str(exc).splitlines()[0])) from None
    if threads:
        torch.set_num_threads(int(threads))
    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 1])
    clean, params, names = _load(list(train), model, max_samples)
    if list(names) != list(spin.parameter_names):
        raise InputDataError(format_error("The data set's parameters are not the model's",
                                          reason=f"{names} vs {list(spin.parameter_names)}"))
    lo = np.array([spin.ranges[n][0] for n in names], dtype=float)
    hi = np.array([spin.ranges[n][1] for n in names], dtype=float)
    target = ((params - lo) / (hi - lo)).astype(np.float32)
    n = len(clean)
    n_val = max(2, int(round(val_fraction * n)))
    if n - n_val < 2:
        raise InputDataError(format_error("Too few spectra to train", reason=f"{n} spectra, {n_val} held out",
                                          fix="simulate more (hundreds per model)"))
    order = rng.permutation(n)
    va, tr = np.sort(order[:n_val]), np.sort(order[n_val:])
    inputs = MeasuredLikeInputs(clean.shape[1:])
    x_val = torch.from_numpy(inputs.draw(clean[va], np.random.default_rng([seed, 2])))
    t_val = torch.from_numpy(target[va])
    net = ParameterRegressor(len(names), clean.shape[1:], widths=widths, hidden=hidden)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    steps = max(1, epochs * math.ceil(len(tr) / batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    say(f"regressor {model}: {len(tr)} training / {len(va)} held-out spectra, {len(names)} parameters, "
        f"{sum(p.numel() for p in net.parameters())} weights; measured-like draws ({inputs.mask_source})")

    def evaluate() -> tuple[float, np.ndarray]:
        net.eval()
        with torch.no_grad():
            out = torch.cat([net(x_val[k:k + 32]) for k in range(0, len(x_val), 32)])
        return float(gaussian_nll(out, t_val)), out.numpy()

    history: list[dict[str, float]] = []
    best: tuple[float, dict[str, Any]] | None = None
    t0 = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        perm = tr[rng.permutation(len(tr))]
        total = 0.0
        for s in range(0, len(perm), batch_size):
            idx = perm[s:s + batch_size]
            if len(idx) < 2:  # batch normalisation needs two samples
                continue
            x = torch.from_numpy(inputs.draw(clean[idx], rng))
            loss = gaussian_nll(net(x), torch.from_numpy(target[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        val_nll, out = evaluate()
        mae = np.mean(np.abs(out[:, 0] - target[va]), axis=0)
        row = {"epoch": epoch + 1, "train_nll": total / len(tr), "val_nll": val_nll,
               "val_mae_normalised": float(mae.mean()), "seconds": time.perf_counter() - t0}
        history.append(row)
        say(f"epoch {epoch + 1}/{epochs}: train NLL {row['train_nll']:.3f}, held-out NLL {val_nll:.3f}, "
            f"held-out MAE {row['val_mae_normalised']:.4f} of the ranges, {row['seconds']:.0f} s")
        if best is None or val_nll < best[0]:
            best = (val_nll, {k: v.detach().clone() for k, v in net.state_dict().items()})
        if max_minutes is not None and row["seconds"] > 60.0 * max_minutes:
            say(f"stopping after epoch {epoch + 1}: --max-minutes {max_minutes:g} reached")
            break
    assert best is not None
    net.load_state_dict(best[1])
    _, out = evaluate()
    mu, sig = out[:, 0], np.exp(out[:, 1])
    z = (target[va] - mu) / sig
    sigma_scale = np.sqrt(np.mean(z ** 2, axis=0))
    err_phys = np.abs(mu - target[va]) * (hi - lo)
    holdout = {
        "n": int(len(va)),
        "nll": float(best[0]),
        "median_abs_error": {k: float(v) for k, v in zip(names, np.median(err_phys, axis=0))},
        "coverage_1sigma_raw": {k: float(v) for k, v in zip(names, np.mean(np.abs(z) <= 1, axis=0))},
        "coverage_1sigma_calibrated": {k: float(v) for k, v in zip(names, np.mean(np.abs(z) <= sigma_scale, axis=0))},
    }
    say("held-out median |error|: " + ", ".join(f"{k} {v:.3g}" for k, v in holdout["median_abs_error"].items()))
    return {"model": net.eval(), "names": names, "ranges": np.stack([lo, hi], 1).tolist(),
            "sigma_scale": [float(v) for v in sigma_scale], "history": history, "holdout": holdout,
            "data": {"files": [str(p) for p in train], "kind": "convolved (made measured-like on the fly)",
                     "model": model, "n_train": int(len(tr)), "n_holdout": int(len(va)),
                     "measured_like": "simulate.nuisance_sampling.draw_measured_like around PCSMO_MEASURED_LIKE",
                     "mask": inputs.mask_source},
            "seconds": time.perf_counter() - t0}


def export_regressor(net: Any, path: str | Path, *, model: str, names: Sequence[str], ranges: Sequence[Sequence[float]],
                     sigma_scale: Sequence[float] | None = None, training: dict[str, Any] | None = None,
                     validation: dict[str, Any] | None = None, seed: int | None = None,
                     command: Sequence[str] | None = None, exporter: str = "auto", tolerance: float = 1e-4,
                     overwrite: bool = True) -> Path:
    """Write a regressor bundle (ONNX graph checked against PyTorch, weights, ``regression``, provenance).

    Parameters
    ----------
    net
        A trained :class:`~mantid_exp2sim.models.regressor.ParameterRegressor`.
    path
        Bundle file (``*.exp2sim.h5``), written atomically.
    model, names, ranges
        The spin model, its parameter names in output order and their ``[lo, hi]`` ranges.
    sigma_scale
        Per-parameter calibration of the network's sigma (default 1).
    training, validation
        Free-form descriptions for the manifest.
    seed, command
        Provenance.
    exporter
        ONNX exporter (:func:`mantid_exp2sim.onnx.export_onnx`).
    tolerance
        Largest allowed ONNX-vs-PyTorch difference of the outputs.
    overwrite
        Whether an existing file may be replaced.

    Raises
    ------
    BundleError
        The ONNX graph disagrees with PyTorch, or the description is inconsistent.
    OutputPathError
        ``path`` cannot be written (or exists without ``overwrite``).
    """
    import torch

    from ..bundle import make_manifest, write_bundle
    from ..errors import BundleError
    from ..io.output_paths import PlannedOutput, check_output_paths
    from ..mosaic import LAYOUT, mosaic_axes
    from ..onnx import export_onnx, verify_onnx

    path = Path(path).expanduser()
    check_output_paths([PlannedOutput(path, "the bundle", (".h5",))], [], overwrite=overwrite)
    if len(names) != net.n_params or len(ranges) != net.n_params:
        raise BundleError(format_error("Parameter names or ranges do not match the network",
                                       reason=f"{len(names)} names, {len(ranges)} ranges, {net.n_params} outputs"))
    net = net.eval()
    gen = torch.Generator().manual_seed(0)
    example = torch.rand((2, 2, *net.input_shape), generator=gen)
    example[:, 1] = 1.0
    blob = export_onnx(net, example, dynamic_spatial=False, output_names=["estimate"], exporter=exporter)
    check = torch.rand((3, 2, *net.input_shape), generator=gen)
    check[:, 1] = (check[:, 1] > 0.2).float()
    check[:, 0] *= check[:, 1]
    diff = verify_onnx(blob, net, [check])
    if not diff <= tolerance:
        raise BundleError(format_error("The exported ONNX regressor disagrees with PyTorch",
                                       reason=f"max |ONNX - torch| = {diff:.3g} > {tolerance:g}",
                                       fix="report this; try --exporter torchscript"))
    regression = {"model": str(model), "parameters": [str(n) for n in names],
                  "ranges": [[float(a), float(b)] for a, b in ranges],
                  "sigma_scale": None if sigma_scale is None else [float(v) for v in sigma_scale],
                  "output": "estimate[:, 0] = (theta - lo) / (hi - lo); estimate[:, 1] = log sigma (same units), "
                            "sigma to be multiplied by sigma_scale"}
    manifest = make_manifest(
        kind="regressor", task="regress", ndim=2, architecture=net.architecture(), halo=0, multiple=1,
        patch_size=None, in_channels=2, out_channels=net.n_params,
        expected_axes=[a.to_dict() for a in mosaic_axes(tuple(net.input_shape))], layout=LAYOUT,
        training=training, validation={**(validation or {}), "onnx_max_abs_diff": float(diff)},
        seed=seed, command=list(command) if command is not None else None, regression=regression,
        bundle_id=None)
    return write_bundle(path, manifest, onnx=blob, weights=net.state_dict())


# ---------------------------------------------------------------------------------- CLI
def get_parser() -> argparse.ArgumentParser:
    """The ``exp2sim-train regressor`` argument parser."""
    p = argparse.ArgumentParser(
        prog="exp2sim-train regressor",
        description="Train a parameter-estimation network (spectrum -> one spin model's parameters with "
        "per-parameter uncertainty) on exp2sim-simulate mosaic data sets made measured-like on the fly, "
        "and export a regressor bundle.")
    p.add_argument("--train", nargs="+", required=True, metavar="FILE", help="exp2sim-simulate mosaic data sets")
    p.add_argument("--model", required=True, help="spin model whose parameters the network estimates")
    p.add_argument("--out", required=True, metavar="BUNDLE", help="bundle to write (*.exp2sim.h5)")
    p.add_argument("--epochs", type=int, default=40, help="training epochs (default 40)")
    p.add_argument("--batch-size", type=int, default=16, help="spectra per step (default 16)")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default 2e-3)")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="Adam weight decay (default 1e-4)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="held-out fraction (default 0.1)")
    p.add_argument("--widths", type=int, nargs=3, default=[16, 32, 32], help="convolution widths (default 16 32 32)")
    p.add_argument("--hidden", type=int, default=128, help="hidden linear width (default 128)")
    p.add_argument("--max-samples", type=int, default=None, help="use at most this many spectra")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after the epoch that passes this time")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of split, initialisation and draws (default 0)")
    p.add_argument("--exporter", choices=["auto", "dynamo", "torchscript"], default="torchscript",
                   help="ONNX exporter (default torchscript)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle at --out")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``exp2sim-train regressor``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    ns = get_parser().parse_args(argv)
    log = None if ns.quiet else (lambda msg: print(msg, flush=True))
    try:
        from ..errors import require
        from ..io.output_paths import PlannedOutput, check_output_paths

        require("torch", extra="train", feature="exp2sim-train regressor")
        if ns.epochs < 1 or ns.batch_size < 2 or not 0.0 < ns.val_fraction < 1.0:
            raise InputDataError(format_error("Invalid training options",
                                              reason=f"--epochs {ns.epochs}, --batch-size {ns.batch_size}, "
                                              f"--val-fraction {ns.val_fraction}",
                                              fix="--epochs >= 1, --batch-size >= 2, 0 < --val-fraction < 1"))
        check_output_paths([PlannedOutput(Path(ns.out).expanduser(), "the bundle", (".h5",))], ns.train,
                           overwrite=ns.overwrite)
        res = train_regressor(ns.train, ns.model, epochs=ns.epochs, batch_size=ns.batch_size, lr=ns.lr,
                              weight_decay=ns.weight_decay, val_fraction=ns.val_fraction, seed=ns.seed,
                              widths=ns.widths, hidden=ns.hidden, max_samples=ns.max_samples,
                              max_minutes=ns.max_minutes, threads=ns.threads, log=log)
        settings = {k: v for k, v in vars(ns).items() if k not in ("quiet",)}
        path = export_regressor(
            res["model"], ns.out, model=ns.model, names=res["names"], ranges=res["ranges"],
            sigma_scale=res["sigma_scale"],
            training={**res["data"], "settings": settings, "epochs_run": len(res["history"]),
                      "seconds": round(res["seconds"], 1)},
            validation={"holdout": res["holdout"], "history": res["history"]},
            seed=ns.seed, command=["exp2sim-train", "regressor", *argv], exporter=ns.exporter,
            overwrite=ns.overwrite)
    except Exception as exc:  # noqa: BLE001 - one line, no traceback
        from .._console import failure_line

        print(f"exp2sim-train regressor: error: {failure_line(exc)}", file=sys.stderr)
        return 1
    if log:
        log(f"wrote {path}")
        log(json.dumps({"bundle": str(path), "holdout_median_abs_error": res["holdout"]["median_abs_error"],
                        "sigma_scale": res["sigma_scale"]}))
    return 0
