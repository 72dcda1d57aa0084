"""``python -m reference_app transcribe FILE``: print the transcript of a WAV file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from reference_app.audio import AudioError
from reference_app.cli import UserError
from reference_app.config import add_engine_arguments, config_from_args, create_app, positive_float
from reference_app.transcription import TranscriptionError


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "transcribe",
        help="print the transcript of a WAV file",
        description=(
            "Transcribe a WAV file (8-48 kHz, 8/16/24/32-bit PCM or float, any channel "
            "count) in chunks of bounded memory and print the text."
        ),
    )
    parser.add_argument("file", type=Path, help="WAV file to transcribe")
    add_engine_arguments(parser)
    parser.add_argument(
        "--chunk-seconds",
        type=positive_float,
        default=30.0,
        metavar="S",
        help="longest chunk held in memory (default: 30; halved under memory pressure)",
    )
    parser.add_argument(
        "--stats",
        action="store_true",
        help="also print audio length, processing time and real-time factor to stderr",
    )
    parser.add_argument(
        "--store",
        type=Path,
        metavar="DB",
        help="also save the transcript, encrypted, as a new session in this SQLite store "
        "(key: $REFERENCE_APP_STORAGE_KEY or DB.key, created on first use)",
    )
    parser.add_argument(
        "--vtt",
        type=Path,
        metavar="OUT",
        help="also write the transcript as WebVTT subtitles (one cue per chunk) to OUT",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args, chunk_seconds=args.chunk_seconds)
    try:
        with create_app(config) as app:
            result = app.transcribe_file(args.file)
    except (AudioError, TranscriptionError) as exc:
        raise UserError(str(exc)) from None
    print(result.text)
    if args.stats:
        print(
            f"audio {result.audio_seconds:.2f} s, processing {result.processing_seconds:.3f} s, "
            f"real-time factor {result.real_time_factor:.3f}, chunks {len(result.chunks)}",
            file=sys.stderr,
        )
    # Imported here: plain transcription should not pay for cryptography/SQLite.
    if args.store is not None:
        from reference_app.storage import StorageError, store_transcript

        try:
            metadata = {"source": str(args.file), "engine": args.engine}
            sid = store_transcript(args.store, result.chunks, metadata=metadata)
        except StorageError as exc:
            raise UserError(str(exc)) from None
        except OSError as exc:  # e.g. no permission to create the store or its key file
            raise UserError(f"cannot use store {args.store}: {exc.strerror or exc}") from None
        print(f"stored as session {sid} in {args.store}", file=sys.stderr)
    if args.vtt is not None:
        from reference_app.vtt import write_transcript

        try:
            cues = write_transcript(args.vtt, result.chunks)
        except OSError as exc:
            raise UserError(f"cannot write {args.vtt}: {exc.strerror or exc}") from None
        print(f"wrote {cues} cue(s) to {args.vtt}", file=sys.stderr)
    return 0
