"""Every HTML page memwatch writes, made by real runs and looked at in a real browser.

One suite runs under ``pytest --memwatch`` in a subprocess (threads and files
left behind, tests failed through the ``memwatch`` fixture, a descriptor leak,
a batch of failed budgets with long ids, a soak test with a sub-second
interval), with the JSON, HTML, JUnit XML and pytest-html outputs and a saved
run; the command line then writes the comparison page, the soak report and a
history page. Each page is checked as text and as a document, then opened in
headless Chromium at 1280 and 390 px wide with JavaScript on and off: no
console error, no sideways scrolling, the test ids readable.

Screenshots go to ``artifacts/pages/`` (not tracked); the ones the docs show
are made by ``tests/_reports_screenshots.py``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _browser import WIDTHS, launch, look

from pytest_memwatch.reports.baselines import SavedRun
from pytest_memwatch.reports.charts import tick_labels, ticks
from pytest_memwatch.reports.history import render_history
from pytest_memwatch.reports.html import render_report

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "artifacts" / "pages"
LONG = "a-very-long-parameter-value-" * 3

SUITE = f'''
import os
import threading

import pytest

_keep = []
_files = []
_stop = threading.Event()


class Box:
    pass


def test_leaves_a_thread():
    threading.Thread(target=_stop.wait, daemon=True, name="forgotten-worker").start()


def test_leaves_a_file(tmp_path_factory):
    _files.append(open(tmp_path_factory.mktemp("x") / "left-open.log", "w"))


def test_check_leaks_fails(memwatch):
    def leaky():
        _keep.append(bytearray(b"x" * 64 * 1024))
    assert memwatch.check_leaks(leaky, warmup=1, runs=5)


def test_expects_the_leak_it_finds(memwatch):
    assert not memwatch.check_leaks(lambda: _keep.append(bytearray(b"x" * 64 * 1024)),
                                    warmup=1, runs=5)


def test_assert_collected_fails(memwatch):
    obj = Box()
    _keep.append(obj)
    memwatch.assert_collected(obj)


@pytest.mark.no_leaks(runs=5)
def test_descriptor_leak():
    _files.append(open(os.devnull))


@pytest.mark.parametrize("case", ["{LONG}" + str(i) for i in range(6)])
@pytest.mark.max_growth("16 KiB")
def test_over_budget(case):
    _keep.append(bytearray(b"x" * 512 * 1024))


def test_clean():
    pass


_held = []


@pytest.mark.soak("3s", interval="0.25s", max_growth_rate="1 GiB/h")
def test_soak_climbs(soak):
    # Climbs 10 MiB early and keeps it: the trend after the warmup is flat.
    for _ in soak:
        if len(_held) < 10:
            _held.append(bytearray(b"x" * 1024 * 1024))
'''

FLAT = '''
def test_flat():
    pass


def test_also_flat():
    pass
'''


@dataclass
class Pages:
    dir: Path
    report: Path
    results: dict[str, Any]
    junit: str
    pytest_html: Path | None
    compare: Path
    soak: Path
    history: Path
    stdout: str

    def all(self) -> dict[str, Path]:
        pages = {"report": self.report, "compare": self.compare, "soak": self.soak,
                 "history": self.history}
        if self.pytest_html is not None:
            pages["pytest-html"] = self.pytest_html
        return pages


def _pytest(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:hypothesispytest",
         "-p", "no:memray", *args],
        cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
    )


def _cli(cwd: Path, *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pytest_memwatch", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def _has_pytest_html() -> bool:
    try:
        import pytest_html  # type: ignore[import-not-found,import-untyped,unused-ignore]  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Pages:
    d = tmp_path_factory.mktemp("pages")
    (d / "test_pages.py").write_text(SUITE)
    with_html = _has_pytest_html()
    extra = ["--html=pytest-html.html", "--self-contained-html"] if with_html else [
        "-p", "no:html"]
    run = _pytest(d, "test_pages.py", "--memwatch", "--memwatch-soak",
                  "--memwatch-storage=store", "--memwatch-save=first",
                  "--memwatch-json=results.json", "--memwatch-html=report.html",
                  "--junit-xml=junit.xml", *extra)
    assert (d / "report.html").exists(), run.stdout + run.stderr
    # The comparison page, the soak report of the samples file, and a history
    # of two runs of a suite whose tests leave nothing behind (flat series).
    _cli(d, "compare", "results.json", "results.json", "--html", "compare.html")
    samples = sorted((d / "store" / "soak").glob("*.jsonl"))
    assert len(samples) == 1, run.stdout
    _cli(d, "soak-report", str(samples[0]), "-o", "soak.html")
    (d / "test_flat.py").write_text(FLAT)
    for name in ("one", "two"):
        flat = _pytest(d, "test_flat.py", "--memwatch", "--memwatch-storage=hist",
                       f"--memwatch-save={name}", "-p", "no:html")
        assert flat.returncode == 0, flat.stdout + flat.stderr
    _cli(d, "history", "hist", "-o", "history.html")
    return Pages(d, d / "report.html", json.loads((d / "results.json").read_text()),
                 (d / "junit.xml").read_text(),
                 d / "pytest-html.html" if with_html else None,
                 d / "compare.html", d / "soak.html", d / "history.html", run.stdout)


def _test(pages: Pages, name: str) -> dict[str, Any]:
    found = [t for t in pages.results["tests"] if t["nodeid"].endswith(f"::{name}")]
    assert len(found) == 1, [t["nodeid"] for t in pages.results["tests"]]
    return found[0]


def _junit_verdict(pages: Pages, name: str) -> str:
    case = re.search(rf'<testcase [^>]*name="{name}"[^>]*>(.*?)</testcase>', pages.junit, re.S)
    assert case is not None, name
    value = re.search(r'<property name="memwatch_verdict" value="([^"]*)"', case.group(1))
    assert value is not None, case.group(1)
    return value.group(1)


# -- what the pages say ------------------------------------------------------------------


def test_the_run_failed_what_it_should(pages: Pages) -> None:
    outcomes = {t["nodeid"].split("::")[1]: t["outcome"] for t in pages.results["tests"]}
    assert outcomes["test_check_leaks_fails"] == "failed"
    assert outcomes["test_assert_collected_fails"] == "error"
    assert outcomes["test_expects_the_leak_it_finds"] == "passed"
    assert outcomes["test_descriptor_leak"] == "failed"
    assert sum(k.startswith("test_over_budget") and v == "failed"
               for k, v in outcomes.items()) == 6
    # What the terminal lists as left behind is what the page must show.
    assert "thread 'forgotten-worker'" in pages.stdout and "left-open.log" in pages.stdout


def test_report_has_a_section_for_what_the_session_left_behind(pages: Pages) -> None:
    page = pages.report.read_text()
    section = page[page.index('<section id="ledger">'):]
    section = section[:section.index("</section>")]
    assert "test_pages.py::test_leaves_a_thread" in section
    assert "thread &#39;forgotten-worker&#39;" in section
    assert "test_pages.py::test_leaves_a_file" in section and "left-open.log" in section
    # The descriptor leak's many descriptors are one line with a count.
    assert re.search(r"fd \(/dev/null\) <b>&times;\d+</b>", section), section
    assert 'id="ledger-banner"' in page


def test_findings_without_a_failed_verdict_are_not_a_green_page(pages: Pages) -> None:
    # The same run without its failed tests: only the ledger's findings remain.
    doc = dict(pages.results)
    doc["tests"] = [t for t in doc["tests"] if all(v["passed"] for v in t["verdicts"])]
    doc["totals"] = {**doc["totals"], "failed_verdicts": 0}
    page = render_report(doc)
    assert 'class="mw-banner mw-pass"' not in page
    assert re.search(r'<div class="mw-banner mw-warn" id="verdict">No memory verdict failed '
                     r"\(\d+ tests measured\), but tests or fixtures left resources behind", page)
    assert '<section id="ledger">' in page


def test_tests_failed_through_the_fixture_fail_their_verdicts(pages: Pages) -> None:
    leak = _test(pages, "test_check_leaks_fails")
    assert [(v["kind"], v["source"], v["passed"]) for v in leak["verdicts"]] == [
        ("leak", "fixture", False)]
    held = _test(pages, "test_assert_collected_fails")
    assert [(v["kind"], v["source"], v["passed"]) for v in held["verdicts"]] == [
        ("collected", "fixture", False)]
    assert held["verdicts"][0]["message"].startswith("Box object was not freed")
    # A test that expects the leak its check finds passed: no failed verdict.
    assert _test(pages, "test_expects_the_leak_it_finds")["verdicts"] == []
    assert _junit_verdict(pages, "test_check_leaks_fails") == "failed: leak"
    assert _junit_verdict(pages, "test_assert_collected_fails") == "failed: collected"
    assert _junit_verdict(pages, "test_expects_the_leak_it_finds") == "passed"
    page = pages.report.read_text()
    for name in ("test_check_leaks_fails", "test_assert_collected_fails"):
        row = re.search(rf'<tr data-nodeid="test_pages.py::{name}" data-status="(\w+)">', page)
        assert row is not None and row.group(1) == "fail", name
    assert pages.results["totals"]["failed_verdicts"] == 2 + 1 + 6


def test_a_descriptor_leak_shows_what_was_left_open(pages: Pages) -> None:
    page = pages.report.read_text()
    row = page[page.index('<tr data-nodeid="test_pages.py::test_descriptor_leak"'):]
    row = row[:row.index("</tr>")]
    assert '<td data-label="Left open" data-v="1">+1 fd</td>' in row
    fold = re.search(r'<details class="mw-test"[^>]*data-nodeid="test_pages.py::'
                     r'test_descriptor_leak"[^>]*>\s*<summary>(.*?)</summary>', page, re.S)
    assert fold is not None and "+1 fd left open" in fold.group(1)


def test_failed_details_are_closed_but_the_first(pages: Pages) -> None:
    page = pages.report.read_text()
    folds = re.findall(r'<details class="mw-test"[^>]*>', page)
    failed = [f for f in folds if 'data-status="fail"' in f]
    assert len(failed) >= 9
    assert [f for f in folds if f.endswith(" open>")] == [failed[0]]


def test_soak_report_interval_growth_and_cells(pages: Pages) -> None:
    page = pages.soak.read_text()
    assert "<span>interval 0.25s</span>" in page
    # "total growth": the tests' growth (larger of RSS and malloc), as every output says it.
    growth = re.search(r'<div class="mw-n">\+([\d.]+) MiB</div><div class="mw-l"[^>]*>total growth',
                       page)
    assert growth is not None and float(growth.group(1)) >= 8, page[:3000]
    # Every cell of the tests table has something in it.
    table = page[page.index('<table class="mw-tests"'):page.index("</table>",
                                                                 page.index("mw-tests"))]
    assert not re.search(r"<td[^>]*></td>", table), table


def test_history_ticks_of_a_flat_series() -> None:
    flat = {"tests": [{"nodeid": "t.py::flat", "growth": {"rss": 0, "malloc": 0},
                       "peak_growth": 0, "before": {}, "after": {}}],
            "run": {"started_at": "2025-01-01T00:00:00+00:00"},
            "totals": {"tests": 1, "failed_verdicts": 0, "total_growth_rss": 0,
                       "max_peak_rss": 0}}
    runs = [(SavedRun(Path(f"000{i}_main.json"), i, "main", "M"), flat) for i in (1, 2, 3)]
    page = render_history({"M": runs}, source=".memwatch")
    labels = re.findall(r'<text class="mw-ytick"[^>]*>([^<]*)</text>', page)
    assert labels and "-0 B" not in labels
    assert labels[:3] == ["0 B", "0.2 KiB", "0.4 KiB"], labels


@pytest.mark.parametrize(("lo", "hi"), [(0, 0), (-3, -3), (0, 1), (0, 2), (5 << 20, 5 << 20),
                                        (-2000, 5000), (100 << 20, 101 << 20), (0, 3 << 30)])
def test_byte_ticks_are_whole_distinct_and_never_minus_zero(lo: int, hi: int) -> None:
    from pytest_memwatch.reports.charts import Plot

    chart = Plot("t", (0, 1), (lo, hi), xunit="run", yunit="bytes").chart
    labels = [label for _, label in chart.yticks]
    assert len(set(labels)) == len(labels), labels
    assert not any(re.match(r"-0(\.0+)? ", label) for label in labels), labels
    assert all(float(v).is_integer() for v in ticks(min(lo, -1), max(hi, 1), "bytes"))


def test_tick_labels_state_one_unit() -> None:
    assert tick_labels([0, 512, 1024], "bytes") == ["0 B", "0.5 KiB", "1.0 KiB"]
    assert tick_labels([5 << 20, (5 << 20) + (1 << 17)], "bytes") == ["5.000 MiB", "5.125 MiB"]


# -- in the browser ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launch() as b:
        yield b


@pytest.mark.parametrize("js", [True, False], ids=["js", "no-js"])
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", ["report", "compare", "soak", "history", "pytest-html"])
def test_every_page_fits_and_loads_cleanly(browser: Any, pages: Pages, name: str, width: int,
                                           js: bool) -> None:
    path = pages.all().get(name)
    if path is None:
        pytest.skip("pytest-html is not installed")
    with look(browser, path, width, js) as seen:
        SHOTS.mkdir(parents=True, exist_ok=True)
        seen.page.screenshot(path=str(SHOTS / f"{name}-{width}-{'js' if js else 'nojs'}.png"),
                             full_page=True)
        assert seen.messages == []
        assert all(url.startswith("file:") or url.startswith("data:") for url in seen.requests)
        if name == "pytest-html":
            # pytest-html's own page is its business; memwatch's sections inside
            # it must not stick out of the cell they are in.
            sections = seen.page.locator(".mw-section")
            if js:
                assert sections.count() > 0
            for i in range(sections.count()):
                over = sections.nth(i).evaluate("e => e.scrollWidth - e.clientWidth")
                assert over <= 0, over
            return
        assert seen.sideways() <= 0, seen.wider_than_window()
        assert seen.wider_than_window() == []
        empty = seen.page.eval_on_selector_all(
            "#tests tbody tr[data-nodeid] td",
            "cells => cells.filter(c => c.textContent.trim() === '').length")
        assert empty == 0
        if name in ("report", "compare"):
            # A long id stays readable: its cell takes most of the row and wraps.
            cell = seen.page.locator("#tests td.mw-id", has_text="test_over_budget").first
            box = cell.bounding_box()
            assert box is not None and box["width"] >= min(0.6 * width, 300), box
            assert cell.evaluate("c => c.scrollWidth <= c.clientWidth")
            opened = seen.page.locator("details.mw-test[open]").count()
            assert opened == 1


def test_history_axes_in_the_browser(browser: Any, pages: Pages) -> None:
    with look(browser, pages.history, 390) as seen:
        for labels in seen.page.eval_on_selector_all(
                "svg.mw-svg", "svgs => svgs.map(s => [...s.querySelectorAll('text.mw-ytick')]"
                ".map(t => t.textContent))"):
            assert len(set(labels)) == len(labels), labels
            assert not any(re.match(r"-0(\.0+)? ", label) for label in labels), labels
        assert seen.messages == []


def test_filter_hides_details_with_their_rows(browser: Any, pages: Pages) -> None:
    with look(browser, pages.report, 1280) as seen:
        page = seen.page
        shown = "details.mw-test:not([hidden])"
        total = page.locator(shown).count()
        assert total >= 12
        page.locator("#filter").fill("descriptor")
        assert page.locator("#tests tbody tr[data-nodeid]").count() == 1
        ids = page.eval_on_selector_all(shown, "ds => ds.map(d => d.dataset.nodeid)")
        assert ids == ["test_pages.py::test_descriptor_leak"]
        page.locator("#filter").fill("")
        page.locator("#status-filter").select_option("pass")
        statuses = page.eval_on_selector_all(shown, "ds => ds.map(d => d.dataset.status)")
        assert statuses and set(statuses) == {"pass"}
        page.locator("#status-filter").select_option("all")
        assert page.locator(shown).count() == total
        assert seen.messages == []


def test_without_javascript_the_report_is_whole(browser: Any, pages: Pages) -> None:
    with look(browser, pages.report, 390, js=False) as seen:
        page = seen.page
        rows = page.locator("#tests tbody tr[data-nodeid]")
        assert rows.count() == len(pages.results["tests"])
        # Each figure says what it is on a phone, where there is no header row.
        label = rows.first.locator("td").nth(3).evaluate(
            "td => getComputedStyle(td, '::before').content")
        assert label == '"Growth "'
        assert page.locator("#ledger").is_visible()


def test_a_large_report_fits_a_phone_too(browser: Any, tmp_path: Path) -> None:
    from _reports_sample import big_doc

    path = tmp_path / "large.html"
    path.write_text(render_report(big_doc(2000, failed_every=100)), encoding="utf-8")
    for js in (True, False):
        with look(browser, path, 390, js) as seen:
            assert seen.sideways() <= 0, seen.wider_than_window()
            heights = seen.page.eval_on_selector_all(
                "#tests tbody tr[data-nodeid]",
                "rows => rows.map(r => r.getBoundingClientRect().height)")
            if js:
                # Drawn on demand: few rows in the document, all as high (two lines).
                assert 0 < len(heights) < 200 and len(set(heights)) == 1, set(heights)
            assert seen.messages == []
