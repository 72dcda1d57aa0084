"""The HTML report's resources section: the session ledger's survivors, grouped by culprit."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict

from pytest_memwatch.reports.ledger import culprits

_PLURALS = {
    "fd": "fds",
    "thread": "threads",
    "process": "processes",
    "socket": "sockets",
    "tempfile": "temp files",
    "task": "tasks",
}


def _count_of(n: int, kind: str) -> str:
    """``1 fd``, ``3 threads``: a count of one kind of resource."""
    singular = "temp file" if kind == "tempfile" else kind
    return f"{n} {singular if n == 1 else _PLURALS.get(kind, kind + 's')}"


_FD_NUMBER = re.compile(r"^(fd|socket) \d+")
# Past this many distinct resources per culprit, the section says how many more.
LEDGER_ITEMS = 8


class LedgerLine(TypedDict):
    """Resources of one kind with one description, and where the first was opened."""

    kind: str
    description: str
    count: int
    where: str | None


class LedgerGroup(TypedDict):
    """What one test or fixture set-up left behind."""

    culprit: str
    count: int
    kinds: str
    lines: list[LedgerLine]
    more: int


class LedgerView(TypedDict):
    count: int
    groups: list[LedgerGroup]
    recorded: int | None
    released: int | None


def ledger_view(ledger: Mapping[str, Any] | None) -> LedgerView | None:
    """The session ledger's survivors for the page, grouped by culprit; ``None`` when none.

    Identical descriptions (a test that leaves the same thread each run) are
    one line with a count; each line says where the resource was opened.
    """
    groups: list[LedgerGroup] = []
    total = 0
    for culprit, resources in culprits(ledger):
        total += len(resources)
        lines: dict[str, LedgerLine] = {}
        for r in resources:
            text = str(r.get("description", ""))
            # Descriptors differ only by number: "fd (/dev/null) x75", not 75 lines.
            key = _FD_NUMBER.sub(r"\1", text)
            line = lines.get(key)
            if line is None:
                frames = r.get("origin") or []
                first = frames[0] if frames and isinstance(frames[0], Mapping) else None
                site = f"{first.get('filename')}:{first.get('lineno')}" if first else None
                # A thread's description already says where it was started or
                # its code is defined (its path shortened: compare the file name).
                short = (
                    f"{Path(str(first.get('filename'))).name}:{first.get('lineno')}"
                    if first
                    else None
                )
                where = (
                    f"{site} in {first.get('function')}"
                    if first and short and short not in text
                    else None
                )
                line = lines[key] = {
                    "kind": str(r.get("kind", "")),
                    "description": text,
                    "count": 0,
                    "where": where,
                }
            line["count"] += 1
            if line["count"] == 2:
                line["description"] = key
        items = list(lines.values())
        kinds: dict[str, int] = {}
        for r in resources:
            kind = str(r.get("kind", ""))
            kinds[kind] = kinds.get(kind, 0) + 1
        groups.append(
            {
                "culprit": culprit,
                "count": len(resources),
                "kinds": ", ".join(_count_of(n, k) for k, n in kinds.items()),
                "lines": items[:LEDGER_ITEMS],
                "more": max(0, len(items) - LEDGER_ITEMS),
            }
        )
    if not groups:
        return None
    return {
        "count": total,
        "groups": groups,
        "recorded": (ledger or {}).get("recorded"),
        "released": (ledger or {}).get("released"),
    }
