"""A local web page to look at ranked objects, label them and export the labels.

:func:`make_server` serves one results table (a weirdness table from ``serendip
weird`` or a sequence table from ``serendip sequence``) on ``127.0.0.1``. Each
object gets a row with its rank, id and score, a plot of its spectrum or feature
vector (when the input data are given), and label buttons. Labels are written to
a CSV file at every click, atomically (temporary file, then rename), so stopping
the server never loses or half-writes them; reopening the page with the same
labels file picks them up again. ``/export.csv`` returns the table joined with the
labels.

Only the Python standard library is needed (``http.server``); the page has no
external scripts, so it works offline.
"""
from __future__ import annotations

import csv
import html
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np

from .._io import atomic_path
from .._logging import get_logger

__all__ = ["LABELS", "LabelBook", "BrowseState", "make_server", "browse"]

log = get_logger(__name__)

#: Default label choices shown as buttons.
LABELS = ("interesting", "artefact", "normal", "unsure")


class LabelBook:
    """Labels by object id, kept in a CSV file (``id,label,note,time``) rewritten atomically on each change."""

    def __init__(self, path, choices=LABELS):
        self.path = Path(path)
        self.choices = tuple(choices)
        self._lock = threading.Lock()
        self.labels: dict[str, dict] = {}
        if self.path.exists():
            with open(self.path, newline="") as fh:
                reader = csv.DictReader(fh)
                if reader.fieldnames is None or "id" not in reader.fieldnames or "label" not in reader.fieldnames:
                    raise ValueError(f"{self.path} is not a labels file: it needs 'id' and 'label' columns, "
                                     f"found {reader.fieldnames}")
                for row in reader:
                    self.labels[row["id"]] = {"label": row["label"], "note": row.get("note", "") or "",
                                              "time": row.get("time", "") or ""}

    def set(self, obj_id: str, label: str, note: str = "") -> dict:
        """Set (or, with ``label=""``, remove) the label of ``obj_id`` and rewrite the file."""
        if label and label not in self.choices:
            raise ValueError(f"unknown label {label!r}; choose one of {', '.join(self.choices)}")
        with self._lock:
            if label:
                self.labels[obj_id] = {"label": label, "note": note,
                                       "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
            else:
                self.labels.pop(obj_id, None)
            self._write()
            return self.labels.get(obj_id, {"label": "", "note": "", "time": ""})

    def _write(self):
        with atomic_path(self.path) as tmp:
            with open(tmp, "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["id", "label", "note", "time"])
                for k, v in self.labels.items():
                    w.writerow([k, v["label"], v["note"], v["time"]])


class BrowseState:
    """What the server shows: the ranked table, optional object data, and the label book.

    Parameters
    ----------
    table : astropy.table.Table
        Needs an ``id`` column. Sorted by ``weirdness`` (highest = weirdest first) when
        present, else by ``position`` (sequence order), else kept in its order.
    data : OpenedInput, optional
        The objects (see :func:`serendip.spectra.open_input`), matched to the table by id.
    labels : LabelBook
    top : int or None
        Show only the first ``top`` rows.
    """

    def __init__(self, table, data=None, labels=None, top=None, title=None):
        if "id" not in table.colnames:
            raise ValueError(f"the table needs an 'id' column; it has {table.colnames}")
        if "weirdness" in table.colnames:
            order = np.argsort(-np.asarray(table["weirdness"], dtype=float), kind="stable")
            self.score_name = "weirdness"
        elif "position" in table.colnames:
            order = np.argsort(np.asarray(table["position"]), kind="stable")
            self.score_name = "position"
        else:
            order = np.arange(len(table))
            self.score_name = None
        if top is not None:
            order = order[: int(top)]
        self.table = table[order]
        self.ids = np.asarray(self.table["id"]).astype(str)
        self.id_set = frozenset(self.ids)
        self.data = data
        self.row_of = None
        if data is not None:
            data_ids = np.asarray(data.ids).astype(str)
            lookup = {v: i for i, v in enumerate(data_ids)}
            missing = [i for i in self.ids if i not in lookup]
            if missing:
                raise ValueError(f"{len(missing)} id(s) of the table are not in the data, e.g. {missing[:3]}; "
                                 "give the INPUT the table was computed from")
            self.row_of = lookup
        self.labels = labels
        self.title = title or table.meta.get("algorithm", "serendip results")

    # ---------------------------------------------------------------- content
    def plot_png(self, k: int) -> bytes:
        """PNG of object ``k`` of the shown table (its spectrum, or its feature vector)."""
        from matplotlib.figure import Figure  # no pyplot: safe in the server's threads

        if self.data is None:
            raise LookupError("no data were given to plot")
        row = self.row_of[self.ids[k]]
        obj = self.data.data
        if self.data.is_spectra:  # container or store: slicing gives a Spectra
            y = np.asarray(obj[row:row + 1].flux, dtype=float)[0]
        else:
            y = np.asarray(obj[row], dtype=float)
        x = self.data.wavelength if self.data.wavelength is not None else np.arange(y.size)
        fig = Figure(figsize=(6.0, 1.8), dpi=80)
        ax = fig.add_subplot()
        ax.plot(np.asarray(x, dtype=float), y, lw=0.7, color="k")
        ax.set_xlabel("wavelength [Å]" if self.data.wavelength is not None else "feature")
        ax.tick_params(labelsize=7)
        fig.tight_layout(pad=0.3)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()

    def page(self) -> str:
        """The HTML page."""
        esc = html.escape
        rows = []
        for k, obj_id in enumerate(self.ids):
            cur = self.labels.labels.get(obj_id, {}).get("label", "") if self.labels else ""
            score = ""
            if self.score_name:
                score = f"{float(self.table[self.score_name][k]):.4g}"
            buttons = "".join(
                f'<button class="{"on" if cur == c else ""}" data-id="{esc(obj_id)}" data-label="{esc(c)}">'
                f"{esc(c)}</button>" for c in (self.labels.choices if self.labels else ()))
            img = f'<img loading="lazy" src="/plot/{k}.png" alt="{esc(obj_id)}">' if self.data is not None else ""
            rows.append(f"<tr><td>{k + 1}</td><td>{esc(obj_id)}</td><td>{score}</td><td>{img}</td>"
                        f'<td class="lab">{buttons}</td></tr>')
        head = self.score_name or ""
        note = "higher = weirder" if self.score_name == "weirdness" else ""
        return f"""<!doctype html><html><head><meta charset="utf-8"><title>{esc(str(self.title))}</title>
<style>body{{font-family:sans-serif;margin:1em}}td{{padding:2px 6px;border-bottom:1px solid #ddd}}
button{{margin:1px}}button.on{{background:#333;color:#fff}}</style></head><body>
<h1>{esc(str(self.title))}</h1><p>{len(self.ids)} objects, {esc(note)}.
Labels are saved at each click to <code>{esc(str(self.labels.path) if self.labels else '')}</code>.
<a href="/export.csv">Export table with labels (CSV)</a></p>
<table><tr><th>#</th><th>id</th><th>{esc(head)}</th><th></th><th>label</th></tr>{''.join(rows)}</table>
<script>
document.querySelectorAll("button[data-id]").forEach(function (b) {{
  b.addEventListener("click", function () {{
    var on = b.classList.contains("on");
    var body = new URLSearchParams({{id: b.dataset.id, label: on ? "" : b.dataset.label}});
    fetch("/label", {{method: "POST", body: body}}).then(function (r) {{ return r.json(); }}).then(function (j) {{
      if (j.error) {{ alert(j.error); return; }}
      b.parentNode.querySelectorAll("button").forEach(function (o) {{
        o.classList.toggle("on", o.dataset.label === j.label); }});
    }});
  }});
}});
</script></body></html>"""

    def export_csv(self) -> str:
        """The shown table's id, rank, score and label as CSV text."""
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(["rank", "id"] + ([self.score_name] if self.score_name else []) + ["label", "note"])
        for k, obj_id in enumerate(self.ids):
            lab = self.labels.labels.get(obj_id, {}) if self.labels else {}
            score = [float(self.table[self.score_name][k])] if self.score_name else []
            w.writerow([k + 1, obj_id] + score + [lab.get("label", ""), lab.get("note", "")])
        return out.getvalue()


def _handler(state: BrowseState):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):  # route to our logger, not stderr
            log.debug("web: " + fmt, *args)

        def _send(self, code, body, ctype):
            data = body.encode() if isinstance(body, str) else body
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _json(self, code, obj):
            self._send(code, json.dumps(obj), "application/json")

        def do_GET(self):
            path = urlparse(self.path).path
            if path in ("/", "/index.html"):
                return self._send(200, state.page(), "text/html; charset=utf-8")
            if path == "/export.csv":
                return self._send(200, state.export_csv(), "text/csv; charset=utf-8")
            if path.startswith("/plot/") and path.endswith(".png"):
                try:
                    k = int(path[len("/plot/"):-len(".png")])
                    if not 0 <= k < len(state.ids):
                        raise IndexError
                    return self._send(200, state.plot_png(k), "image/png")
                except (ValueError, IndexError):
                    return self._json(404, {"error": f"no object number {path[6:-4]!r}"})
                except LookupError as exc:
                    return self._json(404, {"error": str(exc)})
            return self._json(404, {"error": f"no page {path!r}"})

        def do_POST(self):
            if urlparse(self.path).path != "/label":
                return self._json(404, {"error": f"no endpoint {self.path!r}"})
            n = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(n).decode(), keep_blank_values=True)
            obj_id = (form.get("id") or [""])[0]
            label = (form.get("label") or [""])[0]
            note = (form.get("note") or [""])[0]
            if obj_id not in state.id_set:
                return self._json(404, {"error": f"unknown object id {obj_id!r}"})
            if state.labels is None:
                return self._json(400, {"error": "this page was started without a labels file"})
            try:
                saved = state.labels.set(obj_id, label, note)
            except ValueError as exc:
                return self._json(400, {"error": str(exc)})
            return self._json(200, {"id": obj_id, **saved})

    return Handler


def make_server(table, data=None, *, labels="labels.csv", top=200, host="127.0.0.1", port=8765,
                choices=LABELS):
    """Build (not start) the HTTP server for a results table.

    Parameters
    ----------
    table : astropy.table.Table or path-like
        A weirdness table (``id``, ``weirdness``; **higher = weirder**, shown first) or a
        sequence table (``id``, ``position``), or any table with ``id``.
    data : path-like, array, Spectra or store, optional
        The objects, to plot each row (anything :func:`serendip.spectra.open_input` opens).
    labels : path-like
        CSV file for the labels; read if it exists, rewritten atomically on every change.
    top : int or None
        Number of rows shown (default 200).
    host, port : str, int
        Where to listen; ``port=0`` picks a free port (see ``server.server_address``).
    choices : sequence of str
        Label buttons.

    Returns
    -------
    http.server.ThreadingHTTPServer
        With ``server.state`` (:class:`BrowseState`). Call ``serve_forever()`` to run it.
    """
    from .._io import read_table

    source = "the table"
    if not hasattr(table, "colnames"):
        source = str(table)
        table = read_table(table)
    if len(table) == 0:
        raise ValueError(f"{source} has no rows: nothing to browse")
    opened = None
    if data is not None:
        from ..spectra import open_input

        opened = open_input(data)
    state = BrowseState(table, opened, LabelBook(labels, choices), top=top)
    server = ThreadingHTTPServer((host, int(port)), _handler(state))
    server.state = state
    return server


def browse(table, data=None, *, labels="labels.csv", top=200, host="127.0.0.1", port=8765, open_browser=True):
    """Serve the page until interrupted (Ctrl-C); returns the labels file path.

    See :func:`make_server` for the parameters.
    """
    server = make_server(table, data, labels=labels, top=top, host=host, port=port)
    url = f"http://{server.server_address[0]}:{server.server_address[1]}/"
    log.warning("serving %d objects at %s (Ctrl-C to stop); labels -> %s", len(server.state.ids), url, labels)
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return Path(labels)
