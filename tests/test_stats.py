"""Theil-Sen trend statistics behind the leak verdict."""

from __future__ import annotations

import random

import pytest

from pytest_memwatch.base.stats import Trend, theil_sen


def test_exact_line_has_its_slope_and_a_zero_width_interval() -> None:
    trend = theil_sen([2 * i + 1 for i in range(10)])
    assert trend == Trend(2.0, 2.0, 2.0, 10)


def test_slope_against_explicit_x() -> None:
    x = [0.0, 0.5, 2.0, 3.5, 10.0]
    y = [5 - 4 * xi for xi in x]
    trend = theil_sen(y, x)
    assert trend.slope == pytest.approx(-4.0)
    assert trend.low == pytest.approx(-4.0)
    assert trend.high == pytest.approx(-4.0)


def test_known_small_data() -> None:
    # Pairwise slopes of (0,0),(1,1),(2,4),(3,9): 1, 2, 3, 3, 4, 5 -> median 3.
    trend = theil_sen([0, 1, 4, 9])
    assert trend.slope == 3.0
    assert trend.low <= 3.0 <= trend.high
    assert trend.n == 4


def test_flat_series_has_zero_slope() -> None:
    trend = theil_sen([100.0] * 8)
    assert trend == Trend(0.0, 0.0, 0.0, 8)


def test_short_series() -> None:
    assert theil_sen([]) == Trend(0.0, 0.0, 0.0, 0)
    assert theil_sen([5.0]) == Trend(0.0, 0.0, 0.0, 1)
    # Two points: the slope is exact and there is no spread to make an interval from.
    assert theil_sen([1.0, 4.0]) == Trend(3.0, 3.0, 3.0, 2)


def test_repeated_x_values_are_skipped_not_divided_by_zero() -> None:
    trend = theil_sen([1.0, 3.0, 5.0], [1.0, 1.0, 2.0])
    assert trend.slope == pytest.approx(3.0)
    assert theil_sen([1.0, 2.0], [4.0, 4.0]) == Trend(0.0, 0.0, 0.0, 2)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="x and y differ in length"):
        theil_sen([1.0, 2.0, 3.0], [0.0, 1.0])
    with pytest.raises(ValueError, match=r"confidence must be one of \[0\.9, 0\.95, 0\.99\]"):
        theil_sen([1.0, 2.0, 3.0], confidence=0.5)


def test_robust_to_an_outlier() -> None:
    # An arena appears once: one reading jumps by far more than the trend.
    y = [10.0 * i for i in range(12)]
    y[6] += 100_000.0
    trend = theil_sen(y)
    assert trend.slope == pytest.approx(10.0)
    assert trend.low == pytest.approx(10.0)
    # A least-squares fit would be dragged to hundreds per step.
    assert trend.high < 20.0


def test_interval_contains_the_true_slope_on_noisy_data() -> None:
    rng = random.Random(20240611)
    true_slope, trials = 3.0, 400
    covered = 0
    for _ in range(trials):
        y = [true_slope * i + rng.gauss(0.0, 5.0) for i in range(12)]
        trend = theil_sen(y)
        assert trend.low <= trend.slope <= trend.high
        covered += trend.low <= true_slope <= trend.high
    # A 95 % interval; well under 90 % would mean the bounds are picked wrongly.
    assert covered / trials >= 0.90


def test_wider_confidence_gives_a_wider_interval() -> None:
    rng = random.Random(7)
    y = [2.0 * i + rng.gauss(0.0, 4.0) for i in range(15)]
    t90, t95, t99 = (theil_sen(y, confidence=c) for c in (0.90, 0.95, 0.99))
    assert t90.slope == t95.slope == t99.slope
    assert t99.low <= t95.low <= t90.low
    assert t90.high <= t95.high <= t99.high
    assert t99.high - t99.low > t90.high - t90.low


def test_sawtooth_without_trend_has_an_interval_around_zero() -> None:
    # Memory that goes up and comes back down, run after run, is not a trend.
    y = [10.0 if i % 2 else -10.0 for i in range(20)]
    trend = theil_sen(y)
    assert trend.slope == 0.0
    assert trend.low <= 0.0 <= trend.high


def test_trend_to_dict() -> None:
    assert Trend(1.5, 1.0, 2.0, 9).to_dict() == {"slope": 1.5, "low": 1.0, "high": 2.0, "n": 9}
