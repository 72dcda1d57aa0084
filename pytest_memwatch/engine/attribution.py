"""Attribution: what leaked, where it was allocated, and what still holds it.

Gathered only when a verdict has failed, so tests that pass never pay for it.
The result is plain data (see docs/results.md, "attribution")::

    {"trace_frames": 10, "runs": 3, "traced_growth": 3072, "mode": "rerun",
     "sites": [{"size": 3072, "count": 3, "traceback": [{"filename", "lineno", "line"}]}],
     "types": [{"type": "builtins.bytes", "delta": 3, "count": 812}],
     "chains": [{"type": "...", "repr": "...", "chain": [{"type", "repr", "via"}]}],
     "note": null}

Its cost is bounded (docs/explanation.md, "Attribution"):

- time: what leaked is found among the objects the re-runs left (the heap is
  frozen before them, so ``gc.get_objects()`` lists only those), not by
  walking the heap; the walks that remain (an old container holding a new
  string, the reference chains) run in C and stop at a deadline;
- memory: the test is re-run only while the re-runs' leak and tracemalloc's
  tables fit in :data:`RERUN_BUDGET`; a bigger leak is explained from the
  objects it already left, without re-running the test; reprs are bounded.
"""

from __future__ import annotations

import _tracemalloc
import gc
import linecache
import os
import reprlib
import sys
import time
import tracemalloc
import types
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from itertools import compress, filterfalse, groupby, repeat
from operator import itemgetter
from typing import Any

from pytest_memwatch.base.units import format_size

_HERE = os.path.dirname(os.path.abspath(__file__))
_repr = reprlib.Repr()
_repr.maxstring = 80
_repr.maxother = 80
_repr.maxlist = 4
_repr.maxdict = 4

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
# Deadlines: the scan of old containers for a new object, and each chain.
SCAN_SECONDS = 1.0
CHAIN_SECONDS = 1.0
# Objects handed to one gc.get_referents()/get_referrers() call.
_CHUNK = 10_000
_CHAIN_WIDTH = 8
# reprlib abbreviates these itself; anything else bigger than this is named, not printed.
_REPR_SAFE = (str, list, tuple, dict, set, frozenset, deque, int, float, bool, type(None))
_REPR_MAX_SIZE = 4096
_UNTRACKED_CONTAINERS = (dict, tuple)


def short_repr(obj: object) -> str:
    """A repr of at most about 80 characters, never the repr of a large object.

    ``reprlib`` abbreviates containers and strings, but for any other type it
    builds the full repr first: for a 200 MiB ``bytearray`` that is an 800 MiB string.
    """
    try:
        if not isinstance(obj, _REPR_SAFE):
            size = sys.getsizeof(obj)
            if size > _REPR_MAX_SIZE:
                return f"<{_type_name(obj)} of {format_size(size)}>"
        return _repr.repr(obj)
    except Exception as exc:  # a broken __repr__ or __sizeof__ must not break the report
        return f"<{type(obj).__name__} (repr failed: {type(exc).__name__})>"


def _qualified(t: type) -> str:
    mod = t.__module__
    return t.__qualname__ if mod == "builtins" else f"{mod}.{t.__qualname__}"


def _type_name(obj: object) -> str:
    return _qualified(type(obj))


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


class _Sentinel:
    __slots__ = ()


class _Tracing:
    """tracemalloc as attribution found it, and whether its traces can still be compared.

    A test may use tracemalloc itself: stop it, restart it with another depth,
    or leave it running. Its traces are then not ours to compare (nor to
    clear), so allocation sites are left out and the note says why; the types
    and chains, found without tracemalloc, are still reported.
    """

    def __init__(self, frames: int) -> None:
        self.frames = max(1, frames)
        self.notes: list[str] = []
        self.ours = not tracemalloc.is_tracing()
        self.usable = self.ours
        if self.ours:
            tracemalloc.start(self.frames)
            # Traced from now on: a stop and restart inside the test drops its
            # trace. Not a list or tuple: those come from free lists, untraced.
            self._sentinel: object = _Sentinel()
        else:
            self._sentinel = None
            self.notes.append(
                f"tracemalloc was already running ({tracemalloc.get_traceback_limit()} frames, "
                "started by the test, a fixture or PYTHONTRACEMALLOC): allocation sites are "
                "left out rather than compare or clear its traces"
            )

    def check(self) -> None:
        """After a run: are our traces intact?"""
        if not self.usable:
            return
        if not tracemalloc.is_tracing():
            why = "the test stops tracemalloc itself (tracemalloc.stop())"
        elif tracemalloc.get_traceback_limit() != self.frames:
            why = (
                f"the test restarts tracemalloc with {tracemalloc.get_traceback_limit()} frames "
                f"instead of {self.frames}"
            )
        elif tracemalloc.get_object_traceback(self._sentinel) is None:
            why = "the test restarts tracemalloc itself, which drops the traces taken before"
        else:
            return
        self.usable = False
        self.notes.append(f"{why}: allocation sites are not available for this test")

    def close(self) -> None:
        # As found: a test that leaves tracemalloc running keeps it running.
        if self.ours and tracemalloc.is_tracing():
            tracemalloc.stop()
        self._sentinel = None


Trace = tuple[tuple[str, int], ...]  # tracemalloc's raw traceback: (filename, lineno), newest first


def _grouped() -> dict[Trace, tuple[int, int]]:
    """Traced (size, count) per traceback.

    From the raw traces: ``Snapshot.statistics`` builds a ``Trace`` and a
    ``Traceback`` object per block in Python, about 20 times slower.
    """
    traces = getattr(_tracemalloc, "_get_traces", None)
    if traces is None:  # not CPython's tracemalloc: the public, slower way
        snapshot = tracemalloc.take_snapshot()
        stats = snapshot.statistics("traceback")
        del snapshot
        return {
            tuple((f.filename, f.lineno) for f in reversed(s.traceback)): (s.size, s.count)
            for s in stats
        }
    raw = traces()
    # Sorted and grouped in C: hashing each block's traceback (a tuple of
    # frames, whose hash is not cached) in a dict costs 20 times more.
    raw.sort(key=itemgetter(2))
    out: dict[Trace, tuple[int, int]] = {}
    for tb, group in groupby(raw, itemgetter(2)):
        sizes = list(map(itemgetter(1), group))
        out[tb] = (sum(sizes), len(sizes))
    del raw
    return out


def _chunks(objs: Sequence[object], size: int = _CHUNK) -> Iterable[Sequence[object]]:
    for start in range(0, len(objs), size):
        yield objs[start : start + size]


def _untracked_containers(refs: list[object]) -> list[object]:
    """Untracked dicts and tuples among ``refs`` (a dict holding only strings, say).

    The collector does not track them, so neither ``gc.get_objects()`` nor
    ``gc.get_referrers()`` sees what they hold. ``compress``/``map`` keep the
    filtering in C: ``refs`` can be millions long.
    """
    untracked = list(filterfalse(gc.is_tracked, refs))
    return list(compress(untracked, map(isinstance, untracked, repeat(_UNTRACKED_CONTAINERS))))


def _walk_order() -> list[object]:
    """Every tracked object, module namespaces first, then newest first.

    What a test leaks is most often held by a module global, directly or one
    container down; otherwise by something recent.
    """
    heap: list[object] = [
        vars(m) for m in list(sys.modules.values()) if isinstance(m, types.ModuleType)
    ]
    rest = gc.get_objects()
    rest.reverse()
    heap += rest
    return heap


class _Finder:
    """Live objects whose allocation traceback starts at a site that grew, per site."""

    def __init__(
        self,
        sites: Sequence[dict[str, Any]],
        *,
        runs: int = 1,
        enough: int = 50,
        sampled: int = 2,
    ) -> None:
        # A site that did not make a block per run (a dict's table resized, a
        # buffer grown) made no new object to find.
        self.wanted = {
            s["_where"]: i for i, s in enumerate(sites) if s.get("_where") and s["count"] >= runs
        }
        # The sites a chain is drawn for, largest first.
        self.sampled = sorted(self.wanted.values())[:sampled]
        self.found: list[list[object]] = [[] for _ in sites]
        # The untracked container a sample was found in: its referrers are
        # what holds it (gc.get_referrers cannot see the container's link).
        self.parents: dict[int, object] = {}
        self._taken: set[int] = set()
        self.looked = 0
        self.quota = 4 * enough
        # As many objects as the site made (the warmup's are alive too), up to ``enough``.
        self.target = [min(enough, max(1, s["count"])) for s in sites]
        # The private C accessor returns plain (filename, lineno) tuples, most
        # recent first; the public one builds Traceback and Frame objects for
        # every object looked at.
        self._raw = getattr(_tracemalloc, "_get_object_traceback", None)

    @property
    def done(self) -> bool:
        return all(len(self.found[i]) >= self.target[i] for i in self.wanted.values())

    @property
    def missing(self) -> bool:
        """No object yet for the largest site (the rest is not worth a walk of the heap)."""
        return bool(self.sampled) and not self.found[self.sampled[0]]

    @staticmethod
    def _public(obj: object) -> list[tuple[str, int]] | None:
        tb = tracemalloc.get_object_traceback(obj)
        return [(f.filename, f.lineno) for f in reversed(tb)] if tb else None

    def match(self, objs: list[object], parents: list[object] | None = None) -> bool:
        """Take the objects of ``objs`` that sites made; ``True`` once the search may stop.

        Each traced object costs a traceback lookup, which allocates under
        tracing (so is itself traced): a few microseconds. Past ``quota``
        objects looked at, one object for each sampled site is enough (the
        types come from the census of new objects).
        """
        # Only objects allocated since tracing started have a trace: filtered
        # in C, so a chunk of thousands of old objects costs next to nothing.
        pairs = (
            filter(itemgetter(1), zip(objs, map(self._raw, objs), strict=True))
            if self._raw is not None
            else ((o, self._public(o)) for o in objs)
        )
        for obj, frames in pairs:
            self.looked += 1
            if self.looked >= self.quota and not self.missing:
                return True
            i = self.wanted.get(tuple(frames[0][:2]) if frames else None)
            if i is None or len(self.found[i]) >= self.target[i] or id(obj) in self._taken:
                continue
            self._taken.add(id(obj))
            self.found[i].append(obj)
            if len(self.found[i]) == self.target[i] and self.done:
                return True
            if parents is not None and len(self.found[i]) == 1:
                for p in parents:
                    if any(x is obj for x in gc.get_referents(p)):
                        self.parents[id(obj)] = p
                        break
        return self.done

    def scan(self, containers: Sequence[object], *, deadline: float, old: bool = False) -> None:
        """Match ``containers``, their referents, and what untracked containers among those hold.

        ``old``: containers older than the traced runs, walked only for what
        the new ones did not explain: one object for each sampled site.
        """
        if old:
            self.quota = 0
        for chunk in _chunks(containers, 2_000):
            if time.perf_counter() > deadline or (old and not self.missing):
                return
            objs = list(chunk)
            refs = gc.get_referents(*objs)
            inner = _untracked_containers(refs)
            if old:
                # What is tracked among their referents and new was listed as
                # new already; the rest is the untracked part.
                refs = list(filterfalse(gc.is_tracked, refs))
            elif self.match(objs):
                return
            if self.match(refs):
                return
            if inner and self.match(gc.get_referents(*inner), parents=inner):
                return


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
    tracing = _Tracing(frames)
    sites: list[dict[str, Any]] = []
    traced_growth = 0
    try:
        say("warmup run under tracemalloc")
        run_once()
        tracing.check()
        stats0 = _grouped() if tracing.usable else None
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
                sites, traced_growth = _sites(stats0, _grouped(), runs=planned, top=top)
            del stats0
        finally:
            gc.unfreeze()
        say("finding what leaked")
        finder = _Finder(sites, runs=planned, sampled=chains)
        if tracing.usable:
            finder.scan(new, deadline=time.perf_counter() + SCAN_SECONDS)
            if finder.missing:
                # Held by containers older than the re-runs (a module's list, a
                # cache dict of strings): a walk of the heap, newest first, in C.
                heap = _walk_order()
                finder.scan(heap, deadline=time.perf_counter() + SCAN_SECONDS, old=True)
                del heap
    finally:
        tracing.close()
    for site in sites:
        del site["_where"]

    type_rows, picks = _type_rows(new, finder.found, sites, runs=planned, top=top)
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
    chain_rows = _chain_rows(samples)

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


def _type_rows(
    new: list[object],
    found: list[list[object]],
    sites: list[dict[str, Any]],
    *,
    runs: int,
    top: int,
) -> tuple[list[dict[str, Any]], list[object]]:
    """Types that grew by at least one object per run, and a recent object of the top ones.

    ``new`` are the tracked survivors of the traced runs; the untracked objects
    the sites leaked (strings, bytes) are added from ``found``.
    """
    by_type: Counter[type] = Counter(map(type, new))
    for objs, site in zip(found, sites, strict=True):
        # Only a sample of a site's untracked objects is found: the site's
        # block count says how many it made.
        kinds = {type(o) for o in objs if not gc.is_tracked(o)}
        for t in kinds:
            by_type[t] += max(site["count"] // len(kinds), 1)
    grew = [(t, n) for t, n in by_type.most_common() if n >= max(1, runs)][:top]
    if not grew:
        return [], []
    census = Counter(map(type, gc.get_objects()))  # counted in C
    rows = [{"type": _qualified(t), "delta": n, "count": max(n, census.get(t, 0))} for t, n in grew]
    picks: list[object] = []
    # The newest object of each top container type, for a chain when no site has one.
    for t, _ in grew[:3]:
        for obj in reversed(new):
            if type(obj) is t:
                picks.append(obj)
                break
    return rows, picks


_BIG_FLOOR = 64 * 1024
_BIG_KEEP = 16


def _sized(objs: list[object], floor: int) -> list[tuple[int, object]]:
    """(size, object) of the objects in ``objs`` of at least ``floor`` bytes (filtered in C)."""
    try:
        sizes = list(map(sys.getsizeof, objs))
    except Exception:  # a __sizeof__ that raises: one by one
        sizes = []
        for o in objs:
            try:
                sizes.append(sys.getsizeof(o))
            except Exception:
                sizes.append(0)
    keep = list(map(floor.__le__, sizes))
    return list(zip(compress(sizes, keep), compress(objs, keep), strict=True))


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
            {"type": _qualified(t), "delta": n, "count": n} for t, n in by_type.most_common(top)
        ]
    del young
    gc.unfreeze()
    deadline = time.perf_counter() + 2 * SCAN_SECONDS
    floor = _BIG_FLOOR
    pool: dict[int, tuple[int, object]] = {}
    heap = _walk_order()
    complete = True
    for chunk in _chunks(heap):
        if time.perf_counter() > deadline:
            complete = False
            break
        objs = list(chunk)
        refs = gc.get_referents(*objs)
        inner = _untracked_containers(refs)
        groups = [objs, refs, gc.get_referents(*inner)] if inner else [objs, refs]
        for group in groups:
            for size, obj in _sized(group, floor):
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
    rows = [{"type": _type_name(o), "size": s, "repr": short_repr(o)} for s, o in largest[:top]]
    say("finding what holds them")
    chain_rows = _chain_rows([(o, None) for _, o in largest[:chains]])
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


# -- reference chains -----------------------------------------------------------------


def _via(parent: object, child: object) -> str | None:
    """How ``parent`` refers to ``child``: an attribute, key or index, when findable."""
    try:
        if isinstance(parent, types.ModuleType):
            for k, v in vars(parent).items():
                if v is child:
                    return f".{k}"
        if isinstance(parent, dict):
            for k, v in parent.items():
                if v is child:
                    return f"[{short_repr(k)}]"
                if k is child:
                    return "(key)"
        if isinstance(parent, (list, tuple)):
            for i, v in enumerate(parent):
                if v is child:
                    return f"[{i}]"
        d = getattr(parent, "__dict__", None)
        if isinstance(d, dict):
            if d is child:
                return ".__dict__"
            for k, v in d.items():
                if v is child:
                    return f".{k}"
    except Exception:
        return None
    return None


def _link_repr(obj: object) -> str:
    """A compact description of an intermediate link: which module, how big."""
    if isinstance(obj, types.ModuleType):
        return f"<module {obj.__name__!r}>"
    if isinstance(obj, (dict, list, tuple, set, frozenset)):
        return f"({len(obj)} items)"
    return short_repr(obj)


def _chain_rows(samples: list[tuple[object, object | None]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    ignore = {id(samples)}
    for obj, parent in samples:
        deadline = time.perf_counter() + CHAIN_SECONDS
        path = _path_from_module(parent if parent is not None else obj, ignore, deadline)
        if path is None:
            continue
        if parent is not None:
            path.append(obj)
        rows.append({"type": _type_name(obj), "repr": short_repr(obj), "chain": _links(path)})
    samples.clear()
    return rows


def _links(chain: list[object]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, link in enumerate(chain):
        nxt = chain[i + 1] if i + 1 < len(chain) else None
        out.append(
            {
                "type": _type_name(link),
                "repr": _link_repr(link) if nxt is not None else short_repr(link),
                "via": _via(link, nxt) if nxt is not None else None,
            }
        )
    return out


def _path_from_module(
    target: object, ignore: set[int], deadline: float, *, max_depth: int = 25
) -> list[object] | None:
    """The shortest chain of references from a module to ``target``, or ``None``.

    Breadth first, one ``gc.get_referrers`` call per level for the whole
    frontier (one pass over the heap in C, where objgraph's
    ``find_backref_chain`` makes one per object visited); the frontier is
    capped at a few objects, module namespaces first, and the search stops at
    ``deadline``.
    """
    modules = {
        id(vars(m)): m for m in list(sys.modules.values()) if isinstance(m, types.ModuleType)
    }
    # id -> the object one step closer to the target; kept in dicts that are
    # themselves ignored as referrers.
    child: dict[int, object] = {}
    keep: dict[int, object] = {id(target): target}
    own = {id(child), id(keep), id(modules), id(ignore)}
    frontier: list[object] = [target]
    found: object | None = None
    for _ in range(max_depth):
        if time.perf_counter() > deadline or not frontier:
            return None
        own.add(id(frontier))
        referrers = gc.get_referrers(*frontier)
        own.add(id(referrers))
        ids = {id(f): f for f in frontier}
        own.add(id(ids))
        nxt: list[object] = []
        for r in referrers:
            rid = id(r)
            if rid in keep or rid in own or rid in ignore or isinstance(r, types.FrameType):
                continue
            refs = gc.get_referents(r)
            to = next(compress(refs, map(ids.__contains__, map(id, refs))), None)  # in C
            del refs
            if to is None:
                continue
            keep[rid] = r
            child[rid] = to
            if isinstance(r, types.ModuleType) and sys.modules.get(r.__name__) is r:
                found = r
                break
            if rid in modules:
                module = modules[rid]
                keep[id(module)] = module
                child[id(module)] = r
                found = module
                break
            nxt.append(r)
        del referrers, ids
        if found is not None:
            break
        own.discard(id(frontier))
        frontier = nxt[:_CHAIN_WIDTH]
    if found is None:
        return None
    path = [found]
    while id(path[-1]) in child:
        path.append(child[id(path[-1])])
    return path


# -- allocation sites ---------------------------------------------------------------------


def _stdlib_unittest() -> str:
    import sysconfig

    return os.path.join(sysconfig.get_paths()["stdlib"], "unittest") + os.sep


# Frames the user did not write: pytest's, pluggy's, unittest's (a TestCase's
# method is called through three of its frames) and memwatch's own.
_FRAMEWORK = (f"{os.sep}_pytest{os.sep}", f"{os.sep}pluggy{os.sep}", _HERE, _stdlib_unittest())


def _framework_file(filename: str) -> bool:
    return any(part in filename for part in _FRAMEWORK)


def _sites(
    stats0: dict[Trace, tuple[int, int]],
    stats1: dict[Trace, tuple[int, int]],
    *,
    runs: int,
    top: int,
) -> tuple[list[dict[str, Any]], int]:
    grown: list[tuple[int, int, Trace]] = []
    for tb, (size, count) in stats1.items():
        size0, count0 = stats0.get(tb, (0, 0))
        if size - size0 > 0:
            grown.append((size - size0, count - count0, tb))
    grown.sort(key=lambda g: -g[0])
    sites: list[dict[str, Any]] = []
    traced_growth = 0
    for size_diff, count_diff, tb_frames in grown:
        newest = tb_frames[0][0] if tb_frames else ""
        if newest == tracemalloc.__file__ or newest.startswith(_HERE):
            continue
        traced_growth += size_diff
        # A leak recurs: at least one new block per run, or a sizeable amount.
        # A single block is the harness's own per-run state being replaced.
        if len(sites) >= top or (count_diff < runs and size_diff < 4096):
            continue
        own = [fr for fr in tb_frames if not _framework_file(fr[0])]
        # Python 3.11's list comprehension has a frame of its own on the same
        # line as its caller's: one line shown once.
        own = [fr for i, fr in enumerate(own) if i == 0 or tuple(fr) != tuple(own[i - 1])]
        # Most recent call first, as the user reads a leak: where it was made;
        # the frameworks' own frames only when nothing else is there.
        sites.append(
            {
                "size": size_diff,
                "count": count_diff,
                "traceback": [
                    {
                        "filename": filename,
                        "lineno": lineno,
                        "line": linecache.getline(filename, lineno).strip(),
                    }
                    for filename, lineno in own or tb_frames
                ],
                "_where": tuple(tb_frames[0]) if tb_frames else None,
            }
        )
    return sites, traced_growth


def format_attribution(attr: dict[str, Any], *, max_sites: int = 5) -> str:
    """Plain-text report section for a failed test."""
    lines: list[str] = []
    if attr.get("mode") == "in_place":
        lines.append("not re-run (the leak is too big to repeat): largest objects alive")
    elif attr.get("mode") != "none":
        lines.append(
            f"traced growth over {attr['runs']} runs: {attr['traced_growth']} bytes "
            f"(tracemalloc, {attr['trace_frames']} frames)"
        )
    if attr.get("note"):
        lines.append(f"note: {attr['note']}")
    if attr["sites"]:
        lines.append("top allocation sites (most recent call first):")
        for site in attr["sites"][:max_sites]:
            lines.append(f"  +{site['size']} B in {site['count']:+d} blocks")
            for fr in site["traceback"]:
                lines.append(f"    {fr['filename']}:{fr['lineno']}: {fr['line']}")
    if attr.get("largest"):
        lines.append("largest objects alive:")
        for row in attr["largest"][:max_sites]:
            lines.append(f"  {format_size(row['size'])} {row['type']} {row['repr']}")
    if attr["types"]:
        lines.append("object types that grew:")
        for row in attr["types"][:max_sites]:
            lines.append(f"  {row['type']}: {row['delta']:+d} (now {row['count']})")
    for ch in attr["chains"]:
        lines.append(f"what holds a new {ch['type']} {ch['repr']}:")
        for link in ch["chain"]:
            via = f" {link['via']}" if link.get("via") else ""
            lines.append(f"  {link['type']} {link['repr']}{via}")
    if attr.get("resources"):
        lines.append("what one more run left open, and where (most recent call first):")
        for res in attr["resources"][:max_sites]:
            lines.append(f"  {res['description']}")
            frames = res.get("origin") or []
            own = [fr for fr in frames if not _framework_file(fr["filename"])]
            for fr in own or frames:
                lines.append(f"    {fr['filename']}:{fr['lineno']} in {fr['function']}")
    return "\n".join(lines)
