"""The results data model: plain JSON-able data that survives a round trip."""

from __future__ import annotations

import json

from pytest_memwatch.reports.results import SCHEMA_VERSION, Results, RunMeta, TestResult, totals


def full_result(
    nodeid: str = "tests/test_a.py::test_x[1-2]", worker: str | None = "gw1"
) -> TestResult:
    sample = {
        "t": 1.5,
        "rss": 1000,
        "malloc": 50,
        "blocks": 7,
        "gc_objects": 3,
        "fds": 4,
        "threads": 1,
    }
    return TestResult(
        nodeid=nodeid,
        outcome="failed",
        worker=worker,
        duration_s=0.1234567891,
        before=sample,
        after={**sample, "rss": 5096},
        growth={"rss": 4096, "malloc": None, "blocks": 2},
        peak_rss=9000,
        peak_growth=8000,
        runs=[{"warmup": True, "delta": {"blocks": 1}, "after": sample, "peak_rss": None}],
        verdicts=[
            {
                "kind": "leak",
                "source": "option",
                "passed": False,
                "message": "leak: x",
                "metric": "blocks",
                "limit": None,
                "measured": 1.0,
                "details": {"runs": 5},
            },
            {
                "kind": "max_memory",
                "source": "marker",
                "passed": True,
                "message": "ok",
                "metric": "peak_rss",
                "limit": 10,
                "measured": 5,
                "details": {},
            },
        ],
        attribution={
            "sites": [],
            "types": [],
            "chains": [],
            "note": "n",
            "runs": 3,
            "trace_frames": 10,
            "traced_growth": 0,
        },
        soak={"samples": [[0.0, 1], [1.0, 2]]},
        markers=["no_leaks", "max_memory"],
        compare_fail=["growth:10%"],
    )


def test_round_trip_keeps_every_field() -> None:
    original = full_result()
    d = original.to_dict()
    again = TestResult.from_dict(json.loads(json.dumps(d)))
    assert again.to_dict() == d
    assert again == TestResult.from_dict(d)
    assert d["duration_s"] == 0.123457


def test_round_trip_of_a_minimal_result() -> None:
    minimal = TestResult("t.py::test_y")
    d = minimal.to_dict()
    assert "compare_fail" not in d  # only written when a test has rules of its own
    assert d["outcome"] == "passed"
    assert d["before"] is None and d["runs"] == [] and d["verdicts"] == []
    assert TestResult.from_dict(d) == minimal
    assert TestResult.from_dict({"nodeid": "t.py::test_y"}) == minimal


def test_to_dict_copies_rather_than_shares_lists() -> None:
    r = full_result()
    d = r.to_dict()
    d["markers"].append("x")
    d["verdicts"].clear()
    assert r.markers == ["no_leaks", "max_memory"]
    assert len(r.verdicts) == 2


def test_failed_verdicts() -> None:
    r = full_result()
    assert [v["kind"] for v in r.failed_verdicts] == ["leak"]
    assert TestResult("t").failed_verdicts == []


def test_totals() -> None:
    measured = full_result("a", worker="gw0")
    clean = TestResult(
        "b", before={"rss": 1}, growth={"rss": 100, "malloc": 5000}, peak_rss=20_000, worker="gw1"
    )
    unmeasured = TestResult("c", not_measured="memwatch_skip")
    t = totals([measured, clean, unmeasured])
    assert t == {
        "tests": 3,
        "measured": 2,
        "failed_verdicts": 1,
        "total_growth_rss": 4196,
        # growth as every output shows it: the larger of RSS and malloc, per test.
        "total_growth": 4096 + 5000,
        "max_peak_rss": 20_000,
        "by_worker": {
            "gw0": {"measured": 1, "failed_verdicts": 1, "growth_rss": 4096, "growth": 4096},
            "gw1": {"measured": 1, "failed_verdicts": 0, "growth_rss": 100, "growth": 5000},
        },
    }
    assert totals([])["max_peak_rss"] is None


def test_results_document() -> None:
    meta = RunMeta(plugin_version="0.1.0", pytest_version="9.0", args=["--memwatch"])
    doc = Results(meta, [full_result(), TestResult("t.py::test_z")]).to_dict()
    assert doc["schema_version"] == SCHEMA_VERSION == 1
    assert doc["tool"] == "pytest-memwatch"
    assert doc["run"]["plugin_version"] == "0.1.0"
    assert doc["run"]["args"] == ["--memwatch"]
    assert set(doc["run"]["machine"]) >= {"hostname", "system", "arch", "cpu_count"}
    assert [t["nodeid"] for t in doc["tests"]] == ["tests/test_a.py::test_x[1-2]", "t.py::test_z"]
    assert doc["totals"]["tests"] == 2
    json.dumps(doc)  # plain data all the way down
