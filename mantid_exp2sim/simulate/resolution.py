"""Instrument resolution: the covariance of (Qh, Qk, E) at a point of the spectrum.

Three models share one interface (:class:`ResolutionModel`):

* :class:`BuiltinMAPSResolution` ("builtin"): needs no data file. Energy widths from the
  ``resins`` PyChop fit of MAPS (chopper package 'S' by default) plus a term for the
  contributions that fit leaves out; in-plane Q widths from the angular spread of the
  incident and scattered beams. No Q-E correlation (see the class notes).
* :class:`TableResolution` ("tables:DIR"): user-supplied covariance tables in the 12-column
  format of the MAPS PCSMO files (Qh, Qk, E, then the 3x3 covariance row-major), one file
  per incident energy, interpolated linearly on their regular grid.
* :class:`IntrinsicResolution` ("unconvolved"): no instrument, only the intrinsic width of
  the excitations (0.1 meV FWHM as in the published simulations).

Covariances are in the mixed units of the tables: r.l.u.^2 for Q-Q, r.l.u. meV for Q-E and
meV^2 for E-E, with Q in r.l.u. of the high-temperature PCSMO cell. Every model also reports
an intrinsic energy variance that the spectra add to the instrument's.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import InputDataError, format_error, require
from .kinematics import E_TO_K2, PCSMO_LATTICE, Lattice, wavevector

__all__ = [
    "FWHM_PER_SIGMA",
    "PCSMO_CHOPPER_FREQUENCIES",
    "ResolutionModel",
    "BuiltinMAPSResolution",
    "IntrinsicResolution",
    "ResolutionTable",
    "TableResolution",
    "load_resolution_table",
    "get_resolution",
    "TABLE_COLUMNS",
    "MeasurementResolution",
    "mosaic_covariance",
]

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
#: Fermi chopper frequencies (Hz) of the PCSMO measurement, per incident energy (meV).
PCSMO_CHOPPER_FREQUENCIES: dict[float, int] = {25.0: 300, 35.0: 200, 50.0: 200, 70.0: 250, 100.0: 300, 140.0: 400}
#: Column names of a resolution table file.
TABLE_COLUMNS = ("Qh", "Qk", "E", "shh", "shk", "shE", "skh", "skk", "skE", "sEh", "sEk", "sEE")
_EI_TOLERANCE = 0.5  # meV: how close a requested Ei must be to a table's Ei


class ResolutionModel(ABC):
    """Covariance of the resolution function in (Qh, Qk, E).

    Parameters
    ----------
    intrinsic_fwhm
        Intrinsic energy width of the excitations in meV (FWHM of a Gaussian), added to the
        instrument's energy variance by the spectra.
    """

    #: Short name used in data-set attributes ("builtin", "tables", "unconvolved").
    kind: str = ""

    def __init__(self, intrinsic_fwhm: float = 0.1) -> None:
        fwhm = float(intrinsic_fwhm)
        if not (np.isfinite(fwhm) and fwhm > 0):
            raise InputDataError(
                format_error(
                    "intrinsic_fwhm is invalid",
                    reason=f"got {intrinsic_fwhm!r}; need a finite width > 0 meV",
                    fix="use e.g. 0.1 meV (the width of the published simulations)",
                )
            )
        self.intrinsic_fwhm = fwhm

    @property
    def intrinsic_variance(self) -> float:
        """Intrinsic energy variance in meV^2."""
        return (self.intrinsic_fwhm / FWHM_PER_SIGMA) ** 2

    @abstractmethod
    def covariance(self, qh: np.ndarray, qk: np.ndarray, e: np.ndarray, ei: float) -> np.ndarray:
        """Instrument covariance of (Qh, Qk, E) at the given points.

        Parameters
        ----------
        qh, qk, e, ei
            The points, as in :func:`~mantid_exp2sim.simulate.kinematics.kinematic_l`: in-plane
            momentum (r.l.u.) and energy transfer (meV), broadcastable, at incident energy ``ei``.

        Returns
        -------
        numpy.ndarray
            Shape ``(*broadcast_shape, 3, 3)``, symmetric, order (Qh, Qk, E); the intrinsic
            width is not included.
        """

    def check_coverage(self, ei: float, q_range: tuple[float, float], e_range: tuple[float, float]) -> None:
        """Raise ``ValueError`` if the model cannot describe the requested range (default: it can)."""

    def energy_sigma(self, e: np.ndarray, ei: float, qh: float = 0.0, qk: float = 0.0) -> np.ndarray:
        """Instrument energy width (Gaussian sigma, meV) at energy transfers ``e`` and one Q."""
        e = np.asarray(e, dtype=float)
        cov = self.covariance(np.full(e.shape, qh), np.full(e.shape, qk), e, ei)
        return np.sqrt(cov[..., 2, 2])

    @property
    def spec(self) -> str:
        """The string :func:`get_resolution` turns back into an equivalent model."""
        return self.kind

    def describe(self) -> dict[str, Any]:
        """JSON-safe description for metadata and data-set attributes."""
        return {"kind": self.kind, "spec": self.spec, "intrinsic_fwhm_meV": self.intrinsic_fwhm}


def _check_ei(ei: float) -> float:
    value = float(ei)
    if not (np.isfinite(value) and value > 0):
        raise InputDataError(
            format_error("Incident energy ei is invalid", reason=f"got {ei!r}; need a finite Ei > 0 meV")
        )
    return value


class IntrinsicResolution(ResolutionModel):
    """No instrument resolution: only the intrinsic width (the "unconvolved" spectra)."""

    kind = "unconvolved"

    def covariance(self, qh, qk, e, ei):
        _check_ei(ei)
        shape = np.broadcast_shapes(np.shape(qh), np.shape(qk), np.shape(e))
        return np.zeros(shape + (3, 3))


@functools.lru_cache(maxsize=64)
def _resins_model(package: str, ei: float, frequency: int):
    resins = require("resins", extra="simulate", feature="The built-in MAPS resolution")
    try:
        inst = resins.Instrument.from_default("MAPS", "MAPS")
        return inst.get_resolution_function(
            "PyChop_fit", chopper_package=package, e_init=ei, chopper_frequency=frequency
        )
    except Exception as exc:  # resins raises its own error types for bad settings
        raise InputDataError(
            format_error(
                "The built-in MAPS resolution cannot be set up",
                reason=f"resins rejected chopper package {package!r}, Ei = {ei:g} meV, "
                f"frequency = {frequency} Hz ({type(exc).__name__}: {exc})",
                fix="use chopper package 'A', 'B' or 'S' and a frequency that is a multiple of "
                "50 Hz (50-600) with transmission at this Ei",
            )
        ) from exc


class BuiltinMAPSResolution(ResolutionModel):
    """MAPS resolution without data files.

    Energy (Gaussian sigma, meV)::

        sigma_E^2 = sigma_resins(E)^2 + (extra_ei * Ei + extra_ef * Ef)^2,   Ef = Ei - E

    ``sigma_resins`` is the ResINS ``PyChop_fit`` model of MAPS (moderator and Fermi chopper
    terms). The second term stands for what that fit leaves out and a Monte-Carlo (Tobyfit)
    calculation includes (sample and detector geometry, detector time response, moderator
    line-shape details); its two coefficients were set once so that the widths agree with
    the Tobyfit MAPS covariances of the PCSMO measurement (all six Ei, 0.05-0.75 Ei) to
    within about 7%. Without it ResINS is 16-32% narrower than Tobyfit.

    In-plane Q (sigma, 1/Angstrom)::

        sigma_Q^2 = (k_i * incident_divergence)^2 + (k_f * final_divergence)^2

    isotropic in the (a, b) plane (c is along k_i, so angular errors of k_i and k_f move Q
    within the plane), converted to r.l.u. with a* and b*. ``incident_divergence`` is the
    angular spread of the incident beam and ``final_divergence`` that of the scattered beam
    seen by one detector element (sample width and detector element size, about 1-2 cm, at
    L2 = 6 m). The defaults (2.4 and 2.2 mrad) reproduce sqrt(s_hh) of the MAPS tables
    (0.008-0.022 r.l.u.) within 5%.

    Approximations: no Q-E correlation (s_QE = 0) and no radial (k_f-magnitude) Q term; the
    Tobyfit tables have a Q-E correlation of up to ~0.4 at |Q| = 1.5 r.l.u., which focuses or
    defocuses dispersive modes. Use :class:`TableResolution` where that matters. For incident
    energies other than the PCSMO ones, the chopper frequency is that of the nearest PCSMO
    Ei unless ``frequencies`` says otherwise, and the extra energy term is an extrapolation.

    Parameters
    ----------
    chopper_package
        MAPS Fermi chopper package: 'A', 'B' or 'S'.
    frequencies
        Chopper frequency in Hz per incident energy in meV (default: the PCSMO settings).
    incident_divergence, final_divergence
        Gaussian sigma in radians.
    extra_ei, extra_ef
        Coefficients of the extra energy width (dimensionless).
    intrinsic_fwhm
        Intrinsic width in meV.
    lattice
        Lattice used to convert 1/Angstrom to r.l.u.
    """

    kind = "builtin"

    def __init__(
        self,
        chopper_package: str = "S",
        frequencies: Mapping[float, int] | None = None,
        *,
        incident_divergence: float = 2.4e-3,
        final_divergence: float = 2.2e-3,
        extra_ei: float = 0.008,
        extra_ef: float = 0.004,
        intrinsic_fwhm: float = 0.1,
        lattice: Lattice = PCSMO_LATTICE,
    ) -> None:
        super().__init__(intrinsic_fwhm)
        if chopper_package not in ("A", "B", "S"):
            raise InputDataError(
                format_error(
                    "chopper_package is invalid",
                    reason=f"got {chopper_package!r}; MAPS has 'A', 'B' and 'S'",
                )
            )
        for name, value in (
            ("incident_divergence", incident_divergence),
            ("final_divergence", final_divergence),
            ("extra_ei", extra_ei),
            ("extra_ef", extra_ef),
        ):
            if not (np.isfinite(value) and value >= 0):
                raise InputDataError(
                    format_error(f"{name} is invalid", reason=f"got {value!r}; need a finite value >= 0")
                )
        self.chopper_package = chopper_package
        self.frequencies = {float(k): int(v) for k, v in (frequencies or PCSMO_CHOPPER_FREQUENCIES).items()}
        if not self.frequencies:
            raise InputDataError(format_error("frequencies is empty", fix="give at least one Ei: frequency pair"))
        self.incident_divergence = float(incident_divergence)
        self.final_divergence = float(final_divergence)
        self.extra_ei = float(extra_ei)
        self.extra_ef = float(extra_ef)
        self.lattice = lattice

    def frequency(self, ei: float) -> int:
        """Chopper frequency used at ``ei``: the setting of the nearest configured Ei."""
        keys = np.array(sorted(self.frequencies))
        return self.frequencies[float(keys[np.argmin(np.abs(keys - ei))])]

    def energy_variance(self, e: np.ndarray, ei: float) -> np.ndarray:
        """Instrument energy variance in meV^2 at energy transfers ``e`` (any shape)."""
        ei = _check_ei(ei)
        e = np.asarray(e, dtype=float)
        # The ResINS polynomial is fitted on 0 <= E < Ei; outside that range (only the tails of
        # modes far from any bin are there) hold it at the nearest fitted value.
        ec = np.clip(e, 0.0, 0.9 * ei)
        model = _resins_model(self.chopper_package, ei, self.frequency(ei))
        flat = ec.reshape(-1)
        # The polynomial is smooth in E: evaluate it on a fine grid and interpolate, which
        # keeps the cost independent of the number of modes.
        grid = np.linspace(0.0, 0.9 * ei, 181)
        sig_grid = np.asarray(model.get_characteristics(grid[:, None])["sigma"], dtype=float).reshape(-1)
        sig = np.interp(flat, grid, sig_grid).reshape(e.shape)
        extra = self.extra_ei * ei + self.extra_ef * (ei - ec)
        return sig**2 + extra**2

    def q_sigma(self, e: np.ndarray, ei: float) -> np.ndarray:
        """In-plane Q width (sigma, 1/Angstrom) at energy transfers ``e``."""
        ei = _check_ei(ei)
        ki = float(wavevector(ei))
        kf = wavevector(np.clip(ei - np.asarray(e, dtype=float), 0.0, None))
        return np.sqrt((ki * self.incident_divergence) ** 2 + (kf * self.final_divergence) ** 2)

    def covariance(self, qh, qk, e, ei):
        shape = np.broadcast_shapes(np.shape(qh), np.shape(qk), np.shape(e))
        e = np.broadcast_to(np.asarray(e, dtype=float), shape)
        sq2 = self.q_sigma(e, ei) ** 2
        cov = np.zeros(shape + (3, 3))
        cov[..., 0, 0] = sq2 / self.lattice.astar**2
        cov[..., 1, 1] = sq2 / self.lattice.bstar**2
        cov[..., 2, 2] = self.energy_variance(e, ei)
        return cov

    def check_coverage(self, ei, q_range, e_range):
        ei = _check_ei(ei)
        if e_range[1] >= ei:
            raise InputDataError(
                format_error(
                    "The energy range reaches the incident energy",
                    reason=f"energy transfer up to {e_range[1]:g} meV with Ei = {ei:g} meV",
                    fix="keep the energy transfer below Ei",
                )
            )
        _resins_model(self.chopper_package, ei, self.frequency(ei))

    def describe(self):
        d = super().describe()
        d.update(
            instrument="MAPS",
            chopper_package=self.chopper_package,
            frequencies={f"{k:g}": v for k, v in sorted(self.frequencies.items())},
            incident_divergence_rad=self.incident_divergence,
            final_divergence_rad=self.final_divergence,
            extra_energy_width=[self.extra_ei, self.extra_ef],
        )
        return d


class ResolutionTable:
    """One resolution-covariance table on a regular (Qh, Qk, E) grid.

    Parameters
    ----------
    qh, qk, e
        Ascending grid coordinates, shapes ``(nh,)``, ``(nk,)``, ``(ne,)``.
    covariance
        Shape ``(nh, nk, ne, 3, 3)``, symmetric.
    path
        Where it came from (for messages).
    """

    def __init__(self, qh: np.ndarray, qk: np.ndarray, e: np.ndarray, covariance: np.ndarray, path: str = "<memory>"):
        from scipy.interpolate import RegularGridInterpolator

        self.qh, self.qk, self.e = (np.asarray(a, dtype=float) for a in (qh, qk, e))
        self.path = str(path)
        cov = np.asarray(covariance, dtype=float)
        self.covariance_grid = cov
        iu = ([0, 0, 0, 1, 1, 2], [0, 1, 2, 1, 2, 2])
        values = cov[..., iu[0], iu[1]]  # (nh, nk, ne, 6)
        self._iu = iu
        self._interp = RegularGridInterpolator((self.qh, self.qk, self.e), values, method="linear")

    @property
    def ranges(self) -> dict[str, tuple[float, float]]:
        """Grid extents per coordinate."""
        return {
            "Qh": (float(self.qh[0]), float(self.qh[-1])),
            "Qk": (float(self.qk[0]), float(self.qk[-1])),
            "E": (float(self.e[0]), float(self.e[-1])),
        }

    def covariance(self, qh: np.ndarray, qk: np.ndarray, e: np.ndarray) -> np.ndarray:
        """Linearly interpolated covariance, shape ``(*broadcast_shape, 3, 3)``.

        Points outside the grid are clamped onto its boundary (callers check coverage of the
        requested range with :meth:`check_coverage`; only the far tails of modes lie outside).
        """
        qh, qk, e = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (qh, qk, e)))
        pts = np.stack(
            [
                np.clip(qh, self.qh[0], self.qh[-1]),
                np.clip(qk, self.qk[0], self.qk[-1]),
                np.clip(e, self.e[0], self.e[-1]),
            ],
            axis=-1,
        ).reshape(-1, 3)
        vals = self._interp(pts)
        out = np.empty((pts.shape[0], 3, 3))
        for n, (i, j) in enumerate(zip(*self._iu)):
            out[:, i, j] = vals[:, n]
            out[:, j, i] = vals[:, n]
        return out.reshape(qh.shape + (3, 3))

    def check_coverage(self, q_range: tuple[float, float], e_range: tuple[float, float]) -> None:
        """Raise ``InputDataError`` unless the grid covers Qh, Qk in ``q_range`` and E in ``e_range``."""
        tol = 1e-6
        wanted = {"Qh": q_range, "Qk": q_range, "E": e_range}
        for name, (lo, hi) in wanted.items():
            glo, ghi = self.ranges[name]
            if glo > lo + tol or ghi < hi - tol:
                unit = "meV" if name == "E" else "r.l.u."
                raise InputDataError(
                    format_error(
                        f"Resolution table '{self.path}' does not cover the requested {name} range",
                        reason=f"requested {name} = {lo:g}..{hi:g} {unit}, the table's grid spans "
                        f"{glo:g}..{ghi:g} {unit}",
                        fix="supply a table whose grid covers the whole range (Qh, Qk and E), "
                        "or narrow the requested range",
                    )
                )


def _diagnose_table(p: Path) -> None:
    """Raise the error describing the first malformed line of a table file."""
    with open(p, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            parts = text.split()
            if len(parts) != len(TABLE_COLUMNS):
                raise InputDataError(
                    format_error(
                        f"Resolution table '{p}' has the wrong number of columns",
                        reason=f"line {lineno} has {len(parts)} columns; need {len(TABLE_COLUMNS)} "
                        f"({' '.join(TABLE_COLUMNS)})",
                        fix="write Qh, Qk, E and the 9 covariance elements on every line",
                    )
                )
            try:
                [float(x) for x in parts]
            except ValueError:
                raise InputDataError(
                    format_error(
                        f"Resolution table '{p}' has a value that is not a number",
                        reason=f"line {lineno}: {text[:80]!r}",
                    )
                ) from None
    raise InputDataError(format_error(f"Resolution table '{p}' cannot be read", reason="unknown format"))


def load_resolution_table(path: str | os.PathLike) -> ResolutionTable:
    """Read and validate a 12-column resolution table.

    Parameters
    ----------
    path
        Whitespace-separated text file with columns Qh, Qk (r.l.u.), E (meV) and the 3x3
        covariance row-major (shh shk shE skh skk skE sEh sEk sEE); ``#`` starts a comment.
        The rows must fill a regular grid (every combination of the distinct Qh, Qk and E
        values exactly once), in any order.

    Returns
    -------
    ResolutionTable

    Raises
    ------
    InputDataError
        Unreadable file, wrong number of columns, non-finite values, an incomplete or
        duplicated grid, or a covariance with a negative variance.
    """
    p = Path(path)
    if not p.is_file():
        raise InputDataError(
            format_error(f"Resolution table '{p}' does not exist", fix="check the path or the tables folder")
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an empty file warns; it is reported below
            data = np.loadtxt(p, comments="#", ndmin=2, dtype=float)
    except ValueError:
        data = None  # ragged or non-numeric: find the offending line for the message
    if data is None or (data.size and data.shape[1] != len(TABLE_COLUMNS)):
        _diagnose_table(p)
    rows = data
    if rows is None or rows.size == 0:
        raise InputDataError(format_error(f"Resolution table '{p}' is empty", reason="no data rows"))
    if not np.isfinite(data).all():
        bad = int(np.argwhere(~np.isfinite(data))[0, 0])
        raise InputDataError(
            format_error(f"Resolution table '{p}' has non-finite values", reason=f"data row {bad + 1}")
        )
    coords = np.round(data[:, :3], 6)
    axes = [np.unique(coords[:, i]) for i in range(3)]
    n_expected = int(np.prod([a.size for a in axes]))
    idx = [np.searchsorted(axes[i], coords[:, i]) for i in range(3)]
    flat = np.ravel_multi_index(idx, [a.size for a in axes])
    counts = np.bincount(flat, minlength=n_expected)
    if data.shape[0] != n_expected or (counts != 1).any():
        raise InputDataError(
            format_error(
                f"Resolution table '{p}' is not a regular grid",
                reason=f"{data.shape[0]} rows for {axes[0].size} Qh x {axes[1].size} Qk x "
                f"{axes[2].size} E values ({n_expected} grid points; {int((counts == 0).sum())} "
                f"missing, {int((counts > 1).sum())} repeated)",
                fix="give every combination of the Qh, Qk and E grid values exactly once",
            )
        )
    if min(a.size for a in axes) < 2:
        raise InputDataError(
            format_error(
                f"Resolution table '{p}' grid is degenerate",
                reason=f"grid sizes Qh {axes[0].size}, Qk {axes[1].size}, E {axes[2].size}; need >= 2 each",
            )
        )
    cov = np.empty((n_expected, 3, 3))
    cov[flat] = data[:, 3:].reshape(-1, 3, 3)
    cov = 0.5 * (cov + np.swapaxes(cov, -1, -2))
    diag = np.diagonal(cov, axis1=-2, axis2=-1)
    if (diag < 0).any():
        bad = int(np.argwhere((diag < 0).any(axis=1))[0, 0])
        h, k, e = np.unravel_index(bad, [a.size for a in axes])
        raise InputDataError(
            format_error(
                f"Resolution table '{p}' has a negative variance",
                reason=f"at Qh={axes[0][h]:g}, Qk={axes[1][k]:g}, E={axes[2][e]:g}",
            )
        )
    cov = cov.reshape(axes[0].size, axes[1].size, axes[2].size, 3, 3)
    return ResolutionTable(axes[0], axes[1], axes[2], cov, path=str(p))


_EI_IN_NAME = re.compile(r"ei[_-]?(\d+(?:\.\d+)?)[^/\\]*\.(?:txt|dat)$", re.IGNORECASE)


class TableResolution(ResolutionModel):
    """Resolution from covariance tables, one per incident energy.

    Parameters
    ----------
    tables
        Incident energy (meV) -> table path (loaded lazily) or :class:`ResolutionTable`.
    intrinsic_fwhm
        Intrinsic width in meV.
    source
        Folder the tables came from (for :attr:`spec`).
    """

    kind = "tables"

    def __init__(
        self,
        tables: Mapping[float, str | os.PathLike | ResolutionTable],
        *,
        intrinsic_fwhm: float = 0.1,
        source: str | None = None,
    ) -> None:
        super().__init__(intrinsic_fwhm)
        if not tables:
            raise InputDataError(format_error("No resolution tables given", fix="give at least one Ei: table"))
        self._tables: dict[float, Any] = {float(k): v for k, v in tables.items()}
        self.source = source

    @classmethod
    def from_directory(cls, directory: str | os.PathLike, **kw: Any) -> "TableResolution":
        """Tables named ``*ei<Ei>*.txt`` (e.g. ``PCSMO_ei70_resolution.txt``) in a folder."""
        d = Path(directory)
        if not d.is_dir():
            raise InputDataError(
                format_error(f"Resolution table folder '{d}' does not exist", fix="check the tables:DIR argument")
            )
        found: dict[float, Path] = {}
        for f in sorted(d.iterdir()):
            m = _EI_IN_NAME.search(f.name)
            if m and f.is_file():
                found[float(m.group(1))] = f
        if not found:
            raise InputDataError(
                format_error(
                    f"Resolution table folder '{d}' has no tables",
                    reason="no file named like '*ei<Ei>*.txt' (e.g. PCSMO_ei70_resolution.txt)",
                    fix="put one 12-column table per incident energy there",
                )
            )
        return cls(found, source=str(d.resolve()), **kw)

    @property
    def incident_energies(self) -> list[float]:
        """Incident energies with a table, ascending."""
        return sorted(self._tables)

    def table(self, ei: float) -> ResolutionTable:
        """The (loaded) table of incident energy ``ei``."""
        ei = _check_ei(ei)
        keys = np.array(self.incident_energies)
        i = int(np.argmin(np.abs(keys - ei)))
        if abs(keys[i] - ei) > _EI_TOLERANCE:
            raise InputDataError(
                format_error(
                    f"No resolution table for Ei = {ei:g} meV",
                    reason=f"tables exist for Ei = {[float(k) for k in keys]} meV",
                    fix="add a table for this incident energy or use the built-in resolution",
                )
            )
        key = float(keys[i])
        t = self._tables[key]
        if not isinstance(t, ResolutionTable):
            t = load_resolution_table(t)
            self._tables[key] = t
        return t

    def covariance(self, qh, qk, e, ei):
        return self.table(ei).covariance(qh, qk, e)

    def check_coverage(self, ei, q_range, e_range):
        self.table(ei).check_coverage(q_range, e_range)

    @property
    def spec(self) -> str:
        return f"tables:{self.source}" if self.source else "tables"

    def describe(self):
        d = super().describe()
        d["incident_energies"] = self.incident_energies
        return d


def get_resolution(spec: "str | ResolutionModel | None" = "builtin") -> ResolutionModel:
    """Resolve a resolution argument.

    Parameters
    ----------
    spec
        A :class:`ResolutionModel`, or ``"builtin"``, ``"tables:DIR"``, ``"unconvolved"``
        (also ``"none"`` or None).

    Returns
    -------
    ResolutionModel
    """
    if isinstance(spec, ResolutionModel):
        return spec
    if spec is None:
        return IntrinsicResolution()
    s = str(spec)
    if s == "builtin":
        return BuiltinMAPSResolution()
    if s in ("unconvolved", "none", "intrinsic"):
        return IntrinsicResolution()
    if s.startswith("tables:") and len(s) > len("tables:"):
        return TableResolution.from_directory(s[len("tables:"):])
    raise InputDataError(
        format_error(
            "Unknown resolution",
            reason=f"got {spec!r}; allowed: 'builtin', 'tables:DIR', 'unconvolved' or a ResolutionModel",
        )
    )


def mosaic_covariance(qh: np.ndarray, qk: np.ndarray, e: np.ndarray, ei: float, sigma_rad: float,
                      lattice: Lattice = PCSMO_LATTICE) -> np.ndarray:
    """In-plane Q covariance (r.l.u.^2) added by an isotropic sample mosaic.

    A crystallite rotated by the small angle vector ``w`` (each component Gaussian with
    standard deviation ``sigma_rad``) sees ``Q`` at ``Q + w x Q``. With c along k_i the
    measured Q has the in-plane part ``(Q_x, Q_y)`` and the kinematic component along the
    beam ``Q_c = k_i - sqrt(k_f^2 - Q_perp^2)``, so the in-plane displacement has the
    covariance ``sigma^2 [[Q_c^2 + Q_y^2, -Q_x Q_y], [-Q_x Q_y, Q_c^2 + Q_x^2]]`` (1/A^2):
    rotations about c smear Q tangentially, tilts of c move the beam component into the plane.
    The change of the crystal-frame L is not included (the bilayer factor varies slowly in L).

    Parameters
    ----------
    qh, qk, e
        In-plane Q (r.l.u.) and energy transfer (meV), broadcastable.
    ei
        Incident energy (meV).
    sigma_rad
        Mosaic standard deviation per rotation axis, radians.
    lattice
        Cell of the r.l.u.

    Returns
    -------
    numpy.ndarray
        Shape ``(*broadcast_shape, 2, 2)``, order (Qh, Qk).
    """
    shape = np.broadcast_shapes(np.shape(qh), np.shape(qk), np.shape(e))
    qx = np.broadcast_to(np.asarray(qh, dtype=float) * lattice.astar, shape)
    qy = np.broadcast_to(np.asarray(qk, dtype=float) * lattice.bstar, shape)
    ki = float(wavevector(_check_ei(ei)))
    arg = (ei - np.asarray(e, dtype=float)) / E_TO_K2 - (qx**2 + qy**2)
    qc = np.where(arg > 0, ki - np.sqrt(np.abs(arg)), 0.0)  # inaccessible points: no beam term
    s2 = float(sigma_rad) ** 2
    out = np.empty(shape + (2, 2))
    out[..., 0, 0] = s2 * (qc**2 + qy**2) / lattice.astar**2
    out[..., 1, 1] = s2 * (qc**2 + qx**2) / lattice.bstar**2
    out[..., 0, 1] = out[..., 1, 0] = -s2 * qx * qy / (lattice.astar * lattice.bstar)
    return out


class MeasurementResolution(ResolutionModel):
    """An instrument resolution widened by the measurement model.

    The covariance is ``scale^2 * base(qh, qk, e, ei)`` plus, for a sample mosaic of FWHM
    ``mosaic_deg`` (degrees), :func:`mosaic_covariance` in the (Qh, Qk) block. The intrinsic
    width is the base model's (it is a property of the excitations, not of the instrument).
    ``scale = 1`` and ``mosaic_deg = 0`` give exactly the base covariance.

    Parameters
    ----------
    base
        The instrument model (any :class:`ResolutionModel`).
    scale
        Factor on the instrument widths (> 0).
    mosaic_deg
        Sample mosaic FWHM in degrees (>= 0).
    lattice
        Cell of the r.l.u. (for the mosaic term).
    """

    def __init__(self, base: ResolutionModel, *, scale: float = 1.0, mosaic_deg: float = 0.0,
                 lattice: Lattice = PCSMO_LATTICE) -> None:
        super().__init__(base.intrinsic_fwhm)
        self.base = base
        self.scale = float(scale)
        self.mosaic_deg = float(mosaic_deg)
        self.lattice = lattice
        self.kind = base.kind

    @property
    def mosaic_sigma_rad(self) -> float:
        """Mosaic standard deviation per axis in radians."""
        return np.deg2rad(self.mosaic_deg) / FWHM_PER_SIGMA

    def covariance(self, qh, qk, e, ei):
        cov = self.base.covariance(qh, qk, e, ei)
        if self.scale != 1.0:
            cov = cov * self.scale**2
        if self.mosaic_deg > 0.0:
            cov = np.array(cov, copy=True)
            cov[..., :2, :2] += mosaic_covariance(qh, qk, e, ei, self.mosaic_sigma_rad, self.lattice)
        return cov

    def check_coverage(self, ei, q_range, e_range):
        self.base.check_coverage(ei, q_range, e_range)

    @property
    def spec(self) -> str:
        return self.base.spec

    def describe(self):
        d = self.base.describe()
        d.update(resolution_scale=self.scale, mosaic_fwhm_deg=self.mosaic_deg)
        return d
