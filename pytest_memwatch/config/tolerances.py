"""Noise floors and ``METRIC:TOLERANCE`` expressions (``--memwatch-compare-fail``).

Both say how much a figure may move before it counts: the floors for one run's
growth, the tolerances for a test's change against a saved baseline.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pytest_memwatch.base.limits import MAX_JSON_INT, short_repr
from pytest_memwatch.base.probes import METRICS as PROBE_METRICS
from pytest_memwatch.base.units import UnitError, parse_size

# Per-run growth that counts as "grew" for each metric. Blocks, fds and
# threads are exact counters. malloc bytes are exact too, but glibc's tcache
# keeps freed chunks counted as in use, so a few hundred bytes come and go on
# clean code (small leaks are caught by blocks). RSS moves in pages and arenas,
# so a run must add more than a few pages before it counts.
DEFAULT_FLOORS: Mapping[str, float] = {
    "blocks": 0.0,
    "malloc": 256.0,
    "rss": 32 * 1024.0,
    "fds": 0.0,
    "threads": 0.0,
}


# The figures a tolerance can name, and the unit each is counted in.
METRIC_UNITS: Mapping[str, str] = {
    "growth": "bytes",
    "peak": "bytes",
    **{m: "bytes" if m in ("rss", "malloc") else "count" for m in PROBE_METRICS},
}
# A percentage tolerance never allows less than this many bytes: one RSS noise floor.
RELATIVE_FLOOR_BYTES = int(DEFAULT_FLOORS["rss"])


EXPR_EXAMPLE = "METRIC:TOLERANCE, e.g. growth:10% or peak:5MB"


@dataclass(frozen=True)
class Tolerance:
    """One parsed ``METRIC:TOLERANCE`` expression."""

    text: str
    metric: str
    relative: float | None = None  # fraction of the baseline value
    absolute: float | None = None  # bytes or count

    def allowed(self, old: int) -> float:
        """How much the metric may rise above ``old`` before it is a regression."""
        if self.relative is not None:
            floor = RELATIVE_FLOOR_BYTES if METRIC_UNITS[self.metric] == "bytes" else 0
            return max(abs(old) * self.relative, floor)
        assert self.absolute is not None
        return self.absolute


def parse_tolerance(text: str) -> Tolerance:
    """Parse ``growth:10%``, ``peak:5MB``, ``blocks:100``; raise ``ValueError`` saying why not.

    >>> parse_tolerance("growth:10%").relative
    0.1
    >>> parse_tolerance("peak:5MB").absolute
    5000000.0
    """
    metric, sep, tol = text.partition(":")
    metric, tol = metric.strip().lower(), tol.strip()
    if not sep or not metric or not tol:
        raise ValueError(f"expected {EXPR_EXAMPLE}")
    if metric not in METRIC_UNITS:
        raise ValueError(
            f"unknown metric {short_repr(metric)}; expected one of {', '.join(METRIC_UNITS)} "
            f"({EXPR_EXAMPLE})"
        )
    if tol.endswith("%"):
        try:
            pct = float(tol[:-1])
        except ValueError:
            raise ValueError(
                f"cannot read {short_repr(tol)} as a percentage, e.g. {metric}:10%"
            ) from None
        if not math.isfinite(pct) or pct < 0:
            raise ValueError(f"the percentage must be 0 or more, e.g. {metric}:10%")
        return Tolerance(text, metric, relative=pct / 100.0)
    if METRIC_UNITS[metric] == "bytes":
        try:
            return Tolerance(text, metric, absolute=float(parse_size(tol)))
        except UnitError as exc:
            raise ValueError(f"{exc}, or a percentage such as {metric}:10%") from None
    try:
        count = int(tol)
    except ValueError:
        raise ValueError(
            f"{metric} is a count: expected a whole number or a percentage, "
            f"e.g. {metric}:100 or {metric}:10%"
        ) from None
    if count < 0:
        raise ValueError(f"the tolerance must be 0 or more, e.g. {metric}:100")
    if count > MAX_JSON_INT:
        # float() of a 400-digit count would raise OverflowError.
        raise ValueError(f"the tolerance must be at most {MAX_JSON_INT}, e.g. {metric}:100")
    return Tolerance(text, metric, absolute=float(count))


def parse_tolerances(exprs: Iterable[str], *, where: str) -> tuple[list[Tolerance], list[str]]:
    """Parse several expressions; return the good ones and an error line per bad one.

    ``where`` names their origin in the error (``--memwatch-compare-fail``, a test id).
    """
    good: list[Tolerance] = []
    errors: list[str] = []
    for expr in exprs:
        try:
            good.append(parse_tolerance(expr))
        except ValueError as exc:
            errors.append(f"bad compare_fail expression {expr!r} ({where}): {exc}")
    return good, errors


def effective_tolerances(session: Sequence[Tolerance], own: Sequence[Tolerance]) -> list[Tolerance]:
    """The session's tolerances with the test's own replacing those of the same metric."""
    overridden = {t.metric for t in own}
    return [t for t in session if t.metric not in overridden] + list(own)
