"""Overlap-tile inference equals whole-input inference (small torch conv nets, 2D and 3D)."""

from __future__ import annotations

import numpy as np
import pytest

from mantid_exp2sim.errors import InputDataError
from mantid_exp2sim.inference.tiler import padded_index_map, plan_tiles, run_tiled

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch

M = 4  # two stride-2 stages


def _net(ndim: int, seed: int, padding_mode: str = "reflect") -> "torch.nn.Module":
    """Stem, two stride-2 convs, a bottleneck conv, two nearest x2 upsamplings, head."""
    torch.manual_seed(seed)
    conv = torch.nn.Conv2d if ndim == 2 else torch.nn.Conv3d

    def c(cin, cout, k, stride=1):
        return conv(cin, cout, k, stride=stride, padding=k // 2, padding_mode=padding_mode)

    act = torch.nn.LeakyReLU(0.2)
    up = torch.nn.Upsample(scale_factor=2, mode="nearest")
    net = torch.nn.Sequential(
        c(2, 6, 5), act, c(6, 8, 3, 2), act, c(8, 8, 3, 2), act, c(8, 8, 3), act,
        up, c(8, 6, 3), act, up, c(6, 1, 5),
    )
    return net.eval()


def _radius(net: "torch.nn.Module", ndim: int) -> int:
    """Receptive-field radius measured with autograd on a zero-padded copy of the net."""
    zero = _clone_with_zero_padding(net)
    n = 56 if ndim == 2 else 40
    radius = 0
    for j in range(M):
        x = torch.zeros((1, 2) + (n,) * ndim, requires_grad=True)
        y = zero(x)
        centre = (n // 2 // M) * M + j
        y[(0, 0) + (centre,) * ndim].backward()
        hits = torch.nonzero(x.grad[0].abs().sum(0) > 0)
        radius = max(radius, int((hits - centre).abs().max()))
    return radius


def _clone_with_zero_padding(net):
    import copy

    z = copy.deepcopy(net)
    for m in z.modules():
        if hasattr(m, "padding_mode"):
            m.padding_mode = "zeros"
    return z


def _callable(net):
    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(x)).numpy()

    run.calls = 0
    return run


def _prepare(raw: np.ndarray) -> np.ndarray:
    valid = ~np.isnan(raw)
    return np.stack([np.where(valid, raw, 0.0), valid]).astype(np.float32)


def _finish(y: np.ndarray, raw: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(raw), np.nan, y[0])


def _whole(signal: np.ndarray, fn, mode: str) -> np.ndarray:
    """Reference: pad the network input at the end to a multiple of M, run once, crop."""
    pads = [(0, (-s) % M) for s in signal.shape]
    x = _prepare(signal)
    if mode == "constant":
        x = np.pad(x, [(0, 0)] + pads)
    else:
        x = np.pad(x, [(0, 0)] + pads, mode=mode)
    y = fn(x[None])[0]
    y = y[(slice(None),) + tuple(slice(0, s) for s in signal.shape)]
    return _finish(y, signal)


def _signal(shape, seed=0, masked=0.1):
    rng = np.random.default_rng(seed)
    s = rng.normal(size=shape) + 2.0 * np.sin(np.indices(shape).sum(0) / 5.0)
    s[rng.random(shape) < masked] = np.nan
    return s


@pytest.fixture(scope="module")
def nets():
    out = {}
    for ndim in (2, 3):
        net = _net(ndim, seed=ndim)
        out[ndim] = (net, _radius(net, ndim))
    return out


CASES_2D = [
    # shape, tile, batch: smaller than a tile / not multiples of 4 / one tile / many tiles
    ((5, 7), 64, 1),
    ((37, 53), 64, 3),
    ((64, 64), 64, 1),
    ((61, 130), 48, 1),
    ((150, 97), 48, 3),
]
CASES_3D = [
    ((9, 6, 11), 40, 1),
    ((41, 30, 37), 40, 3),
    ((50, 21, 45), 48, 1),
]


@pytest.mark.parametrize("mode", ["edge", "reflect", "constant"])
@pytest.mark.parametrize("shape,tile,batch", CASES_2D)
def test_tiled_equals_whole_2d(nets, shape, tile, batch, mode):
    net, radius = nets[2]
    fn = _callable(net)
    sig = _signal(shape, seed=sum(shape))
    ref = _whole(sig, fn, mode)
    plan = plan_tiles(shape, tile=tile, halo=radius, multiple=M, pad_before=[0, 0],
                      pad_after=[(-s) % M for s in shape], mode=mode)
    out = np.full(shape, -999.0)
    run_tiled(sig, out, fn, plan, prepare=_prepare, finish=_finish, batch_size=batch)
    rng = np.nanmax(ref) - np.nanmin(ref)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(sig))
    assert np.nanmax(np.abs(out - ref)) <= 1e-5 * rng
    if max(shape) > tile:
        assert plan.n_tiles > 1


@pytest.mark.parametrize("shape,tile,batch", CASES_3D)
def test_tiled_equals_whole_3d(nets, shape, tile, batch):
    net, radius = nets[3]
    fn = _callable(net)
    sig = _signal(shape, seed=sum(shape))
    ref = _whole(sig, fn, "edge")
    plan = plan_tiles(shape, tile=tile, halo=radius, multiple=M, pad_before=[0] * 3,
                      pad_after=[(-s) % M for s in shape], mode="edge")
    out = np.full(shape, -999.0)
    run_tiled(sig, out, fn, plan, prepare=_prepare, finish=_finish, batch_size=batch)
    rng = np.nanmax(ref) - np.nanmin(ref)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(sig))
    assert np.nanmax(np.abs(out - ref)) <= 1e-5 * rng
    if max(shape) > tile:
        assert plan.n_tiles > 1


def test_too_small_halo_breaks_exactness(nets):
    """Control: the equality above is not trivial; a halo of 0 leaves seams."""
    net, radius = nets[2]
    fn = _callable(net)
    shape = (150, 97)
    sig = _signal(shape, masked=0.0)
    ref = _whole(sig, fn, "edge")
    plan = plan_tiles(shape, tile=48, halo=0, multiple=M, pad_before=[0, 0],
                      pad_after=[(-s) % M for s in shape], mode="edge")
    out = np.empty(shape)
    run_tiled(sig, out, fn, plan, prepare=_prepare, finish=_finish)
    assert np.abs(out - ref).max() > 1e-3 * (ref.max() - ref.min())


@pytest.mark.parametrize("shape,tile,halo", [((300, 500), 128, 20), ((97, 13, 61), (32, 16, 40), (6, 3, 9)), ((8,), 64, 5)])
def test_plan_geometry(shape, tile, halo):
    nd = len(shape)
    after = [(-s) % M for s in shape]
    plan = plan_tiles(shape, tile=tile, halo=halo, multiple=M, pad_before=[0] * nd, pad_after=after)
    P = plan.padded_shape
    tile_t = (tile,) * nd if np.ndim(tile) == 0 else tuple(tile)
    halo_t = (halo,) * nd if np.ndim(halo) == 0 else tuple(halo)
    covered = np.zeros(P, dtype=int)
    for t in plan.tiles:
        for d in range(nd):
            assert t.start[d] % M == 0
            assert 0 <= t.start[d] and t.start[d] + plan.tile_shape[d] <= P[d]
            # a core edge inside the frame keeps at least the halo from the tile edge
            if t.core_start[d] > 0:
                assert t.core_start[d] - t.start[d] >= halo_t[d]
            else:
                assert t.start[d] == 0
            if t.core_stop[d] < P[d]:
                assert t.start[d] + plan.tile_shape[d] - t.core_stop[d] >= halo_t[d]
            else:
                assert t.start[d] + plan.tile_shape[d] == P[d]
        covered[tuple(slice(a, b) for a, b in zip(t.core_start, t.core_stop))] += 1
    assert (covered == 1).all()
    assert all(ts % M == 0 and ts <= max(tt, p) for ts, tt, p in zip(plan.tile_shape, tile_t, P))


def test_plan_shrinks_tiles_to_cover_with_least_overlap():
    plan = plan_tiles((1000,), tile=512, halo=64, multiple=4, pad_before=[0], pad_after=[0])
    # 2 tiles cannot cover 1000 with cores of 384 (+64 at each border) -> 3 tiles, shrunk
    assert plan.n_tiles == 3
    assert plan.tile_shape[0] < 512
    assert plan.tile_shape[0] * 3 >= 1000 + 4 * 64


def test_patch_smaller_than_halo_is_a_clear_error():
    with pytest.raises(InputDataError, match="patch size of at least"):
        plan_tiles((300,), tile=64, halo=40, multiple=4, pad_before=[0], pad_after=[0])


def test_patch_not_a_multiple_is_rejected():
    with pytest.raises(InputDataError, match="multiple of 4"):
        plan_tiles((300,), tile=66, halo=4, multiple=4, pad_before=[0], pad_after=[0])


def test_padded_index_map_matches_numpy_pad():
    for mode in ("edge", "reflect", "symmetric", "wrap"):
        a = np.arange(7) * 10
        idx = padded_index_map(7, 2, 5, mode)
        np.testing.assert_array_equal(a[idx], np.pad(a, (2, 5), mode=mode))
    idx = padded_index_map(7, 1, 3, "constant")
    assert (idx[:1] == -1).all() and (idx[-3:] == -1).all()


class _CountingArray:
    """Array-like that records every read (h5py datasets are read the same way)."""

    def __init__(self, a):
        self.a = a
        self.shape = a.shape
        self.reads = []

    def __getitem__(self, key):
        self.reads.append(key)
        return self.a[key]


class _WriteOnce:
    def __init__(self, shape):
        self.a = np.full(shape, np.nan)
        self.count = np.zeros(shape, dtype=int)
        self.shape = shape

    def __setitem__(self, key, value):
        self.a[key] = value
        self.count[key] += 1


@pytest.mark.parametrize("slab", [1 << 20, 200])
def test_reads_are_bounded_and_writes_happen_once(nets, monkeypatch, slab):
    from mantid_exp2sim.inference import tiler

    monkeypatch.setattr(tiler, "SLAB_ELEMENTS", slab)  # 200: prepare/finish in slabs of a few rows
    net, radius = nets[2]
    fn = _callable(net)
    shape = (150, 97)
    src = _CountingArray(_signal(shape))
    sink = _WriteOnce(shape)
    plan = plan_tiles(shape, tile=48, halo=radius, multiple=M, pad_before=[0, 0],
                      pad_after=[(-s) % M for s in shape], mode="edge")
    run_tiled(src, sink, fn, plan, prepare=_prepare, finish=_finish, batch_size=2)
    assert len(src.reads) == plan.n_tiles
    for key in src.reads:
        size = [s.stop - s.start for s in key]
        assert all(n <= t for n, t in zip(size, plan.tile_shape))
    assert (sink.count == 1).all()
    ref = _whole(src.a, fn, "edge")
    assert np.nanmax(np.abs(sink.a - ref)) <= 1e-5 * (np.nanmax(ref) - np.nanmin(ref))


def test_h5py_source_and_sink(tmp_path, nets):
    h5py = pytest.importorskip("h5py")
    net, radius = nets[3]
    fn = _callable(net)
    shape = (41, 30, 37)
    sig = _signal(shape)
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["x"] = sig
        f.create_dataset("y", shape=shape, dtype="f8")
        plan = plan_tiles(shape, tile=40, halo=radius, multiple=M, pad_before=[0] * 3,
                          pad_after=[(-s) % M for s in shape], mode="edge")
        run_tiled(f["x"], f["y"], fn, plan, prepare=_prepare, finish=_finish, batch_size=3)
        out = f["y"][()]
    ref = _whole(sig, fn, "edge")
    assert np.nanmax(np.abs(out - ref)) <= 1e-5 * (np.nanmax(ref) - np.nanmin(ref))


def test_progress_after_every_batch_and_interrupt_propagates(nets):
    net, radius = nets[2]
    calls = []

    def fn(x):
        calls.append(len(x))
        return _callable(net)(x)

    shape = (150, 97)
    plan = plan_tiles(shape, tile=48, halo=radius, multiple=M, pad_before=[0, 0],
                      pad_after=[(-s) % M for s in shape], mode="edge")
    seen = []
    run_tiled(_signal(shape), np.empty(shape), fn, plan, prepare=_prepare, finish=_finish,
              batch_size=3, progress=lambda d, t: seen.append((d, t)))
    n = plan.n_tiles
    assert seen[-1] == (n, n)
    assert [d for d, _ in seen] == list(np.cumsum(calls))
    assert len(seen) == -(-n // 3)

    calls.clear()

    def cancel(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_tiled(_signal(shape), np.empty(shape), fn, plan, prepare=_prepare, finish=_finish,
                  batch_size=3, progress=cancel)
    assert calls == [3]
