"""The soak engine without pytest in the loop: plans, the verdict, samples files, runs."""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_memwatch import soak
from pytest_memwatch.base.verdict import Verdict
from pytest_memwatch.config.markers import SOAK
from pytest_memwatch.reports.soak import report_document
from pytest_memwatch.reports.validation import validate

KiB = 1024
MiB = 1024 * 1024
HOUR = 3600.0


def plan_for(
    *args: Any, cap: float | None = None, nodeid: str = "t.py::test_x", **kwargs: Any
) -> soak.SoakPlan:
    return soak.make_plan(nodeid, SOAK.parse(args, kwargs), cap=cap)


# -- plans ----------------------------------------------------------------------------


def test_plan_from_the_marker_defaults() -> None:
    plan = plan_for()
    assert (plan.duration_s, plan.interval_s, plan.warmup_s) == (600.0, 30.0, 60.0)
    assert plan.limit_rate is None and plan.capped_from is None


def test_plan_reads_every_argument() -> None:
    plan = plan_for("8h", interval="10s", max_growth_rate="1 MiB/h", warmup="5m")
    assert (plan.duration_s, plan.interval_s, plan.warmup_s) == (28800.0, 10.0, 300.0)
    assert plan.limit_rate == pytest.approx(MiB / HOUR)


def test_cap_shortens_the_run_keeps_warmup_seconds_and_enough_samples() -> None:
    # The nightly 8-hour test in a 10-minute pull-request run.
    plan = plan_for("8h", interval="1m", warmup="30m", cap=600)
    assert plan.duration_s == 600 and plan.capped_from == 28800
    assert plan.warmup_s == 300  # at most half the capped run
    assert plan.interval_s == 30  # at least 20 samples
    assert plan_for("8h", warmup="2m", cap=600).warmup_s == 120
    assert plan_for("8h", warmup="10%", cap=600).warmup_s == 60
    # A cap longer than the test changes nothing.
    assert plan_for("20s", interval="1s", cap=600) == plan_for("20s", interval="1s")


def test_interval_longer_than_duration_is_an_error() -> None:
    with pytest.raises(soak.SoakError) as exc:
        plan_for("10s", interval="30s")
    assert str(exc.value) == (
        "interval 30s is longer than the duration 10s: no sample would fall inside the run"
    )


def test_warmup_not_shorter_than_duration_is_an_error() -> None:
    with pytest.raises(soak.SoakError) as exc:
        plan_for("10m", warmup="10m")
    assert str(exc.value) == (
        "warmup 10m00s is not shorter than the duration 10m00s: nothing would be left to judge"
    )


def test_samples_filename_is_safe_and_unique() -> None:
    a = soak.samples_filename("tests/test_app.py::test_soak[8h/../x y]")
    b = soak.samples_filename("tests/test_app.py::test_soak[8h/../x_y]")
    assert a != b
    assert a.startswith("tests_test_app.py__test_soak_8h_.._x_y-") and a.endswith(".jsonl")
    assert "/" not in a and " " not in a and not a.startswith(".")
    assert len(soak.samples_filename("t.py::" + "x" * 1000)) < 140


def test_format_rate_and_seconds() -> None:
    assert soak.format_rate(MiB / HOUR) == "+1.0 MiB/h"
    assert soak.format_rate(-512 * KiB / HOUR) == "-512.0 KiB/h"
    assert soak.format_rate(None) == "n/a"
    assert [soak.format_seconds(s) for s in (0.05, 0.5, 2.5, 3.0, 90, 7200)] == [
        "0.05s", "0.5s", "2.5s", "3s", "1m30s", "2h00m",
    ]


# -- the bounded buffer -----------------------------------------------------------------


def test_buffer_stays_within_its_capacity_and_thins_evenly() -> None:
    buf = soak.SampleBuffer(capacity=8)
    for i in range(100):
        buf.add(float(i), {"rss": i, "fds": None})
    kept = buf.samples()
    assert len(kept) <= 8 and buf.seen == 100
    assert [s["t"] for s in kept] == [float(i) for i in range(0, 100, buf.stride)]
    assert all(s["fds"] is None for s in kept)
    assert buf.last is not None and buf.last["t"] == 99.0


def test_buffer_keeps_the_same_samples_for_the_same_stream() -> None:
    a, b = soak.SampleBuffer(capacity=16), soak.SampleBuffer(capacity=16)
    for i in range(77):
        a.add(i * 0.5, {"rss": i})
    for i in range(77):
        b.add(i * 0.5, {"rss": i})
    assert a.samples() == b.samples()


# -- the verdict ------------------------------------------------------------------------

Shape = Callable[[float], float]


def series(
    shape: Shape,
    *,
    duration: float = 1200.0,
    interval: float = 1.0,
    seed: int = 1,
    jitter: float = 32 * KiB,
    fds: Callable[[float], int] = lambda t: 12,
    threads: Callable[[float], int] = lambda t: 3,
) -> list[dict[str, Any]]:
    """A simulated soak: 200 MiB plus ``shape(t)``, page-granular, with jitter and spikes."""
    rng = random.Random(seed)
    out = []
    for i in range(int(duration / interval) + 1):
        t = i * interval
        spike = rng.uniform(0.5, 2) * MiB if rng.random() < 0.01 else 0.0
        rss = 200 * MiB + shape(t) + rng.gauss(0, jitter) + spike
        out.append(
            {"t": t, "rss": 4096 * round(rss / 4096), "fds": fds(t), "threads": threads(t)}
        )
    return out


def judge(samples: list[dict[str, Any]], *, limit: float | None = None,
          complete: bool = True) -> Verdict:
    duration = samples[-1]["t"]
    plan = soak.SoakPlan("t.py::test_x", duration, 1.0, 0.1 * duration, limit)
    analysis = soak.analyze(samples, plan.warmup_s)
    return soak.soak_verdict(plan, analysis, complete=complete, elapsed=duration,
                             stop_reason=None if complete else "SIGTERM")


def test_a_1_mib_per_hour_leak_fails_a_20_minute_run() -> None:
    v = judge(series(lambda t: MiB * t / HOUR))
    assert not v.passed
    assert v.kind == "soak" and v.metric == "rss" and v.limit is None
    assert v.measured == pytest.approx(MiB / HOUR, rel=0.3)
    rate = v.details["rate"]
    assert rate["low"] > 0 and rate["low"] <= v.measured <= rate["high"]
    assert v.message.startswith("soak: rss grows +")
    low, high = soak.format_rate(rate["low"]), soak.format_rate(rate["high"])
    assert f"(95% CI {low}..{high})" in v.message
    assert v.message.endswith(
        "over 18m00s after the 2m00s warmup and is still climbing; with no max_growth_rate "
        'any steady climb fails (allow some with max_growth_rate="1 MiB/h")'
    )


def test_a_leak_over_the_limit_names_rate_interval_and_limit() -> None:
    v = judge(series(lambda t: 4 * MiB * t / HOUR), limit=MiB / HOUR)
    assert not v.passed and v.limit == pytest.approx(MiB / HOUR)
    r = v.details["rate"]
    assert v.message == (
        f"soak: rss grows {soak.format_rate(r['slope'])} (95% CI {soak.format_rate(r['low'])}"
        f"..{soak.format_rate(r['high'])}) over 18m00s after the 2m00s warmup, "
        "over the limit of +1.0 MiB/h"
    )


def test_growth_under_the_limit_passes() -> None:
    v = judge(series(lambda t: 0.3 * MiB * t / HOUR), limit=MiB / HOUR)
    assert v.passed, v.message
    assert v.message.endswith(", within the limit of +1.0 MiB/h")


@pytest.mark.parametrize("seed", range(3))
def test_a_sawtooth_passes(seed: int) -> None:
    # A 16 MiB buffer filled over 2 minutes and flushed: memory saws, it does not climb.
    v = judge(series(lambda t: 16 * MiB * ((t % 120) / 120), seed=seed))
    assert v.passed, v.message
    assert v.details["plateau"] is True


@pytest.mark.parametrize("seed", range(3))
def test_a_plateau_passes(seed: int) -> None:
    # A cache that fills 20 MiB over its first 5 minutes and stays full.
    v = judge(series(lambda t: 20 * MiB * min(1.0, t / 300), seed=seed))
    assert v.passed, v.message
    assert v.details["shape"] == "levelled off (plateau)"
    assert v.details["rate"]["slope"] > 0


def test_rss_creep_alone_is_not_a_leak_unless_budgeted() -> None:
    # As measured on a clean bounded cache of random-size strings: RSS creeps up
    # while the heap fragments, the allocators' own counts stay flat.
    samples = [
        {**s, "malloc": 50 * MiB + int(s["t"]) % 7 * 100, "blocks": 300_000 + int(s["t"]) % 5}
        for s in series(lambda t: 400 * KiB * math.log1p(t / 60))
    ]
    v = judge(samples)
    assert v.passed, v.message
    assert v.message.endswith(
        ": climbs in rss only, while neither malloc bytes nor allocated blocks grow (a "
        "fragmenting heap keeps its pages, nothing is kept alive); budget it with "
        "max_growth_rate if it matters"
    )
    assert v.details["allocators_climbing"] == {"malloc": False, "blocks": False}
    # A budget is for what the OS charges, whatever the cause.
    assert not judge(samples, limit=0.5 * MiB / HOUR).passed
    # The same climb with allocated blocks climbing too: small objects are kept.
    leaky = [{**s, "blocks": 300_000 + int(s["t"] * 3)} for s in samples]
    assert not judge(leaky).passed


def test_flat_memory_passes() -> None:
    v = judge(series(lambda t: 0.0))
    assert v.passed and v.details["shape"] == "flat", v.message


def test_a_thread_that_stays_fails_however_few() -> None:
    v = judge(series(lambda t: 0.0, threads=lambda t: 3 if t < 700 else 4))
    assert not v.passed
    assert v.message.endswith("; threads grew from 3 to 4 after warmup (must not grow at all)")


def test_a_file_open_for_a_moment_is_not_growth() -> None:
    v = judge(series(lambda t: 0.0, fds=lambda t: 13 if int(t) % 50 == 0 else 12))
    assert v.passed, v.message
    assert v.details["resources"]["fds"] == {"start": 12, "end": 12}


def test_too_few_samples_is_no_verdict() -> None:
    v = judge(series(lambda t: MiB * t, duration=5.0))
    assert v.passed and v.measured is None
    assert v.message == (
        "soak: too few samples after the 0.5s warmup to fit a trend (5, need 8): "
        "sample more often or run longer"
    )


def test_partial_verdict_says_why_and_when() -> None:
    v = judge(series(lambda t: MiB * t / HOUR, duration=600), complete=False)
    assert v.message.startswith("soak (partial: interrupted by SIGTERM after 10m00s of 10m00s): ")
    assert v.details["complete"] is False and v.details["stop_reason"] == "SIGTERM"


def resumed(shape: Shape, kill_at: float, restart_drop: float) -> list[dict[str, Any]]:
    """A run killed at ``kill_at`` and resumed by a fresh process, ``restart_drop`` lower."""
    out = []
    for s in series(shape):
        if s["t"] <= kill_at:
            out.append({**s, "segment": 0})
        else:
            # The fresh process starts lower and warms up again for two minutes.
            warm = restart_drop * math.exp(-(s["t"] - kill_at) / 20)
            out.append({**s, "rss": s["rss"] - restart_drop + 0 * warm, "segment": 1})
    return out


def test_a_resumed_leak_still_fails_and_a_resumed_flat_run_passes() -> None:
    # Without rebasing, the drop at the restart would read as memory given back.
    assert not judge(resumed(lambda t: MiB * t / HOUR, 500, 30 * MiB)).passed
    # Without rebasing, a restart that comes back higher would read as a leak.
    v = judge(resumed(lambda t: 0.0, 500, -30 * MiB))
    assert v.passed, v.message


# -- samples files -----------------------------------------------------------------------


HEADER = {
    "format": "pytest-memwatch-soak", "version": 1, "nodeid": "t.py::test_x",
    "duration_s": 20.0, "interval_s": 0.5, "warmup_s": 2.0, "limit_rate": None,
}


def write_lines(path: Path, *records: dict[str, Any] | str) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)
    )
    return path


def sample(t: float, rss: int = 100 * MiB) -> dict[str, Any]:
    return {"t": t, "rss": rss, "traced": None, "gc_objects": 10, "fds": 5, "threads": 2}


def test_read_samples_with_resumes_and_end(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "s.jsonl", HEADER, sample(0), sample(0.5),
        {"event": "resume", "t": 0.5, "at": "x", "pid": 1},
        sample(0.6), {"event": "mystery", "t": 1}, sample(1.1),
        {"event": "end", "t": 1.1, "complete": False, "reason": "SIGTERM"},
    )
    found = soak.read_samples(path)
    assert [(s["t"], s["segment"]) for s in found.samples] == [
        (0.0, 0), (0.5, 0), (0.6, 1), (1.1, 1)
    ]
    assert found.resumes == [0.5] and not found.complete and found.last_t == 1.1
    assert found.samples[0]["malloc"] is None
    assert found.plan() == soak.SoakPlan("t.py::test_x", 20.0, 0.5, 2.0, None)


@pytest.mark.parametrize(
    ("records", "tail", "message"),
    [
        ([], "", "s.jsonl: empty file, not a soak samples file (no header line)"),
        ([{"format": "other"}], "", 's.jsonl:1: not a soak samples file (the first line '
         'must be a header with "format": "pytest-memwatch-soak")'),
        ([{**HEADER, "version": 9}], "", "s.jsonl:1: samples format version 9 is not "
         "supported (this pytest-memwatch reads version 1)"),
        ([HEADER, sample(0), "{not json"], "", "s.jsonl:3: not valid JSON: Expecting "
         "property name enclosed in double quotes: line 1 column 2 (char 1)"),
        ([HEADER, sample(0)], '{"t": 0.5, "rss": 12', "s.jsonl:3: not valid JSON (the file "
         "was cut short): Expecting ',' delimiter: line 1 column 21 (char 20)"),
        ([HEADER, sample(1), sample(0.5)], "", "s.jsonl:3: sample time t=0.5 goes back "
         "(previous 1.0)"),
        ([HEADER, {"t": "soon"}], "", "s.jsonl:2: sample without a number t from 0 to 31622400 s ('soon')"),
        ([HEADER, {**sample(0), "rss": 1.5}], "", "s.jsonl:2: rss must be a whole number or "
         "null, got 1.5"),
        ([HEADER, [1, 2]], "", "s.jsonl:2: expected a JSON object, got list"),
    ],
    ids=["empty", "foreign", "version", "corrupt", "truncated", "time", "no-t", "float", "list"],
)
def test_read_samples_names_file_and_line(
    tmp_path: Path, records: list[Any], tail: str, message: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_lines(Path("s.jsonl"), *records)
    with path.open("a") as f:
        f.write(tail)
    with pytest.raises(soak.SoakError) as exc:
        soak.read_samples(path)
    assert str(exc.value) == message


def test_resume_needs_the_same_test_and_settings(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "s.jsonl", HEADER, sample(0))
    found = soak.read_samples(path)
    soak.check_resumable(found, soak.SoakPlan("t.py::test_x", 20.0, 0.5, 2.0, 123.0))
    with pytest.raises(soak.SoakError) as exc:
        soak.check_resumable(found, soak.SoakPlan("t.py::test_y", 20.0, 0.5, 2.0))
    assert str(exc.value) == (
        f"cannot resume from {path}: it holds the samples of 't.py::test_x', not of "
        "'t.py::test_y'. Delete it, or run without --memwatch-soak-resume"
    )
    with pytest.raises(soak.SoakError) as exc:
        soak.check_resumable(found, soak.SoakPlan("t.py::test_x", 10.0, 0.5, 1.0))
    assert str(exc.value) == (
        f"cannot resume from {path}: it was recorded with other settings (duration 20s "
        "then, 10s now; warmup 2s then, 1s now). Run with the same marker and "
        "--memwatch-soak-duration, delete the file to start over, or run without "
        "--memwatch-soak-resume"
    )


# -- runs ---------------------------------------------------------------------------------


def quick_plan(duration: float = 0.6, interval: float = 0.02) -> soak.SoakPlan:
    # In process, the run shares the test process's heap: judged against a
    # generous limit, as these tests are about the mechanics, not the verdict.
    return soak.SoakPlan("t.py::test_quick", duration, interval, 0.5 * duration, 1e12)


def test_a_run_streams_samples_and_ends_complete(tmp_path: Path) -> None:
    shown: list[soak.SoakProgress] = []
    run = soak.SoakRun.prepare(quick_plan(), tmp_path, progress=shown.append,
                               progress_every=0.2, meta={"pytest_version": "9"})
    handle = soak.SoakHandle(run)
    ticks = list(handle)
    outcome = run.finish()
    assert outcome is not None and outcome.verdict.passed, outcome and outcome.verdict.message
    assert ticks[0].index == 0 and ticks[-1].index == len(ticks) - 1
    # Each tick reports the reading that let the loop go on: never past the duration.
    assert all(0 <= t.elapsed < 0.6 and t.remaining == pytest.approx(0.6 - t.elapsed) for t in ticks)
    assert run.path is not None and run.path.name == soak.samples_filename("t.py::test_quick")
    found = soak.read_samples(run.path)
    assert found.complete and found.header["pytest_version"] == "9"
    assert found.header["started_unix"] == pytest.approx(time.time(), abs=30)
    times = [s["t"] for s in found.samples]
    assert times[0] < 0.05 and times[-1] >= 0.6
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) < 0.5, gaps
    data = outcome.data
    assert data["complete"] is True and data["samples_path"] == str(run.path)
    assert data["rate"] is not None and data["elapsed_s"] >= 0.6
    assert shown[0].samples >= 1 and shown[0].in_warmup and shown[-1].final
    assert re.fullmatch(
        r"memwatch soak t\.py::test_quick: 0\.[01]s of 0\.6s \(0\.[56]s left\), "
        r"rss [0-9.]+ MiB, rate after the warmup, [0-9]+ samples",
        soak.format_progress(shown[0]),
    )
    # finish() decides once; the sampler thread is gone.
    assert run.finish() is outcome
    assert not any(t.name == "memwatch-soak" for t in threading.enumerate())


def test_run_step_function_and_samples_without_iteration(tmp_path: Path) -> None:
    # Samples 0.2 s apart: each is a full collection of this test process's heap,
    # which late in the whole suite is big enough to starve a faster cadence.
    run = soak.SoakRun(quick_plan(0.6, 0.2), None)
    count = soak.SoakHandle(run).run(lambda: time.sleep(0.001))
    outcome = run.finish()
    assert count > 3 and outcome is not None and outcome.data["samples_path"] is None
    # A step longer than the interval: the background thread samples meanwhile.
    run = soak.SoakRun(quick_plan(0.4, 0.02), None)
    soak.SoakHandle(run).run(lambda: time.sleep(0.4))
    outcome = run.finish()
    assert outcome is not None and len(outcome.data["samples"]) >= 5


def test_a_run_never_started_has_no_outcome() -> None:
    assert soak.SoakRun(quick_plan(), None).finish() is None


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="POSIX signals")
def test_sigterm_ends_the_run_with_a_partial_verdict_and_handlers_come_back(
    tmp_path: Path,
) -> None:
    before = signal.getsignal(signal.SIGTERM)
    run = soak.SoakRun.prepare(quick_plan(30.0, 0.05), tmp_path)
    handle = soak.SoakHandle(run)
    for tick in handle:
        if tick.elapsed > 0.3 and not handle.stopped:
            os.kill(os.getpid(), signal.SIGTERM)
        handle.sleep(0.01)
    outcome = run.finish()
    assert signal.getsignal(signal.SIGTERM) is before
    assert outcome is not None and outcome.stop_reason == "SIGTERM"
    assert outcome.data["complete"] is False and outcome.data["elapsed_s"] < 5
    assert outcome.verdict.message.startswith("soak (partial: interrupted by SIGTERM after ")
    assert run.path is not None
    end = json.loads(run.path.read_text().splitlines()[-1])
    assert end["event"] == "end" and end["complete"] is False and end["reason"] == "SIGTERM"


def test_resume_continues_from_the_time_already_done(tmp_path: Path) -> None:
    plan = quick_plan(0.6)
    path = tmp_path / soak.samples_filename(plan.nodeid)
    header = {**HEADER, **plan.header_fields()}
    write_lines(path, header, *(sample(i * 0.02) for i in range(16)))  # killed at 0.3 s
    # A clock that advances 1 ms per reading: what is checked is how much soak time
    # the resumed run adds, which a stall of this (busy) machine must not change.
    readings = itertools.count()
    run = soak.SoakRun.prepare(
        plan, tmp_path, resume=True, clock=lambda: next(readings) * 0.001
    )
    ticks = list(soak.SoakHandle(run))
    outcome = run.finish()
    assert outcome is not None and outcome.data["complete"] is True
    assert ticks[0].elapsed >= 0.3 and outcome.data["resumed_at"] == [0.3]
    found = soak.read_samples(path)
    assert found.complete and found.resumes == [0.3]
    assert found.samples[16]["t"] >= 0.3 and found.last_t >= 0.6
    # Only the time that was left was run.
    assert outcome.data["elapsed_s"] == pytest.approx(0.6, abs=0.1)


def test_resume_refuses_a_corrupt_file_and_leaves_it_alone(tmp_path: Path) -> None:
    plan = quick_plan()
    path = tmp_path / soak.samples_filename(plan.nodeid)
    write_lines(path, {**HEADER, **plan.header_fields()}, sample(0), "garbage")
    before = path.read_bytes()
    with pytest.raises(soak.SoakError) as exc:
        soak.SoakRun.prepare(plan, tmp_path, resume=True)
    assert str(exc.value) == (
        f"cannot resume: {path}:3: not valid JSON: Expecting value: line 1 column 1 (char 0). "
        "The file is left as it is: repair or delete it, or run without --memwatch-soak-resume"
    )
    assert path.read_bytes() == before


def test_a_complete_file_is_not_resumed(tmp_path: Path) -> None:
    plan = quick_plan(0.2)
    path = tmp_path / soak.samples_filename(plan.nodeid)
    write_lines(path, {**HEADER, **plan.header_fields()}, sample(0), sample(0.2),
                {"event": "end", "t": 0.2, "complete": True})
    run = soak.SoakRun.prepare(plan, tmp_path, resume=True)
    list(soak.SoakHandle(run))
    outcome = run.finish()
    assert outcome is not None and outcome.data["resumed_at"] == []
    assert soak.read_samples(path).resumes == []


def test_an_unwritable_directory_keeps_the_run_going(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    run = soak.SoakRun.prepare(quick_plan(0.2), blocker / "soak")
    list(soak.SoakHandle(run))
    outcome = run.finish()
    assert outcome is not None and outcome.data["samples_path"] is None
    assert outcome.data["write_error"].startswith(f"cannot write {blocker}/soak/")
    assert len(outcome.data["samples"]) > 5


# -- reading a run back ---------------------------------------------------------------------


def test_report_document_is_a_valid_results_document(tmp_path: Path) -> None:
    run = soak.SoakRun.prepare(quick_plan(0.3), tmp_path)
    list(soak.SoakHandle(run))
    live = run.finish()
    assert live is not None and run.path is not None
    doc = report_document(run.path)
    assert validate(doc) == []
    (test,) = doc["tests"]
    assert test["nodeid"] == "t.py::test_quick" and test["markers"] == ["soak"]
    # The file read back is judged exactly as the live run was.
    assert test["soak"]["rate"] == live.data["rate"]
    assert test["verdicts"][0]["message"] == live.verdict.message


def test_the_soak_engine_loads_without_the_reports_layer() -> None:
    # Layers: the report reader lives in reports and imports soak, never the other way.
    code = (
        "import sys, pytest_memwatch.soak as s\n"
        "assert all(hasattr(s, name) for name in s.__all__)\n"
        "print(sorted(m for m in sys.modules if m.startswith('pytest_memwatch.reports')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "[]\n"


def _with_heap(
    samples: list[dict[str, Any]], malloc: Shape, blocks: Shape, *, seed: int = 7
) -> list[dict[str, Any]]:
    """Add allocator counts: exact, with what is in flight as small noise."""
    rng = random.Random(seed)
    return [
        {
            **s,
            "malloc": int(60 * MiB + malloc(s["t"]) + rng.gauss(0, 8 * KiB)),
            "blocks": int(400_000 + blocks(s["t"]) + rng.gauss(0, 50)),
        }
        for s in samples
    ]


def test_a_heap_leak_inside_resident_pages_fails_its_budget() -> None:
    # A 10 KiB bytearray kept every second (35 MiB/h) while RSS stays flat:
    # the allocator reuses pages the process already holds.
    samples = _with_heap(series(lambda t: 0.0), lambda t: 10 * KiB * t, lambda t: 2 * t)
    v = judge(samples, limit=4 * MiB / HOUR)
    assert not v.passed
    assert v.metric == "malloc" and v.details["decided_by"] == "malloc"
    assert v.measured == pytest.approx(10 * KiB, rel=0.05)
    assert v.message.startswith("soak: malloc grows +35.")
    assert " while rss " in v.message and v.message.endswith(", over the limit of +4.0 MiB/h")
    assert set(v.details["rates"]) == {"rss", "malloc", "blocks"}
    # The RSS series stays the one plotted and reported as the soak's rate.
    assert v.details["rate"]["metric"] == "rss"
    # No limit: malloc bytes and blocks climb together, which is a leak too.
    assert not judge(samples).passed


def test_a_leak_of_small_objects_is_judged_on_blocks_at_16_bytes_each() -> None:
    # 100 small objects a second: 5.5 MiB/h at 16 B each, under RSS slack.
    samples = _with_heap(series(lambda t: 0.0), lambda t: 0.0, lambda t: 100 * t)
    v = judge(samples, limit=4 * MiB / HOUR)
    assert not v.passed and v.metric == "blocks", v.message
    assert v.measured == pytest.approx(1600, rel=0.05)
    assert "blocks (blocks counted as 16 B) grows" in v.message
    # The same count under a budget it fits in passes.
    assert judge(samples, limit=8 * MiB / HOUR).passed


@pytest.mark.parametrize("seed", range(3))
def test_a_heap_sawtooth_and_plateau_pass_under_a_budget(seed: int) -> None:
    flat = series(lambda t: 0.0, seed=seed)
    saw = _with_heap(flat, lambda t: 16 * MiB * ((t % 120) / 120), lambda t: 0.0, seed=seed)
    v = judge(saw, limit=4 * MiB / HOUR)
    assert v.passed and v.details["decided_by"] is None, v.message
    assert "(heap: malloc " in v.message
    fill = _with_heap(flat, lambda t: 20 * MiB * min(1.0, t / 300), lambda t: 0.0, seed=seed)
    assert judge(fill, limit=4 * MiB / HOUR).passed
    assert judge(fill).passed


def test_one_allocator_count_alone_does_not_fail_a_run_with_no_limit() -> None:
    # With a zero limit, one exact count alone would read noise as a trend now
    # and then: it needs RSS or the other count with it (a budget needs neither).
    samples = _with_heap(series(lambda t: 0.0), lambda t: 0.0, lambda t: 3 * t)
    assert judge(samples).passed
    assert not judge(samples, limit=1.0).passed
