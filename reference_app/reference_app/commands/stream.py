"""``python -m reference_app stream FILE.wav --url ws://127.0.0.1:PORT``: stream a file.

Sends the file to a running ``serve`` as one session and prints each final
transcript on stdout as it comes back; the session summary goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from reference_app.cli import UserError
from reference_app.config import positive_float, positive_int


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "stream",
        help="stream a WAV file to a running serve and print the transcript",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument("file", type=Path, help="WAV file to stream")
    parser.add_argument(
        "--url", default="ws://127.0.0.1:8765", help="service URL (default: ws://127.0.0.1:8765)"
    )
    parser.add_argument(
        "--format",
        choices=("pcm16", "wav"),
        default="pcm16",
        help="send 16 kHz 16-bit PCM converted here, or the WAV file's own bytes (pcm16)",
    )
    parser.add_argument(
        "--chunk-ms", type=positive_int, default=100, metavar="MS", help="audio per frame (100)"
    )
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="send at the audio's own pace, like a microphone (default: as fast as accepted)",
    )
    parser.add_argument(
        "--partials", action="store_true", help="also print partial transcripts to stderr"
    )
    parser.add_argument(
        "--status",
        action="store_true",
        help="print the server's status (JSON) to stderr at the end",
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=120.0,
        metavar="S",
        help="give up when the server does not answer for S seconds (120)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reference_app.audio import AudioError
    from reference_app.service.client import StreamError, stream_file

    def show(message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "final" and message.get("text"):
            print(message["text"], flush=True)
        elif kind == "partial" and args.partials:
            print(f"[partial] {message['text']}", file=sys.stderr, flush=True)
        elif kind == "error":
            print(f"[server] {message['code']}: {message['message']}", file=sys.stderr)
        elif kind == "backpressure":
            print("[server] busy: sending paused until the work queue has room", file=sys.stderr)

    try:
        result = asyncio.run(
            stream_file(
                args.file,
                args.url,
                fmt=args.format,
                chunk_ms=args.chunk_ms,
                pace=1.0 if args.realtime else 0.0,
                want_status=args.status,
                on_message=show,
                timeout=args.timeout,
            )
        )
    except (AudioError, StreamError) as exc:
        raise UserError(str(exc)) from None
    summary = result.summary or {}
    print(
        f"[stream] session {result.session_id}: {summary.get('segments')} segment(s), "
        f"{summary.get('words')} word(s), {summary.get('audio_seconds')} s of speech",
        file=sys.stderr,
    )
    if result.status is not None:
        print(json.dumps(result.status, indent=1, sort_keys=True), file=sys.stderr)
    return 1 if result.errors else 0
