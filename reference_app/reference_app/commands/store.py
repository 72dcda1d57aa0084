"""``python -m reference_app store ACTION DB ...``: inspect and maintain a transcript store.

The store is what ``transcribe --store`` and ``live --store`` write (an
encrypted SQLite file; its key from ``$REFERENCE_APP_STORAGE_KEY`` or
``DB.key``). Nothing here creates a store: a missing file is an error.

* ``list DB``: every session with its state, segments, size and dates.
* ``show DB SESSION``: the session's segments (times and text).
* ``verify DB``: SQLite's full integrity check, every row decrypted, every
  session's totals; exit status 1 when it finds a problem.
* ``close DB SESSION ...`` or ``close DB --orphans``: mark sessions closed, so
  rolling cleanup may remove them later. ``--orphans`` closes the active
  sessions nobody is writing to any more (a ``transcribe --store`` or ``live``
  killed mid-run): no write for ``--idle`` seconds and no running process
  owning their checkpoints in ``--data-dir``.
* ``delete DB SESSION ...``: delete sessions and their text (an active one
  only with ``--force``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from reference_app.cli import UserError

# Exit status of `store verify` when the store has problems (2 stays "bad input").
PROBLEMS_FOUND = 1


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "store",
        help="list, show, verify, close or delete what --store wrote",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True)

    listing = actions.add_parser("list", help="list the sessions in a store")
    listing.add_argument("db", type=Path, help="the store (SQLite file)")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(func=run_list)

    show = actions.add_parser("show", help="print a session's segments")
    show.add_argument("db", type=Path, help="the store (SQLite file)")
    show.add_argument("session_id", help="the session id (see `store list`)")
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    show.set_defaults(func=run_show)

    verify = actions.add_parser("verify", help="check the file, every row and every session")
    verify.add_argument("db", type=Path, help="the store (SQLite file)")
    verify.set_defaults(func=run_verify)

    close = actions.add_parser("close", help="mark active sessions closed")
    close.add_argument("db", type=Path, help="the store (SQLite file)")
    close.add_argument("session_ids", nargs="*", help="sessions to close")
    close.add_argument(
        "--orphans",
        action="store_true",
        help="close every active session nobody writes to any more",
    )
    close.add_argument(
        "--idle",
        type=_seconds,
        default=60.0,
        metavar="S",
        help="with --orphans: seconds without a write before a session counts (default: 60)",
    )
    close.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="with --orphans: sessions whose checkpoints here belong to a running process "
        "are left alone (default: as for the sessions command)",
    )
    close.set_defaults(func=run_close)

    delete = actions.add_parser("delete", help="delete sessions and their text")
    delete.add_argument("db", type=Path, help="the store (SQLite file)")
    delete.add_argument("session_ids", nargs="+", help="sessions to delete")
    delete.add_argument("--force", action="store_true", help="also delete active sessions")
    delete.set_defaults(func=run_delete)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be zero or more seconds, got {text!r}")
    return value


def _open(db: Path, *, verify: bool = True) -> Any:
    from reference_app.storage import SecureStorage, StorageError

    if not db.exists():
        raise UserError(f"no transcript store at {db}")
    if db.is_dir():
        raise UserError(f"{db}: is a directory, not a transcript store")
    try:
        return SecureStorage(db, verify=verify)
    except StorageError as exc:
        raise UserError(str(exc)) from None


def _stamp(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def _storage_call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    from reference_app.storage import StorageError

    try:
        return fn(*args, **kwargs)
    except StorageError as exc:
        raise UserError(str(exc)) from None


def run_list(args: argparse.Namespace) -> int:
    store = _open(args.db)
    rows = _storage_call(store.list_sessions)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no sessions in {args.db}", file=sys.stderr)
        return 0
    print(f"{'SESSION':<28} {'STATE':<7} {'CREATED':<19} {'SEGMENTS':>8} {'BYTES':>9}  SOURCE")
    for row in rows:
        source = row["metadata"].get("source") or row["metadata"].get("command") or "-"
        print(
            f"{row['session_id']:<28} {'active' if row['is_active'] else 'closed':<7} "
            f"{_stamp(row['created_at']):<19} {row['transcripts']:>8} {row['size_bytes']:>9}  "
            f"{source}"
        )
    return 0


def run_show(args: argparse.Namespace) -> int:
    store = _open(args.db)
    info = _storage_call(store.session_info, args.session_id)
    segments = _storage_call(lambda: list(store.iter_transcripts(args.session_id)))
    if args.json:
        info["segments"] = [{"start": t.start, "end": t.end, "text": t.text} for t in segments]
        print(json.dumps(info, indent=2))
        return 0
    for t in segments:
        when = "" if t.start is None else f"[{t.start:9.3f} - {t.end or t.start:9.3f}] "
        print(f"{when}{t.text}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from reference_app.storage import StorageCorruptError, StorageError

    # verify=False: a damaged store must still open, to be described.
    store = _open(args.db, verify=False)
    try:
        audit = store.audit()
    except StorageCorruptError as exc:
        # SQLite stopped the check itself: its own words say more than ours.
        print(f"{args.db}: damaged: {exc.__cause__ or exc}; restore it from a backup")
        return PROBLEMS_FOUND
    except StorageError as exc:
        raise UserError(str(exc)) from None
    if audit["ok"]:
        print(
            f"{args.db}: ok ({audit['sessions']} sessions, {audit['rows']} segments, every "
            "row decrypted)"
        )
        return 0
    problems = [p for p in audit["integrity"] if p != "ok"] + audit["bad_rows"]
    problems += audit["bad_sessions"]
    print(f"{args.db}: {len(problems)} problem(s) in {audit['rows']} segments")
    for problem in problems[:50]:
        print(f"  {problem}")
    if len(problems) > 50:
        print(f"  ... and {len(problems) - 50} more")
    return PROBLEMS_FOUND


def run_close(args: argparse.Namespace) -> int:
    if bool(args.session_ids) == bool(args.orphans):
        raise UserError("give session ids to close, or --orphans (not both)")
    store = _open(args.db)
    if args.orphans:
        targets = _orphans(store, args)
        if not targets:
            print(f"no orphaned sessions in {args.db}")
            return 0
    else:
        targets = args.session_ids
    for sid in targets:
        info = _storage_call(store.session_info, sid)
        if not info["is_active"]:
            print(f"{sid}: already closed")
            continue
        _storage_call(store.close_session, sid)
        print(
            f"closed {sid} ({info['transcripts']} segments, last write "
            f"{_stamp(info['updated_at'])})"
        )
    return 0


def _orphans(store: Any, args: argparse.Namespace) -> list[str]:
    from reference_app.commands.sessions import default_data_dir
    from reference_app.sessions import _SESSION_ID, owner_alive

    data_dir: Path = args.data_dir or default_data_dir()
    now = time.time()
    found = []
    for row in _storage_call(store.list_sessions):
        if not row["is_active"] or now - row["updated_at"] < args.idle:
            continue
        sid = row["session_id"]
        owner = _checkpoint_owner(data_dir, sid) if _SESSION_ID.match(sid) else None
        if owner is not None and owner_alive(owner):
            continue  # a running live session: idle, not orphaned
        found.append(sid)
    return found


def _checkpoint_owner(data_dir: Path, session_id: str) -> dict[str, Any] | None:
    from reference_app.sessions import SessionError, SessionManager

    if not (data_dir / "sessions" / session_id).is_dir():
        return None
    with SessionManager(data_dir, background=False) as manager:
        try:
            stored = manager.load_session(session_id)
        except SessionError:
            return None
    return stored.owner if stored.session.state in ("active", "paused") else None


def run_delete(args: argparse.Namespace) -> int:
    store = _open(args.db)
    for sid in args.session_ids:
        removed = _storage_call(store.delete_session, sid, force=args.force)
        print(f"deleted {sid} ({removed} segments)")
    return 0
