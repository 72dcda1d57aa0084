"""Helpers shared by the storage, session, cache, VTT and metrics tests.

Plain functions and classes (no fixtures), so each test module states the
fixtures it uses and stays readable on its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
VTT_FIXTURES = REPO_ROOT / "fixtures" / "vtt"


class FakeClock:
    """A clock that moves only when told to; inject as ``clock=``."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeMemory:
    """An injectable memory reading in MiB, for simulating pressure."""

    def __init__(self, mb: float = 100.0) -> None:
        self.mb = mb
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.mb


def open_fds() -> int:
    """File descriptors open in this process (Linux)."""
    return len(os.listdir("/proc/self/fd"))


def run_python(
    code: str,
    *args: str,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -c code`` in a clean child; ``cwd`` should be a temp dir so
    the checkout's ``reference_app/`` directory cannot shadow the package."""
    full_env = {
        k: v
        for k, v in os.environ.items()
        # Faults pass through: os.environ holds the user's setting, or nothing
        # in a fault-isolated test (see conftest.py).
        if not k.startswith("REFERENCE_APP_") or k == "REFERENCE_APP_FAULTS"
    }
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_app(
    *argv: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """``python -m reference_app ARGV`` in a child process."""
    full_env = {
        k: v
        for k, v in os.environ.items()
        # Faults pass through: os.environ holds the user's setting, or nothing
        # in a fault-isolated test (see conftest.py).
        if not k.startswith("REFERENCE_APP_") or k == "REFERENCE_APP_FAULTS"
    }
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "reference_app", *argv],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
