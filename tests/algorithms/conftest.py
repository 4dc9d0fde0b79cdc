"""Fixtures of the algorithm tests."""

import pytest


@pytest.fixture()
def mantid():
    """``(mantid.api, mantid.simpleapi)``: real Mantid or the test double (see tests/conftest.py)."""
    from mantid import api, simpleapi

    return api, simpleapi
