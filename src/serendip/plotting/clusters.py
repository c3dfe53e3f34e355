"""The median spectrum of each cluster, stacked with offsets."""
from __future__ import annotations

import numpy as np

from .style import COLORS, figure

__all__ = ["plot_cluster_medians"]


def plot_cluster_medians(result, wavelength=None, *, offset: float | None = None, max_clusters: int = 20,
                         include_noise: bool = False, figsize=None):
    """Median spectrum per cluster of a :class:`serendip.explore.ClusterResult`.

    Parameters
    ----------
    result : ClusterResult
        Made with ``spectra=...`` so that ``median_spectra`` is filled.
    wavelength : array (M,), optional
        Overrides ``result.wavelength``.
    offset : float, optional
        Vertical step between clusters (default: the median spectrum range).
    max_clusters : int
        Only the largest clusters are drawn beyond this.
    include_noise : bool
        Also draw the HDBSCAN noise "cluster" (-1).

    Returns
    -------
    fig, ax
    """
    med = getattr(result, "median_spectra", None)
    if med is None:
        raise ValueError("this ClusterResult has no median spectra: call cluster(..., spectra=spectra)")
    wave = result.wavelength if wavelength is None else wavelength
    wave = np.arange(med.shape[1]) if wave is None else np.asarray(getattr(wave, "value", wave), dtype=float)
    if wave.shape != (med.shape[1],):
        raise ValueError(f"wavelength has {wave.size} pixels but the median spectra have {med.shape[1]}")
    summary = result.summary
    clusters = np.asarray(summary["cluster"])
    sizes = np.asarray(summary["size"])
    rows = [i for i in np.argsort(-sizes, kind="stable") if include_noise or clusters[i] >= 0][:max_clusters]
    rows = sorted(rows, key=lambda i: clusters[i])
    if not rows:
        raise ValueError("no clusters to draw (only noise)")
    if offset is None:
        spans = [np.nanpercentile(med[i], 99) - np.nanpercentile(med[i], 1) for i in rows
                 if np.isfinite(med[i]).any()]
        offset = float(np.nanmedian(spans)) if spans else 1.0
    fig, ax = figure(figsize=figsize or (7.0, 1.0 + 0.6 * len(rows)))
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    for j, i in enumerate(rows):
        y = med[i] + j * offset
        color = COLORS["normal"] if clusters[i] < 0 else palette(j % 10)
        ax.plot(wave, y, lw=0.7, color=color)
        good = np.isfinite(y)
        if good.any():
            ax.text(wave[-1], np.nanmedian(y[good][-max(1, good.sum() // 20):]),
                    f" {'noise' if clusters[i] < 0 else clusters[i]} (n={sizes[i]})", fontsize=7, va="center",
                    color=color)
    ax.set_xlabel("wavelength [Å]" if wavelength is not None or result.wavelength is not None else "pixel")
    ax.set_ylabel("median flux + offset")
    ax.set_title("median spectrum per cluster")
    return fig, ax
