"""Mantid algorithms of mantid-exp2sim: the only package that imports mantid.

``register_algorithms()`` is the one place that subscribes them (called by the package's
``__init__`` when Mantid is importable, and by the plugin stub that ``exp2sim
mantid-setup`` writes). Each algorithm lives in a module of the same name as its class,
which is also its Mantid name.
"""

from __future__ import annotations

import importlib
import sys
import warnings

__all__ = ["ALGORITHMS", "register_algorithms"]

#: Every algorithm of the package, by name (= module name = class name). One explicit list.
ALGORITHMS: tuple[str, ...] = (
    "ResolutionDeconvolveGAN",
    "ResolutionConvolveGAN",
    "ClassifySpinWaveModel",
    "ScoreDomainApplicability",
    "FitSpinWaveModel",
)


def register_algorithms() -> list[str]:
    """Subscribe every algorithm in :data:`ALGORITHMS` to Mantid's AlgorithmFactory.

    If ``mantid.simpleapi`` is already imported, each algorithm is also added to it
    (``mantid.simpleapi._create_algorithm_function``), because simpleapi creates its
    functions only when it is first imported. Subscribing again replaces the previous
    registration, so calling this twice is harmless.

    Returns
    -------
    list of str
        The names registered; empty (with a RuntimeWarning) when Mantid cannot be imported.
    """
    try:
        from mantid.api import AlgorithmFactory
    except Exception as exc:  # noqa: BLE001 - a broken Mantid must not break `import mantid_exp2sim`
        warnings.warn(
            f"mantid-exp2sim: Mantid is installed but could not be imported ({exc!r}); "
            "its algorithms are not registered. The command-line tools still work.",
            RuntimeWarning,
            stacklevel=2,
        )
        return []
    classes = []
    for name in ALGORITHMS:
        module = importlib.import_module(f"{__name__}.{name}")
        cls = getattr(module, name)
        AlgorithmFactory.subscribe(cls)
        classes.append(cls)
    simpleapi = sys.modules.get("mantid.simpleapi")
    create = getattr(simpleapi, "_create_algorithm_function", None) if simpleapi is not None else None
    if create is not None:
        for cls in classes:
            instance = cls()
            instance.initialize()
            create(cls.__name__, int(instance.version()), instance)
    return [cls.__name__ for cls in classes]
