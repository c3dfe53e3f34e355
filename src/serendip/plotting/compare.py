"""The detector-comparison figure: one group of bars per label kind, one bar per detector."""
from __future__ import annotations

import numpy as np

from .style import figure, literal

__all__ = ["plot_comparison"]


def plot_comparison(table, metrics=("roc_auc", "average_precision"), *, figsize=None):
    """Bar chart of a :func:`serendip.explore.compare_detectors` table.

    Parameters
    ----------
    table : astropy Table
        Output of ``compare_detectors``.
    metrics : sequence of str
        Columns to draw, one panel each. ROC AUC panels get a dashed line at 0.5 (random).

    Returns
    -------
    fig, ax
        ``ax`` is one Axes for a single metric, else an array of Axes.
    """
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    for m in metrics + ["detector", "label_kind"]:
        if m not in table.colnames:
            raise ValueError(f"the comparison table has no column {m!r}; it has {table.colnames}")
    detectors = list(dict.fromkeys(np.asarray(table["detector"]).astype(str)))
    kinds = list(dict.fromkeys(np.asarray(table["label_kind"]).astype(str)))
    fig, axes = figure(len(metrics), 1, figsize=figsize or (max(5.0, 1.1 * len(kinds) + 2), 2.8 * len(metrics)),
                       squeeze=False)
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    width = 0.8 / max(len(detectors), 1)
    det_col = np.asarray(table["detector"]).astype(str)
    kind_col = np.asarray(table["label_kind"]).astype(str)
    for ax, metric in zip(axes[:, 0], metrics):
        values = np.asarray(table[metric], dtype=float)
        for j, det in enumerate(detectors):
            heights = []
            for kind in kinds:
                sel = (det_col == det) & (kind_col == kind)
                heights.append(values[sel][0] if sel.any() else np.nan)
            ax.bar(np.arange(len(kinds)) + (j - (len(detectors) - 1) / 2) * width, heights, width,
                   label=literal(det), color=palette(j % 10))
        if metric == "roc_auc":
            ax.axhline(0.5, color="k", lw=0.8, ls="--")
        ax.set_xticks(np.arange(len(kinds)))
        ax.set_xticklabels([literal(k) for k in kinds], rotation=20)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel(metric.replace("_", " "))
    axes[0, 0].legend(ncols=min(len(detectors), 6), fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 1.25))
    return fig, (axes[0, 0] if len(metrics) == 1 else axes[:, 0])
