"""The stage runner and the config: resume, interruption, invalidation, TOML round trip.

Stand-in stages are defined here so the runner is tested independently of the science stages.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.table import Table

from serendip._io import read_table, write_table
from serendip.pipeline.config import DEFAULTS, dump_toml, example_config_text, load_config, loads_toml
from serendip.pipeline.config import write_example_config
from serendip.pipeline.runner import RunFolder, Stage, StageResult, StageSkipped, run_stages


# ---------------------------------------------------------------------- stand-in stages
def make_stages(calls: list, fail_in: str | None = None, scale: float = 2.0):
    def first(ctx):
        calls.append("first")
        path = write_table(Table({"id": ["a", "b", "c"], "x": [1.0, 2.0, 3.0]}), ctx.run.table("first"))
        return StageResult(summary="3 rows", outputs=[ctx.run.rel(path)], info={"n": 3})

    def second(ctx):
        calls.append("second")
        tab = read_table(ctx.run.table("first"))
        tab["y"] = tab["x"] * ctx.params["scale"]
        path = write_table(tab, ctx.run.table("second"))
        if fail_in == "second":
            raise RuntimeError("simulated crash after writing one of two files")
        path2 = write_table(tab[:1], ctx.run.table("second_b"))
        return StageResult(summary="doubled", outputs=[ctx.run.rel(path), ctx.run.rel(path2)])

    def third(ctx):
        calls.append("third")
        if fail_in == "third":
            # a crash in the middle of writing: the atomic writer must leave nothing behind
            from serendip._io import atomic_path

            with atomic_path(ctx.run.table("third")) as tmp:
                tmp.write_bytes(b"half a file")
                raise RuntimeError("simulated crash while writing")
        if ctx.config.get("skip_third"):
            raise StageSkipped("too few objects (3 < 50)")
        tab = read_table(ctx.run.table("second"))
        path = write_table(Table({"total": [float(np.sum(tab["y"]))]}), ctx.run.table("third"))
        return StageResult(summary="summed", outputs=[ctx.run.rel(path)])

    return [Stage("first", first), Stage("second", second, params={"scale": scale}),
            Stage("third", third, params={})]


def test_run_resume_and_skip(tmp_path):
    calls: list = []
    res = run_stages(tmp_path / "run", make_stages(calls), progress=False)
    assert calls == ["first", "second", "third"]
    assert res.ran == ["first", "second", "third"] and res.reused == []
    run = RunFolder(tmp_path / "run", create=False)
    assert float(run.read_table("third")["total"][0]) == pytest.approx(12.0)
    rec = run.read_record("second")
    assert rec["status"] == "done" and rec["params"] == {"scale": 2.0}
    assert set(rec["outputs"]) == {"tables/second.fits", "tables/second_b.fits"}
    assert rec["seconds"] >= 0 and rec["serendip_version"]
    # second run: everything reused, nothing recomputed
    calls.clear()
    res = run_stages(tmp_path / "run", make_stages(calls), progress=False)
    assert calls == [] and res.reused == ["first", "second", "third"]
    prov = json.loads(run.provenance_path.read_text())
    assert [s["stage"] for s in prov["stages"]] == ["first", "second", "third"]
    assert all(s["reused"] for s in prov["stages"])


def test_parameter_change_reruns_downstream_only(tmp_path):
    calls: list = []
    run_stages(tmp_path, make_stages(calls), progress=False)
    calls.clear()
    run_stages(tmp_path, make_stages(calls, scale=3.0), progress=False)
    assert calls == ["second", "third"]
    assert float(RunFolder(tmp_path).read_table("third")["total"][0]) == pytest.approx(18.0)


def test_missing_or_changed_output_reruns(tmp_path):
    calls: list = []
    run_stages(tmp_path, make_stages(calls), progress=False)
    (tmp_path / "tables" / "second_b.fits").unlink()
    calls.clear()
    run_stages(tmp_path, make_stages(calls), progress=False)
    # second reruns (its output vanished) and so does third (its upstream has a new run id)
    assert calls == ["second", "third"]
    # a truncated output is noticed through the recorded size
    p = tmp_path / "tables" / "third.fits"
    p.write_bytes(p.read_bytes()[:100])
    calls.clear()
    run_stages(tmp_path, make_stages(calls), progress=False)
    assert calls == ["third"]


def test_interruption_keeps_finished_stages_and_resumes(tmp_path):
    calls: list = []
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_stages(tmp_path, make_stages(calls, fail_in="second"), progress=False)
    run = RunFolder(tmp_path)
    assert run.read_record("first") is not None
    assert run.read_record("second") is None and run.read_record("third") is None
    # the finished stage's output is intact
    assert list(run.read_table("first")["id"]) == ["a", "b", "c"]
    # no temporary/partial files anywhere
    assert not [p for p in tmp_path.rglob("*") if ".partial" in p.name]
    calls.clear()
    res = run_stages(tmp_path, make_stages(calls), progress=False)
    assert calls == ["second", "third"] and res.reused == ["first"]
    assert float(run.read_table("third")["total"][0]) == pytest.approx(12.0)


def test_crash_while_writing_leaves_no_half_file(tmp_path):
    calls: list = []
    with pytest.raises(RuntimeError, match="while writing"):
        run_stages(tmp_path, make_stages(calls, fail_in="third"), progress=False)
    assert not (tmp_path / "tables" / "third.fits").exists()
    assert not [p for p in tmp_path.rglob("*") if ".partial" in p.name]
    assert RunFolder(tmp_path).read_record("second")["status"] == "done"


def test_failed_rerun_of_finished_stage_drops_its_record(tmp_path):
    calls: list = []
    run_stages(tmp_path, make_stages(calls), progress=False)
    with pytest.raises(RuntimeError):
        run_stages(tmp_path, make_stages(calls, fail_in="second", scale=5.0), progress=False)
    run = RunFolder(tmp_path)
    # second's new table was written before the crash; without a record, it is not trusted
    assert run.read_record("second") is None
    assert run.read_record("first") is not None


def test_current_records_drop_those_left_behind_a_failed_or_redone_stage(tmp_path):
    calls: list = []
    run_stages(tmp_path, make_stages(calls), progress=False)
    run = RunFolder(tmp_path)
    assert list(run.records(current=True)) == ["first", "second", "third"]
    with pytest.raises(RuntimeError):
        run_stages(tmp_path, make_stages(calls, fail_in="second", scale=5.0), progress=False)
    # third's record is still on disk, but it was computed from the second of the first run
    assert "third" in run.records()
    assert list(run.records(current=True)) == ["first"]



def test_current_records_check_the_upstream_run_ids(tmp_path):
    # third reads only first; first is redone, then second fails before third could be redone:
    # every stage third requires has a record, but not the one third was computed from
    calls: list = []
    first, second, third = make_stages(calls)
    third = Stage("third", lambda ctx: StageResult("ok"), requires=["first"])
    run_stages(tmp_path, [first, second, third], progress=False)
    run = RunFolder(tmp_path)
    assert list(run.records(current=True)) == ["first", "second", "third"]
    first, second, _ = make_stages(calls, fail_in="second")
    first.params = {"changed": True}
    with pytest.raises(RuntimeError):
        run_stages(tmp_path, [first, second, third], progress=False)
    assert set(run.records()) == {"first", "third"}
    assert list(run.records(current=True)) == ["first"]


def test_skipped_stage_is_recorded_with_reason(tmp_path):
    calls: list = []
    res = run_stages(tmp_path, make_stages(calls), config={"skip_third": True}, progress=False)
    rec = res.records["third"]
    assert rec["status"] == "skipped" and "too few objects" in rec["reason"]
    assert rec["outputs"] == {}


def test_stage_that_now_skips_leaves_no_stale_outputs(tmp_path):
    calls: list = []
    run_stages(tmp_path, make_stages(calls), progress=False)
    assert (tmp_path / "tables" / "third.fits").is_file()
    stages = make_stages(calls)
    stages[2].params = {"changed": True}  # a new key: third reruns, and this time it skips
    res = run_stages(tmp_path, stages, config={"skip_third": True}, progress=False)
    assert res.records["third"]["status"] == "skipped"
    assert not (tmp_path / "tables" / "third.fits").exists()


def test_force_and_bad_stage_lists(tmp_path):
    calls: list = []
    run_stages(tmp_path, make_stages(calls), progress=False)
    calls.clear()
    run_stages(tmp_path, make_stages(calls), force=True, progress=False)
    assert calls == ["first", "second", "third"]
    with pytest.raises(ValueError, match="unknown stage"):
        run_stages(tmp_path, make_stages(calls), force=["nope"], progress=False)
    with pytest.raises(ValueError, match="unique"):
        run_stages(tmp_path, make_stages(calls) * 2, progress=False)
    with pytest.raises(FileNotFoundError, match="no such run folder"):
        RunFolder(tmp_path / "absent", create=False)


# ---------------------------------------------------------------------- config
def test_example_config_parses_to_defaults(tmp_path):
    path = write_example_config(tmp_path / "ex.toml", inputs=["spectra/spec-*.fits"])
    cfg = load_config(path)
    for section, values in DEFAULTS.items():
        for key, default in values.items():
            if (section, key) in (("data", "inputs"), ("data", "store"), ("run", "output")):
                continue
            assert cfg[section][key] == default, (section, key)
    # relative paths are taken relative to the config file
    assert cfg["data"]["inputs"] == [str(tmp_path / "spectra" / "spec-*.fits")]
    assert cfg["run"]["output"] == str(tmp_path / "serendip-run")
    with pytest.raises(FileExistsError):
        write_example_config(path)
    # every key of DEFAULTS is documented in the example
    text = example_config_text()
    for section, values in DEFAULTS.items():
        assert f"[{section}]" in text
        for key in values:
            assert f"\n{key} = " in text, key


def test_config_errors_name_section_and_key(tmp_path):
    with pytest.raises(ValueError, match=r"unknown section \[wierdness\]"):
        load_config({"wierdness": {"trees": 3}})
    with pytest.raises(ValueError, match=r"unknown key 'tress' in \[weirdness\]"):
        load_config({"weirdness": {"tress": 3}})
    with pytest.raises(ValueError, match=r"\[weirdness\] trees must be an integer"):
        load_config({"weirdness": {"trees": "many"}})
    with pytest.raises(ValueError, match=r"\[explore\] embed must be one of"):
        load_config({"explore": {"embed": "magic"}})
    with pytest.raises(ValueError, match=r"\[sequencer\] normal_fraction must be in"):
        load_config({"sequencer": {"normal_fraction": 0.0}})
    with pytest.raises(ValueError, match=r"\[run\] output must name a folder"):
        load_config({"run": {"output": " "}})
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\nseed = 1\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(FileNotFoundError, match="init-config"):
        load_config(tmp_path / "absent.toml")
    # a single string input is accepted as a one-item list; ints are fine where floats are expected
    cfg = load_config({"data": {"inputs": "a.fits", "wmin": 3000}})
    assert cfg["data"]["inputs"] == ["a.fits"] and cfg["data"]["wmin"] == 3000.0


def test_dump_toml_round_trip():
    cfg = load_config({"run": {"output": 'odd "name"\\x'}, "sequencer": {"scales": [1, 3]}})
    assert loads_toml(dump_toml(cfg)) == cfg


def test_ingest_stage_describes_an_adopted_store_as_it_is(tmp_path):
    """[data] store: the report's grid, frame and normalisation come from the store, not the config."""
    import copy

    from serendip.pipeline.runner import StageContext
    from serendip.pipeline.stages import stage_ingest
    from serendip.spectra import Spectra
    from serendip.spectra.store import SpectraStore

    w = np.geomspace(4000.0, 6000.0, 321)
    s = Spectra(w, np.ones((3, w.size)), meta={"id": ["a", "b", "c"]})
    store = SpectraStore.create(tmp_path / "given.h5", w, provenance={"rest_frame": False})
    store.append(s)
    store.finalize()
    config = copy.deepcopy(DEFAULTS)
    config["data"]["store"] = str(tmp_path / "given.h5")
    config["data"]["rest_frame"] = True  # the config says otherwise; the store wins
    ctx = StageContext(run=RunFolder(tmp_path / "run"), stage=Stage("ingest", stage_ingest, params={}),
                       config=config, progress=False)
    info = stage_ingest(ctx).info
    assert info["grid"] == "log 4000-6000 Å, 321 px"
    assert info["rest_frame"] is False and info["normalize"] == "none"


def test_config_takes_the_variant_names_serendip_weird_takes():
    """The config refused "snr-strata" (VARIANTS' own key, which its comment pointed to) and the comma
    combinations that `serendip weird --variant` accepts."""
    from serendip.pipeline.config import merge_config
    from serendip.pipeline.stages import _urf_params

    for name in ("snr-strata", "snr_strata", "Symmetric, knn"):
        got = merge_config({"weirdness": {"variant": name}})["weirdness"]["variant"]
        assert got == {"Symmetric, knn": "symmetric,knn"}.get(name, "snr-strata")  # stored as VARIANTS spells it
    with pytest.raises(ValueError, match="must name a variant"):
        merge_config({"weirdness": {"variant": ""}})
    cfg = merge_config({"weirdness": {"variant": "symmetric,knn"}})["weirdness"]
    params, _ = _urf_params(cfg, cfg["variant"], 1000, 10, 0, False)
    assert params["normalization"] == "symmetric" and params["score_mode"] == "knn"
    with pytest.raises(ValueError, match=r"\[weirdness\] variant: unknown URF variant 'bogus'"):
        merge_config({"weirdness": {"variant": "bogus"}})
