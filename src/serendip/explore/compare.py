"""Honest comparison of weirdness detectors against known labels.

:func:`compare_detectors` fits every detector once on the same data (all of
them unsupervised: the labels are used only for scoring) and reports, for
every *label kind*, ROC AUC, average precision, precision@k and recall@k, and
the fit time. Scores follow serendip's convention, **higher = weirder**, so
a positive (anomalous) object should score high.

Label kinds
-----------
- a boolean array, or 0/1 numbers (integers or floats, 1 = anomalous): one kind, ``"all"``;
- a categorical array or a table column ``anomaly_kind`` (as in the synthetic
  survey's truth): each kind other than ``normal_value`` is scored against the
  normal objects only (the other anomaly kinds are left out of that row), and
  ``"all"`` scores every non-normal object against the normal ones;
- a dict ``{name: boolean (or 0/1) array}``: each is scored against all other objects.
"""
from __future__ import annotations

import time

import numpy as np

from .._logging import get_logger, progress as _progress
from .._validation import as_feature_matrix

__all__ = ["compare_detectors", "detector_features", "label_sets", "DEFAULT_DETECTORS"]

log = get_logger(__name__)

DEFAULT_DETECTORS = ("iforest", "lof", "knn", "pca", "ensemble")


def detector_features(X, *, normalize: bool = True, max_pixels: int | None = None) -> np.ndarray:
    """Features for detectors from an array, a :class:`~serendip.spectra.Spectra` or a store.

    Arrays are returned as they are (checked). Spectra are normalised by their
    median flux (``normalize=True``, so that brightness does not dominate) and
    masked pixels are filled by linear interpolation (A's
    :func:`serendip.spectra.preprocess.normalize` and ``fill_masked``); steps
    already in the history are not repeated.

    Parameters
    ----------
    max_pixels : int, optional
        Bin spectra down to at most this many pixels (mean of adjacent pixels) to speed
        up distance-based detectors.
    """
    if hasattr(X, "iter_blocks") and not hasattr(X, "flux"):
        from ..spectra import Spectra

        X = Spectra.concatenate(list(X.iter_blocks(65536)))
    if hasattr(X, "flux") and hasattr(X, "wavelength"):
        from ..spectra import preprocess as pp

        steps = {h.get("step") for h in getattr(X, "history", [])}
        s = X
        if normalize and "normalize" not in steps:
            s = pp.normalize(s, "median")
        if s.mask.any() and "fill_masked" not in steps:
            s = pp.fill_masked(s)
        flux = np.asarray(s.flux, dtype=np.float64)
        flux[~np.isfinite(flux)] = 0.0  # spectra with no kept pixel at all
        if max_pixels is not None and flux.shape[1] > max_pixels:
            b = int(np.ceil(flux.shape[1] / max_pixels))
            m = (flux.shape[1] // b) * b
            flux = flux[:, :m].reshape(flux.shape[0], -1, b).mean(axis=2)
        return as_feature_matrix(flux, name="spectra flux", ids=s.ids)
    return as_feature_matrix(X, name="X")


def _as_binary(arr: np.ndarray, what: str):
    """``arr`` as booleans when it is boolean or numeric 0/1 (ints or floats); else None.

    Other integers are kind codes (None: categorical). Floats with other values (NaN, 0.5) are
    refused: they are neither flags nor kinds.
    """
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind not in "iuf":
        return None
    bad = ~np.isin(arr, (0, 1))
    if bad.any() and arr.dtype.kind in "iu":
        return None
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"numeric {what} must be 0/1 flags (1 = anomalous); {int(bad.sum())} are not, the first "
                         f"at index {i} is {arr[i].item()!r}. Use booleans, 0/1, or strings naming the kinds.")
    return arr.astype(bool)


def label_sets(labels, n: int, normal_value: str = "normal") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Turn ``labels`` into ``{kind: (positive, evaluated)}`` boolean arrays (see module docstring)."""
    if hasattr(labels, "truth"):
        labels = labels.truth
    if hasattr(labels, "colnames"):  # astropy Table
        for col in ("anomaly_kind", "is_anomaly"):
            if col in labels.colnames:
                labels = np.asarray(labels[col])
                break
        else:
            raise ValueError(f"a label table needs an 'anomaly_kind' or 'is_anomaly' column; it has "
                             f"{labels.colnames}")
    if isinstance(labels, dict):
        out = {}
        for name, arr in labels.items():
            arr = np.asarray(arr)
            flags = _as_binary(arr, f"label {name!r}") if arr.shape == (n,) else None
            if flags is None:
                raise ValueError(f"label {name!r} must be a boolean (or 0/1) array of length {n}; got {arr.dtype} "
                                 f"{arr.shape}")
            out[str(name)] = (flags, np.ones(n, dtype=bool))
        return out
    arr = np.asarray(labels)
    if arr.shape != (n,):
        raise ValueError(f"labels have shape {arr.shape} but there are {n} objects")
    flags = _as_binary(arr, "labels")
    if flags is not None:
        return {"all": (flags, np.ones(n, dtype=bool))}
    arr = arr.astype(str)
    normal = arr == normal_value
    if not normal.any():
        raise ValueError(f"categorical labels need some {normal_value!r} objects to compare against; found "
                         f"kinds {sorted(set(arr))}")
    out = {"all": (~normal, np.ones(n, dtype=bool))}
    for kind in sorted(set(arr) - {normal_value}):
        pos = arr == kind
        out[kind] = (pos, normal | pos)
    return out


def _metrics(score, positive, k):
    from sklearn.metrics import average_precision_score, roc_auc_score

    n_pos = int(positive.sum())
    if n_pos == 0 or n_pos == positive.size:
        return n_pos, np.nan, np.nan, np.nan, np.nan, 0
    k_eff = min(k, positive.size)
    top = np.argsort(-score, kind="stable")[:k_eff]
    hits = int(positive[top].sum())
    return (n_pos, float(roc_auc_score(positive, score)), float(average_precision_score(positive, score)),
            hits / k_eff, hits / n_pos, k_eff)


def compare_detectors(X, labels, detectors=DEFAULT_DETECTORS, *, k: int = 100, params: dict | None = None,
                      scale=None, random_state=None, n_jobs=None, normalize: bool = True,
                      max_pixels: int | None = None, normal_value: str = "normal", return_scores: bool = False,
                      progress: bool = True):
    """Score every detector against known labels.

    Parameters
    ----------
    X : array-like (N, M), Spectra or store
        Features or spectra (see :func:`detector_features` for how spectra are prepared).
    labels : bool array, categorical array, astropy Table, dict or SyntheticSurvey
        Which objects are anomalous; see the module docstring for label kinds.
    detectors : sequence of str or WeirdnessDetector
        Names for :func:`serendip.outliers.make_detector` (``"iforest"``, ``"lof"``,
        ``"knn"``, ``"pca"``, ``"ensemble"``, ``"urf"``) or instances. Instances are
        cloned (:func:`sklearn.base.clone`) before fitting, so the caller's objects are
        not changed. Each detector is labelled by its ``detector_name``; when that
        label is taken, the second gets ``"-2"`` appended, the third ``"-3"`` and so on
        (``"knn"``, ``"knn-2"``), in the table, the scores and ``meta['detector_params']``.
    k : int
        Size of the top list for precision@k and recall@k.
    params : dict, optional
        ``{name: {param: value}}`` per detector built from a name (keyed by that name).
    scale : {None, "standard", "robust"}, optional
        Feature scaling for every detector built from a name (unless in ``params``).
    random_state, n_jobs
        Passed to the detectors that accept them.
    normalize, max_pixels
        Preparation of spectra (see :func:`detector_features`).
    normal_value : str
        The label of ordinary objects in categorical labels.
    return_scores : bool
        Also return ``{detector: weirdness array}``.
    progress : bool
        Progress bars, the detectors' included (``False`` is also set on cloned
        instances that take a ``progress`` parameter).

    Returns
    -------
    astropy Table
        Columns ``detector, label_kind, n_positive, n_evaluated, k, roc_auc,
        average_precision, precision_at_k, recall_at_k, fit_seconds``; ``meta``
        holds the provenance (parameters, shapes, score convention).
        ``(table, scores)`` if ``return_scores``.
    """
    from astropy.table import Table

    from sklearn.base import clone

    from .._version import __version__
    from ..outliers.baselines import _accepted, make_detector

    features = detector_features(X, normalize=normalize, max_pixels=max_pixels)
    n = features.shape[0]
    sets = label_sets(labels, n, normal_value=normal_value)
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}")
    params = dict(params or {})
    if isinstance(detectors, str) or not hasattr(detectors, "__iter__"):
        raise ValueError(f"detectors must be a sequence of names or detector instances; got {detectors!r}")
    rows, scores, used = [], {}, {}
    for det in _progress(list(detectors), desc="detectors", enabled=progress):
        if isinstance(det, str):
            base = det
            common = {"scale": scale, "random_state": random_state, "n_jobs": n_jobs, "progress": progress}
            kw = {**_accepted(base, common), **params.get(base, {})}
            est = make_detector(base, **kw)
        else:
            base = getattr(det, "detector_name", type(det).__name__)
            est = clone(det)
            if not progress and "progress" in est.get_params(deep=False):
                est.set_params(progress=False)
        name, i = base, 1
        while name in scores:
            i += 1
            name = f"{base}-{i}"
        t0 = time.perf_counter()
        w = np.asarray(est.fit(features).weirdness_, dtype=np.float64)
        seconds = time.perf_counter() - t0
        log.info("%s fitted on %d objects in %.2f s", name, n, seconds)
        scores[name] = w
        used[name] = {p: (v if isinstance(v, (int, float, str, bool, type(None))) else repr(v))
                      for p, v in est.get_params(deep=False).items()}
        for kind, (pos, ev) in sets.items():
            n_pos, auc, ap, prec, rec, k_eff = _metrics(w[ev], pos[ev], k)
            rows.append((name, kind, n_pos, int(ev.sum()), k_eff, auc, ap, prec, rec, seconds))
    tab = Table(rows=rows, names=("detector", "label_kind", "n_positive", "n_evaluated", "k", "roc_auc",
                                  "average_precision", "precision_at_k", "recall_at_k", "fit_seconds"))
    tab.meta.update({
        "step": "compare_detectors", "score_convention": "higher = weirder",
        "n_objects": n, "n_features": int(features.shape[1]), "k": int(k),
        "label_kinds": list(sets), "detector_params": used,
        "random_state": random_state if isinstance(random_state, (int, type(None))) else repr(random_state),
        "evaluation": "per kind: that kind vs normal objects; 'all': every anomaly vs normal objects",
        "serendip_version": __version__,
    })
    return (tab, scores) if return_scores else tab
