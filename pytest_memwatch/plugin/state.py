"""What memwatch keeps during a session: one :class:`SessionState` in ``config.stash``,
one :class:`ItemMeasure` per measured test in ``item.stash``, and the stash keys.

Every other module of the plugin reads the session through :func:`session_state`;
nothing is hung on ``config`` or kept in a global.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_memwatch.base.version import __version__
from pytest_memwatch.config.settings import Settings
from pytest_memwatch.engine import GcHygiene, Measurer, RunMeasure, TestSpec
from pytest_memwatch.engine.plan import RepeatPlan
from pytest_memwatch.reports.results import RunMeta
from pytest_memwatch.reports.spool import ResultSpool
from pytest_memwatch.reports.terminal import Summary
from pytest_memwatch.resources import ResourceChecker, ResourceWatch
from pytest_memwatch.resources.ledger import Ledger

if TYPE_CHECKING:
    # Imported where used: the soak engine (with tracemalloc and pickle) is a
    # third of the plugin's import time.
    from pytest_memwatch import soak as soak_engine


class SessionState:
    """Everything memwatch keeps for one pytest session (in ``config.stash``)."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.settings = settings
        self.worker: str | None = (
            config.workerinput["workerid"] if hasattr(config, "workerinput") else None
        )
        self.is_controller = self.worker is None
        self.hygiene = GcHygiene()
        self._measurer: Measurer | None = None
        # The tests' results: spooled to disk when a report or -vv needs them
        # all, otherwise only counted (see record()).
        self._spool: ResultSpool | None = None
        self.summary = Summary(keep=2 * settings.top)
        self.verbosity = config.get_verbosity()
        # Plain measuring counts allocated blocks only when a comparison judges them.
        self.plain_blocks = any(
            e.strip().lower().startswith("blocks") for e in settings.compare_fail or ()
        )
        self.meta = RunMeta(
            plugin_version=__version__,
            pytest_version=pytest.__version__,
            args=[str(a) for a in config.invocation_params.args],
            settings=settings.to_dict(),
        )
        self.output_lines: list[str] = []
        # Tolerances a --memwatch-compare run failed (they make the exit status 1).
        self.regressions = 0
        self.warned_probes = False
        # Marker names memwatch claims that the project registered itself.
        self.project_markers: frozenset[str] = frozenset()
        # Resource checks and the session ledger (docs/resources.md). Building
        # them reads nothing: the first measured test starts the ledger.
        self.resources = ResourceChecker(
            settings.resources_ignore,
            grace=settings.resources_grace,
            ignore_existing=settings.resources_ignore_existing,
        )
        self.ledger = Ledger(self.worker or "main", keep=self._not_ignored)
        # Each test-running process's ledger, keyed by worker id ("main" when
        # serial); xdist workers send theirs to the controller.
        self.ledger_parts: dict[str, dict[str, Any]] = {}
        self.ledger_doc: dict[str, Any] | None = None
        # Rendering a section costs a template per test: only when pytest-html
        # is writing a report, not merely installed; the same for JUnit XML.
        self.html_extras = bool(
            config.pluginmanager.hasplugin("html") and getattr(config.option, "htmlpath", None)
        )
        self.junit = bool(getattr(config.option, "xmlpath", None))
        # The measured test whose before-reading is due: set while its setup
        # runs, until its first function-scoped fixture or the end of setup
        # (one test runs at a time in a process).
        self.pending: tuple[pytest.Item, ItemMeasure] | None = None

    @property
    def writes_results(self) -> bool:
        """Whether the session ends by writing a results file, a report or a comparison."""
        s = self.settings
        return bool(s.json or s.html or s.save or s.compare is not None)

    @property
    def spool(self) -> ResultSpool:
        if self._spool is None:
            s = self.settings
            self._spool = ResultSpool(
                [os.path.dirname(os.path.abspath(p)) for p in (s.json, s.html) if p],
                # Without a report, only -vv (every test listed) reads them again.
                spool=self.writes_results or self.verbosity >= 2,
            )
        return self._spool

    def open_spool(self) -> None:
        """Create the results spool (and its file, when one is needed) now."""
        if self.is_controller:
            self.spool  # noqa: B018 (the property creates it)

    def record(self, data: dict[str, Any]) -> None:
        """Keep one test's result (a results-document dict) for the summary and the reports."""
        self.summary.add(data)
        if self.writes_results or self.verbosity >= 2:
            self.spool.add(data)
        else:
            # Counted only: nothing will read the records again.
            self.spool.totals.add(data)

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()

    def _not_ignored(self, found: list[Any]) -> list[Any]:
        return self.resources.split(found)[0]

    @property
    def measurer(self) -> Measurer:
        # Built on first use: a session with nothing to measure never reads /proc.
        # (This object is never registered as a plugin: pytest 8.0 reads every
        # attribute dir() lists on a plugin, properties included, looking for
        # fixtures, which would build the probes in an unmeasured session.)
        if self._measurer is None:
            self._measurer = Measurer(hygiene=self.hygiene)
        return self._measurer


class ItemMeasure:
    """What memwatch keeps on a measured test (one stash entry: the hooks run per test).

    ``spec`` is what its markers and the settings ask for, built at collection.
    The rest belongs to the test's protocol while it runs: its repetition
    ``plan``, whether readings empty the interpreter caches (``clear``, tests
    with a verdict) and whether its resources are checked (with the ``watch``
    open on them), and ``last``, the latest run's measure. ``scoped`` are its
    higher-scoped fixture definitions, listed at its first run.
    """

    __slots__ = (
        "blocks",
        "check_resources",
        "clear",
        "last",
        "plan",
        "scoped",
        "spec",
        "tmp_dir",
        "watch",
    )

    def __init__(self, spec: TestSpec) -> None:
        self.spec = spec
        self.plan: RepeatPlan | None = None
        self.clear = True
        # Whether readings count allocated blocks (a verdict or a comparison needs them).
        self.blocks = True
        self.check_resources = False
        self.watch: ResourceWatch | None = None
        self.last: RunMeasure | None = None
        self.scoped: list[pytest.FixtureDef[Any]] | None = None
        # The previous run's tmp_path directory and factory, removed before the next run.
        self.tmp_dir: tuple[Path, pytest.TempPathFactory] | None = None


STATE = pytest.StashKey[SessionState]()
MEASURED = pytest.StashKey[ItemMeasure]()
# A test with memwatch markers that is not measured (memwatch_skip, a soak test
# not asked for, a bad marker). Under --memwatch a test with no marker has no
# stash entry at all: its ItemMeasure is made when it runs and dropped after,
# so a 50 000-test session keeps nothing per test.
UNMEASURED = pytest.StashKey[None]()
MARKER_ERROR = pytest.StashKey[str]()
# The node id memwatch reports, when it differs from item.nodeid: xdist's
# --dist loadgroup appends "@group" to the ids on its workers (see xdist.py).
NODEID = pytest.StashKey[str]()
# The checks a test made through the ``memwatch`` fixture (its last run's), as dicts.
FIXTURE_VERDICTS = pytest.StashKey[list[dict[str, Any]]]()
# A soak test's run while its body runs, then its outcome until its result is made.
SOAK_RUN: pytest.StashKey[soak_engine.SoakRun] = pytest.StashKey()
SOAK_OUTCOME: pytest.StashKey[soak_engine.SoakOutcome] = pytest.StashKey()
# The message of a soak verdict that failed the call, until its report is made.
SOAK_FAILED = pytest.StashKey[str]()


def session_state(config: pytest.Config) -> SessionState | None:
    """The session's state, or ``None`` before ``pytest_configure`` made it."""
    return config.stash.get(STATE, None)


def reported_nodeid(item: pytest.Item) -> str:
    """The node id memwatch reports for the item (a serial run's, under ``--dist loadgroup``)."""
    return item.stash.get(NODEID, item.nodeid)


def ensure_plugin(config: pytest.Config, name: str, make: Callable[[], object]) -> None:
    """Register ``make()`` under ``name`` unless this session already has it.

    The per-test hooks arrive this way, when something first needs them: with
    nothing measured, memwatch adds no call to any test's run.
    """
    pm = config.pluginmanager
    if not pm.has_plugin(name):
        pm.register(make(), name)
