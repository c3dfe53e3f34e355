"""Clustering of features or of an embedding, with per-cluster summaries.

:func:`cluster` runs one of scikit-learn's clusterers and returns a
:class:`ClusterResult`: the label of every object (``-1`` = noise for
HDBSCAN), a summary table (size, the most typical members) and, when spectra
are given, the median spectrum of each cluster.

"Typical members" are the members closest (Euclidean) to their cluster's
centroid in the space that was clustered.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from .._logging import get_logger
from .._validation import as_feature_matrix, object_ids

__all__ = ["cluster", "ClusterResult", "CLUSTER_METHODS", "median_spectra"]

log = get_logger(__name__)

CLUSTER_METHODS = ("hdbscan", "kmeans", "gmm", "agglomerative")


@dataclass
class ClusterResult:
    """The outcome of :func:`cluster`.

    Attributes
    ----------
    labels_ : ndarray of int, shape (N,)
        Cluster of each object; ``-1`` marks noise (HDBSCAN only).
    summary : astropy Table
        One row per cluster (noise last): ``cluster``, ``size``, ``fraction``,
        ``typical_index`` (n_typical indices, -1 padded), ``typical_ids`` (comma-joined ids).
        Provenance in ``summary.meta``.
    probabilities_ : ndarray or None
        Membership strength (HDBSCAN) or posterior of the assigned component (GMM).
    median_spectra : ndarray (n_clusters, M) or None
        Median spectrum per summary row (NaN where every member is masked).
    wavelength : ndarray or None
        Grid of ``median_spectra`` in Å.
    ids : ndarray of str
        Object ids.
    """

    labels_: np.ndarray
    summary: object
    probabilities_: np.ndarray | None = None
    median_spectra: np.ndarray | None = None
    wavelength: np.ndarray | None = None
    ids: np.ndarray | None = None
    params: dict = field(default_factory=dict)

    @property
    def n_clusters(self) -> int:
        """Number of clusters, noise excluded."""
        return int(np.sum(np.unique(self.labels_) >= 0))

    def to_table(self):
        """Per-object table: ``id``, ``cluster`` (and ``probability``), with the summary's provenance."""
        from astropy.table import Table

        tab = Table({"id": self.ids, "cluster": self.labels_})
        if self.probabilities_ is not None:
            tab["probability"] = self.probabilities_
        tab.meta.update(self.summary.meta)
        return tab


def _default_min_cluster_size(n: int) -> int:
    return max(5, n // 200)


#: HDBSCAN's min_samples (its neighbours per object) is at most this unless given: scikit-learn's
#: default, min_cluster_size, is N/200 by default here and held an N x N/200 array (555 MB at N = 60,000).
HDBSCAN_MAX_MIN_SAMPLES = 50


def connected_knn_graph(X, k: int = 10):
    """A symmetric k-nearest-neighbour graph of ``X`` made connected with a few added edges.

    Where the kNN graph falls into pieces, each piece is joined to the others through one
    representative object (the member nearest the piece's mean) along a spanning tree of
    the representatives, built the same way (recursively) so no matrix larger than
    N x k is made. scikit-learn's own repair of a disconnected connectivity computes every
    distance between every two pieces (about (N/2)^2 for two halves). The added edges
    join nearby pieces, not necessarily through their closest two objects.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components, minimum_spanning_tree
    from sklearn.neighbors import NearestNeighbors, kneighbors_graph

    n = X.shape[0]
    graph = kneighbors_graph(X, min(k, n - 1), mode="distance", include_self=False)
    # duplicates are at distance 0, which sparse maximum() would drop as "no edge": keep them as edges
    graph.data[graph.data <= 0] = np.finfo(float).tiny
    graph = graph.maximum(graph.T).tocsr()
    n_parts, part = connected_components(graph, directed=False)
    if n_parts == 1:
        return graph
    reps = np.empty(n_parts, dtype=np.int64)
    for c in range(n_parts):
        members = np.flatnonzero(part == c)
        centre = X[members].mean(axis=0, keepdims=True)
        nn = NearestNeighbors(n_neighbors=1).fit(X[members])
        reps[c] = members[nn.kneighbors(centre, return_distance=False)[0, 0]]
    if n_parts == 2:
        links = [(0, 1)]
    else:
        tree = minimum_spanning_tree(connected_knn_graph(X[reps], k)).tocoo()
        links = list(zip(tree.row, tree.col))
    rows = [reps[a] for a, b in links]
    cols = [reps[b] for a, b in links]
    d = np.linalg.norm(X[rows] - X[cols], axis=1)
    d = np.where(d > 0, d, np.finfo(float).tiny)  # a stored zero would not count as an edge
    extra = coo_matrix((np.r_[d, d], (np.r_[rows, cols], np.r_[cols, rows])), shape=(n, n))
    return graph.maximum(extra.tocsr()).tocsr()


def _fit_labels(X, method, n_clusters, random_state, min_cluster_size, **kwargs):
    probs = None
    n = X.shape[0]
    if method == "hdbscan":
        from sklearn.cluster import HDBSCAN

        mcs = _default_min_cluster_size(n) if min_cluster_size is None else int(min_cluster_size)
        if mcs < 2 or mcs > n:
            raise ValueError(f"min_cluster_size must be between 2 and the number of objects ({n}); got {mcs}")
        kwargs.setdefault("copy", True)  # never modify the caller's array (and silences a FutureWarning)
        kwargs.setdefault("min_samples", min(mcs, HDBSCAN_MAX_MIN_SAMPLES))
        model = HDBSCAN(min_cluster_size=mcs, **kwargs).fit(X)
        labels, probs = model.labels_, model.probabilities_
        params = {"min_cluster_size": mcs}
    else:
        if not isinstance(n_clusters, numbers.Integral) or n_clusters < 1:
            raise ValueError(f"n_clusters must be a positive integer; got {n_clusters!r}")
        if n_clusters > n:
            raise ValueError(f"cannot make {n_clusters} clusters from {n} objects")
        params = {"n_clusters": int(n_clusters)}
        if method == "kmeans":
            from sklearn.cluster import KMeans, MiniBatchKMeans

            cls = MiniBatchKMeans if n > 100_000 else KMeans
            labels = cls(n_clusters=n_clusters, n_init="auto", random_state=random_state, **kwargs).fit_predict(X)
        elif method == "gmm":
            from sklearn.mixture import GaussianMixture

            model = GaussianMixture(n_components=n_clusters, random_state=random_state, **kwargs).fit(X)
            post = model.predict_proba(X)
            labels = np.argmax(post, axis=1)
            probs = post[np.arange(n), labels]
        else:
            from sklearn.cluster import AgglomerativeClustering

            kwargs.setdefault("linkage", "ward")
            if n > 5000 and "connectivity" not in kwargs:
                # Ward without connectivity needs all N^2/2 pair distances; a kNN graph keeps it sparse,
                # made connected here (scikit-learn's repair of a split graph is dense between the pieces)
                log.info("agglomerative clustering of %d objects: using a 10-nearest-neighbour connectivity", n)
                kwargs["connectivity"] = connected_knn_graph(X, 10)
            labels = AgglomerativeClustering(n_clusters=n_clusters, **kwargs).fit_predict(X)
    return np.asarray(labels, dtype=np.int64), probs, params


def _typical_members(X, labels, clusters, n_typical):
    out = np.full((len(clusters), n_typical), -1, dtype=np.int64)
    for row, c in enumerate(clusters):
        members = np.flatnonzero(labels == c)
        centroid = X[members].mean(axis=0)
        d = np.sum((X[members] - centroid) ** 2, axis=1)
        best = members[np.argsort(d, kind="stable")[:n_typical]]
        out[row, :best.size] = best
    return out


def median_spectra(spectra, labels, clusters=None, *, max_members: int = 2000, random_state=None):
    """Median spectrum of each cluster (masked pixels ignored).

    Parameters
    ----------
    spectra : Spectra or array-like (N, M)
        Masked pixels of a :class:`~serendip.spectra.Spectra` (and NaN in arrays) are ignored.
    labels : array of int, shape (N,)
    clusters : sequence of int, optional
        Which clusters, in order (default: sorted unique labels).
    max_members : int
        Clusters larger than this use a random subset of that many members (bounds memory).

    Returns
    -------
    ndarray (n_clusters, M)
    """
    flux = spectra.masked_flux() if hasattr(spectra, "masked_flux") else np.asarray(spectra, dtype=np.float64)
    labels = np.asarray(labels)
    if flux.ndim != 2 or flux.shape[0] != labels.shape[0]:
        raise ValueError(f"spectra have shape {flux.shape} but there are {labels.shape[0]} labels")
    clusters = np.unique(labels) if clusters is None else clusters
    rng = np.random.default_rng(random_state)
    out = np.full((len(clusters), flux.shape[1]), np.nan)
    for row, c in enumerate(clusters):
        members = np.flatnonzero(labels == c)
        if members.size > max_members:
            members = np.sort(rng.choice(members, max_members, replace=False))
        block = np.asarray(flux[members], dtype=np.float64)
        good = np.isfinite(block).any(axis=0)
        out[row, good] = np.nanmedian(block[:, good], axis=0)
    return out


def cluster(X, method: str = "hdbscan", *, n_clusters: int = 8, min_cluster_size: int | None = None,
            spectra=None, ids=None, n_typical: int = 5, random_state=None, **kwargs) -> ClusterResult:
    """Cluster objects (features or an embedding) and summarise each cluster.

    Parameters
    ----------
    X : array-like (N, d), Spectra or store
        What to cluster: features, or better a low-dimensional embedding from :func:`embed`.
    method : {"hdbscan", "kmeans", "gmm", "agglomerative"}
        ``"hdbscan"`` (scikit-learn's HDBSCAN; label -1 = noise) needs no number of clusters;
        the others use ``n_clusters``. Agglomerative (Ward) on more than 5000 objects uses a
        10-nearest-neighbour connectivity graph, joined where it falls into pieces
        (:func:`connected_knn_graph`), so that no N×N matrix is built.
    n_clusters : int
        For kmeans, gmm and agglomerative.
    min_cluster_size : int, optional
        For HDBSCAN; default ``max(5, N // 200)``. HDBSCAN's ``min_samples`` (pass it as a
        keyword to set it) defaults to ``min(min_cluster_size, HDBSCAN_MAX_MIN_SAMPLES)`` (50),
        which keeps its memory linear in N.
    spectra : Spectra or array (N, M), optional
        If given, ``median_spectra`` holds the median spectrum of each cluster.
    ids : sequence of str, optional
        Object ids (default: ``X.meta['id']`` for containers, else row numbers).
    n_typical : int
        How many typical members (closest to the cluster centroid) to list.
    random_state : int or None
    **kwargs
        Passed to the scikit-learn estimator.

    Returns
    -------
    ClusterResult
    """
    from astropy.table import Table

    from .._version import __version__

    if method not in CLUSTER_METHODS:
        raise ValueError(f"unknown clustering method {method!r}; choose one of {', '.join(CLUSTER_METHODS)}")
    if ids is None:
        ids = object_ids(X) if hasattr(X, "meta") else None
    X = as_feature_matrix(X, name="X", min_rows=2)
    n = X.shape[0]
    ids = np.arange(n).astype(str) if ids is None else np.asarray(ids).astype(str)
    if ids.shape != (n,):
        raise ValueError(f"ids has {ids.size} entries but X has {n} objects")
    labels, probs, params = _fit_labels(X, method, n_clusters, random_state, min_cluster_size, **kwargs)

    uniq = np.unique(labels)
    clusters = np.concatenate([uniq[uniq >= 0], uniq[uniq < 0]])  # noise last
    sizes = np.array([(labels == c).sum() for c in clusters])
    typical = _typical_members(X, labels, clusters, n_typical)
    summary = Table()
    summary["cluster"] = clusters.astype(np.int64)
    summary["size"] = sizes.astype(np.int64)
    summary["fraction"] = sizes / n
    summary["typical_index"] = typical
    summary["typical_ids"] = [",".join(ids[t] for t in row if t >= 0) for row in typical]
    medians = wavelength = None
    if spectra is not None:
        medians = median_spectra(spectra, labels, clusters, random_state=random_state)
        if hasattr(spectra, "wavelength"):
            wavelength = np.asarray(getattr(spectra.wavelength, "value", spectra.wavelength), dtype=np.float64)
    params = {"method": method, **params, "n_typical": n_typical,
              "random_state": random_state if isinstance(random_state, (int, type(None))) else repr(random_state),
              **{k: (v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)) for k, v in kwargs.items()}}
    summary.meta.update({"step": "cluster", "params": params, "n_objects": n, "n_features": X.shape[1],
                         "n_clusters": int(np.sum(clusters >= 0)), "n_noise": int(np.sum(labels < 0)),
                         "typical": "members closest to the cluster centroid in the clustered space",
                         "serendip_version": __version__})
    log.info("%s: %d clusters, %d noise objects", method, summary.meta["n_clusters"], summary.meta["n_noise"])
    return ClusterResult(labels_=labels, summary=summary, probabilities_=probs, median_spectra=medians,
                         wavelength=wavelength, ids=ids, params=params)
