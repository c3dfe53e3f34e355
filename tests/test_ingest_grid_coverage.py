"""ingest: ``min_good_fraction`` is measured on the OUTPUT grid, and a missing redshift column is named.

A spectrum whose usable data cover only a sliver of the output grid (e.g. a z = 1.5 quasar on a
3700–7000 Å rest-frame grid) used to be kept, with most of it filled in by one constant, because the
fraction was only measured on the file's own pixels. And ``--z-column redshift`` on files whose
redshift column is ``z`` used to say "no usable pixels or no redshift" for every file.
"""
from __future__ import annotations

import importlib
import re
import shutil

import numpy as np
import pytest

from serendip.cli import main
from serendip.spectra import Spectra, deredshift
from serendip.spectra.ingest import ingest
from serendip.spectra.store import SpectraStore
from serendip.spectra.tables import write_wide_table

ing = importlib.import_module("serendip.spectra.ingest")  # the module (the package attribute is the function)

REST_GRID = dict(grid="linear", wmin=3700.0, wmax=7000.0, npix=330)


def _table(path, ids, z=None, *, usable=None, w=None, extra=None):
    """Write a small wide table (``.npz``) of flat spectra; ``usable[k]`` is a boolean pixel mask of good data."""
    w = np.linspace(3600.0, 10000.0, 641) if w is None else w
    n = len(ids)
    flux = 1.0 + 0.01 * np.arange(n)[:, None] + np.zeros((n, w.size))
    ivar = np.ones_like(flux)
    if usable is not None:
        for k, good in enumerate(usable):
            if good is not None:
                ivar[k, ~good] = 0.0
    meta = {"id": list(ids)}
    if z is not None:
        meta["z"] = list(z)
    meta.update(extra or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_wide_table(Spectra(w, flux, ivar=ivar, meta=meta), path)


def _reasons(res):
    return {str(i): str(r) for i, r in zip(res.rejected["id"], res.rejected["reason"])}


def _percent(reason):
    m = re.search(r"covers only ([0-9.]+)% of the", reason)
    assert m, reason
    return float(m.group(1))


# ------------------------------------------------------------------------------------ min_good_fraction
def test_a_spectrum_covering_little_of_the_rest_frame_grid_is_rejected_with_its_coverage(tmp_path):
    # "qso": every native pixel is usable (100 %), but at z = 1.5 its 3600-10000 Å become 1440-4000 Å
    # in the rest frame: only 3700-4000 Å of the 3700-7000 Å grid, about 9 %
    t = _table(tmp_path / "in" / "t.npz", ["gal", "qso"], z=[0.1, 1.5])
    res = ingest([t], tmp_path / "s.h5", progress=False, normalize="median", **REST_GRID)
    with SpectraStore(res.path) as st:
        assert list(st.meta["id"]) == ["gal"]
    reason = _reasons(res)["qso"]
    assert 8.0 < _percent(reason) < 10.0
    assert "of the rest-frame output grid 3700–7000 Å" in reason
    assert re.search(r"usable data only in 3700–(39[89]\d|4000) Å", reason), reason  # pixel centres
    assert "min_good_fraction is 0.2" in reason
    assert "1 × covers only" in res.summary()  # reported like the other rejected objects
    # the rejected table row names the file and the object
    row = [r for r in res.rejected if r["id"] == "qso"][0]
    assert row["file"] == str(t) and row["sha256"]


def test_min_good_fraction_compares_the_output_grid_coverage_not_the_native_pixels(tmp_path):
    # observed frame, grid 4000-7000 Å. "edge": usable only over 3600-4300 Å, i.e. 11 % of its own
    # pixels but ~10 % of the grid; "short": usable over 3600-5000 Å, 22 % of its own pixels and 33 % of
    # the grid; "full": usable everywhere
    w = np.linspace(3600.0, 10000.0, 641)
    t = _table(tmp_path / "in" / "t.npz", ["full", "edge", "short"],
               usable=[None, w <= 4300.0, w <= 5000.0], w=w)
    grid = dict(grid="linear", wmin=4000.0, wmax=7000.0, npix=301)
    # 0.2: "short" passes both checks (22 % of its pixels, 33 % of the grid); "edge" fails both
    res = ingest([t], tmp_path / "a.h5", progress=False, rest_frame=False, **grid)
    with SpectraStore(res.path) as st:
        assert list(st.meta["id"]) == ["full", "short"]
    assert "usable after masking" in _reasons(res)["edge"]  # the file's own pixels are still checked first
    # 0.105: "edge" passes on its own pixels (11 %) but covers only ~10 % of the grid, so it must go
    res = ingest([t], tmp_path / "b.h5", progress=False, rest_frame=False, min_good_fraction=0.105, **grid)
    with SpectraStore(res.path) as st:
        assert list(st.meta["id"]) == ["full", "short"]
    reason = _reasons(res)["edge"]
    assert "covers only" in reason and "of the output grid 4000–7000 Å" in reason and "rest-frame" not in reason
    assert 9.5 < _percent(reason) < 10.5
    assert "usable data only in 4000–4300 Å" in reason and "min_good_fraction is 0.105" in reason
    # no threshold: everything that touches the grid is kept
    res = ingest([t], tmp_path / "c.h5", progress=False, rest_frame=False, min_good_fraction=0.0, **grid)
    assert res.n_read == 3 and len(res.rejected) == 0


def test_real_z15_quasar_is_dropped_and_the_other_spectra_are_unchanged(sdss_fits_dir, tmp_path):
    # the CLI run of the bug report, on a few of its files, with the default (native) step
    names = ["spec-10000-57346-0010.fits",  # QSO z = 1.50: real data only in 3700-4131 Å of the grid (13 %)
             "spec-10000-57346-0020.fits",  # QSO z = 1.34: 22 % of the grid, kept
             "spec-0266-51602-0107.fits", "spec-0618-52049-0372.fits"]
    d = tmp_path / "in"
    d.mkdir()
    for name in names:
        shutil.copy(sdss_fits_dir / name, d / name)  # into tmp_path only
    out = tmp_path / "survey.h5"
    assert main(["-q", "ingest", str(d), "-o", str(out), "--wmin", "3700", "--wmax", "7000",
                 "--normalize", "median"]) == 0
    with SpectraStore(out) as st:
        kept = st.load()
        rejected = st.rejected
    assert "spec-10000-57346-0010" not in set(kept.ids)
    assert sorted(kept.ids) == sorted(n[:-5] for n in names[1:])
    reason = {str(i): str(r) for i, r in zip(rejected["id"], rejected["reason"])}["spec-10000-57346-0010"]
    assert round(_percent(reason)) == 13
    assert "rest-frame output grid 3700–6998 Å (usable data only in 3700–4131 Å)" in reason
    assert "min_good_fraction is 0.2" in reason
    # without the threshold the same spectra come out identical (rejection is per object)
    ref = ingest([d], tmp_path / "ref.h5", progress=False, wmin=3700, wmax=7000, min_good_fraction=0.0)
    with SpectraStore(ref.path) as st:
        every = st.load()
    assert "spec-10000-57346-0010" in set(every.ids)
    rows = [list(every.ids).index(i) for i in kept.ids]
    np.testing.assert_array_equal(every.wavelength.value, kept.wavelength.value)
    np.testing.assert_array_equal(every.flux[rows], kept.flux)
    np.testing.assert_array_equal(every.mask[rows], kept.mask)


# ------------------------------------------------------------------------------------ missing z column
def test_similar_columns_suggests_redshift_like_names():
    cols = ["id", "ra", "z", "z_err", "zwarning", "Z_NOQSO", "redshift_best", "class"]
    got = ing._similar_columns("redshift", cols)
    assert {"z", "Z_NOQSO", "redshift_best"} <= set(got)
    assert not {"z_err", "zwarning", "ra", "class"} & set(got)
    assert ing._similar_columns("Z", ["id", "z"]) == ["z"]  # another case


def test_a_missing_redshift_column_is_named_with_the_columns_that_exist(tmp_path):
    a = _table(tmp_path / "in" / "a.npz", ["a0", "a1"], z=[0.1, 0.2])
    b = _table(tmp_path / "in" / "b.npz", ["b0"], z=[0.1])
    with pytest.raises(ValueError) as err:
        ingest([a, b], tmp_path / "s.h5", progress=False, z_column="redshift", **REST_GRID)
    text = str(err.value)
    assert "nothing could be read from 2 input file(s)" in text
    assert "all 2 failed for the same reason" in text  # said once, not once per file
    assert text.count("not found") == 1
    assert "redshift column 'redshift' not found" in text
    assert "object metadata the 'table' reader made from the file" in text  # where it was looked for
    assert "columns are: id, z" in text and "similar column: 'z'" in text
    assert "--z-column" in text and "--no-rest-frame" in text
    assert "no usable pixels or no redshift" not in text


def test_only_the_files_without_the_column_are_rejected_and_rest_frame_tables_need_none(tmp_path):
    good = _table(tmp_path / "in" / "good.npz", ["g0", "g1"], extra={"redshift": [0.1, 0.2]})
    other = _table(tmp_path / "in" / "other.npz", ["o0"], z=[0.1], extra={"z_err": [0.01]})
    # spectra already in the rest frame (their history has a deredshift step) are not shifted again,
    # so they need no redshift column at all
    s = deredshift(Spectra(np.linspace(3600.0, 10000.0, 641), np.ones((1, 641)), ivar=np.ones((1, 641)),
                           meta={"id": ["r0"], "redshift": [0.1]}), z="redshift")
    s.meta.remove_column("redshift")
    rest = write_wide_table(s, tmp_path / "in" / "rest.npz")
    res = ingest([good, other, rest], tmp_path / "s.h5", progress=False, z_column="redshift", **REST_GRID)
    with SpectraStore(res.path) as st:
        assert sorted(st.meta["id"]) == ["g0", "g1", "r0"]
    assert list(res.rejected["file"]) == [str(other)]
    reason = str(res.rejected["reason"][0])
    assert reason.startswith("redshift column 'redshift' not found")
    assert "similar column: 'z'" in reason  # z_err is not offered as a redshift
    assert "1 × redshift column 'redshift' not found" in res.summary()


def test_real_files_with_a_wrong_z_column_say_so_when_choosing_the_grid(sdss_fits_dir, tmp_path, capsys):
    # no --npix: the default grid reads the files first, and that is where the old message came from
    d = tmp_path / "in"
    d.mkdir()
    for name in ["spec-0266-51602-0107.fits", "spec-0385-51783-0396.fits", "spec-0618-52049-0372.fits"]:
        shutil.copy(sdss_fits_dir / name, d / name)
    out = tmp_path / "z2.h5"
    assert main(["-q", "ingest", str(d), "-o", str(out), "--z-column", "redshift"]) == 2
    err = capsys.readouterr().err
    assert "all 3 failed for the same reason" in err
    assert "redshift column 'redshift' not found" in err
    assert "the 'sdss' reader" in err and "similar column: 'z'" in err
    assert "no usable pixels or no redshift" not in err
    assert not out.exists()
    # with the grid given in full, the files are read by ingest itself: the same account
    assert main(["-q", "ingest", str(d), "-o", str(out), "--z-column", "redshift", "--wmin", "3700",
                 "--wmax", "7000", "--npix", "500"]) == 2
    err = capsys.readouterr().err
    assert "3 rejected: all 3 failed for the same reason" in err and "similar column: 'z'" in err


def test_masked_fraction_is_the_share_of_the_stored_grid_without_data(tmp_path):
    # observed frame, grid 4000-7000 Å: "full" has data everywhere; "short" is usable only below 5000 Å
    # (22 % of its own pixels are usable, but a third of the grid is covered); "holey" loses 5500-6000 Å
    w = np.linspace(3600.0, 10000.0, 641)
    t = _table(tmp_path / "in" / "t.npz", ["full", "short", "holey"],
               usable=[None, w <= 5000.0, (w < 5500.0) | (w > 6000.0)], w=w)
    grid = dict(grid="linear", wmin=4000.0, wmax=7000.0, npix=301)
    res = ingest([t], tmp_path / "a.h5", progress=False, rest_frame=False, **grid)
    with SpectraStore(res.path) as st:
        frac = dict(zip(st.meta["id"], np.asarray(st.meta["masked_fraction"], float)))
        stored = st[:]
    assert frac["full"] == 0.0
    assert frac["short"] == pytest.approx(2 / 3, abs=0.02)  # 5000-7000 Å of 4000-7000 Å
    assert frac["holey"] == pytest.approx(1 / 6, abs=0.02)  # 5500-6000 Å of 4000-7000 Å
    # and it is the stored mask's share of each row (the masked pixels were filled, and stay marked)
    assert np.allclose(stored.mask.mean(axis=1), [frac[str(i)] for i in stored.meta["id"]])
