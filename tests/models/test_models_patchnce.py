"""PatchNCE: mask-aware sampling, projection heads, InfoNCE loss (2D and 3D)."""

import pytest

torch = pytest.importorskip("torch")

from mantid_exp2sim.models import (  # noqa: E402
    PatchNCELoss,
    PatchSampleMLP,
    ResnetGenerator,
    feature_masks,
    sample_patch_ids,
)

pytestmark = pytest.mark.torch


def test_heads_are_built_up_front_for_known_channels():
    g = ResnetGenerator(2, ngf=4, n_blocks=2)
    ids = g.default_nce_layers()
    f = PatchSampleMLP(g.feature_channels(ids), nc=16)
    n_params = sum(p.numel() for p in f.parameters())
    assert n_params == sum(c * 16 + 16 + 16 * 16 + 16 for c in g.feature_channels(ids))
    torch.optim.Adam(f.parameters())  # no lazy init: an optimiser can be built now


@pytest.mark.parametrize("ndim,size", [(2, (32, 24)), (3, (16, 8, 16))])
def test_sampling_shapes_and_unit_norm(ndim, size):
    g = ResnetGenerator(ndim, ngf=4, n_blocks=2)
    ids = g.default_nce_layers()
    x = torch.randn(3, 2, *size)
    feats = g.nce_features(x, ids)
    f = PatchSampleMLP(g.feature_channels(ids), nc=8)
    samples, patch_ids = f(feats, num_patches=10)
    for s, p in zip(samples, patch_ids):
        assert s.shape == (3, 10, 8) and p.shape == (3, 10)
        torch.testing.assert_close(s.norm(dim=-1), torch.ones(3, 10))
        assert all(len(set(row.tolist())) == 10 for row in p)  # without replacement
    # the query pass reuses the key's locations
    again, ids_again = f(feats, patch_ids=patch_ids)
    assert all(torch.equal(a, b) for a, b in zip(ids_again, patch_ids))
    torch.testing.assert_close(again[0], samples[0])


@pytest.mark.parametrize("ndim", [2, 3])
def test_mask_aware_sampling_never_picks_masked_locations(ndim):
    torch.manual_seed(0)
    size = (16,) * ndim
    g = ResnetGenerator(ndim, ngf=2, n_blocks=1)
    ids = [0, 1, 2, 3]
    mask = (torch.rand(2, *size) > 0.4).float()
    mask[0, 4:12] = 0  # a large masked block in sample 0
    mask[1, ..., 4:8] = 1  # a fully valid band in sample 1
    x = torch.cat([torch.randn(2, 1, *size) * mask[:, None], mask[:, None]], dim=1)
    feats = g.nce_features(x, ids)
    masks = feature_masks(x[:, 1], feats)
    f = PatchSampleMLP(g.feature_channels(ids), nc=4)
    for _ in range(20):
        _, picked = f(feats, num_patches=64, masks=masks)
        for m, p in zip(masks, picked):
            assert bool(torch.gather(m.flatten(1), 1, p).all())
    # a stride-s location is valid only if its whole s**ndim input block is valid
    for m, s in zip(masks, g.feature_strides(ids)):
        blocks = mask.unfold(1, s, s)
        for d in range(2, ndim + 1):
            blocks = blocks.unfold(d, s, s)
        full = blocks.flatten(ndim + 1).min(dim=-1).values > 0
        if bool(full.flatten(1).any(dim=1).all()):
            assert torch.equal(m, full)


def test_feature_masks_fall_back_to_partially_valid_blocks():
    mask = torch.zeros(1, 8, 8)
    mask[0, ::2, ::2] = 1  # no fully valid 2x2 block, but every block has one valid bin
    feats = [torch.zeros(1, 3, 4, 4)]
    (m,) = feature_masks(mask, feats)
    assert bool(m.all())
    with pytest.raises(ValueError, match="fully masked"):
        sample_patch_ids(torch.zeros(1, 4, 4, dtype=torch.bool), 5)


def test_sampling_is_reproducible_with_a_generator_and_limited_to_valid_count():
    valid = torch.zeros(2, 6, 6, dtype=torch.bool)
    valid[0, :2] = True  # 12 valid
    valid[1] = True
    a = sample_patch_ids(valid, 50, generator=torch.Generator().manual_seed(3))
    b = sample_patch_ids(valid, 50, generator=torch.Generator().manual_seed(3))
    assert a.shape == (2, 12) and torch.equal(a, b)
    assert sorted(a[0].tolist()) == list(range(12))


def test_patchnce_loss_is_lower_for_matching_than_for_shuffled_features():
    torch.manual_seed(0)
    loss = PatchNCELoss(temperature=0.07)
    k = torch.nn.functional.normalize(torch.randn(2, 64, 16), dim=-1)
    q_match = torch.nn.functional.normalize(k + 0.1 * torch.randn_like(k), dim=-1)
    q_shuffled = q_match[:, torch.randperm(64)]
    l_match, l_shuffled = loss(q_match, k), loss(q_shuffled, k)
    assert float(l_match) < 0.5 and float(l_shuffled) > 3.0
    # the chance level of a 64-way classification is log(64)
    uniform = loss(torch.zeros(2, 64, 16), k)
    assert float(uniform) == pytest.approx(float(torch.log(torch.tensor(64.0))), rel=1e-6)


def test_patchnce_loss_trains_queries_only():
    k = torch.nn.functional.normalize(torch.randn(1, 8, 4), dim=-1).requires_grad_()
    q = torch.nn.functional.normalize(torch.randn(1, 8, 4), dim=-1).requires_grad_()
    PatchNCELoss()(q, k).backward()
    assert k.grad is None and q.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="same"):
        PatchNCELoss()(q, k[:, :4])


def test_patchnce_through_generator_features_prefers_same_locations():
    """Keys from an input and queries from the same input match better than across samples."""
    torch.manual_seed(2)
    g = ResnetGenerator(2, ngf=4, n_blocks=1)
    ids = [1, 2]
    f = PatchSampleMLP(g.feature_channels(ids), nc=16)
    x = torch.randn(2, 2, 32, 32)
    x[:, 1] = 1.0
    feats = g.nce_features(x, ids)
    keys, pid = f(feats, num_patches=32)
    queries, _ = f(g.nce_features(x, ids), patch_ids=pid)
    loss = PatchNCELoss()
    same = sum(loss(q, k) for q, k in zip(queries, keys))
    crossed = sum(loss(q.flip(0)[:, torch.randperm(q.shape[1])], k) for q, k in zip(queries, keys))
    assert same.item() < crossed.item()
