"""Unit tests of the adaptive cache: policy, adaptation, statistics, threads, fault."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from _part2_helpers import FakeClock, FakeMemory
from reference_app.cache import (
    AdaptiveMemoryCache,
    MemoryCache,
    TranscriptCache,
    audio_key,
    estimate_size,
)


def make_cache(**overrides: object) -> AdaptiveMemoryCache[str, str]:
    """A small cache with a fake clock and a memory reading far below threshold."""
    options: dict[str, Any] = {
        "initial_size": 4,
        "min_size": 2,
        "max_size": 8,
        "memory_threshold_mb": 512.0,
        "clock": FakeClock(),
        "memory_reader": FakeMemory(100.0),
        "pressure_check_seconds": 1e9,  # only explicit checks, unless a test says otherwise
    }
    options.update(overrides)
    return AdaptiveMemoryCache(**options)


def test_hit_and_miss_are_counted() -> None:
    cache = make_cache()
    cache.put("a", "alpha")
    assert cache.get("a") == "alpha"
    assert cache.get("missing") is None
    assert cache.get("missing", "fallback") == "fallback"
    stats = cache.get_cache_stats()
    assert (stats["hits"], stats["misses"]) == (1, 2)
    assert stats["hit_rate"] == pytest.approx(1 / 3)


def test_membership_does_not_count_as_a_hit() -> None:
    cache = make_cache()
    cache.put("a", "alpha")
    assert "a" in cache and "b" not in cache
    assert cache.get_cache_stats()["hits"] == 0


def test_fewest_hits_in_the_window_is_evicted() -> None:
    cache = make_cache()
    for key in "abcd":
        cache.put(key, key)
        cache.get(key)
    for key in "abc":
        cache.get(key)
    # Recency order d, a, b, c; hits d=1, the others 2: d goes although
    # it is not the only candidate.
    assert cache.keys_by_recency() == ["d", "a", "b", "c"]
    cache.put("e", "e")
    assert "d" not in cache
    assert cache.get_cache_stats()["evictions_by_reason"]["capacity"] == 1


def test_frequency_protects_a_popular_entry_at_the_lru_end() -> None:
    cache = make_cache(sample_size=4)
    for key in "abcd":
        cache.put(key, key)
    for _ in range(5):
        cache.get("a")  # popular
    for key in "bcd":
        cache.get(key)
    # a was read first, so it is the least recently used.
    assert cache.keys_by_recency() == ["a", "b", "c", "d"]
    cache.put("e", "e")
    # a is least recently used but has 5 hits; b (1 hit) is evicted instead.
    assert "a" in cache
    assert "b" not in cache


def test_ties_in_frequency_evict_the_least_recently_used() -> None:
    cache = make_cache()
    for key in "abcd":
        cache.put(key, key)
    cache.put("e", "e")  # nobody has hits: plain LRU
    assert cache.keys_by_recency() == ["b", "c", "d", "e"]


def test_recency_window_limits_what_frequency_can_choose() -> None:
    cache = make_cache(sample_size=2)
    for key in "abcd":
        cache.put(key, key)
    cache.get("a")
    cache.get("b")  # order now c, d, a, b; c and d have 0 hits
    cache.put("e", "e")
    assert "c" not in cache  # first of the two-entry window with fewest hits


def test_expired_entries_are_evicted_before_anything_else() -> None:
    clock = FakeClock()
    cache = make_cache(clock=clock, max_age_seconds=60.0)
    cache.put("old", "x")
    for _ in range(10):
        cache.get("old")  # popular, but old
    clock.advance(30)
    for key in "bcd":
        cache.put(key, key)
    clock.advance(31)  # "old" is now 61 s old, the others 31 s
    cache.put("e", "e")
    assert "old" not in cache
    assert cache.get_cache_stats()["evictions_by_reason"]["age"] == 1


def test_reading_an_expired_entry_is_a_miss() -> None:
    clock = FakeClock()
    cache = make_cache(clock=clock, max_age_seconds=10.0)
    cache.put("a", "alpha")
    clock.advance(11)
    assert cache.get("a") is None
    assert "a" not in cache
    stats = cache.get_cache_stats()
    assert stats["misses"] == 1 and stats["evictions_by_reason"]["age"] == 1


def test_replacing_a_value_refreshes_its_age_and_keeps_its_hits() -> None:
    clock = FakeClock()
    cache = make_cache(clock=clock, max_age_seconds=10.0)
    cache.put("a", "one")
    cache.get("a")
    clock.advance(8)
    cache.put("a", "two")
    clock.advance(8)
    assert cache.get("a") == "two"
    assert len(cache) == 1


def test_memory_pressure_shrinks_capacity_and_evicts() -> None:
    memory = FakeMemory(100.0)
    cache = make_cache(initial_size=8, memory_reader=memory)
    for i in range(8):
        cache.put(f"k{i}", "v")
    memory.mb = 600.0  # above the 512 MiB threshold
    assert cache.check_memory_pressure() == 600.0
    assert cache.capacity == 6 and len(cache) == 6
    for _ in range(5):
        cache.check_memory_pressure()
    assert cache.capacity == cache.min_size == 2
    assert len(cache) == 2
    stats = cache.get_cache_stats()
    assert stats["evictions_by_reason"]["pressure"] == 6
    assert stats["last_memory_mb"] == 600.0


def test_low_memory_grows_a_full_cache_up_to_max_size() -> None:
    memory = FakeMemory(100.0)  # below 80 % of 512
    cache = make_cache(initial_size=4, memory_reader=memory)
    cache.check_memory_pressure()
    assert cache.capacity == 4  # not full: no reason to grow
    for i in range(4):
        cache.put(f"k{i}", "v")
    for _ in range(10):
        cache.check_memory_pressure()
        for i in range(cache.capacity):
            cache.put(f"fill{i}", "v")
    assert cache.capacity == cache.max_size == 8


def test_memory_between_80_and_100_percent_of_threshold_keeps_capacity() -> None:
    memory = FakeMemory(450.0)
    cache = make_cache(initial_size=4, memory_reader=memory)
    for i in range(4):
        cache.put(f"k{i}", "v")
    cache.check_memory_pressure()
    assert cache.capacity == 4
    assert cache.get_cache_stats()["resizes"] == 0


def test_pressure_is_checked_automatically_on_put_after_the_interval() -> None:
    clock = FakeClock()
    memory = FakeMemory(900.0)
    cache = make_cache(clock=clock, memory_reader=memory, pressure_check_seconds=5.0)
    cache.put("a", "x")
    assert memory.reads == 0
    clock.advance(6)
    cache.put("b", "x")
    assert memory.reads == 1
    assert cache.capacity == 3  # 4 * 0.75


def test_force_cleanup_keeps_min_size_entries() -> None:
    cache = make_cache(initial_size=8)
    for i in range(8):
        cache.put(f"k{i}", "v")
    assert cache.force_cleanup() == 6
    assert len(cache) == 2
    assert cache.get_cache_stats()["evictions_by_reason"]["cleanup"] == 6


def test_resize_is_clamped_to_the_configured_range() -> None:
    cache = make_cache()
    for key in "abcd":
        cache.put(key, key)
    cache.resize(1000)
    assert cache.capacity == 8
    cache.resize(0)
    assert cache.capacity == 2 and len(cache) == 2
    assert cache.get_cache_stats()["evictions_by_reason"]["resize"] == 2


def test_growing_at_max_size_does_not_count_pressure_evictions() -> None:
    memory = FakeMemory(10.0)
    cache = make_cache(initial_size=8, memory_reader=memory)
    for i in range(20):
        cache.put(f"k{i}", "v")
        cache.check_memory_pressure()  # wants to grow, but 8 is already max_size
    reasons = cache.get_cache_stats()["evictions_by_reason"]
    assert reasons["capacity"] == 12 and reasons["pressure"] == 0


def test_estimated_bytes_follow_entries() -> None:
    cache = make_cache()
    assert cache.get_cache_stats()["estimated_bytes"] == 0
    cache.put("a", "x" * 10_000)
    big = cache.get_cache_stats()["estimated_bytes"]
    assert big > 10_000
    cache.put("a", "small")
    assert cache.get_cache_stats()["estimated_bytes"] < big
    cache.pop("a")
    assert cache.get_cache_stats()["estimated_bytes"] == 0


def test_estimate_size_follows_one_level_of_containers() -> None:
    assert estimate_size(["x" * 1000]) > 1000
    assert estimate_size({"k": "v" * 1000}) > 1000


def test_clear_keeps_statistics() -> None:
    cache = make_cache()
    cache.put("a", "x")
    cache.get("a")
    cache.clear()
    assert len(cache) == 0
    assert cache.get_cache_stats()["hits"] == 1


def test_on_evict_sees_every_eviction_with_its_reason() -> None:
    seen: list[tuple[str, str, str]] = []
    cache = make_cache(on_evict=lambda k, v, why: seen.append((k, v, why)))
    for key in "abcde":
        cache.put(key, key.upper())
    assert seen == [("a", "A", "capacity")]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_size": 0}, "min_size"),
        ({"min_size": 10, "max_size": 5, "initial_size": 7}, "min_size"),
        ({"initial_size": 50}, "initial_size"),
        ({"sample_size": 0}, "sample_size"),
        ({"memory_threshold_mb": 0}, "positive"),
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_cache(**kwargs)


def test_defaults_follow_the_seed() -> None:
    cache: AdaptiveMemoryCache[str, str] = AdaptiveMemoryCache(memory_reader=FakeMemory())
    stats = cache.get_cache_stats()
    assert (stats["min_size"], stats["max_size"], stats["capacity"]) == (100, 5000, 500)
    assert stats["memory_threshold_mb"] == 512.0
    assert MemoryCache is AdaptiveMemoryCache


def test_default_memory_reader_reads_this_process() -> None:
    cache: AdaptiveMemoryCache[str, str] = AdaptiveMemoryCache()
    rss = cache.check_memory_pressure()
    assert 5.0 < rss < 100_000.0


@pytest.fixture(scope="module")
def long_lived_cache() -> TranscriptCache:
    """One cache for the whole module, as an app keeps it for a whole session."""
    return TranscriptCache(
        AdaptiveMemoryCache(
            initial_size=64, min_size=16, max_size=64, memory_reader=FakeMemory(10.0),
            pressure_check_seconds=1e12,
        )
    )  # fmt: skip


_chunk_numbers = iter(range(10**9))


# Eight runs, more warmup: every run evicts 128 entries, and the cache's dict
# tables resize now and then under that churn, a step of a few hundred malloc
# bytes that a four-run window read as a trend once in several CI runs.
@pytest.mark.no_leaks(warmup=4, runs=8)
def test_a_full_cache_stops_growing(long_lived_cache: TranscriptCache) -> None:
    """Fresh chunks every run: after the first run the cache is full, and stays bounded."""
    for _ in range(128):
        chunk = np.full(256, next(_chunk_numbers), dtype=np.int32)
        long_lived_cache.get_or_transcribe(chunk, lambda: "text " * 50, engine="e")
    assert long_lived_cache.stats()["size"] == 64


@pytest.mark.max_growth("1 MiB")
def test_concurrent_use_keeps_the_cache_consistent() -> None:
    cache = make_cache(initial_size=50, min_size=10, max_size=50)
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            for i in range(2000):
                key = f"k{(i * 7 + offset) % 200}"
                if cache.get(key) is None:
                    cache.put(key, key)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stats = cache.get_cache_stats()
    assert stats["size"] <= 50
    assert stats["hits"] + stats["misses"] == 8000
    assert len(cache.keys_by_recency()) == stats["size"]


def test_unbounded_cache_fault_never_evicts() -> None:
    memory = FakeMemory(900.0)
    cache = make_cache(memory_reader=memory, config_faults=["unbounded_cache"])
    for i in range(50):
        cache.put(f"k{i}", "v")
    cache.check_memory_pressure()
    cache.force_cleanup()
    assert len(cache) == 50
    assert cache.get_cache_stats()["evictions"] == 0


def test_unbounded_cache_fault_can_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REFERENCE_APP_FAULTS", "unbounded_cache")
    cache = make_cache()
    for i in range(20):
        cache.put(f"k{i}", "v")
    assert len(cache) == 20


# -- transcript cache -----------------------------------------------------------


def test_audio_key_is_a_sha256_of_content_layout_and_engine() -> None:
    pcm = np.arange(1600, dtype=np.int16)
    key = audio_key(pcm, engine="sphinx")
    assert len(key) == 64 and int(key, 16) >= 0
    assert audio_key(pcm.copy(), engine="sphinx") == key
    assert audio_key(pcm, engine="whisper") != key
    assert audio_key(pcm.astype(np.int32), engine="sphinx") != key
    assert audio_key(pcm.tobytes(), engine="sphinx") != key  # raw bytes carry no dtype
    assert audio_key(bytearray(pcm.tobytes()), engine="sphinx") == audio_key(
        pcm.tobytes(), engine="sphinx"
    )


def test_audio_key_accepts_non_contiguous_arrays() -> None:
    stereo = np.arange(3200, dtype=np.int16).reshape(-1, 2)
    left = stereo[:, 0]
    assert not left.flags.c_contiguous
    assert audio_key(left) == audio_key(np.ascontiguousarray(left))


def test_transcript_cache_transcribes_each_chunk_once() -> None:
    calls: list[int] = []
    cache = TranscriptCache(make_cache())
    chunk = np.ones(800, dtype=np.float32)

    def transcribe() -> str:
        calls.append(1)
        return "hello"

    assert cache.get_or_transcribe(chunk, transcribe, engine="e") == "hello"
    assert cache.get_or_transcribe(chunk.copy(), transcribe, engine="e") == "hello"
    assert len(calls) == 1
    assert cache.get(chunk, engine="e") == "hello"
    assert cache.get(chunk, engine="other") is None
    stats = cache.stats()
    assert stats["hits"] == 2 and stats["misses"] == 2


def test_transcript_cache_uses_the_cache_it_is_given_even_when_empty() -> None:
    inner = make_cache()
    assert len(inner) == 0  # falsy: an "or" default would have replaced it
    assert TranscriptCache(inner).cache is inner


def test_transcript_cache_put_returns_the_key() -> None:
    cache = TranscriptCache(make_cache())
    key = cache.put(b"\x00\x01", "text", engine="e")
    assert key == audio_key(b"\x00\x01", engine="e")
    assert key in cache.cache
