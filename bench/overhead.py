#!/usr/bin/env python3
"""Wall-time overhead of ``pytest --memwatch`` on a suite of fast tests.

Generates a suite of N fast tests (default 600: plain functions, parametrized
cases, a class, a unittest.TestCase, fixtures of every scope), then times, in
one run and interleaved so machine noise hits every mode alike:

- plain pytest,
- pytest --memwatch (cheap probes on every test),
- pytest --memray, and pytest --memray --native (the tracing pytest-memray's
  leak check needs), where pytest-memray is installed.

Prints the median wall time of each mode over R rounds and its ratio to plain.

    python bench/overhead.py [--tests 600] [--rounds 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODULE = '''
import unittest
import pytest


@pytest.fixture(scope="module")
def table():
    return {{i: str(i) for i in range(200)}}


@pytest.fixture
def words():
    return ["alpha", "beta", "gamma"] * 10


{funcs}


@pytest.mark.parametrize("n", range({params}))
def test_param(n, table):
    assert table[n % 200] == str(n % 200)


class TestGroup:
    def test_a(self, words):
        assert sorted(set(words)) == ["alpha", "beta", "gamma"]

    def test_b(self):
        assert "".join(reversed("abc")) == "cba"


class TestCaseStyle(unittest.TestCase):
    def test_one(self):
        self.assertEqual(sum(range(100)), 4950)
'''

FUNC = '''
def test_f{i}(words):
    d = {{w: len(w) for w in words}}
    assert d["alpha"] == 5 and sum(range({i} % 50)) >= 0
'''


def make_suite(root: Path, n_tests: int) -> int:
    per_module = 50
    modules = max(1, n_tests // per_module)
    total = 0
    for m in range(modules):
        funcs = "\n".join(FUNC.format(i=i) for i in range(per_module - 3 - 20))
        (root / f"test_mod{m:02d}.py").write_text(MODULE.format(funcs=funcs, params=20))
        total += (per_module - 3 - 20) + 20 + 3
    (root / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    return total


def timed(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one pytest process."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"benchmark run failed: {' '.join(cmd)}")
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return elapsed, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tests", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    base = [sys.executable, "-m", "pytest", "-q"]
    modes: dict[str, list[str]] = {
        "plain pytest": [*base, "-p", "no:memray"] if _has("pytest_memray") else base,
        # Both without pytest-memray's plugin, so its import and hooks are not
        # charged to memwatch.
        "pytest --memwatch": [*base, "-p", "no:memray", "--memwatch"]
        if _has("pytest_memray")
        else [*base, "--memwatch"],
    }
    if _has("pytest_memray"):
        modes["pytest --memray"] = [*base, "--memray"]
        modes["pytest --memray --native"] = [*base, "--memray", "--native"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        n = make_suite(root, args.tests)
        for cmd in modes.values():  # warm the file cache and bytecode once
            timed(cmd, root)
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in modes}
        for _ in range(args.rounds):
            for name, cmd in modes.items():
                times[name].append(timed(cmd, root))
    plain_wall = statistics.median(t[0] for t in times["plain pytest"])
    plain_cpu = statistics.median(t[1] for t in times["plain pytest"])
    print(f"{n} fast tests, {args.rounds} interleaved rounds, Python {sys.version.split()[0]}")
    print("wall: elapsed time; cpu: user+system time of the pytest process (robust to a busy")
    print("machine); ratios are medians over plain pytest's medians\n")
    print(f"{'mode':<28} {'wall s':>7} {'ratio':>7} {'cpu s':>7} {'ratio':>7}")
    for name, ts in times.items():
        wall = statistics.median(t[0] for t in ts)
        cpu = statistics.median(t[1] for t in ts)
        print(f"{name:<28} {wall:>7.2f} {wall / plain_wall:>6.2f}x {cpu:>7.2f} "
              f"{cpu / plain_cpu:>6.2f}x")
    if not _has("pytest_memray"):
        print("\npytest-memray is not installed: its rows are skipped")
    return 0


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    raise SystemExit(main())
