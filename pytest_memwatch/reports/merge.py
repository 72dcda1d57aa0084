"""Merging results shards (xdist-free parallel runs, CI matrix legs) into one document."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from pytest_memwatch.reports.document import ShardDoc
from pytest_memwatch.reports.ledger import merge_shard_ledgers
from pytest_memwatch.reports.results import Totals
from pytest_memwatch.reports.validation import (
    TOOL,
    ResultsError,
    check_document,
    describe,
    document_version,
)


def merge_documents(
    inputs: Sequence[tuple[str, object]],
) -> tuple[dict[str, Any], list[str]]:
    """Merge shard documents (``(file name, parsed JSON)`` pairs) into one; return it and warnings.

    Tests are concatenated in input order, totals recomputed, and each shard's
    run metadata kept under ``shards`` (a merged input contributes its own
    shards, so merging is associative); the shards' session ledgers are merged
    into one (:func:`pytest_memwatch.reports.ledger.merge_shard_ledgers`). The merged
    ``run`` spans the shards: earliest start, latest finish, the sum of their
    workers. Raises
    :class:`ResultsError` for a foreign or invalid input, mismatched schema
    versions, or a test id in two shards with different results (identical
    copies, e.g. the same shard given twice, are merged).
    """
    if not inputs:
        raise ResultsError("nothing to merge: give at least one results file")
    versions = [(name, document_version(raw, name)) for name, raw in inputs]
    first_name, first_version = versions[0]
    for name, version in versions[1:]:
        if version != first_version:
            raise ResultsError(
                f"{name}: schema_version {describe(version)} differs from schema_version "
                f"{describe(first_version)} of {first_name}; merge only results written "
                "by the same pytest-memwatch version"
            )
    docs = [(name, check_document(raw, name)) for name, raw in inputs]

    shards: list[ShardDoc] = []
    offsets: list[int] = []
    # Per node id: the input it is taken from, that input's name, and a digest
    # of its result (the tests themselves are read again when written out).
    owner: dict[str, tuple[int, str, bytes]] = {}
    conflicts: list[str] = []
    ledgers: list[tuple[int, Any]] = []
    counted = Totals()
    kept = 0
    for position, (name, doc) in enumerate(docs):
        offset = len(shards)
        offsets.append(offset)
        ledgers.append((offset, doc.get("ledger")))
        own_shards = doc.get("shards") or [
            {"file": name, "run": doc["run"], "tests": len(doc["tests"])}
        ]
        shards.extend(own_shards)
        for test in doc["tests"]:
            bare = {k: v for k, v in test.items() if k != "shard"}
            digest = hashlib.sha256(
                json.dumps(bare, sort_keys=True, default=str).encode("utf-8")
            ).digest()
            nodeid = test["nodeid"]
            # Duplicates within one input are that run's business; across inputs
            # they mean two shards ran the same test.
            if nodeid in owner and owner[nodeid][0] != position:
                if owner[nodeid][2] != digest:
                    conflicts.append(f"{nodeid} is in both {owner[nodeid][1]} and {name}")
                continue
            owner.setdefault(nodeid, (position, name, digest))
            counted.add(test)
            kept += 1
    if conflicts:
        more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
        raise ResultsError(
            f"{conflicts[0]} with different results{more}: each test must run in one shard "
            "only (identical copies are merged)"
        )

    def merged_tests() -> Iterator[dict[str, Any]]:
        for position, (_, doc) in enumerate(docs):
            for test in doc["tests"]:
                if owner[test["nodeid"]][0] == position:
                    yield {**test, "shard": offsets[position] + int(test.get("shard", 0))}

    tests: Iterable[dict[str, Any]]
    if all(isinstance(doc["tests"], list) for _, doc in docs):
        tests = list(merged_tests())
    else:
        tests = _Reiterable(merged_tests, kept)

    runs = [s["run"] for s in shards]
    run = dict(runs[0])
    run["started_at"] = min(str(r["started_at"]) for r in runs)
    finished = [str(r["finished_at"]) for r in runs if r.get("finished_at")]
    run["finished_at"] = max(finished) if finished else None
    run["workers"] = sum(int(r.get("workers") or 1) for r in runs)
    run["unavailable_probes"] = {
        k: v for r in runs for k, v in (r.get("unavailable_probes") or {}).items()
    }
    warnings: list[str] = []
    commits = {r.get("commit") for r in runs}
    if len(commits) > 1:
        run["commit"] = None
        listed = ", ".join(str(c)[:12] for c in sorted(commits, key=str))
        warnings.append(f"the shards come from different commits ({listed})")
    for key in ("plugin_version", "python", "pytest_version"):
        values = {str(r.get(key)) for r in runs}
        if len(values) > 1:
            warnings.append(f"the shards differ in {key} ({', '.join(sorted(values))})")

    merged = {
        "schema_version": docs[0][1]["schema_version"],
        "tool": TOOL,
        "run": run,
        "tests": tests,
        "totals": counted.to_dict(),
        "shards": shards,
    }
    ledger = merge_shard_ledgers(ledgers)
    if ledger is not None:
        merged["ledger"] = ledger
    return merged, warnings


class _Reiterable:
    """Tests produced afresh by ``make()`` at each iteration; ``len()`` is known."""

    def __init__(self, make: Callable[[], Iterator[dict[str, Any]]], count: int) -> None:
        self._make = make
        self._count = count

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self._make()
