"""translate(): run a generator bundle over an MDHisto, tiled, exact, on any backend.

Pipeline for one input (see docs/inference.md):

1. check the input against the bundle (dimensionality, size-1 dimensions, NaN/Inf);
2. ``scale = intensity_scale(signal)`` once over the whole input;
3. the network input of every tile is ``[x / scale with NaN -> 0, valid mask]`` (the
   bundle's normalisation), padded at the end of each axis to a multiple of the network's
   ``2**n_down`` with the bundle's padding rule;
4. overlap tiles (:mod:`.tiler`) run through an ONNX Runtime or PyTorch backend in batches;
5. each tile's core is multiplied by ``scale`` and masked bins become NaN again;
6. the stitched output is multiplied by one number that gives it the input's integrated
   intensity (:mod:`.conservation`; optional, on by default).

The result equals whole-input inference (pad, run once, crop) to float32 round-off.
Output errors are ``None``: the generator gives no uncertainty, and propagating the input's
errors bin by bin through a learned, non-local map would be wrong (docs/inference.md).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .._version import __version__
from ..errors import BundleError, InputDataError, format_error
from ..bundle.quality import validation_warning
from ..bundle.resolve import resolve_bundle
from .. import histogram
from ..histogram import MDHisto
from .backends import InferenceBackend, OOMBackoff, get_backend
from .conservation import IntensitySums, conservation_factor
from .tiler import TilePlan, plan_tiles, run_tiled

__all__ = [
    "ModelSpec",
    "model_spec",
    "network_dims",
    "checked_scale",
    "checked_statistics",
    "plan_for",
    "provenance",
    "resolve_batch_size",
    "resolve_patch",
    "translate",
    "translate_array",
    "default_batch_size",
    "default_tile",
    "TILE_MEMORY_BUDGET",
    "DEFAULT_PATCH",
]

log = logging.getLogger("mantid_exp2sim.inference")

Progress = Callable[[int, int], Any]

#: Largest default tile edge per ndim and device (the planner then shrinks tiles to the
#: smallest size that covers the input with as few tiles as this allows).
# CPU 2D: ONNX Runtime's rate per bin halves above ~600k bins a tile (2271 kpx/s at 512^2,
# 1074 at 1024^2, shipped 2D model, 2-core CPU), which outweighs the extra halo of smaller tiles.
DEFAULT_PATCH = {"cpu": {2: 512, 3: 256}, "gpu": {2: 2048, 3: 320}}

#: Activation memory one tile may take by default (bytes): the CPU figure keeps a streamed
#: 256^3 translation with the 3D default model under 2 GB of peak RSS; on a GPU the batch
#: size fills the GPU budget with tiles.
TILE_MEMORY_BUDGET = {"cpu": 1.75 * 2**30, "gpu": 8 * 2**30}

# Padding names of models.normalisation.pad_to_multiple -> numpy/tiler names.
_PAD_MODE_TO_NUMPY = {"replicate": "edge", "reflect": "reflect", "edge": "edge", "zeros": "constant", "constant": "constant"}


@dataclass(frozen=True)
class ModelSpec:
    """What the engine needs to know about a generator bundle.

    Parameters
    ----------
    ndim
        Spatial dimensions the network takes (2 or 3).
    in_channels, out_channels
        Network channels (2 in: scaled signal and valid mask; 1 out).
    halo
        Bins discarded at each inner tile edge (>= the receptive-field radius).
    multiple
        Spatial sizes and tile offsets must be multiples of this (``2**n_down``).
    min_size
        Smallest spatial size per axis the network accepts (a multiple of ``multiple``).
    patch
        The bundle's suggested tile edge per dimension (network input size, halo included),
        or None.
    bytes_per_bin
        Estimated peak activation memory per bin of a tile (ONNX Runtime on CPU measures
        about ``4 * (in + out) + 26 * ngf`` bytes for the ResNet generator).
    pad_mode
        numpy name of the end-padding rule used to reach a multiple of ``multiple``.
    task, direction, kind, bundle_id, sha256
        From the manifest, for checks and provenance.
    """

    ndim: int
    in_channels: int
    out_channels: int
    halo: int
    multiple: int
    min_size: int
    patch: tuple[int, ...] | None
    bytes_per_bin: float
    pad_mode: str
    task: str
    direction: str | None
    kind: str
    bundle_id: str
    sha256: str


def _manifest(bundle: Any) -> Mapping[str, Any]:
    manifest = getattr(bundle, "manifest", None)
    if not isinstance(manifest, Mapping):
        raise BundleError(
            format_error(
                "Not a model bundle",
                reason=f"got {type(bundle).__name__} without a manifest",
                fix="pass a path to a .exp2sim.h5 file or mantid_exp2sim.bundle.load_bundle(path)",
            )
        )
    return manifest


def _min_size_from_config(config: Mapping[str, Any], multiple: int) -> int:
    # Mirrors ResnetGenerator.min_spatial_size without importing torch.
    n_down = int(config.get("n_down", round(math.log2(multiple))))
    stem = int(config.get("stem_kernel", 7))
    if config.get("padding_mode", "reflect") == "zeros":
        need = multiple
    else:
        need = max(stem // 2 + 1, 2 * multiple if n_down else 2)
    return int(math.ceil(need / multiple) * multiple)


def model_spec(bundle: Any) -> ModelSpec:
    """Read the tiling and normalisation settings of a generator bundle.

    Raises
    ------
    BundleError
        If the bundle is not a generator or lacks the settings.
    """
    man = _manifest(bundle)
    kind = str(man.get("kind", "generator"))
    if kind != "generator":
        raise BundleError(
            format_error(
                "This bundle cannot translate spectra",
                reason=f"bundle {man.get('bundle_id')!r} is a {kind!r} bundle; translation needs a 'generator'",
                fix="use a deconvolve or convolve bundle (default_bundle_path('deconvolve', ndim))",
            )
        )
    try:
        ndim = int(man["ndim"])
        patch_info = dict(man.get("patch") or {})
        config = dict((man.get("architecture") or {}).get("config") or {})
        multiple = int(patch_info.get("multiple") or 2 ** int(config.get("n_down", 2)))
        halo = int(patch_info["halo"])
        size = patch_info.get("size")
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(
            format_error(
                "The bundle manifest lacks tiling settings",
                reason=f"missing or invalid entry {exc}",
                fix="re-export the bundle with the current exp2sim-train",
            )
        ) from exc
    patch = None if size is None else tuple(int(s) for s in (size if np.ndim(size) else [size] * ndim))
    in_ch, out_ch = int(man.get("in_channels", 2)), int(man.get("out_channels", 1))
    bytes_per_bin = 4.0 * (in_ch + out_ch) + 26.0 * float(config.get("ngf", 32))
    norm = man.get("normalisation") or {}
    pad_name = str(norm.get("pad_mode", "replicate")) if isinstance(norm, Mapping) else "replicate"
    if pad_name not in _PAD_MODE_TO_NUMPY:
        raise BundleError(
            format_error(
                "Unknown padding rule in the bundle",
                reason=f"normalisation.pad_mode = {pad_name!r}; known: {sorted(_PAD_MODE_TO_NUMPY)}",
            )
        )
    min_size = int(patch_info.get("min_size") or _min_size_from_config(config, multiple))
    return ModelSpec(
        ndim=ndim,
        in_channels=in_ch,
        out_channels=out_ch,
        halo=halo,
        multiple=multiple,
        min_size=min_size,
        patch=patch,
        bytes_per_bin=bytes_per_bin,
        pad_mode=_PAD_MODE_TO_NUMPY[pad_name],
        task=str(man.get("task", "")),
        direction=man.get("direction"),
        kind=kind,
        bundle_id=str(getattr(bundle, "bundle_id", None) or man.get("bundle_id", "")),
        sha256=str(getattr(bundle, "sha256", "") or ""),
    )



def resolve_batch_size(batch_size: int | None, plan: TilePlan, spec: ModelSpec, engine: InferenceBackend) -> int:
    """``batch_size`` checked, or :func:`default_batch_size` when None."""
    if batch_size is None:
        return default_batch_size(plan.tile_shape, spec, engine.device)
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(
            format_error(
                "Invalid batch_size",
                reason=f"got {batch_size!r}; need a whole number >= 1",
                fix="leave it unset for the default (1 on the CPU)",
            )
        )
    return int(batch_size)


def default_batch_size(tile_shape: Sequence[int], spec: ModelSpec, device: str) -> int:
    """Tiles per network call: 1 on the CPU (threads already fill the cores); on a GPU as
    many tiles as fit :data:`TILE_MEMORY_BUDGET` (an out-of-memory error halves it)."""
    if device != "gpu":
        return 1
    per_tile = float(np.prod(tile_shape)) * spec.bytes_per_bin
    return int(max(1, min(64, TILE_MEMORY_BUDGET["gpu"] // max(1.0, per_tile))))


def default_tile(spec: ModelSpec, device: str) -> tuple[int, ...]:
    """Largest tile edge whose activations fit :data:`TILE_MEMORY_BUDGET`, capped by
    :data:`DEFAULT_PATCH`, a multiple of the network's ``2**n_down``."""
    where = "gpu" if device == "gpu" else "cpu"
    m = spec.multiple
    edge = (TILE_MEMORY_BUDGET[where] / spec.bytes_per_bin) ** (1.0 / spec.ndim)
    edge = min(DEFAULT_PATCH[where][spec.ndim], int(edge) // m * m)
    # never so small that the kept core is narrower than the halo (the budget is then exceeded)
    edge = max(edge, m * math.ceil((3 * spec.halo + m) / m), spec.min_size)
    return (int(edge),) * spec.ndim


# ------------------------------------------------------------------------ checks
def network_dims(axes: Sequence[Any], spec: ModelSpec, bundle_id: str) -> list[int]:
    """Dimensions the network runs over: all of them, or the non-integrated ones of an input
    with extra size-1 dimensions (those are carried through untouched).

    Raises
    ------
    InputDataError
        When the number of dimensions does not fit the model, or a used dimension has one bin.
    """
    axes = list(axes)
    if len(axes) == spec.ndim:
        keep = list(range(len(axes)))
    else:
        keep = histogram.network_dims([ax.bins for ax in axes])
        if len(keep) != spec.ndim or len(axes) < spec.ndim:
            names = ", ".join(f"'{ax.name}' ({ax.bins} bins)" for ax in axes)
            raise InputDataError(
                format_error(
                    "The input's dimensionality does not match the model",
                    reason=f"the input has {len(axes)} dimensions ({names}), {len(keep)} "
                    f"of them with more than one bin; bundle '{bundle_id}' translates {spec.ndim}D data",
                    fix=f"bin the data to {spec.ndim} non-integrated dimensions (e.g. with BinMD), "
                    f"or use a {'3D' if spec.ndim == 2 else '2D'} bundle",
                )
            )
    small = [i for i in keep if axes[i].bins < 2]
    if small:
        raise InputDataError(
            format_error(
                "The input has a dimension with a single bin",
                reason=", ".join(f"'{axes[i].name}' has {axes[i].bins} bin" for i in small)
                + f"; the {spec.ndim}D model needs at least 2 bins along each of its {spec.ndim} dimensions",
                fix="rebin that dimension into more bins, or integrate it out and use a lower-dimensional model",
            )
        )
    return keep


def checked_statistics(signal: Any) -> Any:
    """Intensity statistics of a whole input, after checking it (one pass over the data).

    Returns
    -------
    IntensityScaleAccumulator
        Fed with all of ``signal``: its ``scale`` (the RMS used for normalisation), ``total``
        and ``total_abs`` (for intensity conservation).

    Raises
    ------
    InputDataError
        When a bin is +-inf or every bin is masked (NaN).
    """
    from ..models.normalisation import IntensityScaleAccumulator

    arr = np.asarray(signal, dtype=np.float64)
    acc = IntensityScaleAccumulator()
    acc.update(arr)  # raises on +-inf bins
    if acc.count == 0:
        raise InputDataError(
            format_error(
                "The input signal is entirely masked",
                reason=f"all {arr.size} bins are NaN",
                fix="check the input workspace: there is nothing to translate",
            )
        )
    return acc


def checked_scale(signal: Any) -> float:
    """:func:`~mantid_exp2sim.models.normalisation.intensity_scale` of a checked whole input.

    Raises
    ------
    InputDataError
        As :func:`checked_statistics`.
    """
    return float(checked_statistics(signal).scale)


def conserve_intensity_metadata(source: Any, output: Any, enabled: bool) -> tuple[float | None, dict[str, Any]]:
    """Factor to apply to a raw translation, and the metadata that records it.

    Parameters
    ----------
    source
        :class:`~mantid_exp2sim.models.normalisation.IntensityScaleAccumulator` of the input.
    output
        :class:`~.conservation.IntensitySums` of the raw translation.
    enabled
        The caller's ``conserve_intensity``; False records that it was switched off.
    """
    if not enabled:
        return None, {"intensity_factor": None, "intensity_conservation": "off"}
    result = conservation_factor(IntensitySums(source.total, source.total_abs), output)
    if result.factor is None:
        log.info("Integrated intensity %s", result.reason)
    return result.factor, result.metadata()


def resolve_patch(patch_size: Any, spec: ModelSpec, device: str = "cpu") -> tuple[int, ...]:
    """Tile edge per dimension.

    ``patch_size`` (one value or one per dimension) is rounded up to a multiple of the
    network's ``2**n_down`` and to its minimum size. When it is None, the bundle's
    ``patch.size`` is used if it leaves a core (>= ``2 * halo + multiple``), capped per
    dimension by :func:`default_tile` for ``device``; else :func:`default_tile` itself.
    """
    m = spec.multiple
    if patch_size is None:
        smallest = m * math.ceil((2 * spec.halo + m) / m)
        values = list(default_tile(spec, device))
        if spec.patch is not None and min(spec.patch) >= smallest:
            values = [min(int(p), d) for p, d in zip(spec.patch, values)]
    else:
        values = [patch_size] * spec.ndim if np.ndim(patch_size) == 0 else list(patch_size)
        if len(values) not in (1, spec.ndim):
            raise InputDataError(
                format_error(
                    "PatchSize has the wrong length",
                    reason=f"got {len(values)} values {values}; the model is {spec.ndim}D",
                    fix=f"give one value (used for every dimension) or {spec.ndim} values, dimension 0 first",
                )
            )
        if len(values) == 1:
            values = values * spec.ndim
    out = []
    for v in values:
        if int(v) != v or v < 1:
            raise InputDataError(
                format_error(
                    "Invalid PatchSize",
                    reason=f"got {values}; every value must be a positive whole number",
                    fix="leave PatchSize empty for the bundle's default",
                )
            )
        out.append(max(spec.min_size, int(math.ceil(int(v) / m) * m)))
    return tuple(out)


def plan_for(shape: Sequence[int], spec: ModelSpec, patch: Sequence[int]) -> TilePlan:
    """Tile plan of an input of ``shape`` (spatial, as the network sees it)."""
    m = spec.multiple
    after = [max(int(math.ceil(s / m) * m), spec.min_size) - s for s in shape]
    return plan_tiles(
        shape,
        tile=patch,
        halo=spec.halo,
        multiple=m,
        pad_before=[0] * len(shape),
        pad_after=after,
        mode=spec.pad_mode,
        pad_value=0.0,
    )


def translate_array(
    source: Any,
    sink: Any,
    net: Callable[[np.ndarray], np.ndarray],
    spec: ModelSpec,
    *,
    scale: float,
    patch: Sequence[int],
    batch_size: int,
    progress: Progress | None = None,
) -> TilePlan:
    """Tiled translation of one signal array into a preallocated sink (the engine's core).

    Parameters
    ----------
    source
        Input signal, shape ``spatial`` (numpy array or h5py dataset; NaN = masked).
    sink
        Writable array-like of the same shape, receiving ``G(x / scale) * scale`` with NaN at
        masked bins.
    net
        Backend callable on float32 batches ``(B, C_in, *tile)``.
    spec
        :func:`model_spec` of the bundle.
    scale
        :func:`~mantid_exp2sim.models.normalisation.intensity_scale` of the whole input.
    patch, batch_size, progress
        Tile edge per dimension, tiles per call, ``progress(done, total)`` after each batch.

    Returns
    -------
    TilePlan
        The plan used.
    """
    from ..models.normalisation import from_network_output, to_network_input

    plan = plan_for(tuple(source.shape), spec, patch)

    def prepare(raw: np.ndarray) -> np.ndarray:
        return to_network_input(raw, scale)[0]

    def finish(y_core: np.ndarray, raw_core: np.ndarray) -> np.ndarray:
        return from_network_output(y_core[None, : spec.out_channels], scale, ~np.isnan(raw_core))

    run_tiled(source, sink, net, plan, prepare=prepare, finish=finish, batch_size=batch_size, progress=progress)
    return plan


def translate(
    histo: MDHisto,
    bundle: Any,
    *,
    backend: str | InferenceBackend = "auto",
    device: str = "auto",
    batch_size: int | None = None,
    patch_size: int | Sequence[int] | None = None,
    progress: Progress | None = None,
    half: bool = False,
    conserve_intensity: bool = True,
) -> MDHisto:
    """Translate a histogram with a generator bundle (add or remove instrument resolution).

    Parameters
    ----------
    histo
        Input, ``ndim`` equal to the bundle's (size-1 dimensions beyond that are carried
        through untouched). NaN bins are masked: the network sees them as zero with a 0 in
        its mask channel, and they are NaN in the output.
    bundle
        A loaded :class:`~mantid_exp2sim.bundle.Bundle` or the path of a ``.exp2sim.h5`` file.
    backend
        ``"auto"`` (ONNX Runtime if installed, else PyTorch), ``"onnx"``, ``"torch"``, or a
        backend object from :func:`get_backend`.
    device
        ``"auto"`` (a GPU if one really works, else the CPU), ``"cpu"`` or ``"gpu"``.
    batch_size
        Tiles per network call (default :func:`default_batch_size`: 1 on CPU). On a CUDA
        out-of-memory error the batch is halved and retried.
    patch_size
        Tile edge (network input size, halo included), one value or one per dimension;
        rounded up to a multiple of the network's ``2**n_down``. Default: the bundle's.
        Changes memory use and speed, never the result.
    progress
        ``progress(tiles_done, tiles_total)`` after every batch; its exceptions (e.g.
        KeyboardInterrupt for a Mantid cancel) propagate immediately.
    half
        Half precision on a GPU (PyTorch backend).
    conserve_intensity
        Multiply the stitched output by one number so that its integral over the unmasked
        bins equals the input's (:mod:`.conservation`; skipped, with the reason recorded,
        when the data are not mostly positive).

    Returns
    -------
    MDHisto
        Same axes (names, units, extents, frames) and masked bins as ``histo``; ``errors``
        None; metadata of the input plus ``bundle_id``, ``bundle_sha256``, ``backend``,
        ``device``, ``precision``, ``package_version``, ``task``, ``direction``,
        ``intensity_scale``, ``intensity_factor``, ``intensity_conservation``,
        ``patch_size`` and ``n_tiles``.
    """
    if not isinstance(histo, MDHisto):
        raise InputDataError(
            format_error(
                "translate() needs an MDHisto",
                reason=f"got {type(histo).__name__}",
                fix="wrap arrays with MDHisto.from_array(signal)",
            )
        )
    b = resolve_bundle(bundle)
    spec = model_spec(b)
    keep = network_dims(histo.axes, spec, spec.bundle_id)
    signal = histo.signal.reshape([histo.shape[i] for i in keep])
    resolve_patch(patch_size, spec)  # argument errors before any backend is built
    stats = checked_statistics(signal)
    scale = float(stats.scale)
    engine, patch, plan, batch_size = _prepare_run(
        b, spec, signal.shape, backend=backend, device=device, half=half, patch_size=patch_size, batch_size=batch_size
    )
    out = np.empty(signal.shape, dtype=np.float64)
    translate_array(
        signal,
        out,
        OOMBackoff(engine),
        spec,
        scale=scale,
        patch=patch,
        batch_size=batch_size,
        progress=progress,
    )
    factor, conservation = conserve_intensity_metadata(stats, IntensitySums.of(out), conserve_intensity)
    if factor is not None:
        out *= factor
    meta = run_metadata(spec, engine, scale, plan, bundle=b)
    meta.update(conservation)
    return histo.with_signal(out.reshape(histo.shape), errors=None, metadata=meta)


def _prepare_run(
    bundle: Any,
    spec: ModelSpec,
    shape: Sequence[int],
    *,
    backend: str | InferenceBackend,
    device: str,
    half: bool,
    patch_size: int | Sequence[int] | None,
    batch_size: int | None,
) -> tuple[InferenceBackend, tuple[int, ...], TilePlan, int]:
    """Backend, tile edge, tile plan and batch size of one translation of ``shape``."""
    engine = get_backend(bundle, backend=backend, device=device, half=half)
    patch = resolve_patch(patch_size, spec, engine.device)
    plan = plan_for(shape, spec, patch)
    return engine, patch, plan, resolve_batch_size(batch_size, plan, spec, engine)


def run_metadata(
    spec: ModelSpec, engine: InferenceBackend, scale: float, plan: TilePlan, *, bundle: Any = None
) -> dict[str, Any]:
    """:func:`provenance` plus the run's ``intensity_scale``, ``patch_size`` and ``n_tiles``.

    With ``bundle``, also ``model_warning`` (logged) when the bundle's own validation scored
    below doing nothing (:func:`mantid_exp2sim.bundle.quality.validation_warning`).
    """
    meta = provenance(spec, engine)
    meta.update(intensity_scale=scale, patch_size=list(plan.tile_shape), n_tiles=plan.n_tiles)
    warning = None if bundle is None else validation_warning(_manifest(bundle))
    if warning:
        log.warning(warning)
        meta["model_warning"] = warning
    return meta


def provenance(spec: ModelSpec, engine: InferenceBackend) -> dict[str, Any]:
    """Metadata every translated output carries."""
    return {
        "bundle_id": spec.bundle_id,
        "bundle_sha256": spec.sha256,
        "backend": engine.name,
        "device": engine.device,
        "precision": engine.precision,
        "package_version": __version__,
        "task": spec.task,
        "direction": spec.direction,
    }
