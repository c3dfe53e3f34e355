"""Tables in, models and predictions out: the public functions behind ``serendip learn``.

Tables are read in FITS, CSV (optionally gzipped), ECSV or Parquet. Features
are named columns, or colours built from magnitudes (``colors="ugriz"`` gives
``u-g, g-r, r-i, i-z`` plus the ``r`` magnitude). The way features were made
(the *recipe*) is saved with the model, so ``predict`` rebuilds them from a new
table and refuses tables that lack a needed column.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .._logging import get_logger

__all__ = ["read_any_table", "is_identifier_column", "color_features", "resolve_bands", "select_features", "apply_recipe",
           "recommend_table", "train_table", "predict_table", "ID_LIKE", "MAGNITUDE_NAMES"]

log = get_logger(__name__)

#: Columns never used as features by default: identifiers, positions and bookkeeping. A column is
#: matched by its whole name, case-insensitively (``DECL``, ``RAJ2000``), and so are columns whose name
#: ends in ``objid`` or ``_id``. Sky positions are listed in their usual spellings (SDSS, OGLE, VizieR,
#: Gaia, HEASARC); the bare ``l`` and ``b`` are not, because ``B`` is also a magnitude and ``l`` a
#: luminosity or a multipole: name such columns yourself, or pass the features explicitly.
ID_LIKE = {"id", "objid", "specobjid", "run", "rerun", "camcol", "field", "plate", "mjd",
           "fiberid", "fiber", "name", "index", "linearobjectid", "source_file",
           # equatorial positions
           "ra", "dec", "decl", "ra_deg", "dec_deg", "radeg", "decdeg", "dedeg",
           "ra2000", "dec2000", "raj2000", "dej2000", "decj2000", "ra_j2000", "dec_j2000", "de_j2000",
           "_raj2000", "_dej2000", "ra_icrs", "de_icrs", "dec_icrs",
           # galactic and ecliptic positions
           "glon", "glat", "gal_l", "gal_b", "lii", "bii", "elon", "elat", "ecl_lon", "ecl_lat"}


def is_identifier_column(name: str) -> bool:
    """Whether a column name is an identifier, position or bookkeeping column (:data:`ID_LIKE`, or a
    name ending in ``objid`` or ``_id``), case-insensitively."""
    low = str(name).strip().lower()
    return low in ID_LIKE or low.endswith("objid") or low.endswith("_id")


def _read_by_suffix(path: Path, name: str):
    from astropy.table import Table

    from .._io import require

    if name.endswith((".csv", ".csv.gz", ".csv.bz2", ".tsv", ".txt")):
        pd = require("pandas", "learn", f"reading {path.name}")

        sep = "\t" if ".tsv" in name else ","
        df = pd.read_csv(path, sep=sep, comment="#")
        tab = Table.from_pandas(df)
    elif name.endswith((".parquet", ".pq")):
        pd = require("pandas", "learn", f"reading {path.name}")
        require("pyarrow", "parquet", f"reading {path.name}")

        tab = Table.from_pandas(pd.read_parquet(path))
    elif name.endswith((".fits", ".fit", ".fits.gz", ".fts")):
        tab = Table.read(path, format="fits")
        if "SERENDIP" in tab.meta:
            tab.meta.pop("SERENDIP")
    elif name.endswith(".ecsv"):
        tab = Table.read(path, format="ascii.ecsv")
    else:
        raise ValueError(f"cannot read {path}: tables must be .fits, .csv(.gz), .ecsv or .parquet")
    return tab


def read_any_table(path, *, query: str | None = None):
    """Read a FITS/CSV(.gz)/ECSV/Parquet table into an astropy Table.

    Column names are stripped of surrounding blanks. ``query`` (a pandas
    query string such as ``"spec_class == 'GALAXY'"``) keeps matching rows. A file that
    cannot be read as its suffix says raises ``ValueError`` naming it.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such table: {path}")
    name = path.name.lower()
    try:
        tab = _read_by_suffix(path, name)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, ValueError) and str(exc).startswith(f"cannot read {path}"):
            raise
        raise ValueError(f"cannot read {path} as a table: {exc}") from exc
    for c in list(tab.colnames):
        if c != c.strip():
            tab.rename_column(c, c.strip())
    for c in tab.colnames:  # byte strings from FITS become str
        if tab[c].dtype.kind == "S":
            tab[c] = np.char.decode(np.asarray(tab[c]), "ascii", errors="replace")
    if query:
        tab = tab[row_filter(tab, query, path)]
    tab.meta["source"] = str(path)
    return tab


def row_filter(tab, query: str, path="the table"):
    """The boolean mask of the rows of ``tab`` that match ``query`` (a pandas ``eval`` condition).

    Missing values compare as False. A query that does not give one True/False per row (``a = 1``
    for ``a == 1``, or a bare column of numbers) and one that matches no row are errors.
    """
    df = tab.to_pandas()
    try:
        keep = df.eval(query)
    except Exception as exc:
        import keyword

        odd = [c for c in df.columns if keyword.iskeyword(str(c)) or not str(c).isidentifier()]
        hint = (f"; a column whose name is a Python keyword or not a plain name ({', '.join(map(repr, odd[:5]))}) "
                f"must be quoted in backticks, e.g. `{odd[0]}` == 'GALAXY'" if odd else "")
        raise ValueError(f"could not apply the row filter {query!r} to {path}: {exc}{hint}") from exc
    if str(getattr(keep, "dtype", "")) == "boolean":  # a comparison on a column with missing values
        keep = keep.fillna(False)
    keep = np.asarray(keep)
    if keep.shape != (len(df),) or keep.dtype.kind != "b":
        # e.g. "a = 1" (an assignment, not "a == 1") gives a whole table; "redshift" gives numbers
        raise ValueError(f"the row filter {query!r} does not give True or False for each row of {path} "
                         f"(it gives {'a table' if keep.ndim > 1 else f'values of dtype {keep.dtype}'}); "
                         "write a condition such as \"spec_class == 'GALAXY'\" (== compares, = assigns)")
    if not keep.any():
        raise ValueError(f"no rows of {path} match {query!r}")
    return keep


#: Names taken as the magnitude in band ``{b}`` (matched case-insensitively), most explicit first.
#: The bare band letter (``z`` or ``Z``) is used only when none of these is in the table.
MAGNITUDE_NAMES = ("{b}_mag", "{b}mag", "mag_{b}", "modelMag_{b}", "dered_{b}", "psfMag_{b}")


def _find_band(tab, band: str, exclude=()) -> str:
    """Return the column holding the magnitude in ``band``.

    Explicit magnitude names (``MAGNITUDE_NAMES``, e.g. ``z_mag``, ``zmag``, ``modelMag_z``) win
    over the bare band letter; columns in ``exclude`` (the target) are never used.

    Raises
    ------
    ValueError
        When no column fits, or when several do (naming them) so that the choice would be a guess.
    """
    exclude = {e for e in exclude if e is not None}
    explicit = {p.format(b=band).lower() for p in MAGNITUDE_NAMES}
    cols = [c for c in tab.colnames if c not in exclude]
    found = [c for c in cols if c.lower() in explicit] or [c for c in cols if c.lower() == band.lower()]
    if len(found) == 1:
        return found[0]
    if found:
        raise ValueError(f"band {band!r} is ambiguous: columns {found} could each be its magnitude; keep "
                         "only one of them in the table, or build the colours yourself and name them "
                         "with features=[...]")
    looked = [band] + [p.format(b=band) for p in MAGNITUDE_NAMES]
    taken = [c for c in tab.colnames if c in exclude and c.lower() in explicit | {band.lower()}]
    why = (f"; {taken} is the target, which is never used as a magnitude" if taken else "")
    raise ValueError(f"no magnitude column for band {band!r}; looked for {looked} (any case) among "
                     f"{tab.colnames}{why}")


def resolve_bands(tab, bands: str, exclude=()) -> dict:
    """Map each band letter in ``bands`` to its magnitude column in ``tab`` (see :func:`color_features`).

    Parameters
    ----------
    tab : astropy Table
    bands : str
        Band letters, e.g. ``"ugriz"``.
    exclude : iterable of str
        Columns never taken as magnitudes (the target).

    Returns
    -------
    dict
        ``{band: column name}``, in the order of ``bands``.
    """
    out = {b: _find_band(tab, b, exclude) for b in bands}
    used: dict[str, str] = {}
    for b, c in out.items():
        if c in used:
            raise ValueError(f"bands {used[c]!r} and {b!r} both resolve to column {c!r}; rename the "
                             "magnitude columns so that each band has its own")
        used[c] = b
    return out


def color_features(tab, bands: str = "ugriz", reference: str | None = "r", *, columns: dict | None = None,
                   exclude=()):
    """Return ``(names, columns)`` for adjacent colours of ``bands`` plus one reference magnitude.

    ``bands="ugriz"`` gives ``u-g, g-r, r-i, i-z`` and ``r`` (when ``reference="r"``).

    Parameters
    ----------
    tab : astropy Table
    bands : str
        Band letters in wavelength order.
    reference : str or None
        Band whose magnitude is added after the colours.
    columns : dict, optional
        ``{band: column}`` as recorded in a model's recipe; by default each band's column is found
        by name (explicit magnitude names such as ``z_mag`` before the bare letter ``z``).
    exclude : iterable of str
        Columns never taken as magnitudes (the target) when ``columns`` is not given.

    Returns
    -------
    names : list of str
    arrays : list of numpy.ndarray
    """
    bands = bands.strip()
    if len(bands) < 2:
        raise ValueError(f"need at least two bands for colours, got {bands!r}")
    if columns is None:
        columns = resolve_bands(tab, bands, exclude)
    cols = {}
    for b in bands:
        name = columns.get(b)
        if name is None:
            raise ValueError(f"the recipe names no magnitude column for band {b!r} (it has {columns})")
        if name not in tab.colnames:
            raise ValueError(f"the table lacks column {name!r}, the magnitude in band {b!r} used by the model; "
                             f"columns are {tab.colnames}")
        try:
            cols[b] = np.asarray(_column(tab, name), dtype=np.float64)  # masked magnitudes become NaN
        except (TypeError, ValueError) as exc:
            raise ValueError(f"column {name!r} (band {b!r}) is not numeric: {exc}") from exc
    names, arrays = [], []
    for a, b in zip(bands[:-1], bands[1:]):
        names.append(f"{a}-{b}")
        arrays.append(cols[a] - cols[b])
    if reference:
        if reference not in bands:
            raise ValueError(f"reference band {reference!r} is not among {bands!r}")
        names.append(reference)
        arrays.append(cols[reference])
    return names, arrays


#: What may follow the target's name in a column derived from it (``z_err``, ``zErr``, ``zWarning``,
#: ``z_noqso``...). Directly after the name (``zerr``) only these words count; after ``_`` anything
#: counts except a magnitude or flux (``z_mag``, ``z_flux``), which is photometry in a band of that name.
TARGET_DERIVED_WORDS = ("err", "error", "errs", "errors", "sig", "sigma", "unc", "ivar", "var", "warning",
                        "warnings", "warn", "flag", "flags", "conf", "confidence", "qual", "quality", "status",
                        "noqso", "person", "pred", "true", "spec", "phot", "photo", "lo", "hi", "low", "high",
                        "min", "max", "prob", "proba")
_PHOTOMETRY_WORDS = ("mag", "mags", "magnitude", "magnitudes", "flux", "fluxes", "dered", "extinction",
                     "psfmag", "modelmag", "cmodelmag", "petromag", "fibermag", "fiber2mag")


def _derived_from_target(column: str, target: str | None) -> bool:
    """Whether ``column`` looks like the target itself or a quantity derived from it (its error, flag...)."""
    if not target:
        return False
    low, t = column.lower(), target.lower()
    if low == t:
        return True
    if not low.startswith(t):
        return False
    rest = low[len(t):]
    if rest.startswith("_"):
        first = rest[1:].split("_")[0]
        return bool(first) and first not in _PHOTOMETRY_WORDS
    first = rest.split("_")[0]
    return first in TARGET_DERIVED_WORDS


#: Last words of a column name that mark another encoding of the same quantity: ``LCtype_name`` and
#: ``LCtype_code`` both name the class ``LCtype`` (see :func:`_same_quantity_name`).
RECODING_WORDS = ("name", "names", "code", "codes", "label", "labels", "num", "number", "id", "idx", "int",
                  "str", "string", "text", "cat", "enc", "encoded", "abbr")

#: Where a column name breaks into words: any run of characters other than letters and digits, and a
#: change from a lower-case letter or digit to an upper-case letter (``zErr`` is ``z`` + ``err``).
_WORD_BREAK = re.compile(r"[^0-9A-Za-z]+|(?<=[a-z0-9])(?=[A-Z])")


def _name_words(name: str) -> list[str]:
    """The lower-case words of a column name: ``"spec_class_code"`` -> ``["spec", "class", "code"]``."""
    return [w.lower() for w in _WORD_BREAK.split(str(name)) if w]


def _name_stem(words: list[str]) -> list[str]:
    """``words`` without trailing :data:`RECODING_WORDS`, keeping at least the first word."""
    words = list(words)
    while len(words) > 1 and words[-1] in RECODING_WORDS:
        words.pop()
    return words


def _same_quantity_name(column: str, target: str | None) -> bool:
    """Whether ``column`` is named as the target in another form (rule (a) of target leakage).

    Names are compared as whole words (see :func:`_name_words`), case-insensitively. The column
    names the target's quantity when

    * its words are the leading words of the target's name (``LCtype`` for ``LCtype_name``,
      ``spec_class`` for ``spec_class_code``, ``r`` for ``r_mag``), or
    * it has the target's stem, the name without trailing :data:`RECODING_WORDS` (``class_code`` for
      ``class_name``, ``class`` for ``class_name``).

    Whole words avoid false positives: ``z`` is not a word of ``zmag``, ``r`` not one of
    ``redshift``. A column that *extends* the target's name (``z_err``, ``zWarning``, ``z_mag`` for
    the target ``z``) is another quantity here; :func:`_derived_from_target` decides about it
    (errors and flags are left out, magnitudes kept).
    """
    if not target or column == target:
        return False
    cw, tw = _name_words(column), _name_words(target)
    if not cw or not tw:
        return False
    if len(cw) < len(tw) and tw[:len(cw)] == cw and all(w in RECODING_WORDS + ("mag",) for w in tw[len(cw):]):
        return True  # LCtype for LCtype_name, r for r_mag; but not g for the colour g_r
    return _name_stem(cw) == _name_stem(tw)


#: A regression target's transformed copy is only looked for on at least this many rows.
_MONOTONE_MIN_ROWS = 20


def _strictly_monotone_in(x: np.ndarray, y: np.ndarray) -> bool:
    """Whether ``x`` is a strictly increasing or decreasing function of ``y`` (with at least 3 distinct
    values): sorted by ``y``, ``x`` never ties where ``y`` changes and always moves the same way."""
    order = np.argsort(y, kind="stable")
    ys, xs = y[order], x[order]
    step = np.diff(ys) > 0
    if step.sum() < 2:
        return False
    same_y = ~step
    if np.any(xs[1:][same_y] != xs[:-1][same_y]):  # one target value, two column values: not a function
        return False
    dx = np.diff(xs)[step]
    return bool(np.all(dx > 0) or np.all(dx < 0))


def _inferred_task(yv: np.ndarray, ymiss: np.ndarray) -> str | None:
    """:func:`serendip.learn.recommend.infer_task` on the target's present values; None where it cannot tell."""
    from .recommend import infer_task

    try:
        return infer_task(yv[~ymiss].astype(str) if yv.dtype.kind == "O" else yv[~ymiss])
    except ValueError:
        return None


def _task_of(tab, target: str, task: str | None) -> str | None:
    """``task`` if given, else the task the target column implies (None where it cannot tell)."""
    if task is not None:
        return task
    from .train import _target_and_missing

    yv, ymiss = _target_and_missing(tab[target])
    return None if ymiss.all() or np.ndim(yv) != 1 else _inferred_task(yv, ymiss)


def _target_copies(tab, target: str, columns, task: str | None = None) -> dict[str, str]:
    """The numeric ``columns`` that hold the target in another form, with the reason for each.

    Checked on the rows where both the column and the target have a value (masked, NaN and blank
    values are missing); a column with fewer than two such rows is never flagged.

    * (c) any target: the column equals the target (numbers equal to a relative 1e-6, so that a
      float32 copy counts); for a regression target, also a column that is a strictly monotone
      function of it on at least ``_MONOTONE_MIN_ROWS`` rows (``v = c z``, ``log z``): a measured
      feature never tracks the target without a single exception;
    * (b) a classification target (``task``, else :func:`serendip.learn.recommend.infer_task`): the
      column is a one-to-one recoding of it, each class having exactly one value of the column and
      each value exactly one class, with at least two classes and at least one class on two rows
      (on a table with one row per class every column would qualify).

    Returns
    -------
    dict
        ``{column: why}``, in the order of ``columns``.
    """
    from .train import _target_and_missing

    yv, ymiss = _target_and_missing(tab[target])
    if ymiss.all() or np.ndim(yv) != 1:
        return {}
    if yv.dtype.kind == "O":
        yv = yv.astype(str)
    if task is None:
        task = _inferred_task(yv, ymiss)
    y_num = yv.astype(np.float64) if yv.dtype.kind in "iufb" else None
    codes = None
    if task == "classification":
        codes = np.full(len(yv), -1, dtype=np.int64)
        codes[~ymiss] = np.unique(yv[~ymiss], return_inverse=True)[1].ravel()
    out: dict[str, str] = {}
    for c in columns:
        if c == target or c not in tab.colnames or tab[c].dtype.kind not in "iufb" or np.ndim(tab[c]) != 1:
            continue
        cv, cmiss = _target_and_missing(tab[c])
        both = ~ymiss & ~cmiss
        if both.sum() < 2:
            continue
        cb = cv[both]
        if y_num is not None and np.allclose(cb.astype(np.float64), y_num[both], rtol=1e-6, atol=1e-12):
            out[c] = f"equal to the target on all {int(both.sum())} rows where both have a value"
            continue
        if task == "regression" and y_num is not None and both.sum() >= _MONOTONE_MIN_ROWS:
            if _strictly_monotone_in(cb.astype(np.float64), y_num[both]):
                out[c] = (f"a strictly monotone function of the target on all {int(both.sum())} rows where both "
                          "have a value (a rescaled or transformed copy, e.g. a velocity c*z or log z)")
                continue
        if codes is None:
            continue
        tb = codes[both]
        n_classes = np.unique(tb).size
        if n_classes < 2 or tb.size <= n_classes or np.unique(cb[:1000]).size > n_classes:
            continue  # cheap exit: a column with more values than there are classes is no recoding
        values, inv = np.unique(cb, return_inverse=True)
        if values.size == n_classes and np.unique(tb * values.size + inv.ravel()).size == n_classes:
            out[c] = (f"a one-to-one recoding of its {n_classes} classes (each class has a single value "
                      "and each value a single class)")
    return out


#: Column names that mean a spectroscopic redshift. A bare ``z`` is left out: in photometric tables it
#: is usually the z-band magnitude.
SPECTROSCOPIC_REDSHIFT_NAMES = frozenset({"redshift", "zspec", "z_spec", "specz", "spec_z", "zsp", "z_true",
                                          "zbest", "z_best"})


def _warn_spectroscopic_redshift(target: str | None, columns, task: str | None) -> None:
    """Warn when a default feature of a classification target is a spectroscopic redshift.

    The redshift is measured from the same spectrum as a spectroscopic class (stars sit at z ≈ 0,
    quasars mostly beyond the galaxies), so it is a legitimate feature for classifying spectra, but a
    model that uses it cannot classify objects that have only photometry. It is kept; the warning
    says how to leave it out.
    """
    found = [c for c in columns if c.strip().lower() in SPECTROSCOPIC_REDSHIFT_NAMES]
    if not found or target is None or task != "classification":
        return
    log.warning("feature(s) %s look like a spectroscopic redshift and will be used to predict %r. A redshift "
                "comes from the same spectrum as a spectroscopic class, so the model will need spectra for new "
                "objects too. For a classifier from photometry alone, leave it out: features=[...] (CLI: "
                "--features) or colors=\"ugriz\" (CLI: --colors ugriz)", found, target)


def _default_features(tab, target: str | None, group: str | None = None, task: str | None = None) -> list[str]:
    out = []
    left_out: dict[str, list[str]] = {"derived from the target": [], "the group column": [],
                                      "identifiers": [], "non-numeric or not one value per row": []}
    leaks: dict[str, list[str]] = {}
    for c in tab.colnames:
        if c == target:
            continue
        if _derived_from_target(c, target):
            left_out["derived from the target"].append(c)
        elif group is not None and c == group:
            left_out["the group column"].append(c)
        elif is_identifier_column(c):
            left_out["identifiers"].append(c)
        elif tab[c].dtype.kind not in "iufb" or np.ndim(tab[c]) != 1:
            left_out["non-numeric or not one value per row"].append(c)
        else:
            if _same_quantity_name(c, target):
                leaks[c] = ["named like the target"]
            out.append(c)
    for why, cols in left_out.items():
        if cols:
            what = f"{why} {target!r}" if why == "derived from the target" else why
            log.info("not used as features by default (%s): %s", what, cols)
    if target is not None:
        task = _task_of(tab, target, task)  # once, for the leakage checks and the redshift warning
        for c, why in _target_copies(tab, target, out, task).items():
            leaks.setdefault(c, []).append(why)
    if leaks:
        out = [c for c in out if c not in leaks]
        log.warning("not used as features by default, because each looks like the target %r in another form "
                    "(a model would learn the answer from it, not from the data): %s; name them in "
                    "features=[...] (CLI: --features) to use them anyway", target,
                    "; ".join(f"{c!r}: {', '.join(why)}" for c, why in leaks.items()))
    _warn_spectroscopic_redshift(target, out, task)
    if not out:
        extra = f"; {list(leaks)} were left out as the target in another form" if leaks else ""
        raise ValueError(f"no numeric feature columns found; name them with features=[...] "
                         f"(columns: {tab.colnames}){extra}")
    return out


def _column(tab, name: str):
    if name not in tab.colnames:
        raise ValueError(f"no column {name!r} in the table; columns are {tab.colnames}")
    col = tab[name]
    if np.ma.isMaskedArray(col) or getattr(col, "mask", None) is not None:
        arr = np.ma.asarray(col)
        if arr.dtype.kind == "f" or (arr.dtype.kind in "iu" and not np.ma.is_masked(arr)):
            return arr.astype(np.float64).filled(np.nan) if arr.dtype.kind == "f" else np.asarray(arr)
        if arr.dtype.kind in "iu":
            return arr  # integers keep their mask: class codes stay integers (4, not 4.0) when some are missing
        if arr.dtype.kind in "US":
            return np.asarray(arr.filled(""))
        return arr if np.ma.is_masked(arr) else np.asarray(arr)  # booleans/objects keep their mask (missing)
    return np.asarray(col)


def select_features(tab, target: str | None = None, features=None, colors: str | None = None,
                    group: str | None = None, task: str | None = None):
    """Build the feature table (and target) from a table.

    Parameters
    ----------
    tab : astropy Table
    target : str, optional
        Target column; rows with a missing target are kept here (``train`` drops them with a warning).
    features : list of str, optional
        Feature columns. Default: every numeric column except the target, columns derived from it
        (its error, warning or flag columns such as ``z_err``, ``zErr``, ``zWarning``; but not
        ``z_mag``), ``group``, identifier-like columns (``ID_LIKE``) and columns that look like the
        target in another form (target leakage), unless ``colors`` is given. The last are those
        named as the target (``LCtype`` or ``LCtype_code`` for ``LCtype_name``: whole words of the
        name, see ``_same_quantity_name``), those equal to the target, and, for a classification
        target, one-to-one recodings of its classes; they are left out with a logged warning.
        Other exclusions are logged at INFO level. A default feature of a classification target
        named as a spectroscopic redshift (``SPECTROSCOPIC_REDSHIFT_NAMES``) is kept, with a warning
        that new objects will need spectra too. Named features are always used, but a warning
        is logged for those equal to the target or recoding its classes.
    colors : str, optional
        Bands for adjacent colours plus the ``r`` (or middle) magnitude, e.g. ``"ugriz"``;
        ``features`` are appended after them. Each band's magnitude column is an explicit name
        (``z_mag``, ``zmag``, ``mag_z``, ``modelMag_z``, ``dered_z``, ``psfMag_z``) or else the bare
        letter (``z``), never the target; several candidates for one band are an error. The
        columns used are recorded in the recipe (``recipe["bands"]``).
    group : str, optional
        Column of group labels; never a default feature.
    task : {"classification", "regression"}, optional
        How the target will be learnt, for the leakage checks; default: inferred from the target
        (:func:`serendip.learn.recommend.infer_task`).

    Returns
    -------
    X : astropy Table of float features, in model order
    y : numpy array or None
    recipe : dict
        How to rebuild ``X`` from a new table (saved with the model).
    """
    if target is not None and target not in tab.colnames:
        raise ValueError(f"no target column {target!r} in the table; columns are {tab.colnames}")
    recipe: dict[str, Any] = {}
    if colors:
        ref = "r" if "r" in colors else colors[len(colors) // 2]
        recipe.update({"colors": colors, "reference": ref,
                       "bands": resolve_bands(tab, colors.strip(), exclude=(target,))})
    feats = list(features) if features else ([] if colors else _default_features(tab, target, group, task))
    if target in feats:
        raise ValueError(f"the target {target!r} is also listed as a feature")
    absent = [f for f in feats if f not in tab.colnames]
    if absent:  # named by the caller, not by a model: say so (apply_recipe's message is about models)
        raise ValueError(f"no feature column(s) {absent} in the table; columns are {tab.colnames}")
    if features and target is not None:
        copies = _target_copies(tab, target, feats, task)
        if copies:
            log.warning("feature(s) %s look like the target %r in another form (%s): they are used because "
                        "they were named, but a model would learn the answer from them; drop them unless "
                        "they are really known before the target", list(copies), target,
                        "; ".join(f"{c!r}: {why}" for c, why in copies.items()))
    recipe["features"] = feats
    X = apply_recipe(tab, recipe)
    y = _column(tab, target) if target is not None else None
    return X, y, recipe


def apply_recipe(tab, recipe: dict):
    """Rebuild the model's feature table from ``tab`` following ``recipe``; clear errors for missing columns."""
    from astropy.table import Table

    names, arrays = [], []
    if recipe.get("colors"):
        # models saved before the recipe recorded its magnitude columns find them by name
        n, a = color_features(tab, recipe["colors"], recipe.get("reference", "r"), columns=recipe.get("bands"))
        names += n
        arrays += a
    missing = [f for f in recipe.get("features", []) if f not in tab.colnames]
    if missing:
        raise ValueError(f"the table lacks feature column(s) {missing} used by the model; "
                         f"columns are {tab.colnames}")
    for f in recipe.get("features", []):
        col = _column(tab, f)
        if col.dtype.kind not in "iufb":
            raise ValueError(f"feature column {f!r} is not numeric (dtype {col.dtype}); encode it or drop it")
        names.append(f)
        arrays.append(col.astype(np.float64))
    if not names:
        raise ValueError("no features: give feature columns or colours")
    return Table(arrays, names=names)


def recommend_table(path, target: str, *, features=None, colors: str | None = None, raw: bool = False,
                    query: str | None = None, task: str | None = None):
    """Read a table and return :func:`serendip.learn.recommend`'s ranked list for it."""
    from .recommend import recommend

    tab = read_any_table(path, query=query)
    X, y, _ = select_features(tab, target, features, colors, task=task)
    # recommend leaves out the rows whose target is missing (masked, NaN, empty), as train drops them
    return recommend(np.empty((len(y), len(X.colnames))), y, task=task, raw=raw)


def train_table(path, target: str, output=None, *, features=None, colors: str | None = None,
                algorithm: str = "auto", query: str | None = None, group: str | None = None,
                report: bool = True, **train_kwargs):
    """Train on a table; optionally save the model and its evaluation report.

    Parameters
    ----------
    path : path-like
        FITS/CSV/Parquet table.
    target : str
        Target column.
    output : path-like, optional
        ``model.skops`` or ``model.joblib``. The HTML report goes to ``<stem>.report.html`` and
        a summary PNG to ``<stem>.report.png`` beside it (all written atomically).
    features, colors : see :func:`select_features`
    algorithm : str
        See :func:`serendip.learn.train`.
    query : str, optional
        Row filter (pandas query syntax), e.g. ``"spec_class == 'GALAXY'"``.
    group : str, optional
        Column of group labels for grouped splits; it is not a default feature.
    report : bool
        Write the report beside the model.
    **train_kwargs
        Passed to :func:`serendip.learn.train`.

    Returns
    -------
    result : TrainResult
    written : dict
        Paths written (``model``, ``metadata``, ``report``, ``png``).
    """
    from .train import train

    if output is not None and not str(output).endswith((".skops", ".joblib")):  # fail before training
        raise ValueError(f"model files end in .skops (preferred) or .joblib; got {Path(output).name!r}")
    if output is not None and str(output).endswith(".skops"):  # fail before training, not after
        from .._io import require

        require("skops.io", "learn", "saving a .skops model")
    tab = read_any_table(path, query=query)
    if group is not None and group not in tab.colnames:
        raise ValueError(f"no group column {group!r} in the table; columns are {tab.colnames}")
    X, y, recipe = select_features(tab, target, features, colors, group=group, task=train_kwargs.get("task"))
    groups = _column(tab, group) if group else None
    with warnings.catch_warnings(record=True) as caught:  # kept for the report, then shown as usual
        warnings.simplefilter("always")
        result = train(X, y, algorithm=algorithm, groups=groups, target_name=target, **train_kwargs)
    notes = []
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if issubclass(w.category, UserWarning) and str(w.message) not in notes:
            notes.append(str(w.message))
    result.feature_recipe = recipe
    written: dict[str, Path] = {}
    if output is not None:
        from .persist import save_model

        output = Path(output)
        from .._io import file_sha256

        source_sha256 = file_sha256(path)
        save_model(result, output, metadata={"source_table": str(path), "source_sha256": source_sha256,
                                             "query": query, "group": group})
        written["model"] = output
        written["metadata"] = output.with_name(output.name + ".json")
        if report:
            from .report import write_report

            html = output.with_name(output.stem + ".report.html")
            png = output.with_name(output.stem + ".report.png")
            write_report(result, html, png=png, title=f"serendip learn: {target} from {Path(path).name}",
                         provenance={"source table": str(Path(path).resolve()),
                                     "source sha256": source_sha256, "row filter": query or "none",
                                     "group column": group, "model file": str(output.resolve()),
                                     "warnings while training": " | ".join(notes) or None})
            written["report"] = html
            written["png"] = png
    return result, written


def predict_table(model_path, table_path, output, *, trusted: bool | list = False, query: str | None = None,
                  keep_columns=None):
    """Apply a saved model to a table and write the predictions atomically.

    The output holds identifier-like columns of the input (or ``keep_columns``; when there are
    none, a ``row`` column with the input table's row, 0-based and counted before ``query``, so
    it joins back to the whole input), the prediction
    ``<target>_pred``, ``n_features_imputed`` (features missing in that row and filled with the
    training medians) and, for classifiers with probabilities, one ``proba_<class>`` column per class.
    Its ``meta`` records the model file, its SHA-256 and the algorithm.

    Returns
    -------
    astropy.table.Table
        The table written to ``output`` (``.fits``, ``.parquet``, ``.csv`` or ``.ecsv``).
    """
    from astropy.table import Table

    from .._io import check_table_path, file_sha256, write_table
    from .persist import load_model

    check_table_path(output)  # before loading and predicting
    saved = load_model(model_path, trusted=trusted)
    tab = read_any_table(table_path)
    rows = np.arange(len(tab))
    if query:
        keep_rows = row_filter(tab, query, table_path)
        tab, rows = tab[keep_rows], rows[keep_rows]
    recipe = saved.feature_recipe or {"features": saved.feature_names or []}
    X = apply_recipe(tab, recipe)
    if saved.feature_names is not None and list(X.colnames) != list(saved.feature_names):
        from .train import check_feature_names

        check_feature_names(X.colnames, saved.feature_names)
    pred = saved.predict(X)
    keep = keep_columns if keep_columns is not None else [c for c in tab.colnames if c.lower() in ID_LIKE]
    out = Table()
    for c in keep:
        if c not in tab.colnames:
            raise ValueError(f"no column {c!r} to keep; columns are {tab.colnames}")
        out[c] = tab[c]
    if not keep:  # nothing to join on: give the row of the input table (0-based, before any --where filter)
        out["row"] = rows
    target = saved.metadata.get("target_name") or "target"
    out[f"{target}_pred"] = pred
    # missing features are imputed (training medians); say how many per row so no guess passes as a measurement
    n_missing = np.zeros(len(tab), dtype=np.int32)
    for c in X.colnames:
        n_missing += ~np.isfinite(np.asarray(_column(X, c), dtype=float))
    out["n_features_imputed"] = n_missing
    if n_missing.any():
        log.warning("%d of %d rows had missing features that were imputed (%d with every feature missing); "
                    "see the n_features_imputed column", int((n_missing > 0).sum()), len(tab),
                    int((n_missing == len(X.colnames)).sum()))
    model = saved.model
    if saved.task == "classification" and hasattr(model, "predict_proba"):
        try:
            proba = saved.predict_proba(X)
            classes = getattr(model, "classes_", None)
            classes = list(saved.metadata.get("classes") or []) if classes is None else list(classes)
            if len(classes) != proba.shape[1]:
                raise ValueError(f"the model gives {proba.shape[1]} class probabilities but names {len(classes)} "
                                 f"classes ({classes}); the model file is inconsistent")
            for k, cl in enumerate(classes):
                out[f"proba_{cl}"] = proba[:, k]
        except (AttributeError, NotImplementedError):
            pass
    out.meta.update({"model_file": str(model_path), "model_sha256": file_sha256(model_path),
                     "algorithm": saved.metadata.get("algorithm"), "source_table": str(table_path),
                     "query": query, "n_objects": len(out)})
    write_table(out, output)
    return out
