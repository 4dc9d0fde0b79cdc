"""Spin-wave simulator: PCSMO spin models, MAPS resolution, coverage, spectra and data sets.

Public entry points (numpy/scipy only; the built-in resolution needs ``resins``):

* spectra: :func:`simulate_mosaic_pair`, :func:`simulate_volume_pair`,
  :func:`simulate_e_slice_pair`, :func:`simulate_qe_slice_pair` (and the single-spectrum
  ``simulate_mosaic``, ``simulate_volume``, ``simulate_e_slice``, ``simulate_qe_slice``),
  each returning :class:`~mantid_exp2sim.histogram.MDHisto` objects, or
  :func:`simulate_pair` by name;
* representations: :data:`REPRESENTATIONS` (name -> planner, defaults) and the planners
  ``plan_mosaic``, ``plan_volume``, ``plan_e_slice``, ``plan_qe_slice``;
* resolution: :class:`BuiltinMAPSResolution`, :class:`TableResolution`,
  :class:`IntrinsicResolution`, :func:`load_resolution_table`, :func:`get_resolution`;
* coverage: :class:`DetectorCoverage`, :data:`MAPS_COVERAGE`, :func:`load_mask`;
* noise: :class:`PoissonNoise`, :class:`SmoothBackground`;
* data sets: :func:`write_dataset`, :class:`DatasetSpec`, :class:`SpectraDataset` and the
  ``exp2sim-simulate`` command (:mod:`.cli`);
* models: ``get_model`` and ``list_models`` from :mod:`.spin_models` (imported lazily).
"""

from __future__ import annotations

from typing import Any

from .coverage import kinematic_mask, load_mask
from .dataset import DatasetSpec, SpectraDataset, sample_rng, write_dataset
from .kinematics import MAPS_COVERAGE, PCSMO_LATTICE, DetectorCoverage, Lattice, kinematic_l
from .noise import PoissonNoise, SmoothBackground
from .resolution import (
    BuiltinMAPSResolution,
    IntrinsicResolution,
    ResolutionModel,
    ResolutionTable,
    TableResolution,
    get_resolution,
    load_resolution_table,
)
from .representations import REPRESENTATIONS, plan_e_slice, plan_mosaic, plan_qe_slice, plan_volume
from . import spectra as _spectra
from .spectra import *  # noqa: F403 - its public names, listed once in spectra.__all__

__all__ = [
    *_spectra.__all__,
    "REPRESENTATIONS",
    "plan_mosaic",
    "plan_volume",
    "plan_e_slice",
    "plan_qe_slice",
    "ResolutionModel",
    "BuiltinMAPSResolution",
    "TableResolution",
    "ResolutionTable",
    "IntrinsicResolution",
    "load_resolution_table",
    "get_resolution",
    "DetectorCoverage",
    "MAPS_COVERAGE",
    "Lattice",
    "PCSMO_LATTICE",
    "kinematic_l",
    "kinematic_mask",
    "load_mask",
    "PoissonNoise",
    "SmoothBackground",
    "DatasetSpec",
    "SpectraDataset",
    "write_dataset",
    "sample_rng",
    "get_model",
    "list_models",
]


def get_model(name: str) -> Any:
    """The spin model called ``name`` (see :mod:`.spin_models`)."""
    from .spin_models import get_model as _get

    return _get(name)


def list_models() -> list[str]:
    """Names accepted by :func:`get_model`."""
    from .spin_models import list_models as _list

    return _list()
