"""Hostile and clumsy input: each test is one reproduction of a way memwatch used to
abort the session, print a traceback, lose results or clobber a file.

Every bad value must get a named error (the culprit, the expected form); every
run keeps its results; no output replaces what it should not. The property
tests in test_hardening_props.py throw generated values at the same readers.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import threading
import time
import weakref
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from _reports_sample import sample_doc, write

from pytest_memwatch import cli, soak
from pytest_memwatch.api import (
    MemoryLimitExceeded,
    MemoryMonitoringService,
    MemoryTracker,
    memory_limit,
    memory_profile,
)
from pytest_memwatch.base.files import atomic_write
from pytest_memwatch.base.units import UnitError, parse_duration, parse_rate, parse_size
from pytest_memwatch.config.settings import SettingError, resolve
from pytest_memwatch.fixture import MemwatchHandle
from pytest_memwatch.reports.baselines import machine_id, save_run
from pytest_memwatch.reports.results_file import load_results

NINES = "9" * 400
MiB = 1024 * 1024
SUBPROCESS_TIMEOUT = 120.0


def no_internal_error(result: pytest.RunResult) -> None:
    text = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in text, text
    assert "Traceback (most recent call last)" not in text, text


# -- huge numbers and unbounded counts in markers ---------------------------------


HUGE_MARKERS = {
    "max_memory_5000_ones": '@pytest.mark.max_memory("1" * 5000)',
    "max_growth_10_400": "@pytest.mark.max_growth(10**400)",
    "max_growth_nines_kib": '@pytest.mark.max_growth("9" * 400 + " KiB")',
    "soak_10_400": "@pytest.mark.soak(10**400)",
    "soak_rate": '@pytest.mark.soak("10s", interval="1s", max_growth_rate="9" * 400 + " MiB/h")',
    "no_leaks_compare": '@pytest.mark.no_leaks(compare_fail="peak:" + "9" * 400 + "MB")',
    "max_growth_runs": "@pytest.mark.max_growth(1, runs=10**9)",
    "no_leaks_warmup": "@pytest.mark.no_leaks(warmup=10**9, runs=2)",
    "max_growth_runs_10_5000": "@pytest.mark.max_growth(1, runs=10**5000)",
}


def test_huge_marker_arguments_fail_their_own_test_at_setup(
    pytester: pytest.Pytester,
) -> None:
    body = "import sys\nimport pytest\nsys.set_int_max_str_digits(0)\n"
    for name, marker in HUGE_MARKERS.items():
        body += f"\n{marker}\ndef test_{name}():\n    pass\n"
    body += "\ndef test_fine():\n    pass\n"
    pytester.makepyfile(test_huge=body)
    result = pytester.runpytest_inprocess("--memwatch-soak", "-p", "no:randomly")
    no_internal_error(result)
    result.assert_outcomes(passed=1, errors=len(HUGE_MARKERS))
    out = result.stdout.str()
    for name in HUGE_MARKERS:
        assert f"memwatch: test_huge.py::test_{name}: bad marker @pytest.mark." in out, name
    assert "size <a 401-digit integer> is too large (at most 8 EiB)" in out
    assert "duration <a 401-digit integer> is too long (at most 366 days)" in out
    assert "runs=1000000000: must be 1000 or less, e.g. runs=3" in out
    assert "warmup=1000000000: must be 1000 or less, e.g. warmup=3" in out
    assert "runs=<a 5001-digit integer>: must be 1000 or less" in out


def test_parsers_bound_sizes_and_durations() -> None:
    with pytest.raises(UnitError, match=r"^size <a 401-digit integer> is too large"):
        parse_size(10**400)
    with pytest.raises(UnitError, match=r"is too large \(at most 8 EiB\)"):
        parse_size(NINES + " KiB")
    with pytest.raises(UnitError, match=r"is too large"):
        parse_size("1" * 5000)
    with pytest.raises(UnitError, match=r"is too large"):
        parse_size(1e300)
    with pytest.raises(UnitError, match=r"^duration <a 401-digit integer> is too long"):
        parse_duration(10**400)
    with pytest.raises(UnitError, match=r"cannot read .* as a rate \(size .* is too large"):
        parse_rate(NINES + " MiB/h")
    assert parse_size("8 TiB") == 8 * 1024**4
    assert parse_size(2**63 // MiB - 1) <= 2**63 - 1


# -- options, ini keys and environment variables ----------------------------------


@pytest.mark.parametrize(
    ("args", "ini", "env", "message"),
    [
        (["--memwatch-repeat=1:" + NINES], "", {},
         "memwatch: bad value '1:999999999999999999999999999999999999999999999...(404 chars) "
         "for --memwatch-repeat (from command line option --memwatch-repeat): RUNS must be "
         "from 1 to 1000, e.g. 2:5. Expected WARMUP:RUNS, e.g. 2:5."),
        (["--memwatch-repeat=1:1000000000"], "", {},
         "memwatch: bad value '1:1000000000' for --memwatch-repeat (from command line option "
         "--memwatch-repeat): RUNS must be from 1 to 1000, e.g. 2:5. "
         "Expected WARMUP:RUNS, e.g. 2:5."),
        ([], "memwatch_repeat = 1:1000000000", {},
         "memwatch: bad value '1:1000000000' for --memwatch-repeat (from ini key "
         "memwatch_repeat): RUNS must be from 1 to 1000, e.g. 2:5. "
         "Expected WARMUP:RUNS, e.g. 2:5."),
        ([], "", {"PYTEST_MEMWATCH_REPEAT": "1:1000000000"},
         "memwatch: bad value '1:1000000000' for --memwatch-repeat (from environment variable "
         "PYTEST_MEMWATCH_REPEAT): RUNS must be from 1 to 1000, e.g. 2:5. "
         "Expected WARMUP:RUNS, e.g. 2:5."),
        (["--memwatch-compare-fail=peak:" + NINES + "MB"], "", {},
         "is too large (at most 8 EiB)"),
        ([], f"memwatch_max_growth = {NINES} KiB", {}, "is too large (at most 8 EiB)"),
        (["--memwatch-top=-1"], "", {},
         "memwatch: bad value '-1' for --memwatch-top (from command line option "
         "--memwatch-top): expected a whole number from 0 to 100000, e.g. 10."),
        ([], "memwatch_top = -3", {},
         "memwatch: bad value '-3' for --memwatch-top (from ini key memwatch_top): "
         "expected a whole number from 0 to 100000, e.g. 10."),
        (["--memwatch-save=a\nb"], "", {},
         "memwatch: bad value 'a\\nb' for --memwatch-save (from command line option "
         "--memwatch-save): expected a name without newlines or other control characters, "
         "e.g. main. Expected a name, e.g. main."),
        (["--memwatch-save=a\x1bb"], "", {}, "without newlines or other control characters"),
        (["--memwatch-json=out.x", "--memwatch-html=./out.x"], "", {},
         "memwatch: --memwatch-json (from command line option --memwatch-json) and "
         "--memwatch-html (from command line option --memwatch-html) both name 'out.x': the "
         "HTML report would replace the results JSON. Give them different paths, e.g. "
         "--memwatch-json=memwatch.json --memwatch-html=memwatch.html"),
    ],
    ids=["repeat-nines", "repeat-cli", "repeat-ini", "repeat-env", "compare-fail",
         "ini-max-growth", "top-cli", "top-ini", "save-newline", "save-escape", "same-path"],
)
def test_bad_option_values_are_usage_errors(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
    args: list[str], ini: str, env: dict[str, str], message: str,
) -> None:
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    pytester.makepyfile("def test_a():\n    pass\n")
    result = pytester.runpytest_inprocess(*args)
    no_internal_error(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert any(message in line for line in result.stderr.lines), result.stderr.str()


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("memwatch_top = [1, 2]",
         "memwatch: bad value [1, 2] for memwatch_top (from ini key memwatch_top): expected "
         "a string, got list. Expected a whole number from 0 to 100000, e.g. 10."),
        ("memwatch_json = {a = 1}",
         "memwatch: bad value {'a': 1} for memwatch_json (from ini key memwatch_json): "
         "expected a string, got dict. Expected a file path, e.g. memwatch.json."),
        ("memwatch_resources_ignore = [1]",
         "expected a list of strings, got list"),
    ],
    ids=["list", "table", "list-of-ints"],
)
def test_pyproject_values_of_the_wrong_type_are_usage_errors(
    pytester: pytest.Pytester, toml: str, message: str
) -> None:
    pytester.makepyprojecttoml(
        # pytest 9 warns about a list under a string key itself; memwatch's error is the point.
        "[tool.pytest.ini_options]\n"
        'filterwarnings = ["ignore:Passing a value that is not a string"]\n' + toml + "\n"
    )
    pytester.makepyfile("def test_a():\n    pass\n")
    result = pytester.runpytest_inprocess()
    no_internal_error(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert any(message in line for line in result.stderr.lines), result.stderr.str()
    assert not list(pytester.path.glob("{*")), "a file named after the table was written"


def test_resolve_refuses_a_device_free_same_path_but_allows_two_writes_to_dev_null() -> None:
    settings = resolve({"json": os.devnull, "html": os.devnull}, {}, {})
    assert settings.json == settings.html == os.devnull
    with pytest.raises(SettingError, match="both name"):
        resolve({"json": "a.json"}, {}, {"html": "a.json"})


# -- saved runs, results files and the CLI ---------------------------------------------


def huge_results(path: Path) -> Path:
    """A results document whose first test's duration is a 400-digit integer."""
    doc = sample_doc()
    doc["tests"][0]["duration_s"] = 10**400
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return path


def test_a_saved_baseline_with_a_huge_number_is_reported_and_outputs_are_written(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile("def test_a():\n    pass\n")
    storage = pytester.path / ".memwatch" / machine_id()
    storage.mkdir(parents=True)
    huge_results(storage / "0001_main.json")
    before = (storage / "0001_main.json").read_bytes()
    result = pytester.runpytest_inprocess(
        "--memwatch", "--memwatch-compare", "--memwatch-json=out.json",
        "--memwatch-html=out.html",
    )
    no_internal_error(result)
    assert result.ret == 0
    assert (pytester.path / "out.json").is_file() and (pytester.path / "out.html").is_file()
    assert load_results(pytester.path / "out.json")["totals"]["tests"] == 1
    out = result.stdout.str()
    assert "0001_main.json: not a results document this version can read: the integer " in out
    assert "is out of range (at most 2**63-1); it was left untouched; nothing was compared" in out
    assert (storage / "0001_main.json").read_bytes() == before


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    status = cli.main(list(argv), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def test_cli_commands_name_a_file_with_a_huge_number_and_exit_2(tmp_path: Path) -> None:
    huge = huge_results(tmp_path / "huge.json")
    good = write(sample_doc(), tmp_path / "good.json")
    (tmp_path / "store" / "m").mkdir(parents=True)
    huge_results(tmp_path / "store" / "m" / "0001_main.json")
    cases = [
        ("report", str(huge), "-o", str(tmp_path / "r.html")),
        ("compare", str(huge), str(good)),
        ("compare", str(good), str(huge)),
        ("merge", str(good), str(huge), "-o", str(tmp_path / "m.json")),
        ("history", str(tmp_path / "store"), "-o", str(tmp_path / "h.html")),
    ]
    for argv in cases:
        status, _, err = run_cli(*argv)
        assert status == cli.ERROR, argv
        assert err.startswith("memwatch: "), (argv, err)
        assert "Traceback" not in err
    status, _, err = run_cli(*cases[0])
    assert err == (
        f"memwatch: {huge}: not a results document this version can read: the integer "
        "100000000000...(401 digits) is out of range (at most 2**63-1)\n"
    )
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "m.json").exists()


def test_cli_compare_fail_with_a_huge_tolerance_is_bad_input(tmp_path: Path) -> None:
    good = write(sample_doc(), tmp_path / "good.json")
    for expr in (f"peak:{NINES}MB", f"blocks:{NINES}", f"growth:{NINES}%"):
        status, _, err = run_cli("compare", str(good), str(good), "--fail", expr)
        assert status == cli.ERROR, expr
        assert err.startswith(f"memwatch: bad --fail value '{expr[:20]}"), err


def test_cli_report_of_dev_zero_is_bounded(tmp_path: Path) -> None:
    status, _, err = run_cli("report", "/dev/zero", "-o", str(tmp_path / "r.html"))
    assert (status, err) == (
        cli.ERROR, "memwatch: /dev/zero: cannot read: binary data (NUL bytes), not a text file\n"
    )


def test_cli_history_with_no_readable_run_exits_2(tmp_path: Path) -> None:
    folder = tmp_path / "store" / "Linux-CPython-3.11-64bit"
    folder.mkdir(parents=True)
    (folder / "0001_main.json").write_text("{broken")
    status, out, err = run_cli("history", str(tmp_path / "store"), "-o", str(tmp_path / "h.html"))
    assert status == cli.ERROR
    assert "0001_main.json: not valid JSON" in err
    assert err.rstrip().endswith(
        "no readable saved runs (save one with pytest --memwatch-save=NAME)"
    )
    assert not (tmp_path / "h.html").exists()


SOAK_HEADER = {
    "format": "pytest-memwatch-soak", "version": 1, "nodeid": "t.py::test_x",
    "duration_s": 20.0, "interval_s": 0.5, "warmup_s": 2.0, "limit_rate": None,
}


def soak_lines(path: Path, *records: dict[str, Any] | str) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_soak_report_on_huge_numbers_exits_2(tmp_path: Path) -> None:
    rss = soak_lines(tmp_path / "rss.jsonl", SOAK_HEADER, f'{{"t": 0, "rss": {NINES}}}')
    far = soak_lines(tmp_path / "far.jsonl", SOAK_HEADER, {"t": 1e300, "rss": 5})
    for path in (rss, far):
        status, _, err = run_cli("soak-report", str(path), "-o", str(tmp_path / "s.html"))
        assert status == cli.ERROR and err.startswith(f"memwatch: {path}:2: "), err
    assert "out of range" in run_cli("soak-report", str(rss), "-o", "x")[2]
    assert "sample without a number t from 0 to 31622400 s (1e+300)" in run_cli(
        "soak-report", str(far), "-o", "x")[2]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"t": 1e300, "rss": 5}, "sample without a number t from 0 to 31622400 s (1e+300)"),
        (f'{{"t": 1, "rss": {NINES}}}', "not a soak sample this version can read: the integer"),
    ],
    ids=["far-future", "huge-rss"],
)
def test_soak_resume_rejects_impossible_samples(
    tmp_path: Path, record: dict[str, Any] | str, message: str
) -> None:
    plan = soak.SoakPlan("t.py::test_x", 20.0, 0.5, 2.0, None)
    soak_lines(
        tmp_path / soak.samples_filename(plan.nodeid), SOAK_HEADER, {"t": 0, "rss": 5}, record
    )
    with pytest.raises(soak.SoakError) as info:
        soak.SoakRun.prepare(plan, tmp_path, resume=True, install_signals=False)
    assert str(info.value).startswith("cannot resume: ")
    assert message in str(info.value)


# -- writers: devices and pipes are not replaced ------------------------------------


def make_null_device(path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except OSError as exc:
        pytest.skip(f"mknod refused: {exc}")
    return path


def test_atomic_write_writes_into_a_device_instead_of_replacing_it(tmp_path: Path) -> None:
    null = make_null_device(tmp_path / "null")
    written = atomic_write(null, "hello")
    assert written == null
    assert stat.S_ISCHR(os.stat(null).st_mode)
    assert not [p for p in tmp_path.iterdir() if p.name != "null"]  # no temporary left


def test_atomic_write_feeds_a_pipe_with_a_reader_and_refuses_one_without(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError) as info:
        atomic_write(fifo, "nobody reads")
    assert info.value.strerror == f"{fifo} is a pipe that nobody reads"
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    deadline = time.monotonic() + 10
    while True:
        try:
            atomic_write(fifo, "through the pipe")
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    reader.join(10)
    assert got == [b"through the pipe"] and stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_outputs_and_cli_write_into_a_device(pytester: pytest.Pytester) -> None:
    null = make_null_device(pytester.path / "null")
    pytester.makepyfile("def test_a():\n    pass\n")
    for option in ("--memwatch-json=./null", "--memwatch-html=./null"):
        result = pytester.runpytest_inprocess("--memwatch", option)
        assert result.ret == 0
        assert stat.S_ISCHR(os.stat(null).st_mode), option
    good = write(sample_doc(), pytester.path / "good.json")
    status, _, _ = run_cli("report", str(good), "-o", str(null))
    assert status == cli.OK and stat.S_ISCHR(os.stat(null).st_mode)


# -- saved names ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a\nb", "tab\there", "bell\x07", "rtl\u202eoverride", ".hidden"])
def test_save_run_refuses_names_that_list_runs_cannot_show(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match=r"^bad name for a saved run: "):
        save_run(sample_doc(), tmp_path / ".memwatch", name)
    assert not (tmp_path / ".memwatch").exists()


# -- xdist: a dead worker's test stays in the results -----------------------------------


def test_a_crashed_worker_keeps_its_test_in_the_results(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(
        test_crash="""
        import os
        def test_a(): pass
        def test_b(): pass
        def test_crash(): os._exit(1)
        def test_d(): pass
        def test_e(): pass
        def test_f(): pass
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:randomly", "-n", "2", "--memwatch", "--memwatch-json=out.json",
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    doc = load_results(pytester.path / "out.json")
    outcomes = {t["nodeid"]: t["outcome"] for t in doc["tests"]}
    assert len(outcomes) == 6, outcomes
    assert outcomes.pop("test_crash.py::test_crash") == "failed"
    assert set(outcomes.values()) == {"passed"}
    crash = next(t for t in doc["tests"] if t["nodeid"].endswith("test_crash"))
    assert crash["verdicts"][0]["kind"] == "crash"
    assert "crashed while running" in crash["verdicts"][0]["message"]


# -- soak: one writer per samples file -------------------------------------------------


def test_a_samples_file_has_one_writer(tmp_path: Path) -> None:
    plan = soak.SoakPlan("t.py::test_x", 20.0, 0.5, 2.0, None)
    first = soak.SoakRun.prepare(plan, tmp_path, install_signals=False)
    try:
        with pytest.raises(soak.SoakError) as info:
            soak.SoakRun.prepare(plan, tmp_path, install_signals=False)
        path = tmp_path / soak.samples_filename(plan.nodeid)
        assert str(info.value) == (
            f"{path} is being written by another process running this soak test; run a soak "
            "test in one process at a time, or give each its own --memwatch-storage"
        )
    finally:
        first.finish()
    # Released (and the empty file it made is gone): the next run may start.
    assert not path.exists()
    soak.SoakRun.prepare(plan, tmp_path, install_signals=False).finish()


def test_two_processes_running_one_soak_test_do_not_interleave(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_long="""
        import pytest

        @pytest.mark.soak("4s", interval="0.2s", warmup="0%")
        def test_soaked(soak):
            for _ in soak:
                soak.sleep(0.05)
        """
    )
    cmd = [sys.executable, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider",
           "--memwatch-soak", "-q", "test_long.py"]
    first = subprocess.Popen(cmd, cwd=pytester.path, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    samples = pytester.path / ".memwatch" / "soak"
    deadline = time.monotonic() + 60
    # The second process starts once the first has written its header.
    while not any(p.stat().st_size for p in samples.glob("*.jsonl")):
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.05)
    second = subprocess.run(cmd, cwd=pytester.path, capture_output=True, text=True,
                            timeout=SUBPROCESS_TIMEOUT)
    out_first, _ = first.communicate(timeout=SUBPROCESS_TIMEOUT)
    assert first.returncode == 0, out_first
    assert second.returncode == 1, second.stdout
    assert "is being written by another process running this soak test" in second.stdout
    (path,) = samples.glob("*.jsonl")
    found = soak.read_samples(path)  # one header, one process's lines, complete
    assert found.complete and found.resumes == []


# -- the fixture -------------------------------------------------------------------------


def test_assert_max_growth_without_baseline_counts_from_the_tests_start() -> None:
    handle = MemwatchHandle("t.py::test_x", managed=True)
    handle.start()
    kept = b"x" * (50 * MiB)
    with pytest.raises(AssertionError, match=r"^memwatch: .* held beyond the baseline, over the "
                       r"limit of 10\.0 MiB$"):
        handle.assert_max_growth("10 MiB")
    del kept


def test_assert_max_growth_without_baseline_end_to_end(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_keeps(memwatch):
            kept = b"x" * (50 * 1024 * 1024)
            memwatch.assert_max_growth("10 MiB")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly", timeout=SUBPROCESS_TIMEOUT)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*memwatch: * held beyond the baseline, over the limit of 10.0 MiB*"])


class Node:
    pass


def test_assert_collected_on_an_ended_or_unmanaged_handle_is_an_error() -> None:
    handle = MemwatchHandle("t.py::test_x", managed=True)
    handle.finish()
    with pytest.raises(RuntimeError, match=r"the test t.py::test_x has ended"):
        handle.assert_collected(Node())
    outside = MemwatchHandle()
    with pytest.raises(RuntimeError, match=r"outside the memwatch fixture nothing checks"):
        outside.assert_collected(Node())
    gone = Node()
    ref = weakref.ref(gone)
    del gone
    outside.assert_collected(ref)  # a weakref is checked now, anywhere


def test_a_handle_kept_past_its_test_refuses_objects(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        kept = []

        class Node:
            pass

        def test_keeps_the_handle(memwatch):
            kept.append(memwatch)

        def test_uses_it_later():
            kept[0].assert_collected(Node())
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*RuntimeError: memwatch.assert_collected: the test "
                                 "test_a_handle_kept_past_its_test_refuses_objects.py::"
                                 "test_keeps_the_handle has ended*"])


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"runs": "5"}, TypeError,
         "memwatch.check_leaks: runs='5': expected a whole number from 2 to 1000, e.g. runs=3"),
        ({"runs": 10**9}, ValueError,
         "memwatch.check_leaks: runs=1000000000: must be from 2 to 1000, e.g. runs=3"),
        ({"warmup": -1}, ValueError,
         "memwatch.check_leaks: warmup=-1: must be from 0 to 1000, e.g. warmup=3"),
        ({"warmup": 1.5}, TypeError,
         "memwatch.check_leaks: warmup=1.5: expected a whole number from 0 to 1000, "
         "e.g. warmup=3"),
        ({"resources": "yes"}, TypeError,
         "memwatch.check_leaks: resources='yes': expected True or False"),
    ],
)
def test_check_leaks_arguments_get_named_errors(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        MemwatchHandle().check_leaks(lambda: None, **kwargs)
    assert str(info.value) == message


def test_check_leaks_needs_a_callable() -> None:
    with pytest.raises(TypeError, match=r"^memwatch.check_leaks: expected a callable to repeat, "
                       r"got int 5; e.g. check_leaks\(lambda: parse\(doc\)\)$"):
        MemwatchHandle().check_leaks(5)  # type: ignore[arg-type]


# -- the library API -----------------------------------------------------------------------


def test_memory_limit_names_the_other_threads_it_cannot_tell_apart() -> None:
    started, release = threading.Event(), threading.Event()
    hog: list[bytes] = []

    def allocate() -> None:
        started.wait()
        hog.append(b"x" * (96 * MiB))
        release.wait(30)

    @memory_limit(20)
    def idle() -> None:
        started.set()
        deadline = time.monotonic() + 10
        while not hog and time.monotonic() < deadline:
            time.sleep(0.01)

    other = threading.Thread(target=allocate)
    other.start()
    try:
        with pytest.raises(MemoryLimitExceeded) as info:
            idle()
    finally:
        release.set()
        other.join()
        hog.clear()
    assert info.value.other_threads >= 1
    assert "(a process-wide RSS peak: " in str(info.value)
    assert "other thread(s) ran during the call and their allocations count too)" in str(
        info.value
    )


def test_memory_profile_and_memory_limit_refuse_what_is_not_a_function() -> None:
    with pytest.raises(TypeError, match=r"^memory_profile: expected a function to wrap, got int "
                       r"5; use it as a decorator, e.g. @memory_profile$"):
        memory_profile(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^memory_limit: expected a function to wrap, got str"):
        memory_limit(5)("f")  # type: ignore[arg-type]


def test_spike_threshold_too_large_is_a_unit_error() -> None:
    with pytest.raises(UnitError, match=r"too large"):
        MemoryTracker(spike_threshold=10**400)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"interval": float("nan")}, ValueError,
         "interval must be positive seconds, at most one year, e.g. 30, got nan"),
        ({"interval": float("inf")}, ValueError,
         "interval must be positive seconds, at most one year, e.g. 30, got inf"),
        ({"interval": "30"}, TypeError, "interval must be a number of seconds, e.g. 30, got '30'"),
        ({"interval": 1, "on_alert": "print"}, TypeError,
         "on_alert must be a function (level, status) or None, got str 'print'"),
        ({"interval": 1, "history": 0}, ValueError, "history=0: must be from 1 to 10000000"),
    ],
)
def test_monitoring_service_arguments_get_named_errors(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        MemoryMonitoringService(**kwargs)
    assert str(info.value).startswith(message)


def _wait(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_monitoring_survives_an_on_alert_that_raises(caplog: pytest.LogCaptureFixture) -> None:
    def broken(level: str, status: dict[str, Any]) -> None:
        raise RuntimeError("boom")

    svc = MemoryMonitoringService(0.01, warn_mb=0, on_alert=broken)
    with caplog.at_level(logging.ERROR, logger="pytest_memwatch"):
        svc.start()
        try:
            _wait(lambda: svc.alert_errors >= 3)
            assert svc.running
        finally:
            svc.stop()
    status = svc.status()
    assert status["last_alert_error"] == "RuntimeError: boom"
    assert "on_alert raised; monitoring goes on" in caplog.text


def test_monitoring_stopped_from_its_own_alert_ends_cleanly() -> None:
    errors: list[threading.ExceptHookArgs] = []
    previous = threading.excepthook
    threading.excepthook = errors.append
    try:
        svc = MemoryMonitoringService(0.01, warn_mb=0)
        svc.on_alert = lambda level, status: svc.stop()
        svc.start()
        _wait(lambda: not svc.running)
        svc.stop()  # from outside as well: joins the finished thread
        assert svc._thread is None and svc.alerts >= 1
    finally:
        threading.excepthook = previous
    assert errors == []


def test_a_bad_module_marker_on_an_opted_out_test_says_to_fix_the_marker(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_mod="""
        import pytest

        pytestmark = pytest.mark.max_growth("ten megs")

        @pytest.mark.memwatch_skip("x")
        def test_opted_out():
            pass
        """
    )
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert "To opt this test out: @pytest.mark.memwatch_skip(reason)" not in out
    assert (
        "memwatch_skip does not exempt a test from marker checks (a typo would surface only "
        "once the opt-out is removed): fix the marker, or remove it from this test, its class "
        "or its module." in out
    )
