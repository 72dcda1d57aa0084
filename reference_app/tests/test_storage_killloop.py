"""Crash safety of the store: SIGKILL a writer in the middle of its writes, repeatedly.

A child process writes transcripts as fast as it can and prints each row's id
(with a digest of its text) only after ``add_transcript`` has returned, i.e.
after the commit. The parent kills it with SIGKILL at a random moment, 20
times, each new writer reopening the store the previous one left behind.
Afterwards every announced transcript must be present and decrypt to the
announced text, and SQLite's ``PRAGMA integrity_check`` must say ``ok``.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from reference_app.storage import SecureStorage

KILLS = 20

WRITER = r"""
import hashlib, random, sys
from reference_app.storage import SecureStorage

store = SecureStorage(sys.argv[1], max_storage_mb=200)
rng = random.Random(int(sys.argv[2]))
generation = sys.argv[2]
n = 0
while True:
    session = f"g{generation}-s{n // 25}"
    # Mixed sizes: short texts stored as is, long ones compressed first.
    words = rng.choice((3, 20, 400))
    text = " ".join(f"w{rng.randrange(10_000)}" for _ in range(words)) + f" #{generation}.{n}"
    row = store.add_transcript(session, text, start=float(n), end=n + 0.5)
    # Announced only after add_transcript returned: the commit is done.
    print(row, hashlib.sha256(text.encode()).hexdigest(), flush=True)
    n += 1
    if n % 25 == 0:
        store.close_session(session)
"""


def test_sigkill_mid_write_loses_no_committed_transcript(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    SecureStorage(db)  # creates the store and its key file once, before the crashes
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFERENCE_APP_")}
    rng = random.Random(20_240_601)
    announced: dict[int, str] = {}
    kills = 0
    for generation in range(KILLS):
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db), str(generation)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        target = rng.randint(5, 60)
        seen = 0
        while seen < target:
            line = child.stdout.readline()
            if not line:
                errors = child.stderr.read() if child.stderr else ""
                raise AssertionError(f"writer {generation} died on its own: {errors}")
            row, digest = line.split()
            announced[int(row)] = digest
            seen += 1
        # Land the kill at a random point of the next write (open, encrypt,
        # BEGIN, INSERT, COMMIT/fsync or the print).
        time.sleep(rng.uniform(0.0, 0.004))
        child.send_signal(signal.SIGKILL)
        rest, _ = child.communicate(timeout=30)
        assert child.returncode == -signal.SIGKILL
        kills += 1
        # Lines printed between the last readline and the kill were committed
        # too; a line cut off by the kill has no newline and is not counted.
        for line in rest.splitlines(keepends=True):
            if line.endswith("\n"):
                row, digest = line.split()
                announced[int(row)] = digest

    store = SecureStorage(db)
    present = store.transcript_ids()
    lost = sorted(set(announced) - present)
    wrong = [
        t.id
        for t in store.iter_transcripts()
        if t.id in announced and hashlib.sha256(t.text.encode()).hexdigest() != announced[t.id]
    ]
    integrity = store.integrity_check()
    print(
        f"\nkill loop: {len(announced)} committed writes announced, {kills} SIGKILLs, "
        f"{len(present)} rows present, {len(lost)} lost, {len(wrong)} wrong, integrity {integrity}"
    )
    assert kills == KILLS
    assert lost == [], f"committed transcripts lost after SIGKILL: {lost[:10]}"
    assert wrong == [], f"transcripts whose text changed: {wrong[:10]}"
    assert integrity == ["ok"]
    # The store is still writable after all that.
    assert store.get_transcript(store.add_transcript("after", "still works")).text == "still works"
