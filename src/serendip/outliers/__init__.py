"""Weirdness detectors. Every score in this package follows one convention: **higher = weirder**.

- :class:`UnsupervisedRandomForest` — Baron & Poznanski (2017) and its variants (``urf.py``).
- Baselines wrapping scikit-learn (``baselines.py``): isolation forest, LOF, kNN distance,
  PCA reconstruction error, and a rank-average ensemble.
- :func:`score_samples_dask` — score survey-size data block by block on Dask (``distributed.py``).
"""
from __future__ import annotations

import importlib

_LAZY = {
    "WeirdnessDetector": "._base",
    "weirdness_rank": "._base",
    "UnsupervisedRandomForest": ".urf",
    "best_weirdness": ".urf",
    "rank_average": ".urf",
    "lof_within_strata": ".urf",
    "add_lof": ".urf",
    "weirdness_table": ".urf",
    "IsolationForestDetector": ".baselines",
    "LocalOutlierFactorDetector": ".baselines",
    "KNNDistanceDetector": ".baselines",
    "PCAReconstructionDetector": ".baselines",
    "RankAverageEnsemble": ".baselines",
    "make_detector": ".baselines",
    "explain_weirdness": ".explain",
    "score_samples_dask": ".distributed",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'serendip.outliers' has no attribute {name!r}")
