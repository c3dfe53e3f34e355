"""Fixtures shared by the spectra tests."""
from __future__ import annotations

import importlib

import pytest


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
