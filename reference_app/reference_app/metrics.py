"""Time-stamped memory and session metrics with a retention window (seed 002).

A :class:`MetricsCollector` keeps samples ``(timestamp, name, value)`` in one
deque, oldest first. Retention is enforced on every write, two ways: samples
older than ``retention_seconds`` are dropped from the left, and the deque's
``maxlen`` caps the count at ``max_samples`` whatever the clock does. (The
seed's version compared ``timedelta.seconds``, which ignores whole days, so a
sample older than a day could survive; timestamps here are plain floats.)

Fault ``metrics_no_retention``: samples go to a plain list that is never
pruned, so memory grows with every collection.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from reference_app import faults

FAULT_NO_RETENTION = faults.register(
    "metrics_no_retention",
    "metrics collector",
    "samples are never pruned, so every collected sample stays in memory",
).name


@dataclass(frozen=True, slots=True)
class MetricSample:
    timestamp: float
    name: str
    value: float


class _HasCacheStats(Protocol):
    def get_cache_stats(self) -> dict[str, Any]: ...


class _HasSessionCount(Protocol):
    def active_count(self) -> int: ...


class _HasStorageInfo(Protocol):
    def get_storage_info(self) -> dict[str, Any]: ...


def process_probe() -> dict[str, float]:
    """This process's memory and resource figures, from psutil."""
    import psutil  # lazily: importing metrics must stay cheap

    proc = psutil.Process()
    with proc.oneshot():
        values = {
            "memory.rss_mb": proc.memory_info().rss / (1024 * 1024),
            "memory.process_percent": proc.memory_percent(),
            "process.threads": float(proc.num_threads()),
        }
        if hasattr(proc, "num_fds"):  # POSIX only
            values["process.open_fds"] = float(proc.num_fds())
    values["memory.system_percent"] = psutil.virtual_memory().percent
    # Allocated blocks, not len(gc.get_objects()): that builds a list of the
    # whole heap, and a probe must cost the same on a big heap as on a small one.
    values["python.allocated_blocks"] = float(sys.getallocatedblocks())
    return values


class MetricsCollector:
    """Collect samples and keep only a recent window of them.

    Example::

        metrics = MetricsCollector(retention_seconds=3600, max_samples=10_000)
        metrics.record("chunk.seconds", 0.42)
        metrics.collect(cache=cache, sessions=manager)   # process + component figures
        metrics.summary()["memory.rss_mb"]["max"]
    """

    def __init__(
        self,
        retention_seconds: float = 3600.0,
        max_samples: int = 10_000,
        *,
        clock: Callable[[], float] = time.time,
        probe: Callable[[], dict[str, float]] | None = process_probe,
        config_faults: Iterable[str] | None = None,
    ) -> None:
        if retention_seconds <= 0 or max_samples < 1:
            raise ValueError("retention_seconds must be positive and max_samples at least 1")
        self.retention_seconds = float(retention_seconds)
        self.max_samples = int(max_samples)
        self._clock = clock
        self._probe = probe
        self._no_retention = faults.is_enabled(FAULT_NO_RETENTION, config_faults)
        self._lock = threading.Lock()
        self._samples: deque[MetricSample] | list[MetricSample]
        self._samples = [] if self._no_retention else deque(maxlen=self.max_samples)
        self.recorded = 0  # total ever recorded, including pruned ones
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.last_error: str | None = None

    def record(self, name: str, value: float, timestamp: float | None = None) -> None:
        """Add one sample (``timestamp`` defaults to now) and apply retention."""
        now = self._clock() if timestamp is None else timestamp
        with self._lock:
            self._samples.append(MetricSample(now, name, float(value)))
            self.recorded += 1
            self._prune_locked(self._clock())

    def collect(
        self,
        *,
        cache: _HasCacheStats | None = None,
        sessions: _HasSessionCount | None = None,
        storage: _HasStorageInfo | None = None,
    ) -> dict[str, float]:
        """Record one round of process and component figures; returns them."""
        values: dict[str, float] = dict(self._probe()) if self._probe is not None else {}
        if cache is not None:
            stats = cache.get_cache_stats()
            values["cache.entries"] = float(stats["size"])
            values["cache.capacity"] = float(stats["capacity"])
            values["cache.hit_rate"] = float(stats["hit_rate"])
            values["cache.estimated_bytes"] = float(stats["estimated_bytes"])
        if sessions is not None:
            values["sessions.active"] = float(sessions.active_count())
        if storage is not None:
            info = storage.get_storage_info()
            values["storage.usage_percent"] = float(info["usage_percent"])
            values["storage.used_bytes"] = float(info["used_bytes"])
        now = self._clock()
        for name, value in values.items():
            self.record(name, value, now)
        return values

    def prune(self) -> int:
        """Apply retention now; returns the number of samples dropped."""
        with self._lock:
            return self._prune_locked(self._clock())

    def _prune_locked(self, now: float) -> int:
        samples = self._samples
        if not isinstance(samples, deque):  # a plain list: no retention, never pruned
            return 0
        cutoff = now - self.retention_seconds
        dropped = 0
        # Timestamps arrive in (nearly) increasing order, so expired samples
        # sit at the left; a caller-supplied older timestamp further right just
        # waits until the samples before it expire.
        while samples and samples[0].timestamp < cutoff:
            samples.popleft()
            dropped += 1
        return dropped

    def __len__(self) -> int:
        with self._lock:
            return len(self._samples)

    def samples(self, name: str | None = None, *, since: float | None = None) -> list[MetricSample]:
        """Retained samples, oldest first, optionally for one metric or after ``since``."""
        with self._lock:
            return [
                s
                for s in self._samples
                if (name is None or s.name == name) and (since is None or s.timestamp >= since)
            ]

    def latest(self, name: str) -> MetricSample | None:
        with self._lock:
            for sample in reversed(self._samples):
                if sample.name == name:
                    return sample
        return None

    def summary(self) -> dict[str, dict[str, float]]:
        """Per metric: count, min, max, mean and latest value of the retained samples."""
        out: dict[str, dict[str, float]] = {}
        with self._lock:
            for s in self._samples:
                entry = out.get(s.name)
                if entry is None:
                    out[s.name] = {
                        "count": 1,
                        "min": s.value,
                        "max": s.value,
                        "sum": s.value,
                        "latest": s.value,
                    }
                    continue
                entry["count"] += 1
                entry["min"] = min(entry["min"], s.value)
                entry["max"] = max(entry["max"], s.value)
                entry["sum"] += s.value
                entry["latest"] = s.value
        for entry in out.values():
            entry["mean"] = entry.pop("sum") / entry["count"]
        return out

    def export(self) -> dict[str, Any]:
        """Everything retained, as JSON-able data."""
        with self._lock:
            samples = [asdict(s) for s in self._samples]
        return {
            "retention_seconds": self.retention_seconds,
            "max_samples": self.max_samples,
            "recorded": self.recorded,
            "samples": samples,
        }

    # -- background collection --------------------------------------------------

    def start(self, interval: float = 30.0, **sources: Any) -> None:
        """Call :meth:`collect` every ``interval`` seconds on a daemon thread."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("metrics collection is already running")
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.collect(**sources)
                except Exception as exc:  # keep collecting: one bad probe is not fatal
                    self.last_error = f"{type(exc).__name__}: {exc}"

        self._thread = threading.Thread(target=loop, name="metrics-collector", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop background collection and wait for the thread to end."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> MetricsCollector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
