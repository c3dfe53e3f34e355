"""The one contract every weirdness detector follows.

**Weirdness: higher = weirder**, for every detector in serendip. Detectors are
scikit-learn estimators: ``__init__`` only stores parameters, ``fit(X)``
returns ``self`` and sets ``weirdness_`` (one score per training object),
``score_samples(X_new)`` scores new objects against the fitted population.
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator


__all__ = ["WeirdnessDetector", "weirdness_rank"]


def weirdness_rank(weirdness) -> np.ndarray:
    """Rank of each object by weirdness (higher = weirder): 1 = weirdest; ties keep their input order."""
    w = np.asarray(weirdness).ravel()
    rank = np.empty(w.size, dtype=np.int64)
    rank[np.argsort(-w, kind="stable")] = np.arange(1, w.size + 1)
    return rank


class WeirdnessDetector(BaseEstimator):
    """Base class for weirdness detectors (higher = weirder).

    Subclasses implement ``fit`` (setting ``weirdness_`` and ``n_features_in_``)
    and ``score_samples``. This base adds ``fit_score``, ``rank_`` helpers and
    a results table with provenance.
    """

    #: short name used in tables and on the command line
    detector_name: str = "base"

    def fit_score(self, X, y=None) -> np.ndarray:
        """Fit on ``X`` and return ``weirdness_`` (higher = weirder)."""
        return self.fit(X).weirdness_

    def _check_n_features(self, X: np.ndarray) -> None:
        n = getattr(self, "n_features_in_", None)
        if n is not None and X.shape[1] != n:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} was fitted with {n} features; "
                "score spectra on the same grid/features used for fit"
            )

    @property
    def rank_(self) -> np.ndarray:
        """Rank of each training object by weirdness: 1 = weirdest."""
        return weirdness_rank(self.weirdness_)

    def to_table(self, ids=None, extra: dict | None = None):
        """Training scores as an astropy Table (``id``, ``weirdness``, ``rank``) with parameters in ``meta``."""
        from astropy.table import Table

        from .._version import __version__

        w = np.asarray(self.weirdness_)
        ids = np.arange(w.size).astype(str) if ids is None else np.asarray(ids)
        tab = Table({"id": ids, "weirdness": w, "rank": self.rank_})
        for k, v in (extra or {}).items():
            tab[k] = v
        tab.meta["detector"] = self.detector_name
        tab.meta["score_convention"] = "higher = weirder"
        tab.meta["params"] = {k: (v if isinstance(v, (int, float, str, bool, type(None), list)) else repr(v))
                              for k, v in self.get_params(deep=False).items()}
        tab.meta["serendip_version"] = __version__
        return tab
