"""Cost of serendip.learn's hyper-parameter search, against the way it used to be done, in one run.

    python benchmarks/bench_learn_search.py              # 3,000 SDSS galaxies, photo-z from ugriz
    python benchmarks/bench_learn_search.py --rows 5000 --cv 5 --n-iter 6

Two changes are measured on the same rows, folds and configurations:

* **boosted trees**: ``algorithm="gbt"`` averages ``GBT_BAGS`` boosters. The search now ranks each
  configuration with one booster (:func:`serendip.learn.train.one_booster`) and refits the
  chosen one with all of them. Baseline: the search with the whole average in every fit.
* **SVR**: the grid of ``C`` is now in units of the target's spread (``C × std(y)``, as
  ``epsilon`` already was). Baseline: the former unit-less grid 0.3, 3, 30, 300, which on
  redshifts (std ≈ 0.1) spends most of its time at large C, far from the chosen value.

For each it prints the seconds, their ratio, the chosen configuration and its cross-validated
−σ_NMAD (higher is better). Data: ``../shared/data`` (override with ``SERENDIP_SHARED_DATA``).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("SERENDIP_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _galaxies(rows, seed):
    from serendip.learn.tables import read_any_table, select_features

    tab = read_any_table(DATA / "sdss_galaxy_qso_colors_specz" / "sdss_galaxy_colors.csv.gz")
    gal = tab[tab["spec_class"] == "GALAXY"]
    gal = gal[np.sort(np.random.default_rng(seed).choice(len(gal), rows, replace=False))]
    X, y, _ = select_features(gal, "redshift", colors="ugriz")
    return np.column_stack([np.asarray(X[c], float) for c in X.colnames]), np.asarray(y, float)


def _timed_search(pipe, space, X, y, args, splitter, scoring):
    from serendip.learn.train import _search

    t = time.perf_counter()
    params, folds = _search(pipe, space, X, y, cv=splitter, scoring=scoring, n_iter=args.n_iter, groups=None,
                            n_jobs=args.n_jobs, random_state=0, fit_params={})
    return time.perf_counter() - t, params, folds


def _show(label, seconds, params, folds):
    short = {k.split("__")[-1]: (round(v, 4) if isinstance(v, float) else v) for k, v in params.items()}
    print(f"   {label:34s} {seconds:7.1f} s   CV −σ_NMAD {folds.mean():.5f} ± {folds.std():.5f}   {short}")


def main():
    from threadpoolctl import threadpool_limits

    from serendip.learn.train import GBT_BAGS, _cv_splitter, _scoring, build_pipeline, one_booster

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=3000, help="galaxies drawn (the search sees 80 %%, as in train)")
    ap.add_argument("--cv", type=int, default=3)
    ap.add_argument("--n-iter", type=int, default=4)
    ap.add_argument("--n-jobs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    X, y = _galaxies(args.rows, args.seed)
    n = int(0.8 * y.size)
    X, y = X[:n], y[:n]
    splitter = _cv_splitter("regression", args.cv, None, 0)
    scoring = _scoring("regression", True, None)
    y_std = float(np.std(y))
    print(f"{n} SDSS galaxies (ugriz colours + r → redshift), {args.cv}-fold CV, {args.n_iter} configurations, "
          f"n_jobs={args.n_jobs}")
    with threadpool_limits(limits=max(1, args.n_jobs)):
        pipe, space = build_pipeline("gbt", "regression", n_features=X.shape[1], n_train=n, redshift=True,
                                     n_jobs=args.n_jobs, y_std=y_std)
        print(f"boosted trees (the final model averages {GBT_BAGS} boosters)")
        full = _timed_search(pipe, space, X, y, args, splitter, scoring)
        one = _timed_search(one_booster(pipe), space, X, y, args, splitter, scoring)
        _show(f"search with {GBT_BAGS} boosters per fit", *full)
        _show("search with one booster per fit", *one)
        print(f"   ratio: {full[0] / one[0]:.1f}× faster; same configuration chosen: {full[1] == one[1]}")

        pipe, space = build_pipeline("svm", "regression", n_features=X.shape[1], n_train=n, redshift=True,
                                     y_std=y_std)
        unitless = dict(space, model__C=[0.3, 3.0, 30.0, 300.0])
        print(f"SVR (target std {y_std:.3f})")
        old = _timed_search(pipe, unitless, X, y, args, splitter, scoring)
        new = _timed_search(pipe, space, X, y, args, splitter, scoring)
        _show("C grid 0.3…300 (unit-less)", *old)
        _show("C grid (0.3…300) × std(y)", *new)
        print(f"   ratio: {old[0] / new[0]:.1f}× faster; CV −σ_NMAD {old[2].mean():.5f} → {new[2].mean():.5f}")


if __name__ == "__main__":
    main()
