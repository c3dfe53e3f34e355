"""Named URF parameter sets (``serendip weird --variant NAME``); kept free of heavy imports for the CLI."""
from __future__ import annotations

from typing import Any

#: Named parameter sets for the command line (``serendip weird --variant NAME``).
VARIANTS: dict[str, dict[str, Any]] = {
    "faithful": {},
    "symmetric": {"normalization": "symmetric"},
    "knn": {"score": "knn"},
    "uniform": {"synthetic": "uniform"},
    "majority": {"good_leaf": "majority", "max_depth": 12},
    "snr-strata": {"snr_strata": 3},
    # The best URF-only mode on the synthetic survey (chosen on survey seed 1 only, see
    # benchmarks/bench_urf_quality.py): uniform synthetic data, one forest per S/N tercile, and the
    # k-nearest-distance score (mean 1 - S_ij over the 10 most similar objects of the same stratum).
    # Same as "uniform,snr-strata,knn". Its rank-average with LOF is serendip.outliers.urf.best_weirdness.
    "best": {"synthetic": "uniform", "snr_strata": 3, "score": "knn", "score_k": 10},
}
