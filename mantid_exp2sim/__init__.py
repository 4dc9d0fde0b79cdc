"""mantid-exp2sim: machine learning for inelastic neutron scattering, as a Mantid plugin.

Importing the package never needs Mantid, PyTorch or onnxruntime. When Mantid is
importable, the package's algorithms are subscribed to Mantid's AlgorithmFactory
(see :mod:`mantid_exp2sim.algorithms`, the one place where that happens).
"""

from ._version import __version__
from .histogram import Axis, MDHisto

__all__ = ["__version__", "Axis", "MDHisto"]


def _register_with_mantid() -> None:
    import importlib.util

    if importlib.util.find_spec("mantid") is None:
        return
    from .algorithms import register_algorithms

    register_algorithms()


_register_with_mantid()
