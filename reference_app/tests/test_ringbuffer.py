"""Ring buffer and buffer tracker: unit tests and hypothesis properties."""

from __future__ import annotations

import gc
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_app.ringbuffer import BufferFull, BufferTracker, OverflowPolicy, RingBuffer


def frames(start: int, n: int) -> np.ndarray:
    """n frames numbered from start, so order and loss are visible in the values."""
    return np.arange(start, start + n, dtype=np.int64).reshape(-1, 1)


def test_write_read_peek_fifo() -> None:
    ring = RingBuffer(8, dtype=np.int64)
    assert ring.write(frames(0, 5)) == 5
    assert len(ring) == 5 and ring.free == 3
    assert ring.fill_level == pytest.approx(5 / 8)
    assert ring.peek(2).ravel().tolist() == [0, 1]
    assert len(ring) == 5, "peek must not consume"
    assert ring.read(3).ravel().tolist() == [0, 1, 2]
    ring.write(frames(5, 5))  # wraps around the end of the storage
    assert ring.read().ravel().tolist() == [3, 4, 5, 6, 7, 8, 9]
    assert len(ring) == 0


def test_drop_oldest_counts_dropped() -> None:
    ring = RingBuffer(4, dtype=np.int64, policy="drop_oldest")
    ring.write(frames(0, 3))
    ring.write(frames(3, 3))
    assert ring.read().ravel().tolist() == [2, 3, 4, 5]
    assert ring.stats.dropped == 2
    ring.write(frames(10, 9))  # longer than the whole buffer: only the newest survive
    assert ring.read().ravel().tolist() == [15, 16, 17, 18]
    assert ring.stats.dropped == 7


def test_reject_refuses_whole_write_and_keeps_contents() -> None:
    ring = RingBuffer(4, dtype=np.int64, policy=OverflowPolicy.REJECT)
    ring.write(frames(0, 3))
    with pytest.raises(BufferFull, match="3 frames do not fit in 1 free of 4"):
        ring.write(frames(3, 3))
    assert ring.stats.rejected == 3
    assert ring.read().ravel().tolist() == [0, 1, 2]


def test_block_waits_for_reader() -> None:
    ring = RingBuffer(4, dtype=np.int64, policy="block", block_timeout=5.0)
    ring.write(frames(0, 4))
    drained: list[int] = []

    def reader() -> None:
        time.sleep(0.05)
        drained.extend(ring.read(2).ravel().tolist())

    t = threading.Thread(target=reader)
    t.start()
    assert ring.write(frames(4, 2)) == 2  # blocks until the reader made room
    t.join()
    assert drained == [0, 1]
    assert ring.read().ravel().tolist() == [2, 3, 4, 5]


def test_block_times_out_with_partial_count() -> None:
    ring = RingBuffer(4, dtype=np.int64, policy="block", block_timeout=0.05)
    ring.write(frames(0, 2))
    with pytest.raises(
        BufferFull, match=r"timed out after 0\.05 s with 3 of 5 frames unwritten"
    ) as info:
        ring.write(frames(2, 5))
    assert info.value.written == 2
    assert ring.read().ravel().tolist() == [0, 1, 2, 3]


def test_read_timeout_waits_for_data() -> None:
    ring = RingBuffer(4)
    threading.Timer(0.05, lambda: ring.write(np.ones(2, dtype=np.float32))).start()
    assert len(ring.read(timeout=5.0)) == 2
    assert len(ring.read(timeout=0.01)) == 0


def test_shape_checks() -> None:
    ring = RingBuffer(4, channels=2)
    with pytest.raises(ValueError, match=r"expected frames of shape \(n, 2\)"):
        ring.write(np.zeros(3))
    with pytest.raises(ValueError, match="capacity must be positive"):
        RingBuffer(0)


def test_tracker_counts_and_forgets() -> None:
    tracker = BufferTracker()
    a = RingBuffer(1000, dtype=np.float32, tracker=tracker)
    b = RingBuffer(500, channels=2, dtype=np.int16, tracker=tracker)
    assert tracker.info().total_bytes == 4000 + 2000
    assert tracker.info().buffer_count == 2
    a.close()
    assert tracker.info().total_bytes == 2000
    del b  # dropped without close(): the weak reference forgets it
    gc.collect()
    assert tracker.info().total_bytes == 0
    assert tracker.info().peak_bytes == 6000


@pytest.mark.max_growth("256 KiB", warmup=1, runs=3)
def test_ring_buffer_churn_is_bounded() -> None:
    """Many buffers made and closed on one tracker leave nothing behind."""
    tracker = BufferTracker()
    for _ in range(50):
        ring = RingBuffer(16_000, tracker=tracker)
        ring.write(np.ones(20_000, dtype=np.float32))
        ring.read(8000)
        ring.close()
    assert tracker.info().buffer_count == 0


# -- properties ----------------------------------------------------------------------
ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, 40)),
        st.tuples(st.just("read"), st.integers(0, 40)),
        st.tuples(st.just("peek"), st.integers(0, 40)),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(capacity=st.integers(1, 32), script=ops, policy=st.sampled_from(["drop_oldest", "reject"]))
def test_model_fifo_never_over_capacity_no_silent_loss(
    capacity: int, script: list[tuple[str, int]], policy: str
) -> None:
    """Against a plain list model: FIFO order, capacity bound, and every frame
    either read, still stored, dropped (drop_oldest) or rejected (reject)."""
    ring = RingBuffer(capacity, dtype=np.int64, policy=policy)
    model: list[int] = []
    next_value = 0
    out: list[int] = []
    dropped = rejected = 0
    for op, n in script:
        if op == "write":
            values = list(range(next_value, next_value + n))
            next_value += n
            if policy == "reject" and len(model) + n > capacity:
                with pytest.raises(BufferFull):
                    ring.write(np.array(values, dtype=np.int64))
                rejected += n
            else:
                ring.write(np.array(values, dtype=np.int64))
                model.extend(values)
                excess = max(0, len(model) - capacity)
                dropped += excess
                del model[:excess]
        elif op == "read":
            got = ring.read(n).ravel().tolist()
            assert got == model[:n]
            out.extend(got)
            del model[:n]
        else:
            assert ring.peek(n).ravel().tolist() == model[:n]
        assert len(ring) == len(model) <= capacity
        assert ring.fill_level == pytest.approx(len(model) / capacity)
    stats = ring.stats
    assert (stats.dropped, stats.rejected, stats.read) == (dropped, rejected, len(out))
    # Conservation: every value ever offered is accounted for exactly once.
    assert len(out) + len(model) + dropped + rejected == next_value
    assert stats.written - stats.dropped - stats.read == len(ring)
    # Whatever survives is in order and is the newest of what was accepted.
    assert out + model == sorted(out + model)


@settings(max_examples=60, deadline=None)
@given(
    capacity=st.integers(1, 16),
    channels=st.integers(1, 3),
    sizes=st.lists(st.integers(0, 40), max_size=20),
)
def test_drop_oldest_keeps_newest_frames(capacity: int, channels: int, sizes: list[int]) -> None:
    ring = RingBuffer(capacity, channels=channels, dtype=np.int64)
    total = 0
    for n in sizes:
        block = np.arange(total, total + n, dtype=np.int64)[:, None].repeat(channels, axis=1)
        ring.write(block)
        total += n
    expected = list(range(max(0, total - capacity), total))
    got = ring.read()
    assert got[:, 0].tolist() == expected
    assert (got == got[:, :1]).all(), "channels of a frame stay together"
