"""The bad-input corpus of issue 12: what every command must survive, and how to check it.

One module, shared by the test suite (``tests/cli/test_bad_inputs.py``, in-process and a few
subprocess runs) and the benchmark (``benchmarks/bench_bad_inputs.py``, every case through the
installed commands). It holds

* :data:`SPECS`, the cases: each has a stable name, a category, the issue-12 item it comes
  from (``"2"``..``"5"``, or ``""`` for the generic classes the acceptance criteria list) and a
  builder that creates, in an empty folder, the files of the case and returns a :class:`Case`
  (the command line of an installed command, ``exp2sim ...``, ``exp2sim-simulate ...`` or
  ``exp2sim-train export ...``, and where one exists the equivalent Mantid algorithm call);
* :class:`Resources`, the tiny model bundles (2D generators with a reference bank, 3D
  generators, a DUQ classifier) and training checkpoints the cases use, built once;
* the runners (:func:`run_subprocess`, :func:`run_in_process`, :func:`run_algorithm`) and the
  checks (:func:`check_cli`, :func:`check_algorithm`), which return the properties a case broke.

The properties (issue 12, "Acceptance"), for every case:

``exit_status``
    a non-zero exit (``expect="error"``), or exit 0 for the few cases whose right answer is a
    warning (``expect="warning"``: all-negative inputs, item 5) or a clean success
    (``expect="success"``: a rerun after a killed run, which must also remove the leftover
    temporary files listed in ``stale``);
``traceback``
    no Python traceback on stderr (in-process: no exception escaping ``main``);
``message``
    at least one message line, every stderr line a one-line message of the command (it starts
    with the command's name, e.g. ``exp2sim deconvolve: ...``; argparse's usage block and
    cleared progress bars are ignored), naming what the case names in ``mentions`` (the bad
    file, the bundle part, the manifest field...; each a plain string or a regular expression
    with alternatives) and saying nothing that ``avoid`` lists (the misleading messages of
    issue 12, item 5);
``inputs_modified``
    every file, folder and symbolic link present before the run (inputs, bundles, existing
    outputs) is byte-for-byte unchanged afterwards;
``partial_outputs_left``
    no new file or folder (hidden temporary files included) except the outputs the case
    expects (``expected_outputs``) or allows (``may_create``);
``batches_stopped_early``
    in a batch, the good files were still processed (their outputs exist, or their result
    lines are on stdout);
``warning_missing``
    for ``expect="warning"``: a warning line matching ``warning`` on stderr;
``timeout``
    the command ended within ``timeout`` seconds.

Unwritable folders: tests often run as root, and root writes into a ``chmod 555`` folder. The
corpus makes a folder unwritable with ``chmod 555`` for other users and with ``chattr +i``
(the immutable attribute, which stops root too) for root, checks that writing there really
fails, and otherwise marks the cases :class:`CaseUnavailable` with the reason (the test skips
them, the benchmark lists them under ``unavailable``). Call :meth:`Case.release` after a run.

Building needs torch and onnx (the ``train`` extra) for the tiny bundles and checkpoints.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import io
import json
import logging
import os
import pickle
import re
import shutil
import subprocess
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

__all__ = [
    "AlgorithmCall",
    "Case",
    "CaseUnavailable",
    "CliResult",
    "Resources",
    "SPECS",
    "Spec",
    "check_algorithm",
    "check_cli",
    "run_algorithm",
    "run_in_process",
    "run_subprocess",
    "snapshot",
    "summarise",
]

#: Console scripts and the ``main(argv)`` each runs (setup.py's entry points).
ENTRY_POINTS = {
    "exp2sim": "mantid_exp2sim.cli.main:main",
    "exp2sim-simulate": "mantid_exp2sim.simulate.cli:main",
    "exp2sim-train": "mantid_exp2sim.train.cli:main",
}
#: Properties checked for every case (the keys of the benchmark's counts).
PROPERTIES = ("exit_status", "traceback", "message", "inputs_modified", "partial_outputs_left",
              "batches_stopped_early", "warning_missing", "timeout")


class CaseUnavailable(Exception):
    """The case cannot be set up here (the reason is the message); it is skipped, not passed."""


# ======================================================================== data classes
@dataclass
class AlgorithmCall:
    """The Mantid algorithm equivalent of a case, run through ``mantid.simpleapi``'s algorithms.

    Attributes
    ----------
    algorithm
        Algorithm name, e.g. ``"ResolutionDeconvolveGAN"``.
    workspaces
        Workspaces created in the AnalysisDataService first: name -> ``(signal, dims)``, dims
        as ``(name, unit, frame, minimum, maximum)`` per dimension, dimension 0 first.
    properties
        Algorithm properties (workspaces by name).
    expect
        ``"error"`` (the algorithm must refuse) or ``"warning"`` (it runs and logs a warning).
    warning
        Regular expression a warning of the algorithm's log must match (``expect="warning"``).
    """

    algorithm: str
    workspaces: dict[str, tuple[np.ndarray, tuple]]
    properties: dict[str, Any]
    expect: str = "error"
    warning: str | None = None


@dataclass
class Case:
    """One concrete bad-input case, its files already in :attr:`cwd` (see the module notes)."""

    name: str
    category: str
    issue: str
    argv: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    expect: str = "error"
    expected_outputs: list[Path] = field(default_factory=list)
    may_create: list[Path] = field(default_factory=list)
    expected_stdout: list[str] = field(default_factory=list)
    mentions: list[str] = field(default_factory=list)
    avoid: list[str] = field(default_factory=list)
    warning: str | None = None
    stale: list[Path] = field(default_factory=list)
    watch: list[Path] = field(default_factory=list)
    timeout: float = 300.0
    subprocess_only: bool = False
    algorithm: AlgorithmCall | None = None
    note: str = ""
    _release: list[Callable[[], None]] = field(default_factory=list, repr=False)

    @property
    def command_line(self) -> str:
        """The command as a user would type it (in :attr:`cwd`)."""
        import shlex

        return " ".join(shlex.quote(a) for a in self.argv)

    def release(self) -> None:
        """Undo what made folders unwritable (so that they can be deleted)."""
        while self._release:
            self._release.pop()()


@dataclass
class Spec:
    """A case before its files exist: name, category, issue item and builder."""

    name: str
    category: str
    issue: str
    build_fn: Callable[["Resources", Path], Case]

    def build(self, resources: "Resources", folder: Path) -> Case:
        """Create the case's files in ``folder`` (created, must be new) and return the case."""
        folder.mkdir(parents=True)
        case = self.build_fn(resources, folder)
        case.name, case.category, case.issue = self.name, self.category, self.issue
        case.watch = [folder, resources.bundle_dir, *case.watch]
        case.env = {"EXP2SIM_BUNDLE_DIR": str(resources.bundle_dir), **case.env}
        return case


SPECS: list[Spec] = []


def case(name: str, category: str, issue: str = "") -> Callable:
    """Register a case builder ``fn(resources, folder) -> Case`` under ``name``."""

    def register(fn: Callable[["Resources", Path], Case]) -> Callable:
        if any(s.name == name for s in SPECS):
            raise ValueError(f"duplicate case name {name!r}")
        SPECS.append(Spec(name, category, issue, fn))
        return fn

    return register


def _case(argv: Sequence[str], d: Path, **kw: Any) -> Case:
    return Case(name="", category="", issue="", argv=[str(a) for a in argv], cwd=d, **kw)


# ======================================================================== files
def _axes(shape: Sequence[int]):
    from mantid_exp2sim.histogram import Axis

    names = [("[H,0,0]", "r.l.u.", "HKL"), ("[0,K,0]", "r.l.u.", "HKL"), ("DeltaE", "meV", "General Frame")]
    names = names[-len(shape):] if len(shape) <= 3 else [(f"D{i}", "", "General Frame") for i in range(len(shape))]
    return tuple(Axis(n, u, 0.0, float(s), int(s), frame=f) for (n, u, f), s in zip(names, shape))


def histo(shape: Sequence[int] = (20, 22), seed: int = 0, *, signal: np.ndarray | None = None):
    """A measured-like histogram (gamma-distributed counts, one masked bin)."""
    from mantid_exp2sim.histogram import MDHisto

    if signal is None:
        rng = np.random.default_rng(seed)
        signal = rng.gamma(2.0, 1.0, size=tuple(shape))
        signal[(0,) * len(shape)] = np.nan
    signal = np.asarray(signal, dtype=float)
    return MDHisto(signal, _axes(signal.shape), errors=np.sqrt(np.abs(np.nan_to_num(signal))) + 0.1)


def mosaic(seed: int = 0, *, signal: np.ndarray | None = None):
    """A 240x400 mosaic in the pcsmo-mosaic-v1 layout (what ``exp2sim classify`` reads)."""
    from mantid_exp2sim.histogram import MDHisto
    from mantid_exp2sim.mosaic import MOSAIC_SHAPE, mosaic_axes

    if signal is None:
        signal = np.random.default_rng(seed).gamma(2.0, 1.0, MOSAIC_SHAPE)
    return MDHisto(np.asarray(signal, dtype=float), mosaic_axes())


def save(h: Any, path: Path) -> Path:
    """``mantid_exp2sim.io.save_histogram``; returns the path as given."""
    from mantid_exp2sim.io import save_histogram

    save_histogram(h, path)
    return path


def good(d: Path, name: str, seed: int = 0, shape: Sequence[int] = (20, 22)) -> Path:
    """A valid histogram file ``d/name`` (format from the extension; .npy holds the signal)."""
    return save(histo(shape, seed), d / name)


def raw_npz(signal: np.ndarray, path: Path, axes: Sequence[Any] | None = None) -> Path:
    """An exp2sim ``.npz`` histogram written directly (``MDHisto`` refuses infinite values)."""
    axes = _axes(np.shape(signal)) if axes is None else axes
    np.savez(path, signal=np.asarray(signal, dtype=float), axes=np.array(json.dumps([a.to_dict() for a in axes])),
             metadata=np.array("{}"), format=np.array("exp2sim-histogram"), format_version=np.array(1))
    return path


def truncated(src: Path, dst: Path, fraction: float = 0.5) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: max(1, int(len(data) * fraction))])
    return dst


def empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def text(path: Path, content: str = "sample PCSMO, run 12345\nEi = 70 meV\n") -> Path:
    path.write_text(content)
    return path


class _MakesADirectory:
    """Pickles to ``os.mkdir('unpickled')``: a file that does this when loaded was unpickled."""

    def __reduce__(self):
        return (os.mkdir, ("unpickled",))


def pickled_npy(path: Path) -> Path:
    np.save(path, np.array([_MakesADirectory(), 1.0], dtype=object), allow_pickle=True)
    return path


def huge_declared_h5(path: Path, bins: int = 2**24) -> Path:
    """A small .h5 histogram declaring ``bins x bins`` float64 bins (2 PB at the default: more
    than any address space, so a reader that allocates it fails at once and nothing swaps)."""
    import h5py

    from mantid_exp2sim.histogram import Axis

    axes = [Axis("[H,0,0]", "r.l.u.", -1.0, 1.0, bins), Axis("DeltaE", "meV", 0.0, 50.0, bins)]
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "exp2sim-histogram"
        f.attrs["format_version"] = np.int32(1)
        f.attrs["axes"] = json.dumps([a.to_dict() for a in axes])
        f.attrs["metadata"] = "{}"
        f.create_dataset("signal", shape=(bins, bins), dtype=np.float64, chunks=(64, 64), fillvalue=1.0)
    return path


# ======================================================================== bundles
def _bundle_parts(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    import h5py

    parts: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        manifest = json.loads(f.attrs["manifest"])

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                parts[name] = np.asarray(obj[()])

        f["parts"].visititems(visit)
    return manifest, parts


def _whole_onnx(manifest: dict, parts: dict[str, np.ndarray], part: str) -> bytes:
    """An ONNX part with its initializers whole (schema 2 stores shared ones in the weights)."""
    from mantid_exp2sim.bundle.onnx_share import restore_shared_initializers

    stored = parts[part].tobytes()
    shared = manifest.get("parts", {}).get(part, {}).get("initializers_in_weights")
    if not shared:
        return stored
    weights = {k[len("weights/"):]: v for k, v in parts.items() if k.startswith("weights/")}
    return restore_shared_initializers(stored, {k: v[len("weights/"):] for k, v in shared.items()}, weights)


def raw_bundle(path: Path, manifest: dict, parts: dict[str, np.ndarray | bytes]) -> Path:
    """Write a bundle with valid checksums and no validation at all (as a crafted file would be)."""
    import h5py

    from mantid_exp2sim.bundle import array_sha256

    m = json.loads(json.dumps(manifest))
    listed = {}
    with h5py.File(path, "w") as f:
        f.attrs["schema"] = "mantid-exp2sim-bundle"
        f.attrs["schema_version"] = np.int64(m.get("schema_version", 1))
        for name, value in parts.items():
            a = np.frombuffer(value, dtype=np.uint8) if isinstance(value, (bytes, bytearray)) else np.asarray(value)
            f.create_dataset(f"parts/{name}", data=a)
            listed[name] = {"sha256": array_sha256(a), "shape": list(a.shape), "dtype": str(a.dtype)}
        m["parts"] = listed
        f.attrs["manifest"] = json.dumps(m)
    return path


def edit_manifest(path: Path, change: Callable[[dict], None]) -> Path:
    """Change the manifest of a bundle in place (the parts and their checksums stay valid)."""
    import h5py

    with h5py.File(path, "r+") as f:
        m = json.loads(f.attrs["manifest"])
        change(m)
        f.attrs["manifest"] = json.dumps(m)
    return path


def external_data_onnx(blob: bytes, location: str = "w.bin") -> tuple[bytes, bytes]:
    """Move the largest initializer of an ONNX graph to an external file; returns
    ``(model bytes, file bytes)``: ONNX Runtime would read ``location`` when loading."""
    import onnx
    from onnx import TensorProto
    from onnx.external_data_helper import set_external_data

    model = onnx.load_from_string(blob)
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    data = bytes(tensor.raw_data)
    set_external_data(tensor, location, offset=0, length=len(data))
    tensor.data_location = TensorProto.EXTERNAL
    tensor.ClearField("raw_data")
    return model.SerializeToString(), data


def damaged_bundle(r: "Resources", d: Path, how: str, *, source: str = "deconvolve_2d", name: str | None = None) -> Path:
    """A damaged copy of one of the tiny bundles in ``d``.

    ``how``: ``checksum`` (a weight changed after writing), ``truncated`` (first half),
    ``text`` (a text file), ``external`` / ``external_encoder`` (the ONNX graph keeps its
    largest initializer in ``w.bin``, written next to the bundle and in ``d``), ``not_onnx`` /
    ``not_onnx_encoder`` (the part is text, valid checksums), ``hdf5_external_storage`` (a
    weight's bytes kept in the raw file ``w.raw`` by HDF5, valid checksum),
    ``hdf5_external_link`` (``/parts`` is a link to the parts of ``other.h5``), ``newer_schema``,
    or ``field:<dotted.path>=<JSON value>`` (one manifest field changed).
    """
    src = r.bundle_dir / f"{source}.exp2sim.h5"
    dst = d / (name or f"{how.split(':')[0].split('=')[0].replace('.', '_')}.exp2sim.h5")
    if how == "checksum":
        import h5py

        shutil.copyfile(src, dst)
        with h5py.File(dst, "r+") as f:
            key = sorted(k for k in f["parts/weights"])[0]
            ds = f["parts/weights"][key]
            value = np.array(ds[()])
            value.flat[0] += 1.0
            ds[...] = value
    elif how == "truncated":
        truncated(src, dst)
    elif how == "text":
        text(dst, "this is not a model bundle\n")
    elif how in ("external", "external_encoder", "not_onnx", "not_onnx_encoder"):
        manifest, parts = _bundle_parts(src)
        part = "onnx_encoder" if how.endswith("encoder") else "onnx"
        if how.startswith("external"):
            blob, data = external_data_onnx(_whole_onnx(manifest, parts, part))
            (d / "w.bin").write_bytes(data)
        else:
            blob = b"this is not an ONNX graph, but its checksum is right\n" * 40
        parts[part] = np.frombuffer(blob, dtype=np.uint8)
        raw_bundle(dst, manifest, parts)
    elif how == "hdf5_external_storage":
        import h5py

        shutil.copyfile(src, dst)
        with h5py.File(dst, "r+") as f:
            key = sorted(f["parts/weights"])[0]
            value = np.ascontiguousarray(f["parts/weights"][key][()])
            value.tofile(d / "w.raw")
            del f["parts/weights"][key]
            f["parts/weights"].create_dataset(key, shape=value.shape, dtype=value.dtype,
                                              external=[("w.raw", 0, value.nbytes)])
    elif how == "hdf5_external_link":
        import h5py

        shutil.copyfile(src, d / "other.h5")
        shutil.copyfile(src, dst)
        with h5py.File(dst, "r+") as f:
            del f["parts"]
            f["parts"] = h5py.ExternalLink("other.h5", "/parts")
    elif how == "newer_schema":
        import h5py

        shutil.copyfile(src, dst)
        with h5py.File(dst, "r+") as f:
            f.attrs["schema_version"] = np.int64(99)
    elif how.startswith("field:"):
        dotted, _, value = how[len("field:"):].partition("=")
        shutil.copyfile(src, dst)

        def change(m: dict) -> None:
            keys = dotted.split(".")
            target = m
            for k in keys[:-1]:
                target = target[k]
            target[keys[-1]] = json.loads(value)

        edit_manifest(dst, change)
    else:
        raise ValueError(f"unknown damage {how!r}")
    return dst


# ======================================================================== resources
class Resources:
    """Tiny bundles (``bundle_dir``, usable as ``EXP2SIM_BUNDLE_DIR``) and checkpoints, built once.

    ``bundle_dir`` holds ``deconvolve_2d`` and ``convolve_2d`` (random ResNet generators,
    ngf 2, with ONNX encoders and a domain-score reference bank), ``deconvolve_3d`` and
    ``convolve_3d`` (no bank) and ``classify_2d`` (a small random DUQ classifier for 240x400
    mosaics). Checkpoints (:meth:`checkpoint`) are trained on first use.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.bundle_dir = self.root / "bundles"
        self._checkpoints: dict[str, Path] = {}
        self.seconds = 0.0

    @classmethod
    def build(cls, root: str | os.PathLike, *, checkpoints: bool = True) -> "Resources":
        """Build the bundles in ``root/bundles`` and, with ``checkpoints``, train both checkpoints
        (10-20 s on one core in all); :meth:`open` reuses a folder built before."""
        t0 = time.perf_counter()
        r = cls(Path(root))
        r.bundle_dir.mkdir(parents=True)
        for task in ("deconvolve", "convolve"):
            r._scored_generator(task)
            r._generator(task, 3)
        r._classifier()
        if checkpoints:
            for kind in ("normal", "small"):
                r.checkpoint(kind)
        r.seconds = time.perf_counter() - t0
        return r

    @classmethod
    def open(cls, root: str | os.PathLike) -> "Resources":
        """The resources :meth:`build` made in ``root`` (checkpoints found there are reused)."""
        r = cls(Path(root))
        if not r.bundle_dir.is_dir():
            raise FileNotFoundError(f"no corpus resources in {root}")
        return r

    def _generator(self, task: str, ndim: int, bank: bool = False) -> Path:
        import torch

        from mantid_exp2sim.bundle import load_bundle, make_manifest, write_bundle
        from mantid_exp2sim.models.generator import ResnetGenerator
        from mantid_exp2sim.onnx import EncoderWrapper, export_onnx

        torch.manual_seed(100 + ndim + (task == "convolve"))
        net = ResnetGenerator(ndim, ngf=2, n_blocks=1, n_down=1, stem_kernel=3).eval()
        example = torch.zeros((1, 2) + (8,) * ndim)
        onnx = export_onnx(net, example, exporter="torchscript")
        encoder = export_onnx(EncoderWrapper(net), example, exporter="torchscript") if bank else None
        direction = {"deconvolve": "exp2sim", "convolve": "sim2exp"}[task]
        manifest = make_manifest(kind="generator", task=task, model=net, direction=direction, patch_size=24,
                                 seed=0, command=["benchmarks/bad_input_corpus.py"])
        path = self.bundle_dir / f"{task}_{ndim}d.exp2sim.h5"
        if not bank:
            return write_bundle(path, manifest, onnx=onnx, weights=net.state_dict())
        from mantid_exp2sim.domain import build_reference_bank
        from mantid_exp2sim.inference import encode_features

        prelim_path = self.root / f".{task}_prelim.exp2sim.h5"
        prelim = load_bundle(write_bundle(prelim_path, manifest, onnx=onnx, onnx_encoder=encoder,
                                          weights=net.state_dict()))
        samples = [histo((16, 16), seed) for seed in range(53)]
        arrays, calibration = build_reference_bank(encode_features(samples[:45], prelim),
                                                   encode_features(samples[45:], prelim), seed=0, repeats=100)
        prelim_path.unlink()
        manifest["domain"] = calibration
        return write_bundle(path, manifest, onnx=onnx, onnx_encoder=encoder, weights=net.state_dict(),
                            reference=arrays)

    def _scored_generator(self, task: str) -> Path:
        return self._generator(task, 2, bank=True)

    def _classifier(self) -> Path:
        import torch

        from mantid_exp2sim.models.duq import DUQClassifier
        from mantid_exp2sim.train.classifier import export_classifier

        torch.manual_seed(2)
        model = DUQClassifier(widths=(4, 8, 8, 8), feature_dim=8, embedding_dim=8, length_scale=1.0)
        return export_classifier(model, self.bundle_dir / "classify_2d.exp2sim.h5", classes=["goodenough", "dimer"],
                                 thresholds={"confident": 0.6, "out_of_distribution": 0.3}, exporter="torchscript",
                                 command=["benchmarks/bad_input_corpus.py"])

    def checkpoint(self, kind: str = "normal") -> Path:
        """A GAN run folder (``<run>/checkpoint.pt`` and its data file), trained on first use.

        ``kind``: ``"normal"`` (100 samples, 48 of them domain-A training samples:
        ``exp2sim-train export`` succeeds) or ``"small"`` (12 samples: too few for the
        domain-score reference bank, which needs more than 40).
        """
        done = self.root / f"gan_{kind}" / "run"
        if kind not in self._checkpoints and (done / "checkpoint.pt").is_file():
            self._checkpoints[kind] = done
        if kind not in self._checkpoints:
            t0 = time.perf_counter()
            self._checkpoints[kind] = self._train(kind)
            self.seconds += time.perf_counter() - t0
        return self._checkpoints[kind]

    def _train(self, kind: str) -> Path:
        import h5py
        import torch

        from mantid_exp2sim.train.config import GanConfig
        from mantid_exp2sim.train.data import data_from_config
        from mantid_exp2sim.train.gan import GanTrainer

        folder = self.root / f"gan_{kind}"
        folder.mkdir()
        n, shape = (100 if kind == "normal" else 12), (16, 16)
        rng = np.random.default_rng(0)
        sim = folder / "sim.h5"
        with h5py.File(sim, "w") as f:
            f.attrs.update(format="exp2sim-dataset", format_version=1, representation="qe_slice", seed=0)
            f.attrs["axes"] = json.dumps([
                {"name": "|Q|", "unit": "Angstrom^-1", "minimum": 0.0, "maximum": 3.2, "bins": shape[0], "id": "|Q|",
                 "frame": "General Frame"},
                {"name": "DeltaE", "unit": "meV", "minimum": 0.0, "maximum": 48.0, "bins": shape[1], "id": "DeltaE",
                 "frame": "General Frame"},
            ])
            f["mask"] = np.zeros(shape, dtype=np.uint8)
            g = f.create_group("dimer")
            b = (rng.random((n,) + shape) * 0.1).astype(np.float32)
            b[:, 4:6, :] += 3.0
            a = (0.5 * b + 0.5 * np.roll(b, 1, axis=1)).astype(np.float32)
            g["convolved"], g["unconvolved"] = a, b
            g.attrs["complete"] = n
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            cfg = GanConfig(domain_a=[str(sim)], domain_b=[str(sim)], patch_size=[16, 16], batch_size=2, ngf=2,
                            n_blocks=1, ndf=4, n_layers=2, num_patches=8, netf_nc=8, max_steps=1, val_samples=2,
                            plot=False, seed=4)
            GanTrainer(cfg, data_from_config(cfg), folder / "run").fit()
        finally:
            torch.set_num_threads(threads)
        return folder / "run"


# ======================================================================== unwritable folders
_IMMUTABLE: set[Path] = set()


@atexit.register
def _release_immutable() -> None:
    """Never leave an immutable folder behind (nothing could delete it), even after an error."""
    chattr = shutil.which("chattr")
    for folder in list(_IMMUTABLE):
        if chattr:
            subprocess.run([chattr, "-i", str(folder)], capture_output=True)
    _IMMUTABLE.clear()


def make_unwritable(folder: Path, case_: Case) -> str:
    """Make ``folder`` unwritable for this process; returns how. Registers the undo on ``case_``.

    Raises
    ------
    CaseUnavailable
        When no mechanism works here (root without ``chattr +i`` support on this file system).
    """
    folder.mkdir(exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        case_._release.append(lambda: folder.chmod(0o755))
        how = "chmod 555"
    else:
        chattr = shutil.which("chattr")
        done = chattr is not None and subprocess.run([chattr, "+i", str(folder)], capture_output=True).returncode == 0
        if not done:
            raise CaseUnavailable(
                "tests run as root, which writes into a chmod 555 folder, and 'chattr +i' (the immutable "
                "attribute) is not available on this file system: no folder here is unwritable for root"
            )
        _IMMUTABLE.add(folder)

        def undo() -> None:
            subprocess.run([chattr, "-i", str(folder)], capture_output=True)
            _IMMUTABLE.discard(folder)

        case_._release.append(undo)
        how = "chattr +i"
    probe = folder / ".probe"
    try:
        probe.write_bytes(b"")
    except OSError:
        return how
    probe.unlink()
    case_.release()
    raise CaseUnavailable(f"{how} did not make {folder} unwritable for this process")


# ======================================================================== the cases
_Q = ["-q"]
#: The all-negative warning: names the negative input and the skipped intensity conservation.
_NEGATIVE_WARNING = r"(?i)negative.*(intensit|conserv)|(intensit|conserv).*negative"
_REPEATS = ["--repeats", "20"]


def _raw_dims(shape: Sequence[int]) -> tuple:
    return tuple((a.name, a.unit, a.frame, a.minimum, a.maximum) for a in _axes(shape))


def _alg_translate(task: str, signal: np.ndarray, *, model: Path | None = None, expect: str = "error",
                   warning: str | None = None) -> AlgorithmCall:
    signal = np.asarray(signal, dtype=float)
    props: dict[str, Any] = {"InputWorkspace": "bad_in", "OutputWorkspace": "bad_out", "Backend": "ONNX",
                             "Device": "CPU"}
    if model is not None:
        props["ModelFile"] = str(model)
    name = "ResolutionDeconvolveGAN" if task == "deconvolve" else "ResolutionConvolveGAN"
    return AlgorithmCall(name, {"bad_in": (signal, _raw_dims(signal.shape))}, props, expect=expect, warning=warning)


def _alg_classify(signal: np.ndarray | None = None, **props: Any) -> AlgorithmCall:
    from mantid_exp2sim.mosaic import mosaic_axes

    signal = mosaic(0).signal if signal is None else np.asarray(signal, dtype=float)
    dims = (tuple((a.name, a.unit, a.frame, a.minimum, a.maximum) for a in mosaic_axes())
            if signal.shape == (240, 400) else _raw_dims(signal.shape))
    base = {"InputWorkspace": "bad_mosaic", "OutputWorkspace": "bad_out", "Backend": "ONNX", "Device": "CPU",
            "CheckDomain": False}
    base.update({k: str(v) if isinstance(v, Path) else v for k, v in props.items()})
    return AlgorithmCall("ClassifySpinWaveModel", {"bad_mosaic": (signal, dims)}, base)


def _alg_score(signal: np.ndarray | None = None, **props: Any) -> AlgorithmCall:
    signal = histo((16, 16), 3).signal if signal is None else np.asarray(signal, dtype=float)
    base = {"InputWorkspaces": ["bad_in"], "OutputWorkspace": "bad_out", "Repeats": 20, "Backend": "ONNX",
            "Device": "CPU"}
    base.update({k: str(v) if isinstance(v, Path) else v for k, v in props.items()})
    return AlgorithmCall("ScoreDomainApplicability", {"bad_in": (signal, _raw_dims(signal.shape))}, base)


# ---------------------------------------------------------------- empty / truncated / wrong type
@case("empty_npy_deconvolve", "empty", "3")
def _(r, d):
    return _case(["exp2sim", "deconvolve", empty(d / "empty.npy").name, "-o", "out.npy", *_Q], d, mentions=["empty.npy"])


@case("empty_npz_convolve", "empty")
def _(r, d):
    return _case(["exp2sim", "convolve", empty(d / "empty.npz").name, "-o", "out.npz", *_Q], d, mentions=["empty.npz"])


@case("empty_nxs_deconvolve", "empty")
def _(r, d):
    return _case(["exp2sim", "deconvolve", empty(d / "empty.nxs").name, "-o", "out.nxs", *_Q], d, mentions=["empty.nxs"])


@case("empty_h5_score", "empty")
def _(r, d):
    return _case(["exp2sim", "score", empty(d / "empty.h5").name, *_REPEATS], d, mentions=["empty.h5"])


@case("empty_npy_classify", "empty", "3")
def _(r, d):
    return _case(["exp2sim", "classify", empty(d / "empty.npy").name, "--no-domain-check"], d, mentions=["empty.npy"])


@case("empty_npy_score", "empty", "3")
def _(r, d):
    return _case(["exp2sim", "score", empty(d / "empty.npy").name, *_REPEATS], d, mentions=["empty.npy"])


@case("truncated_npz_deconvolve", "truncated", "3")
def _(r, d):
    src = good(d, "whole.npz")
    truncated(src, d / "cut.npz")
    src.unlink()
    return _case(["exp2sim", "deconvolve", "cut.npz", "-o", "out.npz", *_Q], d, mentions=["cut.npz"])


@case("truncated_nxs_convolve", "truncated")
def _(r, d):
    src = good(d, "whole.nxs")
    truncated(src, d / "cut.nxs")
    src.unlink()
    return _case(["exp2sim", "convolve", "cut.nxs", "-o", "out.nxs", *_Q], d, mentions=["cut.nxs"])


@case("truncated_npy_deconvolve", "truncated")
def _(r, d):
    src = good(d, "whole.npy")
    truncated(src, d / "cut.npy", 0.6)
    src.unlink()
    return _case(["exp2sim", "deconvolve", "cut.npy", "-o", "out.npy", *_Q], d, mentions=["cut.npy"])


@case("truncated_h5_score", "truncated")
def _(r, d):
    src = save(histo((16, 16), 1), d / "whole.h5")
    truncated(src, d / "cut.h5")
    src.unlink()
    return _case(["exp2sim", "score", "cut.h5", *_REPEATS], d, mentions=["cut.h5"])


@case("truncated_nxs_classify", "truncated")
def _(r, d):
    src = save(mosaic(1), d / "whole.nxs")
    truncated(src, d / "cut.nxs")
    src.unlink()
    return _case(["exp2sim", "classify", "cut.nxs", "--no-domain-check"], d, mentions=["cut.nxs"])


@case("text_renamed_npz_deconvolve", "wrong-type", "5")
def _(r, d):
    text(d / "notes.npz")
    return _case(["exp2sim", "deconvolve", "notes.npz", "-o", "out.npz", *_Q], d, mentions=["notes.npz"],
                 avoid=["pickle"], note="the message must say the file is not an .npz archive, not talk about pickled data")


@case("text_renamed_npy_convolve", "wrong-type")
def _(r, d):
    text(d / "notes.npy")
    return _case(["exp2sim", "convolve", "notes.npy", "-o", "out.npy", *_Q], d, mentions=["notes.npy"],
                 avoid=["pickle"])


@case("text_renamed_nxs_classify", "wrong-type")
def _(r, d):
    text(d / "notes.nxs")
    return _case(["exp2sim", "classify", "notes.nxs", "--no-domain-check"], d, mentions=["notes.nxs"])


@case("pickle_npy_deconvolve", "wrong-type")
def _(r, d):
    pickled_npy(d / "objects.npy")
    return _case(["exp2sim", "deconvolve", "objects.npy", "-o", "out.npy", *_Q], d, mentions=["objects.npy"],
                 note="an object array that runs os.mkdir('unpickled') when unpickled: loading must never unpickle")


@case("pickle_npz_score", "wrong-type")
def _(r, d):
    np.savez(d / "objects.npz", signal=np.array([_MakesADirectory(), 1.0], dtype=object))
    return _case(["exp2sim", "score", "objects.npz", *_REPEATS], d, mentions=["objects.npz"])


@case("string_array_npy_deconvolve", "wrong-type")
def _(r, d):
    np.save(d / "words.npy", np.array([["a", "b"], ["c", "d"]]))
    return _case(["exp2sim", "deconvolve", "words.npy", "-o", "out.npy", *_Q], d, mentions=["words.npy"])


@case("complex_array_npy_convolve", "wrong-type")
def _(r, d):
    np.save(d / "complex.npy", np.ones((12, 12), dtype=complex))
    return _case(["exp2sim", "convolve", "complex.npy", "-o", "out.npy", *_Q], d, mentions=["complex.npy"])


@case("bundle_given_as_data_deconvolve", "wrong-type")
def _(r, d):
    shutil.copyfile(r.bundle_dir / "deconvolve_2d.exp2sim.h5", d / "model.h5")
    return _case(["exp2sim", "deconvolve", "model.h5", "-o", "out.h5", *_Q], d, mentions=["model.h5"])


@case("dataset_given_as_data_score", "wrong-type")
def _(r, d):
    import h5py

    with h5py.File(d / "training.h5", "w") as f:
        f.attrs["format"] = "exp2sim-dataset"
        f.create_dataset("dimer/convolved", data=np.ones((3, 8, 8)))
    return _case(["exp2sim", "score", "training.h5", *_REPEATS], d, mentions=["training.h5"])


@case("npz_without_signal_convolve", "wrong-type")
def _(r, d):
    np.savez(d / "two.npz", a=np.ones((8, 8)), b=np.zeros((8, 8)))
    return _case(["exp2sim", "convolve", "two.npz", "-o", "out.npz", *_Q], d, mentions=["two.npz"])


@case("plain_hdf5_as_nxs_deconvolve", "wrong-type")
def _(r, d):
    import h5py

    with h5py.File(d / "plain.nxs", "w") as f:
        f["data"] = np.ones((8, 8))
    return _case(["exp2sim", "deconvolve", "plain.nxs", "-o", "out.nxs", *_Q], d, mentions=["plain.nxs"])


@case("unsupported_extension_deconvolve", "wrong-type")
def _(r, d):
    text(d / "spectrum.txt", "1 2 3\n4 5 6\n")
    return _case(["exp2sim", "deconvolve", "spectrum.txt", "-o", "out.nxs", *_Q], d, mentions=["spectrum.txt"])


@case("directory_as_input_convolve", "wrong-type")
def _(r, d):
    (d / "folder.nxs").mkdir()
    return _case(["exp2sim", "convolve", "folder.nxs", "-o", "out.nxs", *_Q], d, mentions=["folder.nxs"],
                 avoid=["does not exist"], note="the input exists; it is a folder")


@case("missing_input_deconvolve", "missing")
def _(r, d):
    return _case(["exp2sim", "deconvolve", "absent.nxs", "-o", "out.nxs", *_Q], d, mentions=["absent.nxs"])


@case("missing_input_score", "missing")
def _(r, d):
    return _case(["exp2sim", "score", "absent.npz", *_REPEATS], d, mentions=["absent.npz"])


# ---------------------------------------------------------------- wrong shape
@case("wrong_shape_1d_deconvolve", "wrong-shape")
def _(r, d):
    np.save(d / "line.npy", np.arange(1.0, 33.0))
    c = _case(["exp2sim", "deconvolve", "line.npy", "-o", "out.npy", *_Q], d, mentions=["line.npy"])
    c.algorithm = _alg_translate("deconvolve", np.arange(1.0, 33.0).reshape(32, 1))
    return c


@case("wrong_shape_4d_convolve", "wrong-shape")
def _(r, d):
    np.save(d / "cube4.npy", np.ones((4, 5, 6, 7)))
    c = _case(["exp2sim", "convolve", "cube4.npy", "-o", "out.npy", *_Q], d, mentions=["cube4.npy"])
    c.algorithm = _alg_translate("convolve", np.ones((4, 5, 6, 7)))
    return c


@case("wrong_shape_scalar_deconvolve", "wrong-shape")
def _(r, d):
    np.save(d / "scalar.npy", np.float64(3.0))
    return _case(["exp2sim", "deconvolve", "scalar.npy", "-o", "out.npy", *_Q], d, mentions=["scalar.npy"])


@case("wrong_shape_zero_size_score", "wrong-shape")
def _(r, d):
    np.save(d / "nothing.npy", np.ones((0, 12)))
    return _case(["exp2sim", "score", "nothing.npy", *_REPEATS], d, mentions=["nothing.npy"])


@case("wrong_shape_zero_size_deconvolve", "wrong-shape")
def _(r, d):
    np.save(d / "nothing.npy", np.ones((0, 12)))
    return _case(["exp2sim", "deconvolve", "nothing.npy", "-o", "out.npy", *_Q], d, mentions=["nothing.npy"])


@case("inconsistent_h5_convolve", "wrong-shape")
def _(r, d):
    import h5py

    src = good(d, "h.h5")
    with h5py.File(src, "r+") as f:
        del f["signal"]
        f["signal"] = np.ones((5, 5))
    return _case(["exp2sim", "convolve", "h.h5", "-o", "out.h5", *_Q], d, mentions=["h.h5"])


@case("mosaic_wrong_shape_classify", "wrong-shape")
def _(r, d):
    save(histo(signal=np.ones((200, 400))), d / "small.npz")
    c = _case(["exp2sim", "classify", "small.npz", "--no-domain-check"], d, mentions=["small.npz"])
    c.algorithm = _alg_classify(np.ones((200, 400)))
    return c


@case("volume_without_ei_classify", "wrong-shape")
def _(r, d):
    save(histo((8, 8, 12), 2), d / "volume.nxs")
    return _case(["exp2sim", "classify", "volume.nxs", "--no-domain-check"], d, mentions=["volume.nxs"])


@case("volumes_ei_count_mismatch_classify", "wrong-shape")
def _(r, d):
    save(histo((8, 8, 12), 2), d / "v25.nxs")
    save(histo((8, 8, 12), 3), d / "v35.nxs")
    return _case(["exp2sim", "classify", "v25.nxs", "v35.nxs", "--ei", "25", "--no-domain-check"], d,
                 mentions=["v25.nxs"])


# ---------------------------------------------------------------- all-NaN / infinite / huge / negative
@case("all_nan_deconvolve", "all-nan")
def _(r, d):
    np.save(d / "masked.npy", np.full((12, 12), np.nan))
    c = _case(["exp2sim", "deconvolve", "masked.npy", "-o", "out.npy", *_Q], d, mentions=["masked.npy"])
    c.algorithm = _alg_translate("deconvolve", np.full((12, 12), np.nan))
    return c


@case("all_nan_classify", "all-nan")
def _(r, d):
    save(mosaic(signal=np.full((240, 400), np.nan)), d / "masked.nxs")
    c = _case(["exp2sim", "classify", "masked.nxs", "--no-domain-check"], d, mentions=["masked.nxs"])
    c.algorithm = _alg_classify(np.full((240, 400), np.nan))
    return c


@case("all_nan_score", "all-nan")
def _(r, d):
    save(histo(signal=np.full((16, 16), np.nan)), d / "masked.npz")
    c = _case(["exp2sim", "score", "masked.npz", *_REPEATS], d, mentions=["masked.npz"])
    c.algorithm = _alg_score(np.full((16, 16), np.nan))
    return c


def _with(value: float, shape=(16, 16), seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).gamma(2.0, 1.0, shape)
    x[3, 4] = value
    return x


@case("infinite_deconvolve", "infinite")
def _(r, d):
    np.save(d / "inf.npy", _with(np.inf))
    c = _case(["exp2sim", "deconvolve", "inf.npy", "-o", "out.npy", *_Q], d, mentions=["inf.npy"])
    c.algorithm = _alg_translate("deconvolve", _with(np.inf))
    return c


@case("infinite_classify", "infinite")
def _(r, d):
    from mantid_exp2sim.mosaic import mosaic_axes

    x = mosaic(5).signal
    x[10, 10] = np.inf
    raw_npz(x, d / "inf.npz", mosaic_axes())
    c = _case(["exp2sim", "classify", "inf.npz", "--no-domain-check"], d, mentions=["inf.npz"])
    c.algorithm = _alg_classify(x)
    return c


@case("negative_infinite_score", "infinite")
def _(r, d):
    raw_npz(_with(-np.inf), d / "neginf.npz")
    c = _case(["exp2sim", "score", "neginf.npz", *_REPEATS], d, mentions=["neginf.npz"])
    c.algorithm = _alg_score(_with(-np.inf))
    return c


@case("huge_values_deconvolve", "huge", "5")
def _(r, d):
    x = np.random.default_rng(6).gamma(2.0, 1.0, (16, 16)) * 1e299  # finite, near 1e300
    np.save(d / "huge.npy", x)
    c = _case(["exp2sim", "deconvolve", "huge.npy", "-o", "out.npy", *_Q], d, mentions=["huge.npy"],
              avoid=[r"intensity_scale\("],
              note="values near 1e300: the message must name the problem, not an internal function")
    c.algorithm = _alg_translate("deconvolve", x)
    return c


@case("huge_values_score", "huge")
def _(r, d):
    x = np.random.default_rng(6).gamma(2.0, 1.0, (16, 16)) * 1e299  # finite, near 1e300
    save(histo(signal=x), d / "huge.npz")
    c = _case(["exp2sim", "score", "huge.npz", *_REPEATS], d, mentions=["huge.npz"], avoid=[r"intensity_scale\("])
    c.algorithm = _alg_score(x)
    return c


@case("huge_declared_bins_deconvolve", "huge", "3")
def _(r, d):
    huge_declared_h5(d / "declared.h5")
    return _case(["exp2sim", "deconvolve", "declared.h5", "-o", "out.h5", *_Q], d, mentions=["declared.h5"],
                 subprocess_only=True, timeout=120,
                 note="a 20 kB .h5 declaring 2**24 x 2**24 bins: refuse before allocating (suggest --stream)")


@case("huge_declared_bins_score", "huge", "3")
def _(r, d):
    huge_declared_h5(d / "declared.h5")
    return _case(["exp2sim", "score", "declared.h5", *_REPEATS], d, mentions=["declared.h5"],
                 subprocess_only=True, timeout=120)


@case("all_negative_deconvolve", "negative", "5")
def _(r, d):
    x = -np.random.default_rng(4).gamma(2.0, 1.0, (16, 16))
    save(histo(signal=x), d / "negative.nxs")
    c = _case(["exp2sim", "deconvolve", "negative.nxs", "-o", "out.nxs", *_Q], d, expect="warning",
              expected_outputs=[d / "out.nxs"], warning=_NEGATIVE_WARNING,
              note="runs, but must warn on the console that intensity conservation was skipped")
    c.algorithm = _alg_translate("deconvolve", x, expect="warning", warning=_NEGATIVE_WARNING)
    return c


@case("all_negative_convolve_npy", "negative", "5")
def _(r, d):
    np.save(d / "negative.npy", -np.random.default_rng(5).gamma(2.0, 1.0, (16, 16)))
    return _case(["exp2sim", "convolve", "negative.npy", "-o", "out.npy", *_Q], d, expect="warning",
                 expected_outputs=[d / "out.npy"], warning=_NEGATIVE_WARNING,
                 note=".npy output keeps no metadata, so the console warning is the only record")


# ---------------------------------------------------------------- batches
@case("batch_empty_then_good_deconvolve", "batch", "3")
def _(r, d):
    empty(d / "empty.npy")
    good(d, "ok.npy")
    return _case(["exp2sim", "deconvolve", "empty.npy", "ok.npy", "-o", "out/", *_Q], d, mentions=["empty.npy"],
                 expected_outputs=[d / "out", d / "out" / "ok_deconvolved.npy"])


@case("batch_truncated_npz_in_the_middle_convolve", "batch", "3")
def _(r, d):
    good(d, "a.nxs", 1)
    truncated(good(d, "whole.npz", 2), d / "b.npz")
    (d / "whole.npz").unlink()
    good(d, "c.h5", 3)
    return _case(["exp2sim", "convolve", "a.nxs", "b.npz", "c.h5", "-o", "out", *_Q], d, mentions=["b.npz"],
                 expected_outputs=[d / "out", d / "out" / "a_convolved.nxs", d / "out" / "c_convolved.h5"])


@case("batch_huge_declared_then_good_deconvolve", "batch", "3")
def _(r, d):
    huge_declared_h5(d / "declared.h5")
    good(d, "ok.nxs")
    return _case(["exp2sim", "deconvolve", "declared.h5", "ok.nxs", "-o", "out", *_Q], d, mentions=["declared.h5"],
                 expected_outputs=[d / "out", d / "out" / "ok_deconvolved.nxs"], subprocess_only=True, timeout=120)


@case("batch_mixed_failures_deconvolve", "batch")
def _(r, d):
    np.save(d / "masked.npy", np.full((10, 10), np.nan))
    np.save(d / "cube4.npy", np.ones((3, 4, 5, 6)))
    pickled_npy(d / "objects.npy")
    good(d, "ok.nxs")
    return _case(["exp2sim", "deconvolve", "masked.npy", "absent.nxs", "cube4.npy", "objects.npy", "ok.nxs", "-o",
                  "out", *_Q], d, mentions=["masked.npy", "absent.nxs", "cube4.npy", "objects.npy"],
                 expected_outputs=[d / "out", d / "out" / "ok_deconvolved.nxs"])


@case("batch_classify_missing_file", "batch", "3")
def _(r, d):
    save(mosaic(1), d / "m1.nxs")
    save(mosaic(2), d / "m2.nxs")
    return _case(["exp2sim", "classify", "m1.nxs", "absent.nxs", "m2.nxs", "--no-domain-check"], d,
                 mentions=["absent.nxs"], expected_stdout=["m1.nxs:", "m2.nxs:"])


@case("batch_classify_empty_file", "batch", "3")
def _(r, d):
    empty(d / "empty.npy")
    save(mosaic(3), d / "m.npz")
    return _case(["exp2sim", "classify", "empty.npy", "m.npz", "--no-domain-check"], d, mentions=["empty.npy"],
                 expected_stdout=["m.npz:"])


@case("batch_classify_masked_and_truncated", "batch", "3")
def _(r, d):
    save(mosaic(signal=np.full((240, 400), np.nan)), d / "masked.nxs")
    truncated(save(mosaic(4), d / "whole.nxs"), d / "cut.nxs")
    (d / "whole.nxs").unlink()
    save(mosaic(5), d / "m.nxs")
    return _case(["exp2sim", "classify", "masked.nxs", "cut.nxs", "m.nxs", "--no-domain-check"], d,
                 mentions=["masked.nxs", "cut.nxs"], expected_stdout=["m.nxs:"])


@case("batch_score_empty_file", "batch", "3")
def _(r, d):
    empty(d / "empty.npy")
    save(histo((16, 16), 7), d / "ok.npz")
    return _case(["exp2sim", "score", "empty.npy", "ok.npz", *_REPEATS], d, mentions=["empty.npy"],
                 expected_stdout=["ok.npz:"])


@case("batch_score_text_and_missing", "batch")
def _(r, d):
    text(d / "notes.npz")
    save(histo((16, 16), 8), d / "ok.nxs")
    return _case(["exp2sim", "score", "notes.npz", "absent.h5", "ok.nxs", *_REPEATS], d,
                 mentions=["notes.npz", "absent.h5"], expected_stdout=["ok.nxs:"])


# ---------------------------------------------------------------- damaged bundles
def _bundle_case(r: "Resources", d: Path, how: str, task: str = "deconvolve", *, mentions: Sequence[str] = (),
                 alg: bool = True, source: str | None = None) -> Case:
    source = source or f"{task}_2d"
    bundle = damaged_bundle(r, d, how, source=source)
    good(d, "in.nxs")
    c = _case(["exp2sim", task, "in.nxs", "-o", "out.nxs", "--model", bundle.name, *_Q], d,
              mentions=[bundle.name, *mentions])
    if alg:
        c.algorithm = _alg_translate(task, histo().signal, model=bundle)
    return c


@case("bundle_bad_checksum_deconvolve", "damaged-bundle")
def _(r, d):
    return _bundle_case(r, d, "checksum", mentions=["checksum"])


@case("bundle_truncated_convolve", "damaged-bundle")
def _(r, d):
    return _bundle_case(r, d, "truncated", "convolve")


@case("bundle_text_file_deconvolve", "damaged-bundle")
def _(r, d):
    return _bundle_case(r, d, "text")


@case("bundle_external_data_deconvolve", "damaged-bundle", "4")
def _(r, d):
    c = _bundle_case(r, d, "external", mentions=["'onnx'", "external"])
    c.note = "the ONNX graph keeps a weight in w.bin (present in the current folder): refuse at load time"
    return c


@case("bundle_external_data_encoder_score", "damaged-bundle", "4")
def _(r, d):
    bundle = damaged_bundle(r, d, "external_encoder")
    save(histo((16, 16), 2), d / "in.npz")
    c = _case(["exp2sim", "score", "in.npz", "--model", bundle.name, *_REPEATS], d,
              mentions=[bundle.name, "'onnx_encoder'", "external"])
    c.algorithm = _alg_score(ModelFile=bundle)
    return c


@case("bundle_hdf5_external_storage_deconvolve", "damaged-bundle", "4")
def _(r, d):
    c = _bundle_case(r, d, "hdf5_external_storage", mentions=["w.raw"])
    c.note = "a weight's bytes are in the raw file w.raw (HDF5 external storage), checksum valid"
    return c


@case("bundle_hdf5_external_link_convolve", "damaged-bundle", "4")
def _(r, d):
    return _bundle_case(r, d, "hdf5_external_link", "convolve", mentions=["other.h5"])


@case("bundle_not_onnx_deconvolve", "damaged-bundle", "3")
def _(r, d):
    return _bundle_case(r, d, "not_onnx", mentions=["'onnx'"])


@case("bundle_not_onnx_classify", "damaged-bundle", "3")
def _(r, d):
    bundle = damaged_bundle(r, d, "not_onnx", source="classify_2d")
    save(mosaic(1), d / "m.nxs")
    c = _case(["exp2sim", "classify", "m.nxs", "--model", bundle.name, "--no-domain-check"], d,
              mentions=[bundle.name, "'onnx'"])
    c.algorithm = _alg_classify(ModelFile=bundle)
    return c


@case("bundle_bogus_normalisation_method_convolve", "damaged-bundle", "4")
def _(r, d):
    return _bundle_case(r, d, 'field:normalisation.method="bogus"', "convolve", mentions=["normalisation.method", "bogus"])


@case("bundle_bogus_pad_mode_deconvolve", "damaged-bundle", "4")
def _(r, d):
    return _bundle_case(r, d, 'field:normalisation.pad_mode="wrap"', mentions=["pad_mode", "wrap"])


@case("bundle_negative_halo_deconvolve", "damaged-bundle", "4")
def _(r, d):
    return _bundle_case(r, d, "field:patch.halo=-5", mentions=["patch.halo"])


@case("bundle_direction_contradicts_task_convolve", "damaged-bundle", "4")
def _(r, d):
    return _bundle_case(r, d, 'field:direction="exp2sim"', "convolve", mentions=["direction"])


@case("bundle_bogus_thresholds_classify", "damaged-bundle", "4")
def _(r, d):
    bundle = damaged_bundle(r, d, 'field:thresholds.confident="high"', source="classify_2d")
    save(mosaic(2), d / "m.nxs")
    c = _case(["exp2sim", "classify", "m.nxs", "--model", bundle.name, "--no-domain-check"], d,
              mentions=[bundle.name, "thresholds.confident"])
    c.algorithm = _alg_classify(ModelFile=bundle)
    return c


@case("bundle_unknown_layout_classify", "damaged-bundle", "4")
def _(r, d):
    bundle = damaged_bundle(r, d, 'field:layout="pcsmo-mosaic-v7"', source="classify_2d")
    save(mosaic(3), d / "m.nxs")
    return _case(["exp2sim", "classify", "m.nxs", "--model", bundle.name, "--no-domain-check"], d,
                 mentions=[bundle.name, "layout"])


@case("bundle_bogus_domain_metric_score", "damaged-bundle", "4")
def _(r, d):
    bundle = damaged_bundle(r, d, 'field:domain.metric="cosine"')
    save(histo((16, 16), 4), d / "in.nxs")
    c = _case(["exp2sim", "score", "in.nxs", "--model", bundle.name, *_REPEATS], d,
              mentions=[bundle.name, "domain.metric"])
    c.algorithm = _alg_score(ModelFile=bundle)
    return c


@case("bundle_newer_schema_deconvolve", "damaged-bundle")
def _(r, d):
    return _bundle_case(r, d, "newer_schema", mentions=["upgrade"])


@case("bundle_of_the_wrong_task_convolve", "damaged-bundle")
def _(r, d):
    shutil.copyfile(r.bundle_dir / "deconvolve_2d.exp2sim.h5", d / "dec.exp2sim.h5")
    good(d, "in.nxs")
    c = _case(["exp2sim", "convolve", "in.nxs", "-o", "out.nxs", "--model", "dec.exp2sim.h5", *_Q], d,
              mentions=["dec.exp2sim.h5", "task"])
    c.algorithm = _alg_translate("convolve", histo().signal, model=d / "dec.exp2sim.h5")
    return c


@case("bundle_missing_deconvolve", "missing")
def _(r, d):
    good(d, "in.nxs")
    return _case(["exp2sim", "deconvolve", "in.nxs", "-o", "out.nxs", "--model", "absent.exp2sim.h5", *_Q], d,
                 mentions=["absent.exp2sim.h5"])


@case("bundle_is_a_directory_score", "wrong-type")
def _(r, d):
    (d / "model.exp2sim.h5").mkdir()
    save(histo((16, 16), 5), d / "in.npz")
    return _case(["exp2sim", "score", "in.npz", "--model", "model.exp2sim.h5", *_REPEATS], d,
                 mentions=["model.exp2sim.h5"])


@case("default_bundle_damaged_deconvolve", "damaged-bundle", "3")
def _(r, d):
    models = d / "models"
    models.mkdir()
    damaged_bundle(r, models, "not_onnx", name="deconvolve_2d.exp2sim.h5")
    good(d, "in.npz")
    c = _case(["exp2sim", "deconvolve", "in.npz", "-o", "out.npz", *_Q], d, env={"EXP2SIM_BUNDLE_DIR": str(models)},
              mentions=["deconvolve_2d.exp2sim.h5"])
    return c


@case("deconvolution_model_external_classify", "damaged-bundle", "4")
def _(r, d):
    bundle = damaged_bundle(r, d, "external")
    save(mosaic(4), d / "m.nxs")
    c = _case(["exp2sim", "classify", "m.nxs", "--deconvolve", "--deconvolution-model", bundle.name,
               "--no-domain-check"], d, mentions=[bundle.name, "external"])
    c.algorithm = _alg_classify(Deconvolve=True, DeconvolutionModelFile=bundle)
    return c


@case("domain_model_not_onnx_encoder_classify", "damaged-bundle", "3")
def _(r, d):
    bundle = damaged_bundle(r, d, "not_onnx_encoder", source="convolve_2d")
    save(mosaic(5), d / "m.nxs")
    c = _case(["exp2sim", "classify", "m.nxs", "--domain-model", bundle.name], d,
              mentions=[bundle.name, "'onnx_encoder'"])
    c.algorithm = _alg_classify(CheckDomain=True, DomainModelFile=bundle)
    return c


# ---------------------------------------------------------------- colliding paths
@case("output_is_the_input_deconvolve", "collision", "2")
def _(r, d):
    good(d, "a.nxs")
    return _case(["exp2sim", "deconvolve", "a.nxs", "-o", "a.nxs", "--overwrite", *_Q], d, mentions=["a.nxs"])


@case("output_is_the_input_stream_convolve", "collision", "2")
def _(r, d):
    good(d, "a.h5")
    return _case(["exp2sim", "convolve", "a.h5", "-o", "a.h5", "--stream", "--overwrite", *_Q], d, mentions=["a.h5"])


@case("directory_mode_output_is_another_input_deconvolve", "collision", "2")
def _(r, d):
    good(d, "a.nxs", 1)
    good(d, "a_deconvolved.nxs", 2)
    return _case(["exp2sim", "deconvolve", "a.nxs", "a_deconvolved.nxs", "-o", "./", "--overwrite", *_Q], d,
                 mentions=["a_deconvolved.nxs"], may_create=[d / "a_deconvolved_deconvolved.nxs"],
                 note="a's output is the second input: must be refused before any work (issue: rc 0, input lost)")


@case("directory_mode_output_is_another_input_no_overwrite_convolve", "collision", "2")
def _(r, d):
    good(d, "a.npy", 1)
    good(d, "a_convolved.npy", 2)
    return _case(["exp2sim", "convolve", "a.npy", "a_convolved.npy", "-o", ".", *_Q], d,
                 mentions=["a_convolved.npy"], may_create=[d / "a_convolved_convolved.npy"])


@case("same_input_twice_deconvolve", "collision", "2")
def _(r, d):
    good(d, "a.nxs")
    return _case(["exp2sim", "deconvolve", "a.nxs", "a.nxs", "-o", "out", *_Q], d, mentions=["a.nxs"],
                 may_create=[d / "out", d / "out" / "a_deconvolved.nxs"])


@case("output_symlink_to_the_input_deconvolve", "collision", "2")
def _(r, d):
    good(d, "a.nxs")
    (d / "link.nxs").symlink_to("a.nxs")
    return _case(["exp2sim", "deconvolve", "a.nxs", "-o", "link.nxs", "--overwrite", *_Q], d,
                 mentions=[r"link\.nxs|a\.nxs"])


@case("directory_mode_output_symlink_to_another_input_convolve", "collision", "2")
def _(r, d):
    good(d, "a.nxs", 1)
    good(d, "b.nxs", 2)
    (d / "out").mkdir()
    (d / "out" / "a_convolved.nxs").symlink_to("../b.nxs")
    return _case(["exp2sim", "convolve", "a.nxs", "b.nxs", "-o", "out", "--overwrite", *_Q], d,
                 mentions=[r"a_convolved\.nxs|b\.nxs"], may_create=[d / "out" / "b_convolved.nxs"],
                 note="a's output path resolves to the input b.nxs")


@case("input_symlink_to_the_output_deconvolve", "collision", "2")
def _(r, d):
    good(d, "real.nxs")
    (d / "alias.nxs").symlink_to("real.nxs")
    return _case(["exp2sim", "deconvolve", "alias.nxs", "-o", "real.nxs", "--overwrite", *_Q], d,
                 mentions=["real.nxs"])


@case("existing_output_without_overwrite_deconvolve", "collision", "2")
def _(r, d):
    good(d, "a.nxs", 1)
    good(d, "result.nxs", 2)
    return _case(["exp2sim", "deconvolve", "a.nxs", "-o", "result.nxs", *_Q], d, mentions=["result.nxs", "--overwrite"])


@case("activation_map_is_the_input_classify", "collision", "2")
def _(r, d):
    save(mosaic(1), d / "m.nxs")
    return _case(["exp2sim", "classify", "m.nxs", "--activation-map", "m.nxs", "--no-domain-check"], d,
                 mentions=["m.nxs"], note="the issue: exit 0 and the input replaced by the activation map")


@case("activation_map_existing_file_classify", "collision", "2")
def _(r, d):
    save(mosaic(2), d / "m.nxs")
    good(d, "cam.nxs")
    return _case(["exp2sim", "classify", "m.nxs", "--activation-map", "cam.nxs", "--no-domain-check"], d,
                 mentions=["cam.nxs"], note="an existing file is only replaced with --overwrite")


@case("activation_map_symlink_to_the_input_classify", "collision", "2")
def _(r, d):
    save(mosaic(3), d / "m.npz")
    (d / "cam.npz").symlink_to("m.npz")
    return _case(["exp2sim", "classify", "m.npz", "--activation-map", "cam.npz", "--no-domain-check"], d,
                 mentions=[r"cam\.npz|m\.npz"])


@case("plot_existing_file_score", "collision", "5")
def _(r, d):
    save(histo((16, 16), 2), d / "a.npz")
    (d / "plot.png").write_bytes(b"\x89PNG\r\n\x1a\n an older figure")
    return _case(["exp2sim", "score", "a.npz", "--plot", "plot.png", *_REPEATS], d, mentions=["plot.png"],
                 note="--plot replaced an existing file silently")


@case("plot_is_the_input_score", "collision", "2")
def _(r, d):
    save(histo((16, 16), 3), d / "a.npz")
    return _case(["exp2sim", "score", "a.npz", "--plot", "a.npz", *_REPEATS], d, mentions=["a.npz"])


@case("plot_bad_extension_score", "collision", "5")
def _(r, d):
    save(histo((16, 16), 4), d / "a.npz")
    return _case(["exp2sim", "score", "a.npz", "--plot", "plot.xyz", *_REPEATS], d, mentions=[r"plot\.xyz|\.xyz"],
                 may_create=[], note="rejected only after the full computation; check outputs before computing")


@case("demo_into_a_folder_with_results", "collision", "2")
def _(r, d):
    out = d / "demo"
    out.mkdir()
    for name in ("measured.nxs", "simulated_unconvolved.nxs", "deconvolved.nxs", "convolved.nxs"):
        good(out, name)
    return _case(["exp2sim", "demo", "--output-dir", "demo", "--no-plot", "--repeats", "20"], d,
                 mentions=["demo"], timeout=600,
                 note="the demo replaces earlier results in its folder silently; only --overwrite may replace")


@case("simulate_output_is_a_histogram", "collision", "2")
def _(r, d):
    good(d, "spectrum.h5")
    return _case(["exp2sim-simulate", "--models", "goodenough", "--n", "1", "--representation", "qe_slice",
                  "--bins", "16", "16", "--quiet", "--output", "spectrum.h5"], d, mentions=["spectrum.h5"])


@case("export_output_is_the_checkpoint", "collision", "2")
def _(r, d):
    run = r.checkpoint("normal")
    local = d / "run"
    shutil.copytree(run, local)
    return _case(["exp2sim-train", "export", "run", "--task", "deconvolve", "-o", "run/checkpoint.pt",
                  "--onnx-exporter", "torchscript", "--n-train-features", "50", "--val-pairs", "2", "--quiet"], d,
                 mentions=["checkpoint.pt"], timeout=600)


# ---------------------------------------------------------------- missing / unwritable destinations
@case("output_in_a_missing_nested_folder_deconvolve", "unwritable", "5")
def _(r, d):
    good(d, "a.nxs")
    return _case(["exp2sim", "deconvolve", "a.nxs", "-o", "nowhere/deep/out.nxs", *_Q], d, mentions=["nowhere/deep"],
                 note="the message must name the missing parent folder")


@case("output_in_an_unwritable_folder_deconvolve", "unwritable")
def _(r, d):
    good(d, "a.nxs")
    c = _case(["exp2sim", "deconvolve", "a.nxs", "-o", "locked/out.nxs", *_Q], d, mentions=["locked"])
    make_unwritable(d / "locked", c)
    return c


@case("directory_mode_into_an_unwritable_folder_convolve", "unwritable")
def _(r, d):
    good(d, "a.nxs", 1)
    good(d, "b.npz", 2)
    c = _case(["exp2sim", "convolve", "a.nxs", "b.npz", "-o", "locked/", *_Q], d, mentions=["locked"])
    make_unwritable(d / "locked", c)
    return c


@case("output_under_a_regular_file_deconvolve", "unwritable")
def _(r, d):
    good(d, "a.nxs")
    text(d / "notes.txt")
    return _case(["exp2sim", "deconvolve", "a.nxs", "-o", "notes.txt/out.nxs", *_Q], d, mentions=["notes.txt"])


@case("stream_output_in_an_unwritable_folder_convolve", "unwritable")
def _(r, d):
    good(d, "a.nxs")
    c = _case(["exp2sim", "convolve", "a.nxs", "-o", "locked/out.nxs", "--stream", *_Q], d, mentions=["locked"])
    make_unwritable(d / "locked", c)
    return c


@case("activation_map_in_an_unwritable_folder_classify", "unwritable")
def _(r, d):
    save(mosaic(6), d / "m.nxs")
    c = _case(["exp2sim", "classify", "m.nxs", "--activation-map", "locked/cam.nxs", "--no-domain-check"], d,
              mentions=["locked"])
    make_unwritable(d / "locked", c)
    return c


@case("activation_map_in_a_missing_nested_folder_classify", "unwritable", "5")
def _(r, d):
    save(mosaic(7), d / "m.nxs")
    return _case(["exp2sim", "classify", "m.nxs", "--activation-map", "nowhere/deep/cam.nxs", "--no-domain-check"], d,
                 mentions=["nowhere/deep"], note="the message must name the missing parent folder")


def _temporary_of_a_killed_writer(target: Path) -> Path:
    """The temporary file a writer killed mid-way leaves: reserved by a process that is gone."""
    code = ("import sys; from pathlib import Path; from mantid_exp2sim.io._atomic import reserve_temp; "
            "t = reserve_temp(Path(sys.argv[1])); t.write_bytes(b'\\x89HDF\\r\\n\\x1a\\n' + bytes(512)); print(t)")
    done = subprocess.run([sys.executable, "-c", code, str(target.absolute())], capture_output=True, text=True,
                          check=True)
    return Path(done.stdout.strip())


@case("stale_stream_temporary_removed_by_a_rerun_convolve", "interrupted", "5")
def _(r, d):
    good(d, "big.h5")
    stale = _temporary_of_a_killed_writer(d / "out.h5")
    return _case(["exp2sim", "convolve", "big.h5", "-o", "out.h5", "--stream", *_Q], d, expect="success",
                 expected_outputs=[d / "out.h5"], stale=[stale],
                 note="what a SIGKILL during --stream leaves; a successful rerun must remove it")


@case("plot_in_a_missing_folder_score", "unwritable", "5")
def _(r, d):
    save(histo((16, 16), 6), d / "a.npz")
    return _case(["exp2sim", "score", "a.npz", "--plot", "nowhere/plot.png", *_REPEATS], d, mentions=["nowhere"])


@case("simulate_output_in_an_unwritable_folder", "unwritable", "3")
def _(r, d):
    c = _case(["exp2sim-simulate", "--models", "goodenough", "--n", "1", "--representation", "qe_slice", "--bins",
               "16", "16", "--quiet", "--output", "locked/s.h5"], d, mentions=["locked"])
    make_unwritable(d / "locked", c)
    return c


@case("simulate_output_is_an_existing_folder", "unwritable", "5")
def _(r, d):
    (d / "results").mkdir()
    return _case(["exp2sim-simulate", "--models", "goodenough", "--n", "1", "--representation", "qe_slice", "--bins",
                  "16", "16", "--quiet", "--output", "results"], d, mentions=["results"], avoid=["(?i)delet"],
                 note="the message must not suggest deleting the folder")


@case("simulate_output_under_a_regular_file", "unwritable")
def _(r, d):
    text(d / "notes.txt")
    return _case(["exp2sim-simulate", "--models", "goodenough", "--n", "1", "--representation", "qe_slice", "--bins",
                  "16", "16", "--quiet", "--output", "notes.txt/s.h5"], d, mentions=["notes.txt"])


@case("demo_output_dir_is_a_file", "unwritable", "3")
def _(r, d):
    text(d / "demo")
    return _case(["exp2sim", "demo", "--output-dir", "demo", "--no-plot", "--repeats", "20"], d, mentions=["demo"],
                 timeout=600)


@case("demo_output_dir_is_unwritable", "unwritable", "3")
def _(r, d):
    c = _case(["exp2sim", "demo", "--output-dir", "locked", "--no-plot", "--repeats", "20"], d, mentions=["locked"],
              timeout=600)
    make_unwritable(d / "locked", c)
    return c


@case("demo_output_dir_inside_an_unwritable_folder", "unwritable", "3")
def _(r, d):
    c = _case(["exp2sim", "demo", "--output-dir", "locked/demo", "--no-plot", "--repeats", "20"], d,
              mentions=["locked"], timeout=600)
    make_unwritable(d / "locked", c)
    return c


@case("export_output_in_an_unwritable_folder", "unwritable")
def _(r, d):
    run = r.checkpoint("normal")
    c = _case(["exp2sim-train", "export", str(run), "--task", "deconvolve", "-o", "locked/b.exp2sim.h5",
               "--onnx-exporter", "torchscript", "--n-train-features", "50", "--val-pairs", "2", "--quiet"], d,
              mentions=["locked"], timeout=600, watch=[run.parent])
    make_unwritable(d / "locked", c)
    return c


@case("export_output_is_an_existing_folder", "unwritable")
def _(r, d):
    run = r.checkpoint("normal")
    (d / "b.exp2sim.h5").mkdir()
    return _case(["exp2sim-train", "export", str(run), "--task", "convolve", "-o", "b.exp2sim.h5",
                  "--onnx-exporter", "torchscript", "--n-train-features", "50", "--val-pairs", "2", "--quiet"], d,
                 mentions=["b.exp2sim.h5"], timeout=600, watch=[run.parent])


# ---------------------------------------------------------------- simulator and training arguments
@case("simulate_model_reference_is_called", "wrong-type", "5")
def _(r, d):
    return _case(["exp2sim-simulate", "--models", "tempfile:mkdtemp", "--n", "1", "--representation", "qe_slice",
                  "--bins", "16", "16", "--quiet", "--output", "s.h5"], d, env={"TMPDIR": str(d)},
                 mentions=["tempfile:mkdtemp"],
                 note="tempfile.mkdtemp() creates a folder here when called: the reference must be checked first")


@case("simulate_mask_empty_file", "empty")
def _(r, d):
    empty(d / "mask.npy")
    return _case(["exp2sim-simulate", "--models", "goodenough", "--n", "1", "--representation", "qe_slice",
                  "--bins", "16", "16", "--quiet", "--mask", "mask.npy", "--output", "s.h5"], d, mentions=["mask.npy"])


@case("simulate_mask_wrong_shape", "wrong-shape")
def _(r, d):
    np.save(d / "mask.npy", np.ones((3, 3)))
    return _case(["exp2sim-simulate", "--models", "goodenough", "--n", "1", "--representation", "qe_slice",
                  "--bins", "16", "16", "--quiet", "--mask", "mask.npy", "--output", "s.h5"], d, mentions=["mask"])


@case("simulate_negative_sample_count", "negative")
def _(r, d):
    return _case(["exp2sim-simulate", "--models", "goodenough", "--n", "-3", "--representation", "qe_slice",
                  "--bins", "16", "16", "--quiet", "--output", "s.h5"], d, mentions=["-3"])


@case("simulate_missing_resolution_tables", "missing")
def _(r, d):
    return _case(["exp2sim-simulate", "--models", "goodenough", "--n", "1", "--representation", "qe_slice",
                  "--bins", "16", "16", "--quiet", "--resolution", "tables:absent", "--output", "s.h5"], d,
                 mentions=["absent"])


@case("export_checkpoint_missing", "missing")
def _(r, d):
    return _case(["exp2sim-train", "export", "absent_run", "--task", "deconvolve", "-o", "b.exp2sim.h5", "--quiet"], d,
                 mentions=["absent_run"])


@case("export_checkpoint_empty", "empty")
def _(r, d):
    empty(d / "checkpoint.pt")
    return _case(["exp2sim-train", "export", "checkpoint.pt", "--task", "deconvolve", "-o", "b.exp2sim.h5",
                  "--quiet"], d, mentions=["checkpoint.pt"])


@case("export_checkpoint_is_text", "wrong-type")
def _(r, d):
    text(d / "checkpoint.pt")
    return _case(["exp2sim-train", "export", "checkpoint.pt", "--task", "deconvolve", "-o", "b.exp2sim.h5",
                  "--quiet"], d, mentions=["checkpoint.pt"])


@case("export_checkpoint_is_a_pickle", "wrong-type")
def _(r, d):
    with open(d / "checkpoint.pt", "wb") as fh:
        pickle.dump({"format": "exp2sim-gan-checkpoint", "payload": _MakesADirectory()}, fh)
    return _case(["exp2sim-train", "export", "checkpoint.pt", "--task", "deconvolve", "-o", "b.exp2sim.h5",
                  "--quiet"], d, mentions=["checkpoint.pt"],
                 note="a pickle that runs os.mkdir('unpickled') when loaded: checkpoints load with weights_only")


@case("export_checkpoint_truncated", "truncated")
def _(r, d):
    run = r.checkpoint("normal")
    truncated(run / "checkpoint.pt", d / "checkpoint.pt")
    return _case(["exp2sim-train", "export", "checkpoint.pt", "--task", "deconvolve", "-o", "b.exp2sim.h5",
                  "--quiet"], d, mentions=["checkpoint.pt"])


@case("export_data_set_too_small", "wrong-shape", "5")
def _(r, d):
    run = r.checkpoint("small")
    return _case(["exp2sim-train", "export", str(run), "--task", "deconvolve", "-o", "b.exp2sim.h5",
                  "--onnx-exporter", "torchscript", "--val-pairs", "2", "--quiet"], d, timeout=600,
                 watch=[run.parent], mentions=["sample"],
                 note="too few training samples for the reference bank: check before the export work")


# ======================================================================== snapshots
def snapshot(roots: Sequence[Path]) -> dict[str, tuple]:
    """Every entry under ``roots`` (hidden ones too, links not followed): path -> identity.

    Files are identified by their SHA-256, links by their target, folders by being folders.
    """
    entries: dict[str, tuple] = {}
    for root in roots:
        root = Path(root)
        if not root.exists():
            continue
        for folder, dirs, files in os.walk(root, followlinks=False):
            for name in dirs + files:
                p = Path(folder) / name
                key = str(p)
                if p.is_symlink():
                    entries[key] = ("link", os.readlink(p))
                elif p.is_dir():
                    entries[key] = ("dir",)
                else:
                    try:
                        entries[key] = ("file", hashlib.sha256(p.read_bytes()).hexdigest())
                    except OSError as exc:
                        entries[key] = ("unreadable", exc.errno)
    return entries


def _diff(before: dict[str, tuple], after: dict[str, tuple]) -> tuple[list[str], list[str]]:
    changed = sorted(k for k, v in before.items() if after.get(k) != v)
    new = sorted(set(after) - set(before))
    return changed, new


# ======================================================================== running
@dataclass
class CliResult:
    """What a command did: exit status, output, and whether it ended in a traceback or timed out."""

    returncode: int
    stdout: str
    stderr: str
    traceback: bool
    timed_out: bool = False
    seconds: float = 0.0


def _env(case_: Case) -> dict[str, str]:
    """The subprocess environment: this one, plus the case's, with the ``mantid_exp2sim`` this
    process imports first on ``PYTHONPATH`` (the command runs the code under test)."""
    import mantid_exp2sim

    env = dict(os.environ)
    package_root = str(Path(mantid_exp2sim.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([package_root, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    env.update({"OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1"})
    env.update(case_.env)
    return env


def run_subprocess(case_: Case) -> CliResult:
    """Run the case's command line with the installed console script (found on PATH)."""
    exe = shutil.which(case_.argv[0])
    if exe is None:
        raise RuntimeError(f"the command {case_.argv[0]!r} is not installed (pip install -e .)")
    t0 = time.perf_counter()
    try:
        p = subprocess.run([exe, *case_.argv[1:]], cwd=case_.cwd, env=_env(case_), capture_output=True, text=True,
                           timeout=case_.timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return CliResult(-9, out, err, "Traceback" in err, True, time.perf_counter() - t0)
    return CliResult(p.returncode, p.stdout, p.stderr, "Traceback (most recent call last)" in p.stderr,
                     seconds=time.perf_counter() - t0)


def run_in_process(case_: Case) -> CliResult:
    """Call the command's ``main(argv)`` in this process, as the console script would.

    The working folder, the environment, ``tempfile``'s folder, warnings (the interpreter's
    defaults, not a test suite's ``error``) and logging (warnings to stderr, as Python's
    last-resort handler prints them) are those of a fresh command and are restored afterwards.
    An exception escaping ``main`` is a traceback; ``SystemExit`` gives the exit status.
    """
    import importlib
    import tempfile

    module, _, func = ENTRY_POINTS[case_.argv[0]].partition(":")
    main = getattr(importlib.import_module(module), func)
    out, err = io.StringIO(), io.StringIO()
    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    saved_tempdir = tempfile.tempdir
    handler = logging.StreamHandler(err)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    crashed = False
    t0 = time.perf_counter()
    try:
        os.environ.update({"MPLBACKEND": "Agg", **case_.env})
        tempfile.tempdir = case_.env.get("TMPDIR")
        os.chdir(case_.cwd)
        root.addHandler(handler)
        with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            warnings.resetwarnings()
            warnings.simplefilter("default")
            warnings.showwarning = _print_warning  # to this stderr, also under a test runner's recorder
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.simplefilter("ignore", category)
            try:
                rc = main(case_.argv[1:])
                rc = 0 if rc is None else int(rc)
            except SystemExit as exc:
                rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                if exc.code not in (None, 0) and not isinstance(exc.code, int):
                    print(exc.code, file=sys.stderr)
            except BaseException:  # noqa: BLE001 - what would reach the user as a traceback
                crashed = True
                rc = 1
                traceback.print_exc(file=err)
    finally:
        root.removeHandler(handler)
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        tempfile.tempdir = saved_tempdir
    text_err = err.getvalue()
    return CliResult(rc, out.getvalue(), text_err, crashed or "Traceback (most recent call last)" in text_err,
                     seconds=time.perf_counter() - t0)


def _print_warning(message: Any, category: type, filename: str, lineno: int, file: Any = None,
                   line: str | None = None) -> None:
    """Print a warning as the interpreter does by default (to the current ``sys.stderr``)."""
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


_USAGE_CONTINUATION = re.compile(r"^\s")


def message_lines(stderr: str) -> list[str]:
    """The message lines of stderr: cleared progress bars and argparse's usage block removed."""
    lines: list[str] = []
    in_usage = False
    for raw in stderr.splitlines():
        line = raw.rsplit("\r", 1)[-1].rstrip()  # a tqdm bar ends with the line cleared
        if not line.strip():
            in_usage = False
            continue
        if line.startswith("usage:"):
            in_usage = True
            continue
        if in_usage and _USAGE_CONTINUATION.match(line):
            continue
        in_usage = False
        lines.append(line)
    return lines


def check_cli(case_: Case, before: dict[str, tuple], after: dict[str, tuple], res: CliResult) -> dict[str, str]:
    """The properties the run broke: ``{property: explanation}`` (empty when the case passed)."""
    broken: dict[str, str] = {}
    if res.timed_out:
        broken["timeout"] = f"still running after {case_.timeout:g} s"
    if case_.expect == "error" and res.returncode == 0:
        broken["exit_status"] = "exit status 0 for a bad input"
    elif case_.expect != "error" and res.returncode != 0:
        broken["exit_status"] = f"exit status {res.returncode}; the input is valid and must run"
    if res.returncode < 0 and not res.timed_out:
        broken["exit_status"] = f"killed by signal {-res.returncode}"
    if res.traceback:
        last = [ln for ln in res.stderr.strip().splitlines() if ln.strip()][-1:] or ["?"]
        broken["traceback"] = f"traceback ending in: {last[0][:200]}"
    lines = message_lines(res.stderr)
    prog = case_.argv[0]
    if not res.traceback:
        foreign = [ln for ln in lines if not ln.startswith(prog)]
        if case_.expect == "error" and not lines:
            broken["message"] = "no message on stderr"
        elif foreign:
            broken["message"] = f"a stderr line that is not a one-line message of {prog}: {foreign[0][:200]!r}"
        else:
            missing = [m for m in case_.mentions if m not in res.stderr and not re.search(m, res.stderr)]
            avoided = [a for a in case_.avoid if re.search(a, res.stderr)]
            if missing and case_.expect == "error":
                broken["message"] = f"the message does not name {', '.join(map(repr, missing))}: {lines[0][:300]!r}"
            elif avoided:
                broken["message"] = f"the message says {avoided[0]!r} (names neither the problem nor the fix): " \
                    f"{lines[0][:300]!r}"
    if case_.expect == "warning" and not any(case_.warning and re.search(case_.warning, ln) for ln in lines):
        broken["warning_missing"] = f"no warning line matching {case_.warning!r} on stderr"
    stale = {str(p) for p in case_.stale}
    changed, new = _diff(before, after)
    changed = [p for p in changed if p not in stale]
    if changed:
        broken["inputs_modified"] = "changed or removed: " + ", ".join(_rel(case_, p) for p in changed[:5])
    allowed = {str(p) for p in case_.expected_outputs + case_.may_create}
    left = [p for p in new if p not in allowed] + sorted(p for p in stale if p in after)
    if left:
        broken["partial_outputs_left"] = "left: " + ", ".join(_rel(case_, p) for p in left[:5])
    missing_out = [p for p in case_.expected_outputs if str(p) not in after]
    missing_stdout = [s for s in case_.expected_stdout if s not in res.stdout]
    if missing_out or missing_stdout:
        what = [_rel(case_, str(p)) for p in missing_out] + [f"stdout {s!r}" for s in missing_stdout]
        key = "batches_stopped_early" if case_.category == "batch" or case_.expected_stdout else "exit_status"
        if case_.expect != "error":
            key = "exit_status"
        broken.setdefault(key, "good input not processed: " + ", ".join(what))
    return broken


def _rel(case_: Case, path: str) -> str:
    try:
        return str(Path(path).relative_to(case_.cwd))
    except ValueError:
        return path


# ======================================================================== algorithms
@dataclass
class AlgorithmResult:
    """What an algorithm call did."""

    error: BaseException | None
    warnings: list[str]
    new_workspaces: list[str]
    inputs_changed: list[str]
    seconds: float = 0.0


def run_algorithm(call: AlgorithmCall, case_: Case) -> AlgorithmResult:
    """Create the workspaces, run the algorithm (rethrowing, as ``simpleapi`` does) and record
    its error, its logged warnings, new workspaces and whether the inputs changed."""
    from mantid import api, simpleapi

    import mantid_exp2sim  # noqa: F401 - registers the algorithms

    saved_env = dict(os.environ)
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect(level=logging.WARNING)
    mantid_log = logging.getLogger("mantid")
    t0 = time.perf_counter()
    try:
        os.environ.update(case_.env)
        for name, (signal, dims) in call.workspaces.items():
            signal = np.asarray(signal, dtype=float)
            extents: list[float] = []
            for dim in dims:
                extents += [dim[3], dim[4]]
            simpleapi.CreateMDHistoWorkspace(
                SignalInput=signal.ravel(order="F"), ErrorInput=np.ones(signal.size), Dimensionality=signal.ndim,
                Extents=extents, NumberOfBins=list(signal.shape), Names=[x[0] for x in dims],
                Units=[x[1] for x in dims], Frames=[x[2] for x in dims], OutputWorkspace=name)
        before_names = set(api.AnalysisDataService.getObjectNames())
        copies = {n: (np.array(api.mtd[n].getSignalArray(), copy=True), np.array(api.mtd[n].getErrorSquaredArray(),
                                                                                  copy=True)) for n in call.workspaces}
        mantid_log.addHandler(handler)
        error: BaseException | None = None
        try:
            alg = api.AlgorithmManager.create(call.algorithm)
            alg.initialize()
            alg.setRethrows(True)
            for key, value in call.properties.items():
                alg.setProperty(key, value)
            alg.execute()
        except (RuntimeError, ValueError) as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - anything else is a defect, recorded as such
            error = exc
        finally:
            mantid_log.removeHandler(handler)
        new = sorted(set(api.AnalysisDataService.getObjectNames()) - before_names)
        changed = []
        for n, (sig, err2) in copies.items():
            ws = api.mtd[n] if n in api.AnalysisDataService.getObjectNames() else None
            if ws is None or not (np.array_equal(ws.getSignalArray(), sig, equal_nan=True)
                                  and np.array_equal(ws.getErrorSquaredArray(), err2, equal_nan=True)):
                changed.append(n)
        return AlgorithmResult(error, [r.getMessage() for r in records], new, changed, time.perf_counter() - t0)
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        api.AnalysisDataService.clear()


def _expected_error(exc: BaseException, *, top: bool) -> bool:
    """An error the package raises on purpose: its own types, builtin ValueError/OSError (with
    its messages), or, as the outermost error, the framework's RuntimeError. Anything else (an
    EOFError, zipfile.BadZipFile, MemoryError, KeyError, an ONNX Runtime or h5py error...) escaped
    the package's checks: with real Mantid the user would see a Python traceback."""
    module = type(exc).__module__
    if module.startswith("mantid_exp2sim"):
        return True
    if module != "builtins":
        return False
    if top and type(exc) is RuntimeError:
        return True
    return isinstance(exc, (ValueError, OSError)) and not isinstance(exc, UnicodeError)


def check_algorithm(case_: Case, before: dict[str, tuple], after: dict[str, tuple], res: AlgorithmResult) -> dict[str, str]:
    """The properties the algorithm call broke (``{}`` when it passed)."""
    call = case_.algorithm
    assert call is not None
    broken: dict[str, str] = {}
    if call.expect == "error":
        if res.error is None:
            broken["exit_status"] = f"{call.algorithm} ran without an error"
        else:
            chain, exc = [], res.error
            while exc is not None:
                chain.append(exc)
                exc = exc.__cause__ or exc.__context__
            unexpected = [e for e in chain if not _expected_error(e, top=e is chain[0])]
            if unexpected:
                bad = unexpected[0]
                broken["traceback"] = f"an unexpected {type(bad).__module__}.{type(bad).__name__}: {str(bad)[:200]}"
            msg = str(res.error)
            if not msg.strip() or "Traceback" in msg:
                broken["message"] = f"error message {msg[:200]!r}"
        if res.new_workspaces:
            broken["partial_outputs_left"] = "new workspaces: " + ", ".join(res.new_workspaces)
    else:
        if res.error is not None:
            broken["exit_status"] = f"{type(res.error).__name__}: {str(res.error)[:200]}"
        if not any(call.warning and re.search(call.warning, w) for w in res.warnings):
            broken["warning_missing"] = f"no logged warning matching {call.warning!r} (logged: {res.warnings[:3]})"
    if res.inputs_changed:
        broken["inputs_modified"] = "input workspaces changed: " + ", ".join(res.inputs_changed)
    changed, new = _diff(before, after)
    if changed:
        broken["inputs_modified"] = "files changed or removed: " + ", ".join(_rel(case_, p) for p in changed[:5])
    if new:
        broken["partial_outputs_left"] = "new files: " + ", ".join(_rel(case_, p) for p in new[:5])
    return broken


# ======================================================================== summary
def summarise(outcomes: Sequence[dict[str, Any]], unavailable: dict[str, str] | None = None) -> dict[str, Any]:
    """The benchmark's JSON from per-case outcomes ``{"name", "broken": {...}, "algorithm": {...} or None}``."""
    counts = {p: 0 for p in PROPERTIES}
    failures, details = [], {}
    alg_calls = alg_failures = 0
    for o in outcomes:
        broken = dict(o["broken"])
        alg = o.get("algorithm")
        if alg is not None:
            alg_calls += 1
            if alg:
                alg_failures += 1
                for key, why in alg.items():
                    broken.setdefault(key, f"algorithm: {why}")
        for key in broken:
            counts[key] += 1
        if broken:
            failures.append(o["name"])
            details[o["name"]] = broken
    return {
        "cases": len(outcomes),
        "tracebacks": counts["traceback"],
        "inputs_modified": counts["inputs_modified"],
        "partial_outputs_left": counts["partial_outputs_left"],
        "batches_stopped_early": counts["batches_stopped_early"],
        "wrong_exit_status": counts["exit_status"],
        "unclear_messages": counts["message"],
        "warnings_missing": counts["warning_missing"],
        "timeouts": counts["timeout"],
        "algorithm_calls": alg_calls,
        "algorithm_failures": alg_failures,
        "failures": failures,
        "failure_details": details,
        "unavailable": dict(unavailable or {}),
    }
