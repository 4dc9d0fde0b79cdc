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


def _listing(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


def test_import_references_are_checked_before_anything_is_called(tmp_path, monkeypatch, capsys):
    pkg = tmp_path / "refs"
    pkg.mkdir()
    marker = tmp_path / "called"
    (pkg / "exp2sim_bad_refs.py").write_text(
        "import pathlib\n"
        f"MARKER = pathlib.Path({str(marker)!r})\n"
        "def factory():\n    MARKER.write_text('factory')\n"
        "class NotAModel:\n    def __init__(self):\n        MARKER.write_text('class')\n"
        "value = 42\n"
    )
    monkeypatch.syspath_prepend(str(pkg))
    out = tmp_path / "s.h5"
    for ref, words in (("os:getcwd", "getcwd"), ("exp2sim_bad_refs:factory", "factory"),
                       ("exp2sim_bad_refs:NotAModel", "NotAModel"), ("exp2sim_bad_refs:value", "int")):
        assert main(["--models", ref, "--n", "1", "--output", str(out), "--quiet"]) == 1
        err = capsys.readouterr().err
        assert "is not a spin model" in err and words in err and "entry-point group" in err, ref
        assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not marker.exists() and not out.exists()


def test_models_registered_through_the_entry_point_group(tmp_path, double_module, monkeypatch, capsys):
    from importlib.metadata import EntryPoint

    spin_models = pytest.importorskip("mantid_exp2sim.simulate.spin_models")
    (tmp_path / "factories.py").write_text(
        f"from {double_module} import SpotModel\n"
        "def make_spot():\n    return SpotModel()\n"
        "def broken():\n    raise RuntimeError('no licence')\n"
        "def wrong():\n    return 'a string'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    group = spin_models.ENTRY_POINT_GROUP
    eps = [EntryPoint("toy", f"{double_module}:AnalyticModel", group), EntryPoint("Spot2", "factories:make_spot", group),
           EntryPoint("broken", "factories:broken", group), EntryPoint("wrong", "factories:wrong", group),
           EntryPoint("dimer", "factories:wrong", group)]  # cannot take a built-in name
    monkeypatch.setattr(spin_models, "_entry_points", lambda: eps)
    monkeypatch.setattr(spin_models, "_CACHE", {})
    assert main(["--list-models"]) == 0
    assert capsys.readouterr().out.split() == ["goodenough", "dimer", "square_j1j2", "broken", "spot2", "toy", "wrong"]
    assert spin_models.get_model("dimer").name == "dimer"
    out = tmp_path / "reg.h5"
    argv = ["--models", "toy", "spot2", "--n", "1", "--representation", "volume", "--ei", "50", "--bins", "4", "4", "5",
            "--resolution", "unconvolved", "--mask", "none", "--output", str(out), "--quiet"]
    assert main(argv) == 0
    with h5py.File(out, "r") as f:
        assert sorted(k for k in f if k != "mask") == ["analytic", "spot"]
    for name, words in (("broken", "no licence"), ("wrong", "is not a spin model")):
        assert main(["--models", name, "--n", "1", "--output", str(tmp_path / f"{name}.h5"), "--quiet"]) == 1
        err = capsys.readouterr().err
        assert f"The spin model '{name}' registered by" in err and words in err and len(err.splitlines()) == 1
        assert not (tmp_path / f"{name}.h5").exists()


@pytest.mark.parametrize("case", ["directory", "nested", "extension", "read-only", "not-a-dataset"])
def test_unwritable_outputs_are_refused_before_work_with_the_fix(tmp_path, double_module, monkeypatch, capsys,
                                                                 case):
    import mantid_exp2sim.io.output_paths as output_paths
    import mantid_exp2sim.simulate.dataset as dataset

    def must_not_run(*args, **kwargs):
        raise AssertionError("the simulation started")

    monkeypatch.setattr(dataset, "_run_tasks", must_not_run)
    out = tmp_path / "s.h5"
    if case == "directory":
        out.mkdir()
        words = "a directory with that name exists. give a file name"
    elif case == "nested":
        out = tmp_path / "new" / "deeper" / "s.h5"
        words = f"the directory '{out.parent}' does not exist. create it first (mkdir -p '{out.parent}')"
    elif case == "extension":
        out = tmp_path / "s.nxs"
        words = "'.nxs' is not one of .h5, .hdf5"
    elif case == "read-only":
        monkeypatch.setattr(output_paths, "_writable", lambda folder: False)
        words = "no write permission"
    else:
        out.write_text("some notes, not HDF5\n")
        words = "this one is left as it is"
    before = _listing(tmp_path)
    rc = main(["--models", f"{double_module}:AnalyticModel", "--n", "1", "--output", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and words in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "delete" not in err
    assert _listing(tmp_path) == before
