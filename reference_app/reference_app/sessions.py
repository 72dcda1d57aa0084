"""Long transcription sessions: lifecycle, checkpoints, recovery, limits (seeds 000, 002).

A session goes ``active`` ⇄ ``paused`` → ``stopped`` (or ``expired`` when it
sat idle longer than ``idle_timeout_seconds``, or ``stopped`` with reason
``max_length`` when its active time reached ``max_session_seconds``).

Checkpoints. Each session has a directory ``<data_dir>/sessions/<id>/``
holding its last ``keep_checkpoints`` checkpoints, ``checkpoint-<seq>.json``.
A checkpoint is written to a temporary file, flushed, fsync'ed and renamed
over its final name, then the directory is fsync'ed: after a crash a
checkpoint is either complete or absent. Checkpoints are taken on start,
pause, resume and stop, and every ``checkpoint_interval_seconds`` (30 minutes
by default) while a session is active, by a background thread that also
enforces the limits below (``background=False`` leaves calling :meth:`tick`
to the owner).

Recovery. A checkpoint records the owning process (pid and start time). A
session found on disk ``active`` or ``paused`` whose owner is gone (killed,
crashed, or closed without stopping it) is *interrupted*; recovering it loads
its newest readable checkpoint and brings it back ``paused``, so the caller
decides when to resume. What happened after that checkpoint is lost: at most
one checkpoint interval.

Limits. At most ``max_sessions`` sessions are live (active or paused) in one
manager; starting one more first expires idle sessions, then refuses with
:class:`SessionLimitError`. Finished sessions are dropped from memory; their
final checkpoint stays on disk for reports.

Faults: ``sessions_never_expired`` keeps every stopped and expired session in
the manager's in-memory table forever; ``checkpoints_in_memory`` keeps a copy
of every checkpoint written in a list.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from reference_app import faults

FAULT_NEVER_EXPIRED = faults.register(
    "sessions_never_expired",
    "session manager",
    "stopped and expired sessions are never removed from the manager's in-memory table",
).name
FAULT_CHECKPOINTS_IN_MEMORY = faults.register(
    "checkpoints_in_memory",
    "session manager",
    "a copy of every checkpoint written is appended to a list that is never trimmed",
).name

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
ACTIVE, PAUSED, STOPPED, EXPIRED = "active", "paused", "stopped", "expired"
LIVE_STATES = (ACTIVE, PAUSED)
_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d{8})\.json$")
_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class TranscriptStore(Protocol):
    """What the manager needs from a store (``reference_app.storage.SecureStorage``)."""

    def open_session(self, session_id: str, metadata: Mapping[str, Any] | None = None) -> None: ...

    def close_session(self, session_id: str) -> None: ...

    def add_transcript(
        self, session_id: str, text: str, *, start: float | None = None, end: float | None = None
    ) -> int: ...

    def session_info(self, session_id: str) -> dict[str, Any]: ...


class MetricsSink(Protocol):
    """What the manager needs from a collector (``reference_app.metrics.MetricsCollector``)."""

    def record(self, name: str, value: float, timestamp: float | None = None) -> None: ...

    def latest(self, name: str) -> Any: ...

    def summary(self) -> dict[str, dict[str, float]]: ...


class SessionError(Exception):
    """A session operation that cannot be done; the message says why."""


class SessionLimitError(SessionError):
    """Too many live sessions, even after expiring idle ones."""


class SessionNotFoundError(SessionError):
    """No session with that id, in memory or on disk."""


class CheckpointError(SessionError):
    """A checkpoint could not be written; the previous ones are intact."""


def _owner() -> dict[str, Any]:
    import psutil

    return {
        "pid": os.getpid(),
        "started": psutil.Process().create_time(),
        "host": socket.gethostname(),
    }


def owner_alive(owner: Mapping[str, Any] | None) -> bool:
    """Is the process recorded in a checkpoint still running?

    The start time guards against pid reuse: a new process that got the same
    pid after a crash does not own the session. A checkpoint from another
    host is assumed alive; it may be on a shared disk.
    """
    if not owner:
        return False
    if owner.get("host") != socket.gethostname():
        return True
    import psutil

    try:
        started = psutil.Process(int(owner["pid"])).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError, ValueError):
        return False
    return abs(started - float(owner.get("started", 0))) < 0.5


@dataclass
class Session:
    """The state of one session; everything here goes into its checkpoints."""

    id: str
    config: dict[str, Any]
    state: str
    created_at: float
    updated_at: float
    last_activity: float
    paused_at: float | None = None
    paused_seconds: float = 0.0
    stopped_at: float | None = None
    stop_reason: str | None = None
    transcripts: int = 0
    words: int = 0
    audio_seconds: float = 0.0
    checkpoints: int = 0
    last_checkpoint_at: float | None = None
    recovered_from: int | None = None  # checkpoint sequence number used by recovery
    recoveries: int = 0
    # Last few segments only: the full text lives in storage, and a session
    # must not grow with its length (an 8-hour session would hold megabytes).
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=20))

    def active_seconds(self, now: float) -> float:
        """Wall time spent active (pauses excluded), up to ``now`` or the stop."""
        end = self.stopped_at if self.stopped_at is not None else now
        paused = self.paused_seconds
        if self.paused_at is not None:
            paused += end - self.paused_at
        return max(0.0, end - self.created_at - paused)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "config": self.config,
            "state": self.state,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "last_activity": self.last_activity,
            "paused_at": self.paused_at,
            "paused_seconds": self.paused_seconds,
            "stopped_at": self.stopped_at,
            "stop_reason": self.stop_reason,
            "transcripts": self.transcripts,
            "words": self.words,
            "audio_seconds": self.audio_seconds,
            "checkpoints": self.checkpoints,
            "last_checkpoint_at": self.last_checkpoint_at,
            "recovered_from": self.recovered_from,
            "recoveries": self.recoveries,
            "recent": list(self.recent),
            "recent_limit": self.recent.maxlen,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Session:
        recent: deque[str] = deque(
            data.get("recent", []), maxlen=int(data.get("recent_limit") or 20)
        )
        return cls(
            id=str(data["id"]),
            config=dict(data.get("config") or {}),
            state=str(data["state"]),
            created_at=float(data["created_at"]),
            updated_at=float(data["updated_at"]),
            last_activity=float(data["last_activity"]),
            paused_at=data.get("paused_at"),
            paused_seconds=float(data.get("paused_seconds", 0.0)),
            stopped_at=data.get("stopped_at"),
            stop_reason=data.get("stop_reason"),
            transcripts=int(data.get("transcripts", 0)),
            words=int(data.get("words", 0)),
            audio_seconds=float(data.get("audio_seconds", 0.0)),
            checkpoints=int(data.get("checkpoints", 0)),
            last_checkpoint_at=data.get("last_checkpoint_at"),
            recovered_from=data.get("recovered_from"),
            recoveries=int(data.get("recoveries", 0)),
            recent=recent,
        )


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: temp file, fsync, rename, fsync directory.

    On any failure (a full disk, say) the temporary file is removed and
    ``path`` keeps its previous content.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # The rename itself is durable only once the directory entry is on disk.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@dataclass(frozen=True)
class StoredSession:
    """A session as found on disk: its newest readable checkpoint."""

    session: Session
    seq: int
    owner: dict[str, Any] | None
    written_at: float
    path: Path
    skipped: tuple[str, ...] = ()  # unreadable newer checkpoints, with the reason

    @property
    def interrupted(self) -> bool:
        """Live on disk, but its process is gone."""
        return self.session.state in LIVE_STATES and not owner_alive(self.owner)


class SessionManager:
    """Start, pause, resume and stop sessions; checkpoint and recover them.

    Example::

        manager = SessionManager(tmp / "data", checkpoint_interval_seconds=1800)
        sid = manager.start_session({"engine": "pocketsphinx"})
        manager.record_transcript("hello world", audio_seconds=2.0)
        manager.pause_session(); manager.resume_session()
        report = manager.stop_session()
        manager.close()
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        checkpoint_interval_seconds: float = 1800.0,
        max_session_seconds: float = 12 * 3600.0,
        max_sessions: int = 10,
        idle_timeout_seconds: float = 3600.0,
        auto_save: bool = True,
        background: bool = True,
        keep_checkpoints: int = 3,
        recent_limit: int = 20,
        storage: TranscriptStore | None = None,
        metrics: MetricsSink | None = None,
        clock: Callable[[], float] = time.time,
        tick_seconds: float | None = None,
        config_faults: Iterable[str] | None = None,
    ) -> None:
        if checkpoint_interval_seconds <= 0 or max_session_seconds <= 0:
            raise ValueError("checkpoint interval and maximum session length must be positive")
        if max_sessions < 1 or keep_checkpoints < 1 or idle_timeout_seconds <= 0:
            raise ValueError("max_sessions and keep_checkpoints must be >= 1, idle timeout > 0")
        self.data_dir = Path(data_dir)
        self.sessions_dir = self.data_dir / "sessions"
        self.sessions_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_interval = float(checkpoint_interval_seconds)
        self.max_session_seconds = float(max_session_seconds)
        self.max_sessions = int(max_sessions)
        self.idle_timeout = float(idle_timeout_seconds)
        self.auto_save = auto_save
        # background=False leaves tick() to the caller: tests drive it with a
        # fake clock, and short CLI calls have no use for a thread.
        self.background = background
        self.keep_checkpoints = int(keep_checkpoints)
        self.recent_limit = int(recent_limit)
        self.storage = storage
        self.metrics = metrics
        self._clock = clock
        self.tick_seconds = (
            tick_seconds
            if tick_seconds is not None
            else max(0.05, min(30.0, self.checkpoint_interval / 4, self.idle_timeout / 4))
        )
        self._never_expire = faults.is_enabled(FAULT_NEVER_EXPIRED, config_faults)
        self._keep_checkpoints_in_memory = faults.is_enabled(
            FAULT_CHECKPOINTS_IN_MEMORY, config_faults
        )
        self._checkpoint_log: list[dict[str, Any]] = []
        self._lock = threading.RLock()
        self._sessions: dict[str, Session] = {}
        self._seq: dict[str, int] = {}
        self.current_session_id: str | None = None
        self._owner = _owner()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_checkpoint_error: str | None = None

    @classmethod
    def from_config(
        cls, data_dir: str | os.PathLike[str], config: Mapping[str, Any]
    ) -> SessionManager:
        """Build from the seed's configuration keys (minutes and hours), e.g.
        ``{"checkpoint_interval_minutes": 30, "max_session_hours": 12, "auto_save_enabled": True}``.
        """
        known = {
            "checkpoint_interval_minutes",
            "max_session_hours",
            "auto_save_enabled",
            "max_sessions",
            "idle_timeout_minutes",
            "keep_checkpoints",
        }
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(
                f"unknown session setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        return cls(
            data_dir,
            checkpoint_interval_seconds=float(config.get("checkpoint_interval_minutes", 30)) * 60,
            max_session_seconds=float(config.get("max_session_hours", 12)) * 3600,
            auto_save=bool(config.get("auto_save_enabled", True)),
            max_sessions=int(config.get("max_sessions", 10)),
            idle_timeout_seconds=float(config.get("idle_timeout_minutes", 60)) * 60,
            keep_checkpoints=int(config.get("keep_checkpoints", 3)),
        )

    # -- lifecycle -------------------------------------------------------------

    def start_session(
        self, config: Mapping[str, Any] | None = None, *, session_id: str | None = None
    ) -> str:
        """Start a session and make it current; returns its id."""
        with self._lock:
            now = self._clock()
            sid = (
                session_id
                or f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime(now))}-{uuid.uuid4().hex[:8]}"
            )
            if not _SESSION_ID.match(sid):
                raise SessionError(
                    f"invalid session id {sid!r}: use letters, digits, '.', '_' or '-' (max 64)"
                )
            if sid in self._sessions or (self.sessions_dir / sid).exists():
                raise SessionError(f"session {sid!r} already exists")
            if self.live_count() >= self.max_sessions:
                self.expire_idle_sessions()
                if self.live_count() >= self.max_sessions:
                    raise SessionLimitError(
                        f"{self.max_sessions} sessions are already running; stop one, or wait "
                        f"for an idle one to expire ({self.idle_timeout:.0f}s without activity)"
                    )
            session = Session(
                sid,
                dict(config or {}),
                ACTIVE,
                now,
                now,
                now,
                recent=deque(maxlen=self.recent_limit),
            )
            (self.sessions_dir / sid).mkdir(parents=True)
            self._sessions[sid] = session
            self.current_session_id = sid
            if self.storage is not None:
                self.storage.open_session(sid, session.config)
            self._checkpoint_locked(session)
            self._ensure_thread()
            return sid

    def pause_session(self, session_id: str | None = None) -> None:
        """Pause (state is checkpointed at once, so a crash while paused loses nothing)."""
        with self._lock:
            session = self._live(session_id)
            if session.state != ACTIVE:
                raise SessionError(f"session {session.id} is {session.state}, not active")
            now = self._clock()
            session.state, session.paused_at, session.updated_at = PAUSED, now, now
            self._checkpoint_locked(session)

    def resume_session(self, session_id: str | None = None) -> None:
        with self._lock:
            session = self._live(session_id)
            if session.state != PAUSED:
                raise SessionError(f"session {session.id} is {session.state}, not paused")
            now = self._clock()
            session.paused_seconds += now - (session.paused_at or now)
            session.state, session.paused_at = ACTIVE, None
            session.updated_at = session.last_activity = now
            self.current_session_id = session.id
            self._checkpoint_locked(session)

    def stop_session(
        self, session_id: str | None = None, *, reason: str = "stopped"
    ) -> dict[str, Any]:
        """Stop a session, write its final checkpoint and return its report."""
        with self._lock:
            session = self._live(session_id)
            self._finish(session, STOPPED, reason)
            return self._report(session)

    def record_transcript(
        self,
        text: str,
        *,
        session_id: str | None = None,
        start: float | None = None,
        end: float | None = None,
        audio_seconds: float | None = None,
    ) -> int | None:
        """Account one transcribed segment; stores it when the manager has storage.

        Returns the storage row id (``None`` without storage). Raises
        :class:`SessionError` if the session is not active.
        """
        with self._lock:
            session = self._live(session_id)
            if session.state != ACTIVE:
                raise SessionError(f"session {session.id} is {session.state}; resume it first")
            now = self._clock()
            row = None
            if self.storage is not None:
                row = self.storage.add_transcript(session.id, text, start=start, end=end)
            session.transcripts += 1
            session.words += len(text.split())
            if audio_seconds is not None:
                session.audio_seconds += audio_seconds
            elif start is not None and end is not None:
                session.audio_seconds += max(0.0, end - start)
            session.recent.append(text)
            session.updated_at = session.last_activity = now
            self._tick_session(session, now)
            return row

    def touch(self, session_id: str | None = None) -> None:
        """Note activity without a transcript (keeps an idle session from expiring)."""
        with self._lock:
            session = self._live(session_id)
            session.last_activity = self._clock()

    def checkpoint(self, session_id: str | None = None) -> Path:
        """Write a checkpoint of a live session now; returns its path."""
        with self._lock:
            return self._checkpoint_locked(self._live(session_id))

    # -- periodic work ---------------------------------------------------------

    def tick(self) -> None:
        """Enforce limits and take due checkpoints (the background thread calls this)."""
        with self._lock:
            now = self._clock()
            for session in list(self._sessions.values()):
                if session.state in LIVE_STATES:
                    self._tick_session(session, now)

    def _tick_session(self, session: Session, now: float) -> None:
        if session.state == ACTIVE and session.active_seconds(now) >= self.max_session_seconds:
            self._finish(session, STOPPED, "max_length")
            return
        if now - session.last_activity > self.idle_timeout:
            self._finish(session, EXPIRED, "idle")
            return
        due = (session.last_checkpoint_at or session.created_at) + self.checkpoint_interval
        if self.auto_save and session.state == ACTIVE and now >= due:
            try:
                self._checkpoint_locked(session)
            except CheckpointError as exc:
                # Keep the session running: a full disk must not end an hour of
                # transcription. The next interval tries again.
                self.last_checkpoint_error = str(exc)
                log.warning("%s", exc)

    def expire_idle_sessions(self) -> list[str]:
        """Expire live sessions idle longer than the timeout; returns their ids."""
        with self._lock:
            now = self._clock()
            expired = [
                s
                for s in self._sessions.values()
                if s.state in LIVE_STATES and now - s.last_activity > self.idle_timeout
            ]
            for session in expired:
                self._finish(session, EXPIRED, "idle")
            return [s.id for s in expired]

    def _ensure_thread(self) -> None:
        if not self.background or (self._thread is not None and self._thread.is_alive()):
            return
        self._stop_event.clear()
        self._thread = threading.Thread(target=self._run, name="session-checkpointer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop_event.wait(self.tick_seconds):
            try:
                self.tick()
            except Exception:  # the thread must survive anything one tick does
                log.exception("session tick failed")

    def close(self) -> None:
        """Stop the background thread; checkpoint live sessions and release them.

        Sessions left live are detached, not stopped: a later manager finds
        them interrupted and can recover them.
        """
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            for session in list(self._sessions.values()):
                if session.state in LIVE_STATES:
                    with contextlib.suppress(CheckpointError):
                        self._checkpoint_locked(session, owner=None)
            self._sessions.clear()
            self.current_session_id = None

    def __enter__(self) -> SessionManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- checkpoints -----------------------------------------------------------

    def _checkpoint_locked(self, session: Session, *, owner: Any = ...) -> Path:
        now = self._clock()
        seq = self._seq.get(session.id, 0) + 1
        session.checkpoints += 1
        session.last_checkpoint_at = now
        document = {
            "format": CHECKPOINT_FORMAT,
            "seq": seq,
            "written_at": now,
            "owner": self._owner if owner is ... else owner,
            "session": session.to_dict(),
        }
        directory = self.sessions_dir / session.id
        path = directory / f"checkpoint-{seq:08d}.json"
        started = time.perf_counter()
        data = json.dumps(document, indent=1, sort_keys=True).encode("utf-8")
        try:
            write_atomic(path, data)
        except OSError as exc:
            session.checkpoints -= 1
            raise CheckpointError(
                f"could not write checkpoint {seq} of session {session.id} to {directory}: "
                f"{exc.strerror or exc}; the previous checkpoint is intact"
            ) from exc
        self._seq[session.id] = seq
        if self._keep_checkpoints_in_memory:
            self._checkpoint_log.append(document)
        for old in _checkpoint_files(directory)[self.keep_checkpoints :]:
            with contextlib.suppress(FileNotFoundError):
                old[1].unlink()
        if self.metrics is not None:
            self.metrics.record("checkpoint.seconds", time.perf_counter() - started)
            self.metrics.record("checkpoint.bytes", len(data))
        return path

    # -- recovery --------------------------------------------------------------

    def load_session(self, session_id: str) -> StoredSession:
        """The newest readable checkpoint of ``session_id`` on disk."""
        directory = self.sessions_dir / session_id
        if not _SESSION_ID.match(session_id) or not directory.is_dir():
            raise SessionNotFoundError(f"no session {session_id!r} in {self.sessions_dir}")
        stored = _load_latest(directory)
        if stored is None:
            raise SessionError(f"session {session_id!r} has no readable checkpoint in {directory}")
        return stored

    def stored_sessions(self) -> list[StoredSession]:
        """Every session on disk (newest readable checkpoint each), oldest first."""
        found = []
        for directory in sorted(p for p in self.sessions_dir.iterdir() if p.is_dir()):
            stored = _load_latest(directory)
            if stored is not None:
                found.append(stored)
        found.sort(key=lambda s: (s.session.created_at, s.session.id))
        return found

    def damaged_sessions(self) -> list[tuple[str, tuple[str, ...]]]:
        """Sessions on disk with no readable checkpoint: ``(id, problems)`` each.

        :meth:`stored_sessions` cannot return them (there is no state to
        show), but a listing must not hide them: their directory is there,
        and so may be their text in the store.
        """
        damaged = []
        for directory in sorted(p for p in self.sessions_dir.iterdir() if p.is_dir()):
            if _load_latest(directory) is None:
                problems = _unreadable(directory)
                damaged.append((directory.name, problems or ("no checkpoint file",)))
        return damaged

    def find_interrupted(self) -> list[StoredSession]:
        """Sessions live on disk whose process is gone, and not held by this manager."""
        with self._lock:
            held = set(self._sessions)
        return [s for s in self.stored_sessions() if s.interrupted and s.session.id not in held]

    def recover_session(self, session_id: str) -> Session:
        """Bring an interrupted session back, paused, from its last checkpoint."""
        with self._lock:
            if session_id in self._sessions:
                raise SessionError(f"session {session_id} is already held by this manager")
            stored = self.load_session(session_id)
            if not stored.interrupted:
                state = stored.session.state
                why = "still owned by a running process" if state in LIVE_STATES else state
                raise SessionError(f"session {session_id} cannot be recovered: it is {why}")
            if self.live_count() >= self.max_sessions:
                self.expire_idle_sessions()
                if self.live_count() >= self.max_sessions:
                    raise SessionLimitError(f"{self.max_sessions} sessions are already running")
            # A process killed mid-checkpoint leaves its temporary file behind.
            for stale in (self.sessions_dir / session_id).glob(".checkpoint-*.tmp"):
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
            session = stored.session
            now = self._clock()
            if session.state == ACTIVE:
                # Time between the checkpoint and now was not recorded; count it
                # as paused rather than inventing activity.
                session.paused_at = stored.written_at
            session.state = PAUSED
            session.recovered_from = stored.seq
            session.recoveries += 1
            session.updated_at = session.last_activity = now
            self._sessions[session.id] = session
            self._seq[session.id] = stored.seq
            if self.storage is not None:
                self.storage.open_session(session.id, session.config)
            self._checkpoint_locked(session)
            self._ensure_thread()
            return session

    def recover_all(self) -> list[str]:
        """Recover every interrupted session (up to the limit); returns their ids."""
        recovered = []
        for stored in self.find_interrupted():
            try:
                recovered.append(self.recover_session(stored.session.id).id)
            except SessionLimitError:
                break
        return recovered

    # -- status and reports ----------------------------------------------------

    def live_count(self) -> int:
        with self._lock:
            return sum(1 for s in self._sessions.values() if s.state in LIVE_STATES)

    def active_count(self) -> int:
        """Sessions currently active (used by the metrics collector)."""
        with self._lock:
            return sum(1 for s in self._sessions.values() if s.state == ACTIVE)

    def held_count(self) -> int:
        """Session objects held in memory (live ones, plus any a fault retains)."""
        with self._lock:
            return len(self._sessions)

    def get_session_status(self, session_id: str | None = None) -> dict[str, Any]:
        """Short status of a live session (seed: id, duration, transcriptions, memory)."""
        with self._lock:
            session = self._live(session_id)
            now = self._clock()
            status = {
                "session_id": session.id,
                "state": session.state,
                "duration_seconds": now - session.created_at,
                "active_seconds": session.active_seconds(now),
                "transcriptions": session.transcripts,
                "checkpoints": session.checkpoints,
                "seconds_to_next_checkpoint": max(
                    0.0, (session.last_checkpoint_at or now) + self.checkpoint_interval - now
                ),
            }
        if self.metrics is not None:
            rss = self.metrics.latest("memory.rss_mb")
            status["memory_status"] = {"rss_mb": rss.value if rss else None}
        return status

    def export_session_report(
        self, session_id: str | None = None, path: str | os.PathLike[str] | None = None
    ) -> dict[str, Any]:
        """A JSON-able report of a session, live or from disk; written to ``path`` if given."""
        with self._lock:
            sid = session_id or self.current_session_id
            if sid is None:
                raise SessionNotFoundError("no current session; give a session id")
            session = self._sessions.get(sid)
            if session is None:
                session = self.load_session(sid).session
            report = self._report(session)
        if path is not None:
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target, (json.dumps(report, indent=2, sort_keys=True) + "\n").encode())
        return report

    def _report(self, session: Session) -> dict[str, Any]:
        now = self._clock()
        end = session.stopped_at if session.stopped_at is not None else now
        report: dict[str, Any] = {
            "format": 1,
            "generated_at": now,
            "session_id": session.id,
            "state": session.state,
            "stop_reason": session.stop_reason,
            "created_at": session.created_at,
            "stopped_at": session.stopped_at,
            "duration_seconds": round(end - session.created_at, 3),
            "active_seconds": round(session.active_seconds(now), 3),
            "paused_seconds": round(end - session.created_at - session.active_seconds(now), 3),
            "transcriptions": session.transcripts,
            "words": session.words,
            "audio_seconds": round(session.audio_seconds, 3),
            "words_per_minute": (
                round(60.0 * session.words / session.audio_seconds, 1)
                if session.audio_seconds
                else None
            ),
            "checkpoints": session.checkpoints,
            "last_checkpoint_at": session.last_checkpoint_at,
            "recovered": session.recoveries > 0,
            "recovered_from_checkpoint": session.recovered_from,
            "config": session.config,
            "recent_text": list(session.recent),
        }
        if self.storage is not None:
            try:
                report["storage"] = self.storage.session_info(session.id)
            except Exception as exc:  # a report is still worth having without the store
                report["storage_error"] = f"{type(exc).__name__}: {exc}"
        if self.metrics is not None:
            report["metrics"] = self.metrics.summary()
        return report

    # -- internals -------------------------------------------------------------

    def _live(self, session_id: str | None) -> Session:
        sid = session_id or self.current_session_id
        if sid is None:
            raise SessionNotFoundError("no current session; start one or give a session id")
        session = self._sessions.get(sid)
        if session is None or session.state not in LIVE_STATES:
            raise SessionNotFoundError(f"session {sid!r} is not running in this manager")
        return session

    def _finish(self, session: Session, state: str, reason: str) -> None:
        now = self._clock()
        if session.paused_at is not None:
            session.paused_seconds += now - session.paused_at
            session.paused_at = None
        session.state, session.stop_reason = state, reason
        session.stopped_at = session.updated_at = now
        try:
            self._checkpoint_locked(session)
        finally:
            if self.storage is not None:
                try:
                    self.storage.close_session(session.id)
                except Exception as exc:
                    # The session is over in memory and on disk; a store that
                    # cannot record it must not keep it alive. It stays active
                    # there, so cleanup keeps its text: nothing is lost.
                    log.warning("could not close session %s in the store: %s", session.id, exc)
            if not self._never_expire:
                del self._sessions[session.id]
                self._seq.pop(session.id, None)
            if self.current_session_id == session.id:
                self.current_session_id = None


def _checkpoint_files(directory: Path) -> list[tuple[int, Path]]:
    """Checkpoint files of one session, newest first."""
    found = []
    for entry in directory.iterdir():
        match = _CHECKPOINT_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry))
    found.sort(reverse=True)
    return found


def _load_latest(directory: Path) -> StoredSession | None:
    skipped: list[str] = []
    for seq, path in _checkpoint_files(directory):
        try:
            document = json.loads(path.read_bytes())
            if document.get("format") != CHECKPOINT_FORMAT:
                raise ValueError(f"unknown checkpoint format {document.get('format')!r}")
            session = Session.from_dict(document["session"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            skipped.append(f"{path.name}: {exc}")
            continue
        return StoredSession(
            session,
            seq,
            document.get("owner"),
            float(document.get("written_at", 0.0)),
            path,
            tuple(skipped),
        )
    return None


def _unreadable(directory: Path) -> tuple[str, ...]:
    """Why each checkpoint of ``directory`` could not be read, newest first."""
    problems = []
    for _seq, path in _checkpoint_files(directory):
        try:
            document = json.loads(path.read_bytes())
            if document.get("format") != CHECKPOINT_FORMAT:
                raise ValueError(f"unknown checkpoint format {document.get('format')!r}")
            Session.from_dict(document["session"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problems.append(f"{path.name}: {type(exc).__name__}: {exc}")
    return tuple(problems)


def create_session_manager(
    data_dir: str | os.PathLike[str], config: Mapping[str, Any] | None = None
) -> SessionManager:
    """The seed's factory, e.g.
    ``create_session_manager(data_dir, {"checkpoint_interval_minutes": 30})``."""
    return SessionManager.from_config(data_dir, config or {})
