"""`SpectraStore`: an on-disk, chunked, appendable HDF5 store of spectra on one grid.

Why HDF5 (h5py) rather than zarr: one self-contained file that is easy to move,
checksum and rename atomically; appendable chunked datasets; mature readers
in every language astronomers use (C, IDL, Julia, TOPCAT-adjacent tools);
and h5py is already a core dependency. zarr's strength (many small objects
for cloud storage and parallel writers) matters less for a single-writer
ingest, and a folder of thousands of chunk files cannot be renamed into place
as one unit on every file system.

Layout (format ``serendip-spectra-store`` version 1)::

    /                attrs: format, format_version, complete, n_committed, flux_unit, provenance (JSON)
    /wavelength      (M,) float64, Å (vacuum; rest frame if the provenance says so)
    /flux, /ivar     (N, M) float32, chunked by rows, growable along N
    /mask, /filled   (N, M) bool  (True = bad pixel / interpolated pixel)
    /meta/<column>   (N,) one dataset per metadata column (strings are UTF-8)
    /inputs/{path, sha256, n_spectra}   one row per ingested input file
    /rejected/{file, id, reason, sha256} one row per rejected file or object

Atomicity: a store is written under the hidden name ``.<name>.partial`` in
the destination folder and renamed to its final name by :meth:`finalize`,
after the ``complete`` flag is set. Readers refuse a file without that flag.
Rows become visible only when ``n_committed`` is advanced at the end of each
:meth:`append`, so an interrupted writer can be resumed
(``SpectraStore.create(..., resume=True)``) from the last committed row.
The SHA-256 of every input file is recorded, and :meth:`append` refuses an
input that is already in the store, so rows are never silently duplicated.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from astropy.table import Table

from .._io import _jsonable
from .._logging import get_logger
from .._version import __version__
from .container import Spectra

__all__ = ["SpectraStore", "open_store", "is_store", "partial_path", "STORE_FORMAT"]

log = get_logger(__name__)

STORE_FORMAT = "serendip-spectra-store"
STORE_VERSION = 1
_REJECTED_COLUMNS = ("file", "id", "reason", "sha256")
_INPUT_COLUMNS = ("path", "sha256", "n_spectra")


def partial_path(path: str | os.PathLike) -> Path:
    """The hidden temporary name a store is built under before it is renamed to ``path``."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial")


def _h5py():
    import h5py
    return h5py


def _string_dtype():
    return _h5py().string_dtype("utf-8")


def _column_kind(col) -> tuple[str, np.dtype | None]:
    arr = np.asarray(col)
    if arr.dtype.kind in "USO":
        return "str", None
    if arr.dtype.kind == "b":
        return "bool", np.dtype(bool)
    if arr.dtype.kind in "iu":
        return "int", np.dtype(np.int64)
    if arr.dtype.kind == "f":
        return "float", arr.dtype
    raise ValueError(f"metadata column of dtype {arr.dtype} cannot be stored")


def _fill_value(kind: str):
    return {"str": "", "bool": False, "int": -1, "float": np.nan}[kind]


def _plain_column(col) -> np.ndarray:
    if hasattr(col, "filled"):
        kind, _ = _column_kind(col)
        col = col.filled(_fill_value(kind))
    arr = np.asarray(col)
    if arr.dtype.kind == "S":
        arr = np.char.decode(arr, "utf-8", "replace")
    if arr.dtype.kind == "O":
        arr = arr.astype(str)
    return arr


class SpectraStore:
    """An HDF5 store of many spectra on one wavelength grid, read lazily in row blocks.

    Open an existing, complete store with ``SpectraStore(path)`` (or
    :func:`open_store`); build a new one with :meth:`create`, :meth:`append`
    and :meth:`finalize` (or use the writer as a context manager).

    Parameters
    ----------
    path : path-like
        A complete store written by :meth:`finalize`.

    Attributes
    ----------
    path : Path
    n_objects, n_pixels : int
    wavelength : Quantity (Å)
    meta : astropy Table (read once, then cached)
    provenance : dict
        serendip version, preprocessing steps and parameters, grid, and
        ``inputs`` (path, SHA-256 and number of spectra of every input file).
    rejected : astropy Table
        Files or objects that were skipped, with the reason.

    Examples
    --------
    >>> store = SpectraStore("survey.h5")            # doctest: +SKIP
    >>> for block in store.iter_blocks(10_000):      # doctest: +SKIP
    ...     process(block.flux)                      # one block in memory at a time
    """

    def __init__(self, path: str | os.PathLike, *, _mode: str = "r", _file=None, _final_path=None):
        h5py = _h5py()
        self.path = Path(_final_path or path)
        self._file_path = Path(path)
        if _file is not None:
            self._f = _file
        else:
            if not self._file_path.exists():
                partial = partial_path(self._file_path)
                hint = (f" (an unfinished one exists at {partial}: re-run the ingest to resume it)"
                        if partial.exists() else "")
                raise FileNotFoundError(f"no spectra store at {self._file_path}{hint}")
            try:
                self._f = h5py.File(self._file_path, _mode, rdcc_nbytes=64 * 2**20)
            except OSError as exc:
                raise ValueError(f"{self._file_path} is not a readable HDF5 spectra store: {exc}") from exc
        self._writable = _mode != "r"
        attrs = self._f.attrs
        if attrs.get("format") != STORE_FORMAT:
            self._f.close()
            raise ValueError(f"{self._file_path} is not a serendip spectra store (format attribute is "
                             f"{attrs.get('format')!r})")
        if not self._writable and not bool(attrs.get("complete", False)):
            self._f.close()
            raise ValueError(f"{self._file_path} is an incomplete spectra store (its writer did not finish); "
                             "re-run the ingest")
        self._meta_cache: Table | None = None

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(cls, path: str | os.PathLike, wavelength, *, provenance: dict | None = None,
               flux_unit: str = "1e-17 erg / (s cm2 Angstrom)", chunk_rows: int | None = None,
               if_exists: str = "error", resume: bool = False, compression: str | None = None) -> SpectraStore:
        """Start writing a store; it lives under :func:`partial_path` until :meth:`finalize`.

        Parameters
        ----------
        path : path-like
            Final name of the store (``.h5`` recommended).
        wavelength : Quantity or array-like (Å)
            The shared grid.
        provenance : dict, optional
            JSON-serialisable provenance (steps, parameters, ...); serendip's
            version is added.
        chunk_rows : int, optional
            Rows per HDF5 chunk; default about 1 MiB of float32 per chunk.
        if_exists : {"error", "overwrite", "append"}
            What to do when ``path`` already exists: refuse, replace it when
            finalised, or copy it and add rows to the copy (the original stays
            untouched until :meth:`finalize`).
        resume : bool
            If an unfinished partial store from an interrupted run exists with
            the same grid, continue it from its last committed row instead of
            starting over.
        compression : {None, "lzf", "gzip"}
            HDF5 compression of the pixel datasets (off by default: fastest).
        """
        import astropy.units as u

        h5py = _h5py()
        path = Path(path)
        if if_exists not in ("error", "overwrite", "append"):
            raise ValueError(f"if_exists must be 'error', 'overwrite' or 'append'; got {if_exists!r}")
        if path.exists() and if_exists == "error":
            raise FileExistsError(f"{path} exists; choose overwrite (rebuild it) or append (add new inputs only)")
        grid = (wavelength.to_value(u.AA, equivalencies=u.spectral()) if hasattr(wavelength, "unit")
                else np.asarray(wavelength, dtype=np.float64))
        grid = np.asarray(grid, dtype=np.float64)
        if grid.ndim != 1 or grid.size < 2 or np.any(np.diff(grid) <= 0):
            raise ValueError("the store grid must be a strictly increasing 1-D array of at least 2 wavelengths")
        tmp = partial_path(path)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        if resume and tmp.exists():
            try:
                store = cls(tmp, _mode="r+", _final_path=path)
                same = (store._f["wavelength"].shape == grid.shape
                        and np.allclose(store._f["wavelength"][...], grid, rtol=1e-12, atol=0))
                if same:
                    store._truncate_to_committed()
                    log.info("resuming %s from %d committed rows", tmp, store.n_objects)
                    return store
                store._f.close()
                log.warning("the unfinished store %s has a different grid; starting over", tmp)
            except (OSError, ValueError, KeyError) as exc:
                log.warning("cannot resume the unfinished store %s (%s); starting over", tmp, exc)
        if tmp.exists():
            tmp.unlink()
        if path.exists() and if_exists == "append":
            shutil.copy2(path, tmp)
            store = cls(tmp, _mode="r+", _final_path=path)
            old = store._f["wavelength"][...]
            if old.shape != grid.shape or not np.allclose(old, grid, rtol=1e-12, atol=0):
                store._f.close()
                tmp.unlink()
                raise ValueError(f"cannot append to {path}: its grid ({old.size} px, {old[0]:.2f}-{old[-1]:.2f} Å) "
                                 f"differs from the requested one ({grid.size} px, {grid[0]:.2f}-{grid[-1]:.2f} Å)")
            store._f.attrs["complete"] = False
            return store
        m = grid.size
        if chunk_rows is None:
            chunk_rows = max(1, min(4096, 2**20 // (4 * m)))
        f = h5py.File(tmp, "w", rdcc_nbytes=64 * 2**20)
        try:
            f.attrs["format"] = STORE_FORMAT
            f.attrs["format_version"] = STORE_VERSION
            f.attrs["complete"] = False
            f.attrs["n_committed"] = 0
            f.attrs["flux_unit"] = flux_unit
            prov = dict(provenance or {})
            prov.setdefault("serendip_version", __version__)
            f.attrs["provenance"] = json.dumps(_jsonable(prov))
            f.create_dataset("wavelength", data=grid)
            kw = dict(chunks=(chunk_rows, m), maxshape=(None, m), compression=compression)
            f.create_dataset("flux", shape=(0, m), dtype="f4", **kw)
            f.create_dataset("ivar", shape=(0, m), dtype="f4", **kw)
            f.create_dataset("mask", shape=(0, m), dtype=bool, **kw)
            f.create_dataset("filled", shape=(0, m), dtype=bool, **kw)
            f.create_group("meta").attrs["columns"] = json.dumps([])
            for group, names in (("inputs", _INPUT_COLUMNS), ("rejected", _REJECTED_COLUMNS)):
                g = f.create_group(group)
                g.attrs["n_committed"] = 0
                for name in names:
                    dt = np.int64 if name == "n_spectra" else _string_dtype()
                    g.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dt, chunks=(1024,))
            f.flush()
        except BaseException:
            f.close()
            tmp.unlink(missing_ok=True)
            raise
        return cls(tmp, _mode="r+", _file=f, _final_path=path)

    def _truncate_to_committed(self) -> None:
        n = int(self._f.attrs["n_committed"])
        for name in ("flux", "ivar", "mask", "filled"):
            self._f[name].resize(n, axis=0)
        for col in self._meta_columns():
            self._f["meta"][col].resize(n, axis=0)
        for group in ("inputs", "rejected"):
            g = self._f[group]
            k = int(g.attrs["n_committed"])
            for ds in g.values():
                ds.resize(k, axis=0)
        self._f.attrs["complete"] = False
        self._f.flush()

    # ------------------------------------------------------------------ writing
    def _require_writable(self):
        if not self._writable:
            raise ValueError(f"{self.path} was opened read-only; use SpectraStore.create(...) to write")

    def append(self, spectra: Spectra, *, inputs: list[dict] | None = None) -> tuple[int, int]:
        """Add rows (and, optionally, the input files they came from) and commit them.

        Parameters
        ----------
        spectra : Spectra
            On exactly the store's grid.
        inputs : list of dict, optional
            ``{"path", "sha256", "n_spectra"}`` for each input file these rows
            came from. An input whose SHA-256 is already in the store is refused
            (ValueError), so the same file can never be added twice.

        Returns
        -------
        (start, stop) : the row range written.
        """
        self._require_writable()
        grid = self._f["wavelength"][...]
        w = spectra.wavelength.value
        if w.shape != grid.shape or not np.allclose(w, grid, rtol=1e-10, atol=0):
            raise ValueError(f"these spectra are on a different grid ({w.size} px, {w[0]:.2f}-{w[-1]:.2f} Å) from "
                             f"the store ({grid.size} px, {grid[0]:.2f}-{grid[-1]:.2f} Å); resample them first")
        if inputs:
            have = self.input_hashes
            seen = set()
            for item in inputs:
                h = item["sha256"]
                if h in have or h in seen:
                    raise ValueError(f"input {item.get('path')} (SHA-256 {h[:12]}…) is already in {self.path}; "
                                     "refusing to add its rows twice")
                seen.add(h)
        n0 = int(self._f.attrs["n_committed"])
        k = spectra.n_objects
        n1 = n0 + k
        for name, arr in (("flux", spectra.flux), ("ivar", spectra.ivar), ("mask", spectra.mask),
                          ("filled", spectra.filled if spectra.filled is not None
                           else np.zeros(spectra.flux.shape, bool))):
            ds = self._f[name]
            ds.resize(n1, axis=0)
            ds[n0:n1] = arr
        self._append_meta(spectra.meta, n0, n1)
        if inputs:
            self._append_rows("inputs", [{"path": str(i["path"]), "sha256": i["sha256"],
                                          "n_spectra": int(i.get("n_spectra", 0))} for i in inputs])
        if spectra.history:
            prov = self.provenance_without_inputs()
            prov.setdefault("steps", [dict(h) for h in spectra.history])
            self._f.attrs["provenance"] = json.dumps(_jsonable(prov))
        self._f.attrs["n_committed"] = n1
        self._f.flush()
        self._meta_cache = None
        return n0, n1

    def _meta_columns(self) -> list[str]:
        return json.loads(self._f["meta"].attrs["columns"])

    def _append_meta(self, meta: Table, n0: int, n1: int) -> None:
        g = self._f["meta"]
        cols = self._meta_columns()
        for name in meta.colnames:
            arr = _plain_column(meta[name])
            if arr.ndim != 1:
                log.warning("metadata column %r is not 1-D; not stored", name)
                continue
            kind, dt = _column_kind(arr)
            if name not in g:
                dtype = _string_dtype() if kind == "str" else dt
                ds = g.create_dataset(name, shape=(n0,), maxshape=(None,), dtype=dtype, chunks=(4096,))
                if n0:
                    ds[:] = np.full(n0, _fill_value(kind), dtype=object if kind == "str" else dt)
                ds.attrs["kind"] = kind
                cols.append(name)
        for name in cols:
            ds = g[name]
            kind = ds.attrs["kind"]
            ds.resize(n1, axis=0)
            if name in meta.colnames:
                arr = _plain_column(meta[name])
                ds[n0:n1] = arr.astype(object) if kind == "str" else arr.astype(ds.dtype)
            else:
                ds[n0:n1] = np.full(n1 - n0, _fill_value(kind), dtype=object if kind == "str" else ds.dtype)
        g.attrs["columns"] = json.dumps(cols)

    def _append_rows(self, group: str, rows: list[dict]) -> None:
        g = self._f[group]
        k0 = int(g.attrs["n_committed"])
        k1 = k0 + len(rows)
        for name, ds in g.items():
            ds.resize(k1, axis=0)
            vals = [r.get(name, 0 if name == "n_spectra" else "") for r in rows]
            ds[k0:k1] = np.asarray(vals, dtype=np.int64) if name == "n_spectra" else np.asarray(
                [str(v) for v in vals], dtype=object)
        g.attrs["n_committed"] = k1

    def add_rejected(self, rows) -> None:
        """Record rejected files/objects: dicts (or a Table) with ``file``, ``id``, ``reason``, ``sha256``."""
        self._require_writable()
        if isinstance(rows, Table):
            rows = [dict(zip(rows.colnames, r)) for r in rows]
        rows = list(rows)
        if rows:
            self._append_rows("rejected", rows)
            self._f.flush()

    def update_provenance(self, **items) -> None:
        """Merge ``items`` into the stored provenance dict (JSON-serialisable values)."""
        self._require_writable()
        prov = self.provenance_without_inputs()
        prov.update(items)
        self._f.attrs["provenance"] = json.dumps(_jsonable(prov))
        self._f.flush()

    def finalize(self) -> Path:
        """Mark the store complete, close it and rename it to its final name (atomically)."""
        self._require_writable()
        self._f.attrs["complete"] = True
        self._f.flush()
        self._f.close()
        os.replace(self._file_path, self.path)
        self._writable = False
        self._file_path = self.path
        self._f = _h5py().File(self.path, "r", rdcc_nbytes=64 * 2**20)
        return self.path

    def abort(self, keep_partial: bool = False) -> None:
        """Stop writing; remove the partial file unless ``keep_partial`` (for a later resume)."""
        with contextlib.suppress(Exception):
            self._f.close()
        if not keep_partial and self._file_path != self.path:
            self._file_path.unlink(missing_ok=True)

    # ------------------------------------------------------------------ reading
    @property
    def n_objects(self) -> int:
        return int(self._f.attrs["n_committed"])

    def __len__(self) -> int:
        return self.n_objects

    @property
    def n_pixels(self) -> int:
        return int(self._f["wavelength"].shape[0])

    @property
    def wavelength(self):
        import astropy.units as u
        return self._f["wavelength"][...] * u.AA

    @property
    def flux_unit(self) -> str:
        return str(self._f.attrs.get("flux_unit", ""))

    @property
    def complete(self) -> bool:
        return bool(self._f.attrs.get("complete", False))

    def provenance_without_inputs(self) -> dict:
        return json.loads(self._f.attrs["provenance"])

    @property
    def provenance(self) -> dict:
        """Provenance dict, with ``inputs``: one ``{"path", "sha256", "n_spectra"}`` per input file."""
        prov = self.provenance_without_inputs()
        prov["inputs"] = [{"path": str(r["path"]), "sha256": str(r["sha256"]), "n_spectra": int(r["n_spectra"])}
                          for r in self.inputs]
        return prov

    def _group_table(self, group: str, names) -> Table:
        g = self._f[group]
        k = int(g.attrs["n_committed"])
        cols = {}
        for name in names:
            ds = g[name]
            cols[name] = ds[:k] if name == "n_spectra" else np.asarray(ds.asstr()[:k], dtype=str)
        return Table(cols)

    @property
    def inputs(self) -> Table:
        """Table of the input files (path, sha256, n_spectra)."""
        return self._group_table("inputs", _INPUT_COLUMNS)

    @property
    def input_hashes(self) -> set[str]:
        g = self._f["inputs"]
        k = int(g.attrs["n_committed"])
        return set(g["sha256"].asstr()[:k])

    @property
    def rejected(self) -> Table:
        """Table of rejected files/objects: file, id, reason, sha256."""
        return self._group_table("rejected", _REJECTED_COLUMNS)

    def _read_meta(self, sel) -> Table:
        g = self._f["meta"]
        cols = {}
        for name in self._meta_columns():
            ds = g[name]
            if ds.attrs["kind"] == "str":
                cols[name] = np.asarray(ds.asstr()[sel], dtype=str)
            else:
                cols[name] = ds[sel]
        return Table(cols)

    @property
    def meta(self) -> Table:
        """All metadata rows (read once, cached)."""
        if self._meta_cache is None:
            self._meta_cache = self._read_meta(slice(0, self.n_objects))
        return self._meta_cache

    def _history(self) -> list[dict]:
        return list(self.provenance_without_inputs().get("steps", []))

    def _rows(self, sel, meta: Table | None = None) -> Spectra:
        f = self._f
        return Spectra(f["wavelength"][...], f["flux"][sel], f["ivar"][sel], f["mask"][sel],
                       meta=self._read_meta(sel) if meta is None else meta, history=self._history(),
                       flux_unit=self.flux_unit, filled=f["filled"][sel])

    def __getitem__(self, key) -> Spectra:
        """Rows as a :class:`Spectra`: an int, a slice, an integer array or a boolean array."""
        n = self.n_objects
        if isinstance(key, (int, np.integer)):
            k = int(key)
            if not -n <= k < n:
                raise IndexError(f"row {k} is out of range for a store of {n} spectra")
            k %= n
            return self._rows(slice(k, k + 1))
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step == 1:
                return self._rows(slice(start, max(start, stop)))
            key = np.arange(start, stop, step)
        idx = np.asarray(key)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise IndexError(f"boolean index has shape {idx.shape}; expected ({n},)")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"row index out of range for a store of {n} spectra")
        idx %= max(n, 1)
        uniq, inverse = np.unique(idx, return_inverse=True)
        part = self._rows(uniq) if uniq.size else self._rows(slice(0, 0))
        return part[inverse] if uniq.size else part

    def iter_blocks(self, block_size: int = 4096) -> Iterator[Spectra]:
        """Yield consecutive row blocks as :class:`Spectra`; only one block is in memory at a time."""
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        for start in range(0, self.n_objects, block_size):
            yield self._rows(slice(start, min(start + block_size, self.n_objects)))

    def load(self) -> Spectra:
        """Read the whole store into memory."""
        return self._rows(slice(0, self.n_objects))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._f.close()

    def __enter__(self) -> SpectraStore:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._writable:
            if exc_type is None:
                self.finalize()
            else:
                # keep the partial file after Ctrl-C so the run can be resumed; drop it on errors
                self.abort(keep_partial=exc_type is KeyboardInterrupt)
                return
        self.close()

    def __repr__(self) -> str:
        w = self._f["wavelength"]
        lo, hi = float(w[0]), float(w[-1])
        state = "" if self.complete else ", writing"
        return (f"<SpectraStore {self.path.name}: {self.n_objects} spectra × {self.n_pixels} px, "
                f"{lo:.1f}–{hi:.1f} Å{state}>")


def open_store(path: str | os.PathLike) -> SpectraStore:
    """Open a complete :class:`SpectraStore` for lazy reading."""
    return SpectraStore(path)


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_store(path: str | os.PathLike) -> bool:
    """True if ``path`` is an HDF5 file (what :func:`ingest` writes), judged by its signature, not its name."""
    path = Path(path)
    if not path.is_file():
        return False
    with open(path, "rb") as fh:
        return fh.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE
