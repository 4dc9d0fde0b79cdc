"""The spin system that linear spin-wave theory solves: sites, couplings, anisotropies.

A :class:`SpinSystem` is a magnetic unit cell (lattice, sites with their spin length, ordered
moment direction and magnetic ion), bilinear exchange couplings between sites (with the
lattice offset of the second site) and single-ion anisotropies. It only describes and checks
the system; :mod:`.lswt` compiles and diagonalises it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputDataError, format_error
from .formfactor import canonical_ion

__all__ = ["MagneticSite", "Coupling", "SingleIonAnisotropy", "SpinSystem"]




@dataclass(frozen=True)
class MagneticSite:
    """One magnetic site of the magnetic cell.

    Parameters
    ----------
    position
        Fractional coordinates in the magnetic cell (3,).
    spin
        Spin length S > 0.
    direction
        Ordered-moment direction, Cartesian (3,); normalised on construction.
    ion
        Form-factor ion (e.g. ``"Mn3+"``) or None for F = 1.
    label
        Free text (e.g. ``"Mn4-up"``).
    """

    position: tuple[float, float, float]
    spin: float
    direction: tuple[float, float, float]
    ion: str | None = None
    label: str = ""

    def __post_init__(self):
        pos = np.asarray(self.position, dtype=float)
        if pos.shape != (3,) or not np.all(np.isfinite(pos)):
            raise InputDataError(format_error(
                f"MagneticSite {self.label!r}: position must be 3 finite numbers",
                reason=f"got {self.position!r}", fix="give fractional (x, y, z)"))
        if not (np.isfinite(self.spin) and self.spin > 0):
            raise InputDataError(format_error(
                f"MagneticSite {self.label!r}: spin length must be > 0",
                reason=f"got S = {self.spin!r}", fix="use a positive spin length such as 5/2"))
        d = np.asarray(self.direction, dtype=float)
        nrm = np.linalg.norm(d) if d.shape == (3,) else np.nan
        if not (np.isfinite(nrm) and nrm > 0):
            raise InputDataError(format_error(
                f"MagneticSite {self.label!r}: direction must be a non-zero 3-vector",
                reason=f"got {self.direction!r}", fix="give the moment direction, e.g. (0, 1, 0)"))
        object.__setattr__(self, "position", tuple(float(v) for v in pos))
        object.__setattr__(self, "direction", tuple(float(v) for v in d / nrm))
        object.__setattr__(self, "spin", float(self.spin))
        if self.ion is not None:
            object.__setattr__(self, "ion", canonical_ion(self.ion))


@dataclass(frozen=True)
class Coupling:
    """A bond from site ``i`` (cell 0) to site ``j`` in cell ``offset``, listed once.

    ``J`` is a scalar (Heisenberg, meV, > 0 antiferromagnetic) or a 3x3 matrix.
    """

    i: int
    j: int
    offset: tuple[int, int, int]
    J: float | np.ndarray
    label: str = ""

    def matrix(self) -> np.ndarray:
        """The 3x3 exchange matrix in meV."""
        J = np.asarray(self.J, dtype=float)
        return J * np.eye(3) if J.ndim == 0 else J


@dataclass(frozen=True)
class SingleIonAnisotropy:
    """Single-ion term ``S_i . matrix . S_i`` (meV) on site ``site``."""

    site: int
    matrix: np.ndarray


@dataclass(frozen=True)
class SpinSystem:
    """Magnetic cell, ordered structure and Hamiltonian of one spin model.

    Parameters
    ----------
    lattice
        (3, 3) magnetic-cell vectors as rows, Cartesian, Angstrom.
    sites
        The N magnetic sites.
    couplings
        Bonds, each listed once (self-bonds ``i == j`` need a non-zero offset).
    anisotropies
        Optional single-ion terms.
    """

    lattice: np.ndarray
    sites: tuple[MagneticSite, ...]
    couplings: tuple[Coupling, ...]
    anisotropies: tuple[SingleIonAnisotropy, ...] = field(default_factory=tuple)

    def __post_init__(self):
        lat = np.asarray(self.lattice, dtype=float)
        if lat.shape != (3, 3) or not np.all(np.isfinite(lat)) or abs(np.linalg.det(lat)) < 1e-12:
            raise InputDataError(format_error(
                "SpinSystem.lattice must be a non-singular (3, 3) matrix of cell vectors",
                reason=f"got {self.lattice!r}", fix="give the three cell vectors as rows in Angstrom"))
        object.__setattr__(self, "lattice", lat)
        object.__setattr__(self, "sites", tuple(self.sites))
        object.__setattr__(self, "couplings", tuple(self.couplings))
        object.__setattr__(self, "anisotropies", tuple(self.anisotropies))
        n = len(self.sites)
        if n == 0:
            raise InputDataError(format_error(
                "SpinSystem.sites is empty", reason="at least one magnetic site is needed",
                fix="add MagneticSite entries"))
        if len(self.couplings) == 0:
            raise InputDataError(format_error(
                "SpinSystem.couplings is empty",
                reason="a spin-wave spectrum needs at least one exchange bond",
                fix="add Coupling entries (J > 0 antiferromagnetic)"))
        for c in self.couplings:
            if not (0 <= c.i < n and 0 <= c.j < n):
                raise InputDataError(format_error(
                    f"Coupling {c.label!r} refers to a site that does not exist",
                    reason=f"i = {c.i}, j = {c.j} but there are {n} sites", fix="use site indices 0..N-1"))
            if c.i == c.j and not any(c.offset):
                raise InputDataError(format_error(
                    f"Coupling {c.label!r} joins site {c.i} to itself in the same cell",
                    reason="offset (0, 0, 0)", fix="use SingleIonAnisotropy for on-site terms"))
            m = c.matrix()
            if m.shape != (3, 3) or not np.all(np.isfinite(m)):
                raise InputDataError(format_error(
                    f"Coupling {c.label!r}: J must be a finite scalar or 3x3 matrix",
                    reason=f"got {c.J!r}", fix="give J in meV"))
        for a in self.anisotropies:
            m = np.asarray(a.matrix, dtype=float)
            if not (0 <= a.site < n) or m.shape != (3, 3) or not np.all(np.isfinite(m)):
                raise InputDataError(format_error(
                    "SingleIonAnisotropy must name an existing site and hold a finite 3x3 matrix",
                    reason=f"site {a.site}, matrix {a.matrix!r}", fix="check the anisotropy list"))

    @property
    def n_sites(self) -> int:
        """Number N of magnetic sites (= number of modes)."""
        return len(self.sites)

    def positions_cartesian(self) -> np.ndarray:
        """(N, 3) site positions in Angstrom."""
        return np.array([s.position for s in self.sites]) @ self.lattice

    def bond_vectors(self) -> np.ndarray:
        """(n_bonds, 3) Cartesian bond vectors ``r_j + n @ lattice - r_i`` in Angstrom."""
        r = self.positions_cartesian()
        return np.array([r[c.j] + np.asarray(c.offset) @ self.lattice - r[c.i] for c in self.couplings])

    def reciprocal_lattice(self) -> np.ndarray:
        """(3, 3) reciprocal vectors as rows, 2 pi included (1/Angstrom)."""
        return 2.0 * np.pi * np.linalg.inv(self.lattice).T


# ----------------------------------------------------------------- compilation
