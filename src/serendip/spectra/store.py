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

Metadata types
--------------
Each ``/meta/<column>`` has one storage type for every row, chosen so that no
value is ever truncated or silently changed when later blocks differ from the
first one (a CSV reader, for example, calls ``z = 0, 0`` integers in one file
and ``0.0005`` floats in the next):

* floats of any width are stored as float64 (missing: NaN);
* integers are stored as int64 (uint64 when too large for int64; missing: -1)
  until a block brings floats, then the column is widened to float64 for every
  row (the integers are exact in float64 up to 2**53; rows written before the
  column existed become NaN);
* text and true/false columns keep their type;
* when a block does not fit the column in any of these ways (text in a column
  of numbers, numbers in a true/false column, integers too large for float64,
  ...) the whole column is turned into text, losslessly, and a warning says
  so, because dropping or mangling values would be worse;
* except for the columns that must stay numeric (:data:`NUMERIC_META_COLUMNS`,
  such as ``z``, plus any named by the caller): text that reads as numbers is
  converted, other text is refused with :class:`MetaTypeError` naming the
  column (:func:`serendip.spectra.ingest.ingest` then rejects just that file).

Settings
--------
When appending to a store or resuming an unfinished one, the processing
settings recorded in ``provenance["ingest"]`` (masking, frame, normalisation,
rejection thresholds, ...) and the grid must equal the new ones, otherwise
:meth:`SpectraStore.create` refuses and lists the differences, so rows made
in different ways are never mixed in one store.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.table import Table

from .._io import _jsonable
from .._logging import get_logger
from .._version import __version__
from .container import Spectra

__all__ = ["SpectraStore", "open_store", "is_store", "partial_path", "STORE_FORMAT", "MetaSchema", "MetaTypeError",
           "NUMERIC_META_COLUMNS"]

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


# ---------------------------------------------------------------------- metadata types
_EXACT_INT = 2**53  # integers up to this size are exact in float64
_INT64_MAX = np.iinfo(np.int64).max
_FILL = {"str": "", "bool": False, "int": -1, "float": np.nan}

#: Metadata columns that must stay numeric: text in one of them is refused, never stored as text.
NUMERIC_META_COLUMNS = ("z", "z_err", "ra", "dec", "snr", "masked_fraction", "norm")


class MetaTypeError(ValueError):
    """A metadata column whose values cannot be stored together with the column's earlier values.

    Parameters
    ----------
    column : str
        The column.
    problem : str
        What is wrong, as the end of a sentence starting with the column name.
    """

    def __init__(self, column: str, problem: str):
        self.column = column
        self.problem = problem
        super().__init__(f"metadata column {column!r} {problem}")


@dataclass(frozen=True)
class _ColType:
    """Storage type of one metadata column: kind, numpy dtype (None for text), largest |value| of integers."""

    kind: str
    dtype: np.dtype | None
    max_abs: float = 0.0


def _describe(kind: str, arr: np.ndarray | None = None) -> str:
    if kind == "str":
        if arr is None or not arr.size:
            return "text"
        examples = list(dict.fromkeys(str(v) for v in arr[:50]))[:3]
        return "text (e.g. " + ", ".join(repr(v) for v in examples) + ")"
    return {"bool": "true/false values", "int": "integers", "float": "numbers"}[kind]


def _max_abs(kind: str, arr: np.ndarray) -> float:
    if kind != "int" or not arr.size:
        return 0.0
    return float(np.max(np.abs(arr.astype(np.float64))))


def _block_column(name: str, col) -> tuple[str, np.ndarray]:
    """The kind and plain (unmasked) values of one metadata column of a block.

    Masked entries become NaN (floats, and integers, which then count as
    floats), "" (text) or False (true/false).
    """
    mask = np.ma.getmaskarray(col) if np.ma.isMaskedArray(col) else None
    arr = np.asarray(col)
    if arr.dtype.kind == "S":
        arr = np.char.decode(arr, "utf-8", "replace")
    elif arr.dtype.kind == "O":
        arr = arr.astype(str)
    has_mask = mask is not None and mask.shape == arr.shape and bool(mask.any())
    k = arr.dtype.kind
    if k == "U":
        arr = arr.astype(str)
        return "str", (np.where(mask, "", arr) if has_mask else arr)
    if k == "b":
        return "bool", (np.where(mask, False, arr) if has_mask else arr.astype(bool))
    if k in "iu":
        if has_mask:
            if _max_abs("int", arr[~mask]) <= _EXACT_INT:
                return "float", np.where(mask, np.nan, arr.astype(np.float64))
            return "str", np.where(mask, "", arr.astype(str))  # huge integers with gaps: text keeps them exact
        return "int", arr
    if k == "f":
        arr = arr.astype(np.float64)
        return "float", (np.where(mask, np.nan, arr) if has_mask else arr)
    raise MetaTypeError(name, f"holds values of type {arr.dtype}, which a spectra store cannot hold")


def _int_dtype(arr: np.ndarray) -> np.dtype:
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > _INT64_MAX:
        return np.dtype(np.uint64)
    return np.dtype(np.int64)


def _to_text(kind: str, arr: np.ndarray) -> np.ndarray:
    """Text form of values: floats in their shortest exact form, NaN as ""."""
    if kind == "str":
        return np.asarray(arr).astype(str)
    if kind == "float":
        return np.array(["" if np.isnan(v) else str(float(v)) for v in arr], dtype=str).reshape(arr.shape)
    if kind == "int":
        return np.array([str(int(v)) for v in arr], dtype=str).reshape(arr.shape)
    return np.array(["True" if v else "False" for v in arr], dtype=str).reshape(arr.shape)


def _parse_numbers(name: str, arr: np.ndarray) -> np.ndarray:
    """Text that must be numeric: blanks become NaN; anything else that is not a number is refused."""
    out = np.full(arr.shape, np.nan)
    bad = []
    for k, v in enumerate(arr):
        t = str(v).strip()
        if not t:
            continue
        try:
            out[k] = float(t)
        except ValueError:
            bad.append(t)
    if bad:
        shown = ", ".join(repr(b) for b in list(dict.fromkeys(bad))[:3])
        raise MetaTypeError(name, f"must hold numbers but holds text ({shown}; {len(bad)} of {arr.size} values)")
    return out


def _merge_column(name: str, stored: _ColType | None, kind: str, arr: np.ndarray,
                  numeric: bool) -> tuple[_ColType, np.ndarray, str | None]:
    """Fit a block's values into a column (see the module docstring).

    Returns the column's type afterwards, the values converted to it, and the
    action the existing rows need: None, ``"retype"`` (convert them to the new
    type). Raises MetaTypeError when a numeric column would have to become text.
    """
    if numeric and kind == "str":
        kind, arr = "float", _parse_numbers(name, arr)
    new = _ColType(kind, None if kind == "str" else (_int_dtype(arr) if kind == "int" else
                                                      np.dtype(bool) if kind == "bool" else np.dtype(np.float64)),
                   _max_abs(kind, arr))
    if stored is None:
        return new, (arr if kind == "str" else arr.astype(new.dtype)), None
    if stored.kind == "str":
        return stored, _to_text(kind, arr), None
    if kind == stored.kind and kind != "int":
        if kind == "float" and stored.dtype != np.float64:
            return new, arr, "retype"  # e.g. a float32 column of an older store: widen, never narrow
        return stored, arr.astype(stored.dtype), None
    if kind == "int" and stored.kind == "int":
        fits = (stored.dtype == new.dtype or (stored.dtype == np.uint64 and (not arr.size or arr.min() >= 0)))
        if fits:
            return _ColType("int", stored.dtype, max(stored.max_abs, new.max_abs)), arr.astype(stored.dtype), None
    if {kind, stored.kind} == {"int", "float"} or (kind == stored.kind == "int"):
        if max(stored.max_abs, new.max_abs) <= _EXACT_INT:
            action = None if stored.kind == "float" and stored.dtype == np.float64 else "retype"
            return _ColType("float", np.dtype(np.float64)), arr.astype(np.float64), action
    what = f"holds {_describe(kind, arr)} in this block but {_describe(stored.kind)} in the store's earlier rows"
    if stored.kind == kind == "int" or {kind, stored.kind} == {"int", "float"}:
        what += ", too large to share one int64, uint64 or float64 column exactly"
    if numeric:
        raise MetaTypeError(name, f"{what}, and it must stay numeric")
    return _ColType("str", None), _to_text(kind, arr), "retype"


class MetaSchema:
    """The storage type of every metadata column of a store, and how a new block of metadata fits in.

    See the module docstring for the rules. :meth:`SpectraStore.meta_schema`
    gives the schema of a store; a writer can check each input against it
    (:meth:`add`) before stacking inputs into a block, so that an input that
    cannot be stored is rejected alone.

    Parameters
    ----------
    types : dict, optional
        Column name -> type (internal).
    numeric : iterable of str
        Columns that must stay numeric, in addition to :data:`NUMERIC_META_COLUMNS`.
    """

    def __init__(self, types: dict | None = None, numeric: Iterable[str] = ()):
        self.types: dict[str, _ColType] = dict(types or {})
        self.numeric = set(NUMERIC_META_COLUMNS) | set(numeric)

    def copy(self) -> MetaSchema:
        """An independent copy."""
        return MetaSchema(self.types, self.numeric)

    def plan(self, meta: Table) -> tuple[dict, list[str]]:
        """How ``meta`` fits in, without changing the schema.

        Returns
        -------
        plan : dict
            Column -> (type afterwards, converted values, action on existing rows).
            Columns that are not 1-D are left out (with a warning).
        notes : list of str
            One line per column that has to become text.

        Raises
        ------
        MetaTypeError
            If a column cannot be stored (the message names the column).
        """
        plan, notes = {}, []
        for name in meta.colnames:
            if np.ndim(meta[name]) != 1:
                log.warning("metadata column %r is not 1-D; not stored", name)
                continue
            kind, arr = _block_column(name, meta[name])
            stored = self.types.get(name)
            t, values, action = _merge_column(name, stored, kind, arr, name in self.numeric)
            if t.kind == "str" and stored is not None and stored.kind != "str":
                notes.append(f"metadata column {name!r} holds {_describe(kind, arr)} here but "
                             f"{_describe(stored.kind)} in earlier rows: it is stored as text for every row")
            plan[name] = (t, values, action)
        return plan, notes

    def add(self, meta: Table) -> list[str]:
        """Widen the schema to hold ``meta``; returns the notes of :meth:`plan` (raises MetaTypeError)."""
        plan, notes = self.plan(meta)
        for name, (t, _, _) in plan.items():
            self.types[name] = t
        return notes

    def coerce(self, meta: Table) -> Table:
        """A copy of ``meta`` whose columns already known to the schema have their stored type (no masks)."""
        out = meta.copy(copy_data=False)
        for name in meta.colnames:
            t = self.types.get(name)
            if t is None or np.ndim(meta[name]) != 1:
                continue
            kind, arr = _block_column(name, meta[name])
            _, values, _ = _merge_column(name, t, kind, arr, name in self.numeric)
            out.replace_column(name, values)
        return out


def _absent_ranges(ds) -> list[list[int]]:
    return json.loads(ds.attrs["absent"]) if "absent" in ds.attrs else []


def _add_absent(ds, a: int, b: int) -> None:
    """Remember that rows a:b hold placeholders because their block lacked this column."""
    if b <= a:
        return
    ranges = _absent_ranges(ds)
    if ranges and ranges[-1][1] == a:
        ranges[-1][1] = b
    else:
        ranges.append([a, b])
    ds.attrs["absent"] = json.dumps(ranges)


def _absent_mask(ds, n: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    for a, b in _absent_ranges(ds):
        mask[min(a, n):min(b, n)] = True
    return mask


def _settings_value(key: str, value):
    """A setting in comparable form: mask bits by their combined value, anything else as JSON."""
    if key == "mask_bits":
        try:
            from .preprocess import and_mask_value
            return and_mask_value(value)
        except (ValueError, TypeError):
            pass
    return json.loads(json.dumps(_jsonable(value)))


class ResumeMismatchError(ValueError):
    """An unfinished store cannot be resumed: it was started with other inputs, grid or settings."""


#: ``provenance["ingest"]`` key holding a fingerprint of the run's input list (compared on resume only:
#: an append brings other inputs by design).
_INPUT_LIST_KEY = "input_list_sha256"


def _settings_differences(old: dict | None, new: dict | None, inputs: bool = False) -> list[str]:
    """Lines ``name: old → new`` for every processing setting (``provenance["ingest"]``, grid aside) that differs.

    A setting recorded on one side only (a store written by another version) is not compared. The
    input-list fingerprint is compared only with ``inputs=True`` (resuming an unfinished run).
    """
    if not isinstance(old, dict) or not isinstance(new, dict):
        return []
    lines = []
    skip = {"grid"} if inputs else {"grid", _INPUT_LIST_KEY}
    for key in sorted(set(old) & set(new) - skip):
        if _settings_value(key, old[key]) != _settings_value(key, new[key]):
            if key == _INPUT_LIST_KEY:
                lines.append("inputs: the unfinished run was started on a different list of input files")
            else:
                lines.append(f"{key}: {old[key]!r} in the store, {new[key]!r} now")
    return lines


def _grid_difference(old: np.ndarray, new: np.ndarray) -> str | None:
    if old.shape == new.shape and np.allclose(old, new, rtol=1e-12, atol=0):
        return None
    text = (f"grid: {old.size} px, {old[0]:.2f}-{old[-1]:.2f} Å in the store, "
            f"{new.size} px, {new[0]:.2f}-{new[-1]:.2f} Å now")
    if old.shape == new.shape:
        text += f" (largest difference {np.max(np.abs(old - new)):.3g} Å)"
    return text


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
            If an unfinished partial store from an interrupted run exists,
            continue it from its last committed row instead of starting over.
        compression : {None, "lzf", "gzip"}
            HDF5 compression of the pixel datasets (off by default: fastest).

        Raises
        ------
        FileExistsError
            If ``path`` exists and ``if_exists="error"``.
        ValueError
            When appending to ``path`` or resuming its unfinished partial store
            with a different grid or different processing settings
            (``provenance["ingest"]``, compared item by item): the message lists
            each difference, old and new. Rows made in different ways are never
            mixed in one store; rebuild it (``if_exists="overwrite"``), write a
            new one, or, for an unfinished one, pass ``resume=False`` to discard it.
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
        new_settings = (provenance or {}).get("ingest")
        tmp = partial_path(path)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        if resume and tmp.exists():
            try:
                store = cls(tmp, _mode="r+", _final_path=path)
            except (OSError, ValueError, KeyError) as exc:
                log.warning("cannot resume the unfinished store %s (%s); starting over", tmp, exc)
            else:
                try:
                    diffs = store._differences(grid, new_settings, inputs=True)
                except (OSError, ValueError, KeyError) as exc:
                    store._f.close()
                    log.warning("cannot resume the unfinished store %s (%s); starting over", tmp, exc)
                else:
                    if diffs:
                        store._f.close()
                        raise ResumeMismatchError(
                            f"cannot resume the unfinished store {tmp}: it was started with different settings "
                            "(" + "; ".join(diffs) + "). Re-run with the same inputs and settings to resume it, or start over "
                            "(resume=False; CLI: --no-resume), which discards it")
                    store._truncate_to_committed()
                    log.info("resuming %s from %d committed rows", tmp, store.n_objects)
                    return store
        if tmp.exists():
            tmp.unlink()
        if path.exists() and if_exists == "append":
            with cls(path) as existing:  # check before copying a possibly large store
                diffs = existing._differences(grid, new_settings)
            if diffs:
                raise ValueError(f"cannot append to {path}: its rows were made with different settings ("
                                 + "; ".join(diffs) + "). Mixing them would give rows that cannot be compared: "
                                 "use the store's settings, rebuild it (if_exists='overwrite'; CLI: --overwrite), "
                                 "or write a new store")
            shutil.copy2(path, tmp)
            store = cls(tmp, _mode="r+", _final_path=path)
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
            ds = self._f["meta"][col]
            ds.resize(n, axis=0)
            ranges = [[a, min(b, n)] for a, b in _absent_ranges(ds) if a < n]
            if "absent" in ds.attrs:
                ds.attrs["absent"] = json.dumps(ranges)
        for group in ("inputs", "rejected"):
            g = self._f[group]
            k = int(g.attrs["n_committed"])
            for ds in g.values():
                ds.resize(k, axis=0)
        self._f.attrs["complete"] = False
        self._f.flush()

    def _differences(self, grid: np.ndarray, settings: dict | None, inputs: bool = False) -> list[str]:
        """How ``grid`` and processing ``settings`` differ from this store's (see :meth:`create`).

        ``inputs=True`` (resuming) also compares the fingerprint of the input list.
        """
        diffs = []
        g = _grid_difference(self._f["wavelength"][...], grid)
        if g:
            diffs.append(g)
        diffs += _settings_differences(self.provenance_without_inputs().get("ingest"), settings, inputs=inputs)
        return diffs

    # ------------------------------------------------------------------ writing
    def _require_writable(self):
        if not self._writable:
            raise ValueError(f"{self.path} was opened read-only; use SpectraStore.create(...) to write")

    def append(self, spectra: Spectra, *, inputs: list[dict] | None = None,
               numeric_columns: Iterable[str] = ()) -> tuple[int, int]:
        """Add rows (and, optionally, the input files they came from) and commit them.

        Parameters
        ----------
        spectra : Spectra
            On exactly the store's grid.
        inputs : list of dict, optional
            ``{"path", "sha256", "n_spectra"}`` for each input file these rows
            came from. An input whose SHA-256 is already in the store is refused
            (ValueError), so the same file can never be added twice.
        numeric_columns : iterable of str
            Metadata columns that must stay numeric, besides
            :data:`NUMERIC_META_COLUMNS` (see "Metadata types" in the module docstring).

        Returns
        -------
        (start, stop) : the row range written.

        Raises
        ------
        ValueError
            Wrong grid, a flux unit other than the stored rows', or an input
            already stored; :class:`MetaTypeError` (a
            ValueError) if a metadata column cannot be stored. Nothing is
            written in these cases.
        """
        self._require_writable()
        grid = self._f["wavelength"][...]
        w = spectra.wavelength.value
        if w.shape != grid.shape or not np.allclose(w, grid, rtol=1e-10, atol=0):
            raise ValueError(f"these spectra are on a different grid ({w.size} px, {w[0]:.2f}-{w[-1]:.2f} Å) from "
                             f"the store ({grid.size} px, {grid[0]:.2f}-{grid[-1]:.2f} Å); resample them first")
        n_stored = int(self._f.attrs["n_committed"])
        stored_unit = str(self._f.attrs.get("flux_unit", ""))
        if n_stored and spectra.flux_unit != stored_unit:
            raise ValueError(f"these spectra's flux unit {spectra.flux_unit!r} differs from the store's "
                             f"{stored_unit!r} ({self.path}); convert or normalise them the same way first")
        if inputs:
            have = self.input_hashes
            seen = set()
            for item in inputs:
                h = item["sha256"]
                if h in have or h in seen:
                    raise ValueError(f"input {item.get('path')} (SHA-256 {h[:12]}…) is already in {self.path}; "
                                     "refusing to add its rows twice")
                seen.add(h)
        plan, _ = self.meta_schema(numeric_columns).plan(spectra.meta)  # validate before writing anything
        n0 = int(self._f.attrs["n_committed"])
        k = spectra.n_objects
        n1 = n0 + k
        for name, arr in (("flux", spectra.flux), ("ivar", spectra.ivar), ("mask", spectra.mask),
                          ("filled", spectra.filled if spectra.filled is not None
                           else np.zeros(spectra.flux.shape, bool))):
            ds = self._f[name]
            ds.resize(n1, axis=0)
            ds[n0:n1] = arr
        self._write_meta(plan, n0, n1)
        if not n_stored:  # the first rows set the unit (a normalised flux has none)
            self._f.attrs["flux_unit"] = spectra.flux_unit
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

    def meta_schema(self, numeric_columns: Iterable[str] = ()) -> MetaSchema:
        """The storage type of each metadata column, to check new metadata against (see :class:`MetaSchema`).

        Parameters
        ----------
        numeric_columns : iterable of str
            Columns that must stay numeric, besides :data:`NUMERIC_META_COLUMNS`.
        """
        g = self._f["meta"]
        n = self.n_objects
        types = {}
        for name in self._meta_columns():
            ds = g[name]
            kind = str(ds.attrs["kind"])
            max_abs = 0.0
            if kind == "int":
                max_abs = (float(ds.attrs["max_abs"]) if "max_abs" in ds.attrs
                           else _max_abs("int", ds[:n][~_absent_mask(ds, n)]))
            types[name] = _ColType(kind, None if kind == "str" else np.dtype(ds.dtype), max_abs)
        return MetaSchema(types, numeric_columns)

    def _new_meta_dataset(self, name: str, t: _ColType, n: int):
        ds = self._f["meta"].create_dataset(name, shape=(n,), maxshape=(None,), chunks=(4096,),
                                            dtype=_string_dtype() if t.kind == "str" else t.dtype)
        ds.attrs["kind"] = t.kind
        if t.kind == "int":
            ds.attrs["max_abs"] = t.max_abs
        return ds

    @staticmethod
    def _placeholders(t: _ColType, n: int) -> np.ndarray:
        if t.kind == "str":
            return np.full(n, "", dtype=object)
        return np.full(n, 0 if (t.kind == "int" and t.dtype == np.uint64) else _FILL[t.kind], dtype=t.dtype)

    def _retype_meta(self, name: str, t: _ColType, n: int) -> None:
        """Rewrite rows 0:n of a metadata column in the (wider) type ``t``; placeholders become missing values."""
        g = self._f["meta"]
        old = g[name]
        old_kind = str(old.attrs["kind"])
        absent = _absent_mask(old, n)
        tmp = f".{name}.retype"
        if tmp in g:
            del g[tmp]
        new = self._new_meta_dataset(tmp, t, n)
        step = 1 << 20
        for a in range(0, n, step):
            b = min(n, a + step)
            vals = np.asarray(old.asstr()[a:b] if old_kind == "str" else old[a:b])
            if old_kind == "float":
                vals = vals.astype(np.float64)
            _, conv, _ = _merge_column(name, t, old_kind, vals, numeric=False)
            conv = np.asarray(conv, dtype=object if t.kind == "str" else t.dtype)
            if absent[a:b].any():
                conv[absent[a:b]] = self._placeholders(t, 1)[0]
            new[a:b] = conv
        if t.kind in ("int", "bool") and absent.any():
            new.attrs["absent"] = old.attrs["absent"]
        del g[name]
        g.move(tmp, name)
        (log.warning if t.kind == "str" else log.info)(
            "metadata column %r of %s is now stored as %s for every row (was %s), so that no value is lost",
            name, self.path, "text" if t.kind == "str" else t.dtype, old.dtype)

    def _write_meta(self, plan: dict, n0: int, n1: int) -> None:
        g = self._f["meta"]
        cols = self._meta_columns()
        for name, (t, values, action) in plan.items():
            if name in g and name in cols:
                if action == "retype":
                    self._retype_meta(name, t, n0)
            else:
                if name in g:  # left over by an interrupted write
                    del g[name]
                ds = self._new_meta_dataset(name, t, n0)
                if n0:
                    ds[:] = self._placeholders(t, n0)
                    _add_absent(ds, 0, n0)
                cols.append(name)
        for name in cols:
            ds = g[name]
            ds.resize(n1, axis=0)
            if name in plan:
                t, values, _ = plan[name]
                ds[n0:n1] = values.astype(object) if t.kind == "str" else values
                if t.kind == "int":
                    ds.attrs["max_abs"] = t.max_abs
            else:
                kind = str(ds.attrs["kind"])
                ds[n0:n1] = self._placeholders(_ColType(kind, None if kind == "str" else ds.dtype), n1 - n0)
                _add_absent(ds, n0, n1)
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

    def forget_rejected(self, *, sha256s: Iterable[str] = (), files: Iterable[str] = (),
                        pairs: Iterable[tuple[str, str]] = (), before: int | None = None) -> int:
        """Remove the rejected rows of inputs that were tried again, so each rejection is listed once.

        Parameters
        ----------
        sha256s : iterable of str
            Remove rows with one of these SHA-256.
        files : iterable of str
            Remove rows without a SHA-256 (unreadable or missing inputs) for these paths.
        pairs : iterable of (str, str)
            Remove rows with exactly this (file, SHA-256).
        before : int, optional
            Only look at the first ``before`` rows (those written before the new attempt).

        Returns
        -------
        int : the number of rows removed.
        """
        self._require_writable()
        sha256s, files = set(sha256s), {str(f) for f in files}
        g = self._f["rejected"]
        k = int(g.attrs["n_committed"])
        limit = k if before is None else min(int(before), k)
        cols = {name: np.asarray(g[name].asstr()[:k], dtype=object) for name in _REJECTED_COLUMNS}
        sha = cols["sha256"].astype(str)
        drop = np.isin(sha, list(sha256s)) & (sha != "")
        names = cols["file"].astype(str)
        drop |= (sha == "") & np.isin(names, list(files))
        pairs = {(str(f), str(h)) for f, h in pairs}
        if pairs:
            drop |= np.array([(f, h) in pairs for f, h in zip(names, sha)], dtype=bool)
        drop[limit:] = False
        if not drop.any():
            return 0
        keep = ~drop
        tmp = ".rejected.new"
        if tmp in self._f:
            del self._f[tmp]
        new = self._f.create_group(tmp)
        m = int(keep.sum())
        for name in _REJECTED_COLUMNS:
            ds = new.create_dataset(name, shape=(m,), maxshape=(None,), dtype=_string_dtype(), chunks=(1024,))
            if m:
                ds[:] = cols[name][keep]
        new.attrs["n_committed"] = int(keep.sum())
        del self._f["rejected"]
        self._f.move(tmp, "rejected")
        self._f.flush()
        return int(drop.sum())

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
