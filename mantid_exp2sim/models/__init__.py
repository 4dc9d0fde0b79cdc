"""Torch networks of mantid-exp2sim (generator, discriminator, PatchNCE heads, ...).

Importing this package does not import torch: the torch modules are loaded on first
attribute access, so ``mantid_exp2sim.models.normalisation`` (numpy only) stays usable in a
torch-free (ONNX Runtime) install. Accessing a torch class without torch installed raises
MissingDependencyError with the install hint.
"""

from __future__ import annotations

from .._lazy import lazy_attributes

# public name -> submodule that defines it; only modules that exist are listed
_LAZY = {
    "ResnetGenerator": "generator",
    "build_generator": "generator",
    "EnergyStackGenerator": "energy_stack_generator",
    "build_energy_stack_generator": "energy_stack_generator",
    "PatchDiscriminator": "discriminator",
    "build_discriminator": "discriminator",
    "PatchSampleMLP": "patchnce",
    "PatchNCELoss": "patchnce",
    "feature_masks": "patchnce",
    "sample_patch_ids": "patchnce",
    "DUQClassifier": "duq",
    "EnergyStackDUQ": "energy_stack",
    "build_energy_stack_duq": "energy_stack",
    "build_duq_classifier": "duq",
    "duq_loss": "duq",
    "gradient_penalty": "duq",
    "GradCAMResult": "gradcam",
    "grad_cam": "gradcam",
    "attribution_map": "gradcam",
    "tile_importance": "gradcam",
}

__all__ = sorted(_LAZY)


def _require_torch(name: str) -> None:
    from ..errors import require

    require("torch", extra="torch", feature=f"mantid_exp2sim.models.{name}")


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals(), before_import=_require_torch)
