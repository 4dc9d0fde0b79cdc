"""``exp2sim <command> ...``: dispatch to one module per command.

Each command module has ``get_parser()`` and ``main(argv=None) -> int``. To add a
command, add one entry to :data:`COMMANDS`: ``"name": ("module[:function]", "one-line
help")``; the function (default ``main``) receives the arguments after the command name.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Sequence

from .._version import __version__

__all__ = ["COMMANDS", "get_parser", "main"]

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
    lines = "\n".join(f"  {name:<14} {text}" for name, (_, text) in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="exp2sim",
        description="Machine learning for inelastic neutron scattering (mantid-exp2sim).",
        epilog=f"commands:\n{lines}\n\nRun 'exp2sim <command> --help' for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mantid-exp2sim {__version__}")
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="command", help="one of: " + ", ".join(COMMANDS))
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the command")
    return parser


def _target(spec: str) -> Callable[[Sequence[str]], int]:
    module_name, _, func = spec.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, func or "main")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``exp2sim``; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = get_parser()
    if not args:
        parser.print_help(sys.stderr)
        return 2
    if args[0] not in COMMANDS:
        try:
            parser.parse_args(args)  # prints help / version, or the usage error
        except SystemExit as exc:
            return int(exc.code or 0)
    command, rest = args[0], args[1:]
    try:
        return int(_target(COMMANDS[command][0])(rest) or 0)
    except SystemExit as exc:  # argparse inside the command
        return int(exc.code) if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        print("exp2sim: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last guard: one line, never a traceback
        from ._report import failure_line

        print(f"exp2sim {command}: error: {failure_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
