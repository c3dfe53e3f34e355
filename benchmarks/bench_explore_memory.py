"""Peak memory of clustering and of neighbours from a dense matrix: serendip's defaults against the
plain scikit-learn calls they replace, measured in the same run.

    python benchmarks/bench_explore_memory.py            # N = 30,000 (about a minute on 2 cores)
    python benchmarks/bench_explore_memory.py --quick    # N = 8,000

* HDBSCAN: serendip caps ``min_samples`` at 50; scikit-learn's default ``min_samples`` equals
  ``min_cluster_size``, which serendip sets to N/200 (an N x N/200 neighbour array).
* Ward on more than 5,000 objects: serendip joins a split 10-nearest-neighbour graph itself
  (:func:`serendip.explore.cluster.connected_knn_graph`); scikit-learn's repair of the split graph
  computes every distance between its pieces.

Peak memory is measured with :mod:`tracemalloc` (numpy and scikit-learn arrays are traced).
"""
from __future__ import annotations

import argparse
import time
import tracemalloc
import warnings

import numpy as np


def _peak(fn):
    tracemalloc.start()
    tracemalloc.reset_peak()
    t0 = time.perf_counter()
    try:
        out = fn()
        return out, time.perf_counter() - t0, tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N = 8,000 instead of 30,000")
    args = ap.parse_args(argv)
    n = 8_000 if args.quick else 30_000

    from sklearn.cluster import HDBSCAN, AgglomerativeClustering
    from sklearn.metrics import adjusted_rand_score
    from sklearn.neighbors import kneighbors_graph

    from serendip.explore import cluster

    rng = np.random.default_rng(0)
    blobs = np.concatenate([rng.normal(c, 1.0, size=(n // 4, 2)) for c in (0, 8, 16, 24)])
    mcs = max(5, n // 200)
    print(f"HDBSCAN on {len(blobs)} objects in 4 blobs (min_cluster_size {mcs})")
    old, t_old, m_old = _peak(lambda: HDBSCAN(min_cluster_size=mcs, copy=True).fit(blobs).labels_)
    new, t_new, m_new = _peak(lambda: cluster(blobs).labels_)
    print(f"   scikit-learn default min_samples={mcs}: {m_old:8.1f} MiB {t_old:6.1f} s, {np.unique(old[old >= 0]).size} clusters")
    print(f"   serendip (min_samples={min(mcs, 50)}):        {m_new:8.1f} MiB {t_new:6.1f} s, {np.unique(new[new >= 0]).size} clusters")
    print(f"   memory ratio {m_old / m_new:.1f}x; adjusted Rand index between the two {adjusted_rand_score(old, new):.3f}")

    halves = np.concatenate([rng.normal(0, 1, size=(n // 2, 5)), rng.normal(40, 1, size=(n - n // 2, 5))])
    print(f"Ward (agglomerative) on {len(halves)} objects in two separate groups, 10-NN connectivity")

    def plain():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scikit-learn warns that it repairs the split graph
            graph = kneighbors_graph(halves, 10, include_self=False)
            return AgglomerativeClustering(n_clusters=2, connectivity=graph).fit_predict(halves)

    old, t_old, m_old = _peak(plain)
    new, t_new, m_new = _peak(lambda: cluster(halves, method="agglomerative", n_clusters=2).labels_)
    print(f"   scikit-learn repairs the graph: {m_old:8.1f} MiB {t_old:6.1f} s")
    print(f"   serendip joins it first:        {m_new:8.1f} MiB {t_new:6.1f} s")
    print(f"   memory ratio {m_old / m_new:.1f}x; adjusted Rand index between the two {adjusted_rand_score(old, new):.3f}")


if __name__ == "__main__":
    main()
