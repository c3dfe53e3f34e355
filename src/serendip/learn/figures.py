"""Evaluation figures for :class:`~serendip.learn.TrainResult` (built on demand, no pyplot state)."""
from __future__ import annotations

import numpy as np

from ..plotting.style import COLORS, figure

__all__ = ["confusion_figure", "roc_pr_figure", "redshift_figure", "regression_figure",
           "learning_curve_figure", "importances_figure", "result_figures", "summary_figure"]


def _confusion(ax, y_true, y_pred, classes):
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(y_true, y_pred, labels=classes)
    frac = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(frac, vmin=0, vmax=1, cmap="Blues")
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, [str(c) for c in classes], rotation=45, ha="right")
    ax.set_yticks(ticks, [str(c) for c in classes])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (row-normalised; counts)")
    if len(classes) <= 12:
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(j, i, f"{cm[i, j]}", ha="center", va="center", fontsize=7,
                        color="white" if frac[i, j] > 0.5 else "black")
    return im


def confusion_figure(y_true, y_pred, classes):
    """Row-normalised confusion matrix with counts."""
    fig, ax = figure(figsize=(4.6, 4.0))
    im = _confusion(ax, y_true, y_pred, classes)
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of true class")
    return fig


def _roc(ax, positive, score):
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(positive, score)
    ax.plot(fpr, tpr, color=COLORS["model"])
    ax.plot([0, 1], [0, 1], ls=":", color=COLORS["line"])
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title("ROC")


def _pr(ax, positive, score):
    from sklearn.metrics import precision_recall_curve

    prec, rec, _ = precision_recall_curve(positive, score)
    ax.plot(rec, prec, color=COLORS["accent"])
    ax.axhline(np.mean(positive), ls=":", color=COLORS["line"])
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("precision-recall")


def roc_pr_figure(y_true, score, positive_class):
    """ROC and precision-recall curves of a binary classifier (positive = ``positive_class``)."""
    positive = np.asarray(y_true) == positive_class
    fig, axes = figure(1, 2)
    _roc(axes[0], positive, score)
    _pr(axes[1], positive, score)
    return fig


def _redshift(ax, z_true, z_pred):
    from .metrics import redshift_metrics

    z_true, z_pred = np.asarray(z_true, float), np.asarray(z_pred, float)
    lim = [min(z_true.min(), z_pred.min()), max(z_true.max(), z_pred.max())]
    if z_true.size > 3000:
        ax.hexbin(z_true, z_pred, gridsize=70, bins="log", cmap="Greys", mincnt=1, extent=lim * 2)
    else:
        ax.scatter(z_true, z_pred, s=3, alpha=0.5, color=COLORS["model"], lw=0)
    zz = np.linspace(lim[0], lim[1], 50)
    ax.plot(zz, zz, color=COLORS["weird"], lw=0.8)
    for s in (-1, 1):
        ax.plot(zz, zz + s * 0.15 * (1 + zz), color=COLORS["weird"], lw=0.6, ls="--")
    m = redshift_metrics(z_pred, z_true)
    ax.text(0.03, 0.97, f"σ_NMAD = {m['sigma_nmad']:.4f}\ncatastrophic = {100 * m['catastrophic_fraction']:.2f} %"
            f"\nbias Δz = {m['bias_dz']:+.4f}\nn = {m['n']}", transform=ax.transAxes, va="top", fontsize=8)
    ax.set_xlim(lim)
    ax.set_ylim(lim)
    ax.set_xlabel("z_true")
    ax.set_ylabel("z_pred")
    ax.set_title("photometric vs spectroscopic redshift")


def redshift_figure(z_true, z_pred):
    """z_pred against z_true with the 1:1 line, the |Δz| = 0.15 limits and the photo-z statistics."""
    fig, ax = figure(figsize=(4.4, 4.2))
    _redshift(ax, z_true, z_pred)
    return fig


def _regression(ax, y_true, y_pred, name="target"):
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    ax.scatter(y_true, y_pred, s=4, alpha=0.5, color=COLORS["model"], lw=0)
    lim = [min(y_true.min(), y_pred.min()), max(y_true.max(), y_pred.max())]
    ax.plot(lim, lim, color=COLORS["weird"], lw=0.8)
    rmse = np.sqrt(np.mean((y_pred - y_true) ** 2))
    ax.text(0.03, 0.97, f"RMSE = {rmse:.4g}\nn = {y_true.size}", transform=ax.transAxes, va="top", fontsize=8)
    ax.set_xlabel(f"true {name}")
    ax.set_ylabel(f"predicted {name}")
    ax.set_title("predicted vs true (test split)")


def regression_figure(y_true, y_pred, name: str = "target"):
    """Predicted against true values with the 1:1 line."""
    fig, ax = figure(figsize=(4.4, 4.2))
    _regression(ax, y_true, y_pred, name)
    return fig


def _learning(ax, lc):
    sizes = np.asarray(lc["train_sizes"])
    for key, color, label in (("train", COLORS["normal"], "training"), ("val", COLORS["accent"], "validation")):
        m, s = np.asarray(lc[f"{key}_mean"]), np.asarray(lc[f"{key}_std"])
        ax.plot(sizes, m, "o-", color=color, label=label, ms=3)
        ax.fill_between(sizes, m - s, m + s, color=color, alpha=0.2, lw=0)
    ax.set_xlabel("training examples")
    ax.set_ylabel("score")
    ax.set_title(f"learning curve: {lc['verdict']}")
    ax.legend(loc="lower right")


def learning_curve_figure(lc: dict):
    """Training and validation score against training-set size, titled with the verdict."""
    fig, ax = figure()
    _learning(ax, lc)
    return fig


def _importances(ax, tab, top):
    t = tab[:top]
    y = np.arange(len(t))[::-1]
    ax.barh(y, t["importance_mean"], xerr=t["importance_std"], color=COLORS["model"])
    ax.set_yticks(y, [str(f) for f in t["feature"]], fontsize=7)
    ax.set_xlabel("drop in held-out score when shuffled")
    ax.set_title("permutation importances (test split)")


def importances_figure(tab, top: int = 15):
    """Horizontal bars of the largest permutation importances with their spread."""
    fig, ax = figure(figsize=(4.6, 0.25 * min(top, len(tab)) + 1.2))
    _importances(ax, tab, top)
    return fig


def result_figures(result) -> dict:
    """All figures that apply to a :class:`~serendip.learn.TrainResult`: name -> Figure."""
    figs = {}
    if result.task == "classification":
        figs["confusion"] = confusion_figure(result.y_test, result.y_pred, result.classes)
        if result.classes is not None and len(result.classes) == 2 and result.proba is not None:
            figs["roc_pr"] = roc_pr_figure(result.y_test, result.proba[:, 1], result.classes[1])
    elif result.redshift:
        figs["redshift"] = redshift_figure(result.y_test, result.y_pred)
    else:
        figs["predicted_vs_true"] = regression_figure(result.y_test, result.y_pred, result.target_name or "target")
    if result.learning_curve:
        figs["learning_curve"] = learning_curve_figure(result.learning_curve)
    if result.importances is not None and len(result.importances):
        figs["importances"] = importances_figure(result.importances)
    return figs


def summary_figure(result):
    """One multi-panel figure (main diagnostic, learning curve, importances) for the PNG report."""
    panels = ["main"]
    if result.task == "classification" and result.proba is not None and len(result.classes) == 2:
        panels.append("pr")
    if result.learning_curve:
        panels.append("lc")
    if result.importances is not None and len(result.importances):
        panels.append("imp")
    fig, axes = figure(1, len(panels), figsize=(4.3 * len(panels), 4.0))
    axes = np.atleast_1d(axes)
    for ax, kind in zip(axes, panels):
        if kind == "main":
            if result.task == "classification":
                _confusion(ax, result.y_test, result.y_pred, result.classes)
            elif result.redshift:
                _redshift(ax, result.y_test, result.y_pred)
            else:
                _regression(ax, result.y_test, result.y_pred, result.target_name or "target")
        elif kind == "pr":
            _pr(ax, np.asarray(result.y_test) == result.classes[1], result.proba[:, 1])
        elif kind == "lc":
            _learning(ax, result.learning_curve)
        else:
            _importances(ax, result.importances, 12)
    fig.suptitle(f"{result.algorithm}: {result.task}" + (f" of {result.target_name}" if result.target_name else ""))
    return fig
