"""Resource leaks: what a test leaves running or open once it and its fixtures are torn down.

A :class:`ResourceWatch` is started before a test and finished after it. It
compares what the process had before with what it has after, and names every
new survivor of six kinds: ``thread``, ``fd``, ``socket``, ``process``,
``tempfile`` and ``task``. What is already shutting down gets a grace period:
the check is repeated with a doubling pause (10, 20, 40 … ms) until nothing is
left or the grace is used up. Ignore rules (``KIND:GLOB``, parsed in
:mod:`pytest_memwatch.config.rules`) and "ignore what existed at session start"
drop known survivors. The snapshots cost a directory listing or two and are
taken only for tests whose resources are checked. Nothing here imports pytest.

The modules, from the bottom up:

- ``survivor``: what a survivor is (:class:`Frame`, :class:`Resource`) and how
  it is described;
- one module per kind, each listing what exists and describing it:
  ``threads`` (Python threads with where they were started, native threads),
  ``descriptors`` (open files and sockets), ``processes`` (children, zombies),
  ``tempfiles`` (entries this process made in the temp directory) and
  ``tasks`` (pending asyncio tasks);
- ``audit``: the audit hook that notes temp entries while a watch is open, and
  where files and sockets were opened in the run that explains a failure;
- ``watch``: :class:`ResourceWatch`, the session's :class:`ResourceChecker`
  with the grace back-off, :class:`ResourceReport` and the session-end
  :class:`Liveness` re-check;
- ``verdict``: the ``resources`` verdict, and survivors named in a failed leak
  verdict instead;
- ``ledger``: the session ledger recorded while tests run (who left what
  behind); :mod:`pytest_memwatch.reports.ledger` merges and shows it.
"""

from __future__ import annotations

from pytest_memwatch.resources.audit import OPENED_KINDS
from pytest_memwatch.resources.ledger import Ledger
from pytest_memwatch.resources.survivor import Frame, Resource, describe_list
from pytest_memwatch.resources.verdict import name_in_leak_verdict, resources_verdict
from pytest_memwatch.resources.watch import (
    Liveness,
    ResourceChecker,
    ResourceReport,
    ResourceWatch,
)

__all__ = [
    "OPENED_KINDS",
    "Frame",
    "Ledger",
    "Liveness",
    "Resource",
    "ResourceChecker",
    "ResourceReport",
    "ResourceWatch",
    "describe_list",
    "name_in_leak_verdict",
    "resources_verdict",
]
