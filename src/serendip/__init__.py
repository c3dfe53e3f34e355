"""serendip: data-driven discovery in astronomical surveys.

Weirdness scores (higher = weirder), the Sequencer, supervised learning and
exploration for millions of spectra. Subpackages are imported lazily so that
``import serendip`` stays fast.
"""
from __future__ import annotations

import importlib

from ._version import __version__

_SUBPACKAGES = ("spectra", "datasets", "outliers", "sequencer", "explore", "learn", "plotting",
                "report", "web", "pipeline", "cli")

__all__ = ["__version__", *_SUBPACKAGES]


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'serendip' has no attribute {name!r}")
