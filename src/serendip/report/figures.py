"""Figures of the discovery report, in serendip's one style.

Each function takes plain arrays (what the run folder's tables hold), returns
``(fig, axes)`` and never calls ``show``. :func:`serendip.plotting.save_png`
writes them.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..plotting.style import CMAP_SEQUENCE, CMAP_WEIRDNESS, COLORS, RC, figure
from ..plotting.style import literal as _literal
from ..spectra.lines import LINES, PLOT_LINES

__all__ = ["data_overview", "weirdest_gallery", "weirdness_distribution", "weirdness_vs_snr",
           "sequencer_classic", "sequence_features", "embedding_maps", "planted_recall", "mark_lines"]

FLUX_LABEL = "normalised flux"
WAVE_REST = "rest-frame wavelength [Å]"
WAVE_OBS = "observed wavelength [Å]"


def _single_colour(colour):
    """A colour map that is ``colour`` everywhere (a hexbin of one category)."""
    from matplotlib.colors import ListedColormap

    return ListedColormap([colour])


def _finite(a) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    return a[np.isfinite(a)]


def mark_lines(ax, wmin: float, wmax: float, *, z: float = 0.0, labels: bool = True,
               names: Sequence[str] = PLOT_LINES) -> None:
    """Draw faint vertical lines at the rest-frame lines that fall in [wmin, wmax] (shifted by 1+z)."""
    trans = ax.get_xaxis_transform()
    last = -np.inf
    for name in names:
        w = LINES[name] * (1.0 + z)
        if wmin <= w <= wmax:
            ax.axvline(w, color=COLORS["line"], lw=0.6, ls=":", zorder=0)
            if labels and w - last > 0.03 * (wmax - wmin):
                ax.text(w, 0.99, name, transform=trans, rotation=90, va="top", ha="right", fontsize=6,
                        color="#555555")
                last = w


def _plain_log_ticks(axis) -> None:
    """Label a log axis 1, 2, 5, 10, 20 ... in plain numbers, without crowded minor labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def data_overview(z, snr, *, n_rejected: int = 0):
    """Redshift and S/N histograms of the ingested objects."""
    fig, axes = figure(1, 2, figsize=(8.4, 3.0))
    zf, sf = _finite(z), _finite(snr)
    for ax, values, label, colour in ((axes[0], zf, "redshift z", COLORS["accent"]),
                                      (axes[1], sf, "median S/N per pixel", COLORS["model"])):
        if values.size:
            ax.hist(values, bins=min(40, max(5, values.size // 5)), color=colour, alpha=0.85)
        else:
            ax.text(0.5, 0.5, "not available", transform=ax.transAxes, ha="center")
        ax.set_xlabel(label)
        ax.set_ylabel("objects")
    axes[0].set_title(f"{zf.size} objects with a redshift")
    axes[1].set_title(f"S/N ({n_rejected} input files rejected)")
    return fig, axes


def weirdest_gallery(wave, flux, similar_median, feature_wave, residual, labels: Sequence[str], *,
                     rest_frame: bool = True, z=None, ncols: int = 2):
    """The weirdest objects: spectrum with lines, the median of its most similar objects, and the residual.

    Parameters
    ----------
    wave : (M,) grid of ``flux`` and ``similar_median``.
    flux, similar_median : (K, M)
    feature_wave : (F,) grid of the explanation residual.
    residual : (K, F) explanation residual (object minus similar objects, in the features the forest saw).
    labels : K titles (id, rank, z, S/N, weirdness); drawn literally (a ``$`` in an id is not mathtext).
    """
    flux = np.atleast_2d(np.asarray(flux, dtype=float))
    k = flux.shape[0]
    nrows = int(np.ceil(k / ncols))
    from matplotlib.figure import Figure
    import matplotlib as mpl

    with mpl.rc_context(RC):
        fig = Figure(figsize=(5.2 * ncols, 2.9 * nrows), layout="constrained")
        outer = fig.add_gridspec(nrows, ncols)
        axes = []
        for i in range(k):
            inner = outer[i // ncols, i % ncols].subgridspec(2, 1, height_ratios=(3, 1), hspace=0.0)
            ax = fig.add_subplot(inner[0])
            axr = fig.add_subplot(inner[1], sharex=ax)
            ax.plot(wave, flux[i], color="#222222", lw=0.6, label="object")
            med = np.asarray(similar_median[i], dtype=float)
            if np.any(np.isfinite(med)):
                ax.plot(wave, med, color=COLORS["accent"], lw=0.9, alpha=0.9, label="median of most similar")
            zi = 0.0 if (rest_frame or z is None) else float(z[i]) if np.isfinite(z[i]) else 0.0
            mark_lines(ax, float(wave[0]), float(wave[-1]), z=zi, labels=True)
            finite = flux[i][np.isfinite(flux[i])]
            if finite.size:
                lo, hi = np.percentile(finite, [0.5, 99.5])
                pad = 0.15 * (hi - lo + 1e-12)
                ax.set_ylim(lo - pad, hi + pad)
            ax.set_title(_literal(labels[i]), fontsize=8, loc="left")
            ax.set_ylabel(FLUX_LABEL, fontsize=7)
            ax.tick_params(labelbottom=False)
            res = np.asarray(residual[i], dtype=float)
            axr.axhline(0, color=COLORS["line"], lw=0.5)
            axr.plot(feature_wave, res, color=COLORS["weird"], lw=0.7)
            axr.set_ylabel("residual", fontsize=7)
            axr.set_xlabel(WAVE_REST if rest_frame else WAVE_OBS, fontsize=7)
            if i == 0:
                ax.legend(fontsize=6, loc="upper right", framealpha=0.8)
            axes.append((ax, axr))
    return fig, axes


def weirdness_distribution(weirdness, threshold: float, top_n: int, *, faithful=None, label: str = "best mode"):
    """Histogram of weirdness (higher = weirder) with the top-N threshold."""
    fig, ax = figure(1, 1, figsize=(6.0, 3.2))
    w = _finite(weirdness)
    bins = np.linspace(w.min(), w.max(), 50) if w.size > 1 and w.max() > w.min() else 10
    ax.hist(w, bins=bins, color=COLORS["model"], alpha=0.85, label=label)
    ax.axvline(threshold, color=COLORS["weird"], lw=1.5, ls="--", label=f"top {top_n} threshold")
    ax.set_yscale("log")
    ax.set_xlabel("weirdness (higher = weirder)")
    ax.set_ylabel("objects")
    ax.set_title(f"weirdness of {w.size} objects")
    ax.legend()
    return fig, ax


def weirdness_vs_snr(snr, weirdness, *, faithful=None, label: str = "best mode"):
    """Weirdness against S/N for the run's forest (``label``: its variant) and the faithful forest if given."""
    panels = [(_literal(label), weirdness)] + ([("faithful", faithful)] if faithful is not None else [])
    fig, axes = figure(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    snr = np.asarray(snr, dtype=float)
    for ax, (name, w) in zip(axes[0], panels):
        w = np.asarray(w, dtype=float)
        ok = np.isfinite(snr) & np.isfinite(w) & (snr > 0)
        ax.scatter(snr[ok], w[ok], s=3, color=COLORS["normal"], alpha=0.6, rasterized=True)
        if ok.sum() > 2:
            from scipy.stats import spearmanr

            rho = spearmanr(snr[ok], w[ok]).statistic
            ax.set_title(f"{name}: Spearman ρ(S/N, weirdness) = {rho:+.2f}")
        ax.set_xscale("log")
        _plain_log_ticks(ax.xaxis)
        ax.set_xlabel("median S/N per pixel")
        ax.set_ylabel("weirdness (higher = weirder)")
    return fig, axes


def _edges(centres: np.ndarray) -> np.ndarray:
    c = np.asarray(centres, dtype=float)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = 0.5 * (c[1:] + c[:-1])
    return np.concatenate([[2 * c[0] - mid[0]], mid, [2 * c[-1] - mid[-1]]])


def sequencer_classic(wave, flux, position, eta_labels: Sequence[str] = (), eta_values=(), *,
                      elongation: float | None = None, rest_frame: bool = True):
    """The classic Sequencer figure: input order beside sequence order, and η per metric and scale.

    Pixels are drawn at their true wavelengths (the grid may be logarithmic).
    """
    flux = np.asarray(flux, dtype=float)
    order = np.argsort(np.asarray(position), kind="stable")
    ncols = 3 if len(eta_values) else 2
    fig, axes = figure(1, ncols, figsize=(4.0 * ncols, 3.6))
    finite = flux[np.isfinite(flux)]
    vmin, vmax = (np.percentile(finite, [1, 99]) if finite.size else (0, 1))
    xe = _edges(wave)
    ye = np.arange(flux.shape[0] + 1)
    for ax, data, title in ((axes[0], flux, "input order"), (axes[1], flux[order], "sequence order")):
        ax.pcolormesh(xe, ye, data, cmap=CMAP_SEQUENCE, vmin=vmin, vmax=vmax, shading="flat", rasterized=True)
        ax.set_ylim(flux.shape[0], 0)
        ax.set_xlabel(WAVE_REST if rest_frame else WAVE_OBS)
        ax.set_ylabel("object (row)")
        ax.set_title(title)
    if elongation is not None:
        axes[1].set_title(f"sequence order (η = {elongation:.1f})")
    if len(eta_values):
        ax = axes[2]
        y = np.arange(len(eta_values))
        ax.barh(y, eta_values, color=COLORS["accent"])
        ax.set_yticks(y, labels=[_literal(t) for t in eta_labels], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("elongation η")
        ax.set_title("η per metric and scale")
    return fig, axes


def sequence_features(wave, flux, position, *, nbins: int = 6, rest_frame: bool = True):
    """How the spectra change along the sequence.

    Top: median spectra in ``nbins`` consecutive stretches of the sequence.
    Bottom: per pixel, the Spearman correlation between flux and sequence
    position; the strongest features are marked.

    Returns
    -------
    fig, axes, features : features is a list of (wavelength, rho) for the
        strongest changes (local extremes of |rho|), strongest first.
    """
    from matplotlib import colormaps

    flux = np.asarray(flux, dtype=float)
    position = np.asarray(position, dtype=float)
    order = np.argsort(position, kind="stable")
    fig, axes = figure(2, 1, figsize=(8.0, 5.0), sharex=True, height_ratios=(2, 1))
    nbins = max(1, min(nbins, flux.shape[0]))
    cmap = colormaps[CMAP_SEQUENCE]
    for b, idx in enumerate(np.array_split(order, nbins)):
        with np.errstate(all="ignore"):
            med = np.nanmedian(flux[idx], axis=0)
        axes[0].plot(wave, med, color=cmap(b / max(1, nbins - 1)), lw=0.8,
                     label=f"part {b + 1}/{nbins}")
    axes[0].set_ylabel(FLUX_LABEL)
    axes[0].set_title("median spectrum along the sequence (start: purple, end: yellow)")
    if rest_frame:
        mark_lines(axes[0], float(wave[0]), float(wave[-1]))
    rho = spearman_columns(position, flux)
    axes[1].plot(wave, rho, color=COLORS["weird"], lw=0.8)
    axes[1].axhline(0, color=COLORS["line"], lw=0.5)
    axes[1].set_ylabel("Spearman ρ\n(flux, position)")
    axes[1].set_xlabel(WAVE_REST if rest_frame else WAVE_OBS)
    axes[1].set_ylim(-1.05, 1.05)
    feats = line_features(wave, rho)
    for w, r, _ in feats[:6]:
        axes[1].annotate(f"{w:.0f} Å", (w, r), fontsize=7, ha="center",
                         xytext=(0, 6 if r > 0 else -12), textcoords="offset points")
    return fig, axes, feats


def line_features(wave, rho, n: int = 8, width: int | None = None) -> list[tuple[float, float, float]]:
    """Narrow features whose correlation with the sequence differs from the continuum's.

    ``rho`` minus its running median over ``width`` pixels isolates lines from
    the smooth continuum trend. Returns ``(wavelength, rho, rho - continuum)``
    for the strongest ones, at least 1.5 % of the range apart, strongest first.
    """
    from scipy.ndimage import median_filter

    rho = np.nan_to_num(np.asarray(rho, dtype=float))
    width = width or max(5, len(rho) // 12) | 1
    cont = median_filter(rho, size=width, mode="nearest")
    rel = rho - cont
    picked = strongest_features(wave, rel, n=n, min_sep=0.015 * (float(wave[-1]) - float(wave[0])))
    idx = {float(w): i for i, w in enumerate(np.asarray(wave, dtype=float))}
    return [(w, float(rho[idx[w]]), r) for w, r in picked]


def spearman_columns(x, Y) -> np.ndarray:
    """Spearman correlation of ``x`` with every column of ``Y`` (NaN-free columns), vectorised."""
    from scipy.stats import rankdata

    Y = np.asarray(Y, dtype=float)
    rx = rankdata(x)
    rx = (rx - rx.mean()) / (rx.std() or 1.0)
    Y = np.where(np.isfinite(Y), Y, np.nanmedian(Y, axis=0, keepdims=True))
    ry = rankdata(Y, axis=0)
    sd = ry.std(axis=0)
    ry = (ry - ry.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    rho = (rx[:, None] * ry).mean(axis=0)
    rho[sd == 0] = 0.0
    return rho


def strongest_features(wave, rho, n: int = 8, min_sep: float | None = None) -> list[tuple[float, float]]:
    """Wavelengths of the strongest local extremes of |rho|, at least ``min_sep`` Å apart."""
    wave = np.asarray(wave, dtype=float)
    rho = np.nan_to_num(np.asarray(rho, dtype=float))
    min_sep = min_sep if min_sep is not None else 0.03 * (wave[-1] - wave[0])
    picked: list[tuple[float, float]] = []
    for i in np.argsort(-np.abs(rho), kind="stable"):
        if len(picked) >= n or abs(rho[i]) < 0.1:
            break
        if all(abs(wave[i] - w) >= min_sep for w, _ in picked):
            picked.append((float(wave[i]), float(rho[i])))
    return picked


def embedding_maps(xy, colourings: Sequence[tuple[str, np.ndarray, str]], *, method: str = ""):
    """The 2-D map coloured several ways: ``colourings`` is a list of (title, values, kind).

    ``kind`` is "weirdness", "sequence" or "cluster" (categorical; -1 = noise, grey).
    NaN values are drawn small and grey underneath.
    """
    xy = np.asarray(xy, dtype=float)
    n = len(colourings)
    fig, axes = figure(1, n, figsize=(4.0 * n, 3.8), squeeze=False)
    axes = axes[0]
    big = xy.shape[0] > 100_000
    limits = robust_limits(xy)
    for ax, (title, values, kind) in zip(axes, colourings):
        values = np.asarray(values, dtype=float)
        ok = np.isfinite(values)
        if kind == "cluster":
            ok &= values >= 0
        ax.scatter(xy[~ok, 0], xy[~ok, 1], s=2, color="#cccccc", rasterized=True, label="none")
        if big and kind == "cluster":
            # a median of cluster numbers is not a cluster: draw each cluster's cells in its own colour,
            # largest cluster first, so every cell shows a real cluster (the smallest one present on top)
            from matplotlib import colormaps

            cmap = colormaps["tab20"]
            labs, counts = np.unique(values[ok].astype(int), return_counts=True)
            # one extent for every layer, so their hexagons coincide
            extent = ((*limits[0], *limits[1]) if limits is not None else
                      (xy[ok, 0].min(), xy[ok, 0].max(), xy[ok, 1].min(), xy[ok, 1].max()))
            for j in np.argsort(-counts, kind="stable"):
                m = ok & (values == labs[j])
                ax.hexbin(xy[m, 0], xy[m, 1], gridsize=80, mincnt=1, linewidths=0, extent=extent,
                          cmap=_single_colour(cmap(int(j) % 20)))
        elif big:
            hb = ax.hexbin(xy[ok, 0], xy[ok, 1], C=values[ok], gridsize=80, reduce_C_function=np.median,
                           cmap=CMAP_WEIRDNESS if kind == "weirdness" else CMAP_SEQUENCE)
            fig.colorbar(hb, ax=ax, shrink=0.8)
        elif kind == "cluster":
            from matplotlib import colormaps

            cmap = colormaps["tab20"]
            labs = np.unique(values[ok]).astype(int)
            for j, lab in enumerate(labs):
                m = ok & (values == lab)
                ax.scatter(xy[m, 0], xy[m, 1], s=3, color=cmap(j % 20), rasterized=True)
        else:
            order = np.argsort(values[ok]) if kind == "weirdness" else np.arange(ok.sum())
            pts = xy[ok][order]
            sc = ax.scatter(pts[:, 0], pts[:, 1], c=values[ok][order], s=3, rasterized=True,
                            cmap=CMAP_WEIRDNESS if kind == "weirdness" else CMAP_SEQUENCE)
            fig.colorbar(sc, ax=ax, shrink=0.8, label=_literal(title))
        ax.set_title(_literal(title))
        ax.set_xlabel(_literal(f"{method} 1".strip()))
        ax.set_ylabel(_literal(f"{method} 2".strip()))
        if limits is not None:
            ax.set_xlim(*limits[0])
            ax.set_ylim(*limits[1])
    return fig, axes


def robust_limits(xy, keep: float = 0.99, pad: float = 0.25):
    """Axis limits spanning the central ``keep`` fraction of points, padded; None if that shows everything.

    A few extreme objects would otherwise squash the bulk of a map into a corner.
    """
    xy = np.asarray(xy, dtype=float)
    ok = np.all(np.isfinite(xy), axis=1)
    if ok.sum() < 20:
        return None
    q = (1 - keep) / 2 * 100
    lo, hi = np.percentile(xy[ok], [q, 100 - q], axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    lo, hi = lo - pad * span, hi + pad * span
    if np.all(xy[ok] >= lo) and np.all(xy[ok] <= hi):
        return None
    return (lo[0], hi[0]), (lo[1], hi[1])


def planted_recall(kinds: Sequence[str], detectors: Sequence[str], recall, k: int):
    """Grouped bars: recall in the top-k per anomaly kind (rows) and detector (columns)."""
    recall = np.asarray(recall, dtype=float)
    fig, ax = figure(1, 1, figsize=(min(9.0, 1.5 * len(kinds) + 2.5), 3.4))
    width = 0.8 / max(1, len(detectors))
    x = np.arange(len(kinds))
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    for j, det in enumerate(detectors):
        ax.bar(x + (j - (len(detectors) - 1) / 2) * width, recall[:, j], width, label=_literal(det),
               color=cmap(j % 10))
    ax.set_xticks(x, labels=[_literal(t) for t in kinds])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"recall in the top {k}")
    ax.set_xlabel("planted anomaly kind")
    ax.legend(fontsize=7, ncols=min(3, max(1, len(detectors))))
    return fig, ax
