"""Verdicts: budgets (``max_growth``, ``max_memory``) and the repeated-run leak verdict.

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
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_memwatch.base.probes import METRICS, Sample, bytes_metric
from pytest_memwatch.base.stats import Trend, cumulative, median, theil_sen
from pytest_memwatch.base.units import format_size, plural
from pytest_memwatch.base.verdict import Verdict, VerdictSource
from pytest_memwatch.config.tolerances import DEFAULT_FLOORS

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


def _fmt(metric: str, value: float) -> str:
    if UNITS.get(metric) == "bytes":
        return format_size(value, signed=True)
    return f"{value:+.1f} {UNITS.get(metric, '')}".rstrip()


@dataclass
class RunRecord:
    before: Sample
    after: Sample
    peak_rss: int | None = None
    warmup: bool = False
    # The previous run's after-reading: what this run added is counted from
    # it, as the leak verdict counts (None: from this run's own before).
    since: Sample | None = None

    def to_dict(self) -> dict[str, Any]:
        d = self.after.minus(self.since or self.before)
        return {
            "warmup": self.warmup,
            "delta": d,
            "after": self.after.to_dict(),
            "peak_rss": self.peak_rss,
        }


def _staircase(deltas: Sequence[float], floor: float, min_flat: int = 3) -> str:
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
    levels = cumulative(deltas)[1:]
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


def _level_since_last_rise(deltas: Sequence[float], floor: float) -> bool:
    """True when the readings have stayed level since their last rise for three
    runs, or for two when no earlier gap between rises was longer."""
    rises = [i for i, d in enumerate(deltas) if d > floor]
    if not rises:
        return True
    since_last = len(deltas) - 1 - rises[-1]
    gaps = [b - a for a, b in zip([-1, *rises], rises, strict=False)]
    return since_last >= 3 or (since_last == 2 and max(gaps) <= 2)


def _floor_rises(deltas: Sequence[float], floor: float) -> bool:
    """True for a staircase that is still climbing (see :func:`_staircase`)."""
    return _staircase(deltas, floor) == "staircase"


_UNSETTLED = ("suspect", "ambiguous", "changing")


def format_duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.3g} s"


class RepeatPlan:
    """Drives a repeated measurement: how many runs, and whether to extend.

    Usage: ``while plan.wants_more(): ...; plan.record(before, after)`` then
    :meth:`leak_verdict` or :meth:`growth_per_call`.

    Readings are stored in arrays preallocated for the largest possible number
    of runs: keeping a Python object per run would itself grow the heap by a
    few blocks a run, and the harness must not measure itself.
    """

    def __init__(
        self,
        warmup: int,
        runs: int,
        *,
        max_runs: int | None = None,
        floors: Mapping[str, float] = DEFAULT_FLOORS,
        metrics: Sequence[str] = MEMORY_METRICS,
        extend: bool = True,
        budget: float | None = None,
        budget_multiple: float | None = None,
        clock: Callable[[], float] = time.process_time,
        screen: bool = False,
    ) -> None:
        if warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {warmup}")
        if runs < 1:
            raise ValueError(f"runs must be >= 1, got {runs}")
        self.warmup = warmup
        self.runs = runs
        # The time budget: seconds, or a multiple of the first run's time. The
        # requested warmup and runs always run; extensions stop when it is spent.
        self.budget = budget
        self.budget_multiple = budget_multiple
        timed = extend and (budget is not None or budget_multiple is not None)
        if max_runs is None:
            max_runs = max(4 * runs, BUDGET_MAX_RUNS) if timed else (4 * runs if extend else runs)
        self.max_runs = max_runs
        # Why the runs stopped: "settled", "budget", "max_runs" or "cap" (growth cap).
        self.stopped = "settled"
        self.floors = dict(floors)
        self.metrics = tuple(metrics)
        self._target = warmup + runs
        # Screening: the requested runs are first measured the cheap way (the
        # long-lived heap frozen, so a collection walks only what the test
        # made). Frozen garbage can only add to what a run seems to leave, so
        # a clean screen is a clean verdict; anything unsettled goes on in
        # exact mode for at least ``runs`` more runs, so the window the verdict
        # judges is exact. The screened runs stay in the series: a sparse
        # staircase needs every step it has seen.
        self.screening = screen
        self.requested_warmup = warmup
        self.screened = 0
        # The first exact run is left out of the series: the reading before
        # it still counts frozen garbage that the switch reclaims.
        self._rebase = -1
        cap = warmup + self.max_runs + (runs if screen else 0)
        self.max_runs += runs + 1 if screen else 0
        cap += 1 if screen else 0
        self._cap = cap
        self._before = {m: array("q", bytes(8 * cap)) for m in METRICS}
        self._after = {m: array("q", bytes(8 * cap)) for m in METRICS}
        self._times = array("d", bytes(8 * cap * 2))
        self._peak = array("q", bytes(8 * cap))
        # The budget is CPU time of the process, not wall time: on a loaded
        # machine the test gets the same number of runs, so the same verdict.
        self._cpu = array("d", bytes(8 * (cap + 1)))
        self._clock = clock
        self._cpu[0] = clock()
        self._missing: set[str] = set()
        self.count = 0

    def record(self, before: Sample, after: Sample, peak_rss: int | None = None) -> None:
        i = self.count
        if i >= self._cap:
            raise RuntimeError("RepeatPlan.record called more often than planned")
        for m in METRICS:
            b, a = getattr(before, m), getattr(after, m)
            if b is None or a is None:
                self._missing.add(m)
            else:
                self._before[m][i] = b
                self._after[m][i] = a
        self._times[2 * i] = before.t
        self._times[2 * i + 1] = after.t
        self._peak[i] = -1 if peak_rss is None else peak_rss
        self._cpu[i + 1] = self._clock()
        self.count = i + 1

    def _sample(self, store: dict[str, array[int]], i: int, t: float) -> Sample:
        vals = {m: (None if m in self._missing else int(store[m][i])) for m in METRICS}
        return Sample(t=t, **vals)

    @property
    def records(self) -> list[RunRecord]:
        out: list[RunRecord] = []
        for i in range(self.count):
            peak = int(self._peak[i])
            out.append(
                RunRecord(
                    self._sample(self._before, i, self._times[2 * i]),
                    self._sample(self._after, i, self._times[2 * i + 1]),
                    None if peak < 0 else peak,
                    warmup=i < self.warmup,
                    # As deltas(): consecutive after-readings, except where the
                    # series restarts (the first exact run after screening).
                    since=out[-1].after if out and i != self._rebase else None,
                )
            )
        return out

    def elapsed(self) -> float:
        """CPU seconds the process spent from the plan's start to the latest run."""
        return self._cpu[self.count] - self._cpu[0]

    def budget_seconds(self) -> float | None:
        """The time budget in CPU seconds (a multiple is of the first run's time)."""
        if self.budget_multiple is not None and self.count > 0:
            first = self._cpu[1] - self._cpu[0]
            return max(self.budget or 0.0, self.budget_multiple * first)
        return self.budget

    def wants_more(self) -> bool:
        if self.count < self._target:
            return True
        n = self.count - self.warmup - (self._rebase >= 0)
        states = self._states()
        open_states = [m for m, (s, _) in states.items() if s in _UNSETTLED]
        if not open_states:
            self.stopped = "settled"
            return False
        if self.screening:
            self.screening = False
            self.screened = n
            self._rebase = self.count
            self._target = self.count + self.runs + 1
            return True
        if n >= self.max_runs:
            self.stopped = "max_runs"
            return False
        budget = self.budget_seconds()
        if budget is not None and self.elapsed() >= budget:
            self.stopped = "budget"
            return False
        if all(states[m][0] == "suspect" for m in open_states) and self._over_cap(open_states):
            # Enough memory spent on evidence of a climb that has not stopped.
            self.stopped = "cap"
            return False
        # Judging costs a pass over every reading: on a long extension, judge
        # again after a growing stride, not after every run.
        step = max(self.runs, n // 8)
        self._target = min(self.warmup + self.max_runs, self.count + step)
        return self.count < self._target

    def _over_cap(self, metrics: Sequence[str]) -> bool:
        for m in metrics:
            d = self.deltas(m)
            if d and sum(d) > GROWTH_CAP.get(m, float("inf")):
                return True
        return False

    # -- series ---------------------------------------------------------------
    def deltas(self, metric: str) -> list[float] | None:
        """Per-run growth of ``metric``: consecutive after-readings, as CPython's -R."""
        if self.count <= self.warmup or metric in self._missing:
            return None
        after = self._after[metric]
        prev = after[self.warmup - 1] if self.warmup > 0 else self._before[metric][0]
        out: list[float] = []
        for i in range(self.warmup, self.count):
            if i == self._rebase:
                prev = after[i]
                continue
            out.append(float(after[i] - prev))
            prev = after[i]
        return out

    @property
    def collect_before(self) -> bool:
        """Whether the next run's before-reading needs a collection of its own."""
        return self.count == 0 or self.count == self._rebase

    @property
    def measured(self) -> list[RunRecord]:
        return self.records[self.warmup :]

    def _window(self, deltas: list[float]) -> list[float]:
        return deltas[-self.runs :] if len(deltas) > self.runs else deltas

    def _trend(self, deltas: list[float]) -> Trend:
        # Fit over the latest 2*runs readings: long enough to see an every-Nth
        # leak, short enough that a cache which filled early has dropped out.
        # A long timed extension fits its latest quarter, so a slow irregular
        # climb gains evidence with every run instead of staying ambiguous.
        span = 2 * self.runs
        if self._timed:
            span = max(span, len(deltas) // 4)
        recent = deltas[-span:]
        return theil_sen(cumulative(recent))

    def _states(self) -> dict[str, tuple[str, Trend | None]]:
        out: dict[str, tuple[str, Trend | None]] = {}
        rss_every = True
        for metric in self.metrics:
            d = self.deltas(metric)
            if not d:
                continue
            floor = self.floors.get(metric, 0.0)
            window = self._window(d)
            trend = self._trend(d)
            every = len(window) >= 2 and all(x > floor for x in window)
            rise = max(floor, STEP_FLOORS.get(metric, 0.0))
            # With a budget, a step must be followed by twice the requested runs
            # of level readings before it counts as a one-time cost.
            stairs = _staircase(d, rise, min_flat=2 * self.runs if self._timed else 3)
            if every or stairs == "staircase":
                out[metric] = ("suspect", trend)
            elif trend.low > floor:
                # A climb that has stopped (the latest three readings level)
                # may be one-time costs late in the window (pytest's own
                # per-test bookkeeping settles over the first runs): with a
                # budget, more runs tell it from a sparse leak, which the
                # staircase rule catches; without one, the slope decides.
                level = self._timed and _level_since_last_rise(d, floor)
                out[metric] = ("changing" if level else "suspect", trend)
            elif trend.slope > floor and trend.high > floor and sum(window) > floor:
                out[metric] = ("ambiguous", trend)
            elif stairs == "open" and self._timed:
                # A step not yet known to be the last one: worth more runs
                # when a time budget pays for them, clean otherwise.
                out[metric] = ("changing", trend)
            else:
                out[metric] = ("clean", trend)
            if metric == "rss" and not every:
                rss_every = False
        if (
            self._timed
            and out.get("rss", ("", None))[0] == "suspect"
            and not rss_every
            and all(out.get(m, ("", None))[0] == "clean" for m in ("blocks", "malloc"))
        ):
            # Pages kept in steps while no block and no malloc byte stays: the
            # allocators hold on to freed memory (a test churning many MiB
            # leaves an arena behind now and then). Worth more runs, not a
            # verdict, when the exact counters both read clean.
            out["rss"] = ("changing", out["rss"][1])
        return out

    @property
    def _timed(self) -> bool:
        return self.budget is not None or self.budget_multiple is not None

    # -- verdicts -------------------------------------------------------------
    def leak_verdict(self, source: VerdictSource = "marker") -> Verdict:
        states = self._states()
        leaking = {m: t for m, (s, t) in states.items() if s == "suspect" and t is not None}
        n = self.count - self.warmup - (self._rebase >= 0)
        budget = self.budget_seconds()
        details: dict[str, Any] = {
            "warmup": self.requested_warmup,
            # Runs measured frozen first, whose growth called for exact runs.
            "screened": self.screened,
            "runs": n,
            "requested_runs": self.runs,
            "stopped": self.stopped,
            "elapsed_s": round(self.elapsed(), 6),
            "budget_s": None if budget is None else round(budget, 6),
            "metrics": {
                m: {
                    "state": s,
                    "deltas": self.deltas(m),
                    "trend": t.to_dict() if t else None,
                    "floor": self.floors.get(m, 0.0),
                }
                for m, (s, t) in states.items()
            },
        }
        out_of_time = self.stopped in ("budget", "max_runs")
        if not leaking:
            unsettled = [m for m, (s, _) in states.items() if s in _UNSETTLED]
            if unsettled and out_of_time:
                details["inconclusive"] = True
                spent = (
                    f"the {format_duration(budget)} budget ran out"
                    if self.stopped == "budget" and budget is not None
                    else f"the limit of {plural(self.max_runs, 'run')} was reached"
                )
                return Verdict(
                    "leak",
                    source,
                    True,
                    f"no verdict: {', '.join(unsettled)} still changing after "
                    f"{plural(n, 'run')} when "
                    f"{spent}; give it more time (--memwatch-repeat-budget) to decide",
                    metric=unsettled[0],
                    details=details,
                )
            return Verdict(
                "leak", source, True, f"no growth trend over {plural(n, 'run')}", details=details
            )
        # Report the most telling metric first: bytes before blocks before resources.
        order = ["malloc", "rss", "blocks", "fds", "threads"]
        first = sorted(leaking, key=lambda m: order.index(m) if m in order else 99)[0]
        parts = []
        for m in sorted(leaking, key=lambda m: order.index(m) if m in order else 99):
            t = leaking[m]
            window = self._window(self.deltas(m) or [])
            parts.append(
                f"{m} grows {_fmt(m, t.slope)}/run "
                f"(95% CI {_fmt(m, t.low)}..{_fmt(m, t.high)}; "
                f"last runs {', '.join(_fmt(m, x) for x in window)})"
            )
        msg = (
            f"leak: {'; '.join(parts)} over {plural(n, 'run')} after {self.requested_warmup} warmup"
        )
        if self.stopped == "budget" and budget is not None:
            msg += f" (still growing when the {format_duration(budget)} budget ran out)"
        elif self.stopped == "cap":
            msg += " (still growing past the harness's growth cap)"
        return Verdict(
            "leak",
            source,
            False,
            msg,
            metric=first,
            measured=leaking[first].slope,
            details=details,
        )

    def growth_per_call(self) -> tuple[float | None, dict[str, Any]]:
        """Bytes left behind per call: the single delta, or the median over the runs.

        The median of the per-run deltas, not a slope: one run that happens to
        add an arena or keep untrimmed heap pages is a one-off step, and a slope
        through a short series reads it as growth per call. A leak that strikes
        only every Nth call is under-counted by the median; ``no_leaks`` is the
        check for those.
        """
        measured = self.measured
        if not measured:
            return None, {}
        if len(measured) == 1:
            rec = measured[0]
            delta = rec.after.minus(rec.before)
            return (
                None if bytes_metric(delta) is None else float(bytes_metric(delta) or 0),
                {"delta": delta},
            )
        per_metric: dict[str, Any] = {}
        best: float | None = None
        for metric in ("rss", "malloc"):
            d = self.deltas(metric)
            if not d:
                continue
            trend = theil_sen(cumulative(d))
            typical = median(d)
            per_metric[metric] = {"deltas": d, "median": typical, "trend": trend.to_dict()}
            best = typical if best is None else max(best, typical)
        return best, per_metric


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


# -- messages -------------------------------------------------------------------------

# A message longer than this is shown as a headline plus detail lines.
HEADLINE_WIDTH = 100


def _top_level(text: str) -> tuple[str, list[str]]:
    """``text`` without its long top-level ``(...)`` groups, and their contents."""
    kept: list[str] = []
    groups: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(text):
        if ch == "(":
            if depth == 0:
                start = i
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
            if depth == 0:
                inner = text[start + 1 : i]
                # Short asides ("(daemon)", "(x5)") stay in the line they qualify.
                if len(inner) >= 20:
                    groups.append(inner)
                else:
                    kept.append(text[start : i + 1])
        elif depth == 0:
            kept.append(ch)
    if depth:  # unbalanced: leave the text alone
        return text, []
    return " ".join("".join(kept).split()), groups


def _split_top(text: str, sep: str = "; ") -> list[str]:
    """``text`` split on ``sep`` outside brackets and quotes."""
    out: list[str] = []
    depth = 0
    quote = ""
    start = 0
    i = 0
    while i < len(text):
        ch = text[i]
        # A quote opens and closes at a word's edge: "harness's" is no quote.
        before = text[i - 1] if i else " "
        after = text[i + 1] if i + 1 < len(text) else " "
        if quote:
            if ch == quote and not after.isalnum():
                quote = ""
        elif ch in "'\"" and not before.isalnum():
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}" and depth:
            depth -= 1
        elif depth == 0 and text.startswith(sep, i):
            out.append(text[start:i])
            start = i + len(sep)
            i = start
            continue
        i += 1
    out.append(text[start:])
    return [p for p in out if p]


def message_lines(message: str, width: int = HEADLINE_WIDTH) -> list[str]:
    """A verdict's message as a short headline and detail lines.

    Messages are one line, for the results and the short test summary; in a
    failure section a 400-character line reads badly. The headline keeps the
    sentence, the details get its long asides (confidence interval, last
    runs) and the resources it lists, one per line under their label.
    """
    if len(message) <= width:
        return [message]
    parts = _split_top(message)
    sentence: list[str] = []
    listing: list[str] = []
    label = None
    for k, part in enumerate(parts):
        bare = _top_level(part)[0]
        if bare.count(": ") >= (2 if k == 0 else 1):
            # "resources: 3 left behind ...: thread 'a'; ..." or "...; left
            # behind by the measured runs: fd 5; fd 6": the list goes below.
            lead, first = part.rsplit(": ", 1)
            if k == 0:
                sentence.append(lead)
            else:
                label = f"{lead}:"
            listing = [first, *parts[k + 1 :]]
            break
        sentence.append(part)
    clauses: list[str] = []
    details: list[str] = []
    trends = [w for w in (_grows(part) for part in sentence) if w]
    for part in sentence:
        bare, groups = _top_level(part)
        clauses.append(bare)
        # Several metrics: each one's trend aside (the first) says whose it is
        # ("rss: 95% CI ..."); a later aside is about the whole verdict.
        metric = _grows(part)
        whose = f"{metric}: " if len(trends) > 1 and metric else ""
        for i, g in enumerate(groups):
            details += [(whose if i == 0 else "") + line for line in _split_top(g)]
    if label is not None:
        details.append(label)
    details += [f"  {item}" if label is not None else item for item in listing]
    return ["; ".join(clauses), *details]


def _grows(clause: str) -> str | None:
    """``rss`` for a clause "[leak: ]rss grows +1.0 MiB/run ...", else None."""
    words = clause.split(": ", 1)[-1].split()
    return words[0] if len(words) > 1 and words[1] == "grows" else None


def headline(message: str) -> str:
    """The first line of :func:`message_lines`: what the short summary shows."""
    return message_lines(message)[0]
