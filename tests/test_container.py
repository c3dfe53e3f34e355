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


# ----------------------------------------------------------------------------- review fixes (2026-11-26)
def test_copy_is_deep_for_metadata_and_views_are_documented():
    s = Spectra(np.linspace(4000, 5000, 5), np.ones((3, 5)), meta={"z": [0.1, 0.2, 0.3]})
    c = s.copy()
    c.meta["z"][0] = 99.0
    assert s.meta["z"][0] == 0.1  # the copy shared its metadata table with the original
    assert "view" in Spectra.__getitem__.__doc__


def test_index_edge_cases():
    s = Spectra(np.linspace(4000, 5000, 5), np.arange(15.0).reshape(3, 5), meta={"id": ["a", "b", "c"]})
    for bad in (True, False, np.True_):
        with pytest.raises(IndexError, match="single True/False"):
            s[bad]
    assert len(s[[]]) == 0 and list(s[np.array(2)].ids) == ["c"]
    one = Spectra(np.linspace(4000, 5000, 5), np.ones(5), ivar=np.full(5, 2.0), mask=np.zeros(5, bool))
    assert one.ivar.shape == (1, 5) and one.mask.shape == (1, 5)  # 1-D companions of a 1-D flux


def test_concatenate_keeps_every_history_and_mixed_id_types():
    w = np.linspace(4000, 5000, 5)
    a = Spectra(w, np.ones((2, 5)), meta={"id": [1, 2]}, history=[{"step": "read", "params": {"format": "a"}}])
    b = Spectra(w, np.ones((1, 5)), meta={"id": ["x"]},
                history=[{"step": "read", "params": {"format": "b"}}, {"step": "mask_pixels", "params": {}}])
    c = Spectra.concatenate([a, b])
    assert list(c.ids) == ["1", "2", "x"]
    last = c.history[-1]
    assert last["step"] == "concatenate" and last["params"]["histories"][1][1]["step"] == "mask_pixels"
    assert Spectra.concatenate([a, a]).history == a.history  # same steps: nothing added


def test_from_specutils_converts_the_uncertainty_unit():
    specutils = pytest.importorskip("specutils")
    from astropy.nddata import StdDevUncertainty

    cls = getattr(specutils, "Spectrum", None) or specutils.Spectrum1D
    unit = u.Unit("1e-17 erg / (s cm2 Angstrom)")
    spec = cls(flux=np.ones((1, 4)) * unit, spectral_axis=np.linspace(4000, 5000, 4) * u.AA,
               uncertainty=StdDevUncertainty(np.full((1, 4), 0.5e-17) * u.Unit("erg / (s cm2 Angstrom)")))
    s = Spectra.from_specutils(spec)
    np.testing.assert_allclose(s.ivar, 4.0, rtol=1e-6)  # sigma 0.5 in the flux's unit, not 4e34
