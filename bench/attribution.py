#!/usr/bin/env python3
"""Time and extra peak memory of leak attribution, against heap size and leak size.

Each case runs in a fresh interpreter: it builds a heap of N live objects the
collector tracks (lists of one int, so the heap is the N objects and nothing
else), defines a "test" that leaks, runs it once (the failed run), and then
times ``pytest_memwatch.engine.attribution.attribute`` on it. Extra peak memory is the
highest RSS during attribution (sampled every 2 ms from /proc/self/statm)
minus RSS just before it.

Leaks (per run):

- ``objects``: 1 000 small lists appended to a module-level list;
- ``lru``:     an unbounded ``functools.lru_cache`` filled with 3 000 new keys;
- ``strings``: 1 000 new strings in a module dict the collector does not track;
- ``big``:     a 200 MiB ``bytearray`` appended to a module-level list (over the
               re-run budget: explained in place, not re-run).

``--baseline-rev REV`` adds the same figures for the package of commit REV
(extracted with ``git archive``), for a before/after table in one run.

    python bench/attribution.py [--heaps 50000,200000,1000000] [--leaks objects,lru,strings,big]
                                [--baseline-rev REV] [--baseline-max-heap 200000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import functools, gc, importlib.util, json, os, resource, sys, threading, time
# The tree under test: this checkout, or REV's package extracted for --baseline-rev.
sys.path.insert(0, {module!r} or {root!r})
try:
    from pytest_memwatch.engine import attribution
except ImportError:  # before the package was split by concern
    from pytest_memwatch import attribution

HEAP = [[i] for i in range({heap})]
KEEP = []
STRINGS = {{}}
counter = [0]

@functools.lru_cache(maxsize=None)
def cached(x):
    return [x] * 4

def leak_objects():
    KEEP.extend([i] for i in range(1000))

def leak_lru():
    for _ in range(3000):
        counter[0] += 1
        cached(counter[0])

def leak_strings():
    for _ in range(1000):
        counter[0] += 1
        STRINGS["k%d" % counter[0]] = "value %d" % counter[0]

def leak_big():
    KEEP.append(bytearray(200 * 1024 * 1024))

run = globals()["leak_" + {leak!r}]
PAGE = os.sysconf("SC_PAGE_SIZE")

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE

blocks0 = sys.getallocatedblocks()
r0 = rss()
run()
gc.collect()
leak_bytes = max(0, rss() - r0)
if {leak!r} == "big":
    leak_bytes = 200 * 1024 * 1024
leak_blocks = max(0, sys.getallocatedblocks() - blocks0)
gc.collect()
gc.freeze()  # as the plugin leaves it between tests

peak = [0]
stop = threading.Event()
def sample():
    while not stop.is_set():
        peak[0] = max(peak[0], rss())
        time.sleep(0.002)
t = threading.Thread(target=sample, daemon=True)
before = rss()
peak[0] = before
t.start()
start = time.perf_counter()
kwargs = dict(frames=10)
if "leak_bytes" in attribution.attribute.__code__.co_varnames:
    kwargs.update(leak_bytes=leak_bytes, leak_blocks=leak_blocks)
else:
    gc.unfreeze()  # the plugin thawed the heap before calling the earlier version
result = attribution.attribute(run, **kwargs)
elapsed = time.perf_counter() - start
stop.set()
t.join()
text = attribution.format_attribution(result)
print(json.dumps({{
    "seconds": elapsed,
    "extra": max(0, peak[0] - before),
    "leak": leak_bytes,
    "runs": result["runs"],
    "sites": len(result["sites"]),
    "chains": len(result["chains"]),
    "chained": bool(result["chains"]),
}}))
"""


def run_case(heap: int, leak: str, module: str | None) -> dict[str, object]:
    code = CHILD.format(root=str(ROOT), module=module or "", heap=heap, leak=leak)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=1800
    )
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else out.returncode}
    data: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return data


def mib(n: object) -> str:
    return f"{float(n) / 2**20:8.1f}" if isinstance(n, (int, float)) else f"{'?':>8}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--heaps", default="50000,200000,1000000")
    ap.add_argument("--leaks", default="objects,lru,strings,big")
    ap.add_argument("--baseline-rev", default=None)
    ap.add_argument("--baseline-max-heap", type=int, default=200_000)
    args = ap.parse_args()
    heaps = [int(h) for h in args.heaps.split(",")]
    leaks = args.leaks.split(",")
    baseline = None
    if args.baseline_rev:
        # REV's whole package, so its attribution imports its own helpers.
        baseline = tempfile.mkdtemp(prefix="memwatch_baseline_")
        archive = subprocess.run(
            ["git", "archive", "--format=tar", args.baseline_rev, "pytest_memwatch"],
            cwd=ROOT, capture_output=True, check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", baseline], input=archive, check=True)
    print(f"python {sys.version.split()[0]}; times in seconds, memory in MiB")
    head = f"{'heap':>9} {'leak':>8} {'leak MiB':>8} {'runs':>4} {'time':>7} {'extra':>8} chain"
    if baseline:
        head += f" | {'before':>7} {'extra':>8} chain"
    print(head)
    try:
        for heap in heaps:
            for leak in leaks:
                new = run_case(heap, leak, None)
                line = (
                    f"{heap:>9} {leak:>8} {mib(new.get('leak'))} {new.get('runs', '?')!s:>4} "
                    f"{float(new.get('seconds', 'nan')):7.2f} {mib(new.get('extra'))} "
                    f"{'yes' if new.get('chained') else 'no':>5}"
                )
                if "error" in new:
                    line += f"  ERROR {new['error']}"
                if baseline:
                    if heap <= args.baseline_max_heap:
                        old = run_case(heap, leak, baseline)
                        line += (
                            f" | {float(old.get('seconds', 'nan')):7.2f} {mib(old.get('extra'))} "
                            f"{'yes' if old.get('chained') else 'no':>5}"
                        )
                        if "error" in old:
                            line += f"  ERROR {old['error']}"
                    else:
                        line += " |  (not run)"
                print(line, flush=True)
    finally:
        if baseline:
            shutil.rmtree(baseline, ignore_errors=True)


if __name__ == "__main__":
    main()
