"""Packaging for mantid-exp2sim.

A plain ``pip install`` gives CPU inference with ONNX Runtime (no PyTorch). Extras:

* ``torch``     the PyTorch inference backend
* ``simulate``  the spin-wave simulator's built-in MAPS resolution (resins)
* ``train``     training, export and plots (PyTorch, ONNX exporter, matplotlib)
* ``all``       everything above
* ``test``      the test suite's tools (pytest, the layer contracts' import-linter)

GPU inference with ONNX Runtime needs ``onnxruntime-gpu`` instead of ``onnxruntime``; the two
cannot be installed together (see docs/installation.md).
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(
    r'__version__ = "([^"]+)"', (HERE / "mantid_exp2sim" / "_version.py").read_text()
).group(1)

core = [
    "numpy>=1.24",
    "scipy>=1.10",
    "h5py>=3.8",
    "onnxruntime>=1.17",
    "pot>=0.9.4",
    "tqdm>=4.60",
    "lmfit>=1.2",
]
extras = {
    "torch": ["torch>=2.2"],
    "simulate": ["resins>=0.1,<0.2"],
    "train": ["torch>=2.2", "onnx>=1.16", "onnxscript>=0.2", "matplotlib>=3.7"],
    "plot": ["matplotlib>=3.7"],
    # import-linter: the layer contracts in .importlinter (tests/test_architecture.py)
    "test": ["pytest>=8", "pytest-xdist>=3", "scikit-image>=0.22", "import-linter>=2.17"],
}
extras["all"] = sorted({req for name in ("torch", "simulate", "train", "plot") for req in extras[name]})

setup(
    name="mantid-exp2sim",
    version=VERSION,
    description=(
        "Exp2SimGAN resolution (de)convolution, DUQ spin-wave model classification and a "
        "domain-of-applicability score for inelastic neutron scattering, as Mantid algorithms"
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["mantid_exp2sim", "mantid_exp2sim.*"]),
    package_data={"mantid_exp2sim": ["data/bundles/*.exp2sim.h5", "data/*.json"]},
    include_package_data=True,
    install_requires=core,
    extras_require=extras,
    entry_points={
        "console_scripts": [
            "exp2sim=mantid_exp2sim.cli.main:main",
            "exp2sim-simulate=mantid_exp2sim.simulate.cli:main",
            "exp2sim-train=mantid_exp2sim.train.cli:main",
        ]
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Physics",
        "Intended Audience :: Science/Research",
    ],
)
