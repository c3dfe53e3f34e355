"""A local web page to look at ranked objects, label them and export the labels.

:func:`make_server` serves one results table (a weirdness table from ``serendip
weird`` or a sequence table from ``serendip sequence``) on ``127.0.0.1``. Each
object gets a row with its rank, id and score, a plot of its spectrum or feature
vector (when the input data are given), and label buttons. Labels are written to
a CSV file at every click, atomically (temporary file, then rename), so stopping
the server never loses or half-writes them; reopening the page with the same
labels file picks them up again; if a save fails (disk full, unwritable folder),
the click gets an error and the label is not kept, so the page never shows a
label that is not on disk. ``/export.csv`` downloads the shown rows (the same
``top`` rows, in the page's order) as CSV with the columns ``rank``, ``id``, the
score column when there is one (``weirdness`` or ``position``), ``label`` and
``note``; the table's other columns are not included. The labels file is UTF-8
(read with or without a byte-order mark).

Row order (see :class:`BrowseState`): a table with a ``position`` column is a
sequence table and is shown in sequence order (position ascending) even when it
also carries a ``weirdness`` column, as the pipeline's sequence table does;
otherwise a ``weirdness`` column gives weirdest first (higher = weirder); else
the file order. Missing values (NaN, masked, blank CSV cells) always go last.

The server listens on ``127.0.0.1`` by default. ``POST /label`` refuses
cross-site requests: a request whose ``Origin`` (or, without one, ``Referer``)
is not this server's own address gets ``403``; requests with neither header
(``curl``, scripts) are accepted. Malformed requests get ``400`` with a JSON
error, among them a request without a ``label`` field (removing a label takes an
explicit empty ``label=``); a label that could not be written gets ``500``.

Only the Python standard library is needed (``http.server``); the page has no
external scripts, so it works offline.
"""
from __future__ import annotations

import csv
import errno
import html
import io
import json
import numbers
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np

from .._io import atomic_path, locked
from .._logging import get_logger

__all__ = ["LABELS", "ORDERS", "LabelBook", "BrowseState", "make_server", "browse"]

log = get_logger(__name__)

#: Default label choices shown as buttons.
LABELS = ("interesting", "artefact", "normal", "unsure")

#: Row orders understood by :class:`BrowseState`.
ORDERS = ("auto", "position", "weirdness", "table")

#: Largest ``POST /label`` body accepted (bytes).
MAX_BODY = 64 * 1024

#: Seconds a connection may stall (e.g. while sending its body) before it is dropped.
REQUEST_TIMEOUT = 30

#: Listen backlog: connections the kernel queues before the server accepts them
#: (the standard library's 5 resets bursts of parallel requests, e.g. many plots at once).
REQUEST_QUEUE_SIZE = 64

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_WILDCARD = ("", "0.0.0.0", "::")


def _as_float(col, name: str) -> np.ndarray:
    """Values of a column as floats, with masked entries (blank CSV cells, masked FITS values) as NaN."""
    try:
        return np.asarray(np.ma.filled(np.ma.asarray(col).astype(float), np.nan), dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the {name!r} column must be numeric to order the rows; got dtype "
                         f"{np.asarray(col).dtype}") from exc


def _check_top(top):
    """``top`` as an int, or None for "all rows" (``None`` or ``0``); negative values are an error."""
    if top is None:
        return None
    if isinstance(top, bool) or not isinstance(top, numbers.Integral):
        raise ValueError(f"top must be a whole number of rows (0 or None = all); got {top!r}")
    if top < 0:
        raise ValueError(f"top must be >= 0 (0 or None = all rows; CLI: --top 0); got {top}")
    return None if top == 0 else int(top)


def _check_port(port) -> int:
    """``port`` as an int in 0-65535 (0 = any free port); anything else is a ValueError."""
    if isinstance(port, bool):
        value = None
    elif isinstance(port, numbers.Integral):
        value = int(port)
    else:
        try:
            value = int(str(port).strip())
        except ValueError:
            value = None
    if value is None or not 0 <= value <= 65535:
        raise ValueError(f"port must be a whole number from 0 to 65535 (0 = any free port); got {port!r}")
    return value


class _Server(ThreadingHTTPServer):
    """The threading HTTP server with a longer listen backlog (:data:`REQUEST_QUEUE_SIZE`); IPv6 for an IPv6 host."""

    request_queue_size = REQUEST_QUEUE_SIZE

    def __init__(self, address, handler):
        if ":" in str(address[0]):  # an IPv6 literal such as ::1 or ::
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)


class LabelBook:
    """Labels by object id, kept in a CSV file (``id,label,note,time``) rewritten atomically on each change.

    The file is written as UTF-8 and read as UTF-8 with or without a byte-order
    mark (as spreadsheet programs save it). Each change re-reads the file and rewrites
    it while holding a lock (the file ``<path>.lock`` beside it, left in place), so
    several sessions on one labels file, in one process or several, keep each other's
    labels.

    Parameters
    ----------
    path : path-like
        The labels CSV; read if it exists.
    choices : sequence of str
        The labels allowed.

    Raises
    ------
    ValueError
        When ``path`` exists but is not a UTF-8 CSV file with ``id`` and ``label`` columns.
    """

    def __init__(self, path, choices=LABELS):
        self.path = Path(path)
        self.choices = tuple(choices)
        self._lock = threading.Lock()
        self.labels: dict[str, dict] = {}
        if self.path.exists():
            self.labels = self._read()

    def _read(self) -> dict[str, dict]:
        labels: dict[str, dict] = {}
        try:
            with open(self.path, newline="", encoding="utf-8-sig") as fh:
                reader = csv.DictReader(fh)
                if reader.fieldnames is None or "id" not in reader.fieldnames or "label" not in reader.fieldnames:
                    raise ValueError(f"{self.path} is not a labels file: it needs 'id' and 'label' columns, "
                                     f"found {reader.fieldnames}")
                for row in reader:
                    labels[row["id"]] = {"label": row["label"], "note": row.get("note", "") or "",
                                         "time": row.get("time", "") or ""}
        except UnicodeDecodeError as exc:
            raise ValueError(f"{self.path} is not a UTF-8 text file (byte {exc.start}: {exc.reason}); "
                             "save the labels file as UTF-8 CSV") from None
        return labels

    def set(self, obj_id: str, label: str, note: str | None = None) -> dict:
        """Set (or, with ``label=""``, remove) the label of ``obj_id`` and rewrite the file.

        Parameters
        ----------
        obj_id : str
        label : str
            One of ``choices``, or ``""`` to remove the entry (label and note).
        note : str or None
            The new note; ``None`` (the default) keeps the object's current note, so
            changing a label never erases it. Pass ``""`` to clear the note.

        Returns
        -------
        dict
            The saved entry (``label``, ``note``, ``time``; empty strings once removed).

        Raises
        ------
        ValueError
            For a label that is not one of ``choices``.
        OSError
            When the file cannot be written (disk full, unwritable folder, ...). The
            labels in memory are then unchanged: a change is kept only once it is
            on disk.
        """
        if label and label not in self.choices:
            raise ValueError(f"unknown label {label!r}; choose one of {', '.join(self.choices)}")
        with self._lock, locked(self.path):
            # start from the file as it is now, not the copy read at start-up: another browse session (or a
            # hand edit) on the same file keeps its labels; only this object's entry changes. The file lock
            # makes the read and the write one step for other processes too.
            on_disk = self._read() if self.path.exists() else {}
            new = dict(on_disk)  # a new dict: self.labels changes only after the write succeeded
            if label:
                if note is None:
                    note = new.get(obj_id, {}).get("note", "")
                new[obj_id] = {"label": label, "note": note, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
            else:
                new.pop(obj_id, None)
            self._write(new)
            self.labels = new  # one reference swap: readers see the old or the new labels, never a mix
            return new.get(obj_id, {"label": "", "note": "", "time": ""})

    def _write(self, labels: dict[str, dict]) -> None:
        """Write ``labels`` to :attr:`path` atomically, as UTF-8."""
        with atomic_path(self.path) as tmp:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh)
                w.writerow(["id", "label", "note", "time"])
                for k, v in labels.items():
                    w.writerow([k, v["label"], v["note"], v["time"]])


class BrowseState:
    """What the server shows: the ordered table, optional object data, and the label book.

    Parameters
    ----------
    table : astropy.table.Table
        Needs an ``id`` column.
    data : OpenedInput, optional
        The objects (see :func:`serendip.spectra.open_input`), matched to the table by id.
    labels : LabelBook
    top : int or None
        Show only the first ``top`` rows (after ordering); ``None`` or ``0`` shows all.
        A negative value is an error.
    title : str, optional
        Page title (default: the table's ``meta['algorithm']``).
    order : {"auto", "position", "weirdness", "table"}
        Row order. ``"auto"`` (default) decides from the columns, in this order:

        1. a ``position`` column: the table is a sequence (from ``serendip sequence``
           or the pipeline's ``tables/sequence``), shown in sequence order, position
           ascending — even when it also has a ``weirdness`` column;
        2. a ``weirdness`` column: weirdest first (**higher = weirder**);
        3. otherwise the table's own order.

        ``"position"`` and ``"weirdness"`` force that column (it must exist); ``"table"``
        keeps the file order. Missing values (NaN, masked, blank CSV cells) always go
        last, whatever value hides under the mask.
    export_name : str
        File name offered for ``/export.csv``.

    Attributes
    ----------
    score_name : str or None
        The column the rows are ordered by and shown in the score column.
    """

    def __init__(self, table, data=None, labels=None, top=None, title=None, *, order="auto",
                 export_name="serendip_labeled.csv"):
        if "id" not in table.colnames:
            raise ValueError(f"the table needs an 'id' column; it has {table.colnames}")
        if order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}; got {order!r}")
        top = _check_top(top)
        if order == "auto":
            order = ("position" if "position" in table.colnames
                     else "weirdness" if "weirdness" in table.colnames else "table")
        if order != "table" and order not in table.colnames:
            raise ValueError(f"order={order!r} needs a {order!r} column; the table has {table.colnames}")
        self.score_name = None if order == "table" else order
        values = _as_float(table[order], order) if self.score_name else None
        if order == "weirdness":
            # -NaN is NaN, which argsort puts last: missing weirdness ranks below every real value
            rows = np.argsort(-values, kind="stable")
        elif order == "position":
            rows = np.argsort(values, kind="stable")
        else:
            rows = np.arange(len(table))
        if top is not None:
            rows = rows[:top]
        id_col = table["id"]
        if np.ma.isMaskedArray(id_col) and np.ma.getmaskarray(id_col).any():
            bad = np.flatnonzero(np.ma.getmaskarray(id_col))
            raise ValueError(f"{bad.size} row(s) of the table have no id (masked), first at row {int(bad[0])}; "
                             "every object needs an id to be labelled")
        all_ids = np.asarray(id_col).astype(str)
        uniq, counts = np.unique(all_ids, return_counts=True)
        if (counts > 1).any():
            dup = uniq[counts > 1]
            raise ValueError(f"{dup.size} id(s) appear more than once in the table, e.g. {dup[:3].tolist()}; a label "
                             "is stored per id, so each object needs its own id")
        self.table = table[rows]
        self.ids = all_ids[rows]
        self.id_set = frozenset(self.ids)
        self.scores = None if values is None else values[rows]
        self._integer_scores = bool(self.score_name) and np.asarray(table[order]).dtype.kind in "iu"
        self.data = data
        self.row_of = None
        if data is not None:
            data_ids = np.asarray(data.ids).astype(str)
            lookup = {v: i for i, v in enumerate(data_ids)}
            missing = [i for i in self.ids if i not in lookup]
            if missing:
                shown = ", ".join(map(str, missing[:3]))  # plain text, not a list of np.str_ reprs
                raise ValueError(f"{len(missing)} id(s) of the table are not in the data, e.g. {shown}; "
                                 "give the INPUT the table was computed from")
            self.row_of = lookup
        self.labels = labels
        self.title = title or table.meta.get("algorithm", "serendip results")
        self.export_name = export_name

    # ---------------------------------------------------------------- content
    def score_text(self, k: int, *, full: bool = False) -> str:
        """The score of shown row ``k`` as text: ``""`` when missing, integers without a decimal point.

        ``full=True`` gives every digit (for the export); otherwise 4 significant digits.
        """
        if self.scores is None:
            return ""
        v = self.scores[k]
        if not np.isfinite(v):
            return "" if np.isnan(v) else str(v)
        if self._integer_scores or (full and float(v).is_integer() and abs(v) < 2 ** 53
                                    and self.score_name == "position"):
            return str(int(v))
        return repr(float(v)) if full else f"{v:.4g}"

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
        """The HTML page.

        Each row has label buttons and a note box. A button click posts ``id`` and
        ``label`` only (no ``note`` field), so the server keeps the object's note;
        editing the note box posts ``note`` explicitly (an empty box clears it).
        """
        esc = html.escape
        rows = []
        for k, obj_id in enumerate(self.ids):
            entry = self.labels.labels.get(obj_id, {}) if self.labels else {}
            cur = entry.get("label", "")
            buttons = "".join(
                f'<button class="{"on" if cur == c else ""}" data-id="{esc(obj_id)}" data-label="{esc(c)}">'
                f"{esc(c)}</button>" for c in (self.labels.choices if self.labels else ()))
            note_box = (f'<input class="note" type="text" placeholder="note" data-id="{esc(obj_id)}" '
                        f'value="{esc(entry.get("note", ""))}">' if self.labels else "")
            img = f'<img loading="lazy" src="/plot/{k}.png" alt="{esc(obj_id)}">' if self.data is not None else ""
            rows.append(f"<tr><td>{k + 1}</td><td>{esc(obj_id)}</td><td>{esc(self.score_text(k))}</td>"
                        f'<td>{img}</td><td class="lab">{buttons}{note_box}</td></tr>')
        head = self.score_name or ""
        export_cols = ", ".join(["rank", "id"] + ([head] if head else []) + ["label", "note"])
        how = {"weirdness": "weirdest first, higher = weirder",
               "position": "in sequence order (position ascending)"}.get(self.score_name, "in table order")
        return f"""<!doctype html><html><head><meta charset="utf-8"><title>{esc(str(self.title))}</title>
<style>body{{font-family:sans-serif;margin:1em}}td{{padding:2px 6px;border-bottom:1px solid #ddd}}
button{{margin:1px}}button.on{{background:#333;color:#fff}}input.note{{width:14em;margin-left:4px}}</style>
</head><body>
<h1>{esc(str(self.title))}</h1><p>{len(self.ids)} objects, {esc(how)}.
Labels are saved at each click to <code>{esc(str(self.labels.path) if self.labels else '')}</code>;
a note is saved with the object's label when you leave its box.
<a href="/export.csv">Export these rows with their labels (CSV: {esc(export_cols)})</a></p>
<table><tr><th>#</th><th>id</th><th>{esc(head)}</th><th></th><th>label</th></tr>{''.join(rows)}</table>
<script>
// resolves to the server's JSON answer, or to {{error: ...}} when the label was not saved
function send(fields) {{
  return fetch("/label", {{method: "POST", body: new URLSearchParams(fields)}}).then(function (r) {{
    return r.json().catch(function () {{ return {{}}; }}).then(function (j) {{
      if (!r.ok && !j.error) {{ j.error = "not saved: the server answered " + r.status + " " + r.statusText; }}
      return j;
    }});
  }}, function (e) {{
    return {{error: "not saved: the server could not be reached (" + e + ")"}};
  }});
}}
function show(cell, j) {{
  cell.querySelectorAll("button").forEach(function (o) {{ o.classList.toggle("on", o.dataset.label === j.label); }});
  var box = cell.querySelector("input.note");
  if (box) {{ box.value = j.note || ""; }}
}}
document.querySelectorAll("button[data-id]").forEach(function (b) {{
  b.addEventListener("click", function () {{
    var on = b.classList.contains("on");
    // no "note" field: the server keeps the object's note
    send({{id: b.dataset.id, label: on ? "" : b.dataset.label}}).then(function (j) {{
      if (j.error) {{ alert(j.error); return; }}
      show(b.parentNode, j);
    }});
  }});
}});
document.querySelectorAll("input.note").forEach(function (box) {{
  box.addEventListener("change", function () {{
    var on = box.parentNode.querySelector("button.on");
    if (!on) {{ alert("choose a label first: the note is saved with it"); return; }}
    // an explicit "note" field, possibly empty: sets (or clears) the note
    send({{id: box.dataset.id, label: on.dataset.label, note: box.value}}).then(function (j) {{
      if (j.error) {{ alert(j.error); return; }}
      show(box.parentNode, j);
    }});
  }});
}});
</script></body></html>"""

    def export_csv(self) -> str:
        """The shown table's rank, id, score and label as CSV text (a missing score is an empty cell)."""
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(["rank", "id"] + ([self.score_name] if self.score_name else []) + ["label", "note"])
        for k, obj_id in enumerate(self.ids):
            lab = self.labels.labels.get(obj_id, {}) if self.labels else {}
            score = [self.score_text(k, full=True)] if self.score_name else []
            w.writerow([k + 1, obj_id] + score + [lab.get("label", ""), lab.get("note", "")])
        return out.getvalue()


class _BadRequest(Exception):
    """A request the handler answers with ``code`` and a JSON error."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def _handler(state: BrowseState):
    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT  # a client that stalls (e.g. sends less than its Content-Length) is dropped

        def log_message(self, fmt, *args):  # route to our logger, not stderr
            log.debug("web: " + fmt, *args)

        def _send(self, code, body, ctype, headers=()):
            data = body.encode() if isinstance(body, str) else body
            try:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers:
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client left: nobody to answer
                log.debug("web: client closed the connection before the %d reply", code)
                self.close_connection = True

        def _json(self, code, obj):
            self._send(code, json.dumps(obj), "application/json")

        def _own_addresses(self) -> set:
            """(host, port) pairs a page of this server has as its origin."""
            host, port = self.server.server_address[:2]
            host = str(host).lower()
            own = {(host, port)}
            named = getattr(self.server, "requested_host", None)
            if named:  # --host NAME: the page is opened at http://NAME:port
                own.add((named, port))
            if host in _LOOPBACK or host in _WILDCARD:
                own |= {(h, port) for h in _LOOPBACK}
            if host in _WILDCARD:  # listening everywhere: whatever address the browser used to reach us
                try:
                    u = urlparse("//" + (self.headers.get("Host") or ""))
                    if u.hostname:
                        own.add((u.hostname.lower(), u.port or 80))
                except ValueError:
                    pass
            return own

        def _check_origin(self):
            """Refuse a cross-site POST: Origin (else Referer) must be this server; neither header is fine."""
            source = self.headers.get("Origin")
            what = "Origin"
            if source is None:
                source, what = self.headers.get("Referer"), "Referer"
            if source is None:
                return
            try:
                u = urlparse(source.strip())
                addr = (u.hostname.lower(), u.port or (443 if u.scheme == "https" else 80)) \
                    if u.scheme in ("http", "https") and u.hostname else None
            except ValueError:
                addr = None
            if addr is None or addr not in self._own_addresses():
                raise _BadRequest(403, f"cross-site request refused: {what} {source!r} is not this page's "
                                       "server")

        def _read_form(self) -> dict:
            length = self.headers.get("Content-Length")
            try:
                n = int(length) if length is not None else 0
                if n < 0:
                    raise ValueError
            except ValueError:
                raise _BadRequest(400, f"bad Content-Length header {length!r}: expected a byte count") from None
            if n > MAX_BODY:
                raise _BadRequest(413, f"request body of {n} bytes is too large (at most {MAX_BODY})")
            try:
                raw = self.rfile.read(n)
            except (TimeoutError, OSError):
                raise _BadRequest(408, f"the request body did not arrive within {self.timeout} s") from None
            if len(raw) < n:
                raise _BadRequest(400, f"the request body has {len(raw)} bytes, not the {n} of its Content-Length")
            try:
                return parse_qs(raw.decode("utf-8"), keep_blank_values=True, errors="strict", max_num_fields=16)
            except UnicodeDecodeError:  # raw bytes or %-escapes that are not UTF-8
                raise _BadRequest(400, "the request body must be UTF-8 form data "
                                       "(application/x-www-form-urlencoded)") from None
            except ValueError:  # parse_qs: more than max_num_fields fields
                raise _BadRequest(400, "the request has too many form fields (a label needs id, label "
                                       "and note)") from None

        def do_GET(self):
            path = urlparse(self.path).path
            if path in ("/", "/index.html"):
                return self._send(200, state.page(), "text/html; charset=utf-8")
            if path == "/export.csv":
                return self._send(200, state.export_csv(), "text/csv; charset=utf-8",
                                  [("Content-Disposition", f'attachment; filename="{state.export_name}"')])
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
                self.close_connection = True  # the body is not read
                return self._json(404, {"error": f"no endpoint {self.path!r}"})
            try:
                self._check_origin()
                form = self._read_form()
            except _BadRequest as exc:
                self.close_connection = True  # the body may be unread or partly read
                return self._json(exc.code, {"error": str(exc)})
            obj_id = (form.get("id") or [""])[0]
            if "label" not in form:  # an explicit empty "label=" removes; a missing field is a mistake
                return self._json(400, {"error": "the request has no 'label' field; send label=<choice>, or an "
                                                 "empty label= to remove the object's label and note"})
            label = form["label"][0]
            note = form["note"][0] if "note" in form else None  # no note field: keep the current note
            if obj_id not in state.id_set:
                return self._json(404, {"error": f"unknown object id {obj_id!r}"})
            if state.labels is None:
                return self._json(400, {"error": "this page was started without a labels file"})
            try:
                saved = state.labels.set(obj_id, label, note)
            except ValueError as exc:
                return self._json(400, {"error": str(exc)})
            except OSError as exc:
                reason = exc.strerror or str(exc) or type(exc).__name__
                log.error("web: could not save the label of %r to %s: %s", obj_id, state.labels.path, reason)
                return self._json(500, {"error": f"not saved: could not write the labels file "
                                                 f"{state.labels.path}: {reason}"})
            return self._json(200, {"id": obj_id, **saved})

    return Handler


def _export_name(source) -> str:
    """Download name for ``/export.csv``: ``<table name>_labeled.csv`` with only safe characters."""
    stem = Path(str(source)).name.split(".")[0] if source else ""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_") or "serendip"
    return f"{stem}_labeled.csv"


def make_server(table, data=None, *, labels="labels.csv", top=200, host="127.0.0.1", port=8765,
                choices=LABELS, order="auto"):
    """Build (not start) the HTTP server for a results table.

    Parameters
    ----------
    table : astropy.table.Table or path-like
        A weirdness table (``id``, ``weirdness``; **higher = weirder**, shown first), a
        sequence table (``id``, ``position``; shown in sequence order even when it also
        has ``weirdness``), or any table with ``id``. See :class:`BrowseState` for the
        ordering rule.
    data : path-like, array, Spectra or store, optional
        The objects, to plot each row (anything :func:`serendip.spectra.open_input` opens).
    labels : path-like
        CSV file for the labels; read if it exists, rewritten atomically on every change.
    top : int or None
        Number of rows shown (default 200); ``None`` or ``0`` shows all. Negative is an error.
    host, port : str, int
        Where to listen; ``port`` is 0-65535, and ``port=0`` picks a free port (see
        ``server.server_address``).
    choices : sequence of str
        Label buttons.
    order : {"auto", "position", "weirdness", "table"}
        Row order (see :class:`BrowseState`).

    Returns
    -------
    http.server.ThreadingHTTPServer
        With ``server.state`` (:class:`BrowseState`). Call ``serve_forever()`` to run it.

    Raises
    ------
    ValueError
        For a table without rows or ``id`` column, a bad ``top``, ``order`` or ``port``,
        ids missing from ``data``, or a ``labels`` file that is not a UTF-8 labels CSV.
    OSError
        When the server cannot listen on ``host:port`` (port in use, unknown host,
        no permission); the message names the address.
    """
    from .._io import read_table

    top = _check_top(top)
    port = _check_port(port)
    source = "the table"
    name = None
    if not hasattr(table, "colnames"):
        source = name = str(table)
        table = read_table(table)
    if len(table) == 0:
        raise ValueError(f"{source} has no rows: nothing to browse")
    opened = None
    if data is not None:
        from ..spectra import open_input

        opened = open_input(data)
    state = BrowseState(table, opened, LabelBook(labels, choices), top=top, order=order,
                        export_name=_export_name(name))
    try:
        server = _Server((host, port), _handler(state))
    except OSError as exc:  # the constructor closes its socket itself on failure
        hint = ("; another program (or another serendip browse) is using it: choose another port, "
                "or 0 for any free port" if exc.errno == errno.EADDRINUSE else "")
        where = f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
        err = OSError(f"cannot listen on {where}: {exc.strerror or exc}{hint}")
        err.errno = exc.errno
        raise err from exc
    server.state = state
    server.requested_host = str(host).strip("[]").lower()  # a name (e.g. the machine's) a page may use as origin
    return server


def browse(table, data=None, *, labels="labels.csv", top=200, host="127.0.0.1", port=8765, open_browser=True,
           order="auto", on_ready=None):
    """Serve the page until interrupted (Ctrl-C); returns the labels file path.

    See :func:`make_server` for the parameters. ``on_ready(url, n_objects)`` is
    called once the server listens (the CLI prints the address with it); the
    address is also logged at INFO level.
    """
    server = make_server(table, data, labels=labels, top=top, host=host, port=port, order=order)
    url = f"http://{server.server_address[0]}:{server.server_address[1]}/"
    log.info("serving %d objects at %s (Ctrl-C to stop); labels -> %s", len(server.state.ids), url, labels)
    if on_ready is not None:
        on_ready(url, len(server.state.ids))
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
