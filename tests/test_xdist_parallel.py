"""memwatch under pytest-xdist: a parallel run reports what a serial run reports.

Every run is a subprocess (it measures memory). Plugin autoload is off and the
plugins are loaded with ``-p``: importing every installed plugin in every
worker would cost more than the runs themselves.
"""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from pytest_memwatch.reports.baselines import machine_id
from pytest_memwatch.reports.results_file import load_results
from pytest_memwatch.reports.validation import load_schema

pytest.importorskip("xdist")

SUITE = """
import os, threading
import pytest

LEAK = []

@pytest.mark.max_growth("256 KiB")
def test_over_budget():
    LEAK.append(bytearray(b"\\x01") * (1024 * 1024))

@pytest.mark.max_growth(16)
@pytest.mark.max_memory(200)
def test_within_budget():
    data = bytearray(1024 * 1024)

@pytest.mark.no_leaks(warmup=1, runs=3)
def test_leaks_per_run():
    LEAK.append(bytearray(64 * 1024))

@pytest.mark.no_leaks(warmup=1, runs=3)
def test_clean_repeated():
    data = [str(i) for i in range(100)]

@pytest.mark.no_leaks(warmup=1, runs=3)
def test_leaks_a_descriptor():
    LEAK.append(os.open(os.devnull, os.O_RDONLY))

@pytest.mark.memwatch_skip("not measured")
def test_opted_out():
    pass

def test_ordinary_failure():
    assert 1 == 2

@pytest.mark.xdist_group("grouped")
@pytest.mark.parametrize("n", range(4))
def test_grouped(n):
    assert n < 10
"""
SUITE_B = """
import threading

EVENT = threading.Event()

def test_leaves_a_thread():
    threading.Thread(target=EVENT.wait, name="left-by-b", daemon=True).start()

def test_plain():
    pass
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(test_suite=SUITE, test_b=SUITE_B)
    return pytester


def run(pytester: pytest.Pytester, *args: str, xdist: bool = True) -> pytest.RunResult:
    plugins = ["-p", "pytest_memwatch.plugin"] + (["-p", "xdist.plugin"] if xdist else [])
    # No grace period: the suite's leaks are real, and waiting for them costs seconds.
    options = ["--memwatch-trace=0", "--memwatch-resources-grace=0"]
    return pytester.runpytest_subprocess(*plugins, *options, *args, timeout=120)


def verdicts(doc: dict[str, Any]) -> dict[str, tuple[str, tuple[tuple[str, bool], ...]]]:
    """Per node id: the outcome and the (kind, passed) of every verdict, in order."""
    return {
        t["nodeid"]: (t["outcome"], tuple((v["kind"], v["passed"]) for v in t["verdicts"]))
        for t in doc["tests"]
    }


def read(pytester: pytest.Pytester, name: str) -> dict[str, Any]:
    doc = load_results(pytester.path / name)
    jsonschema.validate(doc, load_schema())
    return doc


def test_parallel_runs_report_what_the_serial_run_reports(suite: pytest.Pytester) -> None:
    serial = run(suite, "--memwatch", "--memwatch-json=serial.json")
    serial.assert_outcomes(passed=9, failed=4)
    assert "FAILED (memwatch) test_suite.py::test_over_budget" in serial.stdout.str()
    expected = verdicts(read(suite, "serial.json"))
    # The leaks fail, the rest passes, whatever the distribution.
    assert {n for n, (_, vs) in expected.items() if any(not ok for _, ok in vs)} == {
        "test_suite.py::test_over_budget",
        "test_suite.py::test_leaks_per_run",
        "test_suite.py::test_leaks_a_descriptor",
    }
    for dist in ("load", "loadfile", "loadgroup"):
        name = f"{dist}.json"
        result = run(suite, "--memwatch", f"--memwatch-json={name}", "-n", "2", "--dist", dist)
        result.assert_outcomes(passed=9, failed=4)
        # The controller marks a failed memory verdict as a serial run does.
        assert "FAILED (memwatch) test_suite.py::test_over_budget" in result.stdout.str()
        doc = read(suite, name)
        # Same node ids (no "@grouped" suffix from loadgroup), same verdicts.
        assert verdicts(doc) == expected, dist
        run_meta = doc["run"]
        assert run_meta["workers"] == 2
        assert sorted(run_meta["worker_info"]) == ["gw0", "gw1"]
        infos = run_meta["worker_info"].values()
        measured = {t["nodeid"] for t in doc["tests"] if t.get("not_measured") is None}
        assert sum(i["measured"] for i in infos) == len(measured) == doc["totals"]["measured"]
        # The test that opted out is in the results too, with why (the controller adds it).
        assert {t["nodeid"]: t["not_measured"] for t in doc["tests"] if "not_measured" in t} == {
            n: "memwatch_skip" for n in expected.keys() - measured
        }, dist
        assert len({i["pid"] for i in infos}) == 2
        assert {t["worker"] for t in doc["tests"]} <= {"gw0", "gw1"}
        per_worker = doc["totals"]["by_worker"]
        assert sum(w["measured"] for w in per_worker.values()) == doc["totals"]["measured"]
        line = next(x for x in result.stdout.lines if x.startswith("per worker: "))
        assert all(f"{w} {t['measured']} measured, " in line for w, t in per_worker.items())
        # Each worker's ledger reached the controller.
        ledger = doc["ledger"]
        assert sorted(ledger["sessions"]) == ["gw0", "gw1"]
        left = {(r["owner"], r["kind"]) for r in ledger["resources"]}
        assert ("test_b.py::test_leaves_a_thread", "thread") in left
        assert ("test_suite.py::test_leaks_a_descriptor", "fd") in left


def test_workers_send_their_probe_availability(suite: pytest.Pytester) -> None:
    # gw1 runs on a C library without mallinfo2; gw0 has every probe.
    suite.makeconftest(
        """
        import os
        from pytest_memwatch.base import probes

        class _LibcWithoutMallinfo2:
            def __init__(self, *args, **kwargs):
                pass

        if os.environ.get("PYTEST_XDIST_WORKER") == "gw1":
            _real = probes.ctypes.CDLL
            probes.ctypes.CDLL = _LibcWithoutMallinfo2
            try:
                probes._PROBER = probes.Prober()
            finally:
                probes.ctypes.CDLL = _real
        """
    )
    result = run(suite, "--memwatch", "--memwatch-json=r.json", "-n", "2")
    result.assert_outcomes(passed=9, failed=4)
    run_meta = read(suite, "r.json")["run"]
    missing = "the C library has no mallinfo2 (glibc >= 2.33 needed)"
    assert run_meta["unavailable_probes"] == {"malloc": missing}
    assert run_meta["worker_info"]["gw1"]["unavailable_probes"] == {"malloc": missing}
    assert run_meta["worker_info"]["gw0"]["unavailable_probes"] == {}


def test_baselines_record_the_worker_count_without_xdist_or_cache(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = run(suite, "--memwatch", "-n", "2", "--memwatch-save=par")
    saved.assert_outcomes(passed=9, failed=4)
    # Workers never write: one file, from the controller.
    [path] = (suite.path / ".memwatch" / machine_id()).iterdir()
    assert json.loads(path.read_text())["run"]["workers"] == 2

    suite.makeconftest(
        """
        def pytest_sessionfinish(session):
            with open("plugins.txt", "w") as f:
                f.write(str(session.config.pluginmanager.hasplugin("memwatch-xdist")))
        """
    )
    # Autoload back on: -p no:xdist must block the installed plugin itself.
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    shutil.rmtree(suite.path / ".pytest_cache", ignore_errors=True)
    compared = suite.runpytest_subprocess(
        "--memwatch",
        "--memwatch-trace=0",
        "--memwatch-resources-grace=0",
        "--memwatch-compare=par",
        "--memwatch-json=r.json",
        "-p",
        "no:xdist",
        "-p",
        "no:cacheprovider",
        timeout=120,
    )
    compared.assert_outcomes(passed=9, failed=4)
    assert (
        "WARNING: memwatch: baseline 0001_par ran with 2 worker(s), this run with 1: per-test "
        "memory depends on what shares a process"
    ) in compared.stdout.lines, compared.stdout.str()
    assert (suite.path / "plugins.txt").read_text() == "False"
    doc = read(suite, "r.json")
    assert doc["run"]["workers"] == 1
    assert list(doc["run"]["worker_info"]) == ["main"]
    assert not (suite.path / ".pytest_cache").exists()


TRIVIAL = "\n".join(f"def test_{i:03d}():\n    data = [0] * 10\n" for i in range(200))


def test_xdist_traffic_is_not_charged_to_tests(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # While a worker runs a test, the controller sends it more test indices.
    # Charged to the tests, they would show as extra blocks on many of them.
    # A budget on every test: allocated blocks are counted for tests with a verdict.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(test_trivial=TRIVIAL)
    blocks: dict[str, list[int]] = {}
    for name, extra in (("serial", []), ("parallel", ["-n", "2"])):
        result = run(pytester, "--memwatch", "--memwatch-max-growth=1GiB",
                     f"--memwatch-json={name}.json", "-q", *extra)
        result.assert_outcomes(passed=200)
        doc = json.loads(Path(pytester.path / f"{name}.json").read_text())
        blocks[name] = [t["growth"]["blocks"] for t in doc["tests"]]
    # Plain measuring collects the young generations only, so what CPython's free
    # lists hold (allocated blocks) can differ by a block or two between two
    # processes (docs/explanation.md); the controller's messages, charged to the
    # tests, would add tens of blocks to many of them.
    usual = statistics.median(blocks["serial"])
    parallel = statistics.median(blocks["parallel"])
    assert abs(parallel - usual) <= 3, (usual, parallel)
    off = [b for b in blocks["parallel"] if abs(b - parallel) > 2]
    # A message being decoded at the instant of a reading can still show on a few,
    # and each worker's first tests fill the interpreter's caches.
    assert len(off) <= 20, sorted(off)
