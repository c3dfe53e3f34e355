"""Build the discovery report from a run folder, without recomputing any model.

:func:`build_report` reads only what the pipeline stages left in the run
folder: the result tables under ``tables/``, the stage completion records
under ``stages/``, ``provenance.json`` and ``config.toml``. It draws every
figure into ``figures/`` (PNG) and writes one self-contained ``report.html``
with the same figures embedded. A section whose stage was skipped or did not
run says so and why.

Tables it reads (written by :mod:`serendip.pipeline.stages`):

``objects``      id, z, snr, class, masked_fraction — every ingested object
``rejected``     the input files that could not be used, with the reason
``weirdness``    id, weirdness, rank [, weirdness_forest, weirdness_lof] [, weirdness_faithful, rank_faithful], snr, z
``weirdest``     the top N: id, rank, weirdness, z, snr, wave, flux, similar_median,
                 feature_wave, residual, similar_ids, top_features
``sequence``     id, position, flux (the pixels the Sequencer saw); meta: elongation
``sequence_grid`` wavelength of those pixels
``sequence_eta`` metric, scale, eta
``embedding``    id, x, y, cluster, weirdness, sequence_position
``clusters``     cluster, size, median weirdness
``planted``      kind, n_planted, recall@k per detector (synthetic data); meta: k, sequence_spearman
``detectors``    the detector comparison (ROC AUC, AP, precision@k, recall@k per kind)
``agreement``    detector agreement on real data: Spearman ρ and top-k overlap per pair
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .._logging import get_logger
from ..plotting.style import save_png
from . import figures as F
from .html import Figure, KeyValues, Note, Paragraph, Report, Section, TableBlock

__all__ = ["build_report", "SECTION_IDS"]

log = get_logger(__name__)

#: The stage that writes each table.
TABLE_STAGE = {"objects": "ingest", "rejected": "ingest", "weirdness": "weirdness", "weirdest": "weirdness",
               "sequence": "sequence", "sequence_grid": "sequence", "sequence_eta": "sequence",
               "embedding": "explore", "clusters": "explore", "planted": "compare", "detectors": "compare",
               "agreement": "compare", "scores": "compare"}

#: Section anchors, in order. On real data "planted" is replaced by "agreement".
SECTION_IDS = ("data", "weirdest", "distribution", "sequence", "map", "planted", "provenance")


class _Ctx:
    def __init__(self, run, records: dict, config: dict, top_n: int):
        self.run = run
        self.records = records
        self.config = config
        self.top_n = top_n
        ingest_info = (records.get("ingest") or {}).get("info") or {}  # what the store holds, else the config
        self.rest_frame = bool(ingest_info.get("rest_frame", config.get("data", {}).get("rest_frame", True)))
        self.saved: list[Path] = []

    def table(self, name: str):
        """A result table, or None when its stage did not finish in this run (stale files are ignored)."""
        stage = TABLE_STAGE.get(name)
        if stage is not None and self.records.get(stage, {}).get("status") != "done":
            return None
        return self.run.read_table(name) if self.run.has_table(name) else None

    def stage_note(self, stage: str, what: str) -> Note:
        rec = self.records.get(stage)
        if rec is None:
            return Note(f"{what} is not available: the {stage!r} stage has not finished in this run "
                        "(it failed, was interrupted, or was not part of the pipeline).", kind="missing")
        if rec.get("status") == "skipped":
            return Note(f"{what} was skipped: {rec.get('reason')}", kind="skipped")
        return Note(f"{what} is not available: the {stage!r} stage wrote no such table.", kind="missing")

    def figure(self, fig, name: str, caption: str) -> Figure:
        path = save_png(fig, self.run.figure(name))
        self.saved.append(path)
        return Figure(path.read_bytes(), caption=caption, name=name)


def _col(tab, name, default=np.nan):
    if tab is not None and name in tab.colnames:
        col = tab[name]
        if hasattr(col, "filled"):
            try:
                return np.asarray(col.filled(default))
            except (TypeError, ValueError):
                return np.asarray(col)
        return np.asarray(col)
    n = 0 if tab is None else len(tab)
    return np.full(n, default)


def _str(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


# ---------------------------------------------------------------------- sections
def _data_section(c: _Ctx) -> Section:
    s = Section("data", "Data")
    objects, rejected = c.table("objects"), c.table("rejected")
    ingest = c.records.get("ingest", {})
    info = ingest.get("info", {})
    n_rej = 0 if rejected is None else len(rejected)
    if objects is None:
        s.add(c.stage_note("ingest", "The ingested data"))
        return s
    sim = c.records.get("simulate")
    items = [("objects", len(objects)), ("input files rejected", n_rej)]
    if sim and sim.get("status") == "done":
        items.insert(0, ("data", f"synthetic survey: {sim['info'].get('n', '?')} spectra, "
                                 f"seed {sim['info'].get('seed', '?')}"))
    for key, label in (("grid", "wavelength grid"), ("normalize", "normalisation"), ("rest_frame", "rest frame"),
                       ("inputs", "inputs"), ("store", "store")):
        if key in info:
            val = info[key]
            items.append((label, ", ".join(map(str, val)) if isinstance(val, list) else val))
    s.add(KeyValues(items, name="data-summary"))
    fig, _ = F.data_overview(_col(objects, "z"), _col(objects, "snr"), n_rejected=n_rej)
    s.add(c.figure(fig, "data_overview", "Redshift and signal-to-noise distributions of the ingested spectra."))
    if "class" in objects.colnames:
        classes, counts = np.unique(np.asarray(objects["class"]).astype(str), return_counts=True)
        s.add(TableBlock(["class", "objects"], [[k, int(n)] for k, n in zip(classes, counts)],
                         caption="Objects per class in the input metadata", name="classes"))
    if n_rej:
        reason_col = next((k for k in ("reason", "error", "why") if k in rejected.colnames), None)
        if reason_col is not None:
            reasons, counts = np.unique([_str(r).split(":")[0] for r in rejected[reason_col]], return_counts=True)
            s.add(TableBlock(["reason", "files"], [[r, int(n)] for r, n in zip(reasons, counts)],
                             caption="Why input files were rejected", name="rejected-reasons"))
        s.add(TableBlock.from_table(rejected, caption="Rejected inputs (first 20)", name="rejected",
                                    max_rows=20))
    else:
        s.add(Paragraph("Every input file was read."))
    return s


def _label(row, faithful: bool) -> str:
    """Two-line panel title: rank and id; then z, S/N, weirdness, faithful rank and planted kind."""
    bits = []
    for key, fmt in (("z", "z={:.3f}"), ("snr", "S/N={:.1f}"), ("weirdness", "w={:.3f}")):
        if key in row.colnames and np.isfinite(float(row[key])):
            bits.append(fmt.format(float(row[key])))
    if faithful and "rank_faithful" in row.colnames:
        bits.append(f"faithful #{int(row['rank_faithful'])}")
    if "anomaly_kind" in row.colnames and _str(row["anomaly_kind"]):
        kind = _str(row["anomaly_kind"])
        sub = _str(row["anomaly_subkind"]) if "anomaly_subkind" in row.colnames else ""
        bits.append(f"planted: {kind}{'/' + sub if sub and sub not in (kind, 'normal') else ''}")
    ident = _str(row["id"])
    if len(ident) > _TITLE_ID_CHARS:  # a long id would run into the next panel (the table keeps it whole)
        ident = ident[:_TITLE_ID_CHARS - 1] + "…"
    return f"#{int(row['rank'])}  {ident}\n" + "  ".join(bits)


#: Longest id drawn whole in a gallery panel title.
_TITLE_ID_CHARS = 40


def _gallery_size(c: _Ctx) -> int | None:
    """Objects the weirdest gallery shows (``min(top_n, rows of tables/weirdest)``), None without that table."""
    tab = c.table("weirdest")
    return None if tab is None or len(tab) == 0 else min(c.top_n, len(tab))


def _weirdest_section(c: _Ctx) -> Section:
    s = Section("weirdest", "The weirdest objects")
    tab = c.table("weirdest")
    if tab is None:
        s.add(c.stage_note("weirdness", "The weirdness ranking"))
        return s
    if len(tab) == 0:
        s.add(Note("The weirdness stage listed no weirdest objects (its weirdest table is empty).", kind="missing"))
        return s
    tab = tab[np.argsort(np.asarray(tab["rank"]), kind="stable")][: c.top_n]
    rec = c.records.get("weirdness", {})
    variant = rec.get("info", {}).get("variant", "")
    lof_k = rec.get("info", {}).get("lof_neighbors", 0)
    ranked_by = (f"the unsupervised random forest ({variant or 'best mode'}) finds farthest from all others"
                 if not lof_k else
                 f"ranked weirdest by the mean of two rank fractions: the unsupervised random forest "
                 f"({variant or 'best mode'}), which scores distance from all others, and the local outlier "
                 f"factor on {lof_k} neighbours, which scores isolation from the nearest ones"
                 + (" among spectra of similar S/N" if rec.get("info", {}).get("lof_within_strata") else ""))
    s.add(Paragraph(
        f"The {len(tab)} objects {ranked_by} (weirdness: higher = weirder). Each panel shows the spectrum "
        "(black) with rest-frame lines marked and the median of its most similar normal objects under the "
        "forest's similarity (teal); "
        "below, the residual: the object minus that median. The table's top_features are the wavelengths (Å) "
        "of the forest features where the object departs most from those objects, in units of the normal "
        "population's scatter."))
    if rec.get("info", {}).get("note"):
        s.add(Note(f"Weirdness mode: {rec['info']['note']}.", kind="note"))
    faithful = "rank_faithful" in tab.colnames
    labels = [_label(row, faithful) for row in tab]
    fig, _ = F.weirdest_gallery(np.asarray(tab["wave"][0]), np.asarray(tab["flux"]),
                                np.asarray(tab["similar_median"]), np.asarray(tab["feature_wave"][0]),
                                np.asarray(tab["residual"]), labels, rest_frame=c.rest_frame,
                                z=_col(tab, "z"))
    s.add(c.figure(fig, "weirdest_gallery", f"The top {len(tab)} weirdest objects."))
    cols = [k for k in ("rank", "id", "z", "snr", "weirdness", "rank_faithful", "top_features", "similar_ids",
                        "class", "anomaly_kind", "anomaly_subkind") if k in tab.colnames]
    s.add(TableBlock.from_table(tab, cols, caption="The weirdest objects", name="weirdest"))
    return s


def _distribution_section(c: _Ctx) -> Section:
    s = Section("distribution", "The weirdness distribution")
    tab = c.table("weirdness")
    if tab is None:
        s.add(c.stage_note("weirdness", "The weirdness distribution"))
        return s
    w = _col(tab, "weirdness").astype(float)
    finite = np.sort(w[np.isfinite(w)])[::-1]  # missing weirdness never counts as the weirdest
    gallery_n = _gallery_size(c)
    # the same N as the gallery above, so the caption's "shown above" is true
    top = min(gallery_n if gallery_n is not None else c.top_n, finite.size)
    threshold = float(finite[top - 1]) if top else np.nan
    faithful = _col(tab, "weirdness_faithful").astype(float) if "weirdness_faithful" in tab.colnames else None
    fig, _ = F.weirdness_distribution(w, threshold, top)
    where = " shown above" if gallery_n else ""
    caption = (f"Weirdness of every object; objects right of the dashed line (w ≥ {threshold:.4g}) "
               f"are the top {top}{where}." if top else "Weirdness of every object (no finite values).")
    s.add(c.figure(fig, "weirdness_distribution", caption))
    snr = _col(tab, "snr").astype(float)
    if np.isfinite(snr).sum() > 2:
        info = c.records.get("weirdness", {}).get("info", {})
        variant = info.get("variant") or "best mode"
        label = f"{variant} + LOF" if info.get("lof_neighbors") else variant
        fig, _ = F.weirdness_vs_snr(snr, w, faithful=faithful, label=label)
        caption = "Weirdness against S/N."
        if faithful is not None:
            caption += " The faithful forest tends to call noisy spectra weird"
            caption += (f"; the weirdness of this run ({label}, forests one per S/N stratum) should not."
                        if info.get("snr_strata") else f"; compare the weirdness of this run ({label}) beside it.")
        s.add(c.figure(fig, "weirdness_vs_snr", caption))
    qs = np.nanpercentile(w, [50, 90, 99]) if len(w) else [np.nan] * 3
    s.add(KeyValues([("objects scored", len(w)), ("median weirdness", qs[0]), ("90th percentile", qs[1]),
                     ("99th percentile", qs[2]), (f"top-{top} threshold", threshold)], name="distribution"))
    return s


def _sequence_section(c: _Ctx) -> Section:
    s = Section("sequence", "The sequence")
    seq, grid, eta = c.table("sequence"), c.table("sequence_grid"), c.table("sequence_eta")
    if seq is None or grid is None:
        s.add(c.stage_note("sequence", "The Sequencer"))
        return s
    info = c.records.get("sequence", {}).get("info", {})
    elong = seq.meta.get("elongation", info.get("elongation"))
    mode = info.get("mode") or seq.meta.get("mode")
    text = (f"The Sequencer{f' ({mode} mode)' if mode else ''} ordered {len(seq)} normal objects (the least "
            "weird) along their main one-dimensional trend.")
    # only the elongation sentence depends on the elongation being known
    text += f" Final elongation η = {float(elong):.2f}." if elong is not None else \
        " The final elongation η was not recorded."
    s.add(Paragraph(text))
    wave = np.asarray(grid["wavelength"], dtype=float)
    flux = np.asarray(seq["flux"], dtype=float)
    pos = np.asarray(seq["position"])
    labels, values = [], []
    if eta is not None and len(eta):
        labels = [f"{_str(m)} s={int(k)}" for m, k in zip(eta["metric"], eta["scale"])]
        values = np.asarray(eta["eta"], dtype=float)
    fig, _ = F.sequencer_classic(wave, flux, pos, labels, values,
                                 elongation=None if elong is None else float(elong), rest_frame=c.rest_frame)
    s.add(c.figure(fig, "sequencer_classic",
                   "Left: the spectra in input order; middle: in sequence order; right: elongation η per "
                   "metric and scale (higher = more sequence-like)."))
    fig, _, feats = F.sequence_features(wave, flux, pos, rest_frame=c.rest_frame)
    s.add(c.figure(fig, "sequence_features",
                   "Top: median spectra along the sequence. Bottom: correlation between flux and sequence "
                   "position at each wavelength. The smooth trend is the continuum; narrow peaks that stand out from it are the lines that change along the sequence (listed below)."))
    if feats:
        s.add(TableBlock(["wavelength [Å]", "Spearman ρ", "ρ relative to the continuum", "nearest line"],
                         [[w, r, rel, _nearest_line(w) if c.rest_frame else ""] for w, r, rel in feats],
                         caption="Spectral features that change most along the sequence", name="sequence-features"))
    if eta is not None and len(eta):
        s.add(TableBlock.from_table(eta, ["metric", "scale", "eta"], caption="Elongation per metric and scale",
                                    name="sequence-eta"))
    return s


def _nearest_line(w: float, tol: float = 25.0) -> str:
    from ..spectra.lines import LINES

    name, lw = min(LINES.items(), key=lambda kv: abs(kv[1] - w))
    return name if abs(lw - w) <= tol else ""


def _map_section(c: _Ctx) -> Section:
    s = Section("map", "The map")
    emb = c.table("embedding")
    if emb is None:
        s.add(c.stage_note("explore", "The embedding"))
        return s
    info = c.records.get("explore", {}).get("info", {})
    method = info.get("embed", "")
    colourings = [("weirdness (higher = weirder)", _col(emb, "weirdness").astype(float), "weirdness"),
                  ("sequence position", _col(emb, "sequence_position").astype(float), "sequence")]
    clustered = info.get("cluster_skipped") is None and "cluster" in emb.colnames
    if clustered:
        colourings.append(("cluster", _col(emb, "cluster", -1).astype(float), "cluster"))
    xy = np.column_stack([_col(emb, "x"), _col(emb, "y")])
    fig, _ = F.embedding_maps(xy, colourings, method=method.upper())
    lim = F.robust_limits(xy)
    outside = 0 if lim is None else int(np.sum((xy[:, 0] < lim[0][0]) | (xy[:, 0] > lim[0][1])
                                                | (xy[:, 1] < lim[1][0]) | (xy[:, 1] > lim[1][1])))
    ways = {"weirdness": "by weirdness", "sequence": "by position in the sequence (grey: not sequenced)",
            "cluster": "by cluster (grey: in no cluster)"}
    drawn = [ways[kind] for _, _, kind in colourings]
    said = drawn[0] if len(drawn) == 1 else ", ".join(drawn[:-1]) + " and " + drawn[-1]
    s.add(c.figure(fig, "embedding_maps",
                   f"A 2-D {method.upper()} map of the spectra, coloured {said}."
                   + (f" {outside} extreme objects lie outside the plotted range." if outside else "")))
    if not clustered:
        s.add(Note(f"Clustering was skipped: {info.get('cluster_skipped', 'no cluster labels')}", kind="skipped"))
    clusters = c.table("clusters")
    if clusters is not None and len(clusters):
        s.add(TableBlock.from_table(clusters, caption="Clusters (-1: not in any cluster)", name="clusters"))
    return s


def _planted_section(c: _Ctx) -> Section:
    planted, agreement = c.table("planted"), c.table("agreement")
    if planted is None and agreement is not None:
        s = Section("agreement", "Detector agreement")
        s.add(Paragraph("No planted truth is available for these data, so the detectors are compared with each "
                        "other: Spearman correlation of their scores and the overlap of their top-k lists."))
        s.add(TableBlock.from_table(agreement, caption="Agreement between detectors", name="agreement"))
        return s
    if planted is None and c.records.get("simulate", {}).get("status") != "done":
        s = Section("agreement", "Detector agreement")  # real data: nothing was planted
        s.add(c.stage_note("compare", "The detector comparison"))
        return s
    s = Section("planted", "What was planted and what was found")
    if planted is None:
        s.add(c.stage_note("compare", "The detector comparison"))
        return s
    k = int(planted.meta.get("k", 0))
    dets = [d for d in planted.meta.get("detectors", []) if d in planted.colnames]
    s.add(Paragraph(
        f"The synthetic survey plants anomalies of known kinds. For each kind, the fraction found among the "
        f"top {k} weirdest objects of each detector (k = {k})."))
    fig, _ = F.planted_recall([_str(x) for x in planted["kind"]], dets,
                              np.column_stack([np.asarray(planted[d], dtype=float) for d in dets]), k)
    s.add(c.figure(fig, "planted_recall", f"Recall in the top {k} per planted anomaly kind and detector."))
    s.add(TableBlock.from_table(planted, ["kind", "n_planted", *dets], caption=f"Recall in the top {k}",
                                name="planted"))
    rho = planted.meta.get("sequence_spearman")
    if rho is not None and np.isfinite(float(rho)):
        s.add(Paragraph(f"Sequence against the hidden parameter of the normal population: "
                        f"Spearman ρ = {float(rho):+.3f} (|ρ| = 1 is a perfect recovery)."))
    else:
        s.add(Note(f"The sequence-vs-truth correlation is not available: "
                   f"{planted.meta.get('sequence_note', 'the sequence stage did not run')}", kind="skipped"))
    det = c.table("detectors")
    if det is not None and len(det):
        s.add(TableBlock.from_table(det, caption="Detector comparison against the planted truth", name="detectors"))
    return s


def _provenance_section(c: _Ctx) -> Section:
    from ..pipeline.runner import _now, environment

    s = Section("provenance", "Provenance")
    # from this process and the current stage records: provenance.json is written after the report
    # stage, so it is absent on a first run and describes the previous run on a later one
    env = environment()
    started = sorted(str(r["started"]) for r in c.records.values() if r.get("started"))
    built = sorted({str(r["serendip_version"]) for r in c.records.values() if r.get("serendip_version")})
    s.add(KeyValues([("serendip version (this report)", env["serendip_version"]),
                     ("serendip version (stages)", ", ".join(built)),
                     ("first stage started", started[0] if started else ""), ("report written", _now()),
                     ("platform", env["platform"]), ("seed", c.config.get("run", {}).get("seed", "")),
                     ("library versions", ", ".join(f"{k} {v}" for k, v in env["versions"].items()))],
                    name="provenance"))
    rows = [[r["stage"], r["status"] + (" (reused)" if r.get("reused") else ""), r.get("seconds", np.nan),
             r.get("reason") or r.get("summary", "")] for r in c.records.values()]
    if "report" not in c.records:
        rows.append(["report", "writing", np.nan, "this page (its run time is in stages/report.json)"])
    s.add(TableBlock(["stage", "status", "seconds", "summary"], rows, caption="Stages and run times",
                     name="stages"))
    params = [[name, json.dumps(rec.get("params", {}), sort_keys=True)] for name, rec in c.records.items()
              if rec.get("params")]
    if params:
        s.add(TableBlock(["stage", "parameters"], params, caption="Parameters per stage", name="parameters"))
    hashes = {}  # from this run's current records: provenance.json may still describe an earlier, complete run
    for rec in c.records.values():
        hashes.update((rec.get("info") or {}).get("input_hashes", {}))
    if hashes:
        items = sorted(hashes.items())
        s.add(TableBlock(["input", "sha256"], [[k, v] for k, v in items[:50]],
                         caption=f"Input file hashes ({len(items)} files; first 50 shown)", name="input-hashes"))
    return s


def build_report(run_dir: str | os.PathLike, *, title: str | None = None, top_n: int | None = None,
                 progress: bool = False) -> Path:
    """Write ``report.html`` (and every figure as PNG) for a run folder; return the report's path.

    Nothing is recomputed: the report reads the run's tables, stage records
    and provenance only, so it is cheap to regenerate after editing the
    style, and it can be built for a run that stopped early (missing
    sections say why). A rebuild keeps the run's report stage current, so the
    next ``serendip run`` of the same config reuses it.

    Parameters
    ----------
    run_dir : path
        A run folder written by :func:`serendip.pipeline.run_pipeline`.
    title : str, optional
        Defaults to ``[report] title`` of the run's config.
    top_n : int, optional
        Objects in the gallery; defaults to ``[report] top_n``.
    progress : bool
        Show a progress bar over the sections.
    """
    from ..pipeline.config import DEFAULTS, load_config
    from ..pipeline.runner import RunFolder

    run = RunFolder(run_dir, create=False)
    records = run.records(current=True)  # not the stale records an earlier run left behind a failed stage
    config = load_config(run.config_path) if run.config_path.is_file() else load_config(None)
    rep_cfg = config.get("report", DEFAULTS["report"])
    ctx = _Ctx(run, records, config, int(top_n or rep_cfg["top_n"]))
    run.figures.mkdir(exist_ok=True)
    sim = records.get("simulate", {}).get("status") == "done"
    subtitle = (f"{'synthetic survey' if sim else 'run'} {run.path.resolve().name} · "
                f"weirdness: higher = weirder")
    report = Report(title or rep_cfg["title"], subtitle,
                    footer="Generated by serendip from the tables in this run folder; "
                           "figures are also saved as PNG under figures/.")
    from .._logging import progress as _progress

    builders = (_data_section, _weirdest_section, _distribution_section, _sequence_section, _map_section,
                _planted_section, _provenance_section)
    for builder in _progress(builders, total=len(builders), desc="report", enabled=progress):
        report.add(builder(ctx))
    path = report.write(run.report_path)
    # figures/ holds the report's figures only: those this build did not draw (a stage now skipped) go
    written = {p.name for p in ctx.saved}
    for old in run.figures.glob("*.png"):
        if old.name not in written:
            old.unlink()
    run.refresh_outputs("report")  # a rebuild outside a run: the report stage stays current
    log.debug("report written to %s (%d figures)", path, len(ctx.saved))
    return path
