"""Exploring a survey: embeddings, clustering, and honest comparisons of weirdness detectors.

- :func:`embed` — PCA, t-SNE or UMAP maps, also from a precomputed neighbour graph such as the
  random-forest similarity (never an N×N matrix).
- :func:`cluster` — HDBSCAN, k-means, Gaussian mixtures or agglomerative clustering, returning a
  :class:`ClusterResult` with sizes, typical members and median spectra.
- :func:`compare_detectors` — ROC AUC, average precision, precision@k and recall@k per detector
  and label kind (weirdness: higher = weirder).
- :func:`score_correlations` — does a score mostly track S/N or redshift?
- :func:`load_input`, :func:`run_embed`, :func:`run_cluster`, :func:`run_detect` — the functions behind
  ``serendip embed | cluster | detect``.
"""
from __future__ import annotations

import importlib

# Eager imports: the functions ``embed`` and ``cluster`` share their names with their modules, so they
# must be bound here (a lazy import would leave the package attribute pointing at the module).
from .cluster import CLUSTER_METHODS, ClusterResult, cluster, median_spectra
from .compare import DEFAULT_DETECTORS, compare_detectors, detector_features, label_sets
from .diagnostics import score_correlations
from .embed import EMBED_METHODS, embed, knn_from_precomputed, knn_graph

_LAZY = {
    "load_input": ".workflows",
    "ExploreInput": ".workflows",
    "run_embed": ".workflows",
    "run_cluster": ".workflows",
    "run_detect": ".workflows",
}

__all__ = ["embed", "knn_from_precomputed", "knn_graph", "EMBED_METHODS", "cluster", "ClusterResult",
           "median_spectra", "CLUSTER_METHODS", "compare_detectors", "detector_features", "label_sets",
           "DEFAULT_DETECTORS", "score_correlations", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    if name == "plot_comparison":
        from ..plotting.compare import plot_comparison

        return plot_comparison
    raise AttributeError(f"module 'serendip.explore' has no attribute {name!r}")


def __dir__():
    return sorted([*__all__, "plot_comparison"])
