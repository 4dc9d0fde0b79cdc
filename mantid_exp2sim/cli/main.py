"""``exp2sim <command> ...``: dispatch to one module per command.

Each command module has ``get_parser()`` and ``main(argv=None) -> int``. To add a
command, add one entry to :data:`COMMANDS`: ``"name": ("module[:function]", "one-line
help")``; the function (default ``main``) receives the arguments after the command name.
``exp2sim-train`` and ``exp2sim-simulate`` follow the same convention
(:mod:`mantid_exp2sim._console`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .._console import command_parser, dispatch

__all__ = ["COMMANDS", "DESCRIPTION", "get_parser", "main"]

DESCRIPTION = "Machine learning for inelastic neutron scattering (mantid-exp2sim)."

#: command name -> ("module[:function]", one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "deconvolve": (
        "mantid_exp2sim.cli.translate:main_deconvolve",
        "remove the instrument resolution from measured spectra (Exp2Sim)",
    ),
    "convolve": (
        "mantid_exp2sim.cli.translate:main_convolve",
        "add the instrument resolution to simulated spectra (Sim2Exp)",
    ),
    "classify": ("mantid_exp2sim.cli.classify", "Goodenough or Dimer? classify PCSMO spectra (DUQ)"),
    "score": ("mantid_exp2sim.cli.score", "domain-of-applicability score against a model's training data"),
    "fit": ("mantid_exp2sim.cli.fit", "fit spin-wave models to a measured mosaic and compare them"),
    "demo": (
        "mantid_exp2sim.cli.demo",
        "the main job: simulate, deconvolve, classify and score a PCSMO spectrum",
    ),
    "mantid-setup": (
        "mantid_exp2sim.cli.mantid_setup",
        "register the algorithms with Mantid through a user plugin directory",
    ),
}


def get_parser() -> argparse.ArgumentParser:
    """The top-level parser: a command name and its arguments."""
    return command_parser("exp2sim", DESCRIPTION, COMMANDS)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``exp2sim``; returns the exit status (see :mod:`mantid_exp2sim._console`)."""
    return dispatch("exp2sim", DESCRIPTION, COMMANDS, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
