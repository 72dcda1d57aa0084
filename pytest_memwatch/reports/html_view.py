"""What the HTML report shows, derived from a results document (no HTML here).

:func:`report_context` reads the document's tests (a list, a spool or a file
read in a stream) and returns everything ``report.html.j2`` renders: the
table's rows, the detailed :class:`TestView` of the tests worth details (all of
them up to :data:`ALL_DETAILS`; past it, failed verdicts and most growth) and
the run's summary. Its figures are the results model's
(:mod:`pytest_memwatch.reports.results`) and the comparison's metrics.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypedDict

from markupsafe import Markup

from pytest_memwatch.base.units import format_duration, format_size, format_test_seconds
from pytest_memwatch.reports.charts import (
    Chart,
    leaked_metrics,
    metric_chart,
    runs_chart,
    soak_chart,
)
from pytest_memwatch.reports.compare import METRICS
from pytest_memwatch.reports.document import ChangeDoc
from pytest_memwatch.reports.html_ledger import ledger_view
from pytest_memwatch.reports.results import (
    failed_verdicts,
    growth_bytes,
    is_measured,
    now_iso,
    peak_bytes,
)

PROBE_ROWS = ("rss", "malloc", "blocks", "gc_objects", "fds", "threads")


# A test's line in the report: a verdict failed, it was measured and none failed, or neither.
VerdictStatus = Literal["fail", "pass", "none"]


def verdict_status(test: Mapping[str, Any]) -> VerdictStatus:
    """``fail`` (a verdict failed), ``pass`` (measured, nothing failed) or ``none``."""
    if failed_verdicts(test):
        return "fail"
    if test.get("verdicts") or is_measured(test):
        return "pass"
    return "none"


class ProbeRow(TypedDict):
    """One probe in a test's details: its readings before and after, and the growth."""

    metric: str
    before: str
    after: str
    growth: str
    grew: bool


class RunRow(TypedDict):
    """One run of a repeated test: what it added per probe, and its peak."""

    n: int
    warmup: bool
    cells: list[str]
    peak: str


class Cell(TypedDict):
    """One cell of the static table: sort value, text, column label, and what it links to."""

    v: Any
    text: str
    label: str
    id: bool
    anchor: int
    badge: str | None


def _probe_rows(test: Mapping[str, Any]) -> list[ProbeRow]:
    before, after = test.get("before") or {}, test.get("after") or {}
    growth = test.get("growth") or {}
    rows: list[ProbeRow] = []
    for m in PROBE_ROWS:
        if m in before or m in after or m in growth:
            fmt = METRICS[m].format
            rows.append(
                {
                    "metric": m,
                    "before": fmt(before.get(m)),
                    "after": fmt(after.get(m)),
                    "growth": fmt(growth.get(m), signed=True),
                    "grew": (growth.get(m) or 0) > 0,
                }
            )
    return rows


def _run_rows(test: Mapping[str, Any]) -> list[RunRow]:
    rows: list[RunRow] = []
    for i, run in enumerate(test.get("runs") or [], start=1):
        delta = run.get("delta") or {}
        rows.append(
            {
                "n": i,
                "warmup": bool(run.get("warmup")),
                "cells": [METRICS[m].format(delta.get(m), signed=True) for m in PROBE_ROWS],
                "peak": format_size(run.get("peak_rss")),
            }
        )
    return rows


@dataclass
class TestView:
    """What the templates need about one test, computed once."""

    __test__ = False  # not a pytest test class

    index: int
    test: dict[str, Any]
    status: VerdictStatus
    growth: int | None
    peak: int | None
    probe_rows: list[ProbeRow]
    run_rows: list[RunRow]
    runs_chart: Chart | None
    soak_chart: Chart | None
    change: ChangeDoc | None = None
    # Charts of the other metrics a leak verdict failed on (fds, threads...).
    metric_charts: list[Chart] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return f"t{self.index}"

    @property
    def nodeid(self) -> str:
        return str(self.test.get("nodeid", ""))

    @property
    def failed(self) -> list[dict[str, Any]]:
        return failed_verdicts(self.test)

    @property
    def has_details(self) -> bool:
        return self.status != "none" or bool(self.test.get("attribution"))

    @property
    def left_open(self) -> str:
        """``+1 fd`` when the test left descriptors or threads open, else empty."""
        value, text = left_open(self.test.get("growth") or {})
        return text if value is not None and value > 0 else ""

    def value(self, metric: str) -> int | None:
        v = (self.test.get("growth") or {}).get(metric)
        return v if isinstance(v, int) else None


def make_view(
    test: dict[str, Any], index: int, change: ChangeDoc | None = None, *, id_prefix: str = "c"
) -> TestView:
    """The view of one test; ``id_prefix`` keeps its SVG ids unique on the page."""
    return TestView(
        index=index,
        test=test,
        status=verdict_status(test),
        growth=growth_bytes(test),
        peak=peak_bytes(test),
        probe_rows=_probe_rows(test),
        run_rows=_run_rows(test),
        runs_chart=runs_chart(test, f"{id_prefix}{index}r"),
        soak_chart=(soak_chart(test["soak"], f"{id_prefix}{index}s") if test.get("soak") else None),
        change=change,
        metric_charts=[
            c
            for i, m in enumerate(leaked_metrics(test))
            if (c := metric_chart(test, m, f"{id_prefix}{index}m{i}")) is not None
        ],
    )


_STATUS_ORDER: dict[VerdictStatus, int] = {"fail": 0, "pass": 1, "none": 2}


def _order(view: TestView) -> tuple[int, float]:
    # Failed verdicts first, then the tests that grew most: what a reader looks for first.
    return (_STATUS_ORDER[view.status], -(view.growth or 0))


def _duration(run: Mapping[str, Any]) -> str | None:
    try:
        start = datetime.fromisoformat(str(run["started_at"]))
        end = datetime.fromisoformat(str(run["finished_at"]))
    except (KeyError, TypeError, ValueError):
        return None
    return format_duration((end - start).total_seconds())


# Up to this many tests, the page is what it always was: every measured test
# has its details, and the table is rendered in the page (it works without
# JavaScript). Above it, details are kept for the tests that matter (failed
# verdicts, most growth) and the script renders the table's rows on demand.
ALL_DETAILS = 1000
MAX_FAILED_DETAILS = 500
TOP_DETAILS = 100
# Without JavaScript, a large report's table shows its detailed tests only.
STATIC_ROWS = ALL_DETAILS


@dataclass
class _Ranked:
    """The ``limit`` most important tests offered, gathered in one pass (bounded memory)."""

    limit: int
    # A min-heap on importance: the least important kept test is the one evicted.
    heap: list[tuple[tuple[float, int], int, dict[str, Any]]] = field(default_factory=list)

    def offer(self, importance: tuple[float, int], index: int, test: dict[str, Any]) -> None:
        entry = (importance, index, test)
        if len(self.heap) < self.limit:
            heapq.heappush(self.heap, entry)
        elif importance > self.heap[0][0]:
            heapq.heapreplace(self.heap, entry)

    def items(self) -> list[tuple[int, dict[str, Any]]]:
        return [(i, t) for _, i, t in self.heap]


def _row(
    test: Mapping[str, Any],
    index: int,
    anchor: int,
    change: Mapping[str, Any] | None,
    with_change: bool,
) -> list[Any]:
    """One table row as the page's script reads it: values to sort on, texts to show."""
    status = verdict_status(test)
    growth = growth_bytes(test)
    peak = peak_bytes(test)
    g = test.get("growth") or {}
    row: list[Any] = [
        _STATUS_ORDER[status],
        str(test.get("nodeid", "")),
        str(test.get("outcome", "")),
        anchor,
    ]
    for value, text in (
        (growth, format_size(growth, signed=True)),
        (_int(g.get("rss")), format_size(g.get("rss"), signed=True)),
        (_int(g.get("malloc")), format_size(g.get("malloc"), signed=True)),
        (_int(g.get("blocks")), METRICS["blocks"].format(g.get("blocks"), signed=True)),
        (peak, format_size(peak, signed=True)),
        left_open(g),
    ):
        # A missing figure says so: an empty cell reads as a rendering fault.
        row += [value, text if value is not None else NOT_MEASURED]
    runs = len(test.get("runs") or ()) or (1 if status != "none" else 0)
    # Every run memwatch made of the test, and the attribution of a failure (as
    # the page's own table shows it).
    spent = float(test.get("duration_s") or 0) + float(
        (test.get("timing") or {}).get("attribution_s") or 0
    )
    row += [runs, spent, format_test_seconds(spent)]
    if with_change:
        metrics = (change or {}).get("metrics") or {}
        d = (metrics.get("growth") or {}).get("delta")
        status_c = (change or {}).get("status")
        badge = status_c if status_c in ("new", "regressed") else None
        text = format_size(d, signed=True) if d is not None else ("" if badge else NOT_MEASURED)
        row += [d, text, badge]
    return row


NOT_MEASURED = "n/a"


def left_open(growth: Mapping[str, Any]) -> tuple[int | None, str]:
    """Descriptors and threads a test left open: a value to sort on and ``+1 fd, +2 threads``.

    ``(None, "n/a")`` when neither was counted; ``(0, "0")`` when nothing was left.
    """
    parts = []
    total: int | None = None
    for metric, one, many in (("fds", "fd", "fds"), ("threads", "thread", "threads")):
        v = _int(growth.get(metric))
        if v is None:
            continue
        total = (total or 0) + v
        if v:
            parts.append(f"{v:+d} {one if abs(v) == 1 else many}")
    if total is None:
        return None, NOT_MEASURED
    return total, ", ".join(parts) or "0"


# The table's columns: header, sort type, tooltip. The page's script reads rows in this order.
COLUMNS = (
    ("Verdict", "num", None),
    ("Test", "str", None),
    ("Outcome", "str", None),
    ("Growth", "num", "bytes left behind: the larger of RSS and malloc growth"),
    ("RSS", "num", None),
    ("malloc", "num", None),
    ("Blocks", "num", None),
    ("Peak", "num", "peak RSS above the memory at test start"),
    ("Left open", "num", "descriptors (fds) and threads the test left open"),
    ("Runs", "num", "runs memwatch made of the test"),
    (
        "Time",
        "num",
        "wall time of every run memwatch made of the test, and of the attribution of a failure",
    ),
)
CHANGE_COLUMN = ("vs baseline", "num", "growth change against the baseline")


def row_cells(row: Sequence[Any], with_change: bool) -> list[Cell]:
    """The static table's cells of one :func:`_row`: sort value, text, label, badge."""
    # (value, text, badge, links to the details, anchor), in the order of COLUMNS.
    parts: list[tuple[Any, str, str | None, bool, int]] = [
        (row[0], "", ("fail", "pass", "none")[row[0]], False, 0),
        (row[1], row[1], None, True, row[3]),
        (row[2], row[2], None, False, 0),
    ]
    parts += [(row[i], row[i + 1], None, False, 0) for i in range(4, 16, 2)]
    parts.append((row[16], str(row[16]), None, False, 0))
    parts.append((row[17], row[18], None, False, 0))
    if with_change:
        parts.append((row[19], row[20], row[21], False, 0))
    columns = COLUMNS + ((CHANGE_COLUMN,) if with_change else ())
    return [
        {"v": v, "text": text, "label": label, "id": is_id, "anchor": anchor, "badge": badge}
        for (v, text, badge, is_id, anchor), (label, _, _) in zip(parts, columns, strict=True)
    ]


def _int(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _script_json(value: object) -> str:
    """JSON for a ``<script type="application/json">`` block: no ``</script>`` can end it.

    The same escaping as Jinja2's ``tojson`` (``<``, ``>``, ``&``, ``'``).
    """
    return (
        json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("'", "\\u0027")
    )


def report_context(doc: Mapping[str, Any], *, title: str | None = None) -> dict[str, Any]:
    """Everything ``report.html.j2`` renders, derived from a results document.

    ``doc["tests"]`` is read twice, one test at a time (it may be a
    :class:`pytest_memwatch.reports.spool.ResultSpool` or a file read in a stream):
    once here for the tests worth details, once while the page is written
    for the table's rows. Only the detailed tests are held.
    """
    comparison = doc.get("comparison") or None
    changes = {c["nodeid"]: c for c in (comparison or {}).get("tests", [])}
    tests = doc.get("tests") or []
    count = 0
    small: list[tuple[int, dict[str, Any]]] = []
    failed = _Ranked(MAX_FAILED_DETAILS)
    grown = _Ranked(TOP_DETAILS)
    for index, t in enumerate(tests, start=1):
        count = index
        if index <= ALL_DETAILS:
            small.append((index, t))
        elif small:
            # Past the limit: from here only the tests that matter are kept.
            for i, kept in small:
                _offer(failed, grown, i, kept)
            small = []
        if not small:
            _offer(failed, grown, index, t)
    if small:
        views = [make_view(t, i, changes.get(t.get("nodeid", ""))) for i, t in small]
        shown = [v for v in views if v.has_details]
        everything = True
    else:
        picked = dict(failed.items() + grown.items())
        views = [make_view(t, i, changes.get(t.get("nodeid", ""))) for i, t in picked.items()]
        shown = views
        everything = False
    ordered = sorted(views, key=_order)
    details = sorted(shown, key=_order)
    anchors = {v.index for v in details}
    grew = sorted((v for v in views if (v.growth or 0) > 0), key=lambda v: -(v.growth or 0))[:10]
    run = doc.get("run") or {}
    totals = doc.get("totals") or {}
    with_change = comparison is not None

    def rows() -> Iterator[Markup]:
        # Written while the page streams out: one test read, one row written.
        first = True
        for index, t in enumerate(tests, start=1):
            row = _row(
                t,
                index,
                index if index in anchors else 0,
                changes.get(t.get("nodeid", "")),
                with_change,
            )
            yield Markup(("" if first else ",\n") + _script_json(row))
            first = False

    return {
        "title": title or "pytest-memwatch report",
        "doc_json": Markup(_script_json(_materialized(doc))) if everything else Markup("null"),
        "rows": rows(),
        "count": count,
        "complete": everything,
        "run": run,
        "totals": totals,
        "views": ordered[:STATIC_ROWS],
        "static_rows": [
            (
                v,
                row_cells(
                    _row(
                        v.test, v.index, v.index if v.index in anchors else 0, v.change, with_change
                    ),
                    with_change,
                ),
            )
            for v in ordered[:STATIC_ROWS]
        ],
        "columns": COLUMNS + ((CHANGE_COLUMN,) if with_change else ()),
        "details": details,
        "failed_omitted": max(0, int(totals.get("failed_verdicts") or 0) - len(failed.heap))
        if not everything
        else 0,
        "grew": grew,
        "grew_max": max((v.growth or 0 for v in grew), default=0),
        "comparison": comparison,
        "removed": [c for c in changes.values() if c["status"] == "removed"],
        "shards": doc.get("shards") or [],
        "ledger": ledger_view(doc.get("ledger")),
        "duration": _duration(run),
        "generated_at": now_iso(),
        "probe_rows": PROBE_ROWS,
    }


def _offer(failed: _Ranked, grown: _Ranked, index: int, t: dict[str, Any]) -> None:
    # Most growth first; between equals, the earlier test.
    importance = (float(growth_bytes(t) or 0), -index)
    if verdict_status(t) == "fail":
        failed.offer(importance, index, t)
    elif importance[0] > 0 or t.get("soak"):
        grown.offer(importance, index, t)


def _materialized(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The document with its tests as a list (only for reports small enough to embed whole)."""
    tests = doc.get("tests")
    if tests is None or isinstance(tests, list):
        return dict(doc)
    return {**doc, "tests": list(tests)}
