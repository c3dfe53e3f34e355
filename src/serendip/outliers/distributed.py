"""Score survey-size data on a Dask cluster with any fitted weirdness detector.

The pattern of Baron & Poznanski (2017) at SDSS scale is: fit the forest on a
manageable subsample (or merged sub-forests), then score every object. Scoring
is independent from row to row, so it maps onto row blocks. This module hands
those blocks to Dask, so the same code runs on a laptop's threads or on a
``dask.distributed`` cluster of many machines. serendip has no scheduler of
its own.

**Weirdness: higher = weirder**, as for every serendip detector.

Examples
--------
>>> from dask.distributed import Client                      # doctest: +SKIP
>>> client = Client("tcp://scheduler:8786")                  # doctest: +SKIP
>>> urf = UnsupervisedRandomForest(max_fit_samples=100_000).fit(sample)   # doctest: +SKIP
>>> w = score_samples_dask(urf, "survey.h5", chunk_rows=50_000).compute()  # doctest: +SKIP
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np

__all__ = ["score_samples_dask"]


def _dask_array():
    try:
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("score_samples_dask needs Dask: pip install 'serendip[dask]'") from exc
    return da


def _read_store_rows(path: str, start: int, stop: int) -> np.ndarray:
    """Open a store on the worker (HDF5 handles do not travel) and read rows ``start:stop``."""
    from ..spectra import open_store

    store = open_store(path)
    try:
        return np.asarray(store[start:stop].flux)
    finally:
        close = getattr(store, "close", None)
        if close is not None:
            close()


def _as_row_chunked(X, chunk_rows: int):
    """Return ``(dask_array, snr_or_None)`` chunked by rows only, for arrays, dask arrays or store paths."""
    da = _dask_array()
    if isinstance(X, (str, os.PathLike)) or (hasattr(X, "iter_blocks") and not hasattr(X, "flux")):
        from dask import delayed

        from ..spectra import open_store

        path = str(X if isinstance(X, (str, os.PathLike)) else X.path)
        store = open_store(path)
        n, m = int(store.n_objects), int(len(store.wavelength))
        snr = np.asarray(store.meta["snr"], dtype=float) if "snr" in store.meta.colnames else None
        close = getattr(store, "close", None)
        if close is not None:
            close()
        parts = [da.from_delayed(delayed(_read_store_rows)(path, s, min(s + chunk_rows, n)),
                                 shape=(min(s + chunk_rows, n) - s, m), dtype=np.float32)
                 for s in range(0, n, chunk_rows)]
        if not parts:
            raise ValueError(f"the store {Path(path).name} holds no objects")
        return da.concatenate(parts, axis=0), snr
    snr = None
    if hasattr(X, "flux") and hasattr(X, "meta"):
        snr = np.asarray(X.meta["snr"], dtype=float) if "snr" in X.meta.colnames else None
        X = X.flux
    if isinstance(X, da.Array):
        return X.rechunk({0: chunk_rows, 1: -1}), snr
    if not (hasattr(X, "dtype") and hasattr(X, "shape")):  # a DataFrame, a list: as score_samples takes them
        X = np.asarray(X)
    if np.ndim(X) != 2:
        raise ValueError(f"X must be 2-D (n_objects, n_features); found shape {np.shape(X)}")
    return da.from_array(X, chunks=(chunk_rows, -1)), snr


def _quiet_copy(detector):
    """A shallow copy of ``detector`` with progress bars off, in it and in its fitted sub-detectors.

    The sub-detectors (``strata_models_`` of a URF fitted with S/N strata, ``estimators_``
    of an ensemble) are copied too, so the caller's objects are left unchanged.
    """
    out = copy.copy(detector)
    if hasattr(out, "progress"):
        out.progress = False
    for name in ("strata_models_", "estimators_"):
        members = getattr(out, name, None)
        if isinstance(members, list) and members and all(hasattr(m, "score_samples") for m in members):
            setattr(out, name, [_quiet_copy(m) for m in members])
    return out


def score_samples_dask(detector, X, *, chunk_rows: int = 20_000, snr=None):
    """Weirdness of many objects (higher = weirder), computed block by block with Dask.

    Parameters
    ----------
    detector : fitted serendip detector
        Anything with ``score_samples``: :class:`~serendip.outliers.UnsupervisedRandomForest`
        or a baseline. It is copied to the workers with its progress bars off.
    X : array-like, dask array, :class:`~serendip.spectra.Spectra`, store or path to a store
        The objects to score, with the features the detector was fitted on. A
        store (or its path) is read by the workers themselves, one row block
        each, so no machine ever holds more than its blocks.
    chunk_rows : int
        Objects per task. Memory per task is about ``chunk_rows`` × (features + trees) × 8 bytes.
    snr : array-like, optional
        Per-object S/N for a detector fitted with S/N strata; taken from the
        container's or store's ``meta['snr']`` when not given.

    Returns
    -------
    dask.array.Array of shape (n_objects,)
        Lazy weirdness scores; call ``.compute()`` (on any Dask scheduler or
        ``dask.distributed`` client). The numbers equal ``detector.score_samples(X)``.
    """
    da = _dask_array()
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    if not hasattr(detector, "score_samples"):
        raise TypeError(f"{type(detector).__name__} has no score_samples: pass a fitted serendip detector")
    worker_copy = _quiet_copy(detector)
    Xd, meta_snr = _as_row_chunked(X, chunk_rows)
    n_expected = getattr(detector, "n_features_in_", None)
    if n_expected is not None and Xd.shape[1] != n_expected:
        raise ValueError(f"X has {Xd.shape[1]} features, but {type(detector).__name__} was fitted with "
                         f"{n_expected}; score spectra on the same grid/features used for fit")
    if getattr(detector, "snr_strata", None) is None:
        return Xd.map_blocks(lambda block: worker_copy.score_samples(block), drop_axis=1, dtype=np.float64,
                             meta=np.empty((0,), np.float64))
    snr = meta_snr if snr is None else np.asarray(snr, dtype=float).ravel()
    if snr is None or snr.size != Xd.shape[0]:
        raise ValueError("this detector was fitted with S/N strata: pass snr=... with one value per object "
                         "(or give a container/store with meta['snr'])")
    snr_d = da.from_array(snr[:, None], chunks=(Xd.chunks[0], 1))
    return da.map_blocks(lambda block, s: worker_copy.score_samples(block, snr=s[:, 0]), Xd, snr_d,
                         drop_axis=1, dtype=np.float64, meta=np.empty((0,), np.float64))
