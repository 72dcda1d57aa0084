"""The object side of attribution: what the re-runs left, found by walking the heap in C."""

from __future__ import annotations

import _tracemalloc
import gc
import sys
import time
import tracemalloc
import types
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import compress, filterfalse, repeat
from operator import itemgetter
from typing import Any

from pytest_memwatch.engine.attribution.reprs import qualified_name

# Objects handed to one gc.get_referents()/get_referrers() call.
_CHUNK = 10_000
_UNTRACKED_CONTAINERS = (dict, tuple)


def chunks(objs: Sequence[object], size: int = _CHUNK) -> Iterable[Sequence[object]]:
    for start in range(0, len(objs), size):
        yield objs[start : start + size]


def untracked_containers(refs: list[object]) -> list[object]:
    """Untracked dicts and tuples among ``refs`` (a dict holding only strings, say).

    The collector does not track them, so neither ``gc.get_objects()`` nor
    ``gc.get_referrers()`` sees what they hold. ``compress``/``map`` keep the
    filtering in C: ``refs`` can be millions long.
    """
    untracked = list(filterfalse(gc.is_tracked, refs))
    return list(compress(untracked, map(isinstance, untracked, repeat(_UNTRACKED_CONTAINERS))))


def walk_order() -> list[object]:
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


class Finder:
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
        for chunk in chunks(containers, 2_000):
            if time.perf_counter() > deadline or (old and not self.missing):
                return
            objs = list(chunk)
            refs = gc.get_referents(*objs)
            inner = untracked_containers(refs)
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


def grown_types(
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
    rows = [
        {"type": qualified_name(t), "delta": n, "count": max(n, census.get(t, 0))} for t, n in grew
    ]
    picks: list[object] = []
    # The newest object of each top container type, for a chain when no site has one.
    for t, _ in grew[:3]:
        for obj in reversed(new):
            if type(obj) is t:
                picks.append(obj)
                break
    return rows, picks


def sized(objs: list[object], floor: int) -> list[tuple[int, object]]:
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
