"""The Sequencer (Baron & Ménard 2021, ApJ 909, 149): find the main 1-D trend and order objects along it.

Two modes:

``mode="faithful"``
    Reproduces ``thesequencer`` 0.0.5 step by step: chunking with
    ``numpy.array_split``, unit-sum chunks, per-chunk distance matrices, the tree
    primitive (MST, least-central start, BFS levels, elongation, level order), the
    elongation-weighted average over chunks, the elongation-weighted proximity
    ``P = sum eta/W`` over the (metric, scale) trees, ``D* = 1/P`` and a final tree.
    The final order is identical to the reference's on the parity sets (see
    ``benchmarks/bench_sequencer_parity.py``).

``mode="improved"`` (default)
    Fixes five weaknesses of the reference:

    1. *Scale-free combination*: each (metric, scale) tree's edge weights are divided
       by their median before they become proximities ``eta * median / w``, so no
       metric wins because its raw numbers are small (in the reference L2 usually
       decides). Chunks of one metric and scale keep the reference's weighted average:
       they share the metric's units, and chunks with larger differences carry the
       signal.
    2. *Unit invariance*: with (1), multiplying the grid by any constant (Å -> nm)
       leaves the result unchanged (EMD and energy scale with the grid units).
    3. *Path order*: objects are ordered along the final tree's main path (its hop
       diameter) with each side branch inserted right after the path node where it
       attaches, instead of interleaving branches level by level.
    4. *Comparable elongation*: ``elongation_normalized_ = ln(eta) / ln(N)``, 1 for a
       chain and about 0 for a star. For a sequence whose tree has depth ~ c N^a the
       reference eta ~ N^(2a-1), so ln(eta)/ln(N) tends to the exponent 2a-1 and does
       not drift with N the way eta/N does.

    5. *Soft selection of the elongated trees*: the (metric, scale) trees are weighted
       by ``eta**2`` (``IMPROVED_WEIGHT_POWER``) instead of ``eta``. With 4 metrics and
       5 scales, the many short, bushy trees that follow noise or a broad continuum
       outvote the few elongated ones under linear weights; the reference needs a hard
       ``best_k`` to recover the sequence. Squaring favours the elongated trees without a
       cut-off. On the notebook pulse set (``benchmarks/bench_sequencer_parity.py``,
       5 realisations) linear weights give |rho| 0.58-0.9995 on one machine and
       0.79-0.9995 on another (its SVD draws depend on the linear-algebra library),
       ``eta**2`` 0.9996-0.9997 on both, with no ``best_k``. On 16 machine-independent
       realisations (``tests/test_sequencer.py``) linear weights lose two (0.42, 0.02)
       and ``eta**2`` gives 0.9995-0.9998.

Methods: ``"exact"`` computes full N x N chunk matrices (memory 2 x 8 N^2 bytes,
time O(N^2 M)); ``"knn"`` evaluates the same distances only on the edges of a
k-nearest-neighbour graph of the objects (memory O(N k)), so every spanning tree
is a spanning tree of that graph (approximate). ``"auto"`` picks exact for
``N <= 8,000`` (``EXACT_MAX_N``; the two matrices then take at most 1.0 GB) and kNN
above. Exact is slow at the top of that range: measured on 2 cores with M = 1000
pixels and the default scales, a fit takes 13.5 s at N = 1000, 37 s at N = 2000
and 63 s at N = 3000, and the work per chunk grows about as N^2 (every pair of
objects), so N = 8,000 takes several minutes. Pass ``method="exact"`` to go
further when the memory (2 x 8 N^2 bytes: 6.4 GB at N = 20,000) and time are
there, or ``method="knn"`` below the threshold when the approximation is acceptable.
"""
from __future__ import annotations

import contextlib
import numbers
import time
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator

from .._logging import get_logger, progress
from .._validation import check_matrix, describe_positions, object_ids, sklearn_random_state
from .distances import METRICS, chunk_bounds, default_scales, dense_distances, pair_distances, prepare
from .trees import _TINY, Tree, mst_dense, mst_sparse, tree_from_edges

__all__ = ["Sequencer", "prepare_input", "EXACT_MAX_N"]

log = get_logger(__name__)

#: Power of the elongation weights in the improved combination (faithful: 1).
IMPROVED_WEIGHT_POWER = 2.0

#: Largest N for which ``method="auto"`` uses exact N x N matrices (two of them: 1.0 GB at 8,000;
#: it was 20,000, i.e. 6.4 GB, more than a laptop should be asked for without saying so).
EXACT_MAX_N = 8_000


def prepare_input(X: Any, grid: Any = None, metrics=METRICS, scales=None, check_chunks: bool = True):
    """Check and return ``(flux float64 N x M, grid float64 M, ids)``.

    Parameters
    ----------
    X : array-like, Spectra or store
        An N x M array, a :class:`~serendip.spectra.Spectra` (its wavelength
        becomes the grid, in Å) or a store with ``iter_blocks``.
    grid : array-like, optional
        The M pixel positions (default: the container's wavelength, else ``arange(M)``).
    metrics : sequence of str
        Metrics to check the values for (EMD/energy need non-negative values, KL
        strictly positive ones).
    scales : list of int, optional
        Scales whose chunks must have a positive sum (default ``[1]``: whole rows).
    check_chunks : bool
        ``False`` skips the chunk-sum check, for a caller that only reads the data
        and fixes the values (e.g. clips them at a floor) before fitting.

    Returns
    -------
    flux : ndarray of float64, shape (N, M)
    grid : ndarray of float64, shape (M,)
    ids : ndarray of str, shape (N,)

    Raises
    ------
    ValueError
        For NaN/inf, negative values when EMD/energy/KL are used (KL also needs
        positive values), a zero-sum chunk (naming objects and chunk), a
        non-increasing grid or one whose length does not match.
    """
    ids = None
    try:
        n_guess = len(X) if not hasattr(X, "n_objects") else X.n_objects
        ids = object_ids(X, n_guess)
    except Exception:  # plain lists etc.
        ids = None
    if grid is None and hasattr(X, "wavelength"):
        wl = X.wavelength
        grid = wl.to_value("Angstrom") if hasattr(wl, "to_value") else np.asarray(wl)
    if hasattr(X, "iter_blocks") and not hasattr(X, "flux"):
        from .._validation import iter_row_blocks

        X = np.concatenate([b for _, b in iter_row_blocks(X)], axis=0)
    flux = check_matrix(X, name="X", ids=ids, min_rows=2,
                        fix="the Sequencer needs finite values: fill or interpolate masked pixels, "
                            "or drop those objects")
    n, m = flux.shape
    if ids is None or len(ids) != n:
        ids = np.arange(n).astype(str)
    if grid is None:
        grid = np.arange(m, dtype=np.float64)
    if hasattr(grid, "to_value"):
        grid = grid.to_value("Angstrom")
    grid = np.asarray(grid, dtype=np.float64)
    if grid.ndim != 1 or grid.size != m:
        raise ValueError(f"grid must be 1-D with one value per pixel: X has {m} pixels, grid has shape {grid.shape}")
    if not np.all(np.isfinite(grid)):
        raise ValueError("grid contains NaN or infinite values")
    steps = np.diff(grid)
    if np.any(steps <= 0):
        k = int(np.flatnonzero(steps <= 0)[0])
        raise ValueError(f"grid must be strictly increasing; grid[{k}]={float(grid[k])!r} >= "
                         f"grid[{k + 1}]={float(grid[k + 1])!r}. Sort the pixels (and the flux columns with "
                         "them) and drop repeated grid values")
    metrics = list(metrics)
    needs_pos = [mt for mt in metrics if mt in ("EMD", "energy", "KL")]
    if needs_pos:
        bad = flux < 0 if "KL" not in metrics else flux <= 0
        if bad.any():
            r, c = np.nonzero(bad)
            what = "non-positive" if "KL" in metrics else "negative"
            need = "KL needs strictly positive values" if "KL" in metrics else \
                f"{'/'.join(needs_pos)} needs non-negative values"
            lead = "Negative values in data: " if (flux < 0).any() else ""  # scikit-learn's wording
            raise ValueError(
                f"{lead}X has {bad.sum()} {what} value(s) at {describe_positions(r, c, ids)}; {need} "
                "(they treat each chunk as a distribution). Add an offset (e.g. X - X.min() + 1e-3 * "
                "X.std()) or clip (np.clip(X, 1e-6, None)), or use metrics=('L2',)")
    for s, ci, a, b, zero in zero_sum_chunks(flux, (scales or [1]) if check_chunks else []):
        raise ValueError(
            f"chunk {ci} (pixels {a}-{b - 1}) at scale {s} has zero or negative sum for "
            f"{describe_positions(zero, None, ids)}; it cannot be normalised to unit sum. "
            "Add an offset to all objects or use fewer scales")
    return flux, grid, np.asarray(ids).astype(str)


def zero_sum_chunks(flux: np.ndarray, scales):
    """Yield ``(scale, chunk, start, stop, rows)`` for each chunk in which some rows sum to zero or less."""
    m = flux.shape[1]
    for s in scales:
        for ci, (a, b) in enumerate(chunk_bounds(m, int(s))):
            zero = np.flatnonzero(flux[:, a:b].sum(axis=1) <= 0)
            if zero.size:
                yield s, ci, a, b, zero


_SCALES_FIX = "Pass a non-empty list of positive whole numbers of chunks, e.g. scales=[1, 2, 4] (CLI: --scales " \
              "1,2,4), or scales=None (no --scales) for the default"


def _check_scales(scales) -> list[int]:
    """Return ``scales`` as a list of ints, or raise ``ValueError`` saying what is wrong with it."""
    values = None
    if not isinstance(scales, (str, bytes)):
        try:
            values = list(scales)
        except TypeError:  # a bare number, a 0-d array
            values = None
    if values is None:
        raise ValueError(f"scales must be a list of numbers of chunks, got {scales!r}. {_SCALES_FIX}")
    if not values:
        raise ValueError(f"scales is empty. {_SCALES_FIX}")
    bad = [s for s in values if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Real)
           or not float(s).is_integer()]
    if bad:
        shown = [float(s) if isinstance(s, np.floating) else s for s in bad]
        raise ValueError(f"scales are numbers of chunks and must be whole numbers; got {shown}. {_SCALES_FIX}")
    out = [int(s) for s in values]
    small = [s for s in out if s < 1]
    if small:
        raise ValueError(f"scales must be at least 1 (one chunk); got {small}. {_SCALES_FIX}")
    dup = sorted({s for s in out if out.count(s) > 1})
    if dup:
        raise ValueError(f"scales lists {dup} more than once ({out}); a repeated scale would silently double "
                         "its weight. Give each scale once")
    return out


def _median_positive(w: np.ndarray) -> float:
    w = w[w > 0]
    if w.size == 0:
        return 1.0
    return float(np.median(w))


class _ExactBackend:
    """Dense chunk matrices; keeps one chunk buffer and one accumulator (2 x 8 N^2 bytes)."""

    def __init__(self, n, n_jobs):
        self.n = n
        self.n_jobs = n_jobs
        self.buf = np.empty((n, n))
        self.acc = np.empty((n, n))

    def begin(self):
        self.acc.fill(0.0)

    def chunk(self, rep):
        D = dense_distances(rep, out=self.buf, n_jobs=self.n_jobs)
        # KL: Prim reads min(D_ij, D_ji) directly; a symmetrised copy was not faster and costs N^2 memory
        return mst_dense(D, symmetric=rep.kind != "kl")

    def accumulate(self, factor):
        # same operation order as numpy.average: acc += (eta_c * D_c). The chunk's matrix is scaled in
        # place (the next chunk overwrites it): `factor * self.buf` was a third N x N array
        if factor != 1.0:
            self.buf *= factor
        self.acc += self.buf

    def finish(self, total, symmetric):
        self.acc /= total
        return mst_dense(self.acc, symmetric=symmetric)

    def close(self):
        self.buf = self.acc = None


class _KnnBackend:
    """Distances only on candidate edges ``(rows[e], cols[e])``, both directions for KL."""

    def __init__(self, n, rows, cols):
        self.n = n
        self.rows = rows
        self.cols = cols

    def begin(self):
        self.acc_f = np.zeros(self.rows.size)
        self.acc_b = np.zeros(self.rows.size)

    def _mst(self, wf, wb):
        w = np.minimum(wf, wb)
        w = np.where(w > 0, w, _TINY)  # scipy drops stored zeros: a placeholder for identical objects
        G = sp.csr_matrix((w, (self.rows, self.cols)), shape=(self.n, self.n))
        u, v, w = mst_sparse(G)
        w[w <= _TINY] = 0.0  # the placeholder is a zero distance again, as in the exact backend
        return u, v, w

    def chunk(self, rep):
        self.df = pair_distances(rep, self.rows, self.cols)
        self.db = pair_distances(rep, self.cols, self.rows) if rep.kind == "kl" else self.df
        return self._mst(self.df, self.db)

    def accumulate(self, factor):
        self.acc_f += factor * self.df
        self.acc_b += factor * self.db

    def finish(self, total, symmetric):
        return self._mst(self.acc_f / total, self.acc_b / total)

    def close(self):
        pass


def _grid_or_y(grid, y, m_pix: int, n_objects: int):
    """The grid, accepting (with a FutureWarning) one passed where scikit-learn passes ``y``.

    ``fit(X, grid)`` was this class's first signature. A second positional argument as long
    as a spectrum (and not as long as the list of objects) can only be such a grid.
    """
    if y is None or grid is not None:
        return grid
    arr = np.asarray(y)
    if arr.ndim == 1 and arr.size == m_pix and arr.size != n_objects:
        warnings.warn("the wavelength grid was passed as fit's second positional argument, which is y (ignored) "
                      "in scikit-learn's convention; pass it as fit(X, grid=...)", FutureWarning, stacklevel=3)
        return arr
    if arr.ndim == 1 and arr.size == m_pix:
        warnings.warn("fit's second argument is y and is ignored; if it was meant as the pixel grid, pass "
                      "fit(X, grid=...)", UserWarning, stacklevel=3)
    return None


class Sequencer(BaseEstimator):
    """Order objects along the main one-dimensional trend of a dataset.

    Parameters
    ----------
    metrics : tuple of str
        Any of ``"EMD"``, ``"energy"``, ``"KL"``, ``"L2"``.
    scales : list of int or None
        Number of contiguous chunks per scale; ``None`` uses every power of two
        ``s < M/20`` (the reference default).
    mode : {"improved", "faithful"}
        ``"faithful"`` reproduces ``thesequencer`` 0.0.5; ``"improved"`` (default) is
        scale-free, unit-invariant, orders along the main path and reports a
        comparable elongation (see the module docstring).
    method : {"auto", "exact", "knn"}
        ``"auto"`` is exact for ``N <= EXACT_MAX_N`` (8,000; at most 1.0 GB of matrices), kNN above.
    best_k : int or None
        Combine only the ``best_k`` (metric, scale) trees with the highest elongation.
    n_neighbors : int
        Neighbours per object for the kNN candidate graph.
    n_jobs : int or None
        Threads for the whole fit: the numba distance kernels, the BLAS behind the KL
        distances and the kNN method's PCA, and the kNN neighbour search (``None`` or
        ``-1``: all cores; ``-2``: all but one).
    random_state : int, Generator or None
        Seeds the PCA used by the kNN method.
    progress : bool
        Show a progress bar.

    Attributes
    ----------
    order_ : ndarray of int
        Object indices in sequence order.
    position_ : ndarray of int
        Position of each object in the sequence (``position_[order_] == arange(N)``).
    elongation_ : float
        Elongation eta of the final tree (reference definition; a chain of N scores N).
    elongation_normalized_ : float
        ``ln(eta)/ln(N)``: 1 for a chain, ~0 for a star, comparable across N.
    results_ : astropy.table.Table
        One row per (metric, scale): ``metric``, ``scale``, ``elongation``,
        ``median_edge`` and ``order`` (array column), ``used`` (kept by best-K).
    chunk_results_ : astropy.table.Table
        One row per (metric, scale, chunk): pixel range, ``elongation``, ``order``.
    tree_ : scipy.sparse.coo_matrix
        Final spanning tree (N x N, N-1 stored edges with their D* weights).
    ids_ : ndarray of str
        Object ids (``meta['id']`` of a container or store, else row numbers).
    n_features_in_ : int
        Pixels per object.
    method_ : str
        The method actually used.
    timings_ : dict
        Seconds spent in distances+trees and in the combination.
    """

    def __init__(self, metrics=METRICS, scales=None, mode="improved", method="auto", best_k=None,
                 n_neighbors=15, n_jobs=None, random_state=None, progress=True):
        self.metrics = metrics
        self.scales = scales
        self.mode = mode
        self.method = method
        self.best_k = best_k
        self.n_neighbors = n_neighbors
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.progress = progress

    def _metric_names(self) -> list:
        return [self.metrics] if isinstance(self.metrics, str) else list(self.metrics)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        metrics = self._metric_names()
        # EMD, energy and KL compare each chunk as a distribution and refuse negative values (KL also zeros)
        tags.input_tags.positive_only = any(mt in metrics for mt in ("EMD", "energy", "KL"))
        return tags

    # ------------------------------------------------------------------ helpers
    def _check_params(self, m):
        metrics = self._metric_names()
        if not metrics:
            raise ValueError("metrics must name at least one of EMD, energy, KL, L2")
        for mt in metrics:
            if mt not in METRICS:
                raise ValueError(f"unknown metric {mt!r}; choose from {', '.join(METRICS)}")
        dup = sorted({mt for mt in metrics if metrics.count(mt) > 1})
        if dup:
            raise ValueError(f"metrics lists {', '.join(map(repr, dup))} more than once ({metrics}); a repeated "
                             "metric would silently double its weight. Name each metric once")
        if self.mode not in ("improved", "faithful"):
            raise ValueError(f"mode must be 'improved' or 'faithful', got {self.mode!r}")
        if self.method not in ("auto", "exact", "knn"):
            raise ValueError(f"method must be 'auto', 'exact' or 'knn', got {self.method!r}")
        scales = default_scales(m) if self.scales is None else _check_scales(self.scales)
        if int(self.n_neighbors) < 1:
            raise ValueError(f"n_neighbors must be at least 1, got {self.n_neighbors!r}")
        for s in scales:
            if s < 1 or s >= m:
                raise ValueError(f"scale {s} must be >= 1 and smaller than the number of pixels ({m})")
        if self.best_k is not None and (isinstance(self.best_k, bool) or not float(self.best_k).is_integer()
                                        or int(self.best_k) < 1):
            raise ValueError(f"best_k must be a positive integer or None, got {self.best_k!r}")
        return metrics, scales

    # ---------------------------------------------------------------------- fit
    def fit(self, X, y=None, *, grid=None):
        """Find the sequence.

        Parameters
        ----------
        X : array (N x M), Spectra or store
            The objects.
        y : None
            Ignored (scikit-learn's convention, so a Pipeline may pass its target here).
        grid : array of M values, optional (keyword only)
            The pixel positions (e.g. wavelengths); default: those of a Spectra/store, else 0..M-1.

        Returns
        -------
        self
        """
        with thread_limits(self.n_jobs):
            return self._fit(X, y, grid)

    def _fit(self, X, y, grid):
        t0 = time.perf_counter()
        shape = None if hasattr(X, "n_pixels") else np.shape(X.flux if hasattr(X, "flux") else X)
        if shape is not None and len(shape) != 2:
            raise ValueError(f"the Sequencer needs a 2-D array (objects x pixels); got shape {shape}")
        if shape is not None and np.iscomplexobj(X):
            raise ValueError("Complex data not supported: give the Sequencer real fluxes")
        if shape is not None and shape[1] < 2:  # the wording after the colon is scikit-learn's
            raise ValueError(f"the Sequencer orders objects by their shapes, which needs at least 2 pixels: X has "
                             f"{shape[1]} feature(s) (shape={shape}) while a minimum of 2 is required.")
        m_pix = X.n_pixels if shape is None else shape[1]
        grid = _grid_or_y(grid, y, m_pix, X.n_objects if shape is None else shape[0])
        metrics, scales = self._check_params(m_pix)
        flux, x, ids = prepare_input(X, grid, metrics, scales)
        n, m = flux.shape
        method = self.method
        if method == "auto":
            method = "exact" if n <= EXACT_MAX_N else "knn"
        improved = self.mode == "improved"
        self.ids_ = ids
        self.n_features_in_ = m
        self.method_ = method
        self.metrics_ = metrics
        self.scales_ = scales
        if method == "exact":
            backend = _ExactBackend(n, self.n_jobs)
            self.__dict__.pop("n_candidate_edges_", None)  # a kNN-only attribute from an earlier fit
        else:
            rows, cols = knn_candidate_pairs(flux, x, n_neighbors=self.n_neighbors, n_jobs=self.n_jobs,
                                             random_state=sklearn_random_state(self.random_state))
            backend = _KnnBackend(n, rows, cols)
            self.n_candidate_edges_ = int(rows.size)

        total_steps = len(metrics) * sum(scales)
        bar = progress(total=total_steps, desc="sequencer", enabled=self.progress, unit="chunk")
        ms_rows, chunk_rows, trees = [], [], []
        try:
            for metric in metrics:
                for s in scales:
                    bounds = chunk_bounds(m, s)
                    backend.begin()
                    etas = []
                    for ci, (a, b) in enumerate(bounds):
                        block = flux[:, a:b]
                        p = block / block.sum(axis=1)[:, None]
                        rep = prepare(metric, p, x[a:b])
                        u, v, w = backend.chunk(rep)
                        tc = tree_from_edges(u, v, w, n)
                        eta = tc.elongation
                        etas.append(eta)
                        factor = eta
                        backend.accumulate(factor)
                        chunk_rows.append((metric, s, ci, a, b, eta,
                                           (tc.path_order() if improved else tc.level_order()).astype(np.int32)))
                        bar.update(1)
                    total = float(np.sum(np.array(etas)))
                    u, v, w = backend.finish(total, symmetric=metric != "KL")
                    t = tree_from_edges(u, v, w, n)
                    med = _median_positive(t.w)
                    trees.append((t, med))
                    ms_rows.append((metric, s, t.elongation, med,
                                    (t.path_order() if improved else t.level_order()).astype(np.int32)))
        finally:
            bar.close()
            backend.close()
        t1 = time.perf_counter()

        # ---- combination
        weights = np.array([t.elongation for t, _ in trees])
        keep = np.arange(len(trees))
        if self.best_k is not None:
            if int(self.best_k) >= len(trees):
                log.warning("best_k=%d keeps all %d (metric, scale) trees, so it selects nothing; it is meant to "
                            "be smaller than the number of metrics times scales", int(self.best_k), len(trees))
            keep = np.argsort(weights)[::-1][: int(self.best_k)]
        # improved: weights eta**2 (see the module docstring, point 5)
        w_comb = weights[keep] ** IMPROVED_WEIGHT_POWER if improved else weights[keep]
        final = self._combine([trees[i] for i in keep], w_comb, n, improved)
        order = final.path_order() if improved else final.level_order()
        t2 = time.perf_counter()

        from astropy.table import Table

        used = np.zeros(len(trees), dtype=bool)
        used[keep] = True
        res = Table(rows=[r[:4] for r in ms_rows], names=("metric", "scale", "elongation", "median_edge"),
                    dtype=("U6", "i4", "f8", "f8")) if ms_rows else Table()
        res["order"] = np.stack([r[4] for r in ms_rows])
        res["used"] = used
        ch = Table(rows=[r[:6] for r in chunk_rows],
                   names=("metric", "scale", "chunk", "pix_start", "pix_stop", "elongation"),
                   dtype=("U6", "i4", "i4", "i4", "i4", "f8"))
        ch["order"] = np.stack([r[6] for r in chunk_rows])
        params = self._provenance(n, m, method)
        res.meta.update(params)
        ch.meta.update(params)
        self.results_ = res
        self.chunk_results_ = ch
        self.order_ = order
        self.position_ = np.empty(n, dtype=np.int64)
        self.position_[order] = np.arange(n)
        self.elongation_ = float(final.elongation)
        self.elongation_normalized_ = float(np.log(final.elongation) / np.log(n)) if n > 1 else 1.0
        self.tree_ = sp.coo_matrix((final.w, (final.u, final.v)), shape=(n, n))
        self.final_tree_ = final
        self.timings_ = {"trees_s": t1 - t0, "combine_s": t2 - t1, "total_s": t2 - t0}
        log.info("sequencer: N=%d M=%d method=%s mode=%s eta=%.3f (%.1f s)", n, m, method, self.mode,
                 self.elongation_, t2 - t0)
        return self

    def _combine(self, trees, weights, n, improved) -> Tree:
        """Proximity ``P = sum_t eta_t / W_t[u,v] / sum eta`` over tree edges; final tree on ``1/P``."""
        us, vs, vals = [], [], []
        for (t, med), eta in zip(trees, weights):
            w = np.where(t.w > 0, t.w, _TINY)
            # identical objects (distance 0) get an infinite proximity here; handled below
            with np.errstate(divide="ignore", over="ignore"):
                contrib = eta * (1.0 / (w / med)) if improved else eta * (1.0 / w)
            us.append(t.u)
            vs.append(t.v)
            vals.append(contrib)
        u = np.concatenate(us)
        v = np.concatenate(vs)
        c = np.concatenate(vals)
        # symmetric accumulation in tree order (np.add.at is sequential, like the reference's loop)
        key = np.concatenate([u * n + v, v * n + u])
        cc = np.concatenate([c, c])
        uniq, inv = np.unique(key, return_inverse=True)
        P = np.zeros(uniq.size)
        order = np.argsort(np.concatenate([np.arange(c.size) * 2, np.arange(c.size) * 2 + 1]), kind="stable")
        np.add.at(P, inv[order], cc[order])
        P /= np.sum(weights)
        # An infinite proximity (or one whose inverse underflows) is a zero distance: keep it as the
        # smallest positive distance, since a stored zero would be read as "no edge" by the MST.
        with np.errstate(divide="ignore"):
            D = 1.0 / P
        D[~(D > 0)] = _TINY
        rows, cols = np.divmod(uniq, n)
        G = sp.csr_matrix((D, (rows, cols)), shape=(n, n))
        fu, fv, fw = mst_sparse(G)
        return tree_from_edges(fu, fv, fw, n)

    def _provenance(self, n, m, method):
        from .._version import __version__

        return {
            "algorithm": "Sequencer (Baron & Menard 2021)", "mode": self.mode, "method": method,
            "metrics": ",".join(self.metrics_), "scales": ",".join(map(str, self.scales_)),
            "best_k": -1 if self.best_k is None else int(self.best_k), "n_objects": n, "n_pixels": m,
            "n_neighbors": int(self.n_neighbors), "serendip_version": __version__,
        }

    def fit_transform(self, X, y=None, *, grid=None):
        """Fit and return ``order_`` (the object indices along the sequence, a 1-D array)."""
        return self.fit(X, y, grid=grid).order_

    def to_table(self):
        """Table with ``id``, ``position`` (rank in the sequence) and ``index`` (row in the input), in sequence order.

        ``meta`` holds the elongation, the normalised elongation and all parameters.
        """
        from astropy.table import Table

        if not hasattr(self, "order_"):
            raise ValueError("call fit first")
        t = Table()
        t["id"] = self.ids_[self.order_]
        t["position"] = np.arange(self.order_.size, dtype=np.int64)
        t["index"] = self.order_.astype(np.int64)
        t.meta.update(self.results_.meta)
        t.meta["elongation"] = self.elongation_
        t.meta["elongation_normalized"] = self.elongation_normalized_
        for row in self.results_:
            t.meta[f"eta_{row['metric']}_{row['scale']}"] = float(row["elongation"])
        return t


@contextlib.contextmanager
def thread_limits(n_jobs):
    """Cap the BLAS/OpenMP pools (threadpoolctl) and numba's threads at ``n_jobs`` for a block.

    ``None`` or ``-1`` leaves every pool as it is (all cores); ``-2`` means all cores but one,
    as in joblib. The KL distances are one large matrix product, so without this cap
    ``n_jobs=1`` still ran on every core.
    """
    if n_jobs is None or n_jobs == -1:
        yield
        return
    from joblib import effective_n_jobs
    from threadpoolctl import threadpool_limits

    n = max(1, int(effective_n_jobs(n_jobs)))

    try:
        import numba
    except ImportError:
        numba = None
    old = numba.get_num_threads() if numba else None
    with threadpool_limits(limits=n):
        if numba:
            numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
        try:
            yield
        finally:
            if numba:
                numba.set_num_threads(old)


def knn_candidate_pairs(flux, grid, n_neighbors=15, n_components=32, random_state=None, n_jobs=None):
    """Undirected candidate edges ``(rows, cols)`` with ``rows < cols`` from a kNN graph, made connected.

    Features per object (whole spectrum, unit sum ``p``): the CDF weighted by
    ``sqrt(dx / range)`` (energy/EMD-like) and ``sign(p) sqrt(|p|)`` (Hellinger,
    KL-like; equal to ``sqrt(p)`` for the non-negative values EMD, energy and KL
    require, and still finite for the negative values L2 accepts), each block
    scaled to unit total variance, reduced by PCA to ``n_components``.
    Neighbours come from :class:`sklearn.neighbors.NearestNeighbors` (``n_jobs``
    workers); components of the graph are then joined by their nearest cross-component pair.
    """
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors
    from scipy.sparse.csgraph import connected_components

    n = flux.shape[0]
    k = int(min(max(n_neighbors, 1), n - 1))
    if k < n_neighbors:
        log.warning("n_neighbors=%d but there are only %d objects: using %d neighbours each", n_neighbors, n, k)
    p = flux / flux.sum(axis=1, keepdims=True)
    dx = np.diff(grid) / (grid[-1] - grid[0])
    feats = []
    for f in (np.cumsum(p, axis=1)[:, :-1] * np.sqrt(dx), np.sign(p) * np.sqrt(np.abs(p))):
        f = f - f.mean(axis=0)
        feats.append(f / max(np.sqrt((f ** 2).sum() / n), 1e-300))
    Z = np.hstack(feats)
    del feats
    nc = int(min(n_components, Z.shape[1], n - 1))
    if nc < Z.shape[1]:
        Z = PCA(n_components=nc, svd_solver="randomized", random_state=random_state).fit_transform(Z)
    nn = NearestNeighbors(n_neighbors=k + 1, n_jobs=n_jobs).fit(Z)
    _, idx = nn.kneighbors(Z)
    r = np.repeat(np.arange(n), k + 1)
    c = idx.ravel()
    ok = r != c
    r, c = r[ok], c[ok]
    a, b = np.minimum(r, c), np.maximum(r, c)
    key = np.unique(a.astype(np.int64) * n + b)
    rows, cols = np.divmod(key, n)
    for _ in range(1000):
        G = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n))
        ncomp, lab = connected_components(G, directed=False)
        if ncomp == 1:
            break
        big = np.bincount(lab).argmax()
        extra = []
        for comp in range(ncomp):
            if comp == big:
                continue
            inside = np.flatnonzero(lab == comp)
            outside = np.flatnonzero(lab != comp)
            nn2 = NearestNeighbors(n_neighbors=1).fit(Z[outside])
            d, j = nn2.kneighbors(Z[inside])
            best = int(np.argmin(d[:, 0]))
            extra.append((inside[best], outside[j[best, 0]]))
        e = np.array(extra, dtype=np.int64)
        key = np.unique(np.concatenate([rows * n + cols, np.minimum(e[:, 0], e[:, 1]) * n + np.maximum(e[:, 0], e[:, 1])]))
        rows, cols = np.divmod(key, n)
    return rows.astype(np.int64), cols.astype(np.int64)
