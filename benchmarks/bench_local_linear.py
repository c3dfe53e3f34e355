"""Cost of the local linear estimate (serendip.learn.LocalLinearEstimate), measured in one run.

    python benchmarks/bench_local_linear.py                 # SDSS galaxies, ugriz colours + r
    python benchmarks/bench_local_linear.py --queries 200000 --n-jobs 2

Three figures, on the galaxy photo-z training data:

* the local normal equations with batched BLAS ``matmul`` (what serendip does) against the
  same equations with ``numpy.einsum`` (the plain way it was first written), same neighbours,
  same numbers (their largest difference is printed);
* how the estimate's time splits between the neighbour search and the local fits;
* prediction throughput of ``train(algorithm="gbt")``'s pipeline with and without the
  estimate, on ``--queries`` objects (the training galaxies, repeated and jittered).

Data: ``../shared/data`` (override with ``SERENDIP_SHARED_DATA``), read as
``bench_learn_real.py`` reads it.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def _einsum_fits(Xn, yn, q, ridge):
    """The baseline: the same ridge-penalised local fits, with einsum contractions."""
    m, k, _ = Xn.shape
    Z = np.concatenate([np.ones((m, k, 1)), Xn - q[:, None, :]], axis=2)
    penalty = np.full(Z.shape[2], ridge * k)
    penalty[0] = 0.0
    lhs = np.einsum("mki,mkj->mij", Z, Z) + np.diag(penalty)
    rhs = np.einsum("mki,mk->mi", Z, yn)
    return np.linalg.solve(lhs, rhs[..., None])[:, 0, 0]


def _timed(fn, repeats=1):
    """``(result, seconds)``: the best of ``repeats`` calls (the first call of a kernel pays for warm-up)."""
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return out, best


def main():
    from sklearn.neighbors import NearestNeighbors

    from bench_learn_real import _galaxy_photoz_arrays  # the same galaxies as the photo-z benchmarks

    from serendip.learn.local_linear import LocalLinearEstimate, _local_fits
    from serendip.learn.train import build_pipeline

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=50_000, help="objects to predict (default 50,000)")
    ap.add_argument("--n-jobs", type=int, default=1)
    args = ap.parse_args()

    Xa, y, _ = _galaxy_photoz_arrays()
    rng = np.random.default_rng(0)
    Q = Xa[rng.integers(0, len(Xa), args.queries)] + rng.normal(0, 0.01, (args.queries, Xa.shape[1]))

    est = LocalLinearEstimate(n_jobs=args.n_jobs).fit(Xa, y)
    k = est.n_neighbors_
    Qs = (Q[:20_000] - est.center_) / est.scale_
    nn = NearestNeighbors(n_neighbors=k, n_jobs=args.n_jobs).fit(est.X_fit_)
    ind, t_nn = _timed(lambda: nn.kneighbors(Qs, return_distance=False))
    Xn, yn = est.X_fit_[ind], est.y_fit_[ind]
    fast, t_fast = _timed(lambda: _local_fits(Xn, yn, Qs, est.ridge), repeats=3)
    slow, t_slow = _timed(lambda: _einsum_fits(Xn, yn, Qs, est.ridge), repeats=3)
    print(f"local fits, {len(Qs):,} objects x {k} neighbours x {Xa.shape[1] + 1} coefficients (best of 3)")
    print(f"   einsum (baseline) {t_slow:.2f} s   matmul (serendip) {t_fast:.2f} s   "
          f"speed-up {t_slow / t_fast:.1f}x   max |difference| {np.abs(fast - slow).max():.1e}")
    print(f"   neighbour search {t_nn:.2f} s: {100 * t_nn / (t_nn + t_fast):.0f} % of the estimate's time")

    times = {}
    for local in (False, True):
        pipe, _ = build_pipeline("gbt", "regression", n_features=Xa.shape[1], n_train=len(y), redshift=True,
                                 n_jobs=args.n_jobs, local_linear=local)
        pipe.set_params(model__estimator__max_iter=300)
        pipe.fit(Xa, y)
        _, times[local] = _timed(lambda: pipe.predict(Q), repeats=2)
    print(f"predicting {args.queries:,} objects with boosted trees (5 boosters, at most 300 rounds), "
          f"{args.n_jobs} job(s), best of 2")
    print(f"   without the estimate {times[False]:.1f} s ({args.queries / times[False]:,.0f} per s)   "
          f"with it {times[True]:.1f} s ({args.queries / times[True]:,.0f} per s)   "
          f"ratio {times[True] / times[False]:.2f}")


if __name__ == "__main__":
    main()
