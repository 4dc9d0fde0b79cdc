"""The energy-stack representation of the mosaic (mantid_exp2sim.mosaic.mosaic_to_stacks)."""

import numpy as np
import pytest

from mantid_exp2sim.errors import InputDataError
from mantid_exp2sim.mosaic import (EI_LIST, MOSAIC_SHAPE, TILE, WINDOW_FRACTIONS, mosaic_tiles,
                                   mosaic_to_stacks, stacks_to_mosaic)


def test_round_trip_is_exact_and_masks_travel_with_the_values():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(3, *MOSAIC_SHAPE))
    m[rng.random(m.shape) < 0.2] = np.nan
    s = mosaic_to_stacks(m)
    assert s.shape == (3, len(EI_LIST), len(WINDOW_FRACTIONS), TILE, TILE)
    back = stacks_to_mosaic(s)
    assert back.shape == m.shape
    np.testing.assert_array_equal(back, m)  # NaN positions and every value
    np.testing.assert_array_equal(np.isnan(s), mosaic_to_stacks(np.isnan(m)))


def test_stack_axes_are_ei_window_qh_qk():
    m = np.zeros(MOSAIC_SHAPE)
    b, j = 3, 7  # Ei = 70 meV, window 7
    tile = np.arange(TILE * TILE, dtype=float).reshape(TILE, TILE)
    m[b * TILE:(b + 1) * TILE, j * TILE:(j + 1) * TILE] = tile
    s = mosaic_to_stacks(m)
    # one (Ei, window) image is the tile with Qh ascending (rows reversed), as mosaic_tiles
    np.testing.assert_array_equal(s[b, j], tile[::-1])
    np.testing.assert_array_equal(s[b, j], mosaic_tiles(m)[b, :, :, j])
    assert np.count_nonzero(s) == np.count_nonzero(tile)
    # neighbouring windows of one (Qh, Qk) point are neighbours along the window axis
    m2 = np.zeros(MOSAIC_SHAPE)
    m2[5, 10] = 1.0
    m2[5, 10 + TILE] = 2.0  # same Qh, Qk; next energy window, 40 columns away
    s2 = mosaic_to_stacks(m2)
    idx = np.argwhere(s2)
    assert [tuple(i[:2]) for i in idx] == [(0, 0), (0, 1)]
    assert tuple(idx[0][2:]) == tuple(idx[1][2:])


def test_bad_shapes_are_refused():
    with pytest.raises(InputDataError):
        mosaic_to_stacks(np.zeros((241, 400)))
    with pytest.raises(InputDataError):
        stacks_to_mosaic(np.zeros((6, 10, 40, 39)))
