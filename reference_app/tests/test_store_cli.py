"""``python -m reference_app store list|show|verify|close|delete`` on what --store wrote."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from reference_app.storage import SecureStorage

from reference_app import cli

Run = Callable[..., subprocess.CompletedProcess[str]]


def run_main(argv: list[object], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "t.db"
    store = SecureStorage(path)
    store.open_session("done", {"source": "a.wav"})
    store.add_transcript("done", "turn off the radio", start=0.0, end=1.5)
    store.add_transcript("done", "play some music", start=1.5, end=3.0)
    store.close_session("done")
    store.open_session("left-open", {"source": "b.wav"})
    store.add_transcript("left-open", "call my mother", start=0.0, end=2.0)
    return path


def test_list_show_and_json(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["store", "list", db], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["SESSION", "STATE", "CREATED", "SEGMENTS", "BYTES", "SOURCE"]
    assert [line.split()[:2] for line in lines[1:]] == [["done", "closed"], ["left-open", "active"]]
    assert lines[1].split()[-2:][1] == "a.wav" and lines[1].split()[4] == "2"
    code, out, _ = run_main(["store", "list", db, "--json"], capsys)
    assert [r["session_id"] for r in json.loads(out)] == ["done", "left-open"]
    code, out, _ = run_main(["store", "show", db, "done"], capsys)
    assert out == (
        "[    0.000 -     1.500] turn off the radio\n[    1.500 -     3.000] play some music\n"
    )
    code, out, _ = run_main(["store", "show", db, "done", "--json"], capsys)
    assert [s["text"] for s in json.loads(out)["segments"]] == [
        "turn off the radio",
        "play some music",
    ]


def test_verify_ok_and_damaged(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["store", "verify", db], capsys)
    assert (code, out) == (0, f"{db}: ok (2 sessions, 3 segments, every row decrypted)\n")
    # A tampered row: authentication fails for that row only.
    import sqlite3

    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE transcriptions SET encrypted_text = zeroblob(40) WHERE id = 2")
    conn.close()
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    code, out, _ = run_main(["store", "verify", db], capsys)
    assert code == 1
    assert out.splitlines() == [
        f"{db}: 1 problem(s) in 3 segments",
        f"  transcript 2 in {db} failed authentication (tampered or damaged); other rows are "
        "unaffected",
    ]
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before  # verify only reads


def test_verify_a_store_damaged_inside(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "big.db"
    store = SecureStorage(path, enable_compression=False)
    for i in range(300):
        store.add_transcript(f"s{i % 5}", os.urandom(300).hex())
    del store
    with path.open("r+b") as fh:
        fh.seek(path.stat().st_size // 2 - 4096)
        fh.write(os.urandom(8192))
    code, out, _ = run_main(["store", "verify", path], capsys)
    assert code == 1
    assert re.fullmatch(
        rf"{re.escape(str(path))}: (\d+ problem\(s\) in \d+ segments\n(  .+\n)+|damaged: .+; "
        r"restore it from a backup\n)",
        out,
    )


def test_close_and_delete(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["store", "delete", db, "left-open"], capsys)
    assert (code, err) == (2, "error: session 'left-open' is active; close it first\n")
    code, out, _ = run_main(["store", "close", db, "left-open", "done"], capsys)
    assert code == 0
    assert out.splitlines()[0].startswith("closed left-open (1 segments, last write ")
    assert out.splitlines()[1] == "done: already closed"
    code, out, _ = run_main(["store", "delete", db, "left-open", "done"], capsys)
    assert (code, out) == (0, "deleted left-open (1 segments)\ndeleted done (2 segments)\n")
    assert SecureStorage(db).list_sessions() == []


def test_bad_input_is_one_line_with_status_2(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    both = "error: give session ids to close, or --orphans (not both)\n"
    none_db = tmp_path / "none.db"
    cases: list[tuple[list[object], str]] = [
        (["store", "list", none_db], f"error: no transcript store at {none_db}\n"),
        (
            ["store", "list", tmp_path],
            f"error: {tmp_path}: is a directory, not a transcript store\n",
        ),
        (["store", "show", db, "ghost"], f"error: no session 'ghost' in {db}\n"),
        (["store", "close", db], both),
        (["store", "close", db, "done", "--orphans"], both),
    ]
    for argv, message in cases:
        assert run_main(argv, capsys) == (2, "", message), argv
    assert not (tmp_path / "none.db").exists()
    (tmp_path / "junk.db").write_bytes(b"not sqlite" * 100)
    code, _, err = run_main(["store", "list", tmp_path / "junk.db"], capsys)
    assert code == 2 and "not an SQLite database" in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["store", "close", str(db), "--orphans", "--idle", "soon"])
    assert exit_info.value.code == 2
    assert "argument --idle: expected a number of seconds, got 'soon'" in capsys.readouterr().err


WRITER = """
import sys, time
from reference_app.sessions import SessionManager
from reference_app.storage import SecureStorage
store = SecureStorage(sys.argv[1])
manager = SessionManager(sys.argv[2], storage=store, background=False)
manager.start_session({"command": "live"}, session_id="recording")
manager.record_transcript("turn off the radio", start=0.0, end=1.5)
print("ready", flush=True)
time.sleep(600)
"""


def test_a_killed_writer_leaves_an_orphan_that_close_orphans_closes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, data = tmp_path / "t.db", tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFERENCE_APP_")}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db), str(data)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        argv: list[object] = ["store", "close", db, "--orphans", "--idle", "0", "--data-dir", data]
        # Still running: idle, but its checkpoints' owner is alive.
        assert run_main(argv, capsys) == (0, f"no orphaned sessions in {db}\n", "")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    (orphan,) = SecureStorage(db).list_sessions()
    assert orphan["is_active"] is True  # the kill left it active
    code, out, _ = run_main(
        ["store", "close", db, "--orphans", "--data-dir", data], capsys
    )  # the default --idle of 60 s: too recent to judge
    assert (code, out) == (0, f"no orphaned sessions in {db}\n")
    code, out, _ = run_main(argv, capsys)
    assert code == 0 and out.startswith("closed recording (1 segments, last write ")
    assert SecureStorage(db).list_sessions()[0]["is_active"] is False
