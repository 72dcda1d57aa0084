"""Preallocated ring buffer for audio frames, and a tracker of buffer memory (seed 004).

The ring buffer allocates its numpy storage once, at construction, so capture
never allocates on the hot path and its memory is bounded by ``capacity``. What
happens when a write does not fit is an explicit :class:`OverflowPolicy`:

- ``DROP_OLDEST``: the oldest frames are overwritten; the count is kept in
  ``stats.dropped`` (the usual choice for live audio: recent sound matters most);
- ``REJECT``: the whole write is refused with :class:`BufferFull` and counted in
  ``stats.rejected``; nothing already stored is touched;
- ``BLOCK``: the writer waits (up to ``block_timeout`` seconds) for a reader to
  make room; on timeout the frames written so far stay and :class:`BufferFull`
  says how many.

:class:`BufferTracker` counts the bytes of every buffer registered with it, so
the app can report and cap buffer memory. It holds weak references, so a buffer
that is dropped without being untracked is forgotten rather than kept alive.
"""

from __future__ import annotations

import enum
import itertools
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from reference_app import faults

COMPONENT = "ring buffer"
faults.register(
    "tracker_strong_refs",
    COMPONENT,
    "the buffer tracker keeps a strong reference to every tracked array and untrack() "
    "does not drop it, so the storage of every closed ring buffer stays allocated",
)


class OverflowPolicy(enum.Enum):
    DROP_OLDEST = "drop_oldest"
    REJECT = "reject"
    BLOCK = "block"


class BufferFull(Exception):
    """A write did not fit under the REJECT or BLOCK policy."""

    def __init__(self, message: str, written: int = 0) -> None:
        super().__init__(message)
        self.written = written


@dataclass(frozen=True)
class TrackerInfo:
    buffer_count: int
    total_bytes: int
    peak_bytes: int

    @property
    def total_mib(self) -> float:
        return self.total_bytes / 2**20


class BufferTracker:
    """Counts the bytes of registered buffers (weakly held).

    Example::

        tracker = BufferTracker()
        key = tracker.track(array)
        tracker.info().total_bytes  # == array.nbytes
        tracker.untrack(key)
    """

    def __init__(self, *, config_faults: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._sizes: dict[int, int] = {}
        self._finalizers: dict[int, weakref.finalize[[int], np.ndarray]] = {}
        self._strong: dict[int, object] = {}
        self._keys = itertools.count(1)
        self._peak = 0
        self._leak = faults.is_enabled("tracker_strong_refs", config_faults)

    def track(self, buffer: np.ndarray, nbytes: int | None = None) -> int:
        """Register ``buffer``; returns a key for :meth:`untrack`."""
        key = next(self._keys)
        with self._lock:
            self._sizes[key] = int(buffer.nbytes if nbytes is None else nbytes)
            self._peak = max(self._peak, sum(self._sizes.values()))
            if self._leak:
                self._strong[key] = buffer
            else:
                # Forget the buffer if its owner drops it without untracking.
                self._finalizers[key] = weakref.finalize(buffer, self._forget, key)
        return key

    def untrack(self, key: int) -> None:
        if self._leak:
            return  # the fault: the entry, and the array it holds, stay forever
        with self._lock:
            finalizer = self._finalizers.pop(key, None)
        if finalizer is not None:
            finalizer.detach()
        self._forget(key)

    def _forget(self, key: int) -> None:
        with self._lock:
            self._sizes.pop(key, None)
            self._finalizers.pop(key, None)

    def info(self) -> TrackerInfo:
        with self._lock:
            return TrackerInfo(len(self._sizes), sum(self._sizes.values()), self._peak)


@dataclass(frozen=True)
class RingStats:
    written: int  # frames accepted into the buffer
    read: int  # frames removed by read()
    dropped: int  # frames overwritten under DROP_OLDEST
    rejected: int  # frames refused under REJECT/BLOCK


class RingBuffer:
    """Fixed-capacity FIFO of audio frames backed by one preallocated array.

    Frames are rows: ``shape == (n, channels)``. A 1-D array written to a
    one-channel buffer is taken as ``n`` frames. Thread-safe: one capture thread
    may write while another reads.

    Example::

        ring = RingBuffer(16000 * 5, channels=1, dtype=np.int16)
        ring.write(block)
        chunk = ring.read(1600)
    """

    def __init__(
        self,
        capacity: int,
        *,
        channels: int = 1,
        dtype: npt.DTypeLike = np.float32,
        policy: OverflowPolicy | str = OverflowPolicy.DROP_OLDEST,
        block_timeout: float = 1.0,
        tracker: BufferTracker | None = None,
    ) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        if channels <= 0:
            raise ValueError(f"channels must be positive, got {channels}")
        self.capacity = int(capacity)
        self.channels = int(channels)
        self.policy = OverflowPolicy(policy)
        self.block_timeout = block_timeout
        self._data = np.zeros((self.capacity, self.channels), dtype=dtype)
        self._start = 0  # index of the oldest frame
        self._size = 0
        self._written = self._read = self._dropped = self._rejected = 0
        self._cond = threading.Condition()
        self._tracker = tracker
        self._track_key = tracker.track(self._data) if tracker is not None else None

    # -- state --------------------------------------------------------------------
    def __len__(self) -> int:
        with self._cond:
            return self._size

    @property
    def free(self) -> int:
        with self._cond:
            return self.capacity - self._size

    @property
    def fill_level(self) -> float:
        """Fraction of capacity in use, 0.0 to 1.0."""
        with self._cond:
            return self._size / self.capacity

    @property
    def nbytes(self) -> int:
        return int(self._data.nbytes)

    @property
    def dtype(self) -> np.dtype[np.generic]:
        return self._data.dtype

    @property
    def stats(self) -> RingStats:
        with self._cond:
            return RingStats(self._written, self._read, self._dropped, self._rejected)

    # -- writing ------------------------------------------------------------------
    def _as_frames(self, data: npt.ArrayLike) -> np.ndarray:
        arr = np.asarray(data)
        if arr.ndim == 1 and self.channels == 1:
            arr = arr.reshape(-1, 1)
        if arr.ndim != 2 or arr.shape[1] != self.channels:
            raise ValueError(
                f"expected frames of shape (n, {self.channels}), got array of shape {arr.shape}"
            )
        return arr

    def write(self, data: npt.ArrayLike) -> int:
        """Append frames; returns how many were stored. See the module doc for overflow."""
        frames = self._as_frames(data)
        n = len(frames)
        if n == 0:
            return 0
        with self._cond:
            if self.policy is OverflowPolicy.DROP_OLDEST:
                if n > self.capacity:
                    # Only the newest `capacity` frames can survive; the rest count as dropped.
                    self._dropped += n - self.capacity
                    self._written += n - self.capacity
                    frames = frames[-self.capacity :]
                    n = self.capacity
                overflow = max(0, self._size + n - self.capacity)
                if overflow:
                    self._start = (self._start + overflow) % self.capacity
                    self._size -= overflow
                    self._dropped += overflow
                self._put(frames)
                return n
            if self.policy is OverflowPolicy.REJECT:
                if n > self.capacity - self._size:
                    self._rejected += n
                    raise BufferFull(
                        f"ring buffer full: {n} frames do not fit in "
                        f"{self.capacity - self._size} free of {self.capacity}"
                    )
                self._put(frames)
                return n
            return self._write_blocking(frames)

    def _write_blocking(self, frames: np.ndarray) -> int:
        deadline = time.monotonic() + self.block_timeout
        written = 0
        while written < len(frames):
            room = self.capacity - self._size
            if room == 0:
                remaining = deadline - time.monotonic()
                timed_out = remaining <= 0 or not self._cond.wait(remaining)
                if timed_out and self.capacity - self._size == 0:
                    self._rejected += len(frames) - written
                    raise BufferFull(
                        f"ring buffer full: timed out after {self.block_timeout:g} s with "
                        f"{len(frames) - written} of {len(frames)} frames unwritten",
                        written=written,
                    )
                continue
            part = frames[written : written + room]
            self._put(part)
            written += len(part)
        return written

    def _put(self, frames: np.ndarray) -> None:
        # Caller holds the lock and has made room for all of `frames`.
        n = len(frames)
        end = (self._start + self._size) % self.capacity
        first = min(n, self.capacity - end)
        self._data[end : end + first] = frames[:first]
        if first < n:
            self._data[: n - first] = frames[first:]
        self._size += n
        self._written += n
        self._cond.notify_all()

    # -- reading ------------------------------------------------------------------
    def _copy_out(self, n: int) -> np.ndarray:
        out = np.empty((n, self.channels), dtype=self._data.dtype)
        first = min(n, self.capacity - self._start)
        out[:first] = self._data[self._start : self._start + first]
        if first < n:
            out[first:] = self._data[: n - first]
        return out

    def peek(self, n: int | None = None) -> np.ndarray:
        """Copy of up to ``n`` oldest frames (all if None), left in the buffer."""
        with self._cond:
            count = self._size if n is None else max(0, min(n, self._size))
            return self._copy_out(count)

    def read(self, n: int | None = None, timeout: float | None = None) -> np.ndarray:
        """Remove and return up to ``n`` oldest frames (all if None).

        With ``timeout``, wait that long for at least one frame before
        returning a possibly empty array.
        """
        with self._cond:
            if timeout is not None and self._size == 0:
                self._cond.wait_for(lambda: self._size > 0, timeout)
            count = self._size if n is None else max(0, min(n, self._size))
            out = self._copy_out(count)
            self._start = (self._start + count) % self.capacity
            self._size -= count
            self._read += count
            self._cond.notify_all()  # wake writers blocked on room
            return out

    def clear(self) -> None:
        with self._cond:
            self._start = self._size = 0
            self._cond.notify_all()

    def close(self) -> None:
        """Untrack the storage; the buffer stays readable until dropped."""
        if self._tracker is not None and self._track_key is not None:
            self._tracker.untrack(self._track_key)
            self._track_key = None
