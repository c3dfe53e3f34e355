"""Real SDSS spectra: after masking, de-redshifting and resampling, the lines sit at their rest wavelengths.

Wavelengths are vacuum throughout (SDSS ``loglam`` is vacuum), so Hα is at
6564.61 Å, not the 6562.8 Å of air-wavelength tables; the issue's "6563 ± 5 Å"
is met either way, and we test against the vacuum value, which is the stricter
reading for a pipeline that never converts to air.
"""
from __future__ import annotations

import numpy as np
from astropy.table import Table
from scipy.ndimage import gaussian_filter1d
from scipy.optimize import curve_fit

from serendip.spectra import LINES
from serendip.spectra.io import read_spectra
from serendip.spectra.preprocess import deredshift, mask_pixels
from serendip.spectra.resample import make_grid, resample

GRID = make_grid("log", 1000.0, 9500.0, step=1e-4)

# Broad-line choice for each QSO: Lyα when covered (z ≳ 2.1, the strongest line in the optical),
# else Mg II, else Hβ, in that order, each needing ±160 Å of usable pixels around it.
QSO_LINES = (("Lyα", LINES["Lyα"]), ("Mg II", LINES["Mg II"]), ("Hβ", LINES["Hβ"]))


def _rest(path):
    s = mask_pixels(read_spectra(path))
    return s, resample(deredshift(s), GRID)


def gaussian_centre(w, flux, ivar, good, rest, half=150.0):
    """Centre (Å) and its 1σ error of a Gaussian + linear-continuum fit within ±half Å of ``rest``."""
    sel = good & (np.abs(w - rest) < half)
    x, y, sig = w[sel] - rest, flux[sel], 1 / np.sqrt(ivar[sel])

    def model(x, a, b, amp, c, s):
        return a + b * x + amp * np.exp(-0.5 * ((x - c) / s) ** 2)

    a0 = np.median(y[np.abs(x) > 80])
    p, cov = curve_fit(model, x, y, p0=[a0, 0, max(np.max(y) - a0, 1e-3), 0, 20], sigma=sig,
                       bounds=([-np.inf, -np.inf, 0, -100, 3], [np.inf, np.inf, np.inf, 100, 120]), maxfev=20000)
    return rest + p[3], float(np.sqrt(cov[3, 3]))


def lya_peak(w, flux, good, rest, half=30.0):
    """Lyα: the forest eats its blue wing and N V blends into its red one, so a symmetric fit is biased;
    use the peak of the lightly smoothed flux instead (the usual Lyα redshift indicator)."""
    smooth = gaussian_filter1d(np.interp(w, w[good], flux[good]), 3)
    sel = good & (np.abs(w - rest) < half)
    return float(w[np.flatnonzero(sel)[np.argmax(smooth[sel])]]), 0.0


def _qso_offsets(files, z_factor=1.0):
    """{id: (line, measured - rest)} for QSOs whose line centre is measurable to better than 5 Å."""
    out = {}
    for f in files:
        s = mask_pixels(read_spectra(f))
        if s.meta["class"][0] != "QSO":
            continue
        s.meta["z"] = (1 + s.meta["z"]) * z_factor - 1
        r = resample(deredshift(s), GRID)
        w, good, flux = r.wavelength.value, ~r.mask[0], r.flux[0].astype(float)
        if good.sum() < 200:
            continue  # nearly fully masked by and_mask (BADFLAT fibre): nothing to measure
        lo, hi = w[good].min(), w[good].max()
        for name, rest in QSO_LINES:
            if lo < rest - 160 and rest + 160 < hi:
                if name == "Lyα":
                    centre, err = lya_peak(w, flux, good, rest)
                else:
                    centre, err = gaussian_centre(w, flux, r.ivar[0].astype(float), good, rest)
                if err < 5.0:
                    out[str(s.ids[0])] = (name, centre - rest)
                break
    return out


def test_qso_broad_lines_at_rest_wavelength(sdss_fits_dir):
    files = sorted(sdss_fits_dir.glob("spec-*.fits"))
    offsets = _qso_offsets(files)
    # 13 QSOs: one is fully BADFLAT-masked, two (S/N ~ 1-2) do not pin their Mg II down to 5 Å
    assert len(offsets) >= 9, offsets
    assert {"Lyα", "Mg II", "Hβ"} <= {v[0] for v in offsets.values()}
    for obj, (name, delta) in offsets.items():
        assert abs(delta) <= 10.0, (obj, name, delta)
    # the same measurement with a redshift 1.2 % too high in (1+z) must fail, or the test could catch nothing
    wrong = _qso_offsets(files, z_factor=1.012)
    assert sum(abs(d) > 10 for _, d in wrong.values()) >= 0.8 * len(wrong), wrong


def test_galaxy_halpha_at_rest_wavelength(sdss_fits_dir):
    checked = 0
    for f in sorted(sdss_fits_dir.glob("spec-*.fits")):
        s, r = _rest(f)
        if s.meta["class"][0] != "GALAXY":
            continue
        # select galaxies with Hα emission detected at >= 5 sigma by the SDSS pipeline itself (HDU 3, SPZLINE)
        lines = Table.read(f, hdu=3)
        ha = lines[[str(n).strip() == "H_alpha" for n in lines["LINENAME"]]]
        if len(ha) == 0 or not ha["LINEAREA_ERR"][0] > 0 or ha["LINEAREA"][0] / ha["LINEAREA_ERR"][0] < 5:
            continue
        w, good, flux = r.wavelength.value, ~r.mask[0], r.flux[0]
        rest = LINES["Hα"]
        sel = good & (np.abs(w - rest) < 12)
        k = np.flatnonzero(sel)[np.argmax(flux[sel])]
        assert abs(w[k] - rest) <= 5.0, (s.ids[0], w[k])
        assert abs(w[k] - 6563.0) <= 5.0
        assert flux[k] > flux[k - 3] and flux[k] > flux[k + 3]  # a real peak, not the window edge
        checked += 1
    assert checked >= 2
