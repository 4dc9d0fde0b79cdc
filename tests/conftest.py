"""Test-wide setup: real Mantid when importable, otherwise the test double.

``tests/mantid_double`` (a fake ``mantid`` package following the project's Mantid fact
sheet) is put on ``sys.path`` **only** when ``import mantid`` fails, so every Mantid test
runs unchanged against real Mantid where it is installed. This must happen before
``mantid_exp2sim`` is first imported, because importing the package registers its
algorithms with whichever ``mantid`` is found.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_DOUBLE = Path(__file__).resolve().parent / "mantid_double"


def _use_real_mantid() -> bool:
    try:
        import mantid  # noqa: F401
    except ImportError:
        return False
    return not getattr(mantid, "IS_TEST_DOUBLE", False)


REAL_MANTID = _use_real_mantid()
if not REAL_MANTID and str(_DOUBLE) not in sys.path:
    sys.path.insert(0, str(_DOUBLE))


@pytest.fixture(scope="session")
def real_mantid() -> bool:
    """True when the tests run against real Mantid, False with the test double."""
    return REAL_MANTID


@pytest.fixture(autouse=True)
def _clear_mantid_ads():
    """Leave the AnalysisDataService empty after every test that used Mantid."""
    yield
    api = sys.modules.get("mantid.api")
    if api is not None and hasattr(api, "AnalysisDataService"):
        api.AnalysisDataService.clear()
