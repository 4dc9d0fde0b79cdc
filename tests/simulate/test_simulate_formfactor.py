"""Magnetic form factors: normalisation, shape, ion names, errors."""

import numpy as np
import pytest

from mantid_exp2sim.errors import InputDataError
from mantid_exp2sim.simulate.formfactor import (
    J0_COEFFICIENTS,
    available_ions,
    canonical_ion,
    form_factor,
)


@pytest.mark.parametrize("ion", sorted(J0_COEFFICIENTS))
def test_form_factor_is_one_at_zero_and_decreases(ion):
    A, a, B, b, C, c, D = J0_COEFFICIENTS[ion]
    assert abs(A + B + C + D - 1.0) < 2e-3
    np.testing.assert_allclose(form_factor(ion, 0.0), A + B + C + D)
    q = np.linspace(0.0, 8.0, 200)
    f = form_factor(ion, q)
    assert f.shape == q.shape
    assert np.all(np.diff(f) < 0)
    assert 0.0 < f[-1] < 0.5


def test_mn_valence_ordering_and_units():
    # higher valence: more contracted 3d shell -> slower fall-off in Q
    q = 3.0  # 1/Angstrom, s = q / 4 pi
    f2, f3, f4 = (float(form_factor(i, q)) for i in ("Mn2+", "Mn3+", "Mn4+"))
    assert f2 < f3 < f4 < 1.0
    A, a, B, b, C, c, D = J0_COEFFICIENTS["Mn4+"]
    s2 = (q / (4 * np.pi)) ** 2
    np.testing.assert_allclose(f4, A * np.exp(-a * s2) + B * np.exp(-b * s2) + C * np.exp(-c * s2) + D)
    np.testing.assert_allclose(form_factor("Mn3+", -q), f3)


@pytest.mark.parametrize("alias,name", [("Mn3+", "Mn3+"), ("Mn3", "Mn3+"), ("MMn3", "Mn3+"),
                                        ("mn4+", "Mn4+"), ("MMN2", "Mn2+"), ("MFe3", "Fe3+"),
                                        ("MNi2", "Ni2+")])
def test_ion_aliases(alias, name):
    assert canonical_ion(alias) == name


@pytest.mark.parametrize("bad", ["Mn7+", "Xx2", "", "Mn"])
def test_unknown_ion_lists_allowed(bad):
    with pytest.raises(ValueError) as err:
        form_factor(bad, 1.0)
    assert isinstance(err.value, InputDataError)
    assert repr(bad) in str(err.value)
    for ion in ("Mn2+", "Mn3+", "Mn4+"):
        assert ion in str(err.value)
    assert set(available_ions()) >= {"Mn2+", "Mn3+", "Mn4+"}
