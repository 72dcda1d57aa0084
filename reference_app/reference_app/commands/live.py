"""``python -m reference_app live --minutes N``: transcribe the microphone continuously.

Recognised text goes to stdout as each utterance ends. A one-line memory
status goes to stderr every ``--status-interval`` seconds (so stdout stays a
clean transcript for piping), and a summary when the run ends:

    [memory] 0:00:30 rss 96.2 MiB (start 95.1, peak 96.4) trend +0.02 MiB/min \
system 14.0 % overflows 0
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from reference_app.audio import AudioError, Converter
from reference_app.cli import UserError
from reference_app.config import (
    App,
    add_engine_arguments,
    config_from_args,
    create_app,
    device_arg,
    positive_float,
    positive_int,
)
from reference_app.monitor import MemoryReading
from reference_app.transcription import TranscriptionError


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "live",
        help="transcribe the microphone continuously",
        description="Transcribe the microphone for a while, printing text as it comes "
        "and a memory status line now and then.",
    )
    parser.add_argument(
        "--minutes",
        type=positive_float,
        required=True,
        metavar="M",
        help="how long to run; fractions allowed (0.2 = 12 s)",
    )
    parser.add_argument(
        "--status-interval",
        type=positive_float,
        default=30.0,
        metavar="S",
        help="seconds between memory status lines (default: 30)",
    )
    parser.add_argument(
        "--monitor-interval",
        type=positive_float,
        default=5.0,
        metavar="S",
        help="seconds between memory readings of the monitor thread (default: 5)",
    )
    parser.add_argument(
        "--device", type=device_arg, default=None, help="input device index or name"
    )
    parser.add_argument(
        "--rate",
        type=positive_int,
        default=16_000,
        metavar="HZ",
        help="capture sample rate (default: 16000)",
    )
    add_engine_arguments(parser)
    parser.set_defaults(func=run)


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class _Status:
    """Formats the status lines from the app's monitor and the capture statistics."""

    def __init__(self, app: App, started: float) -> None:
        self.app = app
        self.started = started
        self.first: MemoryReading = app.monitor.read()

    def line(self, now: float, overflows: int) -> str:
        reading = self.app.monitor.read()
        stats = self.app.monitor.stats()
        trend = self.app.monitor.trend_mib_per_min()
        trend_text = "n/a" if trend is None else f"{trend:+.2f} MiB/min"
        return (
            f"[memory] {_clock(now - self.started)} rss {reading.rss_mib:.1f} MiB "
            f"(start {self.first.rss_mib:.1f}, peak {stats.peak_rss_mib:.1f}) "
            f"trend {trend_text} system {reading.system_percent:.1f} % overflows {overflows}"
        )


def run(args: argparse.Namespace) -> int:
    config = config_from_args(
        args, device=args.device, sample_rate=args.rate, monitor_interval=args.monitor_interval
    )
    try:
        with create_app(config) as app:
            return _run(app, args)
    except (AudioError, TranscriptionError) as exc:
        raise UserError(str(exc)) from None


def _run(app: App, args: argparse.Namespace) -> int:
    segmenter = app.streaming_transcriber()  # loads the model before capture starts
    mic = app.microphone()
    converter = Converter(mic.sample_rate, mic.channels, app.engine.sample_rate)
    mic.start()
    try:
        started = time.monotonic()
        status = _Status(app, started)
        app.monitor.start()
        deadline = started + args.minutes * 60
        next_status = started + args.status_interval
        while (now := time.monotonic()) < deadline:
            if now >= next_status:
                print(status.line(now, mic.stats().overflows), file=sys.stderr, flush=True)
                next_status += args.status_interval
            block = mic.read(timeout=min(0.2, max(0.01, deadline - now)))
            if block is None:
                continue
            for text in segmenter.feed(converter.convert(block)):
                print(text, flush=True)
    finally:
        mic.close()
        app.monitor.stop()
    for text in segmenter.flush():
        print(text, flush=True)
    end = time.monotonic()
    capture = mic.stats()
    print(status.line(end, capture.overflows), file=sys.stderr)
    print(
        f"[live] {_clock(end - started)} done: {segmenter.utterances} utterances, "
        f"{segmenter.audio_frames / app.engine.sample_rate:.1f} s of audio, "
        f"{capture.overflows} blocks dropped ({capture.dropped_frames / mic.sample_rate:.2f} s), "
        f"{capture.device_overflows} device overflows",
        file=sys.stderr,
    )
    return 0
