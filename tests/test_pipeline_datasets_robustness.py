"""Robustness of the pipeline and the datasets: stage keys, config ranges, seeds and URL templates.

* Every config value a stage reads is part of its key (or of an upstream stage's key), so changing it
  recomputes the stage instead of reusing a stale result (``[report] top_n`` and ``compare`` was the case
  found).
* ``[run] n_jobs`` and seeds are checked up front with a message naming the key and the value.
* A ``fetch-sdss`` URL template with an unknown placeholder is a ValueError naming it, raised before any
  download.

The pipeline runs use 30 synthetic spectra written as SDSS files and a handful of trees (a few seconds).
"""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from astropy.table import Table

from serendip.cli import main
from serendip.datasets import make_survey
from serendip.pipeline import stages as stages_module
from serendip.pipeline.config import _CHOICES, DEFAULTS, MAX_SEED, load_config
from serendip.pipeline.runner import RunFolder, run_stages

N_SPECTRA = 30
#: Small settings under which every stage does its real work on 30 spectra.
SMALL = {"run": {"n_jobs": 1},
         "weirdness": {"trees": 5, "faithful_trees": 5},
         "sequencer": {"min_objects": 5},
         "explore": {"min_objects": 10},
         "compare": {"detectors": ["iforest", "knn", "pca"]}}


@pytest.fixture(scope="module")
def fits_dir(tmp_path_factory):
    """30 synthetic spectra as SDSS ``spec-*.fits`` files (no truth the pipeline could see)."""
    from serendip.datasets import write_sdss_files

    folder = tmp_path_factory.mktemp("sim") / "fits"
    write_sdss_files(make_survey(N_SPECTRA, seed=3, progress=False), folder, progress=False)
    return folder


def _config(out, *, fits=None, simulate=0, **sections) -> dict:
    cfg = copy.deepcopy(SMALL)
    cfg["run"]["output"] = str(out)
    cfg["data"] = {"inputs": [str(fits)]} if fits is not None else {"simulate": simulate}
    for section, values in sections.items():
        cfg.setdefault(section, {}).update(values)
    return load_config(cfg)


def _toml(path, out, fits, top_n: int) -> str:
    path.write_text(f'[run]\noutput = "{out}"\nn_jobs = 1\n[data]\ninputs = ["{fits}"]\n'
                    "[weirdness]\ntrees = 5\nfaithful_trees = 5\n[sequencer]\nmin_objects = 5\n"
                    f'[explore]\nmin_objects = 10\n[compare]\ndetectors = ["iforest", "knn", "pca"]\n'
                    f"[report]\ntop_n = {top_n}\n")
    return str(path)


# ---------------------------------------------------------------------- bug 1: stage keys
class _Recording(dict):
    """A config dict that notes every ``(section, key)`` read through ``[]`` or ``get``."""

    def __init__(self, data, reads: set, section: str | None = None):
        super().__init__(data)
        self._reads, self._section = reads, section

    def _wrap(self, key, value):
        if self._section is None:
            return _Recording(value, self._reads, key) if isinstance(value, dict) else value
        self._reads.add((self._section, key))
        return value

    def __getitem__(self, key):
        return self._wrap(key, super().__getitem__(key))

    def get(self, key, default=None):
        return self._wrap(key, super().get(key, default)) if key in self else default


def _perturbed(cfg: dict, section: str, key: str) -> dict:
    """A valid config that differs from ``cfg`` in ``[section] key`` only."""
    value = cfg[section][key]
    if isinstance(value, bool):
        candidates = [not value]
    elif isinstance(value, int):
        candidates = [value + 1, value - 1]
    elif isinstance(value, float):
        candidates = [value * 1.1, value * 0.9]
    elif (section, key) in _CHOICES:
        candidates = [c for c in _CHOICES[(section, key)] if c != value]
    elif isinstance(value, str):
        candidates = [value + "x.h5" if key == "store" else value + "x"]
    else:
        candidates = [value[:-1], value + value[:1]]
    for cand in candidates:
        user = copy.deepcopy(cfg)
        user[section][key] = cand
        try:
            return load_config(user)
        except ValueError:
            continue
    raise AssertionError(f"no valid value other than {value!r} for [{section}] {key}")


def _upstream(stages, name: str) -> set:
    """``name`` and every stage it requires, directly or through others."""
    by_name = {s.name: s for s in stages}
    names = [s.name for s in stages]
    todo, seen = [name], set()
    while todo:
        s = by_name[todo.pop()]
        if s.name in seen:
            continue
        seen.add(s.name)
        todo += names[:names.index(s.name)] if s.requires is None else list(s.requires)
    return seen


@pytest.mark.parametrize("source", ["files", "simulate"])
def test_every_config_value_a_stage_reads_is_in_its_key(tmp_path, fits_dir, source):
    """Run the science stages once, note which config values each reads, and check that changing any of them
    changes the parameters of that stage or of a stage upstream of it (so its key)."""
    out = tmp_path / "run"
    cfg = _config(out, fits=fits_dir) if source == "files" else _config(out, simulate=N_SPECTRA)
    run = RunFolder(out)
    if source == "files":
        # a truth table left by an earlier synthetic run in this folder is not the truth of these files
        Table({"id": ["x1", "x2"], "anomaly_kind": ["normal", "bad"], "sequence_param": [0.1, 0.2]}).write(
            run.table("truth"))
    stages = [s for s in stages_module.build_stages(cfg, run) if s.name != "report"]
    reads: dict[str, set] = {}

    def recording(stage):
        func = stage.func

        def wrapped(ctx):
            ctx.config = _Recording(ctx.config, reads.setdefault(stage.name, set()))
            return func(ctx)
        return wrapped

    for stage in stages:
        stage.func = recording(stage)
    res = run_stages(run, stages, config=cfg, progress=False)
    assert all(rec["status"] == "done" for rec in res.records.values()), {
        n: rec.get("reason") for n, rec in res.records.items()}
    assert reads["compare"], "the recording saw no config reads"

    before = {s.name: json.dumps(s.params, sort_keys=True, default=str) for s in stages}
    for stage in stages:
        for section, key in sorted(reads.get(stage.name, ())):
            if (section, key) in stages_module.RUNTIME_ONLY:
                continue
            if (section, key) == ("data", "store") and cfg["data"]["simulate"] > 0:
                continue  # a store cannot be combined with simulate: no other valid value, nothing to go stale
            after = {s.name: json.dumps(s.params, sort_keys=True, default=str)
                     for s in stages_module.build_stages(_perturbed(cfg, section, key), run)}
            covering = [n for n in _upstream(stages, stage.name) if after[n] != before[n]]
            assert covering, (f"stage {stage.name!r} reads [{section}] {key}, but changing it changes neither "
                              "its key nor an upstream stage's key: a stale result would be reused")

    if source == "files":
        assert "no planted truth" in res.records["compare"]["summary"]
        assert not run.has_table("planted")
        assert "anomaly_kind" not in run.read_table("weirdest").colnames
    else:
        assert "recall in the top" in res.records["compare"]["summary"] and run.has_table("planted")
        assert "anomaly_kind" in run.read_table("weirdest").colnames


def test_compare_key_holds_report_top_n_only_where_compare_reads_it(tmp_path, fits_dir):
    run = RunFolder(tmp_path / "run")

    def compare_params(**kw):
        cfg = _config(tmp_path / "run", **kw)
        return next(s.params for s in stages_module.build_stages(cfg, run) if s.name == "compare")

    a = compare_params(fits=fits_dir, report={"top_n": 12})
    b = compare_params(fits=fits_dir, report={"top_n": 3})
    assert a != b and b["report_top_n"] == 3
    # with planted truth the agreement table (the only user of [report] top_n) is not made
    assert compare_params(simulate=40, report={"top_n": 12}) == compare_params(simulate=40, report={"top_n": 3})
    # [run] n_jobs changes the speed, not the results: finished stages stay valid with fewer cores
    assert ("run", "n_jobs") in stages_module.RUNTIME_ONLY
    p1 = [s.params for s in stages_module.build_stages(_config(tmp_path / "r", fits=fits_dir), run)]
    p2 = [s.params for s in stages_module.build_stages(
        _config(tmp_path / "r", fits=fits_dir, run={"n_jobs": -1}), run)]
    assert p1 == p2


def test_changing_report_top_n_recomputes_the_compare_stage(tmp_path, fits_dir, capsys):
    """The reviewer's case: [report] top_n 12 -> 3 printed "(top 12 overlap) (reused)"."""
    out = tmp_path / "run"
    cfg = _toml(tmp_path / "a.toml", out, fits_dir, 12)
    assert main(["-q", "run", cfg]) == 0
    first = capsys.readouterr().out
    assert "(top 12 overlap)" in first
    cfg = _toml(tmp_path / "a.toml", out, fits_dir, 3)
    assert main(["-q", "run", cfg]) == 0
    lines = {ln.split("]")[0][1:]: ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[")}
    assert "(top 3 overlap)" in lines["compare"] and not lines["compare"].endswith("(reused)")
    for name in ("ingest", "weirdness", "sequence", "explore"):
        assert lines[name].endswith("(reused)"), lines[name]
    agreement = RunFolder(out, create=False).read_table("agreement")
    assert agreement.meta["k"] == 3 and "top_3_overlap" in agreement.colnames


# ---------------------------------------------------------------------- bug 2: n_jobs and seeds
@pytest.mark.parametrize("n_jobs", [0, -2, -8])
def test_bad_n_jobs_is_rejected_naming_key_and_value(n_jobs):
    with pytest.raises(ValueError, match=rf"\[run\] n_jobs must be -1 .*positive.*; found {n_jobs}$"):
        load_config({"run": {"n_jobs": n_jobs}})


def test_good_n_jobs_values():
    assert load_config({"run": {"n_jobs": -1}})["run"]["n_jobs"] == -1
    assert load_config({"run": {"n_jobs": 3}})["run"]["n_jobs"] == 3
    # None (a dict only: TOML has no null) is scikit-learn's "one core"; stored as 1 so config.toml holds it
    assert load_config({"run": {"n_jobs": None}})["run"]["n_jobs"] == 1
    with pytest.raises(ValueError, match=r"\[run\] n_jobs must be an integer; found 'all'"):
        load_config({"run": {"n_jobs": "all"}})


@pytest.mark.parametrize("seed", [-1, -100, MAX_SEED + 1])
def test_bad_seed_is_rejected_naming_key_and_value(seed):
    with pytest.raises(ValueError, match=rf"\[run\] seed must be a non-negative integer.*; found {seed}$"):
        load_config({"run": {"seed": seed}})
    assert load_config({"run": {"seed": MAX_SEED}})["run"]["seed"] == MAX_SEED


def test_toml_n_jobs_zero_fails_before_any_stage(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[run]\noutput = "{tmp_path / "run"}"\nn_jobs = 0\n[data]\nsimulate = 20\n')
    assert main(["-q", "run", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("serendip run: error:") and len(err.strip().splitlines()) == 1
    assert f"{cfg}: [run] n_jobs" in err and "found 0" in err and "n_jobs == 0" not in err
    assert not (tmp_path / "run").exists()
    cfg.write_text(f'[run]\noutput = "{tmp_path / "run"}"\nseed = -1\n[data]\nsimulate = 20\n')
    assert main(["-q", "run", str(cfg)]) == 2
    assert "[run] seed must be a non-negative integer" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_demo_with_a_negative_seed_fails_up_front(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"seed must be a non-negative integer.*--seed -1"):
        stages_module.demo_config(n=20, seed=-1, out=tmp_path / "d")
    out = tmp_path / "demo"
    assert main(["-q", "demo", "--n", "20", "--seed", "-1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("serendip demo: error:") and "--seed -1" in err
    assert "expected non-negative integer" not in err and not out.exists()


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True])
def test_make_survey_rejects_a_bad_seed(seed):
    with pytest.raises(ValueError, match=rf"seed must be a non-negative integer; got {seed!r}"):
        make_survey(5, seed=seed, progress=False)


def test_make_survey_takes_numpy_integer_seeds():
    a = make_survey(3, seed=np.int64(4), progress=False)
    b = make_survey(3, seed=4, progress=False)
    assert np.array_equal(a.truth["sequence_param"], b.truth["sequence_param"])


def test_simulate_cli_with_a_negative_seed(tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["-q", "simulate", "-o", str(out), "--n", "5", "--seed", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("serendip simulate: error:") and "seed must be a non-negative integer; got -1" in err
    assert not out.exists()


# ---------------------------------------------------------------------- bug 3: fetch-sdss URL templates
ALLOWED = "{base}, {run2d}, {plate}, {mjd}, {fiberid}"


@pytest.mark.parametrize("template, unknown", [
    ("{base}/{plat}/x.fits", "{plat}"),
    ("{base}/{plate}-{mjd}-{fiber}-{dr}", "{fiber}, {dr}"),
    ("{base}/{plate}-{mjd}-{fiberid}/{}", "{}"),
    ("{base}/{plate}-{mjd}-{fiberid}/{0}", "{0}"),
])
def test_unknown_template_placeholders_are_named(template, unknown):
    from serendip.datasets.fetch import spectrum_url

    with pytest.raises(ValueError) as info:
        spectrum_url(266, 51602, 13, template=template)
    msg = str(info.value)
    assert f"unknown placeholder(s) {unknown};" in msg and ALLOWED in msg and repr(template) in msg


@pytest.mark.parametrize("template, match", [
    ("{base}/{plate", "not a valid format string"),
    ("{base}/{plate}-{mjd}.fits", r"lacks the placeholder\(s\) \{fiberid\}"),
    ("{base}/{run2d:04d}/{plate}-{mjd}-{fiberid}", "cannot be filled in"),
])
def test_other_bad_templates_are_value_errors(template, match):
    from serendip.datasets.fetch import check_template

    with pytest.raises(ValueError, match=match):
        check_template(template)


def test_good_templates_still_work():
    from serendip.datasets.fetch import EBOSS_TEMPLATE, SDSS_TEMPLATE, check_template, spectrum_url

    assert check_template(SDSS_TEMPLATE) == SDSS_TEMPLATE and check_template(EBOSS_TEMPLATE) == EBOSS_TEMPLATE
    assert spectrum_url(7, 8, 9, "v5", "http://m/", "{base}/{run2d}/{plate:04d}/{mjd}-{fiberid:03d}.fits") == \
        "http://m/v5/0007/8-009.fits"
    assert spectrum_url(1, 2, 3, template=lambda **f: "{plate}|{mjd}|{fiberid}".format(**f)) == "1|2|3"
    with pytest.raises(TypeError, match="format string or a callable"):
        spectrum_url(1, 2, 3, template=42)


def test_fetch_checks_the_template_before_any_download(tmp_path, monkeypatch):
    from serendip.datasets import fetch as fetch_module

    def no_download(*args, **kwargs):
        raise AssertionError("a download started despite the bad template")

    monkeypatch.setattr(fetch_module, "_download_one", no_download)
    table = Table({"plate": [266, 267], "mjd": [51602, 51608], "fiberid": [1, 2]})
    out = tmp_path / "dl"
    with pytest.raises(ValueError, match=r"unknown placeholder\(s\) \{plat\}"):
        fetch_module.fetch_sdss(table, out, base_url="http://127.0.0.1:9", template="{base}/{plat}/x.fits",
                                progress=False)
    assert not out.exists()


def test_fetch_cli_bad_template_is_a_one_line_error(tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_text("plate,mjd,fiberid\n266,51602,1\n")
    out = tmp_path / "dl"
    rc = main(["-q", "fetch-sdss", str(table), "-o", str(out), "--base-url", "http://127.0.0.1:9",
               "--template", "{base}/{plat}/x.fits", "--retries", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("serendip fetch-sdss: error:") and len(err.strip().splitlines()) == 1
    assert "{plat}" in err and ALLOWED in err and "Traceback" not in err
    assert not out.exists()


def test_baseline_neighbourhoods_stay_local_on_small_runs():
    from serendip.pipeline.stages import baseline_neighbours

    assert baseline_neighbours("lof", 5000) == 20 and baseline_neighbours("knn", 5000) == 10
    assert baseline_neighbours("lof", 22) == 10 and baseline_neighbours("knn", 22) == 10
    assert baseline_neighbours("lof", 3) == 1
    for n in range(2, 60):
        assert 1 <= baseline_neighbours("lof", n) <= max(1, (n - 1) // 2)


# ---------------------------------------------------------------------- review fixes (2026-11-26)
def _run(cfg):
    from serendip.pipeline import run_pipeline

    return run_pipeline(cfg, progress=False)


def test_a_run_folder_inside_its_input_folder_is_reused_and_not_ingested(tmp_path, fits_dir):
    """The run's own tables were ingested (and rejected) and changed the input fingerprint every time."""
    import shutil

    folder = tmp_path / "spectra"
    shutil.copytree(fits_dir, folder)
    cfg = _config(folder / "serendip-run", fits=folder)
    first = _run(cfg)
    assert first.records["ingest"]["status"] == "done"
    again = _run(cfg)
    assert "ingest" in again.reused and "weirdness" in again.reused
    from serendip.spectra import SpectraStore

    with SpectraStore(folder / "serendip-run" / "data" / "store.h5") as st:
        assert not any("serendip-run" in str(f) for f in st.rejected["file"])


def test_a_config_that_reads_the_runs_own_store_does_not_delete_it(tmp_path, fits_dir):
    out = tmp_path / "run"
    _run(_config(out, fits=fits_dir))
    store = out / "data" / "store.h5"
    assert store.exists()
    cfg = copy.deepcopy(SMALL)
    cfg["run"]["output"] = str(out)
    cfg["data"] = {"store": str(store)}  # the ingest key changes (a store instead of inputs)
    res = _run(load_config(cfg))
    assert store.exists() and res.records["ingest"]["status"] == "done"
    assert res.records["ingest"]["info"]["store"] == str(store)


def test_records_of_stages_this_run_does_not_have_are_dropped(tmp_path, fits_dir):
    """A demo's simulate record left in the folder made the report call real data synthetic."""
    out = tmp_path / "run"
    _run(_config(out, simulate=N_SPECTRA))
    assert RunFolder(out).read_record("simulate") is not None
    res = _run(_config(out, fits=fits_dir))
    assert RunFolder(out).read_record("simulate") is None and "simulate" not in res.records
    assert not (out / "data" / "fits").exists()  # the simulated files went with their record
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "synthetic survey" not in html


def test_a_changed_config_after_an_interrupted_ingest_starts_the_ingest_over(tmp_path, fits_dir, interrupt_reading):
    out = tmp_path / "run"
    restore = interrupt_reading(5)
    with pytest.raises(KeyboardInterrupt):
        _run(_config(out, fits=fits_dir))
    restore()
    assert (out / "data" / ".store.h5.partial").exists()
    res = _run(_config(out, fits=fits_dir, data={"wmin": 3800.0}))  # other settings than the partial store's
    assert res.records["ingest"]["status"] == "done"
    assert res.records["ingest"]["info"]["grid"].startswith("log 3800-")
    assert len(res.records["ingest"]["info"]["input_hashes"]) == N_SPECTRA


@pytest.mark.parametrize("section, values, message", [
    ("weirdness", {"max_fit_samples": -1}, "max_fit_samples must be 0"),
    ("weirdness", {"max_features_pixels": -5}, "max_features_pixels must be 0"),
    ("explore", {"min_cluster_size": 1}, "min_cluster_size must be 0"),
    ("sequencer", {"max_pixels": 1}, "max_pixels must be 0"),
    ("compare", {"detectors": ["iforst"]}, "unknown detector.*iforst"),
    ("report", {"top_n": 20}, r"top_n must not exceed \[weirdness\] top_n"),
    ("data", {"wmax": float("inf")}, "positive, finite wavelengths"),
    ("data", {"simulate": 30, "store": "x.h5"}, "simulate must be 0 when"),
])
def test_more_bad_config_values_are_refused_up_front(section, values, message):
    with pytest.raises(ValueError, match=message):
        load_config({section: values})


def test_a_glob_input_inside_the_run_folder_is_kept_when_old_records_are_dropped(tmp_path, fits_dir):
    import shutil

    out = tmp_path / "run"
    _run(_config(out, simulate=N_SPECTRA))  # leaves a simulate record and run/data/fits
    shutil.rmtree(out / "data" / "fits")
    shutil.copytree(fits_dir, out / "data" / "fits")
    cfg = copy.deepcopy(SMALL)
    cfg["run"]["output"] = str(out)
    cfg["data"] = {"inputs": [str(out / "data" / "fits" / "*.fits")]}
    res = _run(load_config(cfg))
    assert "simulate" not in res.records and len(list((out / "data" / "fits").glob("*.fits"))) == N_SPECTRA
    assert len(res.records["ingest"]["info"]["input_hashes"]) == N_SPECTRA


def test_a_simulated_run_does_not_replace_a_run_on_real_files(tmp_path, fits_dir):
    """`serendip demo --out FOLDER` on the folder of a run on survey files replaced its store and tables."""
    from serendip.pipeline.stages import run_pipeline

    out = tmp_path / "run"
    _run(_config(out, fits=fits_dir))
    weird = (out / "tables").glob("weirdness.*")
    before = {p.name: p.stat().st_mtime_ns for p in weird}
    assert before
    with pytest.raises(FileExistsError, match="holds a run on .*simulated survey.*--force"):
        run_pipeline(_config(out, simulate=N_SPECTRA), progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "tables").glob("weirdness.*")} == before
    assert main(["-q", "demo", "--n", "20", "--out", str(out)]) == 2  # the CLI says so in one line
    res = run_pipeline(_config(out, simulate=N_SPECTRA), progress=False, force=True)  # asked for: replaced
    assert "simulate" in res.records
