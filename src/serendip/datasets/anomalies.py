"""The planted anomalies of the synthetic survey: kinds, sub-kinds and how each is made.

Four kinds, after the taxonomy of anomalies in large surveys:

**bad** (instrument or pipeline problems the pipeline did not flag)
    ``spikes``: 2-6 cosmic-ray-like spikes, 1-2 pixels, 6-15 σ plus ½-1× the continuum;
    ``dead_run``: a run of 60-250 pixels reading zero, with ordinary ivar and no flag;
    ``flux_jump``: the red camera (λ > 6000 Å) mis-scaled by ×0.65-0.8 or ×1.25-1.5;
    ``sky_residual``: night-sky lines left over at ±8-20 % of the sky (poor subtraction).
**misclassified** (catalogued as GALAXY)
    ``m_dwarf``: an M dwarf (3000-3600 K, TiO bands) at z ≈ 0;
    ``a_star``: an A star (8000-10000 K, strong broad Balmer absorption) at z ≈ 0;
    ``qso``: a quasar (power law, broad Balmer and Mg II lines, narrow [O III]) at
    0.12 < z < 0.45, with 15-40 % host-galaxy light.
**tail** (the normal physics pushed beyond the normal range)
    ``extreme_lines``: Hα equivalent width 4-8× the normal maximum, higher [O III]/Hβ;
    ``very_dusty``: E(B−V) 0.7-1.0 (the normal population stays below ≈ 0.45);
    ``very_old``: a purely old population, super-solar metallicity, σ_v 330-400 km/s;
    ``very_young``: a purely young population, no dust, metal-poor gas.
**unknown** (combinations the normal population never shows)
    ``double_peaked``: every narrow line split in two, 300-600 km/s apart;
    ``post_starburst``: E+A, strong A-star Balmer absorption and no emission lines;
    ``outflow``: broad (σ 300-600 km/s) wings blue-shifted by 250-600 km/s;
    ``background_emitter``: [O II], Hβ, [O III] of a second galaxy at higher z (lens-like).

Amplitudes are chosen so that each is visible to a careful eye but not
absurd: bad-data effects are comparable to the galaxy signal, not thousands
of σ.
"""
from __future__ import annotations

import numpy as np

from ..spectra.lines import LINES
from .physics import BALMER, TIO_BANDS, calzetti_k, planck_shape

__all__ = ["ANOMALY_KINDS", "ANOMALY_SUBKINDS", "all_subkinds", "star_model", "qso_model"]

#: kind -> its sub-kinds, in a fixed order.
ANOMALY_SUBKINDS: dict[str, tuple[str, ...]] = {
    "bad": ("spikes", "dead_run", "flux_jump", "sky_residual"),
    "misclassified": ("m_dwarf", "a_star", "qso"),
    "tail": ("extreme_lines", "very_dusty", "very_old", "very_young"),
    "unknown": ("double_peaked", "post_starburst", "outflow", "background_emitter"),
}
#: The four anomaly kinds; ``"normal"`` marks everything else.
ANOMALY_KINDS = tuple(ANOMALY_SUBKINDS)


def all_subkinds() -> list[tuple[str, str]]:
    """Every (kind, sub-kind) pair, in a fixed order."""
    return [(k, s) for k, subs in ANOMALY_SUBKINDS.items() for s in subs]


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def star_model(wave_obs: np.ndarray, kind: str, temperature: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Noiseless stellar spectra (normalised to median 1) on the observed grid.

    Parameters
    ----------
    wave_obs : ndarray (M,)
        Observed vacuum wavelengths (Å).
    kind : {"m_dwarf", "a_star"}
    temperature, z : ndarray (K,)
        Effective temperature (K) and (tiny) radial-velocity redshift of each star.
    """
    rest = wave_obs[None, :] / (1.0 + z[:, None])
    temp = temperature[:, None]
    flux = planck_shape(rest, temp)
    if kind == "m_dwarf":
        for head, end, depth in TIO_BANDS:
            band = _sigmoid((rest - head) / 2.0) * _sigmoid((end - rest) / 60.0)
            flux = flux * (1.0 - depth * band)
        for lam, sig, depth in ((LINES["Na D"], 4.0, 0.25), (8200.0, 4.0, 0.2), (LINES["Ca K"], 4.0, 0.3)):
            flux = flux * (1.0 - depth * np.exp(-0.5 * ((rest - lam) / sig) ** 2))
    elif kind == "a_star":
        flux = flux * (0.55 + 0.45 * _sigmoid((rest - 3646.0) / 12.0))
        for lam in BALMER.values():
            flux = flux * (1.0 - 0.45 * np.exp(-0.5 * ((rest - lam) / 22.0) ** 2)
                           - 0.25 * np.exp(-0.5 * ((rest - lam) / 6.0) ** 2))
        flux = flux * (1.0 - 0.12 * np.exp(-0.5 * ((rest - LINES["Ca K"]) / 3.0) ** 2))
    else:  # pragma: no cover - internal
        raise ValueError(f"unknown star kind {kind!r}")
    return flux / np.median(flux, axis=1, keepdims=True)


def qso_model(wave_obs: np.ndarray, z: np.ndarray, alpha: np.ndarray, fwhm_kms: np.ndarray,
              host_fraction: np.ndarray, host_spectrum: np.ndarray) -> np.ndarray:
    """Noiseless low-redshift quasar spectra (median 1) on the observed grid.

    A power law F_λ ∝ λ^α, broad Hα/Hβ/Hγ/Hδ and Mg II (FWHM ``fwhm_kms``),
    narrow [O III] and [O II], plus a fraction ``host_fraction`` of host-galaxy
    light (``host_spectrum``, rows normalised to median 1).
    """
    rest = wave_obs[None, :] / (1.0 + z[:, None])
    cont = (rest / 5100.0) ** alpha[:, None]
    sig_broad = fwhm_kms[:, None] / 2.3548 / 299792.458
    lines = np.zeros_like(cont)
    c5100 = 1.0  # continuum at 5100 Å rest by construction
    # (rest wavelength, rest EW in Å, broad?)
    for lam, ew, broad in ((LINES["Hα"], 350.0, True), (LINES["Hβ"], 90.0, True), (LINES["Hγ"], 35.0, True),
                           (LINES["Hδ"], 15.0, True), (LINES["Mg II"], 60.0, True),
                           (LINES["[O III] 5007"], 25.0, False), (LINES["[O III] 4959"], 8.4, False),
                           (LINES["[O II] 3727"], 3.0, False), (LINES["[Ne III]"], 2.0, False)):
        cont_at = (lam / 5100.0) ** alpha[:, None] * c5100
        sig = sig_broad * lam if broad else (250.0 / 299792.458) * lam
        lines += ew * cont_at * np.exp(-0.5 * ((rest - lam) / sig) ** 2) / (np.sqrt(2 * np.pi) * sig)
    agn = cont + lines
    agn = agn / np.median(agn, axis=1, keepdims=True)
    host = host_spectrum / np.median(host_spectrum, axis=1, keepdims=True)
    f = host_fraction[:, None]
    return (1.0 - f) * agn + f * host


def dust_attenuation(rest_wave: np.ndarray, ebv: np.ndarray) -> np.ndarray:
    """10^(−0.4 E(B−V) k(λ)) with the Calzetti curve; ``ebv`` broadcasts against ``rest_wave``."""
    return 10.0 ** (-0.4 * ebv * calzetti_k(rest_wave))
