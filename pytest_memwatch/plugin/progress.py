"""Progress lines written while a test runs: a long attribution, a soak run.

On a terminal one line is rewritten in place; in a log each step is a line.
Both suspend output capture around each write, as pytest's live logging does,
and write nothing on an xdist worker (its terminal is the controller's).
"""

from __future__ import annotations

import contextlib
import shutil
import time
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_memwatch import soak as soak_engine


def isatty(reporter: Any) -> bool:
    """``TerminalReporter.isatty``: a bool on pytest 8.0.2, callable on 9.2 (both checked)."""
    value = reporter.isatty
    return bool(value() if callable(value) else value)


def _uncaptured(capman: Any) -> contextlib.AbstractContextManager[Any]:
    """Output capture suspended (pytest's capture manager, when there is one)."""
    if capman is None:
        return contextlib.nullcontext()
    suspended: contextlib.AbstractContextManager[Any] = capman.global_and_fixture_disabled()
    return suspended


class AttributionProgress:
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
        text = (
            f"memwatch: explaining {self._nodeid} "
            f"({time.perf_counter() - self._start:.0f} s): {step}"
        )
        with _uncaptured(self._capman):
            if not isatty(tr):
                tr.write(("" if self._shown else "\n") + text + "\n", flush=True)
            else:
                text = text[: shutil.get_terminal_size().columns - 1]
                tr.write(("" if self._shown else "\n") + "\r" + text.ljust(self._width), flush=True)
                self._width = len(text)
        self._shown = True

    def done(self) -> None:
        if self._shown and self._tr is not None:
            self(f"done in {time.perf_counter() - self._start:.1f} s")
            if isatty(self._tr):
                self._tr.write("\n", flush=True)


class SoakProgressLine:
    """Shows soak progress: one line rewritten in place on a terminal, plain lines in a log.

    Called from the sampler thread while the test runs, so it suspends output
    capture around each write, as pytest's live logging does.
    """

    def __init__(self, config: pytest.Config) -> None:
        self._tr = config.pluginmanager.get_plugin("terminalreporter")
        self._capman = config.pluginmanager.get_plugin("capturemanager")
        self.tty = self._tr is not None and isatty(self._tr)
        self._width = 0

    def __call__(self, progress: soak_engine.SoakProgress) -> None:
        from pytest_memwatch import soak as soak_engine

        tr = self._tr
        if tr is None:
            return
        with _uncaptured(self._capman):
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
