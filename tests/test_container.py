import astropy.units as u
import numpy as np
import pytest

from serendip.spectra import Spectra


def make(n=5, m=20, seed=0):
    rng = np.random.default_rng(seed)
    wave = np.linspace(4000, 6000, m)
    flux = rng.normal(1, 0.1, (n, m))
    ivar = np.full((n, m), 100.0)
    ivar[0, 3] = 0
    return Spectra(wave, flux, ivar, meta={"z": np.linspace(0, 0.1, n)})


def test_defaults_and_units():
    s = make()
    assert s.wavelength.unit == u.AA
    assert s.flux.dtype == np.float32
    assert s.mask[0, 3] and s.mask.sum() == 1
    assert list(s.ids) == ["0", "1", "2", "3", "4"]
    assert s.meta.colnames[0] == "id"


def test_wavelength_in_other_units_is_converted():
    s = Spectra(np.linspace(0.4, 0.6, 20) * u.um, np.ones((2, 20)))
    assert s.wavelength.unit == u.AA
    np.testing.assert_allclose(s.wavelength.value[[0, -1]], [4000, 6000])


def test_indexing_slicing_boolean_and_id():
    s = make()
    assert len(s[1]) == 1 and s[1].ids[0] == "1"
    assert len(s[-1]) == 1 and s[-1].ids[0] == "4"
    assert list(s[1:3].ids) == ["1", "2"]
    assert list(s[np.array([4, 0])].ids) == ["4", "0"]
    sel = s[s.meta["z"] > 0.05]
    assert list(sel.ids) == ["3", "4"]
    np.testing.assert_array_equal(s["2"].flux, s.flux[2:3])
    with pytest.raises(IndexError):
        s[10]
    with pytest.raises(KeyError, match="no object with id"):
        s["nope"]


def test_concatenate_and_blocks_cover_every_row_once():
    s = make(7)
    blocks = list(s.iter_blocks(3))
    assert [len(b) for b in blocks] == [3, 3, 1]
    back = Spectra.concatenate(blocks)
    np.testing.assert_array_equal(back.flux, s.flux)
    np.testing.assert_array_equal(back.mask, s.mask)
    assert list(back.ids) == list(s.ids)
    assert [len(b) for b in s] == [1] * 7


def test_concatenate_rejects_other_grid():
    a = make()
    b = Spectra(np.linspace(4000, 6100, 20), np.ones((2, 20)))
    with pytest.raises(ValueError, match="different wavelength grid"):
        Spectra.concatenate([a, b])


@pytest.mark.parametrize("bad, msg", [
    (dict(wavelength=np.linspace(5, 1, 10)), "strictly increasing"),
    (dict(flux=np.ones((2, 9))), "resample first"),
    (dict(ivar=np.ones((3, 10))), "ivar has shape"),
    (dict(meta={"z": [0.1]}), "meta has 1 rows"),
])
def test_bad_construction_messages(bad, msg):
    kw = dict(wavelength=np.linspace(1, 5, 10), flux=np.ones((2, 10)))
    kw.update(bad)
    with pytest.raises(ValueError, match=msg):
        Spectra(**kw)


def test_history_is_not_shared_between_copies():
    s = make()
    t = s.with_step("demo", {"a": 1})
    assert s.history == [] and t.history == [{"step": "demo", "params": {"a": 1}}]


def test_specutils_roundtrip():
    pytest.importorskip("specutils")
    s = make()
    back = Spectra.from_specutils(s.to_specutils())
    np.testing.assert_allclose(back.flux, s.flux)
    np.testing.assert_array_equal(back.mask, s.mask)
