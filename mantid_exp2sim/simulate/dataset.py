"""Simulated training data sets: HDF5 files of (convolved, unconvolved) pairs, written and read.

File layout (``docs/developer/architecture.md``, "Simulator data sets"):

* root attributes ``format = "exp2sim-dataset"``, ``format_version``, ``representation``,
  ``axes`` (JSON list of ``Axis.to_dict()``), ``seed``, ``command`` (JSON list of argv),
  ``package_version``, ``settings`` (JSON: every setting that shapes a sample),
  ``metadata`` (JSON: the representation's metadata, e.g. layout and Ei list), ``models``
  (JSON list of the model names in label order), ``resolution`` (JSON description) and,
  where it applies, ``ei``;
* ``mask``: uint8, the coverage mask shared by all samples (1 = masked);
* one group per model, ``/<model name>``, with attributes ``label`` (int),
  ``parameter_names`` (JSON list), ``complete`` (samples fully written) and ``target``
  (samples the last run set out to write), and datasets ``convolved`` and ``unconvolved``
  (float32 ``(N, *shape)``, NaN where masked, one sample per chunk, resizable),
  ``parameters`` (float64 ``(N, P)``) and ``sample_index`` (int64 ``(N,)``);
* measured-like data sets (``settings["measured_like"]`` present) add, per model,
  ``measured_like`` (float32 ``(N, *shape)``: the processing chain's output), ``nuisance``
  (float64 ``(N, K)``, the drawn nuisance parameters) with the group attribute
  ``nuisance_names`` (JSON), and at the root ``measured_like_mask`` (uint8, the measured
  detector mask the draws used, 1 = masked; absent when they never use it) and
  ``measured_like_ranges`` (JSON of the nuisance ranges). ``convolved`` stays the noise-free
  convolved spectrum in model units: the per-Ei ``scale`` is not applied
  (:meth:`SpectraDataset.expected` applies it).

Determinism: every sample is simulated by :func:`~.samples.simulate_sample` from its own
generator (:func:`~.samples.sample_rng`), so a file's content depends on the seed and the
settings (:class:`~.samples.DatasetSpec`) only: not on the number of worker processes, the order
of the models, or how often the run was interrupted and resumed.

Reading: :class:`SpectraDataset` is the one reader of the format (its ``format`` string and
``format_version``); the training code wraps it.

Crash safety: the skeleton of a new file is written to a temporary file and moved into
place, so the path always holds a valid data set. Samples are written in order; after each
one the file is flushed, then ``complete`` is raised and flushed again. The HDF5 metadata
cache is kept from writing between flushes, so a writer killed at any point leaves a file
whose first ``complete`` rows are intact; readers trust only those. ``--resume`` continues
an interrupted run up to its ``target``; a plain run on an existing file appends ``n`` more
samples per model after the ``complete`` ones (refusing different settings).
"""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .._version import __version__
from ..errors import InputDataError, format_error
from ..histogram import Axis
from ..io._atomic import OutputPathError, atomic_path
from ..mosaic import LAYOUT
from .modelref import model_name, resolve_model
from .representations import REPRESENTATIONS
from .resolution import get_resolution
from .samples import DatasetSpec, _worker, measured_like_chain, sample_rng, simulate_sample

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "KINDS",
    "REPRESENTATIONS",
    "DatasetSpec",
    "sample_rng",
    "simulate_sample",
    "write_dataset",
    "SpectraDataset",
    "is_dataset_file",
]

FORMAT = "exp2sim-dataset"
FORMAT_VERSION = 1
#: The kinds of sample a data set can hold (``measured_like`` in measured-like data sets only).
KINDS = ("convolved", "unconvolved", "measured_like")


# ============================================================================ writing
def _no_evictions(f: Any) -> None:
    """Keep HDF5 from writing metadata except at flushes (see the module notes)."""
    cfg = f.id.get_mdc_config()
    cfg.evictions_enabled = False
    cfg.incr_mode = 0
    cfg.flash_incr_mode = 0
    cfg.decr_mode = 0
    f.id.set_mdc_config(cfg)


#: Extensions of a data set file (what the training reads as exp2sim-simulate files).
DATASET_EXTENSIONS = (".h5", ".hdf5")


def _check_output(path: Path, spec: DatasetSpec) -> None:
    """Refuse, before any work, an output that cannot be written or is the mask file.

    An existing data set is appended to (or resumed), so an existing file is allowed here;
    :func:`_check_existing` then checks that it is one with the same settings.
    """
    from ..io.output_paths import PlannedOutput, output_path_problems

    inputs = [] if spec.mask in ("kinematic", "none") else [spec.mask]
    problems = output_path_problems(
        [PlannedOutput(path, "the data set", DATASET_EXTENSIONS)], inputs, overwrite=True
    )
    if problems:
        raise OutputPathError(" ".join(problems))


def _check_existing(path: Path, spec: DatasetSpec, names: list[str], seed: int, mask: np.ndarray,
                    ml_mask: np.ndarray | None = None) -> None:
    """Refuse to extend ``path`` unless it was written with the same settings (read by :class:`SpectraDataset`)."""
    try:
        old = SpectraDataset(path)
    except InputDataError as exc:
        raise InputDataError(
            format_error(
                f"Output file '{path}' exists and is not a data set this run can extend",
                reason=str(exc),
                fix="choose another --output file; this one is left as it is",
            )
        ) from exc
    diffs = []
    if old.format_version != FORMAT_VERSION:
        diffs.append(f"format_version {old.format_version} != {FORMAT_VERSION}")
    new = spec.settings()
    for k in sorted(set(old.settings) | set(new)):
        if k != "mask" and old.settings.get(k) != new.get(k):
            diffs.append(f"{k}: file {old.settings.get(k)!r}, requested {new.get(k)!r}")
    old_mask = old.settings.get("mask")
    if (old_mask in ("kinematic", "none") or new["mask"] in ("kinematic", "none")) and old_mask != new["mask"]:
        diffs.append(f"mask: file {old_mask!r}, requested {new['mask']!r}")
    elif old.mask is None or not np.array_equal(old.mask, mask):
        diffs.append("mask: the mask arrays differ")
    if spec.measured_like is not None and ml_mask is not None:
        if old.measured_like_mask is None or not np.array_equal(old.measured_like_mask, ml_mask):
            diffs.append("measured mask: the measured_like_mask arrays differ")
    if spec.measured_like is not None:
        base = old.attribute("measured_like_base")
        if base is not None and base != _measured_like_base(spec):
            diffs.append("measured_like_base: the calibrated values the nuisances are drawn around changed")
    if old.class_names != names:
        diffs.append(f"models: file {old.class_names}, requested {names}")
    if old.seed != seed:
        diffs.append(f"seed: file {old.seed}, requested {seed}")
    if diffs:
        raise InputDataError(
            format_error(
                f"Output file '{path}' was written with different settings",
                reason="; ".join(diffs),
                fix="use the same settings to append or resume, or write a new file",
            )
        )


def _measured_like_base(spec: DatasetSpec) -> dict[str, Any]:
    """JSON-safe calibrated values a measured-like spec draws around (fixed values put in)."""
    from .nuisance_sampling import default_chain, describe_measurement_model

    mm = describe_measurement_model(spec.measured_like.measurement_base())
    mm.pop("measured_like", None)
    return json.loads(json.dumps({"measurement_model": mm, "chain": default_chain().describe()}, sort_keys=True))


def write_dataset(
    path: str | os.PathLike,
    models: Sequence[str],
    n: int,
    spec: DatasetSpec = DatasetSpec(),
    *,
    seed: int = 0,
    workers: int = 1,
    resume: bool = False,
    progress: bool = True,
    command: Sequence[str] | None = None,
    on_sample: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Write (or extend) a data set of simulated (convolved, unconvolved) pairs.

    Parameters
    ----------
    path
        Output HDF5 file.
    models
        Model names or ``module:attribute`` references; each gets a group named after the
        model and the label of its position in this list.
    n
        Samples to add per model (ignored with ``resume``).
    spec
        The representation and its settings.
    seed
        Base seed (int >= 0).
    workers
        Worker processes (spawned); 1 computes in this process.
    resume
        Continue an interrupted run up to the ``target`` it set, instead of appending ``n``.
    progress
        Show a progress bar on stderr (only when stderr is a terminal).
    command
        The generating command, stored as an attribute (default ``sys.argv``).
    on_sample
        Called as ``on_sample(model, complete)`` after each sample is safely on disk.

    Returns
    -------
    dict
        ``{model name: complete}`` after the run.

    Raises
    ------
    InputDataError
        Bad arguments, unknown models, unusable resolution or mask, or an existing file with
        different settings; nothing is written then.
    OutputPathError
        (an ``OSError``) ``path`` cannot be written: its directory is missing (it is never
        created) or not writable, it is a directory or the mask file, or its extension is
        not ``.h5``/``.hdf5``; checked before any work.
    """
    import h5py

    path = Path(path)
    for name, value, lo in (("n", n, 0), ("workers", workers, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
            raise InputDataError(
                format_error(f"{name} is invalid", reason=f"got {value!r}; need a whole number >= {lo}")
            )
    refs = [str(m) for m in models]
    if not refs:
        raise InputDataError(format_error("No models given", fix="name at least one model, e.g. goodenough dimer"))
    _check_output(path, spec)
    resolved = [resolve_model(r) for r in refs]
    names = [model_name(m) for m in resolved]
    if len(set(names)) != len(names):
        raise InputDataError(format_error("A model is named twice", reason=f"models {names}"))
    plan = spec.plan()
    res = get_resolution(spec.resolution)
    for blk in plan.blocks:
        res.check_coverage(blk.ei, plan.q_range, blk.e_range)
    mask = np.zeros(plan.shape, dtype=bool) if plan.mask is None else plan.mask
    shape = plan.shape
    ml_mask = None
    if spec.measured_like is not None:
        chain = measured_like_chain(spec, shape)  # refuses a missing measured mask before any work
        ml_mask = None if isinstance(chain.mask, str) else np.asarray(chain.mask, dtype=bool)
    kinds = ("convolved", "unconvolved") + (("measured_like",) if spec.measured_like is not None else ())

    if path.exists():
        _check_existing(path, spec, names, int(seed), mask, ml_mask)
    elif resume:
        raise InputDataError(
            format_error(f"Nothing to resume: '{path}' does not exist", fix="run without --resume to create it")
        )
    else:
        meta = dict(plan.metadata)
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["representation"] = spec.representation
            f.attrs["axes"] = json.dumps([ax.to_dict() for ax in plan.axes])
            f.attrs["seed"] = int(seed)
            f.attrs["command"] = json.dumps(list(command if command is not None else sys.argv))
            f.attrs["package_version"] = __version__
            f.attrs["settings"] = json.dumps(spec.settings(), sort_keys=True)
            f.attrs["metadata"] = json.dumps(meta, sort_keys=True)
            f.attrs["models"] = json.dumps(names)
            f.attrs["resolution"] = json.dumps(res.describe(), sort_keys=True)
            if "ei" in meta:
                f.attrs["ei"] = float(meta["ei"])
            f.create_dataset("mask", data=mask.astype(np.uint8))
            if spec.measured_like is not None:
                from .nuisance_sampling import DEFAULT_RANGES, nuisance_names

                f.attrs["measured_like_ranges"] = json.dumps(spec.measured_like.ranges(DEFAULT_RANGES).describe())
                f.attrs["measured_like_base"] = json.dumps(_measured_like_base(spec), sort_keys=True)
                if ml_mask is not None:
                    f.create_dataset("measured_like_mask", data=ml_mask.astype(np.uint8))
            for label, (m, name) in enumerate(zip(resolved, names)):
                g = f.create_group(name)
                g.attrs["label"] = label
                g.attrs["parameter_names"] = json.dumps(list(m.parameter_names))
                g.attrs["complete"] = 0
                g.attrs["target"] = 0
                for kind in kinds:
                    g.create_dataset(
                        kind, shape=(0,) + shape, maxshape=(None,) + shape, dtype=np.float32,
                        chunks=(1,) + shape, compression="gzip", compression_opts=4, shuffle=True,
                        fillvalue=np.float32(np.nan),
                    )
                p = len(m.parameter_names)
                g.create_dataset("parameters", shape=(0, p), maxshape=(None, p), dtype=np.float64,
                                 chunks=(64, max(p, 1)))
                g.create_dataset("sample_index", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(256,))
                if spec.measured_like is not None:
                    cols = nuisance_names(meta.get("ei_list") or ())
                    g.attrs["nuisance_names"] = json.dumps(cols)
                    g.create_dataset("nuisance", shape=(0, len(cols)), maxshape=(None, len(cols)),
                                     dtype=np.float64, chunks=(64, len(cols)))

    with h5py.File(path, "r+") as f:
        _no_evictions(f)
        tasks: list[tuple[dict[str, Any], str, str, int, int]] = []
        per_model: list[list[int]] = []
        for ref, name in zip(refs, names):
            g = f[name]
            complete = int(g.attrs["complete"])
            target = int(g.attrs["target"]) if resume else complete + int(n)
            target = max(target, complete)
            g.attrs["target"] = target
            for kind in ("convolved", "unconvolved", "parameters", "sample_index", "measured_like", "nuisance"):
                if kind in g and g[kind].shape[0] < target:
                    g[kind].resize(target, axis=0)
            per_model.append(list(range(complete, target)))
        f.flush()
        settings = spec.settings()
        # Round-robin over the models: an interrupted run leaves balanced classes.
        longest = max((len(x) for x in per_model), default=0)
        for k in range(longest):
            for ref, name, rows in zip(refs, names, per_model):
                if k < len(rows):
                    tasks.append((settings, name, ref, rows[k], int(seed)))
        _run_tasks(f, tasks, workers=int(workers), progress=progress, on_sample=on_sample)
        return {name: int(f[name].attrs["complete"]) for name in names}


def _store(f: Any, group: str, index: int, conv: np.ndarray, unconv: np.ndarray, params: np.ndarray,
           extras: dict[str, np.ndarray] | None = None) -> None:
    g = f[group]
    if index != int(g.attrs["complete"]):  # pragma: no cover - ordered results guarantee this
        raise RuntimeError(f"sample {index} of {group} arrived out of order")
    g["convolved"][index] = conv
    g["unconvolved"][index] = unconv
    g["parameters"][index] = params
    for key, value in (extras or {}).items():
        g[key][index] = value
    g["sample_index"][index] = index
    f.flush()
    g.attrs["complete"] = index + 1
    f.flush()


def _run_tasks(
    f: Any,
    tasks: list[tuple[dict[str, Any], str, str, int, int]],
    *,
    workers: int,
    progress: bool,
    on_sample: Callable[[str, int], None] | None,
) -> None:
    from tqdm import tqdm

    bar = tqdm(total=len(tasks), file=sys.stderr, unit="sample", disable=not (progress and sys.stderr.isatty()))
    try:
        if workers <= 1 or len(tasks) <= 1:
            results: Iterable[Any] = (_worker(t) for t in tasks)
            _consume(f, results, bar, on_sample)
        else:
            import multiprocessing as mp

            # One BLAS thread per worker: the workers already use the cores.
            saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
            os.environ.update({k: "1" for k in saved})
            try:
                pool = mp.get_context("spawn").Pool(min(workers, len(tasks)))
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
            try:
                _consume(f, pool.imap(_worker, tasks, chunksize=1), bar, on_sample)
                pool.close()
            except BaseException:
                pool.terminate()
                raise
            finally:
                pool.join()
    finally:
        bar.close()


def _consume(f: Any, results: Iterable[Any], bar: Any, on_sample: Callable[[str, int], None] | None) -> None:
    for group, index, conv, unconv, params, extras in results:
        _store(f, group, index, conv, unconv, params, extras)
        bar.update(1)
        if on_sample is not None:
            on_sample(group, index + 1)


# ============================================================================ reading
def _text(value: Any) -> Any:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _json_attr(attrs: Any, key: str, default: Any = None) -> Any:
    """Root or group attribute ``key`` decoded from JSON (the raw text when it is not JSON)."""
    if key not in attrs:
        return default
    raw = _text(attrs[key])
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return str(raw)


def is_dataset_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an HDF5 file whose root says ``format = "exp2sim-dataset"``."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return _text(f.attrs.get("format")) == FORMAT
    except OSError:
        return False


class SpectraDataset:
    """The reader of ``exp2sim-dataset`` files: samples of one kind, lazily (picklable).

    This class is the only code that interprets the format (its ``format`` string and
    ``format_version``); the training data sources
    (:class:`mantid_exp2sim.train.data.SimulatorSource`, :class:`~mantid_exp2sim.train.data.LabelledSpectra`)
    wrap it.

    Parameters
    ----------
    path
        The HDF5 file.
    kind
        ``"convolved"``, ``"unconvolved"`` or, for measured-like data sets,
        ``"measured_like"`` (the processing chain's output).
    models
        Names of the models to include, in this order (default all, in label order);
        a name the file lacks is an error. Labels stay those of the file.

    Raises
    ------
    InputDataError
        A missing or unreadable file, another kind of file, a newer ``format_version``,
        an unknown model, or a coverage mask whose shape differs from the samples'.

    Notes
    -----
    How files are read (the same for every user of the format):

    * the models are the root groups holding ``kind``, ordered by their ``label`` attribute,
      then by name; a group without ``label`` reads as label -1;
    * only the first ``complete`` rows of a model are used (all rows when a hand-made file
      has no ``complete``);
    * the file's coverage ``mask`` (1 = masked), when present, is applied on every read (NaN),
      on top of the NaNs stored in the samples (a no-op for files of :func:`write_dataset`,
      which store NaN there);
    * a file without ``format_version`` reads as version 1; ``axes``, ``seed`` and the JSON
      attributes are optional (empty when absent).

    The file is opened on first access in each process (so a ``torch.utils.data.DataLoader``
    worker opens its own handle); items are ``(float32 array, label)``.
    """

    def __init__(self, path: str | os.PathLike, kind: str = "convolved", models: Sequence[str] | None = None):
        import h5py

        if kind not in KINDS:
            raise InputDataError(
                format_error("kind is invalid", reason=f"got {kind!r}; allowed: {', '.join(map(repr, KINDS))}")
            )
        self.path = str(path)
        self.kind = kind
        if not Path(self.path).is_file():
            raise InputDataError(format_error(f"Data set file '{self.path}' not found", fix="check the path"))
        try:
            f = h5py.File(self.path, "r")
        except OSError as exc:
            raise InputDataError(format_error(f"Data set '{self.path}' cannot be opened", reason=str(exc))) from exc
        with f:
            self.format_version = self._check_format(f.attrs)
            self.representation = str(_text(f.attrs.get("representation", "")))
            self.axes = tuple(Axis.from_dict(d) for d in _json_attr(f.attrs, "axes", []))
            meta = _json_attr(f.attrs, "metadata", {})
            self.metadata: dict[str, Any] = dict(meta) if isinstance(meta, dict) else {}
            self.settings: dict[str, Any] = _json_attr(f.attrs, "settings", {})
            self.seed = int(f.attrs["seed"]) if "seed" in f.attrs else None
            self.command = _json_attr(f.attrs, "command", [])
            groups = [g for g, v in f.items() if isinstance(v, h5py.Group) and kind in v]
            labels = {g: int(f[g].attrs.get("label", -1)) for g in groups}
            self.class_names = sorted(groups, key=lambda g: (labels[g], g))
            self._all_labels = labels
            self._all_counts = {g: int(f[g].attrs.get("complete", f[g][kind].shape[0])) for g in groups}
            self._param_names = {g: _json_attr(f[g].attrs, "parameter_names", []) for g in groups}
            first = f[self.class_names[0]][kind].shape[1:] if groups else None
            self.shape: tuple[int, ...] = (
                tuple(int(n) for n in first) if first is not None else tuple(ax.bins for ax in self.axes)
            )
            self.mask = np.asarray(f["mask"][()], dtype=bool) if "mask" in f else None
            #: The measured detector mask of a measured-like data set's draws (None otherwise).
            self.measured_like_mask = (np.asarray(f["measured_like_mask"][()], dtype=bool)
                                       if "measured_like_mask" in f else None)
            self._nuisance_names = {g: _json_attr(f[g].attrs, "nuisance_names", []) for g in groups}
            layout = _text(f.attrs.get("layout", self.metadata.get("layout")))
        #: Layout tag (e.g. ``pcsmo-mosaic-v1``): the ``layout`` attribute, the metadata's, or the
        #: mosaic's by default.
        self.layout: str | None = str(layout) if layout else (LAYOUT if self.representation == "mosaic" else None)
        if kind == "measured_like" and not groups:
            raise InputDataError(
                format_error(
                    f"Data set '{self.path}' holds no measured-like samples",
                    reason="it was not written with exp2sim-simulate --measured-like",
                    fix="read kind='convolved' or write a measured-like data set",
                )
            )
        if self.mask is not None and groups and self.mask.shape != self.shape:
            raise InputDataError(
                format_error(
                    f"Data set '{self.path}' has a coverage mask of another shape",
                    reason=f"mask {self.mask.shape}, samples {self.shape}",
                )
            )
        self._h5: Any = None
        self._pid: int | None = None
        self._choose(self.class_names if models is None else [str(m) for m in models])

    def _check_format(self, attrs: Any) -> int:
        if _text(attrs.get("format")) != FORMAT:
            raise InputDataError(
                format_error(
                    f"'{self.path}' is not an exp2sim-simulate data set",
                    reason=f"root attribute format={_text(attrs.get('format'))!r}, expected {FORMAT!r}",
                    fix="make one with exp2sim-simulate",
                )
            )
        try:
            version = int(attrs.get("format_version", 1))
        except (TypeError, ValueError):
            version = -1
        if not 1 <= version <= FORMAT_VERSION:
            raise InputDataError(
                format_error(
                    f"Data set '{self.path}' has a format version this mantid-exp2sim cannot read",
                    reason=f"format_version {_text(attrs.get('format_version'))!r}; this version reads 1 to "
                    f"{FORMAT_VERSION}",
                    fix="upgrade mantid-exp2sim (or rewrite the file with exp2sim-simulate)",
                )
            )
        return version

    def _choose(self, models: list[str]) -> None:
        unknown = [m for m in models if m not in self._all_labels]
        if unknown:
            raise InputDataError(
                format_error(
                    f"Spin model(s) {unknown} not in the data set '{self.path}'",
                    reason=f"it holds {self.class_names} with {self.kind} samples",
                    fix="choose --models among those",
                )
            )
        self.models = list(models)
        self._labels = [self._all_labels[m] for m in self.models]
        self._counts = [self._all_counts[m] for m in self.models]
        self._offsets = np.concatenate([[0], np.cumsum(self._counts)]).astype(np.int64)

    def select(self, models: Sequence[str]) -> "SpectraDataset":
        """The same file restricted to ``models`` (in this order; an unknown name is an error)."""
        view = copy.copy(self)
        view._h5, view._pid = None, None
        view._choose([str(m) for m in models])
        return view

    # -- pickling: never carry an open handle into another process
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_h5"] = None
        state["_pid"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def _file(self) -> Any:
        import h5py

        if self._h5 is None or self._pid != os.getpid():
            self._h5 = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._h5

    def close(self) -> None:
        """Close this process's file handle (reopened on the next access)."""
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5 = None
        self._pid = None

    def __enter__(self) -> "SpectraDataset":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __len__(self) -> int:
        return int(self._offsets[-1])

    @property
    def counts(self) -> dict[str, int]:
        """Usable samples per model."""
        return dict(zip(self.models, self._counts))

    @property
    def model_labels(self) -> dict[str, int]:
        """The file's label of each model read."""
        return dict(zip(self.models, self._labels))

    def attribute(self, name: str) -> Any:
        """Root attribute ``name`` decoded from JSON (the raw text when not JSON; None when absent)."""
        return _json_attr(self._file().attrs, name)

    def locate(self, i: int) -> tuple[str, int]:
        """``(model name, row)`` of item ``i`` (negative ``i`` counts from the end)."""
        n = len(self)
        ii = int(i)
        if ii < 0:
            ii += n
        if not 0 <= ii < n:
            raise IndexError(f"index {i} out of range for a data set of {n} samples")
        j = int(np.searchsorted(self._offsets, ii, side="right") - 1)
        return self.models[j], ii - int(self._offsets[j])

    def _masked(self, x: Any) -> np.ndarray:
        arr = np.array(x, dtype=np.float32)
        if self.mask is not None:
            arr[self.mask] = np.nan
        return arr

    def read(self, i: int) -> np.ndarray:
        """Sample ``i``: a new float32 array, NaN where masked."""
        model, row = self.locate(i)
        return self._masked(self._file()[model][self.kind][row])

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.read(i), self.label(i)

    def label(self, i: int) -> int:
        """Label of item ``i`` (without reading its data)."""
        return self._all_labels[self.locate(i)[0]]

    def model_of(self, i: int) -> str:
        """Model name of item ``i``."""
        return self.locate(i)[0]

    def parameters(self, i: int) -> dict[str, float]:
        """Parameters of item ``i`` as ``{name: value}``."""
        model, row = self.locate(i)
        vec = self._file()[model]["parameters"][row]
        return {n: float(v) for n, v in zip(self._param_names[model], vec)}

    @property
    def is_measured_like(self) -> bool:
        """Whether the file was written in measured-like mode (it has ``nuisance`` draws)."""
        return "measured_like" in self.settings

    def nuisance(self, i: int) -> dict[str, float]:
        """The drawn nuisance parameters of item ``i`` (measured-like data sets) as ``{name: value}``.

        Names: :func:`~.nuisance_sampling.nuisance_names` (per-Ei ``scale_ei<E>``,
        ``count_level_ei<E>``, ``background_ei<E>``, ``residual_background_ei<E>``;
        ``measured_mask``, ``twin_fraction``, ``resolution_scale``, ``mosaic``).
        """
        model, row = self.locate(i)
        g = self._file()[model]
        if "nuisance" not in g:
            raise InputDataError(format_error(f"Data set '{self.path}' has no nuisance draws",
                                              reason="it is not a measured-like data set"))
        return {n: float(v) for n, v in zip(self._nuisance_names[model], g["nuisance"][row])}

    def ei_scale(self, i: int) -> np.ndarray:
        """The drawn per-Ei ``scale`` of item ``i`` (measured-like data sets), one value per row.

        float32 ``(shape[0],)``: the mosaic's rows are its incident energies, ``shape[0] / n_ei``
        rows each. ``measured_like / ei_scale(i)[:, None]`` is the measured-like sample in the
        model units of ``convolved`` and ``unconvolved``.
        """
        nu = self.nuisance(i)
        scale = np.array([v for k, v in nu.items() if k.startswith("scale_ei")], dtype=np.float32)
        if scale.size == 0 or self.shape[0] % scale.size:
            raise InputDataError(
                format_error(f"Data set '{self.path}' has per-Ei scales that do not tile its samples",
                             reason=f"{scale.size} scales for {self.shape[0]} rows"))
        return np.repeat(scale, self.shape[0] // scale.size)

    def expected(self, i: int) -> np.ndarray:
        """The expected measured value ``scale_g * convolved`` of item ``i`` (measured-like data sets).

        float32, measured units, before the residual background, counting noise, zero and
        clip; NaN where the stored ``convolved`` is (the measured mask of the draw is not
        applied).
        """
        model, row = self.locate(i)
        conv = self._masked(self._file()[model]["convolved"][row])
        return (conv * self.ei_scale(i)[:, None]).astype(np.float32)

    def pair(self, i: int) -> tuple[np.ndarray, np.ndarray, int]:
        """``(convolved, unconvolved, label)`` of item ``i``."""
        model, row = self.locate(i)
        g = self._file()[model]
        return self._masked(g["convolved"][row]), self._masked(g["unconvolved"][row]), self._all_labels[model]
