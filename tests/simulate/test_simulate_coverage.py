"""Coverage masks: .mat/.npy files, arrays, and the kinematic mask geometry."""

import numpy as np
import pytest
from scipy.io import savemat

from mantid_exp2sim.mosaic import EI_LIST, WINDOW_FRACTIONS
from mantid_exp2sim.simulate import MAPS_COVERAGE, load_mask, plan_mosaic, simulate_mosaic_pair, simulate_volume_pair
from mantid_exp2sim.mosaic import mosaic_tiles


def _pattern(shape=(240, 400)):
    m = np.zeros(shape, dtype=np.uint8)
    m[:7, :] = 1  # top rows (the Ei = 25 block, Qh near +1)
    m[100:105, 300:340] = 1
    m[239, 5] = 1
    return m


def test_mat_mask_is_flipped_like_nanmask(tmp_path):
    mask = _pattern()
    p = tmp_path / "nanmask.mat"
    savemat(p, {"nan_mask": np.flipud(mask)})  # stored upside down, as the published file
    loaded = load_mask(p, (240, 400))
    assert loaded.dtype == bool
    np.testing.assert_array_equal(loaded, mask.astype(bool))


def test_npy_mask_is_used_as_is_and_masks_outputs(tmp_path, analytic_model):
    mask = _pattern()
    p = tmp_path / "mask.npy"
    np.save(p, mask)
    np.testing.assert_array_equal(load_mask(p), mask.astype(bool))
    conv, unconv = simulate_mosaic_pair(analytic_model, None, resolution="unconvolved", mask=str(p))
    for h in (conv, unconv):
        np.testing.assert_array_equal(np.isnan(h.signal), mask.astype(bool))
    assert conv.metadata["mask"] == f"file:{p}"
    # A Path and an array work too.
    c2, _ = simulate_mosaic_pair(analytic_model, None, resolution="unconvolved", mask=mask.astype(bool))
    np.testing.assert_array_equal(c2.signal, conv.signal)


def test_mask_file_errors(tmp_path):
    p = tmp_path / "small.npy"
    np.save(p, np.zeros((10, 10)))
    with pytest.raises(ValueError, match=r"small\.npy' has the wrong shape.*\(10, 10\).*\(240, 400\)"):
        load_mask(p, (240, 400))
    q = tmp_path / "two.mat"
    savemat(q, {"a": np.zeros((2, 2)), "b": np.ones((2, 2))})
    with pytest.raises(ValueError, match="no variable 'nan_mask'"):
        load_mask(q)
    with pytest.raises(ValueError, match="unsupported type"):
        load_mask(tmp_path.joinpath("m.txt").write_text("1") and tmp_path / "m.txt")
    with pytest.raises(ValueError, match="does not exist"):
        load_mask(tmp_path / "none.npy")
    with pytest.raises(ValueError, match="wrong shape"):
        plan_mosaic(mask=np.zeros((5, 5)))


def test_kinematic_mosaic_mask_geometry():
    plan = plan_mosaic(mask="kinematic")
    tiles = mosaic_tiles(plan.mask)  # [b, ih, ik, j]
    qc = np.linspace(-1.0, 1.0, 40)  # the mosaic's bin centres (step 2/39)
    # A bin is masked iff none of 5 energies across its window is covered at the bin centre.
    for b, ei in enumerate(EI_LIST):
        for j, (lo, hi) in enumerate(WINDOW_FRACTIONS):
            cov = np.zeros((40, 40), dtype=bool)
            for t in np.linspace(0, 1, 5):
                e = (lo + t * (hi - lo)) * ei
                cov |= MAPS_COVERAGE.covered(qc[:, None], qc[None, :], e, ei)
            np.testing.assert_array_equal(tiles[b, :, :, j], ~cov)
    # Beam hole: the four central bins are masked at Ei = 140 (2theta < 1.5 deg) ...
    assert tiles[5, 19:21, 19:21, 0].all()
    # ... and the square +/-20 deg bank cuts the corners at Ei = 25, top window.
    assert tiles[0, 39, 39, 9] and tiles[0, 0, 0, 9] and not tiles[0, 25, 28, 9]
    # At Ei = 140 everything but the beam hole (|Q| < 0.2 r.l.u.) is seen.
    masked = np.argwhere(tiles[5, :, :, 5])
    assert 0 < len(masked) < 40 and np.all(np.hypot(qc[masked[:, 0]], qc[masked[:, 1]]) < 0.2)
    # Masked fraction grows with energy transfer at Ei = 25 (k_f shrinks), as measured.
    frac = tiles[0].mean(axis=(0, 1))
    assert np.all(np.diff(frac) >= 0) and frac[9] > 0.4


def test_kinematic_volume_mask_and_nan(analytic_model):
    conv, unconv = simulate_volume_pair(analytic_model, None, ei=25.0, bins=(20, 20, 6), energy_range=(2.0, 20.0),
                                        resolution="unconvolved")
    m = np.isnan(conv.signal)
    np.testing.assert_array_equal(m, np.isnan(unconv.signal))
    assert conv.metadata["mask"] == "kinematic"
    # Corners at high energy transfer are out of reach, low-|Q| bins are seen.
    assert m[0, 0, -1] and m[-1, -1, -1]
    assert not m[12, 8, 0]
    # Coverage shrinks with energy transfer.
    assert m[..., -1].sum() > m[..., 0].sum()
    none, _ = simulate_volume_pair(analytic_model, None, ei=25.0, bins=(20, 20, 6), energy_range=(2.0, 20.0),
                                   resolution="unconvolved", mask="none")
    assert not np.isnan(none.signal).any()
    np.testing.assert_array_equal(none.signal[~m], conv.signal[~m])


@pytest.mark.shared
def test_published_mask_loads(pcsmo_dir):
    m = load_mask(pcsmo_dir / "nanmask.mat", (240, 400))
    assert m.sum() == 19311
    ref = np.load(pcsmo_dir / "simulated_fitpars_goodenough.npy")[0]
    assert np.all(ref[m] == 0)
