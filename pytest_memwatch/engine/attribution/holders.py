"""What holds a leaked object: the shortest chain of references from a module to it."""

from __future__ import annotations

import gc
import sys
import time
import types
from itertools import compress
from typing import Any

from pytest_memwatch.engine.attribution.reprs import short_repr, type_name

# Deadline of each chain's search, and how many objects a level of it follows.
CHAIN_SECONDS = 1.0
_CHAIN_WIDTH = 8


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


def holder_chains(samples: list[tuple[object, object | None]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    ignore = {id(samples)}
    for obj, parent in samples:
        deadline = time.perf_counter() + CHAIN_SECONDS
        path = _path_from_module(parent if parent is not None else obj, ignore, deadline)
        if path is None:
            continue
        if parent is not None:
            path.append(obj)
        rows.append({"type": type_name(obj), "repr": short_repr(obj), "chain": _links(path)})
    samples.clear()
    return rows


def _links(chain: list[object]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, link in enumerate(chain):
        nxt = chain[i + 1] if i + 1 < len(chain) else None
        out.append(
            {
                "type": type_name(link),
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
