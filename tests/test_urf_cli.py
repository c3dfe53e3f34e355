"""`serendip weird` and weirdness_table: one row per object, atomic output, parameters in meta."""
from __future__ import annotations

import numpy as np
import pytest

from serendip._io import read_table
from serendip.cli import main
from serendip.outliers.urf import UnsupervisedRandomForest, resolve_variant, weirdness_table


def _data(rng, n=120, f=15):
    X = rng.normal(size=(n, f)).astype(np.float32)
    X[:3] += 4.0
    return X


def test_cli_npz_roundtrip(tmp_path, rng, capsys):
    X = _data(rng)
    ids = np.array([f"obj{i}" for i in range(len(X))])
    snr = rng.uniform(2, 30, size=len(X))
    np.savez(tmp_path / "x.npz", X=X, id=ids, snr=snr)
    out = tmp_path / "weird.fits"
    rc = main(["-q", "weird", str(tmp_path / "x.npz"), "-o", str(out), "--trees", "12", "--repeats", "2",
               "--seed", "3", "--n-jobs", "1"])
    assert rc == 0
    assert "weirdest" in capsys.readouterr().out
    tab = read_table(out)
    assert list(tab["id"]) == list(ids)
    assert set(tab.colnames) >= {"id", "weirdness", "rank", "snr", "top_similar_id", "top_similarity"}
    assert np.allclose(tab["snr"], snr)
    assert sorted(tab["rank"]) == list(range(1, len(X) + 1))
    assert tab.meta["params"]["n_estimators"] == 12 and tab.meta["params"]["n_repeats"] == 2
    assert tab.meta["score_convention"] == "higher = weirder"
    # the table reproduces the estimator with the same parameters
    model = UnsupervisedRandomForest(12, n_repeats=2, random_state=3, n_jobs=1, progress=False).fit(X)
    assert np.allclose(tab["weirdness"], model.weirdness_)
    idx, _ = model.most_similar(k=1)
    assert list(tab["top_similar_id"]) == [ids[i] if i >= 0 else "" for i in idx[:, 0]]
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_cli_npy_csv_variants_and_errors(tmp_path, rng):
    X = _data(rng)
    np.save(tmp_path / "x.npy", X)
    out = tmp_path / "w.csv"
    assert main(["-q", "weird", str(tmp_path / "x.npy"), "-o", str(out), "--trees", "8", "--repeats", "1",
                 "--variant", "symmetric,knn", "--no-twins"]) == 0
    tab = read_table(out)
    assert tab.meta["params"]["normalization"] == "symmetric" and tab.meta["params"]["score_mode"] == "knn"
    assert "top_similar_id" not in tab.colnames and len(tab) == len(X)
    assert main(["-q", "weird", str(tmp_path / "x.npy"), "-o", str(out), "--variant", "nope"]) == 2
    assert main(["-q", "weird", str(tmp_path / "missing.npy"), "-o", str(out)]) == 2
    # the S/N-strata variant needs S/N: a plain .npy has none
    assert main(["-q", "weird", str(tmp_path / "x.npy"), "-o", str(out), "--variant", "snr-strata",
                 "--trees", "4"]) == 2
    bad = X.copy()
    bad[5, 2] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    assert main(["-q", "weird", str(tmp_path / "bad.npy"), "-o", str(tmp_path / "b.csv"), "--trees", "4"]) == 2
    assert not (tmp_path / "b.csv").exists()
    assert main(["-q", "weird", str(tmp_path / "bad.npy"), "-o", str(tmp_path / "b.csv"), "--trees", "4",
                 "--repeats", "1", "--impute"]) == 0


def test_weirdness_table_on_spectra(rng):
    from serendip.spectra import Spectra

    X = _data(rng, n=90, f=12)
    spec = Spectra(np.linspace(4000, 6000, 12), X, meta={"id": [f"s{i}" for i in range(90)],
                                                         "snr": rng.uniform(3, 30, 90)})
    tab = weirdness_table(spec, variant="snr-strata", n_estimators=6, n_repeats=1, progress=False)
    assert tab.meta["params"]["snr_strata"] == 3 and list(tab["id"][:2]) == ["s0", "s1"]
    with pytest.raises(ValueError, match="unknown URF variant"):
        resolve_variant("faithful,weird")
    # a bad parameter on spectra is named as such, without the hint to ingest the data
    with pytest.raises(ValueError, match="n_estimators must be a positive integer") as err:
        weirdness_table(spec, n_estimators=0, progress=False)
    assert "ingest" not in str(err.value)
    assert resolve_variant("majority")["good_leaf"] == "majority"


def test_weird_on_a_raw_spectra_file_points_to_ingest(shared_data, tmp_path, capsys):
    """Raw MaNGA spectra (one pixel masked in all of them) cannot be scored as they are; the error says
    to ingest them first, and no output is written."""
    src = shared_data / "manga_test_spectra" / "MaNGA_test_spectra.fits.gz"
    out = tmp_path / "w.csv"
    assert main(["-q", "weird", str(src), "-o", str(out), "--trees", "20", "--repeats", "1"]) == 2
    err = capsys.readouterr().err
    assert "constant" in err and "holds raw spectra; run `serendip ingest` on it first" in err
    assert not out.exists()


def test_a_variant_that_ties_most_objects_at_the_lowest_weirdness_says_so(tmp_path, caplog):
    """The `best` variant's kNN score leaves every object of a tight population at weirdness 0; their ranks
    then mean nothing, and the table says so (meta and a warning). The faithful variant orders them all."""
    import logging

    gen = np.random.default_rng(0)
    X = 0.01 * gen.normal(size=(300, 10))
    X[:20] += gen.normal(size=(20, 10))  # 20 unusual objects beside a tight population of 280
    path = tmp_path / "tight.npz"
    np.savez(path, flux=X, snr=gen.uniform(3, 30, 300))
    with caplog.at_level(logging.WARNING, logger="serendip"):
        tab = weirdness_table(path, variant="best", n_estimators=50, n_repeats=1, progress=False)
    w = np.asarray(tab["weirdness"])
    assert tab.meta["tied_at_lowest"] == int((w == w.min()).sum()) >= 150
    (msg,) = [r.getMessage() for r in caplog.records if "share the lowest weirdness" in r.getMessage()]
    assert "best variant" in msg and "faithful" in msg
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="serendip"):
        faithful = weirdness_table(path, n_estimators=50, n_repeats=1, progress=False)
    assert faithful.meta["tied_at_lowest"] < 10
    assert not [r for r in caplog.records if "share the lowest weirdness" in r.getMessage()]


def test_weirdness_table_rank_averages_the_forest_with_lof_within_its_strata(rng):
    """lof_neighbors > 0: weirdness is the mean rank fraction of the forest and of LOF, where LOF is
    scikit-learn's, fitted on each S/N stratum's objects alone and ranked within the stratum."""
    from sklearn.neighbors import LocalOutlierFactor

    from serendip.spectra import Spectra

    X = _data(rng, n=120, f=8)
    snr = rng.uniform(3, 30, 120)
    spec = Spectra(np.linspace(4000, 6000, 8), X, meta={"id": [f"s{i}" for i in range(120)], "snr": snr})
    tab = weirdness_table(spec, variant="snr-strata", n_estimators=8, n_repeats=1, lof_neighbors=7,
                          progress=False)
    assert tab.meta["detector"] == "urf+lof" and tab.meta["lof_neighbors"] == 7
    assert "3 S/N strata" in tab.meta["combination"]
    strata = np.asarray(tab["snr_stratum"])
    assert sorted(np.unique(strata)) == [0, 1, 2]
    assert np.all(snr[strata == 0].max() <= snr[strata == 2].min())  # stratum 0 = the lowest S/N
    lof = np.empty(120)
    frac = np.empty(120)
    for s in range(3):
        rows = np.flatnonzero(strata == s)
        v = -LocalOutlierFactor(n_neighbors=7).fit(X[rows]).negative_outlier_factor_
        lof[rows] = v
        frac[rows] = [(v <= x).mean() for x in v]
    assert np.allclose(tab["weirdness_lof"], lof)
    forest = np.asarray(tab["weirdness_forest"])
    expected = 0.5 * (frac + np.array([(forest <= x).mean() for x in forest]))
    assert np.allclose(tab["weirdness"], expected)
    assert list(np.argsort(tab["rank"])) == list(np.argsort(-expected, kind="stable"))
    # the forest alone, as before: no LOF columns
    alone = weirdness_table(spec, variant="snr-strata", n_estimators=8, n_repeats=1, progress=False)
    assert alone.meta["detector"] == "urf" and "weirdness_lof" not in alone.colnames
    assert np.allclose(alone["weirdness"], forest)
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="lof_neighbors must be an integer >= 0"):
            weirdness_table(spec, lof_neighbors=bad, progress=False)


def test_weird_lof_option_on_the_cli_orders_a_tight_population(tmp_path, capsys):
    """--lof-neighbors breaks the best variant's ties at weirdness 0 and works with --impute."""
    gen = np.random.default_rng(0)
    X = 0.01 * gen.normal(size=(300, 10))
    X[:20] += gen.normal(size=(20, 10))
    X[5, 3] = np.nan  # imputed for the forest and for LOF alike
    np.savez(tmp_path / "tight.npz", flux=X, snr=gen.uniform(3, 30, 300))
    out = tmp_path / "w.ecsv"
    assert main(["-q", "weird", str(tmp_path / "tight.npz"), "-o", str(out), "--trees", "30", "--repeats", "1",
                 "--variant", "best", "--lof-neighbors", "10", "--impute"]) == 0
    assert "rank-averaged with LOF on 10 neighbours" in capsys.readouterr().out
    from astropy.table import Table

    tab = Table.read(out)
    assert tab.meta["tied_at_lowest"] < 10 and np.all(np.isfinite(tab["weirdness_lof"]))
    assert np.mean(tab["rank"][:20] <= 40) >= 0.8  # the 20 unusual objects lead
    assert main(["-q", "weird", str(tmp_path / "tight.npz"), "-o", str(out), "--lof-neighbors", "-1"]) == 2
