"""The classic Sequencer figure: the data as an image in input order beside sequence order, plus eta per metric and scale."""
from __future__ import annotations

import numpy as np

__all__ = ["plot_sequence"]


def _display_rows(X: np.ndarray) -> np.ndarray:
    """Rows scaled to their own 1st-99th percentile range, so every object is visible."""
    lo = np.percentile(X, 1, axis=1, keepdims=True)
    hi = np.percentile(X, 99, axis=1, keepdims=True)
    return np.clip((X - lo) / np.where(hi > lo, hi - lo, 1.0), 0, 1)


def plot_sequence(X, order, results=None, grid=None, *, elongation=None, title=None, max_rows=2000, figsize=None,
                  xlabel=None):
    """Draw the data in input order and in sequence order, and eta per (metric, scale).

    Parameters
    ----------
    X : array (N x M) or Spectra
        The data that was sequenced.
    order : array of int
        The sequence (``Sequencer.order_``).
    results : astropy Table, optional
        ``Sequencer.results_`` (columns ``metric``, ``scale``, ``elongation``); adds the third panel.
    grid : array, optional
        Pixel positions for the x axis (default: the Spectra wavelength or pixel number).
    elongation : float, optional
        Final elongation, shown in the title.
    max_rows : int
        Larger data sets are thinned evenly along the rows for the image.
    xlabel : str, optional
        The x-axis label. Default: "wavelength [Å]" for a Spectra (or a grid given as an astropy
        Quantity, converted to Å), "pixel" without a grid, and "grid" for a plain array, whose
        units serendip cannot know.

    Returns
    -------
    fig, axes
        A matplotlib Figure (no pyplot state) and its axes.
    """
    from ..plotting.style import figure

    label = xlabel
    if grid is None and hasattr(X, "wavelength"):
        grid = X.wavelength.to_value("Angstrom")
        label = label or "wavelength [Å]"
    elif grid is not None and hasattr(grid, "unit"):
        import astropy.units as u

        grid = grid.to_value(u.AA, equivalencies=u.spectral())
        label = label or "wavelength [Å]"
    label = label or ("pixel" if grid is None else "grid")
    if hasattr(X, "flux"):
        X = X.flux
    X = np.asarray(X, dtype=float)
    order = np.asarray(order)
    n, m = X.shape
    grid = np.arange(m) if grid is None else np.asarray(grid, dtype=float)
    step = max(1, int(np.ceil(n / max_rows)))
    ncols = 3 if results is not None and len(results) else 2
    fig, axes = figure(1, ncols, figsize=figsize or (4.0 * ncols + 1, 4.2))
    extent = [grid[0], grid[-1], n, 0]
    axes[0].imshow(_display_rows(X[::step]), aspect="auto", extent=extent, cmap="inferno", interpolation="nearest")
    axes[0].set_title("input order")
    axes[1].imshow(_display_rows(X[order][::step]), aspect="auto", extent=extent, cmap="inferno",
                   interpolation="nearest")
    axes[1].set_title("sequence order")
    for ax in axes[:2]:
        ax.set_xlabel(label)
    axes[0].set_ylabel("object")
    if ncols == 3:
        ax = axes[2]
        metrics = list(dict.fromkeys(str(mt) for mt in results["metric"]))
        for mt in metrics:
            sel = np.asarray(results["metric"]) == mt
            sc = np.asarray(results["scale"])[sel]
            ax.plot(sc, np.asarray(results["elongation"])[sel], "o-", label=mt)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("scale (chunks)")
        ax.set_ylabel("elongation η")
        ax.legend(fontsize="small")
        ax.set_title("η per metric and scale")
    if title or elongation is not None:
        fig.suptitle((title or "Sequencer") + (f"  (final η = {elongation:.2f})" if elongation is not None else ""))
    return fig, axes
