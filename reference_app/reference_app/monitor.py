"""Memory monitor: a background thread that watches memory and runs tiered cleanup.

Tiers follow seed 003: below ``high_percent`` of system memory is NORMAL; from
``high_percent`` (70 %) it is HIGH and the HIGH callbacks run; from
``critical_percent`` (85 %) it is CRITICAL and both HIGH and CRITICAL callbacks
run. A process budget (``max_rss_mb``, seed 004's 512 MB default, raised by a
model's budget) also counts as HIGH when the process alone exceeds it.

Callbacks are registered per tier and removed with the handle the registration
returned. Statistics count checks, cleanups and the RSS peak, and a bounded
history of RSS readings gives the trend (least-squares slope) that the live
command prints.

``reader`` is injected: the default reads psutil, tests pass a function that
returns whatever pressure they want to simulate.
"""

from __future__ import annotations

import enum
import gc
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import psutil

from reference_app import faults

log = logging.getLogger(__name__)

COMPONENT = "memory monitor"
faults.register(
    "monitor_callbacks_kept",
    COMPONENT,
    "remove_callback() reports success but keeps the callback, so every registration "
    "(and whatever its closure holds, e.g. a chunk buffer) stays for the monitor's lifetime",
)

MiB = 2**20


@dataclass(frozen=True)
class MemoryReading:
    """One look at memory: this process and the whole system."""

    timestamp: float
    rss_bytes: int
    system_percent: float
    system_available_bytes: int

    @property
    def rss_mib(self) -> float:
        return self.rss_bytes / MiB


def read_memory() -> MemoryReading:
    """The real reading, from psutil."""
    vm = psutil.virtual_memory()
    rss = psutil.Process().memory_info().rss
    return MemoryReading(time.monotonic(), rss, float(vm.percent), int(vm.available))


class Tier(enum.IntEnum):
    NORMAL = 0
    HIGH = 1
    CRITICAL = 2


@dataclass(frozen=True)
class CallbackHandle:
    id: int
    tier: Tier
    name: str


@dataclass(frozen=True)
class MonitorStats:
    checks: int
    cleanups: int  # checks that ran cleanup (tier HIGH or CRITICAL)
    callback_errors: int
    peak_rss_bytes: int
    last: MemoryReading | None
    last_tier: Tier
    callbacks: int

    @property
    def peak_rss_mib(self) -> float:
        return self.peak_rss_bytes / MiB


class MemoryMonitor:
    """Watches memory on a background thread and runs cleanup callbacks by tier.

    Example::

        monitor = MemoryMonitor(interval=5.0)
        handle = monitor.add_callback(Tier.HIGH, cache.clear)
        monitor.start()
        ...
        monitor.remove_callback(handle)
        monitor.stop()
    """

    def __init__(
        self,
        *,
        interval: float = 5.0,
        high_percent: float = 70.0,
        critical_percent: float = 85.0,
        max_rss_mb: float | None = None,
        reader: Callable[[], MemoryReading] = read_memory,
        history: int = 720,
        config_faults: Iterable[str] = (),
    ) -> None:
        if not 0 < high_percent <= critical_percent <= 100:
            raise ValueError(
                f"need 0 < high_percent <= critical_percent <= 100, "
                f"got {high_percent} and {critical_percent}"
            )
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.interval = interval
        self.high_percent = high_percent
        self.critical_percent = critical_percent
        self.max_rss_mb = max_rss_mb
        self._reader = reader
        self._lock = threading.RLock()
        self._callbacks: dict[int, tuple[CallbackHandle, Callable[[], object]]] = {}
        self._ids = itertools.count(1)
        self._history: deque[tuple[float, int]] = deque(maxlen=history)
        self._checks = self._cleanups = self._errors = 0
        self._peak = 0
        self._last: MemoryReading | None = None
        self._last_tier = Tier.NORMAL
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._keep_removed = faults.is_enabled("monitor_callbacks_kept", config_faults)

    # -- callbacks ----------------------------------------------------------------
    def add_callback(self, tier: Tier, fn: Callable[[], object], name: str = "") -> CallbackHandle:
        """Run ``fn`` whenever a check finds ``tier`` or worse."""
        if tier is Tier.NORMAL:
            raise ValueError("callbacks run under memory pressure: use Tier.HIGH or Tier.CRITICAL")
        handle = CallbackHandle(next(self._ids), tier, name or getattr(fn, "__qualname__", "cb"))
        with self._lock:
            self._callbacks[handle.id] = (handle, fn)
        return handle

    def remove_callback(self, handle: CallbackHandle) -> bool:
        """Remove a callback; True if it was registered."""
        with self._lock:
            if self._keep_removed:
                return handle.id in self._callbacks  # the fault: claims success, keeps it
            return self._callbacks.pop(handle.id, None) is not None

    # -- checking -----------------------------------------------------------------
    def tier_for(self, reading: MemoryReading) -> Tier:
        if reading.system_percent >= self.critical_percent:
            return Tier.CRITICAL
        if reading.system_percent >= self.high_percent:
            return Tier.HIGH
        if self.max_rss_mb is not None and reading.rss_bytes > self.max_rss_mb * MiB:
            return Tier.HIGH
        return Tier.NORMAL

    def read(self) -> MemoryReading:
        """Read memory now and record it (history, peak) without running cleanup."""
        reading = self._reader()
        with self._lock:
            self._history.append((reading.timestamp, reading.rss_bytes))
            self._peak = max(self._peak, reading.rss_bytes)
            self._last = reading
        return reading

    def check(self) -> Tier:
        """One monitoring step: read, classify, run the callbacks of the tier."""
        reading = self.read()
        tier = self.tier_for(reading)
        with self._lock:
            self._checks += 1
            self._last_tier = tier
            due = [fn for h, fn in self._callbacks.values() if h.tier <= tier]
        if tier > Tier.NORMAL:
            self._cleanups += 1
            log.warning(
                "memory %s: system %.1f %%, process %.1f MiB; running %d cleanup callbacks",
                tier.name,
                reading.system_percent,
                reading.rss_mib,
                len(due),
            )
            for fn in due:
                try:
                    fn()
                except Exception:
                    self._errors += 1
                    log.exception("memory cleanup callback failed")
            gc.collect()
        return tier

    def trend_mib_per_min(self, window_seconds: float | None = None) -> float | None:
        """Least-squares slope of RSS over the recorded history, in MiB/min.

        None until two readings at different times exist. ``window_seconds``
        restricts the fit to the most recent readings.
        """
        with self._lock:
            points = list(self._history)
        if window_seconds is not None and points:
            cutoff = points[-1][0] - window_seconds
            points = [p for p in points if p[0] >= cutoff]
        if len(points) < 2:
            return None
        t0 = points[0][0]
        xs = [t - t0 for t, _ in points]
        ys = [rss / MiB for _, rss in points]
        mean_x = sum(xs) / len(xs)
        mean_y = sum(ys) / len(ys)
        var = sum((x - mean_x) ** 2 for x in xs)
        if var == 0:
            return None
        cov = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
        return cov / var * 60.0

    def history(self) -> list[tuple[float, int]]:
        """(monotonic time, RSS bytes) readings, oldest first."""
        with self._lock:
            return list(self._history)

    def stats(self) -> MonitorStats:
        with self._lock:
            return MonitorStats(
                self._checks,
                self._cleanups,
                self._errors,
                self._peak,
                self._last,
                self._last_tier,
                len(self._callbacks),
            )

    # -- thread -------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the background thread; a no-op if it is running."""
        with self._lock:
            if self.running:
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="memory-monitor", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except Exception:
                # A failed reading must not kill monitoring for the rest of the run.
                log.exception("memory check failed")
            self._stop.wait(self.interval)

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop and join the thread; a no-op if it is not running."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout)

    def __enter__(self) -> MemoryMonitor:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
