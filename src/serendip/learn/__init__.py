"""Supervised learning the way the talk teaches it: pick, train, validate and explain.

- :func:`recommend` — rank SVM / random forest / neural network / boosted trees / 1-D CNN for the
  data at hand, with reasons drawn from the talk's decision table (``recommend.py``).
- :func:`train` — pipeline, held-out test split, cross-validated search, learning-curve verdict,
  permutation importances (``train.py``); returns a :class:`TrainResult`.
- Photo-z and classification metrics (``metrics.py``): :func:`sigma_nmad`, :func:`catastrophic_fraction`…
- :func:`save_model` / :func:`load_model` — versioned ``.skops`` (or ``.joblib``) files with metadata;
  loading asks you to confirm trust (``persist.py``).
- :class:`CNN1DClassifier`, :class:`CNN1DRegressor` — a small 1-D CNN for raw spectra (PyTorch,
  ``pip install 'serendip[deep]'``; ``cnn.py``).
- :class:`MLPEnsembleRegressor` — an average of fully connected networks (PyTorch), ``algorithm="ann"``'s
  regression model when PyTorch is installed (``mlp.py``).
- :class:`LocalLinearEstimate` — a local linear regression on the nearest training objects,
  appended as a feature for boosted-tree regression on few features (``local_linear.py``).
- Table helpers behind ``serendip learn`` (``tables.py``): :func:`train_table`, :func:`predict_table`,
  :func:`recommend_table`.
"""
from __future__ import annotations

import importlib

# ``recommend`` and ``train`` are both submodules and functions: import them eagerly so the
# package attributes are the functions (the submodules import only numpy at load time).
from .recommend import Recommendation, infer_task, recommend
from .train import TrainResult, build_pipeline, train

_LAZY = {
    "sigma_nmad": ".metrics", "catastrophic_fraction": ".metrics", "delta_z": ".metrics",
    "redshift_metrics": ".metrics", "regression_metrics": ".metrics", "classification_metrics": ".metrics",
    "recall_at_precision": ".metrics",
    "learning_curve_verdict": ".diagnostics", "permutation_importances": ".diagnostics",
    "save_model": ".persist", "load_model": ".persist", "SavedModel": ".persist",
    "UntrustedModelError": ".persist", "ModelVersionWarning": ".persist",
    "CNN1DClassifier": ".cnn", "CNN1DRegressor": ".cnn", "DeviceUnavailableError": ".cnn",
    "MLPEnsembleRegressor": ".mlp",
    "read_any_table": ".tables", "select_features": ".tables", "color_features": ".tables",
    "train_table": ".tables", "predict_table": ".tables", "recommend_table": ".tables",
    "write_report": ".report", "LocalLinearEstimate": ".local_linear",
}

__all__ = ["Recommendation", "infer_task", "recommend", "TrainResult", "build_pipeline", "train",
           *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'serendip.learn' has no attribute {name!r}")
