"""Write a survey as SDSS ``spec-PLATE-MJD-FIBER.fits`` files in the real (lite) format.

Each file has the HDUs of an SDSS DR8-DR12 "lite" spectrum:

* HDU 0: primary header, no data (plate, MJD, fibre, pointing, the log-linear
  wavelength solution ``COEFF0``/``COEFF1``, ``BUNIT``, ``VACUUM``);
* HDU 1 ``COADD``: binary table with ``flux``, ``loglam``, ``ivar`` (float32,
  TFORM ``E``), ``and_mask``, ``or_mask`` (int32, ``J``), ``wdisp``, ``sky``,
  ``model`` (``E``), one row per pixel;
* HDU 2 ``SPECOBJ``: one row of the specObj table (a subset of the real
  columns with the real names and TFORMs): PLATE, MJD, FIBERID, Z, Z_ERR,
  ZWARNING, CLASS, SUBCLASS, PLUG_RA, PLUG_DEC, SN_MEDIAN_ALL, SN_MEDIAN, …

Writing 5000 files through :mod:`astropy.io.fits` object by object costs tens
of milliseconds each, so headers are rendered by astropy once per survey and
only the few cards that change per object are re-rendered; the data are the
big-endian bytes of preformatted record arrays. Each file goes through
:func:`serendip._io.atomic_path`, so an interrupted run never leaves a
truncated ``spec-*.fits``.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits

from .._io import _table_format, atomic_path, require, write_table
from .._logging import get_logger
from .._logging import progress as _progress_bar
from .._version import __version__

__all__ = ["write_sdss_files", "COADD_DTYPE", "SPECOBJ_COLUMNS", "sdss_file_name", "format_card"]

log = get_logger(__name__)

_BLOCK = 2880

#: The ``COADD`` binary-table layout of SDSS spectra (big-endian, as on disk).
COADD_DTYPE = np.dtype([("flux", ">f4"), ("loglam", ">f4"), ("ivar", ">f4"), ("and_mask", ">i4"),
                        ("or_mask", ">i4"), ("wdisp", ">f4"), ("sky", ">f4"), ("model", ">f4")])

#: specObj columns written to HDU 2: (name, numpy dtype); names, order and TFORMs as in DR8-DR12 files.
SPECOBJ_COLUMNS = (
    ("SURVEY", "S6"), ("INSTRUMENT", "S4"), ("CHUNK", "S16"), ("PROGRAMNAME", "S23"),
    ("PLATERUN", "S16"), ("PLATEQUALITY", "S8"), ("PLATESN2", ">f4"), ("SPECPRIMARY", "u1"),
    ("SPECOBJID", "S22"), ("RUN2D", "S3"), ("RUN1D", "S1"), ("SOURCETYPE", "S19"), ("TARGETTYPE", "S8"),
    ("SPECTROGRAPHID", ">i2"), ("PLATE", ">i4"), ("TILE", ">i4"), ("MJD", ">i4"), ("FIBERID", ">i4"),
    ("PLUG_RA", ">f8"), ("PLUG_DEC", ">f8"), ("CLASS", "S6"), ("SUBCLASS", "S21"), ("Z", ">f4"),
    ("Z_ERR", ">f4"), ("RCHI2", ">f4"), ("DOF", ">i4"), ("TFILE", "S24"), ("VDISP", ">f4"),
    ("VDISP_ERR", ">f4"), ("WAVEMIN", ">f4"), ("WAVEMAX", ">f4"), ("WCOVERAGE", ">f4"), ("ZWARNING", ">i4"),
    ("SN_MEDIAN_ALL", ">f4"), ("SN_MEDIAN", ">f4", (5,)), ("ANYANDMASK", ">i4"), ("ANYORMASK", ">i4"),
)

#: Approximate SDSS ugriz pass-band ranges (Å) used for ``SN_MEDIAN``.
_BANDS = ((3000.0, 4000.0), (4000.0, 5500.0), (5500.0, 6900.0), (6900.0, 8400.0), (8400.0, 9300.0))


def sdss_file_name(plate: int, mjd: int, fiber: int) -> str:
    """``spec-PLATE-MJD-FIBER.fits`` with SDSS zero padding (plate 4, mjd 5, fibre 4 digits)."""
    return f"spec-{int(plate):04d}-{int(mjd):05d}-{int(fiber):04d}.fits"


def _pad(data: bytes, fill: bytes) -> bytes:
    rem = len(data) % _BLOCK
    return data if rem == 0 else data + fill * (_BLOCK - rem)


def _header_bytes(header: fits.Header) -> bytes:
    return _pad(header.tostring().encode("ascii"), b" ")


def _specobj_id(plate, mjd, fiber, run2d=26):
    """SDSS DR8+ specObjID bit packing (plate, fibre, MJD − 50000, run2d)."""
    return ((plate.astype(np.uint64) << np.uint64(50)) | (fiber.astype(np.uint64) << np.uint64(38))
            | ((mjd.astype(np.uint64) - np.uint64(50000)) << np.uint64(24)) | (np.uint64(run2d) << np.uint64(10)))


def _band_snr(wave, flux, ivar):
    good = ivar > 0
    snr = np.abs(flux) * np.sqrt(ivar)
    out = np.zeros((flux.shape[0], 5), np.float32)
    for k, (lo, hi) in enumerate(_BANDS):
        sel = (wave >= lo) & (wave < hi)
        if not sel.any():
            continue
        v = np.where(good[:, sel], snr[:, sel], np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows -> 0
            out[:, k] = np.nan_to_num(np.nanmedian(v, axis=1), nan=0.0)
    return out


def _specobj_records(survey, rows) -> np.ndarray:
    meta = survey.spectra.meta
    wave = survey.spectra.wavelength.value
    flux = survey.spectra.flux[rows]
    ivar = survey.spectra.ivar[rows]
    rec = np.zeros(len(rows), dtype=[(c[0], c[1], c[2]) if len(c) == 3 else c for c in SPECOBJ_COLUMNS])
    plate = np.asarray(meta["plate"][rows], dtype=np.int64)
    mjd = np.asarray(meta["mjd"][rows], dtype=np.int64)
    fiber = np.asarray(meta["fiberid"][rows], dtype=np.int64)
    good = ivar > 0
    rec["SURVEY"] = b"sdss"
    rec["INSTRUMENT"] = b"SDSS"
    rec["CHUNK"] = b"serendip-sim"
    rec["PROGRAMNAME"] = b"serendip synthetic"
    rec["PLATERUN"] = b"serendip-sim"
    rec["PLATEQUALITY"] = b"good"
    rec["PLATESN2"] = 20.0
    rec["SPECPRIMARY"] = 1
    rec["SPECOBJID"] = np.char.encode(np.char.rjust(_specobj_id(plate, mjd, fiber).astype(str), 22), "ascii")
    rec["RUN2D"] = b"26"
    rec["SOURCETYPE"] = b"GALAXY"
    rec["TARGETTYPE"] = b"SCIENCE"
    rec["SPECTROGRAPHID"] = np.where(fiber <= 320, 1, 2)
    rec["PLATE"] = plate
    rec["TILE"] = plate + 1000
    rec["MJD"] = mjd
    rec["FIBERID"] = fiber
    rec["PLUG_RA"] = np.asarray(meta["ra"][rows], dtype=np.float64)
    rec["PLUG_DEC"] = np.asarray(meta["dec"][rows], dtype=np.float64)
    rec["CLASS"] = np.char.encode(np.asarray(meta["class"][rows]).astype(str), "ascii")
    rec["SUBCLASS"] = np.char.encode(np.asarray(meta["subclass"][rows]).astype(str), "ascii")
    rec["Z"] = np.asarray(meta["z"][rows], dtype=np.float64)
    rec["Z_ERR"] = np.asarray(meta["z_err"][rows], dtype=np.float64)
    chi = (flux - survey.model[rows]) * np.sqrt(ivar)
    dof = good.sum(axis=1)
    rec["RCHI2"] = np.where(dof > 0, (chi**2 * good).sum(axis=1) / np.maximum(dof, 1), 0.0)
    rec["DOF"] = dof
    rec["TFILE"] = b"spEigenGal-53724.fits"
    if "sigma_v" in survey.truth.colnames:
        sv = np.nan_to_num(np.asarray(survey.truth["sigma_v"][rows], dtype=np.float64), nan=0.0)
        rec["VDISP"] = sv
        rec["VDISP_ERR"] = np.where(sv > 0, 10.0, 0.0)
    first = np.argmax(good, axis=1)
    last = good.shape[1] - 1 - np.argmax(good[:, ::-1], axis=1)
    rec["WAVEMIN"] = wave[first]
    rec["WAVEMAX"] = wave[last]
    rec["WCOVERAGE"] = np.log10(wave[last] / wave[first])
    rec["ZWARNING"] = np.asarray(meta["zwarning"][rows]) if "zwarning" in meta.colnames else 0
    rec["SN_MEDIAN_ALL"] = np.asarray(meta["snr"][rows], dtype=np.float64)
    rec["SN_MEDIAN"] = _band_snr(wave, flux, ivar)
    flags = survey.spectra.flags[rows] if survey.spectra.flags is not None else np.zeros(flux.shape, np.int64)
    rec["ANYANDMASK"] = np.bitwise_or.reduce(flags.astype(np.int32), axis=1)
    rec["ANYORMASK"] = np.bitwise_or.reduce(survey.or_mask[rows].astype(np.int32), axis=1)
    return rec


def format_card(key: str, value, comment: str = "") -> str:
    """Render one 80-character FITS header card for a bool, int, float or short string value.

    A fast equivalent of ``astropy.io.fits.Card(key, value, comment).image`` for
    the simple values the writer needs (astropy's is ~0.1 ms a card).
    """
    if isinstance(value, (bool, np.bool_)):
        v = f"{'T' if value else 'F':>20}"
    elif isinstance(value, (int, np.integer)):
        v = f"{int(value):>20d}"
    elif isinstance(value, (float, np.floating)):
        text = repr(float(value)).upper()
        if "." not in text and "E" not in text:
            text += ".0"
        if "E" in text:
            mant, exp = text.split("E")
            if "." not in mant:
                mant += ".0"
            sign = "-" if exp.startswith("-") else "+"
            text = f"{mant}E{sign}{exp.lstrip('+-').zfill(2)}"
        v = f"{text:>20}"
    elif isinstance(value, str):
        quoted = "'" + value.replace("'", "''").ljust(8) + "'"
        v = f"{quoted:<20}"
    else:
        raise TypeError(f"format_card cannot render {type(value).__name__} values (key {key})")
    image = f"{key:<8}= {v}"
    if comment:
        image += f" / {comment}"
    if len(image) > 80:
        if len(f"{key:<8}= {v}") > 80:
            raise ValueError(f"FITS card {key} is too long: {value!r}")
        image = image[:80]
    return image.ljust(80)


class _PrimaryTemplate:
    """The primary header rendered once; per-object cards are re-rendered into fixed slots."""

    PER_OBJECT = ("MJD", "MJDLIST", "PLATEID", "TILEID", "NAME", "RA", "DEC", "RADEG", "DECDEG",
                  "PLUG_RA", "PLUG_DEC", "FIBERID", "SPEC_ID")

    def __init__(self, coeff0: float, provenance: dict):
        h = fits.Header()
        h["TELESCOP"] = ("SDSS 2.5-M", "Sloan Digital Sky Survey (synthetic data)")
        h["FLAVOR"] = ("science", "exposure type, SDSS spectro style")
        for key in self.PER_OBJECT:
            h[key] = (0, "")
        h["EQUINOX"] = (2000.0, "")
        h["RADECSYS"] = ("FK5", "")
        h["EXPTIME"] = (2700.0, "Minimum of exposure times for all cameras")
        h["VACUUM"] = (True, "Wavelengths are in vacuum")
        h["WFITTYPE"] = ("LOG-LINEAR", "Linear-log10 dispersion")
        h["COEFF0"] = (round(float(coeff0), 6), "Central wavelength (log10) of first pixel")
        h["COEFF1"] = (1e-4, "Log10 dispersion per pixel")
        h["DC-FLAG"] = (1, "Log-linear flag")
        h["BUNIT"] = ("1E-17 erg/cm^2/s/Ang", "Units of flux")
        h["HELIO_RV"] = (0.0, "Heliocentric correction (added to velocities)")
        h["ORIGIN"] = ("serendip", "Written by serendip.datasets.write_sdss_files")
        h["SIMVERS"] = (__version__, "serendip version that simulated these data")
        h["SIMSEED"] = (int(provenance.get("parameters", {}).get("seed", -1)), "make_survey seed")
        h["COMMENT"] = "SYNTHETIC spectrum from serendip.datasets.make_survey; not an observation."
        self.header = h
        full = fits.PrimaryHDU(header=h).header
        full["NAXIS"] = 0
        self.cards = [c.image for c in full.cards]
        self.slots = {key: i for i, c in enumerate(full.cards) if (key := c.keyword) in self.PER_OBJECT}
        self.comments = {"MJD": "MJD of observation", "MJDLIST": "", "PLATEID": "Plate Id",
                         "TILEID": "Tile Id", "NAME": "Name of target; PlateId-MJD-Mapper ReRun",
                         "RA": "Right ascension of telescope boresight (deg)",
                         "DEC": "Declination of telescope boresight (deg)", "RADEG": "Right Ascension. (degrees)",
                         "DECDEG": "Declination. (degrees)", "PLUG_RA": "RA of object (deg)",
                         "PLUG_DEC": "Dec of object (deg)", "FIBERID": "Fiber ID (1-640)",
                         "SPEC_ID": "Spectrograph ID (1 or 2)"}

    def render(self, values: dict) -> bytes:
        cards = list(self.cards)
        for key, value in values.items():
            cards[self.slots[key]] = format_card(key, value, self.comments[key])
        text = "".join(cards) + "END".ljust(80)
        return _pad(text.encode("ascii"), b" ")


def write_sdss_files(survey, folder, progress: bool = True, *, truth_name: str = "truth.ecsv") -> list[Path]:
    """Write every spectrum of ``survey`` as ``spec-PLATE-MJD-FIBER.fits`` plus the truth table.

    Parameters
    ----------
    survey : SyntheticSurvey
        From :func:`serendip.datasets.make_survey`.
    folder : path-like
        Output folder (created). Existing files with the same names are replaced.
    progress : bool
        Show a progress bar.
    truth_name : str
        File name of the truth table written beside the spectra (ECSV by default, which
        ``serendip ingest`` does not take for a spectra file; FITS, CSV,
        ECSV or Parquet by extension; provenance kept in its metadata).

    Returns
    -------
    list of Path
        The spectrum files, in survey order (the truth table is not listed).
    """
    t0 = time.perf_counter()
    folder = Path(folder)
    # check the truth table's name before anything is written: a bad one must not leave the spectra
    # without their truth
    if Path(truth_name).name != str(truth_name) or not str(truth_name):
        raise ValueError(f"truth_name must be a plain file name inside the folder; got {truth_name!r}")
    if _table_format(folder / truth_name) == "parquet":
        require("pyarrow", "parquet", f"writing {truth_name}")
    folder.mkdir(parents=True, exist_ok=True)
    spectra = survey.spectra
    n, m = spectra.flux.shape
    loglam = np.log10(spectra.wavelength.value)
    if not np.allclose(np.diff(loglam), 1e-4, rtol=1e-4, atol=0):
        raise ValueError("write_sdss_files needs spectra on the SDSS log10 grid with step 1e-4")
    meta = spectra.meta
    for col in ("plate", "mjd", "fiberid", "z", "ra", "dec", "class"):
        if col not in meta.colnames:
            raise ValueError(f"survey.spectra.meta lacks the column {col!r} needed for SDSS files")

    prim = _PrimaryTemplate(loglam[0], getattr(survey, "meta", {}) or {})
    coadd_row = np.zeros(m, dtype=COADD_DTYPE)
    coadd_hdu = fits.BinTableHDU(coadd_row, name="COADD")
    coadd_hdu.header.add_comment("Coadded spectrum")
    coadd_head = _header_bytes(coadd_hdu.header)
    spec_rec0 = _specobj_records(survey, np.arange(min(n, 1)))
    spec_hdu = fits.BinTableHDU(spec_rec0, name="SPECOBJ")
    spec_hdu.header.add_comment("Metadata from specObj row")
    spec_head = _header_bytes(spec_hdu.header)

    sky = np.asarray(survey.sky, dtype=np.float32)
    sky_scale = (np.asarray(survey.truth["sky_scale"], dtype=np.float32) if "sky_scale" in survey.truth.colnames
                 else np.ones(n, np.float32))
    flags = spectra.flags if spectra.flags is not None else np.zeros((n, m), np.int64)
    paths = []
    block = 256
    bar = _progress_bar(total=n, desc="writing spec-*.fits", enabled=progress, unit="file")
    try:
        for b0 in range(0, n, block):
            rows = np.arange(b0, min(n, b0 + block))
            data = np.zeros((rows.size, m), dtype=COADD_DTYPE)
            data["flux"] = spectra.flux[rows]
            data["loglam"] = loglam[None, :]
            data["ivar"] = spectra.ivar[rows]
            data["and_mask"] = flags[rows]
            data["or_mask"] = survey.or_mask[rows]
            data["wdisp"] = survey.wdisp[None, :]
            data["sky"] = sky[None, :] * sky_scale[rows, None]
            data["model"] = survey.model[rows]
            recs = _specobj_records(survey, rows)
            for j, i in enumerate(rows):
                plate, mjd, fiber = int(meta["plate"][i]), int(meta["mjd"][i]), int(meta["fiberid"][i])
                head = prim.render({
                    "MJD": mjd, "MJDLIST": str(mjd), "PLATEID": plate, "TILEID": plate + 1000,
                    "NAME": f"{plate:04d}-{mjd:05d}-01", "RA": float(meta["ra"][i]), "DEC": float(meta["dec"][i]),
                    "RADEG": float(meta["ra"][i]), "DECDEG": float(meta["dec"][i]),
                    "PLUG_RA": float(meta["ra"][i]), "PLUG_DEC": float(meta["dec"][i]),
                    "FIBERID": fiber, "SPEC_ID": 1 if fiber <= 320 else 2})
                payload = b"".join((head, coadd_head, _pad(data[j].tobytes(), b"\0"),
                                    spec_head, _pad(recs[j:j + 1].tobytes(), b"\0")))
                path = folder / sdss_file_name(plate, mjd, fiber)
                with atomic_path(path) as tmp:
                    with open(tmp, "wb") as fh:
                        fh.write(payload)
                paths.append(path)
            bar.update(rows.size)
    finally:
        bar.close()
    truth = survey.truth.copy(copy_data=False)
    truth.meta.update(getattr(survey, "meta", {}) or {})
    truth["file"] = [p.name for p in paths]
    write_table(truth, folder / truth_name)
    written = {p.name for p in paths}
    others = sorted(p.name for p in folder.glob("spec-*.fits") if p.name not in written)
    if others:
        log.warning("%s already held %d other spec-*.fits file(s) (e.g. %s) that %s does not describe; "
                    "write each survey to its own folder, or ingesting the folder mixes them",
                    folder, len(others), others[0], truth_name)
    log.info("wrote %d SDSS-format files to %s in %.1f s", n, folder, time.perf_counter() - t0)
    return paths
