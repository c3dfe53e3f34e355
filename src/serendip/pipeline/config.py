"""Pipeline configuration: a TOML file with one section per stage.

:func:`load_config` reads a file (or a dict), checks every key against
:data:`DEFAULTS` (unknown keys and wrong types are errors that name the
section and key) and returns a complete nested ``dict`` with the defaults
filled in. :func:`write_example_config` writes the documented example that
``serendip init-config`` produces; parsing it gives exactly :data:`DEFAULTS`
apart from the inputs.
"""
from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DEFAULTS", "load_config", "merge_config", "write_example_config", "example_config_text",
           "dump_toml", "loads_toml"]

#: Every section and key the pipeline understands, with its default value.
#: The type of the default is the type a value must have (ints are accepted
#: where floats are expected; lists must hold the same scalar type).
DEFAULTS: dict[str, dict[str, Any]] = {
    "run": {
        "output": "serendip-run",
        "seed": 0,
        "n_jobs": -1,
        "force": False,
    },
    "data": {
        "inputs": [],
        "store": "",
        "simulate": 0,
        "grid": "log",
        "wmin": 3700.0,
        "wmax": 7000.0,
        "npix": 1000,
        "rest_frame": True,
        "normalize": "median",
        "mask_sky": True,
    },
    "weirdness": {
        "trees": 150,
        "repeats": 1,
        "variant": "best",
        "lof_neighbors": 20,
        "snr_bins": 3,
        "compare_faithful": True,
        "faithful_trees": 100,
        "max_features_pixels": 50,
        "max_fit_samples": 3000,
        "n_similar": 10,
        "top_n": 12,
    },
    "sequencer": {
        "enabled": True,
        "normal_fraction": 0.5,
        "max_objects": 600,
        "max_pixels": 200,
        "metrics": ["EMD", "energy", "KL", "L2"],
        "scales": [1, 2, 4],
        "mode": "improved",
        "min_objects": 20,
    },
    "explore": {
        "embed": "pca",
        "cluster": "hdbscan",
        "min_cluster_size": 0,
        "min_objects": 50,
        "max_pixels": 250,
    },
    "compare": {
        "enabled": True,
        "detectors": ["iforest", "lof", "knn", "pca"],
        "top_k": 0,
    },
    "report": {
        "title": "serendip discovery report",
        "top_n": 12,
    },
}

_CHOICES = {
    ("data", "grid"): ("log", "linear"),
    ("data", "normalize"): ("median", "sum", "l2", "none"),
    ("sequencer", "mode"): ("improved", "faithful"),
    ("explore", "embed"): ("pca", "tsne", "umap"),
    ("explore", "cluster"): ("hdbscan", "kmeans", "gmm", "agglomerative", "none"),
}


def _toml_module():
    if sys.version_info >= (3, 11):
        import tomllib
        return tomllib
    try:  # pragma: no cover - Python 3.10 only
        import tomli
    except ImportError as exc:  # pragma: no cover
        raise ImportError("reading TOML on Python 3.10 needs tomli: pip install tomli") from exc
    return tomli  # pragma: no cover


def loads_toml(text: str, source: str = "<string>") -> dict:
    """Parse TOML text; a syntax error names ``source``."""
    toml = _toml_module()
    try:
        return toml.loads(text)
    except toml.TOMLDecodeError as exc:
        raise ValueError(f"{source} is not valid TOML: {exc}") from exc


#: Largest seed: scikit-learn's ``random_state`` (numpy's ``RandomState``) takes seeds below 2**32.
MAX_SEED = 2**32 - 1


def _check_value(section: str, key: str, value: Any, default: Any, source: str) -> Any:
    where = f"{source}: [{section}] {key}"
    if (section, key) == ("run", "n_jobs") and value is None:
        return 1  # a dict config may say None, scikit-learn's "one core"; stored as 1 so config.toml can hold it
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false; found {value!r}")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} must be an integer; found {value!r}")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where} must be a number; found {value!r}")
        value = float(value)
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string; found {value!r}")
    elif isinstance(default, list):
        if isinstance(value, str) and key in ("inputs",):
            value = [value]
        if not isinstance(value, list):
            raise ValueError(f"{where} must be a list; found {value!r}")
        kinds = {type(v) for v in default} or ({str} if key == "inputs" else set())
        for v in value:
            if kinds and type(v) not in kinds:
                names = " or ".join(sorted(k.__name__ for k in kinds))
                raise ValueError(f"{where} must be a list of {names}; found item {v!r}")
    if (section, key) == ("weirdness", "variant"):
        from ..outliers.urf import canonical_variant

        try:  # the names and comma combinations `serendip weird --variant` takes, stored as VARIANTS spells them
            value = canonical_variant(value)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    choices = _CHOICES.get((section, key))
    if choices is not None and value not in choices:
        raise ValueError(f"{where} must be one of {', '.join(choices)}; found {value!r}")
    return value


def merge_config(user: dict | None, source: str = "config") -> dict:
    """Check ``user`` (a nested dict as read from TOML) and fill in the defaults.

    Raises
    ------
    ValueError
        On an unknown section or key, a value of the wrong type, a value
        outside the allowed choices or range (e.g. ``[run] seed`` below 0,
        ``[run] n_jobs`` 0 or below -1); the message names the section, key
        and value.

    Notes
    -----
    ``[run] n_jobs = None`` (possible in a dict, not in TOML) means one core,
    as in scikit-learn, and is stored as 1.
    """
    cfg = copy.deepcopy(DEFAULTS)
    for section, values in (user or {}).items():
        if section not in DEFAULTS:
            raise ValueError(f"{source}: unknown section [{section}]; known sections are "
                             + ", ".join(f"[{s}]" for s in DEFAULTS))
        if not isinstance(values, dict):
            raise ValueError(f"{source}: [{section}] must be a table of key = value pairs")
        for key, value in values.items():
            if key not in DEFAULTS[section]:
                raise ValueError(f"{source}: unknown key {key!r} in [{section}]; known keys are "
                                 + ", ".join(DEFAULTS[section]))
            cfg[section][key] = _check_value(section, key, value, DEFAULTS[section][key], source)
    _check_ranges(cfg, source)
    return cfg


def _check_ranges(cfg: dict, source: str) -> None:
    def need(cond: bool, section: str, key: str, what: str) -> None:
        if not cond:
            raise ValueError(f"{source}: [{section}] {key} {what}; found {cfg[section][key]!r}")

    need(str(cfg["run"]["output"]).strip() != "", "run", "output",
         "must name a folder for the run (an empty name would write into the current directory)")
    need(0 <= cfg["run"]["seed"] <= MAX_SEED, "run", "seed", f"must be a non-negative integer (at most {MAX_SEED})")
    need(cfg["run"]["n_jobs"] == -1 or cfg["run"]["n_jobs"] >= 1, "run", "n_jobs",
         "must be -1 (all cores), a positive number of cores, or None in a Python dict (one core)")
    need(cfg["data"]["simulate"] >= 0, "data", "simulate", "must be >= 0")
    need(cfg["data"]["npix"] >= 10, "data", "npix", "must be >= 10")
    need(cfg["data"]["wmax"] > cfg["data"]["wmin"], "data", "wmax", "must be larger than wmin")
    need(cfg["weirdness"]["trees"] >= 1, "weirdness", "trees", "must be >= 1")
    need(cfg["weirdness"]["faithful_trees"] >= 1, "weirdness", "faithful_trees", "must be >= 1")
    need(cfg["weirdness"]["repeats"] >= 1, "weirdness", "repeats", "must be >= 1")
    need(cfg["weirdness"]["snr_bins"] >= 1, "weirdness", "snr_bins", "must be >= 1")
    need(cfg["weirdness"]["lof_neighbors"] >= 0, "weirdness", "lof_neighbors",
         "must be 0 (the forest alone) or a positive number of neighbours")
    need(cfg["weirdness"]["top_n"] >= 1, "weirdness", "top_n", "must be >= 1")
    need(cfg["weirdness"]["n_similar"] >= 1, "weirdness", "n_similar", "must be >= 1")
    need(0 < cfg["sequencer"]["normal_fraction"] <= 1, "sequencer", "normal_fraction", "must be in (0, 1]")
    need(cfg["sequencer"]["max_objects"] >= 3, "sequencer", "max_objects", "must be >= 3")
    need(all(s >= 1 for s in cfg["sequencer"]["scales"]) and cfg["sequencer"]["scales"] != [],
         "sequencer", "scales", "must be a non-empty list of positive integers")
    need(cfg["sequencer"]["metrics"] != [] and set(cfg["sequencer"]["metrics"]) <= {"EMD", "energy", "KL", "L2"},
         "sequencer", "metrics", "must be a non-empty list drawn from EMD, energy, KL, L2")
    need(cfg["report"]["top_n"] >= 1, "report", "top_n", "must be >= 1")
    need(cfg["report"]["top_n"] <= cfg["weirdness"]["top_n"], "report", "top_n",
         f"must not exceed [weirdness] top_n ({cfg['weirdness']['top_n']}): the report shows the objects the "
         "weirdness stage explained; raise [weirdness] top_n too")
    need(cfg["compare"]["top_k"] >= 0, "compare", "top_k", "must be >= 0 (0 = the number of planted anomalies)")
    need(cfg["data"]["wmin"] > 0 and np.isfinite(cfg["data"]["wmax"]), "data", "wmin",
         "and wmax must be positive, finite wavelengths in Å")
    for section, key in (("weirdness", "max_features_pixels"), ("sequencer", "max_pixels"),
                         ("explore", "max_pixels")):
        need(cfg[section][key] == 0 or cfg[section][key] >= 3, section, key,
             "must be 0 (no binning) or at least 3 pixels")
    need(cfg["weirdness"]["max_fit_samples"] == 0 or cfg["weirdness"]["max_fit_samples"] >= 2, "weirdness",
         "max_fit_samples", "must be 0 (all objects) or at least 2")
    need(cfg["explore"]["min_cluster_size"] == 0 or cfg["explore"]["min_cluster_size"] >= 2, "explore",
         "min_cluster_size", "must be 0 (chosen from N) or at least 2")
    from ..outliers.baselines import _ALIASES, DETECTORS

    unknown = [d for d in cfg["compare"]["detectors"] if str(d).lower() not in set(DETECTORS) | set(_ALIASES)]
    need(not unknown, "compare", "detectors",
         f"names unknown detector(s) {unknown}; choose from " + ", ".join(DETECTORS))
    inputs_given = bool(cfg["data"]["inputs"]) or bool(str(cfg["data"]["store"]).strip())
    need(not (cfg["data"]["simulate"] > 0 and inputs_given), "data", "simulate",
         "must be 0 when [data] inputs or store is set: simulated spectra would be made and then ignored")


def load_config(source: str | os.PathLike | dict | None = None) -> dict:
    """Read a pipeline configuration and return it complete and checked.

    Parameters
    ----------
    source : path to a TOML file, a nested dict, or None (the defaults)
        Relative paths in ``[data] inputs``, ``[data] store`` and ``[run]
        output`` are taken relative to the TOML file's folder.

    Returns
    -------
    dict
        ``{section: {key: value}}`` with every key of :data:`DEFAULTS`.
    """
    if source is None or isinstance(source, dict):
        return merge_config(source, source="config")
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"no such config file: {path} (write an example with `serendip init-config`)")
    cfg = merge_config(loads_toml(path.read_text(encoding="utf-8"), str(path)), str(path))
    base = path.resolve().parent

    def rel(p: str) -> str:
        return p if (not p or os.path.isabs(os.path.expanduser(p))) else str(base / p)

    cfg["data"]["inputs"] = [rel(os.path.expanduser(p)) for p in cfg["data"]["inputs"]]
    cfg["data"]["store"] = rel(os.path.expanduser(cfg["data"]["store"]))
    cfg["run"]["output"] = rel(os.path.expanduser(cfg["run"]["output"]))
    return cfg


# ---------------------------------------------------------------------- writing
def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        out = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{out}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def dump_toml(cfg: dict) -> str:
    """Write a ``{section: {key: scalar or list}}`` dict as TOML text."""
    lines = []
    for section, values in cfg.items():
        if not isinstance(values, dict):
            raise TypeError(f"config section {section!r} must be a dict of key = value pairs")
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
        lines.append("")
    return "\n".join(lines)


_EXAMPLE = '''\
# serendip pipeline configuration: `serendip run THIS_FILE.toml`
# Every key is optional; the values below are the defaults.
# Relative paths are relative to this file's folder.
# Weirdness scores everywhere follow one convention: higher = weirder.

[run]
output = "serendip-run"     # run folder: tables/, figures/, stages/, report.html
seed = 0                    # one seed drives every random step (a non-negative integer)
n_jobs = -1                 # CPU cores for the forests: -1 = all, or a positive number
force = false               # true: recompute every stage, even finished ones

[data]
# Files, folders or globs: SDSS spec-*.fits (full or lite), MaNGA-like
# multi-spectrum FITS, or wide tables (FITS/CSV/Parquet/.npz); or one
# serendip store (.h5), which is then used as it is.
inputs = {inputs}
store = ""                  # or: an existing serendip store (then inputs are ignored)
simulate = 0                # > 0: generate this many synthetic spectra instead (the demo)
grid = "log"                # common grid: "log" (constant velocity step) or "linear"
wmin = 3700.0               # grid start, Å (rest frame if rest_frame = true)
wmax = 7000.0               # grid end, Å
npix = 1000                 # grid pixels
rest_frame = true           # de-redshift with each object's z before resampling
normalize = "median"        # "median" (in a window), "sum", "l2" or "none"
mask_sky = true             # mask the strongest night-sky lines

[weirdness]
# Unsupervised random forest (Baron & Poznanski 2017).
trees = 150                 # trees per forest in the main ("best") mode
repeats = 1                 # independent runs averaged
variant = "best"            # "best" (uniform synthetic data, one forest per S/N bin, kNN score,
                            # leaves of >= 3 objects), "faithful", "snr-strata", "symmetric",
                            # "knn", "uniform" or "majority" (serendip.outliers.variants.VARIANTS),
                            # or a comma-separated combination such as "symmetric,knn"
lof_neighbors = 20          # weirdness = rank average of the forest and the local outlier factor
                            # on this many neighbours, within the forest's S/N strata; better
                            # recall of planted anomalies than either alone. 0 = the forest alone
snr_bins = 3                # S/N bins for the variants that use S/N strata
compare_faithful = true     # also score with the faithful algorithm, for comparison
faithful_trees = 100        # trees for that comparison
max_features_pixels = 50    # spectra are binned down to at most this many features (coarse
                            # bins average the noise away: better recall on the synthetic survey)
max_fit_samples = 3000      # forests are fitted on at most this many objects (all are scored; 0 = all)
n_similar = 10              # most similar objects kept for each of the weirdest
top_n = 12                  # the weirdest objects explained and shown

[sequencer]
# The Sequencer (Baron & Menard 2021) on the normal population.
enabled = true
normal_fraction = 0.5       # the least weird fraction of objects counts as normal
max_objects = 600           # at most this many of them are sequenced (random subset)
max_pixels = 200            # spectra are binned down to at most this many pixels
metrics = ["EMD", "energy", "KL", "L2"]
scales = [1, 2, 4]
mode = "improved"           # "improved" (scale-free, unit-invariant) or "faithful"
min_objects = 20            # fewer normal objects than this: the stage is skipped

[explore]
embed = "pca"               # "pca", "tsne" or "umap" (needs serendip[umap])
cluster = "hdbscan"         # "hdbscan", "kmeans", "gmm", "agglomerative" or "none"
min_cluster_size = 0        # 0 = chosen from N
min_objects = 50            # fewer objects than this: clustering is skipped
max_pixels = 250            # spectra are binned down to at most this many pixels

[compare]
enabled = true
detectors = ["iforest", "lof", "knn", "pca"]   # baselines compared with the forest (also "ensemble")
top_k = 0                   # k for recall@k; 0 = the number of planted anomalies

[report]
title = "serendip discovery report"
top_n = 12                  # objects in the gallery of the weirdest (at most [weirdness] top_n)
'''


def example_config_text(inputs: list[str] | None = None) -> str:
    """The documented example configuration as TOML text."""
    inputs = ["spectra/spec-*.fits"] if inputs is None else list(inputs)
    return _EXAMPLE.replace("{inputs}", _toml_value(inputs))


def write_example_config(path: str | os.PathLike = "serendip.toml", *, inputs: list[str] | None = None,
                         overwrite: bool = False, inputs_relative_to: str | os.PathLike | None = None) -> Path:
    """Write the documented example configuration to ``path`` (atomically) and return the path.

    ``inputs`` are written as given: :func:`load_config` reads relative paths relative to the
    config file's folder. With ``inputs_relative_to`` (the CLI passes the current folder, where
    the user typed them) relative inputs are taken relative to that folder and rewritten
    relative to the config file's folder, so they name the same files.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is false.
    IsADirectoryError
        If ``path`` is a folder.
    """
    from .._io import atomic_write_text

    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give the config file's name (e.g. {path / 'serendip.toml'})")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; choose another name or pass overwrite=True (--force)")
    if inputs is not None and inputs_relative_to is not None:
        base, start = path.resolve().parent, Path(inputs_relative_to).resolve()
        inputs = [p if os.path.isabs(os.path.expanduser(p)) else _relative_to(str(start / p), base)
                  for p in inputs]  # absolute paths stay as given
    return atomic_write_text(path, example_config_text(inputs))


def _relative_to(target: str, base: Path) -> str:
    """``target`` relative to ``base`` when they share a root, else absolute (forward slashes for TOML)."""
    try:
        rel = os.path.relpath(target, base)
    except ValueError:  # another drive on Windows
        rel = target
    return Path(rel).as_posix()
