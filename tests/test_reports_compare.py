"""Comparing runs: tolerance expressions, per-test changes, overrides, the table, machine checks."""

from __future__ import annotations

from typing import Any

import pytest
from _reports_sample import KiB, MiB, small_doc

from pytest_memwatch.config.tolerances import RELATIVE_FLOOR_BYTES, parse_tolerance
from pytest_memwatch.reports import compare
from pytest_memwatch.reports.compare import compare_docs, machine_warnings


@pytest.mark.parametrize(
    ("text", "metric", "relative", "absolute"),
    [
        ("growth:10%", "growth", 0.10, None),
        ("GROWTH : 2.5%", "growth", 0.025, None),
        ("peak:5MB", "peak", None, 5_000_000.0),
        ("peak:5", "peak", None, 5.0 * MiB),  # a bare number is MiB, as everywhere
        ("rss:512 KiB", "rss", None, 512.0 * KiB),
        ("malloc:0B", "malloc", None, 0.0),
        ("blocks:100", "blocks", None, 100.0),
        ("fds:0", "fds", None, 0.0),
        ("threads:50%", "threads", 0.5, None),
    ],
)
def test_parse_tolerance(text: str, metric: str, relative: float | None,
                         absolute: float | None) -> None:
    tol = parse_tolerance(text)
    assert (tol.metric, tol.relative, tol.absolute, tol.text) == (metric, relative, absolute, text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("growth", "expected METRIC:TOLERANCE, e.g. growth:10% or peak:5MB"),
        ("growth:", "expected METRIC:TOLERANCE, e.g. growth:10% or peak:5MB"),
        ("growht:10%", "unknown metric 'growht'; expected one of growth, peak, rss, malloc, "
                       "blocks, gc_objects, fds, threads (METRIC:TOLERANCE, e.g. growth:10% or "
                       "peak:5MB)"),
        ("growth:ten%", "cannot read 'ten%' as a percentage, e.g. growth:10%"),
        ("growth:-5%", "the percentage must be 0 or more, e.g. growth:10%"),
        ("peak:5 parsecs", "unknown size unit 'parsecs' in '5 parsecs'; use 50 (MiB) or "
                           "\"512 KiB\", \"2MB\", \"1.5 GiB\", \"64B\", or a percentage such as "
                           "peak:10%"),
        ("blocks:1.5", "blocks is a count: expected a whole number or a percentage, "
                       "e.g. blocks:100 or blocks:10%"),
        ("fds:-1", "the tolerance must be 0 or more, e.g. fds:100"),
    ],
)
def test_parse_tolerance_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_tolerance(text)
    assert str(info.value) == message


def test_percentage_allows_at_least_the_noise_floor() -> None:
    tol = parse_tolerance("growth:10%")
    assert tol.allowed(0) == RELATIVE_FLOOR_BYTES == 32 * KiB
    assert tol.allowed(10 * MiB) == pytest.approx(1 * MiB)
    assert tol.allowed(-10 * MiB) == pytest.approx(1 * MiB)
    assert parse_tolerance("blocks:10%").allowed(0) == 0  # counts are exact
    assert parse_tolerance("growth:0B").allowed(5 * MiB) == 0


def _docs() -> tuple[dict[str, Any], dict[str, Any]]:
    old = small_doc(("t.py::same", 1 * MiB, 2 * MiB), ("t.py::worse", 1 * MiB, 2 * MiB),
                    ("t.py::peakier", 0, 2 * MiB), ("t.py::gone", 5 * MiB, 1 * MiB))
    new = small_doc(("t.py::same", 1 * MiB, 2 * MiB), ("t.py::worse", 2 * MiB, 2 * MiB),
                    ("t.py::peakier", 0, 9 * MiB), ("t.py::fresh", 3 * MiB, 1 * MiB))
    return old, new


def test_compare_statuses_and_figures() -> None:
    old, new = _docs()
    result = compare_docs(old, new, ["growth:10%", "peak:5MB"], baseline={"label": "0003_main"})
    by_id = {t.nodeid: t for t in result.tests}
    assert {n: t.status for n, t in by_id.items()} == {
        "t.py::same": "same",
        "t.py::worse": "regressed",
        "t.py::peakier": "regressed",
        "t.py::fresh": "new",
        "t.py::gone": "removed",
    }
    assert by_id["t.py::worse"].metrics["growth"] == {"old": MiB, "new": 2 * MiB, "delta": MiB}
    assert by_id["t.py::fresh"].metrics["growth"] == {"old": None, "new": 3 * MiB, "delta": None}
    assert by_id["t.py::gone"].metrics["peak"] == {"old": MiB, "new": None, "delta": None}
    assert result.regressions == [
        "REGRESSION t.py::worse: growth 1.0 MiB -> 2.0 MiB (+1.0 MiB, +100%) exceeds growth:10% "
        "(allowed +102.4 KiB)",
        "REGRESSION t.py::peakier: peak 2.0 MiB -> 9.0 MiB (+7.0 MiB, +350%) exceeds peak:5MB",
    ]


def test_no_tolerances_means_no_regressions() -> None:
    old, new = _docs()
    result = compare_docs(old, new)
    assert result.regressions == []
    assert {t.status for t in result.tests} == {"same", "changed", "new", "removed"}


def test_a_tests_own_expressions_override_the_sessions_for_their_metric() -> None:
    old, new = _docs()
    for t in new["tests"]:
        if t["nodeid"] == "t.py::worse":
            t["compare_fail"] = ["growth:200%"]  # this test may double
        if t["nodeid"] == "t.py::same":
            t["compare_fail"] = ["blocks:0"]  # adds a metric; session's growth still applies
    result = compare_docs(old, new, ["growth:10%", "peak:5MB"])
    by_id = {t.nodeid: t for t in result.tests}
    assert by_id["t.py::worse"].status == "changed"
    assert by_id["t.py::same"].status == "same"
    assert set(by_id["t.py::same"].metrics) == {"growth", "peak", "blocks"}
    assert [r.split(": ")[0] for r in result.regressions] == ["REGRESSION t.py::peakier"]


def test_bad_expressions_are_regressions_not_silence() -> None:
    old, new = _docs()
    new["tests"][0]["compare_fail"] = ["growth:lots"]
    result = compare_docs(old, new, ["gorwth:10%"])
    assert result.regressions == [
        "REGRESSION cannot check: bad compare_fail expression 'gorwth:10%' "
        "(--memwatch-compare-fail): unknown metric 'gorwth'; expected one of growth, peak, rss, "
        "malloc, blocks, gc_objects, fds, threads (METRIC:TOLERANCE, e.g. growth:10% or "
        "peak:5MB)",
        "REGRESSION cannot check: bad compare_fail expression 'growth:lots' (t.py::same): "
        "cannot read 'lots' as a size; use 50 (MiB) or \"512 KiB\", \"2MB\", \"1.5 GiB\", "
        "\"64B\", or a percentage such as growth:10%",
    ]


def test_unmeasured_values_are_never_regressions() -> None:
    old = small_doc(("t.py::a", MiB, MiB))
    new = small_doc(("t.py::a", 50 * MiB, 50 * MiB))
    new["tests"][0]["growth"] = {"rss": None, "malloc": None}
    new["tests"][0]["peak_growth"] = None
    result = compare_docs(old, new, ["growth:0B", "peak:0B"])
    assert result.regressions == []


def test_table_lists_regressions_then_changes_new_and_removed() -> None:
    old, new = _docs()
    old["run"]["commit"] = "abcdef0123456789"
    lines = compare_docs(old, new, ["growth:10%"], baseline={"label": "0003_main"}).table()
    assert lines[0] == (
        "compared with 0003_main (run of 2025-01-15T10:00:00+00:00, commit abcdef012345): "
        "3 in both, 1 regressed, 1 new, 1 removed"
    )
    assert lines[1].split() == ["status", "growth", "was", "now", "change", "peak", "was", "now",
                                "change", "test"]
    assert [line.split()[0] for line in lines[2:6]] == ["REGRESSED", "CHANGED", "NEW", "REMOVED"]
    assert lines[2].split() == ["REGRESSED", "1.0", "MiB", "2.0", "MiB", "+1.0", "MiB", "2.0",
                                "MiB", "2.0", "MiB", "0", "B", "t.py::worse"]
    assert lines[-1].startswith("  REGRESSION t.py::worse: growth 1.0 MiB -> 2.0 MiB")
    # "same" tests are not listed unless asked for.
    assert not any("t.py::same" in line for line in lines)
    assert any("t.py::same" in line for line in
               compare_docs(old, new, ["growth:10%"]).table(None))
    assert not any(line.startswith("  REGRESSION") for line in
                   compare_docs(old, new, ["growth:10%"]).table(regressions=False))


def test_table_caps_long_groups_but_never_regressions() -> None:
    old = small_doc(*[(f"t.py::t{i}", MiB, MiB) for i in range(30)])
    new = small_doc(*[(f"t.py::t{i}", 3 * MiB, MiB) for i in range(30)],
                    *[(f"t.py::n{i}", MiB, MiB) for i in range(15)])
    lines = compare_docs(old, new, ["growth:10%"]).table(5)
    assert sum(line.startswith("  REGRESSED") for line in lines) == 30
    assert sum(line.startswith("  NEW") for line in lines) == 5
    assert "  ... and 10 more new (show all with --all)" in lines


def test_unchanged_comparison_says_so() -> None:
    doc = small_doc(("t.py::a", MiB, MiB))
    assert compare_docs(doc, doc).table()[1:] == ["  no test changed"]


def test_to_dict_is_the_documented_comparison() -> None:
    old, new = _docs()
    d = compare_docs(old, new, ["growth:10%"], baseline={"label": "0003_main",
                                                         "path": "x.json"}).to_dict()
    assert d["baseline"] == {"label": "0003_main", "path": "x.json",
                             "started_at": "2025-01-15T10:00:00+00:00", "commit": None}
    assert d["tolerances"] == ["growth:10%"]
    assert d["regressions"] == 1
    assert {t["status"] for t in d["tests"]} == {"same", "regressed", "changed", "new",
                                                  "removed"}


def test_machine_warnings() -> None:
    old = small_doc(("t.py::a", 1, 1), host="ci-1", workers=1)
    assert machine_warnings(old, small_doc(("t.py::a", 1, 1), host="ci-1"), "0001_x") == []
    new = small_doc(("t.py::a", 1, 1), host="laptop", workers=4)
    new["run"]["machine"]["total_memory"] = 16 * 1024 * MiB
    assert machine_warnings(old, new, "0001_x") == [
        "baseline 0001_x was recorded on another machine (hostname ci-1 vs laptop, "
        "total_memory 8.0 GiB vs 16.0 GiB; baseline vs this run): memory figures may not be "
        "comparable",
        "baseline 0001_x ran with 1 worker(s), this run with 4: per-test memory depends on what "
        "shares a process",
    ]
