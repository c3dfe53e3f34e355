"""Baseline weirdness detectors wrapping scikit-learn, all with one sign: **higher = weirder**.

scikit-learn's outlier estimators follow the opposite convention (their
``score_samples`` is *lower* for more abnormal objects). Every class here
converts, so that ``weirdness_`` and ``score_samples`` can be compared with the
unsupervised random forest (:class:`serendip.outliers.UnsupervisedRandomForest`)
and combined in a :class:`RankAverageEnsemble`.

=========================  =================================================  ==============================
name (``make_detector``)   class                                              weirdness
=========================  =================================================  ==============================
``"iforest"``              :class:`IsolationForestDetector`                   Liu et al. (2008) anomaly score
``"lof"``                  :class:`LocalOutlierFactorDetector`                local outlier factor (≈1 inlier)
``"knn"``                  :class:`KNNDistanceDetector`                       distance to k-th neighbour
``"pca"``                  :class:`PCAReconstructionDetector`                 mean squared residual
``"ensemble"``             :class:`RankAverageEnsemble`                       mean rank fraction in (0, 1]
``"urf"``                  :class:`~serendip.outliers.UnsupervisedRandomForest`  random-forest weirdness
=========================  =================================================  ==============================

Every detector takes an optional ``scale`` (``None``, ``"standard"`` or
``"robust"``) that rescales features before fitting (the scaling learnt on the
training set is reused for new data). Distance-based detectors (LOF, kNN, PCA)
depend on the feature scales; for spectra on a common flux scale keep
``scale=None``, for heterogeneous catalogue features use ``"standard"``.
"""
from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
from sklearn.exceptions import NotFittedError
from sklearn.base import clone

from .._logging import get_logger
from .._validation import as_feature_matrix, sklearn_random_state
from ._base import WeirdnessDetector

__all__ = ["IsolationForestDetector", "LocalOutlierFactorDetector", "KNNDistanceDetector",
           "PCAReconstructionDetector", "RankAverageEnsemble", "make_detector", "DETECTORS",
           "available_detectors"]

log = get_logger(__name__)

_SCALES = (None, "standard", "robust")


def make_scaler(scale):
    """An unfitted scikit-learn scaler for ``scale``: ``"standard"`` (zero mean, unit variance),
    ``"robust"`` (median and interquartile range), or None for ``None`` (features as they are)."""
    if scale not in _SCALES:
        raise ValueError(f"scale must be one of {_SCALES}; got {scale!r}")
    if scale is None:
        return None
    from sklearn.preprocessing import RobustScaler, StandardScaler

    return StandardScaler() if scale == "standard" else RobustScaler()


class _SklearnBaseline(WeirdnessDetector):
    """Shared plumbing: input checks and the optional feature scaling."""

    def _prepare_fit(self, X, min_rows: int = 2) -> np.ndarray:
        scaler = make_scaler(self.scale)
        X = as_feature_matrix(X, name="X", min_rows=min_rows)
        self.n_features_in_ = X.shape[1]
        if scaler is None:
            self.scaler_ = None
            return X
        self.scaler_ = scaler.fit(X)
        # a constant feature has scale 0; sklearn already maps it to scale 1
        return self.scaler_.transform(X)

    def _prepare_score(self, X) -> np.ndarray:
        if not hasattr(self, "weirdness_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit(X) first")
        X = as_feature_matrix(X, name="X")
        self._check_n_features(X)
        return X if self.scaler_ is None else self.scaler_.transform(X)


def _check_neighbours(n_neighbors, n_objects: int, who: str) -> None:
    if not isinstance(n_neighbors, numbers.Integral) or n_neighbors < 1:
        raise ValueError(f"{who}: n_neighbors must be a positive integer; got {n_neighbors!r}")
    if n_objects <= n_neighbors:
        raise ValueError(
            f"{who}: n_neighbors={n_neighbors} needs more than {n_neighbors} objects, but X has "
            f"{n_objects}; use fewer neighbours or more objects"
        )


class IsolationForestDetector(_SklearnBaseline):
    """Isolation forest (Liu, Ting & Zhou 2008). **Higher = weirder.**

    ``weirdness_`` is the anomaly score ``s(x, n) = 2^{-E[h(x)] / c(n)}`` of the
    paper, in (0, 1): close to 1 for objects isolated in few splits, about 0.5
    or below for ordinary ones. It is ``-IsolationForest.score_samples`` (scikit-learn
    returns the negative, so lower = weirder there).

    Parameters
    ----------
    n_estimators : int, default 200
    max_samples : int, float or "auto", default "auto"
        Sub-sample size per tree (``"auto"`` = min(256, n)).
    max_features : int or float, default 1.0
    scale : {None, "standard", "robust"}
        Irrelevant for the forest itself (splits are per feature) but accepted for symmetry.
    random_state : int, RandomState, numpy Generator or None
        A Generator is turned into one int seed drawn from it at each ``fit``.
    n_jobs : int or None
    """

    detector_name = "iforest"

    def __init__(self, n_estimators: int = 200, max_samples="auto", max_features=1.0, scale=None,
                 random_state=None, n_jobs=None):
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.max_features = max_features
        self.scale = scale
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y=None):
        """Fit the forest on ``X`` (n_objects, n_features) and set ``weirdness_`` (higher = weirder)."""
        from sklearn.ensemble import IsolationForest

        Xs = self._prepare_fit(X)
        self.estimator_ = IsolationForest(n_estimators=self.n_estimators, max_samples=self.max_samples,
                                          max_features=self.max_features,
                                          random_state=sklearn_random_state(self.random_state),
                                          n_jobs=self.n_jobs).fit(Xs)
        self.weirdness_ = -self.estimator_.score_samples(Xs)
        return self

    def score_samples(self, X) -> np.ndarray:
        """Anomaly score of new objects (higher = weirder)."""
        Xs = self._prepare_score(X)
        return -self.estimator_.score_samples(Xs)


class LocalOutlierFactorDetector(_SklearnBaseline):
    """Local outlier factor (Breunig et al. 2000). **Higher = weirder.**

    ``weirdness_`` is the LOF of each training object (about 1 for inliers,
    larger for objects in sparser regions than their neighbours), i.e.
    ``-negative_outlier_factor_`` of scikit-learn. The estimator is fitted in
    *novelty* mode, so :meth:`score_samples` scores new objects against the
    training set (new objects are not each other's neighbours).

    Parameters
    ----------
    n_neighbors : int, default 20
        Must be smaller than the number of training objects (a clear error otherwise).
    metric : str, default "minkowski"
    p : float, default 2
    scale : {None, "standard", "robust"}
    n_jobs : int or None

    Notes
    -----
    Duplicated objects: LOF assumes that no two objects coincide (Breunig et al.
    2000). When an object appears more than ``n_neighbors`` times, the
    reachability distances among its copies are 0, their local reachability
    density in scikit-learn is ``1 / 1e-10``, and objects with those copies
    among their neighbours get factors around 1e10. Such values say "next to a stack of duplicates", not "1e10 times
    weirder"; drop exact duplicates first (e.g. ``np.unique(X, axis=0)``) or use
    the rank of the score (as :class:`RankAverageEnsemble` does).
    """

    detector_name = "lof"

    def __init__(self, n_neighbors: int = 20, metric: str = "minkowski", p: float = 2, scale=None,
                 n_jobs=None):
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.p = p
        self.scale = scale
        self.n_jobs = n_jobs

    def fit(self, X, y=None):
        """Fit on ``X`` and set ``weirdness_`` = LOF of the training objects (higher = weirder)."""
        from sklearn.neighbors import LocalOutlierFactor

        Xs = self._prepare_fit(X)
        _check_neighbours(self.n_neighbors, Xs.shape[0], "LocalOutlierFactorDetector")
        self.estimator_ = LocalOutlierFactor(n_neighbors=self.n_neighbors, metric=self.metric, p=self.p,
                                             novelty=True, n_jobs=self.n_jobs).fit(Xs)
        self.weirdness_ = -np.asarray(self.estimator_.negative_outlier_factor_, dtype=np.float64)
        return self

    def score_samples(self, X) -> np.ndarray:
        """LOF of new objects relative to the training set (higher = weirder)."""
        Xs = self._prepare_score(X)
        return -self.estimator_.score_samples(Xs)


class KNNDistanceDetector(_SklearnBaseline):
    """Distance to the k nearest neighbours (Ramaswamy et al. 2000). **Higher = weirder.**

    For training objects the object itself is excluded from its neighbours.

    Parameters
    ----------
    n_neighbors : int, default 10
    aggregate : {"kth", "mean"}, default "kth"
        Distance to the k-th neighbour, or the mean distance to the k nearest.
    metric : str, default "euclidean"
    scale : {None, "standard", "robust"}
    n_jobs : int or None
    """

    detector_name = "knn"

    def __init__(self, n_neighbors: int = 10, aggregate: str = "kth", metric: str = "euclidean",
                 scale=None, n_jobs=None):
        self.n_neighbors = n_neighbors
        self.aggregate = aggregate
        self.metric = metric
        self.scale = scale
        self.n_jobs = n_jobs

    def _aggregate(self, dist: np.ndarray) -> np.ndarray:
        return dist[:, -1].astype(np.float64) if self.aggregate == "kth" else dist.mean(axis=1, dtype=np.float64)

    def fit(self, X, y=None):
        """Index ``X`` and set ``weirdness_`` = k-NN distance of each training object (higher = weirder)."""
        from sklearn.neighbors import NearestNeighbors

        if self.aggregate not in ("kth", "mean"):
            raise ValueError(f"aggregate must be 'kth' or 'mean'; got {self.aggregate!r}")
        Xs = self._prepare_fit(X)
        _check_neighbours(self.n_neighbors, Xs.shape[0], "KNNDistanceDetector")
        self.estimator_ = NearestNeighbors(n_neighbors=self.n_neighbors, metric=self.metric,
                                           n_jobs=self.n_jobs).fit(Xs)
        dist, _ = self.estimator_.kneighbors()  # X=None: each object's neighbours exclude itself
        self.weirdness_ = self._aggregate(dist)
        return self

    def score_samples(self, X) -> np.ndarray:
        """k-NN distance of new objects to the training set (higher = weirder)."""
        Xs = self._prepare_score(X)
        dist, _ = self.estimator_.kneighbors(Xs, n_neighbors=self.n_neighbors)
        return self._aggregate(dist)


class PCAReconstructionDetector(_SklearnBaseline):
    """PCA reconstruction error. **Higher = weirder.**

    The weirdness is the mean squared residual per feature between an object and
    its projection on the first ``n_components`` principal components of the
    training set: objects unlike the bulk of the population are poorly
    reconstructed.

    Parameters
    ----------
    n_components : int, float or None, default 0.95
        Number of components, or (a float in (0, 1)) the fraction of variance to keep.
        An int must lie in ``[1, min(n_objects, n_features) - 1]``. Whatever is
        asked, at most ``min(n_objects, n_features) - 1`` components are kept
        (but at least 1): with every component kept, each object is
        reconstructed exactly and the residuals are floating-point noise with
        an arbitrary ranking. So when a fraction (or None) would keep every
        component, which happens on low-dimensional or nearly isotropic data,
        one component fewer is kept and a warning is logged; the fitted number
        is ``n_components_``.
    whiten : bool, default False
    scale : {None, "standard", "robust"}
    random_state : int, RandomState, numpy Generator or None
        Used by the randomized SVD solver on large inputs. A Generator is
        turned into one int seed drawn from it at each ``fit``.
    block_size : int, default 8192
        Objects scored per block (bounds the memory of the residuals).

    Attributes
    ----------
    estimator_ : sklearn.decomposition.PCA
    n_components_ : int
        Number of principal components kept.
    weirdness_ : ndarray of shape (n_objects,)
        Mean squared residual of each training object, **higher = weirder**.
    """

    detector_name = "pca"

    def __init__(self, n_components=0.95, whiten: bool = False, scale=None, random_state=None,
                 block_size: int = 8192):
        self.n_components = n_components
        self.whiten = whiten
        self.scale = scale
        self.random_state = random_state
        self.block_size = block_size

    def fit(self, X, y=None):
        """Fit the principal components and set ``weirdness_`` (mean squared residual, higher = weirder)."""
        from sklearn.decomposition import PCA

        Xs = self._prepare_fit(X, min_rows=2)
        n_comp = self.n_components
        if isinstance(n_comp, numbers.Integral):
            limit = min(Xs.shape) - 1
            if not 1 <= n_comp <= max(limit, 1):
                raise ValueError(f"PCAReconstructionDetector: n_components={n_comp} must be between 1 and "
                                 f"min(n_objects, n_features) - 1 = {limit} for X of shape {Xs.shape}")
        seed = sklearn_random_state(self.random_state)
        self.estimator_ = PCA(n_components=n_comp, whiten=self.whiten, random_state=seed).fit(Xs)
        rank = _pca_rank(self.estimator_, Xs.shape)
        cap = max(rank - 1, 1)
        if self.estimator_.n_components_ > cap:
            # every non-zero direction kept: exact reconstruction, the residuals are rounding noise
            log.warning("PCAReconstructionDetector: n_components=%r keeps %d components, which reconstruct X "
                        "(shape %s, rank %d) exactly, so every residual would be rounding noise; keeping %d "
                        "component(s) instead", n_comp, self.estimator_.n_components_, Xs.shape, rank, cap)
            self.estimator_ = PCA(n_components=cap, whiten=self.whiten, svd_solver="full",
                                  random_state=seed).fit(Xs)
        if rank <= 1:
            log.warning("PCAReconstructionDetector: X (shape %s) has rank %d, so one component reconstructs it "
                        "exactly and every weirdness is ~0; use more features (or objects)", Xs.shape, rank)
        self.n_components_ = int(self.estimator_.n_components_)
        self.weirdness_ = self._residual(Xs)
        return self

    def _residual(self, Xs: np.ndarray) -> np.ndarray:
        out = np.empty(Xs.shape[0], dtype=np.float64)
        for start in range(0, Xs.shape[0], self.block_size):
            block = Xs[start:start + self.block_size]
            recon = self.estimator_.inverse_transform(self.estimator_.transform(block))
            out[start:start + block.shape[0]] = np.mean((block - recon) ** 2, axis=1)
        return out

    def score_samples(self, X) -> np.ndarray:
        """Mean squared reconstruction residual of new objects (higher = weirder)."""
        return self._residual(self._prepare_score(X))


def _pca_rank(pca, shape) -> int:
    """Number of principal directions of a fitted ``PCA`` that carry more than rounding-level variance.

    A component counts when its variance exceeds ``v_max * max(shape) * eps`` (``v_max`` the
    largest variance): below that, scikit-learn's solvers (``covariance_eigh`` works on the
    covariance, so its precision is relative to the variance) return rounding noise. Only the
    kept components' variances are stored; those left out are known to be noise when their
    mean (``noise_variance_``) is below the same tolerance.
    """
    var = np.asarray(pca.explained_variance_, dtype=np.float64)
    if var.size == 0 or not var[0] > 0:
        return 0
    tol = var[0] * max(shape) * np.finfo(np.float64).eps
    rank = int(np.sum(var > tol))
    if rank < var.size or var.size >= min(shape):
        return rank
    if float(pca.noise_variance_) <= tol:
        return rank  # the components left out carry no variance
    return min(shape)  # more directions than the kept ones


class RankAverageEnsemble(WeirdnessDetector):
    """Average of the detectors' *rank fractions*. **Higher = weirder.**

    Each member is fitted on the same data; its scores are turned into the
    fraction of training objects it scores at or below (an empirical CDF, so
    scores on different scales become comparable), and the ensemble weirdness
    is the (weighted) mean of those fractions, in (0, 1]. New objects are
    placed on each member's training distribution the same way.

    Parameters
    ----------
    detectors : sequence of str or WeirdnessDetector, default ("iforest", "lof", "knn", "pca")
        Names for :func:`make_detector` or unfitted detector instances (they are cloned).
    weights : sequence of float, optional
        One weight per detector (default equal).
    scale : {None, "standard", "robust"}, optional
        Passed to every member built from a name (instances keep their own).
    random_state : int, RandomState, numpy Generator or None
        Passed to members built from a name that accept it. A Generator is
        turned into one int seed drawn from it at each ``fit``, and that seed
        is given to every such member.
    n_jobs : int or None
        Passed to members built from a name that accept it.
    progress : bool, default True
        Progress bars of the members that show them (the random forest).
        ``False`` also silences the members given as instances.

    Attributes
    ----------
    estimators_ : list of WeirdnessDetector
        The fitted members.
    weights_ : ndarray
        The normalised weights.
    sorted_scores_ : list of ndarray
        Each member's sorted training scores (the reference for the rank fractions).
    weirdness_ : ndarray of shape (n_objects,)
        Mean rank fraction, in (0, 1], **higher = weirder**.
    """

    detector_name = "ensemble"

    def __init__(self, detectors: Sequence = ("iforest", "lof", "knn", "pca"), weights=None, scale=None,
                 random_state=None, n_jobs=None, progress: bool = True):
        self.detectors = detectors
        self.weights = weights
        self.scale = scale
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.progress = progress

    def _members(self, random_state=None) -> list:
        if isinstance(self.detectors, (str, WeirdnessDetector)) or len(self.detectors) == 0:
            raise ValueError("RankAverageEnsemble needs a non-empty list of detectors (names or instances)")
        out = []
        for d in self.detectors:
            if isinstance(d, str):
                if d == "ensemble":
                    raise ValueError("an ensemble cannot contain 'ensemble'")
                common = {"scale": self.scale, "random_state": random_state, "n_jobs": self.n_jobs,
                          "progress": self.progress}
                out.append(make_detector(d, **_accepted(d, common)))
            else:
                member = clone(d)
                if not self.progress and "progress" in member.get_params(deep=False):
                    member.set_params(progress=False)
                out.append(member)
        return out

    def fit(self, X, y=None):
        """Fit every member on ``X`` and set ``weirdness_`` = mean rank fraction (higher = weirder)."""
        X = as_feature_matrix(X, name="X", min_rows=2)
        members = self._members(sklearn_random_state(self.random_state))
        w = np.ones(len(members)) if self.weights is None else np.asarray(self.weights, dtype=float)
        if w.shape != (len(members),) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"weights must be {len(members)} finite non-negative numbers with a positive sum; "
                             f"got {self.weights!r}")
        self.weights_ = w / w.sum()
        self.n_features_in_ = X.shape[1]
        self.estimators_ = [m.fit(X) for m in members]
        self.sorted_scores_ = [np.sort(np.asarray(m.weirdness_, dtype=np.float64)) for m in self.estimators_]
        self.weirdness_ = self._combine([m.weirdness_ for m in self.estimators_])
        return self

    def _combine(self, scores: list) -> np.ndarray:
        total = np.zeros(len(scores[0]), dtype=np.float64)
        for wgt, ref, s in zip(self.weights_, self.sorted_scores_, scores):
            # a score equal to a training score up to rounding counts as equal: an object scored in another
            # batch (BLAS sums in another order) differs in its last bits, and must not move a rank
            s = np.asarray(s, dtype=np.float64)
            total += wgt * np.searchsorted(ref, s + RANK_TIE_RTOL * np.abs(s), side="right") / ref.size
        return total

    def score_samples(self, X) -> np.ndarray:
        """Mean rank fraction of new objects within each member's training scores (higher = weirder)."""
        if not hasattr(self, "weirdness_"):
            raise NotFittedError("this RankAverageEnsemble is not fitted yet: call fit(X) first")
        X = as_feature_matrix(X, name="X")
        self._check_n_features(X)
        return self._combine([m.score_samples(X) for m in self.estimators_])


#: A member score within this fraction of itself of a training score counts as a tie (RankAverageEnsemble).
RANK_TIE_RTOL = 1e-9


def _urf_class():
    from .urf import UnsupervisedRandomForest

    return UnsupervisedRandomForest


#: registry name -> class (or a zero-argument loader for optional/late modules)
DETECTORS = {
    "iforest": IsolationForestDetector,
    "lof": LocalOutlierFactorDetector,
    "knn": KNNDistanceDetector,
    "pca": PCAReconstructionDetector,
    "ensemble": RankAverageEnsemble,
    "urf": _urf_class,
}
_ALIASES = {"isolation_forest": "iforest", "isolationforest": "iforest", "local_outlier_factor": "lof",
            "knn_distance": "knn", "pca_reconstruction": "pca", "random_forest": "urf", "rank_average": "ensemble"}


def available_detectors() -> list[str]:
    """Names accepted by :func:`make_detector`."""
    return list(DETECTORS)


def _resolve(name: str):
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")
    cls = DETECTORS[key]
    if not isinstance(cls, type):
        cls = cls()
    return cls


def _accepted(name, params: dict) -> dict:
    """The subset of ``params`` that detector ``name`` accepts (others are dropped), skipping ``None``."""
    cls = _resolve(name) if isinstance(name, str) else type(name)
    keys = cls().get_params(deep=False) if isinstance(name, str) else name.get_params(deep=False)
    return {k: v for k, v in params.items() if k in keys and v is not None}


def make_detector(name: str, **params) -> WeirdnessDetector:
    """Build a weirdness detector (higher = weirder) by name.

    Parameters
    ----------
    name : {"iforest", "lof", "knn", "pca", "ensemble", "urf"}
        ``"urf"`` is :class:`serendip.outliers.UnsupervisedRandomForest`.
    **params
        Constructor parameters of that detector.

    Raises
    ------
    ValueError
        For an unknown name or a parameter the detector does not take.
    """
    cls = _resolve(name)
    valid = set(cls().get_params(deep=False))
    bad = sorted(set(params) - valid)
    if bad:
        raise ValueError(f"detector {name!r} does not take parameter(s) {bad}; it takes {sorted(valid)}")
    return cls(**params)
