"""A simulated 240x400 mosaic and fixed parameters that keep fits of it fast (a helper module)."""

from __future__ import annotations

import functools

import numpy as np

#: The dimer's published values with JFW moved: the fits below leave only JFW free.
TRUE_JFW = -9.0


@functools.lru_cache(maxsize=1)
def dimer_mosaic():
    """``(signal, errors)`` of a noise-free dimer mosaic, scale 40 and background 0.2 (NaN = masked)."""
    from mantid_exp2sim.simulate import get_model, plan_mosaic, simulate_plan

    m = get_model("dimer")
    h, _ = simulate_plan(plan_mosaic(), m, dict(m.defaults, JFW=TRUE_JFW), want=(True, False))
    signal = 40.0 * h.signal + 0.2
    errors = np.where(np.isfinite(signal), 0.01 * np.nanmean(signal), np.nan)
    return signal, errors


def fixed_all_but_jfw() -> dict[str, float]:
    """Every parameter of both PCSMO models fixed at its published value, except the dimer's JFW."""
    from mantid_exp2sim.simulate import get_model

    out = dict(get_model("goodenough").defaults)
    out.update(get_model("dimer").defaults)
    out.pop("JFW")
    return out
