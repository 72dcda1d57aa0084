"""The HTML report and history page, checked as text (the browser test checks behaviour)."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from _reports_sample import LEAKY_ID, SOAK_ID, XSS_ID, MiB, sample_doc, small_doc

from pytest_memwatch.base.units import format_rate
from pytest_memwatch.reports import charts, history
from pytest_memwatch.reports import html as report_html
from pytest_memwatch.reports.baselines import SavedRun
from pytest_memwatch.reports.compare import compare_docs
from pytest_memwatch.reports.merge import merge_documents
from pytest_memwatch.reports.results import Results, RunMeta, TestResult

ROOT = Path(__file__).resolve().parents[1]


class Elements(HTMLParser):
    """Collects start tags with attributes, and the text of <script> elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v
                                                             for k, v in attrs.items())]


def parse(page: str) -> Elements:
    parser = Elements()
    parser.feed(page)
    parser.close()
    return parser


@pytest.fixture(scope="module")
def page() -> str:
    return report_html.render_report(sample_doc())


def test_test_ids_and_reprs_are_escaped(page: str) -> None:
    assert "<script>alert(1)" not in page
    assert "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "# &lt;b&gt;not bold&lt;/b&gt;" in page  # a source line in a traceback
    # Only one script runs: the inert data blocks (document, table rows) are data.
    elements = parse(page)
    assert [a.get("type") for a in elements.find("script")] == [
        "application/json", "application/json", None]


def test_embedded_data_cannot_end_its_script_block_and_round_trips(page: str) -> None:
    data = parse(page).scripts[0]
    assert "</" not in data and "<" not in data
    assert json.loads(data) == sample_doc()


def test_content_security_policy_allows_only_the_reports_own_script(page: str) -> None:
    elements = parse(page)
    csp = elements.find("meta", **{"http-equiv": "Content-Security-Policy"})[0]["content"]
    assert csp is not None
    script = elements.scripts[2]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp
    assert "default-src 'none'" in csp


def test_page_loads_nothing_from_outside(page: str) -> None:
    elements = parse(page)
    assert not elements.find("link")
    assert all(a.get("src") is None for _, a in elements.tags)
    hrefs = [a["href"] for _, a in elements.tags if a.get("href")]
    assert hrefs and all(h is not None and h.startswith("#") for h in hrefs)
    assert "@import" not in page and "url(" not in page.replace("url(#", "")


def test_summary(page: str) -> None:
    assert "4 tests failed a memory verdict" in page
    assert re.search(r'<div class="mw-n">9<span[^>]*> / 10</span></div>'
                     r'<div class="mw-l">tests measured</div>', page)
    grew = re.findall(r'<li><span>([^<]+)</span><span class="mw-barcell">', page)
    assert grew == ["+3.0 MiB", "+100.0 KiB", "+64.0 KiB", "+12.0 KiB", "+4.0 KiB", "+1.0 KiB"]


def test_table_rows_failed_first_then_largest_growth(page: str) -> None:
    rows = parse(page).find("tr")
    ids = [html.unescape(r["data-nodeid"] or "") for r in rows if "data-nodeid" in r]
    status = [r["data-status"] for r in rows if "data-nodeid" in r]
    assert len(ids) == 10 and ids[0] == LEAKY_ID
    assert status == ["fail"] * 4 + ["pass"] * 5 + ["none"]
    assert ids[4:8] == ["tests/test_vtt.py::test_stream_large_file",
                        "tests/test_vtt.py::test_parse_small",
                        "tests/test_cache.py::test_cache_bounded",
                        "tests/test_clean.py::test_clean"]
    assert ids[-1] == "tests/test_mic.py::test_needs_device"


def test_details_closed_but_the_first_failure_and_link_from_the_table(page: str) -> None:
    elements = parse(page)
    details = elements.find("details")
    tests = [d for d in details if d.get("class") == "mw-test"]
    assert len(tests) == 9  # every measured test; the skipped one has none
    # Four failed, one opens: a page of open folds is a wall to scroll past.
    assert [html.unescape(d["data-nodeid"] or "") for d in tests if "open" in d] == [LEAKY_ID]
    assert [d["data-status"] for d in tests].count("fail") == 4
    anchors = {d["id"] for d in tests}
    links = {a["href"][1:] for a in elements.find("a") if a.get("href")}  # type: ignore[index]
    assert anchors == links


def test_runs_chart_and_table(page: str) -> None:
    start = page.index(f'<code>{LEAKY_ID}</code>')
    section = page[start:page.index("</details>\n<details", start)]
    assert 'aria-label="memory per run"' in section
    assert "2 warmup runs" in section
    assert section.count('<tr class="mw-warmup">') == 2
    assert "run 7: malloc +64.0 KiB this run" in section


def test_reference_chain_is_drawn_root_to_leak(page: str) -> None:
    start = page.index(f'<code>{LEAKY_ID}</code>')
    section = page[start:page.index("</details>\n<details", start)]
    chain = re.findall(r'<span role="listitem" class="mw-link[^"]*"><b>([^<]+)</b>', section)
    assert chain == ["module", "reference_app.cache.AdaptiveCache", "dict", "dict", "bytearray"]
    vias = re.findall(r'&rarr; <code>([^<]+)</code>', section)
    assert vias[:4] == ["._GLOBAL_CACHE", ".__dict__", "[&#39;_entries&#39;]", "[&#39;k0&#39;]"]
    assert 'class="mw-link mw-root"' in section and 'class="mw-link mw-leaked"' in section


def test_soak_chart_marks_warmup_trend_and_limit(page: str) -> None:
    start = page.index(f'<code>{SOAK_ID}</code>')
    section = page[start:page.index("</details>", start)]
    assert 'aria-label="rss over time"' in section
    assert "warmup (not fitted)" in section
    assert 'class="mw-trend"' in section and "trend +6.9 MiB/h" in section
    assert 'class="mw-limit"' in section and "limit +1.0 MiB/h" in section
    assert "61 samples" in section


def test_run_metadata(page: str) -> None:
    for text in ("ci-runner-1", "0123456789abcdef0123456789abcdef01234567", "9.2.0",
                 "3.11.9", "8.0 GiB", "--memwatch --memwatch-html=report.html"):
        assert text in page


def test_empty_run_renders() -> None:
    doc = Results(RunMeta(plugin_version="0.1.0", pytest_version="9.2.0")).to_dict()
    page = report_html.render_report(doc)
    assert "This run has no tests." in page
    assert "No test was measured" in page


def test_unavailable_probes_render_as_na() -> None:
    test = TestResult("t.py::a", before={"t": 0.0, "rss": None, "malloc": None, "blocks": 5,
                                         "gc_objects": None, "fds": None, "threads": 1},
                      after={"t": 1.0, "rss": None, "malloc": None, "blocks": 9,
                             "gc_objects": None, "fds": None, "threads": 1},
                      growth={"rss": None, "malloc": None, "blocks": 4, "gc_objects": None,
                              "fds": None, "threads": 0})
    meta = RunMeta(plugin_version="0.1.0", pytest_version="9.2.0",
                   unavailable_probes={"malloc": "no mallinfo2"})
    page = report_html.render_report(Results(meta, [test]).to_dict())
    assert "n/a" in page and "no mallinfo2" in page


def test_merged_document_lists_its_shards() -> None:
    merged, _ = merge_documents([("shard-1.json", small_doc(("t.py::a", 1, 1), host="h1")),
                                 ("shard-2.json", small_doc(("t.py::b", 1, 1), host="h2"))])
    page = report_html.render_report(merged)
    assert "merged from 2 shards" in page
    assert "<code>shard-1.json</code></td><td>h1</td>" in page
    assert "shard 1" in page


def test_comparison_column_and_banner() -> None:
    old = small_doc(("t.py::a", MiB, MiB), ("t.py::gone", MiB, MiB))
    new = small_doc(("t.py::a", 3 * MiB, MiB), ("t.py::new", MiB, MiB))
    new["comparison"] = compare_docs(old, new, ["growth:10%"],
                                     baseline={"label": "0007_main"}).to_dict()
    page = report_html.render_report(new)
    assert "1 regression against baseline 0007_main (growth:10%)" in page
    assert "vs baseline" in page
    assert "Removed since the baseline: <code>t.py::gone</code>" in page
    assert "exceeds growth:10%" in page


def test_title_is_escaped() -> None:
    page = report_html.render_report(sample_doc(), title="<b>nightly</b>")
    assert "<title>&lt;b&gt;nightly&lt;/b&gt;</title>" in page


@pytest.mark.parametrize(
    ("lo", "hi", "unit", "expected"),
    [
        (0, 10, "count", [0, 2, 4, 6, 8, 10]),
        (0, 7, "run", [0, 2, 4, 6]),
        (0, 3 * MiB, "bytes", [0, MiB, 2 * MiB, 3 * MiB]),
        (0, 700 * 1024, "bytes", [0, 200 * 1024, 400 * 1024, 600 * 1024]),
        (0, 600, "seconds", [0, 120, 240, 360, 480, 600]),
        (-1000, 1000, "count", [-1000, -500, 0, 500, 1000]),
        (5, 5, "count", [5, 6]),
    ],
)
def test_ticks(lo: float, hi: float, unit: str, expected: list[float]) -> None:
    assert charts.ticks(lo, hi, unit) == pytest.approx(expected)


def test_format_rate() -> None:
    assert format_rate(1024 * 1024 / 3600) == "+1.0 MiB/h"
    assert format_rate(None) == "n/a"


def test_history_page() -> None:
    runs = []
    for i in range(4):
        doc = small_doc(("t.py::a", (i + 1) * MiB, MiB), ("t.py::<b>x</b>", 0, 0),
                        started=f"2025-01-1{i}T10:00:00+00:00")
        if i == 2:
            doc["tests"] = doc["tests"][:1]  # a test missing from one run leaves a gap
        runs.append((SavedRun(Path(f"000{i + 1}_main.json"), i + 1, "main", "M"), doc))
    page = history.render_history({"M": runs}, ["saved run x.json: broken"],
                                      source=".memwatch")
    assert "total growth per run" in page
    assert "t.py::&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page
    assert "saved run x.json: broken" in page
    assert page.index("t.py::a") < page.index("t.py::&lt;b&gt;")  # largest latest growth first
    assert "0004_main: growth 4.0 MiB" in page


def _runs_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return next(t for t in doc["tests"] if t["nodeid"] == LEAKY_ID)["runs"]  # type: ignore[no-any-return]


def test_runs_chart_breaks_line_on_missing_readings() -> None:
    doc = sample_doc()
    runs = _runs_of(doc)
    runs[3]["after"]["rss"] = None
    test = next(t for t in doc["tests"] if t["nodeid"] == LEAKY_ID)
    chart = charts.runs_chart(test, "c")
    assert chart is not None
    rss = next(s for s in chart.series if s.name == "rss")
    assert rss.path.count("M") == 2 and len(rss.points) == 7


def test_reports_modules_do_not_import_pytest() -> None:
    code = (
        "import sys\n"
        "import pytest_memwatch.reports.outputs, pytest_memwatch.reports.results_file, pytest_memwatch.reports.html\n"
        "import pytest_memwatch.reports.baselines, pytest_memwatch.reports.compare, pytest_memwatch.cli\n"
        "assert 'pytest' not in sys.modules and '_pytest' not in sys.modules, 'pytest imported'\n"
    )
    # -S -I would also hide site-packages; only keep pytest's own plugins from autoloading.
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT,
                   env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_xss_id_is_in_the_sample() -> None:
    assert XSS_ID in [t["nodeid"] for t in sample_doc()["tests"]]


def test_per_worker_totals_are_shown_when_there_are_several_workers() -> None:
    from pytest_memwatch.reports.html import render_report

    doc = sample_doc()
    doc["totals"]["by_worker"] = {
        "gw0": {"measured": 3, "failed_verdicts": 1, "growth_rss": 4096},
        "gw1": {"measured": 2, "failed_verdicts": 0, "growth_rss": 0},
    }
    html = render_report(doc)
    table = html[html.index('id="workers"') : html.index("</table>", html.index('id="workers"'))]
    assert "<code>gw0</code></td><td>3</td><td>1</td><td>+4.0 KiB</td>" in table
    assert "<code>gw1</code></td><td>2</td><td>0</td>" in table
    assert "<b>all</b>" in table


def test_no_per_worker_table_for_a_serial_run() -> None:
    from pytest_memwatch.reports.html import render_report

    doc = sample_doc()
    doc["totals"]["by_worker"] = {"main": {"measured": 3, "failed_verdicts": 0, "growth_rss": 0}}
    assert 'id="workers"' not in render_report(doc)
