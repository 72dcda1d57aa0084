"""pytest stays at the edge: only the hook modules may import it.

The engine, storage and report modules must work without pytest (the library
API and the CLI use them), and an import of pytest from one of them would also
make ``import pytest_memwatch`` drag pytest in.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import pytest_memwatch

PACKAGE = Path(pytest_memwatch.__file__).parent
# The only package that defines hooks and may therefore talk to pytest.
HOOK_PACKAGE = PACKAGE / "plugin"
FORBIDDEN = ("pytest", "_pytest")


def pytest_imports(source: str, filename: str) -> list[str]:
    """Every import of pytest or _pytest in ``source``, as ``line: statement``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and _is_dynamic_import(node):
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names = [arg.value]
        for name in names:
            if name.split(".")[0] in FORBIDDEN:
                found.append(f"{node.lineno}: {name}")
    return found


def _is_dynamic_import(node: ast.Call) -> bool:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name in ("import_module", "__import__") and bool(node.args)


def engine_modules() -> list[Path]:
    return sorted(
        p
        for p in PACKAGE.rglob("*.py")
        if HOOK_PACKAGE not in p.parents and "__pycache__" not in p.parts
    )


def test_the_walk_sees_the_package() -> None:
    names = {p.relative_to(PACKAGE).as_posix() for p in engine_modules()}
    assert {"engine/__init__.py", "base/probes.py", "reports/results.py", "api.py"} <= names
    assert not any(name.startswith("plugin/") for name in names)


@pytest.mark.parametrize("path", engine_modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_module_does_not_import_pytest(path: Path) -> None:
    assert pytest_imports(path.read_text(encoding="utf-8"), str(path)) == []


@pytest.mark.parametrize(
    "source",
    [
        "import pytest",
        "import _pytest.runner",
        "import os, pytest as pt",
        "from pytest import fixture",
        "from _pytest.config import Config",
        "def f():\n    import pytest",
        "if TYPE_CHECKING:\n    from _pytest.nodes import Item",
        "importlib.import_module('pytest')",
        "__import__('_pytest.python')",
    ],
)
def test_the_checker_catches_every_form(source: str) -> None:
    assert pytest_imports(source, "<test>") != []


@pytest.mark.parametrize(
    "source",
    ["import pytest_memwatch", "from pytest_memwatch import engine", "from . import pytest_x"],
)
def test_the_checker_allows_our_own_package(source: str) -> None:
    assert pytest_imports(source, "<test>") == []


def test_importing_the_package_does_not_import_pytest() -> None:
    code = "import sys, pytest_memwatch; assert 'pytest' not in sys.modules, 'pytest imported'"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


def test_the_library_api_runs_without_pytest() -> None:
    code = (
        "import sys\n"
        "from pytest_memwatch import MemoryTracker, memory_limit\n"
        "t = MemoryTracker(); t.set_baseline(); t.take_snapshot('x')\n"
        "assert t.analyze_memory_usage()['snapshots'][0]['label'] == 'x'\n"
        "assert memory_limit(100)(lambda: 3)() == 3\n"
        "assert not any(m == '_pytest' or m.startswith(('pytest.', '_pytest.')) or m == 'pytest'"
        " for m in sys.modules), sorted(m for m in sys.modules if 'pytest' in m)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
