"""Unit tests of the session manager (fake clock unless a test says otherwise)."""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _part2_helpers import FakeClock
from reference_app.metrics import MetricsCollector
from reference_app.sessions import (
    CheckpointError,
    SessionError,
    SessionLimitError,
    SessionManager,
    SessionNotFoundError,
    create_session_manager,
    owner_alive,
)
from reference_app.storage import SecureStorage

MINUTE = 60.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_manager(tmp_path: Path, clock: FakeClock) -> Iterator[Callable[..., SessionManager]]:
    """Managers on ``tmp_path/data`` with the fake clock and no background thread."""
    made: list[SessionManager] = []

    def factory(**overrides: Any) -> SessionManager:
        options: dict[str, Any] = {"clock": clock, "background": False}
        options.update(overrides)
        manager = SessionManager(tmp_path / "data", **options)
        made.append(manager)
        return manager

    yield factory
    for manager in made:
        manager.close()


@pytest.fixture
def manager(make_manager: Callable[..., SessionManager]) -> SessionManager:
    return make_manager()


def checkpoint_files(manager: SessionManager, sid: str) -> list[str]:
    return sorted(p.name for p in (manager.sessions_dir / sid).iterdir())


# -- lifecycle ---------------------------------------------------------------------


def test_start_makes_an_active_current_session_with_a_first_checkpoint(
    manager: SessionManager,
) -> None:
    sid = manager.start_session({"engine": "pocketsphinx"})
    assert manager.current_session_id == sid
    assert checkpoint_files(manager, sid) == ["checkpoint-00000001.json"]
    stored = manager.load_session(sid)
    assert stored.session.state == "active" and stored.session.config == {"engine": "pocketsphinx"}
    assert stored.owner is not None and stored.owner["pid"] == os.getpid()
    assert manager.active_count() == manager.live_count() == 1


def test_pause_resume_stop_account_active_and_paused_time(
    manager: SessionManager, clock: FakeClock
) -> None:
    sid = manager.start_session()
    manager.record_transcript("one two three", audio_seconds=4.0)
    clock.advance(10)
    manager.pause_session()
    assert manager.load_session(sid).session.state == "paused"  # checkpointed at once
    clock.advance(5)
    manager.resume_session()
    clock.advance(10)
    report = manager.stop_session()
    assert report["state"] == "stopped" and report["stop_reason"] == "stopped"
    assert report["duration_seconds"] == 25.0
    assert report["active_seconds"] == 20.0
    assert report["paused_seconds"] == 5.0
    assert (report["transcriptions"], report["words"], report["audio_seconds"]) == (1, 3, 4.0)
    assert report["words_per_minute"] == 45.0
    assert manager.current_session_id is None and manager.held_count() == 0
    assert manager.load_session(sid).session.state == "stopped"


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (["pause", "pause"], "is paused, not active"),
        (["resume"], "is active, not paused"),
        (["pause", "record"], "resume it first"),
    ],
)
def test_invalid_transitions_are_refused(
    manager: SessionManager, steps: list[str], message: str
) -> None:
    manager.start_session()
    actions: dict[str, Callable[[], object]] = {
        "pause": manager.pause_session,
        "resume": manager.resume_session,
        "record": lambda: manager.record_transcript("x"),
    }
    with pytest.raises(SessionError, match=message):
        for step in steps:
            actions[step]()


def test_operations_without_a_session_say_so(manager: SessionManager) -> None:
    with pytest.raises(SessionNotFoundError, match="no current session"):
        manager.pause_session()
    sid = manager.start_session()
    manager.stop_session()
    with pytest.raises(SessionNotFoundError, match="not running"):
        manager.stop_session(sid)


@pytest.mark.parametrize("bad", ["../escape", "a/b", ".hidden", "x" * 65])
def test_session_ids_are_validated(manager: SessionManager, bad: str) -> None:
    with pytest.raises(SessionError, match="invalid session id"):
        manager.start_session(session_id=bad)


def test_a_session_id_cannot_be_reused(manager: SessionManager) -> None:
    manager.start_session(session_id="same")
    manager.stop_session()
    with pytest.raises(SessionError, match="already exists"):
        manager.start_session(session_id="same")


def test_recent_text_is_bounded(make_manager: Callable[..., SessionManager]) -> None:
    manager = make_manager(recent_limit=3)
    sid = manager.start_session()
    for i in range(10):
        manager.record_transcript(f"segment {i}", start=i, end=i + 0.5)
    report = manager.export_session_report(sid)
    assert report["recent_text"] == ["segment 7", "segment 8", "segment 9"]
    assert report["audio_seconds"] == 5.0


@pytest.fixture(scope="module")
def long_lived_manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SessionManager]:
    with SessionManager(tmp_path_factory.mktemp("data"), background=False) as manager:
        yield manager


@pytest.mark.no_leaks(warmup=2, runs=4)
def test_finished_sessions_leave_nothing_in_memory(long_lived_manager: SessionManager) -> None:
    for _ in range(2):
        long_lived_manager.start_session({"engine": "e"})
        long_lived_manager.record_transcript("some words " * 10, audio_seconds=3.0)
        long_lived_manager.stop_session()
    assert long_lived_manager.held_count() == 0


def test_several_sessions_run_side_by_side(manager: SessionManager) -> None:
    a = manager.start_session(session_id="a")
    b = manager.start_session(session_id="b")
    manager.record_transcript("for a", session_id=a)
    manager.record_transcript("for b one", session_id=b)
    manager.record_transcript("for b two")  # current: b
    assert manager.export_session_report(a)["transcriptions"] == 1
    assert manager.export_session_report(b)["transcriptions"] == 2


# -- checkpoints -------------------------------------------------------------------


def test_checkpoints_follow_the_interval(manager: SessionManager, clock: FakeClock) -> None:
    sid = manager.start_session()
    clock.advance(29 * MINUTE)
    manager.record_transcript("x")
    manager.tick()
    assert manager.load_session(sid).seq == 1
    clock.advance(2 * MINUTE)
    manager.tick()
    stored = manager.load_session(sid)
    assert stored.seq == 2 and stored.session.transcripts == 1
    manager.tick()
    assert manager.load_session(sid).seq == 2  # not due again yet


def test_a_paused_session_is_not_checkpointed_by_the_timer(
    manager: SessionManager, clock: FakeClock
) -> None:
    sid = manager.start_session()
    manager.pause_session()  # seq 2
    clock.advance(40 * MINUTE)
    manager.tick()
    assert manager.load_session(sid).seq == 2


def test_only_the_last_checkpoints_are_kept(make_manager: Callable[..., SessionManager]) -> None:
    manager = make_manager(keep_checkpoints=3)
    sid = manager.start_session()
    for _ in range(9):
        manager.checkpoint()
    assert checkpoint_files(manager, sid) == [
        "checkpoint-00000008.json",
        "checkpoint-00000009.json",
        "checkpoint-00000010.json",
    ]


def test_checkpoint_content_is_the_session_state(manager: SessionManager) -> None:
    sid = manager.start_session({"k": "v"})
    manager.record_transcript("hello there", audio_seconds=1.0)
    path = manager.checkpoint()
    document = json.loads(path.read_text())
    assert document["format"] == 1 and document["seq"] == 2
    assert document["session"]["id"] == sid
    assert document["session"]["recent"] == ["hello there"]
    assert document["session"]["words"] == 2


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(
    manager: SessionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = manager.start_session()
    manager.record_transcript("saved")
    manager.checkpoint()  # seq 2

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("reference_app.sessions.os.fsync", no_space)
    manager.record_transcript("not saved")
    with pytest.raises(CheckpointError, match=r"No space left .* previous checkpoint is intact"):
        manager.checkpoint()
    monkeypatch.undo()
    assert checkpoint_files(manager, sid) == [
        "checkpoint-00000001.json",
        "checkpoint-00000002.json",
    ]
    assert manager.load_session(sid).session.transcripts == 1
    assert manager.checkpoint().name == "checkpoint-00000003.json"  # disk back: carries on


def test_a_failing_timed_checkpoint_does_not_end_the_session(
    manager: SessionManager, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager.start_session()

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("reference_app.sessions.os.fsync", no_space)
    clock.advance(31 * MINUTE)
    manager.tick()
    assert manager.last_checkpoint_error is not None
    assert "No space left" in manager.last_checkpoint_error
    assert manager.active_count() == 1


def test_the_background_thread_checkpoints_on_real_time(tmp_path: Path) -> None:
    manager = SessionManager(tmp_path / "data", checkpoint_interval_seconds=0.2)
    try:
        sid = manager.start_session()
        deadline = time.monotonic() + 10
        while manager.load_session(sid).seq < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert manager.load_session(sid).seq >= 4
        thread = manager._thread
        assert thread is not None and thread.is_alive()
    finally:
        manager.close()
    assert not thread.is_alive()


# -- limits ------------------------------------------------------------------------


def test_a_session_is_stopped_at_its_maximum_length(
    make_manager: Callable[..., SessionManager], clock: FakeClock
) -> None:
    manager = make_manager(max_session_seconds=3600, idle_timeout_seconds=10 * 3600)
    sid = manager.start_session()
    clock.advance(1800)
    manager.pause_session()
    clock.advance(7200)  # paused time does not count
    manager.resume_session()
    manager.tick()
    assert manager.active_count() == 1
    clock.advance(1801)
    manager.tick()
    stored = manager.load_session(sid).session
    assert (stored.state, stored.stop_reason) == ("stopped", "max_length")
    assert manager.held_count() == 0


def test_an_idle_session_expires(
    make_manager: Callable[..., SessionManager], clock: FakeClock
) -> None:
    manager = make_manager(idle_timeout_seconds=300)
    sid = manager.start_session()
    clock.advance(200)
    manager.touch()
    clock.advance(200)
    manager.tick()
    assert manager.live_count() == 1  # the touch kept it alive
    clock.advance(301)
    manager.tick()
    assert manager.live_count() == 0 and manager.held_count() == 0
    stored = manager.load_session(sid).session
    assert (stored.state, stored.stop_reason) == ("expired", "idle")


def test_the_session_limit_expires_idle_sessions_before_refusing(
    make_manager: Callable[..., SessionManager], clock: FakeClock
) -> None:
    manager = make_manager(max_sessions=2, idle_timeout_seconds=300)
    first = manager.start_session()
    manager.start_session()
    with pytest.raises(SessionLimitError, match="2 sessions are already running"):
        manager.start_session()
    clock.advance(200)
    manager.record_transcript("busy")  # the second session stays busy
    clock.advance(150)  # the first has been idle 350 s
    third = manager.start_session()
    assert manager.live_count() == 2
    assert manager.load_session(first).session.state == "expired"
    assert manager.current_session_id == third


# -- reports and integration --------------------------------------------------------


def test_export_writes_a_json_report_for_live_and_finished_sessions(
    manager: SessionManager, tmp_path: Path
) -> None:
    sid = manager.start_session({"source": "mic"})
    manager.record_transcript("hello world")
    live = manager.export_session_report(path=tmp_path / "reports" / "live.json")
    assert json.loads((tmp_path / "reports" / "live.json").read_text()) == live
    manager.stop_session()
    finished = manager.export_session_report(sid)
    assert finished["state"] == "stopped" and finished["config"] == {"source": "mic"}
    with pytest.raises(SessionNotFoundError):
        manager.export_session_report("nope")


def test_transcripts_go_to_storage_and_the_session_is_closed_there(
    make_manager: Callable[..., SessionManager], tmp_path: Path
) -> None:
    store = SecureStorage(tmp_path / "t.db")
    manager = make_manager(storage=store)
    sid = manager.start_session({"engine": "e"})
    rows = [manager.record_transcript(f"segment {i}", start=i, end=i + 1.0) for i in range(3)]
    assert all(isinstance(r, int) for r in rows)
    assert store.session_info(sid)["is_active"] is True
    report = manager.stop_session()
    assert report["storage"]["transcripts"] == 3
    assert store.session_info(sid)["is_active"] is False
    assert [t.text for t in store.iter_transcripts(sid)] == [f"segment {i}" for i in range(3)]


def test_metrics_see_checkpoints_and_status_reports_memory(
    make_manager: Callable[..., SessionManager],
) -> None:
    metrics = MetricsCollector()
    manager = make_manager(metrics=metrics)
    manager.start_session()
    metrics.collect(sessions=manager)
    status = manager.get_session_status()
    assert status["memory_status"]["rss_mb"] > 1
    assert status["transcriptions"] == 0 and status["checkpoints"] == 1
    assert metrics.latest("checkpoint.bytes") is not None
    active = metrics.latest("sessions.active")
    assert active is not None and active.value == 1.0


def test_seed_configuration_keys(tmp_path: Path) -> None:
    manager = create_session_manager(
        tmp_path,
        {"checkpoint_interval_minutes": 30, "max_session_hours": 12, "auto_save_enabled": False},
    )
    assert manager.checkpoint_interval == 1800.0
    assert manager.max_session_seconds == 12 * 3600.0
    assert manager.auto_save is False
    with pytest.raises(ValueError, match=r"unknown session setting.*checkpoint_minutes"):
        create_session_manager(tmp_path, {"checkpoint_minutes": 5})


# -- recovery ----------------------------------------------------------------------


def test_a_detached_session_is_recovered_paused_from_its_last_checkpoint(
    make_manager: Callable[..., SessionManager], clock: FakeClock
) -> None:
    first = make_manager()
    sid = first.start_session({"engine": "e"})
    first.record_transcript("before checkpoint", audio_seconds=2.0)
    first.checkpoint()
    first.record_transcript("after checkpoint")  # not in any checkpoint
    first.close()  # leaves the session live on disk, owner released

    second = make_manager()
    interrupted = second.find_interrupted()
    assert [s.session.id for s in interrupted] == [sid]
    clock.advance(60)
    session = second.recover_session(sid)
    assert session.state == "paused" and session.recoveries == 1
    assert session.transcripts == 2  # what close() checkpointed
    second.resume_session(sid)
    second.record_transcript("after recovery")
    report = second.stop_session(sid)
    assert report["recovered"] is True and report["transcriptions"] == 3
    assert second.find_interrupted() == []


def test_recovery_skips_an_unreadable_newest_checkpoint(
    make_manager: Callable[..., SessionManager],
) -> None:
    first = make_manager()
    sid = first.start_session()
    first.record_transcript("kept")
    first.checkpoint()  # seq 2
    first.close()  # seq 3
    newest = first.sessions_dir / sid / "checkpoint-00000003.json"
    newest.write_text('{"format": 1, "seq": 3, "session": {"id": ')  # torn by a bad disk
    # Seq 2 was written while this process owned the session; make it look
    # like it came from a process that has since died.
    fallback = first.sessions_dir / sid / "checkpoint-00000002.json"
    document = json.loads(fallback.read_text())
    document["owner"]["pid"] = 2**22 + 4321
    fallback.write_text(json.dumps(document))
    (first.sessions_dir / sid / ".checkpoint-00000004.json.abc.tmp").write_text("partial")
    second = make_manager()
    stored = second.load_session(sid)
    assert stored.seq == 2 and stored.skipped and "checkpoint-00000003.json" in stored.skipped[0]
    session = second.recover_session(sid)
    assert session.transcripts == 1
    assert not list((second.sessions_dir / sid).glob(".checkpoint-*.tmp"))


def test_a_session_held_by_a_running_manager_is_not_recoverable(
    make_manager: Callable[..., SessionManager],
) -> None:
    owner = make_manager()
    sid = owner.start_session()
    other = make_manager()
    assert other.find_interrupted() == []
    with pytest.raises(SessionError, match="still owned by a running process"):
        other.recover_session(sid)
    owner.stop_session()
    with pytest.raises(SessionError, match="cannot be recovered: it is stopped"):
        other.recover_session(sid)


def test_recover_all_respects_the_limit(make_manager: Callable[..., SessionManager]) -> None:
    first = make_manager()
    for i in range(3):
        first.start_session(session_id=f"s{i}")
    first.close()
    second = make_manager(max_sessions=2)
    assert second.recover_all() == ["s0", "s1"]
    assert [s.session.id for s in second.find_interrupted()] == ["s2"]


def test_owner_alive() -> None:
    import psutil

    me: dict[str, Any] = {
        "pid": os.getpid(),
        "started": psutil.Process().create_time(),
        "host": socket.gethostname(),
    }
    assert owner_alive(me)
    assert not owner_alive(None)
    assert not owner_alive({**me, "started": me["started"] - 1000})  # pid reused by another process
    assert not owner_alive({**me, "pid": 2**22 + 12345})
    assert owner_alive({**me, "host": "some-other-host"})


# -- faults ------------------------------------------------------------------------


def test_sessions_never_expired_fault_keeps_finished_sessions_in_memory(
    make_manager: Callable[..., SessionManager], clock: FakeClock
) -> None:
    normal = make_manager()
    leaky = make_manager(config_faults=["sessions_never_expired"], idle_timeout_seconds=100)
    for manager in (normal, leaky):
        for _ in range(10):
            manager.start_session()
            manager.stop_session()
    assert normal.held_count() == 0
    assert leaky.held_count() == 10
    leaky.start_session()
    clock.advance(101)
    leaky.tick()
    assert leaky.live_count() == 0 and leaky.held_count() == 11


def test_checkpoints_in_memory_fault_keeps_every_checkpoint(
    make_manager: Callable[..., SessionManager],
) -> None:
    normal = make_manager()
    leaky = make_manager(config_faults=["checkpoints_in_memory"])
    for manager in (normal, leaky):
        manager.start_session()
        for _ in range(20):
            manager.checkpoint()
    assert len(normal._checkpoint_log) == 0
    assert len(leaky._checkpoint_log) == 21
