"""The classical peers and measured-like inputs of benchmarks/bench_translate.py."""

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "benchmarks") not in sys.path:
    sys.path.insert(0, str(REPO / "benchmarks"))

from classical_peers import choose_parameters, energy_kernel, mosaic_family, rl_snapshots  # noqa: E402


def test_rl_snapshots_reproduce_scikit_image():
    restoration = pytest.importorskip("skimage.restoration")
    rng = np.random.default_rng(0)
    image = rng.random((6, 10, 7))
    kernel = energy_kernel(0.9, radius=2)
    kernel[0] += 0.05  # asymmetric: the mirror matters
    kernel /= kernel.sum()
    snaps = rl_snapshots(image, kernel, 1, [0, 4, 30])
    assert np.array_equal(snaps[0], image)
    for n in (4, 30):
        ref = restoration.richardson_lucy(image, kernel.reshape(1, -1, 1), num_iter=n, clip=False, filter_epsilon=1e-12)
        np.testing.assert_allclose(snaps[n], ref, rtol=1e-10, atol=1e-12)


def test_energy_kernel_is_normalised_and_widens_with_sigma():
    narrow, wide = energy_kernel(0.3, radius=3), energy_kernel(1.5, radius=3)
    assert narrow.sum() == pytest.approx(1.0) and wide.sum() == pytest.approx(1.0)
    assert narrow[3] > wide[3] and np.allclose(narrow, narrow[::-1], atol=1e-12)


class _Resolution:
    def energy_sigma(self, energy, ei):
        return 0.04 * ei + 0.0 * np.asarray(energy)


def test_mosaic_family_sharpens_a_blurred_mosaic_and_keeps_the_mask():
    from scipy.ndimage import convolve1d

    rng = np.random.default_rng(1)
    meta = {"ei_list": [25, 50], "window_fractions": [[0.1 + 0.06 * j, 0.16 + 0.06 * j] for j in range(6)]}
    truth = rng.gamma(0.5, 1.0, size=(2 * 8, 6 * 8))
    blurred = np.empty_like(truth)
    for b, ei in enumerate(meta["ei_list"]):
        k = energy_kernel(0.04 * ei / (0.06 * ei), radius=2)
        block = truth[b * 8:(b + 1) * 8].reshape(8, 6, 8)
        blurred[b * 8:(b + 1) * 8] = convolve1d(block, k, axis=1, mode="constant").reshape(8, 48)
    blurred[0, :5] = np.nan
    fam = mosaic_family(blurred, _Resolution(), meta, weights=(0.0, 0.1), iterations=(0, 5, 30))
    assert set(fam) == {(w, n) for w in (0.0, 0.1) for n in (0, 5, 30)}
    ok = np.isfinite(blurred)
    assert np.all(np.isnan(fam[(0.0, 30)][~ok]))
    err = {k: np.mean((v[ok] - truth[ok]) ** 2) for k, v in fam.items()}
    assert err[(0.0, 5)] < 0.85 * err[(0.0, 0)]  # early-stopped deconvolution with the true kernel helps
    best, score = choose_parameters({k: [-e] for k, e in err.items()})
    assert score == max(-e for e in err.values()) and best in fam


def test_measured_like_volume_is_noisy_clipped_and_in_truth_units():
    from bench_translate import measured_like_volume
    from mantid_exp2sim.simulate.measured_like import PCSMO_MEASURED_LIKE

    clean = np.full((8, 8, 16), 0.2)  # about 34 measured units, under the clip at 120
    clean[0, 0, 0] = np.nan
    draws = np.stack([measured_like_volume(clean, PCSMO_MEASURED_LIKE, 70.0, np.random.default_rng(i))
                      for i in range(40)])
    assert np.all(np.isnan(draws[:, 0, 0, 0])) and np.all(draws[:, 1:] >= 0)
    g = 3  # 70 meV in the mosaic's incident energies
    scale = PCSMO_MEASURED_LIKE.scale[g]
    expected = 0.2 + PCSMO_MEASURED_LIKE.residual_background[g] / scale
    assert np.nanmean(draws) == pytest.approx(expected, rel=0.05)  # unbiased apart from clipping at 0
    assert np.nanstd(draws) > 0.05 * expected  # counting noise
    big = measured_like_volume(clean * 10, PCSMO_MEASURED_LIKE, 70.0, np.random.default_rng(0))
    assert np.nanmax(big) == pytest.approx(120.0 / scale)  # clipped at 120 measured units
