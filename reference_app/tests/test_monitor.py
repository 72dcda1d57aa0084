"""Memory monitor: tiers, callbacks by handle, statistics, idempotent start/stop."""

from __future__ import annotations

import threading
import time

import pytest
from reference_app.monitor import MemoryMonitor, MemoryReading, Tier, read_memory

MiB = 2**20


class Script:
    def __init__(self, *percent: float, rss_mib: float = 100.0) -> None:
        self.percent = list(percent)
        self.rss = rss_mib
        self.t = 0.0

    def __call__(self) -> MemoryReading:
        self.t += 1.0
        p = self.percent.pop(0) if len(self.percent) > 1 else self.percent[0]
        return MemoryReading(self.t, int(self.rss * MiB), p, 1)


def test_real_reading_is_sane() -> None:
    r = read_memory()
    assert 10 * MiB < r.rss_bytes < 8 * 1024 * MiB
    assert 0 < r.system_percent < 100


def test_tiers_run_their_callbacks() -> None:
    calls: list[str] = []
    monitor = MemoryMonitor(reader=Script(50, 75, 90))
    monitor.add_callback(Tier.HIGH, lambda: calls.append("high"))
    monitor.add_callback(Tier.CRITICAL, lambda: calls.append("critical"))
    assert monitor.check() is Tier.NORMAL and calls == []
    assert monitor.check() is Tier.HIGH and calls == ["high"]
    calls.clear()
    assert monitor.check() is Tier.CRITICAL and sorted(calls) == ["critical", "high"]
    stats = monitor.stats()
    assert (stats.checks, stats.cleanups, stats.last_tier) == (3, 2, Tier.CRITICAL)


def test_process_budget_counts_as_high() -> None:
    monitor = MemoryMonitor(reader=Script(10, rss_mib=700), max_rss_mb=612)
    assert monitor.check() is Tier.HIGH


def test_remove_by_handle_and_failing_callback() -> None:
    monitor = MemoryMonitor(reader=Script(80))
    calls: list[int] = []
    keep = monitor.add_callback(Tier.HIGH, lambda: calls.append(1))
    drop = monitor.add_callback(Tier.HIGH, lambda: calls.append(2))
    monitor.add_callback(Tier.HIGH, lambda: 1 / 0)
    assert monitor.remove_callback(drop) is True
    assert monitor.remove_callback(drop) is False
    monitor.check()
    assert calls == [1]
    assert monitor.stats().callback_errors == 1
    assert keep.tier is Tier.HIGH
    with pytest.raises(ValueError, match=r"use Tier\.HIGH or Tier\.CRITICAL"):
        monitor.add_callback(Tier.NORMAL, print)


def test_statistics_peak_and_trend() -> None:
    script = Script(10, rss_mib=100)
    monitor = MemoryMonitor(reader=script)
    assert monitor.trend_mib_per_min() is None
    for i in range(10):
        script.rss = 100 + i * 0.5  # +0.5 MiB per (fake) second = 30 MiB/min
        monitor.check()
    assert monitor.trend_mib_per_min() == pytest.approx(30.0)
    assert monitor.stats().peak_rss_mib == pytest.approx(104.5)
    assert monitor.trend_mib_per_min(window_seconds=3) == pytest.approx(30.0)


def test_thresholds_validated() -> None:
    with pytest.raises(ValueError, match="need 0 < high_percent <= critical_percent <= 100"):
        MemoryMonitor(high_percent=90, critical_percent=80)
    with pytest.raises(ValueError, match="interval must be positive"):
        MemoryMonitor(interval=0)


@pytest.mark.no_leaks(warmup=1, runs=4)
def test_background_thread_start_stop_idempotent() -> None:
    checked = threading.Event()
    monitor = MemoryMonitor(interval=0.01, reader=Script(10))
    before = threading.active_count()
    monitor.start()
    monitor.start()
    assert threading.active_count() == before + 1
    monitor.add_callback(Tier.HIGH, checked.set)
    deadline = time.monotonic() + 5
    while monitor.stats().checks < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert monitor.stats().checks >= 3
    monitor.stop()
    monitor.stop()
    assert not monitor.running
    assert threading.active_count() == before
    with monitor:
        assert monitor.running
    assert not monitor.running
