"""`serendip ingest` and `serendip info`: build a spectra store and describe one."""
from __future__ import annotations

import argparse

from ._argtypes import positive_int


def _mask_bits(text: str):
    """``--mask-bits``: 'default', 'none', an integer bitmask (0x... allowed), or bit names/numbers."""
    t = text.strip()
    if t.lower() == "default":
        from serendip.spectra.preprocess import DEFAULT_AND_MASK_BITS
        return DEFAULT_AND_MASK_BITS
    if t.lower() in ("none", "0", ""):
        return None
    if t.lower().startswith("0x"):
        return int(t, 16)
    parts = [p for p in t.replace(",", " ").split() if p]
    return [int(p) if p.isdigit() else p for p in parts]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "ingest", help="read spectra files into one clean HDF5 store on a common grid",
        description="Read SDSS spec-*.fits, MaNGA-style or wide-table files (files, folders or globs), mask, "
                    "de-redshift, resample (flux-conserving), normalise and store them. Bad files are skipped "
                    "and listed in STORE's rejected table and <stem>.rejected.csv; the exit code is non-zero "
                    "only when nothing could be read.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders (searched recursively) or glob patterns")
    p.add_argument("-o", "--output", required=True, metavar="STORE", help="the store to write (.h5)")
    p.add_argument("--grid", choices=("log", "linear"), default="log", help="grid kind (default: log)")
    p.add_argument("--wmin", type=float, help="first pixel, Å (default: from the data)")
    p.add_argument("--wmax", type=float, help="last pixel, Å (default: from the data)")
    p.add_argument("--npix", type=positive_int, help="number of pixels (default: the inputs' native step)")
    rf = p.add_mutually_exclusive_group()
    rf.add_argument("--rest-frame", dest="rest_frame", action="store_true", default=True,
                    help="de-redshift with the z column before resampling (default)")
    rf.add_argument("--no-rest-frame", dest="rest_frame", action="store_false",
                    help="keep the observed frame")
    p.add_argument("--mask-bits", type=_mask_bits, default="default",
                   help="SDSS and_mask bits to mask: 'default', 'none', a bitmask (e.g. 0x1000000) or names/numbers "
                        "(e.g. 'NODATA,BRIGHTSKY' or '22,24')")
    p.add_argument("--sky-lines", action="store_true", help="also mask the strong night-sky lines")
    p.add_argument("--normalize", choices=("median", "sum", "l2", "none"), default="median",
                   help="normalisation after resampling (default: median)")
    p.add_argument("--norm-window", type=float, nargs=2, metavar=("WMIN", "WMAX"),
                   help="wavelength window for the normalisation, Å")
    p.add_argument("--no-fill", dest="fill", action="store_false", help="do not interpolate masked pixels")
    p.add_argument("--block-size", type=positive_int, default=1024, help="spectra per processing block (default: 1024)")
    p.add_argument("--format", help="force a reader: sdss, manga or table")
    p.add_argument("--z-column", default="z", metavar="COL",
                   help="metadata column holding each object's redshift, for the rest-frame shift (default: z)")
    p.add_argument("--min-good-fraction", type=float, default=0.2, metavar="F",
                   help="reject a spectrum whose usable data cover less than this fraction of the output grid "
                        "(after the rest-frame shift and resampling), or of its own pixels (default 0.2)")
    ex = p.add_mutually_exclusive_group()
    ex.add_argument("--overwrite", action="store_true", help="rebuild STORE if it exists")
    ex.add_argument("--append", action="store_true",
                    help="add inputs not yet in STORE (files already there, by SHA-256, are skipped)")
    p.add_argument("--no-resume", dest="resume", action="store_false",
                   help="start over instead of resuming an interrupted run")
    p.set_defaults(func=_ingest)

    q = subparsers.add_parser("info", help="describe a spectra store: size, grid, provenance, rejected files",
                              description="Print the size, grid, provenance and rejected count of a store.")
    q.add_argument("store", metavar="STORE")
    q.add_argument("--rejected", action="store_true", help="also list every rejected file and its reason")
    q.set_defaults(func=_info)


def _ingest(args: argparse.Namespace) -> int:
    from serendip.spectra.ingest import ingest
    from serendip.spectra.preprocess import DEFAULT_AND_MASK_BITS

    mask_bits = DEFAULT_AND_MASK_BITS if args.mask_bits == "default" else args.mask_bits
    if_exists = "overwrite" if args.overwrite else ("append" if args.append else "error")
    result = ingest(args.inputs, args.output, grid=args.grid, wmin=args.wmin, wmax=args.wmax, npix=args.npix,
                    rest_frame=args.rest_frame, mask_bits=mask_bits, sky_lines=args.sky_lines,
                    normalize=None if args.normalize == "none" else args.normalize, norm_window=args.norm_window,
                    fill=args.fill, block_size=args.block_size, progress=args.progress, format=args.format,
                    if_exists=if_exists, resume=args.resume, z_column=args.z_column,
                    min_good_fraction=args.min_good_fraction)
    print(result.summary())
    return 0


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def store_info(path) -> str:
    """The text ``serendip info`` prints for a store."""
    import json
    from pathlib import Path

    from serendip.spectra.store import SpectraStore

    path = Path(path)
    with SpectraStore(path) as store:
        w = store.wavelength.value
        prov = store.provenance_without_inputs()
        grid = prov.get("grid") or {}
        n_inputs = len(store.inputs)
        rejected = store.rejected
        masked = None
        if store.n_objects:
            block = store[: min(store.n_objects, 1000)]
            masked = float(block.mask.mean())
        lines = [
            f"store      {path}",
            f"size       {_human(path.stat().st_size)} on disk; {store.n_objects} spectra × {store.n_pixels} pixels "
            f"({_human(store.n_objects * store.n_pixels * 4)} of float32 flux)",
            f"grid       {grid.get('kind', '?')}, {w[0]:.2f}–{w[-1]:.2f} Å, {w.size} px"
            + (" (rest frame)" if prov.get("rest_frame") else " (observed frame)"),
            f"flux unit  {store.flux_unit or 'none (normalised: a ratio; the metadata column norm holds each scale)'}",
            f"inputs     {n_inputs} files (SHA-256 of each in the provenance)",
            f"rejected   {len(rejected)}",
        ]
        if masked is not None:
            lines.append(f"masked     {masked:.1%} of pixels (first {min(store.n_objects, 1000)} spectra)")
        meta_cols = store.meta.colnames
        lines.append(f"metadata   {', '.join(meta_cols)}")
        if "class" in meta_cols and store.n_objects:
            vals, counts = __import__("numpy").unique(store.meta["class"], return_counts=True)
            lines.append("classes    " + ", ".join(f"{v or '(none)'}: {c}" for v, c in zip(vals, counts)))
        lines.append(f"serendip   {prov.get('serendip_version', '?')}, created {prov.get('created', '?')}")
        lines.append("steps")
        for step in prov.get("steps", []):
            params = json.dumps(step.get("params", {}), default=str)
            if len(params) > 110:
                params = params[:107] + "..."
            lines.append(f"  - {step.get('step')}: {params}")
    return "\n".join(lines)


def _info(args: argparse.Namespace) -> int:
    from serendip.spectra.store import SpectraStore

    print(store_info(args.store))
    if args.rejected:
        with SpectraStore(args.store) as store:
            for r in store.rejected:
                print(f"  {r['file']}{' [' + r['id'] + ']' if r['id'] else ''}: {r['reason']}")
    return 0
