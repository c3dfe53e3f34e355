"""Peak memory and time of URF ``most_similar`` row blocks: the old blocking rule against the new one.

    python benchmarks/bench_urf_similarity_memory.py                  # N=20000, F=10, T=60, first 4096 rows
    python benchmarks/bench_urf_similarity_memory.py --rows 20000     # every object (the old rule takes minutes)
    python benchmarks/bench_urf_similarity_memory.py --n 5000 --rows 2000 --trees 30   # quick

Correlated Gaussian data (a few latent factors plus noise) make the good leaves
populous, so a row of the similarity matrix has thousands of non-zeros however
few the trees. Both runs use the same fitted model and the same sparse products
(:meth:`ForestSimilarity.block`):

* *before*: rows in blocks of ``min(block_size, 2e7 // (8·T))`` (as if a row
  had at most 8·T non-zeros), top k by a ``np.lexsort`` of every entry of the
  block (copied here from the previous implementation);
* *after*: :meth:`UnsupervisedRandomForest.most_similar` (blocks from the
  per-row non-zero bound and ``SIMILARITY_BLOCK_BYTES``; top k by partition).

Peak memory is measured with :mod:`tracemalloc` (numpy and scipy arrays are
traced) around the similarity work only, the model and data excluded. The two
results are checked to be identical.
"""
from __future__ import annotations

import argparse
import logging
import time
import tracemalloc

import numpy as np
import scipy.sparse as sp

from serendip.outliers import UnsupervisedRandomForest
from serendip.outliers import similarity as simmod

log = logging.getLogger("bench_urf_similarity_memory")


def correlated_gaussian(n, f, seed):
    """``n`` objects with ``f`` features driven by three latent Gaussian factors plus noise."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 3))
    return (latent @ rng.normal(size=(3, f)) + 0.3 * rng.normal(size=(n, f))).astype(np.float32)


def topk_rows_lexsort(S, k, exclude=None):
    """The previous top-k selection: one lexsort of every stored entry of the block."""
    S = sp.csr_matrix(S)
    S.sum_duplicates()
    b = S.shape[0]
    rows = np.repeat(np.arange(b), np.diff(S.indptr))
    keep = S.data > 0
    if exclude is not None:
        keep &= S.indices != np.asarray(exclude)[rows]
    rows, cols, vals = rows[keep], S.indices[keep], S.data[keep]
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    counts = np.bincount(rows, minlength=b)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(rows.size) - starts[rows]
    sel = rank < k
    idx = np.full((b, k), -1, dtype=np.int64)
    val = np.zeros((b, k), dtype=np.float64)
    idx[rows[sel], rank[sel]] = cols[sel]
    val[rows[sel], rank[sel]] = vals[sel]
    return idx, val


def most_similar_before(model, k, rows):
    """``most_similar`` with the previous blocking rule and top-k selection."""
    sim = model._similarity_engine()
    T = model.leaves_.shape[1]
    bs = int(max(1, min(model.block_size, 2e7 // max(T * 8, 1))))
    idx = np.empty((rows.size, k), dtype=np.int64)
    val = np.empty((rows.size, k))
    nnz = []
    for s in range(0, rows.size, bs):
        r = rows[s:s + bs]
        S = sim.block(model.leaves_[r])
        nnz.append(np.diff(S.indptr))
        idx[s:s + r.size], val[s:s + r.size] = topk_rows_lexsort(S, k, exclude=r)
    return idx, val, bs, np.concatenate(nnz)


def measured(fn):
    """Run ``fn`` under tracemalloc; return its result, seconds and peak MiB."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return out, dt, peak


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000, help="objects")
    ap.add_argument("--features", type=int, default=10)
    ap.add_argument("--trees", type=int, default=60)
    ap.add_argument("--rows", type=int, default=4096, help="query the first ROWS objects (default: one old block)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--normalization", choices=("column", "symmetric"), default="column")
    ap.add_argument("--repeats", type=int, default=1, help="n_repeats (independent forests averaged)")
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-before", action="store_true", help="only the new implementation")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    X = correlated_gaussian(args.n, args.features, args.seed)
    t0 = time.perf_counter()
    model = UnsupervisedRandomForest(args.trees, random_state=args.seed, n_jobs=args.n_jobs, progress=False,
                                     normalization=args.normalization, n_repeats=args.repeats).fit(X)
    log.info("fit N=%d F=%d T=%d (%s, %d repeat(s)): %.1f s", args.n, args.features, args.trees,
             args.normalization, args.repeats, time.perf_counter() - t0)
    rows = np.arange(min(args.rows, args.n))
    sim = model._similarity_engine()
    bound = sim.row_nnz_bound(model.leaves_[rows])
    blocks = model._sparse_blocks(sim, model.leaves_, model.block_size, rows=rows)
    log.info("budget %d MiB at %d bytes/entry; row bound: mean %.0f, max %d (of N=%d); %d new blocks of "
             "%d..%d rows", simmod.SIMILARITY_BLOCK_BYTES // 2**20, simmod.BYTES_PER_SIMILARITY, bound.mean(),
             bound.max(), args.n, len(blocks), min(e - s for s, e in blocks), max(e - s for s, e in blocks))

    (idx_a, val_a), dt_a, peak_a = measured(lambda: model.most_similar(args.k, rows=rows))
    log.info("after : %d rows in %.1f s, peak %.0f MiB", rows.size, dt_a, peak_a)
    if args.skip_before:
        return
    (idx_b, val_b, bs, nnz), dt_b, peak_b = measured(lambda: most_similar_before(model, args.k, rows))
    log.info("before: %d rows in %.1f s, peak %.0f MiB (blocks of %d rows; non-zeros per row: mean %.0f, "
             "max %d vs 8*T=%d assumed)", rows.size, dt_b, peak_b, bs, nnz.mean(), nnz.max(), 8 * args.trees)
    same = np.array_equal(idx_a, idx_b) and np.array_equal(val_a, val_b)
    log.info("identical results: %s; peak ratio before/after %.1f, time ratio %.1f", same, peak_b / peak_a,
             dt_b / dt_a)
    largest = max(int(nnz[s:e].sum()) for s, e in blocks)
    log.info("after: largest block stores %d similarities (bound %d); peak %.0f bytes per stored similarity "
             "(budgeted %d per bound entry)", largest, max(int(bound[s:e].sum()) for s, e in blocks),
             peak_a * 2**20 / max(largest, 1), simmod.BYTES_PER_SIMILARITY)
    if not same:
        raise SystemExit("results differ")


if __name__ == "__main__":
    main()
