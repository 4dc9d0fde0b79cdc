"""``exp2sim-train regressor`` and the parameter-estimation network's bundle, on a tiny synthetic data set."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mantid_exp2sim.bundle import load_bundle  # noqa: E402
from mantid_exp2sim.bundle.resolve import regressor_bundle  # noqa: E402
from mantid_exp2sim.errors import BundleError, InputDataError  # noqa: E402
from mantid_exp2sim.models.regressor import ParameterRegressor, gaussian_nll  # noqa: E402
from mantid_exp2sim.simulate import get_model  # noqa: E402
from mantid_exp2sim.tasks.fit import estimate_parameters  # noqa: E402
from mantid_exp2sim.train.regressor import export_regressor, main  # noqa: E402

pytestmark = pytest.mark.torch

SHAPE = (240, 400)


def write_dataset(path, model="goodenough", n=10, seed=0):
    """An exp2sim-simulate-like file: one group, spectra whose bright row block moves with JF1."""
    m = get_model(model)
    names = list(m.parameter_names)
    rng = np.random.default_rng(seed)
    params = np.array([[rng.uniform(*m.ranges[k]) for k in names] for _ in range(n)])
    x = rng.gamma(2.0, 0.01, (n, *SHAPE)).astype(np.float32)
    for i, p in enumerate(params):
        row = int((p[0] - m.ranges[names[0]][0]) / np.ptp(m.ranges[names[0]]) * 200)
        x[i, row:row + 40] += 0.2
    mask = np.zeros(SHAPE, np.uint8)
    mask[:10] = 1
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "exp2sim-dataset"
        f.attrs["format_version"] = 1
        f.attrs["representation"] = "mosaic"
        f.create_dataset("mask", data=mask)
        g = f.create_group(model)
        g.attrs["label"] = 0
        g.attrs["parameter_names"] = json.dumps(names)
        g.attrs["complete"] = n
        for kind in ("convolved", "unconvolved"):
            g.create_dataset(kind, data=x, chunks=(1, *SHAPE))
        g.create_dataset("parameters", data=params)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("regressor")
    data = write_dataset(d / "sim.h5")
    out = d / "regress_goodenough.exp2sim.h5"
    rc = main(["--train", str(data), "--model", "goodenough", "--out", str(out), "--epochs", "1",
               "--batch-size", "4", "--val-fraction", "0.3", "--quiet"])
    assert rc == 0
    return out, data


def test_training_writes_a_regressor_bundle_with_its_description(trained):
    out, data = trained
    b = load_bundle(out, kind="regressor", task="regress")
    reg = b.manifest["regression"]
    m = get_model("goodenough")
    assert reg["model"] == "goodenough" and reg["parameters"] == list(m.parameter_names)
    assert reg["ranges"] == [list(m.ranges[k]) for k in m.parameter_names]
    assert len(reg["sigma_scale"]) == 6 and all(v > 0 for v in reg["sigma_scale"])
    cmd = b.manifest["provenance"]["command"]
    assert cmd[:2] == ["exp2sim-train", "regressor"] and str(data) in cmd
    assert b.manifest["validation"]["onnx_max_abs_diff"] <= 1e-4
    assert b.manifest["training"]["n_train"] + b.manifest["training"]["n_holdout"] == 10
    assert out.stat().st_size < 8 * 2 ** 20


def test_export_load_round_trip_reproduces_the_network(tmp_path):
    torch.manual_seed(0)
    net = ParameterRegressor(6, widths=(4, 8, 8), hidden=16).eval()
    m = get_model("dimer")
    names = list(m.parameter_names)
    path = export_regressor(net, tmp_path / "r.exp2sim.h5", model="dimer", names=names,
                            ranges=[m.ranges[k] for k in names], sigma_scale=[2.0] * 6, exporter="torchscript")
    b = load_bundle(path)
    x = torch.rand(2, 2, *SHAPE)
    x[:, 1] = 1.0
    with torch.no_grad():
        np.testing.assert_allclose(b.build_torch_model()(x).numpy(), net(x).numpy(), atol=1e-6)
    # the estimate through the ONNX graph: the network's output mapped onto the ranges, sigma scaled
    sig = np.random.default_rng(1).gamma(2.0, 1.0, SHAPE)
    est = estimate_parameters(sig, ["dimer"], networks={"dimer": path}, backend="onnx")["dimer"]
    from mantid_exp2sim.models.normalisation import intensity_scale, to_network_input

    with torch.no_grad():
        out = net(torch.from_numpy(to_network_input(sig, intensity_scale(sig)))).numpy()[0]
    lo = np.array([m.ranges[k][0] for k in names])
    hi = np.array([m.ranges[k][1] for k in names])
    np.testing.assert_allclose(est.vector(), np.clip(lo + out[0] * (hi - lo), lo, hi), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose([est.errors[k] for k in names], 2.0 * np.exp(out[1]) * (hi - lo), rtol=1e-4)


def test_prediction_shape_ranges_and_positive_uncertainty(trained):
    out, _ = trained
    sig = np.random.default_rng(2).gamma(2.0, 1.0, SHAPE)
    sig[:20] = np.nan
    est = estimate_parameters(sig, ["goodenough"], networks={"goodenough": out})["goodenough"]
    m = get_model("goodenough")
    assert list(est.values) == list(m.parameter_names)
    for k, v in est.values.items():
        lo, hi = m.ranges[k]
        assert lo <= v <= hi and est.errors[k] > 0
    # scale-free: the same spectrum ten times brighter gives the same answer
    est10 = estimate_parameters(10 * sig, ["goodenough"], networks={"goodenough": out})["goodenough"]
    np.testing.assert_allclose(est10.vector(), est.vector(), rtol=1e-4, atol=1e-5)
    assert est.to_dict()["bundle_id"] == load_bundle(out).bundle_id


def test_a_bundle_for_another_model_is_refused(trained):
    out, _ = trained
    with pytest.raises(BundleError, match="is for another model.*'goodenough'.*'dimer'"):
        regressor_bundle("dimer", out)
    with pytest.raises(BundleError, match="is for another model"):
        estimate_parameters(np.ones(SHAPE), ["dimer"], networks={"dimer": out})
    with pytest.raises(InputDataError, match="not fitted"):
        estimate_parameters(np.ones(SHAPE), ["dimer"], networks={"goodenough": out})
    # a classifier or generator is not a regressor
    with pytest.raises(BundleError, match="kind"):
        from mantid_exp2sim.bundle.resolve import resolve_bundle

        resolve_bundle(out, kind="classifier")


def test_gaussian_nll_is_minimal_at_the_true_sigma():
    t = torch.zeros(1000, 1)
    mu = torch.randn(1000, 1, generator=torch.Generator().manual_seed(0)) * 0.3
    losses = [float(gaussian_nll(torch.stack([mu, torch.full_like(mu, np.log(s))], 1), t)) for s in (0.1, 0.3, 1.0)]
    assert losses[1] < losses[0] and losses[1] < losses[2]


def test_bad_training_input_is_one_line(tmp_path, capsys):
    data = write_dataset(tmp_path / "sim.h5")
    rc = main(["--train", str(data), "--model", "dimer", "--out", str(tmp_path / "x.exp2sim.h5"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and "not in the data set" in err and len(err.strip().splitlines()) == 1
    rc = main(["--train", str(data), "--model", "goodenough", "--out", str(tmp_path / "x.txt"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and len(err.strip().splitlines()) == 1
