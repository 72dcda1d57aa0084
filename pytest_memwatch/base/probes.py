"""Cheap process probes: what a test leaves behind, sampled before and after it.

Each probe is detected once per process. A probe this platform cannot provide
is reported in :attr:`Prober.unavailable` (the plugin turns that into one
warning) and reads as ``None``; the other probes go on.

- ``rss``: resident set size (/proc/self/statm; psutil elsewhere). What the OS
  charges; page-granular, and pymalloc rarely gives memory back, so it is
  paired with the two below.
- ``malloc``: bytes in use by the C allocator (glibc ``mallinfo2``: in-use heap
  chunks plus mmapped chunks). Exact to the byte, and sees C-level leaks such
  as ``ctypes`` ``malloc`` that tracemalloc cannot. glibc walks every free
  chunk to answer: a few microseconds a reading, more while the heap has
  thousands of gaps between live allocations (right after a large suite is
  collected: about 160 µs, until the tests' allocations fill them).
- ``blocks``: ``sys.getallocatedblocks()``, the number of live Python
  allocations; one leaked object shows as +1 whatever its size.
- ``gc_objects``: objects tracked by the cyclic GC outside the frozen generation.
- ``fds``, ``threads``: open file descriptors and OS threads.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_resource: Any
try:
    import resource as _resource
except ImportError:  # not on this platform: the peak comes from /proc or the sampler
    _resource = None
METRICS = ("rss", "malloc", "blocks", "gc_objects", "fds", "threads")


@dataclass(frozen=True)
class Sample:
    """One reading of every cheap probe. ``None`` means the probe is unavailable."""

    t: float
    rss: int | None
    malloc: int | None
    blocks: int | None
    gc_objects: int | None
    fds: int | None
    threads: int | None

    def to_dict(self) -> dict[str, float | None]:
        # Spelled out: dataclasses.asdict deep-copies every field, and this runs
        # twice per measured test.
        return {
            "t": self.t,
            "rss": self.rss,
            "malloc": self.malloc,
            "blocks": self.blocks,
            "gc_objects": self.gc_objects,
            "fds": self.fds,
            "threads": self.threads,
        }

    def minus(self, other: Sample) -> dict[str, int | None]:
        """Per-metric difference ``self - other``; ``None`` where either side is missing."""
        # Spelled out (the keys are METRICS): this runs for every measured test.
        a, b = self, other
        return {
            "rss": None if a.rss is None or b.rss is None else a.rss - b.rss,
            "malloc": None if a.malloc is None or b.malloc is None else a.malloc - b.malloc,
            "blocks": None if a.blocks is None or b.blocks is None else a.blocks - b.blocks,
            "gc_objects": (
                None
                if a.gc_objects is None or b.gc_objects is None
                else a.gc_objects - b.gc_objects
            ),
            "fds": None if a.fds is None or b.fds is None else a.fds - b.fds,
            "threads": None if a.threads is None or b.threads is None else a.threads - b.threads,
        }


def bytes_metric(delta: dict[str, int | None]) -> int | None:
    """The byte figure a budget is judged on: the larger of RSS and malloc growth.

    Python objects over 512 bytes and C allocations show in both (so the
    larger, not the sum); small Python objects live in pymalloc arenas that
    only RSS sees; untouched ``malloc`` memory only the allocator sees.
    """
    rss, malloc = delta.get("rss"), delta.get("malloc")
    if rss is None:
        return malloc
    return rss if malloc is None or rss >= malloc else malloc


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            [
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            ]
        )
    ]


# How a Prober opens the /proc/self entries it keeps open: most are read.
_PROC_FLAGS = {
    "fd": os.O_RDONLY | getattr(os, "O_DIRECTORY", 0),
    "task": os.O_RDONLY | getattr(os, "O_DIRECTORY", 0),
    "clear_refs": os.O_WRONLY,
}

# Bumped in a forked child (os.register_at_fork), where the descriptors a
# Prober keeps open still name the parent's /proc/self files: cheaper than
# asking for the pid (a system call) at every reading.
_fork_generation = 0


def _forked() -> None:
    global _fork_generation
    _fork_generation += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


class Prober:
    """Reads the cheap probes; built once per process (see :func:`get_prober`)."""

    def __init__(self) -> None:
        self.unavailable: dict[str, str] = {}
        # /proc/self files and directories kept open, by name (see _kept).
        self._files: dict[str, int] = {}
        self._files_gen = _fork_generation
        # psutil only where /proc cannot serve: importing it costs milliseconds.
        self._proc: Any = None
        if self._proc_read("statm") is None:
            try:
                import psutil

                self._proc = psutil.Process()
                self._proc.memory_info()
            except Exception as exc:  # psutil missing or unable to read the process
                self._proc = None
                self.unavailable["rss"] = f"psutil cannot read process memory: {exc}"
        self._mallinfo2: Any = None
        self._malloc_trim: Any = None
        try:
            # The process's own symbol table includes the C library's; no
            # find_library() (which may spawn ldconfig) is needed.
            libc = ctypes.CDLL(None)
            fn = libc.mallinfo2
            fn.restype = _MallInfo2
            fn()
            self._mallinfo2 = fn
            self._malloc_trim = libc.malloc_trim
            self._malloc_trim.argtypes = [ctypes.c_size_t]
            self._malloc_trim.restype = ctypes.c_int
        except (OSError, AttributeError):
            self.unavailable["malloc"] = "the C library has no mallinfo2 (glibc >= 2.33 needed)"
        # Watches relying on the process's one high-water mark (see PeakWatch).
        # Weak references (a plain list: a WeakSet costs a dozen calls per
        # test); a watch dropped without stop() just goes dead.
        self._hwm_watches: list[weakref.ref[PeakWatch]] = []
        # The directories are opened now, so every reading counts them alike.
        self._fd_count = self._detect_fd_count()
        self._thread_count = self._detect_thread_count()
        # Where all three come from kept descriptors, sample() reads them inline.
        self._inline = (
            self._fd_count == "size" and self._thread_count == "nlink" and "statm" in self._files
        )
        if self._fd_count is None and self._proc is None:
            self.unavailable["fds"] = "neither /proc/self/fd nor psutil is available"
        self._peak_mode = self._detect_peak_mode()

    # -- /proc files, kept open -------------------------------------------------
    # Reading a /proc file through a descriptor kept open, re-read from offset 0
    # (the kernel regenerates it), costs a few microseconds; opening it each
    # time costs several times more. Descriptors are reopened after a fork,
    # when /proc/self would otherwise still name the parent.
    def _kept(self, name: str) -> int | None:
        """A descriptor on ``/proc/self/<name>``, opened once (and again after a fork)."""
        if self._files_gen != _fork_generation:
            # A forked child: these are copies of the parent's descriptors. All
            # are reopened at once, so the child's readings count them alike.
            names = list(self._files)
            self._close_files()
            self._files_gen = _fork_generation
            for other in names:
                self._open(other)
        fd = self._files.get(name)
        return self._open(name) if fd is None else fd

    def _open(self, name: str) -> int | None:
        try:
            fd = os.open(f"/proc/self/{name}", _PROC_FLAGS.get(name, os.O_RDONLY) | os.O_CLOEXEC)
        except OSError:
            return None
        self._files[name] = fd
        return fd

    def _proc_read(self, name: str) -> bytes | None:
        fd = self._kept(name)
        if fd is None:
            return None
        try:
            # One pread from offset 0: the kernel regenerates the file.
            return os.pread(fd, 4096, 0)
        except OSError:
            return None

    def _dir_stat(self, name: str) -> os.stat_result | None:
        fd = self._kept(name)
        if fd is None:
            return None
        try:
            return os.fstat(fd)
        except OSError:
            return None

    def _detect_fd_count(self) -> str | None:
        # Since Linux 6.2 the size of /proc/self/fd is the number of open
        # descriptors: one fstat instead of listing the directory, which takes
        # eight system calls and a dentry per descriptor. Trusted only when it
        # agrees with a listing here.
        st = self._dir_stat("fd")
        if st is None:
            return None
        listed = self._list_fds()
        if listed is not None and st.st_size == listed > 0:
            return "size"
        return "list" if listed is not None else None

    def _list_fds(self) -> int | None:
        fd = self._kept("fd")
        if fd is None:
            return None
        try:
            # listdir duplicates the descriptor while it reads: one entry too many.
            return len(os.listdir(fd)) - 1
        except OSError:
            return None

    def _detect_thread_count(self) -> str | None:
        # The link count of /proc/self/task is 2 plus the number of threads:
        # one fstat. Trusted only when it agrees with /proc/self/stat here.
        st = self._dir_stat("task")
        from_stat = self._stat_threads()
        if st is not None and from_stat is not None and st.st_nlink - 2 == from_stat:
            return "nlink"
        return "stat" if from_stat is not None else None

    def _stat_threads(self) -> int | None:
        data = self._proc_read("stat")
        if data is None:
            return None
        # Field 20, counted after the ")" that ends the command name (which may
        # itself contain spaces).
        return int(data.rpartition(b")")[2].split()[17])

    def _close_files(self) -> None:
        files, self._files = getattr(self, "_files", {}), {}
        for fd in files.values():
            with contextlib.suppress(OSError):
                os.close(fd)

    def close(self) -> None:
        """Close the /proc descriptors this prober keeps open."""
        self._close_files()

    def __del__(self) -> None:
        # A discarded prober (tests build their own) closes its descriptors
        # rather than leaving them to the files' finalizers, which warn.
        self.close()

    def _detect_peak_mode(self) -> str:
        # Linux resets the high-water mark of RSS when "5" is written to
        # clear_refs, and getrusage() then reports it: an exact peak with no
        # sampling thread and no cost during the test. Checked here, because
        # some kernels or sandboxes refuse the write. Elsewhere a sampler
        # thread polls RSS.
        rss = self.rss()
        if rss is not None and self._reset_hwm():
            peak = self._read_hwm()
            if peak is not None and peak <= rss + 4 * 1024 * 1024:
                return "hwm"
        if self._proc is None and rss is None:
            self.unavailable["peak_rss"] = "no way to read RSS on this platform"
            return "none"
        return "sampler"

    def _reset_hwm(self) -> bool:
        fd = self._kept("clear_refs")
        if fd is None:
            return False
        try:
            os.write(fd, b"5")
            return True
        except OSError:
            return False

    def _read_hwm(self) -> int | None:
        # VmHWM, not getrusage(): ru_maxrss survives execve, so a process that a
        # big parent spawned (vfork/posix_spawn: pytester, tox, CI runners)
        # reports the parent's peak, which clear_refs cannot reset; detection
        # then fell back to the sampler, which misses bursts shorter than 5 ms.
        data = self._proc_read("status")
        if data is None:
            return None
        for line in data.split(b"\n"):
            if line.startswith(b"VmHWM:"):
                return int(line.split()[1]) * 1024
        return None

    def start_peak(self) -> PeakWatch:
        return PeakWatch(self)

    # -- samples --------------------------------------------------------------
    def rss(self) -> int | None:
        data = self._proc_read("statm")
        if data is not None:
            # Second field: resident pages.
            return int(data.split(None, 2)[1]) * _PAGE
        if self._proc is None:
            return None
        try:
            return int(self._proc.memory_info().rss)
        except Exception:
            return None

    def malloc(self) -> int | None:
        if self._mallinfo2 is None:
            return None
        info = self._mallinfo2()
        return int(info.uordblks + info.hblkhd)

    def trim(self) -> None:
        """Hand free heap pages back to the OS so RSS stops counting them."""
        if self._malloc_trim is not None:
            self._malloc_trim(0)

    def fds(self) -> int | None:
        mode = self._fd_count
        if mode == "size":
            st = self._dir_stat("fd")
            return None if st is None else st.st_size
        if mode == "list":
            return self._list_fds()
        if self._proc is not None:
            try:
                return int(self._proc.num_fds())
            except Exception:
                return None
        return None

    def threads(self) -> int:
        mode = self._thread_count
        if mode == "nlink":
            st = self._dir_stat("task")
            if st is not None:
                return st.st_nlink - 2
        elif mode == "stat":
            count = self._stat_threads()
            if count is not None:
                return count
        if self._proc is not None:
            try:
                return int(self._proc.num_threads())
            except Exception:
                pass
        return threading.active_count()

    def sample(
        self,
        *,
        collect: bool = True,
        generation: int = 2,
        blocks: int = 0,
        malloc: int = 0,
        gc_objects: int = 0,
        count_blocks: bool = True,
    ) -> Sample:
        """Read every probe, after a collection (full by default) unless ``collect`` is false.

        ``blocks``, ``malloc`` and ``gc_objects`` are added to those readings
        (the engine's corrections: its calibrated footprint, the frozen objects).
        ``count_blocks=False`` leaves ``blocks`` unread (``None``):
        ``sys.getallocatedblocks()`` visits every pymalloc pool, so its cost
        grows with the heap (57 µs a reading under a 20 000-test session).
        """
        if collect:
            gc.collect(generation)
        rss = fds = threads = None
        if self._inline and self._files_gen == _fork_generation:
            # rss(), fds() and threads() without their calls: this runs twice per test.
            files = self._files
            try:
                rss = int(os.pread(files["statm"], 64, 0).split(None, 2)[1]) * _PAGE
                fds = os.fstat(files["fd"]).st_size
                threads = os.fstat(files["task"]).st_nlink - 2
            except (OSError, KeyError):
                rss = None
        if rss is None:
            rss, fds, threads = self.rss(), self.fds(), self.threads()
        in_use = self.malloc()
        return Sample(
            time.monotonic(),
            rss,
            None if in_use is None else in_use + malloc,
            sys.getallocatedblocks() + blocks if count_blocks else None,
            len(gc.get_objects()) + gc_objects,
            fds,
            threads,
        )


class PeakWatch:
    """High-water mark of RSS from :meth:`Prober.start_peak` until :meth:`stop`."""

    def __init__(self, prober: Prober) -> None:
        self._prober = prober
        self._peak = 0
        # Only the sampler needs these; the high-water-mark path runs per test.
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        if prober._peak_mode == "hwm":
            # The high-water mark is one per process: hand it to the watches
            # already running before resetting it, or a nested watch (memory_limit,
            # the memwatch fixture) would erase the peak the plugin is watching.
            watches = prober._hwm_watches
            if watches:
                hwm = prober._read_hwm() or 0
                for ref in watches:
                    watch = ref()
                    if watch is not None:
                        watch._peak = max(watch._peak, hwm)
                watches[:] = [ref for ref in watches if ref() is not None]
            prober._reset_hwm()
            self._ref = weakref.ref(self)
            watches.append(self._ref)
        elif prober._peak_mode == "sampler":
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._poll, name="memwatch-peak", daemon=True)
            self._thread.start()

    def _poll(self) -> None:
        assert self._stop is not None
        while not self._stop.wait(0.005):
            value = self._prober.rss() or 0
            self._peak = max(self._peak, value)

    def stop(self, floor: int | None = None) -> int | None:
        """The peak since the start; ``floor`` is the largest RSS the caller read in between.

        getrusage's ru_maxrss is never below VmHWM (it is VmHWM, or a larger
        figure the process inherited across exec or kept from an exited
        thread), so when it is at most ``floor`` the peak is ``floor`` and
        /proc/self/status, ten times dearer to read, is left alone.
        """
        mode = self._prober._peak_mode
        if mode == "hwm":
            # Not contextlib.suppress: this runs for every measured test.
            try:  # noqa: SIM105
                self._prober._hwm_watches.remove(self._ref)
            except ValueError:
                pass  # stopped twice
            if (
                floor is not None
                and _resource is not None
                and _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss * 1024 <= floor
            ):
                return max(self._peak, floor)
            hwm = self._prober._read_hwm()
            return None if hwm is None else max(self._peak, hwm)
        if mode == "sampler" and self._thread is not None and self._stop is not None:
            self._stop.set()
            self._thread.join()
            return max(self._peak, self._prober.rss() or 0)
        return None


_PROBER: Prober | None = None


def get_prober() -> Prober:
    global _PROBER
    if _PROBER is None:
        _PROBER = Prober()
    return _PROBER
