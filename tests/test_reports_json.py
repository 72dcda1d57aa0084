"""The results document on disk: schema, validation, loading errors, atomic writes, merging."""

from __future__ import annotations

import copy
import json
import os
import stat
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from _reports_sample import CLEAN_ID, LEAKY_ID, MiB, sample_doc, small_doc, write

from pytest_memwatch.base.files import atomic_write
from pytest_memwatch.reports import results_file as report_json
from pytest_memwatch.reports import validation
from pytest_memwatch.reports.merge import merge_documents
from pytest_memwatch.reports.results import Results, RunMeta, TestResult
from pytest_memwatch.reports.results_file import load_results
from pytest_memwatch.reports.validation import ResultsError, validate

ROOT = Path(__file__).resolve().parents[1]


TRAILING_COMMA = b'{"a": 1,}'


def _decoder_error(data: bytes) -> str:
    try:
        json.loads(data)
    except json.JSONDecodeError as exc:
        return str(exc)
    raise AssertionError("valid JSON")


def schema_check(doc: Any) -> None:
    """Validate with the real jsonschema and with the built-in interpreter."""
    jsonschema.Draft202012Validator(validation.load_schema()).validate(doc)
    assert validate(doc) == []


# -- the schema file ------------------------------------------------------------------


def test_docs_copy_of_schema_is_identical() -> None:
    packaged = ROOT / "pytest_memwatch" / "reports" / "schema" / "results.schema.json"
    published = ROOT / "docs" / "results.schema.json"
    assert published.read_bytes() == packaged.read_bytes(), (
        "docs/results.schema.json differs from the packaged schema: "
        "cp pytest_memwatch/reports/schema/results.schema.json docs/"
    )


def test_schema_is_valid_draft_2020_12() -> None:
    schema = validation.load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def _keywords(node: Any, inside_properties: bool = False) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if not inside_properties:
                found.add(key)
            # Under properties/$defs the keys are names, not keywords.
            found |= _keywords(value, key in ("properties", "$defs") and not inside_properties)
    elif isinstance(node, list):
        for item in node:
            found |= _keywords(item)
    return found


def test_schema_uses_only_keywords_the_runtime_validator_checks() -> None:
    used = _keywords(validation.load_schema())
    unknown = used - validation.VALIDATED_KEYWORDS - validation.ANNOTATION_KEYWORDS
    assert not unknown, f"validate() would silently ignore {sorted(unknown)}"


# -- documents the plugin produces validate ----------------------------------------


def test_sample_document_validates() -> None:
    schema_check(sample_doc())


def test_minimal_document_from_the_results_classes_validates() -> None:
    doc = Results(RunMeta(plugin_version="0.1.0", pytest_version="9.2.0")).to_dict()
    schema_check(doc)
    doc = Results(
        RunMeta(plugin_version="0.1.0", pytest_version="9.2.0"),
        [TestResult("t.py::a", outcome="skipped"), TestResult("t.py::b", outcome="error")],
    ).to_dict()
    schema_check(doc)


def test_unknown_keys_are_allowed_for_forward_compatibility() -> None:
    doc = sample_doc()
    doc["future_key"] = {"anything": 1}
    doc["tests"][0]["uss_growth"] = 12
    schema_check(doc)


# -- validation catches what is wrong, where ---------------------------------------


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    node: Any = doc
    parts = path.split("/")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    last = parts[-1]
    if value is _DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("tests/1/growth/rss", "12", "tests/1/growth/rss: \"12\" is not of type integer or null"),
        ("tests/0/nodeid", _DELETE, "tests/0: missing required key 'nodeid'"),
        ("tests/1/runs/0/warmup", "yes", "tests/1/runs/0/warmup: \"yes\" is not of type boolean"),
        ("run/workers", 0, "run/workers: 0 is less than 1"),
        ("tests", {}, "tests: {} is not of type array"),
        ("totals", _DELETE, "(top level): missing required key 'totals'"),
        ("tests/1/attribution/sites/0/traceback/0/lineno", 1.5,
         "tests/1/attribution/sites/0/traceback/0/lineno: 1.5 is not of type integer"),
        ("tests/8/soak/samples/3/t", None, "tests/8/soak/samples/3/t: null is not of type number"),
        ("tests/0/verdicts/0/passed", 1, "tests/0/verdicts/0/passed: 1 is not of type boolean"),
        ("tests/0/before", [], "tests/0/before: [] is not of type object"),
    ],
)
def test_validation_errors_name_the_place(path: str, value: Any, message: str) -> None:
    doc = sample_doc()
    _set(doc, path, value)
    assert validate(doc)[0] == message
    # The real validator agrees that the document is invalid.
    assert list(jsonschema.Draft202012Validator(validation.load_schema()).iter_errors(doc))


# -- loading ------------------------------------------------------------------------


def test_load_results_returns_the_document(tmp_path: Path) -> None:
    doc = sample_doc()
    path = write(doc, tmp_path / "results.json")
    assert load_results(path) == doc


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "results.json: empty file, not a results document"),
        (b"   \n", "results.json: empty file, not a results document"),
        (b"[1, 2]", "results.json: not a pytest-memwatch results document "
                    "(the top level is an array, not an object)"),
        (b'"text"', "results.json: not a pytest-memwatch results document "
                    "(the top level is a string, not an object)"),
        (b'{"machine_info": {}, "benchmarks": []}',
         "results.json: not a pytest-memwatch results document (no schema_version)"),
        (b'{"schema_version": 1, "tool": "pytest-benchmark"}',
         "results.json: not a pytest-memwatch results document (tool is \"pytest-benchmark\")"),
        (b'{"schema_version": 7, "tool": "pytest-memwatch"}',
         "results.json: schema_version 7 is not supported by this pytest-memwatch (it reads 1); "
         "use the pytest-memwatch version that wrote the file"),
        (b'{"schema_version": true, "tool": "pytest-memwatch"}',
         "results.json: schema_version \"True\" is not supported by this pytest-memwatch "
         "(it reads 1); use the pytest-memwatch version that wrote the file"),
        (b'{"schema_version": 1, "tool": "pytest-memwatch"}',
         "results.json: does not match the results schema: (top level): missing required key "
         "'run' (and other problems)"),
        (b"\xff\xfe{}", "results.json: not valid JSON (not UTF-8 text)"),
        # The decoder's own words, which change between Python versions (3.13
        # names the trailing comma).
        (TRAILING_COMMA, "results.json: not valid JSON: " + _decoder_error(TRAILING_COMMA)),
    ],
)
def test_load_results_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes,
                             message: str) -> None:
    monkeypatch.chdir(tmp_path)
    Path("results.json").write_bytes(content)
    with pytest.raises(ResultsError) as info:
        load_results("results.json")
    assert str(info.value) == message


def test_load_results_truncated_file_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    monkeypatch.chdir(tmp_path)
    text = json.dumps(sample_doc(), indent=1)
    Path("results.json").write_text(text[: len(text) // 2])
    with pytest.raises(ResultsError, match=r"^results\.json: not valid JSON \(the file ends "
                                           r"early: truncated\?\): "):
        load_results("results.json")


def test_load_results_missing_file_and_directory(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ResultsError) as info:
        load_results("nope.json")
    assert str(info.value) == "nope.json: cannot read: No such file or directory"
    os.mkdir("dir.json")
    with pytest.raises(ResultsError) as info:
        load_results("dir.json")
    assert str(info.value) == "dir.json: is a directory, not a results file"


# -- writing ------------------------------------------------------------------------


def test_dumps_refuses_nan() -> None:
    doc = sample_doc()
    doc["tests"][0]["duration_s"] = float("nan")
    with pytest.raises(ValueError):
        report_json.dumps(doc)


def test_written_results_round_trip_and_parents_are_created(tmp_path: Path) -> None:
    doc = sample_doc()
    target = tmp_path / "deep" / "er" / "results.json"
    assert atomic_write(target, report_json.dumps(doc)) == target
    assert load_results(target) == doc
    assert os.listdir(target.parent) == ["results.json"]


def test_atomic_write_follows_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        path = atomic_write(tmp_path / "r.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_atomic_write_error_leaves_old_file_and_no_temp(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "r.json"
    target.write_text("old")

    def fail(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report_json.os, "replace", fail)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, "new" * 1000)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["r.json"]


def test_atomic_write_through_a_symlink_updates_the_target(tmp_path: Path) -> None:
    real = tmp_path / "real.html"
    real.write_text("old")
    link = tmp_path / "link.html"
    link.symlink_to(real)
    atomic_write(link, "new")
    assert link.is_symlink()
    assert real.read_text() == "new"


# -- merging ------------------------------------------------------------------------


def _shard(*tests: tuple[str, int, int], host: str = "ci-1", workers: int = 1,
           started: str = "2025-01-15T10:00:00+00:00") -> dict[str, Any]:
    return small_doc(*tests, host=host, workers=workers, started=started)


def test_merge_concatenates_tests_recomputes_totals_and_keeps_shard_metadata() -> None:
    a = _shard(("t.py::a", 1 * MiB, 2 * MiB), host="ci-1", workers=2,
               started="2025-01-15T10:00:05+00:00")
    b = _shard(("t.py::b", 3 * MiB, 5 * MiB), ("t.py::c", 0, 0), host="ci-2", workers=4,
               started="2025-01-15T10:00:01+00:00")
    merged, warnings = merge_documents([("a.json", a), ("b.json", b)])
    schema_check(merged)
    assert warnings == []
    assert [t["nodeid"] for t in merged["tests"]] == ["t.py::a", "t.py::b", "t.py::c"]
    assert [t["shard"] for t in merged["tests"]] == [0, 1, 1]
    assert merged["totals"]["tests"] == 3
    assert merged["totals"]["total_growth_rss"] == 4 * MiB
    assert [s["file"] for s in merged["shards"]] == ["a.json", "b.json"]
    assert [s["run"]["machine"]["hostname"] for s in merged["shards"]] == ["ci-1", "ci-2"]
    assert [s["tests"] for s in merged["shards"]] == [1, 2]
    assert merged["run"]["workers"] == 6
    assert merged["run"]["started_at"] == "2025-01-15T10:00:01+00:00"


def test_merge_of_merged_documents_flattens_shards() -> None:
    a = _shard(("t.py::a", 1, 1))
    b = _shard(("t.py::b", 2, 2))
    c = _shard(("t.py::c", 3, 3))
    ab, _ = merge_documents([("a.json", a), ("b.json", b)])
    abc, _ = merge_documents([("ab.json", ab), ("c.json", c)])
    schema_check(abc)
    assert [s["file"] for s in abc["shards"]] == ["a.json", "b.json", "c.json"]
    assert [t["shard"] for t in abc["tests"]] == [0, 1, 2]


def test_merge_identical_duplicates_are_kept_once() -> None:
    a = _shard(("t.py::a", 1, 1), ("t.py::b", 2, 2))
    merged, _ = merge_documents([("a.json", a), ("again.json", copy.deepcopy(a))])
    assert [t["nodeid"] for t in merged["tests"]] == ["t.py::a", "t.py::b"]
    assert merged["totals"]["tests"] == 2


def test_merge_conflicting_duplicates_is_an_error() -> None:
    a = _shard(("t.py::a", 1, 1), ("t.py::b", 2, 2))
    b = _shard(("t.py::a", 5, 1), ("t.py::b", 6, 2))
    with pytest.raises(ResultsError) as info:
        merge_documents([("a.json", a), ("b.json", b)])
    assert str(info.value) == (
        "t.py::a is in both a.json and b.json with different results (and 1 more): each test "
        "must run in one shard only (identical copies are merged)"
    )


def test_merge_refuses_mismatched_schema_versions() -> None:
    a = _shard(("t.py::a", 1, 1))
    b = _shard(("t.py::b", 1, 1))
    b["schema_version"] = 2
    with pytest.raises(ResultsError) as info:
        merge_documents([("a.json", a), ("b.json", b)])
    assert str(info.value) == (
        "b.json: schema_version 2 differs from schema_version 1 of a.json; merge only results "
        "written by the same pytest-memwatch version"
    )


def test_merge_warns_about_shards_from_different_commits() -> None:
    a = _shard(("t.py::a", 1, 1))
    b = _shard(("t.py::b", 1, 1))
    a["run"]["commit"] = "aaaaaaaaaaaaaaaa"
    b["run"]["commit"] = "bbbbbbbbbbbbbbbb"
    merged, warnings = merge_documents([("a.json", a), ("b.json", b)])
    assert merged["run"]["commit"] is None
    assert warnings == ["the shards come from different commits (aaaaaaaaaaaa, bbbbbbbbbbbb)"]


def test_merge_drops_a_comparison_and_keeps_full_sample_documents() -> None:
    a = sample_doc()
    a["comparison"] = {"baseline": {"label": "x", "path": None, "started_at": None,
                                    "commit": None},
                       "tolerances": [], "regressions": 0, "tests": []}
    b = small_doc(("t.py::other", 1, 1))
    merged, _ = merge_documents([("a.json", a), ("b.json", b)])
    schema_check(merged)
    assert "comparison" not in merged
    ids = [t["nodeid"] for t in merged["tests"]]
    assert LEAKY_ID in ids and CLEAN_ID in ids and "t.py::other" in ids
    assert merged["totals"]["failed_verdicts"] == a["totals"]["failed_verdicts"]
