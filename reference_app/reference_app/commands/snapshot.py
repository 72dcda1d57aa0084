"""``python -m reference_app snapshot FILE``: entities and keywords of a transcript, in chunks.

FILE is a WebVTT file (``--vtt`` output, or any subtitles) or a plain-text
transcript (``-`` reads standard input). The text is processed in chunks of
``--chunk-size`` characters overlapping by ``--overlap``, in memory bounded
whatever the file's size; the strategy for the file's size is printed first.
``--chunks`` also prints each chunk's findings as it is processed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from reference_app.cli import UserError


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "snapshot",
        help="entities and keywords of a transcript or VTT file, in chunks",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", help="VTT or text transcript; '-' for standard input")
    parser.add_argument(
        "--chunk-size",
        type=_count,
        default=500,
        metavar="N",
        help="characters per chunk (default: 500, at least 50)",
    )
    parser.add_argument(
        "--overlap",
        type=_count,
        default=100,
        metavar="N",
        help="characters shared by consecutive chunks (default: 100, under half a chunk)",
    )
    parser.add_argument(
        "--top", type=_count, default=10, metavar="N", help="entries listed (default: 10)"
    )
    parser.add_argument("--chunks", action="store_true", help="also print every chunk")
    parser.add_argument(
        "--json", action="store_true", help="JSON output (JSON lines with --chunks)"
    )
    parser.set_defaults(func=run)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from reference_app import nlp

    try:
        processor_args = {"chunk_size": args.chunk_size, "overlap": args.overlap, "top": args.top}
        if args.file == "-":
            strategy = None
            processor = nlp.StreamingProcessor(**processor_args)
            chunks = processor.process(_stdin_pieces())
        else:
            path = Path(args.file)
            strategy = nlp.choose_strategy(path.stat().st_size) if path.is_file() else None
            processor = nlp.StreamingProcessor(
                **processor_args,
                gc_every_chunks=strategy.gc_every_chunks if strategy else None,
            )
            chunks = nlp.iter_chunks(path, processor=processor)
        if strategy is not None and not args.json:
            size = Path(args.file).stat().st_size
            print(
                f"{args.file}: {size / 1e6:.2f} MB, strategy: {strategy.name} "
                f"(memory target < {strategy.memory_target_mb} MB)",
                file=sys.stderr,
            )
        for chunk in chunks:
            if args.chunks:
                if args.json:
                    print(json.dumps(chunk.to_dict(args.top)))
                else:
                    words = ", ".join(p for p, _ in chunk.keywords[:5]) or "-"
                    found = ", ".join(f"{t} ({label})" for label, t in chunk.entities) or "-"
                    print(f"chunk {chunk.index} @{chunk.start}: keywords {words}; entities {found}")
    except nlp.NLPError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"{args.file}: {exc.strerror or exc}") from None
    totals = processor.totals
    if args.json:
        document = totals.to_dict(args.top)
        if strategy is not None:
            document["strategy"] = strategy.name
        print(
            json.dumps(
                {"totals": document} if args.chunks else document, indent=None if args.chunks else 2
            )
        )
        return 0
    print(f"{totals.chunks} chunks, {totals.words} words, {totals.characters} characters")
    print("entities:")
    for label, text, count in totals.top_entities(args.top) or [("-", "none found", 0)]:
        print(f"  {count:>5}  {label:<8} {text}")
    print("keywords (chunks where ranked):")
    for phrase, count in totals.top_keywords(args.top) or [("none found", 0)]:
        print(f"  {count:>5}  {phrase}")
    return 0


def _stdin_pieces() -> Any:
    while block := sys.stdin.read(1 << 16):
        yield block
