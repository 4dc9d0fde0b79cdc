"""Square-lattice J1-J2 Heisenberg antiferromagnet with Neel order (Rb2MnF4-like).

One MnF2 layer of the K2NiF4-type cell: chemical cell a = b = 4.2, c = 13.8 Angstrom,
Mn2+ (S = 5/2) on a square lattice. The Neel structure is described in the
sqrt(2) x sqrt(2) magnetic cell with vectors (a, a, 0), (a, -a, 0), (0, 0, c) and two
sites, (0, 0, 0) spin up and (a, 0, 0) spin down, moments along c (the easy axis of
Rb2MnF4). Layers are uncoupled (the interlayer coupling of the body-centred stacking
is frustrated and negligible), so the spectrum does not depend on L.
"""

from __future__ import annotations

from itertools import product

import numpy as np

from .lswt import Coupling, MagneticSite, SpinSystem

__all__ = ["SQUARE_CELL", "SQUARE_SPIN", "square_lattice_system", "square_bonds"]

#: Chemical cell (a, b, c) in Angstrom.
SQUARE_CELL = (4.2, 4.2, 13.8)
SQUARE_SPIN = 2.5


def _lattice() -> np.ndarray:
    a, _, c = SQUARE_CELL
    return np.array([[a, a, 0.0], [a, -a, 0.0], [0.0, 0.0, c]])


def _sites() -> tuple[MagneticSite, ...]:
    # fractional (1/2, 1/2, 0) of the magnetic cell is Cartesian (a, 0, 0)
    return (MagneticSite((0.0, 0.0, 0.0), SQUARE_SPIN, (0.0, 0.0, 1.0), "Mn2+", "Mn-up"),
            MagneticSite((0.5, 0.5, 0.0), SQUARE_SPIN, (0.0, 0.0, -1.0), "Mn2+", "Mn-dn"))


def square_bonds() -> dict[str, list[tuple[int, int, tuple[int, int, int]]]]:
    """``{"J1": [...], "J2": [...]}``: nearest (length a, 4 per site) and next-nearest
    (length a*sqrt(2), 4 per site) bonds, each listed once as ``(i, j, offset)``."""
    lat = _lattice()
    a = SQUARE_CELL[0]
    frac = np.array([s.position for s in _sites()])
    out: dict[str, list] = {"J1": [], "J2": []}
    for i, j in product(range(2), repeat=2):
        if j < i:
            continue
        for off in product((-1, 0, 1), (-1, 0, 1), (0,)):
            if i == j and not (off > (0, 0, 0)):
                continue
            length = np.linalg.norm((frac[j] + np.array(off) - frac[i]) @ lat)
            if abs(length - a) < 1e-9:
                out["J1"].append((i, j, off))
            elif abs(length - a * np.sqrt(2)) < 1e-9:
                out["J2"].append((i, j, off))
    return out


def square_lattice_system(J1: float, J2: float) -> SpinSystem:
    """The Neel-ordered J1-J2 system (J > 0 antiferromagnetic, meV)."""
    bonds = square_bonds()
    couplings = [Coupling(i, j, off, float(J), name)
                 for name, J in (("J1", J1), ("J2", J2)) for i, j, off in bonds[name]]
    return SpinSystem(_lattice(), _sites(), tuple(couplings))
