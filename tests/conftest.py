"""Shared fixtures for pytest-memwatch's own tests.

End-to-end tests drive an inner pytest through ``pytester``. Anything that
measures memory runs the inner pytest in a subprocess (``Runner.sub``): in
process it would share the heap, the frozen GC generation and the peak RSS of
this test run. Option and marker validation measure nothing, so those run in
process (``Runner.inproc``), which is much faster.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest

# The inner runs of one suite each start a fresh interpreter; two minutes are far
# beyond what any of them needs, and a hung one fails instead of stalling CI.
SUBPROCESS_TIMEOUT = 120.0
# Plugins installed in the dev environment that the inner suites do not use.
# Importing hypothesis alone costs about a second per inner run (two thirds of
# its start-up), and a bigger heap makes every collection slower. memwatch
# itself is still loaded through its entry point, as for any user; one test
# (test_plugin_activation) runs with every installed plugin.
UNRELATED_PLUGINS = ("hypothesispytest", "memray", "html", "html_fixtures", "metadata")


@pytest.fixture(autouse=True)
def _no_memwatch_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # A PYTEST_MEMWATCH* variable in the developer's shell would switch the inner
    # runs on (or break them) and make these tests depend on who runs them.
    for key in list(os.environ):
        if key.startswith("PYTEST_MEMWATCH"):
            monkeypatch.delenv(key)
    yield


class Runner:
    """Runs an inner pytest and reads memwatch's parts of its output."""

    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester

    def sub(self, *args: str, all_plugins: bool = False) -> pytest.RunResult:
        blocked = [] if all_plugins else [f"-pno:{name}" for name in UNRELATED_PLUGINS]
        return self.pytester.runpytest_subprocess(*blocked, *args, timeout=SUBPROCESS_TIMEOUT)

    def inproc(self, *args: str) -> pytest.RunResult:
        return self.pytester.runpytest_inprocess(*args)

    @staticmethod
    def verdicts(result: pytest.RunResult, prefix: str = "memwatch ") -> list[list[str]]:
        """Each failed verdict in the failure sections: its headline, then its detail lines."""
        lines = result.stdout.lines
        out: list[list[str]] = []
        for i, line in enumerate(lines):
            if line.startswith(prefix):
                block = [line]
                for rest in lines[i + 1 :]:
                    if not rest.startswith("  "):
                        break
                    block.append(rest[2:])
                out.append(block)
        return out

    @staticmethod
    def section(result: pytest.RunResult, title: str = "memwatch") -> list[str]:
        """Lines of the ``==== title ====`` summary section (empty when absent)."""
        lines = result.stdout.lines
        header = re.compile(rf"^=+ {re.escape(title)} =+$")
        for i, line in enumerate(lines):
            if header.match(line):
                out = []
                for rest in lines[i + 1 :]:
                    if re.match(r"^=+ .* =+$", rest):
                        break
                    out.append(rest)
                return out
        return []

    @staticmethod
    def report_section(result: pytest.RunResult, test: str, title: str) -> list[str]:
        """Lines of a ``---- title ----`` report section under the failure of ``test``."""
        lines = result.stdout.lines
        start = next(
            (i for i, line in enumerate(lines) if re.match(rf"^_+ {re.escape(test)} _+$", line)),
            None,
        )
        if start is None:
            return []
        out: list[str] = []
        inside = False
        for line in lines[start + 1 :]:
            if re.match(r"^_+ \S+ _+$", line) or re.match(r"^=+ .* =+$", line):
                break
            if re.match(r"^-+ .* -+$", line):
                inside = line.strip("- ") == title
                continue
            if inside:
                out.append(line)
        return out


@pytest.fixture
def runner(pytester: pytest.Pytester) -> Runner:
    return Runner(pytester)
