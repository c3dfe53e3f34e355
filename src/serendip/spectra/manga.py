"""Reader for multi-spectrum FITS files with ``WAVE``/``FLUX``/``IVAR``/``MASK``/``Z`` extensions.

This is the layout of the MaNGA DAP test spectra (and a convenient generic
layout for any set of spectra on one grid):

* ``WAVE``: 1-D vacuum wavelengths in Å, shape (M,);
* ``FLUX``: (N, M) flux densities; ``IVAR``: (N, M) inverse variances;
* ``MASK`` (optional): (N, M) integer MaNGA ``MANGA_DRP3PIXMASK`` bits;
* ``Z`` (optional): (N,) redshifts (NaN when absent).

Pixels with any of the bits in :data:`MANGA_BAD_BITS` set (NOCOV=0,
DEADFIBER=2, FORESTAR=3, DONOTUSE=10), ``ivar <= 0`` or non-finite values are
masked at read time. The MaNGA bits mean something different from the SDSS
``and_mask`` bits, so they are *not* kept in ``Spectra.flags`` (and
:func:`serendip.spectra.mask_pixels` therefore only applies its ``ivar`` rule
to these spectra).

Object ids are ``<file stem>:<row>`` (for example ``MaNGA_test_spectra:3``). A
datacube (``FLUX`` of shape wavelength × y × x, as in a LOGCUBE) gives one spectrum
per spaxel, row ``y * nx + x``, with ``spaxel_x``/``spaxel_y`` in the metadata. Flux
is converted from the ``FLUX`` HDU's ``BUNIT`` (``/spaxel`` dropped) to
1e-17 erg/s/cm²/Å.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
from astropy.table import Table

from .._logging import get_logger
from .container import Spectra
from .io import SpectraReadError, fits_hdu_names, open_fits, register_reader

log = get_logger(__name__)

__all__ = ["read_manga", "is_manga", "MANGA_BAD_BITS"]

#: MANGA_DRP3PIXMASK bits masked at read time: NOCOV (0), DEADFIBER (2), FORESTAR (3), DONOTUSE (10).
MANGA_BAD_BITS = (0, 2, 3, 10)

_FITS_EXT = (".fits", ".fit", ".fits.gz", ".fit.gz")


def is_manga(path: Path) -> bool:
    """True for a FITS file with ``WAVE`` and ``FLUX`` image extensions."""
    names = fits_hdu_names(path, max_hdus=8)
    return names is not None and "WAVE" in names and "FLUX" in names


#: serendip's flux unit; MaNGA's usual BUNIT is ``1E-17 erg/s/cm^2/Ang/spaxel``.
_DEFAULT_UNIT = "1e-17 erg / (s cm2 Angstrom)"


def _flux_scale(path: Path, bunit) -> float:
    """The factor that turns the file's flux (``BUNIT``) into 1e-17 erg/s/cm²/Å (1 when absent or unreadable).

    ``/spaxel`` and ``/fiber`` are dropped (a flux per spaxel is a flux); ``Ang`` is read as Å.
    """
    import astropy.units as u

    if not bunit or not str(bunit).strip():
        return 1.0
    text = str(bunit).strip()
    for per in ("/spaxel", "/fiber", "/fibre"):
        text = text.replace(per, "")
    text = re.sub(r"\bAng\b", "Angstrom", text)
    try:
        with warnings.catch_warnings():  # "multiple slashes" is how MaNGA writes it, not a problem here
            warnings.simplefilter("ignore", u.UnitsWarning)
            return float(u.Unit(text).to(u.Unit(_DEFAULT_UNIT)))
    except (ValueError, TypeError, u.UnitsError) as exc:
        log.warning("%s: flux unit BUNIT=%r not understood (%s); taken as %s", path.name, bunit, exc, _DEFAULT_UNIT)
        return 1.0


def _stem(path: Path) -> str:
    name = path.name
    for ext in _FITS_EXT:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return path.stem


def read_manga(path: str | Path) -> Spectra:
    """Read a ``WAVE``/``FLUX``/``IVAR``/``MASK``/``Z`` multi-spectrum FITS file.

    Raises
    ------
    SpectraReadError
        Missing ``WAVE``/``FLUX``/``IVAR``, inconsistent shapes, or no finite pixel.
    """
    path = Path(path)
    with open_fits(path) as hdul:
        names = [h.name.upper() for h in hdul]
        for need in ("WAVE", "FLUX", "IVAR"):
            if need not in names:
                raise SpectraReadError(path, f"missing HDU {need!r} (HDUs present: {', '.join(names)})")
        wave = np.asarray(hdul["WAVE"].data, dtype=np.float64).ravel()
        flux = np.atleast_2d(np.asarray(hdul["FLUX"].data, dtype=np.float64))
        ivar = np.atleast_2d(np.asarray(hdul["IVAR"].data, dtype=np.float64))
        bits = (np.atleast_2d(np.asarray(hdul["MASK"].data, dtype=np.int64)) if "MASK" in names
                else np.zeros(flux.shape, np.int64))
        scale = _flux_scale(path, hdul["FLUX"].header.get("BUNIT"))
        cube_shape = None
        if flux.ndim == 3 and flux.shape[0] == wave.size:  # a LOGCUBE: (M, ny, nx) -> one spectrum per spaxel
            cube_shape = flux.shape[1:]
            flux, ivar, bits = (a.reshape(wave.size, -1) for a in (flux, ivar, bits))
        z = np.asarray(hdul["Z"].data, dtype=np.float64).ravel() if "Z" in names else None
    if flux.shape[-1] != wave.size and flux.shape[0] == wave.size:  # (M, N) layout
        flux, ivar, bits = flux.T, ivar.T, bits.T
    if z is None:
        z = np.full(flux.shape[0], np.nan)
    if scale != 1.0:  # into serendip's 1e-17 erg/s/cm2/Å
        flux, ivar = flux * scale, ivar / scale**2
    if flux.shape[1] != wave.size or ivar.shape != flux.shape or bits.shape != flux.shape:
        raise SpectraReadError(path, f"shapes disagree: WAVE {wave.shape}, FLUX {flux.shape}, "
                                     f"IVAR {ivar.shape}, MASK {bits.shape}")
    if z.size != flux.shape[0]:
        raise SpectraReadError(path, f"HDU 'Z' has {z.size} values for {flux.shape[0]} spectra")
    bad_bits = sum(1 << b for b in MANGA_BAD_BITS)
    good = np.isfinite(flux) & np.isfinite(ivar) & (ivar > 0) & ((bits & bad_bits) == 0)
    if not good.any():
        raise SpectraReadError(path, "no finite pixels (every pixel is masked, has ivar <= 0 or is non-finite)")
    n = flux.shape[0]
    stem = _stem(path)
    meta = Table({"id": [f"{stem}:{k}" for k in range(n)], "ra": np.full(n, np.nan), "dec": np.full(n, np.nan),
                  "z": z, "class": np.full(n, ""), "snr": np.full(n, np.nan),
                  "source_file": np.full(n, path.name)})
    if cube_shape is not None:  # where each spaxel sits in the cube
        meta["spaxel_y"], meta["spaxel_x"] = np.divmod(np.arange(n), cube_shape[1])
    return Spectra(wave, np.where(np.isfinite(flux), flux, 0.0), np.where(good, ivar, 0.0), mask=~good, meta=meta,
                   history=[{"step": "read", "params": {"format": "manga", "file": path.name,
                                                        "masked_bits": list(MANGA_BAD_BITS)}}])


register_reader("manga", is_manga, read_manga, _FITS_EXT)
