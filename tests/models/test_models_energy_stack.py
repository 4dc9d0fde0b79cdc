"""The energy-stack DUQ classifier (mantid_exp2sim.models.energy_stack)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mantid_exp2sim.models.duq import duq_loss  # noqa: E402
from mantid_exp2sim.models.energy_stack import (EnergyStackDUQ, build_energy_stack_duq,  # noqa: E402
                                                mosaic_to_stack_channels)
from mantid_exp2sim.models.gradcam import attribution_map  # noqa: E402
from mantid_exp2sim.mosaic import mosaic_to_stacks  # noqa: E402

pytestmark = pytest.mark.torch


def test_in_graph_stacks_are_the_mosaic_stacks():
    rng = np.random.default_rng(1)
    sig = rng.normal(size=(2, 240, 400)).astype(np.float32)
    valid = (rng.random((2, 240, 400)) > 0.3).astype(np.float32)
    x = torch.from_numpy(np.stack([sig, valid], 1))
    c = mosaic_to_stack_channels(x, 6, 10).numpy().reshape(2, 6, 2, 10, 40, 40)
    # the network keeps the mosaic's row order (Qh descending) inside each stack
    np.testing.assert_array_equal(c[:, :, 0], mosaic_to_stacks(sig)[..., ::-1, :])
    np.testing.assert_array_equal(c[:, :, 1], mosaic_to_stacks(valid)[..., ::-1, :])


def test_shapes_config_and_training_step():
    torch.manual_seed(0)
    m = EnergyStackDUQ(widths=(2, 4, 8, 8), feature_dim=8, embedding_dim=8)
    x = torch.rand(4, 2, 240, 400)
    x[:, 1] = 1.0
    k = m.eval()(x)
    assert k.shape == (4, 2) and torch.all((k > 0) & (k <= 1))
    assert m.encode(x).shape == (4, 8, 10, 10)
    m2 = build_energy_stack_duq(m.config())
    m2.load_state_dict(m.state_dict())
    torch.testing.assert_close(m2.eval()(x), k)
    m.train()
    y = torch.nn.functional.one_hot(torch.tensor([0, 1, 0, 1]), 2).float()
    loss, parts = duq_loss(m, x, y)
    loss.backward()
    assert m.conv1.weight.grad is not None and np.isfinite(parts["gp"])
    with pytest.raises(ValueError):
        EnergyStackDUQ(input_shape=(240, 390))


def test_each_ei_branch_reads_only_its_own_stack():
    torch.manual_seed(0)
    m = EnergyStackDUQ(widths=(2, 4, 8, 8), feature_dim=8, embedding_dim=8).eval()
    x = torch.rand(1, 2, 240, 400)
    x[:, 1] = 1.0
    x.requires_grad_(True)
    y = m.norms[0](m.conv1(m.stacks(x)))
    y[0, :2].sum().backward()  # the first Ei branch (w0 = 2 channels)
    g = x.grad[0].abs().sum(0)
    assert g[:40].sum() > 0 and g[40:].sum() == 0  # Ei = 25 meV rows only, all windows
    assert (g[:40].reshape(40, 10, 40).sum((0, 2)) > 0).all()


def test_activation_map_keeps_the_tiles():
    torch.manual_seed(0)
    m = EnergyStackDUQ(widths=(2, 4, 8, 8), feature_dim=8, embedding_dim=8)
    x = torch.rand(1, 2, 240, 400)
    x[:, 1] = 1.0
    x[:, :, 40:80] = 0.0  # a fully masked Ei block carries no evidence
    res = attribution_map(m, x, 0)
    assert res.cam.shape == (1, 240, 400) and res.tiles.shape == (1, 6, 10)
    assert res.cam.max() == pytest.approx(1.0) and np.all(res.cam >= 0)
    assert np.all(res.tiles[0, 1] == 0)


def test_per_ei_normalisation_makes_it_blind_to_per_ei_scales():
    torch.manual_seed(0)
    m = EnergyStackDUQ(widths=(2, 4, 8, 8), feature_dim=8, embedding_dim=8).eval()
    x = torch.rand(2, 2, 240, 400)
    x[:, 1] = (torch.rand(2, 240, 400) > 0.2).float()
    x[:, 0] *= x[:, 1]
    factors = torch.tensor([0.5, 2.0, 1.0, 3.0, 0.7, 1.5]).repeat_interleave(40)[None, :, None]
    y = x.clone()
    y[:, 0] = x[:, 0] * factors
    torch.testing.assert_close(m(y), m(x), rtol=1e-3, atol=1e-4)
    off = EnergyStackDUQ(widths=(2, 4, 8, 8), feature_dim=8, embedding_dim=8, per_ei_norm=False).eval()
    off.load_state_dict(m.state_dict())
    assert not torch.allclose(off(y), off(x), rtol=1e-4, atol=1e-5)
