"""Switching memwatch on (flag, ini, environment) and off, end to end in a subprocess."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Runner

SUITE = """
    import unittest

    LEAK = []

    def test_function():
        assert sum(range(10)) == 45

    class TestGrouped:
        def test_method(self):
            LEAK.append(bytearray(64 * 1024))

    class OldStyle(unittest.TestCase):
        def test_one(self):
            self.assertEqual(1 + 1, 2)

        def test_two(self):
            self.assertTrue(LEAK is not None)
"""
NODEIDS = {
    "test_suite.py::test_function",
    "test_suite.py::TestGrouped::test_method",
    "test_suite.py::OldStyle::test_one",
    "test_suite.py::OldStyle::test_two",
}

# Records, from inside the inner run, which reports carry a memwatch payload,
# whether memwatch touched the process at all (probes built, heap frozen) and
# which of memwatch's hooks would run for every test.
RECORDER = """
    import gc, json

    from pytest_memwatch.base import probes

    PAYLOADS = []
    # CPython 3.12.1 starts with objects of its own in the permanent generation
    # (375 here); what counts is what the session added.
    FROZEN_AT_START = gc.get_freeze_count()
    PER_TEST = (
        "pytest_runtest_protocol", "pytest_runtest_setup", "pytest_runtest_call",
        "pytest_runtest_teardown", "pytest_fixture_setup", "pytest_runtest_makereport",
        "pytest_report_teststatus", "pytest_runtest_logreport",
    )

    def memwatch_per_test_hooks(config):
        pm = config.pluginmanager
        found = []
        for hook in PER_TEST:
            for impl in getattr(config.hook, hook).get_hookimpls():
                name = pm.get_name(impl.plugin) or ""
                if "memwatch" in name:
                    found.append(f"{name}:{hook}")
        return sorted(found)

    def pytest_runtest_logreport(report):
        data = getattr(report, "memwatch", None)
        if data is not None:
            PAYLOADS.append(
                {"nodeid": report.nodeid, "when": report.when,
                 "measured": data["before"] is not None, "growth": data["growth"]}
            )

    def pytest_sessionfinish(session):
        with open("recorded.json", "w") as f:
            json.dump(
                {"payloads": PAYLOADS, "prober_built": probes._PROBER is not None,
                 "frozen": gc.get_freeze_count() - FROZEN_AT_START,
                 "hooks": memwatch_per_test_hooks(session.config)},
                f,
            )
"""


def recorded(pytester: pytest.Pytester) -> dict[str, object]:
    return json.loads((pytester.path / "recorded.json").read_text())


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_suite=SUITE)
    pytester.makeconftest(RECORDER)
    return pytester


def assert_every_test_measured(runner: Runner, result: pytest.RunResult) -> None:
    result.assert_outcomes(passed=4)
    section = runner.section(result)
    assert section, result.stdout.str()
    assert section[0].startswith("memwatch: 4 tests measured, 0 failed memory verdicts, ")
    rec = recorded(runner.pytester)
    payloads = rec["payloads"]
    assert isinstance(payloads, list)
    assert {p["nodeid"] for p in payloads} == NODEIDS
    # One payload per test, on the call report, with real readings.
    assert len(payloads) == 4
    assert all(p["when"] == "call" and p["measured"] for p in payloads)
    assert all(isinstance(p["growth"]["rss"], int) for p in payloads)
    assert all(isinstance(p["growth"]["malloc"], int) for p in payloads)
    # Allocated blocks are counted where a verdict or a comparison needs them:
    # the count visits every pymalloc pool, dear under a big session.
    assert all(p["growth"]["blocks"] is None for p in payloads)
    assert rec["prober_built"] is True
    assert rec["hooks"] == MEASURING_HOOKS


# What a session that measures adds to every test; no soak call wrapper, no
# marker-error check when no test needs them, no status hook until a memory
# verdict fails.
MEASURING_HOOKS = [
    "memwatch-tests:pytest_fixture_setup",
    "memwatch-tests:pytest_runtest_protocol",
    "memwatch-tests:pytest_runtest_setup",
]


def test_flag_measures_every_test_including_unittest(
    suite: pytest.Pytester, runner: Runner
) -> None:
    # With every installed plugin loaded, as in a user's environment.
    result = runner.sub("--memwatch", all_plugins=True)
    assert_every_test_measured(runner, result)


def test_ini_switches_it_on(suite: pytest.Pytester, runner: Runner) -> None:
    suite.makeini("[pytest]\nmemwatch = true\n")
    assert_every_test_measured(runner, runner.sub())


def test_environment_switches_it_on(
    suite: pytest.Pytester, runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_MEMWATCH", "1")
    assert_every_test_measured(runner, runner.sub())


def test_environment_switches_off_what_the_ini_switches_on(
    suite: pytest.Pytester, runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.makeini("[pytest]\nmemwatch = true\n")
    monkeypatch.setenv("PYTEST_MEMWATCH", "0")
    result = runner.sub()
    result.assert_outcomes(passed=4)
    assert runner.section(result) == []
    assert recorded(suite)["payloads"] == []


def test_without_flag_or_marker_nothing_is_measured(suite: pytest.Pytester, runner: Runner) -> None:
    result = runner.sub()
    result.assert_outcomes(passed=4)
    assert runner.section(result) == []
    assert not [
        line
        for line in result.stdout.lines
        if "memwatch" in line and not line.startswith("plugins: ")
    ]
    rec = recorded(suite)
    assert rec["payloads"] == []
    assert rec["prober_built"] is False, "an unmeasured session must not even read /proc"
    assert rec["frozen"] == 0
    assert rec["hooks"] == [], "an unmeasured session must add no call to any test's run"


def test_a_wrong_marker_alone_adds_only_its_setup_check(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makepyfile(
        test_suite="""
        import pytest

        @pytest.mark.memwatch_skip(5)
        def test_wrong():
            pass

        def test_plain():
            pass
        """
    )
    pytester.makeconftest(RECORDER)
    result = runner.sub()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*test_suite.py::test_wrong: bad marker @pytest.mark.memwatch_skip(5)*"]
    )
    rec = recorded(pytester)
    assert rec["hooks"] == ["memwatch-marker-errors:pytest_runtest_setup"]
    assert rec["prober_built"] is False


def test_only_marked_tests_are_measured_without_the_flag(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makepyfile(
        test_suite="""
        import pytest

        @pytest.mark.max_growth(100)
        def test_marked():
            pass

        def test_plain():
            pass
        """
    )
    pytester.makeconftest(RECORDER)
    result = runner.sub()
    result.assert_outcomes(passed=2)
    assert runner.section(result)[0].startswith("memwatch: 1 test measured, ")
    payloads = recorded(pytester)["payloads"]
    assert [p["nodeid"] for p in payloads] == ["test_suite.py::test_marked"]
    assert recorded(pytester)["hooks"] == MEASURING_HOOKS


def test_works_without_the_cacheprovider(suite: pytest.Pytester, runner: Runner) -> None:
    result = runner.sub("-p", "no:cacheprovider", "--memwatch")
    assert_every_test_measured(runner, result)
    assert not (suite.path / ".pytest_cache").exists()


def test_junit_xml_carries_the_measurements(pytester: pytest.Pytester, runner: Runner) -> None:
    pytester.makepyfile(
        test_suite="""
        import pytest

        LEAK = []

        def test_clean():
            pass

        @pytest.mark.max_growth("32 KiB")
        def test_leaky():
            LEAK.append(bytearray(b"\\x01") * (1024 * 1024))
        """
    )
    result = runner.sub("--memwatch", "--memwatch-trace=0", "--junit-xml=out.xml")
    result.assert_outcomes(passed=1, failed=1)
    root = ET.parse(pytester.path / "out.xml").getroot()
    cases = {case.get("name"): case for case in root.iter("testcase")}
    assert set(cases) == {"test_clean", "test_leaky"}
    for name, case in cases.items():
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        for key in (
            "memwatch_growth_rss",
            "memwatch_growth_malloc",
            *(["memwatch_growth_blocks"] if name == "test_leaky" else []),
            "memwatch_peak_growth",
        ):
            assert key in props, (name, props)
            int(props[key] or "")  # a number of bytes or blocks
        # Plain measuring does not count allocated blocks (a verdict does).
        assert ("memwatch_growth_blocks" in props) == (name == "test_leaky")
        expected = "failed: max_growth" if name == "test_leaky" else "passed"
        assert props["memwatch_verdict"] == expected
    leaky = {p.get("name"): p.get("value") for p in cases["test_leaky"].iter("property")}
    assert int(leaky["memwatch_growth_malloc"] or 0) >= 1024 * 1024
    failure = cases["test_leaky"].find("failure")
    assert failure is not None
    assert (failure.get("message") or "").startswith("memwatch max_growth: 1.0 MiB left behind")


UNAVAILABLE = """
    from pytest_memwatch.base import probes

    class _LibcWithoutMallinfo2:
        def __init__(self, *args, **kwargs):
            pass

    # As on musl or an old glibc: the C library loads but has no mallinfo2.
    _real = probes.ctypes.CDLL
    probes.ctypes.CDLL = _LibcWithoutMallinfo2
    try:
        probes._PROBER = probes.Prober()
    finally:
        probes.ctypes.CDLL = _real
"""
PROBE_WARNING = (
    "memwatch: some probes are unavailable here "
    "(malloc: the C library has no mallinfo2 (glibc >= 2.33 needed))"
)
PROBE_SUITE = """
    import pytest

    LEAK = []

    @pytest.mark.max_growth("32 KiB")
    def test_leaky():
        LEAK.append(bytearray(b"\\x01") * (4 * 1024 * 1024))

    def test_clean():
        pass
"""


def test_a_missing_probe_warns_and_the_others_go_on(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makeconftest(UNAVAILABLE)
    pytester.makepyfile(test_suite=PROBE_SUITE)
    result = runner.sub("--memwatch", "--memwatch-trace=0")
    # RSS alone still catches the 4 MiB leak; the clean test is unaffected.
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert f"PytestWarning: {PROBE_WARNING}" in out
    assert "memwatch max_growth: 4.0 MiB left behind per call, over the limit of 32.0 KiB" in out
    table = runner.section(result)
    leaky_row = next(line for line in table if line.endswith("test_suite.py::test_leaky"))
    # growth, rss, malloc: growth is RSS's alone when malloc is missing.
    assert re.match(r"^\s*(\+\S+ \S+)\s+\1\s+n/a ", leaky_row), leaky_row


def test_a_missing_probe_under_filterwarnings_error_does_not_stop_the_run(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makeconftest(UNAVAILABLE)
    pytester.makepyfile(test_suite=PROBE_SUITE)
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    result = runner.sub("--memwatch", "--memwatch-trace=0")
    assert "INTERNALERROR" not in result.stdout.str()
    result.assert_outcomes(passed=1, failed=1)
    assert f"WARNING: {PROBE_WARNING}" in runner.section(result)


def test_the_failed_status_hook_arrives_with_the_first_failed_verdict(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makepyfile(
        test_suite="""
        import pytest

        KEPT = []

        def test_clean():
            pass

        @pytest.mark.max_growth("64 KiB")
        def test_leaks():
            KEPT.append(bytearray(b"\\x01") * (1024 * 1024))

        def test_after():
            pass
        """
    )
    pytester.makeconftest(RECORDER)
    result = runner.sub("--memwatch", "--memwatch-trace=0", "-v")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "test_suite.py::test_clean PASSED*",
            "test_suite.py::test_leaks FAILED (memwatch)*",
            "test_suite.py::test_after PASSED*",
        ]
    )
    hooks = recorded(pytester)["hooks"]
    assert hooks == sorted(
        [*MEASURING_HOOKS, "memwatch-failed-status:pytest_report_teststatus"]
    )
