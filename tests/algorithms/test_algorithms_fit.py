"""FitSpinWaveModel on a mosaic MDHistoWorkspace (real Mantid when importable, else the test double).

Small fits: every parameter fixed but the dimer's JFW, one Sobol start.
"""

from __future__ import annotations

import numpy as np
import pytest

import mantid_exp2sim  # noqa: F401 - importing the package registers the algorithms
from fit_helpers import TRUE_JFW, dimer_mosaic, fixed_all_but_jfw
from mantid_exp2sim.algorithms.FitSpinWaveModel import TABLE_COLUMNS
from workspace_helpers import make_ws

pytestmark = [pytest.mark.mantid]
pytest.importorskip("resins")

MOSAIC_DIMS = (("MosaicRow", "index", "General Frame", 0.0, 240.0),
               ("MosaicColumn", "index", "General Frame", 0.0, 400.0))


def fixed_text():
    return ",".join(f"{k}={v}" for k, v in fixed_all_but_jfw().items())


def create(api, ws, **props):
    alg = api.AlgorithmManager.create("FitSpinWaveModel")
    alg.setRethrows(True)
    alg.setProperty("InputWorkspace", ws)
    for k, v in props.items():
        alg.setProperty(k, v)
    return alg


def test_table_fit_and_residual(mantid):
    api, simpleapi = mantid
    signal, errors = dimer_mosaic()
    ws = make_ws(simpleapi, signal, MOSAIC_DIMS, "fit_in", errors=np.nan_to_num(errors))
    alg = create(api, ws, FixedParameters=fixed_text(), Starts=1, Seed=2, OutputWorkspace="fit_t",
                 OutputFitWorkspace="fit_f", OutputResidualWorkspace="fit_r")
    alg.execute()
    t = api.mtd["fit_t"]
    assert t.getColumnNames() == [c for _, c in TABLE_COLUMNS]
    assert t.rowCount() == 12  # 6 parameters per model
    rows = [t.row(i) for i in range(t.rowCount())]
    assert [r["Model"] for r in rows] == ["goodenough"] * 6 + ["dimer"] * 6
    jfw = next(r for r in rows if r["Model"] == "dimer" and r["Parameter"] == "JFW")
    assert jfw["Value"] == pytest.approx(TRUE_JFW, abs=0.05) and jfw["Status"] == "free" and jfw["Error"] >= 0
    assert all(r["Status"] == "fixed" and r["Error"] == 0 for r in rows if r["Parameter"] != "JFW")
    assert {r["Preferred"] for r in rows if r["Model"] == "dimer"} == {"yes"}
    assert {r["Preferred"] for r in rows if r["Model"] == "goodenough"} == {"no"}
    assert rows[0]["Chi2"] > jfw["Chi2"] and rows[0]["AIC"] > jfw["AIC"] and rows[0]["BIC"] > jfw["BIC"]
    assert jfw["R2"] > 0.99 and "dimer" in jfw["Statement"]
    fit, res = api.mtd["fit_f"], api.mtd["fit_r"]
    fs, rs = np.asarray(fit.getSignalArray()), np.asarray(res.getSignalArray())
    assert fs.shape == rs.shape == (240, 400)
    assert [fit.getDimension(i).name for i in range(2)] == ["MosaicRow", "MosaicColumn"]
    masked = ~np.isfinite(signal)
    assert np.isnan(fs[masked]).all() and np.isnan(rs[masked]).all()
    ok = np.isfinite(rs)
    np.testing.assert_allclose(rs[ok], signal[ok] - fs[ok], atol=1e-9)
    assert np.abs(rs[ok]).max() < 0.05 * np.nanmax(signal)


@pytest.mark.parametrize("props, key, needle", [
    ({"Models": ["nosuchmodel"]}, "Models", "Unknown model"),
    ({"Models": ["dimer"], "FixedParameters": "JFW=5"}, "FixedParameters", "outside the range"),
    ({"Models": ["dimer"], "FixedParameters": "JFW"}, "FixedParameters", "NAME=VALUE"),
])
def test_bad_options(mantid, props, key, needle):
    api, simpleapi = mantid
    ws = make_ws(simpleapi, dimer_mosaic()[0], MOSAIC_DIMS, "fit_bad")
    alg = create(api, ws, OutputWorkspace="fit_never", **props)
    issues = alg.validateInputs()
    assert needle in issues[key]
    with pytest.raises(Exception):
        alg.execute()
    assert "fit_never" not in api.mtd


@pytest.mark.parametrize("signal, needle", [
    (np.ones((20, 30)), "is not a 240x400 mosaic"),
    (np.full((240, 400), np.nan), "fully masked"),
])
def test_bad_input_workspace(mantid, signal, needle):
    api, simpleapi = mantid
    ws = make_ws(simpleapi, signal, MOSAIC_DIMS, "fit_bad_ws")
    alg = create(api, ws, OutputWorkspace="fit_never")
    assert needle in alg.validateInputs()["InputWorkspace"]


def test_cancel_through_progress(mantid, monkeypatch):
    import mantid_exp2sim.tasks.fit as task

    api, simpleapi = mantid
    ws = make_ws(simpleapi, dimer_mosaic()[0], MOSAIC_DIMS, "fit_cancel")
    alg = create(api, ws, FixedParameters=fixed_text(), Starts=0, OutputWorkspace="fit_cancelled")
    real = task.fit_spin_models
    calls = []

    def fit_then_cancel(*args, progress=None, **kwargs):
        def relay(fraction, message):
            calls.append(fraction)
            if len(calls) == 2:
                alg.cancel()  # as the Workbench's Cancel button does
            progress(fraction, message)

        return real(*args, progress=relay, **kwargs)

    monkeypatch.setattr(task, "fit_spin_models", fit_then_cancel)
    with pytest.raises(KeyboardInterrupt):
        alg.execute()
    assert "fit_cancelled" not in api.mtd
    assert len(calls) == 2 and calls[-1] < 1.0  # stopped at the first report after the request


def test_network_files_for_another_model_are_refused(mantid, tmp_path):
    torch = pytest.importorskip("torch")
    from mantid_exp2sim.models.regressor import ParameterRegressor
    from mantid_exp2sim.simulate import get_model
    from mantid_exp2sim.train.regressor import export_regressor

    api, simpleapi = mantid
    m = get_model("goodenough")
    names = list(m.parameter_names)
    torch.manual_seed(0)
    path = export_regressor(ParameterRegressor(6, widths=(4, 8, 8), hidden=16), tmp_path / "g.exp2sim.h5",
                            model="goodenough", names=names, ranges=[m.ranges[k] for k in names],
                            exporter="torchscript")
    ws = make_ws(simpleapi, dimer_mosaic()[0], MOSAIC_DIMS, "fit_net")
    alg = create(api, ws, Models=["dimer"], NetworkFiles=[str(path)], OutputWorkspace="fit_never")
    assert "is for another model" in alg.validateInputs()["NetworkFiles"]
    alg = create(api, ws, Models=["goodenough"], NetworkFiles=[str(path), str(path)], OutputWorkspace="fit_never")
    assert "Two networks" in alg.validateInputs()["NetworkFiles"]
    alg = create(api, ws, Models=["goodenough"], NetworkFiles=[str(path)], UseNetwork=False,
                 OutputWorkspace="fit_never")
    assert "UseNetwork is off" in alg.validateInputs()["NetworkFiles"]
    alg = create(api, ws, Models=["goodenough"], NetworkFiles=[str(path)], OutputWorkspace="fit_never")
    assert "NetworkFiles" not in alg.validateInputs()
