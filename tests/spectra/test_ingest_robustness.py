"""ingest and SpectraStore on awkward batches: metadata types that change between files, text redshifts,
appending or resuming with other settings, rejected files on append, duplicate ids, Ctrl-C."""
from __future__ import annotations

import gzip
import importlib
import logging
import shutil

import numpy as np
import pytest
from astropy.io import fits

from serendip.cli import main
from serendip.spectra import Spectra
from serendip.spectra.ingest import ingest
from serendip.spectra.store import SpectraStore, partial_path

ing = importlib.import_module("serendip.spectra.ingest")  # the module (the package attribute is the function)

TABLE_GRID = dict(grid="linear", wmin=4010.0, wmax=4150.0, npix=50)
SDSS_GRID = dict(grid="log", wmin=3800.0, wmax=7000.0, npix=1500)
A1 = ["spec-0266-51602-0107.fits", "spec-0385-51783-0396.fits"]
A2 = ["spec-0618-52049-0372.fits", "spec-10000-57346-0002.fits"]


def _write_csv(path, ids, columns, seed=0):
    """A wide CSV table: id (unless ``ids`` is None), the metadata columns (text as given), flux_<Å> columns."""
    rng = np.random.default_rng(seed)
    waves = np.arange(4000.0, 4200.0, 2.0)
    n = len(next(iter(columns.values())))
    names = ([] if ids is None else ["id"]) + [*columns, *(f"flux_{w:.1f}" for w in waves)]
    lines = [",".join(names)]
    for k in range(n):
        flux = 1 + 0.1 * rng.standard_normal(waves.size)
        lines.append(",".join(([] if ids is None else [ids[k]]) + [str(v[k]) for v in columns.values()]
                              + [repr(float(f)) for f in flux]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _copy(src_dir, names, dst):
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(src_dir / name, dst / name)  # into tmp_path only
    return dst


# ---------------------------------------------------------------------------------------------- bug 1
@pytest.mark.parametrize("block_size", [1, 1024])
def test_metadata_dtype_not_fixed_by_first_block(tmp_path, block_size):
    d = tmp_path / "in"
    _write_csv(d / "a.csv", ["a0", "a1"], {"z": ["0", "0"], "mag": ["20", "21"], "field": ["1.5", "2.5"]})
    _write_csv(d / "b.csv", ["b0", "b1"], {"z": ["0.0005", "0.0007"], "mag": ["20.7", "21.3"],
                                           "field": ["north", "south"]}, seed=1)
    _write_csv(d / "c.csv", ["c0", "c1"], {"z": ["0.001", "0.002"], "mag": ["19", "18"], "field": ["3.5", "4.5"]},
               seed=2)
    res = ingest([d], tmp_path / "s.h5", progress=False, block_size=block_size, **TABLE_GRID)
    assert res.n_read == 6 and len(res.rejected) == 0
    meta = SpectraStore(res.path).meta
    assert list(meta["id"]) == ["a0", "a1", "b0", "b1", "c0", "c1"]
    assert meta["z"].dtype == np.float64 and meta["mag"].dtype == np.float64
    np.testing.assert_array_equal(meta["z"], [0, 0, 0.0005, 0.0007, 0.001, 0.002])
    np.testing.assert_array_equal(meta["mag"], [20, 21, 20.7, 21.3, 19, 18])
    # text in some files and numbers in others: stored as text for every row, nothing lost, and said so
    assert list(meta["field"]) == ["1.5", "2.5", "north", "south", "3.5", "4.5"]
    assert any("'field'" in n and "text" in n for n in res.notes)
    assert "'field'" in res.summary()


def test_text_in_a_numeric_column_rejects_only_that_file(tmp_path):
    d = tmp_path / "in"
    _write_csv(d / "a.csv", ["a0", "a1"], {"z": ["0.1", "0.2"], "ra": ["10.5", "11"]})
    _write_csv(d / "b.csv", ["b0", "b1"], {"z": ["0.1", "0.2"], "ra": ["north", "11"]}, seed=1)
    _write_csv(d / "c.csv", ["c0", "c1"], {"z": ["0.1", "0.2"], "ra": ["12", "13"]}, seed=2)
    res = ingest([d], tmp_path / "s.h5", progress=False, block_size=1, rest_frame=False, **TABLE_GRID)
    assert res.n_read == 4
    assert list(res.rejected["file"]) == [str(d / "b.csv")]
    reason = res.rejected["reason"][0]
    assert "'ra'" in reason and "north" in reason
    meta = SpectraStore(res.path).meta
    assert meta["ra"].dtype == np.float64 and list(meta["ra"]) == [10.5, 11, 12, 13]


def test_store_widens_metadata_types_and_refuses_before_writing(tmp_path):
    w = np.linspace(4000, 5000, 20)

    def spectra(meta):
        n = len(next(iter(meta.values())))
        return Spectra(w, np.ones((n, 20)), meta=meta)

    st = SpectraStore.create(tmp_path / "s.h5", w)
    st.append(spectra({"id": ["a", "b"], "mag": [20, 21], "f32": np.array([0.5, 1.5], np.float32)}))
    st.append(spectra({"id": ["c"], "n": [7]}))  # mag and f32 absent here; n absent before
    st.append(spectra({"id": ["d"], "mag": [20.25], "f32": [0.1234567890123], "n": [2.5],
                       "big": np.array([2**63 + 5], dtype=np.uint64)}))
    with pytest.raises(ValueError, match="'z'.*N/A"):  # a MetaTypeError, naming the column
        st.append(spectra({"id": ["e"], "z": ["N/A"]}))
    assert st.n_objects == 4 and st._f["flux"].shape[0] == 4  # nothing written by the refused block
    st.finalize()
    meta = SpectraStore(tmp_path / "s.h5").meta
    np.testing.assert_array_equal(meta["mag"], [20, 21, np.nan, 20.25])  # the row without mag is missing, not -1
    assert meta["f32"].dtype == np.float64 and meta["f32"][3] == 0.1234567890123
    np.testing.assert_array_equal(meta["n"], [np.nan, np.nan, 7, 2.5])
    assert meta["big"][3] == 2**63 + 5


# ---------------------------------------------------------------------------------------------- bug 2
@pytest.mark.parametrize("grid", [TABLE_GRID, {}], ids=["given-grid", "default-grid"])
def test_non_numeric_redshift_rejects_only_that_file(tmp_path, grid):
    d = tmp_path / "in"
    for k in range(3):
        _write_csv(d / f"good{k}.csv", [f"g{k}a", f"g{k}b"], {"z": ["0.0001", "0.0002"]}, seed=k)
    _write_csv(d / "zbad.csv", ["x0", "x1"], {"z": ["N/A", "0.0003"]}, seed=9)
    res = ingest([d], tmp_path / "s.h5", progress=False, **grid)
    assert res.n_read == 6
    assert list(res.rejected["file"]) == [str(d / "zbad.csv")]
    reason = res.rejected["reason"][0]
    assert "'z'" in reason and "N/A" in reason and "x0" in reason
    assert SpectraStore(res.path).meta["z"].dtype == np.float64


# ---------------------------------------------------------------------------------------------- bug 3
def test_append_with_other_settings_is_refused(sdss_fits_dir, tmp_path, capsys):
    a1 = _copy(sdss_fits_dir, A1, tmp_path / "a1")
    a2 = _copy(sdss_fits_dir, A2, tmp_path / "a2")
    out = tmp_path / "s.h5"
    first = ingest([a1], out, progress=False, wmin=4000, wmax=5000)
    before = SpectraStore(out).provenance
    with pytest.raises(ValueError, match="different settings") as info:
        ingest([a2], out, progress=False, if_exists="append", normalize=None, rest_frame=False)
    text = str(info.value)
    assert "normalize: 'median' in the store, None now" in text
    assert "rest_frame: True in the store, False now" in text
    store = SpectraStore(out)
    assert store.n_objects == first.n_read and store.provenance == before  # untouched
    assert not partial_path(out).exists()
    # the same mask bits written differently are the same setting
    names = ["NOPLUG", "BADTRACE", "BADFLAT", "BADARC", "MANYBADCOLUMNS", "MANYREJECTED", "LARGESHIFT",
             "NEARWHOPPER", "FULLREJECT", "NOSKY", "BRIGHTSKY", "NODATA", "COMBINEREJ", "BADFLUXFACTOR",
             "BADSKYCHI", "REDMONSTER"]
    more = ingest([a2], out, progress=False, if_exists="append", mask_bits=names[::-1])
    assert more.n_total == first.n_read + more.n_read and more.n_read > 0
    code = main(["-q", "ingest", str(a2), "-o", str(out), "--append", "--sky-lines"])
    assert code == 2 and "sky_lines (--sky-lines): False in the store, True now" in capsys.readouterr().err


def test_resume_with_other_settings_is_refused(sdss_fits_dir, tmp_path, interrupt_reading):
    d = _copy(sdss_fits_dir, A1 + A2, tmp_path / "in")
    out = tmp_path / "s.h5"
    restore = interrupt_reading(3)
    with pytest.raises(KeyboardInterrupt):
        ingest([d], out, progress=False, block_size=1, **SDSS_GRID)
    restore()
    assert partial_path(out).exists()
    with pytest.raises(ValueError, match=r"cannot resume.*normalize: 'median' in the store, 'l2' now"):
        ingest([d], out, progress=False, block_size=1, normalize="l2", **SDSS_GRID)
    assert partial_path(out).exists()  # the work done so far is not thrown away by the refusal
    res = ingest([d], out, progress=False, block_size=1, **SDSS_GRID)
    assert res.n_skipped == 2 and res.n_total == 4
    assert SpectraStore(out).provenance["ingest"]["normalize"] == "median"


def test_append_with_the_same_range_reuses_the_store_grid(sdss_fits_dir, tmp_path):
    # the default grid's step comes from the files read (float32 loglam): other files give a step
    # ~1e-7 different, which must not make the same command refuse to append
    a1 = _copy(sdss_fits_dir, A1, tmp_path / "a1")
    a2 = _copy(sdss_fits_dir, A2, tmp_path / "a2")
    out = tmp_path / "s.h5"
    first = ingest([a1], out, progress=False, wmin=4000, wmax=5000)
    grid = SpectraStore(out).wavelength.value
    assert not np.array_equal(ing.default_grid(sorted(a2.iterdir()), wmin=4000, wmax=5000).value, grid)  # the trap
    more = ingest([a2], out, progress=False, if_exists="append", wmin=4000, wmax=5000)
    assert more.n_read > 0 and more.n_total == first.n_read + more.n_read
    np.testing.assert_array_equal(SpectraStore(out).wavelength.value, grid)
    with pytest.raises(ValueError, match=r"grid: 970 px.* 200 px"):  # a real change is still refused
        ingest([a2], out, progress=False, if_exists="append", wmin=4000, wmax=5000, npix=200)


def test_resume_with_other_inputs_is_refused(sdss_fits_dir, tmp_path, interrupt_reading):
    d = _copy(sdss_fits_dir, A1 + A2, tmp_path / "in")
    other = _copy(sdss_fits_dir, A2, tmp_path / "other")
    out = tmp_path / "s.h5"
    restore = interrupt_reading(3)
    with pytest.raises(KeyboardInterrupt):
        ingest([d], out, progress=False, block_size=1, **SDSS_GRID)
    restore()
    with pytest.raises(ValueError, match="started on a different list of input files"):
        ingest([other], out, progress=False, block_size=1, **SDSS_GRID)
    assert partial_path(out).exists()  # kept for the job that owns it
    res = ingest([d], out, progress=False, block_size=1, **SDSS_GRID)
    assert res.n_total == 4


# ---------------------------------------------------------------------------------------------- bug 4
def test_append_retries_rejected_files_and_counts_only_stored_ones(sdss_fits_dir, tmp_path, monkeypatch):
    d = _copy(sdss_fits_dir, A1 + A2, tmp_path / "in")
    (d / "notfits.fits").write_text("just text\n" * 300)
    (d / "empty.fits").write_bytes(b"")
    shutil.copy(d / A1[0], d / "zz-copy.fits")
    out = tmp_path / "s.h5"
    real = ing.read_spectra

    def hiccup(path, format=None):  # a transient read error on one good file
        if str(path).endswith(A2[0]):
            raise OSError("Input/output error")
        return real(path, format=format)

    monkeypatch.setattr(ing, "read_spectra", hiccup)
    first = ingest([d], out, progress=False, **SDSS_GRID)
    monkeypatch.setattr(ing, "read_spectra", real)
    assert first.n_read == 3
    assert any(A2[0] in f and "Input/output error" in r for f, r in zip(first.rejected["file"],
                                                                           first.rejected["reason"]))
    n_rejected = len(SpectraStore(out).rejected)
    again = ingest([d], out, progress=False, if_exists="append", **SDSS_GRID)
    assert again.n_read == 1 and again.n_total == 4  # the file rejected before is tried again
    assert again.n_skipped == 3  # only the stored files, not the rejected ones or the copy
    assert "3 files already in the store were skipped" in again.summary()
    rejected = SpectraStore(out).rejected
    assert len(rejected) == n_rejected - 1  # its old rejection is gone; the others are listed once
    assert not any(A2[0] in f for f in rejected["file"])
    third = ingest([d], out, progress=False, if_exists="append", **SDSS_GRID)
    assert third.n_read == 0 and third.n_skipped == 4
    assert len(SpectraStore(out).rejected) == n_rejected - 1


# ---------------------------------------------------------------------------------------------- bug 5
def test_same_spectrum_twice_is_stored_once_and_reported(sdss_fits_dir, tmp_path, capsys):
    d = _copy(sdss_fits_dir, A1, tmp_path / "in")
    with fits.open(d / A1[0]) as h:  # the same plate-MJD-fiber from another reduction: other bytes, same id
        h[0].header["RUN2D"] = "v5_13_2"
        h.writeto(d / "zz-reprocessed.fits")
    out = tmp_path / "s.h5"
    res = ingest([d], out, progress=False, **SDSS_GRID)
    obj = A1[0].removesuffix(".fits")
    assert res.n_read == 2 and res.duplicate_ids == [obj]
    row = [r for r in res.rejected if r["id"] == obj]
    assert len(row) == 1 and row[0]["file"].endswith("zz-reprocessed.fits")
    assert "duplicate id" in row[0]["reason"] and A1[0] in row[0]["reason"]
    assert "1 spectra whose id was already stored" in res.summary() and obj in res.summary()
    ids = list(SpectraStore(out).meta["id"])
    assert len(ids) == len(set(ids)) == 2
    # later runs: a spectrum already in the store is skipped too
    extra = tmp_path / "more"
    extra.mkdir()
    with gzip.GzipFile(extra / (A1[1] + ".gz"), "wb", mtime=12345) as fh:
        fh.write((sdss_fits_dir / A1[1]).read_bytes())
    shutil.copy(sdss_fits_dir / A2[0], extra / A2[0])
    more = ingest([extra], out, progress=False, if_exists="append")
    assert more.n_read == 1 and more.duplicate_ids == [A1[1].removesuffix(".fits")]
    assert SpectraStore(out).n_objects == 3


def test_same_named_tables_without_ids_get_a_hint(tmp_path):
    # ids made from the file name ("spectra:0") collide across folders: reported, with how to avoid it
    for seed, night in enumerate(("n1", "n2")):
        _write_csv(tmp_path / night / "spectra.csv", None, {"z": ["0.1", "0.2"]}, seed=seed)
    res = ingest([tmp_path / "n1", tmp_path / "n2"], tmp_path / "s.h5", progress=False, rest_frame=False,
                 **TABLE_GRID)
    assert res.n_read == 2 and res.duplicate_ids == ["spectra:0", "spectra:1"]
    assert all("id column" in r for r in res.rejected["reason"])


# ---------------------------------------------------------------------------------------------- bug 6
def test_interrupt_keeps_the_partial_store_and_says_so(sdss_fits_dir, tmp_path, interrupt_reading, caplog):
    d = _copy(sdss_fits_dir, A1 + A2, tmp_path / "in")
    out = tmp_path / "s.h5"
    interrupt_reading(3)
    with caplog.at_level(logging.WARNING, logger="serendip"), pytest.raises(KeyboardInterrupt):
        ingest([d], out, progress=False, block_size=1, **SDSS_GRID)
    text = caplog.text
    assert partial_path(out).exists() and not out.exists()
    assert str(partial_path(out)) in text and "is kept with its 2 committed rows" in text
    assert "re-run the same command to resume" in text


def test_a_file_that_fails_to_resample_is_rejected_alone(tmp_path, monkeypatch):
    """Files are resampled in blocks; one failing file must not take its block (or the batch) down."""
    from serendip.spectra.tables import write_wide_table

    rng = np.random.default_rng(1)
    w = np.linspace(4000, 6000, 120)
    files = []
    for name in ("a", "bad", "b", "c"):
        s = Spectra(w, 1 + 0.1 * rng.random((2, 120)), meta={"id": [f"{name}1", f"{name}2"], "z": [0.05, 0.1]})
        files.append(write_wide_table(s, tmp_path / f"{name}.csv"))
    real = ing.resample_many

    def failing(items, *args, **kwargs):
        if any("bad.csv" in str(it.meta["source_path"][0]) for it in items):
            raise ValueError("simulated resampling failure")
        return real(items, *args, **kwargs)

    monkeypatch.setattr(ing, "resample_many", failing)
    res = ingest(files, tmp_path / "s.h5", progress=False, grid="linear", wmin=3700, wmax=5500, npix=80)
    with SpectraStore(res.path) as store:
        assert sorted(store.load().ids) == ["a1", "a2", "b1", "b2", "c1", "c2"]
        rej = store.rejected
        bad = [r for r in rej if str(r["file"]).endswith("bad.csv")]
        assert len(bad) == 1 and "cannot be resampled" in str(bad[0]["reason"])
        assert "simulated resampling failure" in str(bad[0]["reason"])


@pytest.mark.parametrize("fraction", ["2", "-0.1", "nan"])
def test_min_good_fraction_outside_0_1_is_refused_before_reading(sdss_fits_dir, tmp_path, capsys, fraction):
    """--min-good-fraction 2 used to reject every spectrum with 'minimum 200%' instead of naming the option."""
    out = tmp_path / "s.h5"
    code = main(["-q", "ingest", str(sdss_fits_dir / "spec-0266-51602-0013.fits"), "-o", str(out),
                 "--min-good-fraction", fraction])
    err = capsys.readouterr().err
    assert code == 2 and "--min-good-fraction" in err and "between 0 and 1" in err
    assert not out.exists() and not partial_path(out).exists()


def test_an_excluded_folder_does_not_turn_a_table_folder_into_a_fits_folder(tmp_path):
    from astropy.table import Table

    from serendip.spectra.ingest import expand_inputs

    d = tmp_path / "survey"
    (d / "run" / "tables").mkdir(parents=True)
    np.savez(d / "a.npz", flux=np.ones((2, 5)), wavelength=np.linspace(4000, 5000, 5))
    Table({"id": ["0"], "weirdness": [0.5]}).write(d / "run" / "tables" / "weirdness.fits")
    files, rejected = expand_inputs([d], exclude=[d / "run"])
    assert [f.name for f in files] == ["a.npz"] and rejected == []
