"""The harness must not measure itself: its own footprint stays flat over many tests.

A generated suite of 300 trivial tests runs in a subprocess, once plain and once
with ``--memwatch``. A conftest in the inner run records, at the start of every
test, the live Python allocations and RSS. pytest itself keeps a few dozen
blocks per test (its reports); what memwatch adds per test must stay a small
constant: a per-test results record, never a test's frames, fixtures or items.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from pytest_memwatch.base.stats import theil_sen

if TYPE_CHECKING:
    from conftest import Runner

N_TESTS = 300
RECORDER = """
    import json, os, sys

    PAGE = os.sysconf("SC_PAGE_SIZE")
    ROWS = []

    def _rss():
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE

    def pytest_runtest_logstart(nodeid, location):
        ROWS.append((sys.getallocatedblocks(), _rss()))

    def pytest_sessionfinish(session):
        with open("footprint.json", "w") as f:
            json.dump(ROWS, f)
"""
# Each test makes and drops a little garbage, as real tests do.
TESTS = "\n".join(
    f"def test_{i:03d}():\n    data = [str(n) for n in range({i % 7 + 1})]\n    assert data\n"
    for i in range(N_TESTS)
)


def per_test_slopes(pytester: pytest.Pytester) -> tuple[float, float]:
    rows = json.loads((pytester.path / "footprint.json").read_text())
    assert len(rows) == N_TESTS
    # Skip the first third: imports and caches settle in the first tests.
    tail = rows[N_TESTS // 3 :]
    blocks = theil_sen([float(b) for b, _ in tail]).slope
    rss = theil_sen([float(r) for _, r in tail]).slope
    return blocks, rss


def test_own_footprint_stays_flat_over_300_tests(pytester: pytest.Pytester, runner: Runner) -> None:
    pytester.makeconftest(RECORDER)
    pytester.makepyfile(test_many=TESTS)

    plain = runner.sub("-q", "-p", "no:cacheprovider")
    plain.assert_outcomes(passed=N_TESTS)
    plain_blocks, plain_rss = per_test_slopes(pytester)

    measured = runner.sub("-q", "-p", "no:cacheprovider", "--memwatch")
    measured.assert_outcomes(passed=N_TESTS)
    assert runner.section(measured)[0].startswith(f"memwatch: {N_TESTS} tests measured, ")
    blocks, rss = per_test_slopes(pytester)

    extra_blocks = blocks - plain_blocks
    extra_rss = rss - plain_rss
    # A results record and the report payload are a few dozen blocks (about 66
    # today); keeping a test's frames, fixture values or per-run readings would
    # be hundreds or thousands.
    assert extra_blocks < 120, (blocks, plain_blocks)
    assert extra_rss < 16 * 1024, (rss, plain_rss)
