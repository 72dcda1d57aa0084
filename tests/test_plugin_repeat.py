"""--memwatch-repeat, --memwatch-max-growth and --memwatch-trace end to end (subprocess)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Runner

SMALL_SUITE = """
    LEAK = []

    def test_leaky():
        LEAK.append(bytearray(64 * 1024))

    def test_clean():
        scratch = [bytearray(64 * 1024) for _ in range(4)]
        assert len(scratch) == 4
"""


def test_repeat_flags_the_leaky_test_and_passes_the_clean_one(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makepyfile(test_small=SMALL_SUITE)
    # No value: the default 2:5. The option goes last because its value is optional.
    result = runner.sub("test_small.py", "--memwatch-repeat")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["test_small.py M.*"])
    [leak] = runner.verdicts(result, "memwatch leak:")
    # 64 KiB a run, give or take the allocator's few bytes of bookkeeping: a
    # headline, the trend's interval and last runs below it.
    assert re.fullmatch(
        r"memwatch leak: malloc grows \+6[34]\.\d KiB/run(; .*)? over \d+ runs after 2 warmup",
        leak[0],
    ), leak
    assert re.match(r"(malloc: )?95% CI \+6", leak[1]), leak
    assert re.match(r"(malloc: )?last runs \+6", leak[2]), leak
    # A steady climb keeps being measured until the time budget is spent.
    assert leak[-1] == "still growing when the 1 s budget ran out", leak
    attribution = runner.report_section(result, "test_leaky", "memwatch attribution")
    assert attribution, result.stdout.str()
    assert attribution[0].startswith("traced growth over 3 runs: ")
    assert "top allocation sites (most recent call first):" in attribution
    # Names the line that leaks, with its source.
    assert any(
        re.search(r"test_small\.py:4: LEAK\.append\(bytearray\(64 \* 1024\)\)$", line)
        for line in attribution
    ), attribution
    assert runner.report_section(result, "test_clean", "memwatch attribution") == []
    section = runner.section(result)
    assert section[0].startswith("memwatch: 2 tests measured (2 repeated), 1 failed memory verdict")
    assert re.match(
        r"FAILED test_small\.py::test_leaky - leak: malloc grows \+6[34]\.\d KiB", section[1]
    )


def test_repeat_with_explicit_counts_and_trace_depth(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makepyfile(test_small=SMALL_SUITE)
    result = runner.sub("--memwatch-repeat=1:3", "--memwatch-trace=3")
    result.assert_outcomes(passed=1, failed=1)
    [leak] = runner.verdicts(result, "memwatch leak:")
    assert leak[0].endswith(" after 1 warmup"), leak
    assert leak[-1] == "still growing when the 1 s budget ran out", leak
    attribution = runner.report_section(result, "test_leaky", "memwatch attribution")
    assert attribution[0].endswith("(tracemalloc, 3 frames)")


def test_trace_zero_gives_no_attribution(pytester: pytest.Pytester, runner: Runner) -> None:
    pytester.makepyfile(test_small=SMALL_SUITE)
    result = runner.sub("--memwatch-repeat=1:3", "--memwatch-trace=0")
    result.assert_outcomes(passed=1, failed=1)
    assert any(line.startswith("memwatch leak:") for line in result.stdout.lines)
    assert "memwatch attribution" not in result.stdout.str()


SCOPED = """
    import os

    import pytest

    LEAK = []
    LOG = os.path.join(os.path.dirname(__file__), "setups.log")

    def log(what):
        with open(LOG, "a") as f:
            f.write(what + "\\n")

    @pytest.fixture(scope="session")
    def database():
        log("session-setup")
        yield
        log("session-teardown")

    @pytest.fixture(scope="module")
    def connection(database):
        log("module-setup")
        yield
        log("module-teardown")

    @pytest.fixture
    def transaction(connection):
        log("function-setup")
        yield
        log("function-teardown")

    def test_clean(transaction):
        log("call-clean")

    def test_leaky(transaction):
        log("call-leaky")
        LEAK.append(bytearray(64 * 1024))

    def test_fails(connection):
        log("call-fails")
        assert 1 == 2
"""


def test_repeat_sets_up_module_and_session_fixtures_once(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makepyfile(test_scoped=SCOPED)
    result = runner.sub("--memwatch-repeat=1:3", "--memwatch-trace=0")
    result.assert_outcomes(passed=1, failed=2)
    events = (pytester.path / "setups.log").read_text().split()
    assert events.count("session-setup") == 1
    assert events.count("session-teardown") == 1
    assert events.count("module-setup") == 1
    assert events.count("module-teardown") == 1
    # Higher-scoped fixtures stay up for the whole module, around every repetition.
    assert events[0:2] == ["session-setup", "module-setup"]
    assert events[-2:] == ["module-teardown", "session-teardown"]
    # The function fixture runs around every repetition of the two tests using it.
    clean, leaky = events.count("call-clean"), events.count("call-leaky")
    assert clean >= 4 and leaky >= 4
    assert events.count("function-setup") == events.count("function-teardown") == clean + leaky


def test_a_failing_test_is_an_ordinary_failure_and_is_not_repeated(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makepyfile(test_scoped=SCOPED)
    result = runner.sub("--memwatch-repeat=1:3", "--memwatch-trace=0")
    result.assert_outcomes(passed=1, failed=2)
    events = (pytester.path / "setups.log").read_text().split()
    assert events.count("call-fails") == 1
    out = result.stdout.str()
    assert "FAILED test_scoped.py::test_fails - assert 1 == 2" in result.stdout.lines
    assert "FAILED (memwatch) test_scoped.py::test_fails" not in out
    assert "FAILED (memwatch) test_scoped.py::test_leaky" in out
    # Its traceback is pytest's own, not a memwatch verdict.
    assert ">       assert 1 == 2" in result.stdout.lines
    section = runner.section(result)
    assert not any(line.startswith("FAILED test_scoped.py::test_fails") for line in section)


def test_a_test_failing_on_a_later_repetition_is_reported_once(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makepyfile(
        test_flaky="""
        CALLS = []

        def test_fails_on_third_call():
            CALLS.append(1)
            assert len(CALLS) < 3, "third call"
        """
    )
    result = runner.sub("--memwatch-repeat=2:5", "--memwatch-trace=0")
    result.assert_outcomes(failed=1)
    headers = [line for line in result.stdout.lines if "test_fails_on_third_call _" in line]
    assert len(headers) == 1, headers
    assert result.stdout.lines.count("E       AssertionError: third call") == 1
    assert "memwatch leak" not in result.stdout.str()


BUDGET_SUITE = """
    import pytest

    LEAK = []

    def test_unmarked_leaks_a_mebibyte():
        LEAK.append(bytearray(b"\\x01") * (1024 * 1024))

    def test_unmarked_clean():
        assert [0] * 100

    @pytest.mark.max_growth("4 MiB")
    def test_marker_raises_the_budget():
        LEAK.append(bytearray(b"\\x01") * (1024 * 1024))

    @pytest.mark.max_growth("64 KiB")
    def test_marker_lowers_the_budget():
        LEAK.append(bytearray(b"\\x01") * (128 * 1024))
"""


def test_max_growth_option_is_a_default_budget_a_marker_overrides(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makepyfile(test_budget=BUDGET_SUITE)
    result = runner.sub("--memwatch-max-growth=256 KiB", "--memwatch-trace=0")
    result.assert_outcomes(passed=2, failed=2)
    out = result.stdout.str()
    assert "FAILED (memwatch) test_budget.py::test_unmarked_leaks_a_mebibyte" in out
    assert "FAILED (memwatch) test_budget.py::test_marker_lowers_the_budget" in out
    failures = [line for line in result.stdout.lines if line.startswith("memwatch max_growth:")]
    assert len(failures) == 2
    assert failures[0] == (
        "memwatch max_growth: 1.0 MiB left behind per call, over the limit of 256.0 KiB"
    )
    # 128 KiB plus the allocator's own bytes; or, read through RSS, one page more
    # when the chunk straddles a page the heap had not touched yet.
    assert re.fullmatch(
        r"memwatch max_growth: (128\.\d|132\.0) KiB left behind per call, "
        r"over the limit of 64\.0 KiB",
        failures[1],
    ), failures[1]
    # Every test is measured under a default budget, marked or not.
    assert runner.section(result)[0].startswith("memwatch: 4 tests measured, 2 failed")


def test_max_growth_budget_from_the_ini(pytester: pytest.Pytester, runner: Runner) -> None:
    pytester.makepyfile(test_budget=BUDGET_SUITE)
    pytester.makeini("[pytest]\nmemwatch_max_growth = 256 KiB\nmemwatch_trace = 0\n")
    result = runner.sub()
    result.assert_outcomes(passed=2, failed=2)


def test_fixtures_over_higher_scoped_fixtures_are_not_a_leak(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    # pytest keeps a "finish the dependent" callback on the module fixture for every
    # set-up of a function fixture using it; repetitions must not read it as growth.
    pytester.makepyfile(
        test_layers="""
        import pytest

        @pytest.fixture(scope="session")
        def engine():
            yield "engine"

        @pytest.fixture(scope="module")
        def connection(engine):
            yield "connection"

        @pytest.fixture(scope="class")
        def schema(connection):
            yield "schema"

        @pytest.fixture
        def transaction(connection, engine):
            yield "transaction"

        @pytest.mark.no_leaks(warmup=1, runs=4)
        def test_uses_a_transaction(transaction):
            assert transaction == "transaction"

        class TestWithSchema:
            @pytest.mark.no_leaks(warmup=1, runs=4)
            def test_uses_schema_and_transaction(self, schema, transaction):
                assert schema == "schema"
        """
    )
    result = runner.sub("--memwatch-trace=0")
    result.assert_outcomes(passed=2)


def test_repeat_covers_unittest_test_cases(pytester: pytest.Pytester, runner: Runner) -> None:
    # TestCase tests never go through pytest_pyfunc_call; they must be repeated
    # and judged all the same, with setUpClass run once.
    pytester.makepyfile(
        test_cases="""
        import os
        import unittest

        LEAK = []
        LOG = os.path.join(os.path.dirname(__file__), "calls.log")

        def log(what):
            with open(LOG, "a") as f:
                f.write(what + "\\n")

        class TestStore(unittest.TestCase):
            @classmethod
            def setUpClass(cls):
                log("setUpClass")

            def setUp(self):
                log("setUp")

            def test_clean(self):
                self.assertEqual(sum([1, 2]), 3)

            def test_leaky(self):
                LEAK.append(bytearray(64 * 1024))
        """
    )
    result = runner.sub("--memwatch-repeat=1:3", "--memwatch-trace=0")
    result.assert_outcomes(passed=1, failed=1)
    assert "FAILED (memwatch) test_cases.py::TestStore::test_leaky" in result.stdout.str()
    calls = (pytester.path / "calls.log").read_text().split()
    assert calls.count("setUpClass") == 1
    assert calls.count("setUp") >= 8  # 1 + 3 runs of each test at least


EVIDENCE_SUITE = """
    import functools

    HELD = []
    COUNT = {"fill": 0, "tenth": 0, "late": 0}

    @functools.lru_cache(maxsize=32)
    def page(n):
        return bytes(1024)

    def test_cache_still_filling():
        COUNT["fill"] += 1
        page(COUNT["fill"])

    def test_leak_every_10th_call():
        COUNT["tenth"] += 1
        if COUNT["tenth"] % 10 == 4:
            HELD.append(bytes(8192))

    def test_late_init():
        COUNT["late"] += 1
        if COUNT["late"] == 4:
            HELD.append([bytes(64) for _ in range(200)])
"""


def test_repetition_by_evidence_within_the_time_budget(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makepyfile(test_evidence=EVIDENCE_SUITE)
    json_path = pytester.path / "r.json"
    result = runner.sub(f"--memwatch-json={json_path}", "--memwatch-trace=0", "--memwatch-repeat")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["test_evidence.py .M.*"])
    import json

    tests = {t["nodeid"].split("::")[1]: t for t in json.loads(json_path.read_text())["tests"]}
    leak = {n: next(v for v in t["verdicts"] if v["kind"] == "leak") for n, t in tests.items()}
    # The cache fills for 32 calls, far past the default 2 + 5 runs; it passes once level.
    filling = leak["test_cache_still_filling"]
    assert filling["passed"] and filling["details"]["stopped"] == "settled"
    assert filling["details"]["runs"] > 30
    # One step inside the default runs, the next after them: a staircase.
    tenth = leak["test_leak_every_10th_call"]
    assert not tenth["passed"]
    assert tenth["details"]["stopped"] == "budget"
    assert tenth["message"].endswith("(still growing when the 1 s budget ran out)")
    assert tenth["details"]["runs"] > 20
    late = leak["test_late_init"]
    assert late["passed"] and late["details"]["runs"] >= 11


def test_a_budget_spent_before_the_trend_settles_gives_no_verdict(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makepyfile(test_evidence=EVIDENCE_SUITE)
    # Ten runs judged, not five: the late step in blocks stays unsettled (it
    # needs twice the runs of level readings), while a few runs of pytest's own
    # malloc bookkeeping after the switch to exact runs (seen on CPython 3.13)
    # have level readings after them and cannot pass for a climb.
    result = runner.sub(
        "-k", "late_init", "--memwatch-trace=0", "--memwatch-repeat-budget=1ms",
        "--memwatch-repeat=2:10",
    )
    result.assert_outcomes(passed=1, deselected=2)
    section = runner.section(result)
    lines = [line for line in section if line.startswith("NO VERDICT ")]
    assert len(lines) == 1, section
    # The verdict is "no verdict" because the blocks still move. Whether RSS is
    # listed too depends on where glibc trims the heap when the runs switch from
    # screening to exact readings (the test's path length moves it): both are true.
    assert re.fullmatch(
        r"NO VERDICT test_evidence\.py::test_late_init - no verdict: blocks(, malloc)?(, rss)? still "
        r"changing after \d+ runs when the 1 ms budget ran out; give it more time "
        r"\(--memwatch-repeat-budget\) to decide",
        lines[0],
    ), lines[0]


def test_clean_unittest_and_class_fixture_tests_pass_on_every_pytest(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    # pytest 8.0 registers a fixture's finish again on its collector every time a
    # test requests it; repetitions keep the collectors, which read as growth.
    pytester.makepyfile(
        test_kinds="""
        import unittest
        import pytest

        @pytest.fixture(scope="class")
        def shared():
            return {"rows": [bytes(64) for _ in range(10)]}

        @pytest.fixture(scope="module")
        def per_module(shared_mod):
            return shared_mod

        @pytest.fixture(scope="module")
        def shared_mod():
            return [1, 2, 3]

        class TestWithClassFixture:
            def test_uses_it(self, shared, per_module):
                assert shared["rows"] and per_module

        class TestUnittestStyle(unittest.TestCase):
            @classmethod
            def setUpClass(cls):
                cls.table = [bytes(32) for _ in range(10)]

            def test_clean(self):
                self.assertEqual(sum(range(10)), 45)
        """
    )
    result = runner.sub("--memwatch-trace=0", "--memwatch-repeat")
    result.assert_outcomes(passed=2)
    assert runner.section(result)[0].startswith(
        "memwatch: 2 tests measured (2 repeated), 0 failed memory verdicts"
    )


def test_tmp_path_under_repetition_gives_every_run_one_directory_name(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    # pathlib interns the parts of a path; CPython 3.12 never frees interned
    # strings, so a new directory name per run read as +1 block a run. Each
    # run's directory goes before the next; the last one stays for inspection.
    pytester.makepyfile(
        test_files="""
        HELD = []

        def test_writes_a_file(tmp_path):
            (tmp_path / "data.txt").write_text("hello")
            assert (tmp_path / "data.txt").read_text() == "hello"

        def test_keeps_its_paths(tmp_path):
            HELD.append(tmp_path / "data.txt")
            HELD.append(bytes(256))
        """
    )
    base = pytester.path / "bt"
    result = runner.sub("--memwatch-repeat", "--memwatch-trace=0", f"--basetemp={base}")
    result.assert_outcomes(passed=1, failed=1)
    assert "FAILED (memwatch) test_files.py::test_keeps_its_paths" in result.stdout.str()
    dirs = sorted(p.name for p in base.iterdir() if not p.is_symlink())
    assert dirs == ["test_keeps_its_paths0", "test_writes_a_file0"], dirs
    assert (base / "test_writes_a_file0" / "data.txt").read_text() == "hello"


def test_a_tmp_path_a_project_overrides_is_never_removed(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    keep = pytester.path / "project-data"
    pytester.makeconftest(
        f"""
        import pathlib
        import pytest

        @pytest.fixture
        def tmp_path():
            path = pathlib.Path({str(keep)!r})
            path.mkdir(exist_ok=True)
            return path
        """
    )
    pytester.makepyfile(
        test_own="""
        def test_writes(tmp_path):
            (tmp_path / "row.txt").write_text("kept")
        """
    )
    result = runner.sub("--memwatch-repeat", "--memwatch-trace=0")
    result.assert_outcomes(passed=1)
    assert (keep / "row.txt").read_text() == "kept"



ONE_TIME_SUITE = """
    import pytest

    KEPT = []
    CALLS = {}

    @pytest.mark.parametrize("case", range(20))
    def test_keeps_one_object_on_its_fourth_call(case):
        # A one-time cost late in the runs, as a lazily built table would be:
        # kept once, in the second screened run.
        CALLS[case] = CALLS.get(case, 0) + 1
        if CALLS[case] == 4:
            KEPT.append(object())
"""


def test_a_one_time_cost_in_the_screen_is_settled_without_exact_runs(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    import json

    pytester.makepyfile(test_once=ONE_TIME_SUITE)
    result = runner.sub("--memwatch-trace=0", "--memwatch-json=out.json", "--memwatch-repeat")
    result.assert_outcomes(passed=20)
    doc = json.loads((pytester.path / "out.json").read_text())
    leaks = [v for t in doc["tests"] for v in t["verdicts"] if v["kind"] == "leak"]
    assert len(leaks) == 20 and all(v["passed"] for v in leaks)
    # Every test saw its step in the screen; more cheap (frozen) runs show it
    # stayed level, so most need no exact run (each collects the whole heap).
    # The interpreter's own one-off blocks in frozen runs send a few on.
    assert all(sum(v["details"]["metrics"]["blocks"]["deltas"][:3]) >= 1 for v in leaks)
    in_screen = [v for v in leaks if v["details"]["screened"] == 0]
    assert len(in_screen) >= 15, [v["details"]["metrics"]["blocks"]["deltas"] for v in leaks]
    assert all(7 < v["details"]["runs"] + 2 <= 2 + 4 * 5 for v in in_screen)
