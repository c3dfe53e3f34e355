"""Spectra in memory, on disk, and the steps that clean them.

* :class:`Spectra` — many spectra on one grid (``container``).
* Readers — :func:`read_spectra`, :func:`register_reader`, :func:`supported_formats`
  (SDSS ``spec-*.fits``, MaNGA-style multi-spectrum FITS, wide tables); see :mod:`serendip.spectra.io`.
* Preprocessing — :func:`mask_pixels`, :func:`signal_to_noise`, :func:`deredshift`,
  :func:`resample`, :func:`resample_many`, :func:`make_grid`, :func:`normalize`,
  :func:`fill_masked`; see :mod:`serendip.spectra.preprocess`.
* Storage — :class:`SpectraStore` / :func:`open_store` (HDF5, lazy row blocks) and
  :func:`ingest` (files → clean store); see :mod:`serendip.spectra.store` and
  :mod:`serendip.spectra.ingest`.

"""
from .container import STANDARD_META_COLUMNS, Spectra
from .lines import LINES, PLOT_LINES, SKY_LINES

# Imported eagerly (all light: numpy/astropy, h5py and numba are imported inside functions).
# Binding the functions here also makes ``serendip.spectra.resample`` and ``serendip.spectra.ingest``
# the functions rather than the submodules of the same name.
from .io import SpectraReadError, identify_format, read_spectra, register_reader, supported_formats  # noqa: E402
from .preprocess import (DEFAULT_AND_MASK_BITS, SPPIXMASK, and_mask_value, deredshift, fill_masked,  # noqa: E402
                         mask_pixels, normalize, signal_to_noise)
from .resample import make_grid, pixel_edges, resample, resample_arrays, resample_many  # noqa: E402
from .store import SpectraStore, is_store, open_store  # noqa: E402
from .inputs import OpenedInput, open_input  # noqa: E402
from .ingest import IngestResult, ingest  # noqa: E402
from .tables import write_wide_table  # noqa: E402

__all__ = ["Spectra", "STANDARD_META_COLUMNS", "LINES", "PLOT_LINES", "SKY_LINES",
           "read_spectra", "register_reader", "supported_formats", "identify_format", "SpectraReadError",
           "mask_pixels", "deredshift", "normalize", "fill_masked", "signal_to_noise", "DEFAULT_AND_MASK_BITS",
           "SPPIXMASK", "and_mask_value", "resample", "resample_many", "make_grid", "pixel_edges",
           "resample_arrays", "SpectraStore", "open_store", "is_store", "open_input", "OpenedInput", "ingest", "IngestResult", "write_wide_table"]
