"""Readers on damaged or unusual input: truncated gzip FITS, pickled npz arrays, empty metadata HDUs,
blank table cells, and wide tables that keep their provenance (rest frame) and hold many pixels."""
from __future__ import annotations

import gzip
import logging

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from serendip.spectra import Spectra, SpectraStore, ingest, open_input
from serendip.spectra.io import SpectraReadError, read_spectra
from serendip.spectra.tables import write_wide_table

SDSS_FILE = "spec-0266-51602-0013.fits"


def _cut(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


# ---------------------------------------------------------------------- 1. truncated .fits.gz
def test_truncated_manga_gz_is_an_error_not_missing_redshifts(shared_data, tmp_path):
    src = shared_data / "manga_test_spectra" / "MaNGA_test_spectra.fits.gz"
    cut = tmp_path / "MaNGA_cut.fits.gz"
    cut.write_bytes(_cut(src.read_bytes(), 0.9))
    with pytest.raises(SpectraReadError, match="truncated") as info:
        read_spectra(cut)
    assert info.value.path == str(cut) and "MaNGA_cut.fits.gz" in str(info.value)
    # the complete file still reads, with its redshifts
    assert np.isfinite(np.asarray(read_spectra(src).meta["z"], dtype=float)).all()


@pytest.mark.parametrize("fraction", [0.05, 0.6, 0.999])
def test_truncated_sdss_gz_is_reported_as_truncated(sdss_fits_dir, tmp_path, fraction):
    packed = gzip.compress((sdss_fits_dir / SDSS_FILE).read_bytes())
    cut = tmp_path / f"{SDSS_FILE}.gz"
    cut.write_bytes(_cut(packed, fraction))
    with pytest.raises(SpectraReadError, match="truncated") as info:
        read_spectra(cut)
    assert "missing HDU" not in str(info.value) and SDSS_FILE in str(info.value)


def test_complete_sdss_gz_reads_like_the_plain_file(sdss_fits_dir, tmp_path):
    plain = sdss_fits_dir / SDSS_FILE
    packed = tmp_path / f"{SDSS_FILE}.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    a, b = read_spectra(plain), read_spectra(packed)
    np.testing.assert_array_equal(a.flux, b.flux)
    np.testing.assert_array_equal(a.flags, b.flags)
    for col in ("id", "z", "class", "plate", "snr"):
        assert a.meta[col][0] == b.meta[col][0], col


def test_corrupted_gzip_checksum_is_reported(sdss_fits_dir, tmp_path):
    packed = bytearray(gzip.compress((sdss_fits_dir / SDSS_FILE).read_bytes()))
    packed[-8] ^= 0xFF  # CRC-32 in the gzip trailer
    bad = tmp_path / f"{SDSS_FILE}.gz"
    bad.write_bytes(bytes(packed))
    with pytest.raises(SpectraReadError, match="corrupted gzip"):
        read_spectra(bad)


def test_ingest_skips_a_truncated_gz_and_keeps_the_rest(sdss_fits_dir, tmp_path):
    good = tmp_path / f"{SDSS_FILE}.gz"
    good.write_bytes(gzip.compress((sdss_fits_dir / SDSS_FILE).read_bytes()))
    other = "spec-0266-51602-0107.fits"
    bad = tmp_path / f"{other}.gz"
    bad.write_bytes(_cut(gzip.compress((sdss_fits_dir / other).read_bytes()), 0.7))
    res = ingest([good, bad], tmp_path / "s.h5", progress=False, grid="linear", wmin=4000, wmax=6000, npix=200)
    assert res.n_read == 1
    assert list(res.rejected["file"]) == [str(bad)] and "truncated" in res.rejected["reason"][0]


def test_unidentified_truncated_gz_says_truncated(tmp_path):
    hdul = fits.HDUList([fits.PrimaryHDU(np.arange(50000, dtype=np.float64))])
    plain = tmp_path / "image.fits"
    hdul.writeto(plain)
    cut = tmp_path / "image.fits.gz"
    cut.write_bytes(_cut(gzip.compress(plain.read_bytes()), 0.5))
    with pytest.raises(SpectraReadError, match="truncated"):
        read_spectra(cut)


# ---------------------------------------------------------------------- 2. npz with an object array
def test_open_input_skips_object_arrays_in_npz(tmp_path):
    path = tmp_path / "templates.npz"
    np.savez(path, flux=np.ones((3, 5)), loglam=np.log10(np.linspace(4000, 5000, 5)),
             name=np.array(["a", None, 3], dtype=object), teff=np.array([5000.0, 6000.0, 7000.0]))
    opened = open_input(path)
    assert opened.data.shape == (3, 5) and list(opened.ids) == ["0", "1", "2"]
    np.testing.assert_allclose(opened.wavelength, np.linspace(4000, 5000, 5))


def test_open_input_real_pyhammer_templates(shared_data):
    opened = open_input(shared_data / "pyhammer_stellar_templates" / "pyhammer_templates.npz")
    assert opened.data.shape == (228, 4464) and opened.wavelength.shape == (4464,)


def test_npz_errors_name_the_file(tmp_path):
    only_objects = tmp_path / "objects.npz"
    np.savez(only_objects, flux=np.array([[1, None]], dtype=object))
    with pytest.raises(ValueError, match="objects.npz") as info:
        open_input(only_objects)
    assert "pickle" in str(info.value)
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(ValueError, match="broken.npz"):
        open_input(broken)


# ---------------------------------------------------------------------- 3. SDSS file with an empty HDU 2
def test_sdss_with_zero_row_specobj_falls_back_to_primary_header(sdss_fits_dir, tmp_path, caplog):
    with fits.open(sdss_fits_dir / SDSS_FILE) as h:
        empty = fits.BinTableHDU(Table(h[2].data)[:0], name="SPECOBJ")
        path = tmp_path / "spec-0001-50000-0003.fits"
        fits.HDUList([h[0].copy(), h[1].copy(), empty]).writeto(path)
        plate, mjd, fiber = h[0].header["PLATEID"], h[0].header["MJD"], h[0].header["FIBERID"]
    with caplog.at_level(logging.WARNING, logger="serendip"):
        s = read_spectra(path)
    assert len(s) == 1 and np.isnan(s.meta["z"][0])
    assert (s.meta["plate"][0], s.meta["mjd"][0], s.meta["fiberid"][0]) == (plate, mjd, fiber)
    assert any("zero rows" in r.getMessage() and path.name in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------- 4. blank and non-numeric cells
def test_blank_in_integer_flux_column_is_masked_like_a_blank_float(tmp_path):
    ints = tmp_path / "ints.csv"
    ints.write_text("id,z,mag,flux_4000.0,flux_4002.0,flux_4004.0\n"
                    "a,0.1,20,1,2,3\nb,,,1,,3\nc,0.3,21,1,2,3\n")
    floats = tmp_path / "floats.csv"
    floats.write_text("id,z,mag,flux_4000.0,flux_4002.0,flux_4004.0\n"
                      "a,0.1,20.5,1.0,2.0,3.0\nb,,,1.0,,3.0\nc,0.3,21.5,1.0,2.0,3.0\n")
    a, b = read_spectra(ints), read_spectra(floats)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert a.mask[1, 1] and a.mask.sum() == 1
    for s in (a, b):  # integer metadata with a blank behaves like float metadata with a blank
        assert s.meta["mag"].dtype.kind == "f" and bool(s.meta["mag"].mask[1])


def test_blank_ivar_and_mask_cells_mark_the_pixel_bad(tmp_path):
    p = tmp_path / "blank.csv"
    p.write_text("id,flux_4000.0,flux_4002.0,flux_4004.0,ivar_4000.0,ivar_4002.0,ivar_4004.0,"
                 "mask_4000.0,mask_4002.0,mask_4004.0\n"
                 "a,1,2,3,1,,1,0,0,\nb,1,2,3,1,1,1,0,0,0\n")
    s = read_spectra(p)
    np.testing.assert_array_equal(s.mask, [[False, True, True], [False, False, False]])


@pytest.mark.parametrize("column", ["flux_4002.0", "ivar_4000.0", "mask_4002.0"])
def test_non_numeric_cell_names_the_column_and_row(tmp_path, column):
    names = ["flux_4000.0", "flux_4002.0", "ivar_4000.0", "ivar_4002.0", "mask_4000.0", "mask_4002.0"]
    rows = [["1", "2", "1", "1", "0", "0"], ["1", "2", "1", "1", "0", "0"]]
    rows[1][names.index(column)] = "abc"
    p = tmp_path / "abc.csv"
    p.write_text("id," + ",".join(names) + "\n" + "\n".join(f"o{k}," + ",".join(r) for k, r in enumerate(rows)))
    with pytest.raises(SpectraReadError) as info:
        read_spectra(p)
    text = str(info.value)
    assert "abc.csv" in text and repr(column) in text and "row 2" in text and "'abc'" in text


# ---------------------------------------------------------------------- 5. wide tables: provenance, FITS size
def _rest_frame_spectra(rng, npix=400):
    wave = np.linspace(4000.0, 6000.0, npix)
    flux = 1.0 + 0.01 * rng.standard_normal((3, npix))
    flux[:, npix // 2] += 20.0  # a line at a known rest wavelength
    history = [{"step": "read", "params": {"format": "sdss"}}, {"step": "deredshift", "params": {"z": "z"}},
               {"step": "resample", "params": {"grid": {"kind": "linear", "npix": npix}}}]
    return Spectra(wave, flux, meta={"id": ["a", "b", "c"], "z": [0.1, 0.2, 0.3]}, history=history)


@pytest.mark.parametrize("ext", [".csv", ".fits", ".npz", ".parquet"])
def test_rest_frame_table_keeps_history_and_is_not_deredshifted_twice(tmp_path, rng, ext):
    if ext == ".parquet":
        pytest.importorskip("pyarrow")
    s = _rest_frame_spectra(rng)
    path = write_wide_table(s, tmp_path / f"rest{ext}")
    back = read_spectra(path)
    assert [h["step"] for h in back.history] == ["read", "deredshift", "resample", "read"]
    assert back.history[-1]["params"]["frame"] == "rest"
    np.testing.assert_allclose(back.meta["z"], [0.1, 0.2, 0.3])  # the real redshifts stay
    # re-ingest with the defaults (rest_frame=True): the line stays where it was
    res = ingest([path], tmp_path / f"again{ext}.h5", progress=False, grid=s.wavelength, normalize=None,
                 fill=False)
    again = SpectraStore(res.path).load()
    assert res.n_read == 3
    peak = s.wavelength.value[np.argmax(s.flux, axis=1)]
    np.testing.assert_allclose(again.wavelength.value[np.argmax(again.flux, axis=1)], peak)
    np.testing.assert_allclose(again.meta["z"], [0.1, 0.2, 0.3])
    assert "_serendip_z_shift" not in again.meta.colnames
    assert not any("_serendip" in str(h) for h in again.history)


def test_rest_and_observed_frame_files_in_one_ingest(tmp_path, rng):
    """Only the observed-frame file is shifted; both lines land at the same rest wavelength."""
    rest = _rest_frame_spectra(rng)
    w_rest = rest.wavelength.value[np.argmax(rest.flux[0])]
    obs_w = np.linspace(4000.0, 7000.0, 600)
    obs_flux = 1.0 + 0.01 * rng.standard_normal((2, 600))
    for k, z in enumerate([0.1, 0.15]):
        obs_flux[k] += 20.0 * np.exp(-0.5 * ((obs_w - w_rest * (1 + z)) / 3.0) ** 2)
    obs = Spectra(obs_w, obs_flux, meta={"id": ["o1", "o2"], "z": [0.1, 0.15]},
                  history=[{"step": "read", "params": {"format": "sdss"}}])
    files = [write_wide_table(rest, tmp_path / "rest.csv"), write_wide_table(obs, tmp_path / "obs.csv")]
    res = ingest(files, tmp_path / "mixed.h5", progress=False, grid=rest.wavelength, normalize=None, fill=False)
    got = SpectraStore(res.path).load()
    assert res.n_read == 5
    peaks = got.wavelength.value[np.argmax(got.flux, axis=1)]
    np.testing.assert_allclose(peaks, w_rest, atol=2 * np.diff(rest.wavelength.value)[0])
    np.testing.assert_allclose(np.sort(np.asarray(got.meta["z"], float)), [0.1, 0.1, 0.15, 0.2, 0.3])


def test_observed_frame_table_keeps_its_redshifts(tmp_path, rng):
    s = Spectra(np.linspace(4000, 5000, 50), rng.uniform(1, 2, (2, 50)), meta={"z": [0.1, 0.2]},
                history=[{"step": "read", "params": {"format": "sdss"}}])
    back = read_spectra(write_wide_table(s, tmp_path / "obs.csv"))
    np.testing.assert_allclose(back.meta["z"], [0.1, 0.2])
    assert "frame" not in back.history[-1]["params"]


@pytest.mark.parametrize("ext", [".fits", ".fits.gz"])
def test_fits_wide_table_with_many_pixels(tmp_path, rng, ext):
    wave = np.linspace(3800.0, 9200.0, 2000)
    flux = rng.normal(10, 1, (4, wave.size)).astype(np.float32)
    ivar = rng.uniform(1, 2, flux.shape).astype(np.float32)
    ivar[2, 7] = 0
    s = Spectra(wave, flux, ivar, meta={"id": ["a", "b", "c", "d"], "z": [0.1, 0.2, 0.3, 0.4]})
    path = write_wide_table(s, tmp_path / f"many{ext}")
    with fits.open(path) as h:
        assert [x.name for x in h] == ["PRIMARY", "SPECTRA", "WAVELENGTH"]
        assert h["SPECTRA"].header["TFIELDS"] < 10
    back = read_spectra(path)
    np.testing.assert_allclose(back.wavelength.value, wave, rtol=1e-12)
    np.testing.assert_allclose(back.flux, flux)
    np.testing.assert_allclose(back.ivar, ivar)
    assert back.mask[2, 7] and back.mask.sum() == 1
    assert list(back.ids) == ["a", "b", "c", "d"]


def test_fits_table_one_column_per_pixel_still_reads(tmp_path):
    t = Table({"id": ["x", "y"], "flux_5000.0": [1.0, 3.0], "flux_5001.0": [2.0, 4.0]})
    t.write(tmp_path / "hand.fits")
    s = read_spectra(tmp_path / "hand.fits")
    np.testing.assert_allclose(s.flux, [[1, 2], [3, 4]])


def test_fits_array_table_with_wrong_width_names_the_column(tmp_path):
    t = Table({"id": ["x"], "flux": np.ones((1, 4))})
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(t),
                         fits.ImageHDU(np.linspace(4000, 5000, 5), name="WAVELENGTH")])
    hdul.writeto(tmp_path / "bad.fits")
    with pytest.raises(SpectraReadError, match="column 'flux'.*WAVELENGTH"):
        read_spectra(tmp_path / "bad.fits")


def test_damaged_provenance_line_is_reported_and_the_table_still_reads(tmp_path, caplog):
    p = tmp_path / "damaged.csv"
    p.write_text('# serendip-meta: {"serendip_table": "serendip wide spectra table", "rest_fr\n'
                 "id,z,flux_4000.0,flux_4002.0\na,0.1,1,2\n")
    with caplog.at_level(logging.WARNING, logger="serendip"):
        s = read_spectra(p)
    np.testing.assert_allclose(s.meta["z"], [0.1])
    assert any("not valid JSON" in r.getMessage() and "damaged.csv" in r.getMessage() for r in caplog.records)


def test_write_wide_table_refuses_what_it_cannot_write(tmp_path):
    s = Spectra(np.linspace(4000, 5000, 5), np.ones((2, 5)), meta={"id": ["ö", "a"]})
    with pytest.raises(ValueError, match="non-ASCII.*'id'|'id'.*non-ASCII"):
        write_wide_table(s, tmp_path / "x.fits")
    with pytest.raises(ValueError, match=r"\.npz, \.fits"):
        write_wide_table(s, tmp_path / "x.ecsv")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_a_misspelt_pixel_column_is_reported_not_silently_metadata(tmp_path, caplog):
    """'flx_4001' (for flux_4001) inside the grid is flagged; an ordinary metadata column is not."""
    p = tmp_path / "wide.csv"
    p.write_text("id,z,band_12,flux_4000,flx_4001,flux_4002\na,0.1,3,1.0,1.1,1.2\nb,0.2,4,2.0,2.1,2.2\n")
    with caplog.at_level(logging.WARNING, logger="serendip.spectra"):
        spectra = read_spectra(p)
    assert spectra.n_pixels == 2  # what the file names as pixels, as before
    assert "['flx_4001'] look like pixel columns" in caplog.text and "band_12" not in caplog.text
