"""Unit tests of the metrics collector and its retention window."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from _part2_helpers import FakeClock, FakeMemory
from reference_app.cache import AdaptiveMemoryCache
from reference_app.metrics import MetricSample, MetricsCollector, process_probe
from reference_app.sessions import SessionManager
from reference_app.storage import SecureStorage


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


def constant_probe() -> dict[str, float]:
    return {"memory.rss_mb": 100.0}


def test_samples_older_than_the_window_are_dropped(clock: FakeClock) -> None:
    metrics = MetricsCollector(retention_seconds=60, clock=clock, probe=None)
    metrics.record("a", 1)
    clock.advance(30)
    metrics.record("a", 2)
    clock.advance(31)  # the first sample is now 61 s old
    metrics.record("a", 3)
    assert [s.value for s in metrics.samples("a")] == [2.0, 3.0]
    clock.advance(100)
    assert metrics.prune() == 2
    assert len(metrics) == 0
    assert metrics.recorded == 3


def test_more_than_a_day_old_is_dropped_too(clock: FakeClock) -> None:
    """The seed compared timedelta.seconds, which wraps every day."""
    metrics = MetricsCollector(retention_seconds=3600, clock=clock, probe=None)
    metrics.record("a", 1)
    clock.advance(86_400 + 10)  # .seconds of this would be 10
    assert metrics.prune() == 1


def test_the_count_is_capped_whatever_the_clock_says(clock: FakeClock) -> None:
    metrics = MetricsCollector(retention_seconds=1e9, max_samples=100, clock=clock, probe=None)
    for i in range(1000):
        metrics.record("a", i)
    assert len(metrics) == 100
    assert metrics.samples()[0].value == 900.0


def test_query_by_name_and_time(clock: FakeClock) -> None:
    metrics = MetricsCollector(clock=clock, probe=None)
    metrics.record("a", 1)
    clock.advance(10)
    metrics.record("b", 2)
    metrics.record("a", 3)
    assert metrics.samples("a") == [MetricSample(1000.0, "a", 1.0), MetricSample(1010.0, "a", 3.0)]
    assert [s.name for s in metrics.samples(since=1005)] == ["b", "a"]
    assert metrics.latest("a") == MetricSample(1010.0, "a", 3.0)
    assert metrics.latest("missing") is None


def test_summary_per_metric(clock: FakeClock) -> None:
    metrics = MetricsCollector(clock=clock, probe=None)
    for v in (3, 1, 2):
        metrics.record("x", v)
    assert metrics.summary() == {
        "x": {"count": 3, "min": 1.0, "max": 3.0, "latest": 2.0, "mean": 2.0}
    }


def test_export_is_json(clock: FakeClock) -> None:
    metrics = MetricsCollector(retention_seconds=10, max_samples=5, clock=clock, probe=None)
    metrics.record("x", 1.5)
    data = json.loads(json.dumps(metrics.export()))
    assert data == {
        "retention_seconds": 10.0,
        "max_samples": 5,
        "recorded": 1,
        "samples": [{"timestamp": 1000.0, "name": "x", "value": 1.5}],
    }


def test_collect_reads_the_process_and_components(tmp_path: Path, clock: FakeClock) -> None:
    cache: AdaptiveMemoryCache[str, str] = AdaptiveMemoryCache(
        initial_size=10, min_size=5, max_size=20, memory_reader=FakeMemory()
    )
    cache.put("k", "v")
    cache.get("k")
    store = SecureStorage(tmp_path / "t.db")
    with SessionManager(tmp_path / "data", background=False) as manager:
        manager.start_session()
        metrics = MetricsCollector(clock=clock)
        values = metrics.collect(cache=cache, sessions=manager, storage=store)
    assert values["cache.entries"] == 1.0 and values["cache.hit_rate"] == 1.0
    assert values["sessions.active"] == 1.0
    assert values["storage.used_bytes"] > 0
    assert 1 < values["memory.rss_mb"] < 100_000
    assert 0 < values["memory.system_percent"] <= 100
    assert values["process.open_fds"] >= 3 and values["process.threads"] >= 1
    assert values["python.allocated_blocks"] > 1000
    assert {s.name for s in metrics.samples()} == set(values)
    assert all(s.timestamp == 1000.0 for s in metrics.samples())


def test_process_probe_is_cheap() -> None:
    process_probe()
    started = time.perf_counter()
    for _ in range(20):
        process_probe()
    assert (time.perf_counter() - started) / 20 < 0.05


def test_background_collection_starts_and_stops() -> None:
    metrics = MetricsCollector(probe=constant_probe)
    metrics.start(interval=0.02)
    with pytest.raises(RuntimeError, match="already running"):
        metrics.start(interval=0.02)
    deadline = time.monotonic() + 5
    while len(metrics) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    metrics.stop()
    count = len(metrics)
    assert count >= 3
    time.sleep(0.1)
    assert len(metrics) == count  # really stopped


def test_a_failing_probe_does_not_stop_background_collection() -> None:
    calls = {"n": 0}

    def flaky() -> dict[str, float]:
        calls["n"] += 1
        if calls["n"] % 2:
            raise OSError("probe failed")
        return {"x": 1.0}

    with MetricsCollector(probe=flaky) as metrics:
        metrics.start(interval=0.01)
        deadline = time.monotonic() + 5
        while len(metrics) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert len(metrics) >= 2
    assert metrics.last_error == "OSError: probe failed"


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        MetricsCollector(retention_seconds=0)
    with pytest.raises(ValueError):
        MetricsCollector(max_samples=0)


@pytest.fixture(scope="module")
def long_lived_metrics() -> MetricsCollector:
    return MetricsCollector(retention_seconds=3600, max_samples=300, probe=None)


@pytest.mark.no_leaks(warmup=2, runs=4)
def test_collecting_for_hours_stays_within_the_window(long_lived_metrics: MetricsCollector) -> None:
    for i in range(300):
        long_lived_metrics.record("chunk.seconds", i * 0.01)
    assert len(long_lived_metrics) == 300


def test_metrics_no_retention_fault_keeps_every_sample(clock: FakeClock) -> None:
    metrics = MetricsCollector(
        retention_seconds=10, max_samples=50, clock=clock, probe=None,
        config_faults=["metrics_no_retention"],
    )  # fmt: skip
    for i in range(500):
        metrics.record("a", i)
        clock.advance(1)
    assert len(metrics) == 500
    assert metrics.prune() == 0
