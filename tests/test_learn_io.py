"""serendip.learn: save/load, tables, report, CLI and the 1-D CNN (synthetic data)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.table import Table

from serendip.learn import load_model, save_model, train
from serendip.learn.persist import ModelVersionWarning, UntrustedModelError

FAST = dict(cv=3, n_iter=2, progress=False, learning_curve=False, importances=False,
            model_params={"n_estimators": 20})


@pytest.fixture(scope="module")
def mags_table(tmp_path_factory):
    """A synthetic ugriz catalogue whose class depends on colours."""
    rng = np.random.default_rng(3)
    n = 300
    cls = np.repeat(["STAR", "GALAXY", "QSO"], n // 3)
    offs = {"STAR": (1.2, 0.5, 0.2, 0.1), "GALAXY": (1.8, 0.9, 0.4, 0.3), "QSO": (0.3, 0.2, 0.1, 0.05)}
    r = rng.uniform(16, 19, n)
    cols = {"objid": np.arange(n) + 1000, "r": r}
    ug, gr, ri, iz = np.array([offs[c] for c in cls]).T + 0.08 * rng.normal(size=(4, n))
    cols["g"] = r + gr
    cols["u"] = cols["g"] + ug
    cols["i"] = r - ri
    cols["z"] = cols["i"] - iz
    cols["class"] = cls
    cols["redshift"] = np.where(cls == "GALAXY", 0.1 + 0.2 * gr, 0.0)
    tab = Table(cols)
    path = tmp_path_factory.mktemp("tab") / "cat.fits"
    tab.write(path)
    return path


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 4))
    y = (X[:, 0] + 0.3 * rng.normal(size=150) > 0).astype(int)
    import pandas as pd

    return train(pd.DataFrame(X, columns=["a", "b", "c", "d"]), y, algorithm="rf", **FAST), X


@pytest.mark.parametrize("ext", [".skops", ".joblib"])
def test_save_load_round_trip_requires_trust(tmp_path, trained, ext):
    res, X = trained
    path = save_model(res, tmp_path / f"m{ext}")
    side = json.loads((tmp_path / f"m{ext}.json").read_text())
    assert side["feature_names"] == ["a", "b", "c", "d"]
    assert set(side["versions"]) >= {"serendip", "scikit-learn", "numpy"}
    assert side["summary"]["n_train"] == res.summary["n_train"]
    with pytest.raises(UntrustedModelError, match="trusted=True"):
        load_model(path)
    loaded = load_model(path, trusted=True)
    assert np.array_equal(loaded.model.predict(X), res.model.predict(X))
    assert loaded.metadata["algorithm"] == "rf"
    import pandas as pd

    df = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="lacks feature column"):
        loaded.predict(df[["a", "b", "c"]])
    with pytest.raises(ValueError, match="different order"):
        loaded.predict(df[["b", "a", "c", "d"]])


def test_load_warns_on_version_mismatch_and_rejects_corrupt(tmp_path, trained):
    import skops.io as sio

    res, _ = trained
    path = save_model(res, tmp_path / "m.skops")
    payload = sio.load(path, trusted=sio.get_untrusted_types(file=path))
    meta = json.loads(payload["metadata_json"])
    meta["versions"]["scikit-learn"] = "0.0.1"
    payload["metadata_json"] = json.dumps(meta)
    sio.dump(payload, tmp_path / "old.skops")
    with pytest.warns(ModelVersionWarning, match="scikit-learn 0.0.1"):
        load_model(tmp_path / "old.skops", trusted=True)
    bad = tmp_path / "bad.skops"
    bad.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a readable serendip model file"):
        load_model(bad, trusted=True)
    badj = tmp_path / "bad.joblib"
    badj.write_bytes(b"\x80\x04not a pickle at all")
    with pytest.raises(ValueError, match="not a readable serendip model file"):
        load_model(badj, trusted=True)
    with pytest.raises(ValueError, match=".skops"):
        save_model(res, tmp_path / "m.pkl")


def test_colors_recipe_train_and_predict_tables(tmp_path, mags_table):
    from serendip.learn.tables import predict_table, read_any_table, select_features, train_table

    tab = read_any_table(mags_table)
    X, y, recipe = select_features(tab, "class", colors="ugriz")
    assert X.colnames == ["u-g", "g-r", "r-i", "i-z", "r"]
    assert np.allclose(X["g-r"], tab["g"] - tab["r"])
    # default features skip identifiers and the target-derived columns
    Xd, _, rd = select_features(tab, "class")
    assert "objid" not in Xd.colnames and "class" not in Xd.colnames
    res, written = train_table(mags_table, "class", tmp_path / "m.skops", colors="ugriz", algorithm="svm",
                               **FAST)
    assert res.test_scores["balanced_accuracy"] > 0.9
    for key in ("model", "metadata", "report", "png"):
        assert written[key].exists()
    html = written["report"].read_text()
    assert "data:image/png;base64," in html and "confusion" in html
    out = predict_table(written["model"], mags_table, tmp_path / "pred.parquet", trusted=True)
    assert list(out["objid"]) == list(tab["objid"]) and "row" not in out.colnames
    assert np.mean(np.asarray(out["class_pred"]) == np.asarray(tab["class"])) > 0.9
    # without an identifier column the output says which input row each prediction is for
    anon = tab.copy()
    anon.remove_column("objid")
    anon.write(tmp_path / "anon.csv")
    out3 = predict_table(written["model"], tmp_path / "anon.csv", tmp_path / "p3.csv", trusted=True)
    assert list(out3["row"]) == list(range(len(tab)))
    # ... counted in the whole input, so a filtered prediction still joins back to it
    cls = np.asarray(tab["class"]).astype(str)
    first = cls[0]
    out4 = predict_table(written["model"], tmp_path / "anon.csv", tmp_path / "p4.csv", trusted=True,
                         query=f"`class` == '{first}'")
    assert list(out4["row"]) == list(np.flatnonzero(cls == first)) and len(out4) < len(tab)
    # a table without the z band cannot be predicted
    tab2 = tab.copy()
    tab2.remove_column("z")
    tab2.write(tmp_path / "noz.csv")
    with pytest.raises(ValueError, match="band 'z'"):
        predict_table(written["model"], tmp_path / "noz.csv", tmp_path / "p2.csv", trusted=True)
    assert not (tmp_path / "p2.csv").exists()


def test_string_feature_and_missing_target_column_errors(mags_table):
    from serendip.learn.tables import read_any_table, select_features

    tab = read_any_table(mags_table)
    with pytest.raises(ValueError, match="'class' is not numeric"):
        select_features(tab, "redshift", features=["u", "class"])
    with pytest.raises(ValueError, match="no target column 'zzz'"):
        select_features(tab, "zzz")
    # a misspelt feature when training: no model is involved yet, so the message must not mention one
    with pytest.raises(ValueError, match=r"no feature column\(s\) \['rr'\] in the table") as err:
        select_features(tab, "class", features=["u", "rr"])
    assert "model" not in str(err.value)


def test_row_filter_must_be_a_condition(tmp_path, mags_table):
    from astropy.table import MaskedColumn

    from serendip.learn.tables import read_any_table

    assert len(read_any_table(mags_table, query="`class` == 'GALAXY'")) == 100
    # "=" assigns in pandas (a whole table comes back), and a bare number column is no condition:
    # both used to crash with an IndexError or silently keep every non-zero row
    for query in ("`class` = 'GALAXY'", "redshift", "u + g"):
        with pytest.raises(ValueError, match="does not give True or False for each row"):
            read_any_table(mags_table, query=query)
    # a comparison on a column with missing values: the missing rows do not match
    Table({"a": MaskedColumn([1, 2, 3, 4], mask=[0, 1, 0, 0])}).write(tmp_path / "m.fits")
    assert list(read_any_table(tmp_path / "m.fits", query="a > 1")["a"]) == [3, 4]


def test_train_report_says_what_the_model_was_trained_on(tmp_path, mags_table):
    import html as _html

    from serendip._io import file_sha256
    from serendip.learn.tables import read_any_table, train_table

    # a leak: a numeric code of the class, which the report must keep in view
    tab = read_any_table(mags_table)
    tab["class_code"] = np.unique(np.asarray(tab["class"]), return_inverse=True)[1]
    tab.write(tmp_path / "leak.fits")
    with pytest.warns(UserWarning, match="alone names the class"):
        _, written = train_table(tmp_path / "leak.fits", "class", tmp_path / "m.skops", colors="ugriz",
                                 features=["class_code"], query="r < 18.5", algorithm="rf", **FAST)
    text = _html.unescape(written["report"].read_text())
    assert "Provenance" in text and str((tmp_path / "leak.fits").resolve()) in text
    assert file_sha256(tmp_path / "leak.fits") in text
    assert "r < 18.5" in text  # the row filter: the model only saw part of the table
    assert "u-g, g-r, r-i, i-z, r, class_code" in text and "u=u, g=g, r=r, i=i, z=z" in text
    assert "alone names the class" in text and "scikit-learn" in text
    # when it was trained (kept with the model), apart from when this page was written
    import re

    trained = re.search(r"<td class=l>trained</td><td>(\d{4}-\d\d-\d\dT[0-9:]+\+00:00)</td>", text)
    assert trained and "report written" in text
    from serendip.learn import load_model

    again = load_model(written["model"], trusted=True)
    assert again.metadata["summary"]["trained_utc"] == trained.group(1)
    meta = json.loads(written["metadata"].read_text())
    assert meta["source_sha256"] == file_sha256(tmp_path / "leak.fits") and meta["query"] == "r < 18.5"


def test_cli_recommend_train_predict(tmp_path, mags_table, capsys):
    from serendip.cli import main

    assert main(["learn", "recommend", str(mags_table), "--target", "class", "--colors", "ugriz"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1. ") and "svm" in out
    model = tmp_path / "cli.skops"
    rc = main(["-q", "learn", "train", str(mags_table), "--target", "class", "--colors", "ugriz",
               "--algorithm", "svm", "--cv", "3", "--n-iter", "2", "-o", str(model)])
    assert rc == 0 and model.exists() and (tmp_path / "cli.report.html").exists()
    pred = tmp_path / "p.csv"
    assert main(["learn", "predict", str(model), str(mags_table), "-o", str(pred)]) == 2
    assert "--trust" in capsys.readouterr().err and not pred.exists()
    assert main(["learn", "predict", str(model), str(mags_table), "-o", str(pred), "--trust"]) == 0
    assert len(Table.read(pred, format="ascii.csv", comment="#")) == 300
    assert main(["learn", "train", str(mags_table), "--target", "nope", "-o", str(tmp_path / "x.skops")]) == 2


def test_cli_train_search_max_rows(tmp_path, mags_table, capsys):
    from serendip.cli import main
    from serendip.learn import load_model

    base = ["-q", "learn", "train", str(mags_table), "--target", "class", "--colors", "ugriz", "--algorithm",
            "svm", "--cv", "3", "--n-iter", "2", "--no-report"]
    for rows, expected in (("60", 60), ("0", 240)):  # 0 = every training row (300 rows, 20 % held out)
        model = tmp_path / f"m{rows}.skops"
        assert main(base + ["--search-max-rows", rows, "-o", str(model)]) == 0
        saved = load_model(model, trusted=True)
        assert saved.metadata["summary"]["n_search_rows"] == expected
    assert main(base + ["--search-max-rows", "4", "-o", str(tmp_path / "bad.skops")]) == 2
    assert "search_max_rows=4" in capsys.readouterr().err


def test_figures_on_demand(trained):
    res, _ = trained
    figs = res.figures()
    assert {"confusion", "roc_pr"} <= set(figs)


def test_redshift_regression_report(tmp_path, rng):
    n = 300
    X = rng.uniform(0, 1, (n, 3))
    z = 0.4 * X[:, 0] + 0.2 * X[:, 1] + 0.01 * rng.normal(size=n)
    res = train(X, z, algorithm="svm", target_name="z", cv=3, n_iter=2, progress=False)
    assert "redshift" in res.figures()
    path = res.report(tmp_path / "r.html")
    assert "σ_NMAD" in path.read_text() or "sigma_nmad" in path.read_text()
    assert "validated with one" not in path.read_text() and "one booster" not in res.summary_text()


def test_boosted_trees_report_says_cv_used_one_booster(tmp_path, rng):
    X = rng.uniform(0, 1, (240, 3))
    z = 0.4 * X[:, 0] + 0.01 * rng.normal(size=240)
    res = train(X, z, algorithm="gbt", target_name="z", cv=3, n_iter=1, progress=False,
                learning_curve=False, importances=False)
    text = res.report(tmp_path / "g.html").read_text()
    assert "boosted trees validated with one booster; the refitted model averages 5" in text
    assert "validated with one booster" in res.summary_text()


# --- 1-D CNN --------------------------------------------------------------------------------
def _line_spectra(rng, n=240, p=128):
    x = np.arange(p)
    y = rng.integers(0, 3, n)
    centers = np.array([30, 64, 100])
    X = 1 + 0.2 * rng.normal(size=(n, p)) + np.exp(-0.5 * ((x[None] - centers[y][:, None]) / 3) ** 2)
    return X.astype(np.float32), y


def test_cnn_learns_line_position_and_round_trips(tmp_path, rng):
    pytest.importorskip("torch")
    import torch

    torch.set_num_threads(1)
    from serendip.learn import CNN1DClassifier, CNN1DRegressor

    X, y = _line_spectra(rng)
    clf = CNN1DClassifier(epochs=12, random_state=0, n_threads=1).fit(X[:180], y[:180])
    assert (clf.predict(X[180:]) == y[180:]).mean() > 0.9
    proba = clf.predict_proba(X[180:])
    assert np.allclose(proba.sum(axis=1), 1)
    again = CNN1DClassifier(epochs=12, random_state=0, n_threads=1).fit(X[:180], y[:180])
    assert np.allclose(again.predict_proba(X[180:]), proba, atol=1e-5)  # reproducible with random_state
    path = save_model(clf, tmp_path / "cnn.skops")
    loaded = load_model(path, trusted=True)
    assert np.allclose(loaded.model.predict_proba(X[180:]), proba, atol=1e-6)
    reg = CNN1DRegressor(epochs=8, random_state=0, n_threads=1).fit(X[:180], y[:180].astype(float))
    assert reg.predict(X[180:]).shape == (60,)
    with pytest.raises(ValueError, match="pixels"):
        clf.predict(X[:5, :100])


def test_train_with_cnn_on_raw_spectra(rng):
    pytest.importorskip("torch")
    X, y = _line_spectra(rng, n=180)
    res = train(X, y, algorithm="cnn", raw=True, cv=2, progress=False, learning_curve=False,
                importances=True, cnn_params={"epochs": 8, "n_threads": 1})
    assert res.algorithm == "cnn"
    assert res.test_scores["balanced_accuracy"] > 0.8
    assert len(res.importances) == 30


def test_cli_shows_a_training_warning_once_as_a_log_line(tmp_path):
    """A leakage warning reaches the terminal once, as a log line (not also as a Python warning with a
    file path and source line)."""
    from astropy.table import Table

    import subprocess
    import sys

    rng = np.random.default_rng(0)
    cls = np.repeat(["STAR", "GALAXY"], 60)
    tab = Table({"a": rng.normal(size=120) + (cls == "STAR"), "b": rng.normal(size=120),
                 "code": (cls == "STAR").astype(int), "cls": cls})
    tab.write(tmp_path / "t.csv")
    # a real process: what the terminal shows (pytest would capture the warning itself)
    run = subprocess.run([sys.executable, "-m", "serendip", "learn", "train", str(tmp_path / "t.csv"), "--target",
                          "cls", "--features", "a", "b", "code", "--algorithm", "rf", "--cv", "3", "--n-iter", "1",
                          "--no-report", "-o", str(tmp_path / "m.skops")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    err = run.stderr
    assert err.count("alone names the class of every row") == 1
    assert "UserWarning" not in err and "warnings.warn" not in err


# ----------------------------------------------------------------------------- review fixes (2026-11-26)
def test_cnn_edge_cases_targets_failed_fits_and_global_state(rng):
    pytest.importorskip("torch")
    import torch
    from sklearn.exceptions import DataConversionWarning, NotFittedError

    from serendip.learn import CNN1DClassifier, CNN1DRegressor

    X, y = _line_spectra(rng)
    X, y = X[:80], y[:80].astype(float)
    kw = dict(epochs=3, random_state=0, n_threads=1)
    flat = CNN1DRegressor(**kw).fit(X, y).predict(X)
    with pytest.warns(DataConversionWarning):  # a (n, 1) target broadcast against the output: it trained wrongly
        col = CNN1DRegressor(**kw).fit(X, y[:, None]).predict(X)
    np.testing.assert_allclose(col, flat, atol=1e-6)
    big = CNN1DRegressor(**kw).fit(X, 1e8 + 10 * y).predict(X)
    assert big.dtype == np.float64 and np.unique(big).size > 10  # de-standardised in float64, not float32
    with pytest.raises(NotFittedError):
        CNN1DClassifier().predict(X)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        CNN1DClassifier(batch_size=0).fit(X, y > 0.5)
    with pytest.raises(ValueError, match="class_weight must be 'balanced', None or a dict"):
        CNN1DClassifier(class_weight="Balanced").fit(X, y > 0.5)
    clf = CNN1DClassifier(**kw).fit(X, np.where(y > 0.5, "a", "b"))
    before = clf.predict_proba(X)
    with pytest.raises(ValueError, match="two classes"):
        clf.fit(X[:, :32], np.full(80, "c"))  # a failed refit leaves the earlier fit whole
    assert list(clf.classes_) == ["a", "b"] and clf.n_features_in_ == X.shape[1]
    np.testing.assert_array_equal(clf.predict_proba(X), before)
    state = torch.random.get_rng_state()
    CNN1DClassifier(**kw).fit(X, y > 0.5)
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's torch seed is left alone


def test_metrics_refuse_mismatched_inputs():
    from serendip.learn import metrics as M

    with pytest.raises(ValueError, match="3 values but the true values 1"):
        M.regression_metrics([5.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="no values"):
        M.bias([], [])
    with pytest.raises(ValueError, match=r"proba has shape \(4, 3\); expected \(4, 2\)"):
        M.classification_metrics([0, 1, 0, 1], [0, 1, 1, 1], proba=np.full((4, 3), 1 / 3))


def test_reserved_metadata_and_malformed_model_files(tmp_path, trained):
    import joblib

    result, _ = trained
    with pytest.raises(ValueError, match=r"reserved key\(s\) \['feature_names', 'versions'\]"):
        save_model(result, tmp_path / "m.skops", metadata={"versions": {}, "feature_names": ["a"], "ok": 1})
    path = save_model(result, tmp_path / "m.skops", metadata={"source": "sdss dr17"})
    assert load_model(path, trusted=True).metadata["source"] == "sdss dr17"
    with pytest.raises(TypeError, match="trusted must be True, False or a list"):
        load_model(path, trusted=None)
    for name, payload in {"fv": {"format": "serendip-model", "format_version": "x", "metadata_json": "{}",
                                 "model": 1},
                          "nomodel": {"format": "serendip-model", "format_version": 1, "metadata_json": "{}"},
                          "listmeta": {"format": "serendip-model", "format_version": 1, "metadata_json": "[]",
                                       "model": 1}}.items():
        joblib.dump(payload, tmp_path / f"{name}.joblib")
        with pytest.raises(ValueError, match="not a readable serendip model file"):
            load_model(tmp_path / f"{name}.joblib", trusted=True)


def test_a_bare_estimator_can_be_given_its_task(tmp_path):
    from sklearn.linear_model import LogisticRegression

    X = np.random.default_rng(0).normal(size=(40, 2))
    clf = LogisticRegression().fit(X, X[:, 0] > 0)
    path = save_model(clf, tmp_path / "bare.skops", metadata={"task": "classification"})
    assert load_model(path, trusted=True).metadata["task"] == "classification"
