"""`serendip demo`, `serendip run`, `serendip init-config`, `serendip report`."""
from __future__ import annotations

from ._argtypes import positive_int


def _print_stage(name: str, record: dict) -> None:
    """The one-line summary of each stage."""
    tag = "reused" if record.get("reused") else f"{record.get('seconds', 0):.1f} s"
    text = record.get("summary") or record.get("status", "")
    print(f"[{name}] {text} ({tag})", flush=True)


def _finish(result) -> int:
    path = result.report_path
    if path is None:
        print(f"run folder: {result.run.path} (no report was written)")
        return 1
    print(f"report: {path}")
    return 0


def _demo(args) -> int:
    from ..pipeline import run_demo

    result = run_demo(n=args.n, seed=args.seed, out=args.out, progress=args.progress, force=args.force,
                      on_stage=_print_stage)
    return _finish(result)


def _run(args) -> int:
    from ..pipeline import run_pipeline

    result = run_pipeline(args.config, progress=args.progress, force=args.force or None,
                          on_stage=_print_stage)
    return _finish(result)


def _init_config(args) -> int:
    from ..pipeline import write_example_config

    # inputs are typed relative to the current folder; the config reads them relative to itself
    path = write_example_config(args.output, inputs=args.inputs or None, overwrite=args.force,
                                inputs_relative_to=".")
    print(f"wrote example config {path}; edit [data] inputs, then: serendip run {path}")
    return 0


def _report(args) -> int:
    from ..report import build_report

    path = build_report(args.run_dir, progress=args.progress)
    print(f"report: {path}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="the whole chain on the built-in synthetic survey, with an HTML report",
        description="Generate a synthetic SDSS-like survey with planted anomalies, ingest it, rank weirdness, "
                    "run the Sequencer, embed and cluster, compare detectors with the planted truth and write a "
                    "self-contained HTML report. Re-running resumes finished stages.")
    p.add_argument("--n", type=positive_int, default=5000, help="number of spectra (default 5000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", default="serendip-demo", help="run folder (default ./serendip-demo)")
    p.add_argument("--force", action="store_true", help="recompute every stage")
    p.set_defaults(func=_demo)

    p = subparsers.add_parser(
        "run", help="the whole chain on your spectra, driven by a TOML config",
        description="Run the pipeline described by CONFIG.toml (write one with `serendip init-config`). "
                    "Results land in the config's [run] output folder; finished stages are reused.")
    p.add_argument("config", metavar="CONFIG.toml")
    p.add_argument("--force", action="store_true", help="recompute every stage")
    p.set_defaults(func=_run)

    p = subparsers.add_parser("init-config", help="write a documented example pipeline config",
                              description="Write a documented example TOML config for `serendip run`.")
    p.add_argument("-o", "--output", default="serendip.toml", help="file to write (default serendip.toml)")
    p.add_argument("--inputs", nargs="*", metavar="PATH",
                   help="files, folders or globs to put in [data] inputs")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=_init_config)

    p = subparsers.add_parser("report", help="rebuild the HTML report of a run folder (no recomputation)",
                              description="Regenerate RUN_DIR/report.html and its figures from the run's tables.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.set_defaults(func=_report)
