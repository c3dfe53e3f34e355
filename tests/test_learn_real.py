"""serendip.learn on real survey data (subsamples, loose floors below the benchmark targets).

The full-size numbers come from ``python benchmarks/bench_learn_real.py``; here each data set
is subsampled so the whole file stays within a few tens of seconds, and the asserted floors
sit well below what the subsample reaches so the tests cannot flake.
"""
from __future__ import annotations

import numpy as np
import pytest

from serendip.learn import recommend, train
from serendip.learn.tables import read_any_table, select_features

pytestmark = pytest.mark.shared_data

QUICK = dict(cv=3, n_iter=2, progress=False, learning_curve=False, importances=False)


def _subsample(n_total, n, seed=0):
    return np.sort(np.random.default_rng(seed).choice(n_total, size=min(n, n_total), replace=False))


def test_photoz_galaxies_and_qsos_reported_separately(shared_data):
    path = shared_data / "sdss_galaxy_qso_colors_specz" / "sdss_galaxy_colors.csv.gz"
    tab = read_any_table(path)
    rows = _subsample(len(tab), 5000)
    tab = tab[rows]
    gal = tab[tab["spec_class"] == "GALAXY"]
    X, y, recipe = select_features(gal, "redshift", colors="ugriz")
    assert X.colnames == ["u-g", "g-r", "r-i", "i-z", "r"]
    res = train(X, y, algorithm="rf", target_name="redshift", model_params={"n_estimators": 60}, **QUICK)
    assert res.redshift
    # a 4000-galaxy subsample with a small forest reaches ~0.018 / 0.3 %; full data: see the benchmark
    assert res.test_scores["sigma_nmad"] < 0.025
    assert res.test_scores["catastrophic_fraction"] < 0.01
    qso = tab[tab["spec_class"] == "QSO"]
    Xq, yq, _ = select_features(qso, "redshift", colors="ugriz")
    resq = train(Xq, yq, algorithm="rf", target_name="redshift", model_params={"n_estimators": 60}, **QUICK)
    # QSOs are much harder (degenerate colours): larger scatter and many catastrophic failures
    assert resq.test_scores["sigma_nmad"] > 2 * res.test_scores["sigma_nmad"]
    assert resq.test_scores["catastrophic_fraction"] > 0.05


def test_photoz_networks_on_real_galaxies(shared_data):
    pytest.importorskip("torch")
    from serendip.learn.mlp import MLPEnsembleRegressor

    tab = read_any_table(shared_data / "sdss_galaxy_qso_colors_specz" / "sdss_galaxy_colors.csv.gz")
    gal = tab[tab["spec_class"] == "GALAXY"]
    gal = gal[_subsample(len(gal), 4000, seed=1)]
    X, y, _ = select_features(gal, "redshift", colors="ugriz")
    # small and short, to stay quick: full size and schedule reach 0.0148 (see the benchmark)
    res = train(X, y, algorithm="ann", target_name="redshift",
                model_params={"hidden": (64, 64, 64), "n_networks": 2, "epochs": 100}, **QUICK)
    net = res.model.named_steps["model"]
    assert isinstance(net, MLPEnsembleRegressor) and net.loss == "absolute_error" and len(net.states_) == 2
    # 3,200 training galaxies reach 0.015-0.016 (two seeds)
    assert res.test_scores["sigma_nmad"] < 0.021
    assert res.test_scores["catastrophic_fraction"] < 0.01


def test_star_galaxy_qso_from_colours(shared_data):
    tab = read_any_table(shared_data / "sdss_dr14_star_galaxy_qso_10k" / "sdss_dr14_10k.csv")
    tab = tab[_subsample(len(tab), 3000)]
    X, y, _ = select_features(tab, "class", colors="ugriz")
    res = train(X, y, algorithm="gbt", **QUICK)
    assert set(res.classes) == {"GALAXY", "QSO", "STAR"}
    assert res.test_scores["balanced_accuracy"] > 0.9  # full data: benchmark target 0.96


def test_linear_variable_types(shared_data):
    tab = read_any_table(shared_data / "linear_periodic_variables" / "linear_attributes.csv")
    tab = tab[_subsample(len(tab), 2500)]
    feats = ["ug", "gi", "iK", "JK", "logP", "Ampl", "skew", "kurt"]
    X, y, _ = select_features(tab, "LCtype_name", features=feats)
    res = train(X, y, algorithm="gbt", **QUICK)
    assert res.test_scores["balanced_accuracy"] > 0.8  # full data: benchmark target 0.93


def test_htru2_recall_at_high_precision(shared_data):
    tab = read_any_table(shared_data / "htru2_pulsar_candidates" / "pulsar_stars.csv")
    tab = tab[_subsample(len(tab), 5000)]
    X, y, _ = select_features(tab, "target_class")
    assert len(X.colnames) == 8
    res = train(X, y, algorithm="gbt", **{**QUICK, "importances": True})
    assert res.test_scores["recall_at_precision_0.9"] > 0.75  # full data: target 0.85
    assert res.test_scores["roc_auc"] > 0.9
    assert res.importances["importance_mean"][0] > 0


def test_pyhammer_few_raw_spectra_honest_uncertainty(shared_data):
    with np.load(shared_data / "pyhammer_stellar_templates" / "pyhammer_templates.npz") as z:
        flux, sptype, loglam = z["flux"], z["sptype_num"].astype(float), z["loglam"]
    recs = recommend(flux, sptype, raw=True)
    assert recs[0].algorithm == "svm" and recs[0].options.get("pca")
    assert next(r for r in recs if r.algorithm == "cnn").score < recs[0].score
    res = train(flux, sptype, algorithm="svm", raw=True, cv=5, n_iter=4, progress=False, learning_curve=False,
                importances=False, feature_names=[f"{w:.1f}" for w in 10 ** loglam])
    # 46 test spectra: report the CV spread as the uncertainty; types are good to a few subtypes
    assert res.test_scores["r2"] > 0.9
    assert res.test_scores["rmse"] < 8
    assert len(res.cv_scores) == 5 and np.std(res.cv_scores) > 0
    lo, hi = res.test_scores["rmse_ci95_low"], res.test_scores["rmse_ci95_high"]
    assert lo < res.test_scores["rmse"] < hi and hi - lo > 0.1  # 46 test spectra: a wide interval
