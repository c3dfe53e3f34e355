"""`Spectra`: many spectra on one shared wavelength grid.

The container is deliberately plain: a grid (astropy Quantity in Å, vacuum),
an N×M float32 flux array, inverse variance, a boolean mask (``True`` = bad
pixel, the numpy/specutils convention) and an astropy Table of per-object
metadata. Preprocessing steps return new containers and append to
``history``; nothing is modified in place.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from typing import Any

import astropy.units as u
import numpy as np
from astropy.table import Table, vstack

__all__ = ["Spectra", "STANDARD_META_COLUMNS"]

#: Metadata columns every reader fills (missing values are masked/NaN/empty).
STANDARD_META_COLUMNS = ("id", "ra", "dec", "z", "class", "snr", "source_file")


def _as_grid(wavelength: Any) -> u.Quantity:
    if isinstance(wavelength, u.Quantity):
        grid = wavelength.to(u.AA, equivalencies=u.spectral())
    else:
        grid = np.asarray(wavelength, dtype=np.float64) * u.AA
    grid = u.Quantity(grid, dtype=np.float64)
    if grid.ndim != 1:
        raise ValueError(f"the wavelength grid must be 1-D; found shape {grid.shape}")
    if grid.size < 2:
        raise ValueError(f"the wavelength grid needs at least 2 pixels; found {grid.size}")
    if not np.all(np.isfinite(grid.value)):
        raise ValueError("the wavelength grid contains NaN or infinite values")
    if not np.all(np.diff(grid.value) > 0):
        k = int(np.argmax(np.diff(grid.value) <= 0))
        raise ValueError(
            f"the wavelength grid must be strictly increasing; it is not at pixel {k} "
            f"({grid.value[k]!r} then {grid.value[k + 1]!r} Å)"
        )
    return grid


def _has_step(spectra: Spectra, step: str) -> bool:
    """Whether ``step`` (e.g. ``"deredshift"``) is in the spectra's processing history."""
    return any(h.get("step") == step for h in spectra.history)


def _z_column(spectra: Spectra, z) -> np.ndarray:
    """Each row's redshift from a metadata column name (default ``"z"``) or an array; masked or NaN is an error."""
    if z is None:
        z = "z"
    if isinstance(z, str):
        if z not in spectra.meta.colnames:
            raise ValueError(f"no redshift column {z!r} in the metadata (columns: {', '.join(spectra.meta.colnames)})")
        vals = spectra.meta[z]
        vals = np.asarray(vals.filled(np.nan) if hasattr(vals, "filled") else vals, dtype=np.float64)
    else:
        vals = np.broadcast_to(np.asarray(z, dtype=np.float64), (spectra.n_objects,)).copy()
    bad = ~np.isfinite(vals) | (vals <= -1)
    if bad.any():
        ids = [str(i) for i in spectra.ids[bad][:5]]
        raise ValueError(f"{int(bad.sum())} spectra have no usable redshift (missing, NaN or <= -1): ids {ids}")
    return vals


class Spectra:
    """Many spectra sampled on one shared wavelength grid.

    Parameters
    ----------
    wavelength : Quantity or array-like of shape (M,)
        Strictly increasing grid; plain numbers are taken to be Å. Stored as a
        Quantity in Å (vacuum by convention).
    flux : array-like of shape (N, M)
        Flux densities, stored as float32. SDSS units are 1e-17 erg/s/cm²/Å.
    ivar : array-like of shape (N, M), optional
        Inverse variance of ``flux``; defaults to ones. Zero marks unusable pixels.
    mask : array-like of bool, shape (N, M), optional
        ``True`` marks a bad pixel. Defaults to ``ivar == 0`` or non-finite flux.
    meta : astropy Table or dict-like, optional
        One row per object. A missing ``id`` column is filled with ``"0".."N-1"``.
    history : list of dict, optional
        The preprocessing steps already applied, oldest first, each
        ``{"step": name, "params": {...}}``.
    flux_unit : str, optional
        Unit of the flux (informational; kept through every step).
    flags : array-like of int, shape (N, M), optional
        Per-pixel pipeline bitmask (for SDSS the ``and_mask``), kept so that
        :func:`serendip.spectra.mask_pixels` can choose which bits count as bad.
    filled : array-like of bool, shape (N, M), optional
        Pixels whose flux was interpolated rather than measured.

    Attributes
    ----------
    n_objects, n_pixels : int
    filled : ndarray of bool or None
        Pixels whose flux was interpolated by :func:`serendip.spectra.fill_masked`.
    flags : ndarray of int64 or None
        Pipeline pixel bitmask (SDSS ``and_mask``), if the reader provided one.

    Examples
    --------
    >>> import numpy as np
    >>> from serendip.spectra import Spectra
    >>> s = Spectra(np.linspace(4000, 5000, 11), np.ones((3, 11)))
    >>> len(s), s.n_pixels, list(s.meta["id"])
    (3, 11, ['0', '1', '2'])
    """

    def __init__(self, wavelength, flux, ivar=None, mask=None, meta=None, history=None,
                 flux_unit: str = "1e-17 erg / (s cm2 Angstrom)", filled=None, flags=None):
        self.wavelength = _as_grid(wavelength)
        flux = np.asarray(flux, dtype=np.float32)
        if flux.ndim == 1:
            flux = flux[np.newaxis, :]
        if flux.ndim != 2:
            raise ValueError(f"flux must be 2-D (n_objects, n_pixels); found shape {flux.shape}")
        if flux.shape[1] != self.wavelength.size:
            raise ValueError(
                f"flux has {flux.shape[1]} pixels per spectrum but the wavelength grid has "
                f"{self.wavelength.size}: every spectrum must be on the shared grid (resample first)"
            )
        self.flux = flux
        self.ivar = (np.ones_like(flux) if ivar is None
                     else self._check_same_shape(np.asarray(ivar, dtype=np.float32), "ivar"))
        if mask is None:
            mask = ~(self.ivar > 0) | ~np.isfinite(self.ivar) | ~np.isfinite(self.flux)
        self.mask = self._check_same_shape(np.asarray(mask, dtype=bool), "mask")
        self.filled = None if filled is None else self._check_same_shape(np.asarray(filled, dtype=bool), "filled")
        self.flags = None if flags is None else self._check_same_shape(np.asarray(flags, dtype=np.int64), "flags")
        self.meta = self._make_meta(meta, flux.shape[0])
        self.history = list(history or [])
        self.flux_unit = flux_unit

    # ------------------------------------------------------------------ helpers
    def _check_same_shape(self, arr: np.ndarray, name: str) -> np.ndarray:
        if arr.ndim == 1 and self.flux.shape[0] == 1:  # one spectrum given as 1-D, like its flux
            arr = arr[np.newaxis, :]
        if arr.shape != self.flux.shape:
            raise ValueError(f"{name} has shape {arr.shape} but flux has shape {self.flux.shape}")
        return arr

    @staticmethod
    def _make_meta(meta, n: int) -> Table:
        if meta is None:
            meta = Table()
        elif not isinstance(meta, Table):
            meta = Table(meta)
        else:
            meta = meta.copy(copy_data=False)  # a new table sharing column data, like flux
        if len(meta.colnames) and len(meta) != n:
            raise ValueError(f"meta has {len(meta)} rows but there are {n} spectra")
        if "id" not in meta.colnames:
            meta["id"] = np.arange(n).astype(str)
            meta = meta[["id"] + [c for c in meta.colnames if c != "id"]]
        return meta

    # ------------------------------------------------------------------ basics
    @property
    def n_objects(self) -> int:
        return self.flux.shape[0]

    @property
    def n_pixels(self) -> int:
        return self.flux.shape[1]

    @property
    def ids(self) -> np.ndarray:
        """Object ids as a string array."""
        return np.asarray(self.meta["id"]).astype(str)

    def __len__(self) -> int:
        return self.n_objects

    def __repr__(self) -> str:
        w = self.wavelength.value
        steps = ", ".join(h["step"] for h in self.history) or "none"
        return (f"<Spectra: {self.n_objects} objects × {self.n_pixels} pixels, "
                f"{w[0]:.1f}–{w[-1]:.1f} Å, {self.mask.mean():.1%} masked, steps: {steps}>")

    def __getitem__(self, key) -> Spectra:
        """Select objects: an int, slice, id, integer array or boolean array. Always returns a Spectra.

        As with numpy, an int or a slice gives a *view*: its flux, ivar, mask and metadata share
        memory with this container, so writing to them changes it (use :meth:`copy` for an
        independent container). Integer and boolean arrays give copies.
        """
        if isinstance(key, (bool, np.bool_)):
            raise IndexError("a single True/False is not an object index; use a boolean array with one value "
                             "per object")
        if isinstance(key, np.ndarray) and key.ndim == 0 and key.dtype.kind in "iu":
            key = int(key)
        if isinstance(key, (int, np.integer)):
            k = int(key)
            if not -self.n_objects <= k < self.n_objects:
                raise IndexError(f"object index {k} is out of range for {self.n_objects} spectra")
            key = slice(k, k + 1 if k != -1 else None)
        elif isinstance(key, str):
            hits = np.flatnonzero(self.ids == key)
            if hits.size == 0:
                raise KeyError(f"no object with id {key!r}")
            key = hits
        elif not isinstance(key, slice):
            key = np.asarray(key)
            if key.size == 0:
                key = key.astype(np.intp)  # an empty list selects nothing (numpy reads [] as float)
            if key.dtype == bool and key.shape != (self.n_objects,):
                raise IndexError(f"boolean index has shape {key.shape}; expected ({self.n_objects},)")
        return self._replace(
            flux=self.flux[key], ivar=self.ivar[key], mask=self.mask[key],
            filled=None if self.filled is None else self.filled[key],
            flags=None if self.flags is None else self.flags[key],
            meta=self.meta[key],
        )

    def __iter__(self) -> Iterator[Spectra]:
        for i in range(self.n_objects):
            yield self[i]

    def _replace(self, **changes) -> Spectra:
        """A new container with some fields replaced (no validation shortcuts)."""
        fields = dict(wavelength=self.wavelength, flux=self.flux, ivar=self.ivar, mask=self.mask,
                      meta=self.meta, history=copy.deepcopy(self.history), flux_unit=self.flux_unit,
                      filled=self.filled, flags=self.flags)
        fields.update(changes)
        return Spectra(**fields)

    def copy(self) -> Spectra:
        """A deep copy (arrays and metadata)."""
        return self._replace(flux=self.flux.copy(), ivar=self.ivar.copy(), mask=self.mask.copy(),
                             filled=None if self.filled is None else self.filled.copy(),
                             flags=None if self.flags is None else self.flags.copy(),
                             meta=self.meta.copy(copy_data=True))

    def with_step(self, step: str, params: dict | None = None, **changes) -> Spectra:
        """Return a new container with ``changes`` applied and ``step`` appended to the history."""
        out = self._replace(**changes)
        out.history.append({"step": step, "params": dict(params or {})})
        return out

    def iter_blocks(self, block_size: int = 4096) -> Iterator[Spectra]:
        """Yield consecutive row blocks of at most ``block_size`` objects."""
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        for start in range(0, self.n_objects, block_size):
            yield self[start:start + block_size]

    def masked_flux(self, fill_value: float = np.nan) -> np.ndarray:
        """Flux with bad pixels replaced by ``fill_value`` (a new float32 array)."""
        out = self.flux.copy()
        out[self.mask] = fill_value
        return out

    # ------------------------------------------------------------------ combine
    @classmethod
    def concatenate(cls, items: Iterable[Spectra]) -> Spectra:
        """Stack containers that share one grid; metadata rows are stacked too.

        Raises
        ------
        ValueError
            If the grids differ (resample onto a common grid first), the flux units,
            frames (rest or observed) or normalisation differ, or the list is empty.
        """
        items = list(items)
        if not items:
            raise ValueError("nothing to concatenate: the list of Spectra is empty")
        first = items[0]
        for k, s in enumerate(items[1:], start=1):
            for what, mine, theirs in (("flux unit", s.flux_unit, first.flux_unit),
                                       ("frame (rest or observed)", _has_step(s, "deredshift"),
                                        _has_step(first, "deredshift")),
                                       ("normalisation", _has_step(s, "normalize"), _has_step(first, "normalize"))):
                if mine != theirs:
                    raise ValueError(f"cannot concatenate: item {k} differs from item 0 in its {what} "
                                     f"({mine!r} against {theirs!r}); bring them to the same state first")
            if s.n_pixels != first.n_pixels or not np.allclose(
                    s.wavelength.value, first.wavelength.value, rtol=1e-10, atol=0):
                raise ValueError(
                    f"cannot concatenate: item {k} has a different wavelength grid "
                    f"({s.n_pixels} px, {s.wavelength.value[0]:.2f}–{s.wavelength.value[-1]:.2f} Å) from item 0 "
                    f"({first.n_pixels} px, {first.wavelength.value[0]:.2f}–{first.wavelength.value[-1]:.2f} Å); "
                    "resample them onto one grid first"
                )
        filled = None
        if any(s.filled is not None for s in items):
            filled = np.concatenate([s.filled if s.filled is not None else np.zeros_like(s.mask)
                                     for s in items])
        flags = None
        if any(s.flags is not None for s in items):
            flags = np.concatenate([s.flags if s.flags is not None else np.zeros(s.mask.shape, np.int64)
                                    for s in items])
        metas = [s.meta for s in items]
        if len({s.meta["id"].dtype.kind for s in items}) > 1:  # ids of mixed types (int and text) become text
            metas = [m.copy(copy_data=False) for m in metas]
            for m in metas:
                m["id"] = np.asarray(m["id"]).astype(str)
        meta = vstack(metas, join_type="outer", metadata_conflicts="silent")
        histories = [s.history for s in items]
        history = copy.deepcopy(first.history)
        if any(h != histories[0] for h in histories[1:]):
            # the items went through different steps: say so, keeping each one's history
            history.append({"step": "concatenate", "params": {
                "n_items": len(items), "rows": [len(s) for s in items],
                "histories": copy.deepcopy(histories)}})
        return cls(first.wavelength, np.concatenate([s.flux for s in items]),
                   np.concatenate([s.ivar for s in items]), np.concatenate([s.mask for s in items]),
                   meta=meta, history=history, flux_unit=first.flux_unit,
                   filled=filled, flags=flags)

    # ------------------------------------------------------------------ specutils
    def to_specutils(self):
        """Convert to a ``specutils.Spectrum`` (``Spectrum1D`` on older specutils) with N rows.

        Needs the optional ``specutils`` package (``pip install serendip[specutils]``).
        """
        try:
            import specutils
            from astropy.nddata import InverseVariance
        except ImportError as exc:  # pragma: no cover - depends on environment
            raise ImportError("to_specutils needs specutils: pip install 'serendip[specutils]'") from exc
        cls = getattr(specutils, "Spectrum", None) or specutils.Spectrum1D
        unit = u.Unit(self.flux_unit)
        return cls(flux=self.flux * unit, spectral_axis=self.wavelength,
                   uncertainty=InverseVariance(self.ivar / unit**2), mask=self.mask)

    @classmethod
    def from_specutils(cls, spectrum, meta=None) -> Spectra:
        """Build a container from a 1-D or 2-D ``specutils`` spectrum."""
        flux = np.atleast_2d(spectrum.flux.value)
        from astropy.nddata import InverseVariance

        ivar = None
        unc = spectrum.uncertainty
        if unc is not None:
            if not isinstance(unc, InverseVariance):
                with np.errstate(divide="ignore"):
                    unc = unc.represent_as(InverseVariance)
            ivar = np.atleast_2d(unc.array)
            if unc.unit is not None:  # into 1 / (flux unit)^2, whatever unit the uncertainty was given in
                ivar = ivar * float((1 * unc.unit).to_value(spectrum.flux.unit ** -2))
        mask = None if spectrum.mask is None else np.atleast_2d(spectrum.mask)
        return cls(spectrum.spectral_axis, flux, ivar, mask, meta=meta, flux_unit=spectrum.flux.unit.to_string())

    # ------------------------------------------------------------------ summary
    def summary(self) -> Table:
        """A one-row-per-object table: id, z, class, S/N (if known), masked fraction."""
        out = Table()
        out["id"] = self.ids
        for col in ("z", "class", "snr"):
            if col in self.meta.colnames:
                out[col] = self.meta[col]
        out["masked_fraction"] = self.mask.mean(axis=1)
        return out

