"""The tracemalloc side of attribution: tracing as found, traces grouped, sites that grew."""

from __future__ import annotations

import _tracemalloc
import linecache
import os
import tracemalloc
from itertools import groupby
from operator import itemgetter
from typing import Any

# The package's own directory: its frames are the harness, not the test.
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _Sentinel:
    __slots__ = ()


class Tracing:
    """tracemalloc as attribution found it, and whether its traces can still be compared.

    A test may use tracemalloc itself: stop it, restart it with another depth,
    or leave it running. Its traces are then not ours to compare (nor to
    clear), so allocation sites are left out and the note says why; the types
    and chains, found without tracemalloc, are still reported.
    """

    def __init__(self, frames: int) -> None:
        self.frames = max(1, frames)
        self.notes: list[str] = []
        self.ours = not tracemalloc.is_tracing()
        self.usable = self.ours
        if self.ours:
            tracemalloc.start(self.frames)
            # Traced from now on: a stop and restart inside the test drops its
            # trace. Not a list or tuple: those come from free lists, untraced.
            self._sentinel: object = _Sentinel()
        else:
            self._sentinel = None
            self.notes.append(
                f"tracemalloc was already running ({tracemalloc.get_traceback_limit()} frames, "
                "started by the test, a fixture or PYTHONTRACEMALLOC): allocation sites are "
                "left out rather than compare or clear its traces"
            )

    def check(self) -> None:
        """After a run: are our traces intact?"""
        if not self.usable:
            return
        if not tracemalloc.is_tracing():
            why = "the test stops tracemalloc itself (tracemalloc.stop())"
        elif tracemalloc.get_traceback_limit() != self.frames:
            why = (
                f"the test restarts tracemalloc with {tracemalloc.get_traceback_limit()} frames "
                f"instead of {self.frames}"
            )
        elif tracemalloc.get_object_traceback(self._sentinel) is None:
            why = "the test restarts tracemalloc itself, which drops the traces taken before"
        else:
            return
        self.usable = False
        self.notes.append(f"{why}: allocation sites are not available for this test")

    def close(self) -> None:
        # As found: a test that leaves tracemalloc running keeps it running.
        if self.ours and tracemalloc.is_tracing():
            tracemalloc.stop()
        self._sentinel = None


Trace = tuple[tuple[str, int], ...]  # tracemalloc's raw traceback: (filename, lineno), newest first


def grouped_traces() -> dict[Trace, tuple[int, int]]:
    """Traced (size, count) per traceback.

    From the raw traces: ``Snapshot.statistics`` builds a ``Trace`` and a
    ``Traceback`` object per block in Python, about 20 times slower.
    """
    traces = getattr(_tracemalloc, "_get_traces", None)
    if traces is None:  # not CPython's tracemalloc: the public, slower way
        snapshot = tracemalloc.take_snapshot()
        stats = snapshot.statistics("traceback")
        del snapshot
        return {
            tuple((f.filename, f.lineno) for f in reversed(s.traceback)): (s.size, s.count)
            for s in stats
        }
    raw = traces()
    # Sorted and grouped in C: hashing each block's traceback (a tuple of
    # frames, whose hash is not cached) in a dict costs 20 times more.
    raw.sort(key=itemgetter(2))
    out: dict[Trace, tuple[int, int]] = {}
    for tb, group in groupby(raw, itemgetter(2)):
        sizes = list(map(itemgetter(1), group))
        out[tb] = (sum(sizes), len(sizes))
    del raw
    return out


def _stdlib_unittest() -> str:
    import sysconfig

    return os.path.join(sysconfig.get_paths()["stdlib"], "unittest") + os.sep


# Frames the user did not write: pytest's, pluggy's, unittest's (a TestCase's
# method is called through three of its frames) and memwatch's own.
_FRAMEWORK = (
    f"{os.sep}_pytest{os.sep}",
    f"{os.sep}pluggy{os.sep}",
    PACKAGE_DIR,
    _stdlib_unittest(),
)


def framework_file(filename: str) -> bool:
    return any(part in filename for part in _FRAMEWORK)


def grown_sites(
    stats0: dict[Trace, tuple[int, int]],
    stats1: dict[Trace, tuple[int, int]],
    *,
    runs: int,
    top: int,
) -> tuple[list[dict[str, Any]], int]:
    grown: list[tuple[int, int, Trace]] = []
    for tb, (size, count) in stats1.items():
        size0, count0 = stats0.get(tb, (0, 0))
        if size - size0 > 0:
            grown.append((size - size0, count - count0, tb))
    grown.sort(key=lambda g: -g[0])
    sites: list[dict[str, Any]] = []
    traced_growth = 0
    for size_diff, count_diff, tb_frames in grown:
        newest = tb_frames[0][0] if tb_frames else ""
        if newest == tracemalloc.__file__ or newest.startswith(PACKAGE_DIR):
            continue
        traced_growth += size_diff
        # A leak recurs: at least one new block per run, or a sizeable amount.
        # A single block is the harness's own per-run state being replaced.
        if len(sites) >= top or (count_diff < runs and size_diff < 4096):
            continue
        own = [fr for fr in tb_frames if not framework_file(fr[0])]
        # Python 3.11's list comprehension has a frame of its own on the same
        # line as its caller's: one line shown once.
        own = [fr for i, fr in enumerate(own) if i == 0 or tuple(fr) != tuple(own[i - 1])]
        # Most recent call first, as the user reads a leak: where it was made;
        # the frameworks' own frames only when nothing else is there.
        sites.append(
            {
                "size": size_diff,
                "count": count_diff,
                "traceback": [
                    {
                        "filename": filename,
                        "lineno": lineno,
                        "line": linecache.getline(filename, lineno).strip(),
                    }
                    for filename, lineno in own or tb_frames
                ],
                "_where": tuple(tb_frames[0]) if tb_frames else None,
            }
        )
    return sites, traced_growth
