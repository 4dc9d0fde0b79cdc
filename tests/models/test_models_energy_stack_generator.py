"""EnergyStackGenerator: the mosaic read as energy stacks; tile-exact, ONNX = PyTorch, bundles."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mantid_exp2sim.bundle import get_builder, load_bundle, make_manifest, write_bundle  # noqa: E402
from mantid_exp2sim.models.energy_stack_generator import EnergyStackGenerator  # noqa: E402

pytestmark = pytest.mark.torch

TILE = 8  # a small mosaic tile keeps the tests fast; the shipped layout uses 40


def _random(g, seed=0, head=0.3):
    """Every parameter random (an untrained generator is the identity, which tiles trivially);
    ``head`` scales the last convolution, i.e. how far the output strays from the input."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in g.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3)
        g.head.weight.mul_(head / 0.3)
    return g.eval()


def _mosaic(n_ei, n_win, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((1, 2, n_ei * TILE, n_win * TILE), generator=gen, dtype=dtype)
    x[:, 1] = (torch.rand(x.shape[2:], generator=gen) > 0.15).to(dtype)
    x[:, 0] *= x[:, 1]
    return x


def test_untrained_generator_is_the_identity_and_config_round_trips():
    g = EnergyStackGenerator(tile=TILE, ngf=4, n_blocks=1)
    x = _mosaic(2, 5)
    assert torch.equal(g(x), x[:, :1])
    g2 = get_builder("EnergyStackGenerator")(g.config())
    assert g2.config() == g.config() and g.architecture()["name"] == "EnergyStackGenerator"
    assert g.receptive_windows() == 1 + 2 + 2 + 2 + 1 and g.receptive_field_radius() == 8 * TILE


def test_energy_is_an_axis_and_incident_energies_never_mix():
    g = _random(EnergyStackGenerator(tile=TILE, ngf=4, n_blocks=1), seed=1)
    x = _mosaic(3, 6)
    with torch.no_grad():
        y = g(x)
        x2 = x.clone()
        x2[:, 0, TILE:2 * TILE, 2 * TILE + 3] += 5.0  # one bin of Ei block 1, window 2
        d = (g(x2) - y).abs()[0, 0]
    rows = d.reshape(3, TILE, -1).amax(dim=(1, 2))
    assert rows[0] == 0 and rows[2] == 0 and rows[1] > 0  # other incident energies untouched
    windows = d[TILE:2 * TILE].reshape(TILE, 6, TILE).amax(dim=(0, 2))
    assert (windows > 0).sum() >= 3  # the change spreads along energy, to neighbouring windows


def test_tiled_inference_equals_whole_input():
    from mantid_exp2sim.inference.tiler import plan_tiles, run_tiled
    from mantid_exp2sim.models.normalisation import to_network_input

    g = _random(EnergyStackGenerator(tile=TILE, ngf=4, n_blocks=1), seed=2)
    rng = np.random.default_rng(3)
    sig = rng.standard_normal((3 * TILE, 30 * TILE))
    sig[rng.random(sig.shape) < 0.15] = np.nan
    with torch.no_grad():
        whole = g(torch.from_numpy(to_network_input(sig, 1.0))).numpy()[0]
    halo = g.receptive_field_radius()
    # rows: incident energies are independent (no halo); columns: the energy halo
    plan = plan_tiles(sig.shape, tile=(TILE, 2 * halo + 3 * TILE), halo=(0, halo), multiple=TILE,
                      pad_before=(0, 0), pad_after=(0, 0))
    assert plan.n_tiles > 6  # tiles across energy windows and across incident energies
    out = np.full(whole.shape, np.nan, dtype=np.float32)

    def net(batch):
        with torch.no_grad():
            return g(torch.from_numpy(batch)).numpy()

    run_tiled(sig, out[0], net, plan, prepare=lambda raw: to_network_input(raw, 1.0)[0], finish=lambda y, raw: y[0])
    assert np.abs(out - whole).max() <= 1e-5 * float(np.ptp(whole))


def test_onnx_equals_pytorch_and_the_engine_tiles_exactly(tmp_path):
    pytest.importorskip("onnxruntime")
    from mantid_exp2sim.histogram import MDHisto
    from mantid_exp2sim.inference import translate
    from mantid_exp2sim.onnx import EncoderWrapper, export_onnx, verify_onnx

    torch.set_num_threads(1)
    g = _random(EnergyStackGenerator(tile=TILE, ngf=4, n_blocks=1), seed=4, head=1e-3)
    blob = export_onnx(g, _mosaic(2, 4), exporter="torchscript")
    enc = EncoderWrapper(g).eval()
    enc_blob = export_onnx(enc, _mosaic(2, 4), exporter="torchscript")
    # sizes and layouts not used at export: more incident energies and windows
    checks = [_mosaic(3, 7, seed=5), _mosaic(2, 12, seed=6)]
    with torch.no_grad():
        top = max(float(g(c).abs().max()) for c in checks)
        top_enc = max(float(enc(c).abs().max()) for c in checks)
    # float32 rounding of random (large-output) weights: relative agreement
    assert verify_onnx(blob, g, checks) < 1e-5 * top and verify_onnx(enc_blob, enc, checks) < 1e-5 * top_enc

    manifest = make_manifest(kind="generator", task="deconvolve", model=g, direction="exp2sim",
                             patch_size=[2 * TILE, 2 * g.receptive_field_radius() + 2 * TILE],
                             normalisation={"method": "rms", "version": 1, "pad_mode": "replicate"}, seed=0)
    manifest["patch"]["min_size"] = g.min_spatial_size()
    path = write_bundle(tmp_path / "es.exp2sim.h5", manifest, onnx=blob, onnx_encoder=enc_blob,
                        weights=g.state_dict())
    b = load_bundle(path)
    assert b.manifest["parts"]["onnx"]["initializers_in_weights"]  # weights stored once

    rng = np.random.default_rng(7)
    sig = rng.gamma(2.0, 1.0, size=(4 * TILE, 30 * TILE))
    sig[rng.random(sig.shape) < 0.1] = np.nan
    h = MDHisto.from_array(sig)
    outs = {}
    for backend in ("onnx", "torch"):
        # the manifest's one halo applies to rows too: whole rows, tiles across energy windows
        for patch in (None, [4 * TILE, 2 * g.receptive_field_radius() + 3 * TILE]):
            outs[backend, patch is None] = translate(h, b, backend=backend, device="cpu", patch_size=patch).signal
    ref = outs["torch", True]
    rng_ = float(np.nanmax(ref) - np.nanmin(ref))
    for key, y in outs.items():
        assert np.array_equal(np.isnan(y), np.isnan(sig)), key  # masks kept
        assert np.nanmax(np.abs(y - ref)) <= 1e-4 * rng_, key  # tiled = whole, ONNX = PyTorch
        assert np.nansum(y) == pytest.approx(np.nansum(sig), rel=1e-6), key  # intensity conserved
    assert not np.allclose(ref, sig, equal_nan=True)  # the network did something


def test_invalid_sizes_are_refused():
    g = EnergyStackGenerator(tile=TILE, ngf=4, n_blocks=1)
    g(torch.zeros(1, 2, TILE, 2 * TILE))  # one incident energy, two windows: the smallest mosaic
    with pytest.raises(ValueError, match="two energy windows"):
        g(torch.zeros(1, 2, TILE, TILE))
    with pytest.raises(ValueError, match="multiples of 8"):
        g(torch.zeros(1, 2, 12, 4 * TILE))
    with pytest.raises(ValueError, match="'tile'"):
        EnergyStackGenerator(tile=6, n_down=2)
