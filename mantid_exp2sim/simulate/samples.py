"""One sample of a data set: the settings that shape it and its deterministic simulation.

:class:`DatasetSpec` holds every setting that shapes a sample except the model and the seed
(representation, resolution, mask, geometry, noise); :func:`simulate_sample` computes sample
``i`` of model ``m``, drawing its parameters (and noise) from a generator seeded by
``SeedSequence(seed, spawn_key=(crc32(m), i))`` (:func:`sample_rng`), so a data set's content
depends on the seed and the settings only: not on the number of worker processes, the order
of the models, or how often the run was interrupted and resumed (:mod:`.dataset`).

A **measured-like** spec (``DatasetSpec(measured_like=MeasuredLikeSettings(...))``, mosaic
only) draws per sample, from the same generator and before the exchange parameters, the
nuisance parameters (:mod:`.nuisance_sampling`: measurement model, then processing chain),
simulates the pair with the drawn measurement model, and passes the noise-free convolved
mosaic through the drawn processing chain (:func:`simulate_measured_like_sample`).
"""

from __future__ import annotations

import inspect
import json
import zlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import numpy as np

from ..errors import InputDataError, format_error
from .modelref import model_name, param_vector, resolve_model
from .noise import PoissonNoise, SmoothBackground
from .nuisance_sampling import MeasuredLikeSettings, NuisanceDraw
from .representations import Plan, representation
from .resolution import get_resolution
from .spectra import simulate_plan

__all__ = ["DatasetSpec", "MeasuredLikeSample", "sample_rng", "simulate_sample", "simulate_measured_like_sample"]

#: The geometry settings of a :class:`DatasetSpec`; each representation takes some of them.
_GEOMETRY = ("ei", "bins", "energy_range", "energy_window", "line")
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
    ei, bins, energy_range, energy_window, line
        The geometry, each for the representations that use it (see
        :data:`~.representations.REPRESENTATIONS`): ``ei`` in meV, ``bins`` per dimension,
        ``energy_range`` (min, max) meV of volumes and Q-E slices, ``energy_window`` (min, max)
        meV of an E slice, ``line`` (start_h, start_k, end_h, end_k) of a Q-E slice in r.l.u.;
        None takes the planner's default (``plan_volume``, ``plan_e_slice``, ``plan_qe_slice``).
    noise_flux
        Poisson noise flux (counts in a bin of mean intensity) or None.
    background
        Relative smooth-background level or None.
    measured_like
        None (a plain data set) or the :class:`~.nuisance_sampling.MeasuredLikeSettings` (or
        their ``settings()`` mapping) of a measured-like data set: mosaic only, without
        ``noise_flux`` and ``background`` (its processing chain adds counting noise and
        background).
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
    measured_like: MeasuredLikeSettings | None = None

    def __post_init__(self) -> None:
        rep = representation(self.representation)
        given = [k for k in _GEOMETRY if k not in rep.settings and getattr(self, k) is not None]
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
        self._check_measured_like()

    def _check_measured_like(self) -> None:
        ml = self.measured_like
        if ml is None:
            return
        if isinstance(ml, Mapping):
            ml = MeasuredLikeSettings.from_settings(ml)
        elif not isinstance(ml, MeasuredLikeSettings):
            raise InputDataError(format_error("measured_like is invalid", reason=f"got {type(ml).__name__}",
                                              fix="pass MeasuredLikeSettings or None"))
        object.__setattr__(self, "measured_like", ml)
        if self.representation != "mosaic":
            raise InputDataError(format_error(
                f"--measured-like does not apply to the {self.representation} representation",
                reason="the processing chain is calibrated per incident energy of the pcsmo-mosaic-v1 mosaic",
                fix="use --representation mosaic"))
        given = [opt for opt, v in (("--noise-flux", self.noise_flux), ("--background", self.background))
                 if v is not None]
        if given:
            raise InputDataError(format_error(
                f"{' and '.join(given)} do not apply with --measured-like",
                reason="its processing chain adds the counting noise and background itself",
                fix="leave them out (set --count-level or --subtracted-background instead)"))

    def settings(self) -> dict[str, Any]:
        """JSON-safe settings (lists for tuples); ``measured_like`` only when set (so the
        settings of a plain data set are those of files written before it existed)."""
        out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}
        if out.get("measured_like") is None:
            out.pop("measured_like", None)
        return out

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> "DatasetSpec":
        """Inverse of :meth:`settings`."""
        return cls(**dict(settings))

    def plan(self) -> Plan:
        """The representation's geometry (validates the settings, reads the mask); settings left
        out take the planner's defaults (:data:`~.representations.REPRESENTATIONS`)."""
        geometry = {k: getattr(self, k) for k in _GEOMETRY[:-1] if getattr(self, k) is not None}
        if self.line is not None:
            geometry.update(start=self.line[:2], end=self.line[2:])
        return representation(self.representation).plan(mask=self.mask, **geometry)

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


def measured_like_chain(spec: DatasetSpec, shape: tuple[int, int]) -> Any:
    """The calibrated processing chain of a measured-like spec, its measured mask read once.

    Raises
    ------
    InputDataError
        The measured mask file is missing while samples may use it.
    """
    from .nuisance_sampling import default_chain

    base = default_chain()
    ml = spec.measured_like
    if ml is None:
        raise InputDataError(format_error("The spec is not measured-like", fix="set measured_like"))
    if not ml.needs_measured_mask():
        return replace(base, mask="kinematic")
    path = ml.measured_mask_path()
    if not path.is_file():
        raise InputDataError(format_error(
            f"The measured detector mask '{path}' (--measured-mask) does not exist",
            reason="measured-like samples use it with the probability --measured-mask-probability",
            fix="set EXP2SIM_SHARED to the folder holding data/pcsmo/nanmask.mat, pass --measured-mask FILE, "
            "or --measured-mask-probability 0 (kinematic mask only)"))
    from .coverage import load_mask

    return replace(base, mask=load_mask(path, shape))


def _chain(spec: DatasetSpec, plan: Plan) -> Any:
    if "chain" not in _CONTEXT:
        _CONTEXT["chain"] = measured_like_chain(spec, plan.shape)
    return _CONTEXT["chain"]


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
    if spec.measured_like is not None:
        s = simulate_measured_like_sample(spec, model_ref, index, seed)
        return s.convolved, s.unconvolved, s.parameters
    plan, res = _context(spec)
    model = _model(model_ref)
    rng = sample_rng(seed, model_name(model), index)
    conv, unconv, params = _simulate_stable(plan, model, res, rng, index, noise=spec.noise(),
                                            background=spec.background_model())
    return conv.signal.astype(np.float32), unconv.signal.astype(np.float32), param_vector(model, params)


class MeasuredLikeSample(NamedTuple):
    """One sample of a measured-like data set."""

    #: float32 mosaic after the processing chain (measured units; zeros, clip, NaN where masked).
    measured_like: np.ndarray
    #: float32 noise-free convolved mosaic in model units (scale NOT applied), NaN where masked.
    convolved: np.ndarray
    #: float32 unconvolved mosaic in model units.
    unconvolved: np.ndarray
    #: float64 exchange parameters in ``parameter_names`` order.
    parameters: np.ndarray
    #: The drawn nuisance parameters.
    nuisance: NuisanceDraw


def simulate_measured_like_sample(spec: DatasetSpec, model_ref: str, index: int, seed: int) -> MeasuredLikeSample:
    """Sample ``index`` of a measured-like data set (see the module notes).

    The generator of the sample (:func:`sample_rng`) draws, in this order, the measurement
    model, the processing chain, the exchange parameters (redrawn while unstable) and the
    counting noise.
    """
    plan, res = _context(spec)
    chain = _chain(spec, plan)
    model = _model(model_ref)
    rng = sample_rng(seed, model_name(model), index)
    draw = spec.measured_like.draw(rng, chain=chain)
    if spec.measured_like.twin_fraction is None and len(getattr(model, "twins", None) or ()) != 2:
        # a model without two twin domains has no twin fraction to draw
        draw = draw._replace(measurement_model=replace(draw.measurement_model, twin_fraction=None))
    kwargs = dict(draw.measurement_model.simulate_kwargs())
    conv, unconv, params = _simulate_stable(plan, model, res, rng, index, **kwargs)
    measured = draw.chain.apply(conv.signal, rng)
    return MeasuredLikeSample(measured.astype(np.float32), conv.signal.astype(np.float32),
                              unconv.signal.astype(np.float32), param_vector(model, params), draw)


def _simulate_stable(plan: Plan, model: Any, res: Any, rng: np.random.Generator, index: int,
                     **kwargs: Any) -> tuple[Any, Any, Any]:
    """Draw parameters and simulate, redrawing unstable ground states; ``(conv, unconv, params)``."""
    unstable = _unstable_error()
    last: BaseException | None = None
    for _ in range(_MAX_REDRAWS):
        params = _draw(model, rng)
        try:
            conv, unconv = simulate_plan(plan, model, params, resolution=res, rng=rng, **kwargs)
        except Exception as exc:
            if unstable is not None and isinstance(exc, unstable):
                last = exc
                continue
            raise
        return conv, unconv, params
    raise InputDataError(
        format_error(
            f"No stable parameters for sample {index} of model {model_name(model)!r}",
            reason=f"{_MAX_REDRAWS} draws gave unstable ground states (last: {last})",
        )
    )


def _worker(
    task: tuple[dict[str, Any], str, str, int, int]
) -> tuple[str, int, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    settings, group, ref, index, seed = task
    spec = DatasetSpec.from_settings(settings)
    if spec.measured_like is None:
        conv, unconv, params = simulate_sample(spec, ref, index, seed)
        return group, index, conv, unconv, params, {}
    s = simulate_measured_like_sample(spec, ref, index, seed)
    return group, index, s.convolved, s.unconvolved, s.parameters, {
        "measured_like": s.measured_like, "nuisance": s.nuisance.vector()}
