"""A soak run of the streaming service under concurrent loopback clients.

The service runs in this process (its own event loop, in a thread): its
connection pool, work-order queue, memory manager, sessions with checkpoints,
encrypted store, adaptive cache and metrics loop. Four clients on another
event loop stream the speech fixtures in real time, session after session,
each checking its transcript exactly (decoded with the fixtures' grammar).
memwatch samples the process and judges the growth rate after warmup
against ``max_growth_rate``.

The second test runs the same setup in a child pytest with a fault switched
on (a handler that keeps every received chunk) and requires memwatch's soak
verdict to fail it.

Skipped unless soak runs are asked for; CI caps them to 90 s
(``--memwatch-soak-duration=90s``, see ``.ci/test``), a nightly run drops the cap.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from reference_app.service.app import ServiceConfig, ServiceThread
from reference_app.service.client import stream_file

CLIENTS = 4
PLAYLIST = [
    ("sequence.wav", "please open the door and turn on the light turn off the radio "
     "close the window please call my mother tomorrow morning"),
    ("the_quick_brown_fox_jumps_over_the_lazy_dog.wav",
     "the quick brown fox jumps over the lazy dog"),
    ("send_a_message_to_john.wav", "send a message to john"),
    ("play_some_music.wav", "play some music"),
]  # fmt: skip
FAULT_ENV = "SOAK_SERVICE_FAULTS"  # used by the child run of the second test only


class Clients:
    """``CLIENTS`` loopback clients streaming speech until told to stop."""

    def __init__(self, url: str, audio_dir: Path) -> None:
        self.url = url
        self.audio_dir = audio_dir
        self.sessions = 0
        self.wrong: list[str] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="clients")

    async def _client(self, index: int) -> None:
        turn = index
        while not self._stop.is_set():
            name, expected = PLAYLIST[turn % len(PLAYLIST)]
            turn += 1
            try:
                result = await stream_file(self.audio_dir / name, self.url, pace=1.0, timeout=60)
            except Exception as exc:  # recorded and checked by the test
                self.errors.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(1)
                continue
            self.sessions += 1
            if result.text != expected or result.errors:
                self.wrong.append(f"{name}: {result.text!r} {result.errors}")

    async def _main(self) -> None:
        await asyncio.gather(*(self._client(i) for i in range(CLIENTS)))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        # Each client finishes the file it is streaming (at most ~11 s).
        if not self._thread.is_alive():
            return
        self._stop.set()
        self._thread.join(120)
        assert not self._thread.is_alive(), "the clients did not stop"


@pytest.fixture
def loaded_service(
    tmp_path: Path, grammar: Path, audio_dir: Path
) -> Iterator[tuple[ServiceThread, Clients]]:
    """The service with its clients streaming.

    Requested before ``soak``, so it is torn down after it: the soak's last
    sample is taken with the service still up, not after its decoders were
    freed (which would read as memory falling at the end).
    """
    config = ServiceConfig(
        data_dir=tmp_path / "data",
        port=0,
        store=tmp_path / "t.db",
        vtt_dir=tmp_path / "vtt",
        grammar=grammar,
        workers=2,
        pool_size=3,
        pool_idle_ttl=20.0,
        queue_size=32,
        checkpoint_interval=10.0,
        metrics_interval=2.0,
        # A short retention window fills within the warmup of a 90 s run, so
        # the verdict sees it full, replacing samples rather than adding them.
        metrics_retention=10.0,
        metrics_max_samples=2000,
        faults=frozenset(f for f in os.environ.get(FAULT_ENV, "").split(",") if f),
    )
    with ServiceThread(config) as running:
        clients = Clients(running.url, audio_dir)
        clients.start()
        try:
            yield running, clients
        finally:
            clients.stop()


@pytest.mark.soak("10m", interval="5s", max_growth_rate="12 MiB/h", warmup="30%")
def test_service_under_concurrent_streaming_clients(
    loaded_service: tuple[ServiceThread, Clients], soak: Any
) -> None:
    running, clients = loaded_service
    assert running.service is not None
    for _tick in soak:
        if clients.errors or clients.wrong:
            break
        threading.Event().wait(0.5)
    clients.stop()
    counts = running.call(running.service.counts)
    queue = running.service.c.queue.stats()
    pool = running.service.c.pool.stats() if running.service.c.pool else {}
    assert clients.errors == [] and clients.wrong == []
    assert clients.sessions >= CLIENTS
    assert not any(counts.values()), counts
    assert queue["archived"] == queue["completed"] + queue["cancelled"] >= clients.sessions
    assert pool["size"] <= pool["max_size"]


@pytest.mark.soak("10m", interval="5s")
def test_a_fault_is_flagged_in_the_same_setup(soak: Any, tmp_path: Path) -> None:
    """The soak above, with ``handler_keeps_chunks`` on, fails memwatch's soak verdict."""
    del soak  # this test's own time is the child's run
    here = Path(__file__).resolve().parent
    results = tmp_path / "fault.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env[FAULT_ENV] = "handler_keeps_chunks"
    proc = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
            f"{here / 'test_soak_service.py'}::test_service_under_concurrent_streaming_clients",
            "--memwatch-soak", "--memwatch-soak-duration=60s", f"--memwatch-json={results}",
            "--memwatch-trace=0",
        ],
        cwd=here.parent, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    report = json.loads(results.read_text())["tests"][0]
    failed = [v for v in report["verdicts"] if not v["passed"]]
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert [v["kind"] for v in failed] == ["soak"], failed
    rate = report["soak"]["rate"]
    assert rate["low"] > report["soak"]["limit_rate"], rate
    print(f"fault run: {failed[0]['message']}")
