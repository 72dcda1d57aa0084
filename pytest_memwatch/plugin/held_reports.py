"""The reports a measured run logs before it ends (its subtests'), held until the last run.

pytest's ``subtests`` fixture, the pytest-subtests plugin and pytest's
unittest support (``self.subTest``) log a report per subtest as it ends, and
every listener keeps it: the terminal reporter's statistics, JUnit XML,
pytest-xdist, which sends it to the controller. Logged again by every run of a
repeated test, they would multiply the subtests in the summary and grow the
heap run after run, which reads as a leak and makes each full collection
slower than the last. So they are held while the run is in progress and only
the last run's are logged, in order with its phase reports.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import pytest

from pytest_memwatch.plugin import _pytest_private as private


class HeldReports:
    """The reports logged while a measured run is in progress.

    A failing report ends the holding: what was held and the failure are logged
    at once, as pytest would (``-x`` stops at the first failing subtest,
    ``--pdb`` opens at it), and the run counts as failed (``failed``), so no
    further run is made and none is judged. The rest are logged by
    :meth:`replay`.
    """

    __slots__ = ("failed", "reports")

    def __init__(self) -> None:
        self.reports: list[pytest.TestReport] = []
        self.failed = False

    def clear(self) -> None:
        self.reports.clear()
        self.failed = False

    def log(self, relay: Any, *, report: pytest.TestReport) -> None:
        if not self.failed and not report.failed:
            self.reports.append(report)
            return
        if not self.failed:
            self.failed = True
            self.replay(relay)
        relay.pytest_runtest_logreport(report=report)

    def wrap(self, relay: Any) -> Any:
        """``relay`` with its ``pytest_runtest_logreport`` handed to :meth:`log`."""
        # Filled here rather than by an ``__init__``: called at every
        # ``item.ihook`` inside a measured run, one Python frame deep, as the
        # readings were calibrated with.
        holding = _HoldingRelay()
        holding._relay = relay
        holding._held = self
        return holding

    def replay(self, relay: Any) -> None:
        """Log the held reports through the real hook, and hold none."""
        reports, self.reports = self.reports, []
        for rep in reports:
            relay.pytest_runtest_logreport(report=rep)


class _HoldingRelay:
    """A hook relay that hands ``pytest_runtest_logreport`` to :class:`HeldReports`."""

    __slots__ = ("_held", "_relay")

    _held: HeldReports
    _relay: Any

    def __getattr__(self, name: str) -> Any:
        if name == "pytest_runtest_logreport":
            return functools.partial(self._held.log, self._relay)
        return getattr(self._relay, name)


def holding_reports(
    item: pytest.Item, held: HeldReports
) -> contextlib.AbstractContextManager[None]:
    """Route the reports logged through ``item.ihook`` during a run to ``held``.

    Subtests log through ``item.ihook`` (the fixture takes it at set-up, the
    unittest support at each subtest), which pytest resolves through the
    session at every access: replacing that for the run reaches every subtest
    implementation without touching one.
    """
    return private.hook_relay_replaced(item, held)
