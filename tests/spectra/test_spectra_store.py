"""SpectraStore: round trip, block iteration, atomic writes, resume and refusal to duplicate."""
from __future__ import annotations

import numpy as np
import pytest

from serendip.spectra import Spectra
from serendip.spectra.store import SpectraStore, open_store, partial_path


def _spectra(rng, n=23, m=40, start=0):
    w = np.geomspace(4000, 6000, m)
    flux = rng.normal(1, 0.2, (n, m)).astype(np.float32)
    ivar = rng.uniform(1, 5, (n, m)).astype(np.float32)
    mask = rng.random((n, m)) < 0.1
    filled = mask & (rng.random((n, m)) < 0.5)
    meta = {"id": [f"obj{start + k}" for k in range(n)], "z": rng.uniform(0, 0.3, n),
            "class": rng.choice(["GALAXY", "QSO", "STAR"], n), "plate": np.arange(n, dtype=np.int32) + 100,
            "good": rng.random(n) > 0.5}
    return Spectra(w, flux, ivar, mask, meta=meta, filled=filled,
                   history=[{"step": "resample", "params": {"npix": m, "kind": "log"}}])


def test_round_trip_values_metadata_provenance(tmp_path, rng):
    a, b = _spectra(rng, 23), _spectra(rng, 17, start=23)
    prov = {"steps": [{"step": "resample", "params": {"npix": 40, "kind": "log"}}], "note": "test",
            "nested": {"x": [1, 2]}}
    path = tmp_path / "s.h5"
    with SpectraStore.create(path, a.wavelength, provenance=prov, chunk_rows=8) as st:
        st.append(a, inputs=[{"path": "a.fits", "sha256": "a" * 64, "n_spectra": 23}])
        assert not path.exists() and partial_path(path).exists()  # not visible until complete
        st.append(b, inputs=[{"path": "b.fits", "sha256": "b" * 64, "n_spectra": 17}])
        st.add_rejected([{"file": "bad.fits", "id": "", "reason": "truncated FITS file", "sha256": "c" * 64}])
    assert path.exists() and not partial_path(path).exists()
    both = Spectra.concatenate([a, b])
    store = open_store(path)
    assert len(store) == store.n_objects == 40 and store.n_pixels == 40
    got = store.load()
    np.testing.assert_array_equal(got.flux, both.flux)
    np.testing.assert_array_equal(got.ivar, both.ivar)
    np.testing.assert_array_equal(got.mask, both.mask)
    np.testing.assert_array_equal(got.filled, both.filled)
    np.testing.assert_array_equal(got.wavelength.value, both.wavelength.value)
    for col in both.meta.colnames:
        np.testing.assert_array_equal(np.asarray(got.meta[col]), np.asarray(both.meta[col]), err_msg=col)
    assert got.meta.colnames == both.meta.colnames
    p = store.provenance
    assert p["note"] == "test" and p["nested"] == {"x": [1, 2]} and p["steps"] == prov["steps"]
    assert p["inputs"] == [{"path": "a.fits", "sha256": "a" * 64, "n_spectra": 23},
                           {"path": "b.fits", "sha256": "b" * 64, "n_spectra": 17}]
    assert "serendip_version" in p
    assert got.history == prov["steps"]
    assert list(store.rejected["reason"]) == ["truncated FITS file"]
    store.close()


def test_blocks_cover_every_row_once_and_indexing(tmp_path, rng):
    s = _spectra(rng, 37)
    with SpectraStore.create(tmp_path / "s.h5", s.wavelength, chunk_rows=5) as st:
        st.append(s)
    store = SpectraStore(tmp_path / "s.h5")
    for bs in (1, 5, 10, 36, 37, 100):
        ids = np.concatenate([blk.ids for blk in store.iter_blocks(bs)])
        assert list(ids) == list(s.ids)
        assert max(len(blk) for blk in store.iter_blocks(bs)) <= bs
    pick = store[[7, 3, 3, -1]]
    assert list(pick.ids) == ["obj7", "obj3", "obj3", "obj36"]
    np.testing.assert_array_equal(pick.flux, s.flux[[7, 3, 3, -1]])
    assert list(store[2:5].ids) == ["obj2", "obj3", "obj4"]
    assert list(store[::10].ids) == ["obj0", "obj10", "obj20", "obj30"]
    assert list(store[s.meta["class"] == "QSO"].ids) == list(s.ids[s.meta["class"] == "QSO"])
    assert store[0].n_objects == 1
    with pytest.raises(IndexError):
        store[37]
    # the store also feeds the shared block iterator used by every algorithm
    from serendip._validation import iter_row_blocks
    total = sum(len(block) for _, block in iter_row_blocks(store, 8))
    assert total == 37


def test_refuses_duplicate_inputs_and_wrong_grid(tmp_path, rng):
    s = _spectra(rng, 5)
    st = SpectraStore.create(tmp_path / "s.h5", s.wavelength)
    st.append(s, inputs=[{"path": "a", "sha256": "x" * 64, "n_spectra": 5}])
    with pytest.raises(ValueError, match="already in"):
        st.append(s, inputs=[{"path": "a-copy", "sha256": "x" * 64, "n_spectra": 5}])
    other = Spectra(np.linspace(4000, 6000, 40), s.flux)
    with pytest.raises(ValueError, match="different grid"):
        st.append(other)
    assert st.n_objects == 5
    st.finalize()
    with pytest.raises(FileExistsError):
        SpectraStore.create(tmp_path / "s.h5", s.wavelength)


def test_interrupted_writer_leaves_no_complete_store_and_resumes(tmp_path, rng):
    s = _spectra(rng, 12)
    path = tmp_path / "s.h5"
    st = SpectraStore.create(path, s.wavelength)
    st.append(s[:6], inputs=[{"path": "a", "sha256": "a" * 64, "n_spectra": 6}])
    # simulate a crash in the middle of the next block: rows written but never committed
    st._f["flux"].resize(9, axis=0)
    st._f["flux"][6:9] = 123.0
    st._f.flush()
    st.abort(keep_partial=True)
    assert not path.exists()
    with pytest.raises(FileNotFoundError, match="resume"):
        SpectraStore(path)
    with pytest.raises(ValueError, match="incomplete"):
        SpectraStore(partial_path(path))
    resumed = SpectraStore.create(path, s.wavelength, resume=True)
    assert resumed.n_objects == 6 and resumed.input_hashes == {"a" * 64}
    resumed.append(s[6:], inputs=[{"path": "b", "sha256": "b" * 64, "n_spectra": 6}])
    resumed.finalize()
    back = SpectraStore(path).load()
    np.testing.assert_array_equal(back.flux, s.flux)


def test_exception_inside_context_removes_partial(tmp_path, rng):
    s = _spectra(rng, 3)
    path = tmp_path / "s.h5"
    with pytest.raises(RuntimeError):
        with SpectraStore.create(path, s.wavelength) as st:
            st.append(s)
            raise RuntimeError("boom")
    assert not path.exists() and not partial_path(path).exists()


def test_append_mode_copies_then_replaces(tmp_path, rng):
    s = _spectra(rng, 4)
    path = tmp_path / "s.h5"
    with SpectraStore.create(path, s.wavelength) as st:
        st.append(s[:2], inputs=[{"path": "a", "sha256": "a" * 64, "n_spectra": 2}])
    st = SpectraStore.create(path, s.wavelength, if_exists="append")
    st.append(s[2:], inputs=[{"path": "b", "sha256": "b" * 64, "n_spectra": 2}])
    assert SpectraStore(path).n_objects == 2  # the original is untouched until finalize
    st.finalize()
    assert SpectraStore(path).n_objects == 4


def test_not_a_store(tmp_path):
    p = tmp_path / "x.h5"
    p.write_text("nope")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        SpectraStore(p)
