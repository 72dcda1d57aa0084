"""A memory manager that tracks the service's resources by size (the memory management review).

Every resource the service holds on behalf of a client (a streaming session's
audio buffers, the audio of a work order) is registered with its size in
bytes and released when done. The manager keeps the total against a
``budget_bytes``:

- :meth:`MemoryManager.cleanup` (run by the service's maintenance loop, and
  by :meth:`register` when a new resource would cross the threshold)
  releases every resource idle for longer than ``idle_seconds`` (5 minutes by
  default, the review's figure); when the total is at ``cleanup_threshold``
  (80 %) of the budget or more, it then releases the least recently used
  *evictable* resources until the total is below the threshold again;
- a registration that would exceed the whole budget even after cleanup is
  refused with :class:`MemoryBudgetError` (the service tells that client the
  server is busy, and keeps serving the others).

Releasing a resource calls its ``release`` callback once (for a session: end
it and free its buffers). The manager is thread-safe; callbacks run outside
its lock.

Fault ``memory_manager_never_releases``: :meth:`release` takes the size off
the total and reports success, but the record and its release callback
(with whatever the callback holds) stay in a list for the manager's lifetime.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from reference_app import faults

FAULT_NEVER_RELEASES = faults.register(
    "memory_manager_never_releases",
    "memory manager",
    "released resources stay in the manager (record and release callback, with what it "
    "holds) although the total says they are gone",
).name

log = logging.getLogger(__name__)


class MemoryBudgetError(Exception):
    """A resource does not fit in the budget, even after cleanup."""


@dataclass
class ResourceUsage:
    resource_id: str
    resource_type: str
    size_bytes: int
    allocated_at: float
    last_used: float
    evictable: bool = False
    release: Callable[[], object] | None = field(default=None, repr=False)
    metadata: dict[str, Any] = field(default_factory=dict)


class MemoryManager:
    """Resources by size against a budget; cleanup at 80 %, idle release after 5 min.

    Example::

        manager = MemoryManager(budget_bytes=64 * 2**20, idle_seconds=300)
        manager.register("session:s1", "session", 480_000, release=session.close)
        manager.touch("session:s1")            # on activity
        manager.release("session:s1")          # when done: calls session.close()
        manager.cleanup()                      # on a timer
    """

    def __init__(
        self,
        budget_bytes: int = 256 * 1024 * 1024,
        *,
        cleanup_threshold: float = 0.8,
        idle_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        config_faults: Iterable[str] | None = None,
    ) -> None:
        if budget_bytes <= 0:
            raise ValueError(f"memory budget must be positive, got {budget_bytes} bytes")
        if not 0 < cleanup_threshold <= 1:
            raise ValueError(
                f"cleanup_threshold is a fraction of the budget in (0, 1], got {cleanup_threshold}"
            )
        if idle_seconds <= 0:
            raise ValueError(f"idle_seconds must be positive, got {idle_seconds}")
        self.budget_bytes = int(budget_bytes)
        self.cleanup_threshold = float(cleanup_threshold)
        self.idle_seconds = float(idle_seconds)
        self._clock = clock
        self._never_release = faults.is_enabled(FAULT_NEVER_RELEASES, config_faults)
        self._lock = threading.RLock()
        self.resources: dict[str, ResourceUsage] = {}
        self._retired: list[ResourceUsage] = []  # only under the fault
        self.total_memory_used = 0
        self.peak_memory_used = 0
        self.released = 0
        self.released_idle = 0
        self.released_pressure = 0
        self.cleanups = 0
        self.refused = 0
        self.callback_errors = 0

    # -- tracking ------------------------------------------------------------------

    def register(
        self,
        resource_id: str,
        resource_type: str,
        size_bytes: int,
        *,
        release: Callable[[], object] | None = None,
        evictable: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> ResourceUsage:
        """Track a resource; :class:`MemoryBudgetError` when it cannot fit."""
        if size_bytes < 0:
            raise ValueError(f"size of {resource_id!r} must not be negative, got {size_bytes}")
        with self._lock:
            if resource_id in self.resources:
                raise ValueError(f"resource {resource_id!r} is already registered")
            threshold = self.cleanup_threshold * self.budget_bytes
        if self.total_memory_used + size_bytes >= threshold:
            self.cleanup(needed=size_bytes)
        with self._lock:
            if self.total_memory_used + size_bytes > self.budget_bytes:
                self.refused += 1
                raise MemoryBudgetError(
                    f"server memory budget exhausted: {resource_type} {resource_id!r} needs "
                    f"{_human(size_bytes)}, {_human(self.total_memory_used)} of "
                    f"{_human(self.budget_bytes)} in use after cleanup"
                )
            now = self._clock()
            usage = ResourceUsage(
                resource_id,
                resource_type,
                int(size_bytes),
                now,
                now,
                evictable,
                release,
                dict(metadata or {}),
            )
            self.resources[resource_id] = usage
            self.total_memory_used += usage.size_bytes
            self.peak_memory_used = max(self.peak_memory_used, self.total_memory_used)
            return usage

    def touch(self, resource_id: str, size_bytes: int | None = None) -> None:
        """Note use of a resource (and its new size); unknown ids are ignored."""
        with self._lock:
            usage = self.resources.get(resource_id)
            if usage is None:
                return
            usage.last_used = self._clock()
            if size_bytes is not None:
                self.total_memory_used += int(size_bytes) - usage.size_bytes
                usage.size_bytes = int(size_bytes)
                self.peak_memory_used = max(self.peak_memory_used, self.total_memory_used)

    def release(self, resource_id: str) -> bool:
        """Stop tracking a resource and call its release callback; False if unknown."""
        with self._lock:
            usage = self.resources.pop(resource_id, None)
            if usage is None:
                return False
            self.total_memory_used -= usage.size_bytes
            self.released += 1
            if self._never_release:
                self._retired.append(usage)
                return True
        self._call_release(usage)
        return True

    def _call_release(self, usage: ResourceUsage) -> None:
        callback, usage.release = usage.release, None
        if callback is None:
            return
        try:
            callback()
        except Exception:  # one bad callback must not stop the cleanup of the others
            self.callback_errors += 1
            log.exception("releasing %s %s failed", usage.resource_type, usage.resource_id)

    def cleanup(self, *, needed: int = 0) -> list[str]:
        """Release idle resources, then LRU evictable ones while the total (plus
        ``needed`` bytes about to be registered) is at or over the threshold."""
        now = self._clock()
        with self._lock:
            self.cleanups += 1
            idle = [
                u.resource_id
                for u in self.resources.values()
                if now - u.last_used > self.idle_seconds
            ]
        released = [rid for rid in idle if self.release(rid)]
        self.released_idle += len(released)
        threshold = self.cleanup_threshold * self.budget_bytes
        while True:
            with self._lock:
                if self.total_memory_used + needed < threshold:
                    break
                candidates = sorted(
                    (u for u in self.resources.values() if u.evictable),
                    key=lambda u: u.last_used,
                )
                if not candidates:
                    break
                victim = candidates[0].resource_id
            if self.release(victim):
                released.append(victim)
                self.released_pressure += 1
        return released

    # -- figures ---------------------------------------------------------------------

    def usage_percent(self) -> float:
        return 100.0 * self.total_memory_used / self.budget_bytes

    def stats(self) -> dict[str, Any]:
        with self._lock:
            by_type: dict[str, dict[str, int]] = {}
            for u in self.resources.values():
                entry = by_type.setdefault(u.resource_type, {"count": 0, "bytes": 0})
                entry["count"] += 1
                entry["bytes"] += u.size_bytes
            return {
                "tracked": len(self.resources),
                "used_bytes": self.total_memory_used,
                "peak_bytes": self.peak_memory_used,
                "budget_bytes": self.budget_bytes,
                "used_percent": round(self.usage_percent(), 2),
                "cleanup_threshold_percent": round(100 * self.cleanup_threshold, 1),
                "idle_seconds": self.idle_seconds,
                "by_type": by_type,
                "released": self.released,
                "released_idle": self.released_idle,
                "released_pressure": self.released_pressure,
                "cleanups": self.cleanups,
                "refused": self.refused,
                "callback_errors": self.callback_errors,
            }


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
