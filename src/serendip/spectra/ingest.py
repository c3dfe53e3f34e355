"""`ingest`: from a pile of survey files to one clean store of spectra on a common grid.

Pipeline, per block of files (see :mod:`serendip.spectra.preprocess` for why
in this order)::

    read_spectra -> mask_pixels (observed frame) -> reject unusable objects
      -> signal_to_noise -> deredshift + resample (one vectorised pass per block)
      -> reject objects that cover too little of the grid -> normalize -> fill_masked
      -> SpectraStore.append

Bad inputs never stop a run: a file that is not FITS, is truncated, lacks an
HDU, has no finite pixel, has a redshift column that is not numeric (``N/A``)
or a metadata column that cannot be stored with the other files' (text in
``z``, ``ra``, ...; see "Metadata types" in :mod:`serendip.spectra.store`),
lacks the redshift column (in the rest frame; the reason names the column and
the similar ones the file has), or is an exact duplicate of another input
(same SHA-256), and an object with no redshift (in the rest frame), too few
usable pixels of its own, no overlap with the grid, usable data over less than
``min_good_fraction`` of the output grid (e.g. a z = 1.5 quasar that reaches
only the blue end of a 3700–7000 Å rest-frame grid), or the id of a spectrum
already stored (the same spectrum reached twice,
e.g. one SDSS plate-MJD-fiber in two files: the first one stored is kept), is
skipped and listed with its reason in the store's ``rejected`` table and in
``<store stem>.rejected.csv`` next to the store. :func:`ingest` raises only
when *nothing* could be read.

Appending and resuming
----------------------
Inputs already stored (same SHA-256) are skipped; inputs that were rejected
before are tried again, and their old rejection rows are replaced by the new
outcome. The grid and processing settings must be those the store was made
with (see :meth:`serendip.spectra.store.SpectraStore.create`).

Default grid
------------
When ``wmin``/``wmax`` are not given, ingest first looks at up to
``grid_sample`` inputs (evenly spaced through the sorted file list) and takes
the widest contiguous range in which at least ``coverage_fraction`` (default
80 %) of those spectra have usable pixels, in the rest frame when
``rest_frame`` is set. If no wavelength is covered by that many (for example a
mix of stars and z = 2 quasars), the threshold becomes ``coverage_fraction`` ×
the best coverage reached, and a warning says so. When ``npix`` is not given
the step is the inputs' median native step (1e-4 dex for SDSS, in log λ), so
the data are neither smoothed nor invented.
"""
from __future__ import annotations

import difflib
import glob as _glob
import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.table import Table

from .._io import file_sha256, write_table
from .._logging import get_logger, progress as _progress
from .._version import __version__
from .container import Spectra
from .io import SpectraReadError, read_spectra, supported_formats
from .lines import SKY_LINES
from .preprocess import (DEFAULT_AND_MASK_BITS, _has_step, _mask_core, _snr_core, and_mask_value, fill_masked,
                         normalize as _normalize)
from .resample import _describe_grid, _grid_values, make_grid, resample_many
from .store import _INPUT_LIST_KEY, MetaSchema, MetaTypeError, SpectraStore, partial_path

__all__ = ["ingest", "IngestResult", "expand_inputs", "default_grid", "rejected_path"]

log = get_logger(__name__)


@dataclass
class IngestResult:
    """What :func:`ingest` did.

    Attributes
    ----------
    path : Path
        The store.
    n_read : int
        Spectra written to the store by this run.
    n_total : int
        Spectra in the store (more than ``n_read`` when resuming or appending).
    n_files : int
        Input files considered.
    n_files_used : int
        Files that contributed at least one spectrum in this run.
    n_skipped : int
        Files skipped because the store already holds them (same SHA-256).
    rejected : astropy Table
        ``file``, ``id``, ``reason``, ``sha256`` of every rejected file or object in this run.
    grid : dict
        ``kind``, ``wmin``, ``wmax``, ``npix`` of the store's grid.
    rejected_path : Path or None
        The sidecar CSV copy of the store's rejected table.
    seconds : float
    duplicate_ids : list of str
        Ids of spectra skipped because a spectrum with the same id was already
        stored (they are also in ``rejected``).
    notes : list of str
        Warnings about the data, e.g. a metadata column stored as text because
        files disagree on its type.
    """

    path: Path
    n_read: int
    n_total: int
    n_files: int
    n_files_used: int
    n_skipped: int
    rejected: Table
    grid: dict
    rejected_path: Path | None = None
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)
    duplicate_ids: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def summary(self) -> str:
        g = self.grid
        lines = [f"store {self.path}: {self.n_total} spectra × {g['npix']} px, {g['kind']} grid "
                 f"{g['wmin']:.1f}–{g['wmax']:.1f} Å",
                 f"read {self.n_read} spectra from {self.n_files_used} of {self.n_files} files in {self.seconds:.1f} s"
                 + (f"; {self.n_skipped} files already in the store were skipped" if self.n_skipped else "")]
        if self.duplicate_ids:
            shown = ", ".join(self.duplicate_ids[:5]) + (", …" if len(self.duplicate_ids) > 5 else "")
            lines.append(f"skipped {len(self.duplicate_ids)} spectra whose id was already stored (duplicates, "
                         f"listed as rejected): {shown}")
        lines += [f"note: {n}" for n in self.notes]
        if len(self.rejected):
            reasons: dict[str, int] = {}
            for r in self.rejected["reason"]:
                key = str(r).split(" (")[0][:70]
                reasons[key] = reasons.get(key, 0) + 1
            lines.append(f"rejected {len(self.rejected)} (listed in {self.rejected_path}):")
            lines += [f"  {n} × {reason}" for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:8]]
        else:
            lines.append("rejected 0")
        return "\n".join(lines)

    __str__ = summary


def rejected_path(store_path: str | os.PathLike) -> Path:
    """The sidecar CSV of rejected inputs written next to a store: ``<stem>.rejected.csv``."""
    p = Path(store_path)
    return p.with_name(f"{p.stem}.rejected.csv")


def _known_extensions() -> tuple[str, ...]:
    exts = set()
    for e in supported_formats().values():
        exts.update(e)
    return tuple(sorted(exts, key=len, reverse=True))


def expand_inputs(inputs, exclude=()) -> tuple[list[Path], list[dict]]:
    """Turn files, folders (searched recursively for known extensions) and glob patterns into a file list.

    A folder that holds FITS spectra gives only its FITS files: tables and arrays
    (``.csv``, ``.parquet``, ``.npz``) found beside them are listed as rejected with
    the reason, since they usually repeat the same objects; name them explicitly to
    ingest them.

    ``exclude`` lists files, or folders whose files, to leave out.

    Returns
    -------
    files : list of Path
        Sorted, without duplicates.
    missing : list of dict
        Rejection rows for inputs that match nothing, and for files a folder search skipped.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    exts = _known_extensions()
    exclude = {Path(e).resolve() for e in exclude}
    found: list[Path] = []
    resolved: dict[Path, Path] = {}  # folder-found files, resolved once for the exclusion test and the duplicates
    missing: list[dict] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            candidates = [q for q in sorted(p.rglob("*"))
                          if (q.is_file() and not q.name.startswith(".") and q.name.lower().endswith(exts)
                              and not q.name.endswith(".rejected.csv"))]  # our own sidecar lists are not inputs
            resolved.update((q, q.resolve()) for q in candidates)
            # exclusions apply before the FITS-or-tables choice below
            hits = [q for q in candidates if not _excluded(q, exclude, resolved=resolved[q])]
            fits_files = [q for q in hits if ".fit" in q.name.lower()]
            if fits_files and len(fits_files) < len(hits):
                # a table or array beside per-object FITS files is usually the same objects in another form
                for q in hits:
                    if ".fit" not in q.name.lower():
                        missing.append({"file": str(q), "id": "", "sha256": "", "reason": (
                            f"skipped: the folder {p} also holds FITS spectra, and a table or array beside them "
                            "usually repeats them; name this file explicitly to ingest it")})
                hits = fits_files
            found.extend(hits)
        elif p.exists():
            found.append(p)
        elif any(ch in str(item) for ch in "*?["):
            hits = sorted(Path(h) for h in _glob.glob(str(item), recursive=True) if Path(h).is_file())
            if not hits:
                missing.append({"file": str(item), "id": "", "reason": "the pattern matches no file", "sha256": ""})
            found.extend(hits)
        else:
            missing.append({"file": str(item), "id": "", "reason": "no such file or folder", "sha256": ""})
    seen = set()
    files = []
    for f in found:
        r = resolved.get(f) or f.resolve()
        if r in seen or f.name.endswith(".partial") or _excluded(f, exclude, resolved=r):
            continue
        seen.add(r)
        files.append(f)
    return files, missing


def _excluded(path: Path, exclude: set[Path], resolved: Path | None = None) -> bool:
    """Whether ``path`` is, or lies in a folder, of ``exclude`` (resolved paths); ``resolved`` saves resolving
    ``path`` again when the caller already has it."""
    if not exclude:
        return False
    r = resolved if resolved is not None else path.resolve()
    return r in exclude or not exclude.isdisjoint(r.parents)


def _usable(s: Spectra) -> np.ndarray:
    return ~s.mask & (s.ivar > 0)


#: Private metadata column carrying the redshift that resampling removes (0 for rest-frame inputs).
_Z_SHIFT = "_serendip_z_shift"

#: Words in a column name that mark it as something other than a redshift (``z_err``, ``zwarning``).
_NOT_A_REDSHIFT = ("err", "warn", "flag", "sig", "ivar", "conf")


def _similar_columns(name: str, columns) -> list[str]:
    """Columns that may be the one meant by ``name``: the same name in another case, close spellings,
    and names that look like a redshift (``z``, ``Z_NOQSO``, ``redshift_best``, ``zspec``)."""
    columns = [str(c) for c in columns]
    lower = {c.lower(): c for c in columns}
    found = [c for c in columns if c.lower() == name.lower()]
    found += [lower[m] for m in difflib.get_close_matches(name.lower(), list(lower), n=3, cutoff=0.6)]
    for c in columns:
        low = c.lower()
        looks = (low in ("z", "redshift") or low.startswith(("z_", "zspec", "zbest", "zphot", "redshift"))
                 or low.endswith(("_z", "redshift")))
        if looks and not any(word in low for word in _NOT_A_REDSHIFT):
            found.append(c)
    out: list[str] = []
    for c in found:
        if c != name and c not in out:
            out.append(c)
    return out


def _missing_z_column(s: Spectra, z_column: str) -> str:
    """Why a file without the redshift column cannot be put in the rest frame: the column asked for,
    where it was looked for, the columns that are there and those that look like a redshift.

    The text does not name the file (the rejection row does), so that files failing for the same
    reason share one reason and the summaries can say so.
    """
    fmt = next((h.get("params", {}).get("format") for h in s.history if h.get("step") == "read"), None)
    where = f"the object metadata the {fmt!r} reader made from the file" if fmt else "the file's object metadata"
    cols = [c for c in s.meta.colnames if c not in ("source_path", "sha256", _Z_SHIFT)]
    shown = ", ".join(cols[:20]) + (f", … ({len(cols)} in all)" if len(cols) > 20 else "")
    similar = _similar_columns(z_column, cols)
    hint = (f"; similar column{'s' if len(similar) > 1 else ''}: {', '.join(map(repr, similar))}" if similar
            else "; none of them looks like a redshift")
    return (f"redshift column {z_column!r} not found (looked for it in {where}, whose columns are: "
            f"{shown or 'none'}{hint}); name the right column with z_column (CLI: --z-column), or keep the "
            "observed frame with rest_frame=False (CLI: --no-rest-frame)")


def _failure_digest(failures) -> str:
    """A short account of ``(file name, reason)`` pairs for an error message.

    When every failure has the same reason, it is given once with the count (``all 32 failed for the
    same reason (e.g. ...): ...``); otherwise the most common reasons are listed, each with its count and a file.
    """
    failures = list(failures)
    if not failures:
        return ""
    by_reason: dict[str, list[str]] = {}
    for name, reason in failures:
        by_reason.setdefault(str(reason), []).append(str(name))
    if len(by_reason) == 1:
        (reason, names), = by_reason.items()
        eg = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
        if len(names) == 1:
            return f"{names[0]}: {reason}"
        return f"all {len(names)} failed for the same reason (e.g. {eg}): {reason}"
    ranked = sorted(by_reason.items(), key=lambda kv: -len(kv[1]))
    parts = [f"{names[0]}: {reason}" if len(names) == 1 else f"{len(names)} × {reason} (e.g. {names[0]})"
             for reason, names in ranked[:3]]
    more = len(ranked) - 3
    return "; ".join(parts) + (f"; and {more} other reason{'s' if more > 1 else ''}" if more > 0 else "")


def _thin_coverage(block: Spectra, use: np.ndarray, min_good_fraction: float, grid_info: dict,
                   rest_frame: bool) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Rows of a resampled block whose usable pixels cover less than ``min_good_fraction`` of the grid.

    Parameters
    ----------
    block : Spectra
        On the output grid (after de-redshifting and resampling, before normalising and filling).
    use : ndarray of bool
        The block's usable pixels (``_usable(block)``).
    min_good_fraction : float
        The smallest fraction of the output grid's pixels that must hold usable data (unmasked,
        ``ivar > 0``, i.e. inside the spectrum's range and well covered by good input pixels).
    grid_info : dict
        The grid's ``wmin`` and ``wmax`` (Å), for the reason.
    rest_frame : bool
        Whether the grid is in the rest frame, for the reason.

    Returns
    -------
    drop : ndarray of bool
    reasons : list of str
        One per row (empty where kept), giving the coverage, where the usable data lie and the threshold.
    covered : ndarray of float
        Each row's fraction of grid pixels holding usable data (kept rows' ``masked_fraction`` is one minus this).
    """
    frac = use.mean(axis=1)
    drop = frac < min_good_fraction
    w = block.wavelength.value
    frame = "rest-frame " if rest_frame else ""
    reasons = [""] * len(block)
    for k in np.flatnonzero(drop):
        on = np.flatnonzero(use[k])
        data = f"usable data only in {w[on[0]]:.0f}–{w[on[-1]]:.0f} Å" if on.size else "no usable data"
        reasons[k] = (f"covers only {100 * frac[k]:.1f}% of the {frame}output grid {grid_info['wmin']:.0f}–"
                      f"{grid_info['wmax']:.0f} Å ({data}); min_good_fraction is {min_good_fraction:g}")
    return drop, reasons, frac


def _redshifts(meta: Table, z_column: str) -> np.ndarray:
    """The redshifts as floats (NaN where missing or blank).

    Raises
    ------
    ValueError
        If the column holds text that is not a number (e.g. ``N/A``); the
        message names the column, the values and the objects.
    """
    n = len(meta)
    if z_column not in meta.colnames:
        return np.full(n, np.nan)
    col = meta[z_column]
    if np.ndim(col) != 1:
        raise ValueError(f"the redshift column {z_column!r} is not one value per object (shape {np.shape(col)})")
    mask = np.ma.getmaskarray(col) if np.ma.isMaskedArray(col) else np.zeros(n, dtype=bool)
    raw = np.asarray(col)
    if raw.dtype.kind in "biuf":
        z = raw.astype(np.float64)
    else:
        z = np.full(n, np.nan)
        bad = []
        for k, v in enumerate(raw):
            text = (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)).strip()
            if mask[k] or not text:
                continue
            try:
                z[k] = float(text)
            except ValueError:
                bad.append(k)
        if bad:
            ids = meta["id"] if "id" in meta.colnames else np.arange(n).astype(str)
            shown = ", ".join(f"{str(raw[k])!r} (object {ids[k]})" for k in bad[:3])
            raise ValueError(f"the redshift column {z_column!r} is not numeric: {shown}"
                             + (f" and {len(bad) - 3} more" if len(bad) > 3 else ""))
    z[mask] = np.nan
    return z


def default_grid(files, *, kind: str = "log", wmin=None, wmax=None, npix=None, rest_frame: bool = True,
                 mask_bits=DEFAULT_AND_MASK_BITS, coverage_fraction: float = 0.8, sample: int = 200,
                 format: str | None = None, z_column: str = "z"):
    """Choose a common grid from the inputs themselves (see the module docstring).

    Parameters
    ----------
    files : list of path
        The inputs; up to ``sample`` of them are read.
    kind, wmin, wmax, npix, rest_frame, mask_bits, coverage_fraction, format, z_column
        As in :func:`ingest`.
    sample : int
        How many inputs to look at.

    Returns
    -------
    Quantity (Å)
        The grid. Files that cannot be read, or whose redshift column is not
        numeric, are ignored here (ingest reports them).

    Raises
    ------
    ValueError
        If none of the sampled files could be used.
    """
    if wmin is not None and wmax is not None and npix is not None:
        return make_grid(kind, float(wmin), float(wmax), int(npix))
    files = list(files)
    if len(files) > sample:
        files = [files[i] for i in np.linspace(0, len(files) - 1, sample).round().astype(int)]
    los, his, steps, failures = [], [], [], []
    for f in files:
        try:
            s = read_spectra(f, format=format)
            s.mask, s.ivar, _ = _mask_core(s, mask_bits, False, 4.0, SKY_LINES)
            # spectra whose history has a deredshift step are already in the rest frame: no shift
            shift = rest_frame and not _has_step(s, "deredshift")
            if shift and z_column not in s.meta.colnames:
                raise ValueError(_missing_z_column(s, z_column))
            z = _redshifts(s.meta, z_column) if shift else np.zeros(len(s))
        except (SpectraReadError, ValueError, OSError) as exc:
            failures.append((Path(f).name, str(getattr(exc, "reason", exc))))
            continue
        w = s.wavelength.value
        use = _usable(s)
        has = use.any(axis=1)
        if not has.any():
            failures.append((Path(f).name, "no usable pixel after masking"))
            continue
        if rest_frame:
            has &= np.isfinite(z) & (z > -1)
        if not has.any():
            failures.append((Path(f).name, f"no redshift: the {z_column!r} column is NaN, blank or not above -1 "
                                           "for every object with usable pixels"))
            continue
        first = np.argmax(use, axis=1)
        last = w.size - 1 - np.argmax(use[:, ::-1], axis=1)
        los.append(w[first[has]] / (1 + z[has]))
        his.append(w[last[has]] / (1 + z[has]))
        # mean step over the whole spectrum: float32 loglam makes single-pixel steps noisy (1e-4 -> 0.9990e-4)
        steps.append((np.log10(w[-1]) - np.log10(w[0])) / (w.size - 1) if kind == "log"
                     else (w[-1] - w[0]) / (w.size - 1))
    if not los:
        raise ValueError(f"nothing could be read from {len(files)} input file(s)"
                         + (f" to choose the grid: {_failure_digest(failures)}" if failures else ""))
    lo = np.sort(np.concatenate(los))
    hi = np.sort(np.concatenate(his))
    n = lo.size
    probe = np.geomspace(lo.min(), hi.max(), 20000)
    count = np.searchsorted(lo, probe, side="right") - np.searchsorted(hi, probe, side="left")
    need = coverage_fraction * n
    if count.max() < need:
        if wmin is None or wmax is None:  # only worth a warning when the range is being chosen here
            log.warning("no wavelength is covered by %.0f%% of the spectra (best: %.0f%%); the default grid covers "
                        "the range where at least %.0f%% of the best coverage is reached",
                        100 * coverage_fraction, 100 * count.max() / n, 100 * coverage_fraction)
        need = coverage_fraction * count.max()
    ok = count >= need
    # widest contiguous run of ok
    edges = np.diff(np.concatenate([[0], ok.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    best = int(np.argmax(stops - starts))
    auto_min, auto_max = probe[starts[best]], probe[stops[best] - 1]
    wmin = float(auto_min) if wmin is None else float(wmin)
    wmax = float(auto_max) if wmax is None else float(wmax)
    step = float(np.median(steps))
    return make_grid(kind, wmin, wmax, npix=None if npix is None else int(npix), step=step)


def _input_list_fingerprint(files) -> str:
    """SHA-256 of the resolved input paths (sorted): resuming an unfinished run checks it is the same job."""
    h = hashlib.sha256()
    for f in sorted(str(Path(f).resolve()) for f in files):
        h.update(f.encode("utf-8", "surrogateescape") + b"\0")
    return h.hexdigest()


#: A default grid within this fraction of a pixel of an existing store's grid is that grid.
_GRID_SNAP_PIXELS = 1e-3


def _snap_to_stored_grid(grid: np.ndarray, *stores) -> np.ndarray:
    """Return the grid of the first existing store in ``stores`` when ``grid`` matches it to within
    ``_GRID_SNAP_PIXELS`` of a pixel, else ``grid``.

    A default grid's step is the median native step of the files read, and SDSS ``loglam`` is
    stored in float32: the same ``wmin``/``wmax`` on another set of files gives a grid that differs
    by ~1e-7 in relative terms (a few 1e-4 of a pixel). Appending such files, or resuming, then uses the
    store's exact grid instead of refusing a difference no one asked for.
    """
    for path in stores:
        if path is None or not Path(path).exists():
            continue
        import h5py

        try:
            with h5py.File(path, "r") as f:
                stored = np.asarray(f["wavelength"][...], dtype=np.float64)
        except (OSError, KeyError):
            continue
        if stored.shape == grid.shape and np.max(np.abs(stored - grid)) <= _GRID_SNAP_PIXELS * np.min(np.diff(stored)):
            return stored
        return grid
    return grid


def _stored_ids(store: SpectraStore) -> dict[str, str]:
    """Id -> source file name of every spectrum already in ``store`` (to skip the same spectrum reached twice)."""
    meta = store.meta
    if "id" not in meta.colnames:
        return {}
    ids = np.asarray(meta["id"]).astype(str)
    src = (np.asarray(meta["source_file"]).astype(str) if "source_file" in meta.colnames
           else np.full(len(ids), ""))
    out: dict[str, str] = {}
    for i, f in zip(ids, src):
        out.setdefault(i, f)
    return out


def _generated_id_hint(obj_id: str, path: str) -> str:
    """A hint when an id was made from the file name (``<stem>:<row>``), so two same-named files collide."""
    stem = Path(path).name.split(".")[0]
    head, _, row = obj_id.rpartition(":")
    if head == stem and row.isdigit():
        return ("; this id was made from the file name because the file has no id column: give files with "
                "different spectra different names or an id column")
    return ""


def ingest(inputs, output, grid="log", wmin=None, wmax=None, npix=None, rest_frame: bool = True,
           mask_bits=DEFAULT_AND_MASK_BITS, sky_lines: bool = False, normalize: str | None = "median",
           norm_window=None, fill: bool = True, block_size: int = 1024, progress: bool = True, *,
           format: str | None = None, if_exists: str = "error", resume: bool = True,
           min_good_fraction: float = 0.2, min_coverage: float = 0.5, coverage_fraction: float = 0.8,
           grid_sample: int = 200, z_column: str = "z", exclude=()) -> IngestResult:
    """Read, clean, resample and store many spectra files in one HDF5 :class:`SpectraStore`.

    Parameters
    ----------
    inputs : path, glob pattern, folder, or a list of them
        Folders are searched recursively for files with a supported extension.
    output : path-like
        The store to write (``.h5``). Built under a hidden temporary name and
        renamed into place only when complete.
    grid : {"log", "linear"} or array-like / Quantity
        Grid kind, or explicit pixel centres (Å).
    wmin, wmax, npix : optional
        Grid limits (Å, rest frame if ``rest_frame``) and size; missing ones are
        chosen from the data (see the module docstring).
    rest_frame : bool
        De-redshift with the ``z_column`` metadata before resampling; objects
        without a redshift are rejected.
    mask_bits : bit names/numbers, int bitmask or None
        SDSS ``and_mask`` bits to mask (default
        :data:`serendip.spectra.preprocess.DEFAULT_AND_MASK_BITS`).
    sky_lines : bool
        Also mask the strong sky lines (observed frame).
    normalize : {"median", "sum", "l2"} or None
        Normalisation after resampling (``None``: keep fluxes).
    norm_window : (float, float), optional
        Wavelength window for the normalisation (Å, on the output grid).
    fill : bool
        Interpolate over masked pixels after normalising (recorded in ``filled``).
    block_size : int
        Spectra processed and written per block (memory ≈ block_size × pixels × 20 bytes).
    progress : bool
        Show a progress bar.
    format : str, optional
        Force a reader (see :func:`serendip.spectra.io.supported_formats`).
    if_exists : {"error", "overwrite", "append"}
        What to do when ``output`` exists. ``"append"`` adds only inputs whose
        SHA-256 is not in the store yet (inputs rejected before are tried
        again), on the store's own grid unless a grid is given, and only with
        the settings the store was made with; ``"error"`` (default) refuses,
        so a repeated run can never duplicate rows.
    resume : bool
        Continue an interrupted run (its hidden partial store, kept after
        Ctrl-C) instead of starting over; files already committed are skipped
        by hash. The inputs and settings must be those of the interrupted run
        (otherwise :class:`~serendip.spectra.store.ResumeMismatchError`).
    min_good_fraction : float
        A fraction in [0, 1]. Reject an object whose usable data (unmasked pixels with
        ``ivar > 0``, inside its wavelength range) cover less than this fraction of the
        *output grid*'s pixels after de-redshifting and resampling: e.g. a z = 1.5 quasar
        that reaches only 3700–4131 Å of a 3700–7000 Å rest-frame grid (13 %) is rejected,
        instead of being stored with 87 % of its pixels filled in. The same fraction of the
        file's own pixels must be usable after masking, before resampling (a mostly masked
        spectrum is rejected even where the grid is narrow). The reason of each rejection
        gives the fraction found.
    min_coverage : float
        See :func:`serendip.spectra.resample`.
    coverage_fraction, grid_sample : float, int
        Default-grid rule (see the module docstring).
    z_column : str
        Metadata column holding the redshift.
    exclude : sequence of path
        Files, or folders whose files, are never inputs (e.g. a pipeline's own run folder
        inside an input folder).

    Returns
    -------
    IngestResult

    Raises
    ------
    ValueError
        If no spectrum at all could be read (the message gives the first
        reasons); no store or partial file is left behind in that case.
        Also when appending or resuming with a grid or settings different
        from the store's (the message lists them, old and new).
    FileExistsError
        If ``output`` exists and ``if_exists="error"``.

    Notes
    -----
    Metadata columns keep one type across files (see "Metadata types" in
    :mod:`serendip.spectra.store`): integer-looking values in one file and
    decimals in another are all stored as float64, never truncated; a column
    with text in some files and numbers in others is stored as text (with a
    note in the result), except numeric columns such as ``z``, ``ra``,
    ``dec`` or ``snr``, where a file with text values is rejected, its reason
    naming the column. Spectra whose id is already in the store (or earlier in
    this run) are skipped and listed as rejected ("duplicate id").

    Two metadata columns are computed for every stored spectrum: ``snr``, the
    median of flux·sqrt(ivar) over the file's own unmasked pixels (before
    resampling), and ``masked_fraction``, the fraction of the output grid's
    pixels that hold no usable data (masked in the input, or outside the
    spectrum's wavelength range), measured before ``fill`` fills them in.
    """
    t0 = time.perf_counter()
    output = Path(output)
    if normalize not in (None, "median", "sum", "l2"):
        raise ValueError(f"normalize must be 'median', 'sum', 'l2' or None; got {normalize!r}")
    and_mask_value(mask_bits)  # validate early
    if not 0.0 <= float(min_good_fraction) <= 1.0:  # also refuses NaN
        raise ValueError(f"min_good_fraction must be a fraction between 0 and 1 (CLI: --min-good-fraction); "
                         f"got {min_good_fraction!r}")
    if output.exists() and if_exists == "error":
        raise FileExistsError(f"{output} exists: pass if_exists='overwrite' to rebuild it or 'append' to add new "
                              "inputs only (CLI: --overwrite / --append)")
    files, rejected_rows = expand_inputs(inputs, exclude=[output, partial_path(output), *exclude])
    if not files:
        raise ValueError("nothing could be read: no input files found"
                         + (f" ({rejected_rows[0]['file']}: {rejected_rows[0]['reason']})" if rejected_rows else ""))

    if isinstance(grid, str) and if_exists == "append" and output.exists() and wmin is None and wmax is None \
            and npix is None:
        with SpectraStore(output) as existing:  # appending: keep the store's own grid
            grid_q = existing.wavelength
    elif isinstance(grid, str):
        grid_q = default_grid(files, kind=grid, wmin=wmin, wmax=wmax, npix=npix, rest_frame=rest_frame,
                              mask_bits=mask_bits, coverage_fraction=coverage_fraction, sample=grid_sample,
                              format=format, z_column=z_column)
    else:
        grid_q = grid
    grid_w = _grid_values(grid_q)
    if isinstance(grid, str):
        grid_w = _snap_to_stored_grid(grid_w, output if if_exists == "append" else None,
                                      partial_path(output) if resume else None)
    grid_info = _describe_grid(grid_w)
    params = {"grid": grid_info, "rest_frame": bool(rest_frame), "mask_bits": mask_bits if isinstance(
        mask_bits, (int, type(None))) else list(mask_bits), "sky_lines": bool(sky_lines), "normalize": normalize,
        "norm_window": None if norm_window is None else list(norm_window), "fill": bool(fill),
        "min_good_fraction": min_good_fraction, "min_coverage": min_coverage, "z_column": z_column,
        _INPUT_LIST_KEY: _input_list_fingerprint(files)}
    store = SpectraStore.create(output, grid_w, provenance={"serendip_version": __version__, "ingest": params,
                                                           "rest_frame": bool(rest_frame)},
                                if_exists=if_exists, resume=resume)
    numeric = [z_column] if rest_frame else []
    try:
        done = store.input_hashes  # only inputs that are stored: rejected ones are tried again
        n_rej0 = len(store.rejected)
        retry = {str(h) for h in store.rejected["sha256"] if h} - done
        retried: set[str] = set()
        copies: set[tuple[str, str]] = set()
        considered = {str(r["file"]) for r in rejected_rows}
        n_before = store.n_objects
        schema: MetaSchema = store.meta_schema(numeric)
        known_ids = _stored_ids(store)
        if rejected_rows:
            store.add_rejected(rejected_rows)
        state = {"pending": [], "pending_inputs": [], "pending_rows": 0, "pending_rejects": [], "steps": None,
                 "files_used": 0, "unit": store.provenance_without_inputs().get("input_flux_unit")}
        new_rejected = list(rejected_rows)
        seen_hash: dict[str, str] = {}
        duplicate_ids: list[str] = []
        notes: list[str] = []
        n_skipped = 0

        def reject(rows):
            new_rejected.extend(rows)
            state["pending_rejects"].extend(rows)

        def drop_rows(block, drop, reason):
            """Reject the rows flagged in ``drop`` (``reason``: one text, or one per row of the block)."""
            for k in np.flatnonzero(drop):
                reject([{"file": str(block.meta["source_path"][k]), "id": str(block.meta["id"][k]),
                         "reason": reason if isinstance(reason, str) else reason[k],
                         "sha256": str(block.meta["sha256"][k])}])
            return block[~drop] if drop.any() else block

        def duplicates(block):
            """Rows whose id is already stored or earlier in the block (the first one is kept)."""
            ids = block.ids
            drop = np.zeros(len(block), dtype=bool)
            reasons = [""] * len(block)
            batch: dict[str, str] = {}
            for k, i in enumerate(ids):
                if i in known_ids or i in batch:
                    first = known_ids[i] if i in known_ids else batch[i]
                    drop[k] = True
                    reasons[k] = ("duplicate id, skipped (a spectrum with this id is already stored"
                                  + (f", from {first}" if first else "") + ")"
                                  + _generated_id_hint(i, str(block.meta["source_path"][k])))
                    duplicate_ids.append(str(i))
                else:
                    batch[i] = str(block.meta["source_path"][k])
            return drop, reasons, batch

        def resample_block(pending):
            """Resample the block's files together; if that fails, find and reject the files that fail alone."""
            def run(items):
                return resample_many(items, grid_w, min_coverage=min_coverage, z=_Z_SHIFT if rest_frame else None)

            try:
                return run(pending)
            except (ValueError, IndexError, FloatingPointError) as exc:
                log.warning("resampling a block of %d file(s) failed (%s); retrying them one by one", len(pending), exc)
            good = []
            for item in pending:
                try:
                    run([item])
                except (ValueError, IndexError, FloatingPointError) as exc:
                    reject([{"file": str(item.meta["source_path"][0]), "id": "", "sha256": str(item.meta["sha256"][0]),
                             "reason": f"cannot be resampled onto the output grid ({exc})"}])
                    continue
                good.append(item)
            return run(good) if good else None

        def flush():
            if not state["pending"]:
                if state["pending_rejects"]:
                    store.add_rejected(state["pending_rejects"])
                    state["pending_rejects"] = []
                return
            for s in state["pending"]:  # one type per metadata column, whatever each file's reader guessed
                s.meta = schema.coerce(s.meta)
            block = resample_block(state["pending"])
            if block is None:  # every file of the block failed to resample (each is rejected with its reason)
                store.add_rejected(state["pending_rejects"])
                state.update(pending=[], pending_inputs=[], pending_rows=0, pending_rejects=[])
                return
            if _Z_SHIFT in block.meta.colnames:
                block.meta.remove_column(_Z_SHIFT)
                for h in block.history:  # record the real column, not the private one
                    if h["step"] == "deredshift" and h.get("params", {}).get("z") == _Z_SHIFT:
                        h["params"] = {"z": z_column,
                                       "note": "each spectrum's wavelengths divided by its 1 + z; spectra already "
                                               "in the rest frame are not shifted"}
            use = _usable(block)  # once per block: the overlap, coverage and masked_fraction all read it
            none = ~use.any(axis=1)
            block = drop_rows(block, none, "no usable pixel on the output grid (no overlap with "
                                           f"{grid_info['wmin']:.0f}–{grid_info['wmax']:.0f} Å)")
            if len(block):  # min_good_fraction of the OUTPUT grid, before normalising and filling the rest
                thin, reasons, covered = _thin_coverage(block, use[~none], float(min_good_fraction), grid_info,
                                                        rest_frame)
                block = drop_rows(block, thin, reasons)
                if len(block):  # what the store holds: the share of the grid without data, before filling it
                    block.meta["masked_fraction"] = 1.0 - covered[~thin]
            if normalize is not None and len(block):
                block = _normalize(block, method=normalize, window=norm_window)
                block = drop_rows(block, ~np.isfinite(np.asarray(block.meta["norm"], dtype=float)),
                                  f"cannot normalise: the {normalize} flux"
                                  + (f" in {norm_window[0]}–{norm_window[1]} Å" if norm_window else "")
                                  + " is not positive")
            new_ids: dict[str, str] = {}
            if len(block):
                dup, reasons, new_ids = duplicates(block)
                block = drop_rows(block, dup, reasons)
            if fill and len(block):
                block = fill_masked(block)
            kept_by_file: dict[str, int] = {}
            for h in block.meta["sha256"]:
                kept_by_file[str(h)] = kept_by_file.get(str(h), 0) + 1
            inputs_rows = [dict(i, n_spectra=kept_by_file.get(i["sha256"], 0)) for i in state["pending_inputs"]
                           if kept_by_file.get(i["sha256"], 0) > 0]
            if len(block):
                block.meta.remove_columns(["source_path", "sha256"])
                store.append(block, inputs=inputs_rows, numeric_columns=numeric)
                known_ids.update(new_ids)
                if state["steps"] is None:
                    state["steps"] = [h if h["step"] != "read" else {"step": "read", "params": {
                        "format": h["params"].get("format")}} for h in block.history]
                state["files_used"] += len(inputs_rows)
            if state["pending_rejects"]:
                store.add_rejected(state["pending_rejects"])
            state.update(pending=[], pending_inputs=[], pending_rows=0, pending_rejects=[])

        def prepare(path, sha):
            """Read and clean one file; returns (spectra or None, rejected objects, notes). Raises for a bad file."""
            s = read_spectra(path, format=format)
            # mask_pixels, done in place on our own fresh object (avoids copying the metadata table)
            s.mask, s.ivar, mask_params = _mask_core(s, mask_bits, sky_lines, 4.0, SKY_LINES)
            s.history.append({"step": "mask_pixels", "params": mask_params})
            frac = _usable(s).mean(axis=1)
            ok = frac >= min_good_fraction
            reasons = [f"only {100 * f:.1f}% of pixels usable after masking (of the file's own pixels, before "
                       f"resampling; minimum {100 * min_good_fraction:.0f}%)" for f in frac]
            already_rest = _has_step(s, "deredshift")
            if rest_frame:
                if z_column not in s.meta.colnames and not already_rest:  # rejects the file, naming the column
                    raise ValueError(_missing_z_column(s, z_column))
                z = _redshifts(s.meta, z_column)  # a non-numeric z rejects the file, naming the values
                no_z = ~(np.isfinite(z) & (z > -1)) & (not already_rest)
                for k in np.flatnonzero(no_z):
                    reasons[k] = f"no redshift ({z_column} is missing or NaN) but rest_frame is set"
                ok &= ~no_z
                if z_column in s.meta.colnames:
                    s.meta[z_column] = z  # numbers in the store, whatever the reader guessed
                # the redshift to remove: none for spectra already in the rest frame (e.g. a table
                # written by write_wide_table after de-redshifting), whose z is kept as it is
                shift = np.zeros(len(s)) if already_rest else z
            ids = s.ids
            rows = [{"file": str(path), "id": str(ids[k]), "reason": reasons[k], "sha256": sha}
                    for k in np.flatnonzero(~ok)]
            if not ok.any():
                return None, rows, []
            if not ok.all():
                s = s[ok]
            s.meta["masked_fraction"] = s.mask.mean(axis=1)  # of the file's pixels; redone on the output grid
            s.meta["snr"] = _snr_core(s)  # signal_to_noise, in place
            s.history.append({"step": "signal_to_noise",
                              "params": {"statistic": "median flux*sqrt(ivar) over kept pixels"}})
            file_notes = schema.add(s.meta)  # a column that cannot be stored rejects the file (MetaTypeError)
            if rest_frame:
                s.meta[_Z_SHIFT] = shift[ok]
            s.meta["source_path"] = np.full(len(s), str(path))
            s.meta["sha256"] = np.full(len(s), sha)
            return s, rows, file_notes

        bar = _progress(total=len(files), desc="ingest", unit="file", enabled=progress)
        try:
            for path in files:
                bar.update(1)
                considered.add(str(path))
                try:
                    sha = file_sha256(path)
                except OSError as exc:
                    reject([{"file": str(path), "id": "", "reason": f"cannot read the file ({exc})", "sha256": ""}])
                    continue
                if sha in done:  # already stored: count each stored input once; report other copies
                    if sha in seen_hash:
                        reject([{"file": str(path), "id": "", "sha256": sha, "reason": f"duplicate of "
                                 f"{seen_hash[sha]} (same SHA-256; its spectra are already in the store)"}])
                        copies.add((str(path), sha))
                    else:
                        seen_hash[sha] = str(path)
                        n_skipped += 1
                    continue
                if sha in retry:
                    retried.add(sha)
                if sha in seen_hash:
                    reject([{"file": str(path), "id": "", "sha256": sha,
                             "reason": f"duplicate of {seen_hash[sha]} (same SHA-256)"}])
                    continue
                seen_hash[sha] = str(path)
                try:
                    s, rows, file_notes = prepare(path, sha)
                except SpectraReadError as exc:
                    reject([{"file": str(path), "id": "", "reason": exc.reason, "sha256": sha}])
                    continue
                except MetaTypeError as exc:  # names the column; the file is named by the row
                    reject([{"file": str(path), "id": "", "reason": str(exc), "sha256": sha}])
                    continue
                except (ValueError, TypeError, KeyError, IndexError, OSError) as exc:
                    log.debug("rejecting %s", path, exc_info=True)
                    reject([{"file": str(path), "id": "", "reason": str(exc) or type(exc).__name__,
                             "sha256": sha}])
                    continue
                reject(rows)
                for note in file_notes:
                    log.warning("%s: %s", path, note)
                    notes.append(f"{Path(path).name}: {note}")
                if s is None:
                    continue
                if state["unit"] is None:
                    state["unit"] = s.flux_unit
                elif s.flux_unit != state["unit"]:
                    reject([{"file": str(path), "id": "", "sha256": sha,
                             "reason": f"flux unit {s.flux_unit!r} differs from the other inputs' {state['unit']!r}"}])
                    continue
                state["pending"].append(s)
                state["pending_inputs"].append({"path": str(path), "sha256": sha, "n_spectra": len(s)})
                state["pending_rows"] += len(s)
                if state["pending_rows"] >= block_size:
                    flush()
            flush()
        finally:
            bar.close()

        # inputs tried again replace their old rejection rows (and missing inputs are listed once)
        store.forget_rejected(sha256s=retried, files=considered, pairs=copies, before=n_rej0)
        n_read = store.n_objects - n_before
        if store.n_objects == 0:
            digest = _failure_digest((Path(r["file"]).name, r["reason"]) for r in new_rejected)
            raise ValueError(f"nothing could be read from {len(files)} input file(s); {len(new_rejected)} rejected"
                             + (f": {digest}" if digest else ""))
        if duplicate_ids:
            log.warning("%d spectra were skipped because a spectrum with the same id was already stored: %s%s",
                        len(duplicate_ids), ", ".join(duplicate_ids[:10]), ", …" if len(duplicate_ids) > 10 else "")
        prov = store.provenance_without_inputs()
        steps = state["steps"] or prov.get("steps", [])
        store.update_provenance(steps=steps, grid=grid_info, input_flux_unit=state["unit"], created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                n_rejected=len(store.rejected))
        store.finalize()
    except KeyboardInterrupt:
        try:
            n_kept = store.n_objects
        except Exception:  # the file may be in any state after an interrupt
            n_kept = None
        store.abort(keep_partial=True)
        how = ("re-run the same command to resume from it" if resume
               else "re-run with resume on (CLI: without --no-resume) to resume from it")
        log.warning("ingest interrupted: the unfinished store %s is kept%s; %s, or delete it to start over%s",
                    partial_path(output), "" if n_kept is None else f" with its {n_kept} committed rows", how,
                    f"; {output} itself is unchanged" if output.exists() else "")
        raise
    except BaseException:
        store.abort(keep_partial=False)
        raise
    rej_table = Table(rows=[(r["file"], r["id"], r["reason"], r["sha256"]) for r in new_rejected],
                      names=("file", "id", "reason", "sha256"), dtype=(str, str, str, str))
    side = rejected_path(output)
    all_rejected = store.rejected
    all_rejected.meta = {"store": str(output), "description": "inputs skipped by serendip ingest, with the reason"}
    write_table(all_rejected, side)
    result = IngestResult(path=output, n_read=n_read, n_total=store.n_objects, n_files=len(files),
                          n_files_used=state["files_used"], n_skipped=n_skipped, rejected=rej_table,
                          grid=grid_info, rejected_path=side, seconds=time.perf_counter() - t0,
                          duplicate_ids=duplicate_ids, notes=notes)
    store.close()
    log.debug("%s", result.summary())
    return result
