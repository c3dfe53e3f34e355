"""The pipeline's stages, one function each, and the two entry points.

Stages (in order; each writes into the run folder, see :mod:`.runner`):

``simulate``   the built-in synthetic survey as SDSS ``spec-*.fits`` files plus ``tables/truth`` (demo only)
``ingest``     read, mask, de-redshift, resample, normalise into ``data/store``; ``tables/objects``,
               ``tables/rejected``
``weirdness``  unsupervised random forest in the configured ("best") mode and, for comparison, the
               faithful algorithm; ``tables/weirdness``, ``tables/weirdest`` (top N explained)
``sequence``   the Sequencer on the normal (least weird) population; ``tables/sequence``,
               ``tables/sequence_grid``, ``tables/sequence_eta``
``explore``    2-D embedding and clustering; ``tables/embedding``, ``tables/clusters``
``compare``    detectors against the planted truth (synthetic data: ``tables/planted``,
               ``tables/detectors``) or against each other (real data: ``tables/agreement``);
               ``tables/scores``
``report``     ``report.html`` and ``figures/*.png`` (:func:`serendip.report.build_report`)

Weirdness everywhere: higher = weirder.
"""
from __future__ import annotations

import glob
import os
import time
import warnings
from pathlib import Path

import numpy as np

from .._logging import get_logger, progress
from .config import MAX_SEED, load_config
from .runner import RunFolder, RunResult, Stage, StageContext, StageResult, StageSkipped, run_stages

__all__ = ["build_stages", "run_pipeline", "run_demo", "demo_config", "feature_matrix", "bin_pixels"]

log = get_logger(__name__)

STORE_NAME = "store.h5"


# ---------------------------------------------------------------------- helpers
def bin_pixels(flux: np.ndarray, wave: np.ndarray, max_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """Average adjacent pixels so that at most ``max_pixels`` remain.

    Pixels are grouped ``b = ceil(M / max_pixels)`` at a time; trailing
    pixels that do not fill a group are dropped. Returns ``(flux, wave)``.
    """
    flux = np.asarray(flux, dtype=np.float64)
    wave = np.asarray(wave, dtype=np.float64)
    m = flux.shape[1]
    if max_pixels <= 0 or m <= max_pixels:
        return flux, wave
    b = int(np.ceil(m / max_pixels))
    keep = (m // b) * b
    return (flux[:, :keep].reshape(flux.shape[0], -1, b).mean(axis=2),
            wave[:keep].reshape(-1, b).mean(axis=1))


def _store_path(run: RunFolder) -> Path:
    return run.data / STORE_NAME


def load_spectra(run: RunFolder, config: dict):
    """The ingested spectra of a run as one in-memory :class:`~serendip.spectra.Spectra`."""
    from ..spectra.store import open_store

    path = config["data"]["store"] or _store_path(run)
    with open_store(path) as store:
        return store.load()


def feature_matrix(spectra, max_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """Finite features for the detectors: masked pixels filled, pixels binned. Returns ``(X, wave)``."""
    from ..spectra import preprocess as pp

    steps = {h.get("step") for h in spectra.history}
    s = spectra
    if s.mask.any() and "fill_masked" not in steps:
        s = pp.fill_masked(s)
    flux = np.asarray(s.flux, dtype=np.float64)
    flux[~np.isfinite(flux)] = 0.0  # objects without a single kept pixel
    return bin_pixels(flux, spectra.wavelength.value, max_pixels)


def _display_flux(spectra) -> np.ndarray:
    """Flux for plots: masked pixels as NaN."""
    return spectra.masked_flux(np.nan).astype(np.float64)


def _snr(spectra) -> np.ndarray:
    snr = np.asarray(spectra.meta["snr"], dtype=float) if "snr" in spectra.meta.colnames else \
        np.full(len(spectra), np.nan)
    if np.isfinite(snr).any():
        snr = np.where(np.isfinite(snr), snr, np.nanmedian(snr))
    return snr


def _outs(run: RunFolder, *paths) -> list[str]:
    return [run.rel(p) for p in paths]


def _has_truth(ctx: StageContext) -> bool:
    """True when this run simulated its data, so ``tables/truth`` belongs to it.

    A truth table left in the folder by an earlier synthetic run must not be
    taken for the truth of spectra ingested from files.
    """
    return ctx.done("simulate") and ctx.run.has_table("truth")


# ---------------------------------------------------------------------- stages
def stage_simulate(ctx: StageContext) -> StageResult:
    """Generate the synthetic survey and write it as SDSS-format ``spec-*.fits`` files."""
    from .._io import atomic_dir
    from ..datasets import make_survey, write_sdss_files

    n, seed = int(ctx.params["n"]), int(ctx.params["seed"])
    survey = make_survey(n, seed=seed, progress=ctx.progress)
    folder = ctx.run.data / "fits"
    with atomic_dir(folder) as tmp:
        write_sdss_files(survey, tmp, progress=ctx.progress)
        # the truth goes to tables/truth.fits; data/fits holds only what a survey would deliver
        for extra in tmp.glob("truth*"):
            extra.unlink()
    truth = survey.truth
    keep = [c for c in ("id", "z", "sequence_param", "is_anomaly", "anomaly_kind", "anomaly_subkind", "snr_target")
            if c in truth.colnames]
    truth = truth[keep]
    truth.meta.update(getattr(survey, "meta", {}) or {})
    truth.meta["step"] = "simulate"
    p = ctx.run.save_table(truth, "truth")
    kinds, counts = np.unique(np.asarray(truth["anomaly_kind"]).astype(str), return_counts=True)
    planted = {k: int(c) for k, c in zip(kinds, counts) if k != "normal"}
    return StageResult(f"{n} synthetic spectra written as SDSS spec-*.fits, {sum(planted.values())} planted "
                       f"anomal{'y' if sum(planted.values()) == 1 else 'ies'}", _outs(ctx.run, folder, p), info={"n": n, "seed": seed, "planted": planted})


def stage_ingest(ctx: StageContext) -> StageResult:
    """Read the inputs into a store (or adopt an existing store) and write the object and rejection tables."""
    from astropy.table import Table

    from ..spectra.ingest import ingest
    from ..spectra.store import open_store

    d = ctx.config["data"]
    run = ctx.run
    info = {}  # grid, frame and normalisation are read from the store below
    if d["store"]:
        path = Path(d["store"])
        info["store"] = str(path)
        outputs = []
    else:
        inputs = ctx.params["inputs"]
        if not inputs:
            raise ValueError("[data] inputs is empty: name files, folders or globs of spectra (or set [data] "
                             "store, or [data] simulate = N for synthetic data)")
        info["inputs"] = list(inputs)
        path = _store_path(run)
        from ..spectra.store import ResumeMismatchError

        kw = dict(grid=d["grid"], wmin=d["wmin"], wmax=d["wmax"], npix=d["npix"], rest_frame=d["rest_frame"],
                  sky_lines=d["mask_sky"], normalize=None if d["normalize"] == "none" else d["normalize"],
                  fill=True, progress=ctx.progress, if_exists="overwrite", exclude=_run_outputs(run, inputs))
        try:
            ingest(inputs, path, **kw)
        except ResumeMismatchError as exc:
            # an interrupted ingest of another config: its rows cannot be reused; this run's ingest wins
            log.warning("%s; starting the ingest over", exc)
            ingest(inputs, path, resume=False, **kw)
        outputs = [path]
    with open_store(path) as store:
        spectra = store.load()
        prov = store.provenance
        rejected = store.rejected
    info["input_hashes"] = {str(r["path"]): str(r["sha256"]) for r in prov.get("inputs", [])}
    meta = spectra.meta
    objects = Table()
    objects["id"] = np.asarray(meta["id"]).astype(str)
    for col in ("z", "snr", "class", "ra", "dec", "source_file"):
        if col in meta.colnames:
            objects[col] = meta[col]
    objects["masked_fraction"] = spectra.mask.mean(axis=1)
    p1 = run.save_table(objects, "objects")
    p2 = run.save_table(rejected, "rejected")
    n = len(spectra)
    if n < 2:
        raise ValueError(f"only {n} spectrum could be ingested; the pipeline needs at least 2 "
                         f"({len(rejected)} inputs rejected, see {p2})")
    info.update(n_objects=n, n_rejected=len(rejected), n_pixels=spectra.n_pixels)
    # describe the data as the store holds them (an adopted store need not match the config's [data] values)
    from ..spectra.resample import _describe_grid

    g = _describe_grid(spectra.wavelength.value)
    info["grid"] = f"{g['kind']} {g['wmin']:.0f}-{g['wmax']:.0f} Å, {g['npix']} px"
    steps = {h.get("step") for h in spectra.history}  # the store's provenance steps
    info["rest_frame"] = bool(prov.get("rest_frame", "deredshift" in steps))
    norm = (prov.get("ingest") or {}).get("normalize")
    info["normalize"] = norm or ("yes" if "normalize" in steps else "none")
    return StageResult(f"{n} spectra on a {spectra.n_pixels}-pixel grid, {len(rejected)} inputs rejected",
                       _outs(run, *outputs, p1, p2), info=info)


def _urf_params(cfg: dict, variant: str, n: int, trees: int, seed: int, progress: bool) -> tuple[dict, str]:
    p = dict(n_estimators=trees, n_repeats=cfg["repeats"], random_state=seed, n_jobs=cfg.get("n_jobs"),
             progress=progress)
    if cfg["max_fit_samples"] and n > cfg["max_fit_samples"]:
        p["max_fit_samples"] = cfg["max_fit_samples"]
    note = ""
    from ..outliers.urf import resolve_variant

    p.update(resolve_variant(variant))
    if "snr_strata" in p:
        bins = cfg["snr_bins"]
        while bins > 1 and n / bins < 50:
            bins -= 1
        if bins < cfg["snr_bins"]:
            note = (f"S/N strata reduced from {cfg['snr_bins']} to {bins} so each stratum keeps at least 50 "
                    f"objects ({n} in all)")
        if bins > 1:
            p["snr_strata"] = bins
        else:
            p.pop("snr_strata")
            note = f"only {n} objects: too few for S/N strata, one forest is used"
    return p, note


def stage_weirdness(ctx: StageContext) -> StageResult:
    """Rank weirdness with the unsupervised random forest (rank-averaged with LOF unless ``lof_neighbors`` is 0)
    and explain the top N against the forest's most similar objects."""
    from astropy.table import Table

    from ..outliers import UnsupervisedRandomForest, add_lof, explain_weirdness, weirdness_rank

    cfg = dict(ctx.params)
    cfg["n_jobs"] = ctx.config["run"]["n_jobs"]
    spectra = load_spectra(ctx.run, ctx.config)
    X, fwave = feature_matrix(spectra, cfg["max_features_pixels"])
    n = X.shape[0]
    snr = _snr(spectra)
    seed = ctx.seed
    params, note = _urf_params(cfg, cfg["variant"], n, cfg["trees"], seed, ctx.progress)
    t0 = time.perf_counter()
    snr_fit = snr if np.all(np.isfinite(snr)) else None
    if "snr_strata" in params and snr_fit is None:
        params.pop("snr_strata")
        note = "no S/N is known for these spectra: one forest is used instead of S/N strata"
    best = UnsupervisedRandomForest(**params).fit(X, snr=snr_fit)
    w_forest = np.asarray(best.weirdness_, dtype=float)
    strata = getattr(best, "stratum_", None)  # the forest's S/N strata, when it has them
    ids = np.asarray(spectra.ids).astype(str)
    tab = Table({"id": ids, "weirdness": w_forest, "rank": weirdness_rank(w_forest)})
    combination, lof_k = "the forest alone", 0
    if cfg["lof_neighbors"] and n >= 3:  # rank average of the forest and LOF within its S/N strata, as
        # serendip.outliers.best_weirdness; LOF's k is capped at half of the smallest stratum's other objects
        combination, lof_k = add_lof(tab, X, cfg["lof_neighbors"], strata, cfg["n_jobs"],
                                     forest=f"the forest ({cfg['variant']})")
    w = np.asarray(tab["weirdness"], dtype=float)
    t_best = time.perf_counter() - t0
    if strata is not None:
        tab["snr_stratum"] = np.asarray(strata, dtype=np.int16)  # 0 = the lowest S/N
    faithful = None
    t_faith = 0.0
    if cfg["compare_faithful"] and cfg["variant"] != "faithful":
        fparams, _ = _urf_params(cfg, "faithful", n, cfg["faithful_trees"], seed, ctx.progress)
        t0 = time.perf_counter()
        faithful = UnsupervisedRandomForest(**fparams).fit(X)
        t_faith = time.perf_counter() - t0
        tab["weirdness_faithful"] = np.asarray(faithful.weirdness_, dtype=float)
        tab["rank_faithful"] = weirdness_rank(tab["weirdness_faithful"])
    tab["snr"] = snr
    if "z" in spectra.meta.colnames:
        tab["z"] = np.asarray(spectra.meta["z"], dtype=float)
    for col in ("class",):
        if col in spectra.meta.colnames:
            tab[col] = spectra.meta[col]
    tab.meta.update({"detector": "urf+lof" if lof_k else "urf", "variant": cfg["variant"],
                     "score_convention": "higher = weirder", "combination": combination,
                     "params": {k: v for k, v in params.items() if k != "progress"}, "n_features": X.shape[1],
                     "note": note})

    # the top N, explained against their most similar normal objects
    top_n = min(cfg["top_n"], n)
    top = np.argsort(-w, kind="stable")[:top_n]
    k = max(1, min(cfg["n_similar"], n - 2))
    flux = _display_flux(spectra)
    wave = spectra.wavelength.value
    rows = []
    for i in progress(top, total=len(top), desc="explaining the weirdest", enabled=ctx.progress):
        exp = explain_weirdness(best, X, index=int(i), k=k, wavelength=fwave, random_state=seed)
        nb = np.asarray(exp.neighbours, dtype=int)
        with warnings.catch_warnings():  # a pixel masked in every neighbour stays NaN: a gap in the plot
            warnings.simplefilter("ignore", RuntimeWarning)
            ref = np.nanmedian(flux[nb], axis=0) if nb.size else np.full(flux.shape[1], np.nan)
        feats = [f"{fwave[j]:.0f}" for j in np.asarray(exp.top_features)[:3]]
        rows.append((ids[i], ref, exp.residual, ",".join(ids[nb[:5]]), " ".join(feats),
                     np.nan if exp.peak_wavelength is None else float(exp.peak_wavelength)))
    weirdest = tab[top]
    weirdest["wave"] = np.tile(wave, (top_n, 1))
    weirdest["flux"] = flux[top]
    weirdest["similar_median"] = np.array([r[1] for r in rows])
    # the residual is shown at full resolution: the object minus the median of the reference objects the
    # explanation chose (its most similar normal objects); top_features lists where the forest's features differ
    weirdest["feature_wave"] = np.tile(wave, (top_n, 1))
    weirdest["residual"] = flux[top] - weirdest["similar_median"]
    weirdest["similar_ids"] = [r[3] for r in rows]
    weirdest["top_features"] = [r[4] for r in rows]
    weirdest["peak_wavelength"] = [r[5] for r in rows]
    truth = ctx.run.read_table("truth") if _has_truth(ctx) else None
    if truth is not None:
        lut = {str(t): j for j, t in enumerate(np.asarray(truth["id"]).astype(str))}
        j = [lut.get(str(x), -1) for x in weirdest["id"]]
        for col in ("anomaly_kind", "anomaly_subkind"):
            if col in truth.colnames:
                weirdest[col] = [str(truth[col][jj]) if jj >= 0 else "" for jj in j]
    p1 = ctx.run.save_table(tab, "weirdness")
    p2 = ctx.run.save_table(weirdest, "weirdest")
    summary = (f"{n} objects scored ({cfg['variant']}, {cfg['trees']} trees"
               + (f", rank-averaged with LOF on {lof_k} neighbours{' per S/N stratum' if strata is not None else ''}"
                  if lof_k else "")
               + f", {X.shape[1]} features) in "
               f"{t_best:.1f} s" + (f"; faithful in {t_faith:.1f} s" if faithful is not None else "")
               + (f"; note: {note}" if note else ""))
    return StageResult(summary, _outs(ctx.run, p1, p2),
                       info={"variant": cfg["variant"], "lof_neighbors": lof_k,
                             "lof_within_strata": strata is not None and bool(lof_k), "note": note,
                             "n_features": X.shape[1],
                             "snr_strata": "snr_strata" in params,
                             "seconds_best": t_best, "seconds_faithful": t_faith})


def stage_sequence(ctx: StageContext) -> StageResult:
    """Run the Sequencer on the normal (least weird) objects."""
    from astropy.table import Table

    from ..sequencer import Sequencer
    from ..sequencer.api import positive_floor

    cfg = ctx.params
    if not cfg["enabled"]:
        raise StageSkipped("disabled in the config ([sequencer] enabled = false)")
    w = ctx.run.read_table("weirdness")
    n = len(w)
    n_normal = int(np.floor(cfg["normal_fraction"] * n))
    if n_normal < cfg["min_objects"]:
        raise StageSkipped(f"only {n_normal} normal objects (the least weird {cfg['normal_fraction']:.0%} of {n}); "
                           f"the Sequencer needs at least {cfg['min_objects']} ([sequencer] min_objects)")
    normal = np.argsort(np.asarray(w["weirdness"]), kind="stable")[:n_normal]
    rng = np.random.default_rng(ctx.seed)
    if normal.size > cfg["max_objects"]:
        normal = rng.choice(normal, cfg["max_objects"], replace=False)
    normal = np.sort(normal)
    spectra = load_spectra(ctx.run, ctx.config)
    X, wave = feature_matrix(spectra[normal], cfg["max_pixels"])
    # EMD, energy and KL compare distributions: flux must be positive. Clip the noise below a floor.
    floor = positive_floor(X)
    n_clipped = int((X < floor).sum())
    X = np.maximum(X, floor)
    scales = [s for s in cfg["scales"] if s < X.shape[1]]
    seq = Sequencer(metrics=tuple(cfg["metrics"]), scales=scales, mode=cfg["mode"],
                    n_jobs=None if ctx.config["run"]["n_jobs"] < 0 else ctx.config["run"]["n_jobs"],
                    random_state=ctx.seed, progress=ctx.progress).fit(X, grid=wave)
    ids = np.asarray(spectra.ids).astype(str)[normal]
    tab = Table({"id": ids, "position": np.asarray(seq.position_, dtype=np.int64),
                 "weirdness": np.asarray(w["weirdness"])[normal], "flux": X.astype(np.float32)})
    elong = float(seq.elongation_)
    tab.meta.update({"elongation": elong,
                     "elongation_normalized": float(getattr(seq, "elongation_normalized_", np.nan)),
                     "mode": cfg["mode"], "metrics": list(cfg["metrics"]), "scales": scales,
                     "n_clipped_pixels": n_clipped})
    res = seq.results_
    eta = Table({"metric": np.asarray(res["metric"]).astype(str), "scale": np.asarray(res["scale"], dtype=int),
                 "eta": np.asarray(res["elongation"], dtype=float)})
    if "used" in res.colnames:
        eta["used"] = np.asarray(res["used"], dtype=bool)
    p1 = ctx.run.save_table(tab, "sequence")
    p2 = ctx.run.save_table(Table({"wavelength": wave}), "sequence_grid")
    p3 = ctx.run.save_table(eta, "sequence_eta")
    return StageResult(f"{len(normal)} normal objects × {X.shape[1]} px sequenced ({cfg['mode']}), "
                       f"elongation η = {elong:.1f}", _outs(ctx.run, p1, p2, p3),
                       info={"mode": cfg["mode"], "elongation": elong, "n_objects": int(len(normal)),
                             "n_clipped_pixels": n_clipped})


def stage_explore(ctx: StageContext) -> StageResult:
    """Embed the spectra in 2-D and cluster the map."""
    from astropy.table import Table

    from ..explore import cluster, embed

    cfg = ctx.params
    spectra = load_spectra(ctx.run, ctx.config)
    X, _ = feature_matrix(spectra, cfg["max_pixels"])
    n = X.shape[0]
    method = cfg["embed"]
    note = None
    if method == "tsne" and n < 10:
        method, note = "pca", f"t-SNE needs more than {n} objects; PCA is used"
    xy = embed(X, method=method, random_state=ctx.seed, progress=ctx.progress)
    ids = np.asarray(spectra.ids).astype(str)
    w = ctx.run.read_table("weirdness")
    emb = Table({"id": ids, "x": xy[:, 0], "y": xy[:, 1], "weirdness": np.asarray(w["weirdness"], dtype=float)})
    pos = np.full(n, np.nan)
    if ctx.run.has_table("sequence") and ctx.done("sequence"):
        seq = ctx.run.read_table("sequence")
        lut = {s: j for j, s in enumerate(ids)}
        for sid, p in zip(np.asarray(seq["id"]).astype(str), np.asarray(seq["position"])):
            pos[lut[sid]] = p
    emb["sequence_position"] = pos
    skipped = None
    outputs = []
    if cfg["cluster"] == "none":
        skipped = "disabled in the config ([explore] cluster = \"none\")"
    elif n < cfg["min_objects"]:
        skipped = (f"only {n} objects; clustering needs at least {cfg['min_objects']} ([explore] min_objects) "
                   "to find groups that mean anything")
    n_clusters = 0
    if skipped is None:
        kw = {"min_cluster_size": cfg["min_cluster_size"]} if cfg["min_cluster_size"] > 0 else {}
        res = cluster(xy, method=cfg["cluster"], ids=ids, random_state=ctx.seed, **kw)
        emb["cluster"] = np.asarray(res.labels_, dtype=np.int64)
        summary = res.summary
        summary = summary[[c for c in summary.colnames if c != "typical_index"]]
        summary["median_weirdness"] = [float(np.median(emb["weirdness"][emb["cluster"] == c]))
                                       for c in summary["cluster"]]
        outputs.append(ctx.run.save_table(summary, "clusters"))
        n_clusters = res.n_clusters
    else:
        emb["cluster"] = np.full(n, -1, dtype=np.int64)
    emb.meta.update({"embed": method, "cluster": cfg["cluster"], "cluster_skipped": skipped})
    outputs.insert(0, ctx.run.save_table(emb, "embedding"))
    summary = f"{n} objects embedded ({method.upper()})" + (
        f", {n_clusters} clusters ({cfg['cluster']})" if skipped is None else f"; clustering skipped: {skipped}")
    return StageResult(summary, _outs(ctx.run, *outputs),
                       info={"embed": method, "cluster": cfg["cluster"], "cluster_skipped": skipped,
                             "n_clusters": n_clusters, "note": note})


def _recall_at_k(score: np.ndarray, positive: np.ndarray, k: int) -> float:
    if positive.sum() == 0:
        return np.nan
    top = np.argsort(-score, kind="stable")[:k]
    return float(positive[top].sum() / positive.sum())


def baseline_neighbours(name: str, n: int) -> int:
    """Neighbours for the LOF (20) and kNN-distance (10) baselines on ``n`` objects.

    At most half of the other objects: a neighbourhood that holds most of a small run is not
    local, and LOF on 22 spectra with 20 neighbours ranked against every other detector.
    """
    return max(1, min(20 if name == "lof" else 10, (n - 1) // 2))


def stage_compare(ctx: StageContext) -> StageResult:
    """Detectors against the planted truth (synthetic) or against each other (real data)."""
    from astropy.table import Table
    from scipy.stats import spearmanr

    from ..outliers import make_detector

    cfg = ctx.params
    if not cfg["enabled"]:
        raise StageSkipped("disabled in the config ([compare] enabled = false)")
    run = ctx.run
    spectra = load_spectra(run, ctx.config)
    X, _ = feature_matrix(spectra, cfg["features"])
    n = X.shape[0]
    ids = np.asarray(spectra.ids).astype(str)
    w = run.read_table("weirdness")
    forest = "urf_" + str(w.meta.get("variant", "best")).replace(",", "_").replace("-", "_")
    if "weirdness_forest" in w.colnames:  # the run's weirdness, then the forest alone
        scores = {f"{forest}+lof": np.asarray(w["weirdness"], dtype=float),
                  forest: np.asarray(w["weirdness_forest"], dtype=float)}
    else:
        scores = {forest: np.asarray(w["weirdness"], dtype=float)}
    if "weirdness_faithful" in w.colnames and "urf_faithful" not in scores:
        scores["urf_faithful"] = np.asarray(w["weirdness_faithful"], dtype=float)
    seconds = {}
    skipped_dets = {}
    for name in progress(cfg["detectors"], desc="baseline detectors", enabled=ctx.progress):
        kw = {}
        if name in ("lof", "knn"):
            kw["n_neighbors"] = baseline_neighbours(name, n)
        try:
            det = make_detector(name, **kw)
            params = det.get_params()
            if "random_state" in params:
                det.set_params(random_state=ctx.seed)
            if "progress" in params:
                det.set_params(progress=False)
        except ValueError as exc:
            skipped_dets[name] = str(exc)
            continue
        t0 = time.perf_counter()
        try:
            scores[name] = np.asarray(det.fit(X).weirdness_, dtype=float)
        except ValueError as exc:  # e.g. too few objects for the neighbours
            skipped_dets[name] = str(exc)
            continue
        seconds[name] = time.perf_counter() - t0
    score_tab = Table({"id": ids, **scores})
    score_tab.meta.update({"score_convention": "higher = weirder", "skipped": skipped_dets})
    outputs = [run.save_table(score_tab, "scores")]
    dets = list(scores)
    info = {"detectors": dets, "skipped_detectors": skipped_dets}
    if _has_truth(ctx):
        from sklearn.metrics import average_precision_score, roc_auc_score

        truth = run.read_table("truth")
        lut = {str(t): j for j, t in enumerate(np.asarray(truth["id"]).astype(str))}
        j = np.array([lut.get(s, -1) for s in ids])
        if (j < 0).any():
            raise ValueError(f"{int((j < 0).sum())} ingested objects have no row in the truth table")
        kind = np.asarray(truth["anomaly_kind"]).astype(str)[j]
        anomalous = kind != "normal"
        k = cfg["top_k"] or int(anomalous.sum())
        k = max(1, min(k, n))
        kinds = [kd for kd in ("bad", "misclassified", "tail", "unknown") if (kind == kd).any()]
        kinds += sorted(set(kind[anomalous]) - set(kinds))
        rows = []
        for kd in [*kinds, "all"]:
            pos = anomalous if kd == "all" else kind == kd
            rows.append([kd, int(pos.sum())] + [_recall_at_k(scores[d], pos, k) for d in dets])
        planted = Table(rows=rows, names=["kind", "n_planted", *dets])
        rho_note = ""
        rho = np.nan
        if ctx.done("sequence") and run.has_table("sequence") and "sequence_param" in truth.colnames:
            seq = run.read_table("sequence")
            t = np.asarray(truth["sequence_param"], dtype=float)[[lut[s] for s in np.asarray(seq["id"]).astype(str)]]
            rho = float(spearmanr(np.asarray(seq["position"]), t).statistic)
        else:
            rec = ctx.record("sequence")
            rho_note = (rec or {}).get("reason") or "the sequence stage did not run"
        planted.meta.update({"k": int(k), "detectors": dets, "sequence_spearman": rho, "sequence_note": rho_note,
                             "score_convention": "higher = weirder"})
        det_rows = []
        for d in dets:
            for kd in [*kinds, "all"]:
                pos = anomalous if kd == "all" else kind == kd
                ev = pos | ~anomalous  # this kind against the normal objects
                if pos.sum() == 0 or (~pos[ev]).sum() == 0:
                    continue
                det_rows.append((d, kd, int(pos.sum()), roc_auc_score(pos[ev], scores[d][ev]),
                                 average_precision_score(pos[ev], scores[d][ev]),
                                 _recall_at_k(scores[d], pos, k), seconds.get(d, np.nan)))
        det_tab = Table(rows=det_rows, names=("detector", "kind", "n_planted", "roc_auc", "average_precision",
                                              f"recall_at_{k}", "fit_seconds"))
        det_tab.meta.update({"k": int(k), "score_convention": "higher = weirder",
                             "evaluation": "each kind against the normal objects"})
        outputs += [run.save_table(planted, "planted"), run.save_table(det_tab, "detectors")]
        overall = {d: float(planted[d][-1]) for d in dets}
        best = max(overall, key=lambda d: overall[d])
        info.update(k=int(k), recall_all=overall, best_detector=best, sequence_spearman=rho)
        summary = (f"recall in the top {k}: " + ", ".join(f"{d} {overall[d]:.2f}" for d in dets)
                   + (f"; sequence vs truth ρ = {rho:+.2f}" if np.isfinite(rho) else ""))
    else:
        k = max(1, min(max(cfg["report_top_n"], n // 20), n))
        rows = []
        for a in range(len(dets)):
            for b in range(a + 1, len(dets)):
                sa, sb = scores[dets[a]], scores[dets[b]]
                rho = float(spearmanr(sa, sb).statistic) if n > 2 else np.nan
                ta = set(np.argsort(-sa, kind="stable")[:k])
                tb = set(np.argsort(-sb, kind="stable")[:k])
                rows.append((dets[a], dets[b], rho, len(ta & tb) / k))
        agreement = Table(rows=rows, names=("detector_a", "detector_b", "spearman", f"top_{k}_overlap"))
        agreement.meta.update({"k": int(k), "score_convention": "higher = weirder"})
        outputs.append(run.save_table(agreement, "agreement"))
        info.update(k=int(k))
        summary = f"no planted truth: agreement of {len(dets)} detectors (top {k} overlap)"
    if skipped_dets:
        summary += f"; skipped: {', '.join(skipped_dets)}"
    return StageResult(summary, _outs(run, *outputs), info=info)


def stage_report(ctx: StageContext) -> StageResult:
    """Write the self-contained HTML report and its PNG figures."""
    from ..report import build_report

    path = build_report(ctx.run.path, progress=ctx.progress)
    figs = sorted(ctx.run.figures.glob("*.png"))
    return StageResult(f"report with {len(figs)} figures: {path}", _outs(ctx.run, path, *figs),
                       info={"report": str(path), "figures": [f.name for f in figs]})


# ---------------------------------------------------------------------- assembly
def _expand_inputs(inputs: list[str]) -> list[str]:
    out = []
    for item in inputs:
        hits = sorted(glob.glob(item)) if any(ch in item for ch in "*?[") else [item]
        if not hits:
            raise FileNotFoundError(f"[data] inputs: nothing matches {item!r}")
        out.extend(hits)
    return out


STORE_SUFFIXES = (".h5", ".hdf5")


def store_as_input(cfg: dict) -> dict:
    """A single store named in ``[data] inputs`` is used as ``[data] store`` (no re-ingest)."""
    d = cfg["data"]
    ins = d["inputs"]
    if not d["store"] and len(ins) == 1 and Path(ins[0]).suffix.lower() in STORE_SUFFIXES:
        d["store"], d["inputs"] = ins[0], []
    return cfg


def _run_outputs(run, inputs=()) -> list[Path]:
    """The run folder, whose files are never inputs when it sits inside an input folder; but an input named
    inside it (the demo's ``data/fits``) keeps its files, and then only the run's output folders are left out."""
    root = run.path.resolve()
    inside = any(p == root or root in p.parents for p in (Path(i).resolve() for i in inputs))
    return [run.tables, run.figures, run.path / "stages"] if inside else [run.path]


def _fingerprint(paths: list[str], exclude=()) -> str:
    """A cheap fingerprint of the input files (path, size, modification time), for the stage key.

    Changing, adding or removing an input file changes it, so ingest (and
    everything after it) is redone; hashing the contents is left to ingest.
    """
    import hashlib

    h = hashlib.sha256()
    skip = {Path(e).resolve() for e in exclude}
    for item in paths:
        p = Path(item)
        if p.is_dir():
            files = []
            for root, dirs, names in os.walk(p):  # folders are resolved once each, files never
                dirs[:] = sorted(d for d in dirs if Path(root, d).resolve() not in skip)
                if Path(root).resolve() in skip:
                    continue
                files.extend(Path(root, n) for n in names)
            files.sort()  # the order of a sorted rglob, as before: an unchanged folder keeps its fingerprint
        else:
            files = [p]
        for f in files:
            try:
                st = f.stat()
            except OSError:
                continue
            h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


#: Config values that change how fast a stage runs, not what it writes; they are left out of the stage
#: keys so that, say, resuming a run with fewer cores reuses the finished stages.
RUNTIME_ONLY = (("run", "n_jobs"),)


def build_stages(config: dict, run: RunFolder) -> list[Stage]:
    """The pipeline's stages for a complete config (see :func:`~.config.load_config`).

    Parameters
    ----------
    config : dict
        A complete, checked configuration.
    run : RunFolder
        The run folder (the demo's generated files live in it).

    Returns
    -------
    list of Stage

    Notes
    -----
    A stage is reused only while its key is unchanged, and the key hashes the
    stage's ``params`` and the run ids of the stages it requires. So every
    config value a stage reads must be in its own ``params`` or in those of a
    stage it requires (directly or through others), except the values in
    :data:`RUNTIME_ONLY`; otherwise changing the value would reuse a stale
    result. Stages read their settings from ``ctx.params``.
    """
    d = config["data"]
    seed = config["run"]["seed"]
    sim = ["simulate"] if d["simulate"] > 0 else []
    stages = []
    if sim:
        stages.append(Stage("simulate", stage_simulate, params={"n": d["simulate"], "seed": seed}, title="Simulate"))
    ingest_params = {k: d[k] for k in ("grid", "wmin", "wmax", "npix", "rest_frame", "normalize", "mask_sky",
                                        "store")}
    if sim:
        ingest_params["inputs"] = [str(run.data / "fits")]
    elif not d["store"]:
        ingest_params["inputs"] = _expand_inputs(d["inputs"])
        ingest_params["fingerprint"] = _fingerprint(ingest_params["inputs"],
                                                    exclude=_run_outputs(run, ingest_params["inputs"]))
    else:
        ingest_params["inputs"] = []
        ingest_params["fingerprint"] = _fingerprint([d["store"]])
    compare_params = {**config["compare"], "seed": seed, "features": config["weirdness"]["max_features_pixels"]}
    if not sim:  # without planted truth the detectors' agreement is measured in the top max(report top_n, N/20)
        compare_params["report_top_n"] = config["report"]["top_n"]
    stages += [
        Stage("ingest", stage_ingest, params=ingest_params, requires=sim, title="Ingest"),
        Stage("weirdness", stage_weirdness, params={**config["weirdness"], "seed": seed},
              requires=[*sim, "ingest"], title="Weirdness"),
        Stage("sequence", stage_sequence, params={**config["sequencer"], "seed": seed},
              requires=["ingest", "weirdness"], title="Sequencer"),
        Stage("explore", stage_explore, params={**config["explore"], "seed": seed},
              requires=["ingest", "weirdness", "sequence"], title="Embed and cluster"),
        Stage("compare", stage_compare, params=compare_params,
              requires=[*sim, "ingest", "weirdness", "sequence"], title="Compare detectors"),
        Stage("report", stage_report, params={**config["report"]}, requires=None, title="Report"),
    ]
    return stages


def run_pipeline(config=None, *, output=None, progress: bool = True, force=None,
                 on_stage=None) -> RunResult:
    """Run the whole pipeline described by ``config`` and write the report.

    Parameters
    ----------
    config : path to a TOML file, dict, or None
        See :func:`serendip.pipeline.load_config` and ``serendip init-config``.
    output : path, optional
        Run folder; overrides ``[run] output``.
    progress : bool
        tqdm progress bars in every stage.
    force : bool or list of str, optional
        Recompute every stage (True) or the named ones; defaults to ``[run] force``.
    on_stage : callable, optional
        ``on_stage(name, record)`` after each stage (the CLI prints the one-line summary).

    Returns
    -------
    RunResult
        ``.report_path`` is the HTML report; ``.records`` the stage records.
    """
    cfg = load_config(config)
    if output is not None:
        cfg["run"]["output"] = str(output)
    cfg = store_as_input(cfg)
    force = cfg["run"]["force"] if force is None else force
    if force is not True:
        _refuse_replacing_a_real_run(Path(cfg["run"]["output"]), cfg)
    run = RunFolder(cfg["run"]["output"])
    stages = build_stages(cfg, run)
    t0 = time.perf_counter()
    result = run_stages(run, stages, config=cfg, force=force, progress=progress, on_stage=on_stage)
    log.debug("pipeline finished in %.1f s; report: %s", time.perf_counter() - t0, result.report_path)
    return result


def _real_data(cfg: dict) -> tuple | None:
    """What a config reads, when it reads files (inputs or a store); None for a simulated survey."""
    data = cfg.get("data", {})
    inputs = tuple(str(p) for p in data.get("inputs") or ())
    store = data.get("store") or ""
    return (inputs, str(store)) if inputs or store else None


def _refuse_replacing_a_real_run(folder: Path, cfg: dict) -> None:
    """Refuse to turn a run on real files into a run on a simulated survey.

    Stages whose data changed are recomputed and the old results go, which is what re-running
    an edited config (other inputs, other settings) should do; but a ``serendip demo`` pointed
    at the folder of a long run on survey files replaced its store and tables. A folder of
    simulated data is not protected (it is made again in a minute); ``force=True``
    (``--force``) replaces any run.
    """
    from .config import loads_toml

    path = folder / "config.toml"
    if not path.is_file():
        return
    try:
        old = _real_data(loads_toml(path.read_text(encoding="utf-8"), str(path)))
    except (OSError, ValueError):
        return  # an unreadable record protects nothing; the runner checks the folder itself
    if old is not None and _real_data(cfg) is None:
        inputs, store = old
        what = ", ".join(inputs[:3]) + (f" (+{len(inputs) - 3} more)" if len(inputs) > 3 else "") or store
        raise FileExistsError(f"{folder} holds a run on {what}; this run is on a simulated survey and would "
                              "replace its results. Give another output folder (--out), or --force "
                              "(force=True) to replace it")


def demo_config(n: int = 5000, seed: int = 0, out: str | os.PathLike = "serendip-demo") -> dict:
    """The configuration ``serendip demo`` runs: the synthetic survey and the defaults."""
    if n < 20:
        raise ValueError(f"the demo needs at least 20 spectra; got --n {n}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"the demo's seed must be a non-negative integer (at most {MAX_SEED}); got --seed {seed!r}")
    return load_config({"run": {"output": str(out), "seed": int(seed)}, "data": {"simulate": int(n)},
                        "report": {"title": f"serendip demo: {n} synthetic spectra"}})


def run_demo(n: int = 5000, seed: int = 0, out: str | os.PathLike = "serendip-demo", *, progress: bool = True,
             force=False, on_stage=None, overrides: dict | None = None) -> RunResult:
    """``serendip demo``: simulate a survey with planted anomalies and run the whole pipeline on it.

    Parameters
    ----------
    n : int
        Number of synthetic spectra (default 5000; about 3 % are planted anomalies).
    seed : int
    out : path
        Run folder.
    progress, force, on_stage
        As in :func:`run_pipeline`.
    overrides : dict, optional
        ``{section: {key: value}}`` applied on top of the demo config.

    Returns
    -------
    RunResult
    """
    cfg = demo_config(n, seed, out)
    for section, values in (overrides or {}).items():
        cfg.setdefault(section, {}).update(values)
    cfg = load_config(cfg)
    return run_pipeline(cfg, progress=progress, force=force, on_stage=on_stage)
