"""Asyncio tasks still pending, on any event loop that can be found.

A task is named by its coroutine, where that is defined and where it waits;
liveness is checked through a weak reference, so the watch keeps no task alive.
"""

from __future__ import annotations

import contextlib
import gc
import sys
import weakref
from typing import Any

from pytest_memwatch.resources.survivor import Frame, Resource, short_path


def pending_tasks() -> list[Any]:
    """Pending tasks of every event loop that can be found.

    The running loop, the policy's loop, and loops and tasks among the objects
    the collector tracks. Between measured tests the long-lived heap is frozen
    (see ``GcHygiene``), so ``gc.get_objects()`` lists only what is new: cheap.
    """
    aio = sys.modules.get("asyncio")
    if aio is None:
        return []
    loops: list[Any] = []
    with contextlib.suppress(RuntimeError):
        loops.append(aio.get_running_loop())
    policy = getattr(sys.modules.get("asyncio.events"), "_event_loop_policy", None)
    local_loop = getattr(getattr(policy, "_local", None), "_loop", None)
    if local_loop is not None:
        loops.append(local_loop)
    task_types = tuple(
        t for t in (getattr(aio, "Task", None), getattr(aio.tasks, "_PyTask", None)) if t
    )
    found: dict[int, Any] = {}
    # Every task asyncio has scheduled, on any loop in any thread, whatever the
    # collector can see: a loop made before the heap was frozen is not in
    # gc.get_objects(). asyncio's own registry (a private WeakSet, named per
    # version; checked on CPython 3.11.7, 3.12.1 and 3.13.0); the scan below
    # covers the rest.
    scheduled = getattr(aio.tasks, "_scheduled_tasks", None)  # 3.12, 3.13
    if scheduled is None:
        scheduled = getattr(aio.tasks, "_all_tasks", None)  # 3.11
    if scheduled is not None:
        with contextlib.suppress(Exception):
            for task in list(scheduled):
                found[id(task)] = task
    for obj in gc.get_objects():
        try:
            if isinstance(obj, aio.AbstractEventLoop):
                loops.append(obj)
            elif task_types and isinstance(obj, task_types) and not obj.done():
                found[id(obj)] = obj
        except ReferenceError:
            # A weakref.proxy whose referent is gone: isinstance() reads its
            # __class__ through the proxy and raises. Neither loop nor task.
            continue
    seen_loops: set[int] = set()
    for loop in loops:
        if id(loop) in seen_loops:
            continue
        seen_loops.add(id(loop))
        with contextlib.suppress(Exception):
            for task in aio.all_tasks(loop):
                found[id(task)] = task
    return [t for t in found.values() if not t.done()]


def describe_task(task: Any) -> Resource:
    coro = task.get_coro()
    code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
    qualname = str(getattr(coro, "__qualname__", type(coro).__name__))
    frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
    module = str(frame.f_globals.get("__name__", "")) if frame is not None else ""
    origin: tuple[Frame, ...] = ()
    parts = [f"coroutine {qualname}"]
    if code is not None:
        origin = (Frame(code.co_filename, code.co_firstlineno, qualname, module),)
        parts.append(f"defined at {short_path(code.co_filename)}:{code.co_firstlineno}")
    source = getattr(task, "_source_traceback", None)
    if source:
        # asyncio's debug mode records where the task was created.
        last = source[-1]
        parts.append(f"created at {short_path(last.filename)}:{last.lineno}")
    if frame is not None:
        parts.append(f"waiting at {short_path(frame.f_code.co_filename)}:{frame.f_lineno}")
    name = task.get_name()
    return Resource(
        "task",
        ("task", id(task)),
        f"asyncio task {name!r} ({', '.join(parts)})",
        names=(qualname, name),
        origin=origin,
        signature=f"task:{qualname}",
        ref=weakref.ref(task),
    )
