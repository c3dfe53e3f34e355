"""Synthetic "product of marginals" data for the unsupervised random forest.

The forest of Baron & Poznanski (2017) learns to tell the real objects from a
synthetic sample that has the same one-dimensional distributions but none of
the correlations between features. Real objects that the forest can still
group with other real objects are normal; those it cannot are weird.

Two recipes (Shi & Horvath 2006 describe both):

``"marginal"`` (the paper's and the notebook's)
    for each feature independently, N values drawn *with replacement* from that
    feature's real values.
``"uniform"``
    for each feature independently, N values drawn uniformly between that
    feature's minimum and maximum.
"""
from __future__ import annotations

import numpy as np

__all__ = ["SYNTHETIC_KINDS", "make_synthetic"]

SYNTHETIC_KINDS = ("marginal", "uniform")


def make_synthetic(X: np.ndarray, kind: str = "marginal", n: int | None = None,
                   random_state=None) -> np.ndarray:
    """Return a synthetic sample with the marginals of ``X`` and no covariance.

    Parameters
    ----------
    X : ndarray of shape (n_objects, n_features)
        The real data (any float dtype; the output has the same dtype).
    kind : {"marginal", "uniform"}
        ``"marginal"``: each column resampled with replacement from its own
        values (independently per column). ``"uniform"``: each column uniform
        on ``[min, max]`` of that column.
    n : int, optional
        Number of synthetic rows (default: as many as ``X``).
    random_state : int, Generator or None

    Returns
    -------
    ndarray of shape (n, n_features)
    """
    if kind not in SYNTHETIC_KINDS:
        raise ValueError(f"synthetic must be one of {SYNTHETIC_KINDS}; got {kind!r}")
    X = np.asarray(X)
    rng = np.random.default_rng(random_state)
    n_real, n_feat = X.shape
    n = n_real if n is None else int(n)
    out = np.empty((n, n_feat), dtype=X.dtype if X.dtype.kind == "f" else np.float64)
    if kind == "marginal":
        # one independent row index per (row, column): the columns lose their joint structure
        step = max(1, (1 << 22) // max(n, 1))  # bound the index temporaries to ~32 MB
        for c0 in range(0, n_feat, step):
            c1 = min(n_feat, c0 + step)
            idx = rng.integers(0, n_real, size=(n, c1 - c0))
            out[:, c0:c1] = np.take_along_axis(X[:, c0:c1], idx, axis=0)
    else:
        lo = X.min(axis=0).astype(np.float64)
        hi = X.max(axis=0).astype(np.float64)
        out[:] = rng.uniform(size=(n, n_feat)) * (hi - lo) + lo
    return out
