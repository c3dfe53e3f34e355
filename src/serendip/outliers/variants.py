"""Named URF parameter sets (``serendip weird --variant NAME``); kept free of heavy imports for the CLI."""
from __future__ import annotations

from typing import Any

#: Named parameter sets for the command line (``serendip weird --variant NAME``).
VARIANTS: dict[str, dict[str, Any]] = {
    "faithful": {},
    "symmetric": {"normalization": "symmetric"},
    "knn": {"score": "knn"},
    "uniform": {"synthetic": "uniform"},
    "majority": {"good_leaf": "majority", "max_depth": 12},
    "snr-strata": {"snr_strata": 3},
}
