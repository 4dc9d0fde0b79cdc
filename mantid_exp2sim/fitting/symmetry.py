"""Exact symmetries of spin models: relabellings of parameters that leave the spectrum unchanged.

The Dimer model's spectrum is invariant under exchanging its two ferromagnetic bonds together
with its two antiferromagnetic ones, ``(JFW, JA1, JA2, JFS) -> (JFS, JA2, JA1, JFW)``
(measured: the simulated mosaics agree to 1e-8 relative at random parameters). A fit (or a
network) can therefore only determine the parameters up to that relabelling. The canonical
branch is the one that matches the names: the strong bond ``JFS`` is the more ferromagnetic,
``JFS <= JFW`` (the published values -14.2 and -8.43 meV). :func:`canonical_values` maps any
parameter set (or fit) onto that branch; the fitting task applies it, the benchmark compares
canonical values with canonical truths.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["RELABELLINGS", "canonical_permutation", "canonical_values", "canonicalise_result"]

#: model name -> (relabelling {name: name}, rule: the relabelling applies when ``a > b`` for (a, b)).
RELABELLINGS: dict[str, tuple[dict[str, str], tuple[str, str]]] = {
    "dimer": ({"JFW": "JFS", "JFS": "JFW", "JA1": "JA2", "JA2": "JA1"}, ("JFS", "JFW")),
}


def canonical_permutation(model: str, names: Sequence[str], values: Mapping[str, float]) -> list[int] | None:
    """Indices ``perm`` with ``canonical[i] = values[names[perm[i]]]``, or None when already canonical."""
    entry = RELABELLINGS.get(str(model))
    if entry is None:
        return None
    swap, (a, b) = entry
    if not (a in values and b in values) or not float(values[a]) > float(values[b]):
        return None
    names = list(names)
    return [names.index(swap.get(n, n)) for n in names]


def canonical_values(model: str, names: Sequence[str], values: Sequence[float] | Mapping[str, float]) -> np.ndarray:
    """The parameter vector (in ``names`` order) on the canonical branch of ``model``."""
    vec = np.array([values[n] for n in names] if isinstance(values, Mapping) else values, dtype=float)
    perm = canonical_permutation(model, names, dict(zip(names, vec)))
    return vec if perm is None else vec[perm]


def canonicalise_result(result: Any) -> Any:
    """A :class:`~.result.FitResult` moved onto its model's canonical branch (in place; returned).

    Values, errors, the covariance and correlation of the free parameters and the fixed/free
    name lists are permuted together, and a note says so. Results already canonical, of models
    without a symmetry, or with a fixed parameter among the relabelled ones, are left alone.
    """
    names = list(result.parameter_names)
    perm = canonical_permutation(result.model, names, result.values)
    if perm is None:
        return result
    swap = RELABELLINGS[result.model][0]
    if any(n in result.fixed for n in swap):
        return result
    values, errors = dict(result.values), dict(result.errors)
    result.values = {n: values[names[j]] for n, j in zip(names, perm)}
    result.errors = {n: errors[names[j]] for n, j in zip(names, perm)}
    free = list(result.free)
    idx = [free.index(swap.get(n, n)) for n in free]
    result.covariance = np.asarray(result.covariance)[np.ix_(idx, idx)]
    result.correlation = np.asarray(result.correlation)[np.ix_(idx, idx)]
    result.notes = list(result.notes) + [
        f"relabelled onto the canonical branch ({', '.join(f'{a}<->{b}' for a, b in swap.items() if a < b)}: "
        "the spectrum is the same)"]
    return result
