"""The results data model: plain JSON-able data that survives a round trip."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pytest_memwatch.reports import document
from pytest_memwatch.reports.validation import load_schema
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


# -- the document's types agree with the published schema ---------------------------

# Each TypedDict and the schema object it stands for, as a path into the schema.
TYPED_OBJECTS: list[tuple[type, tuple[str, ...]]] = [
    (document.ResultsDoc, ()),
    (document.RunMetaDoc, ("$defs", "run_meta")),
    (document.MachineDoc, ("$defs", "machine")),
    (document.WorkerInfoDoc,
     ("$defs", "run_meta", "properties", "worker_info", "additionalProperties")),
    (document.SampleDoc, ("$defs", "sample")),
    (document.RunEntryDoc, ("$defs", "run")),
    (document.VerdictDoc, ("$defs", "verdict")),
    (document.FrameDoc, ("$defs", "frame")),
    (document.SiteDoc, ("$defs", "attribution", "properties", "sites", "items")),
    (document.AttributionDoc, ("$defs", "attribution")),
    (document.TrendDoc, ("$defs", "trend")),
    (document.SoakDoc, ("$defs", "soak")),
    (document.ItemDoc, ("$defs", "test")),
    (document.TimingDoc, ("$defs", "test", "properties", "timing")),
    (document.TotalsDoc, ("$defs", "totals")),
    (document.WorkerTotalsDoc,
     ("$defs", "totals", "properties", "by_worker", "additionalProperties")),
    (document.ResourceDoc, ("$defs", "resource")),
    (document.OriginFrameDoc, ("$defs", "resource", "properties", "origin", "items")),
    (document.LedgerDoc, ("$defs", "ledger")),
    (document.LedgerSessionDoc,
     ("$defs", "ledger", "properties", "sessions", "additionalProperties", "anyOf", "1")),
    (document.LedgerResourceDoc, ("$defs", "ledger", "properties", "resources", "items")),
    (document.LedgerGrowthDoc, ("$defs", "ledger", "properties", "growth", "items")),
    (document.ShardDoc, ("$defs", "shard")),
    (document.ComparisonDoc, ("$defs", "comparison")),
    (document.BaselineDoc, ("$defs", "comparison", "properties", "baseline")),
    (document.ChangeDoc, ("$defs", "comparison", "properties", "tests", "items")),
    (document.MetricChangeDoc, ("$defs", "metric_change")),
]


def _schema_object(path: tuple[str, ...]) -> tuple[set[str], set[str]]:
    """The keys and the required keys of one schema object (its ``$ref``/``anyOf`` bases too)."""
    schema = load_schema()
    node: Any = schema
    for part in path:
        node = node[int(part)] if isinstance(node, list) else node[part]
    keys, required = set(node.get("properties", {})), set(node.get("required", ()))
    for base in node.get("anyOf", ()):
        if "$ref" in base:
            ref_keys, ref_required = _schema_object(tuple(base["$ref"][2:].split("/")))
            keys |= ref_keys
            required |= ref_required
    return keys, required


@pytest.mark.parametrize(("typed", "path"), TYPED_OBJECTS, ids=[t.__name__ for t, _ in TYPED_OBJECTS])
def test_typed_dict_has_the_schema_objects_keys(typed: type, path: tuple[str, ...]) -> None:
    keys, required = _schema_object(path)
    assert set(typed.__annotations__) | set(typed.__required_keys__) == keys  # type: ignore[attr-defined]
    assert set(typed.__required_keys__) == required  # type: ignore[attr-defined]
    assert set(typed.__optional_keys__) == keys - required  # type: ignore[attr-defined]


def test_every_schema_object_with_keys_has_a_typed_dict() -> None:
    schema = load_schema()
    covered = {path for _, path in TYPED_OBJECTS}
    found: list[tuple[str, ...]] = []

    def walk(node: Any, path: tuple[str, ...]) -> None:
        if isinstance(node, dict):
            if "properties" in node and node.get("type", "object") == "object":
                found.append(path)
            for key, value in node.items():
                walk(value, (*path, key))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, (*path, str(i)))

    walk(schema, ())
    # Objects kept as plain dicts: attribution's type counts, reference chains and
    # largest objects, and soak samples (open-ended probe readings).
    loose = {
        ("$defs", "attribution", "properties", "types", "items"),
        ("$defs", "attribution", "properties", "chains", "items"),
        ("$defs", "attribution", "properties", "chains", "items", "properties", "chain", "items"),
        ("$defs", "attribution", "properties", "largest", "items"),
        ("$defs", "soak", "properties", "samples", "items"),
    }
    assert set(found) - covered == loose


def test_a_written_document_has_only_the_typed_keys() -> None:
    doc = Results(RunMeta(plugin_version="1", pytest_version="9"), [full_result()]).to_dict()
    assert set(doc) <= set(document.ResultsDoc.__annotations__)
    assert set(doc["run"]) == set(document.RunMetaDoc.__annotations__)
    assert set(doc["run"]["machine"]) == set(document.MachineDoc.__annotations__)
    assert set(doc["tests"][0]) <= set(document.ItemDoc.__annotations__)
    assert set(document.ItemDoc.__required_keys__) <= set(doc["tests"][0])
    assert set(doc["totals"]) == set(document.TotalsDoc.__annotations__)
