"""The HTML report in a real browser (headless Chromium through Playwright).

Needs Debian's ``chromium`` (``/usr/bin/chromium``) and the ``playwright``
package; Playwright's own browser download is never used. Skips with the
reason when either is missing, unless ``MEMWATCH_REQUIRE_BROWSER`` is set
(CI sets it), where a missing browser is a failure. Screenshots go to
``artifacts/`` at the project root.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from _browser import launch
from _reports_sample import XSS_ID, KiB, MiB, big_doc, sample_doc, small_doc

from pytest_memwatch.reports.baselines import SavedRun
from pytest_memwatch.reports.history import render_history
from pytest_memwatch.reports.html import render_report

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launch() as b:
        yield b


@dataclass
class Watched:
    """A page plus everything it reported: console errors, page errors, dialogs, requests."""

    page: Any
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


def _open(browser: Any, path: Path) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    w = Watched(page)
    page.on("console", lambda m: w.errors.append(m.text) if m.type in ("error", "warning")
            else None)
    page.on("pageerror", lambda e: w.errors.append(str(e)))

    def on_dialog(dialog: Any) -> None:
        w.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("request", lambda r: w.requests.append(r.url))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    yield w
    context.close()


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("browser") / "report.html"
    path.write_text(render_report(sample_doc()), encoding="utf-8")
    return path


@pytest.fixture
def report(browser: Any, report_file: Path) -> Iterator[Watched]:
    yield from _open(browser, report_file)


def _visible_ids(page: Any) -> list[str]:
    ids: list[str] = page.eval_on_selector_all(
        "#tests tbody tr", "rows => rows.filter(r => !r.hidden).map(r => r.dataset.nodeid)")
    return ids


def test_report_loads_offline_without_errors(report: Watched, report_file: Path) -> None:
    page = report.page
    assert page.title() == "pytest-memwatch report"
    assert page.locator("#shown").inner_text() == "10 of 10 tests"
    assert page.locator("#verdict").inner_text() == "4 tests failed a memory verdict"
    assert page.locator("svg.mw-svg").count() >= 3
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "memwatch-report.png"), full_page=True)
    assert report.errors == [] and report.dialogs == []
    # Offline: the page itself is the only thing fetched.
    assert report.requests == [report_file.as_uri()]


def test_script_in_a_test_id_is_shown_as_text(report: Watched) -> None:
    page = report.page
    row = page.locator("#tests tbody tr", has_text="test_xss.py")
    assert row.locator("td.mw-id").inner_text() == XSS_ID
    # Open its details too: nothing in them may run either.
    row.locator("a").click()
    assert page.locator("details.mw-test[open] summary", has_text="test_xss.py").count() == 1
    assert page.get_by_text("</script><script>alert('verdict')</script>", exact=False).count() == 1
    # The document, the table rows (both data) and the page's own script.
    assert page.evaluate("document.scripts.length") == 3
    assert report.dialogs == [] and report.errors == []


def test_sorting_by_clicking_headers(report: Watched) -> None:
    page = report.page
    growth = page.locator("#tests th", has_text="Growth")
    growth.locator("button").click()
    assert growth.get_attribute("aria-sort") == "descending"
    ids = _visible_ids(page)
    assert ids[:4] == ["tests/test_vtt.py::test_stream_large_file",
                       "tests/test_vtt.py::test_parse_small",
                       "tests/test_cache.py::test_cache_leaks", XSS_ID]
    # Tests without a figure sort last in both directions.
    assert ids[-2:] == ["tests/test_recorder.py::test_recorder_soak",
                        "tests/test_mic.py::test_needs_device"]
    growth.locator("button").click()
    assert growth.get_attribute("aria-sort") == "ascending"
    ids = _visible_ids(page)
    assert ids[0] == "tests/test_storage.py::test_compress"
    assert ids[-3] == "tests/test_vtt.py::test_stream_large_file"

    test_col = page.locator("#tests th", has_text="Test")
    test_col.locator("button").click()
    assert test_col.get_attribute("aria-sort") == "ascending"
    assert growth.get_attribute("aria-sort") is None
    ids = _visible_ids(page)
    assert ids == sorted(ids) and ids[0] == "tests/test_audio.py::test_decode_large_clip"
    assert report.errors == []


def test_filtering_by_text_and_verdict(report: Watched) -> None:
    page = report.page
    page.locator("#filter").fill("VTT")
    assert _visible_ids(page) == ["tests/test_vtt.py::test_stream_large_file",
                                  "tests/test_vtt.py::test_parse_small"]
    assert page.locator("#shown").inner_text() == "2 of 10 tests"
    page.locator("#filter").fill("")
    page.locator("#status-filter").select_option("fail")
    assert len(_visible_ids(page)) == 4
    page.locator("#filter").fill("cache")
    assert _visible_ids(page) == ["tests/test_cache.py::test_cache_leaks"]
    page.locator("#status-filter").select_option("none")
    page.locator("#filter").fill("")
    assert _visible_ids(page) == ["tests/test_mic.py::test_needs_device"]
    page.locator("#filter").fill("<script>")
    page.locator("#status-filter").select_option("all")
    assert _visible_ids(page) == [XSS_ID]
    assert report.errors == [] and report.dialogs == []


def test_table_link_opens_the_closed_details(report: Watched) -> None:
    page = report.page
    details = page.locator("details.mw-test", has_text="test_parse_small").first
    assert details.get_attribute("open") is None
    page.locator("#tests a", has_text="test_parse_small").click()
    assert details.get_attribute("open") == ""
    assert page.evaluate("location.hash") == f"#{details.get_attribute('id')}"


def test_download_button_saves_the_results_document(report: Watched, tmp_path: Path) -> None:
    page = report.page
    with page.expect_download() as info:
        page.locator("#download").click()
    download = info.value
    assert download.suggested_filename == "memwatch-results.json"
    target = tmp_path / "dl.json"
    download.save_as(str(target))
    assert json.loads(target.read_text()) == sample_doc()
    assert report.errors == []


def test_history_page(browser: Any, tmp_path: Path) -> None:
    runs = []
    for i in range(5):
        doc = small_doc(("t.py::steady", 200 * KiB, MiB), ("t.py::creeping", i * MiB, 2 * MiB),
                        started=f"2025-01-1{i}T10:00:00+00:00")
        runs.append((SavedRun(Path(f"000{i + 1}_main.json"), i + 1, "main", "M"), doc))
    path = tmp_path / "trend.html"
    path.write_text(render_history({"Linux-CPython-3.11-64bit": runs}, source=".memwatch"))
    for watched in _open(browser, path):
        page = watched.page
        assert page.locator("#shown").inner_text() == "2 of 2 tests"
        page.locator("#filter").fill("creep")
        assert page.locator(".mw-hist-test:visible").count() == 1
        page.locator("#filter").fill("")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "memwatch-history.png"), full_page=True)
        assert watched.errors == [] and watched.dialogs == []
        assert watched.requests == [path.as_uri()]


# -- a large report: rows rendered on demand ------------------------------------------

LARGE = 2000


@pytest.fixture(scope="module")
def large_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("large") / "report.html"
    path.write_text(render_report(big_doc(LARGE, failed_every=100)), encoding="utf-8")
    return path


def _drawn_ids(page: Any) -> list[str]:
    ids: list[str] = page.eval_on_selector_all(
        "#tests tbody tr[data-nodeid]", "rows => rows.map(r => r.dataset.nodeid)")
    return ids


def _rows_in_dom(page: Any) -> int:
    count: int = page.eval_on_selector_all("#tests tbody tr[data-nodeid]", "rows => rows.length")
    return count


def test_large_report_loads_fast_and_renders_only_the_rows_in_view(
        browser: Any, large_file: Path) -> None:
    for watched in _open(browser, large_file):
        page = watched.page
        load_ms = page.evaluate(
            "performance.getEntriesByType('navigation')[0].loadEventEnd")
        # The benchmark holds 50 000 tests to 3 s; 2 000 on a loaded CI machine, to 2 s.
        assert load_ms < 2000, load_ms
        assert page.locator("#shown").inner_text() == f"{LARGE} of {LARGE} tests"
        assert 0 < _rows_in_dom(page) < 200
        # First the failed verdicts, then the rest by growth.
        assert _drawn_ids(page)[0].startswith("tests/test_gen.py::test_")
        assert page.locator("#tests tbody tr").first.get_attribute("data-status") in (
            None, "fail")
        assert page.locator("#static-note").is_hidden()
        # Scrolled to the end, the last rows are drawn and the table is as tall as all rows.
        page.evaluate("() => { const b = document.querySelector('#tests tbody');"
                      " window.scrollTo(0, window.scrollY + b.getBoundingClientRect().bottom"
                      " - window.innerHeight); }")
        page.wait_for_function(
            "() => { const r = document.querySelectorAll('#tests tbody tr[data-status=pass]');"
            " return r.length > 0; }")
        last = page.evaluate(
            "() => { const r = [...document.querySelectorAll('#tests tbody tr[data-nodeid]')];"
            " return r[r.length - 1].getBoundingClientRect().bottom"
            " - document.querySelector('#tests tbody').getBoundingClientRect().bottom; }")
        assert abs(last) < 2
        ARTIFACTS.mkdir(exist_ok=True)
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(ARTIFACTS / "memwatch-report-large.png"))
        assert watched.errors == [] and watched.dialogs == []
        assert watched.requests == [large_file.as_uri()]


def test_large_report_filters_and_sorts_every_test(browser: Any, large_file: Path) -> None:
    for watched in _open(browser, large_file):
        page = watched.page
        page.locator("#filter").fill("test_1999[")
        assert _drawn_ids(page) == ["tests/test_gen.py::test_1999[1999]"]
        assert page.locator("#shown").inner_text() == f"1 of {LARGE} tests"
        page.locator("#filter").fill("")
        page.locator("#status-filter").select_option("fail")
        assert page.locator("#shown").inner_text() == f"{LARGE // 100} of {LARGE} tests"
        page.locator("#status-filter").select_option("all")
        growth = page.locator("#tests th", has_text="Growth")
        growth.locator("button").click()
        assert growth.get_attribute("aria-sort") == "descending"
        values = page.eval_on_selector_all(
            "#tests tbody tr[data-nodeid]", "rows => rows.map(r => Number(r.cells[3].dataset.v))")
        most = max(max(t["growth"]["rss"], t["growth"]["malloc"])
                   for t in big_doc(LARGE)["tests"])
        assert values == sorted(values, reverse=True) and values[0] == most
        test_col = page.locator("#tests th", has_text="Test")
        test_col.locator("button").click()
        ids = _drawn_ids(page)
        assert ids == sorted(ids) and ids[0] == "tests/test_gen.py::test_0[0]"
        # A row with details links to them; the markup in a test id stays text.
        page.locator("#filter").fill("<b>")
        row = page.locator("#tests tbody tr[data-nodeid]")
        assert row.count() == 1 and row.locator("td.mw-id").inner_text() == (
            "tests/test_gen.py::test_7[<b>7]")
        page.locator("#filter").fill("test_100[")
        page.locator("#tests a", has_text="test_100[").click()
        assert page.locator("details.mw-test[open]", has_text="test_100[").count() == 1
        assert watched.errors == [] and watched.dialogs == []


def test_large_report_without_javascript_lists_the_tests_that_matter(
        browser: Any, large_file: Path) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(large_file.as_uri())
    assert page.locator("#static-note").is_visible()
    rows = page.locator("#tests tbody tr[data-nodeid]")
    # Every failed test and the hundred that grew most, failed first.
    assert rows.count() == LARGE // 100 + 100
    assert rows.first.get_attribute("data-status") == "fail"
    assert page.locator("details.mw-test").count() == LARGE // 100 + 100
    context.close()
