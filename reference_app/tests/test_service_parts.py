"""The service's parts on their own: connection pool, work-order queue, memory manager,
incoming audio streams, and the store taking its connections from the pool."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_app.audio import AudioError
from reference_app.service.audio_stream import PcmStream, UtteranceCutter, WavStream
from reference_app.service.memory import MemoryBudgetError, MemoryManager
from reference_app.service.pool import ConnectionPool, PoolClosedError, PoolExhaustedError
from reference_app.service.workqueue import (
    FINAL,
    PARTIAL,
    OrderArchive,
    QueueClosedError,
    QueueFullError,
    WorkOrder,
    WorkOrderQueue,
)
from reference_app.storage import SecureStorage
from service_helpers import pcm16


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Conn:
    made = 0

    def __init__(self) -> None:
        Conn.made += 1
        self.n = Conn.made
        self.closed = False

    def close(self) -> None:
        self.closed = True


# -- connection pool ----------------------------------------------------------------------


def test_pool_reuses_connections_up_to_its_size() -> None:
    pool: ConnectionPool[Conn] = ConnectionPool(Conn, max_size=2)
    with pool.connection() as a:
        pass
    with pool.connection() as b:
        assert b is a
    with pool.connection() as c, pool.connection() as d:
        assert c is not d
    assert pool.stats()["created"] == 2 and pool.size == 2


def test_exhausted_pool_says_what_to_change() -> None:
    pool: ConnectionPool[Conn] = ConnectionPool(Conn, max_size=1, acquire_timeout=0.05, name="t.db")
    with pool.connection(), pytest.raises(PoolExhaustedError) as info, pool.connection():
        pass
    assert str(info.value) == (
        "connection pool exhausted: all 1 connections to t.db stayed in use for 0.05 s; "
        "raise the pool size (--pool-size) or lower the number of workers (--workers)"
    )
    assert pool.stats()["exhausted"] == 1


def test_a_waiting_caller_gets_the_connection_given_back() -> None:
    pool: ConnectionPool[Conn] = ConnectionPool(Conn, max_size=1, acquire_timeout=5)
    got: list[Conn] = []
    with pool.connection() as first:
        thread = threading.Thread(target=lambda: got.append(pool.connection().__enter__()))
        thread.start()
        thread.join(0.1)
        assert thread.is_alive()  # waiting
    thread.join(5)
    assert got == [first] and pool.stats()["waits"] == 1


def test_idle_connections_are_closed_after_their_ttl() -> None:
    clock = Clock()
    pool: ConnectionPool[Conn] = ConnectionPool(Conn, max_size=3, idle_ttl=300, clock=clock)
    with pool.connection() as a, pool.connection() as b:
        pass
    clock.now += 200
    with pool.connection() as again:
        assert again is a  # the most recently returned first (a left its block last)
    clock.now += 150  # b idle 350 s, a 150 s
    assert pool.reap_idle() == 1
    assert b.closed and not a.closed and pool.size == 1


def test_close_closes_idle_connections_now_and_busy_ones_on_return() -> None:
    pool: ConnectionPool[Conn] = ConnectionPool(Conn, max_size=2)
    with pool.connection() as busy:
        with pool.connection() as idle:
            pass
        pool.close()
        assert idle.closed and not busy.closed
    assert busy.closed and pool.size == 0
    with pytest.raises(PoolClosedError, match="is closed"), pool.connection():
        pass


def test_a_connection_used_in_a_failing_block_is_not_reused() -> None:
    pool: ConnectionPool[Conn] = ConnectionPool(Conn, max_size=1)
    with pytest.raises(ZeroDivisionError), pool.connection() as broken:
        1 / 0  # noqa: B018
    assert broken.closed
    with pool.connection() as fresh:
        assert fresh is not broken


def test_a_connection_is_retired_after_max_uses() -> None:
    pool: ConnectionPool[Conn] = ConnectionPool(Conn, max_size=1, max_uses=3)
    seen = []
    for _ in range(7):
        with pool.connection() as conn:
            seen.append(conn)
    assert [c.n for c in seen] == [seen[0].n] * 3 + [seen[3].n] * 3 + [seen[6].n]
    assert seen[0].closed and seen[3].closed and not seen[6].closed
    assert pool.stats()["retired"] == 2


def test_pool_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="max_size must be at least 1, got 0"):
        ConnectionPool(Conn, max_size=0)
    with pytest.raises(ValueError, match="idle_ttl must be positive"):
        ConnectionPool(Conn, idle_ttl=0)
    with pytest.raises(ValueError, match=r"max_uses must be at least 1 \(or None\), got 0"):
        ConnectionPool(Conn, max_uses=0)


def test_the_store_works_through_the_pool_with_bounded_connections(tmp_path: Path) -> None:
    store = SecureStorage(tmp_path / "t.db", key=b"k" * 32)
    pool = ConnectionPool(lambda: store.open_connection(check_same_thread=False), max_size=2)
    store.use_pool(pool)
    store.open_session("s")

    def write(i: int) -> None:
        for j in range(10):
            store.add_transcript("s", f"segment {i}-{j}")

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.session_info("s")["transcripts"] == 40
    stats = pool.stats()
    assert stats["created"] <= 2 and stats["in_use"] == 0
    pool.close()
    assert pool.stats()["closed"] == stats["created"]


# -- work-order queue ---------------------------------------------------------------------------


def order(session: str = "s", kind: str = FINAL, n: int = 1600, priority: int = 0) -> WorkOrder:
    return WorkOrder(session, kind, np.zeros(n, np.int16), priority=priority)


def test_queue_is_bounded_and_completed_orders_are_archived_and_dropped(tmp_path: Path) -> None:
    async def scenario() -> None:
        archive = OrderArchive(tmp_path / "orders.jsonl")
        queue = WorkOrderQueue(2, archive=archive)
        first = queue.submit(order())
        queue.submit(order())
        with pytest.raises(QueueFullError, match="work-order queue full: 2 of 2"):
            queue.submit(order())
        taken = await queue.next()
        queue.complete(taken, {"text": "hello"})
        assert await first == {"text": "hello"}
        assert taken.id not in queue.active_orders and queue.room() == 1
        record = json.loads((tmp_path / "orders.jsonl").read_text())
        assert record["id"] == taken.id and record["result_chars"] == 5
        assert record["audio_bytes"] == 3200
        assert queue.stats()["rejected"] == 1 and queue.stats()["archived"] == 1

    asyncio.run(scenario())


def test_finals_run_before_partials_and_in_order() -> None:
    async def scenario() -> list[str]:
        queue = WorkOrderQueue(10)
        for name, kind, prio in [("p1", PARTIAL, 1), ("f1", FINAL, 0), ("f2", FINAL, 0)]:
            o = order(kind=kind, priority=prio)
            o.id = name
            queue.submit(o)
        return [(await queue.next()).id for _ in range(3)]

    assert asyncio.run(scenario()) == ["f1", "f2", "p1"]


def test_space_wait_and_cancelling_a_vanished_sessions_orders() -> None:
    async def scenario() -> None:
        queue = WorkOrderQueue(1)
        pending = queue.submit(order("gone"))
        assert not await queue.wait_for_space(0.01)
        waiter = asyncio.create_task(queue.wait_for_space(5))
        assert queue.cancel_session("gone") == 1
        assert await waiter and pending.cancelled()
        assert queue.active_orders == {}
        queue.close()
        with pytest.raises(QueueClosedError):
            await queue.next()

    asyncio.run(scenario())


def test_order_archive_rotates(tmp_path: Path) -> None:
    archive = OrderArchive(tmp_path / "a.jsonl", max_bytes=200)
    for i in range(10):
        archive({"id": i, "pad": "x" * 40})
    assert (tmp_path / "a.jsonl.1").exists()
    assert (tmp_path / "a.jsonl").stat().st_size <= 200 + 60


# -- memory manager -----------------------------------------------------------------------------


def test_register_and_release_call_the_release_callback_once() -> None:
    released: list[str] = []
    manager = MemoryManager(1000)
    manager.register("a", "session", 300, release=lambda: released.append("a"))
    assert manager.total_memory_used == 300
    assert manager.release("a") and not manager.release("a")
    assert released == ["a"] and manager.total_memory_used == 0


def test_resources_idle_for_the_idle_time_are_released() -> None:
    clock = Clock()
    released: list[str] = []
    manager = MemoryManager(10_000, idle_seconds=300, clock=clock)
    for name in ("a", "b"):
        manager.register(name, "session", 10, release=functools.partial(released.append, name))
    clock.now += 200
    manager.touch("b")
    clock.now += 150
    assert manager.cleanup() == ["a"]
    assert released == ["a"] and list(manager.resources) == ["b"]


def test_cleanup_at_80_percent_releases_least_recently_used_evictable() -> None:
    clock = Clock()
    manager = MemoryManager(1000, cleanup_threshold=0.8, clock=clock)
    manager.register("pinned", "session", 500)
    for name in ("old", "new"):
        clock.now += 1
        manager.register(name, "cache", 100, evictable=True)
    # 700 of 1000: below 80 %, nothing happens.
    assert manager.cleanup() == []
    clock.now += 1
    # Registering 150 more reaches 850 (>= 800): cleanup runs first and frees "old".
    manager.register("more", "cache", 150, evictable=True)
    assert "old" not in manager.resources and manager.total_memory_used == 750
    assert manager.stats()["released_pressure"] == 1


def test_a_resource_that_cannot_fit_is_refused_with_the_figures() -> None:
    manager = MemoryManager(1024)
    manager.register("a", "session", 1000)
    with pytest.raises(MemoryBudgetError) as info:
        manager.register("b", "work order", 100)
    assert str(info.value) == (
        "server memory budget exhausted: work order 'b' needs 100 B, 1000 B of 1.0 KiB in use "
        "after cleanup"
    )
    assert manager.stats()["refused"] == 1


def test_memory_manager_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="memory budget must be positive"):
        MemoryManager(0)
    with pytest.raises(ValueError, match=r"fraction of the budget in \(0, 1\], got 80"):
        MemoryManager(100, cleanup_threshold=80)
    with pytest.raises(ValueError, match="already registered"):
        manager = MemoryManager(100)
        manager.register("x", "t", 1)
        manager.register("x", "t", 1)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["reg", "rel", "touch", "clean"]),
            st.integers(0, 5),
            st.integers(0, 300),
        ),
        max_size=40,
    )
)
def test_memory_manager_total_is_the_sum_of_tracked_sizes(ops: list[tuple[str, int, int]]) -> None:
    clock = Clock()
    manager = MemoryManager(1000, idle_seconds=50, clock=clock)
    for op, key, size in ops:
        clock.now += 10
        name = f"r{key}"
        if op == "reg" and name not in manager.resources:
            with contextlib.suppress(MemoryBudgetError):
                manager.register(name, "t", size, evictable=key % 2 == 0)
        elif op == "rel":
            manager.release(name)
        elif op == "touch":
            manager.touch(name, size)
        else:
            manager.cleanup()
        assert manager.total_memory_used == sum(u.size_bytes for u in manager.resources.values())
        assert manager.total_memory_used <= 1000 + 300  # touch may resize past the budget


# -- incoming audio ----------------------------------------------------------------------------


def test_pcm_stream_carries_partial_frames_across_chunks(audio_dir: Path) -> None:
    raw = pcm16(audio_dir / "turn_off_the_radio.wav")
    whole = PcmStream(16000, 1)
    pieces = PcmStream(16000, 1)
    expected = np.concatenate([whole.feed(raw), whole.flush()])
    got = [pieces.feed(raw[i : i + 777]) for i in range(0, len(raw), 777)]
    assert np.array_equal(np.concatenate([*got, pieces.flush()]), expected)


def test_wav_stream_parses_the_header_from_any_cut(audio_dir: Path) -> None:
    data = (audio_dir / "start_recording_now.48k_24bit.wav").read_bytes()
    one = WavStream()
    out_one = np.concatenate([one.feed(data), one.flush()])
    cut = WavStream()
    parts = [cut.feed(data[i : i + 5]) for i in range(0, 200, 5)]
    parts.append(cut.feed(data[200:]))
    assert (cut.sample_rate, cut.channels) == (48000, 1)
    assert np.array_equal(np.concatenate([*parts, cut.flush()]), out_one)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"RIFX" + b"\0" * 20, "the stream is not a WAV file (no RIFF/WAVE header)"),
        (b"RIFF\0\0\0\0WAVEdata\0\0\0\0", "corrupt WAV stream (audio data before format chunk)"),
    ],
)
def test_wav_stream_refuses_what_is_not_wav(data: bytes, message: str) -> None:
    with pytest.raises(AudioError, match=message.replace("(", r"\(").replace(")", r"\)")):
        WavStream().feed(data)


def test_cutter_times_are_per_stream_even_with_a_recycled_endpointer(audio_dir: Path) -> None:
    raw = pcm16(audio_dir / "sequence.wav")
    pcm = np.frombuffer(raw, dtype="<i2")
    runs: list[list[tuple[float, float]]] = []
    for _ in range(3):
        cutter = UtteranceCutter()
        found = cutter.feed(pcm) + cutter.flush()
        cutter.close()
        runs.append([(round(s, 2), round(e, 2)) for _, s, e in found])
    assert len(runs[0]) == 4 and runs[0][0][0] < 0.5
    assert runs[0] == runs[1] == runs[2]
