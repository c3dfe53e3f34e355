"""Flux-conserving resampling onto a common wavelength grid, fully vectorised.

Model
-----
Each input pixel *i* is a bin ``[e_i, e_{i+1})`` (edges half-way between pixel
centres, in log λ for log-uniform grids and in λ otherwise) in which the flux
density is constant. An output pixel *j* with edges ``[E_j, E_{j+1})`` gets
the flux-density average of the *good* input flux it overlaps::

    f_j   = Σ_i o_ij g_i f_i / Σ_i o_ij g_i
    var_j = Σ_i o_ij² g_i / ivar_i / (Σ_i o_ij g_i)²

where ``o_ij`` is the overlap length in Å and ``g_i`` is 1 for a good pixel.
With no masked pixels this preserves the integral ``∫ f dλ`` over any band
whose ends fall on output edges exactly. ``ivar_j = 1 / var_j`` is the exact
propagation for independent input pixels (correlations between neighbouring
output pixels that the rebinning introduces are not tracked).

An output pixel is masked (flux 0, ivar 0) when it is not entirely inside the
input spectrum's wavelength range (coverage is never invented), or when the
good input pixels cover less than ``min_coverage`` of its width.

Implementation
--------------
No Python loop over pixels or spectra: the overlaps come from cumulative
integrals evaluated at the output edges (``C[k] + q_k (E - e_k)``), the
quadratic variance term from a cumulative sum plus the two partial end bins.
When every spectrum shares one native grid, the bin search is done once; when
each has its own grid (for example after de-redshifting), one ``searchsorted``
over all rows at once (rows offset so they stay sorted) finds them.
"""
from __future__ import annotations

import numpy as np

from .._logging import get_logger
from .container import Spectra, _has_step, _z_column

log = get_logger(__name__)

__all__ = ["make_grid", "pixel_edges", "resample", "resample_many", "resample_arrays"]


def make_grid(kind: str = "log", wmin: float = 3600.0, wmax: float = 9000.0, npix: int | None = None,
              step: float | None = None):
    """Return a wavelength grid of pixel centres as a Quantity in Å.

    Parameters
    ----------
    kind : {"log", "linear"}
        ``"log"``: constant step in log10 λ (like SDSS, where one pixel is
        1e-4 dex ≈ 69 km/s); ``"linear"``: constant step in Å.
    wmin, wmax : float
        First and last pixel centres, Å.
    npix : int, optional
        Number of pixels, spread from ``wmin`` to ``wmax`` inclusive. If
        omitted, the grid starts at ``wmin`` with exactly ``step`` and ends at
        the last pixel not beyond ``wmax``.
    step : float, optional
        Pixel step: dex for ``"log"`` (default 1e-4), Å for ``"linear"``
        (default 1.0). Ignored when ``npix`` is given.
    """
    import astropy.units as u

    if not (np.isfinite(wmin) and np.isfinite(wmax)) or wmin <= 0 or wmax <= wmin:
        raise ValueError(f"need 0 < wmin < wmax; got wmin={wmin!r}, wmax={wmax!r}")
    if kind not in ("log", "linear"):
        raise ValueError(f"grid kind must be 'log' or 'linear'; got {kind!r}")
    if npix is None:  # exact step from wmin; the last pixel is the last one not beyond wmax
        if kind == "log":
            step = 1e-4 if step is None else float(step)
            npix = int(np.floor(np.log10(wmax / wmin) / step + 1e-9)) + 1
            grid = 10.0 ** (np.log10(wmin) + step * np.arange(npix))
        else:
            step = 1.0 if step is None else float(step)
            npix = int(np.floor((wmax - wmin) / step + 1e-9)) + 1
            grid = wmin + step * np.arange(npix)
        if npix < 2:
            raise ValueError(f"a grid from {wmin} to {wmax} Å with step {step} has fewer than 2 pixels")
        return grid * u.AA
    npix = int(npix)
    if npix < 2:
        raise ValueError(f"a grid needs at least 2 pixels; got npix={npix}")
    if kind == "log":
        grid = np.logspace(np.log10(wmin), np.log10(wmax), npix)
    else:
        grid = np.linspace(wmin, wmax, npix)
    return grid * u.AA


def _is_log_uniform(c: np.ndarray) -> bool:
    if np.any(c <= 0):
        return False
    dl = np.diff(np.log(c), axis=-1)
    d = np.diff(c, axis=-1)
    spread_log = np.ptp(dl, axis=-1) / np.mean(dl, axis=-1)
    spread_lin = np.ptp(d, axis=-1) / np.mean(d, axis=-1)
    return bool(np.all(spread_log < spread_lin))


def pixel_edges(centres) -> np.ndarray:
    """Pixel edges (M+1) for pixel centres (M), along the last axis.

    Edges lie half-way between centres, in log λ when the grid is closer to
    log-uniform than to linear, in λ otherwise; the outer edges extend by half
    the neighbouring step.
    """
    c = np.asarray(getattr(centres, "value", centres), dtype=np.float64)
    if c.shape[-1] < 2:
        raise ValueError("need at least 2 pixels to define pixel edges")
    log = _is_log_uniform(c)
    x = np.log(c) if log else c
    mid = 0.5 * (x[..., 1:] + x[..., :-1])
    first = x[..., :1] - 0.5 * (x[..., 1:2] - x[..., :1])
    last = x[..., -1:] + 0.5 * (x[..., -1:] - x[..., -2:-1])
    e = np.concatenate([first, mid, last], axis=-1)
    return np.exp(e) if log else e


def _cum(q: np.ndarray) -> np.ndarray:
    out = np.zeros(q.shape[:-1] + (q.shape[-1] + 1,), dtype=np.float64)
    np.cumsum(q, axis=-1, out=out[..., 1:])
    return out


def resample_arrays(in_edges, flux, ivar, good, out_edges, *, min_coverage: float = 0.5, valid_range=None,
                    engine: str = "auto", block_rows: int = 64):
    """Flux-conserving rebinning of arrays (the engine behind :func:`resample`).

    Parameters
    ----------
    in_edges : ndarray, shape (M+1,) or (N, M+1)
        Input pixel edges, one shared set or one per spectrum, strictly increasing.
    flux, ivar : ndarray, shape (N, M)
    good : ndarray of bool, shape (N, M)
        True for pixels that may be used (``ivar > 0`` is required as well).
    out_edges : ndarray, shape (K+1,)
        Output pixel edges.
    min_coverage : float
        Smallest fraction of an output pixel that good input pixels must cover.
    valid_range : tuple of arrays (lo, hi), each (N,), optional
        True wavelength range of each spectrum (defaults to the first and last
        input edges); output pixels not entirely inside it are masked. Used
        when rows were padded to a common length.
    engine : {"auto", "numpy", "numba"}
        ``"numpy"``: the vectorised cumulative-integral algorithm above, run in
        blocks of ``block_rows`` rows to stay in cache. ``"numba"``: the same
        sums computed by a compiled merge-walk over input and output edges
        (O(M + K) per spectrum, parallel over spectra); about 5-10x faster.
        ``"auto"`` uses numba when it is installed and the batch is large
        (> 200,000 pixels), numpy otherwise. Both give the same result to
        rounding.
    block_rows : int
        Rows per block for the numpy engine.

    Returns
    -------
    flux_out, ivar_out : ndarray, float32, shape (N, K)
    mask_out : ndarray of bool, shape (N, K)
    coverage : ndarray, float32, shape (N, K)
        Fraction of each output pixel covered by good input pixels.
    """
    flux = np.asarray(flux)
    ivar = np.asarray(ivar)
    good = np.asarray(good, dtype=bool)
    if flux.ndim != 2 or ivar.shape != flux.shape or good.shape != flux.shape:
        raise ValueError(f"flux, ivar and good must be 2-D with one shape; got {flux.shape}, {ivar.shape}, "
                         f"{good.shape}")
    n, m = flux.shape
    e_in = np.asarray(in_edges, dtype=np.float64)
    e_out = np.asarray(out_edges, dtype=np.float64)
    if e_in.shape[-1] != m + 1 or e_in.ndim not in (1, 2) or (e_in.ndim == 2 and e_in.shape[0] != n):
        raise ValueError(f"in_edges must have shape ({m + 1},) or ({n}, {m + 1}); found {e_in.shape}")
    if e_out.ndim != 1 or e_out.size < 2 or np.any(np.diff(e_out) <= 0):
        raise ValueError("out_edges must be a strictly increasing 1-D array with at least 2 entries")
    if valid_range is None:
        lo = np.broadcast_to(e_in[..., 0], (n,)).astype(np.float64)
        hi = np.broadcast_to(e_in[..., -1], (n,)).astype(np.float64)
    else:
        lo, hi = (np.broadcast_to(np.asarray(a, dtype=np.float64), (n,)).copy() for a in valid_range)
    if engine == "auto":
        engine = "numba" if (n * m > 200_000 and _numba_available()) else "numpy"
    if engine == "numba":
        return _resample_numba(e_in, flux, ivar, good, e_out, float(min_coverage), lo, hi)
    if engine != "numpy":
        raise ValueError(f"engine must be 'auto', 'numpy' or 'numba'; got {engine!r}")
    outs = [np.empty((n, e_out.size - 1), np.float32), np.empty((n, e_out.size - 1), np.float32),
            np.empty((n, e_out.size - 1), bool), np.empty((n, e_out.size - 1), np.float32)]
    for s in range(0, n, max(1, int(block_rows))):
        sl = slice(s, s + block_rows)
        res = _resample_numpy(e_in if e_in.ndim == 1 else e_in[sl], flux[sl], ivar[sl], good[sl], e_out,
                              min_coverage, lo[sl], hi[sl])
        for o, r in zip(outs, res):
            o[sl] = r
    return tuple(outs)


def _resample_numpy(e_in, flux, ivar, good, e_out, min_coverage, lo, hi):
    flux = np.asarray(flux, dtype=np.float64)
    ivar = np.asarray(ivar, dtype=np.float64)
    n, m = flux.shape
    shared = e_in.ndim == 1
    g = np.asarray(good, dtype=bool) & (ivar > 0) & np.isfinite(ivar) & np.isfinite(flux)
    f = np.where(g, flux, 0.0)
    with np.errstate(divide="ignore"):
        v = np.where(g, 1.0 / np.where(g, ivar, 1.0), 0.0)
    gf = g.astype(np.float64)
    w = np.diff(e_in, axis=-1)  # (M,) or (N, M)

    c_f = _cum(f * w)
    c_g = _cum(gf * w)
    c_v = _cum(v * (w * w))

    rows = np.arange(n)[:, None]
    if shared:
        ec = np.clip(e_out, e_in[0], e_in[-1])
        k = np.clip(np.searchsorted(e_in, ec, side="right") - 1, 0, m - 1)  # (K+1,)
        frac = ec - e_in[k]
        i_f = c_f[:, k] + f[:, k] * frac
        i_g = c_g[:, k] + gf[:, k] * frac
        klo, khi = k[:-1], k[1:]
        flo, fhi = frac[:-1], frac[1:]
        wlo = w[klo]
        cv_hi, cv_lo1 = c_v[:, khi], c_v[:, klo + 1]
        v_lo, v_hi = v[:, klo], v[:, khi]
        same = (klo == khi)[None, :]
        span = (ec[1:] - ec[:-1])[None, :]
    else:
        first, last = e_in[:, :1], e_in[:, -1:]
        ec = np.clip(e_out[None, :], first, last)  # (N, K+1)
        offset = 2.0 * (float(np.max(last)) - float(np.min(first)) + 1.0)
        shift = (np.arange(n, dtype=np.float64) * offset)[:, None]
        pos = np.searchsorted((e_in + shift).ravel(), (ec + shift).ravel(), side="right").reshape(ec.shape)
        k = np.clip(pos - 1 - rows * (m + 1), 0, m - 1)
        frac = ec - np.take_along_axis(e_in, k, axis=1)
        i_f = np.take_along_axis(c_f, k, axis=1) + np.take_along_axis(f, k, axis=1) * frac
        i_g = np.take_along_axis(c_g, k, axis=1) + np.take_along_axis(gf, k, axis=1) * frac
        klo, khi = k[:, :-1], k[:, 1:]
        flo, fhi = frac[:, :-1], frac[:, 1:]
        wlo = np.take_along_axis(w, klo, axis=1)
        cv_hi = np.take_along_axis(c_v, khi, axis=1)
        cv_lo1 = np.take_along_axis(c_v, klo + 1, axis=1)
        v_lo = np.take_along_axis(v, klo, axis=1)
        v_hi = np.take_along_axis(v, khi, axis=1)
        same = klo == khi
        span = ec[:, 1:] - ec[:, :-1]

    s_f = np.diff(i_f, axis=1)
    s_g = np.diff(i_g, axis=1)
    left = wlo - flo
    q_split = left * left * v_lo + (cv_hi - cv_lo1) + fhi * fhi * v_hi
    q = np.where(same, span * span * v_lo, q_split)

    width = np.diff(e_out)[None, :]
    coverage = s_g / width
    tol = 1e-9 * np.abs(e_out).max()
    inside = (e_out[None, :-1] >= np.reshape(lo, (-1, 1)) - tol) & (e_out[None, 1:] <= np.reshape(hi, (-1, 1)) + tol)
    ok = inside & (coverage >= min_coverage) & (s_g > 0) & (q > 0)
    safe = np.where(ok, s_g, 1.0)
    flux_out = np.where(ok, s_f / safe, 0.0)
    var_out = q / (safe * safe)
    ivar_out = np.where(ok, 1.0 / np.where(ok, var_out, 1.0), 0.0)
    return (flux_out.astype(np.float32), ivar_out.astype(np.float32), ~ok,
            np.clip(coverage, 0, 1).astype(np.float32))


_NUMBA_KERNEL = None


def _numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def _get_numba_kernel():
    global _NUMBA_KERNEL
    if _NUMBA_KERNEL is not None:
        return _NUMBA_KERNEL
    try:
        import numba
    except ImportError as exc:  # pragma: no cover - depends on environment
        raise ImportError("engine='numba' needs numba: pip install numba (or use engine='numpy')") from exc

    @numba.njit(parallel=True, cache=True, nogil=True)
    def kernel(e_in, flux, ivar, good, e_out, min_cov, lo, hi, f_out, iv_out, m_out, cov_out):  # pragma: no cover
        n, m = flux.shape
        nk = e_out.size - 1
        stride = 0 if e_in.shape[0] == 1 else 1
        tol = 1e-9 * max(abs(e_out[0]), abs(e_out[nk]))
        for r in numba.prange(n):
            er = r * stride
            i = 0
            for j in range(nk):
                a = e_out[j]
                b = e_out[j + 1]
                while i < m and e_in[er, i + 1] <= a:
                    i += 1
                s_f = 0.0
                s_g = 0.0
                q = 0.0
                ii = i
                while ii < m and e_in[er, ii] < b:
                    lo_edge = e_in[er, ii] if e_in[er, ii] > a else a
                    hi_edge = e_in[er, ii + 1] if e_in[er, ii + 1] < b else b
                    o = hi_edge - lo_edge
                    iv = ivar[r, ii]
                    fx = flux[r, ii]
                    if o > 0 and good[r, ii] and iv > 0 and np.isfinite(iv) and np.isfinite(fx):
                        s_f += o * fx
                        s_g += o
                        q += o * o / iv
                    ii += 1
                width = b - a
                cov = s_g / width
                inside = (a >= lo[r] - tol) and (b <= hi[r] + tol)
                cov_out[r, j] = min(max(cov, 0.0), 1.0)
                if inside and cov >= min_cov and s_g > 0 and q > 0:
                    f_out[r, j] = s_f / s_g
                    iv_out[r, j] = (s_g * s_g) / q
                    m_out[r, j] = False
                else:
                    f_out[r, j] = 0.0
                    iv_out[r, j] = 0.0
                    m_out[r, j] = True

    _NUMBA_KERNEL = kernel
    return kernel


def _resample_numba(e_in, flux, ivar, good, e_out, min_coverage, lo, hi):
    kernel = _get_numba_kernel()
    n = flux.shape[0]
    k = e_out.size - 1
    f_out = np.empty((n, k), np.float32)
    iv_out = np.empty((n, k), np.float32)
    m_out = np.empty((n, k), np.bool_)
    cov = np.empty((n, k), np.float32)
    e2 = np.ascontiguousarray(np.atleast_2d(e_in))
    # one dtype signature only, so the kernel is compiled (or loaded from numba's cache) once
    kernel(e2, np.ascontiguousarray(flux, dtype=np.float64), np.ascontiguousarray(ivar, dtype=np.float64),
           np.ascontiguousarray(good, dtype=np.bool_), np.ascontiguousarray(e_out, dtype=np.float64),
           float(min_coverage), np.ascontiguousarray(lo, dtype=np.float64),
           np.ascontiguousarray(hi, dtype=np.float64), f_out, iv_out, m_out, cov)
    return f_out, iv_out, m_out, cov


def stack_meta(tables):
    """Stack metadata tables row-wise (outer join on columns), much faster than astropy's vstack for many small tables.

    Missing values are filled with NaN (float), -1 (int), False (bool) or "" (str).
    """
    from astropy.table import Table

    names: list[str] = []
    for t in tables:
        for c in t.colnames:
            if c not in names:
                names.append(c)
    cols = {}
    for c in names:
        parts = []
        kinds = set()
        for t in tables:
            if c in t.colnames:
                col = t[c]
                arr = np.asarray(col.filled() if hasattr(col, "filled") and hasattr(col, "mask") else col)
                if arr.dtype.kind == "S":
                    arr = np.char.decode(arr, "utf-8", "replace")
                if arr.dtype.kind == "O":
                    arr = arr.astype(str)
                kinds.add(arr.dtype.kind)
                parts.append(arr)
            else:
                parts.append(None)
        kind = "U" if "U" in kinds else ("f" if "f" in kinds else ("i" if kinds & {"i", "u"} else "b"))
        fill = {"U": "", "f": np.nan, "i": -1, "b": False}[kind]
        full = [p if p is not None else np.full(len(t), fill) for p, t in zip(parts, tables)]
        if kind == "U":
            full = [p.astype(str) for p in full]
        cols[c] = np.concatenate(full) if full else np.array([])
    return Table(cols)


def _grid_values(grid) -> np.ndarray:
    if isinstance(grid, Spectra):
        return grid.wavelength.value
    if hasattr(grid, "unit"):
        import astropy.units as u
        return grid.to_value(u.AA, equivalencies=u.spectral())
    return np.asarray(grid, dtype=np.float64)


def _describe_grid(w: np.ndarray) -> dict:
    kind = "log" if _is_log_uniform(w) else "linear"
    return {"kind": kind, "wmin": float(w[0]), "wmax": float(w[-1]), "npix": int(w.size)}


def _refuse_second_shift(spectra: Spectra, z: np.ndarray) -> None:
    if _has_step(spectra, "deredshift") and np.any(z != 0):
        raise ValueError("these spectra are already in the rest frame (their history has a deredshift step); "
                         "resampling with z= would divide the wavelengths by 1+z a second time: leave z out")


def resample(spectra: Spectra, grid, *, min_coverage: float = 0.5, z=None) -> Spectra:
    """Resample spectra onto ``grid`` (pixel centres), conserving flux.

    Parameters
    ----------
    spectra : Spectra
    grid : Quantity, array-like (Å) or Spectra
        Output pixel centres; see :func:`make_grid`.
    min_coverage : float
        An output pixel needs good input pixels over at least this fraction of
        its width, else it is masked. Pixels outside a spectrum's range are
        always masked.
    z : str or array-like, optional
        De-redshift on the fly: each row's grid is divided by ``1 + z`` (and its
        flux multiplied by ``1 + z``) before resampling, exactly as
        :func:`serendip.spectra.deredshift` does for one spectrum. Use this when
        the rows have different redshifts. A string names a metadata column.

    Returns
    -------
    Spectra
        On the new grid; ``flags`` and ``filled`` are dropped (apply
        :func:`~serendip.spectra.mask_pixels` before resampling), the mask marks
        uncovered or poorly covered pixels, and ``meta['coverage']`` is not
        added (see :func:`resample_arrays` for the per-pixel coverage).
    """
    out_w = _grid_values(grid)
    e_out = pixel_edges(out_w)
    e_in = pixel_edges(spectra.wavelength.value)
    flux, ivar = spectra.flux, spectra.ivar
    params = {"grid": _describe_grid(out_w), "min_coverage": float(min_coverage), "flux_conserving": True}
    history_extra = []
    if z is not None:
        zz = _z_column(spectra, z)
        _refuse_second_shift(spectra, zz)
        scale = 1.0 + zz
        e_in = e_in[None, :] / scale[:, None]
        flux = flux * scale[:, None]
        ivar = ivar / (scale * scale)[:, None]
        history_extra.append({"step": "deredshift", "params": {"z": z if isinstance(z, str) else "array"}})
    f, iv, msk, _ = resample_arrays(e_in, flux, ivar, ~spectra.mask, e_out, min_coverage=min_coverage)
    empty = msk.all(axis=1) & ~spectra.mask.all(axis=1)
    if empty.any() and empty.sum() == spectra.n_objects:
        lo, hi = (float(e_in.min()), float(e_in.max()))
        raise ValueError(f"the output grid ({out_w[0]:.1f}–{out_w[-1]:.1f} Å) does not overlap the spectra's good "
                         f"pixels ({lo:.1f}–{hi:.1f} Å{' after the redshift shift' if z is not None else ''}): "
                         "every resampled pixel would be masked")
    if empty.any():
        log.warning("%d of %d spectra have no good pixel on the output grid (%.1f–%.1f Å), e.g. ids %s",
                    int(empty.sum()), spectra.n_objects, out_w[0], out_w[-1], [str(i) for i in spectra.ids[empty][:5]])
    out = spectra._replace(wavelength=out_w, flux=f, ivar=iv, mask=msk, filled=None, flags=None)
    out.history.extend(history_extra)
    out.history.append({"step": "resample", "params": params})
    return out


def resample_many(items, grid, *, min_coverage: float = 0.5, z: str | None = None) -> Spectra:
    """Resample spectra that live on *different* native grids onto one grid, in one vectorised pass.

    Parameters
    ----------
    items : sequence of Spectra
        Each on its own grid (for example one SDSS spectrum per file).
    grid : Quantity or array-like
        Output pixel centres (Å).
    min_coverage : float
        See :func:`resample`.
    z : str, optional
        Metadata column with each object's redshift: de-redshift every row on
        the fly (λ / (1+z), flux × (1+z), ivar / (1+z)²), as
        :func:`serendip.spectra.deredshift` does.

    Returns
    -------
    Spectra
        All rows stacked in order, on ``grid``. The history is that of the first
        item plus the ``resample`` step.
    """
    items = list(items)
    if not items:
        raise ValueError("nothing to resample: the list of Spectra is empty")
    out_w = _grid_values(grid)
    e_out = pixel_edges(out_w)
    m = max(s.n_pixels for s in items)
    n = sum(s.n_objects for s in items)
    edges = np.empty((n, m + 1))
    flux = np.zeros((n, m), dtype=np.float64)
    ivar = np.zeros((n, m), dtype=np.float64)
    good = np.zeros((n, m), dtype=bool)
    lo = np.empty(n)
    hi = np.empty(n)
    r = 0
    for s in items:  # one iteration per input container (array copies only), not per pixel
        k, mm = s.n_objects, s.n_pixels
        e = pixel_edges(s.wavelength.value)
        scale = np.ones(k)
        if z is not None:
            zz = _z_column(s, z)
            _refuse_second_shift(s, zz)
            scale = zz + 1.0
        edges[r:r + k, :mm + 1] = e[None, :] / scale[:, None]
        if mm < m:  # pad with masked pixels that continue the last step
            step = e[-1] - e[-2]
            edges[r:r + k, mm + 1:] = (e[-1] + step * np.arange(1, m - mm + 1))[None, :] / scale[:, None]
        flux[r:r + k, :mm] = s.flux * scale[:, None]
        ivar[r:r + k, :mm] = s.ivar / (scale * scale)[:, None]
        good[r:r + k, :mm] = ~s.mask
        lo[r:r + k] = e[0] / scale
        hi[r:r + k] = e[-1] / scale
        r += k
    f, iv, msk, _ = resample_arrays(edges, flux, ivar, good, e_out, min_coverage=min_coverage, valid_range=(lo, hi))
    meta = stack_meta([s.meta for s in items])
    history = [dict(h) for h in items[0].history]
    if z is not None:
        history.append({"step": "deredshift", "params": {"z": z}})
    history.append({"step": "resample", "params": {"grid": _describe_grid(out_w), "min_coverage": float(min_coverage),
                                                   "flux_conserving": True}})
    return Spectra(out_w, f, iv, msk, meta=meta, history=history, flux_unit=items[0].flux_unit)
