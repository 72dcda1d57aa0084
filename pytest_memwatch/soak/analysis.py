"""Robust trend analysis of a soak run's samples after warmup.

:func:`analyze` fits the memory series (RSS where available, and beside it the
allocators' own counts) with Theil-Sen against seconds, widening the interval
for samples that are not independent, and measures the floors, the noise and
the fd and thread levels; :class:`Analysis` holds the figures and decides
whether memory still climbs (the rule is explained in docs/soak.md).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_memwatch.base.stats import Trend, theil_sen
from pytest_memwatch.soak.buffer import Metric, thin

RESOURCES: tuple[Metric, ...] = ("fds", "threads")
# Pairwise slopes grow with the square of the points: 400 points are 80 000
# slopes, a fraction of a second in pure Python, and plenty for the interval.
MAX_FIT_POINTS = 400
MIN_FIT_POINTS = 8

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


def _fit(ts: Sequence[float], ys: Sequence[float]) -> Trend:
    """Theil-Sen slope of ``ys`` against seconds, with an interval that allows for memory.

    The estimate uses up to :data:`MAX_FIT_POINTS` samples. Its interval does
    not: samples a second apart are not independent (a heap grown for a
    minute stays grown for that minute), and Kendall's interval treats them
    as if they were, which makes it far too narrow. The interval's half-widths
    come instead from the points thinned to the lag where the residuals stop
    resembling each other, the median over a few thinning phases.
    """
    idx = thin(len(ts), MAX_FIT_POINTS)
    xs = [ts[i] for i in idx]
    vs = [ys[i] for i in idx]
    est = theil_sen(vs, xs)
    if len(xs) < MIN_FIT_POINTS:
        return est
    b = statistics.median([y - est.slope * t for t, y in zip(xs, vs, strict=True)])
    lag = _decorrelation_lag([y - b - est.slope * t for t, y in zip(xs, vs, strict=True)])
    if lag <= 1:
        return est
    below: list[float] = []
    above: list[float] = []
    for phase in range(min(lag, 5)):
        sub = theil_sen(vs[phase::lag], xs[phase::lag])
        below.append(sub.slope - sub.low)
        above.append(sub.high - sub.slope)
    return Trend(
        est.slope, est.slope - statistics.median(below), est.slope + statistics.median(above), est.n
    )


def _decorrelation_lag(residuals: Sequence[float]) -> int:
    """The first lag (in points) where the residuals' autocorrelation falls below 0.2.

    Capped so that at least six points remain. Residuals are clipped at three
    robust sigmas first, or one spike would decide the correlation.
    """
    n = len(residuals)
    cap = max(1, n // 6)
    m = statistics.median(residuals)
    spread = 1.4826 * statistics.median([abs(r - m) for r in residuals])
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
    m = statistics.median(diffs)
    return 1.4826 * statistics.median([abs(d - m) for d in diffs]) / math.sqrt(2.0), abs(m)


@dataclass(frozen=True)
class Analysis:
    """What the samples after warmup say; :meth:`climbing` applies a rate limit.

    - ``rate``: Theil-Sen slope of the memory metric against seconds, with its
      95 % interval, over every sample after warmup (at most 400, evenly spread);
    - ``recent``: the same over the last two thirds of that window;
    - ``floor_rise``: how far the floor of the last third is above the floor of
      the first third, ``floor_gap`` seconds apart (a floor is the lowest sample,
      or in a long series the one that one sample in 200 dips below: see :func:`_low`);
    - ``noise``: the sample-to-sample noise (sigma), and ``step`` the typical
      move from one sample to the next, both in the metric's unit;
    - ``resources``: per resource metric, its typical level at the start and at
      the end of the steady state, for the segment where it rose most;
    - ``allocators``: see :meth:`leaking`.
    """

    metric: Metric | None
    n: int = 0
    span: float = 0.0
    rate: Trend | None = None
    intercept: float | None = None
    recent: Trend | None = None
    floor_rise: float | None = None
    floor_gap: float | None = None
    noise: float = 0.0
    step: float = 0.0
    resources: dict[Metric, tuple[float, float]] = field(default_factory=dict)
    # For an RSS analysis: whether the allocators' own counts (malloc bytes,
    # allocated blocks) climb too, by the same rule with no limit.
    allocators: dict[Metric, bool] = field(default_factory=dict)
    # For an RSS analysis: the allocators' own series analysed alike, in bytes
    # (see ALLOCATOR_SCALE), judged beside RSS as max_growth judges both.
    others: dict[Metric, Analysis] = field(default_factory=dict)

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


# The memory series a soak judges, the first one sampled: what the OS charges,
# else what the C allocator holds, else what tracemalloc traces.
MEMORY_SERIES: tuple[Metric, ...] = ("rss", "malloc", "traced")


def pick_metric(samples: Sequence[Mapping[str, Any]]) -> Metric | None:
    """The memory series to judge: RSS, else malloc bytes, else traced bytes."""
    for metric in MEMORY_SERIES:
        if any(s.get(metric) is not None for s in samples):
            return metric
    return None


ALLOCATOR_METRICS: tuple[Metric, ...] = ("malloc", "blocks")
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
    metric: Metric | None,
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
            k: statistics.median([y - s0 * t for t, y in zip(ts, ys, strict=True)])
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
    intercept = statistics.median([y - rate.slope * t for t, y in zip(ts, ys, strict=True)])
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
) -> dict[Metric, tuple[float, float]]:
    """Typical fd and thread counts at the start and the end of each segment's steady state.

    Medians of the first and last tenth (at least three samples each): a file or
    thread that is open for a moment while a sample is taken does not count,
    one that stays does, however few.
    """
    out: dict[Metric, tuple[float, float]] = {}
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
            pair = (statistics.median(vals[:k]), statistics.median(vals[-k:]))
            if best is None or pair[1] - pair[0] > best[1] - best[0]:
                best = pair
        if best is not None:
            out[metric] = best
    return out
