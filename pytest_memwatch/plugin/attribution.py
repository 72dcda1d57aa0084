"""Explaining a failed verdict: re-runs of the test under tracemalloc, and where
resources were opened (``--memwatch-trace``; the tracing itself is
:mod:`pytest_memwatch.engine.attribution`'s and the resource checker's).
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_memwatch.base.probes import bytes_metric
from pytest_memwatch.engine import RunMeasure
from pytest_memwatch.engine.verdicts import MEMORY_METRICS
from pytest_memwatch.plugin import _pytest_private as private
from pytest_memwatch.plugin.held_reports import HeldReports, holding_reports
from pytest_memwatch.plugin.progress import AttributionProgress
from pytest_memwatch.plugin.runs import KeepCollectors, forget_previous_run
from pytest_memwatch.plugin.state import ItemMeasure, SessionState, reported_nodeid
from pytest_memwatch.resources import OPENED_KINDS, ResourceReport


def attribution_needs(failed: list[Any], found: ResourceReport | None) -> tuple[bool, bool]:
    """Whether the failure asks for memory attribution, and for where resources were opened.

    A leak verdict failing only on descriptors or threads has no memory to
    explain: tracing it would blame pytest's own per-run allocations.
    """
    memory = False
    for v in failed:
        if v.kind == "max_growth":
            memory = True
        elif v.kind == "leak":
            metrics = v.details.get("metrics") or {}
            suspect = {
                k for k, d in metrics.items() if isinstance(d, dict) and d.get("state") == "suspect"
            }
            memory = memory or bool(suspect & set(MEMORY_METRICS)) or not metrics
    opened = found is not None and any(r.kind in OPENED_KINDS for r in found.leaked)
    return memory, opened


def _leak_size(measures: list[RunMeasure], failed: list[Any]) -> tuple[int, int]:
    """Bytes and blocks one run was measured to leave, for attribution's memory budget."""
    size = blocks = 0
    if measures:
        growth = measures[-1].after.minus(measures[-1].before)
        size = bytes_metric(growth) or 0
        blocks = growth.get("blocks") or 0
    for v in failed:
        if v.kind == "max_growth" and isinstance(v.measured, (int, float)):
            size = max(size, int(v.measured))
        for name, d in (v.details.get("metrics") or {}).items():
            slope = (d.get("trend") or {}).get("slope") if isinstance(d, dict) else None
            if not isinstance(slope, (int, float)):
                continue
            if name in ("rss", "malloc"):
                size = max(size, int(slope))
            elif name == "blocks":
                blocks = max(blocks, int(slope))
    return max(0, size), max(0, blocks)


def attribute(
    item: pytest.Item,
    m: ItemMeasure,
    state: SessionState,
    keep: KeepCollectors,
    measures: list[RunMeasure],
    failed: list[Any],
    found: ResourceReport | None,
    memory: bool,
    opened: bool,
) -> dict[str, Any]:
    """Explain a failed verdict; never raises (a broken explanation must not stop the session)."""
    from pytest_memwatch.engine import attribution

    held = HeldReports()

    def run_once() -> None:
        # As runs.run: no reading is pending, so the reruns take none and never
        # freeze the heap; what pytest keeps per run on the item is dropped,
        # and the subtests the reruns report are not logged again.
        forget_previous_run(item)
        held.clear()
        with holding_reports(item, held):
            private.run_phases(item, nextitem=keep, log=False)  # type: ignore[arg-type]
        m.scoped = private.drop_finished_dependents(item, m.scoped, m.plan is not None)

    frames = state.settings.trace
    progress = AttributionProgress(item.config, reported_nodeid(item))
    try:
        if memory:
            size, blocks = _leak_size(measures, failed)
            result = attribution.attribute(
                run_once, frames=frames, leak_bytes=size, leak_blocks=blocks, progress=progress
            )
        else:
            result = attribution.empty(frames, "the failure is about resources, not memory")
        if opened:
            progress("one more run recording where resources are opened")
            result["resources"] = [
                r.to_dict() for r in state.resources.trace_openers(run_once, frames)
            ]
    except Exception as exc:
        result = attribution.empty(frames, f"attribution failed: {type(exc).__name__}: {exc}")
    finally:
        progress.done()
        # Attribution gave the frozen heap back to the collector; the next
        # measured test freezes it again.
        state.measurer.thaw()
    return result
