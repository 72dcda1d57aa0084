"""Chunked processing of audio of any length in bounded memory (seed 003).

:class:`ChunkedProcessor` gathers a stream of 16-bit mono blocks into chunks
and hands each chunk to a handler (a transcription engine). Only one chunk
buffer exists per run, allocated once at the largest chunk length, so a
two-hour file costs the same memory as a two-minute one.

Before each chunk it reads memory (the reader is injected, so tests can
simulate pressure) and applies seed 003's tiers:

- below ``high_percent`` (70 %): normal; a chunk length that was cut under
  pressure doubles back towards the configured one;
- from ``high_percent``: forced cleanup (several ``gc.collect()`` passes plus
  the registered cleanup callbacks) and the chunk length is halved, down to
  ``min_chunk_seconds``;
- from ``critical_percent`` (85 %): the same, plus a pause of
  ``pause_seconds`` for the cleanup to take effect, after which memory is read
  and logged again.

If a :class:`~reference_app.monitor.MemoryMonitor` is given, the run also
registers a HIGH-tier callback with it for its duration, so pressure the
monitor's thread sees between chunks shrinks the next chunk too.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import psutil

from reference_app import faults
from reference_app.monitor import MemoryMonitor, Tier

log = logging.getLogger(__name__)

COMPONENT = "chunked processor"
faults.register(
    "chunks_kept",
    COMPONENT,
    "every processed chunk is copied into a list shared by all processors (a class "
    "attribute) and never cleared: memory grows by the audio processed, 32 KB per second",
)


def system_memory_percent() -> float:
    """System memory in use, percent (the default memory reader)."""
    return float(psutil.virtual_memory().percent)


@dataclass(frozen=True)
class ChunkPolicy:
    """How long chunks are and how they react to memory pressure."""

    chunk_seconds: float = 30.0
    min_chunk_seconds: float = 2.0
    high_percent: float = 70.0
    critical_percent: float = 85.0
    pause_seconds: float = 1.0
    cleanup_passes: int = 3

    def __post_init__(self) -> None:
        if not 0 < self.min_chunk_seconds <= self.chunk_seconds:
            raise ValueError(
                f"need 0 < min_chunk_seconds <= chunk_seconds, "
                f"got {self.min_chunk_seconds} and {self.chunk_seconds}"
            )
        if not 0 < self.high_percent <= self.critical_percent <= 100:
            raise ValueError(
                f"need 0 < high_percent <= critical_percent <= 100, "
                f"got {self.high_percent} and {self.critical_percent}"
            )


@dataclass(frozen=True)
class ChunkResult:
    index: int
    start_seconds: float
    seconds: float
    text: str
    memory_percent: float
    tier: Tier


@dataclass
class ChunkStats:
    """Totals over every run of one processor."""

    chunks: int = 0
    frames: int = 0
    cleanups: int = 0
    pauses: int = 0
    peak_percent: float = 0.0
    smallest_chunk_seconds: float | None = None
    chunk_seconds: list[float] = field(default_factory=list)  # of the latest run


class _Run:
    """State of one ``process()`` call; holds the run's chunk buffer."""

    def __init__(self, max_frames: int, chunk_frames: int) -> None:
        self.buffer = np.empty(max_frames, dtype=np.int16)
        self.chunk_frames = chunk_frames
        self.filled = 0
        self.shrink_requested = False

    def request_shrink(self) -> None:
        self.shrink_requested = True


class ChunkedProcessor:
    """Runs ``handler`` over fixed-size chunks of a PCM stream, adapting to memory.

    Example::

        proc = ChunkedProcessor(engine.transcribe, policy=ChunkPolicy(chunk_seconds=20))
        for result in proc.process(pcm_blocks):
            print(result.text)
    """

    # Where the chunks_kept fault puts chunks: a class attribute, shared by every
    # instance, the way an accidental module-level "debug history" leaks.
    _history: ClassVar[list[np.ndarray]] = []

    def __init__(
        self,
        handler: Callable[[np.ndarray], str],
        *,
        sample_rate: int = 16_000,
        policy: ChunkPolicy | None = None,
        memory_percent: Callable[[], float] = system_memory_percent,
        sleep: Callable[[float], None] = time.sleep,
        monitor: MemoryMonitor | None = None,
        cleanup_callbacks: Sequence[Callable[[], object]] = (),
        config_faults: Iterable[str] = (),
    ) -> None:
        self.handler = handler
        self.sample_rate = sample_rate
        self.policy = policy or ChunkPolicy()
        self._memory_percent = memory_percent
        self._sleep = sleep
        self._monitor = monitor
        self._cleanup_callbacks = list(cleanup_callbacks)
        self._keep_chunks = faults.is_enabled("chunks_kept", config_faults)
        self.stats = ChunkStats()

    def _frames(self, seconds: float) -> int:
        return max(1, round(seconds * self.sample_rate))

    def process(self, blocks: Iterable[np.ndarray]) -> Iterator[ChunkResult]:
        """Yield one :class:`ChunkResult` per chunk of ``blocks`` (int16 mono)."""
        max_frames = self._frames(self.policy.chunk_seconds)
        run = _Run(max_frames, max_frames)
        handle = None
        if self._monitor is not None:
            handle = self._monitor.add_callback(Tier.HIGH, run.request_shrink, "chunk shrink")
        self.stats.chunk_seconds = []
        index = 0
        start_frame = 0
        try:
            percent, tier = self._adapt(run)
            for block in blocks:
                data = np.asarray(block, dtype=np.int16).ravel()
                pos = 0
                while pos < len(data):
                    take = min(run.chunk_frames - run.filled, len(data) - pos)
                    run.buffer[run.filled : run.filled + take] = data[pos : pos + take]
                    run.filled += take
                    pos += take
                    if run.filled == run.chunk_frames:
                        yield self._emit(run, index, start_frame, percent, tier)
                        index += 1
                        start_frame += run.filled
                        run.filled = 0
                        percent, tier = self._adapt(run)
            if run.filled:
                yield self._emit(run, index, start_frame, percent, tier)
                run.filled = 0
        finally:
            if handle is not None and self._monitor is not None:
                self._monitor.remove_callback(handle)

    def _emit(self, run: _Run, index: int, start: int, percent: float, tier: Tier) -> ChunkResult:
        chunk = run.buffer[: run.filled]
        if self._keep_chunks:
            ChunkedProcessor._history.append(chunk.copy())
        text = self.handler(chunk)
        seconds = run.filled / self.sample_rate
        self.stats.chunks += 1
        self.stats.frames += run.filled
        self.stats.chunk_seconds.append(seconds)
        return ChunkResult(index, start / self.sample_rate, seconds, text, percent, tier)

    def _adapt(self, run: _Run) -> tuple[float, Tier]:
        """Read memory, apply the tier's action, set the next chunk length."""
        p = self.policy
        percent = self._memory_percent()
        self.stats.peak_percent = max(self.stats.peak_percent, percent)
        min_frames = self._frames(p.min_chunk_seconds)
        if percent >= p.critical_percent:
            tier = Tier.CRITICAL
            log.error(
                "critical memory (%.1f %%): pausing %.1f s for cleanup", percent, p.pause_seconds
            )
            self.cleanup()
            self.stats.pauses += 1
            self._sleep(p.pause_seconds)
            after = self._memory_percent()
            log.info("memory after cleanup: %.1f %%", after)
            run.chunk_frames = max(min_frames, run.chunk_frames // 2)
        elif percent >= p.high_percent or run.shrink_requested:
            tier = Tier.HIGH
            log.warning("high memory (%.1f %%): cleanup and smaller chunks", percent)
            self.cleanup()
            run.chunk_frames = max(min_frames, run.chunk_frames // 2)
        else:
            tier = Tier.NORMAL
            run.chunk_frames = min(len(run.buffer), run.chunk_frames * 2)
        run.shrink_requested = False
        seconds = run.chunk_frames / self.sample_rate
        if self.stats.smallest_chunk_seconds is None or seconds < self.stats.smallest_chunk_seconds:
            self.stats.smallest_chunk_seconds = seconds
        return percent, tier

    def cleanup(self) -> None:
        """Forced cleanup: the registered callbacks, then several gc passes.

        Several passes because objects freed by one pass (e.g. by a callback
        dropping a cache) can make whole cycles unreachable for the next.
        """
        self.stats.cleanups += 1
        for fn in self._cleanup_callbacks:
            try:
                fn()
            except Exception:
                log.exception("cleanup callback failed")
        for _ in range(self.policy.cleanup_passes):
            gc.collect()
