"""``exp2sim mantid-setup``: make Mantid load the algorithms through a user plugin directory.

Mantid has no entry points. Importing ``mantid_exp2sim`` registers the algorithms, but
only in sessions that import the package. This command writes a small plugin file,
``mantid_exp2sim_plugin.py``, into a directory of its own and adds that directory to
``user.python.plugins.directories`` in Mantid's user properties file
(``~/.mantid/Mantid.user.properties``); Mantid runs every ``*.py`` there when
``mantid.simpleapi`` is imported, so the algorithms are available in every session.

``--remove`` undoes exactly this change: it removes the directory from the list (and the
key, if this command added it), the plugin file, and the plugin directory if it is
empty. Other entries and lines of the properties file are kept as they are.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from ..errors import Exp2SimError, format_error
from ..io._atomic import atomic_path

__all__ = [
    "PLUGIN_FILE",
    "PROPERTY_KEY",
    "add_plugin_directory",
    "default_properties_file",
    "get_parser",
    "install",
    "main",
    "remove_plugin_directory",
    "uninstall",
]

PROPERTY_KEY = "user.python.plugins.directories"
#: The plugin file. Mantid imports it under its bare name, so it must not be called
#: ``mantid_exp2sim.py`` (that would shadow the package itself).
PLUGIN_FILE = "mantid_exp2sim_plugin.py"
PLUGIN_DIR_NAME = "exp2sim_plugins"
_MARKER = "# Added by 'exp2sim mantid-setup' (undo with: exp2sim mantid-setup --remove)"
_STUB_TAG = "# exp2sim-mantid-setup-stub v1"
_STUB = f'''"""Mantid user plugin written by `exp2sim mantid-setup`: registers mantid-exp2sim's algorithms.

Mantid runs every *.py file in the directories of user.python.plugins.directories when
mantid.simpleapi is imported. Remove this file with `exp2sim mantid-setup --remove`.
"""
{_STUB_TAG}
try:
    from mantid_exp2sim.algorithms import register_algorithms
except ImportError as exc:
    from mantid.kernel import logger

    logger.warning(
        "mantid-exp2sim is not installed in the Python that runs Mantid "
        f"({{exc}}); its algorithms are unavailable. Install it there with: pip install mantid-exp2sim"
    )
else:
    register_algorithms()
'''


class SetupError(Exp2SimError, OSError):
    """The properties file or the plugin directory cannot be changed."""


def default_properties_file() -> Path:
    """Mantid's user properties file: ``~/.mantid/Mantid.user.properties`` (Linux, macOS)."""
    if os.name == "nt":
        try:
            from mantid.kernel import config

            return Path(config.getUserPropertiesDir()) / "Mantid.user.properties"
        except Exception as exc:  # noqa: BLE001 - any failure means: ask the user
            raise SetupError(
                format_error(
                    "Cannot find Mantid's user properties file on Windows",
                    reason=f"asking Mantid for its user properties directory failed ({exc})",
                    fix="pass --properties-file with the path of Mantid.user.properties",
                )
            ) from exc
    return Path.home() / ".mantid" / "Mantid.user.properties"


# ------------------------------------------------------------ properties file text
def _find_key(lines: list[str]) -> tuple[int, int] | None:
    """(first, end) line indices of the last ``PROPERTY_KEY`` entry, continuation lines included."""
    found = None
    i = 0
    while i < len(lines):
        stripped = lines[i].lstrip()
        start = i
        key = stripped.split("=", 1)[0].split(":", 1)[0].strip()
        while lines[i].rstrip("\n").endswith("\\") and i + 1 < len(lines):
            i += 1
        if key == PROPERTY_KEY and not stripped.startswith(("#", "!")):
            found = (start, i + 1)
        i += 1
    return found


def _value(block: list[str]) -> str:
    text = "".join(line.rstrip("\n").removesuffix("\\") for line in block)
    sep = min((p for p in (text.find("="), text.find(":")) if p >= 0), default=-1)
    return text[sep + 1 :].strip() if sep >= 0 else ""


def _entries(value: str) -> list[str]:
    return [e.strip() for e in value.split(";") if e.strip()]


def _same_dir(a: str, b: Path) -> bool:
    return os.path.normcase(os.path.abspath(os.path.expanduser(a))) == os.path.normcase(str(b))


def add_plugin_directory(text: str, directory: Path) -> str:
    """Properties-file text with ``directory`` appended to :data:`PROPERTY_KEY` (idempotent)."""
    lines = text.splitlines(keepends=True)
    where = _find_key(lines)
    if where is None:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines += [_MARKER + "\n", f"{PROPERTY_KEY}={directory}\n"]
        return "".join(lines)
    start, end = where
    entries = _entries(_value(lines[start:end]))
    if any(_same_dir(e, directory) for e in entries):
        return text
    lines[start:end] = [f"{PROPERTY_KEY}={';'.join(entries + [str(directory)])}\n"]
    return "".join(lines)


def remove_plugin_directory(text: str, directory: Path) -> str:
    """Inverse of :func:`add_plugin_directory`: drop ``directory``; drop the key if this tool added it."""
    lines = text.splitlines(keepends=True)
    where = _find_key(lines)
    if where is None:
        return text
    start, end = where
    entries = _entries(_value(lines[start:end]))
    kept = [e for e in entries if not _same_dir(e, directory)]
    if len(kept) == len(entries):
        return text
    ours = start > 0 and lines[start - 1].strip() == _MARKER
    if not kept and ours:
        del lines[start - 1 : end]
    else:
        lines[start:end] = [f"{PROPERTY_KEY}={';'.join(kept)}\n"]
    return "".join(lines)


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


# ------------------------------------------------------------------ the actions
def install(properties_file: Path, plugin_dir: Path) -> list[str]:
    """Write the plugin file and register its directory; returns what was done."""
    done = []
    plugin_dir.mkdir(parents=True, exist_ok=True)
    stub = plugin_dir / PLUGIN_FILE
    if stub.exists() and _STUB_TAG not in stub.read_text(encoding="utf-8", errors="replace"):
        raise SetupError(
            format_error(
                f"'{stub}' exists and was not written by exp2sim mantid-setup",
                fix="move it away or choose another --plugin-dir",
            )
        )
    if not stub.exists() or stub.read_text(encoding="utf-8") != _STUB:
        _write_text(stub, _STUB)
        done.append(f"wrote the plugin file {stub}")
    properties_file.parent.mkdir(parents=True, exist_ok=True)
    old = properties_file.read_text(encoding="utf-8") if properties_file.exists() else ""
    new = add_plugin_directory(old, plugin_dir)
    if new != old:
        _write_text(properties_file, new)
        done.append(f"added {plugin_dir} to {PROPERTY_KEY} in {properties_file}")
    return done


def uninstall(properties_file: Path, plugin_dir: Path, *, remove_empty_dir: bool) -> list[str]:
    """Undo :func:`install`; returns what was done."""
    done = []
    if properties_file.exists():
        old = properties_file.read_text(encoding="utf-8")
        new = remove_plugin_directory(old, plugin_dir)
        if new != old:
            _write_text(properties_file, new)
            done.append(f"removed {plugin_dir} from {PROPERTY_KEY} in {properties_file}")
    stub = plugin_dir / PLUGIN_FILE
    if stub.exists() and _STUB_TAG in stub.read_text(encoding="utf-8", errors="replace"):
        stub.unlink()
        done.append(f"deleted the plugin file {stub}")
    if remove_empty_dir and plugin_dir.is_dir() and not any(plugin_dir.iterdir()):
        plugin_dir.rmdir()
        done.append(f"deleted the empty directory {plugin_dir}")
    return done


def get_parser() -> argparse.ArgumentParser:
    """Parser of ``exp2sim mantid-setup``."""
    parser = argparse.ArgumentParser(
        prog="exp2sim mantid-setup",
        description="Register mantid-exp2sim's algorithms with Mantid in every session, through a "
        f"user Python plugin directory ({PROPERTY_KEY}).",
        epilog="Run it with the Python environment Mantid uses; restart Mantid Workbench afterwards.",
    )
    parser.add_argument("--remove", action="store_true", help="undo the change made by this command")
    parser.add_argument(
        "--properties-file",
        type=Path,
        metavar="PATH",
        help="Mantid's user properties file (default: ~/.mantid/Mantid.user.properties)",
    )
    parser.add_argument(
        "--plugin-dir",
        type=Path,
        metavar="DIR",
        help=f"directory for the plugin file (default: {PLUGIN_DIR_NAME}/ next to the properties file)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``exp2sim mantid-setup``; returns the exit status."""
    args = get_parser().parse_args(argv)
    try:
        props = (args.properties_file or default_properties_file()).expanduser().absolute()
        default_dir = props.parent / PLUGIN_DIR_NAME
        plugin_dir = (args.plugin_dir or default_dir).expanduser().absolute()
        if args.remove:
            done = uninstall(props, plugin_dir, remove_empty_dir=plugin_dir == default_dir)
        else:
            done = install(props, plugin_dir)
    except (Exp2SimError, OSError) as exc:
        print(f"exp2sim mantid-setup: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    for line in done or ["nothing to do: already " + ("removed" if args.remove else "set up")]:
        print(line)
    if not args.remove:
        print(
            "Restart Mantid Workbench to load the algorithms. mantid-exp2sim must be installed in the "
            f"Python that runs Mantid (this command ran with {sys.executable})."
        )
    return 0
