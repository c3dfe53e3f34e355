"""Vectorised per-chunk distances of the Sequencer (EMD, energy, KL, L2).

Every chunk of every object is normalised to unit sum first (``p``), and
``F = cumsum(p)`` is its cumulative distribution on the chunk's grid ``x``. Then,
for a pair of objects ``i, j``:

* ``EMD``    = sum_k |F_ik - F_jk| (x_{k+1} - x_k)          (1-D Wasserstein distance)
* ``energy`` = sqrt(2 sum_k (F_ik - F_jk)^2 (x_{k+1} - x_k))
* ``KL``     = sum_k p_ik ln(p_ik / p_jk)                    (asymmetric, needs p > 0)
* ``L2``     = sum_k (p_ik - p_jk)^2                         (squared, no square root)

These equal ``scipy.stats.wasserstein_distance``, ``energy_distance`` and
``entropy`` with the grid as support and the chunk as weights (scipy is only the
test oracle). Each metric is reduced to a *representation* of the rows so that
the pair distance is a plain L1 or squared-Euclidean distance (EMD: ``F*dx``;
energy: ``F*sqrt(dx)``; L2: ``p``), or a matrix product (KL:
``H_i - p_i . log p_j``). Dense matrices come from tiled numba kernels (upper
triangle, both cores) or BLAS; distances on an edge list (for the kNN method)
come from blocked numpy.

Accuracy: KL as ``H_i - p_i . log p_j`` subtracts two numbers of size ``|H_i|``, so
its absolute error is ~1e-15 ``|H_i|``. That is far below any real difference between
spectra, but two objects closer than that (a line shifted by < 1e-6 pixel) are not
told apart reliably by KL; the other metrics are exact differences.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._numba import numba_or_numpy

__all__ = ["METRICS", "chunk_bounds", "ChunkRep", "prepare", "dense_distances", "pair_distances",
           "default_scales"]

#: Metrics in the order the reference uses them.
METRICS = ("EMD", "energy", "KL", "L2")
_TILE = 48


def default_scales(n_pixels: int) -> list[int]:
    """Powers of two ``s`` with ``s < n_pixels / 20`` (the reference's default), at least ``[1]``."""
    if n_pixels <= 20:
        return [1]
    top = n_pixels / 20.0
    return [int(2 ** k) for k in range(int(np.ceil(np.log2(top)))) if 2 ** k < top] or [1]


def chunk_bounds(n_pixels: int, n_chunks: int) -> list[tuple[int, int]]:
    """Pixel ranges ``[(start, stop), ...]`` of ``numpy.array_split(range(n_pixels), n_chunks)``."""
    if n_chunks < 1 or n_chunks > n_pixels:
        raise ValueError(f"a scale must be between 1 and the number of pixels ({n_pixels}); got {n_chunks}")
    q, r = divmod(n_pixels, n_chunks)
    sizes = [q + 1] * r + [q] * (n_chunks - r)
    stops = np.cumsum(sizes)
    return [(int(b - s), int(b)) for s, b in zip(sizes, stops)]


@dataclass
class ChunkRep:
    """Rows of one chunk turned into the form its metric needs.

    ``kind`` is ``"l1"`` (distance = sum |a_i - a_j|), ``"sq"`` (sum (a_i - a_j)^2,
    then ``post`` applied) or ``"kl"`` (``H_i - a_i . logp_j``).
    """

    metric: str
    kind: str
    a: np.ndarray
    logp: np.ndarray | None = None
    h: np.ndarray | None = None
    post: str | None = None  # "energy" -> sqrt(2 * value)


def prepare(metric: str, p: np.ndarray, x: np.ndarray) -> ChunkRep:
    """Representation of normalised chunk rows ``p`` (N x m, rows sum to 1) on grid ``x`` (m,)."""
    p = np.ascontiguousarray(p, dtype=np.float64)
    if metric in ("EMD", "energy"):
        dx = np.diff(np.asarray(x, dtype=np.float64))
        F = np.cumsum(p, axis=1)[:, :-1]
        if metric == "EMD":
            return ChunkRep(metric, "l1", np.ascontiguousarray(F * dx))
        return ChunkRep(metric, "sq", np.ascontiguousarray(F * np.sqrt(dx)), post="energy")
    if metric == "L2":
        return ChunkRep(metric, "sq", p)
    if metric == "KL":
        logp = np.log(p)
        h = np.einsum("ij,ij->i", p, logp)
        return ChunkRep(metric, "kl", p, logp=logp, h=h)
    raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")


def _kernels():
    from numba import njit, prange

    @njit(parallel=True, fastmath=True, cache=True, nogil=True)
    def tri_l1(a, bi, bj, tile, out):  # pragma: no cover - compiled
        n, m = a.shape
        for t in prange(bi.size):
            i0 = bi[t] * tile
            j0 = bj[t] * tile
            i1 = min(i0 + tile, n)
            j1 = min(j0 + tile, n)
            for i in range(i0, i1):
                jstart = j0 if j0 > i else i + 1
                for j in range(jstart, j1):
                    s = 0.0
                    for k in range(m):
                        s += abs(a[i, k] - a[j, k])
                    out[i, j] = s
                    out[j, i] = s
            if bi[t] == bj[t]:
                for i in range(i0, i1):
                    out[i, i] = 0.0

    @njit(parallel=True, fastmath=True, cache=True, nogil=True)
    def tri_sq(a, bi, bj, tile, out):  # pragma: no cover - compiled
        n, m = a.shape
        for t in prange(bi.size):
            i0 = bi[t] * tile
            j0 = bj[t] * tile
            i1 = min(i0 + tile, n)
            j1 = min(j0 + tile, n)
            for i in range(i0, i1):
                jstart = j0 if j0 > i else i + 1
                for j in range(jstart, j1):
                    s = 0.0
                    for k in range(m):
                        d = a[i, k] - a[j, k]
                        s += d * d
                    out[i, j] = s
                    out[j, i] = s
            if bi[t] == bj[t]:
                for i in range(i0, i1):
                    out[i, i] = 0.0

    return tri_l1, tri_sq


def _numpy_kernels():
    """Blocked numpy versions of the tiled kernels (used when numba is not installed)."""

    def tri(a, kind, out, budget=1 << 23):
        n, m = a.shape
        rows = max(1, budget // max(1, n * m))
        for s in range(0, n, rows):
            d = a[s:s + rows, None, :] - a[None, :, :]
            out[s:s + rows] = np.abs(d).sum(axis=2) if kind == "l1" else np.einsum("ijk,ijk->ij", d, d)
        np.fill_diagonal(out, 0.0)

    return (lambda a, bi, bj, tile, out: tri(a, "l1", out)), (lambda a, bi, bj, tile, out: tri(a, "sq", out))


_KERNELS = None


def _get_kernels():
    global _KERNELS
    if _KERNELS is None:
        _KERNELS = numba_or_numpy(_kernels, _numpy_kernels, "Sequencer distances")
    return _KERNELS


def _tile_pairs(n: int, tile: int) -> tuple[np.ndarray, np.ndarray]:
    nb = (n + tile - 1) // tile
    bi, bj = np.triu_indices(nb)  # every tile has the same size, so a plain row-major list balances
    return bi.astype(np.int64), bj.astype(np.int64)


def dense_distances(rep: ChunkRep, out: np.ndarray | None = None, n_jobs: int | None = None) -> np.ndarray:
    """Full N x N distance matrix of one chunk (asymmetric for KL), zero diagonal.

    ``out`` (float64, C-contiguous, N x N) is reused when given, so a caller can
    keep one buffer for every chunk. ``n_jobs`` caps the numba threads.
    """
    n = rep.a.shape[0]
    if out is None:
        out = np.empty((n, n), dtype=np.float64)
    if rep.kind == "kl":
        np.matmul(rep.a, rep.logp.T, out=out)
        np.subtract(rep.h[:, None], out, out=out)
        np.maximum(out, 0.0, out=out)  # Gibbs: KL >= 0; removes rounding below zero
        np.fill_diagonal(out, 0.0)
        return out
    tri_l1, tri_sq = _get_kernels()
    bi, bj = _tile_pairs(n, _TILE)
    try:
        import numba
    except ImportError:
        numba = None
    old = numba.get_num_threads() if numba else None
    if numba and n_jobs is not None and n_jobs > 0:
        numba.set_num_threads(min(n_jobs, numba.config.NUMBA_NUM_THREADS))
    try:
        (tri_l1 if rep.kind == "l1" else tri_sq)(rep.a, bi, bj, _TILE, out)
    finally:
        if numba:
            numba.set_num_threads(old)
    if rep.post == "energy":
        np.multiply(out, 2.0, out=out)
        np.sqrt(out, out=out)
    return out


#: Bytes of one float64 temporary (edges x pixels) in :func:`pair_distances`.
PAIR_BLOCK_BYTES = 64 << 20


def pair_distances(rep: ChunkRep, rows: np.ndarray, cols: np.ndarray, block: int | None = None) -> np.ndarray:
    """Distances ``d(rows[e], cols[e])`` for an edge list, computed in blocks of edges.

    Parameters
    ----------
    rep : ChunkRep
        The chunk's representation (from :func:`prepare`).
    rows, cols : array-like of int
        The edges' end points.
    block : int, optional
        Edges per block. Default: as many as keep one ``block x m`` float64
        temporary within :data:`PAIR_BLOCK_BYTES` (64 MiB; a block makes a few such
        temporaries), whatever the number of pixels ``m``. The result does not
        depend on it.

    Returns
    -------
    ndarray of float64
        One distance per edge.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    if block is None:
        block = max(1, PAIR_BLOCK_BYTES // (8 * max(1, rep.a.shape[1])))
    elif int(block) < 1:
        raise ValueError(f"block must be a positive number of edges, got {block!r}; pass None for the default")
    block = int(block)
    res = np.empty(rows.size, dtype=np.float64)
    for s in range(0, rows.size, block):
        r = rows[s:s + block]
        c = cols[s:s + block]
        if rep.kind == "kl":
            v = rep.h[r] - np.einsum("ij,ij->i", rep.a[r], rep.logp[c])
            np.maximum(v, 0.0, out=v)
        else:
            d = rep.a[r] - rep.a[c]
            v = np.abs(d).sum(axis=1) if rep.kind == "l1" else np.einsum("ij,ij->i", d, d)
            if rep.post == "energy":
                v = np.sqrt(2.0 * v)
        res[s:s + block] = v
    return res
