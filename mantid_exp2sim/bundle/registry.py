"""Registry of architecture builders: ``manifest["architecture"]["name"]`` -> torch module.

Builders are stored as ``"module:function"`` strings (or callables) so this module imports
nothing heavy; the builder is imported only by :meth:`Bundle.build_torch_model`. A builder
takes the ``architecture["config"]`` mapping and returns an ``nn.Module``.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping

from ..errors import BundleError, format_error

__all__ = ["register_architecture", "get_builder", "registered_architectures"]

_BUILDERS: dict[str, str | Callable[[Mapping[str, Any]], Any]] = {
    "ResnetGenerator": "mantid_exp2sim.models.generator:build_generator",
    "EnergyStackGenerator": "mantid_exp2sim.models.energy_stack_generator:build_energy_stack_generator",
    "PatchDiscriminator": "mantid_exp2sim.models.discriminator:build_discriminator",
    "DUQClassifier": "mantid_exp2sim.models.duq:build_duq_classifier",
    "ParameterRegressor": "mantid_exp2sim.models.regressor:build_regressor",
    "EnergyStackDUQ": "mantid_exp2sim.models.energy_stack:build_energy_stack_duq",
}


def register_architecture(
    name: str, builder: str | Callable[[Mapping[str, Any]], Any], *, overwrite: bool = False
) -> None:
    """Register ``builder`` (callable or ``"package.module:function"``) under ``name``."""
    if name in _BUILDERS and not overwrite and _BUILDERS[name] != builder:
        raise ValueError(
            format_error(
                f"Architecture '{name}' is already registered",
                reason=f"registered builder: {_BUILDERS[name]!r}",
                fix="pick another name or pass overwrite=True",
            )
        )
    if isinstance(builder, str) and ":" not in builder:
        raise ValueError(
            format_error(
                "Invalid builder reference",
                reason=f"builder={builder!r}; expected 'package.module:function'",
            )
        )
    _BUILDERS[name] = builder


def registered_architectures() -> list[str]:
    """Names that :func:`get_builder` resolves."""
    return sorted(_BUILDERS)


def get_builder(name: str) -> Callable[[Mapping[str, Any]], Any]:
    """Resolve a registered builder (imports its module on first use)."""
    if name not in _BUILDERS:
        raise BundleError(
            format_error(
                f"Unknown architecture '{name}' in the bundle manifest",
                reason=f"this package knows: {', '.join(registered_architectures())}",
                fix="upgrade mantid-exp2sim, or register a builder with "
                "mantid_exp2sim.bundle.register_architecture",
            )
        )
    builder = _BUILDERS[name]
    if isinstance(builder, str):
        mod, _, attr = builder.partition(":")
        builder = getattr(importlib.import_module(mod), attr)
    return builder
