"""The ``resources`` verdict, and survivors named in a failed leak verdict instead.

A leak verdict failing on ``fds`` or ``threads`` already counts those kinds:
their survivors are named in its message rather than in a second failure.
"""

from __future__ import annotations

from pytest_memwatch.base.verdict import Verdict, VerdictSource
from pytest_memwatch.resources.survivor import Resource, describe_list
from pytest_memwatch.resources.watch import ResourceReport

# Leak-verdict metrics that already count some kinds: a failing trend on them
# is named with those kinds' survivors instead of a second failure line.
_COVERED = {"fds": ("fd", "socket"), "threads": ("thread",)}


def resources_verdict(report: ResourceReport, source: VerdictSource) -> Verdict:
    """The ``resources`` verdict: fails when anything was left behind."""
    if not report.leaked:
        note = f" ({len(report.ignored)} ignored by rules)" if report.ignored else ""
        return Verdict(
            "resources",
            source,
            True,
            f"nothing left behind{note}",
            details=report.details(),
        )
    n = len(report.leaked)
    waited = f", after waiting {report.waited_s:.2f} s" if report.waited_s else ""
    return Verdict(
        "resources",
        source,
        False,
        f"resources: {n} left behind after the test and its fixtures were torn down"
        f"{waited}: {describe_list(report.leaked)}",
        metric=report.leaked[0].kind,
        measured=float(n),
        details=report.details(),
    )


def name_in_leak_verdict(verdict: Verdict, report: ResourceReport) -> list[Resource]:
    """Name in a failed leak verdict the survivors its failing metrics already count.

    Returns the survivors it does not cover, for a ``resources`` verdict of
    their own. The leak verdict is changed in place.
    """
    if verdict.passed:
        return list(report.leaked)
    failing = {
        m
        for m, d in (verdict.details.get("metrics") or {}).items()
        if isinstance(d, dict) and d.get("state") == "suspect"
    }
    kinds = {k for m in failing for k in _COVERED.get(m, ())}
    covered = [r for r in report.leaked if r.kind in kinds]
    if covered:
        verdict.message += f"; left behind by the measured runs: {describe_list(covered)}"
        verdict.details["resources"] = report.details(covered)
    return [r for r in report.leaked if r.kind not in kinds]
