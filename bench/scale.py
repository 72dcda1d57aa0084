#!/usr/bin/env python3
"""Cost of ``pytest --memwatch`` as a suite grows: wall time, peak memory, report load time.

Generates suites of fast tests (by default 1 000, 10 000 and 50 000; a mix of
plain functions, parametrized cases, class methods and ``unittest.TestCase``
methods, 100 per module) and runs each size in three modes, in fresh
processes:

- ``plain``: pytest with memwatch loaded but inactive;
- ``--memwatch``: every test measured;
- ``--memwatch`` with ``--memwatch-json`` and ``--memwatch-html``.

Only memwatch is loaded (``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1``), the strictest
baseline, with ``-q -p no:cacheprovider``. Wall time is the pytest process's;
peak memory is its peak RSS (``ru_maxrss`` of that one child, from
``os.wait4``). Each round runs the modes back to back in a shuffled order and
the ratio is taken within the round, so a slow spell of the (shared) machine
hits both sides of it. "extra peak" is the mode's peak RSS minus plain's.

The HTML report of each size is then opened in headless Chromium (Debian's
``/usr/bin/chromium`` through Playwright, skipped when either is missing):
"load" is the time from navigation to the ``load`` event, "ready" to the
moment the page's script has rendered the table; "filter" and "sort" are the
time a filter keystroke and a click on the Growth header take to update the
table.

``--probe-cost`` adds one ``--memwatch`` run per size, untimed, with a small
plugin that times every reading of the ``malloc`` probe (glibc's
``mallinfo2()``, which walks every free chunk of the C heap) and every
per-test measurement (``Measurer.begin`` + ``Measurer.end``), and counts the
free chunks as the run goes: what the probe costs at each suite size, and when.

    python bench/scale.py [--sizes 1000,10000,50000] [--rounds 1] [--no-browser] [--probe-cost]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODULE = """
import unittest
import pytest


@pytest.fixture
def words():
    return ["alpha", "beta", "gamma"]


{funcs}


@pytest.mark.parametrize("n", range({params}))
def test_param(n):
    assert n * 2 >= n


class TestGroup:
{methods}


class TestCaseStyle(unittest.TestCase):
{cases}
"""

FUNC = """
def test_f{i}(words):
    assert len({{w: len(w) for w in words}}) == 3
"""

METHOD = """
    def test_m{i}(self):
        assert "".join(reversed("abc")) == "cba"
"""

CASE = """
    def test_u{i}(self):
        self.assertEqual(sum(range({i})), {total})
"""

# Loaded with -p in the --probe-cost run: times the malloc probe and the
# per-test measuring from inside the pytest process, and writes a summary.
PROBE_COST_PLUGIN = """
import json, os, time
from pytest_memwatch import engine
from pytest_memwatch.base import probes

# Medians of wall time per reading (robust to the odd preemption on a shared
# machine); totals in CPU time of the thread, which preemption does not inflate.
_readings, _cpu, _measuring, _chunks = [], [0.0], [0.0], []
_malloc, _begin, _end = probes.Prober.malloc, engine.Measurer.begin, engine.Measurer.end


def malloc(self):
    c = time.thread_time()
    t = time.perf_counter()
    value = _malloc(self)
    _readings.append(time.perf_counter() - t)
    _cpu[0] += time.thread_time() - c
    if len(_readings) % 1000 == 1 and self._mallinfo2 is not None:
        info = self._mallinfo2()  # outside the timed call
        _chunks.append(info.ordblks + info.smblks)
    return value


def _timed(fn):
    def wrapper(*args, **kwargs):
        c = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            _measuring[0] += time.thread_time() - c
    return wrapper


probes.Prober.malloc = malloc
engine.Measurer.begin = _timed(_begin)
engine.Measurer.end = _timed(_end)


def pytest_unconfigure(config):
    n = len(_readings)
    if not n:
        return
    tenth = max(1, n // 10)
    first, rest = sorted(_readings[:tenth]), sorted(_readings[tenth:] or _readings)
    with open(os.environ["MEMWATCH_PROBE_COST"], "w") as f:
        json.dump({
            "readings": n,
            "first_median": first[len(first) // 2],
            "rest_median": rest[len(rest) // 2],
            "first_wall": sum(_readings[:tenth]),
            "total": _cpu[0],
            "chunks_first": _chunks[0] if _chunks else None,
            "chunks_max": max(_chunks) if _chunks else None,
            "chunks_last": _chunks[-1] if _chunks else None,
            "measuring": _measuring[0],
            "cpu": time.process_time(),
        }, f)
"""

PER_MODULE = 100  # 40 functions, 40 parametrized cases, 10 class methods, 10 unittest methods
CHROMIUM = os.environ.get("MEMWATCH_CHROMIUM", "/usr/bin/chromium")
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-sync"]


def make_suite(root: Path, n_tests: int) -> int:
    """Write ``n_tests`` tests (rounded up to whole modules) under ``root``; return the count."""
    modules = max(1, -(-n_tests // PER_MODULE))
    module = MODULE.format(
        funcs="\n".join(FUNC.format(i=i) for i in range(40)),
        params=40,
        methods="\n".join(METHOD.format(i=i) for i in range(10)),
        cases="\n".join(CASE.format(i=i, total=sum(range(i))) for i in range(10)),
    )
    for m in range(modules):
        package = root / f"pkg{m // 100:03d}"
        package.mkdir(exist_ok=True)
        (package / f"test_mod{m:05d}.py").write_text(module)
    (root / "pytest.ini").write_text("[pytest]\n")
    return modules * PER_MODULE


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int, float]:
    """Wall time, peak RSS (bytes) and CPU time (user + system) of one pytest process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.stderr.write(out.decode(errors="replace")[-3000:])
        raise SystemExit(f"benchmark run failed ({proc.returncode}): {' '.join(cmd)}")
    return elapsed, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime


def browser_times(path: Path) -> dict[str, float] | None:
    """Load, ready, filter and sort times (seconds) of one report in headless Chromium."""
    if not os.path.exists(CHROMIUM):
        return None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(path.as_uri(), timeout=120_000)
        page.wait_for_load_state("load")
        nav = page.evaluate(
            "() => { const n = performance.getEntriesByType('navigation')[0];"
            " return [n.loadEventEnd, window.memwatchReady || n.loadEventEnd]; }"
        )
        # A filter keystroke and a sort click, each timed inside the page until
        # the table's next frame is painted.
        filt = page.evaluate(
            """() => new Promise(done => {
                const box = document.getElementById('filter');
                const t0 = performance.now();
                box.value = 'test_f1';
                box.dispatchEvent(new Event('input'));
                requestAnimationFrame(() => setTimeout(() => done(performance.now() - t0), 0));
            })"""
        )
        page.evaluate(
            "() => { const b = document.getElementById('filter'); b.value = '';"
            " b.dispatchEvent(new Event('input')); }"
        )
        sort = page.evaluate(
            """() => new Promise(done => {
                const button = [...document.querySelectorAll('#tests th button')]
                    .find(b => b.textContent === 'Growth');
                const t0 = performance.now();
                button.click();
                requestAnimationFrame(() => setTimeout(() => done(performance.now() - t0), 0));
            })"""
        )
        browser.close()
    if errors:
        raise SystemExit(f"{path}: the page reported errors: {errors[:3]}")
    return {"load": nav[0] / 1000, "ready": nav[1] / 1000, "filter": filt / 1000,
            "sort": sort / 1000}


def mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


def smib(n: float) -> str:
    return f"{n / 2**20:+.0f} MiB"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,50000",
                    help="comma-separated suite sizes (default 1000,10000,50000)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="paired rounds per size below 50 000 tests (50 000 runs once)")
    ap.add_argument("--no-browser", action="store_true", help="skip the Chromium load times")
    ap.add_argument("--probe-cost", action="store_true",
                    help="one more --memwatch run per size, timing the malloc probe from inside")
    ap.add_argument("--browser", metavar="REPORT.html", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.browser:
        # In a process of its own: Playwright in this one would raise the
        # memory floor that every pytest child's peak RSS is read above.
        print(json.dumps(browser_times(Path(args.browser))))
        return 0
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        ap.error(f"--sizes takes numbers separated by commas, e.g. 1000,10000; "
                 f"got {args.sizes!r}")
    if not sizes or min(sizes) < 1 or args.rounds < 1:
        ap.error("--sizes and --rounds must be at least 1")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONDONTWRITEBYTECODE",) and not k.startswith("PYTEST_MEMWATCH")}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "-p", "pytest_memwatch.plugin"]
    rng = random.Random(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            root = Path(tmp) / f"s{size}"
            root.mkdir()
            n = make_suite(root, size)
            html, js = root / "report.html", root / "results.json"
            modes = {
                "plain": base,
                "memwatch": [*base, "--memwatch"],
                "json+html": [*base, "--memwatch", f"--memwatch-json={js}",
                              f"--memwatch-html={html}"],
            }
            run([*base, "--collect-only"], root, env)  # writes the bytecode once
            rounds = 1 if n >= 50_000 else args.rounds
            got: dict[str, list[tuple[float, int, float]]] = {k: [] for k in modes}
            for _ in range(rounds):
                order = list(modes)
                rng.shuffle(order)
                for name in order:
                    got[name].append(run(modes[name], root, env))
            load = None
            if not args.no_browser:
                got_load = subprocess.run([sys.executable, __file__, "--browser", str(html)],
                                          capture_output=True, text=True, check=True)
                load = json.loads(got_load.stdout)
            cost = None
            if args.probe_cost:
                (root / "_memwatch_probe_cost.py").write_text(PROBE_COST_PLUGIN)
                out = root / "probe_cost.json"
                penv = {**env, "MEMWATCH_PROBE_COST": str(out),
                        "PYTHONPATH": os.pathsep.join(
                            p for p in (str(root), env.get("PYTHONPATH", "")) if p)}
                run([*base, "-p", "_memwatch_probe_cost", "--memwatch"], root, penv)
                cost = json.loads(out.read_text())
            rows.append((n, got, load, html.stat().st_size, js.stat().st_size, cost))
            print(f"... {n} tests done", file=sys.stderr, flush=True)
    print(f"Python {sys.version.split()[0]}, only memwatch loaded, -q -p no:cacheprovider; "
          "wall s and peak RSS of the pytest process; ratios paired within a round; "
          "cpu: the ratio of user+system CPU time\n")
    head = (f"{'tests':>7} {'plain':>16} {'--memwatch':>16} {'ratio':>6} {'cpu':>6} {'extra':>8} "
            f"{'+json+html':>16} {'ratio':>6} {'cpu':>6} {'extra':>8} {'html':>8} {'json':>8}")
    print(head)

    def wall(xs: list[tuple[float, int, float]]) -> float:
        return statistics.median(x[0] for x in xs)

    def peak(xs: list[tuple[float, int, float]]) -> float:
        return statistics.median(x[1] for x in xs)

    def ratio(xs: list[tuple[float, int, float]], base: list[tuple[float, int, float]],
              i: int) -> float:
        return statistics.median(a[i] / b[i] for a, b in zip(xs, base, strict=True))

    for n, got, _, html_size, js_size, _ in rows:
        plain, mw, full = got["plain"], got["memwatch"], got["json+html"]
        print(f"{n:>7} {wall(plain):>6.2f} s {mib(peak(plain)):>7} "
              f"{wall(mw):>6.2f} s {mib(peak(mw)):>7} {ratio(mw, plain, 0):>5.2f}x "
              f"{ratio(mw, plain, 2):>5.2f}x {smib(peak(mw) - peak(plain)):>8} "
              f"{wall(full):>6.2f} s {mib(peak(full)):>7} {ratio(full, plain, 0):>5.2f}x "
              f"{ratio(full, plain, 2):>5.2f}x {smib(peak(full) - peak(plain)):>8} "
              f"{mib(html_size):>8} {mib(js_size):>8}")
    if any(row[2] for row in rows):
        print(f"\n{'tests':>7} {'load s':>7} {'ready s':>8} {'filter s':>9} {'sort s':>7}"
              "   (HTML report in headless Chromium)")
        for n, _, load, _, _, _ in rows:
            if load:
                print(f"{n:>7} {load['load']:>7.2f} {load['ready']:>8.2f} "
                      f"{load['filter']:>9.3f} {load['sort']:>7.3f}")
    elif not args.no_browser:
        print("\nchromium or playwright missing: no load times")
    if args.probe_cost:
        print("\nThe malloc probe (glibc mallinfo2), timed inside one --memwatch run per size:")
        print(f"{'tests':>7} {'readings':>9} {'median us':>10} {'median us':>10} {'cpu s':>7} "
              f"{'probe':>6} {'free chunks':>20} {'measuring':>10} {'probe':>6}")
        print(f"{'':>7} {'':>9} {'1st tenth':>10} {'the rest':>10} {'total':>7} "
              f"{'us/test':>7} {'first, max, last':>20} {'us/test':>10} {'of cpu':>6}")
        for n, _, _, _, _, c in rows:
            chunks = f"{c['chunks_first']}, {c['chunks_max']}, {c['chunks_last']}"
            print(f"{n:>7} {c['readings']:>9} {c['first_median'] * 1e6:>10.1f} "
                  f"{c['rest_median'] * 1e6:>10.1f} {c['total']:>7.2f} "
                  f"{c['total'] / n * 1e6:>7.0f} {chunks:>20} {c['measuring'] / n * 1e6:>10.0f} "
                  f"{c['total'] / c['cpu']:>6.1%}")
        print("(medians: wall time of one reading; totals and per test: CPU time; measuring: "
              "the before- and after-readings of every test, the probe included)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
