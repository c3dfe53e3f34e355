"""The whole discovery chain in one call: data → weirdness → sequence → map → report.

- :func:`run_demo` — the built-in synthetic survey, end to end (``serendip demo``).
- :func:`run_pipeline` — the same chain on your own spectra, driven by a TOML
  config (``serendip run CONFIG.toml``); :func:`write_example_config` writes a
  documented example (``serendip init-config``).
- :class:`RunFolder`, :func:`run_stages` — the resumable stage runner: each stage
  writes its outputs atomically and then a completion record; a re-run skips
  finished stages.

Weirdness everywhere: higher = weirder.
"""
from __future__ import annotations

import importlib

_LAZY = {
    "run_pipeline": ".stages",
    "run_demo": ".stages",
    "build_stages": ".stages",
    "demo_config": ".stages",
    "load_config": ".config",
    "merge_config": ".config",
    "write_example_config": ".config",
    "example_config_text": ".config",
    "DEFAULTS": ".config",
    "RunFolder": ".runner",
    "RunResult": ".runner",
    "Stage": ".runner",
    "StageContext": ".runner",
    "StageResult": ".runner",
    "StageSkipped": ".runner",
    "run_stages": ".runner",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'serendip.pipeline' has no attribute {name!r}")
