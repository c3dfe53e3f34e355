"""`serendip sequence`: order objects along the main 1-D trend (the Sequencer, Baron & Ménard 2021)."""
from __future__ import annotations

from ._argtypes import n_jobs, positive_int


def _list(text, cast=str):
    return None if text is None else [cast(t.strip()) for t in text.split(",") if t.strip()]


def _scales(text):
    """``--scales`` as a list of ints; a clear ``ValueError`` for anything but whole numbers."""
    if text is None:
        return None
    out = []
    for tok in (t.strip() for t in text.split(",")):
        if not tok:
            continue
        try:
            value = float(tok)
        except ValueError:
            value = float("nan")
        if not value.is_integer():
            raise ValueError(f"--scales must be a comma list of positive whole numbers of chunks, e.g. 1,2,4; "
                             f"got {tok!r} in {text!r}")
        out.append(int(value))
    return out


def _floor(text):
    if text in ("auto", "none"):
        return None if text == "none" else "auto"
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"--floor must be 'auto', 'none' or a number, got {text!r}") from None


def _sequence(args) -> int:
    from ..sequencer.api import sequence

    tab = sequence(args.input, args.output, metrics=_list(args.metrics), scales=_scales(args.scales),
                   mode=args.mode, method=args.method, best_k=args.best_k, n_neighbors=args.n_neighbors,
                   n_jobs=args.n_jobs, plot=args.plot, random_state=args.seed, floor=_floor(args.floor),
                   progress=args.progress)
    m = tab.meta
    print(f"sequenced {len(tab)} objects ({m['mode']}, {m['method']}, scales {m['scales']}) in {m['seconds']:.1f} s: "
          f"elongation {m['elongation']:.2f} (normalised {m['elongation_normalized']:.3f}) -> {args.output}"
          + (f" (+ {tab.meta['plot']})" if args.plot else ""))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sequence", help="order objects along the main trend (the Sequencer)",
        description="The Sequencer (Baron & Ménard 2021). INPUT is a store made by `serendip ingest` or a "
                    ".npy/.npz matrix (npz keys: flux, grid|wavelength|loglam, id). Output: one row per object "
                    "in sequence order with id, position and input index; the elongation, eta per metric and "
                    "scale and all parameters are in the table metadata.")
    p.add_argument("input", help="store from `serendip ingest`, or .npy/.npz matrix")
    p.add_argument("-o", "--output", required=True, help="output table: .fits, .parquet, .csv or .ecsv")
    p.add_argument("--metrics", default="EMD,energy,KL,L2", help="comma list of EMD, energy, KL, L2 (default all)")
    p.add_argument("--scales", default=None, help="comma list of chunk counts, e.g. 1,2,4 (default: powers of "
                                                  "two below n_pixels/20)")
    p.add_argument("--mode", choices=["improved", "faithful"], default="improved",
                   help="improved (default) or faithful (reproduces thesequencer 0.0.5)")
    p.add_argument("--method", choices=["auto", "exact", "knn"], default="auto",
                   help="exact N×N matrices or a kNN graph (auto: exact up to 8,000 objects, 1 GB of matrices)")
    p.add_argument("--best-k", type=positive_int, default=None,
                   help="combine only the K most elongated (metric, scale)")
    p.add_argument("--n-neighbors", type=positive_int, default=15, help="neighbours per object for --method knn")
    p.add_argument("--n-jobs", type=n_jobs, default=None, help="threads (default all)")
    p.add_argument("--floor", default="auto",
                   help="EMD, energy and KL need positive flux: 'auto' (default) raises values below 1e-3 of the "
                        "median |flux| to that floor when some are <= 0; a number clips there; 'none' never clips")
    p.add_argument("--seed", type=int, default=0, help="random seed of the kNN graph's PCA (default 0)")
    p.add_argument("--plot", default=None, metavar="FIGURE",
                   help="also draw the classic Sequencer figure (.png, .pdf, .svg, ...; .png if no extension)")
    p.set_defaults(func=_sequence)
