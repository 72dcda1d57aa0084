"""The watch: what a test left behind, after a grace period for what is shutting down.

A :class:`ResourceWatch` notes the keys of every kind when a test starts; the
session's :class:`ResourceChecker` compares them with what exists after it,
applies the ignore rules and waits out the grace period (:func:`grace_checks`)
while anything is left. :class:`Liveness` answers the session-end re-check.
"""

from __future__ import annotations

import gc
import os
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pytest_memwatch.config.rules import DEFAULT_RULES, IgnoreRule, parse_rules
from pytest_memwatch.resources.audit import (
    OPENED_KINDS,
    recording_openers,
    unwatch_temp,
    watch_temp,
)
from pytest_memwatch.resources.descriptors import describe_fd, fd_targets
from pytest_memwatch.resources.processes import describe_process, proc_stat, process_keys
from pytest_memwatch.resources.survivor import Resource, shown_frame
from pytest_memwatch.resources.tasks import describe_task, pending_tasks
from pytest_memwatch.resources.tempfiles import describe_temp, temp_entries
from pytest_memwatch.resources.threads import (
    describe_thread_entry,
    install_thread_recorder,
    remove_thread_recorder,
    thread_keys,
)

DEFAULT_GRACE = 1.0
FIRST_PAUSE = 0.01


def grace_checks(grace: float, sleep: Callable[[float], None]) -> Iterator[float]:
    """When to check again for what is still there: yields the time waited so far.

    The first check is at once; after each, the caller stops (``break``) when
    nothing is left, else a doubling pause (10, 20, 40 … ms) follows, until
    ``grace`` seconds are used up: the last yield is at ``grace``.
    """
    waited, pause = 0.0, FIRST_PAUSE
    while True:
        yield waited
        if waited >= grace:
            return
        step = min(pause, grace - waited)
        sleep(step)
        waited += step
        pause *= 2


def current_resources() -> list[Resource]:
    """Everything of every kind the process has now, described (for session-start records)."""
    out = [describe_thread_entry(v) for v in thread_keys().values()]
    out += [describe_fd(fd, target) for fd, target in fd_targets().items()]
    out += [describe_process(pid, key) for key, pid in process_keys().items()]
    out += [describe_task(t) for t in pending_tasks()]
    return out


class ResourceWatch:
    """Keys of what exists when a test starts, and the recorders that run during it."""

    def __init__(self) -> None:
        install_thread_recorder()
        self._temp = watch_temp()
        self.threads = set(thread_keys())
        # Descriptor numbers, not targets: pytest's capture points fds 1 and 2
        # elsewhere during a test (dup2), which is not a new descriptor.
        self.fds = set(fd_targets())
        self.processes = set(process_keys())
        self.tasks = weakref.WeakSet(pending_tasks())
        self.closed = False

    def survivors(self) -> list[Resource]:
        """What exists now and did not when the watch started, described."""
        out = [describe_thread_entry(v) for k, v in thread_keys().items() if k not in self.threads]
        out += [describe_fd(fd, t) for fd, t in fd_targets().items() if fd not in self.fds]
        out += [
            describe_process(pid, k) for k, pid in process_keys().items() if k not in self.processes
        ]
        out += [describe_temp(p) for p in self._temp.survivors()]
        out += [describe_task(t) for t in pending_tasks() if t not in self.tasks]
        return out

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            remove_thread_recorder()
            unwatch_temp(self._temp)


@dataclass
class ResourceReport:
    """What one check found: survivors that count (``leaked``) and those a rule excused."""

    leaked: list[Resource]
    ignored: list[tuple[Resource, str]]
    waited_s: float
    grace_s: float

    def details(self, leaked: Sequence[Resource] | None = None) -> dict[str, Any]:
        return {
            "leaked": [r.to_dict() for r in (self.leaked if leaked is None else leaked)],
            "ignored": [{**r.to_dict(), "rule": why} for r, why in self.ignored],
            "waited_s": round(self.waited_s, 3),
            "grace_s": self.grace_s,
        }


class ResourceChecker:
    """One per session: the rules, the grace period and what existed at session start."""

    def __init__(
        self,
        rules: Iterable[str] = (),
        *,
        grace: float = DEFAULT_GRACE,
        ignore_existing: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rules = parse_rules((*DEFAULT_RULES, *rules))
        self.grace = max(0.0, grace)
        self.ignore_existing = ignore_existing
        self.existing: set[str] = set()
        self._sleep = sleep

    def remember_existing(self) -> None:
        """Record what the process has now; later survivors that look the same are ignored."""
        self.existing = {
            r.signature for r in (*current_resources(), *temp_entries()) if r.signature
        }

    def begin(self) -> ResourceWatch:
        return ResourceWatch()

    def _why_ignored(self, res: Resource, rules: Sequence[IgnoreRule]) -> str | None:
        for rule in rules:
            if rule.matches(res):
                return str(rule)
        if self.ignore_existing and res.signature is not None and res.signature in self.existing:
            return "existed at session start"
        return None

    def split(
        self, found: Iterable[Resource], extra_rules: Sequence[IgnoreRule] = ()
    ) -> tuple[list[Resource], list[tuple[Resource, str]]]:
        rules = (*self.rules, *extra_rules)
        leaked: list[Resource] = []
        ignored: list[tuple[Resource, str]] = []
        for res in found:
            why = self._why_ignored(res, rules)
            if why is None:
                leaked.append(res)
            else:
                ignored.append((res, why))
        return leaked, ignored

    def finish(
        self, watch: ResourceWatch, extra_rules: Sequence[IgnoreRule] = ()
    ) -> ResourceReport:
        """Compare with the watch's start, waiting out the grace period while anything is left.

        Always closes the watch (its recorders stop), whatever happens.
        """
        try:
            for waited in grace_checks(self.grace, self._sleep):
                # A file or socket dropped in a reference cycle is closed when collected.
                gc.collect()
                report = ResourceReport(
                    *self.split(watch.survivors(), extra_rules), waited, self.grace
                )
                if not report.leaked:
                    break
            return report
        finally:
            watch.close()

    def trace_openers(self, run_once: Callable[[], object], depth: int) -> list[Resource]:
        """Run once more, recording where files, sockets and temp entries are opened.

        Returns the descriptors, sockets and temp entries that run left behind
        (ignore rules applied), each with the traceback of where it was opened
        as its ``origin``: a failed check names what was left, this says which
        line of the test opened it. Pipes and descriptors inherited or made
        in C have no audit event: their origin stays empty.
        """
        watch = ResourceWatch()
        try:
            with recording_openers(depth) as openers:
                run_once()
            gc.collect()
            leaked, _ = self.split(watch.survivors())
        finally:
            watch.close()
        out: list[Resource] = []
        for res in sorted(leaked, key=lambda r: (r.kind, r.key[1] if r.kind != "tempfile" else 0)):
            if res.kind not in OPENED_KINDS:
                continue
            origin = openers.origin(res)
            shown = shown_frame(origin)
            where = f"opened at {shown.where()}" if shown else "where it was opened is unknown"
            out.append(replace(res, origin=origin, description=f"{res.description}, {where}"))
        return out


class Liveness:
    """Whether survivors recorded earlier still exist (the session-end re-check).

    The listings are read once per instance, however many survivors are asked about.
    """

    def __init__(self) -> None:
        self._threads: set[tuple[Any, ...]] | None = None
        self._fds: dict[int, str] | None = None

    def __call__(self, res: Resource) -> bool:
        key = res.key
        if res.kind == "thread":
            if self._threads is None:
                self._threads = set(thread_keys())
            return key in self._threads
        if res.kind in ("fd", "socket"):
            if self._fds is None:
                self._fds = fd_targets()
            return bool(self._fds.get(key[1]) == key[2])
        if res.kind == "process":
            stat = proc_stat(key[1])
            return stat is not None and bool(stat[1] == key[2])
        if res.kind == "tempfile":
            return os.path.lexists(key[1])
        if res.kind == "task":
            task = res.ref() if res.ref is not None else None
            return task is not None and not bool(task.done())
        return False


def known_keys() -> tuple[set[tuple[Any, ...]], set[int]]:
    """Keys of the threads and numbers of the descriptors open now (the ledger's start)."""
    return set(thread_keys()), set(fd_targets())


def new_resources(
    known_threads: set[tuple[Any, ...]], known_fds: set[int]
) -> tuple[list[Resource], set[tuple[Any, ...]], set[int]]:
    """Threads and descriptors not in the known sets, and both sets as they are now."""
    threads = thread_keys()
    fds = fd_targets()
    new = [describe_thread_entry(v) for k, v in threads.items() if k not in known_threads]
    new += [describe_fd(fd, t) for fd, t in fds.items() if fd not in known_fds]
    return new, set(threads), set(fds)
