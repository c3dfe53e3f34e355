"""Reader for SDSS/BOSS ``spec-PLATE-MJD-FIBER.fits`` files (full and lite).

What is read
------------
* HDU ``COADD`` (HDU 1): ``flux`` (1e-17 erg/s/cm²/Å), ``loglam`` (log10 of
  the *vacuum* wavelength in Å), ``ivar`` and ``and_mask``. The wavelength grid
  is ``10**loglam``; ``and_mask`` becomes ``Spectra.flags`` so that
  :func:`serendip.spectra.mask_pixels` can choose bits later. At read time
  only ``ivar <= 0`` and non-finite flux/ivar are masked.
* HDU 2 (``SPECOBJ`` in DR8-DR12 files, ``SPALL`` in DR13+): one row of
  redshift and target metadata, mapped to the ``meta`` columns

  ======================  =====================================================
  meta column             SDSS column
  ======================  =====================================================
  ``id``                  ``spec-PLATE-MJD-FIBER`` (zero-padded like the file name)
  ``ra``, ``dec``         ``PLUG_RA``, ``PLUG_DEC`` (degrees)
  ``z``, ``z_err``        ``Z``, ``Z_ERR``
  ``zwarning``            ``ZWARNING``
  ``class``, ``subclass`` ``CLASS``, ``SUBCLASS`` (stripped strings)
  ``plate``, ``mjd``,     ``PLATE``, ``MJD``, ``FIBERID``
  ``fiberid``
  ``snr``                 ``SN_MEDIAN_ALL`` (median S/N per pixel, all pixels);
                          falls back to the median of ``SN_MEDIAN`` (per band)
  ``specobjid``           ``SPECOBJID`` when present (string)
  ``source_file``         the file name
  ======================  =====================================================

  If HDU 2 is missing, empty (zero rows) or unreadable, plate/mjd/fiber come
  from the primary header (``PLATEID``, ``MJD``, ``FIBERID``) or the file name,
  the redshift columns are NaN (ingest in the rest frame then rejects the
  file), and a warning names the file and the reason.

``.fits.gz`` files are decompressed once and checked: a gzip stream cut short
is reported as a truncated file, not as a missing HDU.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .._logging import get_logger
from .container import Spectra
from .io import SpectraReadError, fits_hdu_names, read_bintable_columns, read_fits_bytes, register_reader, scan_fits

__all__ = ["read_sdss_spec", "is_sdss_spec"]

log = get_logger(__name__)

_NAME_RE = re.compile(r"spec-(\d+)-(\d+)-(\d+)", re.IGNORECASE)
_FITS_EXT = (".fits", ".fit", ".fits.gz", ".fit.gz")
#: HDU names of SDSS/BOSS spec files after COADD.
_SDSS_HDUS = ("SPECOBJ", "SPALL", "SPZLINE", "SPZBEST", "ZBEST", "ZLINE")


def is_sdss_spec(path: Path) -> bool:
    """True for a FITS file whose HDU 1 is ``COADD`` (or a ``spec-*.fits`` name with a FITS header)."""
    names = fits_hdu_names(path, max_hdus=2)
    if names is not None and len(names) > 1:
        # readable HDU names decide: COADD, or another SDSS HDU where COADD is missing (then the reader
        # says so); a serendip wide table named spec-*.fits (SPECTRA, WAVELENGTH) is a table
        return names[1] == "COADD" or (bool(_NAME_RE.match(path.name)) and names[1] in _SDSS_HDUS)
    # a spec-*.fits file whose HDUs cannot be listed (damaged) still belongs to this reader, so that
    # the error says what is wrong (truncated, missing HDU) rather than "unknown format"
    return bool(_NAME_RE.match(path.name) and path.name.lower().endswith(_FITS_EXT))


_META_COLUMNS = ("PLATE", "PLATEID", "MJD", "FIBERID", "FIBER", "PLUG_RA", "PLUG_DEC", "RA", "DEC", "Z", "Z_ERR",
                 "ZWARNING", "CLASS", "SUBCLASS", "SN_MEDIAN_ALL", "SN_MEDIAN", "SPECOBJID")


def _scalar(row, names, default=np.nan):
    for n in names:
        if n in row:
            v = row[n]
            if isinstance(v, bytes):
                v = v.decode("ascii", "replace")
            if isinstance(v, str):
                return v.strip()
            v = np.asarray(v)
            if v.ndim:
                return v
            return v.item()
    return default


def read_sdss_spec(path: str | Path) -> Spectra:
    """Read one SDSS/BOSS ``spec-*.fits`` file (full or lite) onto its native grid.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    Spectra
        One object; ``flags`` holds the SDSS ``and_mask`` (SPPIXMASK bits).

    Raises
    ------
    SpectraReadError
        Not a FITS file, truncated, no ``COADD`` HDU or a missing column, or no
        finite pixel.
    """
    path = Path(path)
    # a .gz file is decompressed once (a cut stream is reported as truncated) and then read like a plain one
    data = read_fits_bytes(path) if path.name.lower().endswith(".gz") else None
    hdus = scan_fits(path, data=data)
    names = [h.name for h in hdus]
    if "COADD" in names:
        coadd_hdu = names.index("COADD")
    elif len(names) > 1 and names[1] in ("", "COADD"):
        coadd_hdu = 1
    else:
        present = ", ".join(n or "(unnamed)" for n in names)
        raise SpectraReadError(path, f"missing HDU 'COADD' (HDUs present: {present})")
    hdr, cols = read_bintable_columns(path, coadd_hdu, ["flux", "loglam", "ivar", "and_mask"], hdus=hdus, data=data)
    for need in ("flux", "loglam", "ivar"):
        if need not in cols:
            raise SpectraReadError(path, f"HDU 'COADD' has no column {need!r}")
    if cols["flux"].size == 0:
        raise SpectraReadError(path, "HDU 'COADD' holds no pixels")
    flux = cols["flux"].astype(np.float64)
    loglam = cols["loglam"].astype(np.float64)
    ivar = cols["ivar"].astype(np.float64)
    and_mask = cols["and_mask"].astype(np.int64) if "and_mask" in cols else np.zeros(flux.shape, np.int64)
    if not np.all(np.isfinite(loglam)) or np.any(np.diff(loglam) <= 0):
        raise SpectraReadError(path, "the 'loglam' column is not finite and strictly increasing")
    good = np.isfinite(flux) & np.isfinite(ivar) & (ivar > 0)
    if not good.any():
        raise SpectraReadError(path, "no finite pixels (every pixel has ivar <= 0 or non-finite flux)")
    flux = np.where(np.isfinite(flux), flux, 0.0)
    ivar = np.where(good, ivar, 0.0)

    meta_row = None
    fallback = None  # why HDU 2 could not give the metadata, if it could not
    if coadd_hdu == 1 and len(names) > 2:
        where = f"HDU 2 ({names[2] or 'unnamed'})"
        try:
            hdr2, meta_cols = read_bintable_columns(path, 2, _META_COLUMNS, hdus=hdus, data=data)
        except (SpectraReadError, ValueError, KeyError, TypeError) as exc:
            fallback = f"{where} cannot be read: " + (
                exc.reason if isinstance(exc, SpectraReadError) else f"{type(exc).__name__}: {exc}")
        else:
            if not meta_cols:
                fallback = f"{where} has none of the expected columns (PLATE, MJD, FIBERID, Z, ...)"
            elif int(hdr2.get("NAXIS2", 0)) == 0:
                fallback = f"{where} has zero rows"
            else:
                meta_row = {k.upper(): v[0] for k, v in meta_cols.items()}
    elif coadd_hdu == 1:
        fallback = "there is no HDU 2 (SPECOBJ/SPALL)"
    if fallback is not None:
        log.warning("%s: %s; plate/mjd/fiber are taken from the primary header, the redshift is unknown (NaN)",
                    path, fallback)
    header = hdus[0].header if meta_row is None else {}

    m = _NAME_RE.match(path.name)
    plate = mjd = fiber = -1
    if m:
        plate, mjd, fiber = (int(g) for g in m.groups())
    meta = {}
    if meta_row is not None:
        plate = int(_scalar(meta_row, ["PLATE", "PLATEID"], plate))
        mjd = int(_scalar(meta_row, ["MJD"], mjd))
        fiber = int(_scalar(meta_row, ["FIBERID", "FIBER"], fiber))
        snr = _scalar(meta_row, ["SN_MEDIAN_ALL"])
        if np.ndim(snr) or not np.isfinite(snr):
            per_band = np.asarray(_scalar(meta_row, ["SN_MEDIAN"]), dtype=float)
            snr = float(np.nanmedian(per_band)) if per_band.size and np.isfinite(per_band).any() else np.nan
        meta = {
            "ra": float(_scalar(meta_row, ["PLUG_RA", "RA"])),
            "dec": float(_scalar(meta_row, ["PLUG_DEC", "DEC"])),
            "z": float(_scalar(meta_row, ["Z"])),
            "z_err": float(_scalar(meta_row, ["Z_ERR"])),
            "zwarning": int(_scalar(meta_row, ["ZWARNING"], -1)),
            "class": str(_scalar(meta_row, ["CLASS"], "")),
            "subclass": str(_scalar(meta_row, ["SUBCLASS"], "")),
            "snr": float(snr),
            "specobjid": str(_scalar(meta_row, ["SPECOBJID"], "")),
        }
    else:
        plate = int(header.get("PLATEID", plate))
        mjd = int(header.get("MJD", mjd))
        fiber = int(header.get("FIBERID", fiber))
        meta = {"ra": float(header.get("PLUG_RA", np.nan)), "dec": float(header.get("PLUG_DEC", np.nan)),
                "z": np.nan, "z_err": np.nan, "zwarning": -1, "class": "", "subclass": "", "snr": np.nan,
                "specobjid": ""}
    if plate >= 0 and mjd >= 0 and fiber >= 0:
        obj_id = f"spec-{plate:04d}-{mjd:05d}-{fiber:04d}"
    else:
        obj_id = path.name.split(".")[0]
    row = {"id": obj_id, **{k: meta[k] for k in ("ra", "dec", "z", "z_err", "zwarning", "class", "subclass")},
           "plate": plate, "mjd": mjd, "fiberid": fiber, "snr": meta["snr"], "specobjid": meta["specobjid"],
           "source_file": path.name}
    table = {k: np.array([v]) for k, v in row.items()}
    return Spectra(10.0 ** loglam, flux[np.newaxis], ivar[np.newaxis], mask=~good[np.newaxis], meta=table,
                   flags=and_mask[np.newaxis],
                   history=[{"step": "read", "params": {"format": "sdss", "file": path.name}}])


register_reader("sdss", is_sdss_spec, read_sdss_spec, _FITS_EXT)
