"""``python -m reference_app sessions list|export|recover``: inspect saved sessions.

Sessions live under a data directory (``--data-dir``, else
``$REFERENCE_APP_DATA_DIR``, else ``$XDG_DATA_HOME/reference-app`` or
``~/.local/share/reference-app``), one sub-directory of checkpoints each.

* ``list``: every session with its state; a live session whose process is
  gone is shown as ``interrupted`` (it crashed) or ``detached`` (its manager
  closed without stopping it); both can be recovered.
* ``export ID``: the session's JSON report, to stdout or ``--output FILE``;
  with ``--store DB`` the report includes the stored transcript's totals,
  and with ``--text`` its segments too.
* ``recover [ID ...]``: restore interrupted sessions from their last
  checkpoint; they come back paused (ready to resume), or stopped with
  ``--finalize`` (with ``--store DB``, also closed in the transcript store).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from reference_app.cli import UserError
from reference_app.sessions import (
    LIVE_STATES,
    SessionError,
    SessionManager,
    StoredSession,
)
from reference_app.storage import SecureStorage, StorageError

DATA_DIR_ENV = "REFERENCE_APP_DATA_DIR"


def default_data_dir() -> Path:
    """``$REFERENCE_APP_DATA_DIR``, else the XDG data directory for the app."""
    explicit = os.environ.get(DATA_DIR_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "reference-app"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sessions",
        help="list, export or recover saved transcription sessions",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"where sessions are kept (default: ${DATA_DIR_ENV} or {default_data_dir()})",
    )
    actions = parser.add_subparsers(dest="action", required=True)

    listing = actions.add_parser("list", help="list sessions and their states")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(func=run_list)

    export = actions.add_parser("export", help="print or write a session's JSON report")
    export.add_argument("session_id", help="the session id (see `sessions list`)")
    export.add_argument("-o", "--output", type=Path, help="write the report here instead of stdout")
    export.add_argument("--store", type=Path, help="transcript store (SQLite file) to include")
    export.add_argument(
        "--text", action="store_true", help="include the stored segments (needs --store)"
    )
    export.set_defaults(func=run_export)

    recover = actions.add_parser("recover", help="restore interrupted sessions from checkpoints")
    recover.add_argument("session_ids", nargs="*", help="sessions to recover (default: all)")
    recover.add_argument(
        "--finalize", action="store_true", help="stop the recovered sessions (final reports)"
    )
    recover.add_argument(
        "--store",
        type=Path,
        help="the sessions' transcript store: --finalize closes them there too, so rolling "
        "cleanup may remove them later",
    )
    recover.set_defaults(func=run_recover)


def _manager(args: argparse.Namespace, storage: SecureStorage | None = None) -> SessionManager:
    data_dir: Path = args.data_dir or default_data_dir()
    if not (data_dir / "sessions").is_dir():
        raise UserError(f"no sessions in {data_dir} (pass --data-dir or set ${DATA_DIR_ENV})")
    # background=False: a CLI call is short and must not start the checkpoint thread.
    return SessionManager(data_dir, background=False, storage=storage)


def _state(stored: StoredSession) -> str:
    session = stored.session
    if session.state in LIVE_STATES and stored.interrupted:
        return "detached" if stored.owner is None else "interrupted"
    return session.state


def _stamp(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def run_list(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir or default_data_dir()
    stored: list[StoredSession] = []
    damaged: list[tuple[str, tuple[str, ...]]] = []
    # A missing data directory is an empty listing, not an error, and listing
    # must not create it.
    if (data_dir / "sessions").is_dir():
        with SessionManager(data_dir, background=False) as manager:
            stored = manager.stored_sessions()
            damaged = manager.damaged_sessions()
    rows: list[dict[str, Any]] = []
    for item in stored:
        s = item.session
        now = s.stopped_at or item.written_at
        rows.append(
            {
                "session_id": s.id,
                "state": _state(item),
                "created_at": s.created_at,
                "active_seconds": round(s.active_seconds(now), 1),
                "transcriptions": s.transcripts,
                "checkpoints": s.checkpoints,
                "last_checkpoint_at": item.written_at,
                "recoveries": s.recoveries,
            }
        )
    for sid, problems in damaged:
        rows.append({"session_id": sid, "state": "damaged", "problems": list(problems)})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no sessions in {data_dir}", file=sys.stderr)
        return 0
    header = (
        f"{'SESSION':<28} {'STATE':<12} {'CREATED':<19} {'ACTIVE':>9} {'SEGMENTS':>8} {'CKPTS':>5}"
    )
    print(header)
    for row in rows:
        if row["state"] == "damaged":
            print(f"{row['session_id']:<28} {'damaged':<12} {'-':<19} {'-':>9} {'-':>8} {'-':>5}")
            continue
        print(
            f"{row['session_id']:<28} {row['state']:<12} {_stamp(row['created_at']):<19} "
            f"{_duration(row['active_seconds']):>9} {row['transcriptions']:>8} "
            f"{row['checkpoints']:>5}"
        )
    for sid, problems in damaged:
        print(
            f"warning: session {sid} has no readable checkpoint ({'; '.join(problems)}); "
            "its text, if any, is still in the store",
            file=sys.stderr,
        )
    return 0


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _storage(path: Path | None) -> SecureStorage | None:
    if path is None:
        return None
    if not path.exists():
        raise UserError(f"no transcript store at {path}")
    try:
        return SecureStorage(path)
    except StorageError as exc:
        raise UserError(str(exc)) from None


def run_export(args: argparse.Namespace) -> int:
    if args.text and args.store is None:
        raise UserError("--text needs --store DB (the transcript store to read the text from)")
    storage = _storage(args.store)
    with _manager(args, storage) as manager:
        try:
            report = manager.export_session_report(args.session_id)
        except SessionError as exc:
            raise UserError(str(exc)) from None
    if storage is not None and args.text:
        try:
            report["segments"] = [
                {"start": t.start, "end": t.end, "text": t.text}
                for t in storage.iter_transcripts(args.session_id)
            ]
        except StorageError as exc:
            raise UserError(str(exc)) from None
    text = json.dumps(report, indent=2, sort_keys=True) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    return 0


def run_recover(args: argparse.Namespace) -> int:
    with _manager(args, _storage(args.store)) as manager:
        targets = args.session_ids or [s.session.id for s in manager.find_interrupted()]
        if not targets:
            print("no interrupted sessions")
            return 0
        failed = 0
        for sid in targets:
            try:
                stored = manager.load_session(sid)
                session = manager.recover_session(sid)
            except (SessionError, StorageError) as exc:
                print(f"{sid}: {exc}", file=sys.stderr)
                failed += 1
                continue
            note = f"; skipped unreadable {'; '.join(stored.skipped)}" if stored.skipped else ""
            print(
                f"recovered {sid} from checkpoint {stored.seq} written {_stamp(stored.written_at)}"
                f" ({session.transcripts} segments; anything after that checkpoint was not"
                f" saved{note}); now {session.state}"
            )
            if args.finalize:
                manager.stop_session(sid, reason="recovered")
                print(f"  finalized {sid}")
        # Closing detaches the sessions not finalized: they stay paused on disk,
        # ready for another recover or a resume.
    if failed:
        raise UserError(f"{failed} of {len(targets)} session(s) could not be recovered")
    return 0
