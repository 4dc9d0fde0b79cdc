"""The engine with the real simulator: the cached evaluator, a small fit, bad input, the released data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from mantid_exp2sim.errors import InputDataError
from mantid_exp2sim.fitting import PlanEvaluator, fit_model, prepare_data
from mantid_exp2sim.simulate import get_model, plan_mosaic, plan_qe_slice, plan_volume, simulate_plan

pytest.importorskip("resins")

SHARED = Path(os.environ.get("EXP2SIM_SHARED", Path(__file__).resolve().parents[3] / "shared"))
MEASURED = SHARED / "data" / "pcsmo-measured" / "measured_ei25_35_50.npy"


def small_mosaic_plan():
    return plan_mosaic(ei_list=(25.0, 70.0), q_bins=12)


@pytest.mark.parametrize("name", ["goodenough", "dimer", "square_j1j2"])
def test_evaluator_equals_simulate_plan(name):
    m = get_model(name)
    rng = np.random.default_rng(4)
    p = m.sample(rng, stable_only=True)
    plans = [small_mosaic_plan(), plan_volume(ei=50.0, bins=(9, 8, 7)),
             plan_qe_slice(ei=35.0, bins=(15, 12), start=(-1, -0.5), end=(1, 0.5))]
    for plan in plans:
        ref = simulate_plan(plan, m, p, want=(True, False))[0].signal
        ev = PlanEvaluator(m, plan)
        assert ev.fast
        out = ev(p)
        assert np.array_equal(np.isfinite(out), np.isfinite(ref))
        ok = np.isfinite(ref)
        np.testing.assert_allclose(out[ok], ref[ok], rtol=1e-10, atol=1e-12 * np.abs(ref[ok]).max())
        generic = PlanEvaluator(m, plan, fast=False)
        assert not generic.fast
        np.testing.assert_allclose(generic(p)[ok], ref[ok], rtol=1e-10, atol=1e-12 * np.abs(ref[ok]).max())


def test_evaluator_survives_unstable_parameters():
    m = get_model("goodenough")
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = m.sample(rng)
        if not m.is_stable(p):
            break
    else:  # pragma: no cover - the ranges hold unstable states
        pytest.skip("no unstable draw")
    ev = PlanEvaluator(m, small_mosaic_plan())
    out = ev(p)
    assert ev.last_unstable_fraction > 0
    assert np.isfinite(out[np.isfinite(ev(m.defaults))]).all()


def test_small_real_fit_recovers_parameters():
    m = get_model("dimer")
    plan = small_mosaic_plan()
    true = dict(m.defaults, JFW=-9.0, JA1=1.3)
    clean = simulate_plan(plan, m, true, want=(True, False))[0].signal
    data = 40.0 * clean + 0.2
    err = np.where(np.isfinite(data), 0.01 * np.nanmean(data), np.nan)
    fixed = {k: v for k, v in true.items() if k not in ("JFW", "JA1")}
    r = fit_model(data, m, plan=plan, errors=err, fixed=fixed, n_sobol=2, n_local=1, workers=2)
    assert r.values["JFW"] == pytest.approx(-9.0, rel=1e-5)
    assert r.values["JA1"] == pytest.approx(1.3, rel=1e-5)
    assert r.nuisance["scale[Ei=25]"] == pytest.approx(40.0, rel=1e-5)
    assert r.nuisance["background[Ei=70]"] == pytest.approx(0.2, abs=1e-4)
    assert r.free == ("JFW", "JA1") and r.unstable_fraction == 0.0
    assert r.best_fit.shape == data.shape
    assert r.nfev_coarse > 0 and r.starts[-1].source == "polish" and r.starts[0].stage == "coarse"


def test_coarsen_merges_2x2_bins():
    from mantid_exp2sim.fitting.data import coarsen

    plan = small_mosaic_plan()
    rng = np.random.default_rng(0)
    y = rng.random(plan.shape)
    y[0, 0] = np.nan
    err = np.full(plan.shape, 0.2)
    fd = prepare_data(y, plan=plan, errors=err)
    c = coarsen(fd, 2)
    assert c.shape == (plan.shape[0] // 2, plan.shape[1] // 2) and c.plan.shape == c.shape
    for i, j in zip(*np.nonzero(c.fitted)):
        sel = fd.fitted[2 * i:2 * i + 2, 2 * j:2 * j + 2]
        k = sel.sum()
        assert c.signal[i, j] == pytest.approx(y[2 * i:2 * i + 2, 2 * j:2 * j + 2][sel].mean())
        assert c.sigma[i, j] == pytest.approx(0.2 * np.sqrt(k) / k)
    assert np.array_equal(c.fitted, fd.fitted.reshape(c.shape[0], 2, c.shape[1], 2).any(axis=(1, 3)))
    assert not fd.fitted[0, 0] and c.fitted.sum() > 0
    assert c.group_names == fd.group_names and set(np.unique(c.groups[c.fitted])) == {0, 1}
    assert int(c.plan.metadata["q_bins"]) == 6
    assert coarsen(fd, 5) is None  # 12 bins are not a multiple of 5


def test_spin_model_bad_input():
    data = np.ones((240, 400))
    with pytest.raises(InputDataError, match="Unknown spin model"):
        fit_model(data, "heisenberg_chain", errors=data)
    with pytest.raises(InputDataError, match="matches no representation"):
        fit_model(np.ones((100, 100)), "goodenough")
    with pytest.raises(InputDataError, match="no unmasked bin"):
        fit_model(np.full((240, 400), np.nan), "goodenough")
    with pytest.raises(InputDataError, match="outside its range"):
        fit_model(data, "goodenough", errors=data, fixed={"JF1": 5.0})
    with pytest.raises(InputDataError, match="does not match the plan"):
        fit_model(np.ones((10, 10)), "goodenough", plan=small_mosaic_plan(), errors=np.ones((10, 10)))


@pytest.mark.shared
@pytest.mark.skipif(not MEASURED.is_file(), reason="released measurement not available")
def test_released_rows_prepare_with_estimated_errors():
    meas = np.load(MEASURED)
    fd = prepare_data(meas)
    assert fd.error_source == "estimated"
    assert fd.group_names == ["Ei=25", "Ei=35", "Ei=50"]
    assert fd.n == int(np.isfinite(meas).sum())
    s = fd.sigma[fd.fitted]
    assert np.all(np.isfinite(s) & (s > 0))
    # zeros are not given infinite weight: their errors are at least the group's zero-level noise
    assert s[meas[fd.fitted] == 0].min() > 0.1
    laws = {law["group"]: law for law in fd.error_laws}
    assert all(law["alpha"] > 0 and law["beta"] >= 0 for law in laws.values())
    # the withheld incident energies cost nothing: no Q point needed there
    assert all(not blk.need.any() for blk in fd.plan.blocks[3:])
