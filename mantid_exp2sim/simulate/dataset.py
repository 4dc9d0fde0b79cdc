"""Simulated training data sets: HDF5 files of (convolved, unconvolved) pairs, and a reader.

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
  ``parameters`` (float64 ``(N, P)``) and ``sample_index`` (int64 ``(N,)``).

Determinism: sample ``i`` of model ``m`` draws its parameters (and noise) from a generator
seeded by ``SeedSequence(seed, spawn_key=(crc32(m), i))`` (:func:`sample_rng`), so a file's
content depends on the seed and the settings only: not on the number of worker processes,
the order of the models, or how often the run was interrupted and resumed.

Crash safety: the skeleton of a new file is written to a temporary file and moved into
place, so the path always holds a valid data set. Samples are written in order; after each
one the file is flushed, then ``complete`` is raised and flushed again. The HDF5 metadata
cache is kept from writing between flushes, so a writer killed at any point leaves a file
whose first ``complete`` rows are intact; readers trust only those. ``--resume`` continues
an interrupted run up to its ``target``; a plain run on an existing file appends ``n`` more
samples per model after the ``complete`` ones (refusing different settings).
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import tempfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from .._version import __version__
from ..errors import InputDataError, format_error
from ..histogram import Axis
from ..io._atomic import OutputPathError
from .modelref import model_name, param_vector, resolve_model
from .noise import PoissonNoise, SmoothBackground
from .resolution import get_resolution
from .spectra import Plan, plan_e_slice, plan_mosaic, plan_qe_slice, plan_volume, simulate_plan

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "REPRESENTATIONS",
    "DatasetSpec",
    "sample_rng",
    "simulate_sample",
    "write_dataset",
    "SpectraDataset",
]

FORMAT = "exp2sim-dataset"
FORMAT_VERSION = 1
REPRESENTATIONS = ("mosaic", "volume", "e_slice", "qe_slice")
_MAX_REDRAWS = 100


# ============================================================================ settings
@dataclass(frozen=True)
class DatasetSpec:
    """Everything that shapes one sample of a data set (except the model and the seed).

    Parameters
    ----------
    representation
        ``"mosaic"``, ``"volume"``, ``"e_slice"`` or ``"qe_slice"``.
    resolution
        ``"builtin"``, ``"tables:DIR"`` or ``"unconvolved"``.
    mask
        ``"kinematic"``, ``"none"`` or a ``.mat``/``.npy`` file.
    ei
        Incident energy in meV (not for the mosaic; default 70).
    bins
        Bins per dimension (not for the mosaic): volume 3, slices 2 (default 64^3, 40^2,
        100^2).
    energy_range
        (min, max) meV of volumes and Q-E slices (default 0.1..0.7 Ei).
    energy_window
        (min, max) meV of an E slice (default 0.28..0.34 Ei).
    line
        (start_h, start_k, end_h, end_k) of a Q-E slice in r.l.u. (default -1,0 -> 1,0).
    noise_flux
        Poisson noise flux (counts in a bin of mean intensity) or None.
    background
        Relative smooth-background level or None.
    """

    representation: str = "mosaic"
    resolution: str = "builtin"
    mask: str = "kinematic"
    ei: float | None = None
    bins: tuple[int, ...] | None = None
    energy_range: tuple[float, float] | None = None
    energy_window: tuple[float, float] | None = None
    line: tuple[float, float, float, float] | None = None
    noise_flux: float | None = None
    background: float | None = None

    def __post_init__(self) -> None:
        if self.representation not in REPRESENTATIONS:
            raise InputDataError(
                format_error(
                    "Unknown representation",
                    reason=f"got {self.representation!r}; allowed: {', '.join(REPRESENTATIONS)}",
                )
            )
        misplaced = {
            "mosaic": ("ei", "bins", "energy_range", "energy_window", "line"),
            "volume": ("energy_window", "line"),
            "e_slice": ("energy_range", "line"),
            "qe_slice": ("energy_window",),
        }[self.representation]
        given = [k for k in misplaced if getattr(self, k) is not None]
        if given:
            raise InputDataError(
                format_error(
                    f"Settings {given} do not apply to the {self.representation} representation",
                    reason="the mosaic has the fixed pcsmo-mosaic-v1 layout (6 Ei, 10 windows, 40x40 Q)"
                    if self.representation == "mosaic" else f"{self.representation} does not use them",
                    fix="leave them out",
                )
            )
        res = str(self.resolution)
        if res.startswith("tables:"):
            res = "tables:" + str(Path(res[len("tables:"):]).expanduser().resolve())
        object.__setattr__(self, "resolution", res)
        if self.mask not in ("kinematic", "none"):
            object.__setattr__(self, "mask", str(Path(self.mask).expanduser().resolve()))
        for name in ("bins", "energy_range", "energy_window", "line"):
            v = getattr(self, name)
            if v is not None:
                conv = int if name == "bins" else float
                try:
                    object.__setattr__(self, name, tuple(conv(x) for x in v))
                except (TypeError, ValueError):
                    raise InputDataError(format_error(f"{name} is invalid", reason=f"got {v!r}")) from None
        if self.ei is not None:
            object.__setattr__(self, "ei", float(self.ei))
        if self.noise_flux is not None:
            PoissonNoise(self.noise_flux)
            object.__setattr__(self, "noise_flux", float(self.noise_flux))
        if self.background is not None:
            SmoothBackground(level=self.background)
            object.__setattr__(self, "background", float(self.background))

    def settings(self) -> dict[str, Any]:
        """JSON-safe settings (lists for tuples)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> "DatasetSpec":
        """Inverse of :meth:`settings`."""
        return cls(**dict(settings))

    def plan(self) -> Plan:
        """The representation's geometry (validates the settings, reads the mask)."""
        ei = 70.0 if self.ei is None else self.ei
        if self.representation == "mosaic":
            plan = plan_mosaic(mask=self.mask)
        elif self.representation == "volume":
            plan = plan_volume(ei=ei, bins=self.bins or (64, 64, 64), energy_range=self.energy_range, mask=self.mask)
        elif self.representation == "e_slice":
            plan = plan_e_slice(ei=ei, bins=self.bins or (40, 40), energy_window=self.energy_window, mask=self.mask)
        else:
            line = self.line or (-1.0, 0.0, 1.0, 0.0)
            plan = plan_qe_slice(ei=ei, bins=self.bins or (100, 100), start=line[:2], end=line[2:],
                                 energy_range=self.energy_range, mask=self.mask)
        plan.metadata["mask"] = self.mask if self.mask in ("kinematic", "none") else f"file:{self.mask}"
        return plan

    def noise(self) -> PoissonNoise | None:
        return None if self.noise_flux is None else PoissonNoise(self.noise_flux)

    def background_model(self) -> SmoothBackground | None:
        return None if self.background is None else SmoothBackground(level=self.background)


def sample_rng(seed: int, model: str, index: int) -> np.random.Generator:
    """The generator of sample ``index`` of model ``model`` in a data set with ``seed``."""
    key = zlib.crc32(str(model).encode("utf-8"))
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(key, int(index))))


def _draw(model: Any, rng: np.random.Generator) -> Any:
    sample = model.sample
    try:
        if "stable_only" in inspect.signature(sample).parameters:
            return sample(rng, stable_only=True)
    except (TypeError, ValueError):  # builtins without a signature
        pass
    return sample(rng)


def _unstable_error() -> type[BaseException] | None:
    try:
        from .spin_models import UnstableGroundStateError
    except ImportError:
        return None
    return UnstableGroundStateError


# Per-process caches: worker processes resolve models, tables and masks once.
_CONTEXT: dict[str, Any] = {}


def _context(spec: DatasetSpec) -> tuple[Plan, Any]:
    key = json.dumps(spec.settings(), sort_keys=True)
    if _CONTEXT.get("key") != key:
        _CONTEXT.clear()
        _CONTEXT.update(key=key, plan=spec.plan(), resolution=get_resolution(spec.resolution), models={})
    return _CONTEXT["plan"], _CONTEXT["resolution"]


def _model(ref: str) -> Any:
    models = _CONTEXT.setdefault("models", {})
    if ref not in models:
        models[ref] = resolve_model(ref)
    return models[ref]


def simulate_sample(
    spec: DatasetSpec, model_ref: str, index: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample ``index`` of a data set: ``(convolved, unconvolved, parameters)``.

    Parameters are drawn from the model's ranges (stable ordered states only where the model
    supports that); a draw whose simulation reports an unstable ground state is replaced by
    the next draw of the same generator.

    Returns
    -------
    convolved, unconvolved
        float32 arrays of the representation's shape, NaN where masked.
    parameters
        float64 ``(P,)`` in ``parameter_names`` order.
    """
    plan, res = _context(spec)
    model = _model(model_ref)
    rng = sample_rng(seed, model_name(model), index)
    unstable = _unstable_error()
    last: BaseException | None = None
    for _ in range(_MAX_REDRAWS):
        params = _draw(model, rng)
        try:
            conv, unconv = simulate_plan(
                plan, model, params, resolution=res, rng=rng, noise=spec.noise(), background=spec.background_model()
            )
        except Exception as exc:
            if unstable is not None and isinstance(exc, unstable):
                last = exc
                continue
            raise
        return conv.signal.astype(np.float32), unconv.signal.astype(np.float32), param_vector(model, params)
    raise InputDataError(
        format_error(
            f"No stable parameters for sample {index} of model {model_name(model)!r}",
            reason=f"{_MAX_REDRAWS} draws gave unstable ground states (last: {last})",
        )
    )


def _worker(task: tuple[dict[str, Any], str, str, int, int]) -> tuple[str, int, np.ndarray, np.ndarray, np.ndarray]:
    settings, group, ref, index, seed = task
    conv, unconv, params = simulate_sample(DatasetSpec.from_settings(settings), ref, index, seed)
    return group, index, conv, unconv, params


# ============================================================================ writing
def _atomic_skeleton(path: Path, build: Callable[[Any], None]) -> None:
    import h5py

    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=str(path.parent))
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            build(f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _no_evictions(f: Any) -> None:
    """Keep HDF5 from writing metadata except at flushes (see the module notes)."""
    cfg = f.id.get_mdc_config()
    cfg.evictions_enabled = False
    cfg.incr_mode = 0
    cfg.flash_incr_mode = 0
    cfg.decr_mode = 0
    f.id.set_mdc_config(cfg)


def _read_json_attr(attrs: Any, key: str, default: Any = None) -> Any:
    if key not in attrs:
        return default
    v = attrs[key]
    if isinstance(v, bytes):
        v = v.decode("utf-8")
    return json.loads(v)


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


def _check_existing(path: Path, spec: DatasetSpec, names: list[str], seed: int, mask: np.ndarray) -> None:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputDataError(
            format_error(
                f"Output file '{path}' exists but cannot be opened as a data set",
                reason=f"it is not an HDF5 file this version can read ({' '.join(str(exc).split())})",
                fix="choose another --output file; this one is left as it is",
            )
        ) from exc
    with f:
        if f.attrs.get("format") != FORMAT:
            raise InputDataError(
                format_error(
                    f"Output file '{path}' exists and is not an exp2sim data set",
                    reason=f"format attribute {f.attrs.get('format')!r}",
                    fix="choose another --output file; this one is left as it is",
                )
            )
        diffs = []
        if int(f.attrs["format_version"]) != FORMAT_VERSION:
            diffs.append(f"format_version {int(f.attrs['format_version'])} != {FORMAT_VERSION}")
        old = _read_json_attr(f.attrs, "settings", {})
        new = spec.settings()
        for k in sorted(set(old) | set(new)):
            if k != "mask" and old.get(k) != new.get(k):
                diffs.append(f"{k}: file {old.get(k)!r}, requested {new.get(k)!r}")
        if (old.get("mask") in ("kinematic", "none") or new["mask"] in ("kinematic", "none")) and old.get("mask") != new["mask"]:
            diffs.append(f"mask: file {old.get('mask')!r}, requested {new['mask']!r}")
        elif not np.array_equal(f["mask"][()].astype(bool), mask):
            diffs.append("mask: the mask arrays differ")
        old_models = _read_json_attr(f.attrs, "models", [])
        if old_models != names:
            diffs.append(f"models: file {old_models}, requested {names}")
        if int(f.attrs["seed"]) != seed:
            diffs.append(f"seed: file {int(f.attrs['seed'])}, requested {seed}")
        if diffs:
            raise InputDataError(
                format_error(
                    f"Output file '{path}' was written with different settings",
                    reason="; ".join(diffs),
                    fix="use the same settings to append or resume, or write a new file",
                )
            )


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

    if path.exists():
        _check_existing(path, spec, names, int(seed), mask)
    elif resume:
        raise InputDataError(
            format_error(f"Nothing to resume: '{path}' does not exist", fix="run without --resume to create it")
        )
    else:
        meta = dict(plan.metadata)

        def build(f: Any) -> None:
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
            for label, (m, name) in enumerate(zip(resolved, names)):
                g = f.create_group(name)
                g.attrs["label"] = label
                g.attrs["parameter_names"] = json.dumps(list(m.parameter_names))
                g.attrs["complete"] = 0
                g.attrs["target"] = 0
                for kind in ("convolved", "unconvolved"):
                    g.create_dataset(
                        kind, shape=(0,) + shape, maxshape=(None,) + shape, dtype=np.float32,
                        chunks=(1,) + shape, compression="gzip", compression_opts=4, shuffle=True,
                        fillvalue=np.float32(np.nan),
                    )
                p = len(m.parameter_names)
                g.create_dataset("parameters", shape=(0, p), maxshape=(None, p), dtype=np.float64,
                                 chunks=(64, max(p, 1)))
                g.create_dataset("sample_index", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(256,))

        _atomic_skeleton(path, build)

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
            for kind in ("convolved", "unconvolved", "parameters", "sample_index"):
                if g[kind].shape[0] < target:
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


def _store(f: Any, group: str, index: int, conv: np.ndarray, unconv: np.ndarray, params: np.ndarray) -> None:
    g = f[group]
    if index != int(g.attrs["complete"]):  # pragma: no cover - ordered results guarantee this
        raise RuntimeError(f"sample {index} of {group} arrived out of order")
    g["convolved"][index] = conv
    g["unconvolved"][index] = unconv
    g["parameters"][index] = params
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
    for group, index, conv, unconv, params in results:
        _store(f, group, index, conv, unconv, params)
        bar.update(1)
        if on_sample is not None:
            on_sample(group, index + 1)


# ============================================================================ reading
class SpectraDataset:
    """Lazy reader of a data set file (one sample read per item; picklable).

    Parameters
    ----------
    path
        The HDF5 file.
    kind
        ``"convolved"`` or ``"unconvolved"``.
    models
        Names of the models to include (default all); labels stay those of the file.

    Notes
    -----
    Only the first ``complete`` rows of each model are used. The file is opened on first
    access in each process (so a ``torch.utils.data.DataLoader`` worker opens its own handle)
    and items are ``(float32 array with NaN where masked, label)``.
    """

    def __init__(self, path: str | os.PathLike, kind: str = "convolved", models: Sequence[str] | None = None):
        import h5py

        if kind not in ("convolved", "unconvolved"):
            raise InputDataError(
                format_error("kind is invalid", reason=f"got {kind!r}; allowed: 'convolved', 'unconvolved'")
            )
        self.path = str(path)
        self.kind = kind
        if not Path(self.path).is_file():
            raise InputDataError(format_error(f"Data set '{self.path}' does not exist", fix="check the path"))
        try:
            f = h5py.File(self.path, "r")
        except OSError as exc:
            raise InputDataError(format_error(f"Data set '{self.path}' cannot be opened", reason=str(exc))) from exc
        with f:
            if f.attrs.get("format") != FORMAT:
                raise InputDataError(
                    format_error(
                        f"'{self.path}' is not an exp2sim data set",
                        reason=f"format attribute {f.attrs.get('format')!r}, expected {FORMAT!r}",
                    )
                )
            self.representation = str(f.attrs["representation"])
            self.axes = tuple(Axis.from_dict(d) for d in _read_json_attr(f.attrs, "axes"))
            self.metadata = _read_json_attr(f.attrs, "metadata", {})
            self.settings = _read_json_attr(f.attrs, "settings", {})
            self.seed = int(f.attrs["seed"])
            self.command = _read_json_attr(f.attrs, "command", [])
            names = _read_json_attr(f.attrs, "models", [])
            labels = {n: int(f[n].attrs["label"]) for n in names}
            self.class_names = [n for n, _ in sorted(labels.items(), key=lambda kv: kv[1])]
            chosen = list(self.class_names) if models is None else [str(m) for m in models]
            unknown = [m for m in chosen if m not in labels]
            if unknown:
                raise InputDataError(
                    format_error(
                        f"Data set '{self.path}' has no model {unknown}",
                        reason=f"it holds {self.class_names}",
                    )
                )
            self.models = chosen
            self._labels = [labels[m] for m in chosen]
            self._counts = [int(f[m].attrs["complete"]) for m in chosen]
            self._param_names = {m: _read_json_attr(f[m].attrs, "parameter_names", []) for m in chosen}
            self.mask = f["mask"][()].astype(bool)
        self._offsets = np.concatenate([[0], np.cumsum(self._counts)]).astype(np.int64)
        self._h5: Any = None
        self._pid: int | None = None

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
    def shape(self) -> tuple[int, ...]:
        """Shape of one sample."""
        return tuple(ax.bins for ax in self.axes)

    @property
    def counts(self) -> dict[str, int]:
        """Usable samples per model."""
        return dict(zip(self.models, self._counts))

    def _locate(self, i: int) -> tuple[str, int, int]:
        n = len(self)
        ii = int(i)
        if ii < 0:
            ii += n
        if not 0 <= ii < n:
            raise IndexError(f"index {i} out of range for a data set of {n} samples")
        j = int(np.searchsorted(self._offsets, ii, side="right") - 1)
        return self.models[j], ii - int(self._offsets[j]), self._labels[j]

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        model, row, label = self._locate(i)
        arr = np.asarray(self._file()[model][self.kind][row], dtype=np.float32)
        return arr, label

    def label(self, i: int) -> int:
        """Label of item ``i`` (without reading its data)."""
        return self._locate(i)[2]

    def model_of(self, i: int) -> str:
        """Model name of item ``i``."""
        return self._locate(i)[0]

    def parameters(self, i: int) -> dict[str, float]:
        """Parameters of item ``i`` as ``{name: value}``."""
        model, row, _ = self._locate(i)
        vec = self._file()[model]["parameters"][row]
        return {n: float(v) for n, v in zip(self._param_names[model], vec)}

    def pair(self, i: int) -> tuple[np.ndarray, np.ndarray, int]:
        """``(convolved, unconvolved, label)`` of item ``i``."""
        model, row, label = self._locate(i)
        g = self._file()[model]
        return np.asarray(g["convolved"][row], np.float32), np.asarray(g["unconvolved"][row], np.float32), label
