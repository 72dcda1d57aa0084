"""The plan of a soak test: its duration, sampling interval, warmup and growth budget.

:func:`make_plan` turns the marker's parsed values and ``--memwatch-soak-duration``
into a :class:`SoakPlan`, or raises a :class:`SoakError` naming the bad value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pytest_memwatch.base.units import format_seconds

# A soak capped by --memwatch-soak-duration keeps at least this many samples.
MIN_CAPPED_SAMPLES = 20


class SoakError(ValueError):
    """A soak test that cannot run as asked (bad values, unusable samples file).

    The message is complete: it names the test or the file, the problem and the fix.
    """


# -- the plan --------------------------------------------------------------------


@dataclass(frozen=True)
class SoakPlan:
    """How one soak test runs: all times in seconds, the limit in bytes per second."""

    nodeid: str
    duration_s: float
    interval_s: float
    warmup_s: float
    limit_rate: float | None = None
    # The marker's own duration when --memwatch-soak-duration shortened it.
    capped_from: float | None = None

    def header_fields(self) -> dict[str, Any]:
        return {
            "nodeid": self.nodeid,
            "duration_s": self.duration_s,
            "interval_s": self.interval_s,
            "warmup_s": self.warmup_s,
            "limit_rate": self.limit_rate,
            "capped_from": self.capped_from,
        }


def make_plan(nodeid: str, values: Mapping[str, Any], *, cap: float | None = None) -> SoakPlan:
    """The plan for one test from its parsed marker values (see ``markers.SOAK``).

    ``cap`` is ``--memwatch-soak-duration``: the duration becomes the shorter of
    the two. A capped run keeps its warmup in seconds (start-up costs do not
    shrink with the run) but at most half the run, and samples at least
    :data:`MIN_CAPPED_SAMPLES` times, so that an 8-hour nightly test still gives
    a trend in a 10-minute pull-request run. Uncapped, an interval or a warmup
    that does not fit in the duration is an error.
    """
    duration = float(values["duration"])
    interval = float(values["interval"])
    kind, amount = values["warmup"]
    warmup = duration * float(amount) if kind == "fraction" else float(amount)
    limit = values.get("max_growth_rate")
    capped_from: float | None = None
    if cap is not None and cap < duration:
        capped_from = duration
        if kind == "fraction":
            warmup = cap * float(amount)
        warmup = min(warmup, cap / 2)
        interval = min(interval, cap / MIN_CAPPED_SAMPLES)
        duration = cap
    else:
        if interval > duration:
            raise SoakError(
                f"interval {format_seconds(interval)} is longer than the duration "
                f"{format_seconds(duration)}: no sample would fall inside the run"
            )
        if warmup >= duration:
            raise SoakError(
                f"warmup {format_seconds(warmup)} is not shorter than the duration "
                f"{format_seconds(duration)}: nothing would be left to judge"
            )
    return SoakPlan(
        nodeid=nodeid,
        # Microseconds: 10 % of 3 s is 0.3, not 0.30000000000000004, in files and reports.
        duration_s=round(duration, 6),
        interval_s=round(interval, 6),
        warmup_s=round(warmup, 6),
        limit_rate=None if limit is None else float(limit),
        capped_from=capped_from,
    )
