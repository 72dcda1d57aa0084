"""Resource leaks: what a test leaves running or open once it and its fixtures are torn down.

A :class:`ResourceWatch` is started before a test and finished after it. It
compares what the process had before with what it has after, and names every
new survivor of six kinds:

- ``thread``: a Python thread (name, and where ``Thread.start`` was called: the
  watch records the caller while it runs) or a native thread (``/proc`` name);
- ``fd``: an open file descriptor, with its path or type (``pipe:[…]``);
- ``socket``: a socket descriptor, with its peer or local address;
- ``process``: a child process, with its pid and command line (a zombie is one
  nobody waited for);
- ``tempfile``: an entry this process created at the top of the temp directory
  (seen through an audit hook, so other processes' files are never blamed);
- ``task``: a pending asyncio task, with its coroutine and where it is defined.

What is already shutting down gets a grace period: the check is repeated with
a doubling pause (10, 20, 40 … ms) until nothing is left or the grace is used
up. Ignore rules (``KIND:GLOB``) and "ignore what existed at session start"
drop known survivors. The snapshots cost a directory listing or two and are
taken only for tests whose resources are checked. Nothing here imports pytest.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import re
import socket
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pytest_memwatch.base.verdict import Verdict, VerdictSource
from pytest_memwatch.config.rules import DEFAULT_RULES, IgnoreRule, parse_rules

KINDS = ("thread", "fd", "socket", "process", "tempfile", "task")
DEFAULT_GRACE = 1.0
# How many survivors a failure message names before "and N more".
MESSAGE_ITEMS = 5
_FIRST_PAUSE = 0.01


# -- ignore rules ------------------------------------------------------------------


# -- what a survivor is ------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """One frame of where a thread was started or a coroutine is defined."""

    filename: str
    lineno: int
    function: str
    module: str

    def where(self) -> str:
        return f"{_short_path(self.filename)}:{self.lineno} in {self.function}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "filename": self.filename,
            "lineno": self.lineno,
            "function": self.function,
            "module": self.module,
        }


@dataclass(frozen=True, eq=False)
class Resource:
    """One thread, descriptor, process, temp entry or task, described for people and rules.

    ``key`` identifies it within the process (for diffs and the session-end
    re-check); ``names`` are what ignore rules match; ``signature`` is what
    "ignore what existed at session start" compares (``None``: never ignored so).
    """

    kind: str
    key: tuple[Any, ...]
    description: str
    names: tuple[str, ...] = ()
    origin: tuple[Frame, ...] = ()
    signature: str | None = None
    # A weak reference to the object (a task) when liveness is checked through it.
    ref: Any = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.names[0] if self.names else "",
            "description": self.description,
            "origin": [f.to_dict() for f in self.origin],
        }


def _short_path(path: str) -> str:
    # Relative to the working directory when inside it: what a test id shows too.
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def _mask_digits(text: str) -> str:
    # "Thread-12 (worker)" and "Thread-3 (worker)" are the same kind of thread.
    return re.sub(r"\d+", "#", text)


@functools.cache
def _stdlib_dirs() -> tuple[str, ...]:
    # sysconfig is imported on first need: it is slow to import, and most
    # sessions never describe a thread's starting frame.
    import sysconfig

    paths = sysconfig.get_paths()
    return tuple(
        os.path.normcase(p) + os.sep for p in {paths.get("stdlib"), paths.get("platstdlib")} if p
    )


def _is_stdlib(filename: str) -> bool:
    name = os.path.normcase(filename)
    if "site-packages" in name or "dist-packages" in name:
        return False
    return name.startswith(_stdlib_dirs()) or name.startswith("<frozen")


def _shown_frame(frames: Sequence[Frame]) -> Frame | None:
    """The frame a message shows: the innermost outside the standard library.

    A thread started by a ``ThreadPoolExecutor`` is started in
    ``concurrent/futures/thread.py``; the caller that submitted the work is what
    the reader can fix.
    """
    for f in frames:
        if not _is_stdlib(f.filename):
            return f
    return frames[0] if frames else None


# -- threads -------------------------------------------------------------------------

_ORIGIN_ATTR = "_memwatch_origin"
_ORIGIN_DEPTH = 8
_THREADING_FILE = os.path.normcase(threading.__file__)
_RECORDING = 0  # watches currently open; the recorder records only while > 0
_SAVED_START: Any = None
_recorder_lock = threading.Lock()


def _caller_frames(frame: Any) -> tuple[Frame, ...]:
    out: list[Frame] = []
    while frame is not None and len(out) < _ORIGIN_DEPTH:
        code = frame.f_code
        if os.path.normcase(code.co_filename) != _THREADING_FILE:
            out.append(
                Frame(
                    code.co_filename,
                    frame.f_lineno,
                    code.co_name,
                    str(frame.f_globals.get("__name__", "")),
                )
            )
        frame = frame.f_back
    return tuple(out)


def _recording_start(self: threading.Thread) -> None:
    if _RECORDING:
        with contextlib.suppress(Exception):
            setattr(self, _ORIGIN_ATTR, _caller_frames(sys._getframe(1)))
    _SAVED_START(self)


def _install_thread_recorder() -> None:
    """Record who starts each thread, only while a watch is open (``Thread.start`` patched)."""
    global _RECORDING, _SAVED_START
    with _recorder_lock:
        _RECORDING += 1
        if _RECORDING == 1 and threading.Thread.start is not _recording_start:
            _SAVED_START = threading.Thread.start
            threading.Thread.start = _recording_start  # type: ignore[method-assign]


def _remove_thread_recorder() -> None:
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


def _describe_thread(t: threading.Thread) -> Resource:
    name = t.name
    origin: tuple[Frame, ...] = getattr(t, _ORIGIN_ATTR, ())
    daemon = "daemon, " if t.daemon else ""
    shown = _shown_frame(origin)
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
            defined = f"{_short_path(frame.filename)}:{frame.lineno}"
            how = f"runs {frame.module}.{frame.function}, defined at {defined}"
        else:
            how = f"runs {getattr(target, '__qualname__', type(t).__name__)}"
    return Resource(
        "thread",
        ("thread", t.ident, t.native_id),
        f"thread {name!r} ({daemon}{how})",
        names=(name,),
        origin=origin,
        signature=f"thread:{_mask_digits(name)}",
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
        signature=f"thread:{_mask_digits(name)}",
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


def _describe_thread_entry(value: Any) -> Resource:
    return _describe_native(value) if isinstance(value, int) else _describe_thread(value)


# -- descriptors and sockets ---------------------------------------------------------

_FD_DIR = "/proc/self/fd"


def fd_targets() -> dict[int, str]:
    """Open descriptors and what each points to (``readlink`` of ``/proc/self/fd/N``)."""
    try:
        names = os.listdir(_FD_DIR)
    except OSError:
        return _fd_targets_psutil()
    out: dict[int, str] = {}
    for n in names:
        try:
            out[int(n)] = os.readlink(f"{_FD_DIR}/{n}")
        except (OSError, ValueError):
            # The listing's own descriptor, already closed by now.
            continue
    return out


def _fd_targets_psutil() -> dict[int, str]:
    try:
        import psutil

        proc = psutil.Process()
        out = {f.fd: f.path for f in proc.open_files() if f.fd >= 0}
        for c in proc.net_connections(kind="all"):
            if c.fd >= 0:
                out[c.fd] = "socket:"
        return out
    except Exception:  # no psutil, or not allowed to read this process
        return {}


def _addr(value: Any) -> str:
    if isinstance(value, tuple) and len(value) >= 2:
        host, port = value[0], value[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value) or "(unnamed)"


def _socket_info(fd: int) -> tuple[str, str]:
    """(what rules match, description) of a socket descriptor, read through a duplicate."""
    try:
        dup = os.dup(fd)
    except OSError:
        return "", "socket"
    try:
        s = socket.socket(fileno=dup)
    except OSError:
        os.close(dup)
        return "", "socket"
    with s:
        if s.family == socket.AF_UNIX:
            proto = "unix"
        elif s.type == socket.SOCK_STREAM:
            proto = "tcp"
        elif s.type == socket.SOCK_DGRAM:
            proto = "udp"
        else:
            proto = s.family.name
        try:
            local = _addr(s.getsockname())
        except OSError:
            local = "?"
        try:
            peer = _addr(s.getpeername())
        except OSError:
            peer = None
        listening = False
        with contextlib.suppress(OSError, AttributeError):
            listening = bool(s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
    if peer:
        return peer, f"{proto} {local} -> {peer}"
    if listening:
        return local, f"{proto} listening on {local}"
    return local, f"{proto} {local}, not connected"


def _describe_fd(fd: int, target: str) -> Resource:
    if target.startswith("socket:"):
        name, what = _socket_info(fd)
        return Resource(
            "socket",
            ("fd", fd, target),
            f"socket fd {fd} ({what})",
            names=(name, target) if name else (target,),
            signature=f"socket:{name}" if name and "->" in what else None,
        )
    # Pipes and anonymous inodes have no stable name to compare across a session.
    stable = target.startswith("/")
    return Resource(
        "fd",
        ("fd", fd, target),
        f"fd {fd} ({_short_path(target) if stable else target})",
        names=(target,),
        signature=f"fd:{target}" if stable else None,
    )


# -- child processes -----------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, str, str] | None:
    """(state, start time, command name) from ``/proc/PID/stat``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    comm = data[data.find(b"(") + 1 : data.rfind(b")")].decode("utf-8", "replace")
    rest = data.rpartition(b")")[2].split()
    return rest[0].decode(), rest[19].decode(), comm


def _child_pids() -> set[int]:
    pids: set[int] = set()
    try:
        tids = os.listdir("/proc/self/task")
        for tid in tids:
            with open(f"/proc/self/task/{tid}/children", encoding="ascii") as f:
                pids.update(int(p) for p in f.read().split())
        return pids
    except (OSError, ValueError):
        pass
    try:
        import psutil

        return {p.pid for p in psutil.Process().children()}
    except Exception:  # no psutil: children cannot be listed here
        return set()


def process_keys() -> dict[tuple[Any, ...], int]:
    out: dict[tuple[Any, ...], int] = {}
    for pid in _child_pids():
        stat = _proc_stat(pid)
        out[("process", pid, stat[1] if stat else "")] = pid
    return out


def _describe_process(pid: int, key: tuple[Any, ...]) -> Resource:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = " ".join(a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a)
    except OSError:
        cmdline = ""
    stat = _proc_stat(pid)
    zombie = stat is not None and stat[0] == "Z"
    if not cmdline:
        cmdline = stat[2] if stat else "?"
    shown = cmdline if len(cmdline) <= 120 else cmdline[:117] + "..."
    state = ", exited but never waited for" if zombie else ""
    return Resource(
        "process",
        key,
        f"process {pid} ({shown}{state})",
        names=(cmdline,),
        signature=f"process:{_mask_digits(cmdline)}",
    )


# -- asyncio tasks -------------------------------------------------------------------


def _pending_tasks() -> list[Any]:
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


def _describe_task(task: Any) -> Resource:
    coro = task.get_coro()
    code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
    qualname = str(getattr(coro, "__qualname__", type(coro).__name__))
    frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
    module = str(frame.f_globals.get("__name__", "")) if frame is not None else ""
    origin: tuple[Frame, ...] = ()
    parts = [f"coroutine {qualname}"]
    if code is not None:
        origin = (Frame(code.co_filename, code.co_firstlineno, qualname, module),)
        parts.append(f"defined at {_short_path(code.co_filename)}:{code.co_firstlineno}")
    source = getattr(task, "_source_traceback", None)
    if source:
        # asyncio's debug mode records where the task was created.
        last = source[-1]
        parts.append(f"created at {_short_path(last.filename)}:{last.lineno}")
    if frame is not None:
        parts.append(f"waiting at {_short_path(frame.f_code.co_filename)}:{frame.f_lineno}")
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


# -- temp directory ------------------------------------------------------------------


class _TempNotes:
    """Top-level temp-directory entries this process creates while a watch is open."""

    def __init__(self) -> None:
        root = tempfile.gettempdir()
        self.roots = tuple({os.path.normpath(root), os.path.realpath(root)})
        # entry -> it existed when first touched (then it is not new)
        self.seen: dict[str, bool] = {}

    def _entry(self, path: Any) -> tuple[str, bool] | None:
        """The top-level temp entry ``path`` is in, and whether it is that entry itself."""
        try:
            text = os.fsdecode(path)
        except TypeError:
            return None
        if not os.path.isabs(text):
            text = os.path.join(os.getcwd(), text)
        text = os.path.normpath(text)
        for root in self.roots:
            if text.startswith(root + os.sep):
                top, _, rest = text[len(root) + 1 :].partition(os.sep)
                return os.path.join(root, top), not rest
        return None

    def note(self, path: Any) -> None:
        found = self._entry(path)
        if found is not None and found[0] not in self.seen:
            self.seen[found[0]] = os.path.lexists(found[0])

    def forget(self, path: Any) -> None:
        # A new entry removed again is dropped from the notes: a test that makes
        # and removes a temp file every run must not grow them (the harness
        # would measure itself).
        found = self._entry(path)
        if found is not None and found[1] and self.seen.get(found[0]) is False:
            del self.seen[found[0]]

    def survivors(self) -> list[str]:
        return [e for e, existed in self.seen.items() if not existed and os.path.lexists(e)]


_TEMP_NOTES: list[_TempNotes] = []
_AUDIT_INSTALLED = False


# Kinds a test opens (descriptors, sockets, temp entries): where each was
# opened can be recorded through the audit hook (see trace_openers).
OPENED_KINDS = ("fd", "socket", "tempfile")
_OPEN_EVENTS = ("open", "socket.__new__", "os.mkdir", "tempfile.mkstemp", "tempfile.mkdtemp")
_OPENERS: list[_Openers] = []


def _stack(frame: Any, depth: int) -> tuple[Frame, ...]:
    out: list[Frame] = []
    while frame is not None and len(out) < depth:
        code = frame.f_code
        module = str(frame.f_globals.get("__name__", ""))
        out.append(Frame(code.co_filename, frame.f_lineno, code.co_name, module))
        frame = frame.f_back
    return tuple(out)


class _Openers:
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
                self.sockets.append((weakref.ref(args[0]), _stack(frame, self.depth)))
            return
        path = args[0]
        if not isinstance(path, (str, bytes, os.PathLike)):
            return  # open(fd): the descriptor was opened elsewhere
        real = os.path.realpath(os.fsdecode(path))
        self.paths[real] = _stack(frame, self.depth)

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


def _watch_temp() -> _TempNotes:
    _install_audit()
    notes = _TempNotes()
    _TEMP_NOTES.append(notes)
    return notes


def _unwatch_temp(notes: _TempNotes) -> None:
    with contextlib.suppress(ValueError):
        _TEMP_NOTES.remove(notes)


def _describe_temp(path: str) -> Resource:
    what = "temp directory" if os.path.isdir(path) and not os.path.islink(path) else "temp file"
    base = os.path.basename(path)
    return Resource(
        "tempfile",
        ("tempfile", path),
        f"{what} {path}",
        names=(base, path),
        signature=f"tempfile:{base}",
    )


# -- snapshots, the watch and the check -----------------------------------------------


def current_resources() -> list[Resource]:
    """Everything of every kind the process has now, described (for session-start records)."""
    out = [_describe_thread_entry(v) for v in thread_keys().values()]
    out += [_describe_fd(fd, target) for fd, target in fd_targets().items()]
    out += [_describe_process(pid, key) for key, pid in process_keys().items()]
    out += [_describe_task(t) for t in _pending_tasks()]
    return out


def temp_entries() -> list[Resource]:
    root = tempfile.gettempdir()
    try:
        names = os.listdir(root)
    except OSError:
        return []
    return [_describe_temp(os.path.join(root, n)) for n in names]


class ResourceWatch:
    """Keys of what exists when a test starts, and the recorders that run during it."""

    def __init__(self) -> None:
        _install_thread_recorder()
        self._temp = _watch_temp()
        self.threads = set(thread_keys())
        # Descriptor numbers, not targets: pytest's capture points fds 1 and 2
        # elsewhere during a test (dup2), which is not a new descriptor.
        self.fds = set(fd_targets())
        self.processes = set(process_keys())
        self.tasks = weakref.WeakSet(_pending_tasks())
        self.closed = False

    def survivors(self) -> list[Resource]:
        """What exists now and did not when the watch started, described."""
        out = [_describe_thread_entry(v) for k, v in thread_keys().items() if k not in self.threads]
        out += [_describe_fd(fd, t) for fd, t in fd_targets().items() if fd not in self.fds]
        out += [
            _describe_process(pid, k)
            for k, pid in process_keys().items()
            if k not in self.processes
        ]
        out += [_describe_temp(p) for p in self._temp.survivors()]
        out += [_describe_task(t) for t in _pending_tasks() if t not in self.tasks]
        return out

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            _remove_thread_recorder()
            _unwatch_temp(self._temp)


@dataclass
class ResourceReport:
    """What one check found: survivors that count (``leaked``) and those a rule excused."""

    leaked: list[Resource]
    ignored: list[tuple[Resource, str]]
    waited_s: float
    grace_s: float

    def details(self, leaked: Sequence[Resource] | None = None) -> dict[str, Any]:
        return {
            "leaked": [r.to_dict() for r in (self.leaked if leaked is None else leaked)],
            "ignored": [{**r.to_dict(), "rule": why} for r, why in self.ignored],
            "waited_s": round(self.waited_s, 3),
            "grace_s": self.grace_s,
        }


def group_descriptions(descriptions: Iterable[str]) -> list[str]:
    """The same resource named once with a count: ``thread 'poller' (daemon) (x5)``.

    A test that leaks a thread or task per call leaves many alike; listing
    each buries the one line that matters. Order of first appearance is kept.
    """
    counts: dict[str, int] = {}
    for d in descriptions:
        counts[d] = counts.get(d, 0) + 1
    return [d if n == 1 else f"{d} (x{n})" for d, n in counts.items()]


def describe_list(items: Sequence[Resource]) -> str:
    grouped = group_descriptions(r.description for r in items)
    shown = "; ".join(grouped[:MESSAGE_ITEMS])
    more = len(grouped) - MESSAGE_ITEMS
    return shown + (f"; and {more} more" if more > 0 else "")


class ResourceChecker:
    """One per session: the rules, the grace period and what existed at session start."""

    def __init__(
        self,
        rules: Iterable[str] = (),
        *,
        grace: float = DEFAULT_GRACE,
        ignore_existing: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rules = parse_rules((*DEFAULT_RULES, *rules))
        self.grace = max(0.0, grace)
        self.ignore_existing = ignore_existing
        self.existing: set[str] = set()
        self._sleep = sleep

    def remember_existing(self) -> None:
        """Record what the process has now; later survivors that look the same are ignored."""
        self.existing = {
            r.signature for r in (*current_resources(), *temp_entries()) if r.signature
        }

    def begin(self) -> ResourceWatch:
        return ResourceWatch()

    def _why_ignored(self, res: Resource, rules: Sequence[IgnoreRule]) -> str | None:
        for rule in rules:
            if rule.matches(res):
                return str(rule)
        if self.ignore_existing and res.signature is not None and res.signature in self.existing:
            return "existed at session start"
        return None

    def split(
        self, found: Iterable[Resource], extra_rules: Sequence[IgnoreRule] = ()
    ) -> tuple[list[Resource], list[tuple[Resource, str]]]:
        rules = (*self.rules, *extra_rules)
        leaked: list[Resource] = []
        ignored: list[tuple[Resource, str]] = []
        for res in found:
            why = self._why_ignored(res, rules)
            if why is None:
                leaked.append(res)
            else:
                ignored.append((res, why))
        return leaked, ignored

    def finish(
        self, watch: ResourceWatch, extra_rules: Sequence[IgnoreRule] = ()
    ) -> ResourceReport:
        """Compare with the watch's start, waiting out the grace period while anything is left.

        Always closes the watch (its recorders stop), whatever happens.
        """
        waited = 0.0
        pause = _FIRST_PAUSE
        try:
            while True:
                # A file or socket dropped in a reference cycle is closed when collected.
                gc.collect()
                leaked, ignored = self.split(watch.survivors(), extra_rules)
                if not leaked or waited >= self.grace:
                    return ResourceReport(leaked, ignored, waited, self.grace)
                step = min(pause, self.grace - waited)
                self._sleep(step)
                waited += step
                pause *= 2
        finally:
            watch.close()

    def trace_openers(self, run_once: Callable[[], object], depth: int) -> list[Resource]:
        """Run once more, recording where files, sockets and temp entries are opened.

        Returns the descriptors, sockets and temp entries that run left behind
        (ignore rules applied), each with the traceback of where it was opened
        as its ``origin``: a failed check names what was left, this says which
        line of the test opened it. Pipes and descriptors inherited or made
        in C have no audit event: their origin stays empty.
        """
        openers = _Openers(depth)
        _install_audit()
        watch = ResourceWatch()
        _OPENERS.append(openers)
        try:
            run_once()
        finally:
            _OPENERS.remove(openers)
        try:
            gc.collect()
            leaked, _ = self.split(watch.survivors())
        finally:
            watch.close()
        out: list[Resource] = []
        for res in sorted(leaked, key=lambda r: (r.kind, r.key[1] if r.kind != "tempfile" else 0)):
            if res.kind not in OPENED_KINDS:
                continue
            origin = openers.origin(res)
            shown = _shown_frame(origin)
            where = f"opened at {shown.where()}" if shown else "where it was opened is unknown"
            out.append(replace(res, origin=origin, description=f"{res.description}, {where}"))
        return out


class Liveness:
    """Whether survivors recorded earlier still exist (the session-end re-check).

    The listings are read once per instance, however many survivors are asked about.
    """

    def __init__(self) -> None:
        self._threads: set[tuple[Any, ...]] | None = None
        self._fds: dict[int, str] | None = None

    def __call__(self, res: Resource) -> bool:
        key = res.key
        if res.kind == "thread":
            if self._threads is None:
                self._threads = set(thread_keys())
            return key in self._threads
        if res.kind in ("fd", "socket"):
            if self._fds is None:
                self._fds = fd_targets()
            return bool(self._fds.get(key[1]) == key[2])
        if res.kind == "process":
            stat = _proc_stat(key[1])
            return stat is not None and bool(stat[1] == key[2])
        if res.kind == "tempfile":
            return os.path.lexists(key[1])
        if res.kind == "task":
            task = res.ref() if res.ref is not None else None
            return task is not None and not bool(task.done())
        return False


def known_keys() -> tuple[set[tuple[Any, ...]], set[int]]:
    """Keys of the threads and numbers of the descriptors open now (the ledger's start)."""
    return set(thread_keys()), set(fd_targets())


def new_resources(
    known_threads: set[tuple[Any, ...]], known_fds: set[int]
) -> tuple[list[Resource], set[tuple[Any, ...]], set[int]]:
    """Threads and descriptors not in the known sets, and both sets as they are now."""
    threads = thread_keys()
    fds = fd_targets()
    new = [_describe_thread_entry(v) for k, v in threads.items() if k not in known_threads]
    new += [_describe_fd(fd, t) for fd, t in fds.items() if fd not in known_fds]
    return new, set(threads), set(fds)


# -- verdicts --------------------------------------------------------------------------

# Leak-verdict metrics that already count some kinds: a failing trend on them
# is named with those kinds' survivors instead of a second failure line.
_COVERED = {"fds": ("fd", "socket"), "threads": ("thread",)}


def resources_verdict(report: ResourceReport, source: VerdictSource) -> Verdict:
    """The ``resources`` verdict: fails when anything was left behind."""
    if not report.leaked:
        note = f" ({len(report.ignored)} ignored by rules)" if report.ignored else ""
        return Verdict(
            "resources",
            source,
            True,
            f"nothing left behind{note}",
            details=report.details(),
        )
    n = len(report.leaked)
    waited = f", after waiting {report.waited_s:.2f} s" if report.waited_s else ""
    return Verdict(
        "resources",
        source,
        False,
        f"resources: {n} left behind after the test and its fixtures were torn down"
        f"{waited}: {describe_list(report.leaked)}",
        metric=report.leaked[0].kind,
        measured=float(n),
        details=report.details(),
    )


def name_in_leak_verdict(verdict: Verdict, report: ResourceReport) -> list[Resource]:
    """Name in a failed leak verdict the survivors its failing metrics already count.

    Returns the survivors it does not cover, for a ``resources`` verdict of
    their own. The leak verdict is changed in place.
    """
    if verdict.passed:
        return list(report.leaked)
    failing = {
        m
        for m, d in (verdict.details.get("metrics") or {}).items()
        if isinstance(d, dict) and d.get("state") == "suspect"
    }
    kinds = {k for m in failing for k in _COVERED.get(m, ())}
    covered = [r for r in report.leaked if r.kind in kinds]
    if covered:
        verdict.message += f"; left behind by the measured runs: {describe_list(covered)}"
        verdict.details["resources"] = report.details(covered)
    return [r for r in report.leaked if r.kind not in kinds]
