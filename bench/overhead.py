#!/usr/bin/env python3
"""Wall-time overhead of ``pytest --memwatch`` on a suite of fast tests.

Generates a suite of N fast tests (default 600: plain functions, parametrized
cases, a class, a unittest.TestCase, fixtures of every scope) and times it in
two environments:

- bare: ``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1`` with only memwatch loaded, the
  strictest baseline (no other plugin's per-test cost dilutes memwatch's);
  plain pytest (memwatch loaded, inactive), and pytest without memwatch at
  all, to show that an inactive memwatch costs only its import;
- installed: every plugin of this environment loaded, as a user runs it,
  with pytest-memray's ``--memray`` and ``--memray --native`` (the native
  tracing its leak check needs) where it is installed.

Every round runs every mode once, in a shuffled order; each ratio is the
median over rounds of (mode / its environment's plain pytest) within the same
round, so a slow spell of the machine hits both sides of a ratio alike.
Bytecode is cached (written by a warm-up run), as on a user's machine.

    python bench/overhead.py [--tests 600] [--rounds 21] [--memray-rounds 5] [--no-memray]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

MODULE = """
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
"""

FUNC = """
def test_f{i}(words):
    d = {{w: len(w) for w in words}}
    assert d["alpha"] == 5 and sum(range({i} % 50)) >= 0
"""


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


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one pytest process."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"benchmark run failed: {' '.join(cmd)}")
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return elapsed, cpu


class Mode(NamedTuple):
    env: str  # "bare" or "installed"
    args: list[str]
    baseline: str  # the mode this one's ratio is taken against


def modes(memray: bool) -> dict[str, Mode]:
    base = [sys.executable, "-m", "pytest", "-q"]
    bare = [*base, "-p", "pytest_memwatch.plugin"]
    out = {
        "bare: plain pytest": Mode("bare", bare, "bare: plain pytest"),
        "bare: pytest --memwatch": Mode("bare", [*bare, "--memwatch"], "bare: plain pytest"),
        "bare: without memwatch": Mode("bare", base, "bare: plain pytest"),
    }
    # pytest-memray's plugin stays out of the memwatch rows, so its import and
    # hooks are not charged to memwatch.
    no_memray = ["-p", "no:memray"] if _has("pytest_memray") else []
    out["installed: plain pytest"] = Mode(
        "installed", [*base, *no_memray], "installed: plain pytest"
    )
    out["installed: pytest --memwatch"] = Mode(
        "installed", [*base, *no_memray, "--memwatch"], "installed: plain pytest"
    )
    if memray and _has("pytest_memray"):
        out["installed: pytest --memray"] = Mode(
            "installed", [*base, "--memray"], "installed: plain pytest"
        )
        out["installed: pytest --memray --native"] = Mode(
            "installed", [*base, "--memray", "--native"], "installed: plain pytest"
        )
    return out


def run_rounds(
    table: dict[str, Mode],
    names: list[str],
    rounds: int,
    root: Path,
    envs: dict[str, dict[str, str]],
    rng: random.Random,
) -> dict[str, list[tuple[float, float]]]:
    """Every mode in ``names`` once per round, in a shuffled order."""
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in names}
    for _ in range(rounds):
        order = list(names)
        rng.shuffle(order)
        for name in order:
            times[name].append(timed(table[name].args, root, envs[table[name].env]))
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tests", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=21, help="rounds of the memwatch rows")
    ap.add_argument("--memray-rounds", type=int, default=5, help="rounds of the memray rows")
    ap.add_argument("--no-memray", action="store_true", help="skip the pytest-memray rows")
    args = ap.parse_args()
    if args.tests < 1 or args.rounds < 1 or args.memray_rounds < 1:
        ap.error("--tests, --rounds and --memray-rounds must be at least 1")
    table = modes(memray=not args.no_memray)
    # Bytecode is cached, as on a user's machine: the warm-up run writes it (a
    # PYTHONDONTWRITEBYTECODE in the caller's environment would make every run
    # recompile the test modules and memwatch's own).
    quiet = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTHONDONTWRITEBYTECODE")
    }
    envs = {"bare": {**quiet, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}, "installed": quiet}
    rng = random.Random(0)
    memray = [k for k in table if "memray" in k]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        n = make_suite(root, args.tests)
        for mode in table.values():  # warm the file cache and bytecode once
            timed(mode.args, root, envs[mode.env])
        # The memray rows in rounds of their own: a 10-second run that maps
        # hundreds of MiB slows whatever process follows it, which would land
        # at random on one side of a memwatch ratio.
        times = run_rounds(
            table, [k for k in table if k not in memray], args.rounds, root, envs, rng
        )
        if memray:
            base = "installed: plain pytest"
            times[f"{base} (memray rounds)"] = []
            table[f"{base} (memray rounds)"] = table[base]._replace(
                baseline=f"{base} (memray rounds)"
            )
            for name in memray:
                table[name] = table[name]._replace(baseline=f"{base} (memray rounds)")
            more = run_rounds(table, [base, *memray], args.memray_rounds, root, envs, rng)
            times[f"{base} (memray rounds)"] = more.pop(base)
            times.update(more)
    print(f"{n} fast tests, Python {sys.version.split()[0]}; every mode once per round, shuffled:")
    print(f"{args.rounds} rounds of the memwatch rows, {args.memray_rounds} of the memray rows")
    print("wall: elapsed s; cpu: user+system s of the pytest process; each ratio is the median")
    print("over rounds of the mode's time over its baseline's in the same round\n")
    print(f"{'mode':<44} {'wall s':>7} {'ratio':>7} {'cpu s':>7} {'ratio':>7}")
    rest = [k for k in table if k not in memray and not k.endswith("(memray rounds)")]
    for name in [*rest, *(k for k in table if k.endswith("(memray rounds)")), *memray]:
        mode = table[name]
        ts, base_ts = times[name], times[mode.baseline]
        wall = statistics.median(t[0] for t in ts)
        cpu = statistics.median(t[1] for t in ts)
        wall_ratio = statistics.median(a[0] / b[0] for a, b in zip(ts, base_ts, strict=True))
        cpu_ratio = statistics.median(a[1] / b[1] for a, b in zip(ts, base_ts, strict=True))
        print(f"{name:<44} {wall:>7.2f} {wall_ratio:>6.2f}x {cpu:>7.2f} {cpu_ratio:>6.2f}x")
    if not _has("pytest_memray") and not args.no_memray:
        print("\npytest-memray is not installed: its rows are skipped")
    return 0


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    raise SystemExit(main())
