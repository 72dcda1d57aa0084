"""Attribution: what leaked, where it was allocated, and what still holds it.

Gathered only when a verdict has failed, by running the code again with
tracemalloc on, so tests that pass never pay for tracing. The result is plain
data (see docs/results.md, "attribution")::

    {"trace_frames": 10, "runs": 3, "traced_growth": 3072,
     "sites": [{"size": 3072, "count": 3, "traceback": [{"filename", "lineno", "line"}]}],
     "types": [{"type": "builtins.bytes", "delta": 3, "count": 812}],
     "chains": [{"type": "...", "repr": "...", "chain": [{"type", "repr", "via"}]}],
     "note": null}
"""

from __future__ import annotations

import _tracemalloc
import gc
import linecache
import os
import reprlib
import tracemalloc
import types
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))
_repr = reprlib.Repr()
_repr.maxstring = 80
_repr.maxother = 80
_repr.maxlist = 4
_repr.maxdict = 4


def short_repr(obj: object) -> str:
    try:
        return _repr.repr(obj)
    except Exception as exc:  # a broken __repr__ must not break the report
        return f"<{type(obj).__name__} (repr failed: {type(exc).__name__})>"


def _qualified(t: type) -> str:
    mod = t.__module__
    return t.__qualname__ if mod == "builtins" else f"{mod}.{t.__qualname__}"


def _type_name(obj: object) -> str:
    return _qualified(type(obj))


def _reachable() -> Iterator[object]:
    """Every object the collector tracks, and what those refer to directly.

    ``gc.get_objects()`` lists only containers; a leaked ``bytes`` or ``str`` is
    not tracked, so the objects the containers refer to are included, and
    CPython's untracked dicts and tuples (holding only atomic values, like a
    cache of strings) are walked into as well.
    """
    seen: set[int] = set()
    # Newest first: after a full collection every survivor sits in the oldest
    # generation in the order it got there, so what a test just leaked is at
    # the end of the list, and walks that stop early find it quickly.
    for o in reversed(gc.get_objects()):
        stack = [o, *gc.get_referents(o)]
        while stack:
            x = stack.pop()
            if id(x) in seen:
                continue
            seen.add(id(x))
            yield x
            if x is not o and not gc.is_tracked(x) and isinstance(x, (dict, tuple)):
                stack.extend(gc.get_referents(x))


def _census() -> dict[str, int]:
    # Counting types with Counter over map() runs in C; naming each distinct
    # type afterwards keeps the Python-level work per type, not per object.
    by_type = Counter(map(type, gc.get_objects()))
    counts: dict[str, int] = {}
    for t, n in by_type.items():
        name = _qualified(t)
        counts[name] = counts.get(name, 0) + n
    return counts


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


def _chain(obj: object, ignore: list[int]) -> list[dict[str, Any]] | None:
    try:
        import objgraph
    except ImportError:
        return None
    chain = objgraph.find_backref_chain(
        obj, objgraph.is_proper_module, max_depth=25, extra_ignore=ignore
    )
    if not chain or not objgraph.is_proper_module(chain[0]):
        chain = _chain_through_untracked(obj, ignore)
    if not chain:
        return None
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


def _chain_through_untracked(obj: object, ignore: list[int], max_depth: int = 25) -> list[Any]:
    """A module-to-object chain that may pass through untracked containers.

    objgraph walks ``gc.get_referrers``, which only searches objects the
    collector tracks; a dict holding only strings is untracked, so a string
    cached in it has no referrer objgraph can see. Here a reverse index is built
    over every reachable object (costly, but only for a failed verdict).
    """
    parents: dict[int, list[object]] = {}
    for x in _reachable():
        if isinstance(x, types.FrameType) or id(x) in ignore:
            continue
        for r in gc.get_referents(x):
            parents.setdefault(id(r), []).append(x)
    ignore = [*ignore, id(parents)]
    queue: list[tuple[object, list[object]]] = [(obj, [obj])]
    seen = {id(obj)}
    while queue:
        current, path = queue.pop(0)
        if isinstance(current, types.ModuleType) and current is not obj:
            return list(reversed(path))
        if len(path) > max_depth:
            continue
        for parent in parents.get(id(current), ()):
            if id(parent) in seen or id(parent) in ignore:
                continue
            seen.add(id(parent))
            queue.append((parent, [*path, parent]))
    return []


def _link_repr(obj: object) -> str:
    """A compact description of an intermediate link: which module, how big."""
    if isinstance(obj, types.ModuleType):
        return f"<module {obj.__name__!r}>"
    if isinstance(obj, (dict, list, tuple, set, frozenset)):
        return f"({len(obj)} items)"
    return short_repr(obj)


_FRAMEWORK = (f"{os.sep}_pytest{os.sep}", f"{os.sep}pluggy{os.sep}", _HERE)


def _framework_file(filename: str) -> bool:
    return any(part in filename for part in _FRAMEWORK)


def attribute(
    run_once: Callable[[], object],
    *,
    frames: int,
    runs: int = 3,
    top: int = 10,
    chains: int = 2,
) -> dict[str, Any]:
    """Run ``run_once`` ``1 + runs`` times under tracemalloc and explain the growth.

    The first run is a warmup under tracing: tracemalloc started late misses
    the frees of older objects, and a replaced value would look like growth.
    Leaked objects are found by their allocation traceback: a new object whose
    traceback matches a site that grew is what that site leaked, and the chain
    of references from a module to it is what still holds it. A census of
    containers (as objgraph's ``growth``) adds types that grew elsewhere.
    """
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start(max(1, frames))
    try:
        run_once()
        gc.collect()
        # The censuses stay outside the two snapshots, so what they allocate
        # (ABC caches, counters) is not read as the code's growth.
        census0 = _census()
        snap0 = tracemalloc.take_snapshot()
        for _ in range(runs):
            run_once()
        gc.collect()
        snap1 = tracemalloc.take_snapshot()
        sites, traced_growth = _sites(snap0, snap1, runs=runs, top=top)
        # Gone before the second census: their traces are tuples it would count.
        del snap0, snap1
        census1 = _census()
        leaked, totals = _leaked_objects(sites[:chains])
        for site in sites:
            del site["_where"]
    finally:
        if started:
            tracemalloc.stop()

    type_rows: list[dict[str, Any]] = []
    by_type: dict[str, int] = {}
    for objs in leaked:
        for obj in objs:
            by_type[_type_name(obj)] = by_type.get(_type_name(obj), 0) + 1
    for name, n in sorted(by_type.items(), key=lambda kv: -kv[1]):
        type_rows.append({"type": name, "delta": n, "count": totals.get(name, n)})
    grew = {
        name: count - census0.get(name, 0)
        for name, count in census1.items()
        if count - census0.get(name, 0) >= runs and name not in by_type
    }
    if grew:
        # A type must grow again over more runs (untraced): one-time growth,
        # such as a module imported while the snapshots were compared, does not.
        for _ in range(runs):
            run_once()
        gc.collect()
        census2 = _census()
        for name, delta in sorted(grew.items(), key=lambda kv: -kv[1]):
            if census2.get(name, 0) - census1.get(name, 0) >= runs:
                type_rows.append({"type": name, "delta": delta, "count": census1[name]})
    type_rows = type_rows[:top]

    chain_rows: list[dict[str, Any]] = []
    ignore = [id(leaked)]
    for objs in leaked:
        if len(chain_rows) >= chains or not objs:
            continue
        obj = objs[-1]
        chain = _chain(obj, ignore)
        if chain:
            chain_rows.append({"type": _type_name(obj), "repr": short_repr(obj), "chain": chain})
    leaked.clear()

    note = None
    if not sites:
        note = (
            "no Python allocation site grew: the growth is outside tracemalloc's view "
            "(C extension or native malloc), or it did not recur under tracing"
        )
    return {
        "trace_frames": frames,
        "runs": runs,
        "traced_growth": traced_growth,
        "sites": sites,
        "types": type_rows,
        "chains": chain_rows,
        "note": note,
    }


def _sites(
    snap0: tracemalloc.Snapshot, snap1: tracemalloc.Snapshot, *, runs: int, top: int
) -> tuple[list[dict[str, Any]], int]:
    # Grouping first and dropping the harness's own sites afterwards: the
    # snapshots' filter_traces() matches every trace with fnmatch in Python,
    # seconds on a large suite.
    stats = snap1.compare_to(snap0, "traceback")
    sites: list[dict[str, Any]] = []
    traced_growth = 0
    for stat in stats:
        if stat.size_diff <= 0:
            continue
        newest = stat.traceback[-1].filename if len(stat.traceback) else ""
        if newest == tracemalloc.__file__ or newest.startswith(_HERE):
            continue
        traced_growth += stat.size_diff
        # A leak recurs: at least one new block per run, or a sizeable amount.
        # A single block is the harness's own per-run state being replaced.
        if len(sites) >= top or (stat.count_diff < runs and stat.size_diff < 4096):
            continue
        tb_frames = list(reversed(stat.traceback))
        own = [fr for fr in tb_frames if not _framework_file(fr.filename)]
        # Most recent call first, as the user reads a leak: where it was made;
        # pytest's and pluggy's own frames only when nothing else is there.
        sites.append(
            {
                "size": stat.size_diff,
                "count": stat.count_diff,
                "traceback": [
                    {
                        "filename": fr.filename,
                        "lineno": fr.lineno,
                        "line": linecache.getline(fr.filename, fr.lineno).strip(),
                    }
                    for fr in own or tb_frames
                ],
                "_where": (tb_frames[0].filename, tb_frames[0].lineno) if tb_frames else None,
            }
        )
    return sites, traced_growth


def _leaked_objects(
    sites: list[dict[str, Any]], *, enough: int = 50
) -> tuple[list[list[object]], dict[str, int]]:
    """Per site, live objects whose allocation traceback starts at that site,
    and how many of each type were found.

    Every object still alive from a site that keeps growing is one it leaked
    (those from the warmup run included), so no "new since" filter is needed,
    and the walk stops once every site has ``enough`` of them.
    """
    wanted = {site["_where"]: i for i, site in enumerate(sites) if site.get("_where")}
    found: list[list[object]] = [[] for _ in sites]
    totals: dict[str, int] = {}
    if not wanted:
        return found, totals
    # The private C accessor returns plain (filename, lineno) tuples, most
    # recent first; the public one builds Traceback and Frame objects for every
    # object walked, which made this walk take seconds.
    raw = getattr(_tracemalloc, "_get_object_traceback", None)
    # Once every site has an object, a bounded stretch more of the walk
    # gathers the rest of a burst; the whole heap is not worth it.
    budget: int | None = None
    for obj in _reachable():
        if budget is not None:
            budget -= 1
            if budget <= 0:
                break
        if raw is not None:
            frames = raw(obj)
            key = frames[0][:2] if frames else None
        else:
            tb = tracemalloc.get_object_traceback(obj)
            key = (tb[-1].filename, tb[-1].lineno) if tb else None
        i = wanted.get(key) if key is not None else None
        if i is None or len(found[i]) >= enough:
            continue
        found[i].append(obj)
        name = _type_name(obj)
        totals[name] = totals.get(name, 0) + 1
        if all(len(f) >= enough for f in found):
            break
        if budget is None and all(found):
            budget = 20_000
    return found, totals


def format_attribution(attr: dict[str, Any], *, max_sites: int = 5) -> str:
    """Plain-text report section for a failed test."""
    lines = [
        f"traced growth over {attr['runs']} runs: {attr['traced_growth']} bytes "
        f"(tracemalloc, {attr['trace_frames']} frames)"
    ]
    if attr.get("note"):
        lines.append(f"note: {attr['note']}")
    if attr["sites"]:
        lines.append("top allocation sites (most recent call first):")
        for site in attr["sites"][:max_sites]:
            lines.append(f"  +{site['size']} B in {site['count']:+d} blocks")
            for fr in site["traceback"]:
                lines.append(f"    {fr['filename']}:{fr['lineno']}: {fr['line']}")
    if attr["types"]:
        lines.append("object types that grew:")
        for row in attr["types"][:max_sites]:
            lines.append(f"  {row['type']}: {row['delta']:+d} (now {row['count']})")
    for ch in attr["chains"]:
        lines.append(f"what holds a new {ch['type']} {ch['repr']}:")
        for link in ch["chain"]:
            via = f" {link['via']}" if link.get("via") else ""
            lines.append(f"  {link['type']} {link['repr']}{via}")
    return "\n".join(lines)
