"""numba where it pays, numpy where numba is missing: one place that makes the choice."""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ._logging import get_logger

T = TypeVar("T")
log = get_logger(__name__)


def numba_or_numpy(build_numba: Callable[[], T], build_numpy: Callable[[], T], what: str) -> T:
    """Return ``build_numba()``, or ``build_numpy()`` with a warning when numba cannot be imported."""
    try:
        return build_numba()
    except ImportError:
        log.warning("numba is not installed: %s use slower numpy code (install it with: pip install numba)", what)
        return build_numpy()
