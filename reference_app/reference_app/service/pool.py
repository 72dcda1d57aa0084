"""A bounded connection pool with an idle time-to-live (the real-time streaming design).

The service's transcript store opens its SQLite connections through this pool
instead of one per operation: at most ``max_size`` connections exist at once;
a caller that finds them all busy waits up to ``acquire_timeout`` seconds and
then gets :class:`PoolExhaustedError`, which says what to change. A connection
unused for ``idle_ttl`` seconds is closed by :meth:`ConnectionPool.reap_idle`
(the service calls it on its maintenance loop), and :meth:`ConnectionPool.close`
closes every connection: the idle ones at once, the busy ones as they come back.

With ``max_uses`` a connection is closed after that many uses and replaced on
demand. The service sets it because CPython's sqlite3 keeps a weak reference
to every cursor a connection makes and drops the dead ones only every 200
cursors: a long-lived connection's list saws up to 200 entries, which a leak
check over a few dozen requests reads as steady growth.

The pool is thread-safe: the service uses it from its worker threads.

Fault ``pool_idle_never_closed``: idle connections past their TTL are dropped
from the pool's books but never closed; they stay open in a module-level list,
so every reap cycle followed by new demand leaves descriptors and native memory
behind.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from reference_app import faults

FAULT_IDLE_NEVER_CLOSED = faults.register(
    "pool_idle_never_closed",
    "connection pool",
    "idle connections past their TTL leave the pool's books but are never closed "
    "(one open SQLite connection and its descriptors per reap)",
).name

log = logging.getLogger(__name__)

C = TypeVar("C")

# Where reaped connections go under the fault: "kept in case someone needs
# them", and never looked at again.
_REAPED_BUT_OPEN: list[Any] = []


class PoolError(Exception):
    """The pool cannot hand out a connection; the message says why."""


class PoolExhaustedError(PoolError):
    """Every connection is in use and none came back in time."""


class PoolClosedError(PoolError):
    """The pool was closed (the service is shutting down)."""


@dataclass
class _Slot(Generic[C]):
    conn: C
    created: float
    last_used: float
    uses: int = 0


class ConnectionPool(Generic[C]):
    """At most ``max_size`` connections made by ``factory``, reused, closed when idle.

    Example::

        pool = ConnectionPool(lambda: sqlite3.connect(path, check_same_thread=False),
                              max_size=4, idle_ttl=300, name=str(path))
        with pool.connection() as conn:
            conn.execute("SELECT 1")
        pool.reap_idle()     # on a timer: closes connections idle for 300 s
        pool.close()
    """

    def __init__(
        self,
        factory: Callable[[], C],
        *,
        max_size: int = 4,
        idle_ttl: float = 300.0,
        acquire_timeout: float = 5.0,
        max_uses: int | None = None,
        close: Callable[[C], object] | None = None,
        reset: Callable[[C], object] | None = None,
        name: str = "the transcript store",
        clock: Callable[[], float] = time.monotonic,
        config_faults: Iterable[str] | None = None,
    ) -> None:
        if max_size < 1:
            raise ValueError(f"pool max_size must be at least 1, got {max_size}")
        if idle_ttl <= 0 or acquire_timeout < 0:
            raise ValueError("idle_ttl must be positive and acquire_timeout not negative")
        self._factory = factory
        self._close_fn = close if close is not None else _close
        self._reset = reset
        self.max_size = int(max_size)
        self.idle_ttl = float(idle_ttl)
        self.acquire_timeout = float(acquire_timeout)
        if max_uses is not None and max_uses < 1:
            raise ValueError(f"max_uses must be at least 1 (or None), got {max_uses}")
        self.max_uses = max_uses
        self.name = name
        self._clock = clock
        self._never_close_idle = faults.is_enabled(FAULT_IDLE_NEVER_CLOSED, config_faults)
        self._cond = threading.Condition()
        self._idle: list[_Slot[C]] = []  # most recently used last
        self._busy: dict[int, _Slot[C]] = {}
        self._closed = False
        self._creating = 0
        self.created = 0
        self.closed_count = 0
        self.reaped = 0
        self.retired = 0
        self.waits = 0
        self.exhausted = 0

    # -- handing out -----------------------------------------------------------

    @contextlib.contextmanager
    def connection(self) -> Iterator[C]:
        """A connection for the ``with`` block; it goes back to the pool after."""
        slot = self._acquire()
        ok = False
        try:
            yield slot.conn
            ok = True
        finally:
            self._release(slot, ok)

    def _acquire(self) -> _Slot[C]:
        deadline = time.monotonic() + self.acquire_timeout
        with self._cond:
            waited = False
            while True:
                if self._closed:
                    raise PoolClosedError(f"the connection pool of {self.name} is closed")
                if self._idle:
                    slot = self._idle.pop()
                    self._busy[id(slot)] = slot
                    return slot
                if len(self._busy) + self._creating < self.max_size:
                    self._creating += 1  # reserved before the slow connect, done unlocked
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.exhausted += 1
                    raise PoolExhaustedError(
                        f"connection pool exhausted: all {self.max_size} connections to "
                        f"{self.name} stayed in use for {self.acquire_timeout:g} s; raise the "
                        "pool size (--pool-size) or lower the number of workers (--workers)"
                    )
                if not waited:
                    self.waits += 1
                    waited = True
                self._cond.wait(remaining)
        try:
            conn = self._factory()
        except BaseException:
            with self._cond:
                self._creating -= 1
                self._cond.notify()
            raise
        now = self._clock()
        slot = _Slot(conn, now, now)
        with self._cond:
            self._creating -= 1
            self.created += 1
            self._busy[id(slot)] = slot
        return slot

    def _release(self, slot: _Slot[C], ok: bool) -> None:
        keep = ok
        if keep and self._reset is not None:
            try:
                self._reset(slot.conn)
            except Exception as exc:  # a connection that cannot be reset is not reused
                log.warning("discarding a connection to %s: %s", self.name, exc)
                keep = False
        slot.uses += 1
        if keep and self.max_uses is not None and slot.uses >= self.max_uses:
            keep = False  # retired: closed below, a fresh one made on demand
            with self._cond:
                self.retired += 1
        with self._cond:
            self._busy.pop(id(slot), None)
            slot.last_used = self._clock()
            if keep and not self._closed:
                self._idle.append(slot)
                self._cond.notify()
                return
            self._cond.notify()
        # After an error the connection may be in any state: close it, a new
        # one is cheap.
        self._close_slot(slot)

    # -- upkeep ------------------------------------------------------------------

    def reap_idle(self) -> int:
        """Close connections idle for longer than ``idle_ttl``; returns how many."""
        now = self._clock()
        with self._cond:
            stale = [s for s in self._idle if now - s.last_used > self.idle_ttl]
            if not stale:
                return 0
            self._idle = [s for s in self._idle if now - s.last_used <= self.idle_ttl]
            self.reaped += len(stale)
        for slot in stale:
            if self._never_close_idle:
                _REAPED_BUT_OPEN.append(slot.conn)
            else:
                self._close_slot(slot)
        return len(stale)

    def close(self) -> None:
        """Close every idle connection now; busy ones are closed when released."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._cond.notify_all()
        for slot in idle:
            self._close_slot(slot)

    def _close_slot(self, slot: _Slot[C]) -> None:
        try:
            self._close_fn(slot.conn)
        except Exception as exc:
            log.warning("closing a connection to %s failed: %s", self.name, exc)
        with self._cond:
            self.closed_count += 1

    # -- figures -------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Connections open in the pool (idle and in use)."""
        with self._cond:
            return len(self._idle) + len(self._busy)

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {
                "size": len(self._idle) + len(self._busy),
                "idle": len(self._idle),
                "in_use": len(self._busy),
                "max_size": self.max_size,
                "idle_ttl_seconds": self.idle_ttl,
                "created": self.created,
                "closed": self.closed_count,
                "reaped": self.reaped,
                "retired": self.retired,
                "waits": self.waits,
                "exhausted": self.exhausted,
            }

    def __enter__(self) -> ConnectionPool[C]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close(conn: Any) -> None:
    conn.close()
