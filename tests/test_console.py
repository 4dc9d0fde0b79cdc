"""The three console scripts follow one convention (mantid_exp2sim._console)."""

from __future__ import annotations

import sys
import types

import pytest

from mantid_exp2sim import __version__
from mantid_exp2sim._console import console_script, dispatch
from mantid_exp2sim.cli.main import main as exp2sim_main
from mantid_exp2sim.errors import InputDataError
from mantid_exp2sim.simulate.cli import main as simulate_main
from mantid_exp2sim.train.cli import main as train_main

MAINS = {"exp2sim": exp2sim_main, "exp2sim-train": train_main, "exp2sim-simulate": simulate_main}


@pytest.mark.parametrize("name", MAINS)
def test_same_version_option(name, capsys):
    assert MAINS[name](["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"mantid-exp2sim {__version__}"


@pytest.mark.parametrize("name", MAINS)
def test_usage_errors_return_2(name, capsys):
    assert MAINS[name](["--no-such-option"]) == 2
    assert "usage" in capsys.readouterr().err


@pytest.fixture
def fake_commands(monkeypatch):
    """A module with commands that fail in each way, for the dispatcher."""
    module = types.ModuleType("fake_exp2sim_commands")

    def fail(argv):
        raise InputDataError("bad input:\n  more detail")

    def interrupt(argv):
        raise KeyboardInterrupt

    module.fail, module.interrupt = fail, interrupt
    module.main = lambda argv: len(argv)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return {
        "fail": ("fake_exp2sim_commands:fail", "fails"),
        "interrupt": ("fake_exp2sim_commands:interrupt", "is interrupted"),
        "count": ("fake_exp2sim_commands", "returns the number of its arguments"),
    }


def test_dispatcher_convention(fake_commands, capsys):
    assert dispatch("prog", "A test.", fake_commands, ["count", "a", "b"]) == 2
    assert dispatch("prog", "A test.", fake_commands, ["fail"]) == 1
    assert capsys.readouterr().err == "prog fail: error: bad input: more detail\n"
    assert dispatch("prog", "A test.", fake_commands, ["interrupt"]) == 130
    assert capsys.readouterr().err == "prog interrupt: interrupted\n"
    assert dispatch("prog", "A test.", fake_commands, []) == 2
    assert "is interrupted" in capsys.readouterr().err
    assert dispatch("prog", "A test.", fake_commands, ["nope"]) == 2
    assert dispatch("prog", "A test.", fake_commands, ["--help"]) == 0


def test_single_command_scripts_use_the_same_runner(capsys):
    @console_script("single")
    def main(argv):
        if argv == ["stop"]:
            raise KeyboardInterrupt
        raise InputDataError("no data")

    assert main(["stop"]) == 130
    assert main([]) == 1
    assert capsys.readouterr().err == "single: interrupted\nsingle: error: no data\n"
