"""SDSS-format files written from the synthetic survey match the real format and read back exactly."""
from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from serendip._io import read_table
from serendip.datasets import make_survey, write_sdss_files
from serendip.datasets.sdss_writer import format_card

# A legacy-era real file (HDU 2 named SPECOBJ, the SDSS grid our survey uses).
REAL_LEGACY = "spec-0266-51602-0013.fits"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    survey = make_survey(70, seed=4, progress=False)
    folder = tmp_path_factory.mktemp("sim")
    paths = write_sdss_files(survey, folder, progress=False)
    return survey, folder, paths


def test_file_names_and_no_leftovers(written):
    survey, folder, paths = written
    assert len(paths) == 70
    m = survey.spectra.meta
    for p, plate, mjd, fib in zip(paths, m["plate"], m["mjd"], m["fiberid"]):
        assert p.name == f"spec-{plate:04d}-{mjd:05d}-{fib:04d}.fits"
    assert not list(folder.glob("*.partial*")) and not list(folder.glob(".*"))
    assert (folder / "truth.ecsv").exists()


def test_structure_matches_a_real_sdss_file(written, sdss_fits_dir):
    _, _, paths = written
    with fits.open(sdss_fits_dir / REAL_LEGACY) as real, fits.open(paths[0]) as ours:
        ours.verify("exception")
        assert [h.name for h in ours][:3] == [h.name for h in real][:3] == ["PRIMARY", "COADD", "SPECOBJ"]
        # COADD: identical column names, order and formats
        assert ours[1].columns.names == real[1].columns.names
        assert ours[1].columns.formats == real[1].columns.formats
        assert ours[1].data.dtype == real[1].data.dtype
        # SPECOBJ: every column we write exists in the real table with the same format
        real_fmt = dict(zip(real[2].columns.names, real[2].columns.formats))
        for name, fmt in zip(ours[2].columns.names, ours[2].columns.formats):
            assert name in real_fmt, name
            assert fmt == real_fmt[name], (name, fmt, real_fmt[name])
        for need in ("PLATE", "MJD", "FIBERID", "Z", "Z_ERR", "ZWARNING", "CLASS", "SUBCLASS", "PLUG_RA",
                     "PLUG_DEC", "SN_MEDIAN_ALL"):
            assert need in ours[2].columns.names
        # primary keywords of the real file that a reader may use, with the same value types
        for key in ("PLATEID", "MJD", "FIBERID", "PLUG_RA", "PLUG_DEC", "COEFF0", "COEFF1", "BUNIT", "VACUUM",
                    "WFITTYPE", "DC-FLAG", "TELESCOP", "RADEG", "DECDEG", "NAME", "EXPTIME"):
            assert key in ours[0].header, key
            assert type(ours[0].header[key]) is type(real[0].header[key]), key
        assert ours[0].header["COEFF1"] == pytest.approx(real[0].header["COEFF1"])


def test_values_round_trip_through_astropy(written):
    survey, _, paths = written
    s = survey.spectra
    for i in (0, 33, 69):
        with fits.open(paths[i]) as h:
            d = h["COADD"].data
            np.testing.assert_array_equal(d["flux"], s.flux[i])
            np.testing.assert_array_equal(d["ivar"], s.ivar[i])
            np.testing.assert_array_equal(d["and_mask"], s.flags[i])
            np.testing.assert_array_equal(d["or_mask"], survey.or_mask[i])
            np.testing.assert_array_equal(d["model"], survey.model[i])
            np.testing.assert_allclose(10 ** d["loglam"].astype(float), s.wavelength.value, rtol=1e-6)
            row = h["SPECOBJ"].data[0]
            assert row["PLATE"] == s.meta["plate"][i] and row["FIBERID"] == s.meta["fiberid"][i]
            assert row["Z"] == pytest.approx(s.meta["z"][i], rel=1e-6)
            assert row["CLASS"].strip() == "GALAXY"
            assert row["SN_MEDIAN_ALL"] == pytest.approx(s.meta["snr"][i], rel=1e-5)
            assert h[0].header["PLATEID"] == s.meta["plate"][i]
            assert h[0].header["PLUG_RA"] == pytest.approx(s.meta["ra"][i])


def test_truth_table_keeps_labels_and_provenance(written):
    survey, folder, paths = written
    truth = read_table(folder / "truth.ecsv")
    assert list(truth["id"]) == list(survey.truth["id"])
    assert list(truth["file"]) == [p.name for p in paths]
    assert list(truth["anomaly_subkind"]) == list(survey.truth["anomaly_subkind"])
    assert truth.meta["parameters"]["seed"] == 4


def test_round_trip_with_the_spectra_reader(written):
    read_spectra = pytest.importorskip("serendip.spectra.io").read_spectra
    survey, _, paths = written
    s = survey.spectra
    for i in (0, 5, 41):
        r = read_spectra(paths[i])
        np.testing.assert_array_equal(r.flux[0], s.flux[i])
        np.testing.assert_array_equal(r.ivar[0], s.ivar[i])
        np.testing.assert_array_equal(r.mask[0], s.mask[i])
        np.testing.assert_array_equal(r.flags[0], s.flags[i])
        np.testing.assert_allclose(r.wavelength.value, s.wavelength.value, rtol=1e-6)
        assert r.meta["id"][0] == s.meta["id"][i]
        assert r.meta["class"][0] == "GALAXY"
        assert r.meta["z"][0] == pytest.approx(s.meta["z"][i], rel=1e-6)


@pytest.mark.parametrize("key,value,comment", [
    ("RA", 238.240824435228, "Right ascension"), ("MJD", 52621, "MJD"), ("NAME", "1090-52621-01", "x"),
    ("X", 1e-4, ""), ("Y", 3.58, ""), ("FLAG", True, "q"), ("W", -1.5e-12, "c"), ("S", "it's", ""),
    ("FIBERID", np.int64(7), "Fiber"), ("G", 0.0, ""),
])
def test_format_card_agrees_with_astropy(key, value, comment):
    image = format_card(key, value, comment)
    assert len(image) == 80
    assert image == fits.Card(key, value, comment).image
    assert fits.Card.fromstring(image).value == value


def test_cli_simulate_writes_files_and_truth(tmp_path, capsys):
    from serendip.cli import main

    assert main(["-q", "simulate", "-o", str(tmp_path / "sim"), "--n", "12", "--seed", "3"]) == 0
    assert len(list((tmp_path / "sim").glob("spec-*.fits"))) == 12
    truth = read_table(tmp_path / "sim" / "truth.ecsv")
    assert len(truth) == 12 and truth.meta["parameters"]["seed"] == 3
    assert "wrote 12 SDSS-format spectra" in capsys.readouterr().out
    assert main(["-q", "simulate", "-o", str(tmp_path / "x"), "--n", "0"]) == 2


def test_the_written_folder_ingests_without_rejections(written, tmp_path):
    ingest = pytest.importorskip("serendip.spectra.ingest").ingest
    survey, folder, paths = written
    # the folder itself (spectra + truth table) ingests cleanly: the truth table is not taken for spectra
    from serendip.spectra.ingest import expand_inputs

    files, missing = expand_inputs(folder)
    assert sorted(files) == sorted(paths) and not missing
    res = ingest(paths[:20], tmp_path / "store.h5", progress=False)
    assert len(res.rejected) == 0, list(res.rejected["reason"])
    assert res.n_read == 20


def test_a_bad_truth_name_writes_nothing(tmp_path, capsys):
    """The truth table's name is checked before the spectra are written: no folder of spectra without truth."""
    from serendip.cli import main

    assert main(["-q", "simulate", "-o", str(tmp_path / "sim"), "--n", "5", "--truth", "truth.txt"]) == 2
    assert "truth.txt" in capsys.readouterr().err
    assert not (tmp_path / "sim").exists()
    survey = make_survey(5, seed=1, progress=False)
    with pytest.raises(ValueError, match="plain file name"):
        write_sdss_files(survey, tmp_path / "sim2", progress=False, truth_name="sub/truth.ecsv")
    assert not (tmp_path / "sim2").exists()


def test_simulating_into_a_folder_with_other_spectra_warns(tmp_path, caplog):
    """A second survey written into a used folder: its truth table does not describe the older files."""
    write_sdss_files(make_survey(5, seed=1, progress=False), tmp_path, progress=False)
    with caplog.at_level("WARNING", logger="serendip"):
        paths = write_sdss_files(make_survey(6, seed=2, progress=False), tmp_path, progress=False)
    n_other = len(list(tmp_path.glob("spec-*.fits"))) - len(paths)
    assert n_other > 0
    assert f"{n_other} other spec-*.fits" in caplog.text and "truth.ecsv" in caplog.text
