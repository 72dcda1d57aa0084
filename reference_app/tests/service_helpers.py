"""Helpers of the service tests: a running service and loopback clients.

The service runs in this process (on its own event loop, in a thread), so
memwatch measures it: what a request leaves behind in the server shows up in
the test's memory and resources. Clients use websockets' synchronous client,
so a test needs no event loop of its own.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from reference_app.service.app import ServiceThread
from reference_app.service.client import StreamResult, stream_file
from websockets.sync.client import ClientConnection, connect


def recv_json(ws: ClientConnection, timeout: float = 30.0) -> dict[str, Any]:
    message = ws.recv(timeout)
    assert isinstance(message, str), f"expected a JSON text frame, got {message!r:.80}"
    data: dict[str, Any] = json.loads(message)
    return data


def recv_until(ws: ClientConnection, kind: str, timeout: float = 30.0) -> dict[str, Any]:
    """Messages until one of type ``kind`` (others are skipped); that one."""
    deadline = time.monotonic() + timeout
    while True:
        message = recv_json(ws, max(0.1, deadline - time.monotonic()))
        if message["type"] == kind:
            return message


def send_json(ws: ClientConnection, **message: Any) -> None:
    ws.send(json.dumps(message))


def start_session(ws: ClientConnection, **fields: Any) -> str:
    send_json(ws, type="start", **fields)
    reply = recv_json(ws)
    assert reply["type"] == "started", reply
    session_id: str = reply["session_id"]
    return session_id


def open_client(running: ServiceThread) -> ClientConnection:
    return connect(running.url, open_timeout=10, max_size=2**22)


def wait_idle(running: ServiceThread, timeout: float = 10.0) -> dict[str, int]:
    """The service's holdings once they drop to zero (or what they are at the timeout)."""
    assert running.service is not None
    deadline = time.monotonic() + timeout
    while True:
        counts: dict[str, int] = running.call(running.service.counts)
        if not any(counts.values()) or time.monotonic() > deadline:
            return counts
        time.sleep(0.02)


def server_tasks(running: ServiceThread) -> int:
    """Tasks on the service's event loop (the caller's own call excluded)."""
    return int(running.call(lambda: len(asyncio.all_tasks()) - 1))


def stream(path: Path, running: ServiceThread, **kwargs: Any) -> StreamResult:
    return asyncio.run(stream_file(path, running.url, **kwargs))


def pcm16(path: Path) -> bytes:
    """A 16 kHz mono 16-bit fixture's sample bytes (the data chunk)."""
    from reference_app.audio import read_wav_info

    info = read_wav_info(path)
    assert (info.sample_rate, info.channels, info.bits) == (16_000, 1, 16), info
    data = path.read_bytes()
    return data[info.data_offset : info.data_offset + info.frames * 2]
