"""The soak verdict, and the ``soak`` field of a test result, from an analysis.

:func:`soak_verdict` fails a climb over the budget (or any climb without one)
and any fd or thread growth, in a message that states the figures;
:func:`outcome_from` analyses samples and builds both the verdict and the
result data, and :func:`outcome_from_file` does it for a samples file read
back, as the test itself would have decided.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_memwatch.base.stats import Trend
from pytest_memwatch.base.units import format_rate, format_seconds
from pytest_memwatch.base.verdict import Verdict
from pytest_memwatch.soak.analysis import MIN_FIT_POINTS, Analysis, analyze
from pytest_memwatch.soak.buffer import FIELDS, Metric, SampleBuffer, thin
from pytest_memwatch.soak.plan import SoakPlan
from pytest_memwatch.soak.samples_file import SampleFile

# Samples of a run copied into the results document (the file keeps them all).
MAX_RESULT_SAMPLES = 2000


def soak_verdict(
    plan: SoakPlan,
    analysis: Analysis,
    *,
    complete: bool = True,
    elapsed: float | None = None,
    stop_reason: str | None = None,
    unfinished: bool = False,
) -> Verdict:
    """The soak verdict: fails on a memory climb over the limit, or on any fd/thread growth.

    ``unfinished`` says a samples file read back has no end line.
    """
    warm = format_seconds(plan.warmup_s)
    if complete:
        head = "soak"
    else:
        if unfinished:
            why = "the run has no end line, so it was killed or is still going"
        else:
            why = f"interrupted by {stop_reason}" if stop_reason else "stopped early"
        done = format_seconds(elapsed or 0.0)
        head = f"soak (partial: {why} after {done} of {format_seconds(plan.duration_s)})"
    limit = plan.limit_rate
    parts: list[str] = []
    failed = False
    rate = analysis.rate
    measured = None if rate is None else rate.slope
    decided_by: Metric | None = None
    if rate is None:
        parts.append(
            f"too few samples after the {warm} warmup to fit a trend "
            f"({analysis.n}, need {MIN_FIT_POINTS}): sample more often or run longer"
        )
    else:
        deciding = analysis.deciding(limit)
        if deciding is not None and deciding.rate is not None:
            failed = True
            measured = deciding.rate.slope
            decided_by = deciding.metric
            figures = _figures(deciding, warm)
            if deciding is not analysis:
                # The heap climbs inside pages the process already holds.
                figures += f" while {_figures(analysis, None)}"
            if limit is not None:
                parts.append(f"{figures}, over the limit of {format_rate(limit)}")
            else:
                parts.append(
                    f"{figures} and is still climbing; with no max_growth_rate any steady climb "
                    'fails (allow some with max_growth_rate="1 MiB/h")'
                )
        elif analysis.climbing(limit):
            parts.append(
                f"{_figures(analysis, warm)}: climbs in {analysis.metric} only, while neither "
                "malloc bytes nor allocated blocks grow (a fragmenting heap keeps its pages, "
                "nothing is kept alive); budget it with max_growth_rate if it matters"
            )
        else:
            within = "" if limit is None else f", within the limit of {format_rate(limit)}"
            heap = [
                f"{m} {format_rate(a.rate.slope)}"
                for m, a in analysis.others.items()
                if a.rate is not None
            ]
            others = f" (heap: {', '.join(heap)})" if heap else ""
            parts.append(f"{_figures(analysis, warm)}: {analysis.shape()}{others}{within}")
    grown = {m: v for m, v in analysis.resources.items() if v[1] > v[0]}
    for metric, (start, end) in grown.items():
        failed = True
        parts.append(f"{metric} grew from {start:g} to {end:g} after warmup (must not grow at all)")
    details: dict[str, Any] = {
        "rate": None if rate is None else _trend_dict(rate, analysis),
        "recent": None if analysis.recent is None else analysis.recent.to_dict(),
        "floor_rise": analysis.floor_rise,
        "floor_gap_s": analysis.floor_gap,
        "noise": analysis.noise,
        "step": analysis.step,
        "shape": analysis.shape(),
        "plateau": analysis.plateau,
        "allocators_climbing": analysis.allocators,
        # Every series judged, in bytes/s (blocks at 16 bytes each), and the one that failed.
        "rates": {
            m: a.rate.to_dict()
            for m, a in {analysis.metric or "rss": analysis, **analysis.others}.items()
            if a.rate is not None
        },
        "decided_by": decided_by,
        "resources": {m: {"start": a, "end": b} for m, (a, b) in analysis.resources.items()},
        "complete": complete,
        "stop_reason": stop_reason,
    }
    return Verdict(
        "soak",
        "marker",
        not failed,
        f"{head}: {'; '.join(parts)}",
        metric=decided_by or analysis.metric,
        limit=limit,
        measured=measured,
        details=details,
    )


def _figures(analysis: Analysis, warm: str | None) -> str:
    """``rss grows +1.0 MiB/h (95% CI ...)`` and, given the warmup, the span it covers."""
    rate = analysis.rate
    if rate is None:
        return f"{analysis.metric} has too few samples"
    unit = " (blocks counted as 16 B)" if analysis.metric == "blocks" else ""
    text = (
        f"{analysis.metric}{unit} {'grows ' if rate.slope > 0 else ''}{format_rate(rate.slope)} "
        f"(95% CI {format_rate(rate.low)}..{format_rate(rate.high)})"
    )
    if warm is not None:
        text += f" over {format_seconds(analysis.span)} after the {warm} warmup"
    return text


def _trend_dict(rate: Trend, analysis: Analysis) -> dict[str, Any]:
    d: dict[str, Any] = dict(rate.to_dict())
    d["metric"] = analysis.metric or "rss"
    if analysis.intercept is not None:
        d["intercept"] = analysis.intercept
    return d


def _thin_samples(samples: Sequence[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    return [samples[i] for i in thin(len(samples), limit)]


def soak_data(
    plan: SoakPlan,
    samples: Sequence[Mapping[str, Any]],
    analysis: Analysis,
    *,
    complete: bool,
    samples_path: str | None,
    resumes: Sequence[float] = (),
    elapsed: float | None = None,
    stop_reason: str | None = None,
) -> dict[str, Any]:
    """The ``soak`` field of a test result (docs/results.md)."""
    rows = [{"t": round(float(s["t"]), 3), **{f: s.get(f) for f in FIELDS}} for s in samples]
    return {
        "duration_s": plan.duration_s,
        "interval_s": plan.interval_s,
        "warmup_s": plan.warmup_s,
        "samples": _thin_samples(rows, MAX_RESULT_SAMPLES),
        "rate": None if analysis.rate is None else _trend_dict(analysis.rate, analysis),
        "limit_rate": plan.limit_rate,
        "plateau": analysis.plateau,
        "complete": complete,
        "samples_path": samples_path,
        "elapsed_s": elapsed,
        "resumed_at": [round(r, 3) for r in resumes],
        "stop_reason": stop_reason,
        "capped_from": plan.capped_from,
    }


@dataclass
class SoakOutcome:
    """What a finished soak run gives the plugin: the verdict and the result's ``soak`` field."""

    verdict: Verdict
    data: dict[str, Any]
    stop_reason: str | None = None


def outcome_from(
    plan: SoakPlan,
    samples: Sequence[dict[str, Any]],
    *,
    complete: bool,
    samples_path: str | None,
    resumes: Sequence[float] = (),
    elapsed: float | None = None,
    stop_reason: str | None = None,
    unfinished: bool = False,
) -> SoakOutcome:
    """Analyse samples and build the verdict and the result's ``soak`` field."""
    analysis = analyze(samples, plan.warmup_s)
    verdict = soak_verdict(
        plan,
        analysis,
        complete=complete,
        elapsed=elapsed,
        stop_reason=stop_reason,
        unfinished=unfinished,
    )
    data = soak_data(
        plan,
        samples,
        analysis,
        complete=complete,
        samples_path=samples_path,
        resumes=resumes,
        elapsed=elapsed,
        stop_reason=stop_reason,
    )
    return SoakOutcome(verdict, data, stop_reason)


def outcome_from_file(found: SampleFile) -> SoakOutcome:
    """The verdict and ``soak`` data of a samples file, as the test itself would decide."""
    plan = found.plan()
    # Through the same bounded buffer as the live run, so the same samples are judged.
    buffer = SampleBuffer()
    for s in found.samples:
        buffer.add(s["t"], s, s["segment"])
    reason = (found.end or {}).get("reason")
    return outcome_from(
        plan,
        buffer.samples(),
        complete=found.complete,
        samples_path=str(found.path),
        resumes=found.resumes,
        elapsed=found.last_t,
        stop_reason=reason if isinstance(reason, str) else None,
        unfinished=found.end is None,
    )
