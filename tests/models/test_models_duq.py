"""Tests of the DUQ classifier (mantid_exp2sim.models.duq)."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mantid_exp2sim.models.duq import (  # noqa: E402
    DUQClassifier,
    build_duq_classifier,
    duq_loss,
    gradient_penalty,
)

pytestmark = pytest.mark.torch

SMALL = dict(input_shape=(48, 80), tile_grid=(6, 10), widths=(4, 8, 8, 8), feature_dim=16, embedding_dim=8)


def onehot(y, n=2):
    return torch.nn.functional.one_hot(torch.as_tensor(y), n).float()


def test_forward_shape_range_and_full_size():
    torch.manual_seed(0)
    m = DUQClassifier()
    x = torch.randn(2, 2, 240, 400)
    k = m(x)
    assert k.shape == (2, 2)
    assert torch.all(k > 0) and torch.all(k <= 1)
    assert m.feature_map(x).shape == (2, 32, 30, 50)
    assert sum(p.numel() for p in m.parameters()) < 500_000  # not the prior art's 22 M


def test_kernel_is_eq3_of_the_paper():
    torch.manual_seed(1)
    m = DUQClassifier(**SMALL, length_scale=0.3)
    x = torch.randn(3, 2, 48, 80)
    f = m.features(x)
    e = m.m / m.N
    k = m(x)
    for i in range(3):
        for c in range(2):
            wf = m.W[:, c, :] @ f[i]
            expected = torch.exp(-((wf - e[:, c]) ** 2).sum() / (2 * m.embedding_dim * 0.3**2))
            assert k[i, c].item() == pytest.approx(expected.item(), rel=1e-5)


def test_centroids_move_with_gamma_below_one_and_not_with_one():
    torch.manual_seed(2)
    x = torch.randn(8, 2, 48, 80)
    y = onehot([0, 1] * 4)
    moving = DUQClassifier(**SMALL, gamma=0.9)
    before = moving.centroids.clone()
    bn_before = moving.norms[0].running_mean.clone()
    moving.update_centroids(x, y)
    assert not torch.allclose(before, moving.centroids)
    assert torch.equal(bn_before, moving.norms[0].running_mean)  # the extra pass runs in eval mode
    assert moving.training
    # The EMA by hand
    z = moving.eval().embed(moving.features(x))
    n_exp = 0.9 * 13.0 + 0.1 * y.sum(0)
    assert torch.allclose(moving.N, n_exp)
    frozen = DUQClassifier(**SMALL, gamma=1.0)
    before = frozen.centroids.clone()
    frozen.update_centroids(x, y)
    assert torch.allclose(before, frozen.centroids)
    assert z.shape == (8, 8, 2)


def test_gradient_penalty_matches_autograd():
    torch.manual_seed(3)
    m = DUQClassifier(**SMALL).eval()  # running BN statistics: samples are independent
    x = torch.randn(4, 2, 48, 80, requires_grad=True)
    k = m(x)
    gp = gradient_penalty(x, k)
    g = torch.stack([torch.autograd.grad(m(x[i : i + 1]).sum(), x)[0][i].flatten() for i in range(4)])
    expected = ((g.norm(dim=1) - 1) ** 2).mean()
    assert gp.item() == pytest.approx(expected.item(), rel=1e-4)
    gp.backward()  # differentiable (double backprop)
    assert m.conv1.weight.grad is not None


def test_training_separates_two_synthetic_classes():
    # Class 1 has a bright band in the left half, class 0 in the right half.
    torch.manual_seed(4)
    rng = np.random.default_rng(0)
    n = 64
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 0.3, (n, 1, 48, 80)).astype(np.float32)
    for i in range(n):
        cols = slice(5, 15) if y[i] else slice(60, 70)
        x[i, 0, 20:28, cols] += 3.0
    xt = torch.cat([torch.from_numpy(x), torch.ones(n, 1, 48, 80)], 1)
    yt = onehot(y)
    m = DUQClassifier(**SMALL, gamma=0.9)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for epoch in range(8):
        for s in range(0, n, 16):
            loss, parts = duq_loss(m, xt[s : s + 16], yt[s : s + 16], gp_weight=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            m.update_centroids(xt[s : s + 16], yt[s : s + 16])
    with torch.no_grad():
        k = m.eval()(xt)
    acc = (k.argmax(1).numpy() == y).mean()
    assert acc > 0.9
    assert math.isfinite(parts["gp"]) and parts["bce"] < 0.6


def test_config_roundtrip_and_errors():
    m = DUQClassifier(**SMALL)
    m2 = build_duq_classifier(m.config())
    m2.load_state_dict(m.state_dict(), strict=True)
    x = torch.randn(1, 2, 48, 80)
    with torch.no_grad():
        assert torch.allclose(m(x), m2(x))
    assert m.architecture()["name"] == "DUQClassifier"
    with pytest.raises(ValueError, match="geometry"):
        DUQClassifier(input_shape=(50, 80))
    with pytest.raises(ValueError, match="gamma"):
        DUQClassifier(**SMALL, gamma=0.0)
    with pytest.raises(ValueError, match="config"):
        build_duq_classifier({"bogus": 1})
    with pytest.raises(ValueError, match="wrong shape"):
        m.check_input(torch.zeros(1, 2, 40, 80))


def test_onnx_export_matches_torch():
    pytest.importorskip("onnxruntime")
    from mantid_exp2sim.onnx import export_onnx, verify_onnx

    torch.manual_seed(5)
    m = DUQClassifier(**SMALL)
    m.update_centroids(torch.randn(4, 2, 48, 80), onehot([0, 1, 0, 1]))
    blob = export_onnx(m, torch.randn(2, 2, 48, 80), dynamic_spatial=False, output_names=["K"])
    assert verify_onnx(blob, m, [torch.randn(3, 2, 48, 80), torch.randn(1, 2, 48, 80)]) < 1e-5
