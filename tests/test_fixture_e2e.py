"""The ``memwatch`` fixture as users write it, in an inner pytest run (subprocess)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Runner

SUITE = """
    import weakref

    REGISTRY = []

    class Session:
        pass

    def test_freed_object_passes(memwatch):
        session = Session()
        memwatch.assert_collected(session)

    def test_held_object_fails_at_teardown_with_its_holder(memwatch):
        session = Session()
        REGISTRY.append(session)
        memwatch.assert_collected(session)

    def test_weakref_is_checked_at_once(memwatch):
        session = Session()
        ref = weakref.ref(session)
        REGISTRY.append(session)
        del session
        memwatch.assert_collected(ref, "the session")

    def test_check_leaks_inside_a_test(memwatch):
        kept = []
        leaky = memwatch.check_leaks(lambda: kept.append(bytearray(64 * 1024)), warmup=1, runs=3)
        assert not leaky
        assert leaky.growth_per_call >= 60 * 1024
        clean = memwatch.check_leaks(lambda: [bytearray(1000) for _ in range(10)], warmup=1, runs=3)
        assert clean, clean.message

    def test_budget_inside_a_test(memwatch):
        memwatch.baseline()
        kept = [bytearray(b"\\x01") * (4 * 1024 * 1024)]
        memwatch.snapshot("loaded")
        assert memwatch.growth() >= 4 * 1024 * 1024
        memwatch.assert_max_growth("1 MiB")
"""


@pytest.mark.parametrize("flag", [[], ["--memwatch"]], ids=["fixture-only", "with-flag"])
def test_fixture_end_to_end(pytester: pytest.Pytester, runner: Runner, flag: list[str]) -> None:
    pytester.makepyfile(test_fx=SUITE)
    result = runner.sub(*flag)
    result.assert_outcomes(passed=3, failed=2, errors=1)
    out = result.stdout.lines

    # An object given to assert_collected is checked once the test is over,
    # and the error shows the chain from the module that still holds it, also
    # with --memwatch freezing the long-lived heap between tests.
    assert any(
        re.fullmatch(
            r"_+ ERROR at teardown of test_held_object_fails_at_teardown_with_its_holder _+", line
        )
        for line in out
    )
    held = next(
        line for line in out if line.startswith("E       AssertionError: memwatch: Session")
    )
    assert held.startswith(
        "E       AssertionError: memwatch: Session object was not freed; held by: "
        "module <module 'test_fx' from "
    ), held
    assert " -> list [" in held
    assert held.endswith(">")
    assert re.search(r" -> Session <test_fx\.Session object at 0x[0-9a-f]+>$", held), held

    # A weakref is checked at once, failing the test itself.
    assert any(
        line.startswith("E       AssertionError: memwatch: the session was not freed; held by: ")
        for line in out
    )
    # 4 MiB kept, plus the pages the interpreter touched meanwhile (RSS is
    # page-granular: a fresh pymalloc arena shows as another 0.1 MiB).
    assert any(
        re.fullmatch(
            r"E +AssertionError: memwatch: 4\.[0-2] MiB held beyond the baseline, over the limit "
            r"of 1\.0 MiB \(snapshots: loaded: \+\d+\.\d MiB\)",
            line,
        )
        for line in out
    ), result.stdout.str()
    expected = [
        "ERROR test_fx.py::test_held_object_fails_at_teardown_with_its_holder",
        "FAILED test_fx.py::test_budget_inside_a_test",
        "FAILED test_fx.py::test_weakref_is_checked_at_once",
    ]
    short = out[next(i for i, line in enumerate(out) if "short test summary info" in line):]
    summary = [line.split(" - ")[0] for line in short if line.startswith(("FAILED ", "ERROR "))]
    assert sorted(summary) == expected
    if flag:
        # The checks that failed these tests are memory verdicts: the memwatch
        # section counts and lists them, as the JSON and the HTML do.
        section = out[:out.index(short[0])]
        assert any(line.startswith("memwatch: 5 tests measured, 3 failed memory verdicts")
                   for line in section), section
        listed = [line.split(" - ")[0] for line in section
                  if line.startswith(("FAILED ", "ERROR "))]
        assert sorted(listed) == expected
