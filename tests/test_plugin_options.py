"""Bad option, ini and environment values: one usage error naming the option and its source.

Nothing is measured when configuration fails, so these run in process.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Runner

SIZE_USE = 'use 50 (MiB) or "512 KiB", "2MB", "1.5 GiB", "64B"'


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    return pytester


def usage_error(result: pytest.RunResult) -> str:
    assert result.ret == pytest.ExitCode.USAGE_ERROR == 4
    errors = [line for line in result.stderr.lines if line.startswith("ERROR: ")]
    assert len(errors) == 1, result.stderr.lines
    assert "INTERNALERROR" not in result.stderr.str() + result.stdout.str()
    return errors[0]


def test_bad_command_line_value(suite: pytest.Pytester, runner: Runner) -> None:
    result = runner.inproc("--memwatch-max-growth=lots")
    assert usage_error(result) == (
        "ERROR: memwatch: bad value 'lots' for --memwatch-max-growth (from command line option "
        f"--memwatch-max-growth): cannot read 'lots' as a size; {SIZE_USE}."
    )


def test_bad_repeat_value(suite: pytest.Pytester, runner: Runner) -> None:
    result = runner.inproc("--memwatch-repeat=2:0")
    assert usage_error(result) == (
        "ERROR: memwatch: bad value '2:0' for --memwatch-repeat (from command line option "
        "--memwatch-repeat): RUNS must be from 1 to 1000, e.g. 2:5. Expected WARMUP:RUNS, e.g. 2:5."
    )


def collected(result: pytest.RunResult) -> list[str]:
    return [line for line in result.stdout.lines if ".py::" in line and " " not in line]


def test_a_test_path_after_repeat_is_a_test_path(pytester: pytest.Pytester) -> None:
    # argparse gives an optional-value option the next word: a test path there
    # means the option without a value, then the path.
    pytester.makepyfile(
        test_one="def test_one():\n    pass\n", test_two="def test_two():\n    pass\n"
    )
    for args in (("test_one.py",), ("test_one.py::test_one",), ("test_one.py", "-p", "no:xdist")):
        result = pytester.runpytest_inprocess("--co", "-q", "--memwatch-repeat", *args)
        assert result.ret == 0, result.stdout.lines
        assert collected(result) == ["test_one.py::test_one"]


def test_repeat_then_a_path_repeats_that_path(pytester: pytest.Pytester, runner: Runner) -> None:
    pytester.makepyfile(
        test_one="def test_one():\n    pass\n", test_two="def test_two():\n    pass\n"
    )
    result = runner.sub("--memwatch-repeat", "test_one.py", "--memwatch-json=out.json")
    assert result.ret == 0, result.stdout.lines
    result.assert_outcomes(passed=1)
    doc = json.loads(pytester.path.joinpath("out.json").read_text())
    (test,) = [t for t in doc["tests"] if t.get("measured", True)]
    assert test["nodeid"] == "test_one.py::test_one"
    assert doc["run"]["settings"]["repeat"] is not None


def test_a_directory_after_repeat_is_a_test_path(pytester: pytest.Pytester) -> None:
    pytester.mkpydir("pkg")
    pytester.path.joinpath("pkg", "test_in.py").write_text("def test_in():\n    pass\n")
    pytester.makepyfile(test_out="def test_out():\n    pass\n")
    result = pytester.runpytest_inprocess("--co", "-q", "--memwatch-repeat", "pkg")
    assert collected(result) == ["pkg/test_in.py::test_in"]


def test_repeat_value_before_a_path_is_still_its_value(
    suite: pytest.Pytester, runner: Runner
) -> None:
    result = runner.inproc("--memwatch-repeat", "2:0", "test_one.py")
    assert usage_error(result).startswith("ERROR: memwatch: bad value '2:0' for --memwatch-repeat")


def test_a_word_after_repeat_that_is_no_path_is_still_a_bad_value(
    suite: pytest.Pytester, runner: Runner
) -> None:
    result = runner.inproc("--memwatch-repeat", "lots")
    assert usage_error(result) == (
        "ERROR: memwatch: bad value 'lots' for --memwatch-repeat (from command line "
        "option --memwatch-repeat): expected WARMUP:RUNS, e.g. 2:5."
    )


def test_a_test_path_after_compare_is_a_test_path(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_one="def test_one():\n    pass\n", test_two="def test_two():\n    pass\n"
    )
    saved = pytester.runpytest_inprocess("--memwatch", "--memwatch-save=base")
    assert saved.ret == 0
    result = pytester.runpytest_inprocess("--memwatch", "--memwatch-compare", "test_one.py")
    assert result.ret == 0, result.stdout.lines
    result.assert_outcomes(passed=1)
    listed = pytester.runpytest_inprocess("--co", "-q", "--memwatch-compare", "test_one.py")
    assert collected(listed) == ["test_one.py::test_one"]
    out = result.stdout.str()
    # Compared with the latest saved run, not with a run named "test_one.py".
    assert "compared with 0001_base" in out


def test_bad_repeat_budget_value(
    suite: pytest.Pytester, runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = runner.inproc("--memwatch-repeat", "--memwatch-repeat-budget=a while")
    assert usage_error(result) == (
        "ERROR: memwatch: bad value 'a while' for --memwatch-repeat-budget (from command line "
        'option --memwatch-repeat-budget): expected a duration or a multiple, e.g. "1s", '
        '"500ms", "30s" or "20x" (20 times the first run).'
    )
    monkeypatch.setenv("PYTEST_MEMWATCH_REPEAT_BUDGET", "-3x")
    result = runner.inproc("--memwatch-repeat")
    assert usage_error(result) == (
        "ERROR: memwatch: bad value '-3x' for --memwatch-repeat-budget (from environment "
        "variable PYTEST_MEMWATCH_REPEAT_BUDGET): expected a positive multiple before x, e.g. "
        '"1s", "500ms", "30s" or "20x" (20 times the first run).'
    )


def test_bad_trace_value(suite: pytest.Pytester, runner: Runner) -> None:
    result = runner.inproc("--memwatch-trace=deep")
    assert usage_error(result) == (
        "ERROR: memwatch: bad value 'deep' for --memwatch-trace (from command line option "
        "--memwatch-trace): expected a number of frames from 0 (no attribution) to 100, e.g. 10. "
        "Expected a number of frames, e.g. 10."
    )


def test_bad_environment_value(
    suite: pytest.Pytester, runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_MEMWATCH", "maybe")
    result = runner.inproc()
    assert usage_error(result) == (
        "ERROR: memwatch: bad value 'maybe' for --memwatch (from environment variable "
        "PYTEST_MEMWATCH): expected true/false (also 1/0, yes/no, on/off). "
        "Expected true or false."
    )


def test_bad_environment_size(
    suite: pytest.Pytester, runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_MEMWATCH_MAX_GROWTH", "ten megs")
    result = runner.inproc()
    assert usage_error(result) == (
        "ERROR: memwatch: bad value 'ten megs' for --memwatch-max-growth (from environment "
        f"variable PYTEST_MEMWATCH_MAX_GROWTH): cannot read 'ten megs' as a size; {SIZE_USE}."
    )


def test_bad_ini_value(suite: pytest.Pytester, runner: Runner) -> None:
    suite.makeini("[pytest]\nmemwatch_trace = -1\n")
    result = runner.inproc()
    assert usage_error(result) == (
        "ERROR: memwatch: bad value '-1' for --memwatch-trace (from ini key memwatch_trace): "
        "expected a number of frames from 0 (no attribution) to 100, e.g. 10. "
        "Expected a number of frames, e.g. 10."
    )


def test_bad_ini_flag(suite: pytest.Pytester, runner: Runner) -> None:
    suite.makeini("[pytest]\nmemwatch = sometimes\n")
    result = runner.inproc()
    assert usage_error(result) == (
        "ERROR: memwatch: bad value 'sometimes' for --memwatch (from ini key memwatch): "
        "expected true/false (also 1/0, yes/no, on/off). Expected true or false."
    )


def test_a_good_command_line_value_shadows_a_bad_ini_value(
    suite: pytest.Pytester, runner: Runner
) -> None:
    suite.makeini("[pytest]\nmemwatch_trace = -1\n")
    result = runner.inproc("--memwatch-trace=5", "--collect-only", "-q")
    assert result.ret == 0, result.stderr.str()


def test_help_lists_every_option_with_its_environment_variable(runner: Runner) -> None:
    result = runner.inproc("--help")
    assert result.ret == 0
    text = result.stdout.str()
    assert "memory measurement and leak verdicts (pytest-memwatch):" in text
    for option in (
        "--memwatch ",
        "--memwatch-repeat",
        "--memwatch-max-growth",
        "--memwatch-trace",
        "--memwatch-json",
        "--memwatch-html",
        "--memwatch-soak",
    ):
        assert option in text, option
    assert "[env PYTEST_MEMWATCH_REPEAT]" in text
    for key in ("memwatch (string)", "memwatch_max_growth (string)", "memwatch_repeat (string)"):
        assert key in text, key
