"""Chunked processor: bounded chunks, seed 003's memory tiers with simulated pressure."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from reference_app.chunking import ChunkedProcessor, ChunkPolicy
from reference_app.monitor import MemoryMonitor, MemoryReading, Tier


def pcm_seconds(seconds: float, rate: int = 1000) -> list[np.ndarray]:
    """Numbered samples in uneven blocks, so reassembly errors show."""
    data = (np.arange(round(seconds * rate)) % 30000).astype(np.int16)
    return np.array_split(data, max(1, len(data) // 333))


class Pressure:
    """A memory reader replaying a script of percentages (then repeating the last)."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return self.values.pop(0) if len(self.values) > 1 else self.values[0]


def run(
    policy: ChunkPolicy, pressure: Pressure, seconds: float, **kw: Any
) -> tuple[ChunkedProcessor, list[int], list[float], np.ndarray]:
    got: list[np.ndarray] = []
    sleeps: list[float] = []

    def handler(chunk: np.ndarray) -> str:
        got.append(chunk.copy())
        return f"{len(chunk)}"

    proc = ChunkedProcessor(
        handler, sample_rate=1000, policy=policy, memory_percent=pressure, sleep=sleeps.append, **kw
    )
    results = list(proc.process(pcm_seconds(seconds)))
    assert [r.text for r in results] == [str(len(c)) for c in got]
    return proc, [len(c) for c in got], sleeps, np.concatenate(got)


def test_normal_memory_fixed_chunks_no_sample_lost() -> None:
    proc, sizes, sleeps, data = run(
        ChunkPolicy(chunk_seconds=2.0, min_chunk_seconds=0.5), Pressure(40.0), 7.3
    )
    assert sizes == [2000, 2000, 2000, 1300]
    np.testing.assert_array_equal(data, np.concatenate(pcm_seconds(7.3)))
    assert proc.stats.cleanups == 0 and sleeps == []


def test_high_tier_halves_chunks_down_to_minimum_then_recovers() -> None:
    pressure = Pressure(75, 75, 75, 75, 40, 40, 40)
    proc, sizes, sleeps, data = run(
        ChunkPolicy(chunk_seconds=4.0, min_chunk_seconds=1.0), pressure, 16.0
    )
    assert sizes[:6] == [2000, 1000, 1000, 1000, 2000, 4000]
    assert len(data) == 16000
    assert proc.stats.cleanups == 4 and sleeps == []
    assert proc.stats.smallest_chunk_seconds == 1.0


def test_critical_tier_pauses_for_cleanup() -> None:
    cleaned: list[int] = []
    pressure = Pressure(90, 88, 50)
    proc, sizes, sleeps, _ = run(
        ChunkPolicy(chunk_seconds=2.0, min_chunk_seconds=0.5, pause_seconds=0.25),
        pressure,
        4.0,
        cleanup_callbacks=[lambda: cleaned.append(1)],
    )
    assert sleeps == [0.25]
    assert sizes[0] == 1000
    assert proc.stats.pauses == 1 and cleaned == [1]
    assert proc.stats.peak_percent == 90


def test_thresholds_are_configurable() -> None:
    _, sizes, _, _ = run(
        ChunkPolicy(chunk_seconds=2.0, min_chunk_seconds=0.5, high_percent=30, critical_percent=95),
        Pressure(40),
        3.0,
    )
    assert sizes[0] == 1000  # 40 % counts as high with a 30 % threshold
    with pytest.raises(ValueError, match="need 0 < high_percent <= critical_percent"):
        ChunkPolicy(high_percent=90, critical_percent=80)
    with pytest.raises(ValueError, match="need 0 < min_chunk_seconds <= chunk_seconds"):
        ChunkPolicy(chunk_seconds=1, min_chunk_seconds=2)


def test_monitor_pressure_between_chunks_shrinks_next_chunk() -> None:
    readings = iter([MemoryReading(0.0, 1, 72.0, 1)] * 5)
    monitor = MemoryMonitor(reader=lambda: next(readings))
    sizes: list[int] = []

    def handler(chunk: np.ndarray) -> str:
        sizes.append(len(chunk))
        if len(sizes) == 1:
            assert monitor.check() is Tier.HIGH  # the monitor thread's view, mid-run
        return ""

    proc = ChunkedProcessor(
        handler,
        sample_rate=1000,
        policy=ChunkPolicy(2.0, 0.5),
        memory_percent=lambda: 10.0,
        monitor=monitor,
    )
    assert monitor.stats().callbacks == 0
    blocks: Iterator[np.ndarray] = iter(pcm_seconds(5.0))
    list(proc.process(blocks))
    assert sizes[:2] == [2000, 1000]
    assert monitor.stats().callbacks == 0, "the run's callback is removed when it ends"


@pytest.mark.max_growth("512 KiB", warmup=1, runs=3)
def test_long_input_in_bounded_memory() -> None:
    """Ten minutes of 16 kHz audio through 5 s chunks leaves nothing behind."""
    block = np.zeros(16000, dtype=np.int16)
    proc = ChunkedProcessor(
        lambda c: "", policy=ChunkPolicy(chunk_seconds=5.0), memory_percent=lambda: 10.0
    )
    results = list(proc.process(block for _ in range(600)))
    assert len(results) == 120 and proc.stats.frames == 600 * 16000
