"""The object behind the ``memwatch`` fixture (plain Python; the plugin wraps it)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pytest_memwatch.base.limits import MAX_RUNS, MAX_WARMUP, check_count, short_repr
from pytest_memwatch.base.probes import PeakWatch, Sample, bytes_metric, get_prober
from pytest_memwatch.base.units import format_size, parse_size
from pytest_memwatch.base.verdict import Verdict
from pytest_memwatch.engine.measure import Measurer, run_repeated
from pytest_memwatch.engine.plan import RepeatPlan
from pytest_memwatch.engine.verdicts import MEMORY_METRICS, RESOURCE_METRICS


@dataclass
class LeakCheck:
    """What :meth:`MemwatchHandle.check_leaks` found. Truthy when nothing leaked.

    ``verdict`` holds the message and the per-metric numbers;
    ``growth_per_call`` is the median of the per-run growth in bytes (RSS or
    malloc, whichever is larger); ``deltas`` maps each metric to its per-run growth.
    """

    verdict: Verdict
    growth_per_call: float | None
    deltas: dict[str, list[float] | None] = field(default_factory=dict)
    runs: int = 0

    @property
    def passed(self) -> bool:
        return self.verdict.passed

    @property
    def message(self) -> str:
        return self.verdict.message

    def __bool__(self) -> bool:
        return self.verdict.passed

    def __repr__(self) -> str:
        return f"<LeakCheck {'passed' if self.passed else 'LEAK'}: {self.message}>"


class MemwatchHandle:
    """Baselines, labelled snapshots, growth, peak and leak checks inside one test."""

    def __init__(self, nodeid: str = "<api>", *, managed: bool = False) -> None:
        self.nodeid = nodeid
        self._prober = get_prober()
        # managed: the memwatch fixture made this handle and calls finish() at
        # teardown, so an object given to assert_collected can be checked then.
        self._managed = managed
        self._finished = False
        # The reading at the test's start: assert_max_growth and growth() without
        # a baseline() call compare with it, not with the moment of the call.
        self._start: Sample | None = None
        self._baseline: Sample | None = None
        self._peak: PeakWatch | None = None
        self._peak_value: int | None = None
        self.snapshots: list[tuple[str, Sample]] = []
        self._pending: list[tuple[weakref.ref[Any], str]] = []
        # The checks made through the fixture, for the test's results (managed
        # handles only: a library user's handle must not grow with each check).
        self.verdicts: list[Verdict] = []

    def _record(self, verdict: Verdict) -> None:
        if self._managed:
            self.verdicts.append(verdict)

    # -- baseline and snapshots --------------------------------------------------
    def baseline(self) -> Sample:
        """Take the reading that :meth:`growth` and :meth:`peak` are relative to."""
        # Free heap pages still count in RSS until trimmed; trim on both sides of
        # the comparison, or memory freed in the middle of the heap reads as held.
        self._prober.trim()
        self._baseline = self._prober.sample()
        self._peak = self._prober.start_peak()
        self._peak_value = None
        return self._baseline

    def start(self) -> None:
        """Record the test's starting reading (the fixture calls this at setup)."""
        self._prober.trim()
        self._start = self._prober.sample()

    def _ensure_baseline(self) -> Sample:
        if self._baseline is not None:
            return self._baseline
        if self._start is not None:
            # The peak can only be watched from now on; growth counts from the start.
            self._baseline = self._start
            self._peak = self._prober.start_peak()
            self._peak_value = None
            return self._baseline
        return self.baseline()

    def snapshot(self, label: str) -> dict[str, int | None]:
        """Record a labelled reading; returns its growth per metric since the baseline."""
        base = self._ensure_baseline()
        sample = self._prober.sample()
        self.snapshots.append((label, sample))
        return sample.minus(base)

    def growth(self) -> int:
        """Bytes held now beyond the baseline (after a full collection)."""
        base = self._ensure_baseline()
        gc.collect()
        self._prober.trim()
        return int(bytes_metric(self._prober.sample().minus(base)) or 0)

    def peak(self) -> int:
        """Peak RSS since the baseline, above the baseline's RSS, in bytes."""
        base = self._ensure_baseline()
        if self._peak is not None:
            value = self._peak.stop()
            # Reading the high-water mark resets nothing, but a sampler thread
            # stops: start a new watch and carry the running maximum.
            self._peak = self._prober.start_peak()
            if value is not None:
                self._peak_value = max(self._peak_value or 0, value)
        if self._peak_value is None or base.rss is None:
            return 0
        return max(0, self._peak_value - base.rss)

    def assert_max_growth(self, limit: int | float | str) -> None:
        """Fail when more than ``limit`` (bare number = MiB) is held beyond the baseline."""
        limit_b = parse_size(limit)
        grown = self.growth()
        passed = grown <= limit_b
        message = (
            f"{format_size(grown)} held beyond the baseline, "
            f"{'within' if passed else 'over'} the limit of {format_size(limit_b)}"
        )
        if not passed:
            base = self._ensure_baseline()
            labels = ", ".join(
                f"{label}: {format_size(bytes_metric(s.minus(base)), signed=True)}"
                for label, s in self.snapshots
            )
            message += f" (snapshots: {labels})" if labels else ""
        self._record(
            Verdict(
                "max_growth",
                "fixture",
                passed,
                message,
                metric="bytes",
                limit=float(limit_b),
                measured=float(grown),
            )
        )
        if not passed:
            raise AssertionError(f"memwatch: {message}")

    # -- leak checks -------------------------------------------------------------
    def check_leaks(
        self,
        fn: Callable[[], object],
        *,
        warmup: int = 2,
        runs: int = 5,
        resources: bool = False,
    ) -> LeakCheck:
        """Call ``fn`` ``warmup`` + ``runs`` times (more when in doubt) and judge the trend.

        ``warmup`` is 0 to 1000 and ``runs`` 2 to 1000 (docs/reference.md).
        """
        if not callable(fn):
            raise TypeError(
                f"memwatch.check_leaks: expected a callable to repeat, got "
                f"{type(fn).__name__} {short_repr(fn)}; e.g. check_leaks(lambda: parse(doc))"
            )
        try:
            check_count("warmup", warmup, minimum=0, maximum=MAX_WARMUP)
            check_count("runs", runs, minimum=2, maximum=MAX_RUNS)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"memwatch.check_leaks: {exc}") from None
        if not isinstance(resources, bool):
            raise TypeError(
                f"memwatch.check_leaks: resources={short_repr(resources)}: expected True or False"
            )
        metrics = (*MEMORY_METRICS, *RESOURCE_METRICS) if resources else MEMORY_METRICS
        plan = RepeatPlan(warmup, runs, metrics=metrics)
        run_repeated(fn, plan, Measurer(self._prober))
        verdict = plan.leak_verdict(source="fixture")
        self._record(verdict)
        per_call, _ = plan.growth_per_call()
        deltas = {m: plan.deltas(m) for m in metrics}
        return LeakCheck(verdict, per_call, deltas, len(plan.measured))

    # -- collection --------------------------------------------------------------
    def assert_collected(self, obj: object, what: str | None = None) -> None:
        """Check that ``obj`` is freed once the test drops it.

        Given a ``weakref.ref``, the check runs now. Given the object itself, the
        test still holds it, so the check runs when the test has finished (at
        fixture teardown), and a survivor fails the test with what holds it.
        """
        if isinstance(obj, weakref.ref):
            self._check_ref(obj, what or "object")
            return
        if self._finished:
            raise RuntimeError(
                f"memwatch.assert_collected: the test {self.nodeid} has ended, so nothing "
                "would check this object; call it during the test, or pass a weakref.ref "
                "to check now"
            )
        if not self._managed:
            raise RuntimeError(
                "memwatch.assert_collected: outside the memwatch fixture nothing checks the "
                "object once it is dropped; drop it and pass weakref.ref(obj) to check now"
            )
        try:
            ref = weakref.ref(obj)
        except TypeError:
            raise TypeError(
                f"memwatch.assert_collected: {type(obj).__name__} objects cannot be weakly "
                "referenced, so their release cannot be observed; pass an instance of a class "
                "(or a weakref.ref to one)"
            ) from None
        self._pending.append((ref, what or f"{type(obj).__name__} object"))

    def _check_ref(self, ref: weakref.ref[Any], what: str) -> None:
        gc.collect()
        obj = ref()
        if obj is None:
            self._record(Verdict("collected", "fixture", True, f"{what} was freed"))
            return
        # gc.get_referrers() skips frozen objects, and under --memwatch the
        # long-lived heap (modules included) is frozen between tests: thaw it
        # for the search, or no chain ever reaches a module.
        frozen = gc.get_freeze_count()
        if frozen:
            gc.unfreeze()
        try:
            chain = _holder_chain(obj)
        finally:
            if frozen:
                gc.collect()
                gc.freeze()
        del obj
        message = f"{what} was not freed" + (f"; held by: {chain}" if chain else "")
        self._record(Verdict("collected", "fixture", False, message))
        raise AssertionError(f"memwatch: {message}")

    def finish(self) -> None:
        """Check every object given to :meth:`assert_collected` (the fixture's teardown)."""
        self._finished = self._managed
        pending, self._pending = self._pending, []
        for ref, what in pending:
            self._check_ref(ref, what)


def _holder_chain(obj: object) -> str:
    try:
        import objgraph
    except ImportError:
        return ""
    chain = objgraph.find_backref_chain(obj, objgraph.is_proper_module, max_depth=20)
    if not chain or not objgraph.is_proper_module(chain[0]):
        referrers = [type(r).__name__ for r in gc.get_referrers(obj)][:5]
        return "referrers " + ", ".join(referrers) if referrers else ""
    from pytest_memwatch.engine.attribution import short_repr

    return " -> ".join(f"{type(o).__name__} {short_repr(o)}" for o in chain)
