r"""The unsupervised random forest weirdness of Baron & Poznanski (2017), exact and fast.

**Weirdness: higher = weirder.**

The algorithm (MNRAS 465, 4530; arXiv:1611.07526; the authors' demo notebook)
------------------------------------------------------------------------------
1. Real data X: N objects × F features.
2. Synthetic data: for every feature independently, N values drawn with
   replacement from that feature's real values (same marginals, no covariance).
3. A random forest (500 trees, gini, ``max_features = sqrt(F)``, bootstrap,
   fully grown) learns real (label 1) versus synthetic (label 0) on all 2N rows.
4. A[i, t] is the leaf of real object i in tree t; G[i, t] = 1 if that leaf is
   *purely real* (the tree's probability of "real" there is exactly 1).
5. c_ij = Σ_t [A_it = A_jt]·G_it·G_jt, g_j = Σ_t G_jt, S_ij = c_ij / g_j.
6. w_i = (1/N) Σ_j (1 − S_ij), j running over all objects including i.

Exact scoring in O(N·T) without the N×N matrix
----------------------------------------------
Write the sum in step 6 as w_i = 1 − (1/N) Σ_j S_ij and expand S_ij:

.. math::

    \sum_j S_{ij} = \sum_j \frac{1}{g_j}\sum_t [A_{it}=A_{jt}]\,G_{it}G_{jt}
                  = \sum_t G_{it} \sum_{j:\,A_{jt}=A_{it}} \frac{G_{jt}}{g_j}
                  = \sum_t G_{it}\, P_t(A_{it}),

where :math:`P_t(\ell) = \sum_{j \in \ell} G_{jt}/g_j` is the population of leaf
:math:`\ell` of tree t, each real object weighted by 1/g_j (the weight is per
*column* object j because S divides by g_j). The order of the sums can be
swapped because every term is finite and non-negative. So:

* g_j: one pass over the N×T leaf matrix, O(N·T);
* P: one weighted ``bincount`` of the leaf ids, O(N·T) time, one float per leaf;
* Σ_j S_ij: one gather ``P[A_it]`` per entry, O(N·T).

The result is the notebook's number up to floating-point summation order
(tests check 1e-12 against a brute-force implementation of steps 4–6).

*Objects that never land in a good leaf* (g_j = 0; possible with few trees,
out-of-bag objects, or the ``"majority"`` rule) would make the notebook divide
by zero. Here S_ij = 0 for every i when g_j = 0, *including* S_jj: the forest
never vouches for such an object, so it is similar to nothing and gets the
maximum weirdness, exactly 1 — weirder than any object with g > 0 (at most
(N−1)/N). In P they weigh 0, which is what the formula above then gives.

New objects (:meth:`UnsupervisedRandomForest.score_samples`)
-----------------------------------------------------------
For an object x not in the training set, w(x) = (1/N) Σ_j (1 − S(x, j)) over
the N training objects j, with S(x, j) = c_xj / g_j normalised by the
*training* object's g_j exactly as in step 5 (and the same P). Scoring a
training object this way reproduces its ``weirdness_`` exactly, because its
own S_ii = 1 term is part of the population sum.

Variants (parameters of :class:`UnsupervisedRandomForest`)
---------------------------------------------------------
* ``normalization="symmetric"`` — S_ij = c_ij / b_ij with b_ij the number of
  trees where *both* objects are in good leaves (Reis et al. 2018, MNRAS 476,
  2117). Not separable, so it is computed from sparse leaf-indicator products
  in row blocks (cost ∝ the number of non-zero similarities).
* ``score_mode="knn"`` — weirdness is the mean distance 1 − S_ij to the
  ``score_k`` most similar *other* objects (a k-nearest-neighbour distance).
* ``synthetic="uniform"`` — synthetic features uniform over each feature's
  range (Shi & Horvath 2006, second recipe).
* ``good_leaf="majority"`` — a leaf is good if more than half of its training
  weight is real, for depth-limited trees (``max_depth``).
* ``snr_strata`` — one forest per signal-to-noise bin: noise makes a spectrum
  look like a product of marginals, so faithful URF ranks low-S/N normal
  spectra as weird; within a stratum they are compared with their peers.
  Scores are put on one scale with a robust z-score per stratum
  (``strata_scale="zscore"``, the default) or left raw (``"none"``).
* ``n_repeats`` — the authors advise averaging independent runs; the
  similarity is the mean of per-run similarities and the weirdness is scored
  from it. With ``score_mode="mean"`` that is the mean of the runs' weirdness
  (w_i = mean_j(1 − S_ij) still holds exactly); with ``"knn"`` the ``score_k``
  nearest objects are those of the averaged similarity, which is not the mean
  of per-run k-NN scores (each run would pick its own, noisier neighbours).
* ``max_fit_samples`` — merged sub-forests: the objects are split at random
  into ceil(N / max_fit_samples) subsets, each gets its own synthetic data and
  its own share of the trees (optionally on a random feature subset,
  ``subforest_features``, remembered per tree), and the trees are merged.
  Leaves are then taken for *all* N objects in every tree.

Memory: the fitted model keeps the N×T leaf ids as int32 (4·N·T bytes) plus
one float per leaf; data are read in row blocks of ``block_size``. Without
``max_fit_samples`` the single forest is trained on all N objects, which are
then held in memory once (float32) for the fit. The similarity products
(``similarity``, ``most_similar``, the symmetric and k-NN variants) build a
sparse leaf-indicator matrix of about 24 bytes per object and tree, and then
the similarities themselves row block by row block. A row of S has up to N
non-zeros (an object in populous good leaves is similar to a large part of the
sample, however few the trees), so the rows of a block are chosen from a per-row
bound (the summed population of the object's good leaves, at most N) to keep
each block near ``SIMILARITY_BLOCK_BYTES`` (256 MiB, temporaries included; see
:mod:`serendip.outliers.similarity`); one row alone can need up to about
64·N bytes.
"""
from __future__ import annotations

import copy
import math
import time
import warnings
from typing import Any

import numpy as np
from sklearn.utils import check_random_state

from .._logging import get_logger, progress
from .._validation import (describe_positions, iter_row_blocks, n_rows, object_ids, require_real_numbers,
                           sklearn_random_state)
from ._base import WeirdnessDetector, weirdness_rank
from ._leaves import (LeafIndex, MergedForest, apply_block, effective_n_jobs, good_counts, leaf_populations,
                      similarity_sums)
from .similarity import ForestSimilarity, row_blocks, topk_rows
from .synthetic import SYNTHETIC_KINDS, make_synthetic

from .variants import VARIANTS

__all__ = ["UnsupervisedRandomForest", "best_weirdness", "lof_within_strata", "rank_average", "add_lof",
           "weirdness_table", "open_weirdness_input", "resolve_variant", "canonical_variant", "VARIANTS"]

log = get_logger(__name__)

_FIX = ("fill masked pixels first with serendip.spectra.fill_masked, drop those objects, "
        "or pass impute=True (serendip weird --impute) to replace them by the column median")


# ---------------------------------------------------------------------------------------------
# Input handling: arrays, memmaps, Spectra and stores, read in row blocks
# ---------------------------------------------------------------------------------------------
class _Source:
    """Uniform row-block access to arrays, memmaps, :class:`Spectra` and stores."""

    def __init__(self, X, name="X"):
        self.name = name
        self.raw = X
        if isinstance(X, (list, tuple)):
            X = np.asarray(X)
        if hasattr(X, "iter_blocks") or hasattr(X, "flux"):
            self.obj = X
            self.n = n_rows(X)
        else:
            if hasattr(X, "tocsr") or hasattr(X, "nnz"):  # scipy sparse: np.asarray makes a 0-d object array
                raise TypeError(f"{name} is a sparse matrix; the forest needs dense features: pass {name}.toarray() "
                                "(spectra and catalogue features are dense anyway)")
            arr = require_real_numbers(X if isinstance(X, np.ndarray) else np.asarray(X), name)
            if arr.ndim != 2:
                raise ValueError(f"{name} must be 2-D (n_objects, n_features); found shape {arr.shape}")
            self.obj = arr
            self.n = arr.shape[0]
        if self.n == 0:
            raise ValueError(f"{name} is empty: it has 0 objects, 0 sample(s) while a minimum of 2 is required.")
        self._ids = None
        first = next(iter_row_blocks(self.obj, 1))[1]
        if first.ndim != 2 or first.shape[1] == 0:
            raise ValueError(f"{name} has no features: 0 feature(s) (shape=({self.n}, 0)) while a minimum of 1 is "
                             f"required. (first row has shape {first.shape})")
        self.n_features = first.shape[1]

    @property
    def ids(self) -> np.ndarray:
        if self._ids is None:
            self._ids = object_ids(self.obj, self.n)
        return self._ids

    def snr(self) -> np.ndarray | None:
        meta = getattr(self.obj, "meta", None)
        if meta is not None and "snr" in getattr(meta, "colnames", ()):
            return np.asarray(meta["snr"], dtype=float)
        return None

    def blocks(self, block_size, impute=None):
        for start, block in iter_row_blocks(self.obj, block_size):
            yield start, self._clean(block, start, impute)

    def _clean(self, block, start, impute):
        """Check and convert ``block``; ``start`` is its first row, or the array of its rows."""
        block = np.asarray(block)
        rows = None if isinstance(start, (int, np.integer)) else np.asarray(start, dtype=np.int64)
        if block.ndim != 2 or block.shape[1] != self.n_features:
            where = f"rows from {start}" if rows is None else f"rows {describe_positions(rows)}"
            raise ValueError(f"{self.name}: {where} have shape {block.shape}; "
                             f"expected {self.n_features} features")
        if block.dtype.kind not in "fiub":
            raise ValueError(f"{self.name} must be numeric; found dtype {block.dtype}")
        wide = block
        with np.errstate(over="ignore"):  # overflow is reported below, naming the values
            block = np.asarray(block, dtype=np.float32)
        bad = ~np.isfinite(block)
        if bad.any() and wide.dtype.kind == "f" and wide.dtype.itemsize > 4:
            over = bad & np.isfinite(wide)
            if over.any():
                r, c = np.nonzero(over)
                pos = r + start if rows is None else rows[r]
                raise ValueError(f"{self.name} has {over.sum()} value(s) too large for float32 (|x| > 3.4e38), the "
                                 f"precision the forest works in, at {describe_positions(pos, c, self.ids)}; "
                                 "rescale those features (e.g. take their logarithm)")
        if bad.any():
            if impute is None:
                r, c = np.nonzero(bad)
                ids = self.ids
                pos = r + start if rows is None else rows[r]
                raise ValueError(
                    f"{self.name} contains NaN or infinite values at "
                    f"{describe_positions(pos, c, ids)}; {_FIX}")
            block = np.where(bad, impute[None, :], block).astype(np.float32)
        return block

    def take(self, rows: np.ndarray, block_size: int, impute=None) -> np.ndarray:
        """Rows ``rows`` (sorted, unique) as a float32 array, streamed for stores."""
        rows = np.asarray(rows, dtype=np.int64)
        if isinstance(self.obj, np.ndarray):
            out = np.empty((rows.size, self.n_features), dtype=np.float32)
            for s in range(0, rows.size, block_size):
                r = rows[s:s + block_size]
                out[s:s + r.size] = self._clean(self.obj[r], r, impute)
            return out
        parts = []
        for start, block in self.blocks(block_size, impute):
            lo, hi = np.searchsorted(rows, [start, start + block.shape[0]])
            if hi > lo:
                parts.append(block[rows[lo:hi] - start])
        return np.concatenate(parts, axis=0)


def _median_impute_values(X: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        X = np.where(np.isfinite(X), X, np.nan)
        med = np.nanmedian(X, axis=0)
    return np.where(np.isfinite(med), med, 0.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# The estimator
# ---------------------------------------------------------------------------------------------
class UnsupervisedRandomForest(WeirdnessDetector):
    """Unsupervised random forest weirdness (Baron & Poznanski 2017). **Higher = weirder.**

    The defaults reproduce the paper and its notebook exactly; scoring uses the
    exact O(N·T) formula derived in :mod:`serendip.outliers.urf` and never
    builds the N×N similarity matrix.

    Parameters
    ----------
    n_estimators : int, default 500
        Trees per independent run (shared among sub-forests when
        ``max_fit_samples`` splits the data).
    criterion : str, default "gini"
    max_features : int, float, str, default "sqrt"
    bootstrap : bool, default True
    max_depth : int or None, default None
        None = fully grown trees (the paper).
    min_samples_leaf : int, default 1
    synthetic : {"marginal", "uniform"}, default "marginal"
        How the synthetic data are drawn (see :mod:`serendip.outliers.synthetic`).
    good_leaf : {"pure", "majority"}, default "pure"
        Which leaves count: purely real (paper), or majority real.
    normalization : {"column", "symmetric"}, default "column"
        S_ij = c_ij / g_j (paper) or c_ij / b_ij (Reis et al. 2018).
    score_mode : {"mean", "knn"}, default "mean"
        Weirdness = mean_j (1 − S_ij) over all objects (paper), or the mean
        distance 1 − S_ij to the ``score_k`` most similar other objects.
    score_k : int, default 10
        Neighbours of the ``"knn"`` score (fewer when there are fewer other objects).
    n_repeats : int, default 1
        Independent runs (own synthetic data and forest) whose similarities are averaged
        before scoring (for ``score_mode="mean"``: their weirdness is averaged).
    max_fit_samples : int or None, default None
        Above this many objects, fit merged sub-forests on random disjoint
        subsets of at most this size (each with its own synthetic data).
    subforest_features : int, float or None, default None
        Train each sub-forest on a random subset of this many features
        (a float is a fraction of F); the subset is remembered per tree.
    snr_strata : int, sequence of float, or None, default None
        Separate forests per S/N bin: an int is a number of quantile bins, a
        sequence gives the inner bin edges. S/N comes from ``fit(X, snr=...)``
        or from ``X.meta['snr']``.
    strata_scale : {"zscore", "none"}, default "zscore"
        How stratum scores are made comparable: robust z-score
        (median/MAD within the stratum) or raw.
    impute : bool, default False
        Replace NaN/inf by the column median of the fit sample instead of raising.
    block_size : int, default 4096
        Rows per block when reading, applying and scoring.
    n_jobs : int or None
        Threads for fitting (scikit-learn) and for applying the trees.
    random_state : int, numpy Generator, RandomState or None
        A Generator is turned into one int seed drawn from it at each ``fit``
        (so a Generator made with a given seed gives the same forest).
    progress : bool, default True
        Show tqdm progress bars (also those of the S/N strata's forests).

    Attributes
    ----------
    weirdness_ : ndarray of shape (N,)
        Weirdness of the training objects, **higher = weirder**; in [0, 1] for
        the paper's score (1 = similar to nothing).
    forest_ : RandomForestClassifier, MergedForest or list
        The scikit-learn forest (one run, one forest), else the merged forest
        (trees of all runs and sub-forests, with their feature subsets); with
        ``snr_strata``, the list of the strata's forests.
    leaves_ : ndarray of int32, shape (N, T)
        Global leaf id of every training object in every tree.
    good_leaf_ : ndarray of bool, shape (n_leaves,)
        Whether each global leaf is good.
    n_good_trees_ : ndarray of int, shape (N, n_repeats)
        g_j: trees (per run) in which object j is in a good leaf.
    leaf_weight_ : ndarray of float, shape (n_leaves,)
        P: leaf populations weighted by 1/g (see the module docstring).
    n_train_ : int
    n_features_in_ : int
    snr_edges_, stratum_, strata_models_ :
        Set when ``snr_strata`` is used.

    Notes
    -----
    What the score sees: the forest learns where the real data differ from
    synthetic data with the same marginals and no correlations, and two objects
    are similar when they share the leaves that are purely real. So an object is
    weird when few others share its *correlated* structure. Two consequences:

    * a populous class that lives in the tails of the features with strong
      correlations is **not** weird: it is easy to tell apart from the synthetic
      data, its members share pure leaves with each other, and they score low;
    * a bulk whose features look close to independent mixes with the synthetic
      data, falls in impure leaves and scores high.

    Example: HTRU2 pulsars (9 % of the candidates, extreme and correlated
    profile statistics) get weirdness ROC AUC 0.13 (scored as normal), while an
    isolation forest, which isolates tail values feature by feature, gets 0.925
    (``benchmarks/bench_detectors_htru2.py``, all 17,898 candidates). On a
    3,000-candidate subset, a random forest telling the real candidates from their
    marginal-shuffled copies gives the pulsars a mean P(real) of 0.92 against 0.87
    for the rest. Use the URF for objects
    unlike the others in how their features go together (spectra), and a
    tail-sensitive baseline when a rare class is rare mainly in single features.

    Examples
    --------
    >>> import numpy as np
    >>> from serendip.outliers import UnsupervisedRandomForest
    >>> X = np.random.default_rng(0).normal(size=(200, 20))
    >>> urf = UnsupervisedRandomForest(n_estimators=20, random_state=0, progress=False).fit(X)
    >>> urf.weirdness_.shape
    (200,)
    """

    detector_name = "urf"

    def __init__(self, n_estimators=500, *, criterion="gini", max_features="sqrt", bootstrap=True,
                 max_depth=None, min_samples_leaf=1, synthetic="marginal", good_leaf="pure",
                 normalization="column", score_mode="mean", score_k=10, n_repeats=1, max_fit_samples=None,
                 subforest_features=None, snr_strata=None, strata_scale="zscore", impute=False,
                 block_size=4096, n_jobs=None, random_state=None, progress=True):
        self.n_estimators = n_estimators
        self.criterion = criterion
        self.max_features = max_features
        self.bootstrap = bootstrap
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.synthetic = synthetic
        self.good_leaf = good_leaf
        self.normalization = normalization
        self.score_mode = score_mode
        self.score_k = score_k
        self.n_repeats = n_repeats
        self.max_fit_samples = max_fit_samples
        self.subforest_features = subforest_features
        self.snr_strata = snr_strata
        self.strata_scale = strata_scale
        self.impute = impute
        self.block_size = block_size
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.progress = progress

    # ------------------------------------------------------------------ checks
    def _check_params(self):
        def choice(name, allowed):
            v = getattr(self, name)
            if v not in allowed:
                raise ValueError(f"{name} must be one of {allowed}; got {v!r}")
        choice("synthetic", SYNTHETIC_KINDS)
        choice("good_leaf", ("pure", "majority"))
        choice("normalization", ("column", "symmetric"))
        choice("score_mode", ("mean", "knn"))
        choice("strata_scale", ("zscore", "none"))
        for name in ("n_estimators", "n_repeats", "block_size", "score_k"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer; got {v!r}")
        if self.max_fit_samples is not None and (not isinstance(self.max_fit_samples, (int, np.integer))
                                                 or self.max_fit_samples < 2):
            raise ValueError(f"max_fit_samples must be None or an integer >= 2; got {self.max_fit_samples!r}")

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None, *, snr=None):
        """Fit the forest(s) on ``X`` and set ``weirdness_`` (higher = weirder).

        Parameters
        ----------
        X : array-like (N, F), memmap, :class:`~serendip.spectra.Spectra` or store
            Read in row blocks; NaN/inf are an error unless ``impute=True``.
        y : ignored
        snr : array-like of shape (N,), optional
            Signal-to-noise per object, needed by ``snr_strata`` when ``X``
            has no ``meta['snr']``.

        Returns
        -------
        self
        """
        self._check_params()
        src = _Source(X)
        if src.n < 2:
            raise ValueError(f"X has {src.n} object(s), {src.n} sample(s) while a minimum of 2 is required: the "
                             "unsupervised random forest compares each object with the others")
        if self.snr_strata is not None:
            return self._fit_strata(src, snr)
        t0 = time.perf_counter()
        rs = check_random_state(sklearn_random_state(self.random_state))
        n, F = src.n, src.n_features
        self.n_features_in_ = F
        self.n_train_ = n
        self.impute_values_ = self._scan(src)
        self.scan_time_ = time.perf_counter() - t0

        # ---- forests: repeats × sub-forests, each with its own synthetic data
        m = n if self.max_fit_samples is None else min(n, int(self.max_fit_samples))
        n_sub = math.ceil(n / m)
        if n_sub > self.n_estimators:
            raise ValueError(f"max_fit_samples={self.max_fit_samples} splits {n} objects into {n_sub} "
                             f"sub-forests but there are only {self.n_estimators} trees; raise one of them")
        trees_per_sub = np.diff(np.linspace(0, self.n_estimators, n_sub + 1).round().astype(int))
        k_feat = self._n_subforest_features(F)
        estimators, features, reps, subs = [], [], [], []
        single = None
        X_all = None
        if n_sub == 1:
            X_all = src.take(np.arange(n), self.block_size, self.impute_values_)
        bar = progress(total=self.n_repeats * n_sub, desc="URF fit (sub-forests)", enabled=self.progress)
        for r in range(self.n_repeats):
            chunks = [np.arange(n)] if n_sub == 1 else np.array_split(rs.permutation(n), n_sub)
            for s, rows in enumerate(chunks):
                Xs = X_all if X_all is not None else src.take(np.sort(rows), self.block_size,
                                                              self.impute_values_)
                cols = None
                if k_feat is not None and k_feat < F:
                    cols = np.sort(rs.choice(F, size=k_feat, replace=False))
                    Xs = np.ascontiguousarray(Xs[:, cols])
                rf = self._fit_one(Xs, int(trees_per_sub[s]), rs)
                if self.n_repeats == 1 and n_sub == 1 and cols is None:
                    single = rf
                estimators.extend(rf.estimators_)
                features.extend([cols] * len(rf.estimators_))
                reps.extend([r] * len(rf.estimators_))
                subs.extend([r * n_sub + s] * len(rf.estimators_))
                del Xs
                bar.update(1)
        bar.close()
        self._merged_ = MergedForest(estimators, features, reps, subs, F)
        self.forest_ = single if single is not None else self._merged_
        self.n_subforests_ = n_sub
        self.fit_time_ = time.perf_counter() - t0

        # ---- leaves of every real object in every tree
        t1 = time.perf_counter()
        index = LeafIndex(estimators, self.good_leaf)
        self._index_ = index
        self.good_leaf_ = index.good
        self.leaf_offsets_ = index.offsets
        self.tree_repeat_ = self._merged_.repeat_
        self.leaves_ = np.empty((n, len(estimators)), dtype=index.dtype)
        if X_all is not None:
            blocks = ((s, X_all[s:s + self.block_size]) for s in range(0, n, self.block_size))
        else:
            blocks = src.blocks(self.block_size, self.impute_values_)
        for start, block in progress(blocks, total=math.ceil(n / self.block_size), desc="URF apply",
                                     enabled=self.progress):
            self.leaves_[start:start + block.shape[0]] = apply_block(self._merged_, index, block, self.n_jobs)
        del X_all
        self.apply_time_ = time.perf_counter() - t1

        # ---- exact O(N·T) scores
        t2 = time.perf_counter()
        self.n_good_trees_ = good_counts(self.leaves_, self.good_leaf_, self.tree_repeat_, self.n_repeats,
                                         self.block_size)
        self.leaf_weight_ = leaf_populations(self.leaves_, self.good_leaf_, self.tree_repeat_,
                                             self.n_good_trees_, index.n_leaves, self.block_size)
        self._sim = None
        self.weirdness_ = self._training_scores()
        self.score_time_ = time.perf_counter() - t2
        n_never = int((self.n_good_trees_ == 0).any(axis=1).sum())
        if n_never:
            log.info("%d object(s) never landed in a good leaf in at least one run; "
                     "their similarity to everything is 0 in that run", n_never)
        log.info("URF: N=%d F=%d trees=%d (%d sub-forest(s) × %d repeat(s)); fit %.1fs apply %.1fs score %.2fs",
                 n, F, len(estimators), n_sub, self.n_repeats, self.fit_time_, self.apply_time_,
                 self.score_time_)
        return self

    def _n_subforest_features(self, F):
        k = self.subforest_features
        if k is None:
            return None
        if isinstance(k, float) and 0 < k <= 1:
            return max(1, int(round(k * F)))
        if isinstance(k, (int, np.integer)) and 1 <= k <= F:
            return int(k)
        raise ValueError(f"subforest_features must be a fraction in (0, 1] or an integer in [1, {F}]; got {k!r}")

    def _scan(self, src):
        """One pass: non-finite values (error or impute values) and constant columns."""
        lo = np.full(src.n_features, np.inf)
        hi = np.full(src.n_features, -np.inf)
        impute_values = None
        for start, block in iter_row_blocks(src.obj, self.block_size):
            if not self.impute:
                block = src._clean(np.asarray(block), start, None)  # its own dtype: float64 overflow is named
            else:
                block = np.asarray(block, dtype=np.float32)
                block = np.where(np.isfinite(block), block, np.nan)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                lo = np.fmin(lo, np.nanmin(block, axis=0))
                hi = np.fmax(hi, np.nanmax(block, axis=0))
        if self.impute:
            sample = np.sort(check_random_state(0).choice(src.n, size=min(src.n, 20000), replace=False))
            raw = []
            for start, block in iter_row_blocks(src.obj, self.block_size):
                a, b = np.searchsorted(sample, [start, start + block.shape[0]])
                raw.append(np.asarray(block, dtype=np.float32)[sample[a:b] - start])
            impute_values = _median_impute_values(np.concatenate(raw))
        const = ~(hi > lo)
        if const.any() and getattr(self, "_allow_constant", False):
            # an S/N stratum's model: the whole data set was checked; a feature constant inside one
            # stratum (a line flag that is always 0 at low S/N) is simply never split on there
            log.debug("%d feature(s) constant in this stratum; the forest ignores them", int(const.sum()))
        elif const.any():
            cols = np.flatnonzero(const)
            shown = ", ".join(str(c) for c in cols[:10]) + (f" ... ({cols.size} in all)" if cols.size > 10 else "")
            raise ValueError(
                f"X has {cols.size} constant (or entirely non-finite) feature column(s): {shown}. A constant "
                "feature carries no information and makes real and synthetic data identical there; "
                "drop those columns (e.g. X[:, X.std(axis=0) > 0]) or restrict the wavelength range. Values "
                "are compared in float32 (about 7 significant digits): a feature such as an MJD of 58000 that "
                "varies by 1e-4 becomes constant, so subtract its mean or rescale it first")
        return impute_values

    def _fit_one(self, Xs, n_trees, rs):
        from sklearn.ensemble import RandomForestClassifier

        seed_syn, seed_rf = (int(v) for v in rs.randint(0, np.iinfo(np.int32).max, size=2))
        syn = make_synthetic(Xs, self.synthetic, random_state=seed_syn)
        Z = np.concatenate([Xs, syn], axis=0)
        del syn
        y = np.r_[np.ones(Xs.shape[0], dtype=np.int8), np.zeros(Xs.shape[0], dtype=np.int8)]
        rf = RandomForestClassifier(
            n_estimators=n_trees, criterion=self.criterion, max_features=self.max_features,
            bootstrap=self.bootstrap, max_depth=self.max_depth, min_samples_split=2,
            min_samples_leaf=self.min_samples_leaf, n_jobs=self.n_jobs, random_state=seed_rf)
        return rf.fit(Z, y)

    # ------------------------------------------------------------------ scoring internals
    def _similarity_engine(self) -> ForestSimilarity:
        if getattr(self, "_sim", None) is None:
            self._sim = ForestSimilarity(self.leaves_, self.good_leaf_, self.tree_repeat_, self.leaf_offsets_,
                                         self.normalization)
        return self._sim

    def _leaf_scores(self, leaves_rows):
        """Weirdness of objects given their leaf rows, column normalisation, mean score (exact formula)."""
        sums = similarity_sums(leaves_rows, self.good_leaf_, self.leaf_weight_, self.tree_repeat_,
                               self.n_repeats)
        return (1.0 - sums / self.n_train_).mean(axis=1)

    def _training_scores(self):
        n = self.n_train_
        out = np.empty(n)
        bs = self.block_size
        if self.score_mode == "mean" and self.normalization == "column":
            starts = range(0, n, bs)

            def one(s):
                out[s:s + bs] = self._leaf_scores(self.leaves_[s:s + bs])

            workers = min(effective_n_jobs(self.n_jobs), len(starts))
            if workers > 1:  # numpy's gathers release the GIL: row blocks in threads
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(workers) as pool:
                    list(pool.map(one, starts))
            else:
                for s in starts:
                    one(s)
            return out
        sim = self._similarity_engine()
        blocks = self._sparse_blocks(sim, self.leaves_, bs)
        for s, e in progress(blocks, total=len(blocks), desc="URF similarity", enabled=self.progress):
            S = sim.block(self.leaves_[s:e])
            out[s:e] = self._scores_from_block(S, np.arange(s, e))
        return out

    def _sparse_blocks(self, sim, leaves, max_rows, rows=None):
        """Row ranges for :meth:`ForestSimilarity.block` that keep each block's similarities in budget.

        Parameters
        ----------
        sim : ForestSimilarity
        leaves : ndarray of int, shape (n, T)
            Leaf rows of the query objects.
        max_rows : int
            Most rows per block.
        rows : ndarray of int, optional
            Query only these rows of ``leaves``; the ranges then index ``rows``.

        Returns
        -------
        list of (start, stop)
            See :func:`serendip.outliers.similarity.row_blocks`.
        """
        n = leaves.shape[0] if rows is None else rows.size
        step = max(1, int(self.block_size))
        bounds = np.empty(n, dtype=np.int64)
        for s in range(0, n, step):  # O(n·T), in chunks to keep the gathers small
            sl = slice(s, s + step)
            bounds[sl] = sim.row_nnz_bound(leaves[sl] if rows is None else leaves[rows[sl]])
        blocks = row_blocks(bounds, max_rows)
        if len(blocks) > 1:
            log.debug("similarity in %d row blocks (at most %d rows; largest row bound %d of %d objects)",
                      len(blocks), max_rows, int(bounds.max()), sim.n)
        return blocks

    def _scores_from_block(self, S, self_rows):
        if self.score_mode == "mean":
            # in [0, 1]: rounding can leave -4e-16 where an object shares every leaf with everyone
            return np.clip(1.0 - np.asarray(S.sum(axis=1)).ravel() / self.n_train_, 0.0, 1.0)
        # no more neighbours than there are other objects (the missing ones would count as distance 1)
        k = max(1, min(int(self.score_k), self.n_train_ - (0 if self_rows is None else 1)))
        _, vals = topk_rows(S, k, exclude=self_rows)
        return (1.0 - vals).mean(axis=1)

    # ------------------------------------------------------------------ public API
    def score_samples(self, X, *, snr=None) -> np.ndarray:
        """Weirdness of new objects against the fitted population (higher = weirder).

        For each row x: w(x) = (1/N) Σ_j (1 − S(x, j)) over the N *training*
        objects j, with S(x, j) normalised exactly as in training (by the
        training object's g_j, or by b_xj for ``normalization="symmetric"``).
        With ``score_mode="knn"`` it is the mean of 1 − S(x, j) over the
        ``score_k`` most similar training objects. With ``snr_strata`` each
        row is scored by the forest of its S/N stratum (``snr`` needed unless
        ``X.meta['snr']`` exists) and scaled like the training scores.

        Scoring the training data itself gives ``weirdness_`` exactly for the
        default mean score (the object's own S_ii = 1 is in the population);
        for ``score_mode="knn"`` a training object would count itself as its
        nearest neighbour.

        Returns
        -------
        ndarray of shape (n_rows,)
        """
        self._check_fitted()
        src = _Source(X, name="X_new")
        if src.n_features != self.n_features_in_:
            raise ValueError(
                f"X_new has {src.n_features} features, but this UnsupervisedRandomForest was fitted with "
                f"{self.n_features_in_}; score spectra on the same grid/features used for fit")
        if self.snr_strata is not None:
            return self._score_strata(src, snr)
        out = np.empty(src.n)
        for start, block in progress(src.blocks(self.block_size, self.impute_values_),
                                     total=math.ceil(src.n / self.block_size), desc="URF score",
                                     enabled=self.progress):
            A = apply_block(self._merged_, self._index_, block, self.n_jobs)
            if self.score_mode == "mean" and self.normalization == "column":
                out[start:start + A.shape[0]] = self._leaf_scores(A)
            else:
                sim = self._similarity_engine()
                for s, e in self._sparse_blocks(sim, A, A.shape[0]):
                    out[start + s:start + e] = self._scores_from_block(sim.block(A[s:e]), None)
        return out

    def _check_fitted(self):
        if not hasattr(self, "weirdness_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("this UnsupervisedRandomForest is not fitted yet; call fit(X) first")

    def _check_rows(self, rows, name):
        rows = np.atleast_1d(np.asarray(rows))
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        rows = rows.astype(np.int64)
        bad = (rows < -self.n_train_) | (rows >= self.n_train_)
        if bad.any():
            raise IndexError(f"{name} contains index {int(rows[bad][0])} outside 0..{self.n_train_ - 1}")
        return np.where(rows < 0, rows + self.n_train_, rows)

    def similarity(self, i_rows, j_rows=None) -> np.ndarray:
        """Forest similarity S_ij between training objects (rows i, columns j), as a dense array.

        Higher = more similar; S_ii = 1 unless object i never lands in a good
        leaf (then its similarity to everything is 0). With the default column
        normalisation S is not symmetric: S_ij = c_ij / g_j.

        Parameters
        ----------
        i_rows : int or array of int
        j_rows : int or array of int, optional
            Default: all training objects.

        Returns
        -------
        ndarray of shape (len(i_rows), len(j_rows))
        """
        self._check_fitted()
        if self.snr_strata is not None:
            return self._strata_similarity(i_rows, j_rows)
        i_rows = self._check_rows(i_rows, "i_rows")
        S = self._similarity_engine().block(self.leaves_[i_rows])
        if j_rows is None:
            return S.toarray()
        return S[:, self._check_rows(j_rows, "j_rows")].toarray()

    def most_similar(self, k: int = 10, block_size: int | None = None, rows=None):
        """The ``k`` most similar other training objects of every object ("spectroscopic twins").

        Computed in row blocks from sparse leaf-indicator products, never N×N.
        Each block's rows are chosen from a per-row bound on the number of
        similar objects so that the block's sparse similarities and the top-k
        selection stay near ``SIMILARITY_BLOCK_BYTES`` (256 MiB); a single
        object can need up to about 64·N bytes. Ties in similarity are broken
        by the lower training index.

        Parameters
        ----------
        k : int
        block_size : int, optional
            Most rows per block (default ``self.block_size``); blocks are made
            smaller where the rows have many non-zero similarities.
        rows : array of int, optional
            Only these objects (default all).

        Returns
        -------
        indices : ndarray of int64, shape (n, k)
            Training indices, most similar first; -1 where fewer than ``k``
            objects have non-zero similarity.
        similarities : ndarray of float64, shape (n, k)
        """
        self._check_fitted()
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer; got {k!r}")
        if self.snr_strata is not None:
            return self._strata_most_similar(k, block_size, rows)
        rows = np.arange(self.n_train_) if rows is None else self._check_rows(rows, "rows")
        sim = self._similarity_engine()
        blocks = self._sparse_blocks(sim, self.leaves_, block_size or self.block_size, rows=rows)
        idx = np.empty((rows.size, k), dtype=np.int64)
        val = np.empty((rows.size, k))
        for s, e in progress(blocks, total=len(blocks), desc="URF twins", enabled=self.progress):
            r = rows[s:e]
            S = sim.block(self.leaves_[r])
            idx[s:e], val[s:e] = topk_rows(S, k, exclude=r)
        return idx, val

    def similarity_matrix(self, *, force: bool = False, max_objects: int = 5000) -> np.ndarray:
        """The full N×N similarity matrix S (dense, float64). Only for small N.

        Raises ``MemoryError`` above ``max_objects`` objects unless ``force=True``.
        """
        self._check_fitted()
        if self.n_train_ > max_objects and not force:
            gb = self.n_train_ ** 2 * 8 / 1e9
            raise MemoryError(f"the full similarity matrix for {self.n_train_} objects needs {gb:.1f} GB; "
                              "use most_similar() or similarity(rows), or pass force=True")
        return self.similarity(np.arange(self.n_train_))

    # ------------------------------------------------------------------ S/N strata
    def _strata_snr(self, src, snr):
        if snr is None:
            snr = src.snr()
        if snr is None:
            raise ValueError("snr_strata needs the S/N of every object: pass snr=... or give a Spectra/store "
                             "with a meta['snr'] column")
        snr = np.asarray(snr, dtype=float).ravel()
        if snr.size != src.n:
            raise ValueError(f"snr has {snr.size} values but X has {src.n} objects")
        if not np.all(np.isfinite(snr)):
            bad = np.flatnonzero(~np.isfinite(snr))
            raise ValueError(f"snr is NaN/inf at {describe_positions(bad, None, src.ids)}")
        return snr

    def _fit_strata(self, src, snr):
        snr = self._strata_snr(src, snr)
        if isinstance(self.snr_strata, (int, np.integer)):
            if self.snr_strata < 1:
                raise ValueError(f"snr_strata must be >= 1; got {self.snr_strata}")
            edges = np.quantile(snr, np.linspace(0, 1, int(self.snr_strata) + 1)[1:-1])
        else:
            edges = np.sort(np.asarray(self.snr_strata, dtype=float).ravel())
        stratum = np.searchsorted(edges, snr, side="right")
        rs = check_random_state(sklearn_random_state(self.random_state))
        params = self.get_params(deep=False)
        params.update(snr_strata=None)
        models, w_raw = [], np.empty(src.n)
        self.n_features_in_ = src.n_features
        self.n_train_ = src.n
        # one pass over all objects first, so that non-finite values and constant columns are
        # reported with the row numbers and ids of X, not of a stratum's subset
        self._scan(src)
        for s in range(edges.size + 1):
            rows = np.flatnonzero(stratum == s)
            if rows.size < 2:
                raise ValueError(f"S/N stratum {s} (edges {edges.tolist()}) has {rows.size} object(s); "
                                 "use fewer strata")
            params["random_state"] = int(rs.randint(0, np.iinfo(np.int32).max))
            model = UnsupervisedRandomForest(**params)
            model._allow_constant = True  # checked on all of X above
            Xs = src.take(rows, self.block_size, None) if not self.impute else _take_raw(src, rows)
            try:
                model.fit(Xs)
            except ValueError as exc:
                raise ValueError(f"S/N stratum {s} ({rows.size} objects, edges {edges.tolist()}): {exc}") from exc
            models.append(model)
            w_raw[rows] = model.weirdness_
        self.snr_edges_ = edges
        self.stratum_ = stratum
        self.strata_models_ = models
        self._strata_rows_ = [np.flatnonzero(stratum == s) for s in range(edges.size + 1)]
        self.raw_weirdness_ = w_raw
        self._strata_center_ = np.array([np.median(m.weirdness_) for m in models])
        self._strata_scale_ = np.array([_mad(m.weirdness_) for m in models])
        self.weirdness_ = self._scale_strata(w_raw, stratum)
        self.forest_ = [m.forest_ for m in models]
        return self

    def _scale_strata(self, w, stratum):
        if self.strata_scale == "none":
            return w.copy()
        return (w - self._strata_center_[stratum]) / self._strata_scale_[stratum]

    def _score_strata(self, src, snr):
        snr = self._strata_snr(src, snr)
        stratum = np.searchsorted(self.snr_edges_, snr, side="right")
        # one block of rows at a time (never the whole X), each row scored by its stratum's forest;
        # with impute the sub-forests fill non-finite values themselves, so the rows go in raw
        blocks = (((start, np.asarray(b, dtype=np.float32))
                   for start, b in iter_row_blocks(src.obj, self.block_size))
                  if self.impute else src.blocks(self.block_size, None))
        w = np.empty(src.n)
        quiet = [copy.copy(m) for m in self.strata_models_]  # one bar for the whole pass, not one per block
        for m in quiet:
            m.progress = False
        for start, block in progress(blocks, total=math.ceil(src.n / self.block_size), desc="URF score",
                                     enabled=self.progress):
            st = stratum[start:start + block.shape[0]]
            for s, model in enumerate(quiet):
                sel = np.flatnonzero(st == s)
                if sel.size:
                    w[start + sel] = model.score_samples(block[sel])
        return self._scale_strata(w, stratum)

    def _local(self, rows):
        rows = self._check_rows(rows, "rows")
        strat = self.stratum_[rows]
        local = np.array([np.searchsorted(self._strata_rows_[s], r) for s, r in zip(strat, rows)], dtype=np.int64)
        return rows, strat, local

    def _strata_similarity(self, i_rows, j_rows):
        i_rows, si, li = self._local(i_rows)
        j_rows = np.arange(self.n_train_) if j_rows is None else self._check_rows(j_rows, "j_rows")
        out = np.zeros((i_rows.size, j_rows.size))
        for s, model in enumerate(self.strata_models_):
            ii = np.flatnonzero(si == s)
            jj = np.flatnonzero(self.stratum_[j_rows] == s)
            if ii.size and jj.size:
                lj = np.searchsorted(self._strata_rows_[s], j_rows[jj])
                out[np.ix_(ii, jj)] = model.similarity(li[ii], lj)
        return out

    def _strata_most_similar(self, k, block_size, rows):
        rows = np.arange(self.n_train_) if rows is None else self._check_rows(rows, "rows")
        rows, strat, local = self._local(rows)
        idx = np.full((rows.size, k), -1, dtype=np.int64)
        val = np.zeros((rows.size, k))
        for s, model in enumerate(self.strata_models_):
            sel = np.flatnonzero(strat == s)
            if sel.size:
                li, lv = model.most_similar(k, block_size, rows=local[sel])
                gi = np.where(li >= 0, self._strata_rows_[s][np.maximum(li, 0)], -1)
                idx[sel], val[sel] = gi, lv
        return idx, val


def _mad(w):
    med = np.median(w)
    mad = 1.4826 * np.median(np.abs(w - med))
    if not mad > 0:
        mad = np.std(w) if np.std(w) > 0 else 1.0
    return mad


def _take_raw(src, rows):
    """Rows with non-finite values kept (imputation happens in the sub-model)."""
    rows = np.asarray(rows)
    parts = []
    for start, block in iter_row_blocks(src.obj, 4096):
        a, b = np.searchsorted(rows, [start, start + block.shape[0]])
        if b > a:
            parts.append(np.asarray(block, dtype=np.float32)[rows[a:b] - start])
    return np.concatenate(parts, axis=0)


def _rank_fraction(a: np.ndarray) -> np.ndarray:
    """The fraction of ``a``'s values at or below each value (an empirical CDF in (0, 1]; ties share the top)."""
    return np.searchsorted(np.sort(a), a, side="right") / a.size


def lof_within_strata(X, n_neighbors: int = 20, strata=None, n_jobs: int | None = None):
    """Local outlier factor of each object among the objects of its S/N stratum. **Higher = weirder.**

    Noisy spectra lie far from each other, so LOF fitted on all objects at once calls the noisy
    ones weird. Fitted within a stratum (for example :attr:`UnsupervisedRandomForest.stratum_`), each
    spectrum is compared with equally noisy ones, as the forest's S/N strata do.

    Parameters
    ----------
    X : array-like (N, F)
        Finite features.
    n_neighbors : int, default 20
        LOF neighbours, capped at half of the other objects of the smallest stratum (at least 1).
    strata : array-like of int, shape (N,), optional
        Stratum of each object; None fits one LOF on all objects.
    n_jobs : int, optional

    Returns
    -------
    lof : ndarray of shape (N,)
        The local outlier factor within the object's stratum (higher = weirder).
    rank : ndarray of shape (N,)
        Its rank fraction within the stratum (an empirical CDF in (0, 1]), the score to average with
        others: strata of different sizes and noise then weigh the same.
    n_neighbors : int
        The neighbours used (after the cap).
    """
    from .baselines import LocalOutlierFactorDetector

    X = np.asarray(X, dtype=np.float64)
    groups = ([np.arange(X.shape[0])] if strata is None
              else [np.flatnonzero(np.asarray(strata) == s) for s in np.unique(strata)])
    k = max(1, min(int(n_neighbors), (min(g.size for g in groups) - 1) // 2))
    lof = np.empty(X.shape[0])
    rank = np.empty(X.shape[0])
    for rows in groups:
        v = np.asarray(LocalOutlierFactorDetector(n_neighbors=k, n_jobs=n_jobs).fit(X[rows]).weirdness_,
                       dtype=np.float64)
        lof[rows] = v
        rank[rows] = _rank_fraction(v)
    return lof, rank, k


def best_weirdness(X, snr, *, n_estimators: int = 200, n_neighbors: int = 20, n_jobs: int | None = None,
                   random_state=0, progress: bool = True, return_members: bool = False,
                   lof_strata: bool = True, **urf_params):
    """The "best" serendip weirdness mode: rank average of URF (variant ``"best"``) and LOF. **Higher = weirder.**

    Two detectors see the same features ``X``:

    1. :class:`UnsupervisedRandomForest` with :data:`VARIANTS` ``["best"]`` (uniform synthetic
       data, one forest per S/N tercile, k-nearest-distance score with k = 10, leaves of at
       least 3 objects), which needs the S/N of every object;
    2. scikit-learn's local outlier factor (Breunig et al. 2000) with ``n_neighbors``
       (:class:`~serendip.outliers.LocalOutlierFactorDetector`), by default fitted within each of
       the forest's S/N strata (:func:`lof_within_strata`).

    Each score is turned into its rank fraction (the fraction of objects scored at or below
    it, an empirical CDF in (0, 1]; LOF's within its stratum) and the weirdness is the mean of
    the two fractions, the same combination as :class:`~serendip.outliers.RankAverageEnsemble`
    with equal weights (that class cannot pass ``snr`` to its members, hence this function).

    LOF on all objects at once calls noisy spectra weird: on the held-out survey of
    ``benchmarks/bench_urf_quality.py`` (seed 2) the ensemble's Spearman correlation with S/N among
    normal objects is −0.92 that way and −0.25 within strata, and its ROC AUC 0.911 against 0.928.

    The mode was chosen on the synthetic survey of :func:`serendip.datasets.make_survey`
    seed 1 only, on rest-frame flux resampled to 300 log-spaced pixels (3750-7300 Å) and
    divided by its median; ``benchmarks/bench_urf_quality.py`` measures it on the held-out seed 2.

    Parameters
    ----------
    X : array-like (N, F)
        Finite features (e.g. rest-frame binned flux).
    snr : array-like of shape (N,)
        Signal-to-noise per object, for the S/N strata.
    n_estimators : int, default 200
        Trees per S/N stratum.
    n_neighbors : int, default 20
        LOF neighbours (scikit-learn's default; within strata, at most half of the smallest stratum).
    n_jobs, random_state, progress
        Passed to the URF (``n_jobs`` also to LOF).
    return_members : bool, default False
        Also return ``{"urf": weirdness, "lof": weirdness}`` of the two members (LOF as fitted: within
        the strata when ``lof_strata``).
    lof_strata : bool, default True
        Fit LOF within the forest's S/N strata; False fits it on all objects (the mode before
        2026-11-27).
    **urf_params
        Override URF parameters of the ``"best"`` variant.

    Returns
    -------
    weirdness : ndarray of shape (N,)
        Mean rank fraction in (0, 1]; **higher = weirder**.
    members : dict, only with ``return_members=True``
    """
    from .baselines import LocalOutlierFactorDetector

    params = dict(VARIANTS["best"])
    params.update(urf_params)
    urf = UnsupervisedRandomForest(n_estimators=n_estimators, n_jobs=n_jobs, random_state=random_state,
                                   progress=progress, **params)
    w_urf = urf.fit(X, snr=snr if params.get("snr_strata") is not None else None).weirdness_
    if lof_strata:
        w_lof, lof_rank, _ = lof_within_strata(X, n_neighbors, getattr(urf, "stratum_", None), n_jobs)
    else:
        w_lof = LocalOutlierFactorDetector(n_neighbors=n_neighbors, n_jobs=n_jobs).fit(X).weirdness_
        lof_rank = w_lof
    members = {"urf": np.asarray(w_urf, dtype=np.float64), "lof": np.asarray(w_lof, dtype=np.float64)}
    w = rank_average([members["urf"], lof_rank])
    return (w, members) if return_members else w


def rank_average(scores) -> np.ndarray:
    """Mean rank fraction of several weirdness scores of the same objects. **Higher = weirder.**

    Each score array is replaced by its rank fraction, the fraction of objects it scores at or
    below (an empirical CDF in (0, 1], ties sharing the highest rank of their group), and the
    fractions are averaged with equal weights, as in :class:`~serendip.outliers.RankAverageEnsemble`.

    Parameters
    ----------
    scores : sequence of array-like of shape (N,)
        Weirdness of the same N objects from each detector (higher = weirder, finite).

    Returns
    -------
    ndarray of shape (N,)
        Mean rank fraction in (0, 1]; **higher = weirder**.
    """
    arrays = [np.asarray(s, dtype=np.float64).ravel() for s in scores]
    if not arrays or any(a.size != arrays[0].size for a in arrays) or arrays[0].size == 0:
        raise ValueError("rank_average needs one or more non-empty score arrays of the same length; got lengths "
                         f"{[a.size for a in arrays]}")
    return np.mean([_rank_fraction(a) for a in arrays], axis=0)


# ---------------------------------------------------------------------------------------------
# Table output for the command line and pipelines
# ---------------------------------------------------------------------------------------------
def canonical_variant(variant: str) -> str:
    """A variant name or comma-separated combination as :data:`VARIANTS` spells it (``"Symmetric, knn"`` ->
    ``"symmetric,knn"``, ``"snr_strata"`` -> ``"snr-strata"``); an empty or unknown name is a ``ValueError``."""
    names = [name.strip().lower().replace("_", "-") for name in str(variant).split(",")]
    if not all(names):
        raise ValueError(f"variant must name a variant (e.g. \"best\" or \"symmetric,knn\"); found {variant!r}")
    for name in names:
        if name not in VARIANTS:
            raise ValueError(f"unknown URF variant {name!r}; choose from {', '.join(VARIANTS)} "
                             "(combine with commas, e.g. symmetric,knn)")
    return ",".join(names)


def resolve_variant(variant: str | None) -> dict[str, Any]:
    """Parameters for a variant name, or a comma-separated combination (``"symmetric,knn"``)."""
    params: dict[str, Any] = {}
    for name in canonical_variant(variant or "faithful").split(","):
        params.update(VARIANTS[name])
    return params


def add_lof(tab, X, n_neighbors: int, strata=None, n_jobs=None, forest: str = "the forest"):
    """Rank-average the forest weirdness in ``tab`` with LOF (within S/N strata, if given). **Higher = weirder.**

    ``tab["weirdness"]`` holds the forest's score on entry. On return it holds the mean rank
    fraction of that score and of LOF on ``n_neighbors`` neighbours (:func:`rank_average`,
    :func:`lof_within_strata`); ``rank`` follows it, and ``weirdness_forest`` and
    ``weirdness_lof`` keep the two members. Used by :func:`weirdness_table` and ``serendip run``.

    Parameters
    ----------
    tab : astropy.table.Table
        One row per row of ``X``, with a ``weirdness`` column (the forest's).
    X : array-like (N, F)
        Finite features.
    n_neighbors : int
        LOF neighbours (capped as in :func:`lof_within_strata`).
    strata : array-like of int, optional
        The forest's S/N stratum of each object (:attr:`UnsupervisedRandomForest.stratum_`).
    n_jobs : int, optional
    forest : str
        How the combination's description names the forest.

    Returns
    -------
    combination : str
        The combination in words, for the table's ``meta``.
    n_neighbors : int
        The neighbours LOF used.
    """
    w_forest = np.asarray(tab["weirdness"], dtype=np.float64)
    w_lof, lof_rank, k = lof_within_strata(X, n_neighbors, strata, n_jobs)
    w = rank_average([w_forest, lof_rank])
    tab["weirdness"] = w
    tab["rank"] = weirdness_rank(w)
    tab["weirdness_forest"] = w_forest
    tab["weirdness_lof"] = w_lof
    within = (f" within each of the forest's {np.unique(strata).size} S/N strata (weirdness_lof, ranked within "
              "its stratum)" if strata is not None else " (weirdness_lof)")
    return (f"mean rank fraction of {forest} (weirdness_forest) and the local outlier factor on {k} neighbours"
            f"{within}"), k


def _lof_features(data) -> np.ndarray:
    """All of ``data``'s features in memory for LOF, non-finite values replaced by the column medians
    (only reached with ``impute=True``: the forest refuses them otherwise), as the forest replaces them."""
    src = _Source(data)
    X = _take_raw(src, np.arange(src.n))
    bad = ~np.isfinite(X)
    return np.where(bad, _median_impute_values(X)[None, :], X) if bad.any() else X


def open_weirdness_input(source):
    """Open what ``serendip weird`` accepts: returns ``(data, ids, snr, description)``.

    ``source`` is anything :func:`serendip.spectra.open_input` opens: an array,
    :class:`~serendip.spectra.Spectra` or store, or a path to a store made by
    ``serendip ingest``, a ``.npy`` matrix (opened as a memmap), a ``.npz``
    archive, or a spectra file. ``snr`` is NaN where unknown.
    """
    from serendip.spectra.inputs import open_input

    opened = open_input(source)
    return opened.data, opened.ids, opened.snr, opened.description


def weirdness_table(source, *, variant: str | None = "faithful", n_estimators: int = 500, n_repeats: int = 3,
                    n_jobs: int | None = -1, random_state=0, max_fit_samples: int | None = None,
                    twins: bool | None = None, max_twin_entries: float = 5e7, lof_neighbors: int = 0,
                    progress: bool = True, **params):
    """Fit URF weirdness on ``source`` and return one row per object (weirdness: higher = weirder).

    Parameters
    ----------
    source : path, array, Spectra or store
        See :func:`open_weirdness_input`.
    variant : str
        A name from :data:`VARIANTS` or a comma-separated combination.
    n_estimators, n_repeats, n_jobs, random_state, max_fit_samples, **params
        Passed to :class:`UnsupervisedRandomForest` (``params`` override the variant).
    twins : bool, optional
        Add the most similar other object (``top_similar_id``, ``top_similarity``).
        Default: only when N × trees ≤ ``max_twin_entries`` (the sparse
        similarity needs about 24 bytes per object and tree, about 1.2 GB at
        the default limit).
    lof_neighbors : int, default 0
        0 scores with the forest alone, as the paper does. A positive k rank-averages the forest
        with the local outlier factor on k neighbours, as ``serendip run`` does (k = 20 there; see
        :func:`rank_average`): ``weirdness`` is then the mean of the two rank fractions, and the
        table gains ``weirdness_forest`` and ``weirdness_lof``. When the forest has S/N strata
        (variants ``snr-strata`` and ``best``), LOF is fitted within each of them
        (:func:`lof_within_strata`) and ``snr_stratum`` is added. LOF holds all features in
        memory (about 12 bytes per value: a float32 copy and scikit-learn's float64 one), unlike
        the forest, which reads stores in blocks.
    progress : bool

    Returns
    -------
    astropy.table.Table
        Columns ``id``, ``weirdness``, ``rank`` (1 = weirdest), ``snr``,
        ``top_similar_id``, ``top_similarity`` (and the LOF columns above); ``meta`` holds the parameters,
        input, timings, the score convention and ``tied_at_lowest``, the number
        of objects at the lowest weirdness (a warning is logged when that is half
        or more of them: variants with the kNN score can leave most typical
        objects at exactly 0).
    """
    from .._version import __version__

    if isinstance(lof_neighbors, bool) or not isinstance(lof_neighbors, (int, np.integer)) or lof_neighbors < 0:
        raise ValueError(f"lof_neighbors must be an integer >= 0 (0 = the forest alone); got {lof_neighbors!r}")
    data, ids, snr, description = open_weirdness_input(source)
    kw = resolve_variant(variant)
    kw.update(n_estimators=n_estimators, n_repeats=n_repeats, n_jobs=n_jobs, random_state=random_state,
              max_fit_samples=max_fit_samples, progress=progress)
    kw.update(params)
    model = UnsupervisedRandomForest(**kw)
    fit_snr = snr if kw.get("snr_strata") is not None else None
    if fit_snr is not None and not np.all(np.isfinite(fit_snr)):
        raise ValueError("the snr-strata variant needs a finite S/N for every object; the input has none "
                         "(give a store or spectra with meta['snr'], or a .npz with an 'snr' array)")
    t0 = time.perf_counter()
    model._check_params()  # a bad parameter is not the data's fault: no ingest hint for it
    try:
        model.fit(data, snr=fit_snr)
    except ValueError as exc:
        from serendip.spectra import Spectra

        if not isinstance(data, Spectra):
            raise
        # raw spectra straight from a file: unmasked, on their native pixels, unnormalised
        raise ValueError(f"{exc}. {description} holds raw spectra; run `serendip ingest` on it first (it masks "
                         "bad pixels, resamples to one grid, normalises and fills gaps), then score the store "
                         "it writes") from exc
    tab = model.to_table(ids=np.asarray(ids).astype(str))
    combination, lof_k = "the forest alone", 0
    if lof_neighbors and model.n_train_ >= 3:
        strata = getattr(model, "stratum_", None)
        combination, lof_k = add_lof(tab, _lof_features(data), int(lof_neighbors), strata, n_jobs,
                                     forest=f"the forest ({variant or 'faithful'})")
        if strata is not None:
            tab["snr_stratum"] = np.asarray(strata, dtype=np.int16)  # 0 = the lowest S/N
    tab["snr"] = np.asarray(snr, dtype=float)
    n_trees = n_estimators * n_repeats
    if twins is None:
        twins = model.n_train_ * n_trees <= max_twin_entries
        if not twins:
            log.warning("skipping the most-similar-object column: %d objects × %d trees is above %.0g "
                        "(pass twins=True / --twins to force it)", model.n_train_, n_trees, max_twin_entries)
    if twins:
        idx, sims = model.most_similar(k=1)
        top = idx[:, 0]
        tab["top_similar_id"] = np.where(top >= 0, np.asarray(ids).astype(str)[np.maximum(top, 0)], "")
        tab["top_similarity"] = sims[:, 0]
    w = np.asarray(tab["weirdness"], dtype=np.float64)
    lowest = float(np.nanmin(w)) if w.size else np.nan
    tied = int(np.count_nonzero(w == lowest))
    if w.size >= 20 and tied >= 0.5 * w.size:
        log.warning("%d of %d objects (%.0f%%) share the lowest weirdness (%.3g): the %s variant tells the unusual "
                    "objects apart but not the typical ones, whose ranks then follow the input order. To order all "
                    "objects use the faithful variant (the default), or rank-average the forest with LOF "
                    "(lof_neighbors=20, serendip weird --lof-neighbors 20, as serendip run does)",
                    tied, w.size, 100.0 * tied / w.size, lowest, variant or "faithful")
    tab.meta.update({
        "tied_at_lowest": tied, "detector": "urf+lof" if lof_k else "urf", "combination": combination,
        "lof_neighbors": lof_k, "variant": variant or "faithful", "input": description,
        "n_objects": int(model.n_train_),
        "n_features": int(model.n_features_in_), "algorithm": "unsupervised random forest (Baron & Poznanski 2017)",
        "score_convention": "higher = weirder", "rank_convention": "1 = weirdest",
        "seconds": round(time.perf_counter() - t0, 3), "serendip_version": __version__,
    })
    return tab
