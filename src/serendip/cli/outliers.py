"""`serendip weird`: unsupervised random forest weirdness for every object (higher = weirder)."""
from __future__ import annotations

from ._argtypes import int_at_least, n_jobs, positive_int


def _weird(args) -> int:
    from .._io import check_table_path, write_table
    from ..outliers.urf import weirdness_table

    check_table_path(args.output)  # before the forest, not after it
    params = {}
    if args.block_size is not None:
        params["block_size"] = args.block_size
    tab = weirdness_table(
        args.input, variant=args.variant, n_estimators=args.trees, n_repeats=args.repeats, n_jobs=args.n_jobs,
        random_state=args.seed, max_fit_samples=args.max_fit_samples, twins=args.twins, impute=args.impute,
        lof_neighbors=args.lof_neighbors, progress=args.progress, **params)
    write_table(tab, args.output)
    top = tab[tab["rank"] == 1][0]
    lof = f" rank-averaged with LOF on {tab.meta['lof_neighbors']} neighbours" if tab.meta["lof_neighbors"] else ""
    print(f"scored {len(tab)} objects ({tab.meta['variant']}, {args.trees} trees × {args.repeats} repeats{lof}) "
          f"in {tab.meta['seconds']:.1f} s -> {args.output}; weirdest: {top['id']} "
          f"(weirdness {top['weirdness']:.4f})")
    return 0


def register(subparsers) -> None:
    from ..outliers.variants import VARIANTS

    p = subparsers.add_parser(
        "weird", help="rank objects by unsupervised random forest weirdness (higher = weirder)",
        description="Baron & Poznanski (2017) unsupervised random forest weirdness, computed exactly in O(N·T). "
                    "INPUT is a store made by `serendip ingest`, a .npy/.npz feature matrix, or a spectra file. "
                    "Output: one row per object with id, weirdness (higher = weirder), rank (1 = weirdest), "
                    "snr and the most similar object; parameters are stored in the table metadata.")
    p.add_argument("input", help="store (.h5 from serendip ingest), .npy/.npz matrix, or spectra file")
    p.add_argument("-o", "--output", required=True, help="output table: .fits, .parquet, .csv or .ecsv")
    p.add_argument("--trees", type=positive_int, default=500, help="trees per run (default 500, as in the paper)")
    p.add_argument("--repeats", type=positive_int, default=3, help="independent runs to average (default 3)")
    p.add_argument("--n-jobs", type=n_jobs, default=-1, help="threads (default -1 = all cores)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--variant", default="faithful",
                   help=f"one of {', '.join(VARIANTS)}, or a comma-separated combination (default faithful)")
    p.add_argument("--max-fit-samples", type=int_at_least(2), default=None,
                   help="fit merged sub-forests on random subsets of at most this many objects")
    p.add_argument("--block-size", type=positive_int, default=None, help="rows per block when reading and scoring")
    p.add_argument("--lof-neighbors", type=int_at_least(0), default=0, metavar="K",
                   help="rank-average the forest with the local outlier factor on K neighbours, within the "
                        "forest's S/N strata when it has them (serendip run uses 20); default 0, the forest alone "
                        "as in the paper")
    p.add_argument("--impute", action="store_true", help="replace NaN/inf by the column median instead of failing")
    twins = p.add_mutually_exclusive_group()
    twins.add_argument("--twins", dest="twins", action="store_true", default=None,
                       help="always add the most similar object (default: only when affordable)")
    twins.add_argument("--no-twins", dest="twins", action="store_false", help="skip the most similar object")
    p.set_defaults(func=_weird)
