"""Save and load trained models as versioned files with their metadata.

A model file holds one dictionary: the format name and version, the fitted
pipeline, and a JSON string of metadata (serendip, scikit-learn, NumPy and
Python versions, feature names, the feature recipe, classes, chosen
parameters, CV and test scores, and a summary of the training data). A
human-readable copy of the metadata is written beside it as ``<file>.json``.

Two containers are supported, chosen by the extension:

* ``.skops`` (preferred): the skops format, which does not execute code on
  load; types outside skops' default trust list are shown to the caller, who
  must confirm them.
* ``.joblib``: a pickle; loading a pickle can run arbitrary code.

Either way :func:`load_model` refuses to load until the caller confirms trust
(``trusted=True``; the CLI's ``--trust``). Version differences are warned
about (:class:`ModelVersionWarning`); unreadable files get a clear error.
"""
from __future__ import annotations

import datetime as _dt
import json
import platform
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._io import _jsonable, atomic_path, atomic_write_text, require
from .._logging import get_logger

__all__ = ["save_model", "load_model", "SavedModel", "UntrustedModelError", "ModelVersionWarning",
           "FORMAT", "FORMAT_VERSION"]

log = get_logger(__name__)

FORMAT = "serendip-model"
FORMAT_VERSION = 1
EXTENSIONS = (".skops", ".joblib")


class UntrustedModelError(ValueError):
    """Raised when a model file is loaded without the caller confirming trust."""


class ModelVersionWarning(UserWarning):
    """The model was saved with other versions of serendip, scikit-learn or NumPy."""


def _versions() -> dict[str, str]:
    import sklearn

    from .._version import __version__

    return {"serendip": __version__, "scikit-learn": sklearn.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def _metadata_from(obj) -> tuple[Any, dict]:
    from .train import TrainResult

    if isinstance(obj, TrainResult):
        scalars = {k: v for k, v in obj.test_scores.items() if np.isscalar(v)}
        meta = {
            "algorithm": obj.algorithm, "task": obj.task, "feature_names": list(obj.feature_names),
            "target_name": obj.target_name, "redshift": obj.redshift,
            "classes": None if obj.classes is None else np.asarray(obj.classes).tolist(),
            "best_params": {k: repr(v) if not isinstance(v, (int, float, str, type(None))) else v
                            for k, v in obj.best_params.items()},
            "scoring": obj.scoring, "cv_scores": np.asarray(obj.cv_scores).tolist(),
            "test_scores": scalars, "summary": obj.summary, "feature_recipe": obj.feature_recipe,
            "learning_curve_verdict": obj.verdict,
        }
        return obj.model, meta
    if not hasattr(obj, "predict"):
        raise TypeError(f"cannot save a {type(obj).__name__}: pass a TrainResult or a fitted estimator")
    names = getattr(obj, "feature_names_in_", None)
    n = getattr(obj, "n_features_in_", None)
    if names is None and n is not None:
        names = [f"x{j}" for j in range(n)]
    meta = {"algorithm": type(obj).__name__, "task": None,
            "feature_names": None if names is None else [str(x) for x in names],
            "classes": np.asarray(obj.classes_).tolist() if hasattr(obj, "classes_") else None}
    return obj, meta


def save_model(obj, path, *, metadata: dict | None = None, sidecar: bool = True) -> Path:
    """Write a model and its metadata to ``path`` (``.skops`` or ``.joblib``) atomically.

    Parameters
    ----------
    obj : TrainResult or fitted estimator
    path : path-like
        Ends in ``.skops`` (preferred, no code runs on load) or ``.joblib``.
    metadata : dict, optional
        Extra JSON-serialisable entries (e.g. the source table).
    sidecar : bool
        Also write the metadata as readable JSON to ``<path>.json``.

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in EXTENSIONS:
        raise ValueError(f"model files end in .skops (preferred) or .joblib; got {path.name!r}")
    model, meta = _metadata_from(obj)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "container": ext[1:],
            "versions": _versions(),
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **meta}
    # keys that describe the model itself may not be overwritten (that broke loading or predicting); one
    # the model could not fill (None, e.g. the task of a bare estimator) may be given
    clash = sorted(k for k in set(metadata or {}) & set(meta) if meta[k] is not None)
    if clash:
        raise ValueError(f"metadata may not set the reserved key(s) {clash}; choose other names")
    meta.update(metadata or {})
    meta_json = json.dumps(_jsonable(meta), default=str)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "metadata_json": meta_json, "model": model}
    with atomic_path(path) as tmp:
        if ext == ".skops":
            sio = require("skops.io", "learn", ".skops model files")

            sio.dump(payload, tmp)
        else:
            import joblib

            joblib.dump(payload, tmp)
    if sidecar:
        atomic_write_text(path.with_name(path.name + ".json"), json.dumps(json.loads(meta_json), indent=2))
    log.info("saved %s model to %s", meta.get("algorithm"), path)
    return path


@dataclass
class SavedModel:
    """A loaded model with its metadata.

    Attributes
    ----------
    model : estimator
        The fitted pipeline.
    metadata : dict
        Everything recorded at save time (versions, feature names, scores, training summary).
    path : pathlib.Path
    """

    model: Any
    metadata: dict
    path: Path

    @property
    def feature_names(self) -> list | None:
        return self.metadata.get("feature_names")

    @property
    def feature_recipe(self) -> dict | None:
        return self.metadata.get("feature_recipe")

    @property
    def task(self) -> str | None:
        return self.metadata.get("task")

    def _check_X(self, X):
        from .train import check_feature_names, prepare_xy

        if (hasattr(X, "colnames") or hasattr(X, "columns")) and self.feature_names is not None:
            cols = list(X.colnames) if hasattr(X, "colnames") else [str(c) for c in X.columns]
            check_feature_names(cols, self.feature_names)
        Xa, _, _, _, _ = prepare_xy(X)
        if self.feature_names is not None and Xa.shape[1] != len(self.feature_names):
            raise ValueError(f"X has {Xa.shape[1]} features; the model was trained on "
                             f"{len(self.feature_names)}: {self.feature_names}")
        return Xa

    def predict(self, X):
        """Predict; tables must carry the training feature names in the training order."""
        return self.model.predict(self._check_X(X))

    def predict_proba(self, X):
        """Class probabilities (when the model provides them)."""
        return self.model.predict_proba(self._check_X(X))


def _corrupt(path: Path, exc: Exception) -> ValueError:
    return ValueError(f"{path} is not a readable serendip model file (corrupt, truncated or another "
                      f"format): {type(exc).__name__}: {exc}")


def load_model(path, trusted: bool | list = False) -> SavedModel:
    """Load a model saved by :func:`save_model`, after the caller confirms they trust the file.

    Parameters
    ----------
    path : path-like
        A ``.skops`` or ``.joblib`` model file.
    trusted : bool or list of str
        ``False`` (default) refuses to load and raises :class:`UntrustedModelError`, naming the
        object types the file contains and how to confirm. ``True`` trusts them. For ``.skops``
        files a list of type names trusts exactly those (loading fails if others are present).
        Only confirm for files you made or got from someone you trust: a ``.joblib`` file can run
        arbitrary code when loaded.

    Returns
    -------
    SavedModel

    Warns
    -----
    ModelVersionWarning
        When the file was written with other serendip, scikit-learn or NumPy versions.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such model file: {path}")
    ext = path.suffix.lower()
    if ext not in EXTENSIONS:
        raise ValueError(f"model files end in .skops or .joblib; got {path.name!r}")
    if ext == ".skops":
        sio = require("skops.io", "learn", ".skops model files")

        try:
            untrusted = sio.get_untrusted_types(file=path)
        except Exception as exc:
            raise _corrupt(path, exc) from exc
        if trusted is False:
            raise UntrustedModelError(
                f"{path} contains {len(untrusted)} object type(s) outside skops' default trust list "
                f"({', '.join(untrusted) if untrusted else 'none'}). skops does not unpickle, but loading "
                "creates these objects, so confirm you trust the file: call load_model(path, trusted=True) (or pass --trust to 'serendip learn "
                "predict')")
        if trusted is not True and not (isinstance(trusted, (list, tuple, set))
                                        and all(isinstance(t, str) for t in trusted)):
            raise TypeError(f"trusted must be True, False or a list of type names; got {trusted!r}")
        types = untrusted if trusted is True else list(trusted)
        try:
            payload = sio.load(path, trusted=types)
        except Exception as exc:
            if "untrusted" in str(exc).lower():
                raise UntrustedModelError(f"{path}: {exc}") from exc
            raise _corrupt(path, exc) from exc
    else:
        if trusted is not True:
            raise UntrustedModelError(
                f"{path} is a joblib pickle, which can run arbitrary code when loaded. Load it only if "
                "you made it or got it from someone you trust: load_model(path, trusted=True) (or "
                "--trust on the command line). Prefer .skops files")
        import joblib

        try:
            payload = joblib.load(path)
        except Exception as exc:
            raise _corrupt(path, exc) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a serendip model file (no '{FORMAT}' header); "
                         "it may be a bare scikit-learn model")
    try:
        version = int(payload.get("format_version", 0))
        meta = json.loads(payload["metadata_json"])
        if not isinstance(meta, dict):
            raise TypeError(f"the metadata is a {type(meta).__name__}, not a mapping")
        if "model" not in payload:
            raise KeyError("the file holds no model")
    except (KeyError, TypeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise _corrupt(path, exc) from exc
    if version > FORMAT_VERSION:
        raise ValueError(f"{path} uses model format version {version}, newer than this "
                         f"serendip understands ({FORMAT_VERSION}); upgrade serendip")
    saved = meta.get("versions", {})
    saved = saved if isinstance(saved, dict) else {}
    now = _versions()
    diffs = [f"{k} {saved.get(k)} (now {now[k]})" for k in ("serendip", "scikit-learn", "numpy")
             if saved.get(k) != now[k]]
    if diffs:
        warnings.warn(f"{path} was saved with other versions: {', '.join(diffs)}; predictions may differ "
                      "or fail. Retrain if in doubt.", ModelVersionWarning, stacklevel=2)
    return SavedModel(model=payload["model"], metadata=meta, path=path)
