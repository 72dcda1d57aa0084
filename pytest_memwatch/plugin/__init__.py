"""pytest hooks for memwatch. Hooks translate pytest objects to plain data and back;
the engine (:mod:`pytest_memwatch.engine`) measures and decides.

The per-test hooks are registered once collection finds a test that needs them
(``MeasuredTests``, ``MarkerErrors``, ``SoakCall``): with nothing measured,
memwatch adds no call to any test's run. How a measured test runs
(``MeasuredTests.pytest_runtest_protocol``):

- the readings bracket the test and its function-scoped fixtures only, as a
  function-scoped fixture placed after the higher-scoped ones would, without
  the cost of one: the before-reading is taken when the test's first
  function-scoped fixture is about to be set up (``pytest_fixture_setup``),
  or at the end of setup if it has none, and the after-reading by a finalizer
  registered on the test at that moment, which therefore runs after every
  function-scoped fixture's teardown and before any higher-scoped one's;
- the run's reports are produced with ``log=False``; a repeated test runs its
  whole setup/call/teardown again, tearing down only the item between runs;
- the verdicts are then applied to the call report and the reports are logged
  once, so every other plugin sees one ordinary test.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from _pytest.runner import runtestprotocol

from pytest_memwatch.base.version import __version__
from pytest_memwatch.base.probes import bytes_metric
from pytest_memwatch.config import markers
from pytest_memwatch.config.cmdline import OptionalValue, looks_like_test_path, rescue_test_paths
from pytest_memwatch.config.rules import parse_rules
from pytest_memwatch.config.settings import SETTINGS, Setting, SettingError, Settings, resolve
from pytest_memwatch.engine import (
    GcHygiene,
    MarkCall,
    Measurer,
    RunMeasure,
    RunToken,
    TestSpec,
    build_spec,
    judge,
)
from pytest_memwatch.engine.plan import RepeatPlan
from pytest_memwatch.engine.verdicts import MEMORY_METRICS
from pytest_memwatch.reports.ledger import ledger_lines, merge_ledgers
from pytest_memwatch.reports.results import RunMeta, TestResult, document, now_iso
from pytest_memwatch.reports.spool import ResultSpool
from pytest_memwatch.reports.terminal import Summary
from pytest_memwatch.resources import OPENED_KINDS, ResourceChecker, ResourceReport, ResourceWatch
from pytest_memwatch.resources.ledger import Ledger

if TYPE_CHECKING:
    # Imported where used: the soak engine (with tracemalloc and pickle) and the
    # fixture's handle are a third of the plugin's import time.
    from pytest_memwatch import soak as soak_engine
    from pytest_memwatch.fixture import MemwatchHandle


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
    def spool(self) -> ResultSpool:
        if self._spool is None:
            s = self.settings
            wanted = bool(s.json or s.html or s.save or s.compare is not None)
            self._spool = ResultSpool(
                [os.path.dirname(os.path.abspath(p)) for p in (s.json, s.html) if p],
                # Without a report, only -vv (every test listed) reads them again.
                spool=wanted or self.verbosity >= 2,
            )
        return self._spool

    def open_spool(self) -> None:
        """Create the results spool (and its file, when one is needed) now."""
        if self.is_controller:
            self.spool  # noqa: B018 (the property creates it)

    def record(self, data: dict[str, Any]) -> None:
        """Keep one test's result (a results-document dict) for the summary and the reports."""
        self.summary.add(data)
        s = self.settings
        if s.json or s.html or s.save or s.compare is not None or self.verbosity >= 2:
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
        if self._measurer is None:
            self._measurer = Measurer(hygiene=self.hygiene)
        return self._measurer

    def __dir__(self) -> list[str]:
        # pytest 8.0 looks for fixtures by reading every attribute dir() lists
        # on a registered plugin, properties included, which built the probes
        # in a session with nothing to measure (8.1+ reads them statically).
        # Checked on pytest 8.0.2 and 9.2.
        return [name for name in super().__dir__() if name != "measurer"]

    # Session-level hooks live on this object (registered in pytest_configure),
    # so they reach the session's state without globals. The per-test hooks
    # are registered only when collection finds something to do for them
    # (see _register_test_hooks): with nothing measured, memwatch adds no call
    # to a test's run.
    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.hygiene.thaw()
        if not self.is_controller:
            return
        self.meta.finished_at = now_iso()
        # The processes that really ran tests when known (xdist reports its
        # workers; --tx specs set no -n), else what the options asked for.
        self.meta.workers = len(self.meta.worker_info) or _worker_count(session.config)
        settings = self.settings
        if not (settings.json or settings.html or settings.save or settings.compare is not None):
            return
        from pytest_memwatch.reports.outputs import finish_run

        self.meta.commit = _git_commit(str(session.config.rootpath))
        # The tests stream from the spool into each output, one at a time.
        spool = self.spool
        doc = document(self.meta, spool, spool.totals.to_dict(), ledger=self.ledger_doc)
        outcome = finish_run(doc, settings, str(session.config.rootpath))
        self.output_lines.extend(outcome.lines)
        for w in outcome.warnings:
            self.output_lines.append(f"WARNING: {w}")
        if outcome.regressions:
            self.output_lines.extend(outcome.regressions)
            self.regressions = len(outcome.regressions)
            if session.exitstatus == 0:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        theirs = markers.foreign_names(config.getini("markers"))
        if not (self.settings.active and theirs):
            return []
        return [
            f"memwatch: markers left to the project, which registers them itself: "
            f"{', '.join(sorted(theirs))}"
        ]

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.close()

    def pytest_terminal_summary(self, terminalreporter: Any, config: pytest.Config) -> None:
        if not self.is_controller or (not self.summary.measured and not self.output_lines):
            return
        if self.regressions:
            # pytest's last line then reads "14 passed, 1 regressed (memwatch)":
            # the exit status 1 is said where one looks for it. A plugin's own
            # key in ``stats`` is counted there (public ``TerminalReporter.stats``,
            # checked on pytest 8.0.2 and 9.2).
            terminalreporter.stats.setdefault(REGRESSED, []).extend(
                _Regression() for _ in range(self.regressions)
            )
        verbosity = config.get_verbosity()
        if verbosity <= -2:
            # -qq: at most one line, and none when nothing failed.
            warnings = sum(1 for line in self.output_lines if line.startswith("WARNING"))
            line = self.summary.quiet_line(self.regressions, warnings)
            if line:
                terminalreporter.write_line(line, red=True)
            return
        lines = self.summary.lines(
            verbosity=verbosity,
            top=self.settings.top,
            every=lambda: iter(self.spool),
        )
        if not lines and not self.output_lines:
            return
        terminalreporter.write_sep("=", "memwatch")
        for line in [*lines, *self.output_lines]:
            red = line.startswith(("FAILED", "REGRESSION", "WARNING"))
            terminalreporter.write_line(line, red=red)


# The key of --memwatch-compare-fail regressions in pytest's stats: its last line
# counts them ("1 regressed (memwatch)"), as "FAILED (memwatch)" names a verdict.
REGRESSED = "regressed (memwatch)"


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
        self.scoped: list[Any] | None = None
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


# -- options -------------------------------------------------------------------


def _add_option(group: pytest.OptionGroup, s: Setting) -> None:
    # argparse %-formats help strings: a bare "10%" in one crashes `pytest --help`.
    help_text = (s.help + (f" [env {s.env}]" if s.env else "")).replace("%", "%%")
    if s.kind == "flag":
        group.addoption(
            s.option, action="store_true", default=None, dest=f"memwatch_{s.name}", help=help_text
        )
    elif s.kind == "optional":
        group.addoption(
            s.option,
            action="store",
            nargs="?",
            const=s.const,
            default=None,
            dest=f"memwatch_{s.name}",
            metavar=s.type_doc.upper(),
            help=help_text,
        )
    elif s.kind == "append":
        group.addoption(
            s.option,
            action="append",
            default=None,
            dest=f"memwatch_{s.name}",
            metavar="EXPR",
            help=help_text,
        )
    else:
        group.addoption(
            s.option,
            action="store",
            default=None,
            dest=f"memwatch_{s.name}",
            metavar=s.type_doc.upper(),
            help=help_text,
        )


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("memwatch", "memory measurement and leak verdicts (pytest-memwatch)")
    for s in SETTINGS:
        _add_option(group, s)
        if s.kind == "append":
            parser.addini(s.ini_key, s.help, type="linelist", default=[])
        else:
            parser.addini(s.ini_key, s.help, type="string", default="")


def _optional_values(cwd: str) -> list[OptionalValue]:
    """The options with an optional value, each with its test of a valid value."""

    def parses(s: Setting) -> Callable[[str], bool]:
        def is_value(token: str) -> bool:
            try:
                s.parse(token)
            except (ValueError, TypeError):
                return False
            return True

        return is_value

    def is_name(token: str) -> bool:
        # A saved run's name is any word; one that names a test path is a path.
        return not looks_like_test_path(token, cwd)

    return [
        OptionalValue(s.option, is_name if s.name == "compare" else parses(s))
        for s in SETTINGS
        if s.kind == "optional"
    ]


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> None:
    """``--memwatch-repeat tests/x.py``: the option without a value, then a test path."""
    cwd = str(early_config.invocation_params.dir)
    moved = rescue_test_paths(args, _optional_values(cwd), cwd)
    if moved:
        # pytest parses ``args`` (this same list) again after this hook; only the
        # early parse it made to find the initial conftests still holds the old
        # reading. ``known_args_namespace`` is not underscored but not documented
        # either: checked on pytest 8.0.0 and 9.2.0.
        known = getattr(early_config, "known_args_namespace", None)
        paths = getattr(known, "file_or_dir", None)
        if isinstance(paths, list):
            paths.extend(p for p in moved if p not in paths)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # A marker name the project registered itself (pytest.ini, pyproject, a
    # conftest) stays the project's: memwatch neither registers nor reads it.
    theirs = markers.foreign_names(config.getini("markers"))
    for schema in markers.SCHEMAS.values():
        if schema.name not in theirs:
            config.addinivalue_line("markers", schema.line())
    cli = {s.name: config.getoption(f"memwatch_{s.name}") for s in SETTINGS}
    ini: dict[str, Any] = {s.name: config.getini(s.ini_key) for s in SETTINGS}
    try:
        settings = resolve(cli, os.environ, ini, ini_types=_toml_ini_values(config))
    except SettingError as exc:
        raise pytest.UsageError(str(exc)) from None
    state = SessionState(config, settings)
    config.stash[STATE] = state
    config.pluginmanager.register(state, "memwatch-session")
    pm = config.pluginmanager
    s = settings
    if state.is_controller and (s.json or s.html or s.save or s.compare is not None):
        # The results document lists every test, measured or not (docs/results.md).
        loadgroup = config.getoption("dist", None) == "loadgroup"
        pm.register(UnmeasuredTests(state, loadgroup=loadgroup), "memwatch-unmeasured")
    if pm.hasplugin("xdist") or pm.hasplugin("xdist.plugin"):
        # Imported only here: with -p no:xdist (or without xdist) nothing of it loads.
        from pytest_memwatch.plugin import xdist as memwatch_xdist

        pm.register(memwatch_xdist, "memwatch-xdist")


def _toml_ini_values(config: pytest.Config) -> dict[str, object]:
    """The memwatch keys of a pyproject.toml ``[tool.pytest.ini_options]``, as TOML typed them.

    pytest hands a TOML table or number under that table to a string ini key as
    its ``str()`` (``memwatch_json = {a = 1}`` would name a file ``{'a': 1}``),
    so the types are checked on the file itself. Checked on pytest 8.0 and 9.2.
    """
    path = config.inipath
    if path is None or path.name != "pyproject.toml":
        return {}
    import tomllib

    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"]
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError):
        return {}  # pytest itself read the file; anything odd here is its to report
    if not isinstance(table, dict):
        return {}
    return {s.name: table[s.ini_key] for s in SETTINGS if s.ini_key in table}


def _state(config: pytest.Config) -> SessionState | None:
    return config.stash.get(STATE, None)


# -- collection ----------------------------------------------------------------


def _mark_calls(item: pytest.Item, theirs: frozenset[str] = frozenset()) -> list[MarkCall]:
    """The item's memwatch markers, closest first: the case, the function, class, module.

    ``iter_markers`` lists the function's own decorators before the marks of
    its ``pytest.param`` case (both are the item's own markers), so a per-case
    budget would lose to the function's. The case's marks are moved first.
    ``Function.callspec`` and ``CallSpec2.marks`` are read as plain attributes
    (checked on pytest 8.0.0 and 9.x); an item without them has no case.
    """
    case = getattr(getattr(item, "callspec", None), "marks", None) or ()
    case_ids = {id(m) for m in case}
    ordered = [*case, *(m for m in item.iter_markers() if id(m) not in case_ids)]
    return [
        MarkCall(m.name, tuple(m.args), dict(m.kwargs))
        for m in ordered
        if m.name in markers.SCHEMAS and m.name not in theirs
    ]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    state = _state(config)
    if state is None:
        return
    settings = state.settings
    # Read again here: a conftest's pytest_configure may register after ours.
    theirs = state.project_markers = markers.foreign_names(config.getini("markers"))
    soak_selected = "soak" not in theirs and "soak" in (config.getoption("markexpr", "") or "")
    measured = errors = soaks = False
    for item in items:
        calls = _mark_calls(item, theirs)
        if not (settings.active or calls):
            continue
        names = {c.name for c in calls}
        if "soak" in names and not (settings.soak or soak_selected):
            item.add_marker(
                pytest.mark.skip(reason="soak test: run with --memwatch-soak or -m soak")
            )
            item.stash[UNMEASURED] = None
            continue
        try:
            # Checked here, once: a wrong marker argument (under memwatch_skip
            # too: memwatch_skip(5) must not pass silently) errors that one
            # test at setup, and the rest of the session runs.
            spec = build_spec(_nodeid(item), calls, settings)
        except markers.MarkerError as exc:
            item.stash[MARKER_ERROR] = str(exc)
            item.stash[UNMEASURED] = None
            errors = True
            continue
        if "memwatch_skip" in names:
            item.stash[UNMEASURED] = None
            continue
        if calls:
            item.stash[MEASURED] = ItemMeasure(spec)
        measured = True
        soaks = soaks or spec.soak is not None
    if measured:
        _warn_unavailable_probes(config, state)
    _register_test_hooks(config, state, measured=measured, errors=errors, soaks=soaks)


def _register_test_hooks(
    config: pytest.Config, state: SessionState, *, measured: bool, errors: bool, soaks: bool
) -> None:
    """Register the per-test hooks this session needs, and only those."""
    if measured:
        _ensure_plugin(config, "memwatch-tests", lambda: MeasuredTests(state))
    if errors:
        _ensure_plugin(config, "memwatch-marker-errors", MarkerErrors)
    if soaks:
        _ensure_plugin(config, "memwatch-soak-call", SoakCall)


def _ensure_plugin(config: pytest.Config, name: str, make: Callable[[], object]) -> None:
    """Register ``make()`` under ``name`` unless this session already has it."""
    pm = config.pluginmanager
    if not pm.has_plugin(name):
        pm.register(make(), name)


# -- running -------------------------------------------------------------------


class _KeepCollectors:
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


def _passed(reports: list[pytest.TestReport]) -> bool:
    """Every phase passed. An xfail test that passed anyway (XPASS) counts: it ran to
    its end, so its memory is judged like any other's (see :func:`_apply`)."""
    # Plain attribute reads, not the report's properties, and a loop, not all()
    # over a generator: this runs for every measured test.
    for r in reports:  # noqa: SIM110
        if r.outcome != "passed":
            return False
    return True


def _xfail_takes_any_failure(item: pytest.Item) -> bool:
    """Whether the item's ``xfail`` marker expects any failure (it names no ``raises``).

    Read with the public ``get_closest_marker``; pytest's own evaluation of the
    marker (conditions, strict) has already happened when the report says XPASS.
    """
    mark = item.get_closest_marker("xfail")
    return mark is not None and mark.kwargs.get("raises") is None


def _run(
    item: pytest.Item, m: ItemMeasure, nextitem: Any, state: SessionState, held: _HeldReports
) -> tuple[list[pytest.TestReport], RunMeasure | None]:
    m.last = None
    _forget_previous_run(item)
    # Before the before-reading: the previous run's subtest reports are gone
    # from both readings, and each after-reading holds one run's.
    held.clear()
    # The before-reading is due at the first function-scoped fixture, or at
    # the end of setup (see MeasuredTests).
    state.pending = (item, m)
    try:
        with _holding_reports(item, held):
            reports = runtestprotocol(item, nextitem=nextitem, log=False)
    finally:
        state.pending = None
    return reports, m.last


class _HeldReports:
    """The reports logged while a measured run is in progress: its subtests'.

    pytest's ``subtests`` fixture, the pytest-subtests plugin and pytest's
    unittest support (``self.subTest``) log a report per subtest as it ends,
    and every listener keeps it: the terminal reporter's statistics, JUnit XML,
    pytest-xdist, which sends it to the controller. Logged again by every run of
    a repeated test, they would multiply the subtests in the summary and grow
    the heap run after run, which reads as a leak and makes each full collection
    slower than the last. So they are held while the run is in progress and only
    the last run's are logged (:meth:`replay`), in order with its phase reports.

    A failing report ends the holding: what was held and the failure are logged
    at once, as pytest would (``-x`` stops at the first failing subtest,
    ``--pdb`` opens at it), and the run counts as failed (``failed``), so no
    further run is made and none is judged.
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

    def replay(self, relay: Any) -> None:
        """Log the held reports through the real hook, and hold none."""
        reports, self.reports = self.reports, []
        for rep in reports:
            relay.pytest_runtest_logreport(report=rep)


class _HoldingRelay:
    """A hook relay that hands ``pytest_runtest_logreport`` to :class:`_HeldReports`."""

    __slots__ = ("_held", "_relay")

    def __init__(self, relay: Any, held: _HeldReports) -> None:
        self._relay = relay
        self._held = held

    def __getattr__(self, name: str) -> Any:
        if name == "pytest_runtest_logreport":
            return functools.partial(self._held.log, self._relay)
        return getattr(self._relay, name)


@contextlib.contextmanager
def _holding_reports(item: pytest.Item, held: _HeldReports) -> Generator[None]:
    """Route the reports logged through ``item.ihook`` during a run to ``held``.

    Subtests log through ``item.ihook`` (the fixture takes it at set-up, the
    unittest support at each subtest), which pytest resolves through
    ``Session.gethookproxy`` at every access: replacing that method on the
    session for the run reaches every subtest implementation without touching
    one. Checked on pytest 8.0.2 (with pytest-subtests 0.15) and 9.2.0.
    """
    session = item.session
    mine = vars(session)
    had = mine.get("gethookproxy")
    real = session.gethookproxy

    def gethookproxy(fspath: os.PathLike[str]) -> Any:
        return _HoldingRelay(real(fspath), held)

    mine["gethookproxy"] = gethookproxy
    try:
        yield
    finally:
        if had is None:
            del mine["gethookproxy"]
        else:
            mine["gethookproxy"] = had


def _forget_previous_run(item: pytest.Item) -> None:
    """Drop what pytest kept on the item from the previous run of a repeated test.

    pytest appends each run's captured output and recorded properties to the
    item; across repetitions that would grow run after run and read as a leak.
    ``Item._report_sections`` is private: present since pytest 3, checked on 9.2.
    """
    item._report_sections.clear()
    item.user_properties.clear()


def _tmp_path_of(item: pytest.Item) -> tuple[Path, pytest.TempPathFactory] | None:
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


def _remove_previous_tmp_path(m: ItemMeasure) -> None:
    """Remove the directory the previous run of a repeated test got as ``tmp_path``.

    A new name per run would itself read as growth: pathlib interns the parts
    of a path it parses, and CPython 3.12 never frees interned strings. So the
    previous run's directory goes, and its number is handed out again. pytest
    up to 9.1 numbers a directory after the highest one present; 9.2 keeps a
    counter per prefix, ``TempPathFactory._next_number`` (private; checked on
    pytest 8.0.2 and 9.2.0), which is stepped back when it still points just
    past the removed directory.
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
    counters = getattr(factory, "_next_number", None)
    if number and isinstance(counters, dict) and counters.get(prefix.lower()) == int(number) + 1:
        counters[prefix.lower()] = int(number)


def _teardown_for_next(item: pytest.Item, nextitem: pytest.Item | None) -> pytest.TestReport | None:
    """Tear down what the real next item does not need, after repetitions kept it.

    Calling the teardown hooks a second time would confuse other plugins (the
    logging plugin deletes its stash entries there), so only the setup state
    is unwound, as ``runtestprotocol`` itself does at its end.
    """
    call = pytest.CallInfo.from_call(
        lambda: item.session._setupstate.teardown_exact(nextitem), when="teardown"
    )
    if call.excinfo is None:
        return None
    return pytest.TestReport.from_item_and_call(item, call)


class MeasuredTests:
    """The per-test hooks of measured tests (registered when collection finds one).

    - ``pytest_runtest_protocol`` runs a measured test (see the module docstring);
    - ``pytest_fixture_setup`` takes the before-reading when the first
      function-scoped fixture is about to be set up;
    - ``pytest_runtest_setup`` takes it at the end of setup when there was none:
      trylast, inside every plugin's setup wrapper, so what those keep for the
      test (the logging plugin's handler) is alive at both readings.

    A failed memory verdict's status ("M") comes from :class:`FailedStatus`,
    registered at the first failure.
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
            m = ItemMeasure(build_spec(_nodeid(item), (), self.state.settings))
        _protocol(item, nextitem, m, self.state)
        return True

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        pending = self.state.pending
        if pending is not None:
            _begin_run(*pending, self.state)  # no function-scoped fixture: the test alone

    @pytest.hookimpl(tryfirst=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> None:
        pending = self.state.pending
        if pending is not None and fixturedef.scope == "function":
            _begin_run(*pending, self.state)


class FailedStatus:
    """Marks a call whose memory verdict failed ("M", "FAILED (memwatch)")."""

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
            # ``reprcrash.message`` again (see _VerdictText).
            report.longrepr = _VerdictText(report.longrepr)
        return "failed", "M", "FAILED (memwatch)"
    return None


class MarkerErrors:
    """Fails, at setup, each test whose memwatch markers are wrong (found at collection)."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        message = item.stash.get(MARKER_ERROR, None)
        if message is not None:
            pytest.fail(message, pytrace=False)


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
    keep: _KeepCollectors | None = None
    kept = False
    held = _HeldReports()
    if plan is None:
        reports, last = _run(item, m, nextitem, state, held)
    else:
        keep = _KeepCollectors(item)
        kept = True
        reports = []
        while plan.wants_more():
            _remove_previous_tmp_path(m)
            # Rebinding, not appending: per-run objects kept here would be measured.
            reports, last = _run(item, m, keep, state, held)
            if last is None or held.failed or not _passed(reports):
                break
        # The last run's directory stays, as pytest leaves it for a test run once.
        m.tmp_dir = None
    measures = [last] if last is not None else []
    m.plan = None
    found = _finish_resources(m, state, spec)
    duration = time.perf_counter() - start
    # Plain measuring (no marker, no budget) has nothing to judge.
    judged = m.clear and not held.failed and _passed(reports) and bool(measures)
    verdicts = judge(spec, measures, plan, state.measurer, found) if judged else []
    failed = [v for v in verdicts if not v.passed]
    attribution = None
    attribution_s: float | None = None
    if failed and state.settings.trace > 0:
        why = _attribution_needs(failed, found)
        if why[0] or why[1]:
            kept = True
            began = time.perf_counter()
            attribution = _attribute(
                item, m, state, keep or _KeepCollectors(item), measures, failed, found, *why
            )
            attribution_s = time.perf_counter() - began
    if kept:
        final = _teardown_for_next(item, nextitem)
        if final is not None:
            reports.append(final)
    result = _result(item, state, spec, measures, plan, verdicts, attribution, reports, duration)
    if plan is not None or attribution_s is not None:
        # A single run's time is duration_s already; kept off the others, as
        # each extra object a worker sends shows in the next test's readings.
        result.timing = _timing(plan, duration, attribution_s)
    growth = result.growth
    state.ledger.record_growth(result.nodeid, bytes_metric(growth) if growth else None)
    state.ledger.settle(result.nodeid, functools.partial(_scoped_fixtures, item))
    if found is not None:
        state.ledger.add(result.nodeid, "test", found.leaked)
    data = _apply(
        reports,
        result,
        failed,
        attribution,
        html_extras=state.html_extras,
        junit=state.junit,
        xfail_any=bool(failed) and _xfail_takes_any_failure(item),
    )
    if failed:
        # Until a memory verdict fails, no test's status needs memwatch.
        _ensure_plugin(item.config, "memwatch-failed-status", FailedStatus)
    if state.is_controller:
        # In-process; an xdist controller collects its workers' results from
        # their reports instead (pytest_memwatch.plugin.xdist).
        state.record(data if data is not None else result.to_dict())
    for rep in reports:
        if rep.when == "call":
            held.replay(ihook)  # the subtests, in their place before the call's report
        ihook.pytest_runtest_logreport(report=rep)
        # The payload rides on the report while it is logged (for plugins,
        # conftests and xdist, which sends it then); pytest's terminal reporter
        # keeps every report to the end, and would keep every result with it.
        rep.__dict__.pop("memwatch", None)
    held.replay(ihook)
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    m.last = None


def _attribution_needs(failed: list[Any], found: ResourceReport | None) -> tuple[bool, bool]:
    """Whether the failure asks for memory attribution, and for where resources were opened.

    A leak verdict failing only on descriptors or threads has no memory to
    explain: tracing it would blame pytest's own per-run allocations.
    """
    memory = False
    for v in failed:
        if v.kind == "max_growth":
            memory = True
        elif v.kind == "leak":
            metrics = v.details.get("metrics") or {}
            suspect = {
                k for k, d in metrics.items() if isinstance(d, dict) and d.get("state") == "suspect"
            }
            memory = memory or bool(suspect & set(MEMORY_METRICS)) or not metrics
    opened = found is not None and any(r.kind in OPENED_KINDS for r in found.leaked)
    return memory, opened


def _leak_size(measures: list[RunMeasure], failed: list[Any]) -> tuple[int, int]:
    """Bytes and blocks one run was measured to leave, for attribution's memory budget."""
    size = blocks = 0
    if measures:
        growth = measures[-1].after.minus(measures[-1].before)
        size = bytes_metric(growth) or 0
        blocks = growth.get("blocks") or 0
    for v in failed:
        if v.kind == "max_growth" and isinstance(v.measured, (int, float)):
            size = max(size, int(v.measured))
        for name, d in (v.details.get("metrics") or {}).items():
            slope = (d.get("trend") or {}).get("slope") if isinstance(d, dict) else None
            if not isinstance(slope, (int, float)):
                continue
            if name in ("rss", "malloc"):
                size = max(size, int(slope))
            elif name == "blocks":
                blocks = max(blocks, int(slope))
    return max(0, size), max(0, blocks)


def _attribute(
    item: pytest.Item,
    m: ItemMeasure,
    state: SessionState,
    keep: _KeepCollectors,
    measures: list[RunMeasure],
    failed: list[Any],
    found: ResourceReport | None,
    memory: bool,
    opened: bool,
) -> dict[str, Any]:
    """Explain a failed verdict; never raises (a broken explanation must not stop the session)."""
    from pytest_memwatch.engine import attribution

    held = _HeldReports()

    def run_once() -> None:
        # As _run: no reading is pending, so the reruns take none and never
        # freeze the heap; what pytest keeps per run on the item is dropped,
        # and the subtests the reruns report are not logged again.
        _forget_previous_run(item)
        held.clear()
        with _holding_reports(item, held):
            runtestprotocol(item, nextitem=keep, log=False)  # type: ignore[arg-type]
        _drop_finished_dependents(item, m)

    frames = state.settings.trace
    progress = _AttributionProgress(item.config, _nodeid(item))
    try:
        if memory:
            size, blocks = _leak_size(measures, failed)
            result = attribution.attribute(
                run_once, frames=frames, leak_bytes=size, leak_blocks=blocks, progress=progress
            )
        else:
            result = attribution.empty(frames, "the failure is about resources, not memory")
        if opened:
            progress("one more run recording where resources are opened")
            result["resources"] = [
                r.to_dict() for r in state.resources.trace_openers(run_once, frames)
            ]
    except Exception as exc:
        result = attribution.empty(frames, f"attribution failed: {type(exc).__name__}: {exc}")
    finally:
        progress.done()
        # Attribution gave the frozen heap back to the collector; the next
        # measured test freezes it again.
        state.measurer.thaw()
    return result


def _timing(plan: Any, runs_s: float, attribution_s: float | None) -> dict[str, Any]:
    """Where memwatch's time on a test went (docs/results.md, "timing")."""
    count = len(plan.records) if plan is not None else 1
    return {
        "runs": count,
        "runs_s": round(runs_s, 6),
        "attribution_s": (None if attribution_s is None else round(attribution_s, 6)),
    }


class _AttributionProgress:
    """A terminal line while an attribution takes more than about two seconds.

    Attribution re-runs the failed test, which can take a while on a large
    heap; past :data:`SHOW_AFTER` seconds each step is shown, rewritten in
    place on a terminal, one line per step in a log. Nothing on xdist workers.
    """

    SHOW_AFTER = 2.0

    def __init__(self, config: pytest.Config, nodeid: str) -> None:
        self._tr = (
            None
            if hasattr(config, "workerinput")
            else (config.pluginmanager.get_plugin("terminalreporter"))
        )
        self._capman = config.pluginmanager.get_plugin("capturemanager")
        self._nodeid = nodeid
        self._start = time.perf_counter()
        self._width = 0
        self._shown = False

    def __call__(self, step: str) -> None:
        tr = self._tr
        if tr is None or time.perf_counter() - self._start < self.SHOW_AFTER:
            return
        import shutil

        text = (
            f"memwatch: explaining {self._nodeid} "
            f"({time.perf_counter() - self._start:.0f} s): {step}"
        )
        suspended = (
            self._capman.global_and_fixture_disabled()
            if self._capman is not None
            else contextlib.nullcontext()
        )
        with suspended:
            if not _isatty(tr):
                tr.write(("" if self._shown else "\n") + text + "\n", flush=True)
            else:
                text = text[: shutil.get_terminal_size().columns - 1]
                tr.write(("" if self._shown else "\n") + "\r" + text.ljust(self._width), flush=True)
                self._width = len(text)
        self._shown = True

    def done(self) -> None:
        if self._shown and self._tr is not None:
            self(f"done in {time.perf_counter() - self._start:.1f} s")
            if _isatty(self._tr):
                self._tr.write("\n", flush=True)


def _isatty(reporter: Any) -> bool:
    """``TerminalReporter.isatty``: a bool on pytest 8.0.2, callable on 9.2 (both checked)."""
    value = reporter.isatty
    return bool(value() if callable(value) else value)


def _result(
    item: pytest.Item,
    state: SessionState,
    spec: TestSpec,
    measures: list[RunMeasure],
    plan: Any,
    verdicts: list[Any],
    attribution: dict[str, Any] | None,
    reports: list[pytest.TestReport],
    duration: float,
) -> TestResult:
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


def _add_html_extra(report: pytest.TestReport, data: dict[str, Any]) -> None:
    """A memwatch section for this test in pytest-html's report (plain data, xdist-safe)."""
    from pytest_html import extras  # type: ignore[import-not-found,import-untyped,unused-ignore]

    from pytest_memwatch.reports.outputs import html_section

    report.extras = [*getattr(report, "extras", []), extras.html(html_section(data))]  # type: ignore[attr-defined]


def _apply(
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
        call.longrepr = _verdict_text([v.message for v in failed])
        if attribution is not None:
            from pytest_memwatch.engine.attribution import format_attribution

            call.sections.append(("memwatch attribution", format_attribution(attribution)))
        if xfail_any and "wasxfail" in call.__dict__:
            call.outcome = "skipped"
            result.outcome = "xfailed"
        else:
            call.outcome = "failed"
            call.memwatch_failed = True  # type: ignore[attr-defined]
            if "wasxfail" in call.__dict__:
                del call.wasxfail
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


def _verdict_text(messages: list[str]) -> _VerdictText:
    """Failed verdicts for the failure section: each a headline, its details indented below."""
    from pytest_memwatch.engine.messages import message_lines

    lines: list[str] = []
    for message in messages:
        head, *details = message_lines(message)
        lines.append(f"memwatch {head}")
        lines.extend(f"  {d}" for d in details)
    return _VerdictText("\n".join(lines))


class _VerdictText(str):
    """The failed verdicts, as a call report's ``longrepr``.

    A string to every reader that takes one (pytest 8.1+ prints a string
    longrepr's text in the short test summary); pytest 8.0 reads only
    ``longrepr.reprcrash.message`` there, so it gets that too, and the
    ``toterminal`` every longrepr object has, which also makes pytest-xdist
    ship it as a plain string. Checked on pytest 8.0.2 and 9.2.
    """

    __slots__ = ()

    @property
    def reprcrash(self) -> _VerdictText:
        return self

    @property
    def message(self) -> str:
        # The headline: the short summary has one line per test.
        return str(self).split("\n", 1)[0]

    def toterminal(self, out: Any) -> None:
        out.line(str(self))


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


class _Run:
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
        _drop_finished_dependents(self.item, m)
        measure = state.measurer.end(
            token, clear_caches=m.clear, light=not m.clear, blocks=m.blocks
        )
        if plan is not None:
            plan.record(measure.before, measure.after, measure.peak_rss)
        # Only the latest run is kept: one object per run would itself look like growth.
        m.last = measure
        if plan is not None:
            m.tmp_dir = _tmp_path_of(self.item)
        state.ledger.note("test", measure.after)


def _begin_run(item: pytest.Item, m: ItemMeasure, state: SessionState) -> None:
    """Take the before-reading of one run and register the after-reading as a finalizer.

    Registered now, on the test itself, the finalizer runs after those of the
    function-scoped fixtures set up from here on, and before the test's
    collectors (and their fixtures) are torn down.
    """
    state.pending = None
    plan = m.plan
    _open_resource_watch(m, state)
    # Built and registered before the reading, so neither counts as the test's.
    run = _Run(item, m, state)
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


def _finish_resources(m: ItemMeasure, state: SessionState, spec: TestSpec) -> ResourceReport | None:
    """What the checked test left behind (waiting out the grace period), or ``None``."""
    # Cleared first: the attribution re-runs that may follow must open no watch.
    m.check_resources = False
    watch, m.watch = m.watch, None
    if watch is None:
        return None
    return state.resources.finish(watch, parse_rules(spec.resources_ignore))


def _scoped_fixtures(item: pytest.Item) -> list[str]:
    """The test's module-, class-, package- and session-scoped fixtures, for the ledger."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return []
    return [
        f"{name} ({defs[-1].scope})"
        for name, defs in info.name2fixturedefs.items()
        if defs and defs[-1].scope != "function" and not name.startswith("_memwatch")
    ]


def _nodeid(item: pytest.Item) -> str:
    return item.stash.get(NODEID, item.nodeid)


def _drop_finished_dependents(item: pytest.Item, m: ItemMeasure) -> None:
    """Forget pytest's "finish my dependent" callbacks for function fixtures already finished.

    A function-scoped fixture that uses a module- or session-scoped one registers
    ``partial(finish, request)`` on it, kept until that fixture's own teardown.
    It holds the test's request, so every test (and every repetition, which keeps
    the module fixtures alive) would read as ~10 blocks of growth: a clean test
    using such a fixture failed ``no_leaks``. Once the function fixture has
    finished, calling its finish again does nothing, so the callback can go.
    """
    scoped = m.scoped
    if scoped is None:
        # The test's fixture definitions do not change between runs: listed once.
        info = getattr(item, "_fixtureinfo", None)
        defs = info.name2fixturedefs.values() if info is not None else ()
        scoped = m.scoped = [d for ds in defs for d in ds if d.scope != "function"]
    for fixturedef in scoped:
        fins = getattr(fixturedef, "_finalizers", None)
        if fins:
            fins[:] = _needed_finalizers(fins)
    if m.plan is not None:
        # pytest 8.0 registers ``partial(fixturedef.finish)`` again on the
        # collector of a higher-scoped fixture every time a test requests it,
        # even from its cache (8.1 registers it once). Repetitions keep the
        # collectors, so a clean unittest-style test read +14 blocks a run.
        # Checked on pytest 8.0.2 and 9.2 (SetupState.stack: node -> (finalizers, exc)).
        stack = getattr(getattr(item.session, "_setupstate", None), "stack", None) or {}
        for node, entry in stack.items():
            if node is not item and entry[0]:
                entry[0][:] = _needed_finalizers(entry[0])


def _needed_finalizers(fins: list[Any]) -> list[Any]:
    """The finalizers minus finished dependents and repeated ``finish`` calls of one fixture.

    Calling a fixture's ``finish`` a second time finds nothing to tear down,
    so a later duplicate can go; the first one keeps its place in the order.
    """
    out: list[Any] = []
    seen: set[int] = set()
    for f in fins:
        if _finished_dependent(f):
            continue
        if isinstance(f, functools.partial) and getattr(f.func, "__name__", "") == "finish":
            owner = getattr(f.func, "__self__", None)
            if isinstance(owner, pytest.FixtureDef):
                if id(owner) in seen:
                    continue
                seen.add(id(owner))
        out.append(f)
    return out


def _finished_dependent(fin: object) -> bool:
    if not isinstance(fin, functools.partial):
        return False
    owner = getattr(fin.func, "__self__", None)
    return (
        getattr(fin.func, "__name__", "") == "finish"
        and isinstance(owner, pytest.FixtureDef)
        and owner.scope == "function"
        and owner.cached_result is None
    )


@pytest.fixture
def memwatch(request: pytest.FixtureRequest) -> Generator[MemwatchHandle]:
    """Measure memory inside a test: baselines, snapshots, growth, peak and leak checks.

    Example::

        def test_parser(memwatch):
            memwatch.baseline()
            parse(big_document)
            memwatch.assert_max_growth("1 MiB")
            assert memwatch.check_leaks(lambda: parse(small_document), runs=8)
    """
    from pytest_memwatch.fixture import MemwatchHandle

    handle = MemwatchHandle(request.node.nodeid, managed=True)
    handle.start()
    yield handle
    try:
        handle.finish()
    finally:
        if handle.verdicts:
            # Read back by _result: a test failed through the fixture failed a
            # memory check, and the reports must say so.
            request.node.stash[FIXTURE_VERDICTS] = [v.to_dict() for v in handle.verdicts]


# -- resources and the session ledger -------------------------------------------


def pytest_collection_finish(session: pytest.Session) -> None:
    # "What exists at session start" is taken once the test modules are
    # imported (their import-time threads and files count as existing) and
    # before the first test. An xdist controller collects nothing and runs no
    # tests, so this runs on each worker only.
    state = _state(session.config)
    if state is not None and state.settings.resources_ignore_existing:
        state.resources.remember_existing()


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Close this process's ledger; on the controller, merge every process's into the results.

    Runs after every fixture's teardown and before the results are written
    (and, on an xdist worker, before the worker sends its output).
    """
    state = _state(session.config)
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


# -- results -------------------------------------------------------------------


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


def _warn_unavailable_probes(config: pytest.Config, state: SessionState) -> None:
    if state.warned_probes:
        return
    state.warned_probes = True
    missing = state.measurer.prober.unavailable
    if missing:
        detail = "; ".join(f"{k}: {v}" for k, v in sorted(missing.items()))
        message = f"memwatch: some probes are unavailable here ({detail})"
        state.meta.unavailable_probes = dict(missing)
        try:
            config.issue_config_time_warning(pytest.PytestWarning(message), stacklevel=2)
        except Warning:
            # Under -W error / filterwarnings=error the warning is raised here, in a
            # collection hook: an INTERNALERROR for the whole session. A missing
            # probe degrades; it must not stop the run, so say it in the summary.
            state.output_lines.append(f"WARNING: {message}")


# -- soak tests ---------------------------------------------------------------------
# The ``soak`` fixture, and the call hook that ends a soak run with the test body
# so that its verdict becomes the test's outcome. Sampling, the samples file,
# signals, resuming and the verdict live in pytest_memwatch.soak; docs/soak.md.


SOAK_RUN = pytest.StashKey["soak_engine.SoakRun"]()
SOAK_OUTCOME = pytest.StashKey["soak_engine.SoakOutcome"]()
# The message of a soak verdict that failed the call, until its report is made.
SOAK_FAILED = pytest.StashKey[str]()


@pytest.fixture
def soak(request: pytest.FixtureRequest) -> Generator[soak_engine.SoakHandle]:
    """Drive a soak test: iterate it, or hand it a step function.

    The test needs ``@pytest.mark.soak(duration, interval=..., max_growth_rate=...,
    warmup=...)``; it runs only with ``--memwatch-soak`` or ``-m soak``. The loop
    ends when the duration (capped by ``--memwatch-soak-duration``) is up, or
    early on SIGTERM/SIGINT; then the growth rate after warmup is judged.

    Example::

        @pytest.mark.soak("8h", interval="30s", max_growth_rate="1 MiB/h")
        def test_transcription_session(soak, app):
            for tick in soak:
                app.transcribe(next_chunk())

        @pytest.mark.soak("30m")
        def test_cache_churn(soak, cache):
            soak.run(lambda: cache.get(random_key()))
    """
    from pytest_memwatch import soak as soak_engine

    item = request.node
    item.stash[SOAK_RUN] = _soak_prepare(item)
    yield soak_engine.SoakHandle(item.stash[SOAK_RUN])
    _soak_finish(item)


def _soak_prepare(item: pytest.Item) -> soak_engine.SoakRun:
    """The run for this test; a bad marker or samples file fails the test at setup."""
    from pytest_memwatch import soak as soak_engine

    state = _state(item.config)
    settings = state.settings if state is not None else Settings()
    marker = item.get_closest_marker("soak")
    if marker is None:
        pytest.fail(
            f"memwatch: {item.nodeid}: the soak fixture needs a soak marker on the test, "
            f"e.g. {markers.SOAK.example}",
            pytrace=False,
        )
    # pytest.fail outside the except blocks: inside, the report would show the
    # engine's exception too, as "During handling of the above exception".
    problem = None
    try:
        values = markers.SOAK.parse(marker.args, marker.kwargs)
        plan = soak_engine.make_plan(item.nodeid, values, cap=settings.soak_duration)
    except (markers.MarkerError, soak_engine.SoakError) as exc:
        problem = markers.error_message(item.nodeid, "soak", marker.args, marker.kwargs, str(exc))
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    progress = None if hasattr(item.config, "workerinput") else _SoakProgressLine(item.config)
    try:
        return soak_engine.SoakRun.prepare(
            plan,
            item.config.rootpath / settings.storage / "soak",
            resume=settings.soak_resume,
            progress=progress,
            # A terminal gets a live line; a log gets a line a minute, not a flood.
            progress_every=1.0 if progress and progress.tty else max(plan.interval_s, 60.0),
            meta={"pytest_version": pytest.__version__},
        )
    except soak_engine.SoakError as exc:
        problem = f"memwatch: {item.nodeid}: {exc}"
    pytest.fail(problem, pytrace=False)


def _soak_finish(item: pytest.Item) -> soak_engine.SoakOutcome | None:
    """Finish the test's soak run once; keep its outcome for ``_result``."""
    run = item.stash.get(SOAK_RUN, None)
    if run is None:
        return item.stash.get(SOAK_OUTCOME, None)
    # Pop, not get: the run holds its samples and the test's step closures.
    del item.stash[SOAK_RUN]
    outcome = run.finish()
    if outcome is None:
        return None
    item.stash[SOAK_OUTCOME] = outcome
    path = outcome.data.get("samples_path")
    if path:
        # Relative to the rootdir, as the reports show other paths.
        with contextlib.suppress(ValueError):
            outcome.data["samples_path"] = Path(path).relative_to(item.config.rootpath).as_posix()
    state = _state(item.config)
    if run.write_error and state is not None:
        state.output_lines.append(f"WARNING: memwatch: {item.nodeid}: {run.write_error}")
    if outcome.stop_reason is not None:
        # The signal was meant for the whole run: this test reports its partial
        # verdict, then pytest stops (exit status 2) and still writes its reports.
        item.session.shouldstop = f"memwatch: soak run stopped by {outcome.stop_reason}"
    return outcome


class SoakCall:
    """Ends a soak run with the test body (registered when a soak test is collected)."""

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None]:
        """A failed soak verdict fails the call."""
        if SOAK_RUN not in item.stash:
            return (yield)
        try:
            yield
        except BaseException:
            # The test's own failure (or skip) is what it reports; the samples are kept.
            _soak_finish(item)
            raise
        outcome = _soak_finish(item)
        if outcome is not None and not outcome.verdict.passed:
            message = outcome.verdict.message
            item.stash[SOAK_FAILED] = message
            # Reported like every other failed memory verdict ("M", "FAILED
            # (memwatch)"), not as the test's own failure.
            _ensure_plugin(item.config, "memwatch-failed-status", FailedStatus)
            pytest.fail(f"memwatch {message}", pytrace=False)
        return None

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if call.when == "call" and report.failed:
            message = item.stash.get(SOAK_FAILED, None)
            if message is not None:
                del item.stash[SOAK_FAILED]
                report.longrepr = _verdict_text([message])
                report.memwatch_failed = True  # type: ignore[attr-defined]
        return report


class _SoakProgressLine:
    """Shows soak progress: one line rewritten in place on a terminal, plain lines in a log.

    Called from the sampler thread while the test runs, so it suspends output
    capture around each write, as pytest's live logging does.
    """

    def __init__(self, config: pytest.Config) -> None:
        self._tr = config.pluginmanager.get_plugin("terminalreporter")
        self._capman = config.pluginmanager.get_plugin("capturemanager")
        self.tty = self._tr is not None and _isatty(self._tr)
        self._width = 0

    def __call__(self, progress: soak_engine.SoakProgress) -> None:
        import shutil

        from pytest_memwatch import soak as soak_engine

        tr = self._tr
        if tr is None:
            return
        suspended = (
            self._capman.global_and_fixture_disabled()
            if self._capman is not None
            else contextlib.nullcontext()
        )
        with suspended:
            if not self.tty:
                if not progress.final:
                    # The first line starts below the test's progress characters.
                    tr.write(("" if self._width else "\n") + soak_engine.format_progress(progress))
                    tr.write("\n", flush=True)
                    self._width = 1
                return
            if progress.final:
                if self._width:
                    tr.write("\r" + " " * self._width + "\r", flush=True)
                self._width = 0
                return
            text = soak_engine.format_progress(progress)[: shutil.get_terminal_size().columns - 1]
            if not self._width:
                tr.write("\n")  # below the test's name, as live logging does
            tr.write("\r" + text.ljust(self._width), flush=True)
            self._width = len(text)
