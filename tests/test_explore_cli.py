"""`serendip embed | cluster | detect` end to end on small files."""
from __future__ import annotations

import numpy as np
import pytest

from serendip._io import read_table, write_table
from serendip.cli import main


@pytest.fixture
def feature_files(rng, tmp_path):
    from astropy.table import Table

    latent = np.vstack([rng.normal(size=(40, 2)), rng.normal(size=(40, 2)) + [8.0, 0.0]])
    mixing = np.array([[1.0, 0.5, 0.2, 0.0], [0.0, 1.0, -0.5, 0.3]])
    X = latent @ mixing + 0.1 * rng.normal(size=(80, 4))
    X[-1] = X[:40].mean(axis=0) + np.array([0.0, 0.0, 0.0, 4.0])  # off the 2-D structure: planted extreme
    np.save(tmp_path / "X.npy", X)
    tab = Table({"id": [f"obj{i}" for i in range(80)], "a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "d": X[:, 3],
                 "snr": rng.uniform(5, 20, 80), "kind": ["x"] * 80})
    write_table(tab, tmp_path / "feat.csv")
    wave = np.linspace(4000, 5000, 60)
    slope = np.where(np.arange(80)[:, None] < 40, 0.0, 0.8) * np.linspace(-1, 1, 60)  # two spectral shapes
    flux = 2.0 + slope + 0.02 * rng.normal(size=(80, 60))
    flux[-1, 20:25] += 1.0
    np.savez(tmp_path / "spec.npz", flux=flux, wavelength=wave, id=np.array([f"s{i}" for i in range(80)]),
             snr=np.full(80, 10.0))
    return tmp_path


@pytest.mark.parametrize("detector", ["iforest", "lof", "knn", "pca", "ensemble"])
def test_detect_writes_scores_with_planted_object_first(feature_files, detector, capsys):
    out = feature_files / f"{detector}.fits"
    rc = main(["-q", "detect", str(feature_files / "feat.csv"), "--detector", detector, "--columns", "a,b,c,d",
               "--seed", "1", "-o", str(out)])
    assert rc == 0
    tab = read_table(out)
    assert tab["id"][np.argmax(tab["weirdness"])] == "obj79"
    assert tab[tab["rank"] == 1]["id"][0] == "obj79"
    assert tab.meta["score_convention"] == "higher = weirder" and tab.meta["detector"] == detector
    assert "snr" in tab.colnames
    assert "obj79" in capsys.readouterr().out


def test_detect_errors_are_one_line(feature_files, capsys):
    rc = main(["detect", str(feature_files / "feat.csv"), "--detector", "iforest", "--n-neighbors", "3",
               "-o", str(feature_files / "x.fits")])
    assert rc == 2 and "does not take parameter" in capsys.readouterr().err
    rc = main(["detect", str(feature_files / "feat.csv"), "--columns", "a,zz", "-o", str(feature_files / "x.fits")])
    assert rc == 2 and "no column(s) ['zz']" in capsys.readouterr().err
    rc = main(["detect", str(feature_files / "missing.npy"), "-o", str(feature_files / "x.fits")])
    assert rc == 2
    assert not (feature_files / "x.fits").exists()


def test_embed_then_cluster_from_spectra(feature_files):
    emb = feature_files / "emb.parquet"
    assert main(["-q", "embed", str(feature_files / "spec.npz"), "-o", str(emb), "--color-by", "snr"]) == 0
    tab = read_table(emb)
    assert tab.colnames[:3] == ["id", "embed_1", "embed_2"] and len(tab) == 80
    assert tab.meta["method"] == "pca"
    assert (feature_files / "emb.png").stat().st_size > 5000
    out = feature_files / "cl.fits"
    assert main(["-q", "cluster", str(emb), "--method", "kmeans", "--n-clusters", "2", "--spectra",
                 str(feature_files / "spec.npz"), "-o", str(out)]) == 0
    labels = read_table(out)
    assert set(labels["cluster"]) == {0, 1}
    first, second = labels["cluster"][:40], labels["cluster"][40:79]
    assert len(set(first)) == 1 and len(set(second)) == 1 and first[0] != second[0]
    summary = read_table(feature_files / "cl_summary.fits")
    assert sorted(summary["size"]) == [40, 40] and summary.meta["params"]["method"] == "kmeans"
    assert (feature_files / "cl.png").exists()


def test_embed_color_from_score_table(feature_files):
    scores = feature_files / "scores.fits"
    assert main(["-q", "detect", str(feature_files / "X.npy"), "--detector", "knn", "-o", str(scores)]) == 0
    out = feature_files / "e.csv"
    assert main(["-q", "embed", str(feature_files / "X.npy"), "-o", str(out), "--color-by", "weirdness",
                 "--color-table", str(scores), "--no-png"]) == 0
    tab = read_table(out)
    assert np.argmax(tab["weirdness"]) == 79 and not (feature_files / "e.png").exists()


def test_detect_and_embed_read_an_ingested_store(tmp_path, rng):
    """INPUT may be the HDF5 store written by `serendip ingest` (A's SpectraStore)."""
    spectra_mod = pytest.importorskip("serendip.spectra")
    if not hasattr(spectra_mod, "open_store"):
        pytest.skip("no SpectraStore in this installation")
    from serendip.spectra import Spectra, SpectraStore

    wave = np.linspace(4000, 5000, 50)
    flux = 1.0 + 0.02 * rng.normal(size=(60, 50))
    flux[17, 10:14] += 2.0
    s = Spectra(wave, flux, meta={"id": [f"t{i}" for i in range(60)], "snr": np.full(60, 8.0),
                                  "z": np.full(60, 0.1)})
    store = SpectraStore.create(tmp_path / "survey.h5", wave)
    store.append(s)
    store.finalize()
    out = tmp_path / "scores.fits"
    assert main(["-q", "detect", str(tmp_path / "survey.h5"), "--detector", "knn", "-o", str(out)]) == 0
    tab = read_table(out)
    assert tab["id"][np.argmax(tab["weirdness"])] == "t17" and "z" in tab.colnames
    assert main(["-q", "embed", str(tmp_path / "survey.h5"), "-o", str(tmp_path / "e.ecsv"), "--color-by", "z"]) == 0
    assert len(read_table(tmp_path / "e.ecsv")) == 60
    assert main(["detect", str(tmp_path), "-o", str(out)]) == 2


def test_detect_does_not_copy_a_feature_named_z_as_the_redshift(tmp_path):
    """A z-band magnitude used as a feature is not a redshift column of the output."""
    from serendip.explore import run_detect

    rng = np.random.default_rng(2)
    mags = rng.normal(18, 1, (60, 5))
    lines = ["u,g,r,i,z,redshift"] + [",".join(f"{v:.4f}" for v in row) + f",{0.1 + 0.001 * k:.4f}"
                                      for k, row in enumerate(mags)]
    (tmp_path / "cat.csv").write_text("\n".join(lines) + "\n")
    tab = run_detect(tmp_path / "cat.csv", tmp_path / "out.csv", detector="iforest",
                     columns=["u", "g", "r", "i", "z"], progress=False)
    assert "z" not in tab.colnames
    np.testing.assert_allclose(np.sort(np.asarray(tab["redshift"], float)), 0.1 + 0.001 * np.arange(60), atol=1e-6)


@pytest.mark.parametrize("detector, flag", [("lof", "--trees"), ("pca", "--trees"), ("ensemble", "--n-neighbors"),
                                            ("iforest", "--n-neighbors")])
def test_detect_names_the_flag_a_detector_does_not_take(feature_files, detector, flag, capsys):
    """The error names the option typed (--trees), not the Python parameter behind it (n_estimators)."""
    out = feature_files / "x.fits"
    rc = main(["detect", str(feature_files / "feat.csv"), "--detector", detector, flag, "5", "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and f"does not take parameter {flag}" in err
    assert "n_estimators" not in err and "n_neighbors" not in err
    assert not out.exists()


def test_outputs_record_the_feature_columns_they_used(feature_files):
    """With a table input, the provenance says which columns were the features (n_features alone does not)."""
    feat = str(feature_files / "feat.csv")
    assert main(["-q", "detect", feat, "--columns", "a,c", "-o", str(feature_files / "d.fits")]) == 0
    assert read_table(feature_files / "d.fits").meta["columns"] == ["a", "c"]
    emb = feature_files / "e.ecsv"
    assert main(["-q", "embed", feat, "--columns", "a,b,d", "--color-by", "snr", "--no-png", "-o", str(emb)]) == 0
    meta = read_table(emb).meta
    assert meta["columns"] == ["a", "b", "d"] and meta["color_by"] == "snr"
    out = feature_files / "c.ecsv"
    assert main(["-q", "cluster", str(emb), "--method", "kmeans", "--n-clusters", "2", "--no-png", "-o", str(out)]) == 0
    assert read_table(out).meta["columns"] == ["embed_1", "embed_2"]
    assert read_table(feature_files / "c_summary.ecsv").meta["columns"] == ["embed_1", "embed_2"]


def test_embed_and_cluster_scale_features_in_unlike_units(tmp_path, rng):
    """A column in large units (a period in days) decides PCA unless --scale evens the columns out."""
    from astropy.table import Table

    groups = np.repeat([0, 1], 50)
    colour = groups * 3.0 + 0.3 * rng.normal(size=100)  # the structure: two groups in colour
    period = rng.normal(500.0, 100.0, 100)                # large, structureless numbers
    write_table(Table({"id": [f"v{i}" for i in range(100)], "colour": colour, "period": period}),
                tmp_path / "cat.csv")
    raw, scaled = tmp_path / "raw.ecsv", tmp_path / "scaled.ecsv"
    assert main(["-q", "embed", str(tmp_path / "cat.csv"), "--no-png", "-o", str(raw)]) == 0
    assert main(["-q", "embed", str(tmp_path / "cat.csv"), "--scale", "standard", "--no-png", "-o", str(scaled)]) == 0
    corr = {p.name: abs(np.corrcoef(np.asarray(read_table(p)["embed_1"]), period)[0, 1]) for p in (raw, scaled)}
    assert corr["raw.ecsv"] > 0.99 and corr["scaled.ecsv"] < 0.9
    assert read_table(scaled).meta["scale"] == "standard"
    agree = {}
    for scale in (None, "standard"):
        out = tmp_path / f"k{scale}.ecsv"
        assert main(["-q", "cluster", str(tmp_path / "cat.csv"), "--method", "kmeans", "--n-clusters", "2",
                     *(["--scale", scale] if scale else []), "--no-png", "-o", str(out)]) == 0
        labels = np.asarray(read_table(out)["cluster"])
        agree[scale] = max(np.mean(labels == groups), np.mean(labels != groups))
        assert read_table(tmp_path / f"k{scale}_summary.ecsv").meta["scale"] == scale
    assert agree[None] < 0.8 and agree["standard"] > 0.95
