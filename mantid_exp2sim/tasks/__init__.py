"""The task layer: one Mantid-free module per user-facing task, the package's public Python API.

* :mod:`~mantid_exp2sim.tasks.translate`: add or remove the instrument resolution;
* :mod:`~mantid_exp2sim.tasks.classify`: spin-wave model classification of PCSMO spectra;
* :mod:`~mantid_exp2sim.tasks.score`: domain-of-applicability score;
* :mod:`~mantid_exp2sim.tasks.fit`: spin-wave model fitting and comparison.

Both front ends call these modules: the command line (:mod:`mantid_exp2sim.cli`) and the
Mantid algorithms (:mod:`mantid_exp2sim.algorithms`); neither imports the other. A task
module takes and returns :class:`~mantid_exp2sim.histogram.MDHisto` objects and plain
values, gets its bundles from :mod:`mantid_exp2sim.bundle.resolve`, runs networks through
:mod:`mantid_exp2sim.inference`, imports neither Mantid nor (at import time) torch or
onnxruntime, and raises :class:`~mantid_exp2sim.errors.Exp2SimError` subclasses with
what/why/fix messages. A new task (e.g. fitting) is a new module here, exported from the
package's ``__init__``, with a command module in ``cli/`` and, if wanted, an algorithm in
``algorithms/``. See docs/developer/architecture.md.

The task modules' names are those of their main functions, so the functions are exported
from the package top level (``mantid_exp2sim.classify``), not from this package.
"""
