"""What a measured test's reports say: its result, its failed verdicts as the call's
failure, its status letter, its JUnit properties and its pytest-html section.

The result (a results-document dict) rides on one of the test's reports as
``report.memwatch``: plain JSON-able data, which xdist ships to the controller.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_memwatch.engine import RunMeasure, TestSpec
from pytest_memwatch.engine.plan import RepeatPlan
from pytest_memwatch.plugin import _pytest_private as private
from pytest_memwatch.plugin.state import FIXTURE_VERDICTS, SOAK_OUTCOME, SessionState
from pytest_memwatch.reports.results import TestResult


def build_result(
    item: pytest.Item,
    state: SessionState,
    spec: TestSpec,
    measures: list[RunMeasure],
    plan: RepeatPlan | None,
    verdicts: list[Any],
    attribution: dict[str, Any] | None,
    reports: list[pytest.TestReport],
    duration: float,
) -> TestResult:
    """The test's entry of the results document, from its runs and reports."""
    outcome = "passed"
    for rep in reports:
        if rep.outcome == "failed":
            outcome = "failed" if rep.when == "call" else "error"
            break
        if rep.outcome == "skipped":
            outcome = "skipped"
    result = TestResult(
        nodeid=spec.nodeid,
        outcome=outcome,
        worker=state.worker,
        duration_s=duration,
        markers=list(spec.marker_names),
        verdicts=[v.to_dict() for v in verdicts],
        attribution=attribution,
    )
    records = plan.records if plan is not None else []
    if measures:
        last = measures[-1]
        # A repeated test's growth is what its last run added, counted from
        # the run before's after-reading as its leak verdict counts (so its
        # "blocks" reads the verdict's "+32 blocks/run", not the run's own +30).
        since = records[-1].since if records else None
        before = since or last.before
        result.before = before.to_dict()
        result.after = last.after.to_dict()
        result.growth = last.after.minus(before)
        result.peak_rss = last.peak_rss
        if last.peak_rss is not None and before.rss is not None:
            result.peak_growth = last.peak_rss - before.rss
    if records:
        result.runs = [r.to_dict() for r in records]
    if spec.compare_fail:
        result.compare_fail = list(spec.compare_fail)
    soak = item.stash.get(SOAK_OUTCOME, None) if spec.soak is not None else None
    if soak is not None:
        del item.stash[SOAK_OUTCOME]  # pop: the series is the result's now
        result.soak = soak.data
        result.verdicts.append(soak.verdict.to_dict())
    if not measures and result.soak is None:
        result.not_measured = "not_run"
    if verdicts and any(v.passed is False for v in verdicts):
        result.outcome = "failed"
    result.verdicts.extend(fixture_verdicts(item, result.outcome))
    return result


def timing(plan: RepeatPlan | None, runs_s: float, attribution_s: float | None) -> dict[str, Any]:
    """Where memwatch's time on a test went (docs/results.md, "timing")."""
    count = len(plan.records) if plan is not None else 1
    return {
        "runs": count,
        "runs_s": round(runs_s, 6),
        "attribution_s": (None if attribution_s is None else round(attribution_s, 6)),
    }


def fixture_verdicts(item: pytest.Item, outcome: str) -> list[dict[str, Any]]:
    """The checks the test made through the ``memwatch`` fixture (popped from the item).

    A failed check counts when the test failed or errored: the check's
    assertion (``assert memwatch.check_leaks(...)``, ``assert_collected``
    at teardown) is what failed it. In a test that passed, a failed check was
    what the test expected (``assert not memwatch.check_leaks(leaky)``), so
    only its passed checks are kept.
    """
    found = item.stash.get(FIXTURE_VERDICTS, None)
    if found is None:
        return []
    del item.stash[FIXTURE_VERDICTS]
    if outcome in ("failed", "error"):
        return found
    return [v for v in found if v.get("passed", True)]


def passed(reports: list[pytest.TestReport]) -> bool:
    """Every phase passed. An xfail test that passed anyway (XPASS) counts: it ran to
    its end, so its memory is judged like any other's (see :func:`apply_verdicts`)."""
    # Plain attribute reads, not the report's properties, and a loop, not all()
    # over a generator: this runs for every measured test.
    for r in reports:  # noqa: SIM110
        if r.outcome != "passed":
            return False
    return True


def xfail_takes_any_failure(item: pytest.Item) -> bool:
    """Whether the item's ``xfail`` marker expects any failure (it names no ``raises``).

    Read with the public ``get_closest_marker``; pytest's own evaluation of the
    marker (conditions, strict) has already happened when the report says XPASS.
    """
    mark = item.get_closest_marker("xfail")
    return mark is not None and mark.kwargs.get("raises") is None


def apply_verdicts(
    reports: list[pytest.TestReport],
    result: TestResult,
    failed: list[Any],
    attribution: dict[str, Any] | None,
    *,
    html_extras: bool = False,
    junit: bool = False,
    xfail_any: bool = False,
) -> dict[str, Any] | None:
    """Put the verdicts on the reports (a failed one fails the call); return the result's dict.

    An xfail test that passed (XPASS) and failed its memory verdict becomes an
    expected failure (XFAIL), as pytest counts any failure of an ``xfail`` test,
    unless its marker names the exceptions it expects (``raises=``): a memory
    verdict is none of them, so the test fails. The verdict's message is the
    report's ``longrepr`` either way.
    """
    if not reports:
        return None
    call = None
    for r in reports:
        if r.when == "call":
            call = r
            break
    target = call or reports[-1]
    if failed and call is not None and call.passed:
        call.longrepr = verdict_text([v.message for v in failed])
        if attribution is not None:
            from pytest_memwatch.engine.attribution import format_attribution

            call.sections.append(("memwatch attribution", format_attribution(attribution)))
        if xfail_any and private.was_expected_to_fail(call):
            call.outcome = "skipped"
            result.outcome = "xfailed"
        else:
            call.outcome = "failed"
            call.memwatch_failed = True  # type: ignore[attr-defined]
            private.forget_expected_failure(call)
    # Plain JSON-able data on the report: xdist ships it to the controller.
    data = result.to_dict()
    target.memwatch = data  # type: ignore[attr-defined]
    if html_extras and call is not None:
        _add_html_extra(call, data)
    if junit:
        teardown = next((r for r in reversed(reports) if r.when == "teardown"), None)
        if teardown is not None:
            teardown.user_properties.extend(_junit_properties(result))
    return data


def detach_result(report: pytest.TestReport) -> None:
    """Take the result off a report once every plugin saw it.

    pytest's terminal reporter keeps every report to the end of the session,
    and would keep every result with it.
    """
    private.pop_report_attribute(report, "memwatch")


def _add_html_extra(report: pytest.TestReport, data: dict[str, Any]) -> None:
    """A memwatch section for this test in pytest-html's report (plain data, xdist-safe)."""
    from pytest_html import extras  # type: ignore[import-not-found,import-untyped,unused-ignore]

    from pytest_memwatch.reports.outputs import html_section

    report.extras = [*getattr(report, "extras", []), extras.html(html_section(data))]  # type: ignore[attr-defined]


def _junit_properties(result: TestResult) -> list[tuple[str, object]]:
    from pytest_memwatch.reports.outputs import junit_properties

    props: list[tuple[str, object]] = list(junit_properties(result.to_dict()))
    failed = [v["kind"] for v in result.verdicts if not v["passed"]]
    props.append(("memwatch_verdict", "failed: " + ",".join(failed) if failed else "passed"))
    props.append(("memwatch_duration_s", round(result.duration_s, 6)))
    attribution_s = (result.timing or {}).get("attribution_s")
    if attribution_s is not None:
        props.append(("memwatch_attribution_s", attribution_s))
    return props


def verdict_text(messages: list[str]) -> VerdictText:
    """Failed verdicts for the failure section: each a headline, its details indented below."""
    from pytest_memwatch.engine.messages import message_lines

    lines: list[str] = []
    for message in messages:
        head, *details = message_lines(message)
        lines.append(f"memwatch {head}")
        lines.extend(f"  {d}" for d in details)
    return VerdictText("\n".join(lines))


class VerdictText(str):
    """The failed verdicts, as a call report's ``longrepr``.

    A string to every reader that takes one (pytest 8.1+ prints a string
    longrepr's text in the short test summary); pytest 8.0 reads only
    ``longrepr.reprcrash.message`` there, so it gets that too, and the
    ``toterminal`` every longrepr object has, which also makes pytest-xdist
    ship it as a plain string. Checked on pytest 8.0.2 and 9.2.
    """

    __slots__ = ()

    @property
    def reprcrash(self) -> VerdictText:
        return self

    @property
    def message(self) -> str:
        # The headline: the short summary has one line per test.
        return str(self).split("\n", 1)[0]

    def toterminal(self, out: Any) -> None:
        out.line(str(self))


class FailedStatus:
    """Marks a call whose memory verdict failed ("M", "FAILED (memwatch)").

    Registered at the first failed verdict: until one fails, no test's status
    needs memwatch.
    """

    def pytest_report_teststatus(self, report: pytest.TestReport) -> tuple[str, str, str] | None:
        return report_status(report)


def report_status(report: pytest.TestReport) -> tuple[str, str, str] | None:
    """The status of a call whose memory verdict failed: "M", "FAILED (memwatch)".

    The verbose word is a plain string, not a ``(word, markup)`` pair: pytest
    8.0 prints such a pair raw in the short test summary (its support came in
    8.1), and for a failed report every pytest colours a plain word red itself.
    """
    if report.when == "call" and getattr(report, "memwatch_failed", False):
        if type(report.longrepr) is str:
            # Shipped by pytest-xdist as a plain string: give pytest 8.0 its
            # ``reprcrash.message`` again (see VerdictText).
            report.longrepr = VerdictText(report.longrepr)
        return "failed", "M", "FAILED (memwatch)"
    return None
