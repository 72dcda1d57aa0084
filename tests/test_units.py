"""Sizes, durations and rates: the units every marker and option is written in."""

from __future__ import annotations

import pytest

from pytest_memwatch.base.units import (
    MiB,
    UnitError,
    format_count,
    format_duration,
    format_rate,
    format_seconds,
    format_size,
    format_test_seconds,
    plural,
    parse_duration,
    parse_rate,
    parse_size,
)

SIZE_USE = 'use 50 (MiB) or "512 KiB", "2MB", "1.5 GiB", "64B"'
DURATION_USE = 'use "90s", "30m", "8h" or a number of seconds'
RATE_USE = 'use "1 MiB/h", "512 KiB/min"'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # A bare number is MiB, as in the seeds' memory_limit(500).
        (50, 50 * MiB),
        (0, 0),
        (0.5, MiB // 2),
        ("50", 50 * MiB),
        ("512 KiB", 512 * 1024),
        ("512KiB", 512 * 1024),
        ("2MB", 2_000_000),
        ("2 mb", 2_000_000),
        ("1.5 GiB", 3 * 1024**3 // 2),
        ("64B", 64),
        ("1 kB", 1000),
        ("1 TiB", 1024**4),
        ("3k", 3 * 1024),
        ("2M", 2 * MiB),
        (".5 KiB", 512),
        ("  7 KiB  ", 7 * 1024),
    ],
)
def test_parse_size_accepts_the_documented_forms(value: object, expected: int) -> None:
    assert parse_size(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ten megs", f"cannot read 'ten megs' as a size; {SIZE_USE}"),
        ("-5 MiB", f"cannot read '-5 MiB' as a size; {SIZE_USE}"),
        ("", f"cannot read '' as a size; {SIZE_USE}"),
        ("5 XB", f"unknown size unit 'XB' in '5 XB'; {SIZE_USE}"),
        (-5, f"expected a non-negative size, got -5; {SIZE_USE}"),
        (float("nan"), f"expected a non-negative size, got nan; {SIZE_USE}"),
        (float("inf"), f"expected a non-negative size, got inf; {SIZE_USE}"),
        ([1, 2], f"expected a size, got list [1, 2]; {SIZE_USE}"),
        (None, f"expected a size, got NoneType None; {SIZE_USE}"),
        # bool is an int subclass; True must not silently mean 1 MiB.
        (True, f"expected a size, got bool True; {SIZE_USE}"),
    ],
)
def test_parse_size_errors_say_what_and_how(value: object, message: str) -> None:
    with pytest.raises(UnitError) as info:
        parse_size(value)
    assert str(info.value) == message


def test_unit_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_size("lots")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("90s", 90.0),
        ("30m", 1800.0),
        ("8h", 28800.0),
        ("2 min", 120.0),
        ("1d", 86400.0),
        ("250ms", 0.25),
        ("15", 15.0),
        (15, 15.0),
        (0.5, 0.5),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", f"cannot read 'abc' as a duration; {DURATION_USE}"),
        ("-1s", f"cannot read '-1s' as a duration; {DURATION_USE}"),
        ("5 fortnights", f"unknown duration unit 'fortnights' in '5 fortnights'; {DURATION_USE}"),
        ("0s", f"expected a positive duration, got '0s'; {DURATION_USE}"),
        (0, f"expected a positive duration, got 0; {DURATION_USE}"),
        (None, f"expected a duration, got NoneType None; {DURATION_USE}"),
        (True, f"expected a duration, got bool True; {DURATION_USE}"),
    ],
)
def test_parse_duration_errors(value: object, message: str) -> None:
    with pytest.raises(UnitError) as info:
        parse_duration(value)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("value", "bytes_per_second"),
    [
        ("1 MiB/h", MiB / 3600),
        ("512 KiB/min", 512 * 1024 / 60),
        ("1 MiB/30m", MiB / 1800),
        ("2MB/s", 2_000_000.0),
        ("10/h", 10 * MiB / 3600),
        (" 1 MiB / h ", MiB / 3600),
    ],
)
def test_parse_rate(value: str, bytes_per_second: float) -> None:
    assert parse_rate(value) == pytest.approx(bytes_per_second)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1 MiB", f"cannot read '1 MiB' as a rate; {RATE_USE}"),
        (5, f"cannot read 5 as a rate; {RATE_USE}"),
        (
            "lots/h",
            f"cannot read 'lots/h' as a rate (cannot read 'lots' as a size; {SIZE_USE}); "
            f"{RATE_USE}",
        ),
        (
            # The whole rate is quoted, not only the half that failed.
            "1 MiB/fortnight",
            "cannot read '1 MiB/fortnight' as a rate (unknown duration unit 'fortnight' "
            f"in '1fortnight'; {DURATION_USE}); {RATE_USE}",
        ),
    ],
)
def test_parse_rate_errors(value: object, message: str) -> None:
    with pytest.raises(UnitError) as info:
        parse_rate(value)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("n", "signed", "text"),
    [
        (0, False, "0 B"),
        (0, True, "0 B"),
        (1023, False, "1023 B"),
        (1536, False, "1.5 KiB"),
        (1.5 * MiB, False, "1.5 MiB"),
        (-2048, False, "-2.0 KiB"),
        (100, True, "+100 B"),
        (-100, True, "-100 B"),
        (5 * 1024**3, False, "5.0 GiB"),
        # GiB is the largest unit: a TiB prints as 1024 GiB rather than overflowing.
        (2 * 1024**4, False, "2048.0 GiB"),
        (None, False, "n/a"),
    ],
)
def test_format_size(n: float | None, signed: bool, text: str) -> None:
    assert format_size(n, signed=signed) == text


def test_format_size_round_trips_through_parse_size() -> None:
    for n in (1536, 3 * MiB, 7 * 1024**3):
        assert parse_size(format_size(n)) == n


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (-3, "0s"), (59, "59s"), (90, "1m30s"), (3599, "59m59s"), (3700, "1h01m")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("n", "signed", "text"),
    [(None, False, "n/a"), (0, False, "0"), (0, True, "0"), (12345, False, "12,345"),
     (12345, True, "+12,345"), (-7, True, "-7"), (2.6, False, "3")],
)
def test_format_count(n: float | None, signed: bool, text: str) -> None:
    assert format_count(n, signed=signed) == text


@pytest.mark.parametrize(
    ("bytes_per_s", "text"),
    [(None, "n/a"), (MiB / 3600, "+1.0 MiB/h"), (-512 * 1024 / 3600, "-512.0 KiB/h"), (0, "0 B/h")],
)
def test_format_rate_is_per_hour(bytes_per_s: float | None, text: str) -> None:
    assert format_rate(bytes_per_s) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "n/a"), (0.25, "0.25s"), (0.5, "0.5s"), (3.0, "3s"), (9.999, "10s"), (90, "1m30s")],
)
def test_format_seconds_keeps_fractions_below_ten_seconds(seconds: float | None,
                                                          text: str) -> None:
    assert format_seconds(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "n/a"), (0.0421, "0.042s"), (9.5, "9.500s"), (125, "2m05s")],
)
def test_format_test_seconds_shows_milliseconds(seconds: float | None, text: str) -> None:
    assert format_test_seconds(seconds) == text


def test_plural() -> None:
    assert [plural(n, "test") for n in (0, 1, 2)] == ["0 tests", "1 test", "2 tests"]
