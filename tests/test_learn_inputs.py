"""serendip.learn: awkward inputs (colour bands vs the target, missing targets, labels, groups)."""
from __future__ import annotations

import importlib
import logging
import warnings

import numpy as np
import pytest
from astropy.table import MaskedColumn, Table

from serendip.learn import train
from serendip.learn.tables import apply_recipe, predict_table, select_features, train_table
from serendip.learn.train import _split, prepare_xy

pd = pytest.importorskip("pandas")

FAST = dict(cv=2, n_iter=2, progress=False, learning_curve=False, importances=False, algorithm="rf",
            model_params={"n_estimators": 20})


def _mags(n=120, seed=0, z_name="z_mag"):
    rng = np.random.default_rng(seed)
    r = rng.uniform(16, 19, n)
    cols = {"u": r + 1.5 + 0.1 * rng.normal(size=n), "g": r + 0.6 + 0.1 * rng.normal(size=n), "r": r,
            "i": r - 0.3 + 0.1 * rng.normal(size=n), z_name: r - 0.5 + 0.1 * rng.normal(size=n)}
    return cols, rng


# --- 1. colours never use the target as a band -----------------------------------------------
def test_colors_take_z_mag_not_the_redshift_target():
    cols, rng = _mags()
    tab = Table({**cols, "z": rng.uniform(0, 1, 120)})
    X, _, recipe = select_features(tab, "z", colors="ugriz")
    assert recipe["bands"] == {"u": "u", "g": "g", "r": "r", "i": "i", "z": "z_mag"}
    assert np.allclose(X["i-z"], tab["i"] - tab["z_mag"])
    # at predict time the recorded column is used, whether or not the table has a `z` column
    for t in (tab, tab[["u", "g", "r", "i", "z_mag"]]):
        assert np.allclose(apply_recipe(t, recipe)["i-z"], tab["i"] - tab["z_mag"])
    # the target alone cannot be the z magnitude
    only_target = Table({k: v for k, v in cols.items() if k != "z_mag"} | {"z": tab["z"]})
    with pytest.raises(ValueError, match=r"band 'z'.*\['z'\] is the target"):
        select_features(only_target, "z", colors="ugriz")


def test_colors_prefer_explicit_magnitude_names_and_reject_ambiguous_bands():
    cols, rng = _mags(z_name="z")
    cls = rng.integers(0, 2, 120)
    # the SDSS benchmark layout: bare letters, target `redshift`: unchanged
    sdss = Table({**cols, "redshift": rng.uniform(0, 1, 120)})
    X, _, recipe = select_features(sdss, "redshift", colors="ugriz")
    assert X.colnames == ["u-g", "g-r", "r-i", "i-z", "r"]
    assert recipe["bands"] == {b: b for b in "ugriz"}
    # an explicit magnitude name wins over the bare letter
    tab = Table({**cols, "zmag": cols["z"] + 0.01, "cls": cls})
    X, _, recipe = select_features(tab, "cls", colors="ugriz")
    assert recipe["bands"]["z"] == "zmag"
    assert np.allclose(X["i-z"], tab["i"] - tab["zmag"])
    # two explicit names for one band: an error naming both
    tab = Table({**cols, "z_mag": cols["z"], "modelMag_z": cols["z"], "cls": cls})
    with pytest.raises(ValueError, match=r"band 'z' is ambiguous.*'z_mag', 'modelMag_z'"):
        select_features(tab, "cls", colors="ugriz")


def test_train_and_predict_table_with_target_z_use_z_mag(tmp_path):
    cols, rng = _mags(n=160)
    path = tmp_path / "photo.csv"
    Table({**cols, "z": rng.uniform(0, 1, 160)}).write(path)  # a random target: nothing to learn
    res, written = train_table(path, "z", tmp_path / "m.joblib", colors="ugriz", report=False, **FAST)
    assert res.feature_recipe["bands"]["z"] == "z_mag"
    assert res.test_scores["r2"] < 0.5  # with the target as the z band it was ~0.99
    new = tmp_path / "new.csv"
    Table(cols).write(new)  # no `z` column at all
    out = predict_table(written["model"], new, tmp_path / "pred.csv", trusted=True)
    assert len(out) == 160 and np.isfinite(np.asarray(out["z_pred"], dtype=float)).all()


# --- 2. / 3. missing targets: masked astropy, pandas NA ---------------------------------------
def test_masked_integer_and_string_targets_drop_masked_rows():
    rng = np.random.default_rng(1)
    n = 120
    X = rng.normal(size=(n, 2))
    cls = np.where(X[:, 0] > 0, 1, 2)
    mask = np.arange(n) < 10
    with pytest.warns(UserWarning, match="dropped 10 of 120"):
        res = train(X, MaskedColumn(cls, mask=mask, name="cls"), **FAST)
    assert list(res.classes) == [1, 2]
    assert sum(res.summary["class_counts"].values()) + res.summary["n_test"] == 110
    with pytest.warns(UserWarning, match="dropped 10 of 120"):
        _, ys, _, _, keep = prepare_xy(X, MaskedColumn(np.where(cls == 1, "G", "S"), mask=mask))
    assert set(ys) == {"G", "S"} and not keep[:10].any() and keep[10:].all()


@pytest.mark.parametrize("dtype", ["string", "Int64", "object", "boolean"])
def test_pandas_na_in_the_target_drops_rows(dtype):
    X = np.arange(20.0).reshape(10, 2)
    values = {"string": list("ababababab"), "Int64": [1, 2] * 5, "object": list("ababababab"),
              "boolean": [True, False] * 5}[dtype]
    y = pd.Series(values, dtype=dtype)
    y[[0, 3]] = pd.NA
    with pytest.warns(UserWarning, match="dropped 2 of 10"):
        Xa, ya, _, _, keep = prepare_xy(X, y)
    assert ya.shape == (8,) and Xa.shape == (8, 2) and not keep[[0, 3]].any()
    if dtype == "Int64":
        assert ya.dtype.kind == "i" and set(ya) == {1, 2}


# --- 4. integer column labels ------------------------------------------------------------------
def test_dataframe_with_integer_column_labels():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(100, 3))
    y = (X[:, 0] > 0).astype(int)
    res = train(pd.DataFrame(X), y, **FAST)
    assert res.feature_names == ["0", "1", "2"]
    assert np.array_equal(res.predict(pd.DataFrame(X[:5])), res.predict(X[:5]))


# --- 5. constant regression target -------------------------------------------------------------
def test_constant_regression_target_is_an_error():
    X = np.random.default_rng(3).normal(size=(60, 3))
    with pytest.raises(ValueError, match=r"target 'flux' is constant.*1\.5"):
        train(X, pd.Series(np.full(60, 1.5), name="flux"), **FAST)


# --- 6. default features: the group column and target-derived columns -------------------------
def test_default_features_skip_group_and_only_target_derived_columns(caplog):
    rng = np.random.default_rng(4)
    n = 40
    cols = {c: rng.normal(size=n) for c in ("u", "z_mag", "zmag", "z_err", "zErr", "zWarning", "z_noqso",
                                          "healpix", "zoom")}
    tab = Table({"objid": np.arange(n), **cols, "z": rng.uniform(0, 1, n)})
    with caplog.at_level(logging.INFO, logger="serendip"):
        X, _, recipe = select_features(tab, "z", group="healpix")
    assert X.colnames == ["u", "z_mag", "zmag", "zoom"]
    text = caplog.text
    assert "derived from the target 'z'" in text and "'zWarning'" in text and "'z_noqso'" in text
    assert "group column" in text and "'healpix'" in text


def test_train_table_leaves_the_group_column_out_of_the_features(tmp_path):
    rng = np.random.default_rng(5)
    n = 120
    a, b = rng.normal(size=(2, n))
    path = tmp_path / "g.csv"
    Table({"a": a, "b": b, "healpix": np.repeat(np.arange(12), 10), "cls": (a > 0).astype(int)}).write(path)
    res, _ = train_table(path, "cls", group="healpix", report=False, **FAST)
    assert res.feature_names == ["a", "b"]
    assert res.summary["split"].startswith("grouped")


# --- 7. grouped splits ---------------------------------------------------------------------------
@pytest.mark.parametrize("n_groups", [2, 3])
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_too_few_groups_is_a_clear_error(n_groups, task):
    rng = np.random.default_rng(6)
    X = rng.normal(size=(90, 2))
    y = (X[:, 0] > 0).astype(int) if task == "classification" else X[:, 0]
    groups = np.arange(90) % n_groups
    with pytest.raises(ValueError, match=rf"only {n_groups} group\(s\); a grouped split needs at least 4"):
        train(X, y, task=task, groups=groups, **{**FAST, "cv": 3})


@pytest.mark.parametrize("test_size", [0.2, 0.4, 0.6])
def test_grouped_classification_holds_out_about_test_size(test_size):
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 1000)
    groups = np.repeat(np.arange(100), 10)
    tr, te, kind = _split(y, "classification", test_size, groups, 0)
    assert abs(te.size / 1000 - test_size) < 0.05
    assert not set(groups[tr]) & set(groups[te]) and kind == "grouped stratified"


def test_grouped_split_records_and_warns_about_the_actual_fraction():
    rng = np.random.default_rng(8)
    n = 200
    X = rng.normal(size=(n, 2))
    y = X[:, 0] + 0.1 * rng.normal(size=n)
    groups = np.r_[np.zeros(160, int), np.repeat([1, 2, 3, 4], 10)]  # one group holds 80% of the rows
    with pytest.warns(UserWarning, match="grouped split holds out .* not the requested test_size=0.2"):
        res = train(X, y, groups=groups, **FAST)
    assert res.summary["test_fraction"] == pytest.approx(res.summary["n_test"] / n, abs=1e-4)
    assert res.summary["test_size"] == 0.2


# --- smell: mistyped model_params -----------------------------------------------------------------
def test_unknown_model_params_warn():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(80, 2))
    y = (X[:, 0] > 0).astype(int)
    with pytest.warns(UserWarning, match=r"model_params \['n_estimator'\] ignored"):
        train(X, y, **{**FAST, "model_params": {"n_estimators": 20, "n_estimator": 5}})
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        train(X, y, **FAST)


def test_masked_magnitudes_become_nan_colours_not_their_fill_values():
    from astropy.table import MaskedColumn, Table

    from serendip.learn.tables import color_features

    tab = Table({b: MaskedColumn([18.0, 19.0, 20.0], mask=[False, b == "g", False], fill_value=-9999.0)
                 for b in "ugriz"})
    names, arrays = color_features(tab, "ugriz")
    cols = dict(zip(names, arrays))
    assert np.isnan(cols["u-g"][1]) and np.isnan(cols["g-r"][1])
    assert cols["u-g"][0] == 0.0 and cols["r-i"][1] == 0.0


# --- review fixes (2026-11-26) --------------------------------------------------------------------
def test_a_class_that_the_grouped_split_puts_only_in_the_test_split_is_refused():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(6), 10)
    y = np.where(groups % 2 == 0, "GALAXY", "STAR").astype("<U6")
    y[groups == 0] = "QSO"  # one group only: wherever it goes, one side lacks QSOs
    X = np.column_stack([rng.normal(size=60) + 3 * (y == "STAR") + 6 * (y == "QSO"), rng.normal(size=60)])
    outcomes = set()
    for seed in range(6):
        try:
            res = train(X, y, groups=groups, random_state=seed, **{**FAST, "cv": 2})
        except ValueError as exc:
            assert "class(es) ['QSO']" in str(exc) and "test split" in str(exc)
            outcomes.add("refused")
        else:
            assert "QSO" in set(res.model.classes_)  # trained on it: it was in the training split
            outcomes.add("trained")
    assert "refused" in outcomes


def test_pca_is_sized_for_the_rows_a_cross_validation_fit_sees():
    """cv=2 fits see half the training rows, fewer than a PCA sized on all of them: it crashed."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 200))
    y = np.where(X[:, 0] > 0, "star", "galaxy")
    res = train(X, y, pca=True, raw=True, **{**FAST, "cv": 2, "algorithm": "svm", "model_params": None})
    assert res.best_params.get("pca__n_components", 0) <= 24  # 48 training rows, 24 per fit


def test_masked_quantity_columns_and_nullable_booleans_are_missing_values():
    import astropy.units as u
    from astropy.table import QTable
    from astropy.utils.masked import Masked

    pd = pytest.importorskip("pandas")
    q = QTable({"f": Masked([3.0, 999999.0, 7.0, 9.0] * u.mag, mask=[False, True, False, False]),
                "g": [1.0, 2.0, 3.0, 4.0] * u.mag})
    X, _, names, _, _ = prepare_xy(q)
    assert np.isnan(X[1, 0]) and X[2, 0] == 7.0 and names == ["f", "g"]
    _, y, _, _, keep = prepare_xy(np.ones((4, 1)), Masked([1.0, 2.0, 3.0, 4.0] * u.km, mask=[0, 0, 1, 0]))
    assert keep.tolist() == [True, True, False, True] and y.tolist() == [1.0, 2.0, 4.0]
    df = pd.DataFrame({"flag": pd.array([True, None, False], dtype="boolean"), "x": [1.0, 2.0, 3.0]})
    X, *_ = prepare_xy(df)
    assert X[0, 0] == 1.0 and np.isnan(X[1, 0]) and X[2, 0] == 0.0


def test_recommend_counts_only_rows_with_a_target(tmp_path):
    from serendip.learn import recommend
    from serendip.learn.tables import recommend_table

    y = np.array([0, 1] * 50 + [np.nan] * 3)
    recs = recommend(np.zeros((103, 3)), y)
    assert not any("rarest class has only 3" in c for r in recs for c in r.caveats)
    assert any("100 examples" in t for r in recs for t in r.reasons)
    tab = Table({"a": np.arange(30.0), "cls": MaskedColumn([1, 2, 3] * 10, mask=[False] * 20 + [True] * 10)})
    ref = recommend(np.zeros((20, 1)), np.array([1, 2, 3] * 10)[:20])
    tab.write(tmp_path / "t.ecsv")
    got = recommend_table(tmp_path / "t.ecsv", "cls")
    assert [(r.algorithm, r.score) for r in got] == [(r.algorithm, r.score) for r in ref]


def test_tiny_data_does_not_call_every_feature_the_target_in_disguise():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(8, 3))
    y = np.array([0, 1] * 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails here
        from serendip.learn.train import _warn_target_in_disguise

        _warn_target_in_disguise(X, y, ["x0", "x1", "x2"])
    code = np.column_stack([y * 2.0 + 1.0] * 1)  # a real code of the class is still caught
    with pytest.warns(UserWarning, match="alone names the class"):
        _warn_target_in_disguise(np.repeat(code, 3, axis=0), np.repeat(y, 3), ["code"])


def test_learning_curve_verdict_when_validation_beats_training():
    from serendip.learn.diagnostics import learning_curve_verdict

    verdict, text = learning_curve_verdict([0.6, 0.8], [0.7, 0.95])
    assert verdict == "fine" and "above training" in text and "agree within" not in text
    verdict, text = learning_curve_verdict([0.5, 0.55], [0.8, 0.9])
    assert verdict != "underfitting"  # validation 0.9 is not an underfit


def test_feature_names_with_a_named_table_and_spectra_on_another_grid():
    pd = pytest.importorskip("pandas")
    from serendip.spectra import Spectra

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"g": rng.normal(size=60), "r": rng.normal(size=60)})
    with pytest.raises(ValueError, match="feature_names differs from the table's own column names"):
        train(df, (df["g"] > 0).astype(int), feature_names=["g_mag", "r_mag"], **FAST)
    same = train(df, (df["g"] > 0).astype(int), feature_names=["g", "r"], **FAST)  # its own names: fine
    assert same.predict(df).shape == (60,)
    w = np.linspace(4000, 5000, 20)
    flux = rng.normal(1, 0.1, (60, 20))
    flux[:30, 5] += 1
    res = train(Spectra(w, flux), np.r_[np.ones(30), np.zeros(30)].astype(int), raw=True, **FAST)
    assert res.predict(Spectra(w, flux[:3])).shape == (3,)
    with pytest.raises(ValueError, match="feature"):
        res.predict(Spectra(w + 2000, flux[:3]))  # same pixel count, another grid


def test_candidates_are_recommended_from_the_training_rows_only(monkeypatch):
    tr = importlib.import_module("serendip.learn.train")  # the module (the package attribute is the function)
    seen = []
    real = tr.recommend
    monkeypatch.setattr(tr, "recommend", lambda X, y, **kw: (seen.append(len(y)), real(X, y, **kw))[1])
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 3))
    train(X, (X[:, 0] > 0).astype(int), **FAST)
    assert seen == [80]  # not 100: the 20 test rows are not looked at


def test_integer_target_with_rare_values_points_to_regression():
    X = np.random.default_rng(0).normal(size=(40, 2))
    y = np.arange(40) % 13
    with pytest.raises(ValueError, match="task='regression'"):
        train(X, y, task="classification", **{**FAST, "cv": 3})
