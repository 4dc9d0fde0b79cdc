"""Lazy package attributes: a package's public names imported from their submodule on first use.

Used by packages whose modules need an optional dependency (``models/``: torch) or are slow
to import (``train/``), so that importing the package itself stays cheap and dependency-free.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping

__all__ = ["lazy_attributes"]


def lazy_attributes(
    package: str,
    table: Mapping[str, str],
    namespace: Mapping[str, Any],
    *,
    before_import: Callable[[str], None] | None = None,
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` for a package with lazily imported names.

    Parameters
    ----------
    package
        The package's ``__name__``.
    table
        Public name -> submodule of ``package`` that defines it.
    namespace
        The package's ``globals()`` (what ``__dir__`` lists besides the lazy names).
    before_import
        Called with the name before its submodule is imported (e.g. to raise
        :class:`~mantid_exp2sim.errors.MissingDependencyError` with the install hint).

    Returns
    -------
    tuple
        ``(__getattr__, __dir__)``, to assign in the package's ``__init__``.
    """

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        if before_import is not None:
            before_import(name)
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(table))

    return __getattr__, __dir__
