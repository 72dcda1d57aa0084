"""How a measured test runs: memwatch takes over its ``pytest_runtest_protocol``.

- the readings bracket the test and its function-scoped fixtures only
  (:mod:`.runs`): the before-reading is taken when the test's first
  function-scoped fixture is about to be set up (``pytest_fixture_setup``),
  or at the end of setup if it has none, and the after-reading by a finalizer
  registered on the test at that moment;
- the run's reports are produced with ``log=False``; a repeated test runs its
  whole setup/call/teardown again, tearing down only the item between runs,
  and the subtest reports of all but the last run are dropped
  (:mod:`.held_reports`);
- a failed verdict may be explained by more runs (:mod:`.attribution`);
- the verdicts are then applied to the call report (:mod:`.reporting`) and the
  reports are logged once, so every other plugin sees one ordinary test.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import pytest

from pytest_memwatch.base.probes import bytes_metric
from pytest_memwatch.config.rules import parse_rules
from pytest_memwatch.engine import RunMeasure, TestSpec, build_spec, judge
from pytest_memwatch.plugin.attribution import attribute, attribution_needs
from pytest_memwatch.plugin.held_reports import HeldReports
from pytest_memwatch.plugin.ledger import scoped_fixtures
from pytest_memwatch.plugin.reporting import (
    FailedStatus,
    apply_verdicts,
    build_result,
    detach_result,
    passed,
    timing,
    xfail_takes_any_failure,
)
from pytest_memwatch.plugin.runs import (
    KeepCollectors,
    begin_run,
    remove_previous_tmp_path,
    run,
    teardown_for_next,
)
from pytest_memwatch.plugin.state import (
    MEASURED,
    UNMEASURED,
    ItemMeasure,
    SessionState,
    ensure_plugin,
    reported_nodeid,
)
from pytest_memwatch.resources import ResourceReport


class MeasuredTests:
    """The per-test hooks of measured tests (registered when collection finds one).

    - ``pytest_runtest_protocol`` runs a measured test (see the module docstring);
    - ``pytest_fixture_setup`` takes the before-reading when the first
      function-scoped fixture is about to be set up;
    - ``pytest_runtest_setup`` takes it at the end of setup when there was none:
      trylast, inside every plugin's setup wrapper, so what those keep for the
      test (the logging plugin's handler) is alive at both readings.

    A failed memory verdict's status ("M") comes from
    :class:`~pytest_memwatch.plugin.reporting.FailedStatus`, registered at the
    first failure.
    """

    def __init__(self, state: SessionState) -> None:
        self.state = state

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> bool | None:
        m = item.stash.get(MEASURED, None)
        if m is None:
            if not self.state.settings.active or UNMEASURED in item.stash:
                return None
            m = ItemMeasure(build_spec(reported_nodeid(item), (), self.state.settings))
        _protocol(item, nextitem, m, self.state)
        return True

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        pending = self.state.pending
        if pending is not None:
            begin_run(*pending, self.state)  # no function-scoped fixture: the test alone

    @pytest.hookimpl(tryfirst=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> None:
        pending = self.state.pending
        if pending is not None and fixturedef.scope == "function":
            begin_run(*pending, self.state)


def _protocol(
    item: pytest.Item, nextitem: pytest.Item | None, m: ItemMeasure, state: SessionState
) -> None:
    spec = m.spec
    ihook = item.ihook
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    start = time.perf_counter()
    plan = spec.plan()
    m.plan = plan
    # Emptying interpreter caches costs every later lookup a refill; do it only
    # where a verdict depends on exact numbers, not for plain measuring.
    m.clear = spec.has_verdict
    m.blocks = m.clear or state.plain_blocks or bool(spec.compare_fail)
    if not state.ledger.started:
        # Before the first measured test, outside any measured window; the
        # results spool's file is opened first, so no test is charged its descriptor.
        state.open_spool()
        state.ledger.start(state.measurer.session_reading())
    m.check_resources = spec.resources
    last: RunMeasure | None = None
    keep: KeepCollectors | None = None
    kept = False
    held = HeldReports()
    if plan is None:
        reports, last = run(item, m, nextitem, state, held)
    else:
        keep = KeepCollectors(item)
        kept = True
        reports = []
        while plan.wants_more():
            remove_previous_tmp_path(m)
            # Rebinding, not appending: per-run objects kept here would be measured.
            reports, last = run(item, m, keep, state, held)
            if last is None or held.failed or not passed(reports):
                break
        # The last run's directory stays, as pytest leaves it for a test run once.
        m.tmp_dir = None
    measures = [last] if last is not None else []
    m.plan = None
    found = _finish_resources(m, state, spec)
    duration = time.perf_counter() - start
    # Plain measuring (no marker, no budget) has nothing to judge.
    judged = m.clear and not held.failed and passed(reports) and bool(measures)
    verdicts = judge(spec, measures, plan, state.measurer, found) if judged else []
    failed = [v for v in verdicts if not v.passed]
    explained = None
    attribution_s: float | None = None
    if failed and state.settings.trace > 0:
        why = attribution_needs(failed, found)
        if why[0] or why[1]:
            kept = True
            began = time.perf_counter()
            explained = attribute(
                item, m, state, keep or KeepCollectors(item), measures, failed, found, *why
            )
            attribution_s = time.perf_counter() - began
    if kept:
        final = teardown_for_next(item, nextitem)
        if final is not None:
            reports.append(final)
    result = build_result(item, state, spec, measures, plan, verdicts, explained, reports, duration)
    if plan is not None or attribution_s is not None:
        # A single run's time is duration_s already; kept off the others, as
        # each extra object a worker sends shows in the next test's readings.
        result.timing = timing(plan, duration, attribution_s)
    growth = result.growth
    state.ledger.record_growth(result.nodeid, bytes_metric(growth) if growth else None)
    state.ledger.settle(result.nodeid, functools.partial(scoped_fixtures, item))
    if found is not None:
        state.ledger.add(result.nodeid, "test", found.leaked)
    data = apply_verdicts(
        reports,
        result,
        failed,
        explained,
        html_extras=state.html_extras,
        junit=state.junit,
        xfail_any=bool(failed) and xfail_takes_any_failure(item),
    )
    if failed:
        # Until a memory verdict fails, no test's status needs memwatch.
        ensure_plugin(item.config, "memwatch-failed-status", FailedStatus)
    if state.is_controller:
        # In-process; an xdist controller collects its workers' results from
        # their reports instead (pytest_memwatch.plugin.xdist).
        state.record(data if data is not None else result.to_dict())
    for rep in reports:
        if rep.when == "call":
            held.replay(ihook)  # the subtests, in their place before the call's report
        ihook.pytest_runtest_logreport(report=rep)
        # The payload rides on the report while it is logged (for plugins,
        # conftests and xdist, which sends it then).
        detach_result(rep)
    held.replay(ihook)
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    m.last = None


def _finish_resources(m: ItemMeasure, state: SessionState, spec: TestSpec) -> ResourceReport | None:
    """What the checked test left behind (waiting out the grace period), or ``None``."""
    # Cleared first: the attribution re-runs that may follow must open no watch.
    m.check_resources = False
    watch, m.watch = m.watch, None
    if watch is None:
        return None
    return state.resources.finish(watch, parse_rules(spec.resources_ignore))
