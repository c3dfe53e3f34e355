"""Sequencer building blocks: vectorised distances vs scipy per pair, and the tree primitive vs networkx."""
from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import minimum_spanning_tree
from scipy.stats import energy_distance, entropy, wasserstein_distance

from serendip.sequencer.distances import (chunk_bounds, default_scales, dense_distances, pair_distances,
                                          prepare)
from serendip.sequencer.trees import elongation_from_levels, mst_dense, tree_from_edges

ORACLES = {
    "EMD": lambda x, a, b: wasserstein_distance(x, x, u_weights=a, v_weights=b),
    "energy": lambda x, a, b: energy_distance(x, x, u_weights=a, v_weights=b),
    "KL": lambda x, a, b: entropy(a, b),
    "L2": lambda x, a, b: float(np.sum((a - b) ** 2)),
}


@pytest.mark.parametrize("metric", list(ORACLES))
@pytest.mark.parametrize("uniform", [True, False])
def test_distances_equal_scipy_per_pair(metric, uniform, rng):
    m = 41
    x = np.linspace(3000.0, 9000.0, m) if uniform else np.sort(rng.uniform(3000, 9000, m))
    X = rng.uniform(0.05, 2.0, size=(11, m))
    X[3, 10:20] += 5.0  # a line
    p = X / X.sum(axis=1, keepdims=True)
    ref = np.array([[ORACLES[metric](x, p[i], p[j]) for j in range(11)] for i in range(11)])
    rep = prepare(metric, p, x)
    D = dense_distances(rep)
    np.testing.assert_allclose(D, ref, atol=1e-10, rtol=0)
    assert np.all(np.diag(D) == 0)
    r, c = np.nonzero(np.ones((11, 11), dtype=bool))
    np.testing.assert_allclose(pair_distances(rep, r, c), ref.ravel(), atol=1e-10, rtol=0)
    if metric == "KL":
        assert not np.allclose(D, D.T)  # asymmetric, as the reference
    else:
        assert np.array_equal(D, D.T)


def test_dense_distances_reuses_buffer_and_tiles(rng):
    n, m = 130, 25  # several tiles, ragged last tile
    x = np.cumsum(rng.uniform(0.5, 2, m))
    p = rng.uniform(0.1, 1, (n, m))
    p /= p.sum(axis=1, keepdims=True)
    buf = np.full((n, n), np.nan)
    D = dense_distances(prepare("EMD", p, x), out=buf, n_jobs=1)
    assert D is buf and np.isfinite(D).all()
    i, j = 7, 128
    assert D[i, j] == pytest.approx(ORACLES["EMD"](x, p[i], p[j]), abs=1e-12)


def test_chunks_and_default_scales():
    for m, s in [(500, 3), (17, 4), (10, 10)]:
        ref = [(a[0], a[-1] + 1) for a in np.array_split(np.arange(m), s)]
        assert chunk_bounds(m, s) == ref
    assert default_scales(500) == [1, 2, 4, 8, 16]
    assert default_scales(100) == [1, 2, 4]
    assert default_scales(1000) == [1, 2, 4, 8, 16, 32]
    assert default_scales(15) == [1]
    with pytest.raises(ValueError):
        chunk_bounds(5, 6)


@pytest.mark.parametrize("symmetric", [True, False])
def test_prim_equals_scipy_mst(symmetric, rng):
    n = 60
    A = rng.uniform(0.1, 1.0, (n, n))
    D = A + A.T if symmetric else A
    np.fill_diagonal(D, 0)
    u, v, w = mst_dense(D, symmetric=symmetric)
    T = minimum_spanning_tree(csr_matrix(D)).tocoo()
    ours = {(min(a, b), max(a, b)) for a, b in zip(u, v)}
    theirs = {(min(a, b), max(a, b)) for a, b in zip(T.row, T.col)}
    assert ours == theirs
    assert w.sum() == pytest.approx(T.data.sum(), rel=1e-12)
    if not symmetric:
        np.testing.assert_array_equal(np.sort(w), np.sort(np.minimum(D[u, v], D[v, u])))
        u2, v2, w2 = mst_dense(D, symmetric=False, work=np.empty_like(D))  # tile-symmetrised path
        assert {(min(a, b), max(a, b)) for a, b in zip(u2, v2)} == theirs


def test_start_levels_elongation_match_networkx(rng):
    for n in (7, 40, 150):
        A = rng.uniform(size=(n, n))
        D = A + A.T
        np.fill_diagonal(D, 0)
        u, v, w = mst_dense(D)
        t = tree_from_edges(u, v, w, n)
        G = nx.Graph()
        G.add_nodes_from(range(n))
        G.add_weighted_edges_from(zip(u.tolist(), v.tolist(), w.tolist()))
        c = nx.closeness_centrality(G)
        start = int(np.argmin([c[k] for k in range(n)]))
        assert t.start == start
        lev = nx.shortest_path_length(G, start)
        assert all(t.level[k] == lev[k] for k in range(n))
        d = np.array(list(lev.values()))
        counts = np.unique(d, return_counts=True)[1]
        assert t.elongation == pytest.approx(np.mean(d) / (np.mean(counts) / 2) + 1, rel=1e-14)


def test_chain_scores_n_and_star_about_one():
    n = 50
    perm = np.random.default_rng(0).permutation(n)  # chain through a shuffled index set
    t = tree_from_edges(perm[:-1], perm[1:], np.ones(n - 1), n)
    assert t.elongation == pytest.approx(n)
    ends = sorted([perm[0], perm[-1]])
    assert t.start == ends[0]  # both ends equally least central: lowest index wins
    order = t.level_order()
    walk = perm if perm[0] == ends[0] else perm[::-1]
    np.testing.assert_array_equal(order, walk)
    np.testing.assert_array_equal(t.path_order(), walk)
    # star: centre 0 joined to every other node
    n = 200
    s = tree_from_edges(np.zeros(n - 1, int), np.arange(1, n), np.ones(n - 1), n)
    assert s.start == 1  # every leaf ties; the lowest index wins
    assert s.elongation == pytest.approx(6 * (2 * n - 3) / n ** 2 + 1)
    assert s.elongation < 1.1


def test_level_order_tie_break_and_weights():
    # edges 0-1 (0.5), 1-2 (0.5), 1-3 (0.2), 1-4 (1), 4-5 (1): node 5 is least central
    t = tree_from_edges([0, 1, 1, 1, 4], [1, 2, 3, 4, 5], [0.5, 0.5, 0.2, 1.0, 1.0], 6)
    assert t.start == 5
    # level 3 holds 0, 2, 3: lightest parent edge first (3), then the 0.5 tie goes to the lower index
    np.testing.assert_array_equal(t.level_order(), [5, 4, 1, 3, 0, 2])


def test_path_order_inserts_side_branches_where_they_attach():
    # main path 0-1-2-3-4-5-6, twig 7-8 attached at 2, leaf 9 attached at 5
    u = [0, 1, 2, 3, 4, 5, 2, 7, 5]
    v = [1, 2, 3, 4, 5, 6, 7, 8, 9]
    t = tree_from_edges(u, v, np.ones(9), 10)
    order = t.path_order()
    if order[0] != 0:
        order = order[::-1]
    pos = {k: i for i, k in enumerate(order)}
    assert [pos[k] for k in range(7)] == sorted(pos[k] for k in range(7))  # main path in order
    assert pos[2] < pos[7] < pos[8] < pos[3]  # branch right after its attach point
    assert pos[5] < pos[9] or pos[9] < pos[5]
    assert abs(pos[9] - pos[5]) <= 2
    lev = t.level_order()  # the faithful level order interleaves branches
    assert not np.array_equal(lev, order) and not np.array_equal(lev, order[::-1])


def test_elongation_formula():
    assert elongation_from_levels(np.arange(10)) == pytest.approx(10)
    assert elongation_from_levels(np.array([0, 1, 1, 1])) == pytest.approx(0.75 / 1.0 + 1)


def test_numpy_fallback_equals_numba(monkeypatch, rng):
    """Without numba (the optional 'fast' extra) the same results come from numpy code."""
    import serendip.sequencer.distances as dist
    import serendip.sequencer.trees as trees

    n, m = 70, 30
    x = np.cumsum(rng.uniform(0.5, 2, m))
    p = rng.uniform(0.1, 1, (n, m))
    p /= p.sum(axis=1, keepdims=True)
    fast = {k: dense_distances(prepare(k, p, x)).copy() for k in ("EMD", "energy", "L2")}
    A = rng.uniform(size=(n, n))
    t_fast = tree_from_edges(*mst_dense(A, symmetric=False), n)
    monkeypatch.setattr(dist, "_KERNELS", dist._numpy_kernels())
    monkeypatch.setattr(trees, "_FUNCS", trees._numpy_funcs())
    for k, D in fast.items():
        np.testing.assert_allclose(dense_distances(prepare(k, p, x)), D, rtol=1e-12, atol=1e-15)
    t_np = tree_from_edges(*mst_dense(A, symmetric=False), n)
    assert t_np.start == t_fast.start and t_np.elongation == t_fast.elongation
    np.testing.assert_array_equal(t_np.level_order(), t_fast.level_order())
    np.testing.assert_array_equal(t_np.path_order(), t_fast.path_order())
