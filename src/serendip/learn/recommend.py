"""Choose a supervised algorithm the way the talk's decision table does.

The table (SVM / ANN / RF / deep learning) compares the kind of input, the
training-set size, the model complexity, the number of free parameters, the
risk of overfitting and how easy the model is to interpret:

==================  ==========  ==========  ==========  ================
\\                   SVM         ANN         RF          deep learning
==================  ==========  ==========  ==========  ================
input               few feat.   many feat.  many feat.  raw data
training-set size   can be      ~10s        ~10s        > 1000
                    small
model complexity    low         mediocre    mediocre    complex
free parameters     ~4          ~10         ~4          > 10
overfitting?        no          maybe       maybe       more likely
easy to interpret?  yes         sometimes   sometimes   more challenging
==================  ==========  ==========  ==========  ================

:func:`recommend` turns the size of the data, the number of features, the
class balance and the kind of input (measured features or raw spectra/pixels)
into a ranked list of :class:`Recommendation`, each with reasons in plain
words drawn from this table and with its caveats. Gradient-boosted trees
("gbt") are not in the table; they are offered as a strong tabular baseline.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Recommendation", "recommend", "infer_task", "ALGORITHMS", "TALK_TABLE"]

ALGORITHMS = ("svm", "rf", "ann", "gbt", "cnn")

#: The talk's table, row by row, as plain text for each algorithm.
TALK_TABLE = {
    "svm": {"input": "a small number of features", "size": "the training set can be small",
            "complexity": "low", "free_parameters": "~4", "overfitting": "no",
            "interpret": "yes"},
    "ann": {"input": "a larger number of features", "size": "tens of examples per free parameter or more",
            "complexity": "mediocre", "free_parameters": "~10", "overfitting": "maybe",
            "interpret": "sometimes"},
    "rf": {"input": "a larger number of features", "size": "tens of examples per class or more",
           "complexity": "mediocre", "free_parameters": "~4", "overfitting": "maybe",
           "interpret": "sometimes"},
    "cnn": {"input": "raw data (spectra, pixels)", "size": "more than 1000 examples",
            "complexity": "complex", "free_parameters": ">10", "overfitting": "more likely",
            "interpret": "more challenging"},
}

NAMES = {"svm": "support vector machine", "rf": "random forest", "ann": "neural network (MLP)",
         "gbt": "gradient-boosted trees", "cnn": "1-D convolutional network"}


@dataclass
class Recommendation:
    """One ranked suggestion.

    Attributes
    ----------
    algorithm : str
        Key accepted by :func:`serendip.learn.train` (``"svm"``, ``"rf"``, ``"ann"``, ``"gbt"``, ``"cnn"``).
    score : float
        Suitability in [0, 1]; the list is sorted by it, highest first.
    reasons : list of str
        Why it suits these data, in plain words.
    caveats : list of str
        What to watch for.
    options : dict
        Training options that go with the advice (e.g. ``{"pca": True}``).
    """

    algorithm: str
    score: float
    reasons: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)
    options: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The algorithm's name in words."""
        return NAMES.get(self.algorithm, self.algorithm)

    def __str__(self) -> str:
        lines = [f"{self.algorithm} ({self.name}), score {self.score:.2f}"]
        lines += [f"  + {r}" for r in self.reasons]
        lines += [f"  - {c}" for c in self.caveats]
        return "\n".join(lines)


def infer_task(y) -> str:
    """Return ``"classification"`` or ``"regression"`` for a target vector.

    Strings, booleans and categories are classes. Numbers are classes when
    they are all integers with at most 20 distinct values (and no more than
    half the rows distinct); otherwise regression.
    """
    y = np.asarray(y)
    if y.dtype.kind in "OUSb" or y.dtype.name == "category":
        return "classification"
    if y.dtype.kind in "iuf":
        finite = y[np.isfinite(y)] if y.dtype.kind == "f" else y
        if finite.size == 0:
            raise ValueError("the target has no finite values")
        uniq = np.unique(finite)
        integral = np.all(np.equal(np.mod(uniq, 1), 0))
        if integral and uniq.size <= 20 and uniq.size <= max(2, finite.size // 2):
            return "classification"
        return "regression"
    raise ValueError(f"cannot tell the task from a target of dtype {y.dtype}; pass task=")


def _shape(X) -> tuple[int, int]:
    if hasattr(X, "flux") and hasattr(X, "wavelength"):
        X = X.flux
    if hasattr(X, "colnames"):  # an astropy Table: np.shape gives only its length
        return len(X), len(X.colnames)
    shape = np.shape(X)
    if len(shape) != 2:
        raise ValueError(f"X must be 2-D (n_objects, n_features); found shape {shape}")
    return int(shape[0]), int(shape[1])


def _torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def recommend(X, y, task: str | None = None, raw: bool = False) -> list[Recommendation]:
    """Rank the supervised algorithms for these data, with reasons and caveats.

    Parameters
    ----------
    X : array-like of shape (n_objects, n_features), astropy Table, DataFrame or Spectra
        Only the shape is used.
    y : array-like of shape (n_objects,)
        The target; its kind decides the task when ``task`` is None, and its
        class balance enters the advice. Rows with a missing target (NaN, NA,
        masked, empty) are not counted, as ``train`` drops them.
    task : {"classification", "regression"}, optional
        Inferred by :func:`infer_task` when not given.
    raw : bool
        True when the columns are raw data (spectral pixels, image pixels)
        rather than measured features. A :class:`~serendip.spectra.Spectra`
        counts as raw.

    Returns
    -------
    list of Recommendation
        Highest score first.
    """
    if hasattr(X, "flux") and hasattr(X, "wavelength"):
        raw = True
    from .train import _target_and_missing

    n, p = _shape(X)
    y, missing = _target_and_missing(y)
    if y.shape[0] != n:
        raise ValueError(f"X has {n} rows but y has {y.shape[0]} values")
    if missing.all():
        raise ValueError("the target is missing (NaN/NA/masked/empty) in every row")
    if missing.any():  # as train drops them: the advice is for the rows that can be trained on
        y, n = y[~missing], int((~missing).sum())
    task = task or infer_task(y)
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    if task == "regression":  # the same refusal as train's: no advice for a model that cannot be trained
        try:
            np.asarray(y).astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"task='regression' (CLI: --task regression) needs a numeric target, but the target has non-numeric values "
                             f"such as {str(y[0])!r}; use task='classification' for classes") from None

    min_class, imbalance = n, 1.0
    if task == "classification":
        _, counts = np.unique(y.astype(str) if y.dtype.kind == "O" else y, return_counts=True)
        min_class = int(counts.min())
        imbalance = float(counts.max() / counts.min())

    few_features = p <= 30
    many_features = p > 100
    small = n < 1000
    large = n > 20000
    recs: dict[str, Recommendation] = {a: Recommendation(a, 0.5) for a in ALGORITHMS}

    # --- SVM -------------------------------------------------------------------------------
    r = recs["svm"]
    r.reasons.append("low model complexity with ~4 free parameters (C, kernel width), so it rarely "
                     "overfits and is comparatively easy to interpret")
    if small:
        r.score += 0.25
        r.reasons.append(f"the training set can be small, and {n} examples is small")
    if few_features and not raw:
        r.score += 0.1
        r.reasons.append(f"suited to a small number of features ({p})")
    if raw or many_features:
        if n < p:
            r.score += 0.1
            r.options["pca"] = True
            r.reasons.append(f"with PCA first, a kernel SVM copes with few examples ({n}) and many "
                             f"features ({p}): fewer examples than features is where low complexity pays")
        else:
            r.score -= 0.1
            r.caveats.append(f"{p} features is more than the table's 'small number of features'")
    if large:
        r.score -= 0.35
        r.caveats.append(f"kernel SVM training grows roughly with the square of the rows; {n} rows is slow "
                         "(hyper-parameters are searched on a subsample)")
    r.caveats.append("needs scaled features (done in the pipeline)")

    # --- random forest ---------------------------------------------------------------------
    r = recs["rf"]
    r.score += 0.15
    r.reasons.append("copes with a larger number of features without scaling, ~4 free parameters")
    r.reasons.append("sometimes interpretable: permutation importances show which features matter")
    if not small:
        r.score += 0.1
        r.reasons.append(f"{n} examples is ample for a forest (the table asks for tens or more)")
    if raw and small:
        r.score += 0.05
        r.reasons.append("works on raw pixels directly, a robust second opinion when examples are few")
    if task == "classification" and imbalance > 3:
        r.reasons.append(f"classes are imbalanced ({imbalance:.0f}:1); balanced class weights are used")
    r.caveats.append("overfitting: maybe. Check the learning curve; trees can memorise small samples")

    # --- neural network --------------------------------------------------------------------
    r = recs["ann"]
    r.reasons.append("handles a larger number of features and non-linear relations")
    if n >= 5000:
        r.score += 0.15
        r.reasons.append(f"{n} examples supports its ~10 free parameters")
    elif small:
        r.score -= 0.2
        r.caveats.append(f"{n} examples is few for ~10 free parameters; it may overfit")
    if raw and small:
        r.score -= 0.1
    if task == "regression" and few_features and not raw and n >= 5000:
        if _torch_available():
            from .train import MLP_NETWORKS

            r.score += 0.15
            r.reasons.append(f"on a few ({p}) measured features with many rows, serendip averages {MLP_NETWORKS} "
                             "networks (PyTorch) trained on every row, with the absolute-error loss for "
                             "redshifts; on SDSS galaxy photo-z from ugriz they beat boosted trees on 5 held-out "
                             "splits (σ_NMAD 0.0148 against 0.0150)")
        else:
            r.caveats.append("PyTorch is not installed, so this is scikit-learn's network, which trailed boosted "
                             "trees on photo-z; pip install 'serendip[deep]' for serendip's averaged networks")
    r.caveats.append("overfitting: maybe; interpretable: sometimes. Needs scaled inputs")

    # --- gradient-boosted trees ------------------------------------------------------------
    r = recs["gbt"]
    r.reasons.append("not in the talk's table: gradient-boosted trees are a strong default for "
                     "tabular measured features, fast on large samples and tolerant of missing values")
    if not small and not raw:
        r.score += 0.2
    if few_features and not raw and not small:
        r.reasons.append(f"on a few ({p}) correlated measured features with many rows, such as colours, "
                         "boosted trees with the features' principal components added (so the trees can "
                         "split across correlated features) led cross-validation on SDSS photo-z and "
                         "star/galaxy/QSO training data")
    if large:
        r.score += 0.05
        r.reasons.append(f"scales well to {n} rows")
    if small:
        r.score -= 0.15
        r.caveats.append("with few examples boosting overfits easily")
    if raw and n < p:
        r.score -= 0.1
        r.caveats.append(f"every boosting round scans all {p} pixels, and with fewer examples ({n}) than "
                         "pixels it has little to learn from per round: slow and no better than a forest")
    r.caveats.append("overfitting: maybe; several interacting hyper-parameters")

    # --- CNN -------------------------------------------------------------------------------
    r = recs["cnn"]
    if raw and n > 1000:
        r.score = 0.95
        r.reasons.append(f"raw data with more than 1000 examples ({n}): the table's case for deep learning")
        r.reasons.append("learns its own features from the pixels (e.g. line shapes) instead of hand-made ones")
    elif raw:
        r.score = 0.2
        r.caveats.append(f"only {n} examples; deep learning wants more than 1000")
    else:
        r.score = 0.05
        r.caveats.append("input is measured features, not raw data; a convolutional network has no "
                         "pixel ordering to exploit")
    r.caveats.append("complex with many (>10) free parameters: overfitting more likely, harder to interpret")
    if not _torch_available():
        r.score = min(r.score, 0.1)
        r.caveats.append("PyTorch is not installed: pip install 'serendip[deep]'")

    if task == "classification" and min_class < 10:
        for rec in recs.values():
            rec.caveats.append(f"the rarest class has only {min_class} example(s); its scores are very uncertain")
    if n < 300:
        for rec in recs.values():
            rec.caveats.append(f"with {n} examples the test score has a large uncertainty; trust cross-validation "
                               "means with their spread")

    out = sorted(recs.values(), key=lambda rec: (-rec.score, ALGORITHMS.index(rec.algorithm)))
    for rec in out:
        rec.score = float(np.clip(rec.score, 0.0, 1.0))
    return out
