"""Forest similarity between objects, computed from sparse leaf-indicator products in row blocks.

For one independent forest (one repeat) with trees t, let L be the sparse
N × (number of leaves) indicator matrix with L[i, leaf] = 1 when object i lands
in that leaf *and* the leaf is good (G[i, t] = 1). Then

    c_ij = Σ_t [A_it = A_jt]·G_it·G_jt = (L Lᵀ)_ij,

so a block of rows of c is one sparse product ``L[rows] @ Lᵀ`` whose memory
is proportional to the number of non-zero similarities in the block, never
N×N. The normalisations:

``"column"`` (Baron & Poznanski 2017)
    S_ij = c_ij / g_j with g_j = Σ_t G_jt (not symmetric; S_ii = 1).
``"symmetric"`` (Reis et al. 2018)
    S_ij = c_ij / b_ij with b_ij = Σ_t G_it·G_jt, the number of trees in which
    both objects are in good leaves (symmetric; S_ii = 1). b_ij is needed only
    where c_ij > 0 and is a popcount of the AND of two packed bit rows.

Convention for objects that are never in a good leaf (g_j = 0, so c_ij = 0 for
every i): S_ij = 0 for all i, including S_jj. Likewise S_ij = 0 when b_ij = 0.
Such an object is similar to nothing, so its weirdness is the maximum, 1.

With several repeats the similarity is the mean of the per-repeat similarities,
which keeps the identity ``weirdness_i = mean_j (1 − S_ij)`` exact.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["ForestSimilarity", "topk_rows"]

NORMALIZATIONS = ("column", "symmetric")

_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount_rows(bits: np.ndarray) -> np.ndarray:
    """Number of set bits per row of a packed uint8 array (numpy >= 2 has a native bitwise_count)."""
    counts = np.bitwise_count(bits) if hasattr(np, "bitwise_count") else _POPCOUNT8[bits]
    return counts.sum(axis=1, dtype=np.int64)


class ForestSimilarity:
    """Blocked similarity products for a fitted forest's training population.

    Parameters
    ----------
    leaves : ndarray of int, shape (N, T)
        Global leaf id of each training object in each tree.
    good : ndarray of bool, shape (n_leaves,)
        Good-leaf flag of each global leaf.
    tree_repeat : ndarray of int, shape (T,)
        Repeat of each tree; trees of one repeat must own a contiguous range of leaf ids.
    leaf_offsets : ndarray of int, shape (T + 1,)
        Global leaf ids of tree t are ``leaf_offsets[t]:leaf_offsets[t+1]``.
    normalization : {"column", "symmetric"}
    """

    def __init__(self, leaves, good, tree_repeat, leaf_offsets, normalization="column"):
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}; got {normalization!r}")
        self.normalization = normalization
        self.good = good
        self.tree_repeat = np.asarray(tree_repeat)
        self.n_repeats = int(self.tree_repeat.max()) + 1
        self.n = leaves.shape[0]
        self._trees = [np.flatnonzero(self.tree_repeat == r) for r in range(self.n_repeats)]
        self._leaf_range = []
        self._right = []     # per repeat: (n_leaves_r × N) CSR, scaled for the column normalisation
        self._bits = []      # per repeat: packed good-leaf bits (symmetric only)
        self._g = []
        for r, trees in enumerate(self._trees):
            lo, hi = int(leaf_offsets[trees[0]]), int(leaf_offsets[trees[-1] + 1])
            self._leaf_range.append((lo, hi))
            L, G = self._indicator(leaves[:, trees], lo, hi)
            g = G.sum(axis=1)
            self._g.append(g)
            R = L.T.tocsr()
            if normalization == "column":
                inv = np.where(g > 0, 1.0 / np.maximum(g, 1), 0.0)
                R.data *= inv[R.indices]
            else:
                self._bits.append(np.packbits(G, axis=1))
            self._right.append(R)

    def _indicator(self, A, lo, hi):
        G = self.good[A]
        n = A.shape[0]
        rows = np.repeat(np.arange(n), A.shape[1]).reshape(A.shape)[G]
        cols = A[G].astype(np.int64) - lo
        L = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n, hi - lo))
        return L, G

    def block(self, leaves_rows: np.ndarray) -> sp.csr_matrix:
        """Similarity of query objects (given by their leaf rows, shape (b, T)) to all N training objects.

        Returns a sparse (b, N) CSR matrix of S (mean over repeats); absent entries are 0.
        """
        out = None
        for r, trees in enumerate(self._trees):
            lo, hi = self._leaf_range[r]
            Lq, Gq = self._indicator(leaves_rows[:, trees], lo, hi)
            C = (Lq @ self._right[r]).tocsr()
            if self.normalization == "symmetric" and C.nnz:
                C.sum_duplicates()
                rows = np.repeat(np.arange(C.shape[0]), np.diff(C.indptr))
                qbits = np.packbits(Gq, axis=1)
                both = _popcount_rows(qbits[rows] & self._bits[r][C.indices])
                C.data = np.where(both > 0, C.data / np.maximum(both, 1), 0.0)
            out = C if out is None else out + C
        if self.n_repeats > 1:
            out = out / self.n_repeats
        out = sp.csr_matrix(out)
        out.sort_indices()
        return out


def topk_rows(S: sp.csr_matrix, k: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest entries of each row of a sparse matrix, ties broken by lower column index.

    Parameters
    ----------
    S : csr_matrix of shape (b, N), non-negative
    k : int
    exclude : ndarray of int, shape (b,), optional
        One column per row to leave out (the object itself).

    Returns
    -------
    indices : ndarray of int64, shape (b, k)
        Column indices, best first; ``-1`` where the row has fewer than ``k``
        non-zero entries (no further similar object).
    values : ndarray of float64, shape (b, k)
        The similarities (0 where the index is -1).
    """
    S = sp.csr_matrix(S)
    S.sum_duplicates()
    b = S.shape[0]
    rows = np.repeat(np.arange(b), np.diff(S.indptr))
    keep = S.data > 0
    if exclude is not None:
        keep &= S.indices != np.asarray(exclude)[rows]
    rows, cols, vals = rows[keep], S.indices[keep], S.data[keep]
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    counts = np.bincount(rows, minlength=b)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(rows.size) - starts[rows]
    sel = rank < k
    idx = np.full((b, k), -1, dtype=np.int64)
    val = np.zeros((b, k), dtype=np.float64)
    idx[rows[sel], rank[sel]] = cols[sel]
    val[rows[sel], rank[sel]] = vals[sel]
    return idx, val
