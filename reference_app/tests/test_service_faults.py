"""Each fault of the streaming service leaks what docs/faults.md says, and only when on.

Plain counters here (list lengths, open connections, callbacks run); that memwatch
flags each of them is shown by ``test_faults_flagged.py``.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from reference_app.service import memory, pool, server, workqueue
from reference_app.service.app import ServiceConfig, ServiceThread
from reference_app.service.memory import MemoryManager
from reference_app.service.pool import ConnectionPool
from reference_app.service.workqueue import FINAL, WorkOrder, WorkOrderQueue
from service_helpers import open_client, recv_until, send_json, start_session


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("on", [True, False])
def test_pool_idle_never_closed(tmp_path: Path, on: bool) -> None:
    clock = Clock()
    made: list[sqlite3.Connection] = []

    def factory() -> sqlite3.Connection:
        made.append(sqlite3.connect(tmp_path / "t.db", check_same_thread=False))
        return made[-1]

    faults = {"pool_idle_never_closed"} if on else set()
    p = ConnectionPool(factory, max_size=2, idle_ttl=10, clock=clock, config_faults=faults)
    kept_before = len(pool._REAPED_BUT_OPEN)
    for _ in range(3):
        with p.connection() as a, p.connection() as b:
            a.execute("SELECT 1")
            b.execute("SELECT 1")
        clock.now += 11
        assert p.reap_idle() == 2
    assert len(made) == 6 and p.size == 0
    still_open = 0
    for conn in made:
        try:
            conn.execute("SELECT 1")
            still_open += 1
        except sqlite3.ProgrammingError:  # "Cannot operate on a closed database."
            pass
    assert still_open == (6 if on else 0)
    assert len(pool._REAPED_BUT_OPEN) - kept_before == (6 if on else 0)
    for conn in pool._REAPED_BUT_OPEN[kept_before:]:
        conn.close()
    del pool._REAPED_BUT_OPEN[kept_before:]


@pytest.mark.parametrize("on", [True, False])
def test_work_orders_never_archived(on: bool) -> None:
    async def serve() -> WorkOrderQueue:
        faults = {"work_orders_never_archived"} if on else set()
        queue = WorkOrderQueue(8, config_faults=faults)
        for _ in range(3):  # 30 orders through a queue of 8
            futures = [queue.submit(WorkOrder("s", FINAL, np.zeros(1600, np.int16)))
                       for _ in range(8)]  # fmt: skip
            while queue.active_orders:
                queue.complete(await queue.next(), {"text": "x"})
            await asyncio.gather(*futures)
        return queue

    queue = asyncio.run(serve())
    assert len(queue.completed_orders) == (24 if on else 0)
    assert queue.stats()["archived"] == (0 if on else 24)
    if on:  # audio and result kept with every order
        kept = next(iter(queue.completed_orders.values()))
        assert kept.audio.nbytes == 3200 and kept.result == {"text": "x"}


@pytest.mark.parametrize("on", [True, False])
def test_memory_manager_never_releases(on: bool) -> None:
    faults = {"memory_manager_never_releases"} if on else set()
    manager = MemoryManager(10**6, config_faults=faults)
    freed: list[int] = []
    for i in range(20):
        manager.register(f"r{i}", "session", 100, release=functools.partial(freed.append, i))
        assert manager.release(f"r{i}")
    assert manager.total_memory_used == 0 and manager.resources == {}
    assert len(manager._retired) == (20 if on else 0)
    assert freed == ([] if on else list(range(20)))
    assert memory.FAULT_NEVER_RELEASES == "memory_manager_never_releases"


@pytest.mark.parametrize("on", [True, False])
def test_handler_keeps_chunks(tmp_path: Path, grammar: Path, on: bool) -> None:
    config = ServiceConfig(
        data_dir=tmp_path, port=0, grammar=grammar, partial_seconds=0.0,
        faults=frozenset({"handler_keeps_chunks"} if on else ()),
    )  # fmt: skip
    before = len(server._RECEIVED_CHUNKS)
    with ServiceThread(config) as running, open_client(running) as ws:
        sid = start_session(ws)
        for _ in range(25):
            ws.send(bytes(3200))
        send_json(ws, type="stop", session_id=sid)
        recv_until(ws, "end")
    kept = server._RECEIVED_CHUNKS[before:]
    assert len(kept) == (25 if on else 0)
    assert sum(map(len, kept)) == (80_000 if on else 0)
    del server._RECEIVED_CHUNKS[before:]


def test_every_service_fault_is_registered() -> None:
    from reference_app import faults

    names = {
        pool.FAULT_IDLE_NEVER_CLOSED,
        workqueue.FAULT_NEVER_ARCHIVED,
        memory.FAULT_NEVER_RELEASES,
        server.FAULT_KEEPS_CHUNKS,
    }
    assert names <= set(faults.FAULTS)
    assert {faults.FAULTS[n].component for n in names} == {
        "connection pool", "work-order queue", "memory manager", "streaming handler",
    }  # fmt: skip


def test_an_unknown_fault_in_the_service_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown fault\(s\) pool_leak; known faults: "):
        ServiceConfig(data_dir=tmp_path, faults=frozenset({"pool_leak"}))
