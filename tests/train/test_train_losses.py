"""Loss terms of exp2sim-train: values on known inputs and masking."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mantid_exp2sim.train import losses as L  # noqa: E402

pytestmark = pytest.mark.torch


def test_mask_weights_are_the_valid_fraction_per_cell():
    valid = torch.zeros(1, 1, 4, 4)
    valid[0, 0, :2, :] = 1.0  # top half valid
    valid[0, 0, 2, 0] = 1.0  # one bin of the bottom-left cell
    w = L.mask_weights(valid, (2, 2))
    assert w.shape == (1, 1, 2, 2)
    assert torch.allclose(w[0, 0], torch.tensor([[1.0, 1.0], [0.25, 0.0]]))
    # same size: the mask itself
    assert torch.equal(L.mask_weights(valid, (4, 4)), valid)
    # 3D
    v3 = torch.ones(1, 1, 4, 4, 4)
    v3[..., :2] = 0
    assert torch.allclose(L.mask_weights(v3, (2, 2, 2))[0, 0, :, :, 0], torch.zeros(2, 2))
    assert torch.allclose(L.mask_weights(v3, (2, 2, 2))[0, 0, :, :, 1], torch.ones(2, 2))


def test_masked_mean_weights_and_empty_mask():
    v = torch.tensor([[1.0, 2.0], [3.0, 100.0]])
    w = torch.tensor([[1.0, 1.0], [0.5, 0.0]])
    assert float(L.masked_mean(v, w)) == pytest.approx((1 + 2 + 1.5) / 2.5)
    assert float(L.masked_mean(v, torch.zeros_like(w))) == 0.0


@pytest.mark.parametrize("mode", ["hinge", "lsgan"])
def test_gan_losses_known_values(mode):
    ones = torch.ones(1, 1, 2, 2)
    pred_real = torch.full((1, 1, 2, 2), 0.5)
    pred_fake = torch.full((1, 1, 2, 2), -0.5)
    d = float(L.gan_loss_d(pred_real, pred_fake, ones, ones, mode))
    g = float(L.gan_loss_g(pred_fake, ones, mode))
    if mode == "hinge":
        # relu(1 - 0.5) = 0.5, relu(1 - 0.5) = 0.5 -> mean 0.5 ; G: relu(1 + 0.5) = 1.5
        assert d == pytest.approx(0.5)
        assert g == pytest.approx(1.5)
        # a confident discriminator has zero hinge loss
        assert float(L.gan_loss_d(ones * 2, -ones * 2, ones, ones, mode)) == 0.0
    else:
        # (0.5 - 1)^2 = 0.25, (-0.5)^2 = 0.25 -> 0.25 ; G: (-0.5 - 1)^2 = 2.25
        assert d == pytest.approx(0.25)
        assert g == pytest.approx(2.25)
    with pytest.raises(ValueError, match="gan_mode"):
        L.gan_loss_g(pred_fake, ones, "wgan")


def test_aux_and_identity_known_values():
    w = torch.ones(1, 1, 2, 2)
    aux = torch.tensor([[[[0.0, 1.0], [0.5, 0.5]]]])
    assert float(L.aux_loss(aux, 0.0, w)) == pytest.approx((0 + 1 + 0.25 + 0.25) / 4)
    assert float(L.aux_loss(aux, 1.0, w)) == pytest.approx((1 + 0 + 0.25 + 0.25) / 4)
    pred = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    target = torch.tensor([[[[1.5, 2.0], [1.0, 0.0]]]])
    valid = torch.tensor([[[[1.0, 1.0], [1.0, 0.0]]]])
    assert float(L.masked_l1(pred, target, valid)) == pytest.approx((0.5 + 0 + 2) / 3)


def test_cycle_loss_value_and_where_its_gradient_goes():
    torch.manual_seed(0)
    there = torch.nn.Conv2d(2, 1, 3, padding=1)  # source -> other domain
    back = torch.nn.Conv2d(2, 1, 3, padding=1)  # other domain -> source
    source = torch.randn(2, 1, 8, 8)
    valid = (torch.rand(2, 1, 8, 8) > 0.2).float()
    translated = torch.cat([there(torch.cat([source, valid], 1)) * valid, valid], 1)
    by_hand = ((back(translated) * valid - source).abs() * valid).sum() / valid.sum()
    for detach in (True, False):
        there.zero_grad()
        back.zero_grad()
        loss = L.cycle_loss(back, translated, source, valid, detach=detach)
        assert loss.item() == pytest.approx(by_hand.item(), rel=1e-6)
        loss.backward(retain_graph=True)
        assert float(back.weight.grad.abs().sum()) > 0
        # detached: only the generator translating back learns from its own round trip
        assert (there.weight.grad is None or float(there.weight.grad.abs().sum()) == 0) == detach


def test_intensity_loss_known_values():
    src = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    valid = torch.tensor([[[[1.0, 1.0], [1.0, 0.0]]]])
    # a redistribution inside the valid bins conserves the integral: no loss
    moved = torch.tensor([[[[2.0, 1.0], [3.0, 99.0]]]])
    assert float(L.intensity_loss(moved, src, valid)) == pytest.approx(0.0)
    # 20% more intensity over the valid bins (1 + 2 + 3 = 6 -> 7.2), relative to 6 + 3 * floor
    assert float(L.intensity_loss(src * 1.2, src, valid, floor=0.0)) == pytest.approx(0.2)
    assert float(L.intensity_loss(src * 1.2, src, valid)) == pytest.approx(1.2 / 6.3)
    both = torch.cat([src * 1.2, src * 0.5])
    two = (torch.cat([src, src]), torch.cat([valid, valid]))
    assert float(L.intensity_loss(both, *two, floor=0.0)) == pytest.approx(0.35)
    # an empty patch stays bounded
    zero = torch.zeros_like(src)
    assert float(L.intensity_loss(zero + 0.01, zero, valid)) == pytest.approx(0.1)


def test_patch_rms_normalise_removes_the_level_only():
    gen = torch.Generator().manual_seed(1)
    sig = torch.rand(2, 1, 6, 6, generator=gen)
    valid = (torch.rand(2, 1, 6, 6, generator=gen) > 0.3).float()
    x = torch.cat([sig * valid, valid], 1)
    y = L.patch_rms_normalise(x)
    assert torch.equal(y[:, 1:], valid)
    rms = ((y[:, :1] ** 2 * valid).sum(dim=(1, 2, 3)) / valid.sum(dim=(1, 2, 3))).sqrt()
    assert torch.allclose(rms, torch.ones(2), atol=1e-5)
    scaled = torch.cat([sig * valid * torch.tensor([3.0, 0.5]).view(2, 1, 1, 1), valid], 1)
    assert torch.allclose(L.patch_rms_normalise(scaled), y, atol=1e-5)
    # nearly empty patches are not amplified beyond 1/floor
    tiny = torch.cat([sig * valid * 1e-6, valid], 1)
    assert float(L.patch_rms_normalise(tiny)[:, :1].abs().max()) < 1e-4


def test_no_loss_term_depends_on_masked_values():
    gen = torch.Generator().manual_seed(0)
    shape = (2, 1, 8, 8)
    valid = (torch.rand(shape, generator=gen) > 0.3).float()
    a = torch.randn(shape, generator=gen)
    b = a.clone()
    b[valid == 0] = torch.randn(int((valid == 0).sum()), generator=gen) * 50  # change masked bins only
    t = torch.randn(shape, generator=gen)
    assert float(L.masked_l1(a, t, valid)) == float(L.masked_l1(b, t, valid))
    assert float(L.masked_l1(t, a, valid)) == float(L.masked_l1(t, b, valid))
    for mode in ("hinge", "lsgan"):
        assert float(L.gan_loss_g(a, valid, mode)) == float(L.gan_loss_g(b, valid, mode))
        assert float(L.gan_loss_d(a, t, valid, valid, mode)) == float(L.gan_loss_d(b, t, valid, valid, mode))
        assert float(L.gan_loss_d(t, a, valid, valid, mode)) == float(L.gan_loss_d(t, b, valid, valid, mode))
    assert float(L.aux_loss(a, 1.0, valid)) == float(L.aux_loss(b, 1.0, valid))
    assert float(L.intensity_loss(a, t, valid)) == float(L.intensity_loss(b, t, valid))
    assert float(L.intensity_loss(t, a, valid)) == float(L.intensity_loss(t, b, valid))
    xa, xb = torch.cat([a * valid, valid], 1), torch.cat([b * valid, valid], 1)
    assert torch.equal(L.patch_rms_normalise(xa), L.patch_rms_normalise(xb))
    # and the unmasked bins do matter
    c = a.clone()
    c[valid == 1] += 1.0
    assert float(L.masked_l1(c, t, valid)) != float(L.masked_l1(a, t, valid))


def test_losses_are_float32_under_half_inputs():
    w = torch.ones(1, 1, 2, 2)
    pred = torch.zeros(1, 1, 2, 2, dtype=torch.float16)
    out = L.gan_loss_g(pred, w, "hinge")
    assert out.dtype == torch.float32 and math.isclose(float(out), 1.0)
    assert np.isfinite(float(L.aux_loss(pred, 1.0, w)))
