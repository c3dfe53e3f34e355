"""Reader for wide tables: one row per object, one column per pixel, plus metadata columns.

How the wavelength grid is given
--------------------------------
*FITS binary tables, CSV and Parquet* name their pixel columns after the
wavelength (vacuum Å, observed frame): ``flux_<wavelength>``, for example
``flux_4000.5``, ``flux_4001.42``. Optional ``ivar_<wavelength>`` and
``mask_<wavelength>`` columns (same wavelengths, any order) give the inverse
variance (default 1) and a bad-pixel flag (non-zero / true = bad). Every other
column is metadata (``id``, ``z``, ``ra``, ``dec``, ``class``, ...). The table
is the first table HDU for FITS.

*``.npz`` archives* hold arrays: ``flux`` (N, M); the grid as ``wavelength``
(M,) in Å or ``loglam`` (M,) = log10(Å); optional ``ivar`` and ``mask`` (N, M);
every other 1-D array of length N (for example ``id``, ``z``) becomes a
metadata column. Object arrays are skipped (the archive is opened with
``allow_pickle=False``).

In both cases a missing ``id`` becomes ``<file stem>:<row>``, and pixels with
``ivar <= 0``, a mask flag or non-finite flux are masked.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from astropy.table import Table

from .container import Spectra
from .io import SpectraReadError, register_reader, scan_fits

__all__ = ["read_table_spectra", "is_wide_table", "write_wide_table"]

_PIX_RE = re.compile(r"^(flux|ivar|mask)_([0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)$")
_EXTENSIONS = (".fits", ".fit", ".csv", ".parquet", ".pq", ".npz")


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".npz"):
        return "npz"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".fits", ".fit", ".fits.gz")):
        return "fits"
    return None


def is_wide_table(path: Path) -> bool:
    """True for ``.npz``/``.csv``/``.parquet`` files, and FITS files whose first table has ``flux_<λ>`` columns."""
    kind = _kind(path)
    if kind in ("npz", "csv", "parquet"):
        return True
    if kind == "fits":
        if path.name.lower().endswith(".gz"):
            import warnings

            from astropy.io import fits
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
                    for h in hdul[1:]:
                        if isinstance(h, (fits.BinTableHDU, fits.TableHDU)):
                            return any(_PIX_RE.match(c) and c.startswith("flux_") for c in h.columns.names)
            return False
        try:
            hdus = scan_fits(path)
        except SpectraReadError:
            return False
        for h in hdus[1:]:
            if str(h.header.get("XTENSION", "")).strip() in ("BINTABLE", "TABLE"):
                n = int(h.header.get("TFIELDS", 0))
                return any(str(h.header.get(f"TTYPE{k}", "")).strip().startswith("flux_")
                           and _PIX_RE.match(str(h.header.get(f"TTYPE{k}", "")).strip()) for k in range(1, n + 1))
    return False


def _read_npz(path: Path) -> Spectra:
    try:
        arch = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise SpectraReadError(path, f"not a readable .npz archive ({type(exc).__name__}: {exc})") from exc
    with arch:
        arrays = {}
        for k in arch.files:
            try:
                arrays[k] = arch[k]
            except ValueError:  # object arrays need pickle: skipped on purpose
                continue
    if "flux" not in arrays:
        raise SpectraReadError(path, f"the .npz archive has no 'flux' array (arrays: {', '.join(arch.files)})")
    flux = np.atleast_2d(np.asarray(arrays.pop("flux"), dtype=np.float64))
    if "wavelength" in arrays:
        wave = np.asarray(arrays.pop("wavelength"), dtype=np.float64).ravel()
    elif "loglam" in arrays:
        wave = 10.0 ** np.asarray(arrays.pop("loglam"), dtype=np.float64).ravel()
    else:
        raise SpectraReadError(path, "the .npz archive has no 'wavelength' (Å) or 'loglam' (log10 Å) array")
    ivar = arrays.pop("ivar", None)
    mask = arrays.pop("mask", None)
    n = flux.shape[0]
    meta = Table()
    for k, v in arrays.items():
        v = np.asarray(v)
        if v.ndim == 1 and v.size == n and k not in ("wavelength", "loglam"):
            meta[k] = v.astype(str) if v.dtype.kind == "S" else v
    return _finish(path, wave, flux, ivar, mask, meta, "npz")


def _read_columns(path: Path, kind: str) -> Spectra:
    try:
        if kind == "csv":
            tab = Table.read(path, format="ascii.csv", comment="#")
        elif kind == "parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError as exc:
                raise SpectraReadError(path, "reading Parquet needs pyarrow: pip install 'serendip[parquet]'") from exc
            tab = Table.read(path, format="parquet")
        else:
            tab = Table.read(path, format="fits")
    except SpectraReadError:
        raise
    except Exception as exc:
        raise SpectraReadError(path, f"not a readable {kind} table ({type(exc).__name__}: {exc})") from exc
    groups: dict[str, dict[float, str]] = {"flux": {}, "ivar": {}, "mask": {}}
    meta_cols = []
    for c in tab.colnames:
        m = _PIX_RE.match(c)
        if m:
            groups[m.group(1)][float(m.group(2))] = c
        else:
            meta_cols.append(c)
    if not groups["flux"]:
        raise SpectraReadError(path, "no pixel columns: a wide table needs columns named flux_<wavelength in Å>, "
                                     "e.g. flux_4000.5")
    wave = np.array(sorted(groups["flux"]))

    def stack(kind_: str, default):
        cols = groups[kind_]
        if not cols:
            return default
        missing = [w for w in wave if w not in cols]
        if missing:
            raise SpectraReadError(path, f"{kind_}_<λ> columns do not match the flux_<λ> columns "
                                         f"(no {kind_}_{missing[0]:g})")
        return np.column_stack([np.asarray(tab[cols[w]], dtype=np.float64) for w in wave])

    def numeric(col):
        return np.asarray(col.filled(np.nan) if hasattr(col, "filled") else col, dtype=np.float64)

    flux = np.column_stack([numeric(tab[groups["flux"][w]]) for w in wave])
    ivar = stack("ivar", None)
    mask = stack("mask", None)
    meta = tab[meta_cols] if meta_cols else Table()
    return _finish(path, wave, flux, ivar, None if mask is None else mask != 0, meta, kind)


def _finish(path, wave, flux, ivar, mask, meta, kind) -> Spectra:
    n = flux.shape[0]
    if flux.shape[1] != wave.size:
        raise SpectraReadError(path, f"flux has {flux.shape[1]} pixels but the grid has {wave.size}")
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
    return Spectra(wave[order], np.where(np.isfinite(flux), flux, 0.0)[:, order],
                   np.where(good, ivar, 0.0)[:, order], mask=~good[:, order], meta=meta,
                   history=[{"step": "read", "params": {"format": "table", "kind": kind, "file": path.name}}])


def read_table_spectra(path: str | Path) -> Spectra:
    """Read a wide table (FITS, CSV, Parquet) or an ``.npz`` archive of spectra; see the module docstring."""
    path = Path(path)
    kind = _kind(path)
    if kind == "npz":
        return _read_npz(path)
    if kind is None:
        raise SpectraReadError(path, "unknown table extension; use .fits, .csv, .parquet or .npz")
    return _read_columns(path, kind)


def write_wide_table(spectra: Spectra, path: str | Path) -> Path:
    """Write spectra as a wide table readable by :func:`read_table_spectra` (atomically).

    ``.npz`` gets arrays (``wavelength``, ``flux``, ``ivar``, ``mask`` and the
    numeric/string metadata columns); other extensions get ``flux_<λ>``,
    ``ivar_<λ>`` and ``mask_<λ>`` columns via :func:`serendip._io.write_table`.
    """
    from .._io import atomic_path, write_table

    path = Path(path)
    wave = spectra.wavelength.value
    if path.name.lower().endswith(".npz"):
        arrays = {"wavelength": wave, "flux": spectra.flux, "ivar": spectra.ivar, "mask": spectra.mask}
        for c in spectra.meta.colnames:
            v = np.asarray(spectra.meta[c])
            if v.ndim == 1 and v.dtype.kind in "biufU":
                arrays[c] = v
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
        return path
    labels = [repr(float(w)) for w in wave]
    cols = {}
    for c in spectra.meta.colnames:
        cols[c] = spectra.meta[c]
    for k, lab in enumerate(labels):
        cols[f"flux_{lab}"] = spectra.flux[:, k]
    for k, lab in enumerate(labels):
        cols[f"ivar_{lab}"] = spectra.ivar[:, k]
    for k, lab in enumerate(labels):
        cols[f"mask_{lab}"] = spectra.mask[:, k].astype(np.int8)
    return write_table(Table(cols), path)


register_reader("table", is_wide_table, read_table_spectra, _EXTENSIONS, priority=-10)
