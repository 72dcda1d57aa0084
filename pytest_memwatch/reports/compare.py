"""Compare two results documents: per-test changes, tolerances and regressions.

Used at the end of a run (``--memwatch-compare``) and by the CLI
(``python -m pytest_memwatch compare OLD.json NEW.json``). Pure data in, data
and text lines out.

Tolerance expressions (``--memwatch-compare-fail``, repeatable) read
``METRIC:TOLERANCE``:

- ``growth:10%``: the test may grow by at most 10 % of its baseline value.
  A percentage of a value near zero is near zero, and memory moves in pages,
  so a percentage on a byte metric always allows at least
  :data:`RELATIVE_FLOOR_BYTES` (the verdict engine's RSS noise floor); write an
  absolute tolerance (``growth:0B``) for a stricter check.
- ``peak:5MB``: an absolute increase; a bare number is MiB, as everywhere
  (``peak:5`` = 5 MiB). Count metrics take a whole number (``blocks:100``).

A test's own ``compare_fail`` expressions (from its marker) replace the
session's for the metrics they name; the session's other metrics still apply.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_memwatch.base.probes import METRICS as PROBE_METRICS
from pytest_memwatch.base.units import format_count, format_size
from pytest_memwatch.config.tolerances import (
    METRIC_UNITS,
    Tolerance,
    effective_tolerances,
    parse_tolerances,
)
from pytest_memwatch.reports.document import (
    BaselineDoc,
    ChangeDoc,
    ChangeStatus,
    ComparisonDoc,
    MetricChangeDoc,
)
from pytest_memwatch.reports.results import growth_bytes, peak_bytes


@dataclass(frozen=True)
class Metric:
    """A per-test figure a comparison can judge."""

    name: str
    unit: str  # "bytes" | "count"
    doc: str
    extract: Callable[[Mapping[str, Any]], int | None]

    def format(self, value: float | None, *, signed: bool = False) -> str:
        if self.unit == "bytes":
            return format_size(value, signed=signed)
        return format_count(value, signed=signed)


def _growth_of(metric: str) -> Callable[[Mapping[str, Any]], int | None]:
    def extract(test: Mapping[str, Any]) -> int | None:
        value = (test.get("growth") or {}).get(metric)
        return value if isinstance(value, int) else None

    return extract


METRICS: dict[str, Metric] = {
    "growth": Metric(
        "growth", "bytes", "bytes left behind (larger of RSS and malloc growth)", growth_bytes
    ),
    "peak": Metric("peak", "bytes", "peak RSS during the test above its start", peak_bytes),
    **{
        m: Metric(
            m,
            METRIC_UNITS[m],
            f"growth of the {m} probe",
            _growth_of(m),
        )
        for m in PROBE_METRICS
    },
}
# The figures every comparison shows, whatever the tolerances.
SHOWN = ("growth", "peak")


# -- comparison -------------------------------------------------------------------


@dataclass
class TestChange:
    """How one test changed between the baseline and this run."""

    __test__ = False  # not a pytest test class

    nodeid: str
    status: ChangeStatus
    metrics: dict[str, MetricChangeDoc] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def delta(self, metric: str) -> int | None:
        change = self.metrics.get(metric)
        return None if change is None else change["delta"]

    def to_dict(self) -> ChangeDoc:
        return {
            "nodeid": self.nodeid,
            "status": self.status,
            "metrics": self.metrics,
            "failures": list(self.failures),
        }


@dataclass
class Comparison:
    """The outcome of comparing a run with a baseline."""

    baseline: BaselineDoc
    tolerances: list[str]
    tests: list[TestChange]
    errors: list[str] = field(default_factory=list)  # bad expressions: they fail the run

    @property
    def regressions(self) -> list[str]:
        """One ``REGRESSION ...`` line per failed tolerance, then one per bad expression."""
        return [f"REGRESSION {f}" for t in self.tests for f in t.failures] + [
            f"REGRESSION cannot check: {e}" for e in self.errors
        ]

    def count(self, status: ChangeStatus) -> int:
        return sum(1 for t in self.tests if t.status == status)

    def to_dict(self) -> ComparisonDoc:
        return {
            "baseline": self.baseline.copy(),
            "tolerances": list(self.tolerances),
            "regressions": len(self.regressions),
            "tests": [t.to_dict() for t in self.tests],
        }

    def summary(self) -> str:
        b = self.baseline
        when = f"run of {b['started_at']}" if b.get("started_at") else ""
        commit = f"commit {str(b['commit'])[:12]}" if b.get("commit") else ""
        about = ", ".join(x for x in (when, commit) if x)
        compared = sum(1 for t in self.tests if t.status not in ("new", "removed"))
        return (
            f"compared with {b['label']}{f' ({about})' if about else ''}: "
            f"{compared} in both, "
            f"{self.count('regressed')} regressed, {self.count('new')} new, "
            f"{self.count('removed')} removed"
        )

    def table(self, limit: int | None = 10, *, regressions: bool = True) -> list[str]:
        """A readable table: every regression, then new/removed and the largest changes.

        ``limit`` caps the rows of each other group (``None``: every test);
        ``regressions`` appends the :attr:`regressions` lines (the plugin
        prints those itself).
        """
        lines = [self.summary()]
        groups: list[tuple[str, list[TestChange]]] = [
            ("regressed", [t for t in self.tests if t.status == "regressed"]),
            (
                "changed",
                sorted(
                    (t for t in self.tests if t.status in ("changed", "same")),
                    key=lambda t: -sum(abs(t.delta(m) or 0) for m in SHOWN),
                ),
            ),
            ("new", [t for t in self.tests if t.status == "new"]),
            ("removed", [t for t in self.tests if t.status == "removed"]),
        ]
        head = "  ".join(
            f"{METRICS[m].name + ' was':>11} {'now':>11} {'change':>11}" for m in SHOWN
        )
        rows: list[str] = []
        for name, group in groups:
            shown = group if limit is None or name == "regressed" else group[:limit]
            if name == "changed" and limit is not None:
                shown = [t for t in shown if any(t.delta(m) for m in SHOWN)]
            for t in shown:
                cells = "  ".join(
                    f"{METRICS[m].format(t.metrics[m]['old']):>11} "
                    f"{METRICS[m].format(t.metrics[m]['new']):>11} "
                    f"{METRICS[m].format(t.metrics[m]['delta'], signed=True):>11}"
                    for m in SHOWN
                )
                rows.append(f"  {t.status.upper():<9} {cells}  {t.nodeid}")
            hidden = len(group) - len(shown)
            if hidden > 0 and name != "changed":
                rows.append(f"  ... and {hidden} more {name} (show all with --all)")
        if rows:
            lines.append(f"  {'status':<9} {head}  test")
            lines += rows
        else:
            lines.append("  no test changed")
        if regressions:
            lines += [f"  {line}" for line in self.regressions]
        return lines


def _change(metric: str, old: _Slim | None, new: _Slim | None) -> MetricChangeDoc:
    i = _METRIC_INDEX[metric]
    a = old[0][i] if old is not None else None
    b = new[0][i] if new is not None else None
    return {"old": a, "new": b, "delta": None if a is None or b is None else b - a}


def _failure(nodeid: str, tol: Tolerance, change: MetricChangeDoc) -> str | None:
    old, new, delta = change["old"], change["new"], change["delta"]
    if old is None or new is None or delta is None:
        return None
    allowed = tol.allowed(old)
    if delta <= allowed:
        return None
    m = METRICS[tol.metric]
    pct = f", {delta / abs(old):+.0%}" if old else ""
    how = f" (allowed {m.format(allowed, signed=True)})" if tol.relative is not None else ""
    return (
        f"{nodeid}: {tol.metric} {m.format(old)} -> {m.format(new)} "
        f"({m.format(delta, signed=True)}{pct}) exceeds {tol.text}{how}"
    )


# What a comparison keeps of a test: every metric's value, and its own
# compare_fail expressions. The documents may be streams of tens of thousands
# of tests (see stream.StreamedTests), so not the tests themselves.
_Slim = tuple[tuple[int | None, ...], tuple[str, ...]]
_METRIC_INDEX = {name: i for i, name in enumerate(METRICS)}


def _slim(test: Mapping[str, Any]) -> _Slim:
    values = tuple(m.extract(test) for m in METRICS.values())
    return values, tuple(test.get("compare_fail") or ())


def compare_docs(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    fail: Sequence[str] = (),
    *,
    baseline: Mapping[str, Any] | None = None,
) -> Comparison:
    """Compare run ``new`` with baseline ``old`` under the ``fail`` expressions.

    ``baseline`` describes the old run for messages (``label``, ``path``);
    by default it is labelled by its start time. Bad expressions never raise:
    they come back in :attr:`Comparison.errors`, which count as regressions,
    so that a typo in CI cannot silently disable the check.
    """
    session, errors = parse_tolerances(fail, where="--memwatch-compare-fail")
    old_run = old.get("run") or {}
    info: BaselineDoc = {
        "label": (baseline or {}).get("label") or str(old_run.get("started_at") or "baseline"),
        "path": (baseline or {}).get("path"),
        "started_at": old_run.get("started_at"),
        "commit": old_run.get("commit"),
    }
    old_tests = {t["nodeid"]: _slim(t) for t in old.get("tests", [])}
    new_tests = {t["nodeid"]: _slim(t) for t in new.get("tests", [])}
    changes: list[TestChange] = []
    for nodeid, test in new_tests.items():
        before = old_tests.get(nodeid)
        own, own_errors = parse_tolerances(test[1], where=nodeid)
        errors += own_errors
        tolerances = effective_tolerances(session, own)
        wanted = list(SHOWN) + [t.metric for t in tolerances if t.metric not in SHOWN]
        metrics = {m: _change(m, before, test) for m in dict.fromkeys(wanted)}
        if before is None:
            changes.append(TestChange(nodeid, "new", metrics))
            continue
        failures = [f for tol in tolerances if (f := _failure(nodeid, tol, metrics[tol.metric]))]
        status: ChangeStatus
        if failures:
            status = "regressed"
        elif any(metrics[m]["delta"] for m in SHOWN):
            status = "changed"
        else:
            status = "same"
        changes.append(TestChange(nodeid, status, metrics, failures))
    for nodeid, test in old_tests.items():
        if nodeid not in new_tests:
            changes.append(
                TestChange(nodeid, "removed", {m: _change(m, test, None) for m in SHOWN})
            )
    return Comparison(info, [t.text for t in session], changes, errors)


# -- comparability ----------------------------------------------------------------

_MACHINE_KEYS = ("hostname", "system", "arch", "python_implementation", "cpu_count", "total_memory")


def machine_warnings(old: Mapping[str, Any], new: Mapping[str, Any], label: str) -> list[str]:
    """Warnings when the baseline ran somewhere its figures are not comparable with this run."""
    old_run, new_run = old.get("run") or {}, new.get("run") or {}
    om, nm = old_run.get("machine") or {}, new_run.get("machine") or {}
    diffs = []
    for key in _MACHINE_KEYS:
        a, b = om.get(key), nm.get(key)
        if a != b:
            if key == "total_memory" and isinstance(a, int) and isinstance(b, int):
                a, b = format_size(a), format_size(b)
            diffs.append(f"{key} {a} vs {b}")
    if old_run.get("python") != new_run.get("python"):
        diffs.append(f"python {old_run.get('python')} vs {new_run.get('python')}")
    out = []
    if diffs:
        out.append(
            f"baseline {label} was recorded on another machine ({', '.join(diffs)}; "
            "baseline vs this run): memory figures may not be comparable"
        )
    if old_run.get("workers") != new_run.get("workers"):
        out.append(
            f"baseline {label} ran with {old_run.get('workers')} worker(s), this run with "
            f"{new_run.get('workers')}: per-test memory depends on what shares a process"
        )
    return out
