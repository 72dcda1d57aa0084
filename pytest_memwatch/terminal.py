"""The terminal summary: a pure renderer of per-test results (no pytest import).

Follows pytest's verbosity conventions: ``-q`` gives one line plus the failed
verdicts, the default adds the tests that grew most, ``-v`` lists more of them
with their per-run deltas, ``-vv`` lists every measured test.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pytest_memwatch.units import format_size


def _growth(t: dict[str, Any]) -> int:
    g = t.get("growth") or {}
    return max(int(g.get("rss") or 0), int(g.get("malloc") or 0))


def summary_lines(
    tests: Sequence[dict[str, Any]], *, verbosity: int = 0, top: int = 10
) -> list[str]:
    measured = [t for t in tests if t.get("before") is not None or t.get("runs")]
    if not measured:
        return []
    failed = [t for t in measured if any(not v["passed"] for v in t.get("verdicts", []))]
    repeated = sum(1 for t in measured if t.get("runs"))
    total = sum((t.get("growth") or {}).get("rss") or 0 for t in measured)
    head = (
        f"memwatch: {len(measured)} tests measured"
        + (f" ({repeated} repeated)" if repeated else "")
        + f", {len(failed)} failed memory verdict{'s' if len(failed) != 1 else ''}"
        + f", total RSS growth {format_size(total, signed=True)}"
    )
    lines = [head]
    for t in failed:
        for v in t["verdicts"]:
            if not v["passed"]:
                # An xfail test's failed verdict is its expected failure (XFAIL).
                status = "XFAIL" if t.get("outcome") == "xfailed" else "FAILED"
                lines.append(f"{status} {t['nodeid']} - {v['message']}")
        timing = t.get("timing") or {}
        # A single run's time is pytest's own --durations; repetition and
        # attribution are memwatch's.
        if (timing.get("runs") or 0) > 1 or timing.get("attribution_s") is not None:
            lines.append(f"  memwatch time: {format_timing(timing)}")
    if verbosity < 0:
        return lines
    lines += _time_lines(measured)
    count = len(measured) if verbosity >= 2 else (top * 2 if verbosity == 1 else top)
    growers = sorted(measured, key=_growth, reverse=True)[:count]
    growers = [t for t in growers if _growth(t) > 0 or verbosity >= 2]
    if growers:
        lines.append("")
        lines.append(
            f"{'growth':>11} {'malloc':>11} {'blocks':>8} {'peak':>11}  test"
            + ("  (tests that grew most)" if verbosity < 2 else "")
        )
        for t in growers:
            g = t.get("growth") or {}
            blocks = g.get("blocks")
            lines.append(
                f"{format_size(g.get('rss'), signed=True):>11} "
                f"{format_size(g.get('malloc'), signed=True):>11} "
                f"{'n/a' if blocks is None else f'{blocks:+d}':>8} "
                f"{format_size(t.get('peak_growth')):>11}  {t['nodeid']}"
            )
            if verbosity >= 1 and t.get("runs"):
                deltas = _run_deltas(t["runs"], "blocks")
                lines.append(f"{'':>45}  blocks per run: {deltas}")
    return lines


def _run_deltas(runs: Sequence[dict[str, Any]], metric: str) -> list[int | None]:
    """What each measured run added: consecutive after-readings, as the verdict judges.

    A run's own after-minus-before also counts what it replaces from the run
    before (pytest's reports, say), so a test leaking one block a run showed
    "-24" per run while its verdict said "+1 blocks/run".
    """
    out: list[int | None] = []
    prev: int | None = None
    for i, run in enumerate(runs):
        after = (run.get("after") or {}).get(metric)
        if i == 0:
            own = (run.get("delta") or {}).get(metric)
            prev = None if after is None or own is None else after - own
        if not run.get("warmup"):
            out.append(None if after is None or prev is None else after - prev)
        prev = after
    return out


def format_timing(timing: dict[str, Any]) -> str:
    """``22 runs 2.95 s, attribution 0.50 s``: where memwatch's time on one test went."""
    runs = timing.get("runs") or 0
    text = f"{runs} run{'s' if runs != 1 else ''} {timing.get('runs_s') or 0:.2f} s"
    if timing.get("attribution_s") is not None:
        text += f", attribution {timing['attribution_s']:.2f} s"
    return text


def _time_lines(tests: Sequence[dict[str, Any]]) -> list[str]:
    """Where memwatch's time went, when it repeated or explained tests.

    pytest's ``--durations`` shows one run's setup, call and teardown; the
    repetitions and the attribution of a failure are memwatch's own time.
    """
    timed = [t for t in tests if t.get("timing")]
    repeated = [t for t in timed if (t["timing"].get("runs") or 0) > 1]
    explained = [t for t in timed if t["timing"].get("attribution_s") is not None]
    if not repeated and not explained:
        return []

    def total(t: dict[str, Any]) -> float:
        timing = t["timing"]
        return float(timing.get("runs_s") or 0) + float(timing.get("attribution_s") or 0)

    runs_s = sum(float(t["timing"].get("runs_s") or 0) for t in repeated)
    attribution_s = sum(float(t["timing"]["attribution_s"]) for t in explained)
    slowest = max([*repeated, *explained], key=total)
    parts = []
    if repeated:
        parts.append(f"repeated runs {runs_s:.2f} s ({len(repeated)} tests)")
    if explained:
        parts.append(f"attribution {attribution_s:.2f} s ({len(explained)} tests)")
    return [
        f"time in memwatch: {', '.join(parts)}; slowest: {slowest['nodeid']} "
        f"({format_timing(slowest['timing'])})"
    ]
