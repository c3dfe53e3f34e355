"""argparse types for the CLI's integer options.

A bad value is reported by argparse against the flag the user typed ("argument --trees: must
be an integer of at least 1; got 0"), not against the Python parameter it is passed on to.
"""
from __future__ import annotations

import argparse


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer; got {text!r}") from None


def int_at_least(minimum: int):
    """An argparse ``type`` accepting integers ``>= minimum``."""

    def parse(text: str) -> int:
        value = _integer(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer of at least {minimum}; got {value}")
        return value

    parse.__name__ = f"int_at_least_{minimum}"
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def n_jobs(text: str) -> int:
    """``--n-jobs``: a positive number of workers, or -1 (all cores), -2 (all but one)…; never 0."""
    value = _integer(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must not be 0: give a number of workers, or -1 for all cores")
    return value
