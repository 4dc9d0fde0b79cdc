"""translate() and encode_features() on tiny real bundles (random weights, both backends)."""

from __future__ import annotations

import numpy as np
import pytest

from mantid_exp2sim.errors import BundleError, InputDataError
from mantid_exp2sim.histogram import Axis, MDHisto
from mantid_exp2sim.inference import (
    InferenceBackend,
    TorchBackend,
    encode_features,
    model_spec,
    translate,
)

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from mantid_exp2sim.bundle import load_bundle, make_manifest, write_bundle  # noqa: E402
from mantid_exp2sim.domain.features import pooled_features  # noqa: E402
from mantid_exp2sim.models.generator import ResnetGenerator  # noqa: E402
from mantid_exp2sim.models.normalisation import (  # noqa: E402
    crop_padding,
    from_network_output,
    intensity_scale,
    pad_to_multiple,
    to_network_input,
    valid_mask,
)
from mantid_exp2sim.onnx import EncoderWrapper, export_onnx  # noqa: E402


def _make_bundle(folder, ndim, ngf, n_blocks, patch):
    """A generator with every layer switched on (untrained ones are the identity)."""
    torch.manual_seed(10 + ndim)
    g = ResnetGenerator(ndim, ngf=ngf, n_blocks=n_blocks)
    with torch.no_grad():
        for block in g.blocks:
            block.alpha.fill_(0.7)
        torch.nn.init.normal_(g.head.weight, std=0.2)
        g.head.bias.fill_(0.05)
    g.eval()
    x = torch.zeros((1, 2) + (16,) * ndim)
    manifest = make_manifest(kind="generator", task="deconvolve", direction="exp2sim", model=g,
                             patch_size=patch, command=["test"])
    path = folder / f"tiny{ndim}d.exp2sim.h5"
    write_bundle(path, manifest, onnx=export_onnx(g, x, exporter="torchscript"),
                 onnx_encoder=export_onnx(EncoderWrapper(g), x, exporter="torchscript"),
                 weights=g.state_dict())
    return load_bundle(path), g


@pytest.fixture(scope="module")
def b2(tmp_path_factory):
    return _make_bundle(tmp_path_factory.mktemp("b2"), 2, ngf=4, n_blocks=2, patch=80)


@pytest.fixture(scope="module")
def b3(tmp_path_factory):
    return _make_bundle(tmp_path_factory.mktemp("b3"), 3, ngf=2, n_blocks=1, patch=56)


def _whole(g, sig, conserve=True):
    """Whole-input inference as models.normalisation defines it: pad, run once, crop; then
    (``conserve``) one factor that gives the output the input's integral."""
    s = intensity_scale(sig)
    x, pads = pad_to_multiple(to_network_input(sig, s), g.spatial_multiple)
    with torch.no_grad():
        y = g(torch.from_numpy(x)).numpy()
    out = from_network_output(crop_padding(y, pads), s, valid_mask(sig))
    return out * (np.nansum(sig) / np.nansum(out)) if conserve else out


def _histo(shape, seed=0, masked=0.05):
    rng = np.random.default_rng(seed)
    sig = 3.0 + rng.normal(size=shape) + np.cos(np.indices(shape).sum(0) / 4.0)
    sig[rng.random(shape) < masked] = np.nan
    names = ["[H,0,0]", "[0,K,0]", "DeltaE"][-len(shape):]
    units = ["r.l.u.", "r.l.u.", "meV"][-len(shape):]
    return MDHisto.from_array(sig, names=names, units=units,
                              extents=[(-1.0, 1.0)] * (len(shape) - 1) + [(0.0, 50.0)],
                              metadata={"Ei": 70.0})


def _rel(a, ref):
    return np.nanmax(np.abs(a - ref)) / (np.nanmax(ref) - np.nanmin(ref))


@pytest.mark.parametrize("backend", ["onnx", "torch"])
@pytest.mark.parametrize("shape,patch,batch", [
    ((5, 7), None, None),       # smaller than the network's minimum size
    ((37, 53), None, 1),        # not multiples of 4, one tile
    ((101, 150), 80, 3),        # several tiles, batched
    ((150, 97), 76, 1),
])
def test_tiled_translate_equals_whole_2d(b2, backend, shape, patch, batch):
    bundle, g = b2
    h = _histo(shape, seed=shape[0])
    ref = _whole(g, h.signal)
    out = translate(h, bundle, backend=backend, device="cpu", patch_size=patch, batch_size=batch)
    np.testing.assert_array_equal(np.isnan(out.signal), h.mask)
    assert _rel(out.signal, ref) <= 1e-5
    if max(shape) > 100:
        assert out.metadata["n_tiles"] > 1


@pytest.mark.parametrize("backend", ["onnx", "torch"])
@pytest.mark.parametrize("shape,batch", [((9, 6, 11), 1), ((61, 30, 43), 3)])
def test_tiled_translate_equals_whole_3d(b3, backend, shape, batch):
    bundle, g = b3
    h = _histo(shape, seed=shape[0])
    ref = _whole(g, h.signal)
    out = translate(h, bundle, backend=backend, device="cpu", batch_size=batch)
    np.testing.assert_array_equal(np.isnan(out.signal), h.mask)
    assert _rel(out.signal, ref) <= 1e-5
    if max(shape) > 56:
        assert out.metadata["n_tiles"] > 1


def test_output_keeps_axes_mask_metadata_and_input(b2):
    bundle, _ = b2
    h = _histo((40, 60), masked=0.2)
    before = h.signal.copy()
    out = translate(h, bundle, device="cpu")
    np.testing.assert_array_equal(h.signal, before)  # input untouched
    assert out.axes == h.axes
    assert out.errors is None
    assert out.metadata["Ei"] == 70.0
    for key in ("bundle_id", "bundle_sha256", "backend", "device", "package_version", "task"):
        assert out.metadata[key]
    assert out.metadata["bundle_id"] == bundle.bundle_id
    assert out.metadata["bundle_sha256"] == bundle.sha256
    assert out.metadata["task"] == "deconvolve"
    assert out.metadata["device"] == "cpu"
    assert out.metadata["backend"] == "onnx"  # "auto" with onnxruntime installed
    valid = ~h.mask
    assert out.metadata["intensity_scale"] == pytest.approx(np.sqrt(np.mean(h.signal[valid] ** 2)))
    assert np.isfinite(out.signal[valid]).all()


def test_masked_bins_are_ignored(b2):
    """Masked bins reach the network only as (0, mask 0): moving the mask changes nothing else."""
    bundle, g = b2
    h = _histo((48, 64), masked=0.0)
    sig = h.signal.copy()
    sig[10:14, 20:30] = np.nan
    out = translate(h.with_signal(sig, keep_mask=False), bundle, backend="torch", device="cpu")
    assert np.isnan(out.signal[10:14, 20:30]).all()
    assert np.isfinite(out.signal[~np.isnan(sig)]).all()
    # identical to feeding zeros with the mask channel off
    s = intensity_scale(sig)
    x = to_network_input(np.where(np.isnan(sig), 0.0, sig), s)
    x[0, 1] = ~np.isnan(sig)
    with torch.no_grad():
        y = g(torch.from_numpy(x)).numpy()
    ref = from_network_output(y, s, ~np.isnan(sig))
    ref *= np.nansum(sig) / np.nansum(ref)
    assert _rel(out.signal, ref) <= 1e-5


def test_integrated_intensity_is_conserved_by_one_factor(b2):
    bundle, g = b2
    h = _histo((101, 150), masked=0.1)
    out = translate(h, bundle, device="cpu", patch_size=80)
    assert out.metadata["n_tiles"] > 1
    assert np.nansum(out.signal) == pytest.approx(np.nansum(h.signal), rel=1e-9)
    raw = translate(h, bundle, device="cpu", conserve_intensity=False)
    assert raw.metadata["intensity_factor"] is None and raw.metadata["intensity_conservation"] == "off"
    assert _rel(raw.signal, _whole(g, h.signal, conserve=False)) <= 1e-5
    factor = out.metadata["intensity_factor"]
    assert out.metadata["intensity_conservation"] == "applied"
    assert factor == pytest.approx(np.nansum(h.signal) / np.nansum(raw.signal), rel=1e-6)
    assert abs(factor - 1) > 1e-3  # the random network does not conserve it by itself
    np.testing.assert_allclose(out.signal, factor * raw.signal, rtol=1e-5)


def test_intensity_is_not_conserved_when_negative_bins_cancel_it(b2):
    """Background-subtracted data whose integral is mostly cancelled: no factor, reason recorded."""
    bundle, g = b2
    h = _histo((48, 64), masked=0.0)
    sig = h.signal - np.mean(h.signal) + 0.01  # integral ~1% of the integrated |x|
    out = translate(h.with_signal(sig), bundle, device="cpu")
    assert out.metadata["intensity_factor"] is None
    assert "negative bins cancel" in out.metadata["intensity_conservation"]
    assert _rel(out.signal, _whole(g, sig, conserve=False)) <= 1e-5


@pytest.mark.parametrize("c", [1e-3, 7.5])
def test_scale_equivariance(b2, c):
    bundle, _ = b2
    h = _histo((64, 90))
    a = translate(h, bundle, device="cpu")
    b = translate(h.with_signal(c * h.signal), bundle, device="cpu")
    np.testing.assert_allclose(b.signal, c * a.signal, rtol=1e-6, atol=0)


def test_size_one_dimensions_are_carried_through(b2):
    bundle, _ = b2
    flat = _histo((40, 52))
    axes = (Axis("DeltaE", "meV", 0.0, 1.0, 1),) + flat.axes
    h3 = MDHisto(flat.signal[None], axes)
    out = translate(h3, bundle, device="cpu")
    assert out.shape == (1, 40, 52)
    np.testing.assert_allclose(out.signal[0], translate(flat, bundle, device="cpu").signal, rtol=0, atol=0)


def test_input_checks(b2, b3):
    bundle, _ = b2
    with pytest.raises(InputDataError, match="dimensionality does not match"):
        translate(MDHisto.from_array(np.ones(30)), bundle, device="cpu")
    with pytest.raises(InputDataError, match="dimensionality does not match"):
        translate(_histo((20, 20, 20)), bundle, device="cpu")
    with pytest.raises(InputDataError, match="single bin"):
        translate(MDHisto.from_array(np.ones((1, 50))), bundle, device="cpu")
    with pytest.raises(InputDataError, match="entirely masked"):
        translate(MDHisto.from_array(np.full((20, 20), np.nan)), bundle, device="cpu")
    h = _histo((20, 20))
    h.signal[3, 4] = np.inf
    with pytest.raises(InputDataError, match="infinite"):
        translate(h, bundle, device="cpu")
    with pytest.raises(InputDataError, match="PatchSize has the wrong length"):
        translate(_histo((20, 20)), bundle, device="cpu", patch_size=[64, 64, 64])
    with pytest.raises(InputDataError, match="patch size is too small"):
        translate(_histo((200, 200)), bundle, device="cpu", patch_size=32)
    with pytest.raises(ValueError, match="batch_size"):
        translate(_histo((20, 20)), bundle, device="cpu", batch_size=0)
    with pytest.raises(ValueError, match="Unknown inference backend"):
        translate(_histo((20, 20)), bundle, backend="tensorrt")
    with pytest.raises(InputDataError, match="3D data"):
        translate(_histo((20, 20)), b3[0], device="cpu")


def test_classifier_bundle_is_rejected():
    class Fake:
        manifest = {"kind": "classifier", "bundle_id": "cls", "ndim": 2, "patch": {"halo": 0, "multiple": 1}}

    with pytest.raises(BundleError, match="cannot translate"):
        model_spec(Fake())


def test_bundle_path_is_accepted(b2):
    bundle, _ = b2
    h = _histo((30, 30))
    a = translate(h, bundle.path, device="cpu")
    b = translate(h, bundle, device="cpu")
    np.testing.assert_array_equal(a.signal, b.signal)


def test_progress_and_cancel(b2):
    bundle, _ = b2
    h = _histo((150, 97))
    seen = []
    out = translate(h, bundle, device="cpu", patch_size=76, batch_size=2, progress=lambda d, t: seen.append((d, t)))
    total = out.metadata["n_tiles"]
    assert total > 2
    assert seen[-1] == (total, total)
    assert [d for d, _ in seen] == [min(2 * (i + 1), total) for i in range(len(seen))]

    calls = []

    def cancel(done, total):
        calls.append(done)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        translate(h, bundle, device="cpu", patch_size=76, batch_size=2, progress=cancel)
    assert calls == [2]


class _OOMOnBigBatches(InferenceBackend):
    """Backend that fails like a full GPU when given more than ``fit`` tiles at once."""

    def __init__(self, inner, fit):
        self.inner, self.fit, self.sizes = inner, fit, []
        self.name, self.device, self.precision = inner.name, inner.device, inner.precision

    def __call__(self, x):
        self.sizes.append(len(x))
        if len(x) > self.fit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner(x)


def test_out_of_memory_halves_the_batch(b2):
    bundle, _ = b2
    h = _histo((150, 97))
    ref = translate(h, bundle, backend="torch", device="cpu", patch_size=76, batch_size=1)
    fake = _OOMOnBigBatches(TorchBackend(bundle.build_torch_model(), device="cpu"), fit=1)
    out = translate(h, bundle, backend=fake, patch_size=76, batch_size=4)
    np.testing.assert_allclose(out.signal, ref.signal, rtol=0, atol=1e-6)
    assert fake.sizes[:3] == [4, 2, 1]
    assert max(fake.sizes[3:]) == 1  # the reduced batch is kept for later batches


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_encode_features_pools_the_bottleneck(b2, backend):
    bundle, g = b2
    hs = [_histo((40, 52), seed=1), _histo((37, 61), seed=2, masked=0.3)]
    f = encode_features(hs, bundle, backend=backend, device="cpu")
    width = g.ngf * 2**g.n_down
    assert f.shape == (2, 2 * width)
    # reference: torch encoder on the padded input, pooled over the valid input bins
    h = hs[1]
    s = intensity_scale(h.signal)
    x, pads = pad_to_multiple(to_network_input(h.signal, s), 4)
    with torch.no_grad():
        fmap = g.encode(torch.from_numpy(x)).numpy()
    valid = np.pad(~h.mask, [(0, p) for p in pads])[None]
    ref = pooled_features(fmap, valid)[0]
    np.testing.assert_allclose(f[1], ref, rtol=1e-4, atol=1e-5)
    assert not np.allclose(f[0], f[1])


def test_default_patch_is_the_bundles_capped_by_the_device_tile(b2):
    """No PatchSize: the bundle's patch, but never above the device's default tile."""
    import dataclasses

    from mantid_exp2sim.inference.engine import DEFAULT_PATCH, default_tile, resolve_patch

    spec = model_spec(b2[0])
    assert resolve_patch(None, spec, "cpu") == (80, 80)  # the tiny bundle's own, below the cap
    huge = dataclasses.replace(spec, patch=(4096, 4096))
    capped = resolve_patch(None, huge, "cpu")
    assert capped == default_tile(spec, "cpu")
    assert max(capped) <= DEFAULT_PATCH["cpu"][2]
    assert resolve_patch(None, huge, "gpu")[0] > capped[0]
    # an explicit PatchSize is never capped
    assert resolve_patch(4096, huge, "cpu") == (4096, 4096)
