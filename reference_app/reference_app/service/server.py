"""The streaming transcription server: WebSocket protocol and request handling.

A client opens a WebSocket to ``ws://127.0.0.1:PORT`` and talks JSON (text
frames); audio goes in binary frames (or base64 in ``audio`` messages).

Client → server::

    {"type": "start", "format": "pcm16", "sample_rate": 16000, "channels": 1}
    {"type": "start", "format": "wav"}                 # the WAV file's bytes follow
    <binary frame>                                     # audio of this connection's session
    {"type": "audio", "session_id": ID, "data": BASE64}
    {"type": "status"}
    {"type": "stop", "session_id": ID}

Server → client::

    {"type": "started", "session_id": ID, "max_frame_bytes": N}
    {"type": "partial", "session_id": ID, "utterance": K, "text": ...}
    {"type": "final", "session_id": ID, "utterance": K, "text": ..., "start": s, "end": s,
     "cached": bool}
    {"type": "backpressure", "session_id": ID, "queued": n, "max": m}
    {"type": "end", "session_id": ID, "summary": {...}}
    {"type": "status", "tier": "normal", "memory": {...}, "metrics": {...}, ...}
    {"type": "error", "code": CODE, "message": ...}

Every mistake a client can make gets an ``error`` message naming it and the
expected form, and costs the server nothing: no task, buffer, work order or
store connection outlives the session or connection that caused it.

Fault ``handler_keeps_chunks``: every audio frame received is copied into a
server-wide list (a "replay buffer" nobody reads) and never dropped.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from reference_app import faults
from reference_app.audio import AudioError
from reference_app.cache import TranscriptCache
from reference_app.metrics import MetricsCollector
from reference_app.monitor import MemoryMonitor, MemoryReading
from reference_app.service.audio_stream import PcmStream, UtteranceCutter, WavStream
from reference_app.service.memory import MemoryBudgetError, MemoryManager
from reference_app.service.pool import ConnectionPool, PoolError
from reference_app.service.workqueue import (
    FINAL,
    PARTIAL,
    QueueClosedError,
    QueueFullError,
    WorkOrder,
    WorkOrderQueue,
)
from reference_app.sessions import SessionError, SessionManager
from reference_app.storage import SecureStorage, StorageError
from reference_app.transcription import Engine
from reference_app.vtt import VTTWriter

FAULT_KEEPS_CHUNKS = faults.register(
    "handler_keeps_chunks",
    "streaming handler",
    "every audio frame a client sends is copied into a server-wide list that is never emptied",
).name

log = logging.getLogger(__name__)

# Under the fault: a "replay buffer for debugging" that nothing reads or trims.
_RECEIVED_CHUNKS: list[bytes] = []

MESSAGE_TYPES = ("start", "audio", "stop", "status")
FORMATS = ("pcm16", "wav")


class ClientError(Exception):
    """A client's mistake: sent back as an ``error`` message, the server carries on."""

    def __init__(self, code: str, message: str, *, end_session: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.end_session = end_session


@dataclass
class ServiceLimits:
    """The knobs of the protocol handler (the composition root fills them in)."""

    max_frame_bytes: int = 256 * 1024
    partial_seconds: float = 1.0
    backpressure_timeout: float = 30.0
    max_utterance_seconds: float = 15.0
    maintenance_interval: float = 5.0
    metrics_interval: float = 5.0
    workers: int = 2
    store_threads: int = 2


@dataclass
class Components:
    """What the composition root (``reference_app.service.app``) wires together."""

    engine_factory: Callable[[], Engine]
    engine_key: str
    sessions: SessionManager
    queue: WorkOrderQueue
    memory: MemoryManager
    cache: TranscriptCache
    metrics: MetricsCollector
    monitor: MemoryMonitor
    read_memory: Callable[[], MemoryReading]
    store: SecureStorage | None = None
    pool: ConnectionPool[Any] | None = None
    vtt_dir: Path | None = None
    limits: ServiceLimits = field(default_factory=ServiceLimits)
    closers: list[Callable[[], object]] = field(default_factory=list)
    config_faults: frozenset[str] = frozenset()


_END = object()  # the outbox marker for "the session is stopping"


class _Session:
    """One streaming session on one connection."""

    def __init__(
        self, session_id: str, decoder: PcmStream, cutter: UtteranceCutter, vtt: VTTWriter | None
    ) -> None:
        self.id = session_id
        self.decoder = decoder
        self.cutter = cutter
        self.vtt = vtt
        self.outbox: asyncio.Queue[Any] = asyncio.Queue()
        self.sender: asyncio.Task[None] | None = None
        self.next_partial = 0
        self.utterance = 0
        self.ending = False
        self.resource = f"session:{session_id}"

    @property
    def nbytes(self) -> int:
        return self.cutter.nbytes + self.decoder.buffered_bytes


class TranscriptionService:
    """The running service. Use :func:`reference_app.service.app.create_service`.

    Example::

        service = create_service(ServiceConfig(data_dir=tmp, port=0))
        await service.start()
        print(service.url)          # ws://127.0.0.1:PORT
        ...
        await service.stop()
    """

    def __init__(self, components: Components, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.c = components
        self.limits = components.limits
        self.host, self.port = host, port
        self._keep_chunks = faults.is_enabled(FAULT_KEEPS_CHUNKS, components.config_faults)
        self._server: Server | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._maintenance: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._store_executor: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._engines: list[Engine] = []
        self._engines_lock = threading.Lock()
        self._connections: set[_Connection] = set()
        self._stopped = False
        self.started_at = 0.0
        self.connections_total = 0
        self.errors_sent: dict[str, int] = {}

    # -- lifecycle -----------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> None:
        """Load one engine (so a bad grammar fails here), then listen."""
        loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(
            max_workers=self.limits.workers, thread_name_prefix="transcriber"
        )
        self._store_executor = ThreadPoolExecutor(
            max_workers=self.limits.store_threads, thread_name_prefix="store"
        )
        try:
            # Every thread of both pools starts (and every engine loads) now:
            # a thread started on first use mid-run would look like a leak to
            # a resource check, and a bad grammar must fail here.
            await _start_all_threads(loop, self._executor, self.limits.workers, self._engine)
            await _start_all_threads(loop, self._store_executor, self.limits.store_threads)
            # A frame above 4x the protocol limit is refused by websockets
            # itself (close code 1009) before it is buffered whole.
            self._server = await serve(
                self._handle,
                self.host,
                self.port,
                max_size=4 * self.limits.max_frame_bytes,
                max_queue=16,
                # No keepalive pings: a dead peer is found by TCP (EOF) or, if it
                # just goes silent, by the memory manager's idle release. Each
                # ping timer would stay in the loop's heap for its whole
                # interval after its connection closed, and so would long
                # handshake and close timers: short ones keep that churn small.
                ping_interval=None,
                open_timeout=5,
                close_timeout=2,
            )
        except BaseException:
            await self._shutdown_components()
            raise
        self.port = self._server.sockets[0].getsockname()[1] if self.port == 0 else self.port
        self.started_at = time.time()
        self._workers = [
            asyncio.create_task(self._worker(), name=f"work-order-worker-{i}")
            for i in range(self.limits.workers)
        ]
        self._maintenance = asyncio.create_task(self._maintain(), name="service-maintenance")

    async def stop(self) -> None:
        """Close every connection (ending their sessions), then every component."""
        if self._stopped:
            return
        self._stopped = True
        if self._server is not None:
            self._server.close(close_connections=True)
            try:
                await asyncio.wait_for(self._server.wait_closed(), 30)
            except TimeoutError:
                log.error("connections still open 30 s after shutdown began; closing anyway")
        # Handlers end their sessions in their finally blocks; wait for them.
        for _ in range(200):
            if not self._connections:
                break
            await asyncio.sleep(0.01)
        await self._shutdown_components()

    async def _shutdown_components(self) -> None:
        self.c.queue.close()
        tasks = [*self._workers, *([self._maintenance] if self._maintenance else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers, self._maintenance = [], None
        loop = asyncio.get_running_loop()
        for executor in (self._executor, self._store_executor):
            if executor is not None:
                await loop.run_in_executor(None, executor.shutdown, True)
        self._executor = self._store_executor = None
        with self._engines_lock:
            engines, self._engines = self._engines, []
        for engine in engines:
            engine.close()
        self.c.sessions.close()
        if self.c.pool is not None:
            self.c.pool.close()
        for closer in reversed(self.c.closers):
            try:
                closer()
            except Exception:
                log.exception("closing a service component failed")
        # The default executor ran the blocking shutdown calls above.
        await loop.shutdown_default_executor()

    # -- work orders -------------------------------------------------------------------

    def _engine(self) -> Engine:
        """This worker thread's engine (decoders are not shared between threads)."""
        engine: Engine | None = getattr(self._local, "engine", None)
        if engine is None:
            engine = self.c.engine_factory()
            self._local.engine = engine
            with self._engines_lock:
                self._engines.append(engine)
        return engine

    def _run_order(self, order: WorkOrder) -> dict[str, Any]:
        """On a worker thread: decode (through the cache, for finals)."""
        engine = self._engine()
        pcm = order.audio
        if order.kind == PARTIAL:
            # Engines that can read a hypothesis mid-utterance say so; the
            # others decode the audio so far as if it were complete.
            partial = getattr(engine, "transcribe_partial", engine.transcribe)
            return {"text": partial(pcm), "cached": False}
        misses: list[bool] = []

        def decode() -> str:
            misses.append(True)
            return engine.transcribe(pcm)

        text = self.c.cache.get_or_transcribe(pcm, decode, engine=self.c.engine_key)
        return {"text": text, "cached": not misses}

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self.c.queue
        while True:
            try:
                order = await queue.next()
            except QueueClosedError:
                return
            started = time.perf_counter()
            try:
                assert self._executor is not None
                result = await loop.run_in_executor(self._executor, self._run_order, order)
            except asyncio.CancelledError:
                queue.complete(order, error="the service is shutting down")
                raise
            except Exception as exc:
                log.exception("work order %s failed", order.id)
                queue.complete(order, error=f"{type(exc).__name__}: {exc}")
            else:
                queue.complete(order, result)
                self.c.metrics.record(f"order.{order.kind}.seconds", time.perf_counter() - started)

    def submit(self, order: WorkOrder) -> asyncio.Future[Any]:
        """Queue an order with its audio registered in the memory manager."""
        key = f"order:{uuid.uuid4().hex}"
        self.c.memory.register(key, "work order", order.size_bytes)
        try:
            future = self.c.queue.submit(order)
        except BaseException:
            self.c.memory.release(key)
            raise
        future.add_done_callback(lambda _f: self.c.memory.release(key))
        return future

    async def in_store_thread(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run blocking store/session work off the event loop."""
        loop = asyncio.get_running_loop()
        executor = self._store_executor
        if executor is None:
            raise ClientError("shutting_down", "the server is shutting down")
        return await loop.run_in_executor(executor, lambda: fn(*args, **kwargs))

    # -- upkeep --------------------------------------------------------------------------

    async def _maintain(self) -> None:
        """Reap idle pool connections, run memory cleanup, collect metrics."""
        interval = min(self.limits.maintenance_interval, self.limits.metrics_interval)
        next_metrics = time.monotonic()
        while True:
            try:
                if self.c.pool is not None:
                    self.c.pool.reap_idle()
                self.c.memory.cleanup()
                if time.monotonic() >= next_metrics:
                    next_metrics = time.monotonic() + self.limits.metrics_interval
                    await self.in_store_thread(self.collect_metrics)
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must survive a bad round (a full disk, say)
                log.exception("service maintenance failed")
            await asyncio.sleep(interval)

    def collect_metrics(self) -> dict[str, float]:
        """One round of metrics: process, cache, sessions, store, pool, queue, memory."""
        values = self.c.metrics.collect(
            cache=self.c.cache.cache, sessions=self.c.sessions, storage=self.c.store
        )
        extra: dict[str, float] = {
            "service.connections": float(len(self._connections)),
            "queue.active": float(len(self.c.queue.active_orders)),
            "memory_manager.used_bytes": float(self.c.memory.total_memory_used),
            "memory_manager.tracked": float(len(self.c.memory.resources)),
        }
        if self.c.pool is not None:
            pool = self.c.pool.stats()
            extra["pool.size"] = float(pool["size"])
            extra["pool.in_use"] = float(pool["in_use"])
        for name, value in extra.items():
            self.c.metrics.record(name, value)
        values.update(extra)
        return values

    def snapshot(
        self, session_id: str, report: dict[str, Any], vtt_path: Path | None
    ) -> dict[str, Any]:
        """The chunked NLP snapshot of a session's transcript (entities, keywords).

        Streamed in bounded memory from the store, else from the session's VTT
        file; without either, from the last segments the session manager keeps.
        """
        from reference_app import nlp

        pieces: Any
        if self.c.store is not None:
            pieces = (t.text + "\n" for t in self.c.store.iter_transcripts(session_id))
            source = "store"
        elif vtt_path is not None and vtt_path.exists():
            pieces = nlp.text_pieces(vtt_path)
            source = "vtt"
        else:
            pieces = (text + "\n" for text in report.get("recent_text", []))
            source = "recent segments"
        processor = nlp.StreamingProcessor(top=5)
        for _ in processor.process(pieces):
            pass
        return {"source": source, **processor.totals.to_dict(top=5)}

    def status(self) -> dict[str, Any]:
        # Not monitor.read(): that also appends to the monitor's trend history.
        reading = self.c.read_memory()
        tier = self.c.monitor.tier_for(reading)
        return {
            "type": "status",
            "tier": tier.name.lower(),
            "memory": {
                "rss_mb": round(reading.rss_mib, 1),
                "system_percent": round(reading.system_percent, 1),
                "manager": self.c.memory.stats(),
            },
            "metrics": self.c.metrics.summary(),
            "pool": self.c.pool.stats() if self.c.pool is not None else None,
            "queue": self.c.queue.stats(),
            "sessions": {"live": self.c.sessions.live_count(), "max": self.c.sessions.max_sessions},
            "connections": len(self._connections),
            "cache": self.c.cache.stats(),
            "uptime_seconds": round(time.time() - self.started_at, 1),
        }

    def counts(self) -> dict[str, int]:
        """What the service holds right now (tests check it drops back to zero)."""
        return {
            "connections": len(self._connections),
            "sessions": self.c.sessions.held_count(),
            "orders": len(self.c.queue.active_orders),
            "tracked_resources": len(self.c.memory.resources),
            "pool_in_use": self.c.pool.stats()["in_use"] if self.c.pool is not None else 0,
        }

    # -- connections -------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        conn = _Connection(self, ws)
        self._connections.add(conn)
        self.connections_total += 1
        try:
            await conn.run()
        finally:
            self._connections.discard(conn)

    def keep_chunk(self, data: bytes) -> None:
        if self._keep_chunks:
            _RECEIVED_CHUNKS.append(bytes(data))


class _Connection:
    """The handler of one WebSocket connection: at most one session at a time."""

    def __init__(self, service: TranscriptionService, ws: ServerConnection) -> None:
        self.service = service
        self.c = service.c
        self.ws = ws
        self.session: _Session | None = None

    async def run(self) -> None:
        try:
            async for message in self.ws:
                try:
                    if isinstance(message, bytes):
                        await self.on_audio(message)
                    else:
                        await self.on_text(message)
                except ClientError as exc:
                    await self.send_error(exc.code, exc.message)
                    if exc.end_session and self.session is not None:
                        await self.end_session("error", notify=True)
        except ConnectionClosed:
            pass  # a client that vanished: the finally block cleans up
        finally:
            if self.session is not None:
                await self.end_session(
                    "shutdown" if self.service._stopped else "disconnected", notify=False
                )

    async def send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(json.dumps(message))

    async def send_error(self, code: str, message: str) -> None:
        counts = self.service.errors_sent
        counts[code] = counts.get(code, 0) + 1
        await self.send({"type": "error", "code": code, "message": message})

    # -- messages ----------------------------------------------------------------------

    async def on_text(self, text: str) -> None:
        if len(text) > self.service.limits.max_frame_bytes:
            raise ClientError(
                "frame_too_large",
                f"text message of {len(text)} characters is over the limit of "
                f"{self.service.limits.max_frame_bytes}; it was discarded",
            )
        try:
            message = json.loads(text)
        except ValueError as exc:
            raise ClientError(
                "bad_json",
                f"message is not valid JSON ({exc}); send an object such as "
                '{"type": "start", "format": "pcm16", "sample_rate": 16000}',
            ) from None
        if not isinstance(message, dict):
            raise ClientError(
                "bad_message",
                f"message must be a JSON object with a 'type', got {type(message).__name__}",
            )
        kind = message.get("type")
        if kind not in MESSAGE_TYPES:
            raise ClientError(
                "bad_message",
                f"unknown message type {kind!r}; expected one of {', '.join(MESSAGE_TYPES)}",
            )
        if kind == "start":
            await self.on_start(message)
        elif kind == "status":
            await self.send(self.service.status())
        elif kind == "stop":
            self.require_session(message, required=False)
            await self.end_session("stopped", notify=True)
        else:  # audio
            self.require_session(message, required=True)
            data = message.get("data")
            if not isinstance(data, str):
                raise ClientError(
                    "bad_message", "an 'audio' message needs 'data': base64 of the audio bytes"
                )
            try:
                raw = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ClientError("bad_message", f"'data' is not valid base64 ({exc})") from None
            await self.on_audio(raw)

    def require_session(self, message: dict[str, Any], *, required: bool) -> _Session:
        sid = message.get("session_id")
        session = self.session
        if sid is None and required:
            raise ClientError("bad_message", f"a {message['type']!r} message needs 'session_id'")
        if session is None:
            what = f"unknown session id {sid!r}: " if sid is not None else ""
            raise ClientError(
                "unknown_session" if sid is not None else "no_session",
                f'{what}no session is open on this connection; send {{"type": "start"}} first',
            )
        if sid is not None and sid != session.id:
            raise ClientError(
                "unknown_session",
                f"unknown session id {sid!r}: this connection's session is {session.id!r}",
            )
        return session

    async def on_start(self, message: dict[str, Any]) -> None:
        if self.session is not None:
            raise ClientError(
                "session_exists",
                f"session {self.session.id!r} is already open on this connection; send stop first",
            )
        fmt = message.get("format", "pcm16")
        if fmt not in FORMATS:
            raise ClientError(
                "bad_message", f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}"
            )
        metadata = message.get("metadata", {})
        if not isinstance(metadata, dict):
            raise ClientError("bad_message", "'metadata' must be a JSON object")
        try:
            decoder: PcmStream
            if fmt == "wav":
                decoder = WavStream()
            else:
                rate, channels = message.get("sample_rate", 16000), message.get("channels", 1)
                if not isinstance(rate, int) or not isinstance(channels, int):
                    raise ClientError(
                        "bad_message", "'sample_rate' and 'channels' must be integers"
                    )
                decoder = PcmStream(rate, channels)
        except AudioError as exc:
            raise ClientError("bad_audio", str(exc)) from None
        config = {"source": "websocket", "format": fmt, **{str(k): v for k, v in metadata.items()}}
        try:
            sid = await self.service.in_store_thread(self.c.sessions.start_session, config)
        except (SessionError, StorageError, PoolError) as exc:
            raise ClientError("busy", f"cannot start a session: {exc}") from None
        cutter = UtteranceCutter(max_utterance_seconds=self.service.limits.max_utterance_seconds)
        session = _Session(sid, decoder, cutter, None)
        try:
            if self.c.vtt_dir is not None:
                session.vtt = VTTWriter(self.c.vtt_dir / f"{sid}.vtt", header=f"session {sid}")
            self.c.memory.register(
                session.resource, "session", session.nbytes, release=self._evicted
            )
        except (MemoryBudgetError, OSError) as exc:
            if session.vtt is not None:
                session.vtt.abort()
            cutter.close()
            await self.service.in_store_thread(self.c.sessions.stop_session, sid, reason="refused")
            raise ClientError("busy", f"cannot start a session: {exc}") from None
        self.session = session
        session.sender = asyncio.create_task(self._send_results(session), name=f"sender-{sid}")
        await self.send(
            {
                "type": "started",
                "session_id": sid,
                "max_frame_bytes": self.service.limits.max_frame_bytes,
            }
        )

    async def on_audio(self, data: bytes) -> None:
        limit = self.service.limits.max_frame_bytes
        if len(data) > limit:
            raise ClientError(
                "frame_too_large",
                f"audio frame of {len(data)} bytes is over the limit of {limit}; it was "
                "discarded: send smaller frames (100 ms of 16 kHz audio is 3200 bytes)",
            )
        session = self.session
        if session is None:
            raise ClientError(
                "no_session", 'audio received before a session: send {"type": "start"} first'
            )
        self.service.keep_chunk(data)
        try:
            pcm = session.decoder.feed(data)
        except AudioError as exc:
            raise ClientError("bad_audio", str(exc), end_session=True) from None
        await self._process(session, pcm)

    async def _process(self, session: _Session, pcm: np.ndarray, *, final: bool = False) -> None:
        cutter = session.cutter
        finished = cutter.feed(pcm) if len(pcm) else []
        if final:
            finished += cutter.flush()
        for audio, start, end in finished:
            session.utterance += 1
            session.next_partial = 0
            order = WorkOrder(
                session.id,
                FINAL,
                audio,
                priority=0,
                data={"start": start, "end": end, "utterance": session.utterance},
            )
            await self._submit(session, order)
        partial_every = int(self.service.limits.partial_seconds * cutter.sample_rate)
        if (
            partial_every > 0
            and not final
            and cutter.speech_samples >= (session.next_partial or partial_every)
        ):
            session.next_partial = cutter.speech_samples + partial_every
            queue = self.c.queue
            # Partials are a courtesy: only when the queue is at most half full.
            if queue.room() > queue.max_size // 2:
                order = WorkOrder(
                    session.id,
                    PARTIAL,
                    cutter.current(),
                    priority=1,
                    data={"utterance": session.utterance + 1},
                )
                with contextlib.suppress(QueueFullError, MemoryBudgetError):
                    session.outbox.put_nowait((order, self.service.submit(order)))
        self.c.memory.touch(session.resource, session.nbytes)

    async def _submit(self, session: _Session, order: WorkOrder) -> None:
        """Queue a final order; when the queue is full, push back on the client."""
        queue = self.c.queue
        notified = False
        while True:
            try:
                future = self.service.submit(order)
            except QueueFullError:
                if not notified:
                    notified = True
                    await self.send(
                        {
                            "type": "backpressure",
                            "session_id": session.id,
                            "queued": len(queue.active_orders),
                            "max": queue.max_size,
                        }
                    )
                # Not reading the socket meanwhile: the client's sends block.
                timeout = self.service.limits.backpressure_timeout
                if not await queue.wait_for_space(timeout):
                    raise ClientError(
                        "busy",
                        f"the server stayed busy for {timeout:g} s (work-order queue full); "
                        "the session was ended, try again later",
                        end_session=True,
                    ) from None
                continue
            except MemoryBudgetError as exc:
                raise ClientError("busy", str(exc), end_session=True) from None
            except QueueClosedError:
                raise ClientError("shutting_down", "the server is shutting down") from None
            session.outbox.put_nowait((order, future))
            return

    async def _send_results(self, session: _Session) -> None:
        """In order: partial and final results, then the session's end."""
        while True:
            item = await session.outbox.get()
            if item is _END:
                return
            order, future = item
            try:
                result = await future
            except (asyncio.CancelledError, RuntimeError) as exc:
                if isinstance(exc, asyncio.CancelledError):
                    task = asyncio.current_task()
                    # Re-raise when this task is being cancelled, even if the
                    # order it awaited was cancelled in the same breath:
                    # swallowing that would leave the task stuck "cancelling".
                    if not future.cancelled() or (task is not None and task.cancelling()):
                        raise
                if order.kind == FINAL and not future.cancelled():
                    await self.send_error("transcription_failed", f"utterance failed: {exc}")
                continue
            text = result["text"]
            utterance = order.data["utterance"]
            if order.kind == PARTIAL:
                if text:
                    await self.send(
                        {"type": "partial", "session_id": session.id, "utterance": utterance,
                         "text": text}
                    )  # fmt: skip
                continue
            start, end = order.data["start"], order.data["end"]
            if text:
                try:
                    await self.service.in_store_thread(
                        self.c.sessions.record_transcript,
                        text,
                        session_id=session.id,
                        start=start,
                        end=end,
                        audio_seconds=end - start,
                    )
                except (SessionError, StorageError, PoolError) as exc:
                    await self.send_error("store_failed", f"transcript not stored: {exc}")
                if session.vtt is not None:
                    session.vtt.write_cue(start, max(end, start + 0.001), text)
            await self.send(
                {"type": "final", "session_id": session.id, "utterance": utterance, "text": text,
                 "start": round(start, 3), "end": round(end, 3), "cached": result["cached"]}
            )  # fmt: skip

    # -- ending ------------------------------------------------------------------------------

    def _evicted(self) -> None:
        """The memory manager released this session (idle, or under pressure)."""
        session = self.session
        if session is None or session.ending:
            return
        idle = self.c.memory.idle_seconds
        message = (
            f"session {session.id} closed by the server: no audio for {idle:g} s "
            "(or memory pressure); start a new session to continue"
        )
        # Closing the connection ends the session through run()'s finally.
        asyncio.get_running_loop().create_task(self._close_with(message))

    async def _close_with(self, message: str) -> None:
        await self.send_error("session_released", message)
        await self.ws.close(1008, "session released by the server")

    async def end_session(self, reason: str, *, notify: bool) -> None:
        """End this connection's session; with ``notify`` the client gets what is left."""
        session = self.session
        if session is None or session.ending:
            return
        session.ending = True
        try:
            if notify and reason == "stopped":
                try:
                    tail = session.decoder.flush()
                    await self._process(session, tail, final=True)
                except ClientError as exc:
                    await self.send_error(exc.code, exc.message)
                session.outbox.put_nowait(_END)
                assert session.sender is not None
                with contextlib.suppress(Exception):
                    await session.sender
            else:
                if session.sender is not None:
                    session.sender.cancel()
                    with contextlib.suppress(BaseException):
                        await session.sender
                self.c.queue.cancel_session(session.id)
                # What was queued for the sender is dropped with its futures.
                while not session.outbox.empty():
                    session.outbox.get_nowait()
            summary: dict[str, Any] = {}
            report: dict[str, Any] | None = None
            try:
                report = await self.service.in_store_thread(
                    self.c.sessions.stop_session, session.id, reason=reason
                )
                summary = session_summary(report)
            except (SessionError, StorageError, PoolError, ClientError) as exc:
                summary = {"error": str(exc)}
            vtt_path = None
            if session.vtt is not None:
                try:
                    session.vtt.close()
                    vtt_path = self.c.vtt_dir / f"{session.id}.vtt" if self.c.vtt_dir else None
                    summary["vtt"] = str(vtt_path)
                except OSError as exc:
                    summary["vtt_error"] = str(exc)
            if notify and report is not None and report.get("transcriptions"):
                try:
                    summary["snapshot"] = await self.service.in_store_thread(
                        self.service.snapshot, session.id, report, vtt_path
                    )
                except Exception as exc:  # a summary without its snapshot is still a summary
                    summary["snapshot_error"] = f"{type(exc).__name__}: {exc}"
            if notify:
                await self.send({"type": "end", "session_id": session.id, "reason": reason,
                                 "summary": summary})  # fmt: skip
        finally:
            self.session = None
            session.cutter.close()
            self.c.memory.release(session.resource)


async def _start_all_threads(
    loop: asyncio.AbstractEventLoop,
    executor: ThreadPoolExecutor,
    count: int,
    then: Callable[[], object] | None = None,
) -> None:
    barrier = threading.Barrier(count)

    def meet() -> None:
        barrier.wait(timeout=30)
        if then is not None:
            then()

    await asyncio.gather(*(loop.run_in_executor(executor, meet) for _ in range(count)))


def session_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The client-facing summary of a stopped session's report."""
    keys = (
        "session_id",
        "state",
        "stop_reason",
        "duration_seconds",
        "audio_seconds",
        "transcriptions",
        "words",
        "words_per_minute",
        "checkpoints",
    )
    summary = {k: report.get(k) for k in keys}
    summary["segments"] = summary.pop("transcriptions")
    storage = report.get("storage")
    if isinstance(storage, dict):
        summary["stored"] = {k: storage.get(k) for k in ("transcripts", "size_bytes", "is_active")}
    return summary
