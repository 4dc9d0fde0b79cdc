"""The exp2sim-simulate command."""

import json

import h5py
import numpy as np
import pytest

from mantid_exp2sim.simulate.cli import get_parser, main


def test_parser_has_kebab_case_flags():
    opts = {o for a in get_parser()._actions for o in a.option_strings}
    for flag in ("--models", "--n", "--representation", "--ei", "--bins", "--seed", "--workers", "--output",
                 "--resolution", "--mask", "--noise-flux", "--background", "--energy-range", "--energy-window",
                 "--line", "--resume", "--quiet", "--list-models"):
        assert flag in opts
    assert not any("_" in o for o in opts)


def test_cli_writes_appends_and_resumes(tmp_path, double_module, capsys):
    out = tmp_path / "v.h5"
    argv = ["--models", f"{double_module}:AnalyticModel", f"{double_module}:SpotModel", "--n", "2",
            "--representation", "volume", "--ei", "50", "--bins", "6", "5", "8", "--resolution", "unconvolved",
            "--mask", "none", "--seed", "3", "--output", str(out), "--quiet"]
    assert main(argv) == 0
    with h5py.File(out, "r") as f:
        assert json.loads(f.attrs["command"]) == ["exp2sim-simulate", *argv]
        assert int(f["analytic"].attrs["complete"]) == 2 and int(f["spot"].attrs["complete"]) == 2
        assert not f["mask"][()].any()
        first = f["analytic"]["convolved"][()]
    assert main(argv) == 0  # appends 2 more
    with h5py.File(out, "r") as f:
        assert int(f["analytic"].attrs["complete"]) == 4
        np.testing.assert_array_equal(f["analytic"]["convolved"][:2], first)
    # --resume with nothing left to do is a no-op.
    assert main([a for a in argv if a not in ("--n", "2")] + ["--resume"]) == 0
    with h5py.File(out, "r") as f:
        assert int(f["analytic"].attrs["complete"]) == 4


def test_cli_reports_bad_input_and_writes_nothing(tmp_path, double_module, capsys):
    out = tmp_path / "bad.h5"
    assert main(["--models", "no_such_module_xyz:M", "--n", "1", "--output", str(out)]) == 1
    assert "exp2sim-simulate: error:" in capsys.readouterr().err
    assert main(["--models", f"{double_module}:AnalyticModel", "--n", "1", "--representation", "volume",
                 "--bins", "0", "4", "4", "--output", str(out)]) == 1
    assert "bins is invalid" in capsys.readouterr().err
    assert main(["--models", f"{double_module}:AnalyticModel", "--n", "1", "--bins", "4", "4", "4",
                 "--output", str(out)]) == 1
    assert "do not apply to the mosaic" in capsys.readouterr().err
    assert main(["--models", f"{double_module}:AnalyticModel", "--output", str(out), "--resume"]) == 1
    assert "Nothing to resume" in capsys.readouterr().err
    assert not out.exists()
    assert main(["--models", "goodenough", "--output", str(out)]) == 2
    assert "--n" in capsys.readouterr().err


def test_cli_lists_models(capsys):
    pytest.importorskip("mantid_exp2sim.simulate.spin_models")
    assert main(["--list-models"]) == 0
    names = capsys.readouterr().out.split()
    assert "goodenough" in names and "dimer" in names
