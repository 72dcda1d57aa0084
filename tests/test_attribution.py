"""Attribution: what leaked, where, and what holds it; bounded in time and memory."""

from __future__ import annotations

import functools
import gc
import json
import re
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_memwatch.engine import attribution
from pytest_memwatch.engine.attribution import (
    RERUN_BUDGET,
    attribute,
    format_attribution,
    rerun_count,
    short_repr,
)
from pytest_memwatch.reports import validation as report_json

if TYPE_CHECKING:
    from conftest import Runner

MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def _tracemalloc_as_found() -> Iterator[None]:
    was = tracemalloc.is_tracing()
    yield
    if tracemalloc.is_tracing() and not was:
        tracemalloc.stop()


def schema_check(doc: Any) -> None:
    """Valid for the real jsonschema and for the built-in interpreter."""
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator(report_json.load_schema()).validate(doc)
    assert report_json.validate(doc) == []


# -- unit: bounds ----------------------------------------------------------------------


def test_short_repr_never_builds_the_repr_of_a_large_object() -> None:
    big = bytearray(8 * MiB)
    assert short_repr(big) == "<bytearray of 8.0 MiB>"
    assert short_repr(b"abc") == "b'abc'"
    assert len(short_repr("x" * 10_000)) <= 90
    assert short_repr(list(range(100))) == "[0, 1, 2, 3, ...]"


def test_short_repr_survives_a_broken_repr() -> None:
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    class BadSize:
        def __sizeof__(self) -> int:
            raise RuntimeError("no")

    assert re.fullmatch(r"<Broken instance at 0x[0-9a-f]+>", short_repr(Broken()))
    assert short_repr(BadSize()) == "<BadSize (repr failed: RuntimeError)>"


@pytest.mark.parametrize(
    ("leak", "blocks", "expected"),
    [
        (0, 0, 3),
        (64 * 1024, 2, 3),
        (16 * MiB, 0, 3),
        (20 * MiB, 0, 2),
        (30 * MiB, 0, 1),
        (33 * MiB, 0, 0),
        (200 * MiB, 0, 0),
        # Many small blocks: tracemalloc's tables count, not only the bytes,
        (1 * MiB, 100_000, 1),
        # and the time to trace them.
        (64 * 1024, 15_000, 3),
        (64 * 1024, 30_000, 1),
        (64 * 1024, 200_000, 0),
    ],
)
def test_rerun_count_fits_the_budget(leak: int, blocks: int, expected: int) -> None:
    assert rerun_count(leak, blocks) == expected
    runs = rerun_count(leak, blocks)
    if runs:
        per_run = leak + attribution.TRACE_COST_PER_BLOCK * blocks
        assert (1 + runs) * per_run <= RERUN_BUDGET


# -- unit: what is found -------------------------------------------------------------------

CACHE_STRINGS: dict[str, str] = {}
HELD: list[object] = []


@functools.cache
def _cached(x: int) -> list[int]:
    return [x] * 4


def _lru_leak() -> Callable[[], None]:
    counter = [10_000_000]

    def run() -> None:
        for _ in range(300):
            counter[0] += 1
            _cached(counter[0])

    return run


def _string_leak() -> Callable[[], None]:
    counter = [0]

    def run() -> None:
        for _ in range(100):
            counter[0] += 1
            CACHE_STRINGS[f"key {counter[0]}"] = f"value {counter[0]}"

    return run


def _chain_text(attr: dict[str, Any]) -> str:
    return "\n".join(
        " ".join(f"{link['type']} {link['via'] or ''}" for link in ch["chain"])
        for ch in attr["chains"]
    )


def test_an_unbounded_cache_is_found_with_what_holds_it() -> None:
    attr = attribute(_lru_leak(), frames=5, leak_bytes=30_000, leak_blocks=600)
    assert attr["runs"] == 3 and attr["mode"] == "rerun"
    assert attr["sites"], attr
    lines = [fr["line"] for site in attr["sites"] for fr in site["traceback"]]
    assert "return [x] * 4" in lines
    assert any(row["type"] == "list" and row["delta"] >= 900 for row in attr["types"])
    # module -> its dict ['_cached'] -> the lru wrapper -> its cache dict -> the list
    assert "['_cached']" in _chain_text(attr), attr["chains"]
    assert attr["chains"][0]["chain"][0]["repr"] == f"<module {__name__!r}>"
    assert gc.get_freeze_count() == 0


def test_strings_in_a_dict_the_collector_does_not_track_are_found() -> None:
    attr = attribute(_string_leak(), frames=5, leak_bytes=10_000, leak_blocks=200)
    assert not gc.is_tracked(CACHE_STRINGS)
    assert any(row["type"] == "str" for row in attr["types"]), attr["types"]
    assert "['CACHE_STRINGS']" in _chain_text(attr), attr["chains"]


def test_a_leak_too_big_to_rerun_is_explained_in_place() -> None:
    calls = []

    def run() -> None:
        calls.append(1)

    HELD.append(bytearray(40 * MiB))
    try:
        attr = attribute(run, frames=5, leak_bytes=40 * MiB, leak_blocks=1)
    finally:
        big = HELD.pop()
    assert calls == []  # not re-run
    assert attr["mode"] == "in_place" and attr["runs"] == 0 and attr["sites"] == []
    assert attr["largest"][0]["type"] == "bytearray"
    assert attr["largest"][0]["size"] >= 40 * MiB
    assert attr["largest"][0]["repr"] == "<bytearray of 40.0 MiB>"
    assert "['HELD']" in _chain_text(attr)
    assert attr["note"].startswith("not re-run: the test leaves 40.0 MiB per run")
    text = format_attribution(attr)
    assert "largest objects alive:" in text and "40.0 MiB bytearray <bytearray of 40.0 MiB>" in text
    del big


# -- unit: a test that uses tracemalloc itself ---------------------------------------------


def _leaking(extra: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        extra()
        HELD.append([object() for _ in range(50)])

    return run


@pytest.mark.parametrize(
    ("extra", "note"),
    [
        (tracemalloc.stop, "the test stops tracemalloc itself (tracemalloc.stop())"),
        (
            lambda: (tracemalloc.stop(), tracemalloc.start(3)),
            "the test restarts tracemalloc with 3 frames instead of 5",
        ),
        (
            lambda: (tracemalloc.stop(), tracemalloc.start(5)),
            "the test restarts tracemalloc itself, which drops the traces taken before",
        ),
    ],
    ids=["stops", "other-depth", "restarts"],
)
def test_a_test_using_tracemalloc_degrades_attribution(
    extra: Callable[[], None], note: str
) -> None:
    try:
        attr = attribute(_leaking(extra), frames=5, leak_bytes=4096, leak_blocks=60)
    finally:
        HELD.clear()
    assert attr["note"].startswith(note + ": allocation sites are not available"), attr["note"]
    assert attr["sites"] == []
    # Found without tracemalloc: the census of new objects.
    assert any(row["type"] == "list" for row in attr["types"]), attr["types"]
    assert not tracemalloc.is_tracing()


def test_tracemalloc_already_running_is_left_alone() -> None:
    tracemalloc.start(7)
    try:
        attr = attribute(_leaking(lambda: None), frames=5, leak_bytes=4096, leak_blocks=60)
        assert tracemalloc.is_tracing() and tracemalloc.get_traceback_limit() == 7
    finally:
        tracemalloc.stop()
        HELD.clear()
    assert attr["note"].startswith("tracemalloc was already running (7 frames")
    assert attr["sites"] == []
    assert any(row["type"] == "list" for row in attr["types"])


# -- end to end -------------------------------------------------------------------------------


def test_tracemalloc_in_a_test_fails_that_test_alone(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makepyfile(
        test_tm="""
        import tracemalloc
        import pytest

        KEEP = []

        @pytest.mark.max_growth("1 KiB")
        def test_starts_and_stops():
            tracemalloc.start()
            KEEP.append([object() for _ in range(2000)])
            tracemalloc.stop()

        @pytest.mark.max_growth("1 KiB")
        def test_leaves_it_running():
            tracemalloc.start(3)
            KEEP.append([object() for _ in range(2000)])

        def test_after():
            assert True
        """
    )
    result = runner.sub("-p", "no:randomly")
    assert "INTERNALERROR" not in result.stdout.str()
    result.assert_outcomes(failed=2, passed=1)
    first = runner.report_section(result, "test_starts_and_stops", "memwatch attribution")
    assert any("the test stops tracemalloc itself" in line for line in first), first
    second = runner.report_section(result, "test_leaves_it_running", "memwatch attribution")
    assert any("tracemalloc was already running (3 frames" in line for line in second), second


def _peak_kib(runner: Runner, *args: str) -> int:
    """Peak RSS (KiB) of an inner pytest run in its own process tree."""
    code = (
        "import resource, subprocess, sys; "
        "subprocess.run(sys.argv[1:], check=False, stdout=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = runner.pytester.run(
        sys.executable, "-c", code, sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args
    )
    return int(out.stdout.lines[-1])


def test_a_large_leak_is_attributed_without_blowing_up_memory(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makepyfile(
        test_big="""
        import pytest

        KEEP = []

        @pytest.mark.max_growth("100 MiB")
        def test_keeps_200_mib():
            KEEP.append(bytearray(200 * 1024 * 1024))
        """
    )
    without = _peak_kib(runner, "--memwatch-trace=0")
    with_attribution = _peak_kib(runner, "--memwatch-json=out.json")
    # Before: 3.2 GiB (the test re-run 7 times, and a repr of the buffer).
    # Now: not re-run; the extra is the scan's list of objects, a few MiB.
    assert with_attribution - without < 64 * 1024, (without, with_attribution)
    doc = json.loads((pytester.path / "out.json").read_text())
    schema_check(doc)
    [test] = doc["tests"]
    attr = test["attribution"]
    assert attr["mode"] == "in_place"
    assert attr["largest"][0]["repr"] == "<bytearray of 200.0 MiB>"
    assert [link["via"] for link in attr["chains"][0]["chain"]][:2] == [".__dict__", "['KEEP']"]
    assert test["timing"]["runs"] == 1 and test["timing"]["attribution_s"] >= 0


def test_an_opened_descriptor_is_traced_to_the_line_that_opened_it(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    # One file for every run: this test is about a failure on descriptors alone.
    pytester.makepyfile(
        test_fds="""
        import os
        import socket
        import pytest

        @pytest.fixture
        def path(tmp_path_factory):
            return tmp_path_factory.getbasetemp() / "data.txt"

        @pytest.mark.no_leaks(warmup=1, runs=3)
        def test_leaks_a_descriptor(path):
            path.write_text("x")
            os.open(path, os.O_RDONLY)

        @pytest.mark.no_leaks(warmup=1, runs=3)
        def test_leaks_a_socket():
            socket.socket().detach()
        """
    )
    pytester.makeconftest(
        """
        from pytest_memwatch.plugin.progress import AttributionProgress

        AttributionProgress.SHOW_AFTER = 0.0
        """
    )
    result = runner.sub("--memwatch-json=out.json", "--junit-xml=out.xml", "-p", "no:randomly")
    result.assert_outcomes(failed=2)
    junit = (pytester.path / "out.xml").read_text()
    assert junit.count('<property name="memwatch_attribution_s" value="') == 2, junit
    fd = runner.report_section(result, "test_leaks_a_descriptor", "memwatch attribution")
    # Not blamed on pytest: the memory part is skipped, the opening line named.
    assert fd[0] == "note: the failure is about resources, not memory", fd
    assert "what one more run left open, and where (most recent call first):" in fd
    assert any(
        re.match(r"  fd \d+ \(.*data\.txt\), opened at test_fds\.py:12 in test_leaks_a_desc", ln)
        for ln in fd
    ), fd
    assert any(re.search(r"test_fds\.py:12 in test_leaks_a_descriptor$", ln) for ln in fd)
    doc = json.loads((pytester.path / "out.json").read_text())
    schema_check(doc)
    by_name = {t["nodeid"].split("::")[-1]: t for t in doc["tests"]}
    [res] = by_name["test_leaks_a_descriptor"]["attribution"]["resources"]
    assert res["kind"] == "fd" and res["origin"][0]["lineno"] == 12
    sock = by_name["test_leaks_a_socket"]["attribution"]["resources"]
    assert sock and sock[0]["kind"] == "socket"
    assert any(f["function"] == "test_leaks_a_socket" for f in sock[0]["origin"]), sock
    # Where the time went, and the progress line (shown at once here).
    # 1 warmup and 3 runs at least (more when the verdict wants more evidence).
    assert by_name["test_leaks_a_socket"]["timing"]["runs"] >= 4
    assert "memwatch: explaining test_fds.py::test_leaks_a_socket (" in result.stdout.str()
    assert any(
        re.match(r"^  memwatch time: \d+ runs \d+\.\d\d s, attribution \d+\.\d\d s$", ln)
        for ln in result.stdout.lines
    )


# -- where the time went, and the leaked metric's chart (renderers) ---------------------------


def _sample(fds: int) -> dict[str, Any]:
    keys = ("rss", "malloc", "blocks", "gc_objects", "threads")
    return {"t": float(fds), **dict.fromkeys(keys, 100), "fds": fds}


def _delta(fds: int) -> dict[str, Any]:
    keys = ("rss", "malloc", "blocks", "gc_objects", "threads")
    return {**dict.fromkeys(keys, 0), "fds": fds}


def _fd_leak_result() -> dict[str, Any]:
    runs = [
        {"warmup": i == 0, "delta": _delta(1), "after": _sample(10 + i), "peak_rss": None}
        for i in range(5)
    ]
    return {
        "nodeid": "test_x.py::test_fd",
        "outcome": "failed",
        "worker": None,
        "duration_s": 1.5,
        "markers": ["no_leaks"],
        "before": _sample(9),
        "after": _sample(14),
        "growth": _delta(1),
        "peak_rss": None,
        "peak_growth": None,
        "runs": runs,
        "verdicts": [
            {
                "kind": "leak",
                "source": "marker",
                "passed": False,
                "message": "leak: fds grows +1.0 fds/run",
                "metric": "fds",
                "limit": None,
                "measured": 1.0,
                "details": {"metrics": {"fds": {"state": "suspect"}, "rss": {"state": "clean"}}},
            }
        ],
        "attribution": attribution.empty(10, "the failure is about resources, not memory"),
        "soak": None,
        "timing": {"runs": 5, "runs_s": 1.5, "attribution_s": 0.25},
    }


def test_terminal_says_where_the_time_went() -> None:
    from pytest_memwatch.reports.terminal import summary_lines

    lines = summary_lines([_fd_leak_result()])
    assert lines[1] == "FAILED test_x.py::test_fd - leak: fds grows +1.0 fds/run"
    assert lines[2] == "  memwatch time: 5 runs 1.50 s, attribution 0.25 s"
    assert lines[3] == (
        "time in memwatch: repeated runs 1.50 s (1 test), attribution 0.25 s (1 test); "
        "slowest: test_x.py::test_fd (5 runs 1.50 s, attribution 0.25 s)"
    )


def test_html_plots_the_leaked_metric_and_the_time() -> None:
    from pytest_memwatch.reports.html import render_report
    from pytest_memwatch.reports.html_view import make_view
    from pytest_memwatch.reports.results import Results, RunMeta, TestResult, machine_info

    test = _fd_leak_result()
    view = make_view(test, 0)
    [chart] = view.metric_charts
    assert chart.title == "fds per run"
    # Cumulative since the first run started: 1, 2, 3, 4, 5 descriptors.
    assert chart.series[0].points[-1][2] == "run 5: fds +5 in total"
    meta = RunMeta(plugin_version="0", pytest_version="9", machine=machine_info())
    doc = Results(meta, [TestResult.from_dict(test)]).to_dict()
    schema_check(doc)
    html = render_report(doc)
    assert "fds per run" in html
    assert "memwatch: 5 runs 1.500s, attribution 0.250s" in html
    assert "the failure is about resources, not memory" in html


def test_the_harness_own_frames_are_not_the_user_s() -> None:
    # Every module of the package is the harness, wherever it sits in it: a
    # traceback shows the user's frames, not memwatch's run loop or hooks.
    import os

    import pytest_memwatch
    from pytest_memwatch.engine.attribution.tracing import PACKAGE_DIR, framework_file

    root = os.path.dirname(os.path.abspath(pytest_memwatch.__file__))
    assert PACKAGE_DIR == root
    for module in ("plugin/__init__.py", "fixture.py", "engine/measure.py"):
        assert framework_file(os.path.join(root, module)), module
    assert not framework_file(os.path.abspath(__file__))
