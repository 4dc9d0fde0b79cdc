"""Artefact generators: known answers, masks kept, input untouched, bad arguments refused."""

from __future__ import annotations

import numpy as np
import pytest

from mantid_exp2sim.errors import InputDataError
from mantid_exp2sim.simulate.artefacts import (
    ARTEFACTS,
    apply_artefact,
    background_residual,
    dead_patches,
    spurious_peaks,
)


@pytest.fixture
def mosaic() -> np.ndarray:
    """An 80 x 120 mosaic (2 Ei, 3 windows) of values 1 .. 2 with a masked corner and a masked column."""
    y = 1.0 + np.random.default_rng(0).random((80, 120))
    y[:10, :10] = np.nan
    y[:, 55] = np.nan
    return y


def test_dead_patches_zero_exactly_where_asked(mosaic):
    before = mosaic.copy()
    out = dead_patches(mosaic, patches=[(5, 5, 10, 20), (60, 100, 4, 4)])
    expected = mosaic.copy()
    for r, c, h, w in [(5, 5, 10, 20), (60, 100, 4, 4)]:
        block = expected[r:r + h, c:c + w]
        block[np.isfinite(block)] = 0.0
    np.testing.assert_array_equal(out, expected)  # NaN == NaN for assert_array_equal
    np.testing.assert_array_equal(mosaic, before)
    assert np.isnan(out[5, 5])  # masked inside a patch stays masked
    assert out[14, 24] == 0.0 and out[15, 24] != 0.0 and out[14, 25] != 0.0


def test_dead_patches_drawn_inside_and_seeded(mosaic):
    a = dead_patches(mosaic, n_patches=4, size=(6, 7), rng=3)
    b = dead_patches(mosaic, n_patches=4, size=(6, 7), rng=3)
    np.testing.assert_array_equal(a, b)
    zeroed = np.isfinite(mosaic) & (a == 0)
    assert 0 < zeroed.sum() <= 4 * 6 * 7
    np.testing.assert_array_equal(np.isnan(a), np.isnan(mosaic))
    np.testing.assert_array_equal(a[~zeroed & np.isfinite(a)], mosaic[~zeroed & np.isfinite(mosaic)])


def test_spurious_peaks_add_positive_intensity_only_at_spots(mosaic):
    before = mosaic.copy()
    out = spurious_peaks(mosaic, centres=[(40, 30), (70, 110)], amplitude=50.0, width=1.0)
    np.testing.assert_array_equal(mosaic, before)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(mosaic))
    diff = np.nan_to_num(out - mosaic)
    assert (diff >= 0).all()
    assert diff[40, 30] == pytest.approx(50.0) and diff[70, 110] == pytest.approx(50.0)
    assert diff[41, 30] == pytest.approx(50.0 * np.exp(-0.5))
    near = np.zeros(mosaic.shape, dtype=bool)
    near[37:44, 27:34] = True  # reach = ceil(3 * width) = 3 bins
    near[67:74, 107:114] = True
    assert not diff[~near].any()
    assert diff[near & np.isfinite(mosaic)].min() > 0


def test_spurious_peaks_drawn_on_unmasked_bins_default_amplitude(mosaic):
    out = spurious_peaks(mosaic, n_peaks=3, width=0.2, rng=np.random.default_rng(5))
    diff = np.nan_to_num(out - mosaic)
    top = diff > 1e-3 * np.nanmax(mosaic)
    centres = np.argwhere(top)
    assert len(centres) == 3  # width 0.2: each spot is one bin (neighbours get exp(-12.5))
    assert np.allclose(diff[top], np.nanmax(mosaic))
    assert np.isfinite(mosaic[tuple(centres.T)]).all()


def test_background_residual_linear_in_energy_and_clipped(mosaic):
    flat = np.where(np.isnan(mosaic), np.nan, 1.0)
    out = background_residual(flat, offset=[0.5, -2.0], slope=[1.0, 0.0])
    np.testing.assert_array_equal(np.isnan(out), np.isnan(flat))
    # Ei block 0: 1 + 0.5 + (j/2 - 1/2) for windows j = 0, 1, 2
    for j, v in enumerate([1.0, 1.5, 2.0]):
        block = out[:40, 40 * j:40 * (j + 1)]
        assert np.allclose(block[np.isfinite(block)], v)
    lower = out[40:]
    assert np.all(lower[np.isfinite(lower)] == 0.0)  # 1 - 2 clipped at 0


def test_background_residual_drawn_changes_only_unmasked(mosaic):
    before = mosaic.copy()
    out = background_residual(mosaic, strength=0.3, rng=11)
    np.testing.assert_array_equal(mosaic, before)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(mosaic))
    assert (out[np.isfinite(out)] >= 0).all()
    assert not np.allclose(out[np.isfinite(out)], mosaic[np.isfinite(mosaic)])
    assert np.nanmax(np.abs(out - mosaic)) <= 0.3 * np.nanmean(mosaic) * 1.5 + 1e-12
    np.testing.assert_array_equal(out, background_residual(mosaic, strength=0.3, rng=11))


def test_apply_artefact_by_name(mosaic):
    assert set(ARTEFACTS) == {"spurious_peaks", "background_residual", "dead_patches"}
    for kind in ARTEFACTS:
        out = apply_artefact(mosaic, kind, rng=1)
        assert out is not mosaic and not np.array_equal(np.nan_to_num(out), np.nan_to_num(mosaic))
    none = apply_artefact(mosaic, "none")
    assert none is not mosaic
    np.testing.assert_array_equal(none, mosaic)


@pytest.mark.parametrize("call, match", [
    (lambda y: dead_patches(y, patches=[(75, 0, 10, 5)]), "patches is invalid"),
    (lambda y: dead_patches(y, size=(100, 5)), "size is invalid"),
    (lambda y: dead_patches(y, size=7), "size is invalid"),
    (lambda y: dead_patches(y, n_patches=0), "n_patches is invalid"),
    (lambda y: spurious_peaks(y, centres=[(0, 0)]), "centres is invalid"),
    (lambda y: spurious_peaks(y, width=0.0), "width is invalid"),
    (lambda y: spurious_peaks(y, amplitude=-1.0), "amplitude is invalid"),
    (lambda y: background_residual(y, offset=[1.0, 2.0, 3.0]), "offset is invalid"),
    (lambda y: background_residual(y[:50]), "not a pcsmo-mosaic-v1 mosaic"),
    (lambda y: background_residual(y, strength=np.nan), "strength is invalid"),
    (lambda y: apply_artefact(y, "cosmic_rays"), "kind is invalid"),
    (lambda y: dead_patches(y[0]), "must be a 2D array"),
    (lambda y: spurious_peaks(np.full((40, 80), np.nan)), "no unmasked bins"),
])
def test_bad_arguments_refused(mosaic, call, match):
    with pytest.raises(InputDataError, match=match):
        call(mosaic)
