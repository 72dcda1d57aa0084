"""A project that registers a marker memwatch also claims keeps it: installing the
plugin changes nothing for a suite that does not use memwatch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pytest_memwatch.config.markers import SCHEMAS, foreign_names

if TYPE_CHECKING:
    from conftest import Runner

# The project's own markers: same names as memwatch's, other meanings. Its soak
# tests run by default, and its max_memory/no_leaks take arguments memwatch
# would reject.
PROJECT_SUITE = """
import pytest

@pytest.mark.soak
def test_soak_of_our_own():
    pass

@pytest.mark.max_memory("whatever the project means by it")
def test_max_memory_of_our_own():
    pass

@pytest.mark.no_leaks(kind="db connections")
def test_no_leaks_of_our_own():
    pass

def test_plain():
    pass
"""

PYTEST_INI = """
[pytest]
addopts = --strict-markers
markers =
    soak: our long-running tests, run in every session
    max_memory(text): documentation only
    no_leaks: our own connection-leak check
"""


def outcomes(result: pytest.RunResult) -> dict[str, int]:
    return result.parseoutcomes()


def test_a_suite_with_its_own_markers_runs_the_same_with_and_without_memwatch(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(PYTEST_INI)
    pytester.makepyfile(test_project=PROJECT_SUITE)
    without = pytester.runpytest_inprocess("-p", "no:memwatch", "-rs")
    with_plugin = pytester.runpytest_inprocess("-rs")
    assert without.ret == with_plugin.ret == 0
    assert outcomes(without) == outcomes(with_plugin) == {"passed": 4}
    assert "SKIPPED" not in with_plugin.stdout.str()


def test_memwatch_leaves_the_projects_markers_alone_when_it_is_on(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makeini(PYTEST_INI)
    pytester.makepyfile(test_project=PROJECT_SUITE)
    result = runner.sub("--memwatch", "-rs")
    assert result.ret == 0, result.stdout.lines
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "memwatch: markers left to the project, which registers them itself: "
            "max_memory, no_leaks, soak"
        ]
    )


def test_a_marker_registered_in_a_conftest_is_the_projects_too(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        "def pytest_configure(config):\n"
        "    config.addinivalue_line('markers', 'soak: our soak tests')\n"
    )
    pytester.makepyfile(
        test_project=PROJECT_SUITE.replace("max_memory", "m2").replace("no_leaks", "n2")
    )
    pytester.makeini("[pytest]\nmarkers =\n    m2(text): x\n    n2: y\n")
    result = pytester.runpytest_inprocess("--strict-markers", "-rs")
    assert result.ret == 0, result.stdout.lines
    result.assert_outcomes(passed=4)


def test_memwatch_still_owns_a_marker_the_project_does_not_register(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\nmarkers =\n    slow: slow tests\n")
    pytester.makepyfile(
        "import pytest\n\n@pytest.mark.soak('1s')\ndef test_soak(soak):\n    pass\n"
    )
    result = pytester.runpytest_inprocess("-rs", "--strict-markers")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*soak test: run with --memwatch-soak or -m soak*"])


def test_foreign_names_reads_the_names_memwatch_claims_only() -> None:
    ours = [schema.line() for schema in SCHEMAS.values()]
    assert foreign_names(ours) == frozenset()
    assert foreign_names([*ours, "soak: ours", "slow: ours", "max_growth(n): ours"]) == {
        "soak",
        "max_growth",
    }
    assert foreign_names(["  no_leaks  : x", "memwatch_skip"]) == {"no_leaks", "memwatch_skip"}
