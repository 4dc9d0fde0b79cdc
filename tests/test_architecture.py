"""The layer contracts of docs/developer/architecture.md hold (import-linter, .importlinter).

Also checks at run time what a static import graph cannot: that the modules outside
models/, train/, onnx/ and algorithms/ import without torch, onnxruntime or Mantid, i.e. that
they reach those packages only lazily.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def test_import_linter_contracts_are_kept():
    res = _run(
        "import sys\n"
        "from importlinter.cli import lint_imports\n"
        "sys.exit(lint_imports(config_filename='.importlinter', no_cache=True, no_logo=True))\n"
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 broken" in res.stdout


def test_package_imports_without_the_optional_packages():
    res = _run(
        "import sys\n"
        "for name in ('torch', 'onnxruntime', 'onnx', 'mantid'):\n"
        "    sys.modules[name] = None  # importing them now fails\n"
        "import importlib, pkgutil, mantid_exp2sim\n"
        "eager = ('algorithms', 'models', 'train', 'onnx')  # may import them at module level\n"
        "names = [m.name for m in pkgutil.walk_packages(mantid_exp2sim.__path__, 'mantid_exp2sim.')\n"
        "         if m.name.split('.')[1] not in eager]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(len(names), 'modules')\n"
    )
    assert res.returncode == 0, res.stderr
    assert int(res.stdout.split()[0]) > 40
