"""``python -m reference_app record --seconds N --out FILE``: record the microphone to WAV.

The audio goes to a temp file next to ``--out`` and is renamed into place only
once complete, so an interrupted or failed recording never leaves a partial
WAV under the requested name (and the temp file is removed).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from reference_app.audio import AudioError
from reference_app.cli import UserError
from reference_app.config import AppConfig, create_app, device_arg, positive_float, positive_int
from reference_app.recorders import FileRecorder

# How long a device may deliver nothing before we give up: a real device
# delivers every block period (100 ms), a broken one must not hang us.
STALL_GRACE_SECONDS = 5.0


def wait_for_recording(recorder: FileRecorder, seconds: float, rate: int) -> float | None:
    """Wait until ``recorder`` has ``seconds`` of audio; None when done, else the
    seconds captured when the device stalled (nothing new for STALL_GRACE_SECONDS)."""
    last_frames, last_progress = -1, time.monotonic()
    while not recorder.wait(timeout=0.25):
        frames, now = recorder.frames_captured, time.monotonic()
        if frames != last_frames:
            last_frames, last_progress = frames, now
        elif now - last_progress >= STALL_GRACE_SECONDS:
            return frames / rate
    return None


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "record",
        help="record from the microphone to a WAV file",
        description="Record from the default (or given) input device to a 16-bit WAV file.",
    )
    parser.add_argument(
        "--seconds", type=positive_float, required=True, metavar="S", help="how long to record"
    )
    parser.add_argument("--out", type=Path, required=True, metavar="FILE", help="WAV file to write")
    parser.add_argument(
        "--rate",
        type=positive_int,
        default=16_000,
        metavar="HZ",
        help="sample rate (default: 16000)",
    )
    parser.add_argument(
        "--channels", type=positive_int, default=1, metavar="N", help="channels (default: 1)"
    )
    parser.add_argument(
        "--device", type=device_arg, default=None, help="input device index or name"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    if out.is_dir():
        raise UserError(f"{out}: is a directory; give a file name for the recording")
    directory = out.parent if str(out.parent) else Path(".")
    if not directory.is_dir():
        raise UserError(f"{directory}: no such directory")
    config = AppConfig(sample_rate=args.rate, channels=args.channels, device=args.device)
    with create_app(config) as app:
        mic = app.microphone()
        recorder = app.file_recorder(mic, directory=directory, max_seconds=args.seconds)
        try:
            recorder.start()
            got = wait_for_recording(recorder, args.seconds, args.rate)
            if got is not None:
                recorder.abort()
                raise UserError(
                    f"the input device stopped delivering audio after {got:.2f} s of the "
                    f"{args.seconds:g} s requested (nothing for {STALL_GRACE_SECONDS:g} s); "
                    "nothing was written"
                )
            recording = recorder.stop(keep_as=out)
        except AudioError as exc:
            recorder.abort()
            raise UserError(str(exc)) from None
        except BaseException:
            recorder.abort()
            raise
    capture = recording.capture
    if capture is not None and (capture.overflows or capture.device_overflows):
        print(
            f"warning: audio was lost: {capture.overflows} blocks "
            f"({capture.dropped_frames / args.rate:.2f} s) dropped because the writer fell "
            f"behind, {capture.device_overflows} device overflows",
            file=sys.stderr,
        )
    print(
        f"recorded {recording.seconds:.2f} s ({args.rate} Hz, {args.channels} channel"
        f"{'s' if args.channels > 1 else ''}) to {out}"
    )
    return 0
