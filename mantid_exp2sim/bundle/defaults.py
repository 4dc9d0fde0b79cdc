"""Where the shipped default bundles live: ``mantid_exp2sim/data/bundles/{task}_{ndim}d.exp2sim.h5``
(parameter-estimation networks: ``regress_{model}.exp2sim.h5``, one per spin model)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import BundleError, format_error
from .manifest import NDIMS, TASKS

__all__ = ["BUNDLE_DIR_ENV", "BUNDLE_SUFFIX", "default_bundle_dir", "default_bundle_name", "default_bundle_path",
           "default_regressor_path"]

BUNDLE_DIR_ENV = "EXP2SIM_BUNDLE_DIR"
BUNDLE_SUFFIX = ".exp2sim.h5"


def default_bundle_dir() -> Path:
    """``$EXP2SIM_BUNDLE_DIR`` when set (and not empty), else the package's data/bundles folder."""
    env = os.environ.get(BUNDLE_DIR_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parent.parent / "data" / "bundles"


def default_bundle_name(task: str, ndim: int) -> str:
    """``"{task}_{ndim}d.exp2sim.h5"`` after checking task and ndim."""
    if task not in TASKS:
        raise BundleError(
            format_error(
                "Unknown task for a default bundle",
                reason=f"task={task!r}; allowed: {', '.join(TASKS)}",
            )
        )
    if ndim not in NDIMS:
        raise BundleError(
            format_error(
                "Unsupported dimensionality for a default bundle",
                reason=f"ndim={ndim!r}; allowed: 2 or 3",
            )
        )
    return f"{task}_{int(ndim)}d{BUNDLE_SUFFIX}"


def default_bundle_path(task: str, ndim: int, *, must_exist: bool = True) -> Path:
    """Path of the default bundle for ``task`` in ``ndim`` dimensions.

    Raises
    ------
    BundleError
        With ``must_exist`` (default) when the file is missing: names the bundle, the folder
        searched and how to make one.
    """
    folder = default_bundle_dir()
    path = folder / default_bundle_name(task, ndim)
    if must_exist and not path.is_file():
        source = f"${BUNDLE_DIR_ENV}" if os.environ.get(BUNDLE_DIR_ENV, "").strip() else "the package"
        raise BundleError(
            format_error(
                f"The default {task} bundle for {ndim}D data is missing",
                reason=f"{path.name} is not in {folder} (searched: {source})",
                fix=(
                    "train and export one with `exp2sim-train` (it writes a *.exp2sim.h5 bundle), "
                    f"then copy it there as {path.name} or set {BUNDLE_DIR_ENV} to its folder; "
                    "or pass the bundle path explicitly"
                ),
            )
        )
    return path


def default_regressor_path(model: str, *, must_exist: bool = True) -> Path:
    """Path of the shipped parameter-estimation network of spin model ``model``.

    Raises
    ------
    BundleError
        With ``must_exist`` (default) when there is none for that model.
    """
    folder = default_bundle_dir()
    path = folder / f"regress_{model}{BUNDLE_SUFFIX}"
    if must_exist and not path.is_file():
        raise BundleError(
            format_error(
                f"No shipped parameter-estimation network for model {model!r}",
                reason=f"{path.name} is not in {folder}",
                fix="train one with `exp2sim-train regressor --model ...` and pass its bundle, or fit "
                "without the network",
            )
        )
    return path
