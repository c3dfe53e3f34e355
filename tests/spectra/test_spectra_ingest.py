"""ingest and the `serendip ingest` / `serendip info` verbs, on real files and on every kind of bad input."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from astropy.io import fits

from serendip._io import file_sha256, read_table
from serendip.cli import main
from serendip.spectra import Spectra
from serendip.spectra.ingest import ingest, rejected_path
from serendip.spectra.store import SpectraStore, partial_path
from serendip.spectra.tables import write_wide_table

GOOD = ["spec-0266-51602-0107.fits", "spec-0385-51783-0396.fits", "spec-4055-55359-0006.fits",
        "spec-0618-52049-0372.fits", "spec-10000-57346-0002.fits"]
GRID = dict(grid="log", wmin=3700.0, wmax=7000.0, npix=2400)


def _copy_good(src_dir, dst):
    dst.mkdir(parents=True, exist_ok=True)
    for name in GOOD:
        shutil.copy(src_dir / name, dst / name)  # into tmp_path only, never into the repo
    return dst


def _write_bad(src, d):
    """One file per documented failure; returns {file name: words expected in its reason}."""
    data = src.read_bytes()
    expected = {}
    (d / "notfits.fits").write_text("just text\n" * 300)
    expected["notfits.fits"] = "not a FITS file"
    (d / "spec-9000-50000-0001.fits").write_bytes(data[: len(data) // 2])
    expected["spec-9000-50000-0001.fits"] = "truncated"
    (d / "empty.fits").write_bytes(b"")
    expected["empty.fits"] = "empty file"
    with fits.open(src) as h:
        fits.HDUList([h[0].copy(), h[2].copy()]).writeto(d / "spec-9000-50000-0002.fits")
        expected["spec-9000-50000-0002.fits"] = "missing HDU 'COADD'"
        coadd = h[1].copy()
        coadd.data["ivar"][:] = 0
        fits.HDUList([h[0].copy(), coadd, h[2].copy()]).writeto(d / "spec-9000-50000-0003.fits")
        expected["spec-9000-50000-0003.fits"] = "no finite pixels"
        meta = h[2].copy()
        meta.data["Z"][:] = np.nan
        fits.HDUList([h[0].copy(), h[1].copy(), meta]).writeto(d / "spec-9000-50000-0004.fits")
        expected["spec-9000-50000-0004.fits"] = "no redshift"
    shutil.copy(src, d / "zz-copy-of-0107.fits")
    expected["zz-copy-of-0107.fits"] = "duplicate of"
    return expected


def test_ingest_real_sdss_files(sdss_fits_dir, tmp_path):
    out = tmp_path / "all.h5"
    res = ingest([sdss_fits_dir], out, progress=False, **GRID)
    assert res.n_files == 32
    store = SpectraStore(out)
    assert store.n_objects == res.n_read == 32 - len(res.rejected)
    assert store.n_pixels == 2400
    reasons = dict(zip(res.rejected["file"], res.rejected["reason"]))
    # the two BADFLAT fibres are rejected for having almost no usable pixel, with the reason spelled out
    assert any("spec-10000-57346-0006" in f and "usable after masking" in r for f, r in reasons.items())
    # z > 2.1 quasars have no rest-frame overlap with 3700-7000 Å
    assert any("spec-6055-56102-0008" in f and "no usable pixel on the output grid" in r for f, r in reasons.items())
    prov = store.provenance
    hashes = {i["path"]: i["sha256"] for i in prov["inputs"]}
    for path, h in list(hashes.items())[:3]:
        assert file_sha256(path) == h
    steps = [s["step"] for s in prov["steps"]]
    assert steps == ["read", "mask_pixels", "signal_to_noise", "deredshift", "resample", "normalize", "fill_masked"]
    assert prov["ingest"]["rest_frame"] is True and prov["serendip_version"]
    data = store.load()
    np.testing.assert_allclose(np.nanmedian(np.where(data.mask, np.nan, data.flux), axis=1), 1.0, rtol=1e-5)
    assert np.isfinite(data.flux).all() and data.filled.any()
    assert set(data.meta["class"]) == {"GALAXY", "QSO", "STAR"}
    side = read_table(rejected_path(out))
    assert len(side) == len(res.rejected)
    store.close()


def test_bad_inputs_are_skipped_and_listed(sdss_fits_dir, tmp_path):
    d = _copy_good(sdss_fits_dir, tmp_path / "in")
    expected = _write_bad(sdss_fits_dir / GOOD[0], d)
    (d / "provenance.txt").write_text("not an input: unknown extensions in folders are ignored")
    res = ingest([d], tmp_path / "s.h5", progress=False, **GRID)
    assert res.n_read == len(GOOD)
    by_file = {str(f).split("/")[-1]: r for f, r in zip(res.rejected["file"], res.rejected["reason"])}
    assert set(by_file) == set(expected)
    for name, words in expected.items():
        assert words in by_file[name], (name, by_file[name])
    store = SpectraStore(tmp_path / "s.h5")
    assert len(store.rejected) == len(expected)
    assert sorted(store.meta["source_file"]) == sorted(GOOD)


def test_nothing_readable_raises_and_leaves_nothing(sdss_fits_dir, tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    _write_bad(sdss_fits_dir / GOOD[0], d)
    (d / "zz-copy-of-0107.fits").unlink()  # the only readable file (no redshift aside)
    out = tmp_path / "out" / "s.h5"
    with pytest.raises(ValueError, match="nothing could be read"):
        ingest([d], out, progress=False, **GRID)
    leftovers = list(out.parent.iterdir()) if out.parent.exists() else []
    assert leftovers == []
    assert main(["-q", "ingest", str(d), "-o", str(out), "--wmin", "3700", "--wmax", "7000", "--npix", "2400"]) == 2
    assert not out.exists() and not partial_path(out).exists()
    with pytest.raises(ValueError, match="nothing could be read"):
        ingest([tmp_path / "no-such-folder"], out, progress=False, **GRID)


def test_rerun_refuses_append_skips_overwrite_rebuilds(sdss_fits_dir, tmp_path):
    d = _copy_good(sdss_fits_dir, tmp_path / "in")
    out = tmp_path / "s.h5"
    first = ingest([d], out, progress=False, **GRID)
    with pytest.raises(FileExistsError):
        ingest([d], out, progress=False, **GRID)
    again = ingest([d], out, progress=False, if_exists="append", **GRID)
    assert again.n_read == 0 and again.n_skipped == len(GOOD)
    assert SpectraStore(out).n_objects == first.n_read  # no duplicated rows
    shutil.copy(sdss_fits_dir / "spec-4055-55359-0012.fits", d)
    more = ingest([d], out, progress=False, if_exists="append", **GRID)
    assert more.n_read == 1 and SpectraStore(out).n_objects == first.n_read + 1
    rebuilt = ingest([d], out, progress=False, if_exists="overwrite", **GRID)
    assert rebuilt.n_total == first.n_read + 1
    # appending without naming a grid reuses the store's grid rather than choosing a new one
    shutil.copy(sdss_fits_dir / "spec-0266-51602-0013.fits", d)
    grown = ingest([d], out, progress=False, if_exists="append")
    assert grown.n_read == 1 and grown.grid["npix"] == GRID["npix"]


def test_interrupted_ingest_resumes_without_duplicates(sdss_fits_dir, tmp_path, interrupt_reading):
    d = _copy_good(sdss_fits_dir, tmp_path / "in")
    out = tmp_path / "s.h5"
    restore = interrupt_reading(4)
    with pytest.raises(KeyboardInterrupt):
        ingest([d], out, progress=False, block_size=2, **GRID)
    assert not out.exists() and partial_path(out).exists()  # never looks complete
    restore()
    res = ingest([d], out, progress=False, block_size=2, **GRID)
    assert res.n_skipped == 2 and res.n_total == len(GOOD)
    ids = list(SpectraStore(out).meta["id"])
    assert len(ids) == len(set(ids)) == len(GOOD)
    reference = ingest([d], tmp_path / "ref.h5", progress=False, block_size=2, **GRID)
    np.testing.assert_allclose(SpectraStore(out).load().flux, SpectraStore(reference.path).load().flux)


def test_default_grid_covers_most_inputs(sdss_fits_dir, tmp_path):
    stars = [f for f in sorted(sdss_fits_dir.glob("spec-*.fits")) if f.name in
             ("spec-0618-52049-0372.fits", "spec-1079-52621-0509.fits", "spec-1123-52882-0065.fits",
              "spec-4961-55719-0378.fits", "spec-5047-55833-0936.fits")]
    res = ingest(stars, tmp_path / "stars.h5", progress=False)
    g = res.grid
    assert g["kind"] == "log"
    assert 3790 < g["wmin"] < 3900 and 9100 < g["wmax"] < 9300  # the SDSS-I/II spectrograph range
    w = SpectraStore(res.path).wavelength.value
    np.testing.assert_allclose(np.diff(np.log10(w)), 1e-4, rtol=1e-6)  # native SDSS step
    assert res.n_read == 5


def test_manga_and_wide_table_ingest(shared_data, tmp_path, rng):
    manga = shared_data / "manga_test_spectra" / "MaNGA_test_spectra.fits.gz"
    res = ingest([manga], tmp_path / "m.h5", progress=False, grid="linear", wmin=3700, wmax=8000, npix=2000)
    assert res.n_read + len(res.rejected) == 8 and res.n_read >= 6
    w = np.linspace(4000, 5000, 101)
    s = Spectra(w, rng.uniform(1, 2, (6, 101)), meta={"id": [f"t{k}" for k in range(6)]})
    table = write_wide_table(s, tmp_path / "wide.csv")
    obs = ingest([table], tmp_path / "t.h5", progress=False, rest_frame=False, normalize=None, wmin=4100,
                 wmax=4900, npix=50, grid="linear")
    got = SpectraStore(obs.path).load()
    assert obs.n_read == 6 and list(got.ids) == list(s.ids)
    np.testing.assert_allclose(got.flux.mean(axis=1), s.flux[:, 10:91].mean(axis=1), rtol=0.02)
    # the table has no z column, so in the rest frame every object is rejected and nothing is read
    with pytest.raises(ValueError, match="nothing could be read"):
        ingest([table], tmp_path / "t3.h5", progress=False, rest_frame=True, grid="linear", wmin=4100,
               wmax=4900, npix=50)


def test_cli_ingest_and_info(sdss_fits_dir, tmp_path, capsys):
    d = _copy_good(sdss_fits_dir, tmp_path / "in")
    out = tmp_path / "cli.h5"
    code = main(["-q", "ingest", str(d / "spec-0*.fits"), str(d / "spec-4055-55359-0006.fits"), "-o", str(out),
                 "--grid", "linear", "--wmin", "3800", "--wmax", "7000", "--npix", "1600", "--mask-bits",
                 "NODATA,BRIGHTSKY", "--sky-lines", "--normalize", "l2"])
    text = capsys.readouterr().out
    assert code == 0
    assert "store" in text and "rejected 0" in text
    store = SpectraStore(out)
    assert store.n_objects == 4
    prov = store.provenance
    assert prov["ingest"]["normalize"] == "l2" and prov["ingest"]["sky_lines"] is True
    mask_step = [s for s in prov["steps"] if s["step"] == "mask_pixels"][0]
    assert mask_step["params"]["and_mask_bits"] == ["BRIGHTSKY", "NODATA"]
    data = store.load()
    np.testing.assert_allclose(np.sqrt((np.where(data.mask, 0, data.flux) ** 2).sum(axis=1)), 1.0, rtol=1e-4)
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    for words in ("4 spectra", "1600 px", "linear", "rejected   0", "resample", "SHA-256"):
        assert words in info, words
    assert main(["-q", "ingest", str(d), "-o", str(out)]) == 2  # exists: refuses without --append/--overwrite
    assert "exists" in capsys.readouterr().err
