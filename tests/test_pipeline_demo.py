"""End to end: `serendip demo` at small n, `serendip run` on 32 real SDSS spectra, interruption and resume."""
from __future__ import annotations

import json

import numpy as np
import pytest

from serendip.cli import main
from serendip.pipeline import stages as stages_module
from serendip.pipeline.runner import RunFolder
from test_report_html import assert_all_images_ok, assert_png_ok, parse_report

STAGES = ["simulate", "ingest", "weirdness", "sequence", "explore", "compare", "report"]


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(["-q", "demo", "--n", "300", "--seed", "1", "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0
    # one summary line per stage, then the report's path
    for name in STAGES:
        assert f"[{name}] " in printed
    assert printed.strip().splitlines()[-1] == f"report: {out / 'report.html'}"
    run = RunFolder(out, create=False)
    assert all(run.read_record(s)["status"] == "done" for s in STAGES)

    rep = parse_report(out / "report.html")
    assert list(rep.sections) == ["data", "weirdest", "distribution", "sequence", "map", "planted", "provenance"]
    assert_all_images_ok(rep)
    assert all(rep.sections[s]["images"] >= 1 for s in list(rep.sections)[:-1])
    # every embedded figure is also a PNG on disk
    pngs = sorted((out / "figures").glob("*.png"))
    assert len(pngs) == len(rep.images) >= 8
    for p in pngs:
        assert_png_ok(p.read_bytes(), p.name)

    # tables have the expected rows
    truth = run.read_table("truth")
    assert len(truth) == 300
    assert len(rep.tables["weirdest"]) == 1 + 12
    kinds = sorted(set(np.asarray(truth["anomaly_kind"]).astype(str)) - {"normal"})
    planted = rep.tables["planted"]
    assert [r[0] for r in planted[1:]] == [*kinds, "all"]
    # the run's weirdness (forest and LOF, rank-averaged) first, then the forest alone
    assert planted[0][:5] == ["kind", "n_planted", "urf_best+lof", "urf_best", "urf_faithful"]
    n_planted = {r[0]: int(r[1]) for r in planted[1:]}
    for kind in kinds:
        assert n_planted[kind] == int((np.asarray(truth["anomaly_kind"]).astype(str) == kind).sum())
    assert n_planted["all"] == sum(n_planted[k] for k in kinds)
    # recall values are fractions, and the best detector finds something planted
    recalls = np.array([[float(x) for x in r[2:]] for r in planted[1:]])
    assert np.all((recalls >= 0) & (recalls <= 1))
    assert recalls[-1].max() > 0.2
    # weirdness table: one row per ingested object, rank 1 = highest weirdness
    w = run.read_table("weirdness")
    assert len(w) == len(run.read_table("objects")) == 300
    assert w["weirdness"][np.argmin(w["rank"])] == w["weirdness"].max()
    # it is the mean rank fraction of the forest and of LOF ranked within the forest's S/N strata
    for member in ("weirdness_forest", "weirdness_lof"):
        s = np.asarray(w[member], float)
        assert np.isfinite(s).all() and np.unique(s).size > 1
    stratum = np.asarray(w["snr_stratum"])
    assert set(stratum) == {0, 1, 2}
    lof = np.asarray(w["weirdness_lof"], float)
    within = np.empty_like(lof)
    for s in range(3):
        rows = stratum == s
        within[rows] = [(lof[rows] <= v).mean() for v in lof[rows]]
    frac = [np.array([(s <= v).mean() for v in s]) for s in (np.asarray(w["weirdness_forest"], float), within)]
    np.testing.assert_allclose(np.asarray(w["weirdness"], float), (frac[0] + frac[1]) / 2, rtol=1e-12)
    assert "local outlier factor on 20 neighbours within each of the forest's 3 S/N strata" in w.meta["combination"]
    assert "rank-averaged with LOF on 20 neighbours per S/N stratum" in printed
    # noisy normal spectra are not called weird for their noise: LOF on all objects at once would be
    normal = np.asarray(truth["anomaly_kind"]).astype(str)[[list(truth["id"]).index(i) for i in w["id"]]] == "normal"
    snr = np.asarray(w["snr"], float)
    from scipy.stats import spearmanr
    from serendip.outliers import LocalOutlierFactorDetector
    from serendip.pipeline.stages import feature_matrix, load_spectra

    rho_run = spearmanr(snr[normal], np.asarray(w["weirdness"], float)[normal]).statistic
    X, _ = feature_matrix(load_spectra(run, json.loads((out / "provenance.json").read_text())["config"]), 50)
    global_lof = LocalOutlierFactorDetector(n_neighbors=20).fit(X).weirdness_
    rho_global = spearmanr(snr[normal], global_lof[normal]).statistic
    assert rho_global < -0.25 and abs(rho_run) < 0.5 * abs(rho_global), (rho_run, rho_global)
    # the sequence of the normal population follows the hidden parameter
    rec = run.read_record("compare")
    assert abs(rec["info"]["sequence_spearman"]) > 0.5
    assert len(rep.tables["stages"]) == 1 + len(STAGES)
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["seed"] == 1 and prov["config"]["data"]["simulate"] == 300
    assert len(prov["input_hashes"]) == 300

    # `serendip report` rebuilds the report from the run folder without recomputing anything
    stamps = {p: p.stat().st_mtime_ns for p in (out / "tables").glob("*.fits")}
    (out / "report.html").unlink()
    assert main(["-q", "report", str(out)]) == 0
    assert (out / "report.html").is_file()
    assert {p: p.stat().st_mtime_ns for p in (out / "tables").glob("*.fits")} == stamps


def _real_config(tmp_path, fits_dir, **data) -> str:
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in data.items())
    path = tmp_path / "real.toml"
    path.write_text(f'[run]\noutput = "run"\n[data]\ninputs = ["{fits_dir}"]\n{extra}'
                    '[weirdness]\ntrees = 60\nfaithful_trees = 40\n')
    return str(path)


@pytest.mark.slow
def test_run_on_real_spectra_interrupt_and_resume(tmp_path, sdss_fits_dir, monkeypatch, capsys):
    cfg = _real_config(tmp_path, sdss_fits_dir)
    calls = []

    def crash(ctx):
        calls.append("explore")
        raise RuntimeError("simulated crash in the explore stage")

    monkeypatch.setattr(stages_module, "stage_explore", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(["-q", "run", cfg])
    run = RunFolder(tmp_path / "run", create=False)
    done = {name: rec["status"] for name, rec in run.records().items()}
    assert set(done) == {"ingest", "weirdness", "sequence"}
    # finished stages' outputs are valid and nothing half-written is left behind
    assert len(run.read_table("weirdness")) == len(run.read_table("objects"))
    assert not [p for p in run.path.rglob("*") if ".partial" in p.name]
    assert not (run.path / "report.html").exists()
    weird_mtime = run.table("weirdness").stat().st_mtime_ns

    monkeypatch.undo()
    capsys.readouterr()
    assert main(["-q", "run", cfg]) == 0
    printed = capsys.readouterr().out
    assert "[ingest]" in printed and "(reused)" in printed
    assert run.table("weirdness").stat().st_mtime_ns == weird_mtime  # not recomputed
    recs = run.records()
    assert recs["explore"]["status"] == "done" and recs["report"]["status"] == "done"

    rep = parse_report(run.report_path)
    assert "agreement" in rep.sections and "planted" not in rep.sections
    assert_all_images_ok(rep)
    n = len(run.read_table("objects"))
    assert n + len(run.read_table("rejected")) >= 32 - 1
    # tiny N: the report says what was skipped and why
    notes = {(s, k): t for s, k, t in rep.notes}
    assert ("sequence", "skipped") in notes and "at least 20" in notes[("sequence", "skipped")]
    assert ("map", "skipped") in notes and "clustering needs at least 50" in notes[("map", "skipped")]
    assert len(rep.tables["agreement"]) >= 1 + 1
    # 22-ish objects are too few for three S/N strata: the report says which mode was used
    assert any(s == "weirdest" and "S/N strata" in t for s, k, t in rep.notes)

    # a third run reuses every stage
    capsys.readouterr()
    assert main(["-q", "run", cfg]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[")]
    assert len(lines) == 6 and all(ln.endswith("(reused)") for ln in lines)

    # an existing store as input, with stages switched off in the config: skipped with the reason
    cfg2 = tmp_path / "store.toml"
    cfg2.write_text(f'[run]\noutput = "run2"\n[data]\nstore = "{run.path / "data" / "store.h5"}"\n'
                    "[weirdness]\ntrees = 30\ncompare_faithful = false\n[sequencer]\nenabled = false\n"
                    "[compare]\nenabled = false\n")
    assert main(["-q", "run", str(cfg2)]) == 0
    run2 = RunFolder(tmp_path / "run2", create=False)
    assert len(run2.read_table("objects")) == n
    assert run2.read_record("sequence")["reason"].startswith("disabled in the config")
    rep2 = parse_report(run2.report_path)
    kinds2 = {(s, k) for s, k, _ in rep2.notes}
    # real data: the skipped comparison is the detector agreement (nothing was planted)
    assert ("sequence", "skipped") in kinds2 and ("agreement", "skipped") in kinds2


def test_a_store_in_inputs_is_used_as_the_store():
    from serendip.pipeline.config import load_config

    cfg = stages_module.store_as_input(load_config({"data": {"inputs": ["/data/survey.h5"]}}))
    assert cfg["data"]["store"] == "/data/survey.h5" and cfg["data"]["inputs"] == []
    cfg = stages_module.store_as_input(load_config({"data": {"inputs": ["/data/a.fits", "/data/b.h5"]}}))
    assert cfg["data"]["store"] == ""


def test_input_fingerprint_changes_with_files(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.fits").write_bytes(b"x" * 10)
    fp = stages_module._fingerprint([str(folder)])
    assert stages_module._fingerprint([str(folder)]) == fp
    (folder / "b.fits").write_bytes(b"y")
    fp2 = stages_module._fingerprint([str(folder)])
    assert fp2 != fp
    (folder / "a.fits").write_bytes(b"x" * 11)
    assert stages_module._fingerprint([str(folder)]) != fp2


def test_demo_rejects_tiny_n(tmp_path):
    with pytest.raises(ValueError, match="at least 20"):
        stages_module.demo_config(n=5, out=tmp_path)


def test_init_config_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "my.toml"
    assert main(["init-config", "-o", str(path), "--inputs", "spectra/"]) == 0
    assert "serendip run" in capsys.readouterr().out
    assert 'inputs = ["spectra"]' in path.read_text()
    # typed relative to the current folder, written relative to the config's folder (how run reads them)
    (tmp_path / "configs").mkdir()
    assert main(["init-config", "-o", "configs/c.toml", "--inputs", "spectra/", "spec-*.fits"]) == 0
    assert 'inputs = ["../spectra", "../spec-*.fits"]' in (tmp_path / "configs" / "c.toml").read_text()
    absolute = str(tmp_path / "elsewhere" / "spec-*.fits")
    assert main(["init-config", "-o", "configs/d.toml", "--inputs", absolute]) == 0
    assert absolute in (tmp_path / "configs" / "d.toml").read_text()  # absolute paths stay as given
    assert main(["init-config", "-o", "configs", "--force"]) == 2  # a folder: named as such
    assert "is a folder" in capsys.readouterr().err
    assert main(["init-config", "-o", str(path)]) == 2  # exists: refused, one-line error
    assert "exists" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "absent.toml")]) == 2


def test_run_with_nothing_readable_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "spectra").mkdir()
    (tmp_path / "spectra" / "junk.fits").write_bytes(b"this is not FITS")
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[data]\ninputs = ["spectra"]\n')
    assert main(["-q", "run", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("serendip run: error:") and len(err.strip().splitlines()) == 1
    cfg.write_text('[data]\ninputs = ["nowhere/spec-*.fits"]\n')
    assert main(["-q", "run", str(cfg)]) == 2
    assert "nothing matches" in capsys.readouterr().err
    assert main(["-q", "report", str(tmp_path / "no-run")]) == 2


@pytest.mark.slow
def test_lof_neighbors_zero_ranks_by_the_forest_alone(tmp_path):
    """``[weirdness] lof_neighbors = 0``: the run's weirdness is the forest's own, and the comparison lists it once."""
    from serendip.pipeline import run_demo

    out = tmp_path / "forest"
    run_demo(n=120, seed=2, out=out, progress=False,
             overrides={"weirdness": {"lof_neighbors": 0, "trees": 40, "faithful_trees": 20},
                        "sequencer": {"enabled": False}, "explore": {"embed": "pca", "cluster": "none"}})
    run = RunFolder(out, create=False)
    w = run.read_table("weirdness")
    assert "weirdness_forest" not in w.colnames and "weirdness_lof" not in w.colnames
    assert w.meta["combination"] == "the forest alone" and w.meta["detector"] == "urf"
    assert run.read_record("weirdness")["info"]["lof_neighbors"] == 0
    planted = run.read_table("planted")
    assert planted.colnames[:4] == ["kind", "n_planted", "urf_best", "urf_faithful"]
