"""The audit hook: what this process creates in the temp directory, and where files are opened.

One hook per process (audit hooks cannot be removed), installed when the first
watch opens and doing nothing while none is open. It feeds two kinds of
listener: the :class:`~.tempfiles.TempNotes` of every open watch, and the
:class:`Openers` of the one extra run made to explain a failed check.
"""

from __future__ import annotations

import contextlib
import os
import sys
import weakref
from collections.abc import Iterator
from typing import Any

from pytest_memwatch.resources.survivor import Frame, Resource, ResourceKind, stack
from pytest_memwatch.resources.tempfiles import TempNotes

# Kinds a test opens (descriptors, sockets, temp entries): where each was
# opened can be recorded through the audit hook (see recording_openers).
OPENED_KINDS: tuple[ResourceKind, ...] = ("fd", "socket", "tempfile")
_OPEN_EVENTS = ("open", "socket.__new__", "os.mkdir", "tempfile.mkstemp", "tempfile.mkdtemp")

_TEMP_NOTES: list[TempNotes] = []
_OPENERS: list[Openers] = []
_AUDIT_INSTALLED = False


class Openers:
    """Where files, sockets and temp entries were opened during one recorded run.

    Recording costs a traceback per open, and what it keeps would read as the
    test's own growth, so it runs only in the extra run made to explain a
    failed check (``ResourceChecker.trace_openers``), never while measuring.
    """

    def __init__(self, depth: int) -> None:
        self.depth = max(1, min(depth, 50))
        self.paths: dict[str, tuple[Frame, ...]] = {}
        self.sockets: list[tuple[Any, tuple[Frame, ...]]] = []

    def note(self, event: str, args: tuple[Any, ...], frame: Any) -> None:
        if event == "socket.__new__":
            with contextlib.suppress(TypeError):  # a C-level _socket.socket takes no weakref
                self.sockets.append((weakref.ref(args[0]), stack(frame, self.depth)))
            return
        path = args[0]
        if not isinstance(path, (str, bytes, os.PathLike)):
            return  # open(fd): the descriptor was opened elsewhere
        real = os.path.realpath(os.fsdecode(path))
        self.paths[real] = stack(frame, self.depth)

    def origin(self, res: Resource) -> tuple[Frame, ...]:
        if res.kind == "socket":
            for ref, frames in self.sockets:
                sock = ref()
                with contextlib.suppress(OSError, AttributeError):
                    if sock is not None and sock.fileno() == res.key[1]:
                        return frames
            # A socket object gone while its descriptor stays open (detached,
            # or its fd taken over): the earliest such creation not yet claimed.
            for n, (ref, frames) in enumerate(self.sockets):
                if ref() is None and frames:
                    self.sockets[n] = (ref, ())
                    return frames
            return ()
        target = res.key[2] if res.kind == "fd" else res.key[1]
        found = self.paths.get(target) or self.paths.get(os.path.realpath(target))
        if found is None and res.kind == "tempfile":
            # A temp directory: where its first entry was made.
            prefix = os.path.realpath(target) + os.sep
            found = next((f for p, f in self.paths.items() if p.startswith(prefix)), None)
        return found or ()


def _audit(event: str, args: tuple[Any, ...]) -> None:
    # Called for every audited event in the process: return at once when no
    # watch is open, and never raise (an exception here would fail the
    # operation being audited).
    if not _TEMP_NOTES and not _OPENERS:
        return
    if _OPENERS and event in _OPEN_EVENTS:
        with contextlib.suppress(Exception):
            for openers in _OPENERS:
                openers.note(event, args, sys._getframe(1))
    if not _TEMP_NOTES:
        return
    try:
        if event == "open":
            if not isinstance(args[2], int) or not args[2] & os.O_CREAT:
                return
            path = args[0]
        elif event == "os.mkdir":
            path = args[0]
        elif event in ("os.rename", "os.replace", "os.link", "os.symlink", "socket.bind"):
            path = args[1]
            if event in ("os.rename", "os.replace") and isinstance(args[0], (str, bytes)):
                for notes in _TEMP_NOTES:
                    notes.forget(args[0])
        elif event in ("os.remove", "os.rmdir"):
            if isinstance(args[0], (str, bytes, os.PathLike)):
                for notes in _TEMP_NOTES:
                    notes.forget(args[0])
            return
        else:
            return
        if isinstance(path, (str, bytes, os.PathLike)):
            for notes in _TEMP_NOTES:
                notes.note(path)
    except Exception:
        return


def _install_audit() -> None:
    global _AUDIT_INSTALLED
    if not _AUDIT_INSTALLED:
        # Audit hooks cannot be removed: one is installed per process, the first
        # time a watch opens, and does nothing while none is open.
        sys.addaudithook(_audit)
        _AUDIT_INSTALLED = True


def watch_temp() -> TempNotes:
    """Start noting the temp entries this process creates (until :func:`unwatch_temp`)."""
    _install_audit()
    notes = TempNotes()
    _TEMP_NOTES.append(notes)
    return notes


def unwatch_temp(notes: TempNotes) -> None:
    with contextlib.suppress(ValueError):
        _TEMP_NOTES.remove(notes)


@contextlib.contextmanager
def recording_openers(depth: int) -> Iterator[Openers]:
    """Record, inside the block, where files, sockets and temp entries are opened."""
    openers = Openers(depth)
    _install_audit()
    _OPENERS.append(openers)
    try:
        yield openers
    finally:
        _OPENERS.remove(openers)
