"""Guards that keep a supervised result honest: no silent targets, no scores from one row,
the same model in every diagnostic, and failures before the expensive part, not after."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.table import MaskedColumn, Table

from serendip.learn import train
from serendip.learn.diagnostics import compute_learning_curve, learning_curve_verdict
from serendip.learn.tables import predict_table, select_features, train_table

FAST = dict(cv=3, n_iter=2, progress=False, learning_curve=False, importances=False)


def test_missing_boolean_targets_are_dropped_not_read_as_false(rng):
    n = 300
    x = rng.normal(size=n)
    is_qso = MaskedColumn(x > 0, mask=np.arange(n) % 6 == 0)  # 50 missing
    tab = Table({"a": x, "b": rng.normal(size=n), "is_qso": is_qso})
    X, y, _ = select_features(tab, "is_qso", ["a", "b"])
    with pytest.warns(UserWarning, match="dropped 50 of 300 rows"):
        res = train(X, y, algorithm="rf", model_params={"n_estimators": 20}, **FAST)
    assert res.test_scores["n"] == 50  # 20 % of the 250 rows with a target


def test_a_split_with_single_row_folds_is_refused(rng):
    X = rng.normal(size=(7, 2))
    y = rng.normal(size=7)
    with pytest.raises(ValueError, match="at least 2 rows"):
        train(X, y, algorithm="rf", **FAST)


def test_an_extreme_regression_test_size_names_the_quantile_bins_not_classes(rng):
    X = rng.normal(size=(400, 2))
    y = X[:, 0] + 0.1 * rng.normal(size=400)
    for test_size in (0.99, 0.01):
        with pytest.raises(ValueError, match=f"test_size={test_size:g} of 400 rows .* 10 target quantile bins"):
            train(X, y, algorithm="rf", test_size=test_size, **FAST)


def test_no_verdict_from_scores_that_could_not_be_computed():
    verdict, why = learning_curve_verdict([0.9, np.nan], [0.8, np.nan])
    assert verdict == "not computed" and "no verdict" in why


def test_the_learning_curve_fits_get_the_same_sample_weights(rng):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    seen = []

    class Spy(LogisticRegression):
        def fit(self, X, y, sample_weight=None):
            seen.append(None if sample_weight is None else len(sample_weight))
            return super().fit(X, y, sample_weight=sample_weight)

    X = rng.normal(size=(120, 3))
    y = (X[:, 0] > 0.8).astype(int)
    w = np.where(y == 1, 3.0, 1.0)
    lc = compute_learning_curve(Spy(), X, y, cv=StratifiedKFold(3), scoring="balanced_accuracy",
                                train_sizes=(0.5, 1.0), fit_params={"sample_weight": w})
    assert seen and all(s is not None for s in seen)
    assert sorted(set(seen)) == sorted(set(lc["train_sizes"]))  # weights cut to each fit's rows
    assert lc["explanation"].startswith("scored by balanced_accuracy")


def test_the_model_file_name_is_checked_before_training(tmp_path, rng, monkeypatch):
    tab = Table({"a": rng.normal(size=60), "y": rng.normal(size=60)})
    tab.write(tmp_path / "t.csv")
    import importlib

    train_module = importlib.import_module("serendip.learn.train")  # the package attribute is the function

    def boom(*a, **k):
        raise AssertionError("trained before checking the output name")

    monkeypatch.setattr(train_module, "train", boom)
    with pytest.raises(ValueError, match=r"\.skops \(preferred\) or \.joblib"):
        train_table(tmp_path / "t.csv", "y", tmp_path / "m.pkl", features=["a"])


def test_wrong_task_for_the_target_gets_a_plain_message(rng):
    X = rng.normal(size=(200, 2))
    with pytest.raises(ValueError, match="needs a numeric target"):
        train(X, np.where(X[:, 0] > 0, "GALAXY", "STAR"), task="regression", **FAST)
    with pytest.raises(ValueError, match="looks continuous") as err:
        train(X, X[:, 1], task="classification", **FAST)
    assert len(str(err.value)) < 300


def test_predictions_say_how_many_features_were_imputed(tmp_path, rng):
    n = 150
    tab = Table({"objid": np.arange(n), "a": rng.normal(size=n), "b": rng.normal(size=n)})
    tab["y"] = 2 * tab["a"] + tab["b"]
    tab.write(tmp_path / "t.fits")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, written = train_table(tmp_path / "t.fits", "y", tmp_path / "m.joblib", features=["a", "b"],
                                 algorithm="rf", report=False, model_params={"n_estimators": 20}, **FAST)
    new = tab[:3].copy()
    new["a"] = MaskedColumn(np.asarray(new["a"]), mask=[True, False, True])
    new["b"] = MaskedColumn(np.asarray(new["b"]), mask=[True, False, False])
    new.write(tmp_path / "new.fits")
    out = predict_table(written["model"], tmp_path / "new.fits", tmp_path / "p.csv", trusted=True)
    assert list(out["n_features_imputed"]) == [2, 0, 1]


def test_cli_can_say_the_target_is_not_a_redshift(tmp_path, rng):
    from serendip.cli import main

    n = 150
    tab = Table({"u": rng.normal(18, 1, n), "g": rng.normal(17, 1, n)})
    tab["z"] = tab["g"] - 0.5 + rng.normal(0, 0.1, n)  # the z band, not a redshift
    tab.write(tmp_path / "mags.csv")
    rc = main(["learn", "train", str(tmp_path / "mags.csv"), "--target", "z", "--features", "u", "g",
               "--algorithm", "rf", "--no-redshift", "--cv", "3", "--n-iter", "1", "--no-report",
               "-o", str(tmp_path / "m.joblib")])
    assert rc in (0, None)
    import json

    meta = json.loads((tmp_path / "m.joblib.json").read_text())
    assert "sigma_nmad" not in json.dumps(meta.get("test_scores", meta))


def test_a_feature_that_codes_the_class_is_flagged(rng):
    n = 200
    y = np.where(rng.random(n) > 0.5, "RR Lyrae", "EB")
    X = np.column_stack([rng.normal(size=n), (y == "EB").astype(float)])  # the class as a number
    with pytest.warns(UserWarning, match="'code' alone names the class"):
        train(X, y, feature_names=["period", "code"], algorithm="rf", model_params={"n_estimators": 10}, **FAST)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        train(X[:, :1], y, feature_names=["period"], algorithm="rf", model_params={"n_estimators": 10}, **FAST)


def test_integer_classes_with_missing_values_stay_integers(rng):
    n = 240
    x = rng.normal(size=n)
    code = MaskedColumn(np.where(x > 0, 4, 7), mask=np.arange(n) % 10 == 0)
    tab = Table({"a": x, "b": rng.normal(size=n), "LCtype": code})
    X, y, _ = select_features(tab, "LCtype", ["a", "b"])
    with pytest.warns(UserWarning, match="dropped 24"):
        res = train(X, y, algorithm="rf", task="classification", model_params={"n_estimators": 10}, **FAST)
    assert sorted(str(c) for c in res.model.classes_) == ["4", "7"]
