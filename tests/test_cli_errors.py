"""The CLI turns unreadable inputs and impossible outputs into one-line errors (exit 2), never tracebacks."""
from __future__ import annotations

import socket

import numpy as np
import pytest

from serendip.cli import main


@pytest.fixture
def garbage(tmp_path):
    path = tmp_path / "garbage.fits"
    path.write_text("this is not a FITS file\n")
    return path


@pytest.mark.parametrize("verb", [["detect"], ["embed"], ["cluster"], ["weird"]])
def test_not_a_fits_file_is_named_in_a_one_line_error(verb, garbage, tmp_path, capsys):
    rc = main(["-q", *verb, str(garbage), "-o", str(tmp_path / "out.csv")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "garbage.fits" in err and "Traceback" not in err
    assert not (tmp_path / "out.csv").exists()


def test_learn_recommend_on_a_broken_table(garbage, capsys):
    assert main(["-q", "learn", "recommend", str(garbage), "--target", "f0"]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_demo_into_an_existing_file_is_an_error(tmp_path, capsys):
    target = tmp_path / "afile"
    target.write_text("x")
    assert main(["-q", "demo", "--n", "20", "--out", str(target)]) == 2
    assert "serendip demo: error" in capsys.readouterr().err
    assert target.read_text() == "x"


def test_report_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["-q", "report", str(tmp_path)]) == 2
    assert "not a serendip run folder" in capsys.readouterr().err
    assert not (tmp_path / "report.html").exists()


def test_report_on_a_file_says_it_is_a_file(tmp_path, capsys):
    page = tmp_path / "report.html"
    page.write_text("<html></html>")
    assert main(["-q", "report", str(page)]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a run folder" in err and "give the folder around it" in err
    assert page.read_text() == "<html></html>"


def test_browse_refuses_an_empty_table(tmp_path, capsys):
    table = tmp_path / "empty.csv"
    table.write_text("id,weirdness\n")
    assert main(["-q", "browse", str(table), "--no-open", "--labels", str(tmp_path / "l.csv")]) == 2
    assert "no rows" in capsys.readouterr().err


def test_browse_on_a_busy_port(tmp_path, capsys):
    table = tmp_path / "w.csv"
    table.write_text("id,weirdness\n" + "\n".join(f"o{i},{v}" for i, v in enumerate(np.linspace(0, 1, 5))) + "\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["-q", "browse", str(table), "--port", str(port), "--no-open", "--labels", str(tmp_path / "l.csv")]) == 2
    assert "serendip browse: error" in capsys.readouterr().err


def test_missing_optional_extra_is_a_one_line_error_with_the_install_hint(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "umap", None)  # as if umap-learn were not installed
    X = np.random.default_rng(0).normal(size=(40, 5))
    np.save(tmp_path / "x.npy", X)
    rc = main(["-q", "embed", str(tmp_path / "x.npy"), "--method", "umap", "-o", str(tmp_path / "e.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "serendip[umap]" in err


@pytest.mark.parametrize("blocked,argv,extra", [
    ("pandas", ["learn", "recommend", "{csv}", "--target", "y"], "serendip[learn]"),
    ("skops.io", ["learn", "train", "{csv}", "--target", "y", "-o", "{tmp}/m.skops"], "serendip[learn]"),
])
def test_missing_extras_are_named_before_any_work(blocked, argv, extra, tmp_path, capsys, monkeypatch):
    import sys

    rng = np.random.default_rng(0)
    csv = tmp_path / "t.csv"
    csv.write_text("a,b,y\n" + "\n".join(f"{a:.3f},{b:.3f},{int(a > 0)}" for a, b in rng.normal(size=(40, 2))) + "\n")
    np.save(tmp_path / "x.npy", rng.normal(size=(30, 4)))
    monkeypatch.setitem(sys.modules, blocked, None)
    args = [a.format(csv=csv, npy=tmp_path / "x.npy", tmp=tmp_path) for a in argv]
    assert main(["-q", *args]) == 2
    err = capsys.readouterr().err
    assert extra in err and "Traceback" not in err
    assert not any(p.suffix in (".skops", ".parquet") for p in tmp_path.iterdir())


def test_require_names_the_extra():
    from serendip._io import require

    assert require("numpy", "learn", "x").__name__ == "numpy"
    with pytest.raises(ImportError, match=r"writing t.parquet needs the optional package no_such_pkg_xyz: "
                                          r"pip install 'serendip\[parquet\]'"):
        require("no_such_pkg_xyz", "parquet", "writing t.parquet")


@pytest.mark.parametrize("argv, flag", [
    (["weird", "x.npy", "-o", "w.csv", "--trees", "0"], "--trees"),
    (["weird", "x.npy", "-o", "w.csv", "--repeats", "-1"], "--repeats"),
    (["weird", "x.npy", "-o", "w.csv", "--max-fit-samples", "1"], "--max-fit-samples"),
    (["weird", "x.npy", "-o", "w.csv", "--n-jobs", "0"], "--n-jobs"),
    (["detect", "x.npy", "-o", "d.csv", "--n-neighbors", "0"], "--n-neighbors"),
    (["detect", "x.npy", "-o", "d.csv", "--n-jobs", "zero"], "--n-jobs"),
    (["cluster", "x.npy", "-o", "c.csv", "--n-clusters", "0"], "--n-clusters"),
    (["ingest", "a.fits", "-o", "s.h5", "--npix", "0"], "--npix"),
    (["learn", "train", "t.csv", "--target", "z", "-o", "m.joblib", "--cv", "1"], "--cv"),
    (["learn", "train", "t.csv", "--target", "z", "-o", "m.joblib", "--search-max-rows", "-5"], "--search-max-rows"),
    (["sequence", "x.npy", "-o", "s.csv", "--n-neighbors", "0"], "--n-neighbors"),
    (["demo", "--n", "0"], "--n"),
])
def test_bad_integer_options_name_the_flag(argv, flag, capsys):
    """The error names the flag typed, not the Python parameter behind it (n_estimators, n_jobs…)."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err and ("at least" in err or "must not be 0" in err or "integer" in err)


@pytest.mark.parametrize("verb", [["detect"], ["embed"], ["weird"], ["learn", "predict", "m.skops"]])
def test_output_that_is_the_input_is_refused(verb, tmp_path, capsys, monkeypatch):
    """-o naming the input table would overwrite the data being read; nothing is touched."""
    monkeypatch.chdir(tmp_path)
    table = tmp_path / "objects.csv"
    table.write_text("id,a,b\nx,1,2\ny,3,4\n")
    before = table.read_text()
    assert main(["-q", *verb, "objects.csv", "-o", str(table)]) == 2
    err = capsys.readouterr().err
    assert "is also an input" in err
    assert table.read_text() == before


def test_no_verb_is_a_usage_error(capsys):
    from serendip.cli import main

    assert main([]) == 2
    assert "usage" in capsys.readouterr().err


@pytest.mark.parametrize("verb", [["weird"], ["sequence"], ["detect"], ["embed"], ["cluster"]])
def test_an_unwritable_output_name_is_refused_before_the_work(verb, tmp_path, capsys, monkeypatch):
    """`weird -o w.txt` computed for 15 s before saying it cannot tell the table format of w.txt."""
    import serendip.explore.workflows as workflows
    import serendip.outliers.urf as urf
    import serendip.sequencer.sequencer as seqmod

    def no_work(*args, **kwargs):
        raise AssertionError("the work started before the output name was checked")

    monkeypatch.setattr(urf.UnsupervisedRandomForest, "fit", no_work)
    monkeypatch.setattr(seqmod.Sequencer, "fit", no_work)
    monkeypatch.setattr(workflows, "load_input", no_work)
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).uniform(1, 2, size=(30, 20)))
    rc = main(["-q", *verb, str(data), "-o", str(tmp_path / "w.txt")])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot tell the table format of" in err and "Traceback" not in err


def test_sequence_figure_follows_its_extension(tmp_path, capsys):
    data = tmp_path / "x.npy"
    rng = np.random.default_rng(0)
    np.save(data, rng.uniform(1, 2, size=(30, 20)))
    out = str(tmp_path / "s.ecsv")
    assert main(["-q", "sequence", str(data), "-o", out, "--plot", str(tmp_path / "s.jpg")]) == 0
    assert (tmp_path / "s.jpg").read_bytes()[:2] == b"\xff\xd8"  # JPEG (was PNG bytes in a .jpg)
    assert main(["-q", "sequence", str(data), "-o", out, "--plot", str(tmp_path / "s3")]) == 0
    assert (tmp_path / "s3.png").read_bytes()[:4] == b"\x89PNG" and "s3.png" in capsys.readouterr().out
    assert main(["-q", "sequence", str(data), "-o", out, "--plot", str(tmp_path / "s_z0.5")]) == 0
    assert (tmp_path / "s_z0.5.png").read_bytes()[:4] == b"\x89PNG"  # a dot in the name is not an extension
    capsys.readouterr()
    assert main(["-q", "sequence", str(data), "-o", out, "--plot", str(tmp_path / "s.txt")]) == 2
    assert "not a figure format" in capsys.readouterr().err


def test_errors_reached_from_the_cli_name_the_cli_options(tmp_path, capsys):
    """Messages named only Python parameters (test_size=..., top=...), which a CLI user cannot set."""
    table = tmp_path / "t.csv"
    rng = np.random.default_rng(0)
    table.write_text("a,b,y\n" + "".join(f"{x:.3f},{z:.3f},{x + z:.3f}\n" for x, z in rng.normal(size=(40, 2))))
    assert main(["-q", "learn", "train", str(table), "--target", "y", "--test-size", "1.5",
                 "-o", str(tmp_path / "m.joblib")]) == 2
    assert "--test-size" in capsys.readouterr().err


def test_learn_predict_checks_its_output_name_before_loading(tmp_path, capsys):
    missing_model = tmp_path / "nothing.skops"  # not even read: the output name is refused first
    table = tmp_path / "t.csv"
    table.write_text("a\n1\n")
    assert main(["-q", "learn", "predict", str(missing_model), str(table), "-o", str(tmp_path / "p.txt")]) == 2
    assert "cannot tell the table format of" in capsys.readouterr().err


def test_a_library_message_about_a_parameter_names_the_option_that_sets_it(tmp_path, capsys):
    """``simulate`` rejects the fraction in the library, whose message names the Python parameter;
    the command line adds the option, so the user knows what to change."""
    assert main(["-q", "simulate", "-o", str(tmp_path / "sim"), "--n", "10", "--anomaly-fraction", "2"]) == 2
    err = capsys.readouterr().err
    assert "anomaly_fraction (--anomaly-fraction) must be within [0, 1]" in err
    assert not (tmp_path / "sim").exists() or not any((tmp_path / "sim").iterdir())


def test_option_names_are_added_once_and_only_to_whole_parameter_names():
    from serendip.cli import _with_flags

    flags = {"z_column": "--z-column", "n_jobs": "--n-jobs", "snr_median": "--snr-median"}
    # already named: unchanged; a keyword argument (n_jobs=2) and a longer name are left alone
    msg = "name the right column with z_column (CLI: --z-column); pass n_jobs=2; my_snr_median_x is fine"
    assert _with_flags(msg, flags) == msg
    assert _with_flags("snr_median must be > 0; snr_median was 0", flags) == (
        "snr_median (--snr-median) must be > 0; snr_median was 0")
    assert _with_flags("anything", None) == "anything"
