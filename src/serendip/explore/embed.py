"""Two-dimensional (or d-dimensional) maps of a survey: PCA, t-SNE and UMAP.

Embeddings can be computed from features, or from a *precomputed neighbour
graph* — in particular the random-forest similarity of
:class:`serendip.outliers.UnsupervisedRandomForest`, whose k most-similar
lists (``most_similar(k)``) give a sparse distance graph with ``d = 1 - S``.
This is how Reis et al. (2018) mapped their URF distances with t-SNE. No
N×N matrix is ever built: t-SNE receives a sparse k-nearest-neighbour
distance graph and UMAP receives the neighbour lists (``precomputed_knn``).

Large inputs: Barnes–Hut t-SNE becomes impractically slow beyond about 50,000
objects. Above ``max_tsne`` objects :func:`embed` logs a warning and falls back
(``large_n="auto"``): to UMAP when ``umap-learn`` is installed, otherwise it
still runs t-SNE on the first ``pca_dims`` principal components (slow, but
bounded in memory).
"""
from __future__ import annotations

import numbers
import warnings

import numpy as np
import scipy.sparse as sp

from .._logging import get_logger
from .._validation import as_feature_matrix

__all__ = ["embed", "knn_from_precomputed", "knn_graph", "EMBED_METHODS"]

log = get_logger(__name__)

EMBED_METHODS = ("pca", "tsne", "umap")


def _import_umap():
    try:
        import umap  # noqa: F401
    except ImportError as exc:
        raise ImportError("method='umap' needs the optional package umap-learn: "
                          "pip install 'serendip[umap]'") from exc
    return umap


def _umap_installed() -> bool:
    try:
        _import_umap()
    except ImportError:
        return False
    return True


def _detect_kind(values: np.ndarray) -> str:
    """Guess whether neighbour values are similarities (rows descending) or distances (ascending)."""
    if values.shape[1] < 2:
        raise ValueError("cannot tell whether the precomputed values are distances or similarities with "
                         "one neighbour per object; pass precomputed_kind='distance' or 'similarity'")
    diff = np.diff(values, axis=1)
    if np.all(diff <= 0) and np.any(diff < 0):
        return "similarity"
    if np.all(diff >= 0) and np.any(diff > 0):
        return "distance"
    raise ValueError("cannot tell whether the precomputed neighbour values are distances (sorted ascending) "
                     "or similarities (sorted descending); pass precomputed_kind='distance' or 'similarity'")


def knn_from_precomputed(precomputed, n_objects: int | None = None, *, precomputed_kind: str = "auto",
                         n_neighbors: int = 15) -> tuple[np.ndarray, np.ndarray]:
    """Turn a precomputed neighbour structure into k-nearest-neighbour lists.

    Parameters
    ----------
    precomputed : sparse matrix, (indices, values) tuple, dense square array, or fitted model
        - a scipy sparse (N, N) distance graph (e.g. ``kneighbors_graph(mode="distance")``);
          stored entries are the candidate neighbours;
        - a tuple ``(indices, values)`` of shape (N, k) each: each object's k most
          similar objects and their distances or similarities (as returned by
          ``UnsupervisedRandomForest.most_similar(k)``);
        - a dense (N, N) distance matrix (only if you already have one);
        - a fitted object with a ``most_similar(k)`` method (similarities).
    n_objects : int, optional
        The expected N; a mismatch is an error.
    precomputed_kind : {"auto", "distance", "similarity"}
        How to read the values; similarities ``S`` become distances ``1 - S``.
        ``"auto"`` decides a tuple from the sort order of each row, a dense
        matrix from its diagonal (zero: distances; each row's largest value:
        similarities), and reads a sparse graph as distances.
    n_neighbors : int
        Neighbours asked of a model's ``most_similar``.

    Returns
    -------
    indices : ndarray of int64, shape (N, k)
    distances : ndarray of float64, shape (N, k)
        Each object's neighbours (itself excluded), nearest first.
    """
    if precomputed_kind not in ("auto", "distance", "similarity"):
        raise ValueError(f"precomputed_kind must be 'auto', 'distance' or 'similarity'; got {precomputed_kind!r}")
    if hasattr(precomputed, "most_similar"):
        indices, values = precomputed.most_similar(n_neighbors)
        precomputed = (indices, values)
        precomputed_kind = "similarity"
    if sp.issparse(precomputed):
        return _knn_from_sparse(precomputed, n_objects, similarity=precomputed_kind == "similarity")
    if isinstance(precomputed, (tuple, list)) and len(precomputed) == 2:
        return _knn_from_lists(precomputed[0], precomputed[1], n_objects, precomputed_kind)
    arr = np.asarray(precomputed)
    if arr.ndim == 2 and arr.shape[0] == arr.shape[1] and arr.dtype.kind in "fiu":
        kind = _dense_kind(arr) if precomputed_kind == "auto" else precomputed_kind
        return _knn_from_dense(arr, n_objects, n_neighbors, similarity=kind == "similarity")
    raise ValueError(
        "precomputed must be a sparse (N, N) distance graph, a tuple (indices, distances_or_similarities) "
        f"of (N, k) arrays, a square (N, N) distance matrix or a fitted model with most_similar(); got "
        f"{type(precomputed).__name__} with shape {getattr(arr, 'shape', None)}"
    )


def _check_n(n: int, n_objects: int | None, what: str) -> None:
    if n_objects is not None and n != n_objects:
        raise ValueError(f"the precomputed {what} describes {n} objects but X has {n_objects}")


def _dense_kind(arr) -> str:
    """A square matrix's kind: zeros on the diagonal is distances; a diagonal that is each row's
    largest value (1 for URF similarities) is similarities; anything else is ambiguous."""
    diag = np.diagonal(arr).astype(np.float64)
    scale = max(float(np.max(arr)), -float(np.min(arr))) if arr.size else 0.0  # max |a| without an N x N copy
    if np.all(np.abs(diag) <= 1e-12 * max(scale, 1e-300)):  # zero up to round-off (cdist's cosine gives 2e-16)
        return "distance"
    if np.all(diag > 0) and np.all(np.max(arr, axis=1) <= diag):
        log.info("the precomputed matrix has its largest value on the diagonal: read as similarities (1 - S)")
        return "similarity"
    raise ValueError("cannot tell whether the precomputed matrix holds distances (zero diagonal) or similarities "
                     "(largest value on the diagonal); pass precomputed_kind='distance' or 'similarity'")


def _knn_from_sparse(graph, n_objects, similarity=False):
    graph = sp.coo_matrix(graph)
    if graph.shape[0] != graph.shape[1]:
        raise ValueError(f"a precomputed neighbour graph must be square (N, N); got shape {graph.shape}")
    n = graph.shape[0]
    _check_n(n, n_objects, "graph")
    data = np.asarray(graph.data, dtype=np.float64)
    if similarity:  # stored similarities S become distances 1 - S (unstored pairs: no neighbour)
        if not np.all(np.isfinite(data)):
            raise ValueError("a precomputed similarity graph must hold finite values")
        data = np.clip(1.0 - data, 0.0, None)
    if not np.all(np.isfinite(data)) or np.any(data < 0):
        raise ValueError("a precomputed distance graph must hold finite, non-negative distances")
    return _knn_from_triplets(graph.row, graph.col, data, n)


def _knn_from_triplets(row, col, dist, n, fill=None):
    """Neighbour lists from (row, col, distance) entries: self entries dropped, nearest first.

    Rows may hold different numbers of entries. Every row gets the most common count ``k``:
    longer rows keep their nearest ``k``; shorter ones (a URF outlier may have few similar
    objects) are padded with other objects at distance ``fill`` (default: the largest
    distance given), so one sparse row does not shrink every object's neighbourhood.
    """
    keep = row != col
    row, col, dist = row[keep], col[keep], dist[keep]
    counts = np.bincount(row, minlength=n)
    if counts.min() == 0:
        empty = np.flatnonzero(counts == 0)
        raise ValueError(f"{empty.size} object(s) have no neighbours in the precomputed graph "
                         f"(rows {empty[:5].tolist()}); every object needs at least one")
    freq = np.bincount(counts)
    k = int(np.flatnonzero(freq == freq.max())[-1])  # the most common count (the larger on ties)
    k = min(k, n - 1)
    order = np.lexsort((dist, row))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    take = order[starts[:, None] + np.minimum(np.arange(k)[None, :], counts[:, None] - 1)]
    idx, dd = col[take].astype(np.int64), dist[take].astype(np.float64)
    short = np.flatnonzero(counts < k)
    if short.size:
        fill = float(dist.max()) if fill is None else float(fill)
        for i in short:  # few rows: pad each with objects it does not list yet
            have = set(idx[i, :counts[i]].tolist()) | {int(i)}
            extra = [j for j in ((i + 1 + np.arange(k + counts[i] + 1)) % n) if int(j) not in have]
            idx[i, counts[i]:] = extra[:k - counts[i]]
            dd[i, counts[i]:] = fill
        log.warning("precomputed neighbours: %d object(s) have fewer than %d neighbours (fewest %d, e.g. row %d); "
                    "they were padded with other objects at distance %.3g (no similarity)",
                    short.size, k, int(counts.min()), int(short[0]), fill)
    if k < counts.max():
        log.info("precomputed neighbours: rows hold %d to %d entries; keeping the nearest %d of each",
                 int(counts.min()), int(counts.max()), k)
    return idx, dd


def _knn_from_lists(indices, values, n_objects, kind):
    indices = np.asarray(indices)
    values = np.asarray(values, dtype=np.float64)
    if indices.ndim != 2 or indices.shape != values.shape:
        raise ValueError(f"precomputed (indices, values) must be two (N, k) arrays of one shape; got "
                         f"{indices.shape} and {values.shape}")
    if indices.dtype.kind not in "iu":
        raise ValueError(f"precomputed indices must be integers; got dtype {indices.dtype}")
    n = indices.shape[0]
    _check_n(n, n_objects, "neighbour list")
    present = indices >= 0  # -1 marks "no further neighbour" (URF most_similar)
    if present.any() and indices.max() >= n:
        raise ValueError(f"precomputed indices must lie in 0..{n - 1} (or -1 for none); found {indices.max()}")
    if np.any(indices < -1):
        raise ValueError(f"precomputed indices must lie in 0..{n - 1} (or -1 for none); found {indices.min()}")
    if not np.all(np.isfinite(values[present])):
        raise ValueError("precomputed neighbour values contain NaN or infinite values")
    if kind == "auto":
        full = present.all(axis=1)
        kind = _detect_kind(values[full] if full.any() else values)
    dist = np.clip(1.0 - values if kind == "similarity" else values, 0.0, None)
    rows = np.broadcast_to(np.arange(n)[:, None], indices.shape)
    fill = 1.0 if kind == "similarity" else None  # similarity 0 for a missing neighbour
    return _knn_from_triplets(rows[present], indices[present], dist[present], n, fill=fill)


#: Rows of a dense precomputed matrix converted at a time (the caller's matrix is never copied whole).
_DENSE_BLOCK_ROWS = 256


def _knn_from_dense(matrix, n_objects, k, similarity=False):
    """Each row's ``k`` nearest other objects of a square matrix, in row blocks.

    ``similarity`` reads the matrix as similarities (distance ``max(1 - S, 0)``). Only one block
    of rows is converted at a time, so the memory beyond the caller's N x N matrix is
    ``_DENSE_BLOCK_ROWS`` x N.
    """
    n = matrix.shape[0]
    _check_n(n, n_objects, "distance matrix")
    k = min(k, n - 1)
    indices = np.empty((n, k), dtype=np.int64)
    distances = np.empty((n, k))
    for a in range(0, n, _DENSE_BLOCK_ROWS):
        b = min(a + _DENSE_BLOCK_ROWS, n)
        block = np.array(matrix[a:b], dtype=np.float64)  # a copy: the caller's matrix is left as it is
        if similarity:
            np.subtract(1.0, block, out=block)
            np.clip(block, 0.0, None, out=block)
        if not np.all(np.isfinite(block)) or np.any(block < 0):
            raise ValueError("a precomputed distance matrix must hold finite, non-negative distances")
        block[np.arange(b - a), np.arange(a, b)] = np.inf  # never one's own neighbour
        part = np.argpartition(block, k - 1, axis=1)[:, :k]
        d = np.take_along_axis(block, part, axis=1)
        order = np.argsort(d, axis=1, kind="stable")
        indices[a:b] = np.take_along_axis(part, order, axis=1)
        distances[a:b] = np.take_along_axis(d, order, axis=1)
    return indices, distances


def knn_graph(indices: np.ndarray, distances: np.ndarray, *, include_self: bool = False) -> sp.csr_matrix:
    """Sparse (N, N) distance graph from neighbour lists (optionally with explicit zero self-distances)."""
    n, k = indices.shape
    rows = np.repeat(np.arange(n), k)
    cols = indices.ravel()
    data = distances.ravel()
    if include_self:
        rows = np.concatenate([np.arange(n), rows])
        cols = np.concatenate([np.arange(n), cols])
        data = np.concatenate([np.zeros(n), data])
    from sklearn.neighbors import sort_graph_by_row_values

    g = sp.csr_matrix((data, (rows, cols)), shape=(n, n))
    return sort_graph_by_row_values(g, copy=False, warn_when_not_sorted=False)


def embed(X=None, method: str = "pca", n_components: int = 2, *, metric: str = "euclidean",
          precomputed=None, precomputed_kind: str = "auto", n_neighbors: int = 15, perplexity: float = 30.0,
          random_state=None, pca_dims: int | None = 50, max_tsne: int = 50_000, large_n: str = "auto",
          n_jobs: int | None = None, progress: bool = True, **kwargs) -> np.ndarray:
    """Embed objects in ``n_components`` dimensions.

    Parameters
    ----------
    X : array-like (N, M), Spectra or store, optional
        Features (e.g. flux on a common grid). May be omitted when ``precomputed`` is given.
    method : {"pca", "tsne", "umap"}
        PCA (linear), Barnes–Hut t-SNE (scikit-learn) or UMAP (``serendip[umap]``).
    n_components : int
        Output dimensions (t-SNE: at most 3).
    metric : str
        Distance in feature space for t-SNE/UMAP (ignored with ``precomputed``; PCA is Euclidean).
    precomputed : sparse graph, (indices, values) tuple, or model with ``most_similar``, optional
        Neighbour structure to embed instead of computing distances from ``X``; see
        :func:`knn_from_precomputed`. Similarities ``S`` (e.g. random-forest similarity)
        become distances ``1 - S``.
    precomputed_kind : {"auto", "distance", "similarity"}
    n_neighbors : int
        UMAP neighbours; also the neighbours asked of a model's ``most_similar``.
    perplexity : float
        t-SNE perplexity. With a precomputed graph of k neighbours it is capped at
        ``(k - 1) / 3`` (t-SNE uses ``3 * perplexity + 1`` neighbours), with a log message.
    random_state : int, Generator or None
    pca_dims : int or None
        For Euclidean t-SNE/UMAP on more than ``pca_dims`` features, reduce to that many
        principal components first (the usual practice; ``None`` disables).
    max_tsne : int
        Above this many objects plain t-SNE is considered too slow (see ``large_n``).
    large_n : {"auto", "umap", "tsne", "error"}
        What to do with t-SNE above ``max_tsne`` objects: ``"auto"`` = UMAP if installed,
        else t-SNE on ``pca_dims`` components (both with a warning); ``"tsne"`` = run anyway.
    n_jobs : int, optional
        Limit the threads (OpenMP/BLAS/numba) used by the embedding; on a busy machine
        ``n_jobs=1`` can be many times faster than oversubscribed threads.
    progress : bool
        Show UMAP's progress bar.
    **kwargs
        Passed to the underlying estimator (``sklearn.manifold.TSNE``, ``umap.UMAP``, ``PCA``).

    Returns
    -------
    ndarray of float64, shape (N, n_components)
    """
    if n_jobs is None:
        return _embed(X, method, n_components, metric, precomputed, precomputed_kind, n_neighbors, perplexity,
                      random_state, pca_dims, max_tsne, large_n, progress, **kwargs)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(int(n_jobs)):
        return _embed(X, method, n_components, metric, precomputed, precomputed_kind, n_neighbors, perplexity,
                      random_state, pca_dims, max_tsne, large_n, progress, **kwargs)


def _embed(X, method, n_components, metric, precomputed, precomputed_kind, n_neighbors, perplexity,
           random_state, pca_dims, max_tsne, large_n, progress, **kwargs):
    if method not in EMBED_METHODS:
        raise ValueError(f"unknown embedding method {method!r}; choose one of {', '.join(EMBED_METHODS)}")
    if not isinstance(n_components, numbers.Integral) or n_components < 1:
        raise ValueError(f"n_components must be a positive integer; got {n_components!r}")
    if X is None and precomputed is None:
        raise ValueError("embed needs features X or a precomputed neighbour graph")
    from .._validation import sklearn_random_state

    random_state = sklearn_random_state(random_state)  # a Generator becomes one int (TSNE refuses Generators)
    if X is not None:
        X = as_feature_matrix(X, name="X", min_rows=2)
    n = X.shape[0] if X is not None else None

    knn = None
    if precomputed is not None:
        if method == "pca":
            raise ValueError("method='pca' needs features, not a precomputed graph; use method='tsne' or 'umap'")
        # t-SNE needs 3 x perplexity + 1 neighbours; ask a model or a dense matrix for that many
        k_ask = n_neighbors if method != "tsne" else max(n_neighbors, int(np.ceil(3 * perplexity)) + 1)
        knn = knn_from_precomputed(precomputed, n, precomputed_kind=precomputed_kind, n_neighbors=k_ask)
        n = knn[0].shape[0]

    if method == "tsne" and n > max_tsne:
        if large_n == "error":
            raise ValueError(f"t-SNE on {n} objects (> max_tsne={max_tsne}) would be too slow; use method='umap'")
        if large_n in ("auto", "umap"):
            if _umap_installed() or large_n == "umap":
                log.warning("t-SNE on %d objects (> %d) is too slow; falling back to UMAP", n, max_tsne)
                method = "umap"
            else:
                log.warning("t-SNE on %d objects (> %d) is very slow and umap-learn is not installed "
                            "(pip install 'serendip[umap]'); running t-SNE on %s principal components",
                            n, max_tsne, pca_dims)
        elif large_n != "tsne":
            raise ValueError(f"large_n must be 'auto', 'umap', 'tsne' or 'error'; got {large_n!r}")

    if method == "pca":
        from sklearn.decomposition import PCA

        if n_components > min(X.shape):
            raise ValueError(f"PCA cannot make {n_components} components from X of shape {X.shape}")
        return PCA(n_components=n_components, random_state=random_state, **kwargs).fit_transform(X).astype(
            np.float64)

    if knn is None and pca_dims is not None and metric == "euclidean" and X.shape[1] > pca_dims \
            and X.shape[0] > pca_dims:
        from sklearn.decomposition import PCA

        X = PCA(n_components=pca_dims, random_state=random_state).fit_transform(X)

    if method == "tsne":
        return _tsne(X, knn, n_components, metric, perplexity, random_state, **kwargs)
    return _umap(X, knn, n_components, metric, n_neighbors, random_state, progress, **kwargs)


def _tsne(X, knn, n_components, metric, perplexity, random_state, **kwargs):
    from sklearn.manifold import TSNE

    if n_components > 3:
        raise ValueError("Barnes–Hut t-SNE makes at most 3 components")
    if knn is not None:
        indices, dist = knn
        n, k = indices.shape
        cap = (k - 1) / 3.0
        if cap < 1:
            raise ValueError(f"t-SNE on a precomputed graph needs at least 4 neighbours per object; got {k}")
        if perplexity > cap:
            if k < n - 1:  # a graph with too few neighbours, not a small data set: say so
                log.warning("perplexity %.1f needs %d neighbours but the precomputed graph has %d; using "
                            "perplexity %.2f (give more neighbours, e.g. most_similar(%d))",
                            perplexity, int(3 * perplexity + 1), k, cap, int(3 * perplexity + 1))
            perplexity = cap
        if perplexity >= n:
            raise ValueError(f"perplexity ({perplexity}) must be less than the number of objects ({n})")
        # explicit zero self-distances let scikit-learn drop each object from its own neighbours
        graph = knn_graph(indices, dist, include_self=True)
        kwargs.setdefault("init", "random")
        tsne = TSNE(n_components=n_components, metric="precomputed", perplexity=perplexity,
                    random_state=random_state, **kwargs)
        return tsne.fit_transform(graph).astype(np.float64)
    n = X.shape[0]
    if perplexity >= n:
        raise ValueError(f"t-SNE perplexity ({perplexity}) must be less than the number of objects ({n}); "
                         "lower perplexity")
    if "init" not in kwargs and metric == "precomputed":
        kwargs["init"] = "random"  # scikit-learn's PCA initialisation needs features, not distances
    elif "init" not in kwargs and n_components > min(X.shape):
        # scikit-learn's default PCA initialisation cannot make more components than there are features
        log.info("t-SNE: %d feature(s) cannot give a %d-component PCA initialisation; using init='random'",
                 X.shape[1], n_components)
        kwargs["init"] = "random"
    tsne = TSNE(n_components=n_components, metric=metric, perplexity=perplexity, random_state=random_state,
                **kwargs)
    return tsne.fit_transform(X).astype(np.float64)


def _umap_min_objects(n: int, n_components: int, init, what: str) -> None:
    """UMAP's default spectral initialisation needs more than ``n_components + 1`` objects; say so clearly."""
    need = n_components + 2
    if (init is None or (isinstance(init, str) and init == "spectral")) and n < need:
        raise ValueError(f"UMAP with n_components={n_components} needs at least {need} objects "
                         f"(n_components + 2, for its spectral initialisation); {what} has {n}. Use more "
                         "objects or method='pca' (CLI: --method pca); from Python, init='random' also works")


def _umap(X, knn, n_components, metric, n_neighbors, random_state, progress, **kwargs):
    if knn is not None:
        _umap_min_objects(knn[0].shape[0], n_components, kwargs.get("init"), "the precomputed graph")
    else:
        _umap_min_objects(X.shape[0], n_components, kwargs.get("init"), "X")
    umap = _import_umap()
    if knn is not None:
        indices, dist = knn
        n, k = indices.shape
        if n_neighbors > k + 1:
            log.info("the precomputed graph has %d neighbours per object; UMAP will use n_neighbors=%d", k, k + 1)
        n_neighbors = min(n_neighbors, k + 1)
        if n_neighbors < 2:
            raise ValueError("UMAP needs at least 1 neighbour per object besides itself")
        # UMAP's convention: each object is its own first neighbour at distance 0
        idx = np.hstack([np.arange(n)[:, None], indices])[:, :n_neighbors]
        dst = np.hstack([np.zeros((n, 1)), dist])[:, :n_neighbors].astype(np.float32)
        graph = knn_graph(indices, dist)
        graph = graph.maximum(graph.T).tocsr()  # UMAP asks for a symmetric sparse matrix
        model = umap.UMAP(n_neighbors=n_neighbors, n_components=n_components, metric="precomputed",
                          precomputed_knn=(idx, dst, None), random_state=random_state,
                          verbose=False, tqdm_kwds={"disable": not progress}, **kwargs)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*knn_search_index.*")
            warnings.filterwarnings("ignore", message=".*inverse_transform will be unavailable.*")
            warnings.filterwarnings("ignore", message=".*n_jobs value.*")
            return np.asarray(model.fit_transform(graph), dtype=np.float64)
    n = X.shape[0]
    if n_neighbors >= n:
        raise ValueError(f"UMAP n_neighbors={n_neighbors} needs more than {n_neighbors} objects; X has {n}")
    model = umap.UMAP(n_neighbors=n_neighbors, n_components=n_components, metric=metric,
                      random_state=random_state, tqdm_kwds={"disable": not progress}, **kwargs)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")
        return np.asarray(model.fit_transform(X), dtype=np.float64)
