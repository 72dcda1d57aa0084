"""Collection: which tests memwatch measures, what each one's markers ask for, and
which per-test hooks the session therefore needs.

Markers are checked here, once: a wrong marker argument fails that one test at
setup (:class:`MarkerErrors`) and the rest of the session runs. The per-test
hooks are registered only when a collected test needs them (``MeasuredTests``,
``MarkerErrors``, ``SoakCall``): with nothing measured, memwatch adds no call
to any test's run.
"""

from __future__ import annotations

import pytest

from pytest_memwatch.config import markers
from pytest_memwatch.engine import MarkCall, build_spec
from pytest_memwatch.plugin._pytest_private import case_marks
from pytest_memwatch.plugin.protocol import MeasuredTests
from pytest_memwatch.plugin.soak import SoakCall
from pytest_memwatch.plugin.state import (
    MARKER_ERROR,
    MEASURED,
    UNMEASURED,
    ItemMeasure,
    SessionState,
    ensure_plugin,
    reported_nodeid,
    session_state,
)


def _mark_calls(item: pytest.Item, theirs: frozenset[str] = frozenset()) -> list[MarkCall]:
    """The item's memwatch markers, closest first: the case, the function, class, module.

    ``iter_markers`` lists the function's own decorators before the marks of
    its ``pytest.param`` case (both are the item's own markers), so a per-case
    budget would lose to the function's. The case's marks are moved first.
    """
    case = case_marks(item)
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
    state = session_state(config)
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
            spec = build_spec(reported_nodeid(item), calls, settings)
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
        ensure_plugin(config, "memwatch-tests", lambda: MeasuredTests(state))
    if errors:
        ensure_plugin(config, "memwatch-marker-errors", MarkerErrors)
    if soaks:
        ensure_plugin(config, "memwatch-soak-call", SoakCall)


class MarkerErrors:
    """Fails, at setup, each test whose memwatch markers are wrong (found at collection)."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        message = item.stash.get(MARKER_ERROR, None)
        if message is not None:
            pytest.fail(message, pytrace=False)


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
