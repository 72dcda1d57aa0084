"""Encrypted, compressed, quota-bounded transcript storage on SQLite (seed 000).

Layout of one store (a single SQLite file in WAL mode):

* ``meta``: schema version, an application marker and a *key check* (a
  known plaintext encrypted with the store's key), so a wrong key is
  detected when the store is opened instead of yielding garbage later;
* ``transcriptions``: one row per transcript segment; the text is
  zlib-compressed when it is longer than ``compression_threshold`` bytes
  (1 KiB) and compression helps, then encrypted with AES-256-GCM (a fresh
  96-bit nonce per row; the session id and partition are authenticated
  data, so a row moved to another session fails to decrypt);
  ``partition_date`` (``YYYY-MM``, UTC) is the monthly partition;
* ``session_metadata``: per session totals and the ``is_active`` flag.

Every operation opens its own connection inside a context manager and closes
it before returning (also on error), so a store never holds a file
descriptor between calls and can be shared by threads and processes. All
SQL is parameterised.

Quota: before a write, when the pages in use plus the new row would exceed
``max_storage_mb``, the oldest *closed* sessions are deleted (with their
transcripts) until usage falls to 90 % of the quota; active sessions are never
removed. If that is not enough the write is refused with
:class:`StorageFullError` and nothing already stored is touched. A disk that
fills up (SQLite's ``SQLITE_FULL``, or ``ENOSPC``) raises the same error.

Fault ``sqlite_connections_kept``: connections are parked in a module-level
list instead of being closed, leaking one file descriptor (and the
connection's page cache) per operation.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import json
import os
import sqlite3
import stat
import time
import uuid
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from reference_app import faults
from reference_app.vtt import segment_fields

FAULT_CONNECTIONS_KEPT = faults.register(
    "sqlite_connections_kept",
    "secure storage",
    "SQLite connections are never closed: one file descriptor and its page cache per operation",
).name

KEY_ENV = "REFERENCE_APP_STORAGE_KEY"
SCHEMA_VERSION = 1
APP_MARKER = "reference_app transcript store"
KEY_BYTES = 32
NONCE_BYTES = 12
_KEY_CHECK_PLAINTEXT = b"reference_app key check v1"
_KEY_CHECK_AAD = b"reference_app:key-check"
# SQLite primary result codes (Python 3.11 exposes them as sqlite_errorcode).
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_NOTADB = 26
# Leaked connections under the fault; module-level so the leak outlives the
# store object, as a forgotten global pool would.
_KEPT_CONNECTIONS: list[sqlite3.Connection] = []

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS meta (
        key TEXT PRIMARY KEY,
        value BLOB NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS session_metadata (
        session_id TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        closed_at REAL,
        partition_date TEXT NOT NULL,
        total_transcriptions INTEGER NOT NULL DEFAULT 0,
        total_size_bytes INTEGER NOT NULL DEFAULT 0,
        is_active INTEGER NOT NULL DEFAULT 1,
        metadata TEXT NOT NULL DEFAULT '{}'
    )""",
    """CREATE TABLE IF NOT EXISTS transcriptions (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES session_metadata(session_id),
        created_at REAL NOT NULL,
        start_seconds REAL,
        end_seconds REAL,
        content_hash TEXT,
        encrypted_text BLOB NOT NULL,
        is_compressed INTEGER NOT NULL DEFAULT 0,
        original_size INTEGER NOT NULL DEFAULT 0,
        compressed_size INTEGER NOT NULL DEFAULT 0,
        partition_date TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS transcriptions_session ON transcriptions(session_id, id)",
    "CREATE INDEX IF NOT EXISTS transcriptions_partition ON transcriptions(partition_date)",
    "CREATE INDEX IF NOT EXISTS sessions_cleanup ON session_metadata(is_active, created_at)",
)


class StorageError(Exception):
    """Base class for storage problems; the message says what to do."""


class StorageKeyError(StorageError):
    """The key is missing, malformed, unsafe, or does not match the store."""


class StorageCorruptError(StorageError):
    """The file is not a readable store; it has been left untouched."""


class StorageFullError(StorageError):
    """Quota reached or disk full; nothing was written."""


class SessionNotFoundError(StorageError):
    """No such session in the store."""


@dataclass(frozen=True)
class Transcript:
    """One decrypted transcript segment."""

    id: int
    session_id: str
    text: str
    start: float | None
    end: float | None
    created_at: float
    partition: str
    content_hash: str | None


def partition_for(timestamp: float) -> str:
    """Monthly partition name (``YYYY-MM``, UTC) of a Unix timestamp."""
    return time.strftime("%Y-%m", time.gmtime(timestamp))


# -- keys -------------------------------------------------------------------


def generate_key() -> bytes:
    """A fresh random 256-bit key."""
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def encode_key(key: bytes) -> str:
    """Text form of a key (URL-safe base64), as written to key files and the env var."""
    return base64.urlsafe_b64encode(key).decode("ascii")


def decode_key(text: str | bytes, source: str) -> bytes:
    """Parse a key's text form; ``source`` names where it came from, for the error."""
    try:
        raw = base64.urlsafe_b64decode(text.strip())
    except (binascii.Error, ValueError) as exc:
        raise StorageKeyError(
            f"the key from {source} is not valid base64 ({exc}); expected "
            f"{KEY_BYTES} bytes in URL-safe base64, as written by a new store's key file"
        ) from None
    if len(raw) != KEY_BYTES:
        raise StorageKeyError(
            f"the key from {source} is {len(raw)} bytes long; expected {KEY_BYTES} "
            "bytes in URL-safe base64"
        )
    return raw


def _create_key_file(path: Path) -> bytes:
    """Write a new key to ``path`` with mode 0600, atomically and without clobbering.

    The key is written to a private temporary file and hard-linked into place:
    a reader never sees a half-written key, and if another process won the
    race its key is used instead of being overwritten.
    """
    key = generate_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(encode_key(key) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return _read_key_file(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return key


def _check_header(path: Path) -> None:
    with path.open("rb") as fh:
        header = fh.read(16)
    if header != b"SQLite format 3\0":
        raise StorageCorruptError(
            f"{path} is not an SQLite database (bad file header); it was left untouched. "
            "Restore it from a backup or choose another --store path."
        )


def _read_key_file(path: Path) -> bytes:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StorageKeyError(
            f"key file {path} is accessible by other users (mode {stat.S_IMODE(mode):o}); "
            f"run `chmod 600 {path}`"
        )
    return decode_key(path.read_text(encoding="ascii"), f"key file {path}")


# -- the store --------------------------------------------------------------


class _ConnectionSource(Protocol):
    """A pool of connections (``reference_app.service.pool.ConnectionPool``)."""

    def connection(self) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...


class SecureStorage:
    """An encrypted transcript store in one SQLite file.

    The key comes from, in order: the ``key`` argument, the
    ``REFERENCE_APP_STORAGE_KEY`` environment variable, or a key file
    (``key_file``, default ``<database>.key``) that is created with mode 0600
    together with a new database.

    Example::

        store = SecureStorage(tmp / "transcripts.db", max_storage_mb=100)
        store.open_session("s1")
        row = store.add_transcript("s1", "hello world", start=0.0, end=1.5)
        store.get_transcript(row).text      # -> "hello world"
        store.close_session("s1")
        store.get_storage_info()["usage_percent"]
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        key: bytes | str | None = None,
        key_file: str | os.PathLike[str] | None = None,
        enable_compression: bool = True,
        compression_threshold: int = 1024,
        max_storage_mb: float = 500.0,
        busy_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        config_faults: Iterable[str] | None = None,
        verify: bool = True,
    ) -> None:
        self.path = Path(path)
        self.verify = verify
        self._opening = True  # errors before the first write say nothing was written
        self.enable_compression = enable_compression
        self.compression_threshold = int(compression_threshold)
        if max_storage_mb <= 0:
            raise ValueError(f"max_storage_mb must be positive, got {max_storage_mb}")
        self.max_storage_bytes = int(max_storage_mb * 1024 * 1024)
        self.busy_timeout = busy_timeout
        self._clock = clock
        self._keep_connections = faults.is_enabled(FAULT_CONNECTIONS_KEPT, config_faults)
        self._pool: _ConnectionSource | None = None
        self.sessions_cleaned = 0
        existed = self.path.exists() and self.path.stat().st_size > 0
        if existed:
            # Before the key: a damaged file must be reported as damaged, not as
            # a key problem, and must be recognised without writing to it.
            _check_header(self.path)
        self.key_file = Path(key_file) if key_file is not None else Path(f"{self.path}.key")
        self._key, self.key_source = self._resolve_key(key, existed)
        self._aead = AESGCM(self._key)
        self._initialise(existed)
        self._opening = False

    # -- opening ---------------------------------------------------------------

    def _resolve_key(self, key: bytes | str | None, existed: bool) -> tuple[bytes, str]:
        if key is not None:
            if isinstance(key, bytes) and len(key) == KEY_BYTES:
                return key, "the key argument"
            return decode_key(key, "the key argument"), "the key argument"
        env = os.environ.get(KEY_ENV)
        if env:
            return decode_key(env, f"${KEY_ENV}"), f"${KEY_ENV}"
        source = f"key file {self.key_file}"
        if self.key_file.exists():
            return _read_key_file(self.key_file), source
        if existed:
            # Never mint a new key for an existing store: it could not read a
            # single row, and the user would find out only much later.
            raise StorageKeyError(
                f"{self.path} exists but its key file {self.key_file} is missing; "
                f"restore the key file or set ${KEY_ENV}"
            )
        return _create_key_file(self.key_file), source

    def _initialise(self, existed: bool) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            if existed:
                if self.verify:
                    self._quick_check(conn)
                self._check_foreign(conn)
            else:
                # Must precede the first table: auto_vacuum cannot change later
                # without a full VACUUM. INCREMENTAL lets rolling cleanup give
                # pages back to the file system.
                conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StorageError(f"{self.path}: could not switch to WAL mode (got {mode!r})")
            with _transaction(conn):
                for statement in _SCHEMA:
                    conn.execute(statement)
                nonce = os.urandom(NONCE_BYTES)
                check = nonce + self._aead.encrypt(nonce, _KEY_CHECK_PLAINTEXT, _KEY_CHECK_AAD)
                conn.executemany(
                    "INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)",
                    [
                        ("app", APP_MARKER),
                        ("schema_version", str(SCHEMA_VERSION)),
                        ("key_check", check),
                        ("created_at", str(self._clock())),
                    ],
                )
            self._verify_key(conn)

    def _quick_check(self, conn: sqlite3.Connection) -> None:
        """Refuse a file damaged inside before anything is written to it.

        The header check catches a foreign or overwritten start of file; damage
        in the middle (a bad sector, a partial copy) shows only on the pages
        a query touches, which may be long after this run has written rows
        next to it. ``PRAGMA quick_check`` reads every page (without the
        index cross-checks of ``integrity_check``): 1.5 s for a 570 MB file here
        (in the page cache), so at most a few seconds at the 500 MB quota.
        """
        try:
            problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
        except sqlite3.DatabaseError as exc:
            problems = [str(exc)]
        if problems != ["ok"]:
            raise StorageCorruptError(
                f"{self.path} is damaged: SQLite's quick_check found {len(problems)} "
                f"problem(s), first: {problems[0]}; nothing was written to it. Restore it "
                "from a backup or choose another --store path."
            )

    def _check_foreign(self, conn: sqlite3.Connection) -> None:
        """Refuse a valid SQLite file that is not ours, before writing anything to it."""
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if not tables:
            return  # an empty SQLite file: safe to initialise
        marker = None
        if "meta" in tables:
            row = conn.execute("SELECT value FROM meta WHERE key = 'app'").fetchone()
            marker = row[0] if row else None
        if marker != APP_MARKER:
            raise StorageCorruptError(
                f"{self.path} is an SQLite database but not a reference_app transcript "
                "store; it was left untouched. Choose another --store path."
            )
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if version is None or int(version[0]) > SCHEMA_VERSION:
            raise StorageCorruptError(
                f"{self.path} has schema version {version and version[0]}, newer than this "
                f"program's {SCHEMA_VERSION}; it was left untouched"
            )

    def _verify_key(self, conn: sqlite3.Connection) -> None:
        blob = conn.execute("SELECT value FROM meta WHERE key = 'key_check'").fetchone()[0]
        try:
            plain = self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _KEY_CHECK_AAD)
        except InvalidTag:
            plain = None
        if plain != _KEY_CHECK_PLAINTEXT:
            raise StorageKeyError(
                f"the key from {self.key_source} does not match {self.path} (it was "
                "encrypted with another key); nothing was read or changed"
            )

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A fresh connection, closed on the way out whatever happens.

        Also translates SQLite's failures into this module's errors, so
        callers see "disk full" or "corrupt" and not a bare sqlite3 error.
        """
        if self._pool is not None:
            try:
                with self._pool.connection() as pooled:
                    yield pooled
            except sqlite3.DatabaseError as exc:
                raise self._translate(exc) from exc
            return
        conn: sqlite3.Connection | None = None
        try:
            conn = self.open_connection()
            yield conn
        except sqlite3.DatabaseError as exc:
            raise self._translate(exc) from exc
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise StorageFullError(
                    f"no space left on the device holding {self.path}; nothing was written"
                ) from exc
            raise
        finally:
            if conn is not None:
                if self._keep_connections:
                    _KEPT_CONNECTIONS.append(conn)
                else:
                    conn.close()

    def open_connection(self, *, check_same_thread: bool = True) -> sqlite3.Connection:
        """A new connection to the store, set up as every operation expects.

        A connection pool's factory: ``pool = ConnectionPool(lambda:
        store.open_connection(check_same_thread=False)); store.use_pool(pool)``.
        """
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE),
        # so a write takes the lock up front instead of failing half-way.
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout,
            isolation_level=None,
            check_same_thread=check_same_thread,
        )
        try:
            # FULL: a commit that returned survives a crash of the process and
            # of the machine; kill -9 alone would be covered by NORMAL in WAL.
            conn.execute("PRAGMA synchronous=FULL")
        except BaseException:
            conn.close()
            raise
        return conn

    def use_pool(self, pool: _ConnectionSource | None) -> None:
        """Take connections from ``pool`` (its ``connection()`` context manager)
        instead of opening one per operation; ``None`` goes back to that."""
        self._pool = pool

    def _translate(self, exc: sqlite3.DatabaseError) -> StorageError:
        code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
        text = str(exc)
        if code == _SQLITE_FULL or "disk is full" in text:
            return StorageFullError(
                f"the disk holding {self.path} is full; the write was rolled back and the "
                "data already stored is intact"
            )
        if (
            code in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
            or "malformed" in text
            or "not a database" in text
        ):
            if self._opening:
                return StorageCorruptError(
                    f"{self.path} is damaged ({text}); nothing was written to it. Restore it "
                    "from a backup or choose another --store path."
                )
            return StorageCorruptError(
                f"{self.path} is damaged ({text}); the operation was abandoned and any "
                "write in it rolled back. Check it with `python -m reference_app store "
                "verify`, restore it from a backup or choose another --store path."
            )
        return StorageError(f"{self.path}: {text}")

    # -- sessions --------------------------------------------------------------

    def open_session(self, session_id: str, metadata: Mapping[str, Any] | None = None) -> None:
        """Create ``session_id`` (or reopen it) and mark it active."""
        now = self._clock()
        with self._connect() as conn, _transaction(conn):
            conn.execute(
                """INSERT INTO session_metadata(session_id, created_at, updated_at,
                       partition_date, is_active, metadata)
                   VALUES (?, ?, ?, ?, 1, ?)
                   ON CONFLICT(session_id) DO UPDATE SET
                       is_active = 1, closed_at = NULL, updated_at = excluded.updated_at""",
                (session_id, now, now, partition_for(now), json.dumps(dict(metadata or {}))),
            )

    def close_session(self, session_id: str) -> None:
        """Mark ``session_id`` closed: from now on rolling cleanup may remove it."""
        now = self._clock()
        with self._connect() as conn, _transaction(conn):
            cur = conn.execute(
                "UPDATE session_metadata SET is_active = 0, closed_at = ?, updated_at = ? "
                "WHERE session_id = ?",
                (now, now, session_id),
            )
            if cur.rowcount == 0:
                raise SessionNotFoundError(f"no session {session_id!r} in {self.path}")

    def delete_session(self, session_id: str, *, force: bool = False) -> int:
        """Delete a session and its transcripts; returns the transcripts removed.

        An active session is refused unless ``force``: it may still be written to.
        """
        with self._connect() as conn:
            with _transaction(conn):
                row = conn.execute(
                    "SELECT is_active FROM session_metadata WHERE session_id = ?", (session_id,)
                ).fetchone()
                if row is None:
                    raise SessionNotFoundError(f"no session {session_id!r} in {self.path}")
                if row[0] and not force:
                    raise StorageError(f"session {session_id!r} is active; close it first")
                removed = _delete_session_rows(conn, session_id)
            conn.execute("PRAGMA incremental_vacuum")
        return removed

    def list_sessions(self) -> list[dict[str, Any]]:
        """Every session's metadata row, oldest first."""
        with self._connect() as conn:
            rows = conn.execute(
                """SELECT session_id, created_at, updated_at, closed_at, partition_date,
                          total_transcriptions, total_size_bytes, is_active, metadata
                   FROM session_metadata ORDER BY created_at, session_id"""
            ).fetchall()
        return [_session_row(row) for row in rows]

    def session_info(self, session_id: str) -> dict[str, Any]:
        with self._connect() as conn:
            row = conn.execute(
                """SELECT session_id, created_at, updated_at, closed_at, partition_date,
                          total_transcriptions, total_size_bytes, is_active, metadata
                   FROM session_metadata WHERE session_id = ?""",
                (session_id,),
            ).fetchone()
        if row is None:
            raise SessionNotFoundError(f"no session {session_id!r} in {self.path}")
        return _session_row(row)

    # -- transcripts -----------------------------------------------------------

    def add_transcript(
        self,
        session_id: str,
        text: str,
        *,
        start: float | None = None,
        end: float | None = None,
        content_hash: str | None = None,
    ) -> int:
        """Store one segment; returns its id once the commit is durable.

        The session row is created (active) if it does not exist yet.
        """
        now = self._clock()
        partition = partition_for(now)
        payload = text.encode("utf-8")
        compressed = False
        if self.enable_compression and len(payload) > self.compression_threshold:
            packed = zlib.compress(payload, 6)
            if len(packed) < len(payload):
                payload, compressed = packed, True
        nonce = os.urandom(NONCE_BYTES)
        blob = nonce + self._aead.encrypt(nonce, payload, _row_aad(session_id, partition))
        with self._connect() as conn:
            # Room is made in its own committed transactions first, so a write
            # refused for lack of room leaves everything as it was.
            self._ensure_room(conn, len(blob) + 256, protect=session_id)
            with _transaction(conn):
                conn.execute(
                    """INSERT INTO session_metadata(session_id, created_at, updated_at,
                           partition_date, is_active)
                       VALUES (?, ?, ?, ?, 1) ON CONFLICT(session_id) DO NOTHING""",
                    (session_id, now, now, partition),
                )
                cur = conn.execute(
                    """INSERT INTO transcriptions(session_id, created_at, start_seconds,
                           end_seconds, content_hash, encrypted_text, is_compressed,
                           original_size, compressed_size, partition_date)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    (
                        session_id,
                        now,
                        start,
                        end,
                        content_hash,
                        blob,
                        int(compressed),
                        len(text.encode("utf-8")),
                        len(payload),
                        partition,
                    ),
                )
                conn.execute(
                    """UPDATE session_metadata SET total_transcriptions = total_transcriptions + 1,
                           total_size_bytes = total_size_bytes + ?, updated_at = ?
                       WHERE session_id = ?""",
                    (len(blob), now, session_id),
                )
            row_id = cur.lastrowid
        assert row_id is not None
        return row_id

    def get_transcript(self, transcript_id: int) -> Transcript:
        with self._connect() as conn:
            row = conn.execute(_SELECT_TRANSCRIPT + " WHERE id = ?", (transcript_id,)).fetchone()
        if row is None:
            raise StorageError(f"no transcript {transcript_id} in {self.path}")
        return self._decode(row)

    def iter_transcripts(
        self, session_id: str | None = None, *, batch: int = 200
    ) -> Generator[Transcript, None, None]:
        """Transcripts in id order, read in batches: constant memory, and no
        connection stays open while the caller holds the iterator."""
        last = 0
        while True:
            with self._connect() as conn:
                if session_id is None:
                    rows = conn.execute(
                        _SELECT_TRANSCRIPT + " WHERE id > ? ORDER BY id LIMIT ?", (last, batch)
                    ).fetchall()
                else:
                    rows = conn.execute(
                        _SELECT_TRANSCRIPT + " WHERE session_id = ? AND id > ? ORDER BY id LIMIT ?",
                        (session_id, last, batch),
                    ).fetchall()
            if not rows:
                return
            for row in rows:
                yield self._decode(row)
            last = rows[-1][0]

    def transcript_ids(self) -> set[int]:
        """Ids of every stored transcript (for audits and tests)."""
        with self._connect() as conn:
            return {row[0] for row in conn.execute("SELECT id FROM transcriptions")}

    def _decode(self, row: tuple[Any, ...]) -> Transcript:
        (row_id, session_id, created_at, start, end, content_hash, blob, compressed, partition) = (
            row
        )
        try:
            payload = self._aead.decrypt(
                blob[:NONCE_BYTES], blob[NONCE_BYTES:], _row_aad(session_id, partition)
            )
        except InvalidTag:
            raise StorageCorruptError(
                f"transcript {row_id} in {self.path} failed authentication (tampered or "
                "damaged); other rows are unaffected"
            ) from None
        if compressed:
            payload = zlib.decompress(payload)
        return Transcript(
            row_id,
            session_id,
            payload.decode("utf-8"),
            start,
            end,
            created_at,
            partition,
            content_hash,
        )

    # -- quota -----------------------------------------------------------------

    def used_bytes(self) -> int:
        """Bytes of database pages in use (free pages excluded)."""
        with self._connect() as conn:
            return _used_bytes(conn)

    def _ensure_room(self, conn: sqlite3.Connection, need: int, *, protect: str | None) -> None:
        if _used_bytes(conn) + need <= self.max_storage_bytes:
            return
        target = int(self.max_storage_bytes * 0.9) - need
        self._cleanup(conn, target, protect=protect)
        if _used_bytes(conn) + need > self.max_storage_bytes:
            raise StorageFullError(
                f"storage quota of {_human_bytes(self.max_storage_bytes)} reached in "
                f"{self.path} and only active sessions remain; nothing was written. Close "
                "old sessions or raise max_storage_mb."
            )

    def cleanup(self, target_bytes: int | None = None) -> int:
        """Rolling cleanup: delete the oldest closed sessions until usage is at
        most ``target_bytes`` (default 90 % of the quota); returns sessions removed."""
        target = int(self.max_storage_bytes * 0.9) if target_bytes is None else target_bytes
        with self._connect() as conn:
            return self._cleanup(conn, target, protect=None)

    def _cleanup(self, conn: sqlite3.Connection, target: int, *, protect: str | None) -> int:
        removed = 0
        while _used_bytes(conn) > target:
            # One session per transaction: each step is small, and a crash
            # mid-cleanup leaves whole sessions, never half of one.
            with _transaction(conn):
                row = conn.execute(
                    """SELECT session_id FROM session_metadata
                       WHERE is_active = 0 AND session_id IS NOT ?
                       ORDER BY created_at, session_id LIMIT 1""",
                    (protect,),
                ).fetchone()
                if row is None:
                    break
                _delete_session_rows(conn, row[0])
            removed += 1
        if removed:
            conn.execute("PRAGMA incremental_vacuum")
            self.sessions_cleaned += removed
        return removed

    # -- introspection ---------------------------------------------------------

    def get_storage_info(self) -> dict[str, Any]:
        """Size, compression, partitions and quota usage, as plain data.

        ``compression_ratio`` is original bytes / bytes after compression over
        all transcripts (2.0 = half the size; 1.0 when nothing compressed).
        """
        with self._connect() as conn:
            used = _used_bytes(conn)
            totals = conn.execute(
                """SELECT COUNT(*), COALESCE(SUM(original_size), 0),
                          COALESCE(SUM(compressed_size), 0), COALESCE(SUM(is_compressed), 0),
                          COALESCE(SUM(LENGTH(encrypted_text)), 0)
                   FROM transcriptions"""
            ).fetchone()
            sessions = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(is_active), 0) FROM session_metadata"
            ).fetchone()
            partitions = conn.execute(
                """SELECT partition_date, COUNT(*), SUM(LENGTH(encrypted_text))
                   FROM transcriptions GROUP BY partition_date ORDER BY partition_date"""
            ).fetchall()
        count, original, packed, n_compressed, stored = totals
        size = sum(
            p.stat().st_size
            for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm"))
            if p.exists()
        )
        return {
            "path": str(self.path),
            "size_bytes": size,
            "used_bytes": used,
            "quota_bytes": self.max_storage_bytes,
            "usage_percent": round(100.0 * used / self.max_storage_bytes, 2),
            "transcripts": count,
            "compressed_transcripts": n_compressed,
            "original_bytes": original,
            "compressed_bytes": packed,
            "stored_bytes": stored,
            "compression_ratio": round(original / packed, 3) if packed else 1.0,
            "space_saved_percent": round(100.0 * (1 - packed / original), 2) if original else 0.0,
            "sessions": sessions[0],
            "active_sessions": sessions[1],
            "sessions_cleaned": self.sessions_cleaned,
            "partitions": [
                {"partition": name, "transcripts": n, "stored_bytes": b}
                for name, n, b in partitions
            ],
        }

    def audit(self) -> dict[str, Any]:
        """Check everything: SQLite's full ``integrity_check``, every row's
        authentication and decompression, and each session's totals.

        Returns ``{"integrity": [...], "rows": n, "bad_rows": [...],
        "sessions": n, "bad_sessions": [...]}``; ``ok`` is True when nothing
        was found. Reads only; rows are checked in batches, in constant memory.
        """
        integrity = self.integrity_check()
        bad_rows: list[str] = []
        rows = 0
        last = 0
        while True:
            with self._connect() as conn:
                batch = conn.execute(
                    _SELECT_TRANSCRIPT + " WHERE id > ? ORDER BY id LIMIT 200", (last,)
                ).fetchall()
            if not batch:
                break
            for row in batch:
                rows += 1
                try:
                    self._decode(row)
                except StorageCorruptError as exc:
                    bad_rows.append(str(exc))
                except (zlib.error, UnicodeDecodeError) as exc:
                    bad_rows.append(f"transcript {row[0]}: {type(exc).__name__}: {exc}")
            last = batch[-1][0]
        with self._connect() as conn:
            totals = conn.execute(
                """SELECT m.session_id, m.total_transcriptions, COUNT(t.id)
                   FROM session_metadata m LEFT JOIN transcriptions t
                   ON t.session_id = m.session_id GROUP BY m.session_id"""
            ).fetchall()
        bad_sessions = [
            f"session {sid}: metadata counts {claimed} transcripts, {found} stored"
            for sid, claimed, found in totals
            if claimed != found
        ]
        return {
            "ok": integrity == ["ok"] and not bad_rows and not bad_sessions,
            "integrity": integrity,
            "rows": rows,
            "bad_rows": bad_rows,
            "sessions": len(totals),
            "bad_sessions": bad_sessions,
        }

    def integrity_check(self) -> list[str]:
        """SQLite's ``PRAGMA integrity_check``: ``["ok"]`` for a healthy file."""
        with self._connect() as conn:
            return [row[0] for row in conn.execute("PRAGMA integrity_check")]


_SELECT_TRANSCRIPT = (
    "SELECT id, session_id, created_at, start_seconds, end_seconds, content_hash, "
    "encrypted_text, is_compressed, partition_date FROM transcriptions"
)


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE … COMMIT, rolled back if the body raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        # SQLite may already have rolled back by itself (SQLITE_FULL, I/O
        # errors); a second ROLLBACK would replace the real error with
        # "no transaction is active".
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _human_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.4g} {unit}"
    return f"{n} B"


def _used_bytes(conn: sqlite3.Connection) -> int:
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    return int((pages - free) * size)


def _delete_session_rows(conn: sqlite3.Connection, session_id: str) -> int:
    removed = conn.execute(
        "DELETE FROM transcriptions WHERE session_id = ?", (session_id,)
    ).rowcount
    conn.execute("DELETE FROM session_metadata WHERE session_id = ?", (session_id,))
    return int(removed)


def _row_aad(session_id: str, partition: str) -> bytes:
    return f"reference_app:transcript:{session_id}:{partition}".encode()


def _session_row(row: tuple[Any, ...]) -> dict[str, Any]:
    keys = (
        "session_id",
        "created_at",
        "updated_at",
        "closed_at",
        "partition",
        "transcripts",
        "size_bytes",
        "is_active",
        "metadata",
    )
    data = dict(zip(keys, row, strict=True))
    data["is_active"] = bool(data["is_active"])
    data["metadata"] = json.loads(data["metadata"])
    return data


# -- the app's entry point ----------------------------------------------------


def store_transcript(
    store: SecureStorage | str | os.PathLike[str],
    segments: Iterable[Any],
    *,
    session_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> str:
    """Store a whole transcript as one closed session; returns the session id.

    ``segments`` take any form :func:`reference_app.vtt.segment_fields` accepts (the
    transcription's chunk results among them). Used by
    ``python -m reference_app transcribe --store DB``.
    """
    storage = store if isinstance(store, SecureStorage) else SecureStorage(store)
    sid = session_id or uuid.uuid4().hex[:12]
    storage.open_session(sid, metadata)
    try:
        for segment in segments:
            start, end, text = segment_fields(segment)
            if text.strip():
                storage.add_transcript(sid, text, start=start, end=end)
    finally:
        # Closed even after a failure: what was stored is complete segments,
        # and an active orphan would be shielded from cleanup forever.
        storage.close_session(sid)
    return sid
