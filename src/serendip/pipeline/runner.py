"""A small resumable stage runner and the run folder it writes into.

A run folder holds everything one pipeline run produced::

    RUN/
      config.toml         the complete configuration used
      provenance.json     serendip version, platform, seeds, input hashes, stage times
      tables/             result tables (FITS, provenance in their metadata)
      figures/            every report figure as PNG
      data/               the spectra store (and generated input files for the demo)
      stages/NAME.json    one completion record per finished stage, written LAST
      report.html         the self-contained report

Each stage writes its outputs atomically (temporary name, then rename) and
then its completion record. A stage counts as done only when its record
exists, its key matches and every output it lists still exists with the
recorded size. So an exception in a stage leaves the finished stages valid,
no half-written file, and no record for the failed stage; the next run skips
the finished stages and redoes the failed one. A stage's key hashes its
parameters and the run ids of the stages it depends on, so changing a
parameter, or recomputing an upstream stage, recomputes it and everything
downstream.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .._io import _jsonable, atomic_write_text
from .._logging import get_logger
from .._version import __version__

__all__ = ["RunFolder", "Stage", "StageContext", "StageResult", "StageSkipped", "run_stages",
           "RunResult"]

log = get_logger(__name__)


class StageSkipped(Exception):
    """Raise inside a stage to record it as skipped, with the message as the reason.

    A skipped stage is not an error: the report says what was skipped and why.
    """


@dataclass
class StageResult:
    """What a stage function returns.

    Attributes
    ----------
    summary : str
        One line for the console and the report.
    outputs : list of str
        Paths the stage wrote, relative to the run folder.
    info : dict
        Small JSON-able facts for the report and provenance (counts, timings, seeds).
    skipped : str or None
        If set, the stage did not run its main work; this is the reason.
    """

    summary: str = ""
    outputs: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    skipped: str | None = None


@dataclass
class Stage:
    """One pipeline step.

    Parameters
    ----------
    name : str
        Short identifier; the completion record is ``stages/<name>.json``.
    func : callable
        ``func(ctx: StageContext) -> StageResult | None``.
    params : dict
        JSON-able parameters; part of the stage key.
    requires : sequence of str
        Names of stages whose outputs this one reads. Defaults to every
        earlier stage.
    title : str
        Human name for progress and the report.
    """

    name: str
    func: Callable[[StageContext], StageResult | None]
    params: dict = field(default_factory=dict)
    requires: Sequence[str] | None = None
    title: str = ""


class RunFolder:
    """The folder one pipeline run writes to (see the module docstring for its layout)."""

    def __init__(self, path: str | os.PathLike, *, create: bool = True):
        self.path = Path(path)
        if create:
            for sub in ("tables", "figures", "stages", "data"):
                (self.path / sub).mkdir(parents=True, exist_ok=True)
        elif self.path.is_file():
            hint = (" (it is the report inside a run folder; give the folder around it)"
                    if self.path.name == "report.html" else "")
            raise NotADirectoryError(f"{self.path} is a file, not a run folder{hint}; give the folder that "
                                     "`serendip run` or `serendip demo` wrote")
        elif not self.path.is_dir():
            raise FileNotFoundError(f"no such run folder: {self.path}")
        elif not any((self.path / sub).is_dir() for sub in ("stages", "tables")):
            raise ValueError(f"{self.path} is not a serendip run folder (no stages/ or tables/ inside); "
                             "give the folder that `serendip run` or `serendip demo` wrote")

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # paths ------------------------------------------------------------------
    @property
    def tables(self) -> Path:
        return self.path / "tables"

    @property
    def figures(self) -> Path:
        return self.path / "figures"

    @property
    def data(self) -> Path:
        return self.path / "data"

    @property
    def report_path(self) -> Path:
        return self.path / "report.html"

    @property
    def config_path(self) -> Path:
        return self.path / "config.toml"

    @property
    def provenance_path(self) -> Path:
        return self.path / "provenance.json"

    def table(self, name: str) -> Path:
        """The file of table ``name``: ``tables/<name>.fits``, or ``.ecsv`` when that is what exists."""
        for ext in (".fits", ".ecsv"):
            path = self.tables / f"{name}{ext}"
            if path.is_file():
                return path
        return self.tables / f"{name}.fits"

    def save_table(self, table, name: str) -> Path:
        """Write ``table`` atomically as ``tables/<name>.fits``.

        FITS holds only ASCII text; a table with other characters (file names,
        error messages) is written as UTF-8 ECSV instead. Returns the path.
        """
        from .._io import write_table

        fits_path, ecsv_path = self.tables / f"{name}.fits", self.tables / f"{name}.ecsv"
        try:
            path = write_table(table, fits_path)
            stale = ecsv_path
        except UnicodeEncodeError:
            path = write_table(table, ecsv_path)
            stale = fits_path
        if stale.exists():
            stale.unlink()
        return path

    def figure(self, name: str) -> Path:
        """``figures/<name>.png``."""
        return self.figures / f"{name}.png"

    def record_path(self, stage: str) -> Path:
        return self.path / "stages" / f"{stage}.json"

    def rel(self, path: str | os.PathLike) -> str:
        """``path`` relative to the run folder, with forward slashes."""
        return Path(os.path.relpath(Path(path), self.path)).as_posix()

    # records ----------------------------------------------------------------
    def read_record(self, stage: str) -> dict | None:
        """The completion record of ``stage``, or None when it has not finished."""
        path = self.record_path(stage)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None

    def records(self, *, current: bool = False) -> dict[str, dict]:
        """Every completion record, in the order the stages ran.

        Parameters
        ----------
        current : bool
            Keep only the records that still belong to one consistent run: a record
            counts when every stage it requires has a current record and its key
            matches those stages' run ids. After a run that failed part-way (say, in
            ingest, with other inputs), the later stages' records left from an
            earlier run describe results of data that are no longer there; they are
            dropped (and logged).
        """
        out = []
        for p in sorted((self.path / "stages").glob("*.json")):
            rec = self.read_record(p.stem)
            if rec is not None:
                out.append(rec)
        out.sort(key=lambda r: (r.get("index", 0), r.get("finished", "")))
        records = {r["stage"]: r for r in out}
        if not current:
            return records
        kept: dict[str, dict] = {}
        for name, rec in records.items():
            requires = rec.get("requires") or []
            upstream = [kept.get(r) for r in requires]
            if (all(u is not None for u in upstream) and "params" in rec and "key" in rec
                    and _key_of(name, rec["params"], upstream) == rec["key"]):
                kept[name] = rec
            else:
                log.info("stage %s: its record is left from an earlier run (an upstream stage has "
                         "since failed or been redone); its results are not used", name)
        return kept

    def has_table(self, name: str) -> bool:
        return self.table(name).is_file()

    def read_table(self, name: str):
        from .._io import read_table

        return read_table(self.table(name))

    def refresh_outputs(self, stage: str) -> bool:
        """Record again the sizes of ``stage``'s outputs after they were rewritten outside a run.

        ``serendip report`` rebuilds ``report.html`` and its figures from the same tables; the
        report stage's record then still vouches for them, so the next run reuses the stage
        instead of redoing it. Returns False (and changes nothing) when the stage has no
        record or one of its outputs is gone.
        """
        rec = self.read_record(stage)
        if rec is None or not all((self.path / rel).exists() for rel in rec.get("outputs", {})):
            return False
        rec["outputs"] = _output_facts(self, rec.get("outputs", {}))
        atomic_write_text(self.record_path(stage), json.dumps(rec, indent=2, default=str))
        return True

    def outputs_valid(self, record: dict) -> bool:
        """True when every output listed in ``record`` exists with the recorded size."""
        for rel, facts in record.get("outputs", {}).items():
            p = self.path / rel
            if not p.exists():
                return False
            if p.is_file() and facts.get("size") is not None and p.stat().st_size != facts["size"]:
                return False
        return True


@dataclass
class StageContext:
    """What a stage function gets: the run folder, its parameters, the whole config and upstream records."""

    run: RunFolder
    stage: Stage
    config: dict
    progress: bool = True
    records: dict = field(default_factory=dict)

    @property
    def params(self) -> dict:
        return self.stage.params

    @property
    def seed(self) -> int:
        return int(self.config.get("run", {}).get("seed", 0))

    def record(self, stage: str) -> dict | None:
        """The completion record of an earlier stage in this run (None if it has none)."""
        return self.records.get(stage)

    def done(self, stage: str) -> bool:
        """True when ``stage`` finished and was not skipped."""
        rec = self.records.get(stage)
        return rec is not None and rec.get("status") == "done"


@dataclass
class RunResult:
    """The outcome of :func:`run_stages`."""

    run: RunFolder
    records: dict
    ran: list[str]
    reused: list[str]

    @property
    def report_path(self) -> Path | None:
        p = self.run.report_path
        return p if p.is_file() else None


def _key_of(name: str, params, upstream: Iterable[dict]) -> str:
    payload = json.dumps({"stage": name, "params": _jsonable(params),
                          "upstream": sorted(r["run_id"] for r in upstream)}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _key(stage: Stage, upstream: Iterable[dict]) -> str:
    return _key_of(stage.name, stage.params, upstream)


def _output_facts(run: RunFolder, outputs: Iterable[str]) -> dict:
    facts = {}
    for rel in outputs:
        p = run.path / rel
        if not p.exists():
            raise RuntimeError(f"stage said it wrote {rel} but {p} does not exist")
        size = p.stat().st_size if p.is_file() else None
        facts[Path(rel).as_posix()] = {"size": size}
    return facts


def _paths_read(config: dict) -> set[Path]:
    """The files and folders the config reads (``[data] store`` and ``inputs``), resolved."""
    d = config.get("data", {}) if isinstance(config, dict) else {}
    out = set()
    for item in [d.get("store") or "", *(d.get("inputs") or [])]:
        text = str(item).strip()
        if not text:
            continue
        if any(ch in text for ch in "*?["):  # a glob: the folder part before the first wildcard
            parts = Path(text).parts
            cut = next(k for k, part in enumerate(parts) if any(ch in part for ch in "*?["))
            if cut == 0:
                continue
            text = str(Path(*parts[:cut]))
        out.add(Path(text).resolve())
    return out


def _remove_outputs(run: RunFolder, record: dict, keep: set[Path] = frozenset()) -> None:
    """Delete the outputs a stale record lists (only paths inside the run folder, never one in ``keep``
    or holding one: a config may name the run's own store as its input)."""
    import shutil

    root = run.path.resolve()
    for rel in record.get("outputs", {}):
        p = (run.path / rel).resolve()
        if p == root or root not in p.parents:
            continue
        if p in keep or any(p in k.parents for k in keep):
            log.info("keeping %s: the config reads it", p)
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists():
            p.unlink()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_stages(run: RunFolder | str | os.PathLike, stages: Sequence[Stage], *, config: dict | None = None,
               force: bool | Sequence[str] = False, progress: bool = True,
               on_stage: Callable[[str, dict], None] | None = None) -> RunResult:
    """Run ``stages`` in order in the run folder, skipping those already finished.

    Parameters
    ----------
    run : RunFolder or path
    stages : sequence of Stage
    config : dict, optional
        The whole configuration, passed to every stage and written to
        ``config.toml`` and ``provenance.json``.
    force : bool or sequence of str
        True recomputes every stage; a list recomputes the named stages
        (and, through the keys, everything downstream of them).
    progress : bool
        Passed to the stages (tqdm bars).
    on_stage : callable, optional
        Called as ``on_stage(name, record)`` after each stage finishes or
        is reused (the CLI prints the one-line summary here).

    Returns
    -------
    RunResult

    Notes
    -----
    Records of stages that are not in ``stages`` (say, a demo's ``simulate`` in a folder now
    run on real data) are removed with their outputs first, except paths the config reads.

    An exception inside a stage propagates after the stage's partial work is
    dropped: its old completion record was removed before it started, every
    file it wrote went through an atomic rename, and the finished stages keep
    their records, so the next call resumes at the failed stage.
    """
    run = run if isinstance(run, RunFolder) else RunFolder(run)
    config = config or {}
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"stage names must be unique; got {names}")
    forced = set(names) if force is True else set(force or ())
    unknown = forced - set(names)
    if unknown:
        raise ValueError(f"cannot force unknown stage(s) {sorted(unknown)}; stages are {names}")

    _write_config(run, config)
    keep = _paths_read(config)
    # records of stages this pipeline does not have (a demo's "simulate" in a folder now used for real
    # data) would describe data that are no longer there: drop them with their outputs
    for name, old in run.records().items():
        if name not in names:
            log.info("stage %s is not part of this run: its old record and outputs are removed", name)
            run.record_path(name).unlink(missing_ok=True)
            _remove_outputs(run, old, keep)
    records: dict[str, dict] = {}
    ran, reused = [], []
    for index, stage in enumerate(stages):
        requires = names[:index] if stage.requires is None else list(stage.requires)
        missing = [r for r in requires if r not in records]
        if missing:
            raise ValueError(f"stage {stage.name!r} requires {missing}, which do not run before it")
        key = _key(stage, [records[r] for r in requires])
        old = run.read_record(stage.name)
        if (stage.name not in forced and old is not None and old.get("key") == key
                and run.outputs_valid(old)):
            log.debug("stage %s: already done, reusing its outputs", stage.name)
            old["reused"] = True
            records[stage.name] = old
            reused.append(stage.name)
            if on_stage:
                on_stage(stage.name, old)
            continue
        # The stage is about to (re)write its outputs: its old record no longer vouches for them,
        # and outputs it may not write this time (e.g. it now skips) must not linger as if current.
        if run.record_path(stage.name).exists():
            run.record_path(stage.name).unlink()
        if old is not None:
            _remove_outputs(run, old, keep)
        ctx = StageContext(run=run, stage=stage, config=config, progress=progress, records=dict(records))
        started = _now()
        t0 = time.perf_counter()
        log.debug("stage %s: starting", stage.name)
        try:
            result = stage.func(ctx)
        except StageSkipped as exc:
            result = StageResult(summary=f"skipped: {exc}", skipped=str(exc))
        if result is None:
            result = StageResult()
        seconds = time.perf_counter() - t0
        record = {
            "stage": stage.name,
            "title": stage.title or stage.name,
            "index": index,
            "status": "skipped" if result.skipped else "done",
            "reason": result.skipped,
            "summary": result.summary,
            "params": _jsonable(stage.params),
            "key": key,
            "run_id": uuid.uuid4().hex,
            "requires": requires,
            "outputs": _output_facts(run, result.outputs),
            "info": _jsonable(result.info),
            "started": started,
            "finished": _now(),
            "seconds": round(seconds, 3),
            "serendip_version": __version__,
        }
        atomic_write_text(run.record_path(stage.name), json.dumps(record, indent=2, default=str))
        log.debug("stage %s: %s (%.1f s)", stage.name, record["summary"], seconds)
        records[stage.name] = record
        ran.append(stage.name)
        if on_stage:
            on_stage(stage.name, record)
    write_provenance(run, config, records)
    return RunResult(run=run, records=records, ran=ran, reused=reused)


def _write_config(run: RunFolder, config: dict) -> None:
    if not config:
        return
    from .config import dump_toml

    try:
        text = dump_toml(config)
    except TypeError:  # a config built in Python with values TOML cannot hold
        text = "# config with non-TOML values; see provenance.json\n"
    atomic_write_text(run.config_path, "# The complete configuration of this run.\n" + text)


def environment() -> dict:
    """This process's serendip and library versions, platform and CPU count."""
    import numpy

    versions = {"serendip": __version__, "python": sys.version.split()[0], "numpy": numpy.__version__}
    for mod in ("scipy", "sklearn", "astropy", "matplotlib"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # pragma: no cover - all are dependencies
            pass
    return {"serendip_version": __version__, "versions": versions, "platform": platform.platform(),
            "cpu_count": os.cpu_count()}


def write_provenance(run: RunFolder, config: dict, records: dict) -> Path:
    """Write ``provenance.json``: versions, platform, config, seeds, input hashes and stage times."""
    inputs = {}
    for rec in records.values():
        inputs.update(rec.get("info", {}).get("input_hashes", {}))
    prov = {
        "created": _now(),
        **environment(),
        "seed": config.get("run", {}).get("seed") if config else None,
        "config": _jsonable(config),
        "input_hashes": inputs,
        "stages": [{"stage": r["stage"], "status": r["status"], "seconds": r["seconds"],
                    "reused": bool(r.get("reused")), "summary": r["summary"], "reason": r.get("reason")}
                   for r in records.values()],
    }
    return atomic_write_text(run.provenance_path, json.dumps(prov, indent=2, default=str))
