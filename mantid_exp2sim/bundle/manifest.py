"""Bundle manifest: schema constants, required keys, validation and :func:`make_manifest`.

Pure Python (no torch, no h5py): the training script builds a manifest with
:func:`make_manifest`, :func:`mantid_exp2sim.bundle.write_bundle` adds ``schema_version`` and
``parts``, and the loader checks it with :func:`validate_manifest`. Every key is described in
docs/bundle-format.md.
"""

from __future__ import annotations

import datetime as _dt
import os
import shlex
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Mapping, Sequence

from .._version import __version__
from ..errors import BundleError, format_error

__all__ = [
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "KINDS",
    "TASKS",
    "DIRECTIONS",
    "REQUIRED_KEYS",
    "OPTIONAL_KEYS",
    "RMS_NORMALISATION",
    "make_manifest",
    "validate_manifest",
    "check_expected",
    "git_commit",
]

SCHEMA_NAME = "mantid-exp2sim-bundle"
#: The newest bundle schema this package reads and the one it writes.
SCHEMA_VERSION = 1

KINDS = ("generator", "classifier")
TASKS = ("deconvolve", "convolve", "classify")
DIRECTIONS = ("exp2sim", "sim2exp")
NDIMS = (2, 3)

#: Keys that must be present and not null.
REQUIRED_KEYS = (
    "schema_version",
    "bundle_id",
    "kind",
    "task",
    "ndim",
    "in_channels",
    "out_channels",
    "architecture",
    "normalisation",
    "patch",
    "provenance",
    "parts",
)
#: Keys that are always present in a written bundle but may be null.
OPTIONAL_KEYS = (
    "direction",
    "expected_axes",
    "layout",
    "classes",
    "thresholds",
    "domain",
    "training",
    "validation",
)

#: The intensity normalisation of models/normalisation.py, as recorded in manifests.
RMS_NORMALISATION = {
    "method": "rms",
    "version": 1,
    "scale": "sqrt(mean(x**2)) over the unmasked (non-NaN) bins of the whole input",
    "input_channels": ["signal / scale, NaN -> 0", "valid mask (1 unmasked, 0 masked)"],
    "output": "y * scale, NaN at masked input bins",
    "pad_mode": "replicate",
}


def git_commit(path: str | os.PathLike | None = None) -> str | None:
    """Commit hash of the git checkout holding ``path`` (default: this package), or None."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit or None


def make_manifest(
    *,
    kind: str,
    task: str,
    model: Any = None,
    ndim: int | None = None,
    architecture: Mapping[str, Any] | None = None,
    halo: int | None = None,
    multiple: int | None = None,
    min_size: int | None = None,
    patch_size: int | Sequence[int] | None = None,
    in_channels: int | None = None,
    out_channels: int | None = None,
    direction: str | None = None,
    normalisation: Mapping[str, Any] | None = None,
    expected_axes: Any = None,
    layout: str | None = None,
    classes: Sequence[str] | None = None,
    thresholds: Mapping[str, Any] | None = None,
    domain: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    validation: Mapping[str, Any] | None = None,
    seed: int | None = None,
    command: Sequence[str] | str | None = None,
    bundle_id: str | None = None,
) -> dict[str, Any]:
    """Build a complete manifest with provenance filled in.

    Parameters
    ----------
    kind, task, direction
        See :data:`KINDS`, :data:`TASKS`, :data:`DIRECTIONS` (direction: generators only).
    model
        Optional network to describe (duck-typed, no torch import): fills ``architecture``
        from ``model.architecture()``, ``ndim``/``in_channels``/``out_channels`` from its
        attributes, ``halo`` from ``model.receptive_field_radius()``, ``multiple`` from
        ``model.spatial_multiple`` and ``min_size`` from ``model.min_spatial_size()`` when
        it has them. Explicit arguments win.
    ndim
        2 or 3.
    architecture
        ``{"name": <registered builder>, "config": <constructor kwargs>}``, e.g.
        ``generator.architecture()``.
    halo, multiple, min_size, patch_size
        Tiling: the receptive-field radius in bins (0 for whole-input models), the spatial
        multiple inputs and tile offsets must respect (default 1), the smallest axis length
        the network accepts (default ``multiple``) and the suggested tile size (None: whole
        input).
    in_channels, out_channels
        Network channels (default 2 and 1).
    normalisation
        Defaults to :data:`RMS_NORMALISATION`.
    expected_axes, layout, classes, thresholds, domain, training, validation
        Free-form, JSON-serialisable descriptions (see docs/bundle-format.md).
    seed
        Training seed, recorded in provenance.
    command
        The command that produced the model (default: ``sys.argv``).
    bundle_id
        Default: ``"{task}-{ndim}d-{UTC time}-{8 hex}"``.

    Returns
    -------
    dict
        Manifest without ``schema_version`` and ``parts`` (added by ``write_bundle``).
    """
    if model is not None:
        if architecture is None and hasattr(model, "architecture"):
            architecture = model.architecture()
        if ndim is None:
            ndim = getattr(model, "ndim", None)
        if in_channels is None:
            in_channels = getattr(model, "in_channels", None)
        if out_channels is None:
            out_channels = getattr(model, "out_channels", None)
        if halo is None and hasattr(model, "receptive_field_radius"):
            halo = model.receptive_field_radius()
        if multiple is None and hasattr(model, "spatial_multiple"):
            multiple = model.spatial_multiple
        if min_size is None and hasattr(model, "min_spatial_size"):
            min_size = model.min_spatial_size()
    if architecture is None or ndim is None:
        raise BundleError(
            format_error(
                "make_manifest needs the architecture and ndim",
                reason=f"architecture={architecture!r}, ndim={ndim!r}",
                fix="pass model=<network with architecture()> or both arguments",
            )
        )
    in_channels = 2 if in_channels is None else in_channels
    out_channels = 1 if out_channels is None else out_channels
    halo = 0 if halo is None else halo
    multiple = 1 if multiple is None else multiple
    min_size = multiple if min_size is None else min_size
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    if command is None:
        command = list(sys.argv)
    elif isinstance(command, str):
        command = shlex.split(command)
    if bundle_id is None:
        bundle_id = f"{task}-{ndim}d-{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"
    manifest = {
        "bundle_id": bundle_id,
        "kind": kind,
        "task": task,
        "direction": direction,
        "ndim": int(ndim),
        "in_channels": int(in_channels),
        "out_channels": int(out_channels),
        "architecture": {"name": architecture["name"], "config": dict(architecture["config"])},
        "normalisation": dict(normalisation if normalisation is not None else RMS_NORMALISATION),
        "patch": {
            "size": patch_size if patch_size is None or isinstance(patch_size, int) else list(patch_size),
            "halo": int(halo),
            "multiple": int(multiple),
            "min_size": int(min_size),
        },
        "expected_axes": expected_axes,
        "layout": layout,
        "classes": list(classes) if classes is not None else None,
        "thresholds": dict(thresholds) if thresholds is not None else None,
        "domain": dict(domain) if domain is not None else None,
        "training": dict(training) if training is not None else None,
        "validation": dict(validation) if validation is not None else None,
        "provenance": {
            "command": [str(c) for c in command],
            "package_version": __version__,
            "git_commit": git_commit(),
            "seed": seed,
            "date": now.isoformat(),
        },
    }
    validate_manifest({**manifest, "schema_version": SCHEMA_VERSION, "parts": {}}, where="the manifest built by make_manifest")
    return manifest


def _fail(where: str, summary: str, reason: str, fix: str) -> BundleError:
    return BundleError(format_error(f"{summary} in {where}", reason=reason, fix=fix))


def validate_manifest(manifest: Mapping[str, Any], *, where: str) -> None:
    """Check keys and the values of the enumerated keys; raise BundleError naming the problem.

    ``where`` names the file or the caller, for the message.
    """
    if not isinstance(manifest, Mapping):
        raise _fail(where, "Bundle manifest is not a JSON object", f"got {type(manifest).__name__}",
                    "re-export the bundle")
    missing = [k for k in REQUIRED_KEYS if manifest.get(k) is None]
    if missing:
        raise _fail(
            where,
            "Bundle manifest lacks required keys",
            f"missing or null: {', '.join(missing)}",
            "re-export the bundle with mantid_exp2sim.bundle.write_bundle and make_manifest",
        )
    checks = (("kind", KINDS), ("task", TASKS), ("ndim", NDIMS))
    for key, allowed in checks:
        if manifest[key] not in allowed:
            raise _fail(
                where,
                f"Bundle manifest has an invalid '{key}'",
                f"{key}={manifest[key]!r}; allowed: {', '.join(map(str, allowed))}",
                "re-export the bundle with a valid value",
            )
    if manifest.get("direction") not in (None, *DIRECTIONS):
        raise _fail(where, "Bundle manifest has an invalid 'direction'",
                    f"direction={manifest['direction']!r}; allowed: null, {', '.join(DIRECTIONS)}",
                    "re-export the bundle with a valid value")
    arch = manifest["architecture"]
    if not isinstance(arch, Mapping) or not isinstance(arch.get("name"), str) or not isinstance(
        arch.get("config"), Mapping
    ):
        raise _fail(where, "Bundle manifest has an invalid 'architecture'",
                    f"architecture={arch!r}; expected {{'name': str, 'config': {{...}}}}",
                    "re-export the bundle")
    patch = manifest["patch"]
    if not isinstance(patch, Mapping) or not all(k in patch for k in ("size", "halo", "multiple")):
        raise _fail(where, "Bundle manifest has an invalid 'patch'",
                    f"patch={patch!r}; expected keys size, halo, multiple", "re-export the bundle")
    if not isinstance(manifest["parts"], Mapping):
        raise _fail(where, "Bundle manifest has an invalid 'parts'",
                    f"parts is a {type(manifest['parts']).__name__}; expected an object",
                    "re-export the bundle")


def check_expected(manifest: Mapping[str, Any], *, where: str, **expected: Any) -> None:
    """Raise BundleError when ``manifest[key] != value`` for any expected key (None = any)."""
    for key, want in expected.items():
        if want is None:
            continue
        have = manifest.get(key)
        if have != want:
            raise BundleError(
                format_error(
                    f"Wrong {key} of model bundle {where}",
                    reason=f"expected {key}={want!r}, the file holds {key}={have!r}",
                    fix=f"pass a bundle made for {key}={want!r} "
                    f"(default bundles: mantid_exp2sim.bundle.default_bundle_path)",
                )
            )
