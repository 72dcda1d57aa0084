"""Threads: Python threads (with where ``Thread.start`` was called) and native threads.

While a watch is open, ``Thread.start`` is wrapped to record its caller, so a
thread left behind is named with the line that started it. A thread started
before that is named by what it runs; a thread not started through
``threading`` by its ``/proc`` name.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Any

from pytest_memwatch.resources.survivor import (
    Frame,
    Resource,
    mask_digits,
    short_path,
    shown_frame,
    stack,
)

_ORIGIN_ATTR = "_memwatch_origin"
_ORIGIN_DEPTH = 8
_THREADING_FILE = os.path.normcase(threading.__file__)
_RECORDING = 0  # watches currently open; the recorder records only while > 0
_SAVED_START: Any = None
_recorder_lock = threading.Lock()


def _recording_start(self: threading.Thread) -> None:
    if _RECORDING:
        with contextlib.suppress(Exception):
            setattr(self, _ORIGIN_ATTR, stack(sys._getframe(1), _ORIGIN_DEPTH, _THREADING_FILE))
    _SAVED_START(self)


def install_thread_recorder() -> None:
    """Record who starts each thread, only while a watch is open (``Thread.start`` patched)."""
    global _RECORDING, _SAVED_START
    with _recorder_lock:
        _RECORDING += 1
        if _RECORDING == 1 and threading.Thread.start is not _recording_start:
            _SAVED_START = threading.Thread.start
            threading.Thread.start = _recording_start  # type: ignore[method-assign]


def remove_thread_recorder() -> None:
    global _RECORDING
    with _recorder_lock:
        _RECORDING = max(0, _RECORDING - 1)
        # Someone who patched start after us keeps our wrapper in their chain;
        # it stops recording (the count is 0) and only forwards.
        if _RECORDING == 0 and threading.Thread.start is _recording_start:
            threading.Thread.start = _SAVED_START  # type: ignore[method-assign]


def _code_frame(fn: Any) -> Frame | None:
    fn = getattr(fn, "__func__", fn)
    code = getattr(fn, "__code__", None)
    if code is None:
        return None
    return Frame(
        code.co_filename,
        code.co_firstlineno,
        getattr(fn, "__qualname__", code.co_name),
        str(getattr(fn, "__module__", "") or ""),
    )


def describe_thread(t: threading.Thread) -> Resource:
    name = t.name
    origin: tuple[Frame, ...] = getattr(t, _ORIGIN_ATTR, ())
    daemon = "daemon, " if t.daemon else ""
    shown = shown_frame(origin)
    if shown is not None:
        how = f"started at {shown.where()}"
    else:
        # Started before the watch (or through C code): say what it runs instead.
        target = getattr(t, "_target", None)
        if target is None and type(t).run is not threading.Thread.run:
            target = type(t).run
        frame = _code_frame(target) if target is not None else None
        if frame is not None:
            origin = (frame,)
            defined = f"{short_path(frame.filename)}:{frame.lineno}"
            how = f"runs {frame.module}.{frame.function}, defined at {defined}"
        else:
            how = f"runs {getattr(target, '__qualname__', type(t).__name__)}"
    return Resource(
        "thread",
        ("thread", t.ident, t.native_id),
        f"thread {name!r} ({daemon}{how})",
        names=(name,),
        origin=origin,
        signature=f"thread:{mask_digits(name)}",
    )


def _native_tids() -> set[int]:
    try:
        return {int(n) for n in os.listdir("/proc/self/task")}
    except OSError:
        return set()


def _native_name(tid: int) -> str:
    try:
        with open(f"/proc/self/task/{tid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return "?"


def _describe_native(tid: int) -> Resource:
    name = _native_name(tid)
    return Resource(
        "thread",
        ("native", tid),
        f"native thread {name!r} (tid {tid}, not started through threading)",
        names=(name,),
        signature=f"thread:{mask_digits(name)}",
    )


def thread_keys() -> dict[tuple[Any, ...], Any]:
    """Every live thread: Python threads by (ident, native id), the others by tid."""
    out: dict[tuple[Any, ...], Any] = {}
    python_tids: set[int] = set()
    for t in threading.enumerate():
        out[("thread", t.ident, t.native_id)] = t
        if t.native_id is not None:
            python_tids.add(t.native_id)
    for tid in _native_tids() - python_tids:
        out[("native", tid)] = tid
    return out


def describe_thread_entry(value: Any) -> Resource:
    """Describe a value of :func:`thread_keys`: a ``Thread``, or a native thread's tid."""
    return _describe_native(value) if isinstance(value, int) else describe_thread(value)
