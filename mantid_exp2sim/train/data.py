"""Training data for Exp2SimGAN: sample sources, the unpaired split, patch sampling.

Sources (each yields whole samples, float32, NaN = masked bin):

* simulator data sets (``exp2sim-simulate`` HDF5; see docs/developer/architecture.md):
  ``convolved`` or ``unconvolved`` samples of one or more spin models;
* user HDF5 arrays ``file.h5:/path/to/dataset`` holding ``(N, *shape)`` (or one sample);
* ``.npy`` arrays ``(N, *shape)`` (or one sample);
* Mantid SaveMD files (``.nxs``; one MDHistoWorkspace per file, read with
  :func:`mantid_exp2sim.io.load_histogram`), or a folder of them.

Unpaired by construction: when domains A and B come from the same simulator file, the sample
indices are split three ways with a seeded permutation: a held-out set (both sides kept, as
*paired* validation data) and two disjoint training halves, one per domain, so no training
sample of A has its counterpart in B.

Patches: every sample is normalised by the RMS of the *whole* sample (as at inference), then a
random patch is cut (padded with masked bins where the sample is smaller than the patch) and
optionally flipped along the allowed axes. The order of samples and all patch randomness come
from numpy generators seeded by ``(seed, domain, epoch)`` and ``(seed, domain, rank, draw)``, so
a sampler's state is three integers and resuming a run reproduces the same batches.
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
    "PatchSampler",
    "normalised_input",
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
    """One kind (``convolved``/``unconvolved``) of an ``exp2sim-simulate`` data set.

    Samples of several models are concatenated in the order of ``models`` (default: the file's
    model groups sorted by label then name); only the first ``complete`` rows of each group are
    used (the rest may be unwritten). The file's shared coverage ``mask`` is applied on top of
    the NaNs stored in the samples.
    """

    def __init__(self, path: str | os.PathLike, kind: str, models: Sequence[str] | None = None):
        import h5py

        self.path = Path(path)
        self.kind = kind
        if kind not in ("convolved", "unconvolved"):
            raise InputDataError(
                format_error("Invalid simulator data kind", reason=f"{kind!r}; allowed: convolved, unconvolved")
            )
        self._h5 = h5py.File(self.path, "r")
        attrs = self._h5.attrs
        if attrs.get("format") != "exp2sim-dataset":
            raise InputDataError(
                format_error(
                    f"'{self.path}' is not an exp2sim-simulate data set",
                    reason=f"root attribute format={attrs.get('format')!r}",
                    fix="pass file.h5:/dataset for a plain HDF5 array",
                )
            )
        groups = [k for k, v in self._h5.items() if isinstance(v, h5py.Group) and kind in v]
        if models:
            missing = [m for m in models if m not in groups]
            if missing:
                raise InputDataError(
                    format_error(
                        f"Spin model(s) {missing} not in '{self.path}'",
                        reason=f"the file holds {sorted(groups)}",
                        fix="choose --models among those",
                    )
                )
            groups = list(models)
        else:
            groups.sort(key=lambda g: (int(self._h5[g].attrs.get("label", 0)), g))
        self.models = groups
        self.counts = [int(self._h5[g].attrs.get("complete", self._h5[g][kind].shape[0])) for g in groups]
        self.offsets = np.cumsum([0] + self.counts)
        self.representation = str(attrs.get("representation", ""))
        self.mask = np.asarray(self._h5["mask"][...], dtype=bool) if "mask" in self._h5 else None
        self.name = f"{self.path.name}[{kind}]"
        if len(self) == 0:
            raise InputDataError(
                format_error(f"'{self.path}' holds no complete samples", fix="let exp2sim-simulate finish")
            )

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Spatial shape of every sample."""
        return tuple(int(s) for s in self._h5[self.models[0]][self.kind].shape[1:])

    def locate(self, index: int) -> tuple[str, int]:
        """(model name, row) of global sample ``index``."""
        i = self._check_index(index)
        g = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return self.models[g], i - int(self.offsets[g])

    def read(self, index: int) -> np.ndarray:
        model, row = self.locate(index)
        x = np.array(self._h5[model][self.kind][row], dtype=np.float32)
        if self.mask is not None and self.mask.shape == x.shape:
            x[self.mask] = np.nan
        return x

    def axes(self) -> list[dict]:
        """The file's axis descriptions (``Axis.to_dict`` dicts), or [] when absent."""
        import json

        raw = self._h5.attrs.get("axes")
        return json.loads(raw) if raw is not None else []

    def same_file(self, other: "SimulatorSource") -> bool:
        """True when both read the same file and models (so indices pair up)."""
        return self.path.resolve() == other.path.resolve() and self.models == other.models

    def describe(self) -> dict[str, Any]:
        attrs = self._h5.attrs
        return {
            "name": self.name,
            "type": "exp2sim-dataset",
            "path": str(self.path),
            "kind": self.kind,
            "representation": self.representation,
            "models": list(self.models),
            "samples_per_model": list(self.counts),
            "shape": list(self.sample_shape),
            "seed": int(attrs["seed"]) if "seed" in attrs else None,
            "layout": self.layout(),
            "settings": self._json_attr("settings"),
            "metadata": self.metadata(),
            "resolution": self._json_attr("resolution"),
        }

    def _json_attr(self, name: str) -> Any:
        import json

        raw = self._h5.attrs.get(name)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except (TypeError, ValueError):
            return str(raw)

    def metadata(self) -> dict[str, Any]:
        """The file's ``metadata`` attribute (JSON), or {} when absent."""
        meta = self._json_attr("metadata")
        return dict(meta) if isinstance(meta, dict) else {}

    def layout(self) -> str | None:
        """Layout tag (e.g. ``pcsmo-mosaic-v1``) when the file records one."""
        if "layout" in self._h5.attrs:
            return str(self._h5.attrs["layout"])
        layout = self.metadata().get("layout")
        if layout:
            return str(layout)
        return "pcsmo-mosaic-v1" if self.representation == "mosaic" else None


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
        Which side of a simulator data set to read (``convolved``/``unconvolved``).
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

        with h5py.File(path, "r") as f:
            is_sim = f.attrs.get("format") == "exp2sim-dataset"
            datasets = [k for k, v in f.items() if isinstance(v, h5py.Dataset)]
        if is_sim:
            return SimulatorSource(path, kind, models)
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


# ---------------------------------------------------------------------------- patches
def normalised_input(sample: np.ndarray) -> tuple[np.ndarray, float]:
    """Whole-sample network input ``(2, *shape)`` and its intensity scale (RMS of unmasked bins)."""
    from ..models.normalisation import intensity_scale, to_network_input

    scale = intensity_scale(sample)
    return to_network_input(sample, scale)[0], scale


def _crop(x: np.ndarray, starts: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """Cut ``size`` bins from ``starts``; bins beyond the array become NaN (masked)."""
    out = np.full(tuple(size), np.nan, dtype=np.float32)
    src, dst = [], []
    for s, n, full in zip(starts, size, x.shape):
        lo, hi = max(s, 0), min(s + n, full)
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[tuple(dst)] = x[tuple(src)]
    return out


class PatchSampler:
    """Endless, seeded, shardable stream of patch batches from one domain.

    Parameters
    ----------
    source, indices
        The domain's samples and the training indices to draw from.
    patch_size
        Patch size per spatial dimension (bins).
    batch_size
        Patches per batch (per rank).
    seed, stream
        Seed and a stream id (0 for domain A, 1 for B) so the domains draw independently.
    rank, world_size
        Shard: each epoch's permutation is split ``perm[rank::world_size]`` (padded by
        wrapping so every rank has the same count), like ``DistributedSampler``.
    flip_axes
        Spatial axes that may be flipped (each with probability 1/2).
    """

    def __init__(
        self,
        source: Source,
        indices: np.ndarray,
        patch_size: Sequence[int],
        batch_size: int,
        *,
        seed: int,
        stream: int,
        rank: int = 0,
        world_size: int = 1,
        flip_axes: Sequence[int] = (),
    ):
        self.source = source
        self.indices = np.asarray(indices, dtype=np.int64)
        if self.indices.size == 0:
            raise InputDataError(
                format_error(
                    f"No training samples in '{source.name}'",
                    reason="the split left no sample for training",
                    fix="add samples or lower --val-fraction",
                )
            )
        self.patch_size = tuple(int(p) for p in patch_size)
        self.batch_size = int(batch_size)
        self.seed, self.stream = int(seed), int(stream)
        self.rank, self.world_size = int(rank), int(world_size)
        self.flip_axes = tuple(int(a) for a in flip_axes)
        self.epoch = 0
        self.cursor = 0
        self.draws = 0
        self._order = self._epoch_order(0)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        perm = self.indices[np.random.default_rng([self.seed, self.stream, 7, epoch]).permutation(self.indices.size)]
        per_rank = -(-perm.size // self.world_size)
        total = per_rank * self.world_size
        if total > perm.size:
            perm = np.concatenate([perm, np.resize(perm, total - perm.size)])
        return perm[self.rank :: self.world_size]

    def state_dict(self) -> dict[str, int]:
        """Position in the stream (all that is needed to resume it)."""
        return {"epoch": self.epoch, "cursor": self.cursor, "draws": self.draws}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from :meth:`state_dict`."""
        self.epoch, self.cursor, self.draws = int(state["epoch"]), int(state["cursor"]), int(state["draws"])
        self._order = self._epoch_order(self.epoch)

    def _next_index(self) -> int:
        if self.cursor >= self._order.size:
            self.epoch += 1
            self.cursor = 0
            self._order = self._epoch_order(self.epoch)
        i = int(self._order[self.cursor])
        self.cursor += 1
        return i

    def next_batch(self) -> np.ndarray:
        """The next batch, float32 ``(batch, 2, *patch)``: scaled signal and valid mask."""
        from ..models.normalisation import intensity_scale, to_network_input

        rng = np.random.default_rng([self.seed, self.stream, 11, self.rank, self.draws])
        self.draws += 1
        out = np.empty((self.batch_size, 2) + self.patch_size, dtype=np.float32)
        for b in range(self.batch_size):
            sample = self.source.read(self._next_index())
            if sample.ndim != len(self.patch_size):
                raise InputDataError(
                    format_error(
                        f"A sample of '{self.source.name}' has {sample.ndim} dimensions",
                        reason=f"the patch size {list(self.patch_size)} has {len(self.patch_size)}",
                        fix="set --patch-size (and --ndim) to match the data",
                    )
                )
            scale = intensity_scale(sample)
            starts = [int(rng.integers(0, max(n - p, 0) + 1)) for n, p in zip(sample.shape, self.patch_size)]
            patch = _crop(sample, starts, self.patch_size)
            for ax in self.flip_axes:
                if rng.random() < 0.5:
                    patch = np.flip(patch, axis=ax)
            out[b] = to_network_input(patch, scale)[0]
        return out


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
