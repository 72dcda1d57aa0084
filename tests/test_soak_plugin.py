"""Soak tests end to end: verdicts, results, progress, signals, SIGKILL and resume.

Every run that samples memory is an inner pytest in a subprocess; marker and
fixture errors, which sample nothing, run in process.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import SUBPROCESS_TIMEOUT, Runner

from pytest_memwatch.soak import read_samples, samples_filename

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "SIGKILL"), reason="soak runs are tested on POSIX"
)

SUITE = """
    import time
    import pytest

    HELD = []

    @pytest.mark.soak("3s", interval="0.05s")
    def test_leaky(soak):
        # 64 KiB every 10 ms that nobody frees: about 20 MiB over the run.
        for tick in soak:
            HELD.append(bytearray(64 * 1024))
            soak.sleep(0.01)

    @pytest.mark.soak("3s", interval="0.05s", max_growth_rate="1 MiB/h")
    def test_sawtooth(soak):
        # A 5 MiB buffer list filled over 0.4 s and dropped: it saws, it does not climb.
        buf = []
        def step():
            buf.append(bytearray(256 * 1024))
            if len(buf) >= 20:
                buf.clear()
            time.sleep(0.02)
        soak.run(step)

    def test_ordinary():
        pass
"""


def results(pytester: pytest.Pytester, name: str = "r.json") -> dict[str, dict[str, Any]]:
    doc = json.loads((pytester.path / name).read_text())
    return {t["nodeid"].split("::")[-1]: t for t in doc["tests"]}


def samples_file(pytester: pytest.Pytester, nodeid: str) -> Path:
    return pytester.path / ".memwatch" / "soak" / samples_filename(nodeid)


def test_leak_fails_with_its_rate_and_sawtooth_passes(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makepyfile(test_soaks=SUITE)
    result = runner.sub("--memwatch-soak", "--memwatch-json=r.json", "--memwatch-html=r.html",
                        "-rf")
    result.assert_outcomes(passed=2, failed=1)
    out = result.stdout.str()
    # The failure states the rate, its interval and the limit.
    result.stdout.re_match_lines([
        r"FAILED test_soaks.py::test_leaky - soak: rss grows \+[0-9.]+ GiB/h over .*",
    ])
    [soak] = runner.verdicts(result, "memwatch soak:")
    assert soak[1].startswith("95% CI +"), soak
    # Reported as a memory verdict, like max_growth's: "M" and "FAILED (memwatch)".
    # (The soak progress lines interleave with the status letters.)
    assert "M" in [line.strip()[-1:] for line in result.stdout.lines if line.strip()]
    result.stdout.re_match_lines(
        [r"FAILED \(memwatch\) test_soaks.py::test_leaky - memwatch soak: .*"]
    )
    assert "Failed: memwatch soak" not in out
    leaky = results(pytester)["test_leaky"]
    (verdict,) = [v for v in leaky["verdicts"] if v["kind"] == "soak"]
    assert not verdict["passed"] and leaky["outcome"] == "failed"
    assert verdict["message"].startswith("soak: rss grows +")
    assert "(95% CI +" in verdict["message"]
    assert verdict["message"].endswith(
        "after the 0.3s warmup and is still climbing; with no max_growth_rate any steady "
        'climb fails (allow some with max_growth_rate="1 MiB/h")'
    )
    # The failure section: the message as a headline with its details below.
    from pytest_memwatch.engine.messages import message_lines

    head, *details = message_lines(verdict["message"])
    assert f"memwatch {head}\n" + "".join(f"  {d}\n" for d in details) in out
    data = leaky["soak"]
    assert (data["duration_s"], data["interval_s"], data["warmup_s"]) == (3.0, 0.05, 0.3)
    assert data["complete"] is True and data["plateau"] is False and data["limit_rate"] is None
    assert data["rate"]["metric"] == "rss" and data["rate"]["slope"] > 1024**3 / 3600
    assert data["samples_path"] == ".memwatch/soak/" + samples_filename(
        "test_soaks.py::test_leaky"
    )
    assert 50 <= len(data["samples"]) <= 70
    assert set(data["samples"][0]) >= {"t", "rss", "traced", "gc_objects", "fds", "threads"}

    saw = results(pytester)["test_sawtooth"]
    (verdict,) = [v for v in saw["verdicts"] if v["kind"] == "soak"]
    assert verdict["passed"] and saw["outcome"] == "passed", verdict["message"]
    assert verdict["message"].endswith(", within the limit of +1.0 MiB/h")
    assert saw["soak"]["limit_rate"] == pytest.approx(1024 * 1024 / 3600)

    page = (pytester.path / "r.html").read_text()
    assert page.count('<h4 class="mw-h">Soak</h4>') == 2
    # Progress goes to a log (not a terminal) as plain lines, the first at the start.
    result.stdout.re_match_lines([
        r"memwatch soak test_soaks.py::test_leaky: 0\.[0-9]s of 3\.0s \(\d\.\ds left\), "
        r"rss [0-9.]+ MiB, rate after the warmup, \d+ samples",
    ])
    # Samples went to disk, one file per test, with a header and an end line.
    found = read_samples(samples_file(pytester, "test_soaks.py::test_leaky"))
    assert found.complete and found.header["nodeid"] == "test_soaks.py::test_leaky"
    assert found.last_t >= 3.0 and len(found.samples) >= 55


def test_soak_duration_caps_every_soak_test(pytester: pytest.Pytester, runner: Runner) -> None:
    pytester.makepyfile(
        test_nightly="""
        import pytest

        @pytest.mark.soak("8h", interval="30s", max_growth_rate="1 MiB/h")
        def test_overnight(soak):
            assert soak.duration == 2.0
            assert soak.interval == 0.1
            soak.run(lambda: soak.sleep(0.01))
        """
    )
    start = time.monotonic()
    result = runner.sub("--memwatch-soak", "--memwatch-soak-duration=2s", "--memwatch-json=r.json")
    result.assert_outcomes(passed=1)
    assert time.monotonic() - start < 60
    data = results(pytester)["test_overnight"]["soak"]
    assert data["duration_s"] == 2.0 and data["capped_from"] == 8 * 3600
    assert data["interval_s"] == 0.1 and data["warmup_s"] == pytest.approx(0.2)
    assert data["complete"] is True


BAD = [
    ('"10s", interval="30s"', "interval 30s is longer than the duration 10s: no sample would "
     "fall inside the run"),
    ('"10m", warmup="1h"', "warmup 1h00m is not shorter than the duration 10m00s: nothing "
     "would be left to judge"),
    ('"soon"', "duration='soon': cannot read 'soon' as a duration; use \"90s\", \"30m\", "
     "\"8h\" or a number of seconds"),
    ('"1h", max_growth_rate="1 MiB"', "max_growth_rate='1 MiB': cannot read '1 MiB' as a "
     "rate; use \"1 MiB/h\", \"512 KiB/min\""),
]


def test_bad_soak_values_error_that_test_at_setup(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    tests = "".join(
        f"@pytest.mark.soak({marker})\ndef test_bad_{i}(soak):\n    pass\n\n"
        for i, (marker, _) in enumerate(BAD)
    )
    pytester.makepyfile(test_bad="import pytest\n\n" + tests + "def test_fine():\n    pass\n")
    result = runner.inproc("--memwatch-soak")
    result.assert_outcomes(passed=1, errors=len(BAD))
    for i, (marker, problem) in enumerate(BAD):
        args = marker.replace('"', "'")
        result.stdout.fnmatch_lines([
            f"memwatch: test_bad.py::test_bad_{i}: bad marker @pytest.mark.soak({args}): "
            f"{problem}. Expected soak(duration='10m', *, interval='30s', "
            "max_growth_rate=None, warmup='10%'), e.g. @pytest.mark.soak(\"8h\", "
            "interval=\"30s\", max_growth_rate=\"1 MiB/h\", warmup=\"10%\"). To opt this "
            "test out: @pytest.mark.memwatch_skip(reason).",
        ])
    assert "During handling" not in result.stdout.str()


def test_soak_fixture_without_marker_errors_at_setup(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makepyfile(
        test_nomark="""
        def test_forgot(soak):
            pass
        """
    )
    result = runner.inproc()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "memwatch: test_nomark.py::test_forgot: the soak fixture needs a soak marker on the "
        "test, e.g. @pytest.mark.soak(\"8h\", interval=\"30s\", max_growth_rate=\"1 MiB/h\", "
        "warmup=\"10%\")",
    ])


# -- signals, SIGKILL and resume ---------------------------------------------------------

LONG = """
    import pytest

    @pytest.mark.soak("{duration}s", interval="{interval}s")
    def test_long(soak):
        for tick in soak:
            soak.sleep(0.01)

    def test_after():
        pass
"""


def start(pytester: pytest.Pytester, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_MEMWATCH")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pytester.path),
                                                      env.get("PYTHONPATH", "")]))
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--memwatch-soak", *args],
        cwd=pytester.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def wait_for_samples(path: Path, until_t: float, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            lines = []
        samples = [json.loads(line) for line in lines[1:] if line.endswith("}")]
        if samples and samples[-1].get("t", 0) >= until_t:
            return
        time.sleep(0.05)
    raise AssertionError(f"no sample at t >= {until_t} in {path}; exit status {proc.poll()}")


def test_sigterm_ends_the_test_with_a_partial_verdict(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_long=LONG.format(duration=60, interval=0.1))
    path = samples_file(pytester, "test_long.py::test_long")
    proc = start(pytester, "--memwatch-json=r.json")
    wait_for_samples(path, 1.5, proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=SUBPROCESS_TIMEOUT)
    # pytest stops after the test, reports it and writes the results: "interrupted".
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    assert "Interrupted: memwatch: soak run stopped by SIGTERM" in out
    assert "test_after" not in out.split("short test summary")[0].split("test_long.py")[-1]
    test = results(pytester)["test_long"]
    assert test["outcome"] == "passed"
    data = test["soak"]
    assert data["complete"] is False and data["stop_reason"] == "SIGTERM"
    assert 1.5 <= data["elapsed_s"] < 10
    (verdict,) = [v for v in test["verdicts"] if v["kind"] == "soak"]
    assert verdict["message"].startswith("soak (partial: interrupted by SIGTERM after ")
    assert verdict["details"]["complete"] is False
    found = read_samples(path)
    assert not found.complete and found.end is not None and found.end["reason"] == "SIGTERM"


def test_sigkill_loses_at_most_one_interval_and_resume_completes_the_run(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    duration, interval = 12.0, 0.5
    pytester.makepyfile(test_long=LONG.format(duration=duration, interval=interval))
    path = samples_file(pytester, "test_long.py::test_long")
    proc = start(pytester)
    wait_for_samples(path, 4.0, proc)
    time.sleep(0.3)  # between two samples
    proc.kill()
    killed_at = time.time()
    proc.communicate(timeout=SUBPROCESS_TIMEOUT)
    assert proc.returncode == -signal.SIGKILL

    found = read_samples(path)
    assert found.end is None and not found.complete
    # Every sample taken reached the file: the last is within one interval of the kill.
    lost = (killed_at - found.header["started_unix"]) - found.last_t
    assert 0 <= lost <= interval + 0.25, (lost, found.last_t)
    done = found.last_t

    started = time.monotonic()
    result = runner.sub("--memwatch-soak", "--memwatch-soak-resume", "--memwatch-json=r.json")
    result.assert_outcomes(passed=2)
    # Only the time that was left ran.
    assert time.monotonic() - started < duration - done + 20
    data = results(pytester)["test_long"]["soak"]
    assert data["complete"] is True and data["stop_reason"] is None
    assert data["resumed_at"] == [pytest.approx(done, abs=0.001)]
    assert duration <= data["elapsed_s"] < duration + 1
    times = [s["t"] for s in data["samples"]]
    assert times[0] < 0.1 and times[-1] >= duration
    # The samples cover the whole run, with no gap longer than about one interval.
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) <= interval + 0.3, max(gaps)
    again = read_samples(path)
    assert again.complete and again.resumes == [done]
    assert again.samples[: len(found.samples)] == found.samples


def test_resume_with_a_corrupt_file_errors_and_keeps_it(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytester.makepyfile(test_long=LONG.format(duration=2, interval=0.1))
    path = samples_file(pytester, "test_long.py::test_long")
    path.parent.mkdir(parents=True)
    path.write_text('{"format": "pytest-memwatch-soak", "version": 1, "nodeid": "x"\n')
    before = path.read_bytes()
    result = runner.inproc("--memwatch-soak", "--memwatch-soak-resume")
    result.assert_outcomes(passed=1, errors=1)
    rel = path.relative_to(pytester.path)
    result.stdout.fnmatch_lines([
        f"memwatch: test_long.py::test_long: cannot resume: {pytester.path / rel}:1: not "
        "valid JSON: Expecting ',' delimiter: line 1 column 63 (char 62). The file is left as "
        "it is: repair or delete it, or run without --memwatch-soak-resume",
    ])
    assert path.read_bytes() == before


def test_under_xdist_each_worker_streams_and_the_controller_reports(
    pytester: pytest.Pytester, runner: Runner
) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(test_soaks=SUITE)
    result = runner.sub("--memwatch-soak", "-n", "2", "--memwatch-json=r.json",
                        "--junit-xml=j.xml")
    result.assert_outcomes(passed=2, failed=1)
    tests = results(pytester)
    assert {tests["test_leaky"]["worker"], tests["test_sawtooth"]["worker"]} <= {"gw0", "gw1"}
    assert tests["test_leaky"]["soak"]["complete"] and tests["test_sawtooth"]["soak"]["complete"]
    junit = (pytester.path / "j.xml").read_text()
    assert 'name="memwatch_soak" value="failed"' in junit
    assert 'name="memwatch_soak_rate"' in junit
