"""One look for every serendip figure.

Use :func:`figure` to make figures (it applies the style and never calls
``plt.show``); save with :func:`save_png`, which writes atomically.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import matplotlib as mpl

#: Colours: normal objects grey, weird highlights in a warm colour, sequences in viridis.
COLORS = {"normal": "#7f7f7f", "weird": "#d1495b", "accent": "#00798c", "masked": "#edae49",
          "model": "#30638e", "line": "#999999"}
CMAP_SEQUENCE = "viridis"
CMAP_WEIRDNESS = "magma"

RC = {
    "figure.dpi": 100,
    "savefig.dpi": 110,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "legend.frameon": False,
    "image.cmap": CMAP_SEQUENCE,
    "figure.constrained_layout.use": True,
}


@contextlib.contextmanager
def style():
    """Context manager applying serendip's rc parameters."""
    with mpl.rc_context(RC):
        yield


def figure(nrows: int = 1, ncols: int = 1, *, figsize=None, **kwargs):
    """Return ``fig, ax`` (or an axes array) in serendip's style, without pyplot's global state."""
    from matplotlib.figure import Figure

    with mpl.rc_context(RC):
        fig = Figure(figsize=figsize or (4.2 * ncols, 3.2 * nrows))
        axes = fig.subplots(nrows, ncols, **kwargs)
    return fig, axes


def figure_path(path: str | Path) -> tuple[Path, str]:
    """Return ``(path, format)`` for a figure the user names: the format follows the extension.

    A name without an extension gets ``.png``. An extension matplotlib cannot write (``.txt``)
    is a ``ValueError`` listing the ones it can, raised before any work is done when the
    caller checks early.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    if not any(ch.isalpha() for ch in path.suffix):  # none, or a dot inside a name such as seq_z0.5
        path = path.with_name(path.name + ".png")
    fmt = path.suffix[1:].lower()
    supported = FigureCanvasAgg(Figure()).get_supported_filetypes()
    if fmt not in supported:
        raise ValueError(f"cannot write a figure as {path.name}: the extension {path.suffix!r} is not a figure "
                         f"format; use one of {', '.join('.' + k for k in sorted(supported))}")
    return path, fmt


def save_figure(fig, path: str | Path, dpi: int | None = None) -> Path:
    """Save ``fig`` atomically in the format its extension names (PNG without one); return the path written."""
    path, fmt = figure_path(path)
    return _save(fig, path, fmt, dpi)


def save_png(fig, path: str | Path, dpi: int | None = None) -> Path:
    """Save ``fig`` as a PNG atomically and return the path."""
    return _save(fig, Path(path), "png", dpi)


def _save(fig, path: Path, fmt: str, dpi: int | None) -> Path:
    from .._io import atomic_path

    with mpl.rc_context(RC), atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi or RC["savefig.dpi"])
    return path


def literal(text) -> str:
    """``text`` as a string matplotlib draws verbatim, never as mathtext.

    Matplotlib reads a string with an even number of unescaped ``$`` as
    mathtext, so an object id such as ``obj$\\foo$`` would be typeset (or make
    the figure fail to draw). Escaping every ``$`` as ``\\$`` keeps the text
    literal; matplotlib shows ``\\$`` as ``$`` in plain text.

    Parameters
    ----------
    text : object
        Any value; it is converted with ``str``.

    Returns
    -------
    str
        The escaped text, for titles, axis labels, tick labels and legend
        entries that show user strings (object ids, column or detector names).
    """
    return str(text).replace("$", r"\$")
