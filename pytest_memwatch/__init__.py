"""pytest-memwatch: memory measurement, budgets and leak verdicts for pytest.

The library API works without pytest::

    from pytest_memwatch import MemoryTracker, memory_limit, memory_profile

    tracker = MemoryTracker()
    tracker.set_baseline()
    tracker.take_snapshot("loaded")
    print(tracker.analyze_memory_usage())
"""

from __future__ import annotations

__version__ = "0.1.0"

from pytest_memwatch.api import (
    MemoryLimitExceeded,
    MemoryMonitoringService,
    MemoryTracker,
    memory_limit,
    memory_profile,
    start_memory_monitoring,
    stop_memory_monitoring,
)
from pytest_memwatch.fixture import LeakCheck, MemwatchHandle
from pytest_memwatch.units import format_size, parse_duration, parse_rate, parse_size

__all__ = [
    "LeakCheck",
    "MemoryLimitExceeded",
    "MemoryMonitoringService",
    "MemoryTracker",
    "MemwatchHandle",
    "__version__",
    "format_size",
    "memory_limit",
    "memory_profile",
    "parse_duration",
    "parse_rate",
    "parse_size",
    "start_memory_monitoring",
    "stop_memory_monitoring",
]
