"""Bundle manifest: schema constants, required keys, validation and :func:`make_manifest`.

Pure Python (no torch, no h5py): the training script builds a manifest with
:func:`make_manifest`, :func:`mantid_exp2sim.bundle.write_bundle` adds ``schema_version`` and
``parts``, and the loader checks it with :func:`validate_manifest`. Every key is described in
docs/bundle-format.md.
"""

from __future__ import annotations

import datetime as _dt
import math
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
    "NDIMS",
    "LAYOUTS",
    "NORMALISATION_METHODS",
    "PAD_MODES",
    "REQUIRED_KEYS",
    "OPTIONAL_KEYS",
    "RMS_NORMALISATION",
    "make_manifest",
    "validate_manifest",
    "check_expected",
    "git_commit",
]

SCHEMA_NAME = "mantid-exp2sim-bundle"
#: The newest bundle schema this package reads and the one it writes (2: ONNX initializers
#: equal to a weights part are stored once, docs/bundle-format.md; 1 is still read).
SCHEMA_VERSION = 2

KINDS = ("generator", "classifier", "regressor")
TASKS = ("deconvolve", "convolve", "classify", "regress")
DIRECTIONS = ("exp2sim", "sim2exp")
NDIMS = (2, 3)
#: The tasks each kind of bundle can have.
TASKS_OF_KIND = {"generator": ("deconvolve", "convolve"), "classifier": ("classify",), "regressor": ("regress",)}
#: A generator's direction follows from its task (``direction`` may also be null).
DIRECTION_OF_TASK = {"deconvolve": "exp2sim", "convolve": "sim2exp"}
#: Network input channels: the scaled signal and the valid mask (models/normalisation.py).
IN_CHANNELS = 2
#: ``normalisation.method`` / ``.version`` values this version implements.
NORMALISATION_METHODS = ("rms",)
NORMALISATION_VERSIONS = (1,)
#: ``normalisation.pad_mode`` values (the inference engine maps each to a numpy pad mode).
PAD_MODES = ("replicate", "reflect", "edge", "zeros", "constant")
#: Keys of ``normalisation`` and ``patch`` (anything else would be a setting this version ignores).
NORMALISATION_KEYS = ("method", "version", "scale", "input_channels", "output", "pad_mode")
PATCH_KEYS = ("size", "halo", "multiple", "min_size")
#: Input layouts a classifier may declare (the classifier builds its input in this layout).
LAYOUTS = ("pcsmo-mosaic-v1",)
#: Cost metrics of the domain-of-applicability score (``domain.metric``).
DOMAIN_METRICS = ("sqeuclidean", "euclidean")

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
    "regression",
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
    regression: Mapping[str, Any] | None = None,
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
    regression
        Regressors only: ``model`` (spin-model name), ``parameters`` (names in output
        order), ``ranges`` (``[lo, hi]`` per parameter: the outputs are normalised to them)
        and optional ``sigma_scale`` (per-parameter factor calibrating the network's sigma).
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
        "regression": dict(regression) if regression is not None else None,
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


_FIELD_FIX = (
    "re-export the bundle with exp2sim-train (or, if a newer mantid-exp2sim wrote it, upgrade: "
    "pip install --upgrade mantid-exp2sim)"
)


def _describe(accepted: Sequence[Any] | str) -> str:
    if isinstance(accepted, str):
        return accepted
    return ", ".join("null" if a is None else repr(a) for a in accepted)


def _invalid(where: str, name: str, value: Any, accepted: Sequence[Any] | str, fix: str = _FIELD_FIX) -> BundleError:
    """The error for a manifest field whose value this version does not understand."""
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return _fail(
        where,
        f"Bundle manifest has an invalid '{name}'",
        f"{name} = {shown}; mantid-exp2sim {__version__} accepts {_describe(accepted)}",
        fix,
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_int(where: str, name: str, value: Any, minimum: int) -> None:
    if not _is_int(value) or value < minimum:
        raise _invalid(where, name, value, f"a whole number >= {minimum}")


def _check_keys(where: str, name: str, value: Mapping[str, Any], known: Sequence[str]) -> None:
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise _fail(
            where,
            f"Bundle manifest has an unknown key '{name}.{unknown[0]}'",
            f"{name} has {', '.join(repr(k) for k in unknown)}, which mantid-exp2sim {__version__} does "
            f"not understand; it knows {', '.join(known)}",
            _FIELD_FIX,
        )


def _check_choice(where: str, name: str, value: Any, accepted: Sequence[Any]) -> None:
    if isinstance(value, bool) or not any(value == a and type(value) is type(a) for a in accepted):
        raise _invalid(where, name, value, accepted)


def validate_manifest(manifest: Mapping[str, Any], *, where: str) -> None:
    """Check a manifest: required keys, and every field that changes behaviour.

    Every value that changes what the package does with the bundle is checked against the
    values this version understands (:data:`KINDS`, :data:`TASKS`, :data:`NDIMS`,
    :data:`DIRECTIONS`, :data:`NORMALISATION_METHODS`, :data:`PAD_MODES`, :data:`LAYOUTS`, ...),
    and the keys of ``normalisation`` and ``patch`` against the keys it knows. Descriptive
    fields (``provenance``, ``training``, ``validation``, ``expected_axes``) are only checked
    for their type. Unknown top-level keys are ignored (they cannot change the behaviour of
    this version).

    Parameters
    ----------
    manifest
        The manifest (a JSON object).
    where
        The file or the caller, for the message.

    Raises
    ------
    BundleError
        Naming the field, its value, the accepted values and the fix.
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
    _check_int(where, "schema_version", manifest["schema_version"], 1)
    if not isinstance(manifest["bundle_id"], str) or not manifest["bundle_id"].strip():
        raise _invalid(where, "bundle_id", manifest["bundle_id"], "a non-empty string")
    for key, allowed in (("kind", KINDS), ("task", TASKS), ("ndim", NDIMS)):
        _check_choice(where, key, manifest[key], allowed)
    kind, task, ndim = manifest["kind"], manifest["task"], manifest["ndim"]
    if task not in TASKS_OF_KIND[kind]:
        raise _invalid(where, "task", task, f"{_describe(TASKS_OF_KIND[kind])} for a {kind} bundle")
    direction = manifest.get("direction")
    if kind == "generator":
        _check_choice(where, "direction", direction, (None, DIRECTION_OF_TASK[task]))
    else:
        _check_choice(where, "direction", direction, (None,))

    _check_choice(where, "in_channels", manifest["in_channels"], (IN_CHANNELS,))
    classes = manifest.get("classes")
    if kind == "classifier":
        if (not isinstance(classes, list) or len(classes) < 2
                or not all(isinstance(c, str) and c.strip() for c in classes) or len(set(classes)) != len(classes)):
            raise _invalid(where, "classes", classes, "a list of at least 2 distinct, non-empty class names")
        _check_choice(where, "out_channels", manifest["out_channels"], (len(classes),))
    elif kind == "regressor":
        _validate_regression(manifest.get("regression"), where)
        _check_choice(where, "out_channels", manifest["out_channels"], (len(manifest["regression"]["parameters"]),))
    else:
        _check_choice(where, "out_channels", manifest["out_channels"], (1,))

    arch = manifest["architecture"]
    if not isinstance(arch, Mapping) or not isinstance(arch.get("name"), str) or not arch["name"] or not isinstance(
        arch.get("config"), Mapping
    ):
        raise _fail(where, "Bundle manifest has an invalid 'architecture'",
                    f"architecture={arch!r}; expected {{'name': str, 'config': {{...}}}}",
                    "re-export the bundle")
    config = arch["config"]
    for key, want in (("ndim", ndim), ("in_channels", manifest["in_channels"]),
                      ("out_channels", manifest["out_channels"]), ("n_classes", manifest["out_channels"])):
        if key in config and not (key == "out_channels" and kind in ("classifier", "regressor")):
            _check_choice(where, f"architecture.config.{key}", config[key], (want,))

    _validate_normalisation(manifest["normalisation"], where)
    _validate_patch(manifest["patch"], ndim, where)

    layout = manifest.get("layout")
    if kind == "classifier":
        _check_choice(where, "layout", layout, (None, *LAYOUTS))
    elif layout is not None and not isinstance(layout, str):
        raise _invalid(where, "layout", layout, "null or a layout name such as " + _describe(LAYOUTS))
    if kind == "classifier":
        _validate_thresholds(manifest.get("thresholds"), where)
    if manifest.get("domain") is not None:
        _validate_domain(manifest["domain"], where)

    for key in ("provenance", "parts"):
        if not isinstance(manifest[key], Mapping):
            raise _fail(where, f"Bundle manifest has an invalid '{key}'",
                        f"{key} is a {type(manifest[key]).__name__}; expected an object", "re-export the bundle")
    for key in ("training", "validation"):
        if manifest.get(key) is not None and not isinstance(manifest[key], Mapping):
            raise _invalid(where, key, manifest[key], "null or an object")
    if manifest.get("expected_axes") is not None and not (
        isinstance(manifest["expected_axes"], list) and all(isinstance(a, Mapping) for a in manifest["expected_axes"])
    ):
        raise _invalid(where, "expected_axes", manifest["expected_axes"], "null or a list of axis objects")


def _validate_normalisation(norm: Any, where: str) -> None:
    if not isinstance(norm, Mapping):
        raise _invalid(where, "normalisation", norm, "an object such as " + repr({"method": "rms", "version": 1}))
    _check_keys(where, "normalisation", norm, NORMALISATION_KEYS)
    _check_choice(where, "normalisation.method", norm.get("method"), NORMALISATION_METHODS)
    _check_choice(where, "normalisation.version", norm.get("version"), NORMALISATION_VERSIONS)
    if "pad_mode" in norm:
        _check_choice(where, "normalisation.pad_mode", norm["pad_mode"], PAD_MODES)


def _validate_patch(patch: Any, ndim: int, where: str) -> None:
    if not isinstance(patch, Mapping) or not all(k in patch for k in ("size", "halo", "multiple")):
        raise _fail(where, "Bundle manifest has an invalid 'patch'",
                    f"patch={patch!r}; expected keys size, halo, multiple", "re-export the bundle")
    _check_keys(where, "patch", patch, PATCH_KEYS)
    _check_int(where, "patch.halo", patch["halo"], 0)
    _check_int(where, "patch.multiple", patch["multiple"], 1)
    if patch.get("min_size") is not None:
        _check_int(where, "patch.min_size", patch["min_size"], 1)
    size = patch["size"]
    if size is None or (_is_int(size) and size >= 1):
        return
    if not (isinstance(size, list) and len(size) == ndim and all(_is_int(v) and v >= 1 for v in size)):
        raise _invalid(where, "patch.size", size,
                       f"null, a whole number >= 1 or a list of {ndim} whole numbers >= 1 (one per axis)")


def _validate_thresholds(thresholds: Any, where: str) -> None:
    need = "an object with the numbers 0 <= out_of_distribution <= confident <= 1"
    if not isinstance(thresholds, Mapping):
        raise _invalid(where, "thresholds", thresholds, need)
    for key in ("confident", "out_of_distribution"):
        value = thresholds.get(key)
        if not _is_number(value) or not 0.0 <= value <= 1.0:
            raise _invalid(where, f"thresholds.{key}", value, "a number from 0 to 1 (a DUQ kernel value)")
    if thresholds["out_of_distribution"] > thresholds["confident"]:
        raise _invalid(where, "thresholds.out_of_distribution", thresholds["out_of_distribution"],
                       f"a value <= thresholds.confident = {thresholds['confident']!r}")


def _validate_regression(reg: Any, where: str) -> None:
    """A regressor's ``regression``: its model, parameter names and ranges (and sigma calibration)."""
    need = "an object with model (a name), parameters (distinct names) and ranges ([lo, hi] per parameter)"
    if not isinstance(reg, Mapping):
        raise _invalid(where, "regression", reg, need)
    names = reg.get("parameters")
    if not isinstance(reg.get("model"), str) or not reg["model"].strip():
        raise _invalid(where, "regression.model", reg.get("model"), "a spin-model name")
    if (not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names)
            or len(set(names)) != len(names)):
        raise _invalid(where, "regression.parameters", names, "a list of distinct parameter names")
    ranges = reg.get("ranges")
    if not (isinstance(ranges, list) and len(ranges) == len(names) and all(
            isinstance(r, list) and len(r) == 2 and all(_is_number(v) for v in r) and r[0] < r[1] for r in ranges)):
        raise _invalid(where, "regression.ranges", ranges, f"{len(names)} pairs [lo, hi] with lo < hi")
    scale = reg.get("sigma_scale")
    if scale is not None and not (isinstance(scale, list) and len(scale) == len(names)
                                  and all(_is_number(v) and v > 0 for v in scale)):
        raise _invalid(where, "regression.sigma_scale", scale, f"null or {len(names)} numbers > 0")


def _validate_domain(domain: Any, where: str) -> None:
    if not isinstance(domain, Mapping):
        raise _invalid(where, "domain", domain, "null or an object (the reference-bank calibration)")
    if "metric" in domain:
        _check_choice(where, "domain.metric", domain["metric"], DOMAIN_METRICS)
    if "n_reference" in domain:
        _check_int(where, "domain.n_reference", domain["n_reference"], 1)
    if "seed" in domain:
        _check_int(where, "domain.seed", domain["seed"], 0)
    if "trust_percentile" in domain and not (
        _is_number(domain["trust_percentile"]) and 0.0 < domain["trust_percentile"] <= 100.0
    ):
        raise _invalid(where, "domain.trust_percentile", domain["trust_percentile"], "a number in (0, 100]")
    if "untrust_sigma" in domain and not (_is_number(domain["untrust_sigma"]) and domain["untrust_sigma"] > 0):
        raise _invalid(where, "domain.untrust_sigma", domain["untrust_sigma"], "a number > 0")
    table = domain.get("thresholds")
    if table is None:
        return
    if not isinstance(table, Mapping):
        raise _invalid(where, "domain.thresholds", table, "an object: input-set size -> zone thresholds")
    for size, zone in table.items():
        name = f"domain.thresholds.{size}"
        if not (isinstance(size, str) and size.isdigit() and int(size) >= 1):
            raise _invalid(where, "domain.thresholds", size, "input-set sizes written as whole numbers >= 1")
        if not isinstance(zone, Mapping):
            raise _invalid(where, name, zone, "an object with the numbers trustworthy <= untrustworthy")
        for key in ("trustworthy", "untrustworthy"):
            if not _is_number(zone.get(key)) or zone[key] < 0:
                raise _invalid(where, f"{name}.{key}", zone.get(key), "a finite number >= 0")
        if zone["trustworthy"] > zone["untrustworthy"]:
            raise _invalid(where, f"{name}.untrustworthy", zone["untrustworthy"],
                           f"a value >= {name}.trustworthy = {zone['trustworthy']!r}")


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
