"""Attribution's two ways: re-run the test under tracemalloc, or explain a big leak in place."""

from __future__ import annotations

import gc
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from pytest_memwatch.base.units import format_size
from pytest_memwatch.engine.attribution.holders import holder_chains
from pytest_memwatch.engine.attribution.objects import (
    Finder,
    chunks,
    grown_types,
    sized,
    untracked_containers,
    walk_order,
)
from pytest_memwatch.engine.attribution.reprs import qualified_name, short_repr, type_name
from pytest_memwatch.engine.attribution.tracing import Tracing, grouped_traces, grown_sites

MiB = 1024 * 1024
# Extra memory the attribution re-runs may add: their leak (the warmup run's
# and every traced run's) plus tracemalloc's tables for the blocks they keep.
RERUN_BUDGET = 64 * MiB
# tracemalloc's cost per traced live block: its trace entry (~50 B) and one
# snapshot's tuple, Statistic grouping and Python ints (~250 B), measured on
# CPython 3.11 by bench/attribution.py.
TRACE_COST_PER_BLOCK = 320
# Traced leaked blocks worth their time: past this, fewer traced runs.
TRACED_BLOCKS = 60_000
# attribute_in_place keeps the largest objects of at least this size, up to _BIG_KEEP.
_BIG_FLOOR = 64 * 1024
_BIG_KEEP = 16
# Deadline of the scan of old containers for a new object.
SCAN_SECONDS = 1.0


def empty(frames: int, note: str) -> dict[str, Any]:
    """An attribution that explains nothing, and says why."""
    return {
        "trace_frames": frames,
        "runs": 0,
        "mode": "none",
        "traced_growth": 0,
        "sites": [],
        "types": [],
        "chains": [],
        "note": note,
    }


def rerun_count(leak_bytes: int | None, leak_blocks: int | None, runs: int = 3) -> int:
    """How many traced runs (after one warmup) fit in :data:`RERUN_BUDGET`; 0: do not re-run.

    Each re-run keeps what the test leaks (``leak_bytes``, ``leak_blocks`` per
    run, as measured) and tracemalloc keeps a trace for each of those blocks.
    """
    blocks = max(0, leak_blocks or 0)
    per_run = max(0, leak_bytes or 0) + TRACE_COST_PER_BLOCK * blocks
    if per_run <= 0:
        return runs
    fit = RERUN_BUDGET // per_run - 1
    if blocks:
        # Time, too: every traced allocation records a traceback (microseconds
        # each), so a leak of many small objects gets fewer traced runs, but one.
        fit = min(fit, max(1, TRACED_BLOCKS // blocks - 1))
    return max(0, min(runs, fit))


def attribute(
    run_once: Callable[[], object],
    *,
    frames: int,
    runs: int = 3,
    top: int = 10,
    chains: int = 2,
    leak_bytes: int | None = None,
    leak_blocks: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Explain the growth of ``run_once``: re-run it under tracemalloc, or explain it in place.

    ``leak_bytes``/``leak_blocks`` are what one run was measured to leave; they
    decide how many traced runs fit in :data:`RERUN_BUDGET` (:func:`rerun_count`).
    When none does, nothing is re-run: the largest objects alive and what holds
    them are reported (:func:`attribute_in_place`).

    Otherwise the test runs once as a warmup under tracing (tracemalloc started
    late misses the frees of older objects: a replaced value would look like
    growth), the heap is collected and frozen, and the test runs ``runs`` more
    times. What those runs left are the only objects ``gc.get_objects()`` lists
    then: their types are what grew, and an object among them (or held by them)
    whose allocation traceback starts at a site that grew is what that site
    leaked; the chain of references from a module to it is what holds it.

    The heap is frozen by the time this returns only if it was not before:
    frozen objects are given back to the collector.
    """
    say = progress or (lambda _text: None)
    planned = rerun_count(leak_bytes, leak_blocks, runs)
    if planned == 0:
        return attribute_in_place(
            frames=frames, leak_bytes=leak_bytes or 0, top=top, chains=chains, progress=say
        )
    tracing = Tracing(frames)
    sites: list[dict[str, Any]] = []
    traced_growth = 0
    try:
        say("warmup run under tracemalloc")
        run_once()
        tracing.check()
        stats0 = grouped_traces() if tracing.usable else None
        gc.collect()
        # From here gc.get_objects() lists only what the traced runs leave.
        gc.freeze()
        try:
            for i in range(planned):
                say(f"traced run {i + 1} of {planned}")
                run_once()
                tracing.check()
            gc.collect()
            new = gc.get_objects()
            if tracing.usable and stats0 is not None:
                sites, traced_growth = grown_sites(stats0, grouped_traces(), runs=planned, top=top)
            del stats0
        finally:
            gc.unfreeze()
        say("finding what leaked")
        finder = Finder(sites, runs=planned, sampled=chains)
        if tracing.usable:
            finder.scan(new, deadline=time.perf_counter() + SCAN_SECONDS)
            if finder.missing:
                # Held by containers older than the re-runs (a module's list, a
                # cache dict of strings): a walk of the heap, newest first, in C.
                heap = walk_order()
                finder.scan(heap, deadline=time.perf_counter() + SCAN_SECONDS, old=True)
                del heap
    finally:
        tracing.close()
    for site in sites:
        del site["_where"]

    type_rows, picks = grown_types(new, finder.found, sites, runs=planned, top=top)
    del new
    say("finding what holds it")
    samples: list[tuple[object, object | None]] = []
    for objs in finder.found:
        if objs and len(samples) < chains:
            samples.append((objs[0], finder.parents.get(id(objs[0]))))
    for obj in picks:
        if len(samples) >= chains:
            break
        if all(obj is not s for s, _ in samples):
            samples.append((obj, None))
    finder.found.clear()
    finder.parents.clear()
    chain_rows = holder_chains(samples)

    notes = list(tracing.notes)
    if tracing.usable and not sites:
        notes.append(
            "no Python allocation site grew: the growth is outside tracemalloc's view "
            "(C extension or native malloc), or it did not recur under tracing"
        )
    if planned < runs:
        notes.append(
            f"traced {planned} runs instead of {runs}: the test leaves "
            f"{format_size(leak_bytes or 0)} in {leak_blocks or 0} blocks per run, and "
            f"attribution adds at most {format_size(RERUN_BUDGET)} and traces about "
            f"{TRACED_BLOCKS} leaked blocks"
        )
    return {
        "trace_frames": frames,
        "runs": planned,
        "mode": "rerun",
        "traced_growth": traced_growth,
        "sites": sites,
        "types": type_rows,
        "chains": chain_rows,
        "note": "; ".join(notes) or None,
    }


def attribute_in_place(
    *,
    frames: int,
    leak_bytes: int,
    top: int = 10,
    chains: int = 2,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Explain a leak too big to re-run from what is alive: the largest objects, what holds them.

    Nothing is re-run and nothing is traced, so the extra memory is a list of
    the tracked objects (8 bytes each) and the chunk being looked at. When the
    heap was frozen before the test (a single measured run), the objects the
    test left are the unfrozen ones: their types are reported too.
    """
    say = progress or (lambda _text: None)
    say("looking for the largest objects alive (not re-running the test)")
    young = gc.get_objects() if gc.get_freeze_count() else []
    type_rows: list[dict[str, Any]] = []
    if young:
        by_type = Counter(map(type, young))
        type_rows = [
            {"type": qualified_name(t), "delta": n, "count": n} for t, n in by_type.most_common(top)
        ]
    del young
    gc.unfreeze()
    deadline = time.perf_counter() + 2 * SCAN_SECONDS
    floor = _BIG_FLOOR
    pool: dict[int, tuple[int, object]] = {}
    heap = walk_order()
    complete = True
    for chunk in chunks(heap):
        if time.perf_counter() > deadline:
            complete = False
            break
        objs = list(chunk)
        refs = gc.get_referents(*objs)
        inner = untracked_containers(refs)
        groups = [objs, refs, gc.get_referents(*inner)] if inner else [objs, refs]
        for group in groups:
            for size, obj in sized(group, floor):
                pool[id(obj)] = (size, obj)
        if any(size * 2 >= leak_bytes for size, _ in pool.values()):
            break  # the leak itself, most likely: the rest of the heap is smaller
        if len(pool) > 4 * _BIG_KEEP:
            kept = sorted(pool.values(), key=lambda so: -so[0])[:_BIG_KEEP]
            pool = {id(o): (s, o) for s, o in kept}
            floor = max(floor, kept[-1][0])
        del objs, refs, inner, groups
    del heap
    largest = sorted(pool.values(), key=lambda so: -so[0])[:_BIG_KEEP]
    pool.clear()
    rows = [{"type": type_name(o), "size": s, "repr": short_repr(o)} for s, o in largest[:top]]
    say("finding what holds them")
    chain_rows = holder_chains([(o, None) for _, o in largest[:chains]])
    del largest
    note = (
        f"not re-run: the test leaves {format_size(leak_bytes)} per run, and re-running it "
        f"under tracemalloc would add more than the {format_size(RERUN_BUDGET)} attribution "
        "may use; shown are the largest objects alive and what holds them (no allocation sites)"
    )
    if not complete:
        note += f"; the search stopped after {2 * SCAN_SECONDS:.0f} s"
    return {
        "trace_frames": frames,
        "runs": 0,
        "mode": "in_place",
        "traced_growth": 0,
        "sites": [],
        "types": type_rows,
        "largest": rows,
        "chains": chain_rows,
        "note": note,
    }
