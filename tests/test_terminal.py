"""The terminal summary renderer at -q, default, -v and -vv."""

from __future__ import annotations

from typing import Any

from pytest_memwatch.reports.terminal import summary_lines

# "total growth" sums the tests' growth, each the larger of RSS and malloc:
# 2048 (test_a's RSS) + 70 000 (test_b's malloc).
HEAD = "memwatch: 3 tests measured (1 repeated), 1 failed memory verdict, total growth +70.4 KiB"
FAILED = (
    "FAILED t.py::test_b - max_growth: 68.4 KiB left behind per call, over the limit of 1.0 KiB"
)
TABLE = (
    "     growth         rss      malloc   blocks        peak  test  (tests that grew most)"
)
# "growth" is the same figure as the HTML report's and the comparison's: test_b
# grew 68.4 KiB (malloc) though its RSS did not move.
ROW_B = "  +68.4 KiB         0 B   +68.4 KiB       -3         n/a  t.py::test_b"
ROW_A = "   +2.0 KiB    +2.0 KiB      +100 B       +5     4.0 KiB  t.py::test_a"
ROW_C = "        0 B         0 B         0 B       +0         0 B  t.py::test_c"
RUNS_B = " " * 59 + "blocks per run: [1, 2]"


def results() -> list[dict[str, Any]]:
    return [
        {
            "nodeid": "t.py::test_a",
            "before": {"rss": 1},
            "growth": {"rss": 2048, "malloc": 100, "blocks": 5},
            "peak_growth": 4096,
            "verdicts": [{"passed": True, "message": "fine"}],
        },
        {
            "nodeid": "t.py::test_b",
            "before": {"rss": 1},
            "growth": {"rss": 0, "malloc": 70_000, "blocks": -3},
            "peak_growth": None,
            "verdicts": [
                {
                    "passed": False,
                    "message": "max_growth: 68.4 KiB left behind per call, "
                    "over the limit of 1.0 KiB",
                }
            ],
            # A run's own after-minus-before (-24) also counts what it replaced
            # from the run before; per run, the summary shows what the verdict
            # judges: consecutive after-readings (+1, +2).
            "runs": [
                {"warmup": True, "delta": {"blocks": 9}, "after": {"blocks": 1000}},
                {"warmup": False, "delta": {"blocks": -24}, "after": {"blocks": 1001}},
                {"warmup": False, "delta": {"blocks": -24}, "after": {"blocks": 1003}},
            ],
        },
        {
            "nodeid": "t.py::test_c",
            "before": {"rss": 1},
            "growth": {"rss": 0, "malloc": 0, "blocks": 0},
            "peak_growth": 0,
            "verdicts": [],
        },
        # Not measured (memwatch_skip, or no flag and no marker): never listed.
        {"nodeid": "t.py::test_skip", "before": None, "growth": {}, "verdicts": []},
    ]


def test_quiet_gives_one_line_and_the_failed_verdicts() -> None:
    assert summary_lines(results(), verbosity=-1) == [HEAD, FAILED]


def test_very_quiet_gives_one_line_only_when_a_verdict_failed() -> None:
    # -qq: pytest's short summary names each failed test; memwatch says one line.
    assert summary_lines(results(), verbosity=-2) == [HEAD]
    passing = [t for t in results() if t["nodeid"] != "t.py::test_b"]
    assert summary_lines(passing, verbosity=-2) == []


def test_one_test_is_not_tests() -> None:
    assert summary_lines(results()[:1], verbosity=-1)[0].startswith("memwatch: 1 test measured, ")


def test_default_adds_the_tests_that_grew_most() -> None:
    # Sorted by the larger of RSS and malloc growth; tests that did not grow are left out.
    assert summary_lines(results(), verbosity=0) == [HEAD, FAILED, "", TABLE, ROW_B, ROW_A]


def test_verbose_adds_per_run_deltas() -> None:
    assert summary_lines(results(), verbosity=1) == [HEAD, FAILED, "", TABLE, ROW_B, RUNS_B, ROW_A]


def test_very_verbose_lists_every_measured_test() -> None:
    lines = summary_lines(results(), verbosity=2)
    assert lines == [
        HEAD,
        FAILED,
        "",
        TABLE.replace("  (tests that grew most)", ""),
        ROW_B,
        RUNS_B,
        ROW_A,
        ROW_C,
    ]


def test_top_limits_the_table() -> None:
    assert summary_lines(results(), verbosity=0, top=1) == [HEAD, FAILED, "", TABLE, ROW_B]
    # -v shows twice as many.
    assert summary_lines(results(), verbosity=1, top=1)[-3:] == [ROW_B, RUNS_B, ROW_A]


def test_per_run_deltas_without_warmup_start_from_the_first_reading() -> None:
    test = results()[1]
    test["runs"] = [
        {"warmup": False, "delta": {"blocks": 5}, "after": {"blocks": 105}},
        {"warmup": False, "delta": {"blocks": -3}, "after": {"blocks": 106}},
        {"warmup": False, "delta": {"blocks": None}, "after": {"blocks": None}},
    ]
    lines = summary_lines([test], verbosity=1)
    assert lines[-1] == " " * 59 + "blocks per run: [5, 1, None]"


def test_nothing_measured_gives_no_section() -> None:
    assert summary_lines([]) == []
    assert summary_lines([results()[3]]) == []


def test_plural_and_no_failures() -> None:
    clean = [r for r in results() if r["nodeid"] != "t.py::test_b"]
    assert summary_lines(clean, verbosity=-1) == [
        "memwatch: 2 tests measured, 0 failed memory verdicts, total growth +2.0 KiB"
    ]
