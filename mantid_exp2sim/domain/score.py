"""Domain-of-applicability score: optimal-transport distances to a reference bank.

Method (after seed 000, with the prior art's weaknesses fixed)
---------------------------------------------------------------
* Features are pooled encoder features (:func:`~mantid_exp2sim.domain.features.pooled_features`),
  standardised with the training features' per-feature mean and standard deviation (the
  standard deviation is floored at 1 % of its median over features, so a feature that is
  constant in training cannot blow the costs up numerically).
* One *repeat* draws ``n_reference`` (20) reference-bank samples without replacement and
  ``m = min(n_input, n_reference)`` of the input's samples (all of them when the input has at
  most ``n_reference`` samples, as in the paper), and computes the exact optimal-transport
  cost with uniform weights, ``ot.emd2`` on the cost matrix
  ``ot.dist(inputs, references, metric="sqeuclidean")``. For ``m = 1`` the only feasible
  plan sends the input's unit mass evenly to the references, so the cost is the mean of the
  costs (used directly). The squared Euclidean cost is the paper's; with it the value is the
  squared 2-Wasserstein distance between the two empirical distributions.
* 1000 repeats by default, from a seeded ``numpy.random.Generator``: the result is the
  distribution of those costs (mean, standard deviation, percentiles).
* Exact OT needs no regularisation, so it is stable at any cost scale (plain Sinkhorn on raw
  costs of about 1e5 silently returns 0).

Zones (calibration rule, see :func:`calibrate_zones`)
-----------------------------------------------------
Thresholds are set per sample-set size ``m`` on the distribution of held-out-vs-bank costs
(held-out in-distribution data, ``m`` held-out samples per repeat):

* ``trustworthy``: mean cost <= the ``trust_percentile`` (99th) percentile of that
  distribution;
* ``untrustworthy``: mean cost > ``exp(mu + untrust_sigma * s)`` with ``mu``, ``s`` the mean
  and standard deviation of the *logarithm* of the held-out costs and ``untrust_sigma = 5``
  (never below the trustworthy threshold);
* ``expert opinion``: in between.

The costs are positive and right-skewed (single held-out samples: 99th percentile about 7x the
median), roughly log-normal, so the sigma rule is applied to their logarithm: a rule on the
costs themselves put ``mean + 5 std`` below the 99th percentile and left no expert-opinion
zone.

numpy and POT only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..errors import InputDataError, format_error

__all__ = [
    "ZONES",
    "DomainScore",
    "wasserstein_distance",
    "standardise",
    "distance_distribution",
    "calibrate_zones",
    "zone_of",
    "build_reference_bank",
    "score",
]

ZONES = ("trustworthy", "expert opinion", "untrustworthy")
_METRICS = ("sqeuclidean", "euclidean")
_SCALE_FLOOR = 0.01


def _ot():
    from ..errors import require

    return require("ot", extra="all", feature="The domain-of-applicability score")


def _check_metric(metric: str) -> None:
    if metric not in _METRICS:
        raise InputDataError(
            format_error(
                f"Unknown cost metric {metric!r}",
                reason=f"allowed: {list(_METRICS)}",
            )
        )


def _cost(x: np.ndarray, y: np.ndarray, metric: str) -> np.ndarray:
    ot = _ot()
    c = ot.dist(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), metric=metric)
    # ot.dist's squared-Euclidean path can give tiny negatives from round-off.
    return np.maximum(np.asarray(c, dtype=np.float64), 0.0)


def _feature_sets(x: Any, y: Any, summary: str) -> tuple[np.ndarray, np.ndarray]:
    """Two feature sets as float64 ``(n, F)`` arrays (one sample may be ``(F,)``).

    Raises
    ------
    InputDataError
        With ``summary``, when their feature counts F differ.
    """
    a = np.atleast_2d(np.asarray(x, dtype=np.float64))
    b = np.atleast_2d(np.asarray(y, dtype=np.float64))
    if a.shape[1] != b.shape[1]:
        raise InputDataError(format_error(summary, reason=f"{a.shape[1]} and {b.shape[1]} features"))
    return a, b


def _emd_cost(m: np.ndarray) -> float:
    """Exact OT cost between uniform distributions for a cost matrix ``m`` (n x k)."""
    n, k = m.shape
    if n == 1 or k == 1:
        return float(m.mean())
    ot = _ot()
    a = np.full(n, 1.0 / n)
    b = np.full(k, 1.0 / k)
    return float(ot.emd2(a, b, np.ascontiguousarray(m)))


def wasserstein_distance(x: np.ndarray, y: np.ndarray, *, metric: str = "sqeuclidean") -> float:
    """Exact optimal-transport cost between two point clouds with uniform weights.

    Parameters
    ----------
    x, y
        Samples ``(n, F)`` and ``(k, F)`` (a single sample may be given as ``(F,)``).
    metric
        ``"sqeuclidean"`` (the paper's cost) or ``"euclidean"``.

    Returns
    -------
    float
        ``min_T sum T_ij C_ij`` over couplings with uniform marginals.
    """
    _check_metric(metric)
    x, y = _feature_sets(x, y, "Feature dimensions differ")
    return _emd_cost(_cost(x, y, metric))


def standardise(features: np.ndarray, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """Apply the bank's feature standardisation, ``(f - feature_mean) / feature_scale``.

    Parameters
    ----------
    features
        ``(n, F)`` or ``(F,)``.
    arrays
        Reference-bank arrays with ``feature_mean`` and ``feature_scale`` (``(F,)`` each);
        when they are absent the features are returned unchanged.
    """
    f = np.atleast_2d(np.asarray(features, dtype=np.float64))
    if "feature_mean" not in arrays:
        return f
    mean = np.asarray(arrays["feature_mean"], dtype=np.float64)
    scale = np.asarray(arrays["feature_scale"], dtype=np.float64)
    if f.shape[1] != mean.shape[0]:
        raise InputDataError(
            format_error(
                "Features do not match the reference bank",
                reason=f"input has {f.shape[1]} features, the bank {mean.shape[0]}",
                fix="use features from the same model bundle that built the bank",
            )
        )
    return (f - mean) / scale


def distance_distribution(
    inputs: np.ndarray,
    reference: np.ndarray,
    *,
    n_reference: int = 20,
    set_size: int | None = None,
    repeats: int = 1000,
    rng: np.random.Generator | int = 0,
    metric: str = "sqeuclidean",
    disjoint: bool = False,
) -> np.ndarray:
    """Distribution of exact OT costs between random input and reference subsets.

    Parameters
    ----------
    inputs
        ``(n, F)`` input samples (already standardised).
    reference
        ``(R, F)`` reference-bank samples (already standardised).
    n_reference
        Reference samples per repeat (without replacement).
    set_size
        Input samples per repeat; default ``min(n, n_reference)`` (all of them when few).
    repeats
        Number of repeats.
    rng
        Generator or seed.
    metric
        Cost metric.
    disjoint
        When ``inputs`` and ``reference`` are the same array (train-vs-train), draw the
        input and reference indices of each repeat disjointly.

    Returns
    -------
    numpy.ndarray
        ``(repeats,)`` costs.
    """
    _check_metric(metric)
    rng = np.random.default_rng(rng)
    x = np.atleast_2d(np.asarray(inputs, dtype=np.float64))
    ref = np.atleast_2d(np.asarray(reference, dtype=np.float64))
    n, r = x.shape[0], ref.shape[0]
    m = min(n, n_reference) if set_size is None else int(set_size)
    if repeats < 1 or n_reference < 1 or m < 1:
        raise InputDataError(
            format_error(
                "repeats, n_reference and the set size must be at least 1",
                reason=f"repeats={repeats}, n_reference={n_reference}, set size={m}",
            )
        )
    need = n_reference + (m if disjoint else 0)
    if r < need or m > n:
        raise InputDataError(
            format_error(
                "Not enough samples for the distance distribution",
                reason=f"{r} reference samples (need {need}) and {n} inputs (set size {m})",
                fix="use a larger reference bank or fewer reference samples per repeat",
            )
        )
    if not (np.isfinite(x).all() and np.isfinite(ref).all()):
        raise InputDataError(
            format_error(
                "Features contain NaN or infinite values",
                reason="an input may be fully masked",
                fix="check the input data",
            )
        )
    out = np.empty(repeats)
    if disjoint:
        for i in range(repeats):
            idx = rng.choice(r, need, replace=False)
            out[i] = _emd_cost(_cost(ref[idx[n_reference:]], ref[idx[:n_reference]], metric))
        return out
    cost = _cost(x, ref, metric)  # (n, R), reused by every repeat
    all_inputs = m == n
    for i in range(repeats):
        ridx = rng.choice(r, n_reference, replace=False)
        if all_inputs:
            sub = cost[:, ridx]
        else:
            sub = cost[np.ix_(rng.choice(n, m, replace=False), ridx)]
        out[i] = _emd_cost(sub)
    return out


def calibrate_zones(
    holdout_distances: np.ndarray,
    *,
    trust_percentile: float = 99.0,
    untrust_sigma: float = 5.0,
) -> dict[str, float]:
    """Zone thresholds from a held-out-vs-bank cost distribution.

    Parameters
    ----------
    holdout_distances
        Costs of held-out in-distribution samples against the bank (one set size).
    trust_percentile
        Upper bound of the trustworthy zone: this percentile of the costs.
    untrust_sigma
        Lower bound of the untrustworthy zone: ``exp(mean(log d) + untrust_sigma * std(log d))``
        (at least the trustworthy bound).

    Returns
    -------
    dict
        ``trustworthy`` (upper bound of the trustworthy zone), ``untrustworthy`` (lower bound
        of the untrustworthy zone), ``holdout_mean``, ``holdout_std`` (of the costs) and
        ``holdout_log_mean``, ``holdout_log_std`` (of their logarithm).
    """
    d = np.asarray(holdout_distances, dtype=np.float64)
    mean, std = float(d.mean()), float(d.std())
    t_trust = float(np.percentile(d, trust_percentile))
    positive = d[d > 0]
    if positive.size >= 2:
        logs = np.log(positive)
        log_mean, log_std = float(logs.mean()), float(logs.std())
        t_untrust = max(t_trust, float(np.exp(log_mean + untrust_sigma * log_std)))
    else:  # degenerate (all costs zero): no spread to scale by
        log_mean, log_std = float("-inf"), 0.0
        t_untrust = t_trust
    return {
        "trustworthy": t_trust,
        "untrustworthy": t_untrust,
        "holdout_mean": mean,
        "holdout_std": std,
        "holdout_log_mean": log_mean,
        "holdout_log_std": log_std,
    }


def zone_of(value: float, thresholds: Mapping[str, float]) -> str:
    """The zone of a mean cost: one of :data:`ZONES`."""
    if value <= thresholds["trustworthy"]:
        return ZONES[0]
    if value > thresholds["untrustworthy"]:
        return ZONES[2]
    return ZONES[1]


def build_reference_bank(
    features_train: np.ndarray,
    features_holdout: np.ndarray,
    *,
    seed: int,
    n_reference: int = 20,
    repeats: int = 1000,
    max_bank: int = 2000,
    metric: str = "sqeuclidean",
    trust_percentile: float = 99.0,
    untrust_sigma: float = 5.0,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Build the reference bank and its zone calibration.

    Parameters
    ----------
    features_train
        ``(n_train, F)`` pooled features of training samples (>= 500 recommended; at most
        ``max_bank`` random ones are kept).
    features_holdout
        ``(n_holdout, F)`` pooled features of held-out in-distribution samples.
    seed
        Seed of every random draw (bank subsampling and all distributions).
    n_reference, repeats, metric
        As for :func:`score`.
    max_bank
        Largest number of training samples kept in the bank.
    trust_percentile, untrust_sigma
        The zone rule (see :func:`calibrate_zones`).

    Returns
    -------
    arrays : dict
        ``features`` (bank, ``(R, F)``, raw), ``feature_mean`` and ``feature_scale``
        (``(F,)``), ``holdout_features`` (``(H, F)``, raw), and the cost distributions
        ``train_distances`` / ``holdout_distances`` (set size ``n_reference``, train-vs-train
        disjoint and held-out-vs-train) and ``train_distances_single`` /
        ``holdout_distances_single`` (one input sample per repeat), each ``(repeats,)``.
    calibration : dict
        JSON-safe: the method, metric, sizes, the rule and its parameters, and
        ``thresholds[str(set_size)]`` for set sizes 1 and ``min(n_holdout, n_reference)``.
    """
    _check_metric(metric)
    train, hold = _feature_sets(features_train, features_holdout, "Training and held-out features differ in size")
    if not (np.isfinite(train).all() and np.isfinite(hold).all()):
        raise InputDataError(
            format_error("Reference features contain NaN or infinite values", fix="drop fully masked samples")
        )
    if train.shape[0] < 2 * n_reference + 1 or hold.shape[0] < 1:
        raise InputDataError(
            format_error(
                "Too few samples for a reference bank",
                reason=f"{train.shape[0]} training samples (need > {2 * n_reference}) and "
                f"{hold.shape[0]} held-out samples (need >= 1)",
                fix="encode more training samples (>= 500 recommended)",
            )
        )
    rng = np.random.default_rng(seed)
    if train.shape[0] > max_bank:
        train = train[np.sort(rng.choice(train.shape[0], max_bank, replace=False))]
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    floor = _SCALE_FLOOR * float(np.median(std)) if np.median(std) > 0 else 1.0
    scale = np.maximum(std, max(floor, 1e-12))
    arrays: dict[str, np.ndarray] = {
        "features": train,
        "feature_mean": mean,
        "feature_scale": scale,
        "holdout_features": hold,
    }
    z_train = (train - mean) / scale
    z_hold = (hold - mean) / scale
    m_set = min(hold.shape[0], n_reference)
    common = dict(n_reference=n_reference, repeats=repeats, metric=metric)
    arrays["train_distances"] = distance_distribution(
        z_train, z_train, set_size=n_reference, disjoint=True, rng=rng, **common
    )
    arrays["holdout_distances"] = distance_distribution(z_hold, z_train, set_size=m_set, rng=rng, **common)
    arrays["train_distances_single"] = distance_distribution(
        z_train, z_train, set_size=1, disjoint=True, rng=rng, **common
    )
    arrays["holdout_distances_single"] = distance_distribution(z_hold, z_train, set_size=1, rng=rng, **common)
    rule = dict(trust_percentile=trust_percentile, untrust_sigma=untrust_sigma)
    thresholds = {
        "1": calibrate_zones(arrays["holdout_distances_single"], **rule),
        str(m_set): calibrate_zones(arrays["holdout_distances"], **rule),
    }
    calibration: dict[str, Any] = {
        "method": "exact optimal transport (ot.emd2), uniform weights",
        "metric": metric,
        "standardised": True,
        "n_reference": int(n_reference),
        "repeats": int(repeats),
        "seed": int(seed),
        "bank_size": int(train.shape[0]),
        "holdout_size": int(hold.shape[0]),
        "feature_dim": int(train.shape[1]),
        "rule": (
            "per input-set size m: trustworthy if the mean cost <= the "
            f"{trust_percentile:g}th percentile of the held-out-vs-bank costs (m held-out "
            f"samples per repeat); untrustworthy if > exp(mean + {untrust_sigma:g} standard "
            "deviations of the log held-out costs); expert opinion in between"
        ),
        "trust_percentile": float(trust_percentile),
        "untrust_sigma": float(untrust_sigma),
        "thresholds": thresholds,
        "summary": {
            "train_mean": float(arrays["train_distances"].mean()),
            "train_std": float(arrays["train_distances"].std()),
            "holdout_mean": float(arrays["holdout_distances"].mean()),
            "holdout_std": float(arrays["holdout_distances"].std()),
        },
    }
    return arrays, calibration


@dataclass
class DomainScore:
    """The result of :func:`score`.

    Attributes
    ----------
    mean, std
        Mean and standard deviation of the cost distribution (feature units squared for the
        squared Euclidean metric).
    percentiles
        ``{5: ..., 50: ..., 95: ...}`` of the distribution.
    zone
        One of :data:`ZONES`.
    distances
        ``(repeats,)`` all costs.
    set_size
        Input samples per repeat.
    n_input
        Number of input samples.
    thresholds
        The zone thresholds used.
    """

    mean: float
    std: float
    percentiles: dict[int, float]
    zone: str
    distances: np.ndarray
    set_size: int
    n_input: int
    thresholds: dict[str, float] = field(default_factory=dict)

    def to_dict(self, *, include_distances: bool = False) -> dict[str, Any]:
        """JSON-safe dict (the full distribution only when asked for)."""
        d: dict[str, Any] = {
            "mean": self.mean,
            "std": self.std,
            "p5": self.percentiles[5],
            "p50": self.percentiles[50],
            "p95": self.percentiles[95],
            "zone": self.zone,
            "set_size": self.set_size,
            "n_input": self.n_input,
            "thresholds": dict(self.thresholds),
        }
        if include_distances:
            d["distances"] = [float(v) for v in self.distances]
        return d


def _thresholds_for(
    m: int,
    arrays: Mapping[str, np.ndarray],
    calibration: Mapping[str, Any],
    z_bank: np.ndarray,
    n_reference: int,
    repeats: int,
) -> dict[str, float]:
    table = calibration.get("thresholds", {})
    same_draw = int(calibration.get("n_reference", n_reference)) == n_reference
    if same_draw and str(m) in table:
        return dict(table[str(m)])
    if "holdout_features" in arrays and np.asarray(arrays["holdout_features"]).shape[0] >= m:
        z_hold = standardise(arrays["holdout_features"], arrays)
        d = distance_distribution(
            z_hold,
            z_bank,
            n_reference=n_reference,
            set_size=m,
            repeats=repeats,
            rng=int(calibration.get("seed", 0)),
            metric=calibration.get("metric", "sqeuclidean"),
        )
        return calibrate_zones(
            d,
            trust_percentile=float(calibration.get("trust_percentile", 99.0)),
            untrust_sigma=float(calibration.get("untrust_sigma", 5.0)),
        )
    if not table:
        raise InputDataError(
            format_error(
                "The domain calibration has no zone thresholds",
                fix="rebuild the reference bank with build_reference_bank",
            )
        )
    nearest = min(table, key=lambda k: abs(int(k) - m))
    return dict(table[nearest])


def score(
    features: np.ndarray,
    bank: Mapping[str, np.ndarray],
    calibration: Mapping[str, Any],
    *,
    n_reference: int = 20,
    repeats: int = 1000,
    seed: int = 0,
) -> DomainScore:
    """Score one input set against the reference bank.

    Parameters
    ----------
    features
        Pooled features of the input: ``(F,)`` for one sample or ``(n, F)`` for a set (all of
        them are used per repeat when ``n <= n_reference``, else ``n_reference`` random ones).
    bank
        Reference-bank arrays from :func:`build_reference_bank` (at least ``features``).
    calibration
        Calibration dict from :func:`build_reference_bank`.
    n_reference
        Reference samples per repeat.
    repeats
        Number of repeats.
    seed
        Seed of the random draws (the result is deterministic for a given seed).

    Returns
    -------
    DomainScore
    """
    metric = str(calibration.get("metric", "sqeuclidean"))
    if "features" not in bank:
        raise InputDataError(
            format_error(
                "The reference bank has no 'features' array",
                fix="use a bundle exported with a reference bank",
            )
        )
    z_bank = standardise(bank["features"], bank)
    z = standardise(features, bank)
    d = distance_distribution(
        z, z_bank, n_reference=n_reference, repeats=repeats, rng=seed, metric=metric
    )
    m = min(z.shape[0], n_reference)
    thresholds = _thresholds_for(m, bank, calibration, z_bank, n_reference, repeats)
    mean = float(d.mean())
    return DomainScore(
        mean=mean,
        std=float(d.std()),
        percentiles={p: float(np.percentile(d, p)) for p in (5, 50, 95)},
        zone=zone_of(mean, thresholds),
        distances=d,
        set_size=m,
        n_input=int(z.shape[0]),
        thresholds=thresholds,
    )
