"""pytest-xdist support: workers measure, the controller merges and writes.

Registered by :func:`pytest_memwatch.plugin.options.pytest_configure` only when the
xdist plugin is loaded, in the controller and in every worker.

- Per test, the plain-data payload rides on the test report
  (``report.memwatch``), which xdist ships to the controller; the controller
  (:class:`WorkerReports`) adds it to the session's results.
- Per worker, what no single report carries (its pid, how many tests it
  measured, which probes it lacked, its session ledger) travels once, at the
  worker's session end, through ``config.workeroutput``; the controller merges
  it into the run metadata (``run.worker_info``, ``run.workers``) and the ledger.
- Only the controller writes files: the session state checks ``is_controller``.
- With ``--dist loadgroup`` xdist appends ``@group`` to node ids on the
  workers; memwatch reports the ids a serial run has, so results and baselines
  of serial and parallel runs compare test by test.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any

import pytest

from pytest_memwatch.base.units import format_size
from pytest_memwatch.plugin._pytest_private import intercept_xdist_test_queue
from pytest_memwatch.plugin.reporting import detach_result, report_status
from pytest_memwatch.plugin.state import NODEID, SessionState, session_state
from pytest_memwatch.reports.results import TestResult

OUTPUT_KEY = "memwatch"


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


# -- on a worker -----------------------------------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # tryfirst: before xdist's own hook renames the items for loadgroup.
    if _is_worker(config) and config.getvalue("loadgroup"):
        for item in items:
            item.stash[NODEID] = item.nodeid


def pytest_collection_finish(session: pytest.Session) -> None:
    """Keep xdist's scheduling traffic out of the tests' readings.

    While a test runs, the worker's I/O thread receives more test indices from
    the controller and queues them: ints above 256 are new objects, left in the
    queue when the test's "after" reading is taken, so the test would be
    charged a few blocks for xdist's work. The indices are swapped, as they are
    queued, for int objects made here, before any test; the received ones are
    freed with their message.
    """
    if not _is_worker(session.config):
        return
    preallocated = tuple(range(len(session.items)))

    def preallocated_int(item: Any) -> Any:
        if type(item) is int and 0 <= item < len(preallocated):
            return preallocated[item]
        return item

    # Another xdist version (no queue found): its traffic stays a few blocks of noise.
    intercept_xdist_test_queue(session.config, preallocated_int)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Worker: hand this process's totals to xdist. Controller: add the per-worker line.

    On a worker this runs after memwatch's own session-end hook closed the
    ledger, and before xdist sends ``workeroutput`` (its wrapper sends last).
    """
    config = session.config
    state = session_state(config)
    if state is None:
        return
    if _is_worker(config):
        key = state.worker or "main"
        output: dict[str, Any] = config.workeroutput  # type: ignore[attr-defined]
        output[OUTPUT_KEY] = {
            "info": state.meta.worker_info.get(key),
            "ledger": state.ledger_parts.get(key),
            "unavailable_probes": dict(state.meta.unavailable_probes),
        }
        return
    line = worker_totals_line(state.spool.totals.to_dict()["by_worker"])
    if line:
        state.output_lines.insert(0, line)


# -- on the controller -------------------------------------------------------------------


def pytest_sessionstart(session: pytest.Session) -> None:
    """On a controller that hands tests to workers, collect their results from the reports."""
    config = session.config
    state = session_state(config)
    pm = config.pluginmanager
    if state is not None and not _is_worker(config) and pm.has_plugin("dsession"):
        pm.register(
            WorkerReports(state, loadgroup=config.getoption("dist", None) == "loadgroup"),
            "memwatch-worker-reports",
        )


class WorkerReports:
    """The controller's per-report hooks: a worker's test result rides on its report."""

    def __init__(self, state: SessionState, *, loadgroup: bool = False) -> None:
        self.state = state
        self.loadgroup = loadgroup

    def pytest_report_teststatus(self, report: pytest.TestReport) -> tuple[str, str, str] | None:
        return report_status(report)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> Generator[None]:
        data = getattr(report, "memwatch", None)
        if data is not None:
            self.state.record(data)
        try:
            return (yield)
        finally:
            # After every plugin saw it: the terminal reporter keeps the
            # report to the end, and would keep every worker's result with it.
            detach_result(report)

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport, sched: Any) -> None:
        """A worker died in a test: list the test, failed, rather than lose it.

        The dead worker never sends that test's report, so without this the
        results would miss it while the run fails. xdist calls this hook with
        the failure report it makes for the item (checked on pytest-xdist 3.8).
        """
        node = getattr(report, "node", None)
        gateway = getattr(node, "gateway", None)
        worker = str(getattr(gateway, "id", None) or "unknown")
        message = str(report.longrepr or f"worker {worker!r} crashed while running {crashitem!r}")
        self.state.record(
            TestResult(
                nodeid=_serial_nodeid(crashitem, loadgroup=self.loadgroup),
                outcome="failed",
                worker=worker,
                verdicts=[
                    {
                        "kind": "crash",
                        "source": "xdist",
                        "passed": False,
                        "message": f"{message}; nothing was measured",
                        "metric": None,
                        "limit": None,
                        "measured": None,
                        "details": {},
                    }
                ],
            ).to_dict()
        )


def _serial_nodeid(nodeid: str, *, loadgroup: bool) -> str:
    # --dist loadgroup: the controller sees "test_x.py::test@group"; results carry
    # the ids a serial run has.
    if loadgroup and "@" in nodeid:
        return nodeid.rsplit("@", 1)[0]
    return nodeid


@pytest.hookimpl(optionalhook=True)
def pytest_testnodeready(node: Any) -> None:
    state = session_state(node.config)
    if state is not None:
        # Counted when it comes up, so a worker that crashes still counts as one
        # that ran tests; its details arrive when it finishes.
        state.meta.worker_info.setdefault(
            _worker_id(node), {"pid": None, "measured": 0, "unavailable_probes": {}}
        )


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    state = session_state(node.config)
    output = getattr(node, "workeroutput", None) or {}
    data = output.get(OUTPUT_KEY)
    if state is None or not isinstance(data, dict):
        return
    wid = _worker_id(node)
    if isinstance(data.get("info"), dict):
        state.meta.worker_info[wid] = dict(data["info"])
    if isinstance(data.get("ledger"), dict):
        state.ledger_parts[wid] = data["ledger"]
    state.meta.unavailable_probes.update(data.get("unavailable_probes") or {})


def _worker_id(node: Any) -> str:
    workerinput = getattr(node, "workerinput", None) or {}
    return str(workerinput.get("workerid") or node.gateway.id)


def worker_totals_line(by_worker: Mapping[str, Mapping[str, Any]]) -> str | None:
    """``per worker: gw0 3 measured, 0 failed, growth +1.0 MiB; gw1 ...`` (None when serial)."""
    if not by_worker or set(by_worker) == {"main"}:
        return None
    parts = [
        f"{w} {t['measured']} measured, {t['failed_verdicts']} failed, "
        f"growth {format_size(t.get('growth', t['growth_rss']), signed=True)}"
        for w, t in sorted(by_worker.items())
    ]
    return "per worker: " + "; ".join(parts)
