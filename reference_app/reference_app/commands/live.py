"""``python -m reference_app live --minutes N``: transcribe the microphone continuously.

Recognised text goes to stdout as each utterance ends. A one-line memory
status goes to stderr every ``--status-interval`` seconds (so stdout stays a
clean transcript for piping), and a summary when the run ends:

    [memory] 0:00:30 rss 96.2 MiB (start 95.1, peak 96.4) trend +0.02 MiB/min \
system 14.0 % overflows 0

Every run is a long session (the long-session design document): checkpoints
under ``--data-dir`` every ``--checkpoint-minutes``, each utterance saved to
the encrypted ``--store`` and written as a cue to ``--vtt`` when given.
SIGUSR1 pauses the session (audio is captured but not transcribed), SIGUSR2
resumes it. A device that delivers nothing for 5 s ends the run with an
error, after the session was saved.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

from reference_app.audio import AudioError, Converter
from reference_app.cli import UserError
from reference_app.commands.record import STALL_GRACE_SECONDS
from reference_app.config import (
    App,
    add_engine_arguments,
    config_from_args,
    create_app,
    device_arg,
    positive_float,
    positive_int,
)
from reference_app.engine import LongSessionEngine, create_engine
from reference_app.monitor import MemoryReading
from reference_app.sessions import SessionError
from reference_app.storage import StorageError
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
    session = parser.add_argument_group("long session")
    session.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the session's checkpoints go (default: as for the sessions command)",
    )
    session.add_argument(
        "--store", type=Path, metavar="DB", help="save every utterance, encrypted, in this store"
    )
    session.add_argument(
        "--vtt", type=Path, metavar="OUT", help="write the utterances as WebVTT subtitles to OUT"
    )
    session.add_argument(
        "--session-id", default=None, metavar="ID", help="the session's id (default: time-based)"
    )
    session.add_argument(
        "--checkpoint-minutes",
        type=positive_float,
        default=30.0,
        metavar="M",
        help="minutes between checkpoints (default: 30; fractions allowed)",
    )
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
    from reference_app.commands.sessions import default_data_dir

    if args.vtt is not None and not args.vtt.parent.is_dir():
        raise UserError(f"cannot write {args.vtt}: no such directory {args.vtt.parent}")
    config = config_from_args(
        args, device=args.device, sample_rate=args.rate, monitor_interval=args.monitor_interval
    )
    settings = {
        "data_dir": args.data_dir or default_data_dir(),
        "store_path": args.store,
        "vtt_path": args.vtt,
        "session_id": args.session_id,
        "checkpoint_interval_minutes": args.checkpoint_minutes,
    }
    try:
        with create_app(config) as app, create_engine(settings, app=app) as engine:
            try:
                engine.start({"source": "microphone", "command": "live"})
            except (StorageError, SessionError, ValueError) as exc:
                raise UserError(str(exc)) from None
            except OSError as exc:
                raise UserError(f"cannot start the session: {exc.strerror or exc}") from None
            return _run(app, engine, args)
    except (AudioError, TranscriptionError) as exc:
        raise UserError(str(exc)) from None


class _Signals:
    """SIGUSR1 pauses, SIGUSR2 resumes: the handler only notes the request,
    the capture loop acts on it (no locks taken in a signal handler)."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        def handler(signum: int, _frame: object) -> None:
            self.requests.append("pause" if signum == signal.SIGUSR1 else "resume")

        for signum in (signal.SIGUSR1, signal.SIGUSR2):
            self._previous[signum] = signal.signal(signum, handler)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _run(app: App, engine: LongSessionEngine, args: argparse.Namespace) -> int:
    mic = app.microphone()
    converter = Converter(mic.sample_rate, mic.channels, app.engine.sample_rate)
    try:
        mic.start()
    except AudioError:
        engine.stop(reason="no_input")
        raise
    stalled_after: float | None = None
    try:
        with _Signals() as signals:
            started = time.monotonic()
            status = _Status(app, started)
            app.monitor.start()
            deadline = started + args.minutes * 60
            next_status = started + args.status_interval
            last_audio = started
            while (now := time.monotonic()) < deadline:
                while signals.requests:
                    _apply(engine, signals.requests.pop(0))
                if now >= next_status:
                    print(status.line(now, mic.stats().overflows), file=sys.stderr, flush=True)
                    print(_session_line(engine, now - started), file=sys.stderr, flush=True)
                    next_status += args.status_interval
                block = mic.read(timeout=min(0.2, max(0.01, deadline - now)))
                if block is None:
                    if time.monotonic() - last_audio >= STALL_GRACE_SECONDS:
                        stalled_after = last_audio - started
                        break
                    continue
                last_audio = time.monotonic()
                for text in engine.feed(converter.convert(block)):
                    print(text, flush=True)
    finally:
        mic.close()
        app.monitor.stop()
    for text in engine.feed(converter.flush()):
        print(text, flush=True)
    report = engine.stop(reason="device_stalled" if stalled_after is not None else "stopped")
    for text in engine.last_texts:
        print(text, flush=True)
    end = time.monotonic()
    capture = mic.stats()
    print(status.line(end, capture.overflows), file=sys.stderr)
    print(
        f"[live] {_clock(end - started)} done: {engine.utterances} utterances, "
        f"{engine.get_stats()['audio_seconds']:.1f} s of audio, "
        f"{capture.overflows} blocks dropped ({capture.dropped_frames / mic.sample_rate:.2f} s), "
        f"{capture.device_overflows} device overflows",
        file=sys.stderr,
    )
    if report is not None:
        where = [f"checkpoints in {engine.settings.data_dir}"]
        if args.store is not None:
            where.append(f"text in {args.store}")
        if args.vtt is not None:
            where.append(f"subtitles in {args.vtt}")
        print(
            f"[session] {report['session_id']} {report['state']}: {report['transcriptions']} "
            f"segments, {report['checkpoints']} checkpoints; {', '.join(where)}",
            file=sys.stderr,
        )
    if stalled_after is not None:
        raise UserError(
            f"the input device stopped delivering audio after {_clock(stalled_after)} "
            f"(nothing for {STALL_GRACE_SECONDS:g} s); the session was saved"
        )
    return 0


def _apply(engine: LongSessionEngine, request: str) -> None:
    try:
        if request == "pause":
            engine.pause_long_session()
            print("[session] paused", file=sys.stderr, flush=True)
        else:
            engine.resume_long_session()
            print("[session] resumed", file=sys.stderr, flush=True)
    except RuntimeError as exc:  # pause while paused, resume while running
        print(f"[session] {exc}", file=sys.stderr, flush=True)


def _session_line(engine: LongSessionEngine, elapsed: float) -> str:
    status = engine.get_long_session_status()
    session = status.get("session", {})
    cache = status["cache"]
    line = (
        f"[session] {_clock(elapsed)} {session.get('session_id', '-')} "
        f"{'paused' if status['paused'] else 'active'} segments {status['utterances']} "
        f"checkpoints {session.get('checkpoints', 0)} cache hit rate {cache['hit_rate']:.2f}"
    )
    if "storage" in status:
        line += f" store {status['storage']['used_bytes'] / 1024:.0f} KiB"
    return line
