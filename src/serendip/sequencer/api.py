"""File-level entry point of the Sequencer (used by ``serendip sequence``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .._logging import get_logger

__all__ = ["load_sequencer_input", "sequence"]

log = get_logger(__name__)


def load_sequencer_input(path) -> tuple[Any, np.ndarray | None, np.ndarray | None]:
    """Read ``(X, grid, ids)`` from a store made by ``serendip ingest``, a ``.npy``/``.npz`` file or a spectra file.

    Opening is :func:`serendip.spectra.open_input`'s (``.npz`` keys: ``flux`` or ``X``, a grid in
    ``grid``, ``wavelength`` or ``loglam``, ids in ``id``, ``ids`` or ``name``). A store or
    container is returned as itself, with ``None`` for grid and ids: the Sequencer reads its
    blocks, grid and ids.
    """
    from ..spectra.inputs import open_input

    opened = open_input(path)
    if opened.is_spectra:
        return opened.data, None, None
    ids = opened.ids if "id" in opened.meta.colnames and not _default_ids(opened.ids) else None
    return opened.data, opened.wavelength, ids


def _default_ids(ids: np.ndarray) -> bool:
    return bool(np.array_equal(ids, np.arange(len(ids)).astype(str)))


def sequence(input, output=None, *, metrics=("EMD", "energy", "KL", "L2"), scales=None, mode="improved",
             method="auto", best_k=None, n_neighbors=15, n_jobs=None, plot=None, random_state=0,
             progress=True):
    """Run the Sequencer on a file and return (and optionally write) the sequence table.

    Parameters
    ----------
    input : path or array-like
        ``.npy``/``.npz`` matrix, a store from ``serendip ingest``, or an array / Spectra.
    output : path, optional
        ``.fits``, ``.parquet``, ``.csv`` or ``.ecsv`` (written atomically).
    plot : path, optional
        PNG of the classic Sequencer figure (:func:`~serendip.sequencer.plot_sequence`).
    Other parameters are those of :class:`~serendip.sequencer.Sequencer`.

    Returns
    -------
    astropy.table.Table
        ``id``, ``position`` (0 = first in the sequence), ``index`` (input row), in
        sequence order; ``meta`` holds elongation, normalised elongation, eta per
        metric and scale, and all parameters.
    """
    from .sequencer import Sequencer

    ids = None
    grid = None
    if isinstance(input, (str, Path)):
        X, grid, ids = load_sequencer_input(input)
        source = str(input)
    else:
        X, source = input, "array"
    seq = Sequencer(metrics=metrics, scales=scales, mode=mode, method=method, best_k=best_k,
                    n_neighbors=n_neighbors, n_jobs=n_jobs, random_state=random_state, progress=progress)
    seq.fit(X, grid)
    if ids is not None and len(ids) == len(seq.ids_):
        seq.ids_ = np.asarray(ids).astype(str)
    tab = seq.to_table()
    tab.meta["input"] = source
    tab.meta["seconds"] = round(seq.timings_["total_s"], 3)
    if output is not None:
        from .._io import write_table

        write_table(tab, output)
    if plot is not None:
        from ..plotting.style import save_png
        from .plot import plot_sequence
        from .sequencer import prepare_input

        flux, g, _ = prepare_input(X, grid, metrics=["L2"])
        fig, _ = plot_sequence(flux, seq.order_, seq.results_, g, elongation=seq.elongation_)
        save_png(fig, plot)
    return tab
