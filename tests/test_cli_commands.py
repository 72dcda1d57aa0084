"""``python -m pytest_memwatch`` in a subprocess: exit codes, exact errors, no partial files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _reports_sample import MiB, sample_doc, small_doc, write

from pytest_memwatch.base.version import __version__
from pytest_memwatch.reports.baselines import save_run
from pytest_memwatch.reports.results_file import load_results

ROOT = Path(__file__).resolve().parents[1]
M = "Linux-CPython-3.11-64bit"


def memwatch(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pytest_memwatch", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    write(sample_doc(), tmp_path / "results.json")
    return tmp_path


def test_help_and_version(work: Path) -> None:
    res = memwatch("--help", cwd=work)
    assert res.returncode == 0
    for command in ("report", "merge", "compare", "history"):
        assert command in res.stdout
    res = memwatch("--version", cwd=work)
    assert res.returncode == 0 and res.stdout.startswith("python -m pytest_memwatch ")
    # The version the results documents record, not a second source of it.
    assert res.stdout.strip() == f"python -m pytest_memwatch {__version__}"


def test_the_memwatch_console_script_runs_the_same_commands(work: Path) -> None:
    script = Path(sys.executable).parent / "memwatch"
    assert script.exists(), "pip install should put a memwatch script beside python"
    res = subprocess.run([str(script), "--version"], cwd=work, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0 and res.stdout.startswith("memwatch "), res
    res = subprocess.run([str(script), "report", "results.json", "-o", "r.html"], cwd=work,
                         capture_output=True, text=True, timeout=60)
    assert (res.returncode, res.stderr) == (0, ""), res
    assert (work / "r.html").read_text().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("command", ["report", "merge", "compare", "history", "soak-report"])
def test_each_command_describes_every_argument_in_its_help(command: str, work: Path) -> None:
    from pytest_memwatch.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    parser = sub.choices[command]  # type: ignore[index]
    assert parser.description, command
    for action in parser._actions:
        if action.dest != "help":
            assert action.help, f"{command}: {action.dest} has no help"
    res = memwatch(command, "--help", cwd=work)
    assert res.returncode == 0 and parser.description.split()[0] in res.stdout


def test_the_cli_docs_list_every_command() -> None:
    from pytest_memwatch.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    table = (ROOT / "docs" / "cli.md").read_text().split("## Exit status")[0]
    for command in sub.choices:  # type: ignore[union-attr]
        assert f"| `{command} " in table, command


def test_usage_errors_exit_2(work: Path) -> None:
    res = memwatch(cwd=work)
    assert res.returncode == 2 and "the following arguments are required: COMMAND" in res.stderr
    res = memwatch("report", "results.json", cwd=work)
    assert res.returncode == 2
    assert "the following arguments are required: -o/--output" in res.stderr


# -- report -------------------------------------------------------------------------


def test_report(work: Path) -> None:
    res = memwatch("report", "results.json", "-o", "out/report.html", "--title", "Nightly",
                   cwd=work)
    assert (res.returncode, res.stderr) == (0, "")
    assert res.stdout == f"HTML report written to {work / 'out' / 'report.html'}\n"
    page = (work / "out" / "report.html").read_text()
    assert "<title>Nightly</title>" in page and "&lt;script&gt;alert(1)" in page


BAD_INPUTS = [
    ("foreign.json", b'{"benchmarks": []}',
     "memwatch: foreign.json: not a pytest-memwatch results document (no schema_version)\n"),
    ("list.json", b"[]",
     "memwatch: list.json: not a pytest-memwatch results document (the top level is an array, "
     "not an object)\n"),
    ("empty.json", b"", "memwatch: empty.json: empty file, not a results document\n"),
    ("future.json", b'{"schema_version": 2, "tool": "pytest-memwatch"}',
     "memwatch: future.json: schema_version 2 is not supported by this pytest-memwatch (it "
     "reads 1); use the pytest-memwatch version that wrote the file\n"),
    ("broken.json", b'{"schema_version": 1, "tool": "pytest-memwatch", "run": {}, "tests": [], '
                    b'"totals": {}}',
     "memwatch: broken.json: does not match the results schema: run: missing required key "
     "'plugin_version' (and other problems)\n"),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD_INPUTS,
                         ids=[b[0] for b in BAD_INPUTS])
def test_report_bad_input_exit_2_and_writes_nothing(work: Path, name: str, content: bytes,
                                                     message: str) -> None:
    (work / name).write_bytes(content)
    (work / "report.html").write_text("previous report")
    res = memwatch("report", name, "-o", "report.html", cwd=work)
    assert (res.returncode, res.stdout, res.stderr) == (2, "", message)
    assert (work / "report.html").read_text() == "previous report"


def test_report_truncated_and_missing_input(work: Path) -> None:
    text = (work / "results.json").read_text()
    (work / "cut.json").write_text(text[:1000])
    res = memwatch("report", "cut.json", "-o", "r.html", cwd=work)
    assert res.returncode == 2
    assert res.stderr.startswith(
        "memwatch: cut.json: not valid JSON (the file ends early: truncated?): ")
    res = memwatch("report", "missing.json", "-o", "r.html", cwd=work)
    assert (res.returncode, res.stderr) == (
        2, "memwatch: missing.json: cannot read: No such file or directory\n")
    assert not (work / "r.html").exists()


def test_unwritable_output_exit_2_and_no_partial_file(work: Path) -> None:
    (work / "blocker").write_text("a file, not a directory")
    res = memwatch("report", "results.json", "-o", "blocker/report.html", cwd=work)
    assert (res.returncode, res.stdout, res.stderr) == (
        2, "", f"memwatch: cannot write blocker/report.html: {work / 'blocker'} is not a "
               "directory\n")
    assert sorted(os.listdir(work)) == ["blocker", "results.json"]
    os.mkdir(work / "dir.html")
    res = memwatch("report", "results.json", "-o", "dir.html", cwd=work)
    assert (res.returncode, res.stderr) == (2, "memwatch: cannot write dir.html: Is a directory\n")
    assert os.listdir(work / "dir.html") == []
    assert sorted(os.listdir(work)) == ["blocker", "dir.html", "results.json"]


# -- merge --------------------------------------------------------------------------


def test_merge(work: Path) -> None:
    write(small_doc(("t.py::a", MiB, MiB), host="h1"), work / "a.json")
    write(small_doc(("t.py::b", 2 * MiB, MiB), host="h2", workers=2), work / "b.json")
    res = memwatch("merge", "a.json", "b.json", "-o", "merged.json", cwd=work)
    assert res.returncode == 0, res.stderr
    assert res.stdout == (f"merged results written to {work / 'merged.json'}\n"
                          "2 shards, 2 tests, 0 failed verdicts\n")
    merged = load_results(work / "merged.json")
    assert merged["run"]["workers"] == 3
    assert [s["run"]["machine"]["hostname"] for s in merged["shards"]] == ["h1", "h2"]


def test_merge_duplicate_ids_exit_2(work: Path) -> None:
    write(small_doc(("t.py::a", MiB, MiB)), work / "a.json")
    write(small_doc(("t.py::a", 2 * MiB, MiB)), work / "b.json")
    res = memwatch("merge", "a.json", "b.json", "-o", "merged.json", cwd=work)
    assert (res.returncode, res.stderr) == (
        2, "memwatch: t.py::a is in both a.json and b.json with different results: each test "
           "must run in one shard only (identical copies are merged)\n")
    assert not (work / "merged.json").exists()
    # The same shard twice is not a conflict.
    res = memwatch("merge", "a.json", "a.json", "-o", "merged.json", cwd=work)
    assert res.returncode == 0
    assert len(load_results(work / "merged.json")["tests"]) == 1


def test_merge_mismatched_versions_and_foreign_shards(work: Path) -> None:
    write(small_doc(("t.py::a", 1, 1)), work / "a.json")
    b = small_doc(("t.py::b", 1, 1))
    b["schema_version"] = 2
    write(b, work / "b.json")
    (work / "merged.json").write_text("old")
    res = memwatch("merge", "a.json", "b.json", "-o", "merged.json", cwd=work)
    assert (res.returncode, res.stderr) == (
        2, "memwatch: b.json: schema_version 2 differs from schema_version 1 of a.json; merge "
           "only results written by the same pytest-memwatch version\n")
    (work / "c.json").write_text('{"nope": 1}')
    res = memwatch("merge", "a.json", "c.json", "-o", "merged.json", cwd=work)
    assert (res.returncode, res.stderr) == (
        2, "memwatch: c.json: not a pytest-memwatch results document (no schema_version)\n")
    assert (work / "merged.json").read_text() == "old"


# -- compare ------------------------------------------------------------------------


def _pair(work: Path) -> None:
    write(small_doc(("t.py::a", MiB, MiB), ("t.py::b", MiB, MiB)), work / "old.json")
    write(small_doc(("t.py::a", 3 * MiB, MiB), ("t.py::b", MiB, MiB)), work / "new.json")


def test_compare_without_tolerance_exit_0(work: Path) -> None:
    _pair(work)
    res = memwatch("compare", "old.json", "new.json", cwd=work)
    assert (res.returncode, res.stderr) == (0, "")
    lines = res.stdout.splitlines()
    assert lines[0] == ("compared with old.json (run of 2025-01-15T10:00:00+00:00): 2 in both, "
                        "0 regressed, 0 new, 0 removed")
    assert lines[2].split()[0] == "CHANGED" and lines[2].endswith("t.py::a")
    assert len(lines) == 3  # the unchanged test is listed only with --all
    res = memwatch("compare", "old.json", "new.json", "--all", cwd=work)
    assert res.stdout.splitlines()[-1].endswith("t.py::b")


def test_compare_regression_exit_1(work: Path) -> None:
    _pair(work)
    res = memwatch("compare", "old.json", "new.json", "--fail", "growth:10%", "--fail",
                   "peak:5MB", "--html", "cmp.html", cwd=work)
    assert res.returncode == 1
    assert res.stdout.splitlines()[-1] == (
        "  REGRESSION t.py::a: growth 1.0 MiB -> 3.0 MiB (+2.0 MiB, +200%) exceeds growth:10% "
        "(allowed +102.4 KiB)")
    assert res.stderr == f"HTML report written to {work / 'cmp.html'}\n"
    assert "1 regression against baseline old.json" in (work / "cmp.html").read_text()


def test_compare_bad_fail_expression_exit_2(work: Path) -> None:
    _pair(work)
    res = memwatch("compare", "old.json", "new.json", "--fail", "growth:10", "--fail",
                   "grwoth:10%", cwd=work)
    assert (res.returncode, res.stdout) == (2, "")
    assert res.stderr == (
        "memwatch: bad --fail value 'grwoth:10%': unknown metric 'grwoth'; expected one of "
        "growth, peak, rss, malloc, blocks, gc_objects, fds, threads (METRIC:TOLERANCE, e.g. "
        "growth:10% or peak:5MB)\n")


def test_compare_bad_input_exit_2(work: Path) -> None:
    _pair(work)
    (work / "bad.json").write_text("{")
    res = memwatch("compare", "old.json", "bad.json", cwd=work)
    assert res.returncode == 2
    assert res.stderr.startswith("memwatch: bad.json: not valid JSON (the file ends early: "
                                 "truncated?)")


def test_compare_warns_about_other_machine(work: Path) -> None:
    write(small_doc(("t.py::a", MiB, MiB), host="laptop"), work / "old.json")
    write(small_doc(("t.py::a", MiB, MiB), host="ci", workers=2), work / "new.json")
    res = memwatch("compare", "old.json", "new.json", cwd=work)
    assert res.returncode == 0
    assert res.stderr.splitlines() == [
        "memwatch: warning: baseline old.json was recorded on another machine (hostname laptop "
        "vs ci; baseline vs this run): memory figures may not be comparable",
        "memwatch: warning: baseline old.json ran with 1 worker(s), this run with 2: per-test "
        "memory depends on what shares a process",
    ]


# -- history ------------------------------------------------------------------------


def test_history(work: Path) -> None:
    storage = work / ".memwatch"
    for i in range(3):
        save_run(small_doc(("t.py::a", (i + 1) * MiB, MiB)), storage, "main", M)
    bad = storage / M / "0004_main.json"
    bad.write_text('{"schema_version": 1, "tool": "pytest-memwatch"')
    res = memwatch("history", ".memwatch", "-o", "trend.html", cwd=work)
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"history written to {work / 'trend.html'}\n"
    assert res.stderr == (
        f"memwatch: warning: saved run .memwatch/{M}/0004_main.json: not valid JSON (the file "
        "ends early: truncated?): Expecting ',' delimiter: line 1 column 48 (char 47); it was "
        "left untouched; skipped\n")
    assert bad.read_text() == '{"schema_version": 1, "tool": "pytest-memwatch"'
    page = (work / "trend.html").read_text()
    assert "0003_main" in page and "t.py::a" in page and "<svg" in page


def test_history_errors(work: Path) -> None:
    res = memwatch("history", "nowhere", "-o", "trend.html", cwd=work)
    assert (res.returncode, res.stderr) == (
        2, "memwatch: nowhere: no such directory (give the --memwatch-storage directory, "
           "e.g. .memwatch)\n")
    (work / "empty").mkdir()
    res = memwatch("history", "empty", "-o", "trend.html", cwd=work)
    assert (res.returncode, res.stderr) == (
        2, "memwatch: empty: no readable saved runs (save one with pytest "
           "--memwatch-save=NAME)\n")
    save_run(small_doc(("t.py::a", 1, 1)), work / "s", "x", M)
    res = memwatch("history", "s", "--machine", "Other", "-o", "trend.html", cwd=work)
    assert (res.returncode, res.stderr) == (
        2, "memwatch: s: no readable saved runs for machine Other (save one with pytest "
           "--memwatch-save=NAME)\n")
    assert not (work / "trend.html").exists()


def test_output_is_valid_json_for_tools(work: Path) -> None:
    # merge writes the same format as --memwatch-json: indented UTF-8 JSON.
    write(small_doc(("t.py::é", 1, 1)), work / "a.json")
    memwatch("merge", "a.json", "-o", "m.json", cwd=work)
    raw = (work / "m.json").read_text(encoding="utf-8")
    assert "t.py::é" in raw and json.loads(raw)["tests"][0]["nodeid"] == "t.py::é"
