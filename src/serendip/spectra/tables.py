"""Reader and writer for wide tables of spectra: one row per object, plus metadata columns.

Layouts
-------
*CSV and Parquet* (and FITS tables made by hand) give one column per pixel,
named after the wavelength (vacuum Å, observed frame unless the table says
otherwise, see below): ``flux_<wavelength>``, for example ``flux_4000.5``,
``flux_4001.42``. Optional ``ivar_<wavelength>`` and ``mask_<wavelength>``
columns (same wavelengths, any order) give the inverse variance (default 1) and
a bad-pixel flag (non-zero / true = bad). Every other column is metadata
(``id``, ``z``, ``ra``, ``dec``, ``class``, ...). For FITS the table is the
first table HDU.

*FITS files written by* :func:`write_wide_table` hold a binary table HDU
``SPECTRA`` with one row per object: the metadata columns and the array
columns ``flux`` and ``ivar`` (M values per row) and ``mask`` (non-zero = bad),
and an image HDU ``WAVELENGTH`` with the M wavelengths in Å. (A FITS table has
at most 999 columns, so one column per pixel cannot hold more than 333 pixels.)

*``.npz`` archives* hold arrays: ``flux`` (N, M); the grid as ``wavelength``
(M,) in Å or ``loglam`` (M,) = log10(Å); optional ``ivar`` and ``mask`` (N, M);
every other 1-D array of length N (for example ``id``, ``z``) becomes a
metadata column. Object arrays are skipped and their names logged (the
archive is opened with ``allow_pickle=False``).

In all layouts a missing ``id`` becomes ``<file stem>:<row>``, and pixels with
``ivar <= 0``, a mask flag or non-finite flux are masked.

Blank and non-numeric cells
---------------------------
A blank cell in a pixel column is a missing value: a blank flux or ivar masks
that pixel, a blank mask flag marks it bad. This holds whatever the type of the
column, so a blank in a column of whole numbers behaves like one in a column of
decimals; likewise an integer metadata column with blanks becomes a float
column, masked (NaN) where blank, exactly like a float column with blanks. A
cell that is not a number raises :class:`~serendip.spectra.io.SpectraReadError`
naming the file, the column and the row.

Provenance and the rest frame
-----------------------------
:func:`write_wide_table` stores the spectra's processing ``history``, flux unit
and ``rest_frame`` flag (true when the history has a ``deredshift`` step) in
the table's metadata: a ``# serendip-meta: {...}`` comment line in CSV, the
``SERENDIP`` keyword of HDU ``SPECTRA`` in FITS, the table metadata in
Parquet, a ``serendip_meta`` string array in ``.npz``. The reader puts that
history back (earlier steps first, then the ``read`` step) together with the
flux unit.

A rest-frame table keeps its real redshifts in ``z``; its restored history
(with the ``deredshift`` step) and the ``read`` step's ``frame="rest"`` say
that the wavelengths are already rest-frame, and
:func:`serendip.spectra.ingest.ingest` does not de-redshift such spectra a
second time.
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
from astropy.table import MaskedColumn, Table

from .._logging import get_logger
from .container import Spectra
from .io import SpectraReadError, open_fits, read_fits_bytes, register_reader, scan_fits

__all__ = ["read_table_spectra", "is_wide_table", "write_wide_table"]

log = get_logger(__name__)

#: pixel columns; FITS column names are case-insensitive, so FLUX_4000.0 counts too
_PIX_RE = re.compile(r"^(flux|ivar|mask)_([0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)$", re.IGNORECASE)
#: a name shaped like a pixel column with some other prefix (a misspelling such as "flx_4000.5")
_NEAR_PIX_RE = re.compile(r"^[A-Za-z]+_([0-9]+(?:\.[0-9]*)?)$")
_EXTENSIONS = (".fits", ".fit", ".fits.gz", ".fit.gz", ".csv", ".parquet", ".pq", ".npz")
_TABLE_TAG = "serendip wide spectra table"
_FORMAT_VERSION = 2
_FITS_TABLE_HDU = "SPECTRA"
_FITS_WAVE_HDU = "WAVELENGTH"
_NPZ_META_KEY = "serendip_meta"
_ARRAY_COLUMNS = ("flux", "ivar", "mask")
_TRUE_WORDS = {"true", "t", "yes", "y"}
_FALSE_WORDS = {"false", "f", "no", "n"}


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".npz"):
        return "npz"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".fits", ".fit", ".fits.gz", ".fit.gz")):
        return "fits"
    return None


def _fits_layout(hdus) -> tuple[str, int] | None:
    """``("columns" | "arrays", HDU index)`` of the first table HDU if it holds spectra, else None."""
    names = [h.name for h in hdus]
    for h in hdus[1:]:
        if str(h.header.get("XTENSION", "")).strip() not in ("BINTABLE", "TABLE"):
            continue
        ttypes = [str(h.header.get(f"TTYPE{k}", "")).strip() for k in range(1, int(h.header.get("TFIELDS", 0)) + 1)]
        if any(t.lower().startswith("flux_") and _PIX_RE.match(t) for t in ttypes):
            return "columns", h.index
        if "flux" in (t.lower() for t in ttypes) and _FITS_WAVE_HDU in names:
            return "arrays", h.index
        return None  # only the first table counts
    return None


def is_wide_table(path: Path) -> bool:
    """True for ``.npz``/``.csv``/``.parquet`` files, and FITS files whose first table holds spectra.

    A FITS table holds spectra when it has ``flux_<λ>`` columns, or a ``flux``
    array column next to a ``WAVELENGTH`` HDU (the layout :func:`write_wide_table` writes).
    """
    kind = _kind(path)
    if kind in ("npz", "csv", "parquet"):
        return True
    if kind == "fits":
        try:
            return _fits_layout(scan_fits(path)) is not None
        except SpectraReadError:
            return False
    return False


# ---------------------------------------------------------------------- cells to numbers
def _float_values(path: Path, col, name: str, where: str = "", *, flag_words: bool = False) -> np.ndarray:
    """A table column as float64, blank (masked or empty) cells as NaN.

    Parameters
    ----------
    path : Path
        The file, for error messages.
    col : Column, MaskedColumn or ndarray
        1-D, or 2-D for an array column (one row per object).
    name : str
        The column's name, for error messages.
    where : str
        Where the column is (for example ``" of HDU 'SPECTRA'"``), for error messages.
    flag_words : bool
        Also accept ``true``/``false`` (``t``/``f``, ``yes``/``no``) text, as 1/0 (mask columns).

    Raises
    ------
    SpectraReadError
        A cell that is not a number; the message names the column and the row.
    """
    data = np.ma.getdata(col)
    blank = np.ma.getmaskarray(col)
    kind = data.dtype.kind
    if kind in "biuf":
        values = data.astype(np.float64)
    elif kind in "USO":
        text = np.char.strip(data.astype(str))
        blank = blank | (text == "")
        if flag_words:
            lower = np.char.lower(text)
            text = np.where(np.isin(lower, list(_TRUE_WORDS)), "1", np.where(np.isin(lower, list(_FALSE_WORDS)), "0",
                                                                          text))
        try:
            values = np.where(blank, "nan", text).astype(np.float64)
        except ValueError as exc:
            flat_text, flat_blank = text.ravel(), blank.ravel()
            per_row = max(1, flat_text.size // max(1, len(data)))
            for i, (t, b) in enumerate(zip(flat_text, flat_blank)):
                if b:
                    continue
                try:
                    float(t)
                except ValueError:
                    pos = f"row {i // per_row + 1}" + (f", element {i % per_row + 1}" if data.ndim > 1 else "")
                    raise SpectraReadError(path, f"column {name!r}{where}: {pos} holds {str(t)!r}, which is not a "
                                                 "number") from None
            raise SpectraReadError(path, f"column {name!r}{where} holds values that are not numbers ({exc})") from exc
    else:
        raise SpectraReadError(path, f"column {name!r}{where} holds {data.dtype} values, not numbers")
    if blank.any():
        values[blank] = np.nan
    return values


def _mask_values(path: Path, col, name: str, where: str = "") -> np.ndarray:
    """A mask column as bool: non-zero or true = bad, and a blank cell = bad."""
    values = _float_values(path, col, name, where, flag_words=True)
    return np.isnan(values) | (values != 0)


def _float_meta_for_blanks(meta: Table) -> Table:
    """Integer metadata columns with blank cells become float columns, masked (NaN) where blank."""
    for c in meta.colnames:
        col = meta[c]
        if isinstance(col, MaskedColumn) and col.dtype.kind in "iu" and np.any(col.mask):
            blank = np.array(col.mask, dtype=bool)
            values = np.ma.getdata(col).astype(np.float64)
            values[blank] = np.nan
            meta[c] = MaskedColumn(values, mask=blank, name=c, unit=col.unit, description=col.description)
    return meta


# ---------------------------------------------------------------------- provenance in the table metadata
def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _table_info(spectra: Spectra) -> dict:
    """What :func:`write_wide_table` records about the spectra besides the numbers."""
    from .._version import __version__

    history = json.loads(json.dumps(spectra.history, default=_json_default))
    rest = any(h.get("step") == "deredshift" for h in history if isinstance(h, dict))
    return {"serendip_table": _TABLE_TAG, "format_version": _FORMAT_VERSION, "serendip_version": __version__,
            "rest_frame": rest, "frame": "rest" if rest else "observed", "wavelength_unit": "Angstrom (vacuum)",
            "flux_unit": spectra.flux_unit, "n_objects": int(spectra.n_objects), "n_pixels": int(spectra.n_pixels),
            "history": history}


def _decode_info(path: Path, text, where: str) -> dict:
    """The dict stored by :func:`write_wide_table` from its JSON text; {} for other tables' metadata."""
    if text is None or text == "":
        return {}
    try:
        info = json.loads(text) if isinstance(text, str) else dict(text)
    except (ValueError, TypeError) as exc:
        log.warning("%s: the serendip metadata in %s is not valid JSON (%s); the table's processing history and "
                    "frame are unknown, its wavelengths are taken as observed-frame", path, where, exc)
        return {}
    if not isinstance(info, dict) or info.get("serendip_table") != _TABLE_TAG:
        return {}  # metadata of some other table (for example a results table written by serendip)
    return info


def _table_meta_info(path: Path, tab: Table, kind: str) -> dict:
    """The dict :func:`write_wide_table` stored in a table's metadata ({} for other tables)."""
    if kind == "csv":
        for line in tab.meta.get("comments", []) or []:
            text = str(line).strip()
            if text.startswith("serendip-meta:"):
                return _decode_info(path, text[len("serendip-meta:"):].strip(), "the '# serendip-meta:' line")
        return {}
    if kind == "fits":
        return _decode_info(path, tab.meta.get("SERENDIP"), "the SERENDIP header keyword")
    return _decode_info(path, dict(tab.meta), "the Parquet table metadata")  # stored natively


def _apply_info(info: dict) -> tuple[list[dict], str | None, dict]:
    """Restore history and flux unit, and say whether the table is in the rest frame.

    Returns
    -------
    history : list of dict
        The steps applied before the table was written.
    flux_unit : str or None
    read_params : dict
        Extra parameters for the ``read`` step (``frame="rest"`` for a rest-frame table).
    """
    history = [copy.deepcopy(h) for h in info.get("history", []) or []
               if isinstance(h, dict) and isinstance(h.get("step"), str)]
    shifted = any(h["step"] == "deredshift" for h in history)
    rest = bool(info["rest_frame"]) if "rest_frame" in info else shifted
    flux_unit = info.get("flux_unit") if isinstance(info.get("flux_unit"), str) else None
    if rest and not shifted:
        history.append({"step": "deredshift", "params": {"note": "recorded as rest-frame by the table's writer"}})
    return history, flux_unit, ({"frame": "rest"} if rest else {})


# ---------------------------------------------------------------------- readers
def _read_npz(path: Path) -> Spectra:
    try:
        arch = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise SpectraReadError(path, f"not a readable .npz archive ({type(exc).__name__}: {exc})") from exc
    if not hasattr(arch, "files"):
        raise SpectraReadError(path, "holds a single .npy array, not an .npz archive of named arrays")
    arrays = {}
    skipped = []
    with arch:
        names = list(arch.files)
        for k in names:
            try:
                arrays[k] = arch[k]
            except ValueError as exc:  # object arrays need pickle: skipped on purpose
                if "allow_pickle" not in str(exc):
                    raise SpectraReadError(path, f"array {k!r} cannot be read ({exc})") from exc
                skipped.append(k)
            except Exception as exc:  # a damaged member of the zip archive
                raise SpectraReadError(path, f"array {k!r} cannot be read ({type(exc).__name__}: {exc})") from exc
    if skipped:
        log.info("%s: skipped object array(s) %s (they would need pickle, which is never enabled)", path,
                 ", ".join(repr(k) for k in skipped))
    if "flux" not in arrays:
        why = f"; object arrays {skipped} are skipped" if "flux" in skipped else ""
        raise SpectraReadError(path, f"the .npz archive has no 'flux' array (arrays: {', '.join(names)}){why}")
    info = _decode_info(path, str(arrays.pop(_NPZ_META_KEY)) if _NPZ_META_KEY in arrays else None,
                        f"the {_NPZ_META_KEY!r} array")

    def as_float(key):
        return np.asarray(_float_values(path, np.asarray(arrays.pop(key)), key, " of the .npz archive"))

    flux = np.atleast_2d(as_float("flux"))
    if "wavelength" in arrays:
        wave = as_float("wavelength").ravel()
    elif "loglam" in arrays:
        wave = 10.0 ** as_float("loglam").ravel()
    else:
        raise SpectraReadError(path, "the .npz archive has no 'wavelength' (Å) or 'loglam' (log10 Å) array")
    ivar = as_float("ivar") if "ivar" in arrays else None
    mask = arrays.pop("mask", None)
    if mask is not None and mask.dtype.kind != "b":
        mask = _mask_values(path, mask, "mask", " of the .npz archive")
    n = flux.shape[0]
    meta = Table()
    for k, v in arrays.items():
        v = np.asarray(v)
        if v.ndim == 1 and v.size == n and k not in ("wavelength", "loglam"):
            meta[k] = np.char.decode(v, "utf-8", "replace") if v.dtype.kind == "S" else v
    history, flux_unit, extra = _apply_info(info)
    return _finish(path, wave, flux, ivar, mask, meta, "npz", history=history, flux_unit=flux_unit,
                   read_params=extra)


def _read_fits_table(path: Path) -> tuple[Table, np.ndarray | None, str]:
    """The first table HDU of a FITS file (checked for truncation) and, for the array layout, the grid."""
    data = read_fits_bytes(path) if path.name.lower().endswith(".gz") else None
    layout = _fits_layout(scan_fits(path, data=data))
    if layout is None:
        raise SpectraReadError(path, "no table of spectra: the first table HDU needs flux_<wavelength> columns, "
                                     f"or a 'flux' array column and a {_FITS_WAVE_HDU!r} HDU")
    how, index = layout
    with open_fits(path, data=data) as hdul:
        try:
            tab = Table.read(hdul[index])
        except Exception as exc:
            raise SpectraReadError(path, f"HDU {index} ({hdul[index].name or 'unnamed'}) is not a readable table "
                                         f"({type(exc).__name__}: {exc})") from exc
        hdu_name = hdul[index].name or str(index)
        wave = None
        if how == "arrays":
            w = hdul[_FITS_WAVE_HDU].data
            if w is None:
                raise SpectraReadError(path, f"HDU {_FITS_WAVE_HDU!r} is empty")
            wave = _float_values(path, np.asarray(w).ravel(), "data", f" of HDU {_FITS_WAVE_HDU!r}")
    return tab, wave, hdu_name


def _from_array_columns(path: Path, tab: Table, wave: np.ndarray, hdu_name: str):
    """Flux, ivar, mask and metadata from the ``flux``/``ivar``/``mask`` array columns of one FITS table."""
    where = f" of HDU {hdu_name!r}"
    names = {c.lower(): c for c in tab.colnames}
    n = len(tab)

    def column(key, convert):
        if key not in names:
            return None
        values = convert(path, tab[names[key]], names[key], where)
        if values.ndim == 1 and wave.size == 1:
            values = values[:, np.newaxis]
        if values.ndim != 2 or values.shape != (n, wave.size):
            per_row = values.shape[1:] if values.ndim > 1 else "one value"
            raise SpectraReadError(path, f"column {names[key]!r}{where} holds {per_row} per row but HDU "
                                         f"{_FITS_WAVE_HDU!r} has {wave.size} wavelengths")
        return values

    flux = column("flux", _float_values)
    ivar = column("ivar", _float_values)
    mask = column("mask", _mask_values)
    meta_cols = [c for c in tab.colnames if c.lower() not in _ARRAY_COLUMNS]
    meta = tab[meta_cols] if meta_cols else Table()
    return flux, ivar, mask, meta


def _from_pixel_columns(path: Path, tab: Table, where: str = ""):
    """Grid, flux, ivar, mask and metadata from ``flux_<λ>``/``ivar_<λ>``/``mask_<λ>`` columns."""
    groups: dict[str, dict[float, str]] = {"flux": {}, "ivar": {}, "mask": {}}
    meta_cols = []
    for c in tab.colnames:
        m = _PIX_RE.match(c)
        if m:
            w = float(m.group(2))
            kind = m.group(1).lower()
            if w in groups[kind]:
                raise SpectraReadError(path, f"columns {groups[kind][w]!r} and {c!r}{where} are the same "
                                             "wavelength")
            groups[kind][w] = c
        else:
            meta_cols.append(c)
    if not groups["flux"]:
        raise SpectraReadError(path, "no pixel columns: a wide table needs columns named flux_<wavelength in Å>, "
                                     "e.g. flux_4000.5")
    wave = np.array(sorted(groups["flux"]))
    # a misspelt pixel column ("flx_4000.5") would silently become metadata and leave a hole in the grid
    odd = [c for c in meta_cols if (m := _NEAR_PIX_RE.match(c)) and wave[0] <= float(m.group(1)) <= wave[-1]]
    if odd:
        log.warning("%s: column(s) %s%s look like pixel columns (a wavelength inside the grid, %g-%g Å) but are not "
                    "named flux_, ivar_ or mask_<wavelength>; they are read as metadata", path, odd[:5],
                    f" and {len(odd) - 5} more" if len(odd) > 5 else "", wave[0], wave[-1])

    def stack(kind_: str, convert):
        cols = groups[kind_]
        if not cols:
            return None
        missing = [w for w in wave if w not in cols]
        extra = [w for w in cols if w not in groups["flux"]]
        if missing or extra:
            what = f"no {kind_}_{missing[0]:g}" if missing else f"{cols[extra[0]]!r} has no flux_ column"
            raise SpectraReadError(path, f"{kind_}_<λ> columns do not match the flux_<λ> columns ({what})")
        return np.column_stack([convert(path, tab[cols[w]], cols[w], where) for w in wave])

    flux = stack("flux", _float_values)
    ivar = stack("ivar", _float_values)
    mask = stack("mask", _mask_values)
    meta = tab[meta_cols] if meta_cols else Table()
    return wave, flux, ivar, mask, meta


def ascii_str_converter():
    """astropy's ascii converter that keeps a column as text."""
    from astropy.io.ascii import convert_numpy

    return convert_numpy(str)


def _read_columns(path: Path, kind: str) -> Spectra:
    wave = None
    where = ""
    try:
        if kind == "csv":
            # ids are text: without this, '007' and '1e3' would come back as 7 and 1000.0
            tab = Table.read(path, format="ascii.csv", comment="#", converters={"id": [ascii_str_converter()]})
        elif kind == "parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError as exc:
                raise SpectraReadError(path, "reading Parquet needs pyarrow: pip install 'serendip[parquet]'") from exc
            tab = Table.read(path, format="parquet")
        else:
            tab, wave, hdu_name = _read_fits_table(path)
            where = f" of HDU {hdu_name!r}"
    except SpectraReadError:
        raise
    except Exception as exc:
        raise SpectraReadError(path, f"not a readable {kind} table ({type(exc).__name__}: {exc})") from exc
    info = _table_meta_info(path, tab, kind)
    if wave is not None:
        flux, ivar, mask, meta = _from_array_columns(path, tab, wave, hdu_name)
        if flux is None:
            raise SpectraReadError(path, f"HDU {hdu_name!r} has no 'flux' column")
    else:
        wave, flux, ivar, mask, meta = _from_pixel_columns(path, tab, where)
    meta = Table(meta, copy=True)
    meta.meta = {}
    meta = _float_meta_for_blanks(meta)
    history, flux_unit, extra = _apply_info(info)
    return _finish(path, wave, flux, ivar, mask, meta, kind, history=history, flux_unit=flux_unit,
                   read_params=extra)


def _finish(path, wave, flux, ivar, mask, meta, kind, *, history=None, flux_unit=None, read_params=None) -> Spectra:
    flux = np.atleast_2d(np.asarray(flux, dtype=np.float64))
    n = flux.shape[0]
    if flux.shape[1] != wave.size:
        raise SpectraReadError(path, f"flux has {flux.shape[1]} pixels but the grid has {wave.size}")
    if not np.all(np.isfinite(wave)):
        raise SpectraReadError(path, "the wavelength grid has NaN or infinite values")
    ivar = np.ones_like(flux) if ivar is None else np.atleast_2d(np.asarray(ivar, dtype=np.float64))
    if ivar.shape != flux.shape:
        raise SpectraReadError(path, f"ivar has shape {ivar.shape} but flux has {flux.shape}")
    good = np.isfinite(flux) & np.isfinite(ivar) & (ivar > 0)
    if mask is not None:
        mask = np.atleast_2d(np.asarray(mask)).astype(bool)
        if mask.shape != flux.shape:
            raise SpectraReadError(path, f"mask has shape {mask.shape} but flux has {flux.shape}")
        good &= ~mask
    if not good.any():
        raise SpectraReadError(path, "no finite pixels")
    order = np.argsort(wave)
    if np.any(np.diff(wave[order]) <= 0):
        raise SpectraReadError(path, "the wavelength grid has repeated values")
    stem = path.name.split(".")[0]
    meta = Table(meta, copy=True)
    if len(meta.colnames) and len(meta) != n:
        raise SpectraReadError(path, f"{len(meta)} rows of metadata for {n} spectra")
    if "id" not in meta.colnames:
        meta["id"] = [f"{stem}:{k}" for k in range(n)]
    else:
        meta["id"] = np.asarray(meta["id"]).astype(str)
    for col, default in (("z", np.nan), ("ra", np.nan), ("dec", np.nan), ("snr", np.nan)):
        if col not in meta.colnames:
            meta[col] = np.full(n, default)
    if "class" not in meta.colnames:
        meta["class"] = np.full(n, "")
    meta["source_file"] = np.full(n, path.name)
    meta = meta[["id"] + [c for c in meta.colnames if c != "id"]]
    steps = list(history or [])
    steps.append({"step": "read", "params": {"format": "table", "kind": kind, "file": path.name,
                                             **(read_params or {})}})
    extra = {} if flux_unit is None else {"flux_unit": flux_unit}
    return Spectra(wave[order], np.where(np.isfinite(flux), flux, 0.0)[:, order],
                   np.where(good, ivar, 0.0)[:, order], mask=~good[:, order], meta=meta, history=steps, **extra)


def read_table_spectra(path: str | Path) -> Spectra:
    """Read a wide table (FITS, CSV, Parquet) or an ``.npz`` archive of spectra; see the module docstring.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    Spectra
        On the table's own grid; ``history`` starts with the steps recorded by
        :func:`write_wide_table`, if any, then the ``read`` step.

    Raises
    ------
    SpectraReadError
        Unknown extension, unreadable or truncated file, no pixel columns, a
        cell that is not a number (the column and row are named), inconsistent
        shapes, or no finite pixel.
    """
    path = Path(path)
    kind = _kind(path)
    if kind == "npz":
        return _read_npz(path)
    if kind is None:
        raise SpectraReadError(path, "unknown table extension; use .fits, .csv, .parquet or .npz")
    return _read_columns(path, kind)


# ---------------------------------------------------------------------- writer
def _plain_meta(spectra: Spectra, path: Path, reserved) -> dict[str, np.ndarray]:
    """Metadata columns as plain 1-D arrays, blanks kept (NaN for numbers, "" for text)."""
    out = {}
    for c in spectra.meta.colnames:
        if c in reserved:
            raise ValueError(f"cannot write {path}: the metadata column {c!r} has the name of a pixel array; "
                             "rename it first")
        col = spectra.meta[c]
        data = np.ma.getdata(col)
        blank = np.ma.getmaskarray(col)
        if data.dtype.kind == "O" or data.dtype.kind == "S":
            data = np.array([v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in data.ravel()],
                            dtype=str).reshape(data.shape)
        if blank.any():
            if data.dtype.kind in "biuf":
                data = data.astype(np.float64)
                data[blank] = np.nan
            else:
                data = np.where(blank, "", data.astype(str))
        out[c] = np.asarray(data)
    return out


def write_wide_table(spectra: Spectra, path: str | Path) -> Path:
    """Write spectra as a table readable by :func:`read_table_spectra` (atomically).

    Parameters
    ----------
    spectra : Spectra
    path : path-like
        The extension chooses the layout:

        - ``.npz``: arrays ``wavelength``, ``flux``, ``ivar``, ``mask`` and the
          1-D metadata columns;
        - ``.fits``, ``.fit``, ``.fits.gz``: a binary table HDU ``SPECTRA``, one
          row per object, with the metadata columns and array columns ``flux``,
          ``ivar`` (float32) and ``mask`` (uint8, 1 = bad), plus an image HDU
          ``WAVELENGTH`` (Å). One column per pixel would exceed FITS's limit
          of 999 columns beyond 333 pixels;
        - ``.csv``, ``.parquet``, ``.pq``: one column per pixel, ``flux_<λ>``,
          ``ivar_<λ>`` and ``mask_<λ>``, via :func:`serendip._io.write_table`
          (CSV files get large: prefer ``.npz``, FITS or Parquet for many pixels).

        In every layout the table metadata records the history, the flux unit
        and ``rest_frame`` (see the module docstring), so that reading the table
        back neither loses the provenance nor de-redshifts rest-frame spectra twice.

    Returns
    -------
    Path

    Raises
    ------
    ValueError
        An extension not listed above, a metadata column named like a pixel
        array, or (FITS) text that is not ASCII.
    """
    from .._io import atomic_path, write_table

    path = Path(path)
    kind = _kind(path)
    if kind is None:
        raise ValueError(f"cannot write spectra to {path}: use .npz, .fits, .fits.gz, .csv or .parquet")
    info = _table_info(spectra)
    wave = spectra.wavelength.value
    if kind == "npz":
        arrays = {"wavelength": wave, "flux": spectra.flux, "ivar": spectra.ivar, "mask": spectra.mask}
        for c, v in _plain_meta(spectra, path, set(arrays) | {_NPZ_META_KEY, "loglam"}).items():
            if v.ndim == 1:
                arrays[c] = v
            else:
                log.warning("%s: metadata column %r has shape %s; .npz keeps only 1-D metadata columns, so it is "
                            "not written (use .fits or .parquet)", path, c, v.shape)
        arrays[_NPZ_META_KEY] = np.array(json.dumps(info, default=_json_default))
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
        return path
    if kind == "fits":
        return _write_fits(spectra, path, info)
    labels = [repr(float(w)) for w in wave]
    cols = _plain_meta(spectra, path, {f"{k}_{lab}" for k in _ARRAY_COLUMNS for lab in labels})
    for k, lab in enumerate(labels):
        cols[f"flux_{lab}"] = spectra.flux[:, k]
    for k, lab in enumerate(labels):
        cols[f"ivar_{lab}"] = spectra.ivar[:, k]
    for k, lab in enumerate(labels):
        cols[f"mask_{lab}"] = spectra.mask[:, k].astype(np.int8)
    table = Table(cols)
    table.meta = info
    return write_table(table, path)


def _write_fits(spectra: Spectra, path: Path, info: dict) -> Path:
    """The FITS layout of :func:`write_wide_table`: HDU ``SPECTRA`` (array columns) and HDU ``WAVELENGTH``."""
    from astropy.io import fits

    from .._io import atomic_path

    cols = _plain_meta(spectra, path, {c for c in _ARRAY_COLUMNS} | {c.upper() for c in _ARRAY_COLUMNS})
    for c, v in cols.items():
        if v.dtype.kind == "U" and v.size and not all(str(x).isascii() for x in v.ravel()):
            raise ValueError(f"cannot write {path}: the metadata column {c!r} has non-ASCII text, which FITS "
                             "tables cannot hold; write .csv, .parquet or .npz instead")
    table = Table(cols)
    table["flux"] = spectra.flux.astype(np.float32)
    table["ivar"] = spectra.ivar.astype(np.float32)
    table["mask"] = spectra.mask.astype(np.uint8)
    hdu = fits.table_to_hdu(table)
    hdu.name = _FITS_TABLE_HDU
    hdu.header["SERENDIP"] = json.dumps(info, default=_json_default)
    hdu.header["FRAME"] = (info["frame"], "wavelength frame of HDU WAVELENGTH")
    wave_hdu = fits.ImageHDU(np.asarray(spectra.wavelength.value, dtype=np.float64), name=_FITS_WAVE_HDU)
    wave_hdu.header["BUNIT"] = ("Angstrom", "vacuum wavelength")
    wave_hdu.header["FRAME"] = (info["frame"], "rest or observed frame")
    with atomic_path(path) as tmp:
        fits.HDUList([fits.PrimaryHDU(), hdu, wave_hdu]).writeto(tmp)
    return path


register_reader("table", is_wide_table, read_table_spectra, _EXTENSIONS, priority=-10)
