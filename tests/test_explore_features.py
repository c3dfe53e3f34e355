"""Which columns of a catalogue table are features for detect, embed and cluster."""
from __future__ import annotations

import logging

import numpy as np
from astropy.table import Table

from serendip.explore.workflows import load_input


def _catalogue(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return Table({"objid": np.arange(n) + 1237650000000000000, "ra": rng.uniform(0, 360, n),
                  "dec": rng.uniform(-10, 10, n), "plate": rng.integers(266, 3000, n),
                  "mjd": rng.integers(51600, 55000, n), "fiberID": rng.integers(1, 640, n),
                  "target_class": rng.integers(0, 2, n), "u_g": rng.normal(1.5, 0.3, n),
                  "g_r": rng.normal(0.6, 0.2, n), "r": rng.normal(17.5, 0.8, n)})


def test_bookkeeping_and_label_columns_are_not_features(tmp_path, caplog):
    """plate, mjd, fibre, positions and a 0/1 class column were features: the weirdest objects were the
    odd plates (Spearman 0.40 with plate on the DR14 table)."""
    path = tmp_path / "cat.ecsv"
    _catalogue().write(path)
    with caplog.at_level(logging.INFO, logger="serendip"):
        got = load_input(path)
    assert got.columns == ["u_g", "g_r", "r"]
    assert got.features.shape == (60, 3)
    assert "plate" in caplog.text and "--columns" in caplog.text
    assert "plate" in got.meta.colnames  # still carried as metadata


def test_listed_columns_are_used_as_given(tmp_path):
    path = tmp_path / "cat.ecsv"
    _catalogue().write(path)
    got = load_input(path, columns=["r", "plate"])
    assert got.columns == ["r", "plate"] and got.features.shape == (60, 2)
