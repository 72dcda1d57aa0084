"""Command line: ``python -m reference_app COMMAND``.

Each subcommand lives in its own module under ``reference_app.commands`` and
exposes ``add_parser(subparsers)``; the parser it adds sets ``func`` to a
callable taking the parsed namespace and returning an exit status.
Errors the user can fix are raised as :class:`UserError` and printed as one
line, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMAND_MODULES = [
    "reference_app.commands.transcribe",
    "reference_app.commands.record",
    "reference_app.commands.live",
    "reference_app.commands.sessions",
    "reference_app.commands.store",
    "reference_app.commands.snapshot",
    "reference_app.commands.serve",
    "reference_app.commands.stream",
]


class UserError(Exception):
    """A problem with the user's input; printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reference_app")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # command not written yet
                continue
            raise
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
