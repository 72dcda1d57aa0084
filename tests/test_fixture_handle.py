"""The object behind the ``memwatch`` fixture, driven directly (no pytester).

The leak checks here run in the test process itself, so they use leaks far
above any noise: 64 KiB buffers (made at run time, not constant-folded
literals the compiler would share) kept in a list.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import ClassVar

import pytest

from pytest_memwatch.fixture import LeakCheck, MemwatchHandle

MiB = 1024 * 1024


class Node:
    """A plain object that can be weakly referenced."""


@pytest.fixture
def handle() -> Iterator[MemwatchHandle]:
    # Full collections cost time in proportion to the heap; this process holds the
    # whole test session. Freezing what exists now keeps each reading cheap without
    # changing what the check sees (everything made after this point).
    gc.collect()
    gc.freeze()
    try:
        # managed: as the memwatch fixture makes it (finish() runs at teardown).
        yield MemwatchHandle("tests/test_fixture_handle.py::x", managed=True)
    finally:
        gc.unfreeze()


def test_check_leaks_flags_a_leaking_callable(handle: MemwatchHandle) -> None:
    kept: list[bytearray] = []
    result = handle.check_leaks(lambda: kept.append(bytearray(64 * 1024)), warmup=1, runs=4)
    assert isinstance(result, LeakCheck)
    assert not result
    assert not result.passed
    assert result.verdict.kind == "leak"
    assert result.verdict.source == "fixture"
    assert result.message.startswith("leak: malloc grows +64.")
    assert result.message == result.verdict.message
    assert result.growth_per_call is not None
    assert 60 * 1024 <= result.growth_per_call <= 72 * 1024
    assert result.runs >= 4
    assert set(result.deltas) == {"blocks", "malloc", "rss"}
    malloc = result.deltas["malloc"]
    assert malloc is not None and len(malloc) == result.runs
    assert all(d >= 64 * 1024 for d in malloc)
    assert repr(result).startswith("<LeakCheck LEAK: leak: ")
    # Every run really called the function: warmup + measured runs.
    assert len(kept) == 1 + result.runs


def test_check_leaks_passes_a_clean_callable(handle: MemwatchHandle) -> None:
    def work() -> None:
        scratch = [bytearray(1000) for _ in range(100)]
        del scratch

    result = handle.check_leaks(work, warmup=1, runs=4)
    assert result, result.message
    assert result.passed
    assert result.message.startswith("no growth trend over ")
    assert result.growth_per_call is not None and result.growth_per_call < 4096
    assert repr(result).startswith("<LeakCheck passed: ")


def test_check_leaks_with_resources_sees_a_leaked_descriptor(handle: MemwatchHandle) -> None:
    import os

    fds: list[int] = []
    try:
        result = handle.check_leaks(
            lambda: fds.append(os.open(os.devnull, os.O_RDONLY)), warmup=1, runs=3, resources=True
        )
    finally:
        for fd in fds:
            os.close(fd)
    assert not result
    assert "fds grows +1.0 fds/run" in result.message
    assert result.deltas["fds"] is not None


def test_assert_collected_weakref_checked_now(handle: MemwatchHandle) -> None:
    obj = Node()
    ref = weakref.ref(obj)
    del obj
    handle.assert_collected(ref)  # freed: no error


def test_assert_collected_weakref_still_held_fails_now_with_the_holder(
    handle: MemwatchHandle,
) -> None:
    holder = {"cache": [Node()]}
    ref = weakref.ref(holder["cache"][0])
    with pytest.raises(AssertionError) as info:
        handle.assert_collected(ref, "the session")
    message = str(info.value)
    assert message.startswith("memwatch: the session was not freed")
    assert holder["cache"][0] is ref()


class _Registry:
    """Module-level holder, so the back-reference chain starts at a module."""

    items: ClassVar[list[Node]] = []


def test_assert_collected_object_checked_at_finish(handle: MemwatchHandle) -> None:
    freed = Node()
    handle.assert_collected(freed)
    del freed
    handle.finish()  # nothing left: no error

    handle = MemwatchHandle("tests/test_fixture_handle.py::y", managed=True)
    held = Node()
    _Registry.items.append(held)
    try:
        handle.assert_collected(held)
        del held
        with pytest.raises(AssertionError) as info:
            handle.finish()
        message = str(info.value)
        assert message.startswith("memwatch: Node object was not freed; held by: ")
        # The chain runs from this module down to the object, even though the
        # heap was frozen (as the plugin freezes it between measured tests).
        holder = message.split("held by: ", 1)[1]
        assert holder.startswith("module <module '")
        assert "test_fixture_handle" in holder.split(" -> ")[0]
        assert message.rstrip().split(" -> ")[-1].startswith("Node <")
        assert " -> list [" in message
    finally:
        _Registry.items.clear()
    handle.finish()  # each pending object is checked once


def test_assert_collected_refuses_objects_without_weakrefs(handle: MemwatchHandle) -> None:
    with pytest.raises(TypeError) as info:
        handle.assert_collected(5)
    assert str(info.value) == (
        "memwatch.assert_collected: int objects cannot be weakly referenced, so their release "
        "cannot be observed; pass an instance of a class (or a weakref.ref to one)"
    )


def test_baseline_snapshot_growth_and_peak(handle: MemwatchHandle) -> None:
    base = handle.baseline()
    assert base.rss is not None
    kept = [bytearray(b"\x01") * (8 * MiB)]
    grown = handle.snapshot("loaded")
    assert (grown["malloc"] or 0) >= 8 * MiB
    assert [label for label, _ in handle.snapshots] == ["loaded"]
    assert handle.growth() >= 8 * MiB
    # Over glibc's largest mmap threshold (32 MiB), so the block gets fresh pages
    # rather than reusing free heap pages that RSS already counts.
    scratch = bytearray(b"\x01") * (48 * MiB)
    del scratch
    assert handle.peak() >= 40 * MiB
    # The peak is a running maximum: reading it again does not lose it.
    assert handle.peak() >= 40 * MiB
    kept.clear()
    assert handle.growth() < 2 * MiB


def test_growth_without_baseline_takes_one(handle: MemwatchHandle) -> None:
    assert handle.growth() < 1 * MiB
    assert handle.peak() < 8 * MiB


def test_assert_max_growth(handle: MemwatchHandle) -> None:
    handle.baseline()
    kept = [bytearray(b"\x01") * (3 * MiB)]
    handle.assert_max_growth(8)  # bare number: MiB
    handle.assert_max_growth("4 MiB")
    handle.snapshot("step one")
    with pytest.raises(AssertionError) as info:
        handle.assert_max_growth("1 MiB")
    message = str(info.value)
    assert message.startswith(
        "memwatch: 3.0 MiB held beyond the baseline, over the limit of 1.0 MiB"
    )
    assert message.endswith(" (snapshots: step one: +3.0 MiB)")
    del kept


def test_memory_freed_in_the_middle_of_the_heap_is_not_held(handle: MemwatchHandle) -> None:
    # Freeing an mmapped 20 MiB block raises glibc's mmap threshold, so the 8 MiB
    # block below comes from the heap; a later allocation pins the heap top, so
    # freeing the 8 MiB leaves resident free pages that RSS still counts.
    raise_threshold = bytearray(b"\x01") * (20 * MiB)
    del raise_threshold
    handle.baseline()
    block = bytearray(b"\x01") * (8 * MiB)
    pin = bytearray(b"\x01") * (256 * 1024)
    del block
    assert handle.growth() < 1 * MiB
    handle.assert_max_growth("1 MiB")
    del pin
