"""Download SDSS/BOSS ``spec-*.fits`` spectra from the SDSS Science Archive Server (SAS).

The archive's own layout is used (DR17)::

    {base}/sas/dr17/sdss/spectro/redux/{run2d}/spectra/lite/{plate:04d}/spec-{plate:04d}-{mjd:05d}-{fiberid:04d}.fits
    {base}/sas/dr17/eboss/spectro/redux/{run2d}/spectra/lite/{plate:04d}/spec-{plate:04d}-{mjd:05d}-{fiberid:04d}.fits

The first is for SDSS-I/II spectra (``run2d`` 26, 103 or 104), the second
for BOSS/eBOSS (``run2d`` such as ``v5_13_2``). Without a ``RUN2D`` column the
choice is made from the plate number (plates below 3510 were SDSS-I/II).
Pass ``template=`` to use another mirror or layout.

Robustness
----------
* **Cache:** a file already in ``out_dir`` that opens as FITS with a
  ``COADD`` HDU and its ``SPECOBJ``/``SPALL`` HDU is not downloaded again
  (status ``cached``).
* **Atomic, resumable:** bytes go to ``NAME.partial`` and are renamed to
  ``NAME`` only after the file verified; a ``.partial`` file is never taken as
  done. ``NAME.partial.url`` notes the URL the bytes came from. A later run
  continues a ``.partial`` of the same URL with an HTTP ``Range`` request when
  the server supports it (and the reply starts at the right byte), and starts
  afresh otherwise; a ``.partial`` of another URL (another run2d, mirror or
  template) is discarded, never joined.
* **Retries:** connection errors, timeouts, truncated bodies, 5xx/408/429
  answers and bodies that are not valid FITS are retried up to ``retries``
  times with exponential backoff (``backoff · 2^k`` seconds); 404 and other
  4xx answers, and URLs urllib cannot fetch, fail at once.
* **Never raises for one file:** each request gets a row with ``status`` ok /
  cached / failed and a ``reason``.
"""
from __future__ import annotations

import contextlib
import functools
import http.client
import os
import string
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from astropy.table import Table

from .._io import atomic_write_text, read_table
from .._logging import get_logger
from .._logging import progress as _progress_bar
from .._version import __version__
from ..spectra.io import SpectraReadError, scan_fits

__all__ = ["fetch_sdss", "DEFAULT_BASE_URL", "SDSS_TEMPLATE", "EBOSS_TEMPLATE", "TEMPLATE_FIELDS", "spectrum_url",
           "check_template", "default_run2d", "verify_spec_file"]

log = get_logger(__name__)

#: The SDSS Science Archive Server.
DEFAULT_BASE_URL = "https://data.sdss.org"
#: SDSS-I/II spectra (run2d 26, 103, 104) in DR17.
SDSS_TEMPLATE = ("{base}/sas/dr17/sdss/spectro/redux/{run2d}/spectra/lite/{plate:04d}/"
                 "spec-{plate:04d}-{mjd:05d}-{fiberid:04d}.fits")
#: BOSS/eBOSS spectra (run2d v5_13_2 in DR17).
EBOSS_TEMPLATE = ("{base}/sas/dr17/eboss/spectro/redux/{run2d}/spectra/lite/{plate:04d}/"
                  "spec-{plate:04d}-{mjd:05d}-{fiberid:04d}.fits")
SDSS_RUN2D = "26"
BOSS_RUN2D = "v5_13_2"
_FIRST_BOSS_PLATE = 3510
_CHUNK = 1 << 16
_MAX_BACKOFF = 60.0

_COLUMN_ALIASES = {
    "plate": ("plate", "plateid"),
    "mjd": ("mjd",),
    "fiberid": ("fiberid", "fiber", "fiber_id", "fibre"),
}


def default_run2d(plate: int) -> str:
    """The DR17 reduction of a plate when the input does not say: 26 (SDSS-I/II) or v5_13_2 (BOSS/eBOSS)."""
    return SDSS_RUN2D if int(plate) < _FIRST_BOSS_PLATE else BOSS_RUN2D


#: The placeholders a URL template may use.
TEMPLATE_FIELDS = ("base", "run2d", "plate", "mjd", "fiberid")
#: The placeholders a URL template must use: without them different spectra would share one URL.
_REQUIRED_FIELDS = ("plate", "mjd", "fiberid")


@functools.lru_cache(maxsize=32)
def check_template(template: str) -> str:
    """Check a URL format string before anything is downloaded; return it unchanged.

    Parameters
    ----------
    template : str
        A :meth:`str.format` string using only the placeholders in
        :data:`TEMPLATE_FIELDS` (``{base}``, ``{run2d}``, ``{plate}``, ``{mjd}``,
        ``{fiberid}``, with optional format specs such as ``{plate:04d}``), and
        at least ``{plate}``, ``{mjd}`` and ``{fiberid}``.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        If the template is malformed, names an unknown placeholder (the
        message lists the unknown and the allowed ones), lacks one of the
        required placeholders, or a format spec does not fit its value
        (``run2d`` and ``base`` are text, the others integers).
    """
    allowed = ", ".join(f"{{{f}}}" for f in TEMPLATE_FIELDS)
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"URL template {template!r} is not a valid format string ({exc}); use the "
                         f"placeholders {allowed}") from None
    names = []
    for _, field_name, _, _ in parsed:
        if field_name is None:
            continue
        # "{plate.real}" or "{plate[0]}" name the field "plate"
        names.append(field_name.split(".", 1)[0].split("[", 1)[0])
    unknown = sorted({n for n in names if n not in TEMPLATE_FIELDS}, key=names.index)
    if unknown:
        shown = ", ".join("{}" if n == "" else f"{{{n}}}" for n in unknown)
        raise ValueError(f"URL template {template!r} has unknown placeholder(s) {shown}; the allowed "
                         f"placeholders are {allowed}")
    missing = [f for f in _REQUIRED_FIELDS if f not in names]
    if missing:
        raise ValueError(f"URL template {template!r} lacks the placeholder(s) "
                         + ", ".join(f"{{{f}}}" for f in missing)
                         + "; without them different spectra would get the same URL")
    try:
        template.format(base=DEFAULT_BASE_URL, run2d=SDSS_RUN2D, plate=266, mjd=51602, fiberid=1)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise ValueError(f"URL template {template!r} cannot be filled in: {exc} (run2d and base are text; "
                         "plate, mjd and fiberid are integers)") from None
    return template


def spectrum_url(plate: int, mjd: int, fiberid: int, run2d: str | None = None,
                 base_url: str = DEFAULT_BASE_URL, template: str | Callable | None = None) -> str:
    """URL of one spectrum in the archive layout.

    Parameters
    ----------
    plate, mjd, fiberid : int
    run2d : str, optional
        Reduction version; defaults to :func:`default_run2d`.
    base_url : str
        Archive root (no trailing slash needed).
    template : str or callable, optional
        A format string with ``{base}``, ``{run2d}``, ``{plate}``, ``{mjd}``,
        ``{fiberid}`` (checked by :func:`check_template`), or a callable taking
        those as keywords. By default :data:`SDSS_TEMPLATE` for numeric run2d
        and :data:`EBOSS_TEMPLATE` otherwise.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        If a string template is invalid (see :func:`check_template`).
    TypeError
        If ``template`` is neither None, a string nor a callable.
    """
    run2d = _run2d_text(run2d) if run2d not in (None, "") else default_run2d(plate)
    fields = dict(base=base_url.rstrip("/"), run2d=run2d, plate=int(plate), mjd=int(mjd), fiberid=int(fiberid))
    if template is None:
        template = SDSS_TEMPLATE if run2d.isdigit() else EBOSS_TEMPLATE
    if callable(template):
        return str(template(**fields))
    if not isinstance(template, str):
        raise TypeError(f"template must be a format string or a callable; got {type(template).__name__}")
    return check_template(template).format(**fields)


def _run2d_text(run2d) -> str:
    """RUN2D as text; a number that is whole (26, 26.0 from a table column with gaps) is written as an integer."""
    if isinstance(run2d, (int, float, np.integer, np.floating)) and not isinstance(run2d, bool):
        if np.isfinite(run2d) and float(run2d) == int(run2d):
            return str(int(run2d))
    return str(run2d).strip()


def verify_spec_file(path: str | os.PathLike) -> str | None:
    """Return ``None`` if ``path`` is a complete FITS file with a readable ``COADD`` HDU and the
    spectrum's catalogue HDU (``SPECOBJ``, or ``SPALL`` in BOSS files), else the reason.

    The catalogue HDU comes after ``COADD``: a download cut off at an HDU boundary (with no
    ``Content-Length`` to tell) lacks it, and is refused."""
    from astropy.io import fits

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        return f"cannot stat file: {exc}"
    if size == 0:
        return "empty file"
    if size % 2880:
        return f"truncated: {size} bytes is not a whole number of 2880-byte FITS blocks"
    try:
        with open(path, "rb") as fh:
            if not fh.read(30).startswith(b"SIMPLE  ="):
                return "not a FITS file (no SIMPLE card)"
        try:  # the structure first: every HDU's data must fit in the file (catches cut-off downloads)
            scan_fits(path)
        except SpectraReadError as exc:
            return exc.reason
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fits.open(path, memmap=False) as hdul:
                names = [h.name.upper() for h in hdul]
                if "COADD" not in names:
                    return f"no COADD HDU (HDUs: {', '.join(names)})"
                data = hdul["COADD"].data
                if data is None or len(data) == 0 or "flux" not in [c.lower() for c in data.columns.names]:
                    return "COADD HDU holds no flux"
                if "SPECOBJ" not in names and "SPALL" not in names:
                    return f"no SPECOBJ/SPALL HDU (HDUs: {', '.join(names)}): cut off after COADD?"
        # astropy only warns about a cut-off file; harmless warnings (extra zero padding) pass
        cut = [str(w.message) for w in caught if "truncat" in str(w.message).lower()]
        if cut:
            return f"truncated: {cut[0]}"
    except Exception as exc:  # astropy raises many types for damaged files
        return f"not a valid FITS file: {type(exc).__name__}: {exc}"
    return None


def _positive_ints(col) -> tuple[np.ndarray, np.ndarray]:
    """A column as int64 (0 where unusable) and, per row, why it is unusable ("" when it is fine)."""
    masked = np.ma.getmaskarray(col)
    x = np.full(len(col), np.nan)
    for i, v in enumerate(np.asarray(col)):
        if not masked[i]:
            try:
                x[i] = float(v.decode() if isinstance(v, bytes) else v)
            except (TypeError, ValueError):
                pass
    why = np.full(x.shape, "", dtype=object)
    why[~np.isfinite(x)] = "is missing or not a number"
    fin = np.isfinite(x)
    why[fin & ((x <= 0) | (x != np.round(x)))] = "is not a positive whole number"
    why[fin & (x >= 1e9) & (why == "")] = "is too large for an SDSS plate, MJD or fiber number"
    return np.where(why == "", x, 0).astype(np.int64), why


def _find_columns(table: Table) -> dict[str, str]:
    lower = {c.lower(): c for c in table.colnames}
    found, missing = {}, []
    for key, aliases in _COLUMN_ALIASES.items():
        for a in aliases:
            if a in lower:
                found[key] = lower[a]
                break
        else:
            missing.append(key)
    if missing:
        raise ValueError(
            f"the input table lacks the column(s) {', '.join(missing)} (case-insensitive; fiber may also be "
            f"called FIBER or FIBER_ID); its columns are: {', '.join(table.colnames) or 'none'}")
    if "run2d" in lower:
        found["run2d"] = lower["run2d"]
    return found


def _as_table(table_or_path) -> Table:
    if isinstance(table_or_path, (str, os.PathLike)):
        return read_table(table_or_path)
    if isinstance(table_or_path, Table):
        return table_or_path
    return Table(table_or_path)


def _download_one(url: str, dest: Path, *, retries: int, backoff: float, timeout: float,
                  sleep: Callable[[float], None]) -> tuple[str, str, int, int]:
    """Fetch ``url`` to ``dest``; returns (status, reason, attempts, bytes). Never raises."""
    partial = dest.with_name(dest.name + ".partial")
    source = dest.with_name(dest.name + ".partial.url")  # where the partial bytes came from
    reason = ""
    attempts = 0
    if partial.exists() and (not source.exists() or source.read_text(encoding="utf-8").strip() != url):
        # bytes of another URL (other run2d, base or template): joining them would make a chimera
        log.info("%s: the unfinished download came from another URL; starting over", dest.name)
        partial.unlink(missing_ok=True)
    atomic_write_text(source, url + "\n")
    for attempt in range(int(retries) + 1):
        if attempt:
            sleep(min(_MAX_BACKOFF, backoff * 2 ** (attempt - 1)))
        attempts += 1
        offset = partial.stat().st_size if partial.exists() else 0
        headers = {"User-Agent": f"serendip/{__version__} (+fetch_sdss)"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as resp:
                status = getattr(resp, "status", 200)
                if offset and status == 206 and _content_range(resp)[0] == offset:
                    mode, expected = "ab", _expected_total(resp, offset)
                else:  # a full body (or a range that does not start where the partial ends): from scratch
                    mode, offset, expected = "wb", 0, _int_or_none(resp.headers.get("Content-Length"))
                    if status == 206:  # the partial cannot be continued: the next attempt fetches it whole
                        partial.unlink(missing_ok=True)
                        raise http.client.HTTPException("the server sent a range that does not continue the "
                                                        "unfinished download")
                got = offset
                with open(partial, mode) as fh:
                    while True:
                        chunk = resp.read(_CHUNK)
                        if not chunk:
                            break
                        fh.write(chunk)
                        got += len(chunk)
            if expected is not None and got < expected:
                reason = f"truncated body: got {got} of {expected} bytes"
                continue  # keep the .partial: the next attempt resumes it
        except urllib.error.HTTPError as exc:
            reason = f"HTTP {exc.code} {exc.reason}"
            if exc.code == 416 and offset:
                # range not satisfiable: the partial may already be whole (a run stopped before the rename)
                if verify_spec_file(partial) is None:
                    return _finish(partial, source, dest, attempts)
                partial.unlink(missing_ok=True)  # otherwise start again from scratch
                continue
            if 400 <= exc.code < 500 and exc.code not in (408, 429):
                partial.unlink(missing_ok=True)
                source.unlink(missing_ok=True)
                return "failed", reason, attempts, 0
            continue
        except ValueError as exc:  # a malformed URL: retrying cannot help
            if isinstance(exc, UnicodeError):
                reason = f"{type(exc).__name__}: {exc}"
                continue
            source.unlink(missing_ok=True)
            return "failed", f"bad URL {url!r}: {exc}", attempts, 0
        except urllib.error.URLError as exc:
            if "unknown url type" in str(exc.reason):  # no scheme, or one urllib cannot fetch: permanent
                source.unlink(missing_ok=True)
                return "failed", f"bad URL {url!r}: {exc.reason}", attempts, 0
            reason = f"{type(exc).__name__}: {exc}"
            continue
        except (OSError, http.client.HTTPException) as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            continue
        problem = verify_spec_file(partial)
        if problem is not None:
            reason = f"downloaded file rejected: {problem}"
            partial.unlink(missing_ok=True)
            continue
        return _finish(partial, source, dest, attempts)
    if not partial.exists():
        source.unlink(missing_ok=True)  # nothing to resume: no note either
    return "failed", reason or "gave up", attempts, 0


def _int_or_none(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def _finish(partial: Path, source: Path, dest: Path, attempts: int) -> tuple[str, str, int, int]:
    """Rename a verified download into place and drop its URL note."""
    size = partial.stat().st_size
    os.replace(partial, dest)
    source.unlink(missing_ok=True)
    return "ok", "", attempts, size


def _content_range(resp) -> tuple[int | None, int | None]:
    """``(first byte, total size)`` of a 206 reply's ``Content-Range: bytes START-END/TOTAL``; None where absent."""
    rng = resp.headers.get("Content-Range", "")
    try:
        start = int(rng.split()[1].split("-", 1)[0])
    except (IndexError, ValueError):
        start = None
    return start, (_int_or_none(rng.rsplit("/", 1)[1]) if "/" in rng else None)


def _expected_total(resp, offset):
    total = _content_range(resp)[1]
    if total is not None:
        return total
    length = _int_or_none(resp.headers.get("Content-Length"))
    return None if length is None else offset + length


def fetch_sdss(table_or_path, out_dir, base_url: str = DEFAULT_BASE_URL, run2d: str | None = None, *,
               template: str | Callable | None = None, retries: int = 3, backoff: float = 1.0,
               timeout: float = 60.0, n_jobs: int = 1, progress: bool = True,
               sleep: Callable[[float], None] = time.sleep) -> Table:
    """Download SDSS/BOSS spectra listed in a table, with a cache, retries and resume.

    Parameters
    ----------
    table_or_path : astropy Table, table-like or path
        One row per spectrum with columns plate, mjd and fiberid (any case;
        ``FIBER``/``FIBER_ID`` also accepted), e.g. an SDSS specObj table
        (``PLATE``, ``MJD``, ``FIBERID``, optional ``RUN2D``). A path is read
        with :func:`serendip._io.read_table` (FITS, CSV, ECSV, Parquet).
    out_dir : path-like
        Folder for the ``spec-PLATE-MJD-FIBER.fits`` files (created).
    base_url : str
        Archive root; default :data:`DEFAULT_BASE_URL`.
    run2d : str, optional
        Reduction for rows without a ``RUN2D`` value; by default chosen from
        the plate number (:func:`default_run2d`).
    template : str or callable, optional
        Override the URL layout (see :func:`spectrum_url`).
    retries : int
        Extra attempts after the first for transient failures.
    backoff : float
        Seconds before the first retry; doubles each retry (capped at 60 s).
    timeout : float
        Socket timeout in seconds for each request.
    n_jobs : int
        Parallel downloads (threads).
    progress : bool
        Show a progress bar.
    sleep : callable
        Used to wait between retries (tests can pass a no-op).

    Returns
    -------
    astropy Table
        One row per requested spectrum, in input order: plate, mjd, fiberid,
        run2d, url, path, status (``ok``, ``cached`` or ``failed``), reason,
        attempts, bytes. ``meta`` records the base URL, time and serendip version.

    Raises
    ------
    ValueError
        If the table lacks plate/mjd/fiberid columns (the message names them),
        ``template`` is invalid (see :func:`check_template`; checked before
        any download) or ``retries``/``backoff``/``timeout``/``n_jobs`` are invalid.
    """
    if int(retries) < 0:
        raise ValueError(f"retries must be >= 0; got {retries}")
    if backoff < 0 or timeout <= 0 or int(n_jobs) < 1:
        raise ValueError(f"need backoff >= 0, timeout > 0 and n_jobs >= 1; got {backoff}, {timeout}, {n_jobs}")
    if template is not None and not callable(template):
        if not isinstance(template, str):
            raise TypeError(f"template must be a format string or a callable; got {type(template).__name__}")
        check_template(template)  # once, before the folder is made or anything is downloaded
    table = _as_table(table_or_path)
    cols = _find_columns(table)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(table)
    ids, bad_rows = {}, {}
    for key in ("plate", "mjd", "fiberid"):
        ids[key], why = _positive_ints(table[cols[key]])
        for i in np.flatnonzero(why != ""):
            bad_rows.setdefault(int(i), f"row {int(i)}: {cols[key]} {why[i]}; not fetched")
    plates, mjds, fibers = ids["plate"], ids["mjd"], ids["fiberid"]
    run2ds = []
    for i in range(n):
        r = None
        if "run2d" in cols:
            v = table[cols["run2d"]][i]
            r = v.decode() if isinstance(v, bytes) else (None if np.ma.is_masked(v) else _run2d_text(v))
            r = (r or "").strip() or None
        run2ds.append(r or (str(run2d) if run2d else default_run2d(plates[i])))
    if template is not None and not callable(template):
        check_template(template)  # a bad template is the caller's error, not one file's
    urls = []
    for i, (p, m, f, r) in enumerate(zip(plates, mjds, fibers, run2ds)):
        try:  # a callable template may fail for one row only
            urls.append(spectrum_url(p, m, f, r, base_url, template))
        except Exception as exc:  # noqa: BLE001 - one file must never stop the batch
            urls.append("")
            bad_rows.setdefault(i, f"row {i}: cannot build its URL ({type(exc).__name__}: {exc}); not fetched")
    dests = [out_dir / f"spec-{p:04d}-{m:05d}-{f:04d}.fits" for p, m, f in zip(plates, mjds, fibers)]

    def work(i):
        if i in bad_rows:
            return "failed", bad_rows[i], 0, 0
        url = urls[i]
        dest = dests[i]
        if dest.exists():
            problem = verify_spec_file(dest)
            if problem is None:
                return "cached", "", 0, dest.stat().st_size
            log.warning("%s exists but is not a valid spectrum (%s); downloading again", dest.name, problem)
            with contextlib.suppress(OSError):
                dest.unlink()
        try:
            return _download_one(url, dest, retries=retries, backoff=backoff, timeout=timeout, sleep=sleep)
        except Exception as exc:  # noqa: BLE001 - one file must never stop the batch
            return "failed", f"{type(exc).__name__}: {exc}", 1, 0

    results: list = [None] * n
    bar = _progress_bar(total=n, desc="fetching SDSS spectra", enabled=progress, unit="file")
    try:
        # a spectrum listed twice is fetched once; later rows see the cached file. Rows that cannot
        # be fetched keep their own reason: their placeholder names (spec-0000-...) may coincide
        seen: dict[Path, int] = {}
        order = []
        for i, d in enumerate(dests):
            if i in bad_rows:
                order.append(i)
                continue
            if d in seen:
                continue
            seen[d] = i
            order.append(i)
        if int(n_jobs) == 1:
            for i in order:
                results[i] = work(i)
                bar.update(1)
        else:
            with ThreadPoolExecutor(max_workers=int(n_jobs)) as pool:
                for i, res in zip(order, pool.map(work, order)):
                    results[i] = res
                    bar.update(1)
        for i, d in enumerate(dests):
            if results[i] is None:
                first = results[seen[d]]
                results[i] = ("cached", "", 0, first[3]) if first[0] != "failed" else first
                bar.update(1)
    finally:
        bar.close()

    out = Table()
    out["plate"] = plates
    out["mjd"] = mjds
    out["fiberid"] = fibers
    out["run2d"] = np.array(run2ds, dtype=str) if n else np.array([], dtype=str)
    out["url"] = np.array(urls, dtype=str) if n else np.array([], dtype=str)
    out["path"] = np.array([str(d) for d in dests], dtype=str) if n else np.array([], dtype=str)
    out["status"] = np.array([r[0] for r in results], dtype="U6") if n else np.array([], dtype="U6")
    out["reason"] = np.array([r[1] for r in results], dtype=str) if n else np.array([], dtype=str)
    out["attempts"] = np.array([r[2] for r in results], dtype=np.int32)
    out["bytes"] = np.array([r[3] for r in results], dtype=np.int64)
    out.meta.update({"generator": "serendip.datasets.fetch_sdss", "serendip_version": __version__,
                     "base_url": base_url, "retries": int(retries), "backoff": float(backoff),
                     "timeout": float(timeout), "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    counts = {s: int(np.sum(out["status"] == s)) for s in ("ok", "cached", "failed")}
    log.info("fetch_sdss: %(ok)d downloaded, %(cached)d cached, %(failed)d failed", counts)
    return out
