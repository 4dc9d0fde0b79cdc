"""Training: ``exp2sim-train`` (GAN generators, export to bundles, DUQ classifier).

Modules: :mod:`.config` (settings, presets, generated command-line options), :mod:`.data`
(sources, unpaired split, the classifier's labelled spectra), :mod:`.patches` (GAN patch
sampler), :mod:`.losses` (masked loss terms), :mod:`.gan` (the GAN training loop),
:mod:`.classifier` (the classifier training loop), :mod:`.augment` (the classifier's
augmentation), :mod:`.checkpoint`, :mod:`.metrics` (PSNR, SSIM, Frechet distance),
:mod:`.logging_utils` (CSV, plots), :mod:`.distributed` (torchrun plumbing), :mod:`.export`
(checkpoint or classifier -> bundle), :mod:`.cli`. Importing this package imports no torch;
the modules that need it do.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "GanConfig": "config",
    "PRESETS": "config",
    "GanTrainer": "gan",
    "export_bundle": "export",
    "main": "cli",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
