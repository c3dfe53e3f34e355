"""The Sequencer's tree primitive: minimum spanning tree, start node, levels, elongation, order.

Everything after the spanning tree is O(N) on the tree's edge list:

* **closeness** — networkx's unweighted closeness of node u on a connected tree is
  ``(N-1) / S(u)`` with ``S(u)`` the sum of hop distances from u; ``S`` for every
  node comes from one rooted pass (``S(child) = S(parent) + N - 2 size(child)``),
  not N breadth-first searches;
* **start node** — the least central node, i.e. the largest ``S``; ties go to the
  lowest index;
* **levels** — hop distance from the start;
* **elongation** — ``eta = mean(level) / (mean(nodes per level) / 2) + 1`` (a chain
  scores N, a star about 1);
* **level order** (faithful) — by level, then by the weight of the edge to the BFS
  parent, then (our documented tie-break; the reference uses networkx's discovery
  order) by lower index;
* **path order** (improved) — along the tree's main path (the hop diameter found by
  two farthest-node searches, ties to the lowest index), each side branch inserted
  right after the path node where it attaches, inside a branch by depth, edge weight,
  index.

Spanning trees: dense matrices use Prim's algorithm (numba, O(N^2) time, O(N)
extra memory); sparse graphs use :func:`scipy.sparse.csgraph.minimum_spanning_tree`.
With distinct weights both give the unique MST, which is what the reference
(scipy's Kruskal) gets. For an asymmetric matrix the smaller of ``D_ij`` and ``D_ji``
is the edge weight, as in scipy. One documented difference: an off-diagonal zero
(two identical chunks) is kept as an edge of weight 0, where the reference treats
it as "no edge", which can disconnect its tree and drop objects from its sequence.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .._numba import numba_or_numpy

__all__ = ["Tree", "mst_dense", "mst_sparse", "tree_from_edges", "elongation_from_levels"]

_TINY = np.nextafter(0.0, 1.0)


def _numba_funcs():
    from numba import njit, prange

    @njit(cache=True, nogil=True)
    def prim(D, symmetric_min):  # pragma: no cover - compiled
        n = D.shape[0]
        best = np.full(n, np.inf)
        parent = np.full(n, -1, dtype=np.int64)
        done = np.zeros(n, dtype=np.bool_)
        u = 0
        done[0] = True
        for step in range(n - 1):
            for v in range(n):
                if not done[v]:
                    w = D[u, v]
                    if symmetric_min:
                        w2 = D[v, u]
                        if w2 < w:
                            w = w2
                    if w < best[v]:
                        best[v] = w
                        parent[v] = u
            nxt = -1
            bw = np.inf
            for v in range(n):
                if not done[v] and (nxt < 0 or best[v] < bw):
                    bw = best[v]
                    nxt = v
            done[nxt] = True
            u = nxt
        return parent, best

    @njit(cache=True, nogil=True)
    def root_tree(indptr, indices, root):  # pragma: no cover - compiled
        n = indptr.size - 1
        order = np.empty(n, dtype=np.int64)
        pred = np.full(n, -1, dtype=np.int64)
        level = np.full(n, -1, dtype=np.int64)
        order[0] = root
        level[root] = 0
        head = 0
        tail = 1
        while head < tail:
            u = order[head]
            head += 1
            for e in range(indptr[u], indptr[u + 1]):
                v = indices[e]
                if level[v] < 0:
                    level[v] = level[u] + 1
                    pred[v] = u
                    order[tail] = v
                    tail += 1
        return order[:tail], pred, level

    @njit(cache=True, nogil=True)
    def distance_sums(order, pred, level):  # pragma: no cover - compiled
        n = order.size
        size = np.ones(pred.size, dtype=np.int64)
        for k in range(n - 1, 0, -1):
            v = order[k]
            size[pred[v]] += size[v]
        s = np.zeros(pred.size, dtype=np.int64)
        tot = 0
        for k in range(n):
            tot += level[order[k]]
        s[order[0]] = tot
        for k in range(1, n):
            v = order[k]
            s[v] = s[pred[v]] + n - 2 * size[v]
        return s

    @njit(parallel=True, cache=True, nogil=True)
    def sym_min(D, out):  # pragma: no cover - compiled
        n = D.shape[0]
        tile = 64
        nb = (n + tile - 1) // tile
        for bi in prange(nb):
            i0 = bi * tile
            i1 = min(i0 + tile, n)
            for j0 in range(0, n, tile):
                j1 = min(j0 + tile, n)
                for i in range(i0, i1):
                    for j in range(j0, j1):
                        a = D[i, j]
                        b = D[j, i]
                        out[i, j] = a if a < b else b

    return prim, root_tree, distance_sums, sym_min


def _numpy_funcs():
    """Pure numpy/scipy versions of the numba helpers (used when numba is not installed)."""

    def prim(D, symmetric_min):
        n = D.shape[0]
        best = np.full(n, np.inf)
        parent = np.full(n, -1, dtype=np.int64)
        done = np.zeros(n, dtype=bool)
        u = 0
        done[0] = True
        for _ in range(n - 1):
            w = np.minimum(D[u], D[:, u]) if symmetric_min else D[u]
            better = (w < best) & ~done
            best[better] = w[better]
            parent[better] = u
            cand = np.where(done, np.inf, best)
            u = int(np.argmin(cand))
            if not np.isfinite(cand[u]):  # only inf left: take the first remaining node
                u = int(np.flatnonzero(~done)[0])
            done[u] = True
        return parent, best

    def root_tree(indptr, indices, root):
        from scipy.sparse.csgraph import breadth_first_order

        n = indptr.size - 1
        A = sp.csr_matrix((np.ones(indices.size), indices, indptr), shape=(n, n))
        order, pred = breadth_first_order(A, root, directed=False, return_predecessors=True)
        pred = np.where(pred < 0, -1, pred).astype(np.int64)
        level = np.full(n, -1, dtype=np.int64)
        level[root] = 0
        for v in order[1:]:
            level[v] = level[pred[v]] + 1
        return order.astype(np.int64), pred, level

    def distance_sums(order, pred, level):
        n = order.size
        size = np.ones(pred.size, dtype=np.int64)
        for v in order[:0:-1]:
            size[pred[v]] += size[v]
        s = np.zeros(pred.size, dtype=np.int64)
        s[order[0]] = int(level[order].sum())
        for v in order[1:]:
            s[v] = s[pred[v]] + n - 2 * size[v]
        return s

    def sym_min(D, out):
        np.minimum(D, D.T, out=out)

    return prim, root_tree, distance_sums, sym_min


_FUNCS = None


def _funcs():
    global _FUNCS
    if _FUNCS is None:
        _FUNCS = numba_or_numpy(_numba_funcs, _numpy_funcs, "Sequencer trees")
    return _FUNCS


def mst_dense(D: np.ndarray, symmetric: bool = True, work: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimum spanning tree of a dense N x N matrix as edges ``(u, v, w)``.

    ``symmetric=False`` uses ``min(D_ij, D_ji)`` (asymmetric KL); the symmetrised
    matrix is built tile by tile in ``work`` (an N x N buffer) when given, which is
    faster than reading columns. The diagonal is ignored.
    """
    D = np.ascontiguousarray(D, dtype=np.float64)
    n = D.shape[0]
    if n == 1:
        e = np.empty(0, dtype=np.int64)
        return e, e.copy(), np.empty(0)
    prim, _, _, sym_min = _funcs()
    if not symmetric and work is not None:
        sym_min(D, work)
        D, symmetric = work, True
    parent, best = prim(D, not symmetric)
    v = np.flatnonzero(parent >= 0)
    return parent[v], v, best[v]


def mst_sparse(G: sp.spmatrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimum spanning tree (or forest) of a sparse graph as edges ``(u, v, w)`` (scipy's Kruskal).

    Stored zeros should have been replaced by a tiny positive weight by the caller
    (scipy drops them). Entries are processed in stable order of weight, so ties go
    to the first entry in row-major order, as in the reference.
    """
    from scipy.sparse.csgraph import minimum_spanning_tree

    T = minimum_spanning_tree(sp.csr_matrix(G)).tocoo()
    return T.row.astype(np.int64), T.col.astype(np.int64), T.data.astype(np.float64)


def elongation_from_levels(level: np.ndarray) -> float:
    """``eta = mean(level) / (mean(nodes per level) / 2) + 1`` (reference formula)."""
    level = np.asarray(level)
    counts = np.bincount(level)
    counts = counts[counts > 0]
    return float(np.mean(level)) / (float(np.mean(counts)) / 2.0) + 1.0


@dataclass
class Tree:
    """A spanning tree with the Sequencer's derived quantities.

    Attributes
    ----------
    u, v, w : ndarray
        Edge list (N-1 edges) and weights.
    start : int
        Least-central node (lowest index on ties).
    level : ndarray
        Hop distance of every node from ``start``.
    elongation : float
        Reference elongation eta.
    """

    u: np.ndarray
    v: np.ndarray
    w: np.ndarray
    n: int
    start: int = -1
    level: np.ndarray | None = None
    pred: np.ndarray | None = None
    bfs: np.ndarray | None = None
    elongation: float = float("nan")

    def adjacency(self) -> sp.csr_matrix:
        n = self.n
        rows = np.concatenate([self.u, self.v])
        cols = np.concatenate([self.v, self.u])
        return sp.csr_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=(n, n))

    def parent_weight(self) -> np.ndarray:
        """Weight of the edge from each node to its BFS parent (0 for the start)."""
        pw = np.zeros(self.n)
        a = self.pred[self.v] == self.u
        pw[self.v[a]] = self.w[a]
        pw[self.u[~a]] = self.w[~a]
        return pw

    def level_order(self) -> np.ndarray:
        """Faithful order: level, then parent-edge weight, then index."""
        return np.lexsort((np.arange(self.n), self.parent_weight(), self.level)).astype(np.int64)

    def path_order(self) -> np.ndarray:
        """Improved order: along the main path, side branches inserted where they attach."""
        _, root_tree, _, _ = _funcs()
        adj = self.adjacency()
        ip, ix = adj.indptr.astype(np.int64), adj.indices.astype(np.int64)
        far = np.flatnonzero(self.level == self.level.max())[0]
        order_a, pred_a, level_a = root_tree(ip, ix, far)
        b = np.flatnonzero(level_a == level_a.max())[0]
        path = [b]
        while path[-1] != far:
            path.append(pred_a[path[-1]])
        path = np.array(path[::-1], dtype=np.int64)  # far ... b
        if self.level[path[0]] > self.level[path[-1]]:  # begin at the end nearer the start node
            path = path[::-1]
        pos = np.full(self.n, -1, dtype=np.int64)
        pos[path] = np.arange(path.size)
        attach = np.arange(self.n)
        for v in order_a:  # BFS order: parents first
            if pos[v] < 0:
                attach[v] = attach[pred_a[v]]
        pw = np.zeros(self.n)
        a = pred_a[self.v] == self.u
        pw[self.v[a]] = self.w[a]
        pw[self.u[~a]] = self.w[~a]
        depth = level_a - level_a[attach]
        return np.lexsort((np.arange(self.n), pw, depth, pos[attach])).astype(np.int64)


def tree_from_edges(u, v, w, n: int) -> Tree:
    """Root a spanning tree at its least-central node and compute levels and elongation."""
    t = Tree(np.asarray(u, np.int64), np.asarray(v, np.int64), np.asarray(w, np.float64), int(n))
    if n == 1:
        t.start, t.level, t.pred, t.bfs = 0, np.zeros(1, np.int64), np.full(1, -1), np.zeros(1, np.int64)
        t.elongation = 1.0
        return t
    if t.u.size != n - 1:
        raise ValueError(f"a spanning tree of {n} nodes needs {n - 1} edges; got {t.u.size} (graph not connected)")
    _, root_tree, distance_sums, _ = _funcs()
    adj = t.adjacency()
    ip, ix = adj.indptr.astype(np.int64), adj.indices.astype(np.int64)
    order0, pred0, level0 = root_tree(ip, ix, 0)
    if order0.size != n:
        raise ValueError("the edges do not connect all nodes")
    s = distance_sums(order0, pred0, level0)
    t.start = int(np.argmax(s))  # least central; first index on ties
    t.bfs, t.pred, t.level = root_tree(ip, ix, t.start)
    t.elongation = elongation_from_levels(t.level)
    return t
