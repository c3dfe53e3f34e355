"""File-level entry point of the Sequencer (used by ``serendip sequence``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .._logging import get_logger

__all__ = ["load_sequencer_input", "sequence", "positive_floor"]

#: Metrics that compare distributions: EMD and energy need flux >= 0, KL needs flux > 0.
_POSITIVE_METRICS = ("EMD", "energy", "KL")

#: Above this fraction of clipped values, ``sequence`` warns that the floor reshapes the data.
_CLIP_WARN_FRACTION = 0.25


def positive_floor(X, relative: float = 1e-3) -> float:
    """The flux floor used to make spectra positive: ``relative`` × the median of the non-zero ``|X|``.

    Real spectra go to zero or below in noisy or masked pixels, while EMD, energy
    and KL compare distributions and need positive values. Clipping the noise at a
    small fraction of the typical flux changes nothing where there is signal. The
    floor follows the data's own scale, so fluxes in cgs units (~1e-17) get a floor
    of ~1e-20; only an all-zero array falls back to ``relative`` itself.
    """
    a = np.abs(np.asarray(X, dtype=np.float64))
    a = a[a > 0]
    return float(relative * (float(np.median(a)) if a.size else 1.0))

log = get_logger(__name__)


def _zero_sum_chunk(flux: np.ndarray, scales) -> bool:
    """Whether some spectrum sums to zero over some chunk of some scale (EMD/energy cannot normalise it)."""
    from .distances import default_scales
    from .sequencer import zero_sum_chunks

    m = flux.shape[1]
    valid = default_scales(m) if scales is None else [int(x) for x in scales if 1 <= int(x) <= m]
    return next(zero_sum_chunks(flux, valid), None) is not None


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
             floor="auto", progress=True):
    """Run the Sequencer on a file and return (and optionally write) the sequence table.

    Parameters
    ----------
    input : path or array-like
        ``.npy``/``.npz`` matrix, a store from ``serendip ingest``, or an array / Spectra.
    output : path, optional
        ``.fits``, ``.parquet``, ``.csv`` or ``.ecsv`` (written atomically).
    plot : path, optional
        The classic Sequencer figure (:func:`~serendip.sequencer.plot_sequence`), in the
        format its extension names (``.png``, ``.pdf``, ``.svg``, ...; PNG, with ``.png``
        added, when it has none). The path written is ``meta['plot']``.
    floor : "auto", float or None
        EMD and energy need flux >= 0 and KL flux > 0, and ingested spectra have
        noisy pixels at or below zero. ``"auto"`` (default): when a metric needs it
        and some value breaks its rule, values below :func:`positive_floor` (10⁻³ of
        the median non-zero absolute flux, so it follows the data's units) are raised
        to it; more than a quarter of the values clipped gives a warning. A number
        (>= 0; > 0 with KL): clip at that value.
        ``None``: no clipping (non-positive values are then an error). The value
        used and the number of clipped pixels are in ``meta`` (``floor``, ``n_clipped``).
    Other parameters are those of :class:`~serendip.sequencer.Sequencer`.

    Returns
    -------
    astropy.table.Table
        ``id``, ``position`` (0 = first in the sequence), ``index`` (input row), in
        sequence order; ``meta`` holds elongation, normalised elongation, eta per
        metric and scale, and all parameters.
    """
    from .sequencer import Sequencer

    if output is not None:  # a name that cannot be written is an error now, not after the fit
        from .._io import check_table_path

        check_table_path(output)
    if plot is not None:
        from ..plotting.style import figure_path

        figure_path(plot)
    ids = None
    grid = None
    if isinstance(input, (str, Path)):
        X, grid, ids = load_sequencer_input(input)
        source = str(input)
    else:
        X, source = input, "array"
    metric_list = [metrics] if isinstance(metrics, str) else list(metrics)
    xlabel = "wavelength [Å]" if hasattr(X, "wavelength") else ("pixel" if grid is None else None)
    floor_used, n_clipped = None, 0
    if floor is not None and any(m in _POSITIVE_METRICS for m in metric_list):
        from .sequencer import prepare_input

        # read once with no positivity or chunk-sum check: the clipping below fixes those values
        flux, g, fids = prepare_input(X, grid, metrics=["L2"], check_chunks=False)
        kl = "KL" in metric_list
        if isinstance(floor, str):
            if floor != "auto":
                raise ValueError(f"floor must be 'auto', a number or None, got {floor!r}")
            # KL needs every value > 0; EMD and energy only >= 0 and a positive sum in every chunk
            # (exact zeros elsewhere are left alone)
            needed = np.any(flux <= 0) if kl else (np.any(flux < 0) or _zero_sum_chunk(flux, scales))
            value = positive_floor(flux) if needed else None
        else:
            value = float(floor)
            if not (value > 0 if kl else value >= 0):  # also refuses NaN
                raise ValueError(f"floor must be a {'positive' if kl else 'non-negative'} number (EMD and energy "
                                 f"need flux >= 0, KL > 0), 'auto' or None; got {floor!r} (CLI: --floor)")
        if value is not None:
            n_clipped = int(np.count_nonzero(flux < value))
            flux = np.maximum(flux, value)
            floor_used = value
            log.info("sequence: %d of %d flux values raised to the floor %.3g (EMD, energy and KL need positive "
                     "flux; floor=None, CLI --floor none, turns this off)", n_clipped, flux.size, value)
            if n_clipped > _CLIP_WARN_FRACTION * flux.size:
                log.warning("sequence: the floor %.3g raised %.0f%% of all flux values; the spectra are then "
                            "shaped by the floor, not the data: check the input (negative continuum? wrong "
                            "units?) or choose floor= yourself", value, 100 * n_clipped / flux.size)
        X, grid = flux, g
        if ids is None and fids is not None and not _default_ids(np.asarray(fids).astype(str)):
            ids = fids
    seq = Sequencer(metrics=metrics, scales=scales, mode=mode, method=method, best_k=best_k,
                    n_neighbors=n_neighbors, n_jobs=n_jobs, random_state=random_state, progress=progress)
    try:
        seq.fit(X, grid=grid)
    except ValueError as exc:
        # KL's "non-positive", EMD/energy's "negative" values and "zero or negative sum" chunks
        if floor is None and any(m in _POSITIVE_METRICS for m in metric_list) and \
                ("non-positive" in str(exc) or "negative" in str(exc)):
            raise ValueError(f"{exc}; or let serendip clip at a floor: floor='auto' "
                             "(serendip sequence --floor auto, the default)") from exc
        raise
    if ids is not None and len(ids) == len(seq.ids_):
        seq.ids_ = np.asarray(ids).astype(str)
    tab = seq.to_table()
    tab.meta["input"] = source
    tab.meta["floor"] = floor_used
    tab.meta["n_clipped"] = n_clipped
    tab.meta["seconds"] = round(seq.timings_["total_s"], 3)
    if output is not None:
        from .._io import write_table

        write_table(tab, output)
    if plot is not None:
        from ..plotting.style import save_figure
        from .plot import plot_sequence
        from .sequencer import prepare_input

        flux, g, _ = prepare_input(X, grid, metrics=["L2"], check_chunks=False)  # checked by the fit
        fig, _ = plot_sequence(flux, seq.order_, seq.results_, g, elongation=seq.elongation_, xlabel=xlabel)
        tab.meta["plot"] = str(save_figure(fig, plot))
    return tab
