"""Tests of the mosaic builder (mantid_exp2sim.mosaic) against hand-computed bins."""

import numpy as np
import pytest

from mantid_exp2sim.errors import InputDataError
from mantid_exp2sim.histogram import Axis, MDHisto
from mantid_exp2sim.mosaic import (
    EI_LIST,
    LAYOUT,
    MOSAIC_SHAPE,
    build_mosaic,
    energy_windows,
    mosaic_tiles,
    tiles_to_mosaic,
    rebin_volume,
    tile_means,
    validate_mosaic,
)


def volume(signal, h=(-1, 1), k=(-1, 1), e=(0, 30), ei=None, order=("h", "k", "e")):
    """A (Qh, Qk, E) volume; ``order`` permutes the dimensions."""
    axes = {
        "h": Axis("[H,0,0]", "r.l.u.", h[0], h[1], signal.shape[0], frame="HKL"),
        "k": Axis("[0,K,0]", "r.l.u.", k[0], k[1], signal.shape[1], frame="HKL"),
        "e": Axis("DeltaE", "meV", e[0], e[1], signal.shape[2]),
    }
    perm = ["hke".index(o) for o in order]
    sig = np.transpose(signal, perm)
    meta = {} if ei is None else {"Ei": ei}
    return MDHisto(sig, tuple(axes[o] for o in order), metadata=meta)


def test_energy_windows_are_the_published_ones():
    w = energy_windows(25.0)
    assert w.shape == (10, 2)
    np.testing.assert_allclose(w[0], [2.5, 4.0])
    np.testing.assert_allclose(w[-1], [16.0, 17.5])
    np.testing.assert_allclose(energy_windows(140.0)[-1], [0.64 * 140, 0.70 * 140])


def test_rebin_energy_hand_computed_partial_overlap_and_mask():
    # Source E bins of 3 meV from 0 to 30: window 0 = [2.5, 4.0] overlaps [0, 3] by 0.5 and
    # [3, 6] by 1.0; window 1 = [4.0, 5.5] lies in [3, 6]; window 2 = [5.5, 7.0] overlaps
    # [3, 6] by 0.5 and [6, 9] by 1.0.
    values = np.array([10.0, 40.0, 70.0, 1, 1, 1, 1, 1, 1, 1])
    sig = np.broadcast_to(values, (4, 40, 10)).copy()
    out = rebin_volume(volume(sig), 25.0, q_range=(-1.0, 1.0))
    assert out.shape == (40, 40, 10)
    np.testing.assert_allclose(out[0, 0, 0], (0.5 * 10 + 1.0 * 40) / 1.5)
    np.testing.assert_allclose(out[0, 0, 1], 40.0)
    np.testing.assert_allclose(out[0, 0, 2], (0.5 * 40 + 1.0 * 70) / 1.5)
    # Mask the [3, 6] bin at one Q: window 0 falls back to the [0, 3] bin only, window 1
    # has no unmasked input and is masked.
    sig[1, 5, 1] = np.nan
    out = rebin_volume(volume(sig), 25.0, q_range=(-1.0, 1.0))
    iqh = 10  # target Qh bin [-0.5, -0.45] lies in source bin 1 ([-0.5, 0])
    assert out[iqh, 5, 0] == pytest.approx(10.0)
    assert np.isnan(out[iqh, 5, 1])
    assert out[iqh, 5, 2] == pytest.approx(70.0)
    assert out[9, 5, 1] == pytest.approx(40.0)  # [-0.55, -0.5] is in source bin 0


def test_rebin_q_hand_computed():
    # Qh in 4 bins of 0.5 from -1 to 1; every target bin (width 0.05) lies in one source bin.
    # Qk in 3 bins over -1.2..1.2 (width 0.8): target bin [-0.45, -0.4] straddles -0.4.
    sig = np.zeros((4, 3, 10))
    sig[:, :, :] = np.arange(4)[:, None, None] * 100 + np.arange(3)[None, :, None]
    out = rebin_volume(volume(sig, k=(-1.2, 1.2)), 25.0, q_range=(-1.0, 1.0))
    # Qh: target bins 0..9 -> source 0, 10..19 -> 1, ...
    assert out[0, 0, 3] == pytest.approx(0.0)
    assert out[19, 0, 3] == pytest.approx(100.0)
    assert out[20, 0, 3] == pytest.approx(200.0)
    # Qk: source edges -1.2, -0.4, 0.4, 1.2; target bin 11 = [-0.45, -0.40] in source 0,
    # target 12 = [-0.40, -0.35] in source 1.
    assert out[0, 11, 3] == pytest.approx(0.0)
    assert out[0, 12, 3] == pytest.approx(1.0)
    # A target bin straddling a source edge: use Qk edges shifted by 0.025.
    out = rebin_volume(volume(sig, k=(-1.225, 1.175)), 25.0, q_range=(-1.0, 1.0))
    # source edges -1.225, -0.425, 0.375, 1.175: target 11 = [-0.45, -0.40] overlaps source
    # 0 by 0.025 and source 1 by 0.025 -> mean 0.5.
    assert out[0, 11, 3] == pytest.approx(0.5)


def test_rebin_is_independent_of_dimension_order():
    rng = np.random.default_rng(1)
    sig = rng.random((7, 9, 13))
    sig[rng.random(sig.shape) < 0.2] = np.nan
    a = rebin_volume(volume(sig, e=(0, 20)), 25.0)
    b = rebin_volume(volume(sig, e=(0, 20), order=("e", "k", "h")), 25.0)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(a[np.isfinite(a)], b[np.isfinite(b)])


def test_mosaic_layout_rows_cols_and_blocks():
    # Signal encodes Ei block, sign of Qh, Qk bin and energy: check every convention.
    vols = []
    for b, ei in enumerate(EI_LIST):
        qh = np.linspace(-1, 1, 41)[:-1] + 0.025  # centres
        sig = np.zeros((40, 40, 50))
        sig += 1000.0 * b
        sig += np.where(qh > 0, 1.0, 0.0)[:, None, None] * 100.0  # Qh > 0 -> +100
        sig += np.arange(40)[None, :, None] * 0.01  # Qk bin index
        vols.append(volume(sig, e=(0, ei), ei=ei))
    m = build_mosaic(vols[::-1])  # any order
    assert m.shape == MOSAIC_SHAPE
    assert m.metadata["layout"] == LAYOUT
    assert m.axes[0].name == "MosaicRow" and m.axes[1].name == "MosaicColumn"
    s = m.signal
    # block 0 (rows 0..39) is Ei 25, block 5 is Ei 140
    assert round(s[0, 0]) // 1000 == 0 and round(s[239, 0]) // 1000 == 5
    # row 0 of a block is Qh = +1 (positive), row 39 is Qh = -1
    assert s[0, 0] % 1000 == pytest.approx(100.0)
    assert s[39, 0] % 1000 == pytest.approx(0.0)
    # column 0 of a window block is Qk = -1 (bin 0), column 39 is Qk = +1 (bin 39)
    assert s[39, 39] % 1 == pytest.approx(0.39)
    assert s[39, 40] % 1 == pytest.approx(0.0)
    tiles = mosaic_tiles(s)  # [b, ih, ik, j], Qh and Qk ascending
    assert tiles.shape == (6, 40, 40, 10)
    np.testing.assert_array_equal(tiles[2, :, :, 3], s[80:120, 120:160][::-1])
    np.testing.assert_array_equal(tiles_to_mosaic(tiles), s)
    means = tile_means(s)
    assert means.shape == (6, 10)


def test_mosaic_energy_windows_scale_with_ei():
    # Intensity = E (meV) at the bin centre: a window's mean is its centre energy.
    vols = []
    for ei in EI_LIST:
        e_edges = np.linspace(0, ei, 201)
        ec = 0.5 * (e_edges[1:] + e_edges[:-1])
        sig = np.broadcast_to(ec, (10, 10, 200)).copy()
        vols.append(volume(sig, e=(0, ei)))
    m = build_mosaic(vols, ei=list(EI_LIST))
    t = tile_means(m.signal)
    for b, ei in enumerate(EI_LIST):
        centres = energy_windows(ei).mean(axis=1)
        np.testing.assert_allclose(t[b], centres, rtol=1e-9)


def test_missing_and_bad_ei_errors():
    sig = np.ones((4, 4, 10))
    vols = [volume(sig, e=(0, ei), ei=ei) for ei in EI_LIST[:-1]]
    with pytest.raises(InputDataError, match="missing Ei"):
        build_mosaic(vols)
    m = build_mosaic(vols, allow_missing=True)
    assert np.isnan(m.signal[200:]).all() and np.isfinite(m.signal[:200]).any()
    with pytest.raises(InputDataError, match="no incident energy"):
        build_mosaic([volume(sig)])
    with pytest.raises(InputDataError, match="does not use"):
        build_mosaic([volume(sig, ei=60.0)], allow_missing=True)
    with pytest.raises(InputDataError, match="same incident energy"):
        build_mosaic([volume(sig, ei=25.0), volume(sig, ei=25.0)], allow_missing=True)
    with pytest.raises(InputDataError, match="one Ei per volume"):
        build_mosaic([volume(sig)], ei=[25.0, 35.0])


def test_wrong_axes_errors():
    with pytest.raises(InputDataError, match="3D"):
        rebin_volume(MDHisto.from_array(np.ones((4, 4))), 25.0)
    bad = MDHisto.from_array(np.ones((4, 4, 4)), names=["a", "b", "c"], units=["", "", ""])
    with pytest.raises(InputDataError, match="energy transfer"):
        rebin_volume(bad, 25.0)
    far = volume(np.ones((4, 4, 4)), h=(5, 7))
    with pytest.raises(InputDataError, match="does not overlap"):
        rebin_volume(far, 25.0)


def test_validate_mosaic():
    ok = MDHisto.from_array(np.ones(MOSAIC_SHAPE), metadata={"layout": LAYOUT})
    validate_mosaic(ok)
    with pytest.raises(InputDataError, match="240x400"):
        validate_mosaic(MDHisto.from_array(np.ones((200, 400))))
    with pytest.raises(InputDataError, match="layout"):
        validate_mosaic(MDHisto.from_array(np.ones(MOSAIC_SHAPE), metadata={"layout": "x"}))
    with pytest.raises(InputDataError, match="fully masked"):
        validate_mosaic(MDHisto.from_array(np.full(MOSAIC_SHAPE, np.nan)))


def test_default_mosaic_q_bins_are_centred_on_minus_one_to_one():
    """The measurement's Horace cut [-1, 2/39, 1]: 40 bins of 2/39 centred on -1 ... +1."""
    from mantid_exp2sim.mosaic import MOSAIC_Q_RANGE

    np.testing.assert_allclose(MOSAIC_Q_RANGE, (-40 / 39, 40 / 39))
    # A volume of 80 Qh bins on exactly the mosaic's range, signal = source bin index:
    # every mosaic bin is the mean of two source bins.
    sig = np.broadcast_to(np.arange(80.0)[:, None, None], (80, 4, 10)).copy()
    out = rebin_volume(volume(sig, h=MOSAIC_Q_RANGE, k=MOSAIC_Q_RANGE), 25.0)
    np.testing.assert_allclose(out[:, 0, 0], 2 * np.arange(40) + 0.5)
