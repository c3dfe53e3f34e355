"""Train, validate and test a supervised model in one honest call.

:func:`train` builds a scikit-learn pipeline (imputation, scaling where the
model needs it, optional PCA, class weights for imbalance), holds out a test
split (stratified; grouped when groups are given), chooses hyper-parameters by
cross-validated search over a small space, and, for ``algorithm="auto"``,
compares the recommended algorithms **on validation folds only**. The test
split is touched once, at the end, to report the scores of the chosen model.
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._logging import get_logger, progress as _progress
from . import metrics as _m
from .recommend import ALGORITHMS, _torch_available as _has_torch, infer_task, recommend

__all__ = ["TrainResult", "train", "build_pipeline", "prepare_xy", "check_feature_names", "rotation_features"]

log = get_logger(__name__)


# ------------------------------------------------------------------------------------------
# input handling
# ------------------------------------------------------------------------------------------
def prepare_xy(X, y=None, *, feature_names=None, drop_nan_target: bool = True):
    """Return ``(X float array, y array or None, feature names, target name, kept-row mask)``.

    ``X`` may be an array, a pandas DataFrame, an astropy Table or a
    :class:`~serendip.spectra.Spectra`. NaN features are allowed (they are
    imputed); infinite values and non-numeric columns are errors naming the
    column. Rows whose target is missing are dropped with a warning saying how many.
    """
    target_name = getattr(y, "name", None)
    if target_name is not None and not isinstance(target_name, str):
        target_name = str(target_name)  # e.g. the integer label of a DataFrame column
    if hasattr(X, "flux") and hasattr(X, "wavelength"):
        names = [f"{w:.2f}" for w in np.asarray(X.wavelength.value)]
        Xa = np.asarray(X.flux, dtype=np.float64)
    elif hasattr(X, "colnames") or hasattr(X, "columns"):
        # DataFrame labels may be integers (pd.DataFrame(ndarray)): index by the label itself,
        # use its text as the feature name
        labels = list(X.colnames) if hasattr(X, "colnames") else list(X.columns)
        cols = [str(c) for c in labels]
        arrays = []
        for label, c in zip(labels, cols):
            # masked entries (numpy/astropy masks, QTable quantities, pandas NA) are missing, as for the target
            col, missing = _values_and_missing(X[label])
            if col.dtype.kind in "iufb" and missing.any():
                col = np.where(missing, np.nan, col.astype(np.float64))
            if col.ndim != 1:
                raise ValueError(f"feature column {c!r} is not one value per row (shape {col.shape})")
            if col.dtype.kind not in "iufb":
                raise ValueError(f"feature column {c!r} is not numeric (dtype {col.dtype}); "
                                 "encode it as numbers or leave it out of the features")
            arrays.append(col.astype(np.float64))
        if not arrays:
            raise ValueError("no feature columns given")
        Xa = np.column_stack(arrays)
        names = cols
    else:
        from .._validation import check_matrix

        Xa = check_matrix(X, name="X", allow_nonfinite=True)
        names = [f"x{j}" for j in range(Xa.shape[1])]
    if feature_names is not None:
        if ((hasattr(X, "colnames") or hasattr(X, "columns") or hasattr(X, "wavelength"))
                and [str(n) for n in feature_names] != list(names)):
            raise ValueError("feature_names differs from the table's own column names; a table or Spectra names "
                             "its features (rename the columns instead), and predict checks those names")
        if len(feature_names) != Xa.shape[1]:
            raise ValueError(f"{len(feature_names)} feature names for {Xa.shape[1]} columns")
        names = [str(n) for n in feature_names]
    if Xa.ndim != 2 or Xa.shape[0] == 0:
        raise ValueError(f"X must be a non-empty 2-D table; found shape {Xa.shape}")
    inf = np.isinf(Xa)
    if inf.any():
        r, c = np.nonzero(inf)
        raise ValueError(f"X contains {inf.sum()} infinite value(s), first at row {r[0]} column "
                         f"{names[c[0]]!r}; replace them by NaN (imputed) or drop those rows")
    keep = np.ones(Xa.shape[0], dtype=bool)
    if y is None:
        return Xa, None, names, target_name, keep
    ya, missing = _target_and_missing(y)
    if ya.shape[0] != Xa.shape[0]:
        raise ValueError(f"X has {Xa.shape[0]} rows but y has {ya.shape[0]} values")
    if missing.any():
        where = f" {target_name!r}" if target_name else ""
        if not drop_nan_target:
            raise ValueError(f"the target{where} is missing (NaN/NA/masked/empty) in {missing.sum()} row(s), "
                             f"first at row {int(np.flatnonzero(missing)[0])}")
        if missing.all():
            raise ValueError(f"the target{where} is missing in every row")
        msg = (f"dropped {int(missing.sum())} of {missing.size} rows whose target{where} is missing "
               "(NaN, NA, masked or empty)")
        warnings.warn(msg, UserWarning, stacklevel=3)
        keep = ~missing
    if ya.dtype.kind == "O":
        ya = ya.astype(str)
    return Xa[keep], ya[keep], names, target_name, keep


def _target_and_missing(y):
    """Return ``(values, missing)`` for a target: 1-D values and the mask of rows with no target.

    Missing means masked, NaN, ``pd.NA``/``None`` or blank text, in any container
    (numpy, numpy/astropy masked, astropy ``Masked`` quantities, pandas nullable types).
    ``train`` drops these rows; ``recommend`` leaves them out of its counts.
    """
    ya, missing = _values_and_missing(y)
    if ya.ndim != 1:
        ya = ya.ravel()
        missing = missing.ravel()
    if ya.dtype.kind == "f":
        missing |= ~np.isfinite(ya)
    elif ya.dtype.kind == "O":
        missing |= np.array([_missing_value(v) for v in ya], dtype=bool)
    elif ya.dtype.kind in "US":
        missing |= np.char.strip(ya.astype(str)) == ""
    return ya, missing


def _masked_parts(v):
    """``(data, mask)`` of an astropy ``Masked`` array (e.g. a ``MaskedQuantity`` column of a QTable),
    with units dropped; None for anything else. numpy's ``MaskedArray`` is handled by the callers."""
    if np.ma.isMaskedArray(v) or not (hasattr(v, "unmasked") and hasattr(v, "mask")):
        return None
    data = v.unmasked
    data = np.asarray(getattr(data, "value", data))
    return data, np.asarray(v.mask, dtype=bool)


def _values_and_missing(y):
    """Return ``(values as a numpy array, missing-row mask)`` for a target or one feature column.

    Masked entries (numpy/astropy masked arrays of any dtype) and pandas missing values
    (``pd.NA``, ``None``, ``NaN`` in nullable ``Int64``/``boolean``/``string``/category columns)
    are flagged missing; the values keep their natural numpy type (integers stay integers).
    """
    parts = _masked_parts(y)
    if np.ma.isMaskedArray(y) or parts is not None:
        ya, missing = parts if parts is not None else (np.asarray(np.ma.getdata(y)), np.ma.getmaskarray(y))
        missing = np.array(missing, dtype=bool)  # a writable copy
        ya = np.asarray(getattr(ya, "value", ya))
        if ya.dtype.kind == "f":
            ya = np.where(missing, np.nan, ya)
        return ya, missing
    dtype = getattr(y, "dtype", None)
    if dtype is not None and not isinstance(dtype, np.dtype) and hasattr(y, "isna"):
        # a pandas extension array or Series (nullable integers/booleans, strings, categories)
        missing = np.array(y.isna(), dtype=bool)  # a writable copy
        np_dtype = getattr(dtype, "numpy_dtype", None)
        categories = getattr(dtype, "categories", None)
        if np_dtype is not None and np_dtype.kind in "iufb":
            fill = np.nan if np_dtype.kind == "f" else np_dtype.type(0)
            return np.asarray(y.to_numpy(dtype=np_dtype, na_value=fill)), missing
        if categories is not None:
            codes = np.asarray(y.cat.codes if hasattr(y, "cat") else y.codes)
            cats = np.asarray(categories)
            if cats.size == 0:
                return np.full(codes.shape, "", dtype=object), missing
            return cats[np.where(codes < 0, 0, codes)], missing
        return np.asarray(y.to_numpy(dtype=object, na_value=None)), missing
    ya = np.asarray(y)
    return ya, np.zeros(ya.shape, dtype=bool)


def _missing_value(v) -> bool:
    """Whether one object-array target entry is missing: None, NaN, ``pd.NA``/``NaT`` or blank text."""
    if v is None:
        return True
    if isinstance(v, (float, np.floating)):
        return not np.isfinite(v)
    if isinstance(v, str):
        return v.strip() == ""
    if type(v).__name__ in ("NAType", "NaTType"):
        return True
    try:
        return bool(v != v)  # NaN-like objects are unequal to themselves
    except (TypeError, ValueError):  # ambiguous comparisons (NA-like)
        return True


def check_feature_names(given, expected) -> None:
    """Raise a clear ``ValueError`` when ``given`` column names differ from the model's ``expected`` ones."""
    given, expected = [str(g) for g in given], [str(e) for e in expected]
    missing = [e for e in expected if e not in given]
    if missing:
        raise ValueError(f"the table lacks feature column(s) the model was trained on: {missing}; "
                         f"expected {expected}")
    extra = [g for g in given if g not in expected]
    if extra:
        raise ValueError(f"unexpected feature column(s) {extra}; the model expects exactly {expected}")
    if given != expected:
        moved = [g for g, e in zip(given, expected) if g != e]
        raise ValueError(f"feature columns are in a different order than at training: got {given}, "
                         f"expected {expected} (first misplaced: {moved[:5]}); select them in the "
                         "training order")


# ------------------------------------------------------------------------------------------
# pipelines and search spaces
# ------------------------------------------------------------------------------------------
def _nmad_loss(y_true, y_pred):
    return _m.sigma_nmad(y_pred, y_true)


def _scoring(task: str, redshift: bool, scoring):
    if scoring is not None:
        return scoring
    if task == "classification":
        return "balanced_accuracy"
    if redshift:
        from sklearn.metrics import make_scorer

        return make_scorer(_nmad_loss, greater_is_better=False)
    return "r2"


def build_pipeline(algorithm: str, task: str, *, n_features: int, n_train: int, random_state=0,
                   n_jobs=None, redshift: bool = False, pca: bool | int = False, y_std: float = 1.0,
                   cnn_params: dict | None = None, rotate: bool | None = None,
                   local_linear: bool | None = None, n_fit_min: int | None = None):
    """Return ``(Pipeline, parameter space)`` for one algorithm.

    The space is a small dict of lists over the pipeline's ``model__``/``pca__``
    parameters, chosen to cover the usual good settings in a handful of fits.
    ``n_fit_min`` (default ``n_train``) is the fewest rows any fit of the search will
    see, a cross-validation fold's training part: PCA sizes are capped by it.

    ``rotate`` (default: on for gradient-boosted trees with at most
    ``ROTATE_MAX_FEATURES`` features and no PCA) appends the principal components of
    the standardised features to the features themselves. Trees split along one axis
    at a time; on a few strongly correlated measurements such as photometric colours
    the decorrelated directions give them better splits. On the SDSS galaxy photo-z
    training split this lowered the 3-fold cross-validated σ_NMAD of boosted trees
    from 0.0159 to 0.0155 (see ``benchmarks/bench_learn_real.py``).

    ``local_linear`` (default: on for gradient-boosted *regression* under the same conditions,
    with at least ``LOCAL_LINEAR_MIN_ROWS`` training rows) appends, before the rotation, a local
    linear regression estimate of the target from the nearest training objects
    (:class:`~serendip.learn.local_linear.LocalLinearEstimate`; leave-one-out on the training
    rows). On the SDSS galaxy photo-z it lowered the inner-validation σ_NMAD by 0.7–1.6 % (4 % with
    1,000 training galaxies); on star/galaxy/QSO classes, neighbours' class fractions did not help.
    """
    from sklearn.decomposition import PCA
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; choose one of {ALGORITHMS} or 'auto'")
    clf = task == "classification"
    steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median", keep_empty_features=True))]
    space: dict[str, list] = {}
    if algorithm in ("svm", "ann"):
        steps.append(("scale", StandardScaler()))
    p_eff = n_features
    few_features = not pca and n_features <= ROTATE_MAX_FEATURES
    if local_linear is None:
        local_linear = algorithm == "gbt" and not clf and few_features and n_train >= LOCAL_LINEAR_MIN_ROWS
    if local_linear:
        if clf:
            raise ValueError("local_linear=True is for regression: a local linear fit to class labels means "
                             "nothing; leave local_linear unset (None) or False for classification")
        from .local_linear import LocalLinearEstimate

        steps.append(("local", LocalLinearEstimate(n_jobs=n_jobs)))
    if rotate is None:
        rotate = algorithm == "gbt" and few_features
    if rotate:
        steps.append(("rotate", rotation_features(random_state)))
    if pca and algorithm != "cnn":
        max_comp = max(1, min(n_features, int(0.6 * n_train), n_train if n_fit_min is None else int(n_fit_min)))
        if isinstance(pca, bool):
            options = sorted({min(k, max_comp) for k in (10, 20, 40)})
            space["pca__n_components"] = options
            k0 = options[len(options) // 2]
        else:
            k0 = min(int(pca), max_comp)
        steps.append(("pca", PCA(n_components=k0, random_state=random_state)))
        p_eff = k0

    if algorithm == "svm":
        from sklearn.svm import SVC, SVR

        if clf:
            model = SVC(kernel="rbf", class_weight="balanced", random_state=random_state)
        else:
            model = SVR(kernel="rbf", epsilon=0.05 * y_std)
            space["model__epsilon"] = [0.01 * y_std, 0.05 * y_std]
        # SVR's C bounds the dual coefficients, which carry the target's units: the grid scales with
        # the target's spread (as epsilon does), so a target in km/s and one in redshift get the same
        # search. Unscaled, C = 300 on redshifts (std ~0.1) took 70 s per fit on 2,400 rows and was never chosen.
        space["model__C"] = ([0.3 * y_std, 3.0 * y_std, 30.0 * y_std, 300.0 * y_std] if not clf
                             else [0.1, 1.0, 10.0, 100.0])
        if not pca:
            space["model__gamma"] = [0.3 / p_eff, 1.0 / p_eff, 3.0 / p_eff]
    elif algorithm == "rf":
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        common = dict(n_estimators=200, n_jobs=n_jobs, random_state=random_state)
        model = (RandomForestClassifier(class_weight="balanced_subsample", **common) if clf
                 else RandomForestRegressor(max_features=0.5, **common))
        # all features per split is slow and pointless on thousands of pixels
        space["model__max_features"] = ["sqrt", 0.5, 1.0] if n_features <= 100 else ["sqrt", 0.1]
        space["model__min_samples_leaf"] = [1, 3, 8]
    elif algorithm == "gbt":
        from sklearn.ensemble import (BaggingClassifier, BaggingRegressor, HistGradientBoostingClassifier,
                                      HistGradientBoostingRegressor)

        # early stopping ends most fits well before the cap; multi-class fits cost one tree per class.
        # Regressors get a patience of 30 rounds so the slower learning rate runs on past plateaus.
        # Each booster sees half of the features at each split (max_features=0.5), and GBT_BAGS of
        # them with different seeds are averaged: on the SDSS galaxy photo-z training split (inner
        # validation) this lowered sigma_NMAD from 0.0153-0.0154 for one booster to 0.0151.
        common = dict(max_iter=300 if clf else 2000, early_stopping=True, n_iter_no_change=10 if clf else 30,
                      validation_fraction=0.1, max_features=0.5)
        if clf:
            booster = HistGradientBoostingClassifier(class_weight="balanced", learning_rate=0.05,
                                                     max_leaf_nodes=15, min_samples_leaf=40, **common)
            space["model__estimator__max_leaf_nodes"] = [15, 31, 63]
        else:
            # A robust loss suits redshifts, whose quality measures (sigma_NMAD) are robust too.
            booster = HistGradientBoostingRegressor(loss="absolute_error" if redshift else "squared_error",
                                                    learning_rate=0.05, max_leaf_nodes=63,
                                                    min_samples_leaf=20, **common)
            # deeper trees pay on large photometric samples (CV on the SDSS galaxy training split)
            space["model__estimator__max_leaf_nodes"] = [31, 63, 127]
        # every bag sees all rows (no bootstrap); the seeds differ, so do the feature draws and the
        # early-stopping validation rows. BaggingRegressor averages, BaggingClassifier averages probabilities.
        bag = BaggingClassifier if clf else BaggingRegressor
        model = bag(booster, n_estimators=GBT_BAGS, max_samples=1.0, bootstrap=False, n_jobs=n_jobs,
                    random_state=random_state)
        space["model__estimator__learning_rate"] = [0.05, 0.1]
        space["model__estimator__min_samples_leaf"] = [10, 20, 40]
    elif algorithm == "ann" and not clf and _has_torch():
        from .mlp import MLPEnsembleRegressor

        # With PyTorch (serendip[deep]), regression networks are serendip's average of MLP_NETWORKS
        # perceptrons, with the absolute-error loss for redshifts; they train all their rows over a
        # fixed one-cycle schedule. On the SDSS galaxy photo-z they beat the boosted trees (σ_NMAD
        # 0.01484 against 0.01504 over five held-out splits; see serendip.learn.mlp).
        model = MLPEnsembleRegressor(loss="absolute_error" if redshift else "squared_error",
                                     n_networks=MLP_NETWORKS, n_jobs=n_jobs, random_state=random_state)
        space["model__hidden"] = [(64, 64, 64), (256, 256, 256)]
    elif algorithm == "ann":
        from sklearn.neural_network import MLPClassifier, MLPRegressor

        common = dict(hidden_layer_sizes=(64,), early_stopping=True, max_iter=400, n_iter_no_change=15,
                      random_state=random_state)
        model = MLPClassifier(**common) if clf else MLPRegressor(**common)
        space["model__hidden_layer_sizes"] = [(32,), (64,), (64, 32)]
        space["model__alpha"] = [1e-4, 1e-3, 1e-2]
    else:  # cnn
        from .cnn import CNN1DClassifier, CNN1DRegressor

        params = dict(random_state=random_state)
        params.update(cnn_params or {})
        model = CNN1DClassifier(**params) if clf else CNN1DRegressor(**params)
    steps.append(("model", model))
    return Pipeline(steps), space


#: Networks averaged by algorithm="ann" for regression when PyTorch is installed (see build_pipeline).
MLP_NETWORKS = 5


#: Gradient-boosted trees on at most this many features get the rotation features (see build_pipeline).
ROTATE_MAX_FEATURES = 30

#: Gradient-boosted regression on at least this many training rows (and at most ROTATE_MAX_FEATURES
#: features) gets the local linear estimate as a feature (see build_pipeline).
LOCAL_LINEAR_MIN_ROWS = 1000

#: algorithm="auto" leaves out recommendations scored below this (0.5 is neutral), keeping at least two.
AUTO_MIN_SCORE = 0.4

#: The hyper-parameter search's default row cap. Training splits up to this size are searched whole:
#: on the 10k DR14 star/galaxy/QSO table (8,000 training rows) that raised balanced accuracy over
#: five held-out splits from 0.9597 (cap 5,000) to 0.9622; the galaxy photo-z (33,180 training rows)
#: did not change beyond its split-to-split noise (benchmarks/bench_learn_real.py).
SEARCH_MAX_ROWS = 10_000

#: Boosted models averaged by algorithm="gbt" (seeds and feature draws differ). 15 instead of 5 took
#: 2.3x the refit time for no held-out gain on the SDSS galaxy photo-z: sigma_NMAD 0.01503 +- 0.00008
#: against 0.01504 +- 0.00005 over the five held-out splits of benchmarks/bench_learn_real.py
#: (--only photoz --repeats 5 --algorithm gbt --search-max-rows 0), though 0.01490 against 0.01497
#: on inner validation.
GBT_BAGS = 5


def rotation_features(random_state=0):
    """A transformer that appends the principal components of the standardised features.

    The output is ``[X, PCA(StandardScaler(X))]`` (twice the columns). Built from
    scikit-learn parts only, so saved models stay loadable without custom code.
    """
    from sklearn.decomposition import PCA
    from sklearn.pipeline import FeatureUnion, Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    return FeatureUnion([("features", FunctionTransformer()),
                         ("components", Pipeline([("scale", StandardScaler()),
                                                  ("pca", PCA(random_state=random_state))]))])


def one_booster(estimator):
    """Return an unfitted clone of ``estimator`` with every average of models cut to one member.

    ``algorithm="gbt"`` averages ``GBT_BAGS`` boosters that differ only in their seeds, and
    ``algorithm="ann"`` (regression, with PyTorch) ``MLP_NETWORKS`` networks. The
    hyper-parameter search, and the vote's validation, rank configurations with one member each
    (that many times cheaper); the chosen configuration is then refitted with all of them. An
    average usually validates a little better than one booster (CV σ_NMAD 0.01652 against 0.01669
    in ``benchmarks/bench_learn_search.py``), so the averaged models' validation scores lean
    pessimistic. Other estimators are returned as plain clones.
    """
    from sklearn.base import clone

    est = clone(estimator)
    cut = {f"{k}__{member}": 1 for k, v in est.get_params(deep=True).items() if (member := _members_param(v))}
    if own := _members_param(est):
        cut[own] = 1
    return est.set_params(**cut) if cut else est


def _members_param(est) -> str | None:
    """The parameter counting the averaged members of ``est`` (boosters, networks), or None."""
    from sklearn.ensemble import BaggingClassifier, BaggingRegressor

    from .mlp import MLPEnsembleRegressor

    if isinstance(est, (BaggingClassifier, BaggingRegressor)):
        return "n_estimators"
    if isinstance(est, MLPEnsembleRegressor):
        return "n_networks"
    return None


def _is_average(estimator) -> bool:
    """Whether ``estimator`` (or a step of it) averages several boosters or networks."""
    parts = [estimator, *estimator.get_params(deep=True).values()]
    return any((m := _members_param(v)) and getattr(v, m) > 1 for v in parts)


def _space_size(space: dict) -> int:
    size = 1
    for v in space.values():
        size *= len(v)
    return size


@contextlib.contextmanager
def _quiet_convergence():
    """Silence scikit-learn's ConvergenceWarning (capped iterations are part of the small search spaces)."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        yield


def _search(pipe, space, X, y, *, cv, scoring, n_iter, groups, n_jobs, random_state, fit_params):
    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV

    if _space_size(space) <= n_iter:
        search = GridSearchCV(pipe, space or {}, cv=cv, scoring=scoring, n_jobs=n_jobs, refit=False,
                              error_score="raise")
    else:
        search = RandomizedSearchCV(pipe, space, n_iter=n_iter, cv=cv, scoring=scoring, n_jobs=n_jobs,
                                    refit=False, random_state=random_state, error_score="raise")
    with _quiet_convergence():
        warnings.filterwarnings("ignore", category=UserWarning, message=".*[Cc]onverge.*")
        search.fit(X, y, groups=groups, **fit_params)
    k = int(search.best_index_)
    res = search.cv_results_
    folds = np.array([res[f"split{i}_test_score"][k] for i in range(search.n_splits_)])
    return dict(search.best_params_), folds


def _fit_params(algorithm: str, task: str, y) -> dict:
    if task == "classification" and algorithm == "ann":
        from sklearn.utils.class_weight import compute_sample_weight

        return {"model__sample_weight": compute_sample_weight("balanced", y)}
    return {}


def _warn_target_in_disguise(X, y, names) -> None:
    """Warn when one feature alone names the class (a code of the target, say): likely leakage."""
    codes = np.unique(y, return_inverse=True)[1].ravel()
    n_classes = int(codes.max()) + 1
    for j, name in enumerate(names):
        col = X[:, j]
        ok = np.isfinite(col)
        if ok.sum() < 2 * n_classes:
            continue
        if np.unique(col[ok][:1000]).size > 4 * n_classes:  # a measured quantity, not a label code (cheap test)
            continue
        values, inv = np.unique(col[ok], return_inverse=True)
        if values.size > 4 * n_classes or values.size > ok.sum() / 2:
            # many values, or most of them seen once: no evidence of a code (on tiny data every
            # measured feature would otherwise "name the class")
            continue
        # each value of the feature belongs to a single class
        pairs = np.unique(np.column_stack([inv.ravel(), codes[ok]]), axis=0)
        if pairs.shape[0] == values.size:
            msg = (f"feature {name!r} alone names the class of every row ({values.size} values, each with a "
                   "single class): it is probably the target in another form; drop it unless it is really "
                   "known before the class")
            warnings.warn(msg, UserWarning, stacklevel=4)


def _positive_score(model, X):
    if hasattr(model, "predict_proba"):
        try:
            return np.asarray(model.predict_proba(X))
        except (AttributeError, NotImplementedError):
            pass
    if hasattr(model, "decision_function"):
        d = np.asarray(model.decision_function(X))
        if d.ndim == 1:
            return np.column_stack([-d, d])
    return None


# ------------------------------------------------------------------------------------------
# result
# ------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """Everything :func:`train` learned and measured.

    Attributes
    ----------
    model : sklearn.pipeline.Pipeline
        The chosen pipeline, refitted on the whole training split.
    algorithm, task : str
    best_params : dict
        The hyper-parameters chosen by cross-validation.
    cv_scores : numpy.ndarray
        Per-fold validation scores of the chosen configuration (``scoring``; higher is better).
    test_scores : dict
        Scores on the held-out test split (classification: accuracy, balanced accuracy,
        per-class table…; regression: RMSE, MAE, bias, R², and σ_NMAD etc. for redshifts).
    candidates : astropy.table.Table
        One row per algorithm tried, with its mean/std validation score.
    learning_curve : dict or None
        Train/validation scores against training size, ``verdict`` and ``explanation``.
    importances : astropy.table.Table or None
        Permutation importances on the held-out split.
    summary : dict
        The training data in numbers (sizes, classes, target range, feature means).
    test_index : numpy.ndarray
        Rows of the input (before dropping missing targets) that formed the test split.
    """

    model: Any
    algorithm: str
    task: str
    best_params: dict
    cv_scores: np.ndarray
    test_scores: dict
    candidates: Any
    feature_names: list
    target_name: str | None
    scoring: str
    redshift: bool
    classes: np.ndarray | None
    summary: dict
    y_test: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray | None = None
    learning_curve: dict | None = None
    importances: Any = None
    recommendations: list = field(default_factory=list)
    feature_recipe: dict | None = None
    test_index: np.ndarray | None = None

    @property
    def verdict(self) -> str | None:
        """``"overfitting"``, ``"underfitting"`` or ``"fine"`` from the learning curve (None if not computed)."""
        return None if self.learning_curve is None else self.learning_curve["verdict"]

    def predict(self, X):
        """Predict for new objects; DataFrames/Tables must carry the training feature names in order."""
        Xa = self._check_X(X)
        return self.model.predict(Xa)

    def predict_proba(self, X):
        """Class probabilities (classifiers with probabilities only)."""
        return self.model.predict_proba(self._check_X(X))

    def _check_X(self, X):
        if hasattr(X, "flux") and hasattr(X, "wavelength"):  # spectra: the pixels must be the training grid
            check_feature_names([f"{w:.2f}" for w in np.asarray(X.wavelength.value)], self.feature_names)
        elif hasattr(X, "colnames") or hasattr(X, "columns"):
            cols = list(X.colnames) if hasattr(X, "colnames") else [str(c) for c in X.columns]
            check_feature_names(cols, self.feature_names)
        Xa, _, _, _, _ = prepare_xy(X)
        if Xa.shape[1] != len(self.feature_names):
            raise ValueError(f"X has {Xa.shape[1]} features; the model was trained on "
                             f"{len(self.feature_names)}: {self.feature_names}")
        return Xa

    def metrics_table(self):
        """The scalar test scores as a two-column astropy Table (``metric``, ``value``)."""
        from astropy.table import Table

        items = [(k, float(v)) for k, v in self.test_scores.items() if np.isscalar(v)]
        return Table(rows=items, names=("metric", "value"), dtype=(str, float))

    def figures(self) -> dict:
        """Build the evaluation figures on demand: name -> matplotlib Figure."""
        from . import figures as F

        return F.result_figures(self)

    def save(self, path, **kwargs):
        """Save the model with its metadata (see :func:`serendip.learn.save_model`)."""
        from .persist import save_model

        return save_model(self, path, **kwargs)

    def report(self, path):
        """Write the self-contained HTML evaluation report (see :func:`serendip.learn.write_report`)."""
        from .report import write_report

        return write_report(self, path)

    def cv_caveat(self) -> str:
        """``""``, or a note that the averaged model was validated with one member (see :func:`one_booster`).

        A vote is validated with every booster and network, as it is refitted: no note.
        """
        if self.algorithm == "gbt":
            return (f" (boosted trees validated with one booster; the refitted model averages {GBT_BAGS}, "
                    "which usually scores a little better)")
        steps = getattr(self.model, "named_steps", {})
        if self.algorithm == "ann" and _members_param(steps.get("model")) == "n_networks":
            return (f" (networks validated one at a time; the refitted model averages {MLP_NETWORKS}, "
                    "which usually scores better)")
        return ""

    def derived_features(self) -> str:
        """``""``, or a sentence naming the features the model computes from the given ones.

        The permutation importances are of the given features; the model may also see their
        principal components (``rotate``), a local linear estimate of the target from the
        nearest training objects (``local_linear``; the model then keeps the training
        features) or a PCA projection.
        """
        from sklearn.pipeline import Pipeline

        members = [self.model]
        if hasattr(self.model, "estimators_"):  # a fitted vote of pipelines (not its unfitted templates)
            members = list(self.model.estimators_)
        elif hasattr(self.model, "estimators"):
            members = [est for _, est in self.model.estimators]
        steps = {name: step for m in members if isinstance(m, Pipeline) for name, step in m.named_steps.items()}
        said = []
        if "local" in steps:
            k = getattr(steps["local"], "n_neighbors_", steps["local"].n_neighbors)
            said.append(f"a local linear estimate of the target from the {k} nearest training objects "
                        "(leave-one-out in training; the saved model keeps the training features)")
        if "rotate" in steps:
            said.append("the principal components of the standardised features")
        if "pca" in steps:
            said.append(f"a PCA projection ({steps['pca'].n_components} components)")
        return ("From the given features the model also computes: " + "; ".join(said) + ".") if said else ""

    def summary_text(self) -> str:
        """A few lines for people: algorithm, CV and test scores, verdict."""
        lines = [f"{self.task} with {self.algorithm}; params {self.best_params}",
                 f"CV {self.scoring}: {np.mean(self.cv_scores):.4f} ± {np.std(self.cv_scores):.4f} "
                 f"over {len(self.cv_scores)} folds{self.cv_caveat()}"]
        derived = self.derived_features()
        if derived:
            lines.append(derived)
        keys = (["accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "average_precision",
                 "recall_at_precision_0.9"] if self.task == "classification"
                else ["rmse", "mae", "bias", "r2", "sigma_nmad", "catastrophic_fraction"])
        parts = []
        for k in keys:
            if k in self.test_scores:
                text = f"{k}={self.test_scores[k]:.4g}"
                if f"{k}_ci95_low" in self.test_scores:
                    text += (f" [95% {self.test_scores[k + '_ci95_low']:.4g}, "
                             f"{self.test_scores[k + '_ci95_high']:.4g}]")
                parts.append(text)
        shown = ", ".join(parts)
        lines.append(f"test (n={self.test_scores.get('n')}): {shown}")
        if self.learning_curve:
            lines.append(f"learning curve: {self.verdict} — {self.learning_curve['explanation']}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary_text()


# ------------------------------------------------------------------------------------------
# the main entry point
# ------------------------------------------------------------------------------------------
def _try_vote(tuned, task, X, y, groups, splitter, scoring, n_jobs, best):
    """Cross-validate the average of the two best tuned candidates; return it if it beats the best one.

    ``best`` is ``(name, validation fold scores)`` of the best single candidate. Returns
    ``(unfitted VotingClassifier/VotingRegressor, per-fold scores, member names)`` or None.

    Without averaged models (boosted trees, the PyTorch networks) among the members, the vote is
    validated as the search was and compared with the best candidate's search folds. With them,
    the vote is validated with every booster (``GBT_BAGS``) and network (``MLP_NETWORKS``), as it
    would be refitted, and when the best candidate is among the members it is scored on the same
    fold fits (the vote's own member). Validating
    both with one booster favoured the vote: averaging in a second model partly cut the one
    booster's variance, which the refitted average of ``GBT_BAGS`` boosters already removes.
    On the galaxy photo-z (``benchmarks/bench_learn_real.py --only photoz --repeats 5``) the
    vote of gbt and rf was chosen on 3 of 5 held-out splits that way (mean σ_NMAD 0.0154,
    worst 0.0159) and on 1 of 5 this way (mean 0.0152, worst 0.0154).
    """
    from sklearn.base import clone
    from sklearn.ensemble import VotingClassifier, VotingRegressor
    from sklearn.metrics import check_scoring
    from sklearn.model_selection import cross_validate

    best_name, best_folds = best
    # the candidates a vote can average: (name, pipeline, tuned parameters, validation scores)
    usable = [t for t in tuned if t[0] != "cnn" and not _fit_params(t[0], task, y)]
    if task == "classification":
        usable = [t for t in usable if hasattr(t[1], "predict_proba")]
    if len(usable) < 2:
        return None
    top = sorted(usable, key=lambda t: -t[3].mean())[:2]
    names = [t[0] for t in top]
    boosted = any(_is_average(t[1]) for t in top)

    def vote_of(make):
        members = [(a, make(p).set_params(**pr)) for a, p, pr, _ in top]
        return (VotingClassifier(members, voting="soft") if task == "classification"
                else VotingRegressor(members))

    with _quiet_convergence():
        cvres = cross_validate(vote_of(clone if boosted else one_booster), X, y, groups=groups, cv=splitter,
                               scoring=scoring, n_jobs=n_jobs, error_score="raise",
                               return_estimator=boosted, return_indices=boosted)
    folds = cvres["test_score"]
    baseline = best_folds
    if boosted and best_name in names:
        # the best candidate with all its boosters, on the very fits the vote averaged
        i = names.index(best_name)
        scorer = check_scoring(top[i][1], scoring=scoring)
        single = []
        for est, val in zip(cvres["estimator"], cvres["indices"]["test"]):
            yv = est.le_.transform(y[val]) if task == "classification" else y[val]  # members see encoded classes
            single.append(scorer(est.estimators_[i], X[val], yv))
        baseline = np.asarray(single, dtype=float)
    if folds.mean() <= baseline.mean():
        log.info("vote of %s: CV %.4f does not beat the best single candidate %s (%.4f); not used",
                 names, folds.mean(), best_name, baseline.mean())
        return None
    model = vote_of(clone)
    return model, folds, names


def _split(y, task, test_size, groups, random_state, cv=2):
    """Return ``(train rows, test rows, description)`` of the held-out test split.

    With ``groups``, whole groups go to one side and both sides need enough groups: at least one
    for the test split and ``cv`` for the folds of the search. Classes are split with
    :class:`~sklearn.model_selection.StratifiedGroupKFold`: one of ``k = round(1/test_size)``
    folds is held out when that is within 0.05 of ``test_size``, otherwise the ``j`` of ``k``
    folds (``k`` up to 10) whose fraction ``j/k`` is nearest to it.
    """
    from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold, train_test_split

    idx = np.arange(y.shape[0])
    if groups is not None:
        groups = np.asarray(groups)
        n_groups = np.unique(groups).size
        need = cv + 1
        if n_groups < need:
            raise ValueError(f"only {n_groups} group(s); a grouped split needs at least {need} "
                             f"(1 for the test split and {cv} for the cv={cv} folds of the search). Use finer "
                             "groups, lower cv, or leave groups out")
        if task == "classification":
            k, j = _group_folds(test_size, n_groups)
            sgk = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=random_state)
            folds = [f for _, f in sgk.split(idx, y, groups)]
            # hold out the first j folds (j == 1 for the usual sizes, as before)
            te = np.sort(np.concatenate(folds[:j]))
            tr = np.setdiff1d(idx, te)
        else:
            gss = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=random_state)
            tr, te = next(gss.split(idx, y, groups))
        n_tr_groups = np.unique(groups[tr]).size
        if n_tr_groups < cv or te.size == 0:
            raise ValueError(f"the grouped split left {n_tr_groups} of the {n_groups} groups for training "
                             f"and {np.unique(groups[te]).size} for testing; the search needs at least "
                             f"cv={cv} training groups and the test at least one. Lower test_size or cv, or "
                             "use finer groups")
        return tr, te, "grouped" + (" stratified" if task == "classification" else "")
    if task == "classification":
        tr, te = train_test_split(idx, test_size=test_size, stratify=y, random_state=random_state)
        return tr, te, "stratified"
    n_bins = int(min(10, max(1, y.shape[0] // 20)))
    strat = None
    if n_bins > 1:
        edges = np.quantile(y, np.linspace(0, 1, n_bins + 1)[1:-1])
        strat = np.searchsorted(edges, y)
        _, counts = np.unique(strat, return_counts=True)
        if counts.min() < 2:
            strat = None
    try:
        tr, te = train_test_split(idx, test_size=test_size, stratify=strat, random_state=random_state)
    except ValueError as exc:  # sklearn calls the target's quantile bins "classes": say what they are
        if strat is None:
            raise
        raise ValueError(f"test_size={test_size:g} of {y.shape[0]} rows cannot put each of the {n_bins} "
                         f"target quantile bins the split is stratified on in both the training and the test "
                         f"split ({exc}); choose a test_size nearer 0.2, or use more rows") from None
    return tr, te, "stratified on target quantiles" if strat is not None else "random"


def _group_folds(test_size: float, n_groups: int) -> tuple[int, int]:
    """``(k, j)``: hold out ``j`` of ``k`` stratified group folds so that ``j/k`` is close to ``test_size``."""
    k = max(2, int(round(1.0 / test_size)))
    if k <= n_groups and abs(1.0 / k - test_size) <= 0.05 + 1e-9:
        return k, 1
    options = [(abs(jj / kk - test_size), kk, jj) for kk in range(2, min(10, n_groups) + 1)
               for jj in range(1, kk)]
    _, k, j = min(options)
    return k, j


def _cv_splitter(task, cv, groups, random_state):
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    if groups is not None:
        if task == "classification":
            return StratifiedGroupKFold(n_splits=cv, shuffle=True, random_state=random_state)
        return GroupKFold(n_splits=cv)
    if task == "classification":
        return StratifiedKFold(n_splits=cv, shuffle=True, random_state=random_state)
    return KFold(n_splits=cv, shuffle=True, random_state=random_state)


def _subsample(idx, y, task, max_rows, rng):
    if max_rows is None or idx.size <= max_rows:
        return idx
    if task == "classification":
        from sklearn.model_selection import train_test_split

        try:
            keep, _ = train_test_split(idx, train_size=max_rows, stratify=y[idx], random_state=rng)
            return np.sort(keep)
        except ValueError:
            pass
    return np.sort(np.random.default_rng(rng).choice(idx, size=max_rows, replace=False))


def train(X, y, algorithm: str = "auto", task: str | None = None, *, test_size: float = 0.2, groups=None,
          cv: int = 5, random_state: int = 0, n_jobs: int | None = None, progress: bool = True,
          scoring=None, redshift: bool | None = None, raw: bool = False, pca: bool | int | None = None,
          n_iter: int = 6, max_candidates: int = 3, search_max_rows: int | None = SEARCH_MAX_ROWS,
          learning_curve: bool = True, importances: bool = True, diagnostics_max_rows: int = 3000,
          feature_names=None, target_name: str | None = None, cnn_params: dict | None = None,
          model_params: dict | None = None, rotate: bool | None = None, local_linear: bool | None = None,
          vote: bool = True) -> TrainResult:
    """Pick, train, validate and test a supervised model.

    Parameters
    ----------
    X : array-like (n_objects, n_features), DataFrame, astropy Table or Spectra
        Features; NaN values are imputed (median), strings are an error naming the column.
    y : array-like of shape (n_objects,)
        Target. Rows with a missing target (NaN, masked, pandas ``NA``, empty text) are dropped with
        a warning. A constant regression target is an error.
    algorithm : {"auto", "svm", "rf", "ann", "gbt", "cnn"}
        ``"auto"`` searches the ``max_candidates`` best recommended algorithms (see
        :func:`serendip.learn.recommend`) and keeps the best mean **validation** score.
        Algorithms the recommendation advises against (score below ``AUTO_MIN_SCORE``) are
        left out, as long as two remain.
    task : {"classification", "regression"}, optional
        Inferred from ``y`` when not given.
    test_size : float
        Fraction held out for the final test (stratified by class, or by target
        quantiles for regression; grouped when ``groups`` is given). Whole groups move, so a
        grouped split holds out about this fraction: ``summary["test_fraction"]`` records the
        actual one, and a warning says when it is off by more than 0.1.
    groups : array-like, optional
        Group labels (e.g. a field or plate): no group is split between train and test or between folds.
        At least ``cv + 1`` distinct groups are needed.
    cv : int
        Cross-validation folds for the hyper-parameter search.
    random_state : int
    n_jobs : int, optional
        Parallel jobs for the searches and the forests.
    progress : bool
        Show a progress bar over the candidates.
    scoring : str or scorer, optional
        Validation score (higher is better). Default: balanced accuracy (classes), R² (regression)
        or −σ_NMAD (redshifts).
    redshift : bool, optional
        Whether the target is a redshift (adds σ_NMAD, catastrophic fraction); guessed from the
        target name when not given.
    raw : bool
        The columns are raw pixels (spectra); enters the recommendation. Spectra count as raw.
    pca : bool or int, optional
        Put a PCA before the model (True: number of components searched, int: fixed). Default:
        what the recommendation advises (for SVM/ANN on many features with few examples).
    n_iter : int
        Configurations tried per algorithm (a grid search when the space is that small). Boosted
        trees are searched with one booster per configuration, and the chosen one is refitted as
        the average of ``GBT_BAGS`` boosters (see :func:`one_booster`).
    max_candidates : int
        How many recommended algorithms ``"auto"`` compares.
    search_max_rows : int or None
        The hyper-parameter search runs on at most this many training rows (stratified
        subsample; default :data:`SEARCH_MAX_ROWS`, 10,000; ``None``: all); the chosen
        configuration is then refitted on the whole training split.
    learning_curve, importances : bool
        Compute the learning curve (with its verdict) and permutation importances on the test split.
    diagnostics_max_rows : int
        Row cap for the learning curve and the importances (subsampled beyond it).
    feature_names : list of str, optional
    target_name : str, optional
    cnn_params : dict, optional
        Parameters for the 1-D CNN (:class:`serendip.learn.CNN1DClassifier`), e.g.
        ``{"device": "cuda"}`` to train it on a GPU.
    model_params : dict, optional
        Fixed parameters for the final estimator of every candidate that accepts them
        (e.g. ``{"n_estimators": 50}`` for a quicker forest); they are removed from the search.
        Keys that no candidate accepts are named in a warning.
    rotate : bool, optional
        Append the principal components of the standardised features (see
        :func:`build_pipeline`). Default: for gradient-boosted trees on at most
        ``ROTATE_MAX_FEATURES`` measured features (never on raw data).
    local_linear : bool, optional
        Append a local linear regression estimate of the target from the nearest training
        objects (see :func:`build_pipeline`). Default: for gradient-boosted regression on at
        most ``ROTATE_MAX_FEATURES`` measured features and at least ``LOCAL_LINEAR_MIN_ROWS``
        searched rows (never on raw data). The saved model then keeps its training features.

    vote : bool
        With ``algorithm="auto"``, also cross-validate the average of the two best
        candidates (mean of class probabilities, or of predictions for regression) on the
        same validation folds, and keep it only if its mean validation score beats the best
        single algorithm. Candidates that need per-sample weights (the classifying ANN), give no
        class probabilities (the SVM) or are slow to refit (CNN) are left out of the vote.

    Returns
    -------
    TrainResult
    """
    from threadpoolctl import threadpool_limits

    # OpenMP pools (histogram boosting) and BLAS spin-wait badly on a busy machine; keep them to
    # the cores the caller grants (n_jobs, default 1). Parallelism comes from n_jobs in the searches.
    n_threads = 1 if n_jobs is None else (max(1, n_jobs) if n_jobs > 0 else None)
    with threadpool_limits(limits=n_threads):
        return _train(X, y, algorithm, task, test_size=test_size, groups=groups, cv=cv,
                      random_state=random_state, n_jobs=n_jobs, progress=progress, scoring=scoring,
                      redshift=redshift, raw=raw, pca=pca, n_iter=n_iter, max_candidates=max_candidates,
                      search_max_rows=search_max_rows, learning_curve=learning_curve,
                      importances=importances, diagnostics_max_rows=diagnostics_max_rows,
                      feature_names=feature_names, target_name=target_name, cnn_params=cnn_params,
                      model_params=model_params, rotate=rotate, local_linear=local_linear, vote=vote)


def _train(X, y, algorithm, task, *, test_size, groups, cv, random_state, n_jobs, progress, scoring,
           redshift, raw, pca, n_iter, max_candidates, search_max_rows, learning_curve, importances,
           diagnostics_max_rows, feature_names, target_name, cnn_params, model_params,
           rotate=None, local_linear=None, vote=True) -> TrainResult:
    from sklearn.base import clone

    t0 = time.time()
    is_spectra = hasattr(X, "flux") and hasattr(X, "wavelength")
    raw = raw or is_spectra
    Xa, ya, names, yname, keep = prepare_xy(X, y, feature_names=feature_names)
    target_name = target_name or yname
    task = task or infer_task(ya)
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape[0] != len(np.asarray(y)):
            raise ValueError(f"groups has {groups.shape[0]} values but y has {len(np.asarray(y))}")
        groups = groups[keep]
    if not 0 < test_size < 1:
        raise ValueError(f"test_size (CLI: --test-size) must be between 0 and 1, got {test_size}")
    if cv < 2:
        raise ValueError(f"cv must be at least 2 folds, got {cv}")
    if search_max_rows is not None and search_max_rows < 2 * cv:
        raise ValueError(f"search_max_rows={search_max_rows} leaves too few rows for a {cv}-fold search; "
                         f"give at least {2 * cv}, or None for all training rows (0 on the command line)")
    n = Xa.shape[0]
    if n < cv:
        raise ValueError(f"only {n} row(s) with a target, fewer than the cv={cv} cross-validation folds; "
                         "add data or lower cv")
    classes = None
    if task == "classification":
        classes, counts = np.unique(ya, return_counts=True)
        if classes.size < 2:
            raise ValueError(f"the target has only one class ({str(classes[0])!r}); a classifier needs at least two")
        if classes.size > max(50, n // 2):
            raise ValueError(f"task='classification' but the target has {classes.size} distinct values in {n} rows "
                             "(it looks continuous); use task='regression', or bin the target into classes")
        # a whole-number target may be a count or a measurement rather than classes: say how to treat it so
        as_number = ("; if the target is a number (a count, a magnitude bin), pass task='regression' "
                     "(CLI: --task regression)" if ya.dtype.kind in "iuf" else "")
        rare = classes[counts < 2]
        if rare.size:
            raise ValueError(f"{rare.size} class(es) {[str(c) for c in rare[:10]]} have a single example; a stratified split needs at "
                             f"least 2 per class (drop or merge them){as_number}")
        n_train_min = counts * (1 - test_size)
        if np.floor(n_train_min.min()) < cv:
            bad = classes[np.floor(n_train_min) < cv]
            raise ValueError(f"class(es) {[str(c) for c in bad]} have too few examples for cv={cv} folds after holding out "
                             f"{test_size:.0%} for testing ({dict(zip(classes.tolist(), counts.tolist()))}); "
                             f"lower cv, merge rare classes or drop them{as_number}")
    else:
        try:
            ya = ya.astype(np.float64)
        except ValueError:
            raise ValueError(f"task='regression' (CLI: --task regression) needs a numeric target, but the target has non-numeric values "
                             f"such as {str(ya[0])!r}; use task='classification' for classes") from None
        if np.ptp(ya) == 0:
            where = f" {target_name!r}" if target_name else ""
            raise ValueError(f"the target{where} is constant: all {n} rows with a target have the value "
                             f"{ya[0]:g}; there is nothing to learn (check the target column)")
    if redshift is None:
        redshift = task == "regression" and _m.looks_like_redshift(target_name)
    redshift = bool(redshift and task == "regression")
    n_jobs_model = n_jobs

    if task == "classification":
        _warn_target_in_disguise(Xa, ya, names)
    tr, te, split_kind = _split(ya, task, test_size, groups, random_state, cv=cv)
    if tr.size < 2 * cv or te.size < 2:
        raise ValueError(f"the split leaves {tr.size} training and {te.size} test row(s): each of the cv={cv} "
                         "validation folds and the test split need at least 2 rows for a score to mean anything "
                         f"(one row gives a perfect sigma_NMAD or R² of nothing); add data, lower cv or raise test_size")
    if task == "classification":
        absent = np.setdiff1d(np.unique(ya), np.unique(ya[tr]))
        if absent.size:  # only a grouped split can do this: whole groups go to one side
            raise ValueError(f"the grouped split puts every row of class(es) {[str(c) for c in absent]} in the test "
                             "split, so the model could never predict them: those classes live in too few groups. "
                             "Use other groups, another random_state (CLI: --seed), or drop those classes")
    test_fraction = te.size / n
    if groups is not None and abs(test_fraction - test_size) > 0.1:
        msg = (f"the grouped split holds out {test_fraction:.0%} of the rows ({te.size} of {n}), not the "
               f"requested test_size={test_size:g}: whole groups go to one side (sizes of the "
               f"{np.unique(groups).size} groups differ, or there are few of them)")
        warnings.warn(msg, UserWarning, stacklevel=3)
    Xtr, Xte, ytr, yte = Xa[tr], Xa[te], ya[tr], ya[te]
    gtr = groups[tr] if groups is not None else None
    score_name = _scoring(task, redshift, scoring)
    score_label = score_name if isinstance(score_name, str) else "neg_sigma_nmad"

    recs = recommend(Xtr, ytr, task=task, raw=raw)  # the training rows only: the test split is looked at once
    if algorithm == "auto":
        pool = [r for r in recs if (r.algorithm != "cnn" or (raw and _has_torch() and r.score >= 0.5))]
        # skip what the recommendation advises against (e.g. boosting 4,000 pixels of 200 spectra),
        # but always compare at least two algorithms
        advised = [r for r in pool if r.score >= AUTO_MIN_SCORE]
        chosen = (advised if len(advised) >= 2 else pool[:2])[:max_candidates]
    elif algorithm in ALGORITHMS:
        chosen = [next(r for r in recs if r.algorithm == algorithm)]
    else:
        raise ValueError(f"unknown algorithm {algorithm!r}; choose 'auto' or one of {ALGORITHMS}")

    search_idx = _subsample(np.arange(tr.size), ytr, task, search_max_rows, random_state)
    Xs, ys = Xtr[search_idx], ytr[search_idx]
    gs = gtr[search_idx] if gtr is not None else None
    splitter = _cv_splitter(task, cv, gs, random_state)
    y_std = float(np.std(ytr)) if task == "regression" else 1.0
    # the fewest rows a search fit sees (with cv=2, half the rows: fewer than a PCA sized on all of them)
    n_fit_min = min(len(a) for a, _ in splitter.split(Xs, ys, gs))

    rows, best, tuned = [], None, []
    accepted: set = set()  # model_params keys some candidate accepts
    for rec in _progress(chosen, desc="searching", enabled=progress and len(chosen) > 1, unit="model"):
        use_pca = rec.options.get("pca", False) if pca is None else pca
        if rec.algorithm in ("rf", "gbt", "cnn") and pca is None:
            use_pca = False
        pipe, space = build_pipeline(rec.algorithm, task, n_features=Xa.shape[1], n_train=search_idx.size,
                                     random_state=random_state, n_jobs=n_jobs_model, redshift=redshift,
                                     pca=use_pca, y_std=y_std, cnn_params=cnn_params,
                                     rotate=False if raw else rotate,
                                     local_linear=False if raw else local_linear, n_fit_min=n_fit_min)
        if rec.algorithm == "cnn":
            space = {}
        if model_params:
            est = pipe.named_steps["model"]
            # gbt averages GBT_BAGS boosters: its parameters go to every booster
            prefix = "model__estimator__" if rec.algorithm == "gbt" else "model__"
            valid = (est.estimator if rec.algorithm == "gbt" else est).get_params()
            fixed = {f"{prefix}{k}": v for k, v in model_params.items() if k in valid}
            accepted.update(k for k in model_params if k in valid)
            pipe.set_params(**fixed)
            space = {k: v for k, v in space.items() if k not in fixed}
        t1 = time.time()
        params, folds = _search(one_booster(pipe), space, Xs, ys, cv=splitter, scoring=score_name,
                                n_iter=n_iter, groups=gs, n_jobs=n_jobs, random_state=random_state,
                                fit_params=_fit_params(rec.algorithm, task, ys))
        dt = time.time() - t1
        log.info("%s: CV %s %.4f ± %.4f (%.1f s) with %s", rec.algorithm, score_label, folds.mean(),
                 folds.std(), dt, params)
        rows.append((rec.algorithm, float(folds.mean()), float(folds.std()), str(params), dt))
        tuned.append((rec.algorithm, pipe, params, folds))
        if best is None or folds.mean() > best[3].mean():
            best = (rec.algorithm, pipe, params, folds)

    unused = [k for k in (model_params or {}) if k not in accepted]
    if unused:
        tried = ", ".join(r.algorithm for r in chosen)
        msg = (f"model_params {unused} ignored: no candidate model ({tried}) has such a parameter "
               "(a misspelling, or a parameter of another algorithm?)")
        warnings.warn(msg, UserWarning, stacklevel=3)
    algo, pipe, params, folds = best
    model = clone(pipe).set_params(**params)
    if vote and algorithm == "auto":
        voted = _try_vote(tuned, task, Xs, ys, gs, splitter, score_name, n_jobs, (algo, folds))
        if voted is not None:
            model, vfolds, members = voted
            log.info("vote of %s: CV %s %.4f beats %s %.4f", members, score_label, vfolds.mean(), algo,
                     folds.mean())
            algo, folds = f"vote({','.join(members)})", vfolds
            params = {a: pr for a, _, pr, _ in tuned if a in members}
            rows.append((algo, float(folds.mean()), float(folds.std()),
                         "average of the tuned " + " and ".join(members), float("nan")))
    from astropy.table import Table

    candidates = Table(rows=rows, names=("algorithm", "cv_mean", "cv_std", "params", "search_seconds"),
                       dtype=(str, float, float, str, float))
    note = "chosen on validation folds only; the test split was not used"
    if any("gbt" in str(a) for a in candidates["algorithm"]):
        note += f"; boosted trees (gbt) were validated with one booster and refitted as the average of {GBT_BAGS}"
    if any(_members_param(t[1].named_steps["model"]) == "n_networks" for t in tuned):
        note += f"; the networks (ann) were searched with one network and refitted as the average of {MLP_NETWORKS}"
    candidates.meta.update({"scoring": score_label, "note": note})
    t1 = time.time()
    with _quiet_convergence():
        model.fit(Xtr, ytr, **_fit_params(algo, task, ytr))
    log.info("%s refitted on the %d training rows (%.1f s)", algo, tr.size, time.time() - t1)

    # --- the one look at the test split ---
    y_pred = model.predict(Xte)
    proba = _positive_score(model, Xte) if task == "classification" else None
    if task == "classification":
        test_scores = _m.classification_metrics(yte, y_pred, proba=proba if classes.size == 2 else None,
                                                classes=classes)
    else:
        test_scores = _m.regression_metrics(yte, y_pred, redshift=redshift)
    test_scores.update(_uncertainty(task, redshift, yte, y_pred, random_state))

    lc = None
    rng_diag = np.random.default_rng(random_state)
    t1 = time.time()
    if learning_curve:
        lc_idx = _subsample(np.arange(tr.size), ytr, task, diagnostics_max_rows, random_state)
        lc_cv = _cv_splitter(task, min(cv, 3), gtr[lc_idx] if gtr is not None else None, random_state)
        lc_score = "balanced_accuracy" if task == "classification" else "r2"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # boosted averages are cut to one booster (5× cheaper), as in the search
                lc = _learning_curve(one_booster(model), Xtr[lc_idx], ytr[lc_idx], lc_cv, lc_score,
                                     gtr[lc_idx] if gtr is not None else None, n_jobs, random_state,
                                     task, _fit_params(algo, task, ytr[lc_idx]))
        except ValueError as exc:  # e.g. a class absent from the smallest training size
            log.warning("learning curve skipped: %s", exc)
        log.info("learning curve (%.1f s)", time.time() - t1)
    imps = None
    t1 = time.time()
    if importances:
        from .diagnostics import contiguous_groups, permutation_importances

        te_idx = _subsample(np.arange(te.size), yte, task, diagnostics_max_rows, random_state)
        p = Xa.shape[1]
        grp = None if p <= 60 else contiguous_groups(p, 30)
        grp_names = list(names) if grp is None else [f"{names[g[0]]}–{names[g[-1]]}" for g in grp]
        imp_scoring = "balanced_accuracy" if task == "classification" else "r2"
        imps = permutation_importances(model, Xte[te_idx], yte[te_idx], scoring=imp_scoring,
                                       n_repeats=5 if grp is None else 3, groups=grp, names=grp_names,
                                       random_state=rng_diag)
        log.info("permutation importances (%.1f s)", time.time() - t1)

    summary = _data_summary(Xtr, ytr, Xte, names, task, target_name, split_kind, classes, test_size, cv,
                            random_state, search_idx.size, time.time() - t0)
    summary["test_fraction"] = round(test_fraction, 4)  # held out in fact (grouped splits move whole groups)
    summary["trained_utc"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    result = TrainResult(model=model, algorithm=algo, task=task, best_params=params, cv_scores=folds,
                         test_scores=test_scores, candidates=candidates, feature_names=list(names),
                         target_name=target_name, scoring=score_label, redshift=redshift, classes=classes,
                         summary=summary, y_test=yte, y_pred=np.asarray(y_pred), proba=proba,
                         learning_curve=lc, importances=imps, recommendations=recs,
                         test_index=np.flatnonzero(keep)[te])
    log.info("trained %s in %.1f s", algo, time.time() - t0)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("%s", result.summary_text())
    return result


def _uncertainty(task, redshift, y_true, y_pred, random_state) -> dict:
    """95 % bootstrap intervals of the headline test scores (keys ``<metric>_ci95_low/high``)."""
    import warnings as _w

    from sklearn.metrics import balanced_accuracy_score

    if task == "classification":
        fns = {"balanced_accuracy": balanced_accuracy_score}
    elif redshift:
        fns = {"sigma_nmad": lambda t, p: _m.sigma_nmad(p, t),
               "catastrophic_fraction": lambda t, p: _m.catastrophic_fraction(p, t)}
    else:
        fns = {"rmse": lambda t, p: float(np.sqrt(np.mean((p - t) ** 2)))}
    out = {}
    with _w.catch_warnings():
        _w.simplefilter("ignore")
        for name, fn in fns.items():
            lo, hi = _m.bootstrap_interval(fn, y_true, y_pred, n_boot=200, random_state=random_state)
            out[f"{name}_ci95_low"], out[f"{name}_ci95_high"] = lo, hi
    return out


def _learning_curve(model, X, y, cv, scoring, groups, n_jobs, random_state, task, fit_params=None):
    from .diagnostics import compute_learning_curve

    sizes = (0.2, 0.4, 0.7, 1.0)
    if task == "classification":
        # the smallest size must still see every class in every fold
        _, counts = np.unique(y, return_counts=True)
        n_fold_train = y.size * (1 - 1 / cv.get_n_splits())
        min_frac = min(1.0, 3 * y.size / (counts.min() * n_fold_train))
        sizes = tuple(s for s in sizes if s >= min(min_frac, 1.0)) or (1.0,)
    return compute_learning_curve(model, X, y, cv=cv, scoring=scoring, train_sizes=sizes, groups=groups,
                                  n_jobs=n_jobs, random_state=random_state, fit_params=fit_params)


def _data_summary(Xtr, ytr, Xte, names, task, target_name, split_kind, classes, test_size, cv, random_state,
                  n_search, seconds):
    s = {
        "task": task, "target": target_name, "n_train": int(Xtr.shape[0]), "n_test": int(Xte.shape[0]),
        "n_features": int(Xtr.shape[1]), "split": split_kind, "test_size": test_size, "cv_folds": cv,
        "random_state": random_state, "n_search_rows": int(n_search), "train_seconds": round(seconds, 2),
    }
    if len(names) <= 200:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            s["feature_mean"] = dict(zip(names, np.nanmean(Xtr, axis=0).round(6).tolist()))
            s["feature_std"] = dict(zip(names, np.nanstd(Xtr, axis=0).round(6).tolist()))
    if task == "classification":
        cl, counts = np.unique(ytr, return_counts=True)
        s["class_counts"] = {str(c): int(k) for c, k in zip(cl, counts)}
    else:
        s["target_range"] = [float(np.min(ytr)), float(np.max(ytr))]
        s["target_mean"] = float(np.mean(ytr))
        s["target_std"] = float(np.std(ytr))
    return s
