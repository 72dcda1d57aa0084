"""The outputs agree: one "growth", one per-run figure, one total; pytest's terminal
conventions (-qq, the last line, wrapped messages); every test in the results.

End to end, in a subprocess (each measures memory).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from conftest import Runner

from pytest_memwatch.base.units import format_size
from pytest_memwatch.reports.html_view import verdict_status
from pytest_memwatch.reports.outputs import load_results
from pytest_memwatch.reports.results import growth_bytes
from pytest_memwatch.resources import Resource, describe_list

MALLOC_ONLY = """
KEEP = []

def test_malloc_only():
    # Over 512 bytes: malloc's, in pages the process already holds (RSS flat).
    KEEP.append(bytearray(6000))
"""

BLOCKS_LEAK = """
import pytest

KEEP = []

@pytest.mark.no_leaks(warmup=2, runs=6)
def test_leaky_blocks():
    KEEP.append([object() for _ in range(30)])
"""


def _row(lines: list[str], nodeid: str) -> list[str]:
    row = next(line for line in lines if line.endswith(f"  {nodeid}"))
    return re.split(r"\s{2,}|(?<=[BiN\d]) (?=[+-]|\d|n/a)", row.strip())


def test_growth_is_the_same_figure_in_the_terminal_json_and_html(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makepyfile(test_m=MALLOC_ONLY)
    result = runner.sub("--memwatch", "--memwatch-json=r.json", "--memwatch-html=r.html", "-v")
    result.assert_outcomes(passed=1)
    doc = load_results(str(pytester.path / "r.json"))
    [test] = doc["tests"]
    growth = growth_bytes(test)
    assert growth is not None and growth > 0, test["growth"]
    shown = format_size(growth, signed=True)
    section = runner.section(result)
    header = next(line for line in section if line.lstrip().startswith("growth"))
    assert header.split()[:5] == ["growth", "rss", "malloc", "blocks", "peak"]
    row = next(line for line in section if line.endswith("test_m.py::test_malloc_only"))
    # The first column is the same "growth" as the JSON's and the HTML's, not RSS alone.
    assert row.lstrip().startswith(shown), (row, test["growth"])
    assert row.split()[2:4] == format_size(test["growth"]["rss"], signed=True).split()
    # One total: the tests' growth summed, in the terminal and the document alike.
    assert doc["totals"]["total_growth"] == growth
    assert section[0].endswith(f", total growth {shown}"), section[0]
    html = (pytester.path / "r.html").read_text()
    assert f'{shown}</div><div class="mw-l"' in html
    assert "total RSS growth" not in html
    # The whole process's growth is labelled as such, with the same definition.
    session = next(line for line in section if line.startswith("session growth: "))
    s = doc["ledger"]["sessions"]["main"]
    assert session.startswith(f"session growth: {format_size(growth_bytes(s), signed=True)} (RSS ")
    assert session.endswith(" in the whole process, between tests included")


def test_blocks_read_the_verdicts_per_run_figure(pytester: pytest.Pytester, runner: Runner) -> None:
    pytester.makepyfile(test_b=BLOCKS_LEAK)
    result = runner.sub("--memwatch-json=r.json", "--memwatch-trace=0", "-vv")
    result.assert_outcomes(failed=1)
    [test] = json.loads((pytester.path / "r.json").read_text())["tests"]
    [verdict] = [v for v in test["verdicts"] if v["kind"] == "leak"]
    judged = verdict["details"]["metrics"]["blocks"]["deltas"]
    # The last run's blocks, in the growth and in its run entry, is the last
    # figure the verdict judged ("last runs ..., +32.0 blocks").
    assert test["growth"]["blocks"] == judged[-1] == test["runs"][-1]["delta"]["blocks"]
    assert test["growth"]["blocks"] == test["after"]["blocks"] - test["before"]["blocks"]
    measured = [r["delta"]["blocks"] for r in test["runs"] if not r["warmup"]]
    assert measured[-6:] == [int(d) for d in judged[-6:]]
    row = _row(runner.section(result), "test_b.py::test_leaky_blocks")
    assert f"{test['growth']['blocks']:+d}" in row


def test_quiet_quiet_shrinks_the_section_to_one_line_or_nothing(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makepyfile(test_m=MALLOC_ONLY)
    result = runner.sub("--memwatch", "-qq")
    assert result.ret == 0
    assert "memwatch" not in result.stdout.str()
    pytester.makepyfile(test_b=BLOCKS_LEAK)
    result = runner.sub("--memwatch", "--memwatch-trace=0", "-qq")
    assert result.ret == 1
    out = result.stdout.lines
    assert runner.section(result) == []
    assert [line for line in out if line.startswith("memwatch:")] == [
        "memwatch: 1 failed memory verdict"
    ]
    assert not any(line.startswith(("time in memwatch", "session growth")) for line in out)


def test_a_regression_is_said_in_the_last_line(pytester: pytest.Pytester, runner: Runner) -> None:
    pytester.makepyfile(
        test_c="""
        import os
        KEEP = []
        def test_a():
            KEEP.append(bytearray(int(os.environ.get("GROW", "0"))))
        def test_b():
            pass
        """
    )
    runner.sub("--memwatch", "--memwatch-save=base").assert_outcomes(passed=2)
    pytester._monkeypatch.setenv("GROW", str(8 * 1024 * 1024))
    result = runner.sub(
        "--memwatch", "--memwatch-compare=base", "--memwatch-compare-fail=growth:1MB"
    )
    assert result.ret == 1
    assert re.match(
        r"^=+ 2 passed, 1 regressed \(memwatch\) in [\d.]+s =+$", result.stdout.lines[-1]
    )
    assert any(
        line.startswith("REGRESSION test_c.py::test_a: growth ") for line in result.stdout.lines
    )
    result = runner.sub(
        "--memwatch", "--memwatch-compare=base", "--memwatch-compare-fail=growth:1MB", "-qq"
    )
    assert result.ret == 1
    assert "memwatch: 1 regression against the baseline" in result.stdout.lines


def test_a_long_leak_message_is_a_headline_and_detail_lines(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makepyfile(test_b=BLOCKS_LEAK)
    result = runner.sub("--memwatch-trace=0", "--memwatch-json=r.json")
    result.assert_outcomes(failed=1)
    lines = result.stdout.lines
    i = next(i for i, line in enumerate(lines) if line.startswith("memwatch leak:"))
    # The list that keeps the leaked lists grows too: once it outgrows a small
    # block its item array is reallocated on the C heap, so malloc may be named first.
    assert re.fullmatch(
        r"memwatch leak: (malloc grows \+[\d.]+ K?i?B/run; )?"
        r"blocks grows \+3\d\.0 blocks/run over \d+ runs after 2 warmup",
        lines[i],
    ), lines[i]
    prefix = "  blocks: " if lines[i].startswith("memwatch leak: malloc") else "  "
    details = lines[i + 1 : i + 7]
    assert any(line.startswith(f"{prefix}95% CI +3") for line in details), details
    assert any(line.startswith(f"{prefix}last runs +3") for line in details), details
    # The results keep the whole one-line message.
    [test] = json.loads((pytester.path / "r.json").read_text())["tests"]
    assert "(95% CI " in test["verdicts"][0]["message"]
    summary = next(line for line in lines if line.startswith("FAILED (memwatch)"))
    assert "95% CI" not in summary


def test_alike_resources_are_listed_once_with_a_count() -> None:
    thread = Resource("thread", "t", "thread 'poller' (daemon)")
    task = Resource("task", "a", "asyncio task 'left-behind' (coro=<run()>)")
    listed = describe_list([thread] * 5 + [task] * 145)
    assert (
        listed == "thread 'poller' (daemon) (x5); asyncio task 'left-behind' (coro=<run()>) (x145)"
    )


def test_unittest_frames_are_left_out_of_allocation_sites(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makepyfile(
        test_ut="""
        import unittest
        KEEP = []
        class T(unittest.TestCase):
            def test_leak(self):
                KEEP.append([object() for _ in range(40)])
        """
    )
    result = runner.sub("--memwatch-repeat=2:6")
    result.assert_outcomes(failed=1)
    sites = runner.report_section(result, "T.test_leak", "memwatch attribution")
    # The test's own site, the first one listed (on pytest 8.0 a second site
    # follows, made of pytest's frames only: the fixture finalizers that
    # version registers again on every run, shown as they are).
    start = next(i for i, line in enumerate(sites) if line.startswith("  +"))
    frames = []
    for line in sites[start + 1 :]:
        if not re.match(r"^ {4}\S", line):
            break
        frames.append(line.strip())
    assert frames and frames[0].endswith("KEEP.append([object() for _ in range(40)])"), sites
    framework = ("/unittest/", "/_pytest/", "/pluggy/")
    assert not any(part in f for f in frames for part in framework), frames
    # One line, once (3.11's comprehension frame shares its caller's line).
    assert len(frames) == len(set(frames))


def test_unmeasured_and_skipped_tests_are_in_the_results(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makepyfile(
        test_u="""
        import pytest

        @pytest.mark.memwatch_skip("flaky allocator")
        def test_opted_out():
            pass

        @pytest.mark.soak("1s")
        def test_soak_not_asked(soak):
            pass

        @pytest.mark.max_growth("banana")
        def test_bad_marker():
            pass

        @pytest.mark.max_growth(10)
        def test_measured():
            pass

        def test_plain():
            pass
        """
    )
    result = runner.sub("--memwatch-json=r.json", "--memwatch-html=r.html")
    result.assert_outcomes(passed=3, skipped=1, errors=1)
    doc = load_results(str(pytester.path / "r.json"))  # the schema accepts them
    why = {t["nodeid"].split("::")[1]: t.get("not_measured") for t in doc["tests"]}
    assert why == {
        "test_opted_out": "memwatch_skip",
        "test_soak_not_asked": "soak_not_run",
        "test_bad_marker": "marker_error",
        "test_measured": None,
        "test_plain": "not_selected",
    }
    assert doc["totals"]["tests"] == 5 and doc["totals"]["measured"] == 1
    # The CLI renders and merges them; the HTML's "not measured" filter matches them.
    out = pytester.run(
        sys.executable, "-m", "pytest_memwatch", "merge", "r.json", "r.json", "-o", "m.json"
    )
    assert out.ret == 0, out.stderr.str()
    merged = load_results(str(pytester.path / "m.json"))
    assert {t.get("not_measured") for t in merged["tests"]} == {*why.values()}
    out = pytester.run(sys.executable, "-m", "pytest_memwatch", "report", "m.json", "-o", "m.html")
    assert out.ret == 0, out.stderr.str()
    html = (pytester.path / "r.html").read_text()
    assert all(t["nodeid"] in html for t in doc["tests"])
    # The status the page's "not measured" filter selects on.
    none = {t["nodeid"].split("::")[1] for t in doc["tests"] if verdict_status(t) == "none"}
    assert none == {k for k, v in why.items() if v is not None}


SAMPLE = {"t": 0.0, "rss": 1, "malloc": 1, "blocks": 1, "gc_objects": 1, "fds": 1, "threads": 1}


def test_one_test_is_never_tests(tmp_path: Path) -> None:
    from pytest_memwatch.reports.html import render_report
    from pytest_memwatch.reports.results import Results, RunMeta, TestResult

    doc = Results(
        RunMeta(plugin_version="0", pytest_version="9"),
        [TestResult("t.py::test_a", before=SAMPLE, after=SAMPLE, growth={"rss": 0})],
    ).to_dict()
    assert "No memory verdict failed (1 test measured)" in render_report(doc)
    # The merge command counts alike.
    import io

    from pytest_memwatch.cli import main

    path = tmp_path / "one.json"
    path.write_text(json.dumps(doc))
    out = io.StringIO()
    assert (
        main(["merge", str(path), "-o", str(tmp_path / "m.json")], out=out, err=io.StringIO()) == 0
    )
    assert out.getvalue().splitlines()[-1] == "1 shard, 1 test, 0 failed verdicts"
