"""The repeat plan: runs a test's repetitions, extends them while in doubt, and judges them.

The leak rule itself (how runs are compared, what is suspect, when more runs
are worth it) is described in :mod:`pytest_memwatch.engine.verdicts`.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from statistics import median
from typing import Any, Literal, TypedDict

from pytest_memwatch.base.probes import METRICS, Sample, bytes_metric
from pytest_memwatch.base.stats import Trend, theil_sen
from pytest_memwatch.base.units import plural
from pytest_memwatch.base.verdict import Verdict, VerdictSource
from pytest_memwatch.config.tolerances import DEFAULT_FLOORS
from pytest_memwatch.engine.verdicts import (
    BUDGET_MAX_RUNS,
    GROWTH_CAP,
    MEMORY_METRICS,
    STEP_FLOORS,
    format_budget,
    format_metric,
    level_since_last_rise,
    staircase,
)


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


# A screen that is unsettled without a suspect metric goes on, cheaply, up to
# this many times the requested runs before exact runs are paid for.
SCREEN_MULTIPLE = 4

# Why the runs stopped: the trend settled, the time budget or the run limit
# was spent, or the growth passed the harness's cap (GROWTH_CAP).
StopReason = Literal["settled", "budget", "max_runs", "cap"]
# A metric's state after a window: suspect (growing), ambiguous or changing
# (worth more runs), clean.
MetricState = Literal["suspect", "ambiguous", "changing", "clean"]
_UNSETTLED: tuple[MetricState, ...] = ("suspect", "ambiguous", "changing")


class MetricJudgement(TypedDict):
    """One metric in a leak verdict's details."""

    state: MetricState
    deltas: list[float] | None
    trend: dict[str, float | int] | None
    floor: float


class PerCallGrowth(TypedDict):
    """One byte metric in a ``max_growth`` verdict's details over repeated runs."""

    deltas: list[float]
    median: float
    trend: dict[str, float | int]


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
        self.stopped: StopReason = "settled"
        self.floors = dict(floors)
        self.metrics = tuple(metrics)
        self._target = warmup + runs
        # Screening: the requested runs are first measured the cheap way (the
        # long-lived heap frozen, so a collection walks only what the test
        # made). Frozen garbage can only add to what a run seems to leave, so
        # a clean screen is a clean verdict. A screen that is unsettled
        # without a suspect metric (one block or a kilobyte of malloc that
        # came once: the interpreter's and pytest's own one-time costs) goes
        # on screening, ``runs`` more cheap runs at a time, up to
        # SCREEN_MULTIPLE times the requested runs. A suspect metric, or a
        # screen still unsettled at its end, goes on in exact mode for at
        # least ``runs`` more runs, so the window the verdict judges is exact.
        # The screened runs stay in the series: a sparse staircase needs
        # every step it has seen.
        self.screening = screen
        self.requested_warmup = warmup
        self.screened = 0
        self._screen_limit = SCREEN_MULTIPLE * runs if screen else 0
        # The first exact run is left out of the series: the reading before
        # it still counts frozen garbage that the switch reclaims.
        self._rebase = -1
        cap = warmup + self.max_runs + self._screen_limit
        # The screen's first `runs` runs and the rebase run do not count
        # against the limit; extra screened runs raise it when the screen ends.
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
            budget = self.budget_seconds()
            if (
                n < self._screen_limit
                and not any(states[m][0] == "suspect" for m in open_states)
                and (budget is None or self.elapsed() < budget)
            ):
                self._target = self.count + self.runs
                return True
            self.screening = False
            self.screened = n
            self.max_runs += n - self.runs
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
        return theil_sen(list(accumulate(recent, initial=0.0)))

    def _states(self) -> dict[str, tuple[MetricState, Trend | None]]:
        out: dict[str, tuple[MetricState, Trend | None]] = {}
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
            stairs = staircase(d, rise, min_flat=2 * self.runs if self._timed else 3)
            if every or stairs == "staircase":
                out[metric] = ("suspect", trend)
            elif trend.low > floor:
                # A climb that has stopped (the latest three readings level)
                # may be one-time costs late in the window (pytest's own
                # per-test bookkeeping settles over the first runs): with a
                # budget, more runs tell it from a sparse leak, which the
                # staircase rule catches; without one, the slope decides.
                level = self._timed and level_since_last_rise(d, floor)
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
        metrics: dict[str, MetricJudgement] = {
            m: {
                "state": s,
                "deltas": self.deltas(m),
                "trend": t.to_dict() if t else None,
                "floor": self.floors.get(m, 0.0),
            }
            for m, (s, t) in states.items()
        }
        details: dict[str, Any] = {
            "warmup": self.requested_warmup,
            # Runs measured frozen first, whose growth called for exact runs.
            "screened": self.screened,
            "runs": n,
            "requested_runs": self.runs,
            "stopped": self.stopped,
            "elapsed_s": round(self.elapsed(), 6),
            "budget_s": None if budget is None else round(budget, 6),
            "metrics": metrics,
        }
        out_of_time = self.stopped in ("budget", "max_runs")
        if not leaking:
            unsettled = [m for m, (s, _) in states.items() if s in _UNSETTLED]
            if unsettled and out_of_time:
                details["inconclusive"] = True
                spent = (
                    f"the {format_budget(budget)} budget ran out"
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
                f"{m} grows {format_metric(m, t.slope)}/run "
                f"(95% CI {format_metric(m, t.low)}..{format_metric(m, t.high)}; "
                f"last runs {', '.join(format_metric(m, x) for x in window)})"
            )
        msg = (
            f"leak: {'; '.join(parts)} over {plural(n, 'run')} after {self.requested_warmup} warmup"
        )
        if self.stopped == "budget" and budget is not None:
            msg += f" (still growing when the {format_budget(budget)} budget ran out)"
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
        per_metric: dict[str, PerCallGrowth] = {}
        best: float | None = None
        for metric in ("rss", "malloc"):
            d = self.deltas(metric)
            if not d:
                continue
            trend = theil_sen(list(accumulate(d, initial=0.0)))
            typical = median(d)
            per_metric[metric] = {"deltas": d, "median": typical, "trend": trend.to_dict()}
            best = typical if best is None else max(best, typical)
        return best, per_metric
