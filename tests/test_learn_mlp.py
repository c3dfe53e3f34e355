"""The PyTorch network average used by algorithm="ann" for regression (serendip.learn.mlp)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from serendip.learn.mlp import AUTO_STEPS, MLPEnsembleRegressor, auto_epochs  # noqa: E402

SMALL = dict(hidden=(32, 32), epochs=60, batch_size=64)


def _smooth(rng, n=1500):
    X = rng.uniform(-1, 1, (n, 3))
    y = np.sin(3 * X[:, 0]) + X[:, 1] ** 2 + 0.02 * rng.normal(size=n)
    return X, y


def test_prediction_is_the_average_of_its_networks_in_target_units(rng):
    X, y = _smooth(rng, 400)
    y = 100 + 10 * y  # far from standardised: the de-standardisation must be right
    model = MLPEnsembleRegressor(n_networks=3, random_state=0, **SMALL).fit(X, y)
    assert len(model.states_) == 3 and model.n_epochs_ == 60 and len(model.history_[0]) == 60
    xs = torch.from_numpy(((X - X.mean(0)) / X.std(0)).astype(np.float32))
    outs = []
    for state in model.states_:  # rebuild each network by hand from its stored weights
        net = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.SiLU(), torch.nn.Linear(32, 32), torch.nn.SiLU(),
                                  torch.nn.Linear(32, 1))
        net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
        with torch.no_grad():
            outs.append(net(xs)[:, 0].numpy().astype(float) * y.std() + y.mean())
    np.testing.assert_allclose(model.predict(X), np.mean(outs, axis=0), rtol=1e-6)
    # the networks differ (their own seeds), so the average is not one of them
    assert np.abs(outs[0] - outs[1]).max() > 1e-3


def test_learns_a_smooth_function_and_training_loss_falls(rng):
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import r2_score

    X, y = _smooth(rng)
    Xt, yt = _smooth(np.random.default_rng(1), 500)
    model = MLPEnsembleRegressor(n_networks=2, random_state=0, **SMALL).fit(X, y)
    r2 = r2_score(yt, model.predict(Xt))
    assert r2 > 0.97, r2
    assert r2 > r2_score(yt, LinearRegression().fit(X, y).predict(Xt)) + 0.3
    hist = np.asarray(model.history_[0])
    assert hist[-5:].mean() < 0.3 * hist[:5].mean()


def test_absolute_error_loss_ignores_gross_outliers_that_pull_the_squared_error(rng):
    n = 1500
    X = rng.uniform(-1, 1, (n, 2))
    truth = X[:, 0] + 0.5 * X[:, 1]
    y = truth + 0.01 * rng.normal(size=n)
    bad = rng.random(n) < 0.2
    y[bad] += 3.0  # catastrophic labels, all on one side
    Xt = rng.uniform(-0.9, 0.9, (400, 2))
    want = Xt[:, 0] + 0.5 * Xt[:, 1]
    l1 = MLPEnsembleRegressor(loss="absolute_error", n_networks=2, random_state=0, **SMALL).fit(X, y)
    l2 = MLPEnsembleRegressor(loss="squared_error", n_networks=2, random_state=0, **SMALL).fit(X, y)
    err1 = np.median(np.abs(l1.predict(Xt) - want))
    err2 = np.median(np.abs(l2.predict(Xt) - want))
    # the mean is pulled by 0.2 * 3 = 0.6; the median stays near the truth
    assert err2 > 0.4 and err1 < 0.1, (err1, err2)


def test_same_seed_same_model_in_parallel_or_not_with_a_bar_and_torch_state_untouched(rng):
    X, y = _smooth(rng, 300)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    threads = torch.get_num_threads()
    a = MLPEnsembleRegressor(n_networks=2, random_state=5, **SMALL).fit(X, y).predict(X)
    assert torch.equal(torch.random.get_rng_state(), before) and torch.get_num_threads() == threads
    b = MLPEnsembleRegressor(n_networks=2, random_state=5, n_jobs=2, progress=True, **SMALL).fit(X, y).predict(X)
    c = MLPEnsembleRegressor(n_networks=2, random_state=6, **SMALL).fit(X, y).predict(X)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-4


def test_auto_epochs_give_about_the_step_budget_within_bounds():
    assert auto_epochs(500, 256) == 200  # 2 batches an epoch: capped at 200 epochs
    assert auto_epochs(1_000_000, 256) == 10  # 3,907 batches an epoch: at least 10 epochs
    steps = -(-40_000 // 256)
    assert auto_epochs(40_000, 256) == -(-AUTO_STEPS // steps)
    assert AUTO_STEPS <= auto_epochs(40_000, 256) * steps < AUTO_STEPS + steps
    assert auto_epochs(10, 256) == 200  # a batch larger than the data is one batch


@pytest.mark.parametrize("params, word", [
    ({"n_networks": 0}, "n_networks"), ({"epochs": "many"}, "epochs"), ({"epochs": 2.5}, "epochs"),
    ({"batch_size": True}, "batch_size"), ({"loss": "huber"}, "loss"), ({"hidden": ()}, "hidden"),
    ({"hidden": (8, 0)}, "hidden"), ({"learning_rate": 0.0}, "learning_rate"),
    ({"weight_decay": -1.0}, "weight_decay"), ({"n_threads": 0}, "n_threads"),
])
def test_bad_parameters_are_named(rng, params, word):
    X, y = _smooth(rng, 50)
    with pytest.raises(ValueError, match=word):
        MLPEnsembleRegressor(**params).fit(X, y)


def test_bad_data_is_refused_with_a_clear_message(rng):
    X, y = _smooth(rng, 50)
    y_nan = y.copy()
    y_nan[3] = np.nan
    with pytest.raises(ValueError, match="target contains NaN"):
        MLPEnsembleRegressor(**SMALL).fit(X, y_nan)
    model = MLPEnsembleRegressor(n_networks=1, **SMALL).fit(X, y)
    with pytest.raises(ValueError, match="expecting 3 features"):
        model.predict(X[:, :2])


def test_ann_regression_uses_the_network_average_searched_with_one_network(monkeypatch):
    import importlib

    from sklearn.neural_network import MLPRegressor

    T = importlib.import_module("serendip.learn.train")  # the module (serendip.learn.train is also the function)

    pipe, space = T.build_pipeline("ann", "regression", n_features=5, n_train=1000, redshift=True, n_jobs=2)
    model = pipe.named_steps["model"]
    assert isinstance(model, MLPEnsembleRegressor)
    assert model.loss == "absolute_error" and model.n_networks == T.MLP_NETWORKS and model.n_jobs == 2
    assert "model__hidden" in space
    assert T.one_booster(pipe).named_steps["model"].n_networks == 1
    assert T._is_average(pipe) and not T._is_average(T.one_booster(pipe))
    plain, _ = T.build_pipeline("ann", "regression", n_features=5, n_train=1000)
    assert plain.named_steps["model"].loss == "squared_error"
    # classification keeps scikit-learn's network; so does regression without PyTorch
    clf, _ = T.build_pipeline("ann", "classification", n_features=5, n_train=1000)
    assert type(clf.named_steps["model"]).__name__ == "MLPClassifier"
    monkeypatch.setattr(T, "_has_torch", lambda: False)
    without, _ = T.build_pipeline("ann", "regression", n_features=5, n_train=1000)
    assert isinstance(without.named_steps["model"], MLPRegressor)


def test_train_ann_reports_one_network_validation_and_saves(rng, tmp_path):
    from serendip.learn import load_model, train

    X = rng.uniform(0, 1, (400, 3))
    z = 0.4 * X[:, 0] + 0.2 * X[:, 1] ** 2 + 0.005 * rng.normal(size=400)
    res = train(X, z, algorithm="ann", target_name="z", cv=3, n_iter=1, progress=False, learning_curve=False,
                importances=False, model_params={"epochs": 40})
    net = res.model.named_steps["model"]
    assert isinstance(net, MLPEnsembleRegressor) and len(net.states_) == 5 and net.n_epochs_ == 40
    assert "networks validated one at a time; the refitted model averages 5" in res.summary_text()
    assert "searched with one network" in res.candidates.meta["note"]
    assert res.test_scores["sigma_nmad"] < 0.02
    path = res.save(tmp_path / "ann.skops")
    loaded = load_model(path, trusted=True)
    np.testing.assert_array_equal(loaded.predict(X), res.model.predict(X))


def test_recommend_puts_the_networks_first_for_regression_on_few_features_with_many_rows(rng, monkeypatch):
    import importlib

    from serendip.learn import recommend

    R = importlib.import_module("serendip.learn.recommend")
    X = rng.normal(size=(8000, 5))
    y = rng.uniform(0, 1, 8000)
    recs = recommend(X, y)
    assert recs[0].algorithm == "ann" and {"gbt", "rf"} <= {r.algorithm for r in recs[:3]}
    assert "averages 5 networks" in " ".join(recs[0].reasons)
    # classes, few rows or many features: no such claim
    assert all("averages 5 networks" not in " ".join(r.reasons) for r in recommend(X, y > 0.5))
    assert all("averages 5 networks" not in " ".join(r.reasons) for r in recommend(X[:3000], y[:3000]))
    monkeypatch.setattr(R, "_torch_available", lambda: False)
    ann = next(r for r in recommend(X, y) if r.algorithm == "ann")
    assert "averages 5 networks" not in " ".join(ann.reasons)
    assert any("PyTorch is not installed" in c for c in ann.caveats)


def test_cv_caveat_is_for_single_averaged_models_not_for_votes():
    import importlib
    from types import SimpleNamespace

    T = importlib.import_module("serendip.learn.train")
    pipe, _ = T.build_pipeline("ann", "regression", n_features=3, n_train=100)
    caveat = T.TrainResult.cv_caveat
    assert "one booster" in caveat(SimpleNamespace(algorithm="gbt", model=None))
    assert "networks validated one at a time" in caveat(SimpleNamespace(algorithm="ann", model=pipe))
    # votes are validated with every booster and network, as they are refitted
    assert caveat(SimpleNamespace(algorithm="vote(gbt,rf)", model=None)) == ""
    assert caveat(SimpleNamespace(algorithm="vote(ann,gbt)", model=None)) == ""
