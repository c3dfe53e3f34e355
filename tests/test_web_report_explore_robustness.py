"""Robustness of the browse page, the report sections, the spectrum gallery and the exploration commands.

Each test pins a bug found in review: sequence tables shown in weirdness order, masked
weirdness ranked by its hidden fill value, ``top`` edge cases, malformed and cross-site
POSTs, notes erased by a label change, report captions that disagree with the gallery,
a vanishing sequence paragraph, observed spectra labelled rest-frame, small-input
embedding errors and feature columns picked from an embedding table.
"""
from __future__ import annotations

import csv
import http.client
import importlib
import io
import json
import threading
import urllib.parse

import numpy as np
import pytest
from astropy.table import MaskedColumn, Table

from serendip._io import write_table
from serendip.web import BrowseState, make_server


# ---------------------------------------------------------------------- web helpers
@pytest.fixture
def serve(tmp_path):
    servers = []

    def start(table, **kw):
        kw.setdefault("labels", tmp_path / "labels.csv")
        server = make_server(table, port=0, **kw)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def _request(server, method, path, body=b"", headers=None):
    """One raw request; returns (status, headers, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    try:
        conn.putrequest(method, path)
        hdrs = {"Content-Length": str(len(body))} if method == "POST" else {}
        hdrs.update(headers or {})
        for k, v in hdrs.items():
            conn.putheader(k, v)
        conn.endheaders()
        if body:
            conn.send(body)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def _post(server, headers=None, **form):
    status, _, body = _request(server, "POST", "/label", urllib.parse.urlencode(form).encode(),
                               {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})})
    return status, json.loads(body)


def _small_table(n=5):
    return Table({"id": [f"o{i}" for i in range(n)], "weirdness": np.arange(n, dtype=float)})


# ---------------------------------------------------------------------- 1. sequence order
def test_sequence_table_with_weirdness_is_shown_in_sequence_order(tmp_path):
    # like the pipeline's tables/sequence: position AND weirdness, in neither order
    tab = Table({"id": ["c", "a", "d", "b"], "position": [2, 0, 3, 1], "weirdness": [9.0, 1.0, 5.0, 7.0]})
    tab.meta.update({"elongation": 12.0, "mode": "improved"})
    state = BrowseState(tab, top=None)
    assert list(state.ids) == ["a", "b", "c", "d"] and state.score_name == "position"
    assert "in sequence order" in state.page()
    # explicit orders override the rule; a forced column must exist
    assert list(BrowseState(tab, order="weirdness").ids) == ["c", "b", "d", "a"]
    assert list(BrowseState(tab, order="table").ids) == ["c", "a", "d", "b"]
    with pytest.raises(ValueError, match="needs a 'position' column"):
        BrowseState(_small_table(), order="position")
    with pytest.raises(ValueError, match="order must be one of"):
        BrowseState(tab, order="random")
    # integer positions are shown and exported as integers, not 1.234e+04
    big = Table({"id": [f"o{i}" for i in range(12346)], "position": np.arange(12346)[::-1]})
    state = BrowseState(big, top=None)
    assert state.score_text(0) == "0" and state.score_text(12345) == "12345"
    assert state.export_csv().splitlines()[-1].startswith("12346,o0,12345,")


# ---------------------------------------------------------------------- 2. missing weirdness last
def test_blank_and_masked_weirdness_rank_last(tmp_path):
    (tmp_path / "blank.csv").write_text("id,weirdness\na,1.0\nb,\nc,2.0\nd,-5\n")
    server = make_server(tmp_path / "blank.csv", port=0, labels=tmp_path / "l.csv", top=None)
    try:
        assert list(server.state.ids) == ["c", "a", "d", "b"]  # the blank cell (read as 0) is last
        rows = list(csv.DictReader(io.StringIO(server.state.export_csv())))
        assert rows[-1]["id"] == "b" and rows[-1]["weirdness"] == ""
    finally:
        server.server_close()
    masked = Table({"id": ["a", "b", "c", "n"],
                    "weirdness": MaskedColumn([1.0, 99.0, 2.0, np.nan], mask=[False, True, False, False])})
    write_table(masked, tmp_path / "masked.fits")
    server = make_server(tmp_path / "masked.fits", port=0, labels=tmp_path / "l.csv", top=2)
    try:
        assert list(server.state.ids) == ["c", "a"]  # the masked 99 is not the weirdest
    finally:
        server.server_close()
    state = BrowseState(masked, top=None)
    assert list(state.ids[:2]) == ["c", "a"] and set(state.ids[2:]) == {"b", "n"}
    assert state.score_text(3) == "" and "<td></td>" in state.page()


# ---------------------------------------------------------------------- 3. top
def test_top_zero_or_none_shows_all_and_negative_is_an_error(tmp_path):
    tab = _small_table(5)
    for top in (0, None):
        server = make_server(tab, port=0, labels=tmp_path / "l.csv", top=top)
        try:
            assert len(server.state.ids) == 5
        finally:
            server.server_close()
    assert len(BrowseState(tab, top=np.int64(2)).ids) == 2
    for bad in (-1, 2.5, "3"):
        with pytest.raises(ValueError, match="top must be"):
            make_server(tab, port=0, labels=tmp_path / "l.csv", top=bad)
        with pytest.raises(ValueError, match="top must be"):
            BrowseState(tab, top=bad)


# ---------------------------------------------------------------------- 4. malformed POST
def test_malformed_post_gets_400_json_and_no_traceback(serve, capfd):
    server = serve(_small_table())
    status, hdrs, body = _request(server, "POST", "/label", headers={"Content-Length": "abc"})
    assert status == 400 and hdrs["Content-Type"] == "application/json"
    assert "Content-Length" in json.loads(body)["error"]
    status, _, body = _request(server, "POST", "/label", b"id=\xff\xfe&label=normal")
    assert status == 400 and "UTF-8" in json.loads(body)["error"]
    status, _, body = _request(server, "POST", "/label", b"id=o1%FF&label=normal")  # %-escape, not UTF-8
    assert status == 400 and "UTF-8" in json.loads(body)["error"]
    status, _, body = _request(server, "POST", "/label", headers={"Content-Length": "-5"})
    assert status == 400
    status, _, body = _request(server, "POST", "/label", headers={"Content-Length": str(10 ** 9)})
    assert status == 413 and "too large" in json.loads(body)["error"]
    # a body shorter than its Content-Length (the client then stops sending)
    import socket

    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=10) as sock:
        sock.sendall(b"POST /label HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\nid=o1")
        sock.shutdown(socket.SHUT_WR)
        reply = b"".join(iter(lambda: sock.recv(4096), b""))
    assert reply.startswith(b"HTTP/1.0 400") and b"not the 20 of its Content-Length" in reply
    # the server still works afterwards, and nothing was printed
    assert _post(server, id="o1", label="normal")[0] == 200
    assert "Traceback" not in capfd.readouterr().err


# ---------------------------------------------------------------------- 5. notes survive label changes
def test_changing_a_label_keeps_the_note_unless_a_note_is_sent(serve, tmp_path):
    server = serve(_small_table(), labels=tmp_path / "notes.csv")
    status, saved = _post(server, id="o3", label="interesting", note="broad Hα?")
    assert status == 200 and saved["note"] == "broad Hα?"
    # a button click sends no note field: the note is kept
    status, saved = _post(server, id="o3", label="artefact")
    assert status == 200 and saved["label"] == "artefact" and saved["note"] == "broad Hα?"
    rows = {r["id"]: r for r in csv.DictReader(open(tmp_path / "notes.csv", encoding="utf-8"))}
    assert rows["o3"]["label"] == "artefact" and rows["o3"]["note"] == "broad Hα?"
    # an explicit empty note clears it; an explicit note sets it
    assert _post(server, id="o3", label="artefact", note="")[1]["note"] == ""
    assert _post(server, id="o3", label="unsure", note="check")[1]["note"] == "check"
    # clearing the label removes the entry, note included
    assert _post(server, id="o3", label="")[1] == {"id": "o3", "label": "", "note": "", "time": ""}
    # the page shows the note box; its buttons post no note field, the box posts one
    _post(server, id="o1", label="normal", note='say "hi" <b>')
    status, _, page = _request(server, "GET", "/")
    page = page.decode()
    assert 'data-id="o1" value="say &quot;hi&quot; &lt;b&gt;"' in page
    assert 'send({id: b.dataset.id, label: on ? "" : b.dataset.label})' in page
    assert "note: box.value" in page


# ---------------------------------------------------------------------- 6. cross-site POST, export download
def test_cross_site_posts_are_refused_and_export_is_a_download(serve, tmp_path):
    write_table(_small_table(), tmp_path / "my weird.v2.fits")
    server = serve(tmp_path / "my weird.v2.fits")
    port = server.server_address[1]
    for headers in ({"Origin": "http://evil.example"}, {"Origin": f"http://evil.example:{port}"},
                    {"Origin": "null"}, {"Origin": "not a url"}, {"Referer": "https://evil.example/page"},
                    {"Origin": "http://127.0.0.1:1"}, {"Origin": f"http://127.0.0.1:{port}x"}):
        status, body = _post(server, headers=headers, id="o1", label="normal")
        assert status == 403 and "cross-site" in body["error"], headers
    assert not (tmp_path / "labels.csv").exists()  # nothing was saved
    for headers in ({}, {"Origin": f"http://127.0.0.1:{port}"}, {"Origin": f"http://localhost:{port}"},
                    {"Referer": f"http://127.0.0.1:{port}/"}):
        assert _post(server, headers=headers, id="o1", label="normal")[0] == 200, headers
    status, hdrs, body = _request(server, "GET", "/export.csv")
    assert status == 200 and hdrs["Content-Type"].startswith("text/csv")
    assert hdrs["Content-Disposition"] == 'attachment; filename="my_weird_labeled.csv"'
    assert body.decode().splitlines()[1].startswith("1,o4,")


# ---------------------------------------------------------------------- report
def _report_ctx(tmp_path, *, n=40, k=6, top_n=30, elongation=True, nan_rows=()):
    from serendip.pipeline.runner import RunFolder, StageResult, Stage, run_stages

    rng = np.random.default_rng(0)
    ids = np.array([f"obj{i:02d}" for i in range(n)])
    w = rng.gamma(2.0, 1.0, n)
    w[list(nan_rows)] = np.nan
    wave = np.linspace(4000, 7000, 60)
    flux = 1 + 0.05 * rng.normal(size=(n, 60))

    def weirdness(ctx):
        rank = np.empty(n, int)
        rank[np.argsort(-np.nan_to_num(w, nan=-np.inf))] = np.arange(1, n + 1)
        top = np.argsort(rank)[:k]
        wd = Table({"id": ids[top], "rank": rank[top], "weirdness": w[top], "wave": np.tile(wave, (k, 1)),
                    "flux": flux[top], "similar_median": flux[top], "feature_wave": np.tile(wave, (k, 1)),
                    "residual": flux[top] - 1})
        outs = [write_table(Table({"id": ids, "weirdness": w, "rank": rank}), ctx.run.table("weirdness")),
                write_table(wd, ctx.run.table("weirdest"))]
        return StageResult("scored", [ctx.run.rel(p) for p in outs])

    def sequence(ctx):
        seq = Table({"id": ids[:30], "position": rng.permutation(30), "flux": flux[:30]})
        if elongation:
            seq.meta["elongation"] = 17.5
        outs = [write_table(seq, ctx.run.table("sequence")),
                write_table(Table({"wavelength": wave}), ctx.run.table("sequence_grid"))]
        return StageResult("sequenced", [ctx.run.rel(p) for p in outs], info={"mode": "improved"})

    run_stages(tmp_path, [Stage("weirdness", weirdness), Stage("sequence", sequence)], progress=False)
    build = importlib.import_module("serendip.report.build")
    run = RunFolder(tmp_path, create=False)
    run.figures.mkdir(exist_ok=True)
    return build, build._Ctx(run, run.records(), {}, top_n), w


def test_distribution_caption_uses_the_gallery_size(tmp_path):
    build, ctx, w = _report_ctx(tmp_path, k=6, top_n=30, nan_rows=(3,))
    html = build._distribution_section(ctx).render()
    sixth = np.sort(w[np.isfinite(w)])[::-1][5]
    assert "are the top 6 shown above" in html and "top 30" not in html
    assert f"w ≥ {sixth:.4g}" in html and "top-6 threshold" in html
    assert "w ≥ nan" not in html  # a NaN weirdness is not the weirdest
    # a smaller report top_n limits both the gallery and the caption
    ctx.top_n = 4
    assert "are the top 4 shown above" in build._distribution_section(ctx).render()
    assert len(build._weirdest_section(ctx).render().split("<tr>")) - 2 == 4


def test_sequence_paragraph_survives_a_missing_elongation(tmp_path):
    build, ctx, _ = _report_ctx(tmp_path, elongation=False)
    html = build._sequence_section(ctx).render()
    assert "<p></p>" not in html
    assert "The Sequencer (improved mode) ordered 30 normal objects" in html
    assert "elongation η was not recorded" in html
    build, ctx, _ = _report_ctx(tmp_path / "with", elongation=True)
    assert "Final elongation η = 17.50." in build._sequence_section(ctx).render()


# ---------------------------------------------------------------------- 9. gallery without redshift
def test_gallery_without_redshift_is_observed_frame_without_lines():
    from serendip.plotting import plot_spectrum_gallery

    wave = np.linspace(4000, 8000, 200)
    flux = 1 + 0.01 * np.random.default_rng(1).normal(size=(3, 200))

    def dotted(ax):
        return [ln for ln in ax.lines if ln.get_linestyle() == ":"]

    fig, axes = plot_spectrum_gallery(wave, flux[:2], z=[np.nan, np.nan])
    labels = [a.get_xlabel() for a in fig.axes if a.get_xlabel()]
    assert labels == ["observed-frame wavelength [Å]"]
    for ax in axes:
        assert not dotted(ax) and not ax.texts  # no line markers placed as if z = 0
        assert ax.get_xlim() == pytest.approx((4000, 8000))
        assert "z unknown" in ax.get_title(loc="left")
    # mixed: each panel says its own frame; only the object with z gets (rest-frame) markers
    fig, axes = plot_spectrum_gallery(wave, flux, z=[0.1, np.nan, 0.05], residuals=flux - 1)
    per_panel = [a.get_xlabel() for a in fig.axes if a.get_xlabel()]
    assert per_panel == ["rest-frame wavelength [Å]", "observed-frame wavelength [Å]",
                         "rest-frame wavelength [Å]"]
    assert dotted(axes[0]) and not dotted(axes[1]) and dotted(axes[2])
    assert axes[0].get_xlim()[0] == pytest.approx(4000 / 1.1)
    # observed frame requested: lines moved by (1+z) only where z is known
    fig, axes = plot_spectrum_gallery(wave, flux[:2], z=[0.1, np.nan], rest_frame=False)
    assert [a.get_xlabel() for a in fig.axes if a.get_xlabel()] == ["observed-frame wavelength [Å]"]
    assert dotted(axes[0]) and not dotted(axes[1])
    # a rest-frame input keeps its markers without z
    fig, axes = plot_spectrum_gallery(wave, flux[:1], z=[np.nan], input_frame="rest")
    assert dotted(axes[0]) and axes[0].get_xlabel() == "rest-frame wavelength [Å]"


# ---------------------------------------------------------------------- 10, 11. small embeddings
def test_tsne_on_one_feature_uses_random_init():
    from serendip.explore import embed

    X = np.random.default_rng(2).normal(size=(25, 2))
    out = embed(X[:, :1], "tsne", perplexity=5, random_state=0, progress=False)
    assert out.shape == (25, 2) and np.isfinite(out).all()
    assert embed(X, "tsne", n_components=3, perplexity=5, random_state=0, progress=False).shape == (25, 3)


def test_umap_on_too_few_objects_says_how_many_it_needs():
    from serendip.explore import embed

    dist = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 1.5], [2.0, 1.5, 0.0]])
    with pytest.raises(ValueError, match=r"needs at least 4 objects .*precomputed graph has 3"):
        embed(precomputed=dist, method="umap", random_state=0, progress=False)
    with pytest.raises(ValueError, match=r"n_components=3 needs at least 5 objects .*has 4"):
        embed(precomputed=(np.array([[1, 2], [0, 2], [1, 3], [2, 1]]), np.full((4, 2), 0.5)),
              precomputed_kind="distance", method="umap", n_components=3, progress=False)
    with pytest.raises(ValueError, match=r"needs at least 4 objects .*X has 3"):
        embed(np.random.default_rng(0).normal(size=(3, 4)), "umap", n_neighbors=2, progress=False)


# ---------------------------------------------------------------------- 12, 13. table inputs
def test_nan_error_names_the_object_in_plain_text(tmp_path):
    from serendip.explore.workflows import load_input

    tab = Table({"id": ["spec-0001", "spec-0002"], "a": [1.0, np.nan], "b": [2.0, 3.0]})
    with pytest.raises(ValueError) as err:
        load_input(tab)
    msg = str(err.value)
    assert "object 'spec-0002' (row 1)" in msg and "np.str_" not in msg and "--columns" in msg


def _pipeline_embedding(rng, n=60):
    xy = np.vstack([rng.normal(size=(n // 2, 2)), rng.normal(size=(n // 2, 2)) + 8])
    pos = np.full(n, np.nan)
    pos[::3] = np.arange(len(pos[::3]))
    tab = Table({"id": [f"spec-{i:04d}" for i in range(n)], "x": xy[:, 0], "y": xy[:, 1],
                 "weirdness": rng.normal(size=n), "sequence_position": pos, "cluster": np.full(n, -1)})
    tab.meta.update({"embed": "pca", "cluster": "hdbscan", "cluster_skipped": None})
    return tab


def test_cluster_on_the_pipeline_embedding_uses_its_coordinates(tmp_path, rng):
    from serendip.cli import main
    from serendip._io import read_table
    from serendip.explore.workflows import embedding_columns, load_input

    tab = _pipeline_embedding(rng)
    write_table(tab, tmp_path / "embedding.fits")
    assert load_input(tmp_path / "embedding.fits").columns == ["x", "y"]
    out = tmp_path / "cl.fits"
    assert main(["-q", "cluster", str(tmp_path / "embedding.fits"), "--method", "kmeans", "--n-clusters", "2",
                 "-o", str(out)]) == 0
    labels = read_table(out)
    assert len(set(labels["cluster"][:30])) == 1 and labels["cluster"][0] != labels["cluster"][59]
    assert read_table(tmp_path / "cl_summary.fits").meta["n_features"] == 2
    # the same table without its metadata (e.g. saved as CSV by hand) is still recognised
    plain = tab.copy()
    plain.meta.clear()
    assert embedding_columns(plain) == ["x", "y"]
    # `serendip embed` output: embed_* in numeric order, never the colour column
    emb = Table({"id": ["a", "b"], "embed_10": [1.0, 2.0], "embed_2": [0.0, 1.0], "embed_1": [3.0, 4.0],
                 "weirdness": [np.nan, 1.0]})
    assert embedding_columns(emb) == ["embed_1", "embed_2", "embed_10"]
    # an ordinary feature table with x, y and other features is not an embedding; explicit columns win
    feats = Table({"id": ["a", "b"], "x": [1.0, 2.0], "y": [0.0, 1.0], "flux_g": [3.0, 4.0]})
    assert embedding_columns(feats) is None and load_input(feats).columns == ["x", "y", "flux_g"]
    assert load_input(tab, columns=["x", "weirdness"]).columns == ["x", "weirdness"]


def test_empty_weirdest_table_gets_a_note_not_a_crash(tmp_path):
    build, ctx, _ = _report_ctx(tmp_path, k=0)
    assert "weirdest table is empty" in build._weirdest_section(ctx).render()
    html = build._distribution_section(ctx).render()
    assert "shown above" not in html and "are the top 30." in html
