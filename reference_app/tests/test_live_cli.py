"""``live``'s long-session options: bad input is one line, status 2, before any capture."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from reference_app.storage import SecureStorage

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    # No ALSA configuration: were capture to start, it would fail differently.
    home = tmp_path / "home"
    home.mkdir()
    return {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home / "data")}


def test_a_vtt_path_in_a_missing_directory(
    run_cli: Run, tmp_path: Path, env: dict[str, str]
) -> None:
    out = tmp_path / "nowhere" / "t.vtt"
    result = run_cli("live", "--minutes", "1", "--vtt", out, env=env)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"error: cannot write {out}: no such directory {out.parent}\n"


def test_a_damaged_store_is_refused_before_capture(
    run_cli: Run, tmp_path: Path, env: dict[str, str]
) -> None:
    db = tmp_path / "t.db"
    store = SecureStorage(db, enable_compression=False)
    for i in range(300):
        store.add_transcript(f"s{i % 5}", os.urandom(300).hex())
    del store
    with db.open("r+b") as fh:
        fh.seek(db.stat().st_size // 2 - 4096)
        fh.write(os.urandom(8192))
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    result = run_cli("live", "--minutes", "1", "--store", db, "--data-dir", tmp_path / "d", env=env)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {db} is damaged: SQLite's quick_check found ")
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest


def test_a_bad_session_id_and_a_taken_one(
    run_cli: Run, tmp_path: Path, env: dict[str, str]
) -> None:
    data = tmp_path / "d"
    result = run_cli(
        "live", "--minutes", "1", "--session-id", "no spaces", "--data-dir", data, env=env
    )
    assert result.returncode == 2
    assert result.stderr == (
        "error: invalid session id 'no spaces': use letters, digits, '.', '_' or '-' (max 64)\n"
    )
    (data / "sessions" / "taken").mkdir(parents=True)
    result = run_cli("live", "--minutes", "1", "--session-id", "taken", "--data-dir", data, env=env)
    assert (result.returncode, result.stderr) == (2, "error: session 'taken' already exists\n")


def test_without_a_device_the_session_is_stopped_not_left_running(
    run_cli: Run, tmp_path: Path, env: dict[str, str]
) -> None:
    data = tmp_path / "d"
    result = run_cli("live", "--minutes", "1", "--session-id", "nomic", "--data-dir", data, env=env)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: ")
    listed = run_cli("sessions", "--data-dir", data, "list", env=env)
    assert listed.stdout.splitlines()[1].split()[:2] == ["nomic", "stopped"]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        (
            "--checkpoint-minutes",
            "0",
            "argument --checkpoint-minutes: must be a positive number, got '0'",
        ),
        ("--minutes", "soon", "argument --minutes: expected a number, got 'soon'"),
    ],
)
def test_bad_numbers(
    run_cli: Run, env: dict[str, str], option: str, value: str, message: str
) -> None:
    args = (
        ["live", "--minutes", "1", option, value]
        if option != "--minutes"
        else ["live", option, value]
    )
    result = run_cli(*args, env=env)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].endswith(message)
