"""Tests of the DUQ classifier (mantid_exp2sim.models.duq)."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mantid_exp2sim.models.duq import (  # noqa: E402
    DUQClassifier,
    build_duq_classifier,
    duq_loss,
    feature_mmd,
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


def test_feature_mmd_is_zero_for_equal_sets_and_grows_with_the_shift():
    torch.manual_seed(0)
    a = torch.randn(32, 6)
    assert feature_mmd(a, a.clone()).item() == pytest.approx(0.0, abs=1e-6)
    near = feature_mmd(a, torch.randn(32, 6)).item()
    far = feature_mmd(a, torch.randn(32, 6) + 3.0).item()
    assert 0.0 <= near < far
    # the bandwidth follows the data: rescaling both sets changes nothing
    b = torch.randn(32, 6) + 1.0
    assert feature_mmd(10 * a, 10 * b).item() == pytest.approx(feature_mmd(a, b).item(), rel=1e-4)
    # exact value on a tiny case: two single points at squared distance d2, median d2
    p, q = torch.zeros(1, 1), torch.ones(1, 1) * 2.0
    expected = 2 * 3 - 2 * sum(math.exp(-1.0 / s) for s in (0.5, 1.0, 2.0))
    assert feature_mmd(p, q).item() == pytest.approx(expected, rel=1e-5)


def test_duq_loss_with_unlabelled_target_batch():
    torch.manual_seed(1)
    m = DUQClassifier(**SMALL).train()
    x, y = torch.randn(4, 2, 48, 80), onehot([0, 1, 0, 1])
    xt = torch.randn(4, 2, 48, 80) + 2.0
    _, parts = duq_loss(m, x, y, gp_weight=0.0)
    assert "align" not in parts
    loss, parts_t = duq_loss(m, x, y, gp_weight=0.0, x_target=xt, align_weight=2.0)
    assert parts_t["align"] > 0
    # the alignment term is added with its weight to the labelled batch's BCE
    assert loss.item() == pytest.approx(parts_t["bce"] + 2.0 * parts_t["align"], rel=1e-5)
    # gradients reach the feature extractor through the alignment term alone
    m.zero_grad()
    with_align, _ = duq_loss(m, x, y, gp_weight=0.0, x_target=xt, align_weight=1.0)
    without, _ = duq_loss(m, x, y, gp_weight=0.0, x_target=xt, align_weight=0.0)
    (with_align - without).backward()
    assert m.conv1.weight.grad.abs().sum() > 0
    # the gradient penalty covers the labelled rows only (eval mode: samples are independent)
    m.eval()
    xs = x.clone().requires_grad_(True)
    expected = gradient_penalty(xs, m(xs)).item()
    xg = torch.cat([x, xt]).requires_grad_(True)
    assert gradient_penalty(xg, m(xg)[:4], rows=4).item() == pytest.approx(expected, rel=1e-4)
    assert gradient_penalty(xg, m(xg)).item() != pytest.approx(expected, rel=1e-4)


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
