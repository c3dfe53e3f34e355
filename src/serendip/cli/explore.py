"""`serendip embed | cluster | detect`: maps, clusters and baseline weirdness scores (higher = weirder)."""
from __future__ import annotations

from ._argtypes import int_at_least, n_jobs, positive_int

_INPUT_HELP = ("a store (.h5) from `serendip ingest`, a spectra file, a .npy/.npz matrix, or a table "
               "(.fits/.csv/.ecsv/.parquet) whose numeric columns are the features")


COLUMNS_HELP = ("comma-separated feature columns of a table input (default: the numeric columns except "
                "identifiers, positions, survey bookkeeping such as plate or mjd, and class labels)")


def _columns(text):
    return None if text is None else [c.strip() for c in text.split(",") if c.strip()]


def _embed(args) -> int:
    from ..explore.workflows import run_embed

    extra = {}
    if args.perplexity is not None:
        extra["perplexity"] = args.perplexity
    if args.n_neighbors is not None:
        extra["n_neighbors"] = args.n_neighbors
    tab, png = run_embed(args.input, args.output, method=args.method, n_components=args.n_components,
                         color_by=args.color_by, color_table=args.color_table, columns=_columns(args.columns),
                         scale=args.scale, random_state=args.seed, png=not args.no_png, progress=args.progress,
                         **extra)
    print(f"{args.method} embedding of {len(tab)} objects -> {args.output}" + (f" (+ {png})" if png else ""))
    return 0


def _cluster(args) -> int:
    from ..explore.workflows import run_cluster

    res, written = run_cluster(args.input, args.output, method=args.method, n_clusters=args.n_clusters,
                               min_cluster_size=args.min_cluster_size, columns=_columns(args.columns),
                               spectra=args.spectra, scale=args.scale, random_state=args.seed,
                               png=not args.no_png)
    noise = int((res.labels_ < 0).sum())
    print(f"{args.method}: {res.n_clusters} clusters among {res.labels_.size} objects"
          + (f" ({noise} noise)" if noise else "") + " -> " + ", ".join(str(p) for p in written.values()))
    return 0


#: detector options of ``serendip detect`` -> (argparse attribute, detectors that use it)
_DETECT_OPTIONS = {"--trees": ("trees", ("iforest", "urf")), "--n-neighbors": ("n_neighbors", ("lof", "knn"))}


def _detect(args) -> int:
    from ..explore.workflows import run_detect

    for flag, (attr, users) in _DETECT_OPTIONS.items():
        if getattr(args, attr) is not None and args.detector not in users:
            raise ValueError(f"--detector {args.detector} does not take parameter {flag}: it is for "
                             f"--detector {' or '.join(users)} only")
    tab = run_detect(args.input, args.output, detector=args.detector, columns=_columns(args.columns),
                     scale=args.scale, random_state=args.seed, n_jobs=args.n_jobs, progress=args.progress,
                     n_neighbors=args.n_neighbors, n_estimators=args.trees)
    top = tab[tab["rank"] == 1][0]
    print(f"{args.detector}: scored {len(tab)} objects -> {args.output}; weirdest {top['id']} "
          f"(weirdness {top['weirdness']:.4g}, higher = weirder)")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("embed", help="2-D map of the objects (PCA, t-SNE or UMAP) and a PNG",
                              description="Embed every object in 2-D and write id, embed_1, embed_2 (and the "
                                          "colour column) plus a PNG beside the output.")
    p.add_argument("input", help=_INPUT_HELP)
    p.add_argument("-o", "--output", required=True, help="output table, e.g. embedding.parquet")
    p.add_argument("--method", choices=("pca", "tsne", "umap"), default="pca", help="default pca")
    p.add_argument("--n-components", type=positive_int, default=2)
    p.add_argument("--color-by", default=None, help="metadata column (or --color-table column) for the PNG")
    p.add_argument("--color-table", default=None, help="table with 'id' and the --color-by column, e.g. scores")
    p.add_argument("--columns", default=None, help=COLUMNS_HELP)
    p.add_argument("--scale", choices=("standard", "robust"), default=None,
                   help="rescale features first (recommended for catalogue features in unlike units)")
    p.add_argument("--perplexity", type=float, default=None, help="t-SNE perplexity (default 30)")
    p.add_argument("--n-neighbors", type=positive_int, default=None, help="UMAP neighbours (default 15)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-png", action="store_true", help="do not write the PNG")
    p.set_defaults(func=_embed)

    p = subparsers.add_parser("cluster", help="cluster objects; write labels, a summary and median spectra",
                              description="Cluster features or an embedding (from `serendip embed`). Writes "
                                          "per-object labels to OUTPUT, a per-cluster summary to "
                                          "OUTPUT_summary, and the median spectrum per cluster as a PNG when "
                                          "spectra are available.")
    p.add_argument("input", help=_INPUT_HELP + ", or an embedding table")
    p.add_argument("-o", "--output", required=True, help="output table, e.g. clusters.fits")
    p.add_argument("--method", choices=("hdbscan", "kmeans", "gmm", "agglomerative"), default="hdbscan")
    p.add_argument("--n-clusters", type=positive_int, default=8, help="for kmeans, gmm, agglomerative (default 8)")
    p.add_argument("--min-cluster-size", type=int_at_least(2), default=None, help="HDBSCAN (default max(5, N/200))")
    p.add_argument("--columns", default=None, help=COLUMNS_HELP)
    p.add_argument("--spectra", default=None, help="spectra in the same order, for median spectra")
    p.add_argument("--scale", choices=("standard", "robust"), default=None,
                   help="rescale features first (recommended for catalogue features in unlike units)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-png", action="store_true")
    p.set_defaults(func=_cluster)

    p = subparsers.add_parser("detect", help="weirdness from a baseline detector (higher = weirder)",
                              description="Score every object with one detector; writes id, weirdness "
                                          "(higher = weirder), rank (1 = weirdest) and snr/z when known.")
    p.add_argument("input", help=_INPUT_HELP)
    p.add_argument("-o", "--output", required=True, help="output table, e.g. scores.fits")
    p.add_argument("--detector", choices=("iforest", "lof", "knn", "pca", "urf", "ensemble"), default="iforest")
    p.add_argument("--n-neighbors", type=positive_int, default=None, help="lof/knn neighbours")
    p.add_argument("--trees", type=positive_int, default=None, help="iforest/urf trees")
    p.add_argument("--scale", choices=("standard", "robust"), default=None,
                   help="rescale features first (recommended for catalogue features)")
    p.add_argument("--columns", default=None, help=COLUMNS_HELP)
    p.add_argument("--n-jobs", type=n_jobs, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_detect)
