"""`serendip browse`: a local web page to look at, label and export the objects of a results table."""
from __future__ import annotations

import argparse


def _browse(args) -> int:
    from ..web import browse

    def ready(url, n):  # the address must be seen even with -q
        print(f"serving {n} objects at {url} (Ctrl-C to stop); labels -> {args.labels}", flush=True)

    browse(args.table, args.input, labels=args.labels, top=args.top or None, host=args.host, port=args.port,
           open_browser=not args.no_open, on_ready=ready)
    return 0


def _port(text: str) -> int:
    """Argparse type of ``--port``: the browse server's own check (a whole number from 0 to 65535)."""
    from ..web.browse import _check_port

    try:
        return _check_port(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "browse", help="browse, label and export the objects of a weirdness or sequence table in a local web page",
        description="Serve TABLE on a local web page: a table with a 'position' column (from `serendip "
                    "sequence`, or the pipeline's tables/sequence.fits) in sequence order, otherwise one with "
                    "'weirdness' weirdest first (higher = weirder), with one plot per object "
                    "(when --input is given) and label buttons. Labels are saved atomically to --labels at "
                    "every click; the page's export link (/export.csv) downloads the shown rows as CSV with the "
                    "columns rank, id, the ordering column (weirdness or position) when there is one, label and "
                    "note; the table's other columns are not included.")
    p.add_argument("table", help="results table (.fits, .parquet, .csv, .ecsv) with an 'id' column")
    p.add_argument("--input", default=None, help="the objects the table was computed from (store, .npy/.npz, "
                                                 "spectra file), to plot them")
    p.add_argument("--labels", default="labels.csv", help="labels CSV, read if present (default labels.csv)")
    p.add_argument("--top", type=int, default=200, help="rows shown (default 200; 0 = all; negative is an error)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine only)")
    p.add_argument("--port", type=_port, default=8765, help="port, 0-65535 (default 8765; 0 = any free port)")
    p.add_argument("--no-open", action="store_true", help="do not open a browser window")
    p.set_defaults(func=_browse)
