"""Test-wide setup: real Mantid when importable, otherwise the test double.

``tests/mantid_double`` (a fake ``mantid`` package following the project's Mantid fact
sheet) is put on ``sys.path`` **only** when ``import mantid`` fails, so every Mantid test
runs unchanged against real Mantid where it is installed. This must happen before
``mantid_exp2sim`` is first imported, because importing the package registers its
algorithms with whichever ``mantid`` is found.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_DOUBLE = Path(__file__).resolve().parent / "mantid_double"


def _use_real_mantid() -> bool:
    try:
        import mantid  # noqa: F401
    except ImportError:
        return False
    return not getattr(mantid, "IS_TEST_DOUBLE", False)


REAL_MANTID = _use_real_mantid()
if not REAL_MANTID and str(_DOUBLE) not in sys.path:
    sys.path.insert(0, str(_DOUBLE))


def pytest_terminal_summary(terminalreporter) -> None:
    """Name the numerical stack (also under ``-q``), so that a failure can be matched to a release."""
    from importlib import metadata

    names = ("numpy", "scipy", "h5py", "onnxruntime", "onnxruntime-gpu", "torch", "POT", "resins")
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    terminalreporter.write_line("numerical stack: " + ", ".join(found)
                                + f"; mantid: {'real' if REAL_MANTID else 'test double'}")


@pytest.fixture(scope="session")
def real_mantid() -> bool:
    """True when the tests run against real Mantid, False with the test double."""
    return REAL_MANTID


@pytest.fixture(autouse=True)
def _clear_mantid_ads():
    """Leave the AnalysisDataService empty after every test that used Mantid."""
    yield
    api = sys.modules.get("mantid.api")
    if api is not None and hasattr(api, "AnalysisDataService"):
        api.AnalysisDataService.clear()


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """Factory ``tiny_bundle(task, ndim) -> Path`` of small, randomly initialised generator bundles.

    Built once per session with the real model, ONNX export and bundle writer
    (``write_bundle``); also available as shipped defaults through ``tiny_bundle.dir``,
    a folder holding ``{task}_{ndim}d.exp2sim.h5`` for ``EXP2SIM_BUNDLE_DIR``.
    """
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    folder = tmp_path_factory.mktemp("tiny_bundles")
    cache: dict[tuple[str, int], Path] = {}

    def make(task: str, ndim: int) -> Path:
        key = (task, ndim)
        if key not in cache:
            import torch

            from mantid_exp2sim.bundle import make_manifest, write_bundle
            from mantid_exp2sim.models.generator import ResnetGenerator
            from mantid_exp2sim.onnx import export_onnx

            torch.manual_seed(1234 + ndim)
            net = ResnetGenerator(ndim, ngf=2, n_blocks=1, n_down=1, stem_kernel=3)
            onnx_bytes = export_onnx(net, torch.zeros((1, 2) + (8,) * ndim), exporter="torchscript")
            manifest = make_manifest(
                kind="generator",
                task=task,
                model=net,
                direction={"deconvolve": "exp2sim", "convolve": "sim2exp"}[task],
                patch_size=24,
                seed=0,
                command="pytest tiny_bundle fixture",
            )
            cache[key] = write_bundle(
                folder / f"{task}_{ndim}d.exp2sim.h5", manifest, onnx=onnx_bytes, weights=net.state_dict()
            )
        return cache[key]

    make.dir = folder
    return make
