"""Benchmark 1: URF exact O(N·T) scoring versus a blocked brute-force O(N²·T) reference.

One forest (N=3000 objects, F=500 features, T=500 trees by default). Both
scorers start from the same leaf matrix A (N×T) and good-leaf flags G, so the
comparison is of steps 4–6 only. The brute force is the notebook's arithmetic
(c_ij = Σ_t [A_it = A_jt]·G_it·G_jt, S = c/g_j, w = mean_j(1 − S)) done in row
blocks so that it fits in memory (the literal (N, N, T) broadcast would need
N²·T bytes = 4.5 GB of booleans at these sizes).

Prints: max |difference|, identical ranking, both times and their ratio.

    python benchmarks/bench_urf_exact.py            # N=3000, F=500, T=500
    python benchmarks/bench_urf_exact.py --quick    # N=600, F=100, T=100
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _urf_common import forest_args, latent_data  # noqa: E402


def brute_force_scores(A, G, block=250):
    n, T = A.shape
    g = G.sum(axis=1).astype(float)
    inv = np.where(g > 0, 1.0 / np.maximum(g, 1), 0.0)
    w = np.empty(n)
    for s in range(0, n, block):
        c = np.zeros((min(block, n - s), n))
        for t in range(T):
            same = A[s:s + block, t][:, None] == A[None, :, t]
            c += same & (G[s:s + block, t][:, None] & G[None, :, t])
        S = c * inv[None, :]
        w[s:s + block] = (1.0 - S).mean(axis=1)
    return w


def fast_scores(model):
    from serendip.outliers._leaves import good_counts, leaf_populations

    g = good_counts(model.leaves_, model.good_leaf_, model.tree_repeat_, 1)
    model.leaf_weight_ = leaf_populations(model.leaves_, model.good_leaf_, model.tree_repeat_, g,
                                          model.good_leaf_.size)
    return model._training_scores()


def main(argv=None):
    args = forest_args(__doc__.splitlines()[0], 3000, (600, 100, 100), argv)

    from serendip.outliers import UnsupervisedRandomForest

    X = latent_data(args.n, args.features, seed=0, dtype=np.float32)
    print(f"N={args.n} F={args.features} T={args.trees}")
    t0 = time.perf_counter()
    model = UnsupervisedRandomForest(args.trees, n_jobs=args.n_jobs, random_state=0, progress=False).fit(X)
    print(f"fit {model.fit_time_:.1f} s, apply {model.apply_time_:.2f} s, score (in fit) {model.score_time_:.3f} s"
          f" [total {time.perf_counter() - t0:.1f} s]")

    reps = 5
    t0 = time.perf_counter()
    for _ in range(reps):
        w_fast = fast_scores(model)
    t_fast = (time.perf_counter() - t0) / reps

    A = model.leaves_
    G = model.good_leaf_[A]
    t0 = time.perf_counter()
    w_brute = brute_force_scores(A, G)
    t_brute = time.perf_counter() - t0

    diff = float(np.max(np.abs(w_fast - w_brute)))
    same_rank = np.array_equal(np.argsort(-np.round(w_fast, 10), kind="stable"),
                               np.argsort(-np.round(w_brute, 10), kind="stable"))
    print(f"max |fast - brute| = {diff:.2e}  (target < 1e-12)   identical ranking: {same_rank}")
    print(f"scoring time: exact O(N·T) {t_fast * 1e3:.1f} ms, brute force O(N²·T) {t_brute:.1f} s")
    print(f"RATIO brute/fast = {t_brute / t_fast:.0f}x  (target >= 100x)")
    print(f"memory: leaf ids {A.nbytes / 1e6:.1f} MB (int32 N×T); "
          f"literal (N,N,T) broadcast would be {args.n ** 2 * args.trees / 1e9:.1f} GB of booleans")


if __name__ == "__main__":
    main()
