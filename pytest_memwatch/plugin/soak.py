"""Soak tests: the ``soak`` fixture, and the call hook that ends a soak run with
the test body so that its verdict becomes the test's outcome.

Sampling, the samples file, signals, resuming and the verdict live in
:mod:`pytest_memwatch.soak`; docs/soak.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_memwatch.config import markers
from pytest_memwatch.config.settings import Settings
from pytest_memwatch.plugin.progress import SoakProgressLine
from pytest_memwatch.plugin.reporting import FailedStatus, verdict_text
from pytest_memwatch.plugin.state import (
    SOAK_FAILED,
    SOAK_OUTCOME,
    SOAK_RUN,
    ensure_plugin,
    session_state,
)

if TYPE_CHECKING:
    # Imported where used: the soak engine (with tracemalloc and pickle) is a
    # third of the plugin's import time.
    from pytest_memwatch import soak as soak_engine


# Named "soak" for tests; the function has another name so that the package's
# ``soak`` attribute stays this module when ``__init__`` imports the fixture.
@pytest.fixture(name="soak")
def soak_fixture(request: pytest.FixtureRequest) -> Generator[soak_engine.SoakHandle]:
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

    state = session_state(item.config)
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
    progress = None if hasattr(item.config, "workerinput") else SoakProgressLine(item.config)
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
    """Finish the test's soak run once; keep its outcome for ``reporting.build_result``."""
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
    state = session_state(item.config)
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
            ensure_plugin(item.config, "memwatch-failed-status", FailedStatus)
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
                report.longrepr = verdict_text([message])
                report.memwatch_failed = True  # type: ignore[attr-defined]
        return report
