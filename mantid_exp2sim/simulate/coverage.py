"""Detector coverage: which bins of a representation were measured.

A mask is a boolean array of the representation's shape, True where the bin has no detector
coverage (its value is NaN in every output). Sources:

* a file: ``.mat`` (MATLAB v5, variable ``nan_mask`` or the file's only array; stored upside
  down like ``nanmask.mat``, so it is flipped along the first axis) or ``.npy`` (already in the
  output orientation); nonzero = masked;
* an array of the right shape;
* ``"kinematic"``: computed from Ei and a :class:`~.kinematics.DetectorCoverage`. A bin is
  masked when no point of it is covered: the Q bin centre is tested at several energies
  across the bin (its edges and interior), because a Horace bin is empty only if no
  detector pixel falls anywhere in it;
* ``None`` or ``"none"``: nothing masked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import InputDataError, format_error
from .kinematics import MAPS_COVERAGE, PCSMO_LATTICE, DetectorCoverage, Lattice

__all__ = ["load_mask", "kinematic_mask", "resolve_mask"]

_SUB_ENERGIES = 5


def load_mask(path: str | os.PathLike, shape: tuple[int, ...] | None = None, *, flip: bool | None = None) -> np.ndarray:
    """Read a coverage mask file.

    Parameters
    ----------
    path
        ``.mat`` or ``.npy`` file.
    shape
        Expected shape (after flipping), or None to accept any.
    flip
        Flip along the first axis; default True for ``.mat`` (the ``nanmask.mat`` convention),
        False for ``.npy``.

    Returns
    -------
    numpy.ndarray
        Boolean, True = masked.
    """
    p = Path(path)
    if not p.is_file():
        raise InputDataError(format_error(f"Mask file '{p}' does not exist", fix="check the path"))
    suffix = p.suffix.lower()
    if suffix == ".mat":
        from scipy.io import loadmat

        try:
            content = loadmat(str(p))
        except Exception as exc:
            raise InputDataError(
                format_error(f"Mask file '{p}' is not a readable MATLAB file", reason=str(exc))
            ) from exc
        arrays = {k: v for k, v in content.items() if not k.startswith("__")}
        if "nan_mask" in arrays:
            arr = arrays["nan_mask"]
        elif len(arrays) == 1:
            arr = next(iter(arrays.values()))
        else:
            raise InputDataError(
                format_error(
                    f"Mask file '{p}' has no variable 'nan_mask'",
                    reason=f"variables: {sorted(arrays)}",
                    fix="store the mask as 'nan_mask' (1 = no coverage)",
                )
            )
        do_flip = True if flip is None else flip
    elif suffix == ".npy":
        try:
            arr = np.load(str(p), allow_pickle=False)
        except Exception as exc:
            raise InputDataError(format_error(f"Mask file '{p}' is not a readable .npy file", reason=str(exc))) from exc
        do_flip = False if flip is None else flip
    else:
        raise InputDataError(
            format_error(
                f"Mask file '{p}' has an unsupported type",
                reason=f"suffix {suffix!r}; allowed: .mat (MATLAB v5) and .npy",
            )
        )
    arr = np.asarray(arr)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputDataError(format_error(f"Mask file '{p}' does not hold a numeric array", reason=f"dtype {arr.dtype}"))
    if do_flip:
        arr = arr[::-1]
    if shape is not None and arr.shape != tuple(shape):
        raise InputDataError(
            format_error(
                f"Mask file '{p}' has the wrong shape",
                reason=f"shape {arr.shape}, the representation has {tuple(shape)}",
                fix="give a mask with one entry per bin (1 = no coverage)",
            )
        )
    mask = np.asarray(arr != 0) | ~np.isfinite(arr.astype(float))
    return np.ascontiguousarray(mask)


def kinematic_mask(
    qh: np.ndarray,
    qk: np.ndarray,
    e_lo: np.ndarray,
    e_hi: np.ndarray,
    ei: float,
    coverage: DetectorCoverage = MAPS_COVERAGE,
    lattice: Lattice = PCSMO_LATTICE,
    n_sub: int = _SUB_ENERGIES,
) -> np.ndarray:
    """Kinematic coverage mask of bins.

    Parameters
    ----------
    qh, qk
        Bin-centre Q in r.l.u.; broadcastable with ``e_lo``/``e_hi``.
    e_lo, e_hi
        Energy edges of each bin in meV.
    ei
        Incident energy in meV.
    coverage
        The detector's angular coverage.
    n_sub
        Number of energies tested across each bin (edges included).

    Returns
    -------
    numpy.ndarray
        Boolean, broadcast shape of the inputs; True where no tested point is covered.
    """
    covered = None
    for t in np.linspace(0.0, 1.0, max(2, int(n_sub))):
        e = np.asarray(e_lo, float) + t * (np.asarray(e_hi, float) - np.asarray(e_lo, float))
        c = coverage.covered(qh, qk, e, ei, lattice)
        covered = c if covered is None else (covered | c)
    return ~covered


def resolve_mask(
    mask: Any,
    shape: tuple[int, ...],
    kinematic: Callable[[], np.ndarray],
) -> np.ndarray | None:
    """Turn a mask argument into a boolean array of ``shape`` (or None for no mask).

    Parameters
    ----------
    mask
        ``"kinematic"``, None/``"none"``, a file path (str or Path) or an array.
    shape
        The representation's shape.
    kinematic
        Called to build the kinematic mask.
    """
    if mask is None:
        return None
    if isinstance(mask, str):
        if mask == "none":
            return None
        if mask == "kinematic":
            return np.ascontiguousarray(kinematic().reshape(shape))
        if not (mask.lower().endswith(".mat") or mask.lower().endswith(".npy")):
            raise InputDataError(
                format_error(
                    "Unknown mask",
                    reason=f"got {mask!r}; allowed: 'kinematic', 'none', a .mat or .npy file, or an array",
                )
            )
        return load_mask(mask, shape)
    if isinstance(mask, os.PathLike):
        return load_mask(mask, shape)
    arr = np.asarray(mask)
    if arr.shape != tuple(shape):
        raise InputDataError(
            format_error(
                "mask array has the wrong shape",
                reason=f"shape {arr.shape}, the representation has {tuple(shape)}",
            )
        )
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputDataError(format_error("mask array is not numeric", reason=f"dtype {arr.dtype}"))
    return np.ascontiguousarray((arr != 0) | ~np.isfinite(arr.astype(float)))
