"""Logging and progress bars shared by every serendip module.

serendip never prints from library code: it logs to the ``serendip`` logger
and shows :mod:`tqdm` progress bars on long work. ``progress=False`` turns the
bars off everywhere.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

logger = logging.getLogger("serendip")
logger.addHandler(logging.NullHandler())


def get_logger(name: str) -> logging.Logger:
    """Return the child logger ``serendip.<name>`` (``name`` may be a module ``__name__``)."""
    if name.startswith("serendip"):
        return logging.getLogger(name)
    return logging.getLogger(f"serendip.{name}")


def progress(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str | None = None,
    enabled: bool = True,
    unit: str = "it",
    leave: bool = False,
) -> Iterator[T] | tqdm:
    """Wrap ``iterable`` in a tqdm bar, or return it unchanged when ``enabled`` is false.

    With ``iterable=None`` a manual bar is returned (``bar.update(k)``); when
    disabled that bar is a tqdm object with ``disable=True``, so callers never
    need to branch.
    """
    if iterable is None:
        return tqdm(total=total, desc=desc, disable=not enabled, unit=unit, leave=leave, dynamic_ncols=True)
    if not enabled:
        return iter(iterable)
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, dynamic_ncols=True)
