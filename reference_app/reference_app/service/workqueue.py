"""A bounded queue of transcription work orders (the real-time streaming design).

Each utterance the service cuts from a client's stream becomes a
:class:`WorkOrder`; worker tasks take orders by priority (finals before
partial transcripts), run them on worker threads and complete them. At most
``max_size`` orders are pending or running: :meth:`WorkOrderQueue.submit`
beyond that raises :class:`QueueFullError`, which the service turns into
backpressure (it tells the client and stops reading its audio until
:meth:`WorkOrderQueue.wait_for_space` says there is room).

A completed order is archived (one JSON line through the ``archive``
callable: id, session, kind, timings, result size) and dropped from memory
with its audio, so the queue's footprint is bounded by ``max_size`` whatever
the number of orders served.

The queue lives on the service's event loop: call it from that loop only.

Fault ``work_orders_never_archived``: completed orders are kept in the
``completed_orders`` table, audio and result included, and never archived;
they do not count against ``max_size``, so nothing pushes back while memory
grows with every utterance served.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reference_app import faults

FAULT_NEVER_ARCHIVED = faults.register(
    "work_orders_never_archived",
    "work-order queue",
    "completed work orders are kept in memory with their audio and result instead of "
    "being archived and dropped",
).name

FINAL, PARTIAL = "final", "partial"


class QueueFullError(Exception):
    """The queue holds ``max_size`` orders; the caller should back off."""


class QueueClosedError(Exception):
    """The queue was closed (the service is shutting down)."""


@dataclass
class WorkOrder:
    """One unit of work: transcribe ``audio`` for ``session_id``."""

    session_id: str
    kind: str
    audio: Any  # int16 numpy array, 16 kHz mono
    priority: int = 0  # lower runs first
    data: dict[str, Any] = field(default_factory=dict)
    id: str = ""
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    result: Any = None
    error: str | None = None
    cancelled: bool = False
    future: asyncio.Future[Any] | None = field(default=None, repr=False)

    @property
    def size_bytes(self) -> int:
        return int(getattr(self.audio, "nbytes", 0))

    def archive_record(self) -> dict[str, Any]:
        result = self.result
        return {
            "id": self.id,
            "session_id": self.session_id,
            "kind": self.kind,
            "priority": self.priority,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "audio_bytes": self.size_bytes,
            "result_chars": len(result.get("text", "")) if isinstance(result, dict) else None,
            "error": self.error,
            "cancelled": self.cancelled,
        }


class WorkOrderQueue:
    """Bounded, prioritised work orders; completed ones archived and dropped.

    Example (inside the event loop)::

        queue = WorkOrderQueue(max_size=64, archive=OrderArchive(path))
        future = queue.submit(WorkOrder("s1", FINAL, pcm))   # QueueFullError when full
        order = await queue.next()                           # a worker's side
        queue.complete(order, {"text": "hello"})
        result = await future
    """

    def __init__(
        self,
        max_size: int = 1000,
        *,
        archive: Callable[[dict[str, Any]], object] | None = None,
        clock: Callable[[], float] = time.time,
        config_faults: Iterable[str] | None = None,
    ) -> None:
        if max_size < 1:
            raise ValueError(f"work-order queue max_size must be at least 1, got {max_size}")
        self.max_size = int(max_size)
        self._archive = archive
        self._clock = clock
        self._never_archive = faults.is_enabled(FAULT_NEVER_ARCHIVED, config_faults)
        self.active_orders: dict[str, WorkOrder] = {}
        self.completed_orders: dict[str, WorkOrder] = {}  # only under the fault
        self._heap: list[tuple[int, int, WorkOrder]] = []
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self._work = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._closed = False
        self.submitted = 0
        self.completed = 0
        self.archived = 0
        self.rejected = 0
        self.cancelled = 0
        self.archive_errors = 0

    # -- producer side --------------------------------------------------------------

    def submit(self, order: WorkOrder) -> asyncio.Future[Any]:
        """Queue ``order``; returns a future of its result. Raises when full or closed."""
        if self._closed:
            raise QueueClosedError("the work-order queue is closed")
        if len(self.active_orders) >= self.max_size:
            self.rejected += 1
            raise QueueFullError(
                f"work-order queue full: {len(self.active_orders)} of {self.max_size} orders "
                "pending or running"
            )
        order.id = order.id or f"wo-{next(self._ids)}"
        order.created_at = self._clock()
        order.future = asyncio.get_running_loop().create_future()
        self.active_orders[order.id] = order
        heapq.heappush(self._heap, (order.priority, next(self._seq), order))
        self.submitted += 1
        self._work.set()
        self._update_space()
        return order.future

    def room(self) -> int:
        """How many more orders fit."""
        return self.max_size - len(self.active_orders)

    async def wait_for_space(self, timeout: float) -> bool:
        """Wait until an order fits; False if ``timeout`` seconds passed first."""
        try:
            await asyncio.wait_for(self._space.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def cancel_session(self, session_id: str) -> int:
        """Drop every pending order of ``session_id`` (its client is gone)."""
        dropped = 0
        for order in list(self.active_orders.values()):
            if order.session_id == session_id and order.started_at is None:
                order.cancelled = True
                self._finish(order)
                dropped += 1
        self.cancelled += dropped
        if dropped:
            self._heap = [entry for entry in self._heap if not entry[2].cancelled]
            heapq.heapify(self._heap)
        return dropped

    # -- worker side -------------------------------------------------------------------

    async def next(self) -> WorkOrder:
        """The next order by priority; waits while there is none."""
        while True:
            if self._closed:
                raise QueueClosedError("the work-order queue is closed")
            while self._heap:
                order = heapq.heappop(self._heap)[2]
                if not order.cancelled:
                    order.started_at = self._clock()
                    return order
            self._work.clear()
            await self._work.wait()

    def complete(self, order: WorkOrder, result: Any = None, error: str | None = None) -> None:
        """Record the outcome, resolve the order's future, archive and drop the order."""
        order.result, order.error = result, error
        self.completed += 1
        self._finish(order)

    def _finish(self, order: WorkOrder) -> None:
        order.finished_at = self._clock()
        future = order.future
        order.future = None
        if future is not None and not future.done():
            if order.cancelled:
                future.cancel()
            elif order.error is not None:
                future.set_exception(RuntimeError(order.error))
            else:
                future.set_result(order.result)
        self.active_orders.pop(order.id, None)
        if self._never_archive:
            self.completed_orders[order.id] = order
        else:
            if self._archive is not None:
                try:
                    self._archive(order.archive_record())
                except OSError:
                    # The archive is a log of what was done; a full disk must
                    # not stop transcription. Counted and shown in the status.
                    self.archive_errors += 1
            self.archived += 1
        self._update_space()

    def _update_space(self) -> None:
        if len(self.active_orders) < self.max_size:
            self._space.set()
        else:
            self._space.clear()

    def close(self) -> None:
        """Cancel what is pending and wake every waiting worker."""
        self._closed = True
        for order in list(self.active_orders.values()):
            if order.started_at is None:
                order.cancelled = True
                self._finish(order)
        self._heap.clear()
        self._work.set()

    def stats(self) -> dict[str, Any]:
        running = sum(1 for o in self.active_orders.values() if o.started_at is not None)
        return {
            "pending": len(self.active_orders) - running,
            "running": running,
            "max_size": self.max_size,
            "submitted": self.submitted,
            "completed": self.completed,
            "archived": self.archived,
            "rejected": self.rejected,
            "cancelled": self.cancelled,
            "held_completed": len(self.completed_orders),
            "archive_errors": self.archive_errors,
        }


class OrderArchive:
    """Appends archived orders as JSON lines to ``path``; keeps one rotated file.

    Bounded on disk: when the file passes ``max_bytes`` it is renamed to
    ``path.1`` (replacing the previous one) and a new file is started.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_bytes: int = 10 * 1024 * 1024) -> None:
        self.path = Path(path)
        self.max_bytes = int(max_bytes)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True) + "\n"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            size = fh.tell()
        if size > self.max_bytes:
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
