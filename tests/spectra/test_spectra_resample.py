"""Resampling and preprocessing: the vectorised engines against a plain per-pixel loop, and the physics."""
from __future__ import annotations

import numpy as np
import pytest

from serendip.spectra import Spectra
from serendip.spectra.preprocess import (DEFAULT_AND_MASK_BITS, SPPIXMASK, and_mask_value, deredshift, fill_masked,
                                         mask_pixels, normalize, signal_to_noise)
from serendip.spectra.resample import make_grid, pixel_edges, resample, resample_arrays, resample_many


def loop_resample(in_edges, flux, ivar, good, out_edges, min_coverage=0.5):
    """Obviously-correct reference: a double loop over output and input pixels."""
    k_out = len(out_edges) - 1
    f_out = np.zeros(k_out)
    iv_out = np.zeros(k_out)
    bad = np.ones(k_out, dtype=bool)
    for j in range(k_out):
        a, b = out_edges[j], out_edges[j + 1]
        num = den = var = 0.0
        for i in range(len(flux)):
            overlap = min(b, in_edges[i + 1]) - max(a, in_edges[i])
            if overlap > 0 and good[i] and ivar[i] > 0:
                num += overlap * flux[i]
                den += overlap
                var += overlap**2 / ivar[i]
        inside = a >= in_edges[0] - 1e-9 and b <= in_edges[-1] + 1e-9
        if inside and den / (b - a) >= min_coverage and den > 0:
            f_out[j] = num / den
            iv_out[j] = den**2 / var
            bad[j] = False
    return f_out, iv_out, bad


def _random_case(rng, n=4, m=120):
    w = 10 ** (3.6 + 1e-4 * np.arange(m))
    flux = rng.normal(5, 2, (n, m))
    ivar = rng.uniform(0.5, 3, (n, m))
    good = rng.random((n, m)) > 0.15
    good[0, 40:70] = False  # a long masked run: output pixels there must be masked
    return w, flux, ivar, good


@pytest.mark.parametrize("engine", ["numpy", "numba"])
@pytest.mark.parametrize("kind", ["log", "linear", "coarse", "fine"])
def test_vectorised_engines_match_loop(rng, engine, kind):
    w, flux, ivar, good = _random_case(rng)
    e_in = pixel_edges(w)
    if kind == "log":
        out = make_grid("log", w[3] * 0.999, w[-1] * 1.002, npix=90).value
    elif kind == "linear":
        out = make_grid("linear", w[0] - 5, w[-5], npix=70).value
    elif kind == "coarse":
        out = make_grid("linear", w[0], w[-1], npix=25).value
    else:
        out = make_grid("linear", w[10], w[30], npix=200).value
    e_out = pixel_edges(out)
    # per-row grids too (as after de-redshifting each object)
    z = np.array([0.0, 0.001, 0.003, 0.0005])
    for edges in (e_in, e_in[None, :] / (1 + z[:, None])):
        f, iv, bad, cov = resample_arrays(edges, flux, ivar, good, e_out, engine=engine)
        for r in range(flux.shape[0]):
            row_edges = edges if edges.ndim == 1 else edges[r]
            rf, riv, rbad = loop_resample(row_edges, flux[r], ivar[r], good[r], e_out)
            np.testing.assert_array_equal(bad[r], rbad)
            np.testing.assert_allclose(f[r], rf, rtol=2e-6, atol=1e-5)
            np.testing.assert_allclose(iv[r], riv, rtol=2e-6)
        assert bad.any() and (~bad).any()


def test_flux_conservation_over_a_band(rng):
    # a spectrum with an emission line on SDSS-like pixels, rebinned to a coarser linear grid
    w = 10 ** (3.55 + 1e-4 * np.arange(3000))
    line = 50 * np.exp(-0.5 * ((w - 5000) / 3.0) ** 2)
    flux = (10 + 0.001 * (w - 4000) + line + rng.normal(0, 0.5, w.size))[None, :]
    s = Spectra(w, flux, np.ones_like(flux))
    for out in (make_grid("linear", 3800, 7500, step=2.3), make_grid("log", 3700, 8000, step=3e-4),
                make_grid("linear", 4900, 5100, step=0.3)):
        r = resample(s, out)
        e_out = pixel_edges(out.value)
        e_in = pixel_edges(w)
        lo, hi = 4950.0, 5050.0
        jo = (e_out[:-1] >= lo) & (e_out[1:] <= hi)
        band_lo, band_hi = e_out[:-1][jo][0], e_out[1:][jo][-1]
        out_integral = np.sum(r.flux[0][jo] * np.diff(e_out)[jo])
        # the input integral over exactly the same band, with partial input pixels at its ends
        ov = np.clip(np.minimum(e_in[1:], band_hi) - np.maximum(e_in[:-1], band_lo), 0, None)
        in_integral = np.sum(flux[0] * ov)
        assert not r.mask[0][jo].any()
        assert abs(out_integral / in_integral - 1) < 0.01
        np.testing.assert_allclose(out_integral, in_integral, rtol=1e-5)  # exact up to float32 rounding


def test_ivar_propagation_matches_monte_carlo(rng):
    w = np.linspace(4000, 4100, 101)
    sigma = rng.uniform(0.5, 2, w.size)
    out = make_grid("linear", 4010, 4090, npix=17)
    base = Spectra(w, np.zeros((1, w.size)), (1 / sigma**2)[None, :])
    r = resample(base, out)
    draws = rng.normal(0, sigma, (4000, w.size))
    rs = resample(Spectra(w, draws, np.tile(1 / sigma**2, (4000, 1))), out)
    empirical_var = rs.flux.var(axis=0)
    np.testing.assert_allclose(1 / r.ivar[0], empirical_var, rtol=0.1)


def test_outside_coverage_is_masked_not_invented():
    w = np.linspace(5000, 6000, 201)
    s = Spectra(w, np.ones((1, w.size)))
    r = resample(s, make_grid("linear", 4500, 6500, npix=401))
    rw = r.wavelength.value
    assert r.mask[0][rw < 4990].all() and r.mask[0][rw > 6010].all()
    assert (r.flux[0][r.mask[0]] == 0).all() and (r.ivar[0][r.mask[0]] == 0).all()
    assert not r.mask[0][(rw > 5010) & (rw < 5990)].any()
    np.testing.assert_allclose(r.flux[0][~r.mask[0]], 1.0, rtol=1e-6)


def test_resample_many_matches_separate_resamples(rng):
    items = []
    for k, (lo, m) in enumerate([(3800.0, 300), (3900.0, 250), (3850.0, 280)]):
        w = lo * 10 ** (1e-4 * np.arange(m))
        items.append(Spectra(w, rng.normal(3, 1, (1, m)), rng.uniform(1, 2, (1, m)),
                             meta={"id": [f"o{k}"], "z": [0.01 * k]}))
    grid = make_grid("log", 3700, 4200, step=1.5e-4)
    together = resample_many(items, grid, z="z")
    for k, s in enumerate(items):
        alone = resample(deredshift(s), grid)
        np.testing.assert_array_equal(together.mask[k], alone.mask[0])
        np.testing.assert_allclose(together.flux[k], alone.flux[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(together.ivar[k], alone.ivar[0], rtol=1e-5)
    assert list(together.ids) == ["o0", "o1", "o2"]
    assert [h["step"] for h in together.history][-2:] == ["deredshift", "resample"]


def test_resample_with_z_equals_deredshift_then_resample(rng):
    w = np.linspace(4000, 6000, 400)
    s = Spectra(w, rng.normal(2, 1, (3, 400)), np.ones((3, 400)), meta={"z": [0.1, 0.2, 0.3]})
    grid = make_grid("linear", 3200, 5000, npix=300)
    fused = resample(s, grid, z="z")
    for k in range(3):
        sep = resample(deredshift(s[k]), grid)
        np.testing.assert_allclose(fused.flux[k], sep.flux[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="different redshifts"):
        deredshift(s)


def test_deredshift_conserves_integrated_flux():
    w = np.linspace(4000, 6000, 1001)
    f = np.exp(-0.5 * ((w - 5000) / 5) ** 2)[None, :]
    s = Spectra(w, f, np.ones_like(f), meta={"z": [0.25]})
    r = deredshift(s)
    np.testing.assert_allclose(r.wavelength.value, w / 1.25)
    np.testing.assert_allclose(np.trapezoid(r.flux[0], r.wavelength.value), np.trapezoid(f[0], w), rtol=1e-6)
    np.testing.assert_allclose(r.ivar, 1 / 1.25**2, rtol=1e-6)
    assert r.history[-1]["step"] == "deredshift"
    with pytest.raises(ValueError, match="already in the rest frame"):
        deredshift(r)
    with pytest.raises(ValueError, match="no usable redshift"):
        deredshift(Spectra(w, f, meta={"z": [np.nan]}))


def test_mask_bits_are_the_sdss_ones():
    assert SPPIXMASK["NODATA"] == 24 and SPPIXMASK["BRIGHTSKY"] == 23 and SPPIXMASK["NOPLUG"] == 0
    assert SPPIXMASK["REDMONSTER"] == 28 and SPPIXMASK["FULLREJECT"] == 18
    assert and_mask_value(["NODATA", 23]) == (1 << 24) | (1 << 23)
    assert and_mask_value("NODATA, BRIGHTSKY") == (1 << 24) | (1 << 23)
    assert and_mask_value(None) == 0 and and_mask_value(5) == 5
    with pytest.raises(ValueError, match="unknown SDSS and_mask bit"):
        and_mask_value(["NOT_A_BIT"])
    # a decimal bitmask where bit numbers are expected is pointed at the hexadecimal form
    with pytest.raises(ValueError, match=r"0 to 62; got 4194304 .*hexadecimal: 0x400000"):
        and_mask_value("4194304")
    default = and_mask_value(DEFAULT_AND_MASK_BITS)
    assert not default & (1 << SPPIXMASK["EMLINE"])  # real emission lines are never masked by default


def test_mask_pixels_bits_ivar_and_sky():
    w = np.linspace(5500, 6500, 1001)
    flags = np.zeros((2, w.size), dtype=np.int64)
    flags[0, 10] = 1 << SPPIXMASK["NODATA"]
    flags[0, 11] = 1 << SPPIXMASK["EMLINE"]
    ivar = np.ones((2, w.size))
    ivar[1, 20] = 0
    s = Spectra(w, np.ones((2, w.size)), ivar, flags=flags)
    m = mask_pixels(s)
    assert m.mask[0, 10] and not m.mask[0, 11] and m.mask[1, 20]
    assert m.ivar[0, 10] == 0
    none = mask_pixels(s, and_mask_bits=None)
    assert not none.mask[0, 10] and none.mask[1, 20]
    sky = mask_pixels(s, sky_lines=True)
    assert sky.mask[:, np.abs(w - 5578.89) < 3].all()
    assert not sky.mask[1, np.abs(w - 6000) < 50].any()
    assert m.history[-1]["step"] == "mask_pixels" and "NODATA" in m.history[-1]["params"]["and_mask_bits"]
    with pytest.raises(ValueError, match="before deredshift"):
        mask_pixels(deredshift(Spectra(w, np.ones((1, w.size)), meta={"z": [0.1]})), sky_lines=True)


def test_normalize_methods(rng):
    w = np.linspace(4000, 5000, 200)
    f = rng.uniform(1, 3, (3, 200)) * np.array([[1.0], [5.0], [0.1]])
    mask = np.zeros_like(f, dtype=bool)
    mask[:, :20] = True
    f[:, :20] = 1e6  # masked junk must not affect the scale
    s = Spectra(w, f, np.ones_like(f), mask=mask)
    med = normalize(s, "median")
    np.testing.assert_allclose(np.median(med.flux[:, 20:], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(med.ivar[:, 20:] * 1.0, (np.asarray(med.meta["norm"])[:, None] ** 2)
                               * np.ones((3, 180)), rtol=1e-5)
    tot = normalize(s, "sum")
    np.testing.assert_allclose(tot.flux[:, 20:].sum(axis=1), 1.0, rtol=1e-4)
    l2 = normalize(s, "l2")
    np.testing.assert_allclose(np.sqrt((l2.flux[:, 20:] ** 2).sum(axis=1)), 1.0, rtol=1e-4)
    win = normalize(s, "median", window=(4500, 4600))
    sel = (w >= 4500) & (w <= 4600)
    np.testing.assert_allclose(np.median(win.flux[:, sel], axis=1), 1.0, rtol=1e-5)
    neg = normalize(Spectra(w, -np.ones((1, 200))), "median")
    assert neg.mask.all() and np.isnan(neg.meta["norm"][0])
    with pytest.raises(ValueError, match="method"):
        normalize(s, "max")


def test_fill_masked_interpolates_and_records(rng):
    w = np.linspace(4000, 4100, 11)
    f = np.arange(11, dtype=float)[None, :] * 2.0
    mask = np.zeros((1, 11), dtype=bool)
    mask[0, [0, 4, 5, 10]] = True
    s = Spectra(w, np.where(mask, 99.0, f), np.where(mask, 0.0, 1.0), mask=mask)
    r = fill_masked(s)
    np.testing.assert_allclose(r.flux[0, [4, 5]], f[0, [4, 5]])  # linear in between
    assert r.flux[0, 0] == f[0, 1] and r.flux[0, 10] == f[0, 9]  # ends take the nearest kept value
    np.testing.assert_array_equal(r.filled[0], mask[0])
    assert r.mask[0, 4] and r.ivar[0, 4] == 0  # still flagged as not measured
    assert np.isfinite(r.flux).all()
    empty = fill_masked(Spectra(w, np.ones((1, 11)), np.zeros((1, 11))))
    assert not empty.filled.any()


def test_signal_to_noise_uses_kept_pixels_only():
    w = np.linspace(4000, 4100, 101)
    f = np.full((1, 101), 10.0)
    ivar = np.full((1, 101), 4.0)
    mask = np.zeros((1, 101), dtype=bool)
    mask[0, :60] = True
    f[0, :60] = 1e4
    r = signal_to_noise(Spectra(w, f, ivar, mask=mask))
    assert r.meta["snr"][0] == pytest.approx(20.0)
    assert np.isnan(signal_to_noise(Spectra(w, f, np.zeros_like(f))).meta["snr"][0])


def test_make_grid():
    g = make_grid("log", 3800, 9200)
    assert np.allclose(np.diff(np.log10(g.value)), 1e-4)
    assert g.value[0] == pytest.approx(3800)
    lin = make_grid("linear", 4000, 5000, npix=11)
    np.testing.assert_allclose(lin.value, np.arange(4000, 5001, 100))
    with pytest.raises(ValueError):
        make_grid("log", 5000, 4000)
    with pytest.raises(ValueError):
        make_grid("cubic", 4000, 5000)


try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is a test extra
    given = None

if given is not None:
    @settings(max_examples=40, deadline=None)
    @given(seed=st.integers(0, 2**32 - 1), m=st.integers(5, 80), k=st.integers(2, 60),
           log_in=st.booleans(), lo_frac=st.floats(0.0, 0.4), hi_frac=st.floats(0.6, 1.0))
    def test_property_integral_preserved_on_any_grid(seed, m, k, log_in, lo_frac, hi_frac):
        """For any input and output grids, flux integrated over the output pixels equals the input integral
        over exactly the same wavelength span (no masked pixels)."""
        rng = np.random.default_rng(seed)
        w = np.sort(rng.uniform(4000, 6000, m)) if not log_in else np.geomspace(4000, 6000, m)
        w = np.unique(w)
        if w.size < 3:
            return
        e_in = pixel_edges(w)
        f = rng.normal(1, 3, (1, w.size))
        span = e_in[-1] - e_in[0]
        a, b = e_in[0] + lo_frac * span, e_in[0] + hi_frac * span
        e_out = np.linspace(a, b, k + 1)
        fo, io, bad, cov = resample_arrays(e_in, f, np.ones_like(f), np.ones_like(f, bool), e_out, min_coverage=0.0)
        assert not bad.any()
        overlap = np.clip(np.minimum(e_in[1:], b) - np.maximum(e_in[:-1], a), 0, None)
        np.testing.assert_allclose(np.sum(fo[0] * np.diff(e_out)), np.sum(f[0] * overlap), rtol=1e-4,
                                   atol=1e-4 * np.sum(np.abs(f[0]) * overlap))
