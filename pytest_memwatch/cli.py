"""``memwatch`` (or ``python -m pytest_memwatch``): render, merge and compare results,
plot saved runs.

Commands::

    report RESULTS.json -o report.html          HTML report of a results file
    merge A.json B.json ... -o merged.json      one document from CI shards
    compare OLD.json NEW.json [--fail EXPR]     per-test changes; exit 1 on regression
    history .memwatch/ -o trend.html            each test's memory across saved runs
    soak-report SAMPLES.jsonl -o soak.html      one soak run from its samples file

Exit status: 0 success, 1 regression (``compare``), 2 bad input or an output
that cannot be written. On an error nothing is written: every output goes to
a temporary file that replaces the target only once complete.

``report``, ``merge`` and ``compare`` read results files as a stream
(:func:`pytest_memwatch.reports.stream.load_results_stream`) and write their
outputs in pieces, so a file of 50 000 tests is never held whole in memory.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from pytest_memwatch.base.files import atomic_write
from pytest_memwatch.base.units import plural
from pytest_memwatch.base.version import __version__
from pytest_memwatch.config.tolerances import parse_tolerance
from pytest_memwatch.reports.compare import compare_docs, machine_warnings
from pytest_memwatch.reports.merge import merge_documents
from pytest_memwatch.reports.results_file import iter_dumps
from pytest_memwatch.reports.stream import load_results_stream, read_json_stream
from pytest_memwatch.reports.validation import ResultsError

PROG = "memwatch"  # the console script; ``python -m pytest_memwatch`` names itself
OK, REGRESSION, ERROR = 0, 1, 2


class CliError(Exception):
    """An error to print as ``memwatch: <message>`` and exit with status 2."""


def _write(path: str, text: str | Iterable[str], what: str, out: TextIO) -> None:
    try:
        written = atomic_write(path, text)
    except ResultsError as exc:
        # An input read as the output is written (a stream) went bad meanwhile.
        raise CliError(str(exc)) from None
    except OSError as exc:
        # exc.filename may be the temporary file, which means nothing to the user.
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(f"{what} written to {written}", file=out)


def _load(path: str) -> dict[str, Any]:
    try:
        return load_results_stream(path)
    except ResultsError as exc:
        raise CliError(str(exc)) from None


def cmd_report(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from pytest_memwatch.reports.html import iter_report

    doc = _load(args.results)
    _write(args.output, iter_report(doc, title=args.title), "HTML report", out)
    return OK


def cmd_merge(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    inputs = []
    for name in args.results:
        try:
            inputs.append((name, read_json_stream(name)))
        except ResultsError as exc:
            raise CliError(str(exc)) from None
    try:
        merged, warnings = merge_documents(inputs)
    except ResultsError as exc:
        raise CliError(str(exc)) from None
    for warning in warnings:
        print(f"memwatch: warning: {warning}", file=err)
    _write(args.output, iter_dumps(merged), "merged results", out)
    totals = merged["totals"]
    print(
        f"{plural(len(merged['shards']), 'shard')}, {plural(totals['tests'], 'test')}, "
        f"{plural(totals['failed_verdicts'], 'failed verdict')}",
        file=out,
    )
    return OK


def cmd_compare(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    for expr in args.fail:
        try:
            parse_tolerance(expr)
        except ValueError as exc:
            raise CliError(f"bad --fail value {expr!r}: {exc}") from None
    old, new = _load(args.old), _load(args.new)
    for warning in machine_warnings(old, new, args.old):
        print(f"memwatch: warning: {warning}", file=err)
    comparison = compare_docs(old, new, args.fail, baseline={"label": args.old, "path": args.old})
    if args.html:
        from pytest_memwatch.reports.html import iter_report

        _write(
            args.html, iter_report({**new, "comparison": comparison.to_dict()}), "HTML report", err
        )
    for line in comparison.table(None if args.all else 10):
        print(line, file=out)
    return REGRESSION if comparison.regressions else OK


def cmd_history(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from pytest_memwatch.reports.baselines import load_history
    from pytest_memwatch.reports.history import render_history

    path = Path(args.storage)
    if not path.is_dir():
        raise CliError(
            f"{args.storage}: no such directory (give the --memwatch-storage "
            "directory, e.g. .memwatch)"
        )
    try:
        grouped, problems = load_history(path)
    except OSError as exc:
        raise CliError(f"{args.storage}: cannot read: {exc.strerror or exc}") from None
    for problem in problems:
        print(f"memwatch: warning: {problem}; skipped", file=err)
    if args.machine:
        grouped = {m: r for m, r in grouped.items() if m == args.machine}
    if not grouped:
        which = f" for machine {args.machine}" if args.machine else ""
        raise CliError(
            f"{args.storage}: no readable saved runs{which} "
            "(save one with pytest --memwatch-save=NAME)"
        )
    _write(args.output, render_history(grouped, problems, source=args.storage), "history", out)
    return OK


def cmd_soak_report(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from pytest_memwatch.reports.html import render_report
    from pytest_memwatch.reports.soak import report_document
    from pytest_memwatch.soak import SoakError

    try:
        doc = report_document(args.samples)
    except SoakError as exc:
        raise CliError(str(exc)) from None
    title = args.title or f"soak: {doc['tests'][0]['nodeid']}"
    _write(args.output, render_report(doc, title=title), "soak report", out)
    return OK


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Render, merge and compare pytest-memwatch results.",
        epilog="Exit status: 0 ok, 1 regression (compare), 2 bad input or unwritable output.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "report",
        help="render a results file as a self-contained HTML report",
        description="Render a results file (--memwatch-json) as one HTML page that opens offline.",
    )
    p.add_argument(
        "results",
        metavar="RESULTS.json",
        help="a results document written by --memwatch-json or merge",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="REPORT.html",
        help="the HTML file to write (replaced atomically)",
    )
    p.add_argument("--title", default=None, help="page title (default: pytest-memwatch report)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "merge",
        help="merge results files from parallel CI jobs (shards)",
        description="Merge the results files of several CI jobs (shards) into "
        "one results document.",
    )
    p.add_argument(
        "results",
        nargs="+",
        metavar="RESULTS.json",
        help="two or more results documents, one per shard",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="MERGED.json",
        help="the merged results document to write (replaced atomically)",
    )
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser(
        "compare",
        help="compare two results files; exit 1 on regression",
        description="Compare two results documents test by test; exit 1 when "
        "a --fail tolerance is exceeded.",
    )
    p.add_argument("old", metavar="OLD.json", help="the baseline")
    p.add_argument("new", metavar="NEW.json", help="the run to judge")
    p.add_argument(
        "--fail",
        action="append",
        default=[],
        metavar="EXPR",
        help="fail on a regression beyond METRIC:TOLERANCE, e.g. growth:10%% or "
        "peak:5MB (repeatable)",
    )
    p.add_argument("--all", action="store_true", help="list every test, not only the changes")
    p.add_argument(
        "--html", metavar="REPORT.html", help="also write NEW's HTML report with the comparison"
    )
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "history",
        help="plot each test's memory across saved runs",
        description="Plot each test's memory across the runs saved with --memwatch-save.",
    )
    p.add_argument("storage", metavar="STORAGE", help="the saved runs directory, e.g. .memwatch")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="TREND.html",
        help="the HTML page to write (replaced atomically)",
    )
    p.add_argument("--machine", help="only this machine id, e.g. Linux-CPython-3.11-64bit")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser(
        "soak-report",
        help="render one soak run's samples file (JSONL) as HTML",
        description="Render one soak run, complete or interrupted, from its "
        "samples file as an HTML page.",
    )
    p.add_argument(
        "samples",
        metavar="SAMPLES.jsonl",
        help="a file from .memwatch/soak/, complete or interrupted",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="SOAK.html",
        help="the HTML page to write (replaced atomically)",
    )
    p.add_argument("--title", default=None, help="page title (default: soak: NODEID)")
    p.set_defaults(func=cmd_soak_report)
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    prog: str = PROG,
) -> int:
    """Run the command line; return the exit status (argparse exits 2 on usage errors)."""
    out = out or sys.stdout
    err = err or sys.stderr
    args = build_parser(prog).parse_args(argv)
    try:
        status: int = args.func(args, out, err)
    except CliError as exc:
        print(f"memwatch: {exc}", file=err)
        return ERROR
    return status
