"""The synthetic survey: determinism, structure, labels, noise model and physics."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import erf
from scipy.stats import spearmanr

from serendip.datasets import ANOMALY_SUBKINDS, SPPIXMASK, make_survey
from serendip.datasets import physics as ph
from serendip.spectra.lines import LINES


@pytest.fixture(scope="module")
def survey():
    return make_survey(400, seed=11, progress=False)


def test_deterministic_for_a_seed():
    a = make_survey(40, seed=5, progress=False)
    b = make_survey(40, seed=5, progress=False)
    c = make_survey(40, seed=6, progress=False)
    np.testing.assert_array_equal(a.spectra.flux, b.spectra.flux)
    np.testing.assert_array_equal(a.spectra.ivar, b.spectra.ivar)
    np.testing.assert_array_equal(a.spectra.flags, b.spectra.flags)
    assert list(a.truth["anomaly_subkind"]) == list(b.truth["anomaly_subkind"])
    np.testing.assert_array_equal(a.truth["sequence_param"], b.truth["sequence_param"])
    assert not np.array_equal(a.spectra.flux, c.spectra.flux)


def test_shapes_dtypes_and_grid(survey):
    s = survey.spectra
    loglam = np.log10(s.wavelength.value)
    assert s.flux.dtype == np.float32 and s.ivar.dtype == np.float32
    assert s.flux.shape == (400, 3841) == s.ivar.shape == survey.model.shape
    assert loglam[0] == pytest.approx(3.58, abs=1e-9) and loglam[-1] == pytest.approx(3.964, abs=1e-9)
    np.testing.assert_allclose(np.diff(loglam), 1e-4, rtol=1e-6)
    assert np.all(np.isfinite(s.flux)) and np.all(s.ivar >= 0)
    np.testing.assert_array_equal(s.mask, s.ivar == 0)
    for col in ("id", "ra", "dec", "z", "z_err", "class", "subclass", "snr", "plate", "mjd", "fiberid"):
        assert col in s.meta.colnames, col
    assert set(s.meta["class"]) == {"GALAXY"}
    assert len(set(s.meta["id"])) == 400
    assert list(survey.truth["id"]) == list(s.meta["id"])
    keys = {(p, m, f) for p, m, f in zip(s.meta["plate"], s.meta["mjd"], s.meta["fiberid"])}
    assert len(keys) == 400
    assert np.all((s.meta["fiberid"] >= 1) & (s.meta["fiberid"] <= 640))
    assert survey.meta["parameters"]["seed"] == 11 and "serendip_version" in survey.meta


def test_all_kinds_and_subkinds_are_labelled(survey):
    t = survey.truth
    kinds = np.asarray(t["anomaly_kind"])
    subs = np.asarray(t["anomaly_subkind"])
    assert set(kinds) == {"normal", "bad", "misclassified", "tail", "unknown"}
    for kind, subkinds in ANOMALY_SUBKINDS.items():
        assert set(subs[kinds == kind]) == set(subkinds), kind
    np.testing.assert_array_equal(t["is_anomaly"], kinds != "normal")
    assert np.all(subs[kinds == "normal"] == "normal")
    seq = np.asarray(t["sequence_param"], dtype=float)
    np.testing.assert_array_equal(np.isnan(seq), kinds == "misclassified")
    assert np.nanmin(seq) >= 0 and np.nanmax(seq) <= 1
    assert 0.025 < t["is_anomaly"].mean() < 0.06


def test_anomaly_fraction_zero_and_bad_arguments():
    s = make_survey(30, seed=1, anomaly_fraction=0.0, progress=False)
    assert not s.truth["is_anomaly"].any()
    with pytest.raises(ValueError, match="anomaly_fraction"):
        make_survey(10, anomaly_fraction=1.5, progress=False)
    with pytest.raises(ValueError, match="n must be"):
        make_survey(0, progress=False)


def test_noise_is_consistent_with_ivar(survey):
    normal = np.asarray(survey.truth["anomaly_kind"]) == "normal"
    s = survey.spectra
    good = (s.ivar > 0) & normal[:, None]
    chi = ((s.flux - survey.model) * np.sqrt(s.ivar))[good]
    assert abs(np.mean(chi**2) - 1.0) < 0.02
    assert abs(np.mean(chi)) < 0.01
    # and the noise is wavelength dependent (blue end noisier than the middle)
    sig = 1 / np.sqrt(np.where(s.ivar > 0, s.ivar, np.nan))
    rel = sig / np.maximum(survey.model, 1e-3)
    w = s.wavelength.value
    assert np.nanmedian(rel[normal][:, w < 3900]) > 1.5 * np.nanmedian(rel[normal][:, (w > 5000) & (w < 5500)])


def test_snr_spread_like_sdss(survey):
    snr = np.asarray(survey.spectra.meta["snr"])
    assert 8 < np.median(snr) < 12
    assert snr.min() > 1.5 and snr.max() < 45
    assert np.percentile(snr, 5) < 5 and np.percentile(snr, 95) > 18


def test_masked_pixels_carry_sdss_bits(survey):
    s = survey.spectra
    w = s.wavelength.value
    flags = s.flags
    zero = s.ivar == 0
    # every masked pixel says why
    assert np.all(flags[zero] != 0)
    core = np.abs(w - 5578.9) < 2.0
    assert np.all(zero[:, core])
    assert np.all(flags[:, core] & (1 << SPPIXMASK["BRIGHTSKY"]))
    nodata = (flags & (1 << SPPIXMASK["NODATA"])) != 0
    assert nodata.any() and np.all(zero[nodata]) and np.all(s.flux[nodata] == 0)
    full = (flags & (1 << SPPIXMASK["FULLREJECT"])) != 0
    assert full.any() and np.all(zero[full])
    assert 0.001 < zero.mean() < 0.05
    # or_mask contains and_mask
    assert np.all((survey.or_mask & flags.astype(np.int32)) == flags.astype(np.int32))


def _d4000(wave_rest, flux, ivar):
    """Narrow 4000 Å break (Balogh et al. 1999): <F_nu>(4000-4100) / <F_nu>(3850-3950)."""
    fnu = flux * wave_rest**2
    good = ivar > 0
    red = (wave_rest > 4000) & (wave_rest < 4100) & good
    blue = (wave_rest > 3850) & (wave_rest < 3950) & good
    return fnu[red].mean() / fnu[blue].mean()


def test_hidden_parameter_orders_the_4000A_break(survey):
    t = survey.truth
    normal = np.flatnonzero(np.asarray(t["anomaly_kind"]) == "normal")
    w = survey.spectra.wavelength.value
    d4000 = [_d4000(w / (1 + t["z"][i]), survey.spectra.flux[i], survey.spectra.ivar[i]) for i in normal]
    rho = spearmanr(np.asarray(t["sequence_param"])[normal], d4000).statistic
    assert rho > 0.9
    # and the emission gets weaker along the sequence
    rho_ew = spearmanr(np.asarray(t["sequence_param"])[normal], np.asarray(t["ew_halpha"])[normal]).statistic
    assert rho_ew < -0.9


def _line_peak(wave, resid, lam):
    j = int(np.argmin(np.abs(wave - lam)))
    win = slice(j - 3, j + 4)
    k = j - 3 + int(np.argmax(resid[win]))
    y0, y1, y2 = resid[k - 1], resid[k], resid[k + 1]
    shift = 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)
    return np.interp(k + shift, np.arange(wave.size), wave)


def test_emission_lines_land_at_redshifted_rest_wavelengths(survey):
    t = survey.truth
    w = survey.spectra.wavelength.value
    sel = np.flatnonzero((np.asarray(t["anomaly_kind"]) == "normal") & (np.asarray(t["sequence_param"]) < 0.3))
    assert sel.size > 20
    from scipy.ndimage import median_filter

    offsets = []
    for i in sel[:30]:
        model = survey.model[i].astype(float)
        resid = model - median_filter(model, 41)
        for name in ("Hα", "[O III] 5007", "Hβ"):
            lam = LINES[name] * (1 + t["z"][i])
            if w[10] < lam < w[-10]:
                offsets.append(_line_peak(w, resid, lam) - lam)
    offsets = np.asarray(offsets)
    assert np.max(np.abs(offsets)) < 0.5  # Å; a pixel is ~1-2 Å


def test_add_gaussians_matches_brute_force(rng):
    loglam = ph.sdss_loglam_grid(3.6, 3.7)
    out = np.zeros((3, loglam.size))
    rows = np.array([0, 0, 2, 1])
    cen = np.array([3.62, 3.6203, 3.65, 3.6001])
    sig = np.array([1.5e-4, 3e-4, 8e-4, 2e-4])
    amp = np.array([10.0, 5.0, 20.0, 3.0])
    ph.add_gaussians(out, loglam, rows, cen, sig, amp, integrated=True)
    # plain version: every pixel, pixel-integrated Gaussian divided by the pixel width in Å
    ref = np.zeros_like(out)
    edges = np.concatenate([loglam - 0.5e-4, [loglam[-1] + 0.5e-4]])
    width = 10 ** loglam * np.log(10) * 1e-4
    for r, c, s_, a in zip(rows, cen, sig, amp):
        cdf = 0.5 * (1 + erf((edges - c) / (np.sqrt(2) * s_)))
        ref[r] += a * np.diff(cdf) / width
    # the fast path truncates each Gaussian at 5 sigma (tail mass < 1e-6)
    np.testing.assert_allclose(out, ref, atol=1e-5 * amp.max())
    # integrated flux is the amplitude for lines well inside the grid
    assert (out[2] * width).sum() == pytest.approx(20.0, rel=1e-6)


def test_calzetti_curve():
    assert ph.calzetti_k(5500.0) == pytest.approx(4.05, abs=0.02)
    # the two branches meet at 0.63 micron, and the curve falls with wavelength
    assert abs(ph.calzetti_k(6299.0) - ph.calzetti_k(6301.0)) < 0.05
    w = np.linspace(3000, 9000, 50)
    assert np.all(np.diff(ph.calzetti_k(w)) < 0)


def test_planted_anomalies_look_as_documented(survey):
    t = survey.truth
    s = survey.spectra
    subs = np.asarray(t["anomaly_subkind"])
    i = np.flatnonzero(subs == "dead_run")[0]
    zero_run = (s.flux[i] == 0) & (s.ivar[i] > 0)
    assert zero_run.sum() >= 60  # unflagged: ivar is ordinary
    i = np.flatnonzero(subs == "flux_jump")[0]
    w = s.wavelength.value
    ok = s.ivar[i] > 0
    ratio_red = np.median((s.flux[i] / survey.model[i])[ok & (w > 6300)])
    ratio_blue = np.median((s.flux[i] / survey.model[i])[ok & (w < 5700)])
    assert abs(ratio_red / ratio_blue - 1) > 0.15
    for star in ("m_dwarf", "a_star"):
        assert abs(t["z"][np.flatnonzero(subs == star)[0]]) < 2e-3
    assert t["z"][np.flatnonzero(subs == "qso")[0]] > 0.12
    i = np.flatnonzero(subs == "post_starburst")[0]
    assert t["ew_halpha"][i] < 1.0 and t["w_inter"][i] >= 0.4
    i = np.flatnonzero(subs == "very_dusty")[0]
    normal = np.asarray(t["anomaly_kind"]) == "normal"
    assert t["ebv"][i] > np.max(np.asarray(t["ebv"])[normal])
    i = np.flatnonzero(subs == "spikes")[0]
    chi = (s.flux[i] - survey.model[i]) * np.sqrt(s.ivar[i])
    assert 6 < chi.max() < 200  # visible, not absurd


def test_tail_and_sky_residual_anomalies_are_what_the_docs_say(survey):
    """extreme_lines were 4-8x their own EW (11 % inside the normal range); sky_residual added a
    smooth continuum offset whenever the object's sky scale was not 1."""
    import importlib

    sv = importlib.import_module("serendip.datasets.survey")
    t = survey.truth
    subs = np.asarray(t["anomaly_subkind"])
    normal = np.asarray(t["anomaly_kind"]) == "normal"
    ew = np.asarray(t["ew_halpha"])
    assert ew[normal].max() < sv.EW_HALPHA_NORMAL_MAX * 1.2
    assert np.all(ew[subs == "extreme_lines"] >= 4 * sv.EW_HALPHA_NORMAL_MAX)
    wave = survey.spectra.wavelength.value
    sky = ph.sky_spectrum(wave)
    line_free = (sky - sv._sky_continuum(wave)) < 1e-3 * sky.max()
    assert line_free.sum() > 100
    for scale in (0.56, 1.4):
        flux = np.zeros(wave.size)
        sv._apply_bad(np.random.default_rng(0), "sky_residual", flux, np.ones(wave.size), np.ones(wave.size), wave,
                      sky, scale, {"sky_res": 0.2})
        assert np.max(np.abs(flux[line_free])) < 1e-3 * np.max(np.abs(flux))  # lines only, no offset
        assert np.max(flux) > 0
