"""Tests of Grad-CAM (mantid_exp2sim.models.gradcam) on networks whose answer is known."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from mantid_exp2sim.models.duq import DUQClassifier  # noqa: E402
from mantid_exp2sim.models.gradcam import grad_cam, tile_importance  # noqa: E402

pytestmark = pytest.mark.torch


class LeftRight(nn.Module):
    """Channel 0 sees only the left half, channel 1 only the right half.

    Score of class 1 = sigmoid(mean of channel 0) depends only on the left half; score of
    class 0 = sigmoid(mean of channel 1) only on the right half.
    """

    def __init__(self, w: int):
        super().__init__()
        half = torch.zeros(2, 1, w)
        half[0, :, : w // 2] = 1.0
        half[1, :, w // 2 :] = 1.0
        self.register_buffer("halves", half)
        self.cam_layer = nn.ReLU()

    def forward(self, x):
        a = self.cam_layer(x[:, :1] * self.halves[None])  # (N, 2, H, W)
        return torch.sigmoid(torch.stack([a[:, 1].mean((1, 2)), a[:, 0].mean((1, 2))], 1))


def test_cam_for_a_class_concentrates_where_that_class_looks():
    h, w = 8, 16
    net = LeftRight(w)
    x = torch.rand(2, 1, h, w) + 0.1
    r1 = grad_cam(net, x, 1, tile=0)
    r0 = grad_cam(net, x, 0, tile=0)
    assert r1.cam.shape == (2, h, w)
    left, right = r1.cam[:, :, : w // 2 - 1], r1.cam[:, :, w // 2 + 1 :]
    assert left.min() > 0 and np.allclose(right, 0.0)
    assert np.allclose(r0.cam[:, :, : w // 2 - 1], 0.0) and r0.cam[:, :, w // 2 + 1 :].min() > 0
    assert r1.cam.max() == pytest.approx(1.0)
    # Away from the seam the map is proportional to the input (alpha * x).
    ratio = r1.cam[0, :, :6] / x[0, 0, :, :6].numpy()
    np.testing.assert_allclose(ratio, ratio.mean(), rtol=1e-5)
    np.testing.assert_array_equal(r1.class_index, [1, 1])


def test_default_class_is_the_prediction_and_per_sample_classes():
    net = LeftRight(16)
    x = torch.zeros(2, 1, 8, 16)
    x[0, 0, :, :8] = 1.0  # left bright -> class 1 wins
    x[1, 0, :, 8:] = 1.0  # right bright -> class 0 wins
    r = grad_cam(net, x, tile=0)
    np.testing.assert_array_equal(r.class_index, [1, 0])
    r2 = grad_cam(net, x, [0, 1], tile=0)
    np.testing.assert_array_equal(r2.class_index, [0, 1])
    with pytest.raises(ValueError, match="range"):
        grad_cam(net, x, 2, tile=0)


def test_duq_cam_targets_the_kernel_of_the_chosen_class():
    torch.manual_seed(0)
    m = DUQClassifier(length_scale=1.0)
    # Opposite centroids: the two kernels pull the features in opposite directions, so the
    # two classes' maps must differ (and at least one is non-zero).
    with torch.no_grad():
        m.m[:, 0] = m.N[0]
        m.m[:, 1] = -m.N[1]
    x = torch.randn(1, 2, 240, 400).abs()
    r0 = grad_cam(m, x, 0)
    r1 = grad_cam(m, x, 1)
    assert r0.cam.shape == (1, 240, 400) and r0.tiles.shape == (1, 6, 10)
    assert max(r0.cam.max(), r1.cam.max()) == pytest.approx(1.0)
    assert not np.allclose(r0.cam, r1.cam)
    assert m.training  # grad_cam ran in eval mode and restored the mode
    m.eval()
    np.testing.assert_allclose(r0.scores, m(x).detach().numpy(), rtol=1e-6)
    # Hand computation of the map for class 1 through the kernel value K_1
    with torch.enable_grad():
        a = m.feature_map(x)
        a.retain_grad()
        k = m.kernel(m.embed(m.fc(torch.flatten(m.tile_pool(a), 1))))
        k[0, 1].backward()
    alpha = a.grad.mean((2, 3), keepdim=True)
    cam = torch.relu((alpha * a).sum(1, keepdim=True))
    cam = torch.nn.functional.interpolate(cam, size=(240, 400), mode="bilinear", align_corners=False)[0, 0]
    cam = (cam / cam.max()).detach().numpy()
    np.testing.assert_allclose(r1.cam[0], cam, atol=1e-5)
    np.testing.assert_allclose(r1.tiles[0], tile_importance(cam[None])[0], atol=1e-6)


def test_tile_importance_means():
    cam = np.zeros((1, 80, 120))
    cam[0, :40, 40:80] = 1.0
    t = tile_importance(cam)
    np.testing.assert_array_equal(t[0], [[0, 1, 0], [0, 0, 0]])
