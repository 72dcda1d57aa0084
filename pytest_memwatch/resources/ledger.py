"""The session ledger: who left resources or memory behind that was still there at session end.

A leak that grows over a whole session (a thread per test module, a file a
fixture never closes) may be too small to fail any one test. The ledger keeps,
per process that runs tests:

- the threads and descriptors each test or fixture set-up created and did not
  release. It costs nothing per test: the cheap probes already count threads
  and descriptors before and after every test, and only when a count went up
  are they listed and the new ones described. Tests whose resources are
  checked in detail add everything their check found (processes, temp files,
  tasks too).
- the tests that left the most memory behind (a fixed-size top list, so the
  ledger does not grow with the suite).

At session end, after every fixture is torn down, it re-checks which recorded
resources are still alive (with the same grace period as a test's check) and
reports those with their culprit, and the process's growth over the session,
as plain data: merging the workers' ledgers on the controller and showing them
is :mod:`pytest_memwatch.reports.ledger`'s. Nothing here imports pytest.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pytest_memwatch.base.limits import TOP_GROWTH
from pytest_memwatch.base.probes import Sample
from pytest_memwatch.resources.survivor import Resource
from pytest_memwatch.resources.watch import Liveness, grace_checks, known_keys, new_resources

# A pathological suite (a thread per test, never stopped) must not make the
# ledger itself a leak: past this many entries only a count is kept.
MAX_ENTRIES = 1000


# What a resource is charged to: the test itself, or the higher-scoped
# fixtures set up for it.
Phase = Literal["test", "fixtures"]


@dataclass(frozen=True)
class Entry:
    resource: Resource
    owner: str  # node id of the test, or of the test whose fixtures were being set up
    phase: Phase
    fixtures: tuple[str, ...] = ()

    def to_dict(self, worker: str) -> dict[str, Any]:
        return {
            **self.resource.to_dict(),
            "owner": self.owner,
            "phase": self.phase,
            "fixtures": list(self.fixtures),
            "worker": worker,
        }


class Ledger:
    """One per process that runs tests; see the module docstring.

    Usage: :meth:`start` once before the first measured test, :meth:`note`
    at each reading of the cheap probes, :meth:`settle` after each test,
    :meth:`add` for what a detailed check found, :meth:`record_growth` per
    test, and :meth:`finish` at session end.
    """

    def __init__(
        self,
        worker: str = "main",
        *,
        top: int = TOP_GROWTH,
        max_entries: int = MAX_ENTRIES,
        keep: Callable[[list[Resource]], list[Resource]] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.worker = worker
        # Drops what the session's ignore rules excuse, so the ledger blames
        # nothing a test's own check would not.
        self._keep = keep
        self.top = top
        self.max_entries = max_entries
        self.started = False
        self.measured = 0
        self._sleep = sleep
        self._start: Sample | None = None
        # Counts of the previous reading and the phases they went up in; plain
        # attributes, so that note() allocates nothing inside a measured window.
        self._last_fds: int | None = None
        self._last_threads: int | None = None
        self._fds_in_fixtures = self._fds_in_test = False
        self._threads_in_fixtures = self._threads_in_test = False
        self._known_threads: set[tuple[Any, ...]] = set()
        self._known_fds: set[int] = set()
        self._entries: dict[tuple[Any, ...], Entry] = {}
        self._dropped = 0
        # A min-heap of (bytes, sequence, node id): the smallest of the top is evicted.
        self._growth: list[tuple[int, int, str]] = []
        self._seq = 0

    def start(self, sample: Sample) -> None:
        """Record what the process has before its first measured test."""
        self.started = True
        self._start = sample
        self._last_fds, self._last_threads = sample.fds, sample.threads
        self._known_threads, self._known_fds = known_keys()

    def note(self, phase: Phase, sample: Sample) -> None:
        """Compare a reading's thread and descriptor counts with the previous one.

        Called inside measured windows (and between repeated runs), so it
        allocates nothing: it only flags which phase a count went up in
        ("fixtures": while the test's higher-scoped fixtures were set up,
        "test": the test itself) for :meth:`settle` to look at.
        """
        fds, threads = sample.fds, sample.threads
        if fds == self._last_fds and threads == self._last_threads:
            return  # the usual case: nothing opened, nothing started
        if fds is not None and self._last_fds is not None and fds > self._last_fds:
            if phase == "fixtures":
                self._fds_in_fixtures = True
            else:
                self._fds_in_test = True
        if threads is not None and self._last_threads is not None and threads > self._last_threads:
            if phase == "fixtures":
                self._threads_in_fixtures = True
            else:
                self._threads_in_test = True
        self._last_fds, self._last_threads = fds, threads

    def settle(self, owner: str, fixtures: Callable[[], Sequence[str]] | None = None) -> None:
        """After a test: when a count went up, list threads and descriptors and charge the new.

        A kind that grew only while fixtures were set up is charged to them;
        anything else to the test.
        """
        flags = (
            self._fds_in_fixtures,
            self._fds_in_test,
            self._threads_in_fixtures,
            self._threads_in_test,
        )
        self._fds_in_fixtures = self._fds_in_test = False
        self._threads_in_fixtures = self._threads_in_test = False
        if not any(flags) or not self.started:
            return
        fds_fixtures, fds_test, threads_fixtures, threads_test = flags
        new, self._known_threads, self._known_fds = new_resources(
            self._known_threads, self._known_fds
        )
        if self._keep is not None:
            new = self._keep(new)
        by_fixtures = [
            r
            for r in new
            if (r.kind == "thread" and threads_fixtures and not threads_test)
            or (r.kind in ("fd", "socket") and fds_fixtures and not fds_test)
        ]
        if by_fixtures:
            self.add(owner, "fixtures", by_fixtures, fixtures() if fixtures is not None else ())
        self.add(owner, "test", [r for r in new if r not in by_fixtures])

    def add(
        self, owner: str, phase: Phase, found: Iterable[Resource], fixtures: Sequence[str] = ()
    ) -> None:
        for res in found:
            if res.key in self._entries:
                continue
            if len(self._entries) >= self.max_entries:
                self._dropped += 1
                continue
            self._entries[res.key] = Entry(res, owner, phase, tuple(fixtures))

    @property
    def recorded(self) -> bool:
        """Whether any thread or descriptor has been charged to a test or fixture."""
        return bool(self._entries)

    def record_growth(self, nodeid: str, grown: float | None) -> None:
        """Bytes one test left behind; only the largest ``top`` are kept."""
        self.measured += 1
        if grown is None or grown <= 0 or self.top <= 0:
            return
        self._seq += 1
        item = (int(grown), self._seq, nodeid)
        if len(self._growth) < self.top:
            heapq.heappush(self._growth, item)
        elif item > self._growth[0]:
            heapq.heapreplace(self._growth, item)

    def finish(self, end: Sample | None, grace: float = 0.0) -> dict[str, Any]:
        """Re-check what is still alive and return this process's ledger (plain data)."""
        entries = list(self._entries.values())
        alive = entries
        # Threads told to stop at session teardown may still be finishing.
        for _ in grace_checks(grace, self._sleep):
            check = Liveness()
            alive = [e for e in alive if check(e.resource)]
            if not alive:
                break
        start = self._start
        session = None
        if start is not None and end is not None:
            session = {"start": start.to_dict(), "end": end.to_dict(), "growth": end.minus(start)}
        return {
            "session": session,
            "measured": self.measured,
            "resources": [e.to_dict(self.worker) for e in alive],
            "recorded": len(entries) + self._dropped,
            "released": len(entries) - len(alive),
            "growth": [
                {"nodeid": nodeid, "worker": self.worker, "bytes": grown}
                for grown, _, nodeid in sorted(self._growth, reverse=True)
            ],
        }
