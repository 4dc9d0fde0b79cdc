"""``exp2sim mantid-setup``: user plugin directory in Mantid.user.properties, and its exact undo."""

from __future__ import annotations

from pathlib import Path

import pytest

from mantid_exp2sim.cli.main import main
from mantid_exp2sim.cli.mantid_setup import (
    PLUGIN_FILE,
    PROPERTY_KEY,
    add_plugin_directory,
    remove_plugin_directory,
)

EXISTING = "# my settings\ndefault.facility=ISIS\nuser.python.plugins.directories=/opt/a;/opt/b\nlogging.level=debug\n"


def _setup(props: Path, *extra: str) -> int:
    return main(["mantid-setup", "--properties-file", str(props), *extra])


def test_setup_appends_to_the_existing_list_and_remove_restores_the_file(tmp_path, capsys):
    props = tmp_path / "Mantid.user.properties"
    props.write_text(EXISTING)
    assert _setup(props) == 0
    plugin_dir = tmp_path / "exp2sim_plugins"
    text = props.read_text()
    assert f"{PROPERTY_KEY}=/opt/a;/opt/b;{plugin_dir}\n" in text
    assert "default.facility=ISIS\n" in text and "logging.level=debug\n" in text
    stub = plugin_dir / PLUGIN_FILE
    assert "register_algorithms()" in stub.read_text()
    assert "Restart Mantid" in capsys.readouterr().out

    assert _setup(props) == 0  # idempotent
    assert props.read_text() == text
    assert "nothing to do" in capsys.readouterr().out

    assert _setup(props, "--remove") == 0
    assert props.read_text() == EXISTING
    assert not plugin_dir.exists()


def test_setup_creates_the_key_and_the_file_and_remove_deletes_only_that(tmp_path):
    props = tmp_path / "new" / "Mantid.user.properties"
    assert _setup(props) == 0
    assert props.read_text().count(PROPERTY_KEY) == 1
    assert _setup(props, "--remove") == 0
    assert props.read_text() == ""


def test_remove_keeps_entries_added_by_the_user_later(tmp_path):
    props = tmp_path / "Mantid.user.properties"
    plugins = tmp_path / "mine"
    assert _setup(props, "--plugin-dir", str(plugins)) == 0
    text = props.read_text().replace(str(plugins), f"{plugins};/home/user/other")
    props.write_text(text)
    assert _setup(props, "--plugin-dir", str(plugins), "--remove") == 0
    assert f"{PROPERTY_KEY}=/home/user/other\n" in props.read_text()
    assert plugins.is_dir() and not (plugins / PLUGIN_FILE).exists()  # a chosen directory is kept


def test_foreign_plugin_file_is_not_overwritten(tmp_path, capsys):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / PLUGIN_FILE).write_text("print('mine')\n")
    assert _setup(tmp_path / "p.properties", "--plugin-dir", str(plugins)) == 1
    assert "was not written by exp2sim mantid-setup" in capsys.readouterr().err
    assert (plugins / PLUGIN_FILE).read_text() == "print('mine')\n"
    assert not (tmp_path / "p.properties").exists()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", None),
        ("a=1", None),
        ("user.python.plugins.directories = /x ; /y\n", "user.python.plugins.directories=/x;/y;/p\n"),
        ("user.python.plugins.directories=/x;\\\n  /y\nb=2\n", "user.python.plugins.directories=/x;/y;/p\nb=2\n"),
        ("# user.python.plugins.directories=/z\n", None),
    ],
)
def test_properties_text_edits(text, expected):
    added = add_plugin_directory(text, Path("/p"))
    if expected is not None:
        assert added == expected
    else:
        assert added.endswith("user.python.plugins.directories=/p\n")
        assert remove_plugin_directory(added, Path("/p")).rstrip("\n") == text.rstrip("\n")
    assert add_plugin_directory(added, Path("/p")) == added
