"""`serendip <verb>`: a thin command-line layer over public Python functions.

Each verb lives in one module of this package that defines
``register(subparsers)``; the handler it installs parses arguments, calls one
public function and prints a short summary. No science happens here.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings

from .._version import __version__

#: Modules that register verbs, in the order they appear in ``serendip --help``.
VERB_MODULES = (
    "serendip.cli.data",        # ingest, info
    "serendip.cli.datasets",    # simulate, fetch-sdss
    "serendip.cli.pipeline",    # demo, run, report, init-config
    "serendip.cli.outliers",    # weird
    "serendip.cli.sequencer",   # sequence
    "serendip.cli.explore",     # embed, cluster, detect
    "serendip.cli.learn",       # learn recommend|train|predict
    "serendip.cli.web",         # browse
)


class CLIError(Exception):
    """An error to report to the user as one line, with exit code 2."""


def _warning_as_log_line(message, category, filename, lineno, file=None, line=None) -> None:
    """Show a Python warning on the command line as one log line, like serendip's other messages
    (instead of a file path, a line number and a source line meant for programmers)."""
    logging.getLogger("serendip").warning("%s", message)


def _flag_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """``{dest: --flag}`` for the options of ``parser`` whose destination is a multi-word name."""
    return {a.dest: max(a.option_strings, key=len) for a in parser._actions
            if a.option_strings and "_" in a.dest and not isinstance(a, argparse._HelpAction)}


def _remember_flag_names(parser: argparse.ArgumentParser) -> None:
    """Give every (sub)parser a ``_cli_flags`` default: its options' flags by Python name.

    Messages from the library name Python parameters (``anomaly_fraction``); on the command line
    :func:`_with_flags` adds the option that sets each one (``--anomaly-fraction``).
    """
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                _remember_flag_names(sub)
    parser.set_defaults(_cli_flags=_flag_names(parser))


def _with_flags(message: str, flags: dict[str, str] | None) -> str:
    """``message`` with the command-line option added after the first mention of each Python parameter
    a verb's option sets (``anomaly_fraction`` → ``anomaly_fraction (--anomaly-fraction)``), unless the
    message already names that option."""
    import re

    for dest, flag in (flags or {}).items():
        if flag in message:
            continue
        message = re.sub(rf"(?<![\w./-]){re.escape(dest)}(?![\w=-])", lambda m: f"{m.group(0)} ({flag})", message,
                         count=1)
    return message


#: Arguments that name files a verb reads (checked against its ``--output``).
_READ_ARGS = ("input", "inputs", "table", "model", "store", "color_table", "spectra")


def _check_output_is_not_an_input(args) -> None:
    """Refuse an ``--output`` that is one of the files the verb reads: writing it would destroy the input."""
    from pathlib import Path

    out = getattr(args, "output", None)
    if not out:
        return
    target = Path(out).resolve()
    for name in _READ_ARGS:
        value = getattr(args, name, None)
        for item in (value if isinstance(value, (list, tuple)) else [value]):
            if item and not isinstance(item, bool) and Path(str(item)).resolve() == target:
                raise CLIError(f"the output {out} is also an input ({name.replace('_', '-')}); writing it would "
                               "replace the data being read. Choose another output name")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="serendip",
        description="Data-driven discovery in astronomical surveys. Weirdness: higher = weirder.",
    )
    parser.add_argument("--version", action="version", version=f"serendip {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="debug log output (the default shows progress and INFO messages)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors; no progress bars")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name in VERB_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(sub)
    _remember_flag_names(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``serendip`` console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse has already printed
        return exc.code if isinstance(exc.code, int) else 2
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "verb", None) or not hasattr(args, "func"):
        parser.print_help(sys.stderr)
        return 2  # a usage error, as argparse reports one
    args.progress = not args.quiet
    try:
        _check_output_is_not_an_input(args)
        flags = getattr(args, "_cli_flags", None)
        with warnings.catch_warnings():
            warnings.showwarning = (lambda message, *rest:
                                    _warning_as_log_line(_with_flags(str(message), flags), *rest))
            return int(args.func(args) or 0)
    except (CLIError, OSError, ValueError, ImportError) as exc:
        # OSError: missing, unreadable or not-a-FITS files, directories given as files, busy ports;
        # ImportError: an optional extra that is not installed (the message carries the pip hint)
        print(f"serendip {args.verb}: error: {_with_flags(str(exc), getattr(args, '_cli_flags', None))}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        kept = {"ingest": "; the unfinished store is kept, and re-running the same command resumes it",
                "demo": "; finished stages are reused and an unfinished ingest resumes when the same command is "
                        "run again",
                "run": "; finished stages are reused and an unfinished ingest resumes when the same command is "
                       "run again"}.get(args.verb, "; partial ones removed")
        print(f"serendip {args.verb}: interrupted; finished outputs are kept{kept}", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
