"""The terminal output of a measured run at -q, default and -v (subprocess)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Runner

SUITE = """
    import pytest

    LEAK = []

    def test_grows():
        LEAK.append(bytearray(b"\\x01") * (2 * 1024 * 1024))

    @pytest.mark.max_growth("256 KiB")
    def test_over_budget():
        LEAK.append(bytearray(b"\\x01") * (1024 * 1024))

    def test_flat():
        assert True

    def test_ordinary_failure():
        assert 1 == 2
"""
HEAD = re.compile(
    r"memwatch: 4 tests measured, 1 failed memory verdict, total growth [+-]?\d+(\.\d)? \S+"
)
VERDICT = (
    "FAILED test_out.py::test_over_budget - max_growth: 1.0 MiB left behind per call, "
    "over the limit of 256.0 KiB"
)
TABLE = (
    "     growth         rss      malloc   blocks        peak  test  (tests that grew most)"
)


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_out=SUITE)
    return pytester


def test_quiet(suite: pytest.Pytester, runner: Runner) -> None:
    result = runner.sub("--memwatch", "--memwatch-trace=0", "-q")
    result.assert_outcomes(passed=2, failed=2)
    # A memory verdict has its own progress letter; an ordinary failure keeps F.
    assert result.stdout.lines[0].startswith(".M.F")
    section = runner.section(result)
    assert len(section) == 2
    assert HEAD.fullmatch(section[0]), section[0]
    assert section[1] == VERDICT
    assert "FAILED (memwatch) test_out.py::test_over_budget - memwatch max_growth: " in (
        result.stdout.str()
    )
    assert "FAILED test_out.py::test_ordinary_failure - assert 1 == 2" in result.stdout.lines


def test_default(suite: pytest.Pytester, runner: Runner) -> None:
    result = runner.sub("--memwatch", "--memwatch-trace=0")
    result.stdout.fnmatch_lines(["test_out.py .M.F*"])
    section = runner.section(result)
    assert HEAD.fullmatch(section[0]), section[0]
    assert section[1] == VERDICT
    assert section[2:4] == ["", TABLE]
    rows = section[4:]
    # Biggest growers first, each row ending with its node id.
    assert rows[0].endswith("  test_out.py::test_grows")
    assert rows[1].endswith("  test_out.py::test_over_budget")
    # growth, rss, malloc: the first column is the larger of the other two.
    assert re.match(r"^\s+\+2\.0 MiB\s+\S+ \S+\s+\+2\.0 MiB ", rows[0]), rows[0]
    assert not any("per run" in row for row in rows)


def test_verbose(suite: pytest.Pytester, runner: Runner) -> None:
    result = runner.sub("--memwatch", "--memwatch-trace=0", "-v")
    assert re.search(
        r"^test_out\.py::test_over_budget FAILED \(memwatch\)\s+\[ *50%\]$",
        result.stdout.str(),
        re.MULTILINE,
    ), result.stdout.str()
    assert re.search(
        r"^test_out\.py::test_ordinary_failure FAILED\s+\[100%\]$", result.stdout.str(), re.M
    )
    section = runner.section(result)
    assert HEAD.fullmatch(section[0])
    assert TABLE in section


def test_verbose_shows_per_run_deltas_of_repeated_tests(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makepyfile(
        test_rep="""
        import pytest

        LEAK = []

        @pytest.mark.max_growth("8 MiB", warmup=2, runs=4)
        def test_one_object_per_run():
            LEAK.append(object())
        """
    )
    quiet = runner.sub("-q")
    assert not any("blocks per run:" in line for line in runner.section(quiet))
    # -vv lists every measured test, grown in bytes or not.
    verbose = runner.sub("-vv")
    section = runner.section(verbose)
    assert section[0].startswith("memwatch: 1 test measured (1 repeated), 0 failed memory ")
    [runs] = [line for line in section if "blocks per run:" in line]
    # What each run left behind, as the verdict counts it: the one object.
    assert runs.split("blocks per run:")[1].strip() == "[1, 1, 1, 1]"
