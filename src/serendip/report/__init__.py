"""The self-contained HTML discovery report.

:func:`build_report` turns a pipeline run folder into ``report.html`` (figures
embedded as base64 PNG, inline CSS, no network) and saves every figure as a PNG
under ``figures/``. It reads the run's result tables only; it never refits a model.
"""
from __future__ import annotations

import importlib

_LAZY = {"build_report": ".build", "SECTION_IDS": ".build", "Report": ".html", "Section": ".html"}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'serendip.report' has no attribute {name!r}")
