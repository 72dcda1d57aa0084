"""The report's charts: inline SVG geometry computed here, drawn by a template macro.

Data in, :class:`Chart` out: axes with round ticks (binary steps for bytes,
clock steps for time), one :class:`Series` per metric, bands (warmup) and
lines (a soak's trend and allowed rate). The ``chart`` macro of
``templates/_macros.html.j2`` turns a chart into SVG.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_memwatch.base.units import (
    format_duration,
    format_rate,
    format_seconds,
    format_size,
    plural,
)
from pytest_memwatch.reports.compare import METRICS

BYTE_METRICS = ("rss", "malloc")


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


class Plot:
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


def data_range(values: Iterable[float | None]) -> tuple[float, float] | None:
    vals = [v for v in values if v is not None]
    return (min(vals), max(vals)) if vals else None


def _since_start(runs: Sequence[Mapping[str, Any]], metric: str) -> list[float | None] | None:
    """Each run's reading of ``metric`` above where the first run started (None: unknown)."""
    first = runs[0] if runs else {}
    after0 = (first.get("after") or {}).get(metric)
    delta0 = (first.get("delta") or {}).get(metric)
    if after0 is None or delta0 is None:
        return None
    base = after0 - delta0
    return [
        None if (v := (r.get("after") or {}).get(metric)) is None else float(v - base) for r in runs
    ]


def runs_chart(test: Mapping[str, Any], clip_id: str) -> Chart | None:
    """Memory per run: cumulative RSS and malloc growth since the first run started."""
    runs = test.get("runs") or []
    if len(runs) < 2:
        return None
    lines: dict[str, list[float | None]] = {}
    for metric in BYTE_METRICS:
        ys = _since_start(runs, metric)
        if ys is not None:
            lines[metric] = [0.0, *ys]
    extent = data_range(v for ys in lines.values() for v in ys)
    if extent is None:
        return None
    lo, hi = min(0.0, extent[0]), max(0.0, extent[1])
    plot = Plot(
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
        plot.band(0, warm, plural(warm, "warmup run"))
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
        # Details are free-form in the schema: a file edited by hand may hold anything.
        details = v.get("details")
        metrics = details.get("metrics") if isinstance(details, Mapping) else None
        if not isinstance(metrics, Mapping):
            continue
        for name, d in metrics.items():
            suspect = isinstance(d, dict) and d.get("state") == "suspect"
            if suspect and name not in BYTE_METRICS and name not in out:
                out.append(name)
    return out


def metric_chart(test: Mapping[str, Any], metric: str, clip_id: str) -> Chart | None:
    """One leaked metric per run (descriptors, threads, blocks): what the verdict judged."""
    runs = test.get("runs") or []
    ys = _since_start(runs, metric) if len(runs) >= 2 else None
    if ys is None:
        return None
    extent = data_range(ys)
    if extent is None:
        return None
    unit = METRICS[metric].unit if metric in METRICS else metric
    plot = Plot(
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
        plot.band(0, warm, plural(warm, "warmup run"))
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
    return statistics.median([y - slope * t for t, y in zip(ts, ys, strict=True)])


def soak_chart(soak: Mapping[str, Any], clip_id: str) -> Chart | None:
    """Memory over time with the warmup cut, the fitted trend and the allowed rate."""
    rate = soak.get("rate") or None
    metric = (rate or {}).get("metric") or "rss"
    samples = [s for s in soak.get("samples") or [] if isinstance(s.get("t"), (int, float))]
    ys = [s.get(metric) for s in samples]
    extent = data_range(ys)
    if extent is None:
        return None
    ts = [float(s["t"]) for s in samples]
    tmax = max(max(ts), float(soak.get("duration_s") or 0) if not soak.get("complete") else 0)
    plot = Plot(
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
