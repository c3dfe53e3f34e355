"""Rest-frame vacuum wavelengths (Å) of common spectral lines, for marking plots and tests.

Values are vacuum wavelengths as used by SDSS (e.g. the SDSS line lists).
"""
from __future__ import annotations

#: name -> vacuum rest wavelength in Å
LINES: dict[str, float] = {
    "Lyα": 1215.67,
    "C IV": 1549.06,
    "C III]": 1908.73,
    "Mg II": 2798.75,
    "[O II] 3727": 3727.09,
    "[O II] 3730": 3729.88,
    "[Ne III]": 3869.86,
    "Ca K": 3934.78,
    "Ca H": 3969.59,
    "Hδ": 4102.89,
    "G band": 4305.61,
    "Hγ": 4341.68,
    "Hβ": 4862.68,
    "[O III] 4959": 4960.30,
    "[O III] 5007": 5008.24,
    "Mg b": 5176.7,
    "Na D": 5894.6,  # mean of D2 5891.58 and D1 5897.56 (vacuum)
    "[O I]": 6302.05,
    "[N II] 6548": 6549.86,
    "Hα": 6564.61,
    "[N II] 6583": 6585.27,
    "[S II] 6716": 6718.29,
    "[S II] 6731": 6732.67,
}

#: Lines marked on gallery plots by default.
PLOT_LINES = ("Lyα", "Mg II", "[O II] 3727", "Ca K", "Ca H", "Hβ", "[O III] 4959", "[O III] 5007",
              "Na D", "[N II] 6548", "Hα", "[N II] 6583", "[S II] 6716", "[S II] 6731")

#: Strong night-sky emission lines, vacuum, observed frame, Å: [O I] 5577.34/6300.30/6363.78 and
#: Na D 5889.95/5895.92 (air) converted to vacuum.
SKY_LINES: tuple[float, ...] = (5578.89, 5891.58, 5897.56, 6302.05, 6365.54)
