#!/usr/bin/env python3
"""Detection accuracy of the soak verdict: synthetic sample streams, then one real run.

Part 1 drives :func:`pytest_memwatch.soak.analyze` and ``soak_verdict`` with
synthetic sample streams (RSS, malloc bytes, allocated blocks): a simulated
20-minute soak sampled every second (10 % warmup), over a start-up ramp, with
allocator noise at three levels (see :class:`Noise`: page-granular jitter,
transient spikes when a sample lands mid-step, level shifts that come and go
as heaps grow and are trimmed). Each scenario runs over many seeds; the table
gives how often the verdict failed the test: the detection rate for leaks,
the false-positive rate for everything else.

Part 2 runs real soak tests through pytest in a subprocess (a workload
leaking at a high rate, one keeping a 10 KiB bytearray a second in a heap
with slack under a 4 MiB/h budget, and a clean sawtooth one) and prints
their verdicts.

    python bench/soak_detection.py [--seeds 100] [--real 120] [--no-real]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_memwatch.soak import SoakPlan, analyze, format_rate, soak_verdict

KiB = 1024
MiB = 1024 * 1024
HOUR = 3600.0
DURATION = 20 * 60.0
INTERVAL = 1.0
WARMUP = 0.1 * DURATION

Shape = Callable[[float], float]


@dataclass(frozen=True)
class Noise:
    """Allocator noise, as seen in RSS sampled at a step boundary.

    - jitter: independent per sample, sigma drawn per run from ``jitter`` (bytes);
    - spikes: a share of samples read 0.25-4 MiB high (a buffer in flight when
      the sampler thread read mid-step);
    - level shifts: every ``dwell`` seconds on average the heap's extra level is
      redrawn from 0..``shift`` (a heap top grown, then trimmed back).
    """

    name: str
    jitter: tuple[float, float]
    spikes: float
    shift: float
    dwell: float


# "quiet" is what a clean steady workload measured here looks like: RSS read
# at step boundaries every second for 10 minutes moved in single pages, 84 %
# of consecutive readings identical. "typical" adds minute-scale heap moves
# comparable to a 1 MiB/h leak's whole rise; "harsh" ones four times larger.
QUIET = Noise("quiet", (4 * KiB, 16 * KiB), 0.005, 64 * KiB, 300.0)
TYPICAL = Noise("typical", (16 * KiB, 64 * KiB), 0.01, 256 * KiB, 60.0)
HARSH = Noise("harsh", (32 * KiB, 128 * KiB), 0.01, 1024 * KiB, 60.0)


def noise_model(rng: random.Random, noise: Noise) -> Callable[[float], float]:
    """One simulated process's noise, as a function of time."""
    sigma = rng.uniform(*noise.jitter)
    shifts: list[tuple[float, float]] = []
    t = 0.0
    while t < DURATION + 1:
        shifts.append((t, rng.uniform(0, noise.shift)))
        t += rng.expovariate(1 / noise.dwell)

    def at(t: float) -> float:
        level = next(v for s, v in reversed(shifts) if s <= t)
        spike = rng.uniform(0.25, 4) * MiB if rng.random() < noise.spikes else 0.0
        return rng.gauss(0, sigma) + level + spike

    return at


def startup(rng: random.Random) -> Shape:
    """Imports and first allocations: most of it inside the warmup."""
    size = rng.uniform(5, 40) * MiB
    tau = rng.uniform(5, 30)
    return lambda t: size * (1 - math.exp(-t / tau))


def leak(rate_per_hour: float) -> Callable[[random.Random], Shape]:
    def make(rng: random.Random) -> Shape:
        return lambda t: rate_per_hour * t / HOUR

    return make


def flat(rng: random.Random) -> Shape:
    return lambda t: 0.0


def sawtooth(rng: random.Random) -> Shape:
    """Buffers that fill and are flushed: period 30 s to 5 min, 2-40 MiB deep."""
    period = rng.uniform(30, 300)
    depth = rng.uniform(2, 40) * MiB
    phase = rng.uniform(0, period)
    return lambda t: depth * (((t + phase) % period) / period)


def plateau(rng: random.Random) -> Shape:
    """A cache that fills and stops within the first 40 % of the run, 2-30 MiB.

    Linearly over 1-8 min, or exponentially with tau 15-100 s (99 % full after
    4.6 tau). One that is still filling at the end of the run is a climb.
    """
    size = rng.uniform(2, 30) * MiB
    if rng.random() < 0.5:
        fill = rng.uniform(60, 480)
        return lambda t: size * min(1.0, t / fill)
    tau = rng.uniform(15, 100)
    return lambda t: size * (1 - math.exp(-t / tau))


def creep(rng: random.Random) -> Shape:
    """RSS that creeps as a heap fragments, as measured on a clean bounded cache.

    A 5000-entry cache of random-size strings, sampled every second for 10
    minutes, crept up 700 KiB, slowing down (about 2 MiB/h at the end), while
    malloc bytes and allocated blocks stayed flat. Modelled as C * ln(1 + t/tau).
    """
    size = rng.uniform(100, 600) * KiB
    tau = rng.uniform(30, 120)
    return lambda t: size * math.log1p(t / tau)


# Which allocator counts move with the RSS shape: a leak of big objects shows
# in malloc bytes, one of small Python objects in allocated blocks; heap
# fragmentation in neither. "slack": the process holds freed pages the
# allocators reuse, so the shape shows in malloc bytes (big objects) or in
# allocated blocks (small ones) while RSS stays flat.
BOTH, BIG, SMALL, NONE = "both", "big", "small", "none"
SLACK_BIG, SLACK_SMALL = "slack, big", "slack, small"

Scenario = tuple[str, Callable[[random.Random], Shape], str, float | None, bool, Noise]

SCENARIOS: list[Scenario] = [
    # name, RSS shape, allocators that move with it, limit (bytes/s), a leak, noise
    ("leak 1 MiB/h, big objects", leak(1 * MiB), BIG, None, True, QUIET),
    ("leak 1 MiB/h, big objects", leak(1 * MiB), BIG, None, True, TYPICAL),
    ("leak 1 MiB/h, small objects", leak(1 * MiB), SMALL, None, True, TYPICAL),
    ("leak 1 MiB/h, big objects", leak(1 * MiB), BIG, None, True, HARSH),
    ("leak 4 MiB/h, limit 1 MiB/h", leak(4 * MiB), BIG, MiB / HOUR, True, TYPICAL),
    ("flat", flat, NONE, None, False, QUIET),
    ("flat", flat, NONE, None, False, TYPICAL),
    ("flat", flat, NONE, None, False, HARSH),
    ("sawtooth", sawtooth, BOTH, None, False, TYPICAL),
    ("plateau", plateau, BOTH, None, False, TYPICAL),
    ("RSS creep (fragmentation)", creep, NONE, None, False, QUIET),
    ("leak 0.5 MiB/h, limit 1 MiB/h", leak(0.5 * MiB), BIG, MiB / HOUR, False, TYPICAL),
    # RSS has slack: the heap climbs inside pages the process already holds
    # (a 10 KiB bytearray kept every second is 35 MiB/h).
    ("slack: leak 35 MiB/h, limit 4 MiB/h", leak(35 * MiB), SLACK_BIG, 4 * MiB / HOUR, True,
     TYPICAL),
    ("slack: leak 35 MiB/h, no limit", leak(35 * MiB), SLACK_BIG, None, True, TYPICAL),
    ("slack: leak 1 MiB/h, no limit", leak(1 * MiB), SLACK_BIG, None, True, TYPICAL),
    ("slack: leak 35 MiB/h small, lim 4", leak(35 * MiB), SLACK_SMALL, 4 * MiB / HOUR, True,
     TYPICAL),
    ("slack: leak 2 MiB/h, limit 4 MiB/h", leak(2 * MiB), SLACK_BIG, 4 * MiB / HOUR, False,
     TYPICAL),
    ("slack: sawtooth, limit 4 MiB/h", sawtooth, SLACK_BIG, 4 * MiB / HOUR, False, TYPICAL),
    ("slack: plateau, limit 4 MiB/h", plateau, SLACK_BIG, 4 * MiB / HOUR, False, TYPICAL),
    ("sawtooth, limit 4 MiB/h", sawtooth, BOTH, 4 * MiB / HOUR, False, TYPICAL),
    ("RSS creep, limit 4 MiB/h", creep, NONE, 4 * MiB / HOUR, False, QUIET),
]


def series(
    rng: random.Random, shape: Shape, allocators: str, noise_kind: Noise
) -> list[dict[str, float | int]]:
    noise = noise_model(rng, noise_kind)
    boot = startup(rng)
    base = rng.uniform(60, 400) * MiB
    heap, blocks = rng.uniform(10, 200) * MiB, rng.randint(100_000, 2_000_000)
    out = []
    n = int(DURATION / INTERVAL) + 1
    for i in range(n):
        t = i * INTERVAL + rng.uniform(0, 0.02)  # samples are never exactly on time
        grown = shape(t)
        rss = base + boot(t) + noise(t) + (0.0 if allocators.startswith("slack") else grown)
        # The allocators' counts are exact but move with what is in flight.
        c_heap = heap + boot(t) / 2 + rng.gauss(0, 16 * KiB)
        n_blocks = blocks + boot(t) / 200 + rng.gauss(0, 200)
        if allocators in (BOTH, BIG, SLACK_BIG):
            c_heap += grown
        if allocators in (BOTH, SMALL, SLACK_SMALL):
            n_blocks += grown / 100  # small objects of about 100 bytes
        if allocators == SLACK_BIG:
            n_blocks += grown / (10 * KiB)  # every object is a block, 10 KiB ones too
        out.append({
            "t": t, "rss": 4096 * round(rss / 4096), "malloc": round(c_heap),
            "blocks": round(n_blocks), "fds": 12, "threads": 3,
        })
    return out


def judge_one(job: tuple[int, int]) -> tuple[int, bool, float | None, float]:
    """One seed of one scenario: (scenario index, flagged, fitted rate, seconds spent)."""
    index, seed = job
    name, make, allocators, limit, _, noise = SCENARIOS[index]
    rng = random.Random(f"{name}/{noise.name}/{seed}")
    samples = series(rng, make(rng), allocators, noise)
    plan = SoakPlan("bench", DURATION, INTERVAL, WARMUP, limit)
    start = time.perf_counter()
    analysis = analyze(samples, WARMUP)
    verdict = soak_verdict(plan, analysis)
    spent = time.perf_counter() - start
    # The rate the verdict reports: the failing series' when it failed.
    return index, not verdict.passed, verdict.measured, spent


@dataclass
class Row:
    scenario: str
    noise: str
    leak: bool
    flagged: float  # share of seeds whose verdict failed
    median_rate: float | None  # bytes/s
    ms_per_verdict: float


def synthetic(seeds: int, workers: int) -> list[Row]:
    jobs = [(i, seed) for i in range(len(SCENARIOS)) for seed in range(seeds)]
    with multiprocessing.Pool(workers) as pool:
        done = pool.map(judge_one, jobs, chunksize=4)
    rows = []
    for i, (name, _, _, _, leaking, noise) in enumerate(SCENARIOS):
        mine = [d for d in done if d[0] == i]
        rates = sorted(d[2] for d in mine if d[2] is not None)
        rows.append(Row(
            scenario=name,
            noise=noise.name,
            leak=leaking,
            flagged=sum(d[1] for d in mine) / len(mine),
            median_rate=rates[len(rates) // 2] if rates else None,
            ms_per_verdict=1000 * sum(d[3] for d in mine) / len(mine),
        ))
    return rows


REAL_TEST = '''
import time
import pytest

HELD = []

@pytest.mark.soak("{duration}s", interval="{interval}s")
def test_leaky(soak):
    # {leak_mib} MiB an hour, in 64 KiB pieces: a session cache nobody evicts.
    per_piece = 64 * 1024 / ({leak_mib} * 1024 * 1024 / 3600)
    next_at = time.monotonic()
    for tick in soak:
        if time.monotonic() >= next_at:
            HELD.append(bytearray(64 * 1024))
            next_at += per_piece
        soak.sleep(0.01)

@pytest.mark.soak("{duration}s", interval="{interval}s", max_growth_rate="4 MiB/h")
def test_heap_slack(soak):
    # A 10 KiB bytearray kept every second (35 MiB/h) under a 4 MiB/h budget,
    # in a process that freed 64 MiB before: the C heap reuses those pages
    # and RSS stays flat.
    freed = [bytearray(10 * 1024) for _ in range(6400)]
    pin = bytearray(10 * 1024)  # above the freed chunks: glibc cannot trim them
    del freed
    next_at = time.monotonic()
    for tick in soak:
        if time.monotonic() >= next_at:
            HELD.append(bytearray(10 * 1024))
            next_at += 1.0
        soak.sleep(0.01)
    del pin

@pytest.mark.soak("{duration}s", interval="{interval}s")
def test_sawtooth(soak):
    # Fills a 16 MiB buffer list over 10 s, then drops it: memory saws, no leak.
    buf = []
    for tick in soak:
        buf.append(bytearray(256 * 1024))
        if len(buf) >= 64:
            buf.clear()
        soak.sleep(10 / 64)
'''


def real(duration: float, interval: float, leak_mib: float) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "test_real_soak.py").write_text(
            textwrap.dedent(REAL_TEST).format(
                duration=duration, interval=interval, leak_mib=leak_mib
            )
        )
        out = Path(tmp, "results.json")
        cmd = [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
            "--memwatch-soak", f"--memwatch-json={out}", "-n", "2",
        ]
        if importlib.util.find_spec("xdist") is None:
            cmd = cmd[:-2]  # one test after the other without xdist
        done = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True,
                              timeout=duration * 3 + 120)
        if not out.exists():
            raise SystemExit(f"the real run wrote no results:\n{done.stdout}\n{done.stderr}")
        doc = json.loads(out.read_text())
    rows = []
    for test in doc["tests"]:
        verdict = next(v for v in test["verdicts"] if v["kind"] == "soak")
        rate = (test["soak"] or {}).get("rate") or {}
        rows.append({
            "test": test["nodeid"].split("::")[-1],
            "outcome": test["outcome"],
            "rate": rate.get("slope"),
            "low": rate.get("low"),
            "high": rate.get("high"),
            "samples": len(test["soak"]["samples"]),
            "message": verdict["message"],
        })
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=100, help="synthetic runs per scenario")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="processes for the synthetic runs")
    ap.add_argument("--real", type=float, default=120.0, metavar="SECONDS",
                    help="duration of the real soak run (default 120)")
    ap.add_argument("--leak", type=float, default=256.0, metavar="MIB_PER_HOUR",
                    help="leak rate of the real run's leaky test (default 256 MiB/h)")
    ap.add_argument("--no-real", action="store_true", help="skip the real run")
    args = ap.parse_args()

    print(f"Synthetic: {DURATION / 60:.0f} min at {INTERVAL:g} s, warmup {WARMUP:.0f} s, "
          f"{args.seeds} seeds per scenario")
    print(f"{'scenario':36} {'noise':>7} {'kind':>5} {'failed':>7} {'median rate':>13} "
          f"{'ms/verdict':>10}")
    rows = synthetic(args.seeds, args.workers)
    for r in rows:
        kind = "leak" if r.leak else "clean"
        print(f"{r.scenario:36} {r.noise:>7} {kind:>5} {100 * r.flagged:6.1f}% "
              f"{format_rate(r.median_rate):>13} {r.ms_per_verdict:10.0f}")
    for noise in (QUIET, TYPICAL, HARSH):
        leaks = [r.flagged for r in rows if r.leak and r.noise == noise.name]
        clean = [r.flagged for r in rows if not r.leak and r.noise == noise.name]
        print(f"{noise.name} noise: detection rate {100 * sum(leaks) / len(leaks):.1f}% "
              f"over its leak scenarios, false-positive rate "
              f"{100 * sum(clean) / len(clean):.1f}% over its clean ones")

    if not args.no_real:
        interval = max(0.5, args.real / 240)
        print()
        print(f"Real run: pytest --memwatch-soak, {args.real:g} s at {interval:g} s, "
              f"leaky test at {args.leak:g} MiB/h")
        start = time.perf_counter()
        for run in real(args.real, interval, args.leak):
            print(f"{run['test']:16} {run['outcome']:7} rate {format_rate(run['rate'])} "
                  f"(95% CI {format_rate(run['low'])}..{format_rate(run['high'])}), "
                  f"{run['samples']} samples")
            print(f"{'':16} {run['message']}")
        print(f"wall time {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
