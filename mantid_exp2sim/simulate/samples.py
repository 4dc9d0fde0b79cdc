"""One sample of a data set: the settings that shape it and its deterministic simulation.

:class:`DatasetSpec` holds every setting that shapes a sample except the model and the seed
(representation, resolution, mask, geometry, noise); :func:`simulate_sample` computes sample
``i`` of model ``m``, drawing its parameters (and noise) from a generator seeded by
``SeedSequence(seed, spawn_key=(crc32(m), i))`` (:func:`sample_rng`), so a data set's content
depends on the seed and the settings only: not on the number of worker processes, the order
of the models, or how often the run was interrupted and resumed (:mod:`.dataset`).
"""

from __future__ import annotations

import inspect
import json
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import InputDataError, format_error
from .modelref import model_name, param_vector, resolve_model
from .noise import PoissonNoise, SmoothBackground
from .representations import Plan, representation
from .resolution import get_resolution
from .spectra import simulate_plan

__all__ = ["DatasetSpec", "sample_rng", "simulate_sample"]

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

    def settings(self) -> dict[str, Any]:
        """JSON-safe settings (lists for tuples)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

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
