"""The "best" serendip weirdness mode: URF variant "best" rank-averaged with LOF (higher = weirder)."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import LocalOutlierFactor

from serendip.outliers import UnsupervisedRandomForest
from serendip.outliers.urf import best_weirdness, resolve_variant
from serendip.outliers.variants import VARIANTS


def data(n=150, f=8, seed=0):
    """Two correlated clusters, an S/N per object, and one planted outlier (row 0)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(2, f))
    X = base[rng.integers(0, 2, n)] + 0.3 * rng.normal(size=(n, f))
    X[0] = 6.0 * rng.normal(size=f)
    snr = rng.uniform(2.0, 40.0, n)
    return X.astype(np.float32), snr


def rank_fraction(s):
    """Plain empirical CDF: fraction of objects scored at or below each object."""
    s = np.asarray(s, dtype=float)
    return (s[None, :] <= s[:, None]).mean(axis=1)


def test_best_variant_is_the_documented_combination():
    same = UnsupervisedRandomForest(min_samples_leaf=3, **resolve_variant("uniform,snr-strata,knn")).get_params()
    assert UnsupervisedRandomForest(**VARIANTS["best"]).get_params() == same
    assert resolve_variant("best") == {"synthetic": "uniform", "snr_strata": 3, "score_mode": "knn", "score_k": 10,
                                       "min_samples_leaf": 3}


def test_best_weirdness_is_the_rank_average_of_urf_and_lof():
    X, snr = data()
    w, members = best_weirdness(X, snr, n_estimators=20, n_neighbors=10, random_state=4, progress=False,
                                return_members=True, lof_strata=False)
    urf = UnsupervisedRandomForest(20, random_state=4, progress=False, **VARIANTS["best"]).fit(X, snr=snr)
    lof = -LocalOutlierFactor(n_neighbors=10).fit(X.astype(np.float64)).negative_outlier_factor_
    np.testing.assert_allclose(members["urf"], urf.weirdness_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(members["lof"], lof, rtol=1e-10)
    expected = 0.5 * (rank_fraction(urf.weirdness_) + rank_fraction(lof))
    np.testing.assert_allclose(w, expected, rtol=0, atol=1e-12)
    assert w.min() > 0 and w.max() <= 1
    # the planted outlier is the weirdest under both members, so under the ensemble (higher = weirder)
    assert np.argmax(w) == 0 and w[0] == 1.0
    assert np.array_equal(best_weirdness(X, snr, n_estimators=20, n_neighbors=10, random_state=4,
                                         progress=False, lof_strata=False), w)


def test_best_weirdness_fits_lof_within_the_forests_snr_strata_by_default():
    """LOF per S/N tercile, ranked within it; the rank average then removes the noise trend LOF on all objects has."""
    rng = np.random.default_rng(7)
    n, f = 300, 12
    snr = rng.uniform(2.0, 40.0, n)
    X = rng.normal(size=(n, f)) / snr[:, None]  # the same spectrum, with noise falling as S/N rises
    X[0] += 0.8  # one planted outlier at high S/N
    snr[0] = 35.0
    w, members = best_weirdness(X, snr, n_estimators=30, n_neighbors=10, random_state=1, progress=False,
                                return_members=True)
    urf = UnsupervisedRandomForest(30, random_state=1, progress=False, **VARIANTS["best"]).fit(X, snr=snr)
    lof = np.empty(n)
    within = np.empty(n)
    for s in range(3):
        rows = np.flatnonzero(urf.stratum_ == s)
        v = -LocalOutlierFactor(n_neighbors=10).fit(X[rows]).negative_outlier_factor_
        lof[rows] = v
        within[rows] = rank_fraction(v)
    np.testing.assert_allclose(members["lof"], lof, rtol=1e-10)
    np.testing.assert_allclose(w, 0.5 * (rank_fraction(urf.weirdness_) + rank_fraction(within)), rtol=0, atol=1e-12)
    assert np.argmax(w) == 0
    from scipy.stats import spearmanr

    rho_strata = spearmanr(w[1:], snr[1:]).statistic
    rho_all = spearmanr(best_weirdness(X, snr, n_estimators=30, n_neighbors=10, random_state=1, progress=False,
                                       lof_strata=False)[1:], snr[1:]).statistic
    assert rho_all < -0.5 and abs(rho_strata) < 0.5 * abs(rho_all), (rho_strata, rho_all)


def test_lof_within_strata_caps_the_neighbours_by_the_smallest_stratum():
    from serendip.outliers import lof_within_strata

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    strata = np.r_[np.zeros(33, int), np.ones(7, int)]  # 7 objects: at most 3 neighbours
    lof, rank, k = lof_within_strata(X, 20, strata)
    assert k == 3
    expected = -LocalOutlierFactor(n_neighbors=3).fit(X[33:]).negative_outlier_factor_
    np.testing.assert_allclose(lof[33:], expected, rtol=1e-10)
    np.testing.assert_allclose(rank[33:], rank_fraction(expected))
    assert np.all((rank > 0) & (rank <= 1))
    one, _, _ = lof_within_strata(X, 20)  # one stratum: LOF on all objects, 19 neighbours at most
    np.testing.assert_allclose(one, -LocalOutlierFactor(n_neighbors=19).fit(X).negative_outlier_factor_, rtol=1e-10)


def test_best_weirdness_needs_snr():
    X, _ = data(60)
    with pytest.raises(ValueError, match="S/N"):
        best_weirdness(X, None, n_estimators=5, progress=False)


def test_rank_average_is_the_mean_empirical_cdf_with_ties_sharing_the_top_rank():
    from serendip.outliers import rank_average

    a = np.array([0.0, 0.0, 0.0, 5.0, 1.0])  # three tied typical objects share the rank fraction 3/5
    b = np.array([3.0, 1.0, 2.0, 4.0, 0.5])
    np.testing.assert_allclose(rank_average([a, b]), (rank_fraction(a) + rank_fraction(b)) / 2)
    np.testing.assert_allclose(rank_fraction(a)[:3], 0.6)
    assert np.argmax(rank_average([a, b])) == 3  # weirdest in both stays the weirdest
    with pytest.raises(ValueError, match="same length"):
        rank_average([a, b[:4]])
    with pytest.raises(ValueError, match="non-empty"):
        rank_average([])
