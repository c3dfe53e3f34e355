"""Input checks shared by every algorithm, with messages written for people.

Each message says what was expected, what was found, and where (row, column,
object id) so a user can find the offending spectrum.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ._logging import get_logger

log = get_logger(__name__)

__all__ = ["check_matrix", "describe_positions", "as_feature_matrix", "iter_row_blocks", "n_rows",
           "object_ids"]


def describe_positions(rows: np.ndarray, cols: np.ndarray | None = None, ids: Sequence | None = None,
                       limit: int = 5) -> str:
    """Return a short human description such as ``"row 3 (id 'a') column 17, ... (12 in all)"``."""
    rows = np.asarray(rows)
    parts = []
    for k in range(min(limit, rows.size)):
        r = int(rows[k])
        text = f"row {r}"
        if ids is not None:
            text += f" (id '{ids[r]}')"
        if cols is not None:
            text += f" column {int(np.asarray(cols)[k])}"
        parts.append(text)
    more = f" ({rows.size} in all)" if rows.size > limit else ""
    return ", ".join(parts) + more


def require_real_numbers(arr: np.ndarray, name: str = "X") -> np.ndarray:
    """Return ``arr`` if it holds real numbers; convert numbers held as Python objects; else raise.

    Numbers in an object array (a pandas object column, a list of Decimals) become float64.
    Strings (in any dtype) are a ``ValueError``, an object that is not a number a
    ``TypeError``, complex values a ``ValueError`` (the wording of the last follows
    scikit-learn's, "Complex data not supported").
    """
    if arr.dtype.kind == "O" and not any(isinstance(v, (str, bytes)) for v in arr.flat):
        # None and pandas' NA are missing values (reported as NaN with their positions later)
        missing = np.frompyfunc(lambda v: v is None or type(v).__name__ == "NAType", 1, 1)(arr).astype(bool)
        if missing.any():
            arr = np.where(missing, np.nan, arr)
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{name} must be numeric; an element could not be read as a number: {exc}") from None
    if arr.dtype.kind in "OUSV":
        raise ValueError(
            f"{name} must be numeric; found dtype {arr.dtype} (strings or objects). "
            "Encode categorical columns or drop them."
        )
    if arr.dtype.kind == "c":
        raise ValueError(f"Complex data not supported: {name} is {arr.dtype}; give real features (e.g. the "
                         "modulus and phase as two columns)")
    return arr


def check_matrix(
    X: Any,
    *,
    name: str = "X",
    min_rows: int = 1,
    min_cols: int = 1,
    allow_nonfinite: bool = False,
    dtype: Any = np.float64,
    ids: Sequence | None = None,
    fix: str = "fill masked pixels first with serendip.spectra.fill_masked, or drop those objects",
) -> np.ndarray:
    """Return ``X`` as a 2-D floating array, or raise ``ValueError`` saying what is wrong.

    Parameters
    ----------
    X : array-like of shape (n_objects, n_features)
    name : str
        How the array is called in the message.
    min_rows, min_cols : int
        The smallest acceptable shape.
    allow_nonfinite : bool
        If false, NaN or inf anywhere is an error naming the first positions.
    dtype : numpy dtype
        Output dtype; ``None`` keeps a floating input's dtype.
    ids : sequence, optional
        Object ids, used to name offending rows.
    fix : str
        The suggestion appended to the non-finite message.
    """
    if hasattr(X, "flux") and hasattr(X, "wavelength"):
        _warn_unfilled(X, name)
        X = X.flux
    if np.ma.isMaskedArray(X) and np.ma.getmaskarray(X).any() and np.asarray(X).dtype.kind in "iufb":
        X = np.ma.filled(X.astype(np.float64), np.nan)  # masked values are missing, not their fill values
    import scipy.sparse

    if scipy.sparse.issparse(X):
        raise TypeError(f"sparse input is not supported: {name} is a {type(X).__name__}; give a dense "
                        "array (X.toarray()) or a table")
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists etc.
        raise ValueError(f"{name} could not be turned into a 2-D numeric array: {exc}") from exc
    arr = require_real_numbers(arr, name)
    if arr.ndim != 2:
        hint = (" Reshape your data: array.reshape(-1, 1) if it is one feature of many objects, "
                "array.reshape(1, -1) if it is one object") if arr.ndim == 1 else ""
        raise ValueError(f"{name} must be 2-D (n_objects, n_features); found shape {arr.shape}.{hint}")
    # the "n sample(s) (shape=...) while a minimum of m is required" wording is scikit-learn's own
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has 0 objects, 0 sample(s) (shape={arr.shape}) while a minimum "
                         f"of {max(min_rows, 1)} is required.")
    if arr.shape[0] < min_rows:
        raise ValueError(f"{name} has {arr.shape[0]} object(s), {arr.shape[0]} sample(s) (shape={arr.shape}) "
                         f"while a minimum of {min_rows} is required.")
    if arr.shape[1] < min_cols:
        raise ValueError(f"{name} has {arr.shape[1]} feature(s) (shape={arr.shape}) while a minimum of "
                         f"{min_cols} is required.")
    if dtype is None:
        dtype = arr.dtype if arr.dtype.kind == "f" else np.float64
    arr = np.asarray(arr, dtype=dtype)
    if not allow_nonfinite:
        bad = ~np.isfinite(arr)
        if bad.any():
            r, c = np.nonzero(bad)
            raise ValueError(
                f"{name} contains {bad.sum()} NaN or infinite value(s) at "
                f"{describe_positions(r, c, ids)}; {fix}"
            )
    return arr


def _warn_unfilled(spectra, name: str) -> None:
    """Log a warning when masked pixels of a Spectra container were never filled (their flux is used as data)."""
    mask = getattr(spectra, "mask", None)
    if mask is None:
        return
    unfilled = np.asarray(mask, bool)
    if getattr(spectra, "filled", None) is not None:
        unfilled = unfilled & ~np.asarray(spectra.filled, bool)
    if unfilled.any():
        rows = unfilled.any(axis=1)
        log.warning("%s: %d masked pixel(s) in %d of %d spectra were never filled, so their stored flux (0 where "
                    "resampling found no data) is used as data; call serendip.spectra.fill_masked first",
                    name, int(unfilled.sum()), int(rows.sum()), rows.size)


def n_rows(X: Any) -> int:
    """Number of objects in an array, :class:`~serendip.spectra.Spectra` or store."""
    if hasattr(X, "n_objects"):
        return int(X.n_objects)
    return int(len(X))


def object_ids(X: Any, n: int | None = None) -> np.ndarray:
    """Object ids of a container or store (its ``meta['id']``), else ``0..n-1`` as strings."""
    meta = getattr(X, "meta", None)
    if meta is not None and "id" in getattr(meta, "colnames", ()):
        return np.asarray(meta["id"]).astype(str)
    if n is None:
        n = n_rows(X)
    return np.arange(n).astype(str)


def iter_row_blocks(X: Any, block_size: int = 4096) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, block)`` with ``block`` a 2-D flux array, for arrays, memmaps, containers or stores.

    Anything with an ``iter_blocks(block_size)`` method (a
    :class:`~serendip.spectra.Spectra` or a :class:`~serendip.spectra.SpectraStore`)
    is streamed without loading everything; NumPy arrays and memmaps are sliced.
    """
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    if hasattr(X, "iter_blocks"):
        start = 0
        for block in X.iter_blocks(block_size):
            flux = block.flux if hasattr(block, "flux") else np.asarray(block)
            yield start, np.asarray(flux)
            start += flux.shape[0]
        return
    n = len(X)
    for start in range(0, n, block_size):
        yield start, np.asarray(X[start:start + block_size])


def as_feature_matrix(X: Any, *, name: str = "X", **kwargs) -> np.ndarray:
    """Materialise an array, container or store as a checked 2-D array (see :func:`check_matrix`)."""
    if hasattr(X, "iter_blocks") and not hasattr(X, "flux"):
        X = np.concatenate([b for _, b in iter_row_blocks(X)], axis=0)
    return check_matrix(X, name=name, **kwargs)


def sklearn_random_state(random_state):
    """``random_state`` in a form scikit-learn accepts: None, an int or a ``RandomState``.

    A :class:`numpy.random.Generator` is replaced by one int drawn from it
    (``integers(0, 2**31 - 1)``), so a Generator made with a given seed gives the
    same result every time; the Generator is advanced once per call. Call this once
    per ``fit`` and pass the result on. Anything else is returned unchanged
    (scikit-learn validates it).
    """
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**31 - 1))
    return random_state
