"""Fitting measurement-model parameters together with exchange constants (WithMeasurement)."""

from __future__ import annotations

import numpy as np
import pytest

from mantid_exp2sim.errors import InputDataError
from mantid_exp2sim.fitting import PlanEvaluator, WithMeasurement, fit_model
from mantid_exp2sim.simulate import get_model, plan_mosaic, simulate_plan
from mantid_exp2sim.simulate.measurement_model import MeasurementModel

pytest.importorskip("resins")


def _plan():
    return plan_mosaic(ei_list=(25.0, 70.0), q_bins=12)


@pytest.mark.parametrize("kw", [{"twin_fraction": 0.8}, {"mosaic": 2.5, "resolution_scale": 1.4},
                                {"kf_ki": True, "twin_fraction": 0.2}])
def test_evaluator_equals_simulate_plan_with_measurement(kw):
    m = get_model("goodenough")
    plan = _plan()
    ref = simulate_plan(plan, m, None, want=(True, False), **kw)[0].signal
    out = PlanEvaluator(m, plan)(m.defaults, **kw)
    ok = np.isfinite(ref)
    np.testing.assert_allclose(out[ok], ref[ok], rtol=1e-10, atol=1e-12 * np.abs(ref[ok]).max())
    assert np.nanmax(np.abs(ref - simulate_plan(plan, m, None, want=(True, False))[0].signal)) > 1e-3 * np.nanmax(ref)


def test_calibration_recovers_known_nuisances():
    """A synthetic measurement with known twin fraction, mosaic, JFW, scale and background."""
    m = get_model("dimer")
    plan = _plan()
    true = dict(m.defaults, JFW=-9.0)
    clean = simulate_plan(plan, m, true, want=(True, False), twin_fraction=0.7, mosaic=2.0)[0].signal
    data = 40.0 * clean + 0.2
    err = np.where(np.isfinite(data), 0.01 * np.nanmean(data), np.nan)
    fixed = {k: v for k, v in true.items() if k != "JFW"}
    spec = WithMeasurement(m, MeasurementModel(), free=("twin_fraction", "mosaic"))
    r = fit_model(data, spec, plan=plan, errors=err, fixed=fixed, n_sobol=2, n_local=1, workers=2, coarse=1,
                  scan_rounds=0)
    assert r.parameter_names[-2:] == ("twin_fraction", "mosaic")
    assert r.values["twin_fraction"] == pytest.approx(0.7, abs=2e-3)
    assert r.values["mosaic"] == pytest.approx(2.0, abs=2e-2)
    assert r.values["JFW"] == pytest.approx(-9.0, abs=1e-2)
    assert r.nuisance["scale[Ei=25]"] == pytest.approx(40.0, rel=1e-2)
    assert r.errors["twin_fraction"] > 0


def test_with_measurement_bad_input():
    with pytest.raises(InputDataError, match="free measurement"):
        WithMeasurement("goodenough", free=("temperature",))
    with pytest.raises(InputDataError, match="free measurement"):
        WithMeasurement("goodenough", free=("mosaic", "mosaic"))
