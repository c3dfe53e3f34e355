"""Shared fixtures. Real survey data are read from ``../shared/data`` and never copied here."""
from __future__ import annotations

import importlib
import os
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

REPO_ROOT = Path(__file__).resolve().parents[1]
_DEFAULT_SHARED = REPO_ROOT.parent / "shared" / "data"


def _shared_data_dir() -> Path:
    return Path(os.environ.get("SERENDIP_SHARED_DATA", _DEFAULT_SHARED)).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ``../shared/data`` (override with ``SERENDIP_SHARED_DATA``).

    Tests that need it are skipped when it is absent, unless
    ``SERENDIP_REQUIRE_SHARED_DATA=1`` (set by ``.ci/run``) turns that into a failure.
    """
    path = _shared_data_dir()
    if not path.is_dir():
        msg = f"real survey data not found at {path}"
        if os.environ.get("SERENDIP_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def sdss_fits_dir(shared_data) -> Path:
    """Folder holding the 32 real SDSS/BOSS ``spec-*.fits`` files."""
    return shared_data / "sdss_spec_lite_sample" / "fits"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture
def interrupt_reading(monkeypatch):
    """``arm(n)``: make ingest's n-th file read raise KeyboardInterrupt (as Ctrl-C would).

    ``arm`` returns ``restore()``, which puts the real reader back.
    """
    ing = importlib.import_module("serendip.spectra.ingest")  # the module (the package attribute is the function)
    real = ing.read_spectra

    def arm(n: int):
        calls = {"n": 0}

        def flaky(path, format=None):
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt
            return real(path, format=format)

        monkeypatch.setattr(ing, "read_spectra", flaky)
        return lambda: monkeypatch.setattr(ing, "read_spectra", real)

    return arm
