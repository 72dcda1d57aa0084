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

import gc
import linecache
import os
import reprlib
import tracemalloc
import types
from collections.abc import Callable
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


def _type_name(obj: object) -> str:
    t = type(obj)
    mod = t.__module__
    return t.__qualname__ if mod == "builtins" else f"{mod}.{t.__qualname__}"


def _census(skip: object = None) -> tuple[dict[str, int], set[int]]:
    """Count objects by type, and remember their ids.

    ``gc.get_objects()`` lists only containers; a leaked ``bytes`` or ``str`` is
    not tracked by the collector, so the objects the containers refer to are
    counted too.
    """
    counts: dict[str, int] = {}
    ids: set[int] = set()
    for o in gc.get_objects():
        if o is skip:  # the previous census's id set: its ints are ours
            continue
        for x in (o, *gc.get_referents(o)):
            if id(x) in ids:
                continue
            ids.add(id(x))
            name = _type_name(x)
            counts[name] = counts.get(name, 0) + 1
    return counts, ids


def _new_objects(wanted: set[str], old_ids: set[int]) -> dict[str, object]:
    """One object of each wanted type that did not exist when ``old_ids`` was taken."""
    found: dict[str, object] = {}
    for o in reversed(gc.get_objects()):
        for x in (o, *gc.get_referents(o)):
            name = _type_name(x)
            if name in wanted and name not in found and id(x) not in old_ids:
                found[name] = x
        if len(found) == len(wanted):
            break
    return found


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
        if isinstance(d, dict) and d is child:
            return ".__dict__"
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
    """Run ``run_once`` ``1 + runs`` times under tracemalloc, then ``runs`` times
    more for a census of object types, and explain the growth.

    The first run is a warmup under tracing: tracemalloc started late misses
    the frees of older objects, and a replaced value would look like growth.
    """
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start(max(1, frames))
    try:
        run_once()
        gc.collect()
        snap0 = tracemalloc.take_snapshot()
        for _ in range(runs):
            run_once()
        gc.collect()
        snap1 = tracemalloc.take_snapshot()
    finally:
        if started:
            tracemalloc.stop()

    filters = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, os.path.join(_HERE, "*")),
    ]
    stats = snap1.filter_traces(filters).compare_to(snap0.filter_traces(filters), "traceback")
    del snap0, snap1
    sites: list[dict[str, Any]] = []
    traced_growth = 0
    for stat in stats:
        if stat.size_diff <= 0:
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
            }
        )
    del stats

    # The census runs the code again without tracing, so that the snapshots'
    # own objects are not counted as growth.
    gc.collect()
    census0, ids0 = _census()
    for _ in range(runs):
        run_once()
    gc.collect()
    census1, _ = _census(skip=ids0)
    grown = sorted(
        ((t, census1[t] - census0.get(t, 0)) for t in census1),
        key=lambda kv: -kv[1],
    )
    # Like sites: at least one more object per run, or it is the harness's noise.
    type_rows: list[dict[str, Any]] = [
        {"type": t, "delta": d, "count": census1[t]} for t, d in grown if d >= runs
    ][:top]

    chain_rows: list[dict[str, Any]] = []
    if type_rows and chains > 0:
        candidates = _new_objects({row["type"] for row in type_rows[: chains * 2]}, ids0)
        ignore = [id(candidates), id(ids0)]
        for row in type_rows:
            if len(chain_rows) >= chains:
                break
            obj = candidates.get(row["type"])
            if obj is None:
                continue
            chain = _chain(obj, ignore)
            if chain:
                chain_rows.append({"type": row["type"], "repr": short_repr(obj), "chain": chain})
        candidates.clear()

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
