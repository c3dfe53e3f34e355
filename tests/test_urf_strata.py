"""S/N strata: faithful URF calls low-S/N normal spectra weird; one forest per S/N bin fixes that."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from serendip.outliers import UnsupervisedRandomForest
from serendip.spectra import Spectra


def rest_frame_features(spectra, npix=250):
    """Rest-frame flux on a common log grid, masked pixels interpolated, divided by the median."""
    from serendip.spectra.resample import make_grid, resample

    rest = resample(spectra, make_grid("log", 3750.0, 7300.0, npix=npix), z="z")
    X = rest.flux.astype(np.float64)
    bad = rest.mask | ~np.isfinite(X)
    x = np.arange(X.shape[1])
    for i in np.flatnonzero(bad.any(axis=1)):
        X[i, bad[i]] = np.interp(x[bad[i]], x[~bad[i]], X[i, ~bad[i]])
    return (X / np.median(X, axis=1, keepdims=True)).astype(np.float32), rest.wavelength.value


@pytest.fixture(scope="module")
def survey():
    from serendip.datasets import make_survey

    s = make_survey(800, seed=0, progress=False)
    X, wave = rest_frame_features(s.spectra)
    snr = np.asarray(s.spectra.meta["snr"], dtype=float)
    normal = ~np.asarray(s.truth["is_anomaly"], dtype=bool)
    return X, wave, snr, normal


def test_strata_remove_the_snr_bias_on_the_synthetic_survey(survey):
    X, _, snr, normal = survey
    kw = dict(n_estimators=40, random_state=0, n_jobs=2, progress=False)
    faithful = UnsupervisedRandomForest(**kw).fit(X)
    strata = UnsupervisedRandomForest(snr_strata=4, **kw).fit(X, snr=snr)
    rho_f = spearmanr(faithful.weirdness_[normal], snr[normal])[0]
    rho_s = spearmanr(strata.weirdness_[normal], snr[normal])[0]
    # faithful: the noisier a normal spectrum, the weirder it looks
    assert rho_f < -0.25
    # strata: the correlation drops by more than half
    assert abs(rho_s) < 0.5 * abs(rho_f)
    low = snr < np.quantile(snr, 0.25)
    top_f = faithful.rank_ <= 80
    top_s = strata.rank_ <= 80
    frac_f = np.mean(low[top_f & normal])
    frac_s = np.mean(low[top_s & normal])
    assert frac_f > 0.45 and frac_s < frac_f - 0.15
    # every object was scored by the forest of its own stratum
    assert strata.stratum_.max() == 3 and len(strata.strata_models_) == 4
    for s, model in enumerate(strata.strata_models_):
        rows = np.flatnonzero(strata.stratum_ == s)
        assert np.allclose(strata.raw_weirdness_[rows], model.weirdness_)


def test_strata_api_meta_snr_and_scoring(rng):
    X = rng.normal(size=(150, 10))
    snr = rng.uniform(2, 40, size=150)
    spec = Spectra(np.linspace(4000, 5000, 10), X, meta={"snr": snr})
    kw = dict(n_estimators=8, random_state=0, progress=False)
    a = UnsupervisedRandomForest(snr_strata=[10.0, 20.0], **kw).fit(spec)
    b = UnsupervisedRandomForest(snr_strata=[10.0, 20.0], **kw).fit(X.astype(np.float32), snr=snr)
    assert np.allclose(a.weirdness_, b.weirdness_)
    assert np.array_equal(a.stratum_, np.searchsorted([10.0, 20.0], snr, side="right"))
    # re-scoring the training set reproduces the (z-scored) training weirdness
    assert np.allclose(a.score_samples(X, snr=snr), a.weirdness_, atol=1e-12)
    # similarity is zero across strata; twins stay within the stratum
    idx, sims = a.most_similar(k=3)
    ok = idx >= 0
    assert np.all(a.stratum_[idx[ok]] == np.repeat(a.stratum_[:, None], 3, axis=1)[ok])
    S = a.similarity([0, 1], np.arange(150))
    assert np.all(S[0, a.stratum_ != a.stratum_[0]] == 0)
    raw = UnsupervisedRandomForest(snr_strata=[10.0, 20.0], strata_scale="none", **kw).fit(spec)
    assert np.allclose(raw.weirdness_, raw.raw_weirdness_)
    with pytest.raises(ValueError, match="snr"):
        UnsupervisedRandomForest(snr_strata=3, **kw).fit(X)
    with pytest.raises(ValueError, match="stratum"):
        UnsupervisedRandomForest(snr_strata=[100.0], **kw).fit(X, snr=snr)
    with pytest.raises(ValueError, match="snr"):
        a.score_samples(X)


def test_a_feature_constant_inside_one_stratum_is_accepted(rng):
    """A line flag that is 0 for every low-S/N object made the stratum's fit refuse the whole data set."""
    X = rng.normal(size=(120, 4))
    snr = np.linspace(1, 20, 120)
    X[:, 3] = (snr > 12) * rng.normal(size=120)  # constant (0) in the low-S/N stratum only
    kw = dict(n_estimators=10, random_state=0, progress=False)
    m = UnsupervisedRandomForest(snr_strata=[12.0], **kw).fit(X, snr=snr)
    assert np.isfinite(m.weirdness_).all() and len(m.strata_models_) == 2
    assert np.allclose(m.score_samples(X, snr=snr), m.weirdness_, atol=1e-12)
    X[:, 2] = 1.0  # constant everywhere is still refused, naming the column of X
    with pytest.raises(ValueError, match="constant .*feature column.*: 2"):
        UnsupervisedRandomForest(snr_strata=[12.0], **kw).fit(X, snr=snr)
