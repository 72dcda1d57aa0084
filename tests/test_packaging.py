"""The wheel a user builds works on its own: ``pip wheel .`` into a fresh virtualenv.

Builds the wheel from this checkout (no network for the project itself; its
dependencies come from pip's cache or the package index), installs it into a new
virtualenv outside the checkout, and checks what a user relies on there: pytest
finds the plugin through its entry point, the ``memwatch`` command runs, and the
templates and the schema ship inside the package (an HTML report and a schema
check from the installed copy, with the checkout nowhere on the path).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 600


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    # No PYTHONPATH, and the working directory outside the checkout: only the
    # installed wheel can answer.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "PYTEST_"))}
    res = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert res.returncode == 0, f"{args}: {res.stdout}\n{res.stderr}"
    return res


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel built from this checkout installed."""
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, ROOT, cwd=base)
    (wheel,) = dist.glob("pytest_memwatch-*.whl")
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    run(py, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel, cwd=base)
    return env_dir


def test_the_wheel_holds_the_package_data_and_the_script(installed: Path) -> None:
    (wheel,) = installed.parent.joinpath("dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for needed in (
        "pytest_memwatch/py.typed",
        "pytest_memwatch/reports/templates/report.html.j2",
        "pytest_memwatch/reports/schema/results.schema.json",
    ):
        assert needed in names
    # Only the plugin ships: no tests, no reference app, no bench scripts.
    assert not [n for n in names if n.startswith(("tests/", "reference_app/", "bench/"))]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "memwatch = pytest_memwatch.plugin" in text
    assert "memwatch = pytest_memwatch.cli:main" in text


def test_the_installed_plugin_measures_and_writes_its_reports(
    installed: Path, tmp_path: Path
) -> None:
    py = installed / "bin" / "python"
    (tmp_path / "test_user.py").write_text(
        "import pytest\n\nKEPT = []\n\n"
        "@pytest.mark.max_growth('64 KiB')\n"
        "def test_leaks():\n    KEPT.append(bytearray(1 << 20))\n\n"
        "def test_clean():\n    pass\n"
    )
    res = subprocess.run(
        [
            str(py),
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "--memwatch",
            "--memwatch-json=out.json",
            "--memwatch-html=out.html",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "PYTEST_"))},
    )
    assert res.returncode == 1, res.stdout + res.stderr
    assert "plugins: memwatch-" in res.stdout
    assert "1 failed, 1 passed" in res.stdout
    doc = json.loads((tmp_path / "out.json").read_text())
    nodeids = {t["nodeid"] for t in doc["tests"]}
    assert {"test_user.py::test_leaks", "test_user.py::test_clean"} <= nodeids
    page = (tmp_path / "out.html").read_text()
    assert "test_leaks" in page and "<style" in page
    # The command, and the schema read from the installed package.
    out = run(
        installed / "bin" / "memwatch", "report", "out.json", "-o", "again.html", cwd=tmp_path
    )
    assert "written" in out.stdout
    check = run(
        py,
        "-c",
        "import json, importlib.resources as r; "
        "json.loads(r.files('pytest_memwatch').joinpath('reports/schema/results.schema.json').read_text());"
        "import pytest_memwatch, sys; print(pytest_memwatch.__file__)",
        cwd=tmp_path,
    )
    assert str(installed) in check.stdout and str(ROOT) not in check.stdout
