"""Verdict rules: the budgets (``max_growth``, ``max_memory``) and the leak rule's tests.

Everything here works on plain :class:`~pytest_memwatch.base.probes.Sample` readings
and returns plain data; the plugin, the ``memwatch`` fixture and the library API
all share it.

The leak rule (explained in docs/explanation.md):

1. Readings are taken at the same point of every run (after teardown and a
   full collection), and a run's delta is the difference between consecutive
   readings, as CPython's ``-R`` does. Objects a run creates and frees, and
   objects a run replaces (the previous run's reports), cancel out.
2. A metric is *suspect* when every run of the latest window grew by more than
   its noise floor, or when the Theil-Sen slope of the cumulative readings has
   a confidence interval wholly above the floor.
3. Growth that is still ambiguous (suspect, a positive slope whose interval
   still includes the floor, or a step up not yet followed by a long enough
   flat stretch) earns more runs, within a time budget (``budget``) or, without
   one, up to ``max_runs``; a cache that is filling stops growing within them,
   a leak does not, and an every-Nth-call leak climbs a staircase.
4. The final verdict judges the latest window: leak if a metric is still
   suspect. When the budget ran out while the evidence was still ambiguous,
   the verdict says so (``inconclusive``) rather than guessing either way.

:class:`~pytest_memwatch.engine.plan.RepeatPlan` applies the rule to its runs;
this module holds the rule's thresholds and tests, and the budget verdicts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import accumulate
from statistics import median
from typing import Any

from pytest_memwatch.base.units import format_size
from pytest_memwatch.base.verdict import Verdict, VerdictSource

# How far the floor of the readings must rise before a sparse staircase counts
# as a leak: a cache that replaces entries of slightly different sizes moves
# malloc bytes by a few dozen bytes either way without growing.
# glibc's per-thread cache (tcache) keeps up to seven freed chunks per size
# class and mallinfo counts them as in use, so malloc bytes can creep up for a
# few runs on clean code; a staircase in malloc must climb past that.
STEP_FLOORS: Mapping[str, float] = {"malloc": 16 * 1024.0, "rss": 64 * 1024.0}
# A growth that keeps going is extended until the budget runs out (a bounded
# cache may still be filling); past this much growth the harness stops paying
# memory for more evidence and judges what it has.
GROWTH_CAP: Mapping[str, float] = {
    "blocks": 1_000_000.0,
    "malloc": 64.0 * 1024 * 1024,
    "rss": 64.0 * 1024 * 1024,
    "fds": 64.0,
    "threads": 64.0,
}
# Measured runs a time budget can buy at most (the readings are preallocated).
BUDGET_MAX_RUNS = 2000
# Metrics whose growth is memory (judged always) and resources (judged when asked).
MEMORY_METRICS = ("blocks", "malloc", "rss")
RESOURCE_METRICS = ("fds", "threads")
UNITS = {"blocks": "blocks", "malloc": "bytes", "rss": "bytes", "fds": "fds", "threads": "threads"}


def format_metric(metric: str, value: float) -> str:
    if UNITS.get(metric) == "bytes":
        return format_size(value, signed=True)
    return f"{value:+.1f} {UNITS.get(metric, '')}".rstrip()


def staircase(deltas: Sequence[float], floor: float, min_flat: int = 3) -> str:
    """How the readings climb in steps: "staircase", "open" or "none".

    "staircase" is a climb that is still going on: a leak that strikes every
    Nth run. Such a leak is too sparse for the slope's interval, but the lowest
    reading of the last third exceeds the highest of the first. Memory that
    saws up and down keeps returning to its floor, so it never qualifies. A
    cache that filled and stopped also rises, so the climb must still be going
    on: the readings must not have stayed level for more than twice the longest
    gap between the earlier rises (and ``min_flat`` runs).

    "open" means steps were seen but the readings have not stayed level long
    enough since the last one to call it finished: one step may be a late
    one-time cost (a lazy initialisation) or the first stair of an every-Nth
    leak whose N is longer than the runs so far; more runs tell them apart.
    """
    n = len(deltas)
    if n < 2:
        return "none"
    levels = list(accumulate(deltas))
    # Readings that wander (random test data, allocator churn) move by their
    # typical step every run; a stair must climb clear of twice that.
    noise = 2.0 * median([abs(d) for d in deltas])
    rise = max(floor, noise)
    rises: list[int] = []
    high = levels[0]
    for i, level in enumerate(levels):
        if level - high > rise:
            rises.append(i)
        high = max(high, level)
    if not rises:
        return "none"
    gaps = [b - a for a, b in zip([-1, *rises], rises, strict=False)]
    since_last = n - 1 - rises[-1]
    if since_last >= min_flat and since_last > 2 * max(gaps):
        return "none"
    third = n // 3
    if (
        n >= 9
        and len(rises) >= 2
        # One step up is a one-time cost that happened late, not a staircase.
        and min(levels[-third:]) - max(levels[:third]) > rise
    ):
        return "staircase"
    return "open"


def level_since_last_rise(deltas: Sequence[float], floor: float) -> bool:
    """True when the readings have stayed level since their last rise for three
    runs, or for two when no earlier gap between rises was longer."""
    rises = [i for i, d in enumerate(deltas) if d > floor]
    if not rises:
        return True
    since_last = len(deltas) - 1 - rises[-1]
    gaps = [b - a for a, b in zip([-1, *rises], rises, strict=False)]
    return since_last >= 3 or (since_last == 2 and max(gaps) <= 2)


def format_budget(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.3g} s"


def growth_verdict(
    measured: float | None, limit: int, *, source: VerdictSource, runs: int, details: dict[str, Any]
) -> Verdict:
    if measured is None:
        return Verdict(
            "max_growth",
            source,
            True,
            "growth could not be measured on this platform (no RSS or malloc probe)",
            metric="bytes",
            limit=limit,
            details=details,
        )
    per = "per call" if runs == 1 else f"per call (median over {runs} runs)"
    ok = measured <= limit
    msg = (
        f"max_growth: {format_size(measured)} left behind {per}, "
        f"{'within' if ok else 'over'} the limit of {format_size(limit)}"
    )
    return Verdict("max_growth", source, ok, msg, "bytes", limit, measured, details)


def peak_verdict(peak_growth: float | None, limit: int, *, source: VerdictSource) -> Verdict:
    if peak_growth is None:
        return Verdict(
            "max_memory",
            source,
            True,
            "peak could not be measured on this platform",
            metric="peak_rss",
            limit=limit,
        )
    ok = peak_growth <= limit
    msg = (
        f"max_memory: peak {format_size(peak_growth)} above the memory at test start, "
        f"{'within' if ok else 'over'} the limit of {format_size(limit)}"
    )
    return Verdict("max_memory", source, ok, msg, "peak_rss", limit, peak_growth)
