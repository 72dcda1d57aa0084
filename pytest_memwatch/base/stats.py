"""Robust trend statistics for leak verdicts (no numpy: the plugin stays light).

A leak is a trend in what each run leaves behind, so the verdict fits a slope
to the cumulative readings rather than comparing endpoints. Theil-Sen (the
median of pairwise slopes) ignores up to ~29 % outliers, which is what an
allocator does now and then (an arena appears, a free list is trimmed); its
confidence interval comes from the distribution of Kendall's S (Sen 1968), so
it needs no normality assumption either.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

# Two-sided normal quantiles for the confidence levels the verdicts use, to the
# four decimals of the printed tables the verdicts were tuned with: the exact
# quantile moves an interval bound by one rank now and then.
_Z = {c: round(statistics.NormalDist().inv_cdf((1 + c) / 2), 4) for c in (0.90, 0.95, 0.99)}


@dataclass(frozen=True)
class Trend:
    slope: float  # units per x step (per run, or per second for soak)
    low: float  # lower bound of the confidence interval
    high: float  # upper bound
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return {"slope": self.slope, "low": self.low, "high": self.high, "n": self.n}


def theil_sen(
    y: Sequence[float], x: Sequence[float] | None = None, confidence: float = 0.95
) -> Trend:
    """Theil-Sen slope of ``y`` against ``x`` (default 0, 1, 2, ...) with its interval.

    With fewer than three points the interval is the slope itself.
    """
    n = len(y)
    xs = list(range(n)) if x is None else list(x)
    if len(xs) != n:
        raise ValueError("x and y differ in length")
    if n < 2:
        return Trend(0.0, 0.0, 0.0, n)
    slopes = sorted(
        (y[j] - y[i]) / (xs[j] - xs[i]) for i in range(n) for j in range(i + 1, n) if xs[j] != xs[i]
    )
    if not slopes:
        return Trend(0.0, 0.0, 0.0, n)
    est = statistics.median(slopes)
    if n < 3:
        return Trend(est, est, est, n)
    z = _Z.get(confidence)
    if z is None:
        raise ValueError(f"confidence must be one of {sorted(_Z)}")
    var_s = n * (n - 1) * (2 * n + 5) / 18.0
    c = z * math.sqrt(var_s)
    m = len(slopes)
    # Sen's bounds are the M1-th and (M2+1)-th smallest slopes, 1-based, with
    # M1 = (N - C) / 2 and M2 = (N + C) / 2; as 0-based indexes:
    lo_rank = math.floor((m - c) / 2.0) - 1
    hi_rank = math.ceil((m + c) / 2.0)
    lo = slopes[max(0, min(m - 1, lo_rank))]
    hi = slopes[max(0, min(m - 1, hi_rank))]
    return Trend(est, lo, hi, n)
