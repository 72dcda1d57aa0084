"""Small test modules that exercise one component repeatedly, one per fault.

``test_faults_flagged.py`` writes each module to a temporary directory and
runs it under pytest-memwatch in a child process, once with the fault on
(memwatch must fail it) and once with it off (memwatch must pass it). The
modules use the app as any user would: long-lived components come from
module-scoped fixtures, which memwatch keeps alive between the repeated runs
of a ``no_leaks`` test, and each run does one unit of the component's work.
So a bounded component reaches its steady state during warmup and stops
growing, while a faulty one grows on every run.
"""

from __future__ import annotations

SCENARIOS: dict[str, str] = {}

_HEADER = """\
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

COUNTER = itertools.count()
"""

# -- part 2 components ---------------------------------------------------------------

SCENARIOS["unbounded_cache"] = """
from reference_app.cache import TranscriptCache, AdaptiveMemoryCache


@pytest.fixture(scope="module")
def cache():
    # Memory pressure is kept out of the picture: a fixed low reading and no
    # timed checks, so capacity stays 50 and the cache is full after one run.
    return TranscriptCache(AdaptiveMemoryCache(
        initial_size=50, min_size=10, max_size=100, memory_reader=lambda: 10.0,
        pressure_check_seconds=1e12,
    ))


@pytest.mark.no_leaks(warmup=2, runs=4)
def test_transcribe_new_chunks(cache):
    for _ in range(100):
        chunk = np.full(400, next(COUNTER), dtype=np.int32)  # new audio every time
        text = cache.get_or_transcribe(chunk, lambda: "words " * 40, engine="fake")
        assert text.startswith("words")
    assert cache.stats()["size"] >= 50
"""

SCENARIOS["sqlite_connections_kept"] = """
from reference_app.storage import SecureStorage


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return SecureStorage(tmp_path_factory.mktemp("db") / "t.db", key=b"k" * 32)


@pytest.mark.no_leaks(warmup=2, runs=4)
def test_store_and_read_transcripts(store):
    # Each run removes what it stored: with a database that grew run after
    # run, SQLite's own allocation pattern would drift with its size.
    session = f"s{next(COUNTER)}"
    store.open_session(session)
    for _ in range(3):
        row = store.add_transcript(session, f"segment {next(COUNTER)}")
        assert store.get_transcript(row).text.startswith("segment")
    store.close_session(session)
    assert store.delete_session(session) == 3
"""

SCENARIOS["sessions_never_expired"] = """
from reference_app.sessions import SessionManager


@pytest.fixture(scope="module")
def manager(tmp_path_factory):
    with SessionManager(tmp_path_factory.mktemp("data"), background=False) as manager:
        yield manager


@pytest.mark.no_leaks(warmup=2, runs=4)
def test_short_sessions(manager):
    for _ in range(2):
        manager.start_session({"engine": "fake", "n": next(COUNTER)})
        manager.record_transcript("hello world " * 10, audio_seconds=2.0)
        report = manager.stop_session()
        assert report["transcriptions"] == 1
    assert manager.live_count() == 0
"""

SCENARIOS["checkpoints_in_memory"] = """
from reference_app.sessions import SessionManager


@pytest.fixture(scope="module")
def manager(tmp_path_factory):
    # recent_limit=2: the session's window of recent text is full after the
    # first run, so the clean runs measure steady state, not a filling deque.
    data = tmp_path_factory.mktemp("data")
    with SessionManager(data, background=False, recent_limit=2) as manager:
        manager.start_session({"engine": "fake"})
        yield manager


@pytest.mark.no_leaks(warmup=2, runs=4)
def test_record_and_checkpoint(manager):
    for _ in range(2):
        manager.record_transcript(f"segment {next(COUNTER)} " + "word " * 30)
        assert manager.checkpoint().exists()
"""

SCENARIOS["metrics_no_retention"] = """
from reference_app.metrics import MetricsCollector


@pytest.fixture(scope="module")
def metrics():
    return MetricsCollector(retention_seconds=3600, max_samples=200, probe=None)


@pytest.mark.no_leaks(warmup=2, runs=4)
def test_record_samples(metrics):
    for _ in range(200):
        metrics.record("chunk.seconds", next(COUNTER) * 0.001)
    assert metrics.latest("chunk.seconds") is not None
"""

SCENARIOS["vtt_reader_keeps_cues"] = """
from reference_app.vtt import VTTReader, VTTWriter


@pytest.fixture(scope="module")
def subtitles(tmp_path_factory):
    path = tmp_path_factory.mktemp("vtt") / "talk.vtt"
    with VTTWriter(path) as writer:
        for i in range(100):
            writer.write_cue(i * 2.0, i * 2.0 + 1.5, f"cue {i}: some words that were said")
    return path


@pytest.mark.no_leaks(warmup=2, runs=4)
def test_read_subtitles(subtitles):
    reader = VTTReader(subtitles, strict=True)
    assert sum(1 for _ in reader) == 100
"""

# -- part 1 components ---------------------------------------------------------------

SCENARIOS["chunks_kept"] = """
from reference_app.chunking import ChunkedProcessor, ChunkPolicy


@pytest.mark.no_leaks(warmup=2, runs=4)
def test_process_three_seconds():
    processor = ChunkedProcessor(
        lambda chunk: "",
        policy=ChunkPolicy(chunk_seconds=1.0, min_chunk_seconds=1.0),
        memory_percent=lambda: 10.0,
    )
    results = list(processor.process(np.zeros(16000, np.int16) for _ in range(3)))
    assert len(results) == 3
"""

SCENARIOS["decoder_per_chunk"] = """
from reference_app.transcription import PocketSphinxEngine

GRAMMAR = Path(__GRAMMAR__)


@pytest.fixture(scope="module")
def engine():
    engine = PocketSphinxEngine(grammar=GRAMMAR)
    yield engine
    engine.close()


@pytest.mark.no_leaks(warmup=1, runs=4)
def test_transcribe_silence(engine):
    assert isinstance(engine.transcribe(np.zeros(4000, np.int16)), str)
"""

SCENARIOS["temp_wav_kept"] = """
from reference_app.audio import SyntheticSource
from reference_app.recorders import FileRecorder
from reference_app.resources import ResourceManager


@pytest.fixture(scope="module")
def resources(tmp_path_factory):
    with ResourceManager() as resources:
        yield resources, tmp_path_factory.mktemp("rec")


@pytest.mark.no_leaks(warmup=2, runs=4)
def test_record_to_a_temp_wav(resources):
    manager, directory = resources
    recorder = FileRecorder(SyntheticSource("tone", seconds=0.1), manager, directory=directory)
    recorder.start()
    recorder.wait(10)
    recording = recorder.stop()
    assert recording.frames > 0
"""

SCENARIOS["capture_thread_not_joined"] = """
import time

from reference_app.audio import SyntheticSource
from reference_app.recorders import StreamingRecorder


@pytest.mark.no_leaks(warmup=1, runs=4)
def test_short_live_recording():
    # Capture threads are daemons, so threads the fault leaves running do not
    # keep the child from exiting.
    source = SyntheticSource("tone", seconds=None, realtime=True)
    recorder = StreamingRecorder(source, capacity_seconds=1.0)
    recorder.start()
    time.sleep(0.05)
    recorder.stop()
"""

SCENARIOS["monitor_callbacks_kept"] = """
from reference_app.chunking import ChunkedProcessor, ChunkPolicy
from reference_app.monitor import MemoryMonitor


@pytest.fixture(scope="module")
def monitor():
    monitor = MemoryMonitor()
    yield monitor
    monitor.stop()


@pytest.mark.no_leaks(warmup=2, runs=4)
def test_process_with_a_monitor(monitor):
    processor = ChunkedProcessor(
        lambda chunk: "", policy=ChunkPolicy(chunk_seconds=2.0), memory_percent=lambda: 10.0,
        monitor=monitor,
    )
    assert len(list(processor.process([np.zeros(1000, np.int16)]))) == 1
"""

SCENARIOS["unbounded_queue"] = """
from reference_app.audio import MicrophoneSource


@pytest.fixture(scope="module")
def microphone():
    return MicrophoneSource(queue_blocks=8)


@pytest.mark.no_leaks(warmup=2, runs=4)
def test_device_faster_than_consumer(microphone):
    # PortAudio's callback delivers 50 blocks while nobody reads: a bounded
    # queue drops (and counts) the surplus.
    for _ in range(50):
        microphone._on_audio(np.zeros((1600, 1), np.int16), 1600, None, None)
    assert microphone.stats().queued >= 8
"""

SCENARIOS["tracker_strong_refs"] = """
from reference_app.ringbuffer import BufferTracker, RingBuffer


@pytest.fixture(scope="module")
def tracker():
    return BufferTracker()


@pytest.mark.no_leaks(warmup=2, runs=4)
def test_open_and_close_a_buffer(tracker):
    buffer = RingBuffer(16000, tracker=tracker)
    buffer.close()
"""

SCENARIOS["atexit_per_manager"] = """
from reference_app.resources import ResourceManager


@pytest.mark.no_leaks(warmup=2, runs=4)
def test_manager_lifecycle():
    manager = ResourceManager()
    manager.close()
"""


# -- the streaming service -------------------------------------------------------------

SCENARIOS["pool_idle_never_closed"] = """
import sqlite3

from reference_app.service.pool import ConnectionPool


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


CLOCK = Clock()


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    path = tmp_path_factory.mktemp("db") / "t.db"
    return ConnectionPool(
        lambda: sqlite3.connect(path, check_same_thread=False),
        max_size=2, idle_ttl=300, clock=CLOCK,
    )


@pytest.mark.no_leaks(warmup=2, runs=4)
def test_busy_then_idle(pool):
    with pool.connection() as a, pool.connection() as b:
        a.execute("SELECT 1")
        b.execute("SELECT 1")
    CLOCK.now += 301  # both idle past their TTL
    assert pool.reap_idle() == 2
    assert pool.size == 0
"""

SCENARIOS["work_orders_never_archived"] = """
import asyncio

from reference_app.service.workqueue import FINAL, WorkOrder, WorkOrderQueue


@pytest.fixture(scope="module")
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def queue(loop):
    async def make():
        return WorkOrderQueue(64)
    return loop.run_until_complete(make())


@pytest.mark.no_leaks(warmup=2, runs=4)
def test_serve_twenty_orders(loop, queue):
    async def serve():
        futures = [queue.submit(WorkOrder("s", FINAL, np.zeros(1600, np.int16)))
                   for _ in range(20)]
        for _ in range(20):
            order = await queue.next()
            queue.complete(order, {"text": "turn off the radio"})
        return [await f for f in futures]
    assert len(loop.run_until_complete(serve())) == 20
    assert queue.active_orders == {}
"""

SCENARIOS["memory_manager_never_releases"] = """
from reference_app.service.memory import MemoryManager


@pytest.fixture(scope="module")
def manager():
    return MemoryManager(64 * 1024 * 1024)


@pytest.mark.no_leaks(warmup=2, runs=4)
def test_register_and_release(manager):
    for _ in range(50):
        buffer = bytearray(2048)  # what the session's release callback frees
        name = f"session:{next(COUNTER)}"
        manager.register(name, "session", len(buffer), release=buffer.clear)
        assert manager.release(name)
    assert manager.total_memory_used == 0
"""

SCENARIOS["handler_keeps_chunks"] = """
import json

from reference_app.service.app import ServiceConfig, ServiceThread
from websockets.sync.client import connect


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    # One long session, as a client streaming a long meeting: each run sends
    # one more second of audio to it.
    config = ServiceConfig(
        data_dir=tmp_path_factory.mktemp("data"), port=0, grammar=Path(__GRAMMAR__),
        metrics_interval=3600.0, partial_seconds=0.0,
    )
    with ServiceThread(config) as running, connect(running.url) as ws:
        ws.send(json.dumps({"type": "start", "format": "pcm16", "sample_rate": 16000}))
        assert json.loads(ws.recv(30))["type"] == "started"
        yield ws


@pytest.mark.no_leaks(warmup=2, runs=4)
def test_stream_one_more_second(session):
    for _ in range(10):
        session.send(bytes(3200))  # 100 ms of silence
    # Frames are handled in order: once the status arrives, all ten were taken in.
    session.send(json.dumps({"type": "status"}))
    assert json.loads(session.recv(30))["type"] == "status"
"""


def module_source(fault: str, *, grammar: str) -> str:
    """The full source of the scenario module for ``fault``.

    ``grammar`` is the JSGF file the pocketsphinx scenario decodes with: a
    grammar keeps each decoder to a few MiB instead of ~90 MiB.
    """
    return _HEADER + SCENARIOS[fault].replace("__GRAMMAR__", repr(grammar))
