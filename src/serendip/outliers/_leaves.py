"""Leaf bookkeeping for the unsupervised random forest: compact leaf ids and the O(N·T) sums.

Every leaf of every tree gets one *global* id (int32 when they fit, else
int64), so the N×T matrix of leaves reached by the objects needs 4 bytes per
entry and one flat array can hold a per-leaf quantity for all trees at once
(each global leaf belongs to exactly one tree, hence to one repeat).

The helpers here are private; see :mod:`serendip.outliers.urf` for the
algorithm and the derivation of the exact formula.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["MergedForest", "LeafIndex", "apply_block", "effective_n_jobs"]


def effective_n_jobs(n_jobs) -> int:
    """Number of worker threads for ``n_jobs`` (scikit-learn meaning: None=1, -1=all cores)."""
    from joblib import effective_n_jobs as _ej

    return max(1, int(_ej(n_jobs)))


class MergedForest:
    """Trees from several forests (sub-forests and/or repeats) used as one forest.

    Each tree remembers the feature columns it was trained on
    (``features_[t]``, ``None`` = all columns) and must be applied to exactly
    those columns; :meth:`apply` does that.

    Attributes
    ----------
    estimators_ : list of DecisionTreeClassifier
    features_ : list of (ndarray of int or None)
    repeat_ : ndarray of int, shape (n_trees,)
        Which independent run (repeat) each tree belongs to.
    subforest_ : ndarray of int, shape (n_trees,)
        Which sub-forest each tree belongs to (numbered across repeats).
    n_features_in_ : int
    """

    def __init__(self, estimators, features, repeat, subforest, n_features_in):
        self.estimators_ = list(estimators)
        self.features_ = list(features)
        self.repeat_ = np.asarray(repeat, dtype=np.int64)
        self.subforest_ = np.asarray(subforest, dtype=np.int64)
        self.n_features_in_ = int(n_features_in)

    @property
    def n_estimators(self) -> int:
        return len(self.estimators_)

    def __len__(self) -> int:
        return len(self.estimators_)

    def __repr__(self) -> str:
        n_sub = np.unique(self.subforest_).size
        n_rep = np.unique(self.repeat_).size
        return f"<MergedForest: {len(self)} trees from {n_sub} sub-forest(s), {n_rep} repeat(s)>"

    def apply(self, X, n_jobs=None) -> np.ndarray:
        """Node index reached by each row in each tree, shape (n_rows, n_trees) (scikit-learn node ids)."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        out = np.empty((X.shape[0], len(self)), dtype=np.int64)

        def one(t):
            cols = self.features_[t]
            Xt = X if cols is None else np.ascontiguousarray(X[:, cols])
            out[:, t] = self.estimators_[t].tree_.apply(Xt)

        workers = effective_n_jobs(n_jobs)
        if workers == 1:
            for t in range(len(self)):
                one(t)
        else:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(one, range(len(self))))
        return out


class LeafIndex:
    """Map (tree, node) to a compact global leaf id, with each leaf's "good" flag.

    Parameters
    ----------
    estimators : list of fitted DecisionTreeClassifier
        Trained with label 1 = real, 0 = synthetic.
    good_leaf : {"pure", "majority"}
        ``"pure"``: the tree's probability of "real" in the leaf is exactly 1
        (no synthetic training weight in it). ``"majority"``: that probability
        is above 1/2.
    """

    def __init__(self, estimators, good_leaf: str = "pure"):
        node_maps, goods, offsets = [], [], [0]
        for est in estimators:
            tree = est.tree_
            classes = list(est.classes_)
            real = classes.index(1)
            is_leaf = tree.children_left == -1
            frac = tree.value[:, 0, :]
            frac = frac / np.maximum(frac.sum(axis=1, keepdims=True), 1e-300)
            if good_leaf == "pure":
                # exactly no synthetic weight in the leaf
                good = np.ones(tree.node_count, bool)
                for k, c in enumerate(classes):
                    if k != real:
                        good &= tree.value[:, 0, k] == 0
            elif good_leaf == "majority":
                good = frac[:, real] > 0.5
            else:  # pragma: no cover - checked by the estimator
                raise ValueError(f"unknown good_leaf rule {good_leaf!r}")
            n_leaves = int(is_leaf.sum())
            node_map = np.full(tree.node_count, -1, dtype=np.int64)
            node_map[is_leaf] = np.arange(n_leaves) + offsets[-1]
            node_maps.append(node_map)
            goods.append(good[is_leaf])
            offsets.append(offsets[-1] + n_leaves)
        self.n_leaves = offsets[-1]
        self.dtype = np.int32 if self.n_leaves < np.iinfo(np.int32).max else np.int64
        self.node_maps = [m.astype(self.dtype) for m in node_maps]
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.good = np.concatenate(goods) if goods else np.zeros(0, bool)
        self.tree_of_leaf = np.repeat(np.arange(len(node_maps)), np.diff(self.offsets))

    def to_global(self, nodes: np.ndarray) -> np.ndarray:
        """Convert an (n, T) array of scikit-learn node ids into global leaf ids."""
        out = np.empty(nodes.shape, dtype=self.dtype)
        for t, m in enumerate(self.node_maps):
            out[:, t] = m[nodes[:, t]]
        return out


def apply_block(forest: MergedForest, index: LeafIndex, X: np.ndarray, n_jobs=None) -> np.ndarray:
    """Global leaf ids (n_rows, n_trees) of a block of rows, applied tree by tree in threads.

    scikit-learn's low-level ``Tree.apply`` releases the GIL, so threads give
    real parallelism without copying the block to worker processes.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    out = np.empty((X.shape[0], len(forest)), dtype=index.dtype)

    def one(t):
        cols = forest.features_[t]
        Xt = X if cols is None else np.ascontiguousarray(X[:, cols])
        out[:, t] = index.node_maps[t][forest.estimators_[t].tree_.apply(Xt)]

    workers = effective_n_jobs(n_jobs)
    if workers == 1 or len(forest) == 1:
        for t in range(len(forest)):
            one(t)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, range(len(forest))))
    return out


# ---------------------------------------------------------------------------------------------
# The exact O(N·T) sums (see the derivation in serendip.outliers.urf)
# ---------------------------------------------------------------------------------------------
def good_counts(leaves: np.ndarray, good: np.ndarray, tree_repeat: np.ndarray, n_repeats: int,
                block_size: int = 8192) -> np.ndarray:
    """g[j, r] = number of trees of repeat r in which object j lands in a good leaf."""
    n = leaves.shape[0]
    g = np.zeros((n, n_repeats), dtype=np.int64)
    for s in range(0, n, block_size):
        G = good[leaves[s:s + block_size]]
        for r in range(n_repeats):
            g[s:s + block_size, r] = G[:, tree_repeat == r].sum(axis=1)
    return g


def leaf_populations(leaves: np.ndarray, good: np.ndarray, tree_repeat: np.ndarray, g: np.ndarray,
                     n_leaves: int, block_size: int = 8192) -> np.ndarray:
    """P[l] = Σ_{j in leaf l} G_j,t(l) / g_j,r(l): the population of good leaf l weighted by 1/g.

    Objects with g = 0 weigh 0 (they are never in a good leaf anyway).
    """
    n = leaves.shape[0]
    P = np.zeros(n_leaves, dtype=np.float64)
    with np.errstate(divide="ignore"):
        inv = np.where(g > 0, 1.0 / np.maximum(g, 1), 0.0)  # (n, R)
    for s in range(0, n, block_size):
        A = leaves[s:s + block_size]
        w = good[A] * inv[s:s + block_size][:, tree_repeat]
        P += np.bincount(A.ravel(), weights=w.ravel(), minlength=n_leaves)
    return P


def similarity_sums(leaves: np.ndarray, good: np.ndarray, P: np.ndarray, tree_repeat: np.ndarray,
                    n_repeats: int) -> np.ndarray:
    """Σ_j S_ij per repeat for a block of rows: Σ_t G_it·P[A_it] over the trees of each repeat."""
    contrib = np.where(good[leaves], P[leaves], 0.0)
    out = np.empty((leaves.shape[0], n_repeats))
    for r in range(n_repeats):
        out[:, r] = contrib[:, tree_repeat == r].sum(axis=1)
    return out
