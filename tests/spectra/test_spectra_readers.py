"""Readers: real SDSS spec files, MaNGA files, wide tables, and every kind of bad file."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from serendip.spectra import Spectra
from serendip.spectra.io import SpectraReadError, read_spectra, register_reader, supported_formats
from serendip.spectra.tables import write_wide_table


@pytest.fixture(scope="module")
def sample_meta(sdss_fits_dir):
    with open(sdss_fits_dir.parent / "sdss_spec_sample_meta.csv", newline="") as fh:
        return {row["file"]: row for row in csv.DictReader(fh)}


@pytest.fixture(scope="module")
def all_sdss(sdss_fits_dir):
    files = sorted(sdss_fits_dir.glob("spec-*.fits"))
    return {f.name: read_spectra(f) for f in files}


def test_reads_all_32_sdss_files_and_matches_catalogue(all_sdss, sample_meta):
    assert len(all_sdss) == 32
    assert set(all_sdss) == set(sample_meta)
    for name, s in all_sdss.items():
        row = sample_meta[name]
        assert isinstance(s, Spectra) and len(s) == 1
        m = s.meta[0]
        assert m["class"] == row["cls"], name
        assert m["subclass"] == row["subclass"], name
        np.testing.assert_allclose(m["z"], float(row["z"]), rtol=1e-6, atol=1e-9, err_msg=name)
        np.testing.assert_allclose(m["z_err"], float(row["z_err"]), rtol=1e-5, err_msg=name)
        assert m["zwarning"] == int(row["zwarning"])
        assert (m["plate"], m["mjd"], m["fiberid"]) == (int(row["plate"]), int(row["mjd"]), int(row["fiberid"]))
        np.testing.assert_allclose([m["ra"], m["dec"]], [float(row["ra"]), float(row["dec"])], atol=1e-5)
        np.testing.assert_allclose(m["snr"], float(row["sn_median"]), rtol=1e-5)
        assert m["id"] == name[:-5] and m["source_file"] == name


def test_sdss_grid_is_vacuum_loglam_and_flags_are_and_mask(sdss_fits_dir):
    f = sdss_fits_dir / "spec-0266-51602-0107.fits"
    s = read_spectra(f)
    with fits.open(f) as h:
        loglam = h["COADD"].data["loglam"].astype(float)
        and_mask = h["COADD"].data["and_mask"]
        ivar = h["COADD"].data["ivar"]
    np.testing.assert_allclose(s.wavelength.value, 10 ** loglam, rtol=1e-12)
    np.testing.assert_array_equal(s.flags[0], and_mask)
    np.testing.assert_array_equal(s.mask[0], ivar <= 0)
    assert s.history[0]["step"] == "read"


def test_manga_file(shared_data):
    path = shared_data / "manga_test_spectra" / "MaNGA_test_spectra.fits.gz"
    s = read_spectra(path)
    with fits.open(path) as h:
        flux = h["FLUX"].data
        z = h["Z"].data
        mask = h["MASK"].data
        wave = h["WAVE"].data
    assert s.n_objects == 8 == flux.shape[0] and s.n_pixels == 4563
    np.testing.assert_allclose(s.meta["z"], z)
    np.testing.assert_allclose(s.wavelength.value, wave)
    donotuse = (mask & (1 << 10)) != 0
    assert s.mask[donotuse].all()
    ok = ~s.mask
    np.testing.assert_allclose(s.flux[ok], flux[ok])
    assert s.flags is None  # MaNGA bits are applied at read time, not confused with SDSS and_mask
    assert len(set(s.ids)) == 8


@pytest.mark.parametrize("ext", [".fits", ".csv", ".parquet", ".npz"])
def test_wide_tables_round_trip(tmp_path, rng, ext):
    wave = np.linspace(4000.0, 4100.0, 21)
    flux = rng.normal(10, 1, (4, wave.size)).astype(np.float32)
    ivar = rng.uniform(1, 2, flux.shape).astype(np.float32)
    ivar[1, 3] = 0
    s = Spectra(wave, flux, ivar, meta={"id": ["a", "b", "c", "d"], "z": [0.1, 0.2, 0.3, 0.4]})
    path = write_wide_table(s, tmp_path / f"wide{ext}")
    back = read_spectra(path)
    np.testing.assert_allclose(back.wavelength.value, wave, rtol=1e-12)
    np.testing.assert_allclose(back.flux, flux, rtol=1e-6)
    np.testing.assert_allclose(back.ivar, ivar, rtol=1e-6)
    assert back.mask[1, 3] and back.mask.sum() == 1
    assert list(back.ids) == ["a", "b", "c", "d"]
    np.testing.assert_allclose(back.meta["z"], [0.1, 0.2, 0.3, 0.4])
    assert back.history[0]["params"]["format"] == "table"


def test_wide_csv_written_by_hand(tmp_path):
    p = tmp_path / "hand.csv"
    p.write_text("id,z,flux_5001.0,flux_5000.0,extra\nx,0.1,2.0,1.0,7\ny,0.2,4.0,3.0,8\n")
    s = read_spectra(p)
    np.testing.assert_allclose(s.wavelength.value, [5000.0, 5001.0])  # columns sorted by wavelength
    np.testing.assert_allclose(s.flux, [[1, 2], [3, 4]])
    assert list(s.meta["extra"]) == [7, 8]


def test_shared_npz_sample_reads(shared_data):
    s = read_spectra(shared_data / "sdss_spec_lite_sample" / "sdss_spec_sample.npz")
    assert s.n_objects == 32 and s.n_pixels == 4701


def test_unknown_format_lists_supported(tmp_path):
    p = tmp_path / "spectra.xyz"
    p.write_text("hello")
    with pytest.raises(ValueError, match="supported formats") as info:
        read_spectra(p)
    for name in supported_formats():
        assert name in str(info.value)
    with pytest.raises(ValueError, match="supported formats"):
        read_spectra(p, format="nope")


def test_plain_fits_image_is_unknown_format(tmp_path):
    p = tmp_path / "image.fits"
    fits.PrimaryHDU(np.zeros((4, 4))).writeto(p)
    with pytest.raises(SpectraReadError, match="unknown"):
        read_spectra(p)


def _bad_files(src, tmp_path):
    """Each kind of damaged input, with the words its error must contain."""
    data = src.read_bytes()
    out = {}
    p = tmp_path / "spec-9999-50000-0001.fits"
    p.write_text("this is not a FITS file\n" * 50)
    out["not_fits"] = (p, "not a FITS file")
    p = tmp_path / "spec-9999-50000-0002.fits"
    p.write_bytes(b"")
    out["empty"] = (p, "empty file")
    p = tmp_path / "spec-9999-50000-0003.fits"
    p.write_bytes(data[: len(data) // 2])
    out["truncated_block"] = (p, "truncated")
    p = tmp_path / "spec-9999-50000-0004.fits"
    p.write_bytes(data[:-1000])
    out["truncated_odd"] = (p, "truncated")
    with fits.open(src) as h:
        p = tmp_path / "spec-9999-50000-0005.fits"
        fits.HDUList([h[0].copy(), h[2].copy()]).writeto(p)
        out["missing_hdu"] = (p, "missing HDU 'COADD'")
        p = tmp_path / "spec-9999-50000-0006.fits"
        coadd = h[1].copy()
        coadd.data["ivar"][:] = 0
        fits.HDUList([h[0].copy(), coadd, h[2].copy()]).writeto(p)
        out["no_finite"] = (p, "no finite pixels")
    return out


def test_each_bad_file_gets_a_clear_error(sdss_fits_dir, tmp_path):
    for kind, (path, words) in _bad_files(sdss_fits_dir / "spec-0266-51602-0107.fits", tmp_path).items():
        with pytest.raises(SpectraReadError) as info:
            read_spectra(path)
        assert words in str(info.value), (kind, str(info.value))
        assert path.name in str(info.value)
        assert isinstance(info.value, ValueError)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_spectra(tmp_path / "nope.fits")
    with pytest.raises(SpectraReadError, match="folder"):
        read_spectra(tmp_path)


def test_register_custom_reader(tmp_path):
    p = tmp_path / "one.myfmt"
    p.write_text("1 2 3")

    def reader(path):
        vals = np.array(path.read_text().split(), dtype=float)
        return Spectra(np.arange(vals.size) + 4000.0, vals)

    register_reader("myfmt-test", lambda path: path.suffix == ".myfmt", reader, [".myfmt"], overwrite=True)
    s = read_spectra(p)
    np.testing.assert_allclose(s.flux[0], [1, 2, 3])
    assert "myfmt-test" in supported_formats()
    with pytest.raises(ValueError, match="already registered"):
        register_reader("myfmt-test", lambda path: False, reader)


def test_table_without_pixel_columns(tmp_path):
    p = tmp_path / "meta_only.csv"
    Table({"id": ["a"], "z": [0.1]}).write(p, format="ascii.csv")
    with pytest.raises(SpectraReadError, match="flux_<wavelength"):
        read_spectra(p)


# ----------------------------------------------------------------------------- review fixes (2026-11-26)
def test_csv_ids_stay_text_and_wide_tables_match_case_insensitively(tmp_path):
    s = Spectra(np.linspace(4000, 4001, 2), np.ones((3, 2)), meta={"id": ["007", "1e3", "12"]})
    write_wide_table(s, tmp_path / "w.csv")
    assert list(read_spectra(tmp_path / "w.csv").ids) == ["007", "1e3", "12"]
    Table({"id": ["a", "b"], "FLUX_4000.0": [1.0, 2.0], "FLUX_4001.0": [1.0, 2.0]}).write(tmp_path / "u.fits")
    assert read_spectra(tmp_path / "u.fits").n_pixels == 2
    write_wide_table(s, tmp_path / "spec-0266-51602-0013_clean.fits")  # an SDSS-like name on our own table
    assert list(read_spectra(tmp_path / "spec-0266-51602-0013_clean.fits").ids) == ["007", "1e3", "12"]


def test_replacing_a_built_in_reader_before_first_use():
    """The built-ins registered themselves later, without overwrite, and made the first read fail."""
    import subprocess
    import sys

    code = ("from serendip.spectra.io import register_reader, supported_formats, _READERS\n"
            "register_reader('sdss', lambda p: False, lambda p: None, ('.fits',), overwrite=True)\n"
            "assert 'table' in supported_formats() and 'manga' in supported_formats()\n"
            "assert _READERS['sdss'].identifier(None) is False\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_manga_flux_units_and_datacubes(tmp_path):
    wave = np.linspace(3622.0, 10354.0, 20)

    def hdus(flux, bunit):
        h = fits.ImageHDU(flux, name="FLUX")
        h.header["BUNIT"] = bunit
        return fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(wave, name="WAVE"), h,
                             fits.ImageHDU(np.ones_like(flux), name="IVAR")])

    hdus(np.full((2, 20), 3e-17), "erg/s/cm^2/Angstrom").writeto(tmp_path / "m.fits")
    s = read_spectra(tmp_path / "m.fits")
    np.testing.assert_allclose(s.flux, 3.0, rtol=1e-5)  # into 1e-17 erg/s/cm2/Å
    np.testing.assert_allclose(s.ivar, 1e-34, rtol=1e-5)
    cube = np.arange(20 * 3 * 4, dtype=float).reshape(20, 3, 4) + 1
    hdus(cube, "1E-17 erg/s/cm^2/Ang/spaxel").writeto(tmp_path / "manga-1-2-LOGCUBE.fits")
    c = read_spectra(tmp_path / "manga-1-2-LOGCUBE.fits")
    assert len(c) == 12 and c.n_pixels == 20
    k = 1 * 4 + 2  # spaxel y=1, x=2
    np.testing.assert_allclose(c.flux[k], cube[:, 1, 2])
    assert (c.meta["spaxel_y"][k], c.meta["spaxel_x"][k]) == (1, 2)


def test_open_input_takes_path_likes_and_blank_snr_is_unknown(tmp_path):
    import os

    from serendip.spectra.inputs import open_input

    s = Spectra(np.linspace(4000, 4001, 2), np.ones((3, 2)), meta={"snr": [5.0, 6.0, 7.5]})
    write_wide_table(s, tmp_path / "w.csv")
    text = (tmp_path / "w.csv").read_text().replace(",6.0,", ",,")
    (tmp_path / "w.csv").write_text(text)
    entry = next(e for e in os.scandir(tmp_path) if e.name == "w.csv")  # an os.PathLike, not str/Path
    snr = open_input(entry).snr
    assert snr[0] == 5.0 and np.isnan(snr[1]) and snr[2] == 7.5
    with pytest.raises(TypeError, match="not bytes"):
        open_input(b"w.csv")
