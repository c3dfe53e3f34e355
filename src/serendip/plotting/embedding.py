"""An embedding coloured by any column: weirdness, Sequencer position, class or cluster.

Points are drawn rasterised (so vector outputs stay small); above
``hexbin_above`` points (default 10⁵) the map becomes a hexbin — counts, or
the median of a numeric colour column per cell — so 10⁶ objects stay readable.
"""
from __future__ import annotations

import numpy as np

from .style import CMAP_WEIRDNESS, COLORS, figure, literal

__all__ = ["plot_embedding"]

_MAX_CATEGORIES = 20


def _is_categorical(values: np.ndarray) -> bool:
    if values.dtype.kind in "OUSb":
        return True
    return values.dtype.kind in "iu" and np.unique(values).size <= _MAX_CATEGORIES


def plot_embedding(emb, color=None, *, ax=None, label: str | None = None, cmap=None, highlight=None,
                   hexbin_above: int = 100_000, gridsize: int = 80, s: float | None = None, alpha: float = 0.8,
                   title: str | None = None, figsize=None):
    """Scatter (or hexbin) of a 2-D embedding.

    Parameters
    ----------
    emb : array (N, >=2)
        The embedding; the first two columns are drawn.
    color : array (N,), optional
        Numeric values (colour bar; e.g. weirdness, higher = weirder, or Sequencer position)
        or categories (strings, or integers with at most 20 values, e.g. class or cluster;
        cluster -1 is drawn grey as noise; beyond 20 categories the 19 largest keep a colour
        and the rest are drawn grey as "other"). Objects with a NaN numeric colour are
        drawn small and grey underneath.
    ax : matplotlib Axes, optional
        Draw into this axes instead of a new figure.
    label : str, optional
        Colour-bar or legend title.
    cmap : str, optional
        Colour map for numeric colours (default ``magma``).
    highlight : array of int or bool, optional
        Objects to ring in the "weird" colour (e.g. the top-weirdness list).
    hexbin_above : int
        Use a hexbin above this many points.
    gridsize : int
        Hexbin cells across.
    s, alpha : float
        Marker size (default from N) and transparency.

    Returns
    -------
    fig, ax
    """
    emb = np.asarray(emb, dtype=float)
    if emb.ndim != 2 or emb.shape[1] < 2:
        raise ValueError(f"emb must have shape (N, 2) or more columns; got {emb.shape}")
    n = emb.shape[0]
    if ax is None:
        fig, ax = figure(figsize=figsize or (5.0, 4.2))
    else:
        fig = ax.figure
    x, y = emb[:, 0], emb[:, 1]
    values = None if color is None else np.asarray(color)
    if values is not None and values.shape != (n,):
        raise ValueError(f"color has shape {values.shape} but the embedding has {n} points")
    size = s if s is not None else float(np.clip(2000.0 / max(n, 1), 0.5, 20.0))
    categorical = values is not None and _is_categorical(values)
    if n > hexbin_above:
        if values is None or categorical:
            hb = ax.hexbin(x, y, gridsize=gridsize, bins="log", cmap="Greys", mincnt=1, linewidths=0)
            fig.colorbar(hb, ax=ax, label="objects per cell (log)")
        else:
            hb = ax.hexbin(x, y, C=values.astype(float), reduce_C_function=np.median, gridsize=gridsize,
                           cmap=cmap or CMAP_WEIRDNESS, mincnt=1, linewidths=0)
            fig.colorbar(hb, ax=ax, label=literal(f"median {label or 'value'} per cell"))
    elif values is None:
        ax.scatter(x, y, s=size, c=COLORS["normal"], alpha=alpha, linewidths=0, rasterized=True)
    elif categorical:
        cats, counts = np.unique(values, return_counts=True)
        other = None
        if cats.size > _MAX_CATEGORIES:  # the largest categories keep a colour; the rest are drawn as "other"
            keep = np.sort(np.argsort(-counts, kind="stable")[:_MAX_CATEGORIES - 1])
            other = ~np.isin(values, cats[keep])
            cats = cats[keep]
        from matplotlib import colormaps

        palette = colormaps["tab20" if cats.size > 10 else "tab10"]
        if other is not None:
            ax.scatter(x[other], y[other], s=size, color=COLORS["normal"], alpha=alpha * 0.5, linewidths=0,
                       rasterized=True, label=f"other ({other.sum()})")
        for i, c in enumerate(cats):
            sel = values == c
            is_noise = values.dtype.kind in "iu" and c == -1
            ax.scatter(x[sel], y[sel], s=size, color=COLORS["normal"] if is_noise else palette(i % palette.N),
                       alpha=alpha * (0.5 if is_noise else 1.0), linewidths=0, rasterized=True,
                       label=literal(f"{c} ({sel.sum()})") if not is_noise else f"noise ({sel.sum()})")
        ax.legend(title=None if label is None else literal(label), markerscale=max(1.0, 12.0 / size) ** 0.5,
                  fontsize=7, loc="best")
    else:
        v = values.astype(float)
        bad = ~np.isfinite(v)
        if bad.any():  # no value: drawn small and grey underneath, not hidden
            ax.scatter(x[bad], y[bad], s=max(size * 0.5, 0.5), color="#cccccc", linewidths=0, rasterized=True,
                       label=f"no value ({bad.sum()})")
        good = np.flatnonzero(~bad)
        order = good[np.argsort(v[good], kind="stable")]  # weirdest drawn last, on top
        sc = ax.scatter(x[order], y[order], c=v[order], s=size, cmap=cmap or CMAP_WEIRDNESS, alpha=alpha,
                        linewidths=0, rasterized=True)
        fig.colorbar(sc, ax=ax, label=literal(label or "value"))
    if highlight is not None:
        h = np.asarray(highlight)
        if h.dtype == bool and h.shape != (len(x),):
            raise ValueError(f"highlight is a boolean mask of {h.size} values for {len(x)} points; give one per "
                             "point, or the indices to highlight")
        idx = np.flatnonzero(h) if h.dtype == bool else h.astype(int)
        if idx.size and (idx.min() < -len(x) or idx.max() >= len(x)):
            raise ValueError(f"highlight indices must lie in 0..{len(x) - 1}; found {idx.min()}..{idx.max()}")
        ax.scatter(x[idx], y[idx], s=max(size * 4, 12), facecolors="none", edgecolors=COLORS["weird"],
                   linewidths=0.8, label="highlighted")
    ax.set_xlabel("embedding 1")
    ax.set_ylabel("embedding 2")
    if title:
        ax.set_title(literal(title))
    return fig, ax
