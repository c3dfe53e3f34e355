"""Dask scoring gives exactly the detector's own numbers, for arrays, containers and stores."""
import numpy as np
import pytest

da = pytest.importorskip("dask.array")

from serendip.outliers import IsolationForestDetector, UnsupervisedRandomForest, score_samples_dask  # noqa: E402
from serendip.spectra import Spectra, SpectraStore  # noqa: E402


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    t = rng.uniform(0, 1, 150)
    X = np.column_stack([np.sin(3 * t), np.cos(2 * t), t ** 2, t]) + rng.normal(0, 0.02, (150, 4))
    X[7] = [2.0, -2.0, 0.0, 3.0]   # a planted oddball
    return X


@pytest.mark.parametrize("scheduler", ["sync", "threads"])
def test_urf_dask_scores_equal_direct_scores(data, scheduler):
    urf = UnsupervisedRandomForest(n_estimators=30, random_state=0, progress=False).fit(data)
    lazy = score_samples_dask(urf, data, chunk_rows=40)
    assert isinstance(lazy, da.Array) and lazy.numblocks == (4,)
    w = lazy.compute(scheduler=scheduler)
    np.testing.assert_allclose(w, urf.score_samples(data), rtol=0, atol=1e-12)
    np.testing.assert_allclose(w, urf.weirdness_, rtol=0, atol=1e-12)  # training rows reproduce weirdness_
    assert np.argmax(w) == 7                                             # higher = weirder


def test_a_dataframe_is_scored_like_score_samples_scores_it(data):
    pd = pytest.importorskip("pandas")
    urf = UnsupervisedRandomForest(n_estimators=10, random_state=0, progress=False).fit(data)
    w = score_samples_dask(urf, pd.DataFrame(data), chunk_rows=40).compute(scheduler="sync")
    np.testing.assert_allclose(w, urf.score_samples(pd.DataFrame(data)), rtol=0, atol=1e-12)


def test_baseline_and_dask_array_input(data):
    det = IsolationForestDetector(random_state=0).fit(data)
    w = score_samples_dask(det, da.from_array(data, chunks=(25, 2)), chunk_rows=60).compute(scheduler="sync")
    np.testing.assert_allclose(w, det.score_samples(data))


def test_store_is_read_by_the_workers_and_strata_take_its_snr(tmp_path, data):
    wave = np.linspace(4000, 4300, data.shape[1])
    snr = np.linspace(2, 30, len(data))
    spectra = Spectra(wave, data, meta={"snr": snr})
    store = SpectraStore.create(tmp_path / "s.h5", spectra.wavelength)
    store.append(spectra)
    store.finalize()
    urf = UnsupervisedRandomForest(n_estimators=20, snr_strata=2, random_state=1, progress=False)
    urf.fit(spectra.flux, snr=snr)
    w = score_samples_dask(urf, tmp_path / "s.h5", chunk_rows=50).compute(scheduler="sync")
    np.testing.assert_allclose(w, urf.score_samples(spectra.flux, snr=snr), atol=1e-12)


def test_bad_inputs_are_explained(data):
    urf = UnsupervisedRandomForest(n_estimators=5, snr_strata=2, random_state=0, progress=False)
    urf.fit(data, snr=np.linspace(1, 10, len(data)))
    with pytest.raises(ValueError, match="S/N strata"):
        score_samples_dask(urf, data)
    with pytest.raises(ValueError, match="fitted with 4"):
        score_samples_dask(urf, data[:, :3], snr=np.ones(len(data)))
    with pytest.raises(TypeError, match="no score_samples"):
        score_samples_dask(object(), data)
