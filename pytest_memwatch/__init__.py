"""pytest-memwatch: memory measurement, budgets and leak verdicts for pytest.

The library API works without pytest::

    from pytest_memwatch import MemoryTracker, memory_limit, memory_profile

    tracker = MemoryTracker()
    tracker.set_baseline()
    tracker.take_snapshot("loaded")
    print(tracker.analyze_memory_usage())
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_memwatch.base.version import __version__

# The public names are imported on first use (PEP 562), so ``import
# pytest_memwatch`` (and the pytest plugin, when inactive) does not load the
# library API, the engine and ctypes for a session that measures nothing.
_EXPORTS = {
    "MemoryLimitExceeded": "pytest_memwatch.api",
    "MemoryMonitoringService": "pytest_memwatch.api",
    "MemoryTracker": "pytest_memwatch.api",
    "memory_limit": "pytest_memwatch.api",
    "memory_profile": "pytest_memwatch.api",
    "start_memory_monitoring": "pytest_memwatch.api",
    "stop_memory_monitoring": "pytest_memwatch.api",
    "LeakCheck": "pytest_memwatch.fixture",
    "MemwatchHandle": "pytest_memwatch.fixture",
    "format_size": "pytest_memwatch.base.units",
    "parse_duration": "pytest_memwatch.base.units",
    "parse_rate": "pytest_memwatch.base.units",
    "parse_size": "pytest_memwatch.base.units",
}

if TYPE_CHECKING:
    from pytest_memwatch.api import (
        MemoryLimitExceeded,
        MemoryMonitoringService,
        MemoryTracker,
        memory_limit,
        memory_profile,
        start_memory_monitoring,
        stop_memory_monitoring,
    )
    from pytest_memwatch.base.units import format_size, parse_duration, parse_rate, parse_size
    from pytest_memwatch.fixture import LeakCheck, MemwatchHandle


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_memwatch' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


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
