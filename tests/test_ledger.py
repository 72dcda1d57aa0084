"""The session ledger: unit tests of its bookkeeping, and one run end to end.

The unit tests drive :class:`pytest_memwatch.resources.ledger.Ledger` with readings
made up around real threads and descriptors of this process. The end-to-end
run is a subprocess (it measures memory) whose results document must validate
against the published schema.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import jsonschema
import pytest

from pytest_memwatch.base.probes import Sample, get_prober
from pytest_memwatch.reports.ledger import ledger_lines, merge_ledgers, merge_shard_ledgers
from pytest_memwatch.reports.results_file import load_results
from pytest_memwatch.reports.validation import load_schema
from pytest_memwatch.resources.ledger import Ledger

if TYPE_CHECKING:
    from conftest import Runner


def reading(**counts: int) -> Sample:
    return dataclasses.replace(get_prober().sample(collect=False), **counts)


@pytest.fixture
def stop_event() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def test_nothing_is_listed_while_the_counts_stay_put() -> None:
    ledger = Ledger()
    start = reading()
    ledger.start(start)
    ledger.note("fixtures", start)
    ledger.note("test", start)
    ledger.settle("t.py::test_a")
    doc = ledger.finish(start)
    assert doc["resources"] == [] and doc["recorded"] == 0 and doc["released"] == 0


def test_a_thread_is_charged_to_the_test_and_a_fd_to_the_fixtures(
    stop_event: threading.Event,
) -> None:
    ledger = Ledger(sleep=lambda s: None)
    start = reading()
    ledger.start(start)
    read, write = os.pipe()  # made "while the fixtures were set up"
    assert start.fds is not None and start.threads is not None
    ledger.note("fixtures", reading(fds=start.fds + 2, threads=start.threads))
    threading.Thread(target=stop_event.wait, name="left", daemon=True).start()
    ledger.note("test", reading(fds=start.fds + 2, threads=start.threads + 1))
    ledger.settle("t.py::test_a", lambda: ["server (module)"])
    os.close(write)  # released before the session ends
    try:
        doc = ledger.finish(reading())
    finally:
        os.close(read)
    assert doc["recorded"] == 3 and doc["released"] == 1
    owners = {(r["kind"], r["owner"], r["phase"], tuple(r["fixtures"])) for r in doc["resources"]}
    assert owners == {
        ("thread", "t.py::test_a", "test", ()),
        ("fd", "t.py::test_a", "fixtures", ("server (module)",)),
    }


def test_the_session_end_check_waits_for_threads_shutting_down(
    stop_event: threading.Event,
) -> None:
    worker = threading.Thread(target=stop_event.wait, name="stopping", daemon=True)
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        stop_event.set()
        worker.join()

    ledger = Ledger(sleep=sleep)
    start = reading()
    ledger.start(start)
    worker.start()
    assert start.threads is not None
    ledger.note("test", reading(threads=start.threads + 1))
    ledger.settle("t.py::test_a")
    doc = ledger.finish(reading(), grace=1.0)
    assert pauses == [0.01]
    assert doc["resources"] == [] and doc["released"] == 1


def test_only_the_largest_growths_are_kept() -> None:
    ledger = Ledger(top=3)
    ledger.start(reading())
    for i, grown in enumerate([5, 50, None, -7, 500, 1, 5000]):
        ledger.record_growth(f"t.py::test_{i}", grown)
    doc = ledger.finish(None)
    assert [g["nodeid"] for g in doc["growth"]] == ["t.py::test_6", "t.py::test_4", "t.py::test_1"]
    assert doc["measured"] == 7 and doc["session"] is None


def test_entries_are_capped() -> None:
    from pytest_memwatch.resources import Resource

    ledger = Ledger(max_entries=2)
    ledger.add("t.py::a", "test", [Resource("fd", ("fd", i, "/gone"), f"fd {i}") for i in range(5)])
    doc = ledger.finish(None)
    assert doc["recorded"] == 5  # three past the cap are only counted


def test_merge_and_lines() -> None:
    part = {
        "session": None,
        "measured": 1,
        "resources": [
            {
                "kind": "fd",
                "name": "/x",
                "description": f"fd {i} (/x)",
                "origin": [],
                "owner": "t.py::test_a",
                "phase": "test",
                "fixtures": [],
                "worker": "gw1",
            }
            for i in range(7)
        ],
        "recorded": 7,
        "released": 0,
        "growth": [{"nodeid": "t.py::test_a", "worker": "gw1", "bytes": 2048}],
    }
    other = {
        **part,
        "resources": [],
        "recorded": 2,
        "released": 2,
        "growth": [{"nodeid": "t.py::test_b", "worker": "gw0", "bytes": 4096}],
    }
    merged = merge_ledgers({"gw1": part, "gw0": other})
    assert list(merged["sessions"]) == ["gw0", "gw1"]
    assert merged["recorded"] == 9 and merged["released"] == 2
    assert [g["nodeid"] for g in merged["growth"]] == ["t.py::test_b", "t.py::test_a"]
    assert ledger_lines(merged) == [
        "ledger: 7 resources left behind by tests or fixtures still there at session end:",
        "  t.py::test_a [gw1]: fd 0 (/x); fd 1 (/x); fd 2 (/x); fd 3 (/x); fd 4 (/x); and 2 more",
        "left the most memory behind: t.py::test_b (+4.0 KiB), t.py::test_a (+2.0 KiB)",
    ]
    assert ledger_lines(merge_ledgers({"main": other})) == []


SUITE = """
import os, threading
import pytest

EVENT = threading.Event()
KEEP = []

@pytest.fixture(scope="module")
def server():
    thread = threading.Thread(target=EVENT.wait, name="module-server", daemon=True)
    thread.start()
    yield thread

def test_uses_server(server):
    pass

def test_leaves_a_descriptor():
    KEEP.append(open(os.devnull))

def test_closes_its_descriptor():
    open(os.devnull).close()

def test_keeps_memory():
    KEEP.append(bytearray(b"x") * (2 * 1024 * 1024))
"""


def test_survivors_are_listed_with_their_culprits(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = runner.sub("--memwatch", "--memwatch-json=r.json", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    section = runner.section(result)
    assert "ledger: 2 resources left behind by tests or fixtures still there at session end:" in (
        section
    )
    assert any(
        line.startswith(
            "  the fixtures set up for test_suite.py::test_uses_server "
            "(server (module)): thread 'module-server' (daemon, runs "
        )
        for line in section
    ), section
    assert any(
        line.startswith("  test_suite.py::test_leaves_a_descriptor: fd ")
        and line.endswith(" (/dev/null)")
        for line in section
    ), section
    assert any(
        line.startswith("left the most memory behind: test_suite.py::test_keeps_memory")
        for line in section
    ), section
    doc = load_results(pytester.path / "r.json")
    jsonschema.validate(doc, load_schema())
    ledger = doc["ledger"]
    assert {(r["kind"], r["owner"], r["phase"]) for r in ledger["resources"]} == {
        ("thread", "test_suite.py::test_uses_server", "fixtures"),
        ("fd", "test_suite.py::test_leaves_a_descriptor", "test"),
    }
    assert ledger["growth"][0]["nodeid"] == "test_suite.py::test_keeps_memory"
    session = ledger["sessions"]["main"]
    assert session["growth"]["malloc"] >= 2 * 1024 * 1024
    assert doc["run"]["worker_info"]["main"]["measured"] == 4
    assert doc["run"]["worker_info"]["main"]["pid"] > 0


def test_merged_shards_keep_every_ledger(pytester: pytest.Pytester, runner: Runner) -> None:
    # Two CI jobs each write a results document with a ledger; `merge` keeps both.
    import subprocess
    import sys

    pytester.makepyfile(test_suite=SUITE)
    first = runner.sub("--memwatch", "--memwatch-json=a.json", "-k", "server or descriptor")
    first.assert_outcomes(passed=3)
    second = runner.sub("--memwatch", "--memwatch-json=b.json", "-k", "keeps_memory")
    second.assert_outcomes(passed=1)
    done = subprocess.run(
        [sys.executable, "-m", "pytest_memwatch", "merge", "a.json", "b.json", "-o", "m.json"],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    doc = load_results(pytester.path / "m.json")
    jsonschema.validate(doc, load_schema())
    ledger = doc["ledger"]
    assert sorted(ledger["sessions"]) == ["0/main", "1/main"]
    assert all(s is not None and "growth" in s for s in ledger["sessions"].values())
    assert {(r["kind"], r["owner"], r["shard"]) for r in ledger["resources"]} == {
        ("thread", "test_suite.py::test_uses_server", 0),
        ("fd", "test_suite.py::test_leaves_a_descriptor", 0),
    }
    assert ledger["growth"][0]["nodeid"] == "test_suite.py::test_keeps_memory"
    assert ledger["growth"][0]["shard"] == 1
    a = load_results(pytester.path / "a.json")["ledger"]
    b = load_results(pytester.path / "b.json")["ledger"]
    assert ledger["recorded"] == a["recorded"] + b["recorded"]
    assert ledger["released"] == a["released"] + b["released"]
    lines = ledger_lines(ledger)
    culprit = "  test_suite.py::test_leaves_a_descriptor [shard 0]: fd "
    assert any(line.startswith(culprit) for line in lines), lines


def test_shard_ledgers_merge_associatively() -> None:
    def part(nodeid: str, worker: str, grown: int) -> dict[str, object]:
        return merge_ledgers(
            {
                worker: {
                    "session": {"start": {}, "end": {}, "growth": {"rss": grown}},
                    "resources": [{"kind": "fd", "owner": nodeid, "worker": worker}],
                    "recorded": 1,
                    "released": 0,
                    "growth": [{"nodeid": nodeid, "worker": worker, "bytes": grown}],
                }
            }
        )

    a, b, c = part("t::a", "main", 1), part("t::b", "gw1", 3), part("t::c", "main", 2)
    flat = merge_shard_ledgers([(0, a), (1, b), (2, c)])
    ab = merge_shard_ledgers([(0, a), (1, b)])
    nested = merge_shard_ledgers([(0, ab), (2, c)])
    assert flat == nested
    assert flat is not None
    assert sorted(flat["sessions"]) == ["0/main", "1/gw1", "2/main"]
    assert [(g["nodeid"], g["shard"]) for g in flat["growth"]] == [
        ("t::b", 1),
        ("t::c", 2),
        ("t::a", 0),
    ]
    assert [r["shard"] for r in flat["resources"]] == [0, 1, 2]
    assert flat["recorded"] == 3
    # Shards without a ledger (nothing measured) add nothing; none at all gives none.
    assert merge_shard_ledgers([(0, None), (1, b)]) == merge_shard_ledgers([(1, b)])
    assert merge_shard_ledgers([(0, None)]) is None


def test_reading_and_merging_ledgers_does_not_load_the_resource_watch() -> None:
    """``merge`` and the reports read ledger data only: no thread recorder, audit hook
    or ``/proc`` reader is imported for them (the runtime side lives in resources)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from pytest_memwatch.reports.html_ledger import ledger_view\n"
        "from pytest_memwatch.reports.ledger import merge_shard_ledgers\n"
        "ledger = {'resources': [{'kind': 'fd', 'description': 'fd 3', 'owner': 't::a'}]}\n"
        "merged = merge_shard_ledgers([(0, ledger), (1, ledger)])\n"
        "assert ledger_view(merged)['count'] == 2\n"
        "print(sorted(m for m in sys.modules if m.startswith('pytest_memwatch.resources')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_ledger_lists_at_most_five_alike_groups_per_culprit() -> None:
    resources = [
        {"kind": "fd", "description": f"fd ({n})", "owner": "t::a", "phase": "test"}
        for n in (1, 2, 1, 3, 4, 5, 6, 7)
    ]
    lines = ledger_lines({"resources": resources, "sessions": {}})
    assert lines == [
        "ledger: 8 resources left behind by tests or fixtures still there at session end:",
        "  t::a: fd (1) (x2); fd (2); fd (3); fd (4); fd (5); and 2 more",
    ]
