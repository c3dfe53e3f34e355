"""Embeddings, clustering, detector comparison and score diagnostics."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.neighbors import NearestNeighbors

from serendip.explore import (ClusterResult, cluster, compare_detectors, embed, knn_from_precomputed,
                              score_correlations)


@pytest.fixture(autouse=True)
def _one_thread():
    """t-SNE's OpenMP gradient is many times slower when 2 threads compete with other test runs."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def _blobs(rng, n_per=60, d=5, sep=6.0):
    centers = np.array([[0.0] * d, [sep] + [0.0] * (d - 1), [0.0, sep] + [0.0] * (d - 2)])
    X = np.vstack([c + rng.normal(size=(n_per, d)) for c in centers])
    return X, np.repeat(np.arange(3), n_per)


# ------------------------------------------------------------------------------------ embed
def test_pca_embedding_matches_svd(rng):
    X = rng.normal(size=(50, 6)) @ rng.normal(size=(6, 6))
    e = embed(X, "pca")
    Xc = X - X.mean(axis=0)
    u, s, _ = np.linalg.svd(Xc, full_matrices=False)
    ref = u[:, :2] * s[:2]
    np.testing.assert_allclose(np.abs(e), np.abs(ref), rtol=1e-6, atol=1e-8)


def test_tsne_from_precomputed_knn_equals_tsne_from_features(rng):
    """The sparse kNN graph path reproduces scikit-learn's own t-SNE neighbour graph exactly."""
    X, _ = _blobs(rng, n_per=30)
    perplexity = 5.0
    k = int(3 * perplexity + 1)
    dist, idx = NearestNeighbors(n_neighbors=k).fit(X).kneighbors()
    kw = dict(perplexity=perplexity, random_state=0, init="random", max_iter=250)
    a = embed(X, "tsne", pca_dims=None, **kw)
    b = embed(None, "tsne", precomputed=(idx, dist), **kw)
    c = embed(None, "tsne", precomputed=sp.csr_matrix(
        (dist.ravel(), (np.repeat(np.arange(len(X)), k), idx.ravel())), shape=(len(X), len(X))), **kw)
    np.testing.assert_allclose(a, b, atol=1e-8)
    np.testing.assert_allclose(a, c, atol=1e-8)


def test_similarity_lists_become_one_minus_s(rng):
    X, _ = _blobs(rng, n_per=20)
    dist, idx = NearestNeighbors(n_neighbors=6).fit(X).kneighbors()
    sim = 1.0 - dist / (dist.max() * 1.01)
    # put each object itself first (as some similarity lists do) and a missing (-1) entry
    idx_s = np.hstack([np.arange(len(X))[:, None], idx])
    sim_s = np.hstack([np.ones((len(X), 1)), sim])
    sim_s[0, -1], idx_s[0, -1] = 0.0, -1
    i2, d2 = knn_from_precomputed((idx_s, sim_s))
    # self dropped everywhere; row 0 lost one entry and is padded, so the others keep all 6
    assert i2.shape == (len(X), 6)
    np.testing.assert_array_equal(i2[1:], idx[1:])
    np.testing.assert_allclose(d2[1:], 1.0 - sim[1:])
    np.testing.assert_array_equal(i2[0, :5], idx[0, :5])
    assert d2[0, 5] == 1.0 and i2[0, 5] not in set(idx[0, :5]) | {0}  # padding: no similarity


def test_one_sparse_row_does_not_shrink_every_neighbourhood(rng, caplog):
    X, _ = _blobs(rng, n_per=20)
    dist, idx = NearestNeighbors(n_neighbors=8).fit(X).kneighbors()
    sim = 1.0 - dist / (dist.max() * 1.01)
    idx[7, 2:], sim[7, 2:] = -1, 0.0  # a weird object with only 2 similar objects
    with caplog.at_level("WARNING"):
        i2, d2 = knn_from_precomputed((idx, sim))
    assert i2.shape == (len(X), 8)
    assert "padded" in caplog.text
    assert len(set(i2[7].tolist())) == 8 and 7 not in i2[7]
    emb = embed(X, method="tsne", precomputed=(idx, sim), random_state=0, perplexity=2)
    assert np.all(np.isfinite(emb.embedding_ if hasattr(emb, "embedding_") else np.asarray(emb)))


class _FakeForest:
    """Stands in for a fitted URF: most_similar(k) -> (indices, similarities), most similar first."""

    def __init__(self, X):
        self.X = X

    def most_similar(self, k):
        d, i = NearestNeighbors(n_neighbors=k).fit(self.X).kneighbors()
        return i, np.exp(-d)


def test_embed_from_model_with_most_similar(rng):
    X, labels = _blobs(rng, n_per=30)
    e = embed(None, "tsne", precomputed=_FakeForest(X), n_neighbors=16, perplexity=5, random_state=0,
              max_iter=250)
    # the three blobs stay apart: each point's nearest embedded neighbour has its label
    _, nn = NearestNeighbors(n_neighbors=2).fit(e).kneighbors(e)
    assert np.mean(labels[nn[:, 1]] == labels) > 0.95


def test_umap_receives_knn_lists_with_self_first(rng, monkeypatch):
    """What embed hands to umap.UMAP for a precomputed graph (UMAP's own numba run is too slow for a unit test)."""
    umap = pytest.importorskip("umap")
    seen = {}

    class FakeUMAP:
        def __init__(self, **kw):
            seen.update(kw)

        def fit_transform(self, X):
            seen["X"] = X
            return np.zeros((X.shape[0], seen["n_components"]))

    monkeypatch.setattr(umap, "UMAP", FakeUMAP)
    X, _ = _blobs(rng, n_per=10)
    dist, idx = NearestNeighbors(n_neighbors=6).fit(X).kneighbors()
    out = embed(None, "umap", precomputed=(idx, dist), n_neighbors=15, random_state=0, progress=False)
    assert out.shape == (30, 2)
    knn_idx, knn_dist, _ = seen["precomputed_knn"]
    assert seen["n_neighbors"] == 7 and seen["metric"] == "precomputed"
    np.testing.assert_array_equal(knn_idx[:, 0], np.arange(30))
    np.testing.assert_array_equal(knn_idx[:, 1:], idx)
    np.testing.assert_allclose(knn_dist[:, 1:], dist, rtol=1e-6)
    G = seen["X"]
    assert G.shape == (30, 30) and abs(G - G.T).max() == 0 and G.diagonal().max() == 0


def test_tsne_of_random_forest_similarity(rng):
    """Reis et al. (2018) style: t-SNE of the URF k-most-similar lists, d = 1 - S (no N x N matrix)."""
    outliers = pytest.importorskip("serendip.outliers")
    X, labels = _blobs(rng, n_per=40, d=4)
    urf = outliers.UnsupervisedRandomForest(n_estimators=60, random_state=0, n_jobs=1, progress=False).fit(X)
    kw = dict(perplexity=5, random_state=0, max_iter=300)
    e = embed(None, "tsne", precomputed=urf, n_neighbors=16, **kw)
    assert e.shape == (120, 2)
    idx, sim = urf.most_similar(16)
    np.testing.assert_allclose(e, embed(None, "tsne", precomputed=(idx, 1.0 - sim), precomputed_kind="distance",
                                        **kw))
    # the map keeps the forest's notion of similarity: 1-NN label purity in the map is at least the
    # purity of the forest's own 16 most-similar lists (measured 0.86 vs 0.73)
    _, nn = NearestNeighbors(n_neighbors=2).fit(e).kneighbors(e)
    list_purity = np.mean(labels[idx] == labels[:, None])
    assert np.mean(labels[nn[:, 1]] == labels) >= list_purity > 0.6


@pytest.mark.slow
@pytest.mark.slow  # ~20 s of numba compilation on a fresh machine
def test_umap_real_run_on_precomputed_knn(rng):
    pytest.importorskip("umap")
    X, labels = _blobs(rng, n_per=40)
    dist, idx = NearestNeighbors(n_neighbors=10).fit(X).kneighbors()
    e = embed(None, "umap", precomputed=(idx, dist), n_neighbors=10, random_state=0, n_epochs=60,
              progress=False)
    _, nn = NearestNeighbors(n_neighbors=2).fit(e).kneighbors(e)
    assert np.mean(labels[nn[:, 1]] == labels) > 0.95


def test_umap_missing_names_the_extra(monkeypatch, rng):
    import builtins

    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "umap" or name.startswith("umap."):
            raise ImportError("no umap")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match=r"serendip\[umap\]"):
        embed(rng.normal(size=(30, 3)), "umap")


def test_large_n_tsne_falls_back_with_a_warning(rng, caplog, monkeypatch):
    import sys

    emb = sys.modules["serendip.explore.embed"]

    calls = {}
    monkeypatch.setattr(emb, "_umap_installed", lambda: True)
    monkeypatch.setattr(emb, "_umap", lambda X, knn, *a, **k: calls.setdefault("umap", np.zeros((len(X), 2))))
    X = rng.normal(size=(120, 3))
    with caplog.at_level("WARNING", logger="serendip"):
        out = embed(X, "tsne", max_tsne=100)
    assert "umap" in calls and out.shape == (120, 2)
    assert "falling back to UMAP" in caplog.text
    with pytest.raises(ValueError, match="too slow"):
        embed(X, "tsne", max_tsne=100, large_n="error")
    # without UMAP: t-SNE still runs, on the first pca_dims principal components, with a warning
    seen = {}
    monkeypatch.setattr(emb, "_umap_installed", lambda: False)

    def fake_tsne(X, knn, *a, **k):
        seen["shape"] = X.shape
        return np.zeros((len(X), 2))

    monkeypatch.setattr(emb, "_tsne", fake_tsne)
    caplog.clear()
    with caplog.at_level("WARNING", logger="serendip"):
        embed(rng.normal(size=(120, 30)), "tsne", max_tsne=100, pca_dims=5)
    assert seen["shape"] == (120, 5)
    assert "serendip[umap]" in caplog.text


def test_embed_bad_input(rng):
    X = rng.normal(size=(20, 3))
    X[4, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN.*row 4"):
        embed(X, "pca")
    with pytest.raises(ValueError, match="unknown embedding method"):
        embed(rng.normal(size=(20, 3)), "mds")
    with pytest.raises(ValueError, match="n_neighbors=15 needs more than 15 objects"):
        embed(rng.normal(size=(10, 3)), "umap", n_neighbors=15)
    with pytest.raises(ValueError, match="perplexity"):
        embed(rng.normal(size=(10, 3)), "tsne", perplexity=30)
    with pytest.raises(ValueError, match=r"must be square \(N, N\)"):
        embed(None, "tsne", precomputed=sp.random(10, 12, density=0.5, format="csr"))
    with pytest.raises(ValueError, match="describes 12 objects but X has 10"):
        embed(rng.normal(size=(10, 3)), "tsne", precomputed=sp.random(12, 12, density=0.5, format="csr"))
    with pytest.raises(ValueError, match="two \\(N, k\\) arrays"):
        embed(None, "tsne", precomputed=(np.zeros((10, 4), int), np.zeros((10, 3))))
    with pytest.raises(ValueError, match="needs features"):
        embed(rng.normal(size=(10, 3)), "pca", precomputed=(np.zeros((10, 4), int), np.zeros((10, 4))))


@pytest.mark.shared_data
def test_pyhammer_embedding_orders_spectral_types(shared_data):
    """Spectral types O5..L6 lie in order along the main axis of the embedding.

    PCA of all 228 median-normalised templates: |Spearman rho| of the main axis with the numeric
    type > 0.95 (measured 0.993). t-SNE is checked on the solar-metallicity subset (one template per
    type; measured 0.996): on all 228 t-SNE bends the sequence into a curve and the main-axis rho
    drops to ~0.86, so a straight-axis test there would be the wrong test.
    """
    from astropy.table import Table
    from scipy.stats import spearmanr

    folder = shared_data / "pyhammer_stellar_templates"
    assert "spectral type" in (folder / "provenance.txt").read_text()
    with np.load(folder / "pyhammer_templates.npz", allow_pickle=False) as z:
        flux = z["flux"].astype(float)
        sptype = z["sptype_num"]
    meta = Table.read(folder / "pyhammer_templates_meta.csv", format="ascii.csv")
    feh = np.ma.filled(np.ma.asarray(meta["feh"], dtype=float), np.nan)
    assert np.array_equal(np.asarray(meta["sptype_num"]), sptype)
    flux /= np.median(flux, axis=1, keepdims=True)

    def main_axis_rho(e, t):
        c = e - e.mean(axis=0)
        axis = np.linalg.svd(c, full_matrices=False)[2][0]
        return abs(spearmanr(c @ axis, t)[0])

    rho_pca = main_axis_rho(embed(flux, "pca"), sptype)
    solar = np.isnan(feh) | (feh == 0)
    rho_tsne = main_axis_rho(embed(flux[solar], "tsne", perplexity=10, random_state=0, max_iter=500),
                             sptype[solar])
    print(f"PyHammer main-axis |rho|: PCA (228) {rho_pca:.3f}, t-SNE (solar, {solar.sum()}) {rho_tsne:.3f}")
    assert rho_pca > 0.95
    assert rho_tsne > 0.9


# ---------------------------------------------------------------------------------- cluster
@pytest.mark.parametrize("method", ["hdbscan", "kmeans", "gmm", "agglomerative"])
def test_cluster_recovers_blobs(method, rng):
    from sklearn.metrics import adjusted_rand_score

    X, truth = _blobs(rng)
    res = cluster(X, method, n_clusters=3, min_cluster_size=10, random_state=0)
    assert isinstance(res, ClusterResult)
    assert res.labels_.shape == (180,)
    keep = res.labels_ >= 0
    assert keep.mean() > 0.8
    assert adjusted_rand_score(truth[keep], res.labels_[keep]) > 0.9
    s = res.summary
    assert int(np.sum(s["size"])) == 180
    assert res.n_clusters == 3
    # typical members: closest to the centroid, checked against a plain loop
    for row in s[s["cluster"] >= 0]:
        members = np.flatnonzero(res.labels_ == row["cluster"])
        c = X[members].mean(axis=0)
        best = members[np.argmin([np.sum((X[i] - c) ** 2) for i in members])]
        assert row["typical_index"][0] == best
        assert row["typical_ids"].split(",")[0] == str(best)


def test_cluster_median_spectra_ignore_masked_pixels(rng):
    from serendip.spectra import Spectra

    X, truth = _blobs(rng, n_per=20, d=3)
    flux = np.where(truth[:, None] == 0, 1.0, 2.0) + np.zeros((60, 10))
    flux[truth == 2] = 5.0
    mask = np.zeros_like(flux, dtype=bool)
    flux[0, 3], mask[0, 3] = 1000.0, True  # a masked spike must not move the median
    s = Spectra(np.linspace(4000, 4100, 10), flux, mask=mask)
    res = cluster(X, "kmeans", n_clusters=3, spectra=s, random_state=0)
    assert res.median_spectra.shape == (3, 10)
    for row, c in zip(res.median_spectra, res.summary["cluster"]):
        expected = np.median(flux[res.labels_ == c][:, 0])
        np.testing.assert_allclose(row, expected)
    np.testing.assert_allclose(res.wavelength, s.wavelength.value)
    tab = res.to_table()
    assert list(tab.colnames[:2]) == ["id", "cluster"] and tab.meta["step"] == "cluster"


def test_cluster_bad_input(rng):
    X = rng.normal(size=(20, 2))
    with pytest.raises(ValueError, match="unknown clustering method"):
        cluster(X, "dbscan2")
    with pytest.raises(ValueError, match="cannot make 30 clusters from 20 objects"):
        cluster(X, "kmeans", n_clusters=30)
    X[3, 0] = np.inf
    with pytest.raises(ValueError, match=r"NaN or infinite.*row 3"):
        cluster(X, "kmeans")


# ---------------------------------------------------------------------------------- compare
def _planted_data(rng, n=400):
    X = rng.normal(size=(n, 4))
    kinds = np.array(["normal"] * n, dtype=object)
    X[:8] += 7.0
    kinds[:8] = "far"
    X[8:16, 0] += 4.0
    kinds[8:16] = "shifted"
    return X, kinds.astype(str)


def test_compare_detectors_table_matches_plain_metrics(rng):
    from sklearn.metrics import roc_auc_score

    X, kinds = _planted_data(rng)
    tab, scores = compare_detectors(X, kinds, detectors=("iforest", "knn"), k=10, random_state=0,
                                    return_scores=True, progress=False)
    assert set(tab["label_kind"]) == {"all", "far", "shifted"}
    assert len(tab) == 6
    assert tab.meta["score_convention"] == "higher = weirder"
    for row in tab:
        w = scores[row["detector"]]
        if row["label_kind"] == "all":
            ev, pos = np.ones(len(X), bool), kinds != "normal"
        else:
            ev = (kinds == "normal") | (kinds == row["label_kind"])
            pos = kinds == row["label_kind"]
        assert row["n_positive"] == pos.sum() and row["n_evaluated"] == ev.sum()
        assert row["roc_auc"] == pytest.approx(roc_auc_score(pos[ev], w[ev]))
        top = np.argsort(-w[ev])[:10]
        assert row["precision_at_k"] == pytest.approx(pos[ev][top].mean())
        assert row["recall_at_k"] == pytest.approx(pos[ev][top].sum() / pos.sum())
        assert row["fit_seconds"] >= 0
    far = tab[(tab["label_kind"] == "far")]
    assert np.all(far["roc_auc"] > 0.99)


def test_compare_detectors_label_forms(rng):
    X, kinds = _planted_data(rng, n=200)
    t_bool = compare_detectors(X, kinds != "normal", detectors=("knn",), progress=False)
    assert list(t_bool["label_kind"]) == ["all"]
    t_dict = compare_detectors(X, {"far": kinds == "far"}, detectors=("knn",), progress=False)
    assert list(t_dict["label_kind"]) == ["far"]
    with pytest.raises(ValueError, match="labels have shape"):
        compare_detectors(X, kinds[:10], detectors=("knn",), progress=False)


def test_compare_detectors_takes_numeric_flags(rng):
    """0.0/1.0 floats (a FITS or pandas flag column) are flags, as 0/1 integers and booleans are."""
    X, kinds = _planted_data(rng, n=200)
    flags = kinds != "normal"
    ref = compare_detectors(X, flags, detectors=("knn",), progress=False)
    for form in (flags.astype(float), flags.astype(np.int16)):
        t = compare_detectors(X, form, detectors=("knn",), progress=False)
        assert list(t["label_kind"]) == ["all"] and t["roc_auc"][0] == ref["roc_auc"][0]
    t = compare_detectors(X, {"far": (kinds == "far").astype(float)}, detectors=("knn",), progress=False)
    assert list(t["label_kind"]) == ["far"]
    half = flags.astype(float)
    half[3] = 0.5
    with pytest.raises(ValueError, match="0/1 flags.*index 3 is 0.5"):
        compare_detectors(X, half, detectors=("knn",), progress=False)
    half[3] = np.nan
    with pytest.raises(ValueError, match="0/1 flags"):
        compare_detectors(X, {"far": half}, detectors=("knn",), progress=False)


def test_compare_detectors_on_synthetic_survey():
    """The table that feeds the report, on the built-in synthetic survey (small n)."""
    datasets = pytest.importorskip("serendip.datasets")
    survey = datasets.make_survey(300, seed=5, progress=False)
    dets = ("iforest", "lof", "knn", "pca", "ensemble", "urf")
    tab = compare_detectors(survey.spectra, survey.truth, detectors=dets, k=20, random_state=0, max_pixels=400,
                            params={"urf": {"n_estimators": 50, "n_repeats": 1}}, progress=False)
    kinds = set(np.asarray(survey.truth["anomaly_kind"])) - {"normal"}
    assert set(tab["label_kind"]) == kinds | {"all"}
    assert len(tab) == len(dets) * (len(kinds) + 1)
    assert np.all(np.isfinite(tab["roc_auc"]))
    assert tab.meta["n_objects"] == 300
    # iforest finds the planted anomalies well above chance on this survey
    auc_all = tab[(tab["detector"] == "iforest") & (tab["label_kind"] == "all")]["roc_auc"][0]
    assert auc_all > 0.7


# ---------------------------------------------------------------------------- correlations
def test_score_correlations_flags_noise(rng):
    from astropy.table import Table
    from scipy.stats import spearmanr

    n = 300
    snr = rng.uniform(2, 40, n)
    z = rng.uniform(0, 0.3, n)
    noisy = 1.0 / snr + 0.01 * rng.normal(size=n)
    clean = rng.normal(size=n)
    meta = Table({"id": np.arange(n).astype(str), "snr": snr, "z": z, "class": ["GALAXY"] * n})
    meta["z"] = np.ma.masked_array(z, mask=np.arange(n) < 10)
    tab = score_correlations({"noisy": noisy, "clean": clean}, meta, columns=("snr", "z", "class", "nope"))
    row = tab[(tab["score"] == "noisy") & (tab["column"] == "snr")][0]
    assert row["spearman_rho"] == pytest.approx(spearmanr(noisy, snr)[0])
    assert row["flag"] == "mostly measuring noise"
    zrow = tab[(tab["score"] == "noisy") & (tab["column"] == "z")][0]
    assert zrow["n"] == n - 10
    assert not tab[(tab["score"] == "clean") & (tab["column"] == "snr")][0]["flag"]
    assert set(tab.meta["skipped_columns"]) == {"class", "nope"}
    with pytest.raises(ValueError, match="has 5 values but the metadata has 300"):
        score_correlations(np.zeros(5), meta)


def test_run_cluster_keeps_dots_in_the_output_stem(tmp_path, rng):
    from serendip.explore import run_cluster

    X = np.vstack([rng.normal(0, 0.3, (40, 3)), rng.normal(5, 0.3, (40, 3))])
    _, written = run_cluster(X, tmp_path / "run.v2.fits", method="kmeans", n_clusters=2, png=False)
    assert written["summary"].name == "run.v2_summary.fits"
    from serendip._io import read_table

    assert "typical_index" in read_table(written["summary"]).colnames  # FITS keeps the 2-D column


# ----------------------------------------------------------------------------- review fixes (2026-11-26)
def _blobs2d(rng, n=60):
    centres = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
    lab = np.arange(n) % 3
    return centres[lab] + rng.normal(0, 0.5, (n, 2)), lab


def test_dense_and_sparse_similarities_become_one_minus_s(rng):
    """A similarity matrix was read as distances: every object's neighbours were its least similar."""
    X, lab = _blobs2d(rng)
    D = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    S = np.exp(-D)  # 1 on the diagonal, the largest in each row
    ref_idx, _ = knn_from_precomputed(1.0 - S, n_neighbors=5)
    for kind in ("similarity", "auto"):
        idx, dist = knn_from_precomputed(S, n_neighbors=5, precomputed_kind=kind)
        np.testing.assert_array_equal(idx, ref_idx)
        assert np.all(lab[idx] == lab[:, None])
    sparse = sp.csr_matrix(np.where(S > 0.05, S, 0.0))
    idx, dist = knn_from_precomputed(sparse, precomputed_kind="similarity")
    assert np.all(lab[idx[:, :3]] == lab[:, None]) and np.all(np.diff(dist, axis=1) >= 0)
    with pytest.raises(ValueError, match="cannot tell whether the precomputed matrix"):
        knn_from_precomputed(S + np.eye(len(S)) * -0.5, n_neighbors=5)


def test_tsne_from_a_dense_matrix_gets_the_neighbours_its_perplexity_needs(rng, caplog):
    import logging

    X, _ = _blobs2d(rng, n=120)
    D = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    with caplog.at_level(logging.INFO, logger="serendip.explore"):
        e = embed(precomputed=D, method="tsne", perplexity=20, random_state=0)
    assert e.shape == (120, 2) and "using perplexity" not in caplog.text  # 61 neighbours were asked for
    e2 = embed(D, method="tsne", metric="precomputed", random_state=0)  # PCA init is impossible on distances
    assert e2.shape == (120, 2)
    g = embed(X, method="tsne", random_state=np.random.default_rng(1))  # a Generator is accepted
    assert g.shape == (120, 2)


def test_masked_values_and_second_id_columns_are_not_features(tmp_path, rng):
    from astropy.table import Table

    from serendip.explore.workflows import load_input

    X = np.ma.masked_array(rng.normal(size=(10, 3)), mask=np.zeros((10, 3), bool))
    X[0, 1] = np.ma.masked
    X.data[0, 1] = -9999.0
    with pytest.raises(ValueError, match="NaN or infinite value.*row 0 column 1"):
        embed(X, method="pca")
    tab = Table({"objid": np.arange(10) + 1237648720693755918, "specobjid": np.arange(10) * 10**17,
                 "g_r": rng.normal(size=10), "u_g": rng.normal(size=10)})
    tab.write(tmp_path / "t.ecsv")
    assert list(load_input(tmp_path / "t.ecsv").columns) == ["g_r", "u_g"]


def test_run_embed_with_one_component_or_many_categories_writes_what_it_can(tmp_path, rng, caplog):
    import logging

    from astropy.table import Table

    from serendip.explore import run_embed

    n = 50
    tab = Table({"id": np.arange(n).astype(str), "a": rng.normal(size=n), "b": rng.normal(size=n),
                 "kind": np.array([f"k{i % 25}" for i in range(n)])})
    tab.write(tmp_path / "t.ecsv")
    with caplog.at_level(logging.WARNING, logger="serendip.explore"):
        out, png = run_embed(tmp_path / "t.ecsv", tmp_path / "e1.fits", method="pca", n_components=1,
                             columns=["a", "b"])
    assert png is None and "no PNG" in caplog.text and len(out) == n
    out, png = run_embed(tmp_path / "t.ecsv", tmp_path / "e2.fits", method="pca", columns=["a", "b"],
                         color_by="kind")
    assert png is not None and png.exists()  # 25 categories: the largest 19 and "other"


def test_a_distance_matrix_with_round_off_on_its_diagonal_is_read_as_distances(rng):
    from scipy.spatial.distance import cdist

    X = rng.normal(size=(40, 5))
    D = cdist(X, X, "cosine")
    assert np.abs(np.diagonal(D)).max() > 0  # the round-off the check must tolerate
    idx, _ = knn_from_precomputed(D, n_neighbors=5)
    np.testing.assert_array_equal(idx[:, 0], np.argsort(D + np.eye(40) * 9, axis=1)[:, 0])


def test_agglomerative_on_separate_groups_builds_no_dense_block():
    """A kNN graph split into pieces made scikit-learn compute every distance between the pieces
    ((N/2)^2 for two halves: 1.8 GB at N = 30,000); the graph is now joined first."""
    import warnings

    from serendip.explore.cluster import connected_knn_graph
    from scipy.sparse.csgraph import connected_components

    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 1, (2700, 3)), rng.normal(40, 1, (2600, 3)), rng.normal(-40, 1, (30, 3))]
    graph = connected_knn_graph(X, 10)
    assert connected_components(graph, directed=False)[0] == 1
    assert graph.nnz <= 2 * 10 * len(X) + 4  # the kNN edges plus one link per extra piece, both ways
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-learn warns before its dense repair
        res = cluster(X, method="agglomerative", n_clusters=3)
    assert sorted(np.bincount(res.labels_)) == [30, 2600, 2700]


def test_connected_graph_keeps_duplicate_objects_joined():
    """Zero distances between repeated rows were dropped as non-edges: every duplicate became a piece of
    its own and joining the pieces recursed without end (Ward on integer-valued data hung)."""
    from serendip.explore.cluster import connected_knn_graph
    from scipy.sparse.csgraph import connected_components

    X = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0], [9.0, 0.0]]), 12, axis=0)
    assert connected_components(connected_knn_graph(X, 10), directed=False)[0] == 1
    Xi = np.random.default_rng(0).integers(0, 5, (6000, 2)).astype(float)
    assert cluster(Xi, method="agglomerative", n_clusters=3).n_clusters == 3


def test_hdbscan_neighbours_are_capped(monkeypatch):
    """min_samples defaulted to min_cluster_size = N/200: an N x N/200 array (555 MB at N = 60,000)."""
    import sklearn.cluster

    seen = {}
    real = sklearn.cluster.HDBSCAN

    def spy(**kwargs):
        seen.update(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(sklearn.cluster, "HDBSCAN", spy)
    X = np.random.default_rng(0).normal(size=(12000, 2))
    cluster(X)
    assert seen["min_cluster_size"] == 60 and seen["min_samples"] == 50
    cluster(X[:2000], min_samples=7)
    assert seen["min_samples"] == 7


def test_dense_precomputed_matrix_is_read_in_row_blocks():
    """A user's N x N matrix was copied two or three times more (|D|, 1 - S, clip, copy, a full
    argpartition); now only a block of rows is converted at a time, with the same neighbours."""
    import tracemalloc

    rng = np.random.default_rng(0)
    n = 2500
    X = rng.normal(size=(n, 4))
    sq = (X ** 2).sum(axis=1)
    D = np.sqrt(np.clip(sq[:, None] + sq[None, :] - 2 * X @ X.T, 0, None))
    np.fill_diagonal(D, 0.0)
    S = 1.0 - D / D.max()
    for matrix, kind in ((D, "distance"), (S, "similarity")):
        tracemalloc.start()
        try:
            idx, dist = knn_from_precomputed(matrix, n_objects=n, n_neighbors=7)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 0.5 * matrix.nbytes, kind
        plain = (D if kind == "distance" else np.clip(1.0 - S, 0, None)).copy()
        np.fill_diagonal(plain, np.inf)
        want = np.argsort(plain, axis=1, kind="stable")[:, :7]
        assert np.array_equal(idx, want)
        assert np.allclose(dist, np.take_along_axis(plain, want, axis=1))
