"""serendip.learn.local_linear: the local linear estimate against a plain per-object version."""
from __future__ import annotations

import numpy as np
import pytest

from serendip.learn.local_linear import LocalLinearEstimate


def _plain_local_linear(X_train, y_train, X_query, k, ridge=1e-3, leave_one_out=False):
    """One object at a time: brute-force distances, a stable sort, one least-squares solve each."""
    X_train = np.asarray(X_train, float)
    center, scale = X_train.mean(axis=0), X_train.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    A = (X_train - center) / scale
    Q = (np.asarray(X_query, float) - center) / scale
    k = min(k, A.shape[0] - 1)
    out = []
    for i, q in enumerate(Q):
        d = np.sqrt(((A - q) ** 2).sum(axis=1))
        if leave_one_out:
            d[i] = np.inf
        near = np.argsort(d, kind="stable")[:k]
        design = np.column_stack([np.ones(k), A[near] - q])
        # the ridge as extra rows: sqrt(ridge * k) on each slope, nothing on the intercept
        extra = np.sqrt(ridge * k) * np.eye(design.shape[1])[1:]
        coef = np.linalg.lstsq(np.vstack([design, extra]),
                               np.concatenate([np.asarray(y_train, float)[near], np.zeros(len(extra))]),
                               rcond=None)[0]
        out.append(coef[0])
    return np.array(out)


def _data(rng, n=300, p=3):
    X = rng.normal(size=(n, p)) * [1.0, 10.0, 0.1][:p] + 5.0
    y = np.sin(X[:, 0]) + 0.05 * X[:, 1] + 3 * X[:, 2] + 0.01 * rng.normal(size=n)
    return X, y


def test_transform_matches_plain_version(rng):
    X, y = _data(rng)
    Xq = _data(rng, n=40)[0]
    est = LocalLinearEstimate(n_neighbors=25).fit(X, y)
    out = est.transform(Xq)
    assert out.shape == (40, 4)
    np.testing.assert_array_equal(out[:, :3], Xq)
    np.testing.assert_allclose(out[:, 3], _plain_local_linear(X, y, Xq, 25), rtol=1e-9, atol=1e-12)
    assert list(est.get_feature_names_out(["a", "b", "c"])) == ["a", "b", "c", "local_linear_estimate"]


def test_fit_transform_is_leave_one_out(rng):
    X, y = _data(rng, n=200)
    out = LocalLinearEstimate(n_neighbors=15, ridge=0.01).fit_transform(X, y)
    plain = _plain_local_linear(X, y, X, 15, ridge=0.01, leave_one_out=True)
    np.testing.assert_allclose(out[:, 3], plain, rtol=1e-9, atol=1e-12)
    # not the in-sample fit, in which each row is its own nearest neighbour
    in_sample = LocalLinearEstimate(n_neighbors=15, ridge=0.01).fit(X, y).transform(X)[:, 3]
    assert np.abs(in_sample - y).mean() < np.abs(out[:, 3] - y).mean()


def test_blocks_and_duplicates(rng, monkeypatch):
    import serendip.learn.local_linear as LL

    X, y = _data(rng, n=120)
    X[60:70] = X[50:60]  # exact duplicates: ties at distance 0 with a row's own index
    whole = LocalLinearEstimate(n_neighbors=10).fit_transform(X, y)[:, 3]
    monkeypatch.setattr(LL, "_BLOCK_ELEMENTS", 7 * 10 * 4)  # blocks of 7 rows
    blocked = LocalLinearEstimate(n_neighbors=10).fit_transform(X, y)[:, 3]
    np.testing.assert_allclose(blocked, whole, rtol=1e-12)
    # a duplicate's estimate never uses its own target: change it and its estimate stays put
    y2 = y.copy()
    y2[55] += 100.0
    again = LocalLinearEstimate(n_neighbors=10).fit_transform(X, y2)[:, 3]
    assert again[55] == pytest.approx(whole[55], abs=1e-9)
    assert abs(again[65] - whole[65]) > 1.0  # its twin does see it


def test_recovers_a_plane_exactly(rng):
    X = rng.uniform(-1, 1, size=(500, 4))
    y = 2.0 + X @ [1.0, -3.0, 0.5, 2.0]
    est = LocalLinearEstimate(n_neighbors=30, ridge=0.0).fit(X, y)
    Xq = rng.uniform(-1, 1, size=(50, 4))
    np.testing.assert_allclose(est.transform(Xq)[:, 4], 2.0 + Xq @ [1.0, -3.0, 0.5, 2.0], atol=1e-9)


def test_bad_input_is_named(rng):
    X, y = _data(rng, n=50)
    with pytest.raises(ValueError, match="needs the target"):
        LocalLinearEstimate().fit_transform(X)
    with pytest.raises(ValueError, match="n_neighbors"):
        LocalLinearEstimate(n_neighbors=0).fit(X, y)
    with pytest.raises(ValueError, match="2 features, but LocalLinearEstimate is expecting 3 features"):
        LocalLinearEstimate(n_neighbors=5).fit(X, y).transform(X[:, :2])
    with pytest.raises(ValueError, match="NaN|infinity"):
        LocalLinearEstimate(n_neighbors=5).fit(np.where(X > 5.5, np.nan, X), y)
    # more neighbours than rows: every other row is used
    est = LocalLinearEstimate(n_neighbors=500).fit(X, y)
    assert est.n_neighbors_ == 49
    np.testing.assert_allclose(est.fit_transform(X, y)[:, 3],
                               _plain_local_linear(X, y, X, 500, leave_one_out=True), rtol=1e-9, atol=1e-12)


def test_on_by_default_for_boosted_regression_on_many_rows():
    from serendip.learn.train import LOCAL_LINEAR_MIN_ROWS, build_pipeline

    pipe, _ = build_pipeline("gbt", "regression", n_features=5, n_train=LOCAL_LINEAR_MIN_ROWS)
    assert list(pipe.named_steps)[:3] == ["impute", "local", "rotate"]
    for kw in (dict(algorithm="gbt", task="classification"), dict(algorithm="rf", task="regression"),
               dict(algorithm="gbt", task="regression", n_train=LOCAL_LINEAR_MIN_ROWS - 1),
               dict(algorithm="gbt", task="regression", n_features=50),
               dict(algorithm="gbt", task="regression", local_linear=False)):
        pipe, _ = build_pipeline(**{"n_features": 5, "n_train": 5000, **kw})
        assert "local" not in pipe.named_steps, kw
    with pytest.raises(ValueError, match="local_linear=True is for regression"):
        build_pipeline("gbt", "classification", n_features=5, n_train=5000, local_linear=True)


def test_trained_model_with_the_estimate_saves_and_predicts(tmp_path, rng):
    from serendip.learn import load_model, save_model, train

    n = 1500
    X = rng.uniform(0, 1, (n, 3))
    z = 0.5 * X[:, 0] ** 2 + 0.2 * X[:, 1] + 0.005 * rng.normal(size=n)
    res = train(X, z, algorithm="gbt", target_name="z", cv=3, n_iter=1, progress=False,
                learning_curve=False, importances=False, search_max_rows=None,
                model_params={"max_iter": 60})
    assert "local" in res.model.named_steps
    assert res.test_scores["r2"] > 0.95
    for ext in (".skops", ".joblib"):
        path = save_model(res, tmp_path / f"m{ext}")
        loaded = load_model(path, trusted=True)
        np.testing.assert_array_equal(loaded.model.predict(X[:50]), res.model.predict(X[:50]))
    # the estimate the trees see on new objects is the plain local linear fit
    Xt = res.model[:1].transform(X)
    local = res.model.named_steps["local"]
    np.testing.assert_allclose(local.transform(X[:20])[:, 3],
                               _plain_local_linear(local.X_fit_ * local.scale_ + local.center_, local.y_fit_,
                                                   X[:20], local.n_neighbors_), rtol=1e-7, atol=1e-10)
    assert Xt.shape == (n, 3)


def test_summary_and_report_name_the_derived_features(tmp_path, rng):
    from serendip.learn import train

    n = 1400  # 1,120 training rows: above LOCAL_LINEAR_MIN_ROWS
    X = rng.uniform(0, 1, (n, 3))
    z = 0.4 * X[:, 0] + 0.2 * X[:, 1] ** 2 + 0.005 * rng.normal(size=n)
    kw = dict(target_name="z", cv=3, n_iter=1, progress=False, learning_curve=False, importances=False,
              search_max_rows=None, model_params={"max_iter": 20})
    res = train(X, z, algorithm="gbt", **kw)
    said = res.derived_features()
    assert "local linear estimate of the target from the 150 nearest training objects" in said
    assert "keeps the training features" in said and "principal components" in said
    assert said in res.summary_text()
    assert "local linear estimate" in res.report(tmp_path / "r.html").read_text()
    plain = train(X, z, algorithm="gbt", local_linear=False, rotate=False, **kw)
    assert plain.derived_features() == "" and "computes" not in plain.summary_text()


def test_no_ridge_with_degenerate_neighbours_still_fits():
    """ridge=0 with a constant feature or duplicate rows made the local system singular (LinAlgError)."""
    X = np.c_[np.arange(10.0), np.ones(10)]  # the second feature is constant
    y = 2.0 * np.arange(10.0) + 1
    out = LocalLinearEstimate(n_neighbors=5, ridge=0).fit(X, y).transform(X[:3] + [0.5, 0.0])[:, -1]
    np.testing.assert_allclose(out, 2.0 * (np.arange(3) + 0.5) + 1, atol=1e-9)  # still the exact line
    dup = np.repeat(np.arange(6.0)[:, None], 2, axis=0)
    est = LocalLinearEstimate(n_neighbors=4, ridge=0).fit(np.c_[dup, dup], np.repeat(np.arange(6.0), 2))
    assert np.all(np.isfinite(est.transform(np.c_[dup, dup])[:, -1]))
    with pytest.raises(ValueError, match="ridge must be at least 0"):
        LocalLinearEstimate(ridge=-1).fit(X, y)


def test_derived_features_of_a_vote_read_the_fitted_members():
    """The unfitted templates said 150 neighbours where the fitted estimate used 79."""
    from types import SimpleNamespace

    from sklearn.ensemble import VotingRegressor
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline

    from serendip.learn.train import TrainResult

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(80, 3)), rng.normal(size=80)
    pipe = Pipeline([("local", LocalLinearEstimate()), ("model", Ridge())])
    vote = VotingRegressor([("a", pipe), ("b", Ridge())]).fit(X, y)
    text = TrainResult.derived_features(SimpleNamespace(model=vote))
    assert "from the 79 nearest" in text
