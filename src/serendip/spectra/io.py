"""Reading spectra from files: a small registry of readers, one per format.

Each reader is registered with :func:`register_reader` under a format name,
together with an *identifier* (a cheap test that says whether a file looks
like that format, from its extension and, for FITS, its HDU names or table
columns) and the file extensions it usually has. :func:`read_spectra` asks
every identifier in registration order and uses the first reader that
accepts the file, unless ``format=`` names one.

Built-in formats (see :func:`supported_formats`):

``sdss``
    SDSS/BOSS ``spec-PLATE-MJD-FIBER.fits`` (full and lite), one spectrum per file.
    See :mod:`serendip.spectra.sdss`.
``manga``
    Multi-spectrum FITS with ``WAVE``/``FLUX``/``IVAR``/``MASK``/``Z`` image
    extensions (the MaNGA DAP test-spectrum layout). See :mod:`serendip.spectra.manga`.
``table``
    Wide tables (one row per object, one column per pixel) in FITS, CSV,
    Parquet, and ``.npz`` arrays. See :mod:`serendip.spectra.tables`.

Every reader returns a :class:`~serendip.spectra.Spectra` on the file's
*native* wavelength grid (observed frame, vacuum Å; a table written from
rest-frame spectra says so, see :mod:`serendip.spectra.tables`) and raises
:class:`SpectraReadError` (a ``ValueError``) naming the file and the reason when
the file is not readable: not FITS, truncated, a missing HDU or column, or no
finite pixel at all. A ``.gz`` file is decompressed with :func:`read_fits_bytes`,
which checks that the gzip stream is complete (a cut download is reported as
truncated, not read as a file with fewer HDUs).
"""
from __future__ import annotations

import gzip
import io
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .container import Spectra

__all__ = ["SpectraReadError", "register_reader", "read_spectra", "supported_formats", "identify_format",
           "read_fits_bytes"]


class SpectraReadError(ValueError):
    """A file could not be read as spectra; the message names the file and the reason.

    Attributes
    ----------
    path : str
        The offending file.
    reason : str
        A short human-readable reason (also used in ingest's ``rejected`` table).
    """

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class _Reader:
    name: str
    identifier: Callable[[Path], bool]
    reader: Callable[[Path], Spectra]
    extensions: tuple[str, ...]
    priority: int = 0


_READERS: dict[str, _Reader] = {}
_FITS_EXTENSIONS = (".fits", ".fit", ".fits.gz", ".fit.gz", ".fts")
_BUILTINS_LOADED = False


def register_reader(name: str, identifier: Callable[[Path], bool], reader: Callable[[Path], Spectra],
                    extensions=(), *, overwrite: bool = False, priority: int = 0) -> None:
    """Register a reader for a spectra file format.

    Parameters
    ----------
    name : str
        Format name, used by ``read_spectra(path, format=name)``.
    identifier : callable ``(Path) -> bool``
        Returns True when a file looks like this format. It must be cheap
        (extension, FITS HDU names, table column names) and must not raise:
        exceptions are treated as "no".
    reader : callable ``(Path) -> Spectra``
        Reads the file onto its native grid; raises :class:`SpectraReadError`.
    extensions : sequence of str
        Usual file extensions (``".fits"``, ``".csv"``, ...), listed in error messages.
    overwrite : bool
        Replace an existing reader of the same name instead of raising.
    priority : int
        Identifiers are asked in order of decreasing priority, then
        registration order. The catch-all ``table`` reader has priority -10 so
        that specific formats are recognised first.
    """
    if not _LOADING_BUILTINS:
        _load_builtins()  # first, so that a replacement of a built-in reader is not undone by its later loading
    if not overwrite and name in _READERS:
        raise ValueError(f"a reader named {name!r} is already registered; pass overwrite=True to replace it")
    _READERS[name] = _Reader(name, identifier, reader, tuple(e.lower() for e in extensions), int(priority))


_LOADING_BUILTINS = False


def _load_builtins() -> None:
    global _BUILTINS_LOADED, _LOADING_BUILTINS
    if not _BUILTINS_LOADED and not _LOADING_BUILTINS:
        _LOADING_BUILTINS = True
        try:
            from . import manga, sdss, tables  # noqa: F401  (they register themselves)
        finally:
            _LOADING_BUILTINS = False
        _BUILTINS_LOADED = True


def supported_formats() -> dict[str, tuple[str, ...]]:
    """Return ``{format name: extensions}`` of every registered reader."""
    _load_builtins()
    return {r.name: r.extensions for r in _READERS.values()}


def _describe_supported() -> str:
    return "; ".join(f"{name} ({', '.join(ext) or 'any extension'})" for name, ext in supported_formats().items())


def identify_format(path: str | os.PathLike) -> str:
    """Return the name of the first registered format whose identifier accepts ``path``.

    Raises
    ------
    SpectraReadError
        If no reader recognises the file; the message lists the supported formats.
    """
    _load_builtins()
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise SpectraReadError(path, "empty file (0 bytes)")
    for r in sorted(_READERS.values(), key=lambda r: -r.priority):  # stable: registration order within a priority
        try:
            ok = bool(r.identifier(path))
        except Exception:  # identifiers must not raise; treat as "not mine"
            ok = False
        if ok:
            return r.name
    if path.name.lower().endswith(_FITS_EXTENSIONS):
        # a damaged FITS file (truncated download, bad gzip stream) is often not recognised by any
        # identifier: say what is wrong with it rather than "unknown format"
        check_fits_structure(path)  # raises with the precise reason (truncated, not FITS, ...)
        if fits_hdu_names(path) is None:
            raise SpectraReadError(path, "not a FITS file (missing or damaged FITS header)")
    raise SpectraReadError(path, f"unknown or unreadable spectra format; supported formats: {_describe_supported()}")


def read_spectra(path: str | os.PathLike, format: str | None = None) -> Spectra:
    """Read one file of spectra onto its native wavelength grid.

    Parameters
    ----------
    path : path-like
        The file.
    format : str, optional
        A registered format name (see :func:`supported_formats`); detected from
        the file's content and extension when omitted.

    Returns
    -------
    Spectra
        One row per object in the file (one for an SDSS ``spec-*.fits``), on the
        file's own observed-frame grid, with ``meta['source_file']`` set.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    SpectraReadError
        If the format is unknown (the message lists the supported ones) or the
        file is damaged (the message says what is wrong).
    """
    _load_builtins()
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such spectra file: {path}")
    if path.is_dir():
        raise SpectraReadError(path, "is a folder, not a file (ingest accepts folders; read_spectra reads one file)")
    if format is None:
        format = identify_format(path)
    elif format not in _READERS:
        raise ValueError(f"unknown spectra format {format!r}; supported formats: {_describe_supported()}")
    try:
        spectra = _READERS[format].reader(path)
    except SpectraReadError:
        raise
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise SpectraReadError(path, f"cannot be read as {format}: {exc}") from exc
    return spectra


# ---------------------------------------------------------------------- helpers for readers
def fits_hdu_names(path: Path, max_hdus: int | None = None) -> list[str] | None:
    """Upper-case HDU names of a FITS file, or None if it is not a readable FITS file.

    Only the headers are read (astropy opens lazily), and at most ``max_hdus`` of them.
    """
    import warnings

    from astropy.io import fits

    if not path.name.lower().endswith(".gz"):
        try:
            return [h.name for h in scan_fits(path, max_hdus=max_hdus)]
        except (SpectraReadError, OSError):
            return None
    try:
        with open(path, "rb") as fh:
            if fh.read(6) != b"SIMPLE":
                # gzip-compressed FITS starts with the gzip magic number
                fh.seek(0)
                if fh.read(2) != b"\x1f\x8b":
                    return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
                if max_hdus is None:
                    return [h.name.upper() for h in hdul]
                names = []
                for k in range(max_hdus):
                    try:
                        names.append(hdul[k].name.upper())
                    except IndexError:
                        break
                return names
    except Exception:
        return None


def read_fits_bytes(path: Path) -> bytes:
    """Return the whole (decompressed) content of a FITS file, checking a gzip stream is complete.

    Plain files are read as they are. Gzip files (``.gz``) are decompressed in
    one pass with :mod:`gzip`, which verifies that the stream reaches its
    end-of-stream marker and that the CRC-32 and length in the trailer match:
    astropy on its own stops quietly at the end of a cut stream and returns the
    HDUs it found, so a truncated download would read as a file with fewer HDUs.

    Parameters
    ----------
    path : Path

    Returns
    -------
    bytes
        The FITS bytes (decompressed for ``.gz``).

    Raises
    ------
    SpectraReadError
        Empty file, not gzip although named ``.gz``, a gzip stream that ends
        early (truncated) or fails its checksum (corrupted).
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise SpectraReadError(path, "empty file (0 bytes)")
    if not path.name.lower().endswith(".gz"):
        return path.read_bytes()
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic != b"\x1f\x8b":
        raise SpectraReadError(path, "not a gzip file although its name ends in .gz (no gzip signature)")
    try:
        with gzip.open(path, "rb") as fh:
            data = fh.read()
    except EOFError as exc:
        raise SpectraReadError(path, "truncated gzip file: the compressed stream ends before its end-of-stream "
                                     "marker (incomplete download or copy?)") from exc
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise SpectraReadError(path, f"corrupted gzip file ({exc})") from exc
    if not data:
        raise SpectraReadError(path, "empty gzip file (it decompresses to 0 bytes)")
    return data


def open_fits(path: Path, *, data: bytes | None = None):
    """Open a FITS file fully (verifying it is complete), or raise :class:`SpectraReadError`.

    The file's HDU structure is first checked with :func:`scan_fits` (every
    header has an ``END`` card, every HDU's data is present); a ``.gz`` file is
    decompressed once with :func:`read_fits_bytes`, which detects a cut or
    corrupted gzip stream. Then astropy reads every HDU's data.

    Parameters
    ----------
    path : Path
    data : bytes, optional
        The file's content from :func:`read_fits_bytes`, when the caller already has it.

    Returns
    -------
    astropy.io.fits.HDUList
        With all data loaded; the caller closes it.

    Raises
    ------
    SpectraReadError
        Empty, not FITS, truncated or corrupted (the message says which and names the file).
    """
    import warnings

    from astropy.io import fits

    path = Path(path)
    gz = path.name.lower().endswith(".gz")
    if data is None and gz:
        data = read_fits_bytes(path)
    scan_fits(path, data=data)  # precise structural errors: truncated data, missing END, not FITS
    hdul = None
    error = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            hdul = fits.open(io.BytesIO(data) if data is not None else path, memmap=False)
            for h in hdul:  # force reading all data now: truncated files fail here, not later
                _ = h.data
        except Exception as exc:
            error = exc
    for w in caught:
        text = str(w.message)
        if "truncated" in text or "Header size is not multiple" in text or "corrupted" in text:
            if hdul is not None:
                hdul.close()
            raise SpectraReadError(path, f"truncated or corrupted FITS file ({text.splitlines()[0]})") from error
    if error is not None:
        if hdul is not None:
            hdul.close()
        raise SpectraReadError(path, f"not a readable FITS file ({type(error).__name__}: {error})") from error
    return hdul


_TFORM_RE = __import__("re").compile(r"^\s*(\d*)([LXBIJKAEDCMPQ])")
_TFORM_DTYPES = {"L": "S1", "B": "u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8", "C": ">c8",
                 "M": ">c16"}
_TFORM_SIZES = {"L": 1, "B": 1, "I": 2, "J": 4, "K": 8, "A": 1, "E": 4, "D": 8, "C": 8, "M": 16, "P": 8, "Q": 16}
_BLOCK = 2880


class _LazyHeader(dict):
    """Header keywords whose values are parsed from the card text only when asked for."""

    def __getitem__(self, key):
        value = dict.__getitem__(self, key)
        if isinstance(value, _RawCard):
            value = _card_value(value.text)
            dict.__setitem__(self, key, value)
        return value

    def get(self, key, default=None):
        return self[key] if key in self else default

    def items(self):
        return ((k, self[k]) for k in self.keys())

    def values(self):
        return (self[k] for k in self.keys())


class _RawCard:
    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


@dataclass
class FitsHDUInfo:
    """Where one HDU of an uncompressed FITS file lies, from :func:`scan_fits`."""

    index: int
    name: str
    header: dict
    data_start: int
    data_size: int


def _card_value(text: str):
    text = text.strip()
    if text.startswith("'"):
        end = text.find("'", 1)
        while end != -1 and end + 1 < len(text) and text[end + 1] == "'":  # escaped quote
            end = text.find("'", end + 2)
        return text[1:end if end != -1 else None].replace("''", "'").rstrip()
    value = text.split("/", 1)[0].strip()
    if value == "T":
        return True
    if value == "F":
        return False
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value.replace("D", "E"))
    except ValueError:
        return value


def _zeros_to_end(fh) -> bool:
    """Whether everything from the file position to the end is zero bytes (read in 1 MiB pieces)."""
    first = fh.read(_BLOCK)
    if not first or first.strip(b"\0"):
        return False
    while piece := fh.read(1 << 20):
        if piece.strip(b"\0"):
            return False
    return True


def scan_fits(path: Path, max_hdus: int | None = None, *, data: bytes | None = None) -> list[FitsHDUInfo]:
    """Walk the HDUs of an uncompressed FITS file by reading its headers only.

    A small, fast header parser (astropy's full header machinery costs tens of
    milliseconds per SDSS file). It checks the structure as it goes.

    Parameters
    ----------
    path : Path
        The file (named in error messages; read unless ``data`` is given).
    max_hdus : int, optional
        Stop after this many HDUs.
    data : bytes, optional
        The FITS content already in memory, for example a decompressed ``.gz``
        file from :func:`read_fits_bytes`; offsets in the result refer to it.

    Raises
    ------
    SpectraReadError
        Empty file, no FITS header, a size that is not a whole number of
        2880-byte blocks, a header without ``END``, or data running past the
        end of the file (truncated).
    """
    if data is None and path.name.lower().endswith(".gz"):
        data = read_fits_bytes(path)
    size = path.stat().st_size if data is None else len(data)
    if size == 0:
        raise SpectraReadError(path, "empty file (0 bytes)")
    out: list[FitsHDUInfo] = []
    with (open(path, "rb") if data is None else io.BytesIO(data)) as fh:
        if fh.read(30)[:9] != b"SIMPLE  =":
            raise SpectraReadError(path, "not a FITS file (missing or damaged FITS header)")
        if size % _BLOCK:
            raise SpectraReadError(path, f"truncated FITS file: {size} bytes is not a multiple of the 2880-byte "
                                         "FITS block")
        pos = 0
        while pos < size and (max_hdus is None or len(out) < max_hdus):
            fh.seek(pos)
            if out and _zeros_to_end(fh):  # trailing zero padding after the last HDU (astropy accepts it)
                break
            fh.seek(pos)
            header = _LazyHeader()
            ended = False
            while not ended:
                block = fh.read(_BLOCK)
                if len(block) < _BLOCK:
                    raise SpectraReadError(path, f"truncated FITS file: header of HDU {len(out)} has no END card")
                pos += _BLOCK
                for k in range(0, _BLOCK, 80):
                    card = block[k:k + 80].decode("ascii", "replace")
                    key = card[:8].strip()
                    if key == "END":
                        ended = True
                        break
                    if card[8:10] == "= " and key not in header:
                        dict.__setitem__(header, key, _RawCard(card[10:]))
            if not out and header.get("SIMPLE") is not True:
                raise SpectraReadError(path, "not a FITS file (SIMPLE is not T)")
            if out and "XTENSION" not in header:
                if any(b != 0 for b in fh.read(min(_BLOCK, size - pos))):
                    raise SpectraReadError(path, f"corrupted FITS file: HDU {len(out)} has no XTENSION keyword")
                break  # trailing zero padding
            naxis = int(header.get("NAXIS", 0))
            n_elem = 0
            if naxis:
                n_elem = 1
                for a in range(1, naxis + 1):
                    n_elem *= int(header.get(f"NAXIS{a}", 0))
            if header.get("GROUPS") is True and header.get("NAXIS1") == 0:
                n_elem = n_elem  # random groups: not used for spectra
            n_bytes = abs(int(header.get("BITPIX", 8))) // 8 * int(header.get("GCOUNT", 1)) * (
                int(header.get("PCOUNT", 0)) + n_elem)
            name = str(header.get("EXTNAME", "PRIMARY" if not out else "")).strip().upper()
            out.append(FitsHDUInfo(len(out), name, header, pos, n_bytes))
            padded = -(-n_bytes // _BLOCK) * _BLOCK
            if pos + n_bytes > size:
                raise SpectraReadError(path, f"truncated FITS file: HDU {len(out) - 1} ({name or 'unnamed'}) needs "
                                             f"{n_bytes} bytes of data after byte {pos} but the file has {size} bytes")
            pos += padded
    return out


def check_fits_structure(path: Path) -> list[str]:
    """Check that a FITS file is complete (every HDU's data present); return its HDU names.

    Uses :func:`scan_fits`, on the decompressed content for gzip files (a cut or
    corrupted gzip stream is reported as such by :func:`read_fits_bytes`).
    """
    return [h.name for h in scan_fits(path)]


def read_bintable_columns(path: Path, hdu: int | str, names=None, *, hdus: list[FitsHDUInfo] | None = None,
                          data: bytes | None = None):
    """Read chosen columns of a FITS binary table quickly, without building every column.

    astropy builds a ``Column`` object for each of the hundreds of columns of an
    SDSS ``SPALL`` HDU (about 0.1 s per file); this reads the raw rows once
    and views only the wanted columns (decoded to native byte order, ``TSCAL``
    / ``TZERO`` applied, strings stripped). Gzip files are decompressed (and
    checked for truncation) by :func:`read_fits_bytes` unless ``data`` is given.

    Parameters
    ----------
    path : Path
    hdu : int or str
        HDU index or ``EXTNAME``.
    names : iterable of str, optional
        Columns to return (case-insensitive); missing ones are simply absent
        from the result. ``None``: all columns.
    hdus : list of FitsHDUInfo, optional
        The result of :func:`scan_fits`, to avoid scanning twice (for a gzip
        file, the scan of the same ``data``).
    data : bytes, optional
        The file's content from :func:`read_fits_bytes`, to avoid reading or
        decompressing it again.

    Returns
    -------
    header : dict
        The HDU's header keywords.
    columns : dict
        ``{lower-case name: ndarray}``; a table with zero rows gives arrays of length 0.

    Raises
    ------
    SpectraReadError
        Missing HDU, not a binary table, an unsupported or inconsistent column
        layout, or truncated data (the message names the file, the HDU and, where
        it applies, the column).
    """
    import numpy as np

    want = None if names is None else {n.lower() for n in names}
    if data is None and path.name.lower().endswith(".gz"):
        data = read_fits_bytes(path)  # offsets from scan_fits of a .gz file refer to this content
    if hdus is None:
        hdus = scan_fits(path, data=data)
    if isinstance(hdu, str):
        matches = [h for h in hdus if h.name == hdu.upper()]
        if not matches:
            raise SpectraReadError(path, f"missing HDU {hdu!r}")
        info = matches[0]
    else:
        if hdu >= len(hdus):
            raise SpectraReadError(path, f"missing HDU {hdu} (the file has {len(hdus)})")
        info = hdus[hdu]
    header = info.header
    if str(header.get("XTENSION", "")).strip() != "BINTABLE":
        raise SpectraReadError(path, f"HDU {hdu!r} is not a binary table")
    try:
        row_bytes = int(header["NAXIS1"])
        n_rows = int(header["NAXIS2"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SpectraReadError(path, f"HDU {hdu!r}: damaged header (NAXIS1/NAXIS2 missing or not integers)") from exc
    size = row_bytes * n_rows
    if data is None:
        with open(path, "rb") as fh:
            fh.seek(info.data_start)
            raw = fh.read(size)
    else:
        raw = memoryview(data)[info.data_start:info.data_start + size]
    if len(raw) < size:
        raise SpectraReadError(path, f"truncated FITS file: HDU {hdu!r} needs {size} bytes of data, "
                                     f"{len(raw)} are present")
    out = {}
    offset = 0
    for k in range(1, int(header.get("TFIELDS", 0)) + 1):
        ttype = str(header.get(f"TTYPE{k}", f"col{k}")).strip()
        tform = str(header.get(f"TFORM{k}", ""))
        m = _TFORM_RE.match(tform)
        if not m:
            raise SpectraReadError(path, f"unsupported column format TFORM{k}={tform!r} (column {ttype!r}) "
                                         f"in HDU {hdu!r}")
        rep = int(m.group(1)) if m.group(1) else 1
        code = m.group(2)
        width = (rep + 7) // 8 if code == "X" else rep * _TFORM_SIZES[code]
        if (want is None or ttype.lower() in want) and code not in "XPQ" and rep > 0:
            if code == "A":
                dt = np.dtype(f"S{rep}")
            else:
                dt = np.dtype(_TFORM_DTYPES[code]) if rep == 1 else np.dtype((_TFORM_DTYPES[code], (rep,)))
            if offset + dt.itemsize > row_bytes:
                raise SpectraReadError(path, f"HDU {hdu!r}: column {ttype!r} ends at byte {offset + dt.itemsize} "
                                             f"of a {row_bytes}-byte row (damaged TFORM/NAXIS1)")
            if n_rows == 0:  # a buffer view cannot be strided over nothing
                arr = np.empty((0,) + dt.shape, dtype=dt.base if dt.shape else dt)
            else:
                view = np.ndarray(shape=(n_rows,), dtype=dt, buffer=raw, offset=offset, strides=(row_bytes,))
                arr = np.array(view)
            if code == "A":
                arr = np.char.rstrip(np.char.decode(arr, "ascii", "replace"))
            elif code == "L":
                arr = arr == b"T"
            else:
                arr = arr.astype(arr.dtype.newbyteorder("="))
                scale = header.get(f"TSCAL{k}", 1)
                zero = header.get(f"TZERO{k}", 0)
                if scale != 1 or zero != 0:
                    bits = arr.dtype.itemsize * 8
                    if code in "IJK" and scale == 1 and int(zero) == 1 << (bits - 1):  # unsigned convention
                        udt = np.dtype(f"u{arr.dtype.itemsize}")
                        arr = arr.view(udt) ^ np.array(1 << (bits - 1), dtype=udt)
                    else:
                        arr = arr * float(scale) + float(zero)
            out[ttype.lower()] = arr
        offset += width
    if offset != row_bytes:
        raise SpectraReadError(path, f"HDU {hdu!r}: column widths add up to {offset} bytes but NAXIS1 is {row_bytes}")
    return header, out
