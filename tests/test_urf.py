"""The unsupervised random forest: the fast exact scores against a plain brute force of steps 4–6."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import rankdata

from serendip.outliers import UnsupervisedRandomForest
from serendip.outliers._leaves import MergedForest


# ------------------------------------------------------------------------------------------------
# Brute force, written from the paper's definitions (steps 4-6), O(N^2 T), small N only
# ------------------------------------------------------------------------------------------------
def brute_leaves(model, X):
    """A[i, t] (sklearn node ids) and G[i, t] (1 if the leaf is purely real / majority real)."""
    forest = model.forest_
    trees = forest.estimators_
    feats = forest.features_ if isinstance(forest, MergedForest) else [None] * len(trees)
    X32 = np.asarray(X, dtype=np.float32)
    A = np.zeros((X.shape[0], len(trees)), dtype=np.int64)
    G = np.zeros_like(A)
    for t, (est, cols) in enumerate(zip(trees, feats)):
        Xt = X32 if cols is None else X32[:, cols]
        A[:, t] = est.apply(Xt)
        real = list(est.classes_).index(1)
        p_real = est.tree_.value[A[:, t], 0, real] / est.tree_.value[A[:, t], 0, :].sum(axis=1)
        if model.good_leaf == "pure":
            G[:, t] = p_real == 1.0
        else:
            G[:, t] = p_real > 0.5
    return A, G


def brute_similarity(A, G, normalization="column", A_rows=None, G_rows=None):
    """S[i, j] for query rows (default: the training rows) against the training population."""
    A_rows = A if A_rows is None else A_rows
    G_rows = G if G_rows is None else G_rows
    n_q, n = A_rows.shape[0], A.shape[0]
    c = np.zeros((n_q, n))
    both = np.zeros((n_q, n))
    for t in range(A.shape[1]):
        same = A_rows[:, t][:, None] == A[:, t][None, :]
        gg = G_rows[:, t][:, None] * G[:, t][None, :]
        c += same * gg
        both += gg
    if normalization == "column":
        g = G.sum(axis=1)
        denom = np.broadcast_to(g[None, :], c.shape)
    else:
        denom = both
    S = np.zeros_like(c)
    ok = denom > 0
    S[ok] = c[ok] / denom[ok]
    return S


def brute_weirdness(model, X, X_new=None):
    """Per repeat: S from the definitions, w = mean_j (1 - S_ij); averaged over repeats."""
    A, G = brute_leaves(model, X)
    reps = np.asarray(model.tree_repeat_)
    if X_new is not None:
        An, Gn = brute_leaves(model, X_new)
    Ss = []
    for r in np.unique(reps):
        cols = reps == r
        if X_new is None:
            Ss.append(brute_similarity(A[:, cols], G[:, cols], model.normalization))
        else:
            Ss.append(brute_similarity(A[:, cols], G[:, cols], model.normalization, An[:, cols], Gn[:, cols]))
    S = np.mean(Ss, axis=0)
    if model.score_mode == "mean":
        return (1 - S).mean(axis=1), S
    k = model.score_k
    if X_new is None:
        S = S.copy()
        np.fill_diagonal(S, -np.inf)  # exclude the object itself
    top = -np.sort(-S, axis=1)[:, :k]
    return (1 - top).mean(axis=1), S


def same_ranking(a, b):
    return np.array_equal(rankdata(np.round(a, 10), method="min"), rankdata(np.round(b, 10), method="min"))


def blobs(n, f, seed, n_out=5):
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 3))
    X = latent @ rng.normal(size=(3, f)) + 0.3 * rng.normal(size=(n, f))
    X[:n_out] = 3 * rng.normal(size=(n_out, f))
    return X


# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,f,trees,seed", [(40, 8, 25, 0), (150, 20, 40, 1), (400, 12, 30, 2), (90, 50, 3, 3)])
def test_exact_against_brute_force(n, f, trees, seed):
    X = blobs(n, f, seed)
    model = UnsupervisedRandomForest(trees, random_state=seed, progress=False).fit(X)
    w_brute, S = brute_weirdness(model, X)
    assert np.max(np.abs(model.weirdness_ - w_brute)) < 1e-12
    assert same_ranking(model.weirdness_, w_brute)
    # the similarity products agree with the definition too
    assert np.max(np.abs(model.similarity_matrix() - S)) < 1e-12
    rows = np.array([0, n // 2, n - 1])
    assert np.max(np.abs(model.similarity(rows, [1, 2]) - S[np.ix_(rows, [1, 2])])) < 1e-12


def test_faithful_defaults_and_leaf_storage():
    model = UnsupervisedRandomForest()
    assert (model.n_estimators, model.criterion, model.max_features, model.bootstrap, model.max_depth,
            model.min_samples_leaf, model.synthetic, model.good_leaf, model.normalization,
            model.score_mode) == (500, "gini", "sqrt", True, None, 1, "marginal", "pure", "column", "mean")
    X = blobs(60, 10, 4)
    model = UnsupervisedRandomForest(12, random_state=0, progress=False).fit(X)
    from sklearn.ensemble import RandomForestClassifier

    assert isinstance(model.forest_, RandomForestClassifier)
    assert model.forest_.n_estimators == 12 and model.forest_.max_features == "sqrt"
    assert model.leaves_.dtype == np.int32 and model.leaves_.shape == (60, 12)
    assert np.all(model.weirdness_ >= 0) and np.all(model.weirdness_ <= 1)


def test_objects_never_in_a_good_leaf_are_maximally_weird():
    # with 2 trees many objects are out-of-bag in both and land in synthetic leaves: g = 0
    X = blobs(120, 6, 5)
    model = UnsupervisedRandomForest(2, random_state=1, progress=False).fit(X)
    g = model.n_good_trees_[:, 0]
    assert (g == 0).any() and (g > 0).any()
    assert np.all(model.weirdness_[g == 0] == 1.0)
    assert model.weirdness_[g > 0].max() <= (len(X) - 1) / len(X)
    w_brute, S = brute_weirdness(model, X)
    assert np.max(np.abs(model.weirdness_ - w_brute)) < 1e-12
    assert np.all(np.diag(model.similarity_matrix())[g == 0] == 0)
    assert np.all(np.diag(model.similarity_matrix())[g > 0] == 1)


@pytest.mark.parametrize("params", [
    {"normalization": "symmetric"},
    {"score_mode": "knn", "score_k": 4},
    {"synthetic": "uniform"},
    {"good_leaf": "majority", "max_depth": 4},
    {"n_repeats": 3},
    {"max_fit_samples": 50, "subforest_features": 0.5},
    {"normalization": "symmetric", "n_repeats": 2, "score_mode": "knn"},
])
def test_variants_exact_against_brute_force(params):
    X = blobs(130, 10, 6)
    model = UnsupervisedRandomForest(24, random_state=3, progress=False, **params).fit(X)
    w_brute, _ = brute_weirdness(model, X)
    assert np.max(np.abs(model.weirdness_ - w_brute)) < 1e-12
    assert same_ranking(model.weirdness_, w_brute)


def test_merged_subforests_remember_features():
    X = blobs(200, 16, 7)
    model = UnsupervisedRandomForest(30, max_fit_samples=70, subforest_features=6, random_state=0,
                                     progress=False).fit(X)
    forest = model.forest_
    assert isinstance(forest, MergedForest) and len(forest) == 30
    assert np.unique(forest.subforest_).size == 3
    assert all(cols is not None and cols.size == 6 for cols in forest.features_)
    assert all(est.n_features_in_ == 6 for est in forest.estimators_)
    # the trees are applied to their own columns: raw node ids agree with sklearn on those columns
    nodes = forest.apply(X)
    est, cols = forest.estimators_[5], forest.features_[5]
    assert np.array_equal(nodes[:, 5], est.apply(X[:, cols].astype(np.float32)))


def test_score_samples_semantics():
    X = blobs(150, 10, 8)
    Xnew = blobs(20, 10, 9)
    model = UnsupervisedRandomForest(30, random_state=0, progress=False).fit(X)
    # the training objects re-scored give their own weirdness exactly
    assert np.max(np.abs(model.score_samples(X) - model.weirdness_)) < 1e-12
    w_brute, _ = brute_weirdness(model, X, X_new=Xnew)
    assert np.max(np.abs(model.score_samples(Xnew) - w_brute)) < 1e-12
    sym = UnsupervisedRandomForest(30, normalization="symmetric", random_state=0, progress=False).fit(X)
    w_brute, _ = brute_weirdness(sym, X, X_new=Xnew)
    assert np.max(np.abs(sym.score_samples(Xnew) - w_brute)) < 1e-12
    with pytest.raises(ValueError, match="11 features.*fitted with 10"):
        model.score_samples(np.zeros((3, 11)))


def test_most_similar_against_brute_force():
    X = blobs(160, 10, 10)
    model = UnsupervisedRandomForest(40, n_repeats=2, random_state=0, progress=False).fit(X)
    _, S = brute_weirdness(model, X)
    idx, sims = model.most_similar(k=5, block_size=37)
    assert idx.shape == (160, 5) and sims.shape == (160, 5)
    S_off = S.copy()
    np.fill_diagonal(S_off, -1)
    expected = -np.sort(-S_off, axis=1)[:, :5]
    expected = np.where(expected > 0, expected, 0)
    assert np.max(np.abs(sims - expected)) < 1e-12
    valid = idx >= 0
    assert not np.any(idx == np.arange(160)[:, None])
    assert np.allclose(S[np.nonzero(valid)[0], idx[valid]], sims[valid], atol=1e-12)
    assert np.all(np.diff(sims, axis=1) <= 1e-15)


def test_similarity_matrix_refuses_large_n():
    X = blobs(80, 6, 11)
    model = UnsupervisedRandomForest(5, random_state=0, progress=False).fit(X)
    with pytest.raises(MemoryError, match="most_similar"):
        model.similarity_matrix(max_objects=50)
    assert model.similarity_matrix(max_objects=50, force=True).shape == (80, 80)


def test_planted_outliers_rank_top():
    X = blobs(300, 20, 12, n_out=6)
    model = UnsupervisedRandomForest(60, random_state=0, progress=False).fit(X)
    assert set(np.argsort(-model.weirdness_)[:10]) >= set(range(6))
    assert set(np.flatnonzero(model.rank_ <= 10)) >= set(range(6))


def test_reproducible_and_threads_agree():
    X = blobs(120, 10, 13)
    a = UnsupervisedRandomForest(16, random_state=42, n_jobs=1, progress=False).fit(X).weirdness_
    b = UnsupervisedRandomForest(16, random_state=42, n_jobs=2, progress=False).fit(X).weirdness_
    c = UnsupervisedRandomForest(16, random_state=43, progress=False).fit(X).weirdness_
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_memmap_spectra_and_array_inputs_agree(tmp_path):
    from serendip.spectra import Spectra

    X = blobs(100, 12, 14).astype(np.float32)
    path = tmp_path / "x.npy"
    np.save(path, X)
    mm = np.load(path, mmap_mode="r")
    spec = Spectra(np.linspace(4000, 5000, 12), X)
    kw = dict(n_estimators=10, random_state=0, progress=False, block_size=32)
    w = UnsupervisedRandomForest(**kw).fit(X).weirdness_
    assert np.array_equal(UnsupervisedRandomForest(**kw).fit(mm).weirdness_, w)
    assert np.array_equal(UnsupervisedRandomForest(**kw).fit(spec).weirdness_, w)
    assert np.array_equal(UnsupervisedRandomForest(max_fit_samples=60, **kw).fit(mm).weirdness_,
                          UnsupervisedRandomForest(max_fit_samples=60, **kw).fit(X).weirdness_)


def test_bad_input_errors():
    X = blobs(50, 8, 15)
    kw = dict(n_estimators=4, random_state=0, progress=False)
    bad = X.copy()
    bad[7, 3] = np.nan
    with pytest.raises(ValueError, match=r"row 7.*column 3.*fill_masked.*impute=True"):
        UnsupervisedRandomForest(**kw).fit(bad)
    bad[9, 1] = np.inf
    model = UnsupervisedRandomForest(impute=True, **kw).fit(bad)
    assert np.all(np.isfinite(model.weirdness_))
    assert np.isfinite(model.score_samples(bad[:10])).all()
    with pytest.raises(ValueError, match="1 object.*minimum of 2"):
        UnsupervisedRandomForest(**kw).fit(X[:1])
    with pytest.raises(ValueError, match="empty"):
        UnsupervisedRandomForest(**kw).fit(np.zeros((0, 8)))
    const = X.copy()
    const[:, 2] = 5.0
    with pytest.raises(ValueError, match="constant.*: 2"):
        UnsupervisedRandomForest(**kw).fit(const)
    with pytest.raises(ValueError, match="2-D"):
        UnsupervisedRandomForest(**kw).fit(np.zeros(5))
    with pytest.raises(ValueError, match="synthetic must be one of"):
        UnsupervisedRandomForest(synthetic="gaussian", **kw).fit(X)
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        UnsupervisedRandomForest().score_samples(X)


def test_sklearn_conventions():
    from sklearn.base import clone

    model = UnsupervisedRandomForest(7, normalization="symmetric", random_state=1)
    c = clone(model)
    assert c.get_params() == model.get_params()
    X = blobs(40, 5, 16)
    assert model.set_params(progress=False).fit(X) is model
    tab = model.to_table()
    assert tab.meta["score_convention"] == "higher = weirder" and len(tab) == 40


def test_popcount_fallback_matches_numpy():
    from serendip.outliers import similarity as simmod

    bits = np.random.default_rng(0).integers(0, 256, size=(50, 9), dtype=np.uint8)
    expected = np.unpackbits(bits, axis=1).sum(axis=1)
    assert np.array_equal(simmod._popcount_rows(bits), expected)
    assert np.array_equal(simmod._POPCOUNT8[bits].sum(axis=1), expected)


# ------------------------------------------------------------------------------------------------
# Similarity row blocks: a per-row bound on the non-zeros sizes the blocks; top k by partition
# ------------------------------------------------------------------------------------------------
def dense_topk(S, k, exclude=None):
    """Brute force on a dense matrix: per row, the k largest positive entries, ties by lower column."""
    b, n = S.shape
    idx = np.full((b, k), -1, dtype=np.int64)
    val = np.zeros((b, k))
    for i in range(b):
        cols = np.flatnonzero(S[i] > 0)
        if exclude is not None:
            cols = cols[cols != exclude[i]]
        cols = cols[np.lexsort((cols, -S[i, cols]))][:k]
        idx[i, :cols.size] = cols
        val[i, :cols.size] = S[i, cols]
    return idx, val


def test_topk_rows_against_dense_sort():
    import scipy.sparse as sp

    from serendip.outliers.similarity import topk_rows

    rng = np.random.default_rng(0)
    for trial in range(60):
        b, n, k = int(rng.integers(1, 30)), int(rng.integers(1, 200)), int(rng.integers(1, 12))
        M = sp.random(b, n, density=rng.uniform(0, 1) ** 2, format="csr", random_state=trial)
        M.data = np.floor(M.data * 4) / 4  # many ties and explicit zeros
        if trial % 3 == 0:  # unsorted column indices within rows
            for i in range(b):
                a, e = M.indptr[i], M.indptr[i + 1]
                p = rng.permutation(e - a)
                M.indices[a:e], M.data[a:e] = M.indices[a:e][p], M.data[a:e][p]
            M.has_sorted_indices = False
        exclude = rng.integers(0, n, b) if trial % 2 else None
        idx, val = topk_rows(M.copy(), k, exclude)
        e_idx, e_val = dense_topk(M.toarray(), k, exclude)
        assert np.array_equal(idx, e_idx) and np.array_equal(val, e_val)


def test_row_nnz_bound_is_the_good_leaf_population():
    X = blobs(200, 6, 21)
    model = UnsupervisedRandomForest(15, n_repeats=2, random_state=0, progress=False).fit(X)
    sim = model._similarity_engine()
    A = model.leaves_.astype(np.int64)
    G = model.good_leaf_[A]
    pop = np.bincount(A[G], minlength=model.good_leaf_.size)  # objects per good leaf
    expected = np.minimum(np.where(G, pop[A], 0).sum(axis=1), len(X))
    bound = sim.row_nnz_bound(model.leaves_)
    assert np.array_equal(bound, expected)
    assert np.all(np.diff(sim.block(model.leaves_).indptr) <= bound)
    for s, e in model._sparse_blocks(sim, model.leaves_, 64):
        assert 1 <= e - s <= 64


def test_row_blocks_are_smaller_for_dense_rows():
    from serendip.outliers.similarity import row_blocks

    budget, per = 64 * 1000, 64
    sparse_rows = row_blocks(np.full(500, 10), 4096, budget, per)
    dense_rows = row_blocks(np.full(500, 500), 4096, budget, per)
    assert [e - s for s, e in sparse_rows] == [100] * 5
    assert [e - s for s, e in dense_rows] == [2] * 250
    # cover all rows in order; a row over the budget alone still gets a block; max_rows caps blocks
    mixed = row_blocks(np.array([5, 5000, 5, 5, 5, 5]), 3, budget, per)
    assert mixed == [(0, 1), (1, 2), (2, 5), (5, 6)]
    assert row_blocks(np.zeros(0, dtype=int), 10, budget, per) == []


def test_similarity_blocks_shrink_when_leaves_are_populous():
    # same data and number of trees: small pure leaves (deep trees) against big leaves (depth 2)
    X = blobs(400, 8, 23)
    deep = UnsupervisedRandomForest(5, random_state=0, progress=False).fit(X)
    shallow = UnsupervisedRandomForest(5, max_depth=2, good_leaf="majority", random_state=0,
                                       progress=False).fit(X)
    b_deep = deep._similarity_engine().row_nnz_bound(deep.leaves_)
    b_shallow = shallow._similarity_engine().row_nnz_bound(shallow.leaves_)
    assert b_shallow.mean() > 2 * b_deep.mean() and b_shallow.max() <= len(X)
    from serendip.outliers import similarity as simmod

    budget = simmod.BYTES_PER_SIMILARITY * int(b_deep.sum()) // 8
    n_deep = len(simmod.row_blocks(b_deep, 4096, budget))
    n_shallow = len(simmod.row_blocks(b_shallow, 4096, budget))
    assert n_deep <= 9 and n_shallow > 2 * n_deep


@pytest.mark.parametrize("params", [
    {"n_repeats": 2},
    {"normalization": "symmetric"},
    {"normalization": "symmetric", "score_mode": "knn", "score_k": 4},
    {"score_mode": "knn", "score_k": 3, "n_repeats": 2},
])
def test_small_similarity_blocks_give_identical_results(monkeypatch, params):
    from serendip.outliers import similarity as simmod

    X, Xnew = blobs(150, 8, 24), blobs(25, 8, 25)
    kw = dict(n_estimators=20, random_state=0, progress=False, **params)
    model = UnsupervisedRandomForest(**kw).fit(X)
    idx0, val0 = model.most_similar(k=5)
    new0 = model.score_samples(Xnew)
    # a budget of at most three rows per block (each row's bound is at most N = 150)
    monkeypatch.setattr(simmod, "SIMILARITY_BLOCK_BYTES", simmod.BYTES_PER_SIMILARITY * 150 * 3)
    small = UnsupervisedRandomForest(**kw).fit(X)
    assert len(small._sparse_blocks(small._similarity_engine(), small.leaves_, 4096)) >= 50
    assert np.array_equal(small.weirdness_, model.weirdness_)
    assert np.array_equal(small.score_samples(Xnew), new0)
    idx, val = small.most_similar(k=5)
    assert np.array_equal(idx, idx0) and np.array_equal(val, val0)
    # against dense brute force: the top 5 of the dense S (same products), and S from the definitions
    S = small.similarity_matrix()
    e_idx, e_val = dense_topk(S, 5, np.arange(len(X)))
    assert np.array_equal(idx, e_idx) and np.array_equal(val, e_val)
    A, G = brute_leaves(small, X)
    reps = np.asarray(small.tree_repeat_)
    S_brute = np.mean([brute_similarity(A[:, reps == r], G[:, reps == r], small.normalization)
                       for r in np.unique(reps)], axis=0)
    assert np.max(np.abs(S - S_brute)) < 1e-12
    assert np.max(np.abs(val - dense_topk(S_brute, 5, np.arange(len(X)))[1])) < 1e-12
    w_brute, _ = brute_weirdness(small, X)
    assert np.max(np.abs(small.weirdness_ - w_brute)) < 1e-12
    w_new, _ = brute_weirdness(small, X, X_new=Xnew)
    assert np.max(np.abs(small.score_samples(Xnew) - w_new)) < 1e-12


def test_float32_limits_are_explained(rng):
    X = rng.normal(size=(60, 3))
    big = X.copy()
    big[5, 1] = 1e39  # finite in float64, infinite in the forest's float32
    with pytest.raises(ValueError, match="too large for float32"):
        UnsupervisedRandomForest(n_estimators=5, random_state=0, progress=False).fit(big)
    mjd = X.copy()
    mjd[:, 0] = 58000 + 1e-4 * rng.normal(size=60)  # varies in float64 only
    with pytest.raises(ValueError, match="subtract its mean or rescale"):
        UnsupervisedRandomForest(n_estimators=5, random_state=0, progress=False).fit(mjd)


def test_the_aggregation_parameter_does_not_hide_sklearn_methods(rng):
    from sklearn.base import clone

    urf = UnsupervisedRandomForest(score_mode="knn", score_k=3, n_estimators=5, random_state=0, progress=False)
    assert callable(getattr(UnsupervisedRandomForest, "score", None)) or not hasattr(urf, "score")
    assert clone(urf).get_params()["score_mode"] == "knn"


def test_knn_score_uses_only_the_objects_there_are_and_scores_stay_in_0_1():
    """With fewer other objects than score_k, missing neighbours counted as distance 1."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(6, 3))
    m = UnsupervisedRandomForest(20, score_mode="knn", score_k=10, random_state=0, progress=False).fit(X)
    S = m.similarity_matrix()
    off = S[~np.eye(6, dtype=bool)].reshape(6, 5)
    np.testing.assert_allclose(m.weirdness_, (1 - off).mean(axis=1), atol=1e-12)  # all 5 others, no phantoms
    two = UnsupervisedRandomForest(20, random_state=0, progress=False).fit(X[:2])
    assert np.all((two.weirdness_ >= 0) & (two.weirdness_ <= 1))


def test_sparse_input_gets_its_own_message():
    import scipy.sparse as sp

    with pytest.raises(TypeError, match="sparse matrix.*toarray"):
        UnsupervisedRandomForest(5, progress=False).fit(sp.random(20, 4, density=0.5, format="csr", random_state=0))
