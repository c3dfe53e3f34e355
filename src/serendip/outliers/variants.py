"""Named URF parameter sets (``serendip weird --variant NAME``); kept free of heavy imports for the CLI."""
from __future__ import annotations

from typing import Any

#: Named parameter sets for the command line (``serendip weird --variant NAME``).
VARIANTS: dict[str, dict[str, Any]] = {
    "faithful": {},
    "symmetric": {"normalization": "symmetric"},
    "knn": {"score_mode": "knn"},
    "uniform": {"synthetic": "uniform"},
    "majority": {"good_leaf": "majority", "max_depth": 12},
    "snr-strata": {"snr_strata": 3},
    # The best URF-only mode on the synthetic survey (chosen on survey seed 1 only, see
    # benchmarks/bench_urf_quality.py): uniform synthetic data, one forest per S/N tercile, the
    # k-nearest-distance score (mean 1 - S_ij over the 10 most similar objects of the same stratum),
    # and leaves of at least 3 objects (fully grown trees isolate single noisy objects; bigger pure
    # leaves give a smoother similarity). "uniform,snr-strata,knn" plus min_samples_leaf=3. Its rank
    # average with LOF is serendip.outliers.urf.best_weirdness.
    "best": {"synthetic": "uniform", "snr_strata": 3, "score_mode": "knn", "score_k": 10, "min_samples_leaf": 3},
}
