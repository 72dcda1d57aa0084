"""The session ledger's hooks: what exists at session start, and each process's
ledger closed at session end and merged on the controller (docs/resources.md;
the ledger itself is :mod:`pytest_memwatch.resources.ledger`).
"""

from __future__ import annotations

import os

import pytest

from pytest_memwatch.plugin._pytest_private import fixture_definitions
from pytest_memwatch.plugin.state import session_state
from pytest_memwatch.reports.ledger import ledger_lines, merge_ledgers


def pytest_collection_finish(session: pytest.Session) -> None:
    # "What exists at session start" is taken once the test modules are
    # imported (their import-time threads and files count as existing) and
    # before the first test. An xdist controller collects nothing and runs no
    # tests, so this runs on each worker only.
    state = session_state(session.config)
    if state is not None and state.settings.resources_ignore_existing:
        state.resources.remember_existing()


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Close this process's ledger; on the controller, merge every process's into the results.

    Runs after every fixture's teardown and before the results are written
    (and, on an xdist worker, before the worker sends its output).
    """
    state = session_state(session.config)
    if state is None:
        return
    if state.ledger.started:
        end = state.measurer.session_reading()
        # A descriptor or thread held only by cyclic garbage among the thawed
        # long-lived objects is released by the collection, not reported.
        state.measurer.thaw(collect=state.ledger.recorded)
        prober = state.measurer.prober
        key = state.worker or "main"
        state.ledger_parts[key] = state.ledger.finish(end, state.settings.resources_grace)
        state.meta.worker_info[key] = {
            "pid": os.getpid(),
            "measured": state.ledger.measured,
            "unavailable_probes": dict(prober.unavailable),
        }
    if state.is_controller and state.ledger_parts:
        state.ledger_doc = merge_ledgers(state.ledger_parts)
        state.output_lines.extend(ledger_lines(state.ledger_doc, session.config.get_verbosity()))


def scoped_fixtures(item: pytest.Item) -> list[str]:
    """The test's module-, class-, package- and session-scoped fixtures, for the ledger."""
    return [
        f"{name} ({defs[-1].scope})"
        for name, defs in fixture_definitions(item).items()
        if defs and defs[-1].scope != "function" and not name.startswith("_memwatch")
    ]
