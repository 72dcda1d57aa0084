"""outputs.finish_run, the plugin's one call at session end, and the per-test helpers."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from _reports_sample import LEAKY_ID, XSS_ID, MiB, sample_doc, small_doc

from pytest_memwatch.config.settings import Settings
from pytest_memwatch.reports import baselines, outputs
from pytest_memwatch.reports.outputs import OutputOutcome, finish_run, junit_properties
from pytest_memwatch.reports.results_file import load_results
from pytest_memwatch.reports.validation import load_schema

M = baselines.machine_id()


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_nothing_asked_nothing_done(cwd: Path) -> None:
    assert finish_run(sample_doc(), Settings(), str(cwd)) == OutputOutcome([], [], [])
    assert os.listdir(cwd) == []


def test_json_and_html_are_written_relative_to_the_working_directory(
    cwd: Path, tmp_path: Path
) -> None:
    doc = sample_doc()
    out = finish_run(doc, Settings(json="out/r.json", html="r.html"), str(tmp_path / "root"))
    assert out.lines == ["results JSON written to out/r.json", "HTML report written to r.html"]
    assert out.warnings == out.regressions == []
    written = load_results(cwd / "out" / "r.json")
    assert written == doc
    jsonschema.validate(written, load_schema())
    assert "<!DOCTYPE html>" in (cwd / "r.html").read_text()


def test_unwritable_output_is_a_warning_not_a_crash(cwd: Path) -> None:
    (cwd / "afile").write_text("x")
    out = finish_run(sample_doc(), Settings(json="afile/r.json", html="r.html"), str(cwd))
    assert out.warnings == ["memwatch: cannot write the results JSON to afile/r.json: "
                            f"{cwd / 'afile'} is not a directory"]
    assert out.lines == ["HTML report written to r.html"]
    assert sorted(os.listdir(cwd)) == ["afile", "r.html"]


def test_a_renderer_bug_is_a_warning(cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_memwatch.reports import html as report_html

    def broken(doc: Any) -> Iterator[str]:
        # The page streams to disk: a bug may strike after part of it is written.
        yield "<!DOCTYPE html>"
        raise KeyError("boom")

    monkeypatch.setattr(report_html, "iter_report", broken)
    out = finish_run(sample_doc(), Settings(html="r.html"), str(cwd))
    assert out.warnings == [
        "memwatch: could not render the HTML report (KeyError: 'boom'); r.html was not "
        "written. Please report this as a pytest-memwatch bug."
    ]
    assert os.listdir(cwd) == []


def test_save_creates_storage_under_rootdir(cwd: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    out = finish_run(sample_doc(), Settings(save="main"), str(root))
    saved = root / ".memwatch" / M / "0001_main.json"
    assert out.lines == [f"run saved as {saved}"]
    assert (root / ".memwatch" / ".gitignore").exists()
    assert load_results(saved) == sample_doc()


def test_save_io_error_is_a_warning_and_leaves_no_file(cwd: Path) -> None:
    (cwd / "blocked").write_text("a file where the storage directory should be")
    out = finish_run(sample_doc(), Settings(save="main", storage="blocked/.memwatch"),
                     str(cwd))
    assert out.warnings == [
        f"memwatch: could not save this run as 'main' in blocked/.memwatch: {cwd / 'blocked'} "
        "is not a directory; nothing was saved"
    ]
    assert out.regressions == []
    assert sorted(os.listdir(cwd)) == ["blocked"]


def test_first_compare_without_baseline_is_a_note(cwd: Path) -> None:
    out = finish_run(sample_doc(), Settings(compare="", save="main"), str(cwd))
    assert out.lines == [
        "no saved run to compare with yet in .memwatch (first run?); save one with "
        "--memwatch-save=NAME",
        f"run saved as .memwatch/{M}/0001_main.json",
    ]
    assert out.warnings == out.regressions == []


def test_compare_named_run_that_does_not_exist_warns(cwd: Path) -> None:
    baselines.save_run(small_doc(("t.py::a", 1, 1)), cwd / ".memwatch", "main")
    out = finish_run(small_doc(("t.py::a", 1, 1)), Settings(compare="release"), str(cwd))
    assert out.warnings == [
        f"memwatch: no saved run matches --memwatch-compare=release in .memwatch/{M} "
        "(saved runs: 0001_main); nothing was compared"
    ]


def test_compare_with_latest_then_save(cwd: Path) -> None:
    settings = Settings(save="main", compare="", compare_fail=("growth:10%",),
                        json="r.json", html="r.html")
    first = small_doc(("t.py::a", MiB, MiB), ("t.py::b", MiB, MiB))
    finish_run(first, Settings(save="main"), str(cwd))
    second = small_doc(("t.py::a", 3 * MiB, MiB), ("t.py::b", MiB, MiB))
    out = finish_run(second, settings, str(cwd))
    assert out.regressions == [
        "REGRESSION t.py::a: growth 1.0 MiB -> 3.0 MiB (+2.0 MiB, +200%) exceeds growth:10% "
        "(allowed +102.4 KiB)"
    ]
    assert out.lines[0] == ("compared with 0001_main (run of 2025-01-15T10:00:00+00:00): "
                            "2 in both, 1 regressed, 0 new, 0 removed")
    # The plugin prints the regressions itself: the table does not repeat them.
    assert not any(line.lstrip().startswith("REGRESSION") for line in out.lines)
    assert out.lines[-1] == f"run saved as .memwatch/{M}/0002_main.json"
    # Compared before saving: the run was not compared with itself.
    written = load_results("r.json")
    assert written["comparison"]["baseline"]["label"] == "0001_main"
    assert written["comparison"]["regressions"] == 1
    jsonschema.validate(written, load_schema())
    assert "1 regression" in Path("r.html").read_text()
    # The saved baseline is the plain run, without the comparison.
    assert "comparison" not in load_results(f".memwatch/{M}/0002_main.json")


def test_compare_by_number_and_per_test_override(cwd: Path) -> None:
    finish_run(small_doc(("t.py::a", MiB, MiB)), Settings(save="base"), str(cwd))
    finish_run(small_doc(("t.py::a", 9 * MiB, MiB)), Settings(save="other"), str(cwd))
    new = small_doc(("t.py::a", 2 * MiB, MiB))
    new["tests"][0]["compare_fail"] = ["growth:150%"]
    out = finish_run(new, Settings(compare="0001", compare_fail=("growth:10%",)), str(cwd))
    assert out.regressions == []
    assert out.lines[0].startswith("compared with 0001_base ")


def test_baseline_from_another_machine_or_worker_count_warns(cwd: Path) -> None:
    storage = cwd / ".memwatch"
    baselines.save_run(small_doc(("t.py::a", MiB, MiB), host="laptop", workers=2), storage,
                       "main", "Darwin-CPython-3.11-64bit")
    out = finish_run(small_doc(("t.py::a", MiB, MiB)), Settings(compare=""), str(cwd))
    assert out.warnings == [
        "memwatch: baseline Darwin-CPython-3.11-64bit/0001_main was recorded on another machine "
        "(hostname laptop vs ci-runner-1; baseline vs this run): memory figures may not be "
        "comparable",
        "memwatch: baseline Darwin-CPython-3.11-64bit/0001_main ran with 2 worker(s), this run "
        "with 1: per-test memory depends on what shares a process",
    ]


def test_corrupt_baseline_is_reported_and_left_untouched(cwd: Path) -> None:
    folder = cwd / ".memwatch" / M
    folder.mkdir(parents=True)
    bad = folder / "0001_main.json"
    bad.write_text('{"schema_version": 1}')
    out = finish_run(small_doc(("t.py::a", 1, 1)),
                     Settings(compare="", save="main", compare_fail=("growth:1%",)), str(cwd))
    assert out.warnings == [
        f"memwatch: saved run {bad}: not a pytest-memwatch results document (tool is null); "
        "it was left untouched; nothing was compared"
    ]
    assert bad.read_text() == '{"schema_version": 1}'
    assert out.lines == [f"run saved as .memwatch/{M}/0002_main.json"]


def test_bad_session_expression_fails_the_run(cwd: Path) -> None:
    finish_run(small_doc(("t.py::a", 1, 1)), Settings(save="x"), str(cwd))
    out = finish_run(small_doc(("t.py::a", 1, 1)), Settings(compare="",
                                                            compare_fail=("growth:lots",)),
                     str(cwd))
    assert len(out.regressions) == 1
    assert out.regressions[0].startswith(
        "REGRESSION cannot check: bad compare_fail expression 'growth:lots' "
        "(--memwatch-compare-fail): cannot read 'lots' as a size"
    )


# -- junit properties and the pytest-html section ------------------------------------


def _test(nodeid: str) -> dict[str, Any]:
    return next(t for t in sample_doc()["tests"] if t["nodeid"] == nodeid)


def test_junit_properties() -> None:
    props = dict(junit_properties(_test(LEAKY_ID)))
    assert props["memwatch_growth"] == str(64 * 1024)
    assert props["memwatch_growth_rss"] == str(64 * 1024)
    assert props["memwatch_growth_blocks"] == "1024"
    assert props["memwatch_runs"] == "7"
    assert props["memwatch_leak"] == "failed"
    assert props["memwatch_leak_message"].startswith("leak: malloc grows +64.0 KiB/run")
    assert props["memwatch_max_growth"] == "failed"
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in props.items())
    assert junit_properties({"nodeid": "x", "growth": {}, "verdicts": []}) == []


def test_html_section_is_escaped_and_static() -> None:
    html = outputs.html_section(_test(XSS_ID))
    assert "<script" not in html
    assert "&lt;/script&gt;&lt;script&gt;alert(&#39;verdict&#39;)" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    assert html.startswith('<div class="mw-section">')
    assert "max_memory" in html and "Attribution" in html


def test_html_section_of_repeated_test_has_a_chart() -> None:
    html = outputs.html_section(_test(LEAKY_ID))
    assert "<svg" in html and "memory per run" in html


def test_html_sections_of_different_tests_have_distinct_svg_ids() -> None:
    def clip_ids(html: str) -> set[str]:
        return set(re.findall(r'<clipPath id="([^"]+)"', html))

    leaky = clip_ids(outputs.html_section(_test(LEAKY_ID)))
    steady = clip_ids(outputs.html_section(_test("tests/test_cache.py::test_cache_bounded")))
    assert leaky and steady and not leaky & steady
