"""The Sequencer (Baron & Ménard 2021): find the main 1-D trend in a dataset and order objects along it.

``Sequencer(mode="improved"|"faithful", method="auto"|"exact"|"knn")`` is the
estimator; :func:`sequence` runs it on a file or array and returns a table;
:func:`plot_sequence` draws the classic figure.
"""
from __future__ import annotations

import importlib

__all__ = ["Sequencer", "prepare_input", "knn_candidate_pairs", "EXACT_MAX_N", "METRICS", "default_scales",
           "sequence", "load_sequencer_input", "plot_sequence", "tree_from_edges", "mst_dense"]

_WHERE = {
    "Sequencer": "sequencer", "prepare_input": "sequencer", "knn_candidate_pairs": "sequencer",
    "EXACT_MAX_N": "sequencer", "METRICS": "distances", "default_scales": "distances",
    "sequence": "api", "load_sequencer_input": "api", "plot_sequence": "plot",
    "tree_from_edges": "trees", "mst_dense": "trees",
}


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
