"""The table of representations (simulate.representations.REPRESENTATIONS) and its users."""

from __future__ import annotations

import numpy as np
import pytest

from mantid_exp2sim.simulate import REPRESENTATIONS, DatasetSpec
from mantid_exp2sim.simulate.representations import representation


def test_the_table_holds_each_representation_with_its_defaults():
    assert list(REPRESENTATIONS) == ["mosaic", "volume", "e_slice", "qe_slice"]
    d = {name: rep.defaults for name, rep in REPRESENTATIONS.items()}
    assert d["volume"]["ei"] == d["e_slice"]["ei"] == d["qe_slice"]["ei"] == 70.0
    assert (d["volume"]["bins"], d["e_slice"]["bins"], d["qe_slice"]["bins"]) == ((64, 64, 64), (40, 40), (100, 100))
    assert d["qe_slice"]["start"] == (-1.0, 0.0) and d["qe_slice"]["end"] == (1.0, 0.0)
    assert all(rep.defaults["mask"] == "kinematic" for rep in REPRESENTATIONS.values())
    with pytest.raises(ValueError, match="Unknown representation.*allowed: mosaic, volume, e_slice, qe_slice"):
        representation("powder")


@pytest.mark.parametrize("name", ["mosaic", "volume", "e_slice", "qe_slice"])
def test_a_data_set_spec_without_geometry_plans_the_defaults(name):
    plan = DatasetSpec(representation=name, mask="none").plan()
    expected = REPRESENTATIONS[name].plan(mask="none")
    assert plan.axes == expected.axes and plan.metadata == expected.metadata
    assert plan.metadata["mask"] == "none" and plan.mask is None
    np.testing.assert_array_equal(plan.qh, expected.qh)


def test_settings_apply_only_where_the_table_says():
    for name, rep in REPRESENTATIONS.items():
        for setting in ("ei", "bins", "energy_range", "energy_window", "line"):
            value = {"ei": 50.0, "bins": (8, 8, 8) if name == "volume" else (8, 8), "energy_range": (5.0, 20.0),
                     "energy_window": (10.0, 12.0), "line": (-1.0, 0.0, 1.0, 1.0)}[setting]
            if setting in rep.settings:
                DatasetSpec(representation=name, mask="none", **{setting: value}).plan()
            else:
                with pytest.raises(ValueError, match=f"\\['{setting}'\\] do not apply to the {name}"):
                    DatasetSpec(representation=name, **{setting: value})
    line = DatasetSpec(representation="qe_slice", line=(-1, -1, 1, 1), bins=(8, 8), mask="none").plan()
    assert line.metadata["line_start"] == [-1.0, -1.0] and line.metadata["line_end"] == [1.0, 1.0]
