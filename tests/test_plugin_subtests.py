"""Tests with subtests under --memwatch-repeat (subprocess).

Subtests are pytest's ``subtests`` fixture (pytest 9, or the pytest-subtests
plugin before it) and unittest's ``self.subTest``, which pytest reports the same
way. Each subtest's report is logged while the test runs; a repeated test must
still report its subtests once, keep no report from an earlier run, and get the
verdict its own code deserves.
"""

from __future__ import annotations

import importlib.util
import re
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Runner


BUILTIN = importlib.util.find_spec("_pytest.subtests") is not None


def _has_subtests() -> bool:
    try:
        import _pytest.subtests  # noqa: F401
    except ImportError:
        try:
            import pytest_subtests  # noqa: F401
        except ImportError:
            return False
    return True


pytestmark = pytest.mark.skipif(
    not _has_subtests(),
    reason="needs pytest>=9 or the pytest-subtests plugin (.ci/setup-matrix installs it with 8.0)",
)

# pytest counts passed subtests in its final line when verbose (-v).

# Counts the reports every listener sees, by test and kind, and prints them at
# the end: what the terminal, JUnit XML or xdist would each have kept.
COUNTING_CONFTEST = """
    import collections

    LOGGED = collections.Counter()

    def pytest_runtest_logreport(report):
        kind = "sub" if "subtest" in type(report).__name__.lower() else report.when
        LOGGED[report.nodeid.rsplit("::", 1)[-1], kind, report.outcome] += 1

    def pytest_terminal_summary(terminalreporter):
        for (name, kind, outcome), n in sorted(LOGGED.items()):
            terminalreporter.write_line(f"logged {name} {kind} {outcome} {n}")
"""

# Each run of a test counts the reports the terminal reporter keeps when its
# body starts: a report logged by an earlier run shows as a count that grows
# with the run index. The counts go into preallocated arrays, so recording them
# allocates nothing per run.
CLEAN = """
    import array
    import unittest

    KEPT = array.array("q", [-1] * 512)
    RUN = array.array("q", [0])

    def test_clean(subtests, request):
        stats = request.config.pluginmanager.get_plugin("terminalreporter").stats
        KEPT[RUN[0]] = sum(len(reports) for reports in stats.values())
        RUN[0] += 1
        for i in range(15):
            with subtests.test(i=i):
                assert [i] * 3 == [i, i, i]

    def test_runs_kept_nothing():
        runs = RUN[0]
        assert runs >= 7, runs
        assert list(KEPT[:runs]) == [KEPT[0]] * runs, list(KEPT[:runs])

    class TestCaseWithSubtests(unittest.TestCase):
        def test_clean(self):
            for i in range(15):
                with self.subTest(i=i):
                    self.assertEqual([i] * 3, [i, i, i])
"""


def _logged(result: pytest.RunResult) -> dict[tuple[str, str, str], int]:
    out = {}
    for line in result.stdout.lines:
        m = re.fullmatch(r"logged (\S+) (\S+) (\S+) (\d+)", line)
        if m:
            out[m[1], m[2], m[3]] = int(m[4])
    return out


def _final_line(result: pytest.RunResult) -> str:
    """The outcome counts of the final line, without the time it took."""
    return re.sub(r" in [\d.]+s.*$", "", result.stdout.lines[-1].strip("= "))


def test_a_clean_test_with_subtests_passes_and_reports_each_subtest_once(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makeconftest(COUNTING_CONFTEST)
    pytester.makepyfile(test_clean=CLEAN)
    plain = runner.sub("-p", "no:memwatch", "-p", "no:cacheprovider", "-v", "-k", "not kept")
    result = runner.sub("-p", "no:cacheprovider", "-v", "--memwatch-repeat")
    # The body assertions ran in every run: the live count never grew.
    assert _final_line(result) == "3 passed, 30 subtests passed"
    assert _final_line(plain) == "2 passed, 1 deselected, 30 subtests passed"
    # Every listener saw each subtest once and each phase once, as without memwatch.
    logged = _logged(result)
    assert logged[("test_clean", "sub", "passed")] == 30  # 15 with the fixture, 15 unittest
    assert logged[("test_clean", "call", "passed")] == 2
    assert {k: v for k, v in logged.items() if k[0] != "test_runs_kept_nothing"} == _logged(plain)
    for i in range(15):
        # "SUBPASSED(i=0)" on pytest 9, "(i=0) SUBPASS" with pytest-subtests.
        lines = [ln for ln in result.stdout.lines if re.search(rf"\(i={i}\)\D", ln + " ")]
        assert len(lines) == 2, (i, lines)  # once for the fixture, once for unittest
        assert all("SUBPASS" in ln for ln in lines), lines
    section = runner.section(result)
    assert section[0].startswith("memwatch: 3 tests measured (3 repeated), 0 failed memory")


def test_a_leaking_test_with_subtests_still_fails(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makepyfile(
        test_leak="""
        import unittest

        KEPT = []

        def test_leaks_in_a_subtest(subtests):
            for i in range(15):
                with subtests.test(i=i):
                    if i == 7:
                        KEPT.append(bytearray(64 * 1024))

        class TestCaseLeaks(unittest.TestCase):
            def test_leaks(self):
                for i in range(15):
                    with self.subTest(i=i):
                        if i == 3:
                            KEPT.append(bytearray(64 * 1024))

        def test_clean(subtests):
            for i in range(15):
                with subtests.test(i=i):
                    assert i < 15
        """
    )
    result = runner.sub("-p", "no:cacheprovider", "-v", "--memwatch-trace=0", "--memwatch-repeat")
    assert _final_line(result) == "2 failed, 1 passed, 45 subtests passed"
    leaks = [line for line in result.stdout.lines if line.startswith("memwatch leak:")]
    assert len(leaks) == 2, result.stdout.str()
    assert all(re.match(r"memwatch leak: malloc grows \+6[34]\.\d KiB/run", ln) for ln in leaks)
    result.stdout.fnmatch_lines(
        [
            "FAILED (memwatch) test_leak.py::test_leaks_in_a_subtest - memwatch leak:*",
            "FAILED (memwatch) test_leak.py::TestCaseLeaks::test_leaks - memwatch leak:*",
        ]
    )


def test_a_failing_subtest_fails_its_test_once_and_stops_the_repetition(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makeconftest(COUNTING_CONFTEST)
    pytester.makepyfile(
        test_fails="""
        import array

        RUN = array.array("q", [0])

        def test_second_run_fails(subtests):
            RUN[0] += 1
            for i in range(5):
                with subtests.test(i=i):
                    assert not (i == 2 and RUN[0] == 2), "fails on the second run"

        def test_made_two_runs():
            assert RUN[0] == 2
        """
    )
    result = runner.sub("-p", "no:cacheprovider", "-v", "--memwatch-repeat")
    # The failing run is the one reported: its subtests, once, and its failure
    # (pytest 9 fails the test itself too: "contains 1 failed subtest").
    counts = "2 failed, 1 passed" if BUILTIN else "1 failed, 2 passed"
    assert _final_line(result) == f"{counts}, 4 subtests passed"
    logged = _logged(result)
    assert logged[("test_second_run_fails", "sub", "passed")] == 4
    assert logged[("test_second_run_fails", "sub", "failed")] == 1
    # pytest 9 turns the call's report into "contains 1 failed subtest" as it is
    # logged; pytest-subtests leaves it passed.
    calls = [
        n
        for (name, kind, _), n in logged.items()
        if (name, kind) == ("test_second_run_fails", "call")
    ]
    assert calls == [1], logged
    failures = [ln for ln in result.stdout.lines if ln.startswith("E   ")]
    assert failures.count("E               AssertionError: fails on the second run") == 1
    assert "memwatch leak" not in result.stdout.str()


def test_subtests_under_xdist_are_sent_once(pytester: pytest.Pytester, runner: Runner) -> None:
    pytest.importorskip("xdist")
    pytester.makeconftest(COUNTING_CONFTEST)
    pytester.makepyfile(test_clean=CLEAN.replace("def test_runs_kept_nothing", "def _unused"))
    result = runner.sub("-p", "no:cacheprovider", "-n", "2", "-v", "--memwatch-repeat")
    assert _final_line(result).endswith("2 passed, 30 subtests passed")
    assert _logged(result)[("test_clean", "sub", "passed")] == 30
