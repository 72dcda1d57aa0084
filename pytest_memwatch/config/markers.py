"""Marker schemas: one declaration per marker gives its ``--markers`` line, its
docs entry and its pure parser. Nothing here imports pytest; the plugin hands
``args``/``kwargs`` in and gets plain values or a :class:`MarkerError` out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict

from pytest_memwatch.base.limits import MAX_RUNS, MAX_WARMUP, short_repr
from pytest_memwatch.base.units import (
    SIZE_EXAMPLE,
    UnitError,
    parse_duration,
    parse_rate,
    parse_size,
)
from pytest_memwatch.config.rules import parse_rule
from pytest_memwatch.config.tolerances import parse_tolerance


class MarkerError(ValueError):
    """A marker whose arguments cannot be used; the message is the full explanation."""


# How a parameter's value is read: a size in bytes, a duration in seconds, a
# rate in bytes per second, a percentage or duration ("fraction"), tolerance
# expressions or resource ignore rules (tuples of their text), or as is.
ParamKind = Literal["size", "int", "bool", "str", "duration", "rate", "fraction", "exprs", "rules"]


@dataclass(frozen=True)
class Param:
    name: str
    kind: ParamKind
    default: Any = None
    positional: bool = False
    required: bool = False
    minimum: int | None = None
    maximum: int | None = None
    doc: str = ""


@dataclass(frozen=True)
class MarkerSchema:
    name: str
    params: tuple[Param, ...]
    doc: str
    example: str

    def signature(self) -> str:
        pos = [p for p in self.params if p.positional]
        kw = [p for p in self.params if not p.positional]
        parts = [p.name if p.required else f"{p.name}={p.default!r}" for p in pos]
        if kw:
            parts.append("*")
            parts += [f"{p.name}={p.default!r}" for p in kw]
        return f"{self.name}({', '.join(parts)})"

    def line(self) -> str:
        """The text registered with ``config.addinivalue_line("markers", ...)``."""
        return f"{self.signature()}: {self.doc} Example: {self.example}"

    def parse(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        pos = [p for p in self.params if p.positional]
        if len(args) > len(pos):
            raise MarkerError(f"takes at most {len(pos)} positional argument(s), got {len(args)}")
        known = {p.name for p in self.params}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise MarkerError(
                f"unknown keyword argument(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known)) or 'none'}"
            )
        values: dict[str, Any] = {}
        for i, p in enumerate(self.params):
            if p.positional and i < len(args):
                if p.name in kwargs:
                    raise MarkerError(f"{p.name} given both by position and by keyword")
                raw = args[i]
            elif p.name in kwargs:
                raw = kwargs[p.name]
            elif p.required:
                raise MarkerError(f"missing required argument {p.name}")
            else:
                # Defaults go through the same conversion as given values, or a
                # defaulted soak duration would stay the string "10m".
                values[p.name] = None if p.default is None else _convert(p, p.default)
                continue
            values[p.name] = _convert(p, raw)
        return values


def _convert(p: Param, raw: Any) -> Any:
    shown = short_repr(raw)  # quoted in messages: a 5000-character value is cut short
    try:
        if p.kind == "size":
            return parse_size(raw)
        if p.kind == "duration":
            return parse_duration(raw)
        if p.kind == "rate":
            return parse_rate(raw)
    except UnitError as exc:
        raise MarkerError(f"{p.name}={shown}: {exc}") from None
    if p.kind == "int":
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise MarkerError(f"{p.name}={shown}: expected a whole number, e.g. {p.name}=3")
        if p.minimum is not None and raw < p.minimum:
            raise MarkerError(
                f"{p.name}={shown}: must be {p.minimum} or more, e.g. {p.name}={max(p.minimum, 3)}"
            )
        if p.maximum is not None and raw > p.maximum:
            raise MarkerError(
                f"{p.name}={shown}: must be {p.maximum} or less, "
                f"e.g. {p.name}={max(p.minimum or 0, 3)}"
            )
        return raw
    if p.kind == "bool":
        if not isinstance(raw, bool):
            raise MarkerError(f"{p.name}={shown}: expected True or False")
        return raw
    if p.kind == "str":
        if not isinstance(raw, str):
            raise MarkerError(f"{p.name}={shown}: expected a string")
        return raw
    if p.kind == "fraction":
        # "10%" of the soak duration, or a duration such as "5m".
        if isinstance(raw, str) and raw.strip().endswith("%"):
            try:
                pct = float(raw.strip()[:-1])
            except ValueError:
                raise MarkerError(f"{p.name}={shown}: expected a percentage like '10%'") from None
            if not 0 <= pct < 100:
                raise MarkerError(f"{p.name}={shown}: percentage must be from 0 to below 100")
            return ("fraction", pct / 100.0)
        try:
            return ("seconds", parse_duration(raw))
        except UnitError as exc:
            raise MarkerError(f"{p.name}={shown}: {exc} or a percentage like '10%'") from None
    if p.kind == "exprs":
        items = [raw] if isinstance(raw, str) else raw
        if not isinstance(items, (list, tuple)) or not all(isinstance(x, str) for x in items):
            raise MarkerError(f"{p.name}={shown}: expected 'growth:10%' or a list of them")
        for item in items:
            try:
                parse_tolerance(item)
            except ValueError as exc:
                raise MarkerError(f"{p.name}={short_repr(item)}: {exc}") from None
        return tuple(items)
    if p.kind == "rules":
        items = [raw] if isinstance(raw, str) else raw
        if not isinstance(items, (list, tuple)) or not all(isinstance(x, str) for x in items):
            raise MarkerError(
                f"{p.name}={shown}: expected 'KIND:GLOB' or a list of them, "
                f"e.g. {p.name}=['thread:worker-*']"
            )
        rules = []
        for item in items:
            try:
                rules.append(str(parse_rule(item)))
            except ValueError as exc:
                raise MarkerError(f"{p.name}={short_repr(item)}: {exc}") from None
        return tuple(rules)
    raise AssertionError(f"unknown parameter kind {p.kind}")


_WARMUP_DOC = "discarded runs before measuring"
_RUNS_DOC = "measured runs"
_COMPARE = Param("compare_fail", "exprs", (), doc="this test's own --memwatch-compare-fail rules")

MAX_GROWTH = MarkerSchema(
    "max_growth",
    (
        Param("limit", "size", positional=True, required=True, doc="bytes left per call"),
        Param("warmup", "int", 0, minimum=0, maximum=MAX_WARMUP, doc=_WARMUP_DOC),
        Param("runs", "int", 1, minimum=1, maximum=MAX_RUNS, doc=_RUNS_DOC),
        _COMPARE,
    ),
    "memory the test leaves behind per call must stay under limit "
    f"(bare number = MiB; {SIZE_EXAMPLE}).",
    '@pytest.mark.max_growth("512 KiB", warmup=1, runs=3)',
)
MAX_MEMORY = MarkerSchema(
    "max_memory",
    (
        Param("limit", "size", positional=True, required=True, doc="peak above start"),
        _COMPARE,
    ),
    "peak memory during the test, above what the process held at its start, must stay under limit.",
    "@pytest.mark.max_memory(200)",
)
NO_LEAKS = MarkerSchema(
    "no_leaks",
    (
        Param("warmup", "int", 2, minimum=0, maximum=MAX_WARMUP, doc=_WARMUP_DOC),
        Param("runs", "int", 5, minimum=2, maximum=MAX_RUNS, doc=_RUNS_DOC),
        Param(
            "resources",
            "bool",
            True,
            doc="also fail on threads, files, sockets, processes, temp files or tasks left behind",
        ),
        Param("ignore", "rules", (), doc="this test's own KIND:GLOB resource ignore rules"),
        _COMPARE,
    ),
    "re-run the test and fail it when memory or resources grow run after run.",
    "@pytest.mark.no_leaks(warmup=2, runs=8)",
)
MEMWATCH_SKIP = MarkerSchema(
    "memwatch_skip",
    (Param("reason", "str", "", positional=True, doc="why this test is not measured"),),
    "do not measure this test, whatever the options say.",
    '@pytest.mark.memwatch_skip("spawns a JVM")',
)
SOAK = MarkerSchema(
    "soak",
    (
        Param("duration", "duration", "10m", positional=True, doc="how long to run"),
        Param("interval", "duration", "30s", doc="sampling interval"),
        Param("max_growth_rate", "rate", None, doc="steady-state growth limit"),
        Param("warmup", "fraction", "10%", doc="start of the run excluded from the trend"),
    ),
    "a long-running test sampled over time and judged by its growth rate; skipped "
    "unless soak runs are asked for (--memwatch-soak or -m soak).",
    '@pytest.mark.soak("8h", interval="30s", max_growth_rate="1 MiB/h", warmup="10%")',
)


# What each marker's schema parses to (the keys are its parameters).


class MaxGrowthValues(TypedDict):
    limit: int
    warmup: int
    runs: int
    # Absent when the budget comes from --memwatch-max-growth, not a marker.
    compare_fail: NotRequired[tuple[str, ...]]


class MaxMemoryValues(TypedDict):
    limit: int
    compare_fail: tuple[str, ...]


class NoLeaksValues(TypedDict):
    warmup: int
    runs: int
    resources: bool
    ignore: tuple[str, ...]
    compare_fail: tuple[str, ...]


class SoakValues(TypedDict):
    duration: float
    interval: float
    max_growth_rate: float | None
    # ("fraction", 0.1) for "10%", ("seconds", 60.0) for "1m".
    warmup: tuple[Literal["fraction", "seconds"], float]


SCHEMAS: dict[str, MarkerSchema] = {
    s.name: s for s in (MAX_GROWTH, MAX_MEMORY, NO_LEAKS, MEMWATCH_SKIP, SOAK)
}


def describe_call(name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    parts = [short_repr(a) for a in args] + [f"{k}={short_repr(v)}" for k, v in kwargs.items()]
    return f"@pytest.mark.{name}({', '.join(parts)})"


def error_message(
    nodeid: str,
    name: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    problem: str,
    *,
    opted_out: bool = False,
) -> str:
    """The full message for a bad marker; ``opted_out`` when the test has ``memwatch_skip``."""
    schema = SCHEMAS[name]
    if opted_out and name != "memwatch_skip":
        # Advising memwatch_skip to a test that has it reads as a contradiction.
        way_out = (
            "memwatch_skip does not exempt a test from marker checks (a typo would "
            "surface only once the opt-out is removed): fix the marker, or remove it "
            "from this test, its class or its module."
        )
    else:
        way_out = "To opt this test out: @pytest.mark.memwatch_skip(reason)."
    return (
        f"memwatch: {nodeid}: bad marker {describe_call(name, args, kwargs)}: {problem}. "
        f"Expected {schema.signature()}, e.g. {schema.example}. " + way_out
    )


def marker_name(line: str) -> str:
    """The name a ``markers`` ini line registers: ``"soak(duration): ..."`` -> ``"soak"``."""
    return line.split(":", 1)[0].split("(", 1)[0].strip()


def foreign_names(lines: Sequence[str]) -> frozenset[str]:
    """Names memwatch claims that ``lines`` (the ``markers`` ini value) register otherwise.

    memwatch's own lines are exactly :meth:`MarkerSchema.line`; any other line for
    one of its names means the project registered that marker itself, and the
    marker stays the project's: memwatch does not read it.
    """
    ours = {schema.line() for schema in SCHEMAS.values()}
    return frozenset(
        name
        for line in lines
        if line.strip() not in ours and (name := marker_name(line)) in SCHEMAS
    )
