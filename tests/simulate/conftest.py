"""Fixtures of the simulator tests: a small analytic spin model (test double) and data paths.

The double follows the ``SpinModel`` contract (``parameter_names``, ``defaults``, ``ranges``,
``sample``, ``validate``, ``spectrum``, ``spectrum_kinematic``) with two twins of one
dispersive mode each and an L-dependent intensity, so the simulator's own code can be tested
without the LSWT engine. Its source is also written to a temporary module for tests that
need it in another process (spawned workers, a killed writer subprocess).
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest

DOUBLE_MODULE = "exp2sim_sim_double"

DOUBLE_SOURCE = '''
import time
import numpy as np
from mantid_exp2sim.errors import InputDataError, format_error
from mantid_exp2sim.simulate.kinematics import kinematic_l


class AnalyticModel:
    """w_1 = gap + J (3 - 2 cos(pi qh) - cos(pi qk)); twin 2 swaps qh and qk.

    Intensity of each twin's mode: 0.5 * (1 + 0.3 cos(0.4 pi l)) (volume 0.5 each);
    modes out of kinematic reach have intensity 0. ``delay`` (s) slows every call.
    """

    name = "analytic"
    parameter_names = ("J", "gap")
    defaults = {"J": 2.0, "gap": 3.0}
    ranges = {"J": (0.5, 5.0), "gap": (1.0, 6.0)}
    delay = 0.0

    def validate(self, params):
        if isinstance(params, dict):
            vals = [params[n] for n in self.parameter_names]
        else:
            vals = list(np.asarray(params, dtype=float).reshape(-1))
        out = np.array(vals, dtype=float)
        for name, v in zip(self.parameter_names, out):
            lo, hi = self.ranges[name]
            if not lo <= v <= hi:
                raise InputDataError(format_error(
                    f"Parameter {name!r} of model 'analytic' is out of range",
                    reason=f"got {v!r}; allowed range [{lo}, {hi}]"))
        return out

    def sample(self, rng):
        lo = np.array([self.ranges[n][0] for n in self.parameter_names])
        hi = np.array([self.ranges[n][1] for n in self.parameter_names])
        return lo + (hi - lo) * rng.random(2)

    def energies(self, params, qh, qk):
        J, gap = self.validate(params)
        qh = np.asarray(qh, float)
        qk = np.asarray(qk, float)
        w1 = gap + J * (3 - 2 * np.cos(np.pi * qh) - np.cos(np.pi * qk))
        w2 = gap + J * (3 - np.cos(np.pi * qh) - 2 * np.cos(np.pi * qk))
        return np.stack([w1, w2], axis=-1)

    def spectrum(self, params, qh, qk, l):
        if self.delay:
            time.sleep(self.delay)
        e = self.energies(params, qh, qk)
        l = np.broadcast_to(np.asarray(l, float), np.shape(qh))
        inten = 0.5 * (1 + 0.3 * np.cos(0.4 * np.pi * l))
        return e, np.repeat(inten[..., None], 2, axis=-1)

    def spectrum_kinematic(self, params, qh, qk, ei):
        if self.delay:
            time.sleep(self.delay)
        e = self.energies(params, qh, qk)
        l = kinematic_l(np.asarray(qh)[:, None], np.asarray(qk)[:, None], e, ei)
        inten = np.where(np.isfinite(l), 0.5 * (1 + 0.3 * np.cos(0.4 * np.pi * np.nan_to_num(l))), 0.0)
        return e, inten


class SlowModel(AnalyticModel):
    delay = 0.4


class SpotModel(AnalyticModel):
    """One flat mode at ``energy`` with intensity 1 only within 0.01 r.l.u. of ``spot``."""

    name = "spot"
    spot = (0.525, -0.275)
    energy = 15.5

    def spectrum_kinematic(self, params, qh, qk, ei):
        qh = np.asarray(qh, float)
        qk = np.asarray(qk, float)
        near = (np.abs(qh - self.spot[0]) < 0.01) & (np.abs(qk - self.spot[1]) < 0.01)
        return np.full((qh.size, 1), self.energy), near[:, None].astype(float)
'''


def _load_double() -> types.ModuleType:
    mod = types.ModuleType(DOUBLE_MODULE)
    exec(compile(DOUBLE_SOURCE, f"<{DOUBLE_MODULE}>", "exec"), mod.__dict__)
    return mod


_double = _load_double()
AnalyticModel = _double.AnalyticModel
SpotModel = _double.SpotModel


@pytest.fixture
def analytic_model():
    """An instance of the analytic test-double model."""
    return AnalyticModel()


@pytest.fixture
def spot_model():
    """A model with a single point feature (see SpotModel)."""
    return SpotModel()


@pytest.fixture
def mosaic_spot_model():
    """SpotModel with its spot on the centre of mosaic bin (Qh, Qk) = (30, 14): the mosaic's
    40 bins are centred on -1 ... +1 in steps of 2/39."""
    model = SpotModel()
    model.spot = (-1.0 + 30 * 2 / 39, -1.0 + 14 * 2 / 39)
    return model


@pytest.fixture
def double_module(tmp_path, monkeypatch):
    """Write the double to an importable module; returns its name (also on PYTHONPATH)."""
    d = tmp_path / "double_pkg"
    d.mkdir()
    (d / f"{DOUBLE_MODULE}.py").write_text(DOUBLE_SOURCE)
    monkeypatch.syspath_prepend(str(d))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(d), str(Path(__file__).resolve().parents[2])]
                                                      + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    sys.modules.pop(DOUBLE_MODULE, None)
    yield DOUBLE_MODULE
    sys.modules.pop(DOUBLE_MODULE, None)


@pytest.fixture(scope="session")
def pcsmo_dir() -> Path:
    """The shared PCSMO folder ($EXP2SIM_SHARED/data/pcsmo or <repo>/../shared/...); skips if absent."""
    root = os.environ.get("EXP2SIM_SHARED") or str(Path(__file__).resolve().parents[3] / "shared")
    d = Path(root) / "data" / "pcsmo"
    if not (d / "PCSMO_ei70_resolution.txt").is_file():
        pytest.skip(f"shared PCSMO data not found at {d}")
    return d


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
