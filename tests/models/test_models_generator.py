"""ResnetGenerator: shapes, exact tiling, receptive field, scale equivariance, training."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mantid_exp2sim.models import ResnetGenerator, build_generator  # noqa: E402
from mantid_exp2sim.models.normalisation import (  # noqa: E402
    crop_padding,
    from_network_output,
    intensity_scale,
    pad_to_multiple,
    to_network_input,
    valid_mask,
)

pytestmark = pytest.mark.torch


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def randomised(g: ResnetGenerator, seed: int = 0, dtype=torch.float64) -> ResnetGenerator:
    """Untrained generators are the identity; give every branch and the head random weights."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in g.named_parameters():
            if name.endswith("alpha"):
                p.copy_(0.5 + torch.rand((), generator=gen))
            elif name.startswith("head"):
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return g.to(dtype).eval().requires_grad_(False)


@pytest.mark.parametrize("ndim,size", [(2, (16, 24)), (3, (8, 16, 8))])
def test_generator_shapes(ndim, size):
    g = ResnetGenerator(ndim, ngf=4, n_blocks=2, n_down=2)
    x = torch.randn(3, 2, *size)
    assert g(x).shape == (3, 1, *size)
    bottleneck = tuple(s // 4 for s in size)
    assert g.encode(x).shape == (3, 16, *bottleneck)
    assert g.encode(x, after="down").shape == (3, 16, *bottleneck)
    ids = [0, 1, 2, 3, 4]
    feats = g.nce_features(x, ids)
    for f, c, s in zip(feats, g.feature_channels(ids), g.feature_strides(ids)):
        assert f.shape == (3, c, *(n // s for n in size))
    assert g.default_nce_layers() == (1, 2, 3)
    assert ResnetGenerator(2).default_nce_layers() == (1, 2, 3, 7)


def test_untrained_generator_is_the_identity_on_the_signal():
    g = ResnetGenerator(2, ngf=4, n_blocks=2)
    x = torch.randn(2, 2, 16, 16)
    torch.testing.assert_close(g(x), x[:, :1], rtol=0, atol=0)


def test_encode_features_depend_on_the_residual_blocks():
    g = randomised(ResnetGenerator(2, ngf=4, n_blocks=2))
    x = torch.randn(1, 2, 16, 16, dtype=torch.float64)
    assert not torch.allclose(g.encode(x), g.encode(x, after="down"))
    torch.testing.assert_close(g.encode(x), g.nce_features(x, [4])[0])


def test_config_round_trip_rebuilds_the_same_network():
    g = randomised(ResnetGenerator(3, ngf=4, n_blocks=1, n_down=1, stem_kernel=5, padding_mode="zeros"))
    g2 = build_generator(g.config()).to(torch.float64)
    g2.load_state_dict(g.state_dict(), strict=True)
    x = torch.randn(1, 2, 8, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(g2(x), g(x))
    assert g.architecture() == {"name": "ResnetGenerator", "config": g.config()}
    with pytest.raises(ValueError, match="ndim"):
        build_generator({"ngf": 4})
    with pytest.raises(ValueError, match="Invalid generator config"):
        build_generator({"ndim": 2, "bogus": 1})


def test_invalid_settings_and_inputs_are_rejected():
    with pytest.raises(ValueError, match="ndim=4"):
        ResnetGenerator(4)
    with pytest.raises(ValueError, match="stem_kernel"):
        ResnetGenerator(2, stem_kernel=4)
    g = ResnetGenerator(2, ngf=4, n_blocks=1)
    assert g.min_spatial_size() == 8 and g.spatial_multiple == 4
    with pytest.raises(ValueError, match="multiple of 4"):
        g(torch.randn(1, 2, 16, 18))
    with pytest.raises(ValueError, match=">= 8"):
        g(torch.randn(1, 2, 4, 16))
    with pytest.raises(ValueError, match="wrong shape"):
        g(torch.randn(1, 1, 16, 16))
    with pytest.raises(ValueError, match="layer ids"):
        g.nce_features(torch.randn(1, 2, 16, 16), [4])
    g(torch.randn(1, 2, 8, 8))  # the documented minimum works


def _max_change_extent(g, shape, positions):
    """Largest distance from a perturbed input bin to an output bin that changes."""
    x = torch.randn(1, 2, *shape, dtype=torch.float64)
    y = g(x)
    extent = 0
    for p in positions:
        x2 = x.clone()
        x2[(0, 0, *p)] += 1.0
        changed = torch.nonzero((g(x2) - y).abs()[0, 0] > 1e-12)
        extent = max(extent, int((changed - torch.tensor(p)).abs().max()))
    return extent


@pytest.mark.parametrize(
    "ndim,kw,shape",
    [(2, dict(ngf=4, n_blocks=2, n_down=2), (128, 128)), (3, dict(ngf=2, n_blocks=1, n_down=1, stem_kernel=3), (32, 32, 32))],
)
def test_receptive_field_radius_is_exact(ndim, kw, shape):
    g = randomised(ResnetGenerator(ndim, **kw))
    r = g.receptive_field_radius()
    centre = shape[0] // 2
    positions = [(centre + k,) * ndim for k in range(g.spatial_multiple)]
    assert _max_change_extent(g, shape, positions) == r


def test_receptive_field_radius_of_the_default_config():
    # regression values of the analytic computation (checked by perturbation in the test above)
    assert ResnetGenerator(2).receptive_field_radius() == 63
    assert ResnetGenerator(3, ngf=16, n_blocks=4).receptive_field_radius() == 47


def _check_tiles(g, x, tiles, radius, atol):
    whole = g(x)
    full = x.shape[2:]
    for start, size in tiles:
        sl = tuple(slice(s, s + n) for s, n in zip(start, size))
        part = g(x[(slice(None), slice(None), *sl)])
        # keep bins at least `radius` away from tile edges that are not input edges
        keep = []
        for s, n, total in zip(start, size, full):
            lo = 0 if s == 0 else radius
            hi = n if s + n == total else n - radius
            assert hi > lo
            keep.append(slice(lo, hi))
        ref = whole[(slice(None), slice(None), *sl)][(slice(None), slice(None), *keep)]
        got = part[(slice(None), slice(None), *keep)]
        assert float((got - ref).abs().max()) < atol


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_tiled_inference_equals_whole_input_2d(dtype, atol):
    g = randomised(ResnetGenerator(2, ngf=4, n_blocks=2), dtype=dtype)
    r = g.receptive_field_radius()
    x = torch.randn(1, 2, 160, 152, dtype=dtype)
    tiles = [((8, 12), (96, 84)), ((0, 0), (72, 80)), ((64, 68), (96, 84)), ((4, 0), (156, 72))]
    _check_tiles(g, x, tiles, r, atol)


def test_tiled_inference_equals_whole_input_3d():
    g = randomised(ResnetGenerator(3, ngf=2, n_blocks=1, n_down=1, stem_kernel=3))
    r = g.receptive_field_radius()
    x = torch.randn(1, 2, 36, 30, 34, dtype=torch.float64)
    tiles = [((2, 4, 6), (30, 24, 26)), ((0, 6, 8), (24, 24, 26))]
    _check_tiles(g, x, tiles, r, 1e-12)


def test_translation_equivariance_for_multiples_of_the_spatial_multiple():
    g = randomised(ResnetGenerator(2, ngf=4, n_blocks=1, padding_mode="zeros"))
    r = g.receptive_field_radius()
    x = torch.randn(1, 2, 96, 96, dtype=torch.float64)
    shifted = torch.roll(x, shifts=(8, -4), dims=(2, 3))
    a = torch.roll(g(x), shifts=(8, -4), dims=(2, 3))
    b = g(shifted)
    inner = (slice(None), slice(None), slice(r + 8, 96 - r - 8), slice(r + 8, 96 - r - 8))
    torch.testing.assert_close(a[inner], b[inner], rtol=0, atol=1e-12)


@pytest.mark.parametrize("c", [10.0, 0.01])
def test_scale_equivariance_through_normalisation(c):
    g = randomised(ResnetGenerator(2, ngf=4, n_blocks=1), dtype=torch.float32)
    rng = np.random.default_rng(0)
    signal = rng.normal(size=(30, 21)) - 0.2  # negative bins, sizes not a multiple of 4
    signal[3:6, 4] = np.nan

    def translate(sig):
        s = intensity_scale(sig)
        x, pads = pad_to_multiple(to_network_input(sig, s), g.spatial_multiple)
        with torch.no_grad():
            y = crop_padding(g(torch.from_numpy(x)), pads)
        return from_network_output(y, s, valid_mask(sig))

    base = translate(signal)
    assert base.shape == signal.shape
    np.testing.assert_array_equal(np.isnan(base), np.isnan(signal))
    assert np.all(np.isfinite(base[~np.isnan(signal)]))
    np.testing.assert_allclose(translate(c * signal), c * base, rtol=1e-5, atol=0, equal_nan=True)


def test_flops_per_bin_matches_the_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    g = ResnetGenerator(2, ngf=8, n_blocks=2)
    x = torch.randn(1, 2, 32, 32)
    with FlopCounterMode(display=False) as counter:
        g(x)
    assert g.flops_per_bin() == pytest.approx(counter.get_total_flops() / (32 * 32), rel=1e-9)


def test_normalisation_free_generator_trains_stably():
    """A few Adam steps learn a blur from scratch: the loss falls, nothing diverges."""
    torch.manual_seed(0)
    g = ResnetGenerator(2, ngf=8, n_blocks=2)  # long skips on (the default)
    blur = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16
    kernel = (blur[:, None] * blur[None, :])[None, None]
    opt = torch.optim.Adam(g.parameters(), lr=2e-3)
    losses = []
    for _ in range(50):
        sig = torch.randn(4, 1, 32, 32)
        target = torch.nn.functional.conv2d(sig, kernel, padding=2)
        x = torch.cat([sig, torch.ones_like(sig)], dim=1)
        loss = torch.nn.functional.l1_loss(g(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
