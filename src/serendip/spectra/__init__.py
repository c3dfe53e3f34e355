"""Spectra in memory, on disk, and the steps that clean them.

Readers, preprocessing and the store are registered here as they are
imported; see :mod:`serendip.spectra.io`, :mod:`serendip.spectra.preprocess`
and :mod:`serendip.spectra.store`.
"""
from .container import STANDARD_META_COLUMNS, Spectra
from .lines import LINES, PLOT_LINES, SKY_LINES

__all__ = ["Spectra", "STANDARD_META_COLUMNS", "LINES", "PLOT_LINES", "SKY_LINES"]
