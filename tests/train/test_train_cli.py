"""exp2sim-train command line: argument errors, presets and JSON configs, resume rules, dispatch."""

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from mantid_exp2sim.errors import InputDataError
from mantid_exp2sim.train import cli
from mantid_exp2sim.train.config import PRESETS, GanConfig, load_config

REPO = Path(__file__).resolve().parents[2]


def parse(*argv):
    return cli.get_parser().parse_args(["gan", "--out", "x", *argv])


def test_no_subcommand_prints_help(capsys):
    assert cli.main([]) == 2
    assert "gan" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["gan", "--domain-a", "a.h5"],  # --out is required
        ["gan", "--out", "r", "--gan-mode", "wgan"],
        ["gan", "--out", "r", "--ndim", "4"],
        ["gan", "--out", "r", "--batch-size", "two"],
        ["export", "run"],  # --task and --output are required
        ["export", "run", "--task", "classify", "-o", "x.h5"],
        ["frobnicate"],
    ],
)
def test_argument_errors_exit_with_usage(argv, capsys):
    assert cli.main(argv) == 2
    assert "usage" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--patch-size", "30"], "patch_size"),
        (["--patch-size", "64", "64", "64"], "patch_size"),
        (["--flip-axes", "2"], "flip_axes"),
        (["--lambda-nce", "-1"], "lambda_nce"),
        (["--stop-at-step", "0"], "stop_at_step"),
        (["--config", "no-such-preset"], "neither a preset nor a JSON file"),
        ([], "Both training domains"),
        (["--domain-a", "missing.h5", "--domain-b", "missing.h5"], "not found"),
    ],
)
def test_bad_settings_are_reported_without_traceback(tmp_path, argv, message, capsys):
    rc = cli.main(["gan", "--out", str(tmp_path / "run"), *argv])
    assert rc == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_presets_are_valid_and_options_override_them():
    for name in PRESETS:
        cfg, _ = cli.config_from_args(parse("--config", name))
        assert cfg.preset == name and cfg.ndim == PRESETS[name]["ndim"]
        assert len(cfg.patch_size) == cfg.ndim
    cfg, explicit = cli.config_from_args(parse("--config", "pcsmo-3d", "--batch-size", "3", "--no-common-d-mask"))
    assert cfg.batch_size == 3 and cfg.common_d_mask is False and cfg.patch_size == [32, 32, 32]
    assert cfg.flip_axes == [0, 1] and explicit == {"batch_size", "common_d_mask"}
    assert PRESETS["pcsmo-2d"]["flip_axes"] == []  # no physically neutral flip of the mosaic
    # the paper's loss weights are the defaults
    d = GanConfig()
    assert (d.lambda_gan, d.lambda_nce, d.lambda_idt, d.lambda_aux) == (1.0, 4.0, 2.0, 1.0)
    assert (d.lr, d.beta1, d.beta2) == (2e-4, 0.5, 0.999)
    # --ndim 3 alone expands a single default patch size to three axes
    cfg, _ = cli.config_from_args(parse("--ndim", "3", "--patch-size", "16"))
    assert cfg.patch_size == [16, 16, 16]


def test_old_checkpoint_configs_keep_their_objective():
    from mantid_exp2sim.train.config import config_from_checkpoint

    old = GanConfig().to_dict()
    for key in ("lambda_int", "d_input_norm", "stem_kernel", "lambda_cyc"):
        del old[key]
    cfg = config_from_checkpoint(old)
    assert cfg.lambda_int == 0.0 and cfg.d_input_norm is False and cfg.stem_kernel == 7 and cfg.lambda_cyc == 0.0
    assert config_from_checkpoint(GanConfig().to_dict()).lambda_int == GanConfig().lambda_int


def test_json_config_files(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"preset": "pcsmo-2d", "ngf": 8, "lambda_idt": 0.5}))
    cfg, _ = cli.config_from_args(parse("--config", str(good), "--ngf", "12"))
    assert cfg.ngf == 12 and cfg.lambda_idt == 0.5 and cfg.batch_size == PRESETS["pcsmo-2d"]["batch_size"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"batchsize": 4}))
    with pytest.raises(InputDataError, match="batchsize"):
        cli.config_from_args(parse("--config", str(bad)))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(InputDataError, match="not valid JSON"):
        load_config(str(broken))
    listing = tmp_path / "list.json"
    listing.write_text("[1, 2]")
    with pytest.raises(InputDataError, match="JSON object"):
        load_config(str(listing))


def test_resume_rules(tmp_path, capsys):
    pytest.importorskip("torch")
    from mantid_exp2sim.train.checkpoint import atomic_torch_save

    run = tmp_path / "run"
    cfg = GanConfig(domain_a=["a.h5"], domain_b=["b.h5"], ngf=8)
    atomic_torch_save({"format": "exp2sim-gan-checkpoint", "config": cfg.to_dict()}, run / "checkpoint.pt")
    assert cli.main(["gan", "--out", str(run), "--domain-a", "a.h5", "--domain-b", "b.h5"]) == 1
    assert "--resume" in capsys.readouterr().err
    assert cli.main(["gan", "--out", str(run), "--resume", "--ngf", "16", "--lr", "0.1"]) == 1
    err = capsys.readouterr().err
    assert "lr, ngf" in err and "may change" in err
    with pytest.raises(InputDataError, match="not an Exp2SimGAN"):
        from mantid_exp2sim.train.checkpoint import load_checkpoint

        atomic_torch_save({"format": "other"}, tmp_path / "other.pt")
        load_checkpoint(tmp_path / "other.pt")


def test_export_of_a_missing_checkpoint(tmp_path, capsys):
    pytest.importorskip("torch")
    rc = cli.main(["export", str(tmp_path / "nothing"), "--task", "deconvolve", "-o", str(tmp_path / "b.h5")])
    assert rc == 1 and "not found" in capsys.readouterr().err


def test_classifier_is_delegated(monkeypatch):
    seen = []
    fake = types.ModuleType("mantid_exp2sim.train.classifier")
    fake.main = lambda argv: seen.append(list(argv)) or 0
    monkeypatch.setitem(sys.modules, "mantid_exp2sim.train.classifier", fake)
    assert cli.main(["classifier", "--epochs", "3", "data.h5"]) == 0
    assert seen == [["--epochs", "3", "data.h5"]]


def test_module_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "mantid_exp2sim.train", "gan", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--domain-a" in proc.stdout and "--max-minutes" in proc.stdout
    assert np.all([opt in proc.stdout for opt in ("--resume", "--config", "--patch-size")])
