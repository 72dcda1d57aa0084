"""Each fault reproduces its leak, measurably, and is off by default.

These check the leak itself with plain counters (list sizes, threads, files,
descriptors, RSS), independent of the memory harness; a separate module
shows the harness flags each fault.
"""

from __future__ import annotations

import gc
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
from reference_app.audio import MicrophoneSource, SyntheticSource
from reference_app.chunking import ChunkedProcessor, ChunkPolicy
from reference_app.config import App, AppConfig
from reference_app.monitor import MemoryMonitor
from reference_app.recorders import FileRecorder, StreamingRecorder
from reference_app.resources import ResourceManager
from reference_app.ringbuffer import BufferTracker, RingBuffer

from reference_app import faults, transcription

PART1_FAULTS = {
    "chunks_kept": "chunked processor",
    "decoder_per_chunk": "transcription engines",
    "temp_wav_kept": "recorders",
    "capture_thread_not_joined": "recorders",
    "monitor_callbacks_kept": "memory monitor",
    "unbounded_queue": "audio sources",
    "tracker_strong_refs": "ring buffer",
    "atexit_per_manager": "resource manager",
}


def test_faults_registered_with_component_and_description() -> None:
    for name, component in PART1_FAULTS.items():
        fault = faults.FAULTS[name]
        assert fault.component == component
        assert len(fault.leaks) > 40


def test_unknown_fault_in_config_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        AppConfig(faults=frozenset({"no_such_fault"}))


def test_fault_switched_on_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(faults.ENV_VAR, "chunks_kept, unbounded_queue")
    assert MicrophoneSource().queue_blocks == 0
    monkeypatch.delenv(faults.ENV_VAR)
    assert MicrophoneSource().queue_blocks == 64


@pytest.fixture
def clean_class_history() -> Iterator[None]:
    # Before as well as after: tests run earlier with the fault switched on
    # by $REFERENCE_APP_FAULTS filled the class-level history.
    ChunkedProcessor._history.clear()
    transcription._DECODER_CACHE.clear()
    yield
    ChunkedProcessor._history.clear()
    transcription._DECODER_CACHE.clear()


def run_chunks(fault: bool, seconds: int = 10) -> None:
    proc = ChunkedProcessor(
        lambda c: "",
        policy=ChunkPolicy(chunk_seconds=1.0, min_chunk_seconds=0.5),
        memory_percent=lambda: 10.0,
        config_faults={"chunks_kept"} if fault else (),
    )
    list(proc.process(np.zeros(16000, np.int16) for _ in range(seconds)))


@pytest.mark.usefixtures("clean_class_history")
def test_chunks_kept() -> None:
    run_chunks(False)
    assert ChunkedProcessor._history == []
    for i in range(1, 4):
        run_chunks(True)  # a new processor each time: the list outlives them all
        assert len(ChunkedProcessor._history) == 10 * i
    assert sum(c.nbytes for c in ChunkedProcessor._history) == 30 * 32000


@pytest.mark.usefixtures("clean_class_history")
def test_decoder_per_chunk(grammar: Path) -> None:
    pcm = np.zeros(4000, np.int16)
    good = transcription.PocketSphinxEngine(grammar=grammar)
    for _ in range(3):
        good.transcribe(pcm)
    assert transcription._DECODER_CACHE == []
    leaky = transcription.PocketSphinxEngine(grammar=grammar, config_faults={"decoder_per_chunk"})
    for _ in range(4):
        leaky.transcribe(pcm)
    # Four live native decoders (~6 MiB each with a grammar). RSS is not asserted:
    # the allocator may first reuse memory that earlier tests freed.
    assert len(transcription._DECODER_CACHE) == 4
    assert len({id(d) for d in transcription._DECODER_CACHE}) == 4
    assert all(d is not leaky._decoder for d in transcription._DECODER_CACHE)


def test_temp_wav_kept() -> None:
    proc = psutil.Process()
    with tempfile.TemporaryDirectory() as d:
        directory = Path(d)
        with ResourceManager() as resources:
            fds0 = proc.num_fds()
            for fault in (False, True, True):
                rec = FileRecorder(
                    SyntheticSource("tone", seconds=0.1),
                    resources,
                    directory=directory,
                    config_faults={"temp_wav_kept"} if fault else (),
                )
                rec.start()
                rec.wait(10)
                rec.stop()
        assert len(list(directory.glob(".recording-*"))) == 2, "two faulty recordings kept"
        leaked = proc.num_fds() - fds0
        assert leaked == 2, "mkstemp's descriptor left open per faulty recording"
        # Tidy up what the fault leaked, so the rest of the session is unaffected.
        for fd in os.listdir("/proc/self/fd"):
            try:
                if os.readlink(f"/proc/self/fd/{fd}").startswith(d):
                    os.close(int(fd))
            except OSError:
                pass


def test_capture_thread_not_joined() -> None:
    before = threading.active_count()
    sources: list[SyntheticSource] = []
    for fault in (False, True, True):
        src = SyntheticSource("tone", seconds=None, realtime=True)
        sources.append(src)
        rec = StreamingRecorder(
            src, capacity_seconds=1.0, config_faults={"capture_thread_not_joined"} if fault else ()
        )
        rec.start()
        time.sleep(0.05)
        rec.stop()
    try:
        assert threading.active_count() == before + 2
    finally:
        for src in sources:
            src.close()  # lets the leaked threads end
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)


def test_monitor_callbacks_kept() -> None:
    monitor = MemoryMonitor(config_faults={"monitor_callbacks_kept"})
    proc = ChunkedProcessor(
        lambda c: "",
        policy=ChunkPolicy(chunk_seconds=2.0),
        memory_percent=lambda: 10.0,
        monitor=monitor,
    )
    for i in range(1, 4):
        list(proc.process([np.zeros(1000, np.int16)]))
        assert monitor.stats().callbacks == i  # one kept per run, each holding its 64 KB buffer
    good = MemoryMonitor()
    proc = ChunkedProcessor(lambda c: "", memory_percent=lambda: 10.0, monitor=good)
    list(proc.process([np.zeros(1000, np.int16)]))
    assert good.stats().callbacks == 0


def test_unbounded_queue() -> None:
    block = np.zeros((1600, 1), np.int16)
    bounded = MicrophoneSource(queue_blocks=8)
    unbounded = MicrophoneSource(queue_blocks=8, config_faults={"unbounded_queue"})
    for _ in range(100):
        bounded._on_audio(block, 1600, None, None)
        unbounded._on_audio(block, 1600, None, None)
    assert bounded.stats().queued == 8 and bounded.stats().overflows == 92
    assert unbounded.stats().queued == 100 and unbounded.stats().overflows == 0


def test_tracker_strong_refs() -> None:
    good = BufferTracker()
    leaky = BufferTracker(config_faults={"tracker_strong_refs"})
    for tracker in (good, leaky):
        for _ in range(5):
            RingBuffer(16000, tracker=tracker).close()
    gc.collect()
    assert good.info().total_bytes == 0
    assert leaky.info().total_bytes == 5 * 64000 and len(leaky._strong) == 5


def test_atexit_per_manager() -> None:
    import weakref

    refs = []
    for fault in (False, True):
        manager = ResourceManager(config_faults={"atexit_per_manager"} if fault else ())
        refs.append(weakref.ref(manager))
        manager.close()
        del manager
    gc.collect()
    assert refs[0]() is None, "a normal manager is freed"
    assert refs[1]() is not None, "the faulty one is held by atexit"
    import atexit

    atexit.unregister(refs[1]().cleanup)  # type: ignore[union-attr]


def test_app_passes_config_faults_to_components(make_app: Callable[..., App]) -> None:
    app = make_app(faults=frozenset({"unbounded_queue", "monitor_callbacks_kept"}))
    assert app.microphone().queue_blocks == 0
    assert app.monitor._keep_removed is True
    assert make_app().microphone().queue_blocks == 64
