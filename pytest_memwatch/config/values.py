"""The values settings take: their types, and a parser for each, raising ValueError.

:mod:`pytest_memwatch.config.settings` names each parser in its table and turns
the ValueError into a usage error that says which setting, and where from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pytest_memwatch.base.limits import MAX_RUNS, MAX_WARMUP, has_control_chars
from pytest_memwatch.base.units import UnitError, parse_duration, parse_size
from pytest_memwatch.config.rules import parse_rule
from pytest_memwatch.config.tolerances import parse_tolerance


def parse_bool(value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true/false (also 1/0, yes/no, on/off)")


@dataclass(frozen=True)
class Repeat:
    warmup: int
    runs: int

    def __str__(self) -> str:
        return f"{self.warmup}:{self.runs}"


DEFAULT_REPEAT = Repeat(2, 5)


def parse_repeat(value: str) -> Repeat:
    text = value.strip()
    if text == "":
        return DEFAULT_REPEAT
    parts = text.split(":")
    if len(parts) != 2:
        raise ValueError("expected WARMUP:RUNS, e.g. 2:5")
    try:
        warmup, runs = int(parts[0]), int(parts[1])
    except ValueError:
        raise ValueError("expected two whole numbers WARMUP:RUNS, e.g. 2:5") from None
    if not 0 <= warmup <= MAX_WARMUP:
        raise ValueError(f"WARMUP must be from 0 to {MAX_WARMUP}, e.g. 2:5")
    if not 1 <= runs <= MAX_RUNS:
        raise ValueError(f"RUNS must be from 1 to {MAX_RUNS}, e.g. 2:5")
    return Repeat(warmup, runs)


@dataclass(frozen=True)
class RepeatBudget:
    """How long a repeated test may keep collecting evidence: seconds, or a multiple.

    ``seconds`` is wall time for all of a test's runs; ``multiple`` is relative to
    the time of the test's first run (``"20x"``). The requested warmup and runs
    always run; only the extensions are bounded.
    """

    seconds: float | None = None
    multiple: float | None = None

    def __str__(self) -> str:
        return f"{self.multiple:g}x" if self.multiple is not None else f"{self.seconds:g}s"


DEFAULT_REPEAT_BUDGET = RepeatBudget(seconds=1.0)
REPEAT_BUDGET_EXAMPLE = '"1s", "500ms", "30s" or "20x" (20 times the first run)'


def parse_repeat_budget(value: str) -> RepeatBudget:
    text = value.strip().lower()
    if text.endswith("x"):
        try:
            multiple = float(text[:-1])
        except ValueError:
            multiple = -1.0
        if not multiple > 0 or multiple == float("inf"):
            raise ValueError(f"expected a positive multiple before x, e.g. {REPEAT_BUDGET_EXAMPLE}")
        return RepeatBudget(multiple=multiple)
    try:
        return RepeatBudget(seconds=parse_duration_value(text))
    except ValueError:
        expected = f"expected a duration or a multiple, e.g. {REPEAT_BUDGET_EXAMPLE}"
        raise ValueError(expected) from None


def parse_size_value(value: str) -> int:
    try:
        # An option value is always a string; a bare number still means MiB.
        stripped = value.strip()
        return parse_size(number_or_text(stripped))
    except UnitError as exc:
        raise ValueError(str(exc)) from None


def number_or_text(text: str) -> float | str:
    # "1e3" is a number only float() reads; "999...9" (400 digits) is one float()
    # turns into inf, so the parser gets the text and quotes it in its message.
    if is_number(text) and math.isfinite(float(text)):
        return float(text)
    return text


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_duration_value(value: str) -> float:
    try:
        stripped = value.strip()
        return parse_duration(number_or_text(stripped))
    except UnitError as exc:
        raise ValueError(str(exc)) from None


def parse_frames(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        # int()'s own message ("invalid literal for int() with base 10") says nothing useful.
        n = -1
    if n < 0 or n > 100:
        raise ValueError("expected a number of frames from 0 (no attribution) to 100, e.g. 10")
    return n


def parse_count(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = -1
    if not 0 <= n <= 100_000:
        raise ValueError("expected a whole number from 0 to 100000, e.g. 10")
    return n


def parse_path(value: str) -> str:
    if not value.strip():
        raise ValueError("expected a file path, e.g. memwatch.json")
    return value


def parse_name(value: str) -> str:
    v = value.strip()
    if not v or any(c in v for c in "/\\:\0") or v.startswith("."):
        raise ValueError(
            "expected a name without slashes or colons, not starting with a dot, e.g. main"
        )
    if has_control_chars(v):
        raise ValueError("expected a name without newlines or other control characters, e.g. main")
    return v


def parse_optional_name(value: str) -> str:
    # "--memwatch-compare" with no value compares with the latest saved run.
    return value.strip()


def parse_tolerance_text(value: str) -> str:
    # Parsed as the comparison will, so a typo is a usage error before any test runs.
    parse_tolerance(value)
    return value.strip()


def parse_ignore_rule(value: str) -> str:
    # Checked here, so a typo in the ini file is a usage error before any test
    # runs; the engine parses the validated text again when it needs the rule.
    return str(parse_rule(value))


def parse_grace(value: str) -> float:
    stripped = value.strip()
    if is_number(stripped) and float(stripped) == 0:
        return 0.0
    try:
        return parse_duration_value(stripped)
    except ValueError:
        raise ValueError('expected "1s", "250ms" or 0 for no wait') from None
