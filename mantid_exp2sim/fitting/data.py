"""The measured spectrum as the fit sees it: values, errors, groups, and the simulator plan.

:func:`prepare_data` turns a spectrum into :class:`FitData`:

* a **mosaic** (``(n_ei * 40, n_windows * 40)`` array or MDHisto in the
  ``pcsmo-mosaic-v1`` layout, default 240x400 with Ei = 25 ... 140 meV): groups are the
  incident-energy row blocks; the plan is ``plan_mosaic`` masked wherever the data are NaN
  (or the ``mask`` argument is set), so that withheld or masked incident energies cost
  nothing;
* any representation with a simulator **plan** (``plan=plan_volume(...)``,
  ``plan_e_slice``, ``plan_qe_slice`` or a mosaic plan): groups are the plan's incident
  energies; bins masked by the plan are not fitted;
* a plain **array** with ``groups`` (toy or user models without a plan).

Bins are fitted where the value is finite, the mask (if any) is not set, and the error is
positive (given or estimated: :mod:`.weights`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import InputDataError, format_error
from ..histogram import MDHisto
from ..mosaic import EI_LIST, LAYOUT, TILE, mosaic_tiles, tiles_to_mosaic
from .weights import estimate_noise, sigma_from_errors

__all__ = ["FitData", "prepare_data", "coarsen"]


@dataclass
class FitData:
    """A spectrum ready to fit.

    Attributes
    ----------
    signal, sigma
        Arrays of the spectrum's shape (sigma: one standard deviation).
    fitted
        Boolean, same shape: the bins that enter chi-square.
    groups
        Integer group of each bin (``-1`` where not fitted).
    group_names
        One name per group (``"Ei=25"``, ...).
    energy
        Energy transfer / Ei of each bin (for a linear background), or None.
    plan
        The simulator plan of the representation (None for plain arrays).
    error_source
        ``"given"`` or ``"estimated"``; ``error_laws`` holds the estimator's per-group
        ``alpha``, ``beta`` (see :mod:`.weights`).
    clip_sigma
        The noise of one measured bin before clipping, for data clipped at zero (None: the
        errors; coarse-binned data keep their fine bins' RMS error here).
    """

    signal: np.ndarray
    sigma: np.ndarray
    fitted: np.ndarray
    groups: np.ndarray
    group_names: list[str]
    energy: np.ndarray | None = None
    plan: Any = None
    error_source: str = "given"
    error_laws: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    clip_sigma: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.signal.shape)

    @property
    def n(self) -> int:
        """Number of fitted bins."""
        return int(self.fitted.sum())

    def key(self) -> str:
        """Fingerprint of the fitted values, errors and bins (for model comparison)."""
        h = hashlib.sha1()
        h.update(np.ascontiguousarray(self.fitted).tobytes())
        h.update(np.ascontiguousarray(self.signal[self.fitted]).tobytes())
        h.update(np.ascontiguousarray(self.sigma[self.fitted]).tobytes())
        return h.hexdigest()[:16]


def _as_array(data: Any) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    if isinstance(data, MDHisto):
        dims = data.non_integrated_dims()
        shape = tuple(data.shape[i] for i in dims)
        sig = np.asarray(data.signal, dtype=float).reshape(shape)
        err = None if data.errors is None else np.asarray(data.errors, dtype=float).reshape(shape)
        return sig, err, dict(data.metadata)
    try:
        arr = np.asarray(data, dtype=float)
    except (TypeError, ValueError):
        raise InputDataError(format_error(
            "The spectrum is not numeric", reason=f"got {type(data).__name__}",
            fix="pass a numpy array or an MDHisto")) from None
    return arr, None, {}


def _is_mosaic(arr: np.ndarray, meta: dict[str, Any], n_ei: int) -> bool:
    if meta.get("layout") == LAYOUT:
        return True
    return arr.ndim == 2 and arr.shape[0] == n_ei * TILE and arr.shape[1] % TILE == 0 and arr.shape[1] > 0


def _mask_arg(mask: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    if mask is None:
        return None
    from ..simulate.coverage import load_mask

    if isinstance(mask, str) or hasattr(mask, "__fspath__"):
        return load_mask(mask, shape)
    m = np.asarray(mask)
    if m.shape != shape:
        raise InputDataError(format_error("mask has the wrong shape", reason=f"{m.shape}, the spectrum is {shape}"))
    return m.astype(bool)


def _finish(signal: np.ndarray, errors: np.ndarray | None, usable: np.ndarray, groups: np.ndarray,
            names: list[str], image_groups: np.ndarray | None,
            to_images: Any, from_images: Any, energy: np.ndarray | None, plan: Any) -> FitData:
    sig = np.where(usable, signal, np.nan)
    if not usable.any():
        raise InputDataError(format_error(
            "The spectrum has no unmasked bin to fit", reason="every bin is NaN or masked",
            fix="pass a spectrum with finite values outside the mask"))
    laws: list[dict[str, Any]] = []
    clip = None
    if errors is not None:
        sigma, n_rep = sigma_from_errors(errors, sig, groups)
        source = "given"
        notes = [f"{n_rep} bins with zero or missing errors got their group's smallest error"] if n_rep else []
    else:
        if to_images is None:
            raise InputDataError(format_error(
                "The spectrum has no errors and no image structure to estimate them from",
                reason="a plain array without a plan", fix="pass errors (sigma) for the bins"))
        s_img, c_img, laws = estimate_noise(to_images(sig), image_groups)
        sigma = from_images(s_img)
        clip = None if c_img is None else from_images(c_img)
        source = "estimated"
        notes = [] if clip is None else ["errors estimated for data clipped at zero: a noise law before clipping "
                                         "(weights: the clipped data's scatter; link: the noise before clipping)"]
    fitted = usable & np.isfinite(sigma) & (sigma > 0)
    g = np.where(fitted, groups, -1)
    present = [k for k in range(len(names)) if np.any(g == k)]
    remap = {old: new for new, old in enumerate(present)}
    g2 = np.full(g.shape, -1)
    for old, new in remap.items():
        g2[g == old] = new
    clip_sigma = None
    if errors is None and clip is not None:
        clip_sigma = np.where(fitted & np.isfinite(clip) & (clip > 0), clip, np.where(fitted, sigma, np.nan))
    return FitData(signal=sig, sigma=np.where(fitted, sigma, np.nan), fitted=fitted, groups=g2,
                   group_names=[names[k] for k in present], energy=energy, plan=plan, error_source=source,
                   error_laws=laws, notes=notes, clip_sigma=clip_sigma)


def _ei_name(ei: float) -> str:
    return f"Ei={float(ei):g}"


def prepare_data(data: Any, *, errors: Any = None, mask: Any = None, plan: Any = None, groups: Any = None,
                 ei_list: Sequence[float] = EI_LIST, spin_model: bool = True, clip_sigma: Any = None) -> FitData:
    """A spectrum (array, MDHisto or FitData) made ready to fit (see the module notes).

    Parameters
    ----------
    data
        The measured spectrum: NaN = masked/withheld.
    errors
        One standard deviation per bin; default: the MDHisto's errors, else estimated
        (:func:`~.weights.estimate_sigma`).
    mask
        Extra bins not to fit (True/nonzero = masked): an array of the spectrum's shape or a
        ``.mat``/``.npy`` file (as the simulator's masks).
    plan
        The simulator plan of a non-mosaic spectrum (``plan_volume``, ``plan_e_slice``,
        ``plan_qe_slice``); its shape must be the spectrum's.
    groups
        For a plain array: the group (integer) of every bin; default one group.
    ei_list
        Incident energies of a mosaic's row blocks (default the PCSMO six).
    spin_model
        Whether a simulator plan is needed (False for function models: no plan is built).
    clip_sigma
        For data clipped at zero: the noise of each bin before clipping, if known (e.g. from
        a calibrated measurement model); default the errors.

    Raises
    ------
    InputDataError
        A shape that matches neither a mosaic nor the plan, no fittable bin, bad errors.
    """
    if isinstance(data, FitData):
        return data
    fd = _prepare(data, errors, mask, plan, groups, ei_list, spin_model)
    if clip_sigma is not None:
        cs = np.asarray(clip_sigma, dtype=float)
        if cs.shape != fd.shape or not np.all(np.isfinite(cs[fd.fitted]) & (cs[fd.fitted] > 0)):
            raise InputDataError(format_error(
                "clip_sigma is invalid", reason=f"shape {cs.shape} (spectrum {fd.shape}) or values <= 0 or missing "
                "at fitted bins", fix="give a positive noise level for every fitted bin"))
        fd.clip_sigma = np.where(fd.fitted, cs, np.nan)
    return fd


def _prepare(data: Any, errors: Any, mask: Any, plan: Any, groups: Any, ei_list: Sequence[float],
             spin_model: bool) -> FitData:
    arr, err, meta = _as_array(data)
    if errors is not None:
        err = np.asarray(errors, dtype=float)
        if err.shape != arr.shape:
            raise InputDataError(format_error("errors do not match the spectrum",
                                              reason=f"shapes {err.shape} and {arr.shape}", fix="one error per bin"))
    if arr.ndim == 0 or arr.size == 0:
        raise InputDataError(format_error("The spectrum is empty", reason=f"shape {arr.shape}"))
    user_mask = _mask_arg(mask, arr.shape)
    usable = np.isfinite(arr) if user_mask is None else np.isfinite(arr) & ~user_mask
    eis = list(meta.get("ei_list", ei_list))
    if plan is not None:
        if tuple(plan.shape) != arr.shape:
            raise InputDataError(format_error(
                "The spectrum does not match the plan", reason=f"spectrum {arr.shape}, plan {tuple(plan.shape)}",
                fix="build the plan with the spectrum's axes and bins"))
        if plan.mask is not None:
            usable &= ~plan.mask
        ei = np.asarray(plan.coords[3], dtype=float)
        uniq = sorted(set(np.round(ei[np.isfinite(ei)], 6).tolist()))
        grp = np.searchsorted(np.array(uniq), np.round(ei, 6))
        names = [_ei_name(e) for e in uniq]
        energy = np.asarray(plan.coords[2], dtype=float) / ei
        if plan.metadata.get("layout") == LAYOUT:
            return _mosaic(arr, err, usable, plan.metadata.get("ei_list", eis), plan,
                           int(plan.metadata.get("q_bins", TILE)))
        to_img, from_img, img_groups = _image_maps(arr.shape, grp)
        return _finish(arr, err, usable, grp, names, img_groups, to_img, from_img, energy, plan)
    if _is_mosaic(arr, meta, len(eis)):
        if arr.ndim != 2 or arr.shape[0] != len(eis) * TILE or arr.shape[1] % TILE:
            raise InputDataError(format_error(
                "The mosaic has the wrong shape", reason=f"{arr.shape} for {len(eis)} incident energies",
                fix=f"pass ({len(eis) * TILE}, n_windows * {TILE}) in the {LAYOUT} layout"))
        p = None
        if spin_model:
            from ..simulate.representations import plan_mosaic

            n_win = arr.shape[1] // TILE
            fr = meta.get("window_fractions")
            kw = {} if fr is None else {"window_fractions": fr}
            if fr is None and n_win != 10:
                raise InputDataError(format_error(
                    "The mosaic's energy windows are unknown", reason=f"{n_win} windows and no window_fractions",
                    fix="pass an MDHisto with window_fractions metadata or a plan"))
            p = plan_mosaic(mask=~usable, ei_list=eis, **kw)
        return _mosaic(arr, err, usable, eis, p)
    if spin_model:
        raise InputDataError(format_error(
            "The spectrum's shape matches no representation",
            reason=f"shape {arr.shape} is not a {len(eis) * TILE}x(n*{TILE}) mosaic and no plan was given",
            fix="pass plan=plan_volume(...)/plan_e_slice(...)/plan_qe_slice(...) built on the spectrum's axes"))
    grp = np.zeros(arr.shape, dtype=int) if groups is None else np.asarray(groups, dtype=int)
    if grp.shape != arr.shape:
        raise InputDataError(format_error("groups do not match the spectrum", reason=f"{grp.shape} vs {arr.shape}"))
    if grp.min() < 0:
        raise InputDataError(format_error("groups must be >= 0", reason=f"minimum {grp.min()}"))
    names = [f"group{k}" for k in range(int(grp.max()) + 1)]
    to_img, from_img, img_groups = _image_maps(arr.shape, grp) if arr.ndim in (2, 3) else (None, None, None)
    return _finish(arr, err, usable, grp, names, img_groups, to_img, from_img, None, None)


def _image_maps(shape: tuple[int, ...], grp: np.ndarray) -> tuple[Any, Any, np.ndarray | None]:
    """How to view a 2D/3D spectrum as (n_images, H, W) images, and back."""
    if len(shape) == 2:
        g = int(np.bincount(np.asarray(grp).ravel()).argmax())
        return (lambda a: a[None]), (lambda a: a[0]), np.array([g])
    if len(shape) == 3:  # (Qh, Qk, E): one image per energy bin
        g = np.asarray(grp)[0, 0, :]
        return (lambda a: np.moveaxis(a, -1, 0)), (lambda a: np.moveaxis(a, 0, -1)), g
    return None, None, None


def _mosaic(arr: np.ndarray, err: np.ndarray | None, usable: np.ndarray, eis: Sequence[float], plan: Any,
            tile: int = TILE) -> FitData:
    n_ei = len(eis)
    n_win = arr.shape[1] // tile
    grp = np.repeat(np.arange(n_ei), tile)[:, None] * np.ones((1, arr.shape[1]), dtype=int)
    names = [_ei_name(e) for e in eis]
    energy = None
    if plan is not None:
        energy = np.asarray(plan.coords[2], dtype=float) / np.asarray(plan.coords[3], dtype=float)

    def to_img(a: np.ndarray) -> np.ndarray:  # one (Qh, Qk) image per (Ei, window)
        return np.ascontiguousarray(np.moveaxis(mosaic_tiles(a, tile), -1, -3)).reshape(n_ei * n_win, tile, tile)

    def from_img(t: np.ndarray) -> np.ndarray:
        return tiles_to_mosaic(np.moveaxis(t.reshape(n_ei, n_win, tile, tile), 1, -1))

    img_groups = np.repeat(np.arange(n_ei), n_win)
    return _finish(arr, err, usable, grp, names, img_groups, to_img, from_img, energy, plan)


def coarsen(fd: FitData, factor: int = 2) -> FitData | None:
    """A mosaic's data on ``factor`` x ``factor`` coarser (Qh, Qk) bins, for a cheap first search.

    Each coarse bin holds the mean of its fitted fine bins and the error of that mean
    (``sqrt(sum sigma^2) / k`` for ``k`` fitted fine bins); its plan is the mosaic plan with
    ``q_bins / factor`` bins over the same Q range (bins of ``factor`` times the width, so the
    model is the mean over the coarse bin). Coarse bins without a fitted fine bin are masked.

    Returns
    -------
    FitData or None
        None when the data are not a mosaic with a plan or ``q_bins`` is not a multiple of
        ``factor`` (with at least 4 coarse bins).
    """
    plan = fd.plan
    if plan is None or plan.metadata.get("layout") != LAYOUT or factor < 2:
        return None
    q = int(plan.metadata.get("q_bins", TILE))
    if q % factor or q // factor < 4:
        return None
    from ..simulate.representations import plan_mosaic

    H, W = fd.shape
    f = int(factor)

    def pool(a: np.ndarray) -> np.ndarray:
        return a.reshape(H // f, f, W // f, f)

    fit = pool(fd.fitted)
    n = fit.sum(axis=(1, 3))
    ok = n > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.where(fit, pool(fd.signal), 0.0).sum(axis=(1, 3)) / n
        var = np.where(fit, pool(fd.sigma) ** 2, 0.0).sum(axis=(1, 3)) / n ** 2
    groups = np.where(fit, pool(fd.groups), -1).max(axis=(1, 3))
    cplan = plan_mosaic(mask=~ok, ei_list=plan.metadata["ei_list"], window_fractions=plan.metadata["window_fractions"],
                        q_bins=q // f, q_range=tuple(plan.metadata["q_range"]))
    energy = np.asarray(cplan.coords[2], dtype=float) / np.asarray(cplan.coords[3], dtype=float)
    fine_clip = fd.sigma if fd.clip_sigma is None else fd.clip_sigma
    with np.errstate(invalid="ignore", divide="ignore"):
        rms = np.sqrt(np.where(fit, pool(fine_clip) ** 2, 0.0).sum(axis=(1, 3)) / n)
    return FitData(signal=np.where(ok, y, np.nan), sigma=np.where(ok, np.sqrt(var), np.nan), fitted=ok,
                   groups=np.where(ok, groups, -1), group_names=list(fd.group_names), energy=energy, plan=cplan,
                   error_source=fd.error_source, error_laws=fd.error_laws,
                   notes=[f"coarse stage: {f}x{f} (Qh, Qk) bins"], clip_sigma=np.where(ok, rms, np.nan))
