"""Parsing and formatting of sizes, durations and rates.

The user-facing contract (docs/reference.md): a bare number is MiB, strings
carry units (``"512 KiB"``, ``"2MB"``, ``"1.5 GiB"``, ``"64B"``); decimal and
binary prefixes are both accepted. Durations are ``"90s"``, ``"30m"``, ``"8h"``;
rates are a size per duration (``"1 MiB/h"``).
"""

from __future__ import annotations

import math
import re

from pytest_memwatch.base.limits import MAX_DURATION, MAX_SIZE, short_repr

MiB = 1024 * 1024

_SIZE_UNITS: dict[str, int] = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
    # Single-letter shorthands read as binary, as `ls -h` and `free -h` print them.
    "k": 1024,
    "m": 1024**2,
    "g": 1024**3,
}
_DURATION_UNITS: dict[str, float] = {
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}

_NUMBER = r"(?P<num>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_SIZE_RE = re.compile(rf"^\s*{_NUMBER}\s*(?P<unit>[a-zA-Z]*)\s*$")
_DURATION_RE = re.compile(rf"^\s*{_NUMBER}\s*(?P<unit>[a-zA-Z]*)\s*$")

SIZE_EXAMPLE = '50 (MiB) or "512 KiB", "2MB", "1.5 GiB", "64B"'
DURATION_EXAMPLE = '"90s", "30m", "8h" or a number of seconds'
RATE_EXAMPLE = '"1 MiB/h", "512 KiB/min"'


class UnitError(ValueError):
    """A size, duration or rate that cannot be parsed; the message says why."""


def parse_size(value: object) -> int:
    """Return a size in bytes, from 0 to :data:`~pytest_memwatch.base.limits.MAX_SIZE` (8 EiB).

    >>> parse_size(50)
    52428800
    >>> parse_size("512 KiB")
    524288
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise UnitError(
            f"expected a size, got {type(value).__name__} {short_repr(value)}; use {SIZE_EXAMPLE}"
        )
    if isinstance(value, int):
        # Exact integer arithmetic: float(10**400) would raise OverflowError.
        if value < 0:
            raise UnitError(
                f"expected a non-negative size, got {short_repr(value)}; use {SIZE_EXAMPLE}"
            )
        return _bounded_size(value * MiB, value)
    if isinstance(value, float):
        if not math.isfinite(value) or value < 0:
            raise UnitError(
                f"expected a non-negative size, got {short_repr(value)}; use {SIZE_EXAMPLE}"
            )
        return _bounded_size(value * MiB, value)
    match = _SIZE_RE.match(value)
    if not match:
        raise UnitError(f"cannot read {short_repr(value)} as a size; use {SIZE_EXAMPLE}")
    unit = match["unit"].lower() or "mib"
    if unit not in _SIZE_UNITS:
        raise UnitError(
            f"unknown size unit {short_repr(match['unit'])} in {short_repr(value)}; "
            f"use {SIZE_EXAMPLE}"
        )
    # float("9" * 400) is inf, and round(inf) raises: bound the number first.
    return _bounded_size(float(match["num"]) * _SIZE_UNITS[unit], value)


def _bounded_size(nbytes: float, given: object) -> int:
    if not nbytes <= MAX_SIZE:  # also catches inf
        raise UnitError(
            f"size {short_repr(given)} is too large (at most 8 EiB); use {SIZE_EXAMPLE}"
        )
    return round(nbytes)


def parse_duration(value: object) -> float:
    """Return a duration in seconds (a bare number is seconds), at most one year."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise UnitError(
            f"expected a duration, got {type(value).__name__} {short_repr(value)}; "
            f"use {DURATION_EXAMPLE}"
        )
    if isinstance(value, int):
        # float(10**400) raises OverflowError: compare as integers first.
        seconds = float(value) if abs(value) <= MAX_DURATION else math.inf
    elif isinstance(value, float):
        seconds = value
    else:
        match = _DURATION_RE.match(value)
        if not match:
            raise UnitError(
                f"cannot read {short_repr(value)} as a duration; use {DURATION_EXAMPLE}"
            )
        unit = match["unit"].lower() or "s"
        if unit not in _DURATION_UNITS:
            raise UnitError(
                f"unknown duration unit {short_repr(match['unit'])} in {short_repr(value)}; "
                f"use {DURATION_EXAMPLE}"
            )
        seconds = float(match["num"]) * _DURATION_UNITS[unit]
    if math.isnan(seconds) or seconds <= 0:
        raise UnitError(
            f"expected a positive duration, got {short_repr(value)}; use {DURATION_EXAMPLE}"
        )
    if seconds > MAX_DURATION:
        raise UnitError(
            f"duration {short_repr(value)} is too long (at most 366 days); use {DURATION_EXAMPLE}"
        )
    return seconds


def parse_rate(value: object) -> float:
    """Return a growth rate in bytes per second from ``"SIZE/DURATION-UNIT"``."""
    if not isinstance(value, str) or "/" not in value:
        raise UnitError(f"cannot read {short_repr(value)} as a rate; use {RATE_EXAMPLE}")
    size_part, _, per = value.partition("/")
    per = per.strip()
    # "1 MiB/h" means per one hour: allow a bare unit after the slash.
    if per and per[0].isalpha():
        per = "1" + per
    try:
        return parse_size(size_part) / parse_duration(per)
    except UnitError as exc:
        # Quote the whole rate: an error about one half alone ("'1fortnight'")
        # does not say which value was wrong.
        raise UnitError(
            f"cannot read {short_repr(value)} as a rate ({exc}); use {RATE_EXAMPLE}"
        ) from None


def format_size(n: float | None, *, signed: bool = False) -> str:
    """Human-readable binary size: ``format_size(1536) == '1.5 KiB'``."""
    if n is None:
        return "n/a"
    sign = "-" if n < 0 else ("+" if signed and n > 0 else "")
    v = abs(float(n))
    for unit in ("B", "KiB", "MiB", "GiB"):
        if v < 1024 or unit == "GiB":
            if unit == "B":
                return f"{sign}{v:.0f} B"
            return f"{sign}{v:.1f} {unit}"
        v /= 1024
    raise AssertionError("unreachable")


def format_count(n: float | None, *, signed: bool = False) -> str:
    """A count with thousands separators: ``format_count(12345) == '12,345'``."""
    if n is None:
        return "n/a"
    return f"{n:+,.0f}" if signed and n else f"{n:,.0f}"


def format_rate(bytes_per_s: float | None) -> str:
    """A growth rate as people state it, per hour: ``format_rate(291.27) == '+1.0 MiB/h'``."""
    if bytes_per_s is None:
        return "n/a"
    return f"{format_size(bytes_per_s * 3600, signed=True)}/h"


def format_duration(seconds: float) -> str:
    """Whole seconds, as a soak's length reads: ``90s`` is ``1m30s``, ``2h05m`` past an hour."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def format_seconds(seconds: float | None) -> str:
    """A soak's interval, warmup or time axis: ``0.25s`` below 10 s, ``2m05s`` above.

    :func:`format_duration` rounds to whole seconds: an interval of 0.25 s read "0s".
    """
    if seconds is None:
        return "n/a"
    v = float(seconds)
    return f"{v:.2f}".rstrip("0").rstrip(".") + "s" if v < 10 else format_duration(v)


def format_test_seconds(seconds: float | None) -> str:
    """A test's time: milliseconds below 10 s (``0.042s``), :func:`format_duration` above."""
    if seconds is None:
        return "n/a"
    return f"{seconds:.3f}s" if seconds < 10 else format_duration(float(seconds))


def plural(count: int, noun: str) -> str:
    """``1 test``, ``2 tests``: a count with its noun (regular plurals only)."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
