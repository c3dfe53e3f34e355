"""Benchmark 2: URF stage timings at N=10,000, F=500, T=500 on this machine (all cores).

Prints the fit, apply and score times of one faithful forest; the target is a
score stage under 1 s. The score stage is also timed against the blocked
brute force on a 1,000-object subsample (extrapolated as N², labelled so) to
give a ratio measured in the same run.

    python benchmarks/bench_urf_timing.py            # N=10000, F=500, T=500
    python benchmarks/bench_urf_timing.py --quick    # N=2000, F=200, T=100
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _urf_common import forest_args, latent_data  # noqa: E402
from bench_urf_exact import brute_force_scores  # noqa: E402


def main(argv=None):
    args = forest_args(__doc__.splitlines()[0], 10000, (2000, 200, 100), argv)

    from serendip.outliers import UnsupervisedRandomForest
    from serendip.outliers._leaves import good_counts, leaf_populations

    X = latent_data(args.n, args.features, seed=1, dtype=np.float32)
    print(f"N={args.n} F={args.features} T={args.trees} cores={os.cpu_count()} n_jobs={args.n_jobs}")
    model = UnsupervisedRandomForest(args.trees, n_jobs=args.n_jobs, random_state=0, progress=False).fit(X)
    print(f"fit   {model.fit_time_:8.2f} s   (scikit-learn forest on 2N rows)")
    print(f"apply {model.apply_time_:8.2f} s   (leaf ids of N objects in T trees, threaded)")
    print(f"score {model.score_time_:8.3f} s   (exact O(N·T) weirdness; target < 1 s: "
          f"{'met' if model.score_time_ < 1 else 'NOT met'})")

    # scoring alone, repeated, and the brute force on a subsample for a same-run ratio
    t0 = time.perf_counter()
    g = good_counts(model.leaves_, model.good_leaf_, model.tree_repeat_, 1)
    leaf_populations(model.leaves_, model.good_leaf_, model.tree_repeat_, g, model.good_leaf_.size)
    model._training_scores()
    t_fast = time.perf_counter() - t0
    m = min(1000, args.n)
    A = model.leaves_[:m]
    t0 = time.perf_counter()
    brute_force_scores(A, model.good_leaf_[A])
    t_sub = time.perf_counter() - t0
    t_brute = t_sub * (args.n / m) ** 2
    print(f"brute force on {m} objects {t_sub:.1f} s -> extrapolated (×(N/{m})²) to N={args.n}: {t_brute:.0f} s; "
          f"exact score {t_fast:.3f} s; RATIO ≈ {t_brute / t_fast:.0f}x")
    print(f"leaf ids: {model.leaves_.nbytes / 1e6:.0f} MB (int32), leaves in forest: {model.good_leaf_.size}")


if __name__ == "__main__":
    main()
