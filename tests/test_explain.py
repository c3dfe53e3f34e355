"""explain_weirdness: a planted broad Hα line must be what the explanation points at."""
from __future__ import annotations

import numpy as np
import pytest

from serendip.outliers import UnsupervisedRandomForest, explain_weirdness
from serendip.spectra import Spectra

HALPHA = 6564.61  # vacuum; 6562.8 in air: both well within the 20 Å tolerance


def rest_frame_set(n=160, seed=0, planted=7):
    """Galaxy-like spectra on a rest-frame grid; object ``planted`` gets a broad Hα line."""
    rng = np.random.default_rng(seed)
    wave = np.linspace(4000.0, 7500.0, 500)
    x = (wave - 5500.0) / 1500.0
    slope = rng.normal(0, 0.3, size=(n, 1))
    flux = 1.0 + slope * x[None, :]
    for centre, width in [(4862.7, 4.0), (5008.2, 4.0), (6564.6, 4.0), (6585.3, 4.0), (5176.0, 8.0)]:
        amp = rng.gamma(2.0, 0.15, size=(n, 1)) * (-1 if centre == 5176.0 else 1)
        flux += amp * np.exp(-0.5 * ((wave - centre) / width) ** 2)
    flux += rng.normal(0, 0.05, size=flux.shape)
    sigma = 2500.0 / 2.355 / 3e5 * HALPHA  # FWHM 2500 km/s
    flux[planted] += 0.8 * np.exp(-0.5 * ((wave - HALPHA) / sigma) ** 2)
    meta = {"id": [f"obj{i:03d}" for i in range(n)]}
    return Spectra(wave, flux.astype(np.float32), meta=meta), wave


def test_planted_broad_halpha_is_the_explanation():
    spectra, wave = rest_frame_set()
    model = UnsupervisedRandomForest(80, random_state=0, progress=False).fit(spectra)
    ex = explain_weirdness(model, spectra, 7, k=10)
    assert abs(ex.peak_wavelength - HALPHA) < 20
    # most of the top features sit on the broad wing, not on noise pixels
    assert np.median(np.abs(wave[ex.top_features] - HALPHA)) < 60
    # the residual really is x minus the median of the reported reference objects
    refs = spectra.flux[ex.neighbours].astype(float)
    assert np.allclose(ex.residual, spectra.flux[7] - np.median(refs, axis=0), atol=1e-6)
    assert ex.neighbours.size == 10 and 7 not in ex.neighbours
    # references are normal objects (weirdness at or below the 90th percentile)
    assert np.all(model.weirdness_[ex.neighbours] <= np.quantile(model.weirdness_, 0.9))
    assert ex.id == "obj007"
    tab = ex.to_table()
    assert abs(tab["wavelength"][0] - HALPHA) < 60 and tab.meta["score_convention"] == "higher = weirder"


def test_explain_fits_its_own_model_and_accepts_ids():
    spectra, _ = rest_frame_set(n=120, seed=1, planted=3)
    ex = explain_weirdness(spectra, index="obj003", k=8, n_estimators=60)
    assert ex.index == 3 and abs(ex.peak_wavelength - HALPHA) < 20
    with pytest.raises(KeyError, match="obj999"):
        explain_weirdness(spectra, index="obj999", n_estimators=5)


def test_explain_errors_and_fallback():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(60, 12))
    model = UnsupervisedRandomForest(2, random_state=0, progress=False).fit(X)
    with pytest.raises(ValueError, match="training data"):
        explain_weirdness(model, None, 0)
    with pytest.raises(ValueError, match="fitted on"):
        explain_weirdness(model, X[:, :5], 0)
    with pytest.raises(IndexError):
        explain_weirdness(model, X, 60)
    # with 2 trees most objects share no good leaf: Euclidean fill-ins complete the reference set
    g0 = int(np.flatnonzero(model.n_good_trees_[:, 0] == 0)[0])
    ex = explain_weirdness(model, X, g0, k=5)
    assert ex.n_forest_neighbours == 0 and ex.neighbours.size == 5
    d = np.linalg.norm(X - X[g0], axis=1)
    normal = np.flatnonzero(model.weirdness_ <= np.quantile(model.weirdness_, 0.9))
    normal = normal[normal != g0]
    assert set(ex.neighbours) == set(normal[np.argsort(d[normal])[:5]])


def test_masked_values_in_an_imputed_model_do_not_spoil_the_explanation():
    """One NaN in a normal object made that feature's scatter NaN for every explanation, and the peak NaN."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 8))
    X[:, 1] += X[:, 0]
    X[7, 2] = 9.0  # object 7 is weird at feature 2
    X[5, 3] = np.nan  # one masked value in an ordinary object
    X[7, 6] = np.nan  # and one in the object explained
    m = UnsupervisedRandomForest(40, random_state=0, progress=False, impute=True).fit(X)
    e = explain_weirdness(m, X, 7, smooth=1)
    assert np.all(np.isfinite(e.scatter)) and np.isfinite(e.reference).all()
    assert np.isnan(e.residual[6]) and np.isnan(e.importance[6])  # not measured: not invented
    assert np.isfinite(np.delete(e.importance, 6)).all()
    assert e.peak_feature == 2 and e.top_features[0] == 2 and 6 not in e.top_features[:5]


def test_a_nearly_constant_feature_is_not_the_explanation():
    """Only exactly-zero spreads got the floor: a feature with a 1e-9 spread ranked first."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(150, 30))
    X[:, 5] = 1.0 + 1e-5 * rng.normal(size=150)  # varies, but far below every other feature's spread
    X[7, 20:23] += 6.0
    m = UnsupervisedRandomForest(40, random_state=0, progress=False).fit(X)
    e = explain_weirdness(m, X, 7, smooth=1)
    floor = 1e-3 * np.median(e.scatter)
    assert e.scatter[5] >= 0.99 * floor and e.importance[5] < 0.1  # floored, not 1e-5
    assert set(e.top_features[:3]) == {20, 21, 22}


def test_euclidean_fill_does_not_prefer_mostly_masked_rows():
    from serendip.outliers.explain import _nearest_euclid

    X = np.zeros((10, 10))
    X[3] = 0.1  # the true nearest to x
    X[5:] = 5.0
    X[7] = np.nan  # nothing measured
    X[8, 1:] = np.nan  # one feature measured, far away
    x = np.zeros(10)
    x[0] = 0.05
    got = _nearest_euclid(X, x, np.array([3, 5, 6, 7, 8]), 1)
    assert got.tolist() == [3]
