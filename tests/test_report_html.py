"""The report builder on a run folder of stand-in tables: sections, images, tables, skipped notes.

``parse_report`` and ``assert_png_ok`` are reused by the end-to-end pipeline tests.
"""
from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser

import numpy as np
import pytest
from astropy.table import Table

from serendip._io import write_table
from serendip.pipeline.runner import RunFolder, Stage, StageResult, StageSkipped, run_stages
from serendip.report import build_report
from serendip.report.html import Figure, Note, Report, Section, TableBlock, png_data_uri


# ---------------------------------------------------------------------- HTML helpers
class _ReportParser(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.sections: dict[str, dict] = {}
        self.images: list[tuple[str, str]] = []  # (section, src)
        self.tables: dict[str, list[list[str]]] = {}
        self.notes: list[tuple[str, str, str]] = []  # (section, kind, text)
        self._section = None
        self._table = None
        self._row = None
        self._cell = None
        self._note = None
        self.external = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self._section = a.get("id")
            self.sections[self._section] = {"images": 0}
        elif tag == "img":
            self.images.append((self._section, a.get("src", "")))
            self.sections[self._section]["images"] += 1
        elif tag == "table":
            self._table = a.get("data-name") or f"table{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ""
        elif tag == "div" and "note" in a.get("class", ""):
            self._note = [a.get("data-kind", ""), ""]
        if tag in ("script", "link") or (tag == "img" and not a.get("src", "").startswith("data:")):
            self.external.append((tag, a))

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "div" and self._note is not None:
            self.notes.append((self._section, self._note[0], self._note[1]))
            self._note = None
        elif tag == "section":
            self._section = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        if self._note is not None:
            self._note[1] += data


def parse_report(path) -> _ReportParser:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    parser = _ReportParser()
    parser.feed(text)
    parser.close()
    assert not parser.external, f"the report must be self-contained; found {parser.external}"
    assert "http://" not in text and "https://" not in text
    return parser


def png_pixels(data: bytes) -> np.ndarray:
    import matplotlib.image as mpimg

    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return mpimg.imread(io.BytesIO(data), format="png")


def assert_png_ok(data: bytes, what: str = "image") -> None:
    pix = png_pixels(data)
    assert pix.ndim == 3 and pix.shape[0] > 50 and pix.shape[1] > 50, what
    assert float(np.var(pix[..., :3])) > 1e-4, f"{what} is blank"


def assert_all_images_ok(parser: _ReportParser) -> None:
    assert parser.images
    for section, src in parser.images:
        assert src.startswith("data:image/png;base64,")
        assert_png_ok(base64.b64decode(src.split(",", 1)[1]), f"image in section {section}")


# ---------------------------------------------------------------------- stand-in run
N, M, K = 120, 80, 6


def _fake_stages(rng, *, real: bool = False, skip_sequence: bool = False):
    wave = np.linspace(3800, 7000, M)
    ids = np.array([f"obj{i:03d}" for i in range(N)])
    z = rng.uniform(0.02, 0.2, N)
    snr = rng.lognormal(2, 0.5, N)
    t = rng.uniform(0, 1, N)
    flux = (1 + t[:, None] * np.exp(-0.5 * ((wave - 6563) / 20) ** 2) + 0.05 * rng.normal(size=(N, M)))
    w = rng.gamma(2, 0.05, N) + 0.5

    def ingest(ctx):
        run = ctx.run
        outs = [write_table(Table({"id": ids, "z": z, "snr": snr, "class": ["GALAXY"] * N}), run.table("objects")),
                write_table(Table({"file": ["bad.fits", "worse.fits"], "reason": ["not FITS: x", "no redshift"]}),
                            run.table("rejected"))]
        return StageResult("ingested", [run.rel(p) for p in outs],
                           info={"grid": "log 3800-7000 Å, 80 px", "input_hashes": {"a.fits": "ab" * 32}})

    def weirdness(ctx):
        run = ctx.run
        rank = np.empty(N, int)
        rank[np.argsort(-w)] = np.arange(1, N + 1)
        tab = Table({"id": ids, "weirdness": w, "rank": rank, "weirdness_faithful": w + 0.1 * rng.random(N),
                     "rank_faithful": rank, "snr": snr, "z": z})
        top = np.argsort(-w)[:K]
        wd = Table({"id": ids[top], "rank": rank[top], "weirdness": w[top], "z": z[top], "snr": snr[top],
                    "wave": np.tile(wave, (K, 1)), "flux": flux[top], "similar_median": flux[top] * 0.9,
                    "feature_wave": np.tile(wave[::2], (K, 1)), "residual": flux[top][:, ::2] - 1,
                    "similar_ids": ["obj001,obj002"] * K, "top_features": ["6563"] * K})
        outs = [write_table(tab, run.table("weirdness")), write_table(wd, run.table("weirdest"))]
        return StageResult("scored", [run.rel(p) for p in outs], info={"variant": "snr_strata"})

    def sequence(ctx):
        if skip_sequence:
            raise StageSkipped("only 12 normal objects; the Sequencer needs at least 20")
        run = ctx.run
        sel = np.argsort(w)[:60]
        pos = np.empty(60, int)
        pos[np.argsort(t[sel])] = np.arange(60)
        seq = Table({"id": ids[sel], "position": pos, "flux": flux[sel]})
        seq.meta["elongation"] = 17.5
        outs = [write_table(seq, run.table("sequence")),
                write_table(Table({"wavelength": wave}), run.table("sequence_grid")),
                write_table(Table({"metric": ["EMD", "L2"], "scale": [1, 1], "eta": [15.0, 9.0]}),
                            run.table("sequence_eta"))]
        return StageResult("sequenced", [run.rel(p) for p in outs], info={"mode": "improved"})

    def explore(ctx):
        run = ctx.run
        xy = rng.normal(size=(N, 2))
        sp = np.full(N, np.nan)
        cl = (xy[:, 0] > 0).astype(int)
        emb = Table({"id": ids, "x": xy[:, 0], "y": xy[:, 1], "cluster": cl, "weirdness": w,
                     "sequence_position": sp})
        outs = [write_table(emb, run.table("embedding")),
                write_table(Table({"cluster": [0, 1], "size": [int((cl == 0).sum()), int((cl == 1).sum())]}),
                            run.table("clusters"))]
        return StageResult("mapped", [run.rel(p) for p in outs], info={"embed": "pca"})

    def compare(ctx):
        run = ctx.run
        if real:
            ag = Table({"detector_a": ["urf", "urf"], "detector_b": ["iforest", "lof"], "spearman": [0.6, 0.4],
                        "top_k_overlap": [0.5, 0.3]})
            return StageResult("agreement", [run.rel(write_table(ag, run.table("agreement")))])
        pl = Table({"kind": ["bad", "misclassified", "tail", "unknown", "all"], "n_planted": [3, 3, 2, 2, 10],
                    "urf_best": [1.0, 0.67, 0.5, 0.5, 0.7], "iforest": [0.67, 0.33, 0.5, 0.0, 0.4]})
        pl.meta.update(k=10, detectors=["urf_best", "iforest"], sequence_spearman=0.93)
        det = Table({"detector": ["urf_best", "iforest"], "kind": ["all", "all"], "roc_auc": [0.95, 0.8]})
        outs = [write_table(pl, run.table("planted")), write_table(det, run.table("detectors"))]
        return StageResult("compared", [run.rel(p) for p in outs])

    stages = [Stage("ingest", ingest), Stage("weirdness", weirdness), Stage("sequence", sequence),
              Stage("explore", explore), Stage("compare", compare)]
    if not real:
        stages.insert(0, Stage("simulate", lambda ctx: StageResult("simulated", info={"n": N, "seed": 1})))
    return stages


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("fake_run")
    run_stages(path, _fake_stages(np.random.default_rng(3)), config={"report": {"top_n": 4}}, progress=False)
    return path


def test_report_sections_images_tables(synthetic_run):
    # the report reads the run's tables and records; it never rewrites them (no recomputation)
    before = {p: p.stat().st_mtime_ns for p in (synthetic_run / "tables").glob("*.fits")}
    records = {p: p.read_bytes() for p in (synthetic_run / "stages").glob("*.json")}
    path = build_report(synthetic_run)
    assert {p: p.stat().st_mtime_ns for p in (synthetic_run / "tables").glob("*.fits")} == before
    assert {p: p.read_bytes() for p in (synthetic_run / "stages").glob("*.json")} == records
    assert path == synthetic_run / "report.html"
    rep = parse_report(path)
    assert list(rep.sections) == ["data", "weirdest", "distribution", "sequence", "map", "planted", "provenance"]
    assert_all_images_ok(rep)
    for sec in ("data", "weirdest", "distribution", "sequence", "map", "planted"):
        assert rep.sections[sec]["images"] >= 1, sec
    # tables have the expected rows (header + data rows)
    assert len(rep.tables["weirdest"]) == 1 + 4  # top_n = 4 from the run's config
    assert len(rep.tables["planted"]) == 1 + 5
    assert rep.tables["planted"][0] == ["kind", "n_planted", "urf_best", "iforest"]
    assert len(rep.tables["rejected"]) == 1 + 2
    assert len(rep.tables["stages"]) == 1 + 6 + 1  # + the report itself
    assert len(rep.tables["sequence-eta"]) == 1 + 2
    assert len(rep.tables["clusters"]) == 1 + 2
    assert ["a.fits", "ab" * 32] in rep.tables["input-hashes"]
    # every figure is also on disk as PNG, the same bytes as embedded
    pngs = sorted(p.name for p in (synthetic_run / "figures").glob("*.png"))
    assert len(pngs) == len(rep.images)
    for p in (synthetic_run / "figures").glob("*.png"):
        assert_png_ok(p.read_bytes(), p.name)
    # the sequence-vs-truth correlation is reported
    assert "Spearman ρ = +0.930" in path.read_text(encoding="utf-8")


def test_report_real_data_and_skipped_stage(tmp_path):
    run_stages(tmp_path, _fake_stages(np.random.default_rng(4), real=True, skip_sequence=True), progress=False)
    rep = parse_report(build_report(tmp_path))
    assert "agreement" in rep.sections and "planted" not in rep.sections
    assert len(rep.tables["agreement"]) == 1 + 2
    kinds = [(s, k) for s, k, _ in rep.notes]
    assert ("sequence", "skipped") in kinds
    text = [t for s, k, t in rep.notes if s == "sequence"][0]
    assert "needs at least 20" in text
    assert_all_images_ok(rep)


def test_report_of_interrupted_run_says_what_is_missing(tmp_path):
    stages = _fake_stages(np.random.default_rng(5))[:2]  # simulate, ingest only: the run stopped there
    run_stages(tmp_path, stages, progress=False)
    rep = parse_report(build_report(tmp_path))
    missing = {s for s, k, _ in rep.notes if k == "missing"}
    assert missing == {"weirdest", "distribution", "sequence", "map", "planted"}
    assert rep.sections["data"]["images"] == 1
    text = [t for s, k, t in rep.notes if s == "sequence"][0]
    assert "'sequence' stage has not finished" in text


def test_report_after_a_failed_rerun_hides_the_earlier_runs_results(tmp_path):
    # a complete run, then a re-run whose ingest (new inputs) fails: the weirdness, sequence... records
    # and tables left from the first run describe data that are gone, and must not be reported as results
    run_stages(tmp_path, _fake_stages(np.random.default_rng(6), real=True), progress=False)

    def failing_ingest(ctx):
        raise RuntimeError("only 1 spectrum could be ingested")

    stages = _fake_stages(np.random.default_rng(6), real=True)
    stages[0] = Stage("ingest", failing_ingest, params={"inputs": ["other/"]})
    with pytest.raises(RuntimeError):
        run_stages(tmp_path, stages, progress=False)
    assert (tmp_path / "stages" / "weirdness.json").is_file()  # left behind on disk
    rep = parse_report(build_report(tmp_path))
    missing = {s for s, k, _ in rep.notes if k == "missing"}
    assert {"data", "weirdest", "distribution", "sequence", "map"} <= missing
    assert "weirdest" not in rep.tables and "input-hashes" not in rep.tables
    assert [row[0] for row in rep.tables["stages"][1:]] == ["report"]


def test_html_escapes_and_rejects_non_png():
    rep = Report("t <script>", sections=[Section("s", "S", [Note("<b>x</b>"),
                                                            TableBlock(["a"], [["<i>"]])])])
    text = rep.render()
    assert "<script>" not in text and "&lt;b&gt;x&lt;/b&gt;" in text and "&lt;i&gt;" in text
    with pytest.raises(ValueError, match="not a PNG"):
        png_data_uri(b"GIF89a....")
    with pytest.raises(ValueError, match="not a PNG"):
        Figure(b"nope").render()


def test_report_on_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such run folder"):
        build_report(tmp_path / "nothing")


def test_provenance_json(synthetic_run):
    prov = json.loads((synthetic_run / "provenance.json").read_text())
    assert prov["serendip_version"] and prov["versions"]["numpy"]
    assert prov["input_hashes"] == {"a.fits": "ab" * 32}
    assert [s["stage"] for s in prov["stages"]][:2] == ["simulate", "ingest"]
    assert RunFolder(synthetic_run, create=False).read_record("weirdness")["status"] == "done"


def test_figures_show_user_strings_literally():
    # a "$" in an object id, a detector or a kind is text, not mathtext: it must not abort the report
    from matplotlib import cbook
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from serendip.report import figures as F

    wave = np.linspace(4000.0, 6000.0, 60)
    flux = np.ones((2, 60))
    ids = [r"obj$\foo$", r"a\$b $x$"]
    fig, axes = F.weirdest_gallery(wave, flux, flux, wave, np.zeros((2, 60)), ids)
    FigureCanvasAgg(fig).draw()  # raises ParseFatalException when the titles are parsed as mathtext
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert_png_ok(buf.getvalue(), "gallery")
    for (ax, _), name in zip(axes, ids):
        title = ax.get_title(loc="left")  # plain text: matplotlib draws "\$" as "$"
        assert not cbook.is_math_text(title) and title.replace(r"\$", "$") == name
    fig, _ = F.planted_recall([r"k$\alpha$"], [r"det$\beta$"], np.array([[0.5]]), 10)
    FigureCanvasAgg(fig).draw()


def test_rebuilt_report_keeps_the_report_stage_current(tmp_path):
    """`serendip report` rewrites report.html (here with another title, so another size); the next
    run of the same stages reuses the report stage instead of redoing it."""
    from serendip.pipeline.stages import stage_report

    stages = _fake_stages(np.random.default_rng(3)) + [Stage("report", stage_report, params={"top_n": 4})]
    run_stages(tmp_path, stages, config={"report": {"top_n": 4}}, progress=False)
    before = (tmp_path / "report.html").stat().st_size
    build_report(tmp_path, title="A rebuilt report with a much longer title than the first one had")
    assert (tmp_path / "report.html").stat().st_size != before
    again = run_stages(tmp_path, stages, config={"report": {"top_n": 4}}, progress=False)
    assert "report" in again.reused and "report" not in again.ran
    assert "much longer title" in (tmp_path / "report.html").read_text(encoding="utf-8")


def test_report_of_a_first_run_fills_its_provenance(tmp_path):
    """The report stage runs before provenance.json is written; its provenance block is still filled
    (it used to be blank on a first run, and the previous run's on a later one)."""
    import re

    from serendip import __version__
    from serendip.pipeline.stages import stage_report

    stages = _fake_stages(np.random.default_rng(3)) + [Stage("report", stage_report, params={"top_n": 4})]
    run_stages(tmp_path, stages, config={"report": {"top_n": 4}, "run": {"seed": 7}}, progress=False)
    text = re.sub(r"<[^>]+>", " ", (tmp_path / "report.html").read_text(encoding="utf-8"))
    text = re.sub(r"\s+", " ", text)
    assert f"serendip version (this report) {__version__}" in text
    assert re.search(r"first stage started \d{4}-\d\d-\d\d", text)
    assert "seed 7" in text and "numpy" in text


# ----------------------------------------------------------------------------- review fixes (2026-11-26)
def test_report_texts_follow_what_the_run_did(tmp_path):
    """Captions promised strata, a faithful comparison and a cluster panel the run did not have; real data
    without a comparison got the 'What was planted' heading."""
    stages = [s for s in _fake_stages(np.random.default_rng(5), real=True) if s.name != "compare"]
    run_stages(tmp_path, stages, config={"report": {"top_n": 4}}, progress=False)
    html = (build_report(tmp_path)).read_text(encoding="utf-8")
    assert "What was planted" not in html and "one per S/N stratum" not in html
    assert "compare the weirdness of this run (snr_strata) beside it" in html  # the variant the run used, no strata claim
    rep = parse_report(tmp_path / "report.html")
    assert "planted" not in rep.sections


def test_rebuilt_report_removes_figures_of_sections_it_no_longer_draws(tmp_path):
    run_stages(tmp_path, _fake_stages(np.random.default_rng(6)), progress=False)
    build_report(tmp_path)
    assert (tmp_path / "figures" / "sequencer_classic.png").exists()
    run_stages(tmp_path, _fake_stages(np.random.default_rng(6), skip_sequence=True), force=["sequence"],
               progress=False)
    build_report(tmp_path)
    assert not (tmp_path / "figures" / "sequencer_classic.png").exists()
    assert (tmp_path / "figures" / "weirdest_gallery.png").exists()


def test_long_ids_are_shortened_in_gallery_titles_only():
    from serendip.report.build import _TITLE_ID_CHARS, _label

    row = Table({"id": ["x" * 120], "rank": [1], "weirdness": [0.9]})[0]
    first = _label(row, False).splitlines()[0]
    assert len(first) <= _TITLE_ID_CHARS + 5 and first.endswith("…")
