"""Built-in data: the synthetic survey, its SDSS-format writer and the SDSS archive downloader.

* :func:`make_survey` — synthetic SDSS-like galaxy spectra with a hidden ordering
  parameter and planted anomalies of four kinds (:mod:`.anomalies`).
* :func:`write_sdss_files` — write a survey as real-format ``spec-PLATE-MJD-FIBER.fits`` files.
* :func:`fetch_sdss` — download spectra from the SDSS Science Archive Server, with cache,
  retries and resume.
"""
from .anomalies import ANOMALY_KINDS, ANOMALY_SUBKINDS
from .survey import SPPIXMASK, SyntheticSurvey, make_survey

__all__ = ["make_survey", "SyntheticSurvey", "SPPIXMASK", "ANOMALY_KINDS", "ANOMALY_SUBKINDS",
           "write_sdss_files", "fetch_sdss", "DEFAULT_BASE_URL"]


def __getattr__(name):
    if name == "write_sdss_files":
        from .sdss_writer import write_sdss_files
        return write_sdss_files
    if name in ("fetch_sdss", "DEFAULT_BASE_URL"):
        from . import fetch
        return getattr(fetch, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
