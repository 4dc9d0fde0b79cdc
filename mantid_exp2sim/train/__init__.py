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

from .._lazy import lazy_attributes

_LAZY = {
    "GanConfig": "config",
    "PRESETS": "config",
    "GanTrainer": "gan",
    "export_bundle": "export",
    "main": "cli",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())
