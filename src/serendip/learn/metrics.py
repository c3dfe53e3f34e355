"""Scores for supervised models: photometric-redshift statistics and classification tables.

Photo-z conventions (e.g. Hoyle 2016):

* ``Δz = (z_pred − z_true) / (1 + z_true)``;
* ``σ_NMAD = 1.4826 · median(|Δz − median(Δz)|)``, a robust scatter;
* the catastrophic fraction is the share of objects with ``|Δz| > 0.15``;
* the bias is the mean of ``Δz`` (the median is reported too).
"""
from __future__ import annotations

import numpy as np

__all__ = ["bootstrap_interval", "delta_z", "sigma_nmad", "catastrophic_fraction", "bias", "redshift_metrics",
           "regression_metrics", "classification_metrics", "recall_at_precision", "looks_like_redshift"]

#: 1 / Φ⁻¹(3/4): makes the median absolute deviation of a Gaussian equal its σ.
NMAD_FACTOR = 1.4826
CATASTROPHIC_DZ = 0.15

_REDSHIFT_NAMES = {"z", "redshift", "zspec", "z_spec", "specz", "spec_z", "zsp", "z_true", "zphot", "photoz",
                   "photo_z", "z_phot", "zbest", "z_best"}


def looks_like_redshift(name: str | None) -> bool:
    """True when a target column name is a usual name for a redshift (``z``, ``redshift``, ``z_spec`` …)."""
    if not name:
        return False
    return str(name).strip().lower() in _REDSHIFT_NAMES


def _values(pred, true, what: str = "values") -> tuple[np.ndarray, np.ndarray]:
    """Two equally long, non-empty float arrays (no broadcasting of a length-1 side)."""
    pred = np.asarray(pred, dtype=float).ravel()
    true = np.asarray(true, dtype=float).ravel()
    if pred.shape != true.shape:
        raise ValueError(f"the predictions have {pred.size} values but the true {what} {true.size}")
    if true.size == 0:
        raise ValueError(f"no {what} to score")
    return pred, true


def _pair(z_pred, z_true) -> tuple[np.ndarray, np.ndarray]:
    z_pred, z_true = _values(z_pred, z_true, "redshifts")
    if np.any(z_true <= -1):
        raise ValueError("z_true must be > -1 (Δz divides by 1 + z_true)")
    return z_pred, z_true


def delta_z(z_pred, z_true) -> np.ndarray:
    """Return ``Δz = (z_pred − z_true) / (1 + z_true)`` for each object."""
    z_pred, z_true = _pair(z_pred, z_true)
    return (z_pred - z_true) / (1.0 + z_true)


def sigma_nmad(z_pred, z_true) -> float:
    """Normalised median absolute deviation ``1.4826 · median(|Δz − median(Δz)|)``."""
    dz = delta_z(z_pred, z_true)
    return float(NMAD_FACTOR * np.median(np.abs(dz - np.median(dz))))


def catastrophic_fraction(z_pred, z_true, threshold: float = CATASTROPHIC_DZ) -> float:
    """Fraction of objects with ``|Δz| > threshold`` (0.15 by default)."""
    dz = delta_z(z_pred, z_true)
    return float(np.mean(np.abs(dz) > threshold))


def bias(y_pred, y_true) -> float:
    """Mean of ``y_pred − y_true``."""
    y_pred, y_true = _values(y_pred, y_true)
    return float(np.mean(y_pred - y_true))


def redshift_metrics(z_pred, z_true, threshold: float = CATASTROPHIC_DZ) -> dict[str, float]:
    """σ_NMAD, catastrophic fraction, and mean/median Δz of a set of photometric redshifts."""
    dz = delta_z(z_pred, z_true)
    return {
        "sigma_nmad": float(NMAD_FACTOR * np.median(np.abs(dz - np.median(dz)))),
        "catastrophic_fraction": float(np.mean(np.abs(dz) > threshold)),
        "bias_dz": float(np.mean(dz)),
        "median_dz": float(np.median(dz)),
        "n": int(dz.size),
    }


def regression_metrics(y_true, y_pred, *, redshift: bool = False) -> dict[str, float]:
    """RMSE, MAE, bias (mean ``y_pred − y_true``) and R²; with ``redshift=True`` also the photo-z statistics."""
    y_pred, y_true = _values(y_pred, y_true)
    resid = y_pred - y_true
    ss_tot = float(np.sum((y_true - y_true.mean()) ** 2))
    out = {
        "rmse": float(np.sqrt(np.mean(resid ** 2))),
        "mae": float(np.mean(np.abs(resid))),
        "bias": float(np.mean(resid)),
        "r2": float(1.0 - np.sum(resid ** 2) / ss_tot) if ss_tot > 0 else float("nan"),
        "n": int(y_true.size),
    }
    if redshift:
        out.update({k: v for k, v in redshift_metrics(y_pred, y_true).items() if k != "n"})
    return out


def recall_at_precision(y_true, score, min_precision: float = 0.9, pos_label=1) -> tuple[float, float, float]:
    """Highest recall reachable with precision ≥ ``min_precision`` by thresholding ``score``.

    Returns ``(recall, precision, threshold)``; ``(0, nan, nan)`` when no threshold reaches it.
    """
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(np.asarray(y_true) == pos_label, score)
    ok = precision[:-1] >= min_precision
    if not ok.any():
        return 0.0, float("nan"), float("nan")
    k = np.flatnonzero(ok)[np.argmax(recall[:-1][ok])]
    return float(recall[k]), float(precision[k]), float(thresholds[k])


def classification_metrics(y_true, y_pred, *, proba=None, classes=None,
                           min_precision: float = 0.9) -> dict:
    """Accuracy, balanced accuracy and a per-class precision/recall/F1 table.

    For two classes with ``proba`` (n × 2 probabilities, column order ``classes``)
    also ROC AUC, average precision and the best recall at precision ≥
    ``min_precision`` (positive class = ``classes[1]``).

    Returns a dict with float scores and ``per_class`` (an astropy Table).
    """
    from astropy.table import Table
    from sklearn.metrics import (accuracy_score, average_precision_score, balanced_accuracy_score,
                                 precision_recall_fscore_support, roc_auc_score)

    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if classes is None:
        classes = np.unique(np.concatenate([y_true, y_pred]))
    classes = np.asarray(classes)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
    per_class = Table({"class": classes.astype(str), "precision": p, "recall": r, "f1": f, "support": s})
    out = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "macro_f1": float(np.mean(f)),
        "n": int(y_true.size),
        "per_class": per_class,
    }
    if proba is not None:
        proba = np.asarray(proba)
        if proba.ndim != 2 or proba.shape != (y_true.size, classes.size):
            raise ValueError(f"proba has shape {proba.shape}; expected ({y_true.size}, {classes.size}): one column "
                             f"per class of {classes.tolist()} (pass classes= in the model's column order)")
    if proba is not None and classes.size == 2:
        score = proba[:, 1]
        positive = y_true == classes[1]
        if 0 < positive.sum() < positive.size:
            out["roc_auc"] = float(roc_auc_score(positive, score))
            out["average_precision"] = float(average_precision_score(positive, score))
            rec, prec, thr = recall_at_precision(positive, score, min_precision, pos_label=True)
            out[f"recall_at_precision_{min_precision:g}"] = rec
            out["threshold_at_precision"] = thr
    return out


def bootstrap_interval(score_fn, y_true, y_pred, *, n_boot: int = 200, level: float = 0.95,
                       random_state=0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``score_fn(y_true, y_pred)`` over resampled test objects.

    Small test sets (a few dozen objects) give scores with wide intervals; this
    makes that uncertainty explicit.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    n = y_true.shape[0]
    if n < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(random_state)
    vals = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        vals[b] = score_fn(y_true[idx], y_pred[idx])
    lo, hi = np.nanpercentile(vals, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)
