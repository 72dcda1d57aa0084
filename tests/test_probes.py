"""The cheap probes: what each reads, and how a missing one degrades."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pytest_memwatch.base import probes
from pytest_memwatch.base.probes import (
    METRICS,
    Prober,
    Sample,
    bytes_metric,
    get_prober,
)

MiB = 1024 * 1024


@contextlib.contextmanager
def running_thread() -> Iterator[threading.Thread]:
    """One more OS thread, alive inside the block and joined after it."""
    release = threading.Event()
    t = threading.Thread(target=release.wait)
    t.start()
    try:
        yield t
    finally:
        release.set()
        t.join()


def assert_counts_one_more_descriptor(prober: Prober) -> None:
    before = prober.fds()
    fd = os.open(os.devnull, os.O_RDONLY)
    try:
        assert prober.fds() == (before or 0) + 1
    finally:
        os.close(fd)
    assert prober.fds() == before


def touched(n: int) -> bytearray:
    """``n`` bytes whose pages are really written (calloc'ed zero pages are not resident)."""
    return bytearray(b"\x01") * n


def test_sample_fields() -> None:
    sample_fields = tuple(f.name for f in dataclasses.fields(Sample))
    assert sample_fields == ("t", "rss", "malloc", "blocks", "gc_objects", "fds", "threads")
    assert sample_fields[1:] == METRICS


def test_sample_reads_every_probe_here() -> None:
    prober = Prober()
    s = prober.sample()
    assert prober.unavailable == {}, "this Linux/glibc machine should provide every probe"
    assert s.rss is not None and s.rss > 10 * MiB
    assert s.malloc is not None and s.malloc > 0
    assert s.blocks is not None and s.blocks > 1000
    assert s.gc_objects is not None and s.gc_objects > 1000
    assert s.fds is not None and s.fds >= 3
    assert s.threads is not None and s.threads >= 1
    assert s.t <= time.monotonic()


def test_sample_to_dict_and_minus() -> None:
    a = Sample(t=1.0, rss=100, malloc=None, blocks=10, gc_objects=5, fds=4, threads=1)
    b = Sample(t=2.0, rss=150, malloc=7, blocks=8, gc_objects=5, fds=5, threads=2)
    assert a.to_dict() == {
        "t": 1.0,
        "rss": 100,
        "malloc": None,
        "blocks": 10,
        "gc_objects": 5,
        "fds": 4,
        "threads": 1,
    }
    assert b.minus(a) == {
        "rss": 50,
        "malloc": None,  # missing on one side: unknown, not zero
        "blocks": -2,
        "gc_objects": 0,
        "fds": 1,
        "threads": 1,
    }


def test_bytes_metric_is_the_larger_of_rss_and_malloc() -> None:
    assert bytes_metric({"rss": 4096, "malloc": 100}) == 4096
    assert bytes_metric({"rss": 0, "malloc": 70_000}) == 70_000
    assert bytes_metric({"rss": -8192, "malloc": -10}) == -10
    assert bytes_metric({"rss": None, "malloc": 5}) == 5
    assert bytes_metric({"rss": None, "malloc": None}) is None
    assert bytes_metric({}) is None


def test_blocks_count_one_kept_object() -> None:
    prober = get_prober()
    keep: list[object] = [None] * 5

    def growth(action: Callable[[], object]) -> int:
        before = prober.sample()
        action()
        return prober.sample().minus(before)["blocks"] or 0

    # The earlier reading is itself alive (a few blocks) when the later one is
    # taken; the median of a few pairs of readings is that constant.
    empty = sorted(growth(lambda: None) for _ in range(5))[2]
    kept = sorted(growth(lambda i=i: keep.__setitem__(i, object())) for i in range(5))[2]
    assert kept - empty == 1


def test_malloc_sees_a_c_level_allocation() -> None:
    prober = get_prober()
    before = prober.sample()
    block = touched(4 * MiB)
    after = prober.sample()
    assert (after.minus(before)["malloc"] or 0) >= 4 * MiB
    del block


def test_fds_count_an_open_descriptor() -> None:
    assert_counts_one_more_descriptor(get_prober())


def test_threads_count_a_running_thread() -> None:
    prober = get_prober()
    before = prober.threads()
    with running_thread():
        assert prober.threads() == before + 1
    # join() returns when the Python thread is done; the OS thread exits a moment later.
    deadline = time.monotonic() + 5
    while prober.threads() != before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert prober.threads() == before


linux_proc = pytest.mark.skipif(
    not os.path.isdir("/proc/self/task"), reason="Linux /proc needed"
)


@linux_proc
def test_fd_count_by_directory_size_agrees_with_the_listing() -> None:
    prober = Prober()
    try:
        if prober._fd_count != "size":
            pytest.skip("this kernel does not give /proc/self/fd a size (Linux < 6.2)")
        opened = [os.open(os.devnull, os.O_RDONLY) for _ in range(3)]
        try:
            assert prober.fds() == prober._list_fds()
            with_three = prober.fds()
        finally:
            for fd in opened:
                os.close(fd)
        assert prober.fds() == (with_three or 0) - 3 == prober._list_fds()
    finally:
        prober.close()


@linux_proc
def test_a_directory_size_that_disagrees_falls_back_to_listing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Kernels before 6.2 report size 0 for /proc/self/fd.
    real = Prober._dir_stat

    def sizeless(self: Prober, name: str) -> Any:
        st = real(self, name)
        if st is None or name != "fd":
            return st
        return os.stat_result((*st[:6], 0, *st[7:10]))

    monkeypatch.setattr(Prober, "_dir_stat", sizeless)
    prober = Prober()
    try:
        assert prober._fd_count == "list"
        assert "fds" not in prober.unavailable
        assert_counts_one_more_descriptor(prober)
    finally:
        prober.close()


@linux_proc
def test_thread_count_by_link_count_agrees_with_stat() -> None:
    prober = Prober()
    try:
        assert prober._thread_count in ("nlink", "stat")
        with running_thread():
            assert prober.threads() == prober._stat_threads()
    finally:
        prober.close()


@linux_proc
def test_no_task_directory_counts_threads_from_stat(monkeypatch: pytest.MonkeyPatch) -> None:
    real = Prober._dir_stat
    monkeypatch.setattr(
        Prober, "_dir_stat", lambda self, name: None if name == "task" else real(self, name)
    )
    prober = Prober()
    try:
        assert prober._thread_count == "stat"
        before = prober.threads()
        with running_thread():
            assert prober.threads() == before + 1
    finally:
        prober.close()


def test_peak_watch_sees_a_50_mib_bytearray() -> None:
    prober = get_prober()
    gc.collect()
    start = prober.rss()
    assert start is not None
    watch = prober.start_peak()
    block = touched(50 * MiB)
    del block
    peak = watch.stop()
    assert peak is not None
    assert peak - start >= 45 * MiB
    # Freed again: the peak is a high-water mark, not the current RSS.
    assert (prober.rss() or 0) < peak


def test_peak_watch_in_sampler_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    # Where /proc has no resettable high-water mark, a thread polls RSS.
    prober = Prober()
    monkeypatch.setattr(prober, "_peak_mode", "sampler")
    start = prober.rss() or 0
    threads_before = threading.active_count()
    watch = prober.start_peak()
    assert threading.active_count() == threads_before + 1
    block = touched(50 * MiB)
    time.sleep(0.1)  # several polling intervals while the block is resident
    del block
    peak = watch.stop()
    assert threading.active_count() == threads_before, "stop() joins the sampler"
    assert peak is not None and peak - start >= 45 * MiB


def test_peak_watch_without_any_peak_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    prober = Prober()
    monkeypatch.setattr(prober, "_peak_mode", "none")
    assert prober.start_peak().stop() is None


class _LibcWithoutMallinfo2:
    """A C library as on musl or an old glibc: loads, but has no mallinfo2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass


def test_missing_mallinfo2_degrades_to_none_and_the_rest_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(probes.ctypes, "CDLL", _LibcWithoutMallinfo2)
    prober = Prober()
    assert prober.unavailable == {"malloc": "the C library has no mallinfo2 (glibc >= 2.33 needed)"}
    s = prober.sample()
    assert s.malloc is None
    assert None not in (s.rss, s.blocks, s.gc_objects, s.fds, s.threads)
    prober.trim()  # nothing to trim with: a no-op, not an error
    # The byte budget falls back to RSS alone.
    assert bytes_metric(s.minus(s)) == 0


def test_missing_libc_degrades_too(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_libc(*args: Any, **kwargs: Any) -> None:
        raise OSError("libc.so.6: cannot open shared object file")

    monkeypatch.setattr(probes.ctypes, "CDLL", no_libc)
    prober = Prober()
    assert set(prober.unavailable) == {"malloc"}
    assert prober.malloc() is None


def test_broken_psutil_still_reads_rss_from_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise psutil.AccessDenied()

    monkeypatch.setattr(psutil, "Process", refuse)
    prober = Prober()
    # /proc/self/statm gives RSS without psutil: nothing to warn about.
    assert prober.unavailable == {}
    s = prober.sample()
    assert s.rss is not None and s.rss > 0
    assert s.malloc is not None and s.fds is not None and s.threads is not None


def test_no_way_to_read_rss_degrades_rss_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise psutil.AccessDenied()

    monkeypatch.setattr(psutil, "Process", refuse)
    monkeypatch.setattr(Prober, "_proc_read", lambda self, name: None)
    prober = Prober()
    assert "rss" in prober.unavailable
    assert prober.unavailable["rss"].startswith("psutil cannot read process memory: ")
    s = prober.sample()
    assert s.rss is None
    assert s.malloc is not None and s.fds is not None and s.blocks is not None
    assert s.threads == threading.active_count()


def test_get_prober_is_built_once() -> None:
    assert get_prober() is get_prober()


def test_sample_without_collection_does_not_collect(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = gc.collect
    monkeypatch.setattr(gc, "collect", lambda *a: calls.append(1) or real(*a))
    prober = get_prober()
    prober.sample(collect=False)
    assert calls == []
    prober.sample()
    assert calls == [1]


def test_peak_is_exact_in_a_process_spawned_by_a_big_parent() -> None:
    # getrusage()'s ru_maxrss survives execve: a child spawned while this process
    # is big would report our peak and lose the exact, resettable high-water mark.
    import subprocess
    import sys

    child = (
        "from pytest_memwatch.base.probes import get_prober\n"
        "p = get_prober()\n"
        "start = p.rss()\n"
        "w = p.start_peak()\n"
        "b = bytearray(b'\\x01') * (40 * 1024 * 1024); del b\n"  # a burst far under 5 ms
        "print(p._peak_mode, (w.stop() - start) // (1024 * 1024))\n"
    )
    ballast = touched(200 * MiB)
    try:
        done = subprocess.run(
            [sys.executable, "-c", child], capture_output=True, text=True, timeout=60, check=True
        )
    finally:
        del ballast
    mode, peak_mib = done.stdout.split()
    assert mode == "hwm"
    assert 38 <= int(peak_mib) <= 60


def test_a_nested_watch_does_not_erase_the_outer_peak() -> None:
    # The kernel keeps one high-water mark per process; memory_limit or the
    # memwatch fixture starting a watch inside a measured test resets it.
    prober = get_prober()
    if prober._peak_mode != "hwm":
        pytest.skip("needs the resettable high-water mark of Linux")
    start = prober.rss() or 0
    outer = prober.start_peak()
    burst = touched(48 * MiB)
    del burst
    inner = prober.start_peak()
    inner_peak = inner.stop()
    outer_peak = outer.stop()
    assert inner_peak is not None and outer_peak is not None
    assert inner_peak - start < 16 * MiB, "the inner watch sees only its own span"
    assert outer_peak - start >= 40 * MiB, "the outer watch keeps the burst before the inner one"
