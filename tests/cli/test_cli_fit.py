"""``exp2sim fit`` on a simulated mosaic: JSON output and bad input as one-line errors.

Fits are kept small: every parameter fixed but the dimer's JFW, one Sobol start.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fit_helpers import TRUE_JFW, dimer_mosaic, fixed_all_but_jfw
from mantid_exp2sim.cli import fit as cli_fit
from mantid_exp2sim.cli.main import COMMANDS

pytest.importorskip("resins")


def fix_args():
    return ["--fix", *[f"{k}={v}" for k, v in fixed_all_but_jfw().items()]]


@pytest.fixture(scope="module")
def mosaic_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("fit") / "mosaic.npy"
    np.save(path, dimer_mosaic()[0])
    return path


def test_fit_is_a_command():
    assert COMMANDS["fit"][0] == "mantid_exp2sim.cli.fit"
    assert cli_fit.get_parser().prog == "exp2sim fit"


def test_json_output(mosaic_file, capsys):
    rc = cli_fit.main([str(mosaic_file), "--models", "goodenough", "dimer", *fix_args(), "--starts", "1",
                       "--seed", "3", "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1
    d = json.loads(lines[0])
    assert d["input"] == str(mosaic_file)
    assert [m["model"] for m in d["models"]] == ["goodenough", "dimer"]
    assert d["preferred"] == "dimer" == d["comparison"]["preferred"]
    assert d["statement"]
    dimer = d["models"][1]
    assert dimer["free"] == ["JFW"]
    assert dimer["parameters"]["JFW"] == pytest.approx(TRUE_JFW, abs=0.05)
    assert d["models"][0]["free"] == [] and d["models"][0]["chi2"] > dimer["chi2"]


@pytest.mark.parametrize("extra, needle", [
    (["--models", "nosuchmodel"], "Unknown model 'nosuchmodel'"),
    (["--models", "dimer", "--fix", "JFW=5"], "outside the range"),
    (["--models", "dimer", "--fix", "NOPE=1"], "belong to none of the models"),
    (["--models", "dimer", "--fix", "JFW"], "NAME=VALUE"),
])
def test_bad_options_are_one_line_errors(mosaic_file, capsys, extra, needle):
    rc = cli_fit.main([str(mosaic_file), *extra, "--starts", "0"])
    out, err = capsys.readouterr()
    assert rc == 1 and out == ""
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("array, needle", [
    (np.ones((100, 100)), "is not a 240x400 mosaic"),
    (np.full((240, 400), np.nan), "fully masked"),
])
def test_bad_input_is_a_one_line_error(tmp_path, capsys, array, needle):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    rc = cli_fit.main([str(path), "--models", "dimer", "--starts", "0"])
    out, err = capsys.readouterr()
    assert rc == 1 and out == ""
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_negative_starts_is_a_usage_error(mosaic_file, capsys):
    assert cli_fit.main([str(mosaic_file), "--starts", "-1"]) == 2
    assert "--starts" in capsys.readouterr().err


def test_errors_are_refined_from_the_fit_unless_switched_off(tmp_path, capsys):
    signal, errors = dimer_mosaic()
    noisy = signal + np.random.default_rng(4).normal(0.0, 1.0, signal.shape) * np.nan_to_num(errors)
    path = tmp_path / "noisy.npy"
    np.save(path, noisy)  # no errors with the file: they are estimated from the counts
    sources = {}
    for extra in ([], ["--no-refine-errors"]):
        rc = cli_fit.main([str(path), "--models", "goodenough", "dimer", *fix_args(), "--starts", "1", "--json",
                           *extra])
        out, err = capsys.readouterr()
        assert rc == 0, err
        d = json.loads(out.strip().splitlines()[-1])
        assert d["preferred"] == "dimer"
        sources[bool(extra)] = d["models"][1]["error_source"]
        assert d["models"][1]["parameters"]["JFW"] == pytest.approx(TRUE_JFW, abs=0.05)
    assert "refined from the fit of dimer" in sources[False]
    assert "refined" not in sources[True] and sources[True].startswith("estimated")
