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

The modules: :mod:`.attribute` runs the test again under tracing (or explains
a leak too big for that in place), :mod:`.tracing` diffs tracemalloc's traces
into allocation sites, :mod:`.objects` finds the leaked objects by walking the
heap, :mod:`.holders` draws the reference chain from a module to one of them,
:mod:`.reprs` describes objects safely and :mod:`.report` formats the result.
"""

from __future__ import annotations

from pytest_memwatch.engine.attribution.attribute import (
    RERUN_BUDGET,
    TRACE_COST_PER_BLOCK,
    attribute,
    attribute_in_place,
    empty,
    rerun_count,
)
from pytest_memwatch.engine.attribution.report import format_attribution
from pytest_memwatch.engine.attribution.reprs import short_repr

__all__ = [
    "RERUN_BUDGET",
    "TRACE_COST_PER_BLOCK",
    "attribute",
    "attribute_in_place",
    "empty",
    "format_attribution",
    "rerun_count",
    "short_repr",
]
