"""pytest-memwatch flags every fault of the reference app, and passes the app without it.

For each fault in ``reference_app.faults.FAULTS`` a small test module (see
``_part2_leak_scenarios.py``) exercises the faulty component repeatedly under
a ``no_leaks`` marker. Each module runs in a child pytest, as a user would
run it, twice: with ``REFERENCE_APP_FAULTS=<fault>`` memwatch must fail the
test with a memory or resource verdict (while the test's own assertions
pass), and without it memwatch must pass it.

The child loads memwatch explicitly and no other installed plugin
(``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1`` with ``-p pytest_memwatch.plugin``), so
the outcome depends on memwatch alone. It runs with glibc's default allocator,
tcache included, as users run: freed chunks parked in the per-thread cache
count as in use in ``mallinfo2`` and make malloc bytes creep on clean code;
the leak verdict extends its runs until such a creep settles.

The children run two at a time (this machine has two cores); they measure
allocator counters and descriptors, which contention does not disturb.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _part2_leak_scenarios import SCENARIOS, module_source

from reference_app import faults

# Components register their faults when imported; these cover every one.
COMPONENT_MODULES = (
    "config", "cache", "metrics", "sessions", "storage", "vtt",
    "service.pool", "service.workqueue", "service.memory", "service.server",
)  # fmt: skip
for _name in COMPONENT_MODULES:
    importlib.import_module(f"reference_app.{_name}")

FIXTURES_AUDIO = Path(__file__).resolve().parents[2] / "fixtures" / "audio"
FAULT_NAMES = sorted(SCENARIOS)


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    result: dict[str, Any] | None  # the test's entry in memwatch's JSON results

    def describe(self) -> str:
        return f"exit {self.returncode}\n{self.stdout[-3000:]}\n{self.stderr[-2000:]}"


def run_scenario(
    directory: Path,
    fault: str,
    enabled: bool,
    extra: tuple[str, ...] = (),
    *,
    strip_markers: bool = False,
) -> Outcome:
    """Run the scenario module of ``fault`` in a child pytest under memwatch."""
    directory.mkdir(parents=True)
    module = directory / f"test_{fault}.py"
    source = module_source(fault, grammar=str(FIXTURES_AUDIO / "phrases.gram"))
    if strip_markers:
        source = "\n".join(
            line for line in source.splitlines() if not line.startswith("@pytest.mark.no_leaks")
        )
    module.write_text(source)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REFERENCE_APP_", "PYTEST_"))}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    if enabled:
        env[faults.ENV_VAR] = fault
    results = directory / "memwatch.json"
    proc = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-p", "pytest_memwatch.plugin",
            "-p", "no:cacheprovider", "-q", "--rootdir", str(directory),
            # No attribution: it re-runs a failing test under tracemalloc, which
            # is what costs time here, and it is not what this module tests.
            f"--memwatch-json={results}", "--memwatch-trace=0", *extra, module.name,
        ],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    result = None
    if results.exists():
        tests = json.loads(results.read_text())["tests"]
        result = tests[0] if tests else None
    return Outcome(proc.returncode, proc.stdout, proc.stderr, result)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[tuple[str, bool], Outcome]]:
    """Every scenario with its fault on and off, run two at a time."""
    base = tmp_path_factory.mktemp("scenarios")
    jobs = [(fault, enabled) for fault in FAULT_NAMES for enabled in (True, False)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            job: pool.submit(run_scenario, base / f"{job[0]}-{'on' if job[1] else 'off'}", *job)
            for job in jobs
        }
        yield {job: future.result() for job, future in futures.items()}


def failed_verdicts(outcome: Outcome) -> list[dict[str, Any]]:
    assert outcome.result is not None, outcome.describe()
    return [v for v in outcome.result["verdicts"] if not v["passed"]]


def test_every_registered_fault_has_a_scenario() -> None:
    assert set(faults.FAULTS) == set(SCENARIOS), (
        "a fault without a scenario here is a leak nobody shows the harness catches"
    )


@pytest.mark.parametrize("fault", FAULT_NAMES)
def test_memwatch_flags_the_fault(outcomes: dict[tuple[str, bool], Outcome], fault: str) -> None:
    outcome = outcomes[fault, True]
    assert outcome.returncode == 1, outcome.describe()
    failed = failed_verdicts(outcome)
    assert failed, outcome.describe()
    assert {v["kind"] for v in failed} <= {"leak", "resources"}
    # The scenario's own assertions held: the failure is memwatch's verdict
    # alone (an assertion failure would print pytest's "E   " lines).
    assert "FAILED (memwatch)" in outcome.stdout, outcome.describe()
    assert not [line for line in outcome.stdout.splitlines() if line.startswith("E ")]


@pytest.mark.parametrize("fault", FAULT_NAMES)
def test_memwatch_passes_the_component_without_the_fault(
    outcomes: dict[tuple[str, bool], Outcome], fault: str
) -> None:
    outcome = outcomes[fault, False]
    assert outcome.returncode == 0, outcome.describe()
    assert failed_verdicts(outcome) == []
    assert outcome.result is not None and outcome.result["runs"], "the test was not repeated"


def test_memwatch_repeat_option_flags_a_fault_without_markers(tmp_path: Path) -> None:
    """``--memwatch-repeat`` leak-checks tests that carry no memwatch marker at all."""
    option = ("--memwatch-repeat=2:6",)
    on = run_scenario(tmp_path / "on", "unbounded_cache", True, option, strip_markers=True)
    off = run_scenario(tmp_path / "off", "unbounded_cache", False, option, strip_markers=True)
    assert on.result is not None and on.result["markers"] == [], on.describe()
    assert on.returncode == 1 and [v["kind"] for v in failed_verdicts(on)] == ["leak"]
    assert off.returncode == 0, off.describe()
    assert off.result is not None and len(off.result["runs"]) >= 8
