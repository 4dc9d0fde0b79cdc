"""The one convention of the console scripts ``exp2sim``, ``exp2sim-train`` and ``exp2sim-simulate``.

Every script's ``main(argv=None) -> int`` returns its exit status and never lets a user error
out as a traceback:

* ``0`` success; ``1`` failure, with one line ``<prog>: error: <message>`` on stderr for any
  exception that reaches the top (:func:`failure_line`: the message of an expected error, what
  to do for ``MemoryError``, "unexpected <Type>" otherwise); ``2`` invalid arguments
  (argparse's usage message); ``130`` interrupted (Ctrl-C), with ``<prog>: interrupted``.
* ``--version`` prints ``mantid-exp2sim <version>``.
* A script with subcommands has a ``COMMANDS`` table, command name -> ``("module[:function]",
  one-line help)``; the function (default ``main``) gets the arguments after the command name
  and returns the exit status. Its ``main`` is ``dispatch(prog, description, COMMANDS, argv)``.
* A script without subcommands decorates its ``main`` with :func:`console_script` and adds
  :func:`add_version_option` to its parser.

This module imports only the standard library, ``errors`` and ``_version``, so ``cli/``,
``train/`` and ``simulate/`` can all use it without importing each other.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
from typing import Callable, Mapping, Sequence

from ._version import __version__
from .errors import Exp2SimError

__all__ = [
    "CommandTable",
    "add_version_option",
    "command_parser",
    "console_script",
    "dispatch",
    "EXPECTED_ERRORS",
    "failure_line",
    "one_line",
    "run_command",
]

#: command name -> ("module[:function]", one-line help)
CommandTable = Mapping[str, tuple[str, str]]
#: A command: the arguments after its name -> exit status.
Command = Callable[[Sequence[str]], int]


def add_version_option(parser: argparse.ArgumentParser) -> None:
    """``--version``: print ``mantid-exp2sim <version>`` and exit 0."""
    parser.add_argument("--version", action="version", version=f"mantid-exp2sim {__version__}")


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (its type name when the message is empty)."""
    return " ".join(str(exc).split()) or type(exc).__name__


#: Exceptions that carry a message meant for the user.
EXPECTED_ERRORS = (Exp2SimError, ValueError, OSError, RuntimeError)


def failure_line(exc: BaseException) -> str:
    """One line describing why a file (or a run) failed, for ``stderr``; never a traceback.

    Parameters
    ----------
    exc
        The exception caught.

    Returns
    -------
    str
        The message of an expected error; for ``MemoryError`` what ran out and what to do;
        otherwise ``"unexpected <Type>: <message>"`` with a request to report it.
    """
    if isinstance(exc, MemoryError):
        return (
            f"not enough memory ({one_line(exc)}). Use --stream for large .nxs/.h5 files, "
            "rebin the data to fewer bins, or run on a machine with more memory."
        )
    if isinstance(exc, EXPECTED_ERRORS):
        return one_line(exc)
    return f"unexpected {type(exc).__name__}: {one_line(exc)} (please report this, with the command line)"


def _exit_status(exc: SystemExit) -> int:
    if isinstance(exc.code, int):
        return exc.code
    return 0 if exc.code is None else 1


def run_command(prog: str, command: Command, argv: Sequence[str]) -> int:
    """Run ``command(argv)`` under the convention above; returns the exit status.

    Parameters
    ----------
    prog
        What the messages start with, e.g. ``"exp2sim classify"``.
    command
        Takes the arguments, returns the exit status (None counts as 0).
    argv
        The arguments.
    """
    try:
        return int(command(list(argv)) or 0)
    except SystemExit as exc:  # argparse: --help, --version or a usage error
        return _exit_status(exc)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last guard: one line, never a traceback
        print(f"{prog}: error: {failure_line(exc)}", file=sys.stderr)
        return 1


def console_script(prog: str) -> Callable[[Command], Callable[..., int]]:
    """Decorator making ``main(argv)`` a console script of the convention above.

    The decorated ``main(argv=None)`` reads ``sys.argv[1:]`` when ``argv`` is None and hands
    the wrapped function a list.
    """

    def decorate(command: Command) -> Callable[..., int]:
        @functools.wraps(command)
        def main(argv: Sequence[str] | None = None) -> int:
            return run_command(prog, command, sys.argv[1:] if argv is None else argv)

        return main

    return decorate


def command_parser(prog: str, description: str, commands: CommandTable) -> argparse.ArgumentParser:
    """The top-level parser of a script with subcommands: ``--version``, a command and its arguments."""
    lines = "\n".join(f"  {name:<14} {text}" for name, (_, text) in commands.items())
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=f"commands:\n{lines}\n\nRun '{prog} <command> --help' for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_version_option(parser)
    parser.add_argument("command", choices=sorted(commands), metavar="command", help="one of: " + ", ".join(commands))
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the command")
    return parser


def _target(spec: str) -> Command:
    module_name, _, func = spec.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, func or "main")


def dispatch(prog: str, description: str, commands: CommandTable, argv: Sequence[str] | None = None) -> int:
    """Run ``prog <command> [arguments]`` from a ``COMMANDS`` table; returns the exit status.

    No arguments print the help on stderr (status 2); ``--help`` and ``--version`` work
    before a command; an unknown command is a usage error (status 2). The command's module is
    imported only when it runs, and runs under :func:`run_command` as ``"<prog> <command>"``.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    parser = command_parser(prog, description, commands)
    if not args:
        parser.print_help(sys.stderr)
        return 2
    if args[0] not in commands:
        try:
            parser.parse_args(args)  # prints the help, the version or the usage error
        except SystemExit as exc:
            return _exit_status(exc)
        return 2
    command, rest = args[0], args[1:]
    return run_command(f"{prog} {command}", _target(commands[command][0]), rest)
