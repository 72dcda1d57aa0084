"""Soak tests: a long run sampled over time and judged by its steady-state growth rate.

The engine side of ``@pytest.mark.soak`` and the ``soak`` fixture (pytest is
never imported here; the plugin hands in plain values):

- :func:`make_plan` turns the marker's values and ``--memwatch-soak-duration``
  into a :class:`SoakPlan`, or raises a :class:`SoakError` naming the bad value.
- :class:`SoakRun` samples the cheap probes on a background thread (and at the
  test's iteration boundaries), streams every sample to a JSONL file, reports
  progress, turns SIGTERM/SIGINT into a clean early end and resumes an
  interrupted run from its file. :class:`SoakHandle` is what a test iterates.
- :func:`analyze` and :func:`soak_verdict` decide from the samples after warmup
  (the rule is explained in docs/soak.md).
- :func:`read_samples` and :func:`report_document` read a samples file back,
  for ``--memwatch-soak-resume`` and ``python -m pytest_memwatch soak-report``.

Samples file (one per test, JSON Lines, UTF-8)::

    {"format": "pytest-memwatch-soak", "version": 1, "nodeid": ..., "started_at": ...,
     "started_unix": ..., "duration_s": ..., "interval_s": ..., "warmup_s": ...,
     "limit_rate": ..., ...}                                   # header, line 1
    {"t": 0.0, "rss": ..., "traced": ..., "gc_objects": ..., "fds": ..., "threads": ...,
     "malloc": ..., "blocks": ...}                              # one line per sample
    {"event": "resume", "t": 4.5, "at": ..., "pid": ...}        # a resumed run goes on
    {"event": "end", "t": 20.0, "complete": true, "reason": null, "at": ...}
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import math
import os
import platform
import re
import signal
import socket
import sys
import threading
import time
import tracemalloc
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any, TypeGuard

from pytest_memwatch.base.limits import MAX_DURATION, short_repr
from pytest_memwatch.base.probes import Prober, get_prober
from pytest_memwatch.base.stats import Trend, median, theil_sen
from pytest_memwatch.base.units import format_duration, format_size
from pytest_memwatch.base.verdict import Verdict
from pytest_memwatch.reports.results import now_iso

FORMAT = "pytest-memwatch-soak"
FORMAT_VERSION = 1
# What every sample records. The first six are the documented soak sample
# (docs/results.md); malloc and blocks come free with the same probe read.
FIELDS = ("rss", "traced", "gc_objects", "fds", "threads", "malloc", "blocks")
RESOURCES = ("fds", "threads")
# Pairwise slopes grow with the square of the points: 400 points are 80 000
# slopes, a fraction of a second in pure Python, and plenty for the interval.
MAX_FIT_POINTS = 400
MIN_FIT_POINTS = 8
# Samples kept in memory during a run. Preallocated and thinned in place, so
# an 8-hour run at 1 s does not grow the heap it is measuring.
BUFFER_CAPACITY = 4096
# Samples of a run copied into the results document (the file keeps them all).
MAX_RESULT_SAMPLES = 2000
# The floor of a climbing series must rise by this many noise sigmas on top of
# the limit (see Analysis.climbing): a sawtooth's floors differ by noise only.
FLOOR_SIGMAS = 2.0
# "Still climbing" (not a plateau): the last two thirds of the steady state grow
# at least 40 % of the way from the limit to the whole steady state's rate. A
# cache that filled in the first third has flat later thirds; a leak keeps its
# rate. Tuned with bench/soak_detection.py: a shorter window or a larger share
# loses leaks to noise, a smaller share lets plateaus through.
RECENT_WINDOW = 2 / 3
RECENT_SHARE = 0.4
# Residual autocorrelation below which samples count as independent (see _fit).
DECORRELATED = 0.2
# A soak capped by --memwatch-soak-duration keeps at least this many samples.
MIN_CAPPED_SAMPLES = 20
FSYNC_EVERY_S = 2.0


class SoakError(ValueError):
    """A soak test that cannot run as asked (bad values, unusable samples file).

    The message is complete: it names the test or the file, the problem and the fix.
    """


def format_rate(bytes_per_s: float | None) -> str:
    """A growth rate as people state it, per hour: ``format_rate(291.27) == '+1.0 MiB/h'``."""
    if bytes_per_s is None:
        return "n/a"
    return f"{format_size(bytes_per_s * 3600, signed=True)}/h"


def format_seconds(seconds: float) -> str:
    """``format_duration`` with tenths below ten seconds, where short test runs live."""
    if seconds < 10:
        return f"{seconds:.2g}s" if seconds < 1 else f"{seconds:.1f}s".replace(".0s", "s")
    return format_duration(seconds)


# -- the plan --------------------------------------------------------------------


@dataclass(frozen=True)
class SoakPlan:
    """How one soak test runs: all times in seconds, the limit in bytes per second."""

    nodeid: str
    duration_s: float
    interval_s: float
    warmup_s: float
    limit_rate: float | None = None
    # The marker's own duration when --memwatch-soak-duration shortened it.
    capped_from: float | None = None

    def header_fields(self) -> dict[str, Any]:
        return {
            "nodeid": self.nodeid,
            "duration_s": self.duration_s,
            "interval_s": self.interval_s,
            "warmup_s": self.warmup_s,
            "limit_rate": self.limit_rate,
            "capped_from": self.capped_from,
        }


def make_plan(nodeid: str, values: Mapping[str, Any], *, cap: float | None = None) -> SoakPlan:
    """The plan for one test from its parsed marker values (see ``markers.SOAK``).

    ``cap`` is ``--memwatch-soak-duration``: the duration becomes the shorter of
    the two. A capped run keeps its warmup in seconds (start-up costs do not
    shrink with the run) but at most half the run, and samples at least
    :data:`MIN_CAPPED_SAMPLES` times, so that an 8-hour nightly test still gives
    a trend in a 10-minute pull-request run. Uncapped, an interval or a warmup
    that does not fit in the duration is an error.
    """
    duration = float(values["duration"])
    interval = float(values["interval"])
    kind, amount = values["warmup"]
    warmup = duration * float(amount) if kind == "fraction" else float(amount)
    limit = values.get("max_growth_rate")
    capped_from: float | None = None
    if cap is not None and cap < duration:
        capped_from = duration
        if kind == "fraction":
            warmup = cap * float(amount)
        warmup = min(warmup, cap / 2)
        interval = min(interval, cap / MIN_CAPPED_SAMPLES)
        duration = cap
    else:
        if interval > duration:
            raise SoakError(
                f"interval {format_seconds(interval)} is longer than the duration "
                f"{format_seconds(duration)}: no sample would fall inside the run"
            )
        if warmup >= duration:
            raise SoakError(
                f"warmup {format_seconds(warmup)} is not shorter than the duration "
                f"{format_seconds(duration)}: nothing would be left to judge"
            )
    return SoakPlan(
        nodeid=nodeid,
        # Microseconds: 10 % of 3 s is 0.3, not 0.30000000000000004, in files and reports.
        duration_s=round(duration, 6),
        interval_s=round(interval, 6),
        warmup_s=round(warmup, 6),
        limit_rate=None if limit is None else float(limit),
        capped_from=capped_from,
    )


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def samples_filename(nodeid: str) -> str:
    """A file name for a test's samples: readable, portable and unique per node id.

    ``tests/test_app.py::test_soak[8h]`` gives
    ``tests_test_app.py__test_soak_8h_-<hash>.jsonl``; the hash of the full node id
    keeps two ids that differ only in replaced characters apart.
    """
    digest = hashlib.sha1(nodeid.encode("utf-8")).hexdigest()[:10]
    stem = _UNSAFE.sub("_", nodeid.replace("::", "__")).strip("._")[:120] or "test"
    return f"{stem}-{digest}.jsonl"


# -- bounded sample storage ----------------------------------------------------------


_MISSING = -1  # no probe value (every metric is a non-negative count)


class SampleBuffer:
    """The samples of a run, thinned deterministically into a fixed memory budget.

    Every ``stride``-th sample is kept; when the buffer is full, every other
    kept sample is dropped and the stride doubles. The arrays are allocated
    once, so the harness adds nothing to the growth it measures, and feeding
    the same stream (a live run, or its file read back) keeps the same samples.
    """

    def __init__(self, capacity: int = BUFFER_CAPACITY) -> None:
        if capacity < 2:
            raise ValueError("capacity must be at least 2")
        self.capacity = capacity
        self._t = array("d", bytes(8 * capacity))
        self._seg = array("h", bytes(2 * capacity))
        self._v = {f: array("q", bytes(8 * capacity)) for f in FIELDS}
        self.n = 0
        self.stride = 1
        self.seen = 0
        self.last: dict[str, Any] | None = None

    def add(self, t: float, values: Mapping[str, int | None], segment: int = 0) -> None:
        self.last = {"t": t, **{f: values.get(f) for f in FIELDS}}
        k = self.seen
        self.seen += 1
        if k % self.stride:
            return
        if self.n == self.capacity:
            self._compact()
            if k % self.stride:
                return
        i = self.n
        self._t[i] = t
        self._seg[i] = segment
        for f in FIELDS:
            v = values.get(f)
            self._v[f][i] = _MISSING if v is None else int(v)
        self.n = i + 1

    def _compact(self) -> None:
        keep = range(0, self.n, 2)
        for j, i in enumerate(keep):
            self._t[j] = self._t[i]
            self._seg[j] = self._seg[i]
            for f in FIELDS:
                self._v[f][j] = self._v[f][i]
        self.n = len(keep)
        self.stride *= 2

    def samples(self) -> list[dict[str, Any]]:
        """The kept samples as dicts (``t``, ``segment`` and every field)."""
        out = []
        for i in range(self.n):
            d: dict[str, Any] = {"t": self._t[i], "segment": self._seg[i]}
            for f in FIELDS:
                v = self._v[f][i]
                d[f] = None if v == _MISSING else v
            out.append(d)
        return out

    def series(self, metric: str, since: float = 0.0) -> tuple[list[float], list[float]]:
        """``(t, value)`` of ``metric`` from ``since`` on, without missing values."""
        ts: list[float] = []
        ys: list[float] = []
        col = self._v[metric]
        for i in range(self.n):
            v = col[i]
            if v != _MISSING and self._t[i] >= since:
                ts.append(self._t[i])
                ys.append(float(v))
        return ts, ys


# -- the verdict -------------------------------------------------------------------


def _thin(n: int, limit: int) -> list[int]:
    """At most ``limit`` indices spread evenly over ``range(n)``, first and last included."""
    if n <= limit:
        return list(range(n))
    step = (n - 1) / (limit - 1)
    return sorted({round(i * step) for i in range(limit)})


def _fit(ts: Sequence[float], ys: Sequence[float]) -> Trend:
    """Theil-Sen slope of ``ys`` against seconds, with an interval that allows for memory.

    The estimate uses up to :data:`MAX_FIT_POINTS` samples. Its interval does
    not: samples a second apart are not independent (a heap grown for a
    minute stays grown for that minute), and Kendall's interval treats them
    as if they were, which makes it far too narrow. The interval's half-widths
    come instead from the points thinned to the lag where the residuals stop
    resembling each other, the median over a few thinning phases.
    """
    idx = _thin(len(ts), MAX_FIT_POINTS)
    xs = [ts[i] for i in idx]
    vs = [ys[i] for i in idx]
    est = theil_sen(vs, xs)
    if len(xs) < MIN_FIT_POINTS:
        return est
    b = median([y - est.slope * t for t, y in zip(xs, vs, strict=True)])
    lag = _decorrelation_lag([y - b - est.slope * t for t, y in zip(xs, vs, strict=True)])
    if lag <= 1:
        return est
    below: list[float] = []
    above: list[float] = []
    for phase in range(min(lag, 5)):
        sub = theil_sen(vs[phase::lag], xs[phase::lag])
        below.append(sub.slope - sub.low)
        above.append(sub.high - sub.slope)
    return Trend(est.slope, est.slope - median(below), est.slope + median(above), est.n)


def _decorrelation_lag(residuals: Sequence[float]) -> int:
    """The first lag (in points) where the residuals' autocorrelation falls below 0.2.

    Capped so that at least six points remain. Residuals are clipped at three
    robust sigmas first, or one spike would decide the correlation.
    """
    n = len(residuals)
    cap = max(1, n // 6)
    m = median(residuals)
    spread = 1.4826 * median([abs(r - m) for r in residuals])
    if spread <= 0:
        return 1
    r = [min(max(x - m, -3 * spread), 3 * spread) for x in residuals]
    mean = sum(r) / n
    r = [x - mean for x in r]
    denom = sum(x * x for x in r)
    if denom <= 0:
        return 1
    for k in range(1, cap + 1):
        if sum(r[i] * r[i + k] for i in range(n - k)) / denom < DECORRELATED:
            return k
    return cap


def _low(values: Sequence[float]) -> float:
    """The floor of a series: its lowest value, or a slightly higher one in long series.

    One sample in 200 may dip below the floor without moving it; a sawtooth's
    troughs are few, so the floor must stay close to the very lowest sample.
    """
    s = sorted(values)
    return s[min(len(s) - 1, len(s) // 200)]


def _noise(segments: Sequence[Sequence[float]]) -> tuple[float, float]:
    """Sample-to-sample noise (sigma) and the typical step of the series.

    Sigma is the median absolute deviation of the differences between
    consecutive samples: differences cancel a slow trend, and the MAD ignores
    the rare big jumps (a sawtooth's drop, an arena handed back). The step is
    the median difference itself, large on a steep sawtooth ramp: a floor is
    only known to within one step.
    """
    diffs = [b - a for ys in segments for a, b in itertools.pairwise(ys)]
    if len(diffs) < 2:
        return 0.0, 0.0
    m = median(diffs)
    return 1.4826 * median([abs(d - m) for d in diffs]) / math.sqrt(2.0), abs(m)


@dataclass(frozen=True)
class Analysis:
    """What the samples after warmup say; :meth:`climbing` applies a rate limit.

    - ``rate``: Theil-Sen slope of the memory metric against seconds, with its
      95 % interval, over every sample after warmup (at most 400, evenly spread);
    - ``recent``: the same over the last two thirds of that window;
    - ``floor_rise``: how far the floor (2 % quantile) of the last third is
      above the floor of the first third, ``floor_gap`` seconds apart;
    - ``noise``: the sample-to-sample noise (sigma), and ``step`` the typical
      move from one sample to the next, both in the metric's unit;
    - ``resources``: per resource metric, its typical level at the start and at
      the end of the steady state, for the segment where it rose most;
    - ``allocators``: see :meth:`leaking`.
    """

    metric: str | None
    n: int = 0
    span: float = 0.0
    rate: Trend | None = None
    intercept: float | None = None
    recent: Trend | None = None
    floor_rise: float | None = None
    floor_gap: float | None = None
    noise: float = 0.0
    step: float = 0.0
    resources: dict[str, tuple[float, float]] = field(default_factory=dict)
    # For an RSS analysis: whether the allocators' own counts (malloc bytes,
    # allocated blocks) climb too, by the same rule with no limit.
    allocators: dict[str, bool] = field(default_factory=dict)
    # For an RSS analysis: the allocators' own series analysed alike, in bytes
    # (see ALLOCATOR_SCALE), judged beside RSS as max_growth judges both.
    others: dict[str, Analysis] = field(default_factory=dict)

    @property
    def corroborated(self) -> bool:
        """RSS growth that an allocator count shows too (or no allocator count to ask)."""
        return not self.allocators or any(self.allocators.values())

    def leaking(self, limit: float | None) -> bool:
        """The memory verdict: some series climbs over ``limit`` (see :meth:`deciding`)."""
        return self.deciding(limit) is not None

    def deciding(self, limit: float | None) -> Analysis | None:
        """The series that fails the verdict; ``None`` when none does.

        Each series is judged alike: RSS, and the allocators' own counts
        (malloc bytes, allocated blocks as bytes). The allocators reuse pages
        the process already holds, so a heap can climb for hours while RSS
        stays flat; and RSS creeps while a heap fragments (pages touched once,
        never handed back) though nothing is kept. So:

        - with a ``max_growth_rate``, the verdict is the larger of the rates:
          any series climbing over the limit fails (the limit is a budget for
          what the OS charges and for what the heap keeps);
        - with no limit, two series must climb together: RSS and an allocator
          count, or both counts. Against a limit of zero, one exact count
          alone reads noise and a start-up residue as a trend now and then.

        RSS is named when it fails, else the faster allocator count.
        """
        if limit is not None:
            failing = [a for a in (self, *self.others.values()) if a.climbing(limit)]
        else:
            counts = [a for a in self.others.values() if a.corroborates()]
            rss = [self] if self.climbing(None) else []
            votes = rss + counts
            failing = votes if len(votes) >= 2 or (rss and not self.others) else []
        if not failing:
            return None
        if failing[0] is self:
            return self
        return max(failing, key=lambda a: a.rate.slope if a.rate is not None else 0.0)

    def climbing(self, limit: float | None = None) -> bool:
        """Memory still climbs faster than ``limit`` bytes/s (``None``: faster than zero).

        All three must hold:

        - a trend, not noise: the steady state's rate interval lies wholly above
          the limit;
        - not a plateau: the later two thirds still climb at least 40 % of the
          way from the limit to that rate (a cache that filled early has flat
          later thirds; a leak climbs on at the same rate);
        - not a sawtooth: the floor of the last third is above the floor of the
          first by more than the limit allows, plus twice the noise and one
          step (memory that saws keeps coming back down to the same floor).
        """
        if self.rate is None or self.recent is None or self.floor_rise is None:
            return False
        thr = limit or 0.0
        margin = thr * (self.floor_gap or 0.0) + FLOOR_SIGMAS * self.noise + self.step
        return (
            self.rate.low > thr
            and self.recent.slope > thr + RECENT_SHARE * (self.rate.slope - thr)
            and self.floor_rise > margin
        )

    def corroborates(self) -> bool:
        """An allocator count that backs an RSS climb: it climbs too, still at the end.

        Its later two thirds alone must grow with confidence: a start-up
        allocation still settling after warmup grows ever more slowly, and
        with exact counts and little noise even that residue is a "trend".
        """
        return self.climbing(None) and self.recent is not None and self.recent.low > 0

    @property
    def plateau(self) -> bool | None:
        """Memory stopped growing after warmup (level, levelled off, or saws without rising)."""
        return None if self.rate is None else not self.climbing(None)

    def shape(self) -> str:
        """One word for the steady state, for the verdict's message."""
        if self.rate is None or self.floor_rise is None:
            return "unknown"
        if self.climbing(None):
            return "climbing"
        if self.floor_rise > FLOOR_SIGMAS * self.noise + self.step:
            return "levelled off (plateau)"
        if self.rate.low > 0:
            return "saws up and down without a rising floor"
        return "flat"


def pick_metric(samples: Sequence[Mapping[str, Any]]) -> str | None:
    """The memory series to judge: RSS, else malloc bytes, else traced bytes."""
    for metric in ("rss", "malloc", "traced"):
        if any(s.get(metric) is not None for s in samples):
            return metric
    return None


ALLOCATOR_METRICS = ("malloc", "blocks")
# Bytes per unit of each series. An allocated block is counted as 16 bytes,
# the smallest block pymalloc hands out (its alignment) and less than any
# Python object needs: a rate of blocks turned into bytes never overstates
# what a leak of small objects costs, so it fails a budget only when even the
# smallest objects would exceed it.
ALLOCATOR_SCALE: Mapping[str, float] = {"malloc": 1.0, "blocks": 16.0}


def analyze(samples: Sequence[Mapping[str, Any]], warmup_s: float) -> Analysis:
    """Judge-ready figures from samples (dicts with ``t``, optional ``segment``, metrics).

    The memory series (RSS where available) is analysed, and beside it the
    allocator counts, in bytes (see :meth:`Analysis.deciding`).
    """
    main = analyze_metric(samples, warmup_s, pick_metric(samples))
    if main.metric != "rss":
        return main
    others = {
        m: analyze_metric(samples, warmup_s, m, scale=ALLOCATOR_SCALE[m])
        for m in ALLOCATOR_METRICS
        if any(s.get(m) is not None for s in samples)
    }
    allocators = {m: a.corroborates() for m, a in others.items()}
    return dataclasses.replace(main, allocators=allocators, others=others)


def analyze_metric(
    samples: Sequence[Mapping[str, Any]],
    warmup_s: float,
    metric: str | None,
    *,
    scale: float = 1.0,
) -> Analysis:
    """Judge-ready figures for one metric's series.

    A resumed run has one segment per process. Each segment warms up again
    (a restarted process refills its caches), and later segments are shifted
    so their levels continue the first one's line: a fresh process starts
    lower, and the drop must not read as memory given back.
    """
    if metric is None:
        return Analysis(None)
    starts: dict[int, float] = {}
    for s in samples:
        seg = int(s.get("segment") or 0)
        starts.setdefault(seg, 0.0 if seg == 0 else float(s["t"]))
    per_seg: dict[int, tuple[list[float], list[float]]] = {}
    for s in samples:
        seg = int(s.get("segment") or 0)
        y = s.get(metric)
        t = float(s["t"])
        if y is None or t < starts[seg] + warmup_s:
            continue
        ts, ys = per_seg.setdefault(seg, ([], []))
        ts.append(t)
        ys.append(float(y) * scale)
    usable = {k: v for k, v in sorted(per_seg.items()) if len(v[0]) >= 3}
    if len(usable) > 1:
        longest = max(usable.values(), key=lambda v: len(v[0]))
        s0 = _fit(*longest).slope
        levels = {
            k: median([y - s0 * t for t, y in zip(ts, ys, strict=True)])
            for k, (ts, ys) in usable.items()
        }
        base = levels[next(iter(usable))]
        usable = {k: (ts, [y - levels[k] + base for y in ys]) for k, (ts, ys) in usable.items()}
    ts = [t for v in usable.values() for t in v[0]]
    ys = [y for v in usable.values() for y in v[1]]
    resources = _resources(samples, starts, warmup_s)
    n = len(ts)
    if n < MIN_FIT_POINTS:
        return Analysis(metric, n=n, resources=resources)
    span = ts[-1] - ts[0]
    rate = _fit(ts, ys)
    intercept = median([y - rate.slope * t for t, y in zip(ts, ys, strict=True)])
    cut = ts[-1] - RECENT_WINDOW * span
    later = [i for i, t in enumerate(ts) if t >= cut]
    recent = _fit([ts[i] for i in later], [ys[i] for i in later]) if len(later) >= 4 else None
    third = span / 3
    first = [i for i, t in enumerate(ts) if t <= ts[0] + third]
    last = [i for i, t in enumerate(ts) if t >= ts[-1] - third]
    floor_rise = _low([ys[i] for i in last]) - _low([ys[i] for i in first])
    noise, step = _noise([v[1] for v in usable.values()])
    floor_gap = (sum(ts[i] for i in last) / len(last)) - (sum(ts[i] for i in first) / len(first))
    return Analysis(
        metric,
        n=n,
        span=span,
        rate=rate,
        intercept=intercept,
        recent=recent,
        floor_rise=floor_rise,
        floor_gap=floor_gap,
        noise=noise,
        step=step,
        resources=resources,
    )


def _resources(
    samples: Sequence[Mapping[str, Any]], starts: Mapping[int, float], warmup_s: float
) -> dict[str, tuple[float, float]]:
    """Typical fd and thread counts at the start and the end of each segment's steady state.

    Medians of the first and last tenth (at least three samples each): a file or
    thread that is open for a moment while a sample is taken does not count,
    one that stays does, however few.
    """
    out: dict[str, tuple[float, float]] = {}
    for metric in RESOURCES:
        best: tuple[float, float] | None = None
        for seg, start in starts.items():
            vals = [
                float(s[metric])
                for s in samples
                if int(s.get("segment") or 0) == seg
                and s.get(metric) is not None
                and float(s["t"]) >= start + warmup_s
            ]
            if len(vals) < 6:
                continue
            k = max(3, len(vals) // 10)
            pair = (median(vals[:k]), median(vals[-k:]))
            if best is None or pair[1] - pair[0] > best[1] - best[0]:
                best = pair
        if best is not None:
            out[metric] = best
    return out


def soak_verdict(
    plan: SoakPlan,
    analysis: Analysis,
    *,
    complete: bool = True,
    elapsed: float | None = None,
    stop_reason: str | None = None,
    unfinished: bool = False,
) -> Verdict:
    """The soak verdict: fails on a memory climb over the limit, or on any fd/thread growth.

    ``unfinished`` says a samples file read back has no end line.
    """
    warm = format_seconds(plan.warmup_s)
    if complete:
        head = "soak"
    else:
        if unfinished:
            why = "the run has no end line, so it was killed or is still going"
        else:
            why = f"interrupted by {stop_reason}" if stop_reason else "stopped early"
        done = format_seconds(elapsed or 0.0)
        head = f"soak (partial: {why} after {done} of {format_seconds(plan.duration_s)})"
    limit = plan.limit_rate
    parts: list[str] = []
    failed = False
    rate = analysis.rate
    measured = None if rate is None else rate.slope
    decided_by: str | None = None
    if rate is None:
        parts.append(
            f"too few samples after the {warm} warmup to fit a trend "
            f"({analysis.n}, need {MIN_FIT_POINTS}): sample more often or run longer"
        )
    else:
        deciding = analysis.deciding(limit)
        if deciding is not None and deciding.rate is not None:
            failed = True
            measured = deciding.rate.slope
            decided_by = deciding.metric
            figures = _figures(deciding, warm)
            if deciding is not analysis:
                # The heap climbs inside pages the process already holds.
                figures += f" while {_figures(analysis, None)}"
            if limit is not None:
                parts.append(f"{figures}, over the limit of {format_rate(limit)}")
            else:
                parts.append(
                    f"{figures} and is still climbing; with no max_growth_rate any steady climb "
                    'fails (allow some with max_growth_rate="1 MiB/h")'
                )
        elif analysis.climbing(limit):
            parts.append(
                f"{_figures(analysis, warm)}: climbs in {analysis.metric} only, while neither "
                "malloc bytes nor allocated blocks grow (a fragmenting heap keeps its pages, "
                "nothing is kept alive); budget it with max_growth_rate if it matters"
            )
        else:
            within = "" if limit is None else f", within the limit of {format_rate(limit)}"
            heap = [
                f"{m} {format_rate(a.rate.slope)}"
                for m, a in analysis.others.items()
                if a.rate is not None
            ]
            others = f" (heap: {', '.join(heap)})" if heap else ""
            parts.append(f"{_figures(analysis, warm)}: {analysis.shape()}{others}{within}")
    grown = {m: v for m, v in analysis.resources.items() if v[1] > v[0]}
    for metric, (start, end) in grown.items():
        failed = True
        parts.append(f"{metric} grew from {start:g} to {end:g} after warmup (must not grow at all)")
    details: dict[str, Any] = {
        "rate": None if rate is None else _trend_dict(rate, analysis),
        "recent": None if analysis.recent is None else analysis.recent.to_dict(),
        "floor_rise": analysis.floor_rise,
        "floor_gap_s": analysis.floor_gap,
        "noise": analysis.noise,
        "step": analysis.step,
        "shape": analysis.shape(),
        "plateau": analysis.plateau,
        "allocators_climbing": analysis.allocators,
        # Every series judged, in bytes/s (blocks at 16 bytes each), and the one that failed.
        "rates": {
            m: a.rate.to_dict()
            for m, a in {analysis.metric or "rss": analysis, **analysis.others}.items()
            if a.rate is not None
        },
        "decided_by": decided_by,
        "resources": {m: {"start": a, "end": b} for m, (a, b) in analysis.resources.items()},
        "complete": complete,
        "stop_reason": stop_reason,
    }
    return Verdict(
        "soak",
        "marker",
        not failed,
        f"{head}: {'; '.join(parts)}",
        metric=decided_by or analysis.metric,
        limit=limit,
        measured=measured,
        details=details,
    )


def _figures(analysis: Analysis, warm: str | None) -> str:
    """``rss grows +1.0 MiB/h (95% CI ...)`` and, given the warmup, the span it covers."""
    rate = analysis.rate
    if rate is None:
        return f"{analysis.metric} has too few samples"
    unit = " (blocks counted as 16 B)" if analysis.metric == "blocks" else ""
    text = (
        f"{analysis.metric}{unit} {'grows ' if rate.slope > 0 else ''}{format_rate(rate.slope)} "
        f"(95% CI {format_rate(rate.low)}..{format_rate(rate.high)})"
    )
    if warm is not None:
        text += f" over {format_seconds(analysis.span)} after the {warm} warmup"
    return text


def _trend_dict(rate: Trend, analysis: Analysis) -> dict[str, Any]:
    d: dict[str, Any] = dict(rate.to_dict())
    d["metric"] = analysis.metric or "rss"
    if analysis.intercept is not None:
        d["intercept"] = analysis.intercept
    return d


def _thin_samples(samples: Sequence[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    return [samples[i] for i in _thin(len(samples), limit)]


def soak_data(
    plan: SoakPlan,
    samples: Sequence[Mapping[str, Any]],
    analysis: Analysis,
    *,
    complete: bool,
    samples_path: str | None,
    resumes: Sequence[float] = (),
    elapsed: float | None = None,
    stop_reason: str | None = None,
) -> dict[str, Any]:
    """The ``soak`` field of a test result (docs/results.md)."""
    rows = [{"t": round(float(s["t"]), 3), **{f: s.get(f) for f in FIELDS}} for s in samples]
    return {
        "duration_s": plan.duration_s,
        "interval_s": plan.interval_s,
        "warmup_s": plan.warmup_s,
        "samples": _thin_samples(rows, MAX_RESULT_SAMPLES),
        "rate": None if analysis.rate is None else _trend_dict(analysis.rate, analysis),
        "limit_rate": plan.limit_rate,
        "plateau": analysis.plateau,
        "complete": complete,
        "samples_path": samples_path,
        "elapsed_s": elapsed,
        "resumed_at": [round(r, 3) for r in resumes],
        "stop_reason": stop_reason,
        "capped_from": plan.capped_from,
    }


# -- samples files -----------------------------------------------------------------


@dataclass
class SampleFile:
    """A samples file read back: its header, samples (with segments), resumes and end."""

    path: Path
    header: dict[str, Any]
    samples: list[dict[str, Any]]
    resumes: list[float]
    end: dict[str, Any] | None

    @property
    def complete(self) -> bool:
        return bool(self.end and self.end.get("complete"))

    @property
    def last_t(self) -> float:
        return float(self.samples[-1]["t"]) if self.samples else 0.0

    def plan(self) -> SoakPlan:
        h = self.header
        return SoakPlan(
            nodeid=str(h["nodeid"]),
            duration_s=float(h["duration_s"]),
            interval_s=float(h["interval_s"]),
            warmup_s=float(h["warmup_s"]),
            limit_rate=None if h.get("limit_rate") is None else float(h["limit_rate"]),
            capped_from=h.get("capped_from"),
        )


def _is_number(v: object) -> TypeGuard[float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_time(v: object) -> TypeGuard[float]:
    return _is_number(v) and 0 <= v <= MAX_DURATION


def read_samples(path: str | os.PathLike[str]) -> SampleFile:
    """Read and check a samples file; :class:`SoakError` names the file and line of a problem."""
    from pytest_memwatch.base.files import loads_bounded, read_bounded

    p = Path(path)
    try:
        raw = read_bounded(p)
    except OSError as exc:
        raise SoakError(f"{p}: cannot read: {exc.strerror or exc}") from None
    text_lines = raw.split(b"\n")
    if text_lines and text_lines[-1] == b"":
        text_lines.pop()
    if not text_lines:
        raise SoakError(f"{p}: empty file, not a soak samples file (no header line)")
    header: dict[str, Any] = {}
    samples: list[dict[str, Any]] = []
    resumes: list[float] = []
    end: dict[str, Any] | None = None
    segment = 0
    prev_t = 0.0
    for lineno, line in enumerate(text_lines, start=1):
        where = f"{p}:{lineno}"
        last = lineno == len(text_lines)
        try:
            obj = loads_bounded(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            cut = " (the file was cut short)" if last and not raw.endswith(b"\n") else ""
            raise SoakError(f"{where}: not valid JSON{cut}: {exc}") from None
        except (ValueError, RecursionError) as exc:
            # A number no samples file holds (a 400-digit rss, 1e400), or nesting.
            raise SoakError(f"{where}: not a soak sample this version can read: {exc}") from None
        if not isinstance(obj, dict):
            raise SoakError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        if lineno == 1:
            _check_header(obj, where)
            header = obj
            continue
        event = obj.get("event")
        if event is not None:
            if not _is_time(obj.get("t")):
                raise SoakError(
                    f"{where}: {short_repr(event)} event without a number t from 0 to "
                    f"{MAX_DURATION:.0f} s"
                )
            if event == "resume":
                segment += 1
                resumes.append(float(obj["t"]))
                end = None
            elif event == "end":
                end = obj
            # Unknown events are skipped: a newer writer may add some.
            continue
        t = obj.get("t")
        if not _is_time(t):
            # t=1e300 would make a resumed run look finished before it ran.
            raise SoakError(
                f"{where}: sample without a number t from 0 to {MAX_DURATION:.0f} s "
                f"({short_repr(t)})"
            )
        if t + 1e-6 < prev_t:
            raise SoakError(f"{where}: sample time t={t} goes back (previous {prev_t})")
        prev_t = float(t)
        sample: dict[str, Any] = {"t": float(t), "segment": segment}
        for f in FIELDS:
            v = obj.get(f)
            if v is not None and not (_is_number(v) and float(v).is_integer()):
                raise SoakError(f"{where}: {f} must be a whole number or null, got {v!r}")
            sample[f] = None if v is None else int(v)
        samples.append(sample)
    return SampleFile(p, header, samples, resumes, end)


def _check_header(obj: Mapping[str, Any], where: str) -> None:
    if obj.get("format") != FORMAT:
        raise SoakError(
            f"{where}: not a soak samples file (the first line must be a header with "
            f'"format": "{FORMAT}")'
        )
    if obj.get("version") != FORMAT_VERSION:
        raise SoakError(
            f"{where}: samples format version {obj.get('version')!r} is not supported "
            f"(this pytest-memwatch reads version {FORMAT_VERSION})"
        )
    if not isinstance(obj.get("nodeid"), str):
        raise SoakError(f"{where}: header without a nodeid")
    for key in ("duration_s", "interval_s", "warmup_s"):
        if not _is_time(obj.get(key)):
            raise SoakError(
                f"{where}: header {key} must be a number from 0 to {MAX_DURATION:.0f}, "
                f"got {short_repr(obj.get(key))}"
            )
    if obj.get("limit_rate") is not None and not _is_number(obj["limit_rate"]):
        raise SoakError(f"{where}: header limit_rate must be a number or null")


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


def check_resumable(found: SampleFile, plan: SoakPlan) -> None:
    """Raise :class:`SoakError` unless ``found`` was recorded by this test with this plan."""
    h = found.header
    if h["nodeid"] != plan.nodeid:
        raise SoakError(
            f"cannot resume from {found.path}: it holds the samples of {h['nodeid']!r}, "
            f"not of {plan.nodeid!r}. Delete it, or run without --memwatch-soak-resume"
        )
    then = found.plan()
    diffs = [
        f"{name} {format_seconds(old)} then, {format_seconds(new)} now"
        for name, old, new in (
            ("duration", then.duration_s, plan.duration_s),
            ("interval", then.interval_s, plan.interval_s),
            ("warmup", then.warmup_s, plan.warmup_s),
        )
        if not _same(old, new)
    ]
    if diffs:
        raise SoakError(
            f"cannot resume from {found.path}: it was recorded with other settings "
            f"({'; '.join(diffs)}). Run with the same marker and --memwatch-soak-duration, "
            "delete the file to start over, or run without --memwatch-soak-resume"
        )


class SamplesLock:
    """An exclusive ``flock`` on a samples file, held by the run that writes it.

    Two processes running the same soak test in one rootdir would otherwise
    append to one file and interleave their lines. The second one is refused
    at setup with a :class:`SoakError`. Where ``flock`` is missing (Windows)
    or not supported by the file system, nothing is locked.
    """

    def __init__(self, path: Path, fd: int, created: bool) -> None:
        self.path = path
        self._fd: int | None = fd
        self._created = created

    @classmethod
    def acquire(cls, path: Path) -> SamplesLock | None:
        try:
            import fcntl
        except ImportError:
            return None
        from pytest_memwatch.base.files import make_dirs

        try:
            make_dirs(path.parent)
            created = not path.exists()
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            return None  # the writer meets the same problem and reports it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SoakError(
                f"{path} is being written by another process running this soak test; "
                "run a soak test in one process at a time, or give each its own "
                "--memwatch-storage"
            ) from None
        except OSError:
            os.close(fd)
            return None
        return cls(path, fd, created)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            # Still locked: a file this lock created and no run wrote goes again.
            if self._created and os.fstat(fd).st_size == 0:
                with contextlib.suppress(OSError):
                    self.path.unlink()
        finally:
            os.close(fd)


class SampleWriter:
    """Appends JSON lines, each flushed at once; fsync at least every few seconds.

    A line reaches the kernel before the next sample is taken, so a SIGKILL
    loses at most the sample in progress; fsync bounds what a machine crash loses.
    """

    def __init__(self, path: Path, *, append: bool, fsync_every: float = FSYNC_EVERY_S) -> None:
        from pytest_memwatch.base.files import make_dirs

        make_dirs(path.parent)
        self.path = path
        self._f: IO[str] | None = open(  # noqa: SIM115 -- kept open for the whole run
            path, "a" if append else "w", encoding="utf-8", newline="\n"
        )
        self._fsync_every = fsync_every
        self._synced = time.monotonic()

    def write(self, record: Mapping[str, Any]) -> None:
        f = self._f
        if f is None:
            return
        f.write(json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n")
        f.flush()
        now = time.monotonic()
        if now - self._synced >= self._fsync_every:
            os.fsync(f.fileno())
            self._synced = now

    def close(self) -> None:
        f, self._f = self._f, None
        if f is not None:
            try:
                f.flush()
                os.fsync(f.fileno())
            finally:
                f.close()


# -- running -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tick:
    """One iteration of a soak loop: its number, seconds done (resumed time included), left."""

    index: int
    elapsed: float
    remaining: float


@dataclass(frozen=True)
class SoakProgress:
    """A progress report, for the plugin to show on the terminal."""

    nodeid: str
    elapsed: float
    duration: float
    rss: int | None
    rate: float | None
    samples: int
    in_warmup: bool
    final: bool = False

    @property
    def remaining(self) -> float:
        return max(0.0, self.duration - self.elapsed)


def format_progress(p: SoakProgress) -> str:
    """``soak tests/x.py::test_y: 2m00s of 20m00s (18m00s left), rss 45.2 MiB, +0.9 MiB/h``."""
    rate = "rate after the warmup" if p.in_warmup else f"rate {format_rate(p.rate)}"

    def clock(seconds: float) -> str:
        return f"{seconds:.1f}s" if p.duration < 10 else format_duration(seconds)

    return (
        f"memwatch soak {p.nodeid}: {clock(p.elapsed)} of "
        f"{clock(p.duration)} ({clock(p.remaining)} left), "
        f"rss {format_size(p.rss)}, {rate}, {p.samples} samples"
    )


@dataclass
class SoakOutcome:
    """What a finished soak run gives the plugin: the verdict and the result's ``soak`` field."""

    verdict: Verdict
    data: dict[str, Any]
    stop_reason: str | None = None


_SIGNALS = tuple(
    s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGINT", None)) if s is not None
)


class SoakRun:
    """One soak test's run: sampling, the samples file, signals, progress and the verdict.

    Build it with :meth:`prepare` at test setup (which checks a file to resume
    from), start it when the test starts iterating, :meth:`finish` it after
    the test body. Samples are taken when due: by the test's thread at an
    iteration boundary (a quiet moment between steps) when one comes within a
    short grace period, or else by the background thread (a long step, or a
    test that does not iterate).
    """

    def __init__(
        self,
        plan: SoakPlan,
        path: Path | None,
        *,
        prober: Prober | None = None,
        progress: Callable[[SoakProgress], None] | None = None,
        progress_every: float = 60.0,
        meta: Mapping[str, Any] | None = None,
        install_signals: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.plan = plan
        self.path = path
        self._prober = prober or get_prober()
        self._progress = progress
        self._progress_every = progress_every
        self._meta = dict(meta or {})
        self._install_signals = install_signals
        self._clock = clock
        self.buffer = SampleBuffer()
        self._file_lock: SamplesLock | None = None
        self.offset = 0.0  # seconds done by earlier processes (resume)
        self.resumes: list[float] = []
        self._segment = 0
        self._resume_from: SampleFile | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._writer: SampleWriter | None = None
        self._t0 = 0.0
        self._next_due = 0.0
        self._next_progress = 0.0
        self._grace = min(0.25 * plan.interval_s, 1.0)
        self._saved_handlers: dict[int, Any] = {}
        self._signalled = 0
        self.stop_reason: str | None = None
        self.started = False
        self.exhausted = False
        self.write_error: str | None = None
        self._outcome: SoakOutcome | None = None

    @classmethod
    def prepare(
        cls, plan: SoakPlan, directory: Path | None, *, resume: bool = False, **kwargs: Any
    ) -> SoakRun:
        """A run whose samples go to ``directory``; with ``resume``, check the file to resume."""
        path = None if directory is None else directory / samples_filename(plan.nodeid)
        run = cls(plan, path, **kwargs)
        if path is not None:
            # Before reading it: the file must not change under this run, nor
            # get the lines of two processes interleaved.
            run._file_lock = SamplesLock.acquire(path)
        try:
            # An empty file is one a lock created and no run wrote: nothing to resume.
            if resume and path is not None and path.exists() and path.stat().st_size > 0:
                try:
                    found = read_samples(path)
                except SoakError as exc:
                    raise SoakError(
                        f"cannot resume: {exc}. The file is left as it is: repair or delete "
                        "it, or run without --memwatch-soak-resume"
                    ) from None
                check_resumable(found, plan)
                if not found.complete:
                    run._resume_from = found
        except BaseException:
            run.release()
            raise
        return run

    def release(self) -> None:
        """Let another process write this test's samples file (idempotent)."""
        lock, self._file_lock = self._file_lock, None
        if lock is not None:
            lock.release()

    # -- clock ------------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        """Seconds of the soak done, including those of the runs resumed from."""
        if not self.started:
            return self.offset
        return self.offset + (self._clock() - self._t0)

    @property
    def remaining(self) -> float:
        return max(0.0, self.plan.duration_s - self.elapsed)

    @property
    def interrupted(self) -> bool:
        return self.stop_reason is not None

    # -- lifecycle --------------------------------------------------------------
    def start(self) -> None:
        """Open the samples file, take the first sample, start the sampler thread."""
        if self.started:
            return
        found = self._resume_from
        if found is not None:
            for s in found.samples:
                self.buffer.add(s["t"], s, s["segment"])
            self.resumes = list(found.resumes)
            self._segment = len(found.resumes) + 1
            self.offset = found.last_t
            self.resumes.append(self.offset)
        self._open_file(found)
        self.started = True
        self._t0 = self._clock()
        self._next_due = self.offset
        # The first report follows the first sample, below; the thread takes the rest.
        self._next_progress = self.offset + self._progress_every
        self._install()
        # The thread first, so that every sample, the first included, counts it.
        self._thread = threading.Thread(target=self._loop, name="memwatch-soak", daemon=True)
        self._thread.start()
        self._take()
        self._report_progress(force=True)

    def _open_file(self, found: SampleFile | None) -> None:
        if self.path is None:
            return
        try:
            self._writer = SampleWriter(self.path, append=found is not None)
            if found is None:
                self._writer.write(self._header())
            else:
                self._writer.write(
                    {"event": "resume", "t": self.offset, "at": now_iso(), "pid": os.getpid()}
                )
        except OSError as exc:
            # The run is worth more than its file: go on with the in-memory samples.
            self._writer = None
            self.write_error = f"cannot write {self.path}: {exc.strerror or exc}"

    def _header(self) -> dict[str, Any]:
        from pytest_memwatch.base.version import __version__

        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            **self.plan.header_fields(),
            "started_at": now_iso(),
            "started_unix": time.time(),
            "pid": os.getpid(),
            "plugin_version": __version__,
            "python": sys.version.split()[0],
            "hostname": socket.gethostname(),
            "system": platform.system(),
            "arch": platform.machine(),
            **self._meta,
        }

    def boundary(self) -> bool:
        """Called by the test between steps: sample when due; False when the run is over."""
        if self._clock() - self._t0 + self.offset >= self._next_due:
            self._take()
        if self.stop_reason is not None:
            return False
        if self.elapsed >= self.plan.duration_s:
            self.exhausted = True
            return False
        return True

    def _take(self, *, force: bool = False) -> None:
        with self._lock:
            # Milliseconds, as in the file: the run read back is judged the same.
            t = round(self.elapsed, 3)
            if not force and t < self._next_due:
                return  # the other thread took it
            values = self._read()
            self.buffer.add(t, values, self._segment)
            self._write({"t": t, **values})
            interval = self.plan.interval_s
            self._next_due += interval
            if self._next_due <= t:
                # Fell behind (a step held the interpreter): the next one is one interval on.
                self._next_due = t + interval

    def _read(self) -> dict[str, int | None]:
        for attempt in range(2):
            try:
                s = self._prober.sample(collect=False)
                break
            except (ValueError, IndexError):
                # A /proc file read while another thread had it half-read: read again.
                if attempt:
                    raise
        traced = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else None
        return {
            "rss": s.rss,
            "traced": traced,
            "gc_objects": s.gc_objects,
            "fds": s.fds,
            "threads": s.threads,
            "malloc": s.malloc,
            "blocks": s.blocks,
        }

    def _write(self, record: Mapping[str, Any]) -> None:
        if self._writer is None:
            return
        try:
            self._writer.write(record)
        except (OSError, ValueError) as exc:
            self.write_error = f"cannot write {self.path}: {getattr(exc, 'strerror', None) or exc}"
            with contextlib.suppress(OSError, ValueError):
                self._writer.close()
            self._writer = None

    def _loop(self) -> None:
        while True:
            now = self.elapsed
            wait = self._next_due + self._grace - now
            if self._progress is not None:
                wait = min(wait, self._next_progress - now)
            if self._stop.wait(max(0.0, wait)):
                return
            if self.elapsed >= self._next_due + self._grace:
                self._take()
            self._report_progress()

    def _report_progress(self, *, force: bool = False, final: bool = False) -> None:
        if self._progress is None:
            return
        now = self.elapsed
        if not (force or final) and now < self._next_progress:
            return
        self._next_progress = now + self._progress_every
        with self._lock:
            last = self.buffer.last
            ts, ys = self.buffer.series("rss", since=self.plan.warmup_s)
        rate: float | None = None
        if len(ts) >= MIN_FIT_POINTS:
            # A quick estimate for the display only; the verdict fits more points.
            idx = _thin(len(ts), 100)
            rate = theil_sen([ys[i] for i in idx], [ts[i] for i in idx]).slope
        info = SoakProgress(
            nodeid=self.plan.nodeid,
            elapsed=min(now, self.plan.duration_s),
            duration=self.plan.duration_s,
            rss=None if last is None else last.get("rss"),
            rate=rate,
            samples=self.buffer.seen,
            in_warmup=now < self.plan.warmup_s,
            final=final,
        )
        with contextlib.suppress(Exception):
            # A display that fails (a closed terminal) must not end the soak.
            self._progress(info)

    def finish(self) -> SoakOutcome | None:
        """Stop sampling, close the file, restore signals; the verdict (``None`` if never started).

        Safe to call more than once: the first call decides.
        """
        if self._outcome is not None or not self.started:
            self.release()
            return self._outcome
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._take(force=True)
        self._restore()
        complete = self.exhausted and self.stop_reason is None
        elapsed = self.elapsed
        if self._writer is not None:
            self._write(
                {
                    "event": "end",
                    "t": round(self.elapsed, 3),
                    "complete": complete,
                    "reason": self.stop_reason,
                    "at": now_iso(),
                }
            )
            with contextlib.suppress(OSError):
                self._writer.close()
            self._writer = None
        self._report_progress(final=True)
        self._outcome = outcome_from(
            self.plan,
            self.buffer.samples(),
            complete=complete,
            samples_path=None if self.path is None or self.write_error else str(self.path),
            resumes=self.resumes,
            elapsed=elapsed,
            stop_reason=self.stop_reason,
        )
        if self.write_error:
            self._outcome.data["write_error"] = self.write_error
        self.release()
        return self._outcome

    # -- signals ----------------------------------------------------------------
    def _install(self) -> None:
        # Handlers can only be set from the main thread, and only while this run
        # lasts: outside a soak test SIGTERM and SIGINT keep their usual meaning.
        if not self._install_signals or threading.current_thread() is not threading.main_thread():
            return
        for sig in _SIGNALS:
            previous = signal.getsignal(sig)
            if previous is None:
                continue  # set from C: it could not be put back
            try:
                signal.signal(sig, self._on_signal)
            except (OSError, ValueError):
                continue
            self._saved_handlers[sig] = previous

    def _restore(self) -> None:
        saved, self._saved_handlers = self._saved_handlers, {}
        for sig, previous in saved.items():
            with contextlib.suppress(OSError, ValueError):
                signal.signal(sig, previous)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only flags are set here: a handler runs between any two bytecodes of the
        # test's thread, which may hold any lock.
        self._signalled += 1
        if self._signalled > 1:
            # A second signal: the step in progress does not end; stop now.
            raise KeyboardInterrupt
        self.stop_reason = signal.Signals(signum).name

    # -- helpers for tests ---------------------------------------------------------
    def sleep(self, seconds: float) -> None:
        """Sleep up to ``seconds``, waking early when the run is stopped by a signal."""
        end = time.monotonic() + seconds
        while self.stop_reason is None:
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.05))


def outcome_from(
    plan: SoakPlan,
    samples: Sequence[dict[str, Any]],
    *,
    complete: bool,
    samples_path: str | None,
    resumes: Sequence[float] = (),
    elapsed: float | None = None,
    stop_reason: str | None = None,
    unfinished: bool = False,
) -> SoakOutcome:
    """Analyse samples and build the verdict and the result's ``soak`` field."""
    analysis = analyze(samples, plan.warmup_s)
    verdict = soak_verdict(
        plan,
        analysis,
        complete=complete,
        elapsed=elapsed,
        stop_reason=stop_reason,
        unfinished=unfinished,
    )
    data = soak_data(
        plan,
        samples,
        analysis,
        complete=complete,
        samples_path=samples_path,
        resumes=resumes,
        elapsed=elapsed,
        stop_reason=stop_reason,
    )
    return SoakOutcome(verdict, data, stop_reason)


class SoakHandle:
    """What the ``soak`` fixture gives a test: iterate it, or hand it a step function.

    Example::

        @pytest.mark.soak("8h", interval="30s", max_growth_rate="1 MiB/h")
        def test_transcription_session(soak, app):
            session = app.sessions.start()
            for tick in soak:               # until the duration is up (or SIGTERM)
                session.feed(next_chunk())

        @pytest.mark.soak("2h")
        def test_cache(soak, cache):
            soak.run(lambda: cache.get(random_key()))
    """

    def __init__(self, run: SoakRun) -> None:
        self._run = run

    def __iter__(self) -> Iterator[Tick]:
        run = self._run
        run.start()
        index = 0
        while run.boundary():
            yield Tick(index, run.elapsed, run.remaining)
            index += 1

    def run(self, step: Callable[[], object]) -> int:
        """Call ``step()`` until the soak is over; return how many times it ran."""
        count = 0
        for _ in self:
            step()
            count += 1
        return count

    def sleep(self, seconds: float) -> None:
        """Pace a loop without delaying a SIGTERM/SIGINT stop (unlike ``time.sleep``)."""
        self._run.sleep(seconds)

    @property
    def duration(self) -> float:
        """Planned duration in seconds (after ``--memwatch-soak-duration``)."""
        return self._run.plan.duration_s

    @property
    def interval(self) -> float:
        return self._run.plan.interval_s

    @property
    def elapsed(self) -> float:
        return self._run.elapsed

    @property
    def remaining(self) -> float:
        return self._run.remaining

    @property
    def stopped(self) -> bool:
        """True once SIGTERM or SIGINT asked the run to end early."""
        return self._run.interrupted

    @property
    def path(self) -> Path | None:
        """The samples file (JSONL) this run streams to."""
        return self._run.path

    def __repr__(self) -> str:
        plan = self._run.plan
        return (
            f"<SoakHandle {plan.nodeid} {format_seconds(self.elapsed)} of "
            f"{format_seconds(plan.duration_s)}>"
        )


# -- a run read back: soak-report -------------------------------------------------------


def outcome_from_file(found: SampleFile) -> SoakOutcome:
    """The verdict and ``soak`` data of a samples file, as the test itself would decide."""
    plan = found.plan()
    # Through the same bounded buffer as the live run, so the same samples are judged.
    buffer = SampleBuffer()
    for s in found.samples:
        buffer.add(s["t"], s, s["segment"])
    reason = (found.end or {}).get("reason")
    return outcome_from(
        plan,
        buffer.samples(),
        complete=found.complete,
        samples_path=str(found.path),
        resumes=found.resumes,
        elapsed=found.last_t,
        stop_reason=reason if isinstance(reason, str) else None,
        unfinished=found.end is None,
    )


def report_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A results document holding the one soak run recorded in ``path``.

    Raises :class:`SoakError` (naming the file and line) for a corrupt file.
    """
    from pytest_memwatch.reports.results import Results, RunMeta, TestResult

    found = read_samples(path)
    outcome = outcome_from_file(found)
    h = found.header
    test = TestResult(
        nodeid=str(h["nodeid"]),
        outcome="passed" if outcome.verdict.passed else "failed",
        duration_s=found.last_t,
        markers=["soak"],
        verdicts=[outcome.verdict.to_dict()],
        soak=outcome.data,
    )
    _growth_from_samples(test, outcome.data.get("samples") or [])
    run = RunMeta(
        plugin_version=str(h.get("plugin_version") or "unknown"),
        pytest_version=str(h.get("pytest_version") or "unknown"),
        python=str(h.get("python") or "unknown"),
        machine={
            "hostname": str(h.get("hostname") or "unknown"),
            "system": str(h.get("system") or ""),
            "release": "",
            "arch": str(h.get("arch") or ""),
            "cpu_count": None,
            "total_memory": None,
            "python_implementation": platform.python_implementation(),
        },
        started_at=str(h.get("started_at") or now_iso()),
        finished_at=(found.end or {}).get("at"),
        args=[str(found.path)],
    )
    return Results(run, [test]).to_dict()


SAMPLE_METRICS = ("rss", "malloc", "blocks", "gc_objects", "fds", "threads")


def _growth_from_samples(test: Any, samples: Sequence[Mapping[str, Any]]) -> None:
    """A soak report's readings from its samples: the first is "before", the last "after".

    Without them the report's totals said "total RSS growth 0 B" beside a
    chart that climbed 10 MiB, and its table had empty cells.
    """
    if not samples:
        return
    first, last = samples[0], samples[-1]
    test.before = {"t": first.get("t"), **{m: first.get(m) for m in SAMPLE_METRICS}}
    test.after = {"t": last.get("t"), **{m: last.get(m) for m in SAMPLE_METRICS}}
    test.growth = {
        m: (
            last[m] - first[m]
            if isinstance(first.get(m), int) and isinstance(last.get(m), int)
            else None
        )
        for m in SAMPLE_METRICS
    }
    peaks = [s["rss"] for s in samples if isinstance(s.get("rss"), int)]
    if peaks:
        test.peak_rss = max(peaks)
        if isinstance(first.get("rss"), int):
            test.peak_growth = test.peak_rss - first["rss"]
