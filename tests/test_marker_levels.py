"""End to end: the closest marker wins, a ``pytest.param`` case's marks closest of all;
and an ``xfail`` test that passes is judged.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_memwatch.base.units import MiB
from pytest_memwatch.config.markers import MarkerError
from pytest_memwatch.config.settings import Settings
from pytest_memwatch.engine import MarkCall, build_spec
from tests.conftest import Runner

# A marker level: a valid budget in MiB, or a value no size parser accepts.
LEVEL = st.one_of(st.integers(min_value=1, max_value=10_000), st.just("lots"))


@given(st.lists(st.tuples(st.sampled_from(["max_growth", "max_memory"]), LEVEL), min_size=1))
def test_build_spec_takes_the_closest_and_checks_every_level(
    levels: list[tuple[str, object]],
) -> None:
    calls = [MarkCall(name, (value,), {}) for name, value in levels]
    if any(value == "lots" for _, value in levels):
        with pytest.raises(MarkerError, match="'lots'"):
            build_spec("t.py::test_a[case]", calls, Settings())
        return
    spec = build_spec("t.py::test_a[case]", calls, Settings())
    for name in ("max_growth", "max_memory"):
        closest = next((v for n, v in levels if n == name), None)
        got = getattr(spec, name)
        if closest is None:
            assert got is None
        else:
            assert got["limit"] == closest * MiB

LEVELS = """
    import pytest

    HELD = []

    pytestmark = pytest.mark.max_memory(3)

    @pytest.mark.max_growth(50)
    @pytest.mark.parametrize("n", [
        pytest.param(1, id="case-budget", marks=pytest.mark.max_growth("1 KiB")),
        pytest.param(2, id="function-budget"),
    ])
    def test_growth(n):
        HELD.append(bytearray(4 * 1024 * 1024))

    @pytest.mark.max_memory(50)
    @pytest.mark.parametrize("limit", [
        pytest.param(5, id="case-tighter", marks=pytest.mark.max_memory(5)),
        pytest.param(50, id="function"),
    ])
    def test_peak(limit):
        data = bytearray(20 * 1024 * 1024)
        del data

    class TestClassLevel:
        pytestmark = pytest.mark.max_memory(50)

        def test_class_over_module(self):
            data = bytearray(20 * 1024 * 1024)
            del data

    @pytest.mark.parametrize("n", [
        pytest.param(1, id="case-no-leaks", marks=pytest.mark.no_leaks(warmup=2, runs=3)),
    ])
    @pytest.mark.no_leaks(warmup=1, runs=9)
    def test_leak_runs(n):
        pass
"""


def verdicts(pytester: pytest.Pytester) -> dict[str, dict[str, dict[str, object]]]:
    doc = json.loads((pytester.path / "r.json").read_text())
    return {
        t["nodeid"].split("::", 1)[-1]: {v["kind"]: v for v in t["verdicts"]} | {"_": t}
        for t in doc["tests"]
    }


def test_case_marker_beats_function_class_and_module(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makepyfile(test_levels=LEVELS)
    result = runner.sub("--memwatch", "--memwatch-json=r.json", "-p", "no:randomly")
    found = verdicts(pytester)
    # The 1 KiB per-case budget, not the function's 50 MiB, judges the case.
    case = found["test_growth[case-budget]"]["max_growth"]
    assert not case["passed"] and case["limit"] == 1024, case["message"]
    fn = found["test_growth[function-budget]"]["max_growth"]
    assert fn["passed"] and fn["limit"] == 50 * 1024 * 1024
    # The per-case max_memory(5) wins over the function's 50, which wins over the module's 3.
    tight = found["test_peak[case-tighter]"]["max_memory"]
    assert not tight["passed"] and tight["limit"] == 5 * 1024 * 1024, tight["message"]
    loose = found["test_peak[function]"]["max_memory"]
    assert loose["passed"] and loose["limit"] == 50 * 1024 * 1024, loose["message"]
    cls = found["TestClassLevel::test_class_over_module"]["max_memory"]
    assert cls["passed"] and cls["limit"] == 50 * 1024 * 1024
    # no_leaks from the case: 2 warmup runs, not the function's 1.
    runs = found["test_leak_runs[case-no-leaks]"]["_"]["runs"]
    assert sum(r["warmup"] for r in runs) == 2
    # test_growth[function-budget] keeps its 4 MiB under the function's budget
    # but peaks over the module's max_memory(3), which nothing closer overrides.
    assert not found["test_growth[function-budget]"]["max_memory"]["passed"]
    result.assert_outcomes(passed=3, failed=3)


def test_bad_per_case_value_errors_that_case_at_setup(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makepyfile(test_bad="""
        import pytest

        @pytest.mark.max_growth(50)
        @pytest.mark.parametrize("n", [
            pytest.param(1, id="bad", marks=pytest.mark.max_growth("lots")),
            pytest.param(2, id="good"),
        ])
        def test_case(n):
            pass
    """)
    result = runner.inproc("--memwatch", "-p", "no:randomly")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([
        "*ERROR at setup of test_case[[]bad[]]*",
        "memwatch: test_bad.py::test_case[[]bad[]]: bad marker @pytest.mark.max_growth('lots'):*",
    ])


XFAIL = """
    import pytest

    HELD = []

    @pytest.mark.xfail(reason="flaky upstream")
    @pytest.mark.no_leaks(warmup=1, runs=5)
    def test_xpass_leaks():
        HELD.append(bytearray(100 * 1024))

    @pytest.mark.xfail(reason="flaky upstream")
    @pytest.mark.no_leaks(warmup=1, runs=5)
    def test_xpass_clean():
        pass

    @pytest.mark.xfail(raises=ValueError, reason="bad input")
    @pytest.mark.no_leaks(warmup=1, runs=5)
    def test_xpass_leaks_expecting_valueerror():
        HELD.append(bytearray(100 * 1024))

    @pytest.mark.xfail(reason="known bug")
    @pytest.mark.no_leaks(warmup=1, runs=5)
    def test_xfails():
        assert False
"""


def test_xfail_test_that_passes_is_judged(pytester: pytest.Pytester, runner: Runner) -> None:
    pytester.makepyfile(test_xfail=XFAIL)
    result = runner.sub(
        "--memwatch", "--memwatch-json=r.json", "--memwatch-trace=0", "-rxXf", "-p", "no:randomly"
    )
    # The leak is the failure an xfail test expects: XFAIL, with the verdict as
    # its notice; the clean one stays XPASS; raises=ValueError expects no memory
    # verdict, so that one fails.
    result.assert_outcomes(xfailed=2, xpassed=1, failed=1)
    result.stdout.fnmatch_lines([
        "FAILED (memwatch) test_xfail.py::test_xpass_leaks_expecting_valueerror*",
    ])
    found = verdicts(pytester)
    leaky = found["test_xpass_leaks"]
    assert not leaky["leak"]["passed"] and leaky["_"]["outcome"] == "xfailed"
    assert len(leaky["_"]["runs"]) > 2
    clean = found["test_xpass_clean"]
    assert clean["leak"]["passed"] and clean["_"]["outcome"] == "passed"
    assert found["test_xpass_leaks_expecting_valueerror"]["_"]["outcome"] == "failed"
    # A test that failed as expected ran only once and is not judged.
    assert found["test_xfails"]["_"]["verdicts"] == []
    summary = runner.section(result)
    assert "2 failed memory verdicts" in summary[0]
    xfail_line = "XFAIL test_xfail.py::test_xpass_leaks - leak: "
    assert any(line.startswith(xfail_line) for line in summary)
    assert any(
        line.startswith("FAILED test_xfail.py::test_xpass_leaks_expecting_valueerror - leak: ")
        for line in summary
    )


def test_case_marker_and_xfail_verdicts_under_xdist(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(test_x="""
        import pytest

        HELD = []

        @pytest.mark.xfail(reason="flaky upstream")
        @pytest.mark.no_leaks(warmup=1, runs=5)
        def test_xpass_leaks():
            HELD.append(bytearray(100 * 1024))

        @pytest.mark.max_growth(50)
        @pytest.mark.parametrize("n", [
            pytest.param(1, id="case", marks=pytest.mark.max_growth("1 KiB")), 2,
        ])
        def test_case(n):
            HELD.append(bytearray(1024 * 1024))
    """)
    result = runner.sub("--memwatch", "--memwatch-trace=0", "-n", "2", "-rxf")
    result.assert_outcomes(passed=1, failed=1, xfailed=1)
    result.stdout.fnmatch_lines([
        "XFAIL test_x.py::test_xpass_leaks - flaky upstream",
        "FAILED (memwatch) test_x.py::test_case[[]case[]] - memwatch max_growth: *",
    ])
