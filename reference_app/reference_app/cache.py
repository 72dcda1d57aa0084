"""Adaptive in-memory cache for chunk transcripts (seed 000).

The cache combines three eviction rules, applied in this order whenever it
must make room:

1. **age**: an entry older than ``max_age_seconds`` (since it was stored or
   last replaced) is evicted first, whatever its popularity; this stops an
   entry that was hot an hour ago from squatting forever;
2. **recency**: otherwise only the ``sample_size`` least recently used
   entries are candidates (never the most recently used one, so a new
   entry is not evicted before it has had a chance to be read);
3. **frequency**: among those candidates the one with the fewest hits goes
   (ties go to the least recently used).

Its capacity (in entries) adapts between ``min_size`` and ``max_size``: when
the process uses more memory than ``memory_threshold_mb`` the capacity shrinks
by a quarter per check and the surplus is evicted; when memory is comfortably
below the threshold (under 80 % of it) and the cache is full, capacity grows
by a quarter. The memory reading is injectable so tests can simulate
pressure without allocating gigabytes.

All public methods are thread-safe (one re-entrant lock).

Fault ``unbounded_cache``: the cache never evicts and never shrinks, so every
distinct key stored stays in memory for the life of the cache.
"""

from __future__ import annotations

import enum
import hashlib
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

from reference_app import faults

FAULT_UNBOUNDED = faults.register(
    "unbounded_cache",
    "adaptive cache",
    "the cache never evicts, so every distinct transcript stored stays in memory",
).name

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T")
D = TypeVar("D")

# Rough per-entry overhead of the bookkeeping (OrderedDict node, _Entry
# object and its fields); used only for the estimated-bytes statistic.
_ENTRY_OVERHEAD = 200

EVICT_CAPACITY = "capacity"
EVICT_AGE = "age"
EVICT_PRESSURE = "pressure"
EVICT_CLEANUP = "cleanup"
EVICT_RESIZE = "resize"
EVICTION_REASONS = (EVICT_CAPACITY, EVICT_AGE, EVICT_PRESSURE, EVICT_CLEANUP, EVICT_RESIZE)


def estimate_size(obj: object) -> int:
    """Approximate bytes held by ``obj``, following one level of containers.

    Exact accounting (a full object-graph walk) would cost more than the
    cache saves; one level is right for the str/bytes/tuple values cached here.
    """
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in obj.items())
    elif isinstance(obj, list | tuple | set | frozenset):
        size += sum(sys.getsizeof(item) for item in obj)
    return size


def default_memory_reader() -> float:
    """Resident set size of this process in MiB (psutil)."""
    import psutil  # imported lazily: only needed when no reader is injected

    return float(psutil.Process().memory_info().rss) / (1024 * 1024)


@dataclass
class _Entry(Generic[V]):
    value: V
    size: int
    stored_at: float
    last_access: float
    hits: int = 0


class AdaptiveMemoryCache(Generic[K, V]):
    """LRU + frequency + age cache whose capacity follows memory pressure.

    Example::

        cache = AdaptiveMemoryCache(initial_size=500, min_size=100, max_size=5000,
                                    memory_threshold_mb=512.0)
        cache.put("k", "value")
        cache.get("k")             # -> "value"
        cache.get_cache_stats()    # hits, misses, hit_rate, evictions, ...
    """

    def __init__(
        self,
        initial_size: int = 500,
        min_size: int = 100,
        max_size: int = 5000,
        memory_threshold_mb: float = 512.0,
        *,
        max_age_seconds: float = 3600.0,
        sample_size: int = 8,
        pressure_check_seconds: float = 5.0,
        memory_reader: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_evict: Callable[[K, V, str], None] | None = None,
        config_faults: Iterable[str] | None = None,
    ) -> None:
        if not 1 <= min_size <= max_size:
            raise ValueError(f"need 1 <= min_size <= max_size, got {min_size} and {max_size}")
        if not min_size <= initial_size <= max_size:
            raise ValueError(
                f"initial_size {initial_size} must lie between min_size {min_size} "
                f"and max_size {max_size}"
            )
        if sample_size < 1:
            raise ValueError(f"sample_size must be at least 1, got {sample_size}")
        if memory_threshold_mb <= 0 or max_age_seconds <= 0:
            raise ValueError("memory_threshold_mb and max_age_seconds must be positive")
        self.min_size = min_size
        self.max_size = max_size
        self.memory_threshold_mb = float(memory_threshold_mb)
        self.max_age_seconds = float(max_age_seconds)
        self.sample_size = sample_size
        self.pressure_check_seconds = float(pressure_check_seconds)
        self._capacity = initial_size
        self._memory_reader = memory_reader or default_memory_reader
        self._clock = clock
        self._on_evict = on_evict
        self._unbounded = faults.is_enabled(FAULT_UNBOUNDED, config_faults)
        self._lock = threading.RLock()
        # Two orders over the same keys: recency (moved on every hit) and age
        # (moved only when a value is stored), so both the LRU candidates and
        # the oldest entry are found in O(1) instead of scanning.
        self._entries: OrderedDict[K, _Entry[V]] = OrderedDict()
        self._by_age: OrderedDict[K, None] = OrderedDict()
        self._bytes = 0
        self._hits = 0
        self._misses = 0
        self._evictions = dict.fromkeys(EVICTION_REASONS, 0)
        self._resizes = 0
        self._last_memory_mb: float | None = None
        self._last_pressure_check = clock()

    # -- reading and writing -------------------------------------------------

    @overload
    def get(self, key: K) -> V | None: ...
    @overload
    def get(self, key: K, default: D) -> V | D: ...
    def get(self, key: K, default: object = None) -> object:
        """The cached value for ``key`` (a hit), or ``default`` (a miss)."""
        with self._lock:
            entry = self._entries.get(key)
            now = self._clock()
            if entry is not None and self._expired(entry, now) and not self._unbounded:
                self._remove(key, EVICT_AGE)
                entry = None
            if entry is None:
                self._misses += 1
                return default
            entry.hits += 1
            entry.last_access = now
            self._entries.move_to_end(key)
            self._hits += 1
            return entry.value

    def put(self, key: K, value: V) -> None:
        """Store ``value``; replacing a value refreshes its age and keeps its hits."""
        with self._lock:
            now = self._clock()
            size = estimate_size(key) + estimate_size(value) + _ENTRY_OVERHEAD
            old = self._entries.get(key)
            if old is not None:
                self._bytes -= old.size
                old.value, old.size, old.stored_at, old.last_access = value, size, now, now
                self._entries.move_to_end(key)
                self._by_age.move_to_end(key)
            else:
                self._entries[key] = _Entry(value, size, now, now)
                self._by_age[key] = None
            self._bytes += size
            if now - self._last_pressure_check >= self.pressure_check_seconds:
                self._check_memory_pressure_locked(now)
            self._shrink_to(self._capacity, EVICT_CAPACITY)

    def get_or_compute(self, key: K, compute: Callable[[], V]) -> V:
        """Cached value for ``key``, computing and storing it on a miss.

        ``compute`` runs outside the lock so a slow transcription does not
        block other threads; two threads missing the same key may both
        compute it, which is harmless for a pure function.
        """
        found = self.get(key, _MISSING)
        if found is not _MISSING:
            return found
        value = compute()
        self.put(key, value)
        return value

    def pop(self, key: K) -> V | None:
        """Remove ``key`` without counting an eviction; its value or ``None``."""
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is None:
                return None
            del self._by_age[key]
            self._bytes -= entry.size
            return entry.value

    def clear(self) -> None:
        """Drop every entry; statistics are kept."""
        with self._lock:
            self._entries.clear()
            self._by_age.clear()
            self._bytes = 0

    def __contains__(self, key: object) -> bool:
        # Membership does not count as a hit or refresh recency: callers use it
        # for diagnostics, and it must not distort the eviction policy.
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def keys_by_recency(self) -> list[K]:
        """Keys from least to most recently used (a copy)."""
        with self._lock:
            return list(self._entries)

    @property
    def capacity(self) -> int:
        """Current maximum number of entries (between min_size and max_size)."""
        with self._lock:
            return self._capacity

    # -- sizing --------------------------------------------------------------

    def resize(self, capacity: int) -> None:
        """Set the capacity (clamped to [min_size, max_size]) and evict the surplus."""
        with self._lock:
            self._resize(capacity, EVICT_RESIZE)

    def _resize(self, capacity: int, reason: str) -> None:
        new = max(self.min_size, min(self.max_size, int(capacity)))
        if new == self._capacity:
            return
        self._resizes += 1
        self._capacity = new
        self._shrink_to(new, reason)

    def check_memory_pressure(self) -> float:
        """Read process memory now and adapt the capacity; returns the reading in MiB."""
        with self._lock:
            return self._check_memory_pressure_locked(self._clock())

    # Name kept from the seed's API (``cache._check_memory_pressure()``).
    _check_memory_pressure = check_memory_pressure

    def _check_memory_pressure_locked(self, now: float) -> float:
        self._last_pressure_check = now
        memory_mb = float(self._memory_reader())
        self._last_memory_mb = memory_mb
        if memory_mb > self.memory_threshold_mb:
            self._resize(int(self._capacity * 0.75), EVICT_PRESSURE)
        elif memory_mb < 0.8 * self.memory_threshold_mb and len(self._entries) >= self._capacity:
            # Grow only a full cache: a half-empty one would not use the room.
            self._resize(int(self._capacity * 1.25) + 1, EVICT_PRESSURE)
        return memory_mb

    def force_cleanup(self) -> int:
        """Evict expired entries, then everything above ``min_size``; returns the count.

        Meant as a memory monitor's cleanup callback: it keeps the hottest
        ``min_size`` entries so the hit rate recovers quickly afterwards.
        """
        with self._lock:
            before = len(self._entries)
            if not self._unbounded:
                now = self._clock()
                while self._by_age:
                    oldest = next(iter(self._by_age))
                    if not self._expired(self._entries[oldest], now):
                        break
                    self._remove(oldest, EVICT_AGE)
            self._shrink_to(self.min_size, EVICT_CLEANUP)
            return before - len(self._entries)

    # -- statistics ----------------------------------------------------------

    def get_cache_stats(self) -> dict[str, Any]:
        """Counters and sizes as plain data (safe to JSON-encode)."""
        with self._lock:
            lookups = self._hits + self._misses
            return {
                "size": len(self._entries),
                "capacity": self._capacity,
                "min_size": self.min_size,
                "max_size": self.max_size,
                "hits": self._hits,
                "misses": self._misses,
                "hit_rate": self._hits / lookups if lookups else 0.0,
                "evictions": sum(self._evictions.values()),
                "evictions_by_reason": dict(self._evictions),
                "resizes": self._resizes,
                "estimated_bytes": self._bytes,
                "memory_threshold_mb": self.memory_threshold_mb,
                "last_memory_mb": self._last_memory_mb,
            }

    # -- internals -----------------------------------------------------------

    def _expired(self, entry: _Entry[V], now: float) -> bool:
        return now - entry.stored_at > self.max_age_seconds

    def _shrink_to(self, limit: int, reason: str) -> None:
        if self._unbounded:
            return
        while len(self._entries) > limit:
            self._evict_one(reason)

    def _evict_one(self, reason: str) -> None:
        now = self._clock()
        oldest = next(iter(self._by_age))
        if self._expired(self._entries[oldest], now):
            self._remove(oldest, EVICT_AGE)
            return
        # The most recently used entry is never a candidate: it is usually the
        # one just stored, and a new entry with no hits yet must get a chance.
        window = max(1, min(self.sample_size, len(self._entries) - 1))
        victim: K | None = None
        fewest = -1
        for position, (key, entry) in enumerate(self._entries.items()):
            if position >= window:
                break
            # Strictly fewer hits wins, so ties keep the least recently used.
            if victim is None or entry.hits < fewest:
                victim, fewest = key, entry.hits
        assert victim is not None  # the caller only evicts from a non-empty cache
        self._remove(victim, reason)

    def _remove(self, key: K, reason: str) -> None:
        entry = self._entries.pop(key)
        del self._by_age[key]
        self._bytes -= entry.size
        self._evictions[reason] += 1
        if self._on_evict is not None:
            self._on_evict(key, entry.value, reason)


# Name used by the seed's code; kept so examples written against it still run.
MemoryCache = AdaptiveMemoryCache


class _Missing(enum.Enum):
    """The "no such key" marker: its one member narrows away under ``is not``."""

    MISSING = enum.auto()


_MISSING = _Missing.MISSING


def audio_key(audio: object, *, engine: str = "") -> str:
    """Content hash of an audio chunk: sha256 over engine, layout and bytes.

    The engine name is part of the key because two engines transcribe the same
    audio differently; dtype and shape are part of it because the same bytes
    read as int16 or float32 are different sounds.
    """
    digest = hashlib.sha256()
    digest.update(engine.encode("utf-8") + b"\0")
    dtype = getattr(audio, "dtype", None)
    if dtype is not None:
        digest.update(f"{dtype}:{getattr(audio, 'shape', ())}".encode() + b"\0")
    try:
        # Whether ``audio`` has the buffer protocol is found out here, at run
        # time (TypeError below); numpy's stubs declare ndarray a Buffer only
        # for Python 3.12 and later, so the parameter cannot say it for 3.11.
        view = memoryview(audio)  # type: ignore[arg-type]
        if not view.c_contiguous:
            raise BufferError("non-contiguous")
        digest.update(view.cast("B"))
    except (TypeError, BufferError):
        # Non-contiguous arrays (a strided channel view, say) need a copy; an
        # array-like without the buffer protocol is accepted by its tobytes().
        digest.update(audio.tobytes())  # type: ignore[attr-defined]
    return digest.hexdigest()


class TranscriptCache:
    """Chunk transcripts keyed by the sha256 of the chunk's audio.

    Example::

        cache = TranscriptCache(AdaptiveMemoryCache(min_size=10, initial_size=50, max_size=100))
        text = cache.get_or_transcribe(chunk, lambda: engine.transcribe(chunk), engine="sphinx")
    """

    def __init__(self, cache: AdaptiveMemoryCache[str, Any] | None = None) -> None:
        # "is None", not "or": an empty cache has length 0 and is falsy.
        self.cache: AdaptiveMemoryCache[str, Any] = (
            cache if cache is not None else AdaptiveMemoryCache()
        )

    def get(self, audio: object, *, engine: str = "") -> Any:
        return self.cache.get(audio_key(audio, engine=engine))

    def put(self, audio: object, transcript: Any, *, engine: str = "") -> str:
        """Store ``transcript`` for ``audio``; returns the key used."""
        key = audio_key(audio, engine=engine)
        self.cache.put(key, transcript)
        return key

    def get_or_transcribe(
        self, audio: object, transcribe: Callable[[], T], *, engine: str = ""
    ) -> T:
        """The cached transcript of ``audio``, or ``transcribe()``'s result, stored."""
        result: T = self.cache.get_or_compute(audio_key(audio, engine=engine), transcribe)
        return result

    def stats(self) -> dict[str, Any]:
        return self.cache.get_cache_stats()
