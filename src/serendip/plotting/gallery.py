"""A gallery of spectra: ids, redshift and scores in each title, rest-frame lines marked (where
the redshift is known), masked pixels shaded, and optional overlays (e.g. the median of similar
objects) and residuals.
"""
from __future__ import annotations

import numpy as np

from ..spectra.lines import LINES, PLOT_LINES
from .style import COLORS, figure, literal

__all__ = ["plot_spectrum_gallery"]


def _as_rows(values, n, m, name):
    if values is None:
        return None
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.shape != (n, m):
        raise ValueError(f"{name} has shape {arr.shape}; expected ({n}, {m}) like the flux")
    return arr


def plot_spectrum_gallery(wavelength, flux=None, mask=None, *, ids=None, z=None, scores=None, overlays=None,
                          residuals=None, lines=PLOT_LINES, rest_frame: bool = True, input_frame: str = "observed",
                          score_label: str = "weirdness", max_spectra: int = 40, figsize=None):
    """Plot N spectra one above the other.

    Parameters
    ----------
    wavelength : array (M,), Quantity, or Spectra
        The grid in Å. A :class:`~serendip.spectra.Spectra` supplies flux, mask, ids and z
        (``meta['z']``) itself.
    flux : array (N, M)
    mask : bool array (N, M), optional
        ``True`` = bad pixel: drawn as a gap with a shaded band.
    ids : sequence of str, optional
    z : array (N,), optional
        Redshifts, used to move between frames and place the lines.
    scores : array (N,) or dict name -> array, optional
        Shown in each title (weirdness: higher = weirder).
    overlays : array (N, M) or dict label -> array (N, M), optional
        Curves drawn over each spectrum, e.g. the median of its most similar objects.
    residuals : array (N, M), optional
        Drawn in a small panel under each spectrum (e.g. an explanation residual).
    lines : sequence of str
        Names in :data:`serendip.spectra.LINES` to mark (default ``PLOT_LINES``).
    rest_frame : bool
        Draw in the rest frame (λ / (1+z)) if the input is observed and ``z`` is known;
        otherwise the lines are shifted to the observed frame. An object of an observed
        input whose ``z`` is missing (NaN) is drawn in the observed frame, whatever
        ``rest_frame`` says, and gets no line markers (their place is unknown); its
        title says "z unknown".
    input_frame : {"observed", "rest"}
        The frame of ``wavelength``.
    max_spectra : int
        Refuse more than this many panels (select first).

    Returns
    -------
    fig, axes
        ``axes`` is an array of the spectrum axes (residual axes are ``fig.axes`` too).
        When every panel is in the same frame, only the bottom axis carries the
        wavelength label ("rest-frame" or "observed-frame"); when frames differ (some
        redshifts missing) every panel carries its own.
    """
    if hasattr(wavelength, "flux") and hasattr(wavelength, "wavelength"):
        sp = wavelength
        wavelength, flux = sp.wavelength, sp.flux if flux is None else flux
        mask = sp.mask if mask is None else mask
        ids = sp.ids if ids is None else ids
        if z is None and "z" in sp.meta.colnames:
            z = np.asarray(np.ma.filled(np.ma.asarray(sp.meta["z"], dtype=float), np.nan))
        if any(h.get("step") == "deredshift" for h in sp.history) or any(
                h.get("step") == "resample" and h.get("params", {}).get("z") for h in sp.history):
            input_frame = "rest"
    if input_frame not in ("observed", "rest"):
        raise ValueError(f"input_frame must be 'observed' or 'rest'; got {input_frame!r}")
    wave = np.asarray(getattr(wavelength, "value", wavelength), dtype=float)
    if flux is None:
        raise ValueError("plot_spectrum_gallery needs flux (or a Spectra as first argument)")
    flux = np.asarray(flux, dtype=float)
    if flux.ndim == 1:
        flux = flux[None, :]
    n, m = flux.shape
    if wave.shape != (m,):
        raise ValueError(f"wavelength has {wave.size} pixels but flux has {m}")
    if n == 0:
        raise ValueError("nothing to plot: flux has no spectra")
    if n > max_spectra:
        raise ValueError(f"{n} spectra requested; at most max_spectra={max_spectra} (select the ones to show)")
    mask = np.zeros_like(flux, dtype=bool) if mask is None else np.asarray(mask, dtype=bool).reshape(n, m)
    ids = [str(i) for i in range(n)] if ids is None else [str(i) for i in np.asarray(ids)]
    zz = np.full(n, np.nan) if z is None else np.asarray(z, dtype=float).reshape(n)
    if isinstance(scores, dict):
        score_dict = {k: np.asarray(v, dtype=float).reshape(n) for k, v in scores.items()}
    elif scores is not None:
        score_dict = {score_label: np.asarray(scores, dtype=float).reshape(n)}
    else:
        score_dict = {}
    if overlays is not None and not isinstance(overlays, dict):
        overlays = {"median of similar objects": overlays}
    overlays = {k: _as_rows(v, n, m, f"overlay {k!r}") for k, v in (overlays or {}).items()}
    residuals = _as_rows(residuals, n, m, "residuals")
    unknown = [name for name in lines if name not in LINES]
    if unknown:
        raise ValueError(f"unknown line name(s) {unknown}; known: {', '.join(LINES)}")

    per = 2 if residuals is not None else 1
    ratios = [3, 1] * n if residuals is not None else [1] * n
    fig, axes = figure(n * per, 1, figsize=figsize or (8.0, (2.0 + 0.6 * (per - 1)) * n + 0.4), squeeze=False,
                       gridspec_kw={"height_ratios": ratios})
    axes = axes[:, 0]
    spec_axes = []
    # per object: the frame drawn and where the rest-frame lines go (None: unknown, not drawn)
    frames, shifts = [], []
    for i in range(n):
        known = bool(np.isfinite(zz[i]))
        if input_frame == "rest":
            frames.append("rest"), shifts.append(1.0)
        elif not known:  # observed input, no redshift: neither the rest frame nor the lines are known
            frames.append("observed"), shifts.append(None)
        elif rest_frame:
            frames.append("rest"), shifts.append(1.0)
        else:
            frames.append("observed"), shifts.append(1.0 + zz[i])
    mixed = len(set(frames)) > 1
    for i in range(n):
        ax = axes[i * per]
        spec_axes.append(ax)
        frame, line_shift = frames[i], shifts[i]
        x = wave / (1 + zz[i]) if (input_frame == "observed" and frame == "rest") else wave
        f = np.where(mask[i], np.nan, flux[i])
        ax.plot(x, f, color="k", lw=0.6, label="flux")
        if mask[i].any():
            ax.fill_between(x, 0, 1, where=mask[i], transform=ax.get_xaxis_transform(), color=COLORS["masked"],
                            alpha=0.35, step="mid", lw=0, label="masked")
        for j, (lab, ov) in enumerate(overlays.items()):
            ax.plot(x, ov[i], lw=0.8, color=[COLORS["model"], COLORS["accent"], COLORS["weird"]][j % 3], label=lab)
        good = np.isfinite(f)
        if good.any():
            lo, hi = np.percentile(f[good], [0.5, 99.5])
            pad = 0.1 * (hi - lo if hi > lo else abs(hi) + 1)
            ax.set_ylim(lo - pad, hi + 2.5 * pad)
        for name in (lines if line_shift is not None else ()):
            lam = LINES[name] * line_shift
            if x[0] <= lam <= x[-1]:
                ax.axvline(lam, color=COLORS["line"], lw=0.5, ls=":")
                ax.text(lam, 0.98, name, rotation=90, va="top", ha="right", fontsize=6, color="0.35",
                        transform=ax.get_xaxis_transform())
        title = f"{ids[i]}"
        if np.isfinite(zz[i]):
            title += f"   z = {zz[i]:.4f}"
        elif input_frame == "observed":
            title += "   z unknown (observed frame, no lines)"
        for k, v in score_dict.items():
            title += f"   {k} = {v[i]:.3g}"
        ax.set_title(literal(title), loc="left", fontsize=8)
        ax.set_ylabel("flux")
        if i == 0 and (overlays or mask[i].any()):
            ax.legend(fontsize=6, loc="upper right", ncols=3)
        if residuals is not None:
            rax = axes[i * per + 1]
            rax.plot(x, residuals[i], color=COLORS["weird"], lw=0.6)
            rax.axhline(0, color="k", lw=0.5)
            rax.set_ylabel("resid.", fontsize=7)
            rax.sharex(ax)
        ax.set_xlim(x[0], x[-1])
        if mixed:  # frames differ between panels: each says its own
            axes[i * per + per - 1].set_xlabel(f"{frame}-frame wavelength [Å]", fontsize=7)
    if not mixed:
        axes[-1].set_xlabel(f"{frames[0]}-frame wavelength [Å]")
    return fig, np.asarray(spec_axes)
