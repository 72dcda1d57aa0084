"""The results data model: what one run of the plugin measured and decided.

This is the contract between the engine and everything that consumes its
output (terminal summary, JSON results, HTML report, baselines, xdist). It is
plain data: dataclasses whose ``to_dict()`` gives the JSON form documented in
docs/results.md and published as a JSON Schema. Nothing here imports pytest.

Document layout (``schema_version`` 1)::

    {
      "schema_version": 1,
      "tool": "pytest-memwatch",
      "run": RunMeta,
      "tests": [TestResult, ...],
      "totals": Totals,
      "ledger": Ledger            (optional: docs/resources.md)
    }
"""

from __future__ import annotations

import os
import platform
import socket
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pytest_memwatch.base.probes import bytes_metric
from pytest_memwatch.reports.document import (
    MachineDoc,
    NotMeasuredReason,
    TotalsDoc,
    WorkerTotalsDoc,
)

SCHEMA_VERSION = 1

# Why a test in the document has no measurement (its ``not_measured``).
NOT_MEASURED: dict[NotMeasuredReason, str] = {
    "memwatch_skip": "opted out with memwatch_skip",
    "soak_not_run": "a soak test, skipped without --memwatch-soak or -m soak",
    "marker_error": "its memwatch marker is wrong; it errored at setup",
    "not_run": "it stopped before the measured window (skipped or failed in setup)",
    "not_selected": "neither --memwatch nor a memwatch marker asked for it",
}


# -- the figures every output shows ------------------------------------------------
# Defined once here; the terminal, the JSON totals, the HTML report, JUnit and
# the comparison all read them through these functions.


def growth_bytes(test: Mapping[str, Any]) -> int | None:
    """A test's "growth": the larger of its RSS and malloc growth, in bytes.

    Python objects over 512 bytes and C allocations show in both; small
    objects only in RSS; untouched ``malloc`` memory only in ``malloc``.
    """
    return bytes_metric(dict(test.get("growth") or {}))


def peak_bytes(test: Mapping[str, Any]) -> int | None:
    """Peak RSS during the test above what the process held at its start."""
    value = test.get("peak_growth")
    return value if isinstance(value, int) else None


def run_deltas(runs: Iterable[Mapping[str, Any]], metric: str) -> list[int | None]:
    """What each measured (non-warmup) run added: consecutive after-readings.

    The series a leak verdict judges ("+32 blocks/run"). A run's own
    after-minus-before also counts what it replaces from the run before
    (pytest's reports, say): a test leaking one block a run read "-24" per run.
    Read from the after-readings, so documents written before run entries'
    ``delta`` meant the same give the same answer.
    """
    out: list[int | None] = []
    prev: int | None = None
    for i, run in enumerate(runs):
        after = (run.get("after") or {}).get(metric)
        if i == 0:
            own = (run.get("delta") or {}).get(metric)
            prev = None if after is None or own is None else after - own
        if not run.get("warmup"):
            out.append(None if after is None or prev is None else after - prev)
        prev = after
    return out


def failed_verdicts(test: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The verdicts of a test that failed: what makes it count as a failed memory verdict."""
    return [v for v in test.get("verdicts") or () if not v.get("passed", True)]


def is_measured(test: Mapping[str, Any]) -> bool:
    """A test with a measurement: a ``before`` sample, repeated runs or a soak series."""
    return bool(test.get("before") is not None or test.get("runs") or test.get("soak"))


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class TestResult:
    """Everything measured and decided for one test (one node id).

    - ``before``/``after``: probe readings around the reported run (see
      :class:`pytest_memwatch.base.probes.Sample`), ``growth`` their difference.
    - ``peak_rss``: high-water mark of RSS during that run, in bytes, and
      ``peak_growth`` the same above ``before.rss``.
    - ``runs``: one entry per repetition when the test was repeated (warmup
      runs flagged), each with its per-metric ``delta``.
    - ``verdicts``: list of :class:`pytest_memwatch.base.verdict.Verdict` dicts.
    - ``attribution``: see :mod:`pytest_memwatch.engine.attribution`, or ``None``.
    - ``soak``: a soak test's trend and samples (docs/soak.md), or ``None``.
    - ``timing``: where memwatch's time on the test went (its runs, attribution).
    - ``not_measured``: why a test has no measurement (a key of
      :data:`NOT_MEASURED`), or ``None`` for a measured test.
    """

    __test__ = False  # not a pytest test class, whatever the collector thinks

    nodeid: str
    outcome: str = "passed"  # passed | failed | skipped | error
    worker: str | None = None
    duration_s: float = 0.0
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    growth: dict[str, int | None] = field(default_factory=dict)
    peak_rss: int | None = None
    peak_growth: int | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    attribution: dict[str, Any] | None = None
    soak: dict[str, Any] | None = None
    markers: list[str] = field(default_factory=list)
    compare_fail: list[str] = field(default_factory=list)
    timing: dict[str, Any] | None = None
    not_measured: str | None = None

    @property
    def failed_verdicts(self) -> list[dict[str, Any]]:
        return failed_verdicts({"verdicts": self.verdicts})

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodeid": self.nodeid,
            "outcome": self.outcome,
            "worker": self.worker,
            "duration_s": round(self.duration_s, 6),
            "markers": list(self.markers),
            "before": self.before,
            "after": self.after,
            "growth": dict(self.growth),
            "peak_rss": self.peak_rss,
            "peak_growth": self.peak_growth,
            "runs": list(self.runs),
            "verdicts": list(self.verdicts),
            "attribution": self.attribution,
            "soak": self.soak,
            **({"compare_fail": list(self.compare_fail)} if self.compare_fail else {}),
            **({"timing": dict(self.timing)} if self.timing is not None else {}),
            **({"not_measured": self.not_measured} if self.not_measured is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TestResult:
        return cls(
            nodeid=d["nodeid"],
            outcome=d.get("outcome", "passed"),
            worker=d.get("worker"),
            duration_s=float(d.get("duration_s", 0.0)),
            before=d.get("before"),
            after=d.get("after"),
            growth=dict(d.get("growth") or {}),
            peak_rss=d.get("peak_rss"),
            peak_growth=d.get("peak_growth"),
            runs=list(d.get("runs") or []),
            verdicts=list(d.get("verdicts") or []),
            attribution=d.get("attribution"),
            soak=d.get("soak"),
            markers=list(d.get("markers") or []),
            compare_fail=list(d.get("compare_fail") or []),
            timing=d.get("timing"),
            not_measured=d.get("not_measured"),
        )


def machine_info() -> MachineDoc:
    """Describe this machine: the key baselines are stored under."""
    try:
        import psutil

        total = int(psutil.virtual_memory().total)
    except Exception:
        total = None
    return {
        "hostname": socket.gethostname(),
        "system": platform.system(),
        "release": platform.release(),
        "arch": platform.machine(),
        "cpu_count": os.cpu_count(),
        "total_memory": total,
        "python_implementation": platform.python_implementation(),
    }


@dataclass
class RunMeta:
    plugin_version: str
    pytest_version: str
    python: str = field(default_factory=lambda: sys.version.split()[0])
    # Described when first written (machine_info imports psutil): a session that
    # measures nothing must cost no more than the plugin's import.
    machine: MachineDoc | None = None
    commit: str | None = None
    workers: int = 1
    started_at: str = field(default_factory=now_iso)
    finished_at: str | None = None
    args: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    unavailable_probes: dict[str, str] = field(default_factory=dict)
    # Per process that ran tests ("main", or the xdist worker id): its pid, how
    # many tests it measured and which probes it lacked. Workers send theirs to
    # the controller at session end (docs/parallel.md).
    worker_info: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        if self.machine is None:
            self.machine = machine_info()
        return {
            "plugin_version": self.plugin_version,
            "pytest_version": self.pytest_version,
            "python": self.python,
            "machine": self.machine,
            "commit": self.commit,
            "workers": self.workers,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "args": self.args,
            "settings": self.settings,
            "unavailable_probes": self.unavailable_probes,
            "worker_info": self.worker_info,
        }


class Totals:
    """The ``totals`` of a results document, counted one test (dict) at a time.

    Fed as tests finish, so a session keeps these few numbers rather than
    every record until it ends (see :mod:`pytest_memwatch.reports.spool`).
    """

    def __init__(self) -> None:
        self.tests = 0
        self.measured = 0
        self.failed_verdicts = 0
        self.total_growth_rss = 0
        # The sum of the tests' growth (growth_bytes), as the reports show it.
        self.total_growth = 0
        self.max_peak_rss: int | None = None
        self.by_worker: dict[str, WorkerTotalsDoc] = {}

    def add(self, t: Mapping[str, Any]) -> None:
        self.tests += 1
        failed = bool(failed_verdicts(t))
        if failed:
            self.failed_verdicts += 1
        if not is_measured(t):
            return
        self.measured += 1
        rss = (t.get("growth") or {}).get("rss") or 0
        grown = growth_bytes(t) or 0
        self.total_growth_rss += rss
        self.total_growth += grown
        w = self.by_worker.setdefault(
            t.get("worker") or "main",
            {"measured": 0, "failed_verdicts": 0, "growth_rss": 0, "growth": 0},
        )
        w["measured"] += 1
        w["failed_verdicts"] += 1 if failed else 0
        w["growth_rss"] += rss
        w["growth"] = w.get("growth", 0) + grown
        peak = t.get("peak_rss")
        if peak is not None and (self.max_peak_rss is None or peak > self.max_peak_rss):
            self.max_peak_rss = peak

    def to_dict(self) -> TotalsDoc:
        return {
            "tests": self.tests,
            "measured": self.measured,
            "failed_verdicts": self.failed_verdicts,
            "total_growth_rss": self.total_growth_rss,
            "total_growth": self.total_growth,
            "max_peak_rss": self.max_peak_rss,
            "by_worker": {k: v.copy() for k, v in self.by_worker.items()},
        }


def totals(tests: Iterable[TestResult | Mapping[str, Any]]) -> TotalsDoc:
    """The ``totals`` of a results document with these tests (objects or dicts)."""
    counted = Totals()
    for t in tests:
        counted.add(t.to_dict() if isinstance(t, TestResult) else t)
    return counted.to_dict()


@dataclass
class Results:
    run: RunMeta
    tests: list[TestResult] = field(default_factory=list)
    # The session ledger (pytest_memwatch.reports.ledger.merge_ledgers), when tests ran.
    ledger: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "tool": "pytest-memwatch",
            "run": self.run.to_dict(),
            "tests": [t.to_dict() for t in self.tests],
            "totals": totals(self.tests),
            **({"ledger": self.ledger} if self.ledger is not None else {}),
        }


def document(
    run: RunMeta,
    tests: Iterable[dict[str, Any]],
    totals_: TotalsDoc,
    *,
    ledger: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A results document whose ``tests`` may be a stream (e.g. a :class:`ResultSpool`).

    The writers (:func:`pytest_memwatch.reports.results_file.iter_dumps`, the HTML
    report) go through ``tests`` once per output without holding them all.
    """
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": "pytest-memwatch",
        "run": run.to_dict(),
        "tests": tests,
        "totals": totals_,
        **({"ledger": ledger} if ledger is not None else {}),
    }
