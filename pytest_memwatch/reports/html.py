"""The HTML leak report: a pure renderer of the results document.

:func:`render_report` turns a results document into one self-contained HTML
page (inline CSS, a little inline JavaScript for sorting and filtering, charts
as inline SVG computed here), :func:`render_history` plots saved runs over
time, and :func:`html_section` renders one test as a fragment for pytest-html.

Every string that comes from tests reaches the page through Jinja2's
autoescaping, the one escaping path; the document embedded for the page's
"download JSON" button goes through ``tojson``, which escapes ``<``, ``>``
and ``&`` so that no ``</script>`` can end the data block early. The page
carries a Content-Security-Policy that lets only the report's own script run
(by its hash) and forbids every network request, so it also proves it works
offline.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from pytest_memwatch.base.stats import median
from pytest_memwatch.base.units import format_duration, format_size
from pytest_memwatch.reports.compare import METRICS, growth_bytes, peak_bytes
from pytest_memwatch.reports.results import now_iso

TEMPLATES = Path(__file__).parent / "templates"
BYTE_METRICS = ("rss", "malloc")
PROBE_ROWS = ("rss", "malloc", "blocks", "gc_objects", "fds", "threads")


# -- charts -----------------------------------------------------------------------


@dataclass
class Series:
    """One line of a chart: an SVG path and its points (with tooltips)."""

    name: str
    css: str
    path: str
    points: list[tuple[float, float, str]]


@dataclass
class Chart:
    """Geometry of one SVG chart; the ``chart`` template macro draws it."""

    title: str
    width: int
    height: int
    left: float
    top: float
    right: float
    bottom: float
    xticks: list[tuple[float, str]] = field(default_factory=list)
    yticks: list[tuple[float, str]] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)
    bands: list[tuple[float, float, str]] = field(default_factory=list)
    lines: list[tuple[float, float, float, float, str, str]] = field(default_factory=list)
    clip_id: str = "clip"
    zero: float | None = None  # y of the zero line when inside the plot (signed charts)


def _nice_step(span: float, count: int, bases: Sequence[float] = (1, 2, 5, 10)) -> float:
    raw = span / max(1, count)
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    mag = 10.0 ** math.floor(math.log10(raw))
    return mag * float(min((b for b in bases if mag * b >= raw), default=10))


def ticks(lo: float, hi: float, unit: str, count: int = 5) -> list[float]:
    """Round tick values covering ``lo..hi``: binary steps for bytes, clock steps for time."""
    if hi <= lo:
        hi = lo + 1
    span = hi - lo
    if unit == "bytes":
        scale = 1024 ** max(0, min(3, int(math.log(max(abs(lo), abs(hi), 1), 1024))))
        # Whole bytes at least: a tick between two bytes reads "-0 B".
        step = max(1.0, _nice_step(span / scale, count) * scale)
    elif unit == "seconds" and span > 120:
        step = min(
            (
                s
                for s in (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
                if s * count >= span
            ),
            default=_nice_step(span / 86400, count) * 86400,
        )
    else:
        step = _nice_step(span, count)
        if unit in ("count", "run"):
            step = max(1.0, round(step))
    first = math.ceil(lo / step - 1e-9) * step
    out = []
    v = first
    while v <= hi + step * 1e-9:
        out.append(0.0 if abs(v) < step * 1e-9 else v)
        v += step
    return out


def _label(value: float, unit: str) -> str:
    if unit == "bytes":
        return format_size(value)
    if unit == "seconds":
        return format_seconds(value)
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def tick_labels(values: Sequence[float], unit: str) -> list[str]:
    """Labels of an axis's ticks. A byte axis states every tick in one unit, exactly.

    ``format_size`` picks a unit per value and keeps one decimal: an axis up to
    1 KiB read "0 B, 205 B, 410 B ..." and one around 5 MiB could repeat a label.
    """
    if unit != "bytes" or not values:
        return [_label(v, unit) for v in values]
    biggest = max(abs(v) for v in values)
    power = max(0, min(3, int(math.log(max(biggest, 1), 1024))))
    name = ("B", "KiB", "MiB", "GiB")[power]
    scaled = [v / 1024**power for v in values]
    decimals = (
        0
        if power == 0
        else next((d for d in (1, 2, 3) if all(abs(x - round(x, d)) < 1e-6 for x in scaled)), 3)
    )
    return ["0 B" if round(x, decimals) == 0 else f"{x:.{decimals}f} {name}" for x in scaled]


class _Plot:
    """Maps data coordinates into an SVG plot area and collects a :class:`Chart`."""

    def __init__(
        self,
        title: str,
        x: tuple[float, float],
        y: tuple[float, float],
        *,
        xunit: str,
        yunit: str,
        width: int = 640,
        height: int = 220,
        clip_id: str = "clip",
        xlabels: Mapping[int, str] | None = None,
    ) -> None:
        ylo, yhi = y
        if yhi - ylo <= 0:
            # A flat series: a kibibyte (or one count) of room, never a
            # sub-byte axis ("1 B, 0 B, 0 B, -0 B, -1 B").
            least = 1024.0 if yunit == "bytes" else 1.0
            if ylo == 0:
                ylo, yhi = 0.0, least
            else:
                pad = max(abs(yhi) * 0.05, least / 2)
                ylo, yhi = ylo - pad, yhi + pad
        else:
            pad = (yhi - ylo) * 0.08
            # Keep a zero baseline where the data starts at zero: growth charts read from it.
            ylo, yhi = (ylo if ylo == 0 else ylo - pad), yhi + pad
        yt = ticks(ylo, yhi, yunit)
        self.ylo, self.yhi = min(ylo, yt[0]), max(yhi, yt[-1])
        self.xlo, self.xhi = x if x[1] > x[0] else (x[0], x[0] + 1)
        self.chart = Chart(
            title, width, height, 72.0, 12.0, width - 30.0, height - 28.0, clip_id=clip_id
        )
        self.chart.yticks = list(zip([self.sy(v) for v in yt], tick_labels(yt, yunit), strict=True))
        if xlabels is not None:
            every = max(1, math.ceil(len(xlabels) / 10))
            self.chart.xticks = [
                (self.sx(i), text) for i, text in xlabels.items() if i % every == 0
            ]
        else:
            xt = [v for v in ticks(self.xlo, self.xhi, xunit, 6) if self.xlo <= v <= self.xhi]
            self.chart.xticks = list(
                zip([self.sx(v) for v in xt], tick_labels(xt, xunit), strict=True)
            )
        if self.ylo < 0 < self.yhi:
            self.chart.zero = self.sy(0)

    def sx(self, v: float) -> float:
        c = self.chart
        return round(c.left + (v - self.xlo) / (self.xhi - self.xlo) * (c.right - c.left), 2)

    def sy(self, v: float) -> float:
        c = self.chart
        return round(c.bottom - (v - self.ylo) / (self.yhi - self.ylo) * (c.bottom - c.top), 2)

    def series(
        self, name: str, css: str, points: Iterable[tuple[float, float | None, str]]
    ) -> None:
        path: list[str] = []
        dots: list[tuple[float, float, str]] = []
        pen_up = True
        for x, y, tip in points:
            if y is None:
                pen_up = True  # a missing reading breaks the line rather than faking a slope
                continue
            px, py = self.sx(x), self.sy(y)
            path.append(f"{'M' if pen_up else 'L'}{px},{py}")
            dots.append((px, py, tip))
            pen_up = False
        if dots:
            self.chart.series.append(Series(name, css, " ".join(path), dots))

    def band(self, x0: float, x1: float, label: str) -> None:
        self.chart.bands.append((self.sx(x0), self.sx(x1), label))

    def line(self, x0: float, y0: float, x1: float, y1: float, css: str, label: str) -> None:
        self.chart.lines.append((self.sx(x0), self.sy(y0), self.sx(x1), self.sy(y1), css, label))


def _extent(values: Iterable[float | None]) -> tuple[float, float] | None:
    vals = [v for v in values if v is not None]
    return (min(vals), max(vals)) if vals else None


def runs_chart(test: Mapping[str, Any], clip_id: str) -> Chart | None:
    """Memory per run: cumulative RSS and malloc growth since the first run started."""
    runs = test.get("runs") or []
    if len(runs) < 2:
        return None
    lines: dict[str, list[float | None]] = {}
    for metric in BYTE_METRICS:
        first = runs[0]
        after0, delta0 = (
            (first.get("after") or {}).get(metric),
            (first.get("delta") or {}).get(metric),
        )
        if after0 is None or delta0 is None:
            continue
        base = after0 - delta0
        ys: list[float | None] = [0.0]
        ys += [
            None if (v := (r.get("after") or {}).get(metric)) is None else float(v - base)
            for r in runs
        ]
        lines[metric] = ys
    extent = _extent(v for ys in lines.values() for v in ys)
    if extent is None:
        return None
    lo, hi = min(0.0, extent[0]), max(0.0, extent[1])
    plot = _Plot(
        "memory per run",
        (0, len(runs)),
        (lo, hi),
        xunit="run",
        yunit="bytes",
        height=200,
        clip_id=clip_id,
    )
    warm = sum(1 for r in runs if r.get("warmup"))
    if warm:
        plot.band(0, warm, f"{warm} warmup run{'s' if warm > 1 else ''}")
    for metric, ys in lines.items():
        points: list[tuple[float, float | None, str]] = [(0, 0.0, f"{metric}: start")]
        for i, y in enumerate(ys[1:], start=1):
            d = (runs[i - 1].get("delta") or {}).get(metric)
            kind = " (warmup)" if runs[i - 1].get("warmup") else ""
            points.append(
                (
                    i,
                    y,
                    f"run {i}{kind}: {metric} {format_size(d, signed=True)} "
                    f"this run, {format_size(y, signed=True)} in total",
                )
            )
        plot.series(metric, f"mw-s-{metric}", points)
    return plot.chart


def leaked_metrics(test: Mapping[str, Any]) -> list[str]:
    """Metrics other than RSS and malloc on which a leak verdict of the test failed."""
    out: list[str] = []
    for v in test.get("verdicts") or []:
        if v.get("kind") != "leak" or v.get("passed", True):
            continue
        for name, d in ((v.get("details") or {}).get("metrics") or {}).items():
            suspect = isinstance(d, dict) and d.get("state") == "suspect"
            if suspect and name not in BYTE_METRICS and name not in out:
                out.append(name)
    return out


def metric_chart(test: Mapping[str, Any], metric: str, clip_id: str) -> Chart | None:
    """One leaked metric per run (descriptors, threads, blocks): what the verdict judged."""
    runs = test.get("runs") or []
    first = runs[0] if runs else {}
    after0 = (first.get("after") or {}).get(metric)
    delta0 = (first.get("delta") or {}).get(metric)
    if len(runs) < 2 or after0 is None or delta0 is None:
        return None
    base = after0 - delta0
    ys: list[float | None] = [
        None if (v := (r.get("after") or {}).get(metric)) is None else float(v - base) for r in runs
    ]
    extent = _extent(ys)
    if extent is None:
        return None
    unit = METRICS[metric].unit if metric in METRICS else metric
    plot = _Plot(
        f"{metric} per run",
        (0, len(runs)),
        (min(0.0, extent[0]), max(1.0, extent[1])),
        xunit="run",
        yunit=unit,
        height=160,
        clip_id=clip_id,
    )
    warm = sum(1 for r in runs if r.get("warmup"))
    if warm:
        plot.band(0, warm, f"{warm} warmup run{'s' if warm > 1 else ''}")
    points: list[tuple[float, float | None, str]] = [(0, 0.0, f"{metric}: start")]
    for i, y in enumerate(ys, start=1):
        kind = " (warmup)" if runs[i - 1].get("warmup") else ""
        points.append(
            (
                i,
                y,
                f"run {i}{kind}: {metric} {y:+g} in total"
                if y is not None
                else f"run {i}{kind}: {metric} n/a",
            )
        )
    plot.series(metric, f"mw-s-{metric}", points)
    return plot.chart


def _intercept(ts: Sequence[float], ys: Sequence[float], slope: float) -> float:
    # Theil-Sen's intercept: the median residual, robust like the slope itself.
    return median([y - slope * t for t, y in zip(ts, ys, strict=True)])


def soak_chart(soak: Mapping[str, Any], clip_id: str) -> Chart | None:
    """Memory over time with the warmup cut, the fitted trend and the allowed rate."""
    rate = soak.get("rate") or None
    metric = (rate or {}).get("metric") or "rss"
    samples = [s for s in soak.get("samples") or [] if isinstance(s.get("t"), (int, float))]
    ys = [s.get(metric) for s in samples]
    extent = _extent(ys)
    if extent is None:
        return None
    ts = [float(s["t"]) for s in samples]
    tmax = max(max(ts), float(soak.get("duration_s") or 0) if not soak.get("complete") else 0)
    plot = _Plot(
        f"{metric} over time",
        (0, max(tmax, 1.0)),
        extent,
        xunit="seconds",
        yunit="bytes",
        width=720,
        height=240,
        clip_id=clip_id,
    )
    warmup = float(soak.get("warmup_s") or 0)
    if warmup > 0:
        plot.band(0, min(warmup, tmax), "warmup (not fitted)")
    plot.series(
        metric,
        f"mw-s-{metric}",
        (
            (t, y, f"{format_duration(t)}: {metric} {format_size(y)}")
            for t, y in zip(ts, ys, strict=True)
        ),
    )
    fitted = [(t, float(y)) for t, y in zip(ts, ys, strict=True) if y is not None and t >= warmup]
    if rate and fitted:
        slope = float(rate["slope"])
        b = (
            float(rate["intercept"])
            if "intercept" in rate
            else _intercept([t for t, _ in fitted], [y for _, y in fitted], slope)
        )
        t0, t1 = fitted[0][0], fitted[-1][0]
        plot.line(t0, b + slope * t0, t1, b + slope * t1, "mw-trend", f"trend {format_rate(slope)}")
        limit = soak.get("limit_rate")
        if isinstance(limit, (int, float)):
            plot.line(
                t0,
                b + slope * t0,
                t1,
                b + slope * t0 + limit * (t1 - t0),
                "mw-limit",
                f"limit {format_rate(limit)}",
            )
    return plot.chart


def format_rate(bytes_per_s: float | None) -> str:
    """A growth rate as people state it: per hour."""
    if bytes_per_s is None:
        return "n/a"
    return f"{format_size(bytes_per_s * 3600, signed=True)}/h"


# -- view models ------------------------------------------------------------------


def verdict_status(test: Mapping[str, Any]) -> str:
    """``fail`` (a verdict failed), ``pass`` (measured, nothing failed) or ``none``."""
    verdicts = test.get("verdicts") or []
    if any(not v.get("passed", True) for v in verdicts):
        return "fail"
    if verdicts or test.get("before") is not None or test.get("runs") or test.get("soak"):
        return "pass"
    return "none"


def _probe_rows(test: Mapping[str, Any]) -> list[dict[str, Any]]:
    before, after = test.get("before") or {}, test.get("after") or {}
    growth = test.get("growth") or {}
    rows = []
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


def _run_rows(test: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
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
    status: str
    growth: int | None
    peak: int | None
    probe_rows: list[dict[str, Any]]
    run_rows: list[dict[str, Any]]
    runs_chart: Chart | None
    soak_chart: Chart | None
    change: dict[str, Any] | None = None
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
        return [v for v in self.test.get("verdicts") or [] if not v.get("passed", True)]

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
    test: dict[str, Any], index: int, change: dict[str, Any] | None = None, *, id_prefix: str = "c"
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


_STATUS_ORDER = {"fail": 0, "pass": 1, "none": 2}


def _order(view: TestView) -> tuple[int, float]:
    # Failed verdicts first, then the tests that grew most: what a reader looks for first.
    return (_STATUS_ORDER[view.status], -(view.growth or 0))


def _duration(run: Mapping[str, Any]) -> str | None:
    from datetime import datetime

    try:
        start = datetime.fromisoformat(str(run["started_at"]))
        end = datetime.fromisoformat(str(run["finished_at"]))
    except (KeyError, TypeError, ValueError):
        return None
    return format_duration((end - start).total_seconds())


# -- rendering --------------------------------------------------------------------


def _fmt_number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _fmt_seconds(value: float | None) -> str:
    # Test durations are often milliseconds; format_duration is for soak-scale times.
    if value is None:
        return "n/a"
    return f"{value:.3f}s" if value < 10 else format_duration(float(value))


def format_seconds(value: float | None) -> str:
    """A soak's interval, warmup or time axis: ``0.25s`` below 10 s, ``2m05s`` above.

    ``format_duration`` rounds to whole seconds: an interval of 0.25 s read "0s".
    """
    if value is None:
        return "n/a"
    v = float(value)
    return f"{v:.2f}".rstrip("0").rstrip(".") + "s" if v < 10 else format_duration(v)


def _pretty(value: object) -> str:
    return json.dumps(value, indent=1, sort_keys=True, default=str, ensure_ascii=False)


def _pretty_inline(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)


def _csp_hash(script: str) -> str:
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return "sha256-" + base64.b64encode(digest).decode("ascii")


@cache
def environment() -> jinja2.Environment:
    """The one Jinja2 environment: autoescape everything, fail on undefined names."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        # Every template, whatever its extension: HTML is the only output.
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    filters: dict[str, Callable[..., str]] = {
        "size": format_size,
        "ssize": lambda v: format_size(v, signed=True),
        "duration": format_seconds,
        "rate": format_rate,
        "number": _fmt_number,
        "seconds": _fmt_seconds,
        "pretty": _pretty,
        "pretty_inline": _pretty_inline,
        "metric": lambda v, m, signed=False: METRICS[m].format(v, signed=signed),
    }
    env.filters.update(filters)
    return env


def _asset(name: str) -> Markup:
    # Our own CSS/JS, shipped with the package: raw text inside <style>/<script>,
    # where HTML entities are not decoded, so it must not be escaped. Test data
    # never goes through here.
    return Markup((TEMPLATES / name).read_text(encoding="utf-8"))


def _page_assets() -> dict[str, str]:
    script = _asset("report.js")
    return {
        "css": _asset("page.css") + _asset("components.css"),
        "script": script,
        "csp": (
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
            f"script-src '{_csp_hash(script)}'"
        ),
    }


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
    row += [runs, spent, _fmt_seconds(spent)]
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


def row_cells(row: Sequence[Any], with_change: bool) -> list[dict[str, Any]]:
    """The static table's cells of one :func:`_row`: sort value, text, label, badge."""
    cells: list[dict[str, Any]] = [
        {"v": row[0], "text": "", "badge": ("fail", "pass", "none")[row[0]]},
        {"v": row[1], "text": row[1], "id": True, "anchor": row[3]},
        {"v": row[2], "text": row[2]},
    ]
    for i in range(4, 16, 2):
        cells.append({"v": row[i], "text": row[i + 1]})
    cells.append({"v": row[16], "text": str(row[16])})
    cells.append({"v": row[17], "text": row[18]})
    if with_change:
        cells.append({"v": row[19], "text": row[20], "badge": row[21]})
    columns = COLUMNS + ((CHANGE_COLUMN,) if with_change else ())
    for cell, (label, _, _) in zip(cells, columns, strict=True):
        cell["label"] = label
        cell.setdefault("id", False)
        cell.setdefault("anchor", 0)
        cell.setdefault("badge", None)
    return cells


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
        **_page_assets(),
    }


_PLURALS = {
    "fd": "fds",
    "thread": "threads",
    "process": "processes",
    "socket": "sockets",
    "tempfile": "temp files",
    "task": "tasks",
}


def _count_of(n: int, kind: str) -> str:
    """``1 fd``, ``3 threads``: a count of one kind of resource."""
    singular = "temp file" if kind == "tempfile" else kind
    return f"{n} {singular if n == 1 else _PLURALS.get(kind, kind + 's')}"


_FD_NUMBER = re.compile(r"^(fd|socket) \d+")
# Past this many distinct resources per culprit, the section says how many more.
LEDGER_ITEMS = 8


def ledger_view(ledger: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The session ledger's survivors for the page, grouped by culprit; ``None`` when none.

    Identical descriptions (a test that leaves the same thread each run) are
    one line with a count; each line says where the resource was opened.
    """
    from pytest_memwatch.reports.ledger import culprits

    groups = []
    total = 0
    for culprit, resources in culprits(ledger):
        total += len(resources)
        lines: dict[str, dict[str, Any]] = {}
        for r in resources:
            text = str(r.get("description", ""))
            # Descriptors differ only by number: "fd (/dev/null) x75", not 75 lines.
            key = _FD_NUMBER.sub(r"\1", text)
            line = lines.get(key)
            if line is None:
                frames = r.get("origin") or []
                first = frames[0] if frames and isinstance(frames[0], Mapping) else None
                site = f"{first.get('filename')}:{first.get('lineno')}" if first else None
                # A thread's description already says where it was started or
                # its code is defined (its path shortened: compare the file name).
                short = (
                    f"{Path(str(first.get('filename'))).name}:{first.get('lineno')}"
                    if first
                    else None
                )
                where = (
                    f"{site} in {first.get('function')}"
                    if first and short and short not in text
                    else None
                )
                line = lines[key] = {
                    "kind": str(r.get("kind", "")),
                    "description": text,
                    "count": 0,
                    "where": where,
                }
            line["count"] += 1
            if line["count"] == 2:
                line["description"] = key
        items = list(lines.values())
        kinds: dict[str, int] = {}
        for r in resources:
            kind = str(r.get("kind", ""))
            kinds[kind] = kinds.get(kind, 0) + 1
        groups.append(
            {
                "culprit": culprit,
                "count": len(resources),
                "kinds": ", ".join(_count_of(n, k) for k, n in kinds.items()),
                "lines": items[:LEDGER_ITEMS],
                "more": max(0, len(items) - LEDGER_ITEMS),
            }
        )
    if not groups:
        return None
    return {
        "count": total,
        "groups": groups,
        "recorded": (ledger or {}).get("recorded"),
        "released": (ledger or {}).get("released"),
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


def iter_report(doc: Mapping[str, Any], *, title: str | None = None) -> Iterator[str]:
    """The self-contained HTML report of one results document, in pieces as it is written."""
    template = environment().get_template("report.html.j2")
    return template.generate(report_context(doc, title=title))


def render_report(doc: Mapping[str, Any], *, title: str | None = None) -> str:
    """The self-contained HTML report of one results document."""
    return "".join(iter_report(doc, title=title))


def html_section(test: dict[str, Any]) -> str:
    """One test's memory section as an escaped HTML fragment (for pytest-html's extras).

    Static (no script), styled by its own scoped ``<style>``.
    """
    # Several sections share one pytest-html page: derive ids from the test id.
    digest = hashlib.sha1(str(test.get("nodeid", "")).encode("utf-8")).hexdigest()[:10]
    view = make_view(test, 1, id_prefix=f"mw{digest}-")
    return (
        environment()
        .get_template("section.html.j2")
        .render(view=view, css=_asset("components.css"), probe_rows=PROBE_ROWS)
    )


# -- history ----------------------------------------------------------------------


@dataclass
class HistoryTest:
    nodeid: str
    index: int
    latest: int | None
    chart: Chart | None


def _history_chart(
    title: str,
    labels: Sequence[str],
    lines: Mapping[str, Sequence[int | None]],
    clip_id: str,
    *,
    width: int = 720,
    height: int = 200,
) -> Chart | None:
    extent = _extent(float(v) for ys in lines.values() for v in ys if v is not None)
    if extent is None:
        return None
    plot = _Plot(
        title,
        (0, max(1, len(labels) - 1)),
        (min(0.0, extent[0]), max(0.0, extent[1])),
        xunit="run",
        yunit="bytes",
        width=width,
        height=height,
        clip_id=clip_id,
        xlabels=dict(enumerate(labels)),
    )
    for name, ys in lines.items():
        plot.series(
            name,
            f"mw-s-{name}",
            (
                (i, None if y is None else float(y), f"{labels[i]}: {name} {format_size(y)}")
                for i, y in enumerate(ys)
            ),
        )
    return plot.chart


def history_context(
    grouped: Mapping[str, Sequence[tuple[Any, Mapping[str, Any]]]],
    problems: Sequence[str] = (),
    *,
    source: str = "",
) -> dict[str, Any]:
    """Per machine: the saved runs, total growth over time, and each test's growth and peak.

    ``grouped`` maps a machine id to ``(saved run, document)`` pairs in order;
    a saved run needs a ``label`` (e.g. :class:`pytest_memwatch.reports.baselines.SavedRun`).
    """
    machines = []
    for m_index, (machine, runs) in enumerate(grouped.items()):
        labels = [str(r.label) for r, _ in runs]
        rows = [
            {
                "label": str(r.label),
                "started_at": d["run"].get("started_at"),
                "commit": d["run"].get("commit"),
                "tests": d["totals"].get("tests"),
                "failed": d["totals"].get("failed_verdicts"),
                "growth": d["totals"].get("total_growth", d["totals"].get("total_growth_rss")),
                "peak": d["totals"].get("max_peak_rss"),
            }
            for r, d in runs
        ]
        per_test: dict[str, list[dict[str, Any] | None]] = {}
        for i, (_, d) in enumerate(runs):
            for t in d.get("tests") or []:
                per_test.setdefault(t["nodeid"], [None] * len(runs))[i] = t
        tests = []
        for t_index, (nodeid, series) in enumerate(per_test.items()):
            growth = [None if t is None else growth_bytes(t) for t in series]
            peak = [None if t is None else peak_bytes(t) for t in series]
            latest = next((g for g in reversed(growth) if g is not None), None)
            tests.append(
                HistoryTest(
                    nodeid,
                    t_index,
                    latest,
                    _history_chart(
                        "growth and peak",
                        labels,
                        {"growth": growth, "peak": peak},
                        f"h{m_index}t{t_index}",
                        width=460,
                        height=150,
                    ),
                )
            )
        tests.sort(key=lambda t: -(t.latest or 0))
        machines.append(
            {
                "id": machine,
                "rows": rows,
                "chart": _history_chart(
                    "total growth per run",
                    labels,
                    {"total": [row["growth"] for row in rows]},
                    f"h{m_index}",
                ),
                "tests": tests,
            }
        )
    return {
        "title": "pytest-memwatch history",
        "source": source,
        "machines": machines,
        "problems": list(problems),
        "generated_at": now_iso(),
        **_page_assets(),
    }


def render_history(
    grouped: Mapping[str, Sequence[tuple[Any, Mapping[str, Any]]]],
    problems: Sequence[str] = (),
    *,
    source: str = "",
) -> str:
    """Self-contained HTML plotting each test's memory across saved runs."""
    return (
        environment()
        .get_template("history.html.j2")
        .render(history_context(grouped, problems, source=source))
    )
