"""Command-line options generated from the training configurations (mantid_exp2sim.train.config)."""

from __future__ import annotations

import argparse
from dataclasses import asdict, fields

import pytest

from mantid_exp2sim.train import classifier, cli
from mantid_exp2sim.train.config import CLASSIFIER_HELP, ClassifierConfig, GanConfig


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if a.option_strings}


def test_every_classifier_setting_is_an_option_with_help_and_its_default():
    opts = _options(classifier.get_parser())
    names = [f.name for f in fields(ClassifierConfig)]
    assert set(opts) == set(names) | {"quiet", "help"}
    base = ClassifierConfig()
    for name in names:
        assert opts[name].option_strings[0] == "--" + name.replace("_", "-")
        assert opts[name].help == CLASSIFIER_HELP[name]
        if name != "train":  # required
            assert opts[name].default == getattr(base, name)


def test_every_gan_setting_is_an_option():
    parser = cli.get_parser()
    gan = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["gan"]
    opts = _options(gan)
    assert {f.name for f in fields(GanConfig)} - set(opts) == {"preset"}
    assert all(opts[f.name].default is argparse.SUPPRESS for f in fields(GanConfig) if f.name != "preset")
    assert opts["gan_mode"].choices == ["hinge", "lsgan"] and opts["ndim"].type is int


def test_classifier_spellings_of_earlier_versions_still_parse():
    ns = classifier.get_parser().parse_args(
        ["--train", "a.h5", "b.h5", "--widths", "4,4, 8", "--no-flip", "--cycle-models", "c.h5", "d.h5",
         "--kind", "convolved", "--align", "x.h5", "--align-generator", "none", "--max-samples", "7", "--quiet"]
    )
    cfg = ClassifierConfig(**{k: v for k, v in vars(ns).items() if k != "quiet"})
    assert cfg.train == ["a.h5", "b.h5"] and cfg.widths == [4, 4, 8] and cfg.flip is False
    assert cfg.cycle_models == ["c.h5", "d.h5"] and cfg.align == ["x.h5"] and cfg.max_samples == 7
    with pytest.raises(SystemExit):
        classifier.get_parser().parse_args(["--train", "a.h5", "--kind", "measured"])


def test_the_shipped_classifier_command_parses_to_its_recorded_config():
    from mantid_exp2sim.bundle import load_bundle
    from mantid_exp2sim.bundle.defaults import default_bundle_path

    manifest = load_bundle(default_bundle_path("classify", 2)).manifest
    command = manifest["provenance"]["command"]
    assert command[:2] == ["exp2sim-train", "classifier"]
    ns = classifier.get_parser().parse_args(command[2:])
    cfg = asdict(ClassifierConfig(**{k: v for k, v in vars(ns).items() if k != "quiet"}))
    recorded = manifest["training"]["config"]
    assert {k: cfg[k] for k in recorded} == recorded
