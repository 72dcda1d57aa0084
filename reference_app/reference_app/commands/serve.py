"""``python -m reference_app serve``: the streaming transcription service on loopback.

Clients open a WebSocket, stream audio and get partial and final transcripts
back (protocol: ``reference_app/service/server.py``; client:
``python -m reference_app stream``). Sessions are checkpointed under
``--data-dir``; with ``--store`` every final transcript is saved, encrypted,
in that SQLite store, and with ``--vtt DIR`` each session is also written as
``DIR/<session>.vtt``. The service runs until Ctrl-C or SIGTERM (or for
``--seconds``), then closes every connection, ends their sessions and closes
every store connection.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

from reference_app.cli import UserError
from reference_app.config import add_engine_arguments, positive_float, positive_int


def add_parser(subparsers: Any) -> None:
    from reference_app.commands.sessions import DATA_DIR_ENV, default_data_dir

    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="run the streaming transcription service (WebSocket, loopback)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address (default: 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8765, help="TCP port; 0 picks a free one (default: 8765)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"session checkpoints and the work-order archive (default: ${DATA_DIR_ENV} or "
        f"{default_data_dir()})",
    )
    parser.add_argument(
        "--store",
        type=Path,
        metavar="DB",
        help="save every final transcript, encrypted, in this SQLite store (key: "
        "$REFERENCE_APP_STORAGE_KEY or DB.key, created on first use)",
    )
    parser.add_argument(
        "--vtt", type=Path, metavar="DIR", help="also write each session as DIR/<session>.vtt"
    )
    parser.add_argument("--workers", type=positive_int, default=2, help="decoder threads (2)")
    parser.add_argument(
        "--pool-size", type=positive_int, default=4, help="store connections at most (4)"
    )
    parser.add_argument(
        "--pool-idle-ttl",
        type=positive_float,
        default=300.0,
        metavar="S",
        help="close store connections idle this long (300)",
    )
    parser.add_argument(
        "--queue-size", type=positive_int, default=64, help="work orders pending at most (64)"
    )
    parser.add_argument(
        "--memory-budget",
        type=positive_float,
        default=256.0,
        metavar="MB",
        help="memory manager budget in MiB; cleanup starts at 80 %% (256)",
    )
    parser.add_argument(
        "--idle-release",
        type=positive_float,
        default=300.0,
        metavar="S",
        help="release a session with no audio for this long (300)",
    )
    parser.add_argument(
        "--max-sessions", type=positive_int, default=16, help="live sessions at most (16)"
    )
    parser.add_argument(
        "--max-frame-bytes",
        type=positive_int,
        default=256 * 1024,
        metavar="N",
        help="largest audio frame accepted (262144)",
    )
    parser.add_argument(
        "--partial-seconds",
        type=float,
        default=1.0,
        metavar="S",
        help="send a partial transcript every S seconds of speech; 0 turns them off (1)",
    )
    parser.add_argument(
        "--metrics-interval",
        type=positive_float,
        default=5.0,
        metavar="S",
        help="seconds between metrics collections (5)",
    )
    parser.add_argument(
        "--seconds",
        type=positive_float,
        default=None,
        metavar="S",
        help="stop by itself after S seconds (default: run until Ctrl-C or SIGTERM)",
    )
    add_engine_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reference_app.commands.sessions import default_data_dir
    from reference_app.service.app import ServiceConfig, ServiceConfigError

    try:
        config = ServiceConfig(
            data_dir=args.data_dir or default_data_dir(),
            host=args.host,
            port=args.port,
            store=args.store,
            vtt_dir=args.vtt,
            engine=args.engine,
            grammar=args.grammar,
            phrases=tuple(args.phrases),
            model_path=args.model_path,
            model_size=args.model_size,
            workers=args.workers,
            pool_size=args.pool_size,
            pool_idle_ttl=args.pool_idle_ttl,
            queue_size=args.queue_size,
            memory_budget_mb=args.memory_budget,
            idle_seconds=args.idle_release,
            max_sessions=args.max_sessions,
            max_frame_bytes=args.max_frame_bytes,
            partial_seconds=max(0.0, args.partial_seconds),
            metrics_interval=args.metrics_interval,
        )
    except ServiceConfigError as exc:
        raise UserError(str(exc)) from None
    return asyncio.run(_serve(config, args.seconds))


async def _serve(config: Any, seconds: float | None) -> int:
    from reference_app.audio import AudioError
    from reference_app.service.app import create_service
    from reference_app.storage import StorageError
    from reference_app.transcription import TranscriptionError

    try:
        service = create_service(config)
        await service.start()
    except (TranscriptionError, StorageError, AudioError) as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(
            f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}"
        ) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening on {service.url}", file=sys.stderr, flush=True)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await service.stop()
    queue = service.c.queue.stats()
    print(
        f"[serve] stopped: {service.connections_total} connection(s), "
        f"{queue['completed']} work order(s) done, {queue['archived']} archived",
        file=sys.stderr,
    )
    return 0
