"""The library API, used without pytest: tracker, decorators, monitoring service."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import pytest_memwatch
from pytest_memwatch import api
from pytest_memwatch.api import (
    MemoryLimitExceeded,
    MemoryMonitoringService,
    MemoryTracker,
    memory_limit,
    memory_profile,
    start_memory_monitoring,
    stop_memory_monitoring,
)

MiB = 1024 * 1024


def touched(n: int) -> bytearray:
    """``n`` bytes with every page written, so RSS really holds them."""
    return bytearray(b"\x01") * n


def monitor_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "memwatch-monitor"]


@pytest.fixture(autouse=True)
def _no_service_left_behind() -> Iterator[None]:
    yield
    stop_memory_monitoring()
    assert monitor_threads() == []


def test_public_names() -> None:
    for name in (
        "MemoryTracker",
        "memory_profile",
        "memory_limit",
        "MemoryLimitExceeded",
        "MemoryMonitoringService",
        "start_memory_monitoring",
        "stop_memory_monitoring",
    ):
        assert getattr(pytest_memwatch, name) is getattr(api, name)


def test_the_module_example_runs_as_written() -> None:
    # The example users copy from api.py's docstring: every line runs and
    # prints what it shows.
    import doctest

    result = doctest.testmod(api, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 12
    assert result.failed == 0


# -- MemoryTracker ---------------------------------------------------------------


def test_tracker_analysis_sees_growth_peak_and_spike() -> None:
    tracker = MemoryTracker(spike_threshold="10 MiB")
    base = tracker.set_baseline()
    # Over glibc's largest mmap threshold (32 MiB): fresh pages, so RSS rises too.
    held = [touched(48 * MiB)]
    tracker.take_snapshot("loaded")
    held.clear()
    tracker.take_snapshot("released")
    report = tracker.analyze_memory_usage()

    assert report["baseline"] == base.to_dict()
    assert [row["label"] for row in report["snapshots"]] == ["loaded", "released"]
    loaded, released = report["snapshots"]
    assert loaded["bytes"] >= 48 * MiB
    assert loaded["growth"]["malloc"] >= 48 * MiB
    assert released["bytes"] < 2 * MiB
    assert report["peak"]["label"] == "loaded"
    assert [s["label"] for s in report["spikes"]] == ["loaded"]
    assert report["spikes"][0]["rss_step"] >= 40 * MiB
    assert report["growth"] == released["growth"]
    assert report["growth_bytes"] == released["bytes"]


def test_tracker_without_snapshots() -> None:
    tracker = MemoryTracker()
    tracker.set_baseline()
    report = tracker.analyze_memory_usage()
    assert report["snapshots"] == []
    assert report["spikes"] == []
    assert report["peak"] is None
    assert report["growth"]["blocks"] == 0


def test_the_analysis_and_the_status_have_their_documented_keys() -> None:
    tracker = MemoryTracker()
    tracker.set_baseline()
    tracker.take_snapshot("one")
    report = tracker.analyze_memory_usage()
    assert set(report) == set(api.MemoryAnalysis.__annotations__)
    assert set(report["snapshots"][0]) == set(api.SnapshotGrowth.__annotations__)
    svc = MemoryMonitoringService(interval=30)
    assert set(svc.status()) == set(api.MonitorStatus.__annotations__)


def test_tracker_needs_a_baseline_to_analyze() -> None:
    with pytest.raises(
        RuntimeError, match=r"call set_baseline\(\) before analyze_memory_usage\(\)"
    ):
        MemoryTracker().analyze_memory_usage()


def test_snapshot_without_baseline_takes_one() -> None:
    tracker = MemoryTracker()
    tracker.take_snapshot("first")
    assert tracker.baseline is not None
    assert [label for label, _ in tracker.snapshots] == ["first"]
    # A new baseline starts a new series.
    tracker.set_baseline()
    assert tracker.snapshots == []


# -- memory_limit ----------------------------------------------------------------


def test_memory_limit_raises_with_function_limit_and_peak() -> None:
    @memory_limit(10)
    def build_index() -> int:
        block = touched(50 * MiB)
        return len(block)

    with pytest.raises(MemoryLimitExceeded) as info:
        build_index()
    exc = info.value
    assert isinstance(exc, MemoryError)
    assert exc.function == (
        "test_memory_limit_raises_with_function_limit_and_peak.<locals>.build_index"
    )
    assert exc.limit == 10 * MiB
    assert exc.peak >= 45 * MiB
    assert re.fullmatch(
        r"test_memory_limit_raises_with_function_limit_and_peak\.<locals>\.build_index "
        r"used \d+\.\d MiB at its peak, over its memory_limit of 10\.0 MiB",
        str(exc),
    ), str(exc)


def test_memory_limit_within_budget_returns_the_result() -> None:
    @memory_limit("512 MiB")
    def small(x: int, *, y: int) -> int:
        """Adds."""
        return x + y

    assert small(1, y=2) == 3
    assert small.__name__ == "small"
    assert small.__doc__ == "Adds."


def test_memory_limit_lets_the_function_s_own_error_through() -> None:
    @memory_limit(1)
    def broken() -> None:
        raise KeyError("k")

    with pytest.raises(KeyError):
        broken()


def test_memory_limit_rejects_a_bad_size_at_decoration() -> None:
    with pytest.raises(ValueError, match="cannot read 'lots' as a size"):
        memory_limit("lots")


# -- memory_profile --------------------------------------------------------------


def test_memory_profile_records_growth_and_peak(caplog: pytest.LogCaptureFixture) -> None:
    kept: list[bytearray] = []

    @memory_profile
    def load() -> str:
        kept.append(touched(8 * MiB))
        scratch = touched(40 * MiB)  # over the mmap threshold: fresh, counted pages
        del scratch
        return "done"

    assert load.last_profile is None  # type: ignore[attr-defined]
    with caplog.at_level(logging.INFO, logger="pytest_memwatch"):
        assert load() == "done"
    prof: Any = load.last_profile  # type: ignore[attr-defined]
    assert prof.function.endswith("<locals>.load")
    assert prof.growth["malloc"] >= 8 * MiB
    assert prof.growth["malloc"] < 40 * MiB  # the scratch block was freed
    assert prof.peak is not None and prof.peak >= 36 * MiB
    assert prof.seconds > 0
    [record] = [r for r in caplog.records if r.name == "pytest_memwatch"]
    assert re.fullmatch(
        r"memory_profile \S+<locals>\.load: left \+\d+\.\d MiB, peak \d+\.\d MiB, \d+\.\d{3}s",
        record.getMessage(),
    ), record.getMessage()


def test_memory_profile_records_even_when_the_call_raises() -> None:
    @memory_profile
    def fails() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        fails()
    assert fails.last_profile is not None  # type: ignore[attr-defined]


# -- monitoring service ------------------------------------------------------------


def test_service_start_and_stop_are_idempotent_and_stop_joins() -> None:
    svc = MemoryMonitoringService(interval=0.01)
    assert not svc.running
    assert svc.status()["running"] is False
    assert svc.start() is svc
    thread = svc._thread
    assert svc.start() is svc
    assert svc._thread is thread, "a second start() must not start a second thread"
    assert len(monitor_threads()) == 1
    deadline = time.monotonic() + 5
    while svc.status()["samples"] < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    svc.stop()
    assert thread is not None and not thread.is_alive()
    assert not svc.running
    svc.stop()  # again: nothing to do
    status = svc.status()
    assert status["running"] is False
    assert status["samples"] >= 3
    assert status["current_rss"] > 0
    assert status["peak_rss"] >= status["current_rss"]
    assert status["trend"] is not None and set(status["trend"]) == {"bytes_per_hour", "low", "high"}
    # And it can be started again after a stop.
    svc.start()
    assert svc.running
    svc.stop()
    assert monitor_threads() == []


def test_stop_is_prompt_even_with_a_long_interval() -> None:
    svc = MemoryMonitoringService(interval=3600).start()
    t0 = time.monotonic()
    svc.stop()
    assert time.monotonic() - t0 < 2.0


def test_service_alerts_on_thresholds() -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    svc = MemoryMonitoringService(
        interval=60, warn_mb="1 KiB", on_alert=lambda level, st: seen.append((level, st))
    )
    svc.sample_now()
    assert [level for level, _ in seen] == ["warning"]
    assert svc.alerts == 1
    critical = MemoryMonitoringService(interval=60, warn_mb="1 KiB", limit_mb="2 KiB")
    critical.sample_now()
    assert critical.alerts == 1
    quiet = MemoryMonitoringService(interval=60, warn_mb=1_000_000)
    quiet.sample_now()
    assert quiet.alerts == 0


def test_service_rejects_a_non_positive_interval() -> None:
    with pytest.raises(
        ValueError, match=r"^interval must be positive seconds, at most one year, e.g. 30, got 0$"
    ):
        MemoryMonitoringService(interval=0)


def test_module_level_start_and_stop() -> None:
    svc = start_memory_monitoring({"warn_mb": 100_000}, interval=0.05)
    assert svc.running
    assert svc.warn == 100_000 * MiB
    assert start_memory_monitoring() is svc, "a running service is returned, not replaced"
    assert len(monitor_threads()) == 1
    stop_memory_monitoring()
    assert not svc.running
    assert monitor_threads() == []
    stop_memory_monitoring()  # idempotent
    fresh = start_memory_monitoring(interval=0.05)
    assert fresh is not svc
    stop_memory_monitoring()
