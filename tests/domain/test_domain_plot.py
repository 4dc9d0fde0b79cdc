"""Tests of the distance-distribution plot (mantid_exp2sim.domain.plot)."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from mantid_exp2sim.domain import build_reference_bank, score  # noqa: E402
from mantid_exp2sim.domain.plot import ZONE_COLOURS, plot_distance_distributions  # noqa: E402
from mantid_exp2sim.errors import InputDataError  # noqa: E402


def test_plot_has_one_violin_per_set_and_zone_bands(tmp_path):
    rng = np.random.default_rng(0)
    arrays, cal = build_reference_bank(rng.normal(size=(200, 6)), rng.normal(size=(40, 6)), seed=0, repeats=100)
    sets = {
        "train": arrays["train_distances_single"],
        "test": score(rng.normal(size=6), arrays, cal, repeats=100),
        "noise": score(rng.normal(size=6) * 10, arrays, cal, repeats=100),
    }
    fig = plot_distance_distributions(sets)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["train", "test", "noise"]
    # three zone bands drawn with the zone colours
    labels = [p.get_label() for p in ax.patches]
    assert labels[:3] == ["trustworthy", "expert opinion", "untrustworthy"]
    assert len(ax.collections) >= 3  # violins
    fig.savefig(tmp_path / "d.png")
    assert (tmp_path / "d.png").stat().st_size > 1000
    assert set(ZONE_COLOURS) == {"trustworthy", "expert opinion", "untrustworthy"}
    # thresholds from the calibration when plain arrays are given
    fig2 = plot_distance_distributions({"a": arrays["holdout_distances"]}, calibration=cal, set_size=20)
    top = fig2.axes[0].get_ylim()[1]
    assert top >= cal["thresholds"]["20"]["untrustworthy"]


def test_plot_needs_data():
    with pytest.raises(InputDataError):
        plot_distance_distributions({})
