"""An eight-hour session in a few seconds: every long-session bound holds together.

The simulated clock moves 30 s per chunk; 960 chunks make eight hours. Each
chunk goes through the transcript cache, the session manager (which stores
it encrypted and checkpoints every 30 simulated minutes), the metrics
collector and a streaming VTT writer; the session is rotated every
simulated hour, so rolling cleanup must keep the store under its quota.

After two simulated hours everything bounded should be full; from then to
the end the Python heap (allocated blocks), open descriptors and threads
must stay flat. The same run with the part 2 faults switched on must
exceed the same bound, so the bound is shown to be able to fail.
"""

from __future__ import annotations

import gc
import hashlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _part2_helpers import FakeClock, FakeMemory, open_fds
from reference_app.cache import AdaptiveMemoryCache, TranscriptCache
from reference_app.metrics import MetricsCollector
from reference_app.sessions import SessionManager
from reference_app.storage import SecureStorage
from reference_app.vtt import VTTReader, VTTWriter

CHUNK_SECONDS = 30.0
HOURS = 8
CHUNKS = int(HOURS * 3600 / CHUNK_SECONDS)
WARMUP_CHUNKS = CHUNKS // 4  # two simulated hours
BLOCK_BOUND = 1500  # allocated blocks the heap may gain after warmup (measured clean: < 100)
PART2_FAULTS = (
    "unbounded_cache",
    "sessions_never_expired",
    "checkpoints_in_memory",
    "metrics_no_retention",
)


@dataclass
class SoakResult:
    block_growth: int
    fd_growth: int
    thread_growth: int
    cache_stats: dict[str, Any]
    metric_samples: int
    max_checkpoint_files: int
    storage_info: dict[str, Any]
    vtt_cues: int
    live_sessions: int


def chunk_audio(index: int) -> bytes:
    # Two chunks in three repeat one of 60 recurring sounds (jingles, silence,
    # stock phrases), so the cache has hits to find; the third is new audio.
    key = index if index % 3 == 0 else index % 60
    return hashlib.sha256(str(key).encode()).digest() * 500


class Pipeline:
    """Cache, then session manager (storing and checkpointing), metrics and VTT: one chunk a step.

    A new session (and VTT file) starts every 120 chunks, an hour of audio.
    """

    def __init__(
        self,
        root: Path,
        clock: Callable[[], float],
        faults: tuple[str, ...],
        *,
        background: bool = False,
        checkpoint_interval: float = 1800.0,
    ) -> None:
        self.root = root
        self.cache = TranscriptCache(
            AdaptiveMemoryCache(
                initial_size=50, min_size=20, max_size=100, memory_reader=FakeMemory(50.0),
                clock=clock, pressure_check_seconds=600, config_faults=faults,
            )
        )  # fmt: skip
        self.metrics = MetricsCollector(
            retention_seconds=3600, max_samples=500, clock=clock, config_faults=faults
        )
        self.store = SecureStorage(root / "t.db", max_storage_mb=0.15, clock=clock)
        self.manager = SessionManager(
            root / "data", storage=self.store, metrics=self.metrics, clock=clock,
            background=background, checkpoint_interval_seconds=checkpoint_interval,
            recent_limit=10, config_faults=faults,
        )  # fmt: skip
        self.vtt_dir = root / "vtt"
        self.vtt_dir.mkdir()
        self.writer: VTTWriter | None = None

    def step(self, index: int) -> None:
        hour, position = divmod(index, 120)
        if position == 0:
            self.end_hour()
            self.manager.start_session({"hour": hour})
            self.writer = VTTWriter(self.vtt_dir / f"hour{hour}.vtt")
        assert self.writer is not None
        text = self.cache.get_or_transcribe(
            chunk_audio(index), lambda: f"chunk {index} " + "spoken words " * 20, engine="fake"
        )
        start = position * CHUNK_SECONDS
        self.manager.record_transcript(text, start=start, end=start + CHUNK_SECONDS)
        self.writer.write_cue(start, start + CHUNK_SECONDS, text)
        if index % 10 == 0:
            self.metrics.collect(cache=self.cache.cache, sessions=self.manager)

    def end_hour(self) -> None:
        if self.writer is not None:
            self.manager.stop_session()
            self.writer.close()
            self.writer = None

    def close(self) -> None:
        try:
            self.end_hour()
        finally:
            self.manager.close()


def run_session(tmp_path: Path, faults: tuple[str, ...]) -> SoakResult:
    clock = FakeClock()
    pipeline = Pipeline(tmp_path, clock, faults)
    baseline: tuple[int, int, int] | None = None
    reading = (0, 0, 0)
    try:
        for index in range(CHUNKS):
            pipeline.step(index)
            clock.advance(CHUNK_SECONDS)
            pipeline.manager.tick()
            # Both readings at the end of an hour, with one VTT file open.
            if index + 1 in (WARMUP_CHUNKS, CHUNKS):
                gc.collect()
                reading = (sys.getallocatedblocks(), open_fds(), threading.active_count())
                baseline = baseline or reading
        pipeline.end_hour()
        assert baseline is not None
        sessions_dir = tmp_path / "data" / "sessions"
        return SoakResult(
            block_growth=reading[0] - baseline[0],
            fd_growth=reading[1] - baseline[1],
            thread_growth=reading[2] - baseline[2],
            cache_stats=pipeline.cache.stats(),
            metric_samples=len(pipeline.metrics),
            max_checkpoint_files=max(len(list(d.iterdir())) for d in sessions_dir.iterdir()),
            storage_info=pipeline.store.get_storage_info(),
            vtt_cues=sum(
                sum(1 for _ in VTTReader(p, strict=True)) for p in pipeline.vtt_dir.iterdir()
            ),
            live_sessions=pipeline.manager.live_count(),
        )
    finally:
        pipeline.close()


def test_an_eight_hour_session_stays_flat(tmp_path: Path) -> None:
    result = run_session(tmp_path, ())
    print(f"\nsoak (clean): {result}", file=sys.stderr)
    assert result.block_growth < BLOCK_BOUND
    assert result.fd_growth == 0 and result.thread_growth == 0
    stats = result.cache_stats
    assert stats["size"] == stats["capacity"] == 100  # grew to max_size, then stopped
    assert stats["hits"] > 0 and stats["evictions"] > 0
    assert result.metric_samples <= 500
    assert result.max_checkpoint_files <= 3
    info = result.storage_info
    assert info["used_bytes"] <= info["quota_bytes"]
    assert info["sessions_cleaned"] > 0  # the quota forced rolling cleanup
    assert result.vtt_cues == CHUNKS
    assert result.live_sessions == 0


def test_the_same_session_with_the_faults_on_breaks_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_session(tmp_path, PART2_FAULTS)
    print(f"\nsoak ({', '.join(PART2_FAULTS)}): {result}", file=sys.stderr)
    assert result.block_growth > BLOCK_BOUND
    assert result.cache_stats["size"] == 40 + CHUNKS // 3  # every distinct chunk, never evicted
    assert result.metric_samples > 500


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    pipeline = Pipeline(tmp_path, time.time, (), background=True, checkpoint_interval=5.0)
    yield pipeline
    pipeline.close()


@pytest.mark.soak("10m", interval="10s", max_growth_rate="2 MiB/h", warmup="10%")
def test_the_pipeline_on_the_real_clock(soak: Any, pipeline: Pipeline) -> None:
    """The same pipeline in real time, with the checkpoint thread running: a soak run.

    Skipped unless soak runs are asked for (``--memwatch-soak``); the duration
    can be changed with ``--memwatch-soak-duration``. About 20 chunks a
    second: a new session every six seconds, a checkpoint every five.
    """
    for tick in soak:
        pipeline.step(tick.index)
        soak.sleep(0.05)
    assert pipeline.manager.last_checkpoint_error is None
    assert len(pipeline.metrics) <= 500
