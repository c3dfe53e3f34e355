"""Why is an object weird? A residual against its most similar normal objects.

**Weirdness: higher = weirder** (the score being explained).

For an object i, :func:`explain_weirdness` finds its ``k`` most similar
*normal* objects under the forest similarity (normal = weirdness at or below
the ``normal_quantile`` of the population, the object itself excluded), takes
their per-feature median as the reference, and returns

* ``residual = x_i − reference`` (a residual spectrum, in flux units), and
* ``importance = |residual| / scatter``, where ``scatter`` is the robust
  (1.4826·MAD) per-feature spread of the normal population — how many
  "typical normal variations" the object departs by at each feature.

The most important features are the largest importances; for spectra on a
wavelength grid, ``peak_wavelength`` is where the (lightly smoothed)
importance peaks. If fewer than ``k`` normal objects have a non-zero forest
similarity to the object (very weird objects may share no good leaf with
anyone), the rest of the reference set is filled with the normal objects
nearest in Euclidean distance, and ``n_forest_neighbours`` says how many came
from the forest.

Masked (NaN) values, as a model fitted with ``impute=True`` accepts, are left out
of every median and distance: a feature the object itself lacks has a NaN
residual and importance and is ranked as 0.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from .._validation import iter_row_blocks

__all__ = ["explain_weirdness", "WeirdnessExplanation"]


@dataclass
class WeirdnessExplanation:
    """The explanation of one object's weirdness (higher weirdness = weirder).

    Attributes
    ----------
    index : int
        Row of the object in the data.
    id : str
    weirdness : float
    rank : int
        1 = weirdest.
    neighbours : ndarray of int
        Rows of the reference (most similar normal) objects.
    neighbour_similarity : ndarray of float
        Their forest similarity to the object (0 for Euclidean fill-ins).
    n_forest_neighbours : int
    reference, residual, scatter, importance : ndarray of shape (F,)
    top_features : ndarray of int
        Feature indices by decreasing importance.
    wavelength : ndarray or None
        Wavelength (Å) of each feature, when the data are spectra.
    peak_feature : int
    peak_wavelength : float or None
    """

    index: int
    id: str
    weirdness: float
    rank: int
    neighbours: np.ndarray
    neighbour_similarity: np.ndarray
    n_forest_neighbours: int
    reference: np.ndarray
    residual: np.ndarray
    scatter: np.ndarray
    importance: np.ndarray
    top_features: np.ndarray
    wavelength: np.ndarray | None = None
    peak_feature: int = 0
    peak_wavelength: float | None = None
    params: dict = field(default_factory=dict)

    def to_table(self):
        """Per-feature table (feature, wavelength, residual, importance, reference), most important first."""
        from astropy.table import Table

        order = np.argsort(-self.importance, kind="stable")
        cols = {"feature": order}
        if self.wavelength is not None:
            cols["wavelength"] = self.wavelength[order]
        cols.update(residual=self.residual[order], importance=self.importance[order],
                    reference=self.reference[order])
        tab = Table(cols)
        tab.meta.update(index=self.index, id=self.id, weirdness=self.weirdness, rank=self.rank,
                        neighbours=self.neighbours.tolist(), peak_wavelength=self.peak_wavelength,
                        score_convention="higher = weirder", **self.params)
        return tab


def _rows(X, rows):
    rows = np.asarray(rows, dtype=np.int64)
    order = np.argsort(rows)
    srt = rows[order]
    parts = []
    for start, block in iter_row_blocks(X, 4096):
        a, b = np.searchsorted(srt, [start, start + block.shape[0]])
        if b > a:
            parts.append(np.asarray(block, dtype=np.float64)[srt[a:b] - start])
    out = np.concatenate(parts, axis=0)
    res = np.empty_like(out)
    res[order] = out
    return res


def _robust_scatter(X, candidates, rng, max_rows=5000):
    sample = candidates if candidates.size <= max_rows else np.sort(rng.choice(candidates, max_rows, replace=False))
    Y = _rows(X, sample)
    with warnings.catch_warnings():  # a feature masked in every sampled row stays NaN, then gets the floor
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(Y, axis=0)
        mad = 1.4826 * np.nanmedian(np.abs(Y - med), axis=0)
    ok = mad > 0
    floor = np.median(mad[ok]) * 1e-3 if np.any(ok) else 1.0
    return np.where(ok, np.maximum(mad, floor), floor)


def _nearest_euclid(X, x, candidates, k):
    best_i, best_d = [], []
    cset = np.asarray(candidates)
    for start, block in iter_row_blocks(X, 4096):
        block = np.asarray(block, dtype=np.float64)
        a, b = np.searchsorted(cset, [start, start + block.shape[0]])
        if b > a:
            rows = cset[a:b]
            diff2 = (block[rows - start] - x) ** 2
            shared = np.isfinite(diff2).sum(axis=1)
            # masked features left out, the sum rescaled to all features (a mostly masked row is not "near")
            with np.errstate(divide="ignore", invalid="ignore"):
                d = np.where(shared > 0, np.sqrt(np.nansum(diff2, axis=1) * x.size / shared), np.inf)
            best_i.append(rows)
            best_d.append(d)
    if not best_i:
        return np.zeros(0, dtype=np.int64)
    ii, dd = np.concatenate(best_i), np.concatenate(best_d)
    return ii[np.lexsort((ii, dd))[:k]]


def explain_weirdness(model_or_X, X=None, index=0, *, k: int = 10, normal_quantile: float = 0.9,
                      n_features: int = 10, smooth: int = 3, wavelength=None, random_state=0,
                      **urf_params) -> WeirdnessExplanation:
    """Explain what makes object ``index`` weird (weirdness: higher = weirder).

    Parameters
    ----------
    model_or_X : fitted UnsupervisedRandomForest, or the data
        A fitted model (then ``X`` must be its training data), or the data
        itself, in which case an :class:`UnsupervisedRandomForest` is fitted
        with ``urf_params`` (default 100 trees, ``random_state``).
    X : array-like (N, F), Spectra or store
        The training data of the model (ignored when ``model_or_X`` is the data).
    index : int or str
        Row of the object, or its id (when ``X`` carries ids).
    k : int
        Number of reference objects.
    normal_quantile : float
        Objects with weirdness above this quantile are not used as references.
    n_features : int
        How many top features to list in ``top_features``.
    smooth : int
        Width (pixels) of the running mean applied to the importance before
        locating ``peak_wavelength`` (1 = none).
    wavelength : array-like of shape (F,), optional
        Feature wavelengths (taken from ``X.wavelength`` for Spectra).

    Returns
    -------
    WeirdnessExplanation
    """
    from .urf import UnsupervisedRandomForest, _Source

    if isinstance(model_or_X, UnsupervisedRandomForest):
        model = model_or_X
        if X is None:
            raise ValueError("explain_weirdness needs the model's training data X to build residual spectra")
        model._check_fitted()
    else:
        X = model_or_X
        params = {"n_estimators": 100, "random_state": random_state, "progress": False}
        params.update(urf_params)
        model = UnsupervisedRandomForest(**params).fit(X)
    src = _Source(X)
    if src.n != model.n_train_ or src.n_features != model.n_features_in_:
        raise ValueError(f"X has shape ({src.n}, {src.n_features}) but the model was fitted on "
                         f"({model.n_train_}, {model.n_features_in_}); pass the model's training data")
    ids = src.ids
    if isinstance(index, str):
        hits = np.flatnonzero(ids == index)
        if hits.size == 0:
            raise KeyError(f"no object with id {index!r}")
        index = int(hits[0])
    index = int(index)
    if not 0 <= index < src.n:
        raise IndexError(f"index {index} is outside 0..{src.n - 1}")
    if wavelength is None and hasattr(X, "wavelength"):
        wavelength = np.asarray(getattr(X.wavelength, "value", X.wavelength), dtype=float)
    if wavelength is not None:
        wavelength = np.asarray(wavelength, dtype=float)
        if wavelength.shape != (src.n_features,):
            raise ValueError(f"wavelength has shape {wavelength.shape}; expected ({src.n_features},)")

    w = np.asarray(model.weirdness_)
    normal = w <= np.quantile(w, normal_quantile)
    normal[index] = False
    candidates = np.flatnonzero(normal)
    if candidates.size == 0:
        raise ValueError("no normal objects to compare with; raise normal_quantile")
    kk = min(k, candidates.size)
    sims = model.similarity([index])[0]
    cs = sims[candidates]
    order = np.lexsort((candidates, -cs))
    chosen = candidates[order][cs[order] > 0][:kk]
    n_forest = chosen.size
    if n_forest < kk:
        x = _rows(X, [index])[0]
        rest = np.setdiff1d(candidates, chosen)
        extra = _nearest_euclid(X, x, rest, kk - n_forest)
        chosen = np.concatenate([chosen, extra])
    rows = _rows(X, np.concatenate([[index], chosen]))
    x, refs = rows[0], rows[1:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # All-NaN slice: a feature no reference measured
        reference = np.nanmedian(refs, axis=0)
    residual = x - reference
    rng = np.random.default_rng(random_state)
    scatter = _robust_scatter(X, candidates, rng)
    importance = np.abs(residual) / scatter
    # a masked (NaN) feature has no residual: it stays NaN in the explanation and counts as 0 for the ranking
    known = np.nan_to_num(importance, nan=0.0)
    top = np.argsort(-known, kind="stable")[:n_features]
    sm = known
    if smooth and smooth > 1:
        sm = np.convolve(known, np.ones(int(smooth)) / int(smooth), mode="same")
    peak = int(np.argmax(sm))
    return WeirdnessExplanation(
        index=index, id=str(ids[index]), weirdness=float(w[index]), rank=int(model.rank_[index]),
        neighbours=chosen, neighbour_similarity=sims[chosen], n_forest_neighbours=int(n_forest),
        reference=reference, residual=residual, scatter=scatter, importance=importance, top_features=top,
        wavelength=wavelength, peak_feature=peak,
        peak_wavelength=None if wavelength is None else float(wavelength[peak]),
        params={"k": k, "normal_quantile": normal_quantile, "smooth": smooth})
