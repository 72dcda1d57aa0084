"""End to end through pytest: the plugin's session end drives outputs.finish_run.

Each run is a subprocess (``runpytest_subprocess``): these runs measure memory,
which the outer test session would disturb. Most runs load only this plugin
(autoload off): importing every installed plugin, hypothesis above all, costs
more than the runs themselves. The first test keeps autoload on, so the
``pytest11`` entry point is exercised as users get it.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET

import jsonschema
import pytest

from pytest_memwatch.reports.baselines import machine_id
from pytest_memwatch.reports.results_file import load_results
from pytest_memwatch.reports.validation import load_schema

SUITE = """
import os
import pytest

_kept = []

def test_clean():
    data = [0] * 1000

@pytest.mark.max_growth("64 MiB")
def test_keeps_what_it_is_told():
    # MEMWATCH_DEMO_KEEP_MIB lets a second run "regress" against the first.
    _kept.append(bytearray(int(os.environ.get("MEMWATCH_DEMO_KEEP_MIB", "0")) * 1024 * 1024))

def test_name_with_markup():
    pass
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_suite=SUITE)
    return pytester


@pytest.fixture
def isolated(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """The suite, run with plugin autoload off (see :func:`run`)."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    return suite


def run(pytester: pytest.Pytester, *args: str, plugins: tuple[str, ...] = ()
        ) -> pytest.RunResult:
    """pytest in a subprocess loading memwatch (and ``plugins``) explicitly."""
    loads = [a for p in ("pytest_memwatch.plugin", *plugins) for a in ("-p", p)]
    return pytester.runpytest_subprocess(*loads, *args)


def test_json_and_html_from_a_real_run(suite: pytest.Pytester) -> None:
    result = suite.runpytest_subprocess("--memwatch", "--memwatch-json=out/r.json",
                                        "--memwatch-html=r.html", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*results JSON written to out/r.json*",
                                 "*HTML report written to r.html*"])
    doc = load_results(suite.path / "out" / "r.json")
    jsonschema.validate(doc, load_schema())
    assert {t["nodeid"] for t in doc["tests"]} == {
        "test_suite.py::test_clean", "test_suite.py::test_keeps_what_it_is_told",
        "test_suite.py::test_name_with_markup"}
    assert doc["totals"]["measured"] == 3
    page = (suite.path / "r.html").read_text()
    assert "test_suite.py::test_keeps_what_it_is_told" in page


def test_save_then_compare_fails_on_regression(isolated: pytest.Pytester,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    first = run(isolated, "--memwatch", "--memwatch-compare",
                                       "--memwatch-save=base")
    first.assert_outcomes(passed=3)
    first.stdout.fnmatch_lines([
        "*no saved run to compare with yet in .memwatch (first run?); save one with "
        "--memwatch-save=NAME*",
        f"*run saved as .memwatch/{machine_id()}/0001_base.json*",
    ])
    assert first.ret == 0

    monkeypatch.setenv("MEMWATCH_DEMO_KEEP_MIB", "16")
    second = run(isolated, "--memwatch", "--memwatch-compare=base",
                                        "--memwatch-compare-fail=growth:10%",
                                        "--memwatch-json=second.json")
    second.assert_outcomes(passed=3)
    assert second.ret == 1
    second.stdout.fnmatch_lines([
        "*compared with 0001_base (run of *): 3 in both, 1 regressed, 0 new, 0 removed*",
        "*REGRESSION test_suite.py::test_keeps_what_it_is_told: growth * -> * exceeds "
        "growth:10%*",
    ])
    doc = load_results(isolated.path / "second.json")
    jsonschema.validate(doc, load_schema())
    assert doc["comparison"]["regressions"] == 1


def test_saving_into_a_blocked_storage_warns_and_keeps_the_exit_status(
        isolated: pytest.Pytester) -> None:
    (isolated.path / "blocked").write_text("not a directory")
    result = run(isolated, "--memwatch", "--memwatch-save=x",
                                        "--memwatch-storage=blocked/store")
    result.assert_outcomes(passed=3)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*memwatch: could not save this run as 'x' in blocked/store: "
                                 "*blocked is not a directory; nothing was saved*"])
    assert (isolated.path / "blocked").read_text() == "not a directory"


def test_under_xdist_the_controller_writes_one_document(isolated: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    result = run(isolated, "--memwatch", "-n", "2", "--memwatch-json=r.json",
                 "--memwatch-save=par", plugins=("xdist.plugin",))
    result.assert_outcomes(passed=3)
    doc = load_results(isolated.path / "r.json")
    jsonschema.validate(doc, load_schema())
    assert len(doc["tests"]) == 3
    assert doc["run"]["workers"] == 2
    assert {t["worker"] for t in doc["tests"]} <= {"gw0", "gw1"}
    assert len(list((isolated.path / ".memwatch" / machine_id()).iterdir())) == 1


def test_junit_xml_carries_memwatch_properties(isolated: pytest.Pytester) -> None:
    result = run(isolated, "--memwatch", "--junit-xml=junit.xml", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    tree = ET.parse(isolated.path / "junit.xml")
    names = {p.get("name") for p in tree.iter("property")}
    assert any(name and name.startswith("memwatch_") for name in names), names


def test_cli_reads_what_the_plugin_wrote(isolated: pytest.Pytester) -> None:
    run(isolated, "--memwatch", "--memwatch-json=a.json")
    result = isolated.run(sys.executable, "-m", "pytest_memwatch", "report", "a.json", "-o",
                       "a.html")
    assert result.ret == 0
    assert (isolated.path / "a.html").exists()
    result = isolated.run(sys.executable, "-m", "pytest_memwatch", "compare", "a.json", "a.json")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*3 in both, 0 regressed*", "*no test changed*"])
    assert json.loads((isolated.path / "a.json").read_text())["schema_version"] == 1
