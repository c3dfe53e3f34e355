"""`serendip simulate` and `serendip fetch-sdss`: the built-in synthetic survey and SDSS downloads."""
from __future__ import annotations

import argparse
from pathlib import Path

from ._argtypes import non_negative_int, positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "simulate", help="write the built-in synthetic survey as SDSS-format spec-*.fits files + truth table",
        description="Generate the synthetic SDSS-like galaxy survey (hidden sequence parameter, planted "
                    "anomalies of four kinds) and write it as spec-PLATE-MJD-FIBER.fits files plus a truth "
                    "table, so it can be ingested like real data.")
    p.add_argument("-o", "--output", required=True, type=Path, help="output folder (created)")
    p.add_argument("--n", type=positive_int, default=300, help="number of spectra (default 300)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--anomaly-fraction", type=float, default=0.03,
                   help="fraction of planted anomalies (default 0.03; at least one per sub-kind for n >= 60)")
    p.add_argument("--snr-median", type=float, default=10.0, help="median S/N per pixel (default 10)")
    p.add_argument("--truth", default="truth.ecsv",
                   help="file name of the truth table inside the folder (default truth.ecsv, which ingest "
                        "skips; .fits/.csv/.parquet also work)")
    p.set_defaults(func=_simulate)

    f = subparsers.add_parser(
        "fetch-sdss", help="download SDSS/BOSS spec-*.fits files listed in a table (cache, retries, resume)",
        description="Download spectra from the SDSS Science Archive Server in its own layout. TABLE has "
                    "plate, mjd, fiberid columns (any case) or is an SDSS specObj table (PLATE, MJD, FIBERID, "
                    "optional RUN2D). Exits non-zero only if nothing could be fetched.")
    f.add_argument("table", type=Path, help="table of spectra (FITS, CSV, ECSV or Parquet)")
    f.add_argument("-o", "--output", required=True, type=Path, help="download folder (created)")
    f.add_argument("--base-url", default=None, help="archive root (default https://data.sdss.org)")
    f.add_argument("--run2d", default=None, help="reduction for rows without RUN2D (default: by plate number)")
    f.add_argument("--template", default=None,
                   help="URL template with {base} {run2d} {plate} {mjd} {fiberid} (default: the DR17 SAS layout)")
    f.add_argument("--retries", type=non_negative_int, default=3,
                   help="retries per file for transient errors (default 3)")
    f.add_argument("--backoff", type=float, default=1.0, help="seconds before the first retry, doubling (default 1)")
    f.add_argument("--timeout", type=float, default=60.0, help="socket timeout in seconds (default 60)")
    f.add_argument("--jobs", type=positive_int, default=1, help="parallel downloads (default 1)")
    f.set_defaults(func=_fetch)


def _simulate(args: argparse.Namespace) -> int:
    from ..datasets import make_survey, write_sdss_files

    if args.n < 1:
        raise ValueError(f"--n must be at least 1; got {args.n}")
    survey = make_survey(args.n, seed=args.seed, anomaly_fraction=args.anomaly_fraction,
                         snr_median=args.snr_median, progress=args.progress)
    paths = write_sdss_files(survey, args.output, progress=args.progress, truth_name=args.truth)
    kinds = survey.truth["anomaly_kind"]
    counts = ", ".join(f"{k} {int((kinds == k).sum())}" for k in ("bad", "misclassified", "tail", "unknown"))
    print(f"wrote {len(paths)} SDSS-format spectra to {args.output} "
          f"({int(survey.truth['is_anomaly'].sum())} planted anomalies: {counts}); "
          f"truth table: {args.output / args.truth}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from .._io import write_table
    from ..datasets.fetch import DEFAULT_BASE_URL, fetch_sdss

    result = fetch_sdss(args.table, args.output, base_url=args.base_url or DEFAULT_BASE_URL, run2d=args.run2d,
                        template=args.template, retries=args.retries, backoff=args.backoff,
                        timeout=args.timeout, n_jobs=args.jobs, progress=args.progress)
    log_path = write_table(result, Path(args.output) / "fetch_sdss_log.ecsv")
    status = result["status"]
    ok, cached, failed = (int((status == s).sum()) for s in ("ok", "cached", "failed"))
    print(f"fetch-sdss: {ok} downloaded, {cached} already cached, {failed} failed "
          f"(of {len(result)}) into {args.output}; log: {log_path}")
    for row in result[status == "failed"][:5]:
        print(f"  failed spec-{row['plate']:04d}-{row['mjd']:05d}-{row['fiberid']:04d}: {row['reason']}")
    if failed > 5:
        print(f"  ... and {failed - 5} more (see the log)")
    return 0 if (ok + cached) > 0 else 1
