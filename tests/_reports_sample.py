"""Realistic results documents for the reports tests, built with the engine's own classes.

The documents come from :class:`pytest_memwatch.reports.results.Results` and the
verdict engine fed with synthetic probe readings, so their shape is exactly
what the plugin produces; only the numbers are invented (deterministically).
"""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Any

from pytest_memwatch.base.probes import Sample
from pytest_memwatch.config.settings import Settings
from pytest_memwatch.engine import RepeatPlan
from pytest_memwatch.engine.verdicts import growth_verdict, peak_verdict
from pytest_memwatch.reports.results import Results, RunMeta, TestResult, totals

KiB = 1024
MiB = 1024 * 1024
XSS_ID = "tests/test_xss.py::test_name[<script>alert(1)</script>]"
LEAKY_ID = "tests/test_cache.py::test_cache_leaks"
SOAK_ID = "tests/test_recorder.py::test_recorder_soak"
CLEAN_ID = "tests/test_clean.py::test_clean"
MACHINE = {
    "hostname": "ci-runner-1",
    "system": "Linux",
    "release": "6.1.0",
    "arch": "x86_64",
    "cpu_count": 4,
    "total_memory": 8 * 1024 * MiB,
    "python_implementation": "CPython",
}


def _sample(t: float, rss: int, malloc: int, blocks: int, gc_objects: int = 50_000,
            fds: int = 12, threads: int = 1) -> Sample:
    return Sample(t=t, rss=rss, malloc=malloc, blocks=blocks, gc_objects=gc_objects, fds=fds,
                  threads=threads)


def single_run(nodeid: str, *, rss_growth: int, malloc_growth: int | None = None,
               blocks: int = 0, peak: int = 2 * MiB, limit: int | None = None,
               outcome: str = "passed", duration: float = 0.05, markers: list[str] | None = None
               ) -> TestResult:
    """A test measured once (``--memwatch``), optionally under a ``max_growth`` limit."""
    malloc_growth = rss_growth if malloc_growth is None else malloc_growth
    before = _sample(10.0, 80 * MiB, 20 * MiB, 300_000)
    after = _sample(10.05, 80 * MiB + rss_growth, 20 * MiB + malloc_growth, 300_000 + blocks)
    delta = after.minus(before)
    verdicts = []
    if limit is not None:
        measured = float(max(rss_growth, malloc_growth))
        verdicts.append(
            growth_verdict(measured, limit, source="marker", runs=1, details={"delta": delta})
            .to_dict()
        )
    return TestResult(
        nodeid=nodeid, outcome=outcome, duration_s=duration, before=before.to_dict(),
        after=after.to_dict(), growth=delta, peak_rss=before.rss + peak if before.rss else None,
        peak_growth=peak, verdicts=verdicts, markers=markers or [],
    )


def repeated(nodeid: str, *, per_run: int, warmup: int = 2, runs: int = 5,
             noise: tuple[int, ...] = (0,)) -> tuple[TestResult, RepeatPlan]:
    """A test re-run ``warmup + runs`` times, leaking ``per_run`` bytes each time."""
    # A clock of its own: the verdict's CPU-time figures must be the same each time.
    ticks = itertools.count(0.0, 0.02)
    plan = RepeatPlan(warmup, runs, extend=False, clock=lambda: next(ticks))
    rss, malloc, blocks = 90 * MiB, 25 * MiB, 400_000
    t = 1.0
    records = []
    while plan.wants_more():
        i = len(plan.records)
        before = _sample(t, rss, malloc, blocks)
        # The first warmup run fills caches: a one-time cost the verdict must ignore.
        extra = 2 * MiB if i == 0 else 0
        rss += per_run + extra + noise[i % len(noise)]
        malloc += per_run + extra
        blocks += per_run // 64 + (500 if i == 0 else 0)
        t += 0.02
        after = _sample(t, rss, malloc, blocks)
        plan.record(before, after, peak_rss=rss + MiB)
        records.append((before, after))
    last_before, last_after = records[-1]
    test = TestResult(
        nodeid=nodeid, duration_s=0.3, before=last_before.to_dict(), after=last_after.to_dict(),
        growth=last_after.minus(last_before), peak_rss=last_after.rss + MiB if last_after.rss
        else None, peak_growth=MiB + per_run, runs=[r.to_dict() for r in plan.records],
        markers=["no_leaks"],
    )
    return test, plan


def attribution() -> dict[str, Any]:
    return {
        "trace_frames": 10,
        "runs": 3,
        "traced_growth": 3 * 64 * KiB,
        "sites": [
            {
                "size": 3 * 64 * KiB,
                "count": 3,
                "traceback": [
                    {"filename": "reference_app/cache.py", "lineno": 88,
                     "line": "self._entries[key] = bytearray(size)"},
                    {"filename": "tests/test_cache.py", "lineno": 14,
                     "line": "cache.put(f'k{i}', 65536)  # <b>not bold</b>"},
                ],
            },
            {
                "size": 2 * KiB,
                "count": 6,
                "traceback": [
                    {"filename": "reference_app/cache.py", "lineno": 90,
                     "line": "self._order.append(key)"},
                ],
            },
        ],
        "types": [
            {"type": "bytearray", "delta": 3, "count": 812},
            {"type": "reference_app.cache.Entry", "delta": 3, "count": 3},
        ],
        "chains": [
            {
                "type": "bytearray",
                "repr": "bytearray(b'\\x00\\x00...')",
                "chain": [
                    {"type": "module", "repr": "<module 'reference_app.cache'>",
                     "via": "._GLOBAL_CACHE"},
                    {"type": "reference_app.cache.AdaptiveCache",
                     "repr": "<AdaptiveCache size=3>", "via": ".__dict__"},
                    {"type": "dict", "repr": "{'_entries': {...}}", "via": "['_entries']"},
                    {"type": "dict", "repr": "{'k0': <Entry>, ...}", "via": "['k0']"},
                    {"type": "bytearray", "repr": "bytearray(b'\\x00\\x00...')", "via": None},
                ],
            }
        ],
        "note": None,
    }


def soak_series(*, slope: float = 2000.0, n: int = 61, interval: float = 10.0,
                warmup: float = 60.0, limit: float | None = 1 * MiB / 3600) -> dict[str, Any]:
    """A 10-minute soak: RSS rising fast during warmup, then ``slope`` bytes/s with noise."""
    samples = []
    for i in range(n):
        t = i * interval
        warm = min(t, warmup) * 40 * KiB  # warmup ramp
        wiggle = ((i * 7919) % 13 - 6) * 2 * KiB
        rss = int(120 * MiB + warm + slope * max(0.0, t - warmup) + wiggle)
        samples.append({"t": t, "rss": rss, "traced": 4 * MiB + i * 100, "gc_objects": 60_000,
                        "fds": 14, "threads": 3})
    return {
        "duration_s": (n - 1) * interval,
        "interval_s": interval,
        "warmup_s": warmup,
        "samples": samples,
        "rate": {"slope": slope, "low": slope * 0.8, "high": slope * 1.2, "n": n - 6},
        "limit_rate": limit,
        "plateau": False,
        "complete": True,
        "samples_path": None,
    }


def sample_results() -> Results:
    """Leaky and clean tests, an XSS test id, a soak test and an unmeasured one."""
    leaky, plan = repeated(LEAKY_ID, per_run=64 * KiB)
    leaky.verdicts = [
        plan.leak_verdict().to_dict(),
        growth_verdict(*plan.growth_per_call()[:1], 16 * KiB, source="marker",
                       runs=len(plan.measured), details={}).to_dict(),
    ]
    leaky.attribution = attribution()
    leaky.markers = ["no_leaks", "max_growth"]

    steady, steady_plan = repeated("tests/test_cache.py::test_cache_bounded", per_run=0,
                                   noise=(4096, -4096, 0))
    steady.verdicts = [steady_plan.leak_verdict().to_dict()]

    xss = single_run(XSS_ID, rss_growth=12 * KiB, blocks=3, limit=MiB)
    xss.verdicts.append({
        "kind": "max_memory", "source": "marker", "passed": False,
        "message": "max_memory: </script><script>alert('verdict')</script> over the limit",
        "metric": "peak_rss", "limit": 1.0, "measured": 2.0,
        "details": {"note": "<img src=x onerror=alert(3)>"},
    })
    xss.attribution = {
        **attribution(),
        "chains": [{
            "type": "str", "repr": "'<img src=x onerror=alert(2)>'",
            "chain": [
                {"type": "module", "repr": "<module '__main__'>", "via": "['</script>']"},
                {"type": "str", "repr": "'<img src=x onerror=alert(2)>'", "via": None},
            ],
        }],
    }

    peaky = single_run("tests/test_audio.py::test_decode_large_clip", rss_growth=0,
                       peak=300 * MiB, markers=["max_memory"])
    peaky.verdicts = [peak_verdict(300 * MiB, 200 * MiB, source="marker").to_dict()]

    soak = TestResult(
        nodeid=SOAK_ID, duration_s=600.0, markers=["soak"], soak=soak_series(),
        verdicts=[{
            "kind": "soak", "source": "marker", "passed": False,
            "message": "soak: RSS grows +6.9 MiB/h after warmup, over the limit of 1.0 MiB/h",
            "metric": "rss", "limit": MiB / 3600, "measured": 2000.0, "details": {},
        }],
    )
    tests = [
        single_run(CLEAN_ID, rss_growth=0, malloc_growth=1_024, limit=MiB,
                   markers=["max_growth"]),
        leaky,
        steady,
        xss,
        single_run("tests/test_vtt.py::test_stream_large_file", rss_growth=3 * MiB,
                   malloc_growth=2 * MiB, blocks=120, duration=1.5),
        single_run("tests/test_vtt.py::test_parse_small", rss_growth=100 * KiB,
                   malloc_growth=10 * KiB, blocks=7),
        single_run("tests/test_storage.py::test_compress", rss_growth=-256 * KiB,
                   malloc_growth=-300 * KiB, blocks=-40),
        peaky,
        soak,
        TestResult(nodeid="tests/test_mic.py::test_needs_device", outcome="skipped"),
    ]
    run = RunMeta(
        plugin_version="0.1.0",
        pytest_version="9.2.0",
        python="3.11.9",
        machine=dict(MACHINE),
        commit="0123456789abcdef0123456789abcdef01234567",
        workers=1,
        started_at="2025-01-15T10:00:00+00:00",
        finished_at="2025-01-15T10:11:05+00:00",
        args=["--memwatch", "--memwatch-html=report.html"],
        settings=Settings(enabled=True, html="report.html").to_dict(),
    )
    return Results(run, tests)


def sample_doc() -> dict[str, Any]:
    """The sample results document (a fresh deep copy every call)."""
    return copy.deepcopy(sample_results().to_dict())


def small_doc(*tests: tuple[str, int, int], host: str = "ci-runner-1", workers: int = 1,
              started: str = "2025-01-15T10:00:00+00:00") -> dict[str, Any]:
    """A document with one measured test per ``(nodeid, growth, peak)``."""
    run = RunMeta(plugin_version="0.1.0", pytest_version="9.2.0", python="3.11.9",
                  machine={**MACHINE, "hostname": host}, workers=workers, started_at=started,
                  finished_at=started)
    return Results(
        run, [single_run(n, rss_growth=g, peak=p) for n, g, p in tests]
    ).to_dict()


def write(doc: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return path


def big_doc(n: int, *, failed_every: int = 0, prefix: str = "tests/test_gen.py") -> dict[str, Any]:
    """A synthetic results document of ``n`` measured tests (growth varies by test)."""
    tests = []
    for i in range(n):
        growth = {"rss": (i * 37) % 9000 - 1000, "malloc": (i * 11) % 5000, "blocks": None,
                  "gc_objects": 0, "fds": 0, "threads": 0}
        failed = bool(failed_every) and i % failed_every == 0
        verdicts = ([{"kind": "max_growth", "source": "option", "passed": False,
                      "message": f"max_growth: grew {growth['rss']} B", "metric": "rss",
                      "measured": float(growth["rss"]), "limit": 1.0, "details": {}}]
                    if failed else [])
        reading = {"t": 1.0, "rss": 100, "malloc": 100, "blocks": None, "gc_objects": 1,
                   "fds": 3, "threads": 1}
        tests.append({
            "nodeid": f"{prefix}::test_{i}[{'<b>' if i == 7 else ''}{i}]",
            "outcome": "failed" if failed else "passed", "worker": None,
            "duration_s": 0.001, "markers": [], "before": reading, "after": reading,
            "growth": growth, "peak_rss": 200, "peak_growth": 100, "runs": [],
            "verdicts": verdicts, "attribution": None, "soak": None,
        })
    return {
        "schema_version": 1, "tool": "pytest-memwatch",
        "run": {"plugin_version": "0", "pytest_version": "9", "python": "3.11",
                "machine": {"hostname": "h", "system": "Linux", "release": "6",
                            "arch": "x86_64", "cpu_count": 2, "total_memory": None,
                            "python_implementation": "CPython"},
                "commit": None, "workers": 1, "started_at": "2025-01-01T00:00:00+00:00",
                "finished_at": "2025-01-01T00:01:00+00:00", "args": [], "settings": {},
                "unavailable_probes": {}, "worker_info": {}},
        "tests": tests,
        "totals": totals(tests),
    }
