"""Stateful property tests of the adaptive cache (hypothesis).

A plain-list model of the cache follows every operation. Every eviction the
cache reports (through ``on_evict``) is checked against the policy *at the
moment it happens*: an age eviction removes an expired entry; any other
eviction happens only when no entry is expired, removes one of the least
recently used entries (never the most recent one) and, among those, one with
the fewest hits. After every step the model and the cache hold the same keys
in the same recency order, and the cache is never above its capacity.
"""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
import pytest
from _part2_helpers import FakeClock, FakeMemory
from hypothesis import Phase, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from reference_app.cache import AdaptiveMemoryCache

MIN_SIZE, MAX_SIZE, INITIAL = 2, 12, 5
SAMPLE = 3
MAX_AGE = 100.0
THRESHOLD = 500.0

keys = st.sampled_from([f"k{i}" for i in range(20)])


class CacheMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.memory = FakeMemory(100.0)
        self.cache: AdaptiveMemoryCache[str, int] = AdaptiveMemoryCache(
            initial_size=INITIAL,
            min_size=MIN_SIZE,
            max_size=MAX_SIZE,
            memory_threshold_mb=THRESHOLD,
            max_age_seconds=MAX_AGE,
            sample_size=SAMPLE,
            pressure_check_seconds=1e12,
            memory_reader=self.memory,
            clock=self.clock,
            on_evict=self.on_evict,
        )
        # The model: recency order (least recent first), age order (oldest
        # first), hits and store time per key.
        self.recency: list[str] = []
        self.age_order: list[str] = []
        self.hits: dict[str, int] = {}
        self.stored_at: dict[str, float] = {}
        self.capacity = INITIAL
        self.lookups = 0
        self.evictions = 0

    # -- the policy, checked at each eviction ----------------------------------

    def expired(self, key: str) -> bool:
        return self.clock() - self.stored_at[key] > MAX_AGE

    def on_evict(self, key: str, value: Any, reason: str) -> None:
        assert key in self.hits, f"evicted {key!r}, which the model does not hold"
        if reason == "age":
            assert self.expired(key), f"{key!r} evicted for age but not expired"
        else:
            assert not self.expired(self.age_order[0]), (
                f"{key!r} evicted ({reason}) while the expired {self.age_order[0]!r} was kept"
            )
            window = self.recency[: max(1, min(SAMPLE, len(self.recency) - 1))]
            assert key in window, f"{key!r} is not among the least recently used {window}"
            fewest = min(self.hits[k] for k in window)
            first_with_fewest = next(k for k in window if self.hits[k] == fewest)
            assert key == first_with_fewest, (
                f"evicted {key!r} ({self.hits[key]} hits) instead of {first_with_fewest!r}"
            )
        self.forget(key)
        self.evictions += 1

    def forget(self, key: str) -> None:
        self.recency.remove(key)
        self.age_order.remove(key)
        del self.hits[key]
        del self.stored_at[key]

    # -- operations ------------------------------------------------------------

    @rule(key=keys, value=st.integers())
    def put(self, key: str, value: int) -> None:
        if key in self.hits:
            self.recency.remove(key)
            self.age_order.remove(key)
        else:
            self.hits[key] = 0
        self.recency.append(key)
        self.age_order.append(key)
        self.stored_at[key] = self.clock()
        self.cache.put(key, value)

    @rule(key=keys)
    def get(self, key: str) -> None:
        self.lookups += 1
        hit = key in self.hits and not self.expired(key)
        result = self.cache.get(key)
        assert (result is not None) == hit
        if hit:
            self.hits[key] += 1
            self.recency.remove(key)
            self.recency.append(key)
        else:
            assert key not in self.hits  # an expired entry was removed on read

    @rule(seconds=st.floats(min_value=0.0, max_value=60.0))
    def advance_clock(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(mb=st.sampled_from([100.0, 450.0, 600.0, 2000.0]))
    def memory_check(self, mb: float) -> None:
        self.memory.mb = mb
        if mb > THRESHOLD:
            self.capacity = max(MIN_SIZE, int(self.capacity * 0.75))
        elif mb < 0.8 * THRESHOLD and len(self.hits) >= self.capacity:
            self.capacity = min(MAX_SIZE, int(self.capacity * 1.25) + 1)
        self.cache.check_memory_pressure()

    @precondition(lambda self: len(self.hits) > 0)
    @rule()
    def force_cleanup(self) -> None:
        before = len(self.hits)
        removed = self.cache.force_cleanup()
        assert removed == before - len(self.hits)
        assert len(self.hits) <= MIN_SIZE or all(not self.expired(k) for k in self.hits)

    @rule(capacity=st.integers(min_value=-5, max_value=30))
    def resize(self, capacity: int) -> None:
        self.capacity = max(MIN_SIZE, min(MAX_SIZE, capacity))
        self.cache.resize(capacity)

    # -- invariants ------------------------------------------------------------

    @invariant()
    def never_above_capacity(self) -> None:
        assert MIN_SIZE <= self.cache.capacity <= MAX_SIZE
        assert self.cache.capacity == self.capacity
        assert len(self.cache) <= self.cache.capacity

    @invariant()
    def same_content_as_the_model(self) -> None:
        assert self.cache.keys_by_recency() == self.recency

    @invariant()
    def statistics_add_up(self) -> None:
        stats = self.cache.get_cache_stats()
        assert stats["hits"] + stats["misses"] == self.lookups
        assert stats["evictions"] == self.evictions
        assert stats["size"] == len(self.recency)
        assert (stats["estimated_bytes"] == 0) == (not self.recency)
        assert 0.0 <= stats["hit_rate"] <= 1.0


CacheMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, database=None
)
TestCachePolicy = CacheMachine.TestCase


def test_the_machine_catches_a_cache_that_never_evicts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same rules and invariants must fail when the ``unbounded_cache`` fault is on."""
    monkeypatch.setenv("REFERENCE_APP_FAULTS", "unbounded_cache")
    with pytest.raises(AssertionError):
        run_state_machine_as_test(
            CacheMachine,
            settings=settings(
                max_examples=100,
                stateful_step_count=40,
                deadline=None,
                database=None,
                phases=[Phase.generate],  # finding it is the point; shrinking only costs time
            ),
        )
