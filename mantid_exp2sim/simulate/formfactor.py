"""Magnetic form factors in the dipole approximation, ``<j0>`` only.

The spherical ``<j0>(s)`` radial integral is written with the usual 7-coefficient
analytic approximation (P. J. Brown, International Tables for Crystallography,
Vol. C, section 4.4.5, Table 4.4.5.2)::

    <j0>(s) = A exp(-a s^2) + B exp(-b s^2) + C exp(-c s^2) + D,   s = |Q| / (4 pi)

with ``|Q|`` in 1/Angstrom. For spin-only ions (g = 2, as for the Mn ions used
here) the dipole form factor ``<j0> + (1 - 2/g) <j2>`` reduces to ``<j0>``.

The coefficients below are Brown's tabulated values (the same numbers are in the
FullProf/CrysFML ``MMN2``, ``MMN3``, ``MMN4`` tables); ``F(0) = A + B + C + D`` is 1
to within the 1e-3 rounding of the table.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..errors import InputDataError, format_error

__all__ = ["J0_COEFFICIENTS", "available_ions", "form_factor", "canonical_ion"]

#: ``(A, a, B, b, C, c, D)`` of ``<j0>`` per ion (Brown, ITC Vol. C, Table 4.4.5.2).
J0_COEFFICIENTS: Mapping[str, tuple[float, float, float, float, float, float, float]] = {
    "Mn2+": (0.4220, 17.6840, 0.5948, 6.0050, 0.0043, -0.6090, -0.0219),
    "Mn3+": (0.4198, 14.2829, 0.6054, 5.4689, 0.9241, -0.0088, -0.9498),
    "Mn4+": (0.3760, 12.5661, 0.6602, 5.1329, -0.0372, 0.5630, 0.0011),
    "Fe2+": (0.0263, 34.9597, 0.3668, 15.9435, 0.6188, 5.5935, -0.0119),
    "Fe3+": (0.3972, 13.2442, 0.6295, 4.9034, -0.0314, 0.3496, 0.0044),
    "Ni2+": (0.0163, 35.8826, 0.3916, 13.2233, 0.6052, 4.3388, -0.0133),
    "Cu2+": (0.0232, 34.9686, 0.4023, 11.5640, 0.5882, 3.8428, -0.0137),
}

# Accepted spellings: "Mn3+", "Mn3", "MMn3", "MN3", "mn3+" -> "Mn3+".
def canonical_ion(name: str) -> str:
    """Return the canonical ion name (``"Mn3+"``) for a spelling such as ``"MMn3"``.

    Raises
    ------
    InputDataError
        If the ion is not tabulated; the message lists the allowed ions.
    """
    if not isinstance(name, str):
        raise InputDataError(format_error(
            "Form-factor ion must be a string",
            reason=f"got {name!r} of type {type(name).__name__}",
            fix=f"use one of {', '.join(available_ions())}"))
    key = name.strip().replace("+", "")
    if key[:1].upper() == "M" and len(key) > 2 and key[1:2].upper() in "MNFC":
        # SpinW / FullProf style with a leading "M" (MMn3, MFe2, MNi2, MCu2)
        rest = key[1:]
        if rest[:2].capitalize() in {k[:2] for k in J0_COEFFICIENTS}:
            key = rest
    cand = key[:2].capitalize() + key[2:] + "+"
    if cand in J0_COEFFICIENTS:
        return cand
    raise InputDataError(format_error(
        f"Unknown magnetic form-factor ion {name!r}",
        reason=f"tabulated ions are {', '.join(available_ions())}",
        fix="pick one of those names (e.g. 'Mn3+') or add its Brown <j0> coefficients "
            "to mantid_exp2sim.simulate.formfactor.J0_COEFFICIENTS"))


def available_ions() -> list[str]:
    """Names of the ions with tabulated ``<j0>`` coefficients."""
    return sorted(J0_COEFFICIENTS)


def form_factor(ion: str, q: np.ndarray | float) -> np.ndarray:
    """Magnetic form factor ``F(|Q|) = <j0>(|Q| / 4 pi)`` (amplitude, not squared).

    Parameters
    ----------
    ion
        Ion name such as ``"Mn3+"`` (SpinW's ``"MMn3"`` and ``"Mn3"`` are accepted).
    q
        Momentum transfer magnitude ``|Q|`` in 1/Angstrom, any shape (negative values
        are treated as ``|q|``).

    Returns
    -------
    numpy.ndarray
        ``F`` with the shape of ``q``; ``F(0) ~ 1``.
    """
    A, a, B, b, C, c, D = J0_COEFFICIENTS[canonical_ion(ion)]
    s2 = (np.asarray(q, dtype=float) / (4.0 * np.pi)) ** 2
    return A * np.exp(-a * s2) + B * np.exp(-b * s2) + C * np.exp(-c * s2) + D
