"""`make_survey`: a built-in synthetic SDSS-like galaxy survey with planted anomalies.

The survey is the default data of the demo. Spectra are generated in the
observed frame on the SDSS grid (log10 λ from 3.5800 to 3.9640 in steps of
1e-4, vacuum Å, 3841 pixels) in SDSS flux units (1e-17 erg/s/cm²/Å).

The normal population
---------------------
One hidden continuous parameter, ``sequence_param`` = t ∈ [0, 1], orders the
normal galaxies from young, star-forming, dusty and metal-poor (t = 0) to old,
quiescent, dust-free and metal-rich (t = 1). Every ingredient varies smoothly
with t (plus small independent scatter):

* light fractions at 5500 Å: young ∝ (1−t)², intermediate ∝ 1.2 t(1−t), old ∝ t²;
* metallicity: [Z/H] = −0.45 + 0.65 t (± 0.07);
* dust: E(B−V)_star = 0.03 + 0.3 (1−t)^1.5 (± 0.03), Calzetti curve; the gas
  sees E(B−V)_star / 0.44;
* velocity dispersion: σ_v = 70 + 170 t km/s (± 12);
* Hα equivalent width: 110 exp(−t / 0.22) Å (± 0.1 dex);
* line ratios: log [N II]6583/Hα = −0.8 + 0.75 t; log [O III]5007/Hβ =
  0.35 − 1.6 t + 1.1 t²; Hα/Hβ = 2.86 before dust (Hγ/Hβ 0.468, Hδ/Hβ 0.259);
  [O II]3727+3729/Hβ = 10^(0.45 − 0.35 t); [S II]6716+6731/Hα = 10^(−0.62 + 0.3 t)
  with 6716/6731 = 1.4; [O III] 5007/4959 = 2.98; [N II] 6583/6548 = 3.05;
  [O I]6300/Hα = 0.03 + 0.07 t.

So the 4000 Å break, the metal lines, the colour and the emission lines all
track t. Redshifts follow 0.02 + Γ(3, 0.03) within ``z_range``; the target
median S/N per pixel is log-normal (median ``snr_median``, clipped to 2-40).

Noise and masks
---------------
The noise is Gaussian with σ² ∝ (object + sky) / throughput (an SDSS-like
two-camera throughput with a dichroic dip near 6000 Å), scaled per object to
its target S/N; ``ivar = 1/σ²`` exactly, so (flux − model)·√ivar is standard
normal. Masked pixels carry SDSS ``and_mask`` bits (SPPIXMASK):

* ``BRIGHTSKY`` (bit 23) on pixels under the brightest sky lines; the 5578 Å
  [O I] core (±3 Å) also gets ``ivar = 0``;
* ``NODATA`` (bit 24) with ``ivar = 0`` and flux 0 at the ends of ≈40 % / 30 %
  of the spectra (1-25 / 1-40 pixels);
* ``FULLREJECT`` (bit 18) with ``ivar = 0`` on a 3-25 pixel run in 5 % of the
  spectra, ``NEARBADPIXEL`` (bit 16) on the 2 pixels either side;
* ``or_mask`` adds ``PARTIALREJECT`` (bit 19) on a few random pixels.

The planted anomalies are described in :mod:`serendip.datasets.anomalies`.
Bad-data anomalies are *not* flagged: they model problems the pipeline missed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from astropy.table import Table

from .._logging import get_logger
from .._logging import progress as _progress_bar
from .._version import __version__
from ..spectra.container import Spectra
from ..spectra.lines import LINES
from . import physics as ph
from .anomalies import ANOMALY_SUBKINDS, all_subkinds, dust_attenuation, qso_model, star_model

__all__ = ["SyntheticSurvey", "make_survey", "SPPIXMASK"]

log = get_logger(__name__)

#: SDSS SPPIXMASK bits used by the synthetic survey (name -> bit number).
SPPIXMASK = {"NOPLUG": 0, "NEARBADPIXEL": 16, "FULLREJECT": 18, "PARTIALREJECT": 19,
             "BRIGHTSKY": 23, "NODATA": 24, "COMBINEREJ": 25}

_BLOCK = 256                       # objects generated per block (bounds memory)
_SKY_BRIGHT = 60.0                 # sky-line flux above the sky continuum that earns BRIGHTSKY
_BALMER_DEC = {"Hα": 2.86, "Hβ": 1.0, "Hγ": 0.468, "Hδ": 0.259}


@dataclass
class SyntheticSurvey:
    """A synthetic survey: observed spectra, their noiseless models and the truth.

    Attributes
    ----------
    spectra : Spectra
        Noisy observed-frame spectra on the SDSS grid; ``flags`` is the SDSS
        ``and_mask``; ``meta`` has id, ra, dec, z, z_err, zwarning, class,
        subclass, snr (measured median S/N per good pixel), plate, mjd,
        fiberid, source_file.
    truth : astropy Table
        One row per object, same order: id, z (true redshift), sequence_param
        (the hidden ordering parameter of the normal population; NaN for
        misclassified objects), is_anomaly, anomaly_kind (``"normal"``,
        ``"bad"``, ``"misclassified"``, ``"tail"``, ``"unknown"``),
        anomaly_subkind (``"normal"`` for normal objects), and the physical parameters (age fractions,
        metallicity, ebv, sigma_v, ew_halpha, target snr, sky_scale).
    model : ndarray (N, M) float32
        The noiseless spectra (before bad-data effects and noise).
    or_mask : ndarray (N, M) int32
        SDSS ``or_mask`` (``and_mask`` plus PARTIALREJECT pixels).
    sky : ndarray (M,) float32
        Sky spectrum per unit ``truth['sky_scale']``.
    wdisp : ndarray (M,) float32
        Instrumental dispersion in pixels (SDSS ``wdisp``).
    meta : dict
        Provenance: generator, serendip version, seed and every parameter.
    """

    spectra: Spectra
    truth: Table
    model: np.ndarray
    or_mask: np.ndarray
    sky: np.ndarray
    wdisp: np.ndarray
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.spectra)

    @property
    def loglam(self) -> np.ndarray:
        """log10 of the observed vacuum wavelength grid (Å)."""
        return np.log10(self.spectra.wavelength.value)

    def __repr__(self) -> str:
        kinds = dict(zip(*np.unique(np.asarray(self.truth["anomaly_kind"]), return_counts=True)))
        return f"<SyntheticSurvey: {len(self)} spectra, {self.spectra.n_pixels} px, kinds {kinds}>"


# --------------------------------------------------------------------------- parameters
def _draw_redshifts(rng, n, z_range):
    lo, hi = z_range
    z = lo + rng.gamma(3.0, 0.03, n)
    bad = (z > hi)
    z[bad] = rng.uniform(lo, hi, bad.sum())
    return z


def _normal_params(rng, n, t):
    """Physical parameters of normal galaxies as smooth functions of t plus scatter."""
    y, i, o = (1 - t) ** 2, 1.2 * t * (1 - t), t**2
    s = y + i + o
    p = {
        "w_young": y / s, "w_inter": i / s, "w_old": o / s,
        "metallicity": -0.45 + 0.65 * t + rng.normal(0, 0.07, n),
        "ebv": np.clip(0.03 + 0.30 * (1 - t) ** 1.5 + rng.normal(0, 0.03, n), 0.0, None),
        "sigma_v": np.clip(70 + 170 * t + rng.normal(0, 12, n), 30, None),
        "ew_halpha": 110 * np.exp(-t / 0.22) * 10 ** rng.normal(0, 0.1, n),  # below ~EW_HALPHA_NORMAL_MAX
        "log_n2ha": -0.8 + 0.75 * t + rng.normal(0, 0.05, n),
        "log_o3hb": 0.35 - 1.6 * t + 1.1 * t**2 + rng.normal(0, 0.08, n),
        "log_o2hb": 0.45 - 0.35 * t + rng.normal(0, 0.05, n),
        "log_s2ha": -0.62 + 0.30 * t + rng.normal(0, 0.05, n),
        "sigma_gas": 55 + 40 * t + rng.normal(0, 5, n),
    }
    p["break"] = np.clip(0.38 + 0.25 * p["metallicity"], 0.1, 0.7)
    return p


def _assign_anomalies(rng, n, anomaly_fraction):
    kinds = np.full(n, "normal", dtype=object)
    subkinds = np.full(n, "normal", dtype=object)
    pairs = all_subkinds()
    n_anom = int(round(anomaly_fraction * n))
    if anomaly_fraction > 0 and n >= 4 * len(pairs):
        n_anom = max(n_anom, len(pairs))  # at least one of every sub-kind
    n_anom = min(n_anom, n)
    if n_anom == 0:
        return kinds, subkinds
    # Every sub-kind once (when there is room), then equal shares per kind, round-robin within a kind.
    order = list(pairs) if n_anom >= len(pairs) else []
    counters = {k: (1 if order else 0) for k in ANOMALY_SUBKINDS}
    while len(order) < n_anom:
        for k, subs in ANOMALY_SUBKINDS.items():
            order.append((k, subs[counters[k] % len(subs)]))
            counters[k] += 1
    order = order[:n_anom]
    idx = rng.choice(n, n_anom, replace=False)
    for j, (k, s) in zip(idx, order):
        kinds[j], subkinds[j] = k, s
    return kinds, subkinds


#: The top of the normal galaxies' Hα equivalent width (Å): 110 Å at the youngest age with a
#: 2-sigma (0.2 dex) scatter. ``extreme_lines`` objects get 4-8 times this.
EW_HALPHA_NORMAL_MAX = 110 * 10 ** 0.2


def _apply_param_anomalies(rng, p, t, z, kinds, subkinds, z_range):
    """Modify the physical parameters of tail/unknown objects (in place)."""
    def sel(name):
        return np.flatnonzero(subkinds == name)

    ix = sel("extreme_lines")
    t[ix] = rng.uniform(0.0, 0.3, ix.size)
    p_new = _normal_params(rng, ix.size, t[ix])
    for key in p:
        p[key][ix] = p_new[key]
    # 4-8 x the normal maximum (not x the object's own EW, which left ~11 % inside the normal range)
    p["ew_halpha"][ix] = EW_HALPHA_NORMAL_MAX * rng.uniform(4, 8, ix.size)
    p["log_o3hb"][ix] += 0.3

    ix = sel("very_dusty")
    p["ebv"][ix] = rng.uniform(0.7, 1.0, ix.size)

    ix = sel("very_old")
    t[ix] = rng.uniform(0.95, 1.0, ix.size)
    p["w_young"][ix], p["w_inter"][ix], p["w_old"][ix] = 0.0, 0.0, 1.0
    p["metallicity"][ix] = rng.uniform(0.45, 0.6, ix.size)
    p["break"][ix] = np.clip(0.38 + 0.25 * p["metallicity"][ix] + 0.1, 0.1, 0.8)
    p["sigma_v"][ix] = rng.uniform(330, 400, ix.size)
    p["ew_halpha"][ix] = 0.0
    p["ebv"][ix] = 0.0

    ix = sel("very_young")
    t[ix] = rng.uniform(0.0, 0.05, ix.size)
    p["w_young"][ix], p["w_inter"][ix], p["w_old"][ix] = 1.0, 0.0, 0.0
    p["metallicity"][ix] = -1.1
    p["ebv"][ix] = 0.0
    p["log_o3hb"][ix] = 0.75
    p["log_n2ha"][ix] = -1.5

    ix = sel("double_peaked")
    t[ix] = rng.uniform(0.05, 0.4, ix.size)
    p_new = _normal_params(rng, ix.size, t[ix])
    for key in p:
        p[key][ix] = p_new[key]
    p["ew_halpha"][ix] *= 1.5
    p["sigma_gas"][ix] = rng.uniform(40, 60, ix.size)

    ix = sel("post_starburst")
    t[ix] = rng.uniform(0.7, 1.0, ix.size)
    p_new = _normal_params(rng, ix.size, t[ix])
    for key in p:
        p[key][ix] = p_new[key]
    fa = rng.uniform(0.4, 0.6, ix.size)
    p["w_young"][ix], p["w_inter"][ix], p["w_old"][ix] = 0.0, fa, 1.0 - fa
    p["ew_halpha"][ix] = rng.uniform(0.0, 1.0, ix.size)
    p["ebv"][ix] = rng.uniform(0.0, 0.08, ix.size)

    ix = sel("outflow")
    t[ix] = rng.uniform(0.15, 0.5, ix.size)
    p_new = _normal_params(rng, ix.size, t[ix])
    for key in p:
        p[key][ix] = p_new[key]
    p["log_o3hb"][ix] += 0.3

    ix = sel("background_emitter")
    t[ix] = rng.uniform(0.7, 1.0, ix.size)
    p_new = _normal_params(rng, ix.size, t[ix])
    for key in p:
        p[key][ix] = p_new[key]

    ix = np.flatnonzero(kinds == "misclassified")
    t[ix] = np.nan
    ix = sel("qso")
    z[ix] = rng.uniform(0.12, 0.45, ix.size)
    for name in ("m_dwarf", "a_star"):
        ix = sel(name)
        z[ix] = rng.normal(0.0, 1.5e-4, ix.size)


def _extra_params(rng, n, subkinds, z):
    """Per-object numbers used by individual anomaly sub-kinds (drawn once for all objects)."""
    e = {
        "dp_sep": rng.uniform(300, 600, n),            # double-peaked separation, km/s
        "of_dv": -rng.uniform(250, 600, n),            # outflow velocity offset, km/s
        "of_sig": rng.uniform(300, 600, n),            # outflow dispersion, km/s
        "of_frac": rng.uniform(0.5, 1.0, n),           # outflow / narrow flux
        "bg_z": np.minimum(z + rng.uniform(0.15, 0.5, n), 0.8),
        "bg_ew": rng.uniform(12, 25, n),               # [O III] 5007 flux in units of Å of foreground continuum
        "star_temp": np.where(subkinds == "m_dwarf", rng.uniform(3000, 3600, n), rng.uniform(8000, 10000, n)),
        "qso_alpha": rng.uniform(-1.8, -1.2, n),
        "qso_fwhm": rng.uniform(3000, 6000, n),
        "qso_host": rng.uniform(0.15, 0.4, n),
        "spike_n": rng.integers(2, 7, n),
        "dead_len": rng.integers(60, 251, n),
        "jump": np.where(rng.random(n) < 0.5, rng.uniform(0.65, 0.8, n), rng.uniform(1.25, 1.5, n)),
        "sky_res": np.where(rng.random(n) < 0.5, -1.0, 1.0) * rng.uniform(0.08, 0.2, n),
    }
    return e


# --------------------------------------------------------------------------- spectra
def _component_at(rest_wave, p, rows):
    """Featureless (dust-free) continuum of each population at given rest wavelengths (rows × L)."""
    b = ph.rest_basis(rest_wave)
    wy, wi, wo = (p[k][rows][:, None] for k in ("w_young", "w_inter", "w_old"))
    brk = p["break"][rows][:, None]
    return wy * b["young"], wi * b["intermediate"], wo * (b["old"] - brk * b["old_break"])


def _galaxy_block(loglam, wave, rows, z, p, extra, subkinds, basis):
    """Noiseless galaxy spectra for ``rows`` (observed frame), continuum 1 at 5500 Å rest."""
    nb = rows.size
    zz = z[rows]
    g = basis.gather(zz)
    wy, wi, wo = (p[k][rows][:, None] for k in ("w_young", "w_inter", "w_old"))
    cont = wy * g[0] + wi * g[1] + wo * (g[2] - p["break"][rows][:, None] * g[3])

    # Absorption features: depth weighted by the light fraction of the population that makes them.
    wdisp_loglam = 1e-4 * ph.wdisp_pixels(wave)
    sig_inst_at = lambda lam_obs: np.interp(np.log10(lam_obs), loglam, wdisp_loglam)  # noqa: E731
    a_rows, a_cent, a_sig, a_amp = [], [], [], []
    met_factor = np.clip(1.0 + 0.9 * p["metallicity"][rows], 0.2, None)
    sigv = p["sigma_v"][rows]
    for feats, comp_idx, metal in ((ph.OLD_FEATURES, 2, True), (ph.INTERMEDIATE_FEATURES, 1, False),
                                   (ph.YOUNG_FEATURES, 0, False)):
        lam = np.array([f[0] for f in feats])
        sig_int = np.array([f[1] for f in feats])
        depth = np.array([f[2] for f in feats])
        comps = _component_at(np.broadcast_to(lam, (nb, lam.size)), p, rows)
        frac = comps[comp_idx] / np.maximum(comps[0] + comps[1] + comps[2], 1e-30)
        d = depth[None, :] * frac * (met_factor[:, None] if metal else 1.0)
        sig_rest = np.sqrt(sig_int[None, :] ** 2 + (sigv[:, None] / ph.C_KMS * lam[None, :]) ** 2)
        lam_obs = lam[None, :] * (1 + zz[:, None])
        sig_log = np.sqrt((sig_rest / lam[None, :] / np.log(10)) ** 2 + sig_inst_at(lam_obs) ** 2)
        a_rows.append(np.repeat(np.arange(nb), lam.size))
        a_cent.append(np.log10(lam_obs).ravel())
        a_sig.append(sig_log.ravel())
        a_amp.append(d.ravel())
    absorb = np.zeros((nb, wave.size))
    ph.add_gaussians(absorb, loglam, np.concatenate(a_rows), np.concatenate(a_cent), np.concatenate(a_sig),
                     np.concatenate(a_amp), integrated=False, nsigma=4.0)
    att = 10.0 ** (-0.4 * p["ebv"][rows][:, None] * g[4])
    del g
    att5500 = dust_attenuation(5500.0, p["ebv"][rows])
    stellar = cont * np.clip(1.0 - absorb, 0.05, 1.0) * att / att5500[:, None]

    # Emission lines: Hα flux from its equivalent width on the attenuated continuum.
    lam_ha = LINES["Hα"]
    cy, ci, co = _component_at(np.full((nb, 1), lam_ha), p, rows)
    c_ha = (cy + ci + co)[:, 0] * dust_attenuation(lam_ha, p["ebv"][rows]) / att5500  # rest-frame continuum
    ebv_gas = p["ebv"][rows] / 0.44
    gas_att = lambda lam: dust_attenuation(lam, ebv_gas)  # noqa: E731
    f_ha_obs = p["ew_halpha"][rows] * c_ha                 # in units of (continuum × Å), rest frame
    ha_int = f_ha_obs / gas_att(lam_ha)
    hb_int = ha_int / _BALMER_DEC["Hα"]
    o3 = hb_int * 10 ** p["log_o3hb"][rows]
    n2 = ha_int * 10 ** p["log_n2ha"][rows]
    o2 = hb_int * 10 ** p["log_o2hb"][rows]
    s2 = ha_int * 10 ** p["log_s2ha"][rows]
    tt = np.clip((p["log_n2ha"][rows] + 0.8) / 0.75, 0, 1)
    intrinsic = {
        "Hα": ha_int, "Hβ": hb_int, "Hγ": _BALMER_DEC["Hγ"] * hb_int, "Hδ": _BALMER_DEC["Hδ"] * hb_int,
        "[O III] 5007": o3, "[O III] 4959": o3 / 2.98, "[N II] 6583": n2, "[N II] 6548": n2 / 3.05,
        "[O II] 3727": o2 / 2.35, "[O II] 3730": o2 * 1.35 / 2.35,
        "[S II] 6716": s2 * 1.4 / 2.4, "[S II] 6731": s2 / 2.4,
        "[O I]": ha_int * (0.03 + 0.07 * tt), "[Ne III]": 0.1 * o3,
    }
    e_rows, e_cent, e_sig, e_amp = [], [], [], []
    sig_gas = p["sigma_gas"][rows]
    sk = subkinds[rows]
    dp = sk == "double_peaked"
    of = sk == "outflow"
    r_all = np.arange(nb)

    def add_line(lam, flux, z_eff, sig_kms, sel):
        lam_obs = lam * (1 + z_eff[sel])
        s_log = np.sqrt((sig_kms[sel] / ph.C_KMS / np.log(10)) ** 2 + sig_inst_at(lam_obs) ** 2)
        e_rows.append(r_all[sel])
        e_cent.append(np.log10(lam_obs))
        e_sig.append(s_log)
        # rest-frame flux (continuum units × Å) -> observed: the continuum is per observed Å,
        # and an observed line is (1+z) wider, so the integrated flux scales by (1+z).
        e_amp.append(flux[sel] * (1 + z_eff[sel]))

    for name, f_int in intrinsic.items():
        lam = LINES[name]
        f_obs = f_int * gas_att(lam)
        normal = ~dp
        add_line(lam, f_obs, zz, sig_gas, normal)
        if dp.any():
            beta = extra["dp_sep"][rows] / 2 / ph.C_KMS
            add_line(lam, 0.5 * f_obs, (1 + zz) * (1 + beta) - 1, sig_gas, dp)
            add_line(lam, 0.5 * f_obs, (1 + zz) * (1 - beta) - 1, sig_gas, dp)
        if of.any() and name in ("Hα", "Hβ", "[O III] 5007", "[O III] 4959", "[N II] 6583", "[O II] 3727",
                                 "[O II] 3730"):
            beta = extra["of_dv"][rows] / ph.C_KMS
            add_line(lam, extra["of_frac"][rows] * f_obs, (1 + zz) * (1 + beta) - 1, extra["of_sig"][rows], of)
    bg = sk == "background_emitter"
    if bg.any():
        zb = extra["bg_z"][rows]
        # Fluxes relative to the foreground's continuum level near 5500 Å rest (= 1 by construction).
        f5007 = extra["bg_ew"][rows] / (1 + zz)
        for name, ratio in (("[O III] 5007", 1.0), ("[O III] 4959", 1 / 2.98), ("Hβ", 0.35),
                            ("[O II] 3727", 0.35), ("[O II] 3730", 0.45)):
            add_line(LINES[name], ratio * f5007, zb, np.full(nb, 60.0), bg)
    emission = np.zeros((nb, wave.size))
    ph.add_gaussians(emission, loglam, np.concatenate(e_rows), np.concatenate(e_cent),
                     np.concatenate(e_sig), np.concatenate(e_amp), integrated=True)
    return stellar + emission


def _noise_and_masks(rng, model, wave, loglam, snr_target, sky_scale, sky, thr):
    """Per-pixel sigma, masks and flags for one block."""
    nb, m = model.shape
    sky_obj = sky[None, :] * sky_scale[:, None]
    shape = np.sqrt((np.maximum(model, 0.0) + 0.6 * sky_obj + 0.5) / thr[None, :])
    kappa = np.median(np.abs(model) / shape, axis=1) / snr_target
    kappa = np.where(kappa > 0, kappa, 1.0)
    sigma = kappa[:, None] * shape
    and_mask = np.zeros((nb, m), np.int32)
    zero_ivar = np.zeros((nb, m), bool)
    bright = (sky - _sky_continuum(wave)) > _SKY_BRIGHT
    and_mask[:, bright] |= 1 << SPPIXMASK["BRIGHTSKY"]
    core = np.abs(wave - 5578.9) < 3.0
    zero_ivar[:, core] = True
    and_mask[:, core] |= 1 << SPPIXMASK["BRIGHTSKY"]
    # NODATA at the ends
    lo = np.where(rng.random(nb) < 0.4, rng.integers(1, 26, nb), 0)
    hi = np.where(rng.random(nb) < 0.3, rng.integers(1, 41, nb), 0)
    col = np.arange(m)[None, :]
    ends = (col < lo[:, None]) | (col >= m - hi[:, None])
    zero_ivar |= ends
    and_mask[ends] |= 1 << SPPIXMASK["NODATA"]
    # FULLREJECT runs
    has = rng.random(nb) < 0.05
    start = rng.integers(50, m - 80, nb)
    length = rng.integers(3, 26, nb)
    run = has[:, None] & (col >= start[:, None]) & (col < (start + length)[:, None])
    near = has[:, None] & ~run & (col >= (start - 2)[:, None]) & (col < (start + length + 2)[:, None])
    zero_ivar |= run
    and_mask[run] |= 1 << SPPIXMASK["FULLREJECT"]
    and_mask[near] |= 1 << SPPIXMASK["NEARBADPIXEL"]
    or_mask = and_mask.copy()
    partial = rng.random((nb, m)) < 0.003
    or_mask[partial] |= 1 << SPPIXMASK["PARTIALREJECT"]
    return sigma, zero_ivar, ends, and_mask, or_mask


def _row_median_good(values, good):
    """Median of each row over its ``good`` entries (NaN for a row with none); sort-based, vectorised."""
    v = np.where(good, values, np.inf)
    v.sort(axis=1)
    k = good.sum(axis=1)
    lo = np.clip((k - 1) // 2, 0, None)
    hi = np.clip(k // 2, 0, None)
    r = np.arange(v.shape[0])
    med = 0.5 * (v[r, lo] + v[r, np.minimum(hi, v.shape[1] - 1)])
    return np.where(k > 0, med, np.nan)


def _sky_continuum(wave):
    return 2.0 + 3.0 * ((wave - 3800.0) / 5400.0) ** 2


def _apply_bad(rng, sub, flux, sigma, model, wave, sky, sky_scale, extra_row):
    """Instrument/pipeline problems the pipeline did not flag (one object, in place)."""
    m = flux.size
    if sub == "spikes":
        k = int(extra_row["spike_n"])
        pos = rng.choice(np.arange(20, m - 20), k, replace=False)
        for p in pos:
            width = int(rng.integers(1, 3))
            amp = rng.uniform(6, 15) * sigma[p] + rng.uniform(0.5, 1.0) * max(np.median(model), 0.0)
            flux[p:p + width] += amp
    elif sub == "dead_run":
        length = int(extra_row["dead_len"])
        start = int(rng.integers(100, m - length - 100))
        flux[start:start + length] = 0.0
    elif sub == "flux_jump":
        factor = float(extra_row["jump"])
        ramp = 0.5 * (1 + np.tanh((wave - 6000.0) / 15.0))
        scale = 1.0 + (factor - 1.0) * ramp
        flux *= scale
        sigma *= scale
    elif sub == "sky_residual":
        # the lines of this object's sky only: its continuum scales with it (subtracting the unscaled
        # continuum left a smooth offset of (sky_scale - 1) x continuum x sky_res on every pixel)
        lines_only = sky_scale * (sky - _sky_continuum(wave))
        flux += float(extra_row["sky_res"]) * lines_only


def make_survey(n: int = 5000, seed: int = 0, anomaly_fraction: float = 0.03, *,
                z_range: tuple[float, float] = (0.02, 0.25), snr_median: float = 10.0,
                snr_range: tuple[float, float] = (2.0, 40.0),
                loglam_range: tuple[float, float] = (ph.SDSS_LOGLAM_START, ph.SDSS_LOGLAM_STOP),
                progress: bool = True) -> SyntheticSurvey:
    """Generate a synthetic SDSS-like galaxy survey with planted anomalies.

    See the module docstring for the physics and :mod:`serendip.datasets.anomalies`
    for the anomaly sub-kinds.

    Parameters
    ----------
    n : int
        Number of spectra.
    seed : int
        Seed, a non-negative integer; the survey is a deterministic function of (n, seed and the
        other parameters).
    anomaly_fraction : float in [0, 1]
        Fraction of anomalous objects, split equally between the four kinds and
        within a kind between its sub-kinds. When ``anomaly_fraction > 0`` and
        ``n >= 60`` at least one object of each of the 15 sub-kinds is planted,
        even if that exceeds the fraction.
    z_range : (float, float)
        Redshift range of the galaxies (quasars planted as misclassified
        objects have 0.12 < z < 0.45; stars z≈0).
    snr_median, snr_range
        Median and clip range of the target median S/N per pixel.
    loglam_range : (float, float)
        First and last log10 λ of the grid (step 1e-4); the default is the SDSS
        spectrograph range 3.5800-3.9640.
    progress : bool
        Show a progress bar.

    Returns
    -------
    SyntheticSurvey
        ``.spectra`` (observed frame), ``.truth`` (labels and the hidden
        ``sequence_param``), ``.model`` (noiseless), ``.meta`` (provenance).

    Raises
    ------
    ValueError
        If ``n < 1``, ``seed`` is not a non-negative integer, or a fraction or
        range is out of bounds; the message names the argument and its value.
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be at least 1; got {n}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    if not 0.0 <= float(anomaly_fraction) <= 1.0:
        raise ValueError(f"anomaly_fraction must be within [0, 1]; got {anomaly_fraction}")
    if not 0.0 <= z_range[0] < z_range[1] < 1.0:
        raise ValueError(f"z_range must satisfy 0 <= zmin < zmax < 1; got {z_range}")
    if not 0 < snr_range[0] <= snr_median <= snr_range[1]:
        raise ValueError(f"need 0 < snr_range[0] <= snr_median <= snr_range[1]; got {snr_median}, {snr_range}")
    t0 = time.perf_counter()
    loglam = ph.sdss_loglam_grid(*loglam_range)
    wave = 10.0 ** loglam
    m = wave.size
    if m < 1000:
        raise ValueError(f"loglam_range {loglam_range} gives only {m} pixels; the survey needs at least 1000 "
                         "(a range of 0.1 in log10 λ)")
    ss = np.random.SeedSequence(int(seed))
    rng_par, rng_anom, rng_meta = (np.random.default_rng(s) for s in ss.spawn(3))

    t = rng_par.uniform(0.0, 1.0, n)
    z = _draw_redshifts(rng_par, n, z_range)
    snr_target = np.clip(snr_median * np.exp(rng_par.normal(0.0, 0.5, n)), *snr_range)
    amp = np.clip(10 ** rng_par.normal(1.0, 0.2, n) * (0.1 / z) ** 0.7, 1.0, 200.0)
    p = _normal_params(rng_par, n, t)
    kinds, subkinds = _assign_anomalies(rng_anom, n, float(anomaly_fraction))
    z_true = z.copy()
    _apply_param_anomalies(rng_anom, p, t, z_true, kinds, subkinds, z_range)
    extra = _extra_params(rng_anom, n, subkinds, z_true)

    # Plates of 640 fibres, each with a centre and an MJD; fibres unique per plate.
    n_plates = (n + 639) // 640
    plates = np.sort(rng_meta.choice(np.arange(266, 2975), n_plates, replace=False))
    plate_mjd = rng_meta.integers(51600, 54600, n_plates)
    plate_ra = rng_meta.uniform(120.0, 240.0, n_plates)
    plate_dec = np.degrees(np.arcsin(rng_meta.uniform(np.sin(np.radians(-5)), np.sin(np.radians(60)), n_plates)))
    plate_sky = rng_meta.uniform(0.7, 1.4, n_plates)
    which = np.repeat(np.arange(n_plates), 640)[:n]
    fiber = np.concatenate([rng_meta.permutation(640)[: min(640, n - 640 * k)] + 1 for k in range(n_plates)])
    r = 1.49 * np.sqrt(rng_meta.uniform(0, 1, n))
    phi = rng_meta.uniform(0, 2 * np.pi, n)
    dec = np.clip(plate_dec[which] + r * np.sin(phi), -89.9, 89.9)
    ra = (plate_ra[which] + r * np.cos(phi) / np.cos(np.radians(dec))) % 360.0
    sky_scale = plate_sky[which] * np.clip(rng_meta.normal(1.0, 0.05, n), 0.8, 1.2)

    sky = ph.sky_spectrum(wave)
    thr = ph.throughput(wave)
    basis = ph.RestBasis(loglam, float(np.min(z_true)), float(np.max(z_true)))
    model = np.empty((n, m), np.float32)
    flux = np.empty((n, m), np.float32)
    ivar = np.empty((n, m), np.float32)
    and_mask = np.empty((n, m), np.int32)
    or_mask = np.empty((n, m), np.int32)
    snr_meas = np.empty(n)

    blocks = range(0, n, _BLOCK)
    for b0 in _progress_bar(blocks, total=len(blocks), desc="simulating spectra", enabled=progress,
                            unit="block"):
        rows = np.arange(b0, min(n, b0 + _BLOCK))
        block_rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(7, b0 // _BLOCK)))
        mdl = _galaxy_block(loglam, wave, rows, z_true, p, extra, subkinds, basis)
        # misclassified objects replace the galaxy model
        sk = subkinds[rows]
        for name in ("m_dwarf", "a_star"):
            sel = np.flatnonzero(sk == name)
            if sel.size:
                mdl[sel] = star_model(wave, name, extra["star_temp"][rows[sel]], z_true[rows[sel]])
        sel = np.flatnonzero(sk == "qso")
        if sel.size:
            mdl[sel] = qso_model(wave, z_true[rows[sel]], extra["qso_alpha"][rows[sel]],
                                 extra["qso_fwhm"][rows[sel]], extra["qso_host"][rows[sel]], mdl[sel])
        mdl *= amp[rows, None]
        sigma, zero_ivar, ends, am, om = _noise_and_masks(block_rng, mdl, wave, loglam, snr_target[rows],
                                                        sky_scale[rows], sky, thr)
        fl = mdl + sigma * block_rng.standard_normal(mdl.shape)
        for j, r_ in enumerate(rows):
            if kinds[r_] == "bad":
                _apply_bad(block_rng, subkinds[r_], fl[j], sigma[j], mdl[j], wave, sky, float(sky_scale[r_]),
                           {k: v[r_] for k, v in extra.items()})
        iv = 1.0 / sigma**2
        iv[zero_ivar] = 0.0
        fl[ends] = 0.0
        model[rows] = mdl
        flux[rows] = fl
        ivar[rows] = iv
        and_mask[rows] = am
        or_mask[rows] = om
        snr_meas[rows] = _row_median_good(np.abs(fl) * np.sqrt(iv), iv > 0)

    obj_id = np.array([f"spec-{plates[w]:04d}-{plate_mjd[w]:05d}-{f:04d}" for w, f in zip(which, fiber)])
    subclass = _subclass(p, kinds, subkinds)
    z_err = (1.5e-4 / np.maximum(snr_meas, 1.0)) * (1.0 + p["sigma_v"] / 200.0)
    zwarning = np.where(snr_meas < 3.0, 4, 0).astype(np.int32)  # SMALL_DELTA_CHI2 for the faintest
    meta = Table()
    meta["id"] = obj_id
    meta["ra"] = ra
    meta["dec"] = dec
    meta["z"] = z_true.astype(np.float64)
    meta["z_err"] = z_err
    meta["zwarning"] = zwarning
    meta["class"] = np.full(n, "GALAXY")
    meta["subclass"] = subclass
    meta["snr"] = snr_meas
    meta["plate"] = plates[which].astype(np.int32)
    meta["mjd"] = plate_mjd[which].astype(np.int32)
    meta["fiberid"] = fiber.astype(np.int32)
    meta["source_file"] = np.char.add(obj_id, ".fits")

    params = dict(n=n, seed=int(seed), anomaly_fraction=float(anomaly_fraction), z_range=list(z_range),
                  snr_median=float(snr_median), snr_range=list(snr_range), loglam_range=list(loglam_range))
    provenance = {"generator": "serendip.datasets.make_survey", "serendip_version": __version__,
                  "parameters": params, "loglam_step": ph.SDSS_LOGLAM_STEP,
                  "flux_unit": "1e-17 erg / (s cm2 Angstrom)", "wavelengths": "vacuum"}
    truth = Table()
    truth["id"] = obj_id
    truth["z"] = z_true
    truth["sequence_param"] = t
    truth["is_anomaly"] = kinds != "normal"
    truth["anomaly_kind"] = kinds.astype(str)
    truth["anomaly_subkind"] = subkinds.astype(str)
    for key in ("w_young", "w_inter", "w_old", "metallicity", "ebv", "sigma_v", "ew_halpha"):
        col = p[key].astype(np.float64).copy()
        col[kinds == "misclassified"] = np.nan
        truth[key] = col
    truth["snr_target"] = snr_target
    truth["sky_scale"] = sky_scale
    truth.meta.update(provenance)
    spectra = Spectra(wave, flux, ivar, mask=ivar <= 0, meta=meta, flags=and_mask,
                      history=[{"step": "simulate", "params": params}])
    log.info("simulated %d spectra x %d px in %.1f s (%d anomalies)", n, m, time.perf_counter() - t0,
             int(truth["is_anomaly"].sum()))
    return SyntheticSurvey(spectra=spectra, truth=truth, model=model, or_mask=or_mask,
                           sky=sky.astype(np.float32), wdisp=ph.wdisp_pixels(wave).astype(np.float32),
                           meta=provenance)


def _subclass(p, kinds, subkinds):
    """SDSS-like galaxy sub-class from the (catalogued) line strengths."""
    ew = p["ew_halpha"]
    n2 = p["log_n2ha"]
    o3 = p["log_o3hb"]
    sub = np.full(ew.size, "", dtype=object)
    lines = ew > 3.0
    kauff = 0.61 / (n2 - 0.05) + 1.3
    agn = lines & ((n2 >= 0.05) | (o3 > kauff))
    sub[lines & ~agn] = "STARFORMING"
    sub[lines & ~agn & (ew > 50)] = "STARBURST"
    sub[agn] = "AGN"
    sub[subkinds == "qso"] = "AGN BROADLINE"
    sub[np.isin(subkinds, ("m_dwarf", "a_star"))] = ""
    return sub.astype(str)
