"""The session's end: the results files and comparisons, the terminal summary,
and the tests memwatch did not measure, listed in the results with the reason.

Only the process that writes the results (serial, or the xdist controller)
does any of it; the per-test results reach it through ``SessionState.record``.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_memwatch.config import markers
from pytest_memwatch.plugin.state import SessionState
from pytest_memwatch.reports.results import TestResult, document, now_iso

# The key of --memwatch-compare-fail regressions in pytest's stats: its last line
# counts them ("1 regressed (memwatch)"), as "FAILED (memwatch)" names a verdict.
REGRESSED = "regressed (memwatch)"


class SessionSummary:
    """The session-level hooks (registered in ``pytest_configure`` as "memwatch-session").

    They reach the session's state through ``self.state``, without globals.
    pytest 8.0 reads every attribute ``dir()`` lists on a registered plugin,
    looking for fixtures: this object has no properties, so none is built by it.
    """

    def __init__(self, state: SessionState) -> None:
        self.state = state

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        state = self.state
        state.hygiene.thaw()
        if not state.is_controller:
            return
        state.meta.finished_at = now_iso()
        # The processes that really ran tests when known (xdist reports its
        # workers; --tx specs set no -n), else what the options asked for.
        state.meta.workers = len(state.meta.worker_info) or _worker_count(session.config)
        if not state.writes_results:
            return
        from pytest_memwatch.reports.outputs import finish_run

        state.meta.commit = _git_commit(str(session.config.rootpath))
        # The tests stream from the spool into each output, one at a time.
        spool = state.spool
        doc = document(state.meta, spool, spool.totals.to_dict(), ledger=state.ledger_doc)
        outcome = finish_run(doc, state.settings, str(session.config.rootpath))
        state.output_lines.extend(outcome.lines)
        for w in outcome.warnings:
            state.output_lines.append(f"WARNING: {w}")
        if outcome.regressions:
            state.output_lines.extend(outcome.regressions)
            state.regressions = len(outcome.regressions)
            if session.exitstatus == 0:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        theirs = markers.foreign_names(config.getini("markers"))
        if not (self.state.settings.active and theirs):
            return []
        return [
            f"memwatch: markers left to the project, which registers them itself: "
            f"{', '.join(sorted(theirs))}"
        ]

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.state.close()

    def pytest_terminal_summary(self, terminalreporter: Any, config: pytest.Config) -> None:
        state = self.state
        if not state.is_controller or (not state.summary.measured and not state.output_lines):
            return
        if state.regressions:
            # pytest's last line then reads "14 passed, 1 regressed (memwatch)":
            # the exit status 1 is said where one looks for it. A plugin's own
            # key in ``stats`` is counted there (public ``TerminalReporter.stats``,
            # checked on pytest 8.0.2 and 9.2).
            terminalreporter.stats.setdefault(REGRESSED, []).extend(
                _Regression() for _ in range(state.regressions)
            )
        verbosity = config.get_verbosity()
        if verbosity <= -2:
            # -qq: at most one line, and none when nothing failed.
            warnings = sum(1 for line in state.output_lines if line.startswith("WARNING"))
            line = state.summary.quiet_line(state.regressions, warnings)
            if line:
                terminalreporter.write_line(line, red=True)
            return
        lines = state.summary.lines(
            verbosity=verbosity,
            top=state.settings.top,
            every=lambda: iter(state.spool),
        )
        if not lines and not state.output_lines:
            return
        terminalreporter.write_sep("=", "memwatch")
        for line in [*lines, *state.output_lines]:
            red = line.startswith(("FAILED", "REGRESSION", "WARNING"))
            terminalreporter.write_line(line, red=red)


class _Regression:
    """One regression, as an entry of the terminal reporter's stats (counted, never shown).

    Plugins read every entry of ``stats`` as a report (hypothesis reads its
    ``__dict__``): it has a report's plain attributes, and no payload.
    """

    count_towards_summary = True
    when = "call"
    outcome = REGRESSED

    def __init__(self, nodeid: str = "") -> None:
        self.nodeid = nodeid


def _worker_count(config: pytest.Config) -> int:
    n = getattr(config.option, "numprocesses", None)
    dist = getattr(config.option, "dist", "no")
    if isinstance(n, int) and n > 0 and dist != "no":
        return n
    return 1


def _git_commit(root: str) -> str | None:
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


class UnmeasuredTests:
    """Adds to the results each test memwatch did not measure, and why.

    On the process that writes the results (the xdist controller included):
    a test whose reports carry no memwatch data was not measured. Only the
    tests still running are kept here, and only a flag and an outcome each.
    """

    def __init__(self, state: SessionState, *, loadgroup: bool = False) -> None:
        self.state = state
        # xdist's --dist loadgroup appends "@group" to the ids the controller sees.
        self.loadgroup = loadgroup
        # node id -> [measured, outcome, duration, setup failed]
        self.running: dict[str, list[Any]] = {}

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        seen = self.running.setdefault(report.nodeid, [False, "passed", 0.0, False])
        if getattr(report, "memwatch", None) is not None:
            seen[0] = True
        seen[2] += report.duration
        if seen[1] == "passed" and report.outcome != "passed":
            if report.outcome == "skipped":
                seen[1] = "skipped"
            else:
                seen[1] = "failed" if report.when == "call" else "error"
                seen[3] = report.when == "setup"
        if report.when != "teardown":
            return
        measured, outcome, duration, setup_failed = self.running.pop(report.nodeid)
        if measured:
            return
        names = [
            k
            for k in report.keywords
            if k in markers.SCHEMAS and k not in self.state.project_markers
        ]
        gateway = getattr(getattr(report, "node", None), "gateway", None)
        self.state.record(
            TestResult(
                nodeid=report.nodeid.rsplit("@", 1)[0] if self.loadgroup else report.nodeid,
                outcome=outcome,
                worker=getattr(gateway, "id", None),
                duration_s=duration,
                markers=names,
                not_measured=_why_unmeasured(
                    names, outcome, setup_failed, self.state.settings.active
                ),
            ).to_dict()
        )


def _why_unmeasured(names: list[str], outcome: str, setup_failed: bool, active: bool) -> str:
    """A key of :data:`pytest_memwatch.reports.results.NOT_MEASURED`, from what the report tells."""
    if "memwatch_skip" in names:
        return "memwatch_skip"
    if "soak" in names and outcome == "skipped":
        return "soak_not_run"
    if names or active:
        # Under --memwatch, or with a marker of memwatch's, only a wrong
        # marker keeps a test that ran from being measured.
        return "marker_error" if setup_failed else "not_run"
    return "not_selected"
