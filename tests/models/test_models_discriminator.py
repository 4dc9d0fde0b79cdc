"""PatchDiscriminator: 2D/3D patch maps, auxiliary output, size limits."""

import pytest

torch = pytest.importorskip("torch")

from mantid_exp2sim.models import PatchDiscriminator  # noqa: E402
from mantid_exp2sim.models.discriminator import build_discriminator  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize(
    "ndim,size,grid", [(2, (256, 256), (30, 30)), (2, (64, 96), (6, 10)), (3, (64, 64, 64), (6, 6, 6))]
)
def test_patch_maps_have_the_prior_art_sizes(ndim, size, grid):
    d = PatchDiscriminator(ndim, ndf=4)
    gan, aux = d(torch.randn(2, 2, *size))
    assert gan.shape == (2, 1, *grid) and aux.shape == (2, 1, *grid)
    assert [d.output_size(n) for n in size] == list(grid)


def test_gan_and_aux_outputs_are_distinct_heads():
    torch.manual_seed(0)
    d = PatchDiscriminator(2, ndf=4, n_layers=2)
    gan, aux = d(torch.randn(1, 2, 32, 32))
    assert not torch.allclose(gan, aux)
    # each head gets its own gradient: the last conv has two output filters
    (gan.mean()).backward()
    last = d.model[-1]
    assert last.weight.grad[0].abs().sum() > 0 and last.weight.grad[1].abs().sum() == 0


def test_default_parameter_count_and_config_round_trip():
    d = PatchDiscriminator(2)
    # 2D, ndf=32, 3 layers, 2 input channels, 2-channel head
    n = sum(p.numel() for p in d.parameters())
    expected = (2 * 32 * 16 + 32) + 32 * 64 * 16 + 64 * 128 * 16 + 128 * 256 * 16 + (256 * 2 * 16 + 2)
    assert n == expected
    d2 = build_discriminator(d.config())
    d2.load_state_dict(d.state_dict(), strict=True)
    x = torch.randn(1, 2, 40, 40)
    for a, b in zip(d(x), d2(x)):
        torch.testing.assert_close(a, b)
    assert d.architecture()["name"] == "PatchDiscriminator"


def test_too_small_inputs_are_rejected_with_the_minimum():
    d = PatchDiscriminator(3, ndf=2)
    lo = d.min_spatial_size()
    assert d.output_size(lo) == 2 and d.output_size(lo - 1) < 2
    d.train()
    d(torch.randn(1, 2, lo, lo, lo))  # instance norm works at the minimum in training mode
    with pytest.raises(ValueError, match=f"at least {lo} bins"):
        d(torch.randn(1, 2, lo - 1, lo, lo))
    with pytest.raises(ValueError, match="norm"):
        PatchDiscriminator(2, norm="batch")


def test_without_norm_the_discriminator_is_translation_equivariant_on_patches():
    torch.manual_seed(1)
    d = PatchDiscriminator(2, ndf=4, n_layers=2, norm="none").eval()
    x = torch.randn(1, 2, 64, 64)
    full, _ = d(x)
    part, _ = d(x[:, :, 16:, 16:])  # shift by a multiple of the total stride 4
    # patch j reads inputs 4j - 11 ... 4j + 22: keep patches whose field avoids the cut
    torch.testing.assert_close(part[:, :, 3:-3, 3:-3], full[:, :, 7:-3, 7:-3], rtol=1e-5, atol=1e-6)
