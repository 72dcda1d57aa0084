"""Library API usable without pytest: a tracker, two decorators and a background
monitoring service.

Example (run as a doctest by the test suite)::

    >>> from pytest_memwatch.api import (
    ...     MemoryTracker, memory_limit, start_memory_monitoring, stop_memory_monitoring)
    >>> tracker = MemoryTracker()
    >>> _ = tracker.set_baseline()
    >>> table = [bytes(1024) for _ in range(1000)]
    >>> _ = tracker.take_snapshot("loaded")
    >>> report = tracker.analyze_memory_usage()
    >>> [row["label"] for row in report["snapshots"]]
    ['loaded']

    >>> @memory_limit(500)            # MiB above the memory at call time
    ... def build_index():
    ...     return sorted(range(1000))
    >>> len(build_index())
    1000

    >>> service = start_memory_monitoring({"warn_mb": 800}, interval=30)
    >>> service.running
    True
    >>> stop_memory_monitoring()
    >>> service.running
    False
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, ParamSpec, TypedDict, TypeVar

from pytest_memwatch.base.limits import MAX_DURATION, check_count, short_repr
from pytest_memwatch.base.probes import Sample, bytes_metric, get_prober
from pytest_memwatch.base.stats import theil_sen
from pytest_memwatch.base.units import format_size, parse_size

log = logging.getLogger("pytest_memwatch")
P = ParamSpec("P")
R = TypeVar("R")


class SnapshotGrowth(TypedDict):
    label: str
    # Per metric, since the baseline; ``bytes`` is the larger of RSS and malloc.
    growth: dict[str, int | None]
    bytes: int | None


class PeakSnapshot(TypedDict):
    label: str
    rss: int | None


class Spike(TypedDict):
    label: str
    # How far RSS rose over the previous snapshot.
    rss_step: int


class MemoryAnalysis(TypedDict):
    """What :meth:`MemoryTracker.analyze_memory_usage` returns."""

    baseline: dict[str, Any]
    current: dict[str, Any]
    growth: dict[str, int | None]
    growth_bytes: int | None
    snapshots: list[SnapshotGrowth]
    peak: PeakSnapshot | None
    spikes: list[Spike]


class MemoryTracker:
    """Baseline, labelled snapshots and an analysis of growth and spikes."""

    def __init__(self, spike_threshold: int | float | str = "10 MiB") -> None:
        self._prober = get_prober()
        self.spike_threshold = parse_size(spike_threshold)
        self.baseline: Sample | None = None
        self.snapshots: list[tuple[str, Sample]] = []

    def set_baseline(self) -> Sample:
        self.baseline = self._prober.sample()
        self.snapshots.clear()
        return self.baseline

    def take_snapshot(self, label: str) -> Sample:
        if self.baseline is None:
            self.set_baseline()
        sample = self._prober.sample()
        self.snapshots.append((label, sample))
        return sample

    def analyze_memory_usage(self) -> MemoryAnalysis:
        """Growth since the baseline, per snapshot, the peak snapshot and spikes.

        A spike is a snapshot whose RSS rose by more than ``spike_threshold``
        over the previous one.
        """
        if self.baseline is None:
            raise RuntimeError("call set_baseline() before analyze_memory_usage()")
        base = self.baseline
        rows: list[SnapshotGrowth] = []
        spikes: list[Spike] = []
        prev = base
        for label, s in self.snapshots:
            delta = s.minus(base)
            step = s.minus(prev)
            rows.append({"label": label, "growth": delta, "bytes": bytes_metric(delta)})
            rss_step = step.get("rss") or 0
            if rss_step > self.spike_threshold:
                spikes.append({"label": label, "rss_step": rss_step})
            prev = s
        last = self.snapshots[-1][1] if self.snapshots else base
        final = last.minus(base)
        peak = max(self.snapshots, key=lambda ls: ls[1].rss or 0, default=None)
        return {
            "baseline": base.to_dict(),
            "current": last.to_dict(),
            "growth": final,
            "growth_bytes": bytes_metric(final),
            "snapshots": rows,
            "peak": None if peak is None else {"label": peak[0], "rss": peak[1].rss},
            "spikes": spikes,
        }


class MemoryLimitExceeded(MemoryError):
    """Raised by :func:`memory_limit`; names the function, the limit and the peak."""

    def __init__(self, function: str, limit: int, peak: int, other_threads: int = 0) -> None:
        self.function = function
        self.limit = limit
        self.peak = peak
        self.other_threads = other_threads
        # The peak is the process's RSS: what other threads allocated during the
        # call counts too. Say so when there were any, or the figure misleads.
        shared = (
            f" (a process-wide RSS peak: {other_threads} other thread(s) ran during the "
            "call and their allocations count too)"
            if other_threads
            else ""
        )
        super().__init__(
            f"{function} used {format_size(peak)} at its peak, over its memory_limit of "
            f"{format_size(limit)}{shared}"
        )


def memory_limit(limit: int | float | str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Fail a call whose peak memory above the memory at call time exceeds ``limit``.

    A bare number is MiB, as in ``@memory_limit(500)``. The peak is measured (the
    kernel's RSS high-water mark, or a sampler), and checked when the call returns.
    """
    limit_b = parse_size(limit)

    def deco(fn: Callable[P, R]) -> Callable[P, R]:
        _check_callable("memory_limit", fn)
        name = getattr(fn, "__qualname__", repr(fn))

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            prober = get_prober()
            start = prober.rss() or 0
            others = threading.active_count() - 1
            watch = prober.start_peak()
            try:
                result = fn(*args, **kwargs)
            finally:
                peak = watch.stop()
                others = max(others, threading.active_count() - 1)
            used = max(0, (peak or 0) - start)
            if used > limit_b:
                raise MemoryLimitExceeded(name, limit_b, used, others)
            return result

        return wrapper

    return deco


@dataclass
class Profile:
    function: str
    growth: dict[str, int | None]
    peak: int | None
    seconds: float


def memory_profile(fn: Callable[P, R]) -> Callable[P, R]:
    """Log what each call leaves behind and its peak; the last profile is on ``.last_profile``."""
    _check_callable("memory_profile", fn)
    name = getattr(fn, "__qualname__", repr(fn))

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        prober = get_prober()
        before = prober.sample()
        watch = prober.start_peak()
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            peak = watch.stop()
            after = prober.sample()
            growth = after.minus(before)
            prof = Profile(
                name,
                growth,
                None if peak is None or before.rss is None else peak - before.rss,
                time.perf_counter() - t0,
            )
            wrapper.last_profile = prof  # type: ignore[attr-defined]
            log.info(
                "memory_profile %s: left %s, peak %s, %.3fs",
                name,
                format_size(bytes_metric(growth), signed=True),
                format_size(prof.peak),
                prof.seconds,
            )

    wrapper.last_profile = None  # type: ignore[attr-defined]
    return wrapper


def _check_callable(decorator: str, fn: object) -> None:
    if not callable(fn):
        raise TypeError(
            f"{decorator}: expected a function to wrap, got {type(fn).__name__} "
            f"{short_repr(fn)}; use it as a decorator, e.g. @{decorator}"
            + ("(500)" if decorator == "memory_limit" else "")
        )


AlertLevel = Literal["warning", "critical"]


class RssTrend(TypedDict):
    """RSS growth in bytes per hour: the Theil-Sen slope and its 95% interval."""

    bytes_per_hour: float
    low: float
    high: float


class MonitorStatus(TypedDict):
    """What :meth:`MemoryMonitoringService.status` returns."""

    running: bool
    samples: int
    current_rss: int | None
    peak_rss: int | None
    alerts: int
    alert_errors: int
    last_alert_error: str | None
    trend: RssTrend | None


class MonitorConfig(TypedDict, total=False):
    """The thresholds :func:`start_memory_monitoring` takes (MiB, or sizes such as "800 MiB")."""

    warn_mb: float | str | None
    limit_mb: float | str | None


class MemoryMonitoringService:
    """A background thread sampling process memory, with thresholds and a status call.

    ``start()`` and ``stop()`` are idempotent; ``stop()`` joins the thread.
    ``on_alert(level, status)`` is called when RSS crosses ``warn_mb`` ("warning")
    or ``limit_mb`` ("critical").
    """

    def __init__(
        self,
        interval: float = 30.0,
        *,
        warn_mb: float | str | None = None,
        limit_mb: float | str | None = None,
        history: int = 2880,
        on_alert: Callable[[AlertLevel, MonitorStatus], None] | None = None,
    ) -> None:
        if isinstance(interval, bool) or not isinstance(interval, (int, float)):
            raise TypeError(
                f"interval must be a number of seconds, e.g. 30, got {short_repr(interval)}"
            )
        # NaN compares false with everything: it would pass "<= 0" and busy-loop.
        if not (0 < interval <= MAX_DURATION):
            raise ValueError(
                f"interval must be positive seconds, at most one year, e.g. 30, "
                f"got {short_repr(interval)}"
            )
        if on_alert is not None and not callable(on_alert):
            raise TypeError(
                f"on_alert must be a function (level, status) or None, got "
                f"{type(on_alert).__name__} {short_repr(on_alert)}"
            )
        check_count("history", history, minimum=1, maximum=10_000_000)
        self.interval = float(interval)
        self.warn = None if warn_mb is None else parse_size(warn_mb)
        self.limit = None if limit_mb is None else parse_size(limit_mb)
        self.on_alert = on_alert
        self._samples: deque[tuple[float, int]] = deque(maxlen=history)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.alerts = 0
        self.alert_errors = 0
        self.last_alert_error: str | None = None
        self.peak_rss = 0
        self.started_at: float | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> MemoryMonitoringService:
        if self.running:
            return self
        self._stop.clear()
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="memwatch-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        if thread is threading.current_thread():
            # Called from on_alert: the loop ends on its own after this sample;
            # joining itself would raise and kill the thread mid-call.
            return
        thread.join()
        self._thread = None

    def sample_now(self) -> int:
        rss = get_prober().rss() or 0
        with self._lock:
            self._samples.append((time.monotonic(), rss))
            self.peak_rss = max(self.peak_rss, rss)
        level: AlertLevel | None = None
        if self.limit is not None and rss > self.limit:
            level = "critical"
        elif self.warn is not None and rss > self.warn:
            level = "warning"
        if level is not None:
            self.alerts += 1
            log.warning("memwatch monitor: RSS %s (%s)", format_size(rss), level)
            if self.on_alert is not None:
                try:
                    self.on_alert(level, self.status())
                except Exception as exc:
                    # The service outlives a broken callback: it is what watches memory.
                    self.alert_errors += 1
                    self.last_alert_error = f"{type(exc).__name__}: {exc}"
                    log.exception("memwatch monitor: on_alert raised; monitoring goes on")
        return rss

    def _loop(self) -> None:
        while True:
            try:
                self.sample_now()
            except Exception:
                # A probe that fails once (a /proc read during fork) must not end
                # the monitoring for good; the error is logged.
                log.exception("memwatch monitor: sampling failed; trying again next interval")
            if self._stop.wait(self.interval):
                return

    def status(self) -> MonitorStatus:
        with self._lock:
            samples = list(self._samples)
        trend: RssTrend | None = None
        if len(samples) >= 3:
            t0 = samples[0][0]
            t = theil_sen([s[1] for s in samples], [s[0] - t0 for s in samples])
            trend = {"bytes_per_hour": t.slope * 3600, "low": t.low * 3600, "high": t.high * 3600}
        return {
            "running": self.running,
            "samples": len(samples),
            "current_rss": samples[-1][1] if samples else None,
            "peak_rss": self.peak_rss or None,
            "alerts": self.alerts,
            "alert_errors": self.alert_errors,
            "last_alert_error": self.last_alert_error,
            "trend": trend,
        }


_SERVICE: MemoryMonitoringService | None = None


def start_memory_monitoring(
    config: MonitorConfig | None = None, interval: float = 30.0
) -> MemoryMonitoringService:
    """Start (or return) the process-wide monitoring service.

    ``config`` may carry ``warn_mb`` and ``limit_mb`` (MiB, or sizes such as ``"800 MiB"``).
    """
    global _SERVICE
    cfg: MonitorConfig = config or {}
    if _SERVICE is None or not _SERVICE.running:
        _SERVICE = MemoryMonitoringService(
            interval, warn_mb=cfg.get("warn_mb"), limit_mb=cfg.get("limit_mb")
        )
    return _SERVICE.start()


def stop_memory_monitoring() -> None:
    global _SERVICE
    if _SERVICE is not None:
        _SERVICE.stop()
        _SERVICE = None
