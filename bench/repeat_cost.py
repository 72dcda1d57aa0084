#!/usr/bin/env python3
"""Cost of ``--memwatch-repeat`` against the runs it makes, on a synthetic suite.

Generates a suite of fast tests (plain functions, parametrized cases, a class,
a unittest.TestCase, fixtures of every scope, tests that print and log) beside
a long-lived heap of ``--heap`` objects (a big application or a big collected
suite: what a full ``gc.collect()`` must walk), all clean. It runs, each round
in a shuffled order and in fresh processes:

- ``collect``: ``--collect-only`` (start-up and collection, subtracted from the others);
- ``plain``: plain pytest;
- ``repeat``: ``--memwatch-repeat`` (default 2 warmup + 5 runs) with ``--memwatch-trace=0``.

With ``--subtests K`` every generated test has K subtests instead (half with
pytest's ``subtests`` fixture, half a ``unittest.TestCase`` with
``self.subTest``): a repeated test must report its subtests once and keep
none from its earlier runs, so the ratio stays that of plain tests and no test
fails. Each mode's failed tests are counted (all must pass: the suite is clean).

Costs are CPU seconds of the child process (user + system), so other load on
the machine changes them little. The table gives, per mode, the median cost
over rounds after subtracting ``collect``, and the ratio of repeat to
``(warmup + runs) x plain``: 1.0 would mean the repetitions cost exactly what
running the test that many times costs; the harness's readings, collections
and verdicts are the rest. The ratio is taken within each round (paired).

    python bench/repeat_cost.py [--tests 300] [--heap 200000] [--rounds 3] [--subtests 15]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CONFTEST = """
# A long-lived heap, as a real application's modules and data would make.
HEAP = [{{"id": i, "name": str(i), "tags": [i, i + 1]}} for i in range({heap} // 3)]
"""

MODULE = """
import logging
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


def test_output(capsys):
    print("some output")
    logging.getLogger("bench").warning("a warning")


class TestClass:
    def test_method(self, words):
        assert words[0] == "alpha"


class TestCase(unittest.TestCase):
    def test_unittest(self):
        self.assertEqual(sum(range(10)), 45)
"""


SUBTESTS_MODULE = """
import unittest


{funcs}


class TestCase(unittest.TestCase):
{methods}
"""


def make_subtests_suite(root: Path, tests: int, subtests: int) -> None:
    per_module = 50
    for m in range(max(1, tests // per_module)):
        funcs = "\n\n".join(
            f"def test_f{m}_{i}(subtests):\n"
            f"    for k in range({subtests}):\n"
            f"        with subtests.test(k=k):\n"
            f"            assert [k] * 3 == [k, k, k]\n"
            for i in range(per_module // 2)
        )
        methods = "\n".join(
            f"    def test_m{i}(self):\n"
            f"        for k in range({subtests}):\n"
            f"            with self.subTest(k=k):\n"
            f"                self.assertEqual(str(k), f'{{k}}')\n"
            for i in range(per_module - per_module // 2)
        )
        (root / f"test_s{m}.py").write_text(SUBTESTS_MODULE.format(funcs=funcs, methods=methods))


def make_suite(root: Path, tests: int, heap: int, subtests: int = 0) -> None:
    (root / "conftest.py").write_text(CONFTEST.format(heap=heap))
    if subtests:
        make_subtests_suite(root, tests, subtests)
        return
    per_module = 50
    for m in range(max(1, tests // per_module)):
        funcs = "\n\n".join(
            f"def test_f{m}_{i}(words):\n    assert len(words) == 30\n" for i in range(30)
        )
        (root / f"test_m{m}.py").write_text(MODULE.format(funcs=funcs, params=per_module - 33))


FAILED: dict[str, int] = {}


def cpu_of(cmd: list[str], cwd: Path, mode: str = "") -> float:
    """CPU seconds of one run; its failed tests are kept in FAILED[mode] (the latest run's)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # 1: tests failed (a memory verdict on a clean suite): counted, not fatal,
    # so a run that flags clean tests still gets its cost measured.
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}")
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    failed = re.search(r"(\d+) failed", last)
    FAILED[mode] = int(failed[1]) if failed else 0
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tests", type=int, default=300)
    ap.add_argument("--heap", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", default="2:5")
    ap.add_argument("--subtests", type=int, default=0, metavar="K",
                    help="give every test K subtests (default: plain tests)")
    args = ap.parse_args()
    warmup, runs = (int(x) for x in args.repeat.split(":"))
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts="]
    modes = {
        "collect": [*base, "--collect-only"],
        "plain": base,
        "repeat": [*base, f"--memwatch-repeat={args.repeat}", "--memwatch-trace=0"],
    }
    costs: dict[str, list[float]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_suite(root, args.tests, args.heap, args.subtests)
        n = int(subprocess.run([*base, "--collect-only"], cwd=root, capture_output=True,
                               text=True).stdout.strip().splitlines()[-1].split()[0])
        cpu_of(modes["plain"], root)  # warm-up: bytecode written, caches warm
        for _ in range(args.rounds):
            order = list(modes)
            random.shuffle(order)
            for mode in order:
                costs[mode].append(cpu_of(modes[mode], root, mode))
    plain = [p - c for p, c in zip(costs["plain"], costs["collect"], strict=True)]
    rep = [r - c for r, c in zip(costs["repeat"], costs["collect"], strict=True)]
    ratios = [r / ((warmup + runs) * p) for r, p in zip(rep, plain, strict=True)]
    kind = f" with {args.subtests} subtests each" if args.subtests else ""
    print(f"Synthetic suite: {n} tests{kind}, long-lived heap of ~{args.heap} objects, "
          f"--memwatch-repeat={args.repeat}, {args.rounds} rounds, "
          f"Python {sys.version.split()[0]}; CPU seconds after collection\n")
    print(f"{'mode':<10} {'median s':>9} {'per test ms':>12} {'failed':>7}")
    for name, vals in (("collect", costs["collect"]), ("plain", plain), ("repeat", rep)):
        med = statistics.median(vals)
        print(f"{name:<10} {med:>9.2f} {1000 * med / n:>12.2f} {FAILED[name]:>7}"
              if name != "collect" else f"{name:<10} {med:>9.2f} {'':>12} {'':>7}")
    print(f"\nrepeat / plain: {statistics.median(rep) / statistics.median(plain):.1f}x   "
          f"repeat / ((warmup+runs) x plain): median {statistics.median(ratios):.2f} "
          f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})")
    return 0


if __name__ == "__main__":
    os.environ.pop("PYTEST_ADDOPTS", None)
    raise SystemExit(main())
