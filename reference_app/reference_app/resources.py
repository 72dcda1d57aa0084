"""Resource manager: temp files, weak references and cleanup callbacks (seed 004).

One :class:`ResourceManager` owns the things a component must give back: temp
files it created, callbacks that release native resources, and weak references
to objects whose lifetime it wants to observe without extending it. It is a
context manager, and every live manager is also cleaned at interpreter exit.

The exit hook is registered once for the module and walks a ``WeakSet`` of live
managers: registering a bound method per manager with :mod:`atexit` would keep
every manager (and everything it references) alive until exit, which is the
leak the ``atexit_per_manager`` fault reproduces.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reference_app import faults

log = logging.getLogger(__name__)

COMPONENT = "resource manager"
faults.register(
    "atexit_per_manager",
    COMPONENT,
    "each ResourceManager registers its own atexit hook, so atexit holds every manager "
    "(and its callbacks and their closures) until the interpreter exits",
)

_LIVE_MANAGERS: weakref.WeakSet[ResourceManager] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


def cleanup_live_managers() -> None:
    """The exit hook: final cleanup of every live manager (also for a forced exit)."""
    with _LIVE_LOCK:
        managers = list(_LIVE_MANAGERS)
    for manager in managers:
        manager.cleanup(final=True)


atexit.register(cleanup_live_managers)


@dataclass(frozen=True)
class CallbackHandle:
    """Returned by :meth:`ResourceManager.add_cleanup_callback`; pass it back to remove."""

    id: int
    name: str


@dataclass(frozen=True)
class ResourceInfo:
    temp_files: int
    files_in_use: int
    callbacks: int
    tracked_objects: int
    alive_objects: int
    files_deleted: int
    cleanups: int


class ResourceManager:
    """Tracks temp files, weakly referenced objects and cleanup callbacks.

    Example::

        with ResourceManager() as resources:
            path = resources.add_temp_file(make_temp_wav())
            ...  # path is deleted when the block ends, on error too
    """

    def __init__(self, *, config_faults: Iterable[str] = ()) -> None:
        self._lock = threading.RLock()
        self._temp_files: set[Path] = set()
        # Files a live writer still uses (a recording in progress): a cleanup
        # under memory pressure must not pull them from under the writer.
        self._in_use: set[Path] = set()
        self._callbacks: dict[int, tuple[str, Callable[[], object]]] = {}
        self._refs: list[weakref.ref[Any]] = []
        self._ids = itertools.count(1)
        self._files_deleted = 0
        self._cleanups = 0
        if faults.is_enabled("atexit_per_manager", config_faults):
            # The leak: atexit keeps a strong reference to this bound method.
            atexit.register(self.cleanup)
        with _LIVE_LOCK:
            _LIVE_MANAGERS.add(self)

    # -- temp files ---------------------------------------------------------------
    def add_temp_file(self, path: str | os.PathLike[str], *, in_use: bool = False) -> Path:
        """Register ``path`` to be deleted at cleanup; returns it as a ``Path``.

        ``in_use=True`` marks a file a writer still holds: :meth:`cleanup`
        (what memory-pressure handlers call) leaves it alone until
        :meth:`done_with`, :meth:`delete_temp_file` or :meth:`release_temp_file`;
        only the final cleanup (:meth:`close`, interpreter exit) removes it.
        """
        p = Path(path)
        with self._lock:
            self._temp_files.add(p)
            if in_use:
                self._in_use.add(p)
        return p

    def done_with(self, path: str | os.PathLike[str]) -> None:
        """The writer of ``path`` is finished: the next cleanup may delete it."""
        with self._lock:
            self._in_use.discard(Path(path))

    def release_temp_file(self, path: str | os.PathLike[str]) -> None:
        """Stop tracking ``path`` without deleting it (the caller now owns it)."""
        p = Path(path)
        with self._lock:
            self._temp_files.discard(p)
            self._in_use.discard(p)

    def delete_temp_file(self, path: str | os.PathLike[str]) -> bool:
        """Delete ``path`` now and stop tracking it; True if a file was removed."""
        p = Path(path)
        with self._lock:
            self._temp_files.discard(p)
            self._in_use.discard(p)
        return self._unlink(p)

    @property
    def temp_files(self) -> frozenset[Path]:
        with self._lock:
            return frozenset(self._temp_files)

    # -- weak references ----------------------------------------------------------
    def track(self, obj: object) -> weakref.ref[Any]:
        """Observe ``obj`` without keeping it alive; dead references are pruned at cleanup."""
        ref = weakref.ref(obj)
        with self._lock:
            self._refs.append(ref)
        return ref

    # -- callbacks ----------------------------------------------------------------
    def add_cleanup_callback(self, fn: Callable[[], object], name: str = "") -> CallbackHandle:
        """Run ``fn`` at every :meth:`cleanup` until removed with the returned handle."""
        handle = CallbackHandle(next(self._ids), name or getattr(fn, "__qualname__", repr(fn)))
        with self._lock:
            self._callbacks[handle.id] = (handle.name, fn)
        return handle

    def remove_cleanup_callback(self, handle: CallbackHandle) -> bool:
        with self._lock:
            return self._callbacks.pop(handle.id, None) is not None

    # -- cleanup ------------------------------------------------------------------
    def cleanup(self, *, final: bool = False) -> None:
        """Run callbacks, delete temp files, prune dead references.

        Files still in use (see :meth:`add_temp_file`) are kept unless
        ``final``: memory-pressure cleanup runs while recordings go on.
        A failing callback is logged and does not stop the others: cleanup runs
        on error paths and at exit, where raising would hide the original error.
        """
        with self._lock:
            callbacks = list(self._callbacks.values())
            files = [p for p in self._temp_files if final or p not in self._in_use]
            self._temp_files.difference_update(files)
            self._in_use.difference_update(files)
            self._refs = [r for r in self._refs if r() is not None]
            self._cleanups += 1
        for name, fn in callbacks:
            try:
                fn()
            except Exception:
                log.exception("cleanup callback %s failed", name)
        for path in files:
            self._unlink(path)

    def _unlink(self, path: Path) -> bool:
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.warning("could not delete temp file %s: %s", path, exc)
            return False
        with self._lock:
            self._files_deleted += 1
        return True

    def info(self) -> ResourceInfo:
        with self._lock:
            return ResourceInfo(
                temp_files=len(self._temp_files),
                files_in_use=len(self._in_use),
                callbacks=len(self._callbacks),
                tracked_objects=len(self._refs),
                alive_objects=sum(1 for r in self._refs if r() is not None),
                files_deleted=self._files_deleted,
                cleanups=self._cleanups,
            )

    def close(self) -> None:
        """Clean up everything, files in use too, and forget this manager."""
        self.cleanup(final=True)
        with self._lock:
            self._callbacks.clear()
            self._refs.clear()
        with _LIVE_LOCK:
            _LIVE_MANAGERS.discard(self)

    def __enter__(self) -> ResourceManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
