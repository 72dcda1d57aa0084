"""One run of a measured test: its phases, the readings that bracket it, and what
pytest keeps from one run to the next that must not read as the test's growth.

The readings bracket the test and its function-scoped fixtures only: the
before-reading is taken when the first function-scoped fixture is about to be
set up, or at the end of setup if there is none (:func:`begin_run`), and the
after-reading by a finalizer registered on the test at that moment
(:class:`Run`), which therefore runs after every function-scoped fixture's
teardown and before any higher-scoped one's.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from pytest_memwatch.engine import RunMeasure, RunToken
from pytest_memwatch.plugin import _pytest_private as private
from pytest_memwatch.plugin.held_reports import HeldReports, holding_reports
from pytest_memwatch.plugin.state import ItemMeasure, SessionState


class KeepCollectors:
    """A stand-in for ``nextitem`` that means "the same item runs again".

    ``SetupState.teardown_exact(nextitem)`` tears down every node not on
    ``nextitem.listchain()``: with this chain (the item's collectors without
    the item) it tears down the item's function-scoped fixtures and keeps the
    module, class and session fixtures alive between repetitions.
    """

    def __init__(self, item: pytest.Item) -> None:
        self._chain = item.listchain()[:-1]

    def listchain(self) -> list[Any]:
        return self._chain


def run(
    item: pytest.Item, m: ItemMeasure, nextitem: Any, state: SessionState, held: HeldReports
) -> tuple[list[pytest.TestReport], RunMeasure | None]:
    """One measured run: its reports (none logged) and its measure."""
    m.last = None
    forget_previous_run(item)
    # Before the before-reading: the previous run's subtest reports are gone
    # from both readings, and each after-reading holds one run's.
    held.clear()
    # The before-reading is due at the first function-scoped fixture, or at
    # the end of setup (see protocol.MeasuredTests).
    state.pending = (item, m)
    try:
        with holding_reports(item, held):
            reports = private.run_phases(item, nextitem=nextitem, log=False)
    finally:
        state.pending = None
    return reports, m.last


def forget_previous_run(item: pytest.Item) -> None:
    """Drop what pytest kept on the item from the previous run of a repeated test.

    pytest appends each run's captured output and recorded properties to the
    item; across repetitions that would grow run after run and read as a leak.
    """
    private.forget_report_sections(item)
    item.user_properties.clear()


def teardown_for_next(item: pytest.Item, nextitem: pytest.Item | None) -> pytest.TestReport | None:
    """Tear down what the real next item does not need, after repetitions kept it.

    Calling the teardown hooks a second time would confuse other plugins (the
    logging plugin deletes its stash entries there), so only the setup state
    is unwound, as ``runtestprotocol`` itself does at its end.
    """
    call = pytest.CallInfo.from_call(lambda: private.unwind_setup(item, nextitem), when="teardown")
    if call.excinfo is None:
        return None
    return pytest.TestReport.from_item_and_call(item, call)


class Run:
    """One measured run in progress; its ``end`` is the finalizer that takes the after-reading."""

    __slots__ = ("item", "m", "state", "token")

    def __init__(self, item: pytest.Item, m: ItemMeasure, state: SessionState) -> None:
        self.item = item
        self.m = m
        self.state = state
        self.token: RunToken | None = None

    def end(self) -> None:
        token, self.token = self.token, None
        if token is None:
            return
        m, state, plan = self.m, self.state, self.m.plan
        m.scoped = private.drop_finished_dependents(self.item, m.scoped, plan is not None)
        measure = state.measurer.end(
            token, clear_caches=m.clear, light=not m.clear, blocks=m.blocks
        )
        if plan is not None:
            plan.record(measure.before, measure.after, measure.peak_rss)
        # Only the latest run is kept: one object per run would itself look like growth.
        m.last = measure
        if plan is not None:
            m.tmp_dir = tmp_path_of(self.item)
        state.ledger.note("test", measure.after)


def begin_run(item: pytest.Item, m: ItemMeasure, state: SessionState) -> None:
    """Take the before-reading of one run and register the after-reading as a finalizer.

    Registered now, on the test itself, the finalizer runs after those of the
    function-scoped fixtures set up from here on, and before the test's
    collectors (and their fixtures) are torn down.
    """
    state.pending = None
    plan = m.plan
    _open_resource_watch(m, state)
    # Built and registered before the reading, so neither counts as the test's.
    run = Run(item, m, state)
    item.addfinalizer(run.end)
    # Tests with a verdict (m.clear) get the exact path: caches emptied, full
    # collections; plain measuring the cheap one (see Measurer.begin).
    run.token = state.measurer.begin(
        clear_caches=m.clear,
        freeze=plan is None or plan.screening,
        collect=plan is None or plan.collect_before,
        light=not m.clear,
        # Before the first measured run only: later runs would count the
        # harness's own work between runs re-touching the trimmed pages. And
        # before the first exact run after a screen: its reading lists the
        # whole heap, newly thawed, for the first time.
        trim=m.spec.max_memory is not None
        and (plan is None or plan.count == plan.warmup or (plan.collect_before and plan.count > 0)),
        blocks=m.blocks,
    )
    state.ledger.note("fixtures", run.token.before)


def _open_resource_watch(m: ItemMeasure, state: SessionState) -> None:
    """Start the detailed resource snapshot of a checked test, before its memory reading.

    Taken before the first reading, so the snapshot is alive in both readings
    and adds nothing to the test's growth. A repeated test is watched from its
    first measured run to the end of its last: what the warmup runs leave (a
    lazily started pool) is a one-time cost, not a leak.
    """
    if not m.check_resources or m.watch is not None:
        return
    plan = m.plan
    if plan is not None and plan.count != plan.warmup:
        return
    m.watch = state.resources.begin()


def tmp_path_of(item: pytest.Item) -> tuple[Path, pytest.TempPathFactory] | None:
    """The run's ``tmp_path`` and its factory when pytest's own factory made it.

    Read from the test's fixture values (``Function.funcargs``, public) while
    they are still set; a ``tmp_path`` fixture a project overrides with one
    that does not return a directory right under pytest's base temporary
    directory is left alone.
    """
    values = getattr(item, "funcargs", None)
    if not isinstance(values, dict):
        return None
    path, factory = values.get("tmp_path"), values.get("tmp_path_factory")
    if not isinstance(path, Path) or not isinstance(factory, pytest.TempPathFactory):
        return None
    return (path, factory) if path.parent == factory.getbasetemp() else None


def remove_previous_tmp_path(m: ItemMeasure) -> None:
    """Remove the directory the previous run of a repeated test got as ``tmp_path``.

    A new name per run would itself read as growth: pathlib interns the parts
    of a path it parses, and CPython 3.12 never frees interned strings. So the
    previous run's directory goes, and its number is handed out again.
    """
    previous, m.tmp_dir = m.tmp_dir, None
    if previous is None:
        return
    path, factory = previous
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():
        return
    prefix = path.name.rstrip("0123456789")
    number = path.name[len(prefix) :]
    if number:
        private.step_back_tmp_number(factory, prefix, int(number))
