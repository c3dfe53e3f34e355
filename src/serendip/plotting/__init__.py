"""Figures in one style. Every function returns ``(fig, ax)`` and never calls ``show``."""
from .style import COLORS, figure, figure_path, save_figure, save_png, style

__all__ = ["COLORS", "figure", "figure_path", "save_figure", "save_png", "style", "plot_embedding", "plot_spectrum_gallery",
           "plot_cluster_medians", "plot_comparison"]

_LAZY = {
    "plot_embedding": ".embedding",
    "plot_spectrum_gallery": ".gallery",
    "plot_cluster_medians": ".clusters",
    "plot_comparison": ".compare",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'serendip.plotting' has no attribute {name!r}")
