"""Direct-geometry kinematics for a crystal with its c axis along the incident beam.

Geometry (MAPS, PCSMO; seed 000 Methods, seed 003 section 3.1): the crystallographic c axis
is parallel to the incident wave vector k_i, so the detectors image the a-b plane. With
``Q = k_i - k_f`` the in-plane momentum transfer is ``Q_perp = |k_f,perp|`` and the component
along c is ``Q_c = k_i - k_f,z``. For forward scattering (all MAPS detectors are at
2theta < 90 degrees) ``k_f,z = +sqrt(k_f^2 - Q_perp^2)``, so every pixel and energy transfer
sees one L::

    L = c / (2 pi) * (k_i - sqrt(k_f^2 - Q_perp^2)),    k_f^2 = k_i^2 - E / 2.0723

(k in 1/Angstrom, E in meV). A point (Q_perp, E) is reachable only where ``E < Ei`` and
``k_f >= Q_perp``.

Units: energies in meV, wave vectors in 1/Angstrom, in-plane Q in r.l.u. of the
high-temperature cell (a = 5.408, b = 5.4599, c = 19.266 Angstrom by default).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputDataError, format_error

__all__ = [
    "E_TO_K2",
    "PCSMO_LATTICE",
    "Lattice",
    "wavevector",
    "final_wavevector",
    "q_perp",
    "kinematic_l",
    "DetectorCoverage",
    "MAPS_COVERAGE",
]

#: E (meV) = E_TO_K2 * k^2 (k in 1/Angstrom), i.e. hbar^2 / (2 m_n).
E_TO_K2 = 2.072124


@dataclass(frozen=True)
class Lattice:
    """Orthorhombic lattice constants in Angstrom (only a, b, c are used)."""

    a: float = 5.408
    b: float = 5.4599
    c: float = 19.266

    @property
    def astar(self) -> float:
        """2 pi / a in 1/Angstrom."""
        return 2.0 * np.pi / self.a

    @property
    def bstar(self) -> float:
        """2 pi / b in 1/Angstrom."""
        return 2.0 * np.pi / self.b


#: The high-temperature PCSMO cell used by the published mosaic.
PCSMO_LATTICE = Lattice()


def wavevector(energy: np.ndarray | float) -> np.ndarray:
    """Neutron wave vector in 1/Angstrom for a kinetic energy in meV (NaN below 0)."""
    e = np.asarray(energy, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.sqrt(np.where(e >= 0, e, np.nan) / E_TO_K2)


def final_wavevector(ei: float, e: np.ndarray | float) -> np.ndarray:
    """k_f in 1/Angstrom for incident energy ``ei`` and energy transfer ``e`` (NaN if e > ei)."""
    return wavevector(float(ei) - np.asarray(e, dtype=float))


def q_perp(qh: np.ndarray, qk: np.ndarray, lattice: Lattice = PCSMO_LATTICE) -> np.ndarray:
    """In-plane momentum transfer |Q_perp| in 1/Angstrom for (qh, qk) in r.l.u."""
    return np.hypot(np.asarray(qh, float) * lattice.astar, np.asarray(qk, float) * lattice.bstar)


def kinematic_l(
    qh: np.ndarray,
    qk: np.ndarray,
    e: np.ndarray,
    ei: float,
    lattice: Lattice = PCSMO_LATTICE,
) -> np.ndarray:
    """The L (r.l.u. of c*) measured at in-plane (qh, qk) and energy transfer e.

    Parameters
    ----------
    qh, qk
        In-plane momentum in r.l.u., broadcastable with ``e``.
    e
        Energy transfer in meV.
    ei
        Incident energy in meV.

    Returns
    -------
    numpy.ndarray
        L in r.l.u.; NaN where the point is kinematically unreachable (``k_f < Q_perp``).
    """
    ki = float(wavevector(ei))
    kf = final_wavevector(ei, e)
    qp = q_perp(qh, qk, lattice)
    with np.errstate(invalid="ignore"):
        kz = np.sqrt(kf**2 - qp**2)
    return lattice.c / (2.0 * np.pi) * (ki - kz)


@dataclass(frozen=True)
class DetectorCoverage:
    """Scattering angles a direct-geometry detector array covers.

    A point is covered when it is kinematically reachable (forward scattering), its
    scattering angle lies in ``two_theta_range`` and, when ``projected_half_angle`` is set,
    the angles of k_f projected on the (a, c) and (b, c) planes are both within
    +/- ``projected_half_angle``: a flat, square detector bank centred on the beam.

    Parameters
    ----------
    two_theta_range
        (minimum, maximum) scattering angle 2theta in degrees.
    projected_half_angle
        Half-width in degrees of the square bank seen from the sample, or None.
    """

    two_theta_range: tuple[float, float] = (1.5, 60.0)
    projected_half_angle: float | None = 20.0

    def __post_init__(self) -> None:
        lo, hi = (float(x) for x in self.two_theta_range)
        if not (0.0 <= lo < hi <= 90.0):
            raise InputDataError(
                format_error(
                    "two_theta_range is invalid",
                    reason=f"got {self.two_theta_range!r}; need 0 <= minimum < maximum <= 90 degrees",
                    fix="give the forward scattering angles the detectors cover",
                )
            )
        object.__setattr__(self, "two_theta_range", (lo, hi))
        if self.projected_half_angle is not None and not (0.0 < float(self.projected_half_angle) < 90.0):
            raise InputDataError(
                format_error(
                    "projected_half_angle is invalid",
                    reason=f"got {self.projected_half_angle!r}; need a value in (0, 90) degrees or None",
                )
            )

    def covered(
        self,
        qh: np.ndarray,
        qk: np.ndarray,
        e: np.ndarray,
        ei: float,
        lattice: Lattice = PCSMO_LATTICE,
    ) -> np.ndarray:
        """Boolean array (broadcast shape of the inputs): True where a detector sees the point."""
        kf = final_wavevector(ei, e)
        qx = np.asarray(qh, float) * lattice.astar
        qy = np.asarray(qk, float) * lattice.bstar
        qp = np.hypot(qx, qy)
        with np.errstate(invalid="ignore", divide="ignore"):
            reachable = np.isfinite(kf) & (kf > 0) & (qp <= kf)
            kz = np.sqrt(np.where(reachable, kf**2 - qp**2, 1.0))
            two_theta = np.degrees(np.arctan2(qp, kz))
        lo, hi = self.two_theta_range
        ok = reachable & (two_theta >= lo) & (two_theta <= hi)
        if self.projected_half_angle is not None:
            lim = np.tan(np.radians(float(self.projected_half_angle)))
            ok &= (np.abs(qx) <= lim * kz) & (np.abs(qy) <= lim * kz)
        return ok

    def describe(self) -> dict:
        """JSON-safe description."""
        return {
            "two_theta_range": list(self.two_theta_range),
            "projected_half_angle": None if self.projected_half_angle is None else float(self.projected_half_angle),
        }


#: MAPS as used for the PCSMO cuts: 2theta from 1.5 (edge of the beam hole) to 60 degrees,
#: and the low-angle bank's square of +/-20 degrees, which limits the published coverage
#: (measured from ``nanmask.mat``: the largest covered projected angles are 20-22 degrees and
#: the largest 2theta about 27 degrees, the corner of that square).
MAPS_COVERAGE = DetectorCoverage()
