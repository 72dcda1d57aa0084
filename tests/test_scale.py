"""Large suites: constant cost per test, bounded memory, reports that stream.

Unit tests of the spool, the streaming writer and reader and the frozen-heap
rule; subprocess runs of the plugin on a generated suite; the CLI reading a
large results file in bounded memory. The browser side of a large report is
in test_html_browser.py.
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _reports_sample import big_doc
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_memwatch.engine import GcHygiene
from pytest_memwatch.reports import stream as report_stream
from pytest_memwatch.reports.html import render_report
from pytest_memwatch.reports.html_view import ALL_DETAILS
from pytest_memwatch.reports.results import Totals, totals
from pytest_memwatch.reports.merge import merge_documents
from pytest_memwatch.reports.results_file import dumps, load_results
from pytest_memwatch.reports.stream import StreamedTests, load_results_stream, read_json_stream
from pytest_memwatch.reports.validation import ResultsError
from pytest_memwatch.reports.spool import ResultSpool
from pytest_memwatch.reports.terminal import Summary, summary_lines

# -- the spool --------------------------------------------------------------------


def test_spool_keeps_records_on_disk_in_order_and_counts_them(tmp_path: Path) -> None:
    spool = ResultSpool([str(tmp_path)])
    assert spool.on_disk
    doc = big_doc(300)
    for t in doc["tests"]:
        spool.add(t)
    # An anonymous file: nothing in the directory, whatever ends the session.
    assert list(tmp_path.iterdir()) == [] or os.name == "nt"
    assert len(spool) == 300
    assert list(spool) == doc["tests"]
    # Re-iterable, and records may be added while a reader goes through them.
    reader = iter(spool)
    first = next(reader)
    spool.add({**first, "nodeid": "late"})
    assert [t["nodeid"] for t in reader][-1] == doc["tests"][-1]["nodeid"]
    assert [t["nodeid"] for t in spool][-1] == "late"
    assert spool.totals.to_dict() == totals([*doc["tests"], {**first, "nodeid": "late"}])
    spool.close()
    assert list(spool) == [] and len(spool) == 0


def test_spool_falls_back_to_memory_when_no_file_can_be_made(tmp_path: Path) -> None:
    spool = ResultSpool([str(tmp_path / "missing")], spool=False)
    spool.add({"nodeid": "a"})
    assert not spool.on_disk and list(spool) == [{"nodeid": "a"}]


def test_spool_refuses_nan_with_the_test() -> None:
    spool = ResultSpool()
    with pytest.raises(ValueError):
        spool.add({"nodeid": "a", "duration_s": float("nan")})
    spool.close()


def test_running_totals_match_the_totals_of_the_whole_list() -> None:
    doc = big_doc(50, failed_every=7)
    running = Totals()
    for t in doc["tests"]:
        running.add(t)
    assert running.to_dict() == doc["totals"]


def test_terminal_summary_from_running_aggregates_matches_the_whole_list() -> None:
    tests = big_doc(400, failed_every=50)["tests"]
    for verbosity in (-1, 0, 1, 2):
        summary = Summary(keep=20)
        for t in tests:
            summary.add(t)
        expected = summary_lines(tests, verbosity=verbosity, top=10)
        assert summary.lines(verbosity=verbosity, top=10, every=lambda: tests) == expected
    assert len(summary._top) == 20  # only the top is kept


# -- the frozen heap ----------------------------------------------------------------


def test_full_collections_follow_the_frozen_heap_not_the_test_count() -> None:
    """Thawed and collected in full once a quarter of the heap was frozen since the last time."""
    hygiene = GcHygiene(refreeze_every=10, heap_per_test=10**9)
    full: list[int] = []
    done = [0]
    real_unfreeze = gc.unfreeze

    def counting() -> None:
        full.append(done[0])
        real_unfreeze()

    kept: list[Any] = []
    gc.unfreeze = counting
    try:
        hygiene.before_test(2)
        at_full = hygiene.frozen
        # Each "test" leaves a hundredth of the heap alive (tracked lists).
        per_test = at_full // 100
        for done[0] in range(1, 301):
            kept.append([[] for _ in range(per_test - 1)])
            hygiene.before_test(1)
    finally:
        gc.unfreeze = real_unfreeze
        hygiene.thaw()
    assert full, "the frozen heap was never collected in full"
    # A quarter of the heap after about 25 tests; then later and later as the
    # heap grows. A fixed count of 10 tests would have given 30.
    assert 24 <= full[0] <= 28, full
    assert len(full) <= 8, full
    assert all(b - a >= 10 for a, b in itertools.pairwise(full)), full


def test_objects_freed_since_they_were_frozen_do_not_count() -> None:
    """Frozen objects freed by reference counting leave nothing to collect: no full collection."""
    hygiene = GcHygiene(refreeze_every=10, heap_per_test=10**9)
    full: list[int] = []
    real_unfreeze = gc.unfreeze
    gc.unfreeze = lambda: (full.append(1), real_unfreeze())  # type: ignore[assignment,func-returns-value]
    try:
        hygiene.before_test(2)
        per_test = hygiene.frozen // 20
        alive: list[Any] = []
        for _ in range(200):
            # Frozen with the test, freed (no cycle) when the next one starts.
            alive = [[] for _ in range(per_test)]
            hygiene.before_test(1)
        del alive
    finally:
        gc.unfreeze = real_unfreeze
        hygiene.thaw()
    assert full == []


def test_a_young_freeze_after_a_thaw_is_collected_in_full_after_refreeze_every() -> None:
    hygiene = GcHygiene(refreeze_every=5, heap_per_test=10**9)
    try:
        hygiene.before_test(1)  # first freeze after a young collection only
        full = []
        real = gc.unfreeze
        gc.unfreeze = lambda: (full.append(1), real())  # type: ignore[assignment,func-returns-value]
        try:
            keep = []
            for _ in range(6):
                keep.append([object()])
                hygiene.before_test(1)
        finally:
            gc.unfreeze = real
        assert full == [1]
    finally:
        hygiene.thaw()


# -- writing and reading in a stream ------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(
    head=st.dictionaries(st.text(max_size=8).filter(lambda k: k != "tests"), json_values,
                         max_size=4),
    tests=st.lists(st.dictionaries(st.text(max_size=6), json_values, max_size=4), max_size=8),
    chunk=st.integers(1, 40),
    indent=st.sampled_from([None, 0, 2]),
)
def test_streamed_documents_read_back_whole(tmp_path_factory: pytest.TempPathFactory,
                                            head: dict[str, Any], tests: list[Any],
                                            chunk: int, indent: int | None) -> None:
    doc = {**head, "tests": tests}
    written = dumps({**head, "tests": iter(tests)})
    assert json.loads(written) == doc
    path = tmp_path_factory.mktemp("stream") / "doc.json"
    old = report_stream._CHUNK
    report_stream._CHUNK = chunk  # tiny buffers: every value crosses a chunk boundary
    try:
        for text in (written, json.dumps(doc, indent=indent)):
            path.write_text(text, encoding="utf-8")
            read = read_json_stream(path)
            assert isinstance(read, dict)
            streamed = read["tests"]
            assert isinstance(streamed, StreamedTests) and len(streamed) == len(tests)
            assert {**read, "tests": list(streamed)} == doc
    finally:
        report_stream._CHUNK = old


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ('{"schema_version": 1, "tool": "pytest-memwatch", "tests": [{"a": 1}',
         "the file ends early: truncated?"),
        ('{"schema_version": 1, "tool": "pytest-memwatch", "tests": [{"a": 1}]} x',
         "extra data after the document"),
        ('{"schema_version": 1 "tool": 2}', "expected ',' or '}'"),
        ("[1, 2]", "not a pytest-memwatch results document (the top level is an array"),
    ],
)
def test_stream_reader_names_the_file_and_the_problem(tmp_path: Path, text: str,
                                                      message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ResultsError) as info:
        load_results_stream(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_stream_loading_checks_every_test_against_the_schema(tmp_path: Path) -> None:
    doc = big_doc(30)
    doc["tests"][17]["outcome"] = 5
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ResultsError, match=r"r\.json: does not match the results schema: "
                                           r"tests/17/outcome: 5 is not of type string"):
        load_results_stream(path)
    with pytest.raises(ResultsError, match="tests/17/outcome"):
        load_results(path)


def test_merging_streams_gives_what_merging_lists_gives(tmp_path: Path) -> None:
    a, b = big_doc(40, prefix="a.py"), big_doc(30, prefix="b.py")
    b["tests"].append(a["tests"][3])  # an identical copy is merged
    (tmp_path / "a.json").write_text(dumps(a))
    (tmp_path / "b.json").write_text(dumps(b))
    merged, _ = merge_documents([("a.json", a), ("b.json", b)])
    streamed, _ = merge_documents([("a.json", read_json_stream(tmp_path / "a.json")),
                                   ("b.json", read_json_stream(tmp_path / "b.json"))])
    assert len(streamed["tests"]) == len(merged["tests"]) == 70
    assert json.loads(dumps(streamed)) == merged


def test_large_report_keeps_details_for_the_tests_that_matter() -> None:
    n = ALL_DETAILS + 500
    page = render_report(big_doc(n, failed_every=100))
    assert page.count('<details class="mw-test"') == 15 + 100  # every failure, top growth
    assert 'id="memwatch-rows"' in page and 'id="memwatch-data"' not in page
    assert "Without JavaScript this table lists the 115 tests" in page
    rows = page[page.index('id="memwatch-rows">') + 19:page.index("</script>",
                                                                   page.index("memwatch-rows"))]
    assert "<" not in rows  # nothing in the data can end its script block
    data = json.loads(rows)
    assert len(data) == n and data[7][1] == "tests/test_gen.py::test_7[<b>7]"


# -- end to end -------------------------------------------------------------------

SUITE = """
import unittest
import pytest

@pytest.mark.parametrize("n", range({n}))
def test_param(n):
    assert n >= 0

class TestGroup:
    def test_a(self):
        pass

class TestCaseStyle(unittest.TestCase):
    def test_u(self):
        self.assertTrue(True)

@pytest.mark.max_growth("64 MiB")
def test_budgeted():
    pass
"""


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "-p", "pytest_memwatch.plugin", "-p", "no:cacheprovider", "-q", *args)


@pytest.fixture
def no_autoload(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")


@pytest.mark.usefixtures("no_autoload")
def test_a_large_run_streams_complete_outputs_and_leaves_no_spool(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_many=SUITE.format(n=1500))
    out = pytester.path / "out"
    out.mkdir()
    result = _run(pytester, "--memwatch", f"--memwatch-json={out / 'r.json'}",
                  f"--memwatch-html={out / 'r.html'}")
    assert result.ret == 0, result.stdout.str()
    assert sorted(p.name for p in out.iterdir()) == ["r.html", "r.json"]
    doc = load_results(out / "r.json")
    assert len(doc["tests"]) == 1503 and doc["totals"]["measured"] == 1503
    by_id = {t["nodeid"]: t for t in doc["tests"]}
    # Plain measuring leaves allocated blocks out; a test with a budget has them.
    assert by_id["test_many.py::test_param[0]"]["growth"]["blocks"] is None
    assert by_id["test_many.py::test_budgeted"]["growth"]["blocks"] is not None
    assert by_id["test_many.py::TestCaseStyle::test_u"]["before"] is not None
    page = (out / "r.html").read_text()
    assert 'id="memwatch-rows"' in page and "test_many.py::test_budgeted" in page
    result.stdout.fnmatch_lines(["*memwatch: 1503 tests measured, 0 failed memory verdicts*"])


@pytest.mark.usefixtures("no_autoload")
def test_a_blocks_tolerance_makes_plain_tests_count_blocks(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_few=SUITE.format(n=3))
    result = _run(pytester, "--memwatch", "--memwatch-json=r.json",
                  "--memwatch-compare", "--memwatch-compare-fail=blocks:1000")
    assert result.ret == 0, result.stdout.str()
    doc = load_results(pytester.path / "r.json")
    assert all(t["growth"]["blocks"] is not None for t in doc["tests"])


@pytest.mark.usefixtures("no_autoload")
def test_verbose_listing_of_every_test_reads_the_spool(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_few=SUITE.format(n=30))
    result = pytester.runpytest_subprocess(
        "-p", "pytest_memwatch.plugin", "-p", "no:cacheprovider", "--memwatch", "-vv")
    assert result.ret == 0
    listed = [line for line in result.stdout.lines if line.endswith("test_few.py::test_param[29]")
              and "%" not in line]
    assert len([x for x in listed if "PASSED" not in x]) == 1


# Run the CLI and report its own peak RSS (VmHWM, reset at exec: the rusage of a
# child would also count this test process, which spawned it).
_HWM = """
import runpy, sys
sys.argv = ["pytest_memwatch", *sys.argv[1:]]
try:
    runpy.run_module("pytest_memwatch", run_name="__main__")
finally:
    with open("/proc/self/status") as f:
        hwm = next(line for line in f if line.startswith("VmHWM:"))
    print("HWM", int(hwm.split()[1]) * 1024, file=sys.stderr)
"""


def _peak_rss_of(args: list[str], cwd: Path) -> int:
    proc = subprocess.run([sys.executable, "-c", _HWM, *args], cwd=cwd, capture_output=True,
                          text=True)
    assert proc.returncode in (0, 1), proc.stderr
    return int(proc.stderr.rsplit("HWM ", 1)[1])


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmHWM from /proc")
def test_cli_reads_large_files_in_bounded_memory(tmp_path: Path) -> None:
    """report, merge and compare: peak memory for 20 000 tests stays near that for 1 000."""
    cli: list[str] = []
    peaks = {}
    for n in (1000, 20_000):
        (tmp_path / f"a{n}.json").write_text(dumps(big_doc(n, failed_every=500)))
        (tmp_path / f"b{n}.json").write_text(dumps(big_doc(n, prefix="tests/test_b.py")))
        peaks[n] = {
            "report": _peak_rss_of([*cli, "report", f"a{n}.json", "-o", f"a{n}.html"], tmp_path),
            "merge": _peak_rss_of([*cli, "merge", f"a{n}.json", f"b{n}.json",
                                   "-o", f"m{n}.json"], tmp_path),
            "compare": _peak_rss_of([*cli, "compare", f"a{n}.json", f"a{n}.json"], tmp_path),
        }
    size = (tmp_path / "a20000.json").stat().st_size
    assert size > 8 * 2**20  # the whole document would not fit in the margins below
    for command in ("report", "merge"):
        assert peaks[20_000][command] - peaks[1000][command] < 16 * 2**20, (command, peaks)
    # compare keeps a few numbers per test of both runs.
    assert peaks[20_000]["compare"] - peaks[1000]["compare"] < 40 * 2**20, peaks
    merged = load_results(tmp_path / "m20000.json")
    assert len(merged["tests"]) == 40_000
