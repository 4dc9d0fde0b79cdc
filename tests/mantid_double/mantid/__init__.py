"""Test double of the ``mantid`` package (see ../README.md). Not real Mantid."""

from . import kernel, geometry, api  # noqa: F401  (real mantid imports these on import too)

__version__ = "0.0.0+testdouble"
#: Marker that tests can use to tell the double from real Mantid.
IS_TEST_DOUBLE = True
