"""The terminal summary: a pure renderer of per-test results (no pytest import).

Follows pytest's verbosity conventions: ``-qq`` gives at most one line (none
when no memory verdict failed), ``-q`` one line plus the failed verdicts, the
default adds the tests that grew most, ``-v`` lists more of them with their
per-run deltas, ``-vv`` lists every measured test.

Its figures are the results model's (:mod:`pytest_memwatch.reports.results`):
"growth" is :func:`~pytest_memwatch.reports.results.growth_bytes`, "total growth" their
sum over the measured tests (``totals.total_growth``).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pytest_memwatch.base.units import format_size, plural
from pytest_memwatch.engine.messages import headline
from pytest_memwatch.reports.document import TimingDoc
from pytest_memwatch.reports.results import (
    failed_verdicts,
    growth_bytes,
    is_measured,
    peak_bytes,
    run_deltas,
)


def _growth(t: dict[str, Any]) -> int:
    return growth_bytes(t) or 0


class Summary:
    """What the terminal summary needs, gathered one test (dict) at a time.

    Keeps the counts, the failed verdicts' lines and the ``keep`` tests that
    grew most, not every test: a session feeds it as tests finish. Listing
    every measured test (``-vv``) reads them again through ``every``.
    """

    def __init__(self, keep: int = 20) -> None:
        self.keep = keep
        self.measured = 0
        self.repeated = 0
        self.failed = 0
        self.total_growth = 0
        self.failures: list[str] = []
        # Repeated tests whose budget ran out before their trend settled.
        self.undecided: list[str] = []
        # Where memwatch's own time went (see _Time).
        self.time = _Time()
        # A min-heap of (growth, -arrival, test): ties keep the earlier test,
        # as a stable sort of the whole list would.
        self._top: list[tuple[int, int, dict[str, Any]]] = []

    def add(self, t: dict[str, Any]) -> None:
        if not is_measured(t):
            return
        self.measured += 1
        if t.get("runs"):
            self.repeated += 1
        self.total_growth += _growth(t)
        bad = failed_verdicts(t)
        if bad:
            self.failed += 1
            # An xfail test's failed verdict is its expected failure (XFAIL).
            status = {"xfailed": "XFAIL", "error": "ERROR"}.get(t.get("outcome", ""), "FAILED")
            self.failures.extend(f"{status} {t['nodeid']} - {headline(v['message'])}" for v in bad)
            timing = t.get("timing")
            # A single run's time is pytest's own --durations; repetition and
            # attribution are memwatch's.
            if timing and (
                (timing.get("runs") or 0) > 1 or timing.get("attribution_s") is not None
            ):
                self.failures.append(f"  memwatch time: {format_timing(timing)}")
        for v in t.get("verdicts", []):
            # A verdict that ran out of budget says so instead of guessing.
            if v["passed"] and (v.get("details") or {}).get("inconclusive"):
                # Whole: no failure section below says the rest (the advice).
                self.undecided.append(f"NO VERDICT {t['nodeid']} - {v['message']}")
        self.time.add(t)
        grown = _growth(t)
        if grown <= 0 or self.keep <= 0:
            return
        entry = (grown, -self.measured, t)
        if len(self._top) < self.keep:
            heapq.heappush(self._top, entry)
        elif entry[:2] > self._top[0][:2]:
            heapq.heapreplace(self._top, entry)

    def quiet_line(self, regressions: int = 0, warnings: int = 0) -> str | None:
        """The one line ``-qq`` shows: only when a verdict failed, a comparison
        regressed or memwatch has a warning (a report it could not write)."""
        parts = []
        if self.failed:
            parts.append(plural(self.failed, "failed memory verdict"))
        if regressions:
            parts.append(f"{plural(regressions, 'regression')} against the baseline")
        if warnings:
            parts.append(f"{plural(warnings, 'warning')} (shown without -qq)")
        return f"memwatch: {', '.join(parts)}" if parts else None

    def head(self) -> str:
        failed = self.failed
        return (
            f"memwatch: {plural(self.measured, 'test')} measured"
            + (f" ({self.repeated} repeated)" if self.repeated else "")
            + f", {plural(failed, 'failed memory verdict')}"
            + f", total growth {format_size(self.total_growth, signed=True)}"
        )

    def lines(
        self,
        *,
        verbosity: int = 0,
        top: int = 10,
        every: Callable[[], Iterable[dict[str, Any]]] | None = None,
    ) -> list[str]:
        if not self.measured:
            return []
        head = self.head()
        if verbosity <= -2:
            # -qq: pytest's short summary already names each failed test.
            return [head] if self.failed else []
        lines = [head, *self.failures, *self.undecided]
        if verbosity < 0:
            return lines
        lines += self.time.lines()
        if verbosity >= 2 and every is not None:
            measured = [t for t in every() if is_measured(t)]
            growers = sorted(measured, key=_growth, reverse=True)
        else:
            count = top * 2 if verbosity == 1 else top
            ranked = sorted(self._top, key=lambda e: e[:2], reverse=True)
            growers = [t for _, _, t in ranked][:count]
        if growers:
            lines.append("")
            lines.append(
                f"{'growth':>11} {'rss':>11} {'malloc':>11} {'blocks':>8} {'peak':>11}  test"
                + ("  (tests that grew most)" if verbosity < 2 else "")
            )
            for t in growers:
                g = t.get("growth") or {}
                blocks = g.get("blocks")
                lines.append(
                    f"{format_size(growth_bytes(t), signed=True):>11} "
                    f"{format_size(g.get('rss'), signed=True):>11} "
                    f"{format_size(g.get('malloc'), signed=True):>11} "
                    f"{'n/a' if blocks is None else f'{blocks:+d}':>8} "
                    f"{format_size(peak_bytes(t)):>11}  {t['nodeid']}"
                )
                if verbosity >= 1 and t.get("runs"):
                    deltas = run_deltas(t["runs"], "blocks")
                    lines.append(f"{'':>57}  blocks per run: {deltas}")
        return lines


def summary_lines(
    tests: Sequence[dict[str, Any]], *, verbosity: int = 0, top: int = 10
) -> list[str]:
    summary = Summary(keep=top * 2)
    for t in tests:
        summary.add(t)
    return summary.lines(verbosity=verbosity, top=top, every=lambda: tests)


def format_timing(timing: TimingDoc) -> str:
    """``22 runs 2.95 s, attribution 0.50 s``: where memwatch's time on one test went."""
    runs = timing.get("runs") or 0
    text = f"{plural(runs, 'run')} {timing.get('runs_s') or 0:.2f} s"
    if timing.get("attribution_s") is not None:
        text += f", attribution {timing['attribution_s']:.2f} s"
    return text


class _Time:
    """Where memwatch's time went, when it repeated or explained tests.

    pytest's ``--durations`` shows one run's setup, call and teardown; the
    repetitions and the attribution of a failure are memwatch's own time.
    Gathered one test at a time.
    """

    def __init__(self) -> None:
        self.repeated = 0
        self.runs_s = 0.0
        self.explained = 0
        self.attribution_s = 0.0
        self.slowest: tuple[float, str, TimingDoc] | None = None

    def add(self, t: dict[str, Any]) -> None:
        timing = t.get("timing")
        if not timing:
            return
        repeated = (timing.get("runs") or 0) > 1
        explained = timing.get("attribution_s") is not None
        if repeated:
            self.repeated += 1
            self.runs_s += float(timing.get("runs_s") or 0)
        if explained:
            self.explained += 1
            self.attribution_s += float(timing["attribution_s"])
        if repeated or explained:
            total = float(timing.get("runs_s") or 0) + float(timing.get("attribution_s") or 0)
            if self.slowest is None or total > self.slowest[0]:
                self.slowest = (total, t["nodeid"], timing)

    def lines(self) -> list[str]:
        if self.slowest is None:
            return []
        parts = []
        if self.repeated:
            parts.append(f"repeated runs {self.runs_s:.2f} s ({plural(self.repeated, 'test')})")
        if self.explained:
            parts.append(
                f"attribution {self.attribution_s:.2f} s ({plural(self.explained, 'test')})"
            )
        _, nodeid, timing = self.slowest
        return [
            f"time in memwatch: {', '.join(parts)}; slowest: {nodeid} ({format_timing(timing)})"
        ]
