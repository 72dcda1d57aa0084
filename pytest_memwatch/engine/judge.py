"""Judging a test: every verdict its spec asks for, from its measured runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from pytest_memwatch.base.probes import bytes_metric
from pytest_memwatch.base.verdict import Verdict, VerdictSource
from pytest_memwatch.engine.measure import Measurer, RunMeasure
from pytest_memwatch.engine.plan import RepeatPlan
from pytest_memwatch.engine.spec import TestSpec
from pytest_memwatch.engine.verdicts import RESOURCE_METRICS, growth_verdict, peak_verdict
from pytest_memwatch.resources import ResourceReport, name_in_leak_verdict, resources_verdict


def resource_verdict(delta: Mapping[str, int | None], source: VerdictSource) -> Verdict:
    left = {m: delta.get(m) for m in RESOURCE_METRICS}
    grown = {m: v for m, v in left.items() if v is not None and v > 0}
    if not grown:
        return Verdict("resources", source, True, "no threads or fds left behind")
    parts = ", ".join(f"{v} {m}" for m, v in grown.items())
    return Verdict(
        "resources",
        source,
        False,
        f"resources: {parts} left behind after the test and its fixtures were torn down",
        metric=next(iter(grown)),
        measured=float(next(iter(grown.values()))),
    )


def judge(
    spec: TestSpec,
    measures: Sequence[RunMeasure],
    plan: RepeatPlan | None,
    measurer: Measurer,
    resources: ResourceReport | None = None,
) -> list[Verdict]:
    """All verdicts for one test from its measured runs (the last one is the reported run).

    ``resources`` is what the detailed resource check found (see
    :mod:`pytest_memwatch.resources`); without it, a resource check falls back
    to the thread and descriptor counts of the cheap probes.
    """
    verdicts: list[Verdict] = []
    if not measures:
        return verdicts
    last = measures[-1]
    if spec.max_growth is not None:
        limit = int(spec.max_growth["limit"])
        if plan is None:
            delta = last.after.minus(last.before)
            measured = _bytes(delta)
            if measured is not None and measured > limit and (delta.get("rss") or 0) > limit:
                # RSS may still count freed heap pages: hand them back and read again
                # before failing anyone.
                last = measurer.trimmed(last)
                delta = last.after.minus(last.before)
                measured = _bytes(delta)
            verdicts.append(
                growth_verdict(
                    measured, limit, source=spec.max_growth_source, runs=1, details={"delta": delta}
                )
            )
        else:
            measured_f, details = plan.growth_per_call()
            verdicts.append(
                growth_verdict(
                    measured_f,
                    limit,
                    source=spec.max_growth_source,
                    runs=len(plan.measured),
                    details=details,
                )
            )
    if spec.max_memory is not None:
        # The first measured run follows the trim (see Measurer.begin): its
        # allocations cannot reuse pages a previous run freed.
        runs = plan.measured if plan is not None else measures
        peaks = [
            m.peak_rss - m.before.rss
            for m in runs
            if m.peak_rss is not None and m.before.rss is not None
        ]
        verdicts.append(
            peak_verdict(
                max(peaks) if peaks else None, int(spec.max_memory["limit"]), source="marker"
            )
        )
    leftovers = list(resources.leaked) if resources is not None else []
    if plan is not None and spec.wants_leak_verdict:
        leak = plan.leak_verdict(source=spec.leak_source)
        if resources is not None:
            # A trend that already failed on fds or threads names their survivors
            # itself: one failure line per problem, not two.
            leftovers = name_in_leak_verdict(leak, resources)
        verdicts.append(leak)
    elif spec.resources and resources is None:
        verdicts.append(resource_verdict(last.after.minus(last.before), spec.resources_source))
    if spec.resources and resources is not None and (leftovers or not resources.leaked):
        report = replace(resources, leaked=leftovers)
        verdicts.append(resources_verdict(report, spec.resources_source))
    return verdicts


def _bytes(delta: Mapping[str, int | None]) -> float | None:
    v = bytes_metric(dict(delta))
    return None if v is None else float(v)
