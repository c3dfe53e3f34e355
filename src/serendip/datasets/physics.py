"""Smooth, physically motivated ingredients of the synthetic galaxy spectra.

Everything here is vectorised over objects and pixels. Wavelengths are vacuum
Å; the observed grid is the SDSS one, uniform in log10 λ. Nothing in this
module draws random numbers: callers pass every parameter explicitly, so the
survey generator alone controls reproducibility.

The ingredients are deliberately simple analytic stand-ins for stellar
population synthesis, chosen so that each spectral feature responds smoothly
and in the right direction to age, metallicity and dust:

* stellar populations: Planck-like continua (young ≈ 15 000 K, intermediate
  A-star dominated ≈ 8 500 K, old ≈ 4 600 K) with a Balmer break (young and
  intermediate) or a 4000 Å break (old), normalised at 5500 Å;
* absorption features (Ca H&K, CN, G band, Mg b, Fe, Na D, Balmer series)
  whose depths scale with the light fraction of the population that makes
  them and with metallicity, broadened by the velocity dispersion;
* dust: the Calzetti et al. (2000) starburst attenuation curve;
* emission lines: pixel-integrated Gaussians, so line fluxes are exact;
* night sky, throughput and instrumental resolution (``wdisp``) shaped like
  the SDSS spectrographs (two cameras split by a dichroic near 6000 Å).
"""
from __future__ import annotations

import numpy as np
from scipy.special import erf

from ..spectra.lines import LINES

__all__ = [
    "C_KMS", "SDSS_LOGLAM_START", "SDSS_LOGLAM_STOP", "SDSS_LOGLAM_STEP", "sdss_loglam_grid",
    "calzetti_k", "planck_shape", "rest_basis", "add_gaussians", "sky_spectrum", "throughput",
    "wdisp_pixels", "RestBasis", "BALMER", "OLD_FEATURES", "INTERMEDIATE_FEATURES", "YOUNG_FEATURES",
    "TIO_BANDS",
]

C_KMS = 299792.458
SDSS_LOGLAM_START = 3.5800
SDSS_LOGLAM_STOP = 3.9640
SDSS_LOGLAM_STEP = 1e-4
_LN10 = np.log(10.0)

#: Balmer series, vacuum rest wavelengths (Å): Hα … H10.
BALMER = {
    "Hα": LINES["Hα"], "Hβ": LINES["Hβ"], "Hγ": LINES["Hγ"], "Hδ": LINES["Hδ"],
    "Hε": 3971.20, "H8": 3890.17, "H9": 3836.49, "H10": 3798.98,
}

# Absorption features: (rest vacuum wavelength Å, intrinsic Gaussian sigma Å, depth at solar metallicity).
#: Old (≈10 Gyr, K-giant dominated) population: metal lines and the CN band.
OLD_FEATURES = (
    (LINES["Ca K"], 5.0, 0.55), (LINES["Ca H"], 5.0, 0.45), (3883.0, 12.0, 0.18),
    (LINES["G band"], 10.0, 0.25), (4383.0, 5.0, 0.10), (LINES["Mg b"], 9.0, 0.22),
    (5270.0, 6.0, 0.12), (5335.0, 6.0, 0.10), (LINES["Na D"], 5.5, 0.18),
    (LINES["Hβ"], 5.0, 0.06), (LINES["Hα"], 5.0, 0.05),
)
#: Intermediate-age (≈1 Gyr, A-star dominated) population: strong, broad Balmer lines, weak Ca K.
INTERMEDIATE_FEATURES = tuple((w, 16.0, 0.32) for w in BALMER.values()) + (
    (LINES["Ca K"], 4.0, 0.15),)
#: Young (≈100 Myr, B-star dominated) population: weaker Balmer lines.
YOUNG_FEATURES = tuple((w, 12.0, 0.14) for w in BALMER.values())

#: Molecular TiO bands of M dwarfs: (blue band head Å, red end Å, depth). Vacuum, approximate.
TIO_BANDS = (
    (4955.0, 5150.0, 0.35), (5168.0, 5400.0, 0.40), (5449.0, 5700.0, 0.40), (6160.0, 6400.0, 0.55),
    (6653.0, 6900.0, 0.35), (7055.0, 7400.0, 0.65), (7670.0, 8200.0, 0.45), (8434.0, 8700.0, 0.30),
)


def sdss_loglam_grid(start: float = SDSS_LOGLAM_START, stop: float = SDSS_LOGLAM_STOP,
                     step: float = SDSS_LOGLAM_STEP) -> np.ndarray:
    """log10 of vacuum wavelength (Å) from ``start`` to ``stop`` inclusive, uniform ``step``."""
    if step <= 0 or stop <= start:
        raise ValueError(f"need start < stop and step > 0; got {start}, {stop}, {step}")
    n = int(round((stop - start) / step)) + 1
    return start + step * np.arange(n, dtype=np.float64)


def calzetti_k(wave_aa: np.ndarray, r_v: float = 4.05) -> np.ndarray:
    """Calzetti et al. (2000) attenuation curve k(λ) for λ in Å (vacuum≈air here).

    A(λ) = k(λ) E(B−V)_star. Valid 1200 Å–2.2 µm; outside that range the
    polynomial is extended smoothly (linearly in 1/λ at the blue end).
    """
    x = np.asarray(wave_aa, dtype=np.float64) / 1e4  # µm
    x = np.clip(x, 0.12, 2.2)
    inv = 1.0 / x
    blue = 2.659 * (-2.156 + 1.509 * inv - 0.198 * inv**2 + 0.011 * inv**3) + r_v
    red = 2.659 * (-1.857 + 1.040 * inv) + r_v
    return np.where(x < 0.63, blue, red)


def planck_shape(wave_aa: np.ndarray, temperature: float | np.ndarray) -> np.ndarray:
    """Planck F_λ shape λ⁻⁵ / (exp(hc/λkT) − 1), unnormalised (λ in Å, T in K)."""
    hc_k = 1.438777e8  # hc/k in Å·K
    w = np.asarray(wave_aa, dtype=np.float64)
    return w**-5 / np.expm1(hc_k / (w * temperature))


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def rest_basis(rest_wave: np.ndarray) -> dict[str, np.ndarray]:
    """Featureless continua of the stellar populations on a rest-frame grid.

    Returns a dict of arrays, each normalised to 1 at 5500 Å:
    ``young`` (15 000 K with a Balmer break), ``intermediate`` (8 500 K with a
    deeper Balmer break), ``old`` (4 600 K, no break) and ``old_break``, the
    light the 4000 Å break removes from ``old`` (subtract ``b * old_break``
    for a break of strength b; the metallicity-dependent part).
    """
    w = np.asarray(rest_wave, dtype=np.float64)
    balmer_edge = _sigmoid((w - 3646.0) / 15.0)
    young = planck_shape(w, 15000.0) * (0.70 + 0.30 * balmer_edge)
    inter = planck_shape(w, 8500.0) * (0.50 + 0.50 * balmer_edge)
    old = planck_shape(w, 4600.0)
    # The 4000 Å break: line blanketing removes a fraction of the light blueward of ~4000 Å.
    old_break = old * _sigmoid((4000.0 - w) / 18.0)
    return {"young": young / planck_shape(5500.0, 15000.0),
            "intermediate": inter / planck_shape(5500.0, 8500.0),
            "old": old / planck_shape(5500.0, 4600.0),
            "old_break": old_break / planck_shape(5500.0, 4600.0)}


def add_gaussians(out: np.ndarray, loglam: np.ndarray, rows: np.ndarray, center_loglam: np.ndarray,
                  sigma_loglam: np.ndarray, amplitude: np.ndarray, *, integrated: bool = True,
                  nsigma: float = 5.0) -> None:
    """Add Gaussians to rows of ``out`` (in place), each evaluated only in a window around it.

    Parameters
    ----------
    out : ndarray (N, M)
        Target array on the uniform log grid ``loglam``.
    loglam : ndarray (M,)
        Uniform log10-wavelength grid.
    rows : int ndarray (K,)
        Row of ``out`` receiving each Gaussian (rows may repeat).
    center_loglam, sigma_loglam : ndarray (K,)
        Centre and width in log10 λ.
    amplitude : ndarray (K,)
        With ``integrated=True`` the integrated flux (flux density × Å): the
        Gaussian is integrated over each pixel and divided by the pixel width
        in Å, so the sum over pixels of value × width equals the amplitude
        (for a line entirely on the grid). Otherwise the peak value.
    nsigma : float
        Half-width of the evaluation window in units of sigma.
    """
    rows = np.asarray(rows, dtype=np.intp)
    if rows.size == 0:
        return
    n_rows, m = out.shape
    step = loglam[1] - loglam[0]
    c = (np.asarray(center_loglam, dtype=np.float64) - loglam[0]) / step   # pixel units
    s = np.maximum(np.asarray(sigma_loglam, dtype=np.float64) / step, 1e-3)
    amp = np.asarray(amplitude, dtype=np.float64)
    half_each = np.ceil(nsigma * s).astype(np.int64) + 1
    # Bucket by window size (multiples of 8 pixels) so a few broad lines do not widen every window.
    bucket = (half_each + 7) // 8
    acc = np.zeros(n_rows * m)
    for bval in np.unique(bucket):
        sel = np.flatnonzero(bucket == bval)
        offs = np.arange(-8 * bval, 8 * bval + 1)
        chunk = max(1, 2_000_000 // offs.size)
        for start in range(0, sel.size, chunk):
            k = sel[start:start + chunk]
            cc, ss, aa = c[k][:, None], s[k][:, None], amp[k][:, None]
            pix = np.floor(cc).astype(np.intp) + offs[None, :]
            inside = (pix >= 0) & (pix < m)
            if integrated:
                scale = 1.0 / (np.sqrt(2.0) * ss)
                frac = 0.5 * (erf((pix + 0.5 - cc) * scale) - erf((pix - 0.5 - cc) * scale))
                pixc = np.clip(pix, 0, m - 1)
                width_aa = 10.0 ** loglam[pixc] * _LN10 * step
                vals = aa * frac / width_aa
            else:
                vals = aa * np.exp(-0.5 * ((pix - cc) / ss) ** 2)
            flat = (rows[k][:, None] * m + pix)[inside]
            acc += np.bincount(flat, weights=vals[inside], minlength=n_rows * m)
    out += acc.reshape(n_rows, m)


class RestBasis:
    """The population continua and the Calzetti curve tabulated once on a rest-frame log grid.

    Observed-frame values for an object at redshift z are linear
    interpolations on this grid (a fractional pixel shift of log10(1+z)),
    which is much cheaper than re-evaluating the Planck functions per object.
    """

    names = ("young", "intermediate", "old", "old_break")

    def __init__(self, loglam_obs: np.ndarray, z_min: float, z_max: float):
        self.step = float(loglam_obs[1] - loglam_obs[0])
        lo = loglam_obs[0] - np.log10(1.0 + z_max) - 4 * self.step
        hi = loglam_obs[-1] - np.log10(1.0 + min(z_min, 0.0) - 0.01) + 4 * self.step
        self.r0 = lo
        self.loglam = lo + self.step * np.arange(int(np.ceil((hi - lo) / self.step)) + 2)
        wave = 10.0 ** self.loglam
        b = rest_basis(wave)
        self.values = np.ascontiguousarray(np.stack([b[k] for k in self.names] + [calzetti_k(wave)], axis=1))
        self.m = loglam_obs.size
        self.loglam0 = float(loglam_obs[0])

    def gather(self, z: np.ndarray) -> list[np.ndarray]:
        """Interpolated basis for each object: 5 arrays (n, M): young, intermediate, old, old_break, k(λ)."""
        u = (self.loglam0 - np.log10(1.0 + np.asarray(z, dtype=np.float64)) - self.r0) / self.step
        i0 = np.floor(u).astype(np.intp)
        f = (u - i0)[:, None]
        out = []
        for k in range(self.values.shape[1]):
            # each object's rest-frame samples are a contiguous slice of the tabulated row
            win = np.lib.stride_tricks.sliding_window_view(self.values[:, k], self.m + 1)[i0]
            out.append(win[:, :-1] * (1.0 - f) + win[:, 1:] * f)
        return out


def sky_spectrum(wave_aa: np.ndarray) -> np.ndarray:
    """A night-sky spectrum (1e-17 erg/s/cm²/Å per fibre) at observed vacuum wavelengths.

    A smooth continuum rising to the red, the [O I] 5578/6302/6365 and Na D
    lines, and an OH-like forest redward of 6800 Å. The OH line list is a
    fixed pseudo-random draw (not a real line list), identical for every call.
    """
    w = np.asarray(wave_aa, dtype=np.float64)
    sky = 2.0 + 3.0 * ((w - 3800.0) / 5400.0) ** 2
    lines = [(5578.9, 2.8, 250.0), (5891.6, 2.8, 25.0), (5897.6, 2.8, 18.0),
             (6302.0, 2.8, 60.0), (6365.5, 2.8, 20.0)]
    oh_rng = np.random.default_rng(20260101)
    oh_w = np.sort(oh_rng.uniform(6800.0, 9250.0, 140))
    oh_a = 15.0 * oh_rng.pareto(1.6, oh_w.size) + 8.0
    oh_a *= 1.0 + 1.5 * (oh_w > 7700)
    lines += [(a, 2.8, b) for a, b in zip(oh_w, np.minimum(oh_a, 400.0))]
    for lam, sig, peak in lines:
        sky = sky + peak * np.exp(-0.5 * ((w - lam) / sig) ** 2)
    return sky


def throughput(wave_aa: np.ndarray) -> np.ndarray:
    """Relative end-to-end throughput of an SDSS-like two-camera spectrograph (peak ≈ 1).

    Falls off below 4000 Å and above 8500 Å and dips at the dichroic (≈ 6000 Å).
    """
    w = np.asarray(wave_aa, dtype=np.float64)
    blue = _sigmoid((w - 3950.0) / 130.0)
    red = _sigmoid((9000.0 - w) / 250.0)
    dichroic = 1.0 - 0.45 * np.exp(-0.5 * ((w - 6000.0) / 60.0) ** 2)
    return np.clip(0.08 + 0.92 * blue * red * dichroic, 0.02, 1.0)


def wdisp_pixels(wave_aa: np.ndarray) -> np.ndarray:
    """Instrumental dispersion (Gaussian sigma) in units of 1e-4 dex pixels, like SDSS ``wdisp``."""
    w = np.asarray(wave_aa, dtype=np.float64)
    blue = 1.25 - 0.35 * (w - 3800.0) / 2200.0
    red = 1.15 - 0.30 * (w - 5900.0) / 3300.0
    return np.where(w < 6000.0, blue, red)
