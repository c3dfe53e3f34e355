"""serendip.learn: metrics, recommender, train (synthetic data; fast)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from serendip.learn import infer_task, recommend, train
from serendip.learn import metrics as M
from serendip.learn.diagnostics import contiguous_groups, learning_curve_verdict, permutation_importances

FAST = dict(cv=3, n_iter=3, progress=False, learning_curve=False, importances=False,
            model_params={"n_estimators": 40})


def _blobs(rng, n=240, p=5, k=3, sep=3.0):
    centers = rng.normal(0, sep, size=(k, p))
    y = np.repeat(np.arange(k), n // k)
    X = centers[y] + rng.normal(size=(y.size, p))
    return X, y


# --- metrics: compare with plain, obviously-correct versions ---------------------------------
def _plain_nmad(zp, zt):
    dz = [(a - b) / (1 + b) for a, b in zip(zp, zt)]
    med = sorted(dz)[len(dz) // 2] if len(dz) % 2 else 0.5 * (sorted(dz)[len(dz) // 2 - 1] + sorted(dz)[len(dz) // 2])
    dev = sorted(abs(d - med) for d in dz)
    m = len(dev)
    mad = dev[m // 2] if m % 2 else 0.5 * (dev[m // 2 - 1] + dev[m // 2])
    return 1.4826 * mad


def test_redshift_metrics_match_plain_versions(rng):
    zt = rng.uniform(0, 1, 501)
    zp = zt + rng.normal(0, 0.03, zt.size) * (1 + zt)
    zp[:10] += 0.5  # catastrophic outliers
    assert M.sigma_nmad(zp, zt) == pytest.approx(_plain_nmad(zp, zt), rel=1e-12)
    plain_cat = sum(abs((a - b) / (1 + b)) > 0.15 for a, b in zip(zp, zt)) / zt.size
    assert M.catastrophic_fraction(zp, zt) == pytest.approx(plain_cat)
    assert plain_cat >= 10 / zt.size
    rm = M.regression_metrics(zt, zp, redshift=True)
    assert rm["sigma_nmad"] == pytest.approx(_plain_nmad(zp, zt))
    assert rm["rmse"] == pytest.approx(np.sqrt(np.mean((zp - zt) ** 2)))
    assert rm["bias"] == pytest.approx(np.mean(zp - zt))
    # σ_NMAD of Gaussian Δz recovers σ
    big_t = rng.uniform(0, 2, 200_000)
    big_p = big_t + 0.02 * (1 + big_t) * rng.normal(size=big_t.size)
    assert M.sigma_nmad(big_p, big_t) == pytest.approx(0.02, rel=0.02)
    with pytest.raises(ValueError, match="values"):
        M.sigma_nmad([0.1, 0.2], [0.1])


def test_recall_at_precision_matches_threshold_scan(rng):
    y = (rng.random(400) < 0.2).astype(int)
    s = y * 1.0 + rng.normal(0, 0.6, y.size)
    rec, prec, thr = M.recall_at_precision(y, s, 0.9)
    best = 0.0
    for t in np.unique(s):
        pred = s >= t
        if pred.sum() and (y[pred] == 1).mean() >= 0.9:
            best = max(best, (pred & (y == 1)).sum() / (y == 1).sum())
    assert rec == pytest.approx(best)
    assert prec >= 0.9


def test_classification_metrics_binary_and_table():
    y = np.array([0, 0, 0, 1, 1, 1])
    yp = np.array([0, 0, 1, 1, 1, 1])
    proba = np.column_stack([1 - np.array([.1, .2, .6, .7, .8, .9]), [.1, .2, .6, .7, .8, .9]])
    out = M.classification_metrics(y, yp, proba=proba, classes=[0, 1])
    assert out["accuracy"] == pytest.approx(5 / 6)
    assert out["balanced_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    assert out["roc_auc"] == pytest.approx(1.0)
    assert list(out["per_class"]["recall"]) == pytest.approx([2 / 3, 1.0])


# --- recommender --------------------------------------------------------------------------
def test_infer_task():
    assert infer_task(np.array(["STAR", "QSO", "STAR"])) == "classification"
    assert infer_task(np.array([0, 1, 1, 0, 1])) == "classification"
    assert infer_task(np.linspace(0, 1, 50)) == "regression"
    assert infer_task(np.arange(100)) == "regression"  # too many distinct integers


def test_recommend_raw_spectra_many_examples_picks_cnn_first():
    X = np.zeros((1500, 800), dtype=np.float32)
    y = np.arange(1500) % 3
    recs = recommend(X, y, raw=True)
    assert recs[0].algorithm == "cnn"
    assert any("1000" in r for r in recs[0].reasons)
    assert [r.score for r in recs] == sorted((r.score for r in recs), reverse=True)


def test_recommend_few_raw_spectra_prefers_simple_model_with_reasons():
    X = np.zeros((228, 4464), dtype=np.float32)
    y = np.linspace(0, 75, 228)
    recs = recommend(X, y, raw=True)
    assert recs[0].algorithm in ("svm", "rf")
    assert recs[0].algorithm == "svm" and recs[0].options.get("pca")
    cnn = next(r for r in recs if r.algorithm == "cnn")
    assert cnn.score < recs[0].score and any("1000" in c for c in cnn.caveats)
    assert all(r.reasons or r.caveats for r in recs)
    assert "few examples" in " ".join(recs[0].reasons)


def test_recommend_takes_tables_as_train_does(rng):
    """An astropy Table (what select_features returns) or a DataFrame is read by its columns."""
    from astropy.table import Table

    X = rng.normal(size=(300, 4))
    y = X[:, 0] + 0.1 * rng.normal(size=300)
    ref = [(r.algorithm, r.score) for r in recommend(X, y)]
    tab = Table(X, names=["u-g", "g-r", "r-i", "r"])
    assert [(r.algorithm, r.score) for r in recommend(tab, y)] == ref
    pd = pytest.importorskip("pandas")
    assert [(r.algorithm, r.score) for r in recommend(pd.DataFrame(X), y)] == ref


def test_recommend_refuses_regression_on_class_names_as_train_does(rng):
    X = rng.normal(size=(200, 3))
    y = np.where(X[:, 0] > 0, "GALAXY", "STAR")
    with pytest.raises(ValueError, match=r"task='regression' \(CLI: --task regression\) needs a numeric target"):
        recommend(X, y, task="regression")
    with pytest.raises(ValueError, match=r"task='regression' \(CLI: --task regression\) needs a numeric target"):
        train(X, y, task="regression", algorithm="rf", **FAST)
    assert recommend(X, (X[:, 0] > 0).astype(int), task="regression")  # numbers are fine


def test_recommend_large_tabular_avoids_kernel_svm(rng):
    X = rng.normal(size=(40000, 6))
    y = rng.integers(0, 3, 40000)
    recs = recommend(X, y)
    assert recs[0].algorithm in ("rf", "gbt")
    svm = next(r for r in recs if r.algorithm == "svm")
    assert any("square" in c for c in svm.caveats)


def test_recommend_many_rows_few_features_offers_gbt_to_auto(rng):
    X = rng.normal(size=(25000, 5))
    y = rng.uniform(0, 1, 25000)
    recs = recommend(X, y)
    top = [r.algorithm for r in recs[:3]]  # what train(algorithm="auto") compares by default
    assert "gbt" in top and "rf" in top
    gbt = next(r for r in recs if r.algorithm == "gbt")
    text = " ".join(gbt.reasons)
    assert "not in the talk's table" in text and "principal components" in text


def test_rotation_features_match_plain_pca(rng):
    from serendip.learn.train import build_pipeline, rotation_features

    A = rng.normal(size=(4, 4))
    X = rng.normal(size=(300, 4)) @ A * [1.0, 5.0, 0.2, 3.0] + 7.0
    out = rotation_features(0).fit(X).transform(X)
    assert out.shape == (300, 8)
    np.testing.assert_allclose(out[:, :4], X)
    # plain version: standardise, then project on the right singular vectors (up to sign)
    Z = (X - X.mean(0)) / X.std(0)
    _, sv, Vt = np.linalg.svd(Z - Z.mean(0), full_matrices=False)
    plain = Z @ Vt.T
    comp = out[:, 4:]
    for j in range(4):
        sign = np.sign(comp[:, j] @ plain[:, j])
        np.testing.assert_allclose(sign * comp[:, j], plain[:, j] - plain[:, j].mean(), atol=1e-8)
    # decorrelated: the appended components are uncorrelated with each other
    c = np.corrcoef(comp.T)
    assert np.abs(c - np.eye(4)).max() < 1e-8
    # on by default for boosted trees on few features, off for many features, PCA and other models
    pipe, _ = build_pipeline("gbt", "regression", n_features=5, n_train=100)
    assert "rotate" in pipe.named_steps
    for kw in (dict(algorithm="gbt", n_features=50), dict(algorithm="rf", n_features=5),
               dict(algorithm="gbt", n_features=5, rotate=False)):
        pipe, _ = build_pipeline(task="regression", n_train=100, **kw)
        assert "rotate" not in pipe.named_steps


def test_rotated_boosting_splits_across_correlated_features(rng):
    # the target depends on a diagonal direction of two strongly correlated features: a few
    # axis-aligned trees approximate it poorly, the rotated features give it one split away
    n = 3000
    a = rng.normal(size=n)
    X = np.column_stack([a + 0.05 * rng.normal(size=n), a + 0.05 * rng.normal(size=n)])
    y = np.where(X[:, 0] - X[:, 1] > 0, 1.0, 0.0) + 0.01 * rng.normal(size=n)
    scores = {}
    for rotate in (False, True):
        res = train(X, y, algorithm="gbt", task="regression", rotate=rotate, local_linear=False, **{**FAST, "model_params": {
            "max_iter": 30, "max_leaf_nodes": 4, "early_stopping": False}})
        scores[rotate] = res.test_scores["r2"]
    assert scores[True] > scores[False] + 0.1


# --- diagnostics --------------------------------------------------------------------------
def test_learning_curve_verdicts():
    assert learning_curve_verdict([1.0, 1.0, 1.0], [0.6, 0.7, 0.75])[0] == "overfitting"
    assert learning_curve_verdict([0.55, 0.52, 0.5], [0.45, 0.48, 0.49])[0] == "underfitting"
    assert learning_curve_verdict([0.95, 0.94, 0.93], [0.9, 0.91, 0.92])[0] == "fine"


def test_permutation_importances_match_plain_loop(rng):
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import r2_score

    X = rng.normal(size=(200, 4))
    y = 3 * X[:, 0] + 0.5 * X[:, 2] + 0.1 * rng.normal(size=200)
    model = LinearRegression().fit(X, y)
    tab = permutation_importances(model, X, y, scoring="r2", n_repeats=4, random_state=7)
    # plain version with the same permutation sequence
    r = np.random.default_rng(7)
    base = r2_score(y, model.predict(X))
    plain = {}
    for j in range(4):
        drops = []
        for _ in range(4):
            Xp = X.copy()
            Xp[:, j] = X[r.permutation(200), j]
            drops.append(base - r2_score(y, model.predict(Xp)))
        plain[f"x{j}"] = np.mean(drops)
    for row in tab:
        assert row["importance_mean"] == pytest.approx(plain[row["feature"]], rel=1e-10, abs=1e-12)
    assert list(tab["feature"][:2]) == ["x0", "x2"]
    groups = contiguous_groups(4, 2)
    gtab = permutation_importances(model, X, y, scoring="r2", n_repeats=2, groups=groups, random_state=0)
    assert gtab["feature"][0] == "cols 0-1"


# --- train --------------------------------------------------------------------------------
def test_train_classification_auto_uses_validation_only(rng):
    X, y = _blobs(rng, n=300)
    res = train(X, y, cv=3, n_iter=3, progress=False, max_candidates=2, model_params={"n_estimators": 50})
    assert res.task == "classification"
    assert res.algorithm == res.candidates["algorithm"][np.argmax(res.candidates["cv_mean"])]
    assert len(res.cv_scores) == 3
    assert res.test_scores["balanced_accuracy"] > 0.85
    assert res.summary["n_train"] + res.summary["n_test"] == 300
    assert res.test_index.size == res.summary["n_test"]
    # held-out split is stratified: every class in the test split in proportion
    _, counts = np.unique(y[res.test_index], return_counts=True)
    assert counts.min() >= 18
    assert res.verdict in ("overfitting", "underfitting", "fine")
    assert set(res.importances["feature"]) == {f"x{j}" for j in range(5)}
    assert np.array_equal(res.predict(X[res.test_index]), res.y_pred)
    assert "per_class" in res.test_scores and len(res.test_scores["per_class"]) == 3


def test_train_binary_imbalanced_has_roc_pr(rng):
    n = 400
    y = (rng.random(n) < 0.1).astype(int)
    X = rng.normal(size=(n, 4)) + 2.0 * y[:, None]
    res = train(X, y, algorithm="rf", **FAST)
    for k in ("roc_auc", "average_precision", "recall_at_precision_0.9"):
        assert k in res.test_scores
    assert res.test_scores["roc_auc"] > 0.9
    assert res.model.named_steps["model"].class_weight == "balanced_subsample"


def test_train_redshift_regression_reports_photoz_metrics(rng):
    n = 500
    X = rng.uniform(0, 1, size=(n, 4))
    z = 0.5 * X[:, 0] + 0.3 * X[:, 1] ** 2 + 0.01 * rng.normal(size=n)
    res = train(X, z, algorithm="gbt", target_name="redshift", **FAST)
    assert res.redshift and res.task == "regression"
    assert res.scoring == "neg_sigma_nmad"
    assert 0 < res.test_scores["sigma_nmad"] < 0.05
    assert res.test_scores["catastrophic_fraction"] <= 0.02
    booster = res.model.named_steps["model"].estimator
    assert booster.loss == "absolute_error" and booster.max_features == 0.5
    lo, hi = res.test_scores["sigma_nmad_ci95_low"], res.test_scores["sigma_nmad_ci95_high"]
    assert lo <= res.test_scores["sigma_nmad"] <= hi


def test_bootstrap_interval_covers_and_shrinks(rng):
    t = rng.normal(size=2000)
    p = t + rng.normal(size=2000)
    rmse = lambda a, b: float(np.sqrt(np.mean((a - b) ** 2)))  # noqa: E731
    lo_s, hi_s = M.bootstrap_interval(rmse, t[:50], p[:50], random_state=1)
    lo_b, hi_b = M.bootstrap_interval(rmse, t, p, random_state=1)
    assert lo_b < 1.0 < hi_b
    assert (hi_b - lo_b) < 0.5 * (hi_s - lo_s)


def test_train_groups_never_split_between_train_and_test(rng):
    X, y = _blobs(rng, n=300)
    groups = np.arange(300) // 10
    res = train(X, y, algorithm="svm", groups=groups, **FAST)
    test_groups = set(groups[res.test_index])
    train_groups = set(groups) - test_groups
    assert test_groups and train_groups and not (test_groups & set(np.delete(groups, res.test_index)))


def test_train_svm_pca_for_wide_data(rng):
    n, p = 120, 300
    y = np.repeat([0, 1], n // 2)
    X = rng.normal(size=(n, p)) + 0.8 * y[:, None] * np.sin(np.arange(p) / 20)[None]
    res = train(X, y, algorithm="svm", raw=True, importances=True, cv=3, n_iter=3, progress=False,
                learning_curve=True)
    assert "pca" in res.model.named_steps
    assert res.test_scores["balanced_accuracy"] > 0.8
    assert len(res.importances) == 30  # pixel blocks, not 300 single pixels
    assert res.learning_curve["verdict"] in ("overfitting", "underfitting", "fine")


# --- bad input ----------------------------------------------------------------------------
def test_nan_target_rows_are_dropped_with_count(rng):
    X, y = _blobs(rng, n=150)
    yf = y.astype(float)
    yf[[3, 50, 90]] = np.nan
    with pytest.warns(UserWarning, match="dropped 3 of 150"):
        res = train(X, yf, algorithm="svm", **FAST)
    assert res.summary["n_train"] + res.summary["n_test"] == 147


def test_bad_inputs_give_clear_errors(rng):
    import pandas as pd

    X, y = _blobs(rng, n=60)
    with pytest.raises(ValueError, match="only one class"):
        train(X, np.zeros(60, dtype=int), task="classification", **FAST)
    with pytest.raises(ValueError, match="fewer than the cv=5"):
        train(X[:4], np.array([0, 1, 0, 1]), cv=5, progress=False)
    df = pd.DataFrame(X, columns=[f"f{j}" for j in range(5)])
    df["name"] = "abc"
    with pytest.raises(ValueError, match="'name' is not numeric"):
        train(df, y, **FAST)
    Xi = X.copy()
    Xi[2, 1] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        train(Xi, y, **FAST)
    with pytest.raises(ValueError, match="unknown algorithm"):
        train(X, y, algorithm="xgboost", **FAST)
    yr = y.copy()
    yr[0] = 7  # a class with a single example
    with pytest.raises(ValueError, match="single example"):
        train(X, yr, **FAST)


def test_predict_checks_feature_names(rng):
    import pandas as pd

    X, y = _blobs(rng, n=120)
    df = pd.DataFrame(X, columns=list("abcde"))
    res = train(df, y, algorithm="svm", **FAST)
    assert res.feature_names == list("abcde")
    with pytest.raises(ValueError, match=r"lacks feature column\(s\).*'e'"):
        res.predict(df[list("abcd")])
    with pytest.raises(ValueError, match="different order"):
        res.predict(df[list("bacde")])
    assert res.predict(df).shape == (120,)


def test_import_is_light():
    """torch and scikit-learn load only when a model is built (torch is the optional 'deep' extra)."""
    import subprocess
    import sys

    code = ("import sys, serendip.learn as L; L.recommend; "
            "print('torch' in sys.modules, 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_vote_of_two_best_candidates_matches_plain_average_and_is_kept_only_if_better(rng, tmp_path):
    from sklearn.base import clone
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold

    from serendip.learn import load_model, save_model
    from serendip.learn.train import GBT_BAGS, _try_vote, build_pipeline, one_booster

    X, y = _blobs(rng, n=300, sep=1.2)
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    tuned = []
    for algo, params, score in (("rf", {"model__n_estimators": 30}, 0.8),
                                ("gbt", {"model__estimator__max_iter": 30}, 0.9), ("ann", {}, 0.95),
                                ("svm", {"model__C": 1.0}, 0.97)):
        pipe, _ = build_pipeline(algo, "classification", n_features=5, n_train=300)
        tuned.append((algo, pipe, params, np.array([score])))
    # the best single score (here the SVM's, which cannot join the vote) is unbeatable: no vote
    assert _try_vote(tuned, "classification", X, y, None, cv, "balanced_accuracy", 1,
                     ("svm", np.array([1.01]))) is None
    model, folds, members = _try_vote(tuned, "classification", X, y, None, cv, "balanced_accuracy", 1,
                                      ("svm", np.array([0.0])))
    # the classifying ANN needs sample weights and the SVM gives no probabilities, so the vote takes
    # the two best of the others
    assert members == ["gbt", "rf"]
    plain = []
    for tr, te in cv.split(X, y):
        # with boosted trees in it, the vote is validated as it is refitted: every booster
        probs = [clone(p).set_params(**pr).fit(X[tr], y[tr]).predict_proba(X[te])
                 for a, p, pr, _ in tuned if a in members]
        plain.append(balanced_accuracy_score(y[te], np.unique(y)[np.mean(probs, axis=0).argmax(1)]))
    np.testing.assert_allclose(folds, plain, atol=1e-12)
    # ... and returned with the whole average of boosters, with the tuned parameters
    gbt = dict(model.estimators)["gbt"].named_steps["model"]
    assert gbt.n_estimators == GBT_BAGS and gbt.estimator.max_iter == 30
    assert dict(model.estimators)["rf"].named_steps["model"].n_estimators == 30
    # a fitted vote saves and loads like any model
    model.fit(X, y)
    path = save_model(model, tmp_path / "vote.skops")
    loaded = load_model(path, trusted=True)
    est = getattr(loaded, "model", loaded)
    assert np.array_equal(est.predict(X), model.predict(X))


def test_vote_against_boosted_trees_compares_both_with_every_booster(rng):
    """When the best candidate is the boosted trees, the vote must beat their full average of
    boosters on the same folds, not the one-booster score of the search (which flattered the vote)."""
    from sklearn.base import clone
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold

    from serendip.learn.train import _try_vote, build_pipeline

    X, y = _blobs(rng, n=300, sep=1.2)
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    tuned = []
    for algo, params, score in (("gbt", {"model__estimator__max_iter": 30}, 0.9),
                                ("rf", {"model__n_estimators": 1, "model__max_depth": 1}, 0.8)):
        pipe, _ = build_pipeline(algo, "classification", n_features=5, n_train=300)
        tuned.append((algo, pipe, params, np.array([score])))
    gbt_plain, vote_plain = [], []
    for tr, te in cv.split(X, y):
        probs = [clone(p).set_params(**pr).fit(X[tr], y[tr]).predict_proba(X[te]) for _, p, pr, _ in tuned]
        classes = np.unique(y)
        gbt_plain.append(balanced_accuracy_score(y[te], classes[probs[0].argmax(1)]))
        vote_plain.append(balanced_accuracy_score(y[te], classes[np.mean(probs, axis=0).argmax(1)]))
    assert np.mean(vote_plain) < np.mean(gbt_plain)  # averaging in a stump hurts here
    # a search score of 0 for gbt would let any vote win; the full-booster refit on the same folds does not
    assert _try_vote(tuned, "classification", X, y, None, cv, "balanced_accuracy", 1,
                     ("gbt", np.array([0.0]))) is None


def test_train_auto_reports_the_vote_as_a_candidate(rng):
    X, y = _blobs(rng, n=300, sep=1.0)
    res = train(X, y, cv=3, n_iter=2, progress=False, max_candidates=3, learning_curve=False, importances=False,
                model_params={"n_estimators": 30})
    names = list(res.candidates["algorithm"])
    assert res.algorithm == names[int(np.argmax(res.candidates["cv_mean"]))]
    votes = [n for n in names if n.startswith("vote(")]
    if votes:  # listed only when it validated better than every single algorithm
        cvm = dict(zip(names, res.candidates["cv_mean"]))
        assert cvm[votes[0]] > max(v for k, v in cvm.items() if k != votes[0])
    plain = train(X, y, cv=3, n_iter=2, progress=False, max_candidates=3, learning_curve=False,
                  importances=False, model_params={"n_estimators": 30}, vote=False)
    assert not any(n.startswith("vote(") for n in plain.candidates["algorithm"])


def test_one_booster_cuts_only_the_average_of_boosters():
    from sklearn.ensemble import VotingRegressor

    from serendip.learn.train import GBT_BAGS, build_pipeline, one_booster

    gbt, _ = build_pipeline("gbt", "regression", n_features=4, n_train=200)
    rf, _ = build_pipeline("rf", "regression", n_features=4, n_train=200)
    assert gbt.named_steps["model"].n_estimators == GBT_BAGS
    one = one_booster(gbt)
    assert one.named_steps["model"].n_estimators == 1
    assert gbt.named_steps["model"].n_estimators == GBT_BAGS  # a clone: the original is untouched
    assert one_booster(rf).named_steps["model"].n_estimators == rf.named_steps["model"].n_estimators
    vote = one_booster(VotingRegressor([("gbt", gbt), ("rf", rf)]))
    members = dict(vote.estimators)
    assert members["gbt"].named_steps["model"].n_estimators == 1
    assert members["rf"].named_steps["model"].n_estimators == 200


def test_gbt_search_ranks_one_booster_and_refits_the_average(rng, monkeypatch):
    import importlib

    T = importlib.import_module("serendip.learn.train")  # the package re-exports the function train

    seen = []
    real = T._search

    def spy(pipe, space, *args, **kwargs):
        seen.append(pipe.named_steps["model"].n_estimators)
        return real(pipe, space, *args, **kwargs)

    monkeypatch.setattr(T, "_search", spy)
    X = rng.normal(size=(300, 4))
    y = X[:, 0] + 0.1 * rng.normal(size=300)
    res = train(X, y, algorithm="gbt", cv=3, n_iter=2, progress=False, learning_curve=False,
                importances=False, model_params={"max_iter": 40})
    assert seen == [1]
    bag = res.model.named_steps["model"]
    assert bag.n_estimators == T.GBT_BAGS and len(bag.estimators_) == T.GBT_BAGS


def test_svr_search_does_not_depend_on_the_target_units(rng):
    from serendip.learn.train import build_pipeline

    _, space1 = build_pipeline("svm", "regression", n_features=3, n_train=200, y_std=1.0)
    _, space1000 = build_pipeline("svm", "regression", n_features=3, n_train=200, y_std=1000.0)
    np.testing.assert_allclose(np.array(space1000["model__C"]), 1000 * np.array(space1["model__C"]))
    np.testing.assert_allclose(np.array(space1000["model__epsilon"]), 1000 * np.array(space1["model__epsilon"]))
    # the same data in other units: the same choice, and predictions in the new units
    X = rng.normal(size=(240, 3))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] + 0.1 * rng.normal(size=240)
    kw = dict(algorithm="svm", cv=3, n_iter=4, progress=False, learning_curve=False, importances=False)
    a = train(X, y, **kw)
    b = train(X, 1000 * y, **kw)
    assert b.best_params["model__C"] == pytest.approx(1000 * a.best_params["model__C"], rel=1e-9)
    # equal up to libsvm's stopping tolerance, which is absolute (not scaled with the target)
    np.testing.assert_allclose(b.y_pred, 1000 * a.y_pred, atol=0.01 * 1000 * np.std(y))


def test_auto_leaves_out_what_the_recommendation_advises_against(rng, monkeypatch):
    import importlib

    from serendip.learn import recommend

    T = importlib.import_module("serendip.learn.train")
    # 80 "spectra" of 400 pixels: boosting every pixel of so few examples is advised against
    y = rng.uniform(0, 1, 80)
    X = np.sin(np.linspace(0, 6, 400)[None, :] * (1 + y[:, None])) + 0.05 * rng.normal(size=(80, 400))
    scores = {r.algorithm: r.score for r in recommend(X, y, raw=True)}
    assert scores["gbt"] < T.AUTO_MIN_SCORE <= min(scores["svm"], scores["rf"])
    kw = dict(raw=True, cv=3, n_iter=2, progress=False, learning_curve=False, importances=False, vote=False)
    res = train(X, y, **kw)
    assert sorted(res.candidates["algorithm"]) == ["rf", "svm"]
    # ... but auto always compares two algorithms, even when it advises against all but one
    monkeypatch.setattr(T, "AUTO_MIN_SCORE", 0.8)
    res = train(X, y, **kw)
    assert list(res.candidates["algorithm"]) == ["svm", "rf"]
