"""The samples of a soak run in a fixed memory budget, and even thinning of long series.

:class:`SampleBuffer` keeps a run's samples (live, or read back from its file)
in preallocated arrays, halving them when full; :func:`thin` picks evenly
spread indices, for the fits and for the samples copied into results.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping
from typing import Any, Literal

# What every sample records. The first six are the documented soak sample
# (docs/results.md); malloc and blocks come free with the same probe read.
Metric = Literal["rss", "traced", "gc_objects", "fds", "threads", "malloc", "blocks"]
FIELDS: tuple[Metric, ...] = ("rss", "traced", "gc_objects", "fds", "threads", "malloc", "blocks")

# Samples kept in memory during a run. Preallocated and thinned in place, so
# an 8-hour run at 1 s does not grow the heap it is measuring.
BUFFER_CAPACITY = 4096

_MISSING = -1  # no probe value (every metric is a non-negative count)


class SampleBuffer:
    """The samples of a run, thinned deterministically into a fixed memory budget.

    Every ``stride``-th sample is kept; when the buffer is full, every other
    kept sample is dropped and the stride doubles. The arrays are allocated
    once, so the harness adds nothing to the growth it measures, and feeding
    the same stream (a live run, or its file read back) keeps the same samples.
    """

    def __init__(self, capacity: int = BUFFER_CAPACITY) -> None:
        if capacity < 2:
            raise ValueError("capacity must be at least 2")
        self.capacity = capacity
        self._t = array("d", bytes(8 * capacity))
        self._seg = array("h", bytes(2 * capacity))
        self._v = {f: array("q", bytes(8 * capacity)) for f in FIELDS}
        self.n = 0
        self.stride = 1
        self.seen = 0
        self.last: dict[str, Any] | None = None

    def add(self, t: float, values: Mapping[str, int | None], segment: int = 0) -> None:
        self.last = {"t": t, **{f: values.get(f) for f in FIELDS}}
        k = self.seen
        self.seen += 1
        if k % self.stride:
            return
        if self.n == self.capacity:
            self._compact()
            if k % self.stride:
                return
        i = self.n
        self._t[i] = t
        self._seg[i] = segment
        for f in FIELDS:
            v = values.get(f)
            self._v[f][i] = _MISSING if v is None else int(v)
        self.n = i + 1

    def _compact(self) -> None:
        keep = range(0, self.n, 2)
        for j, i in enumerate(keep):
            self._t[j] = self._t[i]
            self._seg[j] = self._seg[i]
            for f in FIELDS:
                self._v[f][j] = self._v[f][i]
        self.n = len(keep)
        self.stride *= 2

    def samples(self) -> list[dict[str, Any]]:
        """The kept samples as dicts (``t``, ``segment`` and every field)."""
        out = []
        for i in range(self.n):
            d: dict[str, Any] = {"t": self._t[i], "segment": self._seg[i]}
            for f in FIELDS:
                v = self._v[f][i]
                d[f] = None if v == _MISSING else v
            out.append(d)
        return out

    def series(self, metric: Metric, since: float = 0.0) -> tuple[list[float], list[float]]:
        """``(t, value)`` of ``metric`` from ``since`` on, without missing values."""
        ts: list[float] = []
        ys: list[float] = []
        col = self._v[metric]
        for i in range(self.n):
            v = col[i]
            if v != _MISSING and self._t[i] >= since:
                ts.append(self._t[i])
                ys.append(float(v))
        return ts, ys


def thin(n: int, limit: int) -> list[int]:
    """At most ``limit`` indices spread evenly over ``range(n)``, first and last included."""
    if n <= limit:
        return list(range(n))
    step = (n - 1) / (limit - 1)
    return sorted({round(i * step) for i in range(limit)})
