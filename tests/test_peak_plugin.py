"""End to end: ``max_memory`` sees a test's own allocations whatever ran before.

The peak is the high-water mark of RSS; memory the process already holds does
not move it. Before a test with a ``max_memory`` budget the C heap's free pages
are handed back, so a test that reuses what an earlier test freed, or what
its own previous run freed under ``--memwatch-repeat``, is measured all the same.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import Runner

SUITE = """
    import pytest

    def test_frees_100mib_of_small_objects():
        junk = [bytearray(1000) for _ in range(100_000)]
        del junk

    @pytest.mark.max_memory(5)
    def test_peak_20mib():
        data = bytearray(20 * 1024 * 1024)
        del data

    @pytest.mark.max_memory(5)
    def test_peak_20mib_in_1k_pieces():
        data = [bytearray(1000) for _ in range(20_000)]
        del data

    @pytest.mark.max_memory(50)
    def test_peak_within_budget():
        data = bytearray(20 * 1024 * 1024)
        del data
"""


def peaks(pytester: pytest.Pytester) -> dict[str, dict[str, object]]:
    doc = json.loads((pytester.path / "r.json").read_text())
    out = {}
    for t in doc["tests"]:
        v = [v for v in t["verdicts"] if v["kind"] == "max_memory"]
        if v:
            out[t["nodeid"].split("::")[-1]] = v[0]
    return out


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("-k", "not frees"), id="alone"),
        pytest.param((), id="after-a-test-that-freed-100mib"),
        pytest.param(("-k", "not frees", "--memwatch-repeat=1:3"), id="repeat"),
    ],
)
def test_a_20mib_peak_fails_a_5mib_budget_whatever_ran_before(
    pytester: pytest.Pytester, runner: Runner, args: tuple[str, ...]
) -> None:
    pytester.makepyfile(test_peak=SUITE)
    result = runner.sub("--memwatch", "--memwatch-json=r.json", "-p", "no:randomly", *args)
    result.assert_outcomes(passed=1 if "not frees" in args else 2, failed=2)
    found = peaks(pytester)
    for name in ("test_peak_20mib", "test_peak_20mib_in_1k_pieces"):
        v = found[name]
        assert not v["passed"], v["message"]
        assert 18 * 1024 * 1024 < v["measured"] < 40 * 1024 * 1024, v["message"]
        assert v["message"].startswith("max_memory: peak ")
    ok = found["test_peak_within_budget"]
    assert ok["passed"] and ok["measured"] > 18 * 1024 * 1024, ok["message"]


def test_the_harness_own_work_is_no_peak(pytester: pytest.Pytester, runner: Runner) -> None:
    # The trim hands back what the readings page in too: an empty test reads no
    # peak, repeated (heap unfrozen, so each reading lists a megabyte of objects)
    # or not, after a test that freed 100 MiB.
    pytester.makepyfile(test_empty="""
        import pytest

        def test_frees_100mib_of_small_objects():
            junk = [bytearray(1000) for _ in range(100_000)]
            del junk

        @pytest.mark.max_memory("256 KiB")
        def test_empty():
            pass

        @pytest.mark.max_memory("256 KiB")
        @pytest.mark.no_leaks(warmup=1, runs=3)
        def test_empty_repeated():
            pass
    """)
    result = runner.sub("--memwatch", "--memwatch-json=r.json", "--memwatch-trace=0",
                        "-p", "no:randomly")
    result.assert_outcomes(passed=3)
    found = peaks(pytester)
    assert found["test_empty"]["measured"] < 256 * 1024
    assert found["test_empty_repeated"]["measured"] < 256 * 1024
