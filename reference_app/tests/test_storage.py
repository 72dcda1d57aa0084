"""Unit tests of the encrypted transcript store."""

from __future__ import annotations

import calendar
import hashlib
import os
import random
import re
import sqlite3
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _part2_helpers import FakeClock, open_fds
from reference_app.storage import (
    KEY_ENV,
    SecureStorage,
    SessionNotFoundError,
    StorageCorruptError,
    StorageError,
    StorageFullError,
    StorageKeyError,
    decode_key,
    encode_key,
    generate_key,
    partition_for,
    store_transcript,
)

from reference_app import storage as storage_module


@pytest.fixture(autouse=True)
def _no_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(calendar.timegm((2025, 1, 15, 12, 0, 0)))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "transcripts.db"


@pytest.fixture
def store(db: Path, clock: FakeClock) -> SecureStorage:
    return SecureStorage(db, clock=clock)


def noise(n: int, seed: int = 0) -> str:
    """Text that barely compresses (random letters)."""
    rng = random.Random(seed)
    return "".join(
        rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(n)
    )


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- round trips -------------------------------------------------------------------


def test_a_transcript_round_trips_with_its_fields(store: SecureStorage, clock: FakeClock) -> None:
    store.open_session("s1", {"engine": "pocketsphinx"})
    row = store.add_transcript("s1", "hello world", start=1.5, end=3.0, content_hash="abc")
    got = store.get_transcript(row)
    assert (got.session_id, got.text, got.start, got.end) == ("s1", "hello world", 1.5, 3.0)
    assert (got.created_at, got.partition, got.content_hash) == (clock(), "2025-01", "abc")
    info = store.session_info("s1")
    assert info["transcripts"] == 1 and info["is_active"] is True
    assert info["metadata"] == {"engine": "pocketsphinx"}
    assert info["partition"] == "2025-01"


def test_unicode_and_empty_text_round_trip(store: SecureStorage) -> None:
    texts = ["", "naïve café ☕", "多语言文本" * 300]
    ids = [store.add_transcript("s", t) for t in texts]
    assert [store.get_transcript(i).text for i in ids] == texts


def test_adding_to_an_unknown_session_creates_it_active(store: SecureStorage) -> None:
    store.add_transcript("new", "x")
    assert store.session_info("new")["is_active"] is True


def test_missing_transcript_and_session_are_clear_errors(store: SecureStorage) -> None:
    with pytest.raises(StorageError, match="no transcript 42"):
        store.get_transcript(42)
    with pytest.raises(SessionNotFoundError, match="no session 'ghost'"):
        store.session_info("ghost")
    with pytest.raises(SessionNotFoundError):
        store.close_session("ghost")


def test_iteration_is_batched_in_id_order(store: SecureStorage) -> None:
    for i in range(10):
        store.add_transcript("a" if i % 2 else "b", f"t{i}")
    assert [t.text for t in store.iter_transcripts(batch=3)] == [f"t{i}" for i in range(10)]
    assert [t.text for t in store.iter_transcripts("a", batch=2)] == [
        f"t{i}" for i in range(1, 10, 2)
    ]
    assert store.transcript_ids() == set(range(1, 11))


def test_iteration_holds_no_connection_between_batches(store: SecureStorage) -> None:
    for i in range(6):
        store.add_transcript("s", f"t{i}")
    before = open_fds()
    iterator = store.iter_transcripts(batch=2)
    next(iterator)
    assert open_fds() == before
    iterator.close()


def test_parameters_are_never_spliced_into_sql(store: SecureStorage) -> None:
    evil = "x'); DROP TABLE transcriptions; --"
    row = store.add_transcript(evil, "text")
    store.close_session(evil)
    assert store.get_transcript(row).session_id == evil
    assert store.session_info(evil)["session_id"] == evil


def test_the_database_is_in_wal_mode_with_incremental_vacuum(
    store: SecureStorage, db: Path
) -> None:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    assert store.integrity_check() == ["ok"]


def test_concurrent_writers_lose_nothing(store: SecureStorage) -> None:
    ids: list[int] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        for i in range(25):
            row = store.add_transcript(f"s{n}", f"{n}-{i}")
            with lock:
                ids.append(row)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 100
    assert store.transcript_ids() == set(ids)


# -- compression -------------------------------------------------------------------


def test_texts_over_1_kib_are_compressed_and_shorter_ones_are_not(
    store: SecureStorage, db: Path
) -> None:
    at_limit = store.add_transcript("s", "a" * 1024)
    over = store.add_transcript("s", "a" * 1025)
    with sqlite3.connect(db) as conn:
        rows = dict(conn.execute("SELECT id, is_compressed FROM transcriptions").fetchall())
    assert rows == {at_limit: 0, over: 1}
    assert store.get_transcript(over).text == "a" * 1025


def test_compression_is_skipped_when_it_does_not_help(store: SecureStorage, db: Path) -> None:
    # Two-byte-per-char text from the full code point range barely compresses,
    # but zlib still gains a little; a tiny threshold and short text do not.
    tiny = SecureStorage(db.with_name("tiny.db"), compression_threshold=1)
    row = tiny.add_transcript("s", "ab")
    with sqlite3.connect(db.with_name("tiny.db")) as conn:
        assert conn.execute(
            "SELECT is_compressed FROM transcriptions WHERE id = ?", (row,)
        ).fetchone() == (0,)


def test_compression_can_be_disabled(db: Path) -> None:
    plain = SecureStorage(db, enable_compression=False)
    plain.add_transcript("s", "a" * 5000)
    info = plain.get_storage_info()
    assert info["compressed_transcripts"] == 0 and info["compression_ratio"] == 1.0


def test_storage_info_reports_compression_partitions_and_usage(db: Path, clock: FakeClock) -> None:
    store = SecureStorage(db, clock=clock, max_storage_mb=10)
    store.add_transcript("jan", "word " * 2000)  # 10 000 bytes, very compressible
    clock.now = calendar.timegm((2025, 2, 3, 0, 0, 0))
    store.add_transcript("feb", "short")
    store.close_session("jan")
    info = store.get_storage_info()
    assert info["transcripts"] == 2 and info["compressed_transcripts"] == 1
    assert info["original_bytes"] == 10_005
    assert info["compression_ratio"] > 20
    assert info["space_saved_percent"] > 90
    assert [p["partition"] for p in info["partitions"]] == ["2025-01", "2025-02"]
    assert [p["transcripts"] for p in info["partitions"]] == [1, 1]
    assert (info["sessions"], info["active_sessions"]) == (2, 1)
    assert info["quota_bytes"] == 10 * 1024 * 1024
    assert (
        0
        < info["usage_percent"]
        == pytest.approx(100 * info["used_bytes"] / info["quota_bytes"], abs=0.01)
    )
    assert info["size_bytes"] >= info["used_bytes"]


def test_partition_is_the_utc_month() -> None:
    assert partition_for(calendar.timegm((2024, 12, 31, 23, 59, 59))) == "2024-12"
    assert partition_for(calendar.timegm((2025, 1, 1, 0, 0, 0))) == "2025-01"


# -- encryption and keys -----------------------------------------------------------


def test_text_is_encrypted_at_rest(store: SecureStorage, db: Path) -> None:
    marker = "PLAINTEXT-MARKER-7f3a"
    store.add_transcript("s", marker)
    store.add_transcript("s", (marker + " ") * 300)  # compressed, then encrypted
    raw = b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name))
    assert marker.encode() not in raw
    assert b"PLAINTEXT" not in raw


def test_a_new_store_creates_a_private_key_file(store: SecureStorage, db: Path) -> None:
    key_file = Path(f"{db}.key")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(decode_key(key_file.read_text(), "test")) == 32
    assert store.key_source == f"key file {key_file}"


def test_reopening_with_the_key_file_reads_the_data(store: SecureStorage, db: Path) -> None:
    row = store.add_transcript("s", "kept")
    again = SecureStorage(db)
    assert again.get_transcript(row).text == "kept"


def test_a_key_from_the_environment_is_used_and_no_key_file_is_written(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, encode_key(generate_key()))
    row = SecureStorage(db).add_transcript("s", "from env")
    assert not Path(f"{db}.key").exists()
    assert SecureStorage(db).get_transcript(row).text == "from env"


def test_a_wrong_key_is_refused_and_the_data_is_untouched(
    store: SecureStorage, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [store.add_transcript("s", f"text {i}") for i in range(5)]
    monkeypatch.setenv(KEY_ENV, encode_key(generate_key()))
    with pytest.raises(
        StorageKeyError, match=r"key from \$REFERENCE_APP_STORAGE_KEY does not match"
    ):
        SecureStorage(db)
    with pytest.raises(StorageKeyError, match="key argument does not match"):
        SecureStorage(db, key=generate_key())
    monkeypatch.delenv(KEY_ENV)
    right = SecureStorage(db)
    assert [right.get_transcript(r).text for r in rows] == [f"text {i}" for i in range(5)]
    assert right.integrity_check() == ["ok"]


@pytest.mark.parametrize(
    ("text", "message"),
    [("not base64 at all!!", "not valid base64"), (encode_key(b"short"), "is 5 bytes long")],
)
def test_a_malformed_key_names_its_source(
    db: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    monkeypatch.setenv(KEY_ENV, text)
    with pytest.raises(StorageKeyError, match=message) as info:
        SecureStorage(db)
    assert KEY_ENV in str(info.value)
    assert not db.exists()


def test_a_key_file_readable_by_others_is_refused(store: SecureStorage, db: Path) -> None:
    key_file = Path(f"{db}.key")
    key_file.chmod(0o644)
    with pytest.raises(StorageKeyError, match=f"chmod 600 {key_file}"):
        SecureStorage(db)


def test_an_existing_store_without_its_key_file_is_refused(store: SecureStorage, db: Path) -> None:
    store.add_transcript("s", "x")
    Path(f"{db}.key").unlink()
    with pytest.raises(StorageKeyError, match=r"key file .* is missing"):
        SecureStorage(db)
    assert not Path(f"{db}.key").exists()  # no new key was minted


def test_a_tampered_row_fails_authentication_and_others_still_read(
    store: SecureStorage, db: Path
) -> None:
    good = store.add_transcript("s", "good")
    bad = store.add_transcript("s", "will be damaged")
    with sqlite3.connect(db) as conn:
        blob = bytearray(
            conn.execute(
                "SELECT encrypted_text FROM transcriptions WHERE id = ?", (bad,)
            ).fetchone()[0]
        )
        blob[-1] ^= 0x01
        conn.execute(
            "UPDATE transcriptions SET encrypted_text = ? WHERE id = ?", (bytes(blob), bad)
        )
    with pytest.raises(StorageCorruptError, match=f"transcript {bad} .* failed authentication"):
        store.get_transcript(bad)
    assert store.get_transcript(good).text == "good"


def test_a_row_moved_to_another_session_does_not_decrypt(store: SecureStorage, db: Path) -> None:
    row = store.add_transcript("alice", "alice's words")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE transcriptions SET session_id = 'mallory' WHERE id = ?", (row,))
    with pytest.raises(StorageCorruptError):
        store.get_transcript(row)


# -- damaged files -----------------------------------------------------------------


def test_a_file_that_is_not_sqlite_is_reported_and_left_untouched(db: Path) -> None:
    db.write_bytes(os.urandom(8192))
    before = file_digest(db)
    with pytest.raises(StorageCorruptError, match=r"not an SQLite database .* left untouched"):
        SecureStorage(db)
    assert file_digest(db) == before
    assert not Path(f"{db}.key").exists()


def test_a_foreign_sqlite_database_is_refused_untouched(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE users (name TEXT)")
        conn.execute("INSERT INTO users VALUES ('ann')")
    conn.close()
    before = file_digest(db)
    with pytest.raises(StorageCorruptError, match="not a reference_app transcript store"):
        SecureStorage(db, key=generate_key())
    assert file_digest(db) == before


def test_a_truncated_store_is_reported_as_corrupt_and_left_untouched(db: Path) -> None:
    store = SecureStorage(db, enable_compression=False)
    for i in range(200):
        store.add_transcript(f"s{i % 5}", noise(400, i))
    del store  # every connection is closed: the WAL has been folded into the file
    assert not Path(f"{db}-wal").exists()
    with db.open("r+b") as fh:
        fh.truncate(db.stat().st_size // 2)
    before = file_digest(db)
    with pytest.raises(StorageCorruptError, match=r"is damaged.*nothing was written to it"):
        SecureStorage(db)
    assert file_digest(db) == before


def garble_middle(db: Path, size: int = 8192) -> None:
    """Overwrite ``size`` bytes in the middle of the file, header and edges intact."""
    middle = db.stat().st_size // 2
    with db.open("r+b") as fh:
        fh.seek(middle - size // 2)
        fh.write(os.urandom(size))


def test_damage_inside_the_file_is_found_before_any_write(db: Path) -> None:
    store = SecureStorage(db, enable_compression=False)
    for i in range(300):
        store.add_transcript(f"s{i % 5}", noise(400, i))
    del store
    garble_middle(db)
    before = file_digest(db)
    with pytest.raises(StorageCorruptError) as caught:
        SecureStorage(db)
    assert re.fullmatch(
        rf"{re.escape(str(db))} is damaged: SQLite's quick_check found \d+ problem\(s\), "
        r"first: .+; nothing was written to it\. Restore it from a backup or choose "
        r"another --store path\.",
        str(caught.value),
    )
    assert file_digest(db) == before
    # Opting out of the check (for a salvage read) still works and says what it meets.
    salvage = SecureStorage(db, verify=False)
    with pytest.raises(StorageCorruptError, match=r"is damaged .*abandoned"):
        list(salvage.iter_transcripts())


def test_a_newer_schema_is_refused(store: SecureStorage, db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StorageCorruptError, match="schema version 99"):
        SecureStorage(db)


# -- quota and cleanup -------------------------------------------------------------


def fill_closed_sessions(store: SecureStorage, clock: FakeClock, sessions: int, rows: int) -> None:
    for s in range(sessions):
        clock.advance(60)
        store.open_session(f"old{s}")
        for r in range(rows):
            store.add_transcript(f"old{s}", noise(3000, s * 1000 + r))
        store.close_session(f"old{s}")


@pytest.mark.max_growth("2 MiB")
def test_rolling_cleanup_removes_the_oldest_closed_sessions_first(
    db: Path, clock: FakeClock
) -> None:
    store = SecureStorage(db, clock=clock, enable_compression=False, max_storage_mb=0.5)
    fill_closed_sessions(store, clock, sessions=4, rows=30)  # ~4 x 90 KB
    clock.advance(60)
    store.open_session("live")
    for r in range(60):
        store.add_transcript("live", noise(3000, 99_000 + r))
    names = [s["session_id"] for s in store.list_sessions()]
    assert "old0" not in names and "live" in names
    # What survives is the newest sessions: cleanup went strictly oldest-first.
    survivors = [n for n in names if n != "live"]
    assert survivors == [f"old{i}" for i in range(4 - len(survivors), 4)]
    info = store.get_storage_info()
    assert info["sessions_cleaned"] >= 1
    assert info["used_bytes"] <= info["quota_bytes"]
    assert sum(1 for _ in store.iter_transcripts("live")) == 60


def test_the_active_session_is_never_cleaned_up_and_a_full_quota_refuses_the_write(
    db: Path, clock: FakeClock
) -> None:
    store = SecureStorage(db, clock=clock, enable_compression=False, max_storage_mb=0.25)
    store.open_session("live")
    stored: list[int] = []
    with pytest.raises(StorageFullError, match=r"quota of 256 KiB reached .* nothing was written"):
        for r in range(500):
            stored.append(store.add_transcript("live", noise(3000, r)))
    assert 10 < len(stored) < 500
    assert store.transcript_ids() == set(stored)
    assert [t.id for t in store.iter_transcripts("live")] == stored
    assert store.session_info("live")["transcripts"] == len(stored)
    assert store.integrity_check() == ["ok"]


def test_explicit_cleanup_to_a_target(db: Path, clock: FakeClock) -> None:
    store = SecureStorage(db, clock=clock, enable_compression=False, max_storage_mb=50)
    fill_closed_sessions(store, clock, sessions=3, rows=10)
    assert store.cleanup(target_bytes=0) == 3
    assert store.list_sessions() == []
    assert store.get_storage_info()["transcripts"] == 0


def test_delete_session_refuses_an_active_one_unless_forced(store: SecureStorage) -> None:
    store.add_transcript("s", "x")
    with pytest.raises(StorageError, match="is active"):
        store.delete_session("s")
    assert store.delete_session("s", force=True) == 1
    with pytest.raises(SessionNotFoundError):
        store.delete_session("s")


@pytest.fixture
def disk_full_after(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Make SQLite itself report a full disk once the file reaches N pages.

    ``PRAGMA max_page_count`` makes SQLite fail writes with SQLITE_FULL,
    exactly as a full device does; it is per connection, so every connection
    the store opens gets it.
    """
    real_connect = sqlite3.connect
    limit: dict[str, int] = {}

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn: sqlite3.Connection = real_connect(*args, **kwargs)
        if "pages" in limit:
            conn.execute(f"PRAGMA max_page_count = {limit['pages']}")
        return conn

    monkeypatch.setattr("reference_app.storage.sqlite3.connect", connect)

    def set_limit(pages: int) -> None:
        limit["pages"] = pages

    yield set_limit


def test_a_full_disk_is_a_clear_error_and_stored_data_is_intact(
    db: Path, clock: FakeClock, disk_full_after: Any
) -> None:
    store = SecureStorage(db, clock=clock, enable_compression=False)
    stored = [store.add_transcript("s", noise(2000, i)) for i in range(20)]
    pages = store.used_bytes() // 4096
    disk_full_after(pages + 3)
    with pytest.raises(
        StorageFullError, match=r"disk holding .* is full; the write was rolled back"
    ):
        for i in range(100):
            stored.append(store.add_transcript("s", noise(2000, 100 + i)))
    assert store.transcript_ids() == set(stored)
    assert [store.get_transcript(i).text for i in stored[:20]] == [
        noise(2000, i) for i in range(20)
    ]
    assert store.session_info("s")["transcripts"] == len(stored)
    assert store.integrity_check() == ["ok"]


# -- connections -------------------------------------------------------------------


@pytest.mark.max_growth("1 MiB")
def test_no_connection_outlives_an_operation(store: SecureStorage) -> None:
    store.add_transcript("s", "warm up")
    before = open_fds()
    for i in range(30):
        row = store.add_transcript("s", f"t{i}")
        store.get_transcript(row)
        store.get_storage_info()
    assert open_fds() == before


def test_connections_are_closed_even_when_an_operation_fails(store: SecureStorage) -> None:
    store.add_transcript("s", "x")
    before = open_fds()
    for _ in range(10):
        with pytest.raises(StorageError):
            store.get_transcript(999)
        with pytest.raises(SessionNotFoundError):
            store.close_session("nobody")
    assert open_fds() == before


def test_sqlite_connections_kept_fault_leaks_a_descriptor_per_operation(db: Path) -> None:
    # Counted before the store exists: opening it already parks one connection.
    # All must be closed afterwards, because SQLite defers closing a file's
    # descriptors while any other connection of the process holds that file.
    kept_before = len(storage_module._KEPT_CONNECTIONS)
    initial = open_fds()
    try:
        leaky = SecureStorage(db, config_faults=["sqlite_connections_kept"])
        before = open_fds()
        for i in range(20):
            leaky.add_transcript("s", f"t{i}")
        assert len(storage_module._KEPT_CONNECTIONS) - kept_before == 21
        assert open_fds() - before >= 20
    finally:
        for conn in storage_module._KEPT_CONNECTIONS[kept_before:]:
            conn.close()
        del storage_module._KEPT_CONNECTIONS[kept_before:]
    assert open_fds() == initial  # all given back once the last connection closed


# -- the transcribe command's helper ------------------------------------------------


@dataclass
class Segment:
    start: float
    end: float
    text: str


@dataclass
class ChunkLike:
    start_seconds: float
    seconds: float
    text: str


def test_store_transcript_accepts_every_segment_shape(db: Path) -> None:
    segments: list[Any] = [
        (0.0, 1.0, "tuple"),
        {"start": 1.0, "end": 2.0, "text": "dict"},
        Segment(2.0, 3.0, "object"),
        ChunkLike(3.0, 1.5, "chunk"),
        Segment(4.5, 5.0, "   "),  # silence: skipped
    ]
    sid = store_transcript(db, segments, metadata={"source": "test.wav"})
    store = SecureStorage(db)
    got = [(t.start, t.end, t.text) for t in store.iter_transcripts(sid)]
    assert got == [
        (0.0, 1.0, "tuple"),
        (1.0, 2.0, "dict"),
        (2.0, 3.0, "object"),
        (3.0, 4.5, "chunk"),
    ]
    info = store.session_info(sid)
    assert info["is_active"] is False and info["metadata"] == {"source": "test.wav"}


def test_store_transcript_closes_the_session_even_when_a_segment_fails(
    store: SecureStorage,
) -> None:
    with pytest.raises(KeyError):
        store_transcript(store, [(0.0, 1.0, "ok"), {"start": 1.0}], session_id="half")
    info = store.session_info("half")
    assert info["is_active"] is False and info["transcripts"] == 1
