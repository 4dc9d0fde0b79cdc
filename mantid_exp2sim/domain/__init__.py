"""Domain-of-applicability score: how far an input lies from a model's training data.

Pooled encoder features (:func:`pooled_features`) are compared with a reference bank of
training features by exact optimal transport (POT ``ot.emd2``), repeated over random draws
(:func:`score`); :func:`build_reference_bank` builds the bank and calibrates the
trustworthy / expert opinion / untrustworthy zones on held-out data. The plot helper lives in
:mod:`mantid_exp2sim.domain.plot` (needs matplotlib). numpy and POT only.
"""

from .features import downsample_mask, pooled_features
from .score import (
    ZONES,
    DomainScore,
    build_reference_bank,
    calibrate_zones,
    distance_distribution,
    score,
    standardise,
    wasserstein_distance,
    zone_of,
)

__all__ = [
    "ZONES",
    "DomainScore",
    "build_reference_bank",
    "calibrate_zones",
    "distance_distribution",
    "downsample_mask",
    "pooled_features",
    "score",
    "standardise",
    "wasserstein_distance",
    "zone_of",
]
