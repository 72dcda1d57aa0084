"""Shared fixtures of the reference app's tests.

Every test gets a fresh app from ``make_app`` (flask-tutorial style: the app
factory with an injected config), never a module-level one, so no state leaks
between tests and memory budgets measure one test's work.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alsa_mic import portaudio_missing
from reference_app.config import App, AppConfig, create_app

from reference_app import faults

FIXTURES_AUDIO = Path(__file__).resolve().parents[2] / "fixtures" / "audio"
REQUIRE_AUDIO_ENV = "REFERENCE_APP_REQUIRE_AUDIO"


FAULT_ISOLATION = "fault_isolation"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{FAULT_ISOLATION}: the test switches faults on and off itself; "
        f"${faults.ENV_VAR} from the environment is removed for it",
    )
    # An unknown fault name would otherwise be ignored test after test.
    try:
        faults.validate(faults.enabled_from_env())
    except ValueError as exc:
        raise pytest.UsageError(f"${faults.ENV_VAR}: {exc}") from None


def pytest_report_header(config: pytest.Config) -> str | None:
    enabled = faults.enabled_from_env()
    if not enabled:
        return None
    return (
        f"reference_app faults switched on by ${faults.ENV_VAR}: {', '.join(sorted(enabled))} "
        f"(tests marked {FAULT_ISOLATION} run without them)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests about faults compare a fault on with it off, so the user's setting
    # would make them fail for the wrong reason: the modules test_fault*.py and
    # every test with "fault" in its name run isolated.
    for item in items:
        module = Path(str(item.path)).name
        if module.startswith("test_fault") or "fault" in item.name:
            item.add_marker(FAULT_ISOLATION)


@pytest.fixture(autouse=True)
def _fault_isolation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Respect the user's REFERENCE_APP_FAULTS, except in tests that test faults.

    ``REFERENCE_APP_FAULTS=chunks_kept pytest --memwatch-repeat=2:5 tests/test_chunking.py``
    runs the chunking tests with the leak switched on, so memwatch can show it
    being caught; the fault tests themselves stay isolated.
    """
    if request.node.get_closest_marker(FAULT_ISOLATION) is not None:
        monkeypatch.delenv(faults.ENV_VAR, raising=False)


@pytest.fixture(scope="session")
def audio_dir() -> Path:
    """``fixtures/audio``: speech WAVs made by ``make_fixtures.sh``."""
    return FIXTURES_AUDIO


@pytest.fixture(scope="session")
def phrases(audio_dir: Path) -> list[str]:
    """The phrases spoken in the fixtures; ``phrase.replace(' ', '_') + '.wav'`` is the file."""
    return [
        line.strip()
        for line in (audio_dir / "phrases.txt").read_text().splitlines()
        if line.strip()
    ]


@pytest.fixture(scope="session")
def grammar(audio_dir: Path) -> Path:
    """JSGF grammar of the fixture phrases, for exact transcription assertions."""
    return audio_dir / "phrases.gram"


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., App]]:
    """Factory of apps with temp files under ``tmp_path``; all closed at teardown.

    Example::

        def test_x(make_app):
            app = make_app(chunk_seconds=5.0)
    """
    apps: list[App] = []

    def factory(**overrides: Any) -> App:
        overrides.setdefault("temp_dir", tmp_path)
        app = create_app(AppConfig(), **overrides)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.close()


def _cli(
    args: list[str], env: dict[str, str] | None, timeout: float, cwd: Path | None
) -> subprocess.CompletedProcess[str]:
    # os.environ already lost REFERENCE_APP_FAULTS in an isolated test, and
    # keeps the user's setting in the others: the child sees the same faults.
    base = dict(os.environ if env is None else env)
    return subprocess.run(
        [sys.executable, "-m", "reference_app", *args],
        capture_output=True,
        text=True,
        env=base,
        timeout=timeout,
        cwd=cwd,
    )


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``python -m reference_app ARGS`` in a child process (cwd: ``tmp_path``).

    Example::

        result = run_cli("transcribe", "missing.wav")
        assert result.returncode == 2
    """

    def run(
        *args: str, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return _cli([str(a) for a in args], env, timeout, tmp_path)

    return run


@pytest.fixture
def alsa_home(tmp_path: Path) -> Path:
    """A HOME directory for a child process whose microphone is ALSA's file device.

    Skips where libportaudio2 is missing, unless REFERENCE_APP_REQUIRE_AUDIO is
    set (CI sets it), in which case a missing PortAudio fails the test.
    """
    reason = portaudio_missing()
    if reason is not None:
        if os.environ.get(REQUIRE_AUDIO_ENV):
            pytest.fail(f"{reason}, and {REQUIRE_AUDIO_ENV} is set", pytrace=False)
        pytest.skip(reason)
    home = tmp_path / "home"
    home.mkdir()
    return home
