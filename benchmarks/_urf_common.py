"""Shared helpers for the URF benchmarks: survey features and quality metrics (not part of the package)."""
from __future__ import annotations

import numpy as np


def survey_features(spectra, npix=500, wmin=3750.0, wmax=7300.0):
    """Rest-frame, median-normalised flux on a common log grid; masked pixels filled by interpolation."""
    from serendip.spectra.resample import make_grid, resample

    rest = resample(spectra, make_grid("log", wmin, wmax, npix=npix), z="z")
    X = rest.flux.astype(np.float64)
    bad = rest.mask | ~np.isfinite(X)
    x = np.arange(X.shape[1])
    for i in np.flatnonzero(bad.any(axis=1)):
        good = ~bad[i]
        X[i, bad[i]] = np.interp(x[bad[i]], x[good], X[i, good]) if good.sum() >= 2 else 0.0
    med = np.median(X, axis=1, keepdims=True)
    med = np.where(np.abs(med) > 0, np.abs(med), 1.0)
    return (X / med).astype(np.float32), rest.wavelength.value


def quality_rows(name, score, truth, ks=(10, 50)):
    """ROC AUC, average precision and precision@k overall and per anomaly kind (normal vs that kind)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    kinds = np.asarray(truth["anomaly_kind"]).astype(str)
    is_anom = np.asarray(truth["is_anomaly"], dtype=bool)
    rows = []
    for kind in ["all"] + sorted(set(kinds) - {"normal"}):
        sel = np.ones(kinds.size, bool) if kind == "all" else (kinds == "normal") | (kinds == kind)
        y = is_anom[sel]
        s = np.asarray(score)[sel]
        row = {"method": name, "kind": kind, "n_pos": int(y.sum()),
               "auc": roc_auc_score(y, s), "ap": average_precision_score(y, s)}
        order = np.argsort(-s, kind="stable")
        for k in ks:
            row[f"p@{k}"] = float(y[order[:k]].mean())
        rows.append(row)
    return rows


def forest_args(description, n, quick, argv=None):
    """Parse the command line every URF speed benchmark takes: --n, --features, --trees, --n-jobs, --quick."""
    import argparse

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--n", type=int, default=n)
    ap.add_argument("--features", type=int, default=500)
    ap.add_argument("--trees", type=int, default=500)
    ap.add_argument("--n-jobs", type=int, default=-1)
    ap.add_argument("--quick", action="store_true", help=f"smoke run: n, features, trees = {quick}")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.features, args.trees = quick
    return args


def latent_data(n, features, seed, dtype=np.float64):
    """Correlated features from 5 latent factors plus noise: real structure for the forest to find."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 5))
    return (latent @ rng.normal(size=(5, features)) + 0.5 * rng.normal(size=(n, features))).astype(dtype)
