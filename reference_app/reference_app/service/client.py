"""The bundled streaming client: ``python -m reference_app stream FILE.wav --url URL``.

Streams a WAV file to the service and collects what comes back. With
``fmt="pcm16"`` (the default) the file is converted here to 16 kHz mono
16-bit and sent in ``chunk_ms`` pieces; with ``fmt="wav"`` the file's own
bytes are sent as they are (header first) and the server decodes them.
``pace=1.0`` sends in real time, like a microphone; ``0`` as fast as the
server takes it (the server's backpressure still applies).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from reference_app.audio import Converter, WavFileSource, iter_blocks, read_wav_info


class StreamError(Exception):
    """The stream could not be sent or the server ended it; the message says why."""


@dataclass
class StreamResult:
    session_id: str | None = None
    finals: list[dict[str, Any]] = field(default_factory=list)
    partials: int = 0
    backpressure: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    status: dict[str, Any] | None = None

    @property
    def text(self) -> str:
        return " ".join(f["text"] for f in self.finals if f["text"])


def _pcm_chunks(path: Path, chunk_ms: int) -> tuple[list[bytes], float]:
    """The file as 16 kHz mono int16, in ``chunk_ms`` pieces, and the seconds per piece."""
    info = read_wav_info(path)
    converter = Converter(info.sample_rate, info.channels, 16_000)
    parts: list[np.ndarray] = []
    with WavFileSource(path) as source:
        parts.extend(converter.convert(block) for block in iter_blocks(source))
    parts.append(converter.flush())
    pcm = np.concatenate(parts).astype("<i2").tobytes()
    step = 16_000 * 2 * chunk_ms // 1000
    return [pcm[i : i + step] for i in range(0, len(pcm), step)], chunk_ms / 1000


def _wav_chunks(path: Path, chunk_ms: int) -> tuple[list[bytes], float]:
    info = read_wav_info(path)
    data = Path(path).read_bytes()
    byte_rate = info.sample_rate * info.channels * info.bits // 8
    step = max(1024, byte_rate * chunk_ms // 1000)
    return [data[i : i + step] for i in range(0, len(data), step)], step / byte_rate


async def stream_file(
    path: str | os.PathLike[str],
    url: str,
    *,
    fmt: str = "pcm16",
    chunk_ms: int = 100,
    pace: float = 0.0,
    want_status: bool = False,
    on_message: Callable[[dict[str, Any]], object] | None = None,
    timeout: float = 120.0,
    metadata: dict[str, Any] | None = None,
) -> StreamResult:
    """Stream one file as one session; returns the transcript and the summary."""
    if fmt not in ("pcm16", "wav"):
        raise ValueError(f"format must be 'pcm16' or 'wav', got {fmt!r}")
    chunks, seconds = (_pcm_chunks if fmt == "pcm16" else _wav_chunks)(Path(path), chunk_ms)
    try:
        ws = await asyncio.wait_for(connect(url, max_size=2**22, open_timeout=10), timeout)
    except (OSError, TimeoutError) as exc:
        raise StreamError(f"cannot connect to {url}: {exc}") from None
    async with ws:
        return await _stream(ws, chunks, seconds, fmt, pace, want_status, on_message, timeout,
                             metadata)  # fmt: skip


async def _stream(
    ws: ClientConnection,
    chunks: list[bytes],
    seconds: float,
    fmt: str,
    pace: float,
    want_status: bool,
    on_message: Callable[[dict[str, Any]], object] | None,
    timeout: float,
    metadata: dict[str, Any] | None,
) -> StreamResult:
    result = StreamResult()
    started = asyncio.get_running_loop().create_future()
    ended = asyncio.get_running_loop().create_future()
    status = asyncio.get_running_loop().create_future()

    async def receive() -> None:
        try:
            async for raw in ws:
                message = json.loads(raw)
                if on_message is not None:
                    on_message(message)
                kind = message.get("type")
                if kind == "started" and not started.done():
                    result.session_id = message["session_id"]
                    started.set_result(message)
                elif kind == "final":
                    result.finals.append(message)
                elif kind == "partial":
                    result.partials += 1
                elif kind == "backpressure":
                    result.backpressure += 1
                elif kind == "error":
                    result.errors.append(message)
                    if not started.done():
                        started.set_exception(StreamError(message["message"]))
                elif kind == "end" and not ended.done():
                    result.summary = message.get("summary")
                    ended.set_result(message)
                elif kind == "status" and not status.done():
                    status.set_result(message)
        except ConnectionClosed:
            pass
        for future in (started, ended, status):
            if not future.done():
                future.set_exception(
                    StreamError(
                        f"the server closed the connection ({ws.close_code} "
                        f"{ws.close_reason or ''})".strip()
                    )
                )

    receiver = asyncio.create_task(receive())
    try:
        start: dict[str, Any] = {"type": "start", "format": fmt, "metadata": metadata or {}}
        if fmt == "pcm16":
            start.update(sample_rate=16_000, channels=1)
        await ws.send(json.dumps(start))
        await asyncio.wait_for(started, timeout)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for i, chunk in enumerate(chunks):
            if pace > 0:
                delay = t0 + i * seconds / pace - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            await ws.send(chunk)
        await ws.send(json.dumps({"type": "stop", "session_id": result.session_id}))
        await asyncio.wait_for(ended, timeout)
        if want_status:
            await ws.send(json.dumps({"type": "status"}))
            result.status = await asyncio.wait_for(status, timeout)
    except ConnectionClosed as exc:
        raise StreamError(f"the server closed the connection ({exc})") from None
    except TimeoutError:
        raise StreamError(f"no answer from the server within {timeout:g} s") from None
    finally:
        receiver.cancel()
        with contextlib.suppress(BaseException):
            await receiver
        for future in (started, ended, status):
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: no "never retrieved" warning
    return result
