"""Honesty checks for a trained model: the learning curve with a verdict, and permutation importances."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._logging import get_logger

__all__ = ["learning_curve_verdict", "compute_learning_curve", "permutation_importances",
           "contiguous_groups"]

log = get_logger(__name__)


def learning_curve_verdict(train_scores, val_scores, *, gap_tol: float = 0.05,
                           low_score: float = 0.7) -> tuple[str, str]:
    """Turn a learning curve into ``"overfitting"``, ``"underfitting"`` or ``"fine"``, plus an explanation.

    Scores are "higher is better" and roughly in [0, 1] (balanced accuracy, R²).
    The last point (largest training size) decides:

    * overfitting: the training score beats validation by more than ``gap_tol``;
    * underfitting: the two agree but even the training score is below ``low_score``;
    * fine: otherwise.

    Parameters
    ----------
    train_scores, val_scores : array-like of shape (n_sizes,) or (n_sizes, n_folds)
        Mean scores (or per-fold scores, averaged here) at increasing training sizes.
    """
    tr = np.asarray(train_scores, dtype=float)
    va = np.asarray(val_scores, dtype=float)
    if tr.ndim == 2:
        tr = tr.mean(axis=1)
    if va.ndim == 2:
        va = va.mean(axis=1)
    if tr.size == 0 or tr.shape != va.shape:
        raise ValueError("train and validation scores must be non-empty and of the same length")
    if not (np.isfinite(tr[-1]) and np.isfinite(va[-1])):
        return "not computed", ("the scores at the largest training size could not be computed (too few "
                                "rows per validation fold, or every fit failed), so there is no verdict")
    gap = tr[-1] - va[-1]
    rising = va.size > 1 and va[-1] - va[-2] > 0.25 * gap_tol
    more = " Validation still improves with more data, so more examples should help." if rising else ""
    if gap > gap_tol:
        return "overfitting", (f"training score {tr[-1]:.3f} is well above validation {va[-1]:.3f} "
                               f"(gap {gap:.3f}): the model memorises part of the training set; "
                               f"consider stronger regularisation or a simpler model.{more}")
    if tr[-1] < low_score and va[-1] < low_score:
        return "underfitting", (f"even the training score is low ({tr[-1]:.3f}, validation {va[-1]:.3f}): "
                                "the model or the features cannot describe the target; try a more "
                                f"flexible model or better features.{more}")
    if -gap > gap_tol:  # validation above training: noise of small folds, not a property of the model
        return "fine", (f"validation {va[-1]:.3f} is above training {tr[-1]:.3f} (by {-gap:.3f}): no sign of "
                        "overfitting; a gap this way round is usually the noise of small or unlike folds, so "
                        f"read the scores with their spread.{more}")
    return "fine", (f"training {tr[-1]:.3f} and validation {va[-1]:.3f} agree within {gap_tol}: "
                    f"no sign of over- or underfitting.{more}")


def compute_learning_curve(estimator, X, y, *, cv, scoring, train_sizes=(0.1, 0.25, 0.5, 0.75, 1.0),
                           groups=None, n_jobs=None, random_state=0, fit_params=None) -> dict:
    """Train-versus-validation scores at increasing training sizes (scikit-learn's ``learning_curve``).

    ``fit_params`` (per-row arrays such as ``sample_weight`` are cut to each fit's rows) are
    passed to every fit, so the curve trains the same model as the search and the refit.

    Returns a dict with ``train_sizes``, ``train_mean``, ``train_std``, ``val_mean``, ``val_std``,
    ``scoring``, ``verdict`` and ``explanation``.
    """
    from sklearn.model_selection import learning_curve

    kw = {}
    if fit_params:
        import inspect

        kw = {"params" if "params" in inspect.signature(learning_curve).parameters else "fit_params": fit_params}
    sizes, tr, va = learning_curve(estimator, X, y, groups=groups, cv=cv, scoring=scoring,
                                   train_sizes=np.asarray(train_sizes), n_jobs=n_jobs, shuffle=True,
                                   random_state=random_state, error_score=np.nan, **kw)
    trm, vam = np.nanmean(tr, axis=1), np.nanmean(va, axis=1)
    verdict, why = learning_curve_verdict(trm, vam)
    return {"train_sizes": sizes.tolist(), "train_mean": trm.tolist(), "train_std": np.nanstd(tr, axis=1).tolist(),
            "val_mean": vam.tolist(), "val_std": np.nanstd(va, axis=1).tolist(), "scoring": str(scoring),
            "verdict": verdict, "explanation": f"scored by {scoring}: {why}"}


def contiguous_groups(n_features: int, n_groups: int) -> list[np.ndarray]:
    """Split ``range(n_features)`` into at most ``n_groups`` contiguous blocks of near-equal size."""
    n_groups = max(1, min(n_groups, n_features))
    return [np.asarray(b) for b in np.array_split(np.arange(n_features), n_groups)]


def permutation_importances(model, X, y, *, scoring, n_repeats: int = 5,
                            groups: Sequence[Sequence[int]] | None = None, random_state=0,
                            names: Sequence[str] | None = None):
    """Drop in held-out score when a feature (or a group of features) is shuffled across objects.

    With ``groups=None`` every feature is its own group (the classic
    permutation importance of Breiman 2001). A group's columns are shuffled
    with the same row permutation, so for raw spectra a block of adjacent
    pixels is scrambled together (``contiguous_groups``).

    Parameters
    ----------
    model : fitted estimator
    X : array-like or DataFrame of shape (n, p)
        Held-out data (never the training set).
    y : array-like of shape (n,)
    scoring : str or callable
        A scikit-learn scorer (higher is better).
    n_repeats : int
        Shuffles per group.
    groups : list of index arrays, optional
    random_state : int or Generator
    names : list of str, optional
        One name per group (defaults to the feature names / ``"cols a-b"``).

    Returns
    -------
    astropy.table.Table
        Columns ``feature``, ``importance_mean``, ``importance_std``, sorted by importance (largest first).
        ``meta['baseline_score']`` holds the unshuffled score.
    """
    from astropy.table import Table
    from sklearn.metrics import check_scoring

    scorer = check_scoring(model, scoring=scoring)
    is_frame = hasattr(X, "iloc")
    columns = list(X.columns) if is_frame else None
    Xa = X.to_numpy(copy=True) if is_frame else np.array(X, copy=True)
    y = np.asarray(y)
    n, p = Xa.shape
    if groups is None:
        groups = [np.array([j]) for j in range(p)]
    groups = [np.asarray(g, dtype=int) for g in groups]
    if names is None:
        if columns is not None and all(g.size == 1 for g in groups):
            names = [str(columns[g[0]]) for g in groups]
        elif all(g.size == 1 for g in groups):
            names = [f"x{g[0]}" for g in groups]
        else:
            names = [f"cols {g[0]}-{g[-1]}" for g in groups]
    rng = np.random.default_rng(random_state)

    def wrap(a):
        if is_frame:
            import pandas as pd

            return pd.DataFrame(a, columns=columns)
        return a

    baseline = float(scorer(model, wrap(Xa), y))
    drops = np.empty((len(groups), n_repeats))
    work = Xa.copy()
    for k, g in enumerate(groups):
        original = work[:, g].copy()
        for r in range(n_repeats):
            work[:, g] = original[rng.permutation(n)]
            drops[k, r] = baseline - float(scorer(model, wrap(work), y))
        work[:, g] = original
    mean, std = drops.mean(axis=1), drops.std(axis=1)
    order = np.argsort(-mean, kind="stable")
    tab = Table({"feature": np.asarray(names, dtype=str)[order], "importance_mean": mean[order],
                 "importance_std": std[order]})
    tab.meta.update({"baseline_score": baseline, "n_repeats": n_repeats, "n_objects": n,
                     "scoring": scoring if isinstance(scoring, str) else getattr(scoring, "__name__", "custom"),
                     "note": "drop in held-out score when the feature is shuffled; higher = more important"})
    return tab
