"""A tiny 2D generator bundle with a real reference bank, for domain-score tests.

The bank holds pooled features of the given samples through the bundle's own encoder graph,
calibrated by ``build_reference_bank``, exactly as ``exp2sim-train export`` builds it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from mantid_exp2sim.histogram import MDHisto


def write_scored_generator(
    folder: Path,
    train: Sequence[MDHisto],
    holdout: Sequence[MDHisto],
    *,
    task: str = "deconvolve",
    seed: int = 7,
    repeats: int = 200,
) -> Path:
    """Write ``folder/{task}_2d.exp2sim.h5``: random weights (``seed``), bank from the samples."""
    import torch

    from mantid_exp2sim.bundle import load_bundle, make_manifest, write_bundle
    from mantid_exp2sim.domain import build_reference_bank
    from mantid_exp2sim.inference import encode_features
    from mantid_exp2sim.models.generator import ResnetGenerator
    from mantid_exp2sim.onnx import EncoderWrapper, export_onnx

    torch.manual_seed(seed)
    net = ResnetGenerator(2, ngf=2, n_blocks=1, n_down=1, stem_kernel=3).eval()
    example = torch.zeros((1, 2, 8, 8))
    onnx = export_onnx(net, example, exporter="torchscript")
    encoder = export_onnx(EncoderWrapper(net), example, exporter="torchscript")
    direction = {"deconvolve": "exp2sim", "convolve": "sim2exp"}[task]
    manifest = make_manifest(kind="generator", task=task, model=net, direction=direction, patch_size=24,
                             seed=0, command="pytest scored generator")
    prelim = load_bundle(write_bundle(Path(folder) / f".{task}_prelim.h5", manifest, onnx=onnx,
                                      onnx_encoder=encoder, weights=net.state_dict()))
    arrays, calibration = build_reference_bank(encode_features(list(train), prelim),
                                               encode_features(list(holdout), prelim), seed=0, repeats=repeats)
    manifest["domain"] = calibration
    return write_bundle(Path(folder) / f"{task}_2d.exp2sim.h5", manifest, onnx=onnx, onnx_encoder=encoder,
                        weights=net.state_dict(), reference=arrays)
