"""The local browse page: ranking, plots, labels saved atomically and reloaded, export, clear errors."""
from __future__ import annotations

import csv
import errno
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest
from astropy.table import Table

from serendip.web import LabelBook, make_server


@pytest.fixture
def served(tmp_path):
    rng = np.random.default_rng(0)
    flux = rng.normal(1.0, 0.1, size=(12, 50))
    ids = np.array([f"obj{i:02d}" for i in range(12)])
    wave = np.linspace(4000.0, 6000.0, 50)
    np.savez(tmp_path / "data.npz", flux=flux, id=ids, wavelength=wave)
    weird = rng.uniform(size=12)
    tab = Table({"id": ids, "weirdness": weird})
    tab.write(tmp_path / "weird.ecsv")
    servers = []

    def start(**kw):
        kw.setdefault("labels", tmp_path / "labels.csv")
        server = make_server(tmp_path / "weird.ecsv", tmp_path / "data.npz", port=0, **kw)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", server

    yield start, tmp_path, ids, weird
    for s in servers:
        s.shutdown()
        s.server_close()


def _get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.headers["Content-Type"], r.read()


def _post(url, **form):
    data = urllib.parse.urlencode(form).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_page_lists_weirdest_first_with_plots(served):
    start, _, ids, weird = served
    base, server = start(top=5)
    status, ctype, body = _get(base + "/")
    assert status == 200 and ctype.startswith("text/html")
    page = body.decode()
    expected = ids[np.argsort(-weird)][:5]
    positions = [page.index(f"<td>{i}</td>") for i in expected]
    assert positions == sorted(positions)  # weirdest first
    assert ids[np.argsort(-weird)][5] not in page  # only the top 5
    assert "higher = weirder" in page
    status, ctype, png = _get(base + "/plot/0.png")
    assert status == 200 and ctype == "image/png" and png[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(urllib.error.HTTPError) as err:
        _get(base + "/plot/99.png")
    assert err.value.code == 404


def test_labels_are_saved_reloaded_and_exported(served):
    start, tmp_path, ids, weird = served
    base, _ = start()
    top = ids[np.argmax(weird)]
    assert _post(base + "/label", id=top, label="interesting", note="broad Halpha?") [0] == 200
    assert _post(base + "/label", id=ids[0], label="artefact")[0] == 200
    rows = list(csv.DictReader(open(tmp_path / "labels.csv")))
    assert {r["id"]: r["label"] for r in rows} == {top: "interesting", ids[0]: "artefact"}
    assert not list(tmp_path.glob(".labels.*partial*"))  # the atomic temporary file is gone
    # clearing a label removes it from the file
    assert _post(base + "/label", id=ids[0], label="")[0] == 200
    assert [r["id"] for r in csv.DictReader(open(tmp_path / "labels.csv"))] == [top]
    # a new server on the same labels file shows the saved label, and the export joins it
    base2, _ = start()
    page = _get(base2 + "/")[2].decode()
    assert f'class="on" data-id="{top}" data-label="interesting"' in page
    status, ctype, body = _get(base2 + "/export.csv")
    assert ctype.startswith("text/csv")
    exported = list(csv.DictReader(io.StringIO(body.decode())))
    assert len(exported) == len(ids) and exported[0]["id"] == top and exported[0]["rank"] == "1"
    assert exported[0]["label"] == "interesting" and exported[0]["note"] == "broad Halpha?"
    assert float(exported[0]["weirdness"]) == pytest.approx(weird.max())


def test_bad_requests_get_clear_errors(served, tmp_path):
    start, _, ids, _ = served
    base, _ = start()
    code, body = _post(base + "/label", id="nobody", label="interesting")
    assert code == 404 and "unknown object id 'nobody'" in body["error"]
    code, body = _post(base + "/label", id=ids[0], label="pretty")
    assert code == 400 and "unknown label 'pretty'" in body["error"] and "interesting" in body["error"]
    # a table without ids, ids missing from the data, and a file that is not a labels file
    Table({"x": [1.0]}).write(tmp_path / "noid.ecsv")
    with pytest.raises(ValueError, match="'id' column"):
        make_server(tmp_path / "noid.ecsv", port=0, labels=tmp_path / "l.csv")
    Table({"id": ["zzz"], "weirdness": [1.0]}).write(tmp_path / "other.ecsv")
    with pytest.raises(ValueError, match=r"not in the data, e.g. zzz; "):
        make_server(tmp_path / "other.ecsv", tmp_path / "data.npz", port=0, labels=tmp_path / "l.csv")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a labels file"):
        LabelBook(tmp_path / "bad.csv")


def test_duplicate_or_missing_ids_are_refused(tmp_path):
    from astropy.table import MaskedColumn

    with pytest.raises(ValueError, match=r"appear more than once.*'3'"):
        make_server(Table({"id": ["1", "2", "3", "3"], "weirdness": [0.1, 0.2, 0.3, 0.4]}), port=0,
                    labels=tmp_path / "l.csv")
    with pytest.raises(ValueError, match="no id \\(masked\\), first at row 1"):
        make_server(Table({"id": MaskedColumn([1, 2, 3], mask=[False, True, False]), "weirdness": [0.1, 0.2, 0.3]}),
                    port=0, labels=tmp_path / "l.csv")


def test_too_many_form_fields_get_their_own_message(served):
    start, _, ids, _ = served
    base, _ = start()
    form = {f"f{k}": "x" for k in range(20)}
    code, body = _post(base + "/label", id=ids[0], label="interesting", **form)
    assert code == 400 and "too many form fields" in body["error"]


def test_sequence_table_in_sequence_order(tmp_path):
    tab = Table({"id": ["c", "a", "b"], "position": [2, 0, 1]})
    server = make_server(tab, port=0, labels=tmp_path / "l.csv")
    try:
        assert list(server.state.ids) == ["a", "b", "c"]
        assert server.state.score_name == "position"
    finally:
        server.server_close()


def test_cli_browse_is_registered():
    from serendip.cli import build_parser

    args = build_parser().parse_args(["browse", "w.fits", "--port", "0", "--no-open"])
    assert args.port == 0 and args.no_open and args.func.__name__ == "_browse"


def _export(base) -> dict:
    body = _get(base + "/export.csv")[2].decode("utf-8")
    return {r["id"]: (r["label"], r["note"]) for r in csv.DictReader(io.StringIO(body))}


def test_failed_write_is_an_error_and_keeps_no_ghost_label(served):
    start, tmp_path, ids, _ = served
    (tmp_path / "afile").write_text("not a folder\n")
    labels = tmp_path / "afile" / "labels.csv"  # its parent is a regular file: the write must fail
    base, server = start(labels=labels)
    code, body = _post(base + "/label", id=ids[0], label="interesting", note="n")
    assert code == 500
    assert str(labels) in body["error"] and "not saved" in body["error"]
    assert ids[0] not in server.state.labels.labels
    assert _export(base)[ids[0]] == ("", "")
    assert f'class="on" data-id="{ids[0]}"' not in _get(base + "/")[2].decode()
    # the page tells the user when a save fails instead of failing silently
    page = _get(base + "/")[2].decode()
    assert "not saved" in page and "r.ok" in page


def test_failed_rewrite_keeps_the_previous_label(served, monkeypatch):
    start, tmp_path, ids, _ = served
    base, server = start()
    assert _post(base + "/label", id=ids[1], label="normal", note="keep me")[0] == 200

    def disk_full(self, labels):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(LabelBook, "_write", disk_full)
    code, body = _post(base + "/label", id=ids[1], label="artefact", note="lost")
    assert code == 500 and "No space left on device" in body["error"] and "labels.csv" in body["error"]
    code, _ = _post(base + "/label", id=ids[1], label="")  # a failed removal keeps the entry too
    assert code == 500
    assert server.state.labels.labels[ids[1]]["label"] == "normal"
    assert _export(base)[ids[1]] == ("normal", "keep me")
    rows = list(csv.DictReader(open(tmp_path / "labels.csv", encoding="utf-8")))
    assert [(r["id"], r["label"], r["note"]) for r in rows] == [(ids[1], "normal", "keep me")]


def test_post_without_label_field_is_refused(served):
    start, _, ids, _ = served
    base, server = start()
    assert _post(base + "/label", id=ids[2], label="unsure", note="look again")[0] == 200
    code, body = _post(base + "/label", id=ids[2])
    assert code == 400 and "'label'" in body["error"]
    code, body = _post(base + "/label", id=ids[2], note="only a note")
    assert code == 400
    assert server.state.labels.labels[ids[2]]["note"] == "look again"
    assert _post(base + "/label", id=ids[2], label="")[0] == 200  # an explicit empty label removes it
    assert ids[2] not in server.state.labels.labels


def test_labels_file_is_utf8_with_or_without_bom(tmp_path):
    path = tmp_path / "labels.csv"
    book = LabelBook(path)
    book.set("obj01", "interesting", "café – Hα")
    assert "café – Hα".encode("utf-8") in path.read_bytes()
    assert LabelBook(path).labels["obj01"]["note"] == "café – Hα"
    # as a spreadsheet saves it: with a UTF-8 byte-order mark
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfid,label,note,time\r\nobj02,normal,caf\xc3\xa9,\r\n")
    assert LabelBook(bom).labels == {"obj02": {"label": "normal", "note": "café", "time": ""}}
    # a file in another encoding is a clear error naming the file
    latin = tmp_path / "latin1.csv"
    latin.write_bytes("id,label,note\nobj03,normal,café\n".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.csv.*UTF-8"):
        LabelBook(latin)


def test_port_is_checked(tmp_path):
    tab = Table({"id": ["a", "b"], "weirdness": [1.0, 2.0]})
    for bad in (99999, 65536, -1, True, 1.5, "http"):
        with pytest.raises(ValueError, match="port must be a whole number from 0 to 65535"):
            make_server(tab, port=bad, labels=tmp_path / "l.csv")
    from serendip.cli import build_parser

    for bad in ("99999", "-1", "x"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["browse", "w.fits", "--port", bad])
    assert build_parser().parse_args(["browse", "w.fits", "--port", "65535"]).port == 65535


def test_busy_port_error_names_the_address(tmp_path):
    tab = Table({"id": ["a", "b"], "weirdness": [1.0, 2.0]})
    first = make_server(tab, port=0, labels=tmp_path / "l.csv")
    try:
        port = first.server_address[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}: .*another port") as err:
            make_server(tab, port=port, labels=tmp_path / "l.csv")
        assert err.value.errno == errno.EADDRINUSE
    finally:
        first.server_close()


def test_many_parallel_clients(served):
    start, _, ids, _ = served
    base, server = start()
    assert server.request_queue_size >= 64

    def fetch(k):
        return _get(f"{base}/plot/{k % len(ids)}.png")[0]

    with ThreadPoolExecutor(max_workers=24) as pool:
        assert list(pool.map(fetch, range(48))) == [200] * 48


def test_two_label_books_on_one_file_keep_each_others_labels(tmp_path):
    """Each server wrote back the copy it read at start-up, undoing the other's labels."""
    a = LabelBook(tmp_path / "labels.csv")
    b = LabelBook(tmp_path / "labels.csv")
    a.set("x1", "interesting")
    b.set("x2", "artefact")
    a.set("x3", "boring" if "boring" in a.choices else a.choices[0])
    saved = LabelBook(tmp_path / "labels.csv").labels
    assert set(saved) == {"x1", "x2", "x3"} and saved["x2"]["label"] == "artefact"


def test_label_write_waits_for_another_process_holding_the_file(tmp_path):
    """The re-read and the rewrite are one step: a session that holds the labels file's lock (here
    this test, through a separate open file, as another process would) makes a label click wait."""
    from serendip._io import locked

    path = tmp_path / "labels.csv"
    book = LabelBook(path)
    with locked(path):
        worker = threading.Thread(target=book.set, args=("x1", "interesting"))
        worker.start()
        worker.join(0.5)
        assert worker.is_alive() and not path.exists()  # was written at once: nothing held the cycle together
    worker.join(10)
    assert not worker.is_alive() and LabelBook(path).labels["x1"]["label"] == "interesting"


def test_label_books_in_two_processes_lose_no_labels(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "labels.csv"
    go = tmp_path / "go"
    code = ("import os, sys, time; from serendip.web import LabelBook\n"
            "b = LabelBook(sys.argv[1])\n"
            "while not os.path.exists(sys.argv[3]): time.sleep(0.005)\n"  # start together
            "for i in range(60): b.set(f'{sys.argv[2]}{i}', 'interesting')\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), tag, str(go)]) for tag in ("a", "b")]
    time.sleep(1.0)
    go.touch()
    assert [p.wait(120) for p in procs] == [0, 0]
    assert len(LabelBook(path).labels) == 120


def test_a_named_host_and_ipv6_are_served(tmp_path):
    import socket

    tab = Table({"id": ["a", "b"], "weirdness": [0.2, 0.9]})
    name = socket.gethostname()
    try:
        socket.getaddrinfo(name, None)
    except OSError:
        pytest.skip("this machine's name does not resolve")
    for host, url_host in ((name, name), ("::1", "[::1]")):
        try:
            server = make_server(tab, host=host, port=0, labels=tmp_path / f"l{len(host)}.csv")
        except OSError:
            if host == "::1":
                continue  # no IPv6 here
            raise
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            port = server.server_address[1]
            data = urllib.parse.urlencode({"id": "a", "label": "interesting"}).encode()
            addr = server.server_address[0]
            where = f"[{addr}]" if ":" in addr else addr  # connect to the bound address, name the host in Origin
            req = urllib.request.Request(f"http://{where}:{port}/label", data=data,
                                         headers={"Origin": f"http://{url_host}:{port}"})
            with urllib.request.urlopen(req, timeout=10) as r:
                assert r.status == 200  # was 403: the name was not recognised as this server
        finally:
            server.shutdown()
            server.server_close()
