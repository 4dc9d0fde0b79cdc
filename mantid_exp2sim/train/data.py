"""Training data: sample sources, the GAN's unpaired split, the classifier's labelled spectra.

Sources (each yields whole samples, float32, NaN = masked bin):

* simulator data sets (``exp2sim-simulate`` HDF5, read by
  :class:`mantid_exp2sim.simulate.dataset.SpectraDataset`): ``convolved``, ``unconvolved`` or
  (``exp2sim-simulate --measured-like`` files) ``measured_like`` samples of one or more spin
  models. ``measured_like`` samples are read in model units: the processing chain's output
  divided by the draw's own per-Ei ``scale`` (:meth:`SpectraDataset.ei_scale`), which is what
  ``benchmarks/bench_translate.py`` feeds the generators (``measured_like_mosaic``) and what
  ``convolved``/``unconvolved`` are in. The networks see every sample divided by its own RMS
  (:func:`mantid_exp2sim.train.patches.normalised_input`, as ``translate`` does), so only the
  *relative* per-Ei scales matter: they are divided out, counting noise, background residue,
  zeros, clipping and the measured mask stay;
* user HDF5 arrays ``file.h5:/path/to/dataset`` holding ``(N, *shape)`` (or one sample);
* ``.npy`` arrays ``(N, *shape)`` (or one sample);
* Mantid SaveMD files (``.nxs``; one MDHistoWorkspace per file, read with
  :func:`mantid_exp2sim.io.load_histogram`), or a folder of them.

Unpaired by construction: when domains A and B come from the same simulator file, the sample
indices are split three ways with a seeded permutation: a held-out set (both sides kept, as
*paired* validation data) and two disjoint training halves, one per domain, so no training
sample of A has its counterpart in B. With ``paired`` both domains train on the same indices
(needed by the paired loss term ``lambda_pair``, see :mod:`mantid_exp2sim.train.gan`). Patches are cut from the samples by
:class:`mantid_exp2sim.train.patches.PatchSampler`.

The classifier reads :class:`LabelledSpectra` (every model of the data sets is a class), split
by :func:`stratified_split` and normalised per sample by :func:`normalised_batch`.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputDataError, format_error

__all__ = [
    "Source",
    "ArraySource",
    "SimulatorSource",
    "HistogramSource",
    "ConcatSource",
    "open_source",
    "open_domain",
    "DomainData",
    "TrainingData",
    "prepare_data",
    "data_from_config",
    "LabelledSpectra",
    "stratified_split",
    "normalised_batch",
]


class Source:
    """A read-only, indexable collection of samples (NaN = masked)."""

    name: str = ""

    def __len__(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def read(self, index: int) -> np.ndarray:  # pragma: no cover - interface
        """Sample ``index`` as a float32 array (a copy the caller may modify)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """JSON-safe description for manifests and checkpoints."""
        return {"name": self.name, "samples": len(self)}

    def _check_index(self, index: int) -> int:
        i = int(index)
        if not 0 <= i < len(self):
            raise IndexError(f"sample index {index} outside 0..{len(self) - 1} of {self.name}")
        return i


class ArraySource(Source):
    """Samples from an in-memory or memory-mapped array ``(N, *shape)``.

    Parameters
    ----------
    array
        ``(N, *shape)`` numbers, NaN = masked.
    name
        Description for logs.
    mask
        Optional boolean ``shape`` array (True = masked) applied to every sample.
    """

    def __init__(self, array: Any, name: str = "array", mask: np.ndarray | None = None):
        self.array = array
        self.name = name
        self.mask = None if mask is None else np.asarray(mask, dtype=bool)
        if len(array.shape) < 2:
            raise InputDataError(
                format_error(
                    f"Training data '{name}' has too few axes",
                    reason=f"shape {tuple(array.shape)}; expected (N, *spatial)",
                )
            )

    def __len__(self) -> int:
        return int(self.array.shape[0])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Spatial shape of every sample."""
        return tuple(int(s) for s in self.array.shape[1:])

    def read(self, index: int) -> np.ndarray:
        x = np.array(self.array[self._check_index(index)], dtype=np.float32, copy=True)
        if self.mask is not None:
            x[self.mask] = np.nan
        return x

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "type": "array", "samples": len(self), "shape": list(self.sample_shape)}


class SimulatorSource(Source):
    """One kind (``convolved``/``unconvolved``/``measured_like``) of an ``exp2sim-simulate`` data set.

    A thin wrapper of :class:`mantid_exp2sim.simulate.dataset.SpectraDataset`, which reads the
    format (models in label order, the first ``complete`` rows, the coverage ``mask`` applied;
    see its notes). Samples of several models are concatenated in the order of ``models``
    (default: the file's models in label order, then by name). ``measured_like`` samples are
    divided by their per-Ei scale (model units; see the module docstring).
    """

    def __init__(self, path: str | os.PathLike, kind: str, models: Sequence[str] | None = None):
        from ..simulate.dataset import SpectraDataset

        self.path = Path(path)
        self.kind = kind
        self.dataset = SpectraDataset(self.path, kind, models)
        self.name = f"{self.path.name}[{kind}]"
        if len(self) == 0:
            raise InputDataError(
                format_error(f"'{self.path}' holds no complete samples", fix="let exp2sim-simulate finish")
            )

    @property
    def models(self) -> list[str]:
        """The models read, in index order."""
        return self.dataset.models

    @property
    def counts(self) -> list[int]:
        """Samples of each model, in index order."""
        return list(self.dataset.counts.values())

    @property
    def representation(self) -> str:
        """The data set's representation (``mosaic``, ``volume``, ...)."""
        return self.dataset.representation

    @property
    def mask(self) -> np.ndarray | None:
        """The shared coverage mask (True = masked), or None."""
        return self.dataset.mask

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Spatial shape of every sample."""
        return self.dataset.shape

    def locate(self, index: int) -> tuple[str, int]:
        """(model name, row) of global sample ``index``."""
        return self.dataset.locate(self._check_index(index))

    def read(self, index: int) -> np.ndarray:
        i = self._check_index(index)
        x = self.dataset.read(i)
        if self.kind == "measured_like":
            x /= self.dataset.ei_scale(i).reshape((-1,) + (1,) * (x.ndim - 1))
        return x

    def with_kind(self, kind: str) -> "SimulatorSource":
        """The same file and models, another kind (indices pair up)."""
        return SimulatorSource(self.path, kind, self.models)

    def axes(self) -> list[dict]:
        """The file's axis descriptions (``Axis.to_dict`` dicts), or [] when absent."""
        return self.dataset.attribute("axes") or []

    def same_file(self, other: "SimulatorSource") -> bool:
        """True when both read the same file and models (so indices pair up)."""
        return self.path.resolve() == other.path.resolve() and self.models == other.models

    def describe(self) -> dict[str, Any]:
        ds = self.dataset
        return {
            "name": self.name,
            "type": "exp2sim-dataset",
            "path": str(self.path),
            "kind": self.kind,
            "representation": self.representation,
            "models": list(self.models),
            "samples_per_model": self.counts,
            "shape": list(self.sample_shape),
            "seed": ds.seed,
            "layout": self.layout(),
            "settings": ds.attribute("settings"),
            "metadata": self.metadata(),
            "resolution": ds.attribute("resolution"),
        }

    def metadata(self) -> dict[str, Any]:
        """The file's ``metadata`` attribute (JSON), or {} when absent."""
        return dict(self.dataset.metadata)

    def layout(self) -> str | None:
        """Layout tag (e.g. ``pcsmo-mosaic-v1``) when the file records one."""
        return self.dataset.layout


class HistogramSource(Source):
    """Samples from SaveMD ``.nxs`` files (one MDHistoWorkspace each), held in memory."""

    def __init__(self, paths: Sequence[str | os.PathLike]):
        from .. import io as exp2sim_io

        loader = getattr(exp2sim_io, "load_histogram", None)
        if loader is None:
            raise InputDataError(
                format_error(
                    "Reading SaveMD files needs mantid_exp2sim.io.load_histogram",
                    reason="that function is not available in this installation",
                    fix="convert the workspaces to an HDF5 array (file.h5:/dataset) instead",
                )
            )
        self.paths = [Path(p) for p in paths]
        self.samples = []
        for p in self.paths:
            histo = loader(p)
            self.samples.append(np.asarray(histo.signal, dtype=np.float32))
        self.name = self.paths[0].name if len(self.paths) == 1 else f"{len(self.paths)} SaveMD files"

    def __len__(self) -> int:
        return len(self.samples)

    def read(self, index: int) -> np.ndarray:
        return self.samples[self._check_index(index)].copy()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "type": "savemd", "paths": [str(p) for p in self.paths], "samples": len(self)}


class ConcatSource(Source):
    """Several sources of one domain, indexed one after another."""

    def __init__(self, sources: Sequence[Source]):
        self.sources = list(sources)
        self.offsets = np.cumsum([0] + [len(s) for s in self.sources])
        self.name = " + ".join(s.name for s in self.sources)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def read(self, index: int) -> np.ndarray:
        i = self._check_index(index)
        k = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return self.sources[k].read(i - int(self.offsets[k]))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "type": "concat", "parts": [s.describe() for s in self.sources]}


def open_source(spec: str, kind: str, models: Sequence[str] | None = None) -> Source:
    """Open one source from its command-line spec.

    Parameters
    ----------
    spec
        ``sim.h5`` (simulator data set), ``file.h5:/dataset``, ``file.npy``, ``ws.nxs``, a
        folder of ``.nxs`` files or a glob pattern of ``.nxs`` files.
    kind
        Which side of a simulator data set to read (``convolved``/``unconvolved``/``measured_like``).
    models
        Spin models to use from a simulator data set (default all).
    """
    suffix_sep = ".hdf5:" if ".hdf5:" in spec else ".h5:"
    path_part, _, inner = spec.partition(suffix_sep)
    if inner:
        import h5py

        path = Path(path_part + suffix_sep[:-1])
        _require_file(path, spec)
        f = h5py.File(path, "r")
        key = inner if inner.startswith("/") else "/" + inner
        if key not in f or not isinstance(f[key], h5py.Dataset):
            raise InputDataError(
                format_error(
                    f"HDF5 dataset '{key}' not found in '{path}'",
                    reason=f"top-level entries: {sorted(f.keys())}",
                    fix="give file.h5:/path/to/dataset of an (N, *shape) array",
                )
            )
        ds = f[key]
        arr = ds if ds.ndim >= 2 else None
        if arr is None:
            raise InputDataError(format_error(f"HDF5 dataset '{key}' must have >= 2 axes", reason=f"shape {ds.shape}"))
        return ArraySource(arr, name=f"{path.name}:{key}")
    if any(ch in spec for ch in "*?["):
        files = sorted(glob.glob(spec))
        if not files:
            raise InputDataError(format_error(f"No file matches '{spec}'", fix="check the pattern"))
        return HistogramSource(files)
    path = Path(spec)
    if path.is_dir():
        files = sorted(path.glob("*.nxs"))
        if not files:
            raise InputDataError(
                format_error(f"Folder '{path}' holds no .nxs files", fix="point to SaveMD files or an HDF5 data set")
            )
        return HistogramSource(files)
    _require_file(path, spec)
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        import h5py

        from ..simulate.dataset import is_dataset_file

        if is_dataset_file(path):
            return SimulatorSource(path, kind, models)
        with h5py.File(path, "r") as f:
            datasets = [k for k, v in f.items() if isinstance(v, h5py.Dataset)]
        if len(datasets) == 1:
            return open_source(f"{path}:/{datasets[0]}", kind, models)
        raise InputDataError(
            format_error(
                f"'{path}' is neither an exp2sim-simulate data set nor a file with one dataset",
                reason=f"top-level datasets: {datasets}",
                fix="name the array: file.h5:/dataset",
            )
        )
    if suffix == ".npy":
        arr = np.load(path, mmap_mode="r")
        if arr.ndim < 2:
            raise InputDataError(format_error(f"'{path}' must hold an (N, *shape) array", reason=f"shape {arr.shape}"))
        return ArraySource(arr, name=path.name)
    if suffix == ".nxs":
        return HistogramSource([path])
    raise InputDataError(
        format_error(
            f"Unsupported training data file '{path}'",
            reason=f"suffix {suffix!r}; allowed: .h5 (simulator or file.h5:/dataset), .npy, .nxs",
        )
    )


def _require_file(path: Path, spec: str) -> None:
    if not path.is_file():
        raise InputDataError(
            format_error(f"Training data '{spec}' not found", reason=f"no file {path.resolve()}", fix="check the path")
        )


def open_domain(specs: Sequence[str], kind: str, models: Sequence[str] | None = None) -> Source:
    """One domain's source from one or more specs."""
    sources = [open_source(s, kind, models) for s in specs]
    return sources[0] if len(sources) == 1 else ConcatSource(sources)


# ---------------------------------------------------------------------------- splitting
@dataclass
class DomainData:
    """A domain's source with the indices used for training and those held out."""

    source: Source
    train: np.ndarray
    holdout: np.ndarray

    def describe(self) -> dict[str, Any]:
        return {**self.source.describe(), "train_samples": int(self.train.size), "holdout_samples": int(self.holdout.size)}

    def fingerprint(self, n: int = 4) -> str:
        """sha256 of the first ``n`` training samples (detects changed files on resume/export)."""
        import hashlib

        h = hashlib.sha256()
        for i in self.train[:n]:
            x = np.nan_to_num(self.source.read(int(i)), nan=-0.0).astype("<f4")
            h.update(str(x.shape).encode())
            h.update(x.tobytes())
        return h.hexdigest()


@dataclass
class TrainingData:
    """Both domains plus paired validation samples ``(a, b)`` from a simulator file."""

    a: DomainData
    b: DomainData
    val_pairs: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    split: str = "independent"

    def describe(self) -> dict[str, Any]:
        return {
            "domain_a": self.a.describe(),
            "domain_b": self.b.describe(),
            "split": self.split,
            "validation_pairs": len(self.val_pairs),
        }


def _limit(idx: np.ndarray, max_samples: int | None) -> np.ndarray:
    return idx if max_samples is None else idx[: int(max_samples)]


def _n_holdout(n: int, fraction: float) -> int:
    # Depends on n and the fraction only, so the split never changes with other settings.
    if fraction <= 0 or n < 3:
        return 0
    return int(min(n - 2, max(1, round(fraction * n))))


def prepare_data(
    domain_a: Source,
    domain_b: Source,
    *,
    seed: int,
    paired: bool = False,
    val_fraction: float = 0.05,
    val_samples: int = 16,
    max_samples: int | None = None,
    val_source: tuple[Source, Source] | None = None,
) -> TrainingData:
    """Split both domains into training and held-out indices and collect validation pairs.

    Parameters
    ----------
    domain_a, domain_b
        The two domains' sources.
    seed
        Seed of the split permutations.
    paired
        Same simulator file on both sides only: use the same training indices for A and B
        (default False: disjoint halves, so nothing is paired).
    val_fraction
        Fraction of samples held out (at least one when ``val_fraction > 0``).
    val_samples
        Number of paired validation samples kept in memory (the first held-out ones; the
        split itself does not depend on this number).
    max_samples
        Use at most this many training samples per domain.
    val_source
        ``(convolved, unconvolved)`` sources of a separate simulator file for validation when
        the domains do not share one.
    """
    same = (
        isinstance(domain_a, SimulatorSource)
        and isinstance(domain_b, SimulatorSource)
        and domain_a.same_file(domain_b)
    )
    rng = np.random.default_rng([int(seed), 101])
    if same:
        n = len(domain_a)
        perm = rng.permutation(n)
        n_hold = _n_holdout(n, val_fraction)
        hold, rest = np.sort(perm[:n_hold]), perm[n_hold:]
        if paired:
            a_train = b_train = rest
        else:
            a_train, b_train = rest[0::2], rest[1::2]
        a = DomainData(domain_a, _limit(a_train, max_samples), hold)
        b = DomainData(domain_b, _limit(b_train, max_samples), hold)
        pairs = [(domain_a.read(i), domain_b.read(i)) for i in hold[:val_samples]]
        return TrainingData(a, b, pairs, split="paired-file" if paired else "disjoint-halves")
    doms = []
    for k, src in enumerate((domain_a, domain_b)):
        r = np.random.default_rng([int(seed), 102 + k])
        perm = r.permutation(len(src))
        n_hold = _n_holdout(len(src), val_fraction)
        doms.append(DomainData(src, _limit(perm[n_hold:], max_samples), np.sort(perm[:n_hold])))
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    if val_source is not None:
        va, vb = val_source
        if len(va) != len(vb):
            raise InputDataError(
                format_error("Validation sources differ in length", reason=f"{len(va)} vs {len(vb)}")
            )
        r = np.random.default_rng([int(seed), 104])
        idx = np.sort(r.permutation(len(va))[:val_samples])
        pairs = [(va.read(i), vb.read(i)) for i in idx]
    return TrainingData(doms[0], doms[1], pairs, split="independent")


def data_from_config(cfg: Any, *, val_samples: int | None = None) -> TrainingData:
    """Open the sources named in a :class:`~mantid_exp2sim.train.config.GanConfig` and split them.

    Training and export both call this, so they see the same split.
    """
    if not cfg.domain_a or not cfg.domain_b:
        raise InputDataError(
            format_error(
                "Both training domains are needed",
                reason=f"domain A: {cfg.domain_a or 'none'}; domain B: {cfg.domain_b or 'none'}",
                fix="pass --domain-a (measured or convolved data) and --domain-b (simulated, unconvolved)",
            )
        )
    a = open_domain(cfg.domain_a, cfg.kind_a, cfg.models)
    b = open_domain(cfg.domain_b, cfg.kind_b, cfg.models)
    val = None
    if cfg.val_data:
        val = (open_domain([cfg.val_data], "convolved", cfg.models), open_domain([cfg.val_data], "unconvolved", cfg.models))
    return prepare_data(
        a,
        b,
        seed=cfg.seed,
        paired=cfg.paired,
        val_fraction=cfg.val_fraction,
        val_samples=cfg.val_samples if val_samples is None else int(val_samples),
        max_samples=cfg.max_samples,
        val_source=val,
    )


# ------------------------------------------------------------- labelled spectra (classifier)
class LabelledSpectra:
    """Labelled samples of one kind from ``exp2sim-simulate`` data sets (lazy reads).

    One :class:`~mantid_exp2sim.simulate.dataset.SpectraDataset` per file reads the format
    (the first ``complete`` rows, the coverage mask applied; see its notes). Every model group
    holding ``kind`` is a class; the class names are sorted by the files' ``label`` attribute,
    then by name, and a model must have the same label in every file. Samples are ordered file
    by file, then model by name, then row by row (the order of earlier versions, so that a seed
    gives the same split and batches).

    Parameters
    ----------
    paths
        Data-set files.
    kind
        ``"unconvolved"`` or ``"convolved"``.
    models
        Model groups to use (default: all groups holding ``kind``). A file may hold only some
        of them; a name found in no file is an error.

    Attributes
    ----------
    classes
        Class names in label order (label i -> ``classes[i]``).
    labels
        ``(n,)`` class index of every sample.
    file_index
        ``(n,)`` position in ``paths`` of every sample's file.
    shape
        Shape of one sample.
    """

    def __init__(self, paths: Sequence[str], kind: str = "unconvolved", models: Sequence[str] | None = None):
        from ..simulate.dataset import SpectraDataset

        if not paths:
            raise InputDataError(format_error("No training data given", fix="pass --train FILE.h5"))
        self.kind = kind
        self.datasets: list[SpectraDataset] = []
        label_of: dict[str, int] = {}
        entries: list[tuple[int, str]] = []
        shape: tuple[int, ...] | None = None
        held: set[str] = set()
        for fi, p in enumerate(paths):
            ds = SpectraDataset(p, kind)
            held.update(ds.models)
            ds = ds.select(sorted(m for m in ds.models if not models or m in models))
            self.datasets.append(ds)
            for g, lab in ds.model_labels.items():
                if g in label_of and label_of[g] != lab:
                    raise InputDataError(
                        format_error(
                            f"Model '{g}' has different labels in different files",
                            reason=f"{label_of[g]} and {lab}",
                        )
                    )
                label_of[g] = lab
                entries.append((fi, g))
            if ds.models and shape is None:
                shape = ds.shape
            elif ds.models and ds.shape != shape:
                raise InputDataError(
                    format_error("Training samples differ in shape", reason=f"{shape} and {ds.shape} ({p})")
                )
        missing = sorted(set(models or ()) - held)
        if missing:
            raise InputDataError(
                format_error(
                    f"Spin model(s) {missing} are in none of the data sets",
                    reason=f"they hold {sorted(held)} with '{kind}' samples",
                    fix="choose --models among those",
                )
            )
        if len(label_of) < 2:
            raise InputDataError(
                format_error(
                    "The classifier needs at least two spin models",
                    reason=f"found {sorted(label_of)} with '{kind}' samples",
                    fix="simulate both models (e.g. dimer and goodenough) or check --models",
                )
            )
        self.classes = sorted(label_of, key=lambda g: (label_of[g], g))
        index = {g: i for i, g in enumerate(self.classes)}
        self.shape = shape
        self._entries = [(fi, i) for fi, ds in enumerate(self.datasets) for i in range(len(ds))]
        self.labels = np.array(
            [index[self.datasets[fi].model_of(i)] for fi, i in self._entries], dtype=np.int64
        )
        self.file_index = np.array([fi for fi, _ in self._entries], dtype=np.int64)
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def preload(self, indices: Sequence[int], *, max_bytes: float = 4e9) -> bool:
        """Keep samples ``indices`` in memory (float32) when they fit in ``max_bytes``.

        Returns
        -------
        bool
            Whether they were loaded (later reads of them come from memory).
        """
        idx = np.unique(np.asarray(indices, dtype=np.int64))
        size = idx.size * int(np.prod(self.shape or (0,))) * 4
        if size > max_bytes:
            return False
        self._cache = {int(i): self._read_file(int(i)) for i in idx}
        return True

    def read(self, i: int) -> np.ndarray:
        """Sample ``i`` as float32 with NaN at masked bins (the file's coverage mask applied)."""
        cached = self._cache.get(int(i))
        if cached is not None:
            return cached.copy()
        return self._read_file(int(i))

    def _read_file(self, i: int) -> np.ndarray:
        fi, j = self._entries[int(i)]
        return self.datasets[fi].read(j)

    def read_batch(self, idx: Sequence[int]) -> np.ndarray:
        """``(len(idx), *shape)`` samples."""
        return np.stack([self.read(i) for i in idx])

    def close(self) -> None:
        """Close the files."""
        for ds in self.datasets:
            ds.close()


def stratified_split(
    labels: np.ndarray, val_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into (training, held-out): the same held-out fraction of every class.

    At least one sample of every class is held out and one kept for training. Returns the
    training indices in a random order and the held-out ones sorted.
    """
    train, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = max(1, int(round(val_fraction * idx.size)))
        if idx.size - n_val < 1:
            raise InputDataError(
                format_error(
                    f"Too few samples of class {c} to hold some out",
                    reason=f"{idx.size} samples",
                    fix="simulate more samples",
                )
            )
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return rng.permutation(np.concatenate(train)), np.sort(np.concatenate(val))


def normalised_batch(signal: np.ndarray) -> np.ndarray:
    """Scale-free network input ``(N, 2, *shape)`` of a batch: each sample over the RMS of its unmasked bins."""
    from ..models.normalisation import to_network_input

    x = np.asarray(signal, dtype=np.float64)
    valid = ~np.isnan(x)
    sq = np.where(valid, x, 0.0) ** 2
    n = valid.reshape(x.shape[0], -1).sum(1)
    scale = np.sqrt(sq.reshape(x.shape[0], -1).sum(1) / np.maximum(n, 1))
    return to_network_input(x, scale, batched=True)
