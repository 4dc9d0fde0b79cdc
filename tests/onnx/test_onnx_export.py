"""ONNX export of the networks: ONNX Runtime agrees with PyTorch on sizes not used at export."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from mantid_exp2sim.models import PatchDiscriminator, ResnetGenerator  # noqa: E402
from mantid_exp2sim.onnx import EncoderWrapper, export_onnx, verify_onnx  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _random_generator(ndim, **kw):
    torch.manual_seed(0)
    g = ResnetGenerator(ndim, **kw)
    with torch.no_grad():
        for name, p in g.named_parameters():
            if name.endswith("alpha"):
                p.fill_(0.7)
            elif name.startswith("head"):
                p.normal_(0.0, 0.05)
    return g


@pytest.fixture(scope="module")
def generator_2d():
    g = _random_generator(2, ngf=4, n_blocks=2)
    return g, export_onnx(g, torch.randn(1, 2, 32, 48))


def test_generator_2d_matches_torch_on_unseen_sizes(generator_2d):
    g, blob = generator_2d
    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=(2, 2, 64, 40)).astype(np.float32), rng.normal(size=(1, 2, 8, 8)).astype(np.float32)]
    with torch.no_grad():
        assert float(g(torch.from_numpy(inputs[0])).abs().max()) > 1.0  # not a trivial output
    assert verify_onnx(blob, g, inputs) < 1e-4


def test_exported_graph_has_dynamic_batch_and_spatial_axes(generator_2d):
    _, blob = generator_2d
    sess = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    assert inp.name == "input"
    assert inp.shape[1] == 2 and all(isinstance(d, str) for d in (inp.shape[0], *inp.shape[2:]))
    out = sess.run(None, {"input": np.zeros((3, 2, 16, 24), np.float32)})[0]
    assert out.shape == (3, 1, 16, 24)


@pytest.mark.slow  # two dynamo exports, about 5 s on an idle 2-core machine
def test_generator_3d_and_its_encoder_match_torch():
    g = _random_generator(3, ngf=2, n_blocks=1)
    x = torch.randn(1, 2, 16, 16, 16)
    unseen = [torch.randn(2, 2, 8, 24, 16)]
    assert verify_onnx(export_onnx(g, x, optimize=False), g, unseen) < 1e-4
    enc = EncoderWrapper(g)
    blob = export_onnx(enc, x, optimize=False)
    sess = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    feats = sess.run(None, {"input": unseen[0].numpy()})[0]
    assert feats.shape == (2, 8, 2, 6, 4)  # ngf * 4 channels at 1/4 resolution
    assert verify_onnx(blob, enc, unseen) < 1e-4


def test_discriminator_exports_both_outputs():
    torch.manual_seed(0)
    d = PatchDiscriminator(2, ndf=4, n_layers=2, norm="none")
    blob = export_onnx(d, torch.randn(1, 2, 32, 32), output_names=["gan", "aux"], optimize=False)
    sess = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["gan", "aux"]
    assert verify_onnx(blob, d, torch.randn(2, 2, 40, 24)) < 1e-4


def test_export_keeps_training_mode_and_rejects_bad_arguments():
    g = _random_generator(2, ngf=2, n_blocks=1)
    g.train()
    with pytest.raises(ValueError, match="exporter"):
        export_onnx(g, torch.randn(1, 2, 16, 16), exporter="magic")
    with pytest.raises(ValueError, match="example input"):
        export_onnx(g, torch.randn(16, 16))
    assert g.training


def test_torchscript_fallback_exporter_matches_torch():
    g = _random_generator(2, ngf=2, n_blocks=1)
    blob = export_onnx(g, torch.randn(1, 2, 16, 16), exporter="torchscript")
    assert verify_onnx(blob, g, [torch.randn(2, 2, 24, 40), torch.randn(1, 2, 8, 8)]) < 1e-4


def test_verify_onnx_detects_a_different_module(generator_2d):
    g, blob = generator_2d
    other = _random_generator(2, ngf=4, n_blocks=2)
    with torch.no_grad():
        other.head.bias.fill_(1.0)
    assert verify_onnx(blob, other, torch.randn(1, 2, 16, 16)) > 0.5
