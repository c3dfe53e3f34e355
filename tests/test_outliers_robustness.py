"""Robustness of the weirdness detectors (higher = weirder): PCA on low-dimensional data, Generators as
random_state, row numbers in S/N-strata errors, silent progress bars, repeated detectors in comparisons."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from serendip.explore import compare_detectors
from serendip.outliers import (IsolationForestDetector, KNNDistanceDetector, PCAReconstructionDetector,
                               RankAverageEnsemble, UnsupervisedRandomForest)


# ---------------------------------------------------------------- 1. PCA keeps fewer than all components
def test_pca_default_on_low_dimensional_data_is_not_rounding_noise(caplog):
    X = np.random.default_rng(0).normal(size=(200, 5))
    with caplog.at_level(logging.WARNING, logger="serendip"):
        det = PCAReconstructionDetector().fit(X)
    assert det.n_components_ == 4
    assert "keeping 4 component(s)" in caplog.text
    # the residual is the variance along the last principal direction: of order 0.1, not 1e-30
    assert det.weirdness_.max() > 0.1
    # and it is that projection, so the ranking means something
    mu = X.mean(axis=0)
    _, _, vt = np.linalg.svd(X - mu, full_matrices=False)
    np.testing.assert_allclose(det.weirdness_, ((X - mu) @ vt[-1]) ** 2 / X.shape[1], rtol=1e-8)


def test_pca_never_keeps_more_components_than_the_data_rank():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(100, 3)) @ rng.normal(size=(3, 6))  # rank 3 in 6 features
    det = PCAReconstructionDetector(n_components=0.999999).fit(X)
    assert det.n_components_ == 2
    assert det.weirdness_.max() > 1e-3
    # an ordinary setting is left as it was
    assert PCAReconstructionDetector(n_components=2).fit(X).n_components_ == 2


def test_default_ensemble_is_the_same_for_float32_and_float64():
    X = np.random.default_rng(0).normal(size=(200, 5))
    w64 = RankAverageEnsemble(random_state=0).fit(X).weirdness_
    w32 = RankAverageEnsemble(random_state=0).fit(X.astype(np.float32)).weirdness_
    np.testing.assert_allclose(w32, w64, atol=1e-6)


# ---------------------------------------------------------------- 2. numpy Generator as random_state
def test_urf_accepts_a_generator_and_is_reproducible_from_its_seed():
    X = np.random.default_rng(0).normal(size=(60, 8))
    kw = dict(n_estimators=10, progress=False)
    a = UnsupervisedRandomForest(random_state=np.random.default_rng(3), **kw).fit(X).weirdness_
    b = UnsupervisedRandomForest(random_state=np.random.default_rng(3), **kw).fit(X).weirdness_
    np.testing.assert_array_equal(a, b)
    snr = np.tile([1.0, 50.0], 30)
    c = UnsupervisedRandomForest(random_state=np.random.default_rng(3), snr_strata=2, **kw).fit(X, snr=snr)
    d = UnsupervisedRandomForest(random_state=np.random.default_rng(3), snr_strata=2, **kw).fit(X, snr=snr)
    np.testing.assert_array_equal(c.weirdness_, d.weirdness_)


@pytest.mark.parametrize("make", [
    lambda g: RankAverageEnsemble(random_state=g),
    lambda g: IsolationForestDetector(n_estimators=20, random_state=g),
    lambda g: PCAReconstructionDetector(n_components=2, random_state=g),
])
def test_baselines_accept_a_generator(make):
    X = np.random.default_rng(0).normal(size=(60, 8))
    a = make(np.random.default_rng(5)).fit(X).weirdness_
    b = make(np.random.default_rng(5)).fit(X).weirdness_
    assert a.shape == (60,) and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- 3. S/N strata name the right row
def test_strata_nan_error_names_the_row_of_x_and_its_id():
    X = np.random.default_rng(0).normal(size=(60, 8))
    X[37, 2] = np.nan
    snr = np.tile([1.0, 50.0], 30)  # two strata of interleaved rows: row 37 is the 19th of its stratum
    urf = UnsupervisedRandomForest(n_estimators=10, random_state=0, progress=False, snr_strata=2)
    with pytest.raises(ValueError, match=r"row 37 \(id '37'\) column 2"):
        urf.fit(X, snr=snr)


def test_strata_nan_error_names_the_id_of_a_spectra_object():
    from astropy.table import Table

    from serendip.spectra import Spectra

    flux = np.random.default_rng(0).normal(10.0, 1.0, size=(60, 8))
    flux[37, 2] = np.nan
    meta = Table({"id": [f"obj{i}" for i in range(60)], "snr": np.tile([1.0, 50.0], 30)})
    spectra = Spectra(np.linspace(4000.0, 5000.0, 8), flux, meta=meta)
    urf = UnsupervisedRandomForest(n_estimators=10, random_state=0, progress=False, snr_strata=2)
    with pytest.raises(ValueError, match=r"row 37 \(id 'obj37'\) column 2"):
        urf.fit(spectra)


# ---------------------------------------------------------------- 4. progress=False silences every bar
def test_ensemble_progress_false_silences_its_random_forest(capsys):
    X = np.random.default_rng(0).normal(size=(60, 8))
    urf = UnsupervisedRandomForest(n_estimators=10)  # progress=True, given as an instance
    RankAverageEnsemble(detectors=("urf", "iforest", urf), random_state=0, progress=False).fit(X)
    err = capsys.readouterr().err
    assert "URF" not in err and "it/s" not in err and err == ""
    assert urf.progress is True  # the caller's instance is not changed


def test_ensemble_progress_defaults_to_showing_bars(capsys):
    X = np.random.default_rng(0).normal(size=(60, 8))
    RankAverageEnsemble(detectors=("urf",), random_state=0).fit(X)
    assert "URF fit" in capsys.readouterr().err


def test_score_samples_dask_on_strata_model_shows_no_bars(capsys):
    pytest.importorskip("dask")
    from serendip.outliers import score_samples_dask

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 8))
    snr = rng.uniform(1, 10, 60)
    model = UnsupervisedRandomForest(n_estimators=10, random_state=0, snr_strata=2).fit(X, snr=snr)
    capsys.readouterr()
    w = score_samples_dask(model, X, chunk_rows=20, snr=snr).compute(scheduler="sync")
    assert capsys.readouterr().err == ""
    assert model.progress and all(m.progress for m in model.strata_models_)  # caller's model untouched
    np.testing.assert_allclose(w, model.score_samples(X, snr=snr))


# ---------------------------------------------------------------- 5. compare_detectors with repeated classes
def test_compare_detectors_keeps_two_instances_of_one_class():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 5))
    y = np.zeros(80, dtype=bool)
    y[:5] = True
    X[:5] += 4
    a, b = KNNDistanceDetector(n_neighbors=2), KNNDistanceDetector(n_neighbors=30)
    tab, scores = compare_detectors(X, y, detectors=[a, b, "knn"], progress=False, return_scores=True)
    assert list(tab["detector"]) == ["knn", "knn-2", "knn-3"]
    assert list(scores) == ["knn", "knn-2", "knn-3"]
    params = tab.meta["detector_params"]
    assert params["knn"]["n_neighbors"] == 2 and params["knn-2"]["n_neighbors"] == 30
    assert params["knn-3"]["n_neighbors"] == 10
    np.testing.assert_allclose(scores["knn"], KNNDistanceDetector(n_neighbors=2).fit(X).weirdness_)
    np.testing.assert_allclose(scores["knn-2"], KNNDistanceDetector(n_neighbors=30).fit(X).weirdness_)
    assert not hasattr(a, "weirdness_") and not hasattr(b, "weirdness_")  # cloned, not fitted in place


def test_strata_scoring_streams_blocks_and_matches_training(monkeypatch):
    """S/N strata scoring reads X one block at a time (never all rows) and still gives the
    training weirdness exactly for the training rows, with and without imputation."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(90, 6))
    snr = rng.uniform(1, 30, 90)
    for impute in (False, True):
        model = UnsupervisedRandomForest(n_estimators=15, random_state=0, progress=False, snr_strata=3,
                                         block_size=16, impute=impute).fit(X, snr=snr)
        sizes = []
        for m in model.strata_models_:
            real = m.score_samples

            def spy(block, _real=real, **kw):
                sizes.append(len(block))
                return _real(block, **kw)

            monkeypatch.setattr(m, "score_samples", spy)
        w = model.score_samples(X, snr=snr)
        np.testing.assert_allclose(w, model.weirdness_, rtol=1e-12, atol=1e-12)
        assert sum(sizes) == 90 and max(sizes) <= 16
    Xbad = X.copy()
    Xbad[50, 1] = np.nan
    strict = UnsupervisedRandomForest(n_estimators=10, random_state=0, progress=False, snr_strata=2,
                                      block_size=16).fit(X, snr=snr)
    with pytest.raises(ValueError, match=r"row 50 .*column 1"):
        strict.score_samples(Xbad, snr=snr)
