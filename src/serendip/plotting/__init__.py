"""Figures in one style. Every function returns ``(fig, ax)`` and never calls ``show``."""
from .style import COLORS, figure, save_png, style

__all__ = ["COLORS", "figure", "save_png", "style"]
