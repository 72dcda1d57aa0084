"""``transcribe --store DB --vtt OUT``: the transcript reaches the store and a VTT file."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from reference_app.storage import KEY_ENV, SecureStorage, encode_key, generate_key
from reference_app.vtt import VTTReader

Run = Callable[..., subprocess.CompletedProcess[str]]


def test_transcribe_stores_the_transcript_and_writes_vtt(
    run_cli: Run, audio_dir: Path, grammar: Path, tmp_path: Path
) -> None:
    wav = audio_dir / "please_open_the_door_and_turn_on_the_light.wav"
    db, out = tmp_path / "store" / "t.db", tmp_path / "t.vtt"
    result = run_cli("transcribe", wav, "--grammar", grammar, "--store", db, "--vtt", out)
    assert result.returncode == 0, result.stderr
    text = result.stdout.strip()
    assert text == "please open the door and turn on the light"

    store = SecureStorage(db)
    (session,) = store.list_sessions()
    assert result.stderr.splitlines()[0] == f"stored as session {session['session_id']} in {db}"
    assert session["is_active"] is False
    assert session["metadata"] == {"source": str(wav), "engine": "pocketsphinx"}
    stored = " ".join(t.text for t in store.iter_transcripts(session["session_id"]))
    assert stored == text

    reader = VTTReader(out, strict=True)
    cues = list(reader)
    assert " ".join(c.text for c in cues) == text
    assert cues[0].start == 0.0 and all(c.end > c.start for c in cues)
    assert result.stderr.splitlines()[1] == f"wrote {len(cues)} cue(s) to {out}"


def test_a_second_run_adds_a_session_to_the_same_store(
    run_cli: Run, audio_dir: Path, grammar: Path, tmp_path: Path
) -> None:
    db = tmp_path / "t.db"
    for name in ("play_some_music.wav", "send_a_message_to_john.wav"):
        assert (
            run_cli("transcribe", audio_dir / name, "--grammar", grammar, "--store", db).returncode
            == 0
        )
    texts = [
        " ".join(t.text for t in SecureStorage(db).iter_transcripts(s["session_id"]))
        for s in SecureStorage(db).list_sessions()
    ]
    assert sorted(texts) == ["play some music", "send a message to john"]


def test_a_wrong_key_is_one_line_and_the_store_is_untouched(
    run_cli: Run, audio_dir: Path, grammar: Path, tmp_path: Path
) -> None:
    db = tmp_path / "t.db"
    store = SecureStorage(db)
    row = store.add_transcript("earlier", "kept safe")
    env = {**os.environ, KEY_ENV: encode_key(generate_key())}
    result = run_cli(
        "transcribe", audio_dir / "play_some_music.wav", "--grammar", grammar, "--store", db,
        env=env,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: the key from ${KEY_ENV} does not match {db} (it was encrypted with another "
        "key); nothing was read or changed"
    ]
    assert SecureStorage(db).get_transcript(row).text == "kept safe"
    assert len(SecureStorage(db).list_sessions()) == 1


def test_a_corrupt_store_is_one_line_and_left_untouched(
    run_cli: Run, audio_dir: Path, grammar: Path, tmp_path: Path
) -> None:
    db = tmp_path / "t.db"
    db.write_bytes(b"this is not a database\n" * 200)
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    result = run_cli(
        "transcribe", audio_dir / "play_some_music.wav", "--grammar", grammar, "--store", db
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {db} is not an SQLite database (bad file header)")
    assert len(result.stderr.strip().splitlines()) == 1
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest


def test_an_unwritable_vtt_path_is_one_line(
    run_cli: Run, audio_dir: Path, grammar: Path, tmp_path: Path
) -> None:
    out = tmp_path / "missing-dir" / "t.vtt"
    result = run_cli(
        "transcribe", audio_dir / "play_some_music.wav", "--grammar", grammar, "--vtt", out
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: cannot write {out}: No such file or directory"


def test_a_store_damaged_inside_is_refused_before_writing(
    run_cli: Run, audio_dir: Path, grammar: Path, tmp_path: Path
) -> None:
    db = tmp_path / "t.db"
    store = SecureStorage(db, enable_compression=False)
    for i in range(300):
        store.add_transcript(f"s{i % 5}", os.urandom(300).hex())
    del store
    middle = db.stat().st_size // 2
    with db.open("r+b") as fh:  # 8 KiB of garbage mid-file, as a bad copy leaves
        fh.seek(middle - 4096)
        fh.write(os.urandom(8192))
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    result = run_cli(
        "transcribe", audio_dir / "play_some_music.wav", "--grammar", grammar, "--store", db
    )
    assert result.returncode == 2
    assert result.stdout == "play some music\n"  # the transcript is not lost
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {db} is damaged: SQLite's quick_check found ")
    assert line.endswith(
        "nothing was written to it. Restore it from a backup or choose another --store path."
    )
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest
