"""A self-contained HTML evaluation report (figures embedded as base64 PNG) for a trained model."""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from .._io import atomic_write_text

__all__ = ["write_report", "render_report"]

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}.verdict{font-weight:bold}
img{max-width:100%;border:1px solid #eee;margin:4px}.note{color:#666;font-size:0.9em}"""


def _png_b64(fig) -> str:
    from ..plotting.style import RC
    import matplotlib as mpl

    buf = io.BytesIO()
    with mpl.rc_context(RC):
        fig.savefig(buf, format="png", dpi=100)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _table(rows, header) -> str:
    out = ["<table><tr>" + "".join(f"<th class='l'>{html.escape(str(h))}</th>" for h in header) + "</tr>"]
    for r in rows:
        cells = []
        for k, v in enumerate(r):
            text = f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)
            cells.append(f"<td{' class=l' if k == 0 else ''}>{html.escape(text)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "".join(out) + "</table>"


def _provenance_rows(result, provenance: dict | None) -> list[tuple[str, str]]:
    """What the model was trained on and with: the caller's facts (source table, row filter...),
    the features and how they were made, and the library versions."""
    import datetime as _dt

    from .persist import _versions

    rows = [(str(k), str(v)) for k, v in (provenance or {}).items() if v is not None]
    rows.append(("features", ", ".join(map(str, result.feature_names))))
    recipe = result.feature_recipe or {}
    if recipe.get("colors"):
        bands = recipe.get("bands") or {}
        rows.append(("colours", f"{recipe['colors']} (magnitude columns "
                                f"{', '.join(f'{b}={c}' for b, c in bands.items()) or 'found by name'}; "
                                f"reference band {recipe.get('reference')})"))
    rows.append(("target", str(result.target_name)))
    rows.append(("trained", str(result.summary.get("trained_utc", "not recorded"))))
    rows.append(("report written", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")))
    rows.append(("versions", ", ".join(f"{k} {v}" for k, v in _versions().items())))
    return rows


def render_report(result, title: str | None = None, *, provenance: dict | None = None) -> str:
    """Return the report's HTML text (figures inlined; no external files).

    ``provenance`` holds facts the result does not know, such as the source table and the
    row filter (``{"source table": ..., "row filter": ...}``); they open the report's
    provenance table, followed by the features, the target and the library versions.
    """
    title = title or f"serendip learn: {result.algorithm} {result.task}"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    cv = np.asarray(result.cv_scores)
    parts.append(f"<p>Chosen <b>{html.escape(result.algorithm)}</b> with {html.escape(str(result.best_params))}. "
                 f"Cross-validated {html.escape(result.scoring)}: {cv.mean():.4f} ± {cv.std():.4f} over "
                 f"{cv.size} folds{html.escape(result.cv_caveat())}. The held-out test split "
                 f"({result.summary.get('n_test')} objects, "
                 f"{html.escape(str(result.summary.get('split')))}) was used once, for the scores below.</p>")
    derived = result.derived_features()
    if derived:
        parts.append(f"<p>{html.escape(derived)}</p>")
    if result.learning_curve:
        lc = result.learning_curve
        parts.append(f"<p class='verdict'>Learning curve: {html.escape(lc['verdict'])}.</p>"
                     f"<p>{html.escape(lc['explanation'])}</p>")
    parts.append("<h2>Test scores</h2>")
    scal = [(k, v) for k, v in result.test_scores.items() if np.isscalar(v)]
    parts.append(_table(scal, ["metric", "value"]))
    pc = result.test_scores.get("per_class")
    if pc is not None:
        parts.append("<h3>Per class</h3>")
        parts.append(_table([tuple(row) for row in pc], pc.colnames))
    parts.append("<h2>Candidates (validation folds only)</h2>")
    parts.append(_table([tuple(r) for r in result.candidates], result.candidates.colnames))
    if result.candidates.meta.get("note"):
        parts.append(f"<p class='note'>{html.escape(str(result.candidates.meta['note']))}.</p>")
    parts.append("<h2>Figures</h2>")
    for name, fig in result.figures().items():
        parts.append(f"<img alt='{html.escape(name)}' src='data:image/png;base64,{_png_b64(fig)}'>")
    if result.importances is not None:
        parts.append("<h2>Permutation importances (test split)</h2>")
        parts.append(_table([tuple(r) for r in result.importances[:30]], result.importances.colnames))
    if result.recommendations:
        parts.append("<h2>Why these candidates</h2><ul>")
        for rec in result.recommendations:
            reasons = "; ".join(rec.reasons)
            caveats = "; ".join(rec.caveats)
            parts.append(f"<li><b>{html.escape(rec.algorithm)}</b> ({rec.score:.2f}): {html.escape(reasons)}"
                         f"<br><span class='note'>caveats: {html.escape(caveats)}</span></li>")
        parts.append("</ul>")
    parts.append("<h2>Training data</h2><pre>")
    parts.append(html.escape(json.dumps({k: v for k, v in result.summary.items()
                                         if k not in ("feature_mean", "feature_std")}, indent=1, default=str)))
    parts.append("</pre>")
    parts.append("<h2>Provenance</h2>")
    parts.append(_table(_provenance_rows(result, provenance), ["what", "value"]))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(result, path, *, png=None, title: str | None = None, provenance: dict | None = None) -> Path:
    """Write the HTML report to ``path`` (and, if ``png`` is given, a multi-panel summary PNG), atomically.

    ``provenance`` is passed to :func:`render_report` (source table, row filter...).
    """
    path = Path(path)
    atomic_write_text(path, render_report(result, title, provenance=provenance))
    if png is not None:
        from ..plotting.style import save_png
        from .figures import summary_figure

        save_png(summary_figure(result), png)
    return path
