"""A test's spec: what to measure and judge, parsed from its markers and the settings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from pytest_memwatch.base.verdict import VerdictSource
from pytest_memwatch.config import markers
from pytest_memwatch.config.settings import Settings
from pytest_memwatch.config.values import Repeat, RepeatBudget
from pytest_memwatch.engine.plan import RepeatPlan
from pytest_memwatch.engine.verdicts import MEMORY_METRICS, RESOURCE_METRICS


@dataclass(frozen=True)
class MarkCall:
    """A marker as applied to a test, as plain data."""

    name: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]


@dataclass
class TestSpec:
    """What to measure and judge for one test, from its markers and the settings."""

    __test__ = False

    nodeid: str
    skip_reason: str | None = None
    max_growth: markers.MaxGrowthValues | None = None
    max_growth_source: VerdictSource = "marker"
    max_memory: markers.MaxMemoryValues | None = None
    no_leaks: markers.NoLeaksValues | None = None
    leak_source: VerdictSource = "marker"
    repeat: Repeat | None = None
    # How long a leak verdict may extend its runs (None: up to 4x RUNS, untimed).
    budget: RepeatBudget | None = None
    resources: bool = False
    # Where the resource check was asked for, and the marker's own ignore rules.
    resources_source: VerdictSource = "option"
    resources_ignore: tuple[str, ...] = ()
    soak: markers.SoakValues | None = None
    compare_fail: tuple[str, ...] = ()
    marker_names: list[str] = field(default_factory=list)

    @property
    def measured(self) -> bool:
        return self.skip_reason is None

    @property
    def wants_leak_verdict(self) -> bool:
        return self.no_leaks is not None or self.repeat is not None

    @property
    def has_verdict(self) -> bool:
        return (
            self.wants_leak_verdict
            or self.max_growth is not None
            or self.max_memory is not None
            or self.resources
        )

    def plan(self) -> RepeatPlan | None:
        """The repetition plan, or ``None`` for a single ordinary run.

        A soak test is never repeated: it is judged by its own trend over time,
        and repeating an eight-hour run for a leak verdict would be absurd.
        """
        if self.soak is not None:
            return None
        warmup, runs = 0, 1
        if self.max_growth is not None:
            warmup, runs = self.max_growth["warmup"], self.max_growth["runs"]
        if self.no_leaks is not None:
            warmup = max(warmup, self.no_leaks["warmup"])
            runs = max(runs, self.no_leaks["runs"])
        elif self.repeat is not None:
            warmup = max(warmup, self.repeat.warmup)
            runs = max(runs, self.repeat.runs)
        if warmup == 0 and runs == 1:
            return None
        metrics: Sequence[str] = MEMORY_METRICS
        if self.resources:
            metrics = (*MEMORY_METRICS, *RESOURCE_METRICS)
        budget = self.budget if self.wants_leak_verdict else None
        return RepeatPlan(
            warmup,
            runs,
            metrics=metrics,
            extend=self.wants_leak_verdict,
            budget=budget.seconds if budget is not None else None,
            budget_multiple=budget.multiple if budget is not None else None,
            # Only a leak verdict screens: a max_growth budget takes the median
            # of exactly measured runs.
            screen=self.wants_leak_verdict,
        )


def build_spec(nodeid: str, calls: Sequence[MarkCall], settings: Settings) -> TestSpec:
    """Parse a test's markers against the settings; raise MarkerError with the full message."""
    spec = TestSpec(nodeid)
    seen: set[str] = set()
    opted_out = any(c.name == "memwatch_skip" for c in calls)
    for call in calls:
        schema = markers.SCHEMAS.get(call.name)
        if schema is None:
            continue
        try:
            # Every marker is checked, the ones a closer marker overrides too:
            # a bad value is reported wherever it is written.
            values = schema.parse(call.args, call.kwargs)
        except markers.MarkerError as exc:
            raise markers.MarkerError(
                markers.error_message(
                    nodeid, call.name, call.args, call.kwargs, str(exc), opted_out=opted_out
                )
            ) from None
        if call.name in seen:
            # The closest marker wins, as pytest's get_closest_marker does
            # (calls come closest first: case, function, class, module).
            continue
        seen.add(call.name)
        spec.marker_names.append(call.name)
        if call.name == "memwatch_skip":
            spec.skip_reason = values["reason"] or "memwatch_skip"
        # The schema parsed exactly its parameters: the values have its shape.
        elif call.name == "max_growth":
            spec.max_growth = cast(markers.MaxGrowthValues, values)
        elif call.name == "max_memory":
            spec.max_memory = cast(markers.MaxMemoryValues, values)
        elif call.name == "no_leaks":
            no_leaks = spec.no_leaks = cast(markers.NoLeaksValues, values)
            spec.resources = spec.resources or no_leaks["resources"]
            if no_leaks["resources"]:
                spec.resources_source = "marker"
            spec.resources_ignore = no_leaks["ignore"]
        elif call.name == "soak":
            spec.soak = cast(markers.SoakValues, values)
        spec.compare_fail += tuple(values.get("compare_fail", ()) or ())
    if spec.max_growth is None and settings.max_growth is not None:
        spec.max_growth = {"limit": settings.max_growth, "warmup": 0, "runs": 1}
        spec.max_growth_source = "option"
    if spec.no_leaks is None and settings.repeat is not None:
        spec.repeat = settings.repeat
        spec.leak_source = "option"
    spec.resources = spec.resources or settings.resources
    spec.budget = settings.repeat_budget
    return spec
