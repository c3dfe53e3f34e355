"""Detector comparison on real data: HTRU2 pulsar candidates (Lyon et al. 2016), pulsars = the rare class.

Prints ROC AUC, average precision, precision/recall at k (k = number of pulsars) and the fit time of
every detector, with the time as a ratio to the isolation forest measured in the same run.

    python benchmarks/bench_detectors_htru2.py            # all 17,898 candidates
    python benchmarks/bench_detectors_htru2.py --quick    # 3,000-candidate random subset, smaller forests

Distance-based detectors (LOF, kNN, PCA) get standardised features (the 8 HTRU2 features have very
different scales); the forests are scale-free.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np


def shared_data() -> Path:
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return Path(os.environ.get("SERENDIP_SHARED_DATA", default))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3,000 objects and small forests (smoke run)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-urf", action="store_true", help="skip the unsupervised random forest")
    args = ap.parse_args(argv)

    from serendip.explore import compare_detectors

    path = shared_data() / "htru2_pulsar_candidates" / "pulsar_stars.csv"
    if not path.exists():
        print(f"HTRU2 not found at {path} (set SERENDIP_SHARED_DATA)", file=sys.stderr)
        return 1
    data = np.loadtxt(path, delimiter=",", skiprows=1)
    X, y = data[:, :8], data[:, 8].astype(bool)
    if args.quick:
        keep = np.sort(np.random.default_rng(args.seed).choice(len(X), 3000, replace=False))
        X, y = X[keep], y[keep]
    trees = 100 if args.quick else 300
    detectors = ["iforest", "lof", "knn", "pca", "ensemble"] + ([] if args.no_urf else ["urf"])
    params = {"iforest": {"n_estimators": trees},
              "lof": {"n_neighbors": 20, "scale": "standard"},
              "knn": {"n_neighbors": 10, "scale": "standard"},
              "pca": {"n_components": 2, "scale": "standard"},
              "ensemble": {"detectors": ("iforest", "knn", "pca"), "scale": "standard"},
              "urf": {"n_estimators": trees, "n_repeats": 1}}
    tab = compare_detectors(X, y, detectors=detectors, k=int(y.sum()), params=params, random_state=args.seed,
                            progress=False)
    base = float(tab[tab["detector"] == "iforest"]["fit_seconds"][0])
    print(f"HTRU2: {len(X)} candidates, {y.sum()} pulsars (rare class), k = {y.sum()}"
          f"{' [quick subset]' if args.quick else ''}")
    print(f"{'detector':>9} {'ROC AUC':>8} {'AP':>7} {'P@k':>7} {'R@k':>7} {'fit s':>8} {'time/iforest':>13}")
    for row in tab:
        print(f"{row['detector']:>9} {row['roc_auc']:8.3f} {row['average_precision']:7.3f} "
              f"{row['precision_at_k']:7.3f} {row['recall_at_k']:7.3f} {row['fit_seconds']:8.2f} "
              f"{row['fit_seconds'] / base:13.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
