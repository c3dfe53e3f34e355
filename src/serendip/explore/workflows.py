"""File-to-file functions behind ``serendip embed``, ``serendip cluster`` and ``serendip detect``.

Each reads an input (a store made by ``serendip ingest``, a spectra file, a
``.npy``/``.npz`` matrix, or a table of feature columns), does one job, and
writes its result atomically with provenance in the table metadata.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._logging import get_logger

__all__ = ["ExploreInput", "load_input", "embedding_columns", "default_feature_columns", "is_bookkeeping_column", "LABEL_LIKE", "run_embed", "run_cluster", "run_detect"]

log = get_logger(__name__)

_TABLE_SUFFIXES = (".csv", ".ecsv", ".parquet", ".pq", ".fits", ".fit", ".fits.gz")
_ID_COLUMNS = ("id", "objid", "specobjid", "name")


@dataclass
class ExploreInput:
    """What :func:`load_input` read.

    Attributes
    ----------
    features : ndarray (N, M)
        Finite features (spectra are median-normalised and masked pixels filled).
    ids : ndarray of str
    meta : astropy Table
        Per-object metadata (``id`` plus whatever the input carried: snr, z, class, ...).
    spectra : Spectra or None
        The spectra, when the input held spectra.
    source : str
        Description for provenance.
    columns : list of str or None
        Feature column names (table inputs).
    """

    features: np.ndarray
    ids: np.ndarray
    meta: object
    spectra: object = None
    source: str = ""
    columns: list | None = None


def _from_spectra(spectra, source, max_pixels=None) -> ExploreInput:
    from .compare import detector_features

    if hasattr(spectra, "iter_blocks") and not hasattr(spectra, "flux"):
        from ..spectra import Spectra

        spectra = Spectra.concatenate(list(spectra.iter_blocks(65536)))
    feats = detector_features(spectra, max_pixels=max_pixels)
    return ExploreInput(feats, spectra.ids, spectra.meta, spectra, source)


#: Per-object columns the pipeline's ``tables/embedding`` carries beside its coordinates: provenance, not
#: features (``sequence_position`` is NaN for objects outside the sequence).
_EMBEDDING_EXTRAS = ("weirdness", "sequence_position", "cluster")


def _numeric_1d(tab, name) -> bool:
    return tab[name].ndim == 1 and np.asarray(tab[name]).dtype.kind in "fiu"


def embedding_columns(tab) -> list[str] | None:
    """The coordinate columns of an embedding table, or None when ``tab`` is not one.

    An embedding table is either

    - the output of ``serendip embed`` (:func:`run_embed`): its ``embed_1``, ``embed_2``, ...
      columns (in that order) are the coordinates; or
    - the pipeline's ``tables/embedding``: ``x`` and ``y`` (plus ``z`` if present), recognised
      by its ``meta['embed']`` or, when the metadata were lost, by having no other numeric
      columns than those and :data:`_EMBEDDING_EXTRAS` (weirdness, sequence_position, cluster).

    The other columns (a colour column, weirdness, sequence position, cluster labels) are
    provenance, not features, and are never coordinates.
    """
    emb = sorted((c for c in tab.colnames if c.startswith("embed_") and c[6:].isdigit() and _numeric_1d(tab, c)),
                 key=lambda c: int(c[6:]))
    if emb:
        return emb
    xyz = [c for c in ("x", "y", "z") if c in tab.colnames and _numeric_1d(tab, c)]
    if xyz[:2] != ["x", "y"]:
        return None
    others = [c for c in tab.colnames if c not in xyz and c not in _ID_COLUMNS and _numeric_1d(tab, c)]
    if "embed" in tab.meta or (others and all(c in _EMBEDDING_EXTRAS for c in others)):
        return xyz
    return None


#: Numeric columns that name a class rather than measure something: not features by default.
LABEL_LIKE = frozenset({"class", "subclass", "target", "target_class", "label", "labels", "is_pulsar"})


def is_bookkeeping_column(name: str) -> bool:
    """True for an identifier, sky position, survey bookkeeping or class-label column name.

    The rule of :func:`serendip.learn.tables.select_features` (``ID_LIKE``, names ending
    in ``objid`` or ``_id``) plus :data:`LABEL_LIKE`; case-insensitive.
    """
    from ..learn.tables import is_identifier_column

    return is_identifier_column(name) or name.strip().lower() in LABEL_LIKE


def default_feature_columns(tab, source: str = "table") -> list[str]:
    """The numeric one-value-per-row columns of ``tab`` that are measurements.

    Identifiers, sky positions, survey bookkeeping (plate, MJD, fibre, run, ...) and class
    labels are left out (see :func:`is_bookkeeping_column`): a weirdness or a map computed on
    them would find the odd plate or the odd class, not the odd object. What is left out is
    logged; pass the columns explicitly (``--columns``) to use any of them.
    """
    numeric = [c for c in tab.colnames if _numeric_1d(tab, c)]
    skipped = [c for c in numeric if is_bookkeeping_column(c)]  # covers _ID_COLUMNS
    if skipped:
        log.info("%s: left out of the features as identifiers, positions, bookkeeping or labels: %s "
                 "(choose columns with --columns to use them)", source, skipped)
    return [c for c in numeric if c not in skipped]


def _from_table(tab, source, columns=None) -> ExploreInput:
    from astropy.table import Table

    from .._validation import check_matrix

    idcol = next((c for c in _ID_COLUMNS if c in tab.colnames), None)
    n = len(tab)
    ids = np.asarray(tab[idcol]).astype(str) if idcol else np.arange(n).astype(str)
    if columns is None:
        columns = embedding_columns(tab)
        if columns is not None:
            log.info("%s is an embedding table: using its coordinates %s as features", source, columns)
        else:
            columns = default_feature_columns(tab, source)
        if not columns:
            raise ValueError(f"{source}: no numeric feature columns found (columns: {tab.colnames})")
    missing = [c for c in columns if c not in tab.colnames]
    if missing:
        raise ValueError(f"{source}: no column(s) {missing}; available: {tab.colnames}")
    cols = []
    for c in columns:
        v = np.ma.asarray(tab[c])
        if v.dtype.kind not in "fiub":
            raise ValueError(f"{source}: column {c!r} is not numeric (dtype {v.dtype}); drop it with --columns")
        cols.append(np.asarray(np.ma.filled(v.astype(float), np.nan)))
    X = np.column_stack(cols)
    bad = ~np.isfinite(X)
    if bad.any():
        r, c = np.nonzero(bad)
        raise ValueError(f"{source}: {int(bad.sum())} NaN/missing value(s), first in column {columns[c[0]]!r} "
                         f"of object {str(ids[r[0]])!r} (row {int(r[0])}); fill or drop them first, or choose "
                         "the feature columns (--columns)")
    X = check_matrix(X, name=source, ids=ids)
    meta = Table({"id": ids})
    for c in tab.colnames:
        if c != idcol and tab[c].ndim == 1:
            meta[c] = tab[c]
    return ExploreInput(X, ids, meta, None, source, list(columns))


def load_input(source, *, columns=None, max_pixels: int | None = None) -> ExploreInput:
    """Read the input of an exploration command.

    Parameters
    ----------
    source : path, array, Spectra or store
        A store made by ``serendip ingest`` (``.h5``); a ``.npy`` matrix; a ``.npz`` with
        ``X`` or ``flux`` (optional ``id``/``ids``, ``snr``, ``z``; with ``wavelength`` it is
        read as spectra); a table (``.fits``/``.csv``/``.ecsv``/``.parquet``) whose numeric
        columns are the features (choose with ``columns``); or a spectra file that
        :func:`serendip.spectra.io.read_spectra` understands.
    columns : sequence of str, optional
        Feature columns of a table input (default: the coordinates of an embedding table,
        see :func:`embedding_columns`; else every numeric column except identifiers,
        positions, survey bookkeeping and class labels, see :func:`default_feature_columns`).
    max_pixels : int, optional
        Bin spectra to at most this many pixels.

    Returns
    -------
    ExploreInput
    """
    from astropy.table import Table

    if not isinstance(source, (str, Path)):
        if hasattr(source, "wavelength") or hasattr(source, "iter_blocks"):
            return _from_spectra(source, type(source).__name__, max_pixels)
        if hasattr(source, "colnames"):
            return _from_table(source, "table", columns)
        from .._validation import check_matrix

        X = check_matrix(source, name="X")
        ids = np.arange(X.shape[0]).astype(str)
        return ExploreInput(X, ids, Table({"id": ids}), None, "array")
    from ..spectra.inputs import open_input
    from ..spectra.store import is_store

    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"no such input: {path}")
    name = path.name.lower()
    if path.is_file() and not is_store(path) and name.endswith(_TABLE_SUFFIXES) and not _is_spectra_file(path):
        from .._io import read_table

        return _from_table(read_table(path), str(path), columns)
    return _from_opened(open_input(path), max_pixels)


def _is_spectra_file(path: Path) -> bool:
    """True for a FITS file one of the spectra readers recognises (else it is read as a feature table)."""
    if not path.name.lower().endswith((".fits", ".fit", ".fits.gz")):
        return False
    from ..spectra.io import identify_format

    try:
        identify_format(path)
    except Exception:
        return False
    return True


def _from_opened(opened, max_pixels=None) -> ExploreInput:
    """Features from whatever :func:`serendip.spectra.open_input` opened."""
    from .._validation import check_matrix

    data = opened.data
    if opened.is_spectra:
        spectra = data.load() if hasattr(data, "load") else data
        return _from_spectra(spectra, opened.description, max_pixels)
    if opened.wavelength is not None:
        from ..spectra import Spectra

        return _from_spectra(Spectra(opened.wavelength, np.asarray(data), meta=opened.meta), opened.description,
                             max_pixels)
    X = check_matrix(data, name=opened.description, ids=opened.ids)
    return ExploreInput(X, opened.ids, opened.meta, None, opened.description)


def _color_values(inp: ExploreInput, color_by, color_table):
    if color_by is None:
        return None
    if color_table is not None:
        from .._io import read_table

        tab = read_table(color_table)
        if color_by not in tab.colnames or "id" not in tab.colnames:
            raise ValueError(f"{color_table}: needs columns 'id' and {color_by!r}; it has {tab.colnames}")
        lookup = dict(zip(np.asarray(tab["id"]).astype(str), np.asarray(tab[color_by])))
        missing = [i for i in inp.ids if i not in lookup]
        if missing:
            raise ValueError(f"{color_table}: {len(missing)} object(s) have no {color_by!r} value, e.g. id "
                             f"{missing[0]!r}")
        return np.asarray([lookup[i] for i in inp.ids])
    if color_by not in inp.meta.colnames:
        raise ValueError(f"cannot colour by {color_by!r}: the input has columns {inp.meta.colnames} "
                         "(or give --color-table with an id column)")
    col = np.ma.asarray(inp.meta[color_by])
    return np.asarray(col.filled(np.nan) if col.dtype.kind == "f" else col.data)


def scale_features(features: np.ndarray, scale=None) -> np.ndarray:
    """Features rescaled per column: ``None`` (as they are), ``"standard"`` (zero mean, unit
    variance) or ``"robust"`` (median and interquartile range). Catalogue features in unlike
    units (a period in days beside a colour in magnitudes) need one of the last two, or the
    largest-valued column decides every distance."""
    from ..outliers.baselines import make_scaler

    scaler = make_scaler(scale)
    return features if scaler is None else scaler.fit_transform(features)


def run_embed(source, output, *, method: str = "pca", n_components: int = 2, color_by: str | None = None,
              color_table=None, columns=None, scale=None, random_state=0, png=True, progress: bool = True,
              **kwargs):
    """Embed an input and write ``id, embed_1, embed_2, ...`` (plus the colour column) and a PNG.

    Parameters
    ----------
    source : path or data
        See :func:`load_input`.
    output : path
        Table file (``.parquet``, ``.fits``, ``.csv``, ``.ecsv``).
    method, n_components, random_state, **kwargs
        Passed to :func:`serendip.explore.embed`.
    color_by : str, optional
        A column of the input's metadata (or of ``color_table``) to colour the PNG by.
    color_table : path, optional
        A table with ``id`` and ``color_by`` (e.g. scores from ``serendip weird``), joined on id.
    scale : {None, "standard", "robust"}
        Rescale each feature first (see :func:`scale_features`); recorded in ``meta``.
    png : bool or path
        Also write the map: ``True`` (default) writes a PNG named after the output, a path
        writes that file in the format its extension names (PNG when it has none).

    Returns
    -------
    (astropy Table, Path or None)
        The written table and the PNG path.
    """
    from astropy.table import Table

    from .._io import check_table_path, write_table
    from .._version import __version__
    from ..plotting import figure_path, plot_embedding, save_figure
    from .embed import embed

    check_table_path(output)
    if png and png is not True:
        figure_path(png)
    t0 = time.perf_counter()
    inp = load_input(source, columns=columns)
    color = _color_values(inp, color_by, color_table)
    emb = embed(scale_features(inp.features, scale), method=method, n_components=n_components,
                random_state=random_state, progress=progress, **kwargs)
    tab = Table({"id": inp.ids})
    for j in range(emb.shape[1]):
        tab[f"embed_{j + 1}"] = emb[:, j]
    if color is not None:
        tab[color_by] = color
    tab.meta.update({"step": "embed", "method": method, "n_components": int(n_components), "input": inp.source,
                     "n_objects": int(emb.shape[0]), "n_features": int(inp.features.shape[1]),
                     "random_state": random_state, "scale": scale,
                     "params": {k: v for k, v in kwargs.items() if isinstance(v, (int, float, str, bool))},
                     "seconds": round(time.perf_counter() - t0, 3), "serendip_version": __version__})
    if inp.columns is not None:
        tab.meta["columns"] = list(inp.columns)  # the feature columns of a table input
    if color_by is not None:
        tab.meta["color_by"] = color_by
        tab.meta["color_table"] = None if color_table is None else str(color_table)
    output = Path(output)
    write_table(tab, output)
    png_path = None
    if png and emb.shape[1] < 2:
        log.warning("a %d-component embedding has no 2-D map; no PNG written (the table %s holds it)",
                    emb.shape[1], output)
    elif png:
        png_path = output.with_suffix(".png") if png is True else Path(png)
        fig, _ = plot_embedding(emb, color=color, label=color_by, title=f"{method} embedding of {inp.source}")
        png_path = save_figure(fig, png_path)
    return tab, png_path


def run_cluster(source, output, *, method: str = "hdbscan", n_clusters: int = 8, min_cluster_size=None,
                columns=None, spectra=None, scale=None, random_state=0, png=True, **kwargs):
    """Cluster an input; write per-object labels to ``output`` and the summary beside it.

    The summary goes to ``<output stem>_summary<suffix>`` and, when spectra are
    available (the input itself or ``spectra``), the median spectrum per cluster
    to ``<output stem>.png``.

    Parameters
    ----------
    source : path or data
        Features, spectra, or an embedding table: written by :func:`run_embed` (its
        ``embed_*`` columns are used) or the pipeline's ``tables/embedding`` (its ``x``,
        ``y`` columns; not weirdness, sequence_position or cluster). See
        :func:`embedding_columns`.
    spectra : path or Spectra, optional
        Spectra in the same order, for median spectra when ``source`` is an embedding.
    scale : {None, "standard", "robust"}
        Rescale each feature before clustering (see :func:`scale_features`); recorded in
        the summary's ``meta``. Median spectra are of the unscaled spectra.
    method, n_clusters, min_cluster_size, random_state, **kwargs
        See :func:`serendip.explore.cluster`.

    Returns
    -------
    (ClusterResult, dict of written paths)
    """
    from .._io import check_table_path, write_table
    from ..plotting import figure_path, plot_cluster_medians, save_figure
    from .cluster import cluster

    check_table_path(output)
    if png and png is not True:
        figure_path(png)
    inp = load_input(source, columns=columns)  # an embedding table gives its coordinates only
    spec = inp.spectra
    if spectra is not None:
        spec = load_input(spectra).spectra if isinstance(spectra, (str, Path)) else spectra
        if spec is None:
            raise ValueError(f"{spectra}: holds no spectra (needed for median spectra)")
        if len(spec) != len(inp.ids) or not np.array_equal(np.asarray(spec.ids).astype(str), inp.ids):
            raise ValueError(f"the spectra ({len(spec)} objects) do not match the clustered objects "
                             f"({len(inp.ids)}) one to one by id and order")
    res = cluster(scale_features(inp.features, scale), method=method, n_clusters=n_clusters,
                  min_cluster_size=min_cluster_size, spectra=spec, ids=inp.ids, random_state=random_state, **kwargs)
    res.summary.meta["input"] = inp.source
    res.summary.meta["scale"] = scale
    if inp.columns is not None:
        res.summary.meta["columns"] = list(inp.columns)  # the feature (or embedding) columns clustered
    if spectra is not None:
        res.summary.meta["spectra"] = str(spectra) if isinstance(spectra, (str, Path)) else type(spectra).__name__
    output = Path(output)
    labels = res.to_table()
    write_table(labels, output)
    summary = res.summary.copy()
    # only .fits.gz counts as a double suffix: 'run.v2.fits' keeps its dots in the stem
    suffix = ".fits.gz" if output.name.lower().endswith(".fits.gz") else (output.suffix or ".fits")
    if not suffix.lower().startswith((".fits", ".fit", ".ecsv")):
        summary.remove_column("typical_index")  # multidimensional columns need FITS or ECSV
    stem = output.name[: len(output.name) - len(suffix)]
    summary_path = output.with_name(stem + "_summary" + suffix)
    write_table(summary, summary_path)
    written = {"labels": output, "summary": summary_path}
    if png and res.median_spectra is not None and res.n_clusters > 0:
        png_path = output.with_name(stem + ".png") if png is True else Path(png)
        fig, _ = plot_cluster_medians(res)
        written["png"] = save_figure(fig, png_path)
    return res, written


def run_detect(source, output, *, detector: str = "iforest", columns=None, scale=None, random_state=0,
               n_jobs=None, progress: bool = True, **params):
    """Score every object with one detector and write ``id, weirdness, rank`` (higher = weirder).

    Parameters
    ----------
    source : path or data
        See :func:`load_input`.
    output : path
        Table file.
    detector : {"iforest", "lof", "knn", "pca", "urf", "ensemble"}
    scale, random_state, n_jobs
        Passed to the detector when it accepts them.
    **params
        Detector parameters (e.g. ``n_neighbors``, ``n_estimators``).

    Returns
    -------
    astropy Table
    """
    from .._io import check_table_path, write_table
    from ..outliers.baselines import _accepted, make_detector

    check_table_path(output)
    t0 = time.perf_counter()
    inp = load_input(source, columns=columns)
    common = {"scale": scale, "random_state": random_state, "n_jobs": n_jobs, "progress": progress}
    kw = {**_accepted(detector, common), **{k: v for k, v in params.items() if v is not None}}
    det = make_detector(detector, **kw)
    det.fit(inp.features)
    tab = det.to_table(ids=inp.ids)
    features = set(inp.columns or [])
    for col in ("snr", "z", "redshift", "class"):  # context columns; a feature (e.g. the z-band magnitude) is not one
        if col in inp.meta.colnames and col not in features:
            tab[col] = inp.meta[col]
    tab.meta.update({"step": "detect", "input": inp.source, "n_objects": int(len(tab)),
                     "n_features": int(inp.features.shape[1]), "rank_convention": "1 = weirdest",
                     "seconds": round(time.perf_counter() - t0, 3)})
    if inp.columns is not None:
        tab.meta["columns"] = list(inp.columns)  # the feature columns of a table input
    write_table(tab, output)
    return tab
