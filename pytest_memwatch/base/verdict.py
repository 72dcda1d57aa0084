"""The outcome of one check on one test, shared by every layer that judges.

A verdict is plain data: the engine, the resource watch, the soak analysis and
the ``memwatch`` fixture make them, and the reports render their JSON form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# What was checked: a budget, the repeated-run leak check, resources left
# behind, an object the fixture expected to be freed, or a soak trend.
VerdictKind = Literal["max_growth", "max_memory", "leak", "resources", "collected", "soak"]
# Where the check was asked for.
VerdictSource = Literal["marker", "option", "fixture", "api"]


@dataclass
class Verdict:
    """The outcome of one check on one test. ``to_dict`` is its JSON form."""

    kind: VerdictKind
    source: VerdictSource
    passed: bool
    message: str
    metric: str | None = None
    limit: float | None = None
    measured: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source,
            "passed": self.passed,
            "message": self.message,
            "metric": self.metric,
            "limit": self.limit,
            "measured": self.measured,
            "details": self.details,
        }
