"""mantid-exp2sim: machine learning for inelastic neutron scattering, as a Mantid plugin.

The public Python API is the task layer (:mod:`mantid_exp2sim.tasks`), exported here:

* :func:`translate_histo`: add or remove the instrument resolution (Exp2SimGAN);
* :func:`classify`: Goodenough or Dimer? DUQ classification of a PCSMO spectrum;
* :func:`score_histograms`: domain-of-applicability score against a model's training data;
* :func:`fit_spin_models`: fit spin-wave models to a measured mosaic and compare them;

with the data model :class:`MDHisto` / :class:`Axis`. Importing the package never needs
Mantid, PyTorch or onnxruntime. When Mantid is importable, the package's algorithms are
subscribed to Mantid's AlgorithmFactory (see :mod:`mantid_exp2sim.algorithms`, the one place
where that happens).
"""

from ._version import __version__
from .domain.score import DomainScore
from .histogram import Axis, MDHisto
from .tasks.classify import VERDICTS, Classification, classify
from .tasks.fit import SpinWaveFit, fit_spin_models
from .tasks.score import score_histograms
from .tasks.translate import translate_histo

__all__ = [
    "__version__",
    "Axis",
    "Classification",
    "DomainScore",
    "MDHisto",
    "SpinWaveFit",
    "VERDICTS",
    "classify",
    "fit_spin_models",
    "score_histograms",
    "translate_histo",
]


def _register_with_mantid() -> None:
    import importlib.util

    if importlib.util.find_spec("mantid") is None:
        return
    from .algorithms import register_algorithms

    register_algorithms()


_register_with_mantid()
