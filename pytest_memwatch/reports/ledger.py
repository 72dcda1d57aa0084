"""The session ledger as data: merged from processes and shards, and read for the outputs.

The runtime side (:mod:`pytest_memwatch.resources.ledger`) records, per process
that runs tests, who left threads, descriptors or memory behind; its
``finish`` returns plain data. This module only reads and merges that data:
:func:`merge_ledgers` joins the workers' ledgers into the results document's,
:func:`merge_shard_ledgers` joins those of several results documents
(``merge``), and :func:`ledger_lines` and :func:`culprits` are what the
terminal and the HTML report show. It imports nothing from the resource watch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pytest_memwatch.base.limits import TOP_GROWTH, short_list
from pytest_memwatch.base.units import format_size
from pytest_memwatch.reports.results import growth_bytes


def merge_ledgers(parts: Mapping[str, Mapping[str, Any]], top: int = TOP_GROWTH) -> dict[str, Any]:
    """One ledger for the results document from each process's (keyed by worker id)."""
    return {
        "sessions": {w: p.get("session") for w, p in sorted(parts.items())},
        "resources": [r for _, p in sorted(parts.items()) for r in p.get("resources") or []],
        **_counts(parts.values()),
        "growth": _largest([g for p in parts.values() for g in p.get("growth") or []], top),
    }


def _counts(ledgers: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """The ``recorded`` and ``released`` counts of several ledgers, added up."""
    ledgers = list(ledgers)
    return {key: sum(int(p.get(key) or 0) for p in ledgers) for key in ("recorded", "released")}


def _largest(growth: Sequence[Mapping[str, Any]], top: int) -> list[Mapping[str, Any]]:
    """The ``top`` growth entries with the most bytes, largest first."""
    return sorted(growth, key=lambda g: -int(g["bytes"]))[:top]


def merge_shard_ledgers(
    parts: Sequence[tuple[int, Mapping[str, Any] | None]], top: int = TOP_GROWTH
) -> dict[str, Any] | None:
    """One ledger from several results documents' (``merge``), or ``None`` if none has one.

    Each part is ``(first shard index, ledger)``: the index the document's
    first shard gets in the merged document, and its ledger. Sessions are
    keyed ``"<shard>/<worker>"`` and every resource and growth entry gets its
    ``shard``; a document that was itself merged has both already, counted
    from its own first shard (worker ids never hold a "/"). The counts add up
    and the growth list keeps the largest ``top``.
    """
    present = [(offset, ledger) for offset, ledger in parts if ledger]
    if not present:
        return None
    sessions: dict[str, Any] = {}
    for offset, ledger in present:
        for key, session in (ledger.get("sessions") or {}).items():
            shard, merged, worker = str(key).partition("/")
            sessions[f"{offset + int(shard)}/{worker}" if merged else f"{offset}/{key}"] = session

    def tagged(kind: str) -> list[dict[str, Any]]:
        return [
            {**entry, "shard": offset + int(entry.get("shard", 0))}
            for offset, ledger in present
            for entry in ledger.get(kind) or []
        ]

    return {
        "sessions": sessions,
        "resources": tagged("resources"),
        **_counts(ledger for _, ledger in present),
        "growth": _largest(tagged("growth"), top),
    }


def _culprit(r: Mapping[str, Any]) -> str:
    owner = str(r.get("owner", "?"))
    if r.get("phase") == "fixtures":
        names = ", ".join(r.get("fixtures") or [])
        owner = f"the fixtures set up for {owner}" + (f" ({names})" if names else "")
    worker = r.get("worker")
    where = [f"shard {r['shard']}"] if "shard" in r else []
    if worker and worker != "main":
        where.append(str(worker))
    return owner + (f" [{', '.join(where)}]" if where else "")


def ledger_lines(ledger: Mapping[str, Any] | None, verbosity: int = 0) -> list[str]:
    """Terminal summary lines: survivors and their culprits; session growth when asked (-v)."""
    if not ledger:
        return []
    lines: list[str] = []
    alive = ledger.get("resources") or []
    if alive:
        lines.append(
            f"ledger: {len(alive)} resource{'s' if len(alive) != 1 else ''} left behind by "
            "tests or fixtures still there at session end:"
        )
        # One line per culprit: a test that leaks a descriptor per call is one line.
        by_culprit: dict[str, list[str]] = {}
        for r in alive:
            by_culprit.setdefault(_culprit(r), []).append(str(r["description"]))
        for culprit, listed in by_culprit.items():
            lines.append(f"  {culprit}: {short_list(listed)}")
    if verbosity >= 1 or alive:
        sessions = ledger.get("sessions") or {}
        for worker, s in sessions.items():
            if not s:
                continue
            g = s.get("growth") or {}
            blocks = g.get("blocks")
            label = f" ({worker})" if len(sessions) > 1 or worker != "main" else ""
            # "growth" as every output defines it (growth_bytes); the whole
            # process, so it also counts what happened between the tests.
            lines.append(
                f"session growth{label}: {format_size(growth_bytes(s), signed=True)} "
                f"(RSS {format_size(g.get('rss'), signed=True)}, "
                f"malloc {format_size(g.get('malloc'), signed=True)}, "
                f"{'n/a' if blocks is None else f'{blocks:+d}'} blocks) "
                "in the whole process, between tests included"
            )
        growth = ledger.get("growth") or []
        if growth:
            lines.append(
                "left the most memory behind: "
                + ", ".join(
                    f"{g['nodeid']} ({format_size(g['bytes'], signed=True)})" for g in growth[:3]
                )
            )
    return lines


def culprits(ledger: Mapping[str, Any] | None) -> list[tuple[str, list[Mapping[str, Any]]]]:
    """The resources still alive at session end, grouped by who left them, in ledger order.

    The HTML report's "left behind" section reads this; the terminal's lines
    group the same way (one culprit, one entry).
    """
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for r in (ledger or {}).get("resources") or []:
        grouped.setdefault(_culprit(r), []).append(r)
    return list(grouped.items())
