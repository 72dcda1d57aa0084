"""The service's composition root: one place that builds and wires every part.

:func:`create_service` turns a :class:`ServiceConfig` into a
:class:`~reference_app.service.server.TranscriptionService` whose parts know
nothing of each other's construction (flask-tutorial style, as
``reference_app.config.create_app`` does for the command-line pipeline):

- the encrypted transcript store (``--store``), its SQLite connections taken
  from a :class:`~reference_app.service.pool.ConnectionPool`;
- the session manager (limits, idle expiry, checkpoints under ``data_dir``),
  recording each final transcript into the store;
- the :class:`~reference_app.service.workqueue.WorkOrderQueue` of
  transcription jobs, archiving completed orders to
  ``data_dir/work-orders.jsonl``;
- the :class:`~reference_app.service.memory.MemoryManager`;
- the adaptive transcript cache, keyed by each utterance's audio;
- the metrics collector with its retention window, and the app's memory
  monitor for the memory tier;
- one transcription engine per worker thread.

:class:`ServiceThread` runs a service on its own event loop in a background
thread: what tests and embedding programs use.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reference_app import faults
from reference_app.cache import AdaptiveMemoryCache, TranscriptCache
from reference_app.config import AppConfig, create_app
from reference_app.metrics import MetricsCollector
from reference_app.service.memory import MemoryManager
from reference_app.service.pool import ConnectionPool
from reference_app.service.server import Components, ServiceLimits, TranscriptionService
from reference_app.service.workqueue import OrderArchive, WorkOrderQueue
from reference_app.sessions import SessionManager
from reference_app.storage import SecureStorage
from reference_app.transcription import Engine, create_engine

MiB = 1024 * 1024


class ServiceConfigError(ValueError):
    """A service setting out of range; the message names it and the expected form."""


@dataclass(frozen=True)
class ServiceConfig:
    """Every setting of ``serve``; defaults are the command's defaults."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8765
    store: Path | None = None
    vtt_dir: Path | None = None
    # transcription
    engine: str = "pocketsphinx"
    grammar: Path | None = None
    phrases: tuple[str, ...] = ()
    model_path: Path | None = None
    model_size: str = "base"
    workers: int = 2
    # connection pool of the store
    pool_size: int = 4
    pool_idle_ttl: float = 300.0
    pool_acquire_timeout: float = 5.0
    pool_max_uses: int | None = None
    store_threads: int = 2
    max_storage_mb: float = 500.0
    # work-order queue
    queue_size: int = 64
    backpressure_timeout: float = 30.0
    # memory manager
    memory_budget_mb: float = 256.0
    cleanup_threshold: float = 0.8
    idle_seconds: float = 300.0
    # sessions
    max_sessions: int = 16
    session_idle_timeout: float = 3600.0
    checkpoint_interval: float = 300.0
    # protocol
    max_frame_bytes: int = 256 * 1024
    partial_seconds: float = 1.0
    max_utterance_seconds: float = 15.0
    # upkeep
    maintenance_interval: float = 5.0
    metrics_interval: float = 5.0
    metrics_retention: float = 3600.0
    metrics_max_samples: int = 10_000
    cache_size: int = 500
    faults: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        faults.validate(self.faults)
        try:
            loopback = self.host == "localhost" or ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ServiceConfigError(
                f"--host {self.host!r}: the service listens on loopback only "
                "(127.0.0.1, ::1 or localhost)"
            )
        if not 0 <= self.port <= 65535:
            raise ServiceConfigError(f"--port {self.port}: expected 0-65535 (0 = any free port)")
        for name in ("workers", "pool_size", "queue_size", "max_sessions", "store_threads"):
            if getattr(self, name) < 1:
                raise ServiceConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.cleanup_threshold <= 1:
            raise ServiceConfigError(
                f"cleanup_threshold must be in (0, 1], got {self.cleanup_threshold}"
            )
        if self.max_frame_bytes < 1024:
            raise ServiceConfigError(
                f"max_frame_bytes must be at least 1024, got {self.max_frame_bytes}"
            )

    def replace(self, **changes: Any) -> ServiceConfig:
        return dataclasses.replace(self, **changes)


def create_service(config: ServiceConfig) -> TranscriptionService:
    """Build every part of the service for ``config`` (nothing runs until ``start``)."""
    active = config.faults
    closers: list[Any] = []
    app = create_app(
        AppConfig(
            engine=config.engine,
            grammar=config.grammar,
            phrases=config.phrases,
            model_path=config.model_path,
            model_size=config.model_size,
            faults=active,
        )
    )
    closers.append(app.close)
    metrics = MetricsCollector(
        retention_seconds=config.metrics_retention,
        max_samples=config.metrics_max_samples,
        config_faults=active,
    )
    store = pool = None
    if config.store is not None:
        store = SecureStorage(
            config.store, max_storage_mb=config.max_storage_mb, config_faults=active
        )
        pool = ConnectionPool(
            lambda: store.open_connection(check_same_thread=False),
            max_size=config.pool_size,
            idle_ttl=config.pool_idle_ttl,
            acquire_timeout=config.pool_acquire_timeout,
            max_uses=config.pool_max_uses,
            reset=_rollback,
            name=str(config.store),
            config_faults=active,
        )
        store.use_pool(pool)
    sessions = SessionManager(
        config.data_dir,
        checkpoint_interval_seconds=config.checkpoint_interval,
        max_sessions=config.max_sessions,
        idle_timeout_seconds=config.session_idle_timeout,
        storage=store,
        metrics=metrics,
        recent_limit=10,
        config_faults=active,
    )
    queue = WorkOrderQueue(
        config.queue_size,
        archive=OrderArchive(Path(config.data_dir) / "work-orders.jsonl"),
        config_faults=active,
    )
    memory = MemoryManager(
        int(config.memory_budget_mb * MiB),
        cleanup_threshold=config.cleanup_threshold,
        idle_seconds=config.idle_seconds,
        config_faults=active,
    )
    cache = TranscriptCache(
        AdaptiveMemoryCache(
            initial_size=config.cache_size,
            min_size=min(100, config.cache_size),
            max_size=max(5000, config.cache_size),
            config_faults=active,
        )
    )
    grammar_key = str(config.grammar) if config.grammar else ",".join(config.phrases)

    def engine_factory() -> Engine:
        return create_engine(
            config.engine,
            grammar=config.grammar,
            phrases=config.phrases or None,
            model_path=config.model_path,
            model_size=config.model_size,
            config_faults=active,
        )

    limits = ServiceLimits(
        max_frame_bytes=config.max_frame_bytes,
        partial_seconds=config.partial_seconds,
        backpressure_timeout=config.backpressure_timeout,
        max_utterance_seconds=config.max_utterance_seconds,
        maintenance_interval=config.maintenance_interval,
        metrics_interval=config.metrics_interval,
        workers=config.workers,
        store_threads=config.store_threads,
    )
    components = Components(
        engine_factory=engine_factory,
        engine_key=f"{config.engine}:{config.model_size}:{grammar_key}",
        sessions=sessions,
        queue=queue,
        memory=memory,
        cache=cache,
        metrics=metrics,
        monitor=app.monitor,
        read_memory=app.config.memory_reader,
        store=store,
        pool=pool,
        vtt_dir=config.vtt_dir,
        limits=limits,
        closers=closers,
        config_faults=active,
    )
    if config.vtt_dir is not None:
        config.vtt_dir.mkdir(parents=True, exist_ok=True)
    return TranscriptionService(components, host=config.host, port=config.port)


def _rollback(conn: Any) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


class ServiceThread:
    """A service running on its own event loop in a background thread.

    Example::

        with ServiceThread(ServiceConfig(data_dir=tmp, port=0)) as running:
            stream_file("speech.wav", running.url)
    """

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.service: TranscriptionService | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        assert self.service is not None, "the service is not running"
        return self.service.url

    def start(self, timeout: float = 60.0) -> ServiceThread:
        self._thread = threading.Thread(target=self._run, name="transcription-service")
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the service did not start within {timeout:g} s")
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            self.service = create_service(self.config)
            await self.service.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.service.stop()

    def call(self, fn: Any, timeout: float = 30.0) -> Any:
        """Run ``fn()`` on the service's loop and return its result."""
        assert self.loop is not None

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def stop(self, timeout: float = 60.0) -> None:
        if self._thread is None:
            return
        if self.loop is not None and self._stop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the service did not stop within {timeout:g} s")
        self._thread = None

    def __enter__(self) -> ServiceThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
