"""Crash recovery for real: kill -9 a process running a session, then recover it.

Also the ``sessions`` command end to end (list, export, recover) on what the
killed process left behind.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from reference_app.sessions import SessionManager
from reference_app.storage import SecureStorage

from reference_app import cli

# The child runs one session with the background checkpointer on a short
# interval, and also checkpoints explicitly every 5 transcripts, announcing
# the transcript count only after that checkpoint returned.
CHILD = r"""
import sys
from reference_app.sessions import SessionManager
from reference_app.storage import SecureStorage

data_dir, sid = sys.argv[1], sys.argv[2]
store = SecureStorage(f"{data_dir}/transcripts.db")
manager = SessionManager(data_dir, checkpoint_interval_seconds=0.05, storage=store)
manager.start_session({"engine": "test"}, session_id=sid)
n = 0
while True:
    n += 1
    manager.record_transcript(f"segment {n} of the session", start=n, end=n + 0.8)
    if n % 5 == 0:
        manager.checkpoint()
        print(n, flush=True)
"""


def run_and_kill(data_dir: Path, sid: str, cwd: Path, announcements: int) -> int:
    """Start the child, wait for ``announcements`` checkpoints, SIGKILL it; last count seen."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFERENCE_APP_")}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data_dir), sid],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    last = 0
    for _ in range(announcements):
        line = child.stdout.readline()
        if not line:
            raise AssertionError(f"child died: {child.stderr.read() if child.stderr else ''}")
        last = int(line)
    child.send_signal(signal.SIGKILL)
    rest, _ = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    for line in rest.splitlines(keepends=True):
        if line.endswith("\n"):
            last = int(line)
    return last


def test_a_killed_session_is_recovered_from_its_last_checkpoint(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    rng = random.Random(7)
    recovered_counts = []
    for round_ in range(5):
        sid = f"crash{round_}"
        announced = run_and_kill(data_dir, sid, tmp_path, announcements=rng.randint(2, 20))
        manager = SessionManager(data_dir, background=False)
        try:
            interrupted = [s.session.id for s in manager.find_interrupted()]
            assert interrupted == [sid]
            session = manager.recover_session(sid)
            # Everything announced was checkpointed; a few more may have been
            # checkpointed by the timer between the announcement and the kill.
            assert session.transcripts >= announced
            assert session.state == "paused" and session.recoveries == 1
            assert not list((data_dir / "sessions" / sid).glob(".*.tmp"))
            manager.stop_session(sid, reason="recovered")
            recovered_counts.append((announced, session.transcripts))
        finally:
            manager.close()
    store = SecureStorage(data_dir / "transcripts.db")
    assert store.integrity_check() == ["ok"]
    for round_, (announced, _) in enumerate(recovered_counts):
        # Storage commits before the session counts a segment, so it has at
        # least every segment any checkpoint counted.
        assert store.session_info(f"crash{round_}")["transcripts"] >= announced
    print(f"\nsession kill -9 rounds (announced, recovered): {recovered_counts}", file=sys.stderr)


@pytest.fixture
def killed_session(tmp_path: Path) -> tuple[Path, str, int]:
    data_dir = tmp_path / "data"
    announced = run_and_kill(data_dir, "victim", tmp_path, announcements=3)
    with SessionManager(data_dir, background=False) as manager:
        manager.start_session(session_id="finished")
        manager.record_transcript("done")
        manager.stop_session()
    return data_dir, "victim", announced


def test_cli_lists_recovers_and_exports_a_killed_session(
    killed_session: tuple[Path, str, int], run_cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    data_dir, sid, announced = killed_session
    listed = run_cli("sessions", "--data-dir", data_dir, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    states = {row["session_id"]: row["state"] for row in json.loads(listed.stdout)}
    assert states == {"victim": "interrupted", "finished": "stopped"}

    recovered = run_cli("sessions", "--data-dir", data_dir, "recover")
    assert recovered.returncode == 0, recovered.stderr
    assert recovered.stdout.startswith(f"recovered {sid} from checkpoint ")
    assert "now paused" in recovered.stdout

    table = run_cli("sessions", "--data-dir", data_dir, "list")
    assert table.stdout.splitlines()[0].split() == [
        "SESSION", "STATE", "CREATED", "ACTIVE", "SEGMENTS", "CKPTS",
    ]  # fmt: skip
    assert any(line.split()[:2] == ["victim", "detached"] for line in table.stdout.splitlines())

    store = data_dir / "transcripts.db"
    assert SecureStorage(store).session_info(sid)["is_active"] is True
    final = run_cli(
        "sessions", "--data-dir", data_dir, "recover", "--finalize", sid, "--store", store
    )  # fmt: skip
    assert final.returncode == 0 and f"finalized {sid}" in final.stdout
    # Closed in the store too: rolling cleanup may now remove it when space runs out.
    assert SecureStorage(store).session_info(sid)["is_active"] is False

    out = data_dir.parent / "report.json"
    exported = run_cli(
        "sessions", "--data-dir", data_dir, "export", sid, "--store", data_dir / "transcripts.db",
        "--text", "-o", out,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    report = json.loads(out.read_text())
    assert report["state"] == "stopped" and report["stop_reason"] == "recovered"
    assert report["recovered"] is True and report["transcriptions"] >= announced
    assert report["storage"]["transcripts"] >= report["transcriptions"]
    assert report["segments"][0]["text"] == "segment 1 of the session"


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_errors_are_one_line_with_exit_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    SessionManager(tmp_path / "d", background=False).close()
    code, _, err = run_main(
        ["sessions", "--data-dir", str(tmp_path / "d"), "export", "nope"], capsys
    )
    assert (code, err.strip()) == (2, f"error: no session 'nope' in {tmp_path / 'd' / 'sessions'}")
    code, _, err = run_main(
        ["sessions", "--data-dir", str(tmp_path / "d"), "export", "x", "--text"], capsys
    )
    assert code == 2 and "--text needs --store DB" in err
    (tmp_path / "bad.db").write_bytes(b"garbage" * 100)
    code, _, err = run_main(
        [
            "sessions",
            "--data-dir",
            str(tmp_path / "d"),
            "export",
            "x",
            "--store",
            str(tmp_path / "bad.db"),
        ],
        capsys,
    )
    assert code == 2 and "not an SQLite database" in err and "\n" not in err.strip()


def test_listing_a_missing_or_empty_data_dir_lists_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "none"
    assert run_main(["sessions", "--data-dir", str(missing), "list"], capsys) == (
        0,
        "",
        f"no sessions in {missing}\n",
    )
    assert run_main(["sessions", "--data-dir", str(missing), "list", "--json"], capsys) == (
        0,
        "[]\n",
        "",
    )
    assert not missing.exists()  # listing creates nothing
    empty = tmp_path / "empty"
    (empty / "sessions").mkdir(parents=True)
    assert run_main(["sessions", "--data-dir", str(empty), "list"], capsys) == (
        0,
        "",
        f"no sessions in {empty}\n",
    )


def test_a_session_with_only_unreadable_checkpoints_is_listed_as_damaged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "d"
    with SessionManager(data, background=False) as manager:
        manager.start_session(session_id="good")
        manager.stop_session()
        manager.start_session(session_id="broken")
        manager.record_transcript("some words")
        manager.stop_session()
    for checkpoint in (data / "sessions" / "broken").glob("checkpoint-*.json"):
        checkpoint.write_bytes(checkpoint.read_bytes()[:40])  # cut short by a bad disk
    code, out, err = run_main(["sessions", "--data-dir", str(data), "list"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert [line.split()[:2] for line in lines[1:]] == [["good", "stopped"], ["broken", "damaged"]]
    assert lines[2].split()[2:] == ["-", "-", "-", "-"]
    assert err.startswith("warning: session broken has no readable checkpoint (checkpoint-")
    assert "JSONDecodeError" in err and err.count("\n") == 1
    code, out, _ = run_main(["sessions", "--data-dir", str(data), "list", "--json"], capsys)
    damaged = json.loads(out)[1]
    assert damaged["session_id"] == "broken" and damaged["state"] == "damaged"
    assert len(damaged["problems"]) == 2  # start and stop: each checkpoint with its reason
    code, _, err = run_main(["sessions", "--data-dir", str(data), "export", "broken"], capsys)
    assert code == 2 and "has no readable checkpoint" in err


def test_cli_recover_with_nothing_to_do_and_unknown_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "d"
    SessionManager(data, background=False).close()
    assert run_main(["sessions", "--data-dir", str(data), "recover"], capsys) == (
        0,
        "no interrupted sessions\n",
        "",
    )
    code, _, err = run_main(["sessions", "--data-dir", str(data), "recover", "ghost"], capsys)
    assert code == 2
    assert err.splitlines() == [
        f"ghost: no session 'ghost' in {data / 'sessions'}",
        "error: 1 of 1 session(s) could not be recovered",
    ]


def test_cli_data_dir_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "from-env"
    with SessionManager(data, background=False) as manager:
        manager.start_session(session_id="env-session")
        manager.stop_session()
    monkeypatch.setenv("REFERENCE_APP_DATA_DIR", str(data))
    code, out, _ = run_main(["sessions", "list"], capsys)
    assert code == 0 and out.splitlines()[1].split()[:2] == ["env-session", "stopped"]
    code, out, _ = run_main(["sessions", "export", "env-session"], capsys)
    assert code == 0 and json.loads(out)["session_id"] == "env-session"


def test_list_is_quick_on_many_sessions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "many"
    with SessionManager(data, background=False, max_sessions=1000) as manager:
        for i in range(200):
            manager.start_session(session_id=f"s{i:03d}")
            manager.stop_session()
    started = time.perf_counter()
    code, out, _ = run_main(["sessions", "--data-dir", str(data), "list", "--json"], capsys)
    assert code == 0 and len(json.loads(out)) == 200
    assert time.perf_counter() - started < 5
