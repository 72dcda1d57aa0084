"""Every marker end to end: a passing and a failing test each, with real leaks.

Leaks are buffers made at run time (``bytearray(64 * 1024)`` or a repeated
byte), never constant literals the compiler folds into one shared object.
Measurement runs in a subprocess; validation of bad markers (which measures
nothing) runs in process.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Runner

OPT_OUT = "To opt this test out: @pytest.mark.memwatch_skip(reason)."
SIZE_USE = 'use 50 (MiB) or "512 KiB", "2MB", "1.5 GiB", "64B"'
MAX_GROWTH_EXPECTED = (
    "Expected max_growth(limit, *, warmup=0, runs=1, compare_fail=()), "
    'e.g. @pytest.mark.max_growth("512 KiB", warmup=1, runs=3). ' + OPT_OUT
)
NO_LEAKS_EXPECTED = (
    "Expected no_leaks(*, warmup=2, runs=5, resources=True, ignore=(), compare_fail=()), "
    "e.g. @pytest.mark.no_leaks(warmup=2, runs=8). " + OPT_OUT
)


def failure_lines(result: pytest.RunResult, prefix: str = "memwatch ") -> list[str]:
    return [line for line in result.stdout.lines if line.startswith(prefix)]


@pytest.mark.parametrize("flag", [[], ["--memwatch"]], ids=["marker-only", "with-flag"])
def test_max_growth(pytester: pytest.Pytester, runner: Runner, flag: list[str]) -> None:
    pytester.makepyfile(
        test_growth="""
        import pytest

        LEAK = []

        @pytest.mark.max_growth(16)
        def test_within():
            LEAK.append(bytearray(64 * 1024))

        @pytest.mark.max_growth("256 KiB")
        def test_over():
            LEAK.append(bytearray(b"\\x01") * (1024 * 1024))
        """
    )
    result = runner.sub(*flag, "--memwatch-trace=0")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["test_growth.py .M*"])
    assert failure_lines(result) == [
        "memwatch max_growth: 1.0 MiB left behind per call, over the limit of 256.0 KiB"
    ]
    assert "FAILED (memwatch) test_growth.py::test_over - memwatch max_growth: " in (
        result.stdout.str()
    )


def test_max_growth_with_repetitions_judges_the_median_delta(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makepyfile(
        test_growth="""
        import pytest

        LEAK = []
        CACHE = {}

        @pytest.mark.max_growth("256 KiB", warmup=1, runs=3)
        def test_leaks_every_call():
            LEAK.append(bytearray(b"\\x01") * (1024 * 1024))

        @pytest.mark.max_growth("256 KiB", warmup=1, runs=3)
        def test_one_time_cost_in_warmup():
            # A first-call cost (a cache filling) is what the warmup run absorbs.
            if "table" not in CACHE:
                CACHE["table"] = bytearray(b"\\x01") * (4 * 1024 * 1024)
        """
    )
    result = runner.sub("--memwatch-trace=0")
    result.assert_outcomes(passed=1, failed=1)
    [line] = failure_lines(result)
    assert re.fullmatch(
        r"memwatch max_growth: 1\.0 MiB left behind per call \(median over 3 runs\), "
        r"over the limit of 256\.0 KiB",
        line,
    ), line


def test_max_memory(pytester: pytest.Pytester, runner: Runner) -> None:
    pytester.makepyfile(
        test_peak="""
        import pytest

        def burst(mib):
            block = bytearray(b"\\x01") * (mib * 1024 * 1024)
            return len(block)

        @pytest.mark.max_memory(200)
        def test_within():
            assert burst(40)

        @pytest.mark.max_memory("20 MiB")
        def test_over():
            assert burst(40)
        """
    )
    result = runner.sub("--memwatch-trace=0")
    result.assert_outcomes(passed=1, failed=1)
    [line] = failure_lines(result)
    match = re.fullmatch(
        r"memwatch max_memory: peak (\d+\.\d) MiB above the memory at test start, "
        r"over the limit of 20\.0 MiB",
        line,
    )
    assert match, line
    assert 38.0 <= float(match[1]) <= 60.0
    assert "FAILED (memwatch) test_peak.py::test_over" in result.stdout.str()


def test_max_memory_keeps_its_peak_across_nested_watches(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    # memory_limit and the memwatch fixture watch peaks too; starting one inside
    # a measured test must not erase the peak the marker is judged on.
    pytester.makepyfile(
        test_nested="""
        import pytest

        from pytest_memwatch import memory_limit

        @memory_limit(500)
        def small_step():
            return 1

        @pytest.mark.max_memory("20 MiB")
        def test_burst_then_a_limited_call():
            burst = bytearray(b"\\x01") * (40 * 1024 * 1024)
            del burst
            assert small_step() == 1

        @pytest.mark.max_memory("20 MiB")
        def test_burst_then_a_fixture_baseline(memwatch):
            burst = bytearray(b"\\x01") * (40 * 1024 * 1024)
            del burst
            memwatch.baseline()
        """
    )
    result = runner.sub("--memwatch-trace=0")
    result.assert_outcomes(failed=2)
    lines = failure_lines(result)
    assert len(lines) == 2
    assert all(line.startswith("memwatch max_memory: peak ") for line in lines), lines


def test_no_leaks(pytester: pytest.Pytester, runner: Runner) -> None:
    pytester.makepyfile(
        test_leaks="""
        import pytest

        LEAK = []

        @pytest.mark.no_leaks
        def test_leaky():
            LEAK.append(bytearray(64 * 1024))

        @pytest.mark.no_leaks(warmup=1, runs=4)
        def test_clean():
            scratch = [bytearray(64 * 1024) for _ in range(4)]
            assert len(scratch) == 4
        """
    )
    result = runner.sub()
    result.assert_outcomes(passed=1, failed=1)
    [leak] = runner.verdicts(result)
    # 64 KiB a run, give or take the allocator's few bytes of bookkeeping.
    assert re.fullmatch(
        r"memwatch leak: malloc grows \+6[34]\.\d KiB/run(; .*)? over \d+ runs after 2 warmup",
        leak[0],
    ), leak
    assert re.match(r"(malloc: )?95% CI \+6", leak[1]), leak
    assert leak[-1] == "still growing when the 1 s budget ran out", leak
    # The leak was re-measured under tracemalloc and the report names the line.
    attribution = runner.report_section(result, "test_leaky", "memwatch attribution")
    assert any(
        re.search(r"test_leaks\.py:7: LEAK\.append\(bytearray\(64 \* 1024\)\)$", a)
        for a in attribution
    ), attribution


def test_no_leaks_resources(pytester: pytest.Pytester, runner: Runner) -> None:
    pytester.makepyfile(
        test_fds="""
        import os
        import pytest

        FDS = []

        @pytest.mark.no_leaks(warmup=1, runs=3)
        def test_leaks_a_descriptor():
            FDS.append(os.open(os.devnull, os.O_RDONLY))

        @pytest.mark.no_leaks(warmup=1, runs=3)
        def test_closes_its_descriptor():
            os.close(os.open(os.devnull, os.O_RDONLY))
        """
    )
    result = runner.sub("--memwatch-trace=0")
    result.assert_outcomes(passed=1, failed=1)
    [leak] = runner.verdicts(result)
    assert leak[0].startswith("memwatch leak: fds grows +1.0 fds/run over "), leak
    assert leak[1] == "95% CI +1.0 fds..+1.0 fds", leak


def test_max_growth_and_max_memory_stacked(pytester: pytest.Pytester, runner: Runner) -> None:
    pytester.makepyfile(
        test_stacked="""
        import pytest

        LEAK = []

        @pytest.mark.max_growth("256 KiB")
        @pytest.mark.max_memory("20 MiB")
        def test_breaks_both():
            LEAK.append(bytearray(b"\\x01") * (1024 * 1024))
            burst = bytearray(b"\\x01") * (40 * 1024 * 1024)
            del burst

        @pytest.mark.max_growth("256 KiB")
        @pytest.mark.max_memory("20 MiB")
        def test_breaks_only_the_peak():
            burst = bytearray(b"\\x01") * (40 * 1024 * 1024)
            del burst

        @pytest.mark.max_growth(16)
        @pytest.mark.max_memory(200)
        def test_within_both():
            LEAK.append(bytearray(b"\\x01") * (1024 * 1024))
        """
    )
    result = runner.sub("--memwatch-trace=0")
    result.assert_outcomes(passed=1, failed=2)
    out = result.stdout.lines
    both = out.index(next(line for line in out if re.match(r"^_+ test_breaks_both _+$", line)))
    assert out[both + 1] == (
        "memwatch max_growth: 1.0 MiB left behind per call, over the limit of 256.0 KiB"
    )
    assert out[both + 2].startswith("memwatch max_memory: peak ")
    assert out[both + 2].endswith(" over the limit of 20.0 MiB")
    only = out.index(
        next(line for line in out if re.match(r"^_+ test_breaks_only_the_peak _+$", line))
    )
    assert out[only + 1].startswith("memwatch max_memory: peak ")
    assert not out[only + 2].startswith("memwatch max_growth")


def test_memwatch_skip(pytester: pytest.Pytester, runner: Runner) -> None:
    pytester.makepyfile(
        test_skip="""
        import pytest

        LEAK = []

        @pytest.mark.memwatch_skip("spawns a JVM")
        def test_opted_out():
            LEAK.append(bytearray(b"\\x01") * (1024 * 1024))

        @pytest.mark.memwatch_skip
        @pytest.mark.max_growth("1 KiB")
        def test_opted_out_despite_a_budget():
            LEAK.append(bytearray(b"\\x01") * (1024 * 1024))

        def test_measured():
            LEAK.append(bytearray(b"\\x01") * (1024 * 1024))
        """
    )
    result = runner.sub("--memwatch", "--memwatch-max-growth=64 KiB", "-vv", "--memwatch-trace=0")
    result.assert_outcomes(passed=2, failed=1)
    section = runner.section(result)
    assert section[0].startswith("memwatch: 1 test measured, 1 failed memory verdict, ")
    assert not any("test_opted_out" in line for line in section)
    assert "FAILED (memwatch) test_skip.py::test_measured" in result.stdout.str()


SOAK_SUITE = """
    import pytest

    @pytest.mark.soak("1s", interval="0.5s")
    def test_overnight():
        pass

    def test_quick():
        pass
"""


def test_soak_is_skipped_unless_asked_for(pytester: pytest.Pytester, runner: Runner) -> None:
    pytester.makepyfile(test_soak=SOAK_SUITE)
    result = runner.sub("-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(
        ["SKIPPED [[]1[]] test_soak.py:3: soak test: run with --memwatch-soak or -m soak"]
    )


@pytest.mark.parametrize("args", [["--memwatch-soak"], ["-m", "soak"]], ids=["option", "-m"])
def test_soak_runs_when_asked_for(
    pytester: pytest.Pytester, runner: Runner, args: list[str]
) -> None:
    pytester.makepyfile(test_soak=SOAK_SUITE)
    result = runner.sub(*args)
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed") == (1 if args[0] == "-m" else 2), outcomes
    assert "skipped" not in outcomes


# -- validation (in process: nothing is measured) ------------------------------------

BAD_MARKERS = """
    import pytest

    @pytest.mark.max_growth("ten megs")
    def test_words():
        pass

    @pytest.mark.max_growth(-5)
    def test_negative():
        pass

    @pytest.mark.max_growth([1, 2])
    def test_list():
        pass

    @pytest.mark.max_growth(10, size=3)
    def test_unknown_keyword():
        pass

    @pytest.mark.max_growth(10, runs=0)
    def test_zero_runs():
        pass

    @pytest.mark.no_leaks(warmup=-1)
    def test_negative_warmup():
        pass

    class TestGrouped:
        pytestmark = pytest.mark.max_memory("huge")

        def test_inherits_a_bad_class_marker(self):
            pass

    def test_unmarked():
        pass
"""


def test_bad_markers_fail_their_own_test_at_setup(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makepyfile(test_bad=BAD_MARKERS)
    result = runner.inproc()
    result.assert_outcomes(passed=1, errors=7)
    out = result.stdout.lines
    for name in (
        "test_words",
        "test_negative",
        "test_list",
        "test_unknown_keyword",
        "test_zero_runs",
        "test_negative_warmup",
        "test_inherits_a_bad_class_marker",
    ):
        assert any(re.fullmatch(rf"_+ ERROR at setup of (\w+\.)?{name} _+", line) for line in out)
    expected = [
        "memwatch: test_bad.py::test_words: bad marker @pytest.mark.max_growth('ten megs'): "
        f"limit='ten megs': cannot read 'ten megs' as a size; {SIZE_USE}. " + MAX_GROWTH_EXPECTED,
        "memwatch: test_bad.py::test_negative: bad marker @pytest.mark.max_growth(-5): "
        f"limit=-5: expected a non-negative size, got -5; {SIZE_USE}. " + MAX_GROWTH_EXPECTED,
        "memwatch: test_bad.py::test_list: bad marker @pytest.mark.max_growth([1, 2]): "
        f"limit=[1, 2]: expected a size, got list [1, 2]; {SIZE_USE}. " + MAX_GROWTH_EXPECTED,
        "memwatch: test_bad.py::test_unknown_keyword: bad marker "
        "@pytest.mark.max_growth(10, size=3): unknown keyword argument(s) size; "
        "known: compare_fail, limit, runs, warmup. " + MAX_GROWTH_EXPECTED,
        "memwatch: test_bad.py::test_zero_runs: bad marker @pytest.mark.max_growth(10, runs=0): "
        "runs=0: must be 1 or more, e.g. runs=3. " + MAX_GROWTH_EXPECTED,
        "memwatch: test_bad.py::test_negative_warmup: bad marker "
        "@pytest.mark.no_leaks(warmup=-1): warmup=-1: must be 0 or more, e.g. warmup=3. "
        + NO_LEAKS_EXPECTED,
        "memwatch: test_bad.py::TestGrouped::test_inherits_a_bad_class_marker: bad marker "
        "@pytest.mark.max_memory('huge'): limit='huge': cannot read 'huge' as a size; "
        f"{SIZE_USE}. Expected max_memory(limit, *, compare_fail=()), "
        "e.g. @pytest.mark.max_memory(200). " + OPT_OUT,
    ]
    for message in expected:
        assert message in out, message
    assert "INTERNALERROR" not in result.stdout.str()


def test_bad_marker_errors_with_the_flag_too(pytester: pytest.Pytester, runner: Runner) -> None:
    pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.no_leaks(runs=1)
        def test_one_run():
            pass
        """
    )
    # --memwatch-trace=0 only to show other options do not change the outcome.
    result = runner.inproc("--memwatch-trace=0")
    result.assert_outcomes(errors=1)
    assert (
        "memwatch: test_bad.py::test_one_run: bad marker @pytest.mark.no_leaks(runs=1): "
        "runs=1: must be 2 or more, e.g. runs=3. " + NO_LEAKS_EXPECTED
    ) in result.stdout.lines


def test_markers_are_listed(runner: Runner) -> None:
    result = runner.inproc("--markers")
    assert result.ret == 0
    listed = [line for line in result.stdout.lines if line.startswith("@pytest.mark.")]
    for name in ("max_growth", "max_memory", "no_leaks", "memwatch_skip", "soak"):
        assert any(line.startswith(f"@pytest.mark.{name}(") for line in listed), name
    assert (
        "@pytest.mark.max_growth(limit, *, warmup=0, runs=1, compare_fail=()): memory the test "
        "leaves behind per call must stay under limit (bare number = MiB; 50 (MiB) or "
        '"512 KiB", "2MB", "1.5 GiB", "64B"). '
        'Example: @pytest.mark.max_growth("512 KiB", warmup=1, runs=3)'
    ) in listed


def test_markers_pass_strict_markers(pytester: pytest.Pytester, runner: Runner) -> None:
    pytester.makepyfile(
        test_strict="""
        import pytest

        @pytest.mark.memwatch_skip("not measured")
        @pytest.mark.soak
        def test_registered():
            pass
        """
    )
    result = runner.inproc("--strict-markers", "--collect-only", "-q")
    assert result.ret == 0, result.stdout.str()


def test_markers_under_memwatch_skip_are_still_validated(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makepyfile(
        test_skip="""
        import pytest

        @pytest.mark.memwatch_skip(5)
        def test_bad_reason():
            pass

        @pytest.mark.memwatch_skip("spawns a JVM")
        @pytest.mark.max_growth("ten megs")
        def test_bad_budget_under_skip():
            pass

        @pytest.mark.memwatch_skip("spawns a JVM")
        def test_fine():
            pass
        """
    )
    result = runner.inproc()
    result.assert_outcomes(passed=1, errors=2)
    assert (
        "memwatch: test_skip.py::test_bad_reason: bad marker @pytest.mark.memwatch_skip(5): "
        "reason=5: expected a string. Expected memwatch_skip(reason=''), "
        'e.g. @pytest.mark.memwatch_skip("spawns a JVM"). ' + OPT_OUT
    ) in result.stdout.lines
    assert (
        "memwatch: test_skip.py::test_bad_budget_under_skip: bad marker "
        "@pytest.mark.max_growth('ten megs'): limit='ten megs': cannot read 'ten megs' as a "
        f"size; {SIZE_USE}. Expected max_growth(limit, *, warmup=0, runs=1, compare_fail=()), "
        'e.g. @pytest.mark.max_growth("512 KiB", warmup=1, runs=3). '
        "memwatch_skip does not exempt a test from marker checks (a typo would surface only "
        "once the opt-out is removed): fix the marker, or remove it from this test, its class "
        "or its module."
    ) in result.stdout.lines
