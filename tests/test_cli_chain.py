"""The verbs work together on the files they write for each other: simulate -> ingest -> weird/detect/sequence."""
import numpy as np
import pytest

from serendip._io import read_table
from serendip.cli import main


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chain")
    assert main(["-q", "simulate", "-o", str(tmp / "sim"), "--n", "80", "--seed", "3"]) == 0
    assert main(["-q", "ingest", str(tmp / "sim"), "-o", str(tmp / "s.h5"),
                 "--wmin", "3800", "--wmax", "7000", "--npix", "120"]) == 0
    return tmp / "s.h5"


def test_weird_reads_an_ingested_store(store):
    out = store.with_name("w.fits")
    assert main(["-q", "weird", str(store), "-o", str(out), "--trees", "20", "--repeats", "1"]) == 0
    tab = read_table(out)
    assert len(tab) == 80 and tab.meta["score_convention"] == "higher = weirder"
    assert sorted(tab["rank"]) == list(range(1, 81))
    assert np.all(np.char.startswith(np.asarray(tab["id"]).astype(str), "spec-"))


def test_detect_and_sequence_read_the_same_store(store, capsys):
    assert main(["-q", "detect", str(store), "--detector", "iforest", "-o", str(store.with_name("d.fits"))]) == 0
    assert len(read_table(store.with_name("d.fits"))) == 80
    # the L2 metric accepts the non-positive pixels a planted dead run leaves
    assert main(["-q", "sequence", str(store), "-o", str(store.with_name("q.csv")), "--metrics", "L2",
                 "--scales", "1"]) == 0
    assert len(read_table(store.with_name("q.csv"))) == 80


def test_errors_name_objects_plainly(store, capsys):
    # KL on spectra with non-positive pixels (seed 3 plants a dead run) is refused when clipping is off,
    # naming the object plainly and the option that fixes it
    code = main(["-q", "sequence", str(store), "-o", str(store.with_name("bad.csv")), "--metrics", "KL",
                 "--scales", "1", "--floor", "none"])
    err = capsys.readouterr().err
    assert code == 2 and "np.str_" not in err and "(id 'spec-" in err and "--floor auto" in err
    assert not store.with_name("bad.csv").exists()
    # by default the same store sequences: the dead pixels are raised to the floor
    assert main(["-q", "sequence", str(store), "-o", str(store.with_name("ok.csv")), "--metrics", "KL",
                 "--scales", "1"]) == 0


def test_ingest_cli_takes_the_redshift_column_and_usable_fraction(tmp_path):
    from serendip.cli import main
    from serendip.spectra import Spectra
    from serendip.spectra.store import SpectraStore
    from serendip.spectra.tables import write_wide_table

    w = np.linspace(4000.0, 6000.0, 200)
    flux = np.ones((3, 200)) + np.arange(3)[:, None]
    ivar = np.ones_like(flux)
    ivar[2, :150] = 0  # only 25 % usable
    write_wide_table(Spectra(w, flux, ivar=ivar, meta={"id": ["a", "b", "c"], "zspec": [0.1, 0.2, 0.0]}),
                     tmp_path / "t.npz")
    rc = main(["-q", "ingest", str(tmp_path / "t.npz"), "-o", str(tmp_path / "s.h5"), "--z-column", "zspec",
               "--min-good-fraction", "0.5"])
    assert rc == 0
    with SpectraStore(tmp_path / "s.h5") as st:
        assert list(st.meta["id"]) == ["a", "b"]  # c rejected: under half its pixels usable
        assert st.wavelength.value[0] < 4000 / 1.1 + 5  # shifted by zspec, not by a missing z
