"""A user's $REFERENCE_APP_FAULTS reaches the app's tests; the fault tests stay isolated.

``REFERENCE_APP_FAULTS=chunks_kept pytest --memwatch-repeat=1:3 tests/test_chunking.py``
must run the chunking tests with the leak on (so memwatch flags them), while
tests about faults, which switch faults on and off themselves, run without it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from reference_app import faults

TESTS = Path(__file__).resolve().parent
CHUNKING = "test_chunking.py::test_long_input_in_bounded_memory"
FAULT_TEST = "test_fault_leaks.py::test_chunks_kept"


def child_pytest(tmp_path: Path, fault_env: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "REFERENCE_APP_"))}
    env[faults.ENV_VAR] = fault_env
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA",
         "--rootdir", str(TESTS.parent), *args],
        cwd=TESTS, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_the_users_fault_is_on_in_ordinary_tests_and_off_in_fault_tests(tmp_path: Path) -> None:
    result = child_pytest(
        tmp_path, "chunks_kept", "--memwatch-repeat=1:3", "--memwatch-trace=0", CHUNKING, FAULT_TEST
    )
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert (
        "reference_app faults switched on by $REFERENCE_APP_FAULTS: chunks_kept "
        "(tests marked fault_isolation run without them)"
    ) in out
    assert f"FAILED (memwatch) {CHUNKING}" in out
    assert "leak: malloc grows +18" in out  # 600 s of int16 audio kept per call
    assert f"PASSED {FAULT_TEST}" in out
    assert "1 failed, 1 passed" in out


def test_an_unknown_fault_name_stops_the_run_with_the_known_names(tmp_path: Path) -> None:
    result = child_pytest(tmp_path, "chunks_kep", FAULT_TEST)
    assert result.returncode == 4
    assert (
        "ERROR: $REFERENCE_APP_FAULTS: unknown fault(s) chunks_kep; known faults: " in result.stderr
    )
