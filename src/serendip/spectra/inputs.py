"""One way to open what the command-line verbs take as INPUT.

``serendip weird``, ``sequence``, ``detect``, ``embed`` and ``cluster`` all read
the same kinds of input: a store written by ``serendip ingest``, a ``.npy``
matrix, a ``.npz`` archive, or a spectra file that :func:`read_spectra`
understands. :func:`open_input` opens any of them the same way, so every verb
accepts the same files and gives the same messages.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

__all__ = ["OpenedInput", "open_input"]

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
            return np.asarray(self.meta["snr"], dtype=float)
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


def _from_npz(path: Path) -> OpenedInput:
    with np.load(path, allow_pickle=False) as z:
        keys = list(z.files)
        key = next((k for k in _FLUX_KEYS if k in keys), None) or next((k for k in keys if z[k].ndim == 2), None)
        if key is None:
            raise ValueError(f"{path}: expected a 2-D array named 'flux' or 'X'; found {sorted(keys)}")
        data = np.asarray(z[key])
        n = len(data)
        ik = next((k for k in _ID_KEYS if k in keys), None)
        ids = z[ik].astype(str) if ik else np.arange(n).astype(str)
        meta = Table({"id": ids})
        for extra in _META_KEYS:
            if extra in keys and z[extra].shape == (n,):
                meta[extra] = z[extra]
        wave = None
        if "grid" in keys:
            wave = np.asarray(z["grid"], dtype=float)
        elif "wavelength" in keys:
            wave = np.asarray(z["wavelength"], dtype=float)
        elif "loglam" in keys:
            wave = 10.0 ** np.asarray(z["loglam"], dtype=float)
    return OpenedInput(data, ids, meta, wave, str(path))


def open_input(source) -> OpenedInput:
    """Open an array, container, store, or a path to a store, ``.npy``, ``.npz`` or spectra file.

    Parameters
    ----------
    source : path-like, ndarray, Spectra or SpectraStore
        - a store made by ``serendip ingest`` (an HDF5 file, recognised by its signature);
        - a ``.npy`` matrix, opened as a read-only memmap;
        - a ``.npz`` with ``flux`` or ``X`` (else its only 2-D array), and optionally ``id``/``ids``/``name``,
          ``snr``, ``z``, ``class`` and a grid (``grid``, ``wavelength`` in Å, or ``loglam``);
        - any spectra file :func:`serendip.spectra.read_spectra` understands.

    Returns
    -------
    OpenedInput

    Raises
    ------
    FileNotFoundError
        If the path does not exist.
    ValueError
        If the file is a folder or of a kind none of the above can read.
    """
    if not isinstance(source, (str, Path)):
        return _from_object(source, type(source).__name__)
    path = Path(source)
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
        data = np.load(path, mmap_mode="r", allow_pickle=False)
        ids = np.arange(len(data)).astype(str)
        return OpenedInput(data, ids, Table({"id": ids}), None, str(path))
    if name.endswith(".npz"):
        return _from_npz(path)
    from .io import read_spectra

    return _from_object(read_spectra(path), str(path))
