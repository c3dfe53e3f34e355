"""Is a weirdness score measuring the objects, or their noise?

:func:`score_correlations` gives the Spearman rank correlation between one or
more scores (higher = weirder) and metadata columns such as S/N and redshift.
A score that correlates strongly with S/N is mostly ranking objects by data
quality; one that follows redshift may be ranking them by the part of the
rest frame that falls in the spectrograph.
"""
from __future__ import annotations

import numpy as np

from .._logging import get_logger

__all__ = ["score_correlations", "DEFAULT_CORRELATION_COLUMNS"]

log = get_logger(__name__)

#: columns tried by default (missing ones are skipped)
DEFAULT_CORRELATION_COLUMNS = ("snr", "z", "mag", "masked_fraction", "ra", "dec")
#: columns whose correlation with a score means "this score measures data quality"
_NOISE_COLUMNS = {"snr", "sn", "s_n", "sn_median", "snr_median", "masked_fraction", "ivar", "noise"}


def _as_scores(scores) -> dict[str, np.ndarray]:
    if hasattr(scores, "weirdness_"):
        return {getattr(scores, "detector_name", "weirdness"): np.asarray(scores.weirdness_, dtype=float)}
    if hasattr(scores, "colnames"):
        if "weirdness" in scores.colnames:
            return {"weirdness": np.asarray(scores["weirdness"], dtype=float)}
        return {c: np.asarray(scores[c], dtype=float) for c in scores.colnames
                if np.asarray(scores[c]).dtype.kind in "fiu" and c not in ("rank",)}
    if isinstance(scores, dict):
        return {str(k): np.asarray(v, dtype=float) for k, v in scores.items()}
    arr = np.asarray(scores, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"scores must be one value per object (1-D) or a dict of them; got shape {arr.shape}")
    return {"weirdness": arr}


def _column(meta, name, n):
    col = meta[name]
    arr = np.ma.asarray(col)
    if arr.dtype.kind not in "fiub":
        return None
    values = np.asarray(arr.filled(np.nan) if np.ma.isMaskedArray(arr) else arr, dtype=float)
    if values.shape != (n,):
        return None
    return values


def score_correlations(scores, meta, columns=DEFAULT_CORRELATION_COLUMNS, *, threshold: float = 0.5):
    """Spearman correlation of each score with metadata columns.

    Parameters
    ----------
    scores : array (N,), dict of arrays, astropy Table or fitted detector
        Weirdness scores (higher = weirder).
    meta : astropy Table, dict, Spectra or SyntheticSurvey
        Per-object metadata in the same order (a container's ``meta``).
    columns : sequence of str
        Columns to test; missing or non-numeric ones are skipped (listed in
        ``meta['skipped_columns']``). Rows where a column is NaN/masked are ignored.
    threshold : float
        ``|rho|`` at or above this gets a warning in the ``flag`` column.

    Returns
    -------
    astropy Table
        ``score, column, n, spearman_rho, p_value, flag``; ``flag`` is empty, or
        ``"mostly measuring noise"`` for S/N-like columns, or
        ``"strongly tracks <column>"`` for the others.
    """
    from astropy.table import Table
    from scipy.stats import spearmanr

    from .._version import __version__

    score_dict = _as_scores(scores)
    if hasattr(meta, "spectra") and hasattr(meta, "truth"):
        meta = meta.spectra.meta
    elif hasattr(meta, "meta") and hasattr(meta, "flux"):
        meta = meta.meta
    if isinstance(meta, dict):
        meta = Table({k: np.asarray(v) for k, v in meta.items()})
    if isinstance(columns, str):
        columns = (columns,)
    rows, skipped = [], []
    for sname, s in score_dict.items():
        n = s.size
        if len(meta) != n:
            raise ValueError(f"score {sname!r} has {n} values but the metadata has {len(meta)} rows")
        for col in columns:
            values = _column(meta, col, n) if col in meta.colnames else None
            if values is None:
                if col not in skipped:
                    skipped.append(col)
                continue
            ok = np.isfinite(values) & np.isfinite(s)
            if ok.sum() < 3 or np.ptp(values[ok]) == 0 or np.ptp(s[ok]) == 0:
                rho, p = np.nan, np.nan
            else:
                rho, p = spearmanr(s[ok], values[ok])
                rho, p = float(rho), float(p)
            flag = ""
            if np.isfinite(rho) and abs(rho) >= threshold:
                flag = "mostly measuring noise" if col.lower() in _NOISE_COLUMNS else f"strongly tracks {col}"
                log.warning("score %r: Spearman rho = %.2f with %r (%s)", sname, rho, col, flag)
            rows.append((sname, col, int(ok.sum()), rho, p, flag))
    tab = Table(rows=rows, names=("score", "column", "n", "spearman_rho", "p_value", "flag"),
                dtype=(str, str, np.int64, float, float, str)) if rows else Table(
        names=("score", "column", "n", "spearman_rho", "p_value", "flag"),
        dtype=(str, str, np.int64, float, float, str))
    tab.meta.update({"step": "score_correlations", "threshold": float(threshold), "skipped_columns": skipped,
                     "score_convention": "higher = weirder", "serendip_version": __version__})
    return tab
