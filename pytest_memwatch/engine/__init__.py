"""The measurement engine: per-run probing, interpreter hygiene, test specs and verdicts.

The pytest plugin, the ``memwatch`` fixture and the library API all drive
measurements through this module; it never imports pytest.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pytest_memwatch.base.probes import PeakWatch, Prober, Sample, get_prober
from pytest_memwatch.base.verdict import Verdict, VerdictSource
from pytest_memwatch.config import markers
from pytest_memwatch.config.settings import Repeat, RepeatBudget, Settings
from pytest_memwatch.engine.verdicts import (
    MEMORY_METRICS,
    RESOURCE_METRICS,
    RepeatPlan,
    growth_verdict,
    peak_verdict,
)
from pytest_memwatch.resources import ResourceReport, name_in_leak_verdict, resources_verdict


def clear_interpreter_caches() -> None:
    """Empty the caches that legitimately grow, as CPython's refleak hunter does.

    Only modules already imported are touched: importing one here would itself
    look like growth.
    """
    mods = sys.modules
    if "re" in mods:
        mods["re"].purge()
    if "typing" in mods:
        for clear in getattr(mods["typing"], "_cleanups", ()):
            clear()
    if "linecache" in mods:
        mods["linecache"].clearcache()
    if "struct" in mods:
        mods["struct"]._clearcache()
    if "fnmatch" in mods:
        cached = getattr(mods["fnmatch"], "_compile_pattern", None)
        if cached is not None and hasattr(cached, "cache_clear"):
            cached.cache_clear()
    if "urllib.parse" in mods:
        mods["urllib.parse"].clear_cache()
    if "warnings" in mods:
        # Resets every module's __warningregistry__ lazily (they check a version).
        mods["warnings"]._filters_mutated()
    sys._clear_type_cache()


class GcHygiene:
    """Keeps full collections cheap by freezing the long-lived heap between tests.

    A full ``gc.collect()`` costs time in proportion to the tracked heap; under
    pytest that is every collected node, fixture and report, which would make
    measuring a fast test cost more than running it. Right after a collection
    every surviving object is alive, so it is moved to the permanent generation
    (``gc.freeze()``) and the next collection only walks what the test made.

    Cycles that die among frozen objects are reclaimed by thawing the heap and
    collecting it in full. Only objects frozen since the last full collection
    can have died since, so that collection waits until those still in the
    frozen list (alive, or dead in a cycle) amount to a quarter of the heap it
    left (and at least ``refreeze_every`` tests): the rule CPython's own
    collector applies to its oldest generation.
    On a fixed test count instead, a suite of 50 000 tests paid fifty walks of
    a heap that grows with the suite, the cost per test growing with the suite.
    """

    def __init__(
        self, refreeze_every: int = 1000, ratio: float = 0.25, heap_per_test: int = 100
    ) -> None:
        self.refreeze_every = refreeze_every
        self.ratio = ratio
        # Checks are at least 1/heap_per_test of the frozen heap, in tests, apart.
        self.heap_per_test = heap_per_test
        self._count = 0
        self.active = False
        # Objects in the permanent generation, kept as a running count because
        # gc.get_freeze_count() walks the whole frozen list.
        self.frozen = 0
        # The frozen heap right after the last full collection, and how many
        # objects were frozen since: what may have died uncollected meanwhile.
        self._at_full = 0
        self._since_full = 0

    def _due(self) -> bool:
        limit = self.ratio * self._at_full
        # Checked at most every refreeze_every tests, and further apart as the
        # heap grows: the exact count below walks the whole frozen list.
        spacing = max(self.refreeze_every, self._at_full // self.heap_per_test)
        if self._count < spacing or self._since_full <= limit:
            return False
        # The running count is an upper bound: most objects frozen at a test's
        # start (its fixtures, pytest's per-test state) are freed by reference
        # counting once it ends, and leave the frozen list. Its exact length
        # says what is really pending.
        pending = gc.get_freeze_count() - self._at_full
        self._since_full = max(0, pending)
        if pending > limit:
            return True
        self._count = 0
        return False

    def before_test(self, generation: int = 2) -> None:
        self._count += 1
        full = False
        if self.active and self._due():
            gc.unfreeze()
            self.frozen = 0
            generation = 2
            full = True
        gc.collect(generation)
        if not self.active:
            self.frozen = gc.get_freeze_count()
        added = len(gc.get_objects())
        self.frozen += added
        if full or not self.active:
            self._count = 0
            self._since_full = 0
            # A young collection of a thawed heap may have frozen dead cycles:
            # then the next full one is due after refreeze_every tests.
            self._at_full = self.frozen if generation == 2 else 0
        else:
            self._since_full += added
        gc.freeze()
        self.active = True

    def thaw(self) -> None:
        """Give the frozen heap back to the collector (until the next before_test)."""
        if self.active:
            gc.unfreeze()
            self.active = False
            self.frozen = 0

    close = thaw


@dataclass
class RunToken:
    before: Sample
    peak: PeakWatch
    # Stop the peak watch before the after-reading (see Measurer.begin).
    peak_first: bool = False


@dataclass
class RunMeasure:
    before: Sample
    after: Sample
    peak_rss: int | None


class Measurer:
    """Takes the before/after readings of one run."""

    def __init__(self, prober: Prober | None = None, hygiene: GcHygiene | None = None) -> None:
        self.prober = prober or get_prober()
        self.hygiene = hygiene
        self._offset: tuple[int, int] | None = None

    def _calibrate(self) -> tuple[int, int]:
        """What one empty begin/end cycle itself leaves alive (its own readings).

        The before-reading object exists when the after-reading is taken, so an
        empty run shows a few blocks of growth; subtracting this constant makes
        an empty run read zero.
        """
        self._offset = (0, 0)
        blocks, malloc = [], []
        for _ in range(5):
            # Young collections: the constant is the same, and the first full
            # collection of a big heap (tens of milliseconds) is not paid here.
            token = self.begin(light=True, blocks=True)
            m = self.end(token, light=True, blocks=True)
            d = m.after.minus(m.before)
            blocks.append(d["blocks"] or 0)
            malloc.append(d["malloc"] or 0)
        blocks.sort()
        malloc.sort()
        self._offset = (blocks[2], malloc[2])
        return self._offset

    def session_reading(self) -> Sample:
        """A reading for the start or end of the session (the ledger's).

        With the long-lived heap frozen, the collection walks only what is not
        frozen and the frozen objects are counted in; otherwise the whole heap
        is collected. Both ends are read the same way, so the session's growth
        compares like with like without walking a big heap twice.
        """
        if self._offset is None:
            self._calibrate()
        return self.prober.sample(gc_objects=self._frozen())

    def _frozen(self) -> int:
        """Objects in the permanent generation, which the gc object count adds back."""
        return self.hygiene.frozen if self.hygiene is not None else 0

    def thaw(self, *, collect: bool = False) -> None:
        """Give the frozen heap back to the collector; collect it in full if asked."""
        if self.hygiene is not None:
            self.hygiene.close()
        if collect:
            gc.collect()

    def begin(
        self,
        *,
        clear_caches: bool = False,
        freeze: bool = True,
        collect: bool = True,
        light: bool = False,
        trim: bool = False,
        blocks: bool | None = None,
    ) -> RunToken:
        """Read the probes before a run.

        ``trim=True`` (tests with a ``max_memory`` budget) hands the C heap's
        free pages back to the OS before the reading. The peak is the
        high-water mark of RSS, and memory already resident does not move it:
        a test reusing what an earlier test (or its own previous run) freed
        would read a peak of nothing.

        ``freeze=False`` for repeated runs measured exactly, whose verdict
        depends on every cycle being collected: with part of the heap frozen,
        garbage that involves a frozen object is never reclaimed, and a test
        that starts and joins a thread read as +10 blocks every few runs. Those
        runs pay for full collections of the whole heap instead. A leak
        verdict first screens its runs frozen (see ``RepeatPlan``) and pays
        for exact runs only when the screen is not clean.

        ``collect=False`` skips the collection before the reading: repeated
        runs are judged on their same-point after-readings, each of which
        follows a full collection, so the one before each run would be spent
        twice on the same heap.

        ``light=True`` (plain measuring, no verdict; and calibration) collects
        the young generations only. A full collection walks no more objects
        while the long-lived heap is frozen, but it also empties CPython's
        free lists, and refilling them costs every later allocation of the
        suite: about an eighth of what plain measuring adds per test. The
        price: what the free lists hold counts as allocated blocks, so the
        same test can read a couple of blocks apart in two processes, and
        cyclic garbage a test let age into the oldest generation reads as
        growth. Verdicts always collect in full.

        ``blocks`` says whether to count allocated blocks (by default: unless
        ``light``). The count visits every pymalloc pool, so under a big
        session it is the dearest probe; plain measuring, which judges
        nothing, leaves it out unless asked (a comparison on blocks).
        """
        if self._offset is None:
            self._calibrate()
        if clear_caches:
            clear_interpreter_caches()
        if self.hygiene is not None and not freeze:
            self.hygiene.thaw()
        if self.hygiene is not None and freeze:
            # Collects, then freezes what survived.
            self.hygiene.before_test(1 if light else 2)
            collect = False
        if trim:
            self.prober.trim()
        before = self.prober.sample(
            collect=collect,
            generation=1 if light else 2,
            gc_objects=self._frozen(),
            count_blocks=not light if blocks is None else blocks,
        )
        if trim:
            # Again, for what the reading itself paged in after reading RSS: its
            # list of every tracked object, a megabyte on an unfrozen heap
            # (repeated runs), would otherwise raise the mark the peak starts
            # from. For the same reason the peak ends before the after-reading.
            self.prober.trim()
        return RunToken(before, self.prober.start_peak(), peak_first=trim)

    def end(
        self,
        token: RunToken,
        *,
        clear_caches: bool = False,
        light: bool = False,
        blocks: bool | None = None,
    ) -> RunMeasure:
        if clear_caches:
            clear_interpreter_caches()
        ob, om = self._offset or (0, 0)
        peak = token.peak.stop() if token.peak_first else None
        after = self.prober.sample(
            generation=1 if light else 2,
            blocks=-ob,
            malloc=-om,
            gc_objects=self._frozen(),
            count_blocks=not light if blocks is None else blocks,
        )
        if not token.peak_first:
            # Stopped after the reading, whose RSS lets the watch skip /proc/self/status.
            peak = token.peak.stop(floor=max(token.before.rss or 0, after.rss or 0) or None)
        if peak is not None:
            # The kernel's RSS counters are per-CPU approximations, so the
            # high-water mark can read a little below a plain RSS reading taken
            # around it; the peak is at least what either reading saw.
            peak = max(peak, token.before.rss or 0, after.rss or 0)
        return RunMeasure(token.before, after, peak)

    def trimmed(self, measure: RunMeasure) -> RunMeasure:
        """Re-read after handing free heap pages back, so RSS stops counting them."""
        self.prober.trim()
        return RunMeasure(measure.before, self.prober.sample(), measure.peak_rss)


# -- test specs ----------------------------------------------------------------


@dataclass(frozen=True)
class MarkCall:
    """A marker as applied to a test, as plain data."""

    name: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]


@dataclass
class TestSpec:
    """What to measure and judge for one test, from its markers and the settings."""

    __test__ = False

    nodeid: str
    skip_reason: str | None = None
    max_growth: dict[str, Any] | None = None
    max_growth_source: VerdictSource = "marker"
    max_memory: dict[str, Any] | None = None
    no_leaks: dict[str, Any] | None = None
    leak_source: VerdictSource = "marker"
    repeat: Repeat | None = None
    # How long a leak verdict may extend its runs (None: up to 4x RUNS, untimed).
    budget: RepeatBudget | None = None
    resources: bool = False
    # Where the resource check was asked for, and the marker's own ignore rules.
    resources_source: VerdictSource = "option"
    resources_ignore: tuple[str, ...] = ()
    soak: dict[str, Any] | None = None
    compare_fail: tuple[str, ...] = ()
    marker_names: list[str] = field(default_factory=list)

    @property
    def measured(self) -> bool:
        return self.skip_reason is None

    @property
    def wants_leak_verdict(self) -> bool:
        return self.no_leaks is not None or self.repeat is not None

    @property
    def has_verdict(self) -> bool:
        return (
            self.wants_leak_verdict
            or self.max_growth is not None
            or self.max_memory is not None
            or self.resources
        )

    def plan(self) -> RepeatPlan | None:
        """The repetition plan, or ``None`` for a single ordinary run.

        A soak test is never repeated: it is judged by its own trend over time,
        and repeating an eight-hour run for a leak verdict would be absurd.
        """
        if self.soak is not None:
            return None
        warmup, runs = 0, 1
        if self.max_growth is not None:
            warmup, runs = self.max_growth["warmup"], self.max_growth["runs"]
        if self.no_leaks is not None:
            warmup = max(warmup, self.no_leaks["warmup"])
            runs = max(runs, self.no_leaks["runs"])
        elif self.repeat is not None:
            warmup = max(warmup, self.repeat.warmup)
            runs = max(runs, self.repeat.runs)
        if warmup == 0 and runs == 1:
            return None
        metrics: Sequence[str] = MEMORY_METRICS
        if self.resources:
            metrics = (*MEMORY_METRICS, *RESOURCE_METRICS)
        budget = self.budget if self.wants_leak_verdict else None
        return RepeatPlan(
            warmup,
            runs,
            metrics=metrics,
            extend=self.wants_leak_verdict,
            budget=budget.seconds if budget is not None else None,
            budget_multiple=budget.multiple if budget is not None else None,
            # Only a leak verdict screens: a max_growth budget takes the median
            # of exactly measured runs.
            screen=self.wants_leak_verdict,
        )


def build_spec(nodeid: str, calls: Sequence[MarkCall], settings: Settings) -> TestSpec:
    """Parse a test's markers against the settings; raise MarkerError with the full message."""
    spec = TestSpec(nodeid)
    seen: set[str] = set()
    opted_out = any(c.name == "memwatch_skip" for c in calls)
    for call in calls:
        schema = markers.SCHEMAS.get(call.name)
        if schema is None:
            continue
        try:
            # Every marker is checked, the ones a closer marker overrides too:
            # a bad value is reported wherever it is written.
            values = schema.parse(call.args, call.kwargs)
        except markers.MarkerError as exc:
            raise markers.MarkerError(
                markers.error_message(
                    nodeid, call.name, call.args, call.kwargs, str(exc), opted_out=opted_out
                )
            ) from None
        if call.name in seen:
            # The closest marker wins, as pytest's get_closest_marker does
            # (calls come closest first: case, function, class, module).
            continue
        seen.add(call.name)
        spec.marker_names.append(call.name)
        if call.name == "memwatch_skip":
            spec.skip_reason = values["reason"] or "memwatch_skip"
        elif call.name == "max_growth":
            spec.max_growth = values
        elif call.name == "max_memory":
            spec.max_memory = values
        elif call.name == "no_leaks":
            spec.no_leaks = values
            spec.resources = spec.resources or bool(values["resources"])
            if values["resources"]:
                spec.resources_source = "marker"
            spec.resources_ignore = tuple(values.get("ignore") or ())
        elif call.name == "soak":
            spec.soak = values
        spec.compare_fail += tuple(values.get("compare_fail", ()) or ())
    if spec.max_growth is None and settings.max_growth is not None:
        spec.max_growth = {"limit": settings.max_growth, "warmup": 0, "runs": 1}
        spec.max_growth_source = "option"
    if spec.no_leaks is None and settings.repeat is not None:
        spec.repeat = settings.repeat
        spec.leak_source = "option"
    spec.resources = spec.resources or settings.resources
    spec.budget = settings.repeat_budget
    return spec


# -- judging -------------------------------------------------------------------


def resource_verdict(delta: Mapping[str, int | None], source: VerdictSource) -> Verdict:
    left = {m: delta.get(m) for m in RESOURCE_METRICS}
    grown = {m: v for m, v in left.items() if v is not None and v > 0}
    if not grown:
        return Verdict("resources", source, True, "no threads or fds left behind")
    parts = ", ".join(f"{v} {m}" for m, v in grown.items())
    return Verdict(
        "resources",
        source,
        False,
        f"resources: {parts} left behind after the test and its fixtures were torn down",
        metric=next(iter(grown)),
        measured=float(next(iter(grown.values()))),
    )


def judge(
    spec: TestSpec,
    measures: Sequence[RunMeasure],
    plan: RepeatPlan | None,
    measurer: Measurer,
    resources: ResourceReport | None = None,
) -> list[Verdict]:
    """All verdicts for one test from its measured runs (the last one is the reported run).

    ``resources`` is what the detailed resource check found (see
    :mod:`pytest_memwatch.resources`); without it, a resource check falls back
    to the thread and descriptor counts of the cheap probes.
    """
    verdicts: list[Verdict] = []
    if not measures:
        return verdicts
    last = measures[-1]
    if spec.max_growth is not None:
        limit = int(spec.max_growth["limit"])
        if plan is None:
            delta = last.after.minus(last.before)
            measured = _bytes(delta)
            if measured is not None and measured > limit and (delta.get("rss") or 0) > limit:
                # RSS may still count freed heap pages: hand them back and read again
                # before failing anyone.
                last = measurer.trimmed(last)
                delta = last.after.minus(last.before)
                measured = _bytes(delta)
            verdicts.append(
                growth_verdict(
                    measured, limit, source=spec.max_growth_source, runs=1, details={"delta": delta}
                )
            )
        else:
            measured_f, details = plan.growth_per_call()
            verdicts.append(
                growth_verdict(
                    measured_f,
                    limit,
                    source=spec.max_growth_source,
                    runs=len(plan.measured),
                    details=details,
                )
            )
    if spec.max_memory is not None:
        # The first measured run follows the trim (see Measurer.begin): its
        # allocations cannot reuse pages a previous run freed.
        runs = plan.measured if plan is not None else measures
        peaks = [
            m.peak_rss - m.before.rss
            for m in runs
            if m.peak_rss is not None and m.before.rss is not None
        ]
        verdicts.append(
            peak_verdict(
                max(peaks) if peaks else None, int(spec.max_memory["limit"]), source="marker"
            )
        )
    leftovers = list(resources.leaked) if resources is not None else []
    if plan is not None and spec.wants_leak_verdict:
        leak = plan.leak_verdict(source=spec.leak_source)
        if resources is not None:
            # A trend that already failed on fds or threads names their survivors
            # itself: one failure line per problem, not two.
            leftovers = name_in_leak_verdict(leak, resources)
        verdicts.append(leak)
    elif spec.resources and resources is None:
        verdicts.append(resource_verdict(last.after.minus(last.before), spec.resources_source))
    if spec.resources and resources is not None and (leftovers or not resources.leaked):
        report = replace(resources, leaked=leftovers)
        verdicts.append(resources_verdict(report, spec.resources_source))
    return verdicts


def _bytes(delta: Mapping[str, int | None]) -> float | None:
    from pytest_memwatch.base.probes import bytes_metric

    v = bytes_metric(dict(delta))
    return None if v is None else float(v)


def run_repeated(fn: Callable[[], object], plan: RepeatPlan, measurer: Measurer) -> None:
    """Call ``fn`` as the plan asks, reading the probes around every call.

    The readings go straight into the plan's preallocated arrays; nothing else
    is kept per run, or the harness would measure its own bookkeeping.
    """
    while plan.wants_more():
        token = measurer.begin(clear_caches=True)
        fn()
        m = measurer.end(token, clear_caches=True)
        plan.record(m.before, m.after, m.peak_rss)
        del m, token


def elapsed(start: float) -> float:
    return time.perf_counter() - start
