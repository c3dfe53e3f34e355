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

Memory of a block
-----------------
A row of S can have up to N non-zeros (an object in large good leaves is
similar to a large part of the population), far more than the number of trees.
:meth:`ForestSimilarity.row_nnz_bound` bounds row i's non-zeros in O(T) by the
summed population of its good leaves (capped at N), and :func:`row_blocks`
groups consecutive rows so that each block's bound times
:data:`BYTES_PER_SIMILARITY` (one stored float64 + index, the repeat sums and
the top-k temporaries) stays within :data:`SIMILARITY_BLOCK_BYTES`. A block
always holds at least one row, so a single row can need up to about
``BYTES_PER_SIMILARITY * N`` bytes.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["ForestSimilarity", "topk_rows", "row_blocks", "SIMILARITY_BLOCK_BYTES", "BYTES_PER_SIMILARITY"]

#: Memory budget (bytes) of one row block of sparse similarities, temporaries included.
SIMILARITY_BLOCK_BYTES = 256 * 2**20

#: Bytes budgeted per stored similarity of a block: 12 for the CSR entry (float64 value,
#: int32 column) times a factor for the per-repeat products and their sum, the symmetric
#: normalisation and the top-k selection (measured tracemalloc peak per stored entry with
#: dense rows: about 42 bytes for one forest, 61 for three repeats).
BYTES_PER_SIMILARITY = 64

# entries per chunk of the symmetric normalisation (its gathers hold T/8 bytes per entry)
_SYMMETRIC_CHUNK = 1 << 18

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
                qbits = np.packbits(Gq, axis=1)
                for a in range(0, C.nnz, _SYMMETRIC_CHUNK):  # chunks bound the packed-bit gathers
                    e = min(a + _SYMMETRIC_CHUNK, C.nnz)
                    rows = np.searchsorted(C.indptr, np.arange(a, e), side="right") - 1
                    both = _popcount_rows(qbits[rows] & self._bits[r][C.indices[a:e]])
                    C.data[a:e] = np.where(both > 0, C.data[a:e] / np.maximum(both, 1), 0.0)
            out = C if out is None else out + C
        if self.n_repeats > 1:
            out = out / self.n_repeats
        out = sp.csr_matrix(out)
        out.sort_indices()
        return out

    def row_nnz_bound(self, leaves_rows: np.ndarray) -> np.ndarray:
        """Upper bound on the number of non-zeros of each row of :meth:`block`, in O(b·T).

        Object i is similar to j only if both share a good leaf, so row i has at
        most Σ_t pop(A_it) non-zeros, pop being the number of training objects in
        a good leaf (0 for other leaves), and never more than N. The populations
        are the row lengths of the leaf × object matrices already held.

        Parameters
        ----------
        leaves_rows : ndarray of int, shape (b, T)
            Global leaf ids of the query objects, as for :meth:`block`.

        Returns
        -------
        ndarray of int64, shape (b,)
        """
        bound = np.zeros(leaves_rows.shape[0], dtype=np.int64)
        for r, trees in enumerate(self._trees):
            lo, _ = self._leaf_range[r]
            indptr = self._right[r].indptr
            local = leaves_rows[:, trees].astype(np.int64) - lo
            bound += (indptr[local + 1] - indptr[local]).sum(axis=1, dtype=np.int64)
        return np.minimum(bound, self.n)


def row_blocks(bounds: np.ndarray, max_rows: int, budget_bytes: int | None = None,
               bytes_per_entry: int | None = None) -> list[tuple[int, int]]:
    """Split consecutive rows into blocks whose similarities fit a memory budget.

    Parameters
    ----------
    bounds : ndarray of int, shape (n,)
        Upper bound on each row's non-zeros (:meth:`ForestSimilarity.row_nnz_bound`).
    max_rows : int
        Most rows in one block.
    budget_bytes : int, optional
        Bytes allowed per block: the rows' summed bound times ``bytes_per_entry``
        (default: the module's ``SIMILARITY_BLOCK_BYTES`` at call time).
    bytes_per_entry : int, optional
        Default: the module's ``BYTES_PER_SIMILARITY`` at call time.

    Returns
    -------
    list of (start, stop)
        Consecutive half-open row ranges covering ``0..n``; each holds at least
        one row (even if that row alone exceeds the budget) and at most ``max_rows``.
    """
    budget_bytes = SIMILARITY_BLOCK_BYTES if budget_bytes is None else budget_bytes
    bytes_per_entry = BYTES_PER_SIMILARITY if bytes_per_entry is None else bytes_per_entry
    bounds = np.asarray(bounds, dtype=np.int64)
    n = bounds.size
    max_rows = max(1, int(max_rows))
    cost = np.cumsum(bounds * int(bytes_per_entry))
    blocks = []
    start = 0
    while start < n:
        base = int(cost[start - 1]) if start else 0
        stop = int(np.searchsorted(cost, base + int(budget_bytes), side="right"))
        stop = min(max(stop, start + 1), start + max_rows, n)
        blocks.append((start, stop))
        start = stop
    return blocks


def _kth_largest(vals: np.ndarray, indptr: np.ndarray, k: int) -> np.ndarray:
    """The ``k``-th largest of each CSR row slice of ``vals`` (``-1.0`` for rows with at most ``k`` entries).

    Rows are grouped by length into powers of two and each group is padded with
    ``-1.0`` to a dense array (at most twice its entries) for ``ndarray.partition``,
    so the cost is linear in the number of entries and no row is sorted.
    """
    counts = np.diff(indptr)
    thr = np.full(counts.size, -1.0)
    long_rows = np.flatnonzero(counts > k)
    if long_rows.size == 0:
        return thr
    level = np.zeros(counts.size, dtype=np.int8)
    level[long_rows] = np.frexp(counts[long_rows].astype(np.float64))[1]
    entry_level = np.repeat(level, counts)
    for lv in np.unique(level[long_rows]):
        rb = np.flatnonzero(level == lv)
        lens = counts[rb]
        m = int(lens.max())
        pad = np.full((rb.size, m), -1.0)
        pad[np.arange(m)[None, :] < lens[:, None]] = vals[entry_level == lv]  # row-major: row slices in order
        pad.partition(m - k, axis=1)
        thr[rb] = pad[:, m - k]
    return thr


def topk_rows(S: sp.csr_matrix, k: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest entries of each row of a sparse matrix, ties broken by lower column index.

    Linear in the number of stored entries: each row's ``k``-th largest value is
    found by partitioning (:func:`_kth_largest`), the entries above it are kept,
    and the entries equal to it fill the remaining places in column order. Only
    the at most ``k`` selected entries per row are sorted.

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
    S.sum_duplicates()  # canonical: column indices increase within each row
    b = S.shape[0]
    idx = np.full((b, k), -1, dtype=np.int64)
    val = np.zeros((b, k), dtype=np.float64)
    if S.nnz == 0:
        return idx, val
    counts = np.diff(S.indptr)
    row_dtype = np.int32 if b < 2**31 else np.int64
    rows = np.repeat(np.arange(b, dtype=row_dtype), counts)
    # entries that are not candidates (zero, or the excluded object) rank below every candidate
    vals = np.where(S.data > 0, S.data, -1.0)
    if exclude is not None:
        vals[S.indices == np.asarray(exclude)[rows]] = -1.0
    thr = _kth_largest(vals, S.indptr, k)
    t = np.repeat(thr, counts)
    above = np.flatnonzero(vals > t)                 # fewer than k per row, all selected
    tied = np.flatnonzero((vals == t) & (vals > 0))  # the k-th value: lowest columns fill up the row
    del t, vals
    n_above = np.bincount(rows[above], minlength=b)
    tied_rows = rows[tied]
    first = np.searchsorted(tied_rows, np.arange(b))
    rank = np.arange(tied.size) - first[tied_rows]
    tied = tied[rank < (k - n_above)[tied_rows]]
    sel = np.concatenate([above, tied])
    rows, cols, v = rows[sel].astype(np.int64), S.indices[sel], S.data[sel]
    order = np.lexsort((cols, -v, rows))
    rows, cols, v = rows[order], cols[order], v[order]
    starts = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=b))[:-1]])
    rank = np.arange(rows.size) - starts[rows]
    idx[rows, rank] = cols
    val[rows, rank] = v
    return idx, val
