"""open_input: every verb opens the same kinds of INPUT the same way."""
import numpy as np
import pytest

from serendip.spectra import Spectra, SpectraStore, open_input


def test_npy_is_a_memmap_with_default_ids(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(12.0).reshape(4, 3))
    opened = open_input(tmp_path / "x.npy")
    assert isinstance(opened.data, np.memmap) and opened.data.shape == (4, 3)
    assert list(opened.ids) == ["0", "1", "2", "3"] and np.isnan(opened.snr).all()
    assert not opened.is_spectra and opened.wavelength is None


@pytest.mark.parametrize("grid_key", ["grid", "wavelength", "loglam"])
def test_npz_keys(tmp_path, grid_key):
    wave = np.linspace(4000, 5000, 5)
    grid = np.log10(wave) if grid_key == "loglam" else wave
    np.savez(tmp_path / "a.npz", flux=np.ones((2, 5)), ids=np.array(["a", "b"]), snr=np.array([3.0, 4.0]),
             **{grid_key: grid})
    opened = open_input(tmp_path / "a.npz")
    np.testing.assert_allclose(opened.wavelength, wave)
    assert list(opened.ids) == ["a", "b"] and list(opened.snr) == [3.0, 4.0]


def test_store_is_recognised_by_signature_not_name(tmp_path):
    s = Spectra(np.linspace(4000, 5000, 6), np.ones((3, 6)), meta={"snr": [1.0, 2.0, 3.0]})
    store = SpectraStore.create(tmp_path / "survey.h5", s.wavelength)
    store.append(s)
    store.finalize()
    renamed = tmp_path / "survey.data"
    (tmp_path / "survey.h5").rename(renamed)
    opened = open_input(renamed)
    assert opened.is_spectra and len(opened.ids) == 3 and list(opened.snr) == [1.0, 2.0, 3.0]
    np.testing.assert_allclose(opened.wavelength, np.linspace(4000, 5000, 6))


def test_real_sdss_file(sdss_fits_dir):
    path = sorted(sdss_fits_dir.glob("spec-*.fits"))[0]
    opened = open_input(path)
    assert opened.is_spectra and opened.ids[0].startswith("spec-")


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such input"):
        open_input(tmp_path / "missing.npy")
    with pytest.raises(ValueError, match="is a folder"):
        open_input(tmp_path)
    np.savez(tmp_path / "b.npz", v=np.ones(3))
    with pytest.raises(ValueError, match="2-D array named 'flux'"):
        open_input(tmp_path / "b.npz")
