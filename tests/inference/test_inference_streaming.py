"""translate_file(): streamed file-to-file translation equals in-memory translate()."""

from __future__ import annotations

import numpy as np
import pytest

from mantid_exp2sim.errors import InputDataError
from mantid_exp2sim.histogram import Axis, MDHisto
from mantid_exp2sim.inference import translate, translate_file
from mantid_exp2sim.inference import streaming
from mantid_exp2sim.io import HistogramReader, load_histogram, save_histogram

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from mantid_exp2sim.bundle import load_bundle, make_manifest, write_bundle  # noqa: E402
from mantid_exp2sim.models.generator import ResnetGenerator  # noqa: E402
from mantid_exp2sim.onnx import export_onnx  # noqa: E402


def _bundle(folder, ndim, patch):
    torch.manual_seed(20 + ndim)
    g = ResnetGenerator(ndim, ngf=2 if ndim == 3 else 4, n_blocks=1)
    with torch.no_grad():
        for block in g.blocks:
            block.alpha.fill_(0.6)
        torch.nn.init.normal_(g.head.weight, std=0.3)
    manifest = make_manifest(kind="generator", task="convolve", direction="sim2exp", model=g,
                             patch_size=patch, command=["test"])
    path = folder / f"s{ndim}.exp2sim.h5"
    x = torch.zeros((1, 2) + (16,) * ndim)
    write_bundle(path, manifest, onnx=export_onnx(g, x, exporter="torchscript"), weights=g.state_dict())
    return load_bundle(path)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bundles")
    return {2: _bundle(folder, 2, 72), 3: _bundle(folder, 3, 56)}


def _histo(shape, seed=0):
    rng = np.random.default_rng(seed)
    sig = 1.0 + np.abs(rng.normal(size=shape))
    sig[rng.random(shape) < 0.1] = np.nan
    axes = tuple(Axis(f"D{i}", "meV" if i == len(shape) - 1 else "r.l.u.", -1.0, 1.0 + i, n,
                      frame="General Frame" if i == len(shape) - 1 else "HKL") for i, n in enumerate(shape))
    return MDHisto(sig, axes, errors=np.sqrt(np.abs(np.nan_to_num(sig))), metadata={"sample": "PCSMO"})


@pytest.mark.parametrize("ext_in,ext_out", [(".nxs", ".nxs"), (".h5", ".h5"), (".nxs", ".h5")])
def test_file_round_trip_equals_in_memory(tmp_path, bundles, ext_in, ext_out):
    h = _histo((61, 38, 51), seed=1)
    src = save_histogram(h, tmp_path / f"in{ext_in}")
    dst = translate_file(src, tmp_path / f"out{ext_out}", bundles[3], backend="onnx", device="cpu", batch_size=2)
    ref = translate(h, bundles[3], backend="onnx", device="cpu")
    out = load_histogram(dst)
    assert out.shape == h.shape
    assert [(a.name, a.unit, a.frame, a.minimum, a.maximum) for a in out.axes] == [
        (a.name, a.unit, a.frame, a.minimum, a.maximum) for a in h.axes
    ]
    np.testing.assert_array_equal(np.isnan(out.signal), h.mask)
    np.testing.assert_allclose(out.signal, ref.signal, rtol=0, atol=1e-12, equal_nan=True)
    assert out.metadata["bundle_id"] == bundles[3].bundle_id
    assert out.metadata["sample"] == "PCSMO"
    assert out.metadata["n_tiles"] > 1
    # the second pass over the output file gave it the input's integral
    assert out.metadata["intensity_conservation"] == "applied"
    assert out.metadata["intensity_factor"] == pytest.approx(ref.metadata["intensity_factor"], rel=1e-9)
    assert np.nansum(out.signal) == pytest.approx(np.nansum(h.signal), rel=1e-9)


def test_file_translation_without_intensity_conservation(tmp_path, bundles):
    h = _histo((40, 52), seed=3)
    src = save_histogram(h, tmp_path / "in.nxs")
    dst = translate_file(src, tmp_path / "out.nxs", bundles[2], device="cpu", conserve_intensity=False)
    ref = translate(h, bundles[2], device="cpu", conserve_intensity=False)
    out = load_histogram(dst)
    np.testing.assert_allclose(out.signal, ref.signal, rtol=0, atol=1e-12, equal_nan=True)
    assert out.metadata["intensity_conservation"] == "off"
    assert abs(np.nansum(out.signal) / np.nansum(h.signal) - 1) > 1e-3


def test_tile_reads_are_bounded(tmp_path, bundles, monkeypatch):
    h = _histo((150, 97), seed=2)
    src = save_histogram(h, tmp_path / "in.h5")
    reads = []
    original = HistogramReader.read_signal

    def counting(self, index=None):
        a = original(self, index)
        reads.append(a.size)
        return a

    monkeypatch.setattr(HistogramReader, "read_signal", counting)
    monkeypatch.setattr(streaming, "SLAB_ELEMENTS", 2000)  # scale pass in slabs of ~20 rows
    seen = []
    translate_file(src, tmp_path / "out.h5", bundles[2], device="cpu",
                   progress=lambda d, t: seen.append(t))
    n_tiles = seen[-1]
    n_slabs = -(-150 // (2000 // 97))
    assert len(reads) == n_slabs + n_tiles
    assert max(reads[:n_slabs]) <= 2000
    assert max(reads[n_slabs:]) <= 72 * 72
    out = load_histogram(tmp_path / "out.h5")
    ref = translate(h, bundles[2], device="cpu")
    np.testing.assert_allclose(out.signal, ref.signal, rtol=0, atol=1e-12, equal_nan=True)


def test_streamed_scale_matches_in_memory():
    h = _histo((31, 17, 9))
    from mantid_exp2sim.models.normalisation import intensity_scale

    assert streaming.streamed_intensity_scale(h.signal, slab_elements=100) == pytest.approx(
        intensity_scale(h.signal), rel=1e-12
    )


def test_cancel_leaves_no_output(tmp_path, bundles):
    h = _histo((150, 97), seed=3)
    src = save_histogram(h, tmp_path / "in.nxs")

    def cancel(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        translate_file(src, tmp_path / "out.nxs", bundles[2], device="cpu", progress=cancel)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nxs"]


def test_size_one_dimension_in_a_file(tmp_path, bundles):
    flat = _histo((40, 52), seed=4)
    axes = flat.axes[:1] + (Axis("DeltaE", "meV", 10.0, 12.0, 1),) + flat.axes[1:]
    h = MDHisto(flat.signal[:, None, :], axes)
    src = save_histogram(h, tmp_path / "in.nxs")
    out = load_histogram(translate_file(src, tmp_path / "out.nxs", bundles[2], device="cpu"))
    assert out.shape == (40, 1, 52)
    ref = translate(flat, bundles[2], device="cpu")
    np.testing.assert_allclose(out.signal[:, 0], ref.signal, rtol=0, atol=1e-12, equal_nan=True)


def test_input_problems_are_reported(tmp_path, bundles):
    h = _histo((30, 30))
    src = save_histogram(h, tmp_path / "in.h5")
    with pytest.raises(InputDataError, match="output file is the input file"):
        translate_file(src, src, bundles[2], device="cpu")
    with pytest.raises(InputDataError, match="3D data"):
        translate_file(src, tmp_path / "o.h5", bundles[3], device="cpu")
    empty = save_histogram(MDHisto.from_array(np.full((20, 20), np.nan)), tmp_path / "nan.h5")
    with pytest.raises(InputDataError, match="no unmasked bins"):
        translate_file(empty, tmp_path / "o.h5", bundles[2], device="cpu")
    assert not (tmp_path / "o.h5").exists()
