"""Mantid algorithms of mantid-exp2sim: the only package that imports mantid.

``register_algorithms()`` is the one place that subscribes them (called by the package's
``__init__`` when Mantid is importable).
"""


def register_algorithms() -> None:
    """Subscribe every algorithm to Mantid's AlgorithmFactory (filled in by the plugin work)."""
