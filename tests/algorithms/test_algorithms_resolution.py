"""ResolutionDeconvolveGAN / ResolutionConvolveGAN on MDHistoWorkspaces.

Runs against real Mantid when importable, otherwise against tests/mantid_double, with
tiny randomly initialised bundles written by the real bundle writer and translated by
the real inference engine (ONNX Runtime).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import mantid_exp2sim  # noqa: F401  (registers the algorithms)
from mantid_exp2sim.tasks.translate import ERRORS_DESCRIPTION, propagate_errors
from mantid_exp2sim.bundle import load_bundle
from mantid_exp2sim.histogram import Axis, MDHisto
from workspace_helpers import make_ws as _make_ws

pytestmark = pytest.mark.mantid

HKL2 = (("[H,0,0]", "r.l.u.", "HKL", -1.0, 1.0), ("DeltaE", "meV", "General Frame", 0.0, 60.0))
HKL3 = (
    ("[H,0,0]", "r.l.u.", "HKL", -1.0, 1.0),
    ("[0,K,0]", "r.l.u.", "HKL", -1.5, 1.5),
    ("DeltaE", "meV", "General Frame", 2.0, 50.0),
)


def make_ws(simpleapi, signal, dims, name="in_ws", errors=None):
    """An MDHistoWorkspace with ``getSignalArray() == signal``; errors default to sqrt|signal| + 0.1."""
    if errors is None:
        errors = np.sqrt(np.abs(np.nan_to_num(np.asarray(signal, dtype=float)))) + 0.1
    return _make_ws(simpleapi, signal, dims, name, errors)


def random_signal(shape, seed=0, masked=((0, 0),)):
    rng = np.random.default_rng(seed)
    signal = rng.gamma(2.0, 1.0, size=shape)
    for index in masked:
        signal[index + (0,) * (len(shape) - len(index))] = np.nan
    return signal


def direct_translation(signal, dims, bundle_path, conserve_intensity=True):
    """The engine's answer for the same data, without Mantid."""
    from mantid_exp2sim.inference import translate

    axes = [Axis(d[0], d[1], d[3], d[4], n, frame=d[2]) for d, n in zip(dims, signal.shape)]
    return translate(MDHisto(signal, axes), load_bundle(bundle_path), backend="onnx", device="cpu",
                     conserve_intensity=conserve_intensity).signal


def assert_same_dimensions(out, ref, n):
    for i in range(n):
        a, b = out.getDimension(i), ref.getDimension(i)
        assert a.name == b.name
        assert a.getUnits() == b.getUnits()
        assert a.getMDFrame().name() == b.getMDFrame().name()
        assert (a.getMinimum(), a.getMaximum(), a.getNBins()) == (b.getMinimum(), b.getMaximum(), b.getNBins())


def logs(ws) -> dict:
    run = ws.getExperimentInfo(0).run()
    return {k: run[k].value for k in run.keys()}


# ------------------------------------------------------------------------ success
def test_deconvolve_2d_through_simpleapi(mantid, tiny_bundle):
    api, simpleapi = mantid
    path = tiny_bundle("deconvolve", 2)
    signal = random_signal((30, 26), masked=((0, 0), (7, 3)))
    ws = make_ws(simpleapi, signal, HKL2)
    before_signal = np.array(ws.getSignalArray(), copy=True)
    before_err2 = np.array(ws.getErrorSquaredArray(), copy=True)

    out = simpleapi.ResolutionDeconvolveGAN(
        InputWorkspace=ws, ModelFile=str(path), Backend="ONNX", Device="CPU", OutputWorkspace="out_ws"
    )
    assert "out_ws" in api.mtd
    result = out.getSignalArray()
    assert result.shape == (30, 26)
    np.testing.assert_allclose(result, direct_translation(signal, HKL2, path), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.isnan(result), np.isnan(signal))  # masked bins stay masked
    assert_same_dimensions(out, ws, 2)
    # The input workspace is untouched.
    np.testing.assert_array_equal(ws.getSignalArray(), before_signal)
    np.testing.assert_array_equal(ws.getErrorSquaredArray(), before_err2)
    # Output errors: input sigma scaled by the ratio of RMS intensities.
    finite = ~np.isnan(signal)
    ratio = np.sqrt(np.mean(result[finite] ** 2)) / np.sqrt(np.mean(signal[finite] ** 2))
    np.testing.assert_allclose(np.sqrt(out.getErrorSquaredArray()[finite]), np.sqrt(before_err2[finite]) * ratio, rtol=1e-6)
    assert np.isnan(out.getErrorSquaredArray()[7, 3])


def test_convolve_3d_non_cubic_through_algorithm_manager(mantid, tiny_bundle, monkeypatch):
    api, simpleapi = mantid
    path = tiny_bundle("convolve", 3)
    monkeypatch.setenv("EXP2SIM_BUNDLE_DIR", str(path.parent))  # ModelFile empty: the "shipped" default
    signal = random_signal((6, 9, 11), seed=1, masked=((2, 3, 4),))
    ws = make_ws(simpleapi, signal, HKL3)
    alg = api.AlgorithmManager.create("ResolutionConvolveGAN")
    alg.setRethrows(True)
    alg.setProperty("InputWorkspace", ws)
    alg.setProperty("OutputWorkspace", "conv_out")
    alg.setProperty("PatchSize", [24])
    alg.execute()
    out = api.mtd["conv_out"]
    assert out.getSignalArray().shape == (6, 9, 11)  # no transposition anywhere
    np.testing.assert_allclose(out.getSignalArray(), direct_translation(signal, HKL3, path), rtol=1e-5, atol=1e-6)
    assert np.isnan(out.getSignalArray()[2, 3, 4])
    assert_same_dimensions(out, ws, 3)
    recorded = logs(out)
    assert recorded["exp2sim_task"] == "convolve"
    assert recorded["exp2sim_direction"] == "sim2exp"
    assert recorded["exp2sim_model_file"] == str(path)


def test_provenance_logs_and_copied_sample_logs(mantid, tiny_bundle):
    api, simpleapi = mantid
    path = tiny_bundle("deconvolve", 2)
    ws = make_ws(simpleapi, random_signal((20, 20), seed=2), HKL2)
    simpleapi.AddSampleLog(Workspace=ws, LogName="Ei", LogText="70.0", LogType="Number")
    out = simpleapi.ResolutionDeconvolveGAN(InputWorkspace=ws, ModelFile=str(path), OutputWorkspace="prov_out")
    bundle = load_bundle(path)
    recorded = logs(out)
    assert recorded["exp2sim_bundle_id"] == bundle.bundle_id
    assert recorded["exp2sim_bundle_sha256"] == bundle.sha256
    assert recorded["exp2sim_backend"] == "onnx"  # Auto picks ONNX Runtime when installed
    assert recorded["exp2sim_device"] == "cpu"
    assert recorded["exp2sim_task"] == "deconvolve"
    assert recorded["exp2sim_errors"] == ERRORS_DESCRIPTION
    assert recorded["exp2sim_package_version"] == mantid_exp2sim.__version__
    assert recorded["Ei"] == pytest.approx(70.0)  # the input's sample logs are carried over
    assert not any(k.startswith("exp2sim_") for k in logs(ws))  # ...and the input's are untouched
    assert recorded["exp2sim_intensity_conservation"] == "applied"
    raw = direct_translation(random_signal((20, 20), seed=2), HKL2, path, conserve_intensity=False)
    assert float(recorded["exp2sim_intensity_factor"]) == pytest.approx(np.nansum(ws.getSignalArray()) / np.nansum(raw))


def test_conserve_intensity_can_be_switched_off(mantid, tiny_bundle):
    api, simpleapi = mantid
    path = tiny_bundle("convolve", 2)
    signal = random_signal((24, 28), seed=5)
    ws = make_ws(simpleapi, signal, HKL2)
    on = simpleapi.ResolutionConvolveGAN(InputWorkspace=ws, ModelFile=str(path), OutputWorkspace="on_ws")
    off = simpleapi.ResolutionConvolveGAN(
        InputWorkspace=ws, ModelFile=str(path), ConserveIntensity=False, OutputWorkspace="off_ws"
    )
    # (the tiny untrained network is close to the identity: the engine's tests show the factor at work)
    np.testing.assert_allclose(off.getSignalArray(), direct_translation(signal, HKL2, path, False), rtol=1e-5, atol=1e-6)
    assert np.nansum(on.getSignalArray()) == pytest.approx(np.nansum(signal), rel=1e-9)
    assert logs(on)["exp2sim_intensity_conservation"] == "applied"
    assert logs(off)["exp2sim_intensity_conservation"] == "off"
    assert "exp2sim_intensity_factor" not in logs(off)


def test_integrated_dimension_is_carried_through(mantid, tiny_bundle, monkeypatch):
    api, simpleapi = mantid
    path = tiny_bundle("deconvolve", 2)
    monkeypatch.setenv("EXP2SIM_BUNDLE_DIR", str(path.parent))
    dims = (HKL3[0], ("[0,K,0]", "r.l.u.", "HKL", -0.1, 0.1), HKL3[2])
    signal = random_signal((12, 1, 14), seed=3)
    ws = make_ws(simpleapi, signal, dims)
    out = simpleapi.ResolutionDeconvolveGAN(InputWorkspace=ws, OutputWorkspace="squeezed_out")
    assert out.getSignalArray().shape == (12, 1, 14)
    expected = direct_translation(signal[:, 0, :], (dims[0], dims[2]), path)
    np.testing.assert_allclose(out.getSignalArray()[:, 0, :], expected, rtol=1e-5, atol=1e-6)
    assert out.getDimension(1).getNBins() == 1


# ------------------------------------------------------------------------ checks
def _alg(api, cls_name, ws, **props):
    from mantid_exp2sim.algorithms import ResolutionConvolveGAN, ResolutionDeconvolveGAN

    cls = {"ResolutionDeconvolveGAN": ResolutionDeconvolveGAN.ResolutionDeconvolveGAN,
           "ResolutionConvolveGAN": ResolutionConvolveGAN.ResolutionConvolveGAN}[cls_name]
    alg = cls()
    alg.initialize()
    alg.setProperty("InputWorkspace", ws)
    alg.setProperty("OutputWorkspace", "checked_out")
    for key, value in props.items():
        alg.setProperty(key, value)
    return alg


@pytest.mark.parametrize(
    "signal, dims, props, key, pattern",
    [
        (random_signal((12, 1)), (HKL2[0], ("E", "meV", "General Frame", 0.0, 1.0)), {}, "InputWorkspace",
         r"1 dimension\(s\) with more than one bin.*integrated"),
        (np.full((10, 10), np.nan), HKL2, {}, "InputWorkspace", "all 100 bins are masked"),
        (np.where(np.eye(10) > 0, np.inf, 1.0), HKL2, {}, "InputWorkspace", "10 bin.*infinite"),
        (np.zeros((10, 10)), HKL2, {}, "InputWorkspace", "every unmasked bin is zero"),
        (random_signal((30, 30)), HKL2, {"PatchSize": [24, 24, 24]}, "PatchSize", "wrong length.*3 values"),
        (random_signal((30, 30)), HKL2, {"PatchSize": [4]}, "PatchSize", "too small for the network's halo"),
    ],
)
def test_validate_inputs_messages(mantid, tiny_bundle, signal, dims, props, key, pattern):
    api, simpleapi = mantid
    ws = make_ws(simpleapi, signal, dims)
    alg = _alg(api, "ResolutionDeconvolveGAN", ws, ModelFile=str(tiny_bundle("deconvolve", 2)), **props)
    issues = alg.validateInputs()
    assert key in issues
    assert re.search(pattern, issues[key]), issues[key]


def test_model_file_problems(mantid, tiny_bundle, tmp_path, monkeypatch):
    api, simpleapi = mantid
    ws = make_ws(simpleapi, random_signal((20, 20)), HKL2)
    corrupted = tmp_path / "broken.exp2sim.h5"
    corrupted.write_bytes(b"not an HDF5 file at all")
    issues = _alg(api, "ResolutionDeconvolveGAN", ws, ModelFile=str(corrupted)).validateInputs()
    assert "broken.exp2sim.h5" in issues["ModelFile"]
    wrong_ndim = _alg(api, "ResolutionDeconvolveGAN", ws, ModelFile=str(tiny_bundle("deconvolve", 3))).validateInputs()
    assert "made for 3D data" in wrong_ndim["ModelFile"]
    wrong_task = _alg(api, "ResolutionConvolveGAN", ws, ModelFile=str(tiny_bundle("deconvolve", 2))).validateInputs()
    assert "ModelFile" in wrong_task
    monkeypatch.setenv("EXP2SIM_BUNDLE_DIR", str(tmp_path / "empty"))
    missing_default = _alg(api, "ResolutionDeconvolveGAN", ws).validateInputs()
    assert "default deconvolve bundle for 2D data is missing" in missing_default["ModelFile"]
    assert _alg(api, "ResolutionDeconvolveGAN", ws, ModelFile=str(tiny_bundle("deconvolve", 2))).validateInputs() == {}


def test_property_validators(mantid):
    api, simpleapi = mantid
    ws = make_ws(simpleapi, random_signal((10, 10)), HKL2)
    alg = _alg(api, "ResolutionDeconvolveGAN", ws)
    with pytest.raises(ValueError):
        alg.setProperty("Backend", "TensorFlow")
    with pytest.raises(ValueError):
        alg.setProperty("Device", "TPU")
    with pytest.raises((ValueError, RuntimeError)):
        alg.setProperty("BatchSize", 0)
        alg.execute()
    with pytest.raises(ValueError):
        alg.setProperty("ModelFile", "/no/such/model.exp2sim.h5")
    for prop in alg.getProperties():
        assert prop.documentation, prop.name


def test_failed_run_leaves_existing_workspaces_alone(mantid, tiny_bundle):
    api, simpleapi = mantid
    existing = make_ws(simpleapi, np.ones((4, 4)), HKL2, name="keep_me")
    bad = make_ws(simpleapi, np.full((10, 10), np.nan), HKL2, name="bad_in")
    with pytest.raises(RuntimeError, match="ResolutionDeconvolveGAN-v1: Some invalid Properties found"):
        simpleapi.ResolutionDeconvolveGAN(
            InputWorkspace=bad, ModelFile=str(tiny_bundle("deconvolve", 2)), OutputWorkspace="keep_me"
        )
    assert api.mtd["keep_me"].getSignalArray().shape == (4, 4)
    np.testing.assert_array_equal(api.mtd["keep_me"].getSignalArray(), 1.0)
    assert existing.getSignalArray().shape == (4, 4)


def test_engine_failure_becomes_an_algorithm_error(mantid, tiny_bundle, monkeypatch):
    import mantid_exp2sim.inference as inference
    from mantid_exp2sim.errors import InputDataError

    api, simpleapi = mantid
    ws = make_ws(simpleapi, random_signal((20, 20)), HKL2)

    def failing_translate(*args, **kwargs):
        raise InputDataError("the engine refused the input: test")

    monkeypatch.setattr(inference, "translate", failing_translate)
    with pytest.raises(RuntimeError, match="ResolutionDeconvolveGAN-v1: .*engine refused the input"):
        simpleapi.ResolutionDeconvolveGAN(
            InputWorkspace=ws, ModelFile=str(tiny_bundle("deconvolve", 2)), OutputWorkspace="never"
        )
    assert "never" not in api.mtd


def test_cancel_aborts_and_leaves_no_output(mantid, tiny_bundle, monkeypatch):
    import mantid_exp2sim.inference as inference

    api, simpleapi = mantid
    ws = make_ws(simpleapi, random_signal((48, 48)), HKL2)
    real_translate = inference.translate
    alg = api.AlgorithmManager.create("ResolutionDeconvolveGAN")
    calls = []

    def translate_then_cancel(*args, progress=None, **kwargs):
        def relay(done, total):
            calls.append((done, total))
            if len(calls) == 2:
                alg.cancel()  # as the Workbench's Cancel button does
            progress(done, total)

        return real_translate(*args, progress=relay, **kwargs)

    monkeypatch.setattr(inference, "translate", translate_then_cancel)
    alg.setRethrows(True)
    alg.setProperty("InputWorkspace", ws)
    alg.setProperty("OutputWorkspace", "cancelled")
    alg.setProperty("ModelFile", str(tiny_bundle("deconvolve", 2)))
    alg.setProperty("PatchSize", [24])
    alg.setProperty("BatchSize", 1)
    with pytest.raises(KeyboardInterrupt):
        alg.execute()
    assert "cancelled" not in api.mtd
    total = calls[0][1]
    assert total > 2 and len(calls) == 2  # stopped at the first report after the request


def test_output_errors_rule():
    axes = (Axis("a", "", 0, 1, 2), Axis("b", "", 0, 1, 2))
    source = MDHisto(np.array([[1.0, 3.0], [np.nan, 1.0]]), axes, errors=np.full((2, 2), 0.5))
    result = source.with_signal(2.0 * source.signal)
    errors = propagate_errors(source, result)
    np.testing.assert_allclose(errors, [[1.0, 1.0], [np.nan, 1.0]])
    assert propagate_errors(MDHisto(source.signal, axes), result) is None


def test_skipped_intensity_conservation_is_logged_as_a_warning(mantid, tiny_bundle, real_mantid, caplog):
    if real_mantid:
        pytest.skip("the algorithm log of real Mantid is not captured by Python logging")
    api, simpleapi = mantid
    path = tiny_bundle("deconvolve", 2)
    negative = -random_signal((24, 28), seed=8)
    ws = make_ws(simpleapi, negative, HKL2)
    with caplog.at_level("WARNING", logger="mantid"):
        out = simpleapi.ResolutionDeconvolveGAN(InputWorkspace=ws, ModelFile=str(path), OutputWorkspace="neg_ws")
    assert logs(out)["exp2sim_intensity_conservation"].startswith("not applied")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("integrated intensity was not conserved" in w and "not positive" in w for w in warnings), warnings
    caplog.clear()
    with caplog.at_level("WARNING", logger="mantid"):
        simpleapi.ResolutionDeconvolveGAN(InputWorkspace=make_ws(simpleapi, -negative, HKL2, name="pos"),
                                          ModelFile=str(path), OutputWorkspace="pos_ws")
    assert not any("not conserved" in r.getMessage() for r in caplog.records)
