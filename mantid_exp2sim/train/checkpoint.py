"""Atomic training checkpoints and random-number-generator state capture.

A checkpoint is one ``torch.save`` file holding only tensors, numbers, strings, lists and
dicts (so ``torch.load(weights_only=True)`` reads it: no pickled code). It is written to a
temporary file in the same folder and moved into place with ``os.replace``
(:mod:`mantid_exp2sim.io._atomic`), so a reader (or a run killed mid-write) only ever sees a
complete old or a complete new file.
"""

from __future__ import annotations

import os
import pickle
import random
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import InputDataError, format_error
from ..io._atomic import atomic_path, default_file_mode

__all__ = [
    "atomic_torch_save",
    "load_checkpoint",
    "capture_rng_state",
    "restore_rng_state",
    "latest_checkpoint",
    "CHECKPOINT_NAME",
    "BEST_TASKS",
    "best_checkpoint_name",
    "default_file_mode",
]

#: File name of the rolling "latest" checkpoint inside a run folder.
CHECKPOINT_NAME = "checkpoint.pt"
#: Tasks whose best-validation state a GAN run keeps beside the rolling checkpoint.
BEST_TASKS = ("deconvolve", "convolve")


def best_checkpoint_name(task: str) -> str:
    """File name of the best-validation state of ``task`` in a run folder."""
    return f"best_{task}.pt"


def atomic_torch_save(obj: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``obj`` with ``torch.save`` to ``path`` atomically and durably (``fsync``).

    Through :func:`mantid_exp2sim.io._atomic.atomic_path`: parent folders are created, the
    file gets the umask's permissions, and a failed write leaves the old file as it was.

    Returns
    -------
    Path
        The final path.
    """
    import torch

    path = Path(path)
    with atomic_path(path, parents=True, durable=True) as tmp:
        with open(tmp, "wb") as fh:
            torch.save(dict(obj), fh)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`atomic_torch_save` (``weights_only`` loading).

    Raises
    ------
    InputDataError
        When the file is missing or is not a training checkpoint of this package.
    """
    import torch

    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise InputDataError(
            format_error(
                f"Checkpoint '{path}' not found",
                reason="no such file",
                fix="pass the run folder or the checkpoint file written by 'exp2sim-train gan'",
            )
        )
    try:
        with warnings.catch_warnings():  # torch warns about the pickle it refuses; the error says it
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refused an object: never run it
        raise InputDataError(
            format_error(
                f"Checkpoint '{path}' cannot be read",
                reason="it holds pickled Python objects, which are never loaded (they could run code)",
                fix="pass a checkpoint written by 'exp2sim-train gan'",
            )
        ) from exc
    except Exception as exc:  # corrupt file, wrong format
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputDataError(
            format_error(f"Checkpoint '{path}' cannot be read", reason=first, fix="use another checkpoint")
        ) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != "exp2sim-gan-checkpoint":
        raise InputDataError(
            format_error(
                f"'{path}' is not an Exp2SimGAN training checkpoint",
                reason="its 'format' entry is missing or different",
                fix="pass a checkpoint written by 'exp2sim-train gan'",
            )
        )
    return ckpt


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The rolling checkpoint of a run folder, or ``None`` when there is none yet."""
    p = Path(run_dir) / CHECKPOINT_NAME
    return p if p.is_file() else None


def capture_rng_state() -> dict[str, Any]:
    """States of Python's, numpy's legacy and torch's (CPU and CUDA) global generators."""
    import torch

    py = random.getstate()
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    import torch

    try:
        py = state["python"]
        random.setstate((int(py[0]), tuple(int(v) for v in py[1]), py[2]))
        n = state["numpy"]
        np.random.set_state(
            (
                str(n["name"]),
                np.asarray(n["keys"].numpy(), dtype=np.uint32),
                int(n["pos"]),
                int(n["has_gauss"]),
                float(n["cached_gaussian"]),
            )
        )
        torch.set_rng_state(state["torch"])
    except (KeyError, TypeError) as exc:
        raise InputDataError(
            format_error("Checkpoint holds no valid random-generator state", reason=str(exc))
        ) from exc
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))
