"""Preprocessing steps: each takes a :class:`Spectra` and returns a new one.

Every step is a public function, chainable, and appends
``{"step": name, "params": {...}}`` to the output's ``history``. The
recommended order, used by :func:`serendip.spectra.ingest`, is::

    mask_pixels (observed frame) -> signal_to_noise -> deredshift
        -> resample -> normalize -> fill_masked

Sky lines and pipeline bits live in the observed frame, so masking comes
first; S/N is measured on native, uncorrelated pixels; resampling needs the
rest-frame grid; normalising needs the common grid (so the window means the
same thing for every object); filling comes last so nothing downstream
mistakes interpolated values for data.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .._logging import get_logger
from .container import Spectra, _has_step, _z_column
from .lines import SKY_LINES
from .resample import make_grid, resample, resample_many

__all__ = ["SPPIXMASK", "DEFAULT_AND_MASK_BITS", "and_mask_value", "mask_pixels", "deredshift", "normalize",
           "fill_masked", "signal_to_noise", "resample", "resample_many", "make_grid"]

log = get_logger(__name__)

#: SDSS/BOSS ``SPPIXMASK`` bit numbers (the ``and_mask``/``or_mask`` columns of spec files),
#: as defined in idlutils' ``sdssMaskbits.par``. Bits 13-15 are unused.
SPPIXMASK: dict[str, int] = {
    "NOPLUG": 0, "BADTRACE": 1, "BADFLAT": 2, "BADARC": 3, "MANYBADCOLUMNS": 4, "MANYREJECTED": 5,
    "LARGESHIFT": 6, "BADSKYFIBER": 7, "NEARWHOPPER": 8, "WHOPPER": 9, "SMEARIMAGE": 10, "SMEARHIGHSN": 11,
    "SMEARMEDSN": 12, "NEARBADPIXEL": 16, "LOWFLAT": 17, "FULLREJECT": 18, "PARTIALREJECT": 19,
    "SCATTEREDLIGHT": 20, "CROSSTALK": 21, "NOSKY": 22, "BRIGHTSKY": 23, "NODATA": 24, "COMBINEREJ": 25,
    "BADFLUXFACTOR": 26, "BADSKYCHI": 27, "REDMONSTER": 28, "EMLINE": 30,
}

#: ``and_mask`` bits masked by default: the per-fiber failures (NOPLUG 0, BADTRACE 1, BADFLAT 2,
#: BADARC 3, MANYBADCOLUMNS 4, MANYREJECTED 5, LARGESHIFT 6, NEARWHOPPER 8) and the per-pixel
#: failures (FULLREJECT 18, NOSKY 22, BRIGHTSKY 23, NODATA 24, COMBINEREJ 25, BADFLUXFACTOR 26,
#: BADSKYCHI 27, REDMONSTER 28). Informational bits (SMEAR*, PARTIALREJECT, SCATTEREDLIGHT,
#: CROSSTALK, NEARBADPIXEL, LOWFLAT, EMLINE, BADSKYFIBER, WHOPPER) are not masked: they flag
#: pixels that are usually fine, and EMLINE would mask real emission lines. ``and_mask`` is
#: used rather than ``or_mask`` so a pixel is dropped only when *every* exposure was bad.
DEFAULT_AND_MASK_BITS: tuple[str, ...] = (
    "NOPLUG", "BADTRACE", "BADFLAT", "BADARC", "MANYBADCOLUMNS", "MANYREJECTED", "LARGESHIFT", "NEARWHOPPER",
    "FULLREJECT", "NOSKY", "BRIGHTSKY", "NODATA", "COMBINEREJ", "BADFLUXFACTOR", "BADSKYCHI", "REDMONSTER",
)


def and_mask_value(bits: Iterable[str | int] | int | None) -> int:
    """Turn bit names (``"NODATA"``), bit numbers (``24``) or an integer bitmask into one integer mask.

    ``None`` or an empty sequence gives 0 (no bits). A single int is taken as
    an already-combined bitmask; a sequence of ints as bit *numbers*.
    """
    if bits is None:
        return 0
    if isinstance(bits, (int, np.integer)):
        if bits < 0:
            raise ValueError(f"an and_mask bitmask must be >= 0; got {bits}")
        return int(bits)
    if isinstance(bits, str):
        bits = [b for b in bits.replace(",", " ").split() if b]
    value = 0
    for b in bits:
        if isinstance(b, str) and b.strip().lstrip("-").isdigit():
            b = int(b)
        if isinstance(b, (int, np.integer)):
            if not 0 <= int(b) < 63:
                hint = (f" (to give a combined bitmask, write it in hexadecimal: {int(b):#x})" if int(b) >= 63
                        else "")
                raise ValueError(f"and_mask bit numbers run from 0 to 62; got {b}{hint}")
            value |= 1 << int(b)
        else:
            name = str(b).strip().upper()
            if name not in SPPIXMASK:
                raise ValueError(f"unknown SDSS and_mask bit {b!r}; known bits: {', '.join(SPPIXMASK)}")
            value |= 1 << SPPIXMASK[name]
    return value


def _bit_names(value: int) -> list[str]:
    inv = {v: k for k, v in SPPIXMASK.items()}
    return [inv.get(b, str(b)) for b in range(63) if value >> b & 1]


def mask_pixels(spectra: Spectra, and_mask_bits=DEFAULT_AND_MASK_BITS, sky_lines: bool = False, *,
                sky_halfwidth: float = 4.0, sky_line_list: Iterable[float] = SKY_LINES) -> Spectra:
    """Mask bad pixels: ``ivar <= 0`` always, chosen SDSS ``and_mask`` bits, optionally sky lines.

    Parameters
    ----------
    spectra : Spectra
        In the observed frame (sky lines and pipeline bits are observed-frame things).
    and_mask_bits : sequence of str or int, int, or None
        Bits of ``spectra.flags`` (the SDSS ``and_mask``) that make a pixel bad;
        see :data:`DEFAULT_AND_MASK_BITS` for the documented default and
        :func:`and_mask_value` for the accepted forms. Ignored for spectra
        without flags (for example MaNGA, whose own bits are applied when read).
    sky_lines : bool
        Also mask ``±sky_halfwidth`` Å around the strong night-sky lines
        ``sky_line_list`` (default :data:`serendip.spectra.SKY_LINES`: 5578.89,
        5891.58, 5897.56, 6302.05, 6365.54 Å, vacuum, observed frame).
    sky_halfwidth : float
        Half-width of each sky-line window, Å.

    Returns
    -------
    Spectra
        Masked pixels get ``ivar = 0``; ``meta['masked_fraction']`` is updated.

    Raises
    ------
    ValueError
        If ``sky_lines`` is requested on rest-frame spectra.
    """
    mask, ivar, params = _mask_core(spectra, and_mask_bits, sky_lines, sky_halfwidth, sky_line_list)
    meta = spectra.meta.copy()
    meta["masked_fraction"] = mask.mean(axis=1)
    return spectra.with_step("mask_pixels", params, mask=mask, ivar=ivar, meta=meta)


def _mask_core(spectra: Spectra, and_mask_bits, sky_lines, sky_halfwidth, sky_line_list):
    """The arrays and history parameters of :func:`mask_pixels` (shared with ingest's fast path)."""
    value = and_mask_value(and_mask_bits)
    mask = spectra.mask | (spectra.ivar <= 0) | ~np.isfinite(spectra.flux) | ~np.isfinite(spectra.ivar)
    n_bits = 0
    if value and spectra.flags is not None:
        by_bits = (spectra.flags & value) != 0
        n_bits = int((by_bits & ~mask).sum())
        mask |= by_bits
    elif value and _has_step(spectra, "resample"):
        log.warning("the and_mask bits cannot be applied: resampling dropped the per-pixel flags "
                    "(apply mask_pixels before resample); only ivar <= 0 and non-finite pixels are masked")
    if sky_lines:
        if _has_step(spectra, "deredshift"):
            raise ValueError("sky lines are at fixed observed wavelengths: mask them before deredshift")
        w = spectra.wavelength.value
        sky = np.zeros(w.size, dtype=bool)
        for line in sky_line_list:
            sky |= np.abs(w - float(line)) <= sky_halfwidth
        mask = mask | sky[None, :]
    ivar = np.where(mask, 0.0, spectra.ivar).astype(np.float32)
    params = {"and_mask_bits": _bit_names(value), "and_mask_value": value, "sky_lines": bool(sky_lines),
              "sky_halfwidth": float(sky_halfwidth) if sky_lines else None, "pixels_masked_by_bits": n_bits,
              "and_mask_applied": bool(value and spectra.flags is not None)}
    return mask, ivar, params


def deredshift(spectra: Spectra, z=None) -> Spectra:
    """Shift spectra to the rest frame: λ_rest = λ_obs / (1+z), f_rest = (1+z) f_obs, ivar / (1+z)².

    The flux scaling keeps ``∫ f dλ`` unchanged, so a line's integrated flux is
    the same before and after.

    Parameters
    ----------
    spectra : Spectra
        All objects must share one redshift (a container has one grid). For
        many objects at different redshifts use
        ``resample(spectra, grid, z="z")`` (de-redshift and resample in one
        step) or de-redshift them one by one.
    z : str, float or array-like, optional
        A metadata column name (default ``"z"``) or values.

    Raises
    ------
    ValueError
        If a redshift is missing/NaN (the message names the ids), the objects
        have different redshifts, or the spectra were already de-redshifted.
    """
    if _has_step(spectra, "deredshift"):
        raise ValueError("these spectra are already in the rest frame (history has a deredshift step)")
    zz = _z_column(spectra, z)
    if not np.allclose(zz, zz[0], rtol=0, atol=1e-12):
        raise ValueError(
            f"the {spectra.n_objects} spectra have different redshifts ({zz.min():.4g} to {zz.max():.4g}) but one "
            "container has one grid: use resample(spectra, grid, z='z') to de-redshift and resample in one step")
    scale = 1.0 + float(zz[0])
    params = {"z": z if isinstance(z, str) or z is None else float(zz[0]), "z_value": float(zz[0])}
    return spectra.with_step("deredshift", params, wavelength=spectra.wavelength / scale,
                             flux=spectra.flux * np.float32(scale), ivar=spectra.ivar / np.float32(scale * scale))


def _kept(spectra: Spectra) -> np.ndarray:
    kept = ~spectra.mask & (spectra.ivar > 0)
    if spectra.filled is not None:
        kept &= ~spectra.filled
    return kept


def normalize(spectra: Spectra, method: str = "median", window: tuple[float, float] | None = None) -> Spectra:
    """Scale each spectrum to a common level.

    Parameters
    ----------
    method : {"median", "sum", "l2"}
        ``"median"``: divide by the median flux of the kept pixels in
        ``window``; ``"sum"``: divide by the sum of kept-pixel fluxes (unit
        sum); ``"l2"``: divide by the L2 norm of the kept pixels (unit norm).
    window : (float, float), optional
        Wavelength range in Å (in the spectra's current frame) used to compute
        the scale; default: all pixels.

    Returns
    -------
    Spectra
        Flux divided and ivar multiplied by the squared scale;
        ``meta['norm']`` holds each scale, in the input's flux unit, and the
        result's ``flux_unit`` is ``""`` (a ratio). A spectrum whose scale is not
        positive and finite (for example a negative median, or no kept pixel
        in the window) is fully masked and gets ``norm = NaN``; a warning is
        logged.
    """
    if method not in ("median", "sum", "l2"):
        raise ValueError(f"normalize method must be 'median', 'sum' or 'l2'; got {method!r}")
    kept = _kept(spectra)
    if window is not None:
        lo, hi = (float(x) for x in window)
        if not hi > lo:
            raise ValueError(f"normalisation window must be (low, high) with low < high; got {window!r}")
        w = spectra.wavelength.value
        in_win = (w >= lo) & (w <= hi)
        if not in_win.any():
            raise ValueError(f"normalisation window {lo}-{hi} Å lies outside the grid "
                             f"({w[0]:.1f}-{w[-1]:.1f} Å)")
        kept = kept & in_win[None, :]
    flux = spectra.flux.astype(np.float64)
    has = kept.any(axis=1)
    if method == "median":
        vals = np.where(kept, flux, np.nan)
        scale = np.full(spectra.n_objects, np.nan)
        if has.any():
            scale[has] = np.nanmedian(vals[has], axis=1)
    elif method == "sum":
        scale = np.where(has, np.where(kept, flux, 0.0).sum(axis=1), np.nan)
    else:
        scale = np.where(has, np.sqrt(np.where(kept, flux * flux, 0.0).sum(axis=1)), np.nan)
    ok = np.isfinite(scale) & (scale > 0)
    if not ok.all():
        log.warning("normalize: %d spectra have no positive %s scale and are fully masked (ids %s)",
                    int((~ok).sum()), method, [str(i) for i in spectra.ids[~ok][:5]])
    safe = np.where(ok, scale, 1.0)
    new_flux = (flux / safe[:, None]).astype(np.float32)
    new_ivar = np.where(ok[:, None], spectra.ivar * (safe * safe)[:, None], 0.0).astype(np.float32)
    new_mask = spectra.mask | ~ok[:, None]
    meta = spectra.meta.copy()
    meta["norm"] = np.where(ok, scale, np.nan)
    params = {"method": method, "window": None if window is None else [float(window[0]), float(window[1])],
              "flux_unit_before": spectra.flux_unit}
    # the normalised flux is a ratio; meta['norm'] keeps the scale in the original unit
    return spectra.with_step("normalize", params, flux=new_flux, ivar=new_ivar, mask=new_mask, meta=meta,
                             flux_unit="")


def fill_masked(spectra: Spectra) -> Spectra:
    """Replace the flux of masked pixels by linear interpolation (in λ) between the nearest kept pixels.

    Pixels before the first / after the last kept pixel take that pixel's
    value. The mask and ``ivar = 0`` of those pixels are left as they are, and
    ``filled`` records which pixels were interpolated, so algorithms that need
    finite values get them while weights and plots still know the truth.
    Spectra with no kept pixel at all keep flux 0 and ``filled`` False.
    """
    kept = ~spectra.mask & (spectra.ivar > 0)
    n, m = kept.shape
    w = spectra.wavelength.value
    idx = np.arange(m)
    prev = np.where(kept, idx[None, :], -1)
    np.maximum.accumulate(prev, axis=1, out=prev)
    nxt = np.where(kept, idx[None, :], m)
    nxt = np.minimum.accumulate(nxt[:, ::-1], axis=1)[:, ::-1]
    has_prev = prev >= 0
    has_next = nxt < m
    p = np.clip(prev, 0, m - 1)
    q = np.clip(nxt, 0, m - 1)
    fp = np.take_along_axis(spectra.flux, p, axis=1).astype(np.float64)
    fq = np.take_along_axis(spectra.flux, q, axis=1).astype(np.float64)
    wp, wq = w[p], w[q]
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(wq > wp, (w[None, :] - wp) / (wq - wp), 0.0)
    interp = np.where(has_prev & has_next, fp + t * (fq - fp), np.where(has_prev, fp, fq))
    to_fill = ~kept & (has_prev | has_next)
    flux = np.where(to_fill, interp, np.where(kept, spectra.flux, 0.0)).astype(np.float32)
    filled = to_fill if spectra.filled is None else (spectra.filled | to_fill)
    return spectra.with_step("fill_masked", {"method": "linear", "pixels_filled": int(to_fill.sum())},
                             flux=flux, filled=filled)


def signal_to_noise(spectra: Spectra) -> Spectra:
    """Write each spectrum's median S/N per pixel over its kept pixels into ``meta['snr']``.

    S/N per pixel is ``flux * sqrt(ivar)`` (as SDSS's ``SN_MEDIAN_ALL``); kept
    pixels are unmasked, ``ivar > 0`` and not filled. Measure it on the native
    pixels (before resampling, which correlates neighbouring pixels). Objects
    with no kept pixel get NaN.
    """
    meta = spectra.meta.copy()
    meta["snr"] = _snr_core(spectra)
    return spectra.with_step("signal_to_noise", {"statistic": "median flux*sqrt(ivar) over kept pixels"}, meta=meta)


def _snr_core(spectra: Spectra) -> np.ndarray:
    kept = _kept(spectra)
    sn = np.where(kept, spectra.flux.astype(np.float64) * np.sqrt(np.maximum(spectra.ivar, 0.0)), np.nan)
    snr = np.full(spectra.n_objects, np.nan)
    has = kept.any(axis=1)
    if has.any():
        snr[has] = np.nanmedian(sn[has], axis=1)
    return snr
