"""Registration of the package's algorithms with Mantid (import side effect and plugin stub)."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys

import pytest

import mantid_exp2sim  # noqa: F401  (registers the algorithms)
from mantid_exp2sim.algorithms import ALGORITHMS, register_algorithms

pytestmark = pytest.mark.mantid

# Mantid calls these only when they are in the class's own body (typeHasAttribute).
FRAMEWORK_METHODS = ("PyInit", "PyExec", "validateInputs", "category", "summary", "seeAlso", "version")


def _classes():
    return [getattr(importlib.import_module(f"mantid_exp2sim.algorithms.{n}"), n) for n in ALGORITHMS]


def test_importing_the_package_registered_every_algorithm():
    from mantid.api import AlgorithmFactory

    for name in ALGORITHMS:
        assert AlgorithmFactory.exists(name, 1), name


@pytest.mark.parametrize("cls", _classes(), ids=lambda c: c.__name__)
def test_framework_methods_are_defined_in_the_class_itself(cls):
    missing = [m for m in FRAMEWORK_METHODS if m not in vars(cls)]
    assert not missing, f"{cls.__name__} inherits {missing}; Mantid would not call them"


@pytest.mark.parametrize("cls", _classes(), ids=lambda c: c.__name__)
def test_category_summary_see_also(cls):
    alg = cls()
    assert alg.category() == "Inelastic\\MachineLearning"
    assert len(alg.summary()) > 30
    see_also = alg.seeAlso()
    assert isinstance(see_also, list) and see_also
    assert set(see_also) <= set(ALGORITHMS) - {cls.__name__}
    assert alg.name() == cls.__name__


def test_register_when_simpleapi_was_imported_first():
    import mantid.simpleapi as simpleapi
    from mantid.api import AlgorithmFactory

    for name in ALGORITHMS:
        if AlgorithmFactory.exists(name, 1):
            AlgorithmFactory.unsubscribe(name, 1)
        if hasattr(simpleapi, name):
            delattr(simpleapi, name)
    assert not any(AlgorithmFactory.exists(n) for n in ALGORITHMS)
    assert register_algorithms() == list(ALGORITHMS)
    for name in ALGORITHMS:
        assert AlgorithmFactory.exists(name, 1)
        assert callable(getattr(simpleapi, name)), f"simpleapi.{name} missing"
    assert register_algorithms() == list(ALGORITHMS)  # again: replaces, no error
    assert AlgorithmFactory.getRegisteredAlgorithms(True)[ALGORITHMS[0]] == [1]


def test_plugin_stub_registers_when_mantid_loads_it(tmp_path):
    """The file `exp2sim mantid-setup` writes, executed as Mantid's plugin loader does."""
    from mantid.api import AlgorithmFactory

    from mantid_exp2sim.cli.mantid_setup import PLUGIN_FILE, install

    install(tmp_path / "Mantid.user.properties", tmp_path / "plugins")
    for name in ALGORITHMS:
        AlgorithmFactory.unsubscribe(name, 1)
    stub = tmp_path / "plugins" / PLUGIN_FILE
    module_name = stub.stem  # Mantid stores plugins in sys.modules under the bare file name
    try:
        loader = importlib.machinery.SourceFileLoader(module_name, str(stub))
        spec = importlib.util.spec_from_loader(module_name, loader)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        loader.exec_module(module)
    finally:
        sys.modules.pop(module_name, None)
    assert "mantid_exp2sim" in sys.modules and sys.modules["mantid_exp2sim"].__file__.endswith("__init__.py")
    for name in ALGORITHMS:
        assert AlgorithmFactory.exists(name, 1)


def test_broken_mantid_warns_instead_of_breaking_the_import(monkeypatch):
    monkeypatch.setitem(sys.modules, "mantid.api", None)  # makes `import mantid.api` fail
    with pytest.warns(RuntimeWarning, match="could not be imported"):
        assert register_algorithms() == []
