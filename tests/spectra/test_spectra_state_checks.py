"""Spectra carry their state (redshift frame, flux unit, mask) honestly through every step.

Each test here pins down a way a container, store or file could silently end up
wrong: a masked redshift taken as a number, a second rest-frame shift, a unit
that no longer describes the flux, a row lost on a CSV round trip.
"""
from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
from astropy.table import MaskedColumn, Table

from serendip._io import read_table, write_table
from serendip.datasets.fetch import fetch_sdss, verify_spec_file
from serendip.spectra import Spectra, deredshift, normalize, read_spectra, resample, resample_many
from serendip.spectra.ingest import expand_inputs, ingest
from serendip.spectra.inputs import open_input
from serendip.spectra.preprocess import mask_pixels
from serendip.spectra.store import SpectraStore
from serendip.spectra.tables import read_table_spectra, write_wide_table


def _spectra(n=2, m=50, **kw):
    w = np.linspace(4000.0, 5000.0, m)
    return Spectra(w, np.ones((n, m)) + np.arange(n)[:, None], **kw)


def test_a_masked_redshift_is_an_error_not_a_number():
    s = _spectra(meta={"id": ["a", "b"], "z": MaskedColumn([0.1, 0.0], mask=[False, True])})
    grid = np.linspace(3700.0, 4500.0, 40)
    with pytest.raises(ValueError, match=r"no usable redshift.*\['b'\]"):
        resample(s, grid, z="z")
    with pytest.raises(ValueError, match=r"no usable redshift.*\['b'\]"):
        resample_many([s[0], s[1]], grid, z="z")


def test_resample_with_z_refuses_spectra_already_in_the_rest_frame():
    s = _spectra(meta={"id": ["a", "b"], "z": [0.1, 0.1]})
    rest = deredshift(s)
    grid = np.linspace(3400.0, 4500.0, 40)
    with pytest.raises(ValueError, match="already in the rest frame"):
        resample(rest, grid, z="z")
    with pytest.raises(ValueError, match="already in the rest frame"):
        resample_many([rest], grid, z="z")
    assert resample(rest, grid).n_objects == 2  # without z it is fine


def test_a_grid_outside_the_spectra_is_an_error():
    with pytest.raises(ValueError, match="does not overlap"):
        resample(_spectra(), np.linspace(20000.0, 30000.0, 30))


def test_the_default_mask_covers_non_finite_ivar():
    s = Spectra(np.arange(5.0) + 4000, np.ones((1, 5)), ivar=[[1, np.nan, np.inf, 1, 0]])
    assert s.mask.tolist() == [[False, True, True, False, True]]


def test_normalised_flux_has_no_unit_and_the_store_records_it(tmp_path):
    s = _spectra(flux_unit="Jy")
    n = normalize(s)
    assert n.flux_unit == "" and n.history[-1]["params"]["flux_unit_before"] == "Jy"
    store = SpectraStore.create(tmp_path / "s.h5", s.wavelength)
    store.append(s)  # the first rows set the unit
    with pytest.raises(ValueError, match="flux unit"):
        store.append(n)
    assert store.flux_unit == "Jy"
    store.finalize()


def test_ingest_stores_a_normalised_flux_without_a_unit_and_rejects_mixed_units(tmp_path):
    a = _spectra(meta={"id": ["a1", "a2"], "z": [0.0, 0.0]})
    b = _spectra(meta={"id": ["b1", "b2"], "z": [0.0, 0.0]}, flux_unit="Jy")
    write_wide_table(a, tmp_path / "a.npz")
    write_wide_table(b, tmp_path / "b.npz")
    out = ingest([tmp_path / "a.npz", tmp_path / "b.npz"], tmp_path / "n.h5", npix=30, progress=False)
    with SpectraStore(out.path) as st:
        assert st.flux_unit == ""  # median-normalised
        assert st.n_objects == 2
        rejected = [str(r) for r in st.rejected["reason"]]
    assert any("flux unit 'Jy' differs" in r for r in rejected)
    raw = ingest([tmp_path / "b.npz"], tmp_path / "raw.h5", npix=30, normalize=None, progress=False)
    with SpectraStore(raw.path) as st:
        assert st.flux_unit == "Jy"


def test_concatenate_refuses_containers_in_different_states():
    s = _spectra(meta={"id": ["a", "b"], "z": [0.1, 0.1]})
    with pytest.raises(ValueError, match="flux unit"):
        Spectra.concatenate([s, _spectra(flux_unit="Jy")])
    with pytest.raises(ValueError, match="normalisation"):
        Spectra.concatenate([s, normalize(s)._replace(flux_unit=s.flux_unit)])
    with pytest.raises(ValueError, match="frame"):
        Spectra.concatenate([s, deredshift(s)])
    assert Spectra.concatenate([s, s]).n_objects == 4


def test_mask_bits_after_resampling_warn_that_nothing_can_be_applied(caplog):
    s = _spectra(flags=np.full((2, 50), 1 << 22))
    r = resample(s, np.linspace(4100.0, 4900.0, 20))
    with caplog.at_level(logging.WARNING):
        out = mask_pixels(r)
    assert "resampling dropped the per-pixel flags" in caplog.text
    assert out.history[-1]["params"]["and_mask_applied"] is False
    assert mask_pixels(s).history[-1]["params"]["and_mask_applied"] is True


def test_csv_rows_whose_first_cell_starts_with_a_hash_survive(tmp_path):
    t = Table({"id": ["#7", "b", "#x"], "x": [1.0, 2.0, 3.0]})
    for name in ("t.csv", "t.ecsv"):
        write_table(t, tmp_path / name)
        assert list(read_table(tmp_path / name)["id"]) == ["#7", "b", "#x"], name
    s = _spectra(meta={"id": ["#7", "b"]})
    write_wide_table(s, tmp_path / "w.csv")
    assert list(read_table_spectra(tmp_path / "w.csv").ids) == ["#7", "b"]


def test_arrays_with_the_wrong_shape_are_refused(tmp_path):
    np.savez(tmp_path / "bad.npz", flux=np.ones((3, 10)), wavelength=np.arange(7.0))
    with pytest.raises(ValueError, match="wavelength grid has shape"):
        open_input(tmp_path / "bad.npz")
    np.save(tmp_path / "flat.npy", np.ones(5))
    with pytest.raises(ValueError, match="must be 2-D"):
        open_input(tmp_path / "flat.npy")


def test_zero_padding_after_the_last_hdu_is_accepted(tmp_path, sdss_fits_dir):
    src = sorted(sdss_fits_dir.glob("spec-*.fits"))[0]
    padded = tmp_path / src.name
    shutil.copyfile(src, padded)
    with open(padded, "ab") as fh:
        fh.write(b"\0" * 2880)
    assert read_spectra(padded).n_objects == 1
    assert verify_spec_file(padded) is None
    cut = tmp_path / "cut.fits"
    data = src.read_bytes()
    cut.write_bytes(data[: len(data) // 2880 // 2 * 2880])
    assert "truncated" in verify_spec_file(cut)


def test_a_folder_of_fits_spectra_skips_the_tables_beside_them(tmp_path, sdss_fits_dir):
    for f in sorted(sdss_fits_dir.glob("spec-*.fits"))[:2]:
        shutil.copyfile(f, tmp_path / f.name)
    write_wide_table(_spectra(), tmp_path / "same_objects.npz")
    files, skipped = expand_inputs([tmp_path])
    assert [f.suffix for f in files] == [".fits", ".fits"]
    assert len(skipped) == 1 and "name this file explicitly" in skipped[0]["reason"]
    files, skipped = expand_inputs([tmp_path / "same_objects.npz"])  # named: taken
    assert len(files) == 1 and not skipped


def test_fetch_reports_unusable_plate_mjd_fiber_rows_without_requesting_them(tmp_path):
    t = Table({"plate": MaskedColumn([0, 266, 5], mask=[True, False, False]),
               "mjd": [51602.0, 51602.0, 5.5], "fiberid": [1.0, np.nan, 3.0]})
    out = fetch_sdss(t, tmp_path, base_url="http://127.0.0.1:9", retries=0, timeout=1, progress=False)
    assert list(out["status"]) == ["failed"] * 3
    assert list(out["attempts"]) == [0, 0, 0]  # nothing was requested
    assert "row 0: plate is missing" in out["reason"][0]
    assert "row 1: fiberid is missing" in out["reason"][1]
    assert "row 2: mjd is not a positive whole number" in out["reason"][2]


@pytest.mark.parametrize("name", ["q.ecsv", "q.fits", "q.csv"])
def test_quantities_units_and_sets_in_meta_are_written(tmp_path, name):
    import astropy.units as u

    t = Table({"x": [1.0, 2.0]})
    t.meta.update(wmin=3600 * u.AA, unit=u.erg / u.s, tags={"b", "a"}, edges=[1, 2] * u.nm)
    write_table(t, tmp_path / name)
    meta = read_table(tmp_path / name).meta
    assert meta["wmin"] == {"value": 3600.0, "unit": "Angstrom"}
    assert meta["edges"] == {"value": [1.0, 2.0], "unit": "nm"}
    assert meta["tags"] == ["a", "b"] and "erg" in meta["unit"]


def test_an_empty_table_file_is_an_error(tmp_path):
    (tmp_path / "e.csv").write_bytes(b"")
    with pytest.raises(ValueError, match="e.csv.*empty"):
        read_table(tmp_path / "e.csv")
