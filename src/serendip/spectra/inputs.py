"""One way to open what the command-line verbs take as INPUT.

``serendip weird``, ``sequence``, ``detect``, ``embed`` and ``cluster`` all read
the same kinds of input: a store written by ``serendip ingest``, a ``.npy``
matrix, a ``.npz`` archive, or a spectra file that :func:`read_spectra`
understands. :func:`open_input` opens any of them the same way, so every verb
accepts the same files and gives the same messages.
"""
from __future__ import annotations

import os

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from .._logging import get_logger

__all__ = ["OpenedInput", "open_input"]

log = get_logger(__name__)

_FLUX_KEYS = ("flux", "X")
_ID_KEYS = ("id", "ids", "name")
_META_KEYS = ("snr", "z", "class")


@dataclass
class OpenedInput:
    """An opened input.

    Attributes
    ----------
    data : ndarray, memmap, Spectra or SpectraStore
        The objects; a store is left open for block-wise reading.
    ids : ndarray of str
    meta : astropy Table
        ``id`` plus whatever per-object columns the input carried (snr, z, class, ...).
    wavelength : ndarray or None
        The grid in Å, when the input has one.
    description : str
        What was opened (for provenance).
    """

    data: Any
    ids: np.ndarray
    meta: Table
    wavelength: np.ndarray | None
    description: str

    @property
    def snr(self) -> np.ndarray:
        """Per-object S/N, NaN where unknown."""
        if "snr" in self.meta.colnames:
            col = self.meta["snr"]
            if np.ma.isMaskedArray(col):  # a blank cell is unknown, not S/N 0
                return np.ma.filled(np.ma.asarray(col, dtype=float), np.nan)
            return np.asarray(col, dtype=float)
        return np.full(len(self.ids), np.nan)

    @property
    def is_spectra(self) -> bool:
        """True when ``data`` is a Spectra container or a store."""
        return hasattr(self.data, "wavelength")


def _from_object(obj, description: str) -> OpenedInput:
    from .._validation import n_rows, object_ids

    n = n_rows(obj)
    ids = object_ids(obj, n)
    meta = getattr(obj, "meta", None)
    if meta is None or not hasattr(meta, "colnames"):
        meta = Table({"id": ids})
    wave = getattr(obj, "wavelength", None)
    if wave is not None:
        wave = np.asarray(getattr(wave, "value", wave), dtype=float)
    return OpenedInput(obj, ids, meta, wave, description)


def _load_npz_arrays(path: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """Load every array of an ``.npz`` archive that does not need pickle.

    Returns
    -------
    arrays : dict
        ``{name: ndarray}`` of the arrays that could be loaded.
    skipped : list of str
        Names of the object (pickled) arrays left out: loading them could run
        arbitrary code, so ``allow_pickle`` is never enabled.

    Raises
    ------
    ValueError
        If the file is not a readable ``.npz`` archive (the message names it).
    """
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as exc:  # not a zip, damaged zip, ...
        raise ValueError(f"{path}: not a readable .npz archive ({type(exc).__name__}: {exc})") from exc
    if not hasattr(archive, "files"):  # np.load opened a plain .npy saved under an .npz name
        return {"X": np.asarray(archive)}, []
    arrays: dict[str, np.ndarray] = {}
    skipped: list[str] = []
    with archive:
        for k in archive.files:
            try:
                arrays[k] = archive[k]
            except ValueError as exc:
                if "allow_pickle" not in str(exc):
                    raise ValueError(f"{path}: array {k!r} cannot be read ({exc})") from exc
                skipped.append(k)
            except Exception as exc:  # truncated/corrupted member
                raise ValueError(f"{path}: array {k!r} cannot be read ({type(exc).__name__}: {exc})") from exc
    if skipped:
        log.info("%s: skipped object array(s) %s (they would need pickle, which is never enabled)",
                 path, ", ".join(repr(k) for k in skipped))
    return arrays, skipped


def _from_npz(path: Path) -> OpenedInput:
    arrays, skipped = _load_npz_arrays(path)
    key = next((k for k in _FLUX_KEYS if k in arrays), None) or next(
        (k for k, v in arrays.items() if v.ndim == 2), None)
    if key is None:
        note = (f"; skipped object arrays {sorted(skipped)} (pickle is never enabled)" if skipped else "")
        raise ValueError(f"{path}: expected a 2-D array named 'flux' or 'X'; found {sorted(arrays)}{note}")
    data = np.asarray(arrays[key])
    if data.ndim != 2:
        raise ValueError(f"{path}: array {key!r} must be 2-D (objects × features); it has shape {data.shape}")
    if data.dtype.kind not in "biuf":
        raise ValueError(f"{path}: array {key!r} must be numeric; it has dtype {data.dtype}")
    n = len(data)
    ik = next((k for k in _ID_KEYS if k in arrays and arrays[k].shape == (n,)), None)
    if ik is None and any(k in skipped for k in _ID_KEYS):
        log.info("%s: the ids are an object array, which is not loaded; using row numbers as ids", path)
    ids = np.char.decode(arrays[ik], "utf-8", "replace") if ik and arrays[ik].dtype.kind == "S" else (
        arrays[ik].astype(str) if ik else np.arange(n).astype(str))
    meta = Table({"id": ids})
    for extra in _META_KEYS:
        if extra in arrays and arrays[extra].shape == (n,):
            meta[extra] = arrays[extra]
    wave = None
    try:
        if "grid" in arrays:
            wave = np.asarray(arrays["grid"], dtype=float)
        elif "wavelength" in arrays:
            wave = np.asarray(arrays["wavelength"], dtype=float)
        elif "loglam" in arrays:
            wave = 10.0 ** np.asarray(arrays["loglam"], dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: the wavelength grid array is not numeric ({exc})") from exc
    if wave is not None and wave.shape != (data.shape[1],):
        raise ValueError(f"{path}: the wavelength grid has shape {wave.shape} but {key!r} has {data.shape[1]} "
                         "columns; they must match (one wavelength per pixel)")
    return OpenedInput(data, ids, meta, wave, str(path))


def open_input(source) -> OpenedInput:
    """Open an array, container, store, or a path to a store, ``.npy``, ``.npz`` or spectra file.

    Parameters
    ----------
    source : path-like, ndarray, Spectra or SpectraStore
        - a store made by ``serendip ingest`` (an HDF5 file, recognised by its signature);
        - a ``.npy`` matrix, opened as a read-only memmap;
        - a ``.npz`` with ``flux`` or ``X`` (else its first 2-D array), and optionally ``id``/``ids``/``name``,
          ``snr``, ``z``, ``class`` and a grid (``grid``, ``wavelength`` in Å, or ``loglam``); object
          (pickled) arrays are skipped, never unpickled (their names are logged);
        - any spectra file :func:`serendip.spectra.read_spectra` understands.

    Returns
    -------
    OpenedInput

    Raises
    ------
    FileNotFoundError
        If the path does not exist.
    ValueError
        If the file is a folder or of a kind none of the above can read; the
        message names the file.
    """
    if isinstance(source, bytes):
        raise TypeError("give the input's path as text (str or os.PathLike), not bytes")
    if not isinstance(source, (str, os.PathLike)):
        return _from_object(source, type(source).__name__)
    path = Path(os.fspath(source))
    if not path.exists():
        raise FileNotFoundError(f"no such input: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a store made by `serendip ingest` (.h5), a spectra file, "
                         "or a .npy/.npz matrix (run `serendip ingest` on a folder of spectra first)")
    from .store import is_store, open_store

    if is_store(path):
        return _from_object(open_store(path), str(path))
    name = path.name.lower()
    if name.endswith(".npy"):
        try:
            data = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as exc:
            raise ValueError(f"{path}: not a readable .npy array ({type(exc).__name__}: {exc})") from exc
        if data.ndim != 2:
            raise ValueError(f"{path}: the array must be 2-D (objects × features); it has shape {data.shape}")
        ids = np.arange(len(data)).astype(str)
        return OpenedInput(data, ids, Table({"id": ids}), None, str(path))
    if name.endswith(".npz"):
        return _from_npz(path)
    from .io import read_spectra

    return _from_object(read_spectra(path), str(path))
